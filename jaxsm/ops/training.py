"""Optimizer update ops on resource variables (tensorflow/core/kernels/training_ops.cc, dense ``ResourceApply*``).

TF1 optimizers (``tf.compat.v1.train.*Optimizer``) and tf-keras' legacy optimizers update variables with these
fused ops inside saved training steps; Keras 3 and tf-keras 2.x's default optimizers use plain variable ops.
Each lowering reads the variable and its slots, computes TF's CPU functor formula in the variable's dtype, and
writes them back (scalar hyperparameters are cast to it). No outputs.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxsm.ops.registry import op


def _read(ctx, *handles):
    return [jnp.asarray(ctx.read(h)) for h in handles]


def _scalars(dtype, *values):
    return [jnp.asarray(v, dtype) for v in values]


@op("ResourceApplyGradientDescent", stateful=True)
def apply_gradient_descent(ctx, var, alpha, delta):
    (v,) = _read(ctx, var)
    ctx.write(var, v - jnp.asarray(delta, v.dtype) * jnp.asarray(alpha, v.dtype))
    return []


@op("ResourceApplyMomentum", stateful=True)
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


@op("ResourceApplyAdam", stateful=True)
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


@op("ResourceApplyAdaMax", stateful=True)
def apply_ada_max(ctx, var, m, v, beta1_power, lr, beta1, beta2, epsilon, grad):
    x, m_, v_ = _read(ctx, var, m, v)
    b1p, lr, b1, b2, eps, g = _scalars(x.dtype, beta1_power, lr, beta1, beta2, epsilon, grad)
    m_ = m_ + (g - m_) * (1 - b1)
    v_ = jnp.maximum(b2 * v_, jnp.abs(g))
    ctx.write(m, m_)
    ctx.write(v, v_)
    ctx.write(var, x - lr / (1 - b1p) * (m_ / (v_ + eps)))
    return []


@op("ResourceApplyAdagrad", stateful=True)
def apply_adagrad(ctx, var, accum, lr, grad):
    x, a = _read(ctx, var, accum)
    lr, g = _scalars(x.dtype, lr, grad)
    if ctx.attr("update_slots", True):
        a = a + g * g
        ctx.write(accum, a)
    ctx.write(var, x - g * lr * lax.rsqrt(a))
    return []


@op("ResourceApplyAdagradV2", stateful=True)
def apply_adagrad_v2(ctx, var, accum, lr, epsilon, grad):
    x, a = _read(ctx, var, accum)
    lr, eps, g = _scalars(x.dtype, lr, epsilon, grad)
    if ctx.attr("update_slots", True):
        a = a + g * g
        ctx.write(accum, a)
    ctx.write(var, x - g * lr / (jnp.sqrt(a) + eps))
    return []


@op("ResourceApplyRMSProp", stateful=True)
def apply_rms_prop(ctx, var, ms, mom, lr, rho, momentum, epsilon, grad):
    x, ms_, mom_ = _read(ctx, var, ms, mom)
    lr, rho, momentum, eps, g = _scalars(x.dtype, lr, rho, momentum, epsilon, grad)
    ms_ = ms_ + (g * g - ms_) * (1 - rho)
    mom_ = mom_ * momentum + (g * lr) / jnp.sqrt(ms_ + eps)
    ctx.write(ms, ms_)
    ctx.write(mom, mom_)
    ctx.write(var, x - mom_)
    return []


@op("ResourceApplyCenteredRMSProp", stateful=True)
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


@op("ResourceApplyAdadelta", stateful=True)
def apply_adadelta(ctx, var, accum, accum_update, lr, rho, epsilon, grad):
    x, a, au = _read(ctx, var, accum, accum_update)
    lr, rho, eps, g = _scalars(x.dtype, lr, rho, epsilon, grad)
    a = a * rho + g * g * (1 - rho)
    update = jnp.sqrt(au + eps) * lax.rsqrt(a + eps) * g
    ctx.write(accum, a)
    ctx.write(accum_update, au * rho + update * update * (1 - rho))
    ctx.write(var, x - update * lr)
    return []
