"""The tf.saved_model.load contract for tf.Module exports, round 2, probed against TF: dtype matching of NumPy and
JAX inputs with jax_enable_x64 off, Python bools given to traces without an input_signature, TypeError (signature)
vs ValueError (no trace) for inputs that fit nothing, ExtensionType inputs and outputs, functions calling
tf.py_function, relaxed (reduce_retracing) and jit_compile functions, gradients through tf.recompute_grad and loops
with NumPy-scalar trip counts, variables created on the first call, read-after-write ordering and scatters with
duplicate indices, and broken SavedModel directories."""

from __future__ import annotations

import shutil

import jax
import numpy as np
import pytest

import jaxsm
from jaxsm.errors import (
    CorruptFileError,
    FormatError,
    FunctionMatchError,
    InputSignatureError,
    UnsupportedOpError,
)

tf = pytest.importorskip("tensorflow")


_HINTED = ("float32", "float64", "float16", "int32", "int64", "uint8", "int8", "complex64", "bool")


def _module():
    class Module(tf.Module):
        def __init__(self):
            self.v = tf.Variable([1.0, 2.0, 3.0, 4.0])
            self.lazy = None

        @tf.function
        def by_dtype(self, x):
            # which trace runs is visible in the result: int64 traces scale by 10
            return x * 10 if x.dtype in (tf.int64, tf.float64) else x

        @tf.function
        def wide(self, x):
            return x + 1

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def plain(self, x):
            return x * self.v[0]

        @tf.function(reduce_retracing=True)
        def relaxed(self, x):
            return tf.reduce_sum(x) * self.v[1]

        @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)], jit_compile=True)
        def xla(self, x):
            return tf.reduce_sum(tf.tanh(x * self.v))

        @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)])
        def recomputed(self, x):
            return tf.reduce_sum(tf.recompute_grad(lambda a: tf.sin(a) * self.v)(x))

        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def read_after_write(self, x):
            self.v.assign_sub(tf.fill([4], x))
            before = self.v.read_value()
            self.v.assign(before * 2)
            return before, self.v.read_value(), self.v + 0

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.int32), tf.TensorSpec([None], tf.float32)])
        def scatter(self, idx, upd):
            self.v.scatter_nd_update(idx, upd)
            self.v.scatter_add(tf.IndexedSlices(upd, idx[:, 0]))
            return self.v.sparse_read(idx[:, 0])

        @tf.function(input_signature=[tf.TensorSpec([4], tf.float32), tf.TensorSpec([], tf.int32)])
        def loop(self, x, n):
            _, h = tf.while_loop(lambda i, h: i < n, lambda i, h: (i + 1, tf.sin(h * self.v) + 0.5), [0, x])
            return tf.reduce_sum(tf.cond(tf.reduce_sum(h) > 0, lambda: h * h, lambda: -h))

        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def make_lazily(self, x):
            if self.lazy is None:
                with tf.init_scope():
                    self.lazy = tf.Variable(10.0)
            self.lazy.assign_add(x)
            return self.lazy.read_value()

    m = Module()
    for dt in (tf.int64, tf.int32, tf.float64, tf.float32):
        m.by_dtype(tf.constant([1, 2], dt))
    m.wide(tf.constant([1, 2], tf.int64)), m.wide(tf.constant([1.0, 2.0], tf.float64))
    for dt in _HINTED:
        f = tf.function(tf.identity)  # one trace each: a polymorphic function would take the first that fits
        f.get_concrete_function(tf.TensorSpec([], getattr(tf, dt)))
        setattr(m, f"hinted_{dt}", f)
    m.relaxed(tf.constant([1.0, 2.0])), m.relaxed(tf.constant([1.0, 2.0, 3.0]))
    m.make_lazily(tf.constant(1.0))
    return m


@pytest.fixture(scope="module")
def module():
    """The tf.Module itself: TF's GradientTape cannot differentiate some of its loaded functions."""
    return _module()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, module):
    path = str(tmp_path_factory.mktemp("probe2") / "m")
    tf.saved_model.save(module, path, signatures={"serving_default": module.plain})
    return path


@pytest.fixture()
def both(saved):
    """A fresh TF and jaxsm load (tests change variables)."""
    return tf.saved_model.load(saved), jaxsm.load(saved)


@pytest.fixture(scope="module")
def loaded(saved):
    """One TF and jaxsm load for tests that change no state."""
    return tf.saved_model.load(saved), jaxsm.load(saved)


_NUMPY_INPUTS = {
    "int32": np.array([1, 2], np.int32),
    "int64": np.array([1, 2], np.int64),
    "float64": np.array([1.0, 2.0], np.float64),
    "float32": np.array([1.0, 2.0], np.float32),
}


@pytest.mark.parametrize("fn", ["by_dtype", "wide"])
@pytest.mark.parametrize("dtype", sorted(_NUMPY_INPUTS))
def test_numpy_inputs_match_traces_of_their_own_dtype_with_x64_off(loaded, fn, dtype):
    # without x64 a JAX array cannot be 64-bit and stands for its twin, but a NumPy int32 array is no int64
    # tensor: TF picks the int32 trace (or raises where there is none), whatever JAX's mode
    ref, got = loaded
    x = _NUMPY_INPUTS[dtype]
    try:
        want = getattr(ref, fn)(x).numpy()
    except ValueError:
        with jax.enable_x64(False), pytest.raises(FunctionMatchError, match="Could not find matching"):
            getattr(got, fn)(x)
        return
    with jax.enable_x64(False):
        have = np.asarray(getattr(got, fn)(x))
    np.testing.assert_array_equal(have, want, err_msg=f"{fn}({dtype}) with x64 off")


def test_jax_arrays_stand_for_64_bit_traces_with_x64_off(loaded):
    # JAX has no int64 here: its int32 array takes the int64 trace when there is no int32 one, as a conversion
    ref, got = loaded
    with jax.enable_x64(False):
        for x in (jax.numpy.array([1, 2]), jax.numpy.array([1.0, 2.0])):
            np.testing.assert_array_equal(np.asarray(got.wide(x)), np.asarray(x) + 1, err_msg=f"wide({x.dtype})")
            want = ref.by_dtype(np.asarray(x)).numpy()  # the trace of its own dtype, though an earlier one fits
            np.testing.assert_array_equal(np.asarray(got.by_dtype(x)), want, err_msg=f"by_dtype({x.dtype})")


@pytest.mark.parametrize("dtype", _HINTED)
@pytest.mark.parametrize("value", [True, False])
def test_python_bools_convert_to_numeric_traces(loaded, dtype, value):
    # TF's conversion check without an input_signature takes a Python bool for an int (any number type)
    ref, got = loaded
    cf_dtype = getattr(tf, dtype)
    want = getattr(ref, f"hinted_{dtype}")(value)
    assert want.dtype == cf_dtype
    have = np.asarray(getattr(got, f"hinted_{dtype}")(value))
    assert have.dtype == np.dtype(cf_dtype.as_numpy_dtype), dtype
    np.testing.assert_array_equal(have, want.numpy(), err_msg=f"{dtype} <- {value}")


@pytest.mark.parametrize("dtype,value", [("int32", 1.5), ("float32", 2j), ("bool", 2), ("int64", "a"), ("bool", None)])
def test_python_values_that_do_not_convert_raise(loaded, dtype, value):
    ref, got = loaded
    with pytest.raises(ValueError, match="Could not find matching"):
        getattr(ref, f"hinted_{dtype}")(value)
    with pytest.raises(FunctionMatchError, match="Could not find matching"):
        getattr(got, f"hinted_{dtype}")(value)


_CALLS = {
    "input_signature": lambda o, x: o.plain(x),
    "concrete function": lambda o, x: (
        o.plain.concrete_functions if hasattr(o.plain, "concrete_functions") else o.plain._list_all_concrete_functions()
    )[0](x),
    "signature": lambda o, x: o.signatures["serving_default"](x=x),
}


@pytest.mark.parametrize("call", sorted(_CALLS))
@pytest.mark.parametrize(
    "value", [np.ones((2, 2), np.float32), "a", [[1.0]], None], ids=["2-D", "str", "nested", "None"]
)
def test_inputs_that_do_not_fit_a_signature_raise_type_errors(loaded, call, value):
    # TF binds the inputs to the signature first, which raises TypeError (a polymorphic function: ValueError)
    ref, got = loaded
    with pytest.raises(TypeError):
        _CALLS[call](ref, value)
    with pytest.raises(InputSignatureError):
        _CALLS[call](got, value)


def test_inputs_that_fit_no_trace_raise_value_errors(loaded):
    ref, got = loaded
    x = np.ones((2, 2), np.complex64)
    with pytest.raises(ValueError, match="Could not find matching"):
        ref.wide(x)
    with pytest.raises(FunctionMatchError, match="Could not find matching") as info:
        got.wide(x)
    assert not isinstance(info.value, TypeError)


class Masked(tf.experimental.ExtensionType):
    __name__ = "jaxsm_tests.Masked"
    values: tf.Tensor
    mask: tf.Tensor
    scale: int = 3


class Ragged(tf.experimental.BatchableExtensionType):
    __name__ = "jaxsm_tests.Ragged"
    weight: tf.Tensor
    rows: tf.RaggedTensor


@pytest.fixture(scope="module")
def with_extension_types(tmp_path_factory):
    masked_spec = Masked.Spec(tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.bool), 3)
    ragged_spec = Ragged.Spec(tf.TensorSpec([], tf.int64), tf.RaggedTensorSpec([None, None], tf.int64))

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def make(self, x):
            return {"masked": Masked(x * 2, x > 0), "x": x}

        @tf.function(input_signature=[masked_spec])
        def apply(self, m):
            return tf.where(m.mask, m.values, 0.0) * m.scale

        @tf.function(input_signature=[ragged_spec])
        def weigh(self, r):
            return Ragged(r.weight + 1, r.rows * r.weight)

    path = str(tmp_path_factory.mktemp("extension") / "m")
    tf.saved_model.save(Module(), path)
    return tf.saved_model.load(path), jaxsm.load(path)


@pytest.mark.parametrize("n", [0, 3])
@pytest.mark.parametrize("jit", [False, True])
def test_extension_types_in_and_out(with_extension_types, n, jit):
    ref, got = with_extension_types
    x = np.linspace(-1, 1, n, dtype=np.float32)
    want = ref.make(x)
    have = (jax.jit(got.make) if jit else got.make)(x)
    assert type(have["masked"]).__name__ == "Masked" and set(have) == {"masked", "x"}
    for field in ("values", "mask"):
        w, h = getattr(want["masked"], field).numpy(), np.asarray(getattr(have["masked"], field))
        assert h.dtype == w.dtype, field
        np.testing.assert_array_equal(h, w, err_msg=field)
    masked = Masked(tf.constant(x), tf.constant(x > 0.5))
    want = ref.apply(masked).numpy()
    np.testing.assert_array_equal(np.asarray(got.apply(masked)), want, err_msg="TF's ExtensionType as input")
    np.testing.assert_array_equal(
        np.asarray(got.apply(got.make(x)["masked"])), ref.apply(ref.make(x)["masked"]).numpy(), err_msg="round trip"
    )
    with pytest.raises(TypeError):
        ref.apply(x)
    with pytest.raises(InputSignatureError):
        got.apply(x)


def test_batchable_extension_type_with_a_ragged_field(with_extension_types):
    ref, got = with_extension_types
    value = Ragged(tf.constant(2, tf.int64), tf.ragged.constant([[1, 2], [], [3]], tf.int64))
    want, have = ref.weigh(value), got.weigh(value)
    assert int(have.weight) == int(want.weight)
    assert isinstance(have.rows, jaxsm.RaggedTensor) and have.rows.to_list() == want.rows.to_list()


@pytest.fixture(scope="module")
def with_py_functions(tmp_path_factory):
    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def plain(self, x):
            return x + 1

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def py(self, x):
            return tf.py_function(lambda a: a * 2, [x], tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def np_py(self, x):
            return tf.numpy_function(lambda a: a * 2, [x], tf.float32)

    path = str(tmp_path_factory.mktemp("py_function") / "m")
    tf.saved_model.save(Module(), path)
    return tf.saved_model.load(path), jaxsm.load(path)


@pytest.mark.parametrize("fn,op_type", [("py", "EagerPyFunc"), ("np_py", "PyFunc")])
def test_py_function_fails_only_when_called(with_py_functions, fn, op_type):
    # TF loads the model (the Python callback is not saved: only calling the function fails, in a new process);
    # so does jaxsm, with an error naming the op and why
    ref, got = with_py_functions
    x = np.array([1.0, 2.0], np.float32)
    np.testing.assert_allclose(np.asarray(got.plain(x)), ref.plain(x).numpy(), err_msg="the other functions run")
    with pytest.raises(UnsupportedOpError, match=rf"(?s){op_type}.*tf\.py_function"):
        getattr(got, fn)(x)


@pytest.mark.parametrize("n", [0, 1, 4])
def test_relaxed_shapes_dispatch_like_tf(loaded, n):
    ref, got = loaded
    x = np.arange(n, dtype=np.float32)
    np.testing.assert_allclose(np.asarray(got.relaxed(x)), ref.relaxed(x).numpy(), err_msg=f"size {n}")
    y = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError):
        ref.relaxed(y)
    with pytest.raises(FunctionMatchError):
        got.relaxed(y)


@pytest.mark.parametrize(
    "fn,n", [("xla", None), ("recomputed", None), ("loop", np.int32(3)), ("loop", np.int32(0)), ("loop", 2)]
)
@pytest.mark.parametrize("jit", [False, True])
def test_gradients_match_tapes_of_the_module(module, loaded, fn, n, jit):
    # (the tape runs on the tf.Module: TF cannot differentiate its loaded loop or recompute_grad)
    _, got = loaded
    x = np.array([0.3, -2.0, 1.0, 0.0], np.float32)
    rest = () if n is None else (n,)
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        y = getattr(module, fn)(xt, *rest)
    apply, params = jaxsm.functional(getattr(got, fn))
    # a NumPy scalar trip count is known at trace time, so the loop runs as a lax.scan jax.grad differentiates
    grad = jax.grad(lambda p, a: apply(p, a, *rest), argnums=(0, 1))
    gp, gx = (jax.jit(grad) if jit else grad)(params, x)
    np.testing.assert_allclose(np.asarray(apply(params, x, *rest)), y.numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(gx), tape.gradient(y, xt).numpy(), rtol=1e-5, atol=1e-6)
    want_v = tape.gradient(y, module.v)
    want_v = np.zeros(4, np.float32) if want_v is None else want_v.numpy()
    np.testing.assert_allclose(np.asarray(gp["v"]), want_v, rtol=1e-5, atol=1e-6)


def test_reads_after_writes_and_duplicate_scatters(both):
    ref, got = both
    for x in (1.0, 2.5):
        for w, h in zip(ref.read_after_write(np.float32(x)), got.read_after_write(np.float32(x)), strict=True):
            np.testing.assert_array_equal(np.asarray(h), w.numpy(), err_msg=f"read_after_write({x})")
    idx, upd = np.array([[1], [1], [3], [1]], np.int32), np.array([5.0, 6.0, 7.0, -1.0], np.float32)
    np.testing.assert_array_equal(np.asarray(got.scatter(idx, upd)), ref.scatter(idx, upd).numpy())
    np.testing.assert_array_equal(got.v.numpy(), ref.v.numpy(), err_msg="variable after the scatters")
    empty = np.zeros((0, 1), np.int32), np.zeros([0], np.float32)
    np.testing.assert_array_equal(np.asarray(got.scatter(*empty)), ref.scatter(*empty).numpy())


def test_variable_made_on_first_call_keeps_counting(both):
    ref, got = both
    for x in (2.0, 3.0):
        np.testing.assert_array_equal(np.asarray(got.make_lazily(np.float32(x))), ref.make_lazily(x).numpy())
    np.testing.assert_array_equal(got.lazy.numpy(), ref.lazy.numpy())


@pytest.mark.parametrize("damage", ["truncated pb", "empty pb", "no variables", "no index", "no data"])
def test_broken_directories_name_the_file(saved, tmp_path, damage):
    path = tmp_path / "m"
    shutil.copytree(saved, path)
    pb, variables = path / "saved_model.pb", path / "variables"
    if damage == "truncated pb":
        pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    elif damage == "empty pb":
        pb.write_bytes(b"")
    elif damage == "no variables":
        shutil.rmtree(variables)
    elif damage == "no index":
        (variables / "variables.index").unlink()
    else:
        (variables / "variables.data-00000-of-00001").unlink()
    with pytest.raises(Exception):  # noqa: B017 (TF's errors differ by case: OSError, FileNotFoundError, OpError)
        tf.saved_model.load(str(path)).plain(np.ones(2, np.float32))
    name = {"truncated pb": "saved_model.pb", "empty pb": "saved_model.pb", "no data": "variables.data"}
    with pytest.raises(FormatError, match=name.get(damage, "variables.index")) as info:
        jaxsm.load(str(path)).plain(np.ones(2, np.float32))
    if "pb" in damage:
        assert isinstance(info.value, CorruptFileError)
