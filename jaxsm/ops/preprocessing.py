"""Ops behind Keras preprocessing layers (Discretization, …) that no other family covers."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxsm.ops.registry import op


@op("Bucketize")
def bucketize(ctx, x):
    # TF's bucketize_op.cc: index of the first boundary greater than x (upper_bound), as int32. Boundaries are
    # C++ floats; comparing them with a double/int64 value happens in double, otherwise in float.
    x = jnp.asarray(x)
    dtype = jnp.float64 if np.dtype(x.dtype) in (np.dtype(np.float64), np.dtype(np.int64)) else jnp.float32
    boundaries = jnp.asarray(np.asarray(ctx.attr("boundaries", []), np.float32), dtype)
    return jnp.searchsorted(boundaries, x.astype(dtype), side="right").astype(jnp.int32)
