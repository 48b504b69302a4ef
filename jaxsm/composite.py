"""Composite tensors at a function's boundary: ``RaggedTensor`` and ``SparseTensor`` inputs and outputs.

A tf.function that takes or returns a ``tf.RaggedTensor``/``tf.SparseTensor`` is saved with the value's
*components* as its FunctionDef's inputs and outputs (``TypeSpec._to_components``): a ragged tensor is its
``flat_values`` followed by its ``nested_row_splits``, outermost first; a sparse tensor is ``indices``, ``values``,
``dense_shape``. The signature keeps a ``RaggedTensorSpec``/``SparseTensorSpec`` (a :class:`~jaxsm.format.structure.
TypeSpec` here). jaxsm passes the components in, and packs the components that come out into the small classes
below (JAX pytrees, so they pass through ``jax.jit``/``vmap``); TF's own ``tf.RaggedTensor``/``tf.SparseTensor``
are accepted as inputs by their attributes, without importing TF. A ``tf.experimental.ExtensionType`` (batchable or
not) is its tensor fields' components in declaration order: it comes out as a namedtuple named after its class,
and any value with those fields as attributes (TF's own, or such a namedtuple) goes in.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxsm.errors import FunctionMatchError
from jaxsm.format import structure
from jaxsm.format.structure import DType, TensorSpec, TypeSpec


@jax.tree_util.register_pytree_node_class
class RaggedTensor:
    """A ragged tensor as TF stores it: ``flat_values`` and ``nested_row_splits`` (outermost first).

    Row ``i`` of the outermost ragged dimension is ``values[row_splits[i]:row_splits[i + 1]]``, where ``values``
    is the next level (a RaggedTensor again, or ``flat_values`` at the innermost level).
    """

    def __init__(self, flat_values: Any, nested_row_splits: tuple[Any, ...] | list[Any]):
        self.flat_values = flat_values
        self.nested_row_splits = tuple(nested_row_splits)

    @classmethod
    def from_row_splits(cls, values: Any, row_splits: Any) -> RaggedTensor:
        """A ragged tensor with one more ragged dimension over ``values`` (an array or a RaggedTensor)."""
        if isinstance(values, RaggedTensor):
            return cls(values.flat_values, (row_splits,) + values.nested_row_splits)
        return cls(values, (row_splits,))

    @property
    def ragged_rank(self) -> int:
        return len(self.nested_row_splits)

    @property
    def row_splits(self) -> Any:
        return self.nested_row_splits[0]

    @property
    def values(self) -> Any:
        """The next level down: a RaggedTensor, or ``flat_values`` when this one has a single ragged dimension."""
        if self.ragged_rank == 1:
            return self.flat_values
        return RaggedTensor(self.flat_values, self.nested_row_splits[1:])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.flat_values.dtype)

    def nrows(self) -> int:
        return int(np.shape(self.row_splits)[0]) - 1

    def to_list(self) -> list:
        """Nested Python lists of the values, like ``tf.RaggedTensor.to_list``."""
        values = np.asarray(self.flat_values).tolist()
        for splits in reversed(self.nested_row_splits):
            s = np.asarray(splits)
            values = [values[int(a) : int(b)] for a, b in zip(s[:-1], s[1:], strict=True)]
        return values

    def tree_flatten(self):
        return (self.flat_values, self.nested_row_splits), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def __repr__(self) -> str:
        return f"<jaxsm.RaggedTensor {self.to_list()}>"


@jax.tree_util.register_pytree_node_class
class SparseTensor:
    """A sparse tensor as TF stores it: ``indices`` [N, rank] int64, ``values`` [N], ``dense_shape`` [rank]."""

    def __init__(self, indices: Any, values: Any, dense_shape: Any):
        self.indices = indices
        self.values = values
        self.dense_shape = dense_shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.values.dtype)

    def to_dense(self, default_value: Any = 0) -> np.ndarray:
        """The dense array (NumPy), like ``tf.sparse.to_dense``."""
        values = np.asarray(self.values)
        out = np.full(tuple(int(d) for d in np.asarray(self.dense_shape)), default_value, dtype=values.dtype)
        out[tuple(np.asarray(self.indices).T)] = values
        return out

    def tree_flatten(self):
        return (self.indices, self.values, self.dense_shape), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def __repr__(self) -> str:
        return (
            f"<jaxsm.SparseTensor indices={np.asarray(self.indices).tolist()} values={np.asarray(self.values).tolist()}"
            f" dense_shape={np.asarray(self.dense_shape).tolist()}>"
        )


def _spec(shape: Any, dtype: DType, name: str | None = None) -> TensorSpec:
    return TensorSpec(None if shape is None else tuple(shape), dtype.numpy, name, dtype.enum)


def component_specs(spec: TypeSpec) -> list[TensorSpec]:
    """The TensorSpecs of the components a composite spec stands for, in TF's order; raises
    :class:`~jaxsm.errors.FunctionMatchError` for kinds jaxsm does not take apart."""
    state = spec.type_state
    if spec.type_spec_class == "RAGGED_TENSOR_SPEC":
        shape, dtype, ragged_rank, splits_dtype = state[:4]
        if len(state) > 4 and state[4] is not None:
            raise FunctionMatchError("RaggedTensorSpec with a custom flat_values_spec is not supported")
        if ragged_rank <= 0:
            return [_spec(shape, dtype)]
        inner = None if shape is None else (None,) + tuple(shape[ragged_rank + 1 :])
        outer = None if shape is None or shape[0] is None else shape[0] + 1
        return [_spec(inner, dtype), _spec((outer,), splits_dtype)] + [_spec((None,), splits_dtype)] * (ragged_rank - 1)
    if spec.type_spec_class == "SPARSE_TENSOR_SPEC":
        shape, dtype = state
        rank = None if shape is None else len(shape)
        int64 = DType(9)  # DT_INT64
        return [_spec((None, rank), int64), _spec((None,), dtype), _spec((rank,), int64)]
    if spec.type_spec_class == "EXTENSION_TYPE_SPEC":
        specs: list[TensorSpec] = []
        for _, s in _extension_fields(spec):
            if isinstance(s, TensorSpec | TypeSpec):  # (Python fields are no components)
                specs.extend([s] if isinstance(s, TensorSpec) else component_specs(s))
        return specs
    raise FunctionMatchError(
        f"{spec.class_name or spec.type_spec_class} values at a function boundary are not supported (jaxsm takes "
        "RaggedTensor, SparseTensor and ExtensionType values apart); pass plain tensors"
    )


def _extension_fields(spec: TypeSpec) -> list[tuple[str, Any]]:
    """The fields of a ``tf.experimental.ExtensionType``'s spec in declaration order, TF's order of components:
    (name, TensorSpec or TypeSpec) for tensor fields, (name, value) for Python ones (not components)."""
    fields = list(spec.type_state)
    for name, s in fields:
        if not isinstance(s, TensorSpec | TypeSpec) and any(
            isinstance(x, TensorSpec | TypeSpec) for x in structure.flatten(s)
        ):
            raise FunctionMatchError(
                f"{spec.class_name}: field '{name}' holds a nested structure of tensors, which jaxsm does not take "
                "apart yet; pass plain tensors"
            )
    return fields


def to_components(value: Any, spec: TypeSpec) -> list[Any] | None:
    """The components of ``value`` (jaxsm's or TF's RaggedTensor/SparseTensor/ExtensionType value) for ``spec``, or
    None when it is not such a value. A plain array matches a RaggedTensorSpec of ragged_rank 0, as in TF."""
    if spec.type_spec_class == "RAGGED_TENSOR_SPEC":
        if spec.type_state[2] <= 0:
            return None if hasattr(value, "nested_row_splits") else [value]
        if not hasattr(value, "nested_row_splits") or not hasattr(value, "flat_values"):
            return None
        splits = list(value.nested_row_splits)
        return [value.flat_values, *splits] if len(splits) == spec.type_state[2] else None
    if spec.type_spec_class == "SPARSE_TENSOR_SPEC":
        if not all(hasattr(value, k) for k in ("indices", "values", "dense_shape")):
            return None
        return [value.indices, value.values, value.dense_shape]
    if spec.type_spec_class == "EXTENSION_TYPE_SPEC":  # TF's extension values or jaxsm's, by their fields
        parts: list[Any] = []
        for name, s in _extension_fields(spec):
            if not isinstance(s, TensorSpec | TypeSpec):
                continue  # (TF too runs the trace's Python value, whatever the call's)
            if not hasattr(value, name):
                return None
            field = getattr(value, name)
            sub = [field] if isinstance(s, TensorSpec) else to_components(field, s)
            if sub is None:
                return None
            parts.extend(sub)
        return parts
    return None


def from_components(spec: TypeSpec, components: list[Any]) -> Any:
    """The value ``spec`` describes, from its components (as :func:`component_specs` lists them)."""
    if spec.type_spec_class == "RAGGED_TENSOR_SPEC":
        if len(components) == 1:
            return components[0]
        return RaggedTensor(components[0], components[1:])
    if spec.type_spec_class == "EXTENSION_TYPE_SPEC":
        return _extension_value(spec, components)
    return SparseTensor(*components)


def _extension_value(spec: TypeSpec, components: list[Any]) -> Any:
    """An ExtensionType value as a namedtuple named after its class (a JAX pytree, fields by attribute, as TF's
    ``AnonymousExtensionType`` when the class is not imported): Python fields keep their saved values (as pytree
    leaves, so a call under the caller's jax.jit returns them as arrays)."""
    it = iter(components)
    fields = {}
    for name, s in _extension_fields(spec):
        if isinstance(s, TensorSpec):
            fields[name] = next(it)
        elif isinstance(s, TypeSpec):
            fields[name] = from_components(s, [next(it) for _ in component_specs(s)])
        else:
            fields[name] = s
    cls_name = (spec.class_name or "ExtensionType").removesuffix(".Spec").rpartition(".")[2]
    return structure._namedtuple_class(cls_name, tuple(fields))(**fields)
