"""jaxsm.ops.parsing against TF: ParseExampleV2 (tf.io.parse_example / parse_single_example), TF1's ParseExample
and ParseSingleExample on serialized tf.Example protos, and models that take serialized examples."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import jaxsm  # noqa: E402
from jaxsm.errors import EagerFallbackWarning, JaxsmError  # noqa: E402
from tests.test_tf1 import dense, save, signature, tf1, v1_graph  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")


def _feature(values):
    """A tf.train.Feature: floats -> float_list, ints -> int64_list, bytes/str -> bytes_list, None -> no list (a
    tf.train.Feature is taken as is)."""
    if isinstance(values, tf.train.Feature):
        return values
    if values is None:
        return tf.train.Feature()
    if all(isinstance(v, (bytes, str)) for v in values) and values:
        return tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str) else v for v in values])
        )
    if all(isinstance(v, int) for v in values) and values:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _example(**features) -> bytes:
    feature = {k: _feature(v) for k, v in features.items()}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _batch(*examples) -> np.ndarray:
    out = np.empty(len(examples), dtype=object)
    out[:] = list(examples)
    return out


SPEC = {
    "f": tf.io.FixedLenFeature([2], tf.float32, default_value=[0.5, -0.5]),
    "i": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "s": tf.io.FixedLenFeature([], tf.string, default_value="none"),
    "m": tf.io.FixedLenFeature([2, 2], tf.int64, default_value=[[1, 2], [3, 4]]),
    "seq": tf.io.FixedLenSequenceFeature([2], tf.float32, allow_missing=True, default_value=-1.0),
    "seq_s": tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True),
    "var_i": tf.io.VarLenFeature(tf.int64),
    "var_f": tf.io.VarLenFeature(tf.float32),
    "var_s": tf.io.VarLenFeature(tf.string),
    "rag": tf.io.RaggedFeature(tf.float32),
    "rag_s": tf.io.RaggedFeature(tf.string, row_splits_dtype=tf.int32),
    "rag_i": tf.io.RaggedFeature(tf.int64),
}

FULL = _example(
    f=[1.5, 2.25],
    i=[2**40],
    s=[b"\xff\x00bytes"],
    m=[-5, 6, 7, -(2**62)],
    seq=[1.0, 2.0, 3.0, 4.0],
    seq_s=["a", "bc"],
    var_i=[3, -4, 5],
    var_f=[1e-30],
    var_s=["x", ""],
    rag=[0.25],
    rag_s=["p", "q", "r"],
    rag_i=[9, 8],
    unused=[1.0],
)
PARTIAL = _example(f=[3.0, 4.0], seq=[5.0, 6.0], var_s=["y"], rag=[], seq_s=None, var_i=None, i=None)
EMPTY = b""  # an Example with no features


def _components(parsed: dict) -> dict:
    """The tensors of parsed features: a SparseTensor's indices/values/dense_shape, a RaggedTensor's values and
    row splits."""
    out = {}
    for key, value in parsed.items():
        if isinstance(value, tf.SparseTensor):
            out.update(
                {f"{key}.indices": value.indices, f"{key}.values": value.values, f"{key}.shape": value.dense_shape}
            )
        elif isinstance(value, tf.RaggedTensor):
            out.update({f"{key}.values": value.values, f"{key}.splits": value.row_splits})
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "examples", [[FULL, PARTIAL, EMPTY], [EMPTY, PARTIAL], [FULL], []], ids=["mixed", "no_full", "one", "empty_batch"]
)
def test_parse_example(examples, jit):
    assert_matches_tf(
        lambda s: _components(tf.io.parse_example(s, SPEC)), [_batch(*examples)], shapes=[(None,)], jit=jit
    )


@pytest.mark.parametrize("example", [FULL, PARTIAL, EMPTY], ids=["full", "partial", "empty"])
def test_parse_single_example(example):
    """A scalar input: ParseExampleV2 without the batch dimension (sparse indices [n, 1]; a ragged feature is a
    plain vector of values)."""
    assert_matches_tf(lambda s: _components(tf.io.parse_single_example(s, SPEC)), [np.array(example, dtype=object)])


def test_raw_ops():
    """TF1's ParseExample (one key input per feature) and ParseSingleExample (keys as attributes); ParseExampleV2 on
    a scalar, whose row splits are empty."""

    def fn(s):
        scalar = tf.raw_ops.ParseExampleV2(
            serialized=s[0],
            names=[],
            sparse_keys=[],
            dense_keys=["m"],
            ragged_keys=["rag_s", "rag_i"],
            dense_defaults=[tf.constant([], tf.int64)],
            num_sparse=0,
            sparse_types=[],
            ragged_value_types=[tf.string, tf.int64],
            ragged_split_types=[tf.int32, tf.int64],
            dense_shapes=[[2, 2]],
        )
        batch = tf.raw_ops.ParseExample(
            serialized=s,
            names=[],
            sparse_keys=["var_i", "var_s"],
            dense_keys=["f", "s", "seq"],
            dense_defaults=[tf.constant([], tf.float32), tf.constant("none"), tf.constant(-1.0)],
            sparse_types=[tf.int64, tf.string],
            dense_shapes=[[2], [], [None, 2]],
        )
        single = tf.raw_ops.ParseSingleExample(
            serialized=s[0],
            dense_defaults=[tf.constant([7], tf.int64), tf.constant(0.0)],
            num_sparse=1,
            sparse_keys=["var_f"],
            dense_keys=["i", "seq"],
            sparse_types=[tf.float32],
            dense_shapes=[[1], [None, 2]],
        )
        return {
            "batch": [list(t) for t in batch],
            "single": [list(t) for t in single],
            "scalar": [list(t) for t in scalar],
        }

    assert_matches_tf(fn, [_batch(FULL, PARTIAL)], shapes=[(None,)])


def _assert_both_raise(fn, examples, match):
    """TF raises InvalidArgumentError; jaxsm raises a JaxsmError matching ``match``."""
    serialized = _batch(*examples)
    export_dir, tf_fn = save_function(fn, [serialized], shapes=[(None,)])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(serialized)
    with pytest.raises(JaxsmError, match=match):
        run_jaxsm(export_dir, [serialized])


def test_missing_required_feature_raises():
    spec = {"f": tf.io.FixedLenFeature([2], tf.float32), "i": tf.io.FixedLenFeature([], tf.int64, default_value=0)}
    _assert_both_raise(lambda s: tf.io.parse_example(s, spec), [FULL, PARTIAL, EMPTY], r"'f' is required.*example 2")


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"i": tf.io.FixedLenFeature([], tf.float32, default_value=0.0)}, r"'i' of example 0 holds a int64_list"),
        ({"s": tf.io.VarLenFeature(tf.int64)}, r"'s' of example 0 holds a bytes_list"),
        ({"var_f": tf.io.RaggedFeature(tf.string)}, r"'var_f' of example 0 holds a float_list"),
        ({"seq": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True)}, r"'seq' of example 0 holds"),
    ],
    ids=["dense", "sparse", "ragged", "sequence"],
)
def test_wrong_type_raises(spec, match):
    _assert_both_raise(lambda s: tf.io.parse_example(s, spec), [FULL, PARTIAL], match)


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"f": tf.io.FixedLenFeature([3], tf.float32)}, r"'f' of example 0 has 2 values, but its shape is \(3,\)"),
        (
            {"seq": tf.io.FixedLenSequenceFeature([3], tf.float32, allow_missing=True)},
            r"'seq' of example 0 has 4 values, not a multiple of 3",
        ),
    ],
    ids=["fixed", "sequence"],
)
def test_wrong_number_of_values_raises(spec, match):
    _assert_both_raise(lambda s: tf.io.parse_example(s, spec), [FULL], match)


def test_not_an_example_raises():
    spec = {"i": tf.io.FixedLenFeature([], tf.int64, default_value=0)}
    _assert_both_raise(
        lambda s: tf.io.parse_example(s, spec), [FULL, b"not an example"], "example 1 is not a serialized"
    )


class _Scorer(tf.Module):
    """A serving function that takes serialized tf.Examples, as tf.data-style input pipelines export."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable([[0.5, -1.0], [2.0, 0.25], [1.5, 1.0]])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def score(self, serialized):
        spec = {
            "x": tf.io.FixedLenFeature([2], tf.float32),
            "age": tf.io.FixedLenFeature([], tf.int64, default_value=30),
            "tags": tf.io.VarLenFeature(tf.string),
            "clicks": tf.io.RaggedFeature(tf.int64),
        }
        f = tf.io.parse_example(serialized, spec)
        features = tf.concat([f["x"], tf.cast(f["age"], tf.float32)[:, None] / 10.0], axis=1)
        n_tags = tf.math.unsorted_segment_sum(
            tf.ones_like(f["tags"].values, tf.float32), f["tags"].indices[:, 0], tf.size(serialized)
        )
        return {
            "score": tf.matmul(features, self.w) + n_tags[:, None],
            "clicks": tf.reduce_sum(f["clicks"], axis=1),
            "tags": f["tags"].values,
        }


def test_saved_model_parses_examples(tmp_path):
    serialized = _batch(
        _example(x=[1.0, 2.0], age=[40], tags=["a", "b"], clicks=[1, 2, 3]),
        _example(x=[-1.0, 0.5]),
        _example(x=[0.0, 3.0], age=[20], tags=["c"], clicks=tf.train.Feature(int64_list=tf.train.Int64List())),
    )
    module = _Scorer()
    tf.saved_model.save(module, str(tmp_path))
    expected = module.score(tf.constant(serialized))
    m = jaxsm.load(str(tmp_path))
    with pytest.warns(EagerFallbackWarning):
        got = m.score(serialized)
    assert sorted(got) == sorted(expected)
    np.testing.assert_allclose(np.asarray(got["score"]), expected["score"].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(got["clicks"]), expected["clicks"].numpy())
    assert list(got["tags"]) == list(expected["tags"].numpy())


def test_tf1_estimator_export(tmp_path):
    """An estimator-style TF1 export: a string placeholder "input_example_tensor" parsed by a feature spec, a dense
    layer on the numeric features, and the string feature passed through; the predict signature's input is
    "examples"."""
    serialized = _batch(
        _example(x=[1.0, 2.0, 3.0], n=[4], word=["hello"]),
        _example(x=[0.5, -0.5, 0.0], word=["world"]),
        EMPTY,
    )
    with v1_graph():
        examples = tf1.placeholder(tf.string, [None], name="input_example_tensor")
        spec = {
            "x": tf1.io.FixedLenFeature([3], tf.float32, default_value=[0.0, 0.0, 0.0]),
            "n": tf1.io.FixedLenFeature([1], tf.int64, default_value=[1]),
            "word": tf1.io.FixedLenFeature([], tf.string, default_value=""),
        }
        f = tf1.io.parse_example(examples, spec)
        h = tf.concat([f["x"], tf.cast(f["n"], tf.float32)], axis=1)
        logits = dense(tf.nn.relu(dense(h, 4, "hidden")), 2, "logits")
        outputs = {"logits": logits, "probabilities": tf.nn.softmax(logits), "word": f["word"]}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            want = sess.run(outputs, {examples: serialized})
            export_dir = save(sess, tmp_path / "m", {"predict": signature({"examples": examples}, outputs)})

    m = jaxsm.load(export_dir)
    got = m.signatures["predict"](examples=serialized)
    for key in ("logits", "probabilities"):
        np.testing.assert_allclose(np.asarray(got[key]), want[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert list(got["word"]) == list(want["word"])
