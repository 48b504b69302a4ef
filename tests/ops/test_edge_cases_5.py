"""Edge cases of already-lowered ops against TensorFlow, round 5: shape and array ops at their corners (zero-size
inputs, zero multiples, negative axes, every diagonal alignment, block/space rearrangements, ranges, einsum),
TensorArray/TensorList programs (growing, overwriting, ragged split/concat, empty stacks) and control-flow
corners (zero-trip and capped loops, shape-changing loop variables, out-of-range switch_case, autograph
break/continue/return).

Each case is one tf.function returning a dict of outputs, saved once and compared with jaxsm under ``jax.jit``
and op by op. Where TF raises for a constant input, jaxsm must raise a :class:`jaxsm.errors.JaxsmError`.
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


def _arange(shape, dtype=np.float32):
    return (np.arange(int(np.prod(shape))) + 1).astype(dtype).reshape(shape)


# -- shape and array ops -------------------------------------------------------------------------------------


@JIT
def test_zero_size_shape_ops(jit):
    """Tile, Pack/Unpack, Transpose, Fill, Concat and Reverse where a dimension is 0; rank-0/1 transposes."""

    def fn(x):
        e = x[:, :0]  # [2, 0, 4]
        return {
            "tile_zero_input": tf.tile(e, [3, 2, 1]),
            "tile_all_zero": tf.tile(x, [0, 0, 0]),
            "tile_scalar_shape": tf.tile(x[0, 0, :1], [5]),
            "tile_int64": raw.Tile(input=x, multiples=tf.constant([1, 2, 0], tf.int64)),
            "pack_zero_size": tf.stack([e, e, e], axis=1),
            "pack_zero_size_neg": tf.stack([e, e], axis=-1),
            "pack_one": tf.stack([x[0]], axis=0),
            "unpack_zero_size": tf.unstack(e, axis=0),
            "unpack_into_zero_size": tf.unstack(e, axis=2),
            "transpose_rank0": tf.transpose(x[0, 0, 0], []),
            "transpose_rank1": tf.transpose(x[0, 0], [0]),
            "transpose_zero_size": tf.transpose(e, [2, 0, 1]),
            "conj_transpose": raw.ConjugateTranspose(x=tf.complex(x, -x)[:, :2], perm=[1, 2, 0]),
            "conj_transpose_rank0": raw.ConjugateTranspose(x=tf.complex(x[0, 0, 0], 1.0), perm=tf.zeros([0], tf.int32)),
            "conj_transpose_real": raw.ConjugateTranspose(x=x[:, :2], perm=[2, 1, 0]),
            "fill_zero": tf.fill([2, 0, 3], 7.0),
            "fill_scalar": tf.fill(tf.zeros([0], tf.int64), 3),
            "fill_string": tf.fill([2], "ab"),
            "concat_all_empty": tf.concat([e, e], axis=-2),
            "concat_empty_axis0": tf.concat([x[:0], x, x[:0]], axis=0),
            "concat_v1": raw.Concat(concat_dim=-1, values=[x, x[:, :, :0], x[:, :, :1]]),
            "concat_bool": tf.concat([x > 3, x[:, :1] < 2], axis=1),
            "reverse_zero_size": tf.reverse(e, [-1, 1]),
            "reverse_all_neg": tf.reverse(x, [-1, -2, -3]),
            "squeeze_all": tf.squeeze(x[:1, :1, :1]),
            "squeeze_neg": tf.squeeze(x[:, :1, :1], [-1, 1]),
            "squeeze_zero_size_kept": tf.squeeze(e[:, :, :1], [-1]),
            "expand_neg_last": tf.expand_dims(x, -1),
            "expand_scalar": tf.expand_dims(x[0, 0, 0], -1),
            "expand_zero_size": tf.expand_dims(e, 1),
            "slice_m1_all": tf.slice(x, [0, 0, 0], [-1, -1, -1]),
            "slice_zero_size": tf.slice(x, [2, 3, 4], [0, 0, 0]),
            "slice_int64": tf.slice(x, tf.constant([1, 1, 1], tf.int64), tf.constant([-1, 1, -1], tf.int64)),
            "invert_permutation": tf.math.invert_permutation([2, 0, 3, 1]),
            "invert_permutation_int64": tf.math.invert_permutation(tf.constant([0], tf.int64)),
            "invert_permutation_empty": tf.math.invert_permutation(tf.zeros([0], tf.int32)),
            "shape_zero": tf.shape(e),
            "size_zero": tf.size(e, out_type=tf.int64),
            "rank_zero": tf.rank(e),
            "shape_n": raw.ShapeN(input=[x, e], out_type=tf.int64),
        }

    _compare("zero_size_shapes", fn, [_arange((2, 3, 4))], jit)


@JIT
def test_one_hot_corners(jit):
    """Depth 0, bool/int on and off values, int64 and uint8 indices, rank-0 and zero-size indices, axis 0/1/-1."""

    def fn(i):
        i64 = tf.cast(i, tf.int64)
        return {
            "depth0": tf.one_hot(i, 0),
            "depth0_axis0": tf.one_hot(i, 0, axis=0),
            "bool": tf.one_hot(i, 3, on_value=True, off_value=False),
            "int8_axis0": tf.one_hot(
                i,
                4,
                on_value=tf.constant(-1, tf.int8),
                off_value=tf.constant(5, tf.int8),
                axis=0,
            ),
            "int64_indices_axis1": tf.one_hot(tf.reshape(i64, [2, 3]), 4, axis=1),
            "int64_indices_big": tf.one_hot(i64 + 2**33, 3),
            "float64": tf.one_hot(i, 5, on_value=2.5, off_value=-0.5, dtype=tf.float64),
            "zero_size": tf.one_hot(i[:0], 3, axis=0),
            "scalar_axis_m1": tf.one_hot(i[0], 6),
            "rank2_axis_m1": tf.one_hot(tf.reshape(i, [3, 2]), 5, axis=-1),
            "complex": tf.one_hot(i, 3, on_value=tf.complex(1.0, 2.0), off_value=tf.complex(0.0, -1.0)),
            "depth_int64_const": raw.OneHot(indices=i, depth=3, on_value=1.0, off_value=0.0, axis=-1),
        }

    _compare("one_hot", fn, [np.array([3, -1, 0, 2, 5, 1], np.int32)], jit)


@JIT
def test_band_and_diag_v3_corners(jit):
    """MatrixBandPart with negative (whole) and oversized bounds, int64 bounds, non-square; MatrixDiagV3,
    MatrixDiagPartV3 and MatrixSetDiagV3 for every align, k ranges crossing the main diagonal, wide and tall."""
    aligns = ["RIGHT_LEFT", "LEFT_RIGHT", "LEFT_LEFT", "RIGHT_RIGHT"]

    def fn(m):
        tall = tf.transpose(m, [0, 2, 1])  # [2, 5, 3]
        out = {
            "band_neg_lower": tf.linalg.band_part(m, -1, 1),
            "band_neg_upper": tf.linalg.band_part(tall, 2, -1),
            "band_exact": tf.linalg.band_part(m, 3, 5),
            "band_int64": raw.MatrixBandPart(
                input=tall, num_lower=tf.constant(1, tf.int64), num_upper=tf.constant(0, tf.int64)
            ),
            "band_bool": tf.linalg.band_part(m > 4, 0, 1),
            "band_zero_size": tf.linalg.band_part(m[:, :0], 0, -1),
        }
        for a in aligns:
            for k in [(-2, 1), (1, 4), (-2, -1), (0, 0), (2, 2)]:
                out[f"part_wide_{a}_{k}"] = raw.MatrixDiagPartV3(input=m, k=k, padding_value=-9, align=a)
            for k in [(-4, -1), (-2, 1), (1, 2), (0, 0), (-3, -3)]:
                out[f"part_tall_{a}_{k}"] = raw.MatrixDiagPartV3(input=tall, k=k, padding_value=-9, align=a)
            for k, shape in [((-2, 1), [2, 4, 3]), ((1, 2), [2, 2, 3]), ((-1, -1), [2, 2])]:
                diag = -tf.reshape(tf.range(float(np.prod(shape))), shape)
                out[f"set_wide_{a}_{k[0]}_{k[1]}"] = raw.MatrixSetDiagV3(input=m, diagonal=diag, k=k, align=a)
            out[f"diag_rect_{a}"] = raw.MatrixDiagV3(
                diagonal=m[:, :2, :3], k=(-1, 0), num_rows=4, num_cols=-1, padding_value=5, align=a
            )
            out[f"diag_cols_{a}"] = raw.MatrixDiagV3(
                diagonal=m[:, :2, :3], k=(1, 2), num_rows=-1, num_cols=5, padding_value=0, align=a
            )
        out["diag_scalar_k_rows_cols"] = raw.MatrixDiagV3(
            diagonal=m[0, 0, :2], k=-2, num_rows=4, num_cols=3, padding_value=1, align="RIGHT_LEFT"
        )
        out["diag_int"] = raw.MatrixDiagV3(
            diagonal=tf.constant([[1, 2], [3, 4]], tf.int64), k=(0, 1), num_rows=-1, num_cols=-1, padding_value=9
        )
        out["diag_v2"] = raw.MatrixDiagV2(diagonal=m[0, :2, :2], k=(0, 1), num_rows=-1, num_cols=-1, padding_value=3)
        out["diag_part_v2"] = raw.MatrixDiagPartV2(input=m, k=(-1, 1), padding_value=0)
        out["set_diag_v2"] = raw.MatrixSetDiagV2(input=tall, diagonal=m[:, 0, :3], k=0)
        out["diag_v1"] = raw.MatrixDiag(diagonal=m[0])
        out["diag_part_v1_tall"] = raw.MatrixDiagPart(input=tall)
        out["set_diag_v1_wide"] = raw.MatrixSetDiag(input=m, diagonal=-m[:, 0, :3])
        out["tf_diag"] = raw.Diag(diagonal=m[0, :2, :2])
        out["tf_diag_part"] = raw.DiagPart(input=tf.reshape(tf.range(16.0), [2, 2, 2, 2]))
        return out

    _compare("band_diag", fn, [_arange((2, 3, 5))], jit)


@JIT
def test_space_batch_depth(jit):
    """SpaceToBatchND with paddings and BatchToSpaceND with crops (rank-1 and rank-2 blocks, int64 shapes,
    trailing dims); DepthToSpace/SpaceToDepth NHWC with block 2 and 3 and int/bool data."""

    def fn(x):
        h = x[:144]
        img = tf.reshape(h, [2, 4, 6, 3])
        out = {
            "s2b_pad": tf.space_to_batch_nd(img, [2, 3], [[1, 1], [2, 1]]),
            "s2b_rank1_block": tf.space_to_batch_nd(img, [2], [[0, 2]]),
            "s2b_int64": raw.SpaceToBatchND(
                input=img,
                block_shape=tf.constant([1, 2], tf.int64),
                paddings=tf.constant([[0, 0], [1, 1]], tf.int64),
            ),
            "s2b_v1": raw.SpaceToBatch(input=img, paddings=[[0, 2], [1, 1]], block_size=2),
            "b2s_crop": tf.batch_to_space(tf.reshape(h, [4, 3, 2, 6]), [2, 2], [[1, 2], [0, 3]]),
            "b2s_rank1_block": tf.batch_to_space(tf.reshape(h, [6, 2, 2, 6]), [3], [[2, 1]]),
            "b2s_int64": raw.BatchToSpaceND(
                input=tf.reshape(h, [4, 3, 2, 6]),
                block_shape=tf.constant([2, 2], tf.int64),
                crops=tf.constant([[0, 0], [1, 0]], tf.int64),
            ),
            "b2s_v1": raw.BatchToSpace(input=tf.reshape(h, [4, 3, 2, 6]), crops=[[1, 1], [0, 2]], block_size=2),
            "s2b_zero_batch": tf.space_to_batch_nd(img[:0], [2, 2], [[0, 0], [0, 2]]),
            "d2s_2": tf.nn.depth_to_space(tf.reshape(x, [2, 3, 3, 16]), 2),
            "d2s_int": tf.nn.depth_to_space(tf.cast(tf.reshape(x, [1, 2, 4, 36]), tf.int32), 3),
            "s2d_2": tf.nn.space_to_depth(img, 2),
            "s2d_3_bool": tf.nn.space_to_depth(tf.reshape(x, [1, 6, 3, 16]) > 100, 3),
            "d2s_roundtrip": tf.nn.depth_to_space(tf.nn.space_to_depth(img, 2), 2),
        }
        return out

    _compare("space_batch_depth", fn, [_arange((288,))], jit)


@JIT
def test_depth_space_nchw(jit):
    """The NCHW layouts, where TF's CPU kernel runs them (else TF raises at run time and the case is skipped)."""

    def fn(x):
        return {
            "d2s_nchw": tf.nn.depth_to_space(tf.reshape(x, [2, 8, 3, 2]), 2, data_format="NCHW"),
            "s2d_nchw": tf.nn.space_to_depth(tf.reshape(x, [2, 2, 4, 6]), 2, data_format="NCHW"),
        }

    try:
        tf.function(fn)(_arange((96,)))
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        pytest.skip("TF's CPU kernels do not run NCHW depth/space")
    _compare("depth_space_nchw", fn, [_arange((96,))], jit)


@JIT
def test_gathers_batch_dims_and_ranges(jit):
    """GatherV2 with negative batch_dims/axis on rank 3 indices, GatherNd batch_dims 2; Range with negative,
    fractional and empty deltas in every dtype; LinSpace of 1 and 2; ArgMax/ArgMin int32/int16 outputs on
    ties."""

    def fn(x, i):
        out = {
            "gather_bd_m2": tf.gather(x, tf.reshape(i % 4, [2, 3, 2]), axis=-1, batch_dims=-1),
            "gather_bd_neg_axis2": tf.gather(x, tf.reshape(i % 3, [2, 6]), axis=-2, batch_dims=-1),
            "gather_bd1_int64": tf.gather(x, tf.cast(tf.reshape(i % 3, [2, 6]), tf.int64), axis=1, batch_dims=1),
            "gather_bd_zero_idx": tf.gather(x, tf.zeros([2, 3, 0], tf.int32), axis=2, batch_dims=2),
            "gather_nd_bd2": tf.gather_nd(x, tf.reshape(i % 4, [2, 3, 2, 1]), batch_dims=2),
            "gather_nd_bd1_full": tf.gather_nd(x, tf.reshape(tf.stack([i % 3, i % 4], -1)[:8], [2, 4, 2]), 1),
            "gather_nd_bd1_empty": tf.gather_nd(x, tf.zeros([2, 0, 1], tf.int32), batch_dims=1),
        }
        for name, (a, b, d, dt) in {
            "neg_int": (10, -3, -4, tf.int32),
            "neg_int64": (2**33, 2**33 - 10, -3, tf.int64),
            "frac_f32": (0.0, 1.0, 0.3, tf.float32),
            "neg_frac_f64": (1.0, -1.0, -0.25, tf.float64),
            "empty_up": (5, 5, 1, tf.int32),
            "empty_down": (5.0, 5.0, -1.0, tf.float32),
            "f32_tenth": (0.0, 0.3, 0.1, tf.float32),
            "f32_offset_tenth": (1.0, 1.7, 0.1, tf.float32),
            "f64_third": (0.0, 1.0, 1.0 / 3.0, tf.float64),
            "f32_negative_start": (-1.0, -0.1, 0.3, tf.float32),
            "f32_large": (16777216.0, 16777230.0, 3.0, tf.float32),
            "int64_min_side": (-(2**62), -(2**62) + 5, 2, tf.int64),
            "bf16": (0.0, 2.0, 0.5, tf.bfloat16),
        }.items():
            r = tf.range(tf.constant(a, dt), tf.constant(b, dt), tf.constant(d, dt))
            out[f"range_{name}"] = tf.cast(r, tf.float32) if dt == tf.bfloat16 else r
        out["range_runtime"] = tf.range(i[0], i[1] * 3, i[2] - 3)
        out["linspace_1"] = tf.linspace(3.0, 7.0, 1)
        out["linspace_0"] = tf.linspace(3.0, 7.0, 0)
        out["linspace_2_f64"] = tf.linspace(tf.constant(-1.0, tf.float64), 1.0, tf.constant(2, tf.int64))
        out["linspace_reverse"] = tf.linspace(5.0, -5.0, 6)
        out["linspace_batched"] = tf.linspace([0.0, 1.0], [1.0, -1.0], 3, axis=-1)
        t = tf.cast(tf.reshape(i % 2, [3, 4]), tf.float32)
        out["argmax_ties_i32"] = tf.math.argmax(t, 1, output_type=tf.int32)
        out["argmin_ties_i32_axis0"] = tf.math.argmin(t, 0, output_type=tf.int32)
        out["argmax_int16_out"] = raw.ArgMax(input=t, dimension=-1, output_type=tf.int16)
        out["argmax_int64_axis"] = raw.ArgMax(input=t, dimension=tf.constant(0, tf.int64))
        out["argmax_rank1"] = tf.math.argmax(tf.reshape(t, [-1]), output_type=tf.int32)
        return out

    x = _arange((2, 3, 4))
    _compare("gathers_ranges", fn, [x, np.array([2, 7, 5, 0, 3, 3, 1, 6, 0, 2, 9, 4], np.int32)], jit)


@JIT
def test_cumulative_on_empty_and_einsum(jit):
    """Cumsum/Cumprod exclusive and reverse on zero-size axes and on the other axis of zero-size data; Einsum with
    ellipses, traces, diagonals, size-1 broadcasting, outer products and a sum over everything."""

    def fn(a, b):
        e = a[:, :0]
        out = {}
        for ex in (False, True):
            for rev in (False, True):
                out[f"cumsum_empty_{ex}_{rev}"] = tf.math.cumsum(e, 1, exclusive=ex, reverse=rev)
                out[f"cumprod_empty_other_{ex}_{rev}"] = tf.math.cumprod(e, 0, exclusive=ex, reverse=rev)
                out[f"cumprod_int64_axis_{ex}_{rev}"] = raw.Cumprod(
                    x=tf.cast(a, tf.int32), axis=tf.constant(-1, tf.int64), exclusive=ex, reverse=rev
                )
        sq = tf.reshape(tf.range(18.0), [2, 3, 3])
        out.update(
            {
                "ellipsis_matmul": tf.einsum("...ij,...jk->...ik", a, b),
                "ellipsis_broadcast": tf.einsum("...ij,jk->...ik", a, b[0]),
                "ellipsis_size1": tf.einsum("...ij,...jk->...ik", a[:1], b),
                "ellipsis_middle": tf.einsum("i...j->j...i", a),
                "trace": tf.einsum("bii->b", sq),
                "diagonal": tf.einsum("bii->bi", sq),
                "diag_sum_all": tf.einsum("bii->", sq),
                "outer": tf.einsum("i,j->ij", a[0, 0], b[0, :, 0]),
                "sum_all": tf.einsum("ijk->", a),
                "transpose_only": tf.einsum("ijk->kji", a),
                "dot": tf.einsum("i,i->", a[0, 0], a[1, 1]),
                "three_operands": tf.einsum("ij,jk,kl->il", a[0], b[0], tf.transpose(b[1])),
                "int32": tf.einsum("ij,jk->ik", tf.cast(a[0], tf.int32), tf.cast(b[0], tf.int32)),
                "zero_size": tf.einsum("bij,bjk->bik", a[:, :, :0], b[:, :0]),
            }
        )
        return out

    _compare("cum_einsum", fn, [_arange((2, 3, 4)) / 10, _arange((2, 4, 2)) / 10], jit, rtol=1e-5)


_CONSTANT_INVALID_SHAPES = {
    "invert_permutation_duplicate": lambda x: tf.math.invert_permutation([0, 0, 1]),
    "invert_permutation_out_of_range": lambda x: tf.math.invert_permutation([0, 3, 1]),
    "invert_permutation_negative": lambda x: tf.math.invert_permutation(tf.constant([-1, 0], tf.int64)),
    "tile_negative": lambda x: tf.tile(x, [1, -1]),
    "transpose_bad_perm": lambda x: tf.transpose(x, [0, 0]),
    "broadcast_args_incompatible": lambda x: raw.BroadcastArgs(s0=[2, 3], s1=[4]),
    "gather_nd_out_of_range": lambda x: tf.gather_nd(x, [[4, 0]]),
    "cumsum_bad_axis": lambda x: tf.math.cumsum(x, 2),
    "band_part_lower_above_rows": lambda x: tf.linalg.band_part(x, 5, 0),
    "band_part_upper_on_zero_size": lambda x: tf.linalg.band_part(x[:, :0], 0, 1),
}


@pytest.mark.parametrize("case", sorted(_CONSTANT_INVALID_SHAPES))
def test_constant_invalid_shape_ops_raise(case):
    assert_raises_like_tf(_CONSTANT_INVALID_SHAPES[case], [_arange((4, 2))], jit=True)


# TF's shape inference rejects these when the parameter is a constant, so it comes in as an input: op by op
# jaxsm sees its value and must raise where TF's kernel does.
_RUN_TIME_INVALID = {
    "range_zero_delta": (lambda x, p: tf.range(0, 3, p), 0),
    "one_hot_negative_depth": (lambda x, p: tf.one_hot([0], p), -1),
    "fill_negative": (lambda x, p: tf.fill(tf.stack([2, p]), 1.0), -1),
    "tile_negative": (lambda x, p: tf.tile(x, tf.stack([1, p])), -2),
    "split_v_two_minus_one": (lambda x, p: raw.SplitV(value=x, size_splits=tf.stack([p, p]), axis=0, num_split=2), -1),
    "split_v_bad_total": (lambda x, p: raw.SplitV(value=x, size_splits=tf.stack([p, p]), axis=0, num_split=2), 1),
    "split_v_negative": (lambda x, p: raw.SplitV(value=x, size_splits=tf.stack([p, 6]), axis=0, num_split=2), -2),
    "batch_to_space_bad_crop": (
        lambda x, p: tf.batch_to_space(tf.reshape(x, [4, 1, 2, 1]), [2, 2], [[0, 0], tf.stack([p, 2])]),
        3,
    ),
    "space_to_batch_bad_pad": (lambda x, p: tf.space_to_batch_nd(tf.reshape(x, [1, 4, 2, 1]), [3], [[0, p]]), 0),
    "space_to_batch_negative_pad": (lambda x, p: tf.space_to_batch_nd(tf.reshape(x, [1, 4, 2, 1]), [2], [[p, 2]]), -2),
    "matrix_diag_part_bad_k": (lambda x, p: raw.MatrixDiagPartV3(input=x, k=tf.stack([p, 0]), padding_value=0.0), 1),
    "matrix_diag_part_k_out": (lambda x, p: raw.MatrixDiagPartV3(input=x, k=p, padding_value=0.0), 2),
    "reshape_bad_size": (lambda x, p: tf.reshape(x, tf.stack([p, -1])), 3),
    "slice_out_of_range": (lambda x, p: tf.slice(x, [0, 0], tf.stack([p, 1])), 5),
    "gather_bad_axis_batch_dims": (lambda x, p: tf.gather(x, [[0]], axis=p, batch_dims=1), 0),
    "linspace_negative": (lambda x, p: tf.linspace(0.0, 1.0, p), -1),
    "unravel_index_out_of_range": (lambda x, p: tf.unravel_index([p], [2, 3]), 6),
    "expand_dims_axis_out_of_range": (lambda x, p: tf.expand_dims(x, p), 3),
    "reverse_duplicate_axes": (lambda x, p: tf.reverse(x, tf.stack([p, p])), 1),
    "reverse_axis_out_of_range": (lambda x, p: tf.reverse(x, tf.stack([p])), 2),
    "transpose_duplicate_perm": (lambda x, p: tf.transpose(x, tf.stack([p, p])), 0),
    "transpose_perm_out_of_range": (lambda x, p: tf.transpose(x, tf.stack([p, 0])), 2),
    "strided_slice_zero_stride": (lambda x, p: x[::p], 0),
    "pad_negative": (lambda x, p: tf.pad(x, [[0, 0], [p, 0]]), -1),
    "pad_v2_negative": (lambda x, p: tf.pad(x, [[p, 0], [0, 0]], constant_values=3.0), -2),
    "matrix_diag_inconsistent": (
        lambda x, p: raw.MatrixDiagV3(diagonal=x[0], k=0, num_rows=p, num_cols=p + 1, padding_value=0.0),
        3,
    ),
    "mirror_pad_too_large": (lambda x, p: tf.pad(x, [[0, 0], [p, 0]], mode="REFLECT"), 2),
    "cumsum_axis_out_of_range": (lambda x, p: tf.math.cumsum(x, p), -3),
    "concat_axis_out_of_range": (lambda x, p: tf.concat([x, x], p), 2),
    "split_axis_out_of_range": (lambda x, p: tf.split(x, 2, axis=p)[0], -3),
    "gather_axis_out_of_range": (lambda x, p: tf.gather(x, [0], axis=p), 2),
    "space_to_batch_zero_block": (lambda x, p: tf.space_to_batch_nd(tf.reshape(x, [1, 4, 2, 1]), [p], [[0, 0]]), 0),
    "batch_to_space_batch_not_divisible": (
        lambda x, p: tf.batch_to_space(tf.reshape(x, [4, 1, 2, 1]), tf.stack([p]), [[0, 0]]),
        3,
    ),
    "matrix_diag_rows_too_small": (
        lambda x, p: raw.MatrixDiagV3(diagonal=x[0], k=0, num_rows=p, num_cols=-1, padding_value=0.0),
        1,
    ),
    "matrix_band_runtime_upper": (lambda x, p: tf.linalg.band_part(x, 0, p), 3),
    "invert_permutation_run_time": (lambda x, p: tf.math.invert_permutation(tf.stack([p, 0])), 0),
    "broadcast_args_run_time": (lambda x, p: raw.BroadcastArgs(s0=tf.stack([p, 3]), s1=[4, 1]), 2),
}


@pytest.mark.parametrize("case", sorted(_RUN_TIME_INVALID))
def test_run_time_invalid_shape_ops_raise_op_by_op(case):
    fn, p = _RUN_TIME_INVALID[case]
    inputs = [_arange((4, 2)), np.array(p, np.int32)]
    export_dir, tf_fn = save_function(fn, inputs)
    with pytest.raises((tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError)):
        tf_fn(*inputs)
    with pytest.raises(JaxsmError):
        run_jaxsm(export_dir, inputs, jit=False)


# -- TensorArray / TensorList --------------------------------------------------------------------------------


def _ta_growing(x, n):
    """A dynamic_size array grown in a loop of run-time length, element shape unknown until the first write."""
    ta = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
    for i in tf.range(n):
        ta = ta.write(i, x[i % 4] * tf.cast(i, tf.float32))
    return {"stack": ta.stack(), "size": ta.size(), "last": ta.read(ta.size() - 1)}


def _ta_overwrite_and_reads(x, n):
    """Index written twice (TF2's TensorList keeps the last), clear_after_read=False reads twice, gather
    with repeats, infer_shape=False."""
    ta = tf.TensorArray(tf.float32, size=4, clear_after_read=False, infer_shape=False)
    ta = ta.write(1, x[0])
    ta = ta.write(1, x[1] * 2.0)
    ta = ta.write(3, x[2])
    ta = ta.write(0, x[3])
    ta = ta.write(2, -x[3])
    first, again = ta.read(1), ta.read(1)
    return {
        "read_twice": first + again,
        "gather_repeats": ta.gather([3, 3, 0, 1]),
        "stack": ta.stack(),
        "size": ta.size(),
        "concat": ta.concat(),
    }


def _ta_empty_and_ragged(x, n):
    """stack()/gather/concat of an empty array with a known element shape; split into ragged lengths (0-length
    pieces too) and read/concat back; scatter onto a sized array leaves the other slots zero."""
    empty = tf.TensorArray(tf.float32, size=0, element_shape=[3])
    even = tf.TensorArray(tf.float32, size=3, infer_shape=False).split(tf.reshape(x, [-1])[:6], [2, 2, 2])
    zeros = tf.TensorArray(tf.float32, size=3).split(x[:0], [0, 0, 0])
    scattered = tf.TensorArray(tf.float32, size=5, element_shape=[3]).scatter([4, 1], x[:2, :3])
    zero_len = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[2, 0])
    return {
        "empty_stack": empty.stack(),
        "empty_size": empty.size(),
        "empty_gather": empty.gather(tf.zeros([0], tf.int32)),
        "even_read2": even.read(2),
        "even_concat": even.concat(),
        "zeros_concat": zeros.concat(),
        "zeros_stack": zeros.stack(),
        "scattered": scattered.stack(),
        "zero_len_stack": zero_len.write(0, tf.zeros([2, 0], tf.int32)).stack(),
    }


def _ta_in_while(x, n):
    """A TensorArray of int64 and one of bool carried through a while loop with a cond in its body, one read with
    unstack before the loop."""
    src = tf.TensorArray(tf.float32, size=4).unstack(x)
    ints = tf.TensorArray(tf.int64, size=n)
    flags = tf.TensorArray(tf.bool, size=n)
    for i in tf.range(n):
        v = src.read(i % 4)
        ints = ints.write(i, tf.cast(tf.reduce_sum(v), tf.int64) * 2**32)
        flags = flags.write(i, tf.reduce_sum(v) > 10.0)
        if i % 2 == 0:
            flags = flags.write(i, tf.reduce_any(v > 10.0))
    return {"ints": ints.stack(), "flags": flags.stack()}


def _raw_lists(x, n):
    """TensorListFromTensor of zero length, Resize down and up, Reserve with an unknown element shape then
    fixed by SetItem, GetItem of an unset slot with an element shape given, PushBack onto a reserved list,
    ElementShape of a partially known shape."""
    f32 = tf.float32
    zero = raw.TensorListFromTensor(tensor=x[:0], element_shape=[3])
    full = raw.TensorListFromTensor(tensor=x, element_shape=[-1])
    shrunk = raw.TensorListResize(input_handle=full, size=2)
    grown = raw.TensorListResize(input_handle=shrunk, size=5)
    reserved = raw.TensorListReserve(element_shape=-1, num_elements=3, element_dtype=f32)
    reserved = raw.TensorListSetItem(input_handle=reserved, index=2, item=x[1])
    pushed = raw.TensorListPushBack(input_handle=reserved, tensor=x[0])
    partial = raw.EmptyTensorList(element_shape=[-1, 3], max_num_elements=-1, element_dtype=f32)
    return {
        "zero_stack": raw.TensorListStack(input_handle=zero, element_shape=[3], element_dtype=f32),
        "zero_length": raw.TensorListLength(input_handle=zero),
        "zero_concat": raw.TensorListConcatV2(
            input_handle=zero, element_shape=[3], leading_dims=tf.zeros([0], tf.int64), element_dtype=f32
        ),
        "shrunk": raw.TensorListStack(input_handle=shrunk, element_shape=[3], element_dtype=f32),
        "grown": raw.TensorListStack(input_handle=grown, element_shape=[3], element_dtype=f32),
        "reserved_unset": raw.TensorListGetItem(input_handle=reserved, index=0, element_shape=[3], element_dtype=f32),
        "reserved_stack": raw.TensorListStack(input_handle=pushed, element_shape=[3], element_dtype=f32),
        "pushed_length": raw.TensorListLength(input_handle=pushed),
        "partial_shape": raw.TensorListElementShape(input_handle=partial, shape_type=tf.int64),
        "gather_unset": raw.TensorListGather(input_handle=grown, indices=[4, 0], element_shape=[3], element_dtype=f32),
    }


_TA_CASES = {
    "growing": _ta_growing,
    "overwrite_and_reads": _ta_overwrite_and_reads,
    "empty_and_ragged": _ta_empty_and_ragged,
    "in_while": _ta_in_while,
    "raw_lists": _raw_lists,
}


@JIT
@pytest.mark.parametrize("case", sorted(_TA_CASES))
def test_tensor_array_corners(case, jit):
    _compare(f"ta_{case}", _TA_CASES[case], [_arange((4, 3)), np.int32(6)], jit)


_LIST_INVALID = {
    "pop_back_empty": lambda x: raw.TensorListPopBack(
        input_handle=raw.EmptyTensorList(element_shape=[3], max_num_elements=-1, element_dtype=tf.float32),
        element_shape=[3],
        element_dtype=tf.float32,
    )[1],
    "resize_negative": lambda x: raw.TensorListStack(
        input_handle=raw.TensorListResize(input_handle=raw.TensorListFromTensor(tensor=x, element_shape=[2]), size=-1),
        element_shape=[2],
        element_dtype=tf.float32,
    ),
    "stack_num_elements_mismatch": lambda x: raw.TensorListStack(
        input_handle=raw.TensorListFromTensor(tensor=x, element_shape=[2]),
        element_shape=[2],
        element_dtype=tf.float32,
        num_elements=3,
    ),
    "concat_of_scalars": lambda x: raw.TensorListConcatV2(
        input_handle=raw.TensorListFromTensor(tensor=x[:, 0], element_shape=tf.zeros([0], tf.int32)),
        element_shape=tf.zeros([0], tf.int32),
        leading_dims=tf.zeros([0], tf.int64),
        element_dtype=tf.float32,
    )[0],
    "set_item_past_end": lambda x: raw.TensorListStack(
        input_handle=raw.TensorListSetItem(
            input_handle=raw.TensorListFromTensor(tensor=x, element_shape=[2]), index=4, item=x[0]
        ),
        element_shape=[2],
        element_dtype=tf.float32,
    ),
    "ta_read_past_end": lambda x: tf.TensorArray(tf.float32, size=2).unstack(x[:2]).read(2),
    "ta_split_bad_lengths": lambda x: tf.TensorArray(tf.float32, size=2).split(x[:, 0], [1, 1]).concat(),
    "stack_unset_unknown_shape": lambda x: raw.TensorListStack(
        input_handle=raw.TensorListReserve(element_shape=-1, num_elements=2, element_dtype=tf.float32),
        element_shape=-1,
        element_dtype=tf.float32,
    ),
}


@pytest.mark.parametrize("case", sorted(_LIST_INVALID))
def test_tensor_list_invalid_raise(case):
    assert_raises_like_tf(_LIST_INVALID[case], [_arange((4, 2))], jit=True)


# -- control flow --------------------------------------------------------------------------------------------


def _loops_zero_and_capped(x, n):
    """while loops that run zero times (constant and run-time), tf.while_loop with maximum_iterations below and
    above the natural trip count, loop vars of int64 (beyond 2^31), bool and string."""
    zero = tf.while_loop(lambda i, a: i < 0, lambda i, a: (i + 1, a * 2.0), (0, x))
    rt_zero = tf.while_loop(lambda i, a: i < n - 6, lambda i, a: (i + 1, a + 1.0), (tf.constant(0), x))
    capped = tf.while_loop(lambda i, a: i < 100, lambda i, a: (i + 1, a + 1.0), (0, x), maximum_iterations=3)
    cap_above = tf.while_loop(lambda i, a: i < n, lambda i, a: (i + 1, a * 2.0), (0, x), maximum_iterations=50)
    cap_zero = tf.while_loop(lambda i, a: True, lambda i, a: (i + 1, a - 1.0), (0, x), maximum_iterations=0)
    big = tf.while_loop(
        lambda i, v, b: i < n,
        lambda i, v, b: (i + 1, v * 3 + 2**33, tf.logical_not(b)),
        (0, tf.constant(7, tf.int64), tf.constant(False)),
    )
    return {
        "zero": zero,
        "rt_zero": rt_zero,
        "capped": capped,
        "cap_above": cap_above,
        "cap_zero": cap_zero,
        "big": big,
    }


def _loops_changing_shapes(x, n):
    """Loop variables whose shape changes every iteration (shape_invariants and autograph set_loop_options), and
    a loop whose body branches on the counter with tf.cond."""
    grown = tf.while_loop(
        lambda i, a: i < n,
        lambda i, a: (i + 1, tf.concat([a, a[-1:] + 1.0], 0)),
        (0, x[:1, 0]),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None])),
    )
    acc = tf.zeros([0, 3])
    for i in tf.range(n):
        tf.autograph.experimental.set_loop_options(shape_invariants=[(acc, tf.TensorShape([None, 3]))])
        acc = tf.concat([acc, x[i % 4 : i % 4 + 1] * tf.cast(i, tf.float32)], 0)
    branched = tf.while_loop(
        lambda i, a: i < n,
        lambda i, a: (i + 1, tf.cond(i % 3 == 0, lambda: a * 2.0, lambda: a - tf.cast(i, tf.float32))),
        (0, x[0]),
    )
    return {"grown": grown, "acc": acc, "branched": branched}


def _switch_and_cases(x, n):
    """tf.switch_case with out-of-range indices (negative and too large run the default, the last branch),
    tf.cond with branches of different shapes, tf.case exclusive with one true predicate and with none."""
    branches = [lambda: x[0] * 1.0, lambda: x[1] * 2.0, lambda: x[2] * 3.0]
    out = {f"switch_{k}": tf.switch_case(n + k, branches) for k in (-6, -7, -5, -4, -3, 10)}
    out["switch_default"] = tf.switch_case(n, branches[:2], default=lambda: -x[3])
    out["switch_int64"] = raw.Case(
        branch_index=n - 7,
        input=[x],
        Tout=[tf.float32],
        branches=[tf.function(lambda t: [t[0]]).get_concrete_function(tf.TensorSpec([4, 3], tf.float32))] * 2,
    )
    out["cond_shapes"] = tf.cond(n > 5, lambda: x[:2], lambda: x[:3])
    out["cond_shapes_false"] = tf.cond(n > 7, lambda: tf.reshape(x, [-1]), lambda: x[0])
    out["case_exclusive"] = tf.case(
        [(n < 0, lambda: x[0]), (n > 3, lambda: x[1]), (n > 10, lambda: x[2])], default=lambda: x[3], exclusive=True
    )
    out["case_none_true"] = tf.case([(n < 0, lambda: x[0]), (n > 10, lambda: x[2])], default=lambda: x[3])
    out["case_first_wins"] = tf.case([(n > 1, lambda: x[0]), (n > 2, lambda: x[1])], default=lambda: x[2])
    return out


def _autograph_break_continue(x, n):
    """Autograph for loops over tensors with break, continue and an early return inside a loop."""
    total = tf.constant(0.0)
    for v in tf.reshape(x, [-1]):
        if v > 9.0:
            break
        if v % 2.0 == 0.0:
            continue
        total += v
    count = tf.constant(0)
    for row in x:
        if tf.reduce_sum(row) > 20.0:
            continue
        count += 1
    found = tf.constant(-1)
    for i in tf.range(n):
        if i * i > 10:
            found = i
            break
    return {"total": total, "count": count, "found": found}


def _nested_and_functional(x, n):
    """Nested loops whose inner loop runs zero times on some outer steps, switch_case inside a loop with an index
    that leaves the branch range, tf.scan/map_fn/foldl over zero-length and one-length sequences, a loop capped by
    maximum_iterations that fills a TensorArray."""

    def outer(i, acc):
        inner = tf.while_loop(lambda j, a: j < i - 2, lambda j, a: (j + 1, a + tf.cast(j, tf.float32)), (0, acc))
        return i + 1, inner[1]

    nested = tf.while_loop(lambda i, a: i < n, outer, (0, x[0]))
    switched = tf.while_loop(
        lambda i, a: i < n,
        lambda i, a: (i + 1, tf.switch_case(i - 2, [lambda: a + 1.0, lambda: a * 2.0, lambda: a - 3.0])),
        (0, x[1]),
    )
    ta = tf.TensorArray(tf.float32, size=3)
    capped = tf.while_loop(lambda i, t: i < 100, lambda i, t: (i + 1, t.write(i, x[i])), (0, ta), maximum_iterations=3)
    return {
        "nested": nested,
        "switched": switched,
        "capped_ta": capped[1].stack(),
        "scan_empty": tf.scan(lambda a, v: a + v, x[:0], initializer=x[0]),
        "scan_one": tf.scan(lambda a, v: a * v, x[:1]),
        "map_empty": tf.map_fn(lambda v: v * 2.0, x[:0]),
        "map_int64_out": tf.map_fn(lambda v: tf.cast(tf.reduce_sum(v), tf.int64), x, fn_output_signature=tf.int64),
        "foldl_empty": tf.foldl(lambda a, v: a + v, x[:0], initializer=x[3]),
        "foldr": tf.foldr(lambda a, v: a - v, x),
    }


_CF_CASES = {
    "nested_and_functional": _nested_and_functional,
    "zero_and_capped": _loops_zero_and_capped,
    "changing_shapes": _loops_changing_shapes,
    "switch_and_cases": _switch_and_cases,
    "break_continue": _autograph_break_continue,
}


@JIT
@pytest.mark.parametrize("case", sorted(_CF_CASES))
def test_control_flow_corners(case, jit):
    _compare(f"cf_{case}", _CF_CASES[case], [_arange((4, 3)), np.int32(6)], jit)


def _ragged_pieces(x, n):
    ta = tf.TensorArray(tf.float32, size=n, infer_shape=False)
    for i in tf.range(n):
        ta = ta.write(i, x[i % 4, : 1 + i % 2])
    return ta.concat()


_RAGGED_LISTS = {
    "write_ragged_in_loop": _ragged_pieces,
    "write_ragged_unrolled": lambda x, n: (
        tf.TensorArray(tf.float32, size=2, infer_shape=False).write(0, x[0]).write(1, x[1, :1]).concat()
    ),
    "scatter_ragged": lambda x, n: (
        tf.TensorArray(tf.float32, size=3, infer_shape=False).write(0, x[0, :2]).scatter([1, 2], x[:2]).concat()
    ),
    "split_ragged": lambda x, n: (
        tf.TensorArray(tf.float32, size=3, infer_shape=False).split(tf.reshape(x, [-1])[:7], [3, 0, 4]).concat()
    ),
}


@JIT
@pytest.mark.parametrize("case", sorted(_RAGGED_LISTS))
def test_ragged_tensor_array_elements_refused(case, jit):
    """TF stores TensorArray elements of different shapes (infer_shape=False); jaxsm's list is one array, so it
    raises a JaxsmError instead of broadcasting an element into another's slot (gaps table)."""
    inputs = [_arange((4, 3)), np.int32(4)]
    export_dir, tf_fn = save_function(_RAGGED_LISTS[case], inputs)
    assert tf_fn(*inputs).shape[0] > 0
    with pytest.raises(JaxsmError):
        run_jaxsm(export_dir, inputs, jit=jit)


@JIT
def test_while_loop_carrying_a_string(jit):
    """A string loop variable: XLA has no strings, so a compiled call runs op by op, and a loop whose trip count is
    known at trace time is unrolled instead of scanned."""

    def fn(x, n):
        return tf.while_loop(
            lambda i, s: i < n, lambda i, s: (i + 1, tf.strings.join([s, "ab"])), (0, tf.constant("x"))
        )

    def unrolled(x):
        return tf.while_loop(lambda i, s: i < 3, lambda i, s: (i + 1, tf.strings.join([s, "ab"])), (0, "x"))

    _compare("string_loop", fn, [_arange((4, 3)), np.int32(3)], jit)
    _compare("string_loop_unrolled", unrolled, [_arange((4, 3))], jit)


@JIT
def test_shape_ops_on_strings_and_zero_size_matrices(jit):
    """Shape ops over string tensors (run on the host), OneHot of strings; diagonal ops and band parts on
    zero-size matrices (k=0 is allowed on a 0-row matrix)."""

    def fn(s, x):
        e = x[:, :0]  # [2, 0, 3]
        return {
            "tile": tf.tile(s, [2, 0]),
            "tile_rows": tf.tile(s, [2, 1]),
            "reverse": tf.reverse(s, [-1]),
            "transpose": tf.transpose(s),
            "concat": tf.concat([s, s[:, :0], s[:, :1]], -1),
            "stack_unstack": tf.stack(tf.unstack(s, axis=1), axis=0),
            "split": tf.split(s, [1, -1], axis=1),
            "broadcast": tf.broadcast_to(s[:1], [3, 3]),
            "one_hot": tf.one_hot([1, -1, 0], 2, on_value="on", off_value="off"),
            "gather_batch": tf.gather(s, [[2, 0], [1, 1]], axis=1, batch_dims=1),
            "expand_squeeze": tf.squeeze(tf.expand_dims(s, -1), -1),
            "slice_m1": tf.slice(s, [0, 1], [-1, -1]),
            "strided": s[::-1, ::-2],
            "diag_part_empty": raw.MatrixDiagPartV3(input=e, k=0, padding_value=0.0),
            "set_diag_empty": raw.MatrixSetDiagV3(input=e, diagonal=tf.zeros([2, 0]), k=0),
            "band_empty": tf.linalg.band_part(e, -1, 0),
            "diag_empty": raw.MatrixDiagV3(diagonal=e[:, :, 0], k=0, num_rows=-1, num_cols=-1, padding_value=1.0),
        }

    s = np.array([[b"a", b"bc", b""], [b"d", b"e\x00", b"f"]], dtype=object)
    _compare("string_shapes", fn, [s, _arange((2, 3, 3))], jit)


@JIT
def test_more_layout_corners(jit):
    """Rank-3 SpaceToBatchND (one block dim), depth/space on int8 and complex, Tile/Reverse of a scalar,
    Transpose with an int64 perm, ExpandDims at axis == rank with an int64 axis, GatherNd with batch_dims and
    full-rank index tuples, BroadcastTo onto leading 0 and 1 dims."""

    def fn(x):
        seq = tf.reshape(x, [2, 6, 2])
        return {
            "s2b_rank3": tf.space_to_batch_nd(seq, [3], [[2, 1]]),
            "b2s_rank3": tf.batch_to_space(tf.reshape(x, [4, 3, 2]), [2], [[1, 2]]),
            "d2s_int8": tf.nn.depth_to_space(tf.cast(tf.reshape(x, [1, 2, 3, 4]), tf.int8), 2),
            "s2d_complex": tf.nn.space_to_depth(tf.complex(tf.reshape(x, [1, 4, 2, 3]), 1.0), 2),
            "tile_scalar": tf.tile(x[0], tf.zeros([0], tf.int32)),
            "reverse_scalar": tf.reverse(x[0], tf.zeros([0], tf.int64)),
            "transpose_int64": tf.transpose(seq, tf.constant([2, 0, 1], tf.int64)),
            "conj_transpose_empty": raw.ConjugateTranspose(x=tf.complex(seq[:0], seq[:0]), perm=[1, 0, 2]),
            "expand_at_rank": tf.expand_dims(seq, tf.constant(3, tf.int64)),
            "gather_nd_bd1_tuples": tf.gather_nd(seq, [[[5, 1], [0, 0]], [[2, 1], [3, 0]]], batch_dims=1),
            "gather_nd_bd2_empty_tuple": tf.gather_nd(seq, tf.zeros([2, 6, 0], tf.int32), batch_dims=2),
            "broadcast_leading": tf.broadcast_to(seq[:1, :1], [1, 0, 1, 2]),
            "broadcast_ones": tf.broadcast_to(x[0], [1, 1, 1]),
            "broadcast_args_zero": raw.BroadcastArgs(s0=[0, 1], s1=[1, 3]),
            "gradient_args_empty": raw.BroadcastGradientArgs(s0=[0, 3], s1=[1, 3]),
            "unpack_int64": tf.unstack(tf.cast(seq, tf.int64), axis=-1),
        }

    _compare("layout_corners", fn, [_arange((24,))], jit)
