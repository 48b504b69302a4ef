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


# -- gradient ops --------------------------------------------------------------------------------------------
@JIT
@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resize_bicubic_grad(mode, dtype, jit):
    image = _image((2, 5, 4, 3), dtype)
    grads = np.random.RandomState(1).normal(size=(2, 7, 3, 3)).astype(np.float32)

    def fn(image, grads):
        return tf.raw_ops.ResizeBicubicGrad(grads=grads, original_image=image, **mode)

    assert_matches_tf(fn, [image, grads], jit=jit, **TAPS)


@JIT
@pytest.mark.parametrize("kernel", ["lanczos3", "keyscubic"])
@pytest.mark.parametrize("antialias", [True, False])
def test_scale_and_translate_grad(kernel, antialias, jit):
    image = _image((1, 6, 5, 2))
    grads = np.random.RandomState(2).normal(size=(1, 4, 8, 2)).astype(np.float32)

    def fn(image, grads):
        return tf.raw_ops.ScaleAndTranslateGrad(
            grads=grads,
            original_image=image,
            scale=[0.7, 1.6],
            translation=[0.5, -1.0],
            kernel_type=kernel,
            antialias=antialias,
        )

    assert_matches_tf(fn, [image, grads], jit=jit, **TAPS)


@JIT
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("crop", [(3, 4), (1, 1)])
def test_crop_and_resize_grads(method, crop, jit):
    """Boxes partly outside the image, flipped, and on exact pixel rows (where floor == ceil)."""
    image = _image((2, 6, 5, 3))
    boxes = np.array(
        [[0.1, 0.2, 0.8, 0.9], [-0.2, 0.5, 0.5, 1.3], [0.9, 0.8, 0.2, 0.1], [0.2, 0.0, 0.6, 0.5]], np.float32
    )
    box_ind = np.array([0, 1, 1, 0], np.int32)
    grads = np.random.RandomState(3).normal(size=(4, *crop, 3)).astype(np.float32)

    def fn(image, boxes, box_ind, grads):
        out = {
            "image": tf.raw_ops.CropAndResizeGradImage(
                grads=grads, boxes=boxes, box_ind=box_ind, image_size=[2, 6, 5, 3], T=tf.float32, method=method
            )
        }
        if method == "bilinear":
            out["boxes"] = tf.raw_ops.CropAndResizeGradBoxes(grads=grads, image=image, boxes=boxes, box_ind=box_ind)
        return out

    assert_matches_tf(fn, [image, boxes, box_ind, grads], jit=jit, rtol=1e-4, atol=1e-3)


@JIT
@pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")
@pytest.mark.parametrize("max_out,overlap,score", [(4, 0.5, -1.0), (10, 0.3, 0.2), (2, 0.9, 0.0), (0, 0.5, 0.0)])
def test_non_max_suppression_with_overlaps(max_out, overlap, score, jit):
    """An asymmetric overlap matrix (the candidate's row is read) and tied scores (lower index first)."""
    rng = np.random.RandomState(4)
    overlaps = rng.uniform(0, 1, (6, 6)).astype(np.float32)
    scores = np.array([0.9, 0.5, 0.9, 0.1, 0.7, 0.3], np.float32)

    def fn(overlaps, scores):
        return tf.raw_ops.NonMaxSuppressionWithOverlaps(
            overlaps=overlaps,
            scores=scores,
            max_output_size=max_out,
            overlap_threshold=overlap,
            score_threshold=score,
        )

    assert_matches_tf(fn, [overlaps, scores], jit=jit)


GLIMPSE_OFFSETS = np.array([[0.9, -0.9], [0.1, 0.2], [-0.35, 0.6]], np.float32)


@JIT
@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("normalized,centered", [(True, True), (True, False), (False, True), (False, False)])
def test_extract_glimpse_zero_noise(normalized, centered, v2, jit):
    """Offsets partly outside the image (rows and columns, negative ones truncated toward zero)."""
    image = _image((3, 5, 6, 2))
    offsets = GLIMPSE_OFFSETS if normalized else (GLIMPSE_OFFSETS * [[4], [6], [3]]).astype(np.float32)
    op = tf.raw_ops.ExtractGlimpseV2 if v2 else tf.raw_ops.ExtractGlimpse

    def fn(image, offsets):
        return op(
            input=image,
            size=[3, 4],
            offsets=offsets,
            normalized=normalized,
            centered=centered,
            uniform_noise=False,
            noise="zero",
        )

    assert_matches_tf(fn, [image, offsets], jit=jit)


@pytest.mark.parametrize("noise", ["uniform", "gaussian"])
def test_extract_glimpse_random_noise(noise):
    """TF's noise comes from Eigen's unseeded generators: only the in-image pixels are compared; the noise must
    lie in the image's value range."""
    from tests.tfcompare import run_jaxsm, save_function

    image = _image((3, 5, 6, 2))

    def fn(image, offsets):
        return tf.raw_ops.ExtractGlimpseV2(input=image, size=[4, 4], offsets=offsets, uniform_noise=False, noise=noise)

    export_dir, tf_fn = save_function(fn, [image, GLIMPSE_OFFSETS])
    expected = tf_fn(image, GLIMPSE_OFFSETS).numpy()
    got = np.asarray(run_jaxsm(export_dir, [image, GLIMPSE_OFFSETS]))
    zeros = np.asarray(
        tf.raw_ops.ExtractGlimpseV2(
            input=image + 1, size=[4, 4], offsets=GLIMPSE_OFFSETS, uniform_noise=False, noise="zero"
        )
    )
    inside = zeros != 0
    np.testing.assert_array_equal(got[inside], expected[inside], err_msg="in-image pixels")
    assert (~inside).any(), "the test needs pixels outside the image"
    assert got.min() >= image.min() and got.max() <= image.max(), "noise within the image's range"
