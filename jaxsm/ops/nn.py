"""Neural-network ops: convolutions (and their input/filter gradients), dilation and its gradients, pooling (and
its first- and second-order gradients), volume patches, batch normalization (fused and the pre-fused global
one, with gradients), softmax and cross entropy, LRN, top-k membership and data-format helpers.

Convolutions and matmuls ask for :func:`jaxsm.ops.registry.precision` (float32 in full, as TF-CPU computes them,
unless the user set ``jax_default_matmul_precision``).
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsm.graph.values import to_static
from jaxsm.ops.image import bilinear_resize
from jaxsm.ops.registry import op, precision

# Depthwise kernels up to this many taps are lowered as shifted-slice multiply-adds: XLA's grouped convolution
# with feature_group_count == channels is ~50x slower on CPU than the unrolled form for 3x3/5x5 kernels.
_DEPTHWISE_MAX_TAPS = 25
_HALF_TYPES = (np.dtype(np.float16), np.dtype(jnp.bfloat16))


def _half_rounded(v, dtype):
    """float32 ``v`` rounded to the precision of the half type ``dtype`` (still float32), as Eigen rounds every
    half/bfloat16 scalar op. ``lax.reduce_precision`` flushes subnormals, which float16 keeps (Eigen converts
    in software), so those are rounded to float16's subnormal step by hand; bfloat16 subnormals (< 1e-38) flush."""
    info = jnp.finfo(dtype)
    out = lax.reduce_precision(v, exponent_bits=info.nexp, mantissa_bits=info.nmant)
    if dtype == np.float16:
        step = np.float32(info.smallest_subnormal)
        out = jnp.where(jnp.abs(v) < info.smallest_normal, jnp.round(v / step) * step, out)
    return out


# -- layout helpers ------------------------------------------------------------------------------------------
def _channels_last(fmt: str) -> bool:
    return fmt.endswith("C") or fmt == "CHANNELS_LAST"


def _spatial(values, fmt: str, nd: int) -> list[int]:
    """The spatial entries of a per-dimension attr (strides, ksize, dilations) given in ``fmt`` order."""
    values = [int(v) for v in values]
    if len(values) == nd:
        return values
    return values[1:-1] if _channels_last(fmt) else values[2:]


def _explicit_pads(ctx, fmt: str, nd: int) -> list[tuple[int, int]]:
    flat = [int(p) for p in ctx.attr("explicit_paddings", [])]
    pairs = list(zip(flat[0::2], flat[1::2], strict=True))
    if len(pairs) != nd + 2:
        raise ctx.error(f"padding EXPLICIT needs {2 * (nd + 2)} explicit_paddings, got {len(flat)}")
    return pairs[1:-1] if _channels_last(fmt) else pairs[2:]


def _conv_padding(ctx, fmt: str, nd: int):
    padding = ctx.attr("padding")
    if padding == "EXPLICIT":
        return _explicit_pads(ctx, fmt, nd)
    if padding not in ("SAME", "VALID"):
        raise ctx.error(f"unsupported padding {padding!r}")
    return padding


def _resolve_pads(padding, in_spatial, window, strides, dilations) -> list[tuple[int, int]]:
    """TF's SAME/VALID padding as (before, after) pairs; SAME puts the odd pixel after, as lax does."""
    if not isinstance(padding, str):
        return [tuple(p) for p in padding]
    eff = [(k - 1) * d + 1 for k, d in zip(window, dilations, strict=True)]
    return list(lax.padtype_to_pads(in_spatial, eff, strides, padding))


def _to_channels_last(x, fmt: str):
    return x if _channels_last(fmt) else jnp.moveaxis(x, 1, -1)


def _from_channels_last(x, fmt: str):
    return x if _channels_last(fmt) else jnp.moveaxis(x, -1, 1)


# -- convolutions --------------------------------------------------------------------------------------------
def _conv_attrs(ctx, nd: int, fmt: str | None = None):
    """(data_format, strides, padding, dilations) of a convolution node, spatial entries only."""
    fmt = fmt or ctx.attr("data_format", "NHWC" if nd == 2 else "NDHWC")
    return (
        fmt,
        _spatial(ctx.attr("strides"), fmt, nd),
        _conv_padding(ctx, fmt, nd),
        _spatial(ctx.attr("dilations", [1] * (nd + 2)), fmt, nd),
    )


def _no_padding(padding) -> bool:
    """True when a 1x1 window adds no padding (SAME/VALID strings, or explicit all-zero pairs)."""
    return isinstance(padding, str) or all(int(lo) == 0 and int(hi) == 0 for lo, hi in padding)


def _conv_nd(x, w, attrs):
    """TF's Conv2D/Conv3D: filter [spatial..., in/groups, out]; grouped when the input has a multiple of the
    filter's input channels (tensorflow/core/kernels/conv_ops.cc)."""
    fmt, strides, padding, dilations = attrs
    nd = w.ndim - 2
    spatial = "DHW"[3 - nd :]
    lhs = ("N" + spatial + "C") if _channels_last(fmt) else ("NC" + spatial)
    groups = int(x.shape[-1 if _channels_last(fmt) else 1]) // int(w.shape[-2])
    if groups == 1 and _channels_last(fmt) and all(int(k) == 1 for k in w.shape[:nd]) and _no_padding(padding):
        # A 1x1 convolution is a matmul over channels; XLA:CPU runs it 1.3-5x faster as one (benchmarks/).
        x, w = jnp.asarray(x), jnp.asarray(w)
        if any(int(s) != 1 for s in strides):
            x = lax.slice(x, (0,) * x.ndim, x.shape, (1, *(int(s) for s in strides), 1))
        w = lax.reshape(w, w.shape[-2:])
        if x.dtype != w.dtype:  # invalid in TF; jnp reports it
            return jnp.matmul(x, w, precision=precision()).astype(jnp.result_type(x))
        return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())), precision=precision())
    out = lax.conv_general_dilated(
        x,
        w,
        window_strides=strides,
        padding=padding,
        rhs_dilation=dilations,
        dimension_numbers=(lhs, spatial + "IO", lhs),
        feature_group_count=groups,
        precision=precision(),
    )
    return out.astype(jnp.result_type(x))


@op("Conv2D")
def conv2d(ctx, x, w):
    return _conv_nd(x, w, _conv_attrs(ctx, 2))


@op("Conv3D")
def conv3d(ctx, x, w):
    return _conv_nd(x, w, _conv_attrs(ctx, 3))


@op("Conv")
def conv(ctx, x, w):
    """TF's generic Conv: ``batch_dims`` leading batch dims, CHANNELS_LAST/CHANNELS_FIRST, ``groups``."""
    batch_dims = ctx.attr("batch_dims", 1)
    batch_shape = tuple(x.shape[:batch_dims])
    x = jnp.reshape(x, (-1,) + tuple(x.shape[batch_dims:]))
    nd = w.ndim - 2
    out = _conv_nd(x, w, _conv_attrs(ctx, nd, ctx.attr("data_format", "CHANNELS_LAST")))
    return jnp.reshape(out, batch_shape + tuple(out.shape[1:]))


def _depthwise_slices(x, w, strides, dilations, pads, round_to=None):
    """Depthwise convolution (NHWC, filter [kh, kw, C, M], output channel c*M + m) as a sum of kh*kw shifted,
    strided slices times per-channel weights: TF's DepthwiseConv2dNative semantics, fast on CPU. Written with
    lax primitives, five per tap (no jnp wrappers: a 5x5 kernel is 125 ops, traced in every model that has one).
    The products keep the [N, H, W, C, M] shape also for M == 1: XLA:CPU runs and compiles that form faster than
    NHWC.
    ``round_to`` (a half type, with float32 ``x``/``w``) rounds the sum after every tap as TF's half kernels do
    (DepthwiseConv2DKernel in tensorflow/core/kernels/depthwise_conv_op.cc: one multiply-add per tap in float,
    the accumulator stored as half)."""
    kh, kw, c, m = w.shape
    zero = lax.full((), 0, x.dtype)
    x = lax.pad(x, zero, ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
    w = lax.convert_element_type(w, x.dtype)
    (sh, sw), (dh, dw) = strides, dilations
    n, h, wd = x.shape[0], x.shape[1], x.shape[2]
    oh = (h - (kh - 1) * dh - 1) // sh + 1
    ow = (wd - (kw - 1) * dw - 1) // sw + 1
    out_shape = (n, oh, ow, c, m)
    x = lax.reshape(x, (n, h, wd, c, 1))
    acc = None
    for i in range(kh):
        for j in range(kw):
            patch = lax.slice(
                x,
                (0, i * dh, j * dw, 0, 0),
                (n, i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1, c, 1),
                (1, sh, sw, 1, 1),
            )
            if m != 1:
                patch = lax.broadcast_in_dim(patch, out_shape, (0, 1, 2, 3, 4))
            tap = lax.slice(w, (i, j, 0, 0), (i + 1, j + 1, c, m))  # [1, 1, C, M], broadcast over N, OH, OW
            term = lax.mul(patch, lax.broadcast_in_dim(tap, out_shape, (1, 2, 3, 4)))
            acc = term if acc is None else lax.add(acc, term)
            if round_to is not None:
                acc = _half_rounded(acc, round_to)
    return lax.reshape(acc, (n, oh, ow, c * m))


def _depthwise(x, w, attrs, half_rounding: bool = True):
    """``half_rounding=False`` keeps the map linear for the backprop ops' transposes."""
    fmt, strides, padding, dilations = attrs
    x = _to_channels_last(x, fmt)
    w = jnp.asarray(w)
    kh, kw, c, m = w.shape
    pads = _resolve_pads(padding, x.shape[1:3], (kh, kw), strides, dilations)
    if half_rounding and np.dtype(x.dtype) in _HALF_TYPES:  # products exact in float32, the sum rounded per tap
        out = _depthwise_slices(x.astype(np.float32), w.astype(np.float32), strides, dilations, pads, x.dtype)
        return _from_channels_last(out.astype(x.dtype), fmt)
    if kh * kw <= _DEPTHWISE_MAX_TAPS:
        out = _depthwise_slices(x, w, strides, dilations, pads)
    else:
        out = lax.conv_general_dilated(
            x,
            w.reshape(kh, kw, 1, c * m),
            window_strides=strides,
            padding=pads,
            rhs_dilation=dilations,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=c,
            precision=precision(),
        )
    return _from_channels_last(out.astype(x.dtype), fmt)


@op("DepthwiseConv2dNative")
def depthwise_conv2d(ctx, x, w):
    return _depthwise(x, w, _conv_attrs(ctx, 2))


def _mirror_pad(ctx, x, paddings):
    mode = ctx.attr("mode")
    if mode not in ("REFLECT", "SYMMETRIC"):
        raise ctx.error(f"unknown mirror pad mode {mode!r}")
    return jnp.pad(x, [tuple(int(v) for v in p) for p in np.asarray(paddings)], mode=mode.lower())


@op("FusedPadConv2D", static=(1,))
def fused_pad_conv2d(ctx, x, paddings, w):
    """MirrorPad then Conv2D (NHWC), the fusion TF1's optimize_for_inference writes."""
    return _conv_nd(_mirror_pad(ctx, x, paddings), w, _conv_attrs(ctx, 2, "NHWC"))


@op("FusedResizeAndPadConv2D", static=(1, 2))
def fused_resize_pad_conv2d(ctx, x, size, paddings, w):
    """Legacy bilinear resize (``resize_align_corners``), MirrorPad, then Conv2D (NHWC)."""
    oh, ow = (int(s) for s in np.asarray(size).reshape(-1))
    resized = bilinear_resize(x, oh, ow, bool(ctx.attr("resize_align_corners", False)), False)
    return _conv_nd(_mirror_pad(ctx, resized.astype(x.dtype), paddings), w, _conv_attrs(ctx, 2, "NHWC"))


def _transpose_wrt(fwd, shape, dtype, cotangent):
    """The adjoint of the linear map ``fwd`` at an argument of ``shape``: TF's conv backprop ops are exactly
    the transposes of the forward convolution with the same attrs."""
    (out,) = jax.linear_transpose(fwd, jax.ShapeDtypeStruct(tuple(int(s) for s in shape), dtype))(
        jnp.asarray(cotangent, dtype)
    )
    return out


def _input_shape(sizes, w, dy, fmt: str, nd: int) -> list[int]:
    """``input_sizes`` may be the full input shape or (TF >= 2.x) just its spatial dims."""
    sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
    if len(sizes) == nd + 2:
        return sizes
    batch, cin = int(dy.shape[0]), int(w.shape[-2])
    return [batch, *sizes, cin] if _channels_last(fmt) else [batch, cin, *sizes]


def _nd(ctx) -> int:
    return 2 if ctx.node.op.startswith(("Conv2D", "Depthwise")) else 3


@op("Conv2DBackpropInput", "Conv3DBackpropInputV2", static=(0,))
def conv_backprop_input(ctx, input_sizes, w, dy):
    attrs = _conv_attrs(ctx, _nd(ctx))
    shape = _input_shape(input_sizes, w, dy, attrs[0], _nd(ctx))
    return _transpose_wrt(lambda x: _conv_nd(x, w, attrs), shape, jnp.result_type(dy), dy)


@op("Conv2DBackpropInputV2", "Conv3DBackpropInput")
def conv_backprop_input_v2(ctx, x, w, dy):
    attrs = _conv_attrs(ctx, _nd(ctx))
    return _transpose_wrt(lambda v: _conv_nd(v, w, attrs), x.shape, jnp.result_type(dy), dy)


@op("Conv2DBackpropFilter", "Conv3DBackpropFilterV2", static=(1,))
def conv_backprop_filter(ctx, x, filter_sizes, dy):
    attrs = _conv_attrs(ctx, _nd(ctx))
    return _transpose_wrt(
        lambda v: _conv_nd(x, v, attrs), np.asarray(filter_sizes).reshape(-1), jnp.result_type(dy), dy
    )


@op("Conv2DBackpropFilterV2", "Conv3DBackpropFilter")
def conv_backprop_filter_v2(ctx, x, w, dy):
    attrs = _conv_attrs(ctx, _nd(ctx))
    return _transpose_wrt(lambda v: _conv_nd(x, v, attrs), w.shape, jnp.result_type(dy), dy)


@op("DepthwiseConv2dNativeBackpropInput", static=(0,))
def depthwise_backprop_input(ctx, input_sizes, w, dy):
    attrs = _conv_attrs(ctx, 2)
    shape = _input_shape(input_sizes, w, dy, attrs[0], 2)
    return _transpose_wrt(lambda x: _depthwise(x, w, attrs, half_rounding=False), shape, jnp.result_type(dy), dy)


@op("DepthwiseConv2dNativeBackpropFilter", static=(1,))
def depthwise_backprop_filter(ctx, x, filter_sizes, dy):
    attrs = _conv_attrs(ctx, 2)
    return _transpose_wrt(
        lambda v: _depthwise(x, v, attrs, half_rounding=False),
        np.asarray(filter_sizes).reshape(-1),
        jnp.result_type(dy),
        dy,
    )


@op("Dilation2D")
def dilation2d(ctx, x, w):
    """Grayscale morphological dilation (tensorflow/core/kernels/dilation_ops.cc): the max over the window of
    input + filter; out-of-image taps are skipped (padded with -inf)."""
    strides = _spatial(ctx.attr("strides"), "NHWC", 2)
    rates = _spatial(ctx.attr("rates"), "NHWC", 2)
    kh, kw, c = w.shape
    pads = _resolve_pads(ctx.attr("padding"), x.shape[1:3], (kh, kw), strides, rates)
    x = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)), constant_values=_lowest(x.dtype))
    n, h, wd = x.shape[:3]
    oh = (h - (kh - 1) * rates[0] - 1) // strides[0] + 1
    ow = (wd - (kw - 1) * rates[1] - 1) // strides[1] + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * rates[0], j * rates[1]
            patch = lax.slice(
                x,
                (0, r0, c0, 0),
                (n, r0 + (oh - 1) * strides[0] + 1, c0 + (ow - 1) * strides[1] + 1, c),
                (1, *strides, 1),
            )
            term = patch + w[i, j]
            out = term if out is None else jnp.maximum(out, term)
    return out


def _dilation_argmax(ctx, x, w):
    """The filter tap TF's CPU Dilation2DBackprop* kernels pick per output (dilation_ops.cc): the first strict
    maximum of input + filter over in-image taps, above the dtype's lowest finite value. Returns the tap's
    (row, col) in the filter and in the input; where no tap qualifies (NaN, -inf) TF falls back to filter tap
    (0, 0) and input position (max(row_start, 0), max(col_start, 0))."""
    strides, rates = _spatial(ctx.attr("strides"), "NHWC", 2), _spatial(ctx.attr("rates"), "NHWC", 2)
    (n, h, wd, _), (kh, kw, _) = x.shape, w.shape
    pads = _resolve_pads(ctx.attr("padding"), (h, wd), (kh, kw), strides, rates)
    oh = (h + sum(pads[0]) - (kh - 1) * rates[0] - 1) // strides[0] + 1
    ow = (wd + sum(pads[1]) - (kw - 1) * rates[1] - 1) // strides[1] + 1
    row0, col0 = np.arange(oh) * strides[0] - pads[0][0], np.arange(ow) * strides[1] - pads[1][0]
    dtype = jnp.result_type(x)
    lowest = jnp.finfo(dtype).min if jnp.issubdtype(dtype, jnp.inexact) else jnp.iinfo(dtype).min
    best = jnp.full((n, oh, ow, x.shape[3]), lowest, dtype)
    tap = jnp.full(best.shape, -1, jnp.int32)
    for i, j in itertools.product(range(kh), range(kw)):
        rows, cols = row0 + i * rates[0], col0 + j * rates[1]
        inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < wd))[None, :]
        val = jnp.asarray(x)[:, np.clip(rows, 0, h - 1)][:, :, np.clip(cols, 0, wd - 1)] + w[i, j]
        better = inside[None, :, :, None] & (val > best)
        best, tap = jnp.where(better, val, best), jnp.where(better, i * kw + j, tap)
    found = tap >= 0
    f_row, f_col = jnp.where(found, tap // kw, 0), jnp.where(found, tap % kw, 0)
    in_row = jnp.where(found, row0[:, None, None] + f_row * rates[0], np.maximum(row0, 0)[:, None, None])
    in_col = jnp.where(found, col0[:, None] + f_col * rates[1], np.maximum(col0, 0)[:, None])
    return f_row, f_col, in_row, in_col


@op("Dilation2DBackpropInput")
def dilation2d_backprop_input(ctx, x, w, dy):
    _, _, rows, cols = _dilation_argmax(ctx, x, w)
    b, d = np.arange(x.shape[0])[:, None, None, None], np.arange(x.shape[3])
    return jnp.zeros(x.shape, jnp.result_type(dy)).at[b, rows, cols, d].add(dy, mode="drop")


@op("Dilation2DBackpropFilter")
def dilation2d_backprop_filter(ctx, x, w, dy):
    rows, cols, _, _ = _dilation_argmax(ctx, x, w)
    return jnp.zeros(w.shape, jnp.result_type(dy)).at[rows, cols, np.arange(w.shape[2])].add(dy)


# -- bias ----------------------------------------------------------------------------------------------------
def _bias_axis(ctx, rank: int) -> int:
    # TF: NCHW always has channels in dimension 1, whatever the rank (3, 4 or 5).
    return 1 if ctx.attr("data_format", "NHWC").startswith("NC") else rank - 1


@op("BiasAdd", "BiasAddV1")
def bias_add(ctx, x, b):
    x, b = jnp.asarray(x), jnp.asarray(b)
    axis = _bias_axis(ctx, x.ndim)
    if x.dtype != b.dtype:  # invalid in TF; jnp reports it
        return x + jnp.reshape(b, (-1,) + (1,) * (x.ndim - 1 - axis))
    return lax.add(x, lax.broadcast_in_dim(b, x.shape, (axis,)))


@op("BiasAddGrad")
def bias_add_grad(ctx, dy):
    axis = _bias_axis(ctx, dy.ndim)
    return jnp.sum(dy, axis=tuple(a for a in range(dy.ndim) if a != axis), dtype=dy.dtype)


# -- pooling -------------------------------------------------------------------------------------------------
def _lowest(dtype):
    dtype = np.dtype(dtype)
    return -np.inf if dtype.kind in "fV" or dtype == jnp.bfloat16 else np.iinfo(dtype).min


def _pool_windows(ctx, x, ksize=None, strides=None):
    """(window, strides, pads) over every dimension of ``x`` in its data format, from attrs or MaxPoolV2
    inputs."""
    ksize = [int(k) for k in (ksize if ksize is not None else ctx.attr("ksize"))]
    strides = [int(s) for s in (strides if strides is not None else ctx.attr("strides"))]
    padding = ctx.attr("padding")
    if padding == "EXPLICIT":
        flat = [int(p) for p in ctx.attr("explicit_paddings", [])]
        pads = list(zip(flat[0::2], flat[1::2], strict=True))
    else:
        pads = list(lax.padtype_to_pads(x.shape, ksize, strides, padding))
    return ksize, strides, pads


def _max_pool(ctx, x, ksize=None, strides=None):
    window, strides, pads = _pool_windows(ctx, x, ksize, strides)
    lowest = np.array(_lowest(x.dtype), x.dtype)
    if jnp.issubdtype(x.dtype, jnp.floating) and x.ndim == 4:
        # TF's 2-D CPU max starts at the finite lowest and keeps it over NaN and -inf (``x > acc`` never holds);
        # its 3-D kernel lets a NaN through (MaxPool3D keeps XLA's NaN-propagating max). The window max keeps
        # its -inf start: that is the form JAX differentiates (reduce_window_max).
        finite = np.array(jnp.finfo(x.dtype).min, x.dtype)
        x = jnp.where(jnp.isnan(x), finite, x)
        return jnp.maximum(lax.reduce_window(x, lowest, lax.max, window, strides, pads), finite)
    return lax.reduce_window(x, lowest, lax.max, window, strides, pads)


@op("MaxPool", "MaxPool3D")
def max_pool(ctx, x):
    return _max_pool(ctx, x)


@op("MaxPoolV2", static=(1, 2))
def max_pool_v2(ctx, x, ksize, strides):
    return _max_pool(ctx, x, ksize.tolist(), strides.tolist())


def _window_counts(size: int, k: int, s: int, pad: tuple[int, int]) -> np.ndarray:
    """How many in-bounds elements each output window covers along one dimension (TF's AvgPool divides by
    this: padded elements are excluded from the average)."""
    out = (size + pad[0] + pad[1] - k) // s + 1
    start = np.arange(out) * s - pad[0]
    return np.minimum(start + k, size) - np.maximum(start, 0)


def _half_window_sum(x, window, strides, pads):
    """The window sums of a float16/bfloat16 AvgPool as TF's CPU kernel forms them (SpatialAvgPool in
    tensorflow/core/kernels/pooling_ops_common.h): in the half type, adding the window's elements one by one in
    row-major order and rounding after every add. Returns float32 holding half-type values."""
    xf = lax.pad(x.astype(np.float32), np.float32(0), [(lo, hi, 0) for lo, hi in pads])
    out = [(xf.shape[d] - window[d]) // strides[d] + 1 for d in range(x.ndim)]
    total = None
    for tap in itertools.product(*(range(k) for k in window)):
        limit = [t + (o - 1) * s + 1 for t, o, s in zip(tap, out, strides)]
        patch = lax.slice(xf, tap, limit, strides)
        total = patch if total is None else _half_rounded(total + patch, x.dtype)
    return total


def _avg_pool(x, window, strides, pads, half_rounding: bool = True):
    """``half_rounding=False`` keeps the map linear for AvgPoolGrad's transpose."""
    counts = functools.reduce(
        np.multiply.outer, [_window_counts(x.shape[d], window[d], strides[d], pads[d]) for d in range(x.ndim)]
    )
    if half_rounding and np.dtype(x.dtype) in _HALF_TYPES:  # TF divides in the half type: one rounding
        total = _half_window_sum(x, window, strides, pads)
        return _half_rounded(total / counts.astype(np.float32), x.dtype).astype(x.dtype)
    total = lax.reduce_window(x, np.array(0, x.dtype), lax.add, window, strides, pads)
    return total / counts.astype(x.dtype)


@op("AvgPool", "AvgPool3D")
def avg_pool(ctx, x):
    return _avg_pool(x, *_pool_windows(ctx, x))


@op("AvgPoolGrad", "AvgPool3DGrad", static=(0,))
def avg_pool_grad(ctx, orig_input_shape, grad):
    """The gradient of AvgPool/AvgPool3D w.r.t. its input: the transpose of the (linear) pooling."""
    shape = tuple(int(s) for s in orig_input_shape)
    dtype = jnp.result_type(grad)
    attrs = _pool_windows(ctx, jax.ShapeDtypeStruct(shape, dtype))
    return _transpose_wrt(lambda x: _avg_pool(x, *attrs, half_rounding=False), shape, dtype, grad)


def _max_pool_argmax(ctx, x, window, strides, pads):
    """NHWC max pooling and the flat index ``((b * H + y) * W + x) * C + c`` of each maximum, as TF's CPU
    SpatialMaxPoolWithArgMaxHelper (tensorflow/core/kernels/maxpooling_op.cc) picks it: the first maximum in
    row-major window order, padding never chosen."""
    if window[0] != 1 or window[3] != 1:
        raise ctx.error("argmax max pooling pools over height and width only (ksize must be 1 on N and C)")
    n, h, w, c = x.shape
    (kh, kw), (sh, sw) = window[1:3], strides[1:3]
    oh = (h + pads[1][0] + pads[1][1] - kh) // sh + 1
    ow = (w + pads[2][0] + pads[2][1] - kw) // sw + 1
    padded = jnp.pad(jnp.moveaxis(x, 3, 1), ((0, 0), (0, 0), pads[1], pads[2]), constant_values=_lowest(x.dtype))
    inside = np.pad(np.ones((h, w), bool), (pads[1], pads[2]))

    def taps(a):
        return [
            a[..., i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw] for i in range(kh) for j in range(kw)
        ]

    values = jnp.stack(taps(padded), axis=-1)  # [n, c, oh, ow, window]
    valid = np.stack(taps(inside), axis=-1)  # [oh, ow, window]
    out = jnp.max(values, axis=-1)
    best = jnp.argmax(valid & (values == out[..., None]), axis=-1)
    rows = (np.arange(oh) * sh - pads[1][0])[:, None] + best // kw
    cols = (np.arange(ow) * sw - pads[2][0])[None, :] + best % kw
    batch_offset = (np.arange(n) * (h * w * c))[:, None, None, None]
    index = (rows * w + cols) * c + np.arange(c)[:, None, None] + batch_offset
    return jnp.moveaxis(out, 1, 3), jnp.moveaxis(index, 1, 3)


@op("MaxPoolWithArgmax")
def max_pool_with_argmax(ctx, x):
    """Without ``include_batch_in_index`` the index omits the batch term, as TF's."""
    n, h, w, c = x.shape
    out, index = _max_pool_argmax(ctx, x, *_pool_windows(ctx, x))
    if not ctx.attr("include_batch_in_index", False):
        index = index - (np.arange(n) * (h * w * c))[:, None, None, None]
    return out, index.astype(jax.dtypes.canonicalize_dtype(ctx.dtype("Targmax", np.dtype(np.int64))))


def _scatter_to_argmax(orig_shape, index, grad):
    flat = jnp.zeros((int(np.prod(orig_shape)),), jnp.result_type(grad))
    return flat.at[jnp.reshape(index, (-1,))].add(jnp.reshape(grad, (-1,)), mode="drop").reshape(orig_shape)


def _max_pool_grad(ctx, x, grad, ksize=None, strides=None):
    """TF's CPU MaxPoolGrad: each output gradient goes to its window's first maximum, as MaxPoolWithArgmax."""
    fmt = ctx.attr("data_format", "NHWC")
    windows = _pool_windows(ctx, x, ksize, strides)
    if not _channels_last(fmt):
        windows = [[v[i] for i in (0, 2, 3, 1)] for v in windows]
    x, grad = _to_channels_last(x, fmt), _to_channels_last(grad, fmt)
    _, index = _max_pool_argmax(ctx, x, *windows)
    return _from_channels_last(_scatter_to_argmax(x.shape, index, grad), fmt)


@op("MaxPoolGrad")
def max_pool_grad(ctx, orig_input, orig_output, grad):
    return _max_pool_grad(ctx, orig_input, grad)


@op("MaxPoolGradV2", static=(3, 4))
def max_pool_grad_v2(ctx, orig_input, orig_output, grad, ksize, strides):
    return _max_pool_grad(ctx, orig_input, grad, ksize.tolist(), strides.tolist())


@op("MaxPoolGradWithArgmax")
def max_pool_grad_with_argmax(ctx, x, grad, argmax):
    index = jnp.asarray(argmax)
    if not ctx.attr("include_batch_in_index", False):
        n = x.shape[0]
        index = index + (np.arange(n) * (int(np.prod(x.shape[1:]))))[:, None, None, None].astype(index.dtype)
    return _scatter_to_argmax(x.shape, index, grad)


def _tap_slices(shape, window, strides, pads) -> list[tuple[slice, ...]]:
    """For each window offset in row-major order, the strided slice of the padded input it reads per output."""
    out = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(shape, window, strides, pads, strict=True)]
    return [
        tuple(slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offsets, out, strides, strict=True))
        for offsets in itertools.product(*(range(k) for k in window))
    ]


def _check_pool_shapes(ctx, x, out, grad, grad_like, windows) -> None:
    expected = tuple((n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(x.shape, *windows[:2], windows[2]))
    if tuple(out.shape) != expected or tuple(grad.shape) != tuple(grad_like.shape):
        raise ctx.error(
            f"orig_output must have the pooled shape {expected} and grad that of {tuple(grad_like.shape)}, got "
            f"{tuple(out.shape)} and {tuple(grad.shape)}"
        )


def _max_pool_grad_grad(ctx, x, out, grad, ksize=None, strides=None):
    """TF's CPU MaxPoolGradGrad/MaxPool3DGradGrad (maxpooling_op.cc, pooling_ops_3d.cc): each output takes
    ``grad`` at the first in-image element of its window that equals the given ``out``, 0 where none does."""
    windows = _pool_windows(ctx, x, ksize, strides)
    _check_pool_shapes(ctx, x, out, grad, x, windows)
    pads = windows[2]
    inside = np.pad(np.ones(x.shape, bool), pads)
    xp, gp = jnp.pad(x, pads), jnp.pad(grad, pads)
    result = jnp.zeros(out.shape, jnp.result_type(grad))
    for sl in reversed(_tap_slices(x.shape, *windows)):
        result = jnp.where((xp[sl] == out) & inside[sl], gp[sl], result)
    return result


@op("MaxPoolGradGrad", "MaxPool3DGradGrad")
def max_pool_grad_grad(ctx, orig_input, orig_output, grad):
    return _max_pool_grad_grad(ctx, orig_input, orig_output, grad)


@op("MaxPoolGradGradV2", static=(3, 4))
def max_pool_grad_grad_v2(ctx, orig_input, orig_output, grad, ksize, strides):
    return _max_pool_grad_grad(ctx, orig_input, orig_output, grad, ksize.tolist(), strides.tolist())


@op("MaxPool3DGrad")
def max_pool3d_grad(ctx, orig_input, orig_output, grad):
    """TF's CPU MaxPool3DGrad (pooling_ops_3d.cc): every in-image element of a window within 1e-5 of the given
    ``orig_output`` (so every tie, never an infinite maximum: inf - inf is NaN) receives the window's ``grad``."""
    windows = _pool_windows(ctx, orig_input)
    _check_pool_shapes(ctx, orig_input, orig_output, grad, orig_output, windows)
    pads = windows[2]
    inside = np.pad(np.ones(orig_input.shape, bool), pads)
    xp = jnp.pad(orig_input, pads)
    tol = np.array(1e-5, xp.dtype)
    acc = jnp.zeros(xp.shape, jnp.result_type(grad))
    for sl in _tap_slices(orig_input.shape, *windows):
        acc = acc.at[sl].add(jnp.where((jnp.abs(xp[sl] - orig_output) < tol) & inside[sl], grad, 0))
    return acc[tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, orig_input.shape, strict=True))]


@op("MaxPoolGradGradWithArgmax")
def max_pool_grad_grad_with_argmax(ctx, x, grad, argmax):
    """Each output takes ``grad`` at its argmax (TF has only a GPU kernel: MaxPoolGradBackwardWithArgmax)."""
    index = jnp.asarray(argmax)
    if not ctx.attr("include_batch_in_index", False):
        per_batch = int(np.prod(x.shape[1:]))
        index = index + (np.arange(x.shape[0]) * per_batch)[:, None, None, None].astype(index.dtype)
    return jnp.take(jnp.reshape(grad, (-1,)), index, mode="fill", fill_value=0)


@op("ExtractVolumePatches")
def extract_volume_patches(ctx, x):
    """ExtractImagePatches in 3-D: each patch's values become features ordered (plane, row, col, channel)."""
    window, strides = [int(k) for k in ctx.attr("ksizes")], [int(v) for v in ctx.attr("strides")]
    padding = ctx.attr("padding")
    if padding not in ("SAME", "VALID") or window[0] != 1 or window[4] != 1:
        raise ctx.error(f"needs SAME or VALID padding and ksizes 1 on N and C, got {padding!r}, {window}")
    pads = list(lax.padtype_to_pads(x.shape, window, strides, padding))
    xp = jnp.pad(x, pads)
    patches = jnp.stack([xp[sl] for sl in _tap_slices(x.shape, window, strides, pads)], axis=4)
    return jnp.reshape(patches, (*patches.shape[:4], -1))


# -- normalization -------------------------------------------------------------------------------------------
def _batch_norm_setup(ctx, x, scale):
    """(epsilon, the statistics' dtype, the reduced axes, the channel broadcast shape) of a FusedBatchNorm* node."""
    c_axis = x.ndim - 1 if _channels_last(ctx.attr("data_format", "NHWC")) else 1
    bshape = [1] * x.ndim
    bshape[c_axis] = -1
    return (
        float(ctx.attr("epsilon", 1e-4)),
        np.dtype(scale.dtype),
        tuple(a for a in range(x.ndim) if a != c_axis),
        bshape,
    )


@op("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def fused_batch_norm(ctx, x, scale, offset, mean, variance):
    """TF's FusedBatchNorm* (tensorflow/core/kernels/fused_batch_norm_op.cc). Inference normalizes with the
    given mean/variance and echoes them as batch_mean/batch_variance. Training normalizes with the batch's
    biased variance but outputs the *unbiased* one (n/(n-1)), blended with the inputs when
    exponential_avg_factor != 1; reserve_space_1/2 hold the batch mean and biased variance. TF leaves
    inference reserve spaces uninitialized; here they echo mean/variance. V3's reserve_space_3 is an unused
    scalar placeholder."""
    eps, u, axes, bshape = _batch_norm_setup(ctx, x, scale)
    xf = jnp.asarray(x).astype(u)
    if ctx.attr("is_training", True):
        batch_mean = jnp.mean(xf, axis=axes)
        centered = xf - batch_mean.reshape(bshape)
        batch_var = jnp.mean(centered * centered, axis=axes)
        n = int(np.prod([x.shape[a] for a in axes]))
        unbiased = batch_var * (n / max(n - 1, 1))
        factor = float(ctx.attr("exponential_avg_factor", 1.0))
        if factor != 1.0:
            out_mean = (1.0 - factor) * jnp.asarray(mean) + factor * batch_mean
            out_var = (1.0 - factor) * jnp.asarray(variance) + factor * unbiased
        else:
            out_mean, out_var = batch_mean, unbiased
        reserve = (batch_mean, batch_var)
    else:
        batch_mean, batch_var = jnp.asarray(mean), jnp.asarray(variance)
        centered = xf - batch_mean.reshape(bshape)
        out_mean, out_var = batch_mean, batch_var
        reserve = (batch_mean, batch_var)
    factor_ = (lax.rsqrt(batch_var + eps) * scale).reshape(bshape)
    y = (centered * factor_ + jnp.reshape(offset, bshape)).astype(x.dtype)
    outs = [y, out_mean, out_var, *reserve]
    if ctx.node.op == "FusedBatchNormV3":
        outs.append(jnp.zeros((), u))
    return outs


@op("FusedBatchNormGrad", "FusedBatchNormGradV2", "FusedBatchNormGradV3")
def fused_batch_norm_grad(ctx, dy, x, scale, mean, variance, *_reserve_space_3):
    """The gradient TF's GradientTape records for FusedBatchNorm* (``FusedBatchNormGrad<CPUDevice>`` and
    ``FusedBatchNormFreezeGrad`` in fused_batch_norm_op.cc). ``mean``/``variance`` are the forward op's
    reserve_space_1/2: the batch mean and biased variance in training, the population statistics otherwise.
    Training: ``dx = scale * rsqrt(var + eps) * (dy - mean(dy) - (x - mean) * mean(dy * (x - mean)) / (var + eps))``;
    inference: ``dx = dy * scale * rsqrt(var + eps)``; both: ``dscale = sum(dy * (x - mean) * rsqrt(var + eps))``,
    ``doffset = sum(dy)`` over every axis but the channels. The two trailing outputs are TF's empty placeholders."""
    eps, u, axes, bshape = _batch_norm_setup(ctx, x, scale)
    dyf, xf = jnp.asarray(dy).astype(u), jnp.asarray(x).astype(u)
    mean, variance = jnp.asarray(mean, u).reshape(bshape), jnp.asarray(variance, u).reshape(bshape)
    inv_std = lax.rsqrt(variance + eps)
    centered = xf - mean
    doffset = jnp.sum(dyf, axis=axes)
    dscale = jnp.sum(dyf * centered, axis=axes) * inv_std.reshape(-1)
    if ctx.attr("is_training", True):
        dy_centered = dyf - jnp.mean(dyf, axis=axes, keepdims=True)
        proj = jnp.mean(dyf * centered, axis=axes, keepdims=True) / (variance + eps)
        dx = jnp.reshape(scale, bshape) * inv_std * (dy_centered - centered * proj)
    else:
        dx = dyf * (jnp.reshape(scale, bshape) * inv_std)
    empty = jnp.zeros((0,), u)
    return [dx.astype(x.dtype), dscale, doffset, empty, empty]


@op("BatchNormWithGlobalNormalization")
def batch_norm_with_global_normalization(ctx, t, m, v, beta, gamma):
    """The pre-fused batch norm (removed in GraphDef 9; tensorflow/core/kernels/batch_norm_op.h):
    ``(t - m) * rsqrt(v + eps) [* gamma] + beta`` over the last dimension."""
    scale = lax.rsqrt(v + np.array(ctx.attr("variance_epsilon"), t.dtype))
    if ctx.attr("scale_after_normalization"):
        scale = scale * gamma
    return (t - m) * scale + beta


@op("BatchNormWithGlobalNormalizationGrad")
def batch_norm_with_global_normalization_grad(ctx, t, m, v, gamma, backprop):
    """dx, dm, dv, db, dg of BatchNormWithGlobalNormalization (batch_norm_op.h's BatchNormGrad); dg is zero
    without scale_after_normalization."""
    axes = tuple(range(t.ndim - 1))
    eps = np.array(ctx.attr("variance_epsilon"), t.dtype)
    scaled = bool(ctx.attr("scale_after_normalization"))
    inv_std = lax.rsqrt(v + eps)
    db = jnp.sum(backprop, axis=axes)
    centered_sum = jnp.sum(backprop * (t - m), axis=axes)
    factor = inv_std * gamma if scaled else inv_std
    dg = centered_sum * inv_std if scaled else jnp.zeros_like(gamma)
    dv_factor = inv_std * np.array(-0.5, t.dtype) / (v + eps)
    dv = centered_sum * (dv_factor * gamma if scaled else dv_factor)
    return backprop * factor, -db * factor, dv, db, dg


def _lrn(ctx, x):
    """Local response normalization over the last dimension (tensorflow/core/kernels/lrn_op.cc):
    ``x / (bias + alpha * sum(x[d-r..d+r]^2)) ** beta``."""
    r = int(ctx.attr("depth_radius", 5))
    bias, alpha, beta = (float(ctx.attr(a, d)) for a, d in (("bias", 1.0), ("alpha", 1.0), ("beta", 0.5)))
    window = (1,) * (x.ndim - 1) + (2 * r + 1,)
    pads = ((0, 0),) * (x.ndim - 1) + ((r, r),)
    sq = lax.reduce_window(x * x, np.array(0, x.dtype), lax.add, window, (1,) * x.ndim, pads)
    return (x * jnp.power(bias + alpha * sq, -beta)).astype(x.dtype)


@op("LRN")
def lrn(ctx, x):
    return _lrn(ctx, jnp.asarray(x))


@op("LRNGrad")
def lrn_grad(ctx, input_grads, input_image, output_image):
    """The gradient of LRN at ``input_image`` (TF's LRNGradOp), from the same formula by reverse mode."""
    _, vjp = jax.vjp(lambda x: _lrn(ctx, x), jnp.asarray(input_image))
    return vjp(jnp.asarray(input_grads, input_image.dtype))[0]


@op("L2Loss")
def l2_loss(ctx, x):
    if np.dtype(x.dtype) in _HALF_TYPES and _eigen_half_sum(x.size, x.dtype):
        # TF's l2loss_op.cc: (x^2 * 0.5).sum() in the half type
        half_squares = _half_rounded(_half_rounded(jnp.square(x.astype(np.float32)), x.dtype) * 0.5, x.dtype)
        return _half_class_sum(half_squares.reshape(-1), x.dtype).astype(x.dtype)
    if np.dtype(x.dtype) in _HALF_TYPES:  # in float32, rounded once
        return (jnp.sum(jnp.square(x.astype(np.float32))) / 2).astype(x.dtype)
    return (jnp.sum(jnp.square(x)) / 2).astype(x.dtype)


# -- softmax & losses ----------------------------------------------------------------------------------------
def _half_class_sum(e, dtype):
    """The sum over the last axis of half-type values ``e`` (float32) as Eigen's vectorized inner-most reduction
    (InnerMostDimReducer, TensorReduction.h) forms it in TF's build, rounding every add to the half type: blocks
    of four 8-lane packets go to four packet accumulators, which are then added in order; the block's leftover
    packets are added to that, its lanes summed in float32 (rounded once), and the leftover elements summed
    one by one before it."""
    n = e.shape[-1]
    packets, blocks = n // 8 * 8, n // 32 * 32
    lanes = None
    if blocks:
        chunks = jnp.moveaxis(e[..., :blocks].reshape(*e.shape[:-1], blocks // 32, 4, 8), -3, 0)
        accs, _ = lax.scan(lambda acc, c: (_half_rounded(acc + c, dtype), None), chunks[0], chunks[1:])
        lanes = accs[..., 0, :]
        for k in range(1, 4):
            lanes = _half_rounded(lanes + accs[..., k, :], dtype)
    for j in range(blocks, packets, 8):
        lanes = e[..., j : j + 8] if lanes is None else _half_rounded(lanes + e[..., j : j + 8], dtype)
    total = None
    for j in range(packets, n):
        total = e[..., j] if total is None else _half_rounded(total + e[..., j], dtype)
    if lanes is not None:
        packed = _half_rounded(jnp.sum(lanes, axis=-1), dtype)
        total = packed if total is None else _half_rounded(total + packed, dtype)
    return jnp.zeros(e.shape[:-1], e.dtype) if total is None else total


# Eigen's tree reduction splits sums longer than 8 packets times this leaf size (LeafSize in TensorReduction.h)
_EIGEN_LEAF_SIZE = {np.dtype(np.float16): 200, np.dtype(jnp.bfloat16): 128}


def _eigen_half_sum(n: int, dtype) -> bool:
    """Whether a half-type sum of ``n`` elements follows TF's Eigen CPU kernel step by step: on CPU only (TF's GPU
    kernels add in another order, and the emulation costs TPUs/GPUs time for nothing), and only below Eigen's
    tree split (emulating its tree took 2 s to compile for a 32000-class softmax). Otherwise the sum is taken in
    float32 and rounded once, as TF's oneDNN kernels do (jaxsm/ops/gaps.py)."""
    return jax.default_backend() == "cpu" and n <= 8 * _EIGEN_LEAF_SIZE[np.dtype(dtype)]


def _half_softmax(logits, log: bool):
    """TF's Softmax/LogSoftmax of float16/bfloat16: SoftmaxEigenImpl
    (tensorflow/core/kernels/softmax_op_functor.h) evaluated in the half type, rounding after every op."""
    dt = logits.dtype
    x = logits.astype(np.float32)
    shifted = _half_rounded(x - jnp.max(x, axis=-1, keepdims=True, initial=-np.inf), dt)
    e = _half_rounded(jnp.exp(shifted), dt)
    total = _half_class_sum(e, dt)[..., None]
    if log:
        return _half_rounded(shifted - _half_rounded(jnp.log(total), dt), dt).astype(dt)
    return _half_rounded(e * _half_rounded(1 / total, dt), dt).astype(dt)


@op("Softmax")
def softmax(ctx, logits):
    if np.dtype(logits.dtype) in _HALF_TYPES:
        if _eigen_half_sum(logits.shape[-1], logits.dtype):
            return _half_softmax(logits, log=False)
        return jax.nn.softmax(logits.astype(np.float32), axis=-1).astype(logits.dtype)
    return jax.nn.softmax(logits, axis=-1)


@op("LogSoftmax")
def log_softmax(ctx, logits):
    if np.dtype(logits.dtype) in _HALF_TYPES:
        if _eigen_half_sum(logits.shape[-1], logits.dtype):
            return _half_softmax(logits, log=True)
        return jax.nn.log_softmax(logits.astype(np.float32), axis=-1).astype(logits.dtype)
    return jax.nn.log_softmax(logits, axis=-1)


@op("SoftmaxCrossEntropyWithLogits")
def softmax_cross_entropy(ctx, features, labels):
    """(loss, backprop) as TF's xent functor computes them (tensorflow/core/kernels/xent_op.h), with TF's 2-D
    broadcasting of features against labels."""
    features, labels = jnp.broadcast_arrays(features, labels)
    shifted = features - jnp.max(features, axis=-1, keepdims=True)
    sum_exp = jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True)
    loss = jnp.sum(labels * (jnp.log(sum_exp) - shifted), axis=-1)
    return loss, jnp.exp(shifted) / sum_exp - labels


@op("SparseSoftmaxCrossEntropyWithLogits", checked=(1,))
def sparse_softmax_cross_entropy(ctx, features, labels):
    """(loss, backprop) for integer labels. TF's CPU kernel raises on a label outside [0, classes), and so
    does jaxsm for known labels; a compiled function cannot raise, so such rows get NaN loss and backprop (TF's
    GPU behaviour)."""
    num_classes = features.shape[-1]
    known = to_static(labels)
    if known is not None and known.size and (known.min() < 0 or known.max() >= num_classes):
        raise ctx.error(f"label values {known.tolist()} are outside the valid range [0, {num_classes})")
    shifted = features - jnp.max(features, axis=-1, keepdims=True)
    sum_exp = jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True)
    labels = jnp.asarray(labels)
    valid = (labels >= 0) & (labels < num_classes)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)
    picked = jnp.take_along_axis(shifted, jnp.clip(labels, 0, num_classes - 1)[..., None], axis=-1)[..., 0]
    loss = jnp.where(valid, jnp.log(sum_exp[..., 0]) - picked, jnp.nan)
    backprop = jnp.where(valid[..., None], jnp.exp(shifted) / sum_exp - onehot, jnp.nan)
    return loss.astype(features.dtype), backprop.astype(features.dtype)


def _in_top_k(predictions, targets, k):
    """TF's InTopK (tensorflow/core/kernels/in_topk_op.h): true when fewer than k classes score strictly
    higher than the target; false for an out-of-range target or any non-finite prediction in the row."""
    num_classes = predictions.shape[-1]
    targets = jnp.asarray(targets)
    in_range = (targets >= 0) & (targets < num_classes)
    target_pred = jnp.take_along_axis(predictions, jnp.clip(targets, 0, num_classes - 1)[:, None], axis=1)
    finite = jnp.all(jnp.isfinite(predictions), axis=1)
    higher = jnp.sum(predictions > target_pred, axis=1)
    return in_range & finite & (higher < k)


@op("InTopK")
def in_top_k(ctx, predictions, targets):
    return _in_top_k(predictions, targets, int(ctx.attr("k")))


@op("InTopKV2")
def in_top_k_v2(ctx, predictions, targets, k):
    return _in_top_k(predictions, targets, k)


@op("NthElement", static=(1,))
def nth_element(ctx, x, n):
    n = int(n)
    if n < 0 or n >= x.shape[-1]:
        raise ctx.error(f"n={n} is out of range for a last dimension of size {x.shape[-1]}")
    ordered = jnp.sort(x, axis=-1)
    return ordered[..., -1 - n] if ctx.attr("reverse", False) else ordered[..., n]


# -- data formats --------------------------------------------------------------------------------------------
@op("DataFormatDimMap")
def data_format_dim_map(ctx, x):
    src, dst = ctx.attr("src_format", "NHWC"), ctx.attr("dst_format", "NCHW")
    n = len(src)
    table = np.array([dst.index(ch) for ch in src], jnp.result_type(x))
    # TF's kernel takes (x + n) % n in x's type with C's remainder, and maps every result other than 0..n-2
    # (negative ones too, from x < -n) to the last entry
    r = lax.rem(jnp.asarray(x) + np.array(n, table.dtype), np.array(n, table.dtype))
    return jnp.where((r >= 0) & (r < n - 1), jnp.take(table, jnp.clip(r, 0, n - 1)), table[n - 1])


@op("DataFormatVecPermute")
def data_format_vec_permute(ctx, x):
    """Permute a shape-like vector (or [rank, 2] paddings) from src_format to dst_format order; a vector with
    two fewer entries than the format holds only the spatial dimensions (as TF accepts)."""
    src, dst = ctx.attr("src_format", "NHWC"), ctx.attr("dst_format", "NCHW")
    if x.shape[0] == len(src) - 2:
        src, dst = ([ch for ch in f if ch not in "NC"] for f in (src, dst))
    elif x.shape[0] != len(src):
        raise ctx.error(f"input has {x.shape[0]} entries; format {src!r} needs {len(src)} or {len(src) - 2}")
    perm = np.array([list(src).index(ch) for ch in dst])
    return x[perm]


def _fake_quant(x, lo, hi, num_bits: int, narrow_range: bool, divide: bool = False):
    """TF's fake_quant_ops_functor.h. ``Nudge`` moves [lo, hi] so that zero is on the (2^bits - 1)-step grid:
    scale = (hi - lo) / steps, inv_scale = steps / (hi - lo) (recomputed, not 1/scale), zero point
    std::round(qmin - lo / scale) clamped to [qmin, qmax]. Then
    ``floor((clamp(x) - nudged_min) * inv_scale - quant_zero + 0.5) * scale`` (``/ scale`` for MinMaxVars),
    and zeros where min == max == 0 (the Vars ops).

    The nudge is TF's float32 scalar C++: with known min/max it is computed in NumPy float32 (XLA would fold the
    constant arithmetic differently: 127.5 instead of float32's 127.49999 for [-1, 1]); with run-time min/max
    without letting XLA turn a division by a constant into a multiplication by its reciprocal. XLA:CPU may
    contract the final multiply-add into an FMA, so inputs exactly halfway between two grid points can round
    to the other neighbour (a select between the two keeps most of them apart)."""
    qmin, qmax = (1.0 if narrow_range else 0.0), float((1 << num_bits) - 1)
    static = all(to_static(v) is not None for v in (lo, hi))
    xp = np if static else jnp
    f32 = np.float32
    lo, hi = xp.asarray(lo, f32), xp.asarray(hi, f32)
    # Run-time min/max: the step count as a run-time value too (``lo * 0`` is not folded for floats), so the
    # divisions stay divisions.
    steps = f32(qmax - qmin) if static else lo * f32(0) + f32(qmax - qmin)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = _rounded((hi - lo) / steps)  # not folded into ``lo / scale`` below (XLA: A/(B/C) -> A*C/B)
        inv_scale = _rounded(steps / (hi - lo))
        from_min = f32(qmin) - lo / scale
        whole = xp.trunc(from_min)
        rounded = whole + xp.where(xp.abs(from_min - whole) >= f32(0.5), xp.sign(from_min), f32(0))  # std::round
        zero = xp.where(from_min < f32(qmin), f32(qmin), xp.where(from_min > f32(qmax), f32(qmax), rounded))
        nudged_min, nudged_max = (f32(qmin) - zero) * scale, (f32(qmax) - zero) * scale
        quant_zero = xp.floor(_rounded(-nudged_min * inv_scale) + f32(0.5))
    shifted = jnp.maximum(jnp.minimum(x, nudged_max), nudged_min) - nudged_min
    # A true division also when ``scale`` is a constant (XLA multiplies by the reciprocal otherwise).
    q = shifted / (shifted * f32(0) + scale) if divide else _rounded(shifted * inv_scale)
    out = jnp.floor(q - quant_zero + f32(0.5)) * scale
    return jnp.where((lo == 0) & (hi == 0), f32(0), out)


def _rounded(product):
    """``product`` as a rounded float32 value: a select between it and the next operation keeps XLA from
    rewriting the arithmetic across it and LLVM from fusing a multiply into a following add (an FMA skips the
    product's rounding, which TF does not)."""
    if not isinstance(product, jax.Array):
        return product  # NumPy float32: already rounded
    return jnp.where(product == product, product, jnp.zeros_like(product))


@op("FakeQuantWithMinMaxArgs")
def fake_quant_with_min_max_args(ctx, x):
    lo, hi = float(ctx.attr("min", -6.0)), float(ctx.attr("max", 6.0))
    return _fake_quant(x, lo, hi, int(ctx.attr("num_bits", 8)), bool(ctx.attr("narrow_range", False)))


@op("FakeQuantWithMinMaxVars")
def fake_quant_with_min_max_vars(ctx, x, lo, hi):
    bits, narrow = int(ctx.attr("num_bits", 8)), bool(ctx.attr("narrow_range", False))
    return _fake_quant(x, lo, hi, bits, narrow, divide=True)


@op("FakeQuantWithMinMaxVarsPerChannel")
def fake_quant_with_min_max_vars_per_channel(ctx, x, lo, hi):
    # min/max have the last dimension's size and broadcast along it.
    return _fake_quant(x, lo, hi, int(ctx.attr("num_bits", 8)), bool(ctx.attr("narrow_range", False)))


# -- isotonic regression ------------------------------------------------------------------------------------


def _pava_row(y):
    """One row of TF's pool-adjacent-violators solver (tensorflow/core/kernels/isotonic_regression_op.cc): pools
    on a stack, the newest merged into the one before while its mean is strictly larger (a non-increasing fit),
    sums accumulated in TF's order. Returns (fit, segment ids)."""
    n = y.shape[0]
    sums, means, starts = jnp.zeros_like(y), jnp.zeros_like(y), jnp.zeros(n, np.int32)

    def push(col, carry):
        sums, means, starts, top = carry
        sums, means, starts = sums.at[top].set(y[col]), means.at[top].set(y[col]), starts.at[top].set(col)

        def violated(c):
            sums, means, _, top = c
            return (top > 0) & (means[jnp.maximum(top, 1)] > means[jnp.maximum(top - 1, 0)])

        def merge(c):
            sums, means, starts, top = c
            total = sums[top - 1] + sums[top]
            mean = total / (col + 1 - starts[top - 1]).astype(y.dtype)
            return sums.at[top - 1].set(total), means.at[top - 1].set(mean), starts, top - 1

        sums, means, starts, top = lax.while_loop(violated, merge, (sums, means, starts, top))
        return sums, means, starts, top + 1

    _, means, starts, top = lax.fori_loop(0, n, push, (sums, means, starts, jnp.int32(0)))
    cols = jnp.arange(n, dtype=np.int32)
    live = jnp.arange(n) < top
    segments = jnp.sum(live[None, :] & (starts[None, :] <= cols[:, None]), axis=1).astype(np.int32) - 1
    return means[segments], segments


@op("IsotonicRegression")
def isotonic_regression(ctx, x):
    """Non-increasing least-squares fit along the last axis (tf.nn.isotonic_regression negates for increasing);
    8/16-bit integers fit in float32, 32/64-bit ones in float64 (``output_dtype``)."""
    x = jnp.asarray(x)
    y = x.astype(jax.dtypes.canonicalize_dtype(ctx.dtype("output_dtype", np.dtype(np.float32))))
    if y.size == 0:
        return y, jnp.zeros(x.shape, np.int32)
    y = y.reshape(-1, x.shape[-1] if x.ndim else 1)
    fit, segments = jax.vmap(_pava_row)(y)
    return fit.reshape(x.shape), segments.reshape(x.shape)
