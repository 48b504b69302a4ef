"""Claims of the known-gaps table (jaxsm/ops/gaps.py) that an audit found stale, checked against TensorFlow: cases
a row said jaxsm refuses but TF's CPU kernels run."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.tfcompare import assert_matches_tf  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])
raw = tf.raw_ops


@JIT
def test_approx_top_k_without_aggregation(jit):
    """TF's CPU kernel ignores aggregate_to_topk: False still gives the exact k largest (it is TPU-only)."""
    x = np.array([[0.5, 3.0, -1.0, 2.0, 3.0, 0.0], [1.0, -2.0, 4.0, 4.5, 0.25, -0.5]], np.float32)

    def fn(x):
        values, indices = raw.ApproxTopK(input=x, k=3, recall_target=0.9, aggregate_to_topk=False)
        return {"values": values, "indices": indices}

    assert_matches_tf(fn, [x], jit=jit)


@JIT
@pytest.mark.parametrize("name", ["InplaceUpdate", "InplaceAdd", "InplaceSub"])
def test_inplace_ops_wrap_indices(jit, name):
    """InplaceUpdate/Add/Sub do not check their row indices: TF's kernel takes each modulo the number of rows
    (inplace_ops.cc, "Guard index range"), as run-time values and as known constants. One op per function: TF
    may update x's buffer in place, so a second op reading x would see the first one's result."""
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    i = np.array([5, -1, -6], np.int32)
    v = np.array([[10.0, 20.0, 30.0], [1.0, 2.0, 3.0], [-4.0, -5.0, -6.0]], np.float32)
    op = getattr(raw, name)
    assert_matches_tf(lambda x, i, v: op(x=x, i=i, v=v), [x, i, v], jit=jit)
    assert_matches_tf(lambda x, v: op(x=x, i=tf.constant([7, -3]), v=v[:2]), [x, v], jit=jit)
