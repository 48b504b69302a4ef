"""jaxsm.ops.quantize against TF: QuantizeAndDequantizeV2/V3/V4 (every attr, per-channel axes, halfway points),
QuantizeAndDequantizeV4Grad, QuantizeV2 and Dequantize for each quantized type and mode, and the invalid
attrs/ranges TF rejects."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import JaxsmError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

R = tf.raw_ops
JIT = pytest.mark.parametrize("jit", [True, False])

# Halfway points of the 8-bit grids of [-1, 1] and [-2, 3] (k / 127.5 and so on), NaN-free; shape [2, 3, 4].
_BASE = np.array([-2.5, -1, -0.5, -1 / 254, 0, 1 / 254, 3 / 254, 0.3, 0.5, 5 / 255, 1, 2.75])
X = np.concatenate([_BASE, _BASE + 0.25]).reshape(2, 3, 4)


def _qdq_variants(x):
    """A dict of QuantizeAndDequantizeV2/V4 results over the attrs that change the arithmetic."""
    out = {}
    for signed in (True, False):
        for bits in (3, 8):
            for rnd in ("HALF_TO_EVEN", "HALF_UP"):
                for narrow in (False, True):
                    for given in (False, True):
                        for axis in (-1, 0, 2) if not given else (-1,):
                            n = 1 if axis == -1 else x.shape[axis]
                            lo = tf.constant(-1.0 if axis == -1 else np.linspace(-1, -0.2, n), x.dtype)
                            hi = tf.constant(1.0 if axis == -1 else np.linspace(0.5, 2, n), x.dtype)
                            op = R.QuantizeAndDequantizeV2 if bits == 8 else R.QuantizeAndDequantizeV4
                            key = f"{int(signed)}{bits}{rnd[5]}{int(narrow)}{int(given)}{axis}"
                            out[key] = op(
                                input=x,
                                input_min=lo,
                                input_max=hi,
                                signed_input=signed,
                                num_bits=bits,
                                range_given=given,
                                round_mode=rnd,
                                narrow_range=narrow,
                                axis=axis,
                            )
    return out


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantize_and_dequantize_attrs(dtype, jit):
    assert_matches_tf(_qdq_variants, [X.astype(dtype)], rtol=0, jit=jit)


@JIT
@pytest.mark.parametrize(
    "x",
    [
        np.float32(0.37),
        np.zeros((0, 3), np.float32),
        np.array([0.0, 0.0], np.float64),
        np.array([0.5, np.nan, -np.inf], np.float32),
        np.array([[1.0, np.inf], [-1.0, 0.25]], np.float32),
    ],
    ids=["rank0", "empty", "zeros", "nan", "inf"],
)
def test_quantize_and_dequantize_edges(x, jit):
    def fn(x):
        given = R.QuantizeAndDequantizeV2(input=x, input_min=-0.5, input_max=0.5, range_given=True, num_bits=4)
        auto = R.QuantizeAndDequantizeV4(input=x, input_min=0.0, input_max=0.0, num_bits=4, round_mode="HALF_UP")
        if x.shape.rank == 0:
            return given, auto
        zeros = tf.zeros(x.shape[-1:], x.dtype)
        last = R.QuantizeAndDequantizeV2(input=x, input_min=zeros, input_max=zeros, axis=x.shape.rank - 1, num_bits=3)
        return given, auto, last

    assert_matches_tf(fn, [x], rtol=0, jit=jit)


@JIT
def test_quantize_and_dequantize_v3_and_grad(jit):
    def fn(x, g):
        # V2/V4 in TF 2.21 reject per-channel given ranges ("input_min must be a scalar"); V3 takes them.
        v3 = R.QuantizeAndDequantizeV3(
            input=x, input_min=[-1.0, -0.5, 0.0], input_max=[1.0, 0.5, 2.0], num_bits=5, range_given=True, axis=1
        )
        v3_auto = R.QuantizeAndDequantizeV3(input=x, input_min=0.0, input_max=0.0, num_bits=6, range_given=False)
        grad = R.QuantizeAndDequantizeV4Grad(gradients=g, input=x, input_min=-0.5, input_max=0.5)
        grad_axis = R.QuantizeAndDequantizeV4Grad(
            gradients=g, input=x, input_min=[-1.0, -0.5, 0.0], input_max=[1.0, 0.5, 0.25], axis=1
        )
        return v3, v3_auto, grad, grad_axis

    x = np.linspace(-1.5, 1.5, 12, dtype=np.float32).reshape(4, 3)
    assert_matches_tf(fn, [x, np.arange(12, dtype=np.float32).reshape(4, 3)], rtol=0, jit=jit)


def test_quantize_and_dequantize_gradient_through_tape():
    """tf.quantization.quantize_and_dequantize_v2's registered gradient is QuantizeAndDequantizeV4Grad."""

    def fn(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.quantization.quantize_and_dequantize_v2(x, -1.0, 1.0, range_given=True, axis=None)
        return tape.gradient(y, x)

    assert_matches_tf(fn, [np.array([-2.0, -1.0, 0.3, 1.0, 1.5], np.float32)], rtol=0)


_QTYPES = [tf.quint8, tf.qint8, tf.quint16, tf.qint16, tf.qint32]


def _quantize_variants(x, qtype):
    out = {}
    for mode, rnd, narrow in [
        ("MIN_COMBINED", "HALF_AWAY_FROM_ZERO", False),
        ("MIN_FIRST", "HALF_AWAY_FROM_ZERO", False),
        ("SCALED", "HALF_AWAY_FROM_ZERO", False),
        ("SCALED", "HALF_TO_EVEN", True),
    ]:
        if qtype == tf.qint32 and mode != "SCALED":
            continue  # see gaps.py: TF rounds those scales in double
        for lo, hi in [(-1.0, 1.0), (0.5, 3.0), (-2.0, -1.0), (0.0, 0.0), (-0.3, 7.0)]:
            if mode == "SCALED" and hi < 0:
                continue  # a subnormal scale, which TF's CPU flushes to zero (see gaps.py)
            q, qlo, qhi = R.QuantizeV2(
                input=x, min_range=lo, max_range=hi, T=qtype, mode=mode, round_mode=rnd, narrow_range=narrow
            )
            deq = R.Dequantize(input=q, min_range=qlo, max_range=qhi, mode=mode, narrow_range=narrow)
            key = f"{mode}_{rnd[5]}_{lo}_{hi}"
            out[key] = (q, qlo, qhi, deq)
    return out


@JIT
def test_quantize_v2_dequantize(jit):
    x = np.concatenate([np.linspace(-3, 8, 45), [-1, 1, 0.5, -0.5, 1 / 255, 0.0, -0.8, 2 / 3]]).astype(np.float32)
    assert_matches_tf(lambda x: {t.name: _quantize_variants(x, t) for t in _QTYPES}, [x], rtol=0, jit=jit)


@JIT
def test_quantize_v2_dequantize_run_time_ranges(jit):
    """Ranges as inputs: compiled, the scales are run-time values (XLA must not rewrite their divisions)."""

    def fn(x, lo, hi):
        out = {}
        for t in _QTYPES[:4]:
            for mode in ("MIN_COMBINED", "MIN_FIRST", "SCALED"):
                q, qlo, qhi = R.QuantizeV2(input=x, min_range=lo, max_range=hi, T=t, mode=mode)
                out[f"{t.name}_{mode}"] = (q, qlo, qhi, R.Dequantize(input=q, min_range=qlo, max_range=qhi, mode=mode))
        return out

    x = np.concatenate([np.linspace(-3, 8, 101), np.random.default_rng(0).standard_normal(100) * 3]).astype(np.float32)
    for lo, hi in [(-1.0, 1.0), (-0.3, 7.0)]:
        assert_matches_tf(fn, [x, np.float32(lo), np.float32(hi)], rtol=0, jit=jit)


@JIT
def test_quantize_v2_per_channel(jit):
    def fn(x):
        q, lo, hi = R.QuantizeV2(
            input=x,
            min_range=[-1.0, 0.0, -4.0],
            max_range=[1.0, 2.0, 0.5],
            T=tf.qint8,
            mode="SCALED",
            axis=1,
            ensure_minimum_range=0.0,
        )
        q2, lo2, hi2 = R.QuantizeV2(
            input=x,
            min_range=[-1.0, 0.0, -4.0],
            max_range=[1.0, 2.0, 0.5],
            T=tf.quint8,
            mode="MIN_COMBINED",
            axis=-2 + 3,
        )
        deq = R.Dequantize(input=q, min_range=lo, max_range=hi, mode="SCALED", axis=1)
        deq2 = R.Dequantize(input=q2, min_range=lo2, max_range=hi2, mode="MIN_COMBINED", axis=1, dtype=tf.bfloat16)
        return q, lo, hi, q2, lo2, hi2, deq, deq2

    assert_matches_tf(fn, [np.linspace(-5, 5, 24, dtype=np.float32).reshape(2, 3, 4)], rtol=0, jit=jit)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: R.QuantizeAndDequantizeV2(input=x, input_min=1.0, input_max=-1.0, range_given=True),
        lambda x: R.QuantizeAndDequantizeV2(input=x, input_min=-1.0, input_max=1.0, num_bits=62),
        lambda x: R.QuantizeAndDequantizeV4(input=x, input_min=[-1, 0.0], input_max=[1, 1.0], axis=0, range_given=True),
        lambda x: R.QuantizeV2(input=x, min_range=1.0, max_range=-1.0, T=tf.qint8)[0],
        lambda x: R.QuantizeV2(input=x, min_range=-1.0, max_range=1.0, T=tf.qint8, round_mode="HALF_TO_EVEN")[0],
        lambda x: R.QuantizeV2(input=x, min_range=[-1.0, 0], max_range=[1.0, 1], T=tf.qint8, mode="MIN_FIRST", axis=0)[
            0
        ],
    ],
    ids=[
        "min>max",
        "num_bits",
        "per_channel_v4",
        "v2_min>max",
        "round_mode",
        "min_first_axis",
    ],
)
def test_invalid_arguments_raise(fn):
    x = np.array([0.5, -0.25], np.float32)
    with pytest.raises(tf.errors.OpError):
        fn(tf.constant(x))
    export_dir, _ = save_function(fn, [x])
    with pytest.raises(JaxsmError):
        run_jaxsm(export_dir, [x])
