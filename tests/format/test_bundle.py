"""The tensor-bundle checkpoint reader and load_checkpoint.

TF-free tests use the hand-written writer in conftest.py; TF-oracle tests compare with
``tf.train.load_checkpoint`` on checkpoints TF writes into tmp dirs.
"""

from __future__ import annotations

import mmap
import os
import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from jaxsm import dtypes
from jaxsm._proto import tensor_bundle_pb2
from jaxsm.errors import (
    CheckpointKeyError,
    CheckpointNotFoundError,
    ChecksumError,
    CorruptFileError,
    FormatError,
    MissingShardError,
)
from jaxsm.format.bundle import CheckpointReader, check, slice_key
from jaxsm.format.checkpoint import load_checkpoint
from jaxsm.format.table import read_table

RNG = np.random.default_rng(0)
NUMERIC_DTYPES = [
    np.float32,
    np.float64,
    np.float16,
    ml_dtypes.bfloat16,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
    np.complex64,
    np.complex128,
]
LONG = bytes(range(256)) * 1200  # > 2**16, so its varint length takes 3 bytes


def random_array(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """Random bit patterns (NaN payloads included): reading must be bit-exact."""
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return RNG.integers(0, 2, size=shape).astype(np.bool_)
    return np.frombuffer(RNG.bytes(int(np.prod(shape)) * dt.itemsize), dt).reshape(shape).copy()


def sample_tensors() -> dict[str, np.ndarray]:
    out = {}
    for dt in NUMERIC_DTYPES:
        name = np.dtype(dt).name
        out[f"{name}/matrix"] = random_array(dt, (3, 5))
        out[f"{name}/scalar"] = random_array(dt, ())
        out[f"{name}/empty"] = random_array(dt, (0, 3))
    out["string/vector"] = np.array([b"a", b"", LONG, b"\x00\xff", b"x" * 200], dtype=object)
    out["string/scalar"] = np.array(b"scalar", dtype=object)
    out["string/empty_strings"] = np.array([[b"", b""], [b"", b""]], dtype=object)
    out["string/empty"] = np.empty((0, 3), dtype=object)
    out["big"] = random_array(np.float32, (600, 1000))  # 2.4 MB
    return out


def assert_same_value(actual: object, expected: object, what: str) -> None:
    assert type(actual) is type(expected), f"{what}: type {type(actual)} != {type(expected)}"
    if isinstance(expected, bytes):
        assert actual == expected, f"{what}: bytes differ"
        return
    expected_arr, actual_arr = np.asarray(expected), np.asarray(actual)
    assert actual_arr.dtype == expected_arr.dtype, f"{what}: dtype {actual_arr.dtype} != {expected_arr.dtype}"
    assert actual_arr.shape == expected_arr.shape, f"{what}: shape {actual_arr.shape} != {expected_arr.shape}"
    if expected_arr.dtype == object:
        assert actual_arr.tolist() == expected_arr.tolist(), f"{what}: strings differ"
    else:
        assert actual_arr.tobytes() == expected_arr.tobytes(), f"{what}: bytes differ"


def expected_value(arr: np.ndarray) -> object:
    """What get_tensor returns for a stored array (TF's convention: scalars unwrap)."""
    return arr[()] if arr.ndim == 0 else arr


# --- TF-free: hand-written bundles ------------------------------------------------------------------------


@pytest.mark.parametrize("byteorder", ["<", ">"], ids=["little", "big"])
@pytest.mark.parametrize("num_shards", [1, 3])
def test_handwritten_bundle_roundtrip(tmp_path, writer, byteorder, num_shards):
    tensors = sample_tensors()
    writer.write_bundle(tmp_path / "ckpt", tensors, num_shards=num_shards, byteorder=byteorder, block_size=512)
    reader = CheckpointReader(tmp_path / "ckpt")
    assert reader.keys() == sorted(tensors), "keys"
    assert len(reader) == len(tensors) and list(reader) == reader.keys(), "len/iter"
    assert "big" in reader and reader.has_tensor(b"big") and "nope" not in reader, "contains"
    assert reader.get_variable_to_shape_map() == {k: list(v.shape) for k, v in tensors.items()}, "shape map"
    assert reader.get_variable_to_dtype_map() == {k: v.dtype for k, v in tensors.items()}, "dtype map"
    for name, arr in tensors.items():
        assert_same_value(reader.get_tensor(name), expected_value(arr), name)
    assert check(tmp_path / "ckpt") == [], "check() of a healthy checkpoint"


def test_numeric_tensors_are_read_only_mmap_views(tmp_path, writer):
    writer.write_bundle(tmp_path / "ckpt", {"w": np.arange(1000, dtype=np.float32)})
    arr = CheckpointReader(tmp_path / "ckpt").get_tensor("w")
    assert not arr.flags.writeable, "returned arrays are read-only"
    assert not arr.flags.owndata, "returned arrays are views, not copies"
    base = arr
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    assert isinstance(base, mmap.mmap), f"array memory should come from an mmap, not {type(base)}"


def test_handwritten_partitioned_variables(tmp_path, writer):
    emb = random_array(np.float32, (10, 4))
    cube = random_array(np.int64, (2, 6, 3))
    words = np.array([b"a", b"bb", b"", b"dddd", b"e"], dtype=object)
    slices = {
        "emb": [((0, 4), (0, -1)), ((4, 3), (0, -1)), ((7, 3), (0, -1))],
        "cube": [((0, -1), (0, 2), (0, 3)), ((0, -1), (2, 4), (0, 3))],
        "words": [((0, 2),), ((2, 3),)],
    }
    entries = writer.write_bundle(
        tmp_path / "ckpt", {"emb": emb, "cube": cube, "words": words, "plain": emb}, 2, slices=slices
    )
    assert sum(k.startswith(b"\x00") for k in entries) == 7, "slice keys written"
    reader = CheckpointReader(tmp_path / "ckpt")
    assert reader.keys() == ["cube", "emb", "plain", "words"], "slice keys are hidden"
    assert reader.get_variable_to_shape_map()["cube"] == [2, 6, 3], "full shape of a partitioned variable"
    for name, arr in {"emb": emb, "cube": cube, "words": words}.items():
        assert_same_value(reader.get_tensor(name), arr, name)
    assert check(tmp_path / "ckpt") == [], "check() of a partitioned checkpoint"


def test_slice_key_encoding():
    # Bytes TF 2.21 wrote for slice [0:4, 0:5] of variable "emb" (tf.compat.v1.fixed_size_partitioner).
    assert slice_key(b"emb", [(0, 4), (0, 5)]) == b"\x00emb\x00\x01\x01\x02\x80\x84\x80\x85", "TF slice key"
    assert slice_key(b"a\x00b\xff", [(0, -1)]) == b"\x00a\x00\xffb\xff\x00\x00\x01\x01\x01\x80\x7f", "escapes"
    # OrderedCode's signed numbers sort bytewise in numeric order, across every encoding length.
    values = sorted({0, -1, 1, 63, 64, -64, -65, 8191, 8192, -(2**40), 2**40, 2**62, -(2**63), 2**63 - 1})
    keys = [slice_key(b"v", [(v, 1)]) for v in values]
    assert keys == sorted(keys), "signed OrderedCode keeps numeric order"


def _damage(path: Path, offset: int, xor: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= xor
    path.write_bytes(bytes(data))


@pytest.fixture
def small_ckpt(tmp_path, writer) -> tuple[Path, dict[bytes, tensor_bundle_pb2.BundleEntryProto]]:
    tensors = {
        "a": np.arange(100, dtype=np.float32),
        "b": np.arange(50, dtype=np.int64),
        "s": np.array([b"hello", b"world"], dtype=object),
    }
    entries = writer.write_bundle(tmp_path / "ckpt", tensors, num_shards=2)
    return tmp_path / "ckpt", entries


def test_flipped_data_byte_is_a_checksum_error(small_ckpt):
    prefix, entries = small_ckpt
    shard = Path(f"{prefix}.data-00000-of-00002")
    _damage(shard, entries[b"a"].offset + 7)
    reader = CheckpointReader(prefix)
    with pytest.raises(ChecksumError, match=r"data-00000-of-00002.*'a'"):
        reader.get_tensor("a")
    unverified = load_checkpoint(prefix, verify_checksums=False).get_tensor("a")
    assert unverified.shape == (100,), "verify_checksums=False still returns the (damaged) value"
    problems = check(prefix)
    assert [(p.key, Path(p.path).name) for p in problems] == [("a", shard.name)], "check() names key and file"


def test_flipped_string_byte_is_a_checksum_error(small_ckpt):
    prefix, entries = small_ckpt
    shard = Path(f"{prefix}.data-00000-of-00002")  # "s" is the third tensor -> shard 0
    _damage(shard, entries[b"s"].offset + entries[b"s"].size - 1)
    with pytest.raises(ChecksumError, match="'s'"):
        CheckpointReader(prefix).get_tensor("s")
    assert CheckpointReader(prefix, verify_checksums=False).get_tensor("s")[0] == b"hello", "unverified read"


def test_flipped_index_bytes(small_ckpt):
    prefix, _ = small_ckpt
    index = Path(f"{prefix}.index")
    size = index.stat().st_size
    for offset in range(0, size, 7):
        original = index.read_bytes()
        _damage(index, offset, 0xFF)
        with pytest.raises(CorruptFileError, match="ckpt"):
            CheckpointReader(prefix)
        assert check(prefix), f"check() reports the damaged index byte {offset}"
        index.write_bytes(original)


@pytest.mark.parametrize("keep", [0, 10, 47, 60, 0.5])
def test_truncated_index(small_ckpt, keep):
    prefix, _ = small_ckpt
    index = Path(f"{prefix}.index")
    data = index.read_bytes()
    index.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(CorruptFileError, match=r"ckpt\.index"):
        CheckpointReader(prefix)
    assert check(prefix), "check() reports the truncated index"


def test_truncated_data_shard(small_ckpt):
    prefix, entries = small_ckpt
    shard = Path(f"{prefix}.data-00001-of-00002")  # holds "b"
    shard.write_bytes(shard.read_bytes()[:-3])
    reader = CheckpointReader(prefix)
    with pytest.raises(CorruptFileError, match=r"data-00001-of-00002.*'b'.*truncated"):
        reader.get_tensor("b")
    assert [p.key for p in check(prefix)] == ["b"], "check() names the truncated key"


def test_missing_shard(small_ckpt):
    prefix, _ = small_ckpt
    os.remove(f"{prefix}.data-00001-of-00002")
    with pytest.raises(MissingShardError, match=r"ckpt\.data-00001-of-00002"):
        CheckpointReader(prefix)
    problems = check(prefix)
    assert len(problems) == 1 and problems[0].path.endswith("data-00001-of-00002"), "missing shard once"


def _rewrite_entries(tmp_path, writer, prefix: Path, edit) -> None:
    items = read_table(f"{prefix}.index")
    out = []
    for key, value in items:
        if key:
            entry = tensor_bundle_pb2.BundleEntryProto.FromString(value)
            edit(key, entry)
            value = entry.SerializeToString()
        out.append((key, value))
    writer.write_table(Path(f"{prefix}.index"), out)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("offset", 10**12, "claims bytes"),
        ("size", 10**6, "claims bytes"),
        ("size", 8, "need"),
        ("shard_id", 5, "names shard 5"),
        ("dtype", 20, "resource"),
        ("shape", [10**12], "need"),
        ("shape", [-1], "non-concrete"),
    ],
)
def test_lying_entries(tmp_path, writer, small_ckpt, field, value, match):
    prefix, _ = small_ckpt

    def edit(key, entry):
        if key != b"a":
            return
        if field == "shape":
            del entry.shape.dim[:]
            entry.shape.dim.add(size=value[0])
        else:
            setattr(entry, field, value)

    _rewrite_entries(tmp_path, writer, prefix, edit)
    reader = CheckpointReader(prefix)
    if field == "dtype":
        assert reader.get_variable_to_dtype_map()["a"] == np.dtype(object), "dtype map of a resource entry"
    with pytest.raises(FormatError, match=match):
        reader.get_tensor("a")
    assert [p.key for p in check(prefix)] == ["a"], "check() names the lying key"


def test_lying_string_count_does_not_allocate(tmp_path, writer, small_ckpt):
    prefix, _ = small_ckpt

    def edit(key, entry):
        if key == b"s":
            entry.shape.dim[0].size = 10**12

    _rewrite_entries(tmp_path, writer, prefix, edit)
    with pytest.raises(CorruptFileError, match="strings in only"):
        CheckpointReader(prefix).get_tensor("s")


@pytest.mark.parametrize(
    "header,match",
    [
        (tensor_bundle_pb2.BundleHeaderProto(num_shards=0), "num_shards"),
        (tensor_bundle_pb2.BundleHeaderProto(num_shards=1, endianness=7), "endianness"),
        (tensor_bundle_pb2.BundleHeaderProto(num_shards=1, version={"min_consumer": 2}), "version"),
        (tensor_bundle_pb2.BundleHeaderProto(num_shards=1, version={"bad_consumers": [1]}), "version"),
        (None, "header entry"),
        (b"\xff\xff", "cannot parse the bundle header"),
    ],
)
def test_bad_header(tmp_path, writer, header, match):
    items = [] if header is None else [(b"", header if isinstance(header, bytes) else header.SerializeToString())]
    writer.write_table(tmp_path / "ckpt.index", items)
    with pytest.raises(FormatError, match=match):
        CheckpointReader(tmp_path / "ckpt")
    assert check(tmp_path / "ckpt"), "check() reports the bad header"


def test_missing_slice(tmp_path, writer):
    arr = np.arange(12, dtype=np.float32).reshape(4, 3)
    writer.write_bundle(tmp_path / "ckpt", {"p": arr}, slices={"p": [((0, 2), (0, -1)), ((2, 2), (0, -1))]})
    items = [kv for kv in read_table(tmp_path / "ckpt.index") if kv[0] != slice_key(b"p", [(2, 2), (0, -1)])]
    writer.write_table(tmp_path / "ckpt.index", items)
    with pytest.raises(CorruptFileError, match=r"slice 'p\[2:4, 0:3\]'.*missing"):
        CheckpointReader(tmp_path / "ckpt").get_tensor("p")


def test_unknown_key(small_ckpt):
    prefix, _ = small_ckpt
    with pytest.raises(CheckpointKeyError, match=r"'aa' not found.*close matches: \['a'\]") as info:
        CheckpointReader(prefix).get_tensor("aa")
    assert isinstance(info.value, KeyError), "CheckpointKeyError is a KeyError"


# --- load_checkpoint path resolution ----------------------------------------------------------------------


def test_load_checkpoint_paths(tmp_path, writer):
    value = np.arange(3, dtype=np.int32)
    writer.write_bundle(tmp_path / "run" / "ckpt-1", {"v": value})
    writer.write_bundle(tmp_path / "run" / "ckpt-2", {"v": value + 1})
    (tmp_path / "run" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-1"\nall_model_checkpoint_paths: "ckpt-2"\n'
    )
    cases = {
        "prefix": (tmp_path / "run" / "ckpt-1", value),
        ".index": (tmp_path / "run" / "ckpt-1.index", value),
        "data shard": (tmp_path / "run" / "ckpt-1.data-00000-of-00001", value),
        "directory": (tmp_path / "run", value + 1),
    }
    for what, (path, expected) in cases.items():
        np.testing.assert_array_equal(load_checkpoint(path).get_tensor("v"), expected, err_msg=what)
    (tmp_path / "run" / "checkpoint").write_text(f"model_checkpoint_path: '{tmp_path}/run/ckpt-1'\n")
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "run").get_tensor("v"), value, err_msg="absolute")

    writer.write_bundle(tmp_path / "sm" / "variables" / "variables", {"v": value})
    for path in (tmp_path / "sm", tmp_path / "sm" / "variables"):
        assert load_checkpoint(path).prefix == str(tmp_path / "sm" / "variables" / "variables"), str(path)


@pytest.mark.parametrize("case", ["empty_dir", "no_such_path", "stale_state_file", "index_without_state"])
def test_load_checkpoint_not_found(tmp_path, writer, case):
    target = tmp_path / "d"
    target.mkdir()
    match = "couldn't find a checkpoint"
    if case == "no_such_path":
        target, match = tmp_path / "nope", "no checkpoint here"
    elif case == "stale_state_file":
        (target / "checkpoint").write_text('model_checkpoint_path: "ckpt-9"\n')
        match = "names no checkpoint"
    elif case == "index_without_state":
        writer.write_bundle(target / "model", {"v": np.zeros(2)})
        match = "pass a prefix, e.g. .*model"
    with pytest.raises(CheckpointNotFoundError, match=match) as info:
        load_checkpoint(target)
    assert isinstance(info.value, ValueError), "TF raises ValueError here"


def test_v1_checkpoint_is_refused(tmp_path):
    (tmp_path / "model.ckpt").write_bytes(b"\0" * 100)
    with pytest.raises(FormatError, match="V1 checkpoints are not supported"):
        load_checkpoint(tmp_path / "model.ckpt")


# --- TF as the oracle -------------------------------------------------------------------------------------


def compare_with_tf(tf, path: str | Path) -> CheckpointReader:
    expected = tf.train.load_checkpoint(str(path))
    reader = load_checkpoint(path)
    shapes = expected.get_variable_to_shape_map()
    assert reader.get_variable_to_shape_map() == shapes, "shape maps"
    assert reader.get_variable_to_dtype_map() == {
        k: np.dtype(object) if v == tf.string else np.dtype(v.as_numpy_dtype)
        for k, v in expected.get_variable_to_dtype_map().items()
    }, "dtype maps"
    assert sorted(reader.keys()) == sorted(shapes), "keys"
    for name in shapes:
        assert_same_value(reader.get_tensor(name), expected.get_tensor(name), name)
    return reader


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.mark.tf
def test_every_dtype_matches_tf(tmp_path, tf):
    tensors = sample_tensors()
    prefix = str(tmp_path / "ckpt")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=list(tensors),
        shape_and_slices=[""] * len(tensors),
        tensors=[tf.constant(v, dtype=tf.string if v.dtype == object else None) for v in tensors.values()],
    )
    reader = compare_with_tf(tf, prefix)
    for name, arr in tensors.items():
        assert_same_value(reader.get_tensor(name), expected_value(arr), f"{name} vs the saved value")
    assert check(prefix) == [], "check() of TF's checkpoint"


@pytest.mark.tf
def test_many_variables_match_tf(tmp_path, tf):
    # Long, distinct keys make TF's index span several 256 KiB blocks.
    names = [f"{i:05d}/{'layer' * 40}/kernel" for i in range(6000)]
    prefix = str(tmp_path / "ckpt")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant([i, -i], tf.int32) for i in range(len(names))],
    )
    from jaxsm.format.table import Table

    assert len(Table(prefix + ".index").index_handles()) > 1, "index should have several data blocks"
    reader = compare_with_tf(tf, prefix)
    assert len(reader) == 6000, "all variables"


@pytest.mark.tf
def test_tf2_checkpoint_sharded_and_latest(tmp_path, tf):
    module = tf.Module()
    module.big = tf.Variable(random_array(np.float32, (700, 800)))
    module.vars = [tf.Variable(random_array(dt, (20, 30))) for dt in (np.float32, np.float64, np.int64)]
    module.half = tf.Variable(random_array(np.float16, (4,)))
    module.words = tf.Variable(np.array([b"x", b"", LONG], dtype=object))
    ckpt = tf.train.Checkpoint(model=module, step=tf.Variable(7, dtype=tf.int64))
    policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=1_000_000)
    written = ckpt.write(
        str(tmp_path / "sharded" / "ckpt"), tf.train.CheckpointOptions(experimental_sharding_callback=policy)
    )
    reader = compare_with_tf(tf, written)
    assert len(reader.data_files) >= 2, f"expected several data shards, got {reader.data_files}"
    assert isinstance(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"), bytes), "object graph is a scalar string"
    assert check(written) == [], "check() of a sharded checkpoint"

    ckpt.save(str(tmp_path / "run" / "ckpt"))
    module.half.assign(module.half + 1)
    ckpt.save(str(tmp_path / "run" / "ckpt"))
    reader = compare_with_tf(tf, tmp_path / "run")
    assert reader.prefix.endswith("ckpt-2"), f"directory resolves to the latest checkpoint, not {reader.prefix}"


@pytest.mark.tf
def test_tf1_partitioned_variables_match_tf(tmp_path, tf):
    with tf.Graph().as_default():
        emb = tf.compat.v1.get_variable(
            "emb", shape=[11, 5], partitioner=tf.compat.v1.fixed_size_partitioner(3), dtype=tf.float32
        )
        tf.compat.v1.get_variable(
            "cube",
            shape=[4, 7, 3],
            partitioner=tf.compat.v1.fixed_size_partitioner(2, axis=1),
            dtype=tf.float64,
        )
        tf.compat.v1.get_variable("plain", shape=[3], dtype=tf.int32, initializer=tf.compat.v1.ones_initializer())
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            full = sess.run(tf.concat(list(emb), axis=0))
            path = saver.save(sess, str(tmp_path / "model.ckpt"), global_step=3)
    reader = compare_with_tf(tf, tmp_path)
    assert reader.prefix == path, "Saver's checkpoint file names the latest prefix"
    assert reader.keys() == ["cube", "emb", "plain"], "partitioned variables show under their full names"
    assert_same_value(reader.get_tensor("emb"), full, "emb reassembled from its partitions")
    assert check(path) == [], "check() of a partitioned checkpoint"


@pytest.mark.tf
def test_saved_model_variables_match_tf(tmp_path, tf):
    module = tf.Module()
    module.w = tf.Variable(random_array(np.float32, (3, 4)))
    module.f = tf.function(lambda x: x @ module.w, input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "sm"))
    reader = compare_with_tf(tf, tmp_path / "sm" / "variables" / "variables")
    assert load_checkpoint(tmp_path / "sm").prefix == reader.prefix, "SavedModel dir -> variables/variables"


@pytest.mark.tf
def test_tf_checkpoint_corruption(tmp_path, tf):
    tf.raw_ops.SaveV2(
        prefix=str(tmp_path / "ckpt"),
        tensor_names=["a", "b"],
        shape_and_slices=["", ""],
        tensors=[tf.constant(np.arange(1000, dtype=np.float32)), tf.constant(np.arange(10))],
    )
    reader = CheckpointReader(tmp_path / "ckpt")
    entry = reader._entries[b"a"]
    shard = tmp_path / "ckpt.data-00000-of-00001"
    shutil.copy(shard, tmp_path / "orig")
    _damage(shard, entry.offset + 123)
    with pytest.raises(ChecksumError, match=r"ckpt\.data-00000-of-00001: key 'a'"):
        load_checkpoint(tmp_path / "ckpt").get_tensor("a")
    with pytest.raises(tf.errors.OpError, match="Checksum does not match"):  # TF agrees
        tf.train.load_checkpoint(str(tmp_path / "ckpt")).get_tensor("a")
    assert dtypes.from_numpy(load_checkpoint(tmp_path / "ckpt").get_tensor("b").dtype) == dtypes.DT.DT_INT64
