"""jaxsm.ops.xla against TF: the Xla* ops built with tf2xla's Python wrappers (what jax2tf emits with
native_serialization=False). TF runs them only when compiled, so TF's expected values come from a
``jit_compile=True`` tf.function of the same fn."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from tensorflow.compiler.tf2xla.python import xla as tfxla  # noqa: E402
from tensorflow.compiler.xla import xla_data_pb2  # noqa: E402

from tests.tfcompare import run_jaxsm, save_function  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])
RNG = np.random.default_rng(0)


def assert_xla_matches_tf(fn, inputs, *, rtol=1e-6, atol=0.0, jit=True):
    """Like tests.tfcompare.assert_matches_tf, with TF's result from an XLA-compiled tf.function."""
    inputs = [np.asarray(x) for x in inputs]
    export_dir, _ = save_function(fn, inputs)
    sig = [tf.TensorSpec(x.shape, tf.as_dtype(x.dtype)) for x in inputs]
    expected = tf.nest.flatten(tf.function(fn, input_signature=sig, jit_compile=True)(*inputs))
    got = run_jaxsm(export_dir, inputs, jit=jit)
    got = list(got) if isinstance(got, (list, tuple)) else [got]
    assert len(got) == len(expected)
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        e, g = e.numpy(), np.asarray(g)
        assert e.shape == g.shape and e.dtype == g.dtype, f"out[{i}]: {g.shape} {g.dtype} != TF's {e.shape} {e.dtype}"
        if e.dtype.kind in "biu":
            np.testing.assert_array_equal(g, e, err_msg=f"out[{i}]")
        else:
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=f"out[{i}]")


def _scalar_fn(body, dtype=tf.float32, n=2):
    spec = tf.TensorSpec((), dtype)
    return tf.function(body).get_concrete_function(*([spec] * n))


def _f(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


@JIT
@pytest.mark.parametrize("v2", [False, True])
def test_conv(v2, jit):
    dn = xla_data_pb2.ConvolutionDimensionNumbers(
        input_batch_dimension=0,
        input_feature_dimension=3,
        input_spatial_dimensions=[1, 2],
        kernel_input_feature_dimension=2,
        kernel_output_feature_dimension=3,
        kernel_spatial_dimensions=[0, 1],
        output_batch_dimension=0,
        output_feature_dimension=3,
        output_spatial_dimensions=[1, 2],
    )

    def fn(x, w):
        return tfxla.conv(x, w, [2, 1], [[1, 0], [2, 1]], [1, 1], [1, 2], dn, feature_group_count=2, use_v2=v2)

    assert_xla_matches_tf(fn, [_f(2, 7, 6, 4), _f(3, 2, 2, 6)], rtol=1e-5, jit=jit)


@JIT
@pytest.mark.parametrize("v2", [False, True])
def test_dot_general(v2, jit):
    dn = xla_data_pb2.DotDimensionNumbers(
        lhs_contracting_dimensions=[2],
        rhs_contracting_dimensions=[1],
        lhs_batch_dimensions=[0],
        rhs_batch_dimensions=[0],
    )
    assert_xla_matches_tf(
        lambda a, b: tfxla.dot_general(a, b, dn, use_v2=v2), [_f(3, 4, 5), _f(3, 5, 2)], rtol=1e-5, jit=jit
    )


@JIT
def test_dot_general_preferred_int32(jit):
    dn = xla_data_pb2.DotDimensionNumbers(lhs_contracting_dimensions=[1], rhs_contracting_dimensions=[0])
    a = RNG.integers(-128, 127, (3, 4)).astype(np.int8)
    b = RNG.integers(-128, 127, (4, 2)).astype(np.int8)
    assert_xla_matches_tf(
        lambda a, b: tfxla.dot_general(a, b, dn, preferred_element_type=tf.int32, use_v2=True), [a, b], jit=jit
    )


@JIT
def test_slices_and_pad(jit):
    def fn(x, i):
        return (
            tfxla.dynamic_slice(x, tf.stack([i, i + 1]), [2, 3]),
            tfxla.dynamic_slice(x, tf.stack([i + 10, -i]), [2, 3]),  # XLA clamps the starts
            tfxla.dynamic_update_slice(x, tf.ones([2, 2]), tf.stack([-i, 3 * i])),
            tfxla.pad(x, tf.constant(-1.0), [1, 0], [2, 1], [0, 1]),
        )

    assert_xla_matches_tf(fn, [_f(4, 5), np.int32(1)], jit=jit)


@JIT
def test_gather(jit):
    dn = xla_data_pb2.GatherDimensionNumbers(
        offset_dims=[1], collapsed_slice_dims=[0], start_index_map=[0], index_vector_dim=1
    )
    idx = np.array([[0], [3], [1], [7]], np.int32)  # 7 is clamped by XLA
    assert_xla_matches_tf(lambda x, i: tfxla.gather(x, i, dn, [1, 3]), [_f(5, 3), idx], jit=jit)


@JIT
def test_gather_scalar_indices(jit):
    dn = xla_data_pb2.GatherDimensionNumbers(
        offset_dims=[0], collapsed_slice_dims=[1], start_index_map=[1], index_vector_dim=1
    )
    idx = np.array([2, 0, 2], np.int64)
    assert_xla_matches_tf(lambda x, i: tfxla.gather(x, i, dn, [4, 1]), [_f(4, 3), idx], jit=jit)


@JIT
@pytest.mark.parametrize("kind", ["add", "max", "replace"])
def test_scatter(kind, jit):
    dn = xla_data_pb2.ScatterDimensionNumbers(
        update_window_dims=[1], inserted_window_dims=[0], scatter_dims_to_operand_dims=[0], index_vector_dim=1
    )
    body = {"add": tf.add, "max": tf.maximum, "replace": lambda a, b: b}[kind]
    idx = np.array([[1], [3], [1], [9]], np.int32)  # duplicate 1; 9 is out of range and dropped
    upd = _f(4, 3) if kind != "replace" else np.arange(12, dtype=np.float32).reshape(4, 3)
    if kind == "replace":
        idx = np.array([[1], [3], [0], [9]], np.int32)
    assert_xla_matches_tf(
        lambda x, i, u: tfxla.scatter(x, i, u, _scalar_fn(body), dn), [_f(5, 3), idx, upd], rtol=1e-6, jit=jit
    )


@JIT
@pytest.mark.parametrize("kind", ["add", "max", "custom"])
def test_reduce_window(kind, jit):
    # "custom" is not a single lax primitive (generic path) but associative, so any reduction order agrees.
    body = {"add": tf.add, "max": tf.maximum, "custom": lambda a, b: tf.minimum(tf.maximum(a, b), 1.5)}[kind]

    def fn(x):
        return tfxla.reduce_window(
            x, tf.constant(0.0), _scalar_fn(body), [2, 3], [1, 2], [1, 1], [1, 1], [[0, 1], [1, 1]]
        )

    assert_xla_matches_tf(fn, [_f(5, 7)], rtol=1e-5, jit=jit)


@JIT
def test_select_and_scatter(jit):
    def fn(x, s):
        return tfxla.select_and_scatter(
            x, [2, 2], [2, 2], [[0, 0], [0, 0]], s, tf.constant(0.5), _scalar_fn(tf.greater_equal), _scalar_fn(tf.add)
        )

    assert_xla_matches_tf(fn, [_f(4, 6), _f(2, 3)], jit=jit)


@JIT
def test_variadic_reduce(jit):
    # argmax as a variadic reduction over (value, index) pairs
    def reducer(v0, i0, v1, i1):
        take0 = v0 >= v1
        return tf.where(take0, v0, v1), tf.where(take0, i0, i1)

    red = tf.function(reducer).get_concrete_function(*[tf.TensorSpec((), d) for d in [tf.float32, tf.int32] * 2])

    def fn(x):
        idx = tf.broadcast_to(tf.range(6), tf.shape(x))
        v2 = tfxla.variadic_reduce([x, idx], [tf.constant(-np.inf), tf.constant(0)], [1], red)
        s = tfxla.reduce(x, tf.constant(0.0), [0], _scalar_fn(tf.add))
        return (*v2, s)

    assert_xla_matches_tf(fn, [_f(3, 6)], rtol=1e-6, jit=jit)


@JIT
@pytest.mark.parametrize("descending", [False, True])
def test_variadic_sort(descending, jit):
    cmp = tf.greater if descending else tf.less

    def comparator(a, b, c, d):
        return cmp(a, b)

    comp = tf.function(comparator).get_concrete_function(
        *[tf.TensorSpec((), d) for d in [tf.float32, tf.float32, tf.int32, tf.int32]]
    )

    def fn(x):
        idx = tf.broadcast_to(tf.range(8), tf.shape(x))
        return tfxla.variadic_sort([x, idx], 1, comp, is_stable=True)

    x = np.round(_f(3, 8)).astype(np.float32)  # ties check stability
    assert_xla_matches_tf(fn, [x], jit=jit)


@JIT
def test_sort_and_key_value_sort(jit):
    def fn(k, v):
        return (tfxla.sort(k), *tfxla.key_value_sort(k, v))

    assert_xla_matches_tf(fn, [_f(3, 7), _f(3, 7)], jit=jit)


@JIT
@pytest.mark.parametrize("alg", [1, 2, 3])
@pytest.mark.parametrize("dtype", [tf.uint32, tf.uint64])
def test_rng_bit_generator(alg, dtype, jit):
    def fn(state):
        return tfxla.rng_bit_generator(alg, state, [3, 5], dtype=dtype)

    assert_xla_matches_tf(fn, [np.array([1234, 2**40 + 7], np.uint64)], jit=jit)


@JIT
def test_xla_call_module(jit):
    jax = pytest.importorskip("jax")
    from jax.experimental import jax2tf

    def jax_fn(x, y):
        return jax.numpy.sin(x) @ y, jax.numpy.cumsum(y, axis=0).astype(jax.numpy.int32)

    fn = jax2tf.convert(jax_fn, with_gradient=False)  # native serialization: one XlaCallModule node
    from tests.tfcompare import assert_matches_tf

    assert_matches_tf(fn, [_f(2, 3), _f(3, 4)], rtol=1e-5, jit=jit)
