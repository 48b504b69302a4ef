"""Malformed and corrupt SavedModels: every bad input gets a clear jaxsm.errors exception (never a raw Python
exception, a hang, a crash or a silent wrong answer).

Two tiny SavedModels are written with TF (a tf.Module with a variable, a while loop and a cond; a TF1 Builder
export with a vocabulary asset, a hash table and a variable), then mutated at the proto level (parsed, edited,
re-serialized), at the file level (missing, empty, truncated, wrong kind of file) and at the byte level (a seeded
fuzz run in one subprocess). Where TF refuses a model too, a test says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import jaxsm
from jaxsm import errors
from jaxsm._proto import fingerprint_pb2, saved_model_pb2

tf = pytest.importorskip("tensorflow")

X = np.array([1.0, -1.0], np.float32)
WORDS = np.array([b"a", b"c", b"z"])
VARIABLES = "variables/variables"
SHARD = VARIABLES + ".data-00000-of-00001"


class _Module(tf.Module):
    def __init__(self):
        self.v = tf.Variable([1.0, 2.0], name="v")

    @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)])
    def f(self, x):
        i = tf.constant(0)
        y = x
        while i < 3:
            y = y * self.v + 1.0
            i += 1
        if tf.reduce_sum(y) > 0:
            y = y + 1.0
        else:
            y = y - 1.0
        return y


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[str, dict]]:
    """{"tf2"|"tf1": (export_dir, TF's outputs)}."""
    root = tmp_path_factory.mktemp("malformed")
    m = _Module()
    tf2 = str(root / "tf2")
    tf.saved_model.save(m, tf2, signatures={"serving_default": m.f})

    tf1 = tf.compat.v1
    tf1_dir = str(root / "tf1")
    vocab = root / "vocab.txt"
    vocab.write_text("a\nb\nc\n")
    with tf1.Graph().as_default():
        x = tf1.placeholder(tf.string, [None], name="x")
        asset = tf.constant(str(vocab))
        tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, asset)
        init = tf1.lookup.TextFileInitializer(asset, tf.string, -2, tf.int64, -1)  # word -> line number
        table = tf1.lookup.StaticHashTable(init, -1)
        w = tf1.get_variable("w", initializer=tf.constant(2, tf.int64))
        y = table.lookup(x) * w
        with tf1.Session() as sess:
            sess.run([tf1.global_variables_initializer(), tf1.tables_initializer()])
            builder = tf1.saved_model.Builder(tf1_dir)
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                signature_def_map={"serving_default": tf1.saved_model.predict_signature_def({"x": x}, {"y": y})},
                main_op=tf1.tables_initializer(),
                assets_collection=tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS),
            )
            builder.save()
    want_tf1 = tf.saved_model.load(tf1_dir).signatures["serving_default"](x=tf.constant(WORDS))
    return {
        "tf2": (tf2, {"f": m.f(tf.constant(X)).numpy()}),
        "tf1": (tf1_dir, {"y": want_tf1["y"].numpy()}),
    }


def _copy(models, kind: str, tmp_path: Path) -> Path:
    dst = tmp_path / kind
    shutil.copytree(models[kind][0], dst)
    return dst


def _run(export_dir, kind: str):
    loaded = jaxsm.load(export_dir)
    if kind == "tf1":
        return {"y": loaded.signatures["serving_default"](x=WORDS)["y"]}
    return {"f": loaded.f(X), "serving_default": loaded.signatures["serving_default"](x=X)["output_0"]}


def _assert_runs_like_tf(models, export_dir, kind: str) -> None:
    got = _run(export_dir, kind)
    want = models[kind][1]
    for name, value in got.items():
        expected = want["y"] if kind == "tf1" else want["f"]
        np.testing.assert_array_equal(np.asarray(value), expected.astype(np.asarray(value).dtype), err_msg=name)


def _edit_pb(export_dir: Path, edit) -> None:
    path = export_dir / "saved_model.pb"
    sm = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    edit(sm)
    path.write_bytes(sm.SerializeToString())


def _fn(sm, prefix: str):
    """The FunctionDef whose name starts with ``prefix`` (TF appends a uid)."""
    return next(f for f in sm.meta_graphs[0].graph_def.library.function if f.signature.name.startswith(prefix))


def _node(nodes, name: str):
    return next(n for n in nodes if n.name == name)


def _f_node(sm, name: str):
    return _node(_fn(sm, "__inference_f_").node_def, name)


def _g_node(sm, name: str):
    return _node(sm.meta_graphs[0].graph_def.node, name)


# -- proto-level edits of the TF2 model -------------------------------------------------------------------------
def _self_recursion(sm):
    fn = _fn(sm, "cond_true_")
    call = fn.node_def.add(name="rec", op="StatefulPartitionedCall", input=[fn.signature.input_arg[0].name])
    call.attr["Tin"].list.type.append(1)
    call.attr["Tout"].list.type.append(1)
    call.attr["f"].func.name = fn.signature.name
    _node(fn.node_def, "cond/add").input[0] = "rec:output:0"


def _drop_function(prefix: str):
    def edit(sm):
        lib = sm.meta_graphs[0].graph_def.library.function
        del lib[[f.signature.name for f in lib].index(_fn(sm, prefix).signature.name)]

    return edit


def _bound_inputs_to(node_id: int):
    def edit(sm):
        for cf in sm.meta_graphs[0].object_graph_def.concrete_functions.values():
            cf.bound_inputs[:] = [node_id] * len(cf.bound_inputs)

    return edit


def _child_to(node_id: int):
    def edit(sm):
        sm.meta_graphs[0].object_graph_def.nodes[0].children[0].node_id = node_id

    return edit


def _variable(sm):
    og = sm.meta_graphs[0].object_graph_def
    return next(n.variable for n in og.nodes if n.WhichOneof("kind") == "variable")


def _const_dtype(sm):
    _f_node(sm, "Greater/y").attr["value"].tensor.dtype = 999


def _slot_out_of_range(sm):
    ref = sm.meta_graphs[0].object_graph_def.nodes[0].slot_variables.add()
    ref.original_variable_node_id, ref.slot_variable_node_id = 1, 50


def _bool_as_string(sm):
    attr = _f_node(sm, "Sum").attr["keep_dims"]
    attr.Clear()
    attr.s = b"yes"


def _define_twice(sm):
    """A second, different FunctionDef of the same name (was silently the last one: TF refuses the library)."""
    twin = sm.meta_graphs[0].graph_def.library.function.add()
    twin.CopyFrom(_fn(sm, "cond_true_"))
    _node(twin.node_def, "cond/add/y").attr["value"].tensor.float_val[0] = 100.0


TF2_EDITS = {
    # name: (edit, expected error, message fragment)
    "input_names_missing_node": (
        lambda sm: _f_node(sm, "Sum").input.__setitem__(0, "nosuch:output:0"),
        errors.GraphError,
        "'nosuch:output:0' names a node that does not exist",
    ),
    "output_index_out_of_range": (
        lambda sm: _f_node(sm, "Sum").input.__setitem__(0, "while:output:7"),
        errors.GraphError,
        "'while:output:7' is out of range",
    ),
    "output_index_negative": (  # was silently the output before (index -1 of a flat list)
        lambda sm: _f_node(sm, "Greater").input.__setitem__(0, "Sum:output:-1"),
        errors.GraphError,
        "'Sum:output:-1'",
    ),
    "output_index_not_a_number": (  # was a raw ValueError of int()
        lambda sm: _f_node(sm, "Greater").input.__setitem__(0, "Sum:output:x"),
        errors.GraphError,
        "'Sum:output:x'",
    ),
    "output_arg_unknown": (
        lambda sm: _f_node(sm, "Greater").input.__setitem__(0, "Sum:zz:0"),
        errors.GraphError,
        "no output arg 'zz'",
    ),
    "duplicate_node_name": (  # was silently run (TF: "Node 'Sum' is not unique")
        lambda sm: _fn(sm, "__inference_f_").node_def.add().CopyFrom(_f_node(sm, "Sum")),
        errors.GraphError,
        "node 'Sum' is not unique",
    ),
    "ret_entry_missing": (  # was "reference to missing node ''"
        lambda sm: _fn(sm, "__inference_f_").ret.clear(),
        errors.GraphError,
        "no ret entry for output 'identity'",
    ),
    "ret_names_missing_node": (
        lambda sm: _fn(sm, "__inference_f_").ret.__setitem__("identity", "nosuch:output:0"),
        errors.GraphError,
        "nosuch",
    ),
    "control_input_missing": (
        lambda sm: _f_node(sm, "Sum").input.append("^nosuch"),
        errors.GraphError,
        "missing node 'nosuch'",
    ),
    "data_cycle": (
        lambda sm: _f_node(sm, "Sum").input.__setitem__(0, "Greater:z:0"),
        errors.GraphError,
        "has a cycle",
    ),
    "self_loop": (
        lambda sm: _f_node(sm, "Sum").input.__setitem__(0, "Sum:output:0"),
        errors.GraphError,
        "has a cycle",
    ),
    "control_cycle": (
        lambda sm: _f_node(sm, "Sum").input.append("^Identity"),
        errors.GraphError,
        "has a cycle",
    ),
    "while_body_missing": (
        lambda sm: setattr(_f_node(sm, "while").attr["body"].func, "name", "nosuch"),
        errors.GraphError,
        "function 'nosuch' is not in the graph's function library",
    ),
    "branch_attr_missing": (
        lambda sm: _f_node(sm, "cond").attr.pop("else_branch"),
        errors.AttrError,
        "no attribute 'else_branch'",
    ),
    "branch_function_dropped": (
        _drop_function("cond_true_"),
        errors.GraphError,
        "is not in the graph's function library",
    ),
    "called_function_dropped": (
        _drop_function("__inference_f_"),
        errors.GraphError,
        "is not in the graph's function library",
    ),
    "function_calls_itself": (_self_recursion, errors.LoweringError, "recursive function call"),
    "const_dtype_unknown": (_const_dtype, errors.AttrError, "unknown dtype 999"),
    "const_content_short": (
        lambda sm: setattr(_f_node(sm, "Greater/y").attr["value"].tensor, "tensor_content", b"\x01\x02\x03"),
        errors.AttrError,
        "3 bytes",
    ),
    "bool_attr_of_another_kind": (  # b"yes" was read as keep_dims=True (TF: "type 'string' when 'bool' expected")
        _bool_as_string,
        errors.AttrError,
        "attribute 'keep_dims' of node 'Sum' (Sum) in '__inference_f_",
    ),
    "function_defined_twice_differently": (_define_twice, errors.GraphError, "defines 'cond_true_"),
    # object graph
    "child_id_out_of_range": (_child_to(99), errors.CorruptFileError, "names node 99, but there are"),
    "child_id_negative": (_child_to(-1), errors.CorruptFileError, "names node -1, but there are"),
    "bound_input_out_of_range": (_bound_inputs_to(77), errors.CorruptFileError, "bound input of concrete function"),
    "bound_input_is_a_function": (_bound_inputs_to(2), errors.JaxsmError, "cannot be captured"),
    "slot_variable_out_of_range": (_slot_out_of_range, errors.CorruptFileError, "names node 50"),
    "concrete_function_missing": (
        lambda sm: sm.meta_graphs[0].object_graph_def.nodes[2].function.concrete_functions.__setitem__(0, "gone"),
        errors.GraphError,
        "function 'gone' is not in the graph's function library",
    ),
    "variable_dtype_invalid": (  # was a raw KeyError of the dtype table
        lambda sm: setattr(_variable(sm), "dtype", 999),
        errors.CorruptFileError,
        "variable node 1 has dtype <unknown dtype 999>",
    ),
    "variable_dtype_disagrees_with_checkpoint": (  # was silently the checkpoint's float32
        lambda sm: setattr(_variable(sm), "dtype", 3),
        errors.VariableError,
        "declared int32 [2] in the object graph, but the checkpoint",
    ),
    "variable_shape_disagrees_with_checkpoint": (  # was silently the checkpoint's shape
        lambda sm: setattr(_variable(sm).shape.dim[0], "size", 5),
        errors.VariableError,
        "declared float32 [5] in the object graph, but the checkpoint",
    ),
    "variable_path_not_in_checkpoint": (
        lambda sm: setattr(sm.meta_graphs[0].object_graph_def.nodes[0].children[0], "local_name", "w"),
        errors.VariableError,
        "has no value in the checkpoint",
    ),
    "two_meta_graphs_same_tags": (
        lambda sm: sm.meta_graphs.add().CopyFrom(sm.meta_graphs[0]),
        errors.TagsNotFoundError,
        "has 2 MetaGraphs",
    ),
}


@pytest.mark.parametrize("case", sorted(TF2_EDITS))
def test_tf2_proto_edit_raises_a_jaxsm_error(models, tmp_path, case):
    edit, expected, match = TF2_EDITS[case]
    export_dir = _copy(models, "tf2", tmp_path)
    _edit_pb(export_dir, edit)
    with pytest.raises(expected, match=re.escape(match)):
        _run(export_dir, "tf2")


@pytest.mark.parametrize(
    "case",
    [
        "duplicate_node_name",
        "variable_dtype_disagrees_with_checkpoint",
        "bool_attr_of_another_kind",
        "function_defined_twice_differently",
    ],
)
def test_tf_refuses_these_edits_too(models, tmp_path, case):
    """The silent successes fixed above are models TF refuses as well (no jaxsm-only strictness)."""
    export_dir = _copy(models, "tf2", tmp_path)
    _edit_pb(export_dir, TF2_EDITS[case][0])
    with pytest.raises(Exception):  # noqa: B017 (TF raises ValueError / InvalidArgumentError here)
        tf.saved_model.load(str(export_dir)).f(tf.constant(X))


def test_tf_refuses_a_variable_of_another_shape(models, tmp_path):
    export_dir = _copy(models, "tf2", tmp_path)
    _edit_pb(export_dir, TF2_EDITS["variable_shape_disagrees_with_checkpoint"][0])
    with pytest.raises(ValueError, match="incompatible tensor with shape"):
        tf.saved_model.load(str(export_dir))


def _add_object_cycle(sm):
    nodes = sm.meta_graphs[0].object_graph_def.nodes
    nodes[3].children.add(node_id=0, local_name="root_again")
    nodes[0].children.add(node_id=0, local_name="me")


def _retag(tags):
    def edit(sm):
        sm.meta_graphs[0].meta_info_def.ClearField("tags")
        sm.meta_graphs[0].meta_info_def.tags.extend(tags)

    return edit


@pytest.mark.parametrize(
    "case, edit",
    [
        ("object_graph_cycle", _add_object_cycle),  # cycles are legal in object graphs
        ("no_tags", _retag([])),  # tags=None takes the only MetaGraph, whatever its tags (TF's load.py)
        ("other_tags", _retag(["train"])),
        ("signature_def_names_missing_tensor", lambda sm: sm.meta_graphs[0].signature_def.clear()),  # TF2: unused
    ],
)
def test_tf2_proto_edits_tf_loads_too(models, tmp_path, case, edit):
    export_dir = _copy(models, "tf2", tmp_path)
    _edit_pb(export_dir, edit)
    tf.saved_model.load(str(export_dir))  # the oracle accepts it
    _assert_runs_like_tf(models, export_dir, "tf2")


def test_tags_given_must_match(models, tmp_path):
    export_dir = _copy(models, "tf2", tmp_path)
    _edit_pb(export_dir, _retag(["train"]))
    with pytest.raises(errors.TagsNotFoundError, match=r"no MetaGraph with tags \['serve'\].*\['train'\]"):
        jaxsm.load(export_dir, tags="serve")


# -- proto-level edits of the TF1 model -------------------------------------------------------------------------
def _sig_tensor(which: str, key: str, name: str):
    def edit(sm):
        getattr(sm.meta_graphs[0].signature_def["serving_default"], which)[key].name = name

    return edit


def _restore_names_ref(ref: str):
    def edit(sm):
        _g_node(sm, "save/RestoreV2").input[1] = ref

    return edit


TF1_EDITS = {
    "input_names_missing_node": (
        lambda sm: _g_node(sm, "mul").input.__setitem__(1, "nosuch"),
        errors.GraphError,
        "missing node 'nosuch'",
    ),
    "output_index_out_of_range": (
        lambda sm: _g_node(sm, "mul").input.__setitem__(1, "mul/ReadVariableOp:7"),
        errors.LoweringError,
        "mul/ReadVariableOp:7 does not exist",
    ),
    "output_index_negative": (
        lambda sm: _g_node(sm, "mul").input.__setitem__(1, "mul/ReadVariableOp:-1"),
        errors.GraphError,
        "mul/ReadVariableOp:-1",
    ),
    "duplicate_node_name": (
        lambda sm: sm.meta_graphs[0].graph_def.node.add().CopyFrom(_g_node(sm, "mul")),
        errors.GraphError,
        "node 'mul' is not unique",
    ),
    "data_cycle": (
        lambda sm: _g_node(sm, "mul/ReadVariableOp").input.append("^mul"),
        errors.GraphError,
        "has a cycle",
    ),
    "control_input_missing": (
        lambda sm: _g_node(sm, "mul").input.append("^nosuch"),
        errors.GraphError,
        "missing node 'nosuch'",
    ),
    "signature_input_missing": (_sig_tensor("inputs", "x", "nosuch:0"), errors.GraphError, "'nosuch:0' names no"),
    "signature_output_missing": (_sig_tensor("outputs", "y", "nosuch:0"), errors.GraphError, "'nosuch:0' names no"),
    "signature_output_out_of_range": (_sig_tensor("outputs", "y", "mul:3"), errors.GraphError, "has only 1 outputs"),
    "variable_dtype_invalid": (
        lambda sm: setattr(_g_node(sm, "w").attr["dtype"], "type", 999),
        errors.AttrError,
        "unknown dtype 999",
    ),
    "variable_dtype_disagrees_with_checkpoint": (  # was silently the checkpoint's int64 (TF refuses the graph)
        lambda sm: setattr(_g_node(sm, "w").attr["dtype"], "type", 1),
        errors.VariableError,
        "declared float32 [] in the graph, but checkpoint key 'w'",
    ),
    "variable_shape_disagrees_with_checkpoint": (  # was silently the checkpoint's shape (TF refuses the graph)
        lambda sm: _g_node(sm, "w").attr["shape"].shape.dim.add(size=4),
        errors.VariableError,
        "declared int64 [4] in the graph, but checkpoint key 'w'",
    ),
    "restore_names_missing_node": (  # was a raw KeyError (found by the fuzz test)
        _restore_names_ref("save/RestoreV2/nosuch"),
        errors.GraphError,
        "restore op reads 'save/RestoreV2/nosuch', which is not a constant",
    ),
    "restore_names_not_a_constant": (
        _restore_names_ref("save/filename"),
        errors.GraphError,
        "restore op reads 'save/filename', which is not a constant",
    ),
    "main_op_missing": (
        lambda sm: sm.meta_graphs[0].collection_def["saved_model_main_op"].node_list.value.__setitem__(0, "nosuch"),
        errors.GraphError,
        "'nosuch' names no operation",
    ),
    "table_attr_missing": (
        lambda sm: _g_node(sm, "hash_table").attr.pop("key_dtype"),
        errors.AttrError,
        "no attribute 'key_dtype'",
    ),
}


@pytest.mark.parametrize("case", sorted(TF1_EDITS))
def test_tf1_proto_edit_raises_a_jaxsm_error(models, tmp_path, case):
    edit, expected, match = TF1_EDITS[case]
    export_dir = _copy(models, "tf1", tmp_path)
    _edit_pb(export_dir, edit)
    with pytest.raises(expected, match=re.escape(match)):
        _run(export_dir, "tf1")


@pytest.mark.parametrize(
    "case", ["variable_dtype_disagrees_with_checkpoint", "variable_shape_disagrees_with_checkpoint"]
)
def test_tf1_tf_refuses_these_edits_too(models, tmp_path, case):
    export_dir = _copy(models, "tf1", tmp_path)
    _edit_pb(export_dir, TF1_EDITS[case][0])
    with pytest.raises(ValueError):
        tf.saved_model.load(str(export_dir))


def _garbage_asset_collection(sm):
    # TF's Builder keeps the AssetFileDefs packed in the saved_model_assets collection
    sm.meta_graphs[0].collection_def["saved_model_assets"].any_list.value[0].value = b"\xff\xff\xff"


def _garbage_variable_def(sm):
    sm.meta_graphs[0].collection_def["variables"].bytes_list.value[0] = b"\x0a\x02\xff\xfe"


@pytest.mark.parametrize(
    "edit, match",
    [  # were raw protobuf DecodeErrors (found by the fuzz test)
        (_garbage_asset_collection, "cannot parse a AssetFileDef of the MetaGraph's collection 'saved_model_assets'"),
        (_garbage_variable_def, "cannot parse a VariableDef of the MetaGraph's collection 'variables'"),
    ],
)
def test_tf1_corrupt_collection_entries(models, tmp_path, edit, match):
    export_dir = _copy(models, "tf1", tmp_path)
    _edit_pb(export_dir, edit)
    with pytest.raises(errors.CorruptFileError, match=match):
        _run(export_dir, "tf1")


def test_corrupt_checkpoint_object_graph_without_checksums(models, tmp_path):
    """With LoadOptions(verify_checksums=False) a damaged _CHECKPOINTABLE_OBJECT_GRAPH is a CorruptFileError (was a
    raw DecodeError)."""
    export_dir = _copy(models, "tf2", tmp_path)
    reader = jaxsm.load_checkpoint(export_dir / VARIABLES)
    size = len(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    data = bytearray((export_dir / SHARD).read_bytes())
    start = data.index(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    data[start : start + size] = bytes(size)  # tag 0 is never valid
    (export_dir / SHARD).write_bytes(bytes(data))
    with pytest.raises(errors.CorruptFileError, match="cannot parse the checkpoint's object graph"):
        jaxsm.load(export_dir, options=jaxsm.LoadOptions(verify_checksums=False))
    with pytest.raises(errors.ChecksumError):
        jaxsm.load(export_dir)


def test_tf1_missing_asset_names_the_file_and_table(models, tmp_path):
    export_dir = _copy(models, "tf1", tmp_path)
    (export_dir / "assets" / "vocab.txt").unlink()
    with pytest.raises(errors.LoweringError, match=r"text_file_init.*cannot read the vocabulary file .*vocab\.txt"):
        _run(export_dir, "tf1")


def test_tf1_empty_asset(models, tmp_path):
    export_dir = _copy(models, "tf1", tmp_path)
    (export_dir / "assets" / "vocab.txt").write_bytes(b"")
    with pytest.raises(errors.LoweringError, match=r"vocab\.txt is empty"):
        _run(export_dir, "tf1")


# -- whole-file problems ----------------------------------------------------------------------------------------
def _pbtxt_only(d: Path) -> None:
    from google.protobuf import text_format

    sm = saved_model_pb2.SavedModel.FromString((d / "saved_model.pb").read_bytes())
    (d / "saved_model.pb").unlink()
    (d / "saved_model.pbtxt").write_text(text_format.MessageToString(sm))


def _replace_with_dir(rel: str):
    def edit(d: Path) -> None:
        (d / rel).unlink()
        (d / rel).mkdir()

    return edit


def _resize(rel: str, delta: int):
    def edit(d: Path) -> None:
        data = (d / rel).read_bytes()
        (d / rel).write_bytes(data[:delta] if delta < 0 else data + b"\0" * delta)

    return edit


FILE_EDITS = {
    "saved_model_pb_empty": (
        lambda d: (d / "saved_model.pb").write_bytes(b""),
        errors.CorruptFileError,
        "is empty",
    ),
    # meta_graphs field, length-delimited, claiming 4 GiB: no giant allocation, a parse error
    "saved_model_pb_claims_4_gib": (
        lambda d: (d / "saved_model.pb").write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + bytes(10)),
        errors.CorruptFileError,
        "cannot parse",
    ),
    "saved_model_pb_is_a_directory": (_replace_with_dir("saved_model.pb"), errors.IncompleteSavedModelError, ""),
    "variables_missing": (
        lambda d: shutil.rmtree(d / "variables"),
        errors.IncompleteSavedModelError,
        "variables.index is missing",
    ),
    "variables_is_a_file": (
        lambda d: (shutil.rmtree(d / "variables"), (d / "variables").write_text("x")),
        errors.IncompleteSavedModelError,
        "variables.index is missing",
    ),
    "index_is_a_directory": (
        _replace_with_dir(VARIABLES + ".index"),
        errors.IncompleteSavedModelError,
        "variables.index is missing",
    ),
    "index_empty": (lambda d: (d / (VARIABLES + ".index")).write_bytes(b""), errors.CorruptFileError, "too short"),
    "data_shard_missing": (lambda d: (d / SHARD).unlink(), errors.MissingShardError, "data shard 0 of 1"),
    "data_shard_empty": (lambda d: (d / SHARD).write_bytes(b""), errors.CorruptFileError, "the shard has 0 bytes"),
    "data_shard_short": (_resize(SHARD, -3), errors.CorruptFileError, "the shard is truncated"),
    "data_shard_is_a_directory": (_replace_with_dir(SHARD), errors.CorruptFileError, "cannot read data shard"),
}


@pytest.mark.parametrize("case", sorted(FILE_EDITS))
def test_file_problem_raises_a_jaxsm_error(models, tmp_path, case):
    edit, expected, match = FILE_EDITS[case]
    export_dir = _copy(models, "tf2", tmp_path)
    edit(export_dir)
    with pytest.raises(expected, match=match):
        _run(export_dir, "tf2")


@pytest.mark.parametrize(
    "case, edit",
    [
        ("pbtxt_only", _pbtxt_only),
        ("data_shard_longer", _resize(SHARD, 100)),  # bytes past the last tensor are not read (TF the same)
        ("fingerprint_corrupt", lambda d: (d / "fingerprint.pb").write_bytes(b"\xff\xff garbage")),
        ("fingerprint_missing", lambda d: (d / "fingerprint.pb").unlink()),
        ("stray_shard", lambda d: shutil.copy(d / SHARD, d / (VARIABLES + ".data-00000-of-00002"))),
    ],
)
def test_file_changes_that_load_like_tf(models, tmp_path, case, edit):
    export_dir = _copy(models, "tf2", tmp_path)
    edit(export_dir)
    tf.saved_model.load(str(export_dir))
    _assert_runs_like_tf(models, export_dir, "tf2")


def test_fingerprint_corrupt_or_disagreeing(models, tmp_path):
    export_dir = _copy(models, "tf2", tmp_path)
    path = export_dir / "fingerprint.pb"
    proto = fingerprint_pb2.FingerprintDef.FromString(path.read_bytes())
    proto.graph_def_program_hash += 1
    path.write_bytes(proto.SerializeToString())
    assert jaxsm.read_fingerprint(export_dir) != jaxsm.read_fingerprint(models["tf2"][0])
    path.write_bytes(b"\xff\xff garbage")
    with pytest.raises(errors.CorruptFileError, match="fingerprint.pb"):
        jaxsm.read_fingerprint(export_dir)
    path.unlink()
    path.mkdir()
    with pytest.raises(errors.IncompleteSavedModelError):
        jaxsm.read_fingerprint(export_dir)


def test_unreadable_files(models, tmp_path, monkeypatch):
    """Unreadable saved_model.pb / index / shard: a jaxsm error naming the file (as root, chmod does not stop reads:
    then saved_model.pb's read is made to fail)."""
    export_dir = _copy(models, "tf2", tmp_path)
    if os.geteuid() == 0:
        real = Path.read_bytes

        def denied(self):
            if self.name == "saved_model.pb":
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", denied)
        with pytest.raises(errors.FormatError, match=r"cannot read .*saved_model\.pb: .*Permission denied"):
            jaxsm.load(export_dir)
        return
    for rel in ("saved_model.pb", VARIABLES + ".index", SHARD):
        (export_dir / rel).chmod(0)
        with pytest.raises(errors.FormatError, match="Permission denied"):
            _run(export_dir, "tf2")
        (export_dir / rel).chmod(0o644)


@pytest.mark.parametrize("as_bytes", [False, True])
def test_path_with_non_utf8_bytes(models, tmp_path, as_bytes):
    """A directory name that is not UTF-8 (bytes paths were a raw TypeError)."""
    raw = os.fsencode(tmp_path) + b"/model_\xff\xfe"
    shutil.copytree(os.fsencode(models["tf2"][0]), raw)
    export_dir = raw if as_bytes else os.fsdecode(raw)
    _assert_runs_like_tf(models, export_dir, "tf2")
    assert jaxsm.load_checkpoint(raw + b"/" + VARIABLES.encode()).has_tensor("v/.ATTRIBUTES/VARIABLE_VALUE")


# -- seeded byte-level fuzz -------------------------------------------------------------------------------------
_FUZZ = textwrap.dedent(
    """
    import os, random, shutil, signal, sys, tempfile, traceback
    import numpy as np
    import jaxsm
    from jaxsm.errors import JaxsmError

    X = np.array([1.0, -1.0], np.float32)
    WORDS = np.array([b"a", b"c", b"z"])


    def mutate(data, rng):
        b = bytearray(data)
        i = rng.randrange(max(len(b), 1))
        kind = rng.randrange(4)
        if kind == 0 and b:  # flip a bit
            b[i] ^= 1 << rng.randrange(8)
        elif kind == 1:  # zero a range
            n = min(rng.randint(1, 16), len(b) - i)
            b[i : i + n] = bytes(n)
        elif kind == 2:  # truncate
            del b[i:]
        else:  # duplicate a block
            b[i:i] = b[i : i + rng.randint(1, 32)]
        return bytes(b)


    def run(d, kind):
        loaded = jaxsm.load(d)
        if kind == "tf1":
            return loaded.signatures["serving_default"](x=WORDS)
        return loaded.f(X), loaded.signatures["serving_default"](x=X)


    class Hang(Exception):
        pass


    def on_alarm(*_):
        raise Hang()


    signal.signal(signal.SIGALRM, on_alarm)
    failures, outcomes = [], {}
    work = tempfile.mkdtemp()
    for kind, src, pb_seeds, other_seeds in (a.split("=") for a in sys.argv[1:]):
        rels = sorted(os.path.relpath(os.path.join(r, f), src) for r, _, fs in os.walk(src) for f in fs)
        for rel in rels:
            for seed in range(int(pb_seeds if rel == "saved_model.pb" else other_seeds)):
                case = f"{kind}/{rel}/seed {seed}"
                print(case, flush=True)  # the last line names the mutant if the process crashes
                d = os.path.join(work, "m")
                shutil.rmtree(d, ignore_errors=True)
                shutil.copytree(src, d)
                path = os.path.join(d, rel)
                with open(path, "rb") as f:
                    data = f.read()
                with open(path, "wb") as f:
                    f.write(mutate(data, random.Random(case)))
                signal.alarm(20)
                try:
                    run(d, kind)
                    outcome = "ok"
                except JaxsmError as e:
                    outcome = type(e).__name__
                except BaseException as e:
                    outcome = "bad"
                    failures.append(f"{case}: {type(e).__name__}: {e}\\n{traceback.format_exc(limit=-4)}")
                finally:
                    signal.alarm(0)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print("OUTCOMES", outcomes)
    print("FAILURES", len(failures))
    print("\\n".join(failures))
    """
)

# mutants per file (saved_model.pb mutants exercise the most code; the checkpoint's have checksums)
FUZZ_PB_SEEDS, FUZZ_OTHER_SEEDS = 100, 12


def test_seeded_byte_fuzz(models, tmp_path):
    """Every mutant loads and runs, or raises a JaxsmError subclass: never another exception, a hang (20 s alarm)
    or a crash (one subprocess; its last output line names the mutant)."""
    script = tmp_path / "fuzz.py"
    script.write_text(_FUZZ)
    args = [f"{kind}={models[kind][0]}={FUZZ_PB_SEEDS}={FUZZ_OTHER_SEEDS}" for kind in ("tf2", "tf1")]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    out = proc.stdout
    assert proc.returncode == 0, f"the fuzz process died (rc {proc.returncode}) at: {out.splitlines()[-1:]}"
    assert "FAILURES 0" in out, out[out.index("FAILURES") :]
