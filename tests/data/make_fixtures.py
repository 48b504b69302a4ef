"""Regenerate the committed fixtures in tests/data/ with TensorFlow (the oracle).

    python tests/data/make_fixtures.py

Each fixture is a small SavedModel directory plus ``<name>.npz`` holding inputs (``in_*``) and TensorFlow's
outputs (``out_*``) for the calls listed in ``CALLS``. tests/test_fixtures.py replays them with jaxsm only, so
the core suite stays meaningful on a machine without TensorFlow.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _module_fixture(tf):
    class Counter(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
            self.count = tf.Variable(0)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def predict(self, x):
            h = tf.nn.relu(tf.matmul(x, self.w))
            return {"softmax": tf.nn.softmax(h), "argmax": tf.argmax(h, axis=-1, output_type=tf.int32)}

        @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
        def step(self, n):
            for i in tf.range(n):
                if i % 2 == 0:
                    self.count.assign_add(i)
            return self.count.read_value()

    m = Counter()
    return m, {"serving_default": m.predict}


def _keras_fixture(tf):
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="valid")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5)(x)
    return keras.Model(inp, out), None


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    rng = np.random.default_rng(0)
    # module fixture
    m, sigs = _module_fixture(tf)
    path = HERE / "counter_module"
    shutil.rmtree(path, ignore_errors=True)
    tf.saved_model.save(m, str(path), signatures=sigs)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_default"](x=tf.constant(x))
    counts = [int(loaded.step(tf.constant(n)).numpy()) for n in (4, 3)]
    np.savez(
        HERE / "counter_module.npz",
        in_x=x,
        out_softmax=out["softmax"].numpy(),
        out_argmax=out["argmax"].numpy(),
        out_step=np.array(counts),
    )
    # keras fixture, exported with Keras 3's model.export()
    model, _ = _keras_fixture(tf)
    path = HERE / "keras_convnet"
    shutil.rmtree(path, ignore_errors=True)
    model.export(str(path), verbose=False)
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    loaded = tf.saved_model.load(str(path))
    np.savez(HERE / "keras_convnet.npz", in_x=x, out_y=loaded.serve(tf.constant(x)).numpy())
    print("fixtures written to", HERE)


if __name__ == "__main__":
    main()
