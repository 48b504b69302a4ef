"""The op registry: ``@op("Name", ...)`` maps TF op types to JAX lowerings.

A lowering is ``fn(ctx, *inputs)``: ``inputs`` are the node's data inputs in order (NumPy arrays for values known
at trace time, ``jax.Array``/tracers otherwise, or jaxsm objects such as resource handles and tensor lists);
``ctx`` (an :class:`jaxsm.graph.interpreter.OpContext`) gives typed attribute access (``ctx.attr("T")``,
``ctx.dtype("DstT")``), the node for error messages, variable state and function calls. It returns one value, or a
tuple/list with one entry per flattened output.

``static`` names the input positions that must be known at trace time (shapes, axes, perms…); they arrive as
NumPy arrays and a run-time value there is reported as a :class:`StaticValueError` naming the node.
``stateful`` lowerings are never constant-folded (random ops, variable and state ops, calls). ``checked`` names
inputs that may be run-time values but whose values, when known, the lowering validates (indices TF's kernels
reject): folding passes them as NumPy too, so the check sees them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
from jax import lax

from jaxsm.errors import JaxsmError


@dataclass(frozen=True)
class OpDef:
    name: str
    fn: Callable[..., Any]
    static: tuple[int, ...]
    stateful: bool
    module: str
    checked: tuple[int, ...] = ()


OPS: dict[str, OpDef] = {}


def precision() -> lax.Precision | None:
    """The precision every float32 contraction (matmul, einsum, convolution) asks for.

    TF on CPU computes them in full float32, while XLA's default on GPU/TPU rounds operands to TF32/bfloat16, so
    jaxsm asks for HIGHEST and matches TF-CPU's numbers on every backend. A user who sets JAX's own knob
    (``jax.config.update("jax_default_matmul_precision", "tensorfloat32")`` or the ``jax.default_matmul_precision``
    context around the call) gets JAX's choice instead: TF32 on GPU is TF-GPU's default, several times cheaper to
    compile there and faster to run. Read at trace time; JAX's compile cache keys on that setting.
    """
    return None if jax.config.jax_default_matmul_precision is not None else lax.Precision.HIGHEST


# Save/restore machinery: only the saver functions use these and they are never needed to run a model.
NEVER_LOWERED = frozenset(
    {
        "SaveV2",
        "RestoreV2",
        "MergeV2Checkpoints",
        "ShardedFilename",
        "ShardedFilespec",
        "Save",
        "SaveSlices",
        "Restore",
        "RestoreSlice",
    }
)


def op(*names: str, static: tuple[int, ...] = (), stateful: bool = False, checked: tuple[int, ...] = ()) -> Callable:
    """Register ``fn`` as the lowering of each TF op type in ``names``."""

    def register(fn: Callable) -> Callable:
        for name in names:
            if name in OPS:
                raise JaxsmError(
                    f"op {name} registered twice: {OPS[name].module}.{OPS[name].fn.__name__} and "
                    f"{fn.__module__}.{fn.__name__}"
                )
            OPS[name] = OpDef(name, fn, tuple(static), stateful, fn.__module__, tuple(checked))
        return fn

    return register


def supported_ops() -> list[str]:
    """Every op type with a lowering, sorted."""
    import jaxsm.ops  # noqa: F401  (registers every family)

    return sorted(OPS)
