"""Regenerate the SavedModel bundled in the package (jaxsm/examples/mlp) with TensorFlow.

    python scripts/make_examples.py

A small Keras classifier (Dense -> ReLU -> Dense -> softmax) exported with Keras 3's ``model.export()``, plus
``expected.npz``: a fixed input and TensorFlow's output for it, so ``jaxsm demo`` can show they agree.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "jaxsm" / "examples" / "mlp"


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,), name="features"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    if OUT.exists():
        shutil.rmtree(OUT)
    model.export(str(OUT), verbose=False)
    x = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    loaded = tf.saved_model.load(str(OUT))
    y = loaded.serve(x).numpy()
    np.savez(OUT / "expected.npz", x=x, y=y)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
