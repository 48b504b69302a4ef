"""The TF oracle harness: build a tf.function, save it as a SavedModel, run it with TF and with jaxsm.

Usage in a test::

    tf = pytest.importorskip("tensorflow")
    from tests.tfcompare import assert_matches_tf
    assert_matches_tf(lambda x: tf.math.acos(x), [np.linspace(-1, 1, 7, dtype=np.float32)], rtol=1e-6)

``fn`` takes tensors positionally and returns a tensor or a (nested) tuple/list/dict of tensors. The tf.function
is traced with an input_signature built from ``inputs`` (``shapes=`` may override it, e.g. ``(None, 3)``), saved
with ``tf.saved_model.save`` to a temporary directory, and loaded with ``jaxsm.load``. TF's result is the
tf.function's own output on the same inputs. ``jit=False`` runs jaxsm's pure function eagerly instead of under
``jax.jit`` (both paths must agree with TF).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

# JAXSM_TEST_X64=0 (tests/conftest.py) keeps jax_enable_x64 off: jaxsm then computes TF's 64-bit dtypes in 32 bits,
# so TF's value is compared as its 32-bit twin, floats within float32's tolerances.
X64_OFF = os.environ.get("JAXSM_TEST_X64") == "0"
_NARROW = {np.dtype(a): np.dtype(b) for a, b in [("int64", "int32"), ("uint64", "uint32")]}
_NARROW |= {np.dtype(a): np.dtype(b) for a, b in [("float64", "float32"), ("complex128", "complex64")]}


def _as_jaxsm_holds(e: np.ndarray, g: np.ndarray, rtol: float, atol: float) -> tuple[np.ndarray, float, float]:
    """TF's value ``e`` in the dtype jaxsm computes it in (narrowed with X64_OFF unless jaxsm's ``g`` kept TF's
    64-bit dtype: host values may), with the tolerances for it."""
    if not X64_OFF or e.dtype not in _NARROW or g.dtype == e.dtype:
        return e, rtol, atol
    if e.dtype.kind in "fc":
        rtol, atol = max(rtol, 1e-5), max(atol, 1e-6)
    return e.astype(_NARROW[e.dtype]), rtol, atol


def _tf():
    import tensorflow as tf

    return tf


def save_function(
    fn: Callable,
    inputs: Sequence[np.ndarray],
    shapes: Sequence | None = None,
    export_dir: str | None = None,
    module: Any | None = None,
) -> tuple[str, Any]:
    """Save ``fn`` as attribute ``f`` of a tf.Module; returns (export_dir, the tf.function)."""
    tf = _tf()
    sig = [
        tf.TensorSpec(shapes[i] if shapes is not None else np.shape(x), tf.as_dtype(np.asarray(x).dtype))
        for i, x in enumerate(inputs)
    ]
    m = module if module is not None else tf.Module()
    # AutoGraph changes only Python control flow on tensors, which fails to trace without it (a tensor as a bool
    # or iterated): traced without it first, to spare the source rewrite of the rest (about half of a save)
    m.f = tf.function(fn, input_signature=sig, autograph=False)
    try:
        m.f.get_concrete_function()
    except Exception:
        m.f = tf.function(fn, input_signature=sig, autograph=True)
    export_dir = export_dir or tempfile.mkdtemp(prefix="jaxsm_op_")
    tf.saved_model.save(m, export_dir)
    return export_dir, m.f


def assert_close(got: Any, want: Any, what: str, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """``got`` has TF's shape and dtype and its values within the tolerances; messages name ``what``."""
    got, want = np.asarray(got), np.asarray(want)
    want, rtol, atol = _as_jaxsm_holds(want, got, rtol, atol)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != TF's {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != TF's {want.dtype}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


def run_jaxsm(export_dir: str, inputs: Sequence[np.ndarray], jit: bool = True) -> Any:
    import jaxsm

    loaded = jaxsm.load(export_dir)
    if jit:
        return loaded.f(*inputs)
    cf = loaded.f.concrete_functions[0]
    state = {v.key: v.value() for v in cf._variables() if v.initialized}
    flat, _ = cf.pure()(state, [np.asarray(x) for x in inputs])
    return cf._pack_outputs(flat)


# assert_matches_tf's saved functions, shared by the cases that provably save the same graph: same code, same closure
# values, same input signature, and no stateful op in TF's graph (a second TF call of a random op would draw new
# numbers); and TF's results, shared by the runs of one case (same inputs too: jit=True and jit=False). Saving costs
# TF a trace and a write; only the last _KEEP saved functions are kept (their graphs take memory).
_SAVED: dict[Any, tuple[str, Any]] = {}
_EXPECTED: dict[Any, tuple[str, Any]] = {}
_KEEP = 64


def _frozen(v: Any) -> Any:
    """A hashable stand-in for ``v`` that is equal only for values that trace to the same TF graph; raises
    TypeError for values it cannot vouch for (variables, modules, objects with state)."""
    if v is None or isinstance(v, (bool, int, float, complex, str, bytes, np.dtype, np.generic)):
        return (type(v), v)
    if isinstance(v, np.ndarray) and v.dtype != object:
        return ("ndarray", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, np.ndarray):
        return ("ndarray", v.shape, _frozen(v.tolist()))
    if isinstance(v, (tuple, list)):
        return (type(v), tuple(_frozen(x) for x in v))
    if isinstance(v, dict):
        return (dict, tuple((_frozen(k), _frozen(x)) for k, x in v.items()))
    if (
        isinstance(v, type)
        or getattr(sys.modules.get(getattr(v, "__module__", None) or ""), getattr(v, "__name__", ""), None) is v
    ):
        return ("global", v)  # a module-level function or class: the same object on every call
    if isinstance(v, functools.partial):
        return ("partial", _frozen(v.func), _frozen(v.args), _frozen(v.keywords))
    if isinstance(v, types.FunctionType):
        cells = tuple(_frozen(c.cell_contents) for c in v.__closure__ or ())
        return ("function", v.__code__, _frozen(v.__defaults__), _frozen(v.__kwdefaults__), cells)
    if type(v).__name__ == "DType" and hasattr(v, "as_numpy_dtype"):  # tf.DType
        return ("tf.DType", v.name)
    if type(v).__name__ == "TensorShape":
        return ("TensorShape", _frozen(v.as_list() if v.rank is not None else None))
    raise TypeError(f"cannot vouch for {type(v)}")


def _stateful(tf_fn: Any) -> bool:
    from tensorflow.python.framework import op_def_registry

    graph_def = tf_fn.get_concrete_function().graph.as_graph_def()
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    names = {f.signature.name for f in graph_def.library.function}
    return any(n.op not in names and getattr(op_def_registry.get(n.op), "is_stateful", True) for n in nodes)


def _saved_and_expected(fn: Callable, inputs: list[np.ndarray], shapes: Sequence | None) -> tuple[str, Any]:
    # what the saved graph depends on: the input signature (save_function's), not the values
    signature = [(x.dtype.str, x.shape if shapes is None else None) for x in inputs]
    try:
        key = (_frozen(fn), _frozen(signature), _frozen(shapes))
        case = (key, _frozen(inputs))
        hash(case)
    except TypeError:
        key = case = None
    if case is not None and case in _EXPECTED:
        return _EXPECTED[case]
    if key is not None and key in _SAVED:
        export_dir, tf_fn = _SAVED[key]
    else:
        export_dir, tf_fn = save_function(fn, inputs, shapes)
        if key is not None and not _stateful(tf_fn):
            _SAVED[key] = (export_dir, tf_fn)
            if len(_SAVED) > _KEEP:
                del _SAVED[next(iter(_SAVED))]
    expected = tf_fn(*inputs)
    if key is not None and key in _SAVED:  # (no stateful op)
        _EXPECTED[case] = (export_dir, expected)
    return export_dir, expected


def _flatten(x: Any, path: str = "out") -> list[tuple[str, Any]]:
    if isinstance(x, dict):
        return [p for k in sorted(x) for p in _flatten(x[k], f"{path}[{k!r}]")]
    if isinstance(x, (list, tuple)):
        return [p for i, v in enumerate(x) for p in _flatten(v, f"{path}[{i}]")]
    return [(path, x)]


def assert_matches_tf(
    fn: Callable,
    inputs: Sequence[Any],
    *,
    rtol: float = 1e-6,
    atol: float = 0.0,
    jit: bool = True,
    shapes: Sequence | None = None,
    check_dtype: bool = True,
    equal_nan: bool = True,
) -> tuple[Any, Any]:
    """Assert jaxsm's result of the saved ``fn`` equals TF's (values, shapes and dtypes)."""
    inputs = [np.asarray(x) for x in inputs]
    export_dir, expected = _saved_and_expected(fn, inputs, shapes)
    got = run_jaxsm(export_dir, inputs, jit=jit)
    exp_flat = _flatten(expected)
    got_flat = _flatten(got)
    assert len(exp_flat) == len(got_flat), f"TF returned {len(exp_flat)} outputs, jaxsm {len(got_flat)}"
    for (path, e), (_, g) in zip(exp_flat, got_flat):
        e = e.numpy() if hasattr(e, "numpy") else e
        # a scalar string's .numpy() is bytes: as a fixed-width "S" array it would lose trailing NUL bytes
        e = np.array(e, dtype=object) if isinstance(e, bytes) else np.asarray(e)
        if e.dtype.kind == "S":
            e = e.astype(object)
        g = np.asarray(g)
        e, rtol_e, atol_e = _as_jaxsm_holds(e, g, rtol, atol)
        assert e.shape == g.shape, f"{path}: shape {g.shape} != TF's {e.shape}"
        if check_dtype:
            assert e.dtype == g.dtype, f"{path}: dtype {g.dtype} != TF's {e.dtype}"
        if e.dtype == object:
            assert e.tolist() == g.tolist(), f"{path}: strings differ"
        elif e.dtype.kind in "biu":
            np.testing.assert_array_equal(g, e, err_msg=path)
        else:
            np.testing.assert_allclose(
                g.astype(np.complex128 if e.dtype.kind == "c" else np.float64),
                e.astype(np.complex128 if e.dtype.kind == "c" else np.float64),
                rtol=rtol_e,
                atol=atol_e,
                equal_nan=equal_nan,
                err_msg=path,
            )
    return expected, got


_CASES: dict[str, tuple[str, list[np.ndarray], Any]] = {}


def compare_case(
    name: str,
    fn: Callable,
    inputs: Sequence[Any],
    jit: bool,
    rtol: float = 1e-6,
    atol: float = 0.0,
    signed_zeros: bool = False,
) -> None:
    """The edge-case sweeps' check: ``fn`` (a tf.function body returning a dict) is saved once per ``name`` and
    shared by its jit=True and jit=False runs; every output must have TF's shape and dtype, equal integers and
    strings, floats within ``rtol``/``atol`` (NaN where TF has NaN) and, with ``signed_zeros``, TF's signs of 0."""
    key = f"{getattr(fn, '__module__', '')}:{name}"  # (test files may reuse a case name)
    if key not in _CASES:
        arrays = [np.asarray(x) for x in inputs]
        _CASES[key] = (*save_function(fn, arrays), arrays)
    export_dir, tf_fn, arrays = _CASES[key]
    expected = _flatten(tf_fn(*arrays))
    got = _flatten(run_jaxsm(export_dir, arrays, jit=jit))
    assert len(expected) == len(got), f"{name}: TF returned {len(expected)} outputs, jaxsm {len(got)}"
    for (path, e), (_, g) in zip(expected, got):
        e = e.numpy()
        e = np.array(e, dtype=object) if isinstance(e, bytes) else np.asarray(e)  # (keeps trailing NUL bytes)
        e = e.astype(object) if e.dtype.kind == "S" else e
        g = np.asarray(g)
        e, rtol_e, atol_e = _as_jaxsm_holds(e, g, rtol, atol)
        where = f"{name} {path}"
        assert e.shape == g.shape, f"{where}: shape {g.shape} != TF's {e.shape}"
        assert e.dtype == g.dtype, f"{where}: dtype {g.dtype} != TF's {e.dtype}"
        if e.dtype == object:
            assert g.tolist() == e.tolist(), f"{where}: strings {g.tolist()} != TF's {e.tolist()}"
        elif e.dtype.kind in "biu":
            np.testing.assert_array_equal(g, e, err_msg=where)
        else:
            wide = np.complex128 if e.dtype.kind == "c" else np.float64
            g, e = g.astype(wide), e.astype(wide)
            np.testing.assert_allclose(g, e, rtol=rtol_e, atol=atol_e, equal_nan=True, err_msg=where)
            if signed_zeros:
                zero = e == 0
                np.testing.assert_array_equal(np.signbit(g[zero].real), np.signbit(e[zero].real), f"{where}: 0's sign")


def assert_raises_like_tf(fn: Callable, inputs: Sequence[Any], jit: bool = True) -> None:
    """TF raises for these inputs (the bad values are constants), and so must jaxsm: a JaxsmError."""
    import pytest

    from jaxsm.errors import JaxsmError

    tf = _tf()
    inputs = [np.asarray(x) for x in inputs]
    export_dir, tf_fn = save_function(fn, inputs)
    with pytest.raises((tf.errors.InvalidArgumentError, tf.errors.InternalError, tf.errors.OutOfRangeError)):
        tf_fn(*inputs)
    with pytest.raises(JaxsmError):
        run_jaxsm(export_dir, inputs, jit=jit)


@contextlib.contextmanager
def v1_graph() -> Iterator[Any]:
    """A fresh graph with control flow v1 (Switch/Merge/Enter/Exit), as TF1 exports and training graphs were
    built."""
    tf = _tf()
    tf1 = tf.compat.v1
    was_v2 = tf1.control_flow_v2_enabled()
    tf1.disable_control_flow_v2()
    try:
        with tf.Graph().as_default() as g:
            yield g
    finally:
        if was_v2:
            tf1.enable_control_flow_v2()
