"""Small tf.saved_model.load contract gaps, each checked against TF: restored variables' declared shapes and
distribution enums, TF1 sparse signature outputs' specs, which restored objects are callable, pruning past
unfed PlaceholderV2s, and mutable hash tables a TF1 Saver restores."""

from __future__ import annotations

import shutil

import jax
import numpy as np
import pytest

import jaxsm
from jaxsm.errors import EagerFallbackWarning, GraphError, JaxsmError

tf = pytest.importorskip("tensorflow")
tf1 = tf.compat.v1


def _tf_shape(shape) -> tuple | None:
    """A TF TensorShape as jaxsm spells shapes: a tuple with None for unknown dims, None for unknown rank."""
    return None if shape.rank is None else tuple(shape.as_list())


# -- a tf.Module with partly known variable shapes and distribution settings ---------------------------------------
class _Module(tf.Module):
    def __init__(self):
        self.vector = tf.Variable([1.0, 2.0], shape=[None])
        self.rows = tf.Variable([[1.0, 2.0, 3.0]], shape=tf.TensorShape([None, 3]))
        self.any_rank = tf.Variable([1.0, 2.0], shape=tf.TensorShape(None))
        self.counts = tf.Variable(np.zeros((2, 2), np.int64))
        self.mean = tf.Variable(
            1.0, synchronization=tf.VariableSynchronization.ON_READ, aggregation=tf.VariableAggregation.MEAN
        )
        self.first = tf.Variable(
            2.0,
            synchronization=tf.VariableSynchronization.NONE,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        self.summed = tf.Variable(
            3, synchronization=tf.VariableSynchronization.ON_WRITE, aggregation=tf.VariableAggregation.SUM
        )
        self.child = tf.Module()
        self.child.w = tf.Variable(1.0)

    @tf.function(input_signature=[])
    def read(self):
        return self.vector + 1.0, self.any_rank * 2.0

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x):
        return x * self.child.w


_VARIABLES = ["vector", "rows", "any_rank", "counts", "mean", "first", "summed"]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("module") / "m")
    tf.saved_model.save(_Module(), path)
    return tf.saved_model.load(path), jaxsm.load(path)


def test_variable_shape_is_the_declared_one(both):
    ref, got = both
    for name in _VARIABLES:
        assert getattr(got, name).shape == _tf_shape(getattr(ref, name).shape), f"{name} before a read"
    ref.read(), got.read()  # the values are read now, and have concrete shapes
    ref.vector.assign([1.0, 2.0, 3.0]), got.vector.assign([1.0, 2.0, 3.0])
    ref.any_rank.assign([[4.0]]), got.any_rank.assign([[4.0]])
    for name in _VARIABLES:
        assert getattr(got, name).shape == _tf_shape(getattr(ref, name).shape), f"{name} after assigns"
    assert got.vector.value().shape == tuple(ref.vector.numpy().shape) == (3,)
    assert got.any_rank.value().shape == tuple(ref.any_rank.numpy().shape) == (1, 1)


def test_variable_repr_spells_shapes_like_tf(both):
    ref, got = both
    for name in ["vector", "rows", "any_rank"]:
        tf_shape = repr(getattr(ref, name)).split(" shape=")[1].split(" dtype=")[0]
        assert f" shape={tf_shape} dtype=" in repr(getattr(got, name)), name


def test_variable_synchronization_and_aggregation(both):
    ref, got = both
    for name in [*_VARIABLES, "child"]:
        want = getattr(ref, name) if name != "child" else ref.child.w
        have = getattr(got, name) if name != "child" else got.child.w
        assert type(have.synchronization).__name__ == type(want.synchronization).__name__, name
        assert (have.synchronization.name, have.synchronization.value) == (
            want.synchronization.name,
            want.synchronization.value,
        ), name
        assert (have.aggregation.name, have.aggregation.value) == (want.aggregation.name, want.aggregation.value), name
    assert got.mean.aggregation.name == "MEAN" and got.first.synchronization.name == "NONE"  # not all defaults


def test_only_objects_with_a_call_are_callable(both):
    ref, got = both
    for what, want, have in [("root", ref, got), ("child", ref.child, got.child)]:
        assert callable(have) == callable(want), what
    assert not callable(got.child)
    with pytest.raises(TypeError):
        ref.child()
    with pytest.raises(TypeError):
        got.child()
    x = np.array([1.0, 2.0], np.float32)
    np.testing.assert_array_equal(np.asarray(got(x)), ref(x).numpy())


@pytest.mark.parametrize("how", ["saved_model_save", "export"])
def test_keras_models_stay_callable(tmp_path, how):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = str(tmp_path / "k")
    tf.saved_model.save(model, path) if how == "saved_model_save" else model.export(path, verbose=False)
    ref, got = tf.saved_model.load(path), jaxsm.load(path)
    assert callable(got) == callable(ref)
    children = [k for k, v in got._jaxsm_children.items() if isinstance(v, jaxsm.objects.UserObject)]
    for name in children:
        assert callable(getattr(got, name)) == callable(getattr(ref, name)), name
    if callable(ref):
        x = np.ones((1, 3), np.float32)
        np.testing.assert_allclose(np.asarray(got(x)), ref(x).numpy(), rtol=1e-6)


# -- TF1 exports ----------------------------------------------------------------------------------------------------
def _builder_save(sess, export_dir: str, signatures: dict, **kwargs) -> None:
    builder = tf1.saved_model.Builder(export_dir)
    builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=signatures, **kwargs)
    builder.save()


def _info(t):
    return tf1.saved_model.build_tensor_info(t)


@pytest.mark.parametrize("dense_shape", ["constant", "fed"])
def test_tf1_sparse_output_spec(tmp_path, dense_shape):
    path = str(tmp_path / "sp")
    with tf.Graph().as_default(), tf1.Session() as sess:
        indices = tf1.placeholder(tf.int64, [None, 2], name="indices")
        values = tf1.placeholder(tf.int32, [None], name="values")
        shape = tf.constant([4, 5], tf.int64) if dense_shape == "constant" else tf1.placeholder(tf.int64, [2])
        sp = tf.sparse.reorder(tf.SparseTensor(indices, values, shape))
        inputs = {"indices": _info(indices), "values": _info(values)}
        if dense_shape == "fed":
            inputs["shape"] = _info(shape)
        outputs = {"sp": _info(sp), "values": _info(values)}
        _builder_save(sess, path, {"s": tf1.saved_model.build_signature_def(inputs, outputs)})
    want = tf.saved_model.load(path).signatures["s"].structured_outputs
    got = jaxsm.load(path).signatures["s"].structured_outputs
    assert sorted(got) == sorted(want)
    spec = want["sp"]._type_spec
    assert got["sp"] is not None and got["sp"].class_name == type(spec).__name__ == "SparseTensorSpec"
    assert got["sp"].type_spec_class == "SPARSE_TENSOR_SPEC" and got["sp"].num_flat_components == 3
    state_shape, state_dtype = got["sp"].type_state
    assert state_shape == _tf_shape(spec.shape) and state_dtype.name == spec.dtype.name
    assert got["values"].shape == _tf_shape(want["values"].shape)


def test_tf1_sparse_output_spec_matches_a_tf2_one(tmp_path):
    """The TF1 spec is the same value as the spec of a TF2 SavedModel's SparseTensor output (a fed dense_shape:
    TF knows none of its sizes, whatever sparse_placeholder declared)."""

    class Sparse(tf.Module):
        @tf.function(input_signature=[tf.SparseTensorSpec([None, None], tf.float32)])
        def f(self, s):
            return s

    tf.saved_model.save(Sparse(), str(tmp_path / "v2"))
    with tf.Graph().as_default(), tf1.Session() as sess:
        sp = tf1.sparse_placeholder(tf.float32, [4, None], name="sp")
        sig = tf1.saved_model.build_signature_def({"sp": _info(sp)}, {"out": _info(sp)})
        _builder_save(sess, str(tmp_path / "v1"), {"s": sig})
    v2 = jaxsm.load(str(tmp_path / "v2")).f.concrete_functions[0].structured_outputs
    v1 = jaxsm.load(str(tmp_path / "v1")).signatures["s"].structured_outputs["out"]
    assert v1 == v2 and repr(v1) == repr(v2)
    want = tf.saved_model.load(str(tmp_path / "v1")).signatures["s"].structured_outputs["out"]._type_spec
    assert v1.type_state[0] == _tf_shape(want.shape)


def _placeholder_v2_model(path: str) -> None:
    """A TF1 export whose ``y`` depends on ``p``, a PlaceholderV2 (a GraphDef before version 23 can have one)."""
    from jaxsm._proto import saved_model_pb2

    with tf.Graph().as_default(), tf1.Session() as sess:
        x = tf1.placeholder(tf.float32, [None], name="x")
        p = tf1.placeholder(tf.float32, [None], name="p")
        tf.add(x, p, name="y")
        sig = tf1.saved_model.build_signature_def({"x": _info(x)}, {"z": _info(tf.multiply(x, 2.0, name="z"))})
        _builder_save(sess, path, {"s": sig})
    pb = f"{path}/saved_model.pb"
    sm = saved_model_pb2.SavedModel.FromString(open(pb, "rb").read())
    graph = sm.meta_graphs[0].graph_def
    graph.versions.producer = 22
    next(n for n in graph.node if n.name == "p").op = "PlaceholderV2"
    with open(pb, "wb") as f:
        f.write(sm.SerializeToString())


@pytest.mark.parametrize("op", ["Placeholder", "PlaceholderV2"])
def test_tf1_prune_refuses_unfed_placeholders(tmp_path, op):
    path = str(tmp_path / "ph")
    if op == "PlaceholderV2":
        _placeholder_v2_model(path)
    else:
        with tf.Graph().as_default(), tf1.Session() as sess:
            x = tf1.placeholder(tf.float32, [None], name="x")
            p = tf1.placeholder(tf.float32, [None], name="p")
            tf.add(x, p, name="y")
            sig = tf1.saved_model.build_signature_def({"x": _info(x)}, {"z": _info(tf.multiply(x, 2.0, name="z"))})
            _builder_save(sess, path, {"s": sig})
    ref, got = tf.saved_model.load(path), jaxsm.load(path)
    with pytest.raises(Exception):  # noqa: B017 - UnliftableError for a Placeholder; TF cannot copy a PlaceholderV2
        ref.prune(["x:0"], "y:0")
    with pytest.raises(GraphError, match="placeholders \\['p'\\]"):
        got.prune(["x:0"], "y:0")
    fed = got.prune(["x:0", "p:0"], "y:0")  # fed, the placeholder is an input
    np.testing.assert_array_equal(np.asarray(fed(np.ones(2, np.float32), np.ones(2, np.float32))), [2.0, 2.0])
    x = np.array([1.5], np.float32)
    np.testing.assert_array_equal(np.asarray(got.signatures["s"](x=x)["z"]), ref.signatures["s"](x=x)["z"].numpy())


@pytest.fixture(scope="module")
def tables_model(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("tables") / "t")
    with tf.Graph().as_default(), tf1.Session() as sess:
        mutable = tf1.lookup.experimental.MutableHashTable(tf.int64, tf.float32, default_value=-1.0, name="mt")
        dense = tf1.lookup.experimental.DenseHashTable(
            tf.int64, tf.float32, default_value=-1.0, empty_key=-1, deleted_key=-2, name="dt"
        )
        vectors = tf1.lookup.experimental.DenseHashTable(
            tf.int32, tf.float64, default_value=[0.0, 0.0], empty_key=-7, deleted_key=-8, name="dv"
        )
        keys = tf1.placeholder(tf.int64, [None], name="k")
        fill = tf.group(
            mutable.insert(tf.constant([3, 7, -5], tf.int64), tf.constant([0.5, 1.5, np.nan])),
            dense.insert(tf.constant([4, 9], tf.int64), tf.constant([2.5, -np.inf])),
            vectors.insert(tf.constant([1, 2], tf.int32), tf.constant([[1.0, 2.0], [3.0, 4.0]], tf.float64)),
        )
        outputs = {
            "mutable": mutable.lookup(keys),
            "dense": dense.lookup(keys),
            "vectors": vectors.lookup(tf.cast(keys, tf.int32)),
            "size": mutable.size(),
        }
        sess.run(fill)
        sig = tf1.saved_model.build_signature_def({"k": _info(keys)}, {k: _info(v) for k, v in outputs.items()})
        _builder_save(sess, path, {"s": sig}, saver=tf1.train.Saver())
    return path


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_tf1_saver_restores_mutable_tables(tables_model, jit):
    ref, got = tf.saved_model.load(tables_model), jaxsm.load(tables_model)
    for keys in [np.array([3, 4, 7, 9, 5, -5, 1, 2], np.int64), np.zeros(0, np.int64), np.array([[9], [1]], np.int64)]:
        want = {k: v.numpy() for k, v in ref.signatures["s"](k=tf.constant(keys)).items()}
        sig = got.signatures["s"]
        have = jax.jit(lambda k, sig=sig: sig(k=k))(keys) if jit else sig(k=keys)
        assert sorted(have) == sorted(want)
        for k, w in want.items():
            np.testing.assert_array_equal(np.asarray(have[k]), w, err_msg=f"{k} for {keys}")
            assert np.asarray(have[k]).dtype == w.dtype, k


def test_tf1_saver_restores_a_string_table(tmp_path):
    path = str(tmp_path / "st")
    with tf.Graph().as_default(), tf1.Session() as sess:
        table = tf1.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=-1, name="st")
        words = tf1.placeholder(tf.string, [None], name="w")
        sess.run(table.insert(tf.constant(["a", "bc", ""]), tf.constant([10, 20, 30], tf.int64)))
        sig = tf1.saved_model.build_signature_def({"w": _info(words)}, {"n": _info(table.lookup(words))})
        _builder_save(sess, path, {"s": sig}, saver=tf1.train.Saver())
    ref, got = tf.saved_model.load(path), jaxsm.load(path)
    words = np.array([b"a", b"bc", b"zz", b""], object)
    with pytest.warns(EagerFallbackWarning):  # string tensors stay on the host
        have = got.signatures["s"](w=words)["n"]
    np.testing.assert_array_equal(np.asarray(have), ref.signatures["s"](w=words)["n"].numpy())


def test_tf1_partial_checkpoint_without_tables(tables_model, tmp_path):
    """A checkpoint missing a table's keys fails to load, as in TF, unless a partial checkpoint is allowed (jaxsm
    then leaves that table empty)."""
    path = str(tmp_path / "partial")
    shutil.copytree(tables_model, path)
    prefix = f"{path}/variables/variables"
    reader = tf.train.load_checkpoint(prefix)
    with tf.Graph().as_default(), tf1.Session() as sess:
        kept = {k: tf.constant(reader.get_tensor(k)) for k in reader.get_variable_to_shape_map() if "mt-" not in k}
        sess.run(
            tf.raw_ops.SaveV2(
                prefix=prefix, tensor_names=list(kept), shape_and_slices=[""] * len(kept), tensors=list(kept.values())
            )
        )
    with pytest.raises(tf.errors.NotFoundError):
        tf.saved_model.load(path)
    with pytest.raises(JaxsmError, match="mt"):
        jaxsm.load(path)
    got = jaxsm.load(path, options=jaxsm.LoadOptions(allow_partial_checkpoint=True))
    out = got.signatures["s"](k=np.array([3, 4], np.int64))
    np.testing.assert_array_equal(np.asarray(out["mutable"]), [-1.0, -1.0])
    np.testing.assert_array_equal(np.asarray(out["dense"]), [-1.0, 2.5])


def test_tf1_variable_synchronization_and_aggregation(tmp_path):
    path = str(tmp_path / "v1vars")
    with tf.Graph().as_default(), tf1.Session() as sess:
        x = tf1.placeholder(tf.float32, [None], name="x")
        mean = tf1.get_variable(
            "mean",
            initializer=1.0,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.MEAN,
            trainable=False,
        )
        plain = tf1.get_variable("plain", initializer=2.0, use_resource=True)
        ref_var = tf1.get_variable("ref", initializer=3.0, use_resource=False)
        sess.run(tf1.global_variables_initializer())
        y = x * mean + plain + ref_var
        _builder_save(sess, path, {"s": tf1.saved_model.build_signature_def({"x": _info(x)}, {"y": _info(y)})})
    ref, got = tf.saved_model.load(path), jaxsm.load(path)
    want = {v.name: v for v in ref.variables}  # TF lists no ref variables (a gaps.py row); jaxsm does, with defaults
    assert set(want) == {"mean:0", "plain:0"}
    for v in got.variables:
        w = want.get(v.name)
        if w is None:
            assert (v.name, v.synchronization.name, v.aggregation.name) == ("ref:0", "AUTO", "NONE")
            continue
        assert (v.synchronization.name, v.aggregation.name) == (w.synchronization.name, w.aggregation.name), v.name
        assert (v.synchronization.value, v.aggregation.value) == (w.synchronization.value, w.aggregation.value)
        assert v.shape == _tf_shape(w.shape), v.name
    # TF's loader lifts TF1 variables into new ones that keep no VariableDef settings: the defaults, even for mean
    assert {v.name: v.aggregation.name for v in got.variables}["mean:0"] == "NONE"
