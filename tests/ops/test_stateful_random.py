"""Stateful random ops: a seeded op's calls in TF are reproduced exactly (the kernel's Philox counter moves on every
call: jaxsm/graph/rng.py); otherwise these tests check shapes, dtypes, ranges and rough moments; and that Dropout
at inference loads."""

import contextlib

import jax
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


@pytest.mark.parametrize("jit", [True, False])
def test_first_call_matches_tf(jit, tmp_path):
    """With seed attrs (a global seed, op seeds), TF's kernels start Philox at key = seed, counter = (0, seed2):
    jaxsm draws those numbers, the uniform/normal/truncated/int distributions of the stateless ops."""
    from tests.tfcompare import run_jaxsm

    tf.random.set_seed(3)
    m = tf.Module()
    m.f = tf.function(
        lambda: {
            "uniform": tf.random.uniform([5, 3], seed=7),
            "normal64": tf.random.normal([7], seed=11, dtype=tf.float64),
            "truncated": tf.random.truncated_normal([9], seed=2),
            "int64": tf.random.uniform([6], 0, 100, dtype=tf.int64, seed=4),
            "int32": tf.random.uniform([5], -5, 5, dtype=tf.int32, seed=9),
            "half": tf.random.uniform([3], dtype=tf.float16, seed=8),
        },
        input_signature=[],
    )
    tf.saved_model.save(m, str(tmp_path))
    want = {k: v.numpy() for k, v in tf.saved_model.load(str(tmp_path)).f().items()}  # a fresh kernel: first call
    got = run_jaxsm(str(tmp_path), [], jit=jit)
    for k, w in want.items():
        g = np.asarray(got[k])
        assert g.dtype == w.dtype, k
        np.testing.assert_array_equal(g, w, err_msg=k)


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


def test_random_gamma_and_poisson_calls(tmp_path):
    """RandomGamma/RandomPoissonV2 with seed attrs draw TF's numbers (GuardedPhiloxRandom seeded from seed/seed2),
    and later calls move on by outputs * 256 samples as TF's kernels do."""
    import jaxsm

    alpha = np.array([[0.3, 1.0], [4.0, 1e-3]], np.float32)
    rate = np.array([0.0, 2.5, 30.0, np.inf], np.float64)

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2, 2], tf.float32), tf.TensorSpec([4], tf.float64)])
        def f(self, alpha, rate):
            R = tf.raw_ops
            return {
                "gamma": tf.random.gamma([30], alpha, seed=7),
                "gamma_raw": R.RandomGamma(shape=[3, 2], alpha=tf.cast(alpha, tf.float64), seed=-5, seed2=2**40),
                "gamma_empty": R.RandomGamma(shape=[0], alpha=alpha, seed=1, seed2=1),
                "poisson": tf.random.poisson([20], rate, dtype=tf.int32, seed=3),
                "poisson_raw": R.RandomPoissonV2(shape=[2], rate=rate, seed=9, seed2=-1, dtype=tf.float16),
            }

    tf.saved_model.save(M(), str(tmp_path))
    want_fn, got_fn = tf.saved_model.load(str(tmp_path)).f, jaxsm.load(str(tmp_path)).f
    for call in range(3):
        want, got = want_fn(alpha, rate), got_fn(alpha, rate)
        for k in want:
            w = want[k].numpy()
            np.testing.assert_allclose(np.asarray(got[k], np.float64), w, rtol=1e-6, err_msg=f"{k}, call {call}")


@pytest.mark.parametrize("jit", [True, False])
def test_later_calls_move_on_like_tf(jit, tmp_path):
    """Each call of a seeded kernel moves its Philox counter on by outputs * 256 (ReserveRandomOutputs), also
    per iteration of a loop; jaxsm keeps the counters in the loaded object's state: every call matches TF."""
    import jaxsm

    tf.random.set_seed(4)

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def f(self, x):
            acc = tf.zeros([2])
            for _ in tf.range(3):
                acc += tf.random.normal([2], seed=5)
            return {
                "loop": acc,
                "uniform": tf.random.uniform([5], seed=1) + x,
                "truncated": tf.random.truncated_normal([3], seed=2),
                "int64": tf.random.uniform([4], 0, 50, dtype=tf.int64, seed=3),
                "both_zero": tf.raw_ops.RandomUniform(shape=[2], dtype=tf.float32, seed=0, seed2=0) * 0,
            }

        @tf.function(input_signature=[])
        def g(self):
            return tf.random.uniform([3], seed=1)

    tf.saved_model.save(M(), str(tmp_path))
    want_model, got_model = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    seen = set()
    with contextlib.nullcontext() if jit else jax.disable_jit():
        for call in range(3):
            want, got = want_model.f(np.float32(call)), got_model.f(np.float32(call))
            for k in want:
                np.testing.assert_allclose(np.asarray(got[k]), want[k].numpy(), rtol=1e-6, err_msg=f"{k}, call {call}")
            seen.add(tuple(np.asarray(got["uniform"]) - call))
            # another function's kernel has its own counter
            np.testing.assert_array_equal(np.asarray(got_model.g()), want_model.g().numpy())
    assert len(seen) == 3


def test_pure_functions_draw_the_first_call(tmp_path):
    """A pure function (jaxsm.functional) has no hidden counter: each call draws the kernel's first numbers."""
    import jaxsm

    m = tf.Module()
    m.f = tf.function(lambda: tf.random.uniform([3], seed=1, dtype=tf.float32), input_signature=[])
    tf.random.set_seed(2)
    tf.saved_model.save(m, str(tmp_path))
    first = tf.saved_model.load(str(tmp_path)).f().numpy()
    apply, params = jaxsm.functional(jaxsm.load(str(tmp_path)).f)
    for _ in range(2):
        np.testing.assert_array_equal(np.asarray(apply(params)), first)


def test_random_gamma_unseeded_distribution(tmp_path):
    # seed = seed2 = 0: TF seeds at random, so only the distribution can be compared.
    import jaxsm

    class M(tf.Module):
        @tf.function(input_signature=[])
        def f(self):
            return tf.random.gamma([4000], [0.5, 3.0], dtype=tf.float64), tf.random.poisson([4000], [4.0, 50.0])

    tf.saved_model.save(M(), str(tmp_path))
    g, p = (np.asarray(v) for v in jaxsm.load(str(tmp_path)).f())
    assert g.shape == (4000, 2) and g.dtype == np.float64 and p.dtype == np.float32
    np.testing.assert_allclose(g.mean(0), [0.5, 3.0], rtol=0.08, err_msg="gamma mean")
    np.testing.assert_allclose(p.mean(0), [4.0, 50.0], rtol=0.05, err_msg="poisson mean")
    np.testing.assert_allclose(p.var(0), [4.0, 50.0], rtol=0.15, err_msg="poisson variance")


def test_tf1_session_runs_move_on(tmp_path):
    """In a TF1 Session the kernels live as long as the session: each run (and each loop iteration) moves on."""
    import jaxsm

    tf1 = tf.compat.v1
    path = str(tmp_path / "m")
    with tf.Graph().as_default():
        tf1.set_random_seed(5)
        x = tf1.placeholder(tf.float32, [None], name="x")
        u = tf1.random_uniform([3], seed=1) + tf.reduce_sum(x)
        _, acc = tf1.while_loop(
            lambda i, a: i < 3, lambda i, a: (i + 1, a + tf1.random_normal([2], seed=2)), [0, tf.zeros([2])]
        )
        with tf1.Session() as sess:
            builder = tf1.saved_model.Builder(path)
            sig = tf1.saved_model.predict_signature_def({"x": x}, {"u": u, "acc": acc})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
            builder.save()
    feed = np.zeros(2, np.float32)
    with tf1.Session(graph=tf.Graph()) as sess:
        outputs = tf1.saved_model.load(sess, ["serve"], path).signature_def["serving_default"].outputs
        want = [sess.run({k: v.name for k, v in outputs.items()}, {"x:0": feed}) for _ in range(3)]
    f = jaxsm.load(path).signatures["serving_default"]
    for call, w in enumerate(want):
        got = f(x=feed)
        for k in w:
            np.testing.assert_allclose(np.asarray(got[k]), w[k], rtol=1e-6, err_msg=f"{k}, call {call}")


def test_tf_keras_dropout_in_training_matches_tf_call_after_call(tmp_path):
    """tf_keras' Dropout(seed=...) in training mode: the masks of successive calls are TF's."""
    import jaxsm

    tf_keras = pytest.importorskip("tf_keras")
    tf.random.set_seed(1)
    i = tf_keras.Input((6,))
    m = tf_keras.Model(i, tf_keras.layers.Dropout(0.5, seed=3)(tf_keras.layers.Dense(6)(i)))
    m.save(str(tmp_path), save_format="tf")
    x = np.ones((3, 6), np.float32)
    want_model, got_model = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    masks = set()
    for call in range(3):
        want = want_model(x, training=True).numpy()
        np.testing.assert_allclose(np.asarray(got_model(x, training=True)), want, rtol=1e-6, err_msg=f"call {call}")
        masks.add(tuple((want == 0).reshape(-1)))
    assert len(masks) == 3


def test_a_call_under_the_callers_jit_keeps_the_counter(tmp_path):
    """Under the caller's jax.jit the counter cannot be kept (it is a tracer there): it stays where it was, and
    later calls go on from it instead of failing on a leaked tracer."""
    import jaxsm

    m = tf.Module()
    m.f = tf.function(lambda x: tf.random.uniform([3], seed=1) + x, input_signature=[tf.TensorSpec([], tf.float32)])
    tf.random.set_seed(2)
    tf.saved_model.save(m, str(tmp_path))
    want_fn = tf.saved_model.load(str(tmp_path)).f
    want = [want_fn(np.float32(0)).numpy() for _ in range(2)]
    got = jaxsm.load(str(tmp_path))
    np.testing.assert_array_equal(np.asarray(jax.jit(got.f)(np.float32(0))), want[0])
    for w in want:
        np.testing.assert_array_equal(np.asarray(got.f(np.float32(0))), w)


def test_shuffle_multinomial_and_parameterized_truncated_normal_move_on(tmp_path):
    """RandomShuffle (ReserveSamples32(n - 1)), Multinomial (ceil4(samples) * 2 * 256 per row) and
    ParameterizedTruncatedNormal (2 * 1000 tries per output group) reserve their own amounts per call."""
    import jaxsm

    tf.random.set_seed(6)

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2, 5], tf.float32)])
        def f(self, logits):
            R = tf.raw_ops
            return {
                "shuffle": tf.random.shuffle(tf.range(7), seed=1),
                "shuffle_rows": tf.random.shuffle(tf.reshape(tf.range(12.0), [6, 2]), seed=2),
                "multinomial": tf.random.categorical(logits, 6, seed=3),
                "ptn": R.ParameterizedTruncatedNormal(
                    shape=[3, 4], means=[0.0, 1.0, 2.0], stdevs=[1.0, 0.5, 2.0], minvals=-1.0, maxvals=3.0, seed=4
                ),
                "ptn_scalar": R.ParameterizedTruncatedNormal(
                    shape=[5], means=0.0, stdevs=1.0, minvals=0.5, maxvals=2.0, seed=5, seed2=7
                ),
            }

    tf.saved_model.save(M(), str(tmp_path))
    logits = np.log(np.arange(1, 11, dtype=np.float32).reshape(2, 5))
    want_fn, got_fn = tf.saved_model.load(str(tmp_path)).f, jaxsm.load(str(tmp_path)).f
    for call in range(3):
        want, got = want_fn(logits), got_fn(logits)
        for k in want:
            np.testing.assert_allclose(np.asarray(got[k]), want[k].numpy(), rtol=1e-5, err_msg=f"{k}, call {call}")
