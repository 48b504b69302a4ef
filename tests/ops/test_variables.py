"""Resource-variable ops: reads, assignments, sparse reads and scatters (incl. duplicate indices), against TF."""

import warnings

import numpy as np
import pytest

import jaxsm

tf = pytest.importorskip("tensorflow")

OPS = [
    "scatter_update",
    "scatter_add",
    "scatter_sub",
    "scatter_mul",
    "scatter_div",
    "scatter_min",
    "scatter_max",
    "scatter_nd_update",
    "scatter_nd_add",
    "scatter_nd_sub",
    "scatter_nd_max",
    "scatter_nd_min",
]


@pytest.mark.parametrize("name", OPS)
def test_scatter_ops_update_state_like_tf(name, tmp_path):
    init = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    nd = name.startswith("scatter_nd")

    class M(tf.Module):
        def __init__(self):
            self.v = tf.Variable(init)

        @tf.function(input_signature=[tf.TensorSpec([2, 3], tf.float32)])
        def f(self, u):
            if nd:
                getattr(self.v, name)([[1], [1]], u)  # duplicate rows accumulate
            else:
                getattr(self.v, name)(tf.IndexedSlices(u, tf.constant([2, 2])))
            return tf.gather(self.v, [0, 2]), self.v.sparse_read([3]), self.v.read_value()

    m = M()
    tf.saved_model.save(m, str(tmp_path))
    ours = jaxsm.load(str(tmp_path))
    u = np.array([[2, 3, 4], [5, 6, 7]], np.float32)
    for step in range(2):  # the second call must see the first call's update
        want = [t.numpy() for t in m.f(tf.constant(u))]
        got = [np.asarray(t) for t in ours.f(u)]
        if name == "scatter_update" or name == "scatter_nd_update":
            # TF leaves the winner among duplicate indices unspecified; compare the untouched rows only
            keep = [0, 1, 3] if not nd else [0, 2, 3]
            np.testing.assert_array_equal(got[2][keep], want[2][keep], err_msg=f"{name} step {step}")
            continue
        for g, w, what in zip(got, want, ("gather", "sparse_read", "value")):
            np.testing.assert_allclose(g, w, rtol=1e-6, err_msg=f"{name} {what} step {step}")
    np.testing.assert_allclose(np.asarray(ours.v.numpy())[[0, 3]], m.v.numpy()[[0, 3]], err_msg="variable")


def _save_and_load(module, path):
    tf.saved_model.save(module, str(path))
    return jaxsm.load(str(path))


def test_strided_slice_assign_like_tf(tmp_path):
    """``v[...].assign``: static slices with strides, negative and new-axis entries, and run-time single
    indices inside a loop (a decoding cache written one step at a time), compiled."""

    class M(tf.Module):
        def __init__(self):
            self.v = tf.Variable(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
            self.cache = tf.Variable(tf.zeros([2, 5, 3]))

        @tf.function(input_signature=[tf.TensorSpec([2, 5, 3], tf.float32), tf.TensorSpec([], tf.int32)])
        def f(self, x, n):
            self.v[:, 1:, ::2].assign(tf.ones([2, 2, 2]) * 7.0)
            self.v[-1, ..., tf.newaxis, -1].assign([[-1.0], [-2.0], [-3.0]])
            self.v[0, 0].assign(5.0)  # broadcast
            for i in tf.range(n):
                self.cache[:, i].assign(x[:, i] * tf.cast(i + 1, tf.float32))
                self.cache[:, i - 5, 0].assign(tf.reduce_sum(x[:, i], axis=-1))  # negative run-time index
            return self.v.read_value(), self.cache.read_value()

    m = M()
    ours = _save_and_load(m, tmp_path)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    for n in (3, 5):  # state carries over between calls
        want = [t.numpy() for t in m.f(tf.constant(x), tf.constant(n))]
        with warnings.catch_warnings():
            warnings.simplefilter("error", jaxsm.errors.EagerFallbackWarning)
            got = [np.asarray(t) for t in ours.f(x, np.int32(n))]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-6)


def test_tensor_strided_slice_update_with_run_time_index(tmp_path):
    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([3, 4], tf.float32), tf.TensorSpec([], tf.int32)])
        def f(self, x, i):
            return tf.raw_ops.TensorStridedSliceUpdate(
                input=x,
                begin=tf.stack([i, 0]),
                end=tf.stack([i + 1, 0]),
                strides=[1, 1],
                value=tf.ones([4]) * 9.0,
                begin_mask=2,
                end_mask=2,
                shrink_axis_mask=1,
            )

    m = M()
    ours = _save_and_load(m, tmp_path)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    for i in (0, 2, -1):
        with warnings.catch_warnings():
            warnings.simplefilter("error", jaxsm.errors.EagerFallbackWarning)
            got = np.asarray(ours.f(x, np.int32(i)))
        np.testing.assert_array_equal(got, m.f(x, i).numpy(), err_msg=f"i={i}")


def test_negative_indices_are_out_of_range(tmp_path):
    """TF's CPU kernels reject negative indices in variable gathers and scatters; a compiled function cannot
    raise, so jaxsm treats them as out of range (gathers give zeros, scatters drop: the gaps table) -- never
    NumPy's wrap-around, which would read or update the last row. Valid indices in the same call match TF."""

    class M(tf.Module):
        def __init__(self):
            self.v = tf.Variable(np.arange(1, 13, dtype=np.float32).reshape(4, 3))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
        def f(self, idx):
            self.v.scatter_add(tf.IndexedSlices(tf.ones([tf.size(idx), 3]), idx))
            self.v.scatter_nd_add(tf.expand_dims(idx, -1), tf.ones([tf.size(idx), 3]))
            return self.v.sparse_read(idx), tf.raw_ops.ResourceGatherNd(
                resource=self.v.handle, indices=tf.expand_dims(idx, -1), dtype=tf.float32
            )

    m = M()
    ours = _save_and_load(m, tmp_path)
    valid = np.array([1, 3], np.int32)
    want = [t.numpy() for t in m.f(tf.constant(valid))]
    got = [np.asarray(t) for t in ours.f(valid)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    before = np.asarray(ours.v.numpy()).copy()
    gathered, gathered_nd = ours.f(np.array([-1, 1], np.int32))
    after = np.asarray(ours.v.numpy())
    np.testing.assert_array_equal(after[:3], before[:3] + np.array([[0], [2], [0]], np.float32))
    np.testing.assert_array_equal(after[3], before[3], err_msg="-1 must not update the last row")
    for g in (gathered, gathered_nd):
        np.testing.assert_array_equal(np.asarray(g)[0], 0, err_msg="-1 must not read the last row")
        np.testing.assert_array_equal(np.asarray(g)[1], after[1])


def test_resource_count_up_to(tmp_path):
    class M(tf.Module):
        def __init__(self):
            self.v = tf.Variable(3, dtype=tf.int64)

        @tf.function(input_signature=[])
        def f(self):
            return tf.raw_ops.ResourceCountUpTo(resource=self.v.handle, limit=10, T=tf.int64), self.v.read_value()

    m = M()
    ours = _save_and_load(m, tmp_path)
    for _ in range(2):
        want = [t.numpy() for t in m.f()]
        got = [np.asarray(t) for t in ours.f()]
        assert [int(g) for g in got] == [int(w) for w in want]
