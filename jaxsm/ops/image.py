"""Image ops: resizing (bilinear, nearest, bicubic, area, scale-and-translate) and the gradients of the resizes
and of crop-and-resize, crop-and-resize, glimpses, color adjustments, non-max suppression (padded, combined and
with given overlaps), box drawing; and the audio ops of speech-recognition exports (AudioSpectrogram, Mfcc).

Resize coordinates, weights and rounding reproduce TF's CPU kernels
(tensorflow/core/kernels/image/resize_*_op.cc, scale_and_translate_op.cc, crop_and_resize_op.cc) in float32,
as TF computes them. Output sizes are static (``size`` inputs must be known at trace time), so sampling
positions and weights are NumPy constants; only the pixel arithmetic is traced.
"""

from __future__ import annotations

import zlib
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsm.graph.values import to_static
from jaxsm.ops.registry import op, precision

_F32 = np.float32
_FLT_MIN = np.finfo(np.float32).tiny


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """C's ``roundf``: halves round away from zero (NumPy's ``round`` rounds them to even)."""
    t = np.trunc(x)
    return t + np.where(np.abs(x - t) >= 0.5, np.sign(x), 0).astype(x.dtype)


def _resize_scale(in_size: int, out_size: int, align_corners: bool) -> np.float32:
    """TF's CalculateResizeScale (tensorflow/core/util/image_resizer_state.h), in float32."""
    if align_corners and out_size > 1:
        return _F32(in_size - 1) / _F32(out_size - 1)
    return _F32(in_size) / _F32(out_size)


def _source_coords(out_size: int, scale: np.float32, half_pixel: bool, offset: float = 0.5) -> np.ndarray:
    """TF's HalfPixelScaler ``(x + 0.5) * scale - offset`` or LegacyScaler ``x * scale``, in float32."""
    x = np.arange(out_size, dtype=_F32)
    return (x + _F32(0.5)) * scale - _F32(offset) if half_pixel else x * scale


def _resize_attrs(ctx, images, size):
    size = [int(s) for s in np.asarray(size).reshape(-1)]
    if len(size) != 2 or images.ndim != 4:
        raise ctx.error(f"expects 4-D images and a 2-element size, got rank {images.ndim} and size {size}")
    align, half = bool(ctx.attr("align_corners", False)), bool(ctx.attr("half_pixel_centers", False))
    if align and half:
        raise ctx.error("align_corners and half_pixel_centers cannot both be true (TF rejects this)")
    return size, align, half


def _bilinear_taps(in_size: int, out_size: int, align: bool, half: bool):
    """(lower, upper, lerp) per output position, as TF's compute_interpolation_weights."""
    src = _source_coords(out_size, _resize_scale(in_size, out_size, align), half)
    floor = np.floor(src)
    upper = np.minimum(np.ceil(src), in_size - 1).astype(np.int64)
    lower = np.minimum(np.maximum(floor, 0).astype(np.int64), upper)
    return lower, upper, (src - floor).astype(_F32)


@op("ResizeBilinear", static=(1,))
def resize_bilinear(ctx, images, size):
    (oh, ow), align, half = _resize_attrs(ctx, images, size)
    return bilinear_resize(images, oh, ow, align, half)


def bilinear_resize(images, oh: int, ow: int, align: bool, half: bool):
    """TF's ResizeBilinear of NHWC ``images`` to (oh, ow), in float32: ``top + (bottom - top) * y_lerp`` of
    the x-interpolated rows, as its compute_lerp."""
    ylo, yhi, ylerp = _bilinear_taps(images.shape[1], oh, align, half)
    xlo, xhi, xlerp = _bilinear_taps(images.shape[2], ow, align, half)
    x = jnp.asarray(images).astype(_F32)
    top, bottom = jnp.take(x, ylo, axis=1), jnp.take(x, yhi, axis=1)
    xl = xlerp[None, None, :, None]

    def lerp_x(rows):
        left, right = jnp.take(rows, xlo, axis=2), jnp.take(rows, xhi, axis=2)
        return left + (right - left) * xl

    t, b = lerp_x(top), lerp_x(bottom)
    return t + (b - t) * ylerp[None, :, None, None]


def _nearest_indices(in_size: int, out_size: int, align: bool, half: bool) -> np.ndarray:
    """Source index per output position, as TF's ResizeNearestNeighbor: HalfPixelScalerForNN (no -0.5),
    ``roundf`` with align_corners else ``floorf``, clamped to the image."""
    src = _source_coords(out_size, _resize_scale(in_size, out_size, align), half, offset=0.0)
    idx = _round_half_away(src) if align else np.floor(src)
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    return np.maximum(idx, 0) if half else idx


@op("ResizeNearestNeighbor", static=(1,))
def resize_nearest(ctx, images, size):
    (oh, ow), align, half = _resize_attrs(ctx, images, size)
    rows = jnp.take(images, _nearest_indices(images.shape[1], oh, align, half), axis=1)
    return jnp.take(rows, _nearest_indices(images.shape[2], ow, align, half), axis=2)


@op("ResizeBilinearGrad")
def resize_bilinear_grad(ctx, grads, original_image):
    """The adjoint of ResizeBilinear (the gradient GradientTape records for it): each output pixel's gradient
    goes to its four source pixels with the interpolation weights. Computed in float32, like TF's kernel."""
    oh, ow = int(grads.shape[1]), int(grads.shape[2])
    align, half = bool(ctx.attr("align_corners", False)), bool(ctx.attr("half_pixel_centers", False))
    shape = jax.ShapeDtypeStruct(tuple(original_image.shape), _F32)
    (dx,) = jax.linear_transpose(lambda x: bilinear_resize(x, oh, ow, align, half), shape)(jnp.asarray(grads, _F32))
    return dx.astype(original_image.dtype)


@op("ResizeNearestNeighborGrad", static=(1,))
def resize_nearest_grad(ctx, grads, size):
    """The adjoint of ResizeNearestNeighbor: each output pixel's gradient is added to its source pixel."""
    ih, iw = (int(s) for s in np.asarray(size).reshape(-1))
    align, half = bool(ctx.attr("align_corners", False)), bool(ctx.attr("half_pixel_centers", False))
    g = jnp.asarray(grads)
    rows = _nearest_indices(ih, g.shape[1], align, half)
    cols = _nearest_indices(iw, g.shape[2], align, half)
    out = jnp.zeros((g.shape[0], ih, g.shape[2], g.shape[3]), g.dtype).at[:, rows].add(g)
    return jnp.zeros((g.shape[0], ih, iw, g.shape[3]), g.dtype).at[:, :, cols].add(out)


def _cubic_table(a: float) -> np.ndarray:
    """TF's bicubic coefficient table (1025 entries x 2), computed in double and stored as float."""
    x = (np.arange(1025) / 1024.0).astype(_F32).astype(np.float64)
    table = np.empty((1025, 2), _F32)
    table[:, 0] = ((a + 2) * x - (a + 3)) * x * x + 1
    x = x + 1.0
    table[:, 1] = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return table


def _bicubic_taps(in_size: int, out_size: int, align: bool, half: bool):
    """Four (index, weight) taps per output position, as TF's GetWeightsAndIndices: weights looked up in the
    1024-step table at ``lrintf(delta * 1024)``; with half_pixel_centers the Keys kernel (a=-0.5) and taps
    outside the image get weight 0 and the rest are renormalized, else a=-0.75 with edge pixels repeated."""
    src = _source_coords(out_size, _resize_scale(in_size, out_size, align), half)
    base = np.floor(src).astype(np.int64)
    offset = np.rint((src - base.astype(_F32)).astype(_F32) * _F32(1024)).astype(np.int64)
    table = _cubic_table(-0.5 if half else -0.75)
    weights = [table[offset, 1], table[offset, 0], table[1024 - offset, 0], table[1024 - offset, 1]]
    wanted = [base - 1 + k for k in range(4)]
    indices = [np.clip(w, 0, in_size - 1) for w in wanted]
    if half:
        weights = [np.where(i == w, wt, _F32(0)) for i, w, wt in zip(indices, wanted, weights, strict=True)]
        total = ((weights[0] + weights[1]) + weights[2]) + weights[3]
        inv = np.where(np.abs(total) >= 1000 * _FLT_MIN, _F32(1) / total, _F32(1)).astype(_F32)
        weights = [w * inv for w in weights]
    return indices, weights


def _interpolate_1d(x, axis: int, indices, weights):
    """``v0*w0 + v1*w1 + v2*w2 + v3*w3`` along ``axis``, summed left to right as TF's Interpolate1D."""
    shape = [1] * x.ndim
    shape[axis] = -1
    out = None
    for idx, w in zip(indices, weights, strict=True):
        term = jnp.take(x, idx, axis=axis) * np.asarray(w, _F32).reshape(shape)
        out = term if out is None else out + term
    return out


@op("ResizeBicubic", static=(1,))
def resize_bicubic(ctx, images, size):
    (oh, ow), align, half = _resize_attrs(ctx, images, size)
    x = jnp.asarray(images).astype(_F32)
    rows = _interpolate_1d(x, 1, *_bicubic_taps(images.shape[1], oh, align, half))
    return _interpolate_1d(rows, 2, *_bicubic_taps(images.shape[2], ow, align, half))


@op("ResizeBicubicGrad")
def resize_bicubic_grad(ctx, grads, original_image):
    """The adjoint of ResizeBicubic with the same taps and weights (TF's ResizeBicubicGrad), in float32."""
    size = np.array(grads.shape[1:3])
    shape = jax.ShapeDtypeStruct(tuple(original_image.shape), _F32)
    (dx,) = jax.linear_transpose(lambda x: resize_bicubic(ctx, x, size), shape)(jnp.asarray(grads, _F32))
    return dx.astype(original_image.dtype)


def _area_matrix(in_size: int, out_size: int, align: bool) -> tuple[np.ndarray, np.float32]:
    """[out, in] weights of TF's ResizeArea: output cell ``[y*scale, (y+1)*scale)`` covers input cells
    ``floor(y*scale) .. ceil((y+1)*scale)-1``, each weighted by its covered fraction (indices clamped to the
    image). Returns the matrix and the scale."""
    scale = _resize_scale(in_size, out_size, align)
    m = np.zeros((out_size, in_size), np.float64)
    for y in range(out_size):
        lo, hi = _F32(y) * scale, _F32(y + 1) * scale
        for i in range(int(np.floor(lo)), int(np.ceil(hi))):
            if i < lo:
                w = scale if i + 1 > hi else _F32(i + 1) - lo
            else:
                w = hi - _F32(i) if i + 1 > hi else _F32(1)
            m[y, min(max(i, 0), in_size - 1)] += _F32(w)
    return m.astype(_F32), scale


@op("ResizeArea", static=(1,))
def resize_area(ctx, images, size):
    (oh, ow), align, _ = _resize_attrs(ctx, images, size)
    wy, sy = _area_matrix(images.shape[1], oh, align)
    wx, sx = _area_matrix(images.shape[2], ow, align)
    x = jnp.asarray(images).astype(_F32)
    out = jnp.einsum("oh,bhwc,pw->bopc", wy, x, wx, precision=precision())
    return out * _F32(1.0 / (float(sy) * float(sx)))


# -- scale and translate -------------------------------------------------------------------------------------
def _lanczos(radius: float):
    def kernel(x):
        pi = _F32(3.14159265359)
        safe = np.where(x <= _F32(1e-3), _F32(1), x)
        val = _F32(radius) * np.sin(pi * safe) * np.sin(pi * safe / _F32(radius)) / (pi * pi * safe * safe)
        return np.where(x > radius, _F32(0), np.where(x <= _F32(1e-3), _F32(1), val)).astype(_F32)

    return kernel, radius


def _gaussian(x):
    # TF evaluates the exponent in double (``2.0 * sigma * sigma``); sigma = 1.5 / 3 is exact.
    x64 = x.astype(np.float64)
    return np.where(x >= _F32(1.5), _F32(0), np.exp(-x64 * x64 / (2.0 * 0.5 * 0.5))).astype(_F32)


def _keys_cubic(x):
    far = ((_F32(-0.5) * x + _F32(2.5)) * x - _F32(4)) * x + _F32(2)
    near = ((_F32(1.5) * x - _F32(2.5)) * x) * x + _F32(1)
    return np.where(x >= 2, _F32(0), np.where(x >= 1, far, near)).astype(_F32)


def _mitchell_cubic(x):
    far = (((_F32(-7) / _F32(18)) * x + _F32(2)) * x - _F32(10) / _F32(3)) * x + _F32(16) / _F32(9)
    near = (((_F32(7) / _F32(6)) * x - _F32(2)) * x) * x + _F32(8) / _F32(9)
    return np.where(x >= 2, _F32(0), np.where(x >= 1, far, near)).astype(_F32)


# Sampling kernels of tensorflow/core/kernels/image/sampling_kernels.h: (function of |x|, radius).
_SAMPLING_KERNELS = {
    "lanczos1": _lanczos(1.0),
    "lanczos3": _lanczos(3.0),
    "lanczos5": _lanczos(5.0),
    "gaussian": (_gaussian, 1.5),
    "box": (lambda x: np.where(x < 0.5, _F32(1), np.where(x == 0.5, _F32(0.5), _F32(0))).astype(_F32), 1.0),
    "triangle": (lambda x: np.where(x < 1, _F32(1) - x, _F32(0)).astype(_F32), 1.0),
    "keyscubic": (_keys_cubic, 2.0),
    "mitchellcubic": (_mitchell_cubic, 2.0),
}


def _span_matrix(
    kernel_name: str, out_size: int, in_size: int, scale: float, translate: float, antialias: bool
) -> np.ndarray:
    """[out, in] weights of TF's ComputeSpansCore: sample at ``(x + 0.5) / scale - translate / scale``, kernel
    widened by 1/scale when antialiasing a downscale, span clamped to the image, weights normalized to sum 1;
    samples outside the image get no weights."""
    kernel, radius = _SAMPLING_KERNELS[kernel_name]
    inv_scale = _F32(1.0 / _F32(scale))
    inv_translate = -inv_scale * _F32(translate)
    kernel_scale = max(inv_scale, _F32(1)) if antialias else _F32(1)
    one_over_kernel_scale = _F32(1) / kernel_scale
    reach = _F32(radius) * kernel_scale
    m = np.zeros((out_size, in_size), _F32)
    for x in range(out_size):
        sample = (_F32(x) + _F32(0.5)) * inv_scale + inv_translate
        if sample < 0 or sample > in_size:
            continue
        start = min(max(int(np.ceil(sample - reach - _F32(0.5))), 0), in_size - 1)
        end = min(max(int(np.floor(sample + reach - _F32(0.5))), 0), in_size - 1) + 1
        pos = np.arange(start, end, dtype=_F32) + _F32(0.5) - sample
        weights = kernel(np.abs(pos * one_over_kernel_scale))
        total = _F32(0)
        for w in weights:
            total = _F32(total + w)
        if abs(total) >= 1000 * _FLT_MIN:
            m[x, start:end] = weights * (_F32(1) / total)
    return m


@op("ScaleAndTranslate", static=(1, 2, 3))
def scale_and_translate(ctx, images, size, scale, translation):
    kernel_name = ctx.attr("kernel_type", "lanczos3")
    if kernel_name not in _SAMPLING_KERNELS:
        raise ctx.error(f"unknown kernel_type {kernel_name!r}; TF knows {sorted(_SAMPLING_KERNELS)}")
    antialias = bool(ctx.attr("antialias", True))
    (oh, ow), (sy, sx), (ty, tx) = (np.asarray(v).reshape(-1).tolist() for v in (size, scale, translation))
    wy = _span_matrix(kernel_name, int(oh), images.shape[1], sy, ty, antialias)
    wx = _span_matrix(kernel_name, int(ow), images.shape[2], sx, tx, antialias)
    x = jnp.asarray(images).astype(_F32)
    rows = jnp.einsum("oh,bhwc->bowc", wy, x, precision=precision())
    return jnp.einsum("pw,bowc->bopc", wx, rows, precision=precision())


@op("ScaleAndTranslateGrad", static=(2, 3))
def scale_and_translate_grad(ctx, grads, original_image, scale, translation):
    """The adjoint of ScaleAndTranslate (same kernel spans), as TF's ScaleAndTranslateGrad: float32."""
    size = np.array(grads.shape[1:3])
    shape = jax.ShapeDtypeStruct(tuple(original_image.shape), _F32)
    forward = partial(scale_and_translate, ctx, size=size, scale=scale, translation=translation)
    (dx,) = jax.linear_transpose(forward, shape)(jnp.asarray(grads, _F32))
    return dx


# -- crop and resize -----------------------------------------------------------------------------------------
def _crop_coords(lo, hi, image_size: int, crop_size: int):
    """Sample positions of TF's CropAndResize along one axis: ``[n, crop_size]`` float32."""
    if crop_size > 1:
        # XLA folds (d * a) / b into d * (a / b), which can move a sample at an exact .5 (nearest rounds it) or
        # an image edge to the other side: known boxes are computed in NumPy, as TF's float32 C++, others
        # behind a barrier
        divisor = _F32(crop_size - 1)
        divisor = divisor if to_static(lo) is not None else jax.lax.optimization_barrier(divisor)
        step = (hi - lo) * _F32(image_size - 1) / divisor
        return lo[:, None] * _F32(image_size - 1) + np.arange(crop_size, dtype=_F32) * step[:, None]
    # TF multiplies by a double 0.5 here; float32 differs only in the last bit of the sample position.
    return (_F32(0.5) * (lo + hi) * _F32(image_size - 1))[:, None]


@op("CropAndResize", static=(3,), checked=(2,))
def crop_and_resize(ctx, images, boxes, box_ind, crop_size):
    """TF's CropAndResize (bilinear or nearest). Samples outside the image take ``extrapolation_value``. TF
    raises for a box index outside the batch, as jaxsm does for known ones; a compiled function cannot, so
    run-time indices are clamped."""
    known = to_static(box_ind)
    if known is not None and known.size and (known.min() < 0 or known.max() >= images.shape[0]):
        raise ctx.error(f"box_index {known.tolist()} has values outside [0, {images.shape[0]})")
    ch, cw = (int(s) for s in np.asarray(crop_size).reshape(-1))
    method = ctx.attr("method", "bilinear")
    if method not in ("bilinear", "nearest"):
        raise ctx.error(f"unknown method {method!r}")
    extrapolation = float(ctx.attr("extrapolation_value", 0.0))
    _, h, w, _ = images.shape
    known_boxes = to_static(boxes)
    boxes = jnp.asarray(boxes).astype(_F32) if known_boxes is None else np.asarray(known_boxes, _F32)
    in_y = _crop_coords(boxes[:, 0], boxes[:, 2], h, ch)
    in_x = _crop_coords(boxes[:, 1], boxes[:, 3], w, cw)
    inside_y = (in_y >= 0) & (in_y <= h - 1)
    inside_x = (in_x >= 0) & (in_x <= w - 1)
    valid = (inside_y[:, :, None] & inside_x[:, None, :])[..., None]
    b = jnp.asarray(box_ind)[:, None, None]

    def pick(yi, xi):
        yi = jnp.clip(yi, 0, h - 1).astype(jnp.int32)[:, :, None]
        xi = jnp.clip(xi, 0, w - 1).astype(jnp.int32)[:, None, :]
        return jnp.asarray(images)[b, yi, xi].astype(_F32)

    if method == "nearest":
        out = pick(_round_half_away_jnp(in_y), _round_half_away_jnp(in_x))
    else:
        top, left = jnp.floor(in_y), jnp.floor(in_x)
        bottom, right = jnp.ceil(in_y), jnp.ceil(in_x)
        y_lerp, x_lerp = (in_y - top)[:, :, None, None], (in_x - left)[:, None, :, None]
        t = pick(top, left) + (pick(top, right) - pick(top, left)) * x_lerp
        bo = pick(bottom, left) + (pick(bottom, right) - pick(bottom, left)) * x_lerp
        out = t + (bo - t) * y_lerp
    return jnp.where(valid, out, _F32(extrapolation))


@op("CropAndResizeGradImage", static=(3,))
def crop_and_resize_grad_image(ctx, grads, boxes, box_ind, image_size):
    """The gradient of CropAndResize w.r.t. the image: each crop sample's gradient goes to the pixels it read,
    samples outside the image to none (TF's CropAndResizeBackpropImage)."""
    shape = tuple(int(s) for s in np.asarray(image_size).reshape(-1))
    crop = np.array(grads.shape[1:3])
    _, vjp = jax.vjp(lambda x: crop_and_resize(ctx, x, boxes, box_ind, crop), jnp.zeros(shape, _F32))
    return vjp(jnp.asarray(grads, _F32))[0].astype(ctx.dtype("T"))


@op("CropAndResizeGradBoxes")
def crop_and_resize_grad_boxes(ctx, grads, image, boxes, box_ind):
    """The gradient of bilinear CropAndResize w.r.t. the boxes (TF's CropAndResizeBackpropBoxes): the
    interpolation's slope between the sampled pixels times the sample position's derivative; samples outside
    the image contribute nothing."""
    crop = np.array(grads.shape[1:3])
    _, vjp = jax.vjp(lambda b: crop_and_resize(ctx, image, b, box_ind, crop), jnp.asarray(boxes, _F32))
    return vjp(jnp.asarray(grads, _F32))[0]


def _round_half_away_jnp(x):
    t = jnp.trunc(x)
    return t + jnp.where(jnp.abs(x - t) >= 0.5, jnp.sign(x), 0)


# -- color ---------------------------------------------------------------------------------------------------
@op("AdjustContrastv2")
def adjust_contrast_v2(ctx, images, contrast_factor):
    x = jnp.asarray(images)
    mean = jnp.mean(x.astype(_F32), axis=(-3, -2), keepdims=True)
    return ((x - mean) * contrast_factor + mean).astype(x.dtype)


@op("AdjustContrast")
def adjust_contrast(ctx, images, contrast_factor, min_value, max_value):
    """The pre-v2 op (deprecated at GraphDef 2; AdjustContrast in tensorflow/core/kernels/image/
    adjust_contrast_op.h): float32 output clipped to [min_value, max_value], the mean never rounded to T."""
    x = jnp.asarray(images).astype(_F32)
    if x.ndim < 3:
        raise ctx.error(f"input must be at least 3-D, got shape {list(x.shape)}")
    for name, v in (("contrast_factor", contrast_factor), ("min_value", min_value), ("max_value", max_value)):
        if np.ndim(v) != 0:
            raise ctx.error(f"{name} must be scalar: {list(np.shape(v))}")
    mean = jnp.sum(x, axis=(-3, -2), keepdims=True) / _F32(x.shape[-3] * x.shape[-2])
    adjusted = (x - mean) * jnp.asarray(contrast_factor, _F32) + mean
    return jnp.maximum(jnp.minimum(adjusted, jnp.asarray(max_value, _F32)), jnp.asarray(min_value, _F32))


@op("RGBToHSV")
def rgb_to_hsv(ctx, images):
    """TF's RGBToHSV functor (tensorflow/core/kernels/image/colorspace_op.h); hue in [0, 1)."""
    r, g, b = (images[..., i] for i in range(3))
    v = jnp.maximum(jnp.maximum(r, g), b)
    rng = v - jnp.minimum(jnp.minimum(r, g), b)
    s = jnp.where(v > 0, rng / v, 0)
    norm = (1 / rng) * (1 / 6)
    h = jnp.where(r == v, norm * (g - b), jnp.where(g == v, norm * (b - r) + 2 / 6, norm * (r - g) + 4 / 6))
    h = jnp.where(rng > 0, h, 0)
    h = jnp.where(h < 0, h + 1, h)
    return jnp.stack([h, s, v], axis=-1).astype(images.dtype)


@op("HSVToRGB")
def hsv_to_rgb(ctx, images):
    """TF's HSVToRGB functor (tensorflow/core/kernels/image/colorspace_op.h)."""
    h, s, v = (images[..., i] for i in range(3))
    dh = h * 6
    dr = jnp.clip(jnp.abs(dh - 3) - 1, 0, 1)
    dg = jnp.clip(-jnp.abs(dh - 2) + 2, 0, 1)
    db = jnp.clip(-jnp.abs(dh - 4) + 2, 0, 1)
    one_s = -s + 1
    return jnp.stack([(one_s + s * c) * v for c in (dr, dg, db)], axis=-1).astype(images.dtype)


def _select(category, cases):
    """``cases[category]`` elementwise (category is an int array in [0, len(cases)))."""
    out = cases[-1]
    for k in range(len(cases) - 2, -1, -1):
        out = jnp.where(category == k, cases[k], out)
    return out


@op("AdjustHue")
def adjust_hue(ctx, images, delta):
    """TF's CPU AdjustHue (tensorflow/core/kernels/image/adjust_hue_op.cc): RGB -> (hue in [0, 6), min, max),
    shift the hue by ``6 * delta`` (one wrap each way), and back. Channels stay in the min/max range."""
    x = jnp.asarray(images).astype(_F32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    category = jnp.where(
        r < g, jnp.where(b < r, 1, jnp.where(b > g, 3, 2)), jnp.where(b < g, 0, jnp.where(b > r, 4, 5))
    )
    v_max = _select(category, [r, g, g, b, b, r])
    v_mid = _select(category, [g, r, b, g, r, b])
    v_min = _select(category, [b, b, r, r, g, g])
    span = v_max - v_min
    ratio = (v_mid - v_min) / jnp.where(span == 0, 1, span)
    hue = jnp.where(span == 0, 0, category + jnp.where(category % 2 == 0, ratio, 1 - ratio))
    hue = hue + jnp.asarray(delta, _F32) * 6
    hue = jnp.where(hue < 0, hue + 6, hue)
    hue = jnp.where(hue >= 6, hue - 6, hue)
    cat = hue.astype(jnp.int32)
    ratio = hue - cat
    ratio = jnp.where(cat % 2 == 0, ratio, 1 - ratio)
    mid = v_min + ratio * (v_max - v_min)
    rgb = [
        _select(cat, [v_max, mid, v_min, v_min, mid, v_max]),
        _select(cat, [mid, v_max, v_max, mid, v_min, v_min]),
        _select(cat, [v_min, v_min, mid, v_max, v_max, mid]),
    ]
    return jnp.stack(rgb, axis=-1).astype(jnp.result_type(images))


@op("AdjustSaturation")
def adjust_saturation(ctx, images, scale):
    """TF's CPU AdjustSaturation (tensorflow/core/kernels/image/adjust_saturation_op.cc): its own RGB<->HSV
    helpers, saturation scaled and clamped to [0, 1]."""
    x = jnp.asarray(images).astype(_F32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = jnp.maximum(r, jnp.maximum(g, b))
    rng = v - jnp.minimum(r, jnp.minimum(g, b))
    s = jnp.where(v > 0, rng / jnp.where(v > 0, v, 1), 0)
    norm = 1 / (6 * rng)
    h = jnp.where(r == v, norm * (g - b), jnp.where(g == v, norm * (b - r) + _F32(2 / 6), norm * (r - g) + _F32(4 / 6)))
    h = jnp.where(rng <= 0, 0, h)
    h = jnp.where(h < 0, h + 1, h)
    s = jnp.clip(s * jnp.asarray(scale, _F32), 0, 1)
    c = s * v
    m = v - c
    dh = h * 6
    cat = dh.astype(jnp.int32)
    fmodu = jnp.where(dh <= 0, dh + 2, dh)
    fmodu = jnp.where(fmodu >= 2, fmodu - 2 * jnp.floor(fmodu / 2), fmodu)
    xx = c * (1 - jnp.abs(fmodu - 1))
    zero = jnp.zeros_like(c)
    rgb = [
        _select(cat, [c, xx, zero, zero, xx, c, zero]),
        _select(cat, [xx, c, c, xx, zero, zero, zero]),
        _select(cat, [zero, zero, xx, c, c, xx, zero]),
    ]
    return (jnp.stack(rgb, axis=-1) + m[..., None]).astype(jnp.result_type(images))


# -- glimpses -----------------------------------------------------------------------------------------------
def _glimpse_start(offset, n_in: int, n_out: int, normalized: bool, centered: bool, v2: bool):
    """The first input row (or column) of each glimpse, as Eigen's ExtractGlimpses computes it in float32 and
    truncates toward zero (tensorflow/core/kernels/eigen_attention.h). V2 subtracts half the glimpse only for
    normalized, centered offsets."""
    o = offset.astype(_F32)
    if normalized:
        o = o * _F32(n_in)
    if centered and (normalized or not v2):
        o = o / _F32(2) + _F32(n_in / 2)
    elif centered:
        o = o + _F32(n_in / 2)
    if not v2 or (normalized and centered):
        o = o - _F32(n_out / 2)
    return jnp.trunc(o).astype(jnp.int32)


def _glimpse_noise(ctx, images, kind: str, shape):
    """What fills a glimpse outside the image. TF draws from Eigen's unseeded generators, which cannot be
    reproduced: here a fixed key per node (as jaxsm/ops/stateful_random.py), with TF's distributions: uniform in
    [min, max] of the batch entry, or per channel normal(mean, std) clipped to the channel's [min, max]."""
    if kind == "zero":
        return jnp.zeros(shape, _F32)
    key = jax.random.PRNGKey(zlib.crc32(ctx.node.name.encode()))
    if kind == "uniform":
        lo, hi = jnp.min(images, axis=(1, 2, 3), keepdims=True), jnp.max(images, axis=(1, 2, 3), keepdims=True)
        return lo + jax.random.uniform(key, shape, _F32) * (hi - lo)
    mean, std = jnp.mean(images, axis=(1, 2), keepdims=True), jnp.std(images, axis=(1, 2), keepdims=True)
    lo, hi = jnp.min(images, axis=(1, 2), keepdims=True), jnp.max(images, axis=(1, 2), keepdims=True)
    return jnp.clip(mean + jax.random.normal(key, shape, _F32) * std, lo, hi)


@op("ExtractGlimpse", "ExtractGlimpseV2", static=(1,))
def extract_glimpse(ctx, images, size, offsets):
    """Windows of ``size`` at (y, x) ``offsets`` (tensorflow/core/kernels/image/attention_ops.cc); pixels outside
    the image get noise: ``noise`` "zero", "uniform" or "gaussian" ("" follows ``uniform_noise``)."""
    gh, gw = (int(v) for v in np.asarray(size).reshape(-1))
    noise = ctx.attr("noise", "uniform")
    kind = noise or ("uniform" if ctx.attr("uniform_noise", True) else "gaussian")
    if kind not in ("zero", "uniform", "gaussian"):
        raise ctx.error(f"noise must be zero, uniform or gaussian, got {noise!r}")
    flags = dict(
        normalized=bool(ctx.attr("normalized", True)),
        centered=bool(ctx.attr("centered", True)),
        v2=ctx.node.op == "ExtractGlimpseV2",
    )
    images, offsets = jnp.asarray(images, _F32), jnp.asarray(offsets)
    _, h, w, c = images.shape
    rows = _glimpse_start(offsets[:, 0], h, gh, **flags)[:, None] + np.arange(gh)
    cols = _glimpse_start(offsets[:, 1], w, gw, **flags)[:, None] + np.arange(gw)
    b = np.arange(images.shape[0])[:, None, None]
    picked = images[b, jnp.clip(rows, 0, h - 1)[:, :, None], jnp.clip(cols, 0, w - 1)[:, None, :]]
    inside = (((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :])[..., None]
    return jnp.where(inside, picked, _glimpse_noise(ctx, images, kind, picked.shape))


# -- non-max suppression -------------------------------------------------------------------------------------
def _iou_matrix(boxes):
    """Pairwise IOU as TF's NMS computes it: corners in any order, 0 when either box has no area."""
    b = jnp.asarray(boxes).astype(_F32)
    ymin, ymax = jnp.minimum(b[:, 0], b[:, 2]), jnp.maximum(b[:, 0], b[:, 2])
    xmin, xmax = jnp.minimum(b[:, 1], b[:, 3]), jnp.maximum(b[:, 1], b[:, 3])
    area = (ymax - ymin) * (xmax - xmin)
    ih = jnp.maximum(jnp.minimum(ymax[:, None], ymax[None]) - jnp.maximum(ymin[:, None], ymin[None]), 0)
    iw = jnp.maximum(jnp.minimum(xmax[:, None], xmax[None]) - jnp.maximum(xmin[:, None], xmin[None]), 0)
    inter = ih * iw
    union = area[:, None] + area[None] - inter
    positive = (area[:, None] > 0) & (area[None] > 0)
    return jnp.where(positive, inter / jnp.where(positive, union, 1), 0)


def _nms_padded(boxes, scores, max_output_size: int, iou_threshold, score_threshold):
    """TF's greedy hard NMS (DoNonMaxSuppressionOp with soft_nms_sigma 0): candidates above
    ``score_threshold`` by descending score (ties: lower index first); one is kept unless its IOU with a kept
    box exceeds ``iou_threshold``; at most ``max_output_size`` kept. Returns (indices padded with 0, kept
    scores padded with 0, count)."""
    return _nms_padded_similarity(_iou_matrix(boxes), scores, max_output_size, iou_threshold, score_threshold)


def _nms_padded_similarity(similarity, scores, max_output_size: int, threshold, score_threshold):
    """:func:`_nms_padded` given the pairwise similarity (row: the candidate) instead of the boxes."""
    n = scores.shape[0]
    order = jnp.argsort(-jnp.asarray(scores), stable=True)
    sorted_scores = jnp.asarray(scores)[order]
    iou = jnp.asarray(similarity)[order][:, order]

    def body(k, carry):
        kept, count = carry
        suppressed = jnp.any(kept & (iou[k] > threshold))
        take = (sorted_scores[k] > score_threshold) & ~suppressed & (count < max_output_size)
        return kept.at[k].set(take), count + take.astype(jnp.int32)

    kept, count = lax.fori_loop(0, n, body, (jnp.zeros((n,), bool), jnp.int32(0)))
    (positions,) = jnp.nonzero(kept, size=max_output_size, fill_value=n)
    valid = positions < n
    safe = jnp.minimum(positions, max(n - 1, 0))
    indices = jnp.where(valid, order[safe], 0).astype(jnp.int32)
    return indices, jnp.where(valid, sorted_scores[safe], 0), count


@op("NonMaxSuppressionWithOverlaps", static=(2,))
def non_max_suppression_with_overlaps(ctx, overlaps, scores, max_output_size, overlap_threshold, score_threshold):
    """Greedy NMS that suppresses a candidate whose given overlap with a kept box exceeds the threshold."""
    indices, _, count = _nms_padded_similarity(
        overlaps, scores, int(max_output_size), overlap_threshold, score_threshold
    )
    return _selected(ctx, count, indices)[0]


def _selected(ctx, count, *outs):
    """Without padding the outputs hold exactly the selected boxes: a run-time length, known when the function
    runs op by op (jaxsm/compile.py); under jax.jit a StaticValueError."""
    n = int(ctx.static(count, "the number of boxes NMS selects (the length of its outputs)"))
    return tuple(o[:n] for o in outs)


@op("NonMaxSuppression", static=(2,))
def non_max_suppression_v1(ctx, boxes, scores, max_output_size):
    iou = float(ctx.attr("iou_threshold", 0.5))
    indices, _, count = _nms_padded(boxes, scores, int(max_output_size), iou, -np.inf)
    return _selected(ctx, count, indices)[0]


@op("NonMaxSuppressionV2", static=(2,))
def non_max_suppression_v2(ctx, boxes, scores, max_output_size, iou_threshold):
    indices, _, count = _nms_padded(boxes, scores, int(max_output_size), iou_threshold, -np.inf)
    return _selected(ctx, count, indices)[0]


@op("NonMaxSuppressionV3", static=(2,))
def non_max_suppression_v3(ctx, boxes, scores, max_output_size, iou_threshold, score_threshold):
    indices, _, count = _nms_padded(boxes, scores, int(max_output_size), iou_threshold, score_threshold)
    return _selected(ctx, count, indices)[0]


@op("NonMaxSuppressionV4", static=(2,))
def non_max_suppression_v4(ctx, boxes, scores, max_output_size, iou_threshold, score_threshold):
    indices, _, count = _nms_padded(boxes, scores, int(max_output_size), iou_threshold, score_threshold)
    if not ctx.attr("pad_to_max_output_size", False):
        (indices,) = _selected(ctx, count, indices)
    return indices, count


def _soft_nms_padded(boxes, scores, max_output_size: int, score_threshold, sigma: float):
    """TF's soft NMS (non_max_suppression_op.cc, DoNonMaxSuppressionOp with soft_nms_sigma > 0): take the highest
    current score above ``score_threshold`` (ties: lower index), then scale every other score by
    exp(-iou^2 / (2 sigma)); TF ignores iou_threshold here. TF rescores lazily from a priority queue, which picks
    the same boxes (the products round in another order). Returns (indices, their scores at selection, count),
    padded with 0."""
    iou = _iou_matrix(boxes)
    scale = _F32(-0.5 / sigma)

    def body(k, carry):
        current, alive, indices, kept, count = carry
        i = jnp.argmax(jnp.where(alive, current, -jnp.inf))
        take = alive[i]
        indices = indices.at[k].set(jnp.where(take, i, 0).astype(jnp.int32))
        kept = kept.at[k].set(jnp.where(take, current[i], 0))
        weight = jnp.exp(scale * iou[i] * iou[i])
        current = jnp.where(take, current * weight, current)
        alive = alive & (current > score_threshold) & (jnp.arange(alive.shape[0]) != i)
        return current, alive, indices, kept, count + take.astype(jnp.int32)

    s = jnp.asarray(scores).astype(_F32)
    init = (s, s > score_threshold, jnp.zeros(max_output_size, jnp.int32), jnp.zeros(max_output_size, _F32), 0)
    _, _, indices, kept, count = lax.fori_loop(0, max_output_size, body, init)
    return indices, kept, jnp.int32(count)


@op("NonMaxSuppressionV5", static=(2, 5))
def non_max_suppression_v5(ctx, boxes, scores, max_output_size, iou_threshold, score_threshold, soft_nms_sigma):
    sigma, size = float(soft_nms_sigma), int(max_output_size)
    if sigma < 0:
        raise ctx.error(f"soft_nms_sigma must be non-negative, got {sigma}")
    if sigma > 0:
        indices, kept_scores, count = _soft_nms_padded(boxes, scores, size, score_threshold, sigma)
    else:
        indices, kept_scores, count = _nms_padded(boxes, scores, size, iou_threshold, score_threshold)
    kept_scores = kept_scores.astype(jnp.result_type(scores))
    if not ctx.attr("pad_to_max_output_size", False):
        indices, kept_scores = _selected(ctx, count, indices, kept_scores)
    return indices, kept_scores, count


def _map_coordinate(c, n: int, mode: str):
    """MapCoordinate (image_ops.h, after scipy.ndimage): fold an input coordinate into [0, n - 1]."""
    if mode == "CONSTANT":
        return c
    if mode != "NEAREST" and n <= 1:
        return jnp.zeros_like(c)
    if mode == "REFLECT":  # [abcd] -> [dcba|abcd|dcba]
        sz2 = 2 * n
        neg = sz2 * jnp.trunc(-c / sz2) + c
        neg = jnp.where(neg < -n, neg + sz2, -neg - 1)
        pos = c - sz2 * jnp.trunc(c / sz2)
        pos = jnp.where(pos >= n, sz2 - pos - 1, pos)
        c = jnp.where(c < 0, neg, jnp.where(c > n - 1, pos, c))
    elif mode == "WRAP":  # [abcd] -> [abcd|abcd|abcd]
        sz = n - 1
        c = jnp.where(c < 0, c + n * (jnp.trunc(-c / sz) + 1), jnp.where(c > n - 1, c - n * jnp.trunc(c / sz), c))
    return jnp.clip(c, 0.0, float(n - 1))


@op("ImageProjectiveTransformV2", "ImageProjectiveTransformV3", static=(2,))
def image_projective_transform(ctx, images, transforms, output_shape, fill_value=None):
    """ProjectiveGenerator (image_ops.h): output pixel (x, y) reads the input at ((a0 x + a1 y + a2) / k,
    (b0 x + b1 y + b2) / k), k = c0 x + c1 y + 1, folded by fill_mode, by NEAREST (std::round) or BILINEAR
    interpolation; pixels outside the input (and k == 0) take fill_value (V3; 0 in V2). Keras' RandomRotation,
    RandomZoom, RandomTranslation and RandomShear use it."""
    mode = str(ctx.attr("fill_mode", "CONSTANT")).upper()
    interpolation = str(ctx.attr("interpolation")).upper()
    if mode not in ("REFLECT", "WRAP", "CONSTANT", "NEAREST") or interpolation not in ("NEAREST", "BILINEAR"):
        raise ctx.error(f"unknown fill_mode {mode!r} or interpolation {interpolation!r}")
    dtype = jnp.result_type(images)
    fill = jnp.asarray(0 if fill_value is None else fill_value, jnp.float32).astype(dtype)
    n, h, w, _ = images.shape
    oh, ow = (int(v) for v in np.asarray(output_shape).reshape(-1))
    t = jnp.broadcast_to(jnp.asarray(transforms, jnp.float32).reshape(-1, 8), (n, 8))
    tk = [t[:, k].reshape(n, 1, 1) for k in range(8)]
    x = jnp.arange(ow, dtype=jnp.float32).reshape(1, 1, ow)
    y = jnp.arange(oh, dtype=jnp.float32).reshape(1, oh, 1)
    proj = tk[6] * x + tk[7] * y + 1.0
    safe = jnp.where(proj == 0, 1.0, proj)
    in_x = _map_coordinate((tk[0] * x + tk[1] * y + tk[2]) / safe, w, mode)
    in_y = _map_coordinate((tk[3] * x + tk[4] * y + tk[5]) / safe, h, mode)
    batch = jnp.arange(n).reshape(n, 1, 1)

    def read(yi, xi):  # read_with_fill_value, [n, oh, ow, c]
        inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        value = images[batch, jnp.clip(yi, 0, h - 1).astype(jnp.int32), jnp.clip(xi, 0, w - 1).astype(jnp.int32)]
        return jnp.where(inside[..., None], value, fill)

    if interpolation == "NEAREST":
        rnd = lambda v: jnp.trunc(v + jnp.where(v < 0, -0.5, 0.5))  # noqa: E731  std::round: halves away from 0
        out = read(rnd(in_y), rnd(in_x))
    else:
        y0, x0 = jnp.floor(in_y), jnp.floor(in_x)
        y1, x1 = y0 + 1, x0 + 1
        f = lambda v: v.astype(jnp.float32)  # noqa: E731
        wx0, wx1 = (x1 - in_x)[..., None], (in_x - x0)[..., None]
        top = wx0 * f(read(y0, x0)) + wx1 * f(read(y0, x1))
        bottom = wx0 * f(read(y1, x0)) + wx1 * f(read(y1, x1))
        out = ((y1 - in_y)[..., None] * top + (in_y - y0)[..., None] * bottom).astype(dtype)
    return jnp.where((proj == 0)[..., None], fill, out)


# -- combined non-max suppression ----------------------------------------------------------------------------
# TF's CPU kernel (non_max_suppression_op.cc, BatchedNonMaxSuppressionOp) keeps, per batch entry and class, a
# std::priority_queue of the boxes above the score threshold (ordered by score alone), pops it greedily into at
# most ``size_per_class`` slots, then std::sort's all classes' slots by score (not stable) and keeps the first
# ``max_total_size``. Equal scores come out in the order libstdc++'s heap and introsort leave them, so without
# ties a plain sort is exact, and with ties those two algorithms are replayed (lax.cond picks the path).


def _rounded(x):
    """``x`` rounded to float32 as it stands: a select keeps LLVM from fusing the multiply that made it into a
    following add (an FMA skips that rounding, which TF's C++ does not)."""
    return jnp.where(x == x, x, jnp.zeros_like(x))


def _iou_against(box, others):
    """TF's IOU(const float* boxes, i, j) of ``box`` [..., 4] against each of ``others`` [..., k, 4], in its
    float32 operation order: corners in any order, 0 when either area is <= 0."""
    box = box[..., None, :]
    ymin_i, ymax_i = jnp.minimum(box[..., 0], box[..., 2]), jnp.maximum(box[..., 0], box[..., 2])
    xmin_i, xmax_i = jnp.minimum(box[..., 1], box[..., 3]), jnp.maximum(box[..., 1], box[..., 3])
    ymin_j, ymax_j = jnp.minimum(others[..., 0], others[..., 2]), jnp.maximum(others[..., 0], others[..., 2])
    xmin_j, xmax_j = jnp.minimum(others[..., 1], others[..., 3]), jnp.maximum(others[..., 1], others[..., 3])
    area_i = _rounded((ymax_i - ymin_i) * (xmax_i - xmin_i))
    area_j = _rounded((ymax_j - ymin_j) * (xmax_j - xmin_j))
    ih = jnp.maximum(jnp.minimum(ymax_i, ymax_j) - jnp.maximum(ymin_i, ymin_j), _F32(0))
    iw = jnp.maximum(jnp.minimum(xmax_i, xmax_j) - jnp.maximum(xmin_i, xmin_j), _F32(0))
    inter = _rounded(ih * iw)
    iou = inter / (area_i + area_j - inter)
    return jnp.where((area_i <= 0) | (area_j <= 0), _F32(0), iou)


def _parent(hole):
    return jnp.maximum(hole - 1, 0) // 2


# The heap steps run one heap per lane: ``key``/``pay`` are flat, lane l's heap starts at ``base[l]``, and
# ``active`` lanes move (a masked one-element scatter per lane and step, rather than vmap's select of the
# whole carry).


def _heap_push(key, pay, base, hole, top, vk, vp, active):
    """libstdc++'s __push_heap (a max-heap under ``<`` on ``key``, ``pay`` moving along): move the hole up while
    its parent is less than the value, then put the value there."""
    drop = key.shape[0]

    def moving(h, k):
        return active & (h > top) & (k[base + _parent(h)] < vk)

    def body(s):
        h, k, p = s
        go, par = moving(h, k), _parent(h)
        at = jnp.where(go, base + h, drop)
        return jnp.where(go, par, h), k.at[at].set(k[base + par], mode="drop"), p.at[at].set(p[base + par], mode="drop")

    h, key, pay = lax.while_loop(lambda s: jnp.any(moving(s[0], s[1])), body, (hole, key, pay))
    at = jnp.where(active, base + h, drop)
    return key.at[at].set(vk, mode="drop"), pay.at[at].set(vp, mode="drop")


def _heap_adjust(key, pay, base, hole, n, vk, vp, active, top=None):
    """libstdc++'s __adjust_heap on the ``n``-element heap at ``base``: move the hole down to a leaf through the
    larger child (the right one unless it is less than the left), then push the value up from there (up to
    ``top``, the hole by default). A hole at n - 1 with ``top`` 0 is std::push_heap's __push_heap."""
    drop = key.shape[0]

    def moving(c):
        return active & (c < (n - 1) // 2)

    def body(s):
        h, c, k, p = s
        go = moving(c)
        right = 2 * (c + 1)
        child = jnp.where(k[base + right] < k[base + right - 1], right - 1, right)
        at = jnp.where(go, base + h, drop)
        k, p = k.at[at].set(k[base + child], mode="drop"), p.at[at].set(p[base + child], mode="drop")
        return jnp.where(go, child, h), jnp.where(go, child, c), k, p

    h, c, key, pay = lax.while_loop(lambda s: jnp.any(moving(s[1])), body, (hole, hole, key, pay))
    only_left = active & ((n & 1) == 0) & (c == (n - 2) // 2)  # a last parent with only a left child
    at = jnp.where(only_left, base + h, drop)
    key = key.at[at].set(key[base + 2 * c + 1], mode="drop")
    pay = pay.at[at].set(pay[base + 2 * c + 1], mode="drop")
    top = hole if top is None else top
    return _heap_push(key, pay, base, jnp.where(only_left, 2 * c + 1, h), top, vk, vp, active)


def _heap_select(scores, cand, boxes, size: int, iou_threshold):
    """DoNMSPerClass with its std::priority_queue replayed, for ``lanes`` classes at once (scores/cand
    [lanes, n], boxes [lanes, n, 4]): the candidates pushed in box order (score-only comparison), popped one at
    a time into the greedy selection of :func:`_greedy_select`."""
    lanes, n = scores.shape
    base = jnp.arange(lanes, dtype=jnp.int32) * n
    count = jnp.sum(cand.astype(jnp.int32), axis=-1)
    rank = jnp.where(cand, jnp.cumsum(cand.astype(jnp.int32), axis=-1) - 1, n)
    box_ids = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (lanes, n))
    pushed = jnp.zeros((lanes, n), jnp.int32).at[jnp.arange(lanes)[:, None], rank].set(box_ids, mode="drop")
    flat_scores = scores.reshape(-1)
    zero = jnp.zeros((lanes,), jnp.int32)
    rows = jnp.arange(lanes)

    def popping(i, t, kept):
        return (i >= count) & (t < count) & (kept < size)

    def step(s):  # a lane pushes its candidates first, then pops (one __adjust_heap to compile for both)
        i, t, kept, idx, chosen, key, pay = s
        pushing, active = i < count, popping(i, t, kept)
        box = boxes[rows, pay[base]]  # the top of the heap
        overlap = (_iou_against(box, chosen) > iou_threshold) & (jnp.arange(size) < kept[:, None])
        take = active & ~jnp.any(overlap, axis=-1)
        slot = jnp.where(take, kept, size)
        idx = idx.at[rows, slot].set(pay[base], mode="drop")
        chosen = chosen.at[rows, slot].set(box, mode="drop")
        j = pushed[rows, jnp.minimum(i, n - 1)]  # push_heap: the next candidate, sifted up from the back
        last = count - 1 - t  # pop_heap: the back element goes to the root's place, sifted from the root
        vk = jnp.where(pushing, flat_scores[base + j], key[base + last])
        vp = jnp.where(pushing, j, pay[base + last])
        at = jnp.where(active, base + last, lanes * n)
        key, pay = key.at[at].set(key[base], mode="drop"), pay.at[at].set(pay[base], mode="drop")
        hole, length = jnp.where(pushing, i, 0), jnp.where(pushing, i + 1, last)
        key, pay = _heap_adjust(key, pay, base, hole, length, vk, vp, pushing | active, top=zero)
        return i + pushing, t + active, kept + take, idx, chosen, key, pay

    empty = (jnp.zeros((lanes * n,), _F32), jnp.zeros((lanes * n,), jnp.int32))
    init = (zero, zero, zero, jnp.zeros((lanes, size), jnp.int32), jnp.zeros((lanes, size, 4), _F32), *empty)
    cond = lambda s: jnp.any((s[0] < count) | popping(*s[:3]))  # noqa: E731
    _, _, kept, idx, *_ = lax.while_loop(cond, step, init)
    return idx, kept


def _sort_descending(values, valid):
    """A stable descending argsort of ``values`` along the last axis (invalid entries last), and whether two
    valid entries are equal (0.0 equals -0.0, as in C++): without ties every sort gives this order."""
    key = jnp.where(valid, -values, jnp.inf)  # valid entries are above -inf
    iota = lax.broadcasted_iota(jnp.int32, key.shape, key.ndim - 1)
    key, order = lax.sort((key, iota), dimension=key.ndim - 1, num_keys=1, is_stable=True)
    return order, jnp.any((key[..., 1:] == key[..., :-1]) & (key[..., :-1] < jnp.inf))


def _introsort_level(key, pay, first, last):
    """One level of libstdc++'s __introsort_loop for every segment longer than 16 (``comp`` is ``<`` on key;
    ``first``/``last``: each position's segment): __move_median_to_first of (first + 1, mid, last - 1), then
    __unguarded_partition around it, vectorized: the k-th element from the left that is not less than the pivot
    swaps with the k-th from the right that the pivot is not less than, while the former lies left of the
    latter; the cut splits the segment."""
    m = key.shape[0]
    pos = jnp.arange(m, dtype=jnp.int32)
    active = last - first > 16
    a, b, c = first + 1, first + (last - first) // 2, last - 1
    ka, kb, kc = key[jnp.minimum(a, m - 1)], key[b], key[jnp.maximum(c, 0)]
    med = jnp.where(
        ka < kb,
        jnp.where(kb < kc, b, jnp.where(ka < kc, c, a)),
        jnp.where(ka < kc, a, jnp.where(kb < kc, c, b)),
    )
    src = jnp.where(active & (pos == first), med, jnp.where(active & (pos == med), first, pos))
    key, pay = key[src], pay[src]
    pivot = key[first]
    inner = active & (pos > first)
    stop_left = inner & ~(key < pivot)  # where the left scan stops
    stop_right = inner & ~(pivot < key)  # where the right scan stops
    cl, cr = jnp.cumsum(jnp.stack([stop_left, stop_right]).astype(jnp.int32), axis=1)  # (one scan to compile)
    rank_left = cl - cl[first]  # 1-based among the segment's left stops, from the left
    right_after = cr[jnp.maximum(last - 1, 0)] - cr  # right stops after this position
    rank_right = right_after + stop_right  # 1-based among the right stops, from the right
    swaps = stop_left & (right_after >= rank_left)
    k = jnp.zeros((m,), jnp.int32).at[first].add(swaps.astype(jnp.int32))[first]  # swaps in the segment
    lefts = jnp.zeros((m,), jnp.int32).at[jnp.where(stop_left, first + rank_left, m)].set(pos, mode="drop")
    rights = jnp.zeros((m,), jnp.int32).at[jnp.where(stop_right, first + rank_right, m)].set(pos, mode="drop")
    swap_right = stop_right & (rank_right <= k)
    src = jnp.where(
        swaps,
        rights[jnp.minimum(first + rank_left, m - 1)],
        jnp.where(swap_right, lefts[jnp.minimum(first + rank_right, m - 1)], pos),
    )
    key, pay = key[src], pay[src]
    n_left = cl[jnp.maximum(last - 1, 0)] - cl[first]
    next_left = jnp.where(k + 1 <= n_left, lefts[jnp.minimum(first + k + 1, m - 1)], m)
    last_right = jnp.where(k >= 1, rights[jnp.minimum(first + k, m - 1)], m)
    cut = jnp.minimum(next_left, last_right)
    first, last = jnp.where(active & (pos >= cut), cut, first), jnp.where(active & (pos < cut), cut, last)
    return key, pay, first, last


def _heap_sort_segment(key, pay, base, n):
    """libstdc++'s __partial_sort(first, last, last): __make_heap then __sort_heap on ``key[base:base + n]``, in
    one loop (one __adjust_heap to compile): step i < half adjusts parent half - 1 - i of the n elements, a
    later one pops the root to the back of the shrinking heap."""
    one, drop = jnp.ones((1,), bool), key.shape[0]
    base, half = jnp.reshape(base, (1,)), (n - 2) // 2 + 1

    def step(i, s):
        key, pay = s
        making = i < half
        length = jnp.where(making, n, n - 1 - (i - half))
        at = jnp.where(making, half - 1 - i, length)  # the element taken out: the parent, or the back one
        vk, vp = key[base + at], pay[base + at]
        back = jnp.where(making, drop, base + at)  # pop_heap: the root goes to the back
        key, pay = key.at[back].set(key[base], mode="drop"), pay.at[back].set(pay[base], mode="drop")
        hole = jnp.zeros((1,), jnp.int32) + jnp.where(making, at, 0)
        return _heap_adjust(key, pay, base, hole, length, vk, vp, one)

    return lax.fori_loop(0, half + n - 1, step, (key, pay))


def _std_sort_order(key):
    """The permutation libstdc++'s std::sort (introsort: median-of-three quicksort down to 16-element pieces,
    heapsort past 2*log2(n) levels, then insertion sort) applies to each row of ``key`` [rows, n] with ``comp``
    = ``<``: the order it leaves equal keys in. The rows are the first segments of one flat array; the closing
    insertion sort is stable, so it is a stable argsort."""
    rows, m = key.shape
    key = jnp.where(key == 0, _F32(0), key)  # -0.0 == 0.0 for comp; XLA's sort orders them
    pay = jnp.broadcast_to(jnp.arange(m, dtype=jnp.int32), (rows, m))
    if m > 16:
        size = rows * m
        first = np.repeat(np.arange(rows, dtype=np.int32) * m, m)
        state = (key.reshape(-1), pay.reshape(-1), first, first + np.int32(m))
        flat, pay, first, last = lax.fori_loop(0, 2 * (m.bit_length() - 1), lambda _, s: _introsort_level(*s), state)
        long = (last - first > 16) & (jnp.arange(size) == first)  # out of depth: heapsorted

        def heapsort_all(s):
            heads = jnp.sort(jnp.where(long, jnp.arange(size, dtype=jnp.int32), size))

            def one(i, s):
                h = heads[i]
                return _heap_sort_segment(*s, h, last[h] - h)

            return lax.fori_loop(0, jnp.sum(long.astype(jnp.int32)), one, s)

        flat, pay = lax.cond(jnp.any(long), heapsort_all, lambda s: s, (flat, pay))
        key, pay = flat.reshape(rows, m), pay.reshape(rows, m)
    return jnp.take_along_axis(pay, jnp.argsort(key, axis=-1, stable=True), axis=-1)


def _greedy_select(boxes, order, count, size: int, iou_threshold):
    """DoNMSPerClass's selection: walk ``order`` (its first ``count`` entries), keep a box unless its IOU with a
    kept one exceeds the threshold, stop at ``size`` kept. Returns (kept box indices [size], how many)."""

    def cond(s):
        t, kept, _, _ = s
        return (t < count) & (kept < size)

    def body(s):
        t, kept, idx, chosen = s
        i = order[t]
        box = boxes[i]
        overlap = (_iou_against(box, chosen) > iou_threshold) & (jnp.arange(size) < kept)
        take = ~jnp.any(overlap)
        slot = jnp.where(take, kept, size)
        idx, chosen = idx.at[slot].set(i, mode="drop"), chosen.at[slot].set(box, mode="drop")
        return t + 1, kept + take.astype(jnp.int32), idx, chosen

    init = (jnp.int32(0), jnp.int32(0), jnp.zeros((size,), jnp.int32), jnp.zeros((size, 4), _F32))
    _, kept, idx, _ = lax.while_loop(cond, body, init)
    return idx, kept


@op("CombinedNonMaxSuppression", static=(2, 3))
def combined_non_max_suppression(
    ctx, boxes, scores, max_output_size_per_class, max_total_size, iou_threshold, score_threshold
):
    """tf.image.combined_non_max_suppression, as TF's CPU kernel: per batch entry and class, greedy hard NMS of
    the boxes scoring above ``score_threshold`` (popped from a score-ordered heap), at most
    ``min(max_output_size_per_class, num_boxes)`` each; then all classes' picks by descending score, the first
    ``max_total_size`` (``min(max_total_size, max_output_size_per_class * num_classes)`` with pad_per_class)
    kept, boxes clipped to [0, 1] with clip_boxes, zero padding. Equal scores keep libstdc++'s order."""
    per_class, total = int(max_output_size_per_class), int(max_total_size)
    if per_class <= 0 or total <= 0:
        raise ctx.error(f"max_output_size_per_class ({per_class}) and max_total_size ({total}) must be positive")
    boxes, scores = jnp.asarray(boxes, _F32), jnp.asarray(scores, _F32)
    if boxes.ndim != 4 or scores.ndim != 3 or boxes.shape[3] != 4 or boxes.shape[:2] != scores.shape[:2]:
        raise ctx.error(
            f"expects boxes [batch, boxes, q, 4] and scores [batch, boxes, classes], got "
            f"{boxes.shape} and {scores.shape}"
        )
    nb, n, q, _ = boxes.shape
    nc = scores.shape[2]
    if q not in (1, nc):
        raise ctx.error(f"the third dimension of boxes must be 1 or the number of classes ({nc}), got {q}")
    size = min(per_class, n)
    out = min(total, per_class * nc) if ctx.attr("pad_per_class", False) else total
    m = size * nc
    if m == 0:  # no boxes (or no classes): nothing selected
        zeros = jnp.zeros((nb, out), _F32)
        return jnp.zeros((nb, out, 4), _F32), zeros, zeros, jnp.zeros((nb,), jnp.int32)
    clip = bool(ctx.attr("clip_boxes", True))
    return _combined_nms(boxes, scores, iou_threshold, score_threshold, size=size, out=out, clip=clip)


@partial(jax.jit, static_argnames=("size", "out", "clip"))
def _combined_nms(boxes, scores, iou_threshold, score_threshold, *, size: int, out: int, clip: bool):
    """The arrays of CombinedNonMaxSuppression (jitted also when a function runs op by op: its loops and
    conds would otherwise be traced and compiled anew at each call)."""
    nb, n, _, _ = boxes.shape
    nc = scores.shape[2]
    m = size * nc
    iou_threshold, score_threshold = jnp.asarray(iou_threshold, _F32), jnp.asarray(score_threshold, _F32)

    class_scores = jnp.swapaxes(scores, 1, 2)  # [batch, class, box]
    class_boxes = jnp.broadcast_to(jnp.swapaxes(boxes, 1, 2), (nb, nc, n, 4))
    cand = class_scores > score_threshold
    count = jnp.sum(cand.astype(jnp.int32), axis=-1)

    order, ties = _sort_descending(class_scores, cand)

    def by_score():
        select = jax.vmap(jax.vmap(lambda b, o, c: _greedy_select(b, o, c, size, iou_threshold)))
        return select(class_boxes, order, count)

    def by_heap():
        flat = (class_scores.reshape(-1, n), cand.reshape(-1, n), class_boxes.reshape(-1, n, 4))
        idx, kept = _heap_select(*flat, size, iou_threshold)
        return idx.reshape(nb, nc, size), kept.reshape(nb, nc)

    # [batch, class, size] box indices, [batch, class] how many
    idx, kept = lax.cond(ties, by_heap, by_score) if n > 1 else by_score()

    # result_candidate_vec: slot (class, rank) -> (score, class, box); empty slots score -inf
    filled = jnp.arange(size) < kept[..., None]
    slot_score = jnp.where(filled, jnp.take_along_axis(class_scores, idx, axis=-1), -jnp.inf).reshape(nb, m)
    slot_box = jnp.take_along_axis(class_boxes, idx[..., None], axis=2).reshape(nb, m, 4)
    slot_class = jnp.broadcast_to(jnp.arange(nc, dtype=_F32)[:, None], (nc, size)).reshape(m)

    perm, ties = _sort_descending(slot_score, filled.reshape(nb, m))
    if m > 16:  # else std::sort is an insertion sort: stable
        perm = lax.cond(ties, lambda: _std_sort_order(-slot_score), lambda: perm)
    perm = perm[:, :out]
    valid = jnp.minimum(jnp.sum(kept, axis=-1), out).astype(jnp.int32)
    keep = jnp.arange(perm.shape[1]) < valid[:, None]
    out_boxes = jnp.take_along_axis(slot_box, perm[..., None], axis=1)
    if clip:
        out_boxes = jnp.maximum(jnp.minimum(out_boxes, _F32(1)), _F32(0))
    out_boxes = jnp.where(keep[..., None], out_boxes, _F32(0))
    out_scores = jnp.where(keep, jnp.take_along_axis(slot_score, perm, axis=1), _F32(0))
    out_classes = jnp.where(keep, slot_class[perm], _F32(0))
    pad = out - perm.shape[1]
    if pad > 0:
        out_boxes = jnp.pad(out_boxes, ((0, 0), (0, pad), (0, 0)))
        out_scores, out_classes = (jnp.pad(x, ((0, 0), (0, pad))) for x in (out_scores, out_classes))
    return out_boxes, out_scores, out_classes, valid


# -- drawing -------------------------------------------------------------------------------------------------
# DefaultColorTable of draw_bounding_box_op.cc (RGBA); grayscale images draw every box in 1.
_BOX_COLORS = np.array(
    [
        [1, 1, 0, 1],
        [0, 0, 1, 1],
        [1, 0, 0, 1],
        [0, 1, 0, 1],
        [0.5, 0, 0.5, 1],
        [0.5, 0.5, 0, 1],
        [0.5, 0, 0, 1],
        [0, 0, 0.5, 1],
        [0, 1, 1, 1],
        [1, 0, 1, 1],
    ],
    _F32,
)


@op("DrawBoundingBoxes", "DrawBoundingBoxesV2")
def draw_bounding_boxes(ctx, images, boxes, colors=None):
    """TF's DrawBoundingBoxesOp: box b (color ``colors[b % len(colors)]``, its first ``depth`` channels; TF's
    table when ``colors`` is empty or absent) is drawn one pixel wide, in box order (later boxes on top), at rows
    ``int64(ymin * (height - 1))`` and ``int64(ymax * (height - 1))`` (float32, truncated toward zero) and the
    like columns, each edge only where it lies inside the image, the edges clamped to it; inverted boxes and
    boxes wholly outside are skipped."""
    if images.ndim != 4 or boxes.ndim != 3 or boxes.shape[0] != images.shape[0] or boxes.shape[2] != 4:
        raise ctx.error(
            f"expects images [batch, h, w, depth] and boxes [batch, n, 4], got {images.shape} and {boxes.shape}"
        )
    nb, h, w, depth = images.shape
    if depth not in (1, 3, 4):
        raise ctx.error(f"images must have 1, 3 or 4 channels, got {depth}")
    if colors is not None and (colors.ndim != 2 or colors.shape[1] < depth):
        raise ctx.error(f"colors must be [n, >= {depth}], got {colors.shape}")
    if colors is None or colors.size == 0:
        table = _BOX_COLORS[:, :depth].copy()
        if depth == 1:
            table[:, 0] = 1
    else:
        table = jnp.asarray(colors, _F32)[:, :depth]
    dtype = jnp.result_type(images)
    table = jnp.asarray(table).astype(dtype)
    canvas = jnp.asarray(images)
    if boxes.shape[1] == 0:
        return canvas
    scale = np.array([h - 1, w - 1, h - 1, w - 1], _F32)
    edges = jnp.trunc(jnp.clip(jnp.asarray(boxes, _F32) * scale, -(2.0**30), 2.0**30)).astype(jnp.int32)
    rows = jnp.arange(h)[None, :, None]
    cols = jnp.arange(w)[None, None, :]

    def draw(b, canvas):
        top, left, bottom, right = (edges[:, b, k][:, None, None] for k in range(4))
        skip = (top > bottom) | (left > right) | (top >= h) | (bottom < 0) | (left >= w) | (right < 0)
        in_cols = (cols >= jnp.maximum(left, 0)) & (cols <= jnp.minimum(right, w - 1))
        in_rows = (rows >= jnp.maximum(top, 0)) & (rows <= jnp.minimum(bottom, h - 1))
        line = ((rows == top) | (rows == bottom)) & in_cols | ((cols == left) | (cols == right)) & in_rows
        return jnp.where((line & ~skip)[..., None], table[b % table.shape[0]], canvas)

    return lax.fori_loop(0, boxes.shape[1], draw, canvas)


# -- audio ---------------------------------------------------------------------------------------------------
@op("AudioSpectrogram")
def audio_spectrogram(ctx, audio):
    """TF's AudioSpectrogram (spectrogram.cc): per channel of ``audio`` [samples, channels], windows of
    ``window_size`` samples every ``stride``, times the periodic Hann window, zero-padded to the next power of
    two, real FFT; output [channels, windows, fft_length / 2 + 1] of ``|X|^2`` (magnitude_squared) or its
    square root. TF works in double; this in float32."""
    size, stride = int(ctx.attr("window_size")), int(ctx.attr("stride"))
    if size < 2 or stride < 1 or audio.ndim != 2:
        raise ctx.error(f"expects 2-D audio, window_size > 1 and stride > 0, got {audio.shape}, {size}, {stride}")
    n, channels = audio.shape
    fft_length = 1 << (size - 1).bit_length()
    frames = 0 if n < size else 1 + (n - size) // stride
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / size)).astype(_F32)
    x = jnp.asarray(audio, _F32).T  # [channels, samples]
    taps = np.arange(frames)[:, None] * stride + np.arange(size)[None, :]
    spectrum = jnp.fft.rfft(x[:, taps] * window, n=fft_length, axis=-1)
    power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
    return power if ctx.attr("magnitude_squared", False) else jnp.sqrt(power)


def _mel_weights(xp, sample_rate, n: int, channels: int, lower: float, upper: float):
    """MfccMelFilterbank::Initialize: ([n, channels] weights of each spectrogram bin's magnitude in each mel
    channel, which bins it reads, whether it reaches past the spectrum). A bin between two mel centre
    frequencies gives ``w`` to the lower channel and ``1 - w`` to the upper; only bins in
    [start_index, end_index] count. NumPy float64 (TF's double) for a known sample rate, jax float32 for a
    run-time one."""
    dtype = np.float64 if xp is np else _F32
    mel = lambda f: 1127.0 * xp.log1p(f / 700.0)  # noqa: E731
    mel_low, mel_high = mel(xp.asarray(lower, dtype)), mel(xp.asarray(upper, dtype))
    centers = mel_low + (mel_high - mel_low) / (channels + 1) * xp.arange(1, channels + 2, dtype=dtype)
    hz_per_bin = 0.5 * xp.asarray(sample_rate, dtype) / (n - 1)
    start, end = xp.floor(1.5 + lower / hz_per_bin), xp.floor(upper / hz_per_bin)
    bins = xp.arange(n, dtype=dtype)
    used = (bins >= start) & (bins <= end)
    melf = mel(bins * hz_per_bin)
    band = xp.sum((centers[None, :channels] < melf[:, None]).astype(np.int32), axis=1) - 1
    upper_center = centers[band + 1]
    lower_center = xp.where(band >= 0, centers[xp.maximum(band, 0)], mel_low)
    w = xp.where(used, (upper_center - melf) / (upper_center - lower_center), 0)
    cols = xp.arange(channels)[None, :]
    weights = xp.where(used[:, None] & (cols == band[:, None]), w[:, None], 0) + xp.where(
        used[:, None] & (cols == band[:, None] + 1), 1 - w[:, None], 0
    )
    return weights.astype(_F32), used, end >= n


@op("Mfcc")
def mfcc(ctx, spectrogram, sample_rate):
    """TF's Mfcc (mfcc.cc, mfcc_mel_filterbank.cc, mfcc_dct.cc) of a squared-magnitude spectrogram
    [channels, frames, bins]: the mel filterbank of the bins' magnitudes, ``log(max(., 1e-12))``, then the
    first ``dct_coefficient_count`` DCT-II coefficients (scaled by sqrt(2 / filterbank_channel_count)). When
    upper_frequency_limit lies past the spectrum TF's filterbank gives up and the output is zeros."""
    upper, lower = float(ctx.attr("upper_frequency_limit", 4000.0)), float(ctx.attr("lower_frequency_limit", 20.0))
    channels, coefficients = int(ctx.attr("filterbank_channel_count", 40)), int(ctx.attr("dct_coefficient_count", 13))
    n = spectrogram.shape[-1]
    if spectrogram.ndim != 3 or n < 2 or channels < 1 or not 1 <= coefficients <= channels:
        raise ctx.error(
            f"expects a 3-D spectrogram of >= 2 bins and 1 <= dct_coefficient_count <= "
            f"filterbank_channel_count, got {spectrogram.shape}, {coefficients}, {channels}"
        )
    if not 0 <= lower < upper:
        raise ctx.error(f"needs 0 <= lower_frequency_limit < upper_frequency_limit, got {lower}, {upper}")
    rate = to_static(sample_rate)
    if rate is not None and int(rate) <= 0:
        raise ctx.error(f"sample_rate must be positive, got {int(rate)}")
    xp = np if rate is not None else jnp
    weights, used, past_end = _mel_weights(xp, sample_rate if rate is None else rate, n, channels, lower, upper)
    x = jnp.asarray(spectrogram, _F32)
    magnitude = jnp.sqrt(jnp.where(used, x, _F32(0)))  # bins outside the filterbank are never read
    mel = jnp.einsum("...b,bc->...c", magnitude, weights, precision=lax.Precision.HIGHEST)
    logs = jnp.log(jnp.maximum(mel, _F32(1e-12)))
    i, j = np.arange(coefficients)[:, None], np.arange(channels)[None, :]
    dct = (np.sqrt(2.0 / channels) * np.cos(i * (np.pi / channels) * (j + 0.5))).astype(_F32)
    out = jnp.einsum("...c,kc->...k", logs, dct, precision=lax.Precision.HIGHEST)
    return jnp.where(past_end, _F32(0), out)
