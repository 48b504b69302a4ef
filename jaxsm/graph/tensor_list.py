"""TensorList values (TF's DT_VARIANT lists used by control flow v2) as preallocated JAX arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np


@jax.tree_util.register_pytree_node_class
@dataclass
class TensorList:
    """A list of same-shaped tensors stored as one array ``items`` of shape ``(capacity, *element_shape)``.

    ``length`` is the list's logical length (a Python int when known at trace time, else a traced scalar);
    ``items`` is None until the first element fixes the element shape (TF allows unknown element shapes).
    ``element_shape`` is the (partial) shape TF declared; ``capacity`` the preallocated size (None = unknown).
    """

    items: Any
    length: Any
    element_dtype: np.dtype
    element_shape: tuple | None
    capacity: int | None

    def tree_flatten(self):
        static_len = isinstance(self.length, (int, np.integer))
        children = (self.items, None if static_len else self.length)
        aux = (
            self.element_dtype,
            self.element_shape,
            self.capacity,
            int(self.length) if static_len else None,
        )
        return children, aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        dtype, shape, capacity, static_len = aux
        items, length = children
        return cls(items, static_len if static_len is not None else length, dtype, shape, capacity)

    def known_element_shape(self) -> tuple[int, ...] | None:
        if self.items is not None:
            return tuple(self.items.shape[1:])
        if self.element_shape is not None and all(d is not None for d in self.element_shape):
            return tuple(self.element_shape)
        return None
