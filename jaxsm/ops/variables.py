"""Resource variables: handles, reads, assignments, sparse reads/updates.

State is functional: a handle is a :class:`~jaxsm.graph.values.Resource`; reads and writes go through the
interpreter's state dict, which control-flow lowerings thread through ``lax`` (DESIGN principle 3).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxsm.graph.values import Resource
from jaxsm.ops.registry import op


def _cast_like(ctx, value, handle):
    dtype = ctx.dtype("dtype", None)
    return jnp.asarray(value, dtype=dtype) if dtype is not None else jnp.asarray(value)


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
    params = ctx.read(handle)
    batch_dims = ctx.attr("batch_dims", 0)
    if batch_dims:
        from jaxsm.ops.array import gather_v2  # shared TF GatherV2 semantics

        return gather_v2(params, indices, batch_dims, batch_dims)
    return jnp.take(params, jnp.asarray(indices), axis=0, mode="fill", fill_value=0)


@op("ResourceGatherNd", stateful=True)
def resource_gather_nd(ctx, handle, indices):
    params = ctx.read(handle)
    idx = jnp.asarray(indices)
    return params[tuple(jnp.moveaxis(idx, -1, 0))]


def _scatter(ctx, handle, indices, updates, how):
    ref = ctx.read(handle)
    idx = jnp.asarray(indices)
    upd = jnp.broadcast_to(jnp.asarray(updates, ref.dtype), idx.shape + ref.shape[1:])
    at = ref.at[idx]
    ctx.write(handle, getattr(at, how)(upd, mode="drop"))
    return []


@op("ResourceScatterAdd", stateful=True)
def resource_scatter_add(ctx, handle, indices, updates):
    return _scatter(ctx, handle, indices, updates, "add")


@op("ResourceScatterSub", stateful=True)
def resource_scatter_sub(ctx, handle, indices, updates):
    return _scatter(ctx, handle, indices, -jnp.asarray(updates), "add")


@op("ResourceScatterMul", stateful=True)
def resource_scatter_mul(ctx, handle, indices, updates):
    return _scatter(ctx, handle, indices, updates, "multiply")


@op("ResourceScatterDiv", stateful=True)
def resource_scatter_div(ctx, handle, indices, updates):
    return _scatter(ctx, handle, indices, updates, "divide")


@op("ResourceScatterMin", stateful=True)
def resource_scatter_min(ctx, handle, indices, updates):
    return _scatter(ctx, handle, indices, updates, "min")


@op("ResourceScatterMax", stateful=True)
def resource_scatter_max(ctx, handle, indices, updates):
    return _scatter(ctx, handle, indices, updates, "max")


@op("ResourceScatterUpdate", stateful=True)
def resource_scatter_update(ctx, handle, indices, updates):
    return _scatter(ctx, handle, indices, updates, "set")


@op("ResourceScatterNdUpdate", "ResourceScatterNdAdd", "ResourceScatterNdSub", stateful=True)
def resource_scatter_nd(ctx, handle, indices, updates):
    ref = ctx.read(handle)
    idx = jnp.asarray(indices)
    at = ref.at[tuple(jnp.moveaxis(idx, -1, 0))]
    upd = jnp.asarray(updates, ref.dtype)
    kind = ctx.node.op
    new = (
        at.set(upd, mode="drop")
        if kind.endswith("Update")
        else at.add(upd if kind.endswith("Add") else -upd, mode="drop")
    )
    ctx.write(handle, new)
    return []
