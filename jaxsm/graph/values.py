"""Non-array values that flow through a lowered graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np


@dataclass(frozen=True)
class Resource:
    """A resource handle (DT_RESOURCE): names an entry of the interpreter's state (a variable, a table…).

    Handles are Python values known at trace time; the state they point to is functional (see
    :class:`jaxsm.graph.interpreter.Interpreter`).
    """

    key: str
    kind: str = "variable"
    # (key dtype, value dtype) as TF DataType enums, for hash tables
    dtypes: tuple[int, int] | None = None
    # the shape of a DenseHashTable's keys (its empty key's shape); None for other resources
    key_shape: tuple[int, ...] | None = None


@jax.tree_util.register_pytree_node_class
@dataclass
class OptionalValue:
    """A DT_VARIANT optional (``OptionalFromValue``/``OptionalNone``): cond_v2 returns the intermediates a
    gradient needs as optionals, the i-th optional output of every branch holding that branch's i-th
    intermediate (or none), so one output position holds values of different shapes per branch. ``values`` is
    None for an empty optional. Out of a run-time branch (lax.switch), ``slots`` has one (flag, values) entry
    per branch that can set the position, zeros where it did not; ``values`` is then None."""

    has_value: Any
    values: tuple | None
    slots: tuple | None = None

    def tree_flatten(self):
        return (self.has_value, self.values, self.slots), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)


def is_static(x: Any) -> bool:
    """True when ``x`` is known at trace time (a NumPy array or a Python scalar)."""
    return isinstance(x, (np.ndarray, np.generic, int, float, bool, bytes, str))


def is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic, jax.Array)) or isinstance(x, jax.core.Tracer)


def to_static(x: Any) -> np.ndarray | None:
    """``x`` as a NumPy array when its value is known now (NumPy, or a concrete, non-traced jax.Array)."""
    if isinstance(x, (np.ndarray, np.generic)) and READ_IDS[0] is not None:
        READ_IDS[0].add(id(x))
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (np.generic, int, float, bool)):
        return np.asarray(x)
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        CONCRETE_READS[0] += 1
        return np.asarray(x)
    if isinstance(x, jax.core.Tracer):
        TRACED_READS[0] += 1
    return None


# How often a lowering asked for the value of a traced input: a folded node's lowering staged as one XLA program
# (jaxsm.graph.fold) stands for its eager run only when it never did while staged.
TRACED_READS = [0]
# How often a lowering read the value of a computed jax.Array (running op by op): such a node's shapes or
# control depend on run-time values, so jaxsm.graph.staging runs it on its own.
CONCRETE_READS = [0]
# The ids of the NumPy values read, while jaxsm.graph.staging records a node's lowering (else None): a node that
# validates values (indices TF's kernels check) runs on its own when they change from call to call.
READ_IDS: list[set[int] | None] = [None]
