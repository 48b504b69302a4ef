"""jaxsm/compile.py: which XLA:CPU kernel library a restored function is compiled for, and that the choice does
not change results. No TensorFlow needed: the functions are plain JAX; the model is a committed fixture."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxsm
from jaxsm.compile import EIGEN_CPU_OPTIONS, LARGE_DOT_ROWS, compiler_options, prefers_eigen, tuned_jit

DATA = os.path.join(os.path.dirname(__file__), "data")

# A GPU parent process holds most of the GPU memory; a child that preallocates too can crash (seen on an H100).
_CHILD_ENV = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")


def _conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize(
    ("fn", "args", "eigen"),
    [
        (_conv, (jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4))), True),
        (jnp.matmul, (jnp.ones((32, 256)), jnp.ones((256, 64))), False),  # LSTM-sized product: YNNPACK
        (jnp.matmul, (jnp.ones((LARGE_DOT_ROWS, 8)), jnp.ones((8, 8))), True),
        (jnp.matmul, (jnp.ones((LARGE_DOT_ROWS - 1, 8)), jnp.ones((8, 8))), False),
        # batched: 64 x 64 rows, batch dimensions count
        (jnp.matmul, (jnp.ones((64, 64, 8)), jnp.ones((64, 8, 16))), True),
        (lambda x: jnp.tanh(x) + 1, (jnp.ones((10000,)),), False),
        # inside control flow
        (
            lambda x, w: lax.scan(lambda c, _: (_conv(c, w), None), x, length=2)[0],
            (jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))),
            True,
        ),
        (
            lambda p, x, w: lax.cond(p, lambda: _conv(x, w), lambda: x),
            (True, jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))),
            True,
        ),
    ],
)
def test_prefers_eigen(fn, args, eigen):
    jaxpr = jax.make_jaxpr(fn)(*args)
    assert prefers_eigen(jaxpr) is eigen
    assert compiler_options(jaxpr, backend="cpu") == (EIGEN_CPU_OPTIONS if eigen else {})
    assert compiler_options(jaxpr, backend="gpu") == {}, "only XLA:CPU gets options"


def test_tuned_jit_same_results_and_one_choice_per_shape():
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((3, 3, 4, 8), np.float32))

    def fn(state, flat):
        return [_conv(flat[0], state["w"]) if flat[0].ndim == 4 else flat[0] @ state["w"][0, 0]], {}

    jitted = tuned_jit(fn)
    x = jnp.asarray(rng.standard_normal((2, 9, 9, 4), np.float32))
    assert jitted.pick({"w": w}, [x]) is (jitted.eigen if jax.default_backend() == "cpu" else jitted.plain)
    assert jitted.pick({"w": w}, [x[0, 0]]) is jitted.plain, "a small matmul keeps XLA's defaults"
    out = jitted({"w": w}, [x])[0][0]
    ref = jax.jit(fn)({"w": w}, [x])[0][0]  # XLA's default libraries
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)
    size = jitted._cache_size()
    jitted({"w": w}, [x + 1])
    assert jitted._cache_size() == size, "same shapes: no new compile"


def test_loaded_convnet_compiles_for_eigen_and_matches_tf():
    """The committed Keras convnet fixture (outputs stored from TF) is compiled with YNNPACK off on CPU, and its
    outputs still match TF's; the bundled MLP (small products) keeps XLA's defaults."""
    ref = np.load(os.path.join(DATA, "keras_convnet.npz"))
    m = jaxsm.load(os.path.join(DATA, "keras_convnet"))
    y = np.asarray(m.serve(ref["in_x"]))
    np.testing.assert_allclose(y, ref["out_y"], rtol=1e-5, atol=1e-5 * np.abs(ref["out_y"]).max())
    (cf,) = [c for c in m.serve.concrete_functions if c._jitted._cache_size()]
    eigen = jax.default_backend() == "cpu"
    assert cf._jitted.tuned.eigen._cache_size() == int(eigen)
    assert cf._jitted.tuned.plain._cache_size() == int(not eigen)

    from jaxsm.examples import MLP

    mlp = jaxsm.load(MLP)
    sig = mlp.signatures["serving_default"]
    sig(features=np.load(MLP / "expected.npz")["x"])
    assert sig._jitted.tuned.eigen._cache_size() == 0 and sig._jitted.tuned.plain._cache_size() == 1


def test_eigen_choice_survives_the_trace_cache(tmp_path):
    """With jax_compilation_cache_dir set, the exported function records the library choice, and a second process
    (which does not trace) compiles with the same choice and reproduces TF's outputs."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import jax, numpy as np
        jax.config.update("jax_compilation_cache_dir", {str(tmp_path / "cache")!r})
        import jaxsm, jaxsm.graph.interpreter as it
        ref = np.load({os.path.join(DATA, "keras_convnet.npz")!r})
        calls = []
        original = it.Interpreter.run_node
        it.Interpreter.run_node = lambda self, node, args: calls.append(node.op) or original(self, node, args)
        y = jaxsm.load({os.path.join(DATA, "keras_convnet")!r}).serve(ref["in_x"])
        np.testing.assert_allclose(np.asarray(y), ref["out_y"], rtol=1e-5, atol=1e-5 * np.abs(ref["out_y"]).max())
        print("traced", len(calls), jax.default_backend())
    """)
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_CHILD_ENV)
        for _ in (0, 1)
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    assert "traced 0" not in runs[0].stdout and "traced 0" in runs[1].stdout
    markers = list((tmp_path / "cache" / "jaxsm-exports").glob("*.eigen"))
    assert len(markers) == (1 if runs[0].stdout.split()[-1] == "cpu" else 0)


@pytest.mark.parametrize("on_cpu", [True, False])
def test_data_dependent_shapes_run_op_by_op_once_warned(on_cpu, monkeypatch):
    """A trace that needs run-time values as shapes falls back to running op by op, warning once per shapes
    (on the CPU the kernel-library choice traces first; elsewhere the first call does -- found on an H200)."""
    import warnings

    import jaxsm.compile

    monkeypatch.setattr(jaxsm.compile, "_on_cpu", lambda tree: on_cpu)

    from jaxsm.errors import EagerFallbackWarning, StaticValueError

    traces = []

    def fn(state, flat):
        x = flat[0]
        if isinstance(x, jax.core.Tracer):
            traces.append(1)
            raise StaticValueError("the mask must be known at trace time")
        return [x[x > 0] * state["s"]], {}

    jitted = tuned_jit(fn, "'masked'")
    x = np.array([1.0, -2.0, 3.0], np.float32)
    with pytest.warns(EagerFallbackWarning, match="'masked' runs op by op"):
        out = jitted({"s": 2.0}, [x])[0][0]
    np.testing.assert_array_equal(np.asarray(out), [2.0, 6.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = jitted({"s": 2.0}, [np.array([-1.0, 5.0, 4.0], np.float32)])[0][0]
    np.testing.assert_array_equal(np.asarray(out), [10.0, 8.0])
    assert len(traces) == 1, "the same shapes are not traced again"


@pytest.mark.parametrize("trace_cache", [False, True])
def test_jax_transformations_after_a_plain_call(trace_cache, tmp_path):
    """A function first called directly (compiled with jaxsm's XLA:CPU options, or read from the trace cache)
    can then be called inside the user's jit/grad/vmap: there the user's jit compiles it (a nested jit may not
    carry compiler options; before, this raised)."""
    ref = np.load(os.path.join(DATA, "keras_convnet.npz"))
    x = ref["in_x"]
    before = jax.config.jax_compilation_cache_dir
    if trace_cache:
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "cache"))
    try:
        m = jaxsm.load(os.path.join(DATA, "keras_convnet"))
        y = np.asarray(m.serve(x))
        np.testing.assert_allclose(np.asarray(jax.jit(lambda v: m.serve(v))(x)), y, rtol=1e-5, atol=1e-6)
        each = jax.vmap(lambda v: m.serve(v[None])[0])(x)
        np.testing.assert_allclose(np.asarray(each), y, rtol=1e-5, atol=1e-6)
        g = jax.grad(lambda v: m.serve(v)[:, 0].sum())(x)
        eps = 1e-2
        step = np.zeros_like(x)
        step[0, 0, 0, 0] = eps
        fd = (np.asarray(m.serve(x + step))[0, 0] - np.asarray(m.serve(x - step))[0, 0]) / (2 * eps)
        np.testing.assert_allclose(float(g[0, 0, 0, 0]), fd, rtol=2e-2, atol=1e-4)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_trace_cache_with_a_host_callback(tmp_path):
    """tf.timestamp lowers to a host callback, which jax.export cannot serialize: with the persistent cache on,
    such a function runs through the plain jit path instead of failing."""
    tf = pytest.importorskip("tensorflow")
    m = tf.Module()
    m.f = tf.function(
        lambda x: x + tf.cast(tf.timestamp() > 0, tf.float32), input_signature=[tf.TensorSpec([2], tf.float32)]
    )
    tf.saved_model.save(m, str(tmp_path / "m"))
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "cache"))
    try:
        loaded = jaxsm.load(str(tmp_path / "m"))
        for _ in range(2):
            np.testing.assert_array_equal(np.asarray(loaded.f(np.ones(2, np.float32))), [2.0, 2.0])
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
