"""TF1 SavedModels probed against tf.saved_model.load, round 3: graph styles (legacy layers with batch-norm update
ops, bidirectional/static/raw RNNs, partitioned embedding lookups, scan/map_fn/while_loop/case), variables that
signatures update across calls, and signature/prune corner cases (intermediate-tensor inputs, op fetches, shared
placeholders, placeholder_with_default)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxsm
from tests.tfcompare import assert_close, v1_graph

tf = pytest.importorskip("tensorflow")
tf1 = tf.compat.v1


def _sig(inputs: dict, outputs: dict, method: str = "tensorflow/serving/predict"):
    info = tf1.saved_model.utils.build_tensor_info
    return tf1.saved_model.signature_def_utils.build_signature_def(
        {k: info(v) for k, v in inputs.items()}, {k: info(v) for k, v in outputs.items()}, method
    )


def _save(sess, export_dir, signatures: dict, **kwargs) -> str:
    builder = tf1.saved_model.Builder(str(export_dir))
    builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=signatures, **kwargs)
    builder.save()
    return str(export_dir)


def _export(export_dir, inputs: dict, outputs: dict, seed_vars: bool = True, **kwargs) -> str:
    """Initialize the current graph's variables (to non-trivial values) and save one serving_default signature."""
    with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        if seed_vars:
            rng = np.random.default_rng(1)
            for v in tf1.global_variables():
                if v.dtype.base_dtype == tf.float32:
                    v.load(rng.uniform(-1, 1, v.shape).astype(np.float32), sess)
        return _save(sess, export_dir, {"serving_default": _sig(inputs, outputs)}, **kwargs)


def _compare(export_dir: str, feeds: dict, key: str = "serving_default", calls: int = 1, rtol=1e-5, atol=1e-6):
    """Call the signature ``calls`` times in TF (tf.saved_model.load) and in jaxsm; outputs and variables match."""
    want_model = tf.saved_model.load(export_dir)
    want_fn = want_model.signatures[key]
    model = jaxsm.load(export_dir)
    fn = model.signatures[key]
    # the pure function run unjitted (op by op) on the loaded state must give the first call's outputs too
    eager = fn.pack(fn.pure()(model._state(), fn.convert(fn.bind((), feeds)))[0])
    for call in range(calls):
        want = want_fn(**{k: tf.constant(v) for k, v in feeds.items()})
        got = fn(**feeds)
        assert sorted(got) == sorted(want), "output keys"
        for k, w in want.items():
            assert_close(np.asarray(got[k]), w.numpy(), f"call {call}: output {k}", rtol=rtol, atol=atol)
            if call == 0:
                assert_close(np.asarray(eager[k]), w.numpy(), f"unjitted: output {k}", rtol=rtol, atol=atol)
    want_vars = {v.name: v.numpy() for v in want_model.variables}
    # (TF's loaded TF1 model lists its resource variables only; jaxsm lists every global variable)
    assert set(want_vars) <= {v.name for v in model.variables}, "variables"
    for v in model.variables:
        if v.name in want_vars:
            assert_close(v.numpy(), want_vars[v.name], f"variable {v.name} after {calls} calls", rtol=rtol, atol=atol)
    return model


def _session_run(export_dir: str, key: str, feeds: dict) -> dict:
    """A signature run the TF1 way: the SavedModel loaded into a Session."""
    with v1_graph(), tf1.Session() as sess:
        sig = tf1.saved_model.load(sess, ["serve"], export_dir).signature_def[key]
        fetches = {k: v.name for k, v in sig.outputs.items()}
        return sess.run(fetches, {sig.inputs[k].name: v for k, v in feeds.items()})


# -- 1. graph styles -----------------------------------------------------------------------------------------------
def _legacy():
    pytest.importorskip("tf_keras")
    from tf_keras.src.layers.rnn import legacy_cells
    from tf_keras.src.legacy_tf_layers import convolutional, core, normalization

    return core, convolutional, normalization, legacy_cells


def test_legacy_layers_with_batch_norm_update_ops(tmp_path):
    """tf.compat.v1.layers dense/conv2d/batch_normalization(training=placeholder_with_default) with UPDATE_OPS as
    control dependencies of the output: training calls move the moving statistics, and the next call sees them."""
    core, conv, norm, _ = _legacy()
    rng = np.random.default_rng(0)
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 5, 5, 2], name="x")
        training = tf1.placeholder_with_default(False, [], name="training")
        h = conv.conv2d(x, 3, 3, activation=tf.nn.relu)
        h = norm.batch_normalization(h, training=training, momentum=0.5)
        h = tf1.layers.flatten(h) if hasattr(tf1.layers, "flatten") else tf.reshape(h, [-1, 27])
        logits = core.dense(h, 2)
        with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
            logits = tf.identity(logits)
        export_dir = _export(tmp_path / "m", {"x": x, "training": training}, {"y": logits})
    x_val = rng.standard_normal((3, 5, 5, 2)).astype(np.float32)
    _compare(export_dir, {"x": x_val, "training": np.bool_(False)}, calls=2)
    _compare(export_dir, {"x": x_val, "training": np.bool_(True)}, calls=3, rtol=1e-4)


@pytest.mark.parametrize("cells", ["gru_lstm", "basic"])
def test_bidirectional_dynamic_rnn_with_sequence_length(tmp_path, cells):
    _, _, _, legacy = _legacy()
    rng = np.random.default_rng(2)
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, None, 3], name="x")
        seq = tf1.placeholder(tf.int32, [None], name="seq")
        if cells == "gru_lstm":
            fw, bw = legacy.GRUCell(4), legacy.LSTMCell(3, use_peepholes=True, num_proj=2)
        else:
            fw, bw = legacy.BasicRNNCell(3), legacy.BasicLSTMCell(2)
        (of, ob), (sf, sb) = tf1.nn.bidirectional_dynamic_rnn(fw, bw, x, sequence_length=seq, dtype=tf.float32)
        sb = sb.h if hasattr(sb, "h") else sb
        outputs = {"y": tf.concat([of, ob], -1), "sf": sf, "sb": sb}
        export_dir = _export(tmp_path / "m", {"x": x, "seq": seq}, outputs)
    x_val = rng.standard_normal((3, 4, 3)).astype(np.float32)
    _compare(export_dir, {"x": x_val, "seq": np.array([4, 1, 0], np.int32)})
    _compare(export_dir, {"x": x_val[:, :2], "seq": np.array([2, 2, 1], np.int32)})


def test_static_rnn_and_multi_cell(tmp_path):
    _, _, _, legacy = _legacy()
    rng = np.random.default_rng(3)
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 3, 2], name="x")
        seq = tf1.placeholder(tf.int32, [None], name="seq")
        cell = legacy.MultiRNNCell([legacy.GRUCell(3), legacy.BasicRNNCell(2)])
        outs, state = tf1.nn.static_rnn(cell, tf.unstack(x, axis=1), sequence_length=seq, dtype=tf.float32)
        outputs = {"y": tf.stack(outs, 1), "s0": state[0], "s1": state[1]}
        export_dir = _export(tmp_path / "m", {"x": x, "seq": seq}, outputs)
    _compare(export_dir, {"x": rng.standard_normal((2, 3, 2)).astype(np.float32), "seq": np.array([3, 1], np.int32)})


def test_raw_rnn(tmp_path):
    _, _, _, legacy = _legacy()
    rng = np.random.default_rng(4)
    with v1_graph():
        x = tf1.placeholder(tf.float32, [4, 2, 3], name="x")  # time-major
        seq = tf1.placeholder(tf.int32, [2], name="seq")
        inputs_ta = tf.TensorArray(tf.float32, size=4).unstack(x)
        cell = legacy.GRUCell(3)

        def loop_fn(time, cell_output, cell_state, loop_state):
            emit = cell_output
            state = cell.zero_state(2, tf.float32) if cell_output is None else cell_state
            finished = time >= seq
            nxt = tf1.cond(tf.reduce_all(finished), lambda: tf.zeros([2, 3]), lambda: inputs_ta.read(time))
            return finished, nxt, state, emit, None

        out_ta, final, _ = tf1.nn.raw_rnn(cell, loop_fn)
        outputs = {"y": out_ta.stack(), "s": final}
        export_dir = _export(tmp_path / "m", {"x": x, "seq": seq}, outputs)
    _compare(export_dir, {"x": rng.standard_normal((4, 2, 3)).astype(np.float32), "seq": np.array([4, 2], np.int32)})


_PARTS = ("indices", "values", "dense_shape")


@pytest.mark.parametrize("strategy", ["div", "mod"])
def test_partitioned_embedding_lookups(tmp_path, strategy):
    rng = np.random.default_rng(5)
    with v1_graph():
        ids = tf1.placeholder(tf.int64, [None], name="ids")
        sp = tf1.sparse_placeholder(tf.int64, [None, None], name="sp")
        wsp = tf1.sparse_placeholder(tf.float32, [None, None], name="wsp")
        emb = tf1.get_variable("emb", [7, 2], partitioner=tf1.fixed_size_partitioner(3))
        outputs = {
            "dense": tf1.nn.embedding_lookup(emb, ids, partition_strategy=strategy),
            "clip": tf1.nn.embedding_lookup(emb, ids, partition_strategy=strategy, max_norm=0.5),
        }
        for combiner in ("sum", "mean", "sqrtn"):
            outputs[combiner] = tf1.nn.embedding_lookup_sparse(emb, sp, None, strategy, combiner=combiner)
            outputs[f"w{combiner}"] = tf1.nn.embedding_lookup_sparse(emb, sp, wsp, strategy, combiner=combiner)
        export_dir = _export(tmp_path / "m", {"ids": ids, "sp": sp, "wsp": wsp}, outputs)
    idx = np.array([[0, 0], [0, 2], [1, 1], [3, 0], [3, 1]], np.int64)
    shape = np.array([4, 3], np.int64)
    want_model = tf.saved_model.load(export_dir)
    feeds = {
        "ids": np.array([6, 0, 3, 3, 5], np.int64),
        "sp": (idx, np.array([1, 6, 2, 2, 4], np.int64), shape),
        "wsp": (idx, rng.uniform(0.5, 2, 5).astype(np.float32), shape),
    }
    tf_feeds = {f"{k}_{part}": tf.constant(a) for k in ("sp", "wsp") for part, a in zip(_PARTS, feeds[k])}
    want = want_model.signatures["serving_default"](ids=tf.constant(feeds["ids"]), **tf_feeds)
    got = jaxsm.load(export_dir).signatures["serving_default"](
        ids=feeds["ids"], **{k: jaxsm.SparseTensor(*feeds[k]) for k in ("sp", "wsp")}
    )
    for k, w in want.items():
        g = np.asarray(got[k])
        w = w.numpy()
        if not jax.config.jax_enable_x64:
            w = w.astype(g.dtype) if w.dtype.kind == g.dtype.kind else w
        assert_close(g, w, k, rtol=1e-5)


def test_scan_map_fn_and_loops(tmp_path):
    rng = np.random.default_rng(6)
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        n = tf1.placeholder(tf.int32, [], name="n")
        cum = tf1.scan(lambda a, r: a * 0.5 + r, x, initializer=tf.zeros([3]))
        cum_rev = tf1.scan(
            lambda a, r: (a[0] + r, a[1] * r), x, initializer=(tf.zeros([3]), tf.ones([3])), reverse=True
        )
        mapped = tf1.map_fn(
            lambda r: (tf.reduce_sum(r), tf.cast(tf.argmax(r), tf.int32), r * 2.0),
            x,
            dtype=(tf.float32, tf.int32, tf.float32),
            parallel_iterations=1,
        )

        def body(i, acc):
            acc = tf1.cond(
                tf.equal(i % 2, 0),
                lambda: tf1.cond(i > 2, lambda: acc * 2.0, lambda: acc + 1.0),
                lambda: acc - tf.cast(i, tf.float32),
            )
            return i + 1, acc

        _, loop = tf1.while_loop(
            lambda i, acc: i < n,
            body,
            [0, tf.reduce_sum(x, 0)],
            parallel_iterations=3,
            back_prop=False,
            swap_memory=True,
        )
        case = tf1.case(
            [(tf.less(n, 2), lambda: x[0]), (tf.less(n, 4), lambda: x[-1] * 3.0)],
            default=lambda: -x[0],
            exclusive=False,
        )
        case_ex = tf1.case(
            {tf.equal(n, 1): lambda: tf.constant(1.0), tf.equal(n, 5): lambda: tf.constant(5.0)},
            default=lambda: tf.constant(0.0),
            exclusive=True,
        )
        outputs = {
            "cum": cum,
            "rev0": cum_rev[0],
            "rev1": cum_rev[1],
            "m0": mapped[0],
            "m1": mapped[1],
            "m2": mapped[2],
            "loop": loop,
            "case": case,
            "case_ex": case_ex,
        }
        export_dir = _export(tmp_path / "m", {"x": x, "n": n}, outputs)
    x_val = rng.standard_normal((4, 3)).astype(np.float32)
    for n_val in (0, 1, 3, 5, 6):
        _compare(export_dir, {"x": x_val, "n": np.int32(n_val)})


# -- 2. variables --------------------------------------------------------------------------------------------------
def test_mixed_variables_assign_add_ema_and_global_step(tmp_path):
    """Ref and resource variables from initializers; a signature whose output depends on assign_add, an EMA apply
    and a global-step increment: like TF's loaded signatures, each call runs the updates and the next call sees
    them."""
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = tf1.get_variable("w", [2, 2], initializer=tf1.truncated_normal_initializer(seed=3), use_resource=False)
        b = tf1.get_variable("b", [2], initializer=tf1.constant_initializer([0.5, -1.0]), use_resource=True)
        c = tf1.get_variable("c", [], initializer=tf1.zeros_initializer(), use_resource=False)
        d = tf1.get_variable("d", [2], tf.int32, initializer=tf1.ones_initializer(), use_resource=True)
        step = tf1.train.get_or_create_global_step()
        ema = tf1.train.ExponentialMovingAverage(0.9, num_updates=step, zero_debias=False)
        y = tf.matmul(x, w) + b
        bump = tf1.assign_add(c, tf.reduce_sum(x))
        bump_d = tf1.assign_add(d, [1, 2])
        with tf.control_dependencies([bump, bump_d]):
            ema_op = ema.apply([w, b, c])
        with tf.control_dependencies([ema_op]):
            inc = tf1.assign_add(step, 1)
        with tf.control_dependencies([inc]):
            outputs = {
                "y": tf.identity(y),
                "c": tf.identity(c),  # a ref read after the assign: the updated value
                "d": tf.identity(d.read_value()),
                "avg_w": tf.identity(ema.average(w)),
                "avg_c": ema.average(c).read_value() if hasattr(ema.average(c), "read_value") else ema.average(c),
                "step": tf.identity(step),
            }
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = _save(sess, tmp_path / "m", {"serving_default": _sig({"x": x}, outputs)})
    x_val = np.array([[1.0, 2.0], [-0.5, 3.0]], np.float32)
    _compare(export_dir, {"x": x_val}, calls=3)


def test_sharded_saver_and_init_from_checkpoint(tmp_path):
    """Variables restored by a sharded Saver (the SavedModel's own) whose values came from init_from_checkpoint."""
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    with v1_graph():
        with tf1.variable_scope("old"):
            tf1.get_variable("k", initializer=tf.constant([[1.0, 2.0], [3.0, 4.0]]))
            tf1.get_variable(
                "p",
                [5, 2],
                partitioner=tf1.fixed_size_partitioner(2),
                initializer=tf1.random_uniform_initializer(seed=4),
            )
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            ckpt = tf1.train.Saver(sharded=True).save(sess, str(ckpt_dir / "model"))
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        ids = tf1.placeholder(tf.int32, [None], name="ids")
        with tf1.variable_scope("new"):
            k = tf1.get_variable("k", [2, 2], use_resource=True)
            p = tf1.get_variable("p", [5, 2], partitioner=tf1.fixed_size_partitioner(2))
        tf1.train.init_from_checkpoint(ckpt, {"old/k": "new/k", "old/p": "new/p"})
        outputs = {"y": tf.matmul(x, k) + tf1.nn.embedding_lookup(p, ids)}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            builder = tf1.saved_model.Builder(str(tmp_path / "m"))
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                {"serving_default": _sig({"x": x, "ids": ids}, outputs)},
                saver=tf1.train.Saver(sharded=True),
            )
            builder.save()
    _compare(str(tmp_path / "m"), {"x": np.eye(2, dtype=np.float32), "ids": np.array([4, 1], np.int32)})


# -- 3. signatures and prune ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared_model(tmp_path_factory):
    """Signatures sharing a placeholder, one whose input is an intermediate tensor (TF feeds any tensor), one over
    a placeholder_with_default (as an input, and left out so its default is used), and an update op."""
    export_dir = str(tmp_path_factory.mktemp("shared") / "m")
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        scale = tf1.placeholder_with_default(tf.constant(2.0), [], name="scale")
        w = tf1.get_variable("w", initializer=tf.constant([[1.0, -1.0], [0.5, 2.0]]), use_resource=False)
        r = tf1.get_variable("r", initializer=tf.constant([3.0, 4.0]), use_resource=True)
        hidden = tf.nn.relu(tf.matmul(x, w), name="hidden")
        out = tf.reduce_sum(hidden * scale + r, 1, name="out")
        tf.identity(tf1.assign(w, w * 2.0), name="double_w")
        tf1.assign_add(r, tf.reduce_sum(x, 0))  # (an AssignAddVariableOp named so: the name is not used)
        signatures = {
            "serving_default": _sig({"x": x}, {"out": out, "hidden": hidden}),
            "scaled": _sig({"x": x, "scale": scale}, {"out": out}),
            "from_hidden": _sig({"hidden": hidden}, {"out": out}),
            "classify": _sig({"inputs": x}, {"scores": tf.nn.softmax(hidden)}, "tensorflow/serving/classify"),
        }
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            _save(sess, export_dir, signatures)
    return export_dir


@pytest.mark.parametrize("key", ["serving_default", "scaled", "from_hidden", "classify"])
def test_shared_placeholder_signatures(shared_model, key):
    x_val = np.array([[1.0, 2.0], [-3.0, 0.5]], np.float32)
    feeds = {
        "serving_default": {"x": x_val},
        "scaled": {"x": x_val, "scale": np.float32(-0.5)},
        "from_hidden": {"hidden": np.array([[1.0, -2.0], [0.0, 3.0]], np.float32)},
        "classify": {"inputs": x_val},
    }[key]
    _compare(shared_model, feeds, key)


def test_prune_feeds_variable_reads_and_fetches_ops(shared_model):
    """prune feeding the tensor a variable read gives (the ref variable's Identity-free read, the resource one's
    ReadVariableOp), and fetching update operations (None; their assignments happen)."""
    ref, model = tf.saved_model.load(shared_model), jaxsm.load(shared_model)
    reads = [op.name for op in model.graph.get_operations() if op.name.endswith("add/ReadVariableOp")]
    x_val = np.array([[1.0, 2.0]], np.float32)
    w_val = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    r_val = np.array([10.0, 20.0], np.float32)
    feeds = ["x:0", "w/read:0", f"{reads[0]}:0"]
    want = ref.prune(feeds, "out:0")(tf.constant(x_val), tf.constant(w_val), tf.constant(r_val))
    got = model.prune(feeds, "out:0")(x_val, w_val, r_val)
    assert_close(np.asarray(got), want.numpy(), "out with fed variable reads")
    # (an update fetched with a tensor that reads the variable races with it in TF: nothing orders the two)
    for fetches in (["AssignAddVariableOp", "x:0"], ["double_w"], ["double_w:0"], ["out:0"]):
        want = ref.prune("x:0", fetches)(tf.constant(x_val))
        got = model.prune("x:0", fetches)(x_val)
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            if w is None:
                assert g is None, f"{fetches}[{k}]: an operation fetches as None"
            else:
                assert_close(np.asarray(g), w.numpy(), f"{fetches}[{k}]")
    want_vars = {v.name: v.numpy() for v in ref.variables}
    for v in model.variables:
        if v.name in want_vars:
            assert_close(v.numpy(), want_vars[v.name], f"{v.name} after the pruned updates")
    assert_close(model.prune([], "w:0")(), np.array([[4.0, -4.0], [2.0, 8.0]], np.float32), "w doubled twice")


def test_table_init_ops_from_asset_files(tmp_path):
    """legacy_init_op / main_op filling tables from asset files read by column (TextFileInitializer with a tab
    delimiter, LINE_NUMBER and WHOLE_LINE), index_table_from_file with OOV buckets and vocab_size, and a
    variable assigned from a table lookup by the init op."""
    words = tmp_path / "words.txt"
    words.write_text("apple\t10\nbanana\t20\ncherry\t30\ndate\t40\n")
    plain = tmp_path / "plain.txt"
    plain.write_text("zero\none\ntwo\n")
    for init_key in ("legacy_init_op", "main_op"):
        export_dir = str(tmp_path / init_key)
        with v1_graph():
            s = tf1.placeholder(tf.string, [None], name="s")
            i = tf1.placeholder(tf.int64, [None], name="i")
            text = tf.constant(str(words))
            tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, text)
            plain_t = tf.constant(str(plain))
            tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, plain_t)
            by_col = tf1.lookup.StaticHashTable(
                tf1.lookup.TextFileInitializer(text, tf.string, 0, tf.int64, 1, delimiter="\t"), -1
            )
            by_line = tf1.lookup.StaticHashTable(
                tf1.lookup.TextFileInitializer(
                    text,
                    tf.int64,
                    tf1.lookup.TextFileIndex.LINE_NUMBER,
                    tf.string,
                    tf1.lookup.TextFileIndex.WHOLE_LINE,
                    delimiter="\t",
                ),
                "?",
            )
            index = tf1.lookup.StaticVocabularyTable(
                tf1.lookup.TextFileInitializer(
                    plain_t,
                    tf.string,
                    tf1.lookup.TextFileIndex.WHOLE_LINE,
                    tf.int64,
                    tf1.lookup.TextFileIndex.LINE_NUMBER,
                    vocab_size=2,
                ),
                num_oov_buckets=2,
            )
            total = tf1.get_variable("total", [], tf.int64, initializer=tf1.zeros_initializer(), use_resource=True)
            tables = tf1.tables_initializer()
            with tf.control_dependencies([tables]):
                init = tf.group(tables, tf1.assign(total, tf.reduce_sum(by_col.lookup(tf.constant(["banana", "x"])))))
            outputs = {
                "col": by_col.lookup(s),
                "line": by_line.lookup(i),
                "idx": index.lookup(s),
                "total": total + 0,
            }
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                _save(
                    sess,
                    export_dir,
                    {"serving_default": _sig({"s": s, "i": i}, outputs)},
                    assets_collection=tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS),
                    **{init_key: init},
                )
    words.unlink()
    plain.unlink()  # the tables must read the SavedModel's assets
    for init_key in ("legacy_init_op", "main_op"):
        export_dir = str(tmp_path / init_key)
        feeds = {"s": np.array([b"cherry", b"one", b"two", b"zzz", b"apple"], object), "i": np.array([3, 0, 7])}
        want = tf.saved_model.load(export_dir).signatures["serving_default"](
            s=tf.constant(feeds["s"]), i=tf.constant(feeds["i"])
        )
        got = jaxsm.load(export_dir).signatures["serving_default"](**feeds)
        for k, w in want.items():
            g, w = np.asarray(got[k]), w.numpy()
            if w.dtype == object:
                assert g.tolist() == w.tolist(), f"{init_key}: {k}"
            else:
                np.testing.assert_array_equal(g, w, err_msg=f"{init_key}: {k}")


def test_loops_with_shape_invariants_and_branch_assignments(tmp_path):
    """while_loop growing a tensor under shape_invariants, maximum_iterations, a nested loop bounded by the outer
    counter, and a cond inside the loop whose branches assign a variable (only the taken one does)."""
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None], name="x")
        n = tf1.placeholder(tf.int32, [], name="n")
        v = tf1.get_variable("v", initializer=np.float32(0.0), use_resource=True)
        _, grown = tf1.while_loop(
            lambda i, acc: i < n,
            lambda i, acc: (i + 1, tf.concat([acc, acc[-1:] * 2.0], 0)),
            [0, x],
            shape_invariants=[tf.TensorShape([]), tf.TensorShape([None])],
        )

        def outer(i, total):
            _, inner = tf1.while_loop(lambda j, t: j < i, lambda j, t: (j + 1, t + tf.cast(j, tf.float32)), (0, 0.0))

            def even():
                with tf.control_dependencies([v.assign_add(1.0)]):
                    return tf.identity(inner)

            def odd():
                with tf.control_dependencies([v.assign_sub(0.25)]):
                    return -inner

            return i + 1, total + tf1.cond(tf.equal(i % 2, 0), even, odd)

        _, total = tf1.while_loop(lambda i, t: True, outer, (0, tf.reduce_sum(x)), maximum_iterations=n)
        with tf.control_dependencies([total]):
            v_after = v.read_value()
        outputs = {"grown": grown, "total": total, "v": v_after}
        export_dir = _export(tmp_path / "m", {"x": x, "n": n}, outputs, seed_vars=False)
    for n_val in (0, 3):
        _compare(export_dir, {"x": np.array([1.0, -2.0], np.float32), "n": np.int32(n_val)}, calls=2)


@pytest.mark.parametrize("taken", [False, True])
def test_out_of_range_read_in_an_untaken_branch(tmp_path, taken):
    """A TensorArray read whose constant index is out of range, in a cond branch chosen at run time: TF runs it
    (and raises) only when the branch is taken. jaxsm raised at trace time whatever the predicate."""
    with v1_graph():
        x = tf1.placeholder(tf.float32, [2, 3], name="x")
        p = tf1.placeholder(tf.bool, [], name="p")
        ta = tf.TensorArray(tf.float32, size=2).unstack(x)
        y = tf1.cond(p, lambda: ta.read(5), lambda: ta.read(1) * 2.0)
        export_dir = _export(tmp_path / "m", {"x": x, "p": p}, {"y": y})
    feeds = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "p": np.bool_(taken)}
    if not taken:
        _compare(export_dir, feeds)
        return
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.saved_model.load(export_dir).signatures["serving_default"](**{k: tf.constant(v) for k, v in feeds.items()})
    with pytest.raises(jaxsm.errors.JaxsmError):
        jaxsm.load(export_dir).signatures["serving_default"](**feeds)


@pytest.mark.parametrize("fused", [False, True])
def test_stripped_default_attrs_and_unfused_batch_norm_training(tmp_path, fused):
    """A Builder export with strip_default_attrs=True (op attributes at their defaults left out of the GraphDef),
    with an unfused/fused training-mode batch normalization whose moving averages update every call."""
    core, conv, norm, _ = _legacy()
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 4, 4, 2], name="x")
        h = conv.conv2d(x, 2, 2, padding="same", use_bias=False)
        h = norm.batch_normalization(h, training=True, fused=fused, renorm=not fused, momentum=0.7)
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        y = core.dense(tf.reshape(h, [-1, 8]), 3)
        with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
            y = tf.identity(y)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = _save(
                sess, tmp_path / "m", {"serving_default": _sig({"x": x}, {"y": y})}, strip_default_attrs=True
            )
    x_val = np.random.default_rng(7).standard_normal((3, 4, 4, 2)).astype(np.float32)
    _compare(export_dir, {"x": x_val}, calls=3, rtol=1e-4, atol=1e-5)


def test_signature_tensors_that_are_not_placeholders(tmp_path):
    """Signature inputs that are a second op output (split:1) and a variable read, outputs that are an input
    passed through, a constant, one tensor under two keys and a variable read; a shape-changing
    assign (validate_shape=False) on a ref variable, seen by the next call."""
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        a, b = tf.split(x, 2, axis=1)
        w = tf1.get_variable("w", initializer=tf.constant([[1.0, 2.0], [3.0, 4.0]]), use_resource=False)
        grow = tf1.get_variable("grow", initializer=tf.constant([1.0]), use_resource=False, validate_shape=False)
        y = tf.matmul(a, w) - b
        with tf.control_dependencies([y]):
            grown = tf1.assign(grow, tf.concat([grow, grow * 2.0], 0), validate_shape=False)
        outputs = {"y": y, "y_again": y, "x": x, "k": tf.constant([7, 8]), "w": w.value(), "grown": tf.identity(grown)}
        signatures = {
            "serving_default": _sig({"x": x}, outputs),
            "from_read": _sig({"x": x, "w_read": w.value()}, {"y": y}),
        }
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = _save(sess, tmp_path / "m", signatures)
    x_val = np.arange(8, dtype=np.float32).reshape(2, 4)
    _compare(export_dir, {"x": x_val}, calls=3)
    # TF's loader leaves out signatures it cannot lift (this one, and the next): a Session runs them
    feeds = {"x": x_val, "w_read": np.array([[0.0, 1.0], [2.0, 0.0]], np.float32)}
    got = jaxsm.load(export_dir).signatures["from_read"](**feeds)["y"]
    assert_close(np.asarray(got), _session_run(export_dir, "from_read", feeds)["y"], "fed variable read")
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        b = tf.split(x, 2, axis=1)[1]
        y = tf.reduce_sum(x, 1, keepdims=True) * b
        with tf1.Session() as sess:
            export_dir = _save(sess, tmp_path / "split", {"serving_default": _sig({"x": x, "b": b}, {"y": y})})
    feeds = {"x": x_val, "b": np.array([[1.0, -1.0], [2.0, 0.0]], np.float32)}
    got = jaxsm.load(export_dir).signatures["serving_default"](**feeds)["y"]
    assert_close(np.asarray(got), _session_run(export_dir, "serving_default", feeds)["y"], "fed split:1")


def test_conds_of_operations_and_loops_over_variables(tmp_path):
    """cond branches that return operations (group/no_op, run for their assignments), a case whose branches
    assign, and a while_loop whose condition reads a variable its body assigns (ref and resource)."""
    with v1_graph():
        x = tf1.placeholder(tf.float32, [], name="x")
        k = tf1.placeholder(tf.int32, [], name="k")
        ref = tf1.get_variable("ref", initializer=np.float32(1.0), use_resource=False)
        res = tf1.get_variable("res", initializer=np.float32(0.5), use_resource=True)
        hits = tf1.get_variable("hits", initializer=np.int32(0), use_resource=False)
        op = tf1.cond(x > 0, lambda: tf.group(tf1.assign_add(ref, x), res.assign(x)), lambda: tf.no_op())
        with tf.control_dependencies([op]):
            chosen = tf1.case(
                [
                    (tf.equal(k, 0), lambda: tf.identity(tf1.assign_add(hits, 1))),
                    (tf.equal(k, 1), lambda: tf.identity(tf1.assign_add(hits, 10))),
                ],
                default=lambda: tf.identity(tf1.assign_sub(hits, 100)),
            )
        with tf.control_dependencies([chosen]):
            loop = tf1.while_loop(
                lambda i: ref.read_value() < 20.0,  # (``ref < 20.0`` would read the snapshot taken before the loop)
                lambda i: [tf.identity(i + 1, "step") + tf.cast(tf.equal(tf1.assign_add(ref, 3.0), 0.0), tf.int32)],
                [0],
            )
            with tf.control_dependencies([loop]):
                loop_res = tf1.while_loop(
                    lambda i: res.read_value() < 6.0, lambda i: [i + tf.cast(res.assign_add(2.0) > 0, tf.int32)], [0]
                )
        with tf.control_dependencies([loop_res]):
            outputs = {"chosen": chosen, "loop": loop, "loop_res": loop_res, "ref": ref + 0, "res": res + 0}
        export_dir = _export(tmp_path / "m", {"x": x, "k": k}, outputs, seed_vars=False)
    for x_val, k_val in ((2.0, 0), (-1.0, 1), (4.0, 5)):
        _compare(export_dir, {"x": np.float32(x_val), "k": np.int32(k_val)}, calls=2)


def test_string_and_integer_variables(tmp_path):
    """Ref and resource variables of strings, bools and int64 read and assigned by a signature."""
    with v1_graph():
        s = tf1.placeholder(tf.string, [None], name="s")
        names = tf1.get_variable("names", initializer=tf.constant(["a", "b"]), use_resource=False)
        last = tf1.get_variable("last", initializer=tf.constant(["?"]), use_resource=True)
        seen = tf1.get_variable("seen", initializer=tf.constant([False, False]), use_resource=False)
        count = tf1.get_variable("count", initializer=tf.constant(5, tf.int64), use_resource=True)
        hit = tf.reduce_any(tf.equal(s[:, None], names[None]), 0)
        with tf.control_dependencies([hit]):
            update = tf.group(
                last.assign(s[-1:]), tf1.assign(seen, tf.logical_or(seen, hit)), count.assign_add(tf.size(s, tf.int64))
            )
        with tf.control_dependencies([update]):
            outputs = {
                "joined": tf.strings.reduce_join(tf.concat([names, last.read_value()], 0), separator="+"),
                "seen": tf.identity(seen),
                "count": count.read_value(),
            }
        export_dir = _export(tmp_path / "m", {"s": s}, outputs, seed_vars=False)
    with pytest.warns(jaxsm.errors.EagerFallbackWarning):
        got_model = jaxsm.load(export_dir)
        fn = got_model.signatures["serving_default"]
        ref = tf.saved_model.load(export_dir).signatures["serving_default"]
        for batch in ([b"b", b"z"], [b"q"], [b"a", b"y"]):
            want = ref(s=tf.constant(batch))
            got = fn(s=np.array(batch, object))
            for k, w in want.items():
                w, g = w.numpy(), np.asarray(got[k])
                if isinstance(w, bytes) or w.dtype == object:
                    assert np.asarray(got[k], object).tolist() == np.asarray(w, object).tolist(), k
                else:
                    if not jax.config.jax_enable_x64:
                        w = w.astype(g.dtype) if w.dtype.kind == g.dtype.kind else w
                    assert_close(g, w, k)
