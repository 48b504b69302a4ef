"""Models like TensorFlow's and TF Serving's own test SavedModels (``half_plus_two`` and its variants, the
``fuzz_generated`` corrupt ones), rebuilt here with TF: what a user of an old TF1 export sees in jaxsm must be
what TF gives.

``half_plus_two`` (tensorflow_serving/servables/tensorflow/testdata/saved_model_half_plus_two.py) has ref
variables, regress/classify signatures fed serialized ``tf.Example``s, a predict signature, an asset, and an init
op that assigns the asset's file name to a string ref variable. Its variants: the text format
(``saved_model.pbtxt``), ``main_op`` instead of ``legacy_init_op``, and the oldest exports (TF 0.12-1.x: the
``Variable`` op, the init op in the ``legacy_init_op`` collection). The corrupt ``Const`` nodes are the kind of
TF's ``fuzz_generated`` models (cc/saved_model/testdata): TF refuses them, so jaxsm must raise a
``jaxsm.errors`` exception naming the node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import jaxsm
from jaxsm._proto import saved_model_pb2
from jaxsm.errors import AttrError
from jaxsm.format.saved_model import UnsupportedFormatError
from tests.tfcompare import v1_graph

tf = pytest.importorskip("tensorflow")
tf1 = tf.compat.v1

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")


def _example(x: float, x2: float | None = None) -> bytes:
    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
    if x2 is not None:
        feature["x2"] = tf.train.Feature(float_list=tf.train.FloatList(value=[x2]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


EXAMPLES = np.array([_example(0.0), _example(1.0, 4.0), _example(2.0), _example(3.0, -1.0)], dtype=object)
X = np.array([[1.0], [2.0], [-3.0]], np.float32)


def _save_half_plus_two(export_dir: str, as_text: bool = False, main_op: bool = False) -> None:
    """saved_model_half_plus_two.py's TF1 export: y = a * x + b, y2 = a * x + c, y3 = a * x2 + c."""
    info = tf1.saved_model.utils.build_tensor_info
    sig = tf1.saved_model.signature_def_utils.build_signature_def
    with v1_graph():
        with tf1.variable_scope("", use_resource=False):  # ref variables (VariableV2), as TF1 made them
            a, b, c = (tf1.Variable(v, name=n) for v, n in ((0.5, "a"), (2.0, "b"), (3.0, "c")))
            filename = tf1.Variable("foo.txt", name="filename_tensor", trainable=False, collections=[])
        serialized = tf1.placeholder(tf.string, name="tf_example")
        features = tf1.parse_example(
            serialized,
            {
                "x": tf1.FixedLenFeature([1], tf.float32),
                "x2": tf1.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            },
        )
        y = tf.add(a * features["x"], b, name="y")
        y2 = tf.add(a * features["x"], c, name="y2")
        y3 = tf.add(a * features["x2"], c, name="y3")
        x = tf1.placeholder(tf.float32, [None, 1], name="x")
        y_predict = tf.add(a * x, b, name="y_predict")
        asset_src = f"{export_dir}_src_foo.txt"
        with open(asset_src, "w") as f:
            f.write("asset-file-contents")
        tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, tf.constant(asset_src, name="asset_filepath"))
        init = tf.group(filename.assign("foo.txt"), name="init_op")
        signatures = {
            "regress_x_to_y": sig({"inputs": info(serialized)}, {"outputs": info(y)}, "tensorflow/serving/regress"),
            "regress_x_to_y2": sig({"inputs": info(serialized)}, {"outputs": info(y2)}, "tensorflow/serving/regress"),
            "regress_x2_to_y3": sig({"inputs": info(serialized)}, {"outputs": info(y3)}, "tensorflow/serving/regress"),
            "classify_x_to_y": sig({"inputs": info(serialized)}, {"scores": info(y)}, "tensorflow/serving/classify"),
            "serving_default": sig({"x": info(x)}, {"y": info(y_predict)}, "tensorflow/serving/predict"),
        }
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            builder = tf1.saved_model.Builder(export_dir)
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                signature_def_map=signatures,
                assets_collection=tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS),
                **({"main_op": init} if main_op else {"legacy_init_op": init}),
            )
            builder.save(as_text=as_text)


def _make_oldest(export_dir: str) -> None:
    """Rewrite an export as TF 0.12-1.x wrote it: ``Variable`` (not ``VariableV2``) nodes and the init op in the
    ``legacy_init_op`` collection."""
    path = f"{export_dir}/saved_model.pb"
    sm = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        sm.ParseFromString(f.read())
    mg = sm.meta_graphs[0]
    for n in mg.graph_def.node:
        if n.op == "VariableV2":
            n.op = "Variable"
    mg.collection_def["legacy_init_op"].CopyFrom(mg.collection_def["saved_model_main_op"])
    del mg.collection_def["saved_model_main_op"]
    mg.meta_info_def.tensorflow_version = "1.0.0"
    with open(path, "wb") as f:
        f.write(sm.SerializeToString())


def _make_init_op_signature(export_dir: str) -> None:
    """Rewrite an export as cc/saved_model/testdata/half_plus_two_v2 has it: the init op in the
    ``__saved_model_init_op`` SignatureDef (not a collection), and an ``assets.extra`` directory."""
    path = f"{export_dir}/saved_model.pb"
    sm = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        sm.ParseFromString(f.read())
    mg = sm.meta_graphs[0]
    init_op = mg.collection_def["saved_model_main_op"].node_list.value[0]
    del mg.collection_def["saved_model_main_op"]
    mg.signature_def["__saved_model_init_op"].outputs["__saved_model_init_op"].name = init_op
    with open(path, "wb") as f:
        f.write(sm.SerializeToString())
    os.makedirs(f"{export_dir}/assets.extra")
    with open(f"{export_dir}/assets.extra/validation_result_do_not_edit", "w") as f:
        f.write("ok")


@pytest.fixture(scope="module")
def half_plus_two(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("half_plus_two")
    dirs = {name: f"{root}/{name}" for name in ("pb", "pbtxt_main_op", "oldest", "init_op_signature")}
    _save_half_plus_two(dirs["pb"])
    _save_half_plus_two(dirs["pbtxt_main_op"], as_text=True, main_op=True)
    _save_half_plus_two(dirs["oldest"])
    _make_oldest(dirs["oldest"])
    _save_half_plus_two(dirs["init_op_signature"])
    _make_init_op_signature(dirs["init_op_signature"])
    return dirs


@pytest.mark.parametrize("variant", ["pb", "pbtxt_main_op", "oldest", "init_op_signature"])
def test_half_plus_two_matches_session(half_plus_two, variant):
    """Every signature (serialized tf.Examples in, and a float batch), the init op's string assignment and the
    variables, as a TF1 Session that loaded the export gives them. The init op assigns a string to a ref
    variable (``Assign`` of a string), which jaxsm's load used to fail on."""
    export_dir = half_plus_two[variant]
    model = jaxsm.load(export_dir)
    with tf.Graph().as_default(), tf1.Session() as sess:
        meta_graph = tf1.saved_model.loader.load(sess, ["serve"], export_dir)
        for key, sig in sorted(meta_graph.signature_def.items()):
            if key.startswith("__"):
                continue
            feeds = {name: EXAMPLES if t.dtype == tf.string.as_datatype_enum else X for name, t in sig.inputs.items()}
            want = sess.run(
                {name: t.name for name, t in sig.outputs.items()},
                {sig.inputs[name].name: v for name, v in feeds.items()},
            )
            got = model.signatures[key](**feeds)
            assert sorted(got) == sorted(want), f"{variant} {key}: output keys"
            for name, w in want.items():
                g = np.asarray(got[name])
                assert g.dtype == w.dtype and g.shape == w.shape, f"{variant} {key}/{name}: {g.dtype}{g.shape}"
                np.testing.assert_array_equal(g, w, err_msg=f"{variant} {key}/{name}")
        assert model.prune([], ["filename_tensor:0"])()[0] == sess.run("filename_tensor:0"), "init op's assign"
        want_vars = {v.name: sess.run(v.name) for v in tf1.global_variables()}
    assert {v.name: np.asarray(v.numpy()) for v in model.variables} == want_vars, "variables"
    assert model.tensorflow_version == meta_graph.meta_info_def.tensorflow_version


def _tf_spec(s) -> tuple | None:
    if s is None:  # an operation's output
        return None
    return s.dtype.name, None if s.shape.rank is None else tuple(s.shape.as_list())


def _jaxsm_spec(s) -> tuple | None:
    if s is None:
        return None
    return np.dtype(s.dtype).name if s.dtype != object else "string", None if s.shape is None else tuple(s.shape)


@pytest.mark.parametrize("variant", ["pb", "init_op_signature"])
def test_half_plus_two_signature_specs_match_tf2_load(half_plus_two, variant):
    """The signatures and their input and output specs as ``tf.saved_model.load`` gives them, the init op's
    ``__saved_model_init_op`` too (TF lists it; calling it runs the init op and returns None for it)."""
    export_dir = half_plus_two[variant]
    loaded, model = tf.saved_model.load(export_dir), jaxsm.load(export_dir)
    assert sorted(model.signatures) == sorted(loaded.signatures)
    if "__saved_model_init_op" in loaded.signatures:
        assert model.signatures["__saved_model_init_op"]() == loaded.signatures["__saved_model_init_op"]()
    for key, fn in loaded.signatures.items():
        jx = model.signatures[key]
        want_in = {k: _tf_spec(s) for k, s in fn.structured_input_signature[1].items()}
        assert {k: _jaxsm_spec(s) for k, s in jx.structured_input_signature[1].items()} == want_in, f"{key}: inputs"
        want_out = {k: _tf_spec(s) for k, s in fn.structured_outputs.items()}
        assert {k: _jaxsm_spec(s) for k, s in jx.structured_outputs.items()} == want_out, f"{key}: outputs"


# -- corrupt Const nodes (TF's fuzz_generated models) -------------------------------------------------------------
def _no_tensor(value, dtype):
    value.ClearField("tensor")


def _value_is_int(value, dtype):
    value.i = 3


def _bad_dtype_attr(value, dtype):
    dtype.type = 99


def _dtype_mismatch(value, dtype):
    value.tensor.dtype = tf.int32.as_datatype_enum  # ConstantOp: "Type mismatch between value and dtype"


CORRUPT_CONSTS = {
    "no_tensor": _no_tensor,  # TF: AttrValue missing value with expected type 'tensor'
    "value_is_int": _value_is_int,  # TF: AttrValue had value with type 'int' when 'tensor' expected
    "bad_dtype_attr": _bad_dtype_attr,  # TF: AttrValue has invalid DataType enum: 99
    "dtype_mismatch": _dtype_mismatch,  # TF's grappler aborts the process on this one (a TF bug); not run in TF
}


@pytest.fixture(scope="module")
def const_model(tmp_path_factory) -> str:
    export_dir = str(tmp_path_factory.mktemp("const") / "base")
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        y = tf.add(x, tf.constant([2.0, 3.0], name="k"), name="y")
        with tf1.Session() as sess:
            builder = tf1.saved_model.Builder(export_dir)
            signature = tf1.saved_model.signature_def_utils.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
    return export_dir


@pytest.mark.parametrize("case", sorted(CORRUPT_CONSTS))
def test_corrupt_const_raises_naming_node(const_model, case, tmp_path):
    """A Const whose ``value`` is no tensor, whose ``dtype`` is no type, or whose tensor's dtype is not its
    ``dtype``: TF refuses the graph, and jaxsm raises an AttrError naming the node instead of computing with it
    (an int ``value`` used to be taken as the constant 3)."""
    export_dir = str(tmp_path / case)
    shutil.copytree(const_model, export_dir)
    sm = saved_model_pb2.SavedModel()
    with open(f"{export_dir}/saved_model.pb", "rb") as f:
        sm.ParseFromString(f.read())
    (node,) = [n for n in sm.meta_graphs[0].graph_def.node if n.name == "k"]
    CORRUPT_CONSTS[case](node.attr["value"], node.attr["dtype"])
    with open(f"{export_dir}/saved_model.pb", "wb") as f:
        f.write(sm.SerializeToString())
    x = np.array([[1.0, 2.0]], np.float32)
    if case != "dtype_mismatch":
        with pytest.raises(ValueError), tf.Graph().as_default(), tf1.Session() as sess:
            tf1.saved_model.loader.load(sess, ["serve"], export_dir)
    with pytest.raises(AttrError, match="'k' \\(Const\\)"):
        jaxsm.load(export_dir).signatures["serving_default"](x=x)


def test_base_const_model_runs(const_model):
    """The uncorrupted model (the check above must not refuse good constants)."""
    x = np.array([[1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(jaxsm.load(const_model).signatures["serving_default"](x=x)["y"], [[3.0, 5.0]])


# -- the command line --------------------------------------------------------------------------------------------
def test_python_dash_m_jaxsm_runs_the_cli():
    """``python -m jaxsm`` is the ``jaxsm`` command (there was no ``jaxsm/__main__.py``)."""
    out = subprocess.run([sys.executable, "-m", "jaxsm", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: jaxsm" in out.stdout and "run" in out.stdout


def test_cli_run_input_examples_like_saved_model_cli(half_plus_two, tmp_path, capsys):
    """``jaxsm run --input_examples`` builds the tf.Examples ``saved_model_cli run --input_examples`` builds (TF's
    own parser is the oracle) and gives the Session's regression outputs."""
    from tensorflow.python.tools import saved_model_cli

    from jaxsm.cli import main

    export_dir = half_plus_two["pb"]
    spec = "inputs=[{'x':[1.0]},{'x':[5.0],'x2':[2.0]},{'x':[-3.0],'name':['a','b'],'tag':[b'c'],'ids':[1,2]}]"
    examples = np.array(saved_model_cli.preprocess_input_examples_arg_string(spec)["inputs"], dtype=object)
    with tf.Graph().as_default(), tf1.Session() as sess:
        meta_graph = tf1.saved_model.loader.load(sess, ["serve"], export_dir)
        sig = meta_graph.signature_def["regress_x2_to_y3"]
        want = sess.run(sig.outputs["outputs"].name, {sig.inputs["inputs"].name: examples})
    argv = ["run", export_dir, "--signature_def", "regress_x2_to_y3", "--input_examples", spec, "--outdir"]
    assert main([*argv, str(tmp_path)]) == 0
    got = np.load(tmp_path / "outputs.npy")
    assert got.dtype == want.dtype and got.shape == want.shape, f"{got.dtype}{got.shape}"
    np.testing.assert_array_equal(got, want, err_msg="regress_x2_to_y3 outputs")
    bad = ["run", export_dir, "--signature_def", "regress_x2_to_y3", "--input_examples", "inputs={'x':[1.0]}"]
    assert main(bad) == 1, "not a list: an error line, not a traceback"
    assert "must be a list of dictionaries" in capsys.readouterr().err


def test_prune_with_nested_feeds_like_tf(half_plus_two):
    """``prune`` takes feeds as a nested structure, flattened as ``tf.nest`` does (dicts by sorted key): the
    pruned function takes them positionally in that order, or by op name. jaxsm took only a name or a list."""
    export_dir = half_plus_two["pb"]
    loaded, model = tf.saved_model.load(export_dir), jaxsm.load(export_dir)
    feeds = {"b": "x:0", "a": ["tf_example:0"]}
    fetches = {"y": "y:0", "y_predict": "y_predict:0"}
    want = loaded.prune(feeds, fetches)(tf.constant(list(EXAMPLES)), tf.constant(X))
    pruned = model.prune(feeds, fetches)
    for got in (pruned(EXAMPLES, X), pruned(x=X, tf_example=EXAMPLES)):
        assert sorted(got) == sorted(want)
        for k in want:
            np.testing.assert_array_equal(np.asarray(got[k]), want[k].numpy(), err_msg=k)


def test_session_bundle_export_is_named(tmp_path):
    """A SessionBundle export (TF 0.x's exporter: ``export.meta`` and an ``export-*`` checkpoint, no
    ``saved_model.pb``; TF Serving's session_bundle testdata): TF refuses it, and jaxsm says what it is instead
    of calling it an incomplete SavedModel whose writer may still be running."""
    with v1_graph():
        v = tf1.get_variable("v", initializer=tf.constant([1.0, 2.0]), use_resource=False)
        with tf1.Session() as sess:
            sess.run(v.initializer)
            tf1.train.Saver().save(sess, str(tmp_path / "export"), write_meta_graph=False)
            tf1.train.export_meta_graph(str(tmp_path / "export.meta"))
    with pytest.raises(OSError):
        tf.saved_model.load(str(tmp_path))
    with pytest.raises(UnsupportedFormatError, match="SessionBundle"):
        jaxsm.load(str(tmp_path))
