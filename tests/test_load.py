"""jaxsm.load on TF2 SavedModels: object graph, variables, function dispatch, signatures, state (oracle: TF)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxsm
from jaxsm.errors import FunctionMatchError, Int64RangeError

tf = pytest.importorskip("tensorflow")


def _save(module, path, signatures=None):
    tf.saved_model.save(module, str(path), signatures=signatures)
    return str(path)


def test_docs_checkpoint_example(tmp_path):
    # https://www.tensorflow.org/api_docs/python/tf/saved_model/load
    root = tf.train.Checkpoint(v=tf.Variable(3.0))
    root.f = tf.function(lambda x: root.v * x, input_signature=[tf.TensorSpec(None, tf.float32)])
    path = _save(root, tmp_path / "m")
    imported = jaxsm.load(path)
    ref = tf.saved_model.load(path)
    assert float(imported.v) == float(ref.v.numpy()) == 3.0, "imported.v"
    assert float(imported.f(x=2.0)) == float(ref.f(x=tf.constant(2.0)).numpy()) == 6.0, "imported.f(x=2.)"
    assert float(imported.f(np.float32(4.0))) == 12.0, "positional call"


def test_docs_serving_default_example(tmp_path):
    class Model(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.random.normal([3, 2], seed=1))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            return {"y": tf.matmul(x, self.w)}

    m = Model()
    path = _save(m, tmp_path / "m", signatures={"serving_default": m.__call__})
    imported = jaxsm.load(path)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    want = tf.saved_model.load(path).signatures["serving_default"](x=tf.constant(x))["y"].numpy()
    got = imported.signatures["serving_default"](x=x)
    assert set(got) == {"y"}, "signature output keys"
    np.testing.assert_allclose(np.asarray(got["y"]), want, rtol=1e-6, err_msg="serving_default y")
    np.testing.assert_allclose(
        np.asarray(imported.signatures["serving_default"](x)["y"]),
        want,
        rtol=1e-6,
        err_msg="one positional input",
    )
    np.testing.assert_allclose(np.asarray(imported(x)["y"]), want, rtol=1e-6, err_msg="__call__")
    with pytest.raises(TypeError):
        imported.signatures["serving_default"](z=x)


class _Nested(tf.Module):
    def __init__(self):
        self.inner = tf.Module()
        self.inner.w = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
        self.inner.deeper = tf.Module()
        self.inner.deeper.b = tf.Variable([0.5, -0.5], trainable=False)
        self.layers = [tf.Variable(1.0), tf.Variable(2.0)]
        self.table = {"a": tf.Variable(10), "b": tf.Variable(20)}
        self.count = tf.Variable(0, dtype=tf.int64)

    @tf.function
    def apply(self, x, scale=1.0, training=False):
        y = tf.matmul(x, self.inner.w) + self.inner.deeper.b
        if training:
            y = y * 2.0
        return {"y": y * scale, "pair": (y, x + self.layers[0])}

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64)])
    def bump(self, n):
        self.count.assign_add(n)
        return self.count.read_value()

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
    def loop(self, n):
        for _ in tf.range(n):
            self.layers[1].assign(self.layers[1] * 2.0)
        return self.layers[1].read_value()

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def branch(self, x):
        if x > 0:
            self.layers[0].assign_add(x)
        else:
            self.layers[0].assign_sub(1.0)
        return self.layers[0].read_value()

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def nested_call(self, x):
        return self.branch(x) + self.bump(tf.constant(1, tf.int64)).dtype.size


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    m = _Nested()
    x2 = tf.ones([2, 2])
    m.apply(x2)
    m.apply(x2, scale=3.0)
    m.apply(tf.ones([4, 2]), training=True)
    m.apply(tf.ones([2, 2], tf.float64) if False else x2, scale=2.0, training=True)
    path = _save(m, tmp_path_factory.mktemp("nested") / "m")
    return path


def test_object_tree(nested):
    imported = jaxsm.load(nested)
    ref = tf.saved_model.load(nested)
    np.testing.assert_array_equal(imported.inner.w.numpy(), ref.inner.w.numpy(), err_msg="inner.w")
    np.testing.assert_array_equal(imported.inner.deeper.b.numpy(), ref.inner.deeper.b.numpy(), err_msg="deeper.b")
    assert imported.inner.deeper.b.trainable is False, "trainable flag"
    assert [float(v) for v in imported.layers] == [float(v.numpy()) for v in ref.layers], "list of variables"
    assert {k: int(v) for k, v in imported.table.items()} == {"a": 10, "b": 20}, "dict of variables"
    assert imported.count.dtype == np.int64, "variable dtype"
    assert "inner" in repr(imported) and "Variable" in repr(imported), "repr shows the tree"
    assert imported.tensorflow_version == ref.tensorflow_version, "tensorflow_version"
    assert imported.tensorflow_git_version == ref.tensorflow_git_version, "tensorflow_git_version"


def test_polymorphic_dispatch(nested):
    imported = jaxsm.load(nested)
    ref = tf.saved_model.load(nested)
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    for kwargs in ({}, {"scale": 3.0}, {"scale": 2.0, "training": True}):
        want = ref.apply(tf.constant(x), **kwargs)
        got = imported.apply(x, **kwargs)
        np.testing.assert_allclose(np.asarray(got["y"]), want["y"].numpy(), rtol=1e-6, err_msg=f"y {kwargs}")
        np.testing.assert_allclose(
            np.asarray(got["pair"][1]), want["pair"][1].numpy(), rtol=1e-6, err_msg=f"pair[1] {kwargs}"
        )
        assert isinstance(got["pair"], tuple), "tuple output structure"
    x4 = np.ones((4, 2), np.float32)
    np.testing.assert_allclose(
        np.asarray(imported.apply(x4, training=True)["y"]),
        ref.apply(tf.constant(x4), training=True)["y"].numpy(),
        rtol=1e-6,
    )
    with pytest.raises(FunctionMatchError) as e:
        imported.apply(x4)  # shape (4, 2) was only traced with training=True
    with pytest.raises(ValueError):
        ref.apply(tf.constant(x4))
    assert "Option" in str(e.value), "the error lists the available signatures"
    with pytest.raises(FunctionMatchError):
        imported.apply(x.astype(np.int32))


def test_state_updates_are_kept(nested):
    imported = jaxsm.load(nested)
    ref = tf.saved_model.load(nested)
    for n in (1, 5, 2):
        assert int(imported.bump(np.int64(n))) == int(ref.bump(tf.constant(n, tf.int64)).numpy()), "counter"
    assert int(imported.count) == int(ref.count.numpy()), "counter variable after calls"
    for n in (0, 3, 1):
        assert float(imported.loop(np.int32(n))) == float(ref.loop(tf.constant(n)).numpy()), f"loop({n})"
    for x in (2.0, -1.0, 0.5):
        assert float(imported.branch(np.float32(x))) == float(ref.branch(tf.constant(x)).numpy()), f"branch({x})"
    assert float(imported.nested_call(np.float32(1.5))) == float(ref.nested_call(tf.constant(1.5)).numpy())
    assert int(imported.count) == int(ref.count.numpy()), "assignment in a nested call"
    assert float(imported.layers[0]) == float(ref.layers[0].numpy()), "assignment in branches"


def test_no_retrace_for_same_shapes(nested):
    imported = jaxsm.load(nested)
    cf = imported.bump.concrete_functions[0]
    imported.bump(np.int64(1))
    size = cf._jitted._cache_size()
    imported.bump(np.int64(2))
    assert cf._jitted._cache_size() == size, "a second call with the same shapes does not retrace"


def test_variable_api(nested):
    imported = jaxsm.load(nested)
    v = imported.layers[0]
    v.assign(5.0)
    assert float(v) == 5.0
    v.assign_add(1.0)
    v.assign_sub(0.5)
    assert float(v.numpy()) == 5.5
    assert float(imported.branch(np.float32(1.0))) == 6.5, "functions see Python-side assignments"
    assert np.asarray(v).dtype == np.float32
    assert v.shape == () and v.name


def test_dynamic_batch(tmp_path):
    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def f(self, x):
            b = tf.shape(x)[0]
            return tf.reshape(x, [b, 2, 2]) * tf.cast(b, tf.float32)

    path = _save(M(), tmp_path / "m")
    imported = jaxsm.load(path)
    ref = tf.saved_model.load(path)
    for b in (1, 3, 8):
        x = np.arange(4 * b, dtype=np.float32).reshape(b, 4)
        np.testing.assert_allclose(np.asarray(imported.f(x)), ref.f(tf.constant(x)).numpy(), err_msg=f"batch {b}")


def test_load_options(tmp_path):
    root = tf.train.Checkpoint(v=tf.Variable([1.0, 2.0]))
    root.f = tf.function(lambda: root.v * 2.0, input_signature=[])
    path = _save(root, tmp_path / "m")
    m = jaxsm.load(path, options=jaxsm.LoadOptions(load_variables=False))
    assert not m.v.initialized, "no variables loaded"
    with pytest.raises(jaxsm.errors.VariableError):
        m.f()
    m.v.assign([3.0, 4.0])
    np.testing.assert_allclose(np.asarray(m.f()), [6.0, 8.0])
    m2 = jaxsm.load(path, options=jaxsm.LoadOptions(verify_checksums=False))
    np.testing.assert_allclose(m2.v.numpy(), [1.0, 2.0])


def test_wrong_tags(tmp_path):
    root = tf.train.Checkpoint(v=tf.Variable(1.0))
    path = _save(root, tmp_path / "m")
    with pytest.raises(ValueError) as e:
        jaxsm.load(path, tags=["train"])
    assert "serve" in str(e.value)
    assert float(jaxsm.load(path, tags="serve").v) == 1.0


def test_assets_are_absolute_paths(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\n")

    class M(tf.Module):
        def __init__(self):
            self.vocab = tf.saved_model.Asset(str(vocab))

        @tf.function(input_signature=[])
        def path(self):
            return self.vocab.asset_path

    path = _save(M(), tmp_path / "m")
    vocab.unlink()  # the SavedModel's own copy under assets/ must be used
    loaded = jaxsm.load(path)
    got = loaded.path()
    want = tf.saved_model.load(path).path().numpy()
    assert got.item() == want, "asset path equals TF's"
    assert loaded.vocab.asset_path.item() == tf.saved_model.load(path).vocab.asset_path.numpy(), "the asset object"
    assert (tmp_path / "m" / "assets" / "vocab.txt").samefile(got.item().decode()), "absolute path into assets/"


def test_static_hash_table_and_int64_constants(tmp_path):
    class M(tf.Module):
        def __init__(self):
            self.v = tf.Variable(1.0, name="myvar")
            init = tf.lookup.KeyValueTensorInitializer(
                tf.constant([1, 5, 9, -(2**40)], tf.int64), tf.constant([10.0, 50.0, 90.0, 7.0])
            )
            self.table = tf.lookup.StaticHashTable(init, -1.0)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
        def f(self, k):
            return self.table.lookup(k) + self.v, self.table.size(), tf.constant(2**40, tf.int64) + k

    m = M()
    path = _save(m, tmp_path / "m")
    got = jaxsm.load(path)
    keys = np.array([1, 2, 9, -(2**40)], np.int64)
    ref = tf.saved_model.load(path)
    want = [t.numpy() for t in ref.f(tf.constant(keys))]
    out = got.f(keys)
    for g, w, name in zip(out, want, ("lookup", "size", "int64 arithmetic beyond 2**31")):
        np.testing.assert_array_equal(np.asarray(g), w, err_msg=name)
        assert np.asarray(g).dtype == w.dtype, name
    assert got.v.name == m.v.name == "myvar:0", "variable names as TF restores them"


def test_input_conversion_follows_tf(tmp_path):
    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def f(self, x):
            return {"y": x * 2}

        @tf.function
        def g(self, x):
            return x + 1

    m = M()
    m.g(tf.constant([1.0]))
    path = _save(m, tmp_path / "m", signatures={"serving_default": m.f})
    ref, got = tf.saved_model.load(path), jaxsm.load(path)
    calls = [
        ("sig", np.ones((1, 3))),  # float64 array -> float32 signature: converted
        ("f", np.ones((1, 3))),  # ... and for functions with an input_signature
        ("g", np.ones(1)),  # no input_signature: dtype must match
        ("g", [1.0]),  # Python lists are converted
        ("f", [[1, 2, 3]]),
        ("g", np.ones(1, np.float32)),
        ("g", 1.0),  # wrong shape
    ]
    for name, arg in calls:
        fn_ref = ref.signatures["serving_default"] if name == "sig" else getattr(ref, name)
        fn_got = got.signatures["serving_default"] if name == "sig" else getattr(got, name)
        try:
            want = fn_ref(x=arg) if name == "sig" else fn_ref(arg)
        except (ValueError, TypeError):
            with pytest.raises((ValueError, TypeError)):
                fn_got(x=arg) if name == "sig" else fn_got(arg)
            continue
        out = fn_got(x=arg) if name == "sig" else fn_got(arg)
        w = want["y"] if isinstance(want, dict) else want
        o = out["y"] if isinstance(out, dict) else out
        np.testing.assert_array_equal(np.asarray(o), w.numpy(), err_msg=f"{name}({arg!r})")
        assert np.asarray(o).dtype == w.dtype, f"{name}({arg!r}) dtype"


def test_variable_operators_match_tf(tmp_path):
    root = tf.train.Checkpoint(v=tf.Variable([1.0, -2.0, 4.0]), w=tf.Variable([2.0, 2.0, 0.5]))
    path = _save(root, tmp_path / "m")
    got, ref = jaxsm.load(path), tf.saved_model.load(path)
    cases = {
        "add": lambda v, w: v + w,
        "radd": lambda v, w: 1.0 + v,
        "sub": lambda v, w: v - w,
        "mul": lambda v, w: v * w,
        "div": lambda v, w: v / w,
        "rdiv": lambda v, w: 2.0 / v,
        "pow": lambda v, w: v**2,
        "neg": lambda v, w: -v,
        "abs": lambda v, w: abs(v),
        "lt": lambda v, w: v < w,
        "matmul": lambda v, w: v[None] @ w[:, None],
        "index": lambda v, w: v[1],
    }
    for name, fn in cases.items():
        np.testing.assert_allclose(np.asarray(fn(got.v, got.w)), np.asarray(fn(ref.v, ref.w)), err_msg=name)
    assert len(got.v) == 3 and float(got.v[2]) == 4.0


def test_int64_beyond_32_bits_without_x64(tmp_path):
    """With jax_enable_x64 off JAX narrows int64 to 32 bits: an input that would wrap is refused, a variable that
    would wrap is named in a warning; with x64 on the values are TF's."""

    class M(tf.Module):
        def __init__(self):
            self.big = tf.Variable(tf.constant(2**40 + 7, tf.int64))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
        def f(self, x):
            return x * 3 + self.big

    path = _save(M(), tmp_path / "m")
    small, big = np.array([1, -2], np.int64), np.array([2**35 + 1, 5], np.int64)
    ref = tf.saved_model.load(path)
    want = ref.f(big).numpy()
    with jax.enable_x64(False):
        loaded = jaxsm.load(path)
        with pytest.raises(Int64RangeError, match="34359738369"):
            loaded.f(big)
        with pytest.warns(UserWarning, match="variable 'big'"):
            loaded.f(small)
    with jax.enable_x64(True):
        np.testing.assert_array_equal(np.asarray(jaxsm.load(path).f(big)), want, err_msg="x64 on: TF's values")
