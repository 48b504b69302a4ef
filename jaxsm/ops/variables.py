"""Resource variables: handles, reads, assignments, sparse reads/updates.

State is functional: a handle is a :class:`~jaxsm.graph.values.Resource`; reads and writes go through the
interpreter's state dict, which control-flow lowerings thread through ``lax`` (DESIGN principle 3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsm.dtypes import is_strings
from jaxsm.graph.values import Resource
from jaxsm.ops.array import (
    check_index_depth,
    check_indices,
    gather_nd_values,
    gather_v2,
    nd_index,
    scatter_nd_values,
    strided_update,
)
from jaxsm.ops.registry import op


def _cast_like(ctx, value, handle):
    if is_strings(value):  # a string variable's value stays on the host
        return value
    dtype = ctx.dtype("dtype", None)  # (int64 with jax_enable_x64 off: the int32 JAX holds, asked for as such)
    return jnp.asarray(value, dtype=jax.dtypes.canonicalize_dtype(dtype)) if dtype is not None else jnp.asarray(value)


@op("VarHandleOp", stateful=True)
def var_handle(ctx):
    # TF1-style or function-created variables are keyed by shared_name (falling back to the node name).
    return Resource(ctx.attr("shared_name", "") or ctx.node.name)


@op("ReadVariableOp", stateful=True)
def read_variable(ctx, handle):
    value = ctx.read(handle)
    dtype = ctx.dtype("dtype", None)
    # Variables stored in a lower precision (LoadOptions.param_dtype) are computed in the graph's dtype.
    if dtype is not None and dtype.kind == "f" and value.dtype != dtype:
        value = value.astype(dtype)
    return value


@op("VariableShape", stateful=True)
def variable_shape(ctx, handle):
    """The variable's shape, known at trace time (gradients of gathers from a variable inside a loop use it)."""
    return np.asarray(np.shape(ctx.read(handle)), ctx.dtype("out_type", np.dtype(np.int32)))


@op("DisableCopyOnRead", stateful=True)
def disable_copy_on_read(ctx, handle):
    return []


@op("AssignVariableOp", stateful=True)
def assign_variable(ctx, handle, value):
    ctx.write(handle, _cast_like(ctx, value, handle))
    return []


@op("AssignAddVariableOp", stateful=True)
def assign_add_variable(ctx, handle, value):
    ctx.write(handle, ctx.read(handle) + value)
    return []


@op("AssignSubVariableOp", stateful=True)
def assign_sub_variable(ctx, handle, value):
    ctx.write(handle, ctx.read(handle) - value)
    return []


@op("VarIsInitializedOp", stateful=True)
def var_is_initialized(ctx, handle):
    return np.asarray(isinstance(handle, Resource) and handle.key in ctx.interp.state)


@op("DestroyResourceOp", stateful=True)
def destroy_resource(ctx, handle):
    return []


@op("ResourceGather", stateful=True)
def resource_gather(ctx, handle, indices):
    # Known out-of-range or negative indices raise as TF's CPU kernel; in a compiled call they give zeros, as for
    # GatherV2.
    batch_dims, params = ctx.attr("batch_dims", 0), ctx.read(handle)
    if not batch_dims:
        check_indices(ctx, indices, np.shape(params)[:1])
    return gather_v2(params, indices, batch_dims, batch_dims)


@op("ResourceGatherNd", stateful=True)
def resource_gather_nd(ctx, handle, indices):
    return gather_nd_values(ctx.read(handle), indices)


# How each scatter op combines updates with the rows it addresses (TF's scatter_functor.h); Sub negates.
SCATTER_MODES = {
    "Update": "set",
    "Add": "add",
    "Sub": "add",
    "Mul": "multiply",
    "Div": "divide",
    "Min": "min",
    "Max": "max",
}


def scatter_rows(value, indices, updates, kind: str):
    """``value`` with the rows at ``indices`` combined with ``updates`` (Scatter*/ResourceScatter* semantics).

    Duplicate indices accumulate; out-of-range and negative indices are dropped (TF's CPU kernels raise, jit
    cannot; NumPy-style wrapping of negative indices would update the wrong row)."""
    idx = jnp.asarray(indices)
    upd = jnp.broadcast_to(jnp.asarray(updates, value.dtype), idx.shape + value.shape[1:])
    if kind == "Sub":
        upd = -upd
    (idx,) = nd_index(idx[..., None], value.shape[:1])
    if kind == "Div" and not jnp.issubdtype(value.dtype, jnp.inexact):
        # integers divide as C++ does (truncating; TF's scatter_functor), not as NumPy's true division; dividing
        # in turn by each duplicate's update is dividing by their product
        return lax.div(value, jnp.ones_like(value).at[idx].multiply(upd, mode="drop"))
    return getattr(value.at[idx], SCATTER_MODES[kind])(upd, mode="drop")


def scatter_nd(value, indices, updates, kind: str):
    """``value`` updated at the index tuples in the last axis of ``indices`` (ScatterNd{Update,Add,Sub,Min,Max});
    out-of-range and negative index tuples are dropped."""
    return scatter_nd_values(value, indices, updates, "sub" if kind == "Sub" else SCATTER_MODES[kind])


@op(*(f"ResourceScatter{k}" for k in SCATTER_MODES), stateful=True)
def resource_scatter(ctx, handle, indices, updates):
    ctx.write(handle, scatter_rows(ctx.read(handle), indices, updates, ctx.node.op[len("ResourceScatter") :]))
    return []


@op(*(f"ResourceScatterNd{k}" for k in ("Update", "Add", "Sub", "Min", "Max")), stateful=True)
def resource_scatter_nd(ctx, handle, indices, updates):
    check_index_depth(ctx, indices)
    ctx.write(handle, scatter_nd(ctx.read(handle), indices, updates, ctx.node.op[len("ResourceScatterNd") :]))
    return []


@op("ResourceStridedSliceAssign", stateful=True)
def resource_strided_slice_assign(ctx, handle, begin, end, strides, value):
    """``v[begin:end:strides].assign(value)``: the variable with that slice replaced (``begin``/``end`` may be
    run-time values for single-index entries, as in ``cache[:, i].assign(x)`` inside a loop)."""
    ctx.write(handle, strided_update(ctx, jnp.asarray(ctx.read(handle)), begin, end, strides, value))
    return []


@op("ResourceCountUpTo", stateful=True)
def resource_count_up_to(ctx, handle):
    from jaxsm.ops.tf1 import count_up_to  # the ref-variable op's rule

    return count_up_to(ctx, handle)
