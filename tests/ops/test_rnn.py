"""Fused RNN cell ops (TF1-era graphs) against TF."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from tests.tfcompare import assert_matches_tf  # noqa: E402

raw = tf.raw_ops
B, I, H, T = 3, 4, 5, 6


def _r(shape, seed):
    return np.random.default_rng(seed).normal(scale=0.5, size=shape).astype(np.float32)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("peephole,clip,forget", [(False, 3.0, 1.0), (True, 0.5, 0.0), (True, -1.0, 2.0)])
def test_lstm_block_cell(peephole, clip, forget, jit):
    args = [
        _r((B, I), 0),
        _r((B, H), 1),
        _r((B, H), 2),
        _r((I + H, 4 * H), 3),
        _r((H,), 4),
        _r((H,), 5),
        _r((H,), 6),
        _r((4 * H,), 7),
    ]

    def fn(x, cs, h, w, wci, wcf, wco, b):
        return raw.LSTMBlockCell(
            x=x,
            cs_prev=cs * 4.0,
            h_prev=h,
            w=w,
            wci=wci,
            wcf=wcf,
            wco=wco,
            b=b,
            forget_bias=forget,
            cell_clip=clip,
            use_peephole=peephole,
        )

    assert_matches_tf(fn, args, rtol=1e-5, atol=1e-6, jit=jit)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("seq_len_max", [6, 4])
def test_block_lstm(v2, seq_len_max, jit):
    args = [
        np.int64(seq_len_max),
        _r((T, B, I), 0),
        _r((B, H), 1),
        _r((B, H), 2),
        _r((I + H, 4 * H), 3),
        _r((H,), 4),
        _r((H,), 5),
        _r((H,), 6),
        _r((4 * H,), 7),
    ]
    op = raw.BlockLSTMV2 if v2 else raw.BlockLSTM

    def fn(n, x, cs, h, w, wci, wcf, wco, b):
        kw = dict(seq_len_max=n, x=x, cs_prev=cs, h_prev=h, w=w, wci=wci, wcf=wcf, wco=wco, b=b, use_peephole=True)
        outs = op(**kw) if v2 else op(forget_bias=1.0, cell_clip=2.0, **kw)
        # past seq_len_max TF zeroes cs and h (outputs 1 and 6) but leaves the gate outputs uninitialized
        return [o if k in (1, 6) else o[:seq_len_max] for k, o in enumerate(outs)]

    assert_matches_tf(fn, args, rtol=1e-5, atol=1e-6, jit=jit)


@pytest.mark.parametrize("jit", [True, False])
def test_gru_block_cell(jit):
    args = [_r((B, I), 0), _r((B, H), 1), _r((I + H, 2 * H), 2), _r((I + H, H), 3), _r((2 * H,), 4), _r((H,), 5)]

    def fn(x, h, w_ru, w_c, b_ru, b_c):
        return raw.GRUBlockCell(x=x, h_prev=h, w_ru=w_ru, w_c=w_c, b_ru=b_ru, b_c=b_c)

    assert_matches_tf(fn, args, rtol=1e-5, atol=1e-6, jit=jit)


def _lstm_weights():
    return [_r((I + H, 4 * H), 3), _r((H,), 4), _r((H,), 5), _r((H,), 6), _r((4 * H,), 7)]


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("peephole", [False, True])
def test_lstm_block_cell_grad(peephole, jit):
    args = [_r((B, I), 0), _r((B, H), 1), _r((B, H), 2), *_lstm_weights(), _r((B, H), 8), _r((B, H), 9)]

    def fn(x, cs, h, w, wci, wcf, wco, b, cs_grad, h_grad):
        cell = dict(x=x, cs_prev=cs, h_prev=h, w=w, wci=wci, wcf=wcf, wco=wco, b=b)
        i, cs_out, f, o, ci, co, _ = raw.LSTMBlockCell(**cell, cell_clip=-1.0, use_peephole=peephole)
        return raw.LSTMBlockCellGrad(
            **cell, i=i, cs=cs_out, f=f, o=o, ci=ci, co=co, cs_grad=cs_grad, h_grad=h_grad, use_peephole=peephole
        )

    assert_matches_tf(fn, args, rtol=1e-5, atol=1e-6, jit=jit)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("peephole,seq_len_max", [(False, 6), (True, 4), (True, 0)])
def test_block_lstm_grad(v2, peephole, seq_len_max, jit):
    args = [np.int64(seq_len_max), _r((T, B, I), 0), _r((B, H), 1), _r((B, H), 2), *_lstm_weights()]
    args += [_r((T, B, H), 8), _r((T, B, H), 9)]
    forward, grad = (raw.BlockLSTMV2, raw.BlockLSTMGradV2) if v2 else (raw.BlockLSTM, raw.BlockLSTMGrad)

    def fn(n, x, cs, h, w, wci, wcf, wco, b, cs_grad, h_grad):
        cell = dict(seq_len_max=n, x=x, cs_prev=cs, h_prev=h, w=w, wci=wci, wcf=wcf, wco=wco, b=b)
        i, cs_out, f, o, ci, co, h_out = forward(**cell, cell_clip=-1.0, use_peephole=peephole)
        outs = dict(i=i, cs=cs_out, f=f, o=o, ci=ci, co=co, h=h_out, cs_grad=cs_grad, h_grad=h_grad)
        return grad(**cell, **outs, use_peephole=peephole)

    assert_matches_tf(fn, args, rtol=1e-5, atol=1e-5, jit=jit)


@pytest.mark.parametrize("jit", [True, False])
def test_gru_block_cell_grad(jit):
    args = [_r((B, I), 0), _r((B, H), 1), _r((I + H, 2 * H), 2), _r((I + H, H), 3), _r((2 * H,), 4), _r((H,), 5)]
    args.append(_r((B, H), 6))

    def fn(x, h, w_ru, w_c, b_ru, b_c, d_h):
        cell = dict(x=x, h_prev=h, w_ru=w_ru, w_c=w_c, b_ru=b_ru, b_c=b_c)
        r, u, c, _ = raw.GRUBlockCell(**cell)
        return raw.GRUBlockCellGrad(**cell, r=r, u=u, c=c, d_h=d_h)

    assert_matches_tf(fn, args, rtol=1e-5, atol=1e-6, jit=jit)
