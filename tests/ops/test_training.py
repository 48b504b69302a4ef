"""Optimizer update ops (ResourceApply*, ResourceSparseApply*) against TF: two steps, every variable and slot after
each."""

import warnings

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
    "Ftrl": (["accum", "linear"], dict(lr=0.1, l1=0.3, l2=0.02, lr_power=-0.5), {}),
    "Ftrl-power": (["accum", "linear"], dict(lr=0.5, l1=0.3, l2=0.02, lr_power=-0.3), {}),
    "Ftrl-multiply": (
        ["accum", "linear"],
        dict(lr=0.1, l1=3.0, l2=0.02, lr_power=-0.5),
        dict(multiply_linear_by_lr=True),
    ),
    "FtrlV2": (["accum", "linear"], dict(lr=0.1, l1=0.3, l2=0.02, l2_shrinkage=0.05, lr_power=-0.5), {}),
    "FtrlV2-multiply": (
        ["accum", "linear"],
        dict(lr=0.5, l1=0.6, l2=0.02, l2_shrinkage=0.05, lr_power=-0.3),
        dict(multiply_linear_by_lr=True),
    ),
    "ProximalAdagrad": (["accum"], dict(lr=0.1, l1=0.5, l2=0.02), {}),
    "ProximalAdagrad-nol1": (["accum"], dict(lr=0.1, l1=0.0, l2=0.02), {}),
    "ProximalGradientDescent": ([], dict(alpha=0.1, l1=0.5, l2=0.02), {}),
    "ProximalGradientDescent-nol1": ([], dict(alpha=0.1, l1=0.0, l2=0.02), {}),
    "AddSign": (["m"], dict(lr=0.1, alpha=1.0, sign_decay=0.9, beta=0.9), {}),
    "PowerSign": (["m"], dict(lr=0.1, logbase=np.e, sign_decay=0.9, beta=0.9), {}),
    "AdagradDA": (
        ["gradient_accumulator", "gradient_squared_accumulator"],
        dict(lr=0.1, l1=0.2, l2=0.02, global_step=3),
        {},
    ),
    "AdagradDA-nol1": (
        ["gradient_accumulator", "gradient_squared_accumulator"],
        dict(lr=0.1, l1=0.0, l2=0.02, global_step=3),
        {},
    ),
}


def _atol(hyper):
    # FTRL with lr_power != -0.5 takes accum ** -lr_power, where TF's Eigen pow and XLA's round differently (by up
    # to ~1.5 ulp), and the linear slot adds (new_accum ** p - accum ** p) / lr * var: absolute differences of a
    # few 1e-7 on values that can be small.
    return 1e-6 if hyper.get("lr_power", -0.5) != -0.5 else 1e-7


def _hyper_constants(hyper):
    return {k: tf.constant(v, tf.int64 if k == "global_step" else tf.float32) for k, v in hyper.items()}


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
            kw.update(_hyper_constants(hyper))
            raw(**kw, **({"delta": grad} if name.endswith("GradientDescent") else {"grad": grad}), **attrs)
            return {k: self.vs[k].read_value() for k in init}

    tf.saved_model.save(M(), str(tmp_path))
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    for i, g in enumerate(grads):
        want, out = ref.step(tf.constant(g)), got.step(g)
        for k in init:
            np.testing.assert_allclose(
                np.asarray(out[k]), want[k].numpy(), rtol=1e-6, atol=_atol(hyper), err_msg=f"{k} after step {i}"
            )


# ResourceSparseApply<op>: the same slots, hyperparameters and attrs as the dense op (the arguments, in another
# order, are passed by name)
SPARSE_CASES = {
    k: CASES[k]
    for k in CASES
    if k.split("-")[0] not in ("GradientDescent", "Adam", "AdamWithAmsgrad", "AdaMax", "AddSign", "PowerSign")
}
SPARSE_CASES["AdagradV2-frozen"] = (["accum"], dict(lr=0.1, epsilon=1e-7), dict(update_slots=False))

# Rows of the variable (shape, first dimension 5) that each of the two steps updates: duplicated and unsorted, as
# TF's kernels see them (a duplicate is updated twice, the second time from the first update's result).
STEP_INDICES = [[2, 0, 2, 3], [4, 4, 1, 4]]

# variable shape, index dtype, whether the indices are a function input (run time) or graph constants
LAYOUTS = {
    "rows-int32-input": ((5, 3), tf.int32, True),
    "scalars-int64-const": ((5,), tf.int64, False),
    "rank3-int64-input": ((5, 2, 2), tf.int64, True),
}


def _sparse_module(name, slots, hyper, attrs, shape, index_dtype, indices_input, step_indices=STEP_INDICES):
    rng = np.random.default_rng(1)
    init = {s: np.abs(rng.standard_normal(shape)).astype(np.float32) + 0.1 for s in ["var", *slots]}
    if name == "CenteredRMSProp":  # ms >= mg**2, as the optimizer keeps it
        init["ms"] = init["mg"] ** 2 + init["ms"]
    n = len(step_indices[0])
    grads = rng.standard_normal((len(step_indices), n, *shape[1:])).astype(np.float32)
    raw = getattr(tf.raw_ops, f"ResourceSparseApply{name}")

    class M(tf.Module):
        def __init__(self):
            self.vs = {k: tf.Variable(v) for k, v in init.items()}

        def _apply(self, grad, indices):
            kw = {k: self.vs[k].handle for k in init}
            kw.update(_hyper_constants(hyper))
            raw(**kw, grad=grad, indices=indices, **attrs)
            return {k: self.vs[k].read_value() for k in init}

        if indices_input:

            @tf.function(input_signature=[tf.TensorSpec([n, *shape[1:]]), tf.TensorSpec([n], index_dtype)])
            def step(self, grad, indices):
                return self._apply(grad, indices)

        else:  # one function per step, its indices graph constants

            @tf.function(input_signature=[tf.TensorSpec([n, *shape[1:]])])
            def step0(self, grad):
                return self._apply(grad, tf.constant(step_indices[0], index_dtype))

            @tf.function(input_signature=[tf.TensorSpec([n, *shape[1:]])])
            def step1(self, grad):
                return self._apply(grad, tf.constant(step_indices[1], index_dtype))

    return M(), init, grads


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("case", sorted(SPARSE_CASES))
def test_resource_sparse_apply_ops_update_rows_like_tf(case, layout, tmp_path):
    name = case.split("-")[0]
    slots, hyper, attrs = SPARSE_CASES[case]
    shape, index_dtype, indices_input = LAYOUTS[layout]
    module, init, grads = _sparse_module(name, slots, hyper, attrs, shape, index_dtype, indices_input)
    tf.saved_model.save(module, str(tmp_path))
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    for i, (g, idx) in enumerate(zip(grads, STEP_INDICES, strict=True)):
        if indices_input:
            idx = np.asarray(idx, index_dtype.as_numpy_dtype)
            want, out = ref.step(tf.constant(g), tf.constant(idx)), got.step(g, idx)
        else:
            want, out = getattr(ref, f"step{i}")(tf.constant(g)), getattr(got, f"step{i}")(g)
        for k in init:
            np.testing.assert_allclose(
                np.asarray(out[k]), want[k].numpy(), rtol=1e-6, atol=_atol(hyper), err_msg=f"{k} after step {i}"
            )


def test_sparse_apply_jitted_skips_out_of_range_indices(tmp_path):
    """Run-time indices in the compiled function (no eager fallback): a duplicate is applied twice in order; an
    out-of-range or negative index (TF raises) is skipped, so the result is TF's without those entries."""
    slots, hyper, attrs = SPARSE_CASES["RMSProp"]
    step_indices = [[3, -1, 0, 5, 3], [7, 1, 1, -6, 4]]
    module, init, grads = _sparse_module("RMSProp", slots, hyper, attrs, (5, 3), tf.int64, True, step_indices)
    tf.saved_model.save(module, str(tmp_path))
    got = jaxsm.load(str(tmp_path))
    ref = {k: tf.Variable(v) for k, v in init.items()}
    for i, (g, idx) in enumerate(zip(grads, step_indices, strict=True)):
        keep = [j for j, r in enumerate(idx) if 0 <= r < 5]
        tf.raw_ops.ResourceSparseApplyRMSProp(
            **{k: v.handle for k, v in ref.items()},
            **_hyper_constants(hyper),
            grad=tf.constant(g[keep]),
            indices=tf.constant([idx[j] for j in keep], tf.int64),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", jaxsm.errors.EagerFallbackWarning)
            out = got.step(g, np.asarray(idx, np.int64))
        for k in init:
            np.testing.assert_allclose(
                np.asarray(out[k]), ref[k].numpy(), rtol=1e-6, atol=_atol(hyper), err_msg=f"{k} after step {i}"
            )
