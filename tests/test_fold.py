"""jaxsm/graph/fold.py: values known at trace time are folded with NumPy exactly as XLA computes them, or not at
all (Unfoldable -> the eager XLA path), and a first call compiles one XLA program, not one per folded primitive."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxsm
import jaxsm.graph.fold as fold_module
from jaxsm.graph.fold import Unfoldable, fold

DATA = os.path.join(os.path.dirname(__file__), "data")
I8, I32, I64 = np.int8, np.int32, np.int64


def _xla(fn, args):
    with jax.ensure_compile_time_eval():
        out = fn(*args)
    return [np.asarray(o) for o in jax.tree.leaves(out)]


def _check(fn, *args, static=()):
    """fold() gives XLA's values, dtypes and shapes -- or declines."""
    args = [np.asarray(a) for a in args]
    want = _xla(fn, args)
    cache = {}
    for _ in range(2):  # staged once, then evaluated from the cache
        got = [np.asarray(o) for o in jax.tree.leaves(fold(cache, "node", fn, args, static))]
        assert [g.dtype for g in got] == [w.dtype for w in want]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def _declines(fn, *args):
    with pytest.raises(Unfoldable):
        fold({}, "node", fn, [np.asarray(a) for a in args])


@pytest.mark.parametrize("dtype", [I8, I32, I64])
def test_integer_arithmetic_wraps_and_truncates_like_xla(dtype):
    info = np.iinfo(dtype)
    a = np.array([info.min, info.min + 1, -7, -7, 7, 7, 0, info.max, 5], dtype)
    b = np.array([3, 2, 2, -2, -2, 3, 5, -1, info.min], dtype)
    with jax.enable_x64(dtype == I64):
        for fn in (lax.add, lax.sub, lax.mul, lax.div, lax.rem, lax.max, lax.min, lax.lt, lax.ne):
            _check(fn, a, b)
        _check(lambda x: lax.neg(x) * 3 + lax.abs(x), a)
        _check(lambda x, y: jnp.where(x < y, x, y) // 2, a, b)


def test_division_by_zero_and_overflow_go_to_xla():
    _declines(lax.div, np.array([1, 2], I32), np.array([1, 0], I32))
    _declines(lax.div, np.array([np.iinfo(I32).min], I32), np.array([-1], I32))
    _declines(lax.rem, np.array([5], I32), np.array([0], I32))


def test_exact_float_operations_and_what_is_left_to_xla():
    x = np.array([1.5, -0.0, np.nan, np.inf, 3e-37, -2.5, 7.0], np.float32)
    y = np.array([0.1, 2.0, 1.0, -np.inf, 3.0, np.nan, 3.0], np.float32)
    # Correctly rounded on XLA:CPU only (XLA:GPU's 7 / 3 is one ulp off): elsewhere the backend computes them.
    rounded = _check if jax.default_backend() == "cpu" else _declines
    for fn in (lax.add, lax.sub, lax.mul, lax.div):
        rounded(fn, x, y)
    for fn in (lax.max, lax.min, lax.eq, lax.ge):
        _check(fn, x, y)
    rounded(lambda v: lax.sqrt(lax.abs(v)) + lax.floor(v) - lax.ceil(v), x)
    _check(lambda v: (lax.floor(lax.abs(v)), lax.ceil(lax.neg(v))), x)  # exact on every backend
    rounded(lambda v: v * 0.1 + 1e-3, np.array([3.0, 7.0, 1 / 3], np.float32))  # Python scalars stay float32
    _check(lambda v: v.astype(jnp.float16).astype(jnp.float32), np.array([1 / 3, 65519.0, 1e-8], np.float32))
    _declines(lax.max, np.array([0.0], np.float32), np.array([-0.0], np.float32))  # the sign of zero
    # XLA:CPU flushes subnormal results and operands to zero (as TF's kernels do); NumPy keeps them
    _declines(lax.mul, np.array([3e-39], np.float32), np.array([3.0], np.float32))
    _declines(lax.mul, np.array([3e-38], np.float32), np.array([0.1], np.float32))
    _check(lambda v: jnp.concatenate([v, v[::-1]]), np.array([3e-39, 1.0], np.float32))  # moved, not computed
    _declines(lambda v: jnp.sum(v), x)  # summation order
    _declines(jnp.exp, x)
    _declines(lambda v: v.astype(jnp.int32), x)  # XLA saturates, NumPy is undefined


def test_float_arithmetic_is_left_to_other_backends(monkeypatch):
    monkeypatch.setattr(fold_module, "_cpu_backend", lambda: False)
    x = np.array([7.0, 1.0], np.float32)
    for fn in (lax.add, lax.sub, lax.mul, lax.div):
        _declines(fn, x, np.array([3.0, 3.0], np.float32))
    _declines(lax.sqrt, x)
    _check(lambda v: (lax.max(v, v[::-1]), lax.floor(v), v.astype(jnp.float16)), x)
    _check(lambda v: v * 3 + 1, np.array([7, 1], I32))


def test_conversions():
    with jax.enable_x64(True):
        big = np.array([2**40 + 5, -(2**33) - 1, 7], I64)
        _check(lambda v: v.astype(jnp.int32), big)  # wraps like XLA
        _check(lambda v: v.astype(jnp.float32), big)
        _check(lambda v: v.astype(jnp.uint8), np.array([-1, 256, 300], I32))
        _check(lambda v: (v != 0).astype(jnp.int64), np.array([0, 3], I32))


def test_layout_and_indexing():
    x = np.arange(24, dtype=I32).reshape(2, 3, 4)
    _check(lambda v: jnp.transpose(v, (2, 0, 1)).reshape(4, 6)[1:3, ::2], x)
    _check(lambda v: jnp.concatenate([v, v * 2], axis=1), x)
    _check(lambda v: jnp.stack([v[0], v[1]], axis=-1), x)
    _check(lambda v: jnp.pad(v, ((1, 0), (0, 2), (0, 0))), x)
    _check(lambda v: jnp.flip(v, 1) + lax.broadcasted_iota(jnp.int32, v.shape, 2), x)
    _check(lambda v: lax.dynamic_slice(v, (1, 2, -5), (1, 2, 3)), x)  # start indices clamped into range
    _check(lambda v: (jnp.prod(v[0], axis=1), jnp.max(v, axis=(0, 2)), jnp.any(v > 20, axis=0)), x)
    _check(lambda v: lax.squeeze(v[:, :1], (1,)), x)


@pytest.mark.parametrize("mode", ["fill", "clip"])
def test_take_along_an_axis(mode):
    x = np.arange(12, dtype=I32).reshape(3, 4) * 10
    idx = np.array([[0, 3], [-1, 4]], I32)
    for axis in (0, 1):
        _check(lambda v, i, axis=axis: jnp.take(v, i, axis=axis, mode=mode, fill_value=-9), x, idx)
    _check(lambda v: v[:, 2], x)

    def gather(v, i):  # lax's own default fill: NaN, INT_MIN
        dn = lax.GatherDimensionNumbers(offset_dims=(2,), collapsed_slice_dims=(0,), start_index_map=(0,))
        return lax.gather(v, i[..., None], dn, slice_sizes=(1, 4), mode="fill")

    _check(gather, x.astype(np.float32), idx)
    _check(gather, x, idx)


def test_while_loop():
    def loop(n, s):
        return lax.while_loop(lambda c: c[0] < n, lambda c: (c[0] + 1, c[1] * 3 + c[0]), (np.int32(0), s))

    _check(loop, np.int32(7), np.int32(1))


def test_values_a_lowering_needs_are_staged_as_constants():
    def reshape_to(v, shape):
        return jnp.reshape(v, tuple(int(d) for d in shape))  # needs the values of ``shape``

    cache = {}
    x = np.arange(6, dtype=I32)
    for shape in ([2, 3], [3, 2], [2, 3]):
        out = fold(cache, "n", reshape_to, [x, np.array(shape, I32)])
        np.testing.assert_array_equal(out, x.reshape(shape))
    assert len(cache) == 3  # the shapes entry (needs values) and one per distinct value
    with pytest.raises(Unfoldable):  # weights are not cache keys: the eager path folds them
        fold(cache, "n", reshape_to, [np.zeros(8192, np.float32), np.array([2, 4096], I32)])
    declared = {}
    out = fold(declared, "n", reshape_to, [x, np.array([3, 2], I32)], static=(1,))
    np.testing.assert_array_equal(out, x.reshape(3, 2))


def _compiles_during(fn):
    count = [0]

    def listen(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        out = fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return out, count[0]


def test_first_call_of_a_committed_model_compiles_one_program():
    model = jaxsm.load(os.path.join(DATA, "keras_convnet"))
    want = np.load(os.path.join(DATA, "keras_convnet.npz"))
    out, compiles = _compiles_during(lambda: jax.block_until_ready(model.serve(want["in_x"])))
    np.testing.assert_allclose(np.asarray(out), want["out_y"], rtol=1e-5, atol=1e-5)
    assert compiles == 1


def test_shape_arithmetic_folds_without_xla(tmp_path):
    tf = pytest.importorskip("tensorflow")

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, 6], tf.float32)])
        def f(self, x):
            s = tf.shape(x)
            n = tf.reduce_prod(s[:-1])
            flat = tf.reshape(x, tf.concat([[n], s[-1:]], 0))
            i = tf.constant(0)
            acc = tf.zeros([s[2]])
            i, acc = tf.while_loop(lambda i, a: i < s[0], lambda i, a: (i + 1, a + flat[i]), [i, acc])
            return flat * tf.cast(s[1] // 2 - s[0] % 3, tf.float32), acc, tf.gather(s, [2, -1 + 3, 0])

    path = str(tmp_path / "m")
    tf.saved_model.save(M(), path)
    x = np.random.default_rng(0).standard_normal((4, 5, 6)).astype(np.float32)
    want = tf.saved_model.load(path).f(tf.constant(x))
    model = jaxsm.load(path)
    got, compiles = _compiles_during(lambda: jax.block_until_ready(model.f(x)))
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), w.numpy(), rtol=1e-6)
    assert compiles == 1


def test_cache_is_bounded(monkeypatch):
    import jaxsm.graph.fold as fold_module

    monkeypatch.setattr(fold_module, "_MAX_CACHED", 4)
    cache = {}
    for n in range(1, 20):
        out = fold(cache, "n", lambda v, k: jnp.reshape(v, (int(k), -1)), [np.arange(n * 2, dtype=I32), np.int32(n)])
        assert out.shape == (n, 2)
        assert len(cache) <= 5


def test_a_node_needing_xla_is_known_after_staging_once(monkeypatch):
    import jaxsm.graph.fold as fold_module

    cache, staged = {}, []
    stage = fold_module._stage
    monkeypatch.setattr(fold_module, "_stage", lambda fn, args: staged.append(1) or stage(fn, args))
    for _ in range(3):
        with pytest.raises(Unfoldable, match="exp"):
            fold(cache, "n", lambda v: jnp.exp(v) + 1, [np.ones(3, np.float32)])
    assert len(staged) == 1


def test_lowerings_with_tf_derivatives_fold():
    """Maximum, Minimum, Relu, Abs, ClipByValue carry TF's registered gradients (a custom_jvp): folding evaluates
    their primal, so a Keras Normalization layer's max(variance, epsilon) of constants compiles nothing."""
    from jaxsm.ops import math as math_ops

    x = np.array([[-1.5, 0.0, 2.0], [3.0, 0.25, 7.5]], np.float32)
    _check(math_ops._maximum_tf, x, np.float32(1e-3))
    _check(math_ops._minimum_tf, x, np.float32(1.0))
    _check(math_ops._relu_tf, x)
    _check(math_ops._abs_tf, x)


def test_with_xla_what_numpy_cannot_fold_runs_as_one_program():
    """The interpreter folds with ``xla=True``: a lowering NumPy cannot evaluate exactly (transcendental functions,
    float reductions, float-to-int casts, integer division by zero, subnormals) runs as one jitted XLA program (the
    values of ``jax.jit``: XLA's, which may differ from eager XLA's in the last bit of a transcendental function),
    compiled once per staged node and shape, not once per primitive."""
    from jaxsm.ops import math as math_ops

    x = np.array([1.5, -0.0, np.nan, np.inf, 3e-37, -2.5, 7.0e9], np.float32)
    cases = [
        (lambda v: jnp.exp(v) * 2 + jnp.sum(v), [x]),
        (lambda v: (v.astype(jnp.int16), jnp.tanh(v).astype(jnp.int32)), [x[[0, 1, 4, 5]]]),
        (lax.div, [np.array([1, 2, -9], I32), np.array([1, 0, 2], I32)]),
        (lax.mul, [np.array([3e-39], np.float32), np.array([3.0], np.float32)]),
        (lambda v: jnp.cumsum(v.astype(jnp.bfloat16)), [x[[0, 1, 4, 5, 6]]]),
        # a bfloat16 Mean: a float32 sum divided behind an optimization barrier (under jax.ensure_compile_time_eval
        # a jitted call gave a row 1 ulp off: the program is compiled ahead and called as such)
        (
            lambda v: math_ops._mean(v, (2,), True),
            [(np.random.default_rng(0).standard_normal((3, 50, 7)) * 10).astype(jnp.bfloat16)],
        ),
    ]
    for fn, args in cases:
        want = [np.asarray(o) for o in jax.tree.leaves(jax.jit(fn)(*args))]
        cache = {}
        for _ in range(2):
            got = [np.asarray(o) for o in jax.tree.leaves(fold(cache, "n", fn, args, xla=True))]
            assert [g.dtype for g in got] == [w.dtype for w in want]
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
        with pytest.raises(Unfoldable):  # without xla: declined
            fold({}, "n", fn, args)

    def lowering(v):  # five primitives, each its own compilation when run eagerly
        return jnp.sin(v) * jnp.cos(v) + jnp.exp(-v) - jnp.tanh(v) * jnp.log1p(jnp.abs(v))

    y = np.linspace(-2, 2, 5, dtype=np.float32)
    cache = {}
    _, compiles = _compiles_during(lambda: fold(cache, "n", lowering, [y], xla=True))
    assert compiles == 1
    _, compiles = _compiles_during(lambda: fold(cache, "n", lowering, [y + 1], xla=True))
    assert compiles == 0


def test_with_xla_a_lowering_reading_input_values_still_runs_eagerly():
    """A lowering that reads an input's value (to_static) takes another path when that input is traced: its
    staged program is not the eager run, so fold declines and the interpreter runs it eagerly."""
    from jaxsm.graph.values import to_static

    def lowering(v):
        known = to_static(v)
        return jnp.exp(v) + (1.0 if known is not None and known.sum() > 0 else 0.0)

    with pytest.raises(Unfoldable):
        fold({}, "n", lowering, [np.array([1.0, 2.0], np.float32)], xla=True)


def test_op_by_op_cast_compiles_once(tmp_path):
    """A saved Cast float32 -> int16 run op by op (``pure()`` called eagerly): its lowering (clamp, NaN, truncation)
    was 13 eager compilations; now one program per node, with TF's values."""
    tf = pytest.importorskip("tensorflow")

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([6], tf.float32)])
        def f(self, x):
            return tf.cast(x * 3.0, tf.int16), tf.cast(tf.exp(x), tf.uint8)

    path = str(tmp_path / "m")
    tf.saved_model.save(M(), path)
    x = np.array([1.5, -2.7, np.nan, 1e6, -1e6, 0.49], np.float32)
    want = [w.numpy() for w in tf.saved_model.load(path).f(tf.constant(x))]
    cf = jaxsm.load(path).f.concrete_functions[0]
    (got, _), compiles = _compiles_during(lambda: cf.pure()({}, [x]))
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == w.dtype
        np.testing.assert_array_equal(np.asarray(g), w)
    # one per node (Mul folds with NumPy; the Casts and the Exp: a program each), and at most two small eager ones
    # JAX evaluates while staging (iota, lt); 16 before
    assert compiles <= 5


def test_compiled_programs_are_bounded(monkeypatch):
    """Each node staged as an XLA program holds a compiled executable: an op-by-op loop over ever new shapes
    must not keep thousands of them."""
    monkeypatch.setattr(fold_module, "_MAX_PROGRAMS", 3)
    cache = {}
    for n in range(1, 12):
        out = fold(cache, "n", jnp.exp, [np.zeros(n, np.float32)], xla=True)
        np.testing.assert_array_equal(out, np.ones(n, np.float32))
        assert cache[fold_module._PROGRAMS] <= 3


def test_with_jit_disabled_the_eager_path_runs():
    """Under jax.disable_jit() a compiled executable cannot run: fold declines and the lowering runs eagerly."""
    with jax.disable_jit():
        with pytest.raises(Unfoldable, match="jit disabled"):
            fold({}, "n", jnp.exp, [np.ones(3, np.float32)], xla=True)


def _check_jit(fn, *args):
    """fold() gives what the compiled program gives (XLA:CPU's order of accumulation, not eager dispatch's)."""
    args = [np.asarray(a) for a in args]
    want = [np.asarray(o) for o in jax.tree.leaves(jax.jit(fn)(*args))]
    got = [np.asarray(o) for o in jax.tree.leaves(fold({}, "node", fn, args))]
    assert [g.dtype for g in got] == [w.dtype for w in want]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_scatters_fold_in_xla_cpu_order():
    x = np.arange(12, dtype=I32).reshape(4, 3)
    idx = np.array([2, 0, 2, -1, 4, 3, 2], I32)  # duplicates, negative (wrapped by jnp), out of range (dropped)
    upd = np.arange(21, dtype=I32).reshape(7, 3) - 9
    for op in ("set", "add", "multiply", "min", "max"):
        _check(lambda v, i, u, op=op: getattr(jnp.asarray(v).at[i], op)(u), x, idx, upd)
        _check(lambda v, i, u, op=op: getattr(jnp.asarray(v).at[i], op)(u, mode="clip"), x, idx, upd)
    _check(lambda v, i, u: jnp.asarray(v).at[i, 1:].add(u[:, :2]), x, idx, upd)  # a window of part of a row
    _check(lambda v, i: jnp.asarray(v).at[i, i % 3].add(7), x, idx)  # two scatter dimensions
    # float sums whose value depends on the order of the additions
    big = np.array([1e8, 1.0, -1e8, 1.0, 3.5, -2.25, 1e-3, 1e8], np.float32)
    seg = np.array([0, 0, 0, 0, 1, 1, 0, 1], I32)
    if jax.default_backend() == "cpu":
        _check_jit(lambda d, s: jnp.zeros(2, jnp.float32).at[s].add(d), big, seg)
        _check_jit(lambda d, s: jax.ops.segment_max(d, s, num_segments=3), big, seg)
    r = np.random.default_rng(0)
    data = (r.standard_normal(200) * 10.0 ** r.integers(-3, 6, 200)).astype(np.float32)
    ids = r.integers(0, 5, 200).astype(I32)
    _check_jit(lambda d, s: jnp.zeros(5, jnp.float32).at[s].add(d), data, ids)
    _declines(
        lambda v, u: jnp.asarray(v).at[np.array([0])].max(u), np.array([0.0], np.float32), np.array([-0.0], np.float32)
    )


def test_sorts_scans_tiles_and_bitcasts():
    keys = np.array([[3, 1, 3, -2, 1, 0], [5, 5, 5, 1, 0, 5]], I32)
    vals = np.arange(12, dtype=I32).reshape(2, 6)
    _check(lambda k, v: lax.sort((k, v), dimension=1, num_keys=1, is_stable=True), keys, vals)
    _check(lambda k, v: lax.sort((k, v), dimension=0, num_keys=2), keys, vals)
    _check(lambda k, v: lax.sort((k.T, v.T), dimension=0, num_keys=1, is_stable=True), keys, vals)
    _declines(lambda k, v: lax.sort((k, v), dimension=1, num_keys=1, is_stable=False), keys, vals)  # ties
    _check(lambda k, v: lax.sort((k, v), dimension=1, num_keys=1, is_stable=False), vals[:, ::-1], keys)
    f = np.array([2.0, np.nan, -0.0, 0.0, -np.inf, -np.nan, 1.0, -0.0], np.float32)
    _check(lambda k: lax.sort((k, jnp.arange(8)), num_keys=1, is_stable=True), f)
    _check(lambda k: jnp.argsort(k, stable=True), f)
    _check(lambda v: (jnp.cumsum(v, axis=1), lax.cumsum(v, axis=0, reverse=True), lax.cumprod(v, axis=1)), keys)
    _check(lambda v: (lax.cummax(v, axis=1, reverse=True), lax.cummin(v, axis=0)), keys)
    _declines(lambda v: jnp.cumsum(v), np.array([0.1, 0.2, 0.3], np.float32))
    _check(lambda v: jnp.tile(v, (2, 3)), keys)
    _check(lambda v: lax.bitcast_convert_type(v, jnp.float32), keys)
    _check(lambda v: lax.bitcast_convert_type(v, jnp.uint8), keys)
    _check(lambda v: lax.bitcast_convert_type(v, jnp.int32), np.arange(8, dtype=np.uint8).reshape(2, 4))

    def body(c, x):
        return c * 3 + x, (c, x * 2)

    for reverse in (False, True):
        _check(lambda v, reverse=reverse: lax.scan(body, np.ones(6, I32), v, reverse=reverse), keys)
    _check(lambda v: lax.scan(body, np.ones(6, I32), v[:0]), keys)  # zero iterations


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, I32, np.uint32, I64, np.uint64])
def test_shifts_by_any_amount(dtype):
    info = np.iinfo(dtype)
    x = np.array([info.min, info.min + 3, 0, 5, info.max, 77, info.max - 9, 1, info.max - 2], dtype)
    bits = x.dtype.itemsize * 8
    amount = np.array([0, 1, 3, bits - 1, bits, bits + 3, 2 * bits, 7, 2], dtype)
    if info.min < 0:
        amount[-1] = -1  # a negative amount is out of range
    with jax.enable_x64(x.dtype.itemsize == 8):
        for fn in (lax.shift_left, lax.shift_right_arithmetic, lax.shift_right_logical):
            _check(fn, x, amount)
    _check(lambda a, b: lax.sort((a, b), num_keys=1, is_stable=True), np.array([3, 1, 2], I32), np.arange(3))
