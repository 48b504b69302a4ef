"""Keras exports beyond tests/test_keras_probe.py: 64-bit sentinels of Keras' lookup layers with jax_enable_x64
off, signature inputs given as TF tensors, masked recurrent layers and dict/list structures of tf-keras models,
gradients and an optimizer step through a loaded model against TF's GradientTape, and a multi-output Keras 3 model
of the layers with the most options (causal/dilated/transposed convolutions, attention masks, resizing)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsm
from tests.tfcompare import assert_close, save_function

tf = pytest.importorskip("tensorflow")

_INT64_MAX = np.iinfo(np.int64).max


def _run_x64_off(code: str, tmp_path) -> None:
    """Run ``code`` (with ``np``, ``jax``, ``jaxsm`` and ``io``, the parent's arrays, in scope) in a fresh process
    with jax_enable_x64 off, as JAX starts; the test session runs with it on."""
    head = "import jax, numpy as np, jaxsm\nassert not jax.config.jax_enable_x64\n"
    head += f"io = dict(np.load({str(tmp_path / 'io.npz')!r}, allow_pickle=True))\n"
    env = dict(os.environ, JAX_ENABLE_X64="0")
    run = [sys.executable, "-c", head + textwrap.dedent(code)]
    out = subprocess.run(run, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_int64_sentinels_keep_their_order_with_x64_off(tmp_path):
    """With jax_enable_x64 off a traced int64 is computed in 32 bits, and JAX's cast wrapped a static int64 beyond
    32 bits: tf.int64.max became -1. Keras' IntegerLookup/StringLookup map the mask token to tf.int64.max for
    bincount to drop (output_mode count/multi_hot): jaxsm raised LoweringError (op by op) and ``tf.minimum(x,
    tf.int64.max)`` gave -1s under jit. Such operands of selects, min/max and comparisons now saturate to int32's
    range, which keeps their order against every int32 value."""
    keras = pytest.importorskip("keras")
    L = keras.layers
    s, j = keras.Input((2,), dtype="string"), keras.Input((2,), dtype="int64")
    outs = [L.IntegerLookup(vocabulary=[5, 7], output_mode=m, mask_token=0)(j) for m in ("count", "multi_hot")]
    outs.append(L.StringLookup(vocabulary=["a", "b"], output_mode="multi_hot", mask_token="")(s))
    keras.Model([s, j], outs).export(str(tmp_path / "lookup"), verbose=False)
    int_only = keras.Model(j, outs[:2])
    int_only.export(str(tmp_path / "int_lookup"), verbose=False)
    big, small = tf.constant(_INT64_MAX), tf.constant(np.iinfo(np.int64).min)

    def sentinels(x):
        flat = tf.reshape(x, [-1])
        return (
            tf.minimum(x, big),
            tf.maximum(x, small),
            tf.clip_by_value(x, small, big),
            tf.cast(x < big, tf.int32),
            tf.reduce_min(tf.concat([flat, [big]], 0)),
            tf.math.bincount(tf.where(tf.equal(x, 0), big, x), minlength=4, maxlength=4, axis=-1, dtype=tf.int64),
        )

    ids = np.array([[5, 0], [9, 7], [0, 0]], np.int64)
    words = np.array([["a", ""], ["q", "b"], ["", ""]], object)
    fn_dir, fn = save_function(sentinels, [ids], shapes=[(None, 2)], export_dir=str(tmp_path / "fn"))
    ref = tf.saved_model.load(str(tmp_path / "lookup"))
    want = {
        "fn": [t.numpy() for t in fn(ids)],
        "lookup": [t.numpy() for t in ref.serve([tf.constant(words), tf.constant(ids)])],
        "int_lookup": [t.numpy() for t in tf.saved_model.load(str(tmp_path / "int_lookup")).serve(ids)],
    }
    np.savez(tmp_path / "io.npz", ids=ids, words=words, **{k: np.array(v, object) for k, v in want.items()})
    _run_x64_off(
        f"""
        import warnings
        warnings.simplefilter("ignore")  # 64-bit tensors computed in 32 bits; strings run op by op
        ids, words = io["ids"], io["words"]
        fn = jaxsm.load({fn_dir!r}).f
        lookup = jaxsm.load({str(tmp_path / "lookup")!r}).serve
        int_lookup = jaxsm.load({str(tmp_path / "int_lookup")!r}).serve
        calls = {{"fn": lambda: fn(ids), "lookup": lambda: lookup([words, ids]), "int_lookup": lambda: int_lookup(ids)}}
        for name, call in calls.items():
            for jit in (True, False):
                with jax.disable_jit(not jit):
                    got = call()
                for k, (g, w) in enumerate(zip(got, io[name])):
                    np.testing.assert_array_equal(np.asarray(g), w, err_msg=f"{{name}}[{{k}}] jit={{jit}}")
        print("ok")
        """,
        tmp_path,
    )


def test_signature_refuses_a_tf_tensor_of_another_dtype(tmp_path):
    """A signature converts NumPy values to its inputs' dtypes (float64 arrays feed a float32 input), but a
    tf.Tensor keeps its dtype: TF raises (TypeError, or InvalidArgumentError when every input is a tensor). jaxsm
    cast it silently; now it raises FunctionMatchError, as for a JAX array of another dtype."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b", dtype="int32")
    h = keras.layers.Concatenate()([a, keras.ops.cast(b, "float32")])
    keras.Model({"a": a, "b": b}, {"y": keras.layers.Dense(2)(h)}).export(str(tmp_path), verbose=False)
    ref = tf.saved_model.load(str(tmp_path)).signatures["serve"]
    got = jaxsm.load(str(tmp_path)).signatures["serve"]
    x = np.random.default_rng(0).standard_normal((2, 3))
    ib = np.array([[1, 2], [3, 4]], np.int32)
    assert_close(got(a=x, b=ib)["y"], ref(a=x, b=ib)["y"].numpy(), "float64 NumPy input")
    for bad in ({"a": tf.constant(x), "b": ib}, {"a": x.astype(np.float32), "b": tf.constant(ib, tf.int64)}):
        with pytest.raises((TypeError, tf.errors.InvalidArgumentError)):
            ref(**bad)
        with pytest.raises(jaxsm.errors.FunctionMatchError):
            got(**bad)
    with pytest.raises(jaxsm.errors.FunctionMatchError):
        got(a=jnp.asarray(x), b=ib)
    right = {"a": tf.constant(x, tf.float32), "b": tf.constant(ib)}
    assert_close(got(**right)["y"], ref(**right)["y"].numpy(), "tf.Tensor inputs")


def _structure(x):
    if isinstance(x, dict):
        return {k: _structure(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_structure(v) for v in x)
    a = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    return a.shape, a.dtype


def _assert_same(got, want, what, rtol=1e-5, atol=1e-5):
    assert _structure(got) == _structure(want), f"{what}: {_structure(got)} != TF's {_structure(want)}"
    flat_got, flat_want = jax.tree_util.tree_leaves(got), tf.nest.flatten(want)
    for g, w in zip(flat_got, flat_want):
        np.testing.assert_allclose(np.asarray(g), w.numpy(), rtol=rtol, atol=atol, err_msg=what)


def test_tf_keras_masked_lstm_with_dict_inputs_and_outputs(tmp_path):
    """A tf-keras model with dict inputs (int64 ids, a float feature) and a dict output holding a list, of a masked
    LSTM (go_backwards, return_state, an all-padding row): __call__ in inference and training, the serving
    signature (output keys), regularization losses, an empty batch."""
    k2 = pytest.importorskip("tf_keras")
    k2.utils.set_random_seed(0)
    L = k2.layers
    ids, feat = L.Input((5,), dtype="int64", name="ids"), L.Input((2,), name="feat")
    e = L.Embedding(12, 3, mask_zero=True, embeddings_regularizer=k2.regularizers.l2(0.1))(ids)
    seq, h, c = L.LSTM(2, return_sequences=True, return_state=True, go_backwards=True)(e)
    model = k2.Model({"ids": ids, "feat": feat}, {"seq": seq, "last": [h, c, feat]})
    model.save(str(tmp_path), save_format="tf")
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    x = {
        "ids": np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8], [0, 0, 0, 0, 0]], np.int64),
        "feat": np.ones((3, 2), np.float32),
    }
    xt = {k: tf.constant(v) for k, v in x.items()}
    _assert_same(got(x), ref(xt), "__call__")
    _assert_same(got.signatures["serving_default"](**x), ref.signatures["serving_default"](**xt), "serving_default")
    reg = [np.asarray(f()) for f in got.keras_api.regularization_losses]
    assert_close(np.array(reg), np.array([f().numpy() for f in ref.keras_api.regularization_losses]), "losses")
    empty = {k: v[:0] for k, v in x.items()}
    _assert_same(got(empty), ref({k: tf.constant(v) for k, v in empty.items()}), "empty batch")


def test_gradients_and_an_optimizer_step_match_gradient_tape(tmp_path):
    """jax.grad of a loss through a loaded tf-keras model called with training=True (BatchNormalization on batch
    statistics, its moving statistics returned as updated params) equals TF's GradientTape gradients; one SGD step
    on the params gives the outputs TF's model gives after the same step."""
    k2 = pytest.importorskip("tf_keras")
    k2.utils.set_random_seed(0)
    L = k2.layers
    inp = L.Input((6, 6, 2))
    h = L.Conv2D(3, 3, kernel_regularizer=k2.regularizers.l2(0.1))(inp)
    h = L.BatchNormalization()(h)
    h = L.Reshape((16, 3))(h)
    h = L.GRU(3)(h)
    model = k2.Model(inp, L.Dense(2, activation="tanh")(h))
    model.save(str(tmp_path), save_format="tf")
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 6, 6, 2)).astype(np.float32), rng.standard_normal((3, 2)).astype(np.float32)

    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((ref(x, training=True) - y) ** 2)
    tf_grads = dict(zip([v.name for v in ref.trainable_variables], tape.gradient(loss, ref.trainable_variables)))

    apply, params = jaxsm.functional(got.__call__)
    assert apply.assigns, "the training call updates BatchNormalization's moving statistics"
    trainable, frozen = jaxsm.split_trainable(got.__call__, params)

    def loss_fn(trainable):
        out, new = apply(jaxsm.merge(trainable, frozen), x, training=True)
        return jnp.mean((out - y) ** 2), new

    (value, new), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(trainable)
    assert_close(value, loss.numpy(), "loss", rtol=1e-5)
    by_name = {v.name: v.key for v in got.trainable_variables}
    assert sorted(by_name) == sorted(tf_grads), "trainable variables"
    for name, want in tf_grads.items():
        assert_close(_leaf(grads, by_name[name]), want.numpy(), f"gradient of {name}", rtol=1e-4, atol=1e-5)

    lr = 0.1
    for v in ref.trainable_variables:
        v.assign_sub(lr * tf_grads[v.name])
    stepped = jax.tree_util.tree_map(lambda p, g: p - lr * g, trainable, grads)
    _, moved = jaxsm.split_trainable(got.__call__, new)
    out, _ = apply(jaxsm.merge(stepped, moved), x, training=False)
    assert_close(out, ref(x, training=False).numpy(), "outputs after one SGD step", rtol=1e-4, atol=1e-5)


def _leaf(tree: dict, key: str):
    """The entry of a nested params dict at a flat variable key (``a/b/c``)."""
    from jaxsm.functional import _flatten

    return _flatten(tree)[key]


def test_keras3_layer_options_in_one_model(tmp_path):
    """One Keras 3 export with many outputs, each a layer option the sweep in tests/test_keras_layers.py leaves
    out: causal and dilated Conv1D, Conv2DTranspose with output_padding, dilated depthwise and separable
    convolutions, MultiHeadAttention with an explicit boolean mask and its scores, a padding mask from Embedding
    through attention, bicubic/area/aspect-ratio resizing, LayerNormalization over two axes, GroupNormalization on
    axis 1; served under jit and op by op."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    L = keras.layers
    seq, img, ids = keras.Input((8, 2)), keras.Input((6, 6, 2)), keras.Input((5,), dtype="int32")
    mask = keras.Input((8, 8), dtype="bool")
    att, scores = L.MultiHeadAttention(2, 3, output_shape=(4,))(
        seq, seq, attention_mask=mask, return_attention_scores=True
    )
    emb = L.Embedding(10, 4, mask_zero=True)(ids)
    outs = [
        L.Conv1D(3, 3, padding="causal", dilation_rate=2)(seq),
        L.Conv2DTranspose(2, 3, strides=(2, 3), padding="same", output_padding=(1, 2))(img),
        L.DepthwiseConv2D(3, dilation_rate=(2, 1), depth_multiplier=2)(img),
        L.SeparableConv2D(3, 3, dilation_rate=2, padding="same")(img),
        att,
        scores,
        L.MultiHeadAttention(2, 2)(emb, emb, use_causal_mask=True),
        L.Resizing(5, 7, interpolation="bicubic")(img),
        L.Resizing(4, 3, interpolation="area")(img),
        L.Resizing(4, 4, crop_to_aspect_ratio=True)(L.Cropping2D(((0, 0), (0, 3)))(img)),
        L.LayerNormalization(axis=[1, 2])(seq),
        L.GroupNormalization(2, axis=1)(seq),
    ]
    keras.Model([seq, img, ids, mask], outs).export(str(tmp_path), verbose=False)
    rng = np.random.default_rng(0)
    xs = [
        rng.standard_normal((2, 8, 2)).astype(np.float32),
        rng.standard_normal((2, 6, 6, 2)).astype(np.float32),
        np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 7]], np.int32),
        rng.random((2, 8, 8)) > 0.3,
    ]
    ref = tf.saved_model.load(str(tmp_path))
    want = ref.serve([tf.constant(x) for x in xs])
    serve = jaxsm.load(str(tmp_path)).serve
    _assert_same(serve(xs), want, "serve (jit)", rtol=2e-5, atol=2e-5)
    with jax.disable_jit():
        _assert_same(serve(xs), want, "serve (op by op)", rtol=2e-5, atol=2e-5)
