"""jaxsm.cli: ``jaxsm show`` against ``saved_model_cli show`` (the oracle) and the object graph, ``check``."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jaxsm.cli import main
from jaxsm.format import saved_model as sm

OPS_LINE = "The MetaGraph with tag set"


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def tf2(tf, tmp_path_factory):
    """(module, export dir): two signatures with different input names/dtypes/shapes, a nested variable."""

    class Sub(tf.Module):
        def __init__(self):
            super().__init__()
            self.v = tf.Variable([1.0, 2.0, 3.0])
            self.step = tf.Variable(0, trainable=False, dtype=tf.int64)

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.sub = Sub()

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * self.sub.v, "total": tf.reduce_sum(x)}

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.int64, name="ids"),
                tf.TensorSpec([2, None], tf.string, name="words"),
            ]
        )
        def lookup(self, ids, words):
            return {"next": ids + self.sub.step, "first": words[0]}

    model = Model()
    path = tmp_path_factory.mktemp("cli_tf2") / "model"
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve, "lookup": model.lookup})
    return model, path


@pytest.fixture(scope="module")
def tf1_dir(tf, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli_tf1") / "model"
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.ones([2, 1]))
        y = tf.matmul(x, w, name="y")
        sess.run(tf.compat.v1.global_variables_initializer())
        sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder = tf.compat.v1.saved_model.Builder(str(path))
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
        builder.add_meta_graph(["train", "gpu"])
        builder.save()
    return path


def _saved_model_cli(tf, *args: str) -> str:
    exe = shutil.which("saved_model_cli", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("saved_model_cli (TensorFlow's CLI) not found next to the Python executable")
    done = subprocess.run([exe, "show", *args], capture_output=True, text=True, timeout=300, check=True)
    return done.stdout


def _ours(capsys, *args: str) -> str:
    capsys.readouterr()
    rc = main(["show", *args])
    out = capsys.readouterr().out
    assert rc == 0, f"jaxsm show {' '.join(args)} exit status"
    return out


def _signature_part(text: str) -> str:
    """The tag-sets and SignatureDefs of ``show --all`` (ops lines and functions/objects dropped)."""
    for tail in ("\nConcrete Functions:", "\nObject graph"):
        if tail in text:
            text = text[: text.index(tail)]
    return "\n".join(line for line in text.splitlines() if not line.startswith(OPS_LINE))


def _ops_sets(text: str) -> list[set[str]]:
    return [ast.literal_eval(line.split("ops: ", 1)[1]) for line in text.splitlines() if line.startswith(OPS_LINE)]


# ---- the saved_model_cli part, compared with TF's own CLI


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--tag_set", "serve"],
        ["--tag_set", "serve", "--signature_def", "serving_default"],
        ["--tag_set", "serve", "--signature_def", "lookup"],
    ],
    ids=["tag_sets", "signature_keys", "serving_default", "lookup"],
)
def test_show_tf2_matches_saved_model_cli(tf, tf2, capsys, args):
    _, path = tf2
    expected = _saved_model_cli(tf, "--dir", str(path), *args)
    assert _ours(capsys, str(path), *args) == expected, f"jaxsm show {args} vs saved_model_cli show {args}"


@pytest.mark.parametrize("args", [[], ["--tag_set", "gpu,train"]], ids=["tag_sets", "signature_keys"])
def test_show_tf1_matches_saved_model_cli(tf, tf1_dir, capsys, args):
    expected = _saved_model_cli(tf, "--dir", str(tf1_dir), *args)
    assert _ours(capsys, str(tf1_dir), *args) == expected, f"jaxsm show {args} vs saved_model_cli show {args}"


def test_show_all_tf1_matches_saved_model_cli(tf, tf1_dir, capsys):
    expected = _saved_model_cli(tf, "--dir", str(tf1_dir), "--all")
    ours = _ours(capsys, str(tf1_dir), "--all")
    assert _signature_part(ours) == _signature_part(expected), "tag-sets and SignatureDefs of show --all"
    assert _ops_sets(ours) == _ops_sets(expected), "ops of each MetaGraph"


def test_show_all_tf2_matches_saved_model_cli(tf, tf2, capsys):
    _, path = tf2
    expected = _saved_model_cli(tf, "--dir", str(path), "--all")
    ours = _ours(capsys, str(path), "--all")
    assert _signature_part(ours) == _signature_part(expected), "tag-sets and SignatureDefs of show --all"
    assert _ops_sets(ours) == _ops_sets(expected), "ops of the MetaGraph"


# ---- SignatureDefs, derived from TF's own parse of saved_model.pb


def test_show_signature_defs_against_tf_proto(tf, tf2, capsys):
    from tensorflow.core.framework import types_pb2 as tf_types_pb2
    from tensorflow.core.protobuf import saved_model_pb2 as tf_saved_model_pb2

    _, path = tf2
    proto = tf_saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    signatures = proto.meta_graphs[0].signature_def
    assert {"serving_default", "lookup"} <= set(signatures), "signatures saved by TF"
    for key in ("serving_default", "lookup"):
        text = _ours(capsys, str(path), "--tag_set", "serve", "--signature_def", key)
        sig = signatures[key]
        assert f"Method name is: {sig.method_name}" in text, f"method name of {key}"
        for kind, infos in (("inputs", sig.inputs), ("outputs", sig.outputs)):
            for name, info in infos.items():
                dims = ", ".join(str(d.size) for d in info.tensor_shape.dim)
                block = (
                    f"  {kind}['{name}'] tensor_info:\n"
                    f"      dtype: {tf_types_pb2.DataType.Name(info.dtype)}\n"
                    f"      shape: ({dims})\n"
                    f"      name: {info.name}\n"
                )
                assert block in text, f"{kind}['{name}'] of signature {key}"
            listed = [line.split("'")[1] for line in text.splitlines() if line.startswith(f"  {kind}[")]
            assert listed == sorted(infos), f"{kind} keys of signature {key}"


# ---- the object graph


def _spec_text(spec) -> str:
    shape = tuple(spec.shape.as_list())
    return f"{spec.name}: TensorSpec(shape={shape}, dtype={spec.dtype.name})"


def test_object_graph(tf, tf2, capsys):
    model, path = tf2
    text = _ours(capsys, str(path), "--all")
    tree = text[text.index("Object graph") :]
    for attr, var in (("v", model.sub.v), ("step", model.sub.step)):
        line = f"{attr}: variable {var.dtype.name} shape={tuple(var.shape.as_list())} trainable={var.trainable}"
        assert f"      {line}" in tree, f"variable sub.{attr} nested under sub"
    assert "    sub: user_object '_generic_user_object'" in tree, "submodule node"
    for fn_name in ("serve", "lookup"):
        specs = ", ".join(_spec_text(s) for s in getattr(model, fn_name).input_signature)
        assert f"    {fn_name}: function with 1 concrete function" in tree, f"function {fn_name}"
        assert f"({specs})\n" in tree, f"input signature of {fn_name}"
    assert "    signatures: user_object 'signature_map'" in tree, "signatures node"
    for key in ("serving_default", "lookup"):
        assert f"      {key}: concrete function" in tree, f"signature {key} in the object graph"


def test_show_objects_flag(tf2, capsys):
    _, path = tf2
    text = _ours(capsys, str(path), "--tag_set", "serve", "--objects")
    assert "Object graph of MetaGraph ['serve']:" in text, "object graph header"


def test_object_graph_is_deterministic(tf2, capsys):
    _, path = tf2
    assert _ours(capsys, str(path), "--all") == _ours(capsys, str(path), "--all"), "two runs of show --all"


# ---- errors and check


def test_show_wrong_tag_set(tf1_dir, capsys):
    assert main(["show", str(tf1_dir), "--tag_set", "nope"]) == 1, "exit status for unknown tags"
    err = capsys.readouterr().err
    assert "['serve']" in err and "['gpu', 'train']" in err, f"available tag-sets in: {err}"


def test_show_unknown_signature(tf2, capsys):
    _, path = tf2
    assert main(["show", str(path), "--tag_set", "serve", "--signature_def", "nope"]) == 1
    assert "lookup, serving_default" in capsys.readouterr().err, "available signatures listed"


def test_show_incomplete_dir(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 1, "exit status for a dir without saved_model.pb"
    assert "incomplete" in capsys.readouterr().err


def test_check_healthy(tf2, capsys):
    _, path = tf2
    assert main(["check", str(path)]) == 0, f"check of a fresh export: {capsys.readouterr().out}"


def test_check_missing_shard(tf2, tmp_path, capsys):
    _, path = tf2
    copy = shutil.copytree(path, tmp_path / "m")
    (copy / "variables" / "variables.data-00000-of-00001").unlink()
    assert main(["check", str(copy)]) == 1, "exit status with a missing shard"
    out = capsys.readouterr().out
    assert "PROBLEM" in out and "variables.data-00000-of-00001" in out, f"missing shard reported in: {out}"


def test_check_corrupt_saved_model_pb(tf2, tmp_path, capsys):
    _, path = tf2
    copy = shutil.copytree(path, tmp_path / "m")
    data = (copy / "saved_model.pb").read_bytes()
    (copy / "saved_model.pb").write_bytes(data[: len(data) // 2])
    assert main(["check", str(copy)]) == 1, "exit status with a truncated saved_model.pb"
    assert "saved_model.pb" in capsys.readouterr().out


def test_ops_list_matches_registry(capsys):
    from jaxsm.ops import load_all

    assert main(["ops", "--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed == sorted(load_all()), "jaxsm ops --list prints every registered op, sorted"


def test_ops_report_counts_ops_of_the_model(capsys):
    from jaxsm.examples import MLP

    meta = sm.load_meta_graph(MLP)
    code = main(["ops", str(MLP)])
    out = capsys.readouterr().out
    counted = {}
    for f in meta.graph_def.library.function:
        for n in f.node_def:
            counted[n.op] = counted.get(n.op, 0) + 1
    for op in ("MatMul", "Relu", "Softmax"):
        line = next(ln for ln in out.splitlines() if ln.split()[0] == op)
        assert int(line.split()[2]) == counted[op], f"count of {op}"
    assert "SaveV2" not in out, "save/restore ops are never reported"
    assert code in (0, 1)


def test_run_and_demo(tmp_path, capsys):
    import numpy as np

    from jaxsm.examples import MLP

    ref = np.load(MLP / "expected.npz")
    np.save(tmp_path / "x.npy", ref["x"])
    assert (
        main(
            [
                "run",
                str(MLP),
                "--signature_def",
                "serving_default",
                "--inputs",
                f"features={tmp_path}/x.npy",
                "--outdir",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    np.testing.assert_allclose(np.load(tmp_path / "out" / "output_0.npy"), ref["y"], rtol=1e-5, err_msg="run output")
    assert main(["run", str(MLP), "--input_exprs", "features=np.ones((1, 8), np.float32)"]) == 0
    assert "Result for output key output_0" in capsys.readouterr().out
    assert main(["demo"]) == 0, "demo agrees with TF's stored output"


def test_no_command(capsys):
    assert main([]) == 2, "exit status without a subcommand"
