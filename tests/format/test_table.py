"""The LevelDB table reader, on tables written by the test writer (conftest.py) and by TF."""

from __future__ import annotations

import struct

import pytest

from jaxsm.errors import ChecksumError, CorruptFileError
from jaxsm.format.table import FOOTER_SIZE, Table, crc32c, mask_crc, read_table, unmask_crc


def _entries(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"layer_{i:05d}/kernel".encode(), bytes([i % 251]) * (i % 40)) for i in range(n)]


def test_crc32c_is_castagnoli_and_mask_roundtrips():
    assert crc32c(b"123456789") == 0xE3069283, "crc32c check value"
    for c in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask_crc(mask_crc(c)) == c, f"unmask(mask({c:#x}))"
    assert mask_crc(0) == 0xA282EAD8, "mask(0)"


@pytest.mark.parametrize("snappy", [False, True], ids=["raw", "snappy"])
@pytest.mark.parametrize("restart_interval", [1, 16])
def test_roundtrip_many_blocks(tmp_path, writer, snappy, restart_interval):
    entries = _entries(3000)
    path = tmp_path / "t.index"
    writer.write_table(path, entries, block_size=2048, snappy=snappy, restart_interval=restart_interval)
    table = Table(path)
    assert len(table.index_handles()) > 10, "the table should span many data blocks"
    assert read_table(path) == entries, "entries read back"


def test_empty_table(tmp_path, writer):
    path = tmp_path / "t.index"
    writer.write_table(path, [])
    assert read_table(path) == [], "entries of an empty table"


def test_flipped_block_byte_is_a_checksum_error(tmp_path, writer):
    path = tmp_path / "t.index"
    writer.write_table(path, _entries(500), block_size=1024)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="t.index"):
        read_table(path)
    # Without verification the damage goes unnoticed or surfaces as a structural error, never a crash.
    try:
        read_table(path, verify=False)
    except CorruptFileError:
        pass


@pytest.mark.parametrize(
    "damage",
    [
        "empty",
        "short",
        "bad_magic",
        "truncated",
        "index_handle_past_end",
        "huge_handle_varint",
        "no_terminator",
    ],
)
def test_damaged_footer_or_handles(tmp_path, writer, damage):
    path = tmp_path / "t.index"
    writer.write_table(path, _entries(200), block_size=1024)
    data = bytearray(path.read_bytes())
    footer = len(data) - FOOTER_SIZE
    if damage == "empty":
        data = bytearray()
    elif damage == "short":
        data = data[-20:]
    elif damage == "bad_magic":
        data[-1] ^= 0xFF
    elif damage == "truncated":
        data = data[: len(data) // 2] + data[-FOOTER_SIZE:]
    elif damage == "index_handle_past_end":
        handles = writer.varint(0) + writer.varint(8) + writer.varint(10**12) + writer.varint(10**12)
        data[footer : footer + 40] = handles + b"\0" * (40 - len(handles))
    elif damage == "huge_handle_varint":
        data[footer : footer + 40] = b"\xff" * 40
    elif damage == "no_terminator":
        data = data[:-FOOTER_SIZE] + b"\x80" * 40 + writer.MAGIC_BYTES
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="t.index"):
        read_table(path)


def _table_with_block(tmp_path, writer, block: bytes) -> str:
    """A table whose single data block has the given (possibly malformed) contents."""
    out = bytearray()

    def emit(contents: bytes) -> bytes:
        handle = writer.varint(len(out)) + writer.varint(len(contents))
        out.extend(contents + b"\0" + struct.pack("<I", mask_crc(crc32c(b"\0", crc32c(contents)))))
        return handle

    data_handle = emit(block)
    meta = emit(writer.build_block([]))
    index = emit(writer.build_block([(b"z", data_handle)]))
    footer = meta + index
    out += footer + b"\0" * (40 - len(footer)) + writer.MAGIC_BYTES
    path = tmp_path / "t.index"
    path.write_bytes(bytes(out))
    return str(path)


@pytest.mark.parametrize(
    "block",
    [
        b"",  # no restart count
        b"\x00\x00\x00",  # too short for a restart count
        struct.pack("<I", 10**6),  # lying restart count
        b"\x00\x05\x01ab" + struct.pack("<II", 0, 1),  # key runs past the block
        b"\x00\x01\x7fa" + struct.pack("<II", 0, 1),  # value runs past the block
        b"\x03\x01\x00a" + struct.pack("<II", 0, 1),  # shares more bytes than the previous key has
        b"\x00\x01\x00b\x00\x01\x00a" + struct.pack("<II", 0, 1),  # keys out of order
        b"\x00\x01\x00a\x00\x01\x00a" + struct.pack("<II", 0, 1),  # duplicate key
        b"\x00\x01\x00a" + struct.pack("<II", 2, 1),  # restart point inside an entry
        b"\x00\x01\x00a\x01\x01\x00b" + struct.pack("<III", 0, 4, 2),  # restart entry shares a prefix
        b"\xff\xff\xff\xff\xff\xff" + struct.pack("<II", 0, 1),  # endless varint
    ],
)
def test_malformed_block_contents(tmp_path, writer, block):
    path = _table_with_block(tmp_path, writer, block)
    with pytest.raises(CorruptFileError, match="t.index"):
        read_table(path)


def test_unknown_block_type(tmp_path, writer):
    path = tmp_path / "t.index"
    writer.write_table(path, _entries(3))
    table = Table(path, verify=False)
    handle = table.index_handles()[0][1]
    data = bytearray(path.read_bytes())
    data[handle.offset + handle.size] = 7
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="unknown block type 7"):
        read_table(path, verify=False)


def test_lying_snappy_length_is_refused_before_allocating(tmp_path, writer):
    path = tmp_path / "t.index"
    writer.write_table(path, _entries(3))
    table = Table(path)
    body = writer.varint(2**31) + b"\x00" * 8  # claims 2 GiB from 13 bytes
    with pytest.raises(CorruptFileError, match="claims"):
        table._snappy(body, table.footer.index, "block")
    with pytest.raises(CorruptFileError, match="snappy"):
        table._snappy(writer.varint(20) + b"\xff" * 12, table.footer.index, "block")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.index"):
        read_table(tmp_path / "nope.index")


@pytest.mark.tf
def test_reads_tf_index_with_many_blocks(tmp_path):
    tf = pytest.importorskip("tensorflow")
    names = [f"{i:05d}/{'w' * 200}" for i in range(1500)]
    prefix = str(tmp_path / "ckpt")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(float(i)) for i in range(len(names))],
    )
    table = Table(prefix + ".index")
    assert len(table.index_handles()) > 1, "TF's index should span several data blocks"
    keys = [k for k, _ in table]
    assert keys == [b""] + sorted(n.encode() for n in names), "keys of TF's index"
