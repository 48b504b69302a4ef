"""Reader of the LevelDB-style table behind a tensor bundle's ``.index`` file.

Layout (TF's ``tensorflow/core/lib/io/{format,block,table}.cc``): data blocks, a metaindex block, an index
block, then a 48-byte footer. The index block maps separator keys to the handles of the data blocks; every
data block is read, in order. Every length and offset read from the file is checked against the file's size
before use, so a lying file raises :class:`~jaxsm.errors.CorruptFileError` instead of allocating or hanging.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import cramjam
import google_crc32c
import numpy as np

from jaxsm.errors import CheckpointNotFoundError, ChecksumError, CorruptFileError

FOOTER_SIZE = 48
TABLE_MAGIC = 0xDB4775248B80FB57
BLOCK_TRAILER_SIZE = 5  # 1 type byte + fixed32 masked crc32c
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1

_MASK_DELTA = 0xA282EAD8
# Snappy's densest element (a 3-byte copy of 64 bytes) bounds the ratio; anything above this is a lie.
_MAX_SNAPPY_RATIO = 24


def crc32c(data: bytes | np.ndarray, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, extending ``crc``; ``data`` may be a uint8 view of an mmap."""
    return google_crc32c.extend(crc, data) if crc else google_crc32c.value(data)


def mask_crc(crc: int) -> int:
    """LevelDB's crc mask (stored checksums are masked so that crcs of crcs stay well distributed)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Inverse of :func:`mask_crc`."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def read_varint(buf: bytes, pos: int, limit: int, what: str, path: str, max_bytes: int = 10) -> tuple[int, int]:
    """Decode a little-endian base-128 varint at ``buf[pos:limit]``; returns (value, next position)."""
    result = 0
    shift = 0
    for i in range(pos, min(limit, pos + max_bytes)):
        b = buf[i]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i + 1
        shift += 7
    raise CorruptFileError(f"{path}: malformed or truncated varint in {what} at byte {pos}")


@dataclass(frozen=True)
class BlockHandle:
    """Where a block lives in the table file; ``size`` excludes the 5-byte trailer."""

    offset: int
    size: int


@dataclass(frozen=True)
class Footer:
    metaindex: BlockHandle
    index: BlockHandle


def _decode_handle(buf: bytes, pos: int, limit: int, what: str, path: str) -> tuple[BlockHandle, int]:
    offset, pos = read_varint(buf, pos, limit, what, path)
    size, pos = read_varint(buf, pos, limit, what, path)
    return BlockHandle(offset, size), pos


class Table:
    """A whole table file held in memory (index files are small: ~100 bytes per checkpoint key).

    **Arguments:** ``path`` of the file (used in messages and to read it unless ``data`` is given),
    ``verify``: check each block's masked crc32c.
    """

    def __init__(self, path: str | os.PathLike[str], data: bytes | None = None, *, verify: bool = True):
        self.path = os.fspath(path)
        if data is None:
            try:
                with open(self.path, "rb") as f:
                    data = f.read()
            except FileNotFoundError as e:
                raise CheckpointNotFoundError(f"{self.path}: no such file") from e
            except OSError as e:
                raise CorruptFileError(f"{self.path}: cannot read table file: {e}") from e
        self.data = data
        self.verify = verify
        self.footer = self._read_footer()
        # Nothing lives in the metaindex (TF writes no filters), but reading it catches a damaged table early.
        for _ in self.block_entries(self.read_block(self.footer.metaindex, "metaindex block"), "metaindex block"):
            pass

    def _read_footer(self) -> Footer:
        n = len(self.data)
        if n < FOOTER_SIZE:
            raise CorruptFileError(
                f"{self.path}: file is too short to be a table ({n} bytes; the footer alone is {FOOTER_SIZE})"
            )
        start = n - FOOTER_SIZE
        lo, hi = struct.unpack_from("<II", self.data, n - 8)
        if (hi << 32) | lo != TABLE_MAGIC:
            raise CorruptFileError(
                f"{self.path}: not a table (bad magic number {self.data[n - 8 :].hex()}); truncated or "
                "not an index file"
            )
        metaindex, pos = _decode_handle(self.data, start, n - 8, "footer", self.path)
        index, pos = _decode_handle(self.data, pos, n - 8, "footer", self.path)
        # Writers zero-pad the handles to 40 bytes; anything else there means the footer is damaged.
        if any(self.data[pos : n - 8]):
            raise CorruptFileError(f"{self.path}: the table footer's padding is not zero; the footer is corrupt")
        return Footer(metaindex, index)

    def read_block(self, handle: BlockHandle, what: str = "block") -> bytes:
        """Return the (decompressed) contents of one block, after checking bounds, type and crc."""
        end = handle.offset + handle.size + BLOCK_TRAILER_SIZE
        if end > len(self.data) - FOOTER_SIZE:
            raise CorruptFileError(
                f"{self.path}: {what} at offset {handle.offset} with size {handle.size} extends past the end "
                f"of the table data ({len(self.data) - FOOTER_SIZE} bytes); the file is truncated or corrupt"
            )
        contents = self.data[handle.offset : handle.offset + handle.size]
        btype = self.data[handle.offset + handle.size]
        if self.verify:
            (stored,) = struct.unpack_from("<I", self.data, handle.offset + handle.size + 1)
            actual = crc32c(bytes([btype]), crc32c(contents))
            if unmask_crc(stored) != actual:
                raise ChecksumError(
                    f"{self.path}: {what} at offset {handle.offset} fails its crc32c check "
                    f"(stored {unmask_crc(stored):#010x}, computed {actual:#010x}); the file is corrupt"
                )
        if btype == NO_COMPRESSION:
            return contents
        if btype == SNAPPY_COMPRESSION:
            return self._snappy(contents, handle, what)
        raise CorruptFileError(f"{self.path}: {what} at offset {handle.offset} has unknown block type {btype}")

    def _snappy(self, contents: bytes, handle: BlockHandle, what: str) -> bytes:
        length, _ = read_varint(contents, 0, len(contents), f"snappy header of {what}", self.path, 5)
        if length > _MAX_SNAPPY_RATIO * len(contents) + 64:
            raise CorruptFileError(
                f"{self.path}: snappy {what} at offset {handle.offset} claims {length} uncompressed bytes "
                f"from {len(contents)} compressed bytes"
            )
        try:
            out = bytes(cramjam.snappy.decompress_raw(contents))
        except Exception as e:  # cramjam raises its own DecompressionError type
            raise CorruptFileError(
                f"{self.path}: cannot decompress snappy {what} at offset {handle.offset}: {e}"
            ) from e
        if len(out) != length:
            raise CorruptFileError(f"{self.path}: snappy {what} at offset {handle.offset} has the wrong length")
        return out

    def block_entries(self, block: bytes, what: str = "block") -> Iterator[tuple[bytes, bytes]]:
        """Decode the prefix-compressed (key, value) entries of one block's contents."""
        path = self.path
        n = len(block)
        if n < 4:
            raise CorruptFileError(f"{path}: {what} is too short ({n} bytes) to hold its restart count")
        (num_restarts,) = struct.unpack_from("<I", block, n - 4)
        if num_restarts > (n - 4) // 4:
            raise CorruptFileError(f"{path}: {what} claims {num_restarts} restart points in {n} bytes")
        limit = n - 4 - 4 * num_restarts
        restarts = struct.unpack_from(f"<{num_restarts}I", block, limit)
        next_restart = 0
        key = b""
        pos = 0
        while pos < limit:
            start = pos
            if pos + 3 <= limit and block[pos] < 128 and block[pos + 1] < 128 and block[pos + 2] < 128:
                shared, non_shared, value_len = block[pos], block[pos + 1], block[pos + 2]
                pos += 3
            else:
                shared, pos = read_varint(block, pos, limit, what, path, 5)
                non_shared, pos = read_varint(block, pos, limit, what, path, 5)
                value_len, pos = read_varint(block, pos, limit, what, path, 5)
            if shared > len(key) or pos + non_shared + value_len > limit:
                raise CorruptFileError(f"{path}: bad entry in {what} at byte {start} (lengths exceed the block)")
            # Restart points are where key compression resets; a mismatch means the block is corrupt.
            if next_restart < num_restarts and restarts[next_restart] == start:
                if shared != 0:
                    raise CorruptFileError(f"{path}: entry at restart point {start} of {what} shares a prefix")
                next_restart += 1
            key = key[:shared] + block[pos : pos + non_shared]
            pos += non_shared
            yield key, block[pos : pos + value_len]
            pos += value_len
        # An empty block still has LevelDB's single restart point at offset 0.
        if next_restart != num_restarts and not (limit == 0 and restarts == (0,)):
            raise CorruptFileError(f"{path}: {what} has restart points that do not start entries")

    def index_handles(self) -> list[tuple[bytes, BlockHandle]]:
        """The index block's (separator key, data block handle) pairs."""
        index = self.read_block(self.footer.index, "index block")
        out = []
        for sep, value in self.block_entries(index, "index block"):
            handle, _ = _decode_handle(value, 0, len(value), "index block entry", self.path)
            out.append((sep, handle))
        return out

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of every data block, in key order; raises on unsorted keys."""
        prev: bytes | None = None
        for i, (_, handle) in enumerate(self.index_handles()):
            what = f"data block {i}"
            for key, value in self.block_entries(self.read_block(handle, what), what):
                if prev is not None and key <= prev:
                    raise CorruptFileError(f"{self.path}: keys out of order in {what}: {prev!r} then {key!r}")
                prev = key
                yield key, value


def read_table(path: str | os.PathLike[str], verify: bool = True) -> list[tuple[bytes, bytes]]:
    """Read every (key, value) pair of a table file, in key order.

    **Arguments:** ``path``: the table file (e.g. ``variables/variables.index``); ``verify``: check the
    masked crc32c of every block.

    **Returns:** the list of (key, value) byte pairs.

    Raises :class:`~jaxsm.errors.CorruptFileError` (or its subclass ``ChecksumError``) naming the file when
    the table is truncated, has a bad magic number or lying lengths, and ``FileNotFoundError`` when absent.
    """
    return list(Table(path, verify=verify))
