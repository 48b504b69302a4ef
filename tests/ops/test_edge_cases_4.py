"""Edge cases of already-lowered ops against TensorFlow, round 4: sorted, unsorted and sparse segment reductions
(empty and out-of-order segments, negative ids, int64 ids, low-precision and complex data), sparse tensor ops
(duplicate and unsorted indices, empty inputs, broadcasting, adjoints), ragged ops (negative deltas, truncating
shapes, int32 and int64 splits, empty rows) and counting ops (weights, binary output, size 0, NaN boundaries).

Each case is one tf.function returning a dict of outputs, saved once and compared with jaxsm under ``jax.jit``
and op by op. Where TF raises InvalidArgumentError for a constant input, jaxsm must raise a
:class:`jaxsm.errors.JaxsmError` when the function is traced.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import JaxsmError  # noqa: E402
from tests.tfcompare import assert_raises_like_tf, run_jaxsm, save_function  # noqa: E402
from tests.tfcompare import compare_case as _compare  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")]
JIT = pytest.mark.parametrize("jit", [True, False])
raw = tf.raw_ops


def _parts(out: dict) -> dict:
    """Ragged and sparse outputs as their component tensors, so both sides compare tensor by tensor."""
    flat = {}
    for key, value in out.items():
        if isinstance(value, tf.RaggedTensor):
            flat[key] = {"values": value.flat_values, "splits": value.nested_row_splits}
        elif isinstance(value, tf.SparseTensor):
            flat[key] = {"indices": value.indices, "values": value.values, "shape": value.dense_shape}
        else:
            flat[key] = value
    return flat


# -- segment reductions --------------------------------------------------------------------------------------

_SORTED = ["Sum", "Mean", "Max", "Min", "Prod"]


@JIT
@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64, np.complex64])
def test_sorted_segments_gaps_and_rank3(jit, dtype):
    """Empty segments in the middle get 0 (Max/Min too, not ±inf), int64 ids, rank-1 and rank-3 data."""
    names = [n for n in _SORTED if not (np.dtype(dtype).kind == "c" and n in ("Max", "Min"))]

    def fn(d):
        out = {}
        for name in names:
            op = getattr(raw, f"Segment{name}")
            out[name] = op(data=d, segment_ids=tf.constant([0, 0, 3, 5], tf.int64))
            out[f"{name}_rank1"] = op(data=d[:, 0, 0], segment_ids=[1, 1, 1, 2])
            out[f"{name}_first_empty"] = op(data=d[:2], segment_ids=[2, 2])
        return out

    d = (np.arange(24).reshape(4, 3, 2) % 7 - 3).astype(dtype)
    _compare(f"sorted_{np.dtype(dtype).name}", fn, [d], jit, rtol=1e-3)


@JIT
def test_segments_bfloat16_and_complex_unsorted(jit):
    def fn(d, s):
        b = tf.cast(d, tf.bfloat16)
        c = tf.complex(d, -d)
        out = {}
        for name in ["Sum", "Max", "Min", "Prod"]:
            op = getattr(raw, f"UnsortedSegment{name}")
            out[f"bf16_{name}"] = tf.cast(op(data=b, segment_ids=s, num_segments=5), tf.float32)
            out[f"f16_{name}"] = op(data=tf.cast(d, tf.float16), segment_ids=s, num_segments=tf.constant(5, tf.int64))
            out[f"i64_ids_{name}"] = op(data=d, segment_ids=tf.cast(s, tf.int64), num_segments=4)
        for name in ["Sum", "Prod"]:
            out[f"c_{name}"] = getattr(raw, f"UnsortedSegment{name}")(data=c, segment_ids=s, num_segments=4)
        for name in ["Sum", "Mean", "Prod"]:
            out[f"sorted_bf16_{name}"] = tf.cast(
                getattr(raw, f"Segment{name}")(data=b, segment_ids=[0, 2, 2, 2]), tf.float32
            )
        return out

    _compare(
        "unsorted_low_precision",
        fn,
        [np.array([1.5, -2.0, 3.0, 0.25], np.float32), np.array([1, -3, 1, 3], np.int32)],
        jit,
        rtol=1e-2,
    )


@JIT
def test_unsorted_segments_empty_data_and_rank(jit):
    """Zero-row data, ids of rank 2 over rank-3 data, all ids negative, extremes of empty segments per dtype."""

    def fn(d, s):
        out = {}
        for name in ["Sum", "Max", "Min", "Prod"]:
            op = getattr(raw, f"UnsortedSegment{name}")
            out[f"{name}_empty"] = op(data=d[:0], segment_ids=s[:0], num_segments=3)
            out[f"{name}_all_negative"] = op(data=d, segment_ids=-1 - tf.abs(s), num_segments=2)
            out[f"{name}_ids2d"] = op(data=tf.reshape(d, [2, 2, 3]), segment_ids=tf.reshape(s, [2, 2]), num_segments=4)
            for dt in [tf.int32, tf.int64, tf.uint8, tf.float64]:
                out[f"{name}_{dt.name}"] = op(data=tf.cast(d, dt), segment_ids=s, num_segments=4)
        return out

    d = np.arange(12, dtype=np.float32).reshape(4, 3) - 5
    _compare("unsorted_empty", fn, [d, np.array([2, 0, -1, 2], np.int32)], jit)


@JIT
def test_segments_run_time_ids(jit):
    """Run-time sorted ids with gaps (op by op) and run-time num_segments."""

    def fn(d, s, n):
        out = {name: getattr(raw, f"Segment{name}")(data=d, segment_ids=s) for name in _SORTED}
        out.update(
            {
                f"u{name}": getattr(raw, f"UnsortedSegment{name}")(data=d, segment_ids=s, num_segments=n)
                for name in ["Sum", "Max"]
            }
        )
        return out

    d = np.array([[1, 2], [3, 4], [5, 6], [7, 8]], np.float32)
    _compare("run_time_ids", fn, [d, np.array([0, 2, 2, 4], np.int64), np.array(6, np.int32)], jit)


@JIT
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_sparse_segments_repeats_and_gaps(jit, index_dtype):
    def fn(d, i):
        out = {}
        for name in ["Sum", "Mean", "SqrtN"]:
            op = getattr(raw, f"SparseSegment{name}")
            num = getattr(raw, f"SparseSegment{name}WithNumSegments")
            ids = tf.constant([0, 0, 0, 3, 3], i.dtype)
            out[name] = op(data=d, indices=i, segment_ids=ids)
            out[f"{name}_sparse_gradient"] = op(data=d, indices=i, segment_ids=ids, sparse_gradient=True)
            out[f"{name}_num"] = num(data=d, indices=i, segment_ids=ids, num_segments=tf.constant(6, i.dtype))
            out[f"{name}_num_empty"] = num(data=d, indices=i[:0], segment_ids=ids[:0], num_segments=2)
            out[f"{name}_empty"] = op(data=d, indices=i[:0], segment_ids=ids[:0])
            out[f"{name}_first_empty"] = op(data=d, indices=i[:2], segment_ids=ids[3:] - 1)
            out[f"{name}_rank1"] = op(data=d[:, 0], indices=i, segment_ids=ids)
            out[f"{name}_f16"] = op(data=tf.cast(d, tf.float16), indices=i, segment_ids=ids)
        return out

    d = np.arange(12, dtype=np.float32).reshape(4, 3)
    _compare(
        f"sparse_segments_{np.dtype(index_dtype).name}", fn, [d, np.array([3, 3, 0, 1, 1], index_dtype)], jit, rtol=1e-3
    )


@JIT
def test_sparse_segment_grads_repeats(jit):
    def fn(g, i):
        ids = tf.constant([0, 0, 2, 2, 2], tf.int32)
        out = {}
        for name in ["Sum", "Mean", "SqrtN"]:
            out[name] = getattr(raw, f"SparseSegment{name}Grad")(grad=g, indices=i, segment_ids=ids, output_dim0=6)
            v2 = getattr(raw, f"SparseSegment{name}GradV2")(grad=g, indices=i, segment_ids=ids, dense_output_dim0=6)
            out.update({f"{name}_v2_values": v2[0], f"{name}_v2_indices": v2[1]})
            unsorted = getattr(raw, f"SparseSegment{name}GradV2")(
                grad=g, indices=i[:3], segment_ids=[2, 0, 1], dense_output_dim0=6
            )
            out.update({f"{name}_v2_unsorted_values": unsorted[0], f"{name}_v2_unsorted_indices": unsorted[1]})
        return out

    g = np.arange(6, dtype=np.float32).reshape(3, 2) + 1
    _compare("sparse_segment_grads", fn, [g, np.array([4, 1, 4, 4, 0], np.int32)], jit)


_CONSTANT_INVALID = {
    "segment_sum_decreasing_int64": lambda x: raw.SegmentSum(data=x, segment_ids=tf.constant([0, 2, 1, 1], tf.int64)),
    "segment_mean_negative_first": lambda x: raw.SegmentMean(data=x, segment_ids=[-1, 0, 0, 0]),
    "segment_prod_length": lambda x: raw.SegmentProd(data=x, segment_ids=[0, 0, 1]),
    "unsorted_max_too_large": lambda x: raw.UnsortedSegmentMax(data=x, segment_ids=[0, 1, 4, 0], num_segments=4),
    "sparse_segment_mean_negative_index": lambda x: raw.SparseSegmentMean(data=x, indices=[0, -1], segment_ids=[0, 0]),
    "sparse_segment_sqrtn_unsorted": lambda x: raw.SparseSegmentSqrtN(data=x, indices=[0, 1], segment_ids=[1, 0]),
    "sparse_segment_sum_num_too_small": lambda x: raw.SparseSegmentSumWithNumSegments(
        data=x, indices=[0, 1], segment_ids=[0, 3], num_segments=3
    ),
    "sparse_segment_sum_num_negative_id": lambda x: raw.SparseSegmentSumWithNumSegments(
        data=x, indices=[0, 1], segment_ids=[-1, 0], num_segments=3
    ),
    "sparse_segment_sum_grad_index": lambda x: raw.SparseSegmentSumGrad(
        grad=x[:2], indices=[0, 9], segment_ids=[0, 1], output_dim0=4
    ),
    "sparse_to_dense_duplicate_validate": lambda x: raw.SparseToDense(
        sparse_indices=[[1], [1]], output_shape=[4], sparse_values=x[:2, 0], default_value=0.0
    ),
    "sparse_reshape_two_minus_one": lambda x: raw.SparseReshape(
        input_indices=tf.zeros([0, 2], tf.int64), input_shape=[2, 6], new_shape=[-1, -1]
    )[1],
    "sparse_tensor_dense_add_out_of_range": lambda x: raw.SparseTensorDenseAdd(
        a_indices=tf.constant([[0, 0], [4, 1]], tf.int64), a_values=x[:2, 0], a_shape=[4, 2], b=x[:, :2]
    ),
    "sparse_dense_matmul_adjoint_out_of_range": lambda x: raw.SparseTensorDenseMatMul(
        a_indices=tf.constant([[0, 3]], tf.int64), a_values=x[:1, 0], a_shape=[3, 3], b=x[:3, :2], adjoint_a=True
    ),
    "bucketize_unsorted_boundaries": lambda x: raw.Bucketize(input=x, boundaries=[1.0, 0.0]),
    "sparse_split_more_than_dim": lambda x: raw.SparseSplit(
        split_dim=0, indices=tf.constant([[0], [2]], tf.int64), values=x[:2, 0], shape=[3], num_split=4
    )[1][0],
    "sparse_dense_cwise_div_zero": lambda x: raw.SparseDenseCwiseDiv(
        sp_indices=tf.constant([[0, 0], [1, 1]], tf.int64), sp_values=x[:2, 0], sp_shape=[2, 2], dense=tf.zeros([2, 1])
    ),
    "sparse_reshape_minus_one_zero_size": lambda x: raw.SparseReshape(
        input_indices=tf.zeros([0, 2], tf.int64), input_shape=[0, 6], new_shape=[-1, 3, 0]
    )[1],
    "ragged_range_zero_delta": lambda x: raw.RaggedRange(starts=[0, 1], limits=[3, 1], deltas=[1, 0])[1],
    "ragged_gather_negative": lambda x: raw.RaggedGather(
        params_nested_splits=[tf.constant([0, 2, 4], tf.int64)],
        params_dense_values=x[:, 0],
        indices=[-1],
        OUTPUT_RAGGED_RANK=1,
    )[1],
    "bincount_negative_dense": lambda x: raw.DenseBincount(input=[1, -2], size=3, weights=tf.zeros([0], tf.float32)),
    "sparse_bincount_negative": lambda x: raw.SparseBincount(
        indices=tf.constant([[0], [1]], tf.int64),
        values=[1, -1],
        dense_shape=[2],
        size=3,
        weights=tf.zeros([0], tf.float32),
    ),
}


@pytest.mark.parametrize("case", sorted(_CONSTANT_INVALID))
def test_constant_invalid_raises(case):
    assert_raises_like_tf(_CONSTANT_INVALID[case], [np.arange(8, dtype=np.float32).reshape(4, 2)], jit=True)


# -- sparse tensors ------------------------------------------------------------------------------------------


@JIT
def test_sparse_to_dense_and_reshape(jit):
    def fn(v):
        return {
            "dup_no_validate": raw.SparseToDense(
                sparse_indices=[[1, 0], [1, 0], [0, 2]],
                output_shape=[2, 3],
                sparse_values=v[:3],
                default_value=v[5],
                validate_indices=False,
            ),
            "unsorted_no_validate": raw.SparseToDense(
                sparse_indices=tf.constant([[3], [0], [2]], tf.int64),
                output_shape=tf.constant([5], tf.int64),
                sparse_values=v[:3],
                default_value=-1.0,
                validate_indices=False,
            ),
            "scalar_value": raw.SparseToDense(
                sparse_indices=[0, 2], output_shape=[4], sparse_values=v[4], default_value=0.0
            ),
            "scalar_index": raw.SparseToDense(
                sparse_indices=2, output_shape=[4], sparse_values=v[4], default_value=0.0
            ),
            "empty": raw.SparseToDense(
                sparse_indices=tf.zeros([0, 2], tf.int32), output_shape=[2, 0], sparse_values=v[:0], default_value=1.0
            ),
            "reshape_minus_one": raw.SparseReshape(
                input_indices=tf.constant([[0, 5], [1, 2]], tf.int64), input_shape=[2, 6], new_shape=[3, -1, 2]
            ),
            "reshape_zero_size": raw.SparseReshape(
                input_indices=tf.zeros([0, 2], tf.int64), input_shape=[0, 6], new_shape=[2, 0, 3]
            ),
            "reshape_rank0": raw.SparseReshape(
                input_indices=tf.constant([[0, 0]], tf.int64), input_shape=[1, 1], new_shape=tf.zeros([0], tf.int64)
            ),
        }

    _compare("sparse_to_dense", fn, [np.array([1, 2, 3, 4, 5, 6], np.float32)], jit)


@JIT
def test_sparse_reductions_and_softmax(jit):
    idx = tf.constant([[0, 1, 0], [0, 1, 1], [1, 0, 2], [1, 2, 2]], tf.int64)
    shape = tf.constant([2, 3, 3], tf.int64)

    def fn(v):
        out = {}
        for name in ["Sum", "Max"]:
            op = getattr(raw, f"SparseReduce{name}")
            sp = getattr(raw, f"SparseReduce{name}Sparse")
            out[f"{name}_keep"] = op(
                input_indices=idx, input_values=v, input_shape=shape, reduction_axes=[-1, 0], keep_dims=True
            )
            out[f"{name}_all"] = op(
                input_indices=idx, input_values=v, input_shape=shape, reduction_axes=tf.zeros([0], tf.int32)
            )
            out[f"{name}_empty"] = op(input_indices=idx[:0], input_values=v[:0], input_shape=shape, reduction_axes=[1])
            out[f"{name}_sparse"] = sp(
                input_indices=idx, input_values=v, input_shape=shape, reduction_axes=[1], keep_dims=True
            )
            out[f"{name}_sparse_empty"] = sp(
                input_indices=idx[:0], input_values=v[:0], input_shape=shape, reduction_axes=[0]
            )
        out["softmax"] = raw.SparseSoftmax(sp_indices=idx, sp_values=v, sp_shape=shape)
        out["softmax_empty"] = raw.SparseSoftmax(sp_indices=idx[:0], sp_values=v[:0], sp_shape=shape)
        out["softmax_rank2"] = raw.SparseSoftmax(sp_indices=idx[:, 1:], sp_values=v, sp_shape=shape[1:])
        return out

    _compare("sparse_reduce", fn, [np.array([-np.inf, 2.0, np.nan, -3.0], np.float32)], jit)


@JIT
def test_sparse_combinations(jit):
    ai = tf.constant([[0, 0], [1, 2], [2, 1]], tf.int64)
    bi = tf.constant([[0, 0], [1, 1], [2, 1]], tf.int64)
    shape = tf.constant([3, 3], tf.int64)

    def fn(a, b, dense):
        out = {}
        for thresh in [0.0, 1.5, -1.0]:
            r = raw.SparseAdd(
                a_indices=ai, a_values=a, a_shape=shape, b_indices=bi, b_values=b, b_shape=shape, thresh=thresh
            )
            out[f"add_{thresh}"] = r
        out["add_int"] = raw.SparseAdd(
            a_indices=ai,
            a_values=tf.cast(a, tf.int64),
            a_shape=shape,
            b_indices=bi,
            b_values=tf.cast(b, tf.int64),
            b_shape=shape,
            thresh=tf.constant(2, tf.int64),
        )
        out["maximum"] = raw.SparseSparseMaximum(
            a_indices=ai, a_values=a, a_shape=shape, b_indices=bi, b_values=b, b_shape=shape
        )
        out["minimum"] = raw.SparseSparseMinimum(
            a_indices=ai, a_values=a, a_shape=shape, b_indices=bi[:0], b_values=b[:0], b_shape=shape
        )
        for name in ["Add", "Mul", "Div"]:
            op = getattr(raw, f"SparseDenseCwise{name}")
            out[f"cwise_{name}_row"] = op(sp_indices=ai, sp_values=a, sp_shape=shape, dense=dense[0])
            out[f"cwise_{name}_col"] = op(sp_indices=ai, sp_values=a, sp_shape=shape, dense=dense[:, :1])
            out[f"cwise_{name}_scalar"] = op(sp_indices=ai, sp_values=a, sp_shape=shape, dense=dense[1, 1])
        out["reorder_dups"] = raw.SparseReorder(
            input_indices=tf.constant([[2, 1], [0, 0], [2, 1], [0, 0]], tf.int64),
            input_values=tf.concat([a, b[:1]], 0),
            input_shape=shape,
        )
        out["reorder_sorted"] = raw.SparseReorder(input_indices=ai, input_values=a, input_shape=shape)
        out["dense_add_i64"] = raw.SparseTensorDenseAdd(
            a_indices=tf.constant([[0, 0], [0, 0], [2, 2]], tf.int64), a_values=a, a_shape=shape, b=dense
        )
        out["dense_add_i32"] = raw.SparseTensorDenseAdd(
            a_indices=tf.constant([[0, 1], [2, 2], [0, 1]], tf.int32),
            a_values=a,
            a_shape=tf.constant([3, 3], tf.int32),
            b=dense,
        )
        for adj_a in [False, True]:
            for adj_b in [False, True]:
                out[f"matmul_{adj_a}_{adj_b}"] = raw.SparseTensorDenseMatMul(
                    a_indices=tf.constant([[0, 1], [0, 1], [2, 0]], tf.int64),
                    a_values=a,
                    a_shape=shape,
                    b=dense,
                    adjoint_a=adj_a,
                    adjoint_b=adj_b,
                )
        ca = tf.complex(a, a)
        out["matmul_complex_adj"] = raw.SparseTensorDenseMatMul(
            a_indices=ai, a_values=ca, a_shape=shape, b=tf.complex(dense, -dense), adjoint_a=True, adjoint_b=True
        )
        return out

    dense = np.array([[1, -2, 4], [0.5, 3, -1], [2, 0, 8]], np.float32)
    _compare(
        "sparse_combos",
        fn,
        [np.array([1.0, -2.0, 0.5], np.float32), np.array([-1.0, 1.0, -0.5], np.float32), dense],
        jit,
        rtol=1e-5,
    )


@JIT
def test_sparse_slice_concat_split_fill(jit):
    idx = tf.constant([[0, 0], [0, 3], [2, 1], [3, 3]], tf.int64)
    shape = tf.constant([4, 4], tf.int64)

    def fn(v):
        out = {
            "slice_past_end": raw.SparseSlice(indices=idx, values=v, shape=shape, start=[2, 2], size=[5, 5]),
            "slice_outside": raw.SparseSlice(indices=idx, values=v, shape=shape, start=[6, 0], size=[2, 2]),
            "slice_zero_size": raw.SparseSlice(indices=idx, values=v, shape=shape, start=[0, 0], size=[0, 4]),
        }
        other = tf.SparseTensor(idx[:2] + 1, v[:2], [4, 6])
        out["concat_expand"] = tf.sparse.concat(0, [tf.SparseTensor(idx, v, shape), other], expand_nonconcat_dims=True)
        out["concat_negative_dim"] = raw.SparseConcat(
            indices=[idx, idx[:2]], values=[v, v[:2]], shapes=[shape, tf.constant([2, 4], tf.int64)], concat_dim=-2
        )
        out["concat_empty"] = raw.SparseConcat(
            indices=[idx[:0], idx], values=[v[:0], v], shapes=[shape, shape], concat_dim=1
        )
        out["split_uneven"] = raw.SparseSplit(split_dim=1, indices=idx, values=v, shape=shape, num_split=3)
        out["split_more_than_dim"] = raw.SparseSplit(split_dim=0, indices=idx, values=v, shape=shape, num_split=4)
        out["fill_all_empty"] = raw.SparseFillEmptyRows(
            indices=idx[:0], values=v[:0], dense_shape=shape, default_value=v[1]
        )
        out["fill_no_rows"] = raw.SparseFillEmptyRows(
            indices=idx[:0], values=v[:0], dense_shape=tf.constant([0, 4], tf.int64), default_value=v[1]
        )
        out["fill_unsorted"] = raw.SparseFillEmptyRows(
            indices=tf.reverse(idx, [0]), values=v, dense_shape=tf.constant([6, 4], tf.int64), default_value=-v[1]
        )
        return _parts(out)

    _compare("sparse_slice_concat", fn, [np.array([1.0, 2.0, 3.0, 4.0], np.float32)], jit)


# -- ragged tensors ------------------------------------------------------------------------------------------


@JIT
@pytest.mark.parametrize("splits_dtype", [np.int32, np.int64])
def test_ragged_ops(jit, splits_dtype):
    def fn(values, splits, ints):
        rt = tf.RaggedTensor.from_row_splits(values, splits, validate=False)
        ri = tf.RaggedTensor.from_row_splits(ints, splits, validate=False)
        out = {
            "range_negative": raw.RaggedRange(
                starts=[5, 0, 3], limits=[0, 4, 3], deltas=[-2, 3, -1], Tsplits=tf.as_dtype(splits_dtype)
            ),
            "range_float": raw.RaggedRange(starts=[0.5, 2.0], limits=[2.0, -1.0], deltas=[0.4, -1.5]),
            "range_scalar_broadcast": raw.RaggedRange(starts=[1, 2, 9], limits=7, deltas=2),
            "to_tensor_small": rt.to_tensor(default_value=-1.0, shape=[2, 1]),
            "to_tensor_large": rt.to_tensor(default_value=9.0, shape=[6, 4]),
            "to_tensor_partial": rt.to_tensor(shape=[None, 2]),
            "to_sparse": rt.to_sparse(),
            "gather": tf.gather(rt, [3, 0, 0, 1]),
            "gather_empty": tf.gather(rt, tf.zeros([0], tf.int32)),
            "reduce_sum": tf.reduce_sum(rt, axis=1),
            "reduce_max": tf.reduce_max(rt, axis=1),
            "reduce_min_int": tf.reduce_min(ri, axis=1),
            "reduce_mean": tf.reduce_mean(rt, axis=1),
            "reduce_prod_int": tf.reduce_prod(ri, axis=1),
            "boolean_mask": tf.ragged.boolean_mask(rt, rt > 1.0),
            "row_lengths": rt.row_lengths(),
            "bincount": tf.math.bincount(ri.with_row_splits_dtype(tf.int64), minlength=3, axis=-1),
            "bincount_binary_weights": raw.RaggedBincount(
                splits=tf.cast(splits, tf.int64), values=ints, size=4, weights=values, binary_output=False
            ),
            "bincount_binary": raw.RaggedBincount(
                splits=tf.cast(splits, tf.int64),
                values=ints,
                size=4,
                weights=tf.zeros([0], tf.float32),
                binary_output=True,
            ),
            "bincount_size0": raw.RaggedBincount(
                splits=tf.cast(splits, tf.int64), values=ints, size=0, weights=tf.zeros([0], tf.float32)
            ),
            "fill_empty": raw.RaggedFillEmptyRows(
                value_rowids=tf.cast(rt.value_rowids(), tf.int64),
                values=values,
                nrows=tf.cast(rt.nrows(), tf.int64),
                default_value=7.0,
            ),
            "cross_hashed": tf.ragged.cross_hashed(
                [ri, tf.RaggedTensor.from_row_splits(ints * 3, splits, validate=False)], num_buckets=5
            ),
            "cross": tf.ragged.cross([tf.cast(ri, tf.int64), tf.constant([[1], [2], [3], [4]], tf.int64)]),
        }
        var = raw.RaggedTensorToVariant(rt_nested_splits=[splits], rt_dense_values=values, batched_input=True)
        back = raw.RaggedTensorFromVariant(
            encoded_ragged=var,
            input_ragged_rank=0,
            output_ragged_rank=1,
            Tvalues=tf.float32,
            Tsplits=tf.as_dtype(splits_dtype),
        )
        out["variant_round_trip"] = back
        return _parts(out)

    splits = np.array([0, 2, 2, 5, 5], splits_dtype)
    values = np.array([1.0, 2.0, -1.0, 3.0, 0.5], np.float32)
    _compare(f"ragged_{np.dtype(splits_dtype).name}", fn, [values, splits, np.array([0, 3, 1, 1, 2], np.int32)], jit)


# -- counting ------------------------------------------------------------------------------------------------


@JIT
def test_bincounts_and_buckets(jit):
    def fn(a, w, v):
        a64 = tf.cast(a, tf.int64)
        no_w = tf.zeros([0], tf.float32)
        sp_idx = tf.constant([[0, 0], [0, 1], [1, 0], [1, 3]], tf.int64)
        return {
            "bincount_size0": raw.Bincount(arr=a, size=0, weights=no_w),
            "bincount_beyond_size": raw.Bincount(arr=a, size=2, weights=w),
            "dense_int64_weights": raw.DenseBincount(
                input=a64, size=tf.constant(5, tf.int64), weights=tf.cast(w * 2, tf.int64)
            ),
            "dense_binary_2d": raw.DenseBincount(input=tf.reshape(a, [2, 2]), size=4, weights=no_w, binary_output=True),
            "dense_empty": raw.DenseBincount(input=a[:0], size=3, weights=no_w),
            "dense_f64": raw.DenseBincount(input=a, size=3, weights=tf.cast(w, tf.float64)),
            "sparse_2d": raw.SparseBincount(indices=sp_idx, values=a, dense_shape=[2, 4], size=4, weights=w),
            "sparse_1d_binary": raw.SparseBincount(
                indices=sp_idx[:, 1:],
                values=a64,
                dense_shape=[4],
                size=tf.constant(3, tf.int64),
                weights=no_w,
                binary_output=True,
            ),
            "bucketize_specials": raw.Bucketize(input=v, boundaries=[-1.0, 0.0, 2.5]),
            "bucketize_int": raw.Bucketize(input=a, boundaries=[0.5, 1.0, 3.0]),
            "bucketize_empty_boundaries": raw.Bucketize(input=v, boundaries=[]),
            "search_left": tf.searchsorted([[0.0, 1.0, np.nan]], tf.reshape(v, [1, -1]), side="left"),
            "search_right": tf.searchsorted([[-np.inf, 1.0, 1.0, np.inf]], tf.reshape(v, [1, -1]), side="right"),
            "search_int64_out": tf.searchsorted([1, 3, 3, 7], a, side="left", out_type=tf.int64),
        }

    v = np.array([np.nan, -np.inf, np.inf, 0.0, -0.0, 2.5, 1.0, -1.0], np.float32)
    _compare("counting", fn, [np.array([1, 3, 3, 0], np.int32), np.array([0.5, 1.0, 2.0, 3.0], np.float32), v], jit)


# -- round 2 ----------------------------------------------------------------------------------------------------


@JIT
def test_segments_int64_ids_beyond_32_bits(jit):
    """int64 ids and num_segments beyond 2^31 are out of range for the data; negative ones are dropped."""

    def fn(d, s):
        big = tf.constant(2**33 + 1, tf.int64)
        out = {
            f"u{name}": getattr(raw, f"UnsortedSegment{name}")(data=d, segment_ids=s, num_segments=3)
            for name in ["Sum", "Max", "Min", "Prod"]
        }
        out["u_mean"] = tf.math.unsorted_segment_mean(d, s, 4)
        out["u_sqrt_n"] = tf.math.unsorted_segment_sqrt_n(d, s, 4)
        out["u_negative_big"] = raw.UnsortedSegmentSum(data=d, segment_ids=s - big, num_segments=3)
        out["sparse_num_int64"] = raw.SparseSegmentSumWithNumSegments(
            data=d,
            indices=tf.constant([3, 0], tf.int64),
            segment_ids=tf.constant([0, 2], tf.int64),
            num_segments=tf.constant(5, tf.int64),
        )
        return out

    _compare(
        "int64_ids", fn, [np.arange(8, dtype=np.float32).reshape(4, 2), np.array([2, -(2**40), 0, 2], np.int64)], jit
    )


@JIT
def test_sparse_more(jit):
    idx = tf.constant([[0, 0], [1, 2], [2, 1]], tf.int64)
    shape = tf.constant([3, 3], tf.int64)

    def fn(a, b):
        out = {
            "add_thresh_equal": raw.SparseAdd(
                a_indices=idx, a_values=a, a_shape=shape, b_indices=idx[:1], b_values=b[:1], b_shape=shape, thresh=1.0
            ),
            "add_both_empty": raw.SparseAdd(
                a_indices=idx[:0],
                a_values=a[:0],
                a_shape=shape,
                b_indices=idx[:0],
                b_values=b[:0],
                b_shape=shape,
                thresh=0.0,
            ),
            "maximum_same": raw.SparseSparseMaximum(
                a_indices=idx, a_values=a, a_shape=shape, b_indices=idx, b_values=b, b_shape=shape
            ),
            "minimum_nan": raw.SparseSparseMinimum(
                a_indices=idx, a_values=a / 0.0, a_shape=shape, b_indices=idx, b_values=b, b_shape=shape
            ),
            "softmax_neg_inf_row": raw.SparseSoftmax(sp_indices=idx, sp_values=a * -np.inf, sp_shape=shape),
            "reorder_empty": raw.SparseReorder(input_indices=idx[:0], input_values=a[:0], input_shape=shape),
            "reduce_sum_int": raw.SparseReduceSum(
                input_indices=idx,
                input_values=tf.cast(a * 4, tf.int32),
                input_shape=shape,
                reduction_axes=[-2],
                keep_dims=True,
            ),
            "reduce_max_int_empty_rows": raw.SparseReduceMax(
                input_indices=idx[:1], input_values=tf.cast(a[:1] - 9, tf.int32), input_shape=shape, reduction_axes=[1]
            ),
            "reduce_max_float_empty_rows": raw.SparseReduceMax(
                input_indices=idx[:1], input_values=a[:1] - 9, input_shape=shape, reduction_axes=[1]
            ),
            "to_dense_rank0": raw.SparseToDense(
                sparse_indices=tf.zeros([0, 0], tf.int32),
                output_shape=tf.zeros([0], tf.int32),
                sparse_values=a[:0],
                default_value=a[0],
            ),
            "to_dense_rank0_repeated": raw.SparseToDense(
                sparse_indices=tf.zeros([2, 0], tf.int32),
                output_shape=tf.zeros([0], tf.int32),
                sparse_values=a[:2],
                default_value=a[0],
                validate_indices=False,
            ),
            "slice_rank1": raw.SparseSlice(indices=idx[:, :1], values=a, shape=shape[:1], start=[1], size=[1]),
            "split_rank1": raw.SparseSplit(split_dim=0, indices=idx[:, 1:], values=a, shape=shape[1:], num_split=2),
            "slice_negative_start": raw.SparseSlice(
                indices=idx[:, :1], values=a, shape=shape[:1], start=[-1], size=[2]
            ),
            "dense_bincount_binary_weights": raw.DenseBincount(input=[1, 2], size=3, weights=a[:2], binary_output=True),
            "dense_cwise_mul_int": raw.SparseDenseCwiseMul(
                sp_indices=idx, sp_values=tf.cast(a, tf.int64), sp_shape=shape, dense=tf.constant([[2, 3, 4]], tf.int64)
            ),
        }
        return _parts(out)

    _compare("sparse_more", fn, [np.array([1.0, -2.0, 0.5], np.float32), np.array([-1.0, 1.0, -0.5], np.float32)], jit)


@JIT
def test_ragged_rank2_and_truncation(jit):
    def fn(values, inner, outer):
        rt = tf.RaggedTensor.from_nested_row_splits(values, [outer, inner], validate=False)
        out = {
            "to_tensor": rt.to_tensor(default_value=-1),
            "to_tensor_truncate": rt.to_tensor(default_value=-1, shape=[2, 1, 2]),
            "to_tensor_pad": rt.to_tensor(default_value=-1, shape=[4, 3, 4]),
            "gather": tf.gather(rt, [2, 0]),
            "to_sparse": rt.to_sparse(),
            "reduce_sum_inner": tf.reduce_sum(rt, axis=2),
            "reduce_max_outer": tf.reduce_max(rt, axis=1),
            "range_int64": raw.RaggedRange(
                starts=tf.constant([2**40, 0], tf.int64),
                limits=tf.constant([2**40 + 3, -5], tf.int64),
                deltas=tf.constant([2, -3], tf.int64),
            ),
            "range_float_negative": raw.RaggedRange(starts=[1.0, 0.0], limits=[-1.0, 0.0], deltas=[-0.75, 0.5]),
        }
        return _parts(out)

    inner = np.array([0, 2, 2, 3, 6], np.int64)
    outer = np.array([0, 2, 2, 4], np.int64)
    _compare("ragged_rank2", fn, [np.array([1, 2, 3, 4, 5, 6], np.int32), inner, outer], jit)


@JIT
def test_bucketize_and_search_dtypes(jit):
    def fn(i, f):
        return {
            "bucketize_int64": raw.Bucketize(input=i, boundaries=[-1.5, 0.0, 3e9]),
            "bucketize_f64": raw.Bucketize(input=f, boundaries=[0.1, 0.2]),
            "search_int64": tf.searchsorted(tf.constant([-(2**40), 0, 2**33], tf.int64), i, side="right"),
            "search_empty_rows": tf.searchsorted(tf.zeros([1, 0], tf.float64), tf.reshape(f, [1, -1])),
            "search_empty_values": tf.searchsorted(tf.constant([1.0, 2.0], tf.float64), f[:0]),
            "lower_bound_3d": raw.LowerBound(
                sorted_inputs=tf.constant([[-0.0, 0.1, 0.1, 0.2, np.nan, 0.15]], tf.float64),
                values=tf.reshape(f, [1, -1]),
                out_type=tf.int64,
            ),
        }

    f = np.array([0.1, 0.2, np.nextafter(0.1, 1), -0.0, np.nan, 0.15], np.float64)
    _compare("bucketize_dtypes", fn, [np.array([-(2**40), -1, 0, 3 * 10**9, 2**33], np.int64), f], jit)


_RUN_TIME_INVALID = {
    "unsorted_segment_sum_too_large": (
        lambda d, s: raw.UnsortedSegmentSum(data=d, segment_ids=s, num_segments=3),
        [0, 3, 1, 1],
    ),
    "sparse_segment_num_too_large": (
        lambda d, s: raw.SparseSegmentSumWithNumSegments(data=d, indices=[0, 1, 2, 3], segment_ids=s, num_segments=2),
        [0, 0, 1, 2],
    ),
    "sparse_to_dense_unsorted": (
        lambda d, s: raw.SparseToDense(sparse_indices=s, output_shape=[5], sparse_values=d[:, 0], default_value=0.0),
        [0, 2, 1, 3],
    ),
    "sparse_to_dense_repeated": (
        lambda d, s: raw.SparseToDense(sparse_indices=s, output_shape=[5], sparse_values=d[:, 0], default_value=0.0),
        [0, 1, 1, 3],
    ),
    "dense_bincount_negative": (lambda d, s: raw.DenseBincount(input=s, size=3, weights=d[:, 0]), [0, -1, 1, 2]),
    "gather_out_of_range": (lambda d, s: tf.gather(d, s), [0, 4, 1, 2]),
    "sparse_tensor_dense_add_out_of_range": (
        lambda d, s: raw.SparseTensorDenseAdd(
            a_indices=tf.stack([tf.cast(s, tf.int64), tf.zeros([4], tf.int64)], 1),
            a_values=d[:, 0],
            a_shape=[4, 2],
            b=d,
        ),
        [0, 4, 1, 2],
    ),
    "segment_sum_unsorted": (lambda d, s: raw.SegmentSum(data=d, segment_ids=s), [0, 2, 1, 1]),
    "segment_max_negative": (lambda d, s: raw.SegmentMax(data=d, segment_ids=s), [-1, 0, 0, 1]),
    "sparse_segment_mean_out_of_range": (
        lambda d, s: raw.SparseSegmentMean(data=d, indices=s, segment_ids=[0, 0, 1, 1]),
        [0, 4, 1, 2],
    ),
    "sparse_segment_sum_unsorted_ids": (
        lambda d, s: raw.SparseSegmentSum(data=d, indices=[0, 1, 2, 3], segment_ids=s),
        [1, 0, 1, 1],
    ),
}


@pytest.mark.parametrize("case", sorted(_RUN_TIME_INVALID))
def test_run_time_invalid_ids_raise_op_by_op(case):
    """Ids that fix the output's shape are concrete when the call runs op by op: jaxsm raises like TF."""
    fn, ids = _RUN_TIME_INVALID[case]
    inputs = [np.arange(8, dtype=np.float32).reshape(4, 2), np.array(ids, np.int32)]
    export_dir, tf_fn = save_function(fn, inputs)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(*inputs)
    with pytest.raises(JaxsmError):
        run_jaxsm(export_dir, inputs, jit=False)


@JIT
def test_bincounts_int64_beyond_32_bits(jit):
    """Values of 2**32 and more are past ``size`` and ignored, never wrapped onto a small bin."""

    def fn(v):
        no_w = tf.zeros([0], tf.float32)
        return {
            "dense": raw.DenseBincount(input=v, size=tf.constant(3, tf.int64), weights=no_w),
            "dense_2d": raw.DenseBincount(input=tf.reshape(v, [2, 2]), size=tf.constant(3, tf.int64), weights=no_w),
            "sparse": raw.SparseBincount(
                indices=tf.constant([[0], [1], [2], [3]], tf.int64),
                values=v,
                dense_shape=[4],
                size=tf.constant(3, tf.int64),
                weights=no_w,
            ),
            "ragged": raw.RaggedBincount(
                splits=tf.constant([0, 1, 4], tf.int64), values=v, size=tf.constant(3, tf.int64), weights=no_w
            ),
            "segment_dropped": raw.UnsortedSegmentSum(data=tf.ones([4]), segment_ids=v - 2**33, num_segments=2),
        }

    _compare("bincount_int64", fn, [np.array([2**32 + 1, 1, 2**33, 2], np.int64)], jit)


def test_run_time_int64_indices_beyond_32_bits_are_dropped():
    """TF raises for these run-time indices; a compiled jaxsm call gathers zeros and drops the entry (gaps.py),
    and must never wrap 2**32 + 1 onto 1."""
    far = 2**32 + 1

    def fn(i, b):
        idx = tf.stack([tf.constant([0, 1], tf.int64), i], axis=1)
        return {
            "dense_add": raw.SparseTensorDenseAdd(a_indices=idx, a_values=[1.0, 2.0], a_shape=[3, 3], b=b),
            "matmul": raw.SparseTensorDenseMatMul(a_indices=idx, a_values=[1.0, 2.0], a_shape=[3, 3], b=b),
            "cwise_mul": raw.SparseDenseCwiseMul(sp_indices=idx, sp_values=[1.0, 2.0], sp_shape=[3, 3], dense=b),
            "reduce_sum": raw.SparseReduceSum(
                input_indices=idx, input_values=[1.0, 2.0], input_shape=[3, 3], reduction_axes=[0]
            ),
            "gather": tf.gather(b, i),
            "gather_nd": tf.gather_nd(b, idx),
        }

    b = np.arange(9, dtype=np.float32).reshape(3, 3)
    export_dir, tf_fn = save_function(fn, [np.array([2, far], np.int64), b])
    got = run_jaxsm(export_dir, [np.array([2, far], np.int64), b], jit=True)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(np.array([2, far], np.int64), b)
    np.testing.assert_array_equal(got["dense_add"], b + np.array([[0, 0, 1], [0, 0, 0], [0, 0, 0]], np.float32))
    np.testing.assert_array_equal(got["matmul"], np.array([b[2], [0, 0, 0], [0, 0, 0]], np.float32))
    np.testing.assert_array_equal(got["cwise_mul"], [b[0, 2], 0.0])
    np.testing.assert_array_equal(got["reduce_sum"], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(got["gather"], [b[2], [0, 0, 0]])
    np.testing.assert_array_equal(got["gather_nd"], [b[0, 2], 0.0])


@JIT
def test_segment_accumulation_and_signed_zeros(jit):
    """float16 sums that overflow midway, and which zero a max/min of 0.0 and -0.0 keeps."""

    def fn(h, z):
        out = {}
        out["sparse_SqrtN"] = raw.SparseSegmentSqrtN(data=h, indices=[0, 1, 2, 3], segment_ids=[0, 0, 0, 1])
        for name in ["Sum", "Mean"]:
            out[f"sorted_{name}"] = getattr(raw, f"Segment{name}")(data=h, segment_ids=[0, 0, 0, 1])
            out[f"sparse_{name}"] = getattr(raw, f"SparseSegment{name}")(
                data=h, indices=[0, 1, 2, 3], segment_ids=[0, 0, 0, 1]
            )
        out["unsorted_Sum"] = raw.UnsortedSegmentSum(data=h, segment_ids=[0, 0, 0, 1], num_segments=2)
        b = tf.cast(tf.concat([tf.abs(h[:1]) / 234.375, tf.ones([2], tf.float16)], 0), tf.bfloat16)  # [256, 1, 1]
        out["bf16_sorted_sum"] = tf.cast(raw.SegmentSum(data=b, segment_ids=[0, 0, 0]), tf.float32)
        out["bf16_unsorted_sum"] = tf.cast(
            raw.UnsortedSegmentSum(data=b, segment_ids=[0, 0, 0], num_segments=1), tf.float32
        )
        out["bf16_sorted_mean"] = tf.cast(raw.SegmentMean(data=b, segment_ids=[0, 0, 0]), tf.float32)
        for name in ["Sum", "Mean", "SqrtN"]:
            sparse = getattr(raw, f"SparseSegment{name}WithNumSegments")
            out[f"bf16_{name}"] = tf.cast(
                sparse(data=b, indices=[0, 1, 2], segment_ids=[0, 0, 0], num_segments=1), tf.float32
            )
        for name in ["Max", "Min"]:
            out[f"sorted_{name}"] = getattr(raw, f"Segment{name}")(data=z, segment_ids=[0, 0, 1, 1])
            out[f"unsorted_{name}"] = getattr(raw, f"UnsortedSegment{name}")(
                data=z, segment_ids=[0, 0, 1, 1], num_segments=2
            )
        out["sparse_reduce_max"] = raw.SparseReduceMax(
            input_indices=tf.constant([[0, 0], [0, 1], [1, 0], [1, 1]], tf.int64),
            input_values=z,
            input_shape=[2, 2],
            reduction_axes=[1],
        )
        out["int_sparse_sum"] = raw.SparseSegmentSum(
            data=tf.constant([[2**31 - 1], [1], [5]], tf.int32), indices=[0, 1, 2], segment_ids=[0, 0, 1]
        )
        return {
            k: tf.bitcast(v, tf.int16)
            if v.dtype == tf.float16
            else (tf.bitcast(v, tf.int32) if v.dtype == tf.float32 else v)
            for k, v in out.items()
        }

    h = np.array([60000, 60000, -60000, 1], np.float16)
    _compare("accumulation", fn, [h, np.array([0.0, -0.0, -0.0, 0.0], np.float32)], jit)


@JIT
def test_zero_width_and_mixed_index_types(jit):
    """Rows without columns, indices and segment ids of different integer types, and a few degenerate sparse
    inputs: repeated indices in SparseFillEmptyRows, a NaN in SparseSoftmax, SparseAdd's threshold on ints."""

    def fn(d, v):
        empty_cols = d[:, :0]
        idx = tf.constant([[0, 1], [0, 1], [2, 0]], tf.int64)
        out = {
            "segment_sum_no_cols": raw.SegmentSum(data=empty_cols, segment_ids=[0, 1, 1, 3]),
            "segment_max_no_cols": raw.SegmentMax(data=empty_cols, segment_ids=[0, 1, 1, 3]),
            "unsorted_min_no_cols": raw.UnsortedSegmentMin(data=empty_cols, segment_ids=[0, 1, 1, 3], num_segments=5),
            "sparse_mean_no_cols": raw.SparseSegmentMean(data=empty_cols, indices=[0, 1], segment_ids=[0, 2]),
            "sparse_mixed_types": raw.SparseSegmentSqrtN(
                data=d, indices=tf.constant([3, 1, 1], tf.int64), segment_ids=tf.constant([0, 0, 1], tf.int32)
            ),
            "sparse_num_mixed_types": raw.SparseSegmentMeanWithNumSegments(
                data=d,
                indices=tf.constant([3, 1], tf.int32),
                segment_ids=tf.constant([1, 1], tf.int64),
                num_segments=tf.constant(3, tf.int32),
            ),
            "fill_repeated": raw.SparseFillEmptyRows(indices=idx, values=v, dense_shape=[4, 2], default_value=-1.0),
            "softmax_nan": raw.SparseSoftmax(
                sp_indices=idx, sp_values=tf.concat([v[:2], [np.nan]], 0), sp_shape=[3, 2]
            ),
            "add_int_thresh": raw.SparseAdd(
                a_indices=idx[1:],
                a_values=tf.constant([-3, 2], tf.int32),
                a_shape=[3, 2],
                b_indices=idx[2:],
                b_values=tf.constant([-1], tf.int32),
                b_shape=[3, 2],
                thresh=3,
            ),
            "reduce_sum_all_keep_empty": raw.SparseReduceSum(
                input_indices=idx[:0], input_values=v[:0], input_shape=[3, 2], reduction_axes=[0, 1], keep_dims=True
            ),
        }
        return out

    _compare(
        "zero_width", fn, [np.arange(8, dtype=np.float32).reshape(4, 2), np.array([0.5, -1.0, 2.0], np.float32)], jit
    )


@JIT
def test_ragged_inner_dims_and_masks(jit):
    """Ragged tensors whose values are rows (a default value per column, truncation of the ragged dim only),
    masks on rank-3 ragged tensors, crosses without buckets and a ragged-rank-2 variant round trip."""

    def fn(values, splits, ints):
        rt = tf.RaggedTensor.from_row_splits(values, splits, validate=False)  # [4, None, 2]
        ri = tf.RaggedTensor.from_row_splits(ints, splits, validate=False)
        nested = tf.RaggedTensor.from_row_splits(rt, [0, 1, 4], validate=False)  # [2, None, None, 2]
        var = raw.RaggedTensorToVariant(
            rt_nested_splits=nested.nested_row_splits, rt_dense_values=values, batched_input=False
        )
        out = {
            "to_tensor_row_default": rt.to_tensor(default_value=[-1.0, -2.0]),
            "to_tensor_truncate": rt.to_tensor(default_value=[-1.0, -2.0], shape=[3, 2, 2]),
            "nested_to_tensor": nested.to_tensor(default_value=7.0, shape=[2, 2, 1, 2]),
            "mask_rows": tf.ragged.boolean_mask(rt, tf.RaggedTensor.from_row_splits(ints > 1, splits, validate=False)),
            "mask_batch": tf.ragged.boolean_mask(rt, [True, False, False, True]),
            "cross_hashed_no_buckets": tf.ragged.cross_hashed([ri, ri], num_buckets=0),
            "cross_hashed_salt": tf.ragged.cross_hashed(
                [ri, tf.constant([[5], [6], [7], [8]], tf.int64)], num_buckets=3, hash_key=7
            ),
            "reduce_mean_axis0": tf.reduce_mean(rt, axis=0),
            "reduce_sum_axis1_int": tf.reduce_sum(ri, axis=1),
            "variant_rank2": raw.RaggedTensorFromVariant(
                encoded_ragged=var, input_ragged_rank=2, output_ragged_rank=2, Tvalues=tf.float32, Tsplits=tf.int64
            ),
        }
        return _parts(out)

    values = np.arange(10, dtype=np.float32).reshape(5, 2) - 3
    _compare(
        "ragged_inner", fn, [values, np.array([0, 2, 2, 5, 5], np.int64), np.array([2, 0, 1, 5, 2], np.int64)], jit
    )


@JIT
def test_sparse_int64_shapes_beyond_32_bits(jit):
    """Sparse tensors whose dense shape has more than 2**32 elements: index arithmetic must stay in int64."""
    big = 2**33

    def fn(v, i):
        idx = tf.stack([i, tf.constant([1, 0, 1], tf.int64)], axis=1)  # rows up to 2**33 - 1
        shape = tf.constant([big, 2], tf.int64)
        out = {
            "reshape": raw.SparseReshape(
                input_indices=idx, input_shape=shape, new_shape=tf.constant([2, -1], tf.int64)
            ),
            "reorder": raw.SparseReorder(input_indices=idx, input_values=v, input_shape=shape),
            "slice": raw.SparseSlice(indices=idx, values=v, shape=shape, start=[big - 3, 0], size=[10, 2]),
            "reduce_sparse": raw.SparseReduceSumSparse(
                input_indices=idx, input_values=v, input_shape=shape, reduction_axes=[1]
            ),
            "concat": raw.SparseConcat(indices=[idx, idx], values=[v, v], shapes=[shape, shape], concat_dim=0),
            "fill_small": raw.SparseFillEmptyRows(
                indices=idx[:1] - tf.constant([[big - 2, 0]], tf.int64),
                values=v[:1],
                dense_shape=[3, 2],
                default_value=0.0,
            ),
            "to_dense_col": raw.SparseReduceSum(
                input_indices=idx, input_values=v, input_shape=shape, reduction_axes=[0]
            ),
        }
        return out

    _compare(
        "sparse_big", fn, [np.array([1.0, 2.0, 3.0], np.float32), np.array([big - 1, 5, 2**32 + 1], np.int64)], jit
    )


@JIT
def test_segments_small_integer_and_half_grads(jit):
    """int8/uint8/uint16 data that wraps, and float16 gradients of the sparse segment ops."""

    def fn(d, g):
        out = {}
        for dt in [tf.int8, tf.uint8, tf.uint16]:
            x = tf.cast(d, dt)
            out[f"sum_{dt.name}"] = raw.SegmentSum(data=x, segment_ids=[0, 0, 0, 2])
            out[f"prod_{dt.name}"] = raw.UnsortedSegmentProd(data=x, segment_ids=[1, 1, 1, 0], num_segments=3)
            out[f"max_{dt.name}"] = raw.UnsortedSegmentMax(data=x, segment_ids=[1, 1, -1, 0], num_segments=3)
            out[f"sparse_sum_{dt.name}"] = raw.SparseSegmentSum(data=x, indices=[0, 1, 1], segment_ids=[0, 0, 1])
        for name in ["Sum", "Mean", "SqrtN"]:
            grad = getattr(raw, f"SparseSegment{name}Grad")
            out[f"grad_{name}"] = grad(grad=g, indices=[2, 2, 2, 0], segment_ids=[0, 0, 0, 1], output_dim0=4)
        return out

    g = np.array([60000, -30000], np.float16)
    _compare("small_ints", fn, [np.array([100, 100, 90, 7], np.int32), g], jit, rtol=1e-3)


@JIT
def test_sparse_unsorted_operands(jit):
    """Operands whose indices are not in row-major order, which TF's kernels take as they come."""

    def fn(a, b):
        ai = tf.constant([[2, 1], [0, 0], [1, 2]], tf.int64)
        bi = tf.constant([[1, 2], [0, 0], [2, 2]], tf.int64)
        shape = tf.constant([3, 3], tf.int64)
        out = {
            "softmax": raw.SparseSoftmax(sp_indices=ai, sp_values=a, sp_shape=shape),
            "softmax_same_row": raw.SparseSoftmax(
                sp_indices=tf.constant([[0, 2], [0, 0], [0, 1]], tf.int64), sp_values=a, sp_shape=shape
            ),
            "reduce_sum_sparse": raw.SparseReduceSumSparse(
                input_indices=ai, input_values=a, input_shape=shape, reduction_axes=[0]
            ),
            "reduce_max": raw.SparseReduceMax(input_indices=ai, input_values=a, input_shape=shape, reduction_axes=[1]),
            "dense_mul": raw.SparseDenseCwiseMul(
                sp_indices=ai, sp_values=a, sp_shape=shape, dense=tf.reshape(tf.range(9.0), [3, 3])
            ),
            "slice": raw.SparseSlice(indices=ai, values=a, shape=shape, start=[0, 0], size=[2, 3]),
            "split": raw.SparseSplit(split_dim=1, indices=ai, values=a, shape=shape, num_split=2),
            "to_dense": raw.SparseToDense(
                sparse_indices=bi, output_shape=shape, sparse_values=b, default_value=0.0, validate_indices=False
            ),
            "add": raw.SparseAdd(
                a_indices=ai, a_values=a, a_shape=shape, b_indices=bi, b_values=b, b_shape=shape, thresh=0.0
            ),
            "maximum": raw.SparseSparseMaximum(
                a_indices=ai, a_values=a, a_shape=shape, b_indices=bi, b_values=b, b_shape=shape
            ),
            "concat": raw.SparseConcat(indices=[ai, bi], values=[a, b], shapes=[shape, shape], concat_dim=1),
            "fill": raw.SparseFillEmptyRows(indices=ai, values=a, dense_shape=[4, 3], default_value=9.0),
        }
        return _parts(out)

    _compare(
        "sparse_unsorted", fn, [np.array([1.0, -2.0, 0.5], np.float32), np.array([-1.0, 1.0, 3.0], np.float32)], jit
    )
