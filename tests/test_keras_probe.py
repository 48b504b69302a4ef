"""Keras models beyond tests/test_keras.py: tf-keras' adapted preprocessing layers, attribute access by TF's
child names, and other shapes of Keras exports, each loaded by TF and by jaxsm and called on the same inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import jaxsm
from jaxsm.errors import FunctionMatchError
from tests.tfcompare import assert_close

tf = pytest.importorskip("tensorflow")


def _k2():
    k2 = pytest.importorskip("tf_keras")
    k2.utils.set_random_seed(0)
    return k2


_ADAPTED = {
    # layer factory, adapt data, call input
    "normalization": (lambda L: L.Normalization(), np.arange(12, dtype=np.float32).reshape(4, 3), None),
    "discretization": (lambda L: L.Discretization(num_bins=3), np.arange(12, dtype=np.float32).reshape(4, 3), None),
    "string_lookup": (
        lambda L: L.StringLookup(),
        np.array([["a"], ["b"], ["a"]], object),
        np.array([["a"], ["c"], ["b"]], object),
    ),
    "integer_lookup": (
        lambda L: L.IntegerLookup(),
        np.array([[1], [5], [1]], np.int64),
        np.array([[1], [2], [5]], np.int64),
    ),
    "text_vectorization": (
        lambda L: L.TextVectorization(output_mode="tf_idf", ngrams=2),
        np.array(["the quick fox", "the lazy dog", "fox and dog"], object),
        np.array([["The quick brown fox"], ["lazy dog!"], [""]], object),
    ),
}


@pytest.mark.parametrize("name", sorted(_ADAPTED))
def test_tf_keras_adapted_preprocessing_layer_loads(name, tmp_path):
    """tf-keras saves each adapted layer's adapt_step, a function reading a tf.data iterator (IteratorGetNext,
    PyFunc): TF loads the model and jaxsm failed the whole load with UnsupportedOpError. The model runs like TF's;
    only calling adapt_step itself fails, as in TF (no tf.data iterator to pass it)."""
    k2 = _k2()
    make, data, x = _ADAPTED[name]
    x = data if x is None else x
    layer = make(k2.layers)
    layer.adapt(data)
    inp = k2.layers.Input(x.shape[1:], dtype=tf.string if x.dtype == object else tf.as_dtype(x.dtype))
    k2.Model(inp, layer(inp)).save(str(tmp_path), save_format="tf")
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # string models run op by op (EagerFallbackWarning)
        out = got(x)
    assert_close(out, ref(tf.constant(x)).numpy(), "__call__")
    with pytest.raises(FunctionMatchError):
        getattr(got, "layer_with_weights-0")._adapt_function(x)


def test_children_with_non_identifier_names(tmp_path):
    """TF's loader sets every child as an attribute, so ``getattr(loaded, "layer_with_weights-0")`` reaches a
    tf-keras layer; jaxsm raised AttributeError for names that are not Python identifiers."""
    k2 = _k2()
    model = k2.Sequential([k2.layers.Dense(3, input_shape=(2,)), k2.layers.Dense(1)])
    model.save(str(tmp_path), save_format="tf")
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    for name in ("layer_with_weights-0", "layer_with_weights-1"):
        want = [v.numpy() for v in getattr(ref, name).variables]
        have = [np.asarray(v.numpy()) for v in getattr(got, name).variables]
        assert len(have) == len(want) == 2, f"{name}.variables"
        for a, b in zip(have, want):
            assert_close(a, b, f"{name}.variables")
    with pytest.raises(AttributeError):
        getattr(got, "layer_with_weights-9")


def test_signature_of_a_model_saved_after_a_call_serves_any_batch(tmp_path):
    """Keras 3's ``tf.saved_model.save`` of a model built by a call on 2 examples writes a serving signature of
    shape (2, 4); TF does not check a signature's input sizes, it runs the graph, so the signature serves any
    batch. jaxsm refused (FunctionMatchError). The rank and dtype still must fit, and a graph that cannot take the
    sizes fails in both (a Reshape to the traced batch)."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    L = keras.layers
    dense = keras.Sequential([L.Dense(3), L.BatchNormalization(), L.Dense(2)])
    dense(np.ones((2, 4), np.float32))
    flat = keras.Sequential([L.Conv2D(2, 3), L.Flatten(), L.Dense(2)])
    flat(np.ones((2, 5, 5, 1), np.float32))
    rng = np.random.default_rng(0)
    for name, model, sizes in [("dense", dense, [(5, 4), (0, 4), (2, 4)]), ("flat", flat, [(2, 5, 5, 1)])]:
        path = str(tmp_path / name)
        tf.saved_model.save(model, path)
        ref = tf.saved_model.load(path).signatures["serving_default"]
        got = jaxsm.load(path).signatures["serving_default"]
        assert ref.structured_input_signature[1]["inputs"].shape[0] == 2, "the case this test is for"
        for shape in sizes:
            x = rng.standard_normal(shape).astype(np.float32)
            assert_close(got(inputs=x)["output_0"], ref(inputs=tf.constant(x))["output_0"].numpy(), f"{name} {shape}")
    with pytest.raises(tf.errors.InvalidArgumentError):
        ref(inputs=tf.ones((3, 5, 5, 1)))
    with pytest.raises(jaxsm.errors.JaxsmError):
        got(inputs=np.ones((3, 5, 5, 1), np.float32))
    with pytest.raises(FunctionMatchError):
        got(inputs=np.ones((2, 5, 5), np.float32))


def test_wrong_argument_names_raise_a_jaxsm_error(tmp_path):
    """A Keras 3 model with named dict inputs, saved by ``tf.saved_model.save``: its signature's inputs are
    ``inputs``/``inputs_1``, not the dict keys. TF raises TypeError for the dict keys, for too many positional
    arguments, and for a keyword a tf-keras model's ``call`` does not name; jaxsm raised bare TypeErrors, now
    CallArgumentError (a JaxsmError and a TypeError)."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    shared = keras.layers.Dense(3)
    tf.saved_model.save(keras.Model({"a": a, "b": b}, {"sum": shared(a) + shared(b)}), str(tmp_path / "k3"))
    k2 = _k2()
    k2.Sequential([k2.layers.Dense(2, input_shape=(4,))]).save(str(tmp_path / "k2"), save_format="tf")
    x = np.ones((2, 4), np.float32)
    ref, got = tf.saved_model.load(str(tmp_path / "k3")), jaxsm.load(str(tmp_path / "k3"))
    ref2, got2 = tf.saved_model.load(str(tmp_path / "k2")), jaxsm.load(str(tmp_path / "k2"))
    calls = {
        "signature with the dict keys": lambda m, _: m.signatures["serving_default"](a=x, b=x),
        "signature with 2 positional inputs": lambda m, _: m.signatures["serving_default"](x, x),
        "__call__ with an unknown keyword": lambda _, m: m(x, dropout=True),
        "__call__ with too many positional arguments": lambda _, m: m(x, False, None, 1),
    }
    for call in calls.values():
        with pytest.raises(TypeError):
            call(ref, ref2)
        with pytest.raises(jaxsm.errors.CallArgumentError):
            call(got, got2)
    sig = got.signatures["serving_default"]
    assert_close(
        sig(inputs=x, inputs_1=x)["sum"], ref.signatures["serving_default"](inputs=x, inputs_1=x)["sum"], "sum"
    )


@pytest.mark.parametrize("jit", [True, False])
def test_bfloat16_sum_and_mean_round_once_like_tf(jit):
    """Keras' mixed_bfloat16 layers (LayerNormalization, GlobalAveragePooling, BatchNormalization's moments) reduce
    in bfloat16. TF's Sum/Mean kernels accumulate bfloat16 in float32 and round once; jaxsm summed in bfloat16,
    several ulps off (a sum of 64 normals: 0.0625 at 5.5). Also when the summed values come from a bfloat16 op,
    which XLA would otherwise fuse unrounded into the float32 sum. Empty, rank-0 and rank-3 inputs included."""
    from tests.tfcompare import assert_matches_tf

    bf16 = tf.bfloat16.as_numpy_dtype
    x = (np.random.default_rng(0).standard_normal((3, 50, 7)) * 10).astype(bf16)

    def reductions(x, scalar, empty):
        return (
            tf.reduce_sum(x, 1),
            tf.reduce_sum(x),
            tf.reduce_mean(x, [0, 1]),
            tf.reduce_mean(x, -1, keepdims=True),
            tf.reduce_sum(tf.square(x), -1),
            tf.math.reduce_variance(x, 1),
            tf.reduce_sum(scalar),
            tf.reduce_mean(scalar),
            tf.reduce_sum(empty, 0),
        )

    assert_matches_tf(reductions, [x, x[0, 0, 0], np.zeros((0, 3), bf16)], rtol=0, atol=0, jit=jit)


def test_model_saved_without_traces(tmp_path):
    """tf-keras' ``save_traces=False`` keeps no functions: TF's loaded object has no ``__call__`` (TypeError) and no
    signatures (KeyError). jaxsm's object is not callable either (callable() is False, a call is Python's
    TypeError, as TF's); its missing signature is SignatureNotFoundError, a JaxsmError that is also a KeyError."""
    k2 = _k2()
    k2.Sequential([k2.layers.Dense(2, input_shape=(4,))]).save(str(tmp_path), save_format="tf", save_traces=False)
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    x = np.ones((1, 4), np.float32)
    with pytest.raises(TypeError):
        ref(x)
    assert callable(got) == callable(ref) is False
    with pytest.raises(TypeError):
        got(x)
    with pytest.raises(KeyError):
        ref.signatures["serving_default"]
    with pytest.raises(jaxsm.errors.SignatureNotFoundError, match="no signature 'serving_default'"):
        got.signatures["serving_default"]
    assert "serving_default" not in got.signatures and got.signatures.get("serving_default") is None


def test_tf_keras_stateful_masked_rnns_carry_their_states(tmp_path):
    """tf-keras stateful LSTM/GRU keep their states in variables: successive calls (training or not) continue from
    the last, masked steps included, and a custom cell's RNN returns its states; all as in TF."""
    k2 = _k2()
    L = k2.layers

    class CountingCell(L.Layer):
        state_size = [2, 1]

        def build(self, shape):
            self.kernel = self.add_weight("kernel", (shape[-1], 2))

        def call(self, x, states):
            h = tf.tanh(tf.matmul(x, self.kernel) + states[0])
            return h * states[1], [h, states[1] + 1.0]

    ids_in = L.Input(batch_shape=(2, 4), dtype="int32")
    emb = L.Embedding(10, 3, mask_zero=True)(ids_in)
    outs = [
        L.LSTM(3, stateful=True, return_sequences=True)(emb),
        *L.RNN(CountingCell(), return_state=True)(emb),
        L.GRU(2, stateful=True, go_backwards=True)(emb),
    ]
    model = k2.Model(ids_in, outs)
    ids = np.array([[1, 2, 0, 0], [3, 4, 5, 0]], np.int32)
    model(ids)
    model.save(str(tmp_path), save_format="tf")
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    for call, kwargs in enumerate([{}, {}, {"training": True}]):
        want, have = ref(tf.constant(ids), **kwargs), got(ids, **kwargs)
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            assert_close(h, w.numpy(), f"call {call} output {i}")
    for v, w in zip(got.variables, ref.variables, strict=True):
        assert_close(v.numpy(), w.numpy(), w.name)
