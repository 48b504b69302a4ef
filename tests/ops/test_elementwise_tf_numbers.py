"""Elementwise ops where TF's kernel gives other numbers than JAX's textbook function, found by a dtype sweep of
every lowered one- and two-input op (values include +-0, +-inf, NaN and each integer type's extremes):
Relu/Relu6 gradients multiply by the mask, float64 Erf is NaN at +-inf, Expint is NaN below 0, DataFormatDimMap
takes C's remainder, and Digamma/Erfinv/Lgamma follow Eigen's and glibc's formulas to the last bits."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.tfcompare import assert_matches_tf  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])
raw = tf.raw_ops


@JIT
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_relu_gradients_multiply_by_the_mask(dtype, jit):
    grads = np.array([np.inf, -np.inf, np.nan, -2.0, 3.0, np.inf, np.nan, 1.0], dtype)
    feats = np.array([-2.5, 0.0, -1.0, -1.0, 7.0, 2.0, 8.0, np.nan], dtype)

    def fn(g, f):
        return {"relu": raw.ReluGrad(gradients=g, features=f), "relu6": raw.Relu6Grad(gradients=g, features=f)}

    want, got = assert_matches_tf(fn, [grads, feats], jit=jit)
    # -2 * 0 is -0 in TF
    assert np.signbit(np.asarray(got["relu"])[3]) == np.signbit(want["relu"].numpy()[3]) == np.True_


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_and_expint_at_their_edges(dtype, jit):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, -1.0, -0.5, 1e-30, 1.0, 6.0, 30.0], dtype)
    assert_matches_tf(lambda v: {"erf": tf.math.erf(v), "expint": raw.Expint(x=v)}, [x], jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_data_format_dim_map_takes_c_remainders(dtype, jit):
    info = np.iinfo(dtype)
    x = np.array([0, 1, 2, 3, -1, -4, 4, 5, -5, -6, -7, -8, info.max - 1, info.min + 1], dtype)

    def fn(v):
        return {
            "nhwc": raw.DataFormatDimMap(x=v),
            "ndhwc": raw.DataFormatDimMap(x=v, src_format="NDHWC", dst_format="NCDHW"),
        }

    assert_matches_tf(fn, [x], jit=jit)


def _grid(dtype) -> np.ndarray:
    rng = np.random.default_rng(7)
    parts = [
        rng.uniform(-20, 20, 3000),
        rng.uniform(0, 3, 3000),
        10 ** rng.uniform(-30, 30, 300),
        -(10 ** rng.uniform(-5, 6, 300)),
        np.arange(-5, 5, 0.5),
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, 2.0],
    ]
    return np.concatenate(parts).astype(dtype)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_digamma_lgamma_erfinv_are_tfs_to_a_few_ulps(dtype, jit):
    x = _grid(dtype)
    p = np.clip(x / 20, -1.0, 1.0).astype(dtype)
    # XLA's own digamma and lgamma were 1e-6..1e-1 relative away from TF's on a third of these points
    want, got = assert_matches_tf(
        lambda v, q: {"digamma": tf.math.digamma(v), "lgamma": tf.math.lgamma(v), "erfinv": tf.math.erfinv(q)},
        [x, p],
        jit=jit,
        rtol=1e-5 if dtype == np.float32 else 1e-12,
        atol=1e-6 if dtype == np.float32 else 1e-13,
    )
    # share of bit-identical results (float64 lgamma/erfinv use other formulas than glibc/Eigen: close, not equal)
    least = {"digamma": 0.95, "lgamma": 0.7, "erfinv": 0.8} if dtype == np.float32 else {"digamma": 0.99}
    for name, share in least.items():
        g, w = np.asarray(got[name]), want[name].numpy()
        same = (g == w) | (np.isnan(g) & np.isnan(w))
        assert same.mean() >= share, f"{name}: only {same.mean():.1%} of the grid equals TF's bits"


@JIT
@pytest.mark.parametrize("dtype", [np.uint32, np.uint64, np.int64, np.float16])
def test_min_and_max_of_every_integer_width(dtype, jit):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    x = np.array([[info.max, 3, 1], [info.min, 7, info.max]], dtype)
    ax = tf.constant([1], tf.int32)
    assert_matches_tf(
        lambda v: {"min": raw.Min(input=v, axis=ax), "max": raw.Max(input=v, axis=ax, keep_dims=True)}, [x], jit=jit
    )


@JIT
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_euclidean_norm_over_no_axes_squares_first(dtype, jit):
    x = np.array([1e-30, 3e38, 300.0, -2.0, 0.5], np.float64).astype(dtype)
    assert_matches_tf(lambda v: raw.EuclideanNorm(input=v, axis=tf.constant([], tf.int32)), [x], jit=jit)


@pytest.mark.parametrize("dtype", [np.float16, tf.bfloat16.as_numpy_dtype, np.float32])
def test_unique_keeps_half_precision_signed_zeros_apart(dtype):
    x = np.array([0.0, -0.0, np.nan, 1.0, np.nan, -0.0, 1.0], np.float32).astype(dtype)

    def fn(v):
        y, idx, count = raw.UniqueWithCounts(x=v)
        return {"y": y, "idx": idx, "count": count}

    with pytest.warns(Warning):  # the output shape depends on the values: run op by op
        assert_matches_tf(fn, [x], jit=True)


def test_element_moving_ops_on_strings():
    x = np.array([[str(i).encode() * (i % 3 + 1) for i in range(4 * r, 4 * r + 4)] for r in range(3)], object)

    def fn(v):
        return {
            "pad": raw.Pad(input=v, paddings=[[1, 0], [0, 2]]),
            "mirror": raw.MirrorPad(input=v, paddings=[[1, 1], [2, 0]], mode="REFLECT"),
            "roll": raw.Roll(input=v, shift=[-1, 5], axis=[0, 1]),
            "reverse_sequence": raw.ReverseSequence(input=v, seq_lengths=[1, 0, 4], seq_dim=1, batch_dim=0),
            "scatter": raw.TensorScatterUpdate(
                tensor=v, indices=[[1, 2], [0, 0]], updates=tf.stack([v[2, 3], v[0, 1]])
            ),
        }

    with pytest.warns(Warning):  # strings run op by op
        assert_matches_tf(fn, [x], jit=True)


def test_wide_int64_constants_in_arithmetic_raise_with_x64_off():
    """With jax_enable_x64 off a traced int64 is 32 bits, and a constant beyond that would wrap: x + 2**40 gave
    [1, 2] silently. The trace now stops with Int64RangeError; small constants and x64 on are unaffected."""
    import jax

    import jaxsm
    from jaxsm.errors import Int64RangeError
    from tests.tfcompare import save_function

    x = np.array([1, 2], np.int64)
    wide_dir, _ = save_function(lambda v: v + tf.constant(2**40, tf.int64), [x])
    small_dir, small = save_function(lambda v: v * 3 - 7, [x])
    with jax.enable_x64(False):
        with pytest.raises(Int64RangeError, match="AddV2"):
            jaxsm.load(wide_dir).f(x)
        np.testing.assert_array_equal(np.asarray(jaxsm.load(small_dir).f(x)), small(x).numpy())
    np.testing.assert_array_equal(np.asarray(jaxsm.load(wide_dir).f(x)), x + 2**40)
