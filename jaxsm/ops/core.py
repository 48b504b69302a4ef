"""Graph plumbing: constants, identities, assertions, function calls."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsm.errors import LoweringError
from jaxsm.graph.tensor_list import TensorList
from jaxsm.graph.values import to_static
from jaxsm.ops.registry import op


@op("Const")
def const(ctx):
    return ctx.attr("value")


@op(
    "Identity",
    "Snapshot",
    "DebugIdentity",
    "DebugIdentityV2",
    "DebugIdentityV3",
    "RefIdentity",
    "PlaceholderWithDefault",
    "EnsureShape",
    "Print",
    "GuaranteeConst",
    "DeepCopy",
)
def identity(ctx, x, *rest):
    return x


@op("IdentityN")
def identity_n(ctx, *xs):
    return list(xs)


@op("NoOp", "ControlTrigger")
def no_op(ctx, *_):
    return []


@op("StopGradient")
def stop_gradient(ctx, x):
    return x if isinstance(x, np.ndarray) else jax.lax.stop_gradient(x)


@op("PreventGradient")
def prevent_gradient(ctx, x):
    # TF raises if a gradient is requested; JAX has no "error on differentiation", so block it like StopGradient.
    return x if isinstance(x, np.ndarray) else jax.lax.stop_gradient(x)


@op("CheckNumerics", "CheckNumericsV2")
def check_numerics(ctx, x):
    # TF raises InvalidArgument at run time on NaN/Inf; a jitted function cannot raise, so values pass through.
    return x


@op("Assert", stateful=True)
def assert_(ctx, cond, *data):
    c = to_static(cond)
    if c is not None and not bool(np.all(c)):
        raise ctx.error(f"assertion failed (condition is statically false); data: {[to_static(d) for d in data]}")
    return []


@op("Placeholder")
def placeholder(ctx):
    raise LoweringError(
        f"placeholder '{ctx.node.name}' was not fed: pass a value for it (TF1 feeds are named like '{ctx.node.name}:0')"
    )


@op("PartitionedCall", "StatefulPartitionedCall", stateful=True)
def partitioned_call(ctx, *args):
    return ctx.call(ctx.attr("f").name, args)


@op("ZerosLike")
def zeros_like(ctx, x):
    if isinstance(x, TensorList):  # TF's TensorListZerosLike: same length, every element zeros (gradient code)
        items = None if x.items is None else jnp.zeros_like(x.items)
        return TensorList(items, x.length, x.element_dtype, x.element_shape, x.capacity)
    return jnp.zeros_like(x) if not isinstance(x, np.ndarray) else np.zeros_like(x)


@op("OnesLike")
def ones_like(ctx, x):
    return jnp.ones_like(x) if not isinstance(x, np.ndarray) else np.ones_like(x)


@op("StringFormat", stateful=True)
def string_format(ctx, *inputs):
    """``tf.strings.format`` / ``tf.print``'s message: formatted on the host when every input is known at trace
    time; otherwise a marker string, since run-time values cannot reach host-side string code inside jit."""
    template, placeholder = ctx.attr("template", "%s"), ctx.attr("placeholder", "%s")
    parts = []
    for x in inputs:
        s = to_static(x)
        parts.append(np.array2string(s, separator=" ") if s is not None else "<run-time value>")
    pieces = template.split(placeholder)
    text = pieces[0] + "".join(p + rest for p, rest in zip(parts, pieces[1:]))
    return np.asarray(text.encode(), dtype=object)


@op("PrintV2", stateful=True)
def print_v2(ctx, message):
    # tf.print runs at every call in TF; a compiled function has no host side effects, so nothing is printed.
    return []
