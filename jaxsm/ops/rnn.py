"""Fused RNN cells of TF1-era graphs (tf.raw_ops.LSTMBlockCell, BlockLSTM/V2, GRUBlockCell) and their gradient
ops (LSTMBlockCellGrad, BlockLSTMGrad/V2, GRUBlockCellGrad), computed from the forward activations as TF does.

Semantics from the op docs in tensorflow/core/ops/rnn_ops.cc and the kernels in tensorflow/core/kernels/rnn/.
"""

from __future__ import annotations

import jax
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


def _lstm_bprop(x, cs_prev, h_prev, w, wci, wcf, wco, i, cs, f, o, ci, co, cs_grad, h_grad, *, peephole, layout):
    """One step of TF's LSTM backprop from the forward activations (tensorflow/core/kernels/rnn/lstm_ops.h,
    LSTMBlockCellBprop/BlockLSTMBprop; the cell clip is not differentiated). Returns the gate gradients in the
    weights' gate order, cs_prev's and [x, h_prev]'s gradients and the three peephole gradients."""
    d_o = o * (1 - o) * h_grad * co
    dcs = (1 - co * co) * h_grad * o + cs_grad
    if peephole:
        dcs = dcs + d_o * wco
    dci = (1 - ci * ci) * dcs * i
    df = f * (1 - f) * dcs * cs_prev
    di = i * (1 - i) * dcs * ci
    parts = {"i": di, "c": dci, "f": df, "o": d_o}
    dgates = jnp.concatenate([parts[g] for g in layout], axis=1)
    cs_prev_grad = dcs * f
    zeros = jnp.zeros_like(wci)
    peep = (zeros, zeros, zeros)
    if peephole:
        cs_prev_grad = cs_prev_grad + di * wci + df * wcf
        peep = (jnp.sum(di * cs_prev, axis=0), jnp.sum(df * cs_prev, axis=0), jnp.sum(d_o * cs, axis=0))
    xh_grad = jnp.matmul(dgates, jnp.transpose(w), precision=precision())
    return dgates, cs_prev_grad, xh_grad, peep


@op("LSTMBlockCellGrad")
def lstm_block_cell_grad(ctx, x, cs_prev, h_prev, w, wci, wcf, wco, b, i, cs, f, o, ci, co, cs_grad, h_grad):
    """Outputs cs_prev_grad, dicfo (gate gradients, i c f o) and the peephole gradients (zeros without them)."""
    peephole = bool(ctx.attr("use_peephole", False))
    dgates, cs_prev_grad, _, peep = _lstm_bprop(
        x, cs_prev, h_prev, w, wci, wcf, wco, i, cs, f, o, ci, co, cs_grad, h_grad, peephole=peephole, layout="icfo"
    )
    return (cs_prev_grad, dgates, *peep)


def _block_lstm_grad(
    ctx, seq_len_max, x, cs_prev, h_prev, w, wci, wcf, wco, b, i, cs, f, o, ci, co, h, cs_grad, h_grad, layout: str
):
    """TF's BlockLSTMGrad(V2) (tensorflow/core/kernels/rnn/lstm_ops.cc): backprop from step seq_len_max - 1 down
    to 0, carrying cs/h gradients; later steps get a zero x gradient and pass their cs/h gradients nowhere."""
    peephole = bool(ctx.attr("use_peephole", False))
    cs_prevs = jnp.concatenate([cs_prev[None], cs[:-1]])
    h_prevs = jnp.concatenate([h_prev[None], h[:-1]])
    n_in = x.shape[2]

    def step(carry, xs):
        dcs_next, dh_next, dw, db, dpeep = carry
        t, x_t, csp, hp, i_t, cs_t, f_t, o_t, ci_t, co_t, csg, hg = xs
        dgates, dcs_prev, xh_grad, peep = _lstm_bprop(
            x_t,
            csp,
            hp,
            w,
            wci,
            wcf,
            wco,
            i_t,
            cs_t,
            f_t,
            o_t,
            ci_t,
            co_t,
            dcs_next + csg,
            dh_next + hg,
            peephole=peephole,
            layout=layout,
        )
        xh = jnp.concatenate([x_t, hp], axis=1)
        new = (
            dcs_prev,
            xh_grad[:, n_in:],
            dw + jnp.matmul(jnp.transpose(xh), dgates, precision=precision()),
            db + jnp.sum(dgates, axis=0),
            tuple(a + p for a, p in zip(dpeep, peep, strict=True)),
        )
        live = t < seq_len_max
        carry = jax.tree.map(lambda n, c: jnp.where(live, n, c), new, carry)
        return carry, jnp.where(live, xh_grad[:, :n_in], jnp.zeros_like(x_t))

    zeros_p = (jnp.zeros_like(wci),) * 3
    init = (jnp.zeros_like(cs_prev), jnp.zeros_like(h_prev), jnp.zeros_like(w), jnp.zeros_like(b), zeros_p)
    xs = (jnp.arange(x.shape[0]), x, cs_prevs, h_prevs, i, cs, f, o, ci, co, cs_grad, h_grad)
    (dcs, dh, dw, db, dpeep), dx = lax.scan(step, init, xs, reverse=True)
    return (dx, dcs, dh, dw, *dpeep, db)


@op("BlockLSTMGrad")
def block_lstm_grad(ctx, *args):
    return _block_lstm_grad(ctx, *args, layout="icfo")


@op("BlockLSTMGradV2")
def block_lstm_grad_v2(ctx, *args):
    return _block_lstm_grad(ctx, *args, layout="ifco")


@op("GRUBlockCellGrad")
def gru_block_cell_grad(ctx, x, h_prev, w_ru, w_c, b_ru, b_c, r, u, c, d_h):
    """TF's GRUBlockCellBprop (tensorflow/core/kernels/rnn/gru_ops.h): d_x, d_h_prev, d_c_bar, d_r_bar_u_bar."""
    n_in = x.shape[1]
    d_c_bar = d_h * (1 - u) * (1 - c * c)
    d_u_bar = d_h * (h_prev - c) * u * (1 - u)
    comp2 = jnp.matmul(d_c_bar, jnp.transpose(w_c), precision=precision())
    d_hr = comp2[:, n_in:]
    d_r_bar_u_bar = jnp.concatenate([(d_hr * h_prev * r) * (1 - r), d_u_bar], axis=1)
    comp1 = jnp.matmul(d_r_bar_u_bar, jnp.transpose(w_ru), precision=precision())
    d_x = (comp1 + comp2)[:, :n_in]
    d_h_prev = comp1[:, n_in:] + d_hr * r + d_h * u
    return d_x, d_h_prev, d_c_bar, d_r_bar_u_bar
