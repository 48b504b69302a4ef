"""Custom gradients saved with a SavedModel (``tf.custom_gradient``, ``tf.recompute_grad``, gradient-override maps).

TF marks the forward computation's results with an ``IdentityN`` over (results..., arguments..., variables...)
whose ``_gradient_op_type`` attribute names a gradient registered for it; ``tf.saved_model.save`` (with
``SaveOptions(experimental_custom_gradients=True)``, the default) saves that gradient as a FunctionDef listed in
``FunctionDefLibrary.registered_gradients``. The gradient function takes one cotangent per IdentityN output,
then its bound inputs: tensors of the forward function it captured (``captured_tensor`` objects naming the tensor
and the function) and variables. It returns a gradient for each IdentityN input except those TF returns None for
(its concrete function's output signature), at least the results'.

jaxsm lowers such an IdentityN as a ``jax.custom_vjp`` identity whose backward pass runs the saved gradient
function, so ``jax.grad`` through a restored function gives TF's custom gradient rather than the derivative of
the forward ops. The captured forward tensors and variable values are residuals of the forward pass. Traced under
the caller's ``jax.jvp``/``jacfwd`` (which a custom_vjp refuses), it is a ``jax.custom_jvp`` identity instead, whose
tangents are TF's ForwardAccumulator's for the saved gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class SavedGradient:
    """A registered gradient: ``function`` (FunctionDef name), which IdentityN inputs it returns a gradient for
    (``produces``), and its bound inputs in order: ``("tensor", function, tensor name)`` for a captured forward
    tensor, ``("value", value)`` for anything else (a variable handle, a constant)."""

    function: str
    produces: tuple[bool, ...]
    bound: tuple[tuple, ...]

    def tensors_of(self, function: str) -> set[str]:
        """Names of the tensors of ``function`` the gradient captures (the interpreter keeps them alive)."""
        return {b[2] for b in self.bound if b[0] == "tensor" and b[1] == function}


def _node_and_index(tensor: str) -> tuple[str, int]:
    name, _, idx = tensor.rpartition(":")
    return (name, int(idx)) if name and idx.isdigit() else (tensor, 0)


def _forward_value(frame: tuple, tensor: str) -> Any:
    """The value of graph tensor ``tensor`` ("node:i") in the running body ``frame`` = (body, values, inputs)."""
    body, values, inputs = frame
    name, idx = _node_and_index(tensor)
    if name in body.inputs:
        return inputs[body.inputs.index(name)]
    for k, node in enumerate(body.nodes):
        if node.name == name and values[k] is not None and idx < len(values[k]):
            return values[k][idx]
    return None


def identity_with_gradient(ctx: Any, xs: list[Any], grad: SavedGradient) -> list[Any] | None:
    """``xs`` through an identity whose VJP is the saved gradient function; None when a captured tensor cannot
    be found in the running function (then the plain identity, with JAX's own derivative, is used)."""
    interp = ctx.interp
    function = interp.call_stack[-1] if interp.call_stack else None
    frame = interp.frames[-1] if interp.frames else None
    if len(grad.produces) != len(xs) or frame is None:
        return None
    caps, keys = [], []
    for b in grad.bound:
        if b[0] == "tensor":
            if b[1] != function:
                return None
            value = _forward_value(frame, b[2])
            if value is None:
                return None
            caps.append(value)
        else:
            caps.append(None)
            key = getattr(b[1], "key", None)
            keys.append(key if key in interp.state else None)
    state = {k: interp.state[k] for k in keys if k is not None}
    library = interp.library

    def run_gradient(cts: tuple, caps: tuple, state: dict) -> list[Any]:
        from jaxsm.graph.interpreter import Interpreter

        bound = [c if b[0] == "tensor" else b[1] for c, b in zip(caps, grad.bound, strict=True)]
        return Interpreter(library, state).call(grad.function, list(cts) + bound)

    @jax.custom_vjp
    def identity(xs, caps, state):
        return xs

    def forward(xs, caps, state):
        return xs, (xs, caps, state)

    def backward(res, cts):
        xs, caps, state = res
        outs = iter(run_gradient(cts, caps, state))
        grads = tuple(
            jnp.asarray(next(outs), jnp.result_type(x)) if made else jnp.zeros_like(x)
            for x, made in zip(xs, grad.produces, strict=True)
        )
        grads = tuple(
            g if jnp.issubdtype(jnp.result_type(x), jnp.inexact) else np.zeros(np.shape(x), jax.dtypes.float0)
            for g, x in zip(grads, xs, strict=True)
        )
        return grads, jax.tree_util.tree_map(_zero_cotangent, caps), jax.tree_util.tree_map(_zero_cotangent, state)

    identity.defvjp(forward, backward)
    caps_arrays = tuple(jnp.asarray(c) if c is not None else None for c in caps)
    if any(is_forward_mode(x) for x in xs):  # the caller's jax.jvp/jacfwd: a custom_vjp has no JVP
        return list(_forward_mode_identity(run_gradient, grad)(tuple(jnp.asarray(x) for x in xs), caps_arrays, state))
    return list(identity(tuple(jnp.asarray(x) for x in xs), caps_arrays, state))


def is_forward_mode(x: Any) -> bool:
    """Whether ``x`` is traced by JAX's forward mode (``jax.jvp``, ``jax.jacfwd``; jax.grad's are LinearizeTracers)."""
    return isinstance(x, jax.core.Tracer) and type(x).__name__ == "JVPTracer"


def _forward_mode_identity(run_gradient: Any, grad: SavedGradient) -> Any:
    """The identity whose JVP is TF's for a custom gradient (tensorflow/python/eager/forwardprop.py
    ``_jvp_helper``): the derivative of <gradient function(cotangents), tangents> with respect to the cotangents,
    taken where they are all ones (the transpose of the gradient where it is linear in them, as usual)."""

    @jax.custom_jvp
    def identity(xs, caps, state):
        return xs

    def jvp(primals, tangents):
        xs, caps, state = primals
        inexact = [i for i, x in enumerate(xs) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]

        def gradient(cts: tuple) -> tuple:
            full = [jnp.zeros_like(x) for x in xs]
            for i, c in zip(inexact, cts, strict=True):
                full[i] = c
            outs = iter(run_gradient(tuple(full), caps, state))
            made = [jnp.asarray(next(outs), jnp.result_type(x)) if m else None for x, m in zip(xs, grad.produces)]
            return tuple(jnp.zeros_like(xs[i]) if made[i] is None else made[i] for i in inexact)

        ones = tuple(jnp.ones_like(xs[i]) for i in inexact)
        _, pullback = jax.vjp(gradient, ones)
        moved = iter(pullback(tuple(jnp.asarray(tangents[0][i], jnp.result_type(xs[i])) for i in inexact))[0])
        return xs, tuple(next(moved) if i in inexact else _zero_cotangent(x) for i, x in enumerate(xs))

    identity.defjvp(jvp)
    return identity


def _zero_cotangent(x: Any) -> Any:
    if jnp.issubdtype(jnp.result_type(x), jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(np.shape(x), jax.dtypes.float0)
