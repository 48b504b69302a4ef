"""Sparse tensors as strings: ``SerializeSparse``/``SerializeManySparse`` write each SparseTensor as three
serialized TensorProtos (indices, values, dense shape) and ``DeserializeSparse``/``DeserializeManySparse`` read
them back into one batched SparseTensor (tensorflow/core/kernels/serialize_sparse_op.cc,
deserialize_sparse_string_op.cc). Strings live on the host, so these run on concrete values; ``out_type``
variant (a DT_VARIANT holding the three tensors) is not supported."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxsm import dtypes
from jaxsm.ops.registry import op
from jaxsm.ops.strings import _bytes_array, _strings

_DT_STRING, _DT_INT64 = 7, 9


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _encode_strings(strings: list[bytes]) -> bytes:
    """TF's string ``tensor_content`` (port::EncodeStringList): every length as a varint, then the bytes."""
    return b"".join(_varint(len(b)) for b in strings) + b"".join(strings)


def _tensor_proto_bytes(x: np.ndarray, dtype: int) -> bytes:
    """``Tensor::AsProtoTensorContent`` serialized: every dtype (strings too, encoded as TF does) in
    ``tensor_content``, raw little-endian; an empty tensor has none."""
    from jaxsm._proto import tensor_pb2

    proto = tensor_pb2.TensorProto(dtype=dtype)
    proto.tensor_shape.SetInParent()
    for d in x.shape:
        proto.tensor_shape.dim.add(size=d)
    if dtype == _DT_STRING:
        proto.tensor_content = _encode_strings(x.reshape(-1).tolist())
    elif x.size:
        proto.tensor_content = np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<")).tobytes()
    return proto.SerializeToString()


def _sparse_inputs(ctx, indices: Any, values: Any, shape: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    indices = np.asarray(ctx.static(indices, "the sparse indices (serialized on the host)"), np.int64)
    strings = dtypes.is_strings(values)
    values = _strings(ctx, values, "the values") if strings else np.asarray(ctx.static(values, "the values"))
    shape = np.asarray(ctx.static(shape, "the dense shape"), np.int64)
    if indices.ndim != 2 or values.ndim != 1 or shape.ndim != 1:
        raise ctx.error(
            f"Input indices should be a matrix, values a vector and shape a vector but received shapes: "
            f"{list(indices.shape)}, {list(values.shape)}, {list(shape.shape)}"
        )
    if indices.shape[0] != values.shape[0] or indices.shape[1] != shape.shape[0]:
        raise ctx.error(
            f"Number of elements in indices ({indices.shape[0]}) and values ({values.shape[0]}) do not match, "
            f"or the indices' rank ({indices.shape[1]}) is not the shape's ({shape.shape[0]})"
        )
    return indices, values, shape


def _check_string_out(ctx) -> None:
    if ctx.attr("out_type", _DT_STRING) != _DT_STRING:
        raise ctx.error("out_type variant (a DT_VARIANT SparseTensor) is not supported; only strings")


def _serialized(ctx, indices: np.ndarray, values: np.ndarray, shape: np.ndarray) -> list[bytes]:
    return [
        _tensor_proto_bytes(indices, _DT_INT64),
        _tensor_proto_bytes(values, int(ctx.attr("T"))),
        _tensor_proto_bytes(shape, _DT_INT64),
    ]


@op("SerializeSparse")
def serialize_sparse(ctx, indices, values, shape):
    _check_string_out(ctx)
    return _bytes_array(_serialized(ctx, *_sparse_inputs(ctx, indices, values, shape)), (3,))


def _check_indices_valid(ctx, indices: np.ndarray, shape: np.ndarray) -> None:
    """``SparseTensor::IndicesValid`` (sparse_tensor.cc): every index in bounds, in strictly increasing
    row-major order."""
    for n, index in enumerate(indices.tolist()):
        text = ",".join(map(str, index))
        if any(not 0 <= i < d for i, d in zip(index, shape.tolist())):
            raise ctx.error(
                f"indices[{n}] = [{text}] is out of bounds: need 0 <= index < [{','.join(map(str, shape))}]"
            )
        if n and index <= indices[n - 1].tolist():
            why = "is repeated" if index == indices[n - 1].tolist() else "is out of order"
            raise ctx.error(f"indices[{n}] = [{text}] {why}. Many sparse ops require sorted indices.")


@op("SerializeManySparse")
def serialize_many_sparse(ctx, indices, values, shape):
    """One row per entry of the first dimension: the entries whose first index is that row, the first index and
    dimension dropped (TF groups them with SparseTensor::Group, which keeps their order)."""
    _check_string_out(ctx)
    indices, values, shape = _sparse_inputs(ctx, indices, values, shape)
    if shape.shape[0] < 2:
        raise ctx.error(f"Rank of input SparseTensor should be > 1, but saw rank: {shape.shape[0]}")
    _check_indices_valid(ctx, indices, shape)
    rows = []
    for b in range(int(shape[0])):
        take = indices[:, 0] == b
        rows += _serialized(ctx, indices[take, 1:], values[take], shape[1:])
    return _bytes_array(rows, (int(shape[0]), 3))


def _parse(ctx, data: bytes, dtype: int, what: str) -> np.ndarray:
    from google.protobuf.message import DecodeError

    from jaxsm._proto import tensor_pb2
    from jaxsm.errors import FormatError
    from jaxsm.format.tensor import tensor_from_proto

    proto = tensor_pb2.TensorProto()
    try:
        proto.ParseFromString(data)
        value = tensor_from_proto(proto)
    except (DecodeError, FormatError) as e:
        raise ctx.error(f"Could not parse serialized {what}: {e}") from None
    if proto.dtype != dtype:
        raise ctx.error(
            f"Requested SparseTensor of type {dtypes.name(dtype)} but serialized {what} has type "
            f"{dtypes.name(proto.dtype)}"
        )
    return value


@op("DeserializeSparse", "DeserializeManySparse")
def deserialize_sparse(ctx, serialized):
    """The SparseTensors of ``serialized`` (shape [..., 3]) as one, its leading dimensions prepended: indices
    get each one's position, the dense shape is the leading dimensions and the largest of every dimension."""
    data = _strings(ctx, serialized, "the serialized sparse tensors")
    if data.ndim < 1 or data.shape[-1] != 3 or (ctx.node.op == "DeserializeManySparse" and data.ndim != 2):
        raise ctx.error(f"Serialized sparse should have 3 as the last dimension, got shape {list(data.shape)}")
    dtype = int(ctx.attr("dtype"))
    lead = data.shape[:-1]
    parts = [
        (_parse(ctx, i, _DT_INT64, "indices"), _parse(ctx, v, dtype, "values"), _parse(ctx, s, _DT_INT64, "shape"))
        for i, v, s in data.reshape(-1, 3)
    ]
    if not parts:
        raise ctx.error("Serialized sparse should have non-zero elements")
    rank = parts[0][2].shape[0]
    for i, v, s in parts:
        if s.shape != (rank,) or i.ndim != 2 or i.shape != (v.shape[0], rank):
            raise ctx.error(f"Inconsistent shape across SparseTensors: rank {rank} vs shape {list(s.shape)}")
    positions = np.array(list(np.ndindex(*lead)), np.int64).reshape(len(parts), len(lead))
    indices = [np.hstack([np.repeat(p[None], i.shape[0], 0), i]) for p, (i, _, _) in zip(positions, parts)]
    values = np.concatenate([v for _, v, _ in parts])
    shape = np.concatenate([np.asarray(lead, np.int64), np.max([s for _, _, s in parts], axis=0)])
    return np.concatenate(indices).astype(np.int64), values, shape.astype(np.int64)
