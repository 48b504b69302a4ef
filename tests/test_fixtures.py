"""Replay the committed fixtures (tests/data/, made by make_fixtures.py with TF) with jaxsm only: no TF needed."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

import jaxsm
from jaxsm.compile import _sub_jaxprs

DATA = Path(__file__).resolve().parent / "data"


def test_counter_module():
    ref = np.load(DATA / "counter_module.npz")
    m = jaxsm.load(DATA / "counter_module")
    out = m.signatures["serving_default"](x=ref["in_x"])
    np.testing.assert_allclose(np.asarray(out["softmax"]), ref["out_softmax"], rtol=1e-6, err_msg="softmax")
    np.testing.assert_array_equal(np.asarray(out["argmax"]), ref["out_argmax"], err_msg="argmax")
    counts = [int(m.step(np.int32(n))) for n in (4, 3)]
    np.testing.assert_array_equal(counts, ref["out_step"], err_msg="counter after loops with branches")


def test_keras_convnet():
    ref = np.load(DATA / "keras_convnet.npz")
    m = jaxsm.load(DATA / "keras_convnet")
    y = np.asarray(m.serve(ref["in_x"]))
    np.testing.assert_allclose(y, ref["out_y"], rtol=1e-5, atol=1e-5 * np.abs(ref["out_y"]).max(), err_msg="logits")
    assert len(m.variables) > 0 and all(v.initialized for v in m.variables), "Keras export tracks variables"


def test_bundled_example():
    from jaxsm.examples import MLP

    ref = np.load(MLP / "expected.npz")
    m = jaxsm.load(MLP)
    np.testing.assert_allclose(
        np.asarray(m.signatures["serving_default"](features=ref["x"])["output_0"]),
        ref["y"],
        rtol=1e-5,
        err_msg="bundled example",
    )


def test_variables_are_the_mapped_checkpoint_not_a_copy():
    """On the CPU a variable's jax.Array is the checkpoint's memory-mapped bytes: load and memory stay flat in the
    model's size (benchmarks/scaling.py). The bundled example's tensors are 64-byte aligned in its data file, which
    XLA:CPU needs to share a host buffer."""
    from jaxsm.examples import MLP

    if jax.default_backend() != "cpu" or not Path("/proc/self/maps").exists():
        pytest.skip("CPU backend on Linux only")
    m = jaxsm.load(MLP)
    buffers = {v.name: v.value().unsafe_buffer_pointer() for v in m.variables}
    with open("/proc/self/maps") as f:
        mapped = [tuple(int(a, 16) for a in line.split()[0].split("-")) for line in f if "variables.data-" in line]
    assert mapped, "the checkpoint's data file is memory-mapped"
    copied = [name for name, p in buffers.items() if not any(lo <= p < hi for lo, hi in mapped)]
    assert len(buffers) == 4 and not copied, f"variables copied out of the mapped checkpoint: {copied}"


def _contraction_precisions(fn, *args) -> set:
    found = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in ("conv_general_dilated", "dot_general"):
                found.add(eqn.params["precision"])
            for sub in _sub_jaxprs(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def test_contractions_follow_jax_matmul_precision_setting():
    """Float32 convolutions and matmuls run in full float32 (TF-CPU's numbers) on every backend, unless the user
    sets JAX's ``jax_default_matmul_precision`` (TF32 on GPU, TF-GPU's own default): then JAX's choice, also for
    a function already compiled without it, and back again after."""
    ref = np.load(DATA / "keras_convnet.npz")
    m = jaxsm.load(DATA / "keras_convnet")
    x = ref["in_x"]
    m.serve(x)
    full = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
    assert _contraction_precisions(m.serve, x) == {full}
    with jax.default_matmul_precision("tensorfloat32"):
        assert _contraction_precisions(m.serve, x) == {(jax.lax.Precision.HIGH,) * 2}, "JAX's name for TF32"
        y = np.asarray(m.serve(x))
    np.testing.assert_allclose(y, ref["out_y"], rtol=1e-2, atol=1e-2 * np.abs(ref["out_y"]).max())
    assert _contraction_precisions(m.serve, x) == {full}
