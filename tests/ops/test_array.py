"""Array ops (jaxsm/ops/array.py) against TensorFlow."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import EagerFallbackWarning, JaxsmError, StaticValueError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])
raw = tf.raw_ops


def _arange(shape, dtype=np.float32):
    return (np.arange(int(np.prod(shape))) % 23 - 7).astype(dtype).reshape(shape)


# -- shapes --------------------------------------------------------------------------------------------------


@JIT
@pytest.mark.parametrize("out_type", [tf.int32, tf.int64])
def test_shape_ops_dynamic_batch(jit, out_type):
    def fn(x):
        s = tf.shape(x, out_type=out_type)
        return {
            "shape": s,
            "shape_n": raw.ShapeN(input=[x, x[0]], out_type=out_type),
            "size": tf.size(x, out_type=out_type),
            "rank": tf.rank(x),
            "bargs": raw.BroadcastArgs(s0=s, s1=tf.constant([1, 4], out_type)),
            "reshape": tf.reshape(x, [tf.shape(x)[0], 2, 2]),
            "reshape2": tf.reshape(x, tf.stack([tf.shape(x)[0], -1, 2])),
        }

    assert_matches_tf(fn, [_arange((3, 4))], jit=jit, shapes=[(None, 4)])


def test_broadcast_gradient_args():
    pairs = [
        ([1, 1], [1, 1]),
        ([1], [1]),
        ([2, 1, 3], [3]),
        ([], [2, 3]),
        ([1, 3], [2, 1]),
        ([2, 3], [2, 3]),
        ([1, 2, 1], [1, 1, 1]),
        ([5, 1], [1]),
        ([1], []),
        ([1, 3], [3]),
        ([0], [1]),
    ]

    def fn(x):
        out = [raw.BroadcastGradientArgs(s0=tf.constant(a, tf.int32), s1=tf.constant(b, tf.int32)) for a, b in pairs]
        out.append(raw.BroadcastGradientArgs(s0=tf.shape(x, tf.int64), s1=tf.constant([3, 1], tf.int64)))
        return out

    assert_matches_tf(fn, [_arange((1, 4))])


def test_concat_offset():
    def fn(x):
        return raw.ConcatOffset(
            concat_dim=tf.constant(-2),
            shape=[
                tf.shape(x),
                tf.constant([2, 5, 4]),  # noqa: E731
                tf.constant([2, 1, 4]),
            ],
        )

    assert_matches_tf(fn, [_arange((2, 3, 4))])


# -- reshapes ------------------------------------------------------------------------------------------------


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_, np.complex64, np.uint8])
def test_reshapes(jit, dtype):
    def fn(x):
        return {
            "reshape_neg": tf.reshape(x, [-1, 4]),
            "reshape_const": tf.reshape(x, tf.constant([4, 3, 2], tf.int64)),
            "reshape_scalar": tf.reshape(x[:1, :1, :1], []),
            "squeeze_all": tf.squeeze(x[:, :1, None]),
            "squeeze_dims": tf.squeeze(x[:, :1, None], axis=[1, -2]),
            "expand0": tf.expand_dims(x, 0),
            "expand_neg": tf.expand_dims(x, -1),
            "expand_mid": tf.expand_dims(x, tf.constant([-2], tf.int64)),
            "transpose": tf.transpose(x, [2, 0, 1]),
            "transpose_default": tf.transpose(x),
            "conj_transpose": raw.ConjugateTranspose(x=x, perm=[1, 2, 0]),
        }

    x = _arange((2, 3, 4), dtype)
    if dtype == np.complex64:
        x = x + 1j * _arange((2, 3, 4), np.float32)[::-1]
    assert_matches_tf(fn, [x], jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_])
def test_concat_pack_split(jit, dtype):
    def fn(x, y):
        return {
            "concat": tf.concat([x, y], axis=-1),
            "concat0": tf.concat([x, y, x], axis=0),
            "concat_v1": raw.Concat(concat_dim=tf.constant(1), values=[x, y]),
            "pack": tf.stack([x, y], axis=1),
            "pack_neg": tf.stack([x, y, x], axis=-1),
            "unpack": tf.unstack(x, axis=1),
            "unpack_neg": tf.unstack(y, axis=-2),
            "split": tf.split(x, 3, axis=-1),
            "splitv": tf.split(x, [1, -1, 2], axis=2),
            "splitv0": tf.split(y, [2, 0], axis=0),
            "parallel_concat": raw.ParallelConcat(values=[x[:1], y[:1]], shape=[2, 3, 6]),
        }

    assert_matches_tf(fn, [_arange((2, 3, 6), dtype), _arange((2, 3, 6), dtype)[::-1]], jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
def test_tile_fill_broadcast_slice(jit, dtype):
    def fn(x, v):
        return {
            "tile": tf.tile(x, [2, 1, 3]),
            "tile_dyn": tf.tile(x, tf.reverse(tf.shape(x), [0])),
            "fill": tf.fill([2, 3], v),
            "fill_shape": tf.fill(tf.shape(x), v),
            "broadcast_to": tf.broadcast_to(x[:, :1], [3, 2, 4, 3]),
            "slice": tf.slice(x, [1, 0, 1], [1, -1, 2]),
            "slice_empty": tf.slice(x, [0, 1, 0], [2, 0, 3]),
        }

    assert_matches_tf(fn, [_arange((2, 4, 3), dtype), np.asarray(3, dtype)], jit=jit)


@JIT
def test_empty_tensors(jit):
    def fn(x):
        return {
            "reshape": tf.reshape(x, [-1, 2, 3]),
            "transpose": tf.transpose(x),
            "concat": tf.concat([x, x], 0),
            "slice": x[::-1, 1:],
            "gather": tf.gather(x, tf.zeros([0], tf.int32), axis=1),
            "gather_rows": tf.gather(x, tf.constant([], tf.int64)),
            "pad": tf.pad(x, [[1, 0], [0, 1]]),
            "tile": tf.tile(x, [3, 2]),
            "split": tf.split(x, 3, axis=1),
            "shape": tf.shape(x),
            "size": tf.size(x),
            "scatter": tf.scatter_nd(tf.zeros([0, 1], tf.int32), x, [2, 3]),
        }

    assert_matches_tf(fn, [np.zeros((0, 3), np.float32)], jit=jit, shapes=[(None, 3)])


@JIT
def test_int64_values_beyond_int32(jit):
    big = np.asarray([2**40 + 3, -(2**35), 7, 2**62], np.int64)

    def fn(x):
        return {
            "gather": tf.gather(x, [3, 0]),
            "scatter": tf.scatter_nd([[1], [1], [0]], x[:3], [2]),
            "fill": tf.fill([2], x[0]),
            "one_hot": tf.one_hot([1, 0], 2, x[3], x[1], dtype=tf.int64),
            "reverse": tf.reverse(x, [0]),
            "top_k": tf.math.top_k(x, 2),
        }

    assert_matches_tf(fn, [big], jit=jit)


# -- strided slices ------------------------------------------------------------------------------------------

SLICES = [
    "x[::-1]",
    "x[..., 1]",
    "x[:, None]",
    "x[-3:-1, ::2]",
    "x[5:1:-2]",
    "x[1]",
    "x[-1]",
    "x[1:3]",
    "x[:, -1]",
    "x[None, ..., None]",
    "x[..., None, 2]",
    "x[1, ..., 2]",
    "x[:, :, ::-2]",
    "x[::2, 1::2, ::-1]",
    "x[10:]",
    "x[-100:100]",
    "x[100:-100:-1]",
    "x[:-1:-1]",
    "x[-1::-1, 2, None]",
    "x[3:1]",
    "x[1:1]",
    "x[..., ::3]",
    "x[0, 0, 0]",
    "x[None]",
    "x[...]",
    "x[:, None, 1:, None, -2]",
    "x[-2, ..., None, -1]",
    "x[1, None, 1]",
    "x[5:-7:-1, :-1]",
    "x[..., -4::-3]",
    "x[:2, ...]",
    "x[tf.newaxis, 1, ...]",
]


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_])
def test_python_slicing(jit, dtype):
    fn = lambda x: {s: eval(s, {"x": x, "tf": tf}) for s in SLICES}  # noqa: E731
    assert_matches_tf(fn, [_arange((6, 5, 4), dtype)], jit=jit)


@JIT
def test_python_slicing_dynamic_shape(jit):
    fn = lambda x: {s: eval(s, {"x": x, "tf": tf}) for s in SLICES}  # noqa: E731
    assert_matches_tf(fn, [_arange((6, 5, 4))], jit=jit, shapes=[(None, None, 4)])


# (begin, end, strides, begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_axis_mask)
RAW_SLICES = [
    ([1, 0, 0], [3, 0, 0], [1, 1, 1], 0b110, 0b110, 0, 0, 0),
    ([0, 0, 0], [0, 0, 0], [-1, 1, 1], 0b111, 0b111, 0, 0, 0),
    ([0, 1], [0, 2], [1, 1], 0, 0, 0b01, 0, 0b10),
    ([0, 2, 0], [0, 3, 0], [1, 1, 1], 0b101, 0b101, 0, 0b001, 0b010),
    ([-1, 0], [0, 0], [1, 1], 0, 0b10, 0, 0, 0b01),
    ([1, 0, 0], [2, 0, 0], [1, 1, 1], 0, 0b110, 0b010, 0b100, 0b001),
    ([4, -1], [-10, 1], [-2, 1], 0, 0, 0, 0, 0b10),
    ([0, 0], [0, 0], [1, 1], 0b11, 0b11, 0, 0b11, 0),
    ([2, 0], [5, 0], [2, 1], 0, 0, 0, 0b10, 0),
    ([0], [0], [1], 0, 0, 0b1, 0b1, 0),
    ([-2], [-1], [1], 0b1, 0, 0, 0, 0b1),
]


@JIT
@pytest.mark.parametrize("index_dtype", [tf.int32, tf.int64])
def test_strided_slice_masks(jit, index_dtype):
    def fn(x):
        c = lambda v: tf.constant(v, index_dtype)  # noqa: E731
        out = [
            raw.StridedSlice(
                input=x,
                begin=c(b),
                end=c(e),
                strides=c(s),
                begin_mask=bm,
                end_mask=em,
                ellipsis_mask=el,
                new_axis_mask=na,
                shrink_axis_mask=sh,
            )
            for b, e, s, bm, em, el, na, sh in RAW_SLICES
        ]
        return out

    assert_matches_tf(fn, [_arange((6, 5, 4))], jit=jit)


@JIT
def test_strided_slice_update_and_grad(jit):
    def fn(x, v):
        update = raw.TensorStridedSliceUpdate
        return {
            "update": update(input=x, begin=[5, 0], end=[1, 4], strides=[-2, 2], value=v),
            "update_scalar": update(input=x, begin=[1], end=[2], strides=[1], value=v[0, 0], shrink_axis_mask=1),
            "update_ellipsis": update(
                input=x,
                begin=[0, -1],
                end=[0, 0],
                strides=[1, 1],
                value=x[:, 1],
                ellipsis_mask=1,
                shrink_axis_mask=2,
            ),
            "grad": raw.StridedSliceGrad(
                shape=tf.shape(x),
                begin=[1, 0, -1],
                end=[0, 0, 0],
                strides=[1, 1, -2],
                dy=tf.reshape(v, [4, 1]),
                begin_mask=0,
                end_mask=0b010,
                new_axis_mask=0b100,
                shrink_axis_mask=0b001,
            ),
        }

    assert_matches_tf(fn, [_arange((6, 4)), _arange((2, 2)) * 10], jit=jit)


def test_strided_slice_shrink_out_of_range_is_an_error():
    export_dir, _ = save_function(
        lambda x: raw.StridedSlice(input=x, begin=[7], end=[8], strides=[1], shrink_axis_mask=1),
        [_arange((6, 5))],
        shapes=[(None, 5)],
    )
    with pytest.raises(Exception, match="out of bounds"):
        run_jaxsm(export_dir, [_arange((6, 5))])


# -- padding and reordering ----------------------------------------------------------------------------------


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float64])
def test_pads(jit, dtype):
    def fn(x, c):
        p = [[1, 2], [0, 3]]
        return {
            "pad": tf.pad(x, p),
            "pad_v2": tf.pad(x, p, constant_values=c),
            "pad_int64": raw.Pad(input=x, paddings=tf.constant(p, tf.int64)),
            "reflect": tf.pad(x, [[2, 1], [3, 3]], mode="REFLECT"),
            "symmetric": tf.pad(x, [[3, 0], [4, 2]], mode="SYMMETRIC"),
        }

    assert_matches_tf(fn, [_arange((3, 4), dtype), np.asarray(-5, dtype)], jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_reverse_roll(jit, dtype):
    def fn(x, lengths, shift):
        return {
            "reverse_v1": raw.Reverse(tensor=x, dims=[True, False, True]),
            "reverse_v2": tf.reverse(x, [-1, 1]),
            "reverse_none": tf.reverse(x, tf.constant([], tf.int32)),
            "revseq": tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0),
            "revseq_t": tf.reverse_sequence(x, tf.constant([5, 0, 2, 1], tf.int64), seq_axis=2, batch_axis=1),
            "roll": tf.roll(x, [1, -2], [0, 2]),
            "roll_same_axis": tf.roll(x, [2, 3], [-1, -1]),
            "roll_traced": tf.roll(x, shift, 1),
            "roll_traced_vec": tf.roll(x, tf.stack([shift, shift]), [1, 2]),
        }

    lengths = np.asarray([2, 0, 3], np.int64)
    assert_matches_tf(fn, [_arange((3, 4, 5), dtype), lengths, np.int32(-3)], jit=jit)


@JIT
def test_invert_permutation(jit):
    fn = lambda p: (tf.math.invert_permutation(p), tf.math.invert_permutation(tf.constant([2, 0, 3, 1])))  # noqa
    assert_matches_tf(fn, [np.asarray([3, 1, 4, 0, 2], np.int64)], jit=jit)


# -- one-hot, gathers, scatters ------------------------------------------------------------------------------


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_])
def test_one_hot(jit, dtype):
    on, off = (True, False) if dtype == np.bool_ else (dtype(5), dtype(-1))

    def fn(i):
        return {
            "last": tf.one_hot(i, 4, on, off, dtype=dtype),
            "axis0": tf.one_hot(i, 5, on, off, axis=0, dtype=dtype),
            "axis1": tf.one_hot(i, 3, on, off, axis=1, dtype=dtype),
            "u8": tf.one_hot(tf.constant([0, 3, 200], tf.uint8), 4, on, off, dtype=dtype),
            "scalar": tf.one_hot(i[0, 1], 4, on, off, dtype=dtype),
        }

    assert_matches_tf(fn, [np.asarray([[0, -1, 3], [4, 2, 1]], np.int64)], jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
def test_gather(jit, dtype):
    def fn(p, i, j):
        return {
            "gather_v1": raw.Gather(params=p, indices=i),
            "axis0": tf.gather(p, i),
            "axis1": tf.gather(p, j, axis=1),
            "axis_neg": tf.gather(p, i, axis=-1),
            "scalar_index": tf.gather(p, j[0, 0], axis=2),
            "batch1": tf.gather(p, j, axis=1, batch_dims=1),
            "batch1_axis2": tf.gather(p, j, axis=2, batch_dims=1),
            "batch2": tf.gather(p, tf.constant([[1, 0], [2, 2], [0, 1]], tf.int64), axis=-1, batch_dims=-1),
            "batch_neg": tf.gather(
                tf.reshape(p, [3, 3, 4]), tf.constant([[0, 3], [1, 1], [2, 0]]), axis=2, batch_dims=-1
            ),
            "gather_nd": tf.gather_nd(p, [[1, 2], [0, 0]]),
            "gather_nd_full": tf.gather_nd(p, tf.constant([[[2, 1, 3]], [[0, 2, 1]]], tf.int64)),
            "gather_nd_batch": tf.gather_nd(p, j[:, :, None], batch_dims=1),
        }

    p = _arange((3, 3, 4), dtype)
    i = np.asarray([[2, 0], [1, 1], [0, 2]], np.int32)
    j = np.asarray([[2, 0], [1, 1], [0, 2]], np.int64)
    assert_matches_tf(fn, [p, i, j], jit=jit)


@pytest.mark.parametrize("jit", [True, False])
def test_out_of_range_gather_gives_zeros(jit):
    # TF's CPU kernels raise here; jaxsm follows TF's GPU kernels (zeros / dropped), negative indices too.
    def fn(p, i):
        return {
            "v2": tf.gather(p, i),
            "nd": tf.gather_nd(p, i[:, None]),
            "nd_full": tf.gather_nd(p, tf.stack([i, tf.zeros_like(i)], axis=1)),
            "scatter": tf.scatter_nd(i[:, None], p, [4, 2]),
        }

    p, i = _arange((4, 2)), np.asarray([1, -1, 4, 0], np.int32)
    export_dir, _ = save_function(fn, [p, i])
    if not jit:  # the indices' values are known outside jax.jit: jaxsm raises as TF's CPU kernels do
        with pytest.raises(JaxsmError, match="out of range"):
            run_jaxsm(export_dir, [p, i], jit=jit)
        return
    got = run_jaxsm(export_dir, [p, i], jit=jit)
    expected = np.asarray([p[1], [0, 0], [0, 0], p[0]])
    np.testing.assert_array_equal(got["v2"], expected, err_msg="GatherV2")
    np.testing.assert_array_equal(got["nd"], expected, err_msg="GatherNd")
    np.testing.assert_array_equal(got["nd_full"], expected[:, 0], err_msg="GatherNd (full index)")
    np.testing.assert_array_equal(got["scatter"], np.asarray([p[3], p[0], [0, 0], [0, 0]]), err_msg="ScatterNd")


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float64])
def test_scatters(jit, dtype):
    def fn(t, i, u):
        ir = i[:, :1]
        return {
            "scatter_nd_dup": tf.scatter_nd(i, u, [4, 3]),
            "scatter_nd_rows": tf.scatter_nd(ir, tf.tile(u[:, None], [1, 3]), tf.constant([4, 3])),
            "update": tf.tensor_scatter_nd_update(t, i[:3], u[:3]),
            "add": tf.tensor_scatter_nd_add(t, i, u),
            "sub": tf.tensor_scatter_nd_sub(t, i, u),
            "min": tf.tensor_scatter_nd_min(t, i, u),
            "max": tf.tensor_scatter_nd_max(t, i, u),
            "add_rows": tf.tensor_scatter_nd_add(t, ir, tf.tile(u[:, None], [1, 3])),
            "non_aliasing": raw.ScatterNdNonAliasingAdd(input=t, indices=i, updates=u),
        }

    i = np.asarray([[0, 1], [3, 2], [0, 1], [2, 0]], np.int32)
    assert_matches_tf(fn, [_arange((4, 3), dtype), i, np.asarray([5, -3, 2, 9], dtype)], jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_sparse_to_dense_unravel(jit, dtype):
    def fn(x, i):
        return {
            "sparse_to_dense": raw.SparseToDense(
                sparse_indices=tf.constant([[0, 1], [2, 3]]),
                output_shape=[3, 4],
                sparse_values=x[0, :2],
                default_value=x[1, 1],
            ),
            "sparse_to_dense_1d": raw.SparseToDense(
                sparse_indices=i[::-1],
                output_shape=tf.constant([5]),
                sparse_values=x[0, 0],
                default_value=x[2, 2],
            ),
            "sparse_to_dense_0d": tf.sparse.to_dense(tf.SparseTensor([[1]], x[0, :1], [3])),
            "unravel": tf.unravel_index(i, [2, 3]),
            "unravel_scalar": tf.unravel_index(tf.constant(7, tf.int64), tf.constant([2, 2, 3], tf.int64)),
        }

    assert_matches_tf(fn, [_arange((4, 4), dtype), np.asarray([3, 1], np.int32)], jit=jit)


@JIT
@pytest.mark.parametrize("which", ["InplaceUpdate", "InplaceAdd", "InplaceSub"])
def test_inplace(jit, which):
    # TF's kernels write into their input's buffer, so each saved function holds a single one.
    fn = lambda x, i, v: getattr(raw, which)(x=x, i=i, v=v)  # noqa: E731
    assert_matches_tf(fn, [_arange((4, 3)), np.asarray([3, 1], np.int32), _arange((2, 3)) * 3], jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_dynamic_stitch_and_partition(jit, dtype):
    def fn(x, y):
        i0, i1 = tf.constant([[0, 4], [2, 6]]), tf.constant([1, 4, 3])  # 4 twice: the later entry wins
        return {
            "stitch": tf.dynamic_stitch([i0, i1], [x, y]),
            "parallel_stitch": raw.ParallelDynamicStitch(indices=[i1, tf.constant([5])], data=[y, x[0, :1]]),
            "partition": tf.dynamic_partition(x, tf.constant([[0, 2], [2, 0]]), 4),
            "partition_rows": tf.dynamic_partition(y, tf.constant([1, 0, 1]), 2),
        }

    assert_matches_tf(fn, [_arange((2, 2, 3), dtype), _arange((3, 3), dtype) + 1], jit=jit)


# -- sorting, searching, data-dependent shapes ---------------------------------------------------------------


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float64])
def test_top_k_and_sort(jit, dtype):
    def fn(x):
        v, i = tf.math.top_k(x, 3)
        return {
            "values": v,
            "indices": i,
            # TF leaves the order of unsorted results unspecified (jaxsm returns them sorted).
            "unsorted": tf.sort(raw.TopKV2(input=x, k=2, sorted=False).values, direction="DESCENDING"),
            "top_k_int64_k": raw.TopKV2(input=x, k=tf.constant(1, tf.int64)),
            "index_type": raw.TopKV2(input=x, k=2, index_type=tf.int64),
            "sort_desc": tf.sort(x, direction="DESCENDING"),
            "sort_desc_axis0": tf.sort(x, axis=0, direction="DESCENDING"),
            "argsort_desc": tf.argsort(x, direction="DESCENDING", stable=True),
            "argsort_desc_axis0": tf.argsort(x, axis=0, direction="DESCENDING"),
            "sort_asc": tf.sort(x),
            "argsort_asc": tf.argsort(x, axis=0, stable=True),
        }

    # Ties: TF (and jaxsm) put the lower index first.
    x = np.asarray([[1, 3, 3, 2, 3, 0], [5, 5, -1, 5, 2, 7], [0, 0, 0, 0, 0, 0]], dtype)
    assert_matches_tf(fn, [x], jit=jit)


@JIT
@pytest.mark.parametrize("out_type", [tf.int32, tf.int64])
def test_searchsorted(jit, out_type):
    def fn(s, v):
        return {
            "left": tf.searchsorted(s, v, side="left", out_type=out_type),
            "right": tf.searchsorted(s, v, side="right", out_type=out_type),
            "lower_raw": raw.LowerBound(sorted_inputs=s, values=v, out_type=out_type),
            "upper_raw": raw.UpperBound(sorted_inputs=s, values=v[:, :2], out_type=out_type),
        }

    s = np.asarray([[0, 1, 1, 3, 5], [-2, -2, 0, 4, 4]], np.float32)
    v = np.asarray([[1, -1, 6, 3], [4, -2, 0.5, 9]], np.float32)
    assert_matches_tf(fn, [s, v], jit=jit)


@pytest.mark.parametrize("out_idx", [tf.int32, tf.int64])
def test_data_dependent_ops_on_constants(out_idx):
    def fn(x):
        c = tf.constant([3, 1, 3, 0, 1, 7, 3])
        m = tf.constant([[1, 2], [0, 1], [1, 2], [5, 5]])
        f = tf.constant([1.0, np.nan, np.nan, 1.0, -0.0, 0.0])
        b = tf.constant([[True, False], [False, True], [True, True]])
        return {
            "unique": tf.unique(c, out_idx=out_idx),
            "unique_nan": tf.unique(f, out_idx=out_idx),
            "unique_counts": tf.unique_with_counts(c, out_idx=out_idx),
            "unique_v2_axis0": raw.UniqueV2(x=m, axis=tf.constant([0]), out_idx=out_idx),
            "unique_v2_axis1": raw.UniqueV2(x=tf.transpose(m), axis=tf.constant([-1], tf.int64), out_idx=out_idx),
            "unique_counts_v2": raw.UniqueWithCountsV2(x=m, axis=tf.constant([0]), out_idx=out_idx),
            "where_bool": tf.where(b),
            "where_int": tf.where(tf.constant([[0, 2, 0], [1, 0, 3]])),
            "where_float": tf.where(tf.constant([0.0, -1.5, np.nan])),
            "list_diff": tf.compat.v1.setdiff1d(c, tf.constant([1, 9]), index_dtype=out_idx),
        }

    x = np.asarray([4, 4, 2], np.int32)
    assert_matches_tf(fn, [x], jit=True)
    assert_matches_tf(fn, [x], jit=False)


@pytest.mark.parametrize(
    "make,x",
    [
        (lambda x: tf.unique(x), np.asarray([3, 1, 3], np.int32)),
        (lambda x: tf.where(x), np.asarray([True, False])),
        (lambda x: tf.compat.v1.setdiff1d(x, tf.constant([1])), np.asarray([3, 1, 3], np.int32)),
        (lambda x: raw.UniqueWithCounts(x=x), np.asarray([3, 1, 3], np.int64)),
        (lambda x: tf.dynamic_partition(x, x, 4), np.asarray([3, 1, 3], np.int32)),
        (lambda x: tf.dynamic_stitch([x], [x]), np.asarray([3, 1, 3], np.int32)),
    ],
    ids=["unique", "where", "list_diff", "unique_counts", "dynamic_partition", "dynamic_stitch"],
)
def test_data_dependent_ops_on_run_time_values_run_op_by_op(make, x):
    """Output shapes from run-time values: a call runs op by op like TF eager (one EagerFallbackWarning) and
    matches TF; jax.jit of the pure function cannot compile it and raises a StaticValueError."""
    import jax

    import jaxsm

    with pytest.warns(EagerFallbackWarning, match="op by op"):
        assert_matches_tf(make, [x], jit=True)
    export_dir, _ = save_function(make, [x])
    apply, params = jaxsm.functional(jaxsm.load(export_dir).f)
    with pytest.raises(StaticValueError, match="must be known at trace time"):
        jax.jit(apply)(params, x)


@JIT
@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.float64, np.int64])
def test_bincount(jit, dtype):
    def fn(a, w):
        empty = tf.constant([], dtype)
        return {
            "count": raw.Bincount(arr=a, size=5, weights=empty),
            "weights": raw.Bincount(arr=a, size=tf.constant(3), weights=w),
            "dense": raw.DenseBincount(input=a, size=5, weights=w),
            "dense_count_int64": raw.DenseBincount(
                input=tf.constant([3, 1, 0, 2, 9], tf.int64), size=tf.constant(4, tf.int64), weights=empty
            ),
            "dense_binary": raw.DenseBincount(input=a, size=5, weights=empty, binary_output=True),
            "dense_2d": raw.DenseBincount(input=tf.reshape(a, [2, 3]), size=4, weights=tf.reshape(w, [2, 3])),
            "dense_2d_binary": raw.DenseBincount(
                input=tf.reshape(a, [2, 3]), size=4, weights=empty, binary_output=True
            ),
        }

    a = np.asarray([1, 3, 1, 0, 7, 3], np.int32)
    assert_matches_tf(fn, [a, np.asarray([1, 2, 3, 4, 5, 6], dtype)], jit=jit)


# -- space/depth/batch ---------------------------------------------------------------------------------------


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_depth_space_batch(jit, dtype):
    def fn(x):
        return {
            "d2s": tf.nn.depth_to_space(x, 2),
            "s2d": tf.nn.space_to_depth(x, 2),
            "s2d_d2s": tf.nn.depth_to_space(tf.nn.space_to_depth(x, 2), 2),
            "s2b": tf.space_to_batch_nd(x, [2, 2], [[0, 0], [1, 1]]),
            "s2b_1d": tf.space_to_batch_nd(x, [3], [[1, 1]]),
            "s2b_v1": raw.SpaceToBatch(input=x, paddings=[[1, 1], [2, 0]], block_size=2),
            "b2s": tf.batch_to_space(x, [1, 2], [[0, 0], [1, 2]]),
            "b2s_roundtrip": tf.batch_to_space(
                tf.space_to_batch_nd(x, [2, 2], [[0, 0], [1, 1]]), [2, 2], [[0, 0], [1, 1]]
            ),
            "b2s_v1": raw.BatchToSpace(input=tf.concat([x] * 4, 0), crops=[[0, 1], [1, 0]], block_size=2),
        }

    assert_matches_tf(fn, [_arange((2, 4, 6, 8), dtype)], jit=jit)


@JIT
def test_depth_space_nchw(jit):
    # TF's CPU kernels only implement NHWC, so NCHW is checked against NHWC with transposes.
    x = _arange((2, 8, 4, 6))
    to_nhwc, to_nchw = (0, 2, 3, 1), (0, 3, 1, 2)
    export_dir, _ = save_function(
        lambda x: {
            "d2s": tf.nn.depth_to_space(x, 2, data_format="NCHW"),
            "s2d": tf.nn.space_to_depth(x, 2, data_format="NCHW"),
        },
        [x],
    )
    got = run_jaxsm(export_dir, [x], jit=jit)
    nhwc = tf.constant(x.transpose(to_nhwc))
    np.testing.assert_array_equal(got["d2s"], tf.nn.depth_to_space(nhwc, 2).numpy().transpose(to_nchw), "d2s")
    np.testing.assert_array_equal(got["s2d"], tf.nn.space_to_depth(nhwc, 2).numpy().transpose(to_nchw), "s2d")


@JIT
@pytest.mark.parametrize(
    "sizes,strides,rates,padding",
    [
        ([1, 2, 2, 1], [1, 1, 1, 1], [1, 1, 1, 1], "VALID"),
        ([1, 3, 2, 1], [1, 2, 3, 1], [1, 1, 1, 1], "SAME"),
        ([1, 2, 3, 1], [1, 1, 2, 1], [1, 2, 1, 1], "SAME"),
        ([1, 3, 3, 1], [1, 2, 2, 1], [1, 2, 2, 1], "VALID"),
    ],
)
def test_extract_image_patches(jit, sizes, strides, rates, padding):
    fn = lambda x: tf.image.extract_patches(x, sizes, strides, rates, padding)  # noqa: E731
    assert_matches_tf(fn, [_arange((2, 7, 8, 3))], jit=jit)


# -- diagonals and bands -------------------------------------------------------------------------------------


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.complex64])
def test_band_and_diag(jit, dtype):
    def fn(x, lo):
        return {
            "band": tf.linalg.band_part(x, 1, 0),
            "band_all": tf.linalg.band_part(x, -1, -1),
            "band_upper": tf.linalg.band_part(x, tf.constant(0, tf.int64), tf.constant(2, tf.int64)),
            "band_traced": tf.linalg.band_part(x, lo, -1),
            "diag": tf.linalg.tensor_diag(x[0, 0]),
            "diag_2d": tf.linalg.tensor_diag(x[0, :2, :2]),
            "diag_part": tf.linalg.tensor_diag_part(tf.linalg.tensor_diag(x[0, 1:, 1:])),
        }

    x = _arange((2, 4, 5), dtype)
    assert_matches_tf(fn, [x, np.int64(2)], jit=jit)


@JIT
@pytest.mark.parametrize("align", ["RIGHT_LEFT", "LEFT_RIGHT", "LEFT_LEFT", "RIGHT_RIGHT"])
def test_matrix_diag_v3(jit, align):
    def fn(x):
        out = {}
        for name, m in [("wide", x), ("tall", tf.transpose(x, [0, 2, 1]))]:
            for k in [1, -2, (-1, 1), (1, 3), (-3, -1)]:
                part = tf.linalg.diag_part(m, k=k, padding_value=9, align=align)
                out[f"part_{name}_{k}"] = part
                out[f"diag_{name}_{k}"] = tf.linalg.diag(part, k=k, padding_value=-1, align=align)
                out[f"diag_sized_{name}_{k}"] = tf.linalg.diag(
                    part, k=k, num_rows=m.shape[1], num_cols=m.shape[2], align=align
                )
                out[f"set_{name}_{k}"] = tf.linalg.set_diag(m, part[..., ::-1], k=k, align=align)
        return out

    assert_matches_tf(fn, [_arange((2, 4, 6))], jit=jit)


@JIT
def test_matrix_diag_v1_v2(jit):
    def fn(x, d):
        k = tf.constant([-1, 1])
        return {
            "diag_v1": raw.MatrixDiag(diagonal=d),
            "part_v1": raw.MatrixDiagPart(input=x),
            "set_v1": raw.MatrixSetDiag(input=x, diagonal=d[:, :4]),
            "diag_v2": raw.MatrixDiagV2(diagonal=x[:, :3], k=k, num_rows=-1, num_cols=-1, padding_value=7.0),
            "diag_v2_rows": raw.MatrixDiagV2(diagonal=d, k=1, num_rows=6, num_cols=-1, padding_value=0.0),
            "diag_v3_default": raw.MatrixDiagV3(diagonal=x[:, :3], k=k, num_rows=-1, num_cols=-1, padding_value=0.0),
            "part_v2": raw.MatrixDiagPartV2(input=x, k=k, padding_value=7.0),
            "part_v3_default": raw.MatrixDiagPartV3(input=x, k=k, padding_value=7.0),
            "set_v2": raw.MatrixSetDiagV2(input=x, diagonal=x[:, :3, :4], k=k),
            "set_v3_default": raw.MatrixSetDiagV3(input=x, diagonal=x[:, :3, :4], k=k),
        }

    assert_matches_tf(fn, [_arange((2, 4, 6)), _arange((2, 5)) + 0.5], jit=jit)


@JIT
def test_empty_bucketize_tobool(jit):
    bounds = [-1.0, 0.0, 0.5, 3.0]

    def fn(x, i, d):
        return (
            tf.raw_ops.Empty(shape=tf.constant([2, 3]), dtype=tf.float32, init=True),
            tf.raw_ops.Empty(shape=tf.shape(x)[:1], dtype=tf.int64, init=True),
            tf.raw_ops.Bucketize(input=x, boundaries=bounds),
            tf.raw_ops.Bucketize(input=i, boundaries=bounds),
            tf.raw_ops.Bucketize(input=d, boundaries=bounds),
            tf.raw_ops.ToBool(input=x),
            tf.raw_ops.ToBool(input=x[:0]),
            tf.raw_ops.ToBool(input=i[0, 0]),
            tf.raw_ops.ToBool(input=d[0] * 0.0),
        )

    x = np.array([[0.5, -1.0, 2.0, 3.0], [-2.0, 0.0, 0.5, 0.25]], np.float32)  # values on the boundaries
    i = np.array([[-1, 0, 3, 7]], np.int64)
    d = np.array([0.5, 3.0000001, -1.0000001], np.float64)
    assert_matches_tf(fn, [x, i, d], jit=jit)


@pytest.mark.parametrize("mode", ["REFLECT", "SYMMETRIC"])
@pytest.mark.parametrize("jit", [True, False])
def test_mirror_pad_grad(mode, jit):
    """MirrorPad's gradient op (saved training steps with reflection padding) adds the borders back."""
    dy = np.random.default_rng(5).standard_normal((2, 9, 7, 3)).astype(np.float32)

    def fn(dy):
        return tf.raw_ops.MirrorPadGrad(input=dy, paddings=[[0, 0], [2, 2], [1, 2], [0, 0]], mode=mode)

    assert_matches_tf(fn, [dy], rtol=1e-6, atol=1e-6, jit=jit)


@pytest.mark.parametrize("jit", [True, False])
def test_guarantee_const_and_deep_copy(jit):
    x = np.array([[3.0, 1.0, 3.0, 7.0], [0.0, -1.0, 2.0, 2.0]], np.float32)

    def fn(x):
        return tf.raw_ops.GuaranteeConst(input=x) * 2.0, tf.raw_ops.DeepCopy(x=x) + 1.0

    assert_matches_tf(fn, [x], jit=jit)
