"""TF1 SavedModels probed against a TF Session, round 4: v1 control flow (TensorArrays in while_loops, nested
loops and conds, variable updates inside loop bodies, maximum_iterations, case/switch_case), estimator-era
serving exports built by hand (ParseExample, feature columns, classify/regress/predict signatures) and graph-level
oddities (placeholder_with_default, partitioned and ref variables, main_op tables, sharded Savers, device
placements, queues that cannot run, prunes between intermediate tensors)."""

from __future__ import annotations

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


def _assert_same(got, want, what: str, rtol=1e-5, atol=1e-6) -> None:
    want = np.asarray(want)
    got = np.asarray(got)
    if want.dtype == object or want.dtype.kind in "SU":
        assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
        np.testing.assert_array_equal(got.astype(object), want.astype(object), err_msg=what)
    else:
        assert_close(got, want, what, rtol=rtol, atol=atol)


def _run_both(export_dir, sess, inputs: dict, outputs: dict, calls: list[dict], variables=(), key="serving_default"):
    """Run each feed dict through the saved signature in jaxsm and through ``sess`` (the session the export was
    saved from, so its state is the saved state): outputs after each call and the variables after all match."""
    model = jaxsm.load(export_dir)
    fn = model.signatures[key]
    for k, feeds in enumerate(calls):
        want = sess.run(outputs, {inputs[name]: v for name, v in feeds.items()})
        # the pure function run unjitted (op by op) on the current state gives the call's outputs too
        eager = fn.pack(fn.pure()(model._state(), fn.convert(fn.bind((), feeds)))[0])
        got = fn(**feeds)
        assert sorted(got) == sorted(want), "output keys"
        for name, w in want.items():
            _assert_same(got[name], w, f"call {k}: {name}")
            _assert_same(eager[name], w, f"call {k}, unjitted: {name}")
    by_name = {v.name: v for v in model.variables}
    for v in variables:
        _assert_same(by_name[v.name].numpy(), sess.run(v), f"variable {v.name} after {len(calls)} calls")
    return model


def _export_and_compare(tmp_path, build, calls: list[dict]):
    """``build()`` (in a fresh v1-control-flow graph) returns (inputs, outputs, variables to check)."""
    with v1_graph():
        inputs, outputs, variables = build()
        with tf1.Session(config=tf1.ConfigProto(allow_soft_placement=True)) as sess:
            sess.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
            builder = tf1.saved_model.Builder(str(tmp_path / "m"))
            builder.add_meta_graph_and_variables(sess, ["serve"], {"serving_default": _sig(inputs, outputs)})
            builder.save()
            return _run_both(str(tmp_path / "m"), sess, inputs, outputs, calls, variables)


# -- 1. v1 control flow --------------------------------------------------------------------------------------------
def _ta_write_stack():
    n = tf1.placeholder(tf.int32, [], name="n")
    x = tf1.placeholder(tf.float32, [None], name="x")
    ta = tf.TensorArray(tf.float32, size=n)
    _, ta = tf1.while_loop(lambda i, ta: i < n, lambda i, ta: (i + 1, ta.write(i, x * tf.cast(i, tf.float32))), [0, ta])
    return {"n": n, "x": x}, {"y": ta.stack(), "size": ta.size()}, []


def _ta_dynamic_unknown_shape():
    n = tf1.placeholder(tf.int32, [], name="n")
    x = tf1.placeholder(tf.float32, [None], name="x")
    ta = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False, clear_after_read=False)

    def body(i, ta):
        return i + 1, ta.write(i, tf.reduce_sum(x[: i + 1]) * x)

    _, ta = tf1.while_loop(lambda i, ta: i < n, body, [0, ta])
    return {"n": n, "x": x}, {"y": ta.stack(), "last": ta.read(ta.size() - 1)}, []


def _ta_scatter_gather():
    x = tf1.placeholder(tf.float32, [None, 2], name="x")
    idx = tf1.placeholder(tf.int32, [None], name="idx")
    n = tf.shape(x)[0]
    src = tf.TensorArray(tf.float32, size=n, clear_after_read=False).scatter(idx, x)
    dst = tf.TensorArray(tf.float32, size=n)

    def body(i, dst):
        return i + 1, dst.write(i, src.read(n - 1 - i) * 2.0)

    _, dst = tf1.while_loop(lambda i, d: i < n, body, [0, dst])
    return {"x": x, "idx": idx}, {"g": dst.gather(tf.range(n - 1, -1, -1)), "s": src.stack()}, []


def _ta_split_concat():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    lengths = tf1.placeholder(tf.int64, [None], name="lengths")
    src = tf.TensorArray(tf.float32, size=tf.size(lengths), infer_shape=False).split(x, lengths)
    out = tf.TensorArray(tf.float32, size=tf.size(lengths), infer_shape=False)

    def body(i, out):
        e = src.read(i)
        return i + 1, out.write(i, tf.concat([e, tf.reduce_max(e, 0, keepdims=True)], 0))

    _, out = tf1.while_loop(lambda i, o: i < tf.size(lengths), body, [0, out])
    return {"x": x, "lengths": lengths}, {"c": out.concat()}, []


def _nested_while_in_cond_in_while():
    x = tf1.placeholder(tf.float32, [None], name="x")
    n = tf1.placeholder(tf.int32, [], name="n")

    def inner(v, k):
        return tf1.while_loop(lambda j, a: j < k, lambda j, a: (j + 1, a * 0.5 + 1.0), [0, v])[1]

    def body(i, acc):
        acc = tf1.cond(tf.equal(i % 2, 0), lambda: inner(acc, i + 1), lambda: acc - tf.cast(i, tf.float32))
        return i + 1, acc

    _, y = tf1.while_loop(lambda i, a: i < n, body, [0, x])
    return {"x": x, "n": n}, {"y": y}, []


def _loop_reads_and_assign_adds(use_resource):
    def build():
        x = tf1.placeholder(tf.float32, [], name="x")
        v = tf1.get_variable("v", initializer=np.float32(1.0), use_resource=use_resource)
        count = tf1.get_variable("count", initializer=np.int32(0), use_resource=use_resource)

        def body(i, acc):
            with tf.control_dependencies([tf1.assign_add(count, 1)]):
                read = v.read_value() if use_resource else v + 0.0  # (Identity would alias the ref's buffer)
            with tf.control_dependencies([read]):
                upd = tf1.assign_add(v, x)
            with tf.control_dependencies([upd]):
                return i + 1, acc + read

        _, acc = tf1.while_loop(lambda i, a: i < 3, body, [0, 0.0], parallel_iterations=1)
        return {"x": x}, {"acc": acc}, [v, count]

    return build


def _maximum_iterations_no_back_prop():
    x = tf1.placeholder(tf.float32, [None], name="x")
    m = tf1.placeholder(tf.int32, [], name="m")
    i, y = tf1.while_loop(
        lambda i, y: tf.reduce_sum(y) < 100.0,
        lambda i, y: [i + 1, y * 2.0 + 1.0],
        [0, x],
        maximum_iterations=m,
        back_prop=False,
    )
    # a loop with a static trip count that also stops early on its condition
    j, z = tf1.while_loop(
        lambda j, z: z < 10.0, lambda j, z: [j + 1, z + 3.0], [0, tf.reduce_min(x)], maximum_iterations=4
    )
    return {"x": x, "m": m}, {"i": i, "y": y, "j": j, "z": z}, []


def _cond_branch_variable_read(use_resource):
    def build():
        p = tf1.placeholder(tf.bool, [], name="p")
        x = tf1.placeholder(tf.float32, [2], name="x")
        v = tf1.get_variable("v", initializer=np.array([3.0, -4.0], np.float32), use_resource=use_resource)
        u = tf1.get_variable("u", initializer=np.array([0.5, 1.0], np.float32), use_resource=use_resource)
        y = tf1.cond(p, lambda: v.value() if use_resource else tf.identity(v), lambda: x * 2.0)
        # (a fetched ref read aliases the variable's buffer in TF: the assignments go to another variable)
        z = tf1.cond(p, lambda: tf1.assign_add(u, y), lambda: tf.identity(u) - 1.0)
        w = tf1.cond(p, lambda: x, lambda: u.value() if use_resource else u)
        return {"p": p, "x": x}, {"y": y, "z": z, "w": w}, [v, u]

    return build


def _case_and_switch_case():
    k = tf1.placeholder(tf.int32, [], name="k")
    x = tf1.placeholder(tf.float32, [None], name="x")
    y = tf1.case([(tf.equal(k, 0), lambda: x + 1.0), (tf.greater(k, 2), lambda: x * x)], default=lambda: -x)
    y2 = tf1.case({tf.less(k, 1): lambda: x - 1.0, tf.less(k, 3): lambda: x * 3.0}, default=lambda: x, exclusive=False)
    z = tf.switch_case(k, [lambda: tf.reduce_sum(x), lambda: tf.reduce_max(x)], default=lambda: tf.constant(-1.0))
    return {"k": k, "x": x}, {"y": y, "y2": y2, "z": z}, []


def _cond_branch_reads_after_its_assign():
    """A v1 cond branch that assigns a ref variable and then reads it through ``v/read`` (entering the branch by
    a Switch, which forwards the buffer in TF), and a loop body doing the same inside a cond."""
    p = tf1.placeholder(tf.bool, [], name="p")
    x = tf1.placeholder(tf.float32, [], name="x")
    v = tf1.get_variable("v", initializer=np.float32(1.0), use_resource=False)

    def taken():
        with tf.control_dependencies([tf1.assign_add(v, x)]):
            return v * 10.0

    y = tf1.cond(p, taken, lambda: v - 1.0)

    def body(i, acc):
        def bump():
            with tf.control_dependencies([tf1.assign_add(v, 1.0)]):
                return acc + v

        return i + 1, tf1.cond(tf.equal(i % 2, 0), bump, lambda: acc - v)

    with tf.control_dependencies([y]):
        _, z = tf1.while_loop(lambda i, a: i < 3, body, [0, 0.0], parallel_iterations=1)
    return {"p": p, "x": x}, {"y": y, "z": z}, [v]


def _nested_loops_update_ref_and_resource():
    """An inner v1 loop assigning ref and resource variables that the outer loop's body reads."""
    x = tf1.placeholder(tf.float32, [], name="x")
    v = tf1.get_variable("v", initializer=np.float32(0.0), use_resource=False)
    r = tf1.get_variable("r", initializer=np.float32(1.0), use_resource=True)

    def outer(i, acc):
        def inner(j, a):
            with tf.control_dependencies([tf1.assign_add(v, x), r.assign(r * 2.0)]):
                return j + 1, a + 1.0 + v * 0.25  # (v/read entering two frames)

        _, a = tf1.while_loop(lambda j, a: j < i, inner, [0, 0.0], parallel_iterations=1)
        with tf.control_dependencies([a]):
            return i + 1, acc + a * (v + 0.0) + r.read_value()

    _, acc = tf1.while_loop(lambda i, a: i < 3, outer, [0, 0.0], parallel_iterations=1)
    return {"x": x}, {"acc": acc}, [v, r]


def _loop_vars_from_ref_reads():
    """Loop variables that a v1 loop body sets to a ref variable itself (``v/read`` entering the loop, returned
    as it is or through an Identity) and to the ref an assign_add returns."""
    x = tf1.placeholder(tf.float32, [], name="x")
    v = tf1.get_variable("v", initializer=np.float32(1.0), use_resource=False)
    c = tf1.get_variable("c", initializer=np.float32(0.0), use_resource=False)

    def body(i, a, b, d):
        return i + 1, tf.identity(v), v, tf1.assign_add(c, x)

    _, a, b, d = tf1.while_loop(lambda i, *_: i < 3, body, [0, x, x, x], parallel_iterations=1)
    return {"x": x}, {"a": a, "b": b, "d": d + 0.0}, [v, c]


def _map_fn_over_strings():
    """tf.compat.v1.map_fn (a v1 loop over TensorArrays) from strings to strings and to numbers."""
    s = tf1.placeholder(tf.string, [None], name="s")
    upper = tf1.map_fn(lambda t: tf.strings.upper(t) + b"!", s, dtype=tf.string)
    lengths = tf1.map_fn(lambda t: tf.strings.length(t) * 2, s, dtype=tf.int32, back_prop=False)
    return {"s": s}, {"upper": upper, "lengths": lengths}, []


_X3 = np.array([1.0, -2.0, 0.5], np.float32)
CONTROL_FLOW = {
    "ta_write_stack": (_ta_write_stack, [{"n": 3, "x": _X3}, {"n": 1, "x": _X3[:2]}]),
    "ta_dynamic_unknown_shape": (_ta_dynamic_unknown_shape, [{"n": 3, "x": _X3}, {"n": 2, "x": _X3}]),
    "ta_scatter_gather": (
        _ta_scatter_gather,
        [{"x": np.arange(6, dtype=np.float32).reshape(3, 2), "idx": np.array([2, 0, 1], np.int32)}],
    ),
    "ta_split_concat": (
        _ta_split_concat,
        [{"x": np.arange(12, dtype=np.float32).reshape(4, 3), "lengths": np.array([2, 2], np.int64)}],
    ),
    "nested_while_in_cond_in_while": (_nested_while_in_cond_in_while, [{"x": _X3, "n": 4}, {"x": _X3, "n": 0}]),
    "loop_assign_add_ref": (_loop_reads_and_assign_adds(False), [{"x": 2.0}, {"x": -1.0}]),
    "loop_assign_add_resource": (_loop_reads_and_assign_adds(True), [{"x": 2.0}, {"x": -1.0}]),
    "maximum_iterations": (_maximum_iterations_no_back_prop, [{"x": _X3, "m": 2}, {"x": _X3, "m": 10}]),
    "cond_variable_read_ref": (
        _cond_branch_variable_read(False),
        [{"p": True, "x": _X3[:2]}, {"p": False, "x": _X3[:2]}, {"p": True, "x": _X3[1:]}],
    ),
    "cond_variable_read_resource": (
        _cond_branch_variable_read(True),
        [{"p": True, "x": _X3[:2]}, {"p": False, "x": _X3[:2]}, {"p": True, "x": _X3[1:]}],
    ),
    "cond_reads_after_assign": (
        _cond_branch_reads_after_its_assign,
        [{"p": True, "x": 2.0}, {"p": False, "x": 2.0}, {"p": True, "x": -0.5}],
    ),
    "nested_loops_update_variables": (_nested_loops_update_ref_and_resource, [{"x": 1.5}, {"x": -1.0}]),
    "loop_vars_from_ref_reads": (_loop_vars_from_ref_reads, [{"x": 2.0}, {"x": 0.5}]),
    "map_fn_over_strings": (_map_fn_over_strings, [{"s": np.array([b"ab", b"", b"xyz"], object)}]),
    "case_switch_case": (_case_and_switch_case, [{"k": k, "x": _X3} for k in (0, 1, 2, 3, -1)]),
}


@pytest.mark.parametrize("case", sorted(CONTROL_FLOW))
def test_v1_control_flow_matches_session(tmp_path, case):
    build, calls = CONTROL_FLOW[case]
    _export_and_compare(tmp_path, build, calls)


# -- 2. estimator-style serving exports ----------------------------------------------------------------------------
def _feature(values: list) -> tf.train.Feature:
    if isinstance(values[0], bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if isinstance(values[0], float):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _example(**features: list) -> bytes:
    feature = {k: _feature(v) for k, v in features.items() if v}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


_EXAMPLES = np.array(
    [
        _example(
            x=[1.0, 2.0],
            age=[25.0],
            tags=[b"a", b"b", b"a"],
            id=[3],
            word=[b"cat", b"zebra"],
            word_weight=[0.5, 2.0],
            color=[b"red"],
            code=[7, 12],
            mode=[b"fast"],
            sp_idx=[1, 3],
            sp_val=[0.5, -1.0],
        ),
        _example(tags=[b"c"], id=[9], color=[b"blue", b"green"], mode=[b"slow"]),  # defaults; an id out of range
        _example(
            x=[-3.0, 0.5],
            age=[70.0],
            word=[b"dog"],
            word_weight=[1.5],
            code=[-2],
            sp_idx=[0],
            sp_val=[4.0],
        ),
    ],
    object,
)


def _session_run(export_dir: str, key: str, feeds: dict, tags=("serve",)) -> dict:
    """A signature run the TF1 way: the SavedModel loaded into a Session (its main op run)."""
    with v1_graph(), tf1.Session() as sess:
        sig = tf1.saved_model.load(sess, list(tags), export_dir).signature_def[key]
        fetches = {k: v.name for k, v in sig.outputs.items()}
        return sess.run(fetches, {sig.inputs[k].name: v for k, v in feeds.items()})


@pytest.fixture(scope="module")
def canned_export(tmp_path_factory):
    """What a canned DNNLinearCombinedClassifier's export held, built by hand (tf 2.21 has no tf.estimator): a
    parsing serving input receiver (dense features with defaults, VarLen and SparseFeature ones), feature
    columns of every kind through input_layer and linear_model, a head's classify/regress/predict signatures
    with string classes, tables initialized by a legacy_init_op, a global step and a vocabulary asset."""
    base = tmp_path_factory.mktemp("canned")
    vocab = base / "words.txt"
    vocab.write_text("cat\ndog\nbird\n")
    export_dir = str(base / "m")
    fc = tf1.feature_column
    with v1_graph():
        step = tf1.train.get_or_create_global_step()
        ser = tf1.placeholder(tf.string, [None], name="input_example_tensor")
        word = fc.categorical_column_with_vocabulary_file("word", str(vocab), num_oov_buckets=2)
        color = fc.categorical_column_with_vocabulary_list("color", ["red", "green", "blue"], default_value=-1)
        tags = fc.categorical_column_with_hash_bucket("tags", 7)
        code = fc.categorical_column_with_hash_bucket("code", 5, dtype=tf.int64)
        ident = fc.categorical_column_with_identity("id", 5, default_value=0)
        age = fc.bucketized_column(fc.numeric_column("age", default_value=40.0), [18.0, 30.0, 60.0])
        mode = fc.categorical_column_with_vocabulary_list("mode", ["fast", "slow"], num_oov_buckets=1)
        deep = [
            fc.numeric_column("x", shape=[2], default_value=[0.5, -0.5], normalizer_fn=lambda t: t * 0.5),
            age,
            fc.embedding_column(fc.weighted_categorical_column(word, "word_weight"), 3, combiner="sum"),
            fc.embedding_column(tags, 2, combiner="mean"),
            fc.embedding_column(fc.crossed_column(["color", "tags"], 13), 2, combiner="sqrtn"),
            fc.indicator_column(ident),
            fc.indicator_column(color),
            fc.indicator_column(code),
            fc.embedding_column(mode, 2, max_norm=0.5),
        ]
        wide = [age, word, tags, fc.crossed_column([age, "color"], 11), ident]
        spec = fc.make_parse_example_spec(deep + wide)
        spec["sp"] = tf.io.SparseFeature("sp_idx", "sp_val", tf.float32, 4)
        spec["mode"] = tf.io.FixedLenFeature([1], tf.string, default_value="none")
        features = tf1.io.parse_example(ser, spec)
        with tf1.variable_scope("dnn"):
            net = fc.input_layer(features, deep)
            net = tf1.layers.dense(net, 4, tf.nn.relu) if hasattr(tf1.layers, "dense") else net
            w = tf1.get_variable("w", [net.shape[1], 3], initializer=tf1.random_normal_initializer(seed=1))
            deep_logits = tf.matmul(net, w)
        with tf1.variable_scope("linear"):
            wide_logits = fc.linear_model(features, wide, units=3)
        sp_logits = tf.sparse.sparse_dense_matmul(features["sp"], tf.ones([4, 3]) * 0.25)
        logits = deep_logits + wide_logits + sp_logits
        probs = tf.nn.softmax(logits)
        class_ids = tf.argmax(logits, 1)
        names = tf.constant(["lo", "mid", "hi"])
        all_classes = tf.tile(names[None], [tf.shape(logits)[0], 1])
        predictions = {
            "logits": logits,
            "probabilities": probs,
            "class_ids": class_ids[:, None],
            "classes": tf.gather(names, class_ids)[:, None],
            "all_class_ids": tf.tile(tf.range(3)[None], [tf.shape(logits)[0], 1]),
            "all_classes": all_classes,
            "sp_dense": tf.sparse.to_dense(features["sp"]),
            "tags_dense": tf.sparse.to_dense(features["tags"], default_value="?"),
        }
        sd = tf1.saved_model.signature_def_utils
        signatures = {
            "serving_default": sd.classification_signature_def(ser, all_classes, probs),
            "classification": sd.classification_signature_def(ser, all_classes, probs),
            "classes_only": sd.classification_signature_def(ser, tf.gather(names, class_ids)[:, None], None),
            "regression": sd.regression_signature_def(ser, tf.reduce_max(logits, 1, keepdims=True)),
            "predict": sd.predict_signature_def({"examples": ser}, predictions),
        }
        with tf1.Session() as sess:
            sess.run([tf1.global_variables_initializer(), tf1.tables_initializer()])
            rng = np.random.default_rng(5)
            for v in tf1.global_variables():
                if v.dtype.base_dtype == tf.float32:
                    v.load(rng.uniform(-1, 1, v.shape).astype(np.float32), sess)
            sess.run(tf1.assign(step, 11))
            builder = tf1.saved_model.Builder(export_dir)
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                signature_def_map=signatures,
                legacy_init_op=tf.group(tf1.tables_initializer(), name="legacy_init_op"),
                assets_collection=tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS),
                strip_default_attrs=True,
            )
            builder.save()
    vocab.unlink()  # the table must be initialized from the SavedModel's assets
    return export_dir


@pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")  # strings run op by op
@pytest.mark.parametrize("rows", [slice(0, 3), slice(1, 2)], ids=["all", "one"])
@pytest.mark.parametrize("key", ["serving_default", "classification", "classes_only", "regression", "predict"])
def test_canned_estimator_signatures_match_session(canned_export, key, rows):
    model = jaxsm.load(canned_export)
    feed_key = "examples" if key == "predict" else "inputs"
    feeds = {feed_key: _EXAMPLES[rows]}
    want = _session_run(canned_export, key, feeds)
    got = model.signatures[key](**feeds)
    assert sorted(got) == sorted(want), "output keys"
    for k, w in want.items():
        _assert_same(got[k], w, f"{key}/{k}", rtol=1e-4, atol=1e-5)


def test_canned_estimator_method_names_and_variables(canned_export):
    """The SignatureDefs' method names and output keys as TF2's loader gives them; the global step restored."""
    ref = tf.saved_model.load(canned_export)
    model = jaxsm.load(canned_export)
    assert sorted(model.signatures) == sorted(ref.signatures)
    methods = {
        "serving_default": "tensorflow/serving/classify",
        "classification": "tensorflow/serving/classify",
        "classes_only": "tensorflow/serving/classify",
        "regression": "tensorflow/serving/regress",
        "predict": "tensorflow/serving/predict",
    }
    for key, fn in ref.signatures.items():
        assert sorted(model.signatures[key].structured_outputs) == sorted(fn.structured_outputs), key
        assert model.signatures[key].method_name == methods[key], key
    want_vars = {v.name: v.numpy() for v in ref.variables}
    got_vars = {v.name: v.numpy() for v in model.variables}
    for name, w in want_vars.items():
        _assert_same(got_vars[name], w, name)
    assert int(got_vars["global_step:0"]) == 11


# -- 3. graph-level oddities ---------------------------------------------------------------------------------------
def _defaults_and_devices():
    """placeholder_with_default inputs (fed, and left to their defaults by prunes), nodes placed on
    /device:GPU:0 with colocation attrs (saved as they are: the Session places them softly)."""
    x = tf1.placeholder(tf.float32, [None, 2], name="x")
    scale = tf1.placeholder_with_default(tf.constant([2.0, 3.0]), [2], name="scale")
    shift = tf1.placeholder_with_default(np.float32(0.5), [], name="shift")
    with tf.device("/device:GPU:0"):
        w = tf1.get_variable("w", initializer=np.array([[1.0, -1.0], [0.5, 2.0]], np.float32), use_resource=False)
        with tf1.colocate_with(w):
            h = tf.matmul(x * scale, w)
    with tf.device("/job:localhost/replica:0/task:0/device:CPU:0"):
        y = tf.nn.relu(h + shift, name="y")
    return {"x": x, "scale": scale, "shift": shift}, {"y": y}, [w]


def _ref_scatters():
    """Ref-variable update ops in one signature, chained by control dependencies."""
    idx = tf1.placeholder(tf.int32, [None], name="idx")
    upd = tf1.placeholder(tf.float32, [None], name="upd")
    v = tf1.get_variable("v", initializer=np.arange(1.0, 6.0, dtype=np.float32), use_resource=False)
    r = tf1.get_variable("r", initializer=np.arange(1.0, 6.0, dtype=np.float32), use_resource=True)
    m = tf1.get_variable("m", initializer=np.ones((3, 2), np.float32), use_resource=False)
    ops = []
    for f in (tf1.scatter_mul, tf1.scatter_div, tf1.scatter_max, tf1.scatter_min, tf1.scatter_sub):
        with tf.control_dependencies(ops[-1:]):
            ops.append(f(v, idx, upd))
    for f in (tf1.scatter_mul, tf1.scatter_max, tf1.scatter_min, tf1.scatter_update):
        with tf.control_dependencies(ops[-1:]):
            ops.append(f(r, idx, upd * 0.5))
    with tf.control_dependencies(ops[-1:]):
        nd = tf1.scatter_nd_add(m, [[0, 1], [2, 0]], [10.0, 20.0])
    with tf.control_dependencies([nd]):
        nd = tf1.scatter_nd_sub(m, [[2]], [[1.0, 2.0]])
    with tf.control_dependencies([nd]):
        nd = tf1.scatter_nd_update(m, [[1, 1]], [-7.0])
    with tf.control_dependencies([nd]):
        sub = tf1.assign_sub(v, tf.fill([5], 0.25), use_locking=True)
    with tf.control_dependencies([sub]):
        out = {"v": tf.identity(v + 0.0), "r": r.read_value() * 1.0, "m": tf.identity(m + 0.0)}
    return {"idx": idx, "upd": upd}, out, [v, r, m]


def _partitioned(use_resource):
    def build():
        x = tf1.placeholder(tf.float32, [None, 6], name="x")
        ids = tf1.placeholder(tf.int64, [None], name="ids")
        with tf1.variable_scope("p", partitioner=tf1.fixed_size_partitioner(4), use_resource=use_resource):
            w = tf1.get_variable("w", [6, 3], initializer=tf1.random_normal_initializer(seed=3))
            emb = tf1.get_variable("emb", [9, 2], initializer=tf1.random_normal_initializer(seed=4))
        y = tf.matmul(x, w)  # the PartitionedVariable's concatenated value
        e = tf1.nn.embedding_lookup(emb, ids, partition_strategy="div")
        with tf.control_dependencies([y, e]):
            bump = tf1.assign_add(w._get_variable_list()[1], tf.ones_like(w._get_variable_list()[1]))
        with tf.control_dependencies([bump]):
            y2 = tf.matmul(x, tf.concat(w._get_variable_list(), 0))
        return {"x": x, "ids": ids}, {"y": y, "e": e, "y2": y2}, list(w) + list(emb)

    return build


GRAPH_CASES = {
    "defaults_and_devices": (
        _defaults_and_devices,
        [
            {"x": np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32), "scale": np.float32([1, -1]), "shift": 0.0},
            {"x": np.array([[0.5, 0.5]], np.float32), "scale": np.float32([2.0, 3.0]), "shift": np.float32(0.5)},
        ],
    ),
    "ref_scatters": (
        _ref_scatters,
        [
            {"idx": np.array([0, 2, 2], np.int32), "upd": np.float32([2.0, 3.0, -1.0])},
            {"idx": np.array([4], np.int32), "upd": np.float32([0.5])},
        ],
    ),
    "partitioned_ref": (
        _partitioned(False),
        [{"x": np.arange(12, dtype=np.float32).reshape(2, 6) / 6, "ids": np.array([0, 8, 3, 3], np.int64)}] * 2,
    ),
    "partitioned_resource": (
        _partitioned(True),
        [{"x": np.arange(12, dtype=np.float32).reshape(2, 6) / 6, "ids": np.array([0, 8, 3, 3], np.int64)}] * 2,
    ),
}


@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
def test_graph_oddities_match_session(tmp_path, case):
    build, calls = GRAPH_CASES[case]
    model = _export_and_compare(tmp_path, build, calls)
    if case == "defaults_and_devices":  # a prune that does not feed the placeholder_with_defaults
        x_val = np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32)
        w = np.array([[1.0, -1.0], [0.5, 2.0]], np.float32)
        want = np.maximum((x_val * [2.0, 3.0]).astype(np.float32) @ w + np.float32(0.5), 0)
        _assert_same(model.prune("x:0", "y:0")(x_val), want, "defaults")


def test_queues_and_readers_only_fail_where_they_are_used(tmp_path):
    """A training input pipeline (FIFOQueue, TFRecordReader, string_input_producer) left in the graph beside the
    serving placeholder: signatures that do not reach it load and run; a prune that does raises
    UnsupportedOpError naming the op types."""
    with v1_graph():
        files = tf1.train.string_input_producer(["a.tfrecord"], shuffle=False)
        _, record = tf1.TFRecordReader().read(files)
        queue = tf1.FIFOQueue(4, [tf.float32], shapes=[[2]])
        enqueue = queue.enqueue([tf.ones([2])])
        batch = queue.dequeue_many(2, name="batch")
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        y = tf.reduce_sum(x * 2.0, 1, name="y")
        train = tf.reduce_sum(batch, name="train") + tf.cast(tf.strings.length(record), tf.float32)
        with tf1.Session() as sess:
            builder = tf1.saved_model.Builder(str(tmp_path / "m"))
            builder.add_meta_graph_and_variables(sess, ["serve"], {"serving_default": _sig({"x": x}, {"y": y})})
            builder.save()
    model = jaxsm.load(str(tmp_path / "m"))
    x_val = np.array([[1.0, 2.0]], np.float32)
    assert_close(np.asarray(model.signatures["serving_default"](x=x_val)["y"]), np.float32([6.0]), "y")
    for fetch, op in (
        (batch.name, "QueueDequeueManyV2"),
        (enqueue.name, "QueueEnqueueV2"),
        (train.name, "ReaderReadV2"),
    ):
        with pytest.raises(jaxsm.errors.UnsupportedOpError, match=op):
            model.prune([], fetch)


def test_sharded_saver_checkpoint_restores_partitioned_and_ref_variables(tmp_path):
    """A Saver(sharded=True) checkpoint written after the export (partitioned, ref, resource and int variables):
    ``restore`` loads it into the jaxsm model as a Session's saver.restore does."""
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        with tf1.variable_scope("s", partitioner=tf1.fixed_size_partitioner(3)):
            w = tf1.get_variable("w", [4, 3], initializer=tf1.ones_initializer(), use_resource=False)
        b = tf1.get_variable("b", initializer=np.zeros(3, np.float32), use_resource=True)
        n = tf1.get_variable("n", initializer=np.int64(0), use_resource=False)
        y = tf.matmul(x, w) + b + tf.cast(n, tf.float32)
        with tf1.device("/cpu:0"):
            saver = tf1.train.Saver(sharded=True, max_to_keep=1)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            builder = tf1.saved_model.Builder(str(tmp_path / "m"))
            builder.add_meta_graph_and_variables(
                sess, ["serve"], {"serving_default": _sig({"x": x}, {"y": y})}, saver=saver, clear_devices=True
            )
            builder.save()
            rng = np.random.default_rng(7)
            for v in list(w) + [b]:
                v.load(rng.uniform(-1, 1, v.shape).astype(np.float32), sess)
            n.load(5, sess)
            ckpt = saver.save(sess, str(tmp_path / "model"), global_step=3)
            x_val = np.arange(8, dtype=np.float32).reshape(2, 4)
            want = sess.run(y, {x: x_val})
            want_vars = {v.name: sess.run(v) for v in tf1.global_variables()}
    model = jaxsm.load(str(tmp_path / "m"))
    assert_close(
        np.asarray(model.signatures["serving_default"](x=x_val)["y"]),
        np.repeat(x_val.sum(1, keepdims=True), 3, 1),
        "saved",
    )
    model.restore(ckpt)
    assert_close(np.asarray(model.signatures["serving_default"](x=x_val)["y"]), want, "restored")
    got_vars = {v.name: v.numpy() for v in model.variables}
    for name, value in want_vars.items():
        _assert_same(got_vars[name], value, name)


def test_prune_between_intermediate_tensors(tmp_path):
    """prune feeding intermediate tensors (a hidden layer, a v1 cond's output, a while loop's Exit) and fetching
    other intermediates upstream and downstream of them, with and without the placeholders."""
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        k = tf1.placeholder_with_default(2, [], name="k")
        w = tf1.get_variable("w", initializer=np.array([[1.0, 0.5], [-1.0, 2.0], [0.0, 1.0]], np.float32))
        h = tf.nn.relu(tf.matmul(x, w), name="h")
        c = tf1.cond(tf.reduce_sum(h) > 1.0, lambda: h * 2.0, lambda: h - 1.0, name="c")
        _, loop = tf1.while_loop(lambda i, a: i < k, lambda i, a: [i + 1, a * 0.5 + 1.0], [0, c], name="loop")
        out = tf.reduce_sum(loop, 1, name="out")
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            builder = tf1.saved_model.Builder(str(tmp_path / "m"))
            builder.add_meta_graph_and_variables(sess, ["serve"], {"serving_default": _sig({"x": x}, {"out": out})})
            builder.save()
            x_val = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], np.float32)
            h_val = np.array([[0.25, 3.0]], np.float32)
            cases = [
                ([h.name], [c.name, out.name], [h_val]),
                ([c.name], [loop.name, out.name], [h_val]),
                ([c.name, k.name], [out.name], [h_val, np.int32(5)]),
                ([loop.name], [out.name], [h_val]),
                ([x.name, h.name], [out.name, h.name], [x_val, h_val]),  # a fed tensor fetched is its feed
                ([x.name], [h.name, c.name, loop.name], [x_val]),
            ]
            wants = [sess.run(fetches, dict(zip(feeds, vals))) for feeds, fetches, vals in cases]
    model = jaxsm.load(str(tmp_path / "m"))
    for (feeds, fetches, vals), want in zip(cases, wants, strict=True):
        got = model.prune(feeds, fetches)(*vals)
        for f, g, w_ in zip(fetches, got, want, strict=True):
            _assert_same(g, w_, f"{feeds} -> {f}")


def test_v1_format_saver_checkpoint_is_refused_by_name(tmp_path):
    """A Builder given Saver(write_version=V1) writes variables/variables (no .index): TF's Session loads it;
    jaxsm does not read that format and says so (not that the directory is incomplete)."""
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = tf1.get_variable("w", initializer=np.ones((2, 2), np.float32), use_resource=False)
        saver = tf1.train.Saver(write_version=tf1.train.SaverDef.V1)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            builder = tf1.saved_model.Builder(str(tmp_path / "m"))
            sigs = {"serving_default": _sig({"x": x}, {"y": tf.matmul(x, w)})}
            builder.add_meta_graph_and_variables(sess, ["serve"], sigs, saver=saver)
            builder.save()
    with pytest.raises(jaxsm.errors.FormatError, match="V1 checkpoint"):
        jaxsm.load(str(tmp_path / "m"))
    model = jaxsm.load(str(tmp_path / "m"), options=jaxsm.LoadOptions(allow_partial_checkpoint=True))
    assert "serving_default" in model.signatures


def _columns(case: str, vocab_dir):
    fc = tf1.feature_column
    ints = vocab_dir / "ints.txt"
    ints.write_text("10\n20\n30\n40\n")
    if case == "shared_embeddings":
        a = fc.categorical_column_with_vocabulary_list("a", ["x", "y", "z"], num_oov_buckets=1)
        b = fc.categorical_column_with_vocabulary_list("b", ["u", "v", "w", "t"])
        return fc.shared_embedding_columns([a, b], 3, combiner="sqrtn", initializer=tf1.ones_initializer())
    if case == "int_vocab_file":
        n = fc.categorical_column_with_vocabulary_file("n", str(ints), vocabulary_size=3, dtype=tf.int64)
        return [fc.indicator_column(n), fc.embedding_column(n, 2, combiner="mean")]
    if case == "int_vocab_list_and_identity":
        n = fc.categorical_column_with_vocabulary_list("n", [10, 30, 50], dtype=tf.int64, default_value=2)
        i = fc.categorical_column_with_identity("i", 4, default_value=3)
        return [fc.indicator_column(n), fc.indicator_column(fc.weighted_categorical_column(i, "iw"))]
    if case == "bucketized_2d_and_int_numeric":
        x = fc.numeric_column("x", shape=[2], default_value=[0.0, 9.0])
        return [fc.bucketized_column(x, [-1.0, 1.0, 5.0]), fc.numeric_column("k", dtype=tf.int64, default_value=7)]
    if case == "crossed_three_ways":
        age = fc.bucketized_column(fc.numeric_column("x", shape=[2], default_value=[0.0, 9.0]), [0.0, 2.0])
        n = fc.categorical_column_with_identity("n", 100, default_value=0)
        crossed = fc.crossed_column([age, "a", n], 17, hash_key=123)
        return [fc.indicator_column(crossed), fc.embedding_column(crossed, 2, combiner="sum")]
    raise ValueError(case)


_COLUMN_EXAMPLES = np.array(
    [
        _example(a=[b"x", b"q"], b=[b"u", b"v"], n=[30, 20], i=[1, 1], iw=[0.5, 2.0], x=[-2.0, 3.0]),
        _example(a=[b"z"], n=[10], i=[3], iw=[1.0], x=[6.0, 0.5], k=[-4]),
        _example(b=[b"w"], n=[99], i=[7], iw=[3.0]),  # missing features; out-of-vocabulary and out-of-range ids
    ],
    object,
)


@pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")
@pytest.mark.parametrize(
    "case",
    [
        "shared_embeddings",
        "int_vocab_file",
        "int_vocab_list_and_identity",
        "bucketized_2d_and_int_numeric",
        "crossed_three_ways",
    ],
)
def test_feature_columns_through_input_layer_match_session(tmp_path, case):
    with v1_graph():
        ser = tf1.placeholder(tf.string, [None], name="examples")
        cols = _columns(case, tmp_path)
        features = tf1.io.parse_example(ser, tf1.feature_column.make_parse_example_spec(cols))
        net = tf1.feature_column.input_layer(features, cols)
        with tf1.Session() as sess:
            sess.run([tf1.global_variables_initializer(), tf1.tables_initializer()])
            rng = np.random.default_rng(9)
            for v in tf1.global_variables():
                v.load(rng.uniform(-1, 1, v.shape).astype(np.float32), sess)
            builder = tf1.saved_model.Builder(str(tmp_path / "m"))
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                {"serving_default": _sig({"examples": ser}, {"net": net})},
                main_op=tf1.tables_initializer(),
                assets_collection=tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS),
            )
            builder.save()
            want = sess.run(net, {ser: _COLUMN_EXAMPLES})
    got = jaxsm.load(str(tmp_path / "m")).signatures["serving_default"](examples=_COLUMN_EXAMPLES)["net"]
    _assert_same(got, want, case)
