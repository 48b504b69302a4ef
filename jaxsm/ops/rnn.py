"""Fused RNN cells of TF1-era graphs (tf.raw_ops.LSTMBlockCell, BlockLSTM/V2, GRUBlockCell).

Semantics from the op docs in tensorflow/core/ops/rnn_ops.cc and the kernels in tensorflow/core/kernels/rnn/.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax, nn

from jaxsm.ops.registry import op, precision


def _lstm_step(x, cs_prev, h_prev, w, wci, wcf, wco, b, *, forget_bias, cell_clip, use_peephole, layout):
    """One LSTM step; ``layout`` is the gate order of ``w``/``b`` ("icfo" for BlockLSTM, "ifco" for V2)."""
    gates = jnp.matmul(jnp.concatenate([x, h_prev], axis=1), w, precision=precision()) + b
    parts = dict(zip(layout, jnp.split(gates, 4, axis=1), strict=True))
    i, ci, f, o = parts["i"], parts["c"], parts["f"], parts["o"]
    if use_peephole:
        i = i + cs_prev * wci
        f = f + cs_prev * wcf
    i = nn.sigmoid(i)
    f = nn.sigmoid(f + forget_bias)
    ci = jnp.tanh(ci)
    cs = ci * i + cs_prev * f
    if cell_clip > 0:
        cs = jnp.clip(cs, -cell_clip, cell_clip)
    if use_peephole:
        o = o + cs * wco
    o = nn.sigmoid(o)
    co = jnp.tanh(cs)
    return i, cs, f, o, ci, co, co * o


def _lstm_attrs(ctx, v2: bool) -> dict:
    return dict(
        forget_bias=0.0 if v2 else float(ctx.attr("forget_bias", 1.0)),
        cell_clip=float(ctx.attr("cell_clip", 0.0 if v2 else 3.0)),
        use_peephole=bool(ctx.attr("use_peephole", False)),
        layout="ifco" if v2 else "icfo",
    )


@op("LSTMBlockCell")
def lstm_block_cell(ctx, x, cs_prev, h_prev, w, wci, wcf, wco, b):
    return _lstm_step(x, cs_prev, h_prev, w, wci, wcf, wco, b, **_lstm_attrs(ctx, v2=False))


def _block_lstm(ctx, seq_len_max, x, cs_prev, h_prev, w, wci, wcf, wco, b, v2: bool):
    """The cell over time: steps at or past ``seq_len_max`` output zeros and carry the state unchanged."""
    attrs = _lstm_attrs(ctx, v2)

    def step(carry, xs):
        cs, h = carry
        t, xt = xs
        outs = _lstm_step(xt, cs, h, w, wci, wcf, wco, b, **attrs)
        live = t < seq_len_max
        outs = tuple(jnp.where(live, o, jnp.zeros_like(o)) for o in outs)
        return (jnp.where(live, outs[1], cs), jnp.where(live, outs[6], h)), outs

    _, outs = lax.scan(step, (cs_prev, h_prev), (jnp.arange(x.shape[0]), x))
    return list(outs)


@op("BlockLSTM")
def block_lstm(ctx, seq_len_max, x, cs_prev, h_prev, w, wci, wcf, wco, b):
    return _block_lstm(ctx, seq_len_max, x, cs_prev, h_prev, w, wci, wcf, wco, b, v2=False)


@op("BlockLSTMV2")
def block_lstm_v2(ctx, seq_len_max, x, cs_prev, h_prev, w, wci, wcf, wco, b):
    return _block_lstm(ctx, seq_len_max, x, cs_prev, h_prev, w, wci, wcf, wco, b, v2=True)


@op("GRUBlockCell")
def gru_block_cell(ctx, x, h_prev, w_ru, w_c, b_ru, b_c):
    ru = nn.sigmoid(jnp.matmul(jnp.concatenate([x, h_prev], axis=1), w_ru, precision=precision()) + b_ru)
    r, u = jnp.split(ru, 2, axis=1)
    c = jnp.tanh(jnp.matmul(jnp.concatenate([x, h_prev * r], axis=1), w_c, precision=precision()) + b_c)
    return r, u, c, (1 - u) * c + u * h_prev
