"""Optimizer update ops (ResourceApply*) against TF: two steps, every variable and slot after each."""

import numpy as np
import pytest

import jaxsm

tf = pytest.importorskip("tensorflow")

# op -> (slot names, hyperparameters in the op's argument order (before ``grad``), attrs)
CASES = {
    "GradientDescent": ([], dict(alpha=0.1), {}),
    "Momentum": (["accum"], dict(lr=0.1, momentum=0.9), {}),
    "Momentum-nesterov": (["accum"], dict(lr=0.1, momentum=0.9), dict(use_nesterov=True)),
    "KerasMomentum": (["accum"], dict(lr=0.1, momentum=0.9), {}),
    "KerasMomentum-nesterov": (["accum"], dict(lr=0.1, momentum=0.9), dict(use_nesterov=True)),
    "Adam": (["m", "v"], dict(beta1_power=0.81, beta2_power=0.998, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-7), {}),
    "Adam-nesterov": (
        ["m", "v"],
        dict(beta1_power=0.81, beta2_power=0.998, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-7),
        dict(use_nesterov=True),
    ),
    "AdamWithAmsgrad": (
        ["m", "v", "vhat"],
        dict(beta1_power=0.81, beta2_power=0.998, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-7),
        {},
    ),
    "AdaMax": (["m", "v"], dict(beta1_power=0.81, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-7), {}),
    "Adagrad": (["accum"], dict(lr=0.1), {}),
    "Adagrad-frozen": (["accum"], dict(lr=0.1), dict(update_slots=False)),
    "AdagradV2": (["accum"], dict(lr=0.1, epsilon=1e-7), {}),
    "RMSProp": (["ms", "mom"], dict(lr=0.01, rho=0.9, momentum=0.5, epsilon=1e-7), {}),
    "CenteredRMSProp": (["mg", "ms", "mom"], dict(lr=0.01, rho=0.9, momentum=0.5, epsilon=1e-7), {}),
    "Adadelta": (["accum", "accum_update"], dict(lr=1.0, rho=0.95, epsilon=1e-7), {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_resource_apply_ops_update_like_tf(case, tmp_path):
    name = case.split("-")[0]
    slots, hyper, attrs = CASES[case]
    rng = np.random.default_rng(0)
    init = {s: np.abs(rng.standard_normal((3, 4))).astype(np.float32) + 0.1 for s in ["var", *slots]}
    if name == "CenteredRMSProp":  # ms >= mg**2, as the optimizer keeps it
        init["ms"] = init["mg"] ** 2 + init["ms"]
    grads = rng.standard_normal((2, 3, 4)).astype(np.float32)
    raw = getattr(tf.raw_ops, f"ResourceApply{name}")

    class M(tf.Module):
        def __init__(self):
            self.vs = {k: tf.Variable(v) for k, v in init.items()}

        @tf.function(input_signature=[tf.TensorSpec([3, 4], tf.float32)])
        def step(self, grad):
            kw = {k: self.vs[k].handle for k in init}
            kw.update({k: tf.constant(v, tf.float32) for k, v in hyper.items()})
            raw(**kw, **({"delta": grad} if name == "GradientDescent" else {"grad": grad}), **attrs)
            return {k: self.vs[k].read_value() for k in init}

    tf.saved_model.save(M(), str(tmp_path))
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    for i, g in enumerate(grads):
        want, out = ref.step(tf.constant(g)), got.step(g)
        for k in init:
            np.testing.assert_allclose(
                np.asarray(out[k]), want[k].numpy(), rtol=1e-6, atol=1e-7, err_msg=f"{k} after step {i}"
            )
