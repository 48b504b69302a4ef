"""TF ``DataType`` enum <-> NumPy dtypes."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from jaxsm._proto import types_pb2

DT = types_pb2.DataType

_TO_NUMPY: dict[int, np.dtype] = {
    DT.DT_FLOAT: np.dtype(np.float32),
    DT.DT_DOUBLE: np.dtype(np.float64),
    DT.DT_INT32: np.dtype(np.int32),
    DT.DT_UINT8: np.dtype(np.uint8),
    DT.DT_INT16: np.dtype(np.int16),
    DT.DT_INT8: np.dtype(np.int8),
    DT.DT_STRING: np.dtype(object),
    DT.DT_COMPLEX64: np.dtype(np.complex64),
    DT.DT_INT64: np.dtype(np.int64),
    DT.DT_BOOL: np.dtype(np.bool_),
    DT.DT_QINT8: np.dtype(np.int8),
    DT.DT_QUINT8: np.dtype(np.uint8),
    DT.DT_QINT32: np.dtype(np.int32),
    DT.DT_BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    DT.DT_QINT16: np.dtype(np.int16),
    DT.DT_QUINT16: np.dtype(np.uint16),
    DT.DT_UINT16: np.dtype(np.uint16),
    DT.DT_COMPLEX128: np.dtype(np.complex128),
    DT.DT_HALF: np.dtype(np.float16),
    DT.DT_UINT32: np.dtype(np.uint32),
    DT.DT_UINT64: np.dtype(np.uint64),
    DT.DT_FLOAT8_E5M2: np.dtype(ml_dtypes.float8_e5m2),
    DT.DT_FLOAT8_E4M3FN: np.dtype(ml_dtypes.float8_e4m3fn),
    DT.DT_INT4: np.dtype(ml_dtypes.int4),
    DT.DT_UINT4: np.dtype(ml_dtypes.uint4),
}

_FROM_NUMPY: dict[np.dtype, int] = {}
for _enum, _dt in _TO_NUMPY.items():
    if _enum not in (DT.DT_QINT8, DT.DT_QUINT8, DT.DT_QINT32, DT.DT_QINT16, DT.DT_QUINT16):
        _FROM_NUMPY.setdefault(_dt, _enum)

NON_NUMERIC = {DT.DT_RESOURCE, DT.DT_VARIANT}


def base_enum(dtype: int) -> int:
    """Strip the ``_REF`` offset (TF1 reference types are ``dtype + 100``)."""
    return dtype - 100 if dtype > 100 else dtype


def to_numpy(dtype: int) -> np.dtype:
    """The NumPy dtype of a TF ``DataType`` (``_REF`` types map to their base type).

    Raises KeyError for types without a NumPy counterpart (resource, variant, invalid).
    """
    return _TO_NUMPY[base_enum(dtype)]


def from_numpy(dtype: np.dtype | type) -> int:
    """The TF ``DataType`` enum of a NumPy dtype."""
    dt = np.dtype(dtype)
    if dt.kind in ("U", "S", "O"):
        return DT.DT_STRING
    return _FROM_NUMPY[dt]


def name(dtype: int) -> str:
    """TF's Python-side name of a dtype: ``float32``, ``int64``, ``resource``, ``string`` …"""
    base = base_enum(dtype)
    if base in _TO_NUMPY and base != DT.DT_STRING:
        nm = DT.Name(base)[3:].lower()
        return {"float": "float32", "double": "float64", "half": "float16"}.get(nm, nm) + (
            "_ref" if dtype > 100 else ""
        )
    try:
        return DT.Name(base)[3:].lower() + ("_ref" if dtype > 100 else "")
    except ValueError:
        return f"<unknown dtype {dtype}>"


def as_strings(v: Any) -> np.ndarray | None:
    """``v`` (bytes/str, nested lists of them, or a NumPy bytes/str/object array) as an object array of bytes
    (str is encoded as UTF-8, as TF converts it); None if it is not text."""
    if isinstance(v, (str, bytes, list, tuple)):
        try:
            v = np.asarray(v, dtype=object)
        except ValueError:  # ragged nesting
            return None
    if not isinstance(v, (np.ndarray, np.generic)) or np.dtype(v.dtype).kind not in "OSU":
        return None
    flat = [x.encode() if isinstance(x, str) else x for x in np.asarray(v, dtype=object).reshape(-1)]
    if not all(isinstance(x, bytes) for x in flat):
        return None
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(np.shape(v))


class HostValue:
    """Base of the elements of host-only object tensors other than strings (a DT_VARIANT holding a ragged tensor,
    jaxsm/ops/ragged.py): :func:`is_strings` counts such tensors as strings, so they stay on the host too."""


def is_strings(x: Any) -> bool:
    """Whether ``x`` is a string tensor: a NumPy bytes/str array, or an object array of them (jaxsm's symbolic
    shape values are object arrays of ints and dimensions, never starting with text), or of :class:`HostValue`."""
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "OSU":
        return False
    return x.dtype.kind != "O" or x.size == 0 or isinstance(x.flat[0], (bytes, str, HostValue))
