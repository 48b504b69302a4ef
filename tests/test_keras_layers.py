"""A sweep over Keras 3 layers: each in a tiny model, exported, run by TF and jaxsm on the same inputs."""

import os

import numpy as np
import pytest

import jaxsm

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

L = keras.layers
cases = {
    "conv2dT": (lambda: L.Conv2DTranspose(3, 3, strides=2, padding="same"), (6, 6, 2)),
    "conv1dT": (lambda: L.Conv1DTranspose(3, 3, strides=2), (7, 2)),
    "conv3dT": (lambda: L.Conv3DTranspose(2, 2, strides=2), (3, 3, 3, 2)),
    "sepconv": (lambda: L.SeparableConv2D(4, 3, depth_multiplier=2), (7, 7, 3)),
    "sepconv1d": (lambda: L.SeparableConv1D(4, 3), (7, 3)),
    "upsample_bil": (lambda: L.UpSampling2D(2, interpolation="bilinear"), (4, 4, 2)),
    "upsample_near": (lambda: L.UpSampling2D(2), (4, 4, 2)),
    "zeropad": (lambda: L.ZeroPadding2D(((1, 2), (0, 1))), (4, 4, 2)),
    "crop": (lambda: L.Cropping2D(((1, 0), (1, 1))), (5, 5, 2)),
    "groupnorm": (lambda: L.GroupNormalization(2), (4, 4, 4)),
    "unitnorm": (lambda: L.UnitNormalization(), (5,)),
    "layernorm": (lambda: L.LayerNormalization(), (3, 5)),
    "attention": (None, None),
    "timedist": (lambda: L.TimeDistributed(L.Dense(3)), (4, 5)),
    "convlstm": (lambda: L.ConvLSTM2D(2, 3, padding="same"), (3, 5, 5, 2)),
    "resizing": (lambda: L.Resizing(6, 5), (4, 4, 3)),
    # Keras' augmentation layers run in an exported serve() too: Philox draws (exact with x64) + projective warps
    "random_rotation": (lambda: L.RandomRotation(0.2), (6, 6, 3)),
    "random_zoom": (lambda: L.RandomZoom(0.2), (6, 6, 3)),
    "random_translation": (lambda: L.RandomTranslation(0.1, 0.2, fill_mode="wrap"), (6, 6, 3)),
    "random_flip_contrast": (lambda: keras.Sequential([L.RandomFlip(), L.RandomContrast(0.2)]), (4, 4, 3)),
    "centercrop": (lambda: L.CenterCrop(2, 2), (4, 4, 3)),
    "rescaling": (lambda: L.Rescaling(1 / 255.0, offset=-1), (4,)),
    "prelu": (lambda: L.PReLU(), (5,)),
    "elu_softmax": (lambda: L.Softmax(axis=1), (3, 4)),
    "gmp3d": (lambda: L.GlobalMaxPooling3D(), (3, 3, 3, 2)),
    "avgpool1d": (lambda: L.AveragePooling1D(2, padding="same"), (5, 3)),
    "maxpool3d": (lambda: L.MaxPooling3D(2), (4, 4, 4, 2)),
    "dot": (None, None),
    "masking_lstm": (None, None),
    "mha_causal": (None, None),
    "spectral": (lambda: L.Dense(3, activation="swish"), (4,)),
    "gelu_approx": (lambda: L.Activation(lambda x: keras.activations.gelu(x, approximate=True)), (4,)),
    "hard_sigmoid": (lambda: L.Activation("hard_sigmoid"), (4,)),
    "discretization": (lambda: L.Discretization(bin_boundaries=[-1.0, 0.0, 1.0]), (4,)),
    "normalization": (lambda: L.Normalization(mean=[1.0, 2.0], variance=[4.0, 9.0]), (2,)),
    "gru_reset_after_false": (lambda: L.GRU(3, reset_after=False, return_sequences=True), (4, 2)),
    "bidir_gru": (lambda: L.Bidirectional(L.GRU(3), merge_mode="sum"), (4, 2)),
    "simple_rnn_seq": (lambda: L.SimpleRNN(3, return_sequences=True, go_backwards=True), (4, 2)),
    "lstm_stateful_mask": (None, None),
    "depthwise1d": (lambda: L.DepthwiseConv1D(3, depth_multiplier=2), (7, 3)),
    "integer_lookup": (None, None),
    "category_encoding": (None, None),
}


def build(name, rng):
    f, shape = cases[name]
    if name == "attention":
        q = keras.Input((4, 6))
        v = keras.Input((5, 6))
        return keras.Model([q, v], L.Attention()([q, v])), [rng.normal(size=(2, 4, 6)), rng.normal(size=(2, 5, 6))]
    if name == "dot":
        a = keras.Input((4,))
        b = keras.Input((4,))
        return keras.Model([a, b], L.Dot(axes=1, normalize=True)([a, b])), [
            rng.normal(size=(2, 4)),
            rng.normal(size=(2, 4)),
        ]
    if name == "masking_lstm":
        i = keras.Input((5,), dtype="int32")
        h = L.Embedding(10, 4, mask_zero=True)(i)
        h = L.LSTM(3)(h)
        return keras.Model(i, h), [np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 0]], np.int32)]
    if name == "mha_causal":
        i = keras.Input((5, 8))
        h = L.MultiHeadAttention(2, 4)(i, i, use_causal_mask=True)
        return keras.Model(i, h), [rng.normal(size=(2, 5, 8))]
    if name == "category_encoding":
        i = keras.Input((3,), dtype="int32")
        h = L.CategoryEncoding(6, output_mode="multi_hot")(i)
        return keras.Model(i, h), [np.array([[1, 2, 5], [0, 0, 3]], np.int32)]
    if name == "lstm_stateful_mask":
        i = keras.Input((4, 2))
        h = L.Masking(0.0)(i)
        h = L.LSTM(3, return_sequences=True)(h)
        x = rng.normal(size=(2, 4, 2))
        x[0, 2:] = 0
        return keras.Model(i, h), [x]
    if name == "integer_lookup":
        i = keras.Input((3,), dtype="int64")
        h = L.IntegerLookup(vocabulary=[12, 36, 1138, 42])(i)
        return keras.Model(i, h), [np.array([[12, 1138, 42], [7, 36, 36]], np.int64)]
    i = keras.Input(shape)
    return keras.Model(i, f()(i)), [rng.normal(size=(2,) + shape)]


@pytest.mark.parametrize("name", sorted(cases))
def test_keras_layer(name, tmp_path):
    keras.utils.set_random_seed(0)
    model, xs = build(name, np.random.default_rng(0))
    xs = [x.astype(np.float32) if x.dtype == np.float64 else x for x in xs]
    model.export(str(tmp_path), verbose=False)
    ref = tf.saved_model.load(str(tmp_path))
    arg = xs if len(xs) > 1 else xs[0]
    want = ref.serve(tf.nest.map_structure(tf.constant, arg)).numpy()
    got = np.asarray(jaxsm.load(str(tmp_path)).serve(arg))
    assert got.shape == want.shape and got.dtype == want.dtype, f"{got.shape} {got.dtype} vs {want.shape} {want.dtype}"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())), err_msg=name)


def test_augmentation_layers_match_tf_with_x64_off(tmp_path):
    """Keras' random layers draw Philox numbers from 64-bit keys in serve(); with jax_enable_x64 off (JAX's
    default) jaxsm keeps the key words apart and still draws TF's numbers. Checked in a fresh process (the test
    session runs with x64 on)."""
    import subprocess
    import sys
    import textwrap

    keras.utils.set_random_seed(0)
    i = keras.Input((4, 4, 3))
    layers = [L.RandomFlip(), L.RandomContrast(0.2), L.RandomRotation(0.2), L.RandomBrightness(0.2)]
    h = i
    for layer in layers:
        h = layer(h)
    keras.Model(i, h).export(str(tmp_path / "m"), verbose=False)
    x = np.random.default_rng(0).uniform(0, 1, (2, 4, 4, 3)).astype(np.float32)
    ref = tf.saved_model.load(str(tmp_path / "m"))
    np.savez(tmp_path / "io.npz", x=x, y=ref.serve(tf.constant(x)).numpy())
    code = textwrap.dedent(f"""
        import jax, numpy as np, jaxsm
        assert not jax.config.jax_enable_x64
        io = np.load({str(tmp_path / "io.npz")!r})
        y = np.asarray(jaxsm.load({str(tmp_path / "m")!r}).serve(io["x"]))
        np.testing.assert_allclose(y, io["y"], rtol=1e-5, atol=1e-5)
        print("ok")
    """)
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", JAX_ENABLE_X64="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]
