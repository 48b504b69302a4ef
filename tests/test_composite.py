"""RaggedTensor and SparseTensor inputs and outputs of restored functions (jaxsm/composite.py), against TF."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import jax  # noqa: E402

import jaxsm  # noqa: E402
from jaxsm.errors import FunctionMatchError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")


class _Module(tf.Module):
    def __init__(self):
        self.v = tf.Variable([1.0, 2.0, 3.0])

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.float32)])
    def row_sums(self, r):
        return tf.reduce_sum(r, axis=1)

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None, None], tf.int32, ragged_rank=2)])
    def scale_nested(self, r):
        return {"scaled": r * 3, "rows": r.row_lengths()}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.int64)])
    def make_ragged(self, values, lengths):
        return tf.RaggedTensor.from_row_lengths(values * self.v[0], lengths)

    @tf.function(input_signature=[tf.SparseTensorSpec([None, 3], tf.float32)])
    def sparse_in(self, s):
        return tf.sparse.to_dense(s) * self.v

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def sparse_out(self, x):
        return tf.sparse.from_dense(x * self.v)

    @tf.function
    def poly(self, x):
        if isinstance(x, tf.RaggedTensor):
            return tf.reduce_sum(x.flat_values)
        return tf.reduce_sum(x) * 10


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    m = _Module()
    m.poly(tf.constant([1.0, 2.0]))
    m.poly(tf.ragged.constant([[1.0], [2.0, 3.0]]))
    path = str(tmp_path_factory.mktemp("composite") / "m")
    tf.saved_model.save(m, path)
    return tf.saved_model.load(path), jaxsm.load(path)


def _same(got, want, what):
    if isinstance(want, tf.RaggedTensor):
        assert isinstance(got, jaxsm.RaggedTensor), f"{what}: got {type(got).__name__}"
        assert got.to_list() == want.to_list(), what
        for i, (g, w) in enumerate(zip(got.nested_row_splits, want.nested_row_splits, strict=True)):
            np.testing.assert_array_equal(np.asarray(g), w.numpy(), err_msg=f"{what}: row_splits {i}")
    elif isinstance(want, tf.SparseTensor):
        assert isinstance(got, jaxsm.SparseTensor), f"{what}: got {type(got).__name__}"
        for k in ("indices", "values", "dense_shape"):
            np.testing.assert_array_equal(np.asarray(getattr(got, k)), getattr(want, k).numpy(), err_msg=f"{what}.{k}")
        np.testing.assert_array_equal(got.to_dense(), tf.sparse.to_dense(want).numpy(), err_msg=f"{what} dense")
    elif isinstance(want, dict):
        assert set(got) == set(want), what
        for k in want:
            _same(got[k], want[k], f"{what}[{k}]")
    else:
        np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-6, err_msg=what)


def test_ragged_inputs_and_outputs(saved):
    t, j = saved
    r = tf.ragged.constant([[1.0, 2.0], [], [3.0, 4.0, 5.0]])
    _same(j.row_sums(r), t.row_sums(r), "row_sums(tf.RaggedTensor)")
    mine = jaxsm.RaggedTensor(r.flat_values.numpy(), [r.row_splits.numpy()])
    _same(j.row_sums(mine), t.row_sums(r), "row_sums(jaxsm.RaggedTensor)")
    r2 = tf.ragged.constant([[[1, 2], [3]], [], [[4], [], [5, 6, 7]]], ragged_rank=2)
    _same(j.scale_nested(r2), t.scale_nested(r2), "scale_nested")
    values, lengths = np.arange(5, dtype=np.float32), np.array([2, 0, 3], np.int64)
    _same(j.make_ragged(values, lengths), t.make_ragged(values, lengths), "make_ragged")


def test_sparse_inputs_and_outputs(saved):
    t, j = saved
    s = tf.sparse.SparseTensor([[0, 1], [2, 2]], [5.0, -6.0], [3, 3])
    _same(j.sparse_in(s), t.sparse_in(s), "sparse_in(tf.SparseTensor)")
    mine = jaxsm.SparseTensor(s.indices.numpy(), s.values.numpy(), s.dense_shape.numpy())
    _same(j.sparse_in(mine), t.sparse_in(s), "sparse_in(jaxsm.SparseTensor)")
    x = np.array([[0, 1, 0], [2, 0, 3]], np.float32)
    _same(j.sparse_out(x), t.sparse_out(x), "sparse_out")


def test_dispatch_between_ragged_and_dense(saved):
    t, j = saved
    r = tf.ragged.constant([[1.0, 7.0, 8.0], [2.0, 3.0]])
    _same(j.poly(r), t.poly(r), "poly(ragged)")
    with pytest.raises(FunctionMatchError):  # three rows: the traced spec has two, TF refuses it too
        j.poly(tf.ragged.constant([[1.0], [2.0], [3.0]]))
    x = np.array([1.0, 5.0], np.float32)
    _same(j.poly(x), t.poly(x), "poly(dense)")
    with pytest.raises(FunctionMatchError):
        j.row_sums(np.ones((2, 2), np.float32))  # a dense tensor does not fit a ragged_rank-1 spec


def test_composites_are_pytrees_under_jit(saved):
    t, j = saved
    values, lengths = np.arange(5, dtype=np.float32), np.array([2, 0, 3], np.int64)
    out = jax.jit(lambda v, n: j.make_ragged(v, n))(values, lengths)
    _same(out, t.make_ragged(values, lengths), "jit(make_ragged)")
    leaves = jax.tree_util.tree_leaves(jaxsm.SparseTensor(np.zeros((1, 2)), np.ones(1), np.array([2, 2])))
    assert len(leaves) == 3, "SparseTensor flattens to its three components"


def test_other_composites_are_reported(tmp_path):
    m = tf.Module()
    m.f = tf.function(lambda s: s.values * 2, input_signature=[tf.IndexedSlicesSpec([4, 2], tf.float32)])
    tf.saved_model.save(m, str(tmp_path))
    with pytest.raises(FunctionMatchError, match="IndexedSlices|INDEXED_SLICES"):
        jaxsm.load(str(tmp_path)).f(np.ones((1, 2), np.float32))
