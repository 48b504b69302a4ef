"""Symbolic dimensions (``jax.export`` shape polymorphism) flowing through shape arithmetic.

Exported with a symbolic batch, ``x.shape`` holds symbolic dimensions. A TF graph computes with shapes
(``tf.shape(x)[0] * 2`` feeding a Reshape), so ``Shape`` returns them in a NumPy object array — a "symbolic static
value" — and the shape-arithmetic ops below keep computing on it with NumPy. Ops that need a static input
(Reshape's shape, Fill's dims…) receive it as is, since JAX accepts symbolic dimensions in shapes; any other op
receives it as a run-time array (``jnp.asarray`` of a symbolic dimension is its value at run time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxsm.dtypes import HostValue


def is_dim(v: Any) -> bool:
    """A symbolic dimension (not a Python/NumPy int, not a string, not a host value such as a variant)."""
    return not isinstance(v, (int, np.integer, bytes, str, float, np.floating, bool, np.bool_, HostValue))


def is_symbolic(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype == object and any(is_dim(v) for v in x.flat)


def settle(ctx, x: np.ndarray) -> np.ndarray:
    """The result of a shape-arithmetic op with no symbolic dimension left (``tf.shape(x)[1]`` beside a symbolic
    batch) as the op's int array: an object array of plain ints is no value that JAX or folding takes."""
    if x.dtype != object or is_symbolic(x):
        return x
    return x.astype(ctx.dtype("DstT" if ctx.node.op == "Cast" else "T"))


def to_traced(x: np.ndarray) -> Any:
    """A symbolic static value as a run-time int array."""
    if x.ndim == 0:
        return jnp.asarray(x.item())
    return jnp.stack([jnp.asarray(v) for v in x.flat]).reshape(x.shape)


def _strided_slice(ctx, x, begin, end, strides):
    from jaxsm.ops.array import _strided_slice_spec

    slices, _, final = _strided_slice_spec(ctx, x.shape, begin, end, strides)
    return _obj(np.reshape(x[tuple(slices)], final))


def _cast(ctx, x):
    return x if np.dtype(ctx.dtype("DstT")).kind in "iu" else to_traced(x).astype(ctx.dtype("DstT"))


def _obj(x) -> np.ndarray:
    return np.asarray(x, dtype=object)


def _arith(fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    # NumPy returns a bare element for 0-d object arrays: keep results arrays so they stay static values
    return lambda ctx, a, b: _obj(fn(_obj(a), _obj(b)))


# Shape arithmetic evaluated with NumPy on object arrays (Python operators on symbolic dimensions).
SYMBOLIC_OPS: dict[str, Callable[..., Any]] = {
    "Identity": lambda ctx, x: x,
    "StridedSlice": _strided_slice,
    "Pack": lambda ctx, *xs: np.stack([_obj(x) for x in xs], axis=ctx.attr("axis", 0)),
    "ConcatV2": lambda ctx, *xs: np.concatenate([_obj(x) for x in xs[:-1]], axis=int(xs[-1])),
    "Reshape": lambda ctx, x, shape: np.reshape(x, [int(d) for d in np.asarray(shape).reshape(-1)]),
    "Cast": _cast,
    "Mul": _arith(lambda a, b: a * b),
    "AddV2": _arith(lambda a, b: a + b),
    "Add": _arith(lambda a, b: a + b),
    "Sub": _arith(lambda a, b: a - b),
    "FloorDiv": _arith(lambda a, b: a // b),
    "Prod": lambda ctx, x, axis: _obj(
        np.prod(x, axis=tuple(int(a) for a in np.asarray(axis).reshape(-1)), keepdims=ctx.attr("keep_dims", False))
    ),
}
