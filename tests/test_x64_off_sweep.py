"""jaxsm with jax_enable_x64 off (JAX's default), probed against TF: 64-bit tensors are computed in 32 bits, so
every value that fits 32 bits must be TF's (a 64-bit result compared as its 32-bit twin), with no raw exception.
Found by running the op suites with ``JAXSM_TEST_X64=0`` (tests/conftest.py)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.tfcompare import run_jaxsm, save_function

tf = pytest.importorskip("tensorflow")

R = tf.raw_ops
JIT = pytest.mark.parametrize("jit", [True, False])


def _run_x64_off(export_dir, inputs, jit):
    """jaxsm's outputs of the saved ``f`` with x64 off (traced, or with NumPy inputs folded at trace time)."""
    with jax.enable_x64(False):
        return [np.asarray(o) for o in run_jaxsm(export_dir, inputs, jit=jit)]


@JIT
def test_philox_key_and_counter_used_as_uint64_tensors(jit):
    # StatelessRandomGetKeyCounter keeps its uint64 key/counter as 32-bit word pairs for the V2 random ops; an
    # output or any other op got that internal object (np.asarray: an object scalar; Reshape/AddV2: TypeError)
    def fn(seed):
        key, counter = R.StatelessRandomGetKeyCounter(seed=seed)
        draw = R.StatelessRandomUniformFullIntV2(shape=[3], key=key, counter=counter, alg=1, dtype=tf.uint32)
        return key, counter, tf.reshape(counter, [2, 1]), key + 1, draw

    seed = np.array([7, -3], np.int32)
    export_dir, tf_fn = save_function(fn, [seed])
    want = [w.numpy() for w in tf_fn(seed)]
    got = _run_x64_off(export_dir, [seed], jit)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g.dtype != w.dtype:  # a run-time uint64 is its low 32 bits with x64 off
            w = w.astype(np.uint32)
        np.testing.assert_array_equal(g, w, err_msg=f"output {i}")
        assert g.dtype == w.dtype, f"output {i}: {g.dtype} != {w.dtype}"


def test_parameterized_truncated_normal_float64_draws_tfs_stream():
    # float64 draws take two Philox words a value (Uint64ToDouble); with x64 off the parameters are float32 and
    # the float32 samplers (one word a value) drew a different stream
    def fn(m, s, lo, hi, seed):
        kw = dict(means=m, stddevs=s, minvals=lo, maxvals=hi)
        return (
            R.StatelessParameterizedTruncatedNormal(shape=[6, 5], seed=seed, **kw),
            R.ParameterizedTruncatedNormal(shape=[5, 3], means=m, stdevs=s, minvals=lo, maxvals=hi, seed=3, seed2=9),
        )

    # means, stddevs, minvals, maxvals of 5 batches: the normal, uniform and exponential samplers, flips
    params = [[0, 0, 0, 1, 5], [1, 1, 1, 2, 1], [-3, 0.1, 2.5, -np.inf, -1], [3, 0.3, 10, 0.5, 2]]
    inputs = [np.array(p, np.float64) for p in params] + [np.array([5, -6], np.int32)]
    export_dir, tf_fn = save_function(fn, inputs)
    want = [w.numpy() for w in tf_fn(*inputs)]
    got = _run_x64_off(export_dir, inputs, jit=True)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.dtype == np.float32, f"output {i}: {g.dtype}"
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"output {i}")


def _assert_as_tf_narrowed(got, want):
    """Each output TF's, a 64-bit one narrowed to its 32-bit twin where jaxsm computed it in 32 bits."""
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g.dtype != w.dtype and w.dtype.itemsize == 8:
            w = w.astype(np.dtype(f"{w.dtype.kind}4"))
        assert g.shape == w.shape, f"output {i}: shape {g.shape} != {w.shape}"
        assert g.dtype == w.dtype, f"output {i}: {g.dtype} != {w.dtype}"
        np.testing.assert_array_equal(g, w, err_msg=f"output {i}")


@JIT
def test_population_count_of_negative_int64(jit):
    # an int64 held in 32 bits is its sign extension: popcount(-1) is 64, not 32
    x = np.array([0, 1, -1, 5, -7, 2**31 - 1, -(2**31)], np.int64)
    export_dir, tf_fn = save_function(lambda x: (R.PopulationCount(x=x), R.PopulationCount(x=x[:2] - 3)), [x])
    _assert_as_tf_narrowed(_run_x64_off(export_dir, [x], jit), [w.numpy() for w in tf_fn(x)])


@JIT
def test_bitcast_from_and_to_64_bit_integers(jit):
    # the output shape gains/loses TF's trailing dimension; a traced int64 source is sign-extended, a 64-bit
    # result its low word (lax alone kept the 32-bit shape)
    a = np.array([1, -2, 2**31 - 1, -(2**31)], np.int64)
    b = np.array([[5, -1], [-7, 0], [3, 2**30]], np.int32)
    c = np.array([2**32 - 1, 7], np.uint64)
    d = np.arange(16, dtype=np.uint8).reshape(2, 8) * 17

    def fn(a, b, c, d):
        return (
            R.Bitcast(input=a, type=tf.int32),
            R.Bitcast(input=a, type=tf.uint8),
            R.Bitcast(input=a, type=tf.uint64),
            R.Bitcast(input=b, type=tf.int64),
            R.Bitcast(input=c, type=tf.int16),
            R.Bitcast(input=d, type=tf.int64),
        )

    inputs = [a, b, c, d]
    export_dir, tf_fn = save_function(fn, inputs)
    _assert_as_tf_narrowed(_run_x64_off(export_dir, inputs, jit), [w.numpy() for w in tf_fn(*inputs)])


@JIT
def test_cast_complex128_to_complex64(jit):
    # a known complex128 value folded with x64 off was staged as complex64, so its Cast was an identity and the
    # NumPy result kept complex128
    x = np.array([1 / 3 + 1j / 7, -2.5 - 1e-3j])

    def fn(x):
        return R.Cast(x=x, DstT=tf.complex64), R.Cast(x=x, DstT=tf.float32), R.Real(input=x, Tout=tf.float64)

    export_dir, tf_fn = save_function(fn, [x])
    got, want = _run_x64_off(export_dir, [x], jit), [w.numpy() for w in tf_fn(x)]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if w.dtype == np.float64 and g.dtype == np.float32:  # computed in 32 bits
            w = w.astype(np.float32)
        assert g.dtype == w.dtype, f"output {i}: {g.dtype} != {w.dtype}"
        np.testing.assert_allclose(g, w, rtol=1e-6, err_msg=f"output {i}")
