"""The layer patterns of today's Keras model zoos (keras_hub's LLM decoders, encoders and MoE blocks), rebuilt from
keras.ops / tf ops in small models: rotary position embeddings, RMSNorm, grouped-query attention by repeating the
key/value heads, causal + padding + sliding-window masks over a run-time sequence length, top-k mixture-of-experts
routing (dense one-hot dispatch, and gather + segment-sum dispatch), T5's relative position buckets and logit soft
caps. Each model is exported as Keras 3 does (``model.export``: endpoint ``serve``) or saved as a tf.function; the
loaded ``serve`` must give TF's outputs compiled and op by op, for a second call with other batch and sequence
sizes too."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import jaxsm
from jaxsm.errors import EagerFallbackWarning
from tests.tfcompare import assert_matches_tf

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
ops = keras.ops

JIT = pytest.mark.parametrize("jit", [True, False])


def _flat(x, path="out"):
    if isinstance(x, dict):
        return [p for k in sorted(x) for p in _flat(x[k], f"{path}[{k!r}]")]
    if isinstance(x, (list, tuple)):
        return [p for i, v in enumerate(x) for p in _flat(v, f"{path}[{i}]")]
    return [(path, x)]


def _assert_serve_matches(model, calls, tmp_path, rtol=1e-5, op_by_op=True):
    """Export ``model``; on each of ``calls`` (dicts or arrays) the loaded ``serve`` gives TF's outputs, jitted and,
    with ``op_by_op``, on the first call also op by op (the pure function without jit), within ``rtol`` of each
    output's largest magnitude."""
    model(calls[0])
    model.export(str(tmp_path), verbose=False)
    ref = tf.saved_model.load(str(tmp_path))
    serve = jaxsm.load(str(tmp_path)).serve
    cf = serve.concrete_functions[0]
    state = {v.key: v.value() for v in cf._variables() if v.initialized}
    for i, inputs in enumerate(calls):
        want = _flat(ref.serve(inputs))
        runs = [("jit", serve(inputs))]
        if op_by_op and i == 0:
            runs.append(("op by op", cf._pack_outputs(cf.pure()(state, cf.bind((inputs,), {}))[0])))
        for mode, got in runs:
            got = _flat(got)
            assert len(got) == len(want), f"call {i} {mode}: {len(got)} outputs, TF {len(want)}"
            for (path, w), (_, g) in zip(want, got):
                w, g = w.numpy(), np.asarray(g)
                what = f"call {i} {mode} {path}"
                assert g.shape == w.shape and g.dtype == w.dtype, f"{what}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
                scale = float(np.max(np.abs(w))) if w.size else 1.0
                np.testing.assert_allclose(g, w, rtol=0, atol=rtol * max(scale, 1e-6), err_msg=what)


def _tokens(batch, seq, left_pad=0, right_pad=0, vocab=50, seed=0):
    ids = np.random.default_rng(seed).integers(1, vocab, (batch, seq)).astype("int32")
    mask = np.ones((batch, seq), "int32")
    if left_pad:
        mask[0, :left_pad] = 0
    if right_pad:
        mask[-1, seq - right_pad :] = 0
    return {"token_ids": ids, "padding_mask": mask}


class RMSNorm(keras.layers.Layer):
    """Gemma/Llama RMSNorm: computed in float32, ``x * rsqrt(mean(x^2) + eps) * (1 + scale)``."""

    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="random_normal")

    def call(self, x):
        x32 = ops.cast(x, "float32")
        var = ops.mean(ops.square(x32), axis=-1, keepdims=True)
        return ops.cast(x32 * ops.rsqrt(var + 1e-6) * (1.0 + self.scale), x.dtype)


def _rope(x, max_wavelength=10000.0):
    """keras_hub's RotaryEmbedding over (batch, seq, heads, dim): positions from the run-time sequence length,
    rotate-half on the two halves of the feature axis."""
    dim = x.shape[-1]
    positions = ops.cast(ops.arange(ops.shape(x)[1]), "float32")
    inverse_freq = 1.0 / max_wavelength ** (ops.arange(0, dim, 2, dtype="float32") / dim)
    freq = ops.einsum("i,j->ij", positions, inverse_freq)
    emb = ops.concatenate([freq, freq], axis=-1)[None, :, None, :]
    x1, x2 = ops.split(x, 2, axis=-1)
    return x * ops.cos(emb) + ops.concatenate([-x2, x1], axis=-1) * ops.sin(emb)


class GQADecoderBlock(keras.layers.Layer):
    """A Llama/Mistral/Gemma block: RMSNorm, q/k/v EinsumDense projections, RoPE, key/value heads repeated to the
    query heads (GQA), causal & padding (& optional sliding-window) mask, optional logit soft cap, gated MLP."""

    def __init__(self, heads=4, kv_heads=2, head_dim=8, window=None, soft_cap=None, **kw):
        super().__init__(**kw)
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.window, self.soft_cap = window, soft_cap

    def build(self, shape):
        d, EinsumDense = shape[-1], keras.layers.EinsumDense
        self.norm1, self.norm2 = RMSNorm(), RMSNorm()
        self.q = EinsumDense("bsd,dnh->bsnh", (None, self.heads, self.head_dim))
        self.k = EinsumDense("bsd,dnh->bsnh", (None, self.kv_heads, self.head_dim))
        self.v = EinsumDense("bsd,dnh->bsnh", (None, self.kv_heads, self.head_dim))
        self.o = EinsumDense("bsnh,nhd->bsd", (None, d))
        self.gate, self.up = keras.layers.Dense(2 * d, use_bias=False), keras.layers.Dense(2 * d, use_bias=False)
        self.down = keras.layers.Dense(d, use_bias=False)

    def call(self, x, padding_mask):
        h = self.norm1(x)
        q, k, v = _rope(self.q(h)), _rope(self.k(h)), self.v(h)
        k = ops.repeat(k, self.heads // self.kv_heads, axis=2)
        v = ops.repeat(v, self.heads // self.kv_heads, axis=2)
        scores = ops.einsum("bqnh,bknh->bnqk", q, k) / np.sqrt(self.head_dim).astype("float32")
        if self.soft_cap is not None:
            scores = ops.tanh(scores / self.soft_cap) * self.soft_cap
        seq = ops.shape(x)[1]
        i, j = ops.arange(seq)[:, None], ops.arange(seq)[None, :]
        mask = i >= j
        if self.window is not None:
            mask = ops.logical_and(mask, i - j < self.window)
        mask = ops.logical_and(mask[None, None], ops.cast(padding_mask, "bool")[:, None, None, :])
        scores = ops.where(mask, scores, ops.full_like(scores, -1e9))
        probs = ops.softmax(scores, axis=-1)
        x = x + self.o(ops.einsum("bnqk,bknh->bqnh", probs, v))
        h = self.norm2(x)
        return x + self.down(ops.silu(self.gate(h)) * self.up(h))


def _decoder_model(**block_kw):
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    pad = keras.Input((None,), dtype="int32", name="padding_mask")
    embed = keras.layers.Embedding(50, 16)
    x = GQADecoderBlock(**block_kw)(embed(ids), pad)
    x = RMSNorm()(x)
    logits = ops.matmul(x, ops.transpose(embed.embeddings))  # tied embeddings
    return keras.Model({"token_ids": ids, "padding_mask": pad}, {"hidden": x, "logits": logits})


@pytest.mark.parametrize(
    "block_kw",
    [{}, {"window": 3}, {"window": 4, "soft_cap": 5.0, "kv_heads": 1}],
    ids=["full", "sliding_window", "mqa_soft_cap"],
)
def test_rope_gqa_decoder_with_causal_padding_and_window_masks(block_kw, tmp_path):
    """The LLM decoder block of Llama/Mistral/Qwen/Gemma; a second call with a longer sequence (past the window)
    and left padding. (Op by op for the first variant only: it takes seconds.)"""
    keras.utils.set_random_seed(0)
    calls = [_tokens(2, 6, right_pad=2), _tokens(3, 11, left_pad=4, seed=1)]
    _assert_serve_matches(_decoder_model(**block_kw), calls, tmp_path, rtol=1e-5, op_by_op=not block_kw)


class TopKMoE(keras.layers.Layer):
    """Mixtral/Qwen-MoE routing: router logits, top-k experts per token, softmax over the k logits, dispatch as
    one-hot weights over all experts (each expert a SwiGLU MLP, computed for every token), weighted sum."""

    def __init__(self, experts=4, k=2, hidden=8, **kw):
        super().__init__(**kw)
        self.experts, self.k, self.hidden = experts, k, hidden

    def build(self, shape):
        d, e, f = shape[-1], self.experts, self.hidden
        self.router = keras.layers.Dense(e, use_bias=False)
        self.w_gate = self.add_weight(shape=(e, d, f), initializer="glorot_uniform")
        self.w_up = self.add_weight(shape=(e, d, f), initializer="glorot_uniform")
        self.w_down = self.add_weight(shape=(e, f, d), initializer="glorot_uniform")

    def call(self, x):
        logits = self.router(x)
        top_logits, top_idx = ops.top_k(logits, self.k)
        weights = ops.softmax(top_logits, axis=-1)
        dispatch = ops.sum(ops.one_hot(top_idx, self.experts) * weights[..., None], axis=-2)  # (b, s, e)
        h = ops.silu(ops.einsum("bsd,edf->bsef", x, self.w_gate)) * ops.einsum("bsd,edf->bsef", x, self.w_up)
        out = ops.einsum("bsef,efd->bsed", h, self.w_down)
        return ops.einsum("bsed,bse->bsd", out, dispatch), logits


def test_top_k_moe_routing_one_hot_dispatch(tmp_path):
    keras.utils.set_random_seed(0)
    x = keras.Input((None, 8))
    out, logits = TopKMoE()(x)
    model = keras.Model(x, [out, logits])
    rng = np.random.default_rng(0)
    calls = [rng.normal(size=(2, 5, 8)).astype("float32"), rng.normal(size=(1, 9, 8)).astype("float32")]
    _assert_serve_matches(model, calls, tmp_path, rtol=1e-5)


def _moe_gather_scatter(x, router, w_in, w_out, k=2):
    """Sparse MoE dispatch as GPT-OSS/Switch-style kernels do: flatten the tokens, top-k experts per token,
    gather each (token, expert) pair's expert weights, batched matmuls, weights from a softmax of the top-k logits,
    and the pairs summed back onto their tokens (unsorted_segment_sum and tensor_scatter_nd_add)."""
    d = tf.shape(x)[-1]
    tokens = tf.reshape(x, [-1, d])
    top_logits, top_idx = tf.math.top_k(tf.matmul(tokens, router), k=k)
    weights = tf.nn.softmax(top_logits, axis=-1)
    pair_expert = tf.reshape(top_idx, [-1])
    pair_token = tf.repeat(tf.range(tf.shape(tokens)[0]), k)
    h = tf.nn.gelu(tf.einsum("pd,pdf->pf", tf.gather(tokens, pair_token), tf.gather(w_in, pair_expert)))
    pair_out = tf.einsum("pf,pfd->pd", h, tf.gather(w_out, pair_expert)) * tf.reshape(weights, [-1, 1])
    summed = tf.math.unsorted_segment_sum(pair_out, pair_token, tf.shape(tokens)[0])
    scattered = tf.tensor_scatter_nd_add(tf.zeros_like(tokens), pair_token[:, None], pair_out)
    counts = tf.math.bincount(pair_expert, minlength=4, maxlength=4)
    return tf.reshape(summed, tf.shape(x)), tf.reshape(scattered, tf.shape(x)), counts


@JIT
def test_top_k_moe_gather_scatter_dispatch(jit):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 6)).astype("float32")
    router = rng.normal(size=(6, 4)).astype("float32")
    w_in, w_out = rng.normal(size=(4, 6, 8)).astype("float32"), rng.normal(size=(4, 8, 6)).astype("float32")
    assert_matches_tf(
        _moe_gather_scatter, [x, router, w_in, w_out], shapes=[(None, None, 6), None, None, None], rtol=1e-5, jit=jit
    )


def _moe_boolean_mask_dispatch(x, router):
    """Top-1 routing with per-expert token lists of run-time length (tf.where + gather + scatter_nd): the
    data-dependent shapes run op by op."""
    top = tf.argmax(tf.matmul(x, router), axis=-1, output_type=tf.int32)
    out = tf.zeros_like(x)
    for e in range(3):
        idx = tf.where(tf.equal(top, e))
        scale = tf.cast(e + 1, tf.float32)
        out = tf.tensor_scatter_nd_update(out, idx, tf.gather_nd(x, idx) * scale)
    return out


def test_top_1_moe_with_run_time_token_lists():
    rng = np.random.default_rng(4)
    x, router = rng.normal(size=(7, 4)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerFallbackWarning)
        assert_matches_tf(_moe_boolean_mask_dispatch, [x, router], shapes=[(None, 4), None], rtol=1e-6)


def _t5_relative_buckets(queries, keys):
    """T5's bidirectional relative position buckets: exact for small distances, log-spaced beyond (int -> float
    log -> floor -> int), clipped to the last bucket."""
    num_buckets, max_distance = 8, 16
    rel = tf.range(tf.shape(keys)[1])[None, :] - tf.range(tf.shape(queries)[1])[:, None]
    half = num_buckets // 2
    bucket = tf.cast(rel > 0, tf.int32) * half
    rel = tf.abs(rel)
    max_exact = half // 2
    large = max_exact + tf.cast(
        tf.math.log(tf.cast(rel, tf.float32) / max_exact) / np.log(max_distance / max_exact) * (half - max_exact),
        tf.int32,
    )
    large = tf.minimum(large, half - 1)
    return bucket + tf.where(rel < max_exact, rel, large)


@JIT
def test_t5_relative_position_buckets(jit):
    q, k = np.zeros((1, 5), np.float32), np.zeros((1, 40), np.float32)
    assert_matches_tf(_t5_relative_buckets, [q, k], shapes=[(1, None), (1, None)], jit=jit)


@JIT
def test_rms_norm_in_bfloat16_and_float16(jit):
    """RMSNorm of a half-precision activation, upcast to float32 as Gemma does, and the half-precision square-mean
    TF computes when the model does not upcast."""

    def norms(x, scale):
        x32 = tf.cast(x, tf.float32)
        up = x32 * tf.math.rsqrt(tf.reduce_mean(tf.square(x32), -1, keepdims=True) + 1e-6) * (1.0 + scale)
        xb = tf.cast(x, tf.bfloat16)
        low = xb * tf.math.rsqrt(tf.reduce_mean(tf.square(xb), -1, keepdims=True) + 1e-6)
        xh = tf.cast(x, tf.float16)
        half = xh * tf.math.rsqrt(tf.reduce_mean(tf.square(xh), -1, keepdims=True) + 1e-6)
        return tf.cast(up, tf.bfloat16), low, half

    rng = np.random.default_rng(5)
    x = (rng.normal(size=(2, 3, 16)) * 4).astype("float32")
    assert_matches_tf(norms, [x, rng.normal(size=(16,)).astype("float32")], rtol=1e-2, jit=jit)


def _cached_decode(prompt, table, seed, run_time_start):
    """keras_hub's generate_step in miniature: a tf.while_loop from the first padding position (or from 1) to the
    end, a key/value cache written one position at a time with keras.ops.slice_update (XlaDynamicUpdateSlice under
    a run-time index), attention over the cache masked to the positions written so far (tf.range of the captured
    sequence length), and the next token chosen greedily (argmax) and by a seeded stateless categorical draw,
    written back with a where on the padding."""
    batch, length = tf.shape(prompt)[0], tf.shape(prompt)[1]
    start = tf.reduce_min(tf.reduce_sum(tf.cast(prompt > 0, tf.int32), axis=1)) if run_time_start else 1
    cache = tf.zeros([batch, length, 8])

    def body(i, tokens, sampled, cache):
        x = tf.gather(table, tokens[:, i - 1])  # (batch, 8)
        cache = ops.slice_update(cache, [0, i - 1, 0], x[:, None, :])
        scores = tf.einsum("bd,bsd->bs", x, cache)
        scores = tf.where(tf.range(length)[None, :] < i, scores, -1e9)
        h = tf.einsum("bs,bsd->bd", tf.nn.softmax(scores), cache)
        logits = tf.matmul(h, table, transpose_b=True)
        greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
        draw = tf.random.stateless_categorical(logits, 1, seed=seed + i, dtype=tf.int32)[:, 0]
        keep = tokens[:, i] > 0
        tokens = tf.tensor_scatter_nd_update(tf.transpose(tokens), [[i]], [tf.where(keep, tokens[:, i], greedy)])
        sampled = tf.tensor_scatter_nd_update(tf.transpose(sampled), [[i]], [tf.where(keep, sampled[:, i], draw)])
        return i + 1, tf.transpose(tokens), tf.transpose(sampled), cache

    _, tokens, sampled, cache = tf.while_loop(lambda i, *_: i < length, body, (start, prompt, prompt, cache))
    return tokens, sampled, cache


@JIT
@pytest.mark.parametrize("run_time_start", [True, False], ids=["run_time_trips", "static_trips"])
def test_kv_cache_decode_loop_with_greedy_and_sampled_tokens(run_time_start, jit):
    """Under jit the loop compiles (lax.while_loop, or lax.scan when the trip count is static): the sequence
    length the body reads through tf.range is a loop input the body passes through unchanged, so it stays a
    trace-time value. Before, it was carried as a run-time value and the whole function ran op by op."""
    rng = np.random.default_rng(6)
    prompt = np.array([[3, 7, 2, 0, 0, 0, 0], [5, 1, 0, 0, 0, 0, 0]], np.int32)
    table = rng.normal(size=(10, 8)).astype("float32")
    seed = np.array([4, 2], np.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerFallbackWarning)
        assert_matches_tf(
            lambda p, t, s: _cached_decode(p, t, s, run_time_start),
            [prompt, table, seed],
            shapes=[(None, None), None, None],
            rtol=1e-5,
            jit=jit,
        )
