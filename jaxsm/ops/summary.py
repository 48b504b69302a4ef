"""TF1 summary ops: ``ScalarSummary``, ``HistogramSummary``, ``TensorSummary(V2)`` and ``MergeSummary`` return
serialized ``Summary`` protos (tensorflow/core/framework/summary.proto), byte for byte as TF's kernels write them
(tensorflow/core/kernels/summary_op.cc, summary_tensor_op.cc). They are strings, so they run on the host on
concrete values. The protos are written by hand in protobuf's wire format, fields in field-number order as
protobuf's C++ serializer does (jaxsm ships no Summary proto module)."""

from __future__ import annotations

import bisect
import struct
import sys
from typing import Any

import numpy as np

from jaxsm import dtypes
from jaxsm.ops.registry import op
from jaxsm.ops.sparse_serialize import _varint
from jaxsm.ops.strings import _bytes_array, _strings

_DT_STRING = 7


# -- wire format -------------------------------------------------------------------------------------------------
def _bytes_field(number: int, data: bytes) -> bytes:
    """A length-delimited field; proto3 leaves an empty string out."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data if data else b""


def _message_field(number: int, data: bytes) -> bytes:
    """A set submessage is written even when empty."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _double_field(number: int, value: float) -> bytes:
    raw = struct.pack("<d", value)
    return _varint(number << 3 | 1) + raw if raw != bytes(8) else b""


def _oneof_float_field(number: int, value: float) -> bytes:
    """A float in a oneof (Summary.Value's simple_value): written even when zero."""
    return _varint(number << 3 | 5) + struct.pack("<f", value)


def _packed_doubles(number: int, values: list[float]) -> bytes:
    return _bytes_field(number, struct.pack(f"<{len(values)}d", *values))


def _summary(values: list[bytes]) -> np.ndarray:
    """A scalar string: the Summary whose ``value`` entries are the serialized ``values``."""
    return _bytes_array([b"".join(_message_field(1, v) for v in values)], ())


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        value, pos, shift = value | (byte & 0x7F) << shift, pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value: int or bytes) of a serialized message; ValueError if it is not one."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos : pos + size], pos + size
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ValueError(f"wire type {wire}")
        if number == 0 or pos > len(data):
            raise ValueError("truncated message")
        out.append((number, wire, value))
    return out


# -- ScalarSummary / HistogramSummary ------------------------------------------------------------------------------
@op("ScalarSummary")
def scalar_summary(ctx, tags, values):
    tags = _strings(ctx, tags, "the tags")
    values = np.asarray(ctx.static(values, "the summarized values"))
    if tags.shape != values.shape:
        raise ctx.error(f"tags and values are not the same shape: {list(tags.shape)} != {list(values.shape)}")
    return _summary(
        [
            _bytes_field(1, t) + _oneof_float_field(2, float(v))
            for t, v in zip(tags.reshape(-1), values.reshape(-1).astype(np.float32))
        ]
    )


def _default_bucket_limits() -> list[float]:
    """tsl/lib/histogram/histogram.cc's default buckets: limits growing by 10% from 1e-12 to 1e20, mirrored for
    negative values, 0 in the middle and +-DBL_MAX at the ends."""
    positive, v = [], 1.0e-12
    while v < 1.0e20:
        positive.append(v)
        v *= 1.1
    positive.append(sys.float_info.max)
    return [-p for p in reversed(positive)] + [0.0] + positive


_BUCKET_LIMITS = _default_bucket_limits()


def _histogram_proto(values: np.ndarray) -> bytes:
    """``Histogram::Add`` for each value in order, then ``EncodeToProto`` dropping zero buckets: each run of empty
    buckets becomes one entry with the run's last limit; at least one bucket."""
    counts = [0.0] * len(_BUCKET_LIMITS)
    lo, hi, total, squares = sys.float_info.max, -sys.float_info.max, 0.0, 0.0
    for v in values.tolist():
        counts[bisect.bisect_right(_BUCKET_LIMITS, v)] += 1.0
        lo, hi, total, squares = min(lo, v), max(hi, v), total + v, squares + v * v
    limits, buckets, i = [], [], 0
    while i < len(counts):
        end, count = _BUCKET_LIMITS[i], counts[i]
        i += 1
        if count <= 0.0:
            while i < len(counts) and counts[i] <= 0.0:
                end, count = _BUCKET_LIMITS[i], counts[i]
                i += 1
        limits.append(end)
        buckets.append(count)
    head = b"".join(_double_field(n, x) for n, x in enumerate((lo, hi, float(values.size), total, squares), start=1))
    return head + _packed_doubles(6, limits) + _packed_doubles(7, buckets)


@op("HistogramSummary")
def histogram_summary(ctx, tag, values):
    tag = _strings(ctx, tag, "the tag")
    if tag.ndim:
        raise ctx.error(f"tags must be scalar, got shape {list(tag.shape)}")
    values = np.asarray(ctx.static(values, "the summarized values")).astype(np.float64).reshape(-1)
    if np.isnan(values).any():
        raise ctx.error(f"Nan in summary histogram for: {ctx.node.name}")
    if np.isinf(values).any():
        raise ctx.error(f"Infinity in summary histogram for: {ctx.node.name}")
    return _summary([_bytes_field(1, tag.item()) + _message_field(5, _histogram_proto(values))])


# -- TensorSummary(V2) ---------------------------------------------------------------------------------------------
def _tensor_proto(ctx, tensor: Any) -> bytes:
    """The summarized tensor as TF stores it: strings in ``string_val`` (AsProtoField), every other dtype as raw
    little-endian ``tensor_content`` (AsProtoTensorContent)."""
    from jaxsm._proto import tensor_pb2

    strings = dtypes.is_strings(tensor)
    x = _strings(ctx, tensor, "the tensor") if strings else np.asarray(ctx.static(tensor, "the summarized tensor"))
    proto = tensor_pb2.TensorProto(dtype=int(ctx.attr("T")))
    proto.tensor_shape.SetInParent()
    for d in x.shape:
        proto.tensor_shape.dim.add(size=d)
    if strings:
        proto.string_val.extend(x.reshape(-1).tolist())
    elif x.size:
        proto.tensor_content = np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<")).tobytes()
    return proto.SerializeToString()


@op("TensorSummaryV2")
def tensor_summary_v2(ctx, tag, tensor, serialized_summary_metadata):
    tag = _strings(ctx, tag, "the tag")
    metadata = _strings(ctx, serialized_summary_metadata, "the summary metadata")
    value = _bytes_field(1, tag.reshape(-1)[0]) + _message_field(8, _tensor_proto(ctx, tensor))
    return _summary([value + _message_field(9, metadata.reshape(-1)[0])])


@op("TensorSummary")
def tensor_summary(ctx, tensor):
    """The deprecated v1 op: no tag; the value names the node instead (its description/labels attrs are dropped,
    as TF's kernel does)."""
    return _summary([_bytes_field(7, ctx.node.name.encode()) + _message_field(8, _tensor_proto(ctx, tensor))])


# -- MergeSummary ----------------------------------------------------------------------------------------------------
@op("MergeSummary")
def merge_summary(ctx, *inputs):
    """The values of every input Summary, in order; a non-empty tag seen twice is an error."""
    values, tags = [], set()
    for x in inputs:
        for data in _strings(ctx, x, "the summaries").reshape(-1).tolist():
            try:
                entries = [v for n, w, v in _fields(data) if n == 1 and w == 2]
                tag = [[t for n, w, t in _fields(v) if n == 1 and w == 2] for v in entries]
            except ValueError:
                raise ctx.error("Could not parse one of the summary inputs") from None
            for value, found in zip(entries, tag):
                name = found[-1] if found else b""
                if name and name in tags:
                    raise ctx.error(f"Duplicate tag {name.decode(errors='replace')} found in summary inputs")
                tags.add(name)
                values.append(value)
    return _summary(values)
