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


# -- tf.SequenceExample -------------------------------------------------------------------------------------------


def _sequence_example(context=None, feature_lists=None) -> bytes:
    """A serialized tf.train.SequenceExample; each feature list is a list of steps, each step as in _feature."""
    return tf.train.SequenceExample(
        context=tf.train.Features(feature={k: _feature(v) for k, v in (context or {}).items()}),
        feature_lists=tf.train.FeatureLists(
            feature_list={
                k: tf.train.FeatureList(feature=[_feature(step) for step in steps])
                for k, steps in (feature_lists or {}).items()
            }
        ),
    ).SerializeToString()


CONTEXT = {
    "c_i": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "c_f": tf.io.FixedLenFeature([2], tf.float32, default_value=[0.5, -0.5]),
    "c_s": tf.io.FixedLenFeature([], tf.string, default_value="none"),
    "c_var": tf.io.VarLenFeature(tf.int64),
    "c_var_s": tf.io.VarLenFeature(tf.string),
    "c_rag": tf.io.RaggedFeature(tf.string),
}
SEQUENCE = {
    "fl_d": tf.io.FixedLenSequenceFeature([2], tf.float32, allow_missing=True),
    "fl_ds": tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True),
    "fl_dm": tf.io.FixedLenSequenceFeature([2, 1], tf.int64, allow_missing=True),
    "fl_req": tf.io.FixedLenSequenceFeature([], tf.int64),
    "fl_var": tf.io.VarLenFeature(tf.int64),
    "fl_var_s": tf.io.VarLenFeature(tf.string),
    "fl_rag": tf.io.RaggedFeature(tf.float32),
    "fl_rag_i": tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int32),
}

SEQ_FULL = _sequence_example(
    context={
        "c_i": [2**40],
        "c_f": [1.5, 2.5],
        "c_s": [b"\xff"],
        "c_var": [1, 2, 3],
        "c_var_s": ["v"],
        "c_rag": ["x", "y"],
    },
    feature_lists={
        "fl_d": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
        "fl_ds": [["a"], ["b"]],
        "fl_dm": [[7, 8]],
        "fl_req": [[1], [2]],
        "fl_var": [[1], tf.train.Feature(int64_list=tf.train.Int64List()), None, [2, 3]],
        "fl_var_s": [["p", "q", "r"]],
        "fl_rag": [[0.5], [], [1.5, 2.5]],
        "fl_rag_i": [[4, 5], None],
        "unused": [[1.0]],
    },
)
SEQ_PARTIAL = _sequence_example(
    context={"c_f": [0.0, 1.0], "c_var": None, "c_rag": tf.train.Feature(bytes_list=tf.train.BytesList())},
    feature_lists={"fl_d": [[9.0, 9.5]], "fl_ds": [], "fl_req": [], "fl_var": [[5]], "fl_rag": [[7.0]]},
)
SEQ_CONTEXT_ONLY = _sequence_example(context={"c_i": [5]}, feature_lists={"fl_req": [[3], [4], [5]]})


def _seq_components(parsed) -> dict:
    """Like _components, with every row-splits tensor of a RaggedTensor."""
    out = {}
    for key, value in parsed.items():
        if isinstance(value, tf.RaggedTensor):
            out[f"{key}.values"] = value.flat_values
            out.update({f"{key}.splits{k}": s for k, s in enumerate(value.nested_row_splits)})
        else:
            out.update(_components({key: value}))
    return out


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "examples",
    [[SEQ_FULL, SEQ_PARTIAL, SEQ_CONTEXT_ONLY], [SEQ_PARTIAL], [SEQ_FULL], []],
    ids=["mixed", "partial", "one", "empty_batch"],
)
def test_parse_sequence_example(examples, jit):
    """Context features of every kind; feature lists dense (padded to the longest, with their lengths; missing
    lists allowed), sparse (indices [example, step, position]) and ragged (two levels of row splits)."""

    def fn(s):
        context, feature_lists, lengths = tf.io.parse_sequence_example(s, CONTEXT, SEQUENCE)
        return {
            "context": _seq_components(context),
            "feature_lists": _seq_components(feature_lists),
            "lengths": lengths,
        }

    assert_matches_tf(fn, [_batch(*examples)], shapes=[(None,)], jit=jit)


@pytest.mark.parametrize("example", [SEQ_FULL, SEQ_PARTIAL, SEQ_CONTEXT_ONLY], ids=["full", "partial", "context"])
def test_parse_single_sequence_example(example):
    """A scalar input: ParseSequenceExampleV2 without the batch dimension."""
    assert_matches_tf(
        lambda s: [_seq_components(d) for d in tf.io.parse_single_sequence_example(s, CONTEXT, SEQUENCE)],
        [np.array(example, dtype=object)],
    )


def test_raw_sequence_ops():
    """TF1's ParseSequenceExample (keys as attributes) and ParseSingleSequenceExample (one scalar key input per
    feature); ParseSequenceExampleV2 on a scalar, whose outer row splits TF leaves as an uninitialized 0-d tensor
    (only its shape is compared) and whose dense lengths are 0-d."""

    def fn(s):
        v1 = tf.raw_ops.ParseSequenceExample(
            serialized=s,
            debug_name=[],
            context_dense_defaults=[tf.constant([], tf.float32), tf.constant("none")],
            feature_list_dense_missing_assumed_empty=["fl_ds", "absent"],
            context_sparse_keys=["c_var"],
            context_dense_keys=["c_f", "c_s"],
            feature_list_sparse_keys=["fl_var_s"],
            feature_list_dense_keys=["fl_d", "fl_ds", "absent"],
            Ncontext_sparse=1,
            Ncontext_dense=2,
            Nfeature_list_sparse=1,
            Nfeature_list_dense=3,
            context_sparse_types=[tf.int64],
            feature_list_dense_types=[tf.float32, tf.string, tf.int64],
            feature_list_sparse_types=[tf.string],
            context_dense_shapes=[[2], []],
            feature_list_dense_shapes=[[2], [], [3]],
        )
        single = tf.raw_ops.ParseSingleSequenceExample(
            serialized=s[0],
            feature_list_dense_missing_assumed_empty=["fl_dm"],
            context_sparse_keys=["c_var_s", "absent"],
            context_dense_keys=["c_i"],
            feature_list_sparse_keys=["fl_var", "absent"],
            feature_list_dense_keys=["fl_d", "fl_dm"],
            context_dense_defaults=[tf.constant([], tf.int64)],
            debug_name="",
            context_sparse_types=[tf.string, tf.float32],
            feature_list_dense_types=[tf.float32, tf.int64],
            feature_list_sparse_types=[tf.int64, tf.string],
            context_dense_shapes=[[]],
            feature_list_dense_shapes=[[2], [2, 1]],
        )
        v2 = tf.raw_ops.ParseSequenceExampleV2(
            serialized=s[0],
            debug_name=[],
            context_sparse_keys=["c_var"],
            context_dense_keys=["c_f"],
            context_ragged_keys=["c_rag"],
            feature_list_sparse_keys=["fl_var"],
            feature_list_dense_keys=["fl_d"],
            feature_list_ragged_keys=["fl_rag", "fl_rag_i"],
            feature_list_dense_missing_assumed_empty=[False],
            context_dense_defaults=[tf.constant([], tf.float32)],
            Ncontext_sparse=1,
            Nfeature_list_sparse=1,
            Nfeature_list_dense=1,
            context_sparse_types=[tf.int64],
            context_ragged_value_types=[tf.string],
            context_ragged_split_types=[tf.int32],
            feature_list_dense_types=[tf.float32],
            feature_list_sparse_types=[tf.int64],
            feature_list_ragged_value_types=[tf.float32, tf.int64],
            feature_list_ragged_split_types=[tf.int64, tf.int32],
            context_dense_shapes=[[2]],
            feature_list_dense_shapes=[[2]],
        )
        v2 = v2._asdict()
        for name in ("context_ragged_row_splits", "feature_list_ragged_outer_splits"):
            v2[name] = [tf.shape(t) for t in v2[name]]
        return {"v1": [list(t) for t in v1], "single": [list(t) for t in single], "v2": v2}

    assert_matches_tf(fn, [_batch(SEQ_FULL, SEQ_FULL)], shapes=[(None,)])


@pytest.mark.parametrize(
    "context, sequence, examples, match",
    [
        ({"c": tf.io.FixedLenFeature([], tf.int64)}, {}, [SEQ_FULL], r"context feature 'c' is required"),
        (
            {},
            {"fl_req": tf.io.FixedLenSequenceFeature([], tf.int64)},
            [SEQ_FULL, b""],
            r"'fl_req' is required",
        ),
        ({"c_f": tf.io.FixedLenFeature([3], tf.float32)}, {}, [SEQ_FULL], r"'c_f' of sequence example 0 has 2 values"),
        (
            {"c_var": tf.io.FixedLenFeature([], tf.int64, default_value=0)},
            {},
            [SEQ_PARTIAL],
            r"'c_var' of sequence example 0 has 0 values",  # a Feature without a list is present, with no values
        ),
        ({"c_i": tf.io.VarLenFeature(tf.float32)}, {}, [SEQ_FULL], r"'c_i' of sequence example 0 holds a int64_list"),
        (
            {},
            {"fl_d": tf.io.VarLenFeature(tf.string)},
            [SEQ_FULL],
            r"step 0 of feature list 'fl_d'.* holds a float_list",
        ),
        ({}, {"fl_var": tf.io.RaggedFeature(tf.float32)}, [SEQ_FULL], r"feature list 'fl_var'.* holds a int64_list"),
        (
            {},
            {"fl_rag": tf.io.FixedLenSequenceFeature([1], tf.float32, allow_missing=True)},
            [SEQ_FULL],
            r"step 1 of feature list 'fl_rag' of sequence example 0 has 0 values",
        ),
        (
            {},
            {"fl_var": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True)},
            [SEQ_FULL],
            r"step 1 of feature list 'fl_var' of sequence example 0 has 0 values",
        ),
        ({"c_i": tf.io.FixedLenFeature([], tf.int64, default_value=0)}, {}, [b"\x0a\x05junk"], r"not a serialized"),
    ],
    ids=[
        "context_required",
        "feature_list_required",
        "context_count",
        "context_no_list",
        "context_type",
        "sparse_step_type",
        "ragged_step_type",
        "dense_step_count",
        "dense_step_no_list",
        "not_a_sequence_example",
    ],
)
def test_parse_sequence_example_raises(context, sequence, examples, match):
    """Each case changes one feature of CONTEXT / SEQUENCE, which the other features of the examples satisfy."""
    context, sequence = {**CONTEXT, **context}, {**SEQUENCE, **sequence}
    _assert_both_raise(lambda s: tf.io.parse_sequence_example(s, context, sequence), examples, match)


@pytest.mark.parametrize(
    "context, sequence",
    [
        ({"c_i": CONTEXT["c_i"]}, {}),
        ({}, {"fl_d": SEQUENCE["fl_d"]}),
        ({"c_var": CONTEXT["c_var"]}, {"fl_rag": SEQUENCE["fl_rag"]}),
    ],
    ids=["context_dense", "feature_list_dense", "sparse_and_ragged"],
)
def test_parse_sequence_example_some_kinds(context, sequence):
    """Specs without some feature kinds: TF's saved graph then omits the op's count and type-list attributes at
    their default (0, [])."""

    def fn(s):
        parsed = tf.io.parse_sequence_example(s, context, sequence)
        return [_seq_components(d) for d in parsed[:2]] + [parsed[2]]

    assert_matches_tf(fn, [_batch(SEQ_FULL, SEQ_PARTIAL)], shapes=[(None,)])
