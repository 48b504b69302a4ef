import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from tests.tfcompare import assert_matches_tf  # noqa: E402


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.float64])
def test_bucketize(dtype, jit):
    x = np.array([[-3, -1, 0, 0.5, 1, 7], [2, 2, -1, 1, 0, 9]]).astype(dtype)
    fn = lambda x: tf.raw_ops.Bucketize(input=x, boundaries=[-1.0, 0.0, 0.5, 2.0])  # noqa: E731
    assert_matches_tf(fn, [x], jit=jit)
