"""jaxsm with jax_enable_x64 off (JAX's default), probed against TF, second sweep (tests/test_x64_off_sweep.py has
the first): every value that fits 32 bits must be TF's, a 64-bit result compared as its 32-bit twin, with no raw
exception. Found by running the op suites with ``JAXSM_TEST_X64=0`` (tests/conftest.py)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxsm.errors
from tests.tfcompare import run_jaxsm, save_function

tf = pytest.importorskip("tensorflow")

R = tf.raw_ops
JIT = pytest.mark.parametrize("jit", [True, False])


def _run_x64_off(export_dir, inputs, jit):
    """jaxsm's outputs of the saved ``f`` with x64 off (traced, or with NumPy inputs folded at trace time)."""
    with jax.enable_x64(False):
        return [np.asarray(o) for o in run_jaxsm(export_dir, inputs, jit=jit)]


_NARROWED = {np.dtype(a): np.dtype(b) for a, b in [("int64", "int32"), ("uint64", "uint32"), ("float64", "float32")]}
_NARROWED[np.dtype("complex128")] = np.dtype("complex64")


def _assert_as_tf_narrowed(got, want):
    """Each output TF's, a 64-bit one narrowed to its 32-bit twin where jaxsm computed it in 32 bits."""
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g.dtype != w.dtype and w.dtype in _NARROWED:
            w = w.astype(_NARROWED[w.dtype])
        assert g.shape == w.shape, f"output {i}: shape {g.shape} != {w.shape}"
        assert g.dtype == w.dtype, f"output {i}: {g.dtype} != {w.dtype}"
        np.testing.assert_array_equal(g, w, err_msg=f"output {i}")


@JIT
def test_integer_mean_of_a_sum_beyond_its_dtype(jit):
    # TF sums integers in int64, so the mean of values whose sum overflows 32 bits (or int8/int16) still fits;
    # with x64 off the sum was taken in the input dtype and wrapped
    i32 = np.array([[2**30, 2**30, 3], [-(2**31), -(2**31), -7], [2**31 - 1, -5, 2**31 - 1]], np.int32)
    u32 = np.array([2**32 - 1, 2**32 - 2, 5, 2**31], np.uint32)
    i16 = np.array([30000, 30000, -4, 32767], np.int16)
    i8 = np.array([100, 100, 3, -128, -128, -128], np.int8)
    i64 = np.array([2**31 - 1, 2**31 - 1, 2**31 - 2], np.int64)

    def fn(i32, u32, i16, i8, i64):
        return (
            tf.reduce_mean(i32),
            tf.reduce_mean(i32, axis=1, keepdims=True),
            tf.reduce_mean(i32, axis=0),
            tf.reduce_mean(u32),
            tf.reduce_mean(i16),
            tf.reduce_mean(i8),
            tf.reduce_mean(tf.reshape(i8, [2, 3]), axis=1),
            tf.reduce_mean(i64),
            tf.reduce_mean(i32[:, :0], axis=1),
        )

    inputs = [i32, u32, i16, i8, i64]
    export_dir, tf_fn = save_function(fn, inputs)
    _assert_as_tf_narrowed(_run_x64_off(export_dir, inputs, jit), [w.numpy() for w in tf_fn(*inputs)])


@JIT
def test_truncating_cast_from_float64_to_bfloat16_rounds(jit):
    # TF honours Truncate=True for float32 -> bfloat16 but not float64 -> bfloat16 (it rounds to nearest even);
    # with x64 off the float64 operand is held in float32 and was truncated
    x = np.array([65519.99, 1e-8, 1.01171875, -1.01171875, 3.0, 1.00390625], np.float64)

    def fn(x):
        return (
            R.Cast(x=x, DstT=tf.bfloat16, Truncate=True),
            R.Cast(x=tf.cast(x, tf.float32), DstT=tf.bfloat16, Truncate=True),
            R.Cast(x=tf.complex(x, x), DstT=tf.bfloat16, Truncate=True),
            R.Cast(x=x * 3, DstT=tf.float16, Truncate=True),
        )

    export_dir, tf_fn = save_function(fn, [x])
    _assert_as_tf_narrowed(_run_x64_off(export_dir, [x], jit), [w.numpy() for w in tf_fn(x)])


@JIT
def test_bitcast_between_complex_and_64_bit_types(jit):
    # complex64 to/from int64/uint64 (one 8-byte element: a traced int64 is its sign extension, an int64 result
    # its low word), and known complex128 values bit for bit; the x64-off path left complex out, so lax was asked
    # for a float64/int64 bitcast it cannot make (raw ValueError)
    z = np.array([1 + 2j, -0.5 - 3j], np.complex64)
    a = np.array([[7, -1], [2**31 - 1, -(2**31)]], np.int64)

    def fn(z, a):
        return (
            R.Bitcast(input=z, type=tf.int64),
            R.Bitcast(input=z, type=tf.uint64),
            R.Bitcast(input=a, type=tf.complex64),
            R.Bitcast(input=tf.cast(tf.abs(a), tf.uint64), type=tf.complex64),
            R.Bitcast(input=tf.constant([1 / 3 + 2j, -0.25 - 1j], tf.complex128), type=tf.int32),
            R.Bitcast(input=tf.constant([[1, 2, 3, 4]], tf.int32), type=tf.complex128),
        )

    export_dir, tf_fn = save_function(fn, [z, a])
    _assert_as_tf_narrowed(_run_x64_off(export_dir, [z, a], jit), [w.numpy() for w in tf_fn(z, a)])


def test_bitcast_of_run_time_complex128_raises():
    # a complex128 known only at run time is held in complex64: its float64 bits are gone (gaps row)
    def fn(z):
        return R.Bitcast(input=tf.cast(z, tf.complex128), type=tf.int32)

    z = np.array([1 + 2j], np.complex64)
    export_dir, _ = save_function(fn, [z])
    with pytest.raises(jaxsm.errors.LoweringError, match="needs jax_enable_x64"):
        _run_x64_off(export_dir, [z], jit=True)


@JIT
def test_stateful_random_draws_from_a_known_narrowed_state(jit):
    # a Generator's int64 state is held in int32 with x64 off; read as a known (NumPy) value, splitting it into
    # Philox words raised a raw OverflowError (int32 & 0xFFFFFFFF)
    module = tf.Module()
    module.gen = tf.random.Generator.from_seed(5, alg="philox")
    handle = module.gen.state.handle
    one = tf.constant(1, tf.int64)

    def fn(v):
        return (
            R.StatefulStandardNormalV2(resource=handle, algorithm=one, shape=[2, 3]) + v[0],
            R.StatefulUniform(resource=handle, algorithm=one, shape=[4]) + v[0],
        )

    x = np.zeros([2], np.float32)
    export_dir, tf_fn = save_function(fn, [x], module=module)
    want = [w.numpy() for w in tf_fn(x)]  # the first draws, from the saved state
    got = _run_x64_off(export_dir, [x], jit)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6, err_msg=f"output {i}")
