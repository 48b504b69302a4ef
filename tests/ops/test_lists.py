"""TensorList ops (what tf.TensorArray lowers to inside tf.functions), against TF."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from jaxsm.errors import JaxsmError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

raw = tf.raw_ops


def _ta_methods(x):
    n = tf.shape(x)[0]
    ta = tf.TensorArray(tf.float32, size=n, element_shape=x.shape[1:])
    ta = ta.scatter(tf.range(n - 1, -1, -1), x)  # TensorListScatterIntoExistingList
    gathered = ta.gather([0, 2])  # TensorListGather
    ta2 = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
    ta2 = ta2.split(tf.reshape(x, [-1]), lengths=[2] * 6)  # TensorListSplit
    return ta.stack(), gathered, ta.size(), ta2.concat(), ta2.read(3)


def _push_pop(x):
    lst = raw.EmptyTensorList(element_shape=[2], max_num_elements=-1, element_dtype=tf.float32)
    for i in range(3):
        lst = raw.TensorListPushBack(input_handle=lst, tensor=x[i])
    lst, last = raw.TensorListPopBack(input_handle=lst, element_shape=[2], element_dtype=tf.float32)
    length = raw.TensorListLength(input_handle=lst)
    shape = raw.TensorListElementShape(input_handle=lst, shape_type=tf.int32)
    stacked = raw.TensorListStack(input_handle=lst, element_shape=[2], element_dtype=tf.float32)
    resized = raw.TensorListResize(input_handle=lst, size=4)
    return (
        last,
        length,
        shape,
        stacked,
        raw.TensorListStack(input_handle=resized, element_shape=[2], element_dtype=tf.float32),
    )


def _from_tensor(x):
    lst = raw.TensorListFromTensor(tensor=x, element_shape=[2])
    lst = raw.TensorListSetItem(input_handle=lst, index=1, item=x[0] * 10.0)
    item = raw.TensorListGetItem(input_handle=lst, index=2, element_shape=[2], element_dtype=tf.float32)
    scattered = raw.TensorListScatterV2(tensor=x[:2], indices=[3, 0], element_shape=[2], num_elements=4)
    concat, lengths = raw.TensorListConcatV2(
        input_handle=lst, element_shape=[2], leading_dims=tf.zeros([0], tf.int64), element_dtype=tf.float32
    )
    return item, raw.TensorListStack(input_handle=scattered, element_shape=[2], element_dtype=tf.float32), concat


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("fn", [_ta_methods, _push_pop, _from_tensor], ids=["ta_methods", "push_pop", "from_tensor"])
def test_tensor_lists(fn, jit):
    assert_matches_tf(fn, [np.arange(12, dtype=np.float32).reshape(6, 2)], jit=jit)


@pytest.mark.parametrize("index", [-1, 3, 1])
def test_list_indices_out_of_range(index):
    """TensorList reads and writes outside [0, size) raise in TF, negative ones too: jaxsm raises for an index
    known at trace time and never wraps a run-time one (reads give zeros, writes are dropped; gaps table)."""
    R = tf.raw_ops
    shape = tf.constant([], tf.int32)

    def fn(x, i):
        lst = R.TensorListFromTensor(tensor=x, element_shape=shape)
        got = R.TensorListGetItem(input_handle=lst, index=i, element_shape=shape, element_dtype=tf.float32)
        put = R.TensorListSetItem(input_handle=lst, index=i, item=tf.constant(9.0))
        gathered = R.TensorListGather(
            input_handle=lst, indices=tf.stack([i, 0]), element_shape=shape, element_dtype=tf.float32
        )
        return got, R.TensorListStack(input_handle=put, element_shape=shape, element_dtype=tf.float32), gathered

    x = np.array([1.0, 2.0, 3.0], np.float32)
    export_dir, tf_fn = save_function(fn, [x, np.int32(index)])
    if index == 1:
        assert_matches_tf(fn, [x, np.int32(index)])
        return
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(x, np.int32(index))
    with pytest.raises(JaxsmError, match=f"element {index}"):  # op by op: the index is known
        run_jaxsm(export_dir, [x, np.int32(index)], jit=False)
    got, put, gathered = run_jaxsm(export_dir, [x, np.int32(index)])  # compiled: a run-time index
    assert float(got) == 0.0 and list(np.asarray(gathered)) == [0.0, 1.0], "out-of-range reads give zeros"
    np.testing.assert_array_equal(np.asarray(put), x, err_msg="an out-of-range write changes nothing")
