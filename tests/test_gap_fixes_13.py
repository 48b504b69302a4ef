"""Known gaps fixed, batch 13: JAX's own dtype warnings with jax_enable_x64 off, DenseHashTable key shapes,
TensorArray reads with clear_after_read, forward mode through saved custom gradients. Each against TF."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

import jaxsm
from jaxsm.errors import JaxsmError
from tests.tfcompare import run_jaxsm, save_function

tf = pytest.importorskip("tensorflow")

R = tf.raw_ops
JIT = pytest.mark.parametrize("jit", [True, False])
_NARROWED = {np.dtype(a): np.dtype(b) for a, b in [("int64", "int32"), ("float64", "float32")]}
_NARROWED[np.dtype("complex128")] = np.dtype("complex64")


# -- 1. jax_enable_x64 off: jaxsm warns once per model, JAX must not warn at each of jaxsm's call sites -----------


def _no_jax_dtype_warnings(export_dir, inputs, jit):
    """jaxsm's outputs with x64 off, turning JAX's "Explicitly requested dtype" warning into an error."""
    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (jaxsm's own warning that 64-bit values compute in 32 bits)
        warnings.filterwarnings("error", "Explicitly requested dtype")
        return [np.asarray(o) for o in jax.tree_util.tree_leaves(run_jaxsm(export_dir, inputs, jit=jit))]


def _assert_as_tf_narrowed(got, want, rtol=1e-6):
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        w = np.asarray(w)
        w = w.astype(_NARROWED[w.dtype]) if g.dtype != w.dtype and w.dtype in _NARROWED else w
        assert g.shape == w.shape and g.dtype == w.dtype, f"output {i}: {g.dtype}{g.shape} != {w.dtype}{w.shape}"
        np.testing.assert_allclose(g, w, rtol=rtol, err_msg=f"output {i}")


@JIT
def test_x64_off_math_ops_do_not_trigger_jax_dtype_warnings(jit):
    x = np.array([[1.5, -2.0, 3.25], [0.5, 7.0, -1.0]], np.float32)
    n = np.array([[3, -4, 12], [1, 2, 2]], np.int32)
    c = (x + 1j * x[::-1]).astype(np.complex128)

    def fn(x, n, c):
        return (
            tf.argmax(x, axis=1),
            tf.argmin(x, axis=0, output_type=tf.int64),
            R.EuclideanNorm(input=n, axis=[0, 1]),
            tf.cast(x * 3, tf.int64),
            tf.cast(tf.cast(x, tf.float64), tf.int64),
            tf.linalg.matmul(c, c, adjoint_b=True),
        )

    export_dir, tf_fn = save_function(fn, [x, n, c])
    want = [w.numpy() for w in tf_fn(x, n, c)]
    _assert_as_tf_narrowed(_no_jax_dtype_warnings(export_dir, [x, n, c], jit), want, rtol=1e-5)


@JIT
def test_x64_off_array_and_nn_ops_do_not_trigger_jax_dtype_warnings(jit):
    x = np.array([[1.5, -2.0, 3.25, 0.0], [0.5, 7.0, -1.0, 2.0]], np.float32)
    n = np.array([[3, 1, 1, 0], [2, 2, 3, 1]], np.int32)

    def fn(x, n):
        values, index = tf.nn.max_pool_with_argmax(tf.reshape(x, [1, 2, 4, 1]), 2, 2, "VALID")
        return (
            tf.math.top_k(x, 2, index_type=tf.int64).indices,
            tf.searchsorted(tf.sort(x), x[:, :2], out_type=tf.int64),
            tf.math.bincount(n, minlength=4, dtype=tf.int64),
            tf.math.bincount(n, weights=tf.cast(x, tf.float64), minlength=4),
            R.DenseBincount(input=n, size=4, weights=tf.cast(n, tf.int64)),
            values,
            index,
            tf.nn.isotonic_regression(n)[0],
            R.Empty(shape=[0, 2], dtype=tf.int64),
        )

    export_dir, tf_fn = save_function(fn, [x, n])
    want = [w.numpy() for w in tf_fn(x, n)]
    _assert_as_tf_narrowed(_no_jax_dtype_warnings(export_dir, [x, n], jit), want, rtol=1e-6)


class _Counted(tf.Module):
    """A small Keras model behind a module with an int64 step counter (assigned each call) and int64 ids."""

    def __init__(self):
        self.model = tf.keras.Sequential([tf.keras.layers.Dense(3, activation="relu"), tf.keras.layers.Dense(2)])
        self.model.build((None, 4))
        self.step = tf.Variable(0, dtype=tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int64)])
    def f(self, x, ids):
        self.step.assign(self.step + 1)
        y = self.model(x)
        return {"y": y, "best": tf.argmax(y, axis=-1), "ids": ids * self.step, "step": self.step.read_value()}


def test_x64_off_model_with_int64_state_does_not_trigger_jax_dtype_warnings(tmp_path):
    tf.saved_model.save(_Counted(), str(tmp_path))
    ref = tf.saved_model.load(str(tmp_path))
    x = np.array([[0.5, -1.0, 2.0, 0.25], [1.0, 1.5, -0.5, 3.0]], np.float32)
    ids = np.array([3, 7], np.int64)
    with jax.enable_x64(False), warnings.catch_warnings():
        got = jaxsm.load(str(tmp_path))
        warnings.simplefilter("ignore")  # (jaxsm's own warning that 64-bit values compute in 32 bits)
        warnings.filterwarnings("error", "Explicitly requested dtype")
        for _ in range(2):  # (the counter advances on both sides)
            want, have = ref.f(x, ids), got.f(x, ids)
            _assert_as_tf_narrowed([np.asarray(have[k]) for k in sorted(want)], [want[k] for k in sorted(want)], 1e-6)


# -- 2. DenseHashTable: keys must be [n] + the table's key shape --------------------------------------------------


class _DenseTable(tf.Module):
    def __init__(self):
        self.t = tf.lookup.experimental.DenseHashTable(
            tf.int64, tf.float32, default_value=-1.0, empty_key=-1, deleted_key=-2
        )
        self.t.insert(tf.constant([3, 4], tf.int64), tf.constant([0.5, 1.5]))

    @tf.function(input_signature=[tf.TensorSpec(None, tf.int64)])
    def find(self, k):
        return self.t.lookup(k)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.int64)])
    def insert(self, k):
        self.t.insert(k, tf.zeros(tf.shape(k)[:1]))
        return self.t.size()

    @tf.function(input_signature=[tf.TensorSpec(None, tf.int64)])
    def remove(self, k):
        self.t.remove(k)
        return self.t.size()


@pytest.fixture(scope="module")
def dense_table(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("dense") / "m")
    tf.saved_model.save(_DenseTable(), path)
    return path


@pytest.mark.parametrize("method", ["find", "insert", "remove"])
@pytest.mark.parametrize("shape", [(1, 2), (2, 1), (), (3, 2), (2,)])
def test_dense_hash_table_key_shapes(dense_table, method, shape):
    """TF: find and remove need keys of shape [n] + key shape ([2, 1] counts as [2]; remove refuses a scalar),
    insert needs values of the keys' shape ([2, 1] keys with [2] values fail)."""
    keys = np.arange(3, 3 + int(np.prod(shape)), dtype=np.int64).reshape(shape)
    ref, got = tf.saved_model.load(dense_table), jaxsm.load(dense_table)
    try:
        want = getattr(ref, method)(tf.constant(keys)).numpy()
    except tf.errors.InvalidArgumentError:
        with pytest.raises(JaxsmError, match="Expected"):
            getattr(got, method)(keys)
        return
    have = np.asarray(getattr(got, method)(keys))
    assert have.shape == want.shape and have.dtype == want.dtype, f"{method}{shape}: {have!r} vs {want!r}"
    np.testing.assert_array_equal(have, want, err_msg=f"{method}{shape}")


def test_dense_hash_table_with_vector_keys_is_refused(tmp_path):
    class M(tf.Module):
        def __init__(self):
            self.t = tf.lookup.experimental.DenseHashTable(
                tf.int64, tf.float32, default_value=-1.0, empty_key=[-1, -1], deleted_key=[-2, -2]
            )

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.int64)])
        def find(self, k):
            return self.t.lookup(k)

    tf.saved_model.save(M(), str(tmp_path))
    with pytest.raises(JaxsmError, match="keys of shape \\[2\\]"):
        jaxsm.load(str(tmp_path)).find(np.ones((1, 2), np.int64))


# -- 4. forward mode through a saved tf.custom_gradient: TF's ForwardAccumulator --------------------------------


@tf.custom_gradient
def _clipped_square(x):
    def grad(dy):
        return tf.clip_by_value(dy, -0.1, 0.1) * x  # not linear in dy: TF's JVP takes its derivative at dy = 1

    return x * x, grad


@tf.custom_gradient
def _scaled_gradient(x):
    return tf.identity(x), lambda dy: -3.0 * dy


class _CustomGradients(tf.Module):
    def __init__(self):
        self.w = tf.Variable([1.0, -2.0, 0.5])

    @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
    def f(self, x):
        return _clipped_square(x * self.w) + _scaled_gradient(2.0 * x) * x


@pytest.fixture(scope="module")
def custom_gradients(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("custom_gradients") / "m")
    tf.saved_model.save(_CustomGradients(), path)
    return path


def test_forward_mode_through_saved_custom_gradients(custom_gradients):
    """jax.jvp and jax.jacfwd of a loaded function with saved custom gradients give TF's ForwardAccumulator's
    tangents on the TF-loaded model (the forward ops' own derivative would differ), object API and functional."""
    ref, got = tf.saved_model.load(custom_gradients), jaxsm.load(custom_gradients)
    x = np.array([0.5, 1.0, -1.5], np.float32)
    tangents = np.eye(3, dtype=np.float32)
    want = []
    for t in tangents:
        xt = tf.constant(x)
        with tf.autodiff.ForwardAccumulator(xt, tf.constant(t)) as acc:
            y = ref.f(xt)
        want.append(acc.jvp(y).numpy())
    want = np.stack(want, axis=1)  # the Jacobian, column by column
    apply, params = jaxsm.functional(got.f)
    np.testing.assert_allclose(jax.jvp(got.f, (x,), (tangents[1],))[1], want[:, 1], rtol=1e-6, err_msg="jvp")
    np.testing.assert_allclose(jax.jacfwd(got.f)(x), want, rtol=1e-6, err_msg="jacfwd")
    jvp = jax.jit(lambda t: jax.jvp(lambda v: apply(params, v), (x,), (t,))[1])
    np.testing.assert_allclose(jvp(tangents[2]), want[:, 2], rtol=1e-6, err_msg="jit of the functional jvp")
    np.testing.assert_allclose(float(apply(params, x)[0]), y.numpy()[0], rtol=1e-6, err_msg="value")


# -- 3. TensorArray clear_after_read (TF1's default): a second read of an element raises -------------------------


def _tensor_array_model(path: str, kind: str) -> str:
    from tests.tfcompare import v1_graph

    tf1 = tf.compat.v1
    with v1_graph(), tf1.Session() as sess:
        x = tf1.placeholder(tf.float32, [3], name="x")
        i = tf1.placeholder(tf.int32, [], name="i")
        ta = tf1.TensorArray(tf.float32, size=3, clear_after_read=kind != "kept").unstack(x)
        y = {
            "twice": lambda: ta.read(1) + ta.read(1),
            "kept": lambda: ta.read(1) + ta.read(1),
            "after_stack": lambda: tf.reduce_sum(ta.stack()) + ta.read(0),
            "in_both_branches": lambda: tf1.cond(i > 0, lambda: ta.read(1), lambda: ta.read(1) * 2),
            "distinct": lambda: ta.read(1) + ta.read(2) * tf.cast(i, tf.float32),
        }[kind]()
        info = tf1.saved_model.build_tensor_info
        sig = tf1.saved_model.build_signature_def({"x": info(x), "i": info(i)}, {"y": info(y)})
        builder = tf1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(sess, ["serve"], {"s": sig})
        builder.save()
    return path


@pytest.mark.parametrize("kind", ["twice", "kept", "after_stack", "in_both_branches", "distinct"])
def test_tensor_array_clear_after_read(tmp_path, kind):
    path = _tensor_array_model(str(tmp_path / "m"), kind)
    ref, got = tf.saved_model.load(path), jaxsm.load(path)
    x = np.array([1.0, 2.0, 3.0], np.float32)
    for i in [np.int32(1), np.int32(0)]:
        try:
            want = ref.signatures["s"](x=tf.constant(x), i=tf.constant(i))["y"].numpy()
        except tf.errors.InvalidArgumentError as e:
            assert "cleared after a previous read" in str(e)
            with pytest.raises(JaxsmError, match="cleared after a previous read"):
                got.signatures["s"](x=x, i=i)
            continue
        np.testing.assert_array_equal(np.asarray(got.signatures["s"](x=x, i=i)["y"]), want, err_msg=f"{kind} i={i}")
