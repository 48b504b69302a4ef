"""The tf.saved_model.load contract for tf.Module exports, round 3, probed against TF: tf.function features
(jit_compile, reduce_retracing, defaults and keyword-only arguments, ``*args``, nested dict/tuple/namedtuple/None
inputs and outputs, unknown-rank specs, Python floats for scalar specs, closures over other modules' variables,
calls of another module's saved function, tf.print/tf.Assert), tf.random.Generator streams call after call,
tf.Module's variable collections and their order, object graphs of a tf.train.Checkpoint root (shared children,
several signatures of one function, non-identifier output keys, functions never traced), and JAX transformations
of restored functions (jacfwd/jacrev/hessian through loops, conds, sorts, gathers, TensorArrays and linear
algebra, jax.checkpoint, vmap, lax.scan, donated buffers, eval_shape, jax.export) against TF's GradientTape and
batched runs."""

from __future__ import annotations

import collections
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsm
from jaxsm.errors import AssertFailedError, CallArgumentError, FunctionMatchError, VariableError

tf = pytest.importorskip("tensorflow")

Pt = collections.namedtuple("Pt", ["x", "y"])
f32 = np.float32


def _structure(tree, tf_side: bool):
    """The tree with each leaf replaced by 0 (None stays a leaf of its own), to compare containers and keys."""
    if tf_side:
        return tf.nest.map_structure(lambda v: None if v is None else 0, tree)
    return jax.tree.map(lambda v: None if v is None else 0, tree, is_leaf=lambda v: v is None)


def _assert_same(got, want, what: str, rtol: float = 1e-6, atol: float = 1e-6) -> None:
    """jaxsm's result ``got`` has TF's structure (container types, keys, Nones), shapes, dtypes and values."""
    assert _structure(got, False) == _structure(want, True), f"{what}: structure {got!r} != TF's {want!r}"
    got_leaves = jax.tree.leaves(got, is_leaf=lambda v: v is None)
    want_leaves = tf.nest.flatten(want)
    assert len(got_leaves) == len(want_leaves), what
    for g, w in zip(got_leaves, want_leaves):
        if w is None:
            assert g is None, what
            continue
        w, g = np.asarray(w), np.asarray(g)
        assert g.shape == w.shape and g.dtype == w.dtype, f"{what}: {g.shape} {g.dtype} != TF's {w.shape} {w.dtype}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=what)


# -- tf.function features ----------------------------------------------------------------------------------


def _features_module():
    class Other(tf.Module):
        def __init__(self):
            self.w = tf.Variable([0.5, -1.0])

        @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)])
        def scale(self, x):
            return x * self.w

    class Module(tf.Module):
        def __init__(self, other):
            self.other = other
            self.t = tf.Variable(1.5)

        @tf.function(jit_compile=True)
        def xla(self, x):
            return tf.reduce_sum(tf.sin(x) * self.t, axis=-1)

        @tf.function(reduce_retracing=True)
        def relaxed(self, x):
            return tf.shape(x)[0], x * 2.0

        @tf.function
        def kw(self, x, y=2.0, *, scale=3.0):
            return x * y + scale

        @tf.function
        def star(self, *args):
            return tf.add_n(list(args))

        @tf.function
        def mixed(self, x, *args, k=1.0):
            return x + tf.add_n(list(args)) * k

        @tf.function
        def opt(self, x, y=None):
            return x * 2 if y is None else x + y

        @tf.function
        def nest(self, d):
            a, b = d["pair"]
            p = d["pt"]
            y = None if p.y is None else p.y * 3
            return {"sum": a + b, "pt": Pt(p.x * 2, y), "none": None, "t": (a, [b * self.t])}

        @tf.function(
            input_signature=[
                {
                    "a": tf.TensorSpec([None], tf.float32),
                    "b": (tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.float32)),
                }
            ]
        )
        def dict_spec(self, d):
            return {"s": d["a"] * tf.cast(d["b"][0], tf.float32), "t": [d["b"][1], d["b"][1] * self.t]}

        @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
        def any_rank(self, x):
            return tf.reduce_sum(x) + tf.cast(tf.rank(x), tf.float32), tf.shape(x)

        @tf.function(input_signature=[tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32)])
        def scalars(self, a, n):
            return a * 2, n + 1

        @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)])
        def closes(self, x):
            return x + self.other.w

        @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)])
        def calls_other(self, x):
            return self.other.scale(x) + 1.0

    m = Module(Other())
    m.xla(tf.constant([1.0, 2.0]))
    m.xla(tf.constant([[1.0, 2.0, 3.0]]))
    for n in (1, 2, 3):
        m.relaxed(tf.range(n, dtype=tf.float32))
    m.kw(tf.constant(1.0))
    m.kw(tf.constant(1.0), tf.constant(4.0))
    m.kw(tf.constant(1.0), scale=tf.constant(5.0))
    m.kw(tf.constant(1.0), scale=7.0)
    m.star(tf.constant(1.0), tf.constant(2.0))
    m.star(tf.constant(1.0), tf.constant(2.0), tf.constant(3.0))
    m.mixed(tf.constant(1.0), tf.constant(2.0), tf.constant(3.0))
    m.mixed(tf.constant(1.0), tf.constant(2.0), k=tf.constant(4.0))
    m.opt(tf.constant(1.0))
    m.opt(tf.constant(1.0), tf.constant(3.0))
    m.nest({"pair": (tf.constant(1.0), tf.constant(2.0)), "pt": Pt(tf.constant([1.0]), tf.constant(3))})
    m.nest({"pair": (tf.constant(1.0), tf.constant(2.0)), "pt": Pt(tf.constant([1.0, 2.0]), None)})
    return m


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("features") / "m")
    tf.saved_model.save(_features_module(), path)
    return tf.saved_model.load(path), jaxsm.load(path)


_CALLS = {
    "jit_compile vector": lambda o: o.xla(np.array([1.0, 2.0], f32)),
    "jit_compile matrix": lambda o: o.xla(np.array([[1.0, 2.0, 3.0]], f32)),
    "reduce_retracing, a length never traced": lambda o: o.relaxed(np.arange(5, dtype=f32)),
    "reduce_retracing, a traced length": lambda o: o.relaxed(np.arange(1, dtype=f32)),
    "default argument": lambda o: o.kw(f32(1.0)),
    "positional default given": lambda o: o.kw(f32(1.0), f32(4.0)),
    "positional default by keyword": lambda o: o.kw(f32(1.0), y=f32(4.0)),
    "keyword-only tensor": lambda o: o.kw(f32(1.0), scale=f32(5.0)),
    "keyword-only Python value traced": lambda o: o.kw(f32(1.0), scale=7.0),
    "keyword-only Python value converted": lambda o: o.kw(f32(1.0), scale=8.0),
    "*args of two": lambda o: o.star(f32(1.0), f32(2.0)),
    "*args of three": lambda o: o.star(f32(1.0), f32(2.0), f32(3.0)),
    "*args and keyword default": lambda o: o.mixed(f32(1.0), f32(2.0), f32(3.0)),
    "*args and keyword": lambda o: o.mixed(f32(1.0), f32(2.0), k=f32(4.0)),
    "None default": lambda o: o.opt(f32(1.0)),
    "explicit None": lambda o: o.opt(f32(1.0), None),
    "None replaced": lambda o: o.opt(x=f32(1.0), y=f32(5.0)),
    "nested dict/tuple/namedtuple": lambda o: o.nest(
        {"pair": (f32(1.0), f32(2.0)), "pt": Pt(np.array([1.0], f32), np.int32(3))}
    ),
    "namedtuple with a None field": lambda o: o.nest(
        {"pair": (f32(1.0), f32(2.0)), "pt": Pt(np.array([1.0, 2.0], f32), None)}
    ),
    "dict input_signature": lambda o: o.dict_spec(
        {"a": np.array([1.0, 2.0, 3.0], f32), "b": (np.int32(2), np.ones(2, f32))}
    ),
    "dict input_signature, Python values": lambda o: o.dict_spec({"a": [1.0, 2.0], "b": (2, [1.0, 2.0])}),
    "unknown rank, scalar": lambda o: o.any_rank(f32(2.0)),
    "unknown rank, matrix": lambda o: o.any_rank(np.ones((2, 3), f32)),
    "unknown rank, Python float": lambda o: o.any_rank(2.5),
    "unknown rank, nested list": lambda o: o.any_rank([[1.0, 2.0]]),
    "scalar specs, Python numbers": lambda o: o.scalars(1.5, 2),
    "scalar specs, Python int for a float": lambda o: o.scalars(1, 2),
    "closure over another module's variable": lambda o: o.closes(np.array([1.0, 2.0], f32)),
    "another module's saved function": lambda o: o.calls_other(np.array([1.0, 2.0], f32)),
    "the other module's function itself": lambda o: o.other.scale(np.array([1.0, 2.0], f32)),
}


@pytest.mark.parametrize("case", sorted(_CALLS))
def test_function_features_match_tf(features, case):
    ref, got = features
    _assert_same(_CALLS[case](got), _CALLS[case](ref), case)


@pytest.mark.parametrize("case", sorted(_CALLS))
def test_function_features_under_jit(features, case):
    """The same calls inside the caller's jax.jit (array arguments become tracers; Python values stay)."""
    ref, got = features
    want = _CALLS[case](ref)

    def traced(*arrays):
        leaves = iter(arrays)
        return _CALLS[case](_Swap(got, leaves))

    # run once eagerly to record the array arguments, then again under jit with them as tracers
    recorder = _Recorder(got)
    _CALLS[case](recorder)
    _assert_same(jax.jit(traced)(*recorder.arrays), want, case)


class _Recorder:
    """Stands for the loaded object and records the NumPy arrays of each call's arguments."""

    def __init__(self, obj, arrays=None):
        self.obj, self.arrays = obj, [] if arrays is None else arrays

    def __getattr__(self, name):
        target = getattr(self.obj, name)
        if not callable(target):
            return _Recorder(target, self.arrays) if isinstance(target, jaxsm.UserObject) else target
        rec = self

        def call(*args, **kwargs):
            rec.arrays.extend(x for x in jax.tree.leaves((args, kwargs)) if isinstance(x, np.ndarray | np.generic))
            return target(*args, **kwargs)

        return call


class _Swap:
    """Stands for the loaded object and replaces each NumPy argument with the next traced array."""

    def __init__(self, obj, arrays):
        self.obj, self.arrays = obj, arrays

    def __getattr__(self, name):
        target = getattr(self.obj, name)
        if not callable(target):
            return _Swap(target, self.arrays) if isinstance(target, jaxsm.UserObject) else target

        def call(*args, **kwargs):
            swap = lambda x: next(self.arrays) if isinstance(x, np.ndarray | np.generic) else x  # noqa: E731
            args, kwargs = jax.tree.map(swap, (args, kwargs))
            return target(*args, **kwargs)

        return call


def test_calls_tf_rejects_are_rejected(features):
    """Too many positional arguments (keyword-only ``scale``) is a TypeError in both; ``*args`` with a keyword
    that no trace had, and a plain tuple for a namedtuple trace, fit no trace (ValueError in both)."""
    ref, got = features
    with pytest.raises(TypeError):
        ref.kw(f32(1.0), 2.0, 7.0)
    with pytest.raises(CallArgumentError):
        got.kw(f32(1.0), 2.0, 7.0)
    with pytest.raises(ValueError):
        ref.mixed(f32(1.0), f32(2.0), f32(3.0), k=f32(4.0))
    with pytest.raises(FunctionMatchError):
        got.mixed(f32(1.0), f32(2.0), f32(3.0), k=f32(4.0))
    tuple_not_pt = {"pair": (f32(1.0), f32(2.0)), "pt": (np.array([1.0], f32), np.int32(3))}
    with pytest.raises(ValueError):
        ref.nest(tuple_not_pt)
    with pytest.raises(FunctionMatchError):
        got.nest(tuple_not_pt)


def test_print_and_assert(tmp_path):
    """tf.print does not stop a call (a compiled call prints nothing: gaps table), and a failing tf.Assert or
    tf.debugging.assert_less raises with TF's message, where TF raises InvalidArgumentError."""

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)])
        def f(self, x):
            tf.print("x is", x, output_stream=sys.stderr)
            tf.debugging.assert_less(x, 10.0, message="too big")
            tf.Assert(tf.reduce_all(x > 0), ["x must be positive", x])
            return x * 2

    path = str(tmp_path / "m")
    tf.saved_model.save(Module(), path)
    ref, got = tf.saved_model.load(path), jaxsm.load(path)
    x = np.array([1.0, 2.0], f32)
    _assert_same(got.f(x), ref.f(x), "passing asserts")
    for bad, message in (([-1.0, 2.0], "x must be positive"), ([1.0, 20.0], "too big")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            ref.f(np.array(bad, f32))
        with pytest.raises(AssertFailedError, match=message):
            got.f(np.array(bad, f32))


# -- tf.random.Generator ---------------------------------------------------------------------------------------


def _generator_module():
    class Module(tf.Module):
        def __init__(self):
            self.gen = tf.random.Generator.from_seed(7)

        @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
        def draw(self, x):
            return {
                "normal": x + self.gen.normal([3]),
                "uniform": self.gen.uniform([4]),
                "truncated": self.gen.truncated_normal([2]),
                "int32": self.gen.uniform([2], -3, 5, dtype=tf.int32),
                "int64": self.gen.uniform([5], 0, 100, dtype=tf.int64),
                "int64 wide": self.gen.uniform([3], -5, 2**31 - 7, dtype=tf.int64),
                "legacy int64": tf.random.uniform([4], 3, 1000, dtype=tf.int64, seed=5),
                "stateless int64": tf.random.stateless_uniform([4], [1, 2], 3, 1000, dtype=tf.int64),
                "float64 normal": self.gen.normal([3], dtype=tf.float64),
                "float64 truncated": self.gen.truncated_normal([3], dtype=tf.float64),
                "legacy float64 uniform": tf.random.uniform([3], dtype=tf.float64, seed=4),
                "stateless float64": tf.random.stateless_normal([3], [1, 2], dtype=tf.float64),
                "categorical": tf.random.categorical(
                    tf.math.log([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]), 5, seed=3
                ),
            }

    return Module()


@pytest.mark.parametrize("x64", [True, False])
def test_generator_draws_follow_tf(tmp_path, x64):
    """Three calls drawing from a tf.random.Generator (and a seeded legacy op) give TF's numbers and leave TF's
    generator state. With jax_enable_x64 off (64-bit results computed in 32 bits, jaxsm warns), int64 uniform
    integers took the remainder of the 64-bit random bits truncated to 32 bits (wrong numbers; the bounds fit in
    32 bits, so TF's are computable), and float64 uniforms bitcast word pairs to a float64 JAX does not have:
    garbage normals and NaNs, and tf.random.categorical (float64 uniforms inside) failed to lower."""
    path = str(tmp_path / "m")
    tf.saved_model.save(_generator_module(), path)
    ref = tf.saved_model.load(path)
    x = np.zeros(3, f32)
    with jax.enable_x64(x64):
        got = jaxsm.load(path)
        for call in range(3):
            want, out = ref.draw(x), got.draw(x)
            for key in want:
                w, g = want[key].numpy(), np.asarray(out[key])
                if not x64 and w.dtype.itemsize == 8:
                    w = w.astype(w.dtype.kind + "4")  # computed in 32 bits with x64 off (jaxsm warns); values fit
                assert g.dtype == w.dtype, key
                # normals: TF's sin/cos/log are the C library's, XLA's differ in the last bits
                np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6, err_msg=f"{key}, call {call}")
            state = np.asarray(got.gen._state_var.numpy())
            np.testing.assert_array_equal(state, ref.gen._state_var.numpy().astype(state.dtype), f"state {call}")


# -- variables --------------------------------------------------------------------------------------------------


def test_variable_collections_follow_tf_module_order(tmp_path):
    """``variables``/``trainable_variables``/``non_trainable_variables`` of a restored tf.Module (TF's loaded
    object has none) list the variables in the original tf.Module's order: attributes sorted by name, dicts by
    key, then the submodules found there; each variable once, also when reachable twice. jaxsm listed them in
    the saved object graph's order (attribute assignment order, dicts unsorted, submodules depth first)."""
    inner = tf.Module()
    inner.z = tf.Variable([7.0])
    inner.frozen = tf.Variable(8.0, trainable=False)
    m = tf.Module()
    m.zeta = tf.Variable(1.0)
    m.sub = inner
    m.frozen = tf.Variable(3.0, trainable=False)
    m.lst = [tf.Variable(4.0), tf.Variable(5.0, trainable=False), inner]
    m.dct = {"b": tf.Variable(6.0), "a": tf.Variable(9.0)}
    m.alias = m.zeta
    path = str(tmp_path / "m")
    tf.saved_model.save(m, path)
    got = jaxsm.load(path)
    for attr in ("variables", "trainable_variables", "non_trainable_variables"):
        want = [(v.numpy().tolist(), v.trainable) for v in getattr(m, attr)]
        assert [(v.numpy().tolist(), v.trainable) for v in getattr(got, attr)] == want, attr
    assert got.sub.z is got.lst[2].z, "a module reachable twice is one object"
    assert got.alias is got.zeta
    assert not got.frozen.trainable and got.lst[0].trainable and not got.lst[1].trainable


# -- object graphs ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_root(tmp_path_factory):
    child = tf.Module()
    child.v = tf.Variable([1.0, 2.0])
    a, b = tf.Module(), tf.Module()
    a.child = b.child = child
    root = tf.train.Checkpoint(a=a, b=b, step=tf.Variable(3, dtype=tf.int64))
    root.f = tf.function(lambda x: x * child.v, input_signature=[tf.TensorSpec([2], tf.float32)])
    never = tf.Module()
    never.w = tf.Variable(1.0)
    never.g = tf.function(lambda x: x + never.w)  # never traced
    root.never = never

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def dict_out(x):
        return {"out-1": x * 2, "a b": x + 1, "0": tf.reduce_sum(x)}

    @tf.function
    def multi(x):
        return {"y": x * 3}

    root.dict_out, root.multi = dict_out, multi
    signatures = {
        "vector": multi.get_concrete_function(tf.TensorSpec([2], tf.float32, name="x")),
        "matrix": multi.get_concrete_function(tf.TensorSpec([None, 2], tf.float64, name="x")),
        "dict": dict_out.get_concrete_function(),
    }
    path = str(tmp_path_factory.mktemp("ckpt_root") / "m")
    tf.saved_model.save(root, path, signatures=signatures)
    return tf.saved_model.load(path), jaxsm.load(path)


def test_checkpoint_root_object_graph(checkpoint_root):
    ref, got = checkpoint_root
    assert ref.a.child is ref.b.child
    assert got.a.child is got.b.child, "a child reachable two ways is one object"
    assert got.a.child.v is got.b.child.v
    _assert_same(got.step.numpy(), ref.step.numpy(), "step")
    _assert_same(got.f(np.array([1.0, 3.0], f32)), ref.f(np.array([1.0, 3.0], f32)), "f")
    got.a.child.v.assign([5.0, 6.0])
    np.testing.assert_allclose(got.f(np.array([1.0, 3.0], f32)), [5.0, 18.0], err_msg="f reads the shared child")
    got.a.child.v.assign([1.0, 2.0])


def test_signatures_of_one_function_and_odd_keys(checkpoint_root):
    """Two signatures of one tf.function (different shapes and dtypes) and a signature whose output keys are not
    Python identifiers."""
    ref, got = checkpoint_root
    assert sorted(got.signatures) == sorted(ref.signatures) == ["dict", "matrix", "vector"]
    cases = {
        "vector": {"x": np.array([1.0, 2.0], f32)},
        "matrix": {"x": np.ones((3, 2), np.float64)},
        "dict": {"x": np.array([1.0, 2.0], f32)},
    }
    for key, kwargs in cases.items():
        _assert_same(got.signatures[key](**kwargs), ref.signatures[key](**kwargs), key)
        assert sorted(got.signatures[key].structured_outputs) == sorted(ref.signatures[key].structured_outputs)
    _assert_same(got.dict_out(np.array([1.0, 2.0], f32)), ref.dict_out(np.array([1.0, 2.0], f32)), "dict_out")
    _assert_same(got.multi(np.ones((1, 2))), ref.multi(np.ones((1, 2))), "multi: the float64 trace")


def test_function_never_traced(checkpoint_root):
    """A tf.function saved without any trace loads, and a call raises ValueError (TF: "Found zero restored
    functions for caller function")."""
    ref, got = checkpoint_root
    with pytest.raises(ValueError, match="zero restored functions"):
        ref.never.g(f32(1.0))
    with pytest.raises(FunctionMatchError, match="no traces"):
        got.never.g(f32(1.0))
    assert got.never.w.numpy() == 1.0


def test_skip_checkpoint_leaves_variables_unset(tmp_path):
    """``LoadOptions(experimental_skip_checkpoint=True)``: TF gives variables without their saved values; jaxsm
    leaves them uninitialized, so a function reading one raises until it is assigned."""
    root = tf.train.Checkpoint(v=tf.Variable([1.0, 2.0]))
    root.f = tf.function(lambda x: x * root.v, input_signature=[tf.TensorSpec([2], tf.float32)])
    path = str(tmp_path / "m")
    tf.saved_model.save(root, path)
    got = jaxsm.load(path, options=jaxsm.LoadOptions(experimental_skip_checkpoint=True))
    assert not got.v.initialized
    with pytest.raises(VariableError):
        got.f(np.ones(2, f32))
    got.v.assign([3.0, 4.0])
    np.testing.assert_allclose(got.f(np.ones(2, f32)), [3.0, 4.0])
    partial = jaxsm.load(path, options=jaxsm.LoadOptions(allow_partial_checkpoint=True))
    np.testing.assert_allclose(partial.f(np.ones(2, f32)), [1.0, 2.0])


# -- JAX transformations ---------------------------------------------------------------------------------------


def _transforms_module():
    class Module(tf.Module):
        def __init__(self):
            self.w = tf.Variable([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7]])
            self.b = tf.Variable([0.1, 0.2, 0.3])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def dense(self, x):
            return tf.tanh(x @ self.w + self.b)

        @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
        def loop(self, x):
            def body(i, h):
                return i + 1, tf.sin(h) * self.b + tf.cond(tf.reduce_sum(h) > 0, lambda: h * h, lambda: -h)

            return tf.while_loop(lambda i, h: i < 3, body, [0, x])[1]

        @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
        def sort_gather(self, x):
            s = tf.sort(x * self.b)
            return s * tf.gather(x, tf.argsort(x)) + tf.gather(self.b, [2, 0, 1]) * x + tf.math.top_k(x, 2).values[0]

        @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
        def cond(self, x):
            return tf.cond(x[0] > 0, lambda: tf.exp(x) * self.b, lambda: tf.square(x))

        @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
        def scans(self, x):
            return tf.math.cumprod(x) + tf.math.reduce_max(x) * tf.linalg.norm(x * self.b)

        @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
        def tensor_array(self, x):
            ta = tf.TensorArray(tf.float32, size=3)
            h = x
            for i in tf.range(3):
                h = tf.tanh(h * self.b + x[i])
                ta = ta.write(i, h)
            return ta.stack()

        @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
        def linalg(self, x):
            a = tf.linalg.diag(x * x + 1.0) + self.b[:, None] * self.b
            x2 = tf.linalg.solve(a, x[:, None])[:, 0]
            return x2 + tf.reduce_sum(tf.linalg.cholesky(a)) + tf.linalg.det(a) + tf.einsum("i,j->", x, self.b)

        @tf.function(input_signature=[tf.TensorSpec([3], tf.float32), tf.TensorSpec([], tf.int32)])
        def run_time_loop(self, x, n):
            return tf.while_loop(lambda i, h: i < n, lambda i, h: (i + 1, tf.sin(h) * self.b + h), [0, x])[1]

    return Module()


@pytest.fixture(scope="module")
def transforms(tmp_path_factory):
    m = _transforms_module()
    path = str(tmp_path_factory.mktemp("transforms") / "m")
    tf.saved_model.save(m, path)
    return m, jaxsm.load(path)


_X3 = np.array([0.4, -0.2, 0.9], f32)
_VECTOR_FNS = ["loop", "sort_gather", "cond", "scans", "tensor_array", "linalg"]


def _tf_jacobian(f, x):
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        y = f(xt)
    return tape.jacobian(y, xt, experimental_use_pfor=False).numpy()


def _tf_hessian(f, x):
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(xt)
        with tf.GradientTape() as inner:
            inner.watch(xt)
            y = tf.reduce_sum(f(xt))
        g = inner.gradient(y, xt)
    return outer.jacobian(g, xt, experimental_use_pfor=False).numpy()


@pytest.mark.parametrize("name", _VECTOR_FNS)
def test_jacobians_and_hessians_match_tf(transforms, name):
    """Forward and reverse mode through restored loops, conds, sorts, gathers and cumulative ops
    (``jaxsm.functional``), also under jit, against TF's GradientTape jacobians."""
    m, got = transforms
    apply, params = jaxsm.functional(getattr(got, name))
    f = lambda x: apply(params, x)  # noqa: E731
    want = _tf_jacobian(getattr(m, name), _X3)
    np.testing.assert_allclose(jax.jacfwd(f)(_X3), want, rtol=1e-5, atol=1e-6, err_msg="jacfwd")
    np.testing.assert_allclose(jax.jit(jax.jacrev(f))(_X3), want, rtol=1e-5, atol=1e-6, err_msg="jacrev")
    hess = jax.hessian(lambda x: jnp.sum(f(x)))(_X3)
    np.testing.assert_allclose(hess, _tf_hessian(getattr(m, name), _X3), rtol=1e-4, atol=1e-5, err_msg="hessian")
    grad = jax.grad(jax.checkpoint(lambda x: jnp.sum(f(x))))(_X3)
    np.testing.assert_allclose(
        grad, want.reshape(-1, 3).sum(axis=0), rtol=1e-5, atol=1e-6, err_msg="grad of jax.checkpoint"
    )
    # the jacobian with respect to the variables: TF's tape over the module's variables
    xt = tf.constant(_X3)
    with tf.GradientTape(persistent=True) as tape:
        y = getattr(m, name)(xt)
    want_b = tape.jacobian(y, m.b, experimental_use_pfor=False).numpy()
    np.testing.assert_allclose(jax.jacfwd(lambda p: apply(p, _X3))(params)["b"], want_b, rtol=1e-5, atol=1e-6)


def test_forward_mode_through_a_run_time_loop(transforms):
    """A loop whose trip count is an input runs as lax.while_loop: forward mode works (reverse mode does not,
    see gaps) and gives TF's jacobian; vmap with a different trip count per example gives TF's results."""
    m, got = transforms
    apply, params = jaxsm.functional(got.run_time_loop)
    want = _tf_jacobian(lambda x: m.run_time_loop(x, tf.constant(3)), _X3)
    got_j = jax.jit(jax.jacfwd(lambda x, n: apply(params, x, n)))(_X3, np.int32(3))
    np.testing.assert_allclose(got_j, want, rtol=1e-5, atol=1e-6)
    xs, ns = np.stack([_X3, 2 * _X3]), np.array([2, 4], np.int32)
    want = np.stack([m.run_time_loop(x, n).numpy() for x, n in zip(xs, ns)])
    np.testing.assert_allclose(jax.vmap(got.run_time_loop)(xs, ns), want, rtol=1e-5, atol=1e-6, err_msg="vmap")


def test_vmap_scan_and_donation_of_restored_methods(transforms):
    """jax.vmap of restored methods themselves (reading variables; a loop with a cond on batched values), a
    lax.scan over one, and jit with donated arguments, against TF run on the batch."""
    m, got = transforms
    rng = np.random.default_rng(0)
    xb = rng.normal(size=(4, 2)).astype(f32)
    want = m.dense(xb).numpy()
    np.testing.assert_allclose(jax.vmap(lambda x: got.dense(x[None])[0])(xb), want, rtol=1e-5, atol=1e-6)
    xs = rng.normal(size=(4, 3)).astype(f32)
    want_loop = np.stack([m.loop(x).numpy() for x in xs])
    np.testing.assert_allclose(jax.vmap(got.loop)(xs), want_loop, rtol=1e-5, atol=1e-6, err_msg="vmap loop")

    def step(carry, x):
        y = got.dense((x + carry[:2])[None])[0]
        return y, y

    _, ys = jax.lax.scan(step, jnp.zeros(3, jnp.float32), xb)
    carry, outs = tf.zeros(3), []
    for x in xb:
        carry = m.dense((x + carry[:2])[None])[0]
        outs.append(carry.numpy())
    np.testing.assert_allclose(ys, np.stack(outs), rtol=1e-5, atol=1e-6, err_msg="scan")

    apply, params = jaxsm.functional(got.dense)
    donated = jax.jit(apply, donate_argnums=(1,))(params, jnp.asarray(xb))
    np.testing.assert_allclose(donated, want, rtol=1e-5, atol=1e-6, err_msg="donated input")
    donated = jax.jit(lambda x: got.dense(x), donate_argnums=(0,))(jnp.asarray(xb))
    np.testing.assert_allclose(donated, want, rtol=1e-5, atol=1e-6, err_msg="donated input, restored method")
    np.testing.assert_allclose(got.dense(xb), want, rtol=1e-5, atol=1e-6, err_msg="variables survive donation")


def test_eval_shape_and_export(transforms):
    """jax.eval_shape with ShapeDtypeStructs, and jax.export with a symbolic batch (serialized and called back),
    of restored methods and their pure functions."""
    m, got = transforms
    spec = jax.ShapeDtypeStruct((7, 2), jnp.float32)
    assert jax.eval_shape(got.dense, spec) == jax.ShapeDtypeStruct((7, 3), jnp.float32)
    apply, params = jaxsm.functional(got.dense)
    assert jax.eval_shape(apply, params, spec) == jax.ShapeDtypeStruct((7, 3), jnp.float32)
    assert jax.eval_shape(got.loop, jax.ShapeDtypeStruct((3,), jnp.float32)).shape == (3,)

    (batch,) = jax.export.symbolic_shape("b")
    sym = jax.ShapeDtypeStruct((batch, 2), jnp.float32)
    xb = np.random.default_rng(1).normal(size=(5, 2)).astype(f32)
    want = m.dense(xb).numpy()
    exported = jax.export.deserialize(jax.export.export(jax.jit(apply))(params, sym).serialize())
    np.testing.assert_allclose(exported.call(params, xb), want, rtol=1e-5, atol=1e-6, err_msg="export apply")
    exported = jax.export.export(jax.jit(got.dense))(sym)
    np.testing.assert_allclose(exported.call(xb), want, rtol=1e-5, atol=1e-6, err_msg="export method")
    apply, params = jaxsm.functional(got.loop)
    exported = jax.export.export(jax.jit(apply))(params, jax.ShapeDtypeStruct((3,), jnp.float32))
    np.testing.assert_allclose(exported.call(params, _X3), m.loop(_X3).numpy(), rtol=1e-5, atol=1e-6)


_KINKS = {
    "relu": lambda x: tf.nn.relu(x),
    "relu of relu": lambda x: tf.nn.relu(tf.nn.relu(x) - 1.0),
    "relu6": lambda x: tf.nn.relu6(x),
    "maximum": lambda x: tf.maximum(x, 0.0) + tf.maximum(x, tf.reverse(x, [0])),
    "minimum": lambda x: tf.minimum(x, 6.0) + tf.minimum(tf.reverse(x, [0]), x),
    "abs": lambda x: tf.abs(x) + tf.pow(tf.abs(x) + 1.0, 0.5),
    "clip_by_value": lambda x: tf.clip_by_value(x, 0.0, 6.0) + tf.clip_by_value(x, x[1], x[4]),
    "segment max/min of zero": lambda x: tf.concat(
        [
            tf.math.unsorted_segment_min(x, [0, 0, 1, 1, 2, 2, 0, 1, 2], 3),
            tf.math.segment_max(x, [0, 1, 1, 2, 2, 3, 3, 3, 3]),
        ],
        0,
    ),
    "lgamma and digamma": lambda x: tf.math.lgamma(x * x + 1.0) + tf.math.digamma(x * x + 1.0),
}


@pytest.mark.parametrize("name", sorted(_KINKS))
def test_gradients_at_kinks_and_ties_follow_tf(tmp_path, name):
    """TF's registered gradients pick a side where a function has a kink or a tie: Relu/Relu6 pass nothing at
    0 (and 6), Maximum/Minimum give a tie to x, Abs has slope sign(0) = 0, ClipByValue passes at its bounds.
    jaxsm differentiated jnp.maximum/jnp.abs: half the gradient at ties and at Relu(0), slope 1 for Abs at 0, so
    a gradient through relu(relu(x)) differed wherever the inner Relu gave 0. A segment max or min of 0 lost its
    gradient (the sign fix of zeros made it a constant), and the branch-free Lgamma/Digamma formulas had
    gradients 0 at 1 and 2 (Lgamma) and NaN (Digamma) where TF's are digamma and polygamma(1, x). Reverse and
    forward mode, and a weighted sum so every output element counts differently."""
    m = tf.Module()
    m.f = tf.function(_KINKS[name], input_signature=[tf.TensorSpec([9], tf.float32)])
    path = str(tmp_path / "m")
    tf.saved_model.save(m, path)
    x = np.array([0.0, 1.0, 1.0, -2.0, 6.0, 0.0, 3.0, 3.0, -1.0], f32)
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        y = m.f(xt)
        weighted = tf.reduce_sum(y * tf.range(1.0, 1.0 + tf.cast(tf.size(y), tf.float32)))
    want = tape.gradient(weighted, xt).numpy()
    want_jac = tape.jacobian(y, xt, experimental_use_pfor=False).numpy()
    apply, params = jaxsm.functional(jaxsm.load(path).f)
    got = jax.grad(lambda v: jnp.sum(apply(params, v) * jnp.arange(1.0, 1.0 + y.shape[0], dtype=jnp.float32)))(x)
    np.testing.assert_allclose(got, want, rtol=1e-6, err_msg="jax.grad")
    np.testing.assert_allclose(
        jax.jit(jax.jacfwd(lambda v: apply(params, v)))(x), want_jac, rtol=1e-6, err_msg="jacfwd"
    )


def test_second_derivatives_at_kinks_follow_tf(tmp_path):
    """jax.hessian (forward over reverse) through the same ops: TF's choice at a tie holds for the second
    derivative too (the custom derivative's own primal output was differentiated the JAX way: a Maximum tie's
    d/dx max(x, y) was 0.5 inside the first derivative)."""

    def f(x):
        terms = tf.nn.relu(x) ** 3 + tf.maximum(x, 0.5) ** 2 + tf.abs(x) ** 3 + tf.clip_by_value(x, -1.0, 2.0) ** 2
        return tf.reduce_sum(terms + tf.math.lgamma(x * x + 1.0))

    m = tf.Module()
    m.f = tf.function(f, input_signature=[tf.TensorSpec([5], tf.float32)])
    path = str(tmp_path / "m")
    tf.saved_model.save(m, path)
    x = np.array([0.0, 0.5, -1.0, 2.0, 1.3], f32)
    np.testing.assert_allclose(jax.jit(jax.hessian(jaxsm.load(path).f))(x), _tf_hessian(m.f, x), rtol=1e-5, atol=1e-5)
