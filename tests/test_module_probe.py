"""The tf.saved_model.load contract for tf.Module exports, probed against TF: what restored functions return,
how a call picks a concrete function, restored variables' assign rules, signatures' inputs/outputs, and calls
inside jax transformations."""

from __future__ import annotations

import collections
import warnings

import jax
import numpy as np
import pytest

import jaxsm
from jaxsm.errors import FunctionMatchError, JaxsmError, VariableError

tf = pytest.importorskip("tensorflow")

Pt = collections.namedtuple("Pt", ["x", "y"])


def _module():
    class Module(tf.Module):
        def __init__(self):
            self.v = tf.Variable(2.0)
            self.table = tf.lookup.experimental.MutableHashTable(tf.int64, tf.float32, default_value=-1.0)
            self.none_shaped = tf.Variable([1.0, 2.0], shape=tf.TensorShape(None))
            self.rows = tf.Variable([[1.0, 2.0]], shape=tf.TensorShape([None, 2]))
            self.small = tf.Variable(np.array([1, 2], np.int8))
            self.flags = tf.Variable([True, False])
            self.text = tf.Variable(["a", "bc"])

        @tf.function
        def f(self, x, flag=True, n=3):
            y = x * self.v
            if flag:
                y = y + n
            return y

        @tf.function
        def nested(self, d):
            return d["a"] + d["b"][0] * d["b"][1]

        @tf.function
        def point(self, p):
            return p.x - p.y

        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def bump(self, x):
            self.v.assign_add(x)

        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def scaled(self, x):
            return x * self.v

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.float32)])
        def insert(self, k, v):
            self.table.insert(k, v)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
        def lookup(self, k):
            return self.table.lookup(k)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="inp"), tf.TensorSpec([], tf.int32)])
        def two(self, x, n):
            return {"out": x * tf.cast(n, tf.float32), "aux": n + 1}

    m = Module()
    x = tf.constant([1.0, 2.0])
    m.f(x), m.f(x, flag=False), m.f(x, n=5)
    m.nested({"a": x, "b": (x, x)})
    m.point(Pt(x, x))
    return m


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    m = _module()
    path = str(tmp_path_factory.mktemp("probe") / "m")
    tf.saved_model.save(m, path, signatures={"serving_default": m.scaled, "two": m.two})
    return path


@pytest.fixture()
def both(saved):
    """A fresh TF and jaxsm load (tests change variables and tables)."""
    return tf.saved_model.load(saved), jaxsm.load(saved)


def test_functions_returning_nothing_give_none(both):
    ref, got = both
    assert ref.bump(np.float32(1.0)) is None
    assert got.bump(np.float32(1.0)) is None, "a function without outputs returns None, not []"
    assert got.bump.concrete_functions[0](np.float32(1.0)) is None, "its concrete function too"
    np.testing.assert_allclose(got.v.numpy(), ref.v.numpy() + 1.0, err_msg="the assignments still run")
    keys = np.array([4, 5], np.int64)
    assert ref.insert(keys, np.array([40.0, 50.0], np.float32)) is None
    with pytest.warns(jaxsm.errors.EagerFallbackWarning):
        assert got.insert(keys, np.array([40.0, 50.0], np.float32)) is None
    np.testing.assert_array_equal(got.lookup(keys), ref.lookup(keys).numpy(), err_msg="inserted across calls")


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"flag": False}, {"flag": 1}, {"flag": 0}, {"n": 5}, {"n": 5.0}, {"flag": True, "n": 3.0}],
    ids=repr,
)
def test_python_values_match_traces_by_equality(both, kwargs):
    # TF's loader compares a call's Python values with `!=`, so 1 picks the trace made with True
    ref, got = both
    x = np.array([1.0, 2.0], np.float32)
    np.testing.assert_allclose(np.asarray(got.f(x, **kwargs)), ref.f(x, **kwargs).numpy(), err_msg=str(kwargs))


@pytest.mark.parametrize("kwargs", [{"n": 4}, {"flag": None}, {"flag": "yes"}], ids=repr)
def test_python_values_without_a_trace_raise(both, kwargs):
    ref, got = both
    x = np.array([1.0, 2.0], np.float32)
    with pytest.raises(ValueError, match="Could not find matching concrete function"):
        ref.f(x, **kwargs)
    with pytest.raises(FunctionMatchError, match="Could not find matching concrete function"):
        got.f(x, **kwargs)


def test_sequence_types_are_matched_like_tf(both):
    ref, got = both
    x = np.array([1.0, 2.0], np.float32)
    np.testing.assert_allclose(
        np.asarray(got.nested({"a": x, "b": (x, x)})), ref.nested({"a": x, "b": (x, x)}).numpy(), err_msg="tuple"
    )
    # (TF's matching takes a namedtuple for a tuple too, then fails with a KeyError while flattening it)
    np.testing.assert_allclose(np.asarray(got.nested({"a": x, "b": Pt(x, x)})), [2.0, 6.0], err_msg="namedtuple")
    np.testing.assert_allclose(np.asarray(got.point(Pt(x, 2 * x))), ref.point(Pt(x, 2 * x)).numpy(), err_msg="nt")
    other = collections.namedtuple("Other", ["x", "y"])
    for what, call in [
        ("a list for a tuple", lambda o: o.nested({"a": x, "b": [x, x]})),
        ("a plain tuple for a namedtuple", lambda o: o.point((x, x))),
        ("a namedtuple of another name", lambda o: o.point(other(x, x))),
    ]:
        with pytest.raises(ValueError):
            call(ref)
        with pytest.raises(FunctionMatchError):
            call(got)
            pytest.fail(what)


def test_assign_checks_the_declared_shape(both):
    ref, got = both
    for name, value in [("rows", [[1.0, 2.0], [3.0, 4.0]]), ("none_shaped", [[5.0]]), ("none_shaped", 7.0)]:
        want = getattr(ref, name).assign(value).numpy()
        np.testing.assert_array_equal(getattr(got, name).assign(value).numpy(), want, err_msg=f"{name} <- {value}")
    assert got.none_shaped.shape is None and ref.none_shaped.shape.rank is None  # the declared TensorShape(None)
    with pytest.raises(ValueError):
        ref.rows.assign([[1.0, 2.0, 3.0]])
    with pytest.raises(VariableError):
        got.rows.assign([[1.0, 2.0, 3.0]])


def test_assign_converts_values_like_tf(both):
    ref, got = both
    cases = [
        ("small", np.array([1.7, -2.7])),  # NumPy arrays are cast
        ("small", [1, 300]),  # Python ints wrap
        ("flags", np.array([0, 1])),
        ("v", True),  # a Python bool is a number for a float variable
        ("text", ["x", b"yz"]),
    ]
    for name, value in cases:
        want = getattr(ref, name).assign(value).numpy()
        np.testing.assert_array_equal(getattr(got, name).assign(value).numpy(), want, err_msg=f"{name} <- {value!r}")
    for name, value in [("small", [1.5, 2.0]), ("flags", [1, 0]), ("v", 1j), ("v", "a"), ("text", [1.0, 2.0])]:
        with pytest.raises((TypeError, ValueError)):
            getattr(ref, name).assign(value)
        with pytest.raises(VariableError):
            getattr(got, name).assign(value)
    with pytest.raises(VariableError):
        got.small.assign_add(0.5)
    assert got.v.assign(3.0, read_value=False) is None and ref.v.assign(3.0, read_value=False) is None
    assert float(got.v.assign_add(1.0, read_value=True)) == float(ref.v.assign_add(1.0)) == 4.0


def test_stateful_call_inside_jax_transforms_raises_and_keeps_the_state(both):
    ref, got = both
    with pytest.raises(VariableError, match="jaxsm.functional"):
        jax.jit(got.bump)(np.float32(1.0))
    with pytest.raises(VariableError):
        jax.jit(lambda x: got.v.assign(x))(np.float32(1.0))
    assert float(got.v.numpy()) == 2.0, "the variable keeps its value (no leaked tracer)"
    x = np.float32(3.0)
    assert float(jax.jit(got.scaled)(x)) == float(ref.scaled(x)) == 6.0, "reading variables under jit is fine"
    assert float(jax.grad(got.scaled)(x)) == 2.0
    got.bump(np.float32(1.0))
    assert float(got.scaled(x)) == 9.0, "later calls still work"


def test_signature_inputs_and_outputs(both):
    ref, got = both
    for key in ("serving_default", "two"):
        want, have = ref.signatures[key], got.signatures[key]
        n = len(have.inputs)
        assert [t.name for t in want.inputs][:n] == [s.name for s in have.inputs], f"{key}: inputs"
        assert [tuple(t.shape) for t in want.inputs][:n] == [s.shape for s in have.inputs], f"{key}: input shapes"
        assert [t.name for t in want.outputs] == [s.name for s in have.outputs], f"{key}: outputs"
        assert [t.dtype.as_numpy_dtype for t in want.outputs] == [s.dtype for s in have.outputs], f"{key}: dtypes"
        assert have.structured_outputs == {
            k: jaxsm.objects.TensorSpec(tuple(s.shape), s.dtype.as_numpy_dtype, s.name, s.dtype.as_datatype_enum)
            for k, s in want.structured_outputs.items()
        }
    assert isinstance(VariableError("x"), JaxsmError)


def test_first_call_under_jit_keeps_no_tracer(saved):
    # variables are read from the checkpoint on first use: a first use inside jax.jit must not keep a tracer
    ref, got = tf.saved_model.load(saved), jaxsm.load(saved)
    x = np.float32(3.0)
    assert float(jax.jit(got.scaled)(x)) == float(ref.scaled(x))
    assert float(got.scaled(x)) == float(ref.scaled(x)), "a later call outside jit"
    assert float(got.v.numpy()) == float(ref.v.numpy())


@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    class Typed(tf.Module):
        pass

    m = Typed()
    for dt in ("int32", "uint8", "bool", "float16"):
        fn = tf.function(lambda x: tf.identity(x), input_signature=[tf.TensorSpec(None, getattr(tf, dt))])
        setattr(m, dt, fn)
    path = str(tmp_path_factory.mktemp("typed") / "m")
    sigs = {dt: getattr(m, dt) for dt in ("int32", "uint8", "bool")}
    tf.saved_model.save(m, path, signatures=sigs)
    return tf.saved_model.load(path), jaxsm.load(path)


_VALUES = {
    "np float32": np.float32(1.5),
    "np float64 array": np.array([1.7, -2.5]),
    "np int32 array": np.array([-1, 300], np.int32),
    "np int64": np.int64(7),
    "np bool": np.bool_(True),
    "np complex64": np.complex64(2 + 1j),
    "py True": True,
    "py int": 300,
    "py -1": -1,
    "py float": 1.5,
    "py mixed list": [1, 2.5],
    "py string": "a",
}


@pytest.mark.parametrize("dtype", ["int32", "uint8", "bool", "float16"])
@pytest.mark.parametrize("signature", [False, True], ids=["method", "signature"])
def test_inputs_convert_like_tf_with_an_input_signature(typed, dtype, signature):
    # TF casts any NumPy number to the declared dtype, and Python values as tf.Variable.assign converts them
    ref, got = typed
    if signature and dtype == "float16":
        pytest.skip("not a signature")
    for what, value in _VALUES.items():

        def call(o, value=value):
            return o.signatures[dtype](x=value)["output_0"] if signature else getattr(o, dtype)(value)

        try:
            want = call(ref).numpy()
        except (TypeError, ValueError):
            with pytest.raises(FunctionMatchError):
                call(got)
            continue
        with warnings.catch_warnings():  # (NumPy's cast of -2.5 to uint8 warns; TF's does not)
            warnings.simplefilter("ignore")
            have = np.asarray(call(got))
        assert have.dtype == want.dtype, f"{dtype} <- {what}"
        np.testing.assert_array_equal(have, want, err_msg=f"{dtype} <- {what}")


def test_concurrent_stateful_calls_keep_every_update(both):
    import threading

    ref, got = both
    for obj in (ref, got):
        obj.bump(np.float32(0.0))  # compiled before the threads start

        def work(obj=obj):
            for _ in range(40):
                obj.bump(np.float32(1.0))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert float(got.v.numpy()) == float(ref.v.numpy()) == 162.0, "no update lost between threads"
    x = np.float32(1.0)
    results = []
    threads = [
        threading.Thread(target=lambda: results.extend(float(got.scaled(x)) for _ in range(20))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [162.0] * 80, "concurrent reads"


@pytest.mark.parametrize("value_shape", [(), (2,)], ids=["scalar", "vector"])
def test_dense_hash_table_restores_its_contents(tmp_path, value_shape):
    # a DenseHashTable's checkpoint holds every bucket, the free ones with the empty key, values [buckets, size]
    class Tables(tf.Module):
        def __init__(self):
            default = tf.fill(value_shape, -1.0)
            self.dense = tf.lookup.experimental.DenseHashTable(
                tf.int64, tf.float32, default_value=default, empty_key=0, deleted_key=-1, initial_num_buckets=8
            )
            self.dense.insert(tf.constant([5, 9], tf.int64), tf.fill((2,) + value_shape, 0.5))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
        def lookup(self, k):
            return self.dense.lookup(k)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, *value_shape], tf.float32)])
        def insert(self, k, v):
            self.dense.insert(k, v)

    path = str(tmp_path / "m")
    tf.saved_model.save(Tables(), path)
    ref, got = tf.saved_model.load(path), jaxsm.load(path)
    keys = np.array([5, 6, 9, 7], np.int64)
    np.testing.assert_array_equal(got.lookup(keys), ref.lookup(keys).numpy(), err_msg="restored contents")
    new = np.full((1, *value_shape), 0.25, np.float32)
    assert ref.insert(np.array([6], np.int64), new) is None
    with pytest.warns(jaxsm.errors.EagerFallbackWarning):
        assert got.insert(np.array([6], np.int64), new) is None
    np.testing.assert_array_equal(got.lookup(keys), ref.lookup(keys).numpy(), err_msg="after an insert")


def test_hash_tables_of_vectors(tmp_path):
    class Tables(tf.Module):
        def __init__(self):
            self.by_name = tf.lookup.experimental.MutableHashTable(tf.string, tf.float32, default_value=[-1.0, -2.0])
            self.by_name.insert(tf.constant(["a"]), tf.constant([[1.0, 2.0]]))
            self.by_id = tf.lookup.experimental.MutableHashTable(tf.int64, tf.int64, default_value=[0, 0, 0])
            self.by_id.insert(tf.constant([3], tf.int64), tf.constant([[1, 2, 3]], tf.int64))
            self.empty = tf.lookup.experimental.MutableHashTable(tf.int32, tf.float32, default_value=[7.0, 8.0])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def names(self, k):
            return self.by_name.lookup(k)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None], tf.int32)])
        def ids(self, k, e):
            return self.by_id.lookup(k), self.empty.lookup(e)

    path = str(tmp_path / "m")
    tf.saved_model.save(Tables(), path)
    ref, got = tf.saved_model.load(path), jaxsm.load(path)
    with pytest.warns(jaxsm.errors.EagerFallbackWarning):
        np.testing.assert_array_equal(got.names(["a", "b"]), ref.names(["a", "b"]).numpy(), err_msg="string keys")
    ids, empty = np.array([[3, 4]], np.int64), np.array([1, 2], np.int32)
    for have, want in zip(got.ids(ids, empty), ref.ids(ids, empty)):
        np.testing.assert_array_equal(have, want.numpy(), err_msg="int keys, 2-D query; empty table")
