"""TF1 SavedModels (no object graph): jaxsm.load vs TF running the same graph in a tf.compat.v1 Session."""

from __future__ import annotations

import numpy as np
import pytest

import jaxsm
from jaxsm._proto import graph_pb2
from jaxsm.errors import EagerFallbackWarning, FunctionMatchError, GraphError, TagsNotFoundError
from jaxsm.tf1 import TF1Model, lower_control_flow
from tests.tfcompare import assert_close, v1_graph

tf = pytest.importorskip("tensorflow")
tf1 = tf.compat.v1


def build_info(t):
    return tf1.saved_model.utils.build_tensor_info(t)


def signature(inputs: dict, outputs: dict):
    return tf1.saved_model.signature_def_utils.build_signature_def(
        {k: build_info(v) for k, v in inputs.items()},
        {k: build_info(v) for k, v in outputs.items()},
        "tensorflow/serving/predict",
    )


def save(sess, export_dir, signatures: dict, tags=("serve",), **kwargs):
    builder = tf1.saved_model.Builder(str(export_dir))
    builder.add_meta_graph_and_variables(sess, list(tags), signature_def_map=signatures, **kwargs)
    builder.save()
    return str(export_dir)


# tf.compat.v1.layers needs Keras 2 (tf_keras); these build the same variables and ops it did.
def dense(x, units, name):
    with tf1.variable_scope(name):
        kernel = tf1.get_variable("kernel", [x.shape[-1], units], initializer=tf1.glorot_uniform_initializer())
        bias = tf1.get_variable("bias", [units], initializer=tf1.random_normal_initializer())
        return tf.nn.bias_add(tf.matmul(x, kernel), bias)


def conv2d(x, filters, size, name):
    with tf1.variable_scope(name):
        kernel = tf1.get_variable("kernel", [size, size, x.shape[-1], filters])
        bias = tf1.get_variable("bias", [filters], initializer=tf1.random_normal_initializer())
        return tf.nn.bias_add(tf1.nn.conv2d(x, kernel, [1, 1, 1, 1], "VALID"), bias)


def batch_normalization(x, name):
    """batch_normalization(training=False): FusedBatchNormV3(is_training=False) on the moving stats."""
    with tf1.variable_scope(name):
        c = x.shape[-1]
        gamma, beta = tf1.get_variable("gamma", [c]), tf1.get_variable("beta", [c])
        mean = tf1.get_variable("moving_mean", [c], trainable=False)
        var = tf1.get_variable("moving_variance", [c], trainable=False, initializer=tf1.ones_initializer())
        return tf1.nn.fused_batch_norm(x, gamma, beta, mean, var, epsilon=1e-3, is_training=False)[0]


def test_layers_signature_and_variables(tmp_path):
    """dense/conv2d/batch normalization (inference) behind a serving input, like an estimator export."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    extra = rng.standard_normal((2, 4)).astype(np.float32)
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 6, 6, 3], name="images")
        e = tf1.placeholder(tf.float32, [None, 4], name="extra")
        h = tf.nn.relu(conv2d(x, 4, 3, "conv"))
        h = batch_normalization(h, "bn")
        h = tf.reshape(h, [-1, 4 * 4 * 4])
        h = tf.concat([h, e], axis=1)
        logits = dense(h, 3, "logits")
        probs = tf.nn.softmax(logits)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            # Non-trivial batch-norm statistics so inference mode matters.
            for v in tf1.global_variables():
                if "moving" in v.name or "gamma" in v.name or "beta" in v.name:
                    v.load(rng.uniform(0.5, 1.5, v.shape).astype(np.float32), sess)
            feeds = {x: images, e: extra}
            expected = sess.run({"logits": logits, "probs": probs}, feeds)
            var_values = {v.name: sess.run(v) for v in tf1.global_variables()}
            export_dir = save(
                sess,
                tmp_path / "m",
                {"serving_default": signature({"images": x, "extra": e}, {"logits": logits, "probs": probs})},
            )

    m = jaxsm.load(export_dir)
    assert isinstance(m, TF1Model)
    got = m.signatures["serving_default"](images=images, extra=extra)
    assert sorted(got) == ["logits", "probs"], "signature output keys"
    for k in expected:
        assert_close(got[k], expected[k], f"serving_default output '{k}'", rtol=1e-4)
    assert [v.name for v in m.variables] == list(var_values), "variables in TF's collection order"
    for v in m.variables:
        assert_close(v.numpy(), var_values[v.name], f"variable {v.name}")


def test_tag_sets_and_init_ops(tmp_path):
    """Two MetaGraphs ({"serve"}, {"train"}) from one Builder; tags as str or list; bad tags: ValueError."""
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = tf1.get_variable("w", initializer=np.array([[1.0], [2.0]], np.float32))
        counter = tf1.get_variable(
            "counter",
            initializer=np.float32(0.0),
            trainable=False,
            collections=[tf1.GraphKeys.LOCAL_VARIABLES],
        )
        y = tf.matmul(x, w) + counter
        loss = tf.reduce_sum(y)
        tf1.train.GradientDescentOptimizer(0.1).minimize(loss)  # a train graph has gradient ops
        with tf.control_dependencies([tf1.local_variables_initializer()]):
            main_op = tf1.assign(counter, 5.0).op
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(main_op)
            expected = sess.run(y, {x: [[1.0, 1.0]]})
            builder = tf1.saved_model.Builder(str(tmp_path / "m"))
            builder.add_meta_graph_and_variables(
                sess, ["serve"], signature_def_map={"predict": signature({"x": x}, {"y": y})}, main_op=main_op
            )
            builder.add_meta_graph(["train", "gpu"], signature_def_map={"loss": signature({"x": x}, {"loss": loss})})
            builder.save()
    export_dir = str(tmp_path / "m")

    serve = jaxsm.load(export_dir, tags="serve")
    assert_close(
        serve.signatures["predict"](x=np.array([[1.0, 1.0]], np.float32))["y"],
        expected,
        "predict with main_op run",
    )
    assert_close(
        serve.signatures["predict"](np.array([[1.0, 1.0]], np.float32))["y"],
        expected,
        "one positional argument",
    )
    train = jaxsm.load(export_dir, tags=["gpu", "train"])
    assert sorted(train.signatures) == ["loss"], "train MetaGraph signatures"
    # main_op sits in the graph's collection, so TF runs it for the train MetaGraph too.
    expected_loss = (
        tf.saved_model.load(export_dir, tags=["train", "gpu"])
        .signatures["loss"](x=tf.constant([[1.0, 2.0]]))["loss"]
        .numpy()
    )
    assert_close(
        train.signatures["loss"](x=np.array([[1.0, 2.0]], np.float32))["loss"],
        expected_loss,
        "train MetaGraph loss",
    )
    with pytest.raises(TagsNotFoundError, match="serve") as info:
        jaxsm.load(export_dir, tags=["serve", "tpu"])
    assert isinstance(info.value, ValueError), "wrong tags raise a ValueError"
    with pytest.raises(ValueError):
        jaxsm.load(export_dir)  # two MetaGraphs, no tags
    serve.variables[0].assign(np.zeros((2, 1), np.float32))
    assert_close(
        serve.signatures["predict"](x=np.ones((1, 2), np.float32))["y"],
        np.array([[5.0]], np.float32),
        "after assigning w = 0",
    )


def test_asset_integer_vocabulary(tmp_path):
    """index_table_from_file over an integer vocabulary asset; the table initializer runs at load."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["17", "3", "42", "-5", "8"]) + "\n")
    ids = np.array([[42, 3], [99, -5]], np.int64)
    with v1_graph():
        q = tf1.placeholder(tf.int64, [None, 2], name="ids")
        path = tf.constant(str(vocab), name="vocab_path")
        tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, path)  # what index_table_from_file did
        table = tf1.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                path,
                tf.int64,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            default_value=-1,
        )
        idx = table.lookup(q)
        size = table.size()
        with tf1.Session() as sess:
            sess.run(tf1.tables_initializer())
            expected, expected_size = sess.run([idx, size], {q: ids})
            export_dir = save(
                sess,
                tmp_path / "m",
                {"lookup": signature({"ids": q}, {"idx": idx, "size": size})},
                main_op=tf1.tables_initializer(),
                assets_collection=tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS),
            )

    vocab.unlink()  # the SavedModel must use its own assets/ copy
    m = jaxsm.load(export_dir)
    assert m.asset_paths and all(a.asset_path.item().endswith(b"vocab.txt") for a in m.asset_paths), "asset path"
    tf_assets = [a.asset_path.numpy() for a in tf.saved_model.load(export_dir).asset_paths]  # TF's loader lists them
    assert [a.asset_path.item() for a in m.asset_paths] == tf_assets
    got = m.signatures["lookup"](ids=ids)
    np.testing.assert_array_equal(got["idx"], expected, err_msg="table lookup")
    assert int(got["size"]) == int(expected_size), "table size"
    m.initializer()
    np.testing.assert_array_equal(m.signatures["lookup"](ids=ids)["idx"], expected, err_msg="after re-init")


def test_string_inputs_and_string_table(tmp_path):
    """A TF1 export fed strings: a vocabulary-file table with string keys, lower-casing and string outputs, run
    op by op on the host (one EagerFallbackWarning) and equal to TF's Session."""
    vocab = tmp_path / "words.txt"
    vocab.write_text("a\nb\nzed\n")
    words = np.array([b"B", b"zed", b"q", b"a"], object)
    with v1_graph():
        q = tf1.placeholder(tf.string, [None], name="words")
        low = tf.strings.lower(q)
        idx = tf1.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                str(vocab),
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            default_value=-1,
        ).lookup(low)
        with tf1.Session() as sess:
            sess.run(tf1.tables_initializer())
            want = sess.run({"idx": idx, "low": low}, {q: words})
            export_dir = save(
                sess,
                tmp_path / "m",
                {"lookup": signature({"words": q}, {"idx": idx, "low": low})},
                main_op=tf1.tables_initializer(),
            )
    m = jaxsm.load(export_dir)
    with pytest.warns(EagerFallbackWarning, match="string"):
        got = m.signatures["lookup"](words=["B", "zed", "q", "a"])  # str converts to UTF-8 bytes, as in TF
    np.testing.assert_array_equal(np.asarray(got["idx"]), want["idx"])
    assert list(got["low"]) == list(want["low"])


def _loop_graph():
    """Static and run-time trip counts, a nested loop, a TensorArray in a loop, conds (one nested), all v1."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    n = tf1.placeholder(tf.int32, [], name="n")
    v = tf1.get_variable("v", initializer=np.array([1.0, 2.0, 3.0], np.float32), use_resource=False)
    r = tf1.get_variable("r", initializer=np.float32(0.5), use_resource=True)
    ta = tf.TensorArray(tf.float32, size=4)

    def body(i, acc, ta):
        def inner(j, a):
            return j + 1, a * 0.5 + v

        _, acc = tf1.while_loop(lambda j, a: j < 2, inner, [0, acc])
        return i + 1, acc + r, ta.write(i, acc)

    _, acc, ta = tf1.while_loop(lambda i, acc, ta: i < 4, body, [tf.constant(0), x, ta])
    stacked = ta.stack()
    _, dyn = tf1.while_loop(lambda i, s: i < n, lambda i, s: (i + 1, s * 1.5 + 1.0), [0, tf.reduce_sum(x)])
    total = tf.reduce_sum(x)
    y = tf1.cond(total > 0, lambda: acc + 1.0, lambda: tf1.cond(total < -10, lambda: acc * 0.0, lambda: acc - 1.0))
    return {"x": x, "n": n}, {"acc": acc, "stacked": stacked, "dyn": dyn, "y": y}


@pytest.mark.parametrize("x_scale", [1.0, -1.0, -100.0])
def test_v1_control_flow(tmp_path, x_scale):
    x_val = (np.arange(6, dtype=np.float32).reshape(2, 3) + 1) * x_scale
    n_val = np.int32(3)
    with v1_graph():
        inputs, outputs = _loop_graph()
        ops = {n.type for n in tf1.get_default_graph().get_operations()}
        assert {"Enter", "Exit", "NextIteration", "LoopCond", "Switch", "Merge"} <= ops, "graph uses v1 control flow"
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            expected = sess.run(outputs, {inputs["x"]: x_val, inputs["n"]: n_val})
            export_dir = save(sess, tmp_path / "m", {"serving_default": signature(inputs, outputs)})

    m = jaxsm.load(export_dir)
    got = m.signatures["serving_default"](x=x_val, n=n_val)
    for k in expected:
        assert_close(got[k], expected[k], f"output '{k}'", rtol=1e-5)


def test_lower_control_flow_removes_frames(tmp_path):
    with v1_graph() as g:
        _loop_graph()
        graph_def = graph_pb2.GraphDef.FromString(g.as_graph_def().SerializeToString())
    lowered = lower_control_flow(graph_def)
    assert not lowered.problems, f"rewrite problems: {lowered.problems}"
    top_ops = {n.op for n in lowered.graph_def.node}
    assert not top_ops & {"Enter", "Exit", "NextIteration", "LoopCond"}, "no frame ops at the top level"
    assert sum(n.op == "While" for n in lowered.graph_def.node) == 2, "two top-level loops"
    bodies = [f for f in lowered.graph_def.library.function if f.signature.name.endswith("/body")]
    assert len(bodies) == 3, "one body per loop, the nested loop included"
    for f in lowered.graph_def.library.function:
        assert not {n.op for n in f.node_def} & {"Enter", "Exit", "NextIteration", "LoopCond"}, f.signature.name


def test_cond_assigns_only_live_branch(tmp_path):
    """A cond whose branches assign a variable (RefSwitch into the branch): only the live write lands."""
    with v1_graph():
        p = tf1.placeholder(tf.bool, [], name="p")
        v = tf1.get_variable("v", initializer=np.float32(10.0), use_resource=False)

        def up():
            with tf.control_dependencies([tf1.assign_add(v, 1.0)]):
                return tf.identity(v.read_value() * 2.0)

        def down():
            with tf.control_dependencies([tf1.assign_sub(v, 3.0)]):
                return tf.identity(v.read_value() * 2.0)

        out = tf1.cond(p, up, down)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = save(sess, tmp_path / "m", {"step": signature({"p": p}, {"out": out})})
            expected = [sess.run(out, {p: b}) for b in (True, False, False)]
            expected_v = sess.run(v)
    m = jaxsm.load(export_dir)
    step = m.signatures["step"]
    got = [step(p=np.bool_(b))["out"] for b in (True, False, False)]
    for k, (g_, e_) in enumerate(zip(got, expected, strict=True)):
        assert_close(g_, e_, f"call {k}")
    assert_close(m.variables[0].numpy(), expected_v, "v after the three calls")


def test_prune_restore_and_graph(tmp_path):
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = tf1.get_variable("w", shape=[2, 2], initializer=tf1.ones_initializer())
        b = tf1.get_variable("b", shape=[2], initializer=tf1.zeros_initializer(), use_resource=True)
        y = tf.nn.relu(tf.matmul(x, w) + b, name="y")
        z = tf.reduce_sum(y, name="z")
        bump = tf1.assign_add(w, tf.ones([2, 2]), name="bump")
        saver = tf1.train.Saver()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = save(sess, tmp_path / "m", {"serving_default": signature({"x": x}, {"y": y})})
            sess.run(tf1.assign(w, [[1.0, -2.0], [3.0, 4.0]]))
            sess.run(tf1.assign(b, [0.5, -0.5]))
            ckpt = saver.save(sess, str(tmp_path / "other" / "model.ckpt"), global_step=7)
            x_val = np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32)
            expected_y, expected_z = sess.run([y, z], {x: x_val})
            expected_w = sess.run(w)

    m = jaxsm.load(export_dir)
    assert_close(m.prune("x:0", "y:0")(x_val), np.maximum(x_val @ np.ones((2, 2), np.float32), 0), "before restore")
    m.restore(ckpt)
    assert_close(m.variables[0].numpy(), expected_w, "w restored from the second checkpoint")
    f = m.prune(["x:0"], {"y": "y:0", "parts": ["z:0", "y:0"]})
    got = f(x_val)
    assert set(got) == {"y", "parts"} and isinstance(got["parts"], list), "fetch structure kept"
    assert_close(got["y"], expected_y, "pruned y")
    assert_close(got["parts"][0], expected_z, "pruned z")
    assert_close(m.signatures["serving_default"](x=x_val)["y"], expected_y, "signature after restore")
    assert m.prune([], [bump.op.name, "w:0"])()[0] is None, "operations fetch as None"
    assert_close(m.variables[0].numpy(), expected_w + 1, "assign_add ran once through prune")

    graph = m.graph
    assert graph.get_operation_by_name("y").type == "Relu", "op type"
    t = graph.get_tensor_by_name("x:0")
    assert t.dtype == np.float32 and t.op.type == "Placeholder", "tensor dtype/op"
    assert graph.get_tensor_by_name("y:0").op.inputs[0].name.endswith(":0"), "op inputs are tensors"
    assert graph.get_operation_by_name("w").get_attr("dtype") == np.float32, "type attrs decode to dtypes"
    assert len(graph.as_graph_def().node) == len(graph.get_operations()), "as_graph_def"
    with pytest.raises(KeyError):
        graph.get_operation_by_name("nope")
    with pytest.raises(GraphError):
        m.prune("x:0", "nope:0")


def test_ref_variable_ops(tmp_path):
    """Assign/AssignAdd/ScatterUpdate/ScatterAdd/CountUpTo/IsVariableInitialized/StridedSliceAssign/ScatterNdMax on
    VariableV2 refs."""
    with v1_graph():
        v = tf1.get_variable("v", initializer=np.arange(4, dtype=np.float32), use_resource=False)
        c = tf1.get_variable("c", initializer=np.int64(0), use_resource=False, dtype=tf.int64)
        upd = tf1.scatter_update(v, [1, 3], [10.0, 30.0])
        add = tf1.scatter_add(v, [0, 0], [1.0, 2.0])
        sub = tf1.scatter_sub(v, [2], [5.0])
        inc = tf1.assign_add(v, tf.ones([4]))
        count = tf1.count_up_to(c, 100)
        inited = tf1.is_variable_initialized(v)
        sliced = v[1::2].assign([7.0, 8.0])  # StridedSliceAssign
        nd_max = tf.raw_ops.ScatterNdMax(ref=v, indices=[[0], [0], [2]], updates=[50.0, 60.0, -1.0])
        ops = (upd, add, sub, inc, count, count, inited, sliced, nd_max)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = save(sess, tmp_path / "m", {})
            expected = [sess.run(op) for op in ops]
    m = jaxsm.load(export_dir)
    names = [t.name for t in ops]
    for k, (name, e) in enumerate(zip(names, expected, strict=True)):
        got = m.prune([], name)()
        assert_close(got, e, f"step {k}: {name}")


def test_loop_state_dynamic_tensor_array_and_default_predicate(tmp_path):
    """A loop that assigns a ref variable each step (RefEnter), a dynamic_size TensorArray, and a cond on a
    placeholder_with_default predicate (known at trace time when not fed) whose untaken branch assigns."""
    x_val = np.array([1.0, 2.0], np.float32)
    with v1_graph():
        x = tf1.placeholder(tf.float32, [2], name="x")
        v = tf1.get_variable("v", initializer=np.float32(0.0), use_resource=False)
        training = tf1.placeholder_with_default(False, [], name="training")
        ta = tf.TensorArray(tf.float32, size=0, dynamic_size=True)

        def body(i, ta):
            with tf.control_dependencies([tf1.assign_add(v, 1.0)]):
                return i + 1, ta.write(i, x * tf.cast(i, tf.float32))

        _, ta = tf1.while_loop(lambda i, ta: i < 3, body, [0, ta])
        stacked = ta.stack()

        def train_branch():
            with tf.control_dependencies([tf1.assign_sub(v, 100.0)]):
                return tf.identity(x * 2.0)

        y = tf1.cond(training, train_branch, lambda: tf.identity(x))
        outputs = {"stacked": stacked, "y": y}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = save(sess, tmp_path / "m", {"serving_default": signature({"x": x}, outputs)})
            expected = sess.run(outputs, {x: x_val})
            expected_v = sess.run(v)
    m = jaxsm.load(export_dir)
    fn = m.signatures["serving_default"]
    got = fn(x=x_val)
    for k in expected:
        assert_close(got[k], expected[k], f"output '{k}'")
    assert_close(m.variables[0].numpy(), expected_v, "v after one call (3 loop steps, no training branch)")
    flat, updated = fn.pure()({v_.key: v_.value() for v_ in m.variables}, [x_val])
    assert_close(updated[m.variables[0].key], expected_v + 3, "pure function, unjitted: returned state")


def test_dynamic_rnn_v1_control_flow(tmp_path):
    """tf.compat.v1.nn.bidirectional_dynamic_rnn (LSTM + GRU cells, sequence_length) with v1 control flow: the
    classic TF1 RNN export. Built in a subprocess because the v1 cells need legacy Keras (TF_USE_LEGACY_KERAS)."""
    import os
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("tf_keras")
    code = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        v1 = tf.compat.v1
        v1.disable_control_flow_v2()
        g = tf.Graph()
        x_val = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
        with g.as_default():
            x = v1.placeholder(tf.float32, [None, 5, 3], name="x")
            seq = v1.placeholder(tf.int32, [None], name="seq")
            (of, ob), _ = v1.nn.bidirectional_dynamic_rnn(
                v1.nn.rnn_cell.LSTMCell(4), v1.nn.rnn_cell.GRUCell(3), x, sequence_length=seq, dtype=tf.float32)
            y = tf.identity(tf.concat([of, ob], -1), name="y")
            with v1.Session(graph=g) as s:
                s.run(v1.global_variables_initializer())
                want = s.run(y, {{x: x_val, seq: [5, 3]}})
                v1.saved_model.simple_save(s, {str(tmp_path / "m")!r}, inputs={{"x": x, "seq": seq}},
                                           outputs={{"y": y}})
        np.savez({str(tmp_path / "ref.npz")!r}, x=x_val, y=want)
    """)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    ref = np.load(tmp_path / "ref.npz")
    got = jaxsm.load(str(tmp_path / "m")).signatures["serving_default"](x=ref["x"], seq=np.array([5, 3], np.int32))
    np.testing.assert_allclose(np.asarray(got["y"]), ref["y"], rtol=1e-5, atol=1e-6, err_msg="bidirectional RNN")


def _example(x, color, tags, ids, age) -> bytes:
    f = {
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=x)),
        "age": tf.train.Feature(float_list=tf.train.FloatList(value=[age])),
        "color": tf.train.Feature(bytes_list=tf.train.BytesList(value=color)),
        "tag": tf.train.Feature(bytes_list=tf.train.BytesList(value=tags)),
        "id": tf.train.Feature(int64_list=tf.train.Int64List(value=ids)),
    }
    return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString()


def test_estimator_style_export_with_feature_columns(tmp_path):
    """What a canned estimator's parsing serving input receiver exports: serialized tf.Examples -> ParseExampleV2
    -> feature columns (numeric, bucketized, vocabulary-list embedding, hashed indicator, identity embedding with
    sqrtn: string tables, FarmHash buckets, SparseFillEmptyRows/SparseReshape/SparseSegmentSqrtN) -> a matmul.
    Fed strings, the signature runs op by op on the host and equals TF's Session."""
    fc = tf1.feature_column
    batch = np.array(
        [
            _example([1, 2], [b"red", b"blue"], [b"a"], [1, 3], 25.0),
            _example([0, -1], [], [b"b", b"c"], [], 70.0),
            _example([3, 3], [b"pink"], [], [4], 10.0),
        ],
        object,
    )
    with v1_graph():
        ser = tf1.placeholder(tf.string, [None], name="input_example_tensor")
        color = fc.categorical_column_with_vocabulary_list("color", ["red", "green", "blue"])
        cols = [
            fc.numeric_column("x", shape=[2]),
            fc.embedding_column(color, 3),
            fc.indicator_column(fc.categorical_column_with_hash_bucket("tag", 10)),
            fc.embedding_column(fc.categorical_column_with_identity("id", 5), 2, combiner="sqrtn"),
            fc.bucketized_column(fc.numeric_column("age"), [18, 30, 60]),
        ]
        net = fc.input_layer(tf1.io.parse_example(ser, fc.make_parse_example_spec(cols)), cols)
        w = tf1.get_variable("w", [net.shape[1], 2], initializer=tf1.random_normal_initializer(seed=1))
        out = tf.matmul(net, w)
        with tf1.Session() as sess:
            sess.run([tf1.global_variables_initializer(), tf1.tables_initializer()])
            want = sess.run(out, {ser: batch})
            export_dir = save(
                sess,
                tmp_path / "m",
                {"serving_default": signature({"examples": ser}, {"out": out})},
                main_op=tf1.tables_initializer(),
            )
    m = jaxsm.load(export_dir)
    with pytest.warns(EagerFallbackWarning, match="string"):
        got = m.signatures["serving_default"](examples=batch)["out"]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


@pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")
def test_sparse_signature_inputs_and_outputs(tmp_path):
    """A TF1 signature whose input is a sparse_placeholder and whose output is a SparseTensor (TensorInfo
    coo_sparse): fed and returned as jaxsm.SparseTensor, values as TF's session gives them."""
    export_dir = str(tmp_path / "m")
    g = tf.Graph()
    with g.as_default():
        sp = tf.compat.v1.sparse_placeholder(tf.float32, shape=[None, 4], name="sp")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant([[1.0], [2.0], [3.0], [4.0]]))
        dense = tf.matmul(tf.sparse.to_dense(sp), w)
        doubled = tf.sparse.SparseTensor(sp.indices, sp.values * 2.0, sp.dense_shape)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(export_dir)
            sig = tf.compat.v1.saved_model.predict_signature_def({"sp": sp}, {"dense": dense, "doubled": doubled})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
            builder.save()
            value = tf.compat.v1.SparseTensorValue([[0, 1], [2, 0], [2, 3]], [1.5, -2.0, 4.0], [3, 4])
            expected = sess.run({"dense": dense, "doubled": doubled}, {sp: value})
    fn = jaxsm.load(export_dir).signatures["serving_default"]
    out = fn(sp=jaxsm.SparseTensor(np.array(value.indices), np.array(value.values, np.float32), np.array([3, 4])))
    np.testing.assert_allclose(np.asarray(out["dense"]), expected["dense"], rtol=1e-6, err_msg="dense")
    assert isinstance(out["doubled"], jaxsm.SparseTensor), "a sparse output is a jaxsm.SparseTensor"
    for k in ("indices", "values", "dense_shape"):
        np.testing.assert_array_equal(np.asarray(getattr(out["doubled"], k)), getattr(expected["doubled"], k), k)
    with pytest.raises(FunctionMatchError, match="SparseTensor"):
        fn(sp=np.zeros((3, 4), np.float32))


def test_local_variables_and_signature_specs(tmp_path):
    """Local variables (tf.compat.v1.metrics' counters) are listed after the global ones, as TF's loaded model
    lists them, and initialized by the init op, not read from the checkpoint; signatures describe their inputs
    and outputs with TensorSpecs."""
    export_dir = str(tmp_path / "m")
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant([[1.0], [2.0]]))
        y = tf.matmul(x, w, name="y")
        mean, update = tf.compat.v1.metrics.mean(y)
        with tf.compat.v1.Session() as sess:
            sess.run([tf.compat.v1.global_variables_initializer(), tf.compat.v1.local_variables_initializer()])
            builder = tf.compat.v1.saved_model.Builder(export_dir)
            sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                signature_def_map={"serving_default": sig},
                main_op=tf.compat.v1.local_variables_initializer(),
            )
            builder.save()
    ref = tf.saved_model.load(export_dir)
    got = jaxsm.load(export_dir)
    assert [v.name for v in got.variables] == [v.name for v in ref.variables], "global then local variables"
    step = got.prune(["x:0"], [update.name])
    np.testing.assert_allclose(np.asarray(step(np.array([[1.0, 1.0]], np.float32))[0]), 3.0, err_msg="metric")
    fn, tf_fn = got.signatures["serving_default"], ref.signatures["serving_default"]
    (_, inputs), (_, tf_inputs) = fn.structured_input_signature, tf_fn.structured_input_signature
    assert {k: (s.shape, s.dtype.name) for k, s in inputs.items()} == {
        k: (tuple(s.shape.as_list()), s.dtype.name) for k, s in tf_inputs.items()
    }, "input specs"
    assert {k: s.shape for k, s in fn.structured_outputs.items()} == {
        k: tuple(t.shape.as_list()) for k, t in tf_fn.structured_outputs.items()
    }, "output shapes"


def test_gradients_through_defun_calls_are_symbolic_gradients(tmp_path):
    """tf.gradients through a TF1 Defun call writes a SymbolicGradient node (the vjp of the function), also for
    a function with an integer input and an integer output."""
    from tensorflow.python.framework import function

    with v1_graph():

        @function.Defun(tf.float32, tf.float32, tf.int32)
        def F(x, y, k):
            scale = tf.cast(k, tf.float32)
            return x * y * scale + tf.sin(x), x - tf.square(y), k * 2

        x = tf1.placeholder(tf.float32, [3], name="x")
        y = tf1.placeholder(tf.float32, [3], name="y")
        k = tf1.placeholder(tf.int32, [], name="k")
        a, b, c = F(x, y, k)
        gx, gy = tf.gradients([a, 2.0 * b], [x, y])
        assert gx.op.type == "SymbolicGradient"
        feeds = {x: [0.5, -1.0, 2.0], y: [1.5, 0.25, -3.0], k: 3}
        with tf1.Session() as sess:
            expected = sess.run({"gx": gx, "gy": gy, "a": a, "c": c}, feeds)
            outputs = {"gx": gx, "gy": gy, "a": a, "c": c}
            save(sess, str(tmp_path / "m"), {"serving_default": signature({"x": x, "y": y, "k": k}, outputs)})
    m = jaxsm.load(str(tmp_path / "m"))
    inputs = {"x": np.float32([0.5, -1.0, 2.0]), "y": np.float32([1.5, 0.25, -3.0]), "k": np.int32(3)}
    got = m.signatures["serving_default"](**inputs)
    for name in expected:
        assert_close(got[name], expected[name], name, rtol=1e-6)
