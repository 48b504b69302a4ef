"""``StructuredValue`` (struct.proto) -> plain Python nested structures.

TF stores function signatures (``SavedConcreteFunction.canonicalized_input_signature``,
``output_signature``, ``FunctionSpec.fullargspec`` / ``input_signature``) as ``StructuredValue`` protos.
:func:`decode` turns them into what TF's ``nested_structure_coder`` gives back, without TF: tuples, lists,
dicts, ``None``, Python scalars, namedtuples, and small stand-ins for TF's spec classes
(:class:`TensorSpec`, :class:`BoundedTensorSpec`, :class:`TypeSpec`, :class:`DType`).
:func:`format_value` renders any decoded value as short, deterministic text.
"""

from __future__ import annotations

import collections
import functools
from typing import Any, NamedTuple

import numpy as np

from jaxsm import dtypes
from jaxsm._proto import struct_pb2
from jaxsm.errors import FormatError
from jaxsm.format.tensor import shape_from_proto, tensor_from_proto

Shape = tuple[int | None, ...] | None


def _numpy_or_none(dtype_enum: int) -> np.dtype | None:
    try:
        return dtypes.to_numpy(dtype_enum)
    except KeyError:  # resource, variant, invalid: no NumPy counterpart
        return None


def _shape_text(shape: Shape) -> str:
    if shape is None:
        return "<unknown>"
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(d) for d in shape) + ")"


class DType(NamedTuple):
    """A TF ``DataType`` (what TF decodes ``tensor_dtype_value`` to: a ``tf.DType``)."""

    enum: int

    @property
    def name(self) -> str:
        """TF's Python name: ``float32``, ``string``, ``resource`` …"""
        return dtypes.name(self.enum)

    @property
    def numpy(self) -> np.dtype | None:
        """The NumPy dtype, or None for resource/variant."""
        return _numpy_or_none(self.enum)

    def __repr__(self) -> str:
        return f"tf.{self.name}"


class TensorSpec(NamedTuple):
    """A ``tf.TensorSpec``: ``shape`` has None for unknown dims and is None for unknown rank.

    ``dtype`` is the NumPy dtype (``object`` for strings; None for resource/variant); ``dtype_enum`` is TF's
    ``DataType`` and tells string from other object dtypes.
    """

    shape: Shape
    dtype: np.dtype | None
    name: str | None
    dtype_enum: int

    @property
    def dtype_name(self) -> str:
        """TF's name of the dtype (``float32``, ``string`` …)."""
        return dtypes.name(self.dtype_enum)

    def is_compatible_with_shape(self, shape: tuple[int, ...]) -> bool:
        """Whether a concrete shape matches this spec (None matches any size; unknown rank matches all)."""
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(
            d is None or d == s for d, s in zip(self.shape, shape, strict=True)
        )

    def __repr__(self) -> str:
        name = "None" if self.name is None else repr(self.name)
        return f"TensorSpec(shape={_shape_text(self.shape)}, dtype={self.dtype_name}, name={name})"


class BoundedTensorSpec(NamedTuple):
    """A ``tf.TensorSpec`` with ``minimum`` / ``maximum`` bounds (NumPy arrays)."""

    shape: Shape
    dtype: np.dtype | None
    name: str | None
    dtype_enum: int
    minimum: np.ndarray
    maximum: np.ndarray

    @property
    def dtype_name(self) -> str:
        """TF's name of the dtype."""
        return dtypes.name(self.dtype_enum)

    def __repr__(self) -> str:
        name = "None" if self.name is None else repr(self.name)
        return (
            f"BoundedTensorSpec(shape={_shape_text(self.shape)}, dtype={self.dtype_name}, name={name}, "
            f"minimum={np.array2string(self.minimum)}, maximum={np.array2string(self.maximum)})"
        )


class TypeSpec(NamedTuple):
    """Any other ``tf.TypeSpec`` (sparse, ragged, variable, extension types …), kept close to the proto.

    ``type_spec_class`` is the enum's name (``RAGGED_TENSOR_SPEC``, ``VARIABLE_SPEC`` …), ``class_name`` the
    registered class name when there is one, ``type_state`` the decoded state and ``proto`` the raw message.
    """

    type_spec_class: str
    class_name: str
    type_state: Any
    num_flat_components: int
    proto: struct_pb2.TypeSpecProto

    def __repr__(self) -> str:
        label = self.class_name or self.type_spec_class
        return f"TypeSpec({label}, {format_value(self.type_state)})"


@functools.cache
def _namedtuple_class(name: str, fields: tuple[str, ...]) -> type:
    # Cached so two decodes of the same namedtuple compare equal and share a type, as in TF.
    try:
        return collections.namedtuple(name, fields)
    except ValueError:  # names TF accepts but Python identifiers don't
        return collections.namedtuple(name if name.isidentifier() else "NamedTuple", fields, rename=True)


def decode(value: struct_pb2.StructuredValue) -> Any:
    """Decode a ``StructuredValue`` to the Python structure TF's ``nested_structure_coder`` would return.

    Raises :class:`~jaxsm.errors.FormatError` when the oneof is unset or unknown.
    """
    kind = value.WhichOneof("kind")
    if kind == "none_value":
        return None
    if kind == "float64_value":
        return value.float64_value
    if kind == "int64_value":
        return value.int64_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "tensor_shape_value":
        return shape_from_proto(value.tensor_shape_value)
    if kind == "tensor_dtype_value":
        return DType(value.tensor_dtype_value)
    if kind == "list_value":
        return [decode(v) for v in value.list_value.values]
    if kind == "tuple_value":
        return tuple(decode(v) for v in value.tuple_value.values)
    if kind == "dict_value":
        return {k: decode(v) for k, v in sorted(value.dict_value.fields.items())}
    if kind == "named_tuple_value":
        nt = value.named_tuple_value
        cls = _namedtuple_class(nt.name, tuple(p.key for p in nt.values))
        return cls(*(decode(p.value) for p in nt.values))
    if kind == "tensor_spec_value":
        spec = value.tensor_spec_value
        return TensorSpec(shape_from_proto(spec.shape), _numpy_or_none(spec.dtype), spec.name or None, spec.dtype)
    if kind == "bounded_tensor_spec_value":
        spec = value.bounded_tensor_spec_value
        return BoundedTensorSpec(
            shape_from_proto(spec.shape),
            _numpy_or_none(spec.dtype),
            spec.name or None,
            spec.dtype,
            tensor_from_proto(spec.minimum),
            tensor_from_proto(spec.maximum),
        )
    if kind == "type_spec_value":
        spec = value.type_spec_value
        state = decode(spec.type_state) if spec.HasField("type_state") else None
        return TypeSpec(
            struct_pb2.TypeSpecProto.TypeSpecClass.Name(spec.type_spec_class),
            spec.type_spec_class_name,
            state,
            spec.num_flat_components,
            spec,
        )
    if kind in ("tensor_value", "numpy_value"):
        return tensor_from_proto(getattr(value, kind))
    raise FormatError(f"StructuredValue has no known value set (kind={kind!r})")


def flatten(structure: Any) -> list[Any]:
    """The leaves of a decoded structure in TF's ``nest.flatten`` order (dicts by sorted key)."""
    if isinstance(structure, TensorSpec | BoundedTensorSpec | TypeSpec | DType):  # NamedTuples, but leaves
        return [structure]
    if isinstance(structure, dict):
        return [leaf for k in sorted(structure) for leaf in flatten(structure[k])]
    if isinstance(structure, list | tuple):  # namedtuples are tuples
        return [leaf for item in structure for leaf in flatten(item)]
    return [structure]


def format_value(value: Any) -> str:
    """Short deterministic text for a decoded value (specs via their repr, containers recursively)."""
    if isinstance(value, TensorSpec | BoundedTensorSpec | TypeSpec | DType):
        return repr(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        inner = ", ".join(f"{k}={format_value(v)}" for k, v in zip(value._fields, value, strict=True))
        return f"{type(value).__name__}({inner})"
    if isinstance(value, tuple):
        inner = ", ".join(format_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, np.ndarray):
        return f"array({np.array2string(value, threshold=8)}, dtype={value.dtype})"
    return repr(value)


def format_signature(
    args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], arg_names: list[str] | None = None
) -> str:
    """Render a decoded ``(args, kwargs)`` input signature like a Python call signature.

    Tensor specs show as ``name: TensorSpec(shape=..., dtype=...)`` (TF names each spec after its
    argument); other positional values as ``argname=value`` when ``arg_names`` (``FullArgSpec.args``)
    knows the name.

    Example: ``(x: TensorSpec(shape=(None, 3), dtype=float32), training=False)``.
    """
    parts = [_format_arg(arg_names[i] if arg_names and i < len(arg_names) else None, a) for i, a in enumerate(args)]
    parts += [_format_arg(k, v) for k, v in sorted(kwargs.items())]
    return "(" + ", ".join(parts) + ")"


def _format_arg(name: str | None, value: Any) -> str:
    if isinstance(value, TensorSpec):
        label = value.name or name or "_"
        return f"{label}: TensorSpec(shape={_shape_text(value.shape)}, dtype={value.dtype_name})"
    if name is None:
        return format_value(value)
    if isinstance(value, tuple | list | dict) and any(
        isinstance(leaf, TensorSpec | BoundedTensorSpec | TypeSpec) for leaf in flatten(value)
    ):
        return f"{name}: {format_value(value)}"
    return f"{name}={format_value(value)}"
