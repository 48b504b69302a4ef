"""TF's stateful random ops (RandomUniform, …): Keras Dropout/GaussianNoise in training mode use them.

A jitted function has no hidden RNG state, so each node draws from a fixed key derived from its ``seed``/``seed2``
attrs and node name: results are deterministic per node and repeated calls give the same numbers, where TF gives
fresh ones (listed in jaxsm/ops/gaps.py). Inference graphs never execute them (Dropout with training=False).
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp

from jaxsm.ops.registry import op


def _key(ctx) -> jax.Array:
    tag = f"{ctx.attr('seed', 0)}/{ctx.attr('seed2', 0)}/{ctx.node.name}".encode()
    return jax.random.PRNGKey(zlib.crc32(tag))


def _shape(shape) -> tuple[int, ...]:
    return tuple(int(d) for d in shape.reshape(-1))


@op("RandomUniform", static=(0,), stateful=True)
def random_uniform(ctx, shape):
    return jax.random.uniform(_key(ctx), _shape(shape), ctx.dtype("dtype"))


@op("RandomStandardNormal", static=(0,), stateful=True)
def random_standard_normal(ctx, shape):
    return jax.random.normal(_key(ctx), _shape(shape), ctx.dtype("dtype"))


@op("TruncatedNormal", static=(0,), stateful=True)
def truncated_normal(ctx, shape):
    return jax.random.truncated_normal(_key(ctx), -2.0, 2.0, _shape(shape), ctx.dtype("dtype"))


@op("RandomUniformInt", static=(0,), stateful=True)
def random_uniform_int(ctx, shape, minval, maxval):
    dtype = ctx.dtype("Tout")
    return jax.random.randint(_key(ctx), _shape(shape), jnp.asarray(minval, dtype), jnp.asarray(maxval, dtype), dtype)


@op("RandomShuffle", stateful=True)
def random_shuffle(ctx, x):
    return jax.random.permutation(_key(ctx), x, axis=0)


@op("Multinomial", stateful=True)
def multinomial(ctx, logits, num_samples):
    n = int(ctx.static(num_samples, "num_samples"))
    keys = jax.random.split(_key(ctx), logits.shape[0])
    draw = jax.vmap(lambda k, row: jax.random.categorical(k, row, shape=(n,)))
    return draw(keys, jnp.asarray(logits)).astype(ctx.dtype("output_dtype"))
