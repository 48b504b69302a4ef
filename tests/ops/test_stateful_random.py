"""Stateful random ops: TF's values cannot be reproduced (hidden process-wide RNG state), so these tests check
what can be checked against TF: shapes, dtypes, ranges and rough moments; and that Dropout at inference loads."""

import numpy as np
import pytest

import jaxsm

tf = pytest.importorskip("tensorflow")


def test_distributions(tmp_path):
    class M(tf.Module):
        @tf.function(input_signature=[])
        def f(self):
            return (
                tf.random.uniform([4000], seed=1),
                tf.random.normal([4000], seed=2),
                tf.random.truncated_normal([4000], seed=3),
                tf.random.uniform([4000], 3, 9, dtype=tf.int32, seed=4),
                tf.random.shuffle(tf.range(10), seed=5),
            )

    m = M()
    tf.saved_model.save(m, str(tmp_path))
    u, n, t, i, s = (np.asarray(v) for v in jaxsm.load(str(tmp_path)).f())
    ref = [v.numpy() for v in m.f()]
    for got, want, name in zip((u, n, t, i, s), ref, ("uniform", "normal", "truncated", "int", "shuffle")):
        assert got.shape == want.shape and got.dtype == want.dtype, name
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.05
    assert abs(n.mean()) < 0.1 and abs(n.std() - 1) < 0.1
    assert np.abs(t).max() <= 2.0
    assert i.min() >= 3 and i.max() < 9
    assert sorted(s.tolist()) == list(range(10))


def test_tf_print_and_string_format_load_and_run(tmp_path):
    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)])
        def f(self, x):
            tf.print("x is", x)
            return x * 2.0, tf.strings.format("{} and {}", (tf.constant([1, 2]), tf.constant(3)))

    m = M()
    tf.saved_model.save(m, str(tmp_path))
    y, s = jaxsm.load(str(tmp_path)).f(np.array([1.0, 2.0], np.float32))
    want_y, want_s = m.f(tf.constant([1.0, 2.0]))
    np.testing.assert_array_equal(np.asarray(y), want_y.numpy())
    assert s.item() == want_s.numpy(), "static string formatting matches TF"


def test_multinomial_peaked_logits():
    # Stateful draws cannot match TF's numbers; with one class per row holding all the mass they must agree.
    logits = np.array([[0.0, -1e4, -1e4], [-1e4, -1e4, 5.0]], np.float32)

    def fn(logits):
        return tf.random.categorical(logits, 6, dtype=tf.int32, seed=3)

    from tests.tfcompare import assert_matches_tf

    assert_matches_tf(fn, [logits])
