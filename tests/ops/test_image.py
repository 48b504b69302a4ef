"""Image ops against TF: resizes, scale-and-translate, crop-and-resize, color adjustments, padded NMS."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.tfcompare import assert_matches_tf  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])
# Interpolations sum several weighted taps; XLA may fuse them into FMAs that round differently from TF's
# loops.
TAPS = dict(rtol=1e-5, atol=1e-5)


def _image(shape, dtype=np.float32, seed=0):
    x = np.random.RandomState(seed).uniform(0, 255, shape)
    return x.astype(dtype)


MODES = [
    dict(align_corners=False, half_pixel_centers=False),
    dict(align_corners=True, half_pixel_centers=False),
    dict(align_corners=False, half_pixel_centers=True),
]
SIZES = [(4, 5), (13, 11), (1, 1), (7, 16)]


@JIT
@pytest.mark.parametrize("mode", range(len(MODES)))
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.float64])
def test_resize_bilinear_nearest_bicubic(mode, dtype, jit):
    x = _image((2, 7, 8, 3), dtype)
    m = MODES[mode]

    def fn(x):
        outs = []
        for size in SIZES:
            outs += [
                tf.raw_ops.ResizeBilinear(images=x, size=size, **m),
                tf.raw_ops.ResizeNearestNeighbor(images=x, size=size, **m),
                tf.raw_ops.ResizeBicubic(images=x, size=size, **m),
            ]
        return outs

    assert_matches_tf(fn, [x], **TAPS, jit=jit)


@JIT
@pytest.mark.parametrize("mode", range(len(MODES)))
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_resize_gradients(mode, dtype, jit):
    """ResizeBilinearGrad / ResizeNearestNeighborGrad (what GradientTape records for the resizes: Keras
    UpSampling2D, tf.image.resize in a saved training step), up and down, every coordinate mode."""
    m = MODES[mode]
    image = _image((2, 7, 8, 3), dtype) / 255
    grads = [_image((2, h, w, 3), np.float32, seed=h) / 255 for h, w in SIZES]

    def fn(image, *grads):
        outs = []
        for g in grads:
            outs.append(tf.raw_ops.ResizeBilinearGrad(grads=g, original_image=image, **m))
            outs.append(tf.raw_ops.ResizeNearestNeighborGrad(grads=tf.cast(g, image.dtype), size=[7, 8], **m))
        return outs

    tol = TAPS if dtype == np.float32 else dict(rtol=2e-3, atol=2e-3)
    assert_matches_tf(fn, [image, *grads], **tol, jit=jit)


@JIT
@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_resize_area(align, dtype, jit):
    x = _image((2, 9, 8, 3), dtype)
    assert_matches_tf(
        lambda x: [
            tf.raw_ops.ResizeArea(images=x, size=s, align_corners=align)
            for s in [(4, 5), (3, 3), (13, 11), (9, 8), (1, 2), (5, 12)]
        ],
        [x],
        **TAPS,
        jit=jit,
    )


@JIT
def test_resize_dynamic_batch_and_static_size(jit):
    x = _image((2, 6, 5, 1))
    assert_matches_tf(
        lambda x: tf.image.resize(x, tf.shape(x)[1:3] * 2, method="bilinear"),
        [x],
        **TAPS,
        jit=jit,
        shapes=[(None, 6, 5, 1)],
    )


@JIT
@pytest.mark.parametrize(
    "kernel",
    ["lanczos1", "lanczos3", "lanczos5", "gaussian", "box", "triangle", "keyscubic", "mitchellcubic"],
)
@pytest.mark.parametrize("antialias", [True, False])
def test_scale_and_translate(kernel, antialias, jit):
    x = _image((1, 12, 10, 2))

    def fn(x):
        return [
            tf.raw_ops.ScaleAndTranslate(
                images=x, size=size, scale=scale, translation=trans, kernel_type=kernel, antialias=antialias
            )
            for size, scale, trans in [
                ((5, 4), (5 / 12, 0.4), (0.0, 0.0)),
                ((20, 23), (20 / 12, 2.3), (0.5, -1.25)),
                ((8, 9), (0.7, 1.1), (2.0, 1.0)),
            ]
        ]

    assert_matches_tf(fn, [x], **TAPS, jit=jit)


@JIT
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_crop_and_resize(method, jit):
    images = _image((2, 9, 8, 3))
    boxes = np.array(
        [
            [0.1, 0.2, 0.7, 0.9],
            [-0.2, -0.1, 1.3, 1.2],
            [0.8, 0.9, 0.1, 0.2],
            [0.5, 0.5, 0.5, 0.5],
            [0.0, 0.0, 1.0, 1.0],
        ],
        np.float32,
    )
    box_ind = np.array([0, 1, 1, 0, 1], np.int32)

    def fn(images, boxes, box_ind):
        return [
            tf.raw_ops.CropAndResize(
                image=images,
                boxes=boxes,
                box_ind=box_ind,
                crop_size=size,
                method=method,
                extrapolation_value=ext,
            )
            for size, ext in [((4, 5), 0.0), ((1, 1), -1.0), ((7, 2), 3.5), ((1, 6), 0.0)]
        ]

    assert_matches_tf(fn, [images, boxes, box_ind], **TAPS, jit=jit)


@JIT
def test_crop_and_resize_uint8(jit):
    images = _image((1, 6, 6, 1), np.uint8)
    boxes = np.array([[0.0, 0.0, 0.5, 1.0]], np.float32)
    assert_matches_tf(lambda i, b: tf.image.crop_and_resize(i, b, [0], [3, 4]), [images, boxes], **TAPS, jit=jit)


def _rgb(seed=0):
    rgb = np.random.RandomState(seed).uniform(0, 1, (2, 5, 4, 3)).astype(np.float32)
    rgb[0, 0] = [[0.5, 0.5, 0.5], [0, 0, 0], [1, 0, 0], [0.2, 0.2, 0.9]]  # grey, black, pure, ties
    rgb[0, 1] = [[0.3, 0.7, 0.7], [0.9, 0.1, 0.9], [0.4, 0.4, 0.1], [1, 1, 1]]
    return rgb


@JIT
def test_color_conversions(jit):
    rgb = _rgb()
    hsv = np.random.RandomState(1).uniform(0, 1, (3, 4, 3)).astype(np.float32)
    hsv[0, 0] = [0.0, 0.0, 0.5]
    assert_matches_tf(
        lambda rgb, hsv: (
            tf.raw_ops.RGBToHSV(images=rgb),
            tf.raw_ops.HSVToRGB(images=hsv),
            tf.raw_ops.RGBToHSV(images=tf.cast(rgb, tf.float64)),
        ),
        [rgb, hsv],
        rtol=1e-6,
        atol=1e-7,
        jit=jit,
    )


@JIT
@pytest.mark.parametrize("amount", [-0.9, -0.3, 0.0, 0.25, 0.75])
def test_color_adjustments(amount, jit):
    rgb = _rgb()
    assert_matches_tf(
        lambda rgb: (
            tf.raw_ops.AdjustHue(images=rgb, delta=amount),
            tf.raw_ops.AdjustSaturation(images=rgb, scale=abs(amount) * 3),
            tf.raw_ops.AdjustContrastv2(images=rgb, contrast_factor=amount * 4),
        ),
        [rgb],
        rtol=1e-5,
        atol=1e-6,
        jit=jit,
    )


def _boxes(n, seed=0):
    r = np.random.RandomState(seed)
    yx = r.uniform(0, 1, (n, 2))
    hw = r.uniform(0.05, 0.4, (n, 2))
    boxes = np.concatenate([yx, yx + hw], axis=1).astype(np.float32)
    boxes[1] = boxes[0][[2, 3, 0, 1]]  # flipped corners: same box as 0
    boxes[2] = [0.5, 0.5, 0.5, 0.9]  # no area
    scores = r.uniform(0, 1, n).astype(np.float32)
    scores[3] = scores[4]  # a tie: lower index first
    return boxes, scores


def _nms_v4_v5(boxes, scores, max_out, iou, score, pad):
    kw = dict(boxes=boxes, scores=scores, max_output_size=max_out, iou_threshold=iou, score_threshold=score)
    v4 = tf.raw_ops.NonMaxSuppressionV4(**kw, pad_to_max_output_size=pad)
    v5 = tf.raw_ops.NonMaxSuppressionV5(**kw, soft_nms_sigma=0.0, pad_to_max_output_size=pad)
    return tuple(v4) + tuple(v5)


@JIT
@pytest.mark.parametrize("max_out,iou,score", [(5, 0.5, 0.0), (40, 0.3, 0.2), (10, 0.0, -1.0), (3, 1.0, 0.9)])
def test_non_max_suppression_padded(max_out, iou, score, jit):
    boxes, scores = _boxes(30)

    def fn(boxes, scores):
        return _nms_v4_v5(boxes, scores, max_out, iou, score, pad=True)

    assert_matches_tf(fn, [boxes, scores], jit=jit)


@pytest.mark.parametrize("max_out,iou,score", [(5, 0.5, 0.0), (40, 0.3, 0.2), (3, 1.0, 0.9)])
def test_non_max_suppression_unpadded_runs_op_by_op(max_out, iou, score):
    """tf.image.non_max_suppression (V3) and unpadded V4/V5 return as many indices as boxes kept: a run-time
    length, so a call runs op by op (EagerFallbackWarning) and matches TF."""
    from jaxsm.errors import EagerFallbackWarning

    boxes, scores = _boxes(30)

    def fn(boxes, scores):
        v2 = tf.raw_ops.NonMaxSuppressionV2(boxes=boxes, scores=scores, max_output_size=max_out, iou_threshold=iou)
        v3 = tf.image.non_max_suppression(boxes, scores, max_out, iou, score)
        v1 = tf.raw_ops.NonMaxSuppression(boxes=boxes, scores=scores, max_output_size=max_out, iou_threshold=iou)
        return (v1, v2, v3) + _nms_v4_v5(boxes, scores, max_out, iou, score, pad=False)

    with pytest.warns(EagerFallbackWarning):
        assert_matches_tf(fn, [boxes, scores], jit=True)


_PROJECTIVE = np.array(
    [[0.9, -0.3, 1.2, 0.25, 1.1, -0.7, 0.01, -0.02], [1.3, 0.1, -2.5, -0.2, 0.8, 3.1, 0.0, 0.0]], np.float32
)


@JIT
@pytest.mark.parametrize("mode", ["REFLECT", "WRAP", "CONSTANT", "NEAREST"])
@pytest.mark.parametrize("interpolation", ["NEAREST", "BILINEAR"])
def test_image_projective_transform(mode, interpolation, jit):
    img = np.random.default_rng(0).uniform(0, 1, (2, 5, 6, 3)).astype(np.float32)

    def fn(x, t):
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=t, output_shape=[7, 4], fill_value=0.5, interpolation=interpolation, fill_mode=mode
        )

    assert_matches_tf(fn, [img, _PROJECTIVE], rtol=1e-5, atol=1e-5, jit=jit)


def test_image_projective_transform_v2_uint8_one_transform():
    img = (np.random.default_rng(1).uniform(0, 1, (2, 5, 6, 3)) * 255).astype(np.uint8)

    def fn(x, t):
        return tf.raw_ops.ImageProjectiveTransformV2(
            images=x, transforms=t, output_shape=[5, 6], interpolation="BILINEAR", fill_mode="REFLECT"
        )

    assert_matches_tf(fn, [img, _PROJECTIVE[:1]])
