"""Keras exports beyond tests/test_keras_probe_3.py: dilated/strided 1D and 3D convolution options, ConvLSTM3D,
GRU(reset_after=False) unrolled backwards, recurrent dropout at inference, masks through TimeDistributed, odd
EinsumDense equations, keras.ops (linalg, fft, segment and image ops) in one export; a subclassed Keras 3 model
with ``training``/``mask`` arguments, nested and shared models, dict inputs and outputs and variables updated in
its call, exported with several ExportArchive endpoints; a fine-tuning step (gradients w.r.t. inputs and variables
against GradientTape, BatchNormalization's and the dropout seed's new values); quantized (int8, int4) and LoRA
models, mixed_bfloat16; dynamic sequence lengths and image sizes; re-exported TFSMLayers; tf-keras
LocallyConnected, RandomFourierFeatures, stacked cells and
shared/nested models."""

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
    """TF's or jaxsm's outputs as a flat list of NumPy arrays (dicts in key order)."""
    if isinstance(x, dict):
        return [a for k in sorted(x) for a in _leaves(x[k])]
    if isinstance(x, (list, tuple)):
        return [a for v in x for a in _leaves(v)]
    return [np.asarray(x.numpy() if hasattr(x, "numpy") else x)]


def _assert_same(got, want, what, tol=1e-5):
    """Same structure, shapes and dtypes; values within ``tol`` (relative to the largest value for bfloat16)."""
    got, want = _leaves(got), _leaves(want)
    assert len(got) == len(want), f"{what}: {len(got)} outputs, TF {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        where = f"{what}[{k}]"
        assert (g.shape, g.dtype) == (w.shape, w.dtype), f"{where}: {g.shape} {g.dtype}, TF {w.shape} {w.dtype}"
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=where)
        elif w.dtype.itemsize == 2:  # bfloat16: TF's CPU kernels round partial sums differently
            w32, g32 = w.astype(np.float32), g.astype(np.float32)
            atol = tol * max(float(np.abs(w32).max()), 1e-3)
            np.testing.assert_allclose(g32, w32, rtol=0, atol=atol, err_msg=where)
        else:
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=where)


def _serve_both_ways(serve, xs, want, tol=1e-5, op_by_op=True):
    """``serve`` jitted and (``op_by_op``) with jit disabled on ``xs``, each against TF's ``want``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # data-dependent shapes run op by op (EagerFallbackWarning)
        _assert_same(serve(xs), want, "jit", tol)
        if op_by_op:
            with jax.disable_jit():
                _assert_same(serve(xs), want, "op by op", tol)


def _export_and_compare(model, xs, path, tol=1e-5, op_by_op=True):
    """Export a Keras 3 model; its ``serve`` endpoint by TF and by jaxsm (jitted, and op by op unless the model is
    large enough for that to take a minute) on ``xs``."""
    model.export(str(path), verbose=False)
    ref = tf.saved_model.load(str(path))  # keep it alive while its function runs
    want = ref.serve(tf.nest.map_structure(tf.constant, xs))
    _serve_both_ways(jaxsm.load(str(path)).serve, xs, want, tol, op_by_op)


def _keras():
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    return keras


def _k2():
    k2 = pytest.importorskip("tf_keras")
    k2.utils.set_random_seed(0)
    return k2


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_keras3_layer_options_and_ops(tmp_path):
    """Strided and dilated DepthwiseConv1D/SeparableConv1D, ConvLSTM3D, GRU(reset_after=False) unrolled
    backwards with its state, LSTM with (inactive) dropout and recurrent_dropout, a mask through TimeDistributed
    into an LSTM, MultiHeadAttention over axis 2 only, EinsumDense with ellipsis/reducing/transposing equations,
    SpectralNormalization of a Conv2D; keras.ops sort, top_k unsorted, segment_sum/max, fft2, irfft, QR,
    Cholesky, inv, det, solve, eigh, svd, slogdet, triangular solve, lanczos and antialiased resizing,
    pad/crop_images, map_coordinates, hsv_to_rgb, gaussian_blur, cumprod, glu, celu, normalize, saturate_cast.
    (Dilated transposed convolutions are left out: TF's CPU kernels refuse them without oneDNN, the oracle's
    setting.)"""
    keras = _keras()
    L, ops = keras.layers, keras.ops
    seq, vol, img, ids = (
        keras.Input((6, 2)),
        keras.Input((3, 4, 4, 2)),
        keras.Input((6, 5, 3)),
        keras.Input((5,), dtype="int32"),
    )
    sq, seg = keras.Input((3, 3)), keras.Input((6,), dtype="int32")
    x = seq[:, :, 0]
    spd = ops.matmul(sq, ops.transpose(sq, (0, 2, 1))) + 3 * ops.eye(3)
    emb = L.Embedding(9, 3, mask_zero=True)(ids)
    outs = [
        L.DepthwiseConv1D(2, strides=2, padding="same", depth_multiplier=2)(seq),
        L.DepthwiseConv1D(2, dilation_rate=2)(seq),
        L.SeparableConv1D(3, 3, strides=2, padding="same", depth_multiplier=2)(seq),
        L.SeparableConv1D(3, 2, dilation_rate=2)(seq),
        L.ConvLSTM3D(2, 2, return_sequences=True)(L.Reshape((3, 4, 2, 2, 2))(vol)),
        *L.GRU(2, reset_after=False, go_backwards=True, return_state=True, unroll=True)(seq),
        L.LSTM(2, dropout=0.3, recurrent_dropout=0.4, return_sequences=True)(seq),
        L.LSTM(2)(L.TimeDistributed(L.Dense(3))(emb)),
        L.MultiHeadAttention(2, 2, attention_axes=(2,))(vol[:, 0], vol[:, 0]),
        L.EinsumDense("...b,bc->...c", output_shape=3, bias_axes="c")(seq),
        L.EinsumDense("abc,bcd->ad", output_shape=(4,))(seq),
        L.EinsumDense("abc,cb->ab", output_shape=(6,))(L.Dense(6)(seq)),
        L.SpectralNormalization(L.Conv2D(2, 2), power_iterations=2)(img),
        ops.sort(x, axis=-1),
        ops.top_k(x, 2, sorted=False)[0],
        ops.segment_sum(x[0], seg[0], num_segments=4),
        ops.segment_max(x[0], seg[0], num_segments=4),
        *ops.fft2((img[..., 0], img[..., 1])),
        ops.irfft(ops.rfft(x)),
        *ops.linalg.qr(sq),
        ops.linalg.cholesky(spd),
        ops.linalg.inv(spd),
        ops.linalg.det(spd),
        ops.linalg.solve(spd, sq),
        ops.linalg.eigh(spd)[0],
        ops.linalg.svd(spd, compute_uv=False),
        ops.slogdet(spd)[1],
        ops.linalg.solve_triangular(spd, sq, lower=True),
        ops.image.resize(img, (4, 7), interpolation="lanczos3"),
        ops.image.resize(img, (3, 2), antialias=True),
        ops.image.pad_images(img, 1, 2, target_height=9, target_width=8),
        ops.image.crop_images(img, 1, 1, target_height=3, target_width=3),
        ops.image.map_coordinates(
            img[0, :, :, 0], ops.stack([ops.ones((4,)) * 1.5, ops.arange(4, dtype="float32")]), 1
        ),
        ops.image.hsv_to_rgb(ops.sigmoid(img)),
        ops.image.gaussian_blur(img, (3, 3), (1.0, 1.0)),
        ops.cumprod(x, axis=1),
        ops.nn.glu(x),
        ops.nn.celu(x),
        ops.normalize(x, order=1),
        ops.saturate_cast(x * 300, "uint8"),
    ]
    rng = np.random.default_rng(0)
    xs = [
        _f32(rng, 2, 6, 2),
        _f32(rng, 2, 3, 4, 4, 2),
        _f32(rng, 2, 6, 5, 3),
        np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 7]], np.int32),
        _f32(rng, 2, 3, 3),
        np.array([[0, 0, 1, 3, 3, 2], [1, 1, 1, 0, 0, 2]], np.int32),
    ]
    _export_and_compare(keras.Model([seq, vol, img, ids, sq, seg], outs), xs, tmp_path, tol=1e-4, op_by_op=False)


def test_keras3_subclassed_model_with_endpoints_and_state(tmp_path):
    """A subclassed Keras 3 model taking a dict (int ids, floats) and returning a dict: Python branches on
    ``training``, a masked LSTM, a layer called twice, a Functional model inside a Sequential inside it, a seeded
    Dropout and variables it assign_adds on every call; ExportArchive endpoints ``serve`` and ``train`` and a
    variable collection. Outputs, the updated variables (BatchNormalization's moving statistics, the counters, the
    dropout seed) after each call, call after call, jitted and op by op."""
    keras = _keras()
    L, ops = keras.layers, keras.ops
    f_in = keras.Input((3,))
    nested = keras.Sequential(
        [keras.Input((4,)), L.Dense(3, activation="relu"), keras.Model(f_in, L.Dense(2)(f_in) + f_in[:, :2])]
    )

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.emb, self.lstm = L.Embedding(7, 4, mask_zero=True), L.LSTM(3)
            self.shared, self.bn, self.drop = L.Dense(4), L.BatchNormalization(), L.Dropout(0.5, seed=2)
            self.nested = nested
            self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")
            self.total = self.add_weight(shape=(2,), initializer="zeros", trainable=False, name="total")

        def call(self, inputs, training=False, mask=None):
            ids, x = inputs["ids"], inputs["x"]
            h = self.lstm(self.emb(ids))
            a = self.shared(x)
            b = self.shared(self.bn(a, training=training))
            b = self.drop(b, training=True) if training else b - 1.0
            out = self.nested(a + b)
            self.calls.assign_add(1.0)
            self.total.assign_add(ops.sum(out, axis=0))
            return {"out": out, "h": h, "count": ops.cast(ops.sum(ops.cast(ids > 0, "int32")), "int64")}

    net = Net()
    rng = np.random.default_rng(0)
    xs = {"ids": np.array([[1, 2, 0, 0], [3, 4, 5, 6], [0, 0, 0, 0]], np.int32), "x": _f32(rng, 3, 4)}
    net(xs)
    archive = keras.export.ExportArchive()
    archive.track(net)
    spec = {"ids": tf.TensorSpec((None, 4), tf.int32), "x": tf.TensorSpec((None, 4), tf.float32)}
    archive.add_endpoint("serve", lambda d: net(d, training=False), input_signature=[spec])
    archive.add_endpoint("train", lambda d: net(d, training=True), input_signature=[spec])
    archive.add_variable_collection("state", [net.calls, net.total])
    archive.write_out(str(tmp_path), verbose=False)
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    xt = {k: tf.constant(v) for k, v in xs.items()}

    def variables(obj):
        return {v.name + str(k): v for k, v in enumerate(sorted(obj.variables, key=lambda v: v.name))}

    for jit in (True, False):
        with jax.disable_jit(not jit):
            for endpoint in ("serve", "train", "train", "serve"):
                what = f"{endpoint}, jit={jit}"
                _assert_same(getattr(got, endpoint)(xs), getattr(ref, endpoint)(xt), what)
                _assert_same(list(got.state), list(ref.state), f"{what}: the collection")
                _assert_same(variables(got), variables(ref), f"{what}: the variables")


def test_keras3_fine_tuning_step_matches_gradient_tape(tmp_path):
    """An ExportArchive ``train`` endpoint (BatchNormalization on batch statistics, a seeded Dropout, a masked
    unrolled GRU(reset_after=False), L2 regularization losses returned): jax.grad of a loss w.r.t. the trainable
    params and the image input equals GradientTape's, jitted and op by op; the new moving statistics and dropout
    seed state equal TF's variables after its call."""
    keras = _keras()
    L, ops = keras.layers, keras.ops
    img, ids = keras.Input((5, 5, 2)), keras.Input((4,), dtype="int32")
    h = L.BatchNormalization()(L.Conv2D(2, 3, kernel_regularizer="l2")(img))
    h = L.Dropout(0.5, seed=3)(L.GlobalAveragePooling2D()(h))
    e = L.GRU(2, reset_after=False, unroll=True)(L.Embedding(6, 3, mask_zero=True)(ids))
    model = keras.Model([img, ids], L.Dense(2, kernel_regularizer=keras.regularizers.l2(0.1))(L.Concatenate()([h, e])))
    rng = np.random.default_rng(0)
    for v in model.trainable_variables:  # distinct values to pair the variables by below
        v.assign(rng.uniform(0.5, 1.0, v.shape).astype(np.float32))
    archive = keras.export.ExportArchive()
    archive.track(model)
    sig = [[tf.TensorSpec((None, 5, 5, 2)), tf.TensorSpec((None, 4), tf.int32)]]
    archive.add_endpoint("train", lambda xs: (model(xs, training=True), ops.sum(model.losses)), input_signature=sig)
    archive.write_out(str(tmp_path), verbose=False)
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    xs = [_f32(rng, 3, 5, 5, 2), np.array([[1, 2, 0, 0], [3, 4, 5, 1], [0, 0, 0, 0]], np.int32)]
    xt = [tf.constant(x) for x in xs]

    apply, params = jaxsm.functional(got.train)
    assert apply.assigns, "the training call updates the moving statistics and the seed"
    trainable, frozen = jaxsm.split_trainable(got.train, params)
    flat = _flatten(params)
    keys = {v.name: v.key for v in got.variables}
    tvars = list(ref.trainable_variables)
    pairs = []  # TF's variable, jaxsm's key (Keras 3's names repeat: pair them by their random values)
    for var in tvars:
        (key,) = [k for k, p in flat.items() if p.shape == var.shape and np.array_equal(p, var.numpy())]
        pairs.append((var, key))
    with tf.GradientTape() as tape:
        tape.watch(xt[0])
        y, reg = ref.train(xt)
        loss = tf.reduce_sum(y**2) + reg
    tf_grads, tf_dx = tape.gradient(loss, [tvars, xt[0]])

    def loss_fn(p, x0):
        (y, reg), new = apply(jaxsm.merge(p, frozen), [x0, xs[1]])
        return jnp.sum(y**2) + reg, new

    grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
    for jit in (True, False):
        with jax.disable_jit(not jit):
            (value, new), (grads, dx) = (jax.jit(grad_fn) if jit else grad_fn)(trainable, xs[0])
        np.testing.assert_allclose(value, loss.numpy(), rtol=1e-5, err_msg=f"loss, jit={jit}")
        np.testing.assert_allclose(dx, tf_dx.numpy(), rtol=1e-4, atol=1e-5, err_msg=f"input gradient, jit={jit}")
        grads, new = _flatten(grads), _flatten(new)
        for (var, key), want in zip(pairs, tf_grads):
            want = tf.convert_to_tensor(want).numpy()  # the embedding's gradient is IndexedSlices
            np.testing.assert_allclose(grads[key], want, rtol=1e-4, atol=1e-5, err_msg=f"{var.name}, jit={jit}")
        updated = [v for v in ref.non_trainable_variables if keys[v.name] in new]  # not the GRU's unused seed
        assert len(updated) == 3, "moving mean and variance, the dropout's seed"
        for var in updated:  # after TF's one call
            _assert_same(new[keys[var.name]], var, f"{var.name}, jit={jit}")


def test_keras3_quantized_lora_and_bfloat16_models(tmp_path):
    """Dense/EinsumDense/Embedding quantized to int8 and int4, LoRA-enabled Dense and Embedding, a
    mixed_bfloat16 model (convolution, BatchNormalization, LSTM/GRU, attention, GroupNormalization, a float32
    head). (channels_first convolutions are left out: TF's CPU kernels refuse NCHW without oneDNN.)"""
    keras = _keras()
    L = keras.layers
    rng = np.random.default_rng(0)
    ids_v = np.array([[0, 1, 4], [2, 3, 3]], np.int32)
    x, ids = keras.Input((4,)), keras.Input((3,), dtype="int32")
    int8 = [L.Dense(3, activation="relu"), L.EinsumDense("ab,bc->ac", output_shape=3, bias_axes="c"), L.Embedding(5, 3)]
    int4 = [L.Dense(3), L.EinsumDense("ab,bc->ac", output_shape=3), L.Embedding(5, 3)]
    lora = [L.Dense(3), L.Embedding(5, 3)]
    outs = [int8[0](x) + int8[1](x), int8[2](ids), int4[0](x) + int4[1](x), int4[2](ids), lora[0](x), lora[1](ids)]
    model = keras.Model([x, ids], outs)
    for layer in lora:
        layer.enable_lora(2)
    for v in model.trainable_variables:  # LoRA's B starts at zero
        v.assign(rng.uniform(-1, 1, v.shape).astype(np.float32))
    for mode, layers in (("int8", int8), ("int4", int4)):
        for layer in layers:
            layer.quantize(mode)
    assert sum(v.dtype == "int8" for v in model.variables) >= 6, "int8 and packed int4 kernels"
    _export_and_compare(model, [_f32(rng, 2, 4), ids_v], tmp_path / "quantized", tol=1e-4)

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        img, seq = keras.Input((6, 6, 2)), keras.Input((5, 3))
        h = L.GlobalAveragePooling2D()(L.BatchNormalization()(L.Conv2D(3, 3)(img)))
        r = L.LSTM(3, return_sequences=True)(seq)
        outs = [
            h,
            r,
            L.GRU(2)(r),
            L.LayerNormalization()(L.MultiHeadAttention(2, 2)(r, r)),
            L.GroupNormalization(1)(L.Conv1D(2, 2)(seq)),
            L.Dense(2, dtype="float32")(h),
        ]
        model = keras.Model([img, seq], outs)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    _export_and_compare(model, [_f32(rng, 2, 6, 6, 2), _f32(rng, 2, 5, 3)], tmp_path / "bf16", tol=2e-2, op_by_op=False)


def test_tf_keras_locally_connected_random_features_and_shared_models(tmp_path):
    """A tf-keras model.save of LocallyConnected1D/2D (each implementation), RandomFourierFeatures (gaussian and
    laplacian), GRU(reset_after=False) unrolled backwards, ConvLSTM1D backwards, a mask through TimeDistributed
    and a Bidirectional with its own backward layer, stacked RNN cells, a regularized layer and a nested model
    each called twice, MultiHeadAttention over axis 2 with a mask, causal dilated SeparableConv1D, strided
    DepthwiseConv1D; __call__ in inference and training (same draws as TF's first call) and the saved
    regularization loss."""
    k2 = _k2()
    L = k2.layers
    seq, img, ids, vol = L.Input((6, 2)), L.Input((5, 5, 2)), L.Input((5,), dtype="int64"), L.Input((3, 4, 4, 2))
    emb = L.Embedding(9, 3, mask_zero=True)(ids)
    shared = L.Dense(2, kernel_regularizer=k2.regularizers.l2(0.01))
    sub_in = L.Input((6, 2))
    sub = k2.Model(sub_in, L.Conv1D(2, 2)(sub_in))
    backward = L.SimpleRNN(2, return_sequences=True, go_backwards=True)
    outs = {
        "lc1": L.LocallyConnected1D(2, 3, strides=2)(seq),
        "lc1_impl2": L.LocallyConnected1D(2, 2, implementation=2)(seq),
        "lc2_impl3": L.LocallyConnected2D(2, (2, 3), implementation=3)(img),
        "lc2": L.LocallyConnected2D(1, 2, strides=2)(img),
        "rff": L.experimental.RandomFourierFeatures(4, kernel_initializer="laplacian", scale=2.0)(L.Flatten()(seq)),
        "rff_gaussian": L.experimental.RandomFourierFeatures(3)(L.Flatten()(img)),
        "gru": L.GRU(2, reset_after=False, go_backwards=True, return_sequences=True, unroll=True)(seq),
        "convlstm1d": L.ConvLSTM1D(2, 2, padding="same", go_backwards=True)(L.Reshape((3, 16, 2))(vol)),
        "td_mask": L.LSTM(2, return_sequences=True)(L.TimeDistributed(L.Dense(3))(emb)),
        "bi_mask": L.Bidirectional(L.SimpleRNN(2, return_sequences=True), backward_layer=backward)(emb),
        "cells": L.RNN([L.SimpleRNNCell(2), L.GRUCell(2, reset_after=False)])(seq),
        "shared": shared(shared(seq)),
        "nested": sub(seq) + sub(seq * 2.0),
        "mha": L.MultiHeadAttention(2, 2, attention_axes=(2,))(
            vol[:, 0], vol[:, 0], attention_mask=tf.ones((1, 4, 4, 4), tf.bool)
        ),
        "sep1d": L.SeparableConv1D(2, 2, dilation_rate=2, padding="causal")(seq),
        "dw1d": L.DepthwiseConv1D(2, strides=2)(seq),
    }
    k2.Model([seq, img, ids, vol], outs).save(str(tmp_path), save_format="tf")
    rng = np.random.default_rng(0)
    xs = [
        _f32(rng, 2, 6, 2),
        _f32(rng, 2, 5, 5, 2),
        np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 7]]),
        _f32(rng, 2, 3, 4, 4, 2),
    ]
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    xt = [tf.constant(x) for x in xs]
    _assert_same(got(xs), ref(xt), "inference")
    _assert_same(got(xs, training=True), ref(xt, training=True), "training")
    losses = [f() for f in ref.keras_api.regularization_losses]
    _assert_same([f() for f in got.keras_api.regularization_losses], losses, "regularization losses")


def test_tf_keras_preprocessing_sparse_outputs_and_asserts(tmp_path):
    """tf-keras preprocessing layers (their own TF graphs, not Keras 3's): TextVectorization with bigrams and a
    fixed length, padded tf_idf, character multi_hot; StringLookup multi_hot with 3 OOV buckets and sparse
    count (a SparseTensor), IntegerLookup invert/tf_idf/mask token, adapted Discretization, inverted
    Normalization, sparse CategoryEncoding, one_hot and salted Hashing, HashedCrossing; an id beyond
    CategoryEncoding's num_tokens fails its tf.Assert in both."""
    k2 = _k2()
    L = k2.layers
    rng = np.random.default_rng(0)
    s, n, x = L.Input((3,), dtype="string"), L.Input((3,), dtype="int64"), L.Input((3,))
    line = L.Input((1,), dtype="string")
    corpus = ["the quick fox", "the lazy dog jumps", "fox"]
    bigrams = L.TextVectorization(output_sequence_length=4, ngrams=2)
    tf_idf = L.TextVectorization(output_mode="tf_idf", ngrams=(1, 2), pad_to_max_tokens=True, max_tokens=12)
    chars = L.TextVectorization(output_mode="multi_hot", split="character")
    disc, norm = L.Discretization(num_bins=3), L.Normalization(invert=True)
    for layer, data in ((bigrams, corpus), (tf_idf, corpus), (chars, ["ab", "bc!"])):
        layer.adapt(data)
    disc.adapt(_f32(rng, 20))
    norm.adapt(_f32(rng, 10, 3))
    outs = {
        "bigrams": bigrams(line),
        "tf_idf": tf_idf(line),
        "chars": chars(line),
        "multi_hot": L.StringLookup(vocabulary=["a", "b", "c"], num_oov_indices=3, output_mode="multi_hot")(s),
        "sparse_count": L.StringLookup(vocabulary=["a", "b"], output_mode="count", sparse=True)(s),
        "invert": L.IntegerLookup(vocabulary=[5, 7, 9], invert=True)(n),
        "int_tf_idf": L.IntegerLookup(vocabulary=[5, 7, 9], output_mode="tf_idf", idf_weights=[0.3, 0.6, 0.9])(n),
        "mask_token": L.IntegerLookup(vocabulary=[5, 7, 9], mask_token=0, num_oov_indices=2)(n),
        "disc": disc(x),
        "norm": norm(x),
        "sparse_multi_hot": L.CategoryEncoding(10, output_mode="multi_hot", sparse=True)(n),
        "hash_one_hot": L.Hashing(4, output_mode="one_hot")(s[:, :1]),
        "hash_salt": L.Hashing(4, salt=[1, 2])(n),
        "cross": L.HashedCrossing(6)((s[:, :1], n[:, :1])),
    }
    k2.Model([s, n, x, line], outs).save(str(tmp_path), save_format="tf")
    xs = [
        np.array([["a", "b", ""], ["xyz", "c", "a"], ["c", "c", "a"]], object),
        np.array([[0, 5, 3], [9, 7, 7], [5, 5, 1]], np.int64),
        _f32(rng, 3, 3),
        np.array([["The quick, brown fox!"], ["dog dog"], [""]], object),
    ]
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # string inputs run op by op
        want = ref([tf.constant(v) for v in xs])
        _assert_same({k: _dense(v) for k, v in got(xs).items()}, {k: _dense(v) for k, v in want.items()}, "outputs")
        xs[1] = np.array([[0, 5, 3], [9, 7, 7], [5, 5, 11]], np.int64)
        with pytest.raises(tf.errors.InvalidArgumentError, match="num_tokens=10"):
            ref([tf.constant(v) for v in xs])
        with pytest.raises(jaxsm.errors.AssertFailedError, match="num_tokens=10"):
            got(xs)


def _dense(x):
    """A SparseTensor's (TF's or jaxsm's) dense value, after checking it is one."""
    if isinstance(x, tf.SparseTensor):
        return tf.sparse.to_dense(x)
    return x.to_dense() if isinstance(x, jaxsm.SparseTensor) else x


def test_stateful_recurrent_layers_and_a_tf_keras_model_with_a_mask_argument(tmp_path):
    """Keras 3 stateful LSTM/GRU/SimpleRNN(go_backwards)/ConvLSTM1D: states carried call after call like TF's.
    A subclassed tf-keras model whose call takes ``training`` and ``mask`` (an Embedding mask into an LSTM, a
    Python branch on training): default and training calls; training=None and a mask, never traced, are refused
    by both."""
    keras, k2 = _keras(), _k2()
    L = keras.layers
    inp = keras.Input(batch_shape=(2, 3, 2))
    outs = [
        L.LSTM(2, stateful=True)(inp),
        L.GRU(2, stateful=True, return_sequences=True)(inp),
        L.SimpleRNN(2, stateful=True, go_backwards=True)(inp),
        L.ConvLSTM1D(1, 2, stateful=True)(L.Reshape((3, 2, 1))(inp)),
    ]
    keras.Model(inp, outs).export(str(tmp_path / "stateful"), verbose=False)
    ref, got = tf.saved_model.load(str(tmp_path / "stateful")), jaxsm.load(str(tmp_path / "stateful"))
    x = _f32(np.random.default_rng(0), 2, 3, 2)
    for call in range(3):
        with jax.disable_jit(call == 1):
            _assert_same(got.serve(x), ref.serve(tf.constant(x)), f"stateful call {call}")

    L2 = k2.layers

    class Sub(k2.Model):
        def __init__(self):
            super().__init__()
            self.emb, self.lstm, self.d = (
                L2.Embedding(6, 3, mask_zero=True),
                L2.LSTM(2, return_sequences=True),
                L2.Dense(1),
            )

        def call(self, ids, training=None, mask=None):
            mask = self.emb.compute_mask(ids) if mask is None else mask
            h = self.lstm(self.emb(ids), mask=mask, training=training)
            return self.d(h + 1.0 if training else h)

    model = Sub()
    ids = np.array([[1, 2, 0], [3, 0, 0]], np.int64)
    model(ids)
    model.save(str(tmp_path / "sub"), save_format="tf")
    ref, got = tf.saved_model.load(str(tmp_path / "sub")), jaxsm.load(str(tmp_path / "sub"))
    _assert_same(got(ids), ref(tf.constant(ids)), "default")
    _assert_same(got(ids, training=True), ref(tf.constant(ids), training=True), "training")
    mask = np.array([[True, False, True], [True, True, False]])
    for args, kwargs in (((None, None), {}), ((), {"mask": mask})):  # traced with training True/False, mask None
        with pytest.raises(ValueError, match="Could not find matching concrete function"):
            ref(tf.constant(ids), *args, **{k: tf.constant(v) for k, v in kwargs.items()})
        with pytest.raises(jaxsm.errors.FunctionMatchError):
            got(ids, *args, **kwargs)


def test_dynamic_lengths_and_a_reexported_tfsm_layer(tmp_path):
    """A Keras 3 model with dict inputs of unknown length and image size (masked Bidirectional GRU, causal
    attention, strided same-padded Conv1D/Conv1DTranspose/Conv2D, pooling, resizing, GroupNormalization, sort,
    cumsum, top_k; an all-padding row gives NaN averages in both) called with three shapes; a model wrapping
    a Keras 3 export and a tf-keras SavedModel as TFSMLayers, exported again and saved with tf.saved_model.save."""
    keras = _keras()
    L, ops = keras.layers, keras.ops
    seq, ids = keras.Input((None, 2), name="seq"), keras.Input((None,), dtype="int32", name="ids")
    img = keras.Input((None, None, 2), name="img")
    emb = L.Embedding(7, 4, mask_zero=True)(ids)
    outs = {
        "lstm": L.LSTM(2, return_sequences=True, go_backwards=True)(seq),
        "gru": L.Bidirectional(L.GRU(2))(emb),
        "mha": L.MultiHeadAttention(2, 2)(emb, emb, use_causal_mask=True),
        "conv": L.Conv1D(2, 3, strides=2, padding="same")(seq),
        "conv_t": L.Conv1DTranspose(2, 3, strides=2, padding="same")(seq),
        "pool": L.MaxPooling1D(2, padding="same")(seq),
        "gap": L.GlobalAveragePooling1D()(emb),
        "img": L.Conv2D(2, 3, strides=2, padding="same")(img),
        "resize": L.Resizing(4, 4)(img),
        "gn": L.GroupNormalization(2)(img),
        "sort": ops.sort(seq, axis=1),
        "cumsum": ops.cumsum(seq, axis=1),
        "top_k": ops.top_k(ops.sum(seq, -1), 2)[0],
    }
    keras.Model({"seq": seq, "ids": ids, "img": img}, outs).export(str(tmp_path / "dynamic"), verbose=False)
    ref, got = tf.saved_model.load(str(tmp_path / "dynamic")), jaxsm.load(str(tmp_path / "dynamic"))
    rng = np.random.default_rng(0)
    for t, h, w in ((3, 4, 5), (5, 3, 3), (4, 6, 2)):
        xs = {"seq": _f32(rng, 2, t, 2), "ids": np.zeros((2, t), np.int32), "img": _f32(rng, 2, h, w, 2)}
        xs["ids"][0] = rng.integers(1, 7, t)  # the second row is all padding
        want = ref.serve({k: tf.constant(v) for k, v in xs.items()})
        with jax.disable_jit(t == 5):
            got_ = got.serve(xs)
        assert np.isnan(want["gap"].numpy()[1]).all()
        for k in want:
            np.testing.assert_array_equal(np.isnan(got_[k]), np.isnan(want[k].numpy()), err_msg=k)
        nan_free = {k: np.nan_to_num(np.asarray(v)) for k, v in got_.items()}
        _assert_same(nan_free, {k: np.nan_to_num(v.numpy()) for k, v in want.items()}, f"length {t}")

    x_in = keras.Input((4,))
    keras.Model(x_in, L.Dense(3, activation="tanh")(L.BatchNormalization()(x_in))).export(
        str(tmp_path / "inner"), verbose=False
    )
    k2 = _k2()
    k_in = k2.layers.Input((4,))
    k2.Model(k_in, k2.layers.Dense(2)(k_in)).save(str(tmp_path / "inner_k2"), save_format="tf")
    x = keras.Input((4,))
    h = L.TFSMLayer(str(tmp_path / "inner"), call_endpoint="serve")(x)
    (k,) = L.TFSMLayer(str(tmp_path / "inner_k2"), call_endpoint="serving_default")(x).values()
    model = keras.Model(x, L.Dense(2)(L.Concatenate()([h, k])))
    xv = _f32(rng, 3, 4)
    _export_and_compare(model, xv, tmp_path / "outer")
    tf.saved_model.save(model, str(tmp_path / "saved"))
    sig = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    (name,) = sig.structured_input_signature[1]
    want = sig(**{name: tf.constant(xv)})
    _assert_same(jaxsm.load(str(tmp_path / "saved")).signatures["serving_default"](**{name: xv}), want, "saved")
