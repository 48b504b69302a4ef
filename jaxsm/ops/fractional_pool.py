"""Fractional pooling (``FractionalMaxPool``, ``FractionalAvgPool``; tensorflow/core/kernels/
fractional_max_pool_op.cc, fractional_avg_pool_op.cc, fractional_pool_common.cc): pooling regions of sizes k and
k + 1 along rows and columns, their boundaries drawn from Philox.

TF's kernel seeds a fresh GuardedPhiloxRandom with (seed, seed2) at every call, so with ``deterministic`` (what
tf.nn.fractional_*_pool sets when given a seed) the boundaries depend on the attrs and shapes only: they are
computed here on the host, and the pooling itself gathers with them as constants (jit-able). With seeds 0 TF
seeds at random; jaxsm then seeds from the node name (jaxsm/ops/gaps.py).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsm.graph import rng
from jaxsm.ops import random as philox
from jaxsm.ops.registry import op


class _Philox:
    """GuardedPhiloxRandom (guarded_philox_random.h) seeded with (seed, seed2): 32-bit samples reserved in
    128-bit blocks, as its ReserveSamples32 does."""

    def __init__(self, seed: int, seed2: int):
        self.key = [np.array([seed & 0xFFFFFFFF], np.uint32), np.array([seed >> 32], np.uint32)]
        self.block = 0
        self.seed2 = seed2

    def reserve32(self, n: int) -> list[int]:
        """The uint32 words of a generator reserved for ``n`` samples, in the order SingleSampleAdapter gives them
        (whole blocks), and the guarded generator moved past them."""
        blocks = (n + 3) // 4
        counter = [np.array([w], np.uint32) for w in (0, 0, self.seed2 & 0xFFFFFFFF, self.seed2 >> 32)]
        start = np.arange(self.block, self.block + blocks, dtype=np.uint64)
        lo, hi = (start & 0xFFFFFFFF).astype(np.uint32), (start >> 32).astype(np.uint32)
        self.block += blocks
        return philox._words(self.key, counter, lo, hi, xp=np).reshape(-1).tolist()


def _pseudo_random_diff(n_in: int, n_out: int, gen: _Philox) -> list[int]:
    """GeneratePoolingSequencePseudoRandom: boundaries ceil(alpha * (i + u)) for one uniform u (RandDouble: 52
    mantissa bits from two words) scaled into the range that keeps every region k or k + 1 long."""
    alpha = n_in / n_out
    k = n_in // n_out
    max_u = min((k + 2) / alpha - 1, (n_in + 1 - k) / alpha - (n_out - 1))
    x0, x1 = gen.reserve32(2)[:2]
    u = np.uint64((1023 << 52) | ((x0 & 0xFFFFF) << 32) | x1).view(np.float64) - 1.0
    u = float(u) * max_u
    cum = [1] + [int(math.ceil(alpha * (i + u))) for i in range(1, n_out)] + [n_in + 1]
    return [b - a for a, b in zip(cum, cum[1:])]


def _random_diff(n_in: int, n_out: int, gen: _Philox) -> list[int]:
    """GeneratePoolingSequenceRandom: the n_in % n_out longer regions first, then TF's RandomShuffle (each
    position swapped with one at or after it, ``sample % remaining``)."""
    k, extra = divmod(n_in, n_out)
    diff = [k + 1] * extra + [k] * (n_out - extra)
    words = iter(gen.reserve32(len(diff)))
    for i in range(len(diff) - 1):
        j = i + next(words) % (len(diff) - i)
        diff[i], diff[j] = diff[j], diff[i]
    return diff


def _pooling_sequence(n_in: int, n_out: int, gen: _Philox, pseudo_random: bool) -> np.ndarray:
    if n_in % n_out == 0:  # regular pooling: no samples drawn
        diff = [n_in // n_out] * n_out
    else:
        diff = (_pseudo_random_diff if pseudo_random else _random_diff)(n_in, n_out, gen)
    return np.concatenate([[0], np.cumsum(diff)]).astype(np.int64)


def _sequences(ctx, x) -> tuple[np.ndarray, np.ndarray]:
    """The row and column pooling sequences for input ``x`` (NHWC): output sizes floor(size / ratio)."""
    ratio = [float(r) for r in ctx.attr("pooling_ratio")]
    if len(ratio) != 4 or ratio[0] != 1.0 or ratio[3] != 1.0:
        raise ctx.error(f"pooling_ratio must have 4 entries, 1.0 for batch and channels: {ratio}")
    if any(r < 1.0 for r in ratio):
        raise ctx.error(f"pooling_ratio cannot be smaller than 1, got: {ratio}")
    if np.ndim(x) != 4:
        raise ctx.error(f"input must be 4-dimensional, got shape {list(np.shape(x))}")
    # in float32, as TF's int64 / float (11 / 1.1f rounds to exactly 10)
    out = [int(np.floor(np.float32(d) / np.float32(r))) for d, r in zip(np.shape(x), ratio)]
    if any(o <= 0 for o in out):
        raise ctx.error(f"output size must be positive: input {list(np.shape(x))}, pooling_ratio {ratio}")
    deterministic = bool(ctx.attr("deterministic", False))
    seed, seed2 = int(ctx.attr("seed", 0)), int(ctx.attr("seed2", 0))
    if not deterministic and (seed or seed2):
        raise ctx.error("Both seed and seed2 should be 0 if deterministic is false.")
    if not (seed or seed2):
        seed, seed2 = rng.seeds(ctx.node)
    gen = _Philox(seed & 0xFFFFFFFFFFFFFFFF, seed2 & 0xFFFFFFFFFFFFFFFF)
    pseudo = bool(ctx.attr("pseudo_random", False))
    rows = _pooling_sequence(np.shape(x)[1], out[1], gen, pseudo)
    return rows, _pooling_sequence(np.shape(x)[2], out[2], gen, pseudo)


def _regions(seq: np.ndarray, size: int, overlapping: bool) -> list[tuple[int, int]]:
    """[start, end) of each region: an overlapping region also takes the next one's first element."""
    ends = [min(int(b) + (1 if overlapping else 0), size) for b in seq[1:]]
    return [(int(a), e) for a, e in zip(seq[:-1], ends)]


def _pool(x, rows, cols, overlapping: bool, reduce):
    x = jnp.asarray(x)
    row_regions, col_regions = _regions(rows, x.shape[1], overlapping), _regions(cols, x.shape[2], overlapping)
    out_rows = [jnp.stack([reduce(x[:, r0:r1, c0:c1]) for c0, c1 in col_regions], 1) for r0, r1 in row_regions]
    return jnp.stack(out_rows, 1)


@op("FractionalMaxPool", stateful=True)
def fractional_max_pool(ctx, x):
    rows, cols = _sequences(ctx, x)
    pooled = _pool(x, rows, cols, bool(ctx.attr("overlapping", False)), _max_from_lowest)
    return pooled, rows, cols


def _max_from_lowest(patch):
    """TF's running ``cwiseMax`` from the type's lowest value: NaNs are skipped, and -inf gives the lowest finite
    value."""
    if not jnp.issubdtype(patch.dtype, jnp.floating):
        return jnp.max(patch, axis=(1, 2))
    lowest = jnp.finfo(patch.dtype).min
    return jnp.maximum(jnp.max(jnp.where(jnp.isnan(patch), lowest, patch), axis=(1, 2)), lowest)


@op("FractionalAvgPool", stateful=True)
def fractional_avg_pool(ctx, x):
    """The mean of each region; integer inputs divide their sum by the count, truncating toward zero."""
    rows, cols = _sequences(ctx, x)
    x = jnp.asarray(x)

    def mean(p):
        total = jnp.sum(p, axis=(1, 2))
        count = p.shape[1] * p.shape[2]
        if jnp.issubdtype(x.dtype, jnp.integer):  # C++ integer division: toward zero
            return lax.div(total, jnp.asarray(count, total.dtype))
        return total / count

    return _pool(x, rows, cols, bool(ctx.attr("overlapping", False)), mean).astype(x.dtype), rows, cols


def _grad_regions(ctx, rows, cols, in_rows: int, in_cols: int) -> tuple[list, list]:
    rows = np.asarray(ctx.static(rows, "the row pooling sequence"), np.int64)
    cols = np.asarray(ctx.static(cols, "the column pooling sequence"), np.int64)
    overlapping = bool(ctx.attr("overlapping", False))
    return _regions(rows, in_rows, overlapping), _regions(cols, in_cols, overlapping)


@op("FractionalAvgPoolGrad", static=(0,))
def fractional_avg_pool_grad(ctx, orig_input_shape, out_backprop, rows, cols):
    """Each output's gradient spread evenly over its region (overlapping regions add up)."""
    shape = tuple(int(d) for d in np.asarray(orig_input_shape).reshape(-1))
    if len(shape) != 4:
        raise ctx.error(f"original input tensor shape must be 1-dimensional and 4 elements, got {list(shape)}")
    g = jnp.asarray(out_backprop)
    row_regions, col_regions = _grad_regions(ctx, rows, cols, shape[1], shape[2])
    grad = jnp.zeros(shape, g.dtype)
    for i, (r0, r1) in enumerate(row_regions):
        for j, (c0, c1) in enumerate(col_regions):
            share = g[:, i, j] / jnp.asarray((r1 - r0) * (c1 - c0), g.dtype)
            grad = grad.at[:, r0:r1, c0:c1].add(share[:, None, None, :])
    return grad


def _first_max_one_hot(patch):
    """One-hot (over the flattened rows x columns) of the input TF's max pool gradient picks: the first element,
    replaced only by a strictly greater one, so a NaN is taken only where it comes first."""
    flat = patch.reshape(patch.shape[0], -1, patch.shape[-1])
    later_nan = jnp.isnan(flat) & (jnp.arange(flat.shape[1]) > 0)[None, :, None]
    key = jnp.where(later_nan, -jnp.inf, flat)
    key = key.at[:, 0].set(jnp.where(jnp.isnan(flat[:, 0]), jnp.inf, key[:, 0]))
    pick = jnp.argmax(key, axis=1)
    return (jnp.arange(flat.shape[1])[None, :, None] == pick[:, None, :]).reshape(patch.shape)


@op("FractionalMaxPoolGrad")
def fractional_max_pool_grad(ctx, orig_input, orig_output, out_backprop, rows, cols):
    """Each output's gradient goes to the input its maximum came from (the first one, for ties)."""
    x, g = jnp.asarray(orig_input), jnp.asarray(out_backprop)
    row_regions, col_regions = _grad_regions(ctx, rows, cols, x.shape[1], x.shape[2])
    if np.shape(orig_output) != g.shape or g.shape[1:3] != (len(row_regions), len(col_regions)):
        raise ctx.error(f"out_backprop {list(g.shape)} and orig_output {list(np.shape(orig_output))} do not match")
    grad = jnp.zeros(x.shape, g.dtype)
    for i, (r0, r1) in enumerate(row_regions):
        for j, (c0, c1) in enumerate(col_regions):
            hot = _first_max_one_hot(x[:, r0:r1, c0:c1])
            grad = grad.at[:, r0:r1, c0:c1].add(jnp.where(hot, g[:, i, j][:, None, None, :], 0))
    return grad
