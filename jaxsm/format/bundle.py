"""Tensor-bundle checkpoint reader (TF's ``tensorflow/core/util/tensor_bundle/tensor_bundle.cc`` format).

A checkpoint ``<prefix>`` is ``<prefix>.index`` (a table, see :mod:`jaxsm.format.table`, mapping each key to a
``BundleEntryProto``; key ``""`` holds the ``BundleHeaderProto``) plus data shards
``<prefix>.data-%05d-of-%05d``. Numeric tensors are memory-mapped, not copied; string tensors are decoded into
NumPy object arrays of ``bytes``; partitioned (sliced) variables are reassembled from their slices.
"""

from __future__ import annotations

import difflib
import math
import mmap
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError

from jaxsm import dtypes
from jaxsm._proto import tensor_bundle_pb2, tensor_slice_pb2
from jaxsm.errors import (
    CheckpointKeyError,
    ChecksumError,
    CorruptFileError,
    FormatError,
    JaxsmError,
    MissingShardError,
)
from jaxsm.format.table import Table, crc32c, read_varint, unmask_crc

DT = dtypes.DT
HEADER_KEY = b""
# The reader version this module implements (TF's kTensorBundleVersion); checkpoints may exclude it.
BUNDLE_VERSION = 1
_LITTLE, _BIG = tensor_bundle_pb2.BundleHeaderProto.LITTLE, tensor_bundle_pb2.BundleHeaderProto.BIG


def data_file_name(prefix: str, shard_id: int, num_shards: int) -> str:
    """Path of one data shard: ``<prefix>.data-%05d-of-%05d``."""
    return f"{prefix}.data-{shard_id:05d}-of-{num_shards:05d}"


# --- OrderedCode (tensorflow/core/lib/strings/ordered_code.cc): the key encoding of tensor slices ---------


def _ordered_num_increasing(value: int) -> bytes:
    n = (value.bit_length() + 7) // 8
    return bytes([n]) + value.to_bytes(n, "big")


def _ordered_signed_num_increasing(value: int) -> bytes:
    # n bytes of two's complement whose top n bits are replaced by n one-bits, so byte order = numeric order.
    magnitude = ~value if value < 0 else value
    n = (magnitude.bit_length() + 7) // 7
    header = ((1 << n) - 1) << (7 * n)
    return ((value & ((1 << (8 * n)) - 1)) ^ header).to_bytes(n, "big")


def _ordered_string(s: bytes) -> bytes:
    escaped = re.sub(rb"[\x00\xff]", lambda m: b"\x00\xff" if m.group() == b"\x00" else b"\xff\x00", s)
    return escaped + b"\x00\x01"


def slice_key(name: bytes, extents: Iterable[tuple[int, int]]) -> bytes:
    """The bundle key of one slice of ``name`` (TF's ``checkpoint::EncodeTensorNameSlice``).

    ``extents`` are (start, length) per dimension; a full dimension is (0, -1). Slice keys start with 0x00,
    so they sort before every variable name.
    """
    extents = list(extents)
    out = [_ordered_num_increasing(0), _ordered_string(name), _ordered_num_increasing(len(extents))]
    for start, length in extents:
        out.append(_ordered_signed_num_increasing(start))
        out.append(_ordered_signed_num_increasing(length))
    return b"".join(out)


def _extents(proto: tensor_slice_pb2.TensorSliceProto) -> list[tuple[int, int]]:
    return [(e.start, e.length if e.HasField("length") else -1) for e in proto.extent]


# --- reader ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One integrity problem found by :func:`check`: the file it is in, the key (None for file-level
    problems) and what is wrong."""

    path: str
    key: str | None
    message: str

    def __str__(self) -> str:
        return self.message  # messages already name the file and key


def _key_str(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def normalize_prefix(path: str | os.PathLike[str]) -> str:
    """Accept ``<prefix>``, ``<prefix>.index`` or a data shard path, and return ``<prefix>``."""
    path = os.fsdecode(path)
    if path.endswith(".index") and not os.path.exists(path + ".index"):
        return path[: -len(".index")]
    m = re.fullmatch(r"(.*)\.data-\d{5}-of-\d{5}", path)
    if m and not os.path.exists(path + ".index"):
        return m.group(1)
    return path


class CheckpointReader:
    """Reads a tensor-bundle checkpoint; mirrors the reader returned by ``tf.train.load_checkpoint``.

    **Arguments:**

    - ``prefix``: the checkpoint prefix (``/x/ckpt-1``, i.e. the path without ``.index``).
    - ``verify_checksums``: check the crc32c of every index block at open and of each tensor on
      :meth:`get_tensor` (TF always does).

    Differences from TF: :meth:`get_variable_to_dtype_map` maps to NumPy dtypes (``np.dtype(object)`` for
    strings, ``ml_dtypes.bfloat16`` for bfloat16) instead of ``tf.DType``; big-endian checkpoints are
    byte-swapped instead of refused. Errors are :mod:`jaxsm.errors` subclasses naming the file and key.
    """

    def __init__(self, prefix: str | os.PathLike[str], *, verify_checksums: bool = True):
        self._prefix = normalize_prefix(prefix)
        self._verify = verify_checksums
        index_path = self._prefix + ".index"
        if not os.path.exists(index_path) and os.path.exists(self._prefix) and not os.path.isdir(self._prefix):
            raise FormatError(
                f"{self._prefix}: this is not a tensor-bundle (V2) checkpoint ({index_path} is missing); "
                "V1 checkpoints are not supported, re-save with tf.train.Saver(write_version=V2)"
            )
        self._setup(list(Table(index_path, verify=verify_checksums)))
        for shard_id in range(self._num_shards):
            path = data_file_name(self._prefix, shard_id, self._num_shards)
            if not os.path.exists(path):
                raise MissingShardError(
                    f"{path}: data shard {shard_id} of {self._num_shards} of checkpoint {self._prefix} is missing"
                )

    def _setup(self, items: list[tuple[bytes, bytes]]) -> None:
        self._index_path = self._prefix + ".index"
        self._shards: dict[int, mmap.mmap | bytes] = {}
        if not items or items[0][0] != HEADER_KEY:
            raise CorruptFileError(f"{self._index_path}: the bundle header entry (key '') is missing")
        try:
            header = tensor_bundle_pb2.BundleHeaderProto.FromString(items[0][1])
        except DecodeError as e:
            raise CorruptFileError(f"{self._index_path}: cannot parse the bundle header: {e}") from e
        if header.num_shards < 1:
            raise CorruptFileError(f"{self._index_path}: bundle header has num_shards={header.num_shards}")
        if header.endianness not in (_LITTLE, _BIG):
            raise CorruptFileError(f"{self._index_path}: bundle header has unknown endianness {header.endianness}")
        v = header.version
        if v.min_consumer > BUNDLE_VERSION or BUNDLE_VERSION in v.bad_consumers:
            raise FormatError(
                f"{self._index_path}: checkpoint version (producer {v.producer}, min_consumer "
                f"{v.min_consumer}, bad_consumers {list(v.bad_consumers)}) cannot be read by this reader "
                f"(version {BUNDLE_VERSION})"
            )
        self.header = header
        self._num_shards = header.num_shards
        self._byteorder = "<" if header.endianness == _LITTLE else ">"
        self._entries: dict[bytes, tensor_bundle_pb2.BundleEntryProto] = {}
        for key, value in items[1:]:
            try:
                self._entries[key] = tensor_bundle_pb2.BundleEntryProto.FromString(value)
            except DecodeError as e:
                raise CorruptFileError(
                    f"{self._index_path}: cannot parse the entry of key {_key_str(key)!r}: {e}"
                ) from e
        slice_keys = {slice_key(key, _extents(s)) for key, entry in self._entries.items() for s in entry.slices}
        self._names = {_key_str(k): k for k in self._entries if k not in slice_keys}

    @property
    def prefix(self) -> str:
        """The checkpoint prefix (path without ``.index``)."""
        return self._prefix

    @property
    def data_files(self) -> list[str]:
        """Paths of the data shards, in shard order."""
        return [data_file_name(self._prefix, i, self._num_shards) for i in range(self._num_shards)]

    # --- TF's CheckpointReader API --------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Every variable name, sorted (slice keys and the header are hidden)."""
        return list(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str | bytes) and self.has_tensor(name)

    def has_tensor(self, name: str | bytes) -> bool:
        """Whether ``name`` is a variable in the checkpoint."""
        return (_key_str(name) if isinstance(name, bytes) else name) in self._names

    def get_variable_to_shape_map(self) -> dict[str, list[int]]:
        """Variable name -> full shape as a list (like TF)."""
        return {name: [d.size for d in self._entries[key].shape.dim] for name, key in self._names.items()}

    def get_variable_to_dtype_map(self) -> dict[str, np.dtype]:
        """Variable name -> NumPy dtype (TF returns ``tf.DType``). Strings, and the rare types without a NumPy
        counterpart (variant, resource), map to ``np.dtype(object)``; see
        :meth:`get_variable_to_dtype_enum_map` for the exact TF type."""
        out = {}
        for name, key in self._names.items():
            try:
                out[name] = dtypes.to_numpy(self._entries[key].dtype)
            except KeyError:
                out[name] = np.dtype(object)
        return out

    def get_variable_to_dtype_enum_map(self) -> dict[str, int]:
        """Variable name -> TF ``DataType`` enum value (to tell e.g. qint8 from int8)."""
        return {name: self._entries[key].dtype for name, key in self._names.items()}

    def get_tensor(self, name: str | bytes) -> np.ndarray | np.generic | bytes:
        """The value of variable ``name``.

        Numeric tensors are read-only views of the memory-mapped data shard (big-endian checkpoints: native
        copies); string tensors are object arrays of ``bytes``. Like TF, a scalar comes back as a NumPy scalar
        (or ``bytes`` for a string). Partitioned variables are reassembled into their full value.

        Raises :class:`~jaxsm.errors.CheckpointKeyError` for an unknown name, ``ChecksumError`` when the
        tensor's crc32c does not match (with ``verify_checksums``), ``CorruptFileError`` for entries that
        point outside their shard or disagree with their shape.
        """
        key_name = _key_str(name) if isinstance(name, bytes) else name
        key = self._names.get(key_name)
        if key is None:
            # Fuzzy matching is O(number of keys); skip it where a miss could be a cheap membership probe.
            close = difflib.get_close_matches(key_name, self._names, n=3) if len(self._names) <= 20000 else []
            hint = f"; close matches: {close}" if close else ""
            raise CheckpointKeyError(f"{self._index_path}: key {key_name!r} not found in checkpoint{hint}")
        entry = self._entries[key]
        arr = self._read_sliced(key_name, key, entry) if entry.slices else self._read_entry(key_name, entry)
        if arr.ndim == 0:
            return arr[()]
        return arr

    # --- internals ------------------------------------------------------------------------------------------

    def _dtype(self, name: str, entry: tensor_bundle_pb2.BundleEntryProto) -> np.dtype:
        try:
            return dtypes.to_numpy(entry.dtype)
        except KeyError:
            raise FormatError(
                f"{self._index_path}: key {name!r} has dtype {dtypes.name(entry.dtype)}, which jaxsm cannot "
                "read from a checkpoint"
            ) from None

    def _shape(self, name: str, entry: tensor_bundle_pb2.BundleEntryProto) -> tuple[int, ...]:
        shape = tuple(d.size for d in entry.shape.dim)
        if entry.shape.unknown_rank or any(d < 0 for d in shape):
            raise CorruptFileError(f"{self._index_path}: key {name!r} has a non-concrete shape {list(shape)}")
        return shape

    def _shard(self, name: str, shard_id: int) -> tuple[str, mmap.mmap | bytes]:
        if not 0 <= shard_id < self._num_shards:
            raise CorruptFileError(
                f"{self._index_path}: key {name!r} names shard {shard_id} but the checkpoint has {self._num_shards}"
            )
        path = data_file_name(self._prefix, shard_id, self._num_shards)
        buf = self._shards.get(shard_id)
        if buf is None:
            try:
                with open(path, "rb") as f:
                    # mmap refuses empty files; a shard holding only empty tensors is legal.
                    buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size else b""
            except FileNotFoundError as e:
                raise MissingShardError(
                    f"{path}: data shard {shard_id} of checkpoint {self._prefix} is missing (needed by key {name!r})"
                ) from e
            except OSError as e:
                raise CorruptFileError(f"{path}: cannot read data shard: {e}") from e
            self._shards[shard_id] = buf
        return path, buf

    def _read_entry(self, name: str, entry: tensor_bundle_pb2.BundleEntryProto) -> np.ndarray:
        """The value stored under one (non-sliced) entry, as an array."""
        dtype = self._dtype(name, entry)
        shape = self._shape(name, entry)
        path, buf = self._shard(name, entry.shard_id)
        offset, size = entry.offset, entry.size
        if offset < 0 or size < 0 or offset + size > len(buf):
            raise CorruptFileError(
                f"{path}: key {name!r} claims bytes [{offset}, {offset + size}) but the shard has {len(buf)} "
                "bytes; the shard is truncated or the index is corrupt"
            )
        raw = np.frombuffer(buf, np.uint8, count=size, offset=offset)
        if entry.dtype == DT.DT_STRING:
            return self._read_strings(name, path, entry, shape, raw)
        count = math.prod(shape)
        if size != count * dtype.itemsize:
            raise CorruptFileError(
                f"{path}: key {name!r} has {size} bytes but its shape {list(shape)} and dtype {dtype} need "
                f"{count * dtype.itemsize}"
            )
        if self._verify:
            self._check_crc(name, path, entry, crc32c(raw))
        if self._byteorder == ">" and dtype.itemsize > 1:
            return _byteswapped(raw, dtype).reshape(shape)
        return raw.view(dtype).reshape(shape)

    def _check_crc(self, name: str, path: str, entry: tensor_bundle_pb2.BundleEntryProto, actual: int) -> None:
        stored = unmask_crc(entry.crc32c)
        if stored != actual:
            raise ChecksumError(
                f"{path}: key {name!r} fails its crc32c check (stored {stored:#010x}, computed "
                f"{actual:#010x}); the data shard is corrupt"
            )

    def _read_strings(
        self,
        name: str,
        path: str,
        entry: tensor_bundle_pb2.BundleEntryProto,
        shape: tuple[int, ...],
        raw: np.ndarray,
    ) -> np.ndarray:
        # Layout: varint64 length per element, masked crc32c of the lengths, then the bytes back to back.
        count = math.prod(shape)
        data = raw.tobytes()
        n = len(data)
        if count > n:  # every element needs at least a 1-byte length; refuse before allocating
            raise CorruptFileError(f"{path}: key {name!r} has {count} strings in only {n} bytes")
        lengths = []
        pos = 0
        what = f"string lengths of key {name!r}"
        for _ in range(count):
            length, pos = read_varint(data, pos, n, what, path)
            lengths.append(length)
        if pos + 4 + sum(lengths) != n:
            raise CorruptFileError(
                f"{path}: key {name!r}: string lengths add up to {pos + 4 + sum(lengths)} bytes, entry has {n}"
            )
        bo = self._byteorder
        (stored_lengths_crc,) = struct.unpack_from(bo + "I", data, pos)
        if self._verify:
            # TF hashes each length as a fixed uint32 (uint64 beyond 2**32-1) in the writer's byte order.
            if all(x <= 0xFFFFFFFF for x in lengths):
                hashed = np.asarray(lengths, dtype=bo + "u4").tobytes()
            else:
                hashed = b"".join(struct.pack(bo + ("I" if x <= 0xFFFFFFFF else "Q"), x) for x in lengths)
            crc = crc32c(hashed)
            if unmask_crc(stored_lengths_crc) != crc:
                raise ChecksumError(f"{path}: key {name!r}: the checksum of the string lengths does not match")
            crc = crc32c(data[pos + 4 :], crc32c(data[pos : pos + 4], crc))
            self._check_crc(name, path, entry, crc)
        out = np.empty(count, dtype=object)
        pos += 4
        for i, length in enumerate(lengths):
            out[i] = data[pos : pos + length]
            pos += length
        return out.reshape(shape)

    def _read_sliced(self, name: str, key: bytes, entry: tensor_bundle_pb2.BundleEntryProto) -> np.ndarray:
        """Reassemble a partitioned variable from the slices listed in its full entry."""
        dtype = self._dtype(name, entry)
        shape = self._shape(name, entry)
        pieces = []
        for proto in entry.slices:
            extents = _extents(proto)
            if len(extents) != len(shape):
                raise CorruptFileError(f"{self._index_path}: key {name!r} has a slice of the wrong rank")
            index = []
            for (start, length), dim in zip(extents, shape, strict=True):
                stop = dim if length == -1 else start + length
                if not 0 <= start <= stop <= dim:
                    raise CorruptFileError(
                        f"{self._index_path}: key {name!r}: slice {extents} is outside the shape {list(shape)}"
                    )
                index.append(slice(start, stop))
            skey = slice_key(key, extents)
            sentry = self._entries.get(skey)
            desc = f"{name}[{', '.join(f'{s.start}:{s.stop}' for s in index)}]"
            if sentry is None:
                raise CorruptFileError(f"{self._index_path}: slice {desc!r} of partitioned key {name!r} is missing")
            part = self._read_entry(desc, sentry)
            want = tuple(s.stop - s.start for s in index)
            if part.shape != want or part.dtype != dtype:
                raise CorruptFileError(
                    f"{self._index_path}: slice {desc!r} has shape {list(part.shape)} and dtype "
                    f"{part.dtype}, expected {list(want)} and {dtype}"
                )
            pieces.append((tuple(index), part))
        # The slices were read from disk, so their total size is bounded; only then allocate the full value.
        if sum(p.size for _, p in pieces) != math.prod(shape):
            raise CorruptFileError(f"{self._index_path}: the slices of partitioned key {name!r} do not tile it")
        out = np.empty(shape, dtype=dtype)
        for index, part in pieces:
            out[index] = part
        out.flags.writeable = False
        return out


def _byteswapped(raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A native-order copy of the big-endian bytes ``raw`` (complex numbers swap each part separately)."""
    unit = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
    out = raw.view(np.dtype(f"u{unit}")).byteswap().view(dtype)
    out.flags.writeable = False
    return out


# --- integrity check ---------------------------------------------------------------------------------------


def check(prefix: str | os.PathLike[str]) -> list[Problem]:
    """Verify everything about a checkpoint and return the problems found (empty list = healthy).

    Checks the index table (footer, every block's bounds and crc32c, entry encoding, key order), the bundle
    header, that every data shard exists, and every entry: dtype, shape, bounds inside its shard, size, crc32c
    of its bytes, string layout, and that partitioned variables' slices exist and tile them.
    """
    prefix = normalize_prefix(prefix)
    index_path = prefix + ".index"
    problems: list[Problem] = []
    try:
        table = Table(index_path, verify=True)
        handles = table.index_handles()
    except JaxsmError as e:
        return [Problem(index_path, None, str(e))]
    items: list[tuple[bytes, bytes]] = []
    for i, (_, handle) in enumerate(handles):
        what = f"data block {i}"
        try:
            block = table.read_block(handle, what)
        except ChecksumError as e:
            problems.append(Problem(index_path, None, str(e)))
            table.verify = False
            try:
                block = table.read_block(handle, what)
            except JaxsmError as e2:
                problems.append(Problem(index_path, None, str(e2)))
                continue
            finally:
                table.verify = True
        except JaxsmError as e:
            problems.append(Problem(index_path, None, str(e)))
            continue
        try:
            for key, value in table.block_entries(block, what):
                if items and key <= items[-1][0]:
                    problems.append(Problem(index_path, _key_str(key), f"key out of order in {what}"))
                    continue
                items.append((key, value))
        except JaxsmError as e:
            problems.append(Problem(index_path, None, str(e)))
    reader = CheckpointReader.__new__(CheckpointReader)
    reader._prefix = prefix
    reader._verify = True
    try:
        reader._setup(items)
    except JaxsmError as e:
        return [*problems, Problem(index_path, None, str(e))]
    for path in reader.data_files:
        if not os.path.exists(path):
            problems.append(Problem(path, None, f"{path}: data shard is missing"))
    for name, key in reader._names.items():
        entry = reader._entries[key]
        has_shard = not entry.slices and 0 <= entry.shard_id < reader._num_shards
        path = data_file_name(prefix, entry.shard_id, reader._num_shards) if has_shard else index_path
        try:
            reader.get_tensor(name)
        except MissingShardError:
            pass  # reported once per shard above
        except JaxsmError as e:
            problems.append(Problem(path, name, str(e)))
    return problems
