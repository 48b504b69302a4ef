"""Lowered ops that no other test names, against TensorFlow: stitching and partitioning, permutations and set
differences, histograms, image patches, constant padding, reversal, segment V2 ops, matrix exponential and
logarithm, 2-D/3-D real FFTs, number formatting, ref-variable scatters, lookup table export/import/remove, the
shapes and dtypes of stateful random ops, optionals, numeric checks, printing and WAV round trips.

Each case is one tf.function returning a dict of outputs, saved once and compared with jaxsm under ``jax.jit``
and op by op. Where TF raises for a constant input, jaxsm must raise a :class:`jaxsm.errors.JaxsmError`.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import jaxsm  # noqa: E402
from jaxsm.errors import JaxsmError  # noqa: E402
from tests.tfcompare import assert_raises_like_tf, run_jaxsm, save_function  # noqa: E402
from tests.tfcompare import compare_case as _compare  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")]
JIT = pytest.mark.parametrize("jit", [True, False])
raw = tf.raw_ops
xla_ops = pytest.importorskip("tensorflow.compiler.tf2xla.ops.gen_xla_ops")


def _raises_at_run_time(fn, inputs, jit):
    """Like ``assert_raises_like_tf``, but the inputs are saved with unknown shapes, so that TF's shape inference
    does not reject the constants when tracing; jaxsm sees the shapes when it traces."""
    inputs = [np.asarray(x) for x in inputs]
    export_dir, tf_fn = save_function(fn, inputs, shapes=[None] * len(inputs))  # (unknown ranks)
    with pytest.raises((tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError)):
        tf_fn(*inputs)
    with pytest.raises(JaxsmError):
        run_jaxsm(export_dir, inputs, jit=jit)


def _rename_op(export_dir, old_op, new_op):
    """Rename every ``old_op`` node of the saved functions to ``new_op`` (an op TF 2.21 can no longer build)."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with open(f"{export_dir}/saved_model.pb", "rb") as f:
        sm.ParseFromString(f.read())
    nodes = [n for f in sm.meta_graphs[0].graph_def.library.function for n in f.node_def if n.op == old_op]
    for node in nodes:
        node.op = new_op
    with open(f"{export_dir}/saved_model.pb", "wb") as f:
        f.write(sm.SerializeToString())
    assert nodes, f"no {old_op} node"


# -- array ops -----------------------------------------------------------------------------------------------


@JIT
def test_stitch_partition_permutation_setdiff(jit):
    """DynamicStitch with duplicate and overlapping indices (the last one wins), rank-2 data and int64 values;
    DynamicPartition with empty partitions; InvertPermutation (int32, int64, empty); ListDiff with duplicates."""

    def fn(x, p):
        out = {}
        out["stitch_dup"] = raw.DynamicStitch(indices=[[0, 2], [2, 1], [0]], data=[x[:2], x[2:4], x[4:5]])
        out["stitch_rows"] = raw.DynamicStitch(
            indices=[[1], [0, 1]], data=[tf.reshape(x[:2], [1, 2]), tf.reshape(x[2:6], [2, 2])]
        )
        out["stitch_i64"] = raw.DynamicStitch(indices=[[3, 0], [1]], data=[tf.constant([7, 8], tf.int64), [9]])
        out["stitch_parallel"] = raw.ParallelDynamicStitch(indices=[[0, 1], [1, 2]], data=[x[:2], x[2:4]])
        parts = raw.DynamicPartition(data=x, partitions=p, num_partitions=4)
        out.update({f"part{i}": t for i, t in enumerate(parts)})
        out["inv"] = raw.InvertPermutation(x=[2, 0, 3, 1])
        out["inv64"] = raw.InvertPermutation(x=tf.constant([1, 0], tf.int64))
        out["inv_empty"] = raw.InvertPermutation(x=tf.zeros([0], tf.int32))
        d, i = raw.ListDiff(x=[4, 1, 4, 2, 7, 1], y=[1, 9], out_idx=tf.int64)
        out["diff"], out["diff_idx"] = d, i
        d, i = raw.ListDiff(x=x, y=x[1:3])
        out["diff_f"], out["diff_f_idx"] = d, i
        d, i = raw.ListDiff(x=x[:0], y=x)
        out["diff_empty"], out["diff_empty_idx"] = d, i
        out["stitch_empty"] = raw.DynamicStitch(indices=[tf.zeros([0], tf.int32), [1]], data=[x[:0], x[:1]])
        out["stitch_rank3"] = raw.DynamicStitch(
            indices=[[[0, 3]], [[1]]], data=[tf.reshape(x[:4], [1, 2, 2]), tf.reshape(x[4:], [1, 1, 2])]
        )
        parts = raw.DynamicPartition(data=tf.reshape(x, [2, 3]), partitions=[[1, 0, 1], [1, 1, 0]], num_partitions=2)
        out.update({f"part2d_{i}": t for i, t in enumerate(parts)})
        out["stitch_c"] = raw.DynamicStitch(indices=[[1, 0], [0]], data=[tf.complex(x[:2], x[:2]), [3j]])
        return out

    x = np.array([1.5, -2.0, 3.0, 0.5, 3.0, 6.0], np.float32)
    _compare("stitch", fn, [x, np.array([0, 2, 0, 2, 3, 0], np.int32)], jit)


@JIT
def test_stitch_partition_setdiff_strings(jit):
    def fn(s, p):
        out = {"stitch": raw.DynamicStitch(indices=[[3, 0], [0, 1]], data=[s[:2], s[2:4]])}  # row 2: ""
        parts = raw.DynamicPartition(data=s, partitions=p, num_partitions=3)
        out.update({f"part{i}": t for i, t in enumerate(parts)})
        d, i = raw.ListDiff(x=s, y=["b", "zz"])
        out["diff"], out["diff_idx"] = d, i
        out["pad"] = raw.PadV2(input=s, paddings=[[1, 2]], constant_values="")
        out["rev"] = raw.ReverseV2(tensor=s, axis=[0])
        return out

    _compare("stitch_strings", fn, [np.array([b"a", b"b", b"", b"b"], object), np.array([2, 0, 2, 2], np.int32)], jit)


@JIT
def test_invert_permutation_invalid(jit):
    def invert(bad):
        return lambda x: raw.InvertPermutation(x=tf.constant(bad)) + x

    for bad in ([0, 0, 1], [0, 3, 1], [-1, 0, 1]):
        assert_raises_like_tf(invert(bad), [np.int32(0)], jit=jit)


@JIT
@pytest.mark.parametrize(
    "case",
    ["stitch_negative", "partition_out_of_range", "partition_negative", "histogram_range"],
)
def test_stitch_partition_histogram_invalid(case, jit):
    fns = {
        "stitch_negative": lambda x: raw.DynamicStitch(indices=[[0, -1]], data=[x[:2]]),
        "partition_out_of_range": lambda x: raw.DynamicPartition(data=x, partitions=[0, 2, 1], num_partitions=2)[0],
        "partition_negative": lambda x: raw.DynamicPartition(data=x, partitions=[0, -1, 1], num_partitions=2)[1],
        "histogram_range": lambda x: raw.HistogramFixedWidth(values=x, value_range=[1.0, 1.0], nbins=2),
    }
    assert_raises_like_tf(fns[case], [np.array([1.0, 2.0, 3.0], np.float32)], jit=jit)


@JIT
def test_histogram_fixed_width(jit):
    """Values below/above the range clip to the first/last bin, NaN-free float32/float64/int32 inputs, int64
    counts."""

    def fn(x):
        out = {}
        out["f32"] = raw.HistogramFixedWidth(values=x, value_range=[0.0, 5.0], nbins=5)
        out["f32_i64"] = raw.HistogramFixedWidth(values=x, value_range=[-1.0, 1.0], nbins=3, dtype=tf.int64)
        out["f64"] = raw.HistogramFixedWidth(values=tf.cast(x, tf.float64), value_range=[-2.0, 8.0], nbins=7)
        out["i32"] = raw.HistogramFixedWidth(values=tf.cast(x, tf.int32), value_range=[0, 4], nbins=4)
        out["one_bin"] = raw.HistogramFixedWidth(values=x, value_range=[0.0, 1.0], nbins=1)
        out["empty"] = raw.HistogramFixedWidth(values=x[:0], value_range=[0.0, 1.0], nbins=3)
        return out

    x = np.array([-3.0, 0.0, 0.99, 1.0, 2.5, 4.999, 5.0, 9.0, 3.0], np.float32)
    _compare("histogram", fn, [x], jit)


@JIT
def test_extract_image_patches(jit):
    def fn(x):
        out = {}
        for pad in ["VALID", "SAME"]:
            for ks, st, rt in [((2, 2), (1, 1), (1, 1)), ((2, 3), (2, 1), (1, 2)), ((3, 2), (3, 2), (2, 1))]:
                out[f"{pad}_{ks}_{st}_{rt}"] = raw.ExtractImagePatches(
                    images=x, ksizes=[1, *ks, 1], strides=[1, *st, 1], rates=[1, *rt, 1], padding=pad
                )
        out["int"] = raw.ExtractImagePatches(
            images=tf.cast(x, tf.int32), ksizes=[1, 2, 2, 1], strides=[1, 2, 2, 1], rates=[1, 1, 1, 1], padding="SAME"
        )
        for dt in [tf.uint8, tf.int64, tf.complex64, tf.float16]:
            out[f"{dt.name}"] = raw.ExtractImagePatches(
                images=tf.cast(x, dt), ksizes=[1, 3, 2, 1], strides=[1, 2, 3, 1], rates=[1, 1, 2, 1], padding="SAME"
            )
        out["vol"] = raw.ExtractVolumePatches(
            input=tf.reshape(x, [1, 2, 3, 5, 2]), ksizes=[1, 1, 2, 2, 1], strides=[1, 1, 2, 2, 1], padding="SAME"
        )
        return out

    x = np.arange(60, dtype=np.float32).reshape(1, 6, 5, 2)
    _compare("patches", fn, [x], jit)


@JIT
def test_pad_v2_reverse_slice(jit):
    """PadV2 with constant values per dtype (negative, NaN, bool, string, uint8) and zero paddings, MirrorPad;
    ReverseV2 with negative, several and no axes; Slice with size -1 and empty slices."""

    def fn(x):
        out = {}
        out["f"] = raw.PadV2(input=x, paddings=[[1, 0], [0, 2]], constant_values=-2.5)
        out["nan"] = raw.PadV2(input=x, paddings=[[0, 1], [1, 1]], constant_values=np.nan)
        out["i8"] = raw.PadV2(
            input=tf.cast(x, tf.int8), paddings=[[2, 1], [0, 0]], constant_values=tf.constant(-7, tf.int8)
        )
        out["u8"] = raw.PadV2(
            input=tf.cast(x, tf.uint8), paddings=[[0, 0], [3, 0]], constant_values=tf.constant(255, tf.uint8)
        )
        out["b"] = raw.PadV2(input=x > 0, paddings=[[1, 1], [1, 1]], constant_values=True)
        out["s"] = raw.PadV2(input=tf.strings.as_string(x), paddings=[[1, 0], [0, 1]], constant_values="pad")
        out["i64_pads"] = raw.PadV2(
            input=x, paddings=tf.constant([[0, 0], [1, 0]], tf.int64), constant_values=tf.constant(3.0)
        )
        out["scalar"] = raw.PadV2(input=x[0, 0], paddings=tf.zeros([0, 2], tf.int32), constant_values=1.0)
        out["rev_neg"] = raw.ReverseV2(tensor=x, axis=[-1])
        out["rev_both"] = raw.ReverseV2(tensor=x, axis=tf.constant([1, 0], tf.int64))
        out["rev_none"] = raw.ReverseV2(tensor=x, axis=tf.zeros([0], tf.int32))
        out["rev_str"] = raw.ReverseV2(tensor=tf.strings.as_string(x), axis=[0])
        out["rev_b"] = raw.ReverseV2(tensor=x > 0, axis=[1])
        out["slice"] = raw.Slice(input=x, begin=[1, 1], size=[-1, 2])
        out["slice_empty"] = raw.Slice(input=x, begin=[2, 0], size=[0, -1])
        out["slice_i64"] = raw.Slice(input=x, begin=tf.constant([0, 2], tf.int64), size=tf.constant([2, -1], tf.int64))
        return out

    x = np.array([[1.0, -2.0, 3.5], [0.0, 5.0, -6.0], [7.0, 8.0, 9.0]], np.float32)
    _compare("pad_reverse", fn, [x], jit)


@JIT
def test_pad_reverse_slice_invalid(jit):
    """The bad paddings/axes/begins are run-time inputs (TF's shape inference rejects constants when tracing)."""
    x = np.arange(3, dtype=np.float32)
    for fn, bad in [
        (lambda x, p: raw.PadV2(input=x, paddings=p, constant_values=0.0), [[-1, 0]]),
        (lambda x, a: raw.ReverseV2(tensor=x, axis=a), [1]),
        (lambda x, a: raw.ReverseV2(tensor=x, axis=a), [0, 0]),
    ]:
        assert_raises_like_tf(fn, [x, np.array(bad, np.int32)], jit=jit)
    if jit:  # (op by op, a Slice's begin is a run-time value, and out of range it is clamped: not checked)
        _raises_at_run_time(lambda x: raw.Slice(input=x, begin=[2], size=[2]), [x], jit)


@JIT
def test_unravel_index_and_likes(jit):
    def fn(x, i):
        out = {}
        out["unravel"] = raw.UnravelIndex(indices=i, dims=[3, 4])
        out["unravel_scalar"] = raw.UnravelIndex(indices=i[0], dims=[2, 3, 2])
        out["unravel_i64"] = raw.UnravelIndex(indices=tf.cast(i, tf.int64), dims=tf.constant([12], tf.int64))
        out["ones"] = raw.OnesLike(x=x)
        out["ones_b"] = raw.OnesLike(x=x > 0)
        out["zeros_c"] = raw.ZerosLike(x=tf.complex(x, x))
        out["zeros_i8"] = raw.ZerosLike(x=tf.cast(x, tf.int8))
        out["snap"] = raw.Snapshot(input=x)
        out["stop"] = raw.StopGradient(input=x)
        out["prevent"] = raw.PreventGradient(input=x, message="no")
        out["ensure"] = raw.EnsureShape(input=x, shape=[None, 3])
        return out

    _compare("likes", fn, [np.ones((2, 3), np.float32), np.array([0, 5, 11], np.int32)], jit)


@JIT
def test_ensure_shape_and_unravel_invalid(jit):
    for fn in [
        lambda x: raw.EnsureShape(input=x, shape=[3]),
        lambda x: raw.EnsureShape(input=x, shape=[2, 1]),
        lambda x: raw.EnsureShape(input=x, shape=[]),
    ]:
        _raises_at_run_time(fn, [np.arange(2, dtype=np.float32)], jit)
    # (TF checks only the upper bound: index -1 unravels to [0, -1], which is not copied; jaxsm raises)
    for fn in [
        lambda x: raw.UnravelIndex(indices=[12], dims=[3, 4]) + tf.cast(x[0], tf.int32),
        lambda x: raw.UnravelIndex(indices=[[2, 25]], dims=[3, 4, 2]) + tf.cast(x[0], tf.int32),
    ]:
        assert_raises_like_tf(fn, [np.arange(2, dtype=np.float32)], jit=jit)


@JIT
def test_segment_v2_and_sqrt_n_ops(jit):
    """Segment*V2 (num_segments given: trailing empty segments get 0, ids can be int64), SparseSegmentSqrtN with
    num_segments, and the SparseSegment*GradV2 ops (output_dim0 and the unique indices)."""

    @tf.function(jit_compile=True)  # TF has Segment*V2 kernels for XLA only
    def v2(d):
        out = {}
        ids = tf.constant([0, 0, 2, 2], tf.int64)
        for name in ["Sum", "Prod", "Min", "Max"]:
            op = getattr(raw, f"Segment{name}V2")
            out[name] = op(data=d, segment_ids=ids, num_segments=4)
            out[f"{name}_i32"] = op(
                data=tf.cast(d, tf.int32), segment_ids=[0, 1, 1, 3], num_segments=tf.constant(5, tf.int64)
            )
        return out

    def fn(d):
        out = v2(d)
        out["min"] = raw.SegmentMin(data=d, segment_ids=[0, 0, 1, 3])
        out["sqrtn_n"] = raw.SparseSegmentSqrtNWithNumSegments(
            data=d, indices=[0, 2, 3, 3], segment_ids=[0, 0, 2, 2], num_segments=4
        )
        out["sqrtn_n_i64"] = raw.SparseSegmentSqrtNWithNumSegments(
            data=d, indices=tf.constant([1, 1], tf.int64), segment_ids=tf.constant([1, 1], tf.int64), num_segments=3
        )
        for name in ["Sum", "Mean", "SqrtN"]:
            op = getattr(raw, f"SparseSegment{name}GradV2")
            g, idx = op(grad=d[:3], indices=[3, 0, 3, 1], segment_ids=[0, 1, 1, 2], dense_output_dim0=5)
            out[f"{name}_grad"], out[f"{name}_grad_idx"] = g, idx
        return out

    d = (np.arange(12, dtype=np.float32).reshape(4, 3) - 4.0) / 2.0
    _compare("segment_v2", fn, [d], jit, rtol=1e-6)


@JIT
@pytest.mark.parametrize("case", ["segment_too_large", "index_out_of_range", "index_negative", "unsorted"])
def test_sparse_segment_sqrt_n_with_num_segments_invalid(case, jit):
    args = {
        "segment_too_large": ([0, 1], [0, 3]),
        "index_out_of_range": ([0, 4], [0, 1]),
        "index_negative": ([-1, 0], [0, 1]),
        "unsorted": ([0, 1], [1, 0]),
    }[case]

    def fn(d):
        i, s = args
        return raw.SparseSegmentSqrtNWithNumSegments(data=d, indices=i, segment_ids=s, num_segments=3)

    assert_raises_like_tf(fn, [np.ones((4, 2), np.float32)], jit=jit)


# -- linalg and FFT ------------------------------------------------------------------------------------------


@JIT
@pytest.mark.parametrize(
    ("op", "oracle", "dtype"),
    [
        ("MatrixExponential", tf.linalg.expm, np.float32),
        ("MatrixExponential", tf.linalg.expm, np.float64),
        ("MatrixExponential", tf.linalg.expm, np.complex64),
        ("MatrixLogarithm", tf.linalg.logm, np.complex64),
        ("MatrixLogarithm", tf.linalg.logm, np.complex128),
    ],
)
def test_matrix_exponential_logarithm(op, oracle, dtype, jit):
    """TF 2.21 no longer builds these ops (tf.linalg.expm/logm are Python): a saved Cholesky node is renamed, and
    jaxsm's result compared with TF's Python implementation on the same batch (small, large-norm, zero, empty)."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 3, 3)) * np.array([0.3, 3.0, 0.0, 1.0])[:, None, None]
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal((4, 3, 3)) * 0.2
    if op == "MatrixLogarithm":  # away from the branch cut
        a = a @ np.conj(np.swapaxes(a, -1, -2)) + 2 * np.eye(3)
    a = a.astype(dtype)
    export_dir, _ = save_function(lambda m: {"y": raw.Cholesky(input=m), "y_empty": raw.Cholesky(input=m[:0])}, [a])
    _rename_op(export_dir, "Cholesky", op)
    got = run_jaxsm(export_dir, [a], jit=jit)
    tol = 1e-4 if np.dtype(dtype) in (np.float32, np.complex64) else 1e-9
    for key, m in [("y", a), ("y_empty", a[:0])]:
        want = oracle(tf.constant(m)).numpy()
        g = np.asarray(got[key])
        assert g.dtype == want.dtype and g.shape == want.shape, key
        np.testing.assert_allclose(g, want, rtol=tol, atol=tol * np.abs(want).max(initial=1.0), err_msg=key)


@JIT
def test_batch_self_adjoint_eig_v1(jit):
    """The pre-V2 op (TF 2.21 cannot build it: a renamed Cholesky node): [..., N+1, N], the ascending eigenvalues
    (TF's eigvalsh) in row 0, the eigenvectors as the columns below (checked by reconstruction: signs may differ)."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((2, 3, 3))
    a = (a + np.swapaxes(a, 1, 2)).astype(np.float32)
    export_dir, _ = save_function(lambda m: raw.Cholesky(input=m), [a])
    _rename_op(export_dir, "Cholesky", "BatchSelfAdjointEig")
    got = np.asarray(run_jaxsm(export_dir, [a], jit=jit))
    assert got.shape == (2, 4, 3) and got.dtype == np.float32
    w, v = got[:, 0], got[:, 1:]
    np.testing.assert_allclose(w, tf.linalg.eigvalsh(a).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v @ (w[:, :, None] * np.swapaxes(v, 1, 2)), a, atol=1e-4)


@JIT
def test_rfft_2d_3d_lengths(jit):
    """RFFT2D/3D and IRFFT2D/3D with fft_length shorter than the input (cropped) and odd, float64/complex128."""

    def fn(x):
        out = {}
        out["r2"] = raw.RFFT2D(input=x, fft_length=[4, 6])
        out["r2_short"] = raw.RFFT2D(input=x, fft_length=[2, 3])
        out["r3"] = raw.RFFT3D(input=x, fft_length=[2, 4, 6])
        out["r3_mixed"] = raw.RFFT3D(input=x, fft_length=[1, 2, 5])
        out["r2_64"] = raw.RFFT2D(input=tf.cast(x, tf.float64), fft_length=[3, 5], Tcomplex=tf.complex128)
        c = tf.signal.rfft2d(x)  # [2, 4, 4]
        out["i2"] = raw.IRFFT2D(input=c, fft_length=[4, 6])
        out["i2_short"] = raw.IRFFT2D(input=c, fft_length=[3, 4])
        out["i2_odd"] = raw.IRFFT2D(input=c, fft_length=[4, 7])
        out["i3"] = raw.IRFFT3D(input=c, fft_length=[2, 4, 6])
        out["i3_short"] = raw.IRFFT3D(input=c, fft_length=[1, 3, 5])
        out["i2_128"] = raw.IRFFT2D(input=tf.cast(c, tf.complex128), fft_length=[4, 5], Treal=tf.float64)
        return out

    x = np.random.default_rng(0).standard_normal((2, 4, 6)).astype(np.float32)
    _compare("rfft", fn, [x], jit, rtol=1e-4, atol=1e-4)


@JIT
def test_fft_input_shorter_than_fft_length_raises(jit):
    """TF's RFFT/IRFFT kernels do not zero-pad (tf.signal does, in Python): each input dimension must be at least
    fft_length, for IRFFT the inner one at least fft_length // 2 + 1."""
    c = np.ones((2, 4, 4), np.complex64)
    for op, n in [("IRFFT2D", [6, 6]), ("IRFFT2D", [4, 9]), ("IRFFT3D", [3, 4, 6]), ("IRFFT3D", [2, 4, 8])]:
        _raises_at_run_time(lambda c, op=op, n=n: getattr(raw, op)(input=c, fft_length=n), [c], jit)
    x = np.ones((2, 4, 6), np.float32)
    for op, n in [("RFFT2D", [5, 6]), ("RFFT2D", [4, 7]), ("RFFT3D", [3, 4, 6]), ("RFFT3D", [2, 4, 8])]:
        _raises_at_run_time(lambda x, op=op, n=n: getattr(raw, op)(input=x, fft_length=n), [x], jit)


# -- ref-variable scatters (TF1 graphs) ----------------------------------------------------------------------


def test_ref_scatter_ops_with_duplicate_indices(tmp_path):
    """Scatter{Div,Max,Min,Mul,Sub} and ScatterNd{Add,Sub,Min,Update} on VariableV2 refs: duplicate indices
    accumulate (Update: distinct indices only, TF leaves the duplicate winner unspecified), int32 variables, rank-2
    updates; each op run once in order in one Session, then in jaxsm by pruning to each op in the same order."""
    from tests.tfcompare import assert_close, v1_graph

    tf1 = tf.compat.v1
    with v1_graph():
        f = tf1.get_variable("f", initializer=np.arange(1, 9, dtype=np.float32).reshape(4, 2), use_resource=False)
        n = tf1.get_variable("n", initializer=np.array([5, -3, 8, 0], np.int32), use_resource=False)
        u = np.array([[2.0, -1.0], [4.0, 0.5], [-3.0, 2.0]], np.float32)
        ops = [
            raw.ScatterDiv(ref=f, indices=[1, 3, 1], updates=u),
            raw.ScatterMax(ref=f, indices=[0, 0, 2], updates=u),
            raw.ScatterMin(ref=f, indices=tf.constant([2, 2, 3], tf.int64), updates=u),
            raw.ScatterMul(ref=f, indices=[3, 0, 3], updates=u),
            raw.ScatterSub(ref=f, indices=[0, 1, 0], updates=u),
            raw.ScatterNdAdd(ref=f, indices=[[1, 0], [1, 0], [2, 1]], updates=[1.5, 2.5, -4.0]),
            raw.ScatterNdSub(ref=f, indices=[[3], [3]], updates=u[:2]),
            raw.ScatterNdMin(ref=f, indices=[[0, 1], [0, 1], [3, 0]], updates=[-7.0, 3.0, 100.0]),
            raw.ScatterNdUpdate(ref=f, indices=[[2], [0]], updates=u[1:]),
            raw.ScatterMax(ref=n, indices=[1, 1, 3], updates=[-5, 4, -1]),
            raw.ScatterMin(ref=n, indices=[0, 2, 0], updates=[7, 2, 1]),
            raw.ScatterDiv(ref=n, indices=[2, 2], updates=[-3, 2]),  # integer division truncates toward 0
            raw.ScatterNdMin(ref=n, indices=[[1], [1]], updates=[9, -9]),
        ]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            builder = tf1.saved_model.Builder(str(tmp_path / "m"))
            builder.add_meta_graph_and_variables(sess, ["serve"])
            builder.save()
            expected = [sess.run(o) for o in ops]
    m = jaxsm.load(str(tmp_path / "m"))
    for k, (o, e) in enumerate(zip(ops, expected, strict=True)):
        assert_close(m.prune([], o.name)(), e, f"step {k}: {o.op.type}")


def test_resource_int_scatters_and_strided_slice_assign(tmp_path):
    """ResourceScatter{Div,Mul,Min,Max,Sub} on an int32 variable with duplicate indices (division truncates),
    ResourceStridedSliceAssign with negative strides, begin/end masks and a shrink axis; two calls."""

    class M(tf.Module):
        def __init__(self):
            self.n = tf.Variable(np.array([[50, -7], [9, 100], [-64, 3]], np.int32))
            self.w = tf.Variable(np.arange(24, dtype=np.float32).reshape(4, 6))

        @tf.function(input_signature=[tf.TensorSpec([2, 2], tf.int32)])
        def f(self, u):
            out = {}
            for name in ["Div", "Mul", "Min", "Max", "Sub"]:
                getattr(raw, f"ResourceScatter{name}")(resource=self.n.handle, indices=[0, 2], updates=u)
                getattr(raw, f"ResourceScatter{name}")(resource=self.n.handle, indices=[1, 1], updates=u * -1)
                out[name] = self.n.read_value()
            fu = tf.cast(u, tf.float32)
            self.w[::-2, 4:0:-3].assign(fu)
            self.w[-1, ::-1].assign(tf.range(6, dtype=tf.float32))
            raw.ResourceStridedSliceAssign(
                ref=self.w.handle, begin=[3, 5], end=[0, 0], strides=[-1, -2], value=tf.ones([4, 3]) * -9.0,
                begin_mask=1, end_mask=1,
            )  # fmt: skip
            out["w"] = self.w.read_value()
            return out

    m = M()
    tf.saved_model.save(m, str(tmp_path))
    ours = jaxsm.load(str(tmp_path))
    for u in ([[3, -2], [-4, 5]], [[2, 7], [-1, 1]]):
        u = np.array(u, np.int32)
        want = {k: v.numpy() for k, v in m.f(u).items()}
        got = ours.f(u)
        for k in want:
            g = np.asarray(got[k])
            assert g.dtype == want[k].dtype, k
            np.testing.assert_array_equal(g, want[k], err_msg=k)


# -- lookup tables -------------------------------------------------------------------------------------------


def test_mutable_tables_export_import_remove(tmp_path):
    """MutableHashTableV2 (import replaces the contents, remove of absent keys), MutableHashTableOfTensorsV2
    (vector values) and MutableDenseHashTableV2 (insert, remove, lookup); state kept between calls."""

    class M(tf.Module):
        def __init__(self):
            self.h = tf.lookup.experimental.MutableHashTable(tf.int64, tf.float32, default_value=-1.0)
            self.v = tf.lookup.experimental.MutableHashTable(tf.string, tf.int32, default_value=[0, -1])
            self.d = tf.lookup.experimental.DenseHashTable(
                tf.int64, tf.float32, default_value=-2.0, empty_key=-1, deleted_key=-3, initial_num_buckets=8
            )

        @tf.function(input_signature=[tf.TensorSpec([3], tf.int64), tf.TensorSpec([3], tf.float32)])
        def f(self, k, x):
            self.h.insert(k, x)
            self.h.remove(tf.stack([k[0], tf.constant(99, tf.int64)]))
            size_before = self.h.size()
            keys, values = self.h.export()
            out = {"size": size_before, "find": self.h.lookup(tf.constant([1, 2, 3, 4, 99], tf.int64))}
            out["n_exported"] = tf.size(keys)
            out["exported_sum"] = tf.reduce_sum(tf.gather(values, tf.argsort(keys)))
            raw.LookupTableImportV2(table_handle=self.h.resource_handle, keys=k * 10, values=x + 1.0)  # replaces all
            out["after_import"] = self.h.lookup(tf.constant([1, 10, 20, 30], tf.int64))
            out["size_import"] = self.h.size()
            self.v.insert(tf.strings.as_string(k), tf.stack([tf.cast(k, tf.int32), tf.cast(x, tf.int32)], 1))
            self.v.remove(tf.constant(["2"]))
            out["vec"] = self.v.lookup(tf.constant(["1", "2", "3", "x"]))
            vk, vv = self.v.export()
            out["vec_sorted"] = tf.gather(vv, tf.argsort(tf.strings.to_number(vk)))
            self.d.insert(k, x * 2.0)
            self.d.erase(tf.constant([2, 7], tf.int64))
            out["dense"] = self.d.lookup(tf.constant([1, 2, 3, 5], tf.int64))
            out["dense_size"] = self.d.size()
            return out

    m = M()
    tf.saved_model.save(m, str(tmp_path))
    ours = jaxsm.load(str(tmp_path))
    for k, x in [([1, 2, 3], [0.5, 1.5, 2.5]), ([3, 4, 5], [4.0, -1.0, 7.0])]:
        k, x = np.array(k, np.int64), np.array(x, np.float32)
        want = {key: t.numpy() for key, t in m.f(k, x).items()}
        got = ours.f(k, x)
        for key in want:
            g = np.asarray(got[key])
            assert g.dtype == want[key].dtype and g.shape == want[key].shape, key
            np.testing.assert_array_equal(g, want[key], err_msg=key)


# -- stateful random ops: shapes, dtypes and ranges ----------------------------------------------------------


@pytest.mark.parametrize("jit", [True, False])
def test_random_ops_shapes_dtypes_ranges(jit):
    """RandomUniformInt (int32/int64, int64 shape), RandomStandardNormal and TruncatedNormal (float16/float64,
    empty and scalar shapes): unseeded draws cannot match TF's values; their shapes, dtypes and ranges must.
    (Op by op, each draw takes seconds: there only the first three.)"""

    def fn(x):
        out = {}
        if not jit:
            out["randint"] = raw.RandomUniformInt(shape=[3, 4], minval=-2, maxval=5)
            out["normal64"] = raw.RandomStandardNormal(shape=tf.shape(x), dtype=tf.float64)
            out["trunc"] = raw.TruncatedNormal(shape=[200], dtype=tf.float32)
            return out
        out["randint"] = raw.RandomUniformInt(shape=[3, 4], minval=-2, maxval=5)
        out["randint64"] = raw.RandomUniformInt(
            shape=tf.constant([50], tf.int64), minval=tf.constant(10, tf.int64), maxval=tf.constant(12, tf.int64)
        )
        out["normal"] = raw.RandomStandardNormal(shape=[2, 3], dtype=tf.float16)
        out["normal64"] = raw.RandomStandardNormal(shape=tf.shape(x), dtype=tf.float64)
        out["normal_scalar"] = raw.RandomStandardNormal(shape=tf.zeros([0], tf.int32), dtype=tf.float32)
        out["normal_empty"] = raw.RandomStandardNormal(shape=[0, 2], dtype=tf.float32)
        out["trunc"] = raw.TruncatedNormal(shape=[200], dtype=tf.float32)
        out["trunc64"] = raw.TruncatedNormal(shape=[2, 1], dtype=tf.float64, seed=3, seed2=4)
        return out

    x = np.zeros((4, 2), np.float32)
    export_dir, tf_fn = save_function(fn, [x])
    want = {k: v.numpy() for k, v in tf_fn(x).items()}
    got = {k: np.asarray(v) for k, v in run_jaxsm(export_dir, [x], jit=jit).items()}
    for k in want:
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
    assert got["randint"].min() >= -2 and got["randint"].max() < 5
    assert np.all(np.abs(got["trunc"]) <= 2.0) and got["normal64"].std() > 0
    if jit:
        assert set(np.unique(got["randint64"])) <= {10, 11} and np.all(np.abs(got["trunc64"]) <= 2.0)
        assert np.all(np.isfinite(got["normal"]))


def test_rng_skip_continues_tf_stream(tmp_path):
    """RngSkip (the pre-RngReadAndSkip op) on a Philox generator's state: run-time and int64 deltas (a multiple of
    256 and not), then a draw; the state and the draws equal TF's, call after call."""

    class M(tf.Module):
        def __init__(self):
            self.g = tf.random.Generator.from_seed(5, alg="philox")

        @tf.function(input_signature=[tf.TensorSpec([], tf.int64)])
        def f(self, n):
            raw.RngSkip(resource=self.g.state.handle, algorithm=tf.constant(1, tf.int64), delta=n)
            x = self.g.normal([3])
            raw.RngSkip(resource=self.g.state.handle, algorithm=tf.constant(1, tf.int64), delta=n * 256 + 3)
            return {"x": x, "state": self.g.state.read_value(), "y": self.g.uniform([2], dtype=tf.float64)}

    m = M()
    tf.saved_model.save(m, str(tmp_path))
    ours = jaxsm.load(str(tmp_path))
    for n in (7, 1 << 40):
        want = {k: v.numpy() for k, v in m.f(tf.constant(n, tf.int64)).items()}
        got = ours.f(np.int64(n))
        for k in want:
            np.testing.assert_array_equal(np.asarray(got[k]), want[k], err_msg=f"{k} after skip {n}")


@JIT
def test_random_uniform_int_invalid_range(jit):
    assert_raises_like_tf(lambda x: raw.RandomUniformInt(shape=[2], minval=3, maxval=3) + x, [np.int32(0)], jit=jit)


# -- optionals, numeric checks, printing ---------------------------------------------------------------------


@JIT
def test_optional_has_get_value(jit):
    def fn(x):
        some = tf.experimental.Optional.from_value((x, tf.cast(x, tf.int64) * 2))
        none = tf.experimental.Optional.empty(tf.TensorSpec([3], tf.float32))
        a, b = some.get_value()
        return {"has": some.has_value(), "none_has": none.has_value(), "a": a, "b": b}

    _compare("optional", fn, [np.array([1.0, 2.0, 3.0], np.float32)], jit)


@JIT
def test_optional_get_value_of_none_raises(jit):
    def fn(x):
        return tf.experimental.Optional.empty(tf.TensorSpec([3], tf.float32)).get_value() + x

    assert_raises_like_tf(fn, [np.zeros(3, np.float32)], jit=jit)


@JIT
@pytest.mark.parametrize("op", ["CheckNumerics", "CheckNumericsV2"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, None])
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_check_numerics_ops(op, bad, dtype, jit):
    """Finite values pass through; a NaN or an Inf raises (TF: InvalidArgumentError naming NaN / Inf, and V2 also
    -Inf apart), jaxsm an AssertFailedError (a JaxsmError) with the same kind of message."""
    x = np.array([1.0, -2.0, 0.5], dtype)
    if bad is not None:
        x[1] = bad

    def fn(v):
        return {"y": getattr(raw, op)(tensor=v * 2, message="in fn")}

    export_dir, tf_fn = save_function(fn, [x])
    if bad is None:
        _compare(f"check_{op}_{np.dtype(dtype).name}", fn, [x], jit)
        return
    with pytest.raises(tf.errors.InvalidArgumentError) as tf_err:
        tf_fn(x)
    with pytest.raises(JaxsmError) as err:
        np.asarray(run_jaxsm(export_dir, [x], jit=jit)["y"])
    kind = "NaN" if np.isnan(bad) else "Inf"
    assert kind in str(tf_err.value) and kind in str(err.value), str(err.value)
    assert "in fn" in str(err.value)
    if op == "CheckNumericsV2" and bad == -np.inf:
        assert "-Inf" in str(tf_err.value) and "-Inf" in str(err.value), str(err.value)


@JIT
def test_print_ops_pass_through(jit, capfd):
    """Print returns its first input (and prints the others), PrintV2 (tf.print) has no output: the function's
    values are unchanged."""

    def fn(x):
        y = raw.Print(input=x * 2, data=[x, tf.shape(x)], message="x: ", first_n=-1, summarize=2)
        with tf.control_dependencies([tf.print("value", y, output_stream="file:///dev/null")]):
            return {"y": tf.identity(y), "s": raw.Print(input=tf.strings.as_string(x), data=[x])}

    _compare("print", fn, [np.array([1.0, 2.0, 3.0], np.float32)], jit)


# -- XLA ops (TF runs them only compiled: TF's values from a jit_compile=True tf.function) --------------------


def _xla_compare(fn, inputs, jit, rtol=1e-6, atol=0.0):
    inputs = [np.asarray(x) for x in inputs]
    export_dir, _ = save_function(fn, inputs)
    sig = [tf.TensorSpec(x.shape, tf.as_dtype(x.dtype)) for x in inputs]
    want = tf.function(fn, input_signature=sig, jit_compile=True)(*inputs)
    got = run_jaxsm(export_dir, inputs, jit=jit)
    for key in want:
        w, g = want[key].numpy(), np.asarray(got[key])
        assert g.shape == w.shape and g.dtype == w.dtype, f"{key}: {g.shape} {g.dtype} != TF's {w.shape} {w.dtype}"
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=key)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=key)


def _proto(message, **fields):
    m = message()
    for k, v in fields.items():
        getattr(m, k).extend(v)
    return m.SerializeToString()


@JIT
def test_xla_einsum_dot_conv_v1(jit):
    """XlaEinsum (batch, contraction, transpose, complex), XlaDot and XlaConv (the V1 ops: serialized dimension
    numbers, no preferred_element_type) with batch and grouped features."""
    from tensorflow.compiler.xla import xla_data_pb2 as xd

    dot_dims = _proto(xd.DotDimensionNumbers, lhs_contracting_dimensions=[2], rhs_contracting_dimensions=[1],
                      lhs_batch_dimensions=[0], rhs_batch_dimensions=[0])  # fmt: skip
    cd = xd.ConvolutionDimensionNumbers(input_batch_dimension=0, input_feature_dimension=3)
    cd.input_spatial_dimensions.extend([1, 2])
    cd.kernel_input_feature_dimension, cd.kernel_output_feature_dimension = 2, 3
    cd.kernel_spatial_dimensions.extend([0, 1])
    cd.output_batch_dimension, cd.output_feature_dimension = 0, 3
    cd.output_spatial_dimensions.extend([1, 2])
    conv_dims = cd.SerializeToString()

    def fn(a, b, img, k):
        out = {}
        out["bij_bjk"] = xla_ops.xla_einsum(a=a, b=b, equation="bij,bjk->bik")
        out["outer_t"] = xla_ops.xla_einsum(a=a[0], b=b[1], equation="ij,jk->ki")
        out["sum_ij"] = xla_ops.xla_einsum(a=a, b=a, equation="bij,bij->b")
        out["complex"] = xla_ops.xla_einsum(a=tf.complex(a, a), b=tf.complex(b, -b), equation="bij,bjk->bik")
        out["dot"] = xla_ops.xla_dot(lhs=a, rhs=b, dimension_numbers=dot_dims, precision_config="")
        out["conv"] = xla_ops.xla_conv(
            lhs=img, rhs=k, window_strides=[1, 2], padding=[[1, 0], [0, 1]], lhs_dilation=[1, 1],
            rhs_dilation=[2, 1], feature_group_count=1, dimension_numbers=conv_dims, precision_config="",
        )  # fmt: skip
        out["conv_groups"] = xla_ops.xla_conv(
            lhs=img, rhs=k[:, :, :1], window_strides=[1, 1], padding=[[0, 0], [0, 0]], lhs_dilation=[2, 1],
            rhs_dilation=[1, 1], feature_group_count=2, dimension_numbers=conv_dims, precision_config="",
        )  # fmt: skip
        return out

    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((2, 4, 5)).astype(np.float32)
    img, k = rng.standard_normal((1, 5, 6, 2)).astype(np.float32), rng.standard_normal((2, 2, 2, 4)).astype(np.float32)
    _xla_compare(fn, [a, b, img, k], jit, rtol=1e-5, atol=1e-5)


@JIT
def test_xla_reduce_precision_barrier_sharding(jit):
    """XlaReducePrecision to bfloat16's and float16's formats (rounding to even, overflow to Inf, subnormals
    flushed, NaN kept) and to 2 mantissa bits; XlaOptimizationBarrier and XlaSharding pass values through."""

    def fn(x):
        out = {}
        for e, m in [(8, 7), (5, 10), (4, 2), (8, 23)]:
            out[f"e{e}m{m}"] = xla_ops.xla_reduce_precision(operand=x, exponent_bits=e, mantissa_bits=m)
        out["f64"] = xla_ops.xla_reduce_precision(operand=tf.cast(x, tf.float64), exponent_bits=5, mantissa_bits=10)
        a, b = xla_ops.xla_optimization_barrier(input=[x * 2, tf.cast(x[:7], tf.int32)])
        out["barrier_a"], out["barrier_b"] = a, b
        out["sharding"] = xla_ops.xla_sharding(input=x + 1, sharding=b"", unspecified_dims=[])
        return out

    x = np.array([1.0, 1.00390625, 1.0 + 2**-9, 70000.0, 1e-6, 3e-39, -2.5, np.inf, np.nan, 1e38], np.float32)
    _xla_compare(fn, [x], jit)


@JIT
def test_xla_eigh_svd(jit):
    """XlaSelfAdjointEig (lower and upper triangle read, ascending eigenvalues) and XlaSvd (descending singular
    values): values against TF's, vectors checked by reconstruction and orthogonality (signs may differ)."""

    def fn(a):
        out = {}
        for lower in (True, False):
            w, v = xla_ops.xla_self_adjoint_eig(a=a, lower=lower, max_iter=100, epsilon=1e-7)
            out[f"w_{lower}"], out[f"v_{lower}"] = w, v
        s, u, v = xla_ops.xla_svd(a=a[:, :, :2], max_iter=100, epsilon=1e-7, precision_config="")
        out["s"], out["u"], out["v"] = s, u, v
        return out

    rng = np.random.default_rng(7)
    a = rng.standard_normal((2, 3, 3)).astype(np.float32)
    a = a + np.swapaxes(a, 1, 2) + np.triu(rng.standard_normal((3, 3)), 1).astype(np.float32)  # not symmetric
    export_dir, _ = save_function(fn, [a])
    want = tf.function(fn, jit_compile=True)(a)
    # (TF bug: in one compiled function, XLA merges the two eigendecompositions that differ only in ``lower``;
    # TF's values come from one function per triangle)
    for lower in (True, False):
        eig = tf.function(lambda a, lower=lower: xla_ops.xla_self_adjoint_eig(a, lower, 100, 1e-7), jit_compile=True)
        want[f"w_{lower}"] = eig(a)[0]
    got = {k: np.asarray(v) for k, v in run_jaxsm(export_dir, [a], jit=jit).items()}
    for key in ("w_True", "w_False", "s"):
        np.testing.assert_allclose(got[key], want[key].numpy(), rtol=1e-4, atol=1e-5, err_msg=key)
    for key in want:
        assert got[key].shape == want[key].shape and got[key].dtype == want[key].numpy().dtype, key
    for lower in (True, False):
        sym = np.tril(a) + np.swapaxes(np.tril(a, -1), 1, 2) if lower else np.triu(a) + np.swapaxes(np.triu(a, 1), 1, 2)
        v, w = got[f"v_{lower}"], got[f"w_{lower}"]
        np.testing.assert_allclose(v @ (w[..., None] * np.swapaxes(v, 1, 2)), sym, atol=1e-4, err_msg=f"eig {lower}")
    u, s, v = got["u"], got["s"], got["v"]
    np.testing.assert_allclose((u[..., :2] * s[:, None]) @ np.swapaxes(v, 1, 2), a[:, :, :2], atol=1e-4)
    np.testing.assert_allclose(np.swapaxes(u, 1, 2) @ u, np.broadcast_to(np.eye(3), (2, 3, 3)), atol=1e-5)


@JIT
def test_xla_while_and_variadic_reduce_v1(jit):
    """XlaWhile (cond/body functions over a tuple) and the V1 XlaVariadicReduce (one dtype) with a max reducer."""
    spec = tf.TensorSpec([], tf.float32)
    vec = tf.TensorSpec([3], tf.float32)
    cond = tf.function(lambda i, x: i < 5.0).get_concrete_function(spec, vec)
    body = tf.function(lambda i, x: (i + 1.0, x * 1.5 + i)).get_concrete_function(spec, vec)
    red = tf.function(lambda a, b, c, d: (tf.maximum(a, c), b + d)).get_concrete_function(spec, spec, spec, spec)

    def fn(x, m):
        i, y = xla_ops.xla_while(input=[tf.constant(0.0), x], cond=cond, body=body)
        mx, sm = xla_ops.xla_variadic_reduce(
            input=[m, m * 2.0], init_value=[tf.constant(-np.inf), tf.constant(0.0)], dimensions_to_reduce=[1],
            reducer=red,
        )  # fmt: skip
        return {"i": i, "y": y, "max": mx, "sum": sm}

    m = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    _xla_compare(fn, [np.array([1.0, -2.0, 0.5], np.float32), m], jit, rtol=1e-6)
