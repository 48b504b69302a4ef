"""How jaxsm runs a restored function: ``jax.jit`` with a per-shape choice of XLA:CPU's kernel library.

XLA:CPU hands convolutions and matrix products either to YNNPACK (its default in jaxlib 0.10) or to Eigen. Measured
on 2 cores (AMD EPYC, jaxlib 0.10.2; ``benchmarks/``), neither wins everywhere:

- Convolutions: YNNPACK runs a convolution with 64 output channels on one thread (ResNet50's first stages, the
  7x7 stem), Eigen on all cores. At batch 32, 56x56x64->64 3x3: 74 ms YNNPACK, 43-49 ms Eigen, 36 ms TF; 7x7/2 stem
  129 vs 81-91 vs 56 ms. Whole models at batch 32: ResNet50 1.85 -> 1.62 s, MobileNetV2 350 -> 310 ms.
- Large products: attention's batched matmuls at BERT-base batch 32 (384 products of 128x64x128) take 36 ms in
  YNNPACK and 18 ms in Eigen; the whole model 4.4-5.4 s -> 3.9-4.0 s.
- Small products: YNNPACK is faster (it also fuses the surrounding elementwise work): a 2-layer LSTM(256) at
  batch 32 (32-row products) 24-26 ms vs 31-34 ms in Eigen; BERT-base at batch 1 (128 rows) 142-148 vs 149-163 ms.

So a function that contains a convolution or a product with at least ``LARGE_DOT_ROWS`` rows (batch dimensions
included) is compiled with YNNPACK off; others keep XLA's defaults. The choice is made once per input shapes,
from the traced jaxpr (tracing is cached by JAX, so it costs nothing extra), and only for the CPU backend.
``jaxsm.compiler_options(jaxpr)`` gives the same options to users who jit ``jaxsm.functional`` themselves.

A function XLA cannot compile because its shapes depend on run-time values runs op by op instead (see
:func:`tuned_jit`); garbage collection is paused while loading and tracing (:func:`gc_paused`).
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.extend.core
import numpy as np

from jaxsm.dtypes import is_strings
from jaxsm.errors import AssertFailedError, EagerFallbackWarning, StaticValueError
from jaxsm.graph.custom_gradient import is_forward_mode

LARGE_DOT_ROWS = 4096

# Key of a compiled call's updated state holding whether its run-time Asserts held (jaxsm/ops/core.py).
RUN_TIME_ASSERTS = "__jaxsm_run_time_asserts__"

# True while a function runs op by op (the fallback below): every value is concrete, so control flow can run
# as Python (a While becomes a Python loop whose variables may change shape, as in TF eager).
OP_BY_OP: contextvars.ContextVar[bool] = contextvars.ContextVar("jaxsm_op_by_op", default=False)

# YNNPACK off: XLA:CPU then runs convolutions and dots with Eigen.
EIGEN_CPU_OPTIONS: dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": ""}


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a bulk of allocation that makes no cyclic garbage worth
    collecting (parsing a SavedModel, tracing a graph): with it on, every full collection walks every object of
    the process (JAX's, the protos'), 2-3 times per load and trace. Measured: LSTM load 62 -> 19 ms, EfficientNetB0
    first call -0.13 s. The collector's previous state is restored; objects made meanwhile are collected later."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _sub_jaxprs(params: dict[str, Any]):
    for v in params.values():
        for item in v if isinstance(v, (list, tuple)) else (v,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def prefers_eigen(jaxpr: Any) -> bool:
    """True if the (closed) jaxpr has a convolution or a dot_general with >= LARGE_DOT_ROWS rows."""
    stack = [getattr(jaxpr, "jaxpr", jaxpr)]
    while stack:
        for eqn in stack.pop().eqns:
            name = eqn.primitive.name
            if name == "conv_general_dilated":
                return True
            if name == "dot_general":
                (lhs_contract, _), (lhs_batch, _) = eqn.params["dimension_numbers"]
                shape = eqn.invars[0].aval.shape
                rows = math.prod(d for i, d in enumerate(shape) if i not in lhs_contract)
                if isinstance(rows, int) and rows >= LARGE_DOT_ROWS:
                    return True
            stack.extend(_sub_jaxprs(eqn.params))
    return False


def compiler_options(jaxpr: Any, backend: str | None = None) -> dict[str, Any]:
    """The XLA compiler options jaxsm uses for a function with this jaxpr (``{}`` = XLA's defaults)."""
    if (backend or jax.default_backend()) != "cpu":
        return {}
    return dict(EIGEN_CPU_OPTIONS) if prefers_eigen(jaxpr) else {}


def _on_cpu(tree: Any) -> bool:
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array):
            return all(d.platform == "cpu" for d in leaf.devices())
    return jax.default_backend() == "cpu"


def has_tracers(tree: Any) -> bool:
    """Whether ``tree`` holds tracers: the call is inside the user's ``jit``/``grad``/``vmap``, whose outermost
    ``jax.jit`` compiles it (a nested ``jax.jit`` may not carry compiler options)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def host_values(*trees: Any) -> bool:
    """Whether the trees hold string tensors (NumPy object/bytes arrays: inputs, or a string lookup table's
    contents). XLA has no string type, so such a call runs op by op on the host."""
    return any(is_strings(leaf) for leaf in jax.tree_util.tree_leaves(trees))


def check_run_time_asserts(result: Any, op_by_op: Callable, state: Any, flat_inputs: Any) -> Any:
    """``(outputs, updated)`` of a compiled call without the flag of its run-time Asserts (jaxsm/ops/core.py).
    When one failed, the call is rerun op by op, where the failing Assert raises with its data (TF raises
    before any later side effect; the compiled call's updates are dropped). Inside the user's own jit the flag is
    a tracer and cannot be checked."""
    outputs, updated = result
    ok = updated.pop(RUN_TIME_ASSERTS, None)
    if ok is None or isinstance(ok, jax.core.Tracer) or bool(ok):
        return outputs, updated
    op_by_op(state, flat_inputs)
    raise AssertFailedError("an Assert of the function failed at run time (rerun op by op did not say which)")


def _known_small_int(x: Any) -> bool:
    """An integer or bool input with a value at trace time (not a tracer) and at most 16 elements."""
    if isinstance(x, jax.core.Tracer) or not isinstance(x, (np.ndarray, np.generic, jax.Array, int)):
        return False
    dtype = np.result_type(x)
    return (np.issubdtype(dtype, np.integer) or dtype == np.bool_) and np.size(x) <= 16


def _staged(x: Any) -> bool:
    """Whether tracer ``x`` (a forward-mode one, or what it wraps) is being staged into a jaxpr (the caller's
    ``jax.jit``)."""
    if type(x).__name__ == "DynamicJaxprTracer":
        return True
    return isinstance(x, jax.core.Tracer) and any(_staged(getattr(x, a, None)) for a in ("primal", "tangent", "val"))


def input_key(flat_inputs: Any) -> tuple:
    """What a compiled version is chosen by: the inputs' shapes and dtypes (a model's variables keep theirs)."""
    return tuple((np.shape(x), str(getattr(x, "dtype", type(x).__name__))) for x in flat_inputs)


def tuned_jit(fn: Callable, name: str = "function") -> Callable:
    """``jax.jit(fn)`` for functions called as ``fn(state, flat_inputs)``, compiled with ``compiler_options``
    chosen once per input shapes. ``._cache_size()`` counts the compiled versions.

    A function whose trace needs run-time values as shapes (tf.boolean_mask, tf.unique, tf.where with one
    argument, segment ops with run-time ids: a :class:`StaticValueError`) runs op by op without ``jax.jit`` for
    those input shapes instead, with one :class:`EagerFallbackWarning`: every value is concrete then, as in
    TF's eager mode, so data-dependent shapes work (slowly). Loops whose bodies need that still raise."""
    plain = jax.jit(fn)
    eigen = jax.jit(fn, compiler_options=EIGEN_CPU_OPTIONS)
    choice: dict[tuple, Callable] = {}
    eager: set[tuple] = set()
    with_known: dict[tuple, Callable] = {}

    def traced_in(state: Any, flat_inputs: Any) -> Any:
        """The call traced into the caller's ``jit``/``grad``/``vmap``. Small integer and bool inputs the caller
        gave as values (a Python/NumPy int, a concrete array) stay trace-time values, as in
        ``jaxsm.functional``'s apply: a loop whose trip count they set runs as ``lax.scan``, which ``jax.grad``
        differentiates, and shape arguments stay static. One trace per distinct values."""
        known = {i: np.asarray(x) for i, x in enumerate(flat_inputs) if _known_small_int(x)}
        if not known:
            return plain(state, flat_inputs)
        key = tuple((i, x.dtype.str, x.shape, x.tobytes()) for i, x in known.items())
        run = with_known.get(key)
        if run is None:
            if len(with_known) >= 64:  # (a Python loop over many values: keep the latest)
                with_known.clear()
            run = with_known[key] = jax.jit(
                lambda state, rest: fn(state, [known[i] if i in known else x for i, x in enumerate(rest)])
            )
        return run(state, [None if i in known else x for i, x in enumerate(flat_inputs)])

    def pick(state: Any, flat_inputs: Any) -> Callable:
        key = input_key(flat_inputs)
        run = choice.get(key)
        if run is None:
            use_eigen = _on_cpu((flat_inputs, state)) and prefers_eigen(plain.trace(state, flat_inputs).jaxpr)
            run = choice[key] = eigen if use_eigen else plain
        return run

    def call(state: Any, flat_inputs: Any) -> Any:
        key = input_key(flat_inputs)
        if key not in eager and key not in choice and host_values(state, flat_inputs):
            eager.add(key)
            warnings.warn(
                f"jaxsm: {name} runs op by op on the host, without jax.jit, for inputs of shapes "
                f"{[s for s, _ in key]}: it uses string tensors, which XLA cannot hold",
                EagerFallbackWarning,
                stacklevel=4,
            )
        run = traced_in if has_tracers((state, flat_inputs)) and key not in eager else choice.get(key)
        leaves = jax.tree_util.tree_leaves((state, flat_inputs)) if run is traced_in else []
        forward = [x for x in leaves if is_forward_mode(x)]
        if forward:
            if any(_staged(x) for x in forward):
                # the caller's jit around its jvp: JAX would raise on the custom_vjp only when it lowers the jit,
                # past the except below; traced directly, once, into the caller's trace instead
                return check_run_time_asserts(fn(state, flat_inputs), op_by_op, state, flat_inputs)
            try:
                return check_run_time_asserts(run(state, flat_inputs), op_by_op, state, flat_inputs)
            except TypeError as e:  # JAX cannot push tangents through the jaxpr's custom_vjp (a saved custom
                if "custom_vjp" not in str(e):  # gradient); traced under the caller's jvp, jaxsm gives it TF's JVP
                    raise
                return check_run_time_asserts(fn(state, flat_inputs), op_by_op, state, flat_inputs)
        if run is not None:
            return check_run_time_asserts(run(state, flat_inputs), op_by_op, state, flat_inputs)
        if key not in eager:
            try:
                with gc_paused():  # a new shape: trace, lower and compile
                    result = pick(state, flat_inputs)(state, flat_inputs)
                return check_run_time_asserts(result, op_by_op, state, flat_inputs)
            except StaticValueError as e:
                choice.pop(key, None)  # picked before the trace failed (no trace is needed to pick off the CPU)
                eager.add(key)
                warnings.warn(
                    f"jaxsm: {name} runs op by op, without jax.jit, for inputs of shapes {[s for s, _ in key]}: "
                    f"its output shapes depend on run-time values, which XLA cannot compile ({e})",
                    EagerFallbackWarning,
                    stacklevel=4,
                )
        return op_by_op(state, flat_inputs)

    def op_by_op(state: Any, flat_inputs: Any) -> Any:
        token = OP_BY_OP.set(True)
        try:
            return fn(state, flat_inputs)
        finally:
            OP_BY_OP.reset(token)

    call.pick, call.plain, call.eigen, call.eager = pick, plain, eigen, eager  # type: ignore[attr-defined]
    call.op_by_op = op_by_op  # type: ignore[attr-defined]
    call._cache_size = lambda: plain._cache_size() + eigen._cache_size()  # type: ignore[attr-defined]
    return call
