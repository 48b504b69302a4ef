"""TF1 SavedModels probed against tf.saved_model.load, round 2: estimator-style serving exports (serialized
tf.Examples -> feature columns with a vocabulary-file asset -> embeddings over partitioned variables ->
classify/regress/predict signatures with string classes), several MetaGraphs, RefVariable reads ordered behind
assignments, EMA shadow restores, v1 loops under jax.jit, and the errors TF raises for calls and inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsm
from jaxsm.errors import CallArgumentError, JaxsmError, TagsNotFoundError
from tests.tfcompare import assert_close, v1_graph

tf = pytest.importorskip("tensorflow")
tf1 = tf.compat.v1


def _feature(values: list) -> tf.train.Feature:
    if values and isinstance(values[0], bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if values and isinstance(values[0], float):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _example(**features: list) -> bytes:
    feature = {k: _feature(v) for k, v in features.items() if v}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _builder_save(sess, export_dir: str, signatures: dict, **kwargs) -> None:
    builder = tf1.saved_model.Builder(export_dir)
    builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=signatures, **kwargs)
    builder.save()


def _assert_outputs_equal(got: dict, want: dict, what: str) -> None:
    assert sorted(got) == sorted(want), f"{what}: output keys"
    for k, w in want.items():
        w = w.numpy()
        if w.dtype == object:  # string outputs: bytes, as TF gives them
            g = np.asarray(got[k])
            assert g.dtype == object and g.shape == w.shape, f"{what}/{k}: {g.dtype} {g.shape}"
            np.testing.assert_array_equal(g, w, err_msg=f"{what}/{k}")
        else:
            got_k = np.asarray(got[k])
            if not jax.config.jax_enable_x64:  # without x64 jaxsm's int64 outputs are int32 (principle 7)
                w = w.astype(got_k.dtype) if w.dtype.kind == got_k.dtype.kind else w
            assert_close(got_k, w, f"{what}/{k}", rtol=1e-5)


# -- an estimator-style export -------------------------------------------------------------------------------------
_BATCH = np.array(
    [
        _example(x=[1.0, 2.0], age=[25.0], fruit=[b"apple", b"kiwi"], color=[b"red"]),
        _example(color=[b"blue", b"green"]),  # x and age from their defaults, no fruit: an empty row
        _example(x=[3.0, -1.0], age=[70.0], fruit=[b"cherry"], color=[b"pink"]),
    ],
    object,
)


@pytest.fixture(scope="module")
def estimator_export(tmp_path_factory):
    """What a canned DNN estimator's export looked like: a parsing serving input receiver, feature columns (a
    vocabulary file shipped as an asset, a list vocabulary with OOV buckets, bucketized and crossed columns),
    embeddings over variables partitioned by fixed_size_partitioner/min_max_variable_partitioner, a global step,
    classification/regression/predict SignatureDefs with string class outputs, the tables initialized by the
    main_op, and a second MetaGraph (tags train, eval) added with add_meta_graph over the same variables."""
    base = tmp_path_factory.mktemp("estimator")
    vocab = base / "fruits.txt"
    vocab.write_text("apple\nbanana\ncherry\n")
    export_dir = str(base / "m")
    fc = tf1.feature_column
    with v1_graph() as g:
        step = tf1.train.get_or_create_global_step()
        ser = tf1.placeholder(tf.string, [None], name="input_example_tensor")
        color = fc.categorical_column_with_vocabulary_list("color", ["red", "green", "blue"], num_oov_buckets=2)
        fruit = fc.categorical_column_with_vocabulary_file("fruit", str(vocab), default_value=0)
        age = fc.bucketized_column(fc.numeric_column("age", default_value=33.0), [18, 30, 60])
        cols = [
            fc.numeric_column("x", shape=[2], default_value=[0.5, -0.5]),
            age,
            fc.embedding_column(fruit, 4, combiner="mean"),
            fc.embedding_column(color, 3, combiner="sqrtn"),
            fc.indicator_column(fc.crossed_column([age, "color"], 11)),
        ]
        features = tf1.io.parse_example(ser, fc.make_parse_example_spec(cols))
        with tf1.variable_scope("dnn", partitioner=tf1.fixed_size_partitioner(3)):
            net = fc.input_layer(features, cols)
            w = tf1.get_variable("w", [net.shape[1], 2], initializer=tf1.random_normal_initializer(seed=1))
        with tf1.variable_scope("linear", partitioner=tf1.min_max_variable_partitioner(2, min_slice_size=8)):
            w2 = tf1.get_variable("w2", [net.shape[1], 1], initializer=tf1.random_normal_initializer(seed=2))
        logits = tf.concat([tf.matmul(net, w), tf.matmul(net, w2)], 1)
        probs = tf.nn.softmax(logits)
        names = tf.constant(["neg", "pos", "neutral"])
        class_ids = tf.argmax(probs, 1)
        classes = tf.tile(names[None], [tf.shape(probs)[0], 1])
        signatures = {
            "serving_default": tf1.saved_model.classification_signature_def(ser, classes, probs),
            "regression": tf1.saved_model.regression_signature_def(ser, tf.reduce_sum(logits, 1, keepdims=True)),
            "predict": tf1.saved_model.predict_signature_def(
                {"examples": ser},
                {"logits": logits, "class_ids": class_ids[:, None], "classes": tf.gather(names, class_ids)},
            ),
        }
        main_op = tf.group(tf1.tables_initializer(), tf1.local_variables_initializer())
        with tf1.Session() as sess:
            sess.run([tf1.global_variables_initializer(), tf1.tables_initializer()])
            sess.run(tf1.assign(step, 7))  # separately: in one run it races the initializer (CI saw 0)
            builder = tf1.saved_model.Builder(export_dir)
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                signature_def_map=signatures,
                main_op=main_op,
                clear_devices=True,
                assets_collection=tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS),
            )
            g.clear_collection("saved_model_main_op")  # the Builder takes one main op per graph
            builder.add_meta_graph(
                ["train", "eval"], signature_def_map={"predict": signatures["predict"]}, main_op=main_op
            )
            builder.save()
    vocab.unlink()  # the table must be initialized from the SavedModel's assets
    return export_dir, tf.saved_model.load(export_dir, ["serve"])


@pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")  # strings run op by op
@pytest.mark.filterwarnings("ignore:jaxsm. this model uses 64-bit", "ignore:Explicitly requested dtype int64")
@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("key", ["serving_default", "regression", "predict"])
def test_estimator_signatures_match_tf(estimator_export, key, x64):
    """Every signature's outputs (string classes, int64 class ids) equal TF's. With x64 off this raised
    LoweringError: the partitioned embedding lookup's FloorMod mixed the int64 constant partition count with ids a
    Where had made int32 while folding on the host (lax.rem takes one dtype)."""
    export_dir, ref = estimator_export
    tf_fn = ref.signatures[key]
    arg = next(iter(tf_fn.structured_input_signature[1]))
    want = tf_fn(**{arg: tf.constant(_BATCH)})
    with jax.enable_x64(x64):
        model = jaxsm.load(export_dir, tags=["serve"])
        fn = model.signatures[key]
        assert fn.structured_input_signature[1][arg].shape == (None,)
        _assert_outputs_equal(fn(**{arg: _BATCH}), want, key)
        empty = fn(**{arg: np.zeros([0], object)})  # an empty batch gives empty outputs, as in TF
        _assert_outputs_equal(empty, tf_fn(**{arg: tf.constant([], tf.string)}), f"{key} (empty batch)")


@pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")
def test_estimator_variables_and_second_meta_graph(estimator_export):
    """The partitioned variables, their values and the global step are TF's; the MetaGraph added with
    add_meta_graph shares them and its signature runs; tags select it."""
    export_dir, ref = estimator_export
    model = jaxsm.load(export_dir, tags=["serve"])
    want = {v.name: v.numpy() for v in ref.variables}
    assert sorted(v.name for v in model.variables) == sorted(want)
    assert sum("dnn/w/part_" in v.name for v in model.variables) == 3, "fixed_size_partitioner(3)"
    for v in model.variables:
        assert_close(v.numpy(), want[v.name], v.name)
    assert int(next(v for v in model.variables if v.name == "global_step:0").numpy()) == 7
    train = jaxsm.load(export_dir, tags=["eval", "train"])
    tf_train = tf.saved_model.load(export_dir, ["train", "eval"])
    assert sorted(train.signatures) == sorted(tf_train.signatures) == ["predict"]
    got = train.signatures["predict"](examples=_BATCH)
    _assert_outputs_equal(got, tf_train.signatures["predict"](examples=tf.constant(_BATCH)), "train/predict")


@pytest.mark.parametrize("tags", [["nope"], ["train"], ["serve", "train"], None])
def test_tag_errors_are_tfs_exception_types(estimator_export, tags):
    """An unknown tag-set raises RuntimeError in TF (was only a ValueError), an ambiguous tags=None ValueError;
    jaxsm's TagsNotFoundError is both, and names the available tag-sets."""
    export_dir, _ = estimator_export
    with pytest.raises((RuntimeError, ValueError)) as tf_error:
        tf.saved_model.load(export_dir, tags)
    with pytest.raises(type(tf_error.value), match=r"\['eval', 'train'\]") as error:
        jaxsm.load(export_dir, tags=tags)
    assert isinstance(error.value, TagsNotFoundError)


# -- ref variables, EMA, loops -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ref_model(tmp_path_factory):
    """RefVariables read after AssignAdd through ``v/read`` (the Identity tf.Variable.value() is), a resource
    variable, a counter, v1 nested while loops with a TensorArray, a v1 cond, and a fixed-batch input."""
    export_dir = str(tmp_path_factory.mktemp("refs") / "m")
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        fixed = tf1.placeholder(tf.float32, [2, 3], name="fixed")
        rv = tf1.get_variable("rv", initializer=tf.constant([1.0, 2.0, 3.0]), use_resource=False)
        res = tf1.get_variable("res", initializer=tf.constant([0.5, -1.0, 2.0]), use_resource=True)
        count = tf1.get_variable("count", initializer=tf.constant(0, tf.int64), use_resource=False)
        update = tf.group(tf1.assign_add(rv, tf.reduce_sum(x, 0)), tf1.assign_add(count, 1), res.assign_sub(x[0]))
        with tf.control_dependencies([update]):
            fresh = tf.identity(rv + res)  # reads rv/read after the update, as TF's buffer aliasing gives it
            snapshot = tf.identity(rv)

        def outer(i, acc, ta):
            def inner(j, a):
                return [j + 1, a * 0.5 + tf.sin(a)]

            acc = tf1.while_loop(lambda j, a: j < 2, inner, [tf.constant(0), acc])[1]
            return [i + 1, acc, ta.write(i, tf.reduce_sum(acc, 1))]

        h = tf1.cond(tf.reduce_mean(x) > 0, lambda: x * rv, lambda: tf.tanh(x - res))
        _, acc, ta = tf1.while_loop(lambda i, a, t: i < 3, outer, [tf.constant(0), h, tf.TensorArray(tf.float32, 3)])
        signatures = {
            "update": tf1.saved_model.predict_signature_def(
                {"x": x}, {"fresh": fresh, "snapshot": snapshot, "count": count.value()}
            ),
            "loops": tf1.saved_model.predict_signature_def({"x": x}, {"acc": acc, "stacked": ta.stack()}),
            "fixed": tf1.saved_model.predict_signature_def({"fixed": fixed}, {"y": fixed * 3.0 + rv}),
        }
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            _builder_save(sess, export_dir, signatures)
    return export_dir


def test_ref_variable_reads_see_assignments_they_follow(ref_model):
    """``tf.identity(v)`` under control_dependencies([v.assign_add(...)]) reads ``v/read``, an Identity of the
    ref that in TF forwards the variable's buffer: it sees the update (jaxsm read it before the update)."""
    ref, model = tf.saved_model.load(ref_model), jaxsm.load(ref_model)
    x = np.array([[1.0, -2.0, 3.0], [0.5, 0.5, -4.0]], np.float32)
    for step in range(2):
        want = ref.signatures["update"](x=tf.constant(x))
        got = model.signatures["update"](x=x)
        _assert_outputs_equal(got, want, f"update step {step}")
    assert_close(next(v for v in model.variables if v.name == "res:0").numpy(), ref.variables[0].numpy(), "res")


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("n", [0, 1, 4])
def test_nested_v1_loops_with_tensor_arrays_compile(ref_model, n, jit):
    """Nested tf.compat.v1.while_loops writing a TensorArray after a v1 cond with a run-time predicate, through
    jaxsm.functional and jax.jit, for an empty batch too; jax.grad reaches the variables through them."""
    ref, model = tf.saved_model.load(ref_model), jaxsm.load(ref_model)
    x = np.linspace(-1.0, 2.0, 3 * n, dtype=np.float32).reshape(n, 3)
    want = ref.signatures["loops"](x=tf.constant(x))
    apply, params = jaxsm.functional(model.signatures["loops"])
    run = jax.jit(apply) if jit else apply
    _assert_outputs_equal(run(params, x=x), want, "loops")
    if n:
        grads = jax.grad(lambda p: jnp.sum(apply(p, x=x)["acc"]))(params)
        assert set(grads) == {"rv", "res"} and all(bool(jnp.all(jnp.isfinite(g))) for g in grads.values())


@pytest.mark.parametrize("batch", [2, 5])
def test_fixed_batch_input_takes_another_batch_like_tf(ref_model, batch):
    """TF's restored TF1 signature does not check input shapes: a [2, 3] placeholder fed 5 rows computes on 5
    rows (jaxsm refused with FunctionMatchError)."""
    ref, model = tf.saved_model.load(ref_model), jaxsm.load(ref_model)
    fixed = np.arange(batch * 3, dtype=np.float32).reshape(batch, 3)
    want = ref.signatures["fixed"](fixed=tf.constant(fixed))
    _assert_outputs_equal(model.signatures["fixed"](fixed=fixed), want, "fixed")
    assert model.signatures["fixed"].structured_input_signature[1]["fixed"].shape == (2, 3)


@pytest.mark.parametrize(
    "call",
    [
        lambda f: f(x=np.ones((1, 3), np.float32), z=1),  # unexpected keyword
        lambda f: f(),  # missing input
        lambda f: f(np.ones((1, 3), np.float32), 2),  # too many positional arguments
        lambda f: f(np.ones((1, 3), np.float32), x=np.ones((1, 3), np.float32)),  # bound twice
    ],
)
def test_bad_signature_calls_raise_call_argument_error(ref_model, call):
    """Where TF raises TypeError binding a signature's arguments, jaxsm raises CallArgumentError (a TypeError and
    a JaxsmError; was a bare TypeError) naming the signature and its inputs."""
    ref, model = tf.saved_model.load(ref_model), jaxsm.load(ref_model)
    with pytest.raises(TypeError):
        call(ref.signatures["loops"])
    with pytest.raises(CallArgumentError, match=r"'loops'.*\['x'\]"):
        call(model.signatures["loops"])


def test_prune_binds_keywords_by_op_name_like_tf(ref_model):
    """TF's pruned function takes each feed by keyword under its op name (``x`` for ``x:0``, ``/`` as ``_``) too
    (jaxsm took positional values only, raising a bare TypeError); what TF refuses raises CallArgumentError."""
    ref, model = tf.saved_model.load(ref_model), jaxsm.load(ref_model)
    x = np.array([[1.0, -2.0, 0.5]], np.float32)
    want = ref.prune(["x:0"], {"acc": "while/Exit_1:0"})(x=tf.constant(x))
    pruned = model.prune(["x:0"], {"acc": "while/Exit_1:0"})
    _assert_outputs_equal(pruned(x=x), want, "prune by keyword")
    _assert_outputs_equal(pruned(x), want, "prune positionally")
    apply, params = jaxsm.functional(pruned)
    _assert_outputs_equal(jax.jit(apply)(params, x=x), want, "jit, by keyword")
    for bad in ({"x_0": x}, {"x:0": x}, {"y": x}):
        with pytest.raises(TypeError):
            ref.prune(["x:0"], "while/Exit_1:0")(**{k: tf.constant(v) for k, v in bad.items()})
        with pytest.raises(CallArgumentError, match=r"x:0"):
            pruned(**bad)
    with pytest.raises(CallArgumentError, match="2 positional"):
        pruned(x, x)
    with pytest.raises(CallArgumentError, match=r"keywords \['x'\]"):
        pruned(x, x=x)


@pytest.mark.parametrize("resource", [False, True])
def test_ema_shadow_values_restored_under_their_names(tmp_path, resource):
    """A serving graph whose Saver maps ExponentialMovingAverage shadow names onto the model variables (what
    ``Saver(ema.variables_to_restore())`` exports) serves the averaged weights; ``restore`` of the training
    checkpoint goes through the same mapping."""
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = tf1.get_variable("w", initializer=tf.constant([[1.0], [2.0]]), use_resource=resource)
        step = tf1.train.get_or_create_global_step()
        train = tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_sum(tf.matmul(x, w)), global_step=step)
        ema = tf1.train.ExponentialMovingAverage(0.5, num_updates=step)
        with tf.control_dependencies([train]):
            train = ema.apply([w])
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for _ in range(3):
                sess.run(train, {x: [[1.0, 2.0]]})
            ckpt = tf1.train.Saver().save(sess, str(tmp_path / "train.ckpt"))
    export_dir = str(tmp_path / "m")
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = tf1.get_variable("w", [2, 1], use_resource=resource)
        saver = tf1.train.Saver(tf1.train.ExponentialMovingAverage(0.5).variables_to_restore())
        with tf1.Session() as sess:
            saver.restore(sess, ckpt)
            sig = tf1.saved_model.predict_signature_def({"x": x}, {"y": tf.matmul(x, w)})
            _builder_save(sess, export_dir, {"serving_default": sig}, saver=saver)
    x = np.array([[1.0, 1.0], [2.0, -1.0]], np.float32)
    want = tf.saved_model.load(export_dir).signatures["serving_default"](x=tf.constant(x))
    model = jaxsm.load(export_dir)
    _assert_outputs_equal(model.signatures["serving_default"](x=x), want, "shadow weights")
    model.variables[0].assign(np.zeros((2, 1), np.float32))
    model.restore(ckpt)
    _assert_outputs_equal(model.signatures["serving_default"](x=x), want, "restored shadow weights")


# -- parsing errors ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parsing_model(tmp_path_factory):
    export_dir = str(tmp_path_factory.mktemp("parsing") / "m")
    with v1_graph():
        ser = tf1.placeholder(tf.string, [None], name="ser")
        spec = {
            "a": tf.io.FixedLenFeature([2], tf.float32),  # required
            "q": tf.io.FixedLenSequenceFeature([], tf.float32, allow_missing=True, default_value=9.0),
            "sp": tf.io.SparseFeature(["i0"], "val", tf.float32, [4]),
        }
        f = tf1.io.parse_example(ser, spec)
        out = {"a": f["a"], "q": f["q"], "sp": tf.sparse.to_dense(f["sp"])}
        with tf1.Session() as sess:
            _builder_save(sess, export_dir, {"serving_default": tf1.saved_model.predict_signature_def({"e": ser}, out)})
    return export_dir, tf.saved_model.load(export_dir).signatures["serving_default"]


@pytest.mark.parametrize(
    "examples",
    [
        [_example(a=[1.0, 2.0], q=[1.0, 2.0], i0=[3, 1], val=[5.0, 6.0]), _example(a=[3.0, 4.0])],
        [],
        [_example(q=[1.0])],  # a required feature missing
        [_example(a=[1.0, 2.0, 3.0])],  # too many values
        [_example(a=[1, 2])],  # int64_list for a float feature
        [b"\x12\x34garbage"],
        [_example(a=[1.0, 2.0], i0=[4], val=[1.0])],  # sparse index out of range
        [_example(a=[1.0, 2.0], i0=[1, 2], val=[1.0])],  # index and value lists of different lengths (was accepted)
        [_example(a=[1.0, 2.0], i0=[1, 1], val=[1.0, 2.0])],  # a repeated sparse index
    ],
)
@pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")
def test_parsing_serving_input_values_and_errors_like_tf(parsing_model, examples):
    export_dir, tf_fn = parsing_model
    batch = np.array(examples, object) if examples else np.zeros([0], object)
    fn = jaxsm.load(export_dir).signatures["serving_default"]
    try:
        want = tf_fn(e=tf.constant(batch, tf.string))
    except tf.errors.InvalidArgumentError:
        with pytest.raises(JaxsmError):
            fn(e=batch)
        return
    _assert_outputs_equal(fn(e=batch), want, "parsed")
