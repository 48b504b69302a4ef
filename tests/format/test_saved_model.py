"""jaxsm.format.saved_model: reading saved_model.pb/.pbtxt, tag selection, integrity, wire compatibility."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import unknown_fields

from jaxsm._proto import saved_model_pb2
from jaxsm.errors import CorruptFileError, IncompleteSavedModelError, JaxsmError, TagsNotFoundError
from jaxsm.format import saved_model as sm

# ---- fixtures written by TensorFlow (the oracle)


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def tf2_dir(tf, tmp_path_factory) -> Path:
    """A TF2 tf.Module with two signatures and a nested submodule holding a variable."""

    class Sub(tf.Module):
        def __init__(self):
            super().__init__()
            self.v = tf.Variable([1.0, 2.0, 3.0])

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.sub = Sub()

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * self.sub.v}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="ids")])
        def count(self, ids):
            return ids + 1

    model = Model()
    path = tmp_path_factory.mktemp("tf2") / "model"
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve, "count": model.count})
    return path


@pytest.fixture(scope="module")
def tf1_dir(tf, tmp_path_factory) -> Path:
    """A TF1 Builder export with two MetaGraphs, tagged ["serve"] and ["train"]."""
    path = tmp_path_factory.mktemp("tf1") / "model"
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.ones([2, 1]))
        y = tf.matmul(x, w, name="y")
        sess.run(tf.compat.v1.global_variables_initializer())
        sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder = tf.compat.v1.saved_model.Builder(str(path))
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
        builder.add_meta_graph(["train"])
        builder.save()
    return path


def _tf_parse(tf_pb2_module, data: bytes):
    msg = tf_pb2_module.SavedModel()
    msg.ParseFromString(data)
    return msg


# ---- reading


def test_reads_tf2_saved_model_pb(tf, tf2_dir):
    from tensorflow.core.protobuf import saved_model_pb2 as tf_saved_model_pb2

    ours = sm.read_saved_model(tf2_dir)
    theirs = _tf_parse(tf_saved_model_pb2, (tf2_dir / "saved_model.pb").read_bytes())
    assert [list(m.meta_info_def.tags) for m in ours.meta_graphs] == [
        list(m.meta_info_def.tags) for m in theirs.meta_graphs
    ], "tag-sets"
    assert sorted(ours.meta_graphs[0].signature_def) == sorted(theirs.meta_graphs[0].signature_def), "signatures"


def test_wire_compatible_nothing_dropped(tf, tf2_dir):
    from tensorflow.core.protobuf import saved_model_pb2 as tf_saved_model_pb2

    data = (tf2_dir / "saved_model.pb").read_bytes()
    ours = sm.read_saved_model(tf2_dir)
    assert _unknown_field_paths(ours) == [], "fields TF wrote that our schema does not know"
    round_trip = _tf_parse(tf_saved_model_pb2, ours.SerializeToString())
    assert round_trip == _tf_parse(tf_saved_model_pb2, data), "SavedModel after our parse + re-serialize"


def _unknown_field_paths(msg, path: str = "") -> list[str]:
    found = (
        [f"{path or '<root>'}: {len(unknown_fields.UnknownFieldSet(msg))} unknown"]
        if len(unknown_fields.UnknownFieldSet(msg))
        else []
    )
    for field, value in msg.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        sub = f"{path}.{field.name}"
        if field.message_type.GetOptions().map_entry:
            items = value.values() if field.message_type.fields_by_name["value"].message_type else []
            for v in items:
                found += _unknown_field_paths(v, sub)
        elif field.is_repeated:
            for i, v in enumerate(value):
                found += _unknown_field_paths(v, f"{sub}[{i}]")
        else:
            found += _unknown_field_paths(value, sub)
    return found


def test_reads_pbtxt(tf, tf2_dir, tmp_path):
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2 as tf_saved_model_pb2

    theirs = _tf_parse(tf_saved_model_pb2, (tf2_dir / "saved_model.pb").read_bytes())
    (tmp_path / "saved_model.pbtxt").write_text(text_format.MessageToString(theirs))
    ours = sm.read_saved_model(tmp_path)
    assert _tf_parse(tf_saved_model_pb2, ours.SerializeToString()) == theirs, "SavedModel read from pbtxt"


def test_pbtxt_with_expanded_any(tf, tmp_path):
    from google.protobuf import text_format
    from tensorflow.core.framework import tensor_shape_pb2 as tf_tensor_shape_pb2
    from tensorflow.core.protobuf import saved_model_pb2 as tf_saved_model_pb2

    theirs = tf_saved_model_pb2.SavedModel()
    meta = theirs.meta_graphs.add()
    meta.meta_info_def.tags.append("serve")
    meta.meta_info_def.any_info.Pack(tf_tensor_shape_pb2.TensorShapeProto(unknown_rank=True))
    text = text_format.MessageToString(theirs)
    assert "[type.googleapis.com/tensorflow.TensorShapeProto]" in text, "TF writes the Any expanded"
    (tmp_path / "saved_model.pbtxt").write_text(text)
    ours = sm.read_saved_model(tmp_path)
    assert _tf_parse(tf_saved_model_pb2, ours.SerializeToString()) == theirs, "SavedModel with an Any field"


def test_pb_preferred_over_pbtxt(tmp_path):
    _write(tmp_path, _saved_model([["serve"]]))
    (tmp_path / "saved_model.pbtxt").write_text("this is not parsed")
    assert sm.tag_sets(sm.read_saved_model(tmp_path)) == [["serve"]], "tag-sets read from saved_model.pb"


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sm.read_saved_model(tmp_path / "nope")


def test_incomplete_directory(tmp_path):
    (tmp_path / "variables").mkdir()
    with pytest.raises(IncompleteSavedModelError, match="no saved_model.pb.*incomplete.*written last"):
        sm.read_saved_model(tmp_path)


def test_incomplete_is_a_jaxsm_and_file_not_found_error(tmp_path):
    with pytest.raises(JaxsmError):
        sm.read_saved_model(tmp_path)
    with pytest.raises(FileNotFoundError):
        sm.read_saved_model(tmp_path)


def test_empty_file_is_corrupt(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(CorruptFileError, match=r"saved_model\.pb.*0 bytes"):
        sm.read_saved_model(tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_pb_is_corrupt(tf2_dir, tmp_path, keep):
    data = (tf2_dir / "saved_model.pb").read_bytes()
    (tmp_path / "saved_model.pb").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CorruptFileError, match=r"saved_model\.pb"):
        sm.read_saved_model(tmp_path)


def test_garbage_pb_is_corrupt(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\xff" * 64)
    with pytest.raises(CorruptFileError, match=r"saved_model\.pb"):
        sm.read_saved_model(tmp_path)


def test_bad_pbtxt_is_corrupt(tmp_path):
    (tmp_path / "saved_model.pbtxt").write_text("meta_graphs { no_such_field: 1 }")
    with pytest.raises(CorruptFileError, match=r"saved_model\.pbtxt"):
        sm.read_saved_model(tmp_path)


# ---- tags


def _saved_model(tag_sets: list[list[str]]) -> saved_model_pb2.SavedModel:
    msg = saved_model_pb2.SavedModel(saved_model_schema_version=1)
    for tags in tag_sets:
        msg.meta_graphs.add().meta_info_def.tags.extend(tags)
    return msg


def _write(directory: Path, msg: saved_model_pb2.SavedModel) -> Path:
    (directory / "saved_model.pb").write_bytes(msg.SerializeToString())
    return directory


@pytest.mark.parametrize("tags", [None, "serve", ["serve"], {"serve"}, ("serve",)])
def test_single_meta_graph(tf2_dir, tags):
    mg = sm.select_meta_graph(sm.read_saved_model(tf2_dir), tags)
    assert list(mg.meta_info_def.tags) == ["serve"], f"tags of the MetaGraph chosen by tags={tags!r}"


def test_single_meta_graph_wrong_tags(tf2_dir):
    with pytest.raises(TagsNotFoundError, match=r"\['serve'\]"):
        sm.select_meta_graph(sm.read_saved_model(tf2_dir), "train")


def test_tf1_two_meta_graphs_need_tags(tf1_dir):
    saved_model = sm.read_saved_model(tf1_dir)
    with pytest.raises(ValueError, match=r"\['serve'\].*\['train'\]"):
        sm.select_meta_graph(saved_model, None)


@pytest.mark.parametrize("tags,expected", [("serve", ["serve"]), (["train"], ["train"]), ({"serve"}, ["serve"])])
def test_tf1_select_by_tags(tf1_dir, tags, expected):
    mg = sm.select_meta_graph(sm.read_saved_model(tf1_dir), tags)
    assert list(mg.meta_info_def.tags) == expected, f"tags of the MetaGraph chosen by tags={tags!r}"


def test_tf1_serve_meta_graph_has_signature(tf, tf1_dir):
    from tensorflow.core.protobuf import saved_model_pb2 as tf_saved_model_pb2

    theirs = _tf_parse(tf_saved_model_pb2, (tf1_dir / "saved_model.pb").read_bytes())
    expected = {tuple(m.meta_info_def.tags): sorted(m.signature_def) for m in theirs.meta_graphs}
    ours = sm.read_saved_model(tf1_dir)
    for tags, keys in expected.items():
        assert sorted(sm.select_meta_graph(ours, list(tags)).signature_def) == keys, f"signatures of {tags}"


@pytest.mark.parametrize("tags", ["gpu", ["serve", "gpu"], []])
def test_tf1_wrong_tags(tf1_dir, tags):
    with pytest.raises(TagsNotFoundError) as info:
        sm.select_meta_graph(sm.read_saved_model(tf1_dir), tags)
    assert isinstance(info.value, ValueError), "TagsNotFoundError must be a ValueError (TF's contract)"
    assert "['serve']" in str(info.value) and "['train']" in str(info.value), "available tag-sets in message"


def test_multi_tag_set_matches_as_a_set(tmp_path):
    saved_model = _saved_model([["serve"], ["serve", "gpu"]])
    assert list(sm.select_meta_graph(saved_model, ["gpu", "serve"]).meta_info_def.tags) == ["serve", "gpu"]
    assert list(sm.select_meta_graph(saved_model, "serve").meta_info_def.tags) == ["serve"]


def test_load_meta_graph_names_dir(tmp_path):
    _write(tmp_path, _saved_model([["serve"]]))
    with pytest.raises(TagsNotFoundError, match=str(tmp_path)):
        sm.load_meta_graph(tmp_path, "train")


# ---- files and integrity


def test_files_of_tf2_model(tf2_dir):
    files = sm.SavedModelFiles.of(tf2_dir)
    assert files.has_variables, "variables/variables.index exists"
    assert files.variables_prefix == str(tf2_dir / "variables" / "variables")
    assert files.data_shards() == [tf2_dir / "variables" / "variables.data-00000-of-00001"]
    assert sm.find_problems(tf2_dir) == [], "problems of a fresh TF export"


def test_program_only_saved_model_is_fine(tmp_path):
    _write(tmp_path, _saved_model([["serve"]]))
    assert not sm.SavedModelFiles.of(tmp_path).has_variables
    assert sm.find_problems(tmp_path) == []


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_only_shard_is_reported(tf2_dir, tmp_path):
    copy = _copy(tf2_dir, tmp_path / "m")
    (copy / "variables" / "variables.data-00000-of-00001").unlink()
    problems = sm.find_problems(copy)
    assert len(problems) == 1 and "no data shard" in problems[0].message, f"problems: {problems}"


def test_missing_one_of_two_shards_is_reported(tf2_dir, tmp_path):
    copy = _copy(tf2_dir, tmp_path / "m")
    (copy / "variables" / "variables.data-00000-of-00001").rename(copy / "variables" / "variables.data-00001-of-00002")
    problems = sm.find_problems(copy)
    expected = [str(copy / "variables" / "variables.data-00000-of-00002")]
    assert [p.path for p in problems] == expected, f"problems: {problems}"


def test_variables_missing_for_object_graph_with_variables(tf2_dir, tmp_path):
    import shutil

    copy = _copy(tf2_dir, tmp_path / "m")
    shutil.rmtree(copy / "variables")
    problems = sm.find_problems(copy)
    assert [p.path for p in problems] == [str(copy / "variables" / "variables.index")], f"problems: {problems}"


def test_asset_path_must_stay_inside(tmp_path):
    files = sm.SavedModelFiles.of(tmp_path)
    assert files.asset_path("vocab.txt") == (tmp_path / "assets" / "vocab.txt").resolve()
    with pytest.raises(JaxsmError, match="outside"):
        files.asset_path("../../etc/passwd")


def test_problems_of_incomplete_dir(tmp_path):
    problems = sm.find_problems(tmp_path)
    assert len(problems) == 1 and "incomplete" in problems[0].message, f"problems: {problems}"


@pytest.mark.parametrize("remove", ["variables.index", "variables"])
def test_missing_variables_checkpoint_fails_at_load(tf, tf2_dir, tmp_path, remove):
    """A SavedModel with variables whose checkpoint index (or variables/ directory) is gone fails at load, as in
    TF, naming the missing file; allow_partial_checkpoint loads it without values."""
    import shutil

    import jaxsm

    broken = tmp_path / "m"
    shutil.copytree(tf2_dir, broken)
    target = broken / "variables" / remove if remove != "variables" else broken / "variables"
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises((FileNotFoundError, tf.errors.NotFoundError)):
        tf.saved_model.load(str(broken))
    with pytest.raises(IncompleteSavedModelError, match=r"variables\.index is missing"):
        jaxsm.load(str(broken))
    jaxsm.load(str(broken), options=jaxsm.LoadOptions(allow_partial_checkpoint=True))


def test_tf1_missing_variables_checkpoint_fails_at_load(tf, tf1_dir, tmp_path):
    import shutil

    import jaxsm

    broken = tmp_path / "m"
    shutil.copytree(tf1_dir, broken)
    (broken / "variables" / "variables.index").unlink()
    with pytest.raises(IncompleteSavedModelError, match=r"variables\.index is missing"):
        jaxsm.load(str(broken), tags=["serve"])


# ---- tf.saved_model.contains_saved_model and tf.saved_model.experimental.read_fingerprint


def test_fingerprint_matches_tf(tf, tf2_dir, tf1_dir, tmp_path):
    import jaxsm

    want = tf.saved_model.experimental.read_fingerprint(str(tf2_dir))
    got = jaxsm.read_fingerprint(tf2_dir)
    assert got.singleprint() == want.singleprint()
    for field in ("saved_model_checksum", "graph_def_program_hash", "signature_def_hash", "saved_object_graph_hash"):
        assert getattr(got, field) == getattr(want, field), field
    assert got.checkpoint_hash == want.checkpoint_hash and got.version.producer == want.version.producer
    assert got == jaxsm.read_fingerprint(tf2_dir)
    with pytest.raises(FileNotFoundError):  # TF1's Builder writes no fingerprint
        tf.saved_model.experimental.read_fingerprint(str(tf1_dir))
    with pytest.raises(IncompleteSavedModelError, match="fingerprint.pb"):
        jaxsm.read_fingerprint(tf1_dir)

    copy = tmp_path / "no_fingerprint"
    copy.mkdir()
    (copy / "saved_model.pb").write_bytes((tf2_dir / "saved_model.pb").read_bytes())
    with pytest.raises(FileNotFoundError):
        tf.saved_model.experimental.read_fingerprint(str(copy))
    with pytest.raises(IncompleteSavedModelError, match="fingerprint.pb"):
        jaxsm.read_fingerprint(copy)
    (copy / "fingerprint.pb").write_bytes(b"\xff\xff\xff")
    with pytest.raises(RuntimeError):
        tf.saved_model.experimental.read_fingerprint(str(copy))
    with pytest.raises(CorruptFileError, match="fingerprint.pb"):
        jaxsm.read_fingerprint(copy)


def test_contains_saved_model_like_tf(tf, tf2_dir, tmp_path):
    import jaxsm

    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "saved_model.pbtxt").write_text("")
    (tmp_path / "file").write_text("x")
    for path in (tf2_dir, tmp_path / "empty", tmp_path / "text", tmp_path / "file", tmp_path / "missing"):
        want = tf.saved_model.contains_saved_model(str(path))
        assert jaxsm.contains_saved_model(path) == want, path
        assert jaxsm.contains_saved_model(str(path)) == want, path
