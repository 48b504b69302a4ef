"""Ragged ops against TF: tf.ragged.range, gather, to_sparse, fill_empty_rows (and its gradient), cross, and the
variant encoding of tf.map_fn over ragged tensors. Ragged inputs are built inside the function from flat values
and row splits."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import jaxsm  # noqa: E402
from jaxsm.errors import JaxsmError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

R = tf.raw_ops

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")


def _rt(values, *splits):
    return tf.RaggedTensor.from_nested_row_splits(values, list(splits), validate=False)


def _parts(rt):
    if not isinstance(rt, tf.RaggedTensor):  # a scalar index gathers one row
        return {"values": rt}
    return {"values": rt.flat_values, **{f"splits{i}": s for i, s in enumerate(rt.nested_row_splits)}}


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "starts,limits,deltas,dtype",
    [
        ([0, 5, 2], [3, 0, 9], [1, -2, 3], np.int32),
        (2, [3, 7, -1, 2], 2, np.int64),
        ([0.5, 1.0], 3.25, [0.1, 0.7], np.float32),
        (0.0, 1.0, 0.1, np.float64),
        ([], [], [], np.int64),
        ([-3], [3], [-1], np.int32),
    ],
    ids=str,
)
@pytest.mark.parametrize("splits", [tf.int32, tf.int64])
def test_ragged_range(starts, limits, deltas, dtype, splits, jit):
    def fn(s, lim, d):
        out = R.RaggedRange(starts=s, limits=lim, deltas=d, Tsplits=splits)
        return {"splits": out.rt_nested_splits, "values": out.rt_dense_values}

    assert_matches_tf(fn, [np.asarray(v, dtype) for v in (starts, limits, deltas)], jit=jit)


def test_ragged_range_errors():
    def fn(s, lim, d):
        return tf.ragged.range(s, lim, d).flat_values

    inputs = [np.array([0, 1], np.int32), np.array([3, 4], np.int32), np.array([1, 0], np.int32)]
    export_dir, tf_fn = save_function(fn, inputs)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(*inputs)
    with pytest.raises(JaxsmError, match="delta != 0"):
        run_jaxsm(export_dir, inputs)


_PARAMS = (np.arange(12, dtype=np.float32).reshape(6, 2), [0, 2, 2, 5, 6])


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("indices", [[2, 0, 1, 2], [[3, 0], [1, 1]], 2, np.zeros((0,)), np.zeros((2, 0))], ids=str)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_ragged_gather(indices, index_dtype, jit):
    def fn(values, splits, idx):
        return _parts(tf.gather(_rt(values, splits), idx))

    values, splits = _PARAMS
    assert_matches_tf(fn, [values, np.asarray(splits, np.int64), np.asarray(indices, index_dtype)], jit=jit)


@pytest.mark.parametrize("jit", [True, False])
def test_ragged_gather_nested_strings(jit):
    def fn(values, outer, inner, idx):
        return _parts(tf.gather(_rt(values, outer, inner), idx))

    values = np.array([b"a", b"bc", b"", b"d", b"ef"], object)
    outer, inner = np.array([0, 1, 3, 3], np.int32), np.array([0, 2, 2, 5], np.int32)
    assert_matches_tf(fn, [values, outer, inner, np.array([1, 2, 0, 1], np.int64)], jit=jit)


@pytest.mark.parametrize("index", [-1, 4])
def test_ragged_gather_errors(index):
    def fn(values, splits, idx):
        out = R.RaggedGather(
            params_nested_splits=[splits], params_dense_values=values, indices=idx, OUTPUT_RAGGED_RANK=1
        )
        return out.output_dense_values

    inputs = [_PARAMS[0], np.asarray(_PARAMS[1], np.int64), np.array([0, index], np.int32)]
    export_dir, tf_fn = save_function(fn, inputs)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(*inputs)
    with pytest.raises(JaxsmError, match="not in"):
        run_jaxsm(export_dir, inputs)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "values,splits",
    [
        (np.arange(6, dtype=np.float32), [[0, 2, 2, 6]]),
        (np.arange(12, dtype=np.int32).reshape(4, 3), [[0, 0, 1, 4]]),
        (np.array([1.5, -2.0, np.nan, np.inf], np.float64), [[0, 1, 3], [0, 2, 2, 4]]),
        (np.zeros((0, 2), np.int64), [[0, 0, 0]]),
        (np.array([b"x", b"yz"], object), [[0, 2], [0, 0, 2]]),
    ],
    ids=["flat", "inner-dims", "nested", "empty", "strings"],
)
def test_ragged_to_sparse(values, splits, jit):
    def fn(v, *s):
        st = _rt(v, *s).to_sparse()
        return {"indices": st.indices, "values": st.values, "shape": st.dense_shape}

    assert_matches_tf(fn, [values, *(np.asarray(s, np.int64) for s in splits)], jit=jit)


@pytest.mark.parametrize("splits", [[0, 2, 1, 3], [1, 2, 3], [0, 1, 4]], ids=["unsorted", "not-from-0", "past-end"])
def test_ragged_to_sparse_invalid_splits(splits):
    def fn(values, s):
        return R.RaggedTensorToSparse(rt_nested_splits=[s], rt_dense_values=values).sparse_indices

    inputs = [np.arange(3, dtype=np.float32), np.asarray(splits, np.int64)]
    export_dir, tf_fn = save_function(fn, inputs)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(*inputs)
    with pytest.raises(JaxsmError, match="splits"):
        run_jaxsm(export_dir, inputs)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "values,splits,default",
    [
        (np.array([1.0, 2.0, 3.0], np.float32), [0, 0, 2, 2, 3, 3], 9.0),
        (np.array([4, 5], np.int64), [0, 1, 2], -1),
        (np.zeros(0, np.int32), [0, 0, 0], 7),
        (np.array([b"a", b"b"], object), [0, 0, 2, 2], b"zz"),
    ],
    ids=["float", "none-empty", "all-empty", "strings"],
)
def test_ragged_fill_empty_rows(values, splits, default, jit):
    def fn(v, s):
        rt = _rt(v, s)
        out = R.RaggedFillEmptyRows(
            value_rowids=rt.value_rowids(), values=rt.values, nrows=rt.nrows(), default_value=default
        )
        return dict(zip(["rowids", "values", "empty", "reverse"], out))

    assert_matches_tf(fn, [values, np.asarray(splits, np.int64)], jit=jit)


@pytest.mark.parametrize("rowids", [[2, 0, 0], [0, 3]], ids=["unsorted", "out-of-range"])
def test_ragged_fill_empty_rows_invalid(rowids):
    """TF's kernel accepts unsorted rowids as SparseFillEmptyRows does, and rejects rows outside [0, nrows)."""

    def fn(r, v):
        out = R.RaggedFillEmptyRows(value_rowids=r, values=v, nrows=tf.constant(3, tf.int64), default_value=0.0)
        return dict(zip(["rowids", "values", "empty", "reverse"], out))

    inputs = [np.asarray(rowids, np.int64), np.arange(len(rowids), dtype=np.float32)]
    export_dir, tf_fn = save_function(fn, inputs)
    try:
        tf_fn(*inputs)
    except tf.errors.InvalidArgumentError:
        with pytest.raises(JaxsmError):
            run_jaxsm(export_dir, inputs)
    else:
        assert_matches_tf(fn, inputs)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ragged_fill_empty_rows_grad(dtype, jit):
    def fn(rim, g):
        out = R.RaggedFillEmptyRowsGrad(reverse_index_map=rim, grad_values=g)
        return {"d_values": out.d_values, "d_default": out.d_default_value}

    grads = np.array([1.0, 2.0, 4.0, 8.0, 16.0], dtype)
    assert_matches_tf(fn, [np.array([0, 2, 3], np.int64), grads], jit=jit)
    assert_matches_tf(fn, [np.zeros(0, np.int64), grads[:2]], jit=jit)


def _cross_inputs():
    ragged = _rt(tf.constant([b"a", b"b", b"c"]), tf.constant([0, 2, 2, 3], tf.int64))
    sparse = tf.SparseTensor([[0, 0], [2, 0], [2, 1]], tf.constant([7, 8, 9], tf.int64), [3, 2])
    return ragged, sparse


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("hashed", [False, True])
def test_ragged_cross(hashed, jit):
    def fn(dense, ints):
        ragged, sparse = _cross_inputs()
        ints_rt = _rt(ints, tf.constant([0, 1, 3, 4], tf.int64))  # TF aborts on mixed splits dtypes
        inputs = [ragged, dense, sparse, ints_rt]
        out = tf.ragged.cross_hashed(inputs, num_buckets=0, hash_key=17) if hashed else tf.ragged.cross(inputs)
        if hashed:
            out2 = tf.ragged.cross_hashed([dense, ints_rt], num_buckets=10)
            return {**_parts(out), "bucketed": out2.flat_values, "splits_b": out2.row_splits}
        return _parts(out)

    dense = np.array([[b"x", b"y"], [b"z", b"w"], [b"v", b"u"]], object)
    assert_matches_tf(fn, [dense, np.array([5, -6, 7, 8], np.int64)], jit=jit)


def test_ragged_cross_batch_mismatch():
    def fn(dense):
        ragged, _ = _cross_inputs()
        return tf.ragged.cross([ragged, dense]).flat_values

    dense = np.array([[1], [2]], np.int64)
    export_dir, tf_fn = save_function(fn, [dense], shapes=[[None, 1]])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(dense)
    with pytest.raises(JaxsmError, match="batch"):
        run_jaxsm(export_dir, [dense])


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "values,splits",
    [
        (np.arange(5, dtype=np.float32), [[0, 2, 2, 5]]),
        (np.arange(10, dtype=np.int64).reshape(5, 2), [[0, 1, 3, 3], [0, 2, 2, 5]]),
        (np.array([b"a", b"bc", b"d"], object), [[0, 2, 3, 3]]),
    ],
    ids=["rank1", "nested", "strings"],
)
@pytest.mark.parametrize("splits_dtype", [np.int32, np.int64])
def test_ragged_variant_round_trip(values, splits, splits_dtype, jit):
    """RaggedTensorToVariant (batched and not) and RaggedTensorFromVariant, as tf.map_fn's encoding uses them."""

    def fn(v, *s):
        batched = R.RaggedTensorToVariant(rt_nested_splits=list(s), rt_dense_values=v, batched_input=True)
        scalar = R.RaggedTensorToVariant(rt_nested_splits=list(s), rt_dense_values=v, batched_input=False)
        row = R.RaggedTensorFromVariant(
            encoded_ragged=batched[1],
            input_ragged_rank=-1,
            output_ragged_rank=len(s) - 1,
            Tvalues=v.dtype,
            Tsplits=s[0].dtype,
        )
        stacked = R.RaggedTensorFromVariant(
            encoded_ragged=tf.gather(batched, [2, 0, 1]),
            input_ragged_rank=len(s) - 1,
            output_ragged_rank=len(s),
            Tvalues=v.dtype,
            Tsplits=s[0].dtype,
        )
        same = R.RaggedTensorFromVariant(
            encoded_ragged=scalar,
            input_ragged_rank=len(s),
            output_ragged_rank=len(s),
            Tvalues=v.dtype,
            Tsplits=s[0].dtype,
        )
        grid = R.RaggedTensorFromVariant(
            encoded_ragged=tf.reshape(tf.gather(batched, [0, 1, 2, 0]), [2, 2]),
            input_ragged_rank=-1,
            output_ragged_rank=len(s) + 1,
            Tvalues=v.dtype,
            Tsplits=s[0].dtype,
        )
        return {"row": list(row), "stacked": list(stacked), "same": list(same), "grid": list(grid)}

    assert_matches_tf(fn, [values, *(np.asarray(s, splits_dtype) for s in splits)], jit=jit)


@pytest.mark.parametrize("jit", [True, False])
def test_map_fn_over_ragged_rows(jit):
    """tf.map_fn over a ragged tensor's rows, returning numbers and ragged rows (RaggedTensorToVariant ->
    TensorListFromTensor -> body -> TensorListStack -> RaggedTensorFromVariant)."""

    def fn(values, splits):
        rt = _rt(values, splits)
        sums = tf.map_fn(tf.reduce_sum, rt, fn_output_signature=tf.float32)
        spec = tf.RaggedTensorSpec([None], tf.float32, ragged_rank=0)
        doubled = tf.map_fn(lambda r: r * 2.0 + 1.0, rt, fn_output_signature=spec)
        return {"sums": sums, **_parts(doubled)}

    assert_matches_tf(fn, [np.arange(5, dtype=np.float32), np.array([0, 2, 2, 5], np.int64)], jit=jit)


@pytest.mark.parametrize("jit", [True, False])
def test_ragged_variant_gradient(jit):
    def fn(grads, splits):
        encoded = R.RaggedTensorToVariant(rt_nested_splits=[splits], rt_dense_values=grads, batched_input=True)
        return R.RaggedTensorToVariantGradient(
            encoded_ragged_grad=encoded, row_splits=splits, dense_values_shape=tf.shape(grads), Tvalues=grads.dtype
        )

    assert_matches_tf(fn, [np.arange(10, dtype=np.float32).reshape(5, 2), np.array([0, 2, 2, 5], np.int64)], jit=jit)


def test_ragged_input_signature(tmp_path):
    """A SavedModel whose signature takes a tf.RaggedTensorSpec and maps over its rows, returning ragged rows."""
    spec = tf.RaggedTensorSpec([None, None], tf.float32, ragged_rank=1, row_splits_dtype=tf.int64)
    out_spec = tf.RaggedTensorSpec([None], tf.float32, ragged_rank=0)
    module = tf.Module()
    module.f = tf.function(
        lambda rt: tf.map_fn(lambda r: tf.sort(r) - tf.reduce_min(r), rt, fn_output_signature=out_spec),
        input_signature=[spec],
    )
    tf.saved_model.save(module, str(tmp_path))
    rt = tf.RaggedTensor.from_row_splits(np.array([3, 1, 2, 7, 5], np.float32), np.array([0, 3, 3, 5], np.int64))
    expected = module.f(rt)
    got = jaxsm.load(str(tmp_path)).f(rt)
    np.testing.assert_array_equal(np.asarray(got.flat_values), expected.flat_values.numpy(), err_msg="values")
    np.testing.assert_array_equal(np.asarray(got.row_splits), expected.row_splits.numpy(), err_msg="row_splits")


def test_constant_splits_compile():
    """Splits and indices known at trace time: the ops compile with run-time values (no op-by-op fallback)."""
    import warnings

    from jaxsm.errors import EagerFallbackWarning

    def fn(values, default):
        rt = _rt(values, tf.constant([0, 2, 2, 5], tf.int64))
        st = tf.gather(rt, [2, 0]).to_sparse()
        filled = R.RaggedFillEmptyRows(
            value_rowids=rt.value_rowids(), values=rt.values, nrows=rt.nrows(), default_value=default
        )
        return {"indices": st.indices, "values": st.values, "filled": list(filled)}

    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerFallbackWarning)
        assert_matches_tf(fn, [np.arange(5, dtype=np.float32) * 1.5, np.float32(-1)])


@pytest.mark.parametrize("batched,in_rank,out_rank", [(True, 1, 2), (False, 0, 0)], ids=["rows", "scalar"])
def test_ragged_from_variant_errors(batched, in_rank, out_rank):
    """The variant's elements have a different ragged rank than input_ragged_rank says."""

    def fn(v, s):
        encoded = R.RaggedTensorToVariant(rt_nested_splits=[s], rt_dense_values=v, batched_input=batched)
        out = R.RaggedTensorFromVariant(
            encoded_ragged=encoded,
            input_ragged_rank=in_rank,
            output_ragged_rank=out_rank,
            Tvalues=tf.float32,
            Tsplits=tf.int64,
        )
        return out.output_dense_values

    inputs = [np.arange(3, dtype=np.float32), np.array([0, 1, 3], np.int64)]
    export_dir, tf_fn = save_function(fn, inputs)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(*inputs)
    with pytest.raises(JaxsmError, match="ragged_rank|ragged rank"):
        run_jaxsm(export_dir, inputs)
