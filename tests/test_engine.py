"""The graph engine: static-value propagation, control flow with state, coverage errors, error context."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jaxsm
from jaxsm.errors import LoweringError, UnsupportedOpError

tf = pytest.importorskip("tensorflow")
from tests.tfcompare import assert_matches_tf  # noqa: E402

# A GPU parent process holds most of the GPU memory; a child that preallocates too can crash (seen on an H100).
_CHILD_ENV = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")


@pytest.mark.parametrize("jit", [True, False])
def test_shape_arithmetic_stays_static(jit):
    def f(x):
        b = tf.shape(x)[0]
        n = tf.size(x) // b
        y = tf.reshape(x, tf.stack([b, n // 2, 2]))
        return tf.tile(y, [1, tf.rank(x), 1]), tf.range(b * 2), tf.zeros(tf.shape(x)[1:])

    assert_matches_tf(f, [np.arange(12, dtype=np.float32).reshape(3, 4)], shapes=[(None, 4)], jit=jit)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "case",
    [
        "static_trip",
        "dynamic_trip",
        "map_fn",
        "scan",
        "nested",
        "tensor_array",
        "cond_runtime",
        "cond_static",
        "switch_case",
    ],
)
def test_control_flow(case, jit):
    def static_trip(x):
        acc = x
        for i in tf.range(4):
            acc = acc * 0.5 + tf.cast(i, tf.float32)
        return acc

    def dynamic_trip(x):
        n = tf.cast(tf.reduce_sum(tf.abs(x)), tf.int32) % 7
        i, acc = tf.constant(0), tf.zeros_like(x)
        while i < n:
            acc += x
            i += 1
        return acc, i

    def nested(x):
        out = tf.zeros([])
        for i in tf.range(3):
            for j in tf.range(i + 1):
                out += tf.cast(i * j, tf.float32) + tf.reduce_sum(x)
        return out

    def tensor_array(x):
        ta = tf.TensorArray(tf.float32, size=tf.shape(x)[0])
        for i in tf.range(tf.shape(x)[0]):
            ta = ta.write(i, x[i] * tf.cast(i, tf.float32))
        return ta.stack(), ta.read(1)

    def cond_runtime(x):
        return tf.cond(tf.reduce_sum(x) > 10.0, lambda: x * 2.0, lambda: x - 1.0)

    def cond_static(x):
        return tf.cond(tf.shape(x)[0] > 2, lambda: x * 2.0, lambda: x - 1.0)

    def switch_case(x):
        i = tf.cast(tf.reduce_sum(x), tf.int32) % 4 - 1  # -1 and 3 run the default (last) branch
        return tf.switch_case(i, [lambda: x + 1.0, lambda: x * 3.0, lambda: -x])

    def runtime_index(x):
        n = tf.cast(tf.reduce_sum(x) > 0, tf.int32) + 1  # trip count known only at run time
        acc = tf.zeros([2])
        for i in tf.range(n):
            acc += x[i] + x[-1 - i] + x[:, i][:2] + x[..., i][1:3] + tf.reshape(tf.slice(x, [i, 0], [1, 2]), [2])
        return acc

    def dynamic_size_tensor_array(x):
        ta = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        for i in tf.range(tf.shape(x)[0]):
            ta = ta.write(i, x[i] * 2.0)
        return ta.stack()

    fns = {
        "runtime_index": runtime_index,
        "dynamic_size_tensor_array": dynamic_size_tensor_array,
        "static_trip": static_trip,
        "dynamic_trip": dynamic_trip,
        "map_fn": lambda x: tf.map_fn(lambda r: tf.reduce_max(r) * r, x),
        "scan": lambda x: tf.scan(lambda a, r: a * 0.5 + r, x),
        "nested": nested,
        "tensor_array": tensor_array,
        "cond_runtime": cond_runtime,
        "cond_static": cond_static,
        "switch_case": switch_case,
    }
    for x in (np.arange(6, dtype=np.float32).reshape(3, 2), np.full((3, 2), -0.25, np.float32)):
        assert_matches_tf(fns[case], [x], jit=jit, rtol=1e-6)


def test_unsupported_ops_are_reported_together(tmp_path):
    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def f(self, s):
            proto = tf.io.decode_proto(s, "tensorflow.Example", ["features"], [tf.string])
            return proto.values, tf.strings.unicode_script(tf.strings.unicode_decode(s, "UTF-8").flat_values)

    tf.saved_model.save(M(), str(tmp_path))
    with pytest.raises(UnsupportedOpError) as e:
        jaxsm.load(str(tmp_path))
    assert {"DecodeProtoV2", "UnicodeScript"} <= set(e.value.missing), "every missing op is named at once"
    assert "__inference_f" in e.value.missing["DecodeProtoV2"][1], "example node path names the function"


def test_error_names_node_op_and_function(tmp_path):
    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def f(self, x):
            k = tf.cast(tf.reduce_sum(x), tf.int32)
            return tf.reshape(x, [k, -1])  # a run-time value as a shape

    module = M()
    tf.saved_model.save(module, str(tmp_path))
    m = jaxsm.load(str(tmp_path))
    x = np.ones(4, np.float32)
    apply, params = jaxsm.functional(m.f)
    with pytest.raises(LoweringError) as e:
        jax.jit(apply)(params, x)
    msg = str(e.value)
    assert "Reshape" in msg and "__inference_f" in msg and "trace time" in msg, msg
    # A call is not compiled: it runs op by op, as TF eager would.
    from jaxsm.errors import EagerFallbackWarning

    with pytest.warns(EagerFallbackWarning, match="Reshape"):
        np.testing.assert_array_equal(np.asarray(m.f(x)), module.f(x).numpy())


def test_gradients_match_tf(tmp_path):
    import jax

    class M(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def loss(self, x):
            h = tf.matmul(x, self.w)
            acc = tf.zeros_like(h)
            for _ in tf.range(3):  # a static-trip While: lowered to lax.scan, so reverse-mode works
                acc = tf.tanh(acc + h)
            return tf.reduce_sum(acc**2) + tf.reduce_sum(tf.stop_gradient(h))

    m = M()
    tf.saved_model.save(m, str(tmp_path))
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        loss = m.loss(xt)
    gx, gw = tape.gradient(loss, [xt, m.w])
    apply, params = jaxsm.functional(jaxsm.load(str(tmp_path)).loss)
    jl, (jgp, jgx) = jax.value_and_grad(lambda p, x: apply(p, x), argnums=(0, 1))(params, x)
    np.testing.assert_allclose(float(jl), float(loss), rtol=1e-5, err_msg="loss")
    np.testing.assert_allclose(np.asarray(jgx), gx.numpy(), rtol=1e-5, atol=1e-6, err_msg="d loss / d x")
    np.testing.assert_allclose(np.asarray(jgp["w"]), gw.numpy(), rtol=1e-5, atol=1e-6, err_msg="d loss / d w")


def test_x64_off_computes_in_32_bits(tmp_path):
    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
        def f(self, x):
            return tf.cast(x, tf.float64) * 2.0, x + 1.0

    tf.saved_model.save(M(), str(tmp_path))
    code = textwrap.dedent(f"""
        import warnings, numpy as np, jaxsm
        m = jaxsm.load({str(tmp_path)!r})
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            a, b = m.f(np.ones(3, np.float32))
        assert b.dtype == np.float32, b.dtype
        assert a.dtype == np.float32, a.dtype  # float64 computed in 32 bits with x64 off
        np.testing.assert_allclose(np.asarray(a), 2.0)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_trace_cache_with_jax_compilation_cache(tmp_path):
    """With jax_compilation_cache_dir set, a new process reuses the traced function (no TF-graph tracing)."""
    from jaxsm.examples import MLP

    code = textwrap.dedent(f"""
        import jax, numpy as np
        jax.config.update("jax_compilation_cache_dir", {str(tmp_path / "cache")!r})
        import jaxsm, jaxsm.graph.interpreter as it
        ref = np.load({str(MLP / "expected.npz")!r})
        calls = []
        original = it.Interpreter.run_node
        it.Interpreter.run_node = lambda self, node, args: calls.append(node.op) or original(self, node, args)
        y = jaxsm.load({str(MLP)!r}).signatures["serving_default"](features=ref["x"])["output_0"]
        np.testing.assert_allclose(np.asarray(y), ref["y"], rtol=1e-5)
        print("traced", len(calls))
    """)
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_CHILD_ENV)
        for _ in (0, 1)
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    assert "traced 0" not in runs[0].stdout, "the first process traces the graph"
    assert "traced 0" in runs[1].stdout, "the second process loads the traced function from the cache"
    assert list((tmp_path / "cache" / "jaxsm-exports").iterdir()), "an exported module was written"


def test_trace_cache_sets_up_lapack_only_for_modules_that_call_it(tmp_path):
    """Lowering a cached (jax.export) function sets up JAX's CPU LAPACK kernels, importing scipy.linalg (~0.2 s),
    only when the module calls LAPACK: a matmul model does not pay for it, a Cholesky model still works."""

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([3, 3], tf.float32)])
        def mm(self, x):
            return tf.matmul(x, x, transpose_b=True) + 3.0 * tf.eye(3)

        @tf.function(input_signature=[tf.TensorSpec([3, 3], tf.float32)])
        def chol(self, x):
            return tf.linalg.cholesky(tf.matmul(x, x, transpose_b=True) + 3.0 * tf.eye(3))

    path = str(tmp_path / "m")
    module = M()
    tf.saved_model.save(module, path)
    x = np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = textwrap.dedent(f"""
        import sys, jax, numpy as np
        jax.config.update("jax_compilation_cache_dir", {str(tmp_path / "cache")!r})
        import jaxsm
        m = jaxsm.load({path!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        out = {{"mm": np.asarray(m.mm(x))}}
        print("scipy.linalg after mm:", "scipy.linalg" in sys.modules)
        out["chol"] = np.asarray(m.chol(x))
        np.savez(sys.argv[1], **out)
    """)
    for run in (0, 1):  # 0 traces and exports, 1 loads the exported functions
        npz = str(tmp_path / f"out{run}.npz")
        r = subprocess.run(
            [sys.executable, "-c", code, npz], capture_output=True, text=True, timeout=300, env=_CHILD_ENV
        )
        assert r.returncode == 0, r.stderr[-2000:]
        assert "scipy.linalg after mm: False" in r.stdout, r.stdout
        got = np.load(npz)
        np.testing.assert_allclose(got["mm"], module.mm(x).numpy(), rtol=1e-6)
        np.testing.assert_allclose(got["chol"], module.chol(x).numpy(), rtol=1e-5, atol=1e-6)


def _grow(n):
    i, x = tf.constant(0), tf.zeros([0])
    _, x = tf.while_loop(
        lambda i, x: i < n,
        lambda i, x: (i + 1, tf.concat([x, [tf.cast(i, tf.float32) * 2.0]], 0)),
        [i, x],
        shape_invariants=[i.shape, tf.TensorShape([None])],
    )
    return x


def _dynamic_tensor_array(x):
    ta, n = tf.TensorArray(tf.float32, size=0, dynamic_size=True), tf.reduce_sum(tf.cast(x > 0, tf.int32))
    _, ta = tf.while_loop(
        lambda i, ta: i < n, lambda i, ta: (i + 1, ta.write(i, tf.cast(i, tf.float32))), [tf.constant(0), ta]
    )
    return ta.stack()


def _mask_in_loop(x):
    def body(i, s):
        return i + 1, s + tf.reduce_sum(tf.boolean_mask(x, x > tf.cast(i, tf.float32)))

    return tf.while_loop(lambda i, s: i < 3, body, [tf.constant(0), tf.constant(0.0)])[1]


@pytest.mark.parametrize(
    "fn,x",
    [
        (_grow, np.array(5, np.int32)),
        (_dynamic_tensor_array, np.array([1.0, -1.0, 2.0, 3.0], np.float32)),
        (_mask_in_loop, np.array([0.5, 1.5, 2.5, 3.5], np.float32)),
    ],
    ids=["shape_invariants", "dynamic_tensor_array", "boolean_mask_in_loop"],
)
def test_loops_with_run_time_shapes_run_op_by_op(fn, x):
    """Loops whose shapes depend on run-time values cannot be compiled: a call runs op by op (the loop as a
    Python loop, as TF eager does) and matches TF."""
    from jaxsm.errors import EagerFallbackWarning

    with pytest.warns(EagerFallbackWarning):
        assert_matches_tf(fn, [x], jit=True)
