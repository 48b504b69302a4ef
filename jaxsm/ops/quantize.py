"""Quantization ops: fake quantization (``QuantizeAndDequantize`` v1-V4 and V4's gradient, the
``FakeQuantWithMinMax*Gradient`` ops of QAT training graphs)
and the quantized-type conversions ``QuantizeV2``/``Dequantize`` (quint8, qint8, quint16, qint16, qint32, which
jaxsm holds as the plain integer arrays of the same width).

Every formula follows TF's CPU kernels step by step in the same float type (including where TF rounds, clamps
and nudges ranges), so results are bit-exact, not merely close.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsm.graph.values import to_static
from jaxsm.ops.registry import op

# -- shared helpers -------------------------------------------------------------------------------------------
#
# Known ranges are computed in NumPy (TF's scalar C++ arithmetic, rounded step by step); run-time ones in jnp,
# guarded against XLA's rewrites: a division by a constant becomes a multiplication by its reciprocal, and
# LLVM fuses a multiply and a following add into an FMA, skipping the product's rounding.


def _xp(*values):
    """NumPy when every value is known now, else jax.numpy."""
    return np if all(to_static(v) is not None for v in values) else jnp


def _div(a, b):
    """A true division also when ``b`` is a constant of the compiled computation: the divisor gets a run-time
    zero added (XLA folds neither ``v * 0`` for floats nor sees through it; an optimization barrier it does).
    The quotient is made opaque too (``rounded``), or XLA rewrites ``x * (a / b)`` as ``(x * a) / b``."""
    if isinstance(a, np.ndarray | np.generic) and isinstance(b, np.ndarray | np.generic):
        with np.errstate(divide="ignore", invalid="ignore"):
            return a / b
    a = jnp.asarray(a)
    return rounded(a / (b + jnp.where(jnp.isfinite(a), a, jnp.zeros_like(a)) * np.zeros((), a.dtype)))


def rounded(product):
    """``product`` rounded to its float type before a following add. The select is always ``product`` (NaN takes
    the other arm, also NaN), but LLVM cannot prove it, so it cannot contract the multiply and the add into an
    FMA; a select on ``product == product`` or an optimization barrier it sees through."""
    if not isinstance(product, jax.Array):
        return product
    inf = np.asarray(np.inf, product.dtype)
    return jnp.where(product <= jnp.abs(product) + inf, product, product + product)


def _round_half_away(v, xp=jnp):
    """std::round (Eigen's ``.round()``): exact, unlike floor(|v| + 0.5), which rounds 0.49999997 up."""
    t = xp.trunc(v)
    return xp.where(xp.abs(v - t) >= 0.5, t + xp.sign(v), t)


def _round_half_up(v):
    """TF's scalar_round_up_op (cwise_ops.h): floor(v + 0.5), so -5.5 -> -5."""
    return jnp.floor(v + jnp.asarray(0.5, v.dtype))


def _channel_axis(ctx, x) -> int:
    """The ``axis`` attr: -1 for one scale, else a dimension of ``x`` (TF rejects other negative axes)."""
    axis = int(ctx.attr("axis", -1))
    if axis < -1:
        raise ctx.error(f"Axis must be at least -1. Found {axis}")
    if axis >= np.ndim(x):
        raise ctx.error(f"Shape must be at least rank {axis + 1} but is rank {np.ndim(x)}")
    return axis


def _per_channel(xp, v, x, axis: int):
    """A per-channel range vector shaped to broadcast against ``x`` along ``axis``."""
    shape = [1] * np.ndim(x)
    shape[axis] = -1
    return xp.reshape(v, shape)


def _check_range_sizes(ctx, axis: int, depth: int, *ranges) -> None:
    if axis == -1:
        return
    for name, r in zip(("input_min", "input_max"), ranges, strict=True):
        if np.size(r) != depth or np.ndim(r) != 1:
            raise ctx.error(f"{name} has shape {np.shape(r)}, expected [{depth}] to match dim {axis} of the input")


# -- QuantizeAndDequantize ------------------------------------------------------------------------------------


def _simulated_range(lo, hi, signed: bool, num_bits: int, narrow: bool):
    """ComputeQuantizationRange (tensorflow/core/kernels/quantize_and_dequantize_op.h), elementwise over the
    (per-channel) ranges, in the input's float type: the largest scale that maps [lo, hi] into the integer range
    while keeping 0 fixed; the side that does not set the scale is widened. Returns (lo, hi, scale, 1/scale)."""
    xp, dt = _xp(lo, hi), np.dtype(lo.dtype)
    if signed:
        min_q, max_q = -(1 << (num_bits - 1)) + int(narrow), (1 << (num_bits - 1)) - 1
    else:
        min_q, max_q = 0, (1 << num_bits) - 1
    min_qf, max_qf = np.asarray(min_q).astype(dt), np.asarray(max_q).astype(dt)
    big = np.asarray(np.finfo(dt).max, dt)
    with np.errstate(over="ignore", invalid="ignore"):  # as in TF's C++, an overflow is inf, not an error
        from_min = xp.where(min_qf * lo > 0, _div(min_qf, lo), big)
        from_max = xp.where(max_qf * hi > 0, _div(max_qf, hi), big)
        use_min = from_min < from_max
        scale = xp.where(use_min, from_min, from_max)
        inverse = xp.where(use_min, _div(lo, min_qf), _div(hi, max_qf))
        return xp.where(use_min, lo, min_qf * inverse), xp.where(use_min, max_qf * inverse, hi), scale, inverse


def _quantize_and_dequantize(
    ctx, x, input_min, input_max, num_bits: int, round_mode: str, narrow: bool, scalar_range: bool
):
    """QuantizeAndDequantize{OneScale,PerChannel}Impl (quantize_and_dequantize_op.h): without ``range_given`` the
    range is the input's min/max (per channel); with it the input is clamped to the adjusted range first.
    ``scalar_range``: the V2/V4 kernels, which reject non-scalar given ranges."""
    signed = bool(ctx.attr("signed_input", True))
    if not 0 < num_bits < (62 if signed else 63):
        raise ctx.error(f"num_bits is out of range: {num_bits} with signed_input_ {int(signed)}")
    if round_mode not in ("HALF_UP", "HALF_TO_EVEN"):
        raise ctx.error(f"Round mode string must be 'HALF_UP' or 'HALF_TO_EVEN', is '{round_mode}'")
    x = jnp.asarray(x)
    dt = np.dtype(x.dtype)
    axis = _channel_axis(ctx, x)
    # SavedModels leave out attrs at their default, which differs: V3's range_given is True, V2/V4's False.
    range_given = bool(ctx.attr("range_given", not scalar_range))
    if range_given:
        _check_range_sizes(ctx, axis, x.shape[axis] if axis >= 0 else 1, input_min, input_max)
        if scalar_range and np.ndim(input_min) != 0:
            # TF 2.21's V2/V4 kernels reject every non-scalar range, per-channel ones included.
            raise ctx.error("input_min must be a scalar.")
        _check_min_le_max(ctx, axis, input_min, input_max)
        xp = _xp(input_min, input_max)
        lo, hi = xp.asarray(input_min, dt), xp.asarray(input_max, dt)
        if axis == -1:
            lo, hi = xp.reshape(lo, -1)[0], xp.reshape(hi, -1)[0]
        else:
            lo, hi = _per_channel(xp, lo, x, axis), _per_channel(xp, hi, x, axis)
    else:
        dims = tuple(d for d in range(x.ndim) if d != axis)
        # Eigen's reductions start from the type's highest/lowest value, which an empty input leaves in place.
        lo = jnp.min(x, axis=dims, keepdims=True, initial=np.finfo(dt).max)
        hi = jnp.max(x, axis=dims, keepdims=True, initial=np.finfo(dt).min)
    lo, hi, scale, inverse = _simulated_range(lo, hi, signed, num_bits, narrow)
    if range_given:
        x = jnp.maximum(jnp.minimum(x, hi), lo)
    if round_mode == "HALF_TO_EVEN":
        return jnp.round(x * scale) * inverse
    return _round_half_up(rounded(x * scale)) * inverse


def _check_min_le_max(ctx, axis: int, input_min, input_max) -> None:
    lo, hi = to_static(input_min), to_static(input_max)
    if axis == -1 and lo is not None and hi is not None and lo.reshape(-1)[0] > hi.reshape(-1)[0]:
        raise ctx.error(f"Invalid range: input_min {lo.reshape(-1)[0]} > input_max {hi.reshape(-1)[0]}")


@op("QuantizeAndDequantizeV2", "QuantizeAndDequantizeV4", checked=(1, 2))
def quantize_and_dequantize_v2(ctx, x, input_min, input_max):
    num_bits, round_mode = int(ctx.attr("num_bits", 8)), ctx.attr("round_mode", "HALF_TO_EVEN")
    narrow = ctx.attr("narrow_range", False)
    return _quantize_and_dequantize(ctx, x, input_min, input_max, num_bits, round_mode, narrow, scalar_range=True)


@op("QuantizeAndDequantize")
def quantize_and_dequantize_v1(ctx, x):
    """The pre-V2 op (deprecated at GraphDef 22): the given range is the float attrs input_min/input_max."""
    lo, hi = np.float32(ctx.attr("input_min", 0.0)), np.float32(ctx.attr("input_max", 0.0))
    num_bits = int(ctx.attr("num_bits", 8))
    return _quantize_and_dequantize(ctx, x, lo, hi, num_bits, "HALF_TO_EVEN", False, scalar_range=True)


@op("QuantizeAndDequantizeV3", static=(3,), checked=(1, 2))
def quantize_and_dequantize_v3(ctx, x, input_min, input_max, num_bits):
    if np.ndim(num_bits) != 0:
        raise ctx.error(f"Invalid shape. The `num_bits` tensor should be a scalar. Got dimensions: {np.ndim(num_bits)}")
    narrow = ctx.attr("narrow_range", False)
    return _quantize_and_dequantize(ctx, x, input_min, input_max, int(num_bits), "HALF_TO_EVEN", narrow, False)


@op("QuantizeAndDequantizeV4Grad")
def quantize_and_dequantize_v4_grad(ctx, gradients, x, input_min, input_max):
    """The straight-through estimator clipped to [input_min, input_max] (QuantizeAndDequantizeV4GradientOp); the
    range gets zero gradients."""
    x = jnp.asarray(x)
    if np.shape(gradients) != x.shape:
        raise ctx.error("gradient and input must be the same size")
    axis = _channel_axis(ctx, x)
    if axis == -1 and np.ndim(input_min) != 0:
        raise ctx.error("input_min must be a scalar if axis is unspecified")
    _check_range_sizes(ctx, axis, x.shape[axis] if axis >= 0 else 1, input_min, input_max)
    lo, hi = jnp.asarray(input_min, x.dtype), jnp.asarray(input_max, x.dtype)
    if axis >= 0:
        lo, hi = _per_channel(jnp, lo, x, axis), _per_channel(jnp, hi, x, axis)
    inside = (x >= lo) & (x <= hi)
    backprop = jnp.asarray(gradients) * inside.astype(x.dtype)
    return backprop, jnp.zeros(np.shape(input_min), x.dtype), jnp.zeros(np.shape(input_max), x.dtype)


# -- QuantizeV2 / Dequantize ----------------------------------------------------------------------------------

_F32 = np.float32


def _nudged_range(in_lo, in_hi, minimum_range: float):
    """QuantizeV2's range (quantize_op.cc): always containing 0, and at least ``minimum_range`` times the larger
    magnitude (or 1) wide, so that all values never map to one quantized level."""
    xp = _xp(in_lo, in_hi)
    lo = xp.minimum(_F32(0), in_lo)
    eps = rounded(xp.maximum(_F32(1), xp.maximum(xp.abs(in_lo), xp.abs(in_hi))) * _F32(minimum_range))
    return lo, xp.maximum(_F32(0), xp.maximum(in_hi, lo + eps))


def _quantize_min_combined(x, lo, hi, info: np.iinfo):
    """MIN_COMBINED: scale [lo, hi] onto the whole integer range; signed types shift by half of it."""
    scale = _div(_F32(float(info.max) - float(info.min)), hi - lo)
    shifted = rounded((jnp.maximum(jnp.minimum(x, hi), lo) - lo) * scale)
    if info.min < 0:
        return _round_half_away(shifted - _F32((float(info.max) - float(info.min) + 1) / 2))
    # TF's fast path for unsigned types: +0.5 and truncation by the cast.
    return jnp.trunc(shifted + _F32(0.5))


def _quantize_scaled(x, lo, hi, info: np.iinfo, narrow: bool, half_to_even: bool):
    """SCALED: a symmetric scale keeping 0 exact, from whichever side of the range is tighter."""
    xp = _xp(lo, hi)
    min_out, max_out = _F32(info.min + int(narrow)), _F32(info.max)
    big = _F32(np.finfo(np.float32).max)
    from_min = xp.where(min_out * lo > 0, _div(min_out, lo), big)
    from_max = xp.where(max_out * hi > 0, _div(max_out, hi), big)
    scale = xp.minimum(from_min, from_max)
    lo, hi = _div(min_out, scale), _div(max_out, scale)
    v = jnp.maximum(jnp.minimum(x, hi), lo) * scale
    return (jnp.round(v) if half_to_even else _round_half_away(v)), lo, hi


def _quantize_min_first(x, lo, hi, info: np.iinfo):
    """MIN_FIRST: FloatTensorToQuantizedInPlaceUsingEigen (quantization_utils.h), the lowest level at lo: what a
    graph (a SavedModel) runs. TF's eager quint8 kernel rounds ``x * scale - lo * scale`` instead (gaps.py)."""
    xp = _xp(lo, hi)
    range_scale = xp.where(hi == lo, _F32(0), _div(_F32(2**info.bits - 1), hi - lo))
    min_scaled = _round_half_away(rounded(lo * range_scale), xp)
    v = _round_half_away(x * range_scale) - (min_scaled - _F32(info.min))
    lower, upper = max(_F32(info.min), _F32(-2.147483648e09)), min(_F32(info.max), _F32(2.147483520e09))
    return jnp.minimum(jnp.maximum(v, lower), upper)


@op("QuantizeV2", checked=(1, 2))
def quantize_v2(ctx, x, min_range, max_range):
    """QuantizeV2Op (tensorflow/core/kernels/quantize_op.cc): one range, or one per slice along ``axis``."""
    out, x = ctx.dtype("T"), jnp.asarray(x, _F32)
    mode, round_mode = ctx.attr("mode", "MIN_COMBINED"), ctx.attr("round_mode", "HALF_AWAY_FROM_ZERO")
    _check_modes(ctx, mode, round_mode)
    axis = _channel_axis(ctx, x)
    slices = x.shape[axis] if axis >= 0 else 1
    in_lo, in_hi = _quantize_ranges(ctx, x, axis, slices, min_range, max_range)
    if slices > 1 and mode == "MIN_FIRST":
        raise ctx.error("MIN_FIRST mode is not implemented for Quantize with axis != -1.")
    lo, hi = _nudged_range(in_lo, in_hi, float(ctx.attr("ensure_minimum_range", 0.01)))
    info = np.iinfo(out)
    if mode == "MIN_COMBINED":
        q = _quantize_min_combined(x, lo, hi, info)
    elif mode == "MIN_FIRST":
        q = _quantize_min_first(x, lo, hi, info)
    else:
        q, lo, hi = _quantize_scaled(x, lo, hi, info, ctx.attr("narrow_range", False), round_mode == "HALF_TO_EVEN")
    range_shape = () if slices == 1 else np.shape(min_range)
    return _cast_to(q, out), jnp.reshape(lo, range_shape), jnp.reshape(hi, range_shape)


def _cast_to(q, out: np.dtype):
    """TF's float -> qint32 cast is x86's cvttss2si: 2**31 (a SCALED maximum rounds to it) becomes INT_MIN, where
    XLA's convert saturates. Narrower types stay in range."""
    if out.itemsize < 4:
        return q.astype(out)
    return jnp.where(q >= _F32(2**31), np.int32(-(2**31)), q.astype(out))


def _check_modes(ctx, mode: str, round_mode: str) -> None:
    if mode not in ("MIN_COMBINED", "MIN_FIRST", "SCALED"):
        raise ctx.error(f"Mode string must be 'MIN_COMBINED', 'MIN_FIRST', or 'SCALED', is '{mode}'")
    if round_mode not in ("HALF_AWAY_FROM_ZERO", "HALF_TO_EVEN"):
        raise ctx.error(f"Round mode string must be 'HALF_AWAY_FROM_ZERO' or 'HALF_TO_EVEN', is '{round_mode}'")
    if round_mode == "HALF_TO_EVEN" and mode != "SCALED":
        raise ctx.error(f"Round mode 'HALF_TO_EVEN' only supported for mode 'SCALED', but mode is '{mode}'.")


def _quantize_ranges(ctx, x, axis: int, slices: int, min_range, max_range, check: bool = True):
    """The float32 range(s): the first element for one slice (TF reads only that), else broadcast along axis;
    ``check``: QuantizeV2 rejects max < min (Dequantize does not)."""
    if slices > 1 and (np.size(min_range) != slices or np.size(max_range) != slices):
        raise ctx.error(f"min_range and max_range must have {slices} elements (one per slice along axis {axis})")
    xp = _xp(min_range, max_range)
    lo, hi = xp.reshape(xp.asarray(min_range, _F32), -1), xp.reshape(xp.asarray(max_range, _F32), -1)
    if check and xp is np and np.any(hi[:slices] < lo[:slices]):
        raise ctx.error("input_max_range must be larger than input_min_range.")
    if slices == 1:
        return lo[0], hi[0]
    return _per_channel(xp, lo, x, axis), _per_channel(xp, hi, x, axis)


@op("Dequantize")
def dequantize(ctx, x, min_range, max_range):
    """DequantizeOp (tensorflow/core/kernels/dequantize_op.cc), computed in float32 and then cast to ``dtype``."""
    x = jnp.asarray(x)
    info, mode = np.iinfo(np.dtype(x.dtype)), ctx.attr("mode", "MIN_COMBINED")
    axis = _channel_axis(ctx, x)
    slices = x.shape[axis] if axis >= 0 else 1
    if np.size(min_range) != slices or np.size(max_range) != slices:
        raise ctx.error(f"input_min_tensor and input_max_tensor must have {slices} elements (the dequantization axis)")
    if slices > 1 and mode == "MIN_FIRST":
        raise ctx.error("MIN_FIRST mode is not implemented for Dequantize with axis != -1.")
    lo, hi = _quantize_ranges(ctx, x, axis, slices, min_range, max_range, check=False)
    out = ctx.dtype("dtype", np.dtype(np.float32))
    if out != np.float32 and mode != "MIN_COMBINED":
        raise ctx.error(f"When output type is bfloat16, Mode string must be 'MIN_COMBINED', is '{mode}'")
    v = x.astype(_F32)
    if mode == "MIN_COMBINED":
        result = _dequantize_min_combined(v, lo, hi, info)
    elif mode == "MIN_FIRST":
        result = _dequantize_min_first(v, lo, hi, info)
    elif mode == "SCALED":
        result = v * _dequantize_scale(lo, hi, info, ctx.attr("narrow_range", False))
    else:
        raise ctx.error(f"Mode string must be 'MIN_COMBINED', 'MIN_FIRST', or 'SCALED', is '{mode}'")
    return result.astype(out)


def _dequantize_min_combined(v, lo, hi, info: np.iinfo):
    span = _F32(_F32(info.max) - _F32(info.min))
    half = _F32(0) if info.min == 0 else _F32((span + _F32(1)) / _F32(2))
    return rounded((v + half) * _div(hi - lo, span)) + lo


def _dequantize_min_first(v, lo, hi, info: np.iinfo):
    """QuantizedToFloatStruct (quantization_utils.h): lo is snapped to a multiple of the step first."""
    xp = _xp(lo, hi)
    step = _div(hi - lo, _F32(2**info.bits - 1))
    lo_rounded = xp.where(hi == lo, lo, rounded(_round_half_away(_div(lo, step), xp) * step))
    return (lo_rounded - rounded(_F32(info.min) * step)) + rounded(v * step)


def _dequantize_scale(lo, hi, info: np.iinfo, narrow: bool):
    if info.min == 0:
        return _div(hi, _F32(info.max))
    return _xp(lo, hi).maximum(_div(lo, _F32(info.min + int(narrow))), _div(hi, _F32(info.max)))


# -- FakeQuantWithMinMax* gradients (QAT training graphs) ----------------------------------------------------


def _fake_quant_nudged_range(lo, hi, num_bits: int, narrow_range: bool):
    """``Nudge`` in tensorflow/core/kernels/fake_quant_ops_functor.h, in float32: the range moved so that 0 is
    exactly on the quantization grid. Returns (nudged_min, nudged_max)."""
    xp = _xp(lo, hi)
    f32 = np.float32
    qmin, qmax = f32(1 if narrow_range else 0), f32((1 << num_bits) - 1)
    lo, hi = xp.asarray(lo, f32), xp.asarray(hi, f32)
    scale = _div(hi - lo, f32(qmax - qmin))
    from_min = qmin - _div(lo, scale)
    whole = xp.trunc(from_min)
    nearest = whole + xp.where(xp.abs(from_min - whole) >= f32(0.5), xp.sign(from_min), f32(0))  # std::round
    zero = xp.where(from_min < qmin, qmin, xp.where(from_min > qmax, qmax, nearest))
    return rounded((qmin - zero) * scale), rounded((qmax - zero) * scale)


def _check_fake_quant_attrs(ctx) -> tuple[int, bool]:
    num_bits, narrow = int(ctx.attr("num_bits", 8)), bool(ctx.attr("narrow_range", False))
    if not 2 <= num_bits <= 16:
        raise ctx.error(f"num_bits is out of range, expected between 2 and 16, was: {num_bits}")
    return num_bits, narrow


def _fake_quant_backprops(ctx, gradients, x, lo, hi, reduce_axes: tuple[int, ...] | None):
    """The straight-through gradient inside the nudged range, and the gradients outside it summed into min (below)
    and max (above); ``reduce_axes`` None: no range gradients (the Args op)."""
    x = jnp.asarray(x, np.float32)
    if np.shape(gradients) != x.shape:
        raise ctx.error(f"gradient and input must be the same size: {list(np.shape(gradients))} vs {list(x.shape)}")
    num_bits, narrow = _check_fake_quant_attrs(ctx)
    g = jnp.asarray(gradients, np.float32)
    nudged_min, nudged_max = _fake_quant_nudged_range(lo, hi, num_bits, narrow)
    zero = jnp.zeros_like(g)
    backprop = jnp.where((x >= nudged_min) & (x <= nudged_max), g, zero)
    if reduce_axes is None:
        return backprop
    below, above = jnp.where(x < nudged_min, g, zero), jnp.where(x > nudged_max, g, zero)
    return backprop, jnp.sum(below, axis=reduce_axes), jnp.sum(above, axis=reduce_axes)


@op("FakeQuantWithMinMaxArgsGradient")
def fake_quant_with_min_max_args_gradient(ctx, gradients, x):
    lo, hi = np.float32(ctx.attr("min", -6.0)), np.float32(ctx.attr("max", 6.0))
    if not lo < hi:
        raise ctx.error(f"min has to be smaller than max, was: {lo} >= {hi}")
    return _fake_quant_backprops(ctx, gradients, x, lo, hi, None)


@op("FakeQuantWithMinMaxVarsGradient")
def fake_quant_with_min_max_vars_gradient(ctx, gradients, x, lo, hi):
    if np.ndim(lo) != 0 or np.ndim(hi) != 0:
        raise ctx.error(f"min and max must be scalars: {list(np.shape(lo))}, {list(np.shape(hi))}")
    return _fake_quant_backprops(ctx, gradients, x, lo, hi, tuple(range(np.ndim(x))))


@op("FakeQuantWithMinMaxVarsPerChannelGradient")
def fake_quant_with_min_max_vars_per_channel_gradient(ctx, gradients, x, lo, hi):
    """min/max (and their gradients) run along the last dimension of x, which has rank 1 to 4."""
    depth = np.shape(x)[-1] if np.ndim(x) else None
    if not 1 <= np.ndim(x) <= 4 or np.shape(lo) != (depth,) or np.shape(hi) != (depth,):
        raise ctx.error(
            f"inputs must be of rank 1 to 4 and min/max of shape [{depth}]: got {list(np.shape(x))}, "
            f"{list(np.shape(lo))}, {list(np.shape(hi))}"
        )
    return _fake_quant_backprops(ctx, gradients, x, lo, hi, tuple(range(np.ndim(x) - 1)))
