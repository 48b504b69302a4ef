"""JAX transformations over loaded SavedModels, probed against TF: jax.vmap of restored functions whose lowerings
are shape-sensitive (gathers, scatters, dynamic slices, conds/cases and loops with per-example predicates,
TensorArrays, sorts, convolutions, stateless random ops, segment sums, Keras layers), in_axes and nested vmap,
per-example gradients, stateful functions under transformations, compilation (donation, lower/compile, export with a
symbolic batch, remat, linearize), sharding over several CPU devices, and half-precision and integer dtypes.
TF's oracle for a vmap is the function called on each example, stacked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsm
from tests.tfcompare import assert_close

tf = pytest.importorskip("tensorflow")

f32, i32 = np.float32, np.int32
_rng = np.random.default_rng(0)


def _spec(shape, dtype=tf.float32):
    return tf.TensorSpec(shape, dtype)


def _vmap_module():
    class Module(tf.Module):
        def __init__(self):
            self.table = tf.Variable(_rng.normal(size=(5, 3)).astype(f32))
            self.kernel = tf.Variable(_rng.normal(size=(2, 2, 2, 3)).astype(f32))

        @tf.function(input_signature=[_spec([2], tf.int32)])
        def gather(self, i):
            return tf.gather(self.table, i) * 2.0, tf.gather(self.table, i % 3, axis=1)

        @tf.function(input_signature=[_spec([4, 3]), _spec([2, 2], tf.int32)])
        def gather_nd(self, x, i):
            return tf.gather_nd(x, i), tf.gather_nd(x, i[:, :1])

        @tf.function(input_signature=[_spec([5]), _spec([2], tf.int32), _spec([2])])
        def scatter(self, x, i, u):
            upd = tf.tensor_scatter_nd_update(x, i[:, None], u)
            add = tf.tensor_scatter_nd_add(x, i[:, None], u)
            return upd, add, tf.scatter_nd(i[:, None], u, [5])

        @tf.function(input_signature=[_spec([6]), _spec([], tf.int32)])
        def dyn_slice(self, x, b):
            return tf.slice(x, [b], [3]), tf.roll(x, b, 0), x[b]

        @tf.function(input_signature=[_spec([6]), _spec([], tf.int32)])
        def run_time_range(self, x, b):
            return x[b : b + 2]

        @tf.function(input_signature=[_spec([3])])
        def loss(self, x):
            return tf.reduce_sum(tf.tanh(tf.linalg.matvec(self.table, x)) ** 2)

        @tf.function(input_signature=[_spec([4]), _spec([2], tf.int64)])
        def ragged(self, x, lengths):
            return tf.RaggedTensor.from_row_lengths(x * 2.0, lengths)

        @tf.function(input_signature=[_spec([4])])
        def sparse(self, x):
            return tf.sparse.from_dense(x)

        @tf.function(input_signature=[_spec([3]), _spec([], tf.bool)])
        def cond(self, x, p):
            return tf.cond(p, lambda: x * 2.0, lambda: tf.sin(x) - self.table[0])

        @tf.function(input_signature=[_spec([3]), _spec([], tf.int32)])
        def case(self, x, i):
            return tf.switch_case(i, [lambda: x * 2.0, lambda: -x, lambda: tf.exp(x) + self.table[1]])

        @tf.function(input_signature=[_spec([3])])
        def while_fixed(self, x):
            return tf.while_loop(lambda i, h: i < 4, lambda i, h: (i + 1, tf.tanh(h * 1.5) + x), [0, x])[1]

        @tf.function(input_signature=[_spec([3])])
        def while_dyn(self, x):
            # a data-dependent trip count: the predicate reads the carried value
            return tf.while_loop(lambda h: tf.reduce_sum(h) < 10.0, lambda h: h * 1.5 + 0.5, [x])[0]

        @tf.function(input_signature=[_spec([4])])
        def scan(self, x):
            return tf.scan(lambda a, v: a * 0.5 + v, x), tf.scan(lambda a, v: a + v, x, reverse=True)

        @tf.function(input_signature=[_spec([4, 3])])
        def map_fn(self, x):
            return tf.map_fn(lambda r: tf.reduce_sum(r) * r + self.table[2], x)

        @tf.function(input_signature=[_spec([4])])
        def tensor_array(self, x):
            ta = tf.TensorArray(tf.float32, size=4)
            h = 0.0
            for i in tf.range(4):
                h = h * 0.5 + x[3 - i]
                ta = ta.write(i, h)
            return ta.stack(), ta.gather([3, 0])

        @tf.function(input_signature=[_spec([5])])
        def sort_topk(self, x):
            top = tf.math.top_k(x, 2)
            return tf.sort(x, direction="DESCENDING"), tf.argsort(x), top.values, top.indices

        @tf.function(input_signature=[_spec([3]), _spec([], tf.int32)])
        def while_ta(self, x, n):
            ta = tf.TensorArray(tf.float32, size=5)
            i, h = tf.constant(0), x
            while i < n:  # a run-time (per-example) trip count writing a fixed-size TensorArray
                h = h * 0.5 + 1.0
                ta = ta.write(i, h)
                i += 1
            return ta.stack(), h

        @tf.function(input_signature=[_spec([4, 3]), _spec([4], tf.int32)])
        def gather_batch_dims(self, x, i):
            return tf.gather(x, i[:, None] % 3, batch_dims=1), tf.zeros(tf.shape(x)) + 1.0, tf.reshape(x, [-1])[:5]

        @tf.function(input_signature=[_spec([5])])
        def ties(self, x):
            return tf.math.top_k(x, 3).indices, tf.argsort(x, stable=True), tf.argmax(x)

        @tf.function(input_signature=[_spec([2, 4, 4, 3])])
        def image(self, x):
            return (
                tf.image.resize(x, [3, 5]),
                tf.nn.depthwise_conv2d(x, tf.transpose(self.kernel, [0, 1, 3, 2])[..., :1], [1, 1, 1, 1], "SAME"),
                tf.nn.conv2d_transpose(x, tf.ones([2, 2, 2, 3]), tf.stack([tf.shape(x)[0], 8, 8, 2]), 2),
            )

        @tf.function(input_signature=[_spec([5])])
        def cumsum(self, x):
            return tf.cumsum(x, exclusive=True, reverse=True), tf.math.cumprod(x), tf.math.cumulative_logsumexp(x)

        @tf.function(input_signature=[_spec([2, 3]), _spec([3, 4])])
        def einsum(self, a, b):
            return tf.einsum("ij,jk->ik", a, b), tf.einsum("ij,ij->i", a, a), tf.einsum("ij->ji", a)

        @tf.function(input_signature=[_spec([1, 5, 5, 2])])
        def conv_pool(self, x):
            y = tf.nn.conv2d(x, self.kernel, strides=1, padding="SAME")
            z = tf.nn.conv2d(x, self.kernel, strides=2, padding="VALID", dilations=1)
            return tf.nn.max_pool2d(y, 2, 2, "VALID"), tf.nn.avg_pool2d(y, 3, 1, "SAME"), z

        @tf.function(input_signature=[_spec([2, 2, 3]), _spec([3, 4])])
        def matmul(self, a, b):
            return tf.matmul(a, b), tf.linalg.matmul(a, a, transpose_b=True)

        @tf.function(input_signature=[_spec([2], tf.int32)])
        def random(self, seed):
            return (
                tf.random.stateless_uniform([3], seed),
                tf.random.stateless_normal([2], seed),
                tf.random.stateless_uniform([2], seed, minval=0, maxval=7, dtype=tf.int32),
            )

        @tf.function(input_signature=[_spec([3], tf.int32), _spec([3, 4])])
        def one_hot_argmax(self, i, x):
            return tf.one_hot(i, 4), tf.argmax(x, axis=1), tf.argmin(x, axis=0, output_type=tf.int32)

        @tf.function(input_signature=[_spec([5]), _spec([5], tf.int32)])
        def segments(self, x, ids):
            return (
                tf.math.unsorted_segment_sum(x, ids, num_segments=3),
                tf.math.unsorted_segment_max(x, ids, num_segments=3),
                tf.math.bincount(ids, minlength=4, maxlength=4),
            )

    return Module()


def _cases():
    r = np.random.default_rng(1)
    n = 3  # batch size of every vmap
    return {
        "gather": [r.integers(0, 5, (n, 2)).astype(i32)],
        "gather_nd": [
            r.normal(size=(n, 4, 3)).astype(f32),
            np.stack([r.integers(0, [4, 3], (2, 2)) for _ in range(n)]).astype(i32),
        ],
        "scatter": [
            r.normal(size=(n, 5)).astype(f32),
            r.integers(0, 5, (n, 2)).astype(i32),
            r.normal(size=(n, 2)).astype(f32),
        ],
        "dyn_slice": [r.normal(size=(n, 6)).astype(f32), np.array([0, 3, 2], i32)],
        "cond": [r.normal(size=(n, 3)).astype(f32), np.array([True, False, True])],
        "case": [r.normal(size=(n, 3)).astype(f32), np.array([2, 0, 1], i32)],
        "while_fixed": [r.normal(size=(n, 3)).astype(f32)],
        "while_dyn": [np.array([[0.1, 0.2, 0.3], [3.0, 4.0, 5.0], [-1.0, 0.5, 1.0]], f32)],
        "scan": [r.normal(size=(n, 4)).astype(f32)],
        "map_fn": [r.normal(size=(n, 4, 3)).astype(f32)],
        "tensor_array": [r.normal(size=(n, 4)).astype(f32)],
        "while_ta": [r.normal(size=(n, 3)).astype(f32), np.array([1, 5, 3], i32)],
        "gather_batch_dims": [r.normal(size=(n, 4, 3)).astype(f32), r.integers(0, 4, (n, 4)).astype(i32)],
        "ties": [np.array([[1, 3, 3, 1, 3], [0, 0, 0, 0, 0], [2, 1, 2, 1, 0]], f32)],
        "image": [r.normal(size=(n, 2, 4, 4, 3)).astype(f32)],
        "sort_topk": [r.normal(size=(n, 5)).astype(f32)],
        "cumsum": [r.normal(size=(n, 5)).astype(f32)],
        "einsum": [r.normal(size=(n, 2, 3)).astype(f32), r.normal(size=(n, 3, 4)).astype(f32)],
        "conv_pool": [r.normal(size=(n, 1, 5, 5, 2)).astype(f32)],
        "matmul": [r.normal(size=(n, 2, 2, 3)).astype(f32), r.normal(size=(n, 3, 4)).astype(f32)],
        "random": [np.array([[1, 2], [3, 4], [1, 2]], i32)],
        "one_hot_argmax": [np.array([[0, 3, 5], [-1, 1, 2], [2, 2, 2]], i32), r.normal(size=(n, 3, 4)).astype(f32)],
        "segments": [r.normal(size=(n, 5)).astype(f32), r.integers(0, 3, (n, 5)).astype(i32)],
    }


@pytest.fixture(scope="module")
def vmapped(tmp_path_factory):
    m = _vmap_module()
    path = str(tmp_path_factory.mktemp("vmap") / "m")
    tf.saved_model.save(m, path)
    return m, jaxsm.load(path)


def _per_example(fn, inputs):
    """TF's oracle for a vmap over the leading axis: ``fn`` on each example, outputs stacked."""
    outs = [fn(*[tf.constant(x[k]) for x in inputs]) for k in range(len(inputs[0]))]
    return jax.tree.map(lambda *ys: np.stack([np.asarray(y) for y in ys]), *outs)


def _assert_tree_close(got, want, what, rtol=1e-5, atol=1e-6):
    got_l, want_l = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got_l) == len(want_l), f"{what}: {len(got_l)} outputs != TF's {len(want_l)}"
    for k, (g, w) in enumerate(zip(got_l, want_l)):
        assert_close(g, w, f"{what} output {k}", rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", list(_cases()))
def test_vmap_shape_sensitive_lowerings(vmapped, name):
    """jax.vmap over restored functions (the method itself) and jax.jit(jax.vmap) over their pure functions, with
    per-example indices, predicates, slice starts, seeds and trip counts, gives TF's per-example results."""
    m, got = vmapped
    inputs = _cases()[name]
    want = _per_example(getattr(m, name), inputs)
    _assert_tree_close(jax.vmap(getattr(got, name))(*inputs), want, f"vmap {name}")
    apply, params = jaxsm.functional(getattr(got, name))
    _assert_tree_close(jax.jit(jax.vmap(lambda *a: apply(params, *a)))(*inputs), want, f"jit(vmap(apply)) {name}")


def test_vmap_in_axes_nested_and_per_example_grads(vmapped):
    """in_axes other than 0 (and None), nested vmap, and vmap of grad (per-example gradients with respect to the
    inputs and to the variables) against TF's GradientTape on each example."""
    m, got = vmapped
    a, b = _cases()["einsum"]
    want = _per_example(m.einsum, [a, b])
    _assert_tree_close(jax.vmap(got.einsum, in_axes=(2, 0))(np.moveaxis(a, 0, 2), b), want, "in_axes=(2, 0)")
    want_b0 = _per_example(lambda x: m.einsum(x, tf.constant(b[0])), [a])
    _assert_tree_close(jax.vmap(got.einsum, in_axes=(0, None))(a, b[0]), want_b0, "in_axes=(0, None)")
    x, i = _cases()["case"]
    xs, ids = np.stack([x, x[::-1]]), np.array([[0, 1, 2], [2, 2, 1]], i32)
    want = np.stack([_per_example(m.case, [xs[k], ids[k]]) for k in range(2)])
    assert_close(jax.vmap(jax.vmap(got.case))(xs, ids), want, "nested vmap of a run-time switch_case")
    assert_close(jax.vmap(jax.vmap(got.case), in_axes=(1, 1))(xs.swapaxes(0, 1), ids.T), want, "nested, in_axes 1")

    xs = _rng.normal(size=(3, 3)).astype(f32)
    apply, params = jaxsm.functional(got.loss)
    grads_x, grads_p = [], []
    for x in xs:
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = m.loss(xt)
        gx, gp = tape.gradient(y, [xt, m.table])
        grads_x.append(gx.numpy())
        grads_p.append(gp.numpy())
    per_x = jax.vmap(jax.grad(got.loss))(xs)
    assert_close(per_x, np.stack(grads_x), "per-example input gradients of the method")
    per_p = jax.jit(jax.vmap(jax.grad(apply), in_axes=(None, 0)))(params, xs)
    assert_close(per_p["table"], np.stack(grads_p), "per-example variable gradients", atol=1e-5)


def test_vmap_of_ragged_sparse_and_run_time_slices(vmapped):
    """A ragged output under vmap is a jaxsm.RaggedTensor whose components carry the batch axis (each example's
    slice is TF's ragged tensor); a sparse output whose size depends on the values, and a slice whose size XLA
    cannot know, raise jaxsm's StaticValueError under vmap -- never a wrong answer."""
    m, got = vmapped
    xs = _rng.normal(size=(2, 4)).astype(f32)
    lengths = np.array([[1, 3], [4, 0]], np.int64)
    out = jax.vmap(got.ragged)(xs, lengths)
    assert isinstance(out, jaxsm.RaggedTensor), type(out)
    for k in range(2):
        want = m.ragged(xs[k], lengths[k])
        assert_close(out.flat_values[k], want.flat_values.numpy(), f"example {k} flat_values")
        assert_close(out.row_splits[k], want.row_splits.numpy(), f"example {k} row_splits")
    with pytest.raises(jaxsm.errors.StaticValueError):
        jax.vmap(got.sparse)(xs)
    with pytest.raises(jaxsm.errors.StaticValueError):
        jax.vmap(got.run_time_range)(np.ones((2, 6), f32), np.array([0, 1], i32))


def _state_module():
    class Module(tf.Module):
        def __init__(self):
            self.v = tf.Variable([1.0, 2.0])
            self.steps = tf.Variable(0, dtype=tf.int64)

        @tf.function(input_signature=[_spec([2])])
        def step(self, x):
            self.v.assign(self.v * 0.5 + x)
            self.steps.assign_add(1)
            return tf.reduce_sum(self.v * x)

    return Module()


def test_stateful_function_under_transformations(tmp_path):
    """A restored function that assigns variables cannot write them back from inside the caller's jit/vmap/grad:
    VariableError (not a leaked tracer); jaxsm.functional's apply returns TF's new state instead, also under jit,
    vmap (one state per example) and grad."""
    m = _state_module()
    tf.saved_model.save(m, str(tmp_path / "m"))
    got = jaxsm.load(str(tmp_path / "m"))
    x = np.array([0.5, -1.0], f32)
    for name, t in [("jit", jax.jit), ("vmap", jax.vmap), ("grad", jax.grad)]:
        arg = x[None] if name == "vmap" else x
        with pytest.raises(jaxsm.errors.VariableError):
            t(got.step)(arg)
    assert_close(got.v.numpy(), m.v.numpy(), "variable untouched by the failed calls")
    assert_close(got.step(x), m.step(x).numpy(), "eager call after them")  # both models now one step on

    apply, params = jaxsm.functional(got.step)
    assert apply.assigns
    before = {"v": m.v.numpy(), "steps": m.steps.numpy()}
    want = m.step(x).numpy()
    out, new = jax.jit(apply)(params, x)
    assert_close(out, want, "apply output")
    assert_close(new["v"], m.v.numpy(), "new v")
    assert_close(new["steps"], m.steps.numpy(), "new steps")
    assert_close(got.v.numpy(), before["v"], "apply leaves the loaded variable alone")
    xs = np.array([[0.5, -1.0], [2.0, 3.0]], f32)
    outs, news = jax.vmap(apply, in_axes=(None, 0))(params, xs)
    for k in range(2):
        assert_close(outs[k], np.sum((before["v"] * 0.5 + xs[k]) * xs[k]), f"vmapped output {k}")
        assert_close(news["v"][k], before["v"] * 0.5 + xs[k], f"vmapped new v {k}")
    g = jax.grad(lambda x: apply(params, x)[0])(x)
    assert_close(g, before["v"] * 0.5 + 2 * x, "grad through the assignment")


@pytest.fixture(scope="module")
def keras_models(tmp_path_factory):
    """A Keras 3 MLP, a CNN and a sequence model (Conv1D, LSTM, attention), exported; (TF model, jaxsm model)."""
    keras = pytest.importorskip("keras")
    L = keras.layers
    keras.utils.set_random_seed(0)
    seq = keras.Input((None, 4))  # time steps known only from the input (see the export test below)
    h = L.LSTM(3, return_sequences=True)(L.Conv1D(3, 2, padding="same")(seq))
    h = L.MultiHeadAttention(num_heads=2, key_dim=2)(h, h)
    models = {
        "mlp": keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(2)]),
        "cnn": keras.Sequential(
            [keras.Input((6, 6, 2)), L.Conv2D(3, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(), L.Dense(2)]
        ),
        "seq": keras.Model(seq, L.Dense(2)(L.GlobalAveragePooling1D()(h))),
    }
    out = {}
    for name, model in models.items():
        path = str(tmp_path_factory.mktemp("keras") / name)
        model.export(path, verbose=False)
        out[name] = (model, jaxsm.load(path))
        out[name + "_path"] = path
    return out


_KERAS_X = {
    "mlp": _rng.normal(size=(3, 4)).astype(f32),
    "cnn": _rng.normal(size=(3, 6, 6, 2)).astype(f32),
    "seq": _rng.normal(size=(3, 5, 4)).astype(f32),
}


@pytest.mark.parametrize("name", list(_KERAS_X))
def test_vmap_and_grads_of_keras_models(keras_models, name):
    """vmap of a Keras model's serving endpoint over examples (each a batch of one), nested vmap, and
    per-example input gradients, against TF on the batch and TF's GradientTape."""
    model, got = keras_models[name]
    xb = _KERAS_X[name]
    want = model(xb).numpy()
    one = lambda x: got.serve(x[None])[0]  # noqa: E731
    assert_close(jax.vmap(one)(xb), want, "vmap", rtol=1e-4, atol=1e-5)
    apply, params = jaxsm.functional(got.serve)
    pure_one = lambda x: apply(params, x[None])[0]  # noqa: E731
    if name == "mlp":  # (the others trace long enough already)
        nested = jax.jit(jax.vmap(jax.vmap(pure_one)))(np.stack([xb, xb[::-1]]))
        assert_close(nested, np.stack([want, want[::-1]]), "jit(nested vmap(apply))", rtol=1e-4, atol=1e-5)
    xt = tf.constant(xb)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.reduce_sum(model(xt) ** 2)
    per_example = jax.vmap(jax.grad(lambda x: jnp.sum(pure_one(x) ** 2)))(xb)
    assert_close(per_example, tape.gradient(y, xt).numpy(), "per-example input gradients", rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Some donated buffers were not usable")
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_compilation_paths_of_keras_models(keras_models, name):
    """jit with donated params, lower/compile/as_text, jax.export with a symbolic batch (serialized, called back at
    two batch sizes), jax.checkpoint, linearize, jacfwd/jacrev and eval_shape of the pure apply, against TF."""
    model, got = keras_models[name]
    xb = _KERAS_X[name]
    want = model(xb).numpy()
    apply, params = jaxsm.functional(got.serve)
    tol = dict(rtol=1e-4, atol=1e-5)

    donated = jax.tree.map(jnp.copy, params)
    assert_close(jax.jit(apply, donate_argnums=0)(donated, xb), want, "donated params", **tol)
    assert_close(got.serve(xb), want, "the loaded model after a call donating copies of its params", **tol)

    lowered = jax.jit(apply).lower(params, xb)
    assert "func.func" in lowered.as_text()
    compiled = lowered.compile()
    assert "HloModule" in compiled.as_text()
    assert_close(compiled(params, xb), want, "lower().compile()", **tol)

    (b,) = jax.export.symbolic_shape("b")
    sym = jax.ShapeDtypeStruct((b, *xb.shape[1:]), jnp.float32)
    exp = jax.export.deserialize(jax.export.export(jax.jit(apply))(params, sym).serialize())
    assert_close(exp.call(params, xb), want, "exported, batch 3", **tol)
    assert_close(exp.call(params, xb[:1]), want[:1], "exported, batch 1", **tol)
    assert jax.eval_shape(apply, params, sym).shape[1:] == (2,)
    assert jax.eval_shape(apply, params, jax.ShapeDtypeStruct((7, *xb.shape[1:]), jnp.float32)) == (
        jax.ShapeDtypeStruct((7, 2), jnp.float32)
    )

    xt = tf.constant(xb[:1])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        y = model(xt)
        loss = tf.reduce_sum(y**2)
    jac = tape.jacobian(y, xt, experimental_use_pfor=False).numpy()
    f = lambda x: apply(params, x)  # noqa: E731
    assert_close(jax.jacfwd(f)(xb[:1]), jac, "jacfwd", **tol)
    assert_close(jax.jacrev(f)(xb[:1]), jac, "jacrev", **tol)
    remat = jax.grad(jax.checkpoint(lambda x: jnp.sum(f(x) ** 2)))(xb[:1])
    assert_close(remat, tape.gradient(loss, xt).numpy(), "grad of jax.checkpoint", **tol)
    t = np.ones_like(xb[:1])
    y_lin, jvp = jax.linearize(f, xb[:1])
    assert_close(y_lin, want[:1], "linearize primal", **tol)
    assert_close(jvp(t), np.tensordot(jac, t, axes=t.ndim), "linearize tangent", **tol)


def test_sharded_calls_in_subprocess(keras_models, tmp_path):
    """On 4 CPU devices (a fresh process): a batch sharded over a Mesh through the jitted apply and the restored
    method, variables placed by LoadOptions(sharding=...), shard_map and pmap of the apply; all give TF's result."""
    model, _ = keras_models["mlp"]
    xb = _rng.normal(size=(8, 4)).astype(f32)
    np.savez(tmp_path / "io.npz", x=xb, want=model(xb).numpy())
    code = f"""
        import jax, numpy as np, jaxsm
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        io = np.load({str(tmp_path / "io.npz")!r})
        x, want = io["x"], io["want"]
        assert len(jax.devices()) == 4
        mesh = Mesh(np.array(jax.devices()), ("data",))
        check = lambda got, what: np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5, err_msg=what)
        model = jaxsm.load({keras_models["mlp_path"]!r}, options=jaxsm.LoadOptions(sharding=NamedSharding(mesh, P())))
        apply, params = jaxsm.functional(model.serve)
        assert all(len(p.sharding.device_set) == 4 for p in jax.tree.leaves(params))
        xs = jax.device_put(x, NamedSharding(mesh, P("data")))
        y = jax.jit(apply)(params, xs)
        check(y, "jit(apply) of a sharded batch")
        assert len(y.sharding.device_set) == 4, y.sharding
        check(model.serve(xs), "restored method on a sharded batch")
        check(jax.jit(model.serve)(xs), "jit(restored method) on a sharded batch")
        # the first layer's kernel sharded by columns, the rest replicated
        place = lambda path, shape, dtype: NamedSharding(mesh, P(None, "data")) if shape == (4, 8) else None
        col = jaxsm.load({keras_models["mlp_path"]!r}, options=jaxsm.LoadOptions(sharding=place))
        specs = [getattr(p.sharding, "spec", None) for p in jax.tree.leaves(jaxsm.functional(col.serve)[1])]
        assert specs.count(P(None, "data")) == 1, specs
        check(col.serve(x), "column-sharded kernel")
        check(jax.jit(jaxsm.functional(col.serve)[0])(jaxsm.functional(col.serve)[1], xs), "both sharded")
        smap = jax.shard_map(lambda v: apply(params, v), mesh=mesh, in_specs=P("data"), out_specs=P("data"))
        check(jax.jit(smap)(xs), "shard_map")
        check(jax.pmap(lambda v: apply(params, v))(x.reshape(4, 2, 4)).reshape(8, 2), "pmap")
        print("ok")
    """
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-4000:]


def _dtype_module():
    class Module(tf.Module):
        def __init__(self):
            self.w16 = tf.Variable(np.array([0.5, -1.25, 2.0], np.float16))
            self.wbf = tf.Variable(tf.constant([0.5, -1.25, 2.0], tf.bfloat16))
            self.w = tf.Variable([0.5, -1.25, 2.0])

        @tf.function(input_signature=[_spec([3], tf.float16)])
        def half(self, x):
            return tf.reduce_sum(tf.tanh(x * self.w16) + tf.cumsum(x))

        @tf.function(input_signature=[_spec([3], tf.bfloat16)])
        def bf16(self, x):
            return tf.reduce_sum(tf.sigmoid(x * self.wbf) * x)

        @tf.function(input_signature=[_spec([3]), _spec([], tf.int32)])
        def mixed(self, x, n):
            return tf.reduce_sum(tf.gather(x * self.w, tf.range(3) % (n + 1)) * tf.cast(n, tf.float32))

        @tf.function(input_signature=[_spec([3]), _spec([], tf.int64)])
        def wide(self, x, n):
            return tf.cast(tf.reduce_sum(x * self.w), tf.float64) * tf.cast(n, tf.float64), tf.cumsum(
                n + tf.range(3, dtype=tf.int64)
            )

    return Module()


@pytest.fixture(scope="module")
def dtyped(tmp_path_factory):
    m = _dtype_module()
    path = str(tmp_path_factory.mktemp("dtypes") / "m")
    tf.saved_model.save(m, path)
    return m, jaxsm.load(path)


@pytest.mark.parametrize("name,dtype,tol", [("half", np.float16, 2e-3), ("bf16", jnp.bfloat16, 2e-2)])
def test_half_precision_under_vmap_and_grad(dtyped, name, dtype, tol):
    """float16/bfloat16 functions keep their dtype under vmap and grad, with TF's values and gradients."""
    m, got = dtyped
    xs = np.array([[0.5, 1.0, -2.0], [0.25, -0.75, 1.5]], f32).astype(dtype)
    tf_dtype = tf.float16 if dtype == np.float16 else tf.bfloat16
    want, want_g = [], []
    for x in xs:
        xt = tf.constant(x.astype(f32), dtype=tf.float32)
        xt = tf.cast(xt, tf_dtype)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = getattr(m, name)(xt)
        want.append(tf.cast(y, tf.float32).numpy())
        want_g.append(tf.cast(tape.gradient(y, xt), tf.float32).numpy())
    out = jax.vmap(getattr(got, name))(xs)
    assert out.dtype == np.dtype(dtype), out.dtype
    np.testing.assert_allclose(np.asarray(out, f32), np.stack(want), rtol=tol, atol=tol, err_msg="vmap")
    apply, params = jaxsm.functional(getattr(got, name))
    g = jax.jit(jax.vmap(jax.grad(lambda x: apply(params, x))))(xs)
    assert g.dtype == np.dtype(dtype), g.dtype
    np.testing.assert_allclose(np.asarray(g, f32), np.stack(want_g), rtol=tol, atol=tol, err_msg="vmap(grad)")


def test_integer_inputs_under_grad(dtyped):
    """An int argument gets a float0 cotangent with allow_int (JAX's rule), jax.grad with respect to it raises
    JAX's TypeError (not a jaxsm crash), and the float gradient is TF's; also with jax_enable_x64 off."""
    m, got = dtyped
    x, n = np.array([0.5, -1.0, 2.0], f32), np.int32(1)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = m.mixed(xt, n)
    want_g = tape.gradient(y, xt).numpy()
    gx, gn = jax.grad(got.mixed, argnums=(0, 1), allow_int=True)(x, n)
    assert_close(gx, want_g, "float gradient")
    assert gn.dtype == jax.dtypes.float0 and gn.shape == (), gn
    with pytest.raises(TypeError, match="grad requires real- or complex-valued inputs"):
        jax.grad(got.mixed, argnums=1)(x, n)
    apply, params = jaxsm.functional(got.mixed)
    assert_close(
        jax.vmap(jax.grad(apply, argnums=1), in_axes=(None, 0, None))(params, np.stack([x, -x]), n),
        np.stack([want_g, want_g]),
        "vmap(grad) of apply (linear in x)",
    )
    with jax.enable_x64(False):
        assert_close(jax.grad(got.mixed)(x, n), want_g, "x64 off: grad")
        want = _per_example(m.wide, [np.stack([x, 2 * x]), np.array([3, 4], np.int64)])
        out = jax.jit(jax.vmap(got.wide))(np.stack([x, 2 * x]), np.array([3, 4], np.int32))
        want = [want[0].astype(f32), want[1].astype(i32)]  # jaxsm computes TF's 64-bit dtypes in 32 bits
        _assert_tree_close(out, want, "x64 off: jit(vmap) of 64-bit outputs")


def _state_module_2():
    class Module(tf.Module):
        def __init__(self):
            self.t = tf.Variable(np.arange(12, dtype=f32).reshape(4, 3))
            self.c = tf.Variable(1.5)

        @tf.function(input_signature=[_spec([2], tf.int32), _spec([2, 3])])
        def scatter(self, i, u):
            self.t.scatter_add(tf.IndexedSlices(u, i))
            return self.t.read_value()

        @tf.function(input_signature=[_spec([3]), _spec([], tf.bool)])
        def cond_assign(self, x, p):
            if p:
                self.c.assign_add(tf.reduce_sum(x))
            else:
                self.c.assign(-1.0)
            return self.c * 2.0

    return Module


def test_vmap_of_stateful_apply(tmp_path):
    """jax.vmap of jaxsm.functional's apply of functions that scatter into a variable with per-example indices and
    assign in one branch of a per-example tf.cond: each example's output and new state are TF's for that example,
    from the same starting state."""
    make = _state_module_2()
    tf.saved_model.save(make(), str(tmp_path / "m"))
    got = jaxsm.load(str(tmp_path / "m"))
    cases = {
        "scatter": ("t", [np.array([[0, 2], [1, 1]], i32), _rng.normal(size=(2, 2, 3)).astype(f32)]),
        "cond_assign": ("c", [_rng.normal(size=(2, 3)).astype(f32), np.array([True, False])]),
    }
    for name, (key, inputs) in cases.items():
        apply, params = jaxsm.functional(getattr(got, name))
        outs, new = jax.jit(jax.vmap(lambda *a: apply(params, *a)))(*inputs)  # noqa: B023
        for k in range(2):
            m = make()
            want = getattr(m, name)(*[tf.constant(x[k]) for x in inputs]).numpy()
            assert_close(outs[k], want, f"{name} example {k} output")
            assert_close(new[key][k], getattr(m, key).numpy(), f"{name} example {k} new {key}")


def test_export_symbolic_batch_with_a_known_dimension_read_from_the_shape(tmp_path):
    """Exported with a symbolic batch, ``tf.shape(x)[1]`` of an input whose signature leaves that dimension None
    (a Keras LSTM's time steps) is a known int taken from a shape holding the symbolic batch: it was left a NumPy
    object array, which a comparison (the LSTM loop's ``i < steps``) could not take (LoweringError)."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((None, 4)), keras.layers.LSTM(3)])
    model.export(str(tmp_path / "lstm"), verbose=False)

    class Module(tf.Module):
        @tf.function(input_signature=[_spec([None, None, 4])])
        def f(self, x):
            steps = tf.shape(x)[1]
            return tf.cast(steps < 6, tf.float32) * tf.reduce_sum(x, 1) + tf.cast(steps * 2, tf.float32)

    tf.saved_model.save(Module(), str(tmp_path / "m"))
    (b,) = jax.export.symbolic_shape("b")
    xb = _rng.normal(size=(3, 5, 4)).astype(f32)
    for path, want in [("lstm", model(xb).numpy()), ("m", Module().f(xb).numpy())]:
        got = jaxsm.load(str(tmp_path / path))
        apply, params = jaxsm.functional(got.signatures["serving_default"] if path == "m" else got.serve)
        call = apply if path == "lstm" else (lambda p, x, apply=apply: apply(p, x=x)["output_0"])
        exp = jax.export.export(jax.jit(call))(params, jax.ShapeDtypeStruct((b, 5, 4), jnp.float32))
        exp = jax.export.deserialize(exp.serialize())
        assert_close(exp.call(params, xb), want, f"{path}: exported with a symbolic batch", rtol=1e-4, atol=1e-5)


def _read_only_module():
    class Module(tf.Module):
        def __init__(self):
            self.w = tf.Variable([1.0, 2.0, 3.0])
            self.unused_by_loop = tf.Variable(0.5)

        @tf.function(input_signature=[_spec([3]), _spec([], tf.int32)])
        def run_time_loop(self, x, n):
            h = tf.while_loop(lambda i, h: i < n, lambda i, h: (i + 1, tf.sin(h) * self.w), [0, x])[1]
            return h + self.unused_by_loop

        @tf.function(input_signature=[_spec([3])])
        def fixed_loop(self, x):
            return tf.while_loop(lambda i, h: i < 3, lambda i, h: (i + 1, tf.sin(h) * self.w), [0, x])[1]

        @tf.function(input_signature=[_spec([3])])
        def run_time_cond(self, x):
            return tf.cond(tf.reduce_sum(x) > 0, lambda: x * self.w, lambda: x - self.w) + self.unused_by_loop

        @tf.function(input_signature=[_spec([3]), _spec([], tf.int32)])
        def loop_assigning(self, x, n):
            def body(i, h):
                self.unused_by_loop.assign_add(1.0)
                return i + 1, h * self.w

            return tf.while_loop(lambda i, h: i < n, body, [0, x])[1]

    return Module


def test_read_only_functions_with_run_time_control_flow_under_jit(tmp_path):
    """A function that only reads variables, in a run-time while loop or tf.cond (both carry the variable state
    through lax.while_loop/lax.switch), called inside the user's jax.jit: it raised VariableError ("would be
    assigned") since every carried variable came back as a new traced value. Only variables a body assigns now
    count as updated; TF's values under jit, vmap and grad, and a loop that does assign still raises."""
    make = _read_only_module()
    tf.saved_model.save(make(), str(tmp_path / "m"))
    got = jaxsm.load(str(tmp_path / "m"))
    m = make()
    x, n = np.array([0.4, -0.2, 0.9], f32), np.int32(3)
    assert_close(jax.jit(got.run_time_loop)(x, n), m.run_time_loop(x, n).numpy(), "jit, run-time loop")
    assert_close(jax.jit(got.fixed_loop)(x), m.fixed_loop(x).numpy(), "jit, trace-time loop")
    assert_close(jax.jit(got.run_time_cond)(x), m.run_time_cond(x).numpy(), "jit, run-time cond")
    assert_close(jax.jit(got.run_time_cond)(-x), m.run_time_cond(-x).numpy(), "jit, run-time cond, other branch")
    xs = np.stack([x, -x])
    want = _per_example(m.run_time_cond, [xs])
    assert_close(jax.jit(jax.vmap(got.run_time_cond))(xs), want, "jit(vmap), run-time cond")
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        y = tf.reduce_sum(m.fixed_loop(xt))
    assert_close(jax.jit(jax.grad(lambda v: jnp.sum(got.fixed_loop(v))))(x), tape.gradient(y, xt).numpy(), "grad")
    assert_close(got.w.numpy(), m.w.numpy(), "w after the calls")
    with pytest.raises(jaxsm.errors.VariableError):
        jax.jit(got.loop_assigning)(x, n)
    assert_close(got.loop_assigning(x, n), m.loop_assigning(x, n).numpy(), "eager call of the assigning loop")
    assert_close(got.unused_by_loop.numpy(), m.unused_by_loop.numpy(), "its assigned variable")


@pytest.mark.parametrize("name", ["random", "segments", "while_dyn", "sort_topk", "one_hot_argmax"])
def test_vmap_with_x64_off(vmapped, name):
    """A few of the vmap cases with jax_enable_x64 off (JAX's default): TF's values, TF's 64-bit dtypes computed
    in 32 bits."""
    m, got = vmapped
    inputs = _cases()[name]
    want = _per_example(getattr(m, name), inputs)
    narrow = {np.dtype(np.int64): i32, np.dtype(np.float64): f32}
    want = jax.tree.map(lambda w: w.astype(narrow.get(w.dtype, w.dtype)), want)
    with jax.enable_x64(False):
        _assert_tree_close(jax.jit(jax.vmap(getattr(got, name)))(*inputs), want, f"x64 off: jit(vmap) {name}")
