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

The same streams drive the rejection samplers (gamma, Poisson, binomial, parameterized truncated normal), the
shuffles (StatelessShuffle, and RandomIndexShuffle's Simon cipher, which needs no Philox), the image
bounding-box samplers and the candidate samplers of sampled_softmax_loss/nce_loss; the stateful kernels among
them (seed/seed2 attrs) draw from the counter their kernel has reached (stateful_random._philox_key_counter; the
host-drawn samplers, bounding boxes and candidates, from the first call's).
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
    """(high, low) halves of the 64-bit product a * b: one uint64 product where uint64 exists (NumPy, or JAX with
    x64 on), else in uint32 arithmetic only (a 4x larger program: compile time)."""
    if isinstance(a, np.ndarray | np.generic) or jax.config.jax_enable_x64:
        p = a.astype(np.uint64) * np.uint64(b)
        return (p >> np.uint64(32)).astype(_U32), a * _U32(b)
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


# The ops that take a U64Words (the V2 random ops' key and counter) or pass it on unchanged; any other op, and a
# function's outputs, get its low word: the uint64 value narrowed to 32 bits as every 64-bit tensor is with x64 off.
U64_WORDS_OPS = frozenset(
    {"StatelessRandomUniformV2", "StatelessRandomNormalV2", "StatelessTruncatedNormalV2", "StatelessShuffle"}
    | {"StatelessRandomUniformIntV2", "StatelessRandomUniformFullIntV2", "StatelessRandomGammaV3"}
    | {"Identity", "IdentityN", "PartitionedCall", "StatefulPartitionedCall", "If", "StatelessIf", "Case"}
    | {"StatelessCase", "While", "StatelessWhile"}
)


def low_words(values: list) -> list:
    """``values`` with each U64Words replaced by its low word (a uint32 tensor)."""
    return [v.lo if isinstance(v, U64Words) else v for v in values]


def _split_u64(v):
    """A uint64/int64 tensor's low and high 32-bit words."""
    if isinstance(v, U64Words):
        return v.lo, v.hi
    if isinstance(v, np.ndarray) and v.dtype.itemsize == 8:
        return (v & 0xFFFFFFFF).astype(_U32), (v >> 32).astype(_U32)
    if np.dtype(v.dtype).itemsize < 8:  # jax_enable_x64 off: the value was truncated to 32 bits (jaxsm warns)
        return v.astype(_U32), (np if isinstance(v, np.ndarray) else jnp).zeros(v.shape, _U32)
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
        if not jax.config.jax_enable_x64:  # no float64 to bitcast to: the same 52 bits, summed in float32
            return (pairs[:, 0] & 0xFFFFF).astype(jnp.float32) * 2.0**-20 + pairs[:, 1].astype(jnp.float32) * 2.0**-52
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
    if dtype.itemsize == 8 and not jax.config.jax_enable_x64:
        # x64 off: the bounds were narrowed to 32 bits (jaxsm warns), the 64-bit bits are not; take their
        # remainder in uint32 arithmetic
        pairs = _words_for(key, counter, n, 2, xp).reshape(-1, 2)
        lo = jnp.asarray(minval).astype(_U32)
        out = lo + _mod_u64(pairs[:, 0], pairs[:, 1], jnp.asarray(maxval).astype(_U32) - lo)
        return out.astype(dtype).reshape(shape)
    if dtype.itemsize == 8:
        pairs = _words_for(key, counter, n, 2, xp).reshape(-1, 2)
        bits, udt = _join_u64(pairs[:, 0], pairs[:, 1]), np.dtype(np.uint64)
    else:
        bits, udt = _words_for(key, counter, n, 1, xp), np.dtype(_U32)
    lo = jnp.asarray(minval).astype(udt)
    span = jnp.asarray(maxval).astype(udt) - lo
    return (lo + bits % span).astype(dtype).reshape(shape)


def _mod_u64(lo, hi, span):
    """(hi * 2^32 + lo) mod span for a uint32 span, in uint32 arithmetic: long division, one bit of lo at a time
    (the remainder r < span stays below 2^32; 2r + bit may wrap, and then exceeds span)."""
    r = hi % span
    for i in range(31, -1, -1):
        r2 = (r << _U32(1)) | ((lo >> _U32(i)) & _U32(1))
        r = jnp.where(((r >> _U32(31)) == 1) | (r2 >= span), r2 - span, r2)
    return r


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
    if np.ndim(logits) != 2:
        raise ctx.error(f"logits should be a matrix, got shape {list(np.shape(logits))}")
    if np.ndim(num_samples):
        raise ctx.error(f"num_samples should be a scalar, got shape {list(np.shape(num_samples))}")
    n = int(ctx.static(num_samples, "num_samples"))
    batch, classes = logits.shape
    if n < 0 or classes == 0:
        raise ctx.error(f"need num_samples >= 0 and num_classes > 0, got {n} and {classes}")
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


@op("StatefulStandardNormal", static=(1,), stateful=True)
def stateful_standard_normal_v1(ctx, handle, shape):
    """The pre-V2 op (deprecated at GraphDef 29): always Philox, the algorithm V2 takes as an input."""
    return stateful_standard_normal_v2(ctx, handle, np.asarray(1, np.int64), shape)


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


# -- binomial (random_binomial_op.cc) -------------------------------------------------------------------------
# Output i's stream starts at Philox block counter + 256 * i when it uses BTRS, counter + 42 * i when it uses
# inversion (TF's reserve for a mean below 10), so streams of neighbouring outputs may overlap, as in TF.
_BINOMIAL_INVERSION_BLOCKS = 42
_STIRLING_TAIL = np.array(
    [0.0810614667953272, 0.0413406959554092, 0.0276779256849983, 0.02079067210376509, 0.0166446911898211]
    + [0.0138761288230707, 0.0118967099458917, 0.0104112652619720, 0.00925546218271273, 0.00833056343336287]
)


def _stirling_tail(k):
    """stirling_approx_tail: a table for k <= 9 (indexed by int(k)), else the series."""
    kp1sq = (k + 1) * (k + 1)
    series = (1.0 / 12 - (1.0 / 360 - 1.0 / 1260 / kp1sq) / kp1sq) / (k + 1)
    return jnp.where(k <= 9, jnp.asarray(_STIRLING_TAIL, k.dtype)[jnp.clip(k, 0, 9).astype(jnp.int32)], series)


@partial(jax.jit, static_argnums=4)
def _binomial(key, counter, counts, probs, samples_per_batch: int):
    """RandomBinomialFunctor<CPUDevice> (random_binomial_op.cc): output ``b * samples_per_batch + s`` is sample
    s of (counts[b], probs[b]). With q = min(p, 1 - p) (in the parameters' dtype), count * q >= 10 draws by
    Hormann's BTRS from pairs of uniforms, else by inversion (summing geometric variates); p > 1/2 returns count
    minus the draw for 1 - p. Count <= 0 or p <= 0 gives 0, p >= 1 the count, a NaN p NaN. Returns
    [samples_per_batch, n_batches] in double."""
    count_t = jnp.repeat(counts.reshape(-1), samples_per_batch)
    prob_t = jnp.repeat(probs.reshape(-1), samples_per_batch)
    low = prob_t <= 0.5
    q_t = jnp.where(low, prob_t, 1 - prob_t)
    btrs = count_t * q_t >= 10
    n, p = count_t.astype(_double()), q_t.astype(_double())
    lanes = int(n.shape[0])
    if lanes * _RESERVED_BLOCKS_PER_OUTPUT >= 2**32:
        raise ValueError(f"{lanes} random values exceed the 2^24 outputs this lowering indexes")
    i = jnp.arange(lanes, dtype=_U32)
    base = _skip(
        [jnp.asarray(w) for w in counter],
        i * jnp.where(btrs, _U32(_RESERVED_BLOCKS_PER_OUTPUT), _U32(_BINOMIAL_INVERSION_BLOCKS)),
        jnp.zeros_like(i),
    )
    stddev = jnp.sqrt(n * p * (1 - p))
    b = 1.15 + 2.53 * stddev
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c, v_r, r = n * p + 0.5, 0.92 - 4.2 / b, p / (1 - p)
    alpha = (2.83 + 5.1 / b) * stddev
    m = jnp.floor((n + 1) * p)
    log_q = jnp.log1p(-p)

    def attempt(state):
        # Every lane's loop runs in step: iteration `it` reads one uniform double pair (one Philox block) as
        # UNIFORM hands them out: BTRS takes u = pair[1], v = pair[0] of block it; inversion takes one uniform
        # per iteration, pair[1] then pair[0] of block it // 2.
        it, geom_sum, done, res = state
        pair = _uniform_pair(_words(key, base, jnp.where(btrs, it, it // 2).astype(_U32)))
        u, v = jnp.where(btrs | (it % 2 == 0), pair[:, 1], pair[:, 0]), pair[:, 0]
        geom_sum = jnp.where(done, geom_sum, geom_sum + jnp.ceil(jnp.log(u) / log_q))
        inversion_stop = ~done & ~btrs & (geom_sum > n)
        u = u - 0.5
        us = 0.5 - jnp.abs(u)
        k = jnp.floor((2 * a / us + b) * u + c)
        s = jnp.log(v * alpha / (a / (us * us) + b))
        bound = (
            (m + 0.5) * jnp.log((m + 1) / (r * (n - m + 1)))
            + (n + 1) * jnp.log((n - m + 1) / (n - k + 1))
            + (k + 0.5) * jnp.log(r * (n - k + 1) / (k + 1))
            + _stirling_tail(m)
            + _stirling_tail(n - m)
            - _stirling_tail(k)
            - _stirling_tail(n - k)
        )
        squeeze = (us >= 0.07) & (v <= v_r)
        btrs_stop = ~done & btrs & (squeeze | ((k >= 0) & (k <= n) & (s <= bound)))
        res = jnp.where(inversion_stop, it.astype(res.dtype), jnp.where(btrs_stop, k, res))
        return it + 1, geom_sum, done | inversion_stop | btrs_stop, res

    dcount = count_t.astype(_double())
    zero, one, nan_p = (dcount <= 0) | (prob_t <= 0), prob_t >= 1, ~(low | (prob_t > 0.5))
    # TF loops forever on a NaN count; it gives NaN here.
    fixed = zero | one | nan_p | jnp.isnan(dcount)
    zeros = jnp.zeros((lanes,), _double())
    init = (jnp.zeros((), jnp.int32), zeros, fixed, zeros)
    res = lax.while_loop(lambda s: jnp.any(~s[2]), attempt, init)[3]
    res = jnp.where(low, res, dcount - res)
    res = jnp.where(zero, 0.0, jnp.where(one, dcount, jnp.where(nan_p | jnp.isnan(dcount), np.nan, res)))
    return res.reshape(-1, samples_per_batch).T


def _batch_shape(ctx, shape: tuple[int, ...], params, names: str) -> tuple[int, ...]:
    """The parameters' broadcast (BCast) shape, which the output shape must end with (random_binomial_op.cc,
    parameterized_truncated_normal_op.cc)."""
    try:
        batch_shape = np.broadcast_shapes(*(np.shape(p) for p in params))
    except ValueError:
        shapes = " vs. ".join(str(list(np.shape(p))) for p in params)
        raise ctx.error(f"{names} must have compatible batch dimensions: {shapes}") from None
    if len(batch_shape) > len(shape) or shape[len(shape) - len(batch_shape) :] != batch_shape:
        raise ctx.error(f"shape {list(shape)} must end with the broadcast shape {list(batch_shape)}")
    return batch_shape


def _binomial_op(ctx, shape, key_counter, counts, probs) -> tuple[jax.Array, int, int]:
    """Checks as RandomBinomialOp does, then draws; returns (samples, n_batches, samples_per_batch)."""
    shape = _shape(shape)
    batch_shape = _batch_shape(ctx, shape, (counts, probs), "counts and probs")
    n_batches = int(np.prod(batch_shape))
    samples_per_batch = int(np.prod(shape[: len(shape) - len(batch_shape)]))
    dtype = ctx.dtype("dtype", np.dtype(np.int64))
    if n_batches * samples_per_batch == 0:
        return jnp.zeros(shape, dtype), n_batches, samples_per_batch
    counts, probs = (jnp.broadcast_to(jnp.asarray(x), batch_shape) for x in (counts, probs))
    out = _binomial(*key_counter, counts, probs, samples_per_batch)
    return out.astype(dtype).reshape(shape), n_batches, samples_per_batch


@op("StatelessRandomBinomial", static=(0,))
def stateless_random_binomial(ctx, shape, seed, counts, probs):
    return _binomial_op(ctx, shape, _v1_key_counter(ctx, seed), counts, probs)[0]


@op("StatefulRandomBinomial", static=(1, 2), stateful=True)
def stateful_random_binomial(ctx, handle, alg, shape, counts, probs):
    if int(alg) != _RNG_ALG_PHILOX:
        raise ctx.error(f"Unsupported algorithm id: {int(alg)}")
    state = _generator_state(ctx, handle, alg)
    key_counter = _v2_key_counter(ctx, state[2:3], state[0:2], alg)
    out, n_batches, samples_per_batch = _binomial_op(ctx, shape, key_counter, counts, probs)
    # RandomBinomialOp's reserve, in its integer arithmetic, times 256 blocks.
    _advance(ctx, handle, state, np.asarray(n_batches * 200 * (samples_per_batch + 3) // 4, np.uint64))
    return out


# -- parameterized truncated normal (parameterized_truncated_normal_op.cc) -----------------------------------
# TF's CPU kernel splits the outputs over threads when the tensor is large, each shard starting at its own
# counter skip and then drawing sequentially; the lowering reproduces the single-shard stream (small tensors).
_PTN_MAX_ITERATIONS = 1000


def _ptn_candidates(w0, w1, mean, stddev, minval, maxval, dtype):
    """One round of TruncatedNormalFunctor's samplers for one batch's parameters: the Philox blocks w0 (and w1,
    the uniform sampler's acceptance draws) give up to 4 candidates. Returns (valid, accepted, values, blocks
    used), candidates in TF's order; an invalid batch (TF: "Invalid parameters") gives no valid candidate.
    ``dtype`` is TF's: it picks the samplers (float64 takes two words a value, in float32 while x64 is off)."""
    t = partial(jnp.asarray, dtype=mean.dtype)
    valid = (stddev > 0) & (minval < maxval) & (jnp.isfinite(minval) | jnp.isfinite(maxval))
    flip = (jnp.isinf(minval) & (minval < 0)) | (maxval < mean)
    minval, maxval, stddev = (
        jnp.where(flip, maxval, minval),
        jnp.where(flip, minval, maxval),
        jnp.where(flip, -stddev, stddev),
    )
    norm_min, norm_max = (minval - mean) / stddev, (maxval - mean) / stddev
    sqrt_factor = jnp.sqrt(norm_min * norm_min + t(4))
    cutoff = t(2) * jnp.exp(t(0.5) + (norm_min * (norm_min - sqrt_factor)) / t(4)) / (norm_min + sqrt_factor)
    inside = t(1.3)
    use_randn = ((norm_min < -inside) & (norm_max >= 0)) | ((norm_max > inside) & (norm_min <= 0))
    use_uniform = ~use_randn & (norm_max - norm_min < cutoff)
    normals = _box_muller(w0, dtype).astype(mean.dtype)
    randn_ok = (normals >= norm_min) & (normals <= norm_max)
    rand, u = _uniform_float(w0, dtype), _uniform_float(w1, dtype)
    z = rand * (norm_max - norm_min) + norm_min
    plus = jnp.where(norm_min < 0, t(0), norm_min * norm_min)
    uniform_ok = u <= jnp.exp((plus - z * z) / t(2))
    alpha = (norm_min + jnp.sqrt(norm_min * norm_min + t(4))) / t(2)
    pairs = rand.reshape(-1, 2)
    ze = -jnp.log(pairs[:, 0]) / alpha + norm_min
    x = jnp.where(norm_min < alpha, alpha - ze, norm_min - alpha)
    exp_ok = (pairs[:, 1] <= jnp.exp(-x * x / t(2))) & (ze < norm_max)
    k = normals.shape[0]
    exp_ok, ze = (jnp.pad(a, (0, k - a.shape[0])) for a in (exp_ok, ze))
    ok = jnp.where(use_randn, randn_ok, jnp.where(use_uniform, uniform_ok, exp_ok))
    norm = jnp.where(use_randn, normals, jnp.where(use_uniform, z, ze))
    return valid, ok & valid, norm * stddev + mean, jnp.where(use_uniform, 2, 1)


@partial(jax.jit, static_argnums=(3, 4, 5))
def _ptn_stream(key, counter, params, batch_len: int, n: int, dtype: np.dtype):
    """TruncatedNormalFunctor(V2)<CPUDevice> on one shard: outputs 0..n-1 in order, batch ``i // batch_len``
    using params[:, batch]; each round draws one or two Philox blocks and keeps the accepted candidates that
    the batch still needs (a new batch starts on a fresh block). A batch with invalid parameters gives NaN (TF
    raises), as does one whose sampler rejects 1000 candidates in a row (TF raises an internal error)."""
    counter = [jnp.asarray(w) for w in counter]

    def round_(state):
        t, pos, misses, out = state
        b = pos // batch_len
        w = _words(key, counter, jnp.stack([t, t + 1]), xp=jnp)
        valid, ok, values, blocks = _ptn_candidates(w[0], w[1], *params[:, b], dtype)
        need = jnp.minimum((b + 1) * batch_len, n) - pos
        rank = jnp.cumsum(ok)
        write = ok & (rank <= need)
        out = out.at[jnp.where(write, pos + rank - 1, n)].set(values, mode="drop")
        last_ok = jnp.max(jnp.where(ok, jnp.arange(ok.shape[0]) + 1, 0))
        misses = jnp.where(last_ok > 0, ok.shape[0] - last_ok, misses + ok.shape[0])
        give_up = ~valid | (misses >= _PTN_MAX_ITERATIONS)
        out = jnp.where(give_up & (jnp.arange(n) >= pos) & (jnp.arange(n) < pos + need), jnp.nan, out)
        pos = jnp.where(give_up, pos + need, pos + jnp.sum(write, dtype=jnp.int32))
        return t + blocks.astype(_U32), pos, jnp.where(give_up, 0, misses).astype(jnp.int32), out

    init = (jnp.zeros((), _U32), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros((n,), params.dtype))
    return lax.while_loop(lambda s: s[1] < n, round_, init)[3]


def _check_ptn_params(ctx, params, n_used: int) -> None:
    """OP_REQUIRES "Invalid parameters" for the batches the kernel visits, when their values are known."""
    known = [to_static(p) for p in params]
    if n_used == 0 or any(k is None for k in known):
        return
    mean, stddev, minval, maxval = np.broadcast_arrays(*known)
    with np.errstate(invalid="ignore"):
        bad = ~((stddev > 0) & (minval < maxval) & (np.isfinite(minval) | np.isfinite(maxval)))
    if np.any(bad):
        raise ctx.error("Invalid parameters: need stddevs > 0, minvals < maxvals and a finite bound")


@op("StatelessParameterizedTruncatedNormal", static=(0,))
def stateless_parameterized_truncated_normal(ctx, shape, seed, means, stddevs, minvals, maxvals):
    params = (means, stddevs, minvals, maxvals)
    shape, dtype = _shape(shape), ctx.dtype("dtype")
    batch_shape = _batch_shape(ctx, shape, params, "means, stddevs, minvals, maxvals")
    n, n_batches = int(np.prod(shape)), int(np.prod(batch_shape))
    _check_ptn_params(ctx, params, n)
    if n == 0:
        return jnp.zeros(shape, dtype)
    flat = jnp.stack([jnp.broadcast_to(jnp.asarray(p, dtype), batch_shape).reshape(-1) for p in params])
    # Outputs are drawn batch by batch but laid out [samples, batches].
    out = _ptn_stream(*_v1_key_counter(ctx, seed), flat, n // n_batches, n, dtype)
    return out.reshape(n_batches, -1).T.reshape(shape)


def _ptn_v1_batches(ctx, shape: tuple[int, ...], params) -> tuple[int, np.ndarray]:
    """ParameterizedTruncatedNormalOp's batching: (outputs per batch, each batch's parameter index)."""
    if not shape:
        raise ctx.error("Shape tensor must not be empty")
    if any(np.ndim(p) > 1 for p in params):
        raise ctx.error(f"means, stdevs, minvals, maxvals must be scalars or vectors: {[np.shape(p) for p in params]}")
    if all(np.size(p) == 1 for p in params[:2]) and all(np.ndim(p) == 0 for p in params[2:]):
        return 100, np.zeros(max(1, -(-int(np.prod(shape)) // 100)), np.int32)
    for name, p in zip(("means", "stdevs", "minvals", "maxvals"), params, strict=True):
        if np.ndim(p) and np.size(p) not in (1, shape[0]):
            raise ctx.error(f"Input {name} should have length 1 or shape[0], got shape: {list(np.shape(p))}")
    return int(np.prod(shape[1:])), np.arange(shape[0])


@op("ParameterizedTruncatedNormal", static=(0,), stateful=True)
def parameterized_truncated_normal(ctx, shape, means, stdevs, minvals, maxvals):
    """ParameterizedTruncatedNormalOp's first call: shape[0] batches, parameters scalars or vectors of length 1
    or shape[0]; when every parameter is one value the kernel regroups the outputs into batches of 100."""
    from jaxsm.ops.stateful_random import _philox_key_counter, reserve  # that module imports this one

    params = (means, stdevs, minvals, maxvals)
    shape, dtype = _shape(shape), ctx.dtype("dtype")
    n = int(np.prod(shape))
    batch_len, index = _ptn_v1_batches(ctx, shape, params)
    _check_ptn_params(ctx, params, n)
    key, counter = _philox_key_counter(ctx)
    reserve(ctx, len(index) * 2 * 1000 * (batch_len + 3) // 4)  # kMaxIterations = 1000 tries per sample
    if n == 0:
        return jnp.zeros(shape, dtype)
    flat = jnp.stack([jnp.asarray(p, dtype).reshape(-1)[index % np.size(p)] for p in params])
    return _ptn_stream(key, counter, flat, batch_len, n, dtype).reshape(shape)


# -- shuffles --------------------------------------------------------------------------------------------------


def _shuffle_permutation(key, counter, n: int, xp):
    """ShuffleRange (shuffle_common.h) on 0..n-1: step i swaps i with i + word_i % (n - i), word_i the i-th
    32-bit word of the Philox stream (SingleSampleAdapter hands out a block's words in order)."""
    words = _words(key, counter, xp.arange(-(-(n - 1) // 4), dtype=_U32), xp=xp).reshape(-1)
    if xp is np:  # known key/counter: a host loop, not an XLA loop of n steps
        perm, words = np.arange(n), np.asarray(words)
        for i in range(n - 1):
            j = i + int(words[i] % np.uint32(n - i))
            perm[i], perm[j] = perm[j], perm[i]
        return perm

    def step(i, perm):
        j = i + (words[i] % (n - i).astype(_U32)).astype(jnp.int32)
        return perm.at[i].set(perm[j]).at[j].set(perm[i])

    return lax.fori_loop(0, n - 1, step, jnp.arange(n, dtype=jnp.int32))


def _random_shuffle(key, counter, x, xp):
    """RandomShuffle (shuffle_common.h): ``x`` with its first axis permuted as TF's kernel does from the Philox
    stream at key/counter; tensors of at most one element or one row come back unchanged (no draws)."""
    if np.size(x) <= 1 or np.shape(x)[0] <= 1:
        return x
    return jnp.take(jnp.asarray(x), _shuffle_permutation(key, counter, int(np.shape(x)[0]), xp), axis=0)


@op("StatelessShuffle", static=(3,))
def stateless_shuffle(ctx, value, key, counter, alg):
    k, c = _v2_key_counter(ctx, key, counter, alg)
    return _random_shuffle(k, c, value, _xp(key, counter))


# RandomIndexShuffle (random_index_shuffle.cc): a Simon-like Feistel cipher on blocks of 2W bits, W <= 32, so
# both halves live in uint32 words.
_SIMON_C, _SIMON_Z = 0xFFFFFFFC, 0x192C0EF5  # the constants' low 32 bits (W <= 32 keeps no more)


def _rotl(x, r: int, w, mask):
    return ((x << _U32(r)) | (x >> (w - _U32(r)))) & mask


def _rotr(x, r: int, w, mask):
    return ((x >> _U32(r)) | (x << (w - _U32(r)))) & mask


def _simon_round_keys(seed, rounds: int, w, mask) -> list:
    """simon_key_schedule: the 3 seed words (truncated to W bits) and one derived key per further round."""
    rk = [s & mask for s in seed]
    z = jnp.asarray(_SIMON_Z, _U32) & mask
    for i in range(3, rounds):
        rk.append(
            (_U32(_SIMON_C) & mask)
            ^ (z & _U32(1))
            ^ rk[i - 3]
            ^ _rotr(rk[i - 1], 3, w, mask)
            ^ _rotr(rk[i - 1], 4, w, mask)
        )
        z = z >> _U32(1)
    return rk


def _index_shuffle(index, seed, max_index, rounds: int):
    """index_shuffle: cycle-walk the cipher from ``index`` until the value is <= max_index, with a block of
    max(ceil(log2(max_index)) rounded up to even, 16) bits; max_index 0 gives 0. All uint64 (or uint32) arrays
    of one shape; ``seed`` is 3 uint32 arrays. TF rejects an index above max_index; one known only at run time
    walks until a value <= max_index or back to itself."""
    wide = np.dtype(index.dtype)
    bits = jnp.ceil(jnp.log2(max_index.astype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)))
    block = jnp.maximum(bits + bits % 2, 16).astype(_U32)
    w = block // _U32(2)
    mask = jnp.where(w >= 32, _U32(0xFFFFFFFF), (_U32(1) << w) - _U32(1))
    rk = _simon_round_keys(seed, rounds, w, mask)

    def feistel(f):
        return (_rotl(f, 1, w, mask) & _rotl(f, 8, w, mask)) ^ _rotl(f, 2, w, mask)

    def encrypt(v):
        left, right = ((v >> w.astype(wide)) & mask.astype(wide)).astype(_U32), (v & mask.astype(wide)).astype(_U32)
        for i in range(0, rounds, 2):
            left = left ^ feistel(right) ^ rk[i]
            right = right ^ feistel(left) ^ rk[i + 1]
        return (left.astype(wide) << w.astype(wide)) | right.astype(wide)

    def walk(state):
        v, done = state
        v = jnp.where(done, v, encrypt(v))
        return v, done | (v <= max_index) | (v == index)

    zero = max_index == 0
    return lax.while_loop(lambda s: ~jnp.all(s[1]), walk, (jnp.where(zero, 0, index).astype(index.dtype), zero))[0]


def _index_shuffle_shape(ctx, index, seed, max_index) -> tuple[int, ...]:
    """RandomIndexShuffleOp's checks; the output is a scalar when every input is one value, else [n]."""
    n = max(np.size(index), np.size(max_index), np.size(seed) // 3)
    if np.ndim(index) > 1 or (np.ndim(index) == 1 and np.size(index) != n):
        raise ctx.error("Index must be a scalar or vector.")
    if np.shape(seed) not in ((3,), (n, 3)):
        raise ctx.error(f"Seed must be a vector of size [3] or a matrix of size [{n}, 3], got {list(np.shape(seed))}")
    if np.ndim(max_index) > 1 or (np.ndim(max_index) == 1 and np.size(max_index) != n):
        raise ctx.error(
            f"Maxval must be a scalar or a vector of the same size as index, got {list(np.shape(max_index))}"
        )
    known = [to_static(v) for v in (index, max_index)]
    if all(k is not None for k in known) and np.any(known[0] > known[1]):
        raise ctx.error(f"max_index must be >= index, got index {known[0]} and max_index {known[1]}")
    return () if np.ndim(index) == 0 and np.ndim(seed) == 1 and np.ndim(max_index) == 0 else (n,)


@op("RandomIndexShuffle")
def random_index_shuffle(ctx, index, seed, max_index):
    rounds = int(ctx.attr("rounds", 4))
    if rounds < 4 or rounds % 2:
        raise ctx.error(f"rounds must be an even number >= 4, got {rounds}")
    shape = _index_shuffle_shape(ctx, index, seed, max_index)
    # TF widens every index to uint64 (sign-extending int32); with x64 off 32 bits must do.
    wide = np.dtype(np.uint64) if jax.config.jax_enable_x64 else np.dtype(_U32)
    index, max_index = (jnp.broadcast_to(jnp.asarray(x).astype(wide), shape) for x in (index, max_index))
    seed = jnp.broadcast_to(jnp.asarray(seed).astype(_U32), shape + (3,))
    return _index_shuffle(index, [seed[..., i] for i in range(3)], max_index, rounds).astype(ctx.dtype("dtype"))


# -- image bounding-box samplers (image/sample_distorted_bounding_box_op.cc) --------------------------------
# The attempt loop draws a data-dependent number of words (rejection sampling, early exits), so it runs on the
# host in NumPy float32/int arithmetic, C's rounding included; its inputs must be known (else op by op).


class _SimplePhilox:
    """SimplePhilox over a SingleSampleAdapter: the 32-bit words of the Philox stream at key/counter, in order."""

    _CHUNK = 16  # Philox blocks computed at a time

    def __init__(self, key, counter):
        self.key, self.counter = key, counter
        self.words: list[int] = []
        self.next_block = 0

    def rand32(self) -> int:
        if not self.words:
            blocks = np.arange(self.next_block, self.next_block + self._CHUNK, dtype=_U32)
            self.words = [int(w) for w in _words(self.key, self.counter, blocks, xp=np).reshape(-1)][::-1]
            self.next_block += self._CHUNK
        return self.words.pop()

    def rand64(self) -> int:
        lo = self.rand32()  # the first word is the low half
        return (self.rand32() << 32) | lo

    def rand_double(self) -> float:
        """Uint64ToDouble of two words: 20 mantissa bits from the first, 32 from the second."""
        hi, lo = self.rand32(), self.rand32()
        return float(np.uint64(((0x3FF00000 | (hi & 0xFFFFF)) << 32) | lo).view(np.float64)) - 1.0

    def rand_float(self) -> np.float32:
        return np.float32(np.uint32((self.rand32() & 0x7FFFFF) | 0x3F800000).view(np.float32) - np.float32(1))

    def uniform(self, n: int, bits: int = 32) -> int:
        """ExactUniformInt (exact_uniform_int.h) on 32-bit words (Uniform) or word pairs (Uniform64): a mask for
        powers of two, else reject draws below 2^bits mod n."""
        draw = self.rand32 if bits == 32 else self.rand64
        if n & (n - 1) == 0:
            return draw() & (n - 1)
        rem = ((1 << bits) - 1) % n + 1
        while (r := draw()) < rem:
            pass
        return r % n


def _lrintf(x: np.float32) -> int:
    return int(np.rint(x))  # round half to even, as lrintf in the default rounding mode


def _random_crop(width: int, height: int, area_range, aspect_ratio: np.float32, rng: _SimplePhilox):
    """GenerateRandomCrop: a crop (min_x, min_y, max_x, max_y) of aspect ratio ~``aspect_ratio`` and relative
    area in ``area_range``, or None; float32 arithmetic as TF's."""
    f32 = np.float32
    min_rel, max_rel = f32(area_range[0]), f32(area_range[1])
    if max_rel <= 0 or aspect_ratio <= 0 or width <= 0 or height <= 0 or min_rel > max_rel:
        return None
    min_area, max_area = min_rel * f32(width) * f32(height), max_rel * f32(width) * f32(height)
    h, max_h = _lrintf(np.sqrt(min_area / aspect_ratio)), _lrintf(np.sqrt(max_area / aspect_ratio))
    if _lrintf(f32(max_h) * aspect_ratio) > width:
        # TF's correction for rounding, in double with a float epsilon.
        max_h = int((width + 0.5 - float(f32(1e-7))) / float(aspect_ratio))
        if _lrintf(f32(max_h) * aspect_ratio) > width:
            max_h -= 1
    max_h = min(max_h, height)
    h = min(h, max_h)
    if h < max_h:
        h += rng.uniform(max_h - h + 1)
    w = _lrintf(f32(h) * aspect_ratio)
    area = f32(w * h)
    if area < min_area:
        h += 1
        w = _lrintf(f32(h) * aspect_ratio)
        area = f32(w * h)
    if area > max_area:
        h -= 1
        w = _lrintf(f32(h) * aspect_ratio)
        area = f32(w * h)
    if area < min_area or area > max_area or w > width or h > height or w <= 0 or h <= 0:
        return None
    y = rng.uniform(height - h) if h < height else 0
    x = rng.uniform(width - w) if w < width else 0
    return x, y, x + w, y + h


def _rect_area(r) -> np.float32:
    return np.float32((r[2] - r[0]) * (r[3] - r[1]))


def _covers(crop, min_covered: np.float32, boxes) -> bool:
    """SatisfiesOverlapConstraints: the crop has a pixel and covers enough of one box of at least a pixel."""
    if _rect_area(crop) < 1:
        return False
    for box in boxes:
        if _rect_area(box) < 1:
            continue
        lo_x, lo_y, hi_x, hi_y = max(crop[0], box[0]), max(crop[1], box[1]), min(crop[2], box[2]), min(crop[3], box[3])
        inter = (0, 0, 0, 0) if lo_x > hi_x or lo_y > hi_y else (lo_x, lo_y, hi_x, hi_y)
        if _rect_area(inter) / _rect_area(box) >= min_covered:
            return True
    return False


def _sample_distorted_bounding_box(ctx, image_size, bounding_boxes, min_object_covered, key_counter):
    """SampleDistortedBoundingBoxBaseOp::DoCompute: up to max_attempts random crops (aspect ratio from
    RandFloat, then GenerateRandomCrop) until one covers enough of a box; else the whole image. Returns
    (begin, size, bboxes) as TF's kernel writes them."""
    aspect, area = ctx.attr("aspect_ratio_range", [0.75, 1.33]), ctx.attr("area_range", [0.05, 1.0])
    attempts, use_image = int(ctx.attr("max_attempts", 100)), bool(ctx.attr("use_image_if_no_bounding_boxes", False))
    if len(aspect) != 2 or not (aspect[0] > 0 and aspect[1] > 0):
        raise ctx.error(f"Aspect ratio range must be 2 positive values, got {list(aspect)}")
    if len(area) != 2 or not (0 < area[0] <= 1 and 0 < area[1] <= 1):
        raise ctx.error(f"Area range must be 2 values in (0, 1], got {list(area)}")
    if attempts <= 0:
        raise ctx.error(f"Max attempts must be positive: {attempts}")
    size = ctx.static(image_size, "image_size")
    dtype = np.dtype(size.dtype)
    if size.shape != (3,):
        raise ctx.error(f"image_size must contain 3 elements, got shape {list(size.shape)}")
    height, width = (int(v) & 0xFFFFFFFFFFFFFFFF for v in size[:2])
    if height >= 2**31 - 1 or width >= 2**31 - 1:
        raise ctx.error("image height and width must be in [0, int32 max)")
    boxes = np.asarray(ctx.static(bounding_boxes, "bounding_boxes"), np.float32)
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ctx.error(f"input boxes must be 3-dimensional [batch, num_boxes, 4], got {list(boxes.shape)}")
    min_covered = np.float32(min_object_covered)
    if not min_covered >= 0:
        raise ctx.error(f"Min object covered must be non-negative: {min_covered}")
    boxes = boxes.reshape(-1, 4)
    if not np.all((boxes >= 0) & (boxes <= 1)):
        raise ctx.error("All bounding box coordinates must be in [0.0, 1.0]")
    f32 = np.float32
    rects = [tuple(int(b[i] * f32(n)) for i, n in ((1, width), (0, height), (3, width), (2, height))) for b in boxes]
    image = (0, 0, width, height)
    if not rects:
        if not use_image:
            raise ctx.error("No bounding boxes provided as input; enable use_image_if_no_bounding_boxes")
        rects = [image]
    rng, crop = _SimplePhilox(*key_counter), None
    lo, hi = f32(aspect[0]), f32(aspect[1])
    for _ in range(attempts):
        ratio = rng.rand_float() * (hi - lo) + lo
        candidate = _random_crop(width, height, area, ratio, rng)
        if candidate is not None and _covers(candidate, min_covered, rects):
            crop = candidate
            break
    crop = crop or image
    begin = np.array([crop[1], crop[0], 0]).astype(dtype)
    extent = np.array([crop[3] - crop[1], crop[2] - crop[0], -1]).astype(dtype)
    bbox = np.array([crop[1] / f32(height), crop[0] / f32(width), crop[3] / f32(height), crop[2] / f32(width)])
    return begin, extent, bbox.astype(np.float32).reshape(1, 1, 4)


@op("StatelessSampleDistortedBoundingBox", static=(0, 1, 2, 3))
def stateless_sample_distorted_bounding_box(ctx, image_size, bounding_boxes, min_object_covered, seed):
    seed = ctx.static(seed, "seed")
    if np.shape(seed) != (2,):
        raise ctx.error(f"seed must have shape [2], not {list(np.shape(seed))}")
    key_counter = _seed_to_key_counter(seed, np)
    return _sample_distorted_bounding_box(ctx, image_size, bounding_boxes, min_object_covered, key_counter)


def _stateful_bounding_box(ctx, image_size, bounding_boxes, min_object_covered):
    from jaxsm.ops.stateful_random import _philox_key_counter  # that module imports this one

    key, counter = _philox_key_counter(ctx)
    counter = [ctx.static(c, "the kernel's Philox counter") for c in counter]
    return _sample_distorted_bounding_box(ctx, image_size, bounding_boxes, min_object_covered, (key, counter))


@op("SampleDistortedBoundingBoxV2", static=(0, 1, 2), stateful=True)
def sample_distorted_bounding_box_v2(ctx, image_size, bounding_boxes, min_object_covered):
    if np.ndim(min_object_covered):
        raise ctx.error(f"min_object_covered must be 0-D, got shape {list(np.shape(min_object_covered))}")
    return _stateful_bounding_box(ctx, image_size, bounding_boxes, min_object_covered)


@op("SampleDistortedBoundingBox", static=(0, 1), stateful=True)
def sample_distorted_bounding_box(ctx, image_size, bounding_boxes):
    return _stateful_bounding_box(ctx, image_size, bounding_boxes, ctx.attr("min_object_covered", 0.1))


# -- candidate samplers (candidate_sampler_ops.cc, range_sampler.cc) ------------------------------------------
# The sampled candidates depend only on the seed attrs, so they are drawn on the host at trace time (the first
# call's draws); the true classes' expected counts are computed from the run-time classes.


def _sample_candidates(ctx, sample, n: int, unique: bool) -> tuple[np.ndarray, int]:
    """RangeSampler::SampleBatchGetExpectedCountAvoid's draws: ``n`` samples (distinct ones if ``unique``,
    redrawing repeats) and the number of tries it took."""
    from jaxsm.ops.stateful_random import _philox_key_counter  # that module imports this one

    key, counter = _philox_key_counter(ctx)
    rng = _SimplePhilox(key, [ctx.static(c, "the kernel's Philox counter") for c in counter])
    if not unique:
        return np.array([sample(rng) for _ in range(n)], np.int64), n
    picked: dict[int, None] = {}
    tries = 0
    while len(picked) < n:
        tries += 1
        picked.setdefault(sample(rng))
    return np.array(list(picked), np.int64), tries


def _expected_count(p, n: int, tries: int, xp):
    """ExpectedCountHelper in float32: p * n, or 1 - (1 - p)^tries when unique sampling needed retries."""
    p = xp.asarray(p, np.float32)
    if tries == n:
        return p * np.float32(n)
    return -xp.expm1(np.float32(tries) * xp.log1p(-p))


def _candidate_sampler(ctx, true_classes, range_max: int, sample, probability):
    """BaseCandidateSamplerOp::Compute: returns (sampled_candidates, true_expected_count,
    sampled_expected_count); ``probability(values, xp)`` is the sampler's float32 Probability."""
    num_true, n, unique = int(ctx.attr("num_true")), int(ctx.attr("num_sampled")), bool(ctx.attr("unique"))
    if np.ndim(true_classes) != 2 or np.shape(true_classes)[1] != num_true:
        raise ctx.error(f"true_classes must be a [batch, {num_true}] matrix, got shape {list(np.shape(true_classes))}")
    if unique and n > range_max:
        raise ctx.error("Sampler's range is too small.")
    known = to_static(true_classes)
    if known is not None and np.any((known < 0) | (known >= range_max)):
        raise ctx.error(
            f"`true_candidate` out of range [0, {range_max}), received {known[(known < 0) | (known >= range_max)][0]}"
        )
    sampled, tries = _sample_candidates(ctx, sample, n, unique)
    true_expected = _expected_count(probability(jnp.asarray(true_classes), jnp), n, tries, jnp)
    return sampled, true_expected, _expected_count(probability(sampled, np), n, tries, np)


def _range_max(ctx) -> int:
    range_max = int(ctx.attr("range_max"))
    if range_max <= 0:
        raise ctx.error("range_max must be positive")
    return range_max


@op("UniformCandidateSampler", stateful=True)
def uniform_candidate_sampler(ctx, true_classes):
    range_max = _range_max(ctx)
    inv_range = np.float32(1.0 / range_max)
    return _candidate_sampler(
        ctx, true_classes, range_max, lambda rng: rng.uniform(range_max, 64), lambda v, xp: xp.full(v.shape, inv_range)
    )


@op("LogUniformCandidateSampler", stateful=True)
def log_uniform_candidate_sampler(ctx, true_classes):
    range_max = _range_max(ctx)
    log_range = np.log1p(np.float64(range_max))

    def sample(rng: _SimplePhilox) -> int:
        return (int(np.exp(rng.rand_double() * log_range)) - 1) % range_max

    def probability(v, xp):
        v = v.astype(np.float64 if xp is np or jax.config.jax_enable_x64 else np.float32)
        return (xp.log((v + 2.0) / (v + 1.0)) / log_range).astype(np.float32)

    return _candidate_sampler(ctx, true_classes, range_max, sample, probability)


@op("LearnedUnigramCandidateSampler", "ThreadUnsafeUnigramCandidateSampler", stateful=True)
def learned_unigram_candidate_sampler(ctx, true_classes):
    """UnigramSampler's first call: its WeightedPicker starts with every weight 1, so a pick is a uniform
    32-bit draw and each class has probability 1 / range (the kernel then counts the true classes)."""
    range_max = _range_max(ctx)
    if range_max >= 2**31 - 1:
        raise ctx.error(f"range_max must be less than {2**31 - 1} for unigram samplers, got {range_max}")
    p = np.float32(1) / np.float32(range_max)
    return _candidate_sampler(
        ctx, true_classes, range_max, lambda rng: rng.uniform(range_max), lambda v, xp: xp.full(v.shape, p)
    )


def _alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DistributionSampler's constructor (tsl/lib/random/distribution_sampler.cc): Walker's alias table, built
    with TF's float/double mix and stack order. Returns (prob float32, alt int)."""
    n = len(weights)
    total = sum(float(w) for w in weights)
    pr = [float(np.float32(w) * np.float32(n)) / total for w in weights]
    alt = [-1] * n
    low, high = [i for i in range(n) if pr[i] < 1.0], [i for i in range(n) if pr[i] >= 1.0]
    while high and low:
        lo, hi = low.pop(), high.pop()
        alt[lo] = hi
        pr[hi] = pr[hi] - (1.0 - pr[lo])
        (low if pr[hi] < 1.0 else high).append(hi)
    for i in high + low:  # rounding leftovers keep their own bucket
        pr[i], alt[i] = 1.0, i
    return np.array(pr, np.float32), np.array(alt)


def _fixed_unigram_weights(ctx) -> np.ndarray:
    """FixedUnigramSampler's weights from the ``unigrams`` attr: this shard's reserved ids weigh 0, its other
    ids unigram^distortion (float powf)."""
    unigrams = [np.float32(u) for u in ctx.attr("unigrams", [])]
    if ctx.attr("vocab_file", ""):
        raise ctx.error("vocab_file is not supported (the unigrams attr is); jaxsm does not read the file")
    if not unigrams:
        raise ctx.error("Must provide either vocab_file or unigrams.")
    shards, shard = int(ctx.attr("num_shards", 1)), int(ctx.attr("shard", 0))
    distortion = np.float32(ctx.attr("distortion", 1.0))
    weights = [np.float32(0) for i in range(int(ctx.attr("num_reserved_ids", 0))) if i % shards == shard]
    # TF numbers the unigrams from the count of reserved ids kept, not from num_reserved_ids.
    weights += [np.power(u, distortion) for i, u in enumerate(unigrams, len(weights)) if i % shards == shard]
    return np.array(weights, np.float32)


@op("FixedUnigramCandidateSampler", stateful=True)
def fixed_unigram_candidate_sampler(ctx, true_classes):
    """A draw is DistributionSampler::Sample: a RandFloat, then a uniform bucket of the alias table."""
    range_max, weights = _range_max(ctx), _fixed_unigram_weights(ctx)
    if len(weights) != range_max:
        raise ctx.error(f"range is {range_max} must be equal to weights size {len(weights)}")
    total, (prob, alt) = sum(float(w) for w in weights), _alias_table(weights)

    def sample(rng: _SimplePhilox) -> int:
        r, i = rng.rand_float(), rng.uniform(range_max)
        return i if r < prob[i] else int(alt[i])

    def probability(v, xp):
        wide = np.float64 if xp is np or jax.config.jax_enable_x64 else np.float32
        return (xp.asarray(weights)[v].astype(wide) / total).astype(np.float32)

    return _candidate_sampler(ctx, true_classes, range_max, sample, probability)


@op("AllCandidateSampler", stateful=True)
def all_candidate_sampler(ctx, true_classes):
    """AllSampler: every class 0..num_sampled-1, expected counts 1 (no draws)."""
    n, num_true = int(ctx.attr("num_sampled")), int(ctx.attr("num_true"))
    if np.ndim(true_classes) != 2 or np.shape(true_classes)[1] != num_true:
        raise ctx.error(f"true_classes must be a [batch, {num_true}] matrix, got shape {list(np.shape(true_classes))}")
    return np.arange(n, dtype=np.int64), jnp.ones(np.shape(true_classes), jnp.float32), np.ones(n, np.float32)


@op("ComputeAccidentalHits", static=(0, 1))
def compute_accidental_hits(ctx, true_classes, sampled_candidates):
    """ComputeAccidentalHitsOp: (row, position in sampled, -FLT_MAX) for each true class that was also sampled
    (the last position of a repeated candidate); the count depends on the values, so it runs on the host."""
    num_true = int(ctx.attr("num_true"))
    if true_classes.ndim != 2 or true_classes.shape[1] != num_true:
        raise ctx.error("true_candidates must be a batch_size * num_true matrix")
    if sampled_candidates.ndim != 1:
        raise ctx.error("sampled_candidates must be a vector, which is typically an output from CandidateSampler")
    position = {int(c): i for i, c in enumerate(sampled_candidates)}
    hits = [(i, position[int(c)]) for i, row in enumerate(true_classes) for c in row if int(c) in position]
    rows, ids = np.array([h[0] for h in hits], np.int32), np.array([h[1] for h in hits], np.int64)
    return rows, ids, np.full(len(hits), -np.finfo(np.float32).max, np.float32)
