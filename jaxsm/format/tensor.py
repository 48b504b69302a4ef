"""TensorProto / TensorShapeProto -> NumPy (no JAX here)."""

from __future__ import annotations

import numpy as np

from jaxsm import dtypes
from jaxsm._proto import tensor_pb2, tensor_shape_pb2
from jaxsm.errors import FormatError

DT = dtypes.DT

# Which repeated field of TensorProto holds the values of each dtype when tensor_content is empty.
_VALUE_FIELD = {
    DT.DT_FLOAT: "float_val",
    DT.DT_DOUBLE: "double_val",
    DT.DT_INT32: "int_val",
    DT.DT_INT16: "int_val",
    DT.DT_INT8: "int_val",
    DT.DT_UINT8: "int_val",
    DT.DT_UINT16: "int_val",
    DT.DT_QINT8: "int_val",
    DT.DT_QUINT8: "int_val",
    DT.DT_QINT16: "int_val",
    DT.DT_QUINT16: "int_val",
    DT.DT_QINT32: "int_val",
    DT.DT_INT4: "int_val",
    DT.DT_UINT4: "int_val",
    DT.DT_INT64: "int64_val",
    DT.DT_BOOL: "bool_val",
    DT.DT_UINT32: "uint32_val",
    DT.DT_UINT64: "uint64_val",
    DT.DT_STRING: "string_val",
    DT.DT_COMPLEX64: "scomplex_val",
    DT.DT_COMPLEX128: "dcomplex_val",
    # half-like types store their raw 16-bit patterns in half_val
    DT.DT_HALF: "half_val",
    DT.DT_BFLOAT16: "half_val",
    DT.DT_FLOAT8_E5M2: "float8_val",
    DT.DT_FLOAT8_E4M3FN: "float8_val",
}


def shape_from_proto(shape: tensor_shape_pb2.TensorShapeProto) -> tuple[int | None, ...] | None:
    """A TensorShapeProto as a tuple (None for unknown dims), or None for unknown rank."""
    if shape.unknown_rank:
        return None
    return tuple(None if d.size < 0 else int(d.size) for d in shape.dim)


def _decode_string_list(content: bytes, n: int) -> list[bytes]:
    """Strings in ``tensor_content`` (TF's port::EncodeStringList, as AsProtoTensorContent writes them): the n
    lengths as varints, then the bytes one after another."""
    lengths, pos = [], 0
    for _ in range(n):
        value, shift = 0, 0
        while True:
            if pos >= len(content) or shift > 28:
                raise FormatError(f"string TensorProto content is truncated or corrupt after {len(lengths)} lengths")
            b = content[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        lengths.append(value)
    if pos + sum(lengths) != len(content):
        raise FormatError(f"string TensorProto content has {len(content) - pos} bytes for strings of {sum(lengths)}")
    out = []
    for size in lengths:
        out.append(content[pos : pos + size])
        pos += size
    return out


def tensor_from_proto(t: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a TensorProto to a NumPy array (strings -> object array of bytes).

    TF allows fewer values than elements: the last value is repeated (``tf.fill``-style constants).
    """
    shape = shape_from_proto(t.tensor_shape) or ()
    if any(d is None for d in shape):
        raise FormatError(f"TensorProto has an unknown dimension in its shape {shape}")
    try:
        dt = dtypes.to_numpy(t.dtype)
    except KeyError:
        raise FormatError(f"TensorProto of dtype {dtypes.name(t.dtype)} cannot be decoded to NumPy") from None
    n = int(np.prod(shape, dtype=np.int64))
    if t.dtype == DT.DT_STRING:
        vals = _decode_string_list(t.tensor_content, n) if t.tensor_content else list(t.string_val)
        arr = np.empty(n, dtype=object)
        if vals:
            arr[: len(vals)] = vals
            arr[len(vals) :] = vals[-1]
        else:
            arr[:] = b""
        return arr.reshape(shape)
    if t.tensor_content:
        need = n * dt.itemsize
        if len(t.tensor_content) != need:
            raise FormatError(
                f"TensorProto content has {len(t.tensor_content)} bytes; shape {shape} of "
                f"{dtypes.name(t.dtype)} needs {need}"
            )
        return np.frombuffer(t.tensor_content, dtype=dt).reshape(shape).copy()
    field = _VALUE_FIELD.get(t.dtype)
    raw = list(getattr(t, field)) if field else []
    if t.dtype in (DT.DT_HALF, DT.DT_BFLOAT16):
        vals = np.asarray(raw, dtype=np.uint16).view(dt)
    elif t.dtype in (DT.DT_FLOAT8_E5M2, DT.DT_FLOAT8_E4M3FN):
        vals = np.frombuffer(bytes(getattr(t, field)), dtype=np.uint8).view(dt)
    elif t.dtype in (DT.DT_COMPLEX64, DT.DT_COMPLEX128):
        pairs = np.asarray(raw, dtype=np.float64).reshape(-1, 2)
        vals = (pairs[:, 0] + 1j * pairs[:, 1]).astype(dt)
    else:
        vals = np.asarray(raw).astype(dt) if raw else np.zeros(0, dt)
    if vals.size == n:
        return vals.reshape(shape)
    out = np.zeros(n, dtype=dt)
    if vals.size:
        out[: vals.size] = vals[:n]
        out[vals.size :] = vals[-1]
    return out.reshape(shape)
