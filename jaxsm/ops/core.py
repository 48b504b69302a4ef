"""Graph plumbing: constants, identities, assertions, function calls."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsm.errors import AssertFailedError, AttrError, LoweringError
from jaxsm.graph.custom_gradient import identity_with_gradient
from jaxsm.graph.tensor_list import TensorList
from jaxsm.graph.values import OptionalValue, to_static
from jaxsm.ops.registry import op


@op("Const")
def const(ctx):
    # TF checks the NodeDef against the OpDef (``value`` is a tensor, ``dtype`` a valid type) and ConstantOp that
    # the two agree (core/kernels/constant_op.cc)
    value, dtype = ctx.attr("value"), ctx.dtype("dtype")
    if not isinstance(value, np.ndarray):
        raise ctx.error(f"attribute 'value' is {value!r}, not a tensor: the graph is corrupt", AttrError)
    if value.dtype != dtype:
        raise ctx.error(
            f"type mismatch between value ({value.dtype}) and dtype ({dtype}): the graph is corrupt", AttrError
        )
    return value


@op(
    "Identity",
    "Snapshot",
    "DebugIdentity",
    "DebugIdentityV2",
    "DebugIdentityV3",
    "RefIdentity",
    "PlaceholderWithDefault",
    "Print",
    "GuaranteeConst",
    "DeepCopy",
)
def identity(ctx, x, *rest):
    return x


@op("EnsureShape")
def ensure_shape(ctx, x):
    # TF's EnsureShapeOp: the shape must have the attr's rank and its known dimensions
    want, have = ctx.attr("shape"), np.shape(x)
    if want is None or not isinstance(x, (np.ndarray, np.generic, jax.Array)):  # (not a variant, list, table)
        return x
    if len(want) != len(have) or any(w is not None and isinstance(h, int) and w != h for w, h in zip(want, have)):
        shown = [-1 if w is None else w for w in want]
        raise ctx.error(f"Shape of tensor {list(have)} is not compatible with expected shape {shown}.")
    return x


@op("IdentityN")
def identity_n(ctx, *xs):
    kind = ctx.attr("_gradient_op_type", None)  # tf.custom_gradient's marker: its saved gradient as the VJP
    grad = ctx.library.custom_gradients.get(kind) if kind else None
    if grad is not None:
        out = identity_with_gradient(ctx, list(xs), grad)
        if out is not None:
            return out
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


@op("CheckNumerics", "CheckNumericsV2", stateful=True)
def check_numerics(ctx, x):
    """tf.debugging.check_numerics: TF raises when ``x`` has a NaN or an infinity. Checked now for a value known
    now, else after the call like a run-time Assert (see ``assert_``)."""
    v = to_static(x)
    if v is None:
        if ctx.interp.run_time_asserts is not None:
            ctx.interp.run_time_asserts.append(jnp.all(jnp.isfinite(x)))
        return x
    if ctx.node.op == "CheckNumerics":
        kinds = (("Inf", np.isinf(v)), ("NaN", np.isnan(v)))
    else:
        kinds = (("-Inf", np.isneginf(v)), ("+Inf", np.isposinf(v)), ("NaN", np.isnan(v)))
    bad = [name for name, found in kinds if found.any()]
    if bad:
        listed = " and ".join(bad) if len(bad) < 3 else "-Inf, +Inf, and NaN"  # check_numerics_op.cc's wording
        raise ctx.error(f"{ctx.attr('message', '')} : Tensor had {listed} values", AssertFailedError)
    return x


@op("Assert", stateful=True)
def assert_(ctx, cond, *data):
    """TF raises when the condition is false. A condition known now is checked here; a run-time one joins the
    interpreter's ``run_time_asserts``, which the compiled function returns and jaxsm checks after the call
    (rerunning the call op by op to raise here with the data when one failed: jaxsm/compile.py)."""
    c = to_static(cond)
    if c is None:
        if ctx.interp.run_time_asserts is not None:
            ctx.interp.run_time_asserts.append(jnp.all(jnp.asarray(cond)))
        return []
    if not bool(np.all(c)):
        shown = [_assert_data(d, ctx.attr("summarize", 3)) for d in data]
        raise ctx.error(f"assertion failed: {' '.join(shown)}", AssertFailedError)
    return []


def _assert_data(d, summarize: int) -> str:
    from jaxsm.ops.strings import summarize_value

    v = to_static(d)
    return "[<run-time value>]" if v is None else "[" + summarize_value(v, summarize, print_v2=False) + "]"


@op("Placeholder", "PlaceholderV2")
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
    if isinstance(x, OptionalValue):  # an optional of zeros (cond_v2 gradients)
        return OptionalValue(x.has_value, None if x.values is None else tuple(jnp.zeros_like(v) for v in x.values))
    return jnp.zeros_like(x) if not isinstance(x, np.ndarray) else np.zeros_like(x)


@op("OnesLike")
def ones_like(ctx, x):
    return jnp.ones_like(x) if not isinstance(x, np.ndarray) else np.ones_like(x)
