"""Keras exports beyond tests/test_keras_probe_2.py: Keras 3 applications not in tests/test_keras.py, the
convolution/recurrent/attention/normalization layers and options the sweeps leave out, preprocessing layers with
string inputs (hashing, crossing, lookups, text vectorization, ragged outputs), image and audio preprocessing,
mixed_float16 models, a Keras 3 model saved with tf.saved_model.save (signature, gradients, vmap), and tf-keras
SavedModels (a subclassed model's training traces, Masking, add_loss/add_metric, experimental preprocessing)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsm
from jaxsm.functional import _flatten

tf = pytest.importorskip("tensorflow")


def _leaves(x):
    """TF's and jaxsm's outputs as a list of NumPy arrays (ragged: values then row splits; sparse: dense)."""
    if isinstance(x, dict):
        return [a for k in sorted(x) for a in _leaves(x[k])]
    if isinstance(x, (list, tuple)):
        return [a for v in x for a in _leaves(v)]
    if isinstance(x, tf.SparseTensor):
        return [tf.sparse.to_dense(x).numpy()]
    if isinstance(x, (tf.RaggedTensor, jaxsm.RaggedTensor)):
        return _leaves([x.flat_values, *x.nested_row_splits])
    if isinstance(x, jaxsm.SparseTensor):
        return [np.asarray(x.to_dense())]
    return [np.asarray(x.numpy() if hasattr(x, "numpy") else x)]


def _assert_same(got, want, what, tol=1e-5):
    """Same structure, shapes and dtypes; values within ``tol`` (float16: within 1% of the largest value)."""
    got, want = _leaves(got), _leaves(want)
    assert len(got) == len(want), f"{what}: {len(got)} outputs, TF {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        where = f"{what}[{k}]"
        assert (g.shape, g.dtype) == (w.shape, w.dtype), f"{where}: {g.shape} {g.dtype}, TF {w.shape} {w.dtype}"
        if w.dtype == object or w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=where)
        elif w.dtype == np.float16:  # TF's CPU kernels accumulate float16 sums and einsums in float16
            atol = 1e-2 * max(float(np.abs(w.astype(np.float32)).max()), 1e-3)
            np.testing.assert_allclose(g.astype(np.float32), w.astype(np.float32), rtol=0, atol=atol, err_msg=where)
        else:
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=where)


def _export_and_compare(model, xs, path, tol=1e-5, eager=True):
    """Export a Keras 3 model; its ``serve`` endpoint by TF and by jaxsm (jitted, and op by op) on ``xs``."""
    model.export(str(path), verbose=False)
    ref = tf.saved_model.load(str(path))  # keep it alive while its function runs
    want = ref.serve(tf.nest.map_structure(tf.constant, xs))
    serve = jaxsm.load(str(path)).serve
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # string inputs run op by op (EagerFallbackWarning)
        _assert_same(serve(xs), want, "serve (jit)", tol)
        if eager:
            with jax.disable_jit():
                _assert_same(serve(xs), want, "serve (op by op)", tol)


def _keras():
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    return keras


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


APPLICATIONS = {
    # hard-swish, squeeze-excite and its own Rescaling; fused MBConv; separable convolutions at the minimum size
    "MobileNetV3Small": (32, 32, 3),
    "EfficientNetV2B0": (32, 32, 3),
    "Xception": (71, 71, 3),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_keras3_application(name, tmp_path):
    """Keras 3 applications beyond tests/test_keras.py, random weights, logits compared within 1e-4 of the
    largest."""
    keras = _keras()
    shape = APPLICATIONS[name]
    model = getattr(keras.applications, name)(weights=None, input_shape=shape, classes=5, classifier_activation=None)
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype(np.float32)
    model.export(str(tmp_path), verbose=False)
    ref = tf.saved_model.load(str(tmp_path))
    want = ref.serve(tf.constant(x)).numpy()
    got = np.asarray(jaxsm.load(str(tmp_path)).serve(x))
    assert (got.shape, got.dtype) == (want.shape, want.dtype)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(np.abs(want).max()))


def test_keras3_convolution_and_recurrent_options(tmp_path):
    """Conv3D, same-padded Conv3DTranspose with output_padding, dilated Conv1DTranspose, ConvLSTM1D backwards,
    ConvLSTM2D with strides and its states, SimpleRNN/GRU/LSTM with return_state, go_backwards and unroll,
    TimeDistributed(Conv2D), grouped convolutions, a padding mask through Bidirectional with each merge_mode (an
    all-padding row too)."""
    keras = _keras()
    L = keras.layers
    vol, seq, img = keras.Input((3, 4, 4, 2)), keras.Input((4, 2)), keras.Input((5, 5, 4))
    ids = keras.Input((5,), dtype="int32")
    emb = L.Embedding(9, 3, mask_zero=True)(ids)
    outs = [
        L.Conv3D(2, 2, strides=(1, 2, 1), padding="same")(vol),
        L.Conv3DTranspose(2, 3, strides=2, padding="same", output_padding=1)(vol),
        L.Conv1DTranspose(2, 3, strides=2, padding="same")(seq),
        L.ConvLSTM1D(2, 3, return_sequences=True, go_backwards=True)(L.Reshape((3, 16, 2))(vol)),
        *L.ConvLSTM2D(2, 2, strides=2, return_state=True)(vol),
        *L.SimpleRNN(3, return_state=True, unroll=True)(seq),
        *L.GRU(2, go_backwards=True, return_state=True, return_sequences=True)(seq),
        L.LSTM(2, unroll=True, go_backwards=True)(seq),
        L.TimeDistributed(L.Conv2D(2, 2))(vol),
        L.Conv2D(6, 3, groups=2, padding="same")(img),
        L.Conv2D(4, 2, groups=4, strides=2)(img),
        *[L.Bidirectional(L.LSTM(2, return_sequences=True), merge_mode=m)(emb) for m in ("concat", "mul", "ave")],
        *L.Bidirectional(L.GRU(2, return_state=True), merge_mode=None)(emb),
    ]
    model = keras.Model([vol, seq, img, ids], outs)
    rng = np.random.default_rng(0)
    xs = [
        _f32(rng, 3, 3, 4, 4, 2),
        _f32(rng, 3, 4, 2),
        _f32(rng, 3, 5, 5, 4),
        np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 7], [0, 0, 0, 0, 0]], np.int32),
    ]
    _export_and_compare(model, xs, tmp_path)


def test_keras3_attention_and_normalization_layers(tmp_path):
    """GroupQueryAttention (cross, and causal with one key/value head), MultiHeadAttention over two attention
    axes, AdditiveAttention/Attention with use_scale, concat scores, a causal mask and returned scores;
    GroupNormalization with epsilon, UnitNormalization over two axes, LayerNormalization(rms_scaling),
    RMSNormalization, SpectralNormalization, EinsumDense with bias axes."""
    keras = _keras()
    L = keras.layers
    q, v, x, grid = keras.Input((4, 8)), keras.Input((5, 8)), keras.Input((4, 4)), keras.Input((3, 4, 4))
    att, scores = L.Attention()([x, x], return_attention_scores=True)
    outs = [
        L.GroupQueryAttention(2, 4, 2)(q, v),
        L.GroupQueryAttention(2, 4, 1)(q, q, use_causal_mask=True),
        L.MultiHeadAttention(2, 2, attention_axes=(1, 2))(grid, grid),
        L.AdditiveAttention(use_scale=True)([x, x]),
        L.Attention(use_scale=True, score_mode="concat")([x, x]),
        L.Attention(use_scale=True)([x, x], use_causal_mask=True),
        att,
        scores,
        L.GroupNormalization(2, epsilon=1e-2)(x),
        L.UnitNormalization(axis=(1, 2))(x),
        L.LayerNormalization(rms_scaling=True)(x),
        L.SpectralNormalization(L.Dense(3))(x),
        L.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), bias_axes="de", activation="relu")(x),
    ]
    if hasattr(L, "RMSNormalization"):
        outs.append(L.RMSNormalization()(x))
    rng = np.random.default_rng(0)
    xs = [_f32(rng, 2, 4, 8), _f32(rng, 2, 5, 8), _f32(rng, 2, 4, 4), _f32(rng, 2, 3, 4, 4)]
    _export_and_compare(keras.Model([q, v, x, grid], outs), xs, tmp_path)


def test_keras3_preprocessing_with_string_inputs(tmp_path):
    """Hashing (salts, a mask value, multi_hot), HashedCrossing (int and one_hot), Discretization and
    CategoryEncoding output modes with count weights, StringLookup tf_idf/count/invert, IntegerLookup
    invert/one_hot, adapted TextVectorization (bigrams with a fixed length, tf_idf of 1-3-grams, characters)."""
    keras = _keras()
    L = keras.layers
    s, n, x = keras.Input((3,), dtype="string"), keras.Input((3,), dtype="int64"), keras.Input((3,))
    line = keras.Input((1,), dtype="string")
    corpus = ["the quick fox", "the lazy dog jumps", "fox"]
    vec_int = L.TextVectorization(output_sequence_length=6, ngrams=2)
    vec_idf = L.TextVectorization(output_mode="tf_idf", ngrams=(1, 3))
    vec_chars = L.TextVectorization(output_mode="count", split="character", standardize="lower")
    for layer, data in ((vec_int, corpus), (vec_idf, corpus), (vec_chars, ["abc", "bcd"])):
        layer.adapt(data)
    small = keras.ops.cast(n, "int32")
    outs = [
        L.Hashing(7, salt=[3, 9])(s),
        L.Hashing(4, salt=11)(n),
        L.Hashing(6, output_mode="multi_hot")(s),
        L.Hashing(5, mask_value="")(s),
        L.HashedCrossing(8)((s[:, :1], n[:, 1:2])),
        L.HashedCrossing(5, output_mode="one_hot")((s[:, 0], n[:, 1])),
        L.Discretization(bin_boundaries=[0.0, 1.0], output_mode="one_hot")(x),
        L.Discretization(bin_boundaries=[-0.5, 0.5], output_mode="count")(x),
        L.CategoryEncoding(5, output_mode="multi_hot")(small),
        L.CategoryEncoding(5, output_mode="one_hot")(small[:, :1]),
        L.CategoryEncoding(5, output_mode="count")(small, count_weights=x),
        L.StringLookup(vocabulary=["a", "b", "c"], output_mode="tf_idf", idf_weights=[0.5, 1.0, 2.0])(s),
        L.StringLookup(vocabulary=["a", "b"], output_mode="count", num_oov_indices=2)(s),
        L.StringLookup(vocabulary=["a", "b"], invert=True)(n),
        L.IntegerLookup(vocabulary=[5, 7, 9], invert=True)(n),
        L.IntegerLookup(vocabulary=[5, 7, 9], output_mode="one_hot")(n[:, :1]),
        vec_int(line),
        vec_idf(line),
        vec_chars(line),
    ]
    xs = [
        np.array([["a", "b", ""], ["xyz", "c", "a"], ["c", "c", "a"]], object),
        np.array([[0, 1, 3], [4, 2, 3], [2, 3, 2]], np.int64),
        _f32(np.random.default_rng(0), 3, 3),
        np.array([["The quick, brown fox!"], ["dog"], [""]], object),
    ]
    _export_and_compare(keras.Model([s, n, x, line], outs), xs, tmp_path, eager=False)


def test_keras3_ragged_text_vectorization(tmp_path):
    """TextVectorization(ragged=True) serves a RaggedTensor: jaxsm.RaggedTensor with TF's values and splits."""
    keras = _keras()
    s = keras.Input((), dtype="string")
    vec = keras.layers.TextVectorization(ragged=True)
    vec.adapt(["a b c", "b c d e"])
    _export_and_compare(keras.Model(s, vec(s)), np.array(["a b z", "e", ""], object), tmp_path, eager=False)


def test_keras3_image_audio_preprocessing_and_ops(tmp_path):
    """Resizing with crop_to_aspect_ratio (bilinear, nearest) and pad_to_aspect_ratio, CenterCrop, an inverted
    Normalization, MelSpectrogram and STFTSpectrogram, and keras.ops with their own TF lowerings (top_k,
    argsort, logsumexp, erfinv, rfft, stft, extract_patches, searchsorted, affine_transform, rgb_to_hsv, psnr,
    quantile, median)."""
    keras = _keras()
    L, ops = keras.layers, keras.ops
    img, sig, x = keras.Input((6, 4, 2)), keras.Input((64,)), keras.Input((8,))
    transform = ops.convert_to_tensor([[1.0, 0.1, 0.5, 0.0, 1.0, -0.3, 0.0, 0.0]]) * ops.ones((2, 1))
    outs = [
        L.Resizing(3, 3, crop_to_aspect_ratio=True)(img),
        L.Resizing(4, 2, crop_to_aspect_ratio=True, interpolation="nearest")(img),
        L.Resizing(5, 5, pad_to_aspect_ratio=True, fill_value=1.0)(img),
        L.CenterCrop(3, 5)(img),
        L.Normalization(mean=[1.0, 2.0], variance=[4.0, 9.0], invert=True)(img),
        L.MelSpectrogram(fft_length=32, sequence_stride=8, sequence_length=16, num_mel_bins=8, sampling_rate=800)(sig),
        L.STFTSpectrogram(mode="log", frame_length=16, frame_step=8, fft_length=16)(ops.expand_dims(sig, -1)),
        *ops.top_k(x, 3),
        ops.argsort(x),
        ops.logsumexp(x, axis=-1),
        ops.erfinv(ops.tanh(x) * 0.9),
        *ops.rfft(x),
        *ops.stft(x, 4, 2, 4),
        ops.image.extract_patches(img, 2),
        ops.searchsorted(ops.convert_to_tensor([-1.0, 0.0, 1.0]), x[0]),
        ops.image.affine_transform(img, transform),
        ops.image.rgb_to_hsv(ops.sigmoid(img[..., :1]) * ops.ones((1, 1, 1, 3))),
        ops.nn.psnr(img, img * 0.5, 1.0),
        ops.quantile(x, 0.3, axis=1),
        ops.median(x, axis=1),
    ]
    rng = np.random.default_rng(0)
    xs = [_f32(rng, 2, 6, 4, 2), _f32(rng, 2, 64), _f32(rng, 2, 8)]
    _export_and_compare(keras.Model([img, sig, x], outs), xs, tmp_path, tol=1e-4)


def test_keras3_mixed_float16_model(tmp_path):
    """mixed_float16 convolutions, BatchNormalization, LSTM/GRU/bidirectional SimpleRNN, causal attention,
    LayerNormalization, Conv1DTranspose: float16 outputs, float32 where a layer's dtype says so."""
    keras = _keras()
    L = keras.layers
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        img, seq = keras.Input((6, 6, 2)), keras.Input((5, 3))
        h = L.GlobalAveragePooling2D()(L.DepthwiseConv2D(2)(L.BatchNormalization()(L.Conv2D(3, 3)(img))))
        r = L.LSTM(3, return_sequences=True)(seq)
        g = L.GRU(2)(r)
        outs = [
            h,
            r,
            g,
            L.Bidirectional(L.SimpleRNN(2))(seq),
            L.LayerNormalization()(L.MultiHeadAttention(2, 2)(r, r, use_causal_mask=True)),
            L.Conv1DTranspose(2, 2, strides=2)(seq),
            L.Dense(2, dtype="float32")(g),
            L.Softmax(dtype="float32")(L.Dense(3)(h)),
        ]
        model = keras.Model([img, seq], outs)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(0)
    _export_and_compare(model, [_f32(rng, 2, 6, 6, 2), _f32(rng, 2, 5, 3)], tmp_path, tol=1e-3)


def test_keras3_model_saved_with_tf_saved_model_save(tmp_path):
    """tf.saved_model.save of a Keras 3 model keeps only its serving_default signature: served by jaxsm like TF,
    its gradients (jaxsm.functional, jax.grad under jit) equal GradientTape's, and jax.vmap over a new leading
    axis gives the unbatched outputs."""
    keras = _keras()
    L = keras.layers
    ids, img = keras.Input((5,), dtype="int32"), keras.Input((5, 5, 2))
    h = L.Bidirectional(L.GRU(2, return_sequences=True))(L.Embedding(9, 3, mask_zero=True)(ids))
    h = L.LSTM(2, go_backwards=True)(h)
    c = L.GlobalMaxPooling2D()(L.Dropout(0.3)(L.BatchNormalization()(L.Conv2D(2, 3, groups=2)(img))))
    model = keras.Model([ids, img], L.Dense(2)(L.Concatenate()([h, c])))
    rng = np.random.default_rng(0)
    for v in model.variables:  # distinct values (no zero biases, unit scales) to pair the variables by below
        v.assign(rng.uniform(0.5, 1.0, v.shape).astype(np.float32))
    tf.saved_model.save(model, str(tmp_path))
    ref = tf.saved_model.load(str(tmp_path))
    sig = ref.signatures["serving_default"]
    got = jaxsm.load(str(tmp_path)).signatures["serving_default"]
    names = sorted(sig.structured_input_signature[1])  # "inputs" (ids), "inputs_1" (img)
    x = {names[0]: np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 7], [0, 0, 0, 0, 0]], np.int32)}
    x[names[1]] = _f32(rng, 3, 5, 5, 2)
    xt = {k: tf.constant(v) for k, v in x.items()}
    _assert_same(got(**x), sig(**xt), "serving_default")

    variables = list(sig.trainable_variables)
    with tf.GradientTape() as tape:
        tape.watch(variables)
        loss = tf.reduce_sum(sig(**xt)["output_0"] ** 2)
    tf_grads = tape.gradient(loss, variables)
    apply, params = jaxsm.functional(got)
    grads = _flatten(jax.jit(jax.grad(lambda p: jnp.sum(apply(p, **x)["output_0"] ** 2)))(params))
    flat = _flatten(params)
    for var, want in zip(variables, tf_grads):
        # the variables' keys follow Keras 3's object tree, not TF's names: pair them by their (random) values
        (key,) = [k for k, p in flat.items() if p.shape == var.shape and np.array_equal(p, var.numpy())]
        want = tf.convert_to_tensor(want).numpy()  # the embedding's gradient is IndexedSlices
        np.testing.assert_allclose(grads[key], want, rtol=1e-4, atol=1e-5, err_msg=var.name)

    batched = {k: np.stack([v, v[::-1]]) for k, v in x.items()}
    out = jax.vmap(lambda b: apply(params, **b))(batched)["output_0"]
    np.testing.assert_allclose(out[0], sig(**xt)["output_0"].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1][::-1], out[0], rtol=1e-5, atol=1e-5)


def _k2():
    k2 = pytest.importorskip("tf_keras")
    k2.utils.set_random_seed(0)
    return k2


def test_tf_keras_subclassed_model_traces_training_and_inference(tmp_path):
    """A subclassed tf-keras model whose call branches on ``training`` in Python (BatchNormalization, a seeded
    Dropout): ``model.save`` keeps a trace per value; jaxsm dispatches training=True/False/default like TF, with
    the same dropout draws call after call and the same moving statistics after a training call."""
    k2 = _k2()
    L = k2.layers

    class Net(k2.Model):
        def __init__(self):
            super().__init__()
            self.d1, self.bn, self.d2 = L.Dense(4), L.BatchNormalization(), L.Dense(2)
            self.drop = L.Dropout(0.5, seed=1)

        def call(self, x, training=None):
            h = self.bn(self.d1(x), training=training)
            if training:
                h = h * 2.0
            return self.d2(self.drop(h, training=training))

    x = _f32(np.random.default_rng(0), 3, 5)
    model = Net()
    model(x)
    model.save(str(tmp_path), save_format="tf")
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    _assert_same(got(x), ref(x), "default")
    _assert_same(got(x, False), ref(x, False), "training=False (positional)")
    for call in range(2):
        _assert_same(got(x, training=True), ref(x, training=True), f"training=True, call {call}")
    moving = sorted(v.name for v in ref.variables if "moving" in v.name)
    assert len(moving) == 2
    _assert_same(
        {v.name: v for v in got.variables if v.name in moving},
        {v.name: v for v in ref.variables if v.name in moving},
        "moving statistics",
    )
    _assert_same(got(x, training=False), ref(x, training=False), "inference after training calls")


def test_tf_keras_masking_sequential(tmp_path):
    """A tf-keras Sequential of Masking, SimpleRNN and a backwards GRU (partly and fully masked rows): __call__
    and the serving signature."""
    k2 = _k2()
    L = k2.layers
    rnn = [L.SimpleRNN(3, return_sequences=True), L.GRU(2, go_backwards=True), L.Dense(1)]
    model = k2.Sequential([L.Masking(0.0, input_shape=(4, 2)), *rnn])
    model.save(str(tmp_path), save_format="tf")
    x = _f32(np.random.default_rng(0), 3, 4, 2)
    x[0, 2:] = 0
    x[2] = 0
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    _assert_same(got(x), ref(x), "__call__")
    (name,) = ref.signatures["serving_default"].structured_input_signature[1]
    want = ref.signatures["serving_default"](**{name: tf.constant(x)})
    _assert_same(got.signatures["serving_default"](**{name: x}), want, "serving_default")


def test_tf_keras_add_loss_and_add_metric(tmp_path):
    """A tf-keras model trained one epoch with a custom layer calling add_loss/add_metric, an activity
    regularizer and a model-level loss closure: outputs, the saved regularization losses, each layer's
    call_and_return_all_conditional_losses (outputs and losses) and activity_regularizer_fn."""
    k2 = _k2()
    L = k2.layers

    class LossLayer(L.Layer):
        def call(self, x):
            self.add_loss(tf.reduce_mean(x**2) * 0.1)
            self.add_metric(tf.reduce_sum(x), name="s", aggregation="mean")
            return x + 1.0

    inp = L.Input((3,))
    dense = L.Dense(2, activity_regularizer=k2.regularizers.l1(0.01))
    model = k2.Model(inp, dense(LossLayer()(inp)))
    model.add_loss(lambda: tf.reduce_sum(dense.kernel) * 0.5)
    model.compile("sgd", "mse")
    x = _f32(np.random.default_rng(0), 4, 3)
    model.fit(x, np.zeros((4, 2), np.float32), verbose=0, epochs=1)
    model.save(str(tmp_path), save_format="tf")
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    _assert_same(got(x), ref(x), "__call__")
    losses = ref.keras_api.regularization_losses
    _assert_same([f() for f in got.keras_api.regularization_losses], [f() for f in losses], "regularization losses")
    for child in ("layer-1", "layer_with_weights-0"):
        want = getattr(ref, child).call_and_return_all_conditional_losses(x)
        _assert_same(getattr(got, child).call_and_return_all_conditional_losses(x), want, child)
    want = getattr(ref, "layer_with_weights-0").keras_api.activity_regularizer_fn(x)
    _assert_same(getattr(got, "layer_with_weights-0").keras_api.activity_regularizer_fn(x), want, "activity")


def test_tf_keras_experimental_preprocessing_model(tmp_path):
    """tf.keras.layers.experimental.preprocessing layers in one tf-keras model: Rescaling, Resizing,
    CenterCrop, RandomFlip/RandomRotation (identity in inference), an adapted Normalization, StringLookup one_hot,
    Hashing into CategoryEncoding; called in inference and training (the non-random outputs)."""
    k2 = _k2()
    L = k2.layers
    P = L.experimental.preprocessing
    rng = np.random.default_rng(0)
    img, s, n = L.Input((6, 6, 3)), L.Input((1,), dtype="string"), L.Input((2,), dtype="int64")
    h = P.RandomRotation(0.1)(P.RandomFlip()(P.CenterCrop(3, 3)(P.Resizing(4, 4)(P.Rescaling(1 / 127.5, -1)(img)))))
    norm = P.Normalization()
    norm.adapt(_f32(rng, 10, 3))
    outs = [
        norm(L.GlobalAveragePooling2D()(h)),
        P.StringLookup(vocabulary=["a", "b"], output_mode="one_hot")(s),
        P.CategoryEncoding(5, output_mode="count")(P.Hashing(5)(n)),
    ]
    k2.Model([img, s, n], outs).save(str(tmp_path), save_format="tf")
    xs = [
        rng.uniform(0, 255, (2, 6, 6, 3)).astype(np.float32),
        np.array([["a"], ["z"]], object),
        np.array([[3, 9], [1, 1]], np.int64),
    ]
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    xt = [tf.constant(v) for v in xs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # string inputs run op by op
        _assert_same(got(xs), ref(xt), "inference")
        _assert_same(got(xs, training=True)[1:], ref(xt, training=True)[1:], "training")


def test_tf_keras_mixed_float16_model(tmp_path):
    """A tf-keras mixed_float16 model: Conv2D, BatchNormalization, SeparableConv2D, Conv2DTranspose, a
    bidirectional LSTM, GRU, Conv1D, LayerNormalization, MultiHeadAttention and a float32 softmax; inference and
    training calls."""
    k2 = _k2()
    L = k2.layers
    k2.mixed_precision.set_global_policy("mixed_float16")
    try:
        inp = L.Input((6, 6, 2))
        h = L.BatchNormalization()(L.Conv2D(3, 3, padding="same")(inp))
        h = L.Reshape((64, 2))(L.Conv2DTranspose(2, 2, strides=2)(L.SeparableConv2D(2, 3)(h)))
        seq = L.Bidirectional(L.LSTM(3, return_sequences=True))(h)
        last, conv = L.GRU(2)(seq), L.Conv1D(2, 3)(seq)
        probs = L.Activation("softmax", dtype="float32")(L.Dense(3)(last))
        model = k2.Model(inp, [probs, last, L.LayerNormalization()(seq), L.MultiHeadAttention(2, 2)(conv, conv)])
        model.save(str(tmp_path), save_format="tf")
    finally:
        k2.mixed_precision.set_global_policy("float32")
    x = _f32(np.random.default_rng(0), 2, 6, 6, 2)
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    _assert_same(got(x), ref(x), "inference", tol=1e-3)
    _assert_same(got(x, training=True), ref(x, training=True), "training", tol=1e-3)
