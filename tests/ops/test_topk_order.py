"""TopKV2's order against TensorFlow: sorted=False returns TF's CPU kernel's heap order (topk_op.cc keeps a
gtl::TopN of column indices, built with libstdc++'s heap algorithms, for 1 < k < n), for every dtype TopKV2
takes, with ties, duplicates, negative values, -0.0 and NaN; sorted=True with a NaN keeps TF's std::sort_heap
order. Indices and values must equal TF's element by element, under ``jax.jit`` and op by op."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.tfcompare import compare_case as _compare  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])


def _top_k(x, ks, sorted_=False):
    out = {}
    for k in ks:
        values, indices = tf.math.top_k(x, k, sorted=sorted_)
        out[f"k{k}"] = {"values": values, "indices": indices}
    return out


def _data(dtype, shape, seed):
    """Few distinct values (many ties and duplicates), negative ones, and both zeros for floats."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 6, size=shape).astype(dtype)
    x = rng.integers(-4, 5, size=shape).astype(dtype)
    if np.dtype(dtype).kind == "f" or dtype == tf.bfloat16.as_numpy_dtype:
        x = (x * np.asarray(0.5, dtype)).astype(dtype)
        x[rng.random(shape) < 0.15] = -0.0
    return x


_DTYPES = [
    np.float32,
    np.float64,
    np.float16,
    tf.bfloat16.as_numpy_dtype,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
]


@JIT
@pytest.mark.parametrize("dtype", _DTYPES, ids=lambda d: np.dtype(d).name)
def test_unsorted_heap_order(dtype, jit):
    """1 < k < n on rows of ties: TF's heap order, not the sorted one; k = 1 and k = n are sorted."""
    x = _data(dtype, (3, 23), seed=np.dtype(dtype).itemsize)
    ks = [1, 2, 9, 22, 23] if dtype in (np.float32, np.int32) else [1, 9, 23]  # (each k compiles the replay)
    _compare(f"unsorted_{np.dtype(dtype).name}", lambda x: _top_k(x, ks), [x], jit)


@JIT
def test_unsorted_random_float32(jit):
    """Distinct random values, rank 3, several windows of columns (the replay skips columns in blocks)."""
    x = np.random.default_rng(7).normal(size=(2, 3, 300)).astype(np.float32)
    x[0, 0] = np.sort(x[0, 0])  # ascending: every column enters the heap
    x[0, 1] = -np.sort(-x[0, 1])  # descending: none does
    _compare("unsorted_random", lambda x: _top_k(x, [2, 5, 64, 299]), [x], jit)


@JIT
def test_nan(jit):
    """A NaN compares neither greater nor less (TF's comparator then orders by index), so where it lands
    depends on the heap operations (sorted=False, 1 < k < n; sorted=True is a gaps row)."""
    sorted_ = False
    rng = np.random.default_rng(3)
    x = rng.choice(np.array([np.nan, -0.0, 0.0, 1.0, -1.0, 2.0, np.inf, -np.inf], np.float32), size=(3, 19))
    x[2] = np.nan
    _compare(f"nan_{sorted_}", lambda x: _top_k(x, [2, 7, 18], sorted_), [x], jit)


@JIT
def test_empty_and_k_zero(jit):
    def fn(x, y):
        return {"rows0": _top_k(x, [0, 2]), "cols0": _top_k(y, [0])}

    _compare("empty", fn, [np.zeros((0, 5), np.float32), np.zeros((3, 0), np.int32)], jit)


@JIT
def test_sampler_pattern(jit):
    """keras_hub's TopKSampler: top_k(sorted=False), sample among the k logits, gather the token id."""

    def fn(logits):
        values, indices = tf.math.top_k(logits, k=10, sorted=False)
        picked = tf.random.stateless_categorical(values, 1, seed=[4, 2], dtype=tf.int32)
        return {"tokens": tf.gather(indices, picked, batch_dims=1), "picked": picked}

    logits = np.random.default_rng(11).normal(size=(3, 40)).astype(np.float32) * 3
    _compare("sampler", fn, [logits], jit)


@pytest.mark.parametrize("sorted_", [False, True])
def test_gradient(sorted_):
    """jax.grad through the heap replay (a while loop) scatters the cotangent to the chosen columns, as TF's
    TopKV2 gradient does."""
    import jax

    from tests.tfcompare import save_function

    x = np.random.default_rng(5).normal(size=(2, 9)).astype(np.float32)
    if not sorted_:  # (a NaN with sorted=True is a gaps row)
        x[1, 3] = np.nan
    weights = np.arange(8, dtype=np.float32).reshape(2, 4)
    export_dir, _ = save_function(lambda x: tf.math.top_k(x, 4, sorted=sorted_)[0], [x])
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(tf.math.top_k(xt, 4, sorted=sorted_)[0] * weights)
    want = tape.gradient(loss, xt).numpy()
    import jaxsm

    f = jaxsm.load(export_dir).f
    got = jax.grad(lambda v: (f(v) * weights).sum())(x)
    np.testing.assert_array_equal(np.asarray(got), want)
