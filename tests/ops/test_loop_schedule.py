"""While loops whose trip count comes from a loop variable's shape (jaxsm/ops/control_flow.py ``_static_schedule``):
they run as ``lax.scan``, so ``jax.grad`` through ``jaxsm.functional`` equals tf.GradientTape / tf.gradients;
loops whose trip count is a run-time value run as ``lax.while_loop`` and ``jax.grad`` names them in its error."""

import jax
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import jaxsm  # noqa: E402
from jaxsm.errors import StaticValueError  # noqa: E402
from jaxsm.functional import functional  # noqa: E402
from tests.tfcompare import assert_matches_tf, v1_graph  # noqa: E402

W = np.array([0.5, -1.0, 1.5], np.float32)


def _step(acc, row, w):
    return acc + tf.reduce_sum(tf.sin(row * w)) * acc


def _captured(x, w):
    """The cond reads tf.shape of x, which while_v2 carries as a loop variable the body passes through."""
    acc0 = tf.ones([], x.dtype)
    out = tf.while_loop(lambda i, acc: i < tf.shape(x)[0], lambda i, acc: (i + 1, _step(acc, x[i], w)), [0, acc0])
    return out[1]


def _outside(x, w):
    n, i, acc = tf.shape(x, out_type=tf.int64)[0], tf.constant(0, tf.int64), tf.ones([], x.dtype)
    while i < n:
        acc = _step(acc, x[i], w)
        i += 1
    return acc


def _autograph_range(x, w):
    acc = tf.ones([], x.dtype)
    for t in tf.range(tf.shape(x)[0]):
        acc = _step(acc, x[t], w)
    return acc


def _size_and_rank(x, w):
    """Size and Rank of the captured x, through an Identity, in the cond."""

    def cond(i, acc):
        return i * 3 + tf.rank(x) - 2 < tf.size(tf.identity(x))

    out = tf.while_loop(cond, lambda i, acc: (i + 1, _step(acc, x[i], w)), [0, tf.ones([], x.dtype)])
    return out[1]


LOOPS = {"captured": _captured, "outside": _outside, "autograph_range": _autograph_range, "size_rank": _size_and_rank}


def _module(loop, dtype):
    class M(tf.Module):
        def __init__(self):
            self.w = tf.Variable(W.astype(dtype))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], dtype)])
        def f(self, x):
            return loop(x, self.w)

    return M()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One SavedModel per (loop, dtype), shared by the value and gradient tests."""
    cache = {}

    def get(kind, dtype):
        if (kind, dtype) not in cache:
            m = _module(LOOPS[kind], dtype)
            path = str(tmp_path_factory.mktemp(kind))
            tf.saved_model.save(m, path)
            cache[kind, dtype] = (m, jaxsm.load(path))
        return cache[kind, dtype]

    return get


def _x(n, dtype):
    return np.random.default_rng(n).normal(scale=0.3, size=(n, 3)).astype(dtype)


@pytest.mark.parametrize("n", [0, 1, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_grad_through_shape_bounded_loop_matches_tape(saved, kind, dtype, n):
    m, loaded = saved(kind, dtype)
    x = _x(n, dtype)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        ref = m.f(xt)
    want_x, want_w = tape.gradient(ref, [xt, m.w], unconnected_gradients="zero")
    apply, params = functional(loaded.f)
    jaxpr = str(jax.make_jaxpr(lambda p, x: apply(p, x))(params, x))
    assert "while[" not in jaxpr, f"{kind}: the loop should run as lax.scan, not lax.while_loop"
    got, (g_p, g_x) = jax.jit(jax.value_and_grad(apply, argnums=(0, 1)))(params, x)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(np.asarray(got), ref.numpy(), rtol=rtol, err_msg=f"{kind}: value")
    np.testing.assert_allclose(np.asarray(g_x), want_x.numpy(), rtol=rtol, atol=rtol, err_msg=f"{kind}: d/dx")
    (g_w,) = jax.tree_util.tree_leaves(g_p)
    np.testing.assert_allclose(np.asarray(g_w), want_w.numpy(), rtol=rtol, atol=rtol, err_msg=f"{kind}: d/dw")


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_values_match_tf(kind, jit):
    assert_matches_tf(lambda x: LOOPS[kind](x, tf.constant(W)), [_x(3, np.float32)], shapes=[[None, 3]], jit=jit)


def _shape_n_loop(x):
    """ShapeN of the captured x (any rank) bounds the loop: one step per element."""

    def cond(i, acc):
        return i < tf.reduce_prod(tf.shape_n([x, x], out_type=tf.int64)[1])

    flat = tf.reshape(x, [-1])
    out = tf.while_loop(cond, lambda i, acc: (i + 1, acc * tf.cos(flat[i])), [tf.constant(0, tf.int64), 1.0])
    return out[1]


@pytest.mark.parametrize("shape,spec", [((), []), ((5,), [None]), ((2, 3, 2), [None, 3, None])])
def test_shape_n_of_any_rank(tmp_path, shape, spec):
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    for jit in (True, False):
        assert_matches_tf(_shape_n_loop, [x], shapes=[spec], jit=jit)
    m = tf.Module()
    m.f = tf.function(_shape_n_loop, input_signature=[tf.TensorSpec(spec, tf.float32)])
    tf.saved_model.save(m, str(tmp_path))
    apply, params = functional(jaxsm.load(str(tmp_path)).f)
    assert "while[" not in str(jax.make_jaxpr(apply)(params, x)), "the loop should run as lax.scan"
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        ref = m.f(xt)
    got = jax.jit(jax.grad(apply, argnums=1))(params, x)
    np.testing.assert_allclose(np.asarray(got), tape.gradient(ref, xt).numpy(), rtol=1e-5, atol=1e-6, err_msg="d/dx")


def _growing(x):
    """The cond reads the shape of a loop variable the body grows (shape invariant None): not loop-invariant."""
    out = tf.while_loop(
        lambda i, a: tf.shape(a)[0] < 5,
        lambda i, a: (i + 1, tf.concat([a, a[:1] * 2.0], 0)),
        [0, x],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, 3])],
    )
    return out[0], out[1]


def _growing_from_constant(x):
    """As _growing, from a constant the body grows with run-time rows: shaped like a trace-time value at first."""
    out = tf.while_loop(
        lambda i, a: tf.shape(a)[0] + i < 6,
        lambda i, a: (i + 1, tf.concat([a, x[:1]], 0)),
        [0, tf.zeros([2, 3])],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, 3])],
    )
    return out[0], out[1]


def _same_shape_updated(x):
    """The cond reads the shape of a loop variable the body updates (not passed through): a run-time loop."""
    out = tf.while_loop(lambda i, a: i < tf.shape(a)[0] + 2, lambda i, a: (i + 1, a * 0.5 + 1.0), [0, x])
    return out[0], out[1]


def _tensor_array(x):
    """The cond reads the size of a TensorArray (a TensorList carried by the loop, which the body writes)."""
    ta = tf.TensorArray(tf.float32, size=tf.shape(x)[0] + 1)
    out = tf.while_loop(
        lambda i, ta: i < ta.size(), lambda i, ta: (i + 1, ta.write(i, tf.cast(i, tf.float32) * x[0, 0])), [0, ta]
    )
    return out[0], out[1].stack()


@pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")
@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "fn", [_growing, _growing_from_constant, _same_shape_updated, _tensor_array], ids=lambda f: f.__name__
)
def test_shape_reads_of_changing_variables(fn, jit):
    assert_matches_tf(fn, [_x(2, np.float32)], shapes=[[None, 3]], jit=jit)


def test_same_shape_updated_variable_stays_a_run_time_loop(tmp_path):
    """Only variables the body passes through count as shape-invariant: this one is a lax.while_loop."""
    m = _module(lambda x, w: _same_shape_updated(x * w)[1], np.float32)
    tf.saved_model.save(m, str(tmp_path))
    apply, params = functional(jaxsm.load(str(tmp_path)).f)
    assert "while[" in str(jax.make_jaxpr(apply)(params, _x(2, np.float32)))


@pytest.fixture(scope="module")
def runtime_bound(tmp_path_factory):
    class M(tf.Module):
        def __init__(self):
            self.w = tf.Variable(W)

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([], tf.int32)])
        def f(self, x, n):
            acc = tf.ones([])
            for t in tf.range(n):
                acc = _step(acc, x[t], self.w)
            return acc

    m = M()
    path = str(tmp_path_factory.mktemp("runtime"))
    tf.saved_model.save(m, path)
    return m, jaxsm.load(path)


def test_grad_of_run_time_trip_count_is_a_clear_error(runtime_bound):
    m, loaded = runtime_bound
    apply, params = functional(loaded.f)
    grad = jax.jit(jax.grad(apply, argnums=(0, 1)))  # (n is traced by jit: a run-time value)
    with pytest.raises(StaticValueError, match=r"'while' \(While\).*run-time values.*trace time"):
        grad(params, _x(4, np.float32), np.int32(3))


def test_grad_with_trip_count_given_at_trace_time(runtime_bound):
    """The remedy the error names: n as a NumPy value outside jax.jit makes the loop a lax.scan."""
    m, loaded = runtime_bound
    apply, params = functional(loaded.f)
    x = _x(4, np.float32)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        ref = m.f(xt, tf.constant(3))
    want_x, want_w = tape.gradient(ref, [xt, m.w])
    g_p, g_x = jax.jit(jax.grad(lambda p, x: apply(p, x, np.int32(3)), argnums=(0, 1)))(params, x)
    np.testing.assert_allclose(np.asarray(g_x), want_x.numpy(), rtol=1e-5, atol=1e-6, err_msg="d/dx")
    (g_w,) = jax.tree_util.tree_leaves(g_p)
    np.testing.assert_allclose(np.asarray(g_w), want_w.numpy(), rtol=1e-5, atol=1e-6, err_msg="d/dw")


def test_run_time_trip_count_forward_mode_matches_tape(runtime_bound):
    m, loaded = runtime_bound
    apply, params = functional(loaded.f)
    x = _x(4, np.float32)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        ref = m.f(xt, tf.constant(3))
    want = tape.gradient(ref, xt).numpy()
    got = jax.jit(jax.jacfwd(lambda x, n: apply(params, x, n)))(x, np.int32(3))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, err_msg="jacfwd d/dx")
    batched = jax.vmap(lambda n: apply(params, x, n))(np.array([0, 2, 4], np.int32))
    want_b = [m.f(xt, tf.constant(k)).numpy() for k in (0, 2, 4)]
    np.testing.assert_allclose(np.asarray(batched), want_b, rtol=1e-5, err_msg="vmap over the trip count")


@pytest.mark.parametrize("n", [0, 3])
def test_tf1_loop_bounded_by_placeholder_shape(tmp_path, n):
    """tf.compat.v1.while_loop (Enter/Exit/NextIteration frames) bounded by tf.shape of a placeholder of unknown
    batch: a TF1 loop invariant. jax.grad of the signature equals tf.compat.v1.gradients in a session."""
    tf1 = tf.compat.v1
    x_val = _x(n, np.float32)
    with v1_graph() as g:
        xs = tf1.placeholder(tf.float32, [None, 3], name="xs")
        w = tf1.get_variable("w", initializer=tf.constant(W))
        _, acc = tf1.while_loop(
            lambda i, a: i < tf.shape(xs)[0], lambda i, a: (i + 1, _step(a, xs[i], w)), [0, tf.ones([])]
        )
        y = tf.identity(acc, name="y")
        grads = tf1.gradients(y, [xs, w])
        with tf1.Session(graph=g) as s:
            s.run(tf1.global_variables_initializer())
            want_y, want_x, want_w = s.run([y] + grads, {xs: x_val})
            tf1.saved_model.simple_save(s, str(tmp_path / "m"), inputs={"xs": xs}, outputs={"y": y})
    sig = jaxsm.load(str(tmp_path / "m")).signatures["serving_default"]
    apply, params = functional(sig)
    assert "while[" not in str(jax.make_jaxpr(lambda p, x: apply(p, xs=x))(params, x_val)), "TF1 loop: lax.scan"
    got_y, (g_p, g_x) = jax.jit(jax.value_and_grad(lambda p, x: apply(p, xs=x)["y"], argnums=(0, 1)))(params, x_val)
    np.testing.assert_allclose(np.asarray(got_y), want_y, rtol=1e-5, err_msg="y")
    np.testing.assert_allclose(np.asarray(g_x), want_x, rtol=1e-5, atol=1e-6, err_msg="d/dxs")
    np.testing.assert_allclose(np.asarray(g_p["w"]), want_w, rtol=1e-5, atol=1e-6, err_msg="d/dw")
