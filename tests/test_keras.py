"""Keras models exported as SavedModels, run with jaxsm and with TF on the same inputs.

The Keras applications are built with ``weights=None`` and ``classifier_activation=None`` (a random-init softmax
is near-uniform and would hide errors) and compared on logits within 1e-4 of the largest logit's magnitude.
They are marked ``slow`` (deselect with ``-m 'not slow'``).
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

import jaxsm
from jaxsm.errors import EagerFallbackWarning

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def _export(model, path) -> str:
    model.export(str(path), verbose=False)
    return str(path)


def _compare(path: str, inputs, rel: float = 1e-4, endpoint: str = "serve"):
    ref_model = tf.saved_model.load(path)  # keep the loaded object alive while its function runs
    ref = getattr(ref_model, endpoint)
    got = getattr(jaxsm.load(path), endpoint)
    want = ref(*tf.nest.map_structure(tf.constant, inputs))
    out = got(*inputs)
    want_flat = tf.nest.flatten(want)
    got_flat = tf.nest.flatten(out)
    assert len(want_flat) == len(got_flat), "number of outputs"
    for i, (w, g) in enumerate(zip(want_flat, got_flat)):
        w = w.numpy()
        g = np.asarray(g)
        assert g.shape == w.shape and g.dtype == w.dtype, f"output {i}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
        scale = max(float(np.abs(w).max()), 1e-6) if w.size else 1.0
        np.testing.assert_allclose(g, w, rtol=0, atol=rel * scale, err_msg=f"output {i}")


APPLICATIONS = {
    "MobileNetV2": dict(input_shape=(96, 96, 3)),
    "ResNet50": dict(input_shape=(64, 64, 3)),
    "EfficientNetB0": dict(input_shape=(64, 64, 3)),
    "DenseNet121": dict(input_shape=(64, 64, 3)),
    "InceptionV3": dict(input_shape=(75, 75, 3)),
    "ConvNeXtTiny": dict(input_shape=(64, 64, 3)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_keras_application(name, tmp_path):
    keras.utils.set_random_seed(0)
    kw = APPLICATIONS[name]
    model = getattr(keras.applications, name)(weights=None, classifier_activation=None, classes=10, **kw)
    path = _export(model, tmp_path / name)
    x = np.random.default_rng(0).uniform(0, 255, size=(2,) + kw["input_shape"]).astype(np.float32)
    _compare(path, [x])


def _rnn_model(layer):
    keras.utils.set_random_seed(0)
    inp = keras.Input((7, 5))
    return keras.Model(inp, layer(inp))


@pytest.mark.parametrize("kind", ["lstm", "gru", "bidirectional", "lstm_last", "simple_rnn"])
def test_recurrent(kind, tmp_path):
    layer = {
        "lstm": lambda: keras.layers.LSTM(6, return_sequences=True),
        "lstm_last": lambda: keras.layers.LSTM(6),
        "gru": lambda: keras.layers.GRU(6, return_sequences=True),
        "bidirectional": lambda: keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True)),
        "simple_rnn": lambda: keras.layers.SimpleRNN(3),
    }[kind]()
    path = _export(_rnn_model(layer), tmp_path / kind)
    x = np.random.default_rng(1).normal(size=(3, 7, 5)).astype(np.float32)
    _compare(path, [x], rel=1e-5)


def test_transformer_encoder(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 16))
    att = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)(inp, inp)
    x = keras.layers.LayerNormalization()(inp + att)
    ff = keras.layers.Dense(32, activation="gelu")(x)
    ff = keras.layers.Dense(16)(ff)
    out = keras.layers.LayerNormalization()(x + ff)
    path = _export(keras.Model(inp, out), tmp_path / "enc")
    x = np.random.default_rng(2).normal(size=(2, 10, 16)).astype(np.float32)
    _compare(path, [x], rel=1e-5)


def test_multi_input_multi_output(tmp_path):
    keras.utils.set_random_seed(0)
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(5, activation="tanh")(a), b])
    out1 = keras.layers.Dense(2, name="head1")(h)
    out2 = keras.layers.Dense(1, activation="sigmoid", name="head2")(h)
    path = _export(keras.Model([a, b], [out1, out2]), tmp_path / "mimo")
    rng = np.random.default_rng(3)
    _compare(
        path,
        [[rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)]],
        rel=1e-6,
    )


def test_integer_token_text_model(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 8)(inp)
    x = keras.layers.Conv1D(6, 3, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    out = keras.layers.Dense(3)(x)
    path = _export(keras.Model(inp, out), tmp_path / "text")
    tokens = np.random.default_rng(4).integers(0, 50, size=(4, 12)).astype(np.int32)
    _compare(path, [tokens], rel=1e-6)


def test_keras_variables_and_saved_model_save(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization(), keras.layers.Dense(2)]
    )
    path = str(tmp_path / "m")
    tf.saved_model.save(model, path)
    imported = jaxsm.load(path)
    ref = tf.saved_model.load(path)
    x = np.random.default_rng(5).normal(size=(2, 3)).astype(np.float32)
    want = ref.signatures["serving_default"](tf.constant(x))
    got = imported.signatures["serving_default"](x)
    assert set(got) == set(want), "output keys"
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), want[k].numpy(), rtol=1e-5, err_msg=k)

    # Variables: the same values as the Keras model's, trainable flags included.
    def key(v):
        return (tuple(v.shape), float(np.asarray(v).sum()))

    assert sorted(map(key, imported.variables)) == sorted(map(key, model.variables)), "variables"
    assert sorted(map(key, imported.trainable_variables)) == sorted(map(key, model.trainable_variables))


def test_keras2_tf_keras_saved_model(tmp_path):
    k2 = pytest.importorskip("tf_keras")
    k2.utils.set_random_seed(0)
    inp = k2.layers.Input((5, 3))
    h = k2.layers.LSTM(4, return_sequences=True)(inp)
    h = k2.layers.GRU(3)(h)
    h = k2.layers.BatchNormalization()(h)
    out = k2.layers.Dense(2)(k2.layers.Dropout(0.5)(h))
    model = k2.Model(inp, out)
    path = str(tmp_path / "k2")
    model.save(path, save_format="tf")
    ref = tf.saved_model.load(path)
    got = jaxsm.load(path)
    x = np.random.default_rng(6).normal(size=(2, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(got(x)), ref(tf.constant(x)).numpy(), rtol=1e-5, atol=1e-6, err_msg="__call__"
    )
    np.testing.assert_allclose(
        np.asarray(got(x, training=False)),
        ref(tf.constant(x), training=False).numpy(),
        rtol=1e-5,
        atol=1e-6,
        err_msg="__call__ training=False",
    )
    sig = got.signatures["serving_default"](x)
    want = ref.signatures["serving_default"](tf.constant(x))
    assert set(sig) == set(want), "signature output keys"
    assert len(got.variables) == len(ref.variables), "variables"
    assert len(got.trainable_variables) == len(ref.trainable_variables), "trainable_variables"
    for a, b in zip(got.variables, ref.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=b.name)


def _save_training_step(model, optimizer, path):
    """Save a tf.Module whose ``train(x, y)`` takes one optimizer step on a mean-squared error (after one call,
    which creates the optimizer's slots); returns it loaded by TF and by jaxsm."""

    class Trainer(tf.Module):
        def __init__(self):
            self.model, self.opt = model, optimizer

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3]), tf.TensorSpec([None, 2])])
        def train(self, x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((self.model(x, training=True) - y) ** 2)
            grads = tape.gradient(loss, self.model.trainable_variables)
            self.opt.apply_gradients(zip(grads, self.model.trainable_variables))
            return loss

    trainer = Trainer()
    trainer.train(*_training_batch(0))
    tf.saved_model.save(trainer, str(path))
    return tf.saved_model.load(str(path)), jaxsm.load(str(path))


def _training_batch(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 8, 8, 3)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)


def _check_training_steps(ref, got, seed):
    """Three steps: jaxsm's losses follow TF's, each call compiled (no op-by-op fallback)."""
    x, y = _training_batch(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerFallbackWarning)
        for step in range(3):
            want = ref.train(x, y).numpy()
            np.testing.assert_allclose(np.asarray(got.train(x, y)), want, rtol=1e-5, err_msg=f"loss, step {step}")


_TRAIN_MODELS = {
    # fused BatchNormalization: its gradient is FusedBatchNormGradV3
    "conv_batch_norm": lambda L: [L.Conv2D(4, 3), L.BatchNormalization(), L.ReLU(), L.Flatten(), L.Dense(2)],
    # the forward loop pushes every step's activations onto TensorLists, the gradient loop pops them
    "lstm": lambda L: [L.Reshape((8, 24)), L.LSTM(5), L.Dense(2)],
    "gru": lambda L: [L.Reshape((8, 24)), L.GRU(5, return_sequences=True), L.GlobalMaxPooling1D(), L.Dense(2)],
}


@pytest.mark.parametrize("x64", [True, False])
@pytest.mark.parametrize("arch", sorted(_TRAIN_MODELS))
def test_saved_training_step(arch, x64, tmp_path):
    """A tf.Module exporting a training step of a tf_keras model (SGD with Nesterov momentum): the losses follow
    TF's step by step (so do the optimizer's momentum slots, which feed them), and so do the model's variables
    (batch norm's moving statistics included). Compiled as one XLA program, also with jax_enable_x64 off, where
    the gradient loop's BroadcastGradientArgs needs the shapes the forward loop accumulated at trace time."""
    k2 = pytest.importorskip("tf_keras")
    k2.utils.set_random_seed(0)
    model = k2.Sequential([k2.layers.InputLayer((8, 8, 3))] + _TRAIN_MODELS[arch](k2.layers))
    ref, got = _save_training_step(model, k2.optimizers.SGD(0.05, momentum=0.9, nesterov=True), tmp_path)
    with jax.enable_x64(x64):
        _check_training_steps(ref, got, seed=0)
    assert len(got.model.variables) == len(ref.model.variables) > 2, "model variables"
    for a, b in zip(got.model.variables, ref.model.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=b.name)


def _keras3_train_model(arch: str):
    layers = keras.layers
    inp = keras.Input((8, 8, 3))
    if arch == "separable_bn":
        h = layers.Activation("swish")(layers.BatchNormalization()(layers.SeparableConv2D(4, 3)(inp)))
        return keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling2D()(h)))
    h = layers.Reshape((8, 24))(inp)
    if arch == "lstm":
        h = layers.LSTM(5)(h)
    elif arch == "bidirectional_gru":
        h = layers.GlobalAveragePooling1D()(layers.Bidirectional(layers.GRU(4, return_sequences=True))(h))
    else:  # attention
        h = layers.Dense(8)(h)
        h = layers.LayerNormalization()(h + layers.MultiHeadAttention(2, 4)(h, h))
        h = layers.GlobalAveragePooling1D()(h)
    return keras.Model(inp, layers.Dense(2)(h))


@pytest.mark.parametrize("arch", ["lstm", "bidirectional_gru", "attention", "separable_bn"])
def test_saved_training_step_keras3(arch, tmp_path):
    """The same with Keras 3 (TF backend) and AdamW: its recurrent layers' gradients read the shapes of variables
    gathered inside the loop (VariableShape), and the optimizer's updates are plain variable ops."""
    keras.utils.set_random_seed(0)
    model = _keras3_train_model(arch)

    ref, got = _save_training_step(model, keras.optimizers.AdamW(1e-2), tmp_path)
    if arch == "lstm":
        from jaxsm._proto import saved_model_pb2

        saved = saved_model_pb2.SavedModel.FromString((tmp_path / "saved_model.pb").read_bytes())
        ops = {n.op for f in saved.meta_graphs[0].graph_def.library.function for n in f.node_def}
        assert "VariableShape" in ops, "the case this test is for"
    _check_training_steps(ref, got, seed=1)


@pytest.mark.parametrize("optimizer", ["Adam", "RMSprop", "Adamax"])
def test_saved_training_step_with_optimizer_slots(optimizer, tmp_path):
    """tf-keras' legacy optimizers (OptimizerV2, TF <= 2.10's default) keep slot variables that no object has as a
    child: the checkpoint names them through the optimizer (original variable, slot name). They must be restored
    -- the second and third steps read them -- and updated by ResourceApplyAdam / ResourceApplyRMSProp / ..."""
    k2 = pytest.importorskip("tf_keras")
    k2.utils.set_random_seed(0)
    model = k2.Sequential([k2.layers.InputLayer((8, 8, 3))] + _TRAIN_MODELS["conv_batch_norm"](k2.layers))
    ref, got = _save_training_step(model, getattr(k2.optimizers.legacy, optimizer)(0.01), tmp_path)
    _check_training_steps(ref, got, seed=0)


def test_keras2_model_saved_with_its_optimizer(tmp_path):
    """`model.save` of a compiled and fitted Keras 2 model includes the optimizer; with OptimizerV2 (every tf.keras
    up to TF 2.10, tf-keras' legacy optimizers) its slots are checkpointed only through the optimizer. Loading such
    a model for inference failed ("no value in the checkpoint")."""
    k2 = pytest.importorskip("tf_keras")
    k2.utils.set_random_seed(0)
    model = k2.Sequential([k2.layers.Dense(4, input_shape=(3,), activation="relu"), k2.layers.Dense(2)])
    model.compile(optimizer=k2.optimizers.legacy.Adam(0.01), loss="mse")
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    model.fit(x, np.zeros((8, 2), np.float32), epochs=1, verbose=0)
    model.save(str(tmp_path), save_format="tf")
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    np.testing.assert_allclose(np.asarray(got(x)), ref(x).numpy(), rtol=1e-5, atol=1e-6)


_EMBEDDING_OPTIMIZERS = {
    # tf-keras' legacy optimizers (OptimizerV2): fused sparse updates, or scatters + a dense gather (RMSprop)
    "legacy_SGD": (lambda k2: k2.optimizers.legacy.SGD(0.1, momentum=0.9), "ResourceSparseApplyKerasMomentum"),
    "legacy_Adagrad": (lambda k2: k2.optimizers.legacy.Adagrad(0.1), "ResourceSparseApplyAdagradV2"),
    "legacy_Ftrl": (
        lambda k2: k2.optimizers.legacy.Ftrl(
            0.1, l1_regularization_strength=0.01, l2_shrinkage_regularization_strength=0.01
        ),
        "ResourceSparseApplyFtrlV2",
    ),
    "legacy_Adam": (lambda k2: k2.optimizers.legacy.Adam(0.01), "ResourceScatterAdd"),
    "legacy_RMSprop": (lambda k2: k2.optimizers.legacy.RMSprop(0.01), "GatherV2"),
    # tf-keras' current optimizers: scatters, gathers, and (Ftrl) a dense segment sum by the unique ids
    "SGD": (lambda k2: k2.optimizers.SGD(0.1, momentum=0.9), "ResourceScatterAdd"),
    "Adagrad": (lambda k2: k2.optimizers.Adagrad(0.1), "ResourceGather"),
    "Ftrl": (lambda k2: k2.optimizers.Ftrl(0.1), "UnsortedSegmentSum"),
}


def _save_embedding_training_step(optimizer, tmp_path, extra=None):
    k2 = pytest.importorskip("tf_keras")
    k2.utils.set_random_seed(0)
    model = k2.Sequential([k2.layers.Embedding(50, 4, input_length=6), k2.layers.Flatten(), k2.layers.Dense(2)])

    class Trainer(tf.Module):
        def __init__(self):
            self.model, self.opt = model, optimizer(k2)

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.int32), tf.TensorSpec([None, 2])])
        def train(self, ids, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((self.model(ids, training=True) - y) ** 2)
            grads = tape.gradient(loss, self.model.trainable_variables)
            self.opt.apply_gradients(zip(grads, self.model.trainable_variables))
            return loss if extra is None else (loss, extra(ids))

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (8, 6)).astype(np.int32)
    ids[1] = ids[0]  # every id of row 0 twice: duplicate rows in the sparse update
    y = rng.standard_normal((8, 2)).astype(np.float32)
    trainer = Trainer()
    trainer.train(ids, y)
    tf.saved_model.save(trainer, str(tmp_path))
    return tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path)), ids, y


@pytest.mark.parametrize("optimizer", sorted(_EMBEDDING_OPTIMIZERS))
def test_embedding_training_step_compiles(optimizer, tmp_path):
    """An embedding's gradient is IndexedSlices: every Keras optimizer sums the rows of duplicate ids first
    (tf.unique + unsorted_segment_sum), then updates only those rows (ResourceSparseApply*, scatters, gathers).
    tf.unique's size is data-dependent; padded to the number of ids with an out-of-range filler, the step is
    exact and compiles (jaxsm/graph/dedup.py): three steps follow TF's losses and embedding table, no op-by-op
    fallback."""
    factory, expected_op = _EMBEDDING_OPTIMIZERS[optimizer]
    ref, got, ids, y = _save_embedding_training_step(factory, tmp_path)
    library = got.train.concrete_functions[0]._context.library
    graph_ops = {n.op for f in library.functions.values() for n in f.node_def}
    assert {"Unique", expected_op} <= graph_ops, "the case this test is for"
    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerFallbackWarning)
        for step in range(3):
            want = ref.train(ids, y).numpy()
            np.testing.assert_allclose(np.asarray(got.train(ids, y)), want, rtol=1e-5, err_msg=f"loss, step {step}")
    np.testing.assert_allclose(got.model.variables[0].numpy(), ref.model.variables[0].numpy(), rtol=1e-5, atol=1e-7)


def _distinct_count(ids):
    return tf.size(tf.unique(tf.reshape(ids, [-1])).y)


def _mean_over_distinct(ids):
    # a segment sum of other data with as many segments as distinct ids, then a mean over those segments
    flat = tf.reshape(ids, [-1])
    segments = tf.math.unsorted_segment_sum(tf.ones_like(flat, tf.float32), flat % 3, tf.size(tf.unique(flat).y))
    return tf.reduce_mean(segments)


@pytest.mark.parametrize("extra", [_distinct_count, _mean_over_distinct])
def test_unique_that_the_graph_can_observe_is_not_padded(extra, tmp_path):
    """The same step also returning something padding would change (the number of distinct ids; a mean over that
    many segments of other data): that Unique runs op by op (one EagerFallbackWarning), and all matches TF."""
    factory, _ = _EMBEDDING_OPTIMIZERS["legacy_SGD"]
    ref, got, ids, y = _save_embedding_training_step(factory, tmp_path, extra=extra)
    with pytest.warns(EagerFallbackWarning):
        loss, value = got.train(ids, y)
    want_loss, want_value = ref.train(ids, y)
    np.testing.assert_allclose(np.asarray(loss), want_loss.numpy(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(value), want_value.numpy(), rtol=1e-6)
