"""TensorList ops (control flow v2's lists: tf.TensorArray, tf.map_fn, tf.scan, Keras RNNs).

A list is a :class:`~jaxsm.graph.tensor_list.TensorList`: one preallocated array, so it can be carried through
``lax.scan``/``lax.while_loop``. Reads and writes at run-time indices use dynamic indexing. A list whose length
changes in every iteration of a loop (TF's gradient accumulators: TensorListPushBack in a forward loop,
TensorListPopBack in its gradient loop) is carried with a traced length in an array of the loop's final capacity
(ops/control_flow.py); push and pop then write and read at that traced position.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsm.errors import StaticValueError
from jaxsm.graph.tensor_list import Const, TensorList
from jaxsm.graph.values import to_static
from jaxsm.ops.registry import op


def _shape_from_input(shape) -> tuple | None:
    """TF passes element shapes as int tensors: -1 for unknown dims, a scalar -1 for unknown rank."""
    s = np.asarray(shape)
    if s.ndim == 0:
        return None if int(s) == -1 else ()
    return tuple(None if int(d) < 0 else int(d) for d in s)


def _require_items(ctx, lst: TensorList, element_shape=None):
    if lst.items is not None:
        return lst.items
    shape = lst.known_element_shape()
    if shape is None and element_shape is not None:
        s = _shape_from_input(element_shape)
        shape = s if s is not None and all(d is not None for d in s) else None
    if shape is None:
        raise ctx.error("reading a TensorList whose elements were never set and whose element shape is unknown")
    return jnp.zeros((lst.capacity or 0,) + shape, lst.element_dtype)


def _static_length(lst: TensorList) -> int | None:
    return int(lst.length) if isinstance(lst.length, int | np.integer) else None


def check_index(ctx, index, size: int | None, action: str) -> None:
    """TF raises for an element index outside [0, size) (list_kernels.h, tensor_array_ops.cc); an index known now
    is checked here. A run-time one reads zeros and writes nothing there, never wrapping (see ``read``/``write``)."""
    i = to_static(index)
    if i is None or size is None or getattr(ctx.interp, "unchecked_reads", False):  # (a read in a dead branch)
        return
    bad = np.asarray(i).reshape(-1)
    bad = bad[(bad < 0) | (bad >= size)]
    if bad.size:
        raise ctx.error(f"Trying to {action} element {int(bad[0])} in a list with {size} elements")


def _check_item_shape(ctx, items, shape) -> None:
    """A list is one array: an element of another shape (TF allows them where the element shape is unknown, e.g.
    TensorArray(infer_shape=False)) cannot be stored, and must not be broadcast into the slot."""
    if tuple(shape) != tuple(items.shape[1:]):
        raise ctx.error(
            f"TensorList element of shape {tuple(shape)} in a list of {tuple(items.shape[1:])} elements: jaxsm "
            "stores a list as one array, so its elements must all have the same shape"
        )


def read(items, index):
    """``items[index]`` with TF's bounds: an out-of-range or negative run-time index reads zeros."""
    items, index = jnp.asarray(items), jnp.asarray(index)
    if items.shape[0] == 0:  # every index is out of range (JAX refuses to index a size-0 axis at all)
        return jnp.zeros(index.shape + items.shape[1:], items.dtype)
    return items.at[index].get(mode="fill", fill_value=0, wrap_negative_indices=False)


def write(items, index, value):
    """``items`` with ``items[index] = value``; an out-of-range or negative run-time index writes nothing."""
    items = jnp.asarray(items)
    if items.shape[0] == 0:  # as in read: nothing can be written (a loop body traced for zero iterations)
        return items
    return items.at[jnp.asarray(index)].set(value, mode="drop", wrap_negative_indices=False)


@op("TensorListReserve", static=(0, 1), stateful=True)
def tensor_list_reserve(ctx, element_shape, num_elements):
    n = int(num_elements)
    if n < 0:
        raise ctx.error("TensorListReserve with an unknown number of elements cannot be preallocated")
    dtype = ctx.dtype("element_dtype")
    shape = _shape_from_input(element_shape)
    items = jnp.zeros((n,) + shape, dtype) if shape is not None and None not in shape else None
    return TensorList(items, n, dtype, shape, n)


@op("EmptyTensorList", static=(0, 1), stateful=True)
def empty_tensor_list(ctx, element_shape, max_num_elements):
    dtype = ctx.dtype("element_dtype")
    shape = _shape_from_input(element_shape)
    items = jnp.zeros((0,) + shape, dtype) if shape is not None and None not in shape else None
    return TensorList(items, 0, dtype, shape, 0)


@op("TensorListFromTensor", stateful=True)
def tensor_list_from_tensor(ctx, tensor, element_shape):
    t = jnp.asarray(tensor)
    return TensorList(t, t.shape[0], t.dtype, tuple(t.shape[1:]), t.shape[0])


@op("TensorListSetItem", stateful=True)
def tensor_list_set_item(ctx, lst, index, item):
    item = jnp.asarray(item, lst.element_dtype)
    items = lst.items
    if items is None:
        items = jnp.zeros((lst.capacity,) + item.shape, lst.element_dtype)
    _check_item_shape(ctx, items, item.shape)
    i = to_static(index)
    if i is not None and int(i) >= items.shape[0] and ctx.attr("resize_if_index_out_of_bounds", False):
        # a dynamic-size TensorArray grows at indices known at trace time (e.g. in an unrolled loop)
        grow = int(i) + 1 - items.shape[0]
        items = jnp.concatenate([items, jnp.zeros((grow,) + items.shape[1:], items.dtype)])
        return TensorList(items.at[int(i)].set(item), int(i) + 1, lst.element_dtype, lst.element_shape, int(i) + 1)
    if i is None and items.shape[0] == 0:
        raise ctx.error(
            "a dynamic-size TensorList written at a run-time index: its size is only known at run time "
            "(loops with a trip count known at trace time are unrolled to handle this)",
            StaticValueError,
        )
    check_index(ctx, index, _static_length(lst), "modify")
    return TensorList(write(items, index, item), lst.length, lst.element_dtype, lst.element_shape, lst.capacity)


@op("TensorListGetItem", stateful=True)
def tensor_list_get_item(ctx, lst, index, element_shape):
    check_index(ctx, index, _static_length(lst), "access")
    return read(_require_items(ctx, lst, element_shape), index)


@op("TensorListStack", stateful=True)
def tensor_list_stack(ctx, lst, element_shape):
    n, length = ctx.attr("num_elements", -1), _static_length(lst)
    if n != -1 and length is not None and n != length:
        raise ctx.error(f"TensorListStack expected a list with {n} elements but got a list with {length} elements")
    return _require_items(ctx, lst, element_shape)


@op("TensorListGather", stateful=True)
def tensor_list_gather(ctx, lst, indices, element_shape):
    check_index(ctx, indices, _static_length(lst), "gather")
    return read(_require_items(ctx, lst, element_shape), indices)


@op("TensorListScatter", "TensorListScatterV2", stateful=True)
def tensor_list_scatter(ctx, tensor, indices, element_shape, num_elements=None):
    t = jnp.asarray(tensor)
    idx = ctx.static(indices, "TensorListScatter indices")
    n = (
        int(num_elements)
        if num_elements is not None and int(np.asarray(num_elements)) >= 0
        else (int(idx.max()) + 1 if idx.size else 0)
    )
    check_index(ctx, idx, n, "scatter")
    items = jnp.zeros((n,) + t.shape[1:], t.dtype).at[idx].set(t)
    return TensorList(items, n, t.dtype, tuple(t.shape[1:]), n)


@op("TensorListScatterIntoExistingList", stateful=True)
def tensor_list_scatter_into(ctx, lst, tensor, indices):
    t = jnp.asarray(tensor, lst.element_dtype)
    items = lst.items if lst.items is not None else jnp.zeros((lst.capacity,) + t.shape[1:], t.dtype)
    _check_item_shape(ctx, items, t.shape[1:])
    check_index(ctx, indices, _static_length(lst), "scatter into")
    return TensorList(write(items, indices, t), lst.length, lst.element_dtype, lst.element_shape, lst.capacity)


@op("TensorListConcat", "TensorListConcatV2", stateful=True)
def tensor_list_concat(ctx, lst, element_shape, leading_dims=None):
    items = _require_items(ctx, lst, element_shape)
    out = items.reshape((-1,) + items.shape[2:])
    return out, np.full((items.shape[0],), items.shape[1], np.int64)


@op("TensorListSplit", static=(2,), stateful=True)
def tensor_list_split(ctx, tensor, element_shape, lengths):
    t = jnp.asarray(tensor)
    lengths = [int(v) for v in lengths]
    if len(set(lengths)) > 1:
        raise ctx.error("TensorListSplit with unequal lengths cannot be stored as one array")
    n = len(lengths)
    items = t.reshape((n, lengths[0] if n else 0) + t.shape[1:])
    return TensorList(items, n, t.dtype, tuple(items.shape[1:]), n)


def _traced_length(lst: TensorList) -> bool:
    return not isinstance(lst.length, (int, np.integer))


@op("TensorListLength", stateful=True)
def tensor_list_length(ctx, lst):
    return jnp.asarray(lst.length, np.int32) if _traced_length(lst) else np.asarray(lst.length, np.int32)


@op("TensorListElementShape", stateful=True)
def tensor_list_element_shape(ctx, lst):
    dtype = ctx.dtype("shape_type", np.dtype(np.int32))
    shape = lst.known_element_shape() or lst.element_shape
    if shape is None:
        return np.asarray(-1, dtype)
    return np.asarray([-1 if d is None else d for d in shape], dtype)


def _every_item_after_push(lst: TensorList, tensor) -> Const | None:
    """The list's :class:`Const` after pushing ``tensor``: kept while every push is the same trace-time value."""
    if not isinstance(tensor, np.ndarray):
        return None
    pushed = Const(tensor.astype(lst.element_dtype))
    empty = not _traced_length(lst) and lst.length == 0
    return pushed if empty or lst.every_item == pushed else None


@op("TensorListPushBack", stateful=True)
def tensor_list_push_back(ctx, lst, tensor):
    every = _every_item_after_push(lst, tensor)
    if _traced_length(lst):  # inside a loop, in the preallocated array
        t = jnp.asarray(tensor, lst.element_dtype)
        items = lst.items if lst.items is not None else jnp.zeros((lst.capacity,) + t.shape, t.dtype)
        items = lax.dynamic_update_index_in_dim(items, t, lst.length, 0)
        return TensorList(items, lst.length + 1, lst.element_dtype, lst.element_shape, lst.capacity, every)
    t = jnp.asarray(tensor, lst.element_dtype)[None]
    items = t if lst.items is None or lst.length == 0 else jnp.concatenate([lst.items[: lst.length], t])
    n = int(lst.length) + 1
    return TensorList(items, n, lst.element_dtype, lst.element_shape, n, every)


@op("TensorListPopBack", stateful=True)
def tensor_list_pop_back(ctx, lst, element_shape):
    if not _traced_length(lst) and lst.length == 0:
        raise ctx.error("TensorListPopBack on an empty list")
    items = _require_items(ctx, lst, element_shape)
    every = lst.every_item
    if _traced_length(lst):  # inside a loop (see the module docstring)
        last = lax.dynamic_index_in_dim(items, lst.length - 1, 0, keepdims=False)
        rest = TensorList(items, lst.length - 1, lst.element_dtype, lst.element_shape, lst.capacity, every)
    else:
        n = int(lst.length) - 1
        rest, last = TensorList(items[:n], n, lst.element_dtype, lst.element_shape, n, every), items[n]
    return rest, (every.value if every is not None else last)


@op("TensorListResize", static=(1,), stateful=True)
def tensor_list_resize(ctx, lst, size):
    n = int(size)
    if n < 0:
        raise ctx.error(f"TensorListResize size must be non-negative, got {n}")
    items = lst.items
    if items is not None:
        items = (
            items[:n]
            if n <= items.shape[0]
            else jnp.concatenate([items, jnp.zeros((n - items.shape[0],) + items.shape[1:], items.dtype)])
        )
    return TensorList(items, n, lst.element_dtype, lst.element_shape, n)
