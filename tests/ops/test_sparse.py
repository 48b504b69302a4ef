"""SparseTensor ops against TF: SparseReshape and SparseFillEmptyRows (feature columns' embedding lookups use
them), with numeric and string values, unsorted indices and empty inputs; then jaxsm/ops/sparse.py's ops
(SparseTensor arithmetic, reductions, add/slice/concat/split, the count ops and the gradients)."""

import warnings

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import EagerFallbackWarning, JaxsmError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

R = tf.raw_ops

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "indices,shape,new_shape",
    [
        ([[0, 1], [2, 3], [1, 0]], [3, 4], [2, -1]),
        ([[0, 1, 1], [1, 0, 2]], [2, 2, 3], [-1]),
        ([[5]], [6], [2, 3]),
        (np.zeros((0, 2)), [3, 4], [4, 3, 1]),
        ([[1, 2]], [2, 3], [2, 3]),
    ],
    ids=str,
)
def test_sparse_reshape(indices, shape, new_shape, jit):
    def fn(i):
        out = R.SparseReshape(input_indices=i, input_shape=tf.constant(shape, tf.int64), new_shape=new_shape)
        return {"indices": out.output_indices, "shape": out.output_shape}

    assert_matches_tf(fn, [np.asarray(indices, np.int64).reshape(-1, len(shape))], jit=jit)


@pytest.mark.parametrize("new_shape", [[5, -1], [-1, -1], [7]])
def test_sparse_reshape_errors(new_shape):
    def fn(i):
        return R.SparseReshape(input_indices=i, input_shape=tf.constant([3, 4], tf.int64), new_shape=new_shape)

    i = np.array([[0, 1]], np.int64)
    export_dir, tf_fn = save_function(fn, [i])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(i)
    with pytest.raises(JaxsmError, match="reshape|-1"):
        run_jaxsm(export_dir, [i])


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "indices,rows",
    [
        ([[0, 1], [0, 0], [3, 2], [1, 1]], 5),  # unsorted, empty rows 2 and 4
        ([[2, 0], [1, 3], [2, 1]], 3),  # row 0 empty, rows out of order
        (np.zeros((0, 2)), 3),  # all rows empty
        ([[0, 0], [1, 0]], 2),  # none empty
    ],
    ids=str,
)
def test_sparse_fill_empty_rows(indices, rows, jit):
    indices = np.asarray(indices, np.int64).reshape(-1, 2)
    values = np.arange(len(indices), dtype=np.float32) * 1.5 + 1
    words = np.empty(len(indices), dtype=object)
    words[:] = [f"w{i}".encode() for i in range(len(indices))]

    def fn(i, v, w):
        shape = tf.constant([rows, 4], tf.int64)
        num = R.SparseFillEmptyRows(indices=i, values=v, dense_shape=shape, default_value=tf.constant(-7.0))
        text = R.SparseFillEmptyRows(indices=i, values=w, dense_shape=shape, default_value=tf.constant("<e>"))
        return {
            "indices": num.output_indices,
            "values": num.output_values,
            "empty": num.empty_row_indicator,
            "map": num.reverse_index_map,
            "words": text.output_values,
            "word_indices": text.output_indices,
        }

    assert_matches_tf(fn, [indices, values, words], shapes=[(None, 2), (None,), (None,)], jit=jit)


# -- jaxsm/ops/sparse.py ---------------------------------------------------------------------------------------

I64 = tf.int64


def _assert_same(expected, got, path="out", rtol=1e-6):
    if isinstance(expected, dict):
        for k in expected:
            _assert_same(expected[k], got[k], f"{path}[{k!r}]", rtol)
        return
    if isinstance(expected, (list, tuple)):
        assert len(expected) == len(got), f"{path}: {len(got)} outputs != TF's {len(expected)}"
        for k, (e, g) in enumerate(zip(expected, got)):
            _assert_same(e, g, f"{path}[{k}]", rtol)
        return
    e, g = np.asarray(expected.numpy() if hasattr(expected, "numpy") else expected), np.asarray(got)
    assert e.shape == g.shape, f"{path}: shape {g.shape} != TF's {e.shape}"
    assert e.dtype == g.dtype, f"{path}: dtype {g.dtype} != TF's {e.dtype}"
    if e.dtype == object:
        assert e.tolist() == g.tolist(), f"{path}: strings differ"
    else:
        np.testing.assert_allclose(g, e, rtol=rtol, equal_nan=True, err_msg=path)


def _check(fn, inputs, shapes=None, rtol=1e-6, compiles=False):
    """Save ``fn`` once; jaxsm's result with and without jit must equal TF's. ``compiles``: the jitted call must
    not fall back to running op by op."""
    inputs = [np.asarray(x) for x in inputs]
    export_dir, tf_fn = save_function(fn, inputs, shapes)
    expected = tf_fn(*inputs)
    for jit in (True, False):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = run_jaxsm(export_dir, inputs, jit=jit)
        fallback = [w for w in caught if issubclass(w.category, EagerFallbackWarning)]
        assert not (compiles and fallback), f"jit={jit}: fell back to op-by-op: {fallback[0].message}"
        _assert_same(expected, got, f"jit={jit}", rtol)


def _check_error(fn, inputs, match, jit=True):
    """TF raises InvalidArgumentError on ``inputs``; jaxsm must raise a JaxsmError too (``jit=False``: where the
    check needs run-time values)."""
    inputs = [np.asarray(x) for x in inputs]
    export_dir, tf_fn = save_function(fn, inputs)
    with pytest.raises((tf.errors.InvalidArgumentError, tf.errors.InternalError)):
        tf_fn(*inputs)
    with pytest.raises(JaxsmError, match=match):
        run_jaxsm(export_dir, inputs, jit=jit)


def _values(n, dtype, seed=0):
    v = np.random.default_rng(seed).uniform(-3, 3, size=n)
    if np.dtype(dtype).kind == "c":
        v = v + 1j * np.random.default_rng(seed + 1).uniform(-3, 3, size=n)
    return v.astype(dtype) if np.dtype(dtype).kind in "fc" else np.round(v).astype(dtype)


UNSORTED = np.array([[2, 3], [0, 1], [1, 0], [0, 1], [2, 0]], np.int64)  # unsorted, (0, 1) twice


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.int32])
def test_sparse_tensor_dense_mat_mul(dtype):
    b4, b3 = _values(8, dtype, 1).reshape(4, 2), _values(6, dtype, 2).reshape(3, 2)

    def fn(i, v, b4, b3):
        def mm(i, v, b, **kw):
            return R.SparseTensorDenseMatMul(a_indices=i, a_values=v, a_shape=tf.constant([3, 4], I64), b=b, **kw)

        return {
            "plain": mm(i, v, b4),
            "adj_a": mm(i, v, b3, adjoint_a=True),
            "adj_b": mm(i, v, tf.transpose(b4), adjoint_b=True),
            "adj_ab": mm(i, v, tf.transpose(b3), adjoint_a=True, adjoint_b=True),
            "empty": mm(i[:0], v[:0], b4),
        }

    _check(fn, [UNSORTED, _values(len(UNSORTED), dtype), b4, b3], rtol=1e-5, compiles=True)


@pytest.mark.parametrize("index,match", [([3, 0], "out of bounds"), ([0, -1], "out of bounds")])
def test_sparse_tensor_dense_mat_mul_errors(index, match):
    def fn(b):
        i = tf.constant([index], I64)
        return R.SparseTensorDenseMatMul(a_indices=i, a_values=[1.0], a_shape=tf.constant([3, 4], I64), b=b)

    _check_error(fn, [np.ones((4, 2), np.float32)], match)
    _check_error(  # a run-time a_shape: TF's shape inference would catch a constant one
        lambda b, s: R.SparseTensorDenseMatMul(a_indices=tf.constant([[0, 0]], I64), a_values=[1.0], a_shape=s, b=b),
        [np.ones((3, 2), np.float32), np.array([3, 4], np.int64)],
        "inner dimensions",
    )


@pytest.mark.parametrize(
    "indices,shape,dtype",
    [
        (UNSORTED, [3, 4], np.float32),
        ([[1], [4], [1]], [5], np.int64),
        ([[0, 1, 2], [1, 0, 0], [0, 1, 2]], [2, 2, 3], np.float64),
        (np.zeros((0, 2)), [2, 3], np.float32),
    ],
    ids=["rank2", "rank1_int64", "rank3", "empty"],
)
def test_sparse_tensor_dense_add(indices, shape, dtype):
    indices = np.asarray(indices, np.int64).reshape(-1, len(shape))

    def fn(i, v, b):
        return R.SparseTensorDenseAdd(a_indices=i, a_values=v, a_shape=tf.constant(shape, I64), b=b)

    _check(
        fn,
        [indices, _values(len(indices), dtype), _values(int(np.prod(shape)), dtype, 3).reshape(shape)],
        compiles=True,
    )


def test_sparse_tensor_dense_add_errors():
    def fn(b):
        return R.SparseTensorDenseAdd(
            a_indices=tf.constant([[2, 0]], I64), a_values=[1.0], a_shape=tf.constant([2, 3], I64), b=b
        )

    _check_error(fn, [np.ones((2, 3), np.float32)], "out of bounds")
    _check_error(fn, [np.ones((3, 2), np.float32)], "mismatch")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_sparse_dense_cwise(dtype):
    shapes = [(3, 4), (4,), (1, 4), (3, 1), ()]  # the dense side broadcasts to the sparse shape [3, 4]
    dense = []
    for shape in shapes:
        d = _values(int(np.prod(shape)), dtype, 5).reshape(shape)
        d = np.where(d == 0, 2, d).astype(dtype)  # TF's Div rejects a zero divisor
        if dtype != np.int32 and d.size > 1:
            d.flat[:2] = [np.inf, -0.5]
        dense.append(d)

    def fn(i, v, *dense):
        out = {}
        for shape, d in zip(shapes, dense):
            kw = dict(sp_indices=i, sp_values=v, sp_shape=tf.constant([3, 4], I64), dense=d)
            out[str(shape)] = (R.SparseDenseCwiseMul(**kw), R.SparseDenseCwiseDiv(**kw), R.SparseDenseCwiseAdd(**kw))
        return out

    _check(fn, [UNSORTED, _values(len(UNSORTED), dtype) * 3, *dense], compiles=True)


def test_sparse_dense_cwise_rank3_and_empty():
    def fn(i, v, e, d):
        kw = dict(sp_shape=tf.constant([2, 3, 2], I64), dense=d)
        return R.SparseDenseCwiseMul(sp_indices=i, sp_values=v, **kw), R.SparseDenseCwiseDiv(
            sp_indices=e, sp_values=tf.zeros([0], tf.float64), **kw
        )

    i = np.array([[1, 2, 1], [0, 0, 0], [1, 0, 1]], np.int64)
    _check(
        fn, [i, _values(3, np.float64), np.zeros((0, 3), np.int64), _values(6, np.float64).reshape(3, 2)], compiles=True
    )


@pytest.mark.parametrize(
    "index,dense_shape,match",
    [
        ([3, 0], (3, 4), "out of bounds"),
        ([0, 0], (5,), "broadcast"),
        ([0, 0], (1, 3, 4), "cannot broadcast"),
        ([0, 2], (0,), "divide by zero"),  # TF rejects a zero divisor, for floats too
    ],
)
def test_sparse_dense_cwise_errors(index, dense_shape, match):
    def fn(d):
        kw = dict(sp_indices=tf.constant([index], I64), sp_values=[1.0], sp_shape=tf.constant([3, 4], I64))
        return R.SparseDenseCwiseDiv(dense=d, **kw) if dense_shape == (0,) else R.SparseDenseCwiseMul(dense=d, **kw)

    dense = np.ones(dense_shape, np.float32) if dense_shape != (0,) else np.array([[1, 2, 0, 4]] * 3, np.float32)
    _check_error(fn, [dense], match, jit=match != "divide by zero")


REDUCE_INDICES = np.array([[1, 2, 0], [0, 0, 1], [1, 0, 1], [0, 0, 0], [1, 2, 1], [0, 1, 1]], np.int64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_sparse_reduce(dtype):
    values = _values(len(REDUCE_INDICES), dtype) - (5 if dtype == np.int32 else 0)  # negatives: max is not 0
    if dtype != np.int32:
        values[[1, 3]] = np.nan  # a NaN followed by a number in row-major order gives that number in TF

    def fn(i, v):
        out = {}
        cases = [("ax1", [1], False), ("ax02", [0, -1], True), ("all", [0, 1, 2], False), ("all_keep", [2, 0, 1], True)]
        for name, axes, keep_dims in cases + [("none", tf.zeros([0], tf.int32), False)]:
            kw = dict(input_indices=i, input_values=v, input_shape=tf.constant([2, 3, 2], I64), reduction_axes=axes)
            out[f"sum_{name}"] = R.SparseReduceSum(keep_dims=keep_dims, **kw)
            out[f"max_{name}"] = R.SparseReduceMax(keep_dims=keep_dims, **kw)
            s = R.SparseReduceSumSparse(keep_dims=keep_dims, **kw)
            m = R.SparseReduceMaxSparse(keep_dims=keep_dims, **kw)
            out[f"sum_sparse_{name}"] = (s.output_indices, s.output_values, s.output_shape)
            out[f"max_sparse_{name}"] = (m.output_indices, m.output_values, m.output_shape)
        return out

    _check(fn, [REDUCE_INDICES, values], rtol=1e-5)


def test_sparse_reduce_dense_compiles_and_empty():
    def fn(i, v):
        kw = dict(input_indices=i, input_values=v, input_shape=tf.constant([2, 3, 2], I64))
        return R.SparseReduceSum(reduction_axes=[1], **kw), R.SparseReduceMax(reduction_axes=[2, 0], **kw)

    _check(fn, [REDUCE_INDICES, _values(6, np.float32)], shapes=[(None, 3), (None,)], compiles=True)
    _check(fn, [np.zeros((0, 3), np.int64), np.zeros(0, np.float32)], compiles=True)


@pytest.mark.parametrize("axes,match", [([3], "reduction dimension"), ([1], "out of bounds")])
def test_sparse_reduce_errors(axes, match):
    def fn(v):
        return R.SparseReduceSum(
            input_indices=tf.constant([[5, 0]], I64),
            input_values=v,
            input_shape=tf.constant([3, 3], I64),
            reduction_axes=axes,
        )

    _check_error(fn, [np.ones(1, np.float32)], match)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_softmax(dtype):
    rank3 = np.array([[1, 0, 2], [0, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 3]], np.int64)
    inf = np.array([-np.inf, -np.inf, np.inf, 1.0, 2.0], dtype)

    def fn(i2, v2, i3, v3, vinf, e):
        return {
            "rank2": R.SparseSoftmax(sp_indices=i2, sp_values=v2, sp_shape=tf.constant([3, 4], I64)),
            "rank3": R.SparseSoftmax(sp_indices=i3, sp_values=v3, sp_shape=tf.constant([2, 2, 4], I64)),
            "inf": R.SparseSoftmax(sp_indices=i3, sp_values=vinf, sp_shape=tf.constant([2, 2, 4], I64)),
            "empty": R.SparseSoftmax(sp_indices=e, sp_values=tf.zeros([0], dtype), sp_shape=tf.constant([3, 4], I64)),
        }

    i2 = np.array([[2, 3], [0, 1], [1, 0], [0, 2], [2, 0]], np.int64)
    inputs = [i2, _values(5, dtype), rank3, _values(5, dtype, 4), inf, np.zeros((0, 2), np.int64)]
    _check(fn, inputs, rtol=1e-5, compiles=True)


def test_sparse_reorder():
    words = np.array([b"a", b"b", b"c", b"d", b"e"], object)

    def fn(i, v, w, e):
        shape = tf.constant([3, 4], I64)
        num = R.SparseReorder(input_indices=i, input_values=v, input_shape=shape)
        text = R.SparseReorder(input_indices=i, input_values=w, input_shape=shape)
        none = R.SparseReorder(input_indices=e, input_values=tf.zeros([0], tf.int32), input_shape=shape)
        return num.output_indices, num.output_values, text.output_values, none.output_indices, none.output_values

    i = np.array([[2, 3], [0, 1], [1, 0], [0, 2], [2, 0]], np.int64)
    _check(fn, [i, _values(5, np.float32), words, np.zeros((0, 2), np.int64)])

    def numbers(i, v):
        out = R.SparseReorder(input_indices=i, input_values=v, input_shape=tf.constant([3, 4, 2], I64))
        return out.output_indices, out.output_values

    i3 = np.array([[2, 3, 1], [0, 1, 0], [2, 3, 0], [0, 0, 1]], np.int64)
    _check(fn=numbers, inputs=[i3, _values(4, np.int64)], compiles=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_sparse_add(dtype):
    a_i = np.array([[0, 1], [1, 0], [2, 2], [2, 3]], np.int64)
    b_i = np.array([[0, 0], [1, 0], [2, 3], [3, 1]], np.int64)
    a_v = np.array([1, 2, 3, -4], dtype)
    b_v = np.array([5, -2, 4.5 if dtype != np.int64 else 4, 6], dtype)
    if dtype != np.int64:
        a_v[2] = np.nan

    def fn(ai, av, bi, bv):
        shape = tf.constant([4, 4], I64)
        out = {}
        for name, thresh in [("t0", 0), ("t1", 1)]:
            s = R.SparseAdd(
                a_indices=ai,
                a_values=av,
                a_shape=shape,
                b_indices=bi,
                b_values=bv,
                b_shape=shape,
                thresh=tf.constant(thresh, dtype),
            )
            out[name] = (s.sum_indices, s.sum_values, s.sum_shape)
        # unsorted inputs: TF merges them as they come
        s = R.SparseAdd(
            a_indices=ai[::-1],
            a_values=av[::-1],
            a_shape=shape,
            b_indices=bi,
            b_values=bv,
            b_shape=shape,
            thresh=tf.constant(0, dtype),
        )
        out["unsorted"] = (s.sum_indices, s.sum_values)
        e = R.SparseAdd(
            a_indices=ai[:0],
            a_values=av[:0],
            a_shape=shape,
            b_indices=bi,
            b_values=bv,
            b_shape=shape,
            thresh=tf.constant(0, dtype),
        )
        out["empty"] = (e.sum_indices, e.sum_values)
        return out

    _check(fn, [a_i, a_v, b_i, b_v])


def test_sparse_add_errors():
    def fn(v):
        return R.SparseAdd(
            a_indices=tf.constant([[0, 0]], I64),
            a_values=v,
            a_shape=tf.constant([2, 2], I64),
            b_indices=tf.constant([[0, 1]], I64),
            b_values=v,
            b_shape=tf.constant([2, 3], I64),
            thresh=0.0,
        )

    _check_error(fn, [np.ones(1, np.float32)], "shapes do not match")


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_sparse_sparse_maximum_minimum(dtype):
    a_i = np.array([[0, 1], [1, 0], [2, 2], [1, 3]], np.int64)  # unsorted at the end
    b_i = np.array([[0, 0], [1, 0], [2, 2], [3, 1]], np.int64)
    a_v = np.array([1, -2, 3, -4], dtype)
    b_v = np.array([-5, -1, 4, 6], dtype)
    if dtype == np.float32:
        a_v[2], b_v[3] = np.nan, np.nan

    def fn(ai, av, bi, bv):
        kw = dict(
            a_indices=ai,
            a_values=av,
            a_shape=tf.constant([4, 4], I64),
            b_indices=bi,
            b_values=bv,
            b_shape=tf.constant([4, 4], I64),
        )
        mx, mn = R.SparseSparseMaximum(**kw), R.SparseSparseMinimum(**kw)
        return mx.output_indices, mx.output_values, mn.output_indices, mn.output_values

    _check(fn, [a_i, a_v, b_i, b_v])
    _check(fn, [a_i[:0], a_v[:0], b_i, b_v])


def test_sparse_sparse_maximum_errors():
    def fn(v):
        return R.SparseSparseMaximum(
            a_indices=tf.constant([[5, 0]], I64),
            a_values=v,
            a_shape=tf.constant([2, 2], I64),
            b_indices=tf.constant([[0, 1]], I64),
            b_values=v,
            b_shape=tf.constant([2, 2], I64),
        )

    _check_error(fn, [np.ones(1, np.float32)], "out of bounds")


def test_sparse_slice():
    i = np.array([[1, 0], [0, 1], [3, 2], [2, 2], [1, 1]], np.int64)
    words = np.array([b"a", b"b", b"c", b"d", b"e"], object)

    def fn(i, v, w):
        shape = tf.constant([4, 3], I64)
        out = {}
        for name, start, size in [
            ("mid", [1, 1], [2, 5]),
            ("past", [1, 5], [2, 2]),
            ("neg", [-1, 0], [3, 2]),
            ("all", [0, 0], [4, 3]),
        ]:
            s = R.SparseSlice(
                indices=i, values=v, shape=shape, start=tf.constant(start, I64), size=tf.constant(size, I64)
            )
            t = R.SparseSlice(
                indices=i, values=w, shape=shape, start=tf.constant(start, I64), size=tf.constant(size, I64)
            )
            out[name] = (s.output_indices, s.output_values, s.output_shape, t.output_values)
        return out

    _check(fn, [i, _values(5, np.float64), words])


def test_sparse_concat():
    def fn(i0, v0, i1, v1, w0, w1):
        out = {}
        for dim in (0, 1, -1):
            s = R.SparseConcat(
                indices=[i0, i1, i0],
                values=[v0, v1, v0],
                shapes=[tf.constant([2, 3], I64), tf.constant([2, 3], I64), tf.constant([2, 3], I64)],
                concat_dim=dim,
            )
            t = R.SparseConcat(
                indices=[i0, i1],
                values=[w0, w1],
                shapes=[tf.constant([2, 3], I64), tf.constant([2, 3], I64)],
                concat_dim=dim,
            )
            out[str(dim)] = (s.output_indices, s.output_values, s.output_shape, t.output_indices, t.output_values)
        return out

    i0, i1 = np.array([[1, 0], [0, 1], [0, 2]], np.int64), np.array([[0, 2], [1, 1]], np.int64)
    w0, w1 = np.array([b"a", b"b", b"c"], object), np.array([b"x", b"y"], object)
    _check(fn, [i0, _values(3, np.int32), i1, _values(2, np.int32, 1), w0, w1])
    _check(fn, [i0[:0], _values(0, np.int32), i1, _values(2, np.int32, 1), w0[:0], w1])

    def numbers(i0, v0, i1, v1):
        s = R.SparseConcat(
            indices=[i0, i1],
            values=[v0, v1],
            shapes=[tf.constant([2, 3, 1], I64), tf.constant([2, 4, 1], I64)],
            concat_dim=1,
        )
        return s.output_indices, s.output_values, s.output_shape

    _check(
        numbers,
        [
            np.array([[1, 2, 0], [0, 1, 0]], np.int64),
            _values(2, np.float32),
            np.array([[0, 3, 0]], np.int64),
            _values(1, np.float32),
        ],
        compiles=True,
    )


def test_sparse_concat_errors():
    def fn(v):
        return R.SparseConcat(
            indices=[tf.constant([[1, 0]], I64)] * 2,
            values=[v, v],
            shapes=[tf.constant([2, 3], I64), tf.constant([2, 4], I64)],
            concat_dim=0,
        )

    _check_error(fn, [np.ones(1, np.float32)], "must match")


def test_sparse_split():
    i = np.array([[1, 4], [0, 1], [3, 2], [0, 0], [2, 3]], np.int64)
    words = np.array([b"a", b"b", b"c", b"d", b"e"], object)

    def fn(i, v, w):
        out = {}
        for name, dim, num in [("d1n3", 1, 3), ("d0n2", 0, 2), ("neg", -1, 5), ("one", 0, 1)]:
            s = R.SparseSplit(split_dim=dim, indices=i, values=v, shape=tf.constant([4, 5], I64), num_split=num)
            t = R.SparseSplit(split_dim=dim, indices=i, values=w, shape=tf.constant([4, 5], I64), num_split=num)
            out[name] = (s.output_indices, s.output_values, s.output_shape, t.output_values)
        return out

    _check(fn, [i, _values(5, np.float32), words])
    _check(fn, [i[:0], _values(0, np.float32), words[:0]])


@pytest.mark.parametrize("index,num,match", [([0, 1], 3, "num_split"), ([1, 4], 2, "out of bounds")])
def test_sparse_split_errors(index, num, match):
    def fn(v):
        return R.SparseSplit(
            split_dim=1, indices=tf.constant([index], I64), values=v, shape=tf.constant([4, 2], I64), num_split=num
        )

    _check_error(fn, [np.ones(1, np.float32)], match)


@pytest.mark.parametrize("dtype", [np.float32, tf.bfloat16.as_numpy_dtype])
def test_sparse_mat_mul(dtype):
    def fn(a, b):
        return {
            "plain": R.SparseMatMul(a=a, b=b, a_is_sparse=True),
            "transposed": R.SparseMatMul(a=b, b=a, transpose_a=True, transpose_b=True, b_is_sparse=True),
        }

    a, b = _values(6, np.float32).reshape(2, 3), _values(12, np.float32, 1).reshape(3, 4)
    _check(fn, [a.astype(dtype), b.astype(dtype)], rtol=1e-5, compiles=True)


@pytest.mark.parametrize("vtype,wtype", [(np.int32, np.float32), (np.int64, np.int64), (np.int64, np.float64)])
def test_sparse_bincount(vtype, wtype):
    indices = np.array([[1, 0], [0, 1], [1, 2], [1, 1], [2, 0]], np.int64)
    values = np.array([4, 2, 4, -1, 7], vtype)  # -1 and 7 lie outside [0, size): ignored

    def fn(i, v, w, i1):
        out = {}
        for name, weights, binary in [
            ("counts", tf.zeros([0], wtype), False),
            ("weights", w, False),
            ("binary", w, True),
        ]:
            kw = dict(size=tf.constant(5, vtype), weights=weights, binary_output=binary)
            out[name] = R.SparseBincount(indices=i, values=v, dense_shape=tf.constant([3, 3], I64), **kw)
            out[name + "_1d"] = R.SparseBincount(
                indices=i1, values=tf.abs(v), dense_shape=tf.constant([5], I64), **kw
            )  # rank 1 rejects negative values
            out[name + "_empty"] = R.SparseBincount(
                indices=i[:0], values=v[:0], dense_shape=tf.constant([2, 3], I64), **dict(kw, weights=weights[:0])
            )
        return out

    _check(fn, [indices, values, _values(5, wtype), indices[:, 1:] + 1], compiles=True)


def test_sparse_bincount_errors():
    def fn(v):
        kw = dict(values=v, weights=tf.zeros([0]), size=5)
        return R.SparseBincount(indices=tf.constant([[5, 0]], I64), dense_shape=tf.constant([3, 3], I64), **kw)

    def rank1(v):
        kw = dict(values=v, weights=tf.zeros([0]), size=5)
        return R.SparseBincount(indices=tf.constant([[0]], I64), dense_shape=tf.constant([3], I64), **kw)

    _check_error(fn, [np.array([1], np.int32)], "out of bounds")
    _check_error(rank1, [np.array([-1], np.int32)], "non-negative", jit=False)


@pytest.mark.parametrize("wtype", [np.float32, np.int64])
def test_count_sparse_output(wtype):
    dense = np.array([[3, 1, 1], [0, 5, 3]], np.int64)
    sp_i = np.array([[1, 0], [0, 1], [1, 2], [2, 2]], np.int64)
    splits = np.array([0, 2, 2, 4], np.int64)
    flat = np.array([4, 2, 4, 0], np.int32)

    def fn(d, wd, si, v, w):
        out = {}
        for name, lengths, binary in [("plain", (-1, -1), False), ("min8", (8, -1), True), ("max3", (-1, 3), False)]:
            kw = dict(binary_output=binary, minlength=lengths[0], maxlength=lengths[1])
            none = tf.zeros([0], wtype)
            out[name + "_dense2"] = tuple(R.DenseCountSparseOutput(values=d, weights=wd, **kw))
            out[name + "_dense1"] = tuple(R.DenseCountSparseOutput(values=v, weights=none, **kw))
            out[name + "_empty"] = tuple(R.DenseCountSparseOutput(values=v[:0], weights=none, **kw))
            out[name + "_sparse"] = tuple(
                R.SparseCountSparseOutput(indices=si, values=v, dense_shape=tf.constant([3, 4], I64), weights=w, **kw)
            )
            out[name + "_sparse1"] = tuple(
                R.SparseCountSparseOutput(
                    indices=si[:, 1:], values=v, dense_shape=tf.constant([4], I64), weights=none, **kw
                )
            )
            out[name + "_ragged"] = tuple(
                R.RaggedCountSparseOutput(splits=tf.constant(splits), values=v, weights=w, **kw)
            )
        return out

    _check(fn, [dense, _values(6, wtype).reshape(2, 3), sp_i, flat, _values(4, wtype, 1)])


@pytest.mark.parametrize("case", ["negative", "rank3", "splits"])
def test_count_sparse_output_errors(case):
    def fn(v):
        if case == "splits":
            kw = dict(values=v, weights=tf.zeros([0]), binary_output=False)
            return tuple(R.RaggedCountSparseOutput(splits=tf.constant([0, 3], I64), **kw))
        return tuple(R.DenseCountSparseOutput(values=v, weights=tf.zeros([0]), binary_output=False))

    v = {"negative": np.array([1, -1]), "rank3": np.zeros((1, 1, 1), np.int64), "splits": np.array([1, 2])}[case]
    _check_error(fn, [v], {"negative": "non-negative", "rank3": "1 or 2-dimensional", "splits": "splits"}[case])


@pytest.mark.parametrize("ids_dtype,dtype", [(np.int32, np.float32), (np.int64, np.float64)])
def test_sparse_segment_grads(ids_dtype, dtype):
    grad = _values(6, dtype).reshape(3, 2)
    indices = np.array([4, 0, 4, 1, 1], ids_dtype)
    segment_ids = np.array([2, 0, 0, 2, 2], ids_dtype)  # unsorted, segment 1 empty

    def fn(g, i, s, g1):
        out = {}
        for kind in ("Sum", "Mean", "SqrtN"):
            v1, v2 = getattr(R, f"SparseSegment{kind}Grad"), getattr(R, f"SparseSegment{kind}GradV2")
            out[kind] = v1(grad=g, indices=i, segment_ids=s, output_dim0=6)
            out[kind + "_1d"] = v1(grad=g1, indices=i, segment_ids=s, output_dim0=5)
            out[kind + "V2"] = tuple(v2(grad=g, indices=i, segment_ids=s, dense_output_dim0=6))
        return out

    _check(fn, [grad, indices, segment_ids, _values(3, dtype, 1)], rtol=1e-6)


def test_sparse_segment_grads_compile():
    def fn(g, i, s):
        return R.SparseSegmentSqrtNGrad(grad=g, indices=i, segment_ids=s, output_dim0=6)

    _check(
        fn,
        [_values(6, np.float32).reshape(3, 2), np.array([4, 0, 4], np.int32), np.array([0, 0, 2], np.int32)],
        compiles=True,
    )


@pytest.mark.parametrize(
    "indices,segment_ids,match",
    [([9, 0], [0, 0], "out of range"), ([-1, 0], [0, 0], "out of range"), ([1, 0], [0, 3], "number of segments")],
)
def test_sparse_segment_grad_errors(indices, segment_ids, match):
    def fn(g):
        i, s = tf.constant(indices), tf.constant(segment_ids)
        return R.SparseSegmentMeanGrad(grad=g, indices=i, segment_ids=s, output_dim0=6)

    _check_error(fn, [np.ones((3, 2), np.float32)], match)


def test_sparse_add_grad():
    a_i = np.array([[0, 0], [1, 1], [2, 2]], np.int64)
    b_i = np.array([[0, 0], [0, 1], [2, 2], [3, 0]], np.int64)

    def fn(ai, av, bi, bv, g):
        shape = tf.constant([4, 4], I64)
        kw = dict(a_indices=ai, a_values=av, a_shape=shape, b_indices=bi, b_values=bv, b_shape=shape)
        total = R.SparseAdd(thresh=tf.constant(1.0), **kw)  # (0, 0) cancels out and is dropped
        grad = g[: tf.shape(total.sum_values)[0]]
        return tuple(R.SparseAddGrad(backprop_val_grad=grad, a_indices=ai, b_indices=bi, sum_indices=total.sum_indices))

    av, bv = np.array([1, 2, 3], np.float32), np.array([-1, 4, 5, 6], np.float32)
    _check(fn, [a_i, av, b_i, bv, _values(6, np.float32)])
    _check(fn, [a_i[:0], av[:0], b_i, bv, _values(6, np.float32)])


def test_sparse_fill_empty_rows_grad():
    def fn(m, g):
        out = R.SparseFillEmptyRowsGrad(reverse_index_map=m, grad_values=g)
        empty = R.SparseFillEmptyRowsGrad(reverse_index_map=m[:0], grad_values=g)
        return out.d_values, out.d_default_value, empty.d_values, empty.d_default_value

    _check(fn, [np.array([0, 2, 3], np.int64), _values(5, np.float64)], compiles=True)
    _check_error(
        lambda m: tuple(R.SparseFillEmptyRowsGrad(reverse_index_map=m, grad_values=[1.0, 2.0])),
        [np.array([0, 7], np.int64)],
        "reverse index",
        jit=False,
    )


def test_sparse_slice_grad():
    i = np.array([[0, 0], [1, 1], [2, 2], [3, 0], [1, 2]], np.int64)

    def fn(i, v, g):
        out = R.SparseSlice(
            indices=i,
            values=v,
            shape=tf.constant([4, 3], I64),
            start=tf.constant([1, 1], I64),
            size=tf.constant([2, 2], I64),
        )
        grad = g[: tf.shape(out.output_values)[0]]
        return R.SparseSliceGrad(
            backprop_val_grad=grad,
            input_indices=i,
            input_start=tf.constant([1, 1], I64),
            output_indices=out.output_indices,
        )

    _check(fn, [i, _values(5, np.float32), _values(5, np.float32, 1)])

    def unmatched(g):
        return R.SparseSliceGrad(
            backprop_val_grad=g,
            input_indices=tf.constant(i),
            input_start=tf.constant([1, 0], I64),
            output_indices=tf.constant([[0, 1], [5, 2]], I64),
        )

    _check_error(unmatched, [np.ones(2, np.float32)], "propagated")


def test_sparse_slice_errors():
    def fn(v):
        i, shape = tf.constant([[1, 0]], I64), tf.constant([4, 3], I64)
        return tuple(R.SparseSlice(indices=i, values=v, shape=shape, start=tf.constant([0, 0], I64), size=[-1, 2]))

    _check_error(fn, [np.ones(1, np.float32)], "non-negative size")
