"""CombinedNonMaxSuppression, DrawBoundingBoxes(V2), AudioSpectrogram and Mfcc against TF."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.tfcompare import assert_matches_tf  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])
# Every output shape here is static: with jit=True the functions must compile, not run op by op.
pytestmark = pytest.mark.filterwarnings("error::jaxsm.errors.EagerFallbackWarning")


# -- CombinedNonMaxSuppression -------------------------------------------------------------------------------
def _detections(batch, n, q, classes, seed=0, levels=None):
    """Boxes [batch, n, q, 4] (some corners flipped, some past [0, 1]) and scores [batch, n, classes]; with
    ``levels`` the scores take only that many values (many ties)."""
    r = np.random.default_rng(seed)
    yx = r.uniform(-0.2, 1.0, (batch, n, q, 2))
    hw = r.uniform(0.05, 0.5, (batch, n, q, 2))
    boxes = np.concatenate([yx, yx + hw], axis=-1).astype(np.float32)
    boxes[:, ::7] = boxes[:, ::7][..., [2, 3, 0, 1]]  # flipped corners: the same boxes
    if levels is None:
        scores = r.permutation(batch * n * classes).reshape(batch, n, classes) / (batch * n * classes)
    else:
        scores = r.integers(1, levels + 1, (batch, n, classes)) / levels
    return boxes, scores.astype(np.float32)


# (max_output_size_per_class, max_total_size, iou_threshold, score_threshold, pad_per_class, clip_boxes)
_CONFIGS = [
    (5, 12, 0.5, 0.1, False, True),
    (8, 100, 0.3, 0.0, False, False),  # max_total_size past every candidate: zero padding
    (8, 100, 0.3, 0.0, True, True),  # pad_per_class: 8 * classes outputs
    (3, 7, 0.7, 0.5, True, False),  # pad_per_class, max_total_size the smaller
    (40, 30, 0.0, -1.0, False, True),  # iou 0: any overlap suppresses; more per class than boxes
    (4, 9, 1.0, 0.2, False, True),  # iou 1: nothing suppresses
]


def _combined(boxes, scores, configs=_CONFIGS):
    outs = []
    for per_class, total, iou, score, pad, clip in configs:
        outs += tf.image.combined_non_max_suppression(boxes, scores, per_class, total, iou, score, pad, clip)
    return outs


@JIT
@pytest.mark.parametrize("q", ["shared", "per_class"])
def test_combined_nms(q, jit):
    boxes, scores = _detections(2, 30, 1 if q == "shared" else 4, 4)
    assert_matches_tf(_combined, [boxes, scores], jit=jit)


@JIT
@pytest.mark.parametrize("q,levels", [("shared", 3), ("per_class", 3), ("shared", 7)])
def test_combined_nms_ties(q, levels, jit):
    """Many equal scores: TF's per-class std::priority_queue pops equal boxes in heap order and its std::sort
    of the candidates (more than 16 here, so not just an insertion sort) is not stable; the boxes and classes
    returned for equal scores follow both."""
    boxes, scores = _detections(2, 40, 1 if q == "shared" else 5, 5, seed=levels, levels=levels)
    configs = [_CONFIGS[0], _CONFIGS[2], _CONFIGS[4]]
    assert_matches_tf(lambda b, s: _combined(b, s, configs), [boxes, scores], jit=jit)


# Scores (60 - v) / 64 for one box in 48 classes, from McIlroy's quicksort adversary against libstdc++'s
# introsort: it runs out of depth and heapsorts the 28 equal entries.
_ADVERSARY = [53, 1, 53, 3, 53, 5, 53, 7, 53, 9, 53, 11, 53, 13, 53, 15, 53, 17, 53, 19, 53, 53, 53, 53]
_ADVERSARY += [0, 2, 4, 6, 8, 10, 12, 14, 16, 18] + [53] * 14


@JIT
def test_combined_nms_introsort_heapsort_fallback(jit):
    scores = (60 - np.array([_ADVERSARY, _ADVERSARY[::-1]], np.float32)[:, None, :]) / 64
    boxes = np.tile(np.array([0.1, 0.2, 0.6, 0.7], np.float32), (2, 1, 1, 1))
    fn = lambda b, s: _combined(b, s, [(1, 48, 0.5, 0.0, False, True), (1, 30, 0.5, 0.1, True, True)])  # noqa: E731
    assert_matches_tf(fn, [boxes, scores], jit=jit)


@JIT
def test_combined_nms_edge_cases(jit):
    boxes, scores = _detections(2, 12, 3, 3, seed=5)
    boxes[0, 1] = boxes[0, 0]  # duplicates: IOU exactly 1
    boxes[0, 2] = boxes[0, 0]
    boxes[1, 3:5] = [0.4, 0.4, 0.4, 0.9]  # no area: IOU 0 with everything
    scores[0, :3] = 0.9
    configs = [
        (5, 10, 1.0, 0.0, False, True),  # duplicates kept at iou 1
        (5, 10, 0.999, 0.0, False, True),  # and suppressed below it
        (5, 10, 0.5, 2.0, False, True),  # every score below the threshold
        (5, 10, 0.5, 2.0, True, True),
        (1, 1, 0.5, 0.0, False, False),
        (20, 3, 0.5, 0.3, True, True),
    ]
    assert_matches_tf(lambda b, s: _combined(b, s, configs), [boxes, scores], jit=jit)
    few = configs[:1] + configs[3:4]
    for n in (1, 0):  # one box; none
        assert_matches_tf(lambda b, s: _combined(b, s, few), [boxes[:, :n], scores[:, :n]], jit=jit)


@JIT
def test_combined_nms_runtime_thresholds(jit):
    """iou_threshold and score_threshold as function inputs (run-time values under jax.jit)."""
    boxes, scores = _detections(1, 25, 1, 6, seed=3, levels=5)

    def fn(b, s, iou, score):
        return tf.image.combined_non_max_suppression(b, s, 6, 20, iou, score)

    for iou, score in [(0.5, 0.3), (0.0, 0.0), (1.0, 0.8)]:
        assert_matches_tf(fn, [boxes, scores, np.float32(iou), np.float32(score)], jit=jit)


# -- DrawBoundingBoxes ---------------------------------------------------------------------------------------
_DRAW_BOXES = np.array(
    [
        [0.0, 0.0, 1.0, 1.0],  # the border
        [0.1, 0.2, 0.7, 0.9],
        [0.3, 0.0, 0.5, 1.0],  # on the image's edges
        [-0.04, 0.2, 0.3, 0.8],  # a little above: row int64(-0.4) = 0 is drawn (truncation, not floor)
        [-0.5, -0.3, 1.4, 1.2],  # around the image: no edge inside
        [0.5, -0.5, 0.8, 0.4],  # left edge outside, the rest clamped
        [0.6, 0.6, 0.2, 0.8],  # inverted rows: skipped
        [1.5, 0.1, 1.9, 0.5],  # below the image: skipped
        [0.45, 0.45, 0.45, 0.45],  # a single pixel
        [0.25, 0.3, 0.75, 0.35],  # over earlier boxes: drawn last
        [0.9, 0.9, 0.95, 1.01],
        [0.2, 0.1, 0.3, 0.15],
    ],
    np.float32,
)


@JIT
@pytest.mark.parametrize("depth", [1, 3, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_draw_bounding_boxes(depth, dtype, jit):
    images = np.random.default_rng(depth).uniform(0.2, 0.8, (2, 11, 13, depth)).astype(dtype)
    boxes = np.stack([_DRAW_BOXES, _DRAW_BOXES[::-1] * 0.9 + 0.03])
    colors = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.9, 0.8, 0.7, 0.6, 0.5], [0.25, 1.0, 0.0, 0.75, 0.1]], np.float32)

    def fn(images, boxes, colors):
        return [
            tf.raw_ops.DrawBoundingBoxes(images=images, boxes=boxes),  # TF's color table
            tf.raw_ops.DrawBoundingBoxesV2(images=images, boxes=boxes, colors=colors),  # 3 colors, cycled
            tf.raw_ops.DrawBoundingBoxesV2(images=images, boxes=boxes, colors=colors[:, :depth]),
            tf.raw_ops.DrawBoundingBoxesV2(images=images, boxes=boxes, colors=tf.zeros([0, depth])),  # empty: table
            tf.raw_ops.DrawBoundingBoxesV2(images=images, boxes=boxes[:, :0], colors=colors),  # no boxes
        ]

    assert_matches_tf(fn, [images, boxes, colors], rtol=0, jit=jit)


@JIT
def test_draw_bounding_boxes_one_pixel_images(jit):
    """height or width 1: every coordinate scales by 0."""
    images = np.zeros((1, 1, 5, 3), np.float32)
    boxes = _DRAW_BOXES[None, :4]
    assert_matches_tf(lambda i, b: tf.image.draw_bounding_boxes(i, b, None), [images, boxes], rtol=0, jit=jit)
    assert_matches_tf(
        lambda i, b: tf.image.draw_bounding_boxes(i, b, None), [images.reshape(1, 5, 1, 3), boxes], rtol=0, jit=jit
    )


# -- AudioSpectrogram, Mfcc ----------------------------------------------------------------------------------
def _audio(samples, channels=2, seed=0):
    r = np.random.default_rng(seed)
    t = np.arange(samples)[:, None] / 16000
    tone = 0.5 * np.sin(2 * np.pi * np.array([440.0, 1234.5][:channels]) * t)
    return (tone + r.uniform(-0.2, 0.2, (samples, channels))).astype(np.float32)


# (window_size, stride)
_WINDOWS = [(256, 128), (300, 100), (64, 97), (480, 160)]


@JIT
@pytest.mark.parametrize("magnitude_squared", [False, True])
def test_audio_spectrogram(magnitude_squared, jit):
    """Windows of a power of two and not (zero-padded FFT), strides past the window; TF computes in double,
    jaxsm in float32: errors are relative to the largest bins."""
    audio = _audio(2000)

    def fn(audio):
        return [
            tf.raw_ops.AudioSpectrogram(input=audio, window_size=w, stride=s, magnitude_squared=magnitude_squared)
            for w, s in _WINDOWS
        ] + [tf.raw_ops.AudioSpectrogram(input=audio[:200], window_size=256, stride=128)]  # no full window

    atol = 2e-3 if magnitude_squared else 1e-4
    assert_matches_tf(fn, [audio], rtol=1e-5, atol=atol, jit=jit)


# (upper_frequency_limit, lower_frequency_limit, filterbank_channel_count, dct_coefficient_count)
_MFCC = [
    (4000.0, 20.0, 40, 13),  # the defaults
    (7600.0, 0.0, 20, 20),
    (3000.0, 300.0, 26, 1),
    (8000.0, 20.0, 40, 13),
    (9000.0, 20.0, 40, 13),  # past Nyquist at 16 kHz
]


def _mfccs(spectrogram, rate, settings=_MFCC):
    return [
        tf.raw_ops.Mfcc(
            spectrogram=spectrogram,
            sample_rate=rate,
            upper_frequency_limit=u,
            lower_frequency_limit=lo,
            filterbank_channel_count=c,
            dct_coefficient_count=k,
        )
        for u, lo, c, k in settings
    ]


@JIT
@pytest.mark.parametrize("window", [480, 256])
def test_mfcc(window, jit):
    """The speech-commands pipeline: AudioSpectrogram -> Mfcc at 16 kHz. An upper limit at Nyquist (8000) just
    fits; past it (9000) TF's filterbank gives up and returns zeros."""
    audio = _audio(4000, seed=window)

    def fn(audio):
        spectrogram = tf.raw_ops.AudioSpectrogram(input=audio, window_size=window, stride=160, magnitude_squared=True)
        return [spectrogram] + _mfccs(spectrogram, 16000)

    assert_matches_tf(fn, [audio], rtol=1e-4, atol=1e-3, jit=jit)


@JIT
def test_mfcc_of_given_spectrogram(jit):
    """Mfcc alone on a spectrogram both see bit for bit, with silent bins (the 1e-12 floor) and a spectrogram
    of 2 bins; the sample rate a run-time input (under jax.jit a traced value: the filterbank in float32)."""
    r = np.random.default_rng(7)
    spectrogram = (r.uniform(0, 3, (2, 5, 129)) ** 4).astype(np.float32)
    spectrogram[0, 1] = 0
    spectrogram[1, :, 40:] = 0
    settings = _MFCC[:3] + [(2000.0, 100.0, 30, 12)]
    for rate in (16000, 8000, 22050):
        assert_matches_tf(
            lambda s, rate: _mfccs(s, rate, settings), [spectrogram, np.int32(rate)], rtol=1e-4, atol=1e-4, jit=jit
        )
    tiny = np.array([[[1.0, 2.0]]], np.float32)
    assert_matches_tf(lambda s: _mfccs(s, 16000, [(8000.0, 20.0, 1, 1)]), [tiny], rtol=1e-5, atol=1e-5, jit=jit)
