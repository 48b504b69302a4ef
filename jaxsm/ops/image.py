"""Image ops: resizing (bilinear, nearest, bicubic, area, scale-and-translate), crop-and-resize, color
adjustments and padded non-max suppression.

Resize coordinates, weights and rounding reproduce TF's CPU kernels
(tensorflow/core/kernels/image/resize_*_op.cc, scale_and_translate_op.cc, crop_and_resize_op.cc) in float32,
as TF computes them. Output sizes are static (``size`` inputs must be known at trace time), so sampling
positions and weights are NumPy constants; only the pixel arithmetic is traced.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

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


# -- crop and resize -----------------------------------------------------------------------------------------
def _crop_coords(lo, hi, image_size: int, crop_size: int):
    """Sample positions of TF's CropAndResize along one axis: ``[n, crop_size]`` float32."""
    if crop_size > 1:
        step = (hi - lo) * _F32(image_size - 1) / _F32(crop_size - 1)
        return lo[:, None] * _F32(image_size - 1) + np.arange(crop_size, dtype=_F32) * step[:, None]
    # TF multiplies by a double 0.5 here; float32 differs only in the last bit of the sample position.
    return (_F32(0.5) * (lo + hi) * _F32(image_size - 1))[:, None]


@op("CropAndResize", static=(3,))
def crop_and_resize(ctx, images, boxes, box_ind, crop_size):
    """TF's CropAndResize (bilinear or nearest). Samples outside the image take ``extrapolation_value``. TF
    raises for a box index outside the batch; a compiled function cannot, so such indices are clamped."""
    ch, cw = (int(s) for s in np.asarray(crop_size).reshape(-1))
    method = ctx.attr("method", "bilinear")
    if method not in ("bilinear", "nearest"):
        raise ctx.error(f"unknown method {method!r}")
    extrapolation = float(ctx.attr("extrapolation_value", 0.0))
    _, h, w, _ = images.shape
    boxes = jnp.asarray(boxes).astype(_F32)
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


def _round_half_away_jnp(x):
    t = jnp.trunc(x)
    return t + jnp.where(jnp.abs(x - t) >= 0.5, jnp.sign(x), 0)


# -- color ---------------------------------------------------------------------------------------------------
@op("AdjustContrastv2")
def adjust_contrast_v2(ctx, images, contrast_factor):
    x = jnp.asarray(images)
    mean = jnp.mean(x.astype(_F32), axis=(-3, -2), keepdims=True)
    return ((x - mean) * contrast_factor + mean).astype(x.dtype)


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
    n = scores.shape[0]
    order = jnp.argsort(-jnp.asarray(scores), stable=True)
    sorted_scores = jnp.asarray(scores)[order]
    iou = _iou_matrix(boxes)[order][:, order]

    def body(k, carry):
        kept, count = carry
        suppressed = jnp.any(kept & (iou[k] > iou_threshold))
        take = (sorted_scores[k] > score_threshold) & ~suppressed & (count < max_output_size)
        return kept.at[k].set(take), count + take.astype(jnp.int32)

    kept, count = lax.fori_loop(0, n, body, (jnp.zeros((n,), bool), jnp.int32(0)))
    (positions,) = jnp.nonzero(kept, size=max_output_size, fill_value=n)
    valid = positions < n
    safe = jnp.minimum(positions, max(n - 1, 0))
    indices = jnp.where(valid, order[safe], 0).astype(jnp.int32)
    return indices, jnp.where(valid, sorted_scores[safe], 0), count


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


@op("NonMaxSuppressionV5", static=(2, 5))
def non_max_suppression_v5(ctx, boxes, scores, max_output_size, iou_threshold, score_threshold, soft_nms_sigma):
    if float(soft_nms_sigma) != 0.0:
        raise ctx.error("soft NMS (soft_nms_sigma > 0) re-queues rescored boxes; only hard NMS is supported")
    indices, kept_scores, count = _nms_padded(boxes, scores, int(max_output_size), iou_threshold, score_threshold)
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
