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
    fn = tf.autograph.experimental.do_not_convert(fn)  # (AutoGraph would rewrite jax's own code: a minute)
    from tests.tfcompare import assert_matches_tf

    assert_matches_tf(fn, [_f(2, 3), _f(3, 4)], rtol=1e-5, jit=jit)


# -- sharding annotations, precision, control flow, linalg, tiling --------------------------------------------

from tensorflow.compiler.tf2xla.ops import gen_xla_ops as X  # noqa: E402

_REPLICATED = xla_data_pb2.OpSharding(type=xla_data_pb2.OpSharding.REPLICATED).SerializeToString()
_ONE_TILE = xla_data_pb2.OpSharding(
    type=xla_data_pb2.OpSharding.OTHER, tile_assignment_dimensions=[1, 1], tile_assignment_devices=[0]
).SerializeToString()
_TWO_TILES = xla_data_pb2.OpSharding(
    type=xla_data_pb2.OpSharding.OTHER, tile_assignment_dimensions=[2, 1], tile_assignment_devices=[0, 1]
).SerializeToString()


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sharding_barrier_reduce_precision_einsum(dtype, jit):
    def fn(x, y):
        full = X.xla_spmd_shard_to_full_shape(
            X.xla_spmd_full_to_shard_shape(x, manual_sharding=_ONE_TILE), manual_sharding=_REPLICATED, full_shape=[3, 4]
        )
        return (
            X.xla_sharding(x, sharding=_TWO_TILES),
            *X.xla_optimization_barrier([x, y]),
            X.xla_reduce_precision(x * 1e4, exponent_bits=5, mantissa_bits=3),  # overflows float16's range to inf
            X.xla_reduce_precision(x / 7, exponent_bits=8, mantissa_bits=7),
            X.xla_einsum(tf.cast(x, tf.float32), tf.cast(y, tf.float32), equation="ij,kj->ik"),  # no float64
            full,
        )

    x = _f(3, 4, dtype=dtype)
    x[0, :2] = [np.nan, -np.inf]
    assert_xla_matches_tf(fn, [x, _f(5, 4, dtype=dtype)], rtol=1e-6 if dtype == np.float32 else 1e-12, jit=jit)


def test_spmd_over_several_devices_raises():
    from jaxsm.errors import JaxsmError

    export_dir, _ = save_function(lambda x: X.xla_spmd_full_to_shard_shape(x, manual_sharding=_TWO_TILES), [_f(4, 2)])
    with pytest.raises(JaxsmError, match="several devices"):
        run_jaxsm(export_dir, [_f(4, 2)])


@JIT
def test_xla_if_and_while(jit):
    i32 = tf.TensorSpec((), tf.int32)
    f32 = tf.TensorSpec((2,), tf.float32)
    then_b = tf.function(lambda i, v: (i + 1, v * 2.0)).get_concrete_function(i32, f32)
    else_b = tf.function(lambda i, v: (i - 1, v - 1.0)).get_concrete_function(i32, f32)
    cond = tf.function(lambda i, v: i < 5).get_concrete_function(i32, f32)
    body = tf.function(lambda i, v: (i + 1, v * 1.5)).get_concrete_function(i32, f32)

    def fn(i, v):
        branch = X.xla_if(i > 2, [i, v], then_b, else_b, Tout=[tf.int32, tf.float32])
        loop = X.xla_while([i, v], cond, body)
        return (*branch, *loop)

    def reference(i, v):  # TF compiles XlaIf only with an output_shapes attr its op def lacks
        branch = tf.cond(i > 2, lambda: then_b(i, v), lambda: else_b(i, v))
        return (*branch, *tf.while_loop(lambda i, v: i < 5, lambda i, v: body(i, v), [i, v]))

    v = np.array([1.0, -2.0], np.float32)
    export_dir, _ = save_function(fn, [np.int32(0), v])
    for i in (np.int32(1), np.int32(4)):
        got = run_jaxsm(export_dir, [i, v], jit=jit)
        for k, (g, e) in enumerate(zip(got, reference(tf.constant(i), tf.constant(v)), strict=True)):
            np.testing.assert_allclose(np.asarray(g), e.numpy(), rtol=1e-6, err_msg=f"out[{k}] for i={i}")


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_xla_svd_and_self_adjoint_eig(dtype, jit):
    """Values as XLA's; vectors up to sign (XLA uses Jacobi), so TF's are checked through invariants."""
    a = _f(3, 4, dtype=dtype)
    sym = a @ a.T + np.diag([0.0, 5.0, 9.0]).astype(dtype)
    sym_upper = np.triu(sym) + np.tril(np.full_like(sym, 100.0), -1)  # only the upper triangle is read

    def fn(a, sym, sym_upper):
        s, u, v = X.xla_svd(a, max_iter=100, epsilon=1e-6, precision_config="")
        w, ev = X.xla_self_adjoint_eig(sym, lower=True, max_iter=100, epsilon=1e-6)
        w_up, _ = X.xla_self_adjoint_eig(sym_upper, lower=False, max_iter=100, epsilon=1e-6)
        return s, u, v, w, ev, w_up

    export_dir, _ = save_function(fn, [a, sym, sym_upper])
    s, u, v, w, ev, w_up = (np.asarray(t) for t in run_jaxsm(export_dir, [a, sym, sym_upper], jit=jit))
    # Each op in its own XLA cluster: in one, XLA gives the lower=False eig the lower=True eig's triangle.
    tf_s, tf_u, tf_v, tf_w, tf_ev, _ = (t.numpy() for t in tf.function(fn, jit_compile=True)(a, sym, sym))
    tf_w_up = tf.function(
        lambda m: X.xla_self_adjoint_eig(m, lower=False, max_iter=100, epsilon=1e-6)[0], jit_compile=True
    )(sym_upper).numpy()
    tol = 1e-4 if dtype == np.float32 else 1e-10
    # XLA's Jacobi stops once off-diagonal ratios fall under epsilon (1e-6): each side's vectors are then within a
    # few epsilon of exact, and which few depends on the CPU (a CI machine gave 2.4e-6 between jaxsm's and TF's).
    vtol = 1e-4 if dtype == np.float32 else 2e-5
    for name, got, want in [("s", s, tf_s), ("w", w, tf_w), ("w_upper", w_up, tf_w_up)]:
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=name)
    assert u.shape == tf_u.shape and v.shape == tf_v.shape and ev.shape == tf_ev.shape
    np.testing.assert_allclose(u[:, :3] * s @ v[:, :3].T, a, atol=vtol, err_msg="u diag(s) v^T")
    np.testing.assert_allclose(np.abs(u.T @ tf_u), np.eye(3), atol=vtol, err_msg="u columns up to sign")
    np.testing.assert_allclose(np.abs(ev.T @ tf_ev), np.eye(3), atol=vtol, err_msg="v columns up to sign")


@JIT
def test_dynamic_dimension_size(jit):
    def fn(x):
        cut = X.xla_set_dynamic_dimension_size(x, 1, 2)
        return cut, tf.reduce_sum(cut, 1), X.xla_remove_dynamic_dimension_size(x, 0)

    assert_xla_matches_tf(fn, [_f(3, 4)], jit=jit)


def _split_nd_reference(x, splits, paddings):
    x = np.pad(x, [(0, p) for p in paddings or [0] * x.ndim])
    tiles = [x]
    for axis, n in enumerate(splits):
        tiles = [part for t in tiles for part in np.split(t, n, axis=axis)]
    return tiles


@JIT
@pytest.mark.parametrize(
    "shape, splits, paddings", [((3, 3), [2, 2], [1, 1]), ((4, 6, 2), [2, 3, 1], []), ((5,), [1], [0])]
)
def test_xla_split_and_concat_nd(shape, splits, paddings, jit):
    """TF has TPU kernels only: checked against the documented semantics, and concat(split(x)) == x."""
    x = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    n = int(np.prod(splits))

    def fn(x):
        tiles = tf.raw_ops.XlaSplitND(input=x, N=n, num_splits=splits, paddings=paddings)
        return tiles, tf.raw_ops.XlaConcatND(inputs=tiles, num_concats=splits, paddings=paddings)

    export_dir, _ = save_function(fn, [x])
    tiles, merged = run_jaxsm(export_dir, [x], jit=jit)
    for i, (got, want) in enumerate(zip(tiles, _split_nd_reference(x, splits, paddings), strict=True)):
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=f"tile {i}")
    np.testing.assert_array_equal(np.asarray(merged), x, err_msg="merged")
