"""TF1-only ops: ref variables, v1 control-flow primitives, TensorArrayV3 (and its gradients), stacks, hash tables.

* Ref variables (``VariableV2``) are :class:`~jaxsm.graph.values.Resource` handles of kind ``"ref"``; the
  interpreter
  passes them unchanged to the ops in ``REF_INPUT_OPS`` and dereferences them for every other op.
* ``Switch``/``Merge`` only run in graphs rewritten by :func:`jaxsm.tf1.lower_control_flow`: loop frames have
  become
  functional ``While`` nodes by then, and each cond ``Merge`` carries the predicate that selects between its
  inputs.
* A TensorArrayV3's *flow* value carries its storage as a :class:`~jaxsm.graph.tensor_list.TensorList` (TF1
  orders
  every TensorArray op through the flow, so it is the data dependency), which lets loops carry it like control
  flow v2's lists; the handle is a plain ``Resource`` of kind ``"tensor_array"``.
* A stack (``StackV2``: tf.compat.v1 gradients of v1 while loops push forward values in the loop and pop them in
  the gradient loop) is a :class:`StackState` in the interpreter state. Nothing carries its run-time size through
  a compiled loop, so a function with stacks runs op by op. ``TemporaryVariable`` makes a fresh ref each run.
* Hash tables live in the interpreter state as two arrays, keys sorted and their values, initialised on the
  host
  (they read asset files) and looked up with ``searchsorted``. String keys or values stay NumPy arrays on the
  host, and a function using them runs op by op there (jaxsm/compile.py ``host_values``).
"""

from __future__ import annotations

import functools
import itertools
import operator
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsm import dtypes
from jaxsm.compile import OP_BY_OP
from jaxsm.errors import StaticValueError, VariableError
from jaxsm.graph.node import Node
from jaxsm.graph.tensor_list import TensorList
from jaxsm.graph.values import Resource, to_static
from jaxsm.ops.array import check_index_depth, strided_update
from jaxsm.ops.lists import check_index, read, write
from jaxsm.ops.registry import op
from jaxsm.ops.variables import SCATTER_MODES, scatter_nd, scatter_rows

# Attribute the control-flow rewrite puts on a cond Merge: for each data input, the branch (0 = false, 1 =
# true)
# it comes from. The rewrite also appends the governing predicate as the last data input.
MERGE_BRANCHES_ATTR = "_jaxsm_cond_branches"

TABLE_KIND = "table"
MUTABLE_TABLE_KIND = "mutable_table"
TENSOR_ARRAY_KIND = "tensor_array"
STACK_KIND = "stack"
TENSOR_ARRAY_GRAD_KIND = "tensor_array_grad"


def variable_key(node: Node) -> str:
    """The state key of a ``VariableV2``/``VarHandleOp`` node: its ``shared_name``, else its node name."""
    return node.attr("shared_name", "") or node.name


def table_state_keys(handle: Resource) -> tuple[str, str]:
    """The two state entries of a hash table: sorted keys and the values in the same order."""
    return f"{handle.key}/keys", f"{handle.key}/values"


# -- ref variables
# -----------------------------------------------------------------------------------------------
@op("VariableV2", "Variable", stateful=True)
def variable_v2(ctx):
    return Resource(variable_key(ctx.node), "ref")


@op("Assign", stateful=True)
def assign(ctx, ref, value):
    if not dtypes.is_strings(value):  # a string variable's value stays on the host
        value = jnp.asarray(value, ctx.dtype("T"))
    old = ctx.interp.state.get(ref.key)
    if ctx.attr("validate_shape", True) and old is not None and tuple(old.shape) != tuple(value.shape):
        raise ctx.error(
            f"cannot assign a value of shape {tuple(value.shape)} to variable '{ref.key}' of shape "
            f"{tuple(old.shape)} (validate_shape=True)",
            VariableError,
        )
    ctx.write(ref, value)
    return ref


@op("AssignAdd", stateful=True)
def assign_add(ctx, ref, value):
    ctx.write(ref, ctx.read(ref) + jnp.asarray(value, ctx.dtype("T")))
    return ref


@op("AssignSub", stateful=True)
def assign_sub(ctx, ref, value):
    ctx.write(ref, ctx.read(ref) - jnp.asarray(value, ctx.dtype("T")))
    return ref


@op(*(f"Scatter{k}" for k in SCATTER_MODES), stateful=True)
def scatter(ctx, ref, indices, updates):
    ctx.write(ref, scatter_rows(ctx.read(ref), indices, updates, ctx.node.op[len("Scatter") :]))
    return ref


@op(*(f"ScatterNd{k}" for k in ("Update", "Add", "Sub", "Min", "Max")), stateful=True)
def scatter_nd_ref(ctx, ref, indices, updates):
    check_index_depth(ctx, indices)
    ctx.write(ref, scatter_nd(ctx.read(ref), indices, updates, ctx.node.op[len("ScatterNd") :]))
    return ref


@op("StridedSliceAssign", stateful=True)
def strided_slice_assign(ctx, ref, begin, end, strides, value):
    ctx.write(ref, strided_update(ctx, ctx.read(ref), begin, end, strides, value))
    return ref


@op("IsVariableInitialized", stateful=True)
def is_variable_initialized(ctx, ref):
    return np.asarray(ref.key in ctx.interp.state)


@op("CountUpTo", stateful=True)
def count_up_to(ctx, ref):
    # TF raises OutOfRange once the limit is reached; a compiled function cannot raise, so only a value known
    # at trace time is checked.
    old = ctx.read(ref)
    limit = ctx.attr("limit")
    known = to_static(old)
    if known is not None and int(known) >= limit:
        raise ctx.error(f"variable '{ref.key}' reached the CountUpTo limit {limit}")
    ctx.write(ref, old + 1)
    return old


_temporary_ids = itertools.count()


@op("TemporaryVariable", stateful=True)
def temporary_variable(ctx):
    # Uninitialized until assigned (TF hands out uninitialized memory; jaxsm raises on such a read). Each run
    # makes a new one.
    return Resource(f"{ctx.attr('var_name', '') or ctx.node.name}/temporary_{next(_temporary_ids)}", "ref")


@op("DestroyTemporaryVariable", stateful=True)
def destroy_temporary_variable(ctx, ref):
    value = ctx.read(ref)
    del ctx.interp.state[ref.key]
    return value


@op("AccumulateNV2")
def accumulate_n(ctx, *inputs):
    """The sum of the inputs as TF computes it: its graph rewrite (core/common_runtime/accumulate_n_optimizer.cc)
    assigns zeros to a temporary variable and AssignAdds each input in order, so -0.0 inputs sum to +0.0."""
    shape = jnp.shape(inputs[0])
    if any(jnp.shape(x) != shape for x in inputs):
        raise ctx.error(f"inputs of different shapes {[list(jnp.shape(x)) for x in inputs]}")
    total = functools.reduce(operator.add, (jnp.asarray(x, ctx.dtype("T")) for x in inputs))
    # A sum started from +0.0 is never -0.0 and otherwise equal to the plain one. (XLA folds 0 + x into x.)
    if jnp.issubdtype(total.dtype, jnp.complexfloating):
        return jax.lax.complex(_positive_zero(total.real), _positive_zero(total.imag))
    return _positive_zero(total) if jnp.issubdtype(total.dtype, jnp.floating) else total


def _positive_zero(x):
    return jnp.where(x == 0, jnp.zeros_like(x), x)


@op("RefSelect", static=(0,))
def ref_select(ctx, index, *refs):
    i = int(index)
    if not 0 <= i < len(refs):
        raise ctx.error(f"Index must be in the range [0, {len(refs)}) but got {i}")
    return refs[i]


# -- v1 control flow (after jaxsm.tf1.lower_control_flow)
# -------------------------------------------------------
@op("Switch", "RefSwitch")
def switch(ctx, data, pred):
    # Both branches are evaluated; the Merge that joins them selects on the same predicate.
    return data, data


def select_branch(ctx, pred: Any, if_true: Any, if_false: Any) -> Any:
    """``if_true`` where ``pred`` else ``if_false``: arrays, TensorLists, (identical) resource handles."""
    p = to_static(pred)
    if p is not None:
        return if_true if bool(p) else if_false
    if isinstance(if_true, Resource) or isinstance(if_false, Resource):
        if if_true == if_false:
            return if_true
        raise ctx.error("a run-time predicate selects between two different resources; jaxsm cannot represent that")
    t_leaves, t_tree = jax.tree_util.tree_flatten(if_true)
    f_leaves, f_tree = jax.tree_util.tree_flatten(if_false)
    if t_tree != f_tree or any(jnp.shape(a) != jnp.shape(b) for a, b in zip(t_leaves, f_leaves, strict=True)):
        raise ctx.error(
            "the branches of a cond with a run-time predicate produce values of different shapes or "
            "structures; XLA needs one static shape"
        )
    pred = jnp.asarray(pred).astype(bool).reshape(())
    leaves = [jnp.where(pred, a, jnp.asarray(b, jnp.result_type(a))) for a, b in zip(t_leaves, f_leaves, strict=True)]
    return jax.tree_util.tree_unflatten(t_tree, leaves)


@op("Merge", "RefMerge")
def merge(ctx, *args):
    branches = ctx.attr(MERGE_BRANCHES_ATTR, None)
    if branches is None:
        raise ctx.error(
            "a Merge outside a cond that jaxsm.tf1.lower_control_flow recognised; TF1 loops and conds "
            "must be rewritten before they run"
        )
    values, pred = args[:-1], args[-1]
    if_true, if_false = (values[0], values[1]) if branches[0] == 1 else (values[1], values[0])
    index_true = np.int32(0 if branches[0] == 1 else 1)
    value = select_branch(ctx, pred, if_true, if_false)
    if isinstance(value, Resource) and value.kind == "ref" and ctx.node.op == "Merge":
        value = ctx.read(value)
    index = select_branch(ctx, pred, np.asarray(index_true), np.asarray(1 - index_true, np.int32))
    return value, index


# -- TensorArrayV3
# -------------------------------------------------------------------------------------------------
def _element_shape(ctx, attr: str) -> tuple[int, ...] | None:
    shape = ctx.attr(attr, None)
    if shape is None or any(d is None or d < 0 for d in shape):
        return None
    return tuple(shape)


def _items(ctx, flow: TensorList, element_shape: tuple[int, ...] | None = None) -> Any:
    if not isinstance(flow, TensorList):
        raise ctx.error("the flow input is not a TensorArray flow (was the TensorArray created in this graph?)")
    if flow.items is not None:
        return flow.items
    shape = flow.known_element_shape() or element_shape
    if shape is None:
        raise ctx.error("reading a TensorArray that was never written and whose element shape is unknown")
    return jnp.zeros((flow.capacity or 0,) + tuple(shape), flow.element_dtype)


def _with_items(flow: TensorList, items: Any, length: Any = None) -> TensorList:
    return TensorList(
        items,
        flow.length if length is None else length,
        flow.element_dtype,
        flow.element_shape,
        int(items.shape[0]),
    )


@op("TensorArrayV3", static=(0,), stateful=True)
def tensor_array(ctx, size):
    n = int(size)
    dtype = ctx.dtype("dtype")
    shape = _element_shape(ctx, "element_shape")
    items = jnp.zeros((n,) + shape, dtype) if shape is not None else None
    handle = Resource(ctx.node.name, TENSOR_ARRAY_KIND)
    reads = _cleared_reads(ctx)
    reads.pop(handle.key, None)
    if ctx.attr("clear_after_read", True):
        reads[handle.key] = {}
    return handle, TensorList(items, n, dtype, shape, n)


def _cleared_reads(ctx) -> dict[str, dict[int, str]]:
    """The indices read so far of each TensorArray made with clear_after_read (in this interpreter's run), and
    the node that read each."""
    if not hasattr(ctx.interp, "tensor_array_reads"):
        ctx.interp.tensor_array_reads = {}
    return ctx.interp.tensor_array_reads


def _clear_after_read(ctx, handle: Any, index: Any) -> None:
    """TF's clear_after_read (tensor_array.h ``LockedRead``): an element read once is gone, a second read raises.
    Checked for indices known at trace time, outside cond branches (jaxsm.tf1.GUARD_ATTR: both are traced), and
    between different read ops: one node reading an index again is a loop body traced again (a compiled attempt
    before the op-by-op run, a shape probe), not a second read."""
    reads = _cleared_reads(ctx).get(getattr(handle, "key", None))
    i = to_static(index)
    if reads is None or i is None or ctx.node.has_attr("_jaxsm_guard_branches"):
        return
    for k in np.asarray(i).reshape(-1).tolist():
        if reads.setdefault(k, ctx.node.name) != ctx.node.name:
            raise ctx.error(
                f"TensorArray {handle.key}: Could not read index {k} twice because it was cleared after a previous "
                "read (perhaps try setting clear_after_read = false?)."
            )


@op("TensorArrayWriteV3")
def tensor_array_write(ctx, handle, index, value, flow):
    if _is_grad(handle):
        return _grad_write(ctx, handle, index, value)
    item = jnp.asarray(value, flow.element_dtype)
    i = to_static(index)
    items = flow.items
    capacity = flow.capacity if items is None else items.shape[0]
    if i is None and not capacity:
        ctx.static(index, "the index of a write to a TensorArray of size 0 (dynamic_size)")
    if i is not None and int(i) >= (capacity or 0):
        # dynamic_size=True: grow to fit, as TF does. Only possible while indices are known at trace time.
        grown = jnp.zeros((int(i) + 1,) + item.shape, flow.element_dtype)
        items = grown if items is None else grown.at[: items.shape[0]].set(items)
    elif items is None:
        items = jnp.zeros((capacity,) + item.shape, flow.element_dtype)
    check_index(ctx, index, int(items.shape[0]), "write")
    length = max(int(flow.length), int(i) + 1) if i is not None and isinstance(flow.length, int) else flow.length
    return _with_items(flow, write(items, index, item), length)


def _size(flow: TensorList) -> int | None:
    return int(flow.length) if isinstance(flow.length, int | np.integer) else None


@op("TensorArrayReadV3")
def tensor_array_read(ctx, handle, index, flow):
    if _is_grad(handle):
        return _grad_read(ctx, handle, index)
    check_index(ctx, index, _size(flow), "read")
    _clear_after_read(ctx, handle, index)
    return read(_items(ctx, flow), index)


@op("TensorArrayGatherV3")
def tensor_array_gather(ctx, handle, indices, flow):
    if _is_grad(handle):
        return _grad_read(ctx, handle, indices)
    check_index(ctx, indices, _size(flow), "gather")
    _clear_after_read(ctx, handle, indices)
    return read(_items(ctx, flow, _element_shape(ctx, "element_shape")), indices)


@op("TensorArrayScatterV3")
def tensor_array_scatter(ctx, handle, indices, value, flow):
    if _is_grad(handle):
        return _grad_write(ctx, handle, indices, value, scatter=True)
    value = jnp.asarray(value, flow.element_dtype)
    idx = to_static(indices)
    items = flow.items
    if items is None:
        n = max(int(flow.capacity or 0), int(idx.max()) + 1 if idx is not None and idx.size else 0)
        items = jnp.zeros((n,) + value.shape[1:], flow.element_dtype)
    check_index(ctx, indices, int(items.shape[0]), "scatter")
    return _with_items(flow, write(items, indices, value))


@op("TensorArrayConcatV3")
def tensor_array_concat(ctx, handle, flow):
    if _is_grad(handle):
        return _grad_concat(ctx, handle)
    items = _items(ctx, flow)
    return items.reshape((-1,) + items.shape[2:]), np.full((items.shape[0],), items.shape[1], np.int64)


@op("TensorArraySplitV3", static=(2,))
def tensor_array_split(ctx, handle, value, lengths, flow):
    if _is_grad(handle):
        return _grad_split(ctx, handle, value, lengths)
    value = jnp.asarray(value, flow.element_dtype)
    lengths = [int(v) for v in lengths]
    if len(set(lengths)) > 1:
        raise ctx.error("TensorArray.split with unequal lengths cannot be stored as one array")
    n = len(lengths)
    return _with_items(flow, value.reshape((n, lengths[0] if n else 0) + value.shape[1:]), n)


@op("TensorArraySizeV3")
def tensor_array_size(ctx, handle, flow):
    if _is_grad(handle):
        return np.asarray(len(_grad_state(ctx, handle).elements), np.int32)
    return np.asarray(flow.length, np.int32) if isinstance(flow.length, int) else jnp.asarray(flow.length, jnp.int32)


@op("TensorArrayCloseV3", stateful=True)
def tensor_array_close(ctx, handle):
    return []


# -- TensorArrayGradV3: the gradient TensorArrays of tf.compat.v1.gradients
# ---------------------------------------------
@dataclass(frozen=True)
class GradTensorArray:
    """A gradient TensorArray in the interpreter state (TensorArrayGradOp in tensorflow/core/kernels/
    tensor_array_ops.cc; tensor_array.h): the forward array's size, its element shape (with GradWithShape's
    prefix) and the elements written so far (None: not yet). Immutable, as :class:`StackState`.

    TF keeps it in a resource manager under (forward array, ``source``), not in the flow: the gradient ops wrap the
    *forward* flow, and gradient flows get summed (AddN) where a forward flow has several consumers. So the
    storage lives in the state, and a function with one runs op by op, as stacks do (v1 while-loop gradients have
    stacks anyway)."""

    elements: tuple
    element_shape: tuple[int, ...] | None
    dtype: np.dtype


def _is_grad(handle: Any) -> bool:
    return isinstance(handle, Resource) and handle.kind == TENSOR_ARRAY_GRAD_KIND


def _grad_state(ctx, handle: Resource) -> GradTensorArray:
    _only_op_by_op(ctx)
    return ctx.interp.state[handle.key]


def _grad_flow() -> np.ndarray:
    # A gradient array's flow only orders its ops (the storage is in the state); TF's flow is a float scalar.
    return np.zeros((), np.float32)


@op("TensorArrayGradV3", "TensorArrayGradWithShape", static=(2,), stateful=True)
def tensor_array_grad(ctx, handle, flow, shape_to_prepend=None):
    _only_op_by_op(ctx)
    if not isinstance(handle, Resource) or handle.kind != TENSOR_ARRAY_KIND:
        raise ctx.error(f"{handle!r} is not a TensorArray created by a TensorArrayV3 node of this graph")
    key = f"{handle.key}/grad/{ctx.attr('source')}"
    if key in ctx.interp.state:  # every call with the same source names the same array, as in TF
        return Resource(key, TENSOR_ARRAY_GRAD_KIND), flow
    if not isinstance(flow, TensorList):  # a gradient flow: TF reads the size off the forward array's resource
        raise ctx.error("a gradient TensorArray first made from a gradient flow: the forward array's size is unknown")
    shape = tuple(flow.items.shape[1:]) if flow.items is not None else flow.known_element_shape()
    if shape_to_prepend is not None and shape is not None:
        shape = tuple(int(d) for d in np.asarray(shape_to_prepend).reshape(-1)) + shape
    ctx.interp.state[key] = GradTensorArray((None,) * int(flow.length), shape, np.dtype(flow.element_dtype))
    return Resource(key, TENSOR_ARRAY_GRAD_KIND), flow


def _grad_write(ctx, handle: Resource, index: Any, value: Any, scatter: bool = False) -> np.ndarray:
    """Write (scatter: one row per index) to a gradient array; a second write to an index adds to the first
    (TF's ``multiple_writes_aggregate``), so several reads of one forward element sum their gradients."""
    ta = _grad_state(ctx, handle)
    indices = np.asarray(ctx.static(index, "a gradient TensorArray's index")).reshape(-1)
    rows = jnp.asarray(value, ta.dtype)
    rows = rows if scatter else rows[None]
    if rows.shape[0] != indices.shape[0]:
        raise ctx.error(f"Expected len(indices) == values.shape[0], but saw: {indices.shape[0]} vs. {rows.shape[0]}")
    elements = list(ta.elements)
    for i, row in zip(indices.tolist(), rows, strict=True):
        if not 0 <= i < len(elements):
            raise ctx.error(f"Tried to write to index {i} but array is not resizeable and size is: {len(elements)}")
        if ta.element_shape is not None and tuple(row.shape) != ta.element_shape:
            raise ctx.error(
                f"Could not write to TensorArray index {i} because the value shape is {list(row.shape)} which is "
                f"incompatible with the TensorArray's inferred element shape: {list(ta.element_shape)}"
            )
        old = elements[i]
        if old is not None and old.shape != row.shape:
            raise ctx.error(
                f"Could not aggregate to TensorArray index {i} because the existing shape is {list(old.shape)} but "
                f"the new input shape is {list(row.shape)}"
            )
        elements[i] = row if old is None else old + row
    ctx.interp.state[handle.key] = replace(ta, elements=tuple(elements))
    return _grad_flow()


def _grad_element(ctx, ta: GradTensorArray, i: int) -> Any:
    """An element of a gradient array; zeros where nothing was written (a forward element no loss depends on)."""
    if not 0 <= i < len(ta.elements):
        raise ctx.error(f"Tried to read from index {i} but array size is: {len(ta.elements)}")
    if ta.elements[i] is not None:
        return ta.elements[i]
    if ta.element_shape is None:
        raise ctx.error(
            f"Could not read from TensorArray index {i}. Furthermore, the element shape is not fully defined, so "
            "the all-zeros gradient cannot be made (set the forward TensorArray's element_shape)"
        )
    return jnp.zeros(ta.element_shape, ta.dtype)


def _grad_read(ctx, handle: Resource, index: Any) -> Any:
    ta = _grad_state(ctx, handle)
    indices = np.asarray(ctx.static(index, "a gradient TensorArray's index"))
    if indices.ndim == 0:
        return _grad_element(ctx, ta, int(indices))
    if indices.size == 0:
        return jnp.zeros((0,) + (ta.element_shape or ()), ta.dtype)
    return jnp.stack([_grad_element(ctx, ta, i) for i in indices.tolist()])


def _grad_concat(ctx, handle: Resource) -> tuple[Any, np.ndarray]:
    ta = _grad_state(ctx, handle)
    parts = [_grad_element(ctx, ta, i) for i in range(len(ta.elements))]
    lengths = np.asarray([p.shape[0] for p in parts], np.int64)
    if not parts:
        return jnp.zeros((0,) + (ta.element_shape or (0,))[1:], ta.dtype), lengths
    return jnp.concatenate(parts), lengths


def _grad_split(ctx, handle: Resource, value: Any, lengths: Any) -> np.ndarray:
    lengths = np.asarray(lengths, np.int64).reshape(-1)
    value = jnp.asarray(value, _grad_state(ctx, handle).dtype)
    if int(lengths.sum()) != value.shape[0]:
        raise ctx.error(
            f"Expected sum of lengths to be equal to values.shape[0], but sum of lengths is {int(lengths.sum())} "
            f"and value's shape is: {list(value.shape)}"
        )
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for i, n in enumerate(lengths.tolist()):
        _grad_write(ctx, handle, np.asarray(i), value[starts[i] : starts[i] + n])
    return _grad_flow()


# -- stacks
# -----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StackState:
    """A stack's contents in the interpreter state (tensorflow/core/kernels/stack.cc). Immutable, so that a cond
    guard can put the previous one back."""

    elements: tuple
    elem_type: int
    max_size: int
    closed: bool = False


_stack_ids = itertools.count()


def _only_op_by_op(ctx) -> None:
    # A stack's size is a run-time count (tf.compat.v1 gradients push one value per forward loop iteration), which
    # a compiled loop cannot carry: a function with stacks runs op by op (jaxsm/compile.py), its loops in Python.
    if not OP_BY_OP.get():
        raise ctx.error(
            "a TF1 stack (StackV2: a v1 while loop's gradient saves its forward values on one) holds a number of "
            "elements known only at run time, which XLA cannot carry",
            StaticValueError,
        )


def _stack(ctx, handle: Resource) -> StackState:
    """The stack ``handle`` names; TF's errors for a stack that is closed (or was never created)."""
    _only_op_by_op(ctx)
    stack = ctx.interp.state.get(handle.key) if isinstance(handle, Resource) else None
    if not isinstance(stack, StackState):
        raise ctx.error(f"{handle!r} is not a stack created by a StackV2 node of this graph")
    if stack.closed:
        raise ctx.error(f"Stack[{handle.key}] has already been closed")
    return stack


def _discarded(handle: Any) -> bool:
    """Whether ``handle`` is a stack of a function that pops none (jaxsm.tf1.PrunedFunction: a forward pass of a
    graph with gradients, e.g. a serving signature of a model saved from its training session): its pushes are
    dead writes, dropped, so that the function still compiles."""
    return isinstance(handle, Resource) and handle.key.endswith("/discarded")


@op("StackV2", "Stack", static=(0,), stateful=True)
def stack_v2(ctx, max_size=None):
    if getattr(ctx.interp, "discard_stacks", False):
        return Resource(f"{ctx.node.name}/discarded", STACK_KIND)
    _only_op_by_op(ctx)
    # Each run makes a new stack (TF numbers them too), e.g. one per outer-loop iteration for a nested loop.
    handle = Resource(f"{ctx.node.name}/stack_{next(_stack_ids)}", STACK_KIND)
    size = -1 if max_size is None else int(max_size)
    ctx.interp.state[handle.key] = StackState((), ctx.attr("elem_type"), size)
    return handle


@op("StackPushV2", "StackPush", stateful=True)
def stack_push(ctx, handle, elem):
    if _discarded(handle):
        return elem
    stack = _stack(ctx, handle)
    if ctx.attr("T") != stack.elem_type:
        raise ctx.error(f"Must have type {dtypes.name(stack.elem_type)} but got {dtypes.name(ctx.attr('T'))}")
    if 0 <= stack.max_size <= len(stack.elements):
        raise ctx.error(f"Stack[{handle.key}] overflowed its max_size ({stack.max_size})")
    ctx.interp.state[handle.key] = replace(stack, elements=stack.elements + (elem,))
    return elem


@op("StackPopV2", "StackPop", stateful=True)
def stack_pop(ctx, handle):
    stack = _stack(ctx, handle)
    if not stack.elements:
        raise ctx.error(f"Stack[{handle.key}] is empty when calling Pop()")
    ctx.interp.state[handle.key] = replace(stack, elements=stack.elements[:-1])
    return stack.elements[-1]


@op("StackCloseV2", "StackClose", stateful=True)
def stack_close(ctx, handle):
    if _discarded(handle):
        return []
    ctx.interp.state[handle.key] = replace(_stack(ctx, handle), elements=(), closed=True)
    return []


# -- hash tables
# ----------------------------------------------------------------------------------------------------
@op("HashTableV2", "HashTable", "AnonymousHashTable", stateful=True)
def hash_table(ctx):
    return Resource(
        ctx.attr("shared_name", "") or ctx.node.name, TABLE_KIND, (ctx.attr("key_dtype"), ctx.attr("value_dtype"))
    )


@op("MutableHashTableV2", "MutableHashTableOfTensorsV2", "MutableDenseHashTableV2", stateful=True)
@op("MutableHashTable", "MutableHashTableOfTensors", "MutableDenseHashTable", stateful=True)  # TF1 ref handles
@op("AnonymousMutableHashTable", "AnonymousMutableHashTableOfTensors", "AnonymousMutableDenseHashTable", stateful=True)
def mutable_hash_table(ctx, *dense_keys):
    """A table that starts empty and changes with LookupTableInsertV2/RemoveV2 (new sizes: op by op)."""
    dtypes_ = (ctx.attr("key_dtype"), ctx.attr("value_dtype"))
    key_shape = tuple(np.shape(dense_keys[0])) if dense_keys else None  # a DenseHashTable's keys: its empty key's
    if key_shape:
        raise ctx.error(f"a DenseHashTable with keys of shape {list(key_shape)} (not scalars) is not supported")
    return Resource(ctx.attr("shared_name", "") or ctx.node.name, MUTABLE_TABLE_KIND, dtypes_, key_shape)


def _check_key_shape(ctx, table: Resource, keys: Any, rank: int = 0) -> None:
    """A DenseHashTable's keys are [n] + its key shape, any other shape is TF's InvalidArgumentError
    (``MutableDenseHashTable::Find``/``Remove`` in lookup_table_op.cc; Remove needs ``rank`` 1)."""
    if table.key_shape is None:
        return
    shape = tuple(np.shape(keys))
    n = shape[0] if shape else 1
    if np.ndim(keys) < rank or int(np.prod(shape)) != n * int(np.prod(table.key_shape)):
        want = "[" + ",".join(map(str, (n,) + table.key_shape)) + "]"
        raise ctx.error(f"Expected key shape {want} got [{','.join(map(str, shape))}]")


@op("LookupTableInsertV2", "LookupTableInsert", stateful=True)
def lookup_table_insert(ctx, table, keys, values):
    """Insert or overwrite (the last of duplicate keys wins), on concrete keys and values."""
    old_keys, old_values = _table_state(ctx, table)
    kd, vd = _table_dtypes(ctx, table)
    raw = np.asarray(ctx.static(keys, "the inserted keys (a table's size is its contents)"), kd)
    values = np.asarray(ctx.static(values, "the inserted values"), vd)
    if values.shape[: raw.ndim] != raw.shape:  # (lookup_interface.cc CheckKeyAndValueTensorsHelper)
        want = ",".join(map(str, raw.shape + values.shape[raw.ndim :]))
        raise ctx.error(f"Expected shape [{want}] for value, got [{','.join(map(str, values.shape))}]")
    keys, values = raw.reshape(-1), values.reshape((raw.size,) + values.shape[raw.ndim :])
    merged = dict(zip(np.asarray(old_keys).tolist(), list(np.asarray(old_values))))
    merged.update(zip(keys.tolist(), list(values)))
    _store_table(ctx, table, np.asarray(list(merged), kd), np.asarray(list(merged.values()), vd))
    return []


@op("LookupTableRemoveV2", stateful=True)
def lookup_table_remove(ctx, table, keys):
    old_keys, old_values = _table_state(ctx, table)
    _check_key_shape(ctx, table, keys, rank=1)
    drop = set(np.asarray(ctx.static(keys, "the removed keys"), old_keys.dtype).reshape(-1).tolist())
    keep = [i for i, k in enumerate(np.asarray(old_keys).tolist()) if k not in drop]
    _store_table(ctx, table, np.asarray(old_keys)[keep], np.asarray(old_values)[keep])
    return []


def _store_table(ctx, table: Resource, keys: np.ndarray, values: np.ndarray) -> None:
    """Keys sorted (for a binary search), values in the same order. String keys or values stay NumPy arrays
    on the host; a function using such a table runs op by op (jaxsm/compile.py ``host_values``)."""
    ctx.interp.state.update(table_state(table, keys, values))


def table_state(table: Resource, keys: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    keys = keys.reshape(-1)
    values = values.reshape((keys.shape[0],) + values.shape[1:]) if values.ndim else values.reshape(-1)
    order = np.argsort(keys, kind="stable")
    keys_key, values_key = table_state_keys(table)
    return {
        keys_key: keys[order] if keys.dtype == object else jnp.asarray(keys[order]),
        values_key: values[order] if values.dtype == object else jnp.asarray(values[order]),
    }


def _parse_column(ctx, text: bytes, index: int, line_no: int, offset: int, dtype: np.dtype, path: str) -> Any:
    if index == -1:
        return line_no + offset
    if index == -2:
        field = text
    else:
        cols = text.split(_as_bytes_attr(ctx.attr("delimiter", "\t")))
        if index >= len(cols):
            raise ctx.error(f"{path}:{line_no + 1}: line has {len(cols)} columns, column {index} was requested")
        field = cols[index]
    if dtype.kind == "O":
        return field
    try:
        return dtype.type(field.decode())
    except (ValueError, OverflowError, UnicodeDecodeError):
        raise ctx.error(f"{path}:{line_no + 1}: cannot parse {field!r} as {dtype.name}") from None


def _as_bytes_attr(v: str | bytes) -> bytes:
    return v.encode() if isinstance(v, str) else v


def _unique_entries(ctx, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A HashTable's entries without repeated keys (lookup_table_op.h ``DoInsert``): a key repeated with the same
    value is kept once, with a different value it is an error."""
    first: dict[Any, int] = {}
    for i, k in enumerate(keys.tolist()):
        if k not in first:
            first[k] = i
        elif np.any(values[first[k]] != values[i]):
            raise ctx.error(f"HashTable has different values for key {k!r}: {values[first[k]]!r} and {values[i]!r}")
    keep = sorted(first.values())
    return keys[keep], values[keep]


@op("InitializeTableFromTextFileV2", "InitializeTableFromTextFile", stateful=True)
def initialize_table_from_text_file(ctx, table, filename):
    """Host-side: read the vocabulary file (an asset) into the table, as TF's ``lookup_util.cc`` does: lines end
    at "\\n" (a "\\r" before it is dropped), an empty line or file is an error."""
    key_dtype, value_dtype = _table_dtypes(ctx, table)
    name = ctx.static(filename, "the vocabulary file name")
    path = name.item() if isinstance(name, np.ndarray) else name
    path = path.decode() if isinstance(path, bytes) else str(path)
    vocab_size = ctx.attr("vocab_size", -1)
    offset = ctx.attr("offset", 0)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ctx.error(f"cannot read the vocabulary file {path}: {e}") from e
    if not data:
        raise ctx.error(f"the vocabulary file {path} is empty")
    lines = data.split(b"\n")
    lines = [t[:-1] if t.endswith(b"\r") else t for t in (lines[:-1] if lines[-1] == b"" else lines)]
    if vocab_size >= 0:
        if len(lines) < vocab_size:
            raise ctx.error(f"{path} has {len(lines)} lines but vocab_size={vocab_size}")
        lines = lines[:vocab_size]
    if b"" in lines:
        raise ctx.error(f"invalid content in {path}: line {lines.index(b'') + 1} is empty")
    keys = [_parse_column(ctx, t, ctx.attr("key_index"), n, offset, key_dtype, path) for n, t in enumerate(lines)]
    values = [_parse_column(ctx, t, ctx.attr("value_index"), n, offset, value_dtype, path) for n, t in enumerate(lines)]
    keys, values = _unique_entries(ctx, np.asarray(keys, key_dtype), np.asarray(values, value_dtype))
    _store_table(ctx, table, keys, values)
    return []


def _table_dtypes(ctx, table: Resource) -> tuple[np.dtype, np.dtype]:
    """Key and value dtypes of ``table`` (from its creating node); object for strings."""
    if table.dtypes is not None:
        kd, vd = table.dtypes
    else:
        node = ctx.interp.table_nodes.get(table.key) if hasattr(ctx.interp, "table_nodes") else None
        if node is None:
            raise ctx.error(f"table '{table.key}' was not created by a HashTableV2 node of this graph")
        kd, vd = node.attr("key_dtype"), node.attr("value_dtype")
    return dtypes.to_numpy(kd), dtypes.to_numpy(vd)


@op("InitializeTableV2", "LookupTableImportV2", "InitializeTable", "LookupTableImport", stateful=True)
def initialize_table(ctx, table, keys, values):
    key_dtype, value_dtype = _table_dtypes(ctx, table)
    keys = np.asarray(ctx.static(keys, "the table keys"), key_dtype).reshape(-1)
    values = np.asarray(ctx.static(values, "the table values"), value_dtype)
    values = values.reshape((keys.shape[0],) + values.shape[keys.ndim :])
    if table.kind == TABLE_KIND:  # a HashTable (TF2 fills one with LookupTableImportV2)
        keys, values = _unique_entries(ctx, keys, values)
    _store_table(ctx, table, keys, values)
    return []


def _table_state(ctx, table: Resource) -> tuple[Any, Any]:
    keys_key, values_key = table_state_keys(table)
    state = ctx.interp.state
    if keys_key not in state and table.kind == MUTABLE_TABLE_KIND:  # never inserted into: empty
        kd, vd = _table_dtypes(ctx, table)
        return np.zeros(0, kd), np.zeros(0, vd)
    if keys_key not in state:
        raise ctx.error(f"table '{table.key}' is not initialized (its initializer did not run)", VariableError)
    return state[keys_key], state[values_key]


@op("LookupTableFindV2", "LookupTableFind", stateful=True)
def lookup_table_find(ctx, table, keys, default_value):
    table_keys, table_values = _table_state(ctx, table)
    _check_key_shape(ctx, table, keys)
    if table_keys.dtype == object or table_values.dtype == object:
        return _host_lookup(ctx, table_keys, table_values, keys, default_value)
    query = jnp.asarray(keys, table_keys.dtype)
    n, value_shape = table_keys.shape[0], tuple(table_values.shape[1:])  # (MutableHashTableOfTensors: vectors)
    if n == 0:
        return jnp.broadcast_to(jnp.asarray(default_value, table_values.dtype), query.shape + value_shape)
    pos = jnp.clip(jnp.searchsorted(table_keys, query), 0, n - 1)
    found = (table_keys[pos] == query).reshape(query.shape + (1,) * len(value_shape))
    return jnp.where(found, table_values[pos], jnp.asarray(default_value, table_values.dtype))


def _host_lookup(ctx, table_keys, table_values, keys, default_value):
    """A lookup in a table with string keys or values, on the host (NumPy): the keys must be concrete."""
    query = np.asarray(ctx.static(keys, "the lookup keys (a table with strings is searched on the host)"))
    flat = query.astype(table_keys.dtype).reshape(-1)
    default = np.asarray(ctx.static(default_value, "the default value"), table_values.dtype)
    value_shape = tuple(table_values.shape[1:])
    if table_keys.shape[0] == 0:
        return np.broadcast_to(default, query.shape + value_shape).copy()
    pos = np.clip(np.searchsorted(table_keys, flat), 0, table_keys.shape[0] - 1)
    found = np.asarray(table_keys[pos] == flat, dtype=bool).reshape((-1,) + (1,) * len(value_shape))
    out = np.where(found, np.asarray(table_values)[pos], default).astype(table_values.dtype)
    return out.reshape(query.shape + value_shape)


@op("LookupTableSizeV2", "LookupTableSize", stateful=True)
def lookup_table_size(ctx, table):
    return np.asarray(_table_state(ctx, table)[0].shape[0], np.int64)


@op("LookupTableExportV2", "LookupTableExport", stateful=True)
def lookup_table_export(ctx, table):
    return _table_state(ctx, table)
