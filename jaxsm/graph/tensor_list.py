"""TensorList values (TF's DT_VARIANT lists used by control flow v2) as preallocated JAX arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np


class Const:
    """A NumPy value known at trace time, hashable and comparable (it sits in a pytree's static aux data)."""

    def __init__(self, value: np.ndarray):
        self.value = np.asarray(value)
        self._key = (self.value.dtype.str, self.value.shape, self.value.tobytes())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Const) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)


@jax.tree_util.register_pytree_node_class
@dataclass
class TensorList:
    """A list of same-shaped tensors stored as one array ``items`` of shape ``(capacity, *element_shape)``.

    ``length`` is the list's logical length (a Python int when known at trace time, else a traced scalar);
    ``items`` is None until the first element fixes the element shape (TF allows unknown element shapes).
    ``element_shape`` is the (partial) shape TF declared; ``capacity`` the preallocated size (None = unknown).
    ``every_item``, when set, is a :class:`Const` that every element equals: a loop that pushes the same
    trace-time value in each iteration (while_v2 accumulates shapes for its gradient loop) keeps it static for
    the pops of the gradient loop, where ops such as BroadcastGradientArgs need it at trace time.
    """

    items: Any
    length: Any
    element_dtype: np.dtype
    element_shape: tuple | None
    capacity: int | None
    every_item: Const | None = None

    def tree_flatten(self):
        static_len = isinstance(self.length, (int, np.integer))
        children = (self.items, None if static_len else self.length)
        aux = (
            self.element_dtype,
            self.element_shape,
            self.capacity,
            int(self.length) if static_len else None,
            self.every_item,
        )
        return children, aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        dtype, shape, capacity, static_len, every = aux
        items, length = children
        return cls(items, static_len if static_len is not None else length, dtype, shape, capacity, every)

    def known_element_shape(self) -> tuple[int, ...] | None:
        if self.items is not None:
            return tuple(self.items.shape[1:])
        if self.element_shape is not None and all(d is not None for d in self.element_shape):
            return tuple(self.element_shape)
        return None
