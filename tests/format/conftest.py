"""A minimal LevelDB table and tensor-bundle *writer*, so format tests can build exact files without TF."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cramjam
import numpy as np
import pytest

from jaxsm import dtypes
from jaxsm._proto import tensor_bundle_pb2, tensor_shape_pb2
from jaxsm.format.bundle import data_file_name, slice_key
from jaxsm.format.table import TABLE_MAGIC, crc32c, mask_crc

MAGIC_BYTES = struct.pack("<II", TABLE_MAGIC & 0xFFFFFFFF, TABLE_MAGIC >> 32)


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def build_block(entries: list[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    out = bytearray()
    restarts = []
    prev = b""
    for i, (key, value) in enumerate(entries):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = 0
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        prev = key
    if not restarts:
        restarts.append(0)
    out += struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def write_table(
    path: Path,
    entries: list[tuple[bytes, bytes]],
    block_size: int = 4096,
    snappy: bool = False,
    restart_interval: int = 16,
) -> None:
    """Write ``entries`` (sorted by key) as a LevelDB table with data blocks of about ``block_size`` bytes."""
    out = bytearray()

    def emit(contents: bytes) -> bytes:
        btype = 0
        if snappy:
            contents, btype = bytes(cramjam.snappy.compress_raw(contents)), 1
        handle = varint(len(out)) + varint(len(contents))
        out.extend(contents + bytes([btype]) + struct.pack("<I", mask_crc(crc32c(bytes([btype]), crc32c(contents)))))
        return handle

    index = []
    pending: list[tuple[bytes, bytes]] = []
    size = 0
    for key, value in entries:
        pending.append((key, value))
        size += len(key) + len(value) + 3
        if size >= block_size:
            index.append((key, emit(build_block(pending, restart_interval))))
            pending, size = [], 0
    if pending:
        index.append((pending[-1][0], emit(build_block(pending, restart_interval))))
    metaindex = emit(build_block([]))
    index_handle = emit(build_block(index, 1))
    footer = metaindex + index_handle
    out += footer + b"\0" * (40 - len(footer)) + MAGIC_BYTES
    path.write_bytes(bytes(out))


def string_tensor_bytes(values: list[bytes], byteorder: str = "<") -> tuple[bytes, int]:
    """TF's on-disk string tensor layout and its (unmasked) crc32c."""
    lengths = b"".join(varint(len(v)) for v in values)
    crc = crc32c(b"".join(struct.pack(byteorder + "I", len(v)) for v in values))
    length_crc = struct.pack(byteorder + "I", mask_crc(crc))
    body = b"".join(values)
    return lengths + length_crc + body, crc32c(body, crc32c(length_crc, crc))


def raw_bytes(arr: np.ndarray, byteorder: str = "<") -> bytes:
    """A numeric array's bytes in ``byteorder`` (the host is little-endian)."""
    arr = np.ascontiguousarray(arr)
    if byteorder == "<" or arr.dtype.itemsize == 1:
        return arr.tobytes()
    unit = arr.dtype.itemsize // 2 if arr.dtype.kind == "c" else arr.dtype.itemsize
    return arr.view(f"u{unit}").byteswap().tobytes()


def write_bundle(
    prefix: Path,
    tensors: dict[str, np.ndarray],
    num_shards: int = 1,
    byteorder: str = "<",
    slices: dict[str, list[tuple[tuple[int, int], ...]]] | None = None,
    **table_kwargs: Any,
) -> dict[bytes, tensor_bundle_pb2.BundleEntryProto]:
    """Write a tensor bundle; ``slices`` maps a name to the (start, length) extents of its partitions
    (length -1 = the whole dimension). Returns the entries written, by key."""
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    shards = [bytearray() for _ in range(num_shards)]
    entries: dict[bytes, tensor_bundle_pb2.BundleEntryProto] = {}

    def new_entry(arr: np.ndarray) -> tensor_bundle_pb2.BundleEntryProto:
        entry = tensor_bundle_pb2.BundleEntryProto(dtype=dtypes.from_numpy(arr.dtype))
        entry.shape.dim.extend([tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in arr.shape])
        return entry

    def add(key: bytes, arr: np.ndarray, shard: int) -> None:
        if arr.dtype == object:
            data, crc = string_tensor_bytes(list(arr.reshape(-1)), byteorder)
        else:
            data = raw_bytes(arr, byteorder)
            crc = crc32c(data)
        entry = new_entry(arr)
        entry.shard_id = shard
        entry.offset = len(shards[shard])
        entry.size = len(data)
        entry.crc32c = mask_crc(crc)
        shards[shard] += data
        entries[key] = entry

    for i, (name, arr) in enumerate(tensors.items()):
        arr = np.asarray(arr)
        key = name.encode()
        parts = (slices or {}).get(name)
        if parts is None:
            add(key, arr, i % num_shards)
            continue
        full = new_entry(arr)
        for j, extents in enumerate(parts):
            proto = full.slices.add()
            index = []
            for (start, length), dim in zip(extents, arr.shape, strict=True):
                ext = proto.extent.add()
                if length == -1:
                    index.append(slice(0, dim))
                else:
                    ext.start, ext.length = start, length
                    index.append(slice(start, start + length))
            add(slice_key(key, extents), np.ascontiguousarray(arr[tuple(index)]), j % num_shards)
        entries[key] = full
    header = tensor_bundle_pb2.BundleHeaderProto(num_shards=num_shards, endianness=0 if byteorder == "<" else 1)
    header.version.producer = 1
    items = [(b"", header.SerializeToString())]
    items += [(k, entries[k].SerializeToString()) for k in sorted(entries)]
    write_table(Path(str(prefix) + ".index"), items, **table_kwargs)
    for i, data in enumerate(shards):
        Path(data_file_name(str(prefix), i, num_shards)).write_bytes(bytes(data))
    return entries


@pytest.fixture
def writer() -> SimpleNamespace:
    """Hand-written table/bundle writers (see the module docstring)."""
    return SimpleNamespace(
        varint=varint,
        build_block=build_block,
        write_table=write_table,
        write_bundle=write_bundle,
        string_tensor_bytes=string_tensor_bytes,
        raw_bytes=raw_bytes,
        MAGIC_BYTES=MAGIC_BYTES,
    )
