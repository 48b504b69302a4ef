"""Evaluate a graph body with JAX: static-value propagation, functional variable state, error context.

The interpreter walks a :class:`~jaxsm.graph.library.Body` in topological order (like torch.fx's Interpreter):
``run`` -> ``run_node`` -> the op's lowering. Values known at trace time stay NumPy (DESIGN principle 2): a pure
op whose inputs are all NumPy is evaluated right away -- with NumPy where that is exact (:mod:`jaxsm.graph.fold`),
else under ``jax.ensure_compile_time_eval`` -- and its result turned back into NumPy. Variable state is a dict
``{key: array}`` owned by the interpreter; lowerings read and replace entries, and control-flow lowerings thread
it through ``lax`` primitives, so a whole function is pure: ``(state, inputs) -> (outputs, new_state)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsm import dtypes
from jaxsm.compile import OP_BY_OP, RUN_TIME_ASSERTS
from jaxsm.errors import (
    GraphError,
    Int64RangeError,
    JaxsmError,
    LoweringError,
    StaticValueError,
    UnsupportedOpError,
    VariableError,
)
from jaxsm.graph import staging, symbolic
from jaxsm.graph.fold import Unfoldable
from jaxsm.graph.fold import fold as fold_numpy
from jaxsm.graph.library import Body, Library
from jaxsm.graph.node import Node
from jaxsm.graph.values import Resource, to_static

_MISSING = object()

# TF1 ops that take a variable reference itself (a ``Resource`` of kind "ref") rather than its value. Every other
# op reading a ref input gets the variable's current value, as TF's implicit dereference does.
REF_INPUT_OPS = frozenset(
    {
        "Assign",
        "AssignAdd",
        "AssignSub",
        "ScatterUpdate",
        "ScatterAdd",
        "ScatterSub",
        "ScatterMul",
        "ScatterDiv",
        "ScatterMin",
        "ScatterMax",
        "ScatterNdUpdate",
        "ScatterNdAdd",
        "ScatterNdSub",
        "ScatterNdMin",
        "ScatterNdMax",
        "StridedSliceAssign",
        "RefIdentity",
        "RefSwitch",
        "RefEnter",
        "RefMerge",
        "RefExit",
        "RefNextIteration",
        "IsVariableInitialized",
        "CountUpTo",
        "TemporaryVariable",
        "DestroyTemporaryVariable",
        "RefSelect",
        # TF1 optimizer ops: the variable and its slots (jaxsm/ops/training.py)
        "ApplyGradientDescent",
        "ApplyMomentum",
        "ApplyAdam",
        "ApplyAdaMax",
        "ApplyAdagrad",
        "ApplyAdagradV2",
        "ApplyAdagradDA",
        "ApplyRMSProp",
        "ApplyCenteredRMSProp",
        "ApplyAdadelta",
        "ApplyFtrl",
        "ApplyFtrlV2",
        "ApplyProximalAdagrad",
        "ApplyProximalGradientDescent",
        "ApplyAddSign",
        "ApplyPowerSign",
        "SparseApplyAdagrad",
        "SparseApplyAdagradV2",
        "SparseApplyAdagradDA",
        "SparseApplyMomentum",
        "SparseApplyRMSProp",
        "SparseApplyCenteredRMSProp",
        "SparseApplyAdadelta",
        "SparseApplyFtrl",
        "SparseApplyFtrlV2",
        "SparseApplyProximalAdagrad",
        "SparseApplyProximalGradientDescent",
    }
)
_MAX_CALL_DEPTH = 64
_DEBUG = bool(os.environ.get("JAXSM_DEBUG"))


class OpContext:
    """What a lowering sees besides its inputs: the node (attrs, name), the interpreter (state, calls)."""

    __slots__ = ("node", "interp")

    def __init__(self, node: Node, interp: Interpreter):
        self.node = node
        self.interp = interp

    def attr(self, name: str, default: Any = _MISSING) -> Any:
        return self.node.attr(name) if default is _MISSING else self.node.attr(name, default)

    def dtype(self, name: str, default: Any = _MISSING) -> np.dtype:
        return self.node.dtype_attr(name) if default is _MISSING else self.node.dtype_attr(name, default)

    @property
    def library(self) -> Library:
        return self.interp.library

    def error(self, message: str, cls: type[JaxsmError] = LoweringError) -> JaxsmError:
        return cls(f"while lowering {self.node.where()}: {message}")

    def static(self, value: Any, what: str) -> np.ndarray:
        """``value`` as NumPy, or a StaticValueError saying that ``what`` must be known at trace time."""
        s = to_static(value)
        if s is None:
            raise self.error(
                f"{what} must be known at trace time, but it is computed from run-time values "
                "(data-dependent shapes cannot be compiled by XLA)",
                StaticValueError,
            )
        return s

    # -- variable state -----------------------------------------------------------------------------------
    def read(self, handle: Any) -> Any:
        return self.interp.read_resource(handle, self.node)

    def write(self, handle: Any, value: Any) -> None:
        self.interp.write_resource(handle, value, self.node)

    @property
    def position(self) -> tuple[Body, int] | None:
        """The graph body this node belongs to and its index there (None outside a body)."""
        pos = self.interp.position
        return pos if pos is not None and pos[0].nodes[pos[1]] is self.node else None

    def call(self, fname: str, args: Sequence[Any]) -> list[Any]:
        """Run library function ``fname`` on ``args`` inside the current trace."""
        return self.interp.call(fname, args, self.node)


class Interpreter:
    """Evaluates bodies of one :class:`Library`, sharing one variable state across nested calls."""

    def __init__(self, library: Library, state: dict[str, Any] | None = None):
        self.library = library
        self.state: dict[str, Any] = dict(state or {})
        self.call_stack: list[str] = []
        # id(traced value) -> (value, static lower bound): lets Minimum see through max(c, t) (jaxsm/ops/math.py)
        self.lower_bounds: dict[int, tuple[Any, np.ndarray]] = {}
        # (body, node index) of the node being lowered: lets a lowering look at its consumers (jaxsm/graph/dedup.py)
        self.position: tuple[Body, int] | None = None
        # (body, values, inputs) of the bodies being evaluated, innermost last (jaxsm/graph/custom_gradient.py)
        self.frames: list[tuple[Body, list, list]] = []
        # Assert conditions known only at run time, when the caller checks them (pure_function; not inside the
        # bodies of lax control flow, whose values cannot leave them): jaxsm/ops/core.py
        self.run_time_asserts: list[Any] | None = None

    # -- state --------------------------------------------------------------------------------------------
    def read_resource(self, handle: Any, node: Node) -> Any:
        if not isinstance(handle, Resource):
            raise LoweringError(f"while lowering {node.where()}: expected a resource handle, got {type(handle)}")
        try:
            return self.state[handle.key]
        except KeyError:
            raise VariableError(
                f"while lowering {node.where()}: variable '{handle.key}' is not initialized (it has no value in "
                "the checkpoint and no assignment ran before this read)"
            ) from None

    def write_resource(self, handle: Any, value: Any, node: Node) -> None:
        if not isinstance(handle, Resource):
            raise LoweringError(f"while lowering {node.where()}: expected a resource handle, got {type(handle)}")
        self.state[handle.key] = value

    # -- calls --------------------------------------------------------------------------------------------
    def call(self, fname: str, args: Sequence[Any], caller: Node | None = None) -> list[Any]:
        if fname in self.call_stack:
            chain = " -> ".join(self.call_stack + [fname])
            raise LoweringError(f"recursive function call: {chain} (TF graphs cannot recurse)")
        if len(self.call_stack) >= _MAX_CALL_DEPTH:
            raise LoweringError(f"function calls nested deeper than {_MAX_CALL_DEPTH}: {self.call_stack[-3:]}")
        body = self.library.body(fname)
        if len(args) != len(body.inputs):
            where = f" at {caller.where()}" if caller else ""
            raise LoweringError(f"function '{fname}' takes {len(body.inputs)} inputs, got {len(args)}{where}")
        self.call_stack.append(fname)
        try:
            return self.run(body, list(args))
        finally:
            self.call_stack.pop()

    # -- evaluation ---------------------------------------------------------------------------------------
    def run(self, body: Body, inputs: list[Any]) -> list[Any]:
        """Evaluate ``body`` on ``inputs``; returns the values of ``body.outputs``."""
        values: list[list[Any] | None] = [None] * len(body.nodes)
        kept = self.library.kept_tensors.get(body.name)
        self.frames.append((body, values, inputs))
        try:
            self._run_nodes(body, inputs, values, kept)
        finally:
            self.frames.pop()
        results = []
        for src, idx in body.outputs:
            value = inputs[idx] if src < 0 else values[src][idx]
            if src >= 0 and type(value) is Resource and value.kind == "ref":  # a TF1 loop body's forwarded ref
                value = self.read_resource(value, body.nodes[src])
            results.append(value)
        return results

    def _run_nodes(self, body: Body, inputs: list[Any], values: list, kept: set[str] | None) -> None:
        if len(body.nodes) >= staging.MIN_NODES and _op_by_op(inputs, self.state):
            if staging.run(self, body, inputs, values, kept):  # host nodes one by one, the others as jitted groups
                return
        for k, node in enumerate(body.nodes):
            values[k] = self.run_node(node, self.node_args(body, k, inputs, values))
            for dead in body.free_after[k]:
                if not kept or body.nodes[dead].name not in kept:
                    values[dead] = None

    def node_args(self, body: Body, k: int, inputs: list[Any], values: list) -> list[Any]:
        """The input values of ``body.nodes[k]``; sets :attr:`position` to it."""
        args = []
        for src, idx in body.node_inputs[k]:
            if src < 0:
                args.append(inputs[idx])
            else:
                outs = values[src]
                if idx >= len(outs):
                    raise LoweringError(
                        f"while lowering {body.nodes[k].where()}: input {body.nodes[src].name}:{idx} does not exist "
                        f"({body.nodes[src].op} produced {len(outs)} outputs)"
                    )
                args.append(outs[idx])
        self.position = (body, k)
        return args

    def run_node(self, node: Node, args: list[Any]) -> list[Any]:
        """Lower one node: dispatch to a library function or the op registry, with static folding."""
        from jaxsm.ops.random import U64_WORDS_OPS, low_words
        from jaxsm.ops.registry import lookup
        from jaxsm.ops.strings import HOST_OPS, on_strings

        if node.op in self.library.functions:
            return self.call(node.op, args, node)
        opdef = lookup(node.op)
        if opdef is None:
            raise UnsupportedOpError(
                f"op {node.op} has no JAX lowering (node {node.where()})", {node.op: (1, node.name)}
            )
        ctx = OpContext(node, self)
        if not jax.config.jax_enable_x64 and node.op not in U64_WORDS_OPS:
            args = low_words(args)
        if node.op in _TYPED_INPUTS:
            _check_input_types(node, args)
        has_symbolic = any(symbolic.is_symbolic(a) for a in args)
        if has_symbolic:
            if node.op in symbolic.SYMBOLIC_OPS and all(isinstance(a, np.ndarray) for a in args):
                return [symbolic.settle(ctx, symbolic.SYMBOLIC_OPS[node.op](ctx, *args))]
            args = [
                a if i in opdef.static or not symbolic.is_symbolic(a) else symbolic.to_traced(a)
                for i, a in enumerate(args)
            ]
        # An Identity of a ref (a RefVariable's 'v/read') forwards the variable's buffer in TF, so its consumers
        # read the value current when they run (after assignments they are ordered behind), not when it ran.
        if node.op not in REF_INPUT_OPS and node.op != "Identity":
            for i, a in enumerate(args):
                if type(a) is Resource and a.kind == "ref":
                    args[i] = self.read_resource(a, node)
        for i in opdef.static:
            if i < len(args):
                args[i] = ctx.static(args[i], f"input {i} of {node.op}")
        strings = on_strings(node, args)
        if strings and node.op in HOST_OPS:  # the string version of an op that moves elements (ops/strings.py)
            opdef = dataclasses.replace(opdef, fn=HOST_OPS[node.op])
        fold = not opdef.stateful and not has_symbolic and not strings and all(isinstance(a, np.ndarray) for a in args)
        if not fold and node.op in _SATURATED_OPS:
            args = _saturate_wide_ints(args)
        elif not fold and node.op in _WIDE_ARITHMETIC_OPS:
            _refuse_wide_ints(args, node)
        if _DEBUG:
            print(f"[jaxsm] {node.where()} fold={fold}")
        try:
            if fold:
                with _static_precision(args):
                    try:
                        if not args:  # Const and friends: already NumPy
                            raise Unfoldable("no inputs")
                        known = opdef.static + opdef.checked
                        out = fold_numpy(
                            self.library.fold_cache, id(node), partial(opdef.fn, ctx), args, known, xla=True
                        )
                    except Unfoldable:
                        with jax.ensure_compile_time_eval():
                            out = opdef.fn(ctx, *args)
            else:
                out = opdef.fn(ctx, *args)
        except JaxsmError as e:
            if "while lowering" in str(e):
                raise
            raise type(e)(f"while lowering {node.where()}: {e}") from e
        except Exception as e:
            raise LoweringError(f"while lowering {node.where()}: {type(e).__name__}: {e}") from e
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        if fold:
            outs = [_to_numpy(o) for o in outs]
        return outs


# Ops whose inputs have the dtypes their type attributes name, input by input. TF's graph import refuses a node
# whose attribute contradicts an input's dtype (a corrupt or hand-edited graph); jaxsm would compute in the
# input's dtype and give other dtypes downstream.
_TYPED_INPUTS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("Sum", "Mean", "Prod", "Max", "Min"), ("T", "Tidx")),
    **dict.fromkeys(("Cast",), ("SrcT",)),
    **dict.fromkeys(
        ("AddV2", "Add", "Sub", "Mul", "RealDiv", "Div", "DivNoNan", "Maximum", "Minimum", "Pow", "FloorDiv")
        + ("FloorMod", "SquaredDifference", "BiasAdd", "MatMul", "BatchMatMulV2", "Less", "LessEqual", "Greater")
        + ("GreaterEqual", "Equal", "NotEqual"),
        ("T", "T"),
    ),
    **dict.fromkeys(
        ("Neg", "Abs", "Exp", "Log", "Sqrt", "Rsqrt", "Square", "Reciprocal", "Tanh", "Sigmoid", "Relu", "Relu6")
        + ("Elu", "Selu", "Softplus", "Floor", "Ceil", "Round", "Sign"),
        ("T",),
    ),
    **dict.fromkeys(("AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"), ("", "dtype")),
}


def _check_input_types(node: Node, args: list[Any]) -> None:
    for i, (name, a) in enumerate(zip(_TYPED_INPUTS[node.op], args)):
        got = getattr(a, "dtype", None)
        if not name or got is None or np.dtype(got).kind == "O":  # (handles, lists, symbolic dimensions)
            continue
        want = node.dtype_attr(name, None)
        if want is None or got == want or want.kind == "O":
            continue
        if jax.dtypes.canonicalize_dtype(got) != jax.dtypes.canonicalize_dtype(want):  # (x64 off: 32-bit twins)
            raise GraphError(
                f"while lowering {node.where()}: input {i} is {np.dtype(got).name}, but the node's attribute {name}"
                f" says {np.dtype(want).name}: the graph is corrupt (TF refuses it when it imports the graph)"
            )


# Ops whose static int64 operands are bounds or sentinels: Keras' IndexLookup maps its mask token to tf.int64.max
# so that bincount drops it, graphs clip with tf.int64.max. With jax_enable_x64 off the traced operand is int32 and
# JAX's cast would wrap such a value (int64 max -> -1: a silent wrong answer); clamped to int32's range it keeps
# its order against every int32 value.
_SATURATED_OPS = frozenset(
    {"Select", "SelectV2", "Minimum", "Maximum", "ClipByValue", "Less", "LessEqual", "Greater", "GreaterEqual"}
    | {"Equal", "NotEqual", "ConcatV2", "Pack", "Fill", "BroadcastTo"}
)
_INT32 = np.iinfo(np.int32)


def _saturate_wide_ints(args: list[Any]) -> list[Any]:
    """Static int64 operands beyond int32's range clamped to it when jax_enable_x64 is off (``_SATURATED_OPS``)."""
    if jax.config.jax_enable_x64:
        return args
    return [np.clip(a, _INT32.min, _INT32.max) if _beyond_int32(a) else a for a in args]


# Arithmetic whose result a wrapped operand changes: with jax_enable_x64 off, a static int64 operand beyond 32 bits
# meeting a traced (32-bit) one would give a silent wrong answer, so the trace stops with Int64RangeError.
_WIDE_ARITHMETIC_OPS = frozenset(
    {"Add", "AddV2", "AddN", "Sub", "Mul", "MulNoNan", "Div", "FloorDiv", "FloorMod", "TruncateDiv", "TruncateMod"}
    | {"Mod", "Pow", "SquaredDifference", "BiasAdd", "MatMul", "BatchMatMulV2", "BatchMatMulV3"}
)


def _refuse_wide_ints(args: list[Any], node: Node) -> None:
    if jax.config.jax_enable_x64:
        return
    for a in args:
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu" or a.dtype.itemsize != 8 or not a.size:
            continue
        info = np.iinfo(np.int32 if a.dtype.kind == "i" else np.uint32)
        if a.min() < info.min or a.max() > info.max:
            raise Int64RangeError(
                f"{node.where()}: a {a.dtype.name} constant of {node.op} ({a.min()}..{a.max()}) does not fit 32 bits "
                "and jax_enable_x64 is off, so JAX would wrap it: a wrong answer. Call "
                "jax.config.update('jax_enable_x64', True) before loading for TF's exact 64-bit results."
            )


def _beyond_int32(a: Any) -> bool:
    if not isinstance(a, np.ndarray) or a.dtype != np.int64 or a.size == 0:
        return False
    return bool(a.min() < _INT32.min or a.max() > _INT32.max)


_WIDE_DTYPES = frozenset(np.dtype(t) for t in ("int64", "uint64", "float64", "complex128"))


def _static_precision(args: list[np.ndarray]):
    """Values known at trace time keep TF's 64-bit dtypes even with jax_enable_x64 off (principle 7), so
    e.g. int64 shape or index arithmetic beyond 2**31 folds exactly."""
    if not jax.config.jax_enable_x64 and any(a.dtype in _WIDE_DTYPES for a in args):
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def _to_numpy(x: Any) -> Any:
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        return np.asarray(x)
    if isinstance(x, (np.generic, bool, int, float)):
        return np.asarray(x)
    return x


def pure_function(
    library: Library,
    fname: str,
    captures: Sequence[Any],
) -> Callable[[dict[str, Any], Sequence[Any]], tuple[list[Any], dict[str, Any]]]:
    """``fn(state, flat_inputs) -> (flat_outputs, updated_state)`` for FunctionDef ``fname``.

    ``captures`` (resource handles, constants, asset paths) are appended after the caller's inputs, as TF's
    ``bound_inputs`` are. ``updated_state`` holds only the entries the function assigned, so read-only functions
    return ``{}``. The function is pure and traceable: wrap it in ``jax.jit``/``grad``/``vmap`` as you like.
    """

    def fn(state: dict[str, Any], flat_inputs: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
        interp = Interpreter(library, state)
        interp.run_time_asserts = []
        outputs = interp.call(fname, list(flat_inputs) + list(captures))
        if not jax.config.jax_enable_x64:
            from jaxsm.ops.random import low_words

            outputs = low_words(outputs)
        updated = {k: v for k, v in interp.state.items() if k not in state or state[k] is not v}
        return outputs, with_run_time_asserts(updated, interp)

    return fn


def _op_by_op(inputs: list[Any], state: dict[str, Any]) -> bool:
    """Whether this body runs op by op on concrete values (jaxsm/compile.py's fallback), not in a trace."""
    return OP_BY_OP.get() and not any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves((inputs, state)))


def with_run_time_asserts(updated: dict[str, Any], interp: Interpreter) -> dict[str, Any]:
    """``updated`` plus, when the function has Asserts decided at run time, whether all of them held (under the
    key ``RUN_TIME_ASSERTS``; jaxsm/compile.py checks and removes it)."""
    if interp.run_time_asserts:
        updated[RUN_TIME_ASSERTS] = jnp.all(jnp.stack(interp.run_time_asserts))
    return updated


def dtype_of(x: Any) -> np.dtype:
    """The NumPy dtype of an array-like value."""
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


__all__ = ["Interpreter", "OpContext", "pure_function", "dtype_of", "dtypes"]
