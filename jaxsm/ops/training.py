"""Optimizer update ops (tensorflow/core/kernels/training_ops.cc): the dense ``ResourceApply*`` ops and the
row-wise ``ResourceSparseApply*`` ops on resource variables, and TF1's ``Apply*``/``SparseApply*`` on ref variables
(``VariableV2``), which take refs where the resource ops take handles and output the updated ref ("out"): one
lowering serves both names.

TF1 optimizers (``tf.compat.v1.train.*Optimizer``) and tf-keras' legacy optimizers update variables with these
fused ops inside saved training steps (the sparse ones for ``IndexedSlices`` gradients, e.g. of embeddings); Keras 3
and tf-keras 2.x's default optimizers use plain variable ops. Each lowering reads the variable and its slots,
computes TF's CPU functor formula in the variable's dtype, and writes them back (scalar hyperparameters are cast to
it). The resource ops have no outputs.

The sparse ops update the rows ``indices`` of the variable and its slots (dimension 0) with the rows of ``grad``.
TF's CPU kernels walk ``indices`` in order, one row at a time, so a duplicated index is updated twice, the second
time from the result of the first; the lowerings do the same with a ``lax.fori_loop`` over the indices (static
shapes, so they compile). Out-of-range and negative indices make TF's kernels raise, and the lowerings too when the
indices are known at trace time; a compiled function cannot raise on run-time indices, so such entries are skipped
(their rows are left alone, like the dropped updates of the Scatter ops). Where TF's loop for a rank-1 variable
(one scalar per row) arranges the formula differently (Adagrad, ProximalAdagrad, AdagradDA), the lowering follows
it; that AdagradDA loop computes in double, the lowering in the variable's dtype.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsm.graph.values import Resource, to_static
from jaxsm.ops.registry import op


def _optimizer_op(name: str, refs: int) -> Callable:
    """Register the lowering as ``Resource<name>`` and as TF1's ``<name>``, whose first ``refs`` inputs (the
    variable and its slots) are refs in place of the handles; a ref passed to a later (value) input is read, as
    TF dereferences it. The ref op's one output, "out", is the variable's ref after the update. Both check the
    input shapes first, as TF's kernels do."""

    def register(fn: Callable) -> Callable:
        params = list(inspect.signature(fn).parameters)[1:]

        @functools.wraps(fn)
        def on_handles(ctx, *args):
            _check_shapes(ctx, params, [ctx.read(a) for a in args[:refs]], args[refs:])
            return fn(ctx, *args)

        @functools.wraps(fn)
        def on_refs(ctx, *args):
            on_handles(ctx, *args[:refs], *(_deref(ctx, a) for a in args[refs:]))
            return args[0]

        op(f"Resource{name}", stateful=True)(on_handles)
        op(name, stateful=True)(on_refs)
        return fn

    return register


def _deref(ctx, value):
    return ctx.read(value) if isinstance(value, Resource) and value.kind == "ref" else value


def _check_shapes(ctx, params: list[str], variables: list, values: tuple) -> None:
    """TF's InvalidArgument checks of training_ops.cc: slots shaped like the variable, scalar hyperparameters,
    ``grad`` shaped like the variable (dense) or like ``indices``' rows of it (sparse, a rank >= 1 variable)."""
    var = jnp.shape(variables[0])
    for slot, value in zip(params[1:], variables[1:]):
        if jnp.shape(value) != var:
            raise ctx.error(f"var and {slot} do not have the same shape {list(var)} {list(jnp.shape(value))}")
    inputs = dict(zip(params[len(variables) :], values))
    grad_name = "delta" if "delta" in inputs else "grad"
    for name, value in inputs.items():
        if name not in (grad_name, "indices") and jnp.ndim(value) != 0:
            raise ctx.error(f"{name} is not a scalar: {list(jnp.shape(value))}")
    grad, indices = jnp.shape(inputs[grad_name]), inputs.get("indices")
    if indices is None:
        if grad != var:
            raise ctx.error(f"var and {grad_name} do not have the same shape {list(var)} {list(grad)}")
        return
    if not var or jnp.ndim(indices) != 1 or grad[:1] != jnp.shape(indices) or grad[1:] != var[1:]:
        raise ctx.error(
            f"var (shape {list(var)}, at least 1-D), indices (shape {list(jnp.shape(indices))}, 1-D) and grad "
            f"(shape {list(grad)}: one row of var per index) do not match"
        )


def _read(ctx, *handles):
    return [jnp.asarray(ctx.read(h)) for h in handles]


def _scalars(dtype, *values):
    return [jnp.asarray(v, dtype) for v in values]


def _write(ctx, handles, values):
    for h, val in zip(handles, values, strict=True):
        ctx.write(h, val)


def _where_l1(l1, with_l1, without_l1):
    # TF's kernels use the l1 formula only for l1 > 0 (the other one otherwise, also for a negative l1).
    return jnp.where(l1 > 0, with_l1, without_l1)


def _row_indices(indices, rows: int):
    """``(index, valid)``: each entry of ``indices`` as a row number (0 where invalid) and whether it is in
    ``[0, rows)``. Known int64 indices are checked before they are narrowed (with jax_enable_x64 off)."""
    if isinstance(indices, np.ndarray | np.generic):
        idx = np.asarray(indices).reshape(-1)
        ok = (idx >= 0) & (idx < rows)
        return jnp.asarray(np.where(ok, idx, 0).astype(np.int32)), jnp.asarray(ok)
    idx = jnp.asarray(indices).reshape(-1)
    ok = (idx >= 0) & (idx < rows)
    return jnp.where(ok, idx, 0), ok


def _check_known_indices(ctx, indices, rows: int) -> None:
    known = to_static(indices)
    if known is None:
        return
    flat = known.reshape(-1)
    bad = np.flatnonzero((flat < 0) | (flat >= rows))
    if bad.size:
        raise ctx.error(f"Index {flat[bad[0]]} at offset {bad[0]} in indices is out of range")


def _sparse_apply(ctx, handles, grad, indices, update):
    """New values of the variables ``handles`` (the variable first, then its slots) after
    ``update(*rows, grad_row)`` (-> new rows, in the same order) ran on row ``indices[i]`` of each with
    ``grad[i]``, for i in order, as TF's CPU kernels do: a duplicated index sees the first update's result.
    Out-of-range and negative indices are skipped (TF raises; a compiled function cannot)."""
    values = _read(ctx, *handles)
    dtype = values[0].dtype
    g = jnp.asarray(grad, dtype)
    _check_known_indices(ctx, indices, values[0].shape[0])
    idx, ok = _row_indices(indices, values[0].shape[0])
    if idx.shape[0] == 0:  # nothing to update (and no row of ``grad`` to trace the loop body with)
        return values

    def body(i, state):
        row = idx[i]
        old = [lax.dynamic_index_in_dim(x, row, keepdims=False) for x in state]
        new = update(*old, lax.dynamic_index_in_dim(g, i, keepdims=False))
        return tuple(
            lax.dynamic_update_index_in_dim(x, jnp.where(ok[i], jnp.asarray(n, dtype), o), row, 0)
            for x, o, n in zip(state, old, new, strict=True)
        )

    return list(lax.fori_loop(0, idx.shape[0], body, tuple(values)))


@_optimizer_op("ApplyGradientDescent", refs=1)
def apply_gradient_descent(ctx, var, alpha, delta):
    (v,) = _read(ctx, var)
    ctx.write(var, v - jnp.asarray(delta, v.dtype) * jnp.asarray(alpha, v.dtype))
    return []


@_optimizer_op("ApplyMomentum", refs=2)
def apply_momentum(ctx, var, accum, lr, grad, momentum):
    v, a = _read(ctx, var, accum)
    lr, momentum, g = _scalars(v.dtype, lr, momentum, grad)
    a = a * momentum + g
    ctx.write(accum, a)
    ctx.write(var, v - (g * lr + a * momentum * lr) if ctx.attr("use_nesterov", False) else v - a * lr)
    return []


@op("ResourceApplyKerasMomentum", stateful=True)
def apply_keras_momentum(ctx, var, accum, lr, grad, momentum):
    v, a = _read(ctx, var, accum)
    lr, momentum, g = _scalars(v.dtype, lr, momentum, grad)
    a = a * momentum - g * lr
    ctx.write(accum, a)
    ctx.write(var, v + (a * momentum - g * lr) if ctx.attr("use_nesterov", False) else v + a)
    return []


def _adam_step_size(lr, beta1_power, beta2_power):
    return lr * jnp.sqrt(1 - beta2_power) / (1 - beta1_power)


@_optimizer_op("ApplyAdam", refs=3)
def apply_adam(ctx, var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad):
    x, m_, v_ = _read(ctx, var, m, v)
    b1p, b2p, lr, b1, b2, eps, g = _scalars(x.dtype, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad)
    alpha = _adam_step_size(lr, b1p, b2p)
    m_ = m_ + (g - m_) * (1 - b1)
    v_ = v_ + (g * g - v_) * (1 - b2)
    ctx.write(m, m_)
    ctx.write(v, v_)
    step = (g * (1 - b1) + b1 * m_) if ctx.attr("use_nesterov", False) else m_
    ctx.write(var, x - (step * alpha) / (jnp.sqrt(v_) + eps))
    return []


@op("ResourceApplyAdamWithAmsgrad", stateful=True)
def apply_adam_amsgrad(ctx, var, m, v, vhat, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad):
    x, m_, v_, vh = _read(ctx, var, m, v, vhat)
    b1p, b2p, lr, b1, b2, eps, g = _scalars(x.dtype, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad)
    alpha = _adam_step_size(lr, b1p, b2p)
    m_ = m_ + (g - m_) * (1 - b1)
    v_ = v_ + (g * g - v_) * (1 - b2)
    vh = jnp.maximum(vh, v_)
    for h, val in ((m, m_), (v, v_), (vhat, vh)):
        ctx.write(h, val)
    ctx.write(var, x - (m_ * alpha) / (jnp.sqrt(vh) + eps))
    return []


@_optimizer_op("ApplyAdaMax", refs=3)
def apply_ada_max(ctx, var, m, v, beta1_power, lr, beta1, beta2, epsilon, grad):
    x, m_, v_ = _read(ctx, var, m, v)
    b1p, lr, b1, b2, eps, g = _scalars(x.dtype, beta1_power, lr, beta1, beta2, epsilon, grad)
    m_ = m_ + (g - m_) * (1 - b1)
    v_ = jnp.maximum(b2 * v_, jnp.abs(g))
    ctx.write(m, m_)
    ctx.write(v, v_)
    ctx.write(var, x - lr / (1 - b1p) * (m_ / (v_ + eps)))
    return []


@_optimizer_op("ApplyAdagrad", refs=2)
def apply_adagrad(ctx, var, accum, lr, grad):
    x, a = _read(ctx, var, accum)
    lr, g = _scalars(x.dtype, lr, grad)
    if ctx.attr("update_slots", True):
        a = a + g * g
        ctx.write(accum, a)
    ctx.write(var, x - g * lr * lax.rsqrt(a))
    return []


@_optimizer_op("ApplyAdagradV2", refs=2)
def apply_adagrad_v2(ctx, var, accum, lr, epsilon, grad):
    x, a = _read(ctx, var, accum)
    lr, eps, g = _scalars(x.dtype, lr, epsilon, grad)
    if ctx.attr("update_slots", True):
        a = a + g * g
        ctx.write(accum, a)
    ctx.write(var, x - g * lr / (jnp.sqrt(a) + eps))
    return []


@_optimizer_op("ApplyRMSProp", refs=3)
def apply_rms_prop(ctx, var, ms, mom, lr, rho, momentum, epsilon, grad):
    x, ms_, mom_ = _read(ctx, var, ms, mom)
    lr, rho, momentum, eps, g = _scalars(x.dtype, lr, rho, momentum, epsilon, grad)
    ms_ = ms_ + (g * g - ms_) * (1 - rho)
    mom_ = mom_ * momentum + (g * lr) / jnp.sqrt(ms_ + eps)
    ctx.write(ms, ms_)
    ctx.write(mom, mom_)
    ctx.write(var, x - mom_)
    return []


@_optimizer_op("ApplyCenteredRMSProp", refs=4)
def apply_centered_rms_prop(ctx, var, mg, ms, mom, lr, rho, momentum, epsilon, grad):
    x, mg_, ms_, mom_ = _read(ctx, var, mg, ms, mom)
    lr, rho, momentum, eps, g = _scalars(x.dtype, lr, rho, momentum, epsilon, grad)
    ms_ = ms_ + (g * g - ms_) * (1 - rho)
    mg_ = mg_ + (g - mg_) * (1 - rho)
    mom_ = mom_ * momentum + (g * lr) / jnp.sqrt((ms_ - mg_ * mg_) + eps)
    for h, val in ((mg, mg_), (ms, ms_), (mom, mom_)):
        ctx.write(h, val)
    ctx.write(var, x - mom_)
    return []


@_optimizer_op("ApplyAdadelta", refs=3)
def apply_adadelta(ctx, var, accum, accum_update, lr, rho, epsilon, grad):
    x, a, au = _read(ctx, var, accum, accum_update)
    lr, rho, eps, g = _scalars(x.dtype, lr, rho, epsilon, grad)
    a = a * rho + g * g * (1 - rho)
    update = jnp.sqrt(au + eps) * lax.rsqrt(a + eps) * g
    ctx.write(accum, a)
    ctx.write(accum_update, au * rho + update * update * (1 - rho))
    ctx.write(var, x - update * lr)
    return []


def _ftrl_power(accum, lr_power):
    # accum ** -lr_power, with TF's sqrt special case for lr_power == -0.5.
    return jnp.where(lr_power == -0.5, jnp.sqrt(accum), accum**-lr_power)


def _ftrl(x, a, lin, g, lr, l1, l2, lr_power, shrinkage, multiply_linear_by_lr):
    """FTRL-proximal step on one block (dense functors and sparse rows share the formula): new (var, accum, linear).
    ``shrinkage`` is V2's l2_shrinkage (None for V1); it enters only the linear term."""
    g_lin = g if shrinkage is None else g + 2 * shrinkage * x
    new_a = a + g * g
    sigma = _ftrl_power(new_a, lr_power) - _ftrl_power(a, lr_power)
    if multiply_linear_by_lr:
        lin = lin + (g_lin * lr - sigma * x)
        l1, quadratic = l1 * lr, _ftrl_power(new_a, lr_power) + 2 * l2 * lr
    else:
        lin = lin + (g_lin - sigma / lr * x)
        quadratic = _ftrl_power(new_a, lr_power) / lr + 2 * l2
    x = jnp.where(jnp.abs(lin) > l1, (l1 * jnp.sign(lin) - lin) / quadratic, jnp.zeros_like(lin))
    return x, new_a, lin


def _ftrl_op(ctx, handles, grad, lr, l1, l2, shrinkage, lr_power):
    x, a, lin = _read(ctx, *handles)
    g, lr, l1, l2, lr_power = _scalars(x.dtype, grad, lr, l1, l2, lr_power)
    if shrinkage is not None:
        (shrinkage,) = _scalars(x.dtype, shrinkage)
    mult = ctx.attr("multiply_linear_by_lr", False)
    _write(ctx, handles, _ftrl(x, a, lin, g, lr, l1, l2, lr_power, shrinkage, mult))
    return []


@_optimizer_op("ApplyFtrl", refs=3)
def apply_ftrl(ctx, var, accum, linear, grad, lr, l1, l2, lr_power):
    return _ftrl_op(ctx, (var, accum, linear), grad, lr, l1, l2, None, lr_power)


@_optimizer_op("ApplyFtrlV2", refs=3)
def apply_ftrl_v2(ctx, var, accum, linear, grad, lr, l1, l2, l2_shrinkage, lr_power):
    return _ftrl_op(ctx, (var, accum, linear), grad, lr, l1, l2, l2_shrinkage, lr_power)


def _proximal(prox, step, l1, l2):
    """Fobos shrinkage of ``prox`` = var - grad * step (ProximalGradientDescent / ProximalAdagrad)."""
    shrunk = jnp.sign(prox) * jnp.maximum(jnp.abs(prox) - step * l1, 0) / (1 + l2 * step)
    return _where_l1(l1, shrunk, prox / (1 + l2 * step))


@_optimizer_op("ApplyProximalAdagrad", refs=2)
def apply_proximal_adagrad(ctx, var, accum, lr, l1, l2, grad):
    x, a = _read(ctx, var, accum)
    lr, l1, l2, g = _scalars(x.dtype, lr, l1, l2, grad)
    a = a + g * g
    step = lr * lax.rsqrt(a)
    ctx.write(accum, a)
    ctx.write(var, _proximal(x - g * step, step, l1, l2))
    return []


@_optimizer_op("ApplyProximalGradientDescent", refs=1)
def apply_proximal_gradient_descent(ctx, var, alpha, l1, l2, delta):
    (x,) = _read(ctx, var)
    lr, l1, l2, g = _scalars(x.dtype, alpha, l1, l2, delta)
    ctx.write(var, _proximal(x - g * lr, lr, l1, l2))
    return []


@_optimizer_op("ApplyAddSign", refs=2)
def apply_add_sign(ctx, var, m, lr, alpha, sign_decay, beta, grad):
    x, m_ = _read(ctx, var, m)
    lr, alpha, sign_decay, beta, g = _scalars(x.dtype, lr, alpha, sign_decay, beta, grad)
    m_ = m_ * beta + g * (1 - beta)
    ctx.write(m, m_)
    ctx.write(var, x - lr * (alpha + sign_decay * (jnp.sign(g) * jnp.sign(m_))) * g)
    return []


@_optimizer_op("ApplyPowerSign", refs=2)
def apply_power_sign(ctx, var, m, lr, logbase, sign_decay, beta, grad):
    x, m_ = _read(ctx, var, m)
    lr, logbase, sign_decay, beta, g = _scalars(x.dtype, lr, logbase, sign_decay, beta, grad)
    m_ = m_ * beta + g * (1 - beta)
    ctx.write(m, m_)
    ctx.write(var, x - lr * jnp.exp(logbase * sign_decay * (jnp.sign(g) * jnp.sign(m_))) * g)
    return []


def _global_step(global_step, dtype):
    # The int64 step count in the variable's dtype (a known one is converted before any 32-bit narrowing).
    if isinstance(global_step, np.ndarray | np.generic):
        return jnp.asarray(np.asarray(global_step).astype(dtype))
    return jnp.asarray(global_step).astype(dtype)


@_optimizer_op("ApplyAdagradDA", refs=3)
def apply_adagrad_da(ctx, var, gradient_accumulator, gradient_squared_accumulator, grad, lr, l1, l2, global_step):
    x, ga, gga = _read(ctx, var, gradient_accumulator, gradient_squared_accumulator)
    g, lr, l1, l2 = _scalars(x.dtype, grad, lr, l1, l2)
    step = _global_step(global_step, x.dtype)
    ga = ga + g
    gga = gga + g * g
    denom = l2 * (step * lr) + jnp.sqrt(gga)
    with_l1 = -lr * jnp.sign(ga) * jnp.maximum(jnp.abs(ga) - step * l1, 0) / denom
    _write(ctx, (gradient_accumulator, gradient_squared_accumulator), (ga, gga))
    ctx.write(var, _where_l1(l1, with_l1, -(lr * ga) / denom))
    return []


# -- sparse (row-wise) updates: each ``update`` below is TF's per-row loop body --------------------------------


@_optimizer_op("SparseApplyAdagrad", refs=2)
def sparse_apply_adagrad(ctx, var, accum, lr, grad, indices):
    update_slots = ctx.attr("update_slots", True)
    (lr,) = _scalars(ctx.read(var).dtype, lr)
    scalar_rows = jnp.ndim(ctx.read(var)) == 1

    def update(x, a, g):
        if update_slots:
            a = a + g * g
        return x - (lr * g / jnp.sqrt(a) if scalar_rows else lr * g * lax.rsqrt(a)), a

    _write(ctx, (var, accum), _sparse_apply(ctx, (var, accum), grad, indices, update))  # accum as is if frozen
    return []


@_optimizer_op("SparseApplyAdagradV2", refs=2)
def sparse_apply_adagrad_v2(ctx, var, accum, lr, epsilon, grad, indices):
    update_slots = ctx.attr("update_slots", True)
    lr, eps = _scalars(ctx.read(var).dtype, lr, epsilon)

    def update(x, a, g):
        if update_slots:
            a = a + g * g
        return x - lr * g / (jnp.sqrt(a) + eps), a

    _write(ctx, (var, accum), _sparse_apply(ctx, (var, accum), grad, indices, update))  # accum as is if frozen
    return []


@_optimizer_op("SparseApplyMomentum", refs=2)
def sparse_apply_momentum(ctx, var, accum, lr, grad, indices, momentum):
    nesterov = ctx.attr("use_nesterov", False)
    lr, momentum = _scalars(ctx.read(var).dtype, lr, momentum)

    def update(x, a, g):
        a = a * momentum + g
        return (x - (lr * g + lr * momentum * a) if nesterov else x - lr * a), a

    _write(ctx, (var, accum), _sparse_apply(ctx, (var, accum), grad, indices, update))
    return []


@op("ResourceSparseApplyKerasMomentum", stateful=True)
def sparse_apply_keras_momentum(ctx, var, accum, lr, grad, indices, momentum):
    nesterov = ctx.attr("use_nesterov", False)
    lr, momentum = _scalars(ctx.read(var).dtype, lr, momentum)

    def update(x, a, g):
        a = a * momentum - g * lr
        return (x + (a * momentum - g * lr) if nesterov else x + a), a

    _write(ctx, (var, accum), _sparse_apply(ctx, (var, accum), grad, indices, update))
    return []


@_optimizer_op("SparseApplyAdadelta", refs=3)
def sparse_apply_adadelta(ctx, var, accum, accum_update, lr, rho, epsilon, grad, indices):
    lr, rho, eps = _scalars(ctx.read(var).dtype, lr, rho, epsilon)

    def update(x, a, au, g):
        a = a * rho + g * g * (1 - rho)
        step = jnp.sqrt(au + eps) * lax.rsqrt(a + eps) * g
        return x - step * lr, a, au * rho + step * step * (1 - rho)

    handles = (var, accum, accum_update)
    _write(ctx, handles, _sparse_apply(ctx, handles, grad, indices, update))
    return []


@_optimizer_op("SparseApplyRMSProp", refs=3)
def sparse_apply_rms_prop(ctx, var, ms, mom, lr, rho, momentum, epsilon, grad, indices):
    lr, rho, momentum, eps = _scalars(ctx.read(var).dtype, lr, rho, momentum, epsilon)

    def update(x, ms_, mom_, g):
        ms_ = ms_ * rho + g * g * (1 - rho)
        mom_ = mom_ * momentum + lax.rsqrt(ms_ + eps) * lr * g
        return x - mom_, ms_, mom_

    handles = (var, ms, mom)
    _write(ctx, handles, _sparse_apply(ctx, handles, grad, indices, update))
    return []


@_optimizer_op("SparseApplyCenteredRMSProp", refs=4)
def sparse_apply_centered_rms_prop(ctx, var, mg, ms, mom, lr, rho, momentum, epsilon, grad, indices):
    lr, rho, momentum, eps = _scalars(ctx.read(var).dtype, lr, rho, momentum, epsilon)

    def update(x, mg_, ms_, mom_, g):
        ms_ = ms_ * rho + g * g * (1 - rho)
        mg_ = mg_ * rho + g * (1 - rho)
        mom_ = mom_ * momentum + lax.rsqrt(ms_ + eps - mg_ * mg_) * lr * g
        return x - mom_, mg_, ms_, mom_

    handles = (var, mg, ms, mom)
    _write(ctx, handles, _sparse_apply(ctx, handles, grad, indices, update))
    return []


def _sparse_ftrl_op(ctx, handles, grad, indices, lr, l1, l2, shrinkage, lr_power):
    lr, l1, l2, lr_power = _scalars(ctx.read(handles[0]).dtype, lr, l1, l2, lr_power)
    if shrinkage is not None:
        (shrinkage,) = _scalars(ctx.read(handles[0]).dtype, shrinkage)
    mult = ctx.attr("multiply_linear_by_lr", False)

    def update(x, a, lin, g):
        return _ftrl(x, a, lin, g, lr, l1, l2, lr_power, shrinkage, mult)

    _write(ctx, handles, _sparse_apply(ctx, handles, grad, indices, update))
    return []


@_optimizer_op("SparseApplyFtrl", refs=3)
def sparse_apply_ftrl(ctx, var, accum, linear, grad, indices, lr, l1, l2, lr_power):
    return _sparse_ftrl_op(ctx, (var, accum, linear), grad, indices, lr, l1, l2, None, lr_power)


@_optimizer_op("SparseApplyFtrlV2", refs=3)
def sparse_apply_ftrl_v2(ctx, var, accum, linear, grad, indices, lr, l1, l2, l2_shrinkage, lr_power):
    return _sparse_ftrl_op(ctx, (var, accum, linear), grad, indices, lr, l1, l2, l2_shrinkage, lr_power)


@_optimizer_op("SparseApplyProximalAdagrad", refs=2)
def sparse_apply_proximal_adagrad(ctx, var, accum, lr, l1, l2, grad, indices):
    lr, l1, l2 = _scalars(ctx.read(var).dtype, lr, l1, l2)
    scalar_rows = jnp.ndim(ctx.read(var)) == 1

    def update(x, a, g):
        a = a + g * g
        step = lr / jnp.sqrt(a) if scalar_rows else lr * lax.rsqrt(a)
        return _proximal(x - g * step, step, l1, l2), a

    _write(ctx, (var, accum), _sparse_apply(ctx, (var, accum), grad, indices, update))
    return []


@_optimizer_op("SparseApplyProximalGradientDescent", refs=1)
def sparse_apply_proximal_gradient_descent(ctx, var, alpha, l1, l2, grad, indices):
    lr, l1, l2 = _scalars(ctx.read(var).dtype, alpha, l1, l2)

    def update(x, g):
        return (_proximal(x - g * lr, lr, l1, l2),)

    _write(ctx, (var,), _sparse_apply(ctx, (var,), grad, indices, update))
    return []


@_optimizer_op("SparseApplyAdagradDA", refs=3)
def sparse_apply_adagrad_da(
    ctx, var, gradient_accumulator, gradient_squared_accumulator, grad, indices, lr, l1, l2, global_step
):
    dtype = ctx.read(var).dtype
    lr, l1, l2 = _scalars(dtype, lr, l1, l2)
    step = _global_step(global_step, dtype)
    scalar_rows = jnp.ndim(ctx.read(var)) == 1

    def update(x, ga, gga, g):
        ga = ga + g
        gga = gga + g * g
        if scalar_rows:  # TF's rank-1 loop (which computes in double)
            denom = step * l2 * lr + jnp.sqrt(gga)
            with_l1 = jnp.sign(-ga) * lr * jnp.maximum(jnp.abs(ga) - step * l1, 0) / denom
            return _where_l1(l1, with_l1, (-ga * lr) / denom), ga, gga
        denom = l2 + jnp.sqrt(gga) / (step * lr)
        with_l1 = -jnp.sign(ga) * jnp.maximum(jnp.abs(ga) / step - l1, 0) / denom
        return _where_l1(l1, with_l1, -(ga / step) / denom), ga, gga

    handles = (var, gradient_accumulator, gradient_squared_accumulator)
    _write(ctx, handles, _sparse_apply(ctx, handles, grad, indices, update))
    return []
