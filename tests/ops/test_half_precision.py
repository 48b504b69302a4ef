"""TF's exact float16/bfloat16 bits for the ops mixed-precision Keras models run in half precision: AvgPool,
DepthwiseConv2dNative, Softmax, LogSoftmax and L2Loss (jaxsm/ops/nn.py reproduces the Eigen CPU kernels' rounding
order), MatMul/BatchMatMul (bfloat16 truncated), the half-type ops that already matched (Conv2D, BiasAdd, MaxPool,
Cumsum, Relu6/Elu/Selu/Tanh/Log) and a small mixed_float16 Keras model, all compared bit for bit over dense
random grids against TF's plain (non-oneDNN) kernels, as tests/conftest.py configures TF."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

BF16 = tf.bfloat16.as_numpy_dtype
HALF = [np.float16, BF16]
R = tf.raw_ops


def _grid(shape, dtype, lo=-1.0, hi=2.0, seed=0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32).astype(dtype)


def _assert_bits(fn, inputs, module=None):
    """jaxsm's result (jit and op by op, from one saved model) has TF's bits: every element, NaNs aside."""
    export_dir, tf_fn = save_function(fn, inputs, module=module)
    want = np.asarray(tf_fn(*inputs).numpy())
    for jit in (True, False):
        got = np.asarray(run_jaxsm(export_dir, inputs, jit=jit))
        what = f"output (jit={jit})"
        assert got.shape == want.shape and got.dtype == want.dtype, f"{what}: {got.shape} {got.dtype} != TF's"
        both_nan = np.isnan(got.astype(np.float32)) & np.isnan(want.astype(np.float32))
        same = (got.view(np.uint16) == want.view(np.uint16)) | both_nan
        assert same.all(), f"{what}: {np.size(same) - same.sum()} of {same.size} elements differ from TF's bits"


@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
@pytest.mark.parametrize(
    "shape,ksize,strides,padding",
    [([2, 7, 9, 3], 3, 2, "SAME"), ([1, 6, 6, 4], [2, 3], 1, "VALID"), ([0, 4, 4, 3], 2, 2, "SAME")],
    ids=["3x3s2same", "2x3valid", "empty"],
)
def test_avg_pool(shape, ksize, strides, padding, dtype):
    _assert_bits(lambda x: tf.nn.avg_pool2d(x, ksize, strides, padding), [_grid(shape, dtype)])


def test_avg_pool3d_bfloat16():  # TF has no float16 AvgPool3D kernel on CPU
    _assert_bits(lambda x: tf.nn.avg_pool3d(x, 2, 1, "SAME"), [_grid([1, 3, 4, 5, 2], BF16)])


@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
@pytest.mark.parametrize(
    "filter_shape,strides,padding",
    [([3, 3, 3, 2], 1, "SAME"), ([5, 5, 3, 1], 2, "VALID"), ([6, 5, 3, 1], 1, "SAME")],
    ids=["3x3m2", "5x5s2", "6x5_over_taps"],
)
def test_depthwise_conv2d(filter_shape, strides, padding, dtype):
    x, w = _grid([2, 9, 11, 3], dtype), _grid(filter_shape, dtype, seed=1)
    _assert_bits(lambda x, w: tf.nn.depthwise_conv2d(x, w, [1, strides, strides, 1], padding), [x, w])


@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
def test_half_backprops_stay_linear(dtype):
    """AvgPoolGrad and the depthwise backprops transpose the forward lowerings: the half-type rounding must not
    reach them (a rounding step has no transpose). Their values are not bit-exact: sums of ~9 products rounded
    in other orders, so within 16 ulps of 1."""
    grad, w, dy = _grid([2, 3, 4, 3], dtype), _grid([3, 3, 3, 2], dtype, seed=1), _grid([2, 5, 7, 6], dtype, seed=2)
    fns = {
        "avg_pool_grad": lambda g, w, dy: R.AvgPoolGrad(
            orig_input_shape=[2, 5, 7, 3], grad=g, ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME"
        ),
        "depthwise_input": lambda g, w, dy: R.DepthwiseConv2dNativeBackpropInput(
            input_sizes=[2, 5, 7, 3], filter=w, out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME"
        ),
    }
    tol = 16 * (2.0**-10 if dtype == np.float16 else 2.0**-7)
    for jit in (True, False):
        assert_matches_tf(
            lambda g, w, dy: {k: f(g, w, dy) for k, f in fns.items()}, [grad, w, dy], rtol=tol, atol=tol, jit=jit
        )


# class counts: below a packet, packets plus leftovers, 4-packet blocks with leftover packets, one Eigen leaf
_SOFTMAX_SHAPES = [[5], [3, 4, 3], [6, 17], [4, 72], [2, 1000], [3, 0], [0, 4]]


@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("shape", _SOFTMAX_SHAPES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax(shape, log, dtype):
    fn = tf.nn.log_softmax if log else tf.nn.softmax
    _assert_bits(fn, [_grid(shape, dtype, -4.0, 4.0)])


@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_special_values(log, dtype):
    """-inf logits give 0 (log: -inf); a row with +inf or NaN is NaN; float16 outputs reach subnormals."""
    x = np.array(
        [[0.0, -np.inf, 1.0, 2.0], [np.inf, 0.0, 1.0, 1.0], [np.nan, 0.0, 1.0, 2.0], [0.0, -12.0, -15.0, 3.0]]
    ).astype(dtype)
    _assert_bits(tf.nn.log_softmax if log else tf.nn.softmax, [x])


@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("shape", [[], [2, 4, 6, 3], [0, 5]], ids=str)
def test_l2_loss(shape, dtype):
    """One leaf and an empty input; float16 squares of small values are subnormal."""
    _assert_bits(tf.nn.l2_loss, [_grid(shape, dtype, -0.01, 0.02)])


@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("jit", [True, False])
def test_sums_beyond_an_eigen_leaf_are_within_an_ulp(dtype, jit):
    """Longer sums (Eigen splits them in a tree) are taken in float32 and rounded once (jaxsm/ops/gaps.py)."""
    ulp = 2.0**-10 if dtype == np.float16 else 2.0**-7
    fns = {"softmax": tf.nn.softmax, "log_softmax": tf.nn.log_softmax}
    rows = _grid([3, 2001], dtype, -4.0, 4.0)
    assert_matches_tf(lambda x: {k: f(x) for k, f in fns.items()}, [rows], rtol=2 * ulp, atol=1e-4, jit=jit)
    assert_matches_tf(tf.nn.l2_loss, [_grid([3001], dtype, -0.01, 0.02)], rtol=2 * ulp, jit=jit)


@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
@pytest.mark.parametrize(
    "name,fn,make",
    [
        (
            "Conv2D",
            lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"),
            lambda d: [_grid([2, 5, 6, 3], d), _grid([3, 3, 3, 4], d)],
        ),
        ("MatMul", tf.matmul, lambda d: [_grid([5, 12], d), _grid([12, 7], d, seed=1)]),
        ("BatchMatMul", tf.matmul, lambda d: [_grid([2, 5, 12], d), _grid([2, 12, 7], d, seed=1)]),
        ("BiasAdd", tf.nn.bias_add, lambda d: [_grid([2, 4, 6, 3], d), _grid([3], d, seed=1)]),
        ("MaxPool", lambda x: tf.nn.max_pool2d(x, 3, 2, "SAME"), lambda d: [_grid([2, 7, 9, 3], d)]),
        ("Cumsum", lambda x: tf.math.cumsum(x, axis=2), lambda d: [_grid([2, 4, 16, 3], d)]),
        ("Relu6", tf.nn.relu6, lambda d: [_grid([2, 4, 6, 3], d, -8.0, 8.0)]),
        ("Elu", tf.nn.elu, lambda d: [_grid([2, 4, 6, 3], d, -8.0, 8.0)]),
        ("Selu", tf.nn.selu, lambda d: [_grid([2, 4, 6, 3], d, -8.0, 8.0)]),
        ("Tanh", tf.math.tanh, lambda d: [_grid([2, 4, 6, 3], d, -4.0, 4.0)]),
        ("Log", tf.math.log, lambda d: [_grid([2, 4, 6, 3], d, 0.0, 8.0)]),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_already_exact(name, fn, make, dtype):
    _assert_bits(fn, make(dtype))


def test_softplus_bfloat16_every_value():
    """Every bfloat16 in [-20, 20] (both thresholds, the log1p band, exp's subnormal-free tail); float16 is ~92%
    exact (jaxsm/ops/gaps.py)."""
    x = np.unique(np.linspace(-20, 20, 40001).astype(BF16))
    _assert_bits(tf.nn.softplus, [np.concatenate([x, np.array([np.inf, -np.inf, np.nan], BF16)])])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keras_model(policy):
    """Dense + Conv2D + BatchNormalization + DepthwiseConv2D + AveragePooling2D + a half-precision softmax head
    under a mixed-precision policy: every output bit equals TF's."""
    keras = tf.keras
    keras.mixed_precision.set_global_policy(policy)
    try:
        inputs = keras.Input((8, 8, 3))
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.DepthwiseConv2D(3, padding="same")(h)
        h = keras.layers.AveragePooling2D(2)(h)
        h = keras.layers.Dense(10)(keras.layers.Flatten()(h))
        outputs = keras.layers.Activation("softmax", dtype=policy.removeprefix("mixed_"))(h)
        model = keras.Model(inputs, outputs)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    module = tf.Module()
    module.model = model
    _assert_bits(lambda x: model(x, training=False), [_grid([2, 8, 8, 3], np.float32)], module=module)
