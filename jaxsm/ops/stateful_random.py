"""TF's stateful random ops (RandomUniform, …): Keras Dropout/GaussianNoise in training mode use them.

A seeded node draws TF's numbers: Philox keyed by the ``seed`` attr, the counter its kernel has reached --
``[0, 0, seed2]`` at the first call, moved on by outputs * 256 samples per call (GuardedPhiloxRandom). The counter
is an entry of the variable state that the loaded object keeps between calls (jaxsm/graph/rng.py); the values
go through the same distributions as the stateless ops (jaxsm/ops/random.py). With both attrs 0 (TF seeds at
random) the seed comes from the node name (listed in jaxsm/ops/gaps.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxsm.graph import rng
from jaxsm.graph.values import to_static
from jaxsm.ops import random as philox
from jaxsm.ops.registry import op


def _philox_key_counter(ctx) -> tuple[list[Any], list[Any]]:
    """The Philox key and counter of this call of the node's kernel: keyed by the ``seed`` attr, the counter from
    the node's entry in the state (moved on by :func:`reserve`), or the first call's when the state has none."""
    seed, _ = rng.seeds(ctx.node)
    key = [np.array([seed & 0xFFFFFFFF], np.uint32), np.array([seed >> 32], np.uint32)]
    counter = ctx.interp.state.get(rng.counter_key(ctx.node))
    if counter is None:
        counter = rng.first_counter(ctx.node)
    return key, [counter[i : i + 1] for i in range(4)]


def reserve(ctx, n: int) -> None:
    """GuardedPhiloxRandom::ReserveSamples128(n): move the node's counter on past this call's ``n`` 128-bit
    samples (ReserveRandomOutputs(outputs, 256) is outputs * 256 of them)."""
    k = rng.counter_key(ctx.node)
    counter = ctx.interp.state.get(k)
    if counter is None or n == 0:
        return
    words = [jnp.asarray(counter[i : i + 1], np.uint32) for i in range(4)]
    lo, hi = np.array([n & 0xFFFFFFFF], np.uint32), np.array([n >> 32], np.uint32)
    ctx.interp.state[k] = jnp.concatenate(philox._skip(words, lo, hi))


def _draw(ctx, samples: int, draw: Callable[[list[Any], list[Any]], Any]) -> Any:
    key, counter = _philox_key_counter(ctx)
    out = draw(key, counter)
    reserve(ctx, samples)
    return out


def _shape(shape) -> tuple[int, ...]:
    return tuple(int(d) for d in shape.reshape(-1))


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


@op("RandomUniform", static=(0,), stateful=True)
def random_uniform(ctx, shape):
    shape, dtype = _shape(shape), ctx.dtype("dtype")
    return _draw(ctx, _size(shape) * 256, lambda k, c: philox._uniform(k, c, shape, dtype, jnp))


@op("RandomStandardNormal", static=(0,), stateful=True)
def random_standard_normal(ctx, shape):
    shape, dtype = _shape(shape), ctx.dtype("dtype")
    return _draw(ctx, _size(shape) * 256, lambda k, c: philox._normal(k, c, shape, dtype, jnp))


@op("TruncatedNormal", static=(0,), stateful=True)
def truncated_normal(ctx, shape):
    shape, dtype = _shape(shape), ctx.dtype("dtype")
    return _draw(ctx, _size(shape) * 256, lambda k, c: philox._truncated_normal(k, c, shape, dtype, jnp))


@op("RandomUniformInt", static=(0,), stateful=True)
def random_uniform_int(ctx, shape, minval, maxval):
    shape, dtype = _shape(shape), ctx.dtype("Tout")
    lo, hi = (np.asarray(v, dtype) if to_static(v) is not None else jnp.asarray(v, dtype) for v in (minval, maxval))
    return _draw(ctx, _size(shape) * 256, lambda k, c: philox._uniform_int(ctx, k, c, shape, lo, hi, jnp))


@op("RandomShuffle", stateful=True)
def random_shuffle(ctx, x):
    n = np.shape(x)[0] if np.ndim(x) else 0
    samples = (n - 1 + 3) // 4 if np.size(x) > 1 and n > 1 else 0  # ReserveSamples32(n - 1)
    return _draw(ctx, samples, lambda k, c: philox._random_shuffle(k, c, x, philox._xp(*c)))


@op("Multinomial", stateful=True)
def multinomial(ctx, logits, num_samples):
    batch, n = (np.shape(logits)[0] if np.ndim(logits) else 0), int(ctx.static(num_samples, "num_samples"))
    samples = batch * (-(-n // 4) * 4) * 2 * 256  # ReserveRandomOutputs(batch * ceil4(n) * 2, 256)
    draw = lambda k, c: philox._multinomial(ctx, logits, num_samples, (k, c), philox._xp(*c))  # noqa: E731
    return _draw(ctx, samples, draw)


@op("RandomGamma", static=(0,), stateful=True)
def random_gamma(ctx, shape, alpha):
    shape = _shape(shape) + tuple(np.shape(alpha))
    samples_per_alpha = int(np.prod(shape[: len(shape) - np.ndim(alpha)]))
    if 0 in shape:
        return jnp.zeros(shape, ctx.dtype("T"))
    out = _draw(ctx, _size(shape) * 256, lambda k, c: philox._gamma(k, c, alpha, samples_per_alpha))
    return out.astype(ctx.dtype("T")).reshape(shape)


# RandomPoisson (v1, deprecated at GraphDef 25) runs the same kernel; its dtype attr names the rate and output type.
@op("RandomPoissonV2", "RandomPoisson", static=(0,), stateful=True)
def random_poisson_v2(ctx, shape, rate):
    samples, dtype = _shape(shape), ctx.dtype("dtype", np.dtype(np.int64))
    shape = samples + tuple(np.shape(rate))
    per_rate = _size(samples)
    draw = lambda k, c: philox._poisson_samples((k, c), rate, shape, per_rate, dtype)  # noqa: E731
    return _draw(ctx, _size(shape) * 256, draw)
