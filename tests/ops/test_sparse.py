"""SparseTensor ops against TF: SparseReshape and SparseFillEmptyRows (feature columns' embedding lookups use
them), with numeric and string values, unsorted indices and empty inputs."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import JaxsmError  # noqa: E402
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
