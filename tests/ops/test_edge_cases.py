"""Edge cases of already-lowered ops against TensorFlow: negative and duplicate indices, empty segments and
tensors, NaN/-0.0, integer corners, unusual dtypes and attrs, and the errors TF raises for values known at
trace time.

Each family is one tf.function returning a dict of outputs, saved once per module and compared with jaxsm under
``jax.jit`` and op by op. Where TF raises ``InvalidArgumentError`` for a constant input, jaxsm must raise a
:class:`jaxsm.errors.JaxsmError` when the function is traced (``jit=True``: the indices are constants, the data a
run-time input); run-time values follow the rules in jaxsm/ops/gaps.py.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import JaxsmError  # noqa: E402
from tests.tfcompare import assert_raises_like_tf, run_jaxsm, save_function  # noqa: E402
from tests.tfcompare import compare_case as _compare  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])
raw = tf.raw_ops


def _arange(shape, dtype=np.float32):
    return np.arange(int(np.prod(shape))).astype(dtype).reshape(shape)


# -- gathers and scatters ------------------------------------------------------------------------------------


@JIT
def test_gathers(jit):
    def fn(x, i):
        return {
            "neg_axis": tf.gather(x, [2, 0, 3], axis=-1),
            "batch_dims": tf.gather(x, [[0, 2], [1, 1]], axis=1, batch_dims=1),
            "batch_dims_neg": tf.gather(x, [[0, 2], [1, 1]], axis=-2, batch_dims=-1),
            "batch_dims2": tf.gather(x, [[[0, 3]] * 3] * 2, axis=2, batch_dims=2),
            "empty_indices": tf.gather(x, tf.zeros([0, 2], tf.int64), axis=1),
            "scalar_index": tf.gather(x, 1, axis=0),
            "int64_axis": raw.GatherV2(params=x, indices=[1], axis=tf.constant(-1, tf.int64)),
            "v1": raw.Gather(params=x, indices=[[1, 0]]),
            "bool": tf.gather(x > 5, [1], axis=2),
            "empty_params": tf.gather(x[:, :0], tf.zeros([3], tf.int32), axis=2),
            "runtime": tf.gather(x, i, axis=1),
            "nd": tf.gather_nd(x, [[1, 2], [0, 0]]),
            "nd_full": tf.gather_nd(x, [[1, 2, 3], [0, 0, 0]]),
            "nd_batch": tf.gather_nd(x, [[[1], [2]], [[0], [0]]], batch_dims=1),
            "nd_empty_tuple": tf.gather_nd(x, tf.zeros([2, 0], tf.int32)),
            "nd_no_tuples": tf.gather_nd(x, tf.zeros([0, 2], tf.int32)),
            "nd_runtime": tf.gather_nd(x, tf.stack([i[:2], i[1:]], axis=1) % 2),
        }

    _compare("gathers", fn, [_arange((2, 3, 4)), np.array([2, 0, 1], np.int16)], jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.bool_, np.uint8])
def test_scatter_nd_duplicates(jit, dtype):
    # Duplicates add up (bool: TF's kernel lets the last update win); empty update sets are a no-op.
    def fn(u):
        return {
            "dup": tf.scatter_nd([[1], [1], [3]], u, [5]),
            "dup_int64_shape": tf.scatter_nd(tf.constant([[1], [1], [0]], tf.int64), u, tf.constant([3], tf.int64)),
            "empty": tf.scatter_nd(tf.zeros([0, 1], tf.int32), u[:0], [3]),
            "slices": tf.scatter_nd([[0], [2], [0]], tf.stack([u, u], axis=1), [3, 2]),
        }

    u = np.array([1, 0, 1], dtype) if dtype == np.bool_ else np.array([1, 2, 4], dtype)
    _compare(f"scatter_nd_{np.dtype(dtype).name}", fn, [u], jit)


@pytest.mark.parametrize(
    "op", ["ScatterNd", "TensorScatterUpdate", "TensorScatterAdd", "TensorScatterSub", "TensorScatterMax"]
)
@pytest.mark.parametrize("n", [2, 0])
def test_scatters_refuse_empty_index_tuples(op, n):
    # Indices of shape [n, 0] would address the whole tensor; TF's kernels refuse them (also for n = 0).
    def fn(t, u):
        whole = tf.zeros([n, 0], tf.int32)
        if op == "ScatterNd":
            return tf.scatter_nd(whole, u[:n], [2, 3])
        return getattr(raw, op)(tensor=t, indices=whole, updates=u[:n])

    t = np.array([[1, -2, 3], [0, 5, -6]], np.float32)
    u = np.array([[[2, 2, 2], [-1, 9, 0]], [[4, -3, 1], [7, 7, 7]]], np.float32)
    export_dir, tf_fn = save_function(fn, [t, u])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(t, u)
    with pytest.raises(JaxsmError, match="index tuples of length 1 or more"):
        run_jaxsm(export_dir, [t, u])


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_tensor_scatters(jit, dtype):
    def fn(t, u):
        out = {}
        for op in [
            "TensorScatterUpdate",
            "TensorScatterAdd",
            "TensorScatterSub",
            "TensorScatterMax",
            "TensorScatterMin",
        ]:
            out[op] = getattr(raw, op)(tensor=t, indices=[[1], [3], [4]], updates=u)
        out["dup_add"] = tf.tensor_scatter_nd_add(t, [[1], [1], [1]], u)
        out["dup_max"] = tf.tensor_scatter_nd_max(t, [[1], [1], [1]], u)
        return out

    _compare(f"tensor_scatter_{np.dtype(dtype).name}", fn, [_arange((5,), dtype), np.array([9, -3, 2], dtype)], jit)


_CONSTANT_OUT_OF_RANGE = {
    "gather_v2": lambda x: tf.gather(x, [0, 5], axis=1),
    "gather_v2_negative": lambda x: tf.gather(x, [0, -1], axis=-1),
    "gather_nd": lambda x: tf.gather_nd(x, [[1, 2], [0, -1]]),
    "scatter_nd": lambda x: tf.scatter_nd([[1], [7]], x[0, 0, :2], [5]),
    "tensor_scatter_update": lambda x: tf.tensor_scatter_nd_update(x, [[2]], x[:1]),
    "tensor_scatter_add": lambda x: tf.tensor_scatter_nd_add(x, [[0, 3]], x[0, :1]),
    "unsorted_segment_sum": lambda x: tf.math.unsorted_segment_sum(x, [0, 5], 3),
    "segment_sum_unsorted": lambda x: tf.math.segment_sum(x, [1, 0]),
    "segment_max_negative": lambda x: tf.math.segment_max(x, [-1, 0]),
    "sparse_segment_sum": lambda x: tf.sparse.segment_sum(x, [0, 7], [0, 0]),
    "sparse_segment_mean_num": lambda x: tf.sparse.segment_mean(x, [0, 1], [0, 4], num_segments=3),
    "floor_div_zero": lambda x: tf.math.floordiv(tf.cast(x, tf.int32), tf.constant([0, 1, 2, 3], tf.int32)),
    "div_zero": lambda x: raw.Div(x=tf.cast(x, tf.uint8), y=tf.constant([0, 1, 2, 3], tf.uint8)),
    "floor_mod_zero": lambda x: tf.math.floormod(tf.cast(x, tf.int64), tf.constant(0, tf.int64)),
    "truncate_div_zero": lambda x: tf.truncatediv(tf.cast(x, tf.int16), tf.constant(0, tf.int16)),
    "pow_negative": lambda x: tf.pow(tf.cast(x, tf.int32), tf.constant([2, -1, 0, 1], tf.int32)),
    "reverse_sequence": lambda x: tf.reverse_sequence(x, [5, 1], seq_axis=2, batch_axis=0),
    "mirror_pad_reflect": lambda x: tf.pad(x, [[0, 0], [3, 0], [0, 0]], mode="REFLECT"),
    "mirror_pad_symmetric": lambda x: tf.pad(x, [[0, 0], [0, 0], [0, 5]], mode="SYMMETRIC"),
    "slice_size": lambda x: tf.slice(x, [1, 0, 2], [1, 1, 5]),
    "band_part": lambda x: tf.linalg.band_part(x, 5, 0),
    "bincount_negative": lambda x: raw.Bincount(arr=[1, -1], size=3, weights=tf.zeros([0], tf.float32)) + x[0, 0, :3],
    "unravel_index": lambda x: tf.unravel_index([0, 12], [3, 4]) + tf.cast(x[0, :2, :2], tf.int32),
    "sparse_to_dense_out_of_bounds": lambda x: raw.SparseToDense(
        sparse_indices=[[2], [7]],
        output_shape=[4],
        sparse_values=x[0, 0, :2],
        default_value=-1.0,
        validate_indices=False,
    ),
    "sparse_to_dense_unsorted": lambda x: raw.SparseToDense(
        sparse_indices=[[2], [0]], output_shape=[4], sparse_values=x[0, 0, :2], default_value=-1.0
    ),
    "sparse_to_dense_repeated": lambda x: tf.sparse.to_dense(
        tf.sparse.SparseTensor([[0, 1], [0, 1]], x[0, 0, :2], [2, 2])
    ),
    "sparse_xent_label": lambda x: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=[1, 4], logits=x[0, :2]),
    "crop_and_resize_box_index": lambda x: tf.image.crop_and_resize(x[..., None], [[0, 0, 1, 1]], [2], [2, 2]),
    "mean_duplicate_axes": lambda x: tf.raw_ops.Mean(input=x, axis=[1, -2]),
    "histogram_nan": lambda x: tf.histogram_fixed_width([0.0, np.nan], [0.0, 5.0], nbins=3) + tf.size(x),
}


@pytest.mark.parametrize("case", sorted(_CONSTANT_OUT_OF_RANGE))
def test_constant_invalid_values_raise(case):
    assert_raises_like_tf(_CONSTANT_OUT_OF_RANGE[case], [_arange((2, 3, 4))])


@JIT
def test_runtime_out_of_range_rules(jit):
    """Run-time indices TF rejects follow jaxsm's documented rules under jit: gathers read zeros, scatters and
    segment rows are dropped (gaps.py). Outside jit the values are known and jaxsm raises like TF."""

    def fn(x, i, s):
        return {
            "gather": tf.gather(x, i),
            "scatter": tf.scatter_nd(i[:, None], x, [4, 2]),
            "tensor_scatter": tf.tensor_scatter_nd_add(x, i[:, None], x),
            "unsorted_segment": tf.math.unsorted_segment_max(x, s, 3),
        }

    x, i, s = _arange((4, 2)), np.array([1, -1, 4, 0], np.int32), np.array([0, 5, 2, 2], np.int64)
    export_dir, _ = save_function(fn, [x, i, s])
    if not jit:
        with pytest.raises(JaxsmError, match="out of range"):
            run_jaxsm(export_dir, [x, i, s], jit=False)
        return
    got = run_jaxsm(export_dir, [x, i, s], jit=True)
    np.testing.assert_array_equal(got["gather"], [x[1], [0, 0], [0, 0], x[0]], err_msg="gather")
    np.testing.assert_array_equal(got["scatter"], [x[3], x[0], [0, 0], [0, 0]], err_msg="scatter")
    np.testing.assert_array_equal(got["tensor_scatter"], x + [x[3], x[0], [0, 0], [0, 0]], err_msg="tensor_scatter")
    np.testing.assert_array_equal(got["unsorted_segment"], [x[0], [np.finfo(np.float32).min] * 2, x[3]], "segment")


# -- segment reductions --------------------------------------------------------------------------------------


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_segments(jit, dtype):
    def fn(d, s):
        out = {}
        for name in ["Sum", "Mean", "Max", "Min", "Prod"]:
            out[f"{name}_gap"] = getattr(raw, f"Segment{name}")(data=d, segment_ids=[0, 0, 3, 3])
            out[f"{name}_empty"] = getattr(raw, f"Segment{name}")(data=d[:0], segment_ids=tf.zeros([0], tf.int64))
        for name in ["Sum", "Max", "Min", "Prod"]:
            op = getattr(raw, f"UnsortedSegment{name}")
            out[f"u{name}_negative"] = op(data=d, segment_ids=s, num_segments=4)
            out[f"u{name}_zero_segments"] = op(data=d, segment_ids=[-1, -1, -1, -1], num_segments=0)
            out[f"u{name}_2d_ids"] = op(data=d, segment_ids=[[0, 1], [1, 1], [0, 2], [2, 2]], num_segments=3)
        for name in ["Sum", "Mean", "SqrtN"]:
            if name == "Sum" or dtype in (np.float32, np.float16):
                sparse = getattr(raw, f"SparseSegment{name}")
                out[f"s{name}"] = sparse(data=d, indices=[0, 3, 1, 1], segment_ids=[0, 0, 2, 2])
                out[f"s{name}_num"] = getattr(raw, f"SparseSegment{name}WithNumSegments")(
                    data=d, indices=[0, 3, 1], segment_ids=[0, 0, 2], num_segments=4
                )
        return out

    d = np.array([[1, 2], [3, 4], [5, 6], [7, 8]], dtype)
    _compare(f"segments_{np.dtype(dtype).name}", fn, [d, np.array([-1, 2, 0, 2], np.int32)], jit, rtol=1e-3)


# -- integer and float arithmetic ----------------------------------------------------------------------------


@JIT
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64])
def test_integer_corners(jit, dtype):
    """INT_MIN / -1, negative operands, shifts by the bit width or more, Abs/Neg of INT_MIN."""
    info = np.iinfo(dtype)
    bits = info.bits
    if info.min < 0:
        a = np.array([7, -7, 7, -7, info.min, info.min, 0, 5, info.max], dtype)
        b = np.array([2, 2, -2, -2, -1, 1, 3, -3, -1], dtype)
        shifts = np.array([0, 1, bits - 1, bits, bits + 3, -1, -5, 1, 0], dtype)
    else:
        a, b = np.array([7, 0, info.max, 5], dtype), np.array([2, 3, 7, 9], dtype)
        shifts = np.array([0, 1, bits - 1, bits], dtype)

    def fn(a, b, s):
        out = {op: getattr(raw, op)(x=a, y=b) for op in ["FloorDiv", "FloorMod", "TruncateDiv", "Div"]}
        out.update({op: getattr(raw, op)(x=a, y=b) for op in ["Maximum", "Minimum", "Mul", "Sub", "AddV2"]})
        out.update({op: getattr(raw, op)(x=a, y=s) for op in ["LeftShift", "RightShift", "BitwiseXor"]})
        out.update({op: getattr(raw, op)(x=a) for op in ["Invert", "PopulationCount", "Square"]})
        if info.min < 0:
            out.update({op: getattr(raw, op)(x=a) for op in ["Abs", "Neg", "Sign"]})
            if bits >= 32:
                out.update({op: getattr(raw, op)(x=a, y=b) for op in ["TruncateMod", "Mod", "SquaredDifference"]})
        return out

    _compare(f"int_corners_{np.dtype(dtype).name}", fn, [a, b, shifts], jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_specials(jit, dtype):
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.0, 0.0, np.nan, np.inf, -np.inf, -3.7, 3.7], dtype)

    def fn(x):
        out = {"Round": tf.math.round(x), "Sign": tf.math.sign(x), "Floor": tf.math.floor(x), "Ceil": tf.math.ceil(x)}
        out.update({"Elu": tf.nn.elu(x), "Selu": tf.nn.selu(x), "Softsign": tf.nn.softsign(x)})
        out.update({"IsNan": tf.math.is_nan(x), "IsInf": tf.math.is_inf(x), "IsFinite": tf.math.is_finite(x)})
        if dtype != np.float16:
            out["Rint"] = tf.math.rint(x)
        y = tf.reverse(x, [0])
        out.update({op: getattr(raw, op)(x=x, y=y) for op in ["FloorDiv", "FloorMod", "DivNoNan", "RealDiv", "Pow"]})
        out.update({op: getattr(raw, op)(x=x, y=y) for op in ["Xdivy", "Xlogy", "MulNoNan", "Atan2"]})
        return out

    _compare(f"float_specials_{np.dtype(dtype).name}", fn, [x], jit, rtol=1e-3 if dtype == np.float16 else 1e-6)


@JIT
def test_sign_of_negative_zero(jit):
    # TF's Sign(-0.0) is +0.0 (jnp.sign keeps the sign bit).
    x = np.array([-0.0, 0.0, -2.0, np.nan], np.float32)
    _compare(
        "sign_zero",
        lambda x: {"f32": tf.math.sign(x), "f64": tf.math.sign(tf.cast(x, tf.float64))},
        [x],
        jit,
        signed_zeros=True,
    )


@JIT
def test_bitcast_complex(jit):
    # XLA has no complex bitcast; TF reinterprets the (real, imaginary) halves' bytes.
    def fn(z, f, b):
        out = {d.name: tf.bitcast(z, d) for d in (tf.float64, tf.int64, tf.uint8, tf.float32, tf.int16, tf.complex64)}
        out.update({"c128_" + d.name: tf.bitcast(tf.cast(z, tf.complex128), d) for d in (tf.complex64, tf.int32)})
        out.update(
            {"f64_c64": tf.bitcast(tf.cast(f, tf.float64), tf.complex64), "f32_c64": tf.bitcast(f, tf.complex64)}
        )
        out.update({"u8_c64": tf.bitcast(b, tf.complex64), "scalar": tf.bitcast(z[0], tf.uint64)})
        return out

    z = np.array([1 + 2j, -0.5 - 3j], np.complex64)
    _compare("bitcast_complex", fn, [z, np.array([[1.5, -2.0], [3, 4]], np.float32), _arange((2, 8), np.uint8)], jit)


@JIT
def test_mean_accumulation(jit):
    """TF's Mean sums integers narrower than 64 bits without overflow and float16 in float16 (inf when the sum
    overflows); an empty integer mean is 0, an empty float mean NaN."""

    def fn(i8, u8, i32, f16, e):
        return {
            "int8": tf.reduce_mean(i8),
            "uint8_axis": tf.reduce_mean(tf.stack([u8, u8]), axis=1),
            "int32": tf.reduce_mean(i32, keepdims=True),
            "float16": tf.reduce_mean(f16),
            "float16_count_overflow": tf.reduce_mean(tf.fill([70000], f16[2])),
            "empty_int": tf.reduce_mean(tf.cast(e, tf.int32)[:, :0], axis=1),
            "empty_float": tf.reduce_mean(e[:, :0], axis=[1], keepdims=True),
        }

    inputs = [
        np.array([100, 100, 3], np.int8),
        np.array([200, 100, 3], np.uint8),
        np.array([2**30, 2**30, 3], np.int32),
        np.array([60000, 60000, 3], np.float16),
        np.ones([2, 3], np.float32),
    ]
    _compare("mean_accumulation", fn, inputs, jit)


@JIT
def test_reductions_empty_and_keep_dims(jit):
    r = np.array([[1.0, np.nan, 3], [-np.inf, 2, 0]], np.float32)

    def fn(r, i):
        out = {}
        for op in ["Sum", "Prod", "Max", "Min", "Mean", "EuclideanNorm"]:
            for axis in ([], [0], [-1], [0, 1]):
                out[f"{op}_{axis}"] = getattr(raw, op)(input=r, axis=tf.constant(axis, tf.int32), keep_dims=True)
            out[f"{op}_empty"] = getattr(raw, op)(input=r[:, :0], axis=[1], keep_dims=False)
            out[f"{op}_empty_int"] = getattr(raw, op)(input=i[:, :0], axis=[1], keep_dims=True)
        for op in ["All", "Any"]:
            out[f"{op}_empty"] = getattr(raw, op)(input=i[:, :0] > 0, axis=[1])
        return out

    _compare("reductions_empty", fn, [r, np.ones([2, 3], np.int32)], jit)


# -- scans, sorting, unique ----------------------------------------------------------------------------------


@JIT
def test_cumulative(jit):
    def fn(x, xi):
        out = {}
        for ex in (False, True):
            for rev in (False, True):
                for ax in (0, -1):
                    key = f"{ex}_{rev}_{ax}"
                    out["cumsum_" + key] = tf.math.cumsum(x, ax, exclusive=ex, reverse=rev)
                    out["cumprod_" + key] = tf.math.cumprod(xi, ax, exclusive=ex, reverse=rev)
                    out["clse_" + key] = tf.math.cumulative_logsumexp(x, ax, exclusive=ex, reverse=rev)
        out["empty"] = tf.math.cumsum(x[:, :0], 1, exclusive=True)
        out["uint8_wraps"] = tf.math.cumsum(tf.constant([[200, 100, 7]], tf.uint8), 1)
        out["complex"] = tf.math.cumsum(tf.complex(x, -x), 0, exclusive=True, reverse=True)
        out["clse_all_neg_inf"] = tf.math.cumulative_logsumexp(tf.fill([2], -np.inf), 0, exclusive=True)
        out["clse_float64"] = tf.math.cumulative_logsumexp(tf.cast(x, tf.float64), 1, reverse=True)
        return out

    # NaN in CumulativeLogsumexp: TF's fold keeps the running value and adds log 2 (-inf stays, +inf gives NaN)
    nan, inf = np.nan, np.inf
    x = np.array([[3.0, -1, nan, 2], [0, -0.0, inf, -inf], [nan, 1, nan, nan], [-inf, nan, inf, nan]], np.float32)
    xi = np.array([[3, -1, 7, 2], [0, 5, 5, -4], [1, 2, 3, 4], [-1, -1, 2, 0]], np.int32)
    _compare("cumulative", fn, [x, xi], jit)


@JIT
def test_top_k_ties(jit):
    """Equal values (-0.0 and 0.0 included) go to the lower index; a NaN is taken last (k < n)."""
    t = np.array([[1.0, 3, 3, np.nan, 2, 3], [-0.0, 0.0, -1, 5, 5, -np.inf]], np.float32)

    def fn(t):
        out = {f"k{k}": tf.math.top_k(t, k) for k in (0, 1, 3)}
        out["k6_no_nan"] = tf.math.top_k(t[1:], 6)
        out["int"] = tf.math.top_k(tf.constant([[5, 1, 5, 5, 2, 7]], tf.int64), 4)
        out["uint8"] = tf.math.top_k(tf.constant([200, 3, 255], tf.uint8), 2)
        out["index_int64"] = raw.TopKV2(input=t, k=tf.constant(2, tf.int64), index_type=tf.int64)
        return out

    _compare("top_k", fn, [t], jit, signed_zeros=True)


@JIT
def test_arg_extremes_and_unique(jit):
    a = np.array([[1.0, 3, 3, np.nan], [np.nan, 2, -np.inf, np.nan], [-0.0, 0.0, 0.0, -0.0]], np.float32)

    def fn(a, u, i):
        out = {}
        for op in ["ArgMax", "ArgMin"]:
            for ax in (0, -1):
                out[f"{op}_{ax}"] = getattr(raw, op)(input=a, dimension=ax)
                out[f"{op}_{ax}_int"] = getattr(raw, op)(input=i, dimension=ax, output_type=tf.int32)
            out[f"{op}_bool"] = getattr(raw, op)(input=i > 0, dimension=0)
        out["unique"] = tf.unique(u)
        out["unique_counts"] = tf.unique_with_counts(u, out_idx=tf.int64)
        out["unique_v2_axis"] = raw.UniqueV2(x=i, axis=tf.constant([1], tf.int64))
        out["unique_v2_neg_axis"] = raw.UniqueWithCountsV2(x=i, axis=[-1])
        out["unique_v2_no_axis"] = raw.UniqueV2(x=i[0], axis=tf.zeros([0], tf.int32))
        out["unique_empty"] = tf.unique(u[:0])
        return out

    u = np.array([1.0, np.nan, -0.0, 0.0, np.nan, 1.0, 2], np.float32)
    i = np.array([[1, 5, 1], [7, 7, 7], [0, -1, 0]], np.int64)
    _compare("arg_unique", fn, [a, u, i], jit)


# -- shapes, slicing, padding --------------------------------------------------------------------------------


@JIT
def test_reshape_with_zero_and_minus_one(jit):
    # TF infers -1 from the input's non-zero dimensions when the new shape has a 0: [0, 3, 4] -> [0, -1, 4].
    def fn(x):
        return {
            "zero_then_m1": tf.reshape(x[:0], [0, -1, 4]),
            "m1_then_zero": tf.reshape(x[:0], [-1, 0]),
            "sizes_5_m1_0": tf.reshape(x[:0], [5, -1, 0]),
            "plain": tf.reshape(x[:0], [-1, 3]),
            "scalar": tf.reshape(x[:1, :1, :1], []),
        }

    _compare("reshape", fn, [_arange((2, 3, 4))], jit)


@JIT
def test_slicing_and_padding(jit):
    def fn(x, i):
        return {
            "reverse_neg": tf.reverse(x, [-1, 0]),
            "reverse_none": tf.reverse(x, tf.zeros([0], tf.int32)),
            "reverse_sequence": tf.reverse_sequence(x, tf.constant([0, 3], tf.int64), seq_axis=2, batch_axis=0),
            "reflect": tf.pad(x, [[1, 1], [2, 0], [3, 3]], mode="REFLECT"),
            "symmetric_max": tf.pad(x, [[2, 2], [3, 3], [0, 4]], mode="SYMMETRIC"),
            "padv2": tf.pad(tf.cast(x, tf.int8), [[1, 0], [0, 2], [0, 0]], constant_values=-7),
            "tile_zero": tf.tile(x, [0, 2, 1]),
            "slice_m1": tf.slice(x, [1, 0, 2], [-1, -1, 2]),
            "slice_runtime": tf.slice(x, tf.stack([i, i, i]), [1, 2, 2]),
            "neg_stride": x[::-1, ::-2, 1:3],
            "clamped": x[-10:10, 5:, :-10],
            "shrink_negative": x[-1, :, -2],
            "newaxis": x[:, tf.newaxis, ..., tf.newaxis, 1],
            "reverse_clamped": x[10:-10:-1, -1:-4:-1],
            "empty": x[1:1, 2:0],
            "runtime_index": x[:, i],
            "split_neg": tf.split(x, 2, axis=-1),
            "splitv_m1": tf.split(x, [1, -1, 0], axis=2),
            "concat_empties": tf.concat([x[:, :0], x, x[:, :0]], axis=1),
            "stack_neg": tf.stack([x, x], axis=-1),
            "unstack_neg": tf.unstack(x, axis=-1),
            "squeeze_neg": tf.squeeze(x[:, :1, None], [-3, -2]),
            "expand_neg": tf.expand_dims(x, -4),
            "broadcast_to_zero": tf.broadcast_to(x[:1, :1, :1], [0, 3, 4]),
            "roll": tf.roll(x, [-1, 5, 2], [0, 1, -1]),
            "roll_same_axis": tf.roll(x, [1, 1], [1, 1]),
        }

    _compare("slicing", fn, [_arange((2, 3, 4)), np.int32(1)], jit)


@JIT
def test_where_select_and_diagonals(jit):
    m = _arange((2, 3, 4)) + 1

    def fn(m, c):
        out = {f"where_rank{r}": tf.where(tf.reshape(m[0, 0, : 2**r] > 2, [2] * r)) for r in (1, 2)}
        out["where_rank5"] = tf.where(tf.reshape(tf.cast(m[:, :, :2], tf.int32) % 3 > 0, [1, 2, 3, 2, 1]))
        out["selectv2_bcast"] = tf.where(c[:, None], m[:, 0], -1.0)
        out["select_v1_rows"] = raw.Select(condition=c, x=m[:, 0], y=-m[:, 0])
        out["select_v1_scalar"] = raw.Select(condition=c[0], x=m, y=-m)
        for lo, hi in [(-1, -1), (0, 0), (1, -1), (-1, 0), (3, 4)]:
            out[f"band_{lo}_{hi}"] = tf.linalg.band_part(m, lo, hi)
        for align in ["RIGHT_LEFT", "LEFT_RIGHT", "LEFT_LEFT", "RIGHT_RIGHT"]:
            out[f"diag_part_{align}"] = tf.linalg.diag_part(m, k=(-1, 2), padding_value=9, align=align)
            out[f"set_diag_{align}"] = tf.linalg.set_diag(m, -m[:, :2, :3], k=(-1, 0), align=align)
            out[f"diag_{align}"] = tf.linalg.diag(m[0, :2, :3], k=(0, 1), padding_value=7, align=align)
        out["diag_rectangular"] = tf.linalg.diag(m[0, 0, :3], k=1, num_rows=3, num_cols=5, padding_value=-1)
        return out

    _compare("where_diag", fn, [m, np.array([True, False])], jit)


@JIT
def test_counting_ops(jit):
    def fn(a, w, v):
        return {
            "bincount_weights": tf.math.bincount(a, w, minlength=6),
            "bincount_binary": tf.math.bincount(tf.reshape(a, [2, 2]), minlength=4, binary_output=True),
            "bincount_axis": tf.math.bincount(tf.reshape(a, [2, 2]), minlength=4, maxlength=4, axis=-1),
            "dense_bincount_2d": raw.DenseBincount(input=tf.reshape(a, [2, 2]), size=3, weights=tf.reshape(w, [2, 2])),
            "bucketize": raw.Bucketize(input=v, boundaries=[0.0, 1.0, 1.0, 5.0]),
            "histogram": tf.histogram_fixed_width(v[:-2], [0.0, 5.0], nbins=5),
            "histogram_int": tf.histogram_fixed_width(a, [0, 5], nbins=3, dtype=tf.int64),
            "clip_int": tf.clip_by_value(a, -2, 2),
            "clip_nan": tf.clip_by_value(v, -1.0, 1.0),
            "in_top_k": tf.math.in_top_k(a[:2], tf.reshape(v[:6], [2, 3]), 2),
            "one_hot_axis0": tf.one_hot(tf.reshape(a, [2, 2]) - 1, 3, axis=0, on_value=2.0, off_value=-1.0),
            "one_hot_int8": tf.one_hot(a, 3, on_value=5, off_value=-1, dtype=tf.int8),
            "one_hot_depth0": tf.one_hot(a, 0),
            "unravel": tf.unravel_index(a, [2, 4]),
        }

    v = np.array([-1, 0, 1, 1.5, 5, 6, np.nan, np.inf], np.float32)
    _compare("counting", fn, [np.array([1, 1, 3, 0], np.int32), np.array([0.5, 1, 2, 3], np.float32), v], jit)


@JIT
def test_max_pool_nan_and_neg_inf(jit):
    """TF's CPU max pooling starts from the lowest finite value and never takes a NaN: a window of NaN and -inf
    gives -FLT_MAX, a NaN next to numbers is skipped."""
    x = np.array([np.nan, -np.inf, np.nan, 3, 1, np.nan, -np.inf, -np.inf], np.float32).reshape(1, 8, 1, 1)

    def fn(x):
        return {
            "valid": tf.nn.max_pool2d(x, [2, 1], [2, 1], "VALID"),
            "same": tf.nn.max_pool2d(x, [3, 1], [2, 1], "SAME"),
            "float64": tf.nn.max_pool2d(tf.cast(x, tf.float64), [2, 1], [2, 1], "VALID"),
        }

    _compare("max_pool_nan", fn, [x], jit)
