"""A read-only view of NodeDefs with typed attribute access."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxsm import dtypes
from jaxsm._proto import attr_value_pb2, node_def_pb2
from jaxsm.errors import AttrError
from jaxsm.format.tensor import shape_from_proto, tensor_from_proto

_MISSING = object()


@dataclass(frozen=True)
class FuncAttr:
    """A function-valued attribute (``NameAttrList``): the function name and its attrs."""

    name: str
    attr: dict[str, Any] = field(default_factory=dict)


def decode_attr(value: attr_value_pb2.AttrValue) -> Any:
    """Decode one AttrValue: bytes->str when UTF-8, type->DataType enum int, shape->tuple|None,
    tensor->np.ndarray, func->FuncAttr, list->list of those."""
    kind = value.WhichOneof("value")
    if kind == "s":
        try:
            return value.s.decode()
        except UnicodeDecodeError:
            return value.s
    if kind in ("i", "f", "b", "type"):
        return getattr(value, kind)
    if kind == "shape":
        return shape_from_proto(value.shape)
    if kind == "tensor":
        return tensor_from_proto(value.tensor)
    if kind == "func":
        return FuncAttr(value.func.name, {k: decode_attr(v) for k, v in value.func.attr.items()})
    if kind == "list":
        lst = value.list
        for name in ("s", "i", "f", "b", "type", "shape", "tensor", "func"):
            items = getattr(lst, name)
            if len(items):
                if name == "s":
                    return [s.decode(errors="replace") for s in items]
                if name == "shape":
                    return [shape_from_proto(s) for s in items]
                if name == "tensor":
                    return [tensor_from_proto(t) for t in items]
                if name == "func":
                    return [FuncAttr(f.name, {k: decode_attr(v) for k, v in f.attr.items()}) for f in items]
                return list(items)
        return []
    if kind == "placeholder":
        raise AttrError(f"attribute is an unresolved placeholder '{value.placeholder}'")
    return None


def func_attr_names(attrs: Any) -> list[str]:
    """The function names in a NodeDef's function-valued attributes (``attrs``: its attr map), read without
    decoding the other attributes."""
    names = []
    for value in attrs.values():
        kind = value.WhichOneof("value")
        if kind == "func":
            names.append(value.func.name)
        elif kind == "list":
            names.extend(f.name for f in value.list.func)
    return names


class Node:
    """One NodeDef: name, op type, data input refs, control inputs, and typed attribute getters."""

    __slots__ = ("name", "op", "inputs", "control_inputs", "device", "_attr_proto", "_attrs", "function")

    def __init__(self, node_def: node_def_pb2.NodeDef, function: str = ""):
        self.name: str = node_def.name
        self.op: str = node_def.op
        self.inputs: list[str] = [i for i in node_def.input if not i.startswith("^")]
        self.control_inputs: list[str] = [i[1:] for i in node_def.input if i.startswith("^")]
        self.device: str = node_def.device
        self._attr_proto = node_def.attr
        self._attrs: dict[str, Any] = {}
        self.function = function

    def where(self) -> str:
        """``'name' (Op) in 'function'`` for error messages."""
        fn = f" in '{self.function}'" if self.function else ""
        return f"'{self.name}' ({self.op}){fn}"

    def has_attr(self, name: str) -> bool:
        return name in self._attr_proto

    def attr(self, name: str, default: Any = _MISSING) -> Any:
        """The decoded attribute ``name``; ``default`` when absent (else AttrError naming node and op)."""
        if name in self._attrs:
            return self._attrs[name]
        if name not in self._attr_proto:
            if default is _MISSING:
                raise AttrError(f"node {self.where()} has no attribute '{name}'")
            return default
        try:
            value = decode_attr(self._attr_proto[name])
        except Exception as e:
            raise AttrError(f"cannot decode attribute '{name}' of node {self.where()}: {e}") from e
        if isinstance(default, bool) and not isinstance(value, bool):  # a bytes value would read as True
            raise AttrError(f"attribute '{name}' of node {self.where()} is {value!r}, not a bool: the graph is corrupt")
        self._attrs[name] = value
        return value

    def dtype_attr(self, name: str, default: Any = _MISSING) -> np.dtype:
        """A ``type`` attribute as a NumPy dtype."""
        value = self.attr(name, default)
        if isinstance(value, np.dtype) or value is default:
            return value
        if dtypes.base_enum(value) == dtypes.DT.DT_VARIANT:  # variant tensors are host object arrays (ops/ragged.py)
            return np.dtype(object)
        try:
            return dtypes.to_numpy(value)
        except KeyError:
            raise AttrError(
                f"attribute '{name}' of node {self.where()} is {dtypes.name(value)}, which has no array dtype"
            ) from None

    def attr_names(self) -> list[str]:
        return list(self._attr_proto.keys())

    def func_attr_names(self) -> list[str]:
        return func_attr_names(self._attr_proto)

    def __repr__(self) -> str:
        return f"Node({self.name!r}, op={self.op!r})"
