"""TF API functions built from many ops (tf.signal, tf.image, tf.nn, tf.math, tf.experimental.numpy), saved as
SavedModels and compared with TF: composites exercise op combinations per-op tests do not."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from tests.tfcompare import assert_matches_tf  # noqa: E402

img = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype(np.float32)
sig = np.random.default_rng(1).normal(size=(2, 256)).astype(np.float32)
cases = {
    "stft": (lambda s: tf.abs(tf.signal.stft(s, 64, 32)), [sig]),
    "frame": (lambda s: tf.signal.frame(s, 32, 16), [sig]),
    "mfcc": (
        lambda s: tf.signal.mfccs_from_log_mel_spectrograms(
            tf.math.log(
                tf.tensordot(tf.abs(tf.signal.stft(s, 64, 32)), tf.signal.linear_to_mel_weight_matrix(8, 33, 8000.0), 1)
                + 1e-6
            )
        ),
        [sig],
    ),
    "ssim": (lambda a: tf.image.ssim(a, a * 0.9, 1.0, filter_size=5), [img]),
    "psnr_tv": (lambda a: (tf.image.psnr(a, a * 0.9, 1.0), tf.image.total_variation(a)), [img]),
    "gray_std": (lambda a: (tf.image.rgb_to_grayscale(a), tf.image.per_image_standardization(a)), [img]),
    "sobel": (lambda a: tf.image.sobel_edges(a), [img]),
    "moments": (lambda s: tf.nn.moments(s, axes=[1]), [sig]),
    "clip_norm": (lambda s: (tf.clip_by_norm(s, 1.0), tf.clip_by_global_norm([s, s * 2], 1.0)[0]), [sig]),
    "l2norm_lse": (lambda s: (tf.nn.l2_normalize(s, 1), tf.math.reduce_logsumexp(s, 1)), [sig]),
    "histogram": (lambda s: tf.histogram_fixed_width(s, [-2.0, 2.0], nbins=10), [sig]),
    "confusion": (
        lambda s: tf.math.confusion_matrix(
            tf.cast(s[0, :10] > 0, tf.int32), tf.cast(s[1, :10] > 0, tf.int32), num_classes=2
        ),
        [sig],
    ),
    "polyval": (lambda s: tf.math.polyval([1.0, -2.0, 3.0], s), [sig]),
    "searchsorted": (lambda s: tf.searchsorted(tf.sort(s[0]), s[1]), [sig]),
    "bincount_static": (
        lambda s: tf.math.bincount(tf.cast(tf.abs(s) * 3, tf.int32), minlength=12, maxlength=12),
        [sig],
    ),
    "resize_methods": (
        lambda a: [
            tf.image.resize(a, [9, 7], m)
            for m in ("bilinear", "nearest", "bicubic", "area", "lanczos3", "mitchellcubic", "gaussian")
        ],
        [img],
    ),
    "crop_pad": (
        lambda a: (
            tf.image.resize_with_crop_or_pad(a, 10, 20),
            tf.image.central_crop(a, 0.5),
            tf.image.flip_left_right(a),
            tf.image.rot90(a),
        ),
        [img],
    ),
    "adjust": (
        lambda a: (
            tf.image.adjust_brightness(a, 0.1),
            tf.image.adjust_contrast(a, 1.5),
            tf.image.adjust_gamma(a, 2.0),
            tf.image.adjust_saturation(a, 0.5),
            tf.image.adjust_hue(a, 0.1),
        ),
        [img],
    ),
    "np_api": (lambda s: tf.experimental.numpy.cumsum(tf.experimental.numpy.clip(s, -1, 1), axis=1), [sig]),
    "dilation2d": (
        lambda a: tf.nn.dilation2d(a, tf.zeros([3, 3, 3]), [1, 1, 1, 1], "SAME", "NHWC", [1, 1, 1, 1]),
        [img],
    ),
    "lrn_pool_with_argmax": (
        lambda a: (tf.nn.local_response_normalization(a), tf.nn.max_pool_with_argmax(a, 2, 2, "SAME")[0]),
        [img],
    ),
    "cumulative": (
        lambda s: (tf.math.cumulative_logsumexp(s, 1), tf.math.reduce_variance(s, 1), tf.math.reduce_std(s)),
        [sig],
    ),
    "special": (
        lambda s: (tf.math.lgamma(tf.abs(s) + 1), tf.math.bessel_i0e(s), tf.math.erfinv(tf.tanh(s) * 0.9)),
        [sig],
    ),
}


@pytest.mark.parametrize("name", sorted(cases))
def test_tf_api_function(name):
    fn, inputs = cases[name]
    # 1e-4: composites chain many float32 ops (FFTs, convolutions, resize kernels)
    assert_matches_tf(fn, inputs, rtol=1e-4, atol=1e-5)
