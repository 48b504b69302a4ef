"""Asserts decided at run time (tf.debugging.assert_*, tf.Assert, in TF2 functions and TF1 graphs) raise like TF's,
also from compiled calls (jaxsm/ops/core.py, jaxsm/compile.py); tf.strings.format writes values as TF does."""

import re

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import jax  # noqa: E402

import jaxsm  # noqa: E402
from jaxsm.errors import AssertFailedError, EagerFallbackWarning  # noqa: E402


class _Checks(tf.Module):
    def __init__(self):
        self.count = tf.Variable(0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def checked(self, x):
        tf.debugging.assert_non_negative(x)  # TF's wrapper: the Assert sits in a cond's branch
        self.count.assign_add(1)
        return x * 2

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.bool)])
    def plain_assert(self, x, flag):
        data = ["flag was", flag, "for", tf.reshape(x, [2, -1]), x[:0]]
        with tf.control_dependencies([tf.Assert(flag, data, summarize=4)]):
            return tf.identity(x) + 1


def _message(fn):
    with pytest.raises(Exception) as e:
        fn()
    return str(e.value).splitlines()


@pytest.mark.parametrize("trace_cache", [False, True])
def test_run_time_asserts_raise_like_tf(trace_cache, tmp_path):
    path = str(tmp_path / "m")
    tf.saved_model.save(_Checks(), path)
    ref = tf.saved_model.load(path)
    before = jax.config.jax_compilation_cache_dir
    if trace_cache:  # compiled calls read from jaxsm's trace cache check the flag too
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "cache"))
    try:
        m = jaxsm.load(path)
        good, bad = np.array([1.0, 2.0], np.float32), np.array([1.0, -3.0], np.float32)
        np.testing.assert_array_equal(np.asarray(m.checked(good)), ref.checked(good).numpy(), err_msg="valid input")
        with pytest.raises(tf.errors.InvalidArgumentError) as tf_error:
            ref.checked(bad)
        with pytest.raises(AssertFailedError) as ours:
            m.checked(bad)
        want = next(line for line in str(tf_error.value).splitlines() if line.startswith("assertion failed"))
        assert want in str(ours.value), "TF's assertion message"
        assert int(np.asarray(m.count)) == 1, "a failed call writes no variable back"
        np.testing.assert_array_equal(np.asarray(m.plain_assert(good, True)), good + 1, err_msg="assert held")
        for x in (good, np.arange(6, dtype=np.float32) / 3):  # the second: a new shape, failing on its first call
            with pytest.raises(tf.errors.InvalidArgumentError) as tf_error:
                ref.plain_assert(x, False)
            with pytest.raises(AssertFailedError) as ours:
                m.plain_assert(x, False)
            want = next(line for line in str(tf_error.value).splitlines() if line.startswith("assertion failed"))
            assert want in str(ours.value), f"TF's message {want!r} in {str(ours.value)!r}"
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_tf1_assert_in_a_cond_branch(tmp_path):
    """A v1 cond whose untaken branch holds a failing Assert must not raise; the taken one must."""
    export_dir = str(tmp_path / "m")
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        pick = tf.compat.v1.placeholder(tf.bool, [], name="pick")

        def checked():
            with tf.control_dependencies([tf.Assert(tf.reduce_all(x > 0), ["x must be positive", x])]):
                return tf.identity(x * 2)

        y = tf.compat.v1.cond(pick, checked, lambda: x - 1)
        with tf.compat.v1.Session() as sess:
            builder = tf.compat.v1.saved_model.Builder(export_dir)
            sig = tf.compat.v1.saved_model.predict_signature_def({"x": x, "pick": pick}, {"y": y})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
            builder.save()
            neg = np.array([-1.0, 2.0], np.float32)
            untaken = sess.run(y, {x: neg, pick: False})
            with pytest.raises(tf.errors.InvalidArgumentError):
                sess.run(y, {x: neg, pick: True})
    fn = jaxsm.load(export_dir).signatures["serving_default"]
    np.testing.assert_array_equal(np.asarray(fn(x=neg, pick=np.bool_(False))["y"]), untaken, "untaken branch")
    with pytest.raises(AssertFailedError, match="x must be positive"):
        fn(x=neg, pick=np.bool_(True))


@pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")
def test_strings_format_writes_values_like_tf(tmp_path):
    values = [
        np.array([0.1, 1 / 3, 2.5, 1e10, -0.0, np.nan, -np.inf], np.float32),
        np.arange(20, dtype=np.int64).reshape(4, 5),
        np.arange(60, dtype=np.int32).reshape(3, 4, 5),
        np.array([3 / 7, 1e-300], np.float64),
        np.array([True, False]),
        np.zeros((0, 2), np.float32),
        np.array(7, np.int8),
    ]
    m = tf.Module()
    m.f = tf.function(
        lambda *xs: (
            [tf.strings.format("a={} b={}", (x, tf.size(x))) for x in xs]
            + [tf.strings.format("{}", xs[1], summarize=1), tf.strings.format("{}", xs[0], summarize=-1)]
        ),
        input_signature=[tf.TensorSpec(v.shape, v.dtype) for v in values],
    )
    tf.saved_model.save(m, str(tmp_path))
    want = [t.numpy() for t in m.f(*values)]
    with pytest.warns(EagerFallbackWarning):  # run-time values are formatted on the host, op by op
        got = jaxsm.load(str(tmp_path)).f(*values)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert np.asarray(g).item() == w, f"format {i}: {np.asarray(g).item()!r} vs {w!r}"


def test_check_numerics(tmp_path):
    """tf.debugging.check_numerics raises on NaN/Inf like TF, compiled or not; finite values pass."""
    m = tf.Module()
    m.f = tf.function(
        lambda x: tf.debugging.check_numerics(tf.math.log(x), "log of x") * 2,
        input_signature=[tf.TensorSpec([None], tf.float32)],
    )
    tf.saved_model.save(m, str(tmp_path))
    loaded = jaxsm.load(str(tmp_path))
    x = np.array([1.0, 2.0], np.float32)
    np.testing.assert_allclose(np.asarray(loaded.f(x)), m.f(x).numpy(), rtol=1e-6, err_msg="finite values")
    for bad in ([1.0, -1.0], [0.0, 3.0], [np.inf, 0.0, -1.0], [0.0, np.inf, -1.0]):
        bad = np.array(bad, np.float32)
        with pytest.raises(tf.errors.InvalidArgumentError) as tf_error:
            m.f(bad)
        want = re.search(r"log of x : Tensor had [^\n]* values", str(tf_error.value)).group(0)
        with pytest.raises(AssertFailedError, match=re.escape(want)):
            loaded.f(bad)


class _LoopChecks(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def scan(self, x):  # a loop with a trip count known when tracing: lax.scan
        total = tf.constant(0.0)
        for i in tf.range(tf.shape(x)[0]):
            tf.debugging.assert_less(x[i], 10.0, message="each step")
            total += x[i]
        return total

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def until(self, x):  # a trip count known only at run time: lax.while_loop, the Assert deep in the body
        def body(v, n):
            v = tf.cond(v > 1.0, lambda: v / 2.0, lambda: v)
            with tf.control_dependencies([tf.Assert(n < 5, ["too many halvings", n])]):
                return tf.identity(v), n + 1

        return tf.while_loop(lambda v, n: v > 1.0, body, [x, 0])


@pytest.mark.parametrize("jit", [True, False])
def test_asserts_inside_compiled_loops(jit, tmp_path):
    """An Assert in a loop body holds in every iteration or the call raises TF's message: the compiled loop
    carries whether all of them held."""
    path = str(tmp_path / "m")
    tf.saved_model.save(_LoopChecks(), path)
    ref, m = tf.saved_model.load(path), jaxsm.load(path)
    for x in (np.array([1.0, 2.0, 3.0], np.float32), np.float32(12.0)):
        fn = "scan" if np.ndim(x) else "until"
        got = getattr(m, fn)(x) if jit else jax.disable_jit()(getattr(m, fn))(x)
        want = getattr(ref, fn)(x)
        np.testing.assert_allclose(np.asarray(jax.tree.leaves(got)), np.asarray(tf.nest.flatten(want)), err_msg=fn)
    for fn, x in (("scan", np.array([1.0, 20.0, 3.0], np.float32)), ("until", np.float32(100.0))):
        with pytest.raises(tf.errors.InvalidArgumentError) as tf_error:
            getattr(ref, fn)(x)
        with pytest.raises(AssertFailedError) as ours:
            getattr(m, fn)(x) if jit else jax.disable_jit()(getattr(m, fn))(x)
        want = next(line for line in str(tf_error.value).splitlines() if "assertion failed" in line or "each" in line)
        assert want.strip() in str(ours.value), f"{fn}: TF's message {want!r} in {str(ours.value)!r}"
