"""The JAX-native API: functional apply, grads vs tf.GradientTape, vmap, jax.export, nnx, sharding, precision."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsm

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def convnet(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3)(x)
    model = keras.Model(inp, out)
    path = tmp_path_factory.mktemp("convnet") / "m"
    model.export(str(path), verbose=False)
    return model, str(path)


def test_apply_matches_call_and_grads_match_tf(convnet):
    model, path = convnet
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    m = jaxsm.load(path)
    apply, params = jaxsm.functional(m.serve)
    assert not apply.assigns, "inference function does not assign"
    np.testing.assert_allclose(np.asarray(jax.jit(apply)(params, x)), np.asarray(m.serve(x)), rtol=1e-6)
    trainable, rest = jaxsm.split_trainable(m.serve, params)
    assert rest, "BatchNorm statistics are non-trainable"
    loss = lambda t, x: jnp.sum(apply(jaxsm.merge(t, rest), x) ** 2)  # noqa: E731
    gt, gx = jax.grad(loss, argnums=(0, 1))(trainable, x)
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        ref = tf.reduce_sum(model(xt, training=False) ** 2)
    want_x, *want_w = tape.gradient(ref, [xt] + model.trainable_variables)
    np.testing.assert_allclose(np.asarray(gx), want_x.numpy(), rtol=1e-4, atol=1e-5, err_msg="d/dx")
    got_w = sorted(((tuple(v.shape), float(np.sum(v))), np.asarray(v)) for v in jax.tree_util.tree_leaves(gt))
    want_sorted = sorted(((tuple(w.shape), float(np.sum(w))), w.numpy()) for w in want_w)
    assert len(got_w) == len(want_sorted), "one gradient per trainable variable"
    for (s1, a), (s2, b) in zip(got_w, want_sorted):
        assert s1[0] == s2[0]
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"d/dw {s1}")


def test_vmap_and_export(convnet):
    _, path = convnet
    apply, params = jaxsm.functional(jaxsm.load(path).serve)
    xs = np.random.default_rng(1).normal(size=(5, 8, 8, 3)).astype(np.float32)
    per_example = jax.vmap(lambda x: apply(params, x[None])[0])(xs)
    np.testing.assert_allclose(np.asarray(per_example), np.asarray(apply(params, xs)), rtol=1e-5, atol=1e-6)
    (b,) = jax.export.symbolic_shape("b")
    exp = jax.export.export(jax.jit(apply))(params, jax.ShapeDtypeStruct((b, 8, 8, 3), jnp.float32))
    restored = jax.export.deserialize(exp.serialize())
    for n in (1, 5):
        np.testing.assert_allclose(
            np.asarray(restored.call(params, xs[:n])),
            np.asarray(apply(params, xs[:n])),
            rtol=1e-6,
            err_msg=f"exported, batch {n}",
        )


def test_apply_inside_lax_scan(convnet):
    _, path = convnet
    apply, params = jaxsm.functional(jaxsm.load(path).serve)
    xs = np.random.default_rng(8).normal(size=(3, 2, 8, 8, 3)).astype(np.float32)

    def body(total, x):
        y = apply(params, x)
        return total + jnp.sum(y), y

    total, ys = jax.lax.scan(body, jnp.float32(0), xs)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(ys[i]), np.asarray(apply(params, xs[i])), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(total), float(jnp.sum(ys)), rtol=1e-5)


def test_export_with_symbolic_batch_through_shape_arithmetic(tmp_path):
    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def f(self, x):
            b = tf.shape(x)[0]
            y = tf.reshape(x, [b, 2, -1]) * tf.cast(b, tf.float32)
            z = tf.reshape(x, tf.stack([b * 2, tf.size(x) // (b * 2)]))
            return y, z, tf.fill(tf.shape(x)[:1], 2.0) + tf.reduce_sum(x, axis=1)

    m = M()
    tf.saved_model.save(m, str(tmp_path))
    apply, params = jaxsm.functional(jaxsm.load(str(tmp_path)).f)
    (b,) = jax.export.symbolic_shape("b")
    exp = jax.export.export(jax.jit(apply))(params, jax.ShapeDtypeStruct((b, 4), jnp.float32))
    for n in (1, 3):
        x = np.arange(4 * n, dtype=np.float32).reshape(n, 4)
        for got, want in zip(exp.call(params, x), m.f(tf.constant(x))):
            np.testing.assert_allclose(np.asarray(got), want.numpy(), err_msg=f"batch {n}")


def test_assigning_function_returns_new_params(tmp_path):
    class M(tf.Module):
        def __init__(self):
            self.n = tf.Variable(0.0)

        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def add(self, x):
            self.n.assign_add(x)
            return self.n * 2.0

    tf.saved_model.save(M(), str(tmp_path))
    apply, params = jaxsm.functional(jaxsm.load(str(tmp_path)).add)
    assert apply.assigns
    out, new = apply(params, 3.0)
    assert float(out) == 6.0 and float(new["n"]) == 3.0 and float(params["n"]) == 0.0, "pure: params untouched"


@pytest.mark.parametrize("how", ["optimizer_op", "slice_assign", "scatter"])
def test_every_kind_of_update_returns_new_params(how, tmp_path):
    """Functions that change variables only through an optimizer's fused update, a sliced assign or a scatter
    return (outputs, new_params) too, with the values TF computes."""

    class M(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.arange(4, dtype=np.float32))

        @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)])
        def step(self, g):
            if how == "optimizer_op":
                tf.raw_ops.ResourceApplyGradientDescent(var=self.w.handle, alpha=0.5, delta=g)
            elif how == "slice_assign":
                self.w[1:3].assign(g[:2])
            else:
                self.w.scatter_add(tf.IndexedSlices(g[:2], [3, 3]))
            return tf.reduce_sum(g)

    m = M()
    tf.saved_model.save(m, str(tmp_path))
    apply, params = jaxsm.functional(jaxsm.load(str(tmp_path)).step)
    assert apply.assigns
    g = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    out, new = apply(params, g)
    m.step(g)
    np.testing.assert_allclose(np.asarray(new["w"]), m.w.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(params["w"]), np.arange(4, dtype=np.float32), "params untouched")


def test_nnx_fine_tuning(convnet):
    import optax
    from flax import nnx

    _, path = convnet
    module = jaxsm.nnx.from_saved_model(path)
    x = np.random.default_rng(2).normal(size=(8, 8, 8, 3)).astype(np.float32)
    y = np.random.default_rng(3).normal(size=(8, 3)).astype(np.float32)
    opt = nnx.Optimizer(module, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(module, opt, x, y):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(module)
        opt.update(module, grads)
        return loss

    # the first step's gradient equals TF's for the same loss on the Keras model
    model, _ = convnet
    grads = nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(module)
    with tf.GradientTape() as tape:
        ref_loss = tf.reduce_mean((model(tf.constant(x), training=False) - y) ** 2)
    want = [w.numpy() for w in tape.gradient(ref_loss, model.trainable_variables)]
    got = [np.asarray(g) for g in jax.tree_util.tree_leaves(nnx.state(grads, nnx.Param))]

    def key(a):
        return (a.shape, round(float(np.abs(a).sum()), 4))

    assert len(got) == len(want), "one gradient per trainable variable"
    for a, b in zip(sorted(got, key=key), sorted(want, key=key)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=f"first-step gradient {a.shape}")

    losses = [float(step(module, opt, x, y)) for _ in range(5)]
    assert losses[-1] < losses[0], f"loss decreases: {losses}"


def test_param_dtype_bfloat16(convnet):
    _, path = convnet
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 3)).astype(np.float32)
    full = np.asarray(jaxsm.load(path).serve(x))
    m = jaxsm.load(path, options=jaxsm.LoadOptions(param_dtype=jnp.bfloat16))
    assert {np.dtype(v.dtype) for v in m.variables} == {np.dtype(jnp.bfloat16)}, "float variables stored as bf16"
    np.testing.assert_allclose(np.asarray(m.serve(x), np.float32), full, rtol=5e-2, atol=5e-2 * np.abs(full).max())


def test_sharded_inference_in_subprocess(convnet, tmp_path):
    _, path = convnet
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,), dtype="int32")
    emb_model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Embedding(64, 8)(inp))))
    emb_path = str(tmp_path / "emb")
    emb_model.export(emb_path, verbose=False)
    code = textwrap.dedent(f"""
        import os
        import jax, numpy as np, jaxsm
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        assert len(jax.devices()) == 8
        mesh = Mesh(np.array(jax.devices()), ("data",))
        opts = jaxsm.LoadOptions(sharding=NamedSharding(mesh, P()))
        m = jaxsm.load({path!r}, options=opts)
        x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype(np.float32)
        xs = jax.device_put(x, NamedSharding(mesh, P("data")))
        y = m.serve(xs)
        single = jaxsm.load({path!r}).serve(x)
        np.testing.assert_allclose(np.asarray(y), np.asarray(single), rtol=1e-5, atol=1e-6)
        assert len(y.sharding.device_set) == 8
        # a large embedding table sharded by rows, everything else replicated
        emb = {emb_path!r}
        def place(path, shape, dtype):
            return NamedSharding(mesh, P("data", None) if shape == (64, 8) else P())
        e = jaxsm.load(emb, options=jaxsm.LoadOptions(sharding=place))
        table = next(v for v in e.variables if v.shape == (64, 8))
        assert table.value().sharding.spec == P("data", None), table.value().sharding
        ids = np.arange(16, dtype=np.int32).reshape(4, 4) * 4
        np.testing.assert_allclose(np.asarray(e.serve(ids)), np.asarray(jaxsm.load(emb).serve(ids)), rtol=1e-6)
        print("ok")
    """)
    env = dict(__import__("os").environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def _grad_check(model, x, path, rtol=1e-4):
    """Gradients of sum(out**2) wrt inputs (float only) and trainable variables: jaxsm vs tf.GradientTape."""
    model.export(str(path), verbose=False)
    m = jaxsm.load(str(path))
    apply, params = jaxsm.functional(m.serve)
    trainable, rest = jaxsm.split_trainable(m.serve, params)
    float_input = np.dtype(x.dtype).kind == "f"

    def loss(t, x):
        return jnp.sum(apply(jaxsm.merge(t, rest), x) ** 2)

    grads = jax.grad(loss, argnums=(0, 1) if float_input else (0,))(trainable, x)
    gt, gx = grads if float_input else (grads[0], None)
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        if float_input:
            tape.watch(xt)
        ref = tf.reduce_sum(model(xt, training=False) ** 2)
    grads = tape.gradient(ref, ([xt] if float_input else []) + model.trainable_variables)
    if float_input:
        want_x, *want_w = grads
        np.testing.assert_allclose(np.asarray(gx), want_x.numpy(), rtol=rtol, atol=rtol * 1e-1, err_msg="d/dx")
    else:
        want_w = grads
    want_w = [tf.convert_to_tensor(w).numpy() for w in want_w]

    def key(a):  # match gradients by shape and rough content (paths differ between Keras and the SavedModel)
        a = np.asarray(a, np.float64)
        return (a.shape, round(float(a.sum()), 3), round(float(np.abs(a).sum()), 3))

    got = sorted(((key(v), np.asarray(v)) for v in jax.tree_util.tree_leaves(gt)), key=lambda t: t[0])
    want = sorted(((key(w), w) for w in want_w), key=lambda t: t[0])
    assert [k[0] for k, _ in got] == [k[0] for k, _ in want], "one gradient per trainable variable"
    for (k, a), (_, b) in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1e-3, float(np.abs(b).max())), err_msg=f"d/dw {k}")


@pytest.mark.parametrize("kind", ["lstm", "gru", "attention", "embedding"])
def test_gradients_match_tf(kind, tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(7)
    if kind in ("lstm", "gru"):
        inp = keras.Input((6, 4))
        layer = keras.layers.LSTM(5) if kind == "lstm" else keras.layers.GRU(5)
        model = keras.Model(inp, keras.layers.Dense(2)(layer(inp)))
        x = rng.normal(size=(3, 6, 4)).astype(np.float32)
    elif kind == "attention":
        inp = keras.Input((5, 8))
        att = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(inp, inp)
        model = keras.Model(inp, keras.layers.LayerNormalization()(inp + att))
        x = rng.normal(size=(2, 5, 8)).astype(np.float32)
    else:
        inp = keras.Input((7,), dtype="int32")
        h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 6)(inp))
        model = keras.Model(inp, keras.layers.Dense(3)(h))
        x = rng.integers(0, 20, size=(4, 7)).astype(np.int32)
    _grad_check(model, x, tmp_path / kind)


def test_functions_with_lookup_tables(tmp_path):
    """Lookup tables are constants of apply (not params): an int64 table under jax.jit, a string table op by op."""

    class M(tf.Module):
        def __init__(self):
            self.w = tf.Variable(2.0)
            init = tf.lookup.KeyValueTensorInitializer(tf.constant([3, -(2**40), 9], tf.int64), [1.0, 2.0, 3.0])
            self.ids = tf.lookup.StaticHashTable(init, -1.0)
            self.words = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(["a", "b"], [5, 6]), -1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
        def f(self, k):
            return self.ids.lookup(k) * self.w

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def g(self, s):
            return self.words.lookup(s)

    m = M()
    tf.saved_model.save(m, str(tmp_path))
    loaded = jaxsm.load(str(tmp_path))
    k = np.array([9, 4, -(2**40)], np.int64)
    apply, params = jaxsm.functional(loaded.f)
    np.testing.assert_allclose(np.asarray(jax.jit(apply)(params, k)), m.f(k).numpy())
    apply_g, params_g = jaxsm.functional(loaded.g)
    np.testing.assert_array_equal(np.asarray(apply_g(params_g, ["b", "z"])), m.g(tf.constant(["b", "z"])).numpy())


@tf.custom_gradient
def _clipped_square(x):
    def grad(dy):
        return tf.clip_by_value(dy, -0.1, 0.1) * x  # captures the forward input

    return x * x, grad


@tf.custom_gradient
def _reverse_gradient(x):
    return tf.identity(x), lambda dy: -3.0 * dy


class _CustomGradients(tf.Module):
    def __init__(self):
        self.w = tf.Variable([1.0, -2.0, 3.0])
        self.b = tf.Variable(0.5)

    @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
    def f(self, x):
        h = _clipped_square(x * self.w) + _reverse_gradient(self.b * x)
        return tf.reduce_sum(h**2)


def test_saved_custom_gradients_are_the_vjp(tmp_path):
    """tf.custom_gradient's saved gradient functions (registered_gradients) are what jax.grad uses, as TF's tape
    does, for inputs and variables, under jit too; the value is unchanged."""
    ref = _CustomGradients()
    tf.saved_model.save(ref, str(tmp_path))
    loaded = jaxsm.load(str(tmp_path))
    x = np.array([0.5, 1.0, -1.5], np.float32)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = ref.f(xt)
    want_x, want_w, want_b = tape.gradient(y, [xt, ref.w, ref.b])
    apply, params = jaxsm.functional(loaded.f)
    np.testing.assert_allclose(float(apply(params, x)), y.numpy(), rtol=1e-6, err_msg="value")
    np.testing.assert_allclose(jax.grad(lambda v: apply(params, v))(x), want_x.numpy(), rtol=1e-5, err_msg="d/dx")
    grads = jax.jit(jax.grad(lambda p: apply(p, x)))(params)
    np.testing.assert_allclose(grads["w"], want_w.numpy(), rtol=1e-5, err_msg="d/dw")
    np.testing.assert_allclose(grads["b"], want_b.numpy(), rtol=1e-5, err_msg="d/db")
