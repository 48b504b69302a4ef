"""Stateless random ops, bit-compatible with TF's Philox4x32-10 generator.

TF's stateless kernels (tensorflow/core/kernels/stateless_random_ops.cc, stateless_random_ops_v2.cc) derive
a Philox key and 128-bit counter from the seed, then fill the output with ``FillPhiloxRandom``
(random_op_cpu.h): output group ``g`` is the distribution applied to the Philox block at ``counter + g`` (4
uint32 words). The distributions (random_distributions.h) turn words into values: floats take the low mantissa
bits of a word and subtract 1, normals are Box-Muller on word pairs, truncated normals reject |x| >= 2 from a
per-group stream.

The stateless ops are pure functions of (shape, seed or key/counter). ``tf.random.Generator`` keeps a Philox
state in a variable: its ops (RngReadAndSkip, the older Stateful* ops) draw the same streams from it and advance
it as TF does, so calls continue TF's sequence.
Uniform and integer outputs are bit-identical to TF; normals agree to float rounding (TF uses glibc's
``sincosf``/``logf``, XLA its own approximations, which can differ in the last bit).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsm.graph.values import to_static
from jaxsm.ops.registry import op

_U32 = np.uint32
_PHILOX_W32A, _PHILOX_W32B = 0x9E3779B9, 0xBB67AE85
_PHILOX_M4X32A, _PHILOX_M4X32B = 0xD2511F53, 0xCD9E8D57
# The fixed key GenerateKey uses to scramble a user seed into a Philox key and counter.
_SEED_SCRAMBLE_KEY = (0x3EC8F720, 0x02461E29)
_RNG_ALG_PHILOX, _RNG_ALG_THREEFRY, _RNG_ALG_AUTO_SELECT = 1, 2, 3
_TRUNCATE_VALUE = 2.0
# FillPhiloxRandom reserves this many Philox blocks per output group of a truncated normal (256 samples per
# output over kGroupSize outputs, 4 words per block).
_TRUNCATED_SKIP = {4: 256, 2: 128}
# Blocks drawn per truncated-normal group: the chance that fewer than a group's worth of the candidates they
# give fall inside (-2, 2) is below 1e-19 per group (there TF would keep drawing; we would return an outlier).
_TRUNCATED_BLOCKS = {4: 6, 2: 8}


def _mulhilo(a, b: int):
    """(high, low) halves of the 64-bit product a * b in uint32 arithmetic only (so it works with x64 off)."""
    b_lo, b_hi = _U32(b & 0xFFFF), _U32(b >> 16)
    a_lo, a_hi = a & _U32(0xFFFF), a >> _U32(16)
    ll, lh, hl, hh = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi
    mid = (ll >> _U32(16)) + (lh & _U32(0xFFFF)) + (hl & _U32(0xFFFF))
    hi = hh + (lh >> _U32(16)) + (hl >> _U32(16)) + (mid >> _U32(16))
    return hi, a * _U32(b)


def philox4x32(counter, key):
    """Philox4x32-10 (philox_random.h) on uint32 words: ``counter`` is 4 arrays, ``key`` 2; returns 4."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        hi0, lo0 = _mulhilo(c0, _PHILOX_M4X32A)
        hi1, lo1 = _mulhilo(c2, _PHILOX_M4X32B)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = k0 + _U32(_PHILOX_W32A), k1 + _U32(_PHILOX_W32B)
    return c0, c1, c2, c3


def _skip(counter, n_lo, n_hi):
    """PhiloxRandom::Skip: add the 64-bit count (n_hi:n_lo) to the 128-bit counter, with carries."""
    b0, b1, b2, b3 = counter
    c0 = b0 + n_lo
    hi = n_hi + (c0 < n_lo).astype(_U32)
    c1 = b1 + hi
    carry = (c1 < hi).astype(_U32)
    c2 = b2 + carry
    c3 = b3 + (carry & (c2 == 0).astype(_U32))
    return c0, c1, c2, c3


def _words(key, counter, n_lo, n_hi=None, xp=jnp):
    """The Philox blocks at ``counter + n`` for each n, as uint32 words in TF's order: shape (..., 4)."""
    n_hi = xp.zeros_like(n_lo) if n_hi is None else n_hi
    return xp.stack(philox4x32(_skip(counter, n_lo, n_hi), key), axis=-1)


def _as_u32_words(x, xp):
    return [xp.asarray(w, dtype=_U32).reshape(1) for w in x]


def _seed_to_key_counter(seed, xp):
    """GenerateKey (stateless_random_ops.cc): a [2] int32/int64 seed -> Philox key (2 words), counter (4)."""
    seed = xp.asarray(seed)
    if np.dtype(seed.dtype).itemsize == 4:  # int32 seeds are sign-extended to 64 bits
        lo, hi = seed.astype(_U32), xp.where(seed < 0, _U32(0xFFFFFFFF), _U32(0))
    else:
        lo, hi = (seed & 0xFFFFFFFF).astype(_U32), (seed >> 32).astype(_U32)
    counter = [lo[0:1], hi[0:1], lo[1:2], hi[1:2]]
    mix = philox4x32(counter, _as_u32_words(_SEED_SCRAMBLE_KEY, xp))
    zero = xp.zeros((1,), _U32)
    return [mix[0], mix[1]], [zero, zero, mix[2], mix[3]]


@jax.tree_util.register_pytree_node_class
class U64Words:
    """A run-time uint64 tensor (Philox key or counter from StatelessRandomGetKeyCounter) kept as its low and
    high uint32 words while jax_enable_x64 is off, where a JAX uint64 would lose its high word: the V2 random
    ops that consume it then draw exactly TF's numbers (Keras' augmentation layers do this in serve())."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def tree_flatten(self):
        return (self.lo, self.hi), None

    @classmethod
    def tree_unflatten(cls, _, children):
        return cls(*children)


def _split_u64(v):
    """A uint64/int64 tensor's low and high 32-bit words."""
    if isinstance(v, U64Words):
        return v.lo, v.hi
    if isinstance(v, np.ndarray):
        return (v & 0xFFFFFFFF).astype(_U32), (v >> 32).astype(_U32)
    if np.dtype(v.dtype).itemsize < 8:  # jax_enable_x64 off: the value was truncated to 32 bits (jaxsm warns)
        return v.astype(_U32), jnp.zeros(v.shape, _U32)
    return (v & np.uint64(0xFFFFFFFF).astype(v.dtype)).astype(_U32), (v >> np.asarray(32, v.dtype)).astype(_U32)


def _join_u64(lo, hi):
    return lo.astype(np.uint64) | (hi.astype(np.uint64) << np.uint64(32))


def _xp(*values):
    """NumPy when every value is known at trace time (keeps uint64 key material exact with x64 off)."""
    return np if all(to_static(v) is not None for v in values) else jnp


def _v1_key_counter(ctx, seed):
    xp = _xp(seed)
    return _seed_to_key_counter(to_static(seed) if xp is np else seed, xp)


def _v2_key_counter(ctx, key, counter, alg):
    alg = int(alg)
    if alg == _RNG_ALG_THREEFRY:
        raise ctx.error("the ThreeFry algorithm (alg=2) is not supported (TF supports it only under XLA)")
    if alg not in (_RNG_ALG_PHILOX, _RNG_ALG_AUTO_SELECT):
        raise ctx.error(f"unknown RNG algorithm {alg}")
    xp = _xp(key, counter)
    key, counter = (to_static(key), to_static(counter)) if xp is np else (key, counter)
    (k0, k1), (c_lo, c_hi) = _split_u64(key), _split_u64(counter)
    return [k0[0:1], k1[0:1]], [c_lo[0:1], c_hi[0:1], c_lo[1:2], c_hi[1:2]]


# -- distributions (random_distributions.h) -----------------------------------------------------------------


def _uniform_float(words, dtype: np.dtype):
    """Uint32ToFloat / Uint16ToHalf / Uint16ToGfloat16: random low mantissa bits, exponent of 1, minus 1.
    float64 (Uint64ToDouble) uses word pairs: 20 mantissa bits from the first, 32 from the second."""
    if dtype == np.float64:
        pairs = words.reshape(-1, 2)
        hi = (pairs[:, 0] & 0xFFFFF) | 0x3FF00000
        return lax.bitcast_convert_type(jnp.stack([pairs[:, 1], hi], axis=-1), jnp.float64) - 1.0
    if dtype == np.float32:
        return lax.bitcast_convert_type((words & 0x7FFFFF) | 0x3F800000, jnp.float32) - 1.0
    if dtype == np.float16:
        return lax.bitcast_convert_type(((words & 0x3FF) | 0x3C00).astype(np.uint16), jnp.float16) - 1
    if dtype == jnp.bfloat16:
        return lax.bitcast_convert_type(((words & 0x7F) | 0x3F80).astype(np.uint16), jnp.bfloat16) - 1
    raise TypeError(f"no uniform float distribution for {dtype}")


def _box_muller(words, dtype: np.dtype):
    """BoxMullerFloat on word pairs (BoxMullerDouble on word quadruples for float64): two normals each,
    sin first. Returned in float32 for every dtype but float64; half types round the float32 values."""
    if dtype == np.float64:
        u = _uniform_float(words, np.float64).reshape(-1, 2)
        u1, v1 = jnp.maximum(u[:, 0], 1e-7), 2 * np.pi * u[:, 1]
        two = jnp.float64(-2.0)
    else:
        u = _uniform_float(words, np.dtype(np.float32)).reshape(-1, 2)
        u1 = jnp.maximum(u[:, 0], np.float32(1e-7))
        # TF computes 2.0f * M_PI * u in double and rounds to float (with x64 off this rounds twice).
        wide = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32  # (no truncation warning)
        v1 = (u[:, 1].astype(wide) * (2 * np.pi)).astype(jnp.float32)
        two = np.float32(-2.0)
    u2 = jnp.sqrt(two * jnp.log(u1))
    return jnp.stack([jnp.sin(v1) * u2, jnp.cos(v1) * u2], axis=-1).reshape(-1)


def _words_for(key, counter, n_outputs: int, words_per_output: int, xp):
    n_words = n_outputs * words_per_output
    n_blocks = -(-n_words // 4)
    if n_blocks >= 2**32:
        raise ValueError(f"{n_outputs} random values exceed the 2^32 Philox blocks this lowering indexes")
    words = _words(key, counter, xp.arange(n_blocks, dtype=_U32), xp=xp).reshape(-1)
    return jnp.asarray(words)[:n_words]


def _uniform(key, counter, shape, dtype, xp):
    n = int(np.prod(shape))
    wpo = 2 if dtype == np.float64 else 1
    return _uniform_float(_words_for(key, counter, n, wpo, xp), dtype).reshape(shape)


def _normal(key, counter, shape, dtype, xp):
    n = int(np.prod(shape))
    wpo = 2 if dtype == np.float64 else 1
    # Box-Muller makes outputs in pairs, so draw the words of an even count and drop the extra.
    return _box_muller(_words_for(key, counter, n + n % 2, wpo, xp), dtype)[:n].astype(dtype).reshape(shape)


def _truncated_normal(key, counter, shape, dtype, xp):
    """TruncatedNormalDistribution via FillPhiloxRandomTask<..., true>: output group g (4 values; 2 for
    float64) reads a word stream starting at Philox block ``counter + g * skip`` and keeps the first normals
    with |x| < 2, in order."""
    n = int(np.prod(shape))
    group = 2 if dtype == np.float64 else 4
    skip, blocks = _TRUNCATED_SKIP[group], _TRUNCATED_BLOCKS[group]
    n_groups = -(-n // group)
    g = xp.arange(n_groups, dtype=_U32)[:, None]
    t = xp.arange(blocks, dtype=_U32)[None, :]
    shift = _U32(skip.bit_length() - 1)
    # 64-bit block index g * skip + t, as (hi, lo) words; t < skip, so no carry between them.
    hi = xp.broadcast_to(g >> _U32(32 - int(shift)), (n_groups, blocks))
    words = _words(key, counter, (g << shift) + t, hi, xp=xp)
    # Half types are tested against the bound before rounding, as TF does.
    per_group = blocks * (4 if group == 4 else 2)  # a normal per word (float32) or per word pair (float64)
    candidates = _box_muller(jnp.asarray(words).reshape(-1), dtype).reshape(n_groups, per_group)
    inside = jnp.abs(candidates) < _TRUNCATE_VALUE
    rank = jnp.cumsum(inside, axis=1)
    picks = jnp.stack([jnp.argmax(inside & (rank == k + 1), axis=1) for k in range(group)], axis=1)
    return jnp.take_along_axis(candidates, picks, axis=1).reshape(-1)[:n].astype(dtype).reshape(shape)


def _uniform_int(ctx, key, counter, shape, minval, maxval, xp):
    """UniformDistribution<int32/int64>: lo + (bits mod (hi - lo)), with 64-bit values from word pairs."""
    dtype = np.dtype(minval.dtype)
    if np.ndim(minval) or np.ndim(maxval):
        raise ctx.error("minval and maxval must be scalars")
    lo_s, hi_s = to_static(minval), to_static(maxval)
    if lo_s is not None and hi_s is not None and not lo_s < hi_s:
        raise ctx.error(f"need minval < maxval, got {lo_s} >= {hi_s}")
    n = int(np.prod(shape))
    if dtype.itemsize == 8:
        pairs = _words_for(key, counter, n, 2, xp).reshape(-1, 2)
        bits, udt = _join_u64(pairs[:, 0], pairs[:, 1]), np.dtype(np.uint64)
    else:
        bits, udt = _words_for(key, counter, n, 1, xp), np.dtype(_U32)
    lo = jnp.asarray(minval).astype(udt)
    span = jnp.asarray(maxval).astype(udt) - lo
    return (lo + bits % span).astype(dtype).reshape(shape)


def _uniform_full_int(key, counter, shape, dtype, xp):
    n = int(np.prod(shape))
    if dtype.itemsize == 8:
        pairs = _words_for(key, counter, n, 2, xp).reshape(-1, 2)
        return _join_u64(pairs[:, 0], pairs[:, 1]).astype(dtype).reshape(shape)
    return _words_for(key, counter, n, 1, xp).astype(dtype).reshape(shape)


def _shape(shape) -> tuple[int, ...]:
    return tuple(int(d) for d in np.asarray(shape).reshape(-1))


# -- V1 ops: (shape, seed) ----------------------------------------------------------------------------------


@op("StatelessRandomUniform", static=(0,))
def stateless_random_uniform(ctx, shape, seed):
    key, counter = _v1_key_counter(ctx, seed)
    return _uniform(key, counter, _shape(shape), ctx.dtype("dtype", np.dtype(np.float32)), _xp(seed))


@op("StatelessRandomNormal", static=(0,))
def stateless_random_normal(ctx, shape, seed):
    key, counter = _v1_key_counter(ctx, seed)
    return _normal(key, counter, _shape(shape), ctx.dtype("dtype", np.dtype(np.float32)), _xp(seed))


@op("StatelessTruncatedNormal", static=(0,))
def stateless_truncated_normal(ctx, shape, seed):
    key, counter = _v1_key_counter(ctx, seed)
    return _truncated_normal(key, counter, _shape(shape), ctx.dtype("dtype", np.dtype(np.float32)), _xp(seed))


@op("StatelessRandomUniformInt", static=(0,))
def stateless_random_uniform_int(ctx, shape, seed, minval, maxval):
    key, counter = _v1_key_counter(ctx, seed)
    return _uniform_int(ctx, key, counter, _shape(shape), minval, maxval, _xp(seed))


@op("StatelessRandomUniformFullInt", static=(0,))
def stateless_random_uniform_full_int(ctx, shape, seed):
    key, counter = _v1_key_counter(ctx, seed)
    return _uniform_full_int(key, counter, _shape(shape), ctx.dtype("dtype", np.dtype(np.uint64)), _xp(seed))


# -- V2 ops: (shape, key, counter, alg) ---------------------------------------------------------------------


@op("StatelessRandomUniformV2", static=(0, 3))
def stateless_random_uniform_v2(ctx, shape, key, counter, alg):
    k, c = _v2_key_counter(ctx, key, counter, alg)
    return _uniform(k, c, _shape(shape), ctx.dtype("dtype", np.dtype(np.float32)), _xp(key, counter))


@op("StatelessRandomNormalV2", static=(0, 3))
def stateless_random_normal_v2(ctx, shape, key, counter, alg):
    k, c = _v2_key_counter(ctx, key, counter, alg)
    return _normal(k, c, _shape(shape), ctx.dtype("dtype", np.dtype(np.float32)), _xp(key, counter))


@op("StatelessTruncatedNormalV2", static=(0, 3))
def stateless_truncated_normal_v2(ctx, shape, key, counter, alg):
    k, c = _v2_key_counter(ctx, key, counter, alg)
    return _truncated_normal(k, c, _shape(shape), ctx.dtype("dtype", np.dtype(np.float32)), _xp(key, counter))


@op("StatelessRandomUniformIntV2", static=(0, 3))
def stateless_random_uniform_int_v2(ctx, shape, key, counter, alg, minval, maxval):
    k, c = _v2_key_counter(ctx, key, counter, alg)
    return _uniform_int(ctx, k, c, _shape(shape), minval, maxval, _xp(key, counter))


@op("StatelessRandomUniformFullIntV2", static=(0, 3))
def stateless_random_uniform_full_int_v2(ctx, shape, key, counter, alg):
    k, c = _v2_key_counter(ctx, key, counter, alg)
    return _uniform_full_int(k, c, _shape(shape), ctx.dtype("dtype", np.dtype(np.uint64)), _xp(key, counter))


# -- key/counter/alg plumbing -------------------------------------------------------------------------------


@op("StatelessRandomGetKeyCounter")
def stateless_random_get_key_counter(ctx, seed):
    xp = _xp(seed)
    (k0, k1), (c0, c1, c2, c3) = _v1_key_counter(ctx, seed)
    if xp is jnp and not jax.config.jax_enable_x64:
        return U64Words(k0, k1), U64Words(jnp.concatenate([c0, c2]), jnp.concatenate([c1, c3]))
    key = _join_u64(k0, k1)
    counter = xp.concatenate([_join_u64(c0, c1), _join_u64(c2, c3)])
    return key, counter


@op("StatelessRandomGetAlg")
def stateless_random_get_alg(ctx):
    # TF picks Philox on CPU and GPU (only XLA devices may pick ThreeFry).
    return np.asarray(_RNG_ALG_PHILOX, np.int32)


@op("StatelessRandomGetKeyCounterAlg")
def stateless_random_get_key_counter_alg(ctx, seed):
    key, counter = stateless_random_get_key_counter(ctx, seed)
    return key, counter, np.asarray(_RNG_ALG_PHILOX, np.int32)


@op("StatelessMultinomial")
def stateless_multinomial(ctx, logits, num_samples, seed):
    return _multinomial(ctx, logits, num_samples, _v1_key_counter(ctx, seed), _xp(seed))


def _multinomial(ctx, logits, num_samples, key_counter, xp):
    """MultinomialFunctor<CPUDevice> (multinomial_op.cc): per row, a float64 CDF of exp(logit - max) over the
    finite logits; sample j of row b is the class whose CDF first exceeds RandDouble() * total, the doubles
    taken in order from one Philox stream (two words each). TF skips ahead per shard of rows when it splits a
    large batch over threads; this reproduces the unsplit stream, TF's result whenever the kernel runs on one
    shard (batch * cost below ~10000, e.g. a few rows of a few classes)."""
    n = int(ctx.static(num_samples, "num_samples"))
    batch, classes = logits.shape
    key, counter = key_counter
    x = jnp.asarray(logits).astype(jnp.float64)
    finite = jnp.isfinite(x)
    top = jnp.max(jnp.where(finite, x, -jnp.inf), axis=1, keepdims=True)
    cdf = jnp.cumsum(jnp.where(finite, jnp.exp(x - top), 0.0), axis=1)
    u = _uniform_float(_words_for(key, counter, batch * n, 2, xp), np.dtype(np.float64)).reshape(batch, n)
    targets = u * cdf[:, -1:]
    samples = jax.vmap(lambda c, t: jnp.searchsorted(c, t, side="right"))(cdf, targets)
    return samples.astype(ctx.dtype("output_dtype", np.dtype(np.int64)))


# -- tf.random.Generator: a Philox state kept in a variable -------------------------------------------------
# The state is an int64 vector [counter low 64 bits, counter high 64 bits, key] (stateful_random_ops.py). TF2's
# Generator reads it and advances it with RngReadAndSkip, then draws with the V2 ops above; older SavedModels
# (TF 2.0-2.3) have Stateful* ops that do both. Every draw of n values advances the counter by n * 256
# (UpdateMemWithPhiloxRandom, stateful_random_ops_cpu_gpu.h), the values come from the counter before that.
_PHILOX_STATE_SIZE = 3


def _generator_state(ctx, handle, alg):
    _v2_key_counter(ctx, np.zeros(1, np.uint64), np.zeros(2, np.uint64), alg)  # checks the algorithm
    state = ctx.read(handle)
    if np.ndim(state) != 1 or np.shape(state)[0] < _PHILOX_STATE_SIZE:
        raise ctx.error(f"a Philox RNG state is a vector of at least 3 int64s, got shape {np.shape(state)}")
    return state


def _advance(ctx, handle, state, n):
    """Write ``state`` back with its 128-bit counter advanced by n * 256 (n: uint64, wrapping as TF's does)."""
    n_lo, n_hi = _split_u64(jnp.asarray(n) if not isinstance(n, np.ndarray) else n)
    d_lo, d_hi = n_lo << _U32(8), (n_hi << _U32(8)) | (n_lo >> _U32(24))
    (c0, c1), (c2, c3) = _split_u64(state[0:1]), _split_u64(state[1:2])
    w = _skip((c0, c1, c2, c3), d_lo, d_hi)
    if np.dtype(state.dtype).itemsize == 8:
        lo, hi = (lax.bitcast_convert_type(_join_u64(a, b), state.dtype) for a, b in ((w[0], w[1]), (w[2], w[3])))
    else:  # jax_enable_x64 off: the state was narrowed to its low words at load (jaxsm warns); keep those
        lo, hi = (lax.bitcast_convert_type(a, state.dtype) for a in (w[0], w[2]))
    ctx.write(handle, jnp.concatenate([lo, hi, jnp.asarray(state)[2:]]))


@op("RngReadAndSkip", static=(1,), stateful=True)
def rng_read_and_skip(ctx, handle, alg, delta):
    state = _generator_state(ctx, handle, alg)
    _advance(ctx, handle, state, delta)
    return state


@op("RngSkip", static=(1,), stateful=True)
def rng_skip(ctx, handle, alg, delta):
    _advance(ctx, handle, _generator_state(ctx, handle, alg), delta)
    return []


def _stateful_draw(ctx, handle, alg, draw):
    state = _generator_state(ctx, handle, alg)
    key, counter = _v2_key_counter(ctx, state[2:3], state[0:2], alg)
    out = draw(key, counter, _xp(state))
    _advance(ctx, handle, state, np.asarray(out.size, np.uint64))
    return out


@op("StatefulUniform", static=(1, 2), stateful=True)
def stateful_uniform(ctx, handle, alg, shape):
    dtype = ctx.dtype("dtype", np.dtype(np.float32))
    return _stateful_draw(ctx, handle, alg, lambda k, c, xp: _uniform(k, c, _shape(shape), dtype, xp))


@op("StatefulStandardNormalV2", static=(1, 2), stateful=True)
def stateful_standard_normal_v2(ctx, handle, alg, shape):
    dtype = ctx.dtype("dtype", np.dtype(np.float32))
    return _stateful_draw(ctx, handle, alg, lambda k, c, xp: _normal(k, c, _shape(shape), dtype, xp))


@op("StatefulTruncatedNormal", static=(1, 2), stateful=True)
def stateful_truncated_normal(ctx, handle, alg, shape):
    dtype = ctx.dtype("dtype", np.dtype(np.float32))
    return _stateful_draw(ctx, handle, alg, lambda k, c, xp: _truncated_normal(k, c, _shape(shape), dtype, xp))


@op("StatefulUniformInt", static=(1, 2), stateful=True)
def stateful_uniform_int(ctx, handle, alg, shape, minval, maxval):
    return _stateful_draw(ctx, handle, alg, lambda k, c, xp: _uniform_int(ctx, k, c, _shape(shape), minval, maxval, xp))


@op("StatefulUniformFullInt", static=(1, 2), stateful=True)
def stateful_uniform_full_int(ctx, handle, alg, shape):
    dtype = ctx.dtype("dtype", np.dtype(np.uint64))
    return _stateful_draw(ctx, handle, alg, lambda k, c, xp: _uniform_full_int(k, c, _shape(shape), dtype, xp))


# -- rejection samplers: one Philox stream per output ---------------------------------------------------------
# TF's gamma and Poisson kernels draw a variable number of values per output, so output i reads its
# own stream starting at Philox block ``counter + 256 * i`` (kReservedSamplesPerOutput). The loops here run
# every output's rejection loop in lock step under lax.while_loop, each lane advancing its own block index.
_RESERVED_BLOCKS_PER_OUTPUT = 256


def _output_streams(counter, n: int):
    """The first Philox counter of each of ``n`` outputs' streams."""
    if n * _RESERVED_BLOCKS_PER_OUTPUT >= 2**32:
        raise ValueError(f"{n} random values exceed the 2^24 outputs this lowering indexes")
    i = jnp.arange(n, dtype=_U32)
    return _skip([jnp.asarray(w) for w in counter], i * _U32(_RESERVED_BLOCKS_PER_OUTPUT), jnp.zeros_like(i))


def _double():
    """The dtype of TF's double-precision sampler arithmetic: float32 while jax_enable_x64 is off (jaxsm warns
    about 64-bit tensors then; draws are close to TF's, not bit-exact)."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _uniform_pair(words):
    """UniformDistribution<double>: two doubles per Philox block, each from a word pair (Uint64ToDouble)."""
    if jax.config.jax_enable_x64:
        return _uniform_float(words.reshape(-1), np.dtype(np.float64)).reshape(-1, 2)
    pairs = words.reshape(-1, 2, 2)
    return (pairs[..., 0] & 0xFFFFF).astype(jnp.float32) * 2.0**-20 + pairs[..., 1].astype(jnp.float32) * 2.0**-52


def _normal_pair(words):
    """NormalDistribution<double>: BoxMullerDouble, two normals (sin, cos) per Philox block."""
    u = _uniform_pair(words)
    u1, v1 = jnp.maximum(u[:, 0], 1e-7), 2 * np.pi * u[:, 1]
    r = jnp.sqrt(-2.0 * jnp.log(u1))
    return jnp.stack([jnp.sin(v1) * r, jnp.cos(v1) * r], axis=-1)


class _SampleBuffer:
    """TF's SampleBuffer (stateless_random_gamma_op.cc; the UNIFORM macro of random_poisson_op.cc) on every lane:
    a distribution's last pair of results, handed out from the end (``results[1]`` first), refilled from the
    lane's next Philox block when empty. The state is plain arrays, for a lax.while_loop carry."""

    def __init__(self, dist, n: int):
        self.dist = dist
        self.init = (jnp.zeros((n, 2), _double()), jnp.zeros((n,), jnp.int32))

    def draw(self, key, base, t, buf, active):
        values, remaining = buf
        refill = active & (remaining == 0)
        values = jnp.where(refill[:, None], self.dist(_words(key, base, t)), values)
        remaining = jnp.where(refill, 2, remaining) - active.astype(jnp.int32)
        x = jnp.take_along_axis(values, jnp.clip(remaining, 0, 1)[:, None], axis=1)[:, 0]
        return x, t + refill.astype(_U32), (values, remaining)


@partial(jax.jit, static_argnums=3)  # compiled once per shape: op-by-op runs would retrace the loop each call
def _gamma(key, counter, alpha, samples_per_alpha: int):
    """StatelessRandomGammaFunctor<CPUDevice> (stateless_random_gamma_op.cc; RandomGammaOp in random_gamma_op.cc
    is the same loop): output ``a * samples_per_alpha + s`` is sample s of alpha a, drawn in double by
    Marsaglia-Tsang with a squeeze test (alpha < 1: from alpha + 1, times uniform^(1/alpha)); alpha == 1 is
    -log1p(-u) of one uniform. Returns [samples_per_alpha, n_alphas]."""
    a = jnp.repeat(jnp.asarray(alpha).reshape(-1).astype(_double()), samples_per_alpha)
    n = int(a.shape[0])
    base = _output_streams(counter, n)
    small = a < 1
    d = a + jnp.where(small, 2.0 / 3, -1.0 / 3)
    c = 1.0 / 3 / jnp.sqrt(d)
    normal, uniform = _SampleBuffer(_normal_pair, n), _SampleBuffer(_uniform_pair, n)

    def attempt(state):
        t, nbuf, ubuf, done, res = state
        x, t, nbuf = normal.draw(key, base, t, nbuf, ~done)
        v = 1 + c * x
        ok = ~done & ~(v <= 0)  # a NaN v (NaN or very negative alpha) goes on to the tests, as in TF
        v = v * v * v
        u, t, ubuf = uniform.draw(key, base, t, ubuf, ok)
        # The squeeze first, then the exact log test, in TF's order of operations.
        accept = ok & ((u < 1 - 0.0331 * (x * x) * (x * x)) | (jnp.log(u) < 0.5 * x * x + d * (1 - v + jnp.log(v))))
        b, t, ubuf = uniform.draw(key, base, t, ubuf, accept & small)
        out = jnp.where(small, d * v * b ** (1 / a), d * v)
        return t, nbuf, ubuf, done | accept, jnp.where(accept, out, res)

    exponential = a == 1
    init = (jnp.zeros((n,), _U32), normal.init, uniform.init, exponential, jnp.zeros((n,), _double()))
    res = lax.while_loop(lambda s: jnp.any(~s[3]), attempt, init)[4]
    u = _uniform_pair(_words(key, base, jnp.zeros((n,), _U32)))[:, 1]
    res = jnp.where(exponential, -jnp.log1p(-u), res)
    return res.reshape(-1, samples_per_alpha).T


def _gamma_op(ctx, shape, key_counter, alpha):
    shape = _shape(shape)
    alpha_shape = np.shape(alpha)
    if len(alpha_shape) > len(shape) or shape[len(shape) - len(alpha_shape) :] != alpha_shape:
        raise ctx.error(f"shape {list(shape)} must end with alpha's shape {list(alpha_shape)}")
    dtype = ctx.dtype("dtype")
    n = int(np.prod(shape))
    if n == 0:
        return jnp.zeros(shape, dtype)
    out = _gamma(*key_counter, alpha, n // int(np.prod(alpha_shape)))
    return out.astype(dtype).reshape(shape)


@op("StatelessRandomGammaV2", static=(0,))
def stateless_random_gamma_v2(ctx, shape, seed, alpha):
    return _gamma_op(ctx, shape, _v1_key_counter(ctx, seed), alpha)


@op("StatelessRandomGammaV3", static=(0, 3))
def stateless_random_gamma_v3(ctx, shape, key, counter, alg, alpha):
    return _gamma_op(ctx, shape, _v2_key_counter(ctx, key, counter, alg), alpha)


@op("RandomGammaGrad")
def random_gamma_grad(ctx, alpha, sample):
    # d sample / d alpha at fixed CDF (Eigen's gamma_sample_der_alpha); XLA's RandomGammaGrad is the same series.
    alpha, sample = jnp.broadcast_arrays(jnp.asarray(alpha), jnp.asarray(sample))
    return lax.random_gamma_grad(alpha, sample)


@partial(jax.jit, static_argnums=3)
def _poisson(key, counter, rate, samples_per_rate: int):
    """PoissonFunctor<CPUDevice> (random_poisson_op.cc), in double for every rate dtype: for rate < 10 Knuth's
    product of uniforms, else Hormann's transformed rejection (PTRS) from pairs of uniforms; rate +inf gives
    +inf. Output ``r * samples_per_rate + s`` is sample s of rate r; returns [samples_per_rate, n_rates]."""
    lam = jnp.repeat(jnp.asarray(rate).reshape(-1).astype(_double()), samples_per_rate)
    n = int(lam.shape[0])
    base = _output_streams(counter, n)
    knuth = lam < 10
    exp_neg_rate, log_rate = jnp.exp(-lam), jnp.log(lam)
    b = 0.931 + 2.53 * jnp.sqrt(lam)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    uniform = _SampleBuffer(_uniform_pair, n)

    def attempt(state):
        t, ubuf, prod, x, done, res = state
        u, t, ubuf = uniform.draw(key, base, t, ubuf, ~done)
        prod = jnp.where(knuth, prod * u, prod)
        knuth_stop = knuth & ~done & (prod <= exp_neg_rate)
        v, t, ubuf = uniform.draw(key, base, t, ubuf, ~done & ~knuth)
        u = u - 0.5
        us = 0.5 - jnp.abs(u)
        k = jnp.floor((2 * a / us + b) * u + lam + 0.43)
        squeeze = (us >= 0.07) & (v <= 0.9277 - 3.6224 / (b - 2))
        reject = (k < 0) | ((us < 0.013) & (v > us))
        s = jnp.log(v * inv_alpha / (a / (us * us) + b))
        bound = -lam + k * log_rate - lax.lgamma(k + 1)
        ptrs_stop = ~knuth & ~done & (squeeze | (~reject & (s <= bound)))
        res = jnp.where(knuth_stop, x, jnp.where(ptrs_stop, k, res))
        x = jnp.where(knuth, x + 1, x)
        return t, ubuf, prod, x, done | knuth_stop | ptrs_stop, res

    # TF never stops on a NaN rate; here its output is NaN.
    special = jnp.isnan(lam) | (lam == np.inf)
    zeros = jnp.zeros((n,), _double())
    init = (jnp.zeros((n,), _U32), uniform.init, zeros + 1, zeros, special, jnp.where(special, lam, zeros))
    res = lax.while_loop(lambda s: jnp.any(~s[4]), attempt, init)[5]
    return res.reshape(-1, samples_per_rate).T


def _poisson_samples(key_counter, rate, shape, samples_per_rate: int, dtype: np.dtype):
    if 0 in shape:
        return jnp.zeros(shape, dtype)
    res = _poisson(*key_counter, rate, samples_per_rate)
    if np.issubdtype(dtype, np.integer):  # an infinite rate gives NumTraits<int>::infinity(), which is 0
        res = jnp.where(jnp.isinf(res), 0, res)
    return res.astype(dtype).reshape(shape)


@op("StatelessRandomPoisson", static=(0,))
def stateless_random_poisson(ctx, shape, seed, lam):
    shape, rate_shape = _shape(shape), np.shape(lam)
    if len(rate_shape) > len(shape) or shape[len(shape) - len(rate_shape) :] != rate_shape:
        raise ctx.error(f"shape {list(shape)} must end with lam's shape {list(rate_shape)}")
    samples_per_rate = int(np.prod(shape[: len(shape) - len(rate_shape)]))
    return _poisson_samples(_v1_key_counter(ctx, seed), lam, shape, samples_per_rate, ctx.dtype("dtype"))
