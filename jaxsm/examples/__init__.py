"""SavedModels bundled with jaxsm, and the demo that runs one (``jaxsm demo``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MLP = Path(__file__).resolve().parent / "mlp"


def demo() -> int:
    """Load the bundled Keras export, run its serving signature, compare with TF's stored output."""
    import jaxsm

    model = jaxsm.load(MLP)
    ref = np.load(MLP / "expected.npz")
    out = model.signatures["serving_default"](features=ref["x"])
    y = np.asarray(out["output_0"])
    print(f"loaded {MLP}")
    print(f"signatures: {sorted(model.signatures)}")
    print("serving_default(features=x) ->")
    print(np.array2string(y, precision=5))
    err = float(np.max(np.abs(y - ref["y"])))
    print(f"max |jaxsm - TensorFlow| = {err:.2e}")
    return 0 if err < 1e-5 else 1
