"""TF's stateful random ops (RandomUniform, …): Keras Dropout/GaussianNoise in training mode use them.

A jitted function has no hidden RNG state, so each node draws the numbers of its kernel's first call in TF:
Philox keyed by the ``seed`` attr, its counter's high words ``seed2`` (GuardedPhiloxRandom), through the same
distributions as the stateless ops (jaxsm/ops/random.py). Repeated calls give the same numbers where TF moves
on, and with both attrs 0 (TF seeds at random) the seed comes from the node name (listed in
jaxsm/ops/gaps.py). RandomShuffle and Multinomial draw from a jax.random key instead. Inference graphs never
execute them (Dropout with training=False).
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxsm.graph.values import to_static
from jaxsm.ops import random as philox
from jaxsm.ops.registry import op

_U64_MASK = 0xFFFFFFFFFFFFFFFF


def _key(ctx) -> jax.Array:
    tag = f"{ctx.attr('seed', 0)}/{ctx.attr('seed2', 0)}/{ctx.node.name}".encode()
    return jax.random.PRNGKey(zlib.crc32(tag))


def _philox_key_counter(ctx) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The Philox key and counter of the kernel's first call: GuardedPhiloxRandom seeds PhiloxRandom(seed, seed2)
    (seed -> key, seed2 -> the counter's high words). With both attrs 0 TF seeds at random; jaxsm then uses a
    seed from the node name."""
    seed, seed2 = ctx.attr("seed", 0), ctx.attr("seed2", 0)
    if seed == 0 and seed2 == 0:
        seed = zlib.crc32(ctx.node.name.encode())
    seed, seed2 = seed & _U64_MASK, seed2 & _U64_MASK

    def word(v: int) -> np.ndarray:
        return np.array([v & 0xFFFFFFFF], np.uint32)

    return [word(seed), word(seed >> 32)], [word(0), word(0), word(seed2), word(seed2 >> 32)]


def _shape(shape) -> tuple[int, ...]:
    return tuple(int(d) for d in shape.reshape(-1))


@op("RandomUniform", static=(0,), stateful=True)
def random_uniform(ctx, shape):
    return philox._uniform(*_philox_key_counter(ctx), _shape(shape), ctx.dtype("dtype"), jnp)


@op("RandomStandardNormal", static=(0,), stateful=True)
def random_standard_normal(ctx, shape):
    return philox._normal(*_philox_key_counter(ctx), _shape(shape), ctx.dtype("dtype"), jnp)


@op("TruncatedNormal", static=(0,), stateful=True)
def truncated_normal(ctx, shape):
    return philox._truncated_normal(*_philox_key_counter(ctx), _shape(shape), ctx.dtype("dtype"), jnp)


@op("RandomUniformInt", static=(0,), stateful=True)
def random_uniform_int(ctx, shape, minval, maxval):
    dtype = ctx.dtype("Tout")
    lo, hi = (np.asarray(v, dtype) if to_static(v) is not None else jnp.asarray(v, dtype) for v in (minval, maxval))
    return philox._uniform_int(ctx, *_philox_key_counter(ctx), _shape(shape), lo, hi, jnp)


@op("RandomShuffle", stateful=True)
def random_shuffle(ctx, x):
    return jax.random.permutation(_key(ctx), x, axis=0)


@op("Multinomial", stateful=True)
def multinomial(ctx, logits, num_samples):
    n = int(ctx.static(num_samples, "num_samples"))
    keys = jax.random.split(_key(ctx), logits.shape[0])
    draw = jax.vmap(lambda k, row: jax.random.categorical(k, row, shape=(n,)))
    return draw(keys, jnp.asarray(logits)).astype(ctx.dtype("output_dtype"))


@op("RandomGamma", static=(0,), stateful=True)
def random_gamma(ctx, shape, alpha):
    shape = _shape(shape) + tuple(np.shape(alpha))
    samples_per_alpha = int(np.prod(shape[: len(shape) - np.ndim(alpha)]))
    if 0 in shape:
        return jnp.zeros(shape, ctx.dtype("T"))
    return philox._gamma(*_philox_key_counter(ctx), alpha, samples_per_alpha).astype(ctx.dtype("T")).reshape(shape)


@op("RandomPoissonV2", static=(0,), stateful=True)
def random_poisson_v2(ctx, shape, rate):
    samples, dtype = _shape(shape), ctx.dtype("dtype", np.dtype(np.int64))
    shape = samples + tuple(np.shape(rate))
    return philox._poisson_samples(_philox_key_counter(ctx), rate, shape, int(np.prod(samples)), dtype)
