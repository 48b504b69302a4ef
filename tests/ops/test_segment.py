"""Segment reductions (jaxsm/ops/segment.py) against TensorFlow."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import EagerFallbackWarning, StaticValueError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])
raw = tf.raw_ops


def _data(shape, dtype):
    return ((np.arange(int(np.prod(shape))) * 7) % 11 - 5).astype(dtype).reshape(shape)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float64, np.int64])
@pytest.mark.parametrize("id_dtype", [tf.int32, tf.int64])
def test_sorted_segments(jit, dtype, id_dtype):
    def fn(x):
        ids = tf.constant([0, 0, 2, 2, 2, 5], id_dtype)  # segments 1, 3 and 4 are empty
        out = {}
        for name in ["sum", "prod", "max", "min", "mean"]:
            op = getattr(tf.math, f"segment_{name}")
            out[name] = op(x, ids)
            out[name + "_1d"] = op(x[:, 1], ids)
        out["empty_ids"] = tf.math.segment_sum(x[:0], ids[:0])
        return out

    assert_matches_tf(fn, [_data((6, 3), dtype)], jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_sorted_segments_v2(jit, dtype):
    # TF registers Segment*V2 kernels for XLA only: the oracle is TF's jit-compiled function.
    def fn(x):
        ids = tf.constant([0, 0, 2, 2, 5])
        n = tf.constant(7, tf.int64)
        return [
            getattr(raw, f"Segment{name}V2")(data=x, segment_ids=ids, num_segments=n)
            for name in ["Sum", "Prod", "Max", "Min"]
        ]

    x = _data((5, 2), dtype)
    export_dir, _ = save_function(fn, [x])
    expected = tf.function(fn, jit_compile=True)(tf.constant(x))
    got = run_jaxsm(export_dir, [x], jit=jit)
    for name, e, g in zip(["Sum", "Prod", "Max", "Min"], expected, got, strict=True):
        assert np.asarray(g).dtype == e.dtype, name
        np.testing.assert_array_equal(np.asarray(g), e.numpy(), err_msg=f"Segment{name}V2")


def test_sorted_segments_on_constants():
    def fn(x):
        data = tf.constant([[1.0, -2.0], [3.0, 4.0], [-5.0, 6.0]])
        ids = tf.constant([1, 1, 3])
        return tf.math.segment_max(data, ids), tf.math.segment_mean(data, ids), tf.math.segment_sum(x, ids)

    assert_matches_tf(fn, [_data((3,), np.float32)], jit=True)


def test_sorted_segments_with_run_time_ids_run_op_by_op():
    """The output has (last id + 1) rows: not compilable; a call runs op by op (and warns), jax.jit raises."""
    import jax

    import jaxsm

    x, ids = _data((4, 2), np.float32), np.asarray([0, 0, 1, 3], np.int32)
    with pytest.warns(EagerFallbackWarning, match="op by op"):
        assert_matches_tf(lambda x, i: tf.math.segment_sum(x, i), [x, ids], jit=True)
    export_dir, _ = save_function(lambda x, i: tf.math.segment_sum(x, i), [x, ids])
    apply, params = jaxsm.functional(jaxsm.load(export_dir).f)
    with pytest.raises(StaticValueError, match="segment_ids of SegmentSum"):
        jax.jit(apply)(params, x, ids)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float64, np.float16, np.uint8])
def test_unsorted_segments(jit, dtype):
    def fn(x, ids):
        out = {}
        for name, op in [
            ("sum", tf.math.unsorted_segment_sum),
            ("prod", tf.math.unsorted_segment_prod),
            ("max", tf.math.unsorted_segment_max),
            ("min", tf.math.unsorted_segment_min),
        ]:
            # Segments 2, 4 and 5 are empty: max/min give the dtype's lowest/highest value.
            out[name] = op(x, ids, 6)
            out[name + "_2d_ids"] = op(tf.reshape(x, [2, 3, 2]), tf.reshape(ids, [2, 3]), tf.constant(4, tf.int64))
        return out

    ids = np.asarray([3, 0, -1, 3, 1, 0], np.int32)  # negative ids drop their rows, as in TF
    assert_matches_tf(fn, [_data((6, 2), dtype), ids], jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [tf.int32, tf.int64])
def test_sparse_segments(jit, dtype, index_dtype):
    def fn(x, indices):
        ids = tf.constant([0, 0, 1, 3, 3, 3], index_dtype)  # segment 2 is empty
        out = {}
        for name in ["Sum", "Mean", "SqrtN"]:
            out[name] = getattr(raw, f"SparseSegment{name}")(data=x, indices=indices, segment_ids=ids)
            out[name + "_n"] = getattr(raw, f"SparseSegment{name}WithNumSegments")(
                data=x[:, 0], indices=indices, segment_ids=ids, num_segments=tf.constant(6, index_dtype)
            )
        out["tf_api"] = tf.sparse.segment_mean(x, indices, ids, num_segments=5)
        return out

    indices = np.asarray([2, 0, 1, 3, 3, 0], np.int32 if index_dtype == tf.int32 else np.int64)
    assert_matches_tf(fn, [_data((4, 3), dtype), indices], jit=jit)


@JIT
def test_sparse_segments_with_run_time_ids(jit):
    fn = lambda x, i, s: tf.sparse.segment_sqrt_n(x, i, s, num_segments=3)  # noqa: E731
    ids = np.asarray([0, 2, 2], np.int64)
    assert_matches_tf(fn, [_data((3, 2), np.float32), np.asarray([1, 1, 0], np.int64), ids], jit=jit)


_NAN_DATA = np.array([np.nan, 1.0, 2.0, np.nan, np.nan, 5.0, 1.0, np.nan, 3.0, -1.0], np.float32)
_NAN_IDS = np.array([0, 0, 1, 2, 2, 3, 4, 4, 4, 4], np.int32)


@JIT
@pytest.mark.parametrize("kind", ["max", "min"])
def test_segment_extremes_with_nans_follow_tf_row_order(kind, jit):
    """TF folds a segment in row order and a NaN is replaced by the next number: [nan, 1] -> 1, [1, nan] -> nan."""
    unsorted = getattr(tf.math, f"unsorted_segment_{kind}")
    data2d = np.stack([_NAN_DATA, _NAN_DATA[::-1]], 1)
    shuffled = np.array([4, 0, 4, 1, 0, 3, 4, 2, 2, 4], np.int32)
    assert_matches_tf(lambda d, s: unsorted(d, s, 6), [_NAN_DATA, _NAN_IDS], jit=jit)
    assert_matches_tf(lambda d, s: unsorted(d, s, 6), [data2d, shuffled], jit=jit)
    assert_matches_tf(lambda d: getattr(tf.math, f"segment_{kind}")(d, tf.constant(_NAN_IDS)), [_NAN_DATA], jit=jit)
