"""Binomial, parameterized truncated normal, shuffles, index shuffle, bounding-box samplers and the first calls of
RandomShuffle/Multinomial against TF: the same seed must give TF's exact numbers (jaxsm/ops/random.py).

Integer outputs and the samplers whose values are copies of their inputs are compared bit for bit; the truncated
normals to float rounding (TF's glibc log/exp/sin/cos and XLA's differ in the last bit).
"""

import warnings

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import LoweringError  # noqa: E402
from tests.tfcompare import assert_close, run_jaxsm, save_function  # noqa: E402

R = tf.raw_ops
BOTH = (True, False)
TOL = {
    np.float32: dict(rtol=1e-5, atol=2e-6),
    np.float64: dict(rtol=1e-12, atol=1e-13),
    np.float16: dict(rtol=2e-3, atol=2e-3),
}


def _assert_matches_tf(fn, inputs, jits=BOTH, rtol=0.0, atol=0.0):
    """TF's outputs (a dict) against jaxsm's compiled and/or op-by-op runs of one SavedModel: the rejection loops
    are slow to compile, so the model is saved and TF run once for both paths."""
    inputs = [np.asarray(x) for x in inputs]
    export_dir, tf_fn = save_function(fn, inputs)
    want = {k: v.numpy() for k, v in tf_fn(*inputs).items()}
    for jit in jits:
        got = run_jaxsm(export_dir, inputs, jit=jit)
        for k, w in want.items():
            assert_close(got[k], w, f"{k} (jit={jit})", rtol=rtol, atol=atol)


def _raises(fn, inputs, match):
    export_dir, _ = save_function(fn, inputs)
    with pytest.raises(LoweringError, match=match):
        run_jaxsm(export_dir, inputs, jit=False)


# -- binomial ---------------------------------------------------------------------------------------------------
# count * min(p, 1 - p) >= 10 uses BTRS, below inversion; p > 1/2 draws for 1 - p; 0, 1, NaN and count <= 0 are
# special cases; 1000 * 0.01 sits at the BTRS boundary.
COUNTS = np.array([[0.0, 5.0, 30.0, 100.0, 1000.0, 7.5], [3.0, 40.0, 12.0, 6e4, -2.0, 50.0]])
PROBS = np.array([[0.3, 0.9, 0.5, 0.95, 0.01, 0.2], [0.0, 1.0, np.nan, 0.7, 0.5, 0.25]])


# Both paths for one dtype; the rejection loops are slow to compile, so one path each for the others.
@pytest.mark.parametrize(
    "param_dtype,seed,jits",
    [
        (np.float32, np.array([1, 2], np.int64), BOTH),
        (np.float64, np.array([-7, 2**31 - 1], np.int32), (True,)),
        (np.float16, np.array([2**40 + 3, -5], np.int64), (False,)),
    ],
    ids=str,
)
def test_stateless_binomial(param_dtype, seed, jits):
    counts, probs = COUNTS.astype(param_dtype), PROBS.astype(param_dtype)

    def fn(c, p, seed):
        p_finite = tf.where(tf.math.is_nan(p), tf.constant(0.5, p.dtype), p)  # NaN has no integer value
        out = {
            "float32": R.StatelessRandomBinomial(shape=[5, 2, 6], seed=seed, counts=c, probs=p, dtype=tf.float32),
            "int32": R.StatelessRandomBinomial(shape=[4, 2, 6], seed=seed, counts=c, probs=p_finite, dtype=tf.int32),
            "empty": R.StatelessRandomBinomial(shape=[0, 6], seed=seed, counts=c[0], probs=p_finite[0]),
        }
        if param_dtype == np.float32:  # broadcasting and the public API, for one dtype (each loop compiles anew)
            out["broadcast"] = R.StatelessRandomBinomial(
                shape=[3, 2, 6], seed=seed, counts=c[:, :1], probs=p_finite[0], dtype=tf.int64
            )
            out["public"] = tf.random.stateless_binomial([4, 3], seed, counts=[10.0, 200.0, 3.0], probs=0.4)
        return out

    _assert_matches_tf(fn, [counts, probs, seed], jits)


def test_binomial_shape_errors():
    c, p, seed = np.ones((2, 3), np.float32), np.full((2, 3), 0.5, np.float32), np.array([1, 2], np.int32)
    _raises(lambda c, p, s: R.StatelessRandomBinomial(shape=[4, 3], seed=s, counts=c, probs=p), [c, p, seed], "end")
    _raises(
        lambda c, p, s: R.StatelessRandomBinomial(shape=[2, 3], seed=s, counts=c[:, :2], probs=p),
        [c, p, seed],
        "compatible",
    )


def test_generator_binomial_continues_tfs_stream(tmp_path):
    """StatefulRandomBinomial draws from the Generator's state and moves it on by TF's reserve."""
    import jaxsm

    class M(tf.Module):
        def __init__(self):
            self.g = tf.random.Generator.from_seed(77)

        @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
        def draw(self, c):
            return {
                "vector": self.g.binomial([4, 3], counts=c, probs=[0.2, 0.6, 0.5]),
                "empty": self.g.binomial([2, 0], counts=5.0, probs=0.5, dtype=tf.float64),
                "f64": self.g.binomial(
                    [5], counts=tf.constant(100.0, tf.float64), probs=tf.constant(0.3, tf.float64), dtype=tf.int64
                ),
            }

    tf.saved_model.save(M(), str(tmp_path))
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    counts = np.array([10.0, 50.0, 3.0], np.float32)
    for call in range(2):
        want, have = ref.draw(counts), got.draw(counts)
        for k in want:
            np.testing.assert_array_equal(np.asarray(have[k]), want[k].numpy(), err_msg=f"{k}, call {call}")
        np.testing.assert_array_equal(got.g._state_var.numpy(), ref.g._state_var.numpy(), err_msg=f"state {call}")


# -- parameterized truncated normal -----------------------------------------------------------------------------
# Per batch: the normal sampler (wide bounds), the uniform one (narrow), the exponential one (a tail), a bound
# at -inf (swapped to the upper side) and maxval < mean (flipped).
PTN_PARAMS = [[0, 0, 0, 1, 5], [1, 1, 1, 2, 1], [-3, 0.1, 2.5, -np.inf, -1], [3, 0.3, 10, 0.5, 2]]


@pytest.mark.parametrize("dtype,jits", [(np.float32, BOTH), (np.float64, (True,)), (np.float16, (False,))], ids=str)
def test_parameterized_truncated_normal(dtype, jits):
    def fn(m, s, lo, hi, seed):
        kw = dict(means=m, stddevs=s, minvals=lo, maxvals=hi)
        out = {
            "vector": R.StatelessParameterizedTruncatedNormal(shape=[7, 5], seed=seed, **kw),
            "empty": R.StatelessParameterizedTruncatedNormal(shape=[0, 5], seed=seed, **kw),
            # The stateful op's first call: batches along shape[0].
            "v1": R.ParameterizedTruncatedNormal(
                shape=[5, 3], means=m, stdevs=s, minvals=lo, maxvals=hi, seed=3, seed2=9
            ),
        }
        if dtype == np.float32:  # for one dtype (each loop compiles anew)
            out["broadcast"] = R.StatelessParameterizedTruncatedNormal(
                shape=[3, 2, 5], seed=seed, means=m[0], stddevs=s[:1], minvals=tf.reshape(lo[:2], [2, 1]), maxvals=hi
            )
            out["public"] = tf.random.stateless_parameterized_truncated_normal(
                [4], seed, means=0.5, stddevs=2.0, minvals=1.0, maxvals=np.inf
            )
            # Scalar parameters: the kernel regroups the outputs into batches of 100.
            out["v1_scalar"] = R.ParameterizedTruncatedNormal(
                shape=[230], means=m[0], stdevs=s[0], minvals=lo[2], maxvals=hi[2], seed=3, seed2=9
            )
        return out

    inputs = [np.array(p, dtype) for p in PTN_PARAMS] + [np.array([5, -6], np.int32)]
    _assert_matches_tf(fn, inputs, jits, **TOL[dtype])


def test_parameterized_truncated_normal_invalid_parameters():
    """Known invalid parameters raise as TF does; at run time the batch comes out NaN (TF raises: gaps.py)."""
    seed, bad = np.array([1, 2], np.int32), np.array([1.0, 0.0], np.float32)

    def fn(stddevs, seed):
        return R.StatelessParameterizedTruncatedNormal(
            shape=[3, 2], seed=seed, means=[0.0, 0.0], stddevs=stddevs, minvals=-1.0, maxvals=1.0
        )

    _raises(lambda seed: fn(tf.constant(bad), seed), [seed], "Invalid parameters")
    export_dir, _ = save_function(fn, [bad, seed])
    got = np.asarray(run_jaxsm(export_dir, [bad, seed]))
    assert np.all(np.isnan(got[:, 1])) and np.all(np.abs(got[:, 0]) <= 1), f"stddev 0 batch: {got}"


# -- shuffles ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [np.array([3, 9], np.int64), np.array([-1, 2**31 - 1], np.int32)], ids=str)
def test_stateless_shuffle(seed):
    def fn(x, seed):
        kc = dict(zip(("key", "counter"), R.StatelessRandomGetKeyCounter(seed=seed), strict=True))
        return {
            "rows": R.StatelessShuffle(value=x, alg=1, **kc),
            "vector": R.StatelessShuffle(value=x[:, 0], alg=1, **kc),
            "auto_alg": R.StatelessShuffle(value=tf.cast(x[:7, 0], tf.int64), alg=3, **kc),
            "one_row": R.StatelessShuffle(value=x[:1], alg=1, **kc),
            "empty": R.StatelessShuffle(value=x[:, :0], alg=1, **kc),
            "scalar": R.StatelessShuffle(value=x[0, 0], alg=1, **kc),
            "public": tf.random.experimental.stateless_shuffle(tf.reshape(x, [5, 4, 3]), seed=seed),
        }

    _assert_matches_tf(fn, [np.arange(60, dtype=np.float32).reshape(20, 3), seed])


# Block sizes 16 (small max_index) to 64 (uint64 above 2^63); index == max_index and 0.
INDEX = np.array([0, 1, 5, 99, 100, 65535, 65536, 70000, 4000000000], np.int64)
MAX_INDEX = np.array([0, 1, 5, 100, 100, 65536, 65536, 70000, 2**33], np.int64)


def test_random_index_shuffle():
    def fn(i, m, s):
        return {
            "vector": R.RandomIndexShuffle(index=i, seed=s, max_index=m),
            "rounds6": R.RandomIndexShuffle(index=i, seed=s, max_index=m, rounds=6),
            "scalar": R.RandomIndexShuffle(index=i[3], seed=s, max_index=m[3]),
            "int32_seed_rows": R.RandomIndexShuffle(
                index=tf.cast(i[:6], tf.int32),
                seed=tf.cast(tf.stack([s] * 6), tf.int32) + tf.range(6)[:, None],
                max_index=tf.constant(65536 * 3),
            ),
            "uint64": R.RandomIndexShuffle(
                index=tf.cast(i, tf.uint64), seed=tf.cast(s, tf.uint64), max_index=tf.constant(2**63 + 5, tf.uint64)
            ),
        }

    _assert_matches_tf(fn, [INDEX, MAX_INDEX, np.array([7, -3, 2**33 + 1], np.int64)])


def test_random_index_shuffle_errors():
    s = np.array([1, 2, 3], np.int64)
    i = tf.constant([3, 9], tf.int64)
    _raises(lambda s: R.RandomIndexShuffle(index=i, seed=s, max_index=tf.constant(8, tf.int64)), [s], "max_index")
    _raises(lambda s: R.RandomIndexShuffle(index=i, seed=s, max_index=i, rounds=5), [s], "rounds")


def test_first_call_of_random_shuffle_and_multinomial():
    """RandomShuffle and Multinomial (stateful, seed attrs): the first call's numbers of a fresh SavedModel."""
    logits = np.array([[0.0, 1.0, -1.0, np.inf], [-np.inf, 2.0, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4]], np.float32)

    def fn(x, logits):
        return {
            "rows": R.RandomShuffle(value=x, seed=4, seed2=5),
            "vector": R.RandomShuffle(value=x[:, 0], seed=2**40, seed2=-3),
            "one_row": R.RandomShuffle(value=x[:1], seed=1, seed2=1),
            "empty": R.RandomShuffle(value=x[:, :0], seed=1),
            "public": tf.random.shuffle(tf.cast(x[:9, 0], tf.int32), seed=7),
            "int64": R.Multinomial(logits=logits, num_samples=7, seed=3, seed2=11),
            "int32": R.Multinomial(
                logits=tf.cast(logits, tf.float64), num_samples=5, seed=-2, seed2=0, output_dtype=tf.int32
            ),
            "no_samples": R.Multinomial(logits=logits, num_samples=0, seed=3, seed2=11),
            "categorical_f16": tf.random.categorical(tf.cast(logits[1:], tf.float16), 6, seed=9),
        }

    _assert_matches_tf(fn, [np.arange(60, dtype=np.float32).reshape(20, 3), logits])


# -- bounding-box samplers ----------------------------------------------------------------------------------------
BOXES = np.array([[[0.1, 0.2, 0.5, 0.7], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.31, 0.32]]], np.float32)


@pytest.mark.parametrize(
    "size,seed",
    [([480, 640, 3], [1, 2]), ([37, 23, 1], [-5, 2**31 - 1]), ([1000, 3, 3], [77, 0])],
    ids=str,
)
def test_sample_distorted_bounding_box(size, seed):
    def fn(size, boxes, seed):
        ops = {}
        for i, s in enumerate([seed, seed * 7 + 1]):
            ops[f"stateless{i}"] = R.StatelessSampleDistortedBoundingBox(
                image_size=size, bounding_boxes=boxes, min_object_covered=0.3, seed=s
            )
            # A small box and a small area: many attempts fail, exercising the retries and rejections.
            ops[f"small{i}"] = R.StatelessSampleDistortedBoundingBox(
                image_size=size,
                bounding_boxes=boxes[:, 2:],
                min_object_covered=0.9,
                seed=s,
                aspect_ratio_range=[0.2, 5.0],
                area_range=[0.001, 0.05],
                max_attempts=50,
            )
        ops["public"] = tf.image.stateless_sample_distorted_bounding_box(
            tf.cast(size, tf.int64), boxes[:, :1], seed=seed, min_object_covered=0.5
        )
        ops["no_boxes_uint8"] = R.StatelessSampleDistortedBoundingBox(
            image_size=tf.cast(size, tf.uint8) // 4,
            bounding_boxes=boxes[:, :0],
            min_object_covered=0.1,
            seed=seed,
            use_image_if_no_bounding_boxes=True,
        )
        ops["whole_image"] = R.StatelessSampleDistortedBoundingBox(
            image_size=size, bounding_boxes=boxes[:, 2:], min_object_covered=1.0, seed=seed, max_attempts=3
        )
        ops["v2"] = R.SampleDistortedBoundingBoxV2(
            image_size=size, bounding_boxes=boxes, min_object_covered=0.2, seed=5, seed2=8
        )
        ops["v1_int16"] = R.SampleDistortedBoundingBox(
            image_size=tf.cast(size, tf.int16),
            bounding_boxes=boxes,
            seed=-1,
            seed2=2**40,
            area_range=[0.3, 0.4],
            aspect_ratio_range=[1.0, 1.0],
        )
        return {f"{k}_{part}": t for k, triple in ops.items() for part, t in zip(("begin", "size", "bboxes"), triple)}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the sampler needs known inputs: under jit the call runs op by op
        _assert_matches_tf(fn, [np.array(size, np.int32), BOXES, np.array(seed, np.int32)])


def test_sample_distorted_bounding_box_errors():
    size, seed = np.array([10, 10, 3], np.int32), np.array([1, 2], np.int32)

    def bad_box(size, seed):
        return R.StatelessSampleDistortedBoundingBox(
            image_size=size, bounding_boxes=[[[0.1, 0.1, 1.5, 0.5]]], min_object_covered=0.1, seed=seed
        )

    def no_boxes(size, seed):
        return R.StatelessSampleDistortedBoundingBox(
            image_size=size, bounding_boxes=tf.zeros([1, 0, 4]), min_object_covered=0.1, seed=seed
        )

    _raises(bad_box, [size, seed], r"\[0.0, 1.0\]")
    _raises(no_boxes, [size, seed], "No bounding boxes")


# -- candidate samplers -------------------------------------------------------------------------------------------


UNIGRAMS = [5.0, 1.0, 0.5, 10.0, 0.0, 3.0, 2.0, 7.0, 1.5, 4.0, 0.25]


def test_candidate_samplers_first_call():
    """sampled_softmax_loss/nce_loss's samplers: TF's first-call candidates (unique ones redraw repeats, which
    changes the expected counts), the true classes' expected counts, and the accidental hits."""
    true_classes = np.array([[0, 5], [6, 3], [2, 1]], np.int64)

    def fn(true_classes):
        out = {}
        samplers = [
            ("uniform", R.UniformCandidateSampler, dict(range_max=100, num_sampled=20)),
            ("uniform_wide", R.UniformCandidateSampler, dict(range_max=3 * 10**9 + 7, num_sampled=5)),
            ("log_uniform", R.LogUniformCandidateSampler, dict(range_max=100, num_sampled=20)),
            ("learned_unigram", R.LearnedUnigramCandidateSampler, dict(range_max=100, num_sampled=20)),
            ("thread_unsafe", R.ThreadUnsafeUnigramCandidateSampler, dict(range_max=7, num_sampled=5)),
            ("fixed", R.FixedUnigramCandidateSampler, dict(range_max=11, num_sampled=6, unigrams=UNIGRAMS)),
            (
                "fixed_sharded",
                R.FixedUnigramCandidateSampler,
                dict(range_max=8, num_sampled=4, unigrams=UNIGRAMS, distortion=0.75, num_reserved_ids=3, num_shards=2),
            ),
            ("all", R.AllCandidateSampler, dict(num_sampled=100)),
        ]
        for name, sampler, kw in samplers:
            for unique in (True, False):
                s, t, e = sampler(true_classes=true_classes, num_true=2, unique=unique, seed=3, seed2=4, **kw)
                out.update(
                    {f"{name}_{unique}_sampled": s, f"{name}_{unique}_true_count": t, f"{name}_{unique}_count": e}
                )
        out["public"] = tf.random.log_uniform_candidate_sampler(
            true_classes, 2, 10, True, 100, seed=8
        ).sampled_candidates
        sampled = tf.concat([out["log_uniform_True_sampled"], [5, 0, 5]], 0)
        hits = R.ComputeAccidentalHits(true_classes=true_classes, sampled_candidates=sampled, num_true=2)
        out.update({f"hits_{k}": v for k, v in zip(("indices", "ids", "weights"), hits, strict=True)})
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the accidental hits' count depends on values: op by op under jit
        _assert_matches_tf(fn, [true_classes], rtol=1e-6)


def test_candidate_sampler_errors():
    def out_of_range(seed):
        return R.UniformCandidateSampler(
            true_classes=[[1, 100]], num_true=2, num_sampled=3, unique=False, range_max=100, seed=1
        ).sampled_candidates + tf.cast(seed[0], tf.int64)

    def too_few(seed):
        return R.UniformCandidateSampler(
            true_classes=[[1]], num_true=1, num_sampled=30, unique=True, range_max=20, seed=1
        ).sampled_candidates + tf.cast(seed[0], tf.int64)

    seed = np.array([1, 2], np.int64)
    _raises(out_of_range, [seed], "out of range")
    _raises(too_few, [seed], "too small")
