"""jaxsm.ops.sync against TF: tf.CriticalSection (MutexV2/MutexLock/ConsumeMutexLock) around a variable update,
and Abort, which raises when reached (TF would end the process, so only the reachable-but-not-taken case runs
in TF)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import AssertFailedError  # noqa: E402
from tests.tfcompare import run_jaxsm, save_function  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])


@JIT
def test_critical_section(jit):
    m = tf.Module()
    m.v = tf.Variable([1.0, 2.0])

    def fn(x):  # CriticalSection.execute's ops; a tf.CriticalSection makes its mutex eagerly, which cannot be saved
        lock = tf.raw_ops.MutexLock(mutex=tf.raw_ops.MutexV2(shared_name="cs"))
        with tf.control_dependencies([lock]):
            out = m.v.assign_add(x).read_value() * 2.0
        with tf.control_dependencies([out]):
            done = tf.raw_ops.ConsumeMutexLock(mutex_lock=lock)
        with tf.control_dependencies([done]):
            return tf.identity(out)

    x = np.array([0.5, -1.0], np.float32)
    export_dir, tf_fn = save_function(fn, [x], module=m)
    want = tf_fn(x).numpy()
    np.testing.assert_array_equal(np.asarray(run_jaxsm(export_dir, [x], jit=jit)), want, err_msg="out")


def _guarded(x):
    def fail():
        with tf.control_dependencies([tf.raw_ops.Abort(error_msg="negative input")]):
            return tf.identity(x)

    return tf.cond(tf.reduce_all(x > 0), lambda: x * 2.0, fail)


@JIT
def test_abort_only_when_reached(jit):
    x = np.array([1.0, 3.0], np.float32)
    export_dir, tf_fn = save_function(_guarded, [x])
    np.testing.assert_array_equal(np.asarray(run_jaxsm(export_dir, [x], jit=jit)), tf_fn(x).numpy(), err_msg="out")
    with pytest.raises(AssertFailedError, match="negative input"):
        run_jaxsm(export_dir, [-x], jit=jit)
