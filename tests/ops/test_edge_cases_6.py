"""Edge cases of already-lowered ops against TensorFlow, round 6, swept by dtype x op family: integer casts
between every pair of widths, int32/uint8/uint32 arithmetic at their limits, int64 values beyond 2^53 and uint64
values beyond 2^63 through comparisons, reductions, scans, segments and sorting, floating special values (NaN,
inf, -0.0) per float dtype through elementwise and reduction ops, and zero-size reductions in every dtype.

Each case is one tf.function returning a dict of outputs, saved once and compared with jaxsm under ``jax.jit``
and op by op. Where TF raises InvalidArgumentError for a constant input, jaxsm must raise a
:class:`jaxsm.errors.JaxsmError` when the function is traced.
"""

import functools

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.tfcompare import assert_raises_like_tf  # noqa: E402
from tests.tfcompare import compare_case as _compare  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning"),
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered in greater:RuntimeWarning"),  # NumPy bfloat16 NaN
]
JIT = pytest.mark.parametrize("jit", [True, False])
raw = tf.raw_ops
_INTS = [tf.int8, tf.int16, tf.int32, tf.int64, tf.uint8, tf.uint16, tf.uint32, tf.uint64]
_FLOATS = [tf.float16, tf.bfloat16, tf.float32, tf.float64]


def _where_defined(ops: dict) -> dict:
    """The entries of {name: thunk} whose op TF defines for the operands' dtype."""
    out = {}
    for name, thunk in ops.items():
        try:
            out[name] = thunk()
        except (TypeError, tf.errors.NotFoundError):
            continue
    return out


@functools.cache
def _has_kernel(op: str, dtype: tf.DType, *args: str) -> bool:
    """Whether TF's CPU runs ``op`` on ``dtype`` operands named ``args`` (some ops are declared for more types
    than they have kernels for)."""
    try:
        with tf.init_scope():  # (eagerly, also when called while a tf.function traces)
            getattr(raw, op)(**{name: tf.ones([1], dtype) for name in args})
    except (TypeError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError):
        return False
    return True


# -- integers ------------------------------------------------------------------------------------------------


@JIT
def test_integer_cast_matrix(jit):
    """Every integer width (and bool) to every other: narrowing keeps the low bits, widening sign-extends signed
    sources only; to float16/bfloat16/float32 rounds half to even (int32 beyond 2^24, uint32 beyond 2^31)."""

    def fn(x):
        out = {}
        for src in _INTS:
            v = tf.cast(x, src)
            for dst in [*_INTS, tf.bool, *_FLOATS]:
                out[f"{src.name}_{dst.name}"] = tf.cast(v, dst)
        return out

    x = np.array(
        [0, 1, -1, 127, 128, -128, -129, 255, 256, 32767, -32768, 65535, 65536, 2**24 + 1, 2**24 + 3, 2**31 - 1]
        + [-(2**31), 2**32 - 1, 2**32 + 2**24 + 1, 2**63 - 1, -(2**63), 65519, 65520, -65520, 2**33 + 2**9 + 1],
        np.int64,
    )
    _compare("int_cast_matrix", fn, [x], jit, rtol=0)


def _int_operands(dtype) -> tuple[np.ndarray, np.ndarray]:
    info = np.iinfo(dtype)
    if info.min < 0:
        return (
            np.array([info.min, info.max, -1, -7, 7, 0, info.min + 1, 3, info.min, -5], dtype),
            np.array([info.max, info.max, info.min, 3, -3, -1, -1, 5, 2, 5], dtype),
        )
    return (
        np.array([info.max, info.max, 1, 0, 7, 200, 3, info.max // 2 + 1, 5, info.max - 1], dtype),
        np.array([1, info.max, info.max, 1, 3, 200, 0, 2, info.max, 2], dtype),
    )


@JIT
@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.uint32])
def test_integer_wraparound_other_widths(jit, dtype):
    """The widths test_edge_cases_3 leaves out: wraparound, divisions with mixed signs, shifts by negative and
    oversized amounts, comparisons at the limits."""
    bits = np.iinfo(dtype).bits
    binary = ["AddV2", "Sub", "Mul", "SquaredDifference", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Maximum"]
    binary += ["Minimum", "Equal", "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual"]
    divisions = ["FloorDiv", "FloorMod", "TruncateDiv", "Div", "TruncateMod", "Mod"]
    unary = ["Invert", "PopulationCount", "Square", "Neg", "Abs", "Sign", "ZerosLike"]
    if dtype != np.uint32:  # TF bug: a tf.function's OnesLike of uint32 gives 0 (eager gives 1)
        unary.append("OnesLike")

    def fn(a, b):
        nz = tf.where(tf.equal(b, 0), tf.ones_like(b), b)
        shift = tf.cast(tf.constant([0, 1, bits - 1, bits, bits + 1, 2 * bits, 3, 7, 1, 2]), a.dtype)
        if np.iinfo(dtype).min < 0:
            shift = shift - tf.constant([0, 0, 0, 0, 0, 0, 4, 8, 2, 3], a.dtype)  # negative amounts
        dt = a.dtype
        out = {op: getattr(raw, op)(x=a, y=b) for op in binary if _has_kernel(op, dt, "x", "y")}
        out.update({op: getattr(raw, op)(x=a, y=nz) for op in divisions if _has_kernel(op, dt, "x", "y")})
        out.update({op: getattr(raw, op)(x=a, y=shift) for op in ["LeftShift", "RightShift"]})
        out.update({op: getattr(raw, op)(x=a) for op in unary if _has_kernel(op, dt, "x")})
        if _has_kernel("Pow", dt, "x", "y"):
            out["Pow"] = raw.Pow(x=a, y=tf.abs(b) % 13 if np.iinfo(dtype).min < 0 else b % 13)
        if _has_kernel("ClipByValue", dt, "t", "clip_value_min", "clip_value_max"):
            out["ClipByValue"] = raw.ClipByValue(t=a, clip_value_min=b[3], clip_value_max=b[4])
        assert len(out) >= 20, sorted(out)
        return out

    _compare(f"wrap_{np.dtype(dtype).name}", fn, list(_int_operands(dtype)), jit)


_CONSTANT_INVALID = {
    "floor_mod_zero_uint8": lambda a: raw.FloorMod(x=tf.cast(a, tf.uint8), y=tf.constant([1, 0, 2], tf.uint8)),
    "truncate_div_zero_int16": lambda a: raw.TruncateDiv(x=tf.cast(a, tf.int16), y=tf.constant(0, tf.int16)),
    "floor_div_zero_int64": lambda a: raw.FloorDiv(x=tf.cast(a, tf.int64), y=tf.constant([0, 1, 1], tf.int64)),
    "div_zero_uint64": lambda a: raw.Div(x=tf.cast(a, tf.uint64), y=tf.constant(0, tf.uint64)),
    "truncate_mod_zero_int64": lambda a: raw.TruncateMod(x=tf.cast(a, tf.int64), y=tf.constant(0, tf.int64)),
    "pow_negative_int8": lambda a: raw.Pow(x=tf.cast(a, tf.int8), y=tf.constant([1, -1, 2], tf.int8)),
    "pow_negative_int16": lambda a: raw.Pow(x=tf.cast(a, tf.int16), y=tf.constant(-3, tf.int16)),
    "pow_negative_int32": lambda a: raw.Pow(x=a, y=tf.constant([2, 2, -1], tf.int32)),
    "argmax_empty_axis": lambda a: raw.ArgMax(input=tf.zeros([3, 0]), dimension=1),
    "argmin_empty_axis_int64": lambda a: raw.ArgMin(input=tf.zeros([0], tf.int64), dimension=0),
}


@pytest.mark.parametrize("case", sorted(_CONSTANT_INVALID))
def test_constant_invalid_raises(case):
    assert_raises_like_tf(_CONSTANT_INVALID[case], [np.array([4, -7, 9], np.int32)])


# -- int64 beyond 2^53, uint64 beyond 2^63 -------------------------------------------------------------------


@JIT
def test_int64_beyond_float64_precision(jit):
    """Values that float64 cannot hold apart (2^53 + 1, 2^63 - 1, uint64 2^64 - 1): a lowering that goes through
    a float merges them."""

    def fn(x, u):
        out = {}
        for name, v in [("int64", x), ("uint64", u)]:
            w = tf.reverse(v, [0])
            for op in ["Equal", "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual", "Maximum", "Minimum"]:
                out[f"{name}_{op}"] = getattr(raw, op)(x=v, y=w)
            for op in ["SquaredDifference", "FloorMod", "TruncateDiv", "Div"]:
                if _has_kernel(op, v.dtype, "x", "y"):
                    out[f"{name}_{op}"] = getattr(raw, op)(x=v, y=w)
            if _has_kernel("Sign", v.dtype, "x"):
                out[f"{name}_sign"] = tf.sign(v)
            out[f"{name}_max"] = tf.reduce_max(v)
            out[f"{name}_min"] = tf.reduce_min(v, keepdims=True)
            out[f"{name}_sum"] = tf.reduce_sum(v[:3])
            out[f"{name}_mean"] = tf.reduce_mean(v)
            out[f"{name}_mean_pairs"] = tf.reduce_mean(tf.reshape(v, [-1, 2]), axis=-1)
            out[f"{name}_argmax"] = tf.argmax(v, output_type=tf.int64)
            out[f"{name}_argmin"] = tf.argmin(v, output_type=tf.int32)
            out[f"{name}_cumsum_excl_rev"] = tf.cumsum(v, exclusive=True, reverse=True)
            out[f"{name}_cummax"] = raw.Cumprod(x=v[:3], axis=0, exclusive=True)
            out[f"{name}_segment_sum"] = tf.math.segment_sum(v, tf.constant([0, 0, 1, 1, 1, 3, 3, 3]))
            out[f"{name}_segment_max"] = tf.math.segment_max(v, tf.constant([0, 0, 1, 1, 1, 3, 3, 3], tf.int64))
            out[f"{name}_segment_min"] = tf.math.unsorted_segment_min(v, tf.constant([0, 1] * 4), 3)
            out[f"{name}_top_k"] = tf.math.top_k(v, 5)
            out[f"{name}_clip"] = tf.clip_by_value(v, v[2], v[1])
            out[f"{name}_unique"] = tf.unique(tf.concat([v, w], 0))
            out[f"{name}_unique_counts"] = tf.unique_with_counts(tf.concat([v, v[:3]], 0), out_idx=tf.int64)
            out[f"{name}_one_hot"] = tf.one_hot([2, -1, 0], 3, on_value=v[0], off_value=v[1])
            out[f"{name}_fill"] = tf.fill([2], v[3])
            out[f"{name}_where"] = tf.where(v > v[4], v, w)
        out["int64_sort"] = tf.sort(x)
        out["int64_sort_desc"] = tf.sort(x, direction="DESCENDING")
        out["int64_argsort"] = tf.argsort(x, stable=True)
        out["bincount_int64_weights"] = tf.math.bincount([0, 1, 1, 3], weights=x[:4], minlength=5)
        out["dense_bincount_int64_weights"] = raw.DenseBincount(input=[0, 1, 1, 3], size=4, weights=x[:4])
        out["abs_neg"] = (tf.abs(x), tf.negative(x), tf.math.abs(x - 1))
        out["floordiv"] = (tf.math.floordiv(x, x[0]), tf.math.floordiv(u, u[1]))
        out["to_uint64"] = tf.cast(x, tf.uint64) == u
        return out

    x = np.array([2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, -(2**63) + 1, 2**62 + 1, 2**53 + 3, -(2**63)], np.int64)
    u = np.array([2**63, 2**63 + 1, 2**64 - 1, 2**53 + 1, 2**53, 1, 2**64 - 2, 2**63 - 1], np.uint64)
    _compare("int64_beyond_f64", fn, [x, u], jit)


@JIT
@pytest.mark.parametrize("dtype", [tf.int8, tf.int16, tf.uint8, tf.uint16, tf.uint32, tf.uint64])
def test_sort_and_scan_small_integer_types(jit, dtype):
    """tf.sort (top_k of the negated or inverted values), top_k, argmax and cumulative ops in the narrow and
    unsigned types; duplicates and the type's limits."""

    def fn(x):
        v = x
        out = {
            "top_k": tf.math.top_k(v, 4),
            "top_k_2d": tf.math.top_k(tf.reshape(v, [2, -1]), 2),
            "argmax": tf.argmax(v),
            "argmin": tf.argmin(tf.reshape(v, [2, -1]), axis=1, output_type=tf.int32),
            "cumsum": tf.cumsum(v, reverse=True),
            "cumprod": tf.math.cumprod(v, exclusive=True),
            "max_min": (tf.reduce_max(v), tf.reduce_min(v, axis=0, keepdims=True)),
            "sum_prod": (tf.reduce_sum(v), tf.reduce_prod(v[:4])),
            "mean": tf.reduce_mean(v),
        }
        return out | _where_defined({"sort": lambda: tf.sort(v), "desc": lambda: tf.sort(v, direction="DESCENDING")})

    info = np.iinfo(dtype.as_numpy_dtype)
    x = np.array([info.max, 0, info.min, 3, info.max, 1, info.min + 1, 3], dtype.as_numpy_dtype)
    _compare(f"sort_scan_{dtype.name}", fn, [x], jit)


def _unsigned_zeros(t):
    """``t`` with -0.0 as 0.0: which zero TF's Maximum/Minimum, Max/Min and Xdivy/Xlogy of x = -0.0 give depends
    on the element's place in Eigen's vector packets (the scalar tail differs)."""
    return tf.where(t == 0, tf.zeros_like(t), t)


# -- floating special values ---------------------------------------------------------------------------------


_SPECIALS = [np.nan, -np.inf, np.inf, -0.0, 0.0, 1.0, -1.0, 2.5, -2.5, 0.5, -1e30, 1e-30, 70000.0, -3.0]


@JIT
@pytest.mark.parametrize("dtype", _FLOATS)
def test_float_specials_per_dtype(jit, dtype):
    """Every pair of special values through the binary ops, and the unary ops at each: does TF propagate NaN in
    Maximum/Minimum, which zero does it keep, what is 1/-0.0, x mod inf, Xlogy(0, NaN), MulNoNan(NaN, 0)."""
    n = len(_SPECIALS)
    a = np.repeat(np.array(_SPECIALS, np.float64), n)
    b = np.tile(np.array(_SPECIALS, np.float64), n)

    def fn(a, b):
        x, y = tf.cast(a, dtype), tf.cast(b, dtype)
        binary = ["Maximum", "Minimum", "FloorMod", "TruncateMod", "Mod", "FloorDiv", "DivNoNan", "MulNoNan"]
        binary += ["Xlogy", "Xlog1py", "Xdivy", "RealDiv", "SquaredDifference", "Equal", "Less", "GreaterEqual"]
        binary += ["Atan2", "Pow", "NextAfter", "ApproximateEqual"]
        out = {op: getattr(raw, op)(x=x, y=y) for op in binary if _has_kernel(op, dtype, "x", "y")}
        unary = ["Sign", "Round", "Rint", "Reciprocal", "Inv", "Rsqrt", "Sqrt", "IsNan", "IsInf", "IsFinite"]
        unary += ["Floor", "Ceil", "Abs", "Neg", "Square", "Log1p", "Expm1", "Log", "Exp", "Tanh", "Sigmoid"]
        unary += ["Erf", "Erfc"]
        out.update({op: getattr(raw, op)(x=y[:n]) for op in unary if _has_kernel(op, dtype, "x")})
        activations = ["Softplus", "Softsign", "Relu", "Relu6", "Elu", "Selu"]
        out.update({op: getattr(raw, op)(features=y[:n]) for op in activations if _has_kernel(op, dtype, "features")})
        out.update({op: _unsigned_zeros(out[op]) for op in ["Maximum", "Minimum", "Xdivy", "Xlogy", "Xlog1py"]})
        out["LeakyRelu"] = raw.LeakyRelu(features=y[:n], alpha=0.3)  # (float32 attr times a float64)
        out["LeakyReluGrad"] = raw.LeakyReluGrad(gradients=x[:n] + 1, features=y[:n], alpha=0.1)
        if _has_kernel("ApproximateEqual", dtype, "x", "y"):  # |1.1 - 1.0| < float32(0.1) in float64
            out["ApproximateEqual_0.1"] = raw.ApproximateEqual(x=y[:n], y=y[:n] + tf.cast(0.1, dtype), tolerance=0.1)
        out["ClipByValue"] = raw.ClipByValue(t=y[:n], clip_value_min=y[3], clip_value_max=y[5])
        out["ClipByValue_nan_bounds"] = raw.ClipByValue(t=y[:n], clip_value_min=y[0], clip_value_max=y[5])
        return {k: tf.cast(v, tf.float32) if v.dtype == tf.bfloat16 else v for k, v in out.items()}

    rtol = {tf.float16: 1e-3, tf.bfloat16: 1e-2, tf.float32: 1e-6, tf.float64: 1e-12}[dtype]
    _compare(f"float_specials_{dtype.name}", fn, [a, b], jit, rtol=rtol, signed_zeros=True)


@JIT
@pytest.mark.parametrize("dtype", _FLOATS)
def test_float_reductions_with_specials(jit, dtype):
    """NaN, inf and -0.0 through the reductions and arg reductions per dtype; logsumexp of -inf rows."""

    def fn(x):
        v = tf.cast(x, dtype)
        out = {}
        for op in ["Max", "Min", "Sum", "Prod", "Mean", "EuclideanNorm"]:
            out[op] = getattr(raw, op)(input=v, axis=1)
            out[f"{op}_axis0"] = getattr(raw, op)(input=v, axis=tf.constant([-2], tf.int64), keep_dims=True)
        for op in ["Max", "Min", "Max_axis0", "Min_axis0"]:
            out[op] = _unsigned_zeros(out[op])
        for op in ["ArgMax", "ArgMin"]:
            out[op] = getattr(raw, op)(input=v, dimension=1)
            out[f"{op}_axis0"] = getattr(raw, op)(input=v, dimension=tf.constant(0, tf.int64), output_type=tf.int32)
        out["logsumexp"] = tf.reduce_logsumexp(v, axis=1)
        out["log_softmax"] = tf.nn.log_softmax(v)
        out["cumsum"] = tf.cumsum(v, axis=1)
        out["cummax_like"] = tf.math.cumprod(v, axis=1, reverse=True)
        out["top_k"] = tf.math.top_k(v, 3, sorted=False)  # (sorted=True with NaN: a gaps row)
        out["is_finite_all"] = tf.reduce_all(tf.math.is_finite(v), axis=1)
        return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32) if t.dtype == tf.bfloat16 else t, out)

    nan, inf = np.nan, np.inf
    x = np.array(
        [
            [1.0, nan, 3.0, -1.0],
            [nan, nan, nan, nan],
            [-inf, -inf, -inf, -inf],
            [inf, -inf, 0.0, 1.0],
            [-0.0, 0.0, -0.0, 0.0],
            [0.0, -0.0, 0.0, -0.0],
            [inf, nan, -inf, 2.0],
            [-inf, 3.0, nan, -inf],
        ],
        np.float64,
    )
    rtol = {tf.float16: 1e-3, tf.bfloat16: 1e-2, tf.float32: 1e-6, tf.float64: 1e-12}[dtype]
    _compare(f"float_reductions_{dtype.name}", fn, [x], jit, rtol=rtol, signed_zeros=True)


@JIT
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_zeros_and_empty(jit, dtype):
    """Complex ops at zero, and the complex reductions and scans over empty axes."""

    def fn(z):
        out = {
            "sign": tf.sign(z),
            "abs": tf.abs(z),
            "div_no_nan": tf.math.divide_no_nan(z, tf.reverse(z, [0])),
            "mul_no_nan": tf.math.multiply_no_nan(z, tf.reverse(z, [0])),
            "xlogy": tf.math.xlogy(tf.reverse(z, [0]) * 0, z),
            "xdivy": tf.math.xdivy(z * 0, tf.reverse(z, [0])),
            "square": tf.square(z),
            "squared_difference": tf.math.squared_difference(z, tf.reverse(z, [0])),
            "equal": tf.equal(z, tf.reverse(z, [0])),
            "mean": tf.reduce_mean(z),
            "prod": tf.reduce_prod(z[:3]),
            "sum_empty": tf.reduce_sum(z[:0]),
            "prod_empty": tf.reduce_prod(z[:0], keepdims=True),
            "mean_empty": tf.reduce_mean(tf.reshape(z, [2, -1])[:, :0], axis=-1),
            "cumsum_empty": tf.cumsum(z[:0]),
            "cumprod": tf.math.cumprod(z, exclusive=True, reverse=True),
        }
        return out

    z = np.array([0j, complex(-0.0, 0.0), 1 + 1j, -2 - 0.5j, complex(0.0, -3.0), 2 + 0j], dtype)
    _compare(f"complex_zeros_{np.dtype(dtype).name}", fn, [z], jit, rtol=1e-6)


# -- zero-size reductions ------------------------------------------------------------------------------------


@JIT
def test_empty_reductions_every_dtype(jit):
    """Sum 0, Prod 1, Max the type's lowest (-inf), Min its highest, Mean NaN (0 for integers), ArgMax along a
    non-empty axis of zero-size data; keep_dims and a negative int64 axis tensor."""

    def fn(x):
        out = {}
        for dt in [*_INTS, *_FLOATS]:
            v = tf.cast(x, dt)[:, :0]
            for op in ["Sum", "Prod", "Max", "Min", "Mean"]:
                r = getattr(raw, op)(input=v, axis=tf.constant([-1], tf.int64), keep_dims=True)
                out[f"{dt.name}_{op}"] = tf.cast(r, tf.float32) if dt == tf.bfloat16 else r
                r = getattr(raw, op)(input=v, axis=tf.constant([0, -1], tf.int32))
                out[f"{dt.name}_{op}_all"] = tf.cast(r, tf.float32) if dt == tf.bfloat16 else r
            out[f"{dt.name}_argmax_rows"] = tf.argmax(tf.transpose(v), axis=1)
            out[f"{dt.name}_cumsum"] = tf.cumsum(v, axis=-1, exclusive=True)
            out[f"{dt.name}_top_k"] = tf.math.top_k(v, 0)
        out["norm_empty"] = raw.EuclideanNorm(input=x[:0], axis=0)
        out["all_any"] = (raw.All(input=x[:0] > 0, axis=[0, 1]), raw.Any(input=x[:0] > 0, axis=[-1], keep_dims=True))
        out["logsumexp_empty"] = tf.reduce_logsumexp(x[:, :0], axis=1)
        return out

    _compare("empty_reductions", fn, [np.ones([2, 3], np.float32)], jit)


@JIT
@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_half_scans_and_products_round_every_step(jit, dtype):
    """Long half-precision cumulative sums, products and logsumexps: TF's scan rounds every partial result to the
    16-bit type, element after element (XLA's parallel prefix or a float32 accumulation is a few ulps off)."""

    def fn(x):
        v = tf.cast(x, dtype)
        out = {
            "cumsum": tf.cumsum(v, axis=-1),
            "cumsum_excl_rev": tf.cumsum(v, axis=-1, exclusive=True, reverse=True),
            "cumsum_axis0": tf.cumsum(v, axis=0),
            "cumprod": tf.math.cumprod(1 + v / 64, axis=-1),
            "clse": tf.math.cumulative_logsumexp(v, axis=-1),
            "argmax": tf.argmax(v, axis=-1, output_type=tf.int32),
            "squared_difference": tf.math.squared_difference(v, v[:, ::-1]),
            "l2_loss": tf.nn.l2_loss(v[0]),
        }
        return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32) if t.dtype == tf.bfloat16 else t, out)

    x = (np.sin(np.arange(128) * 0.7) * 3.3 + 0.01 * np.arange(128)).reshape(2, 64)
    _compare(f"half_scans_{dtype.name}", fn, [x.astype(np.float32)], jit, rtol=0)


@JIT
def test_bfloat16_results_cast_up_are_rounded(jit):
    """A bfloat16 op's result cast to float32/float64/complex (Keras mixed precision's output cast): compiled, XLA
    may keep the op's float32 value instead of rounding it to bfloat16 first."""

    def fn(a, b):
        x, y = tf.cast(a, tf.bfloat16), tf.cast(b, tf.bfloat16)
        return {
            "mul_f32": tf.cast(x * y, tf.float32),
            "fma_f64": tf.cast(x * y + x, tf.float64),
            "div_c64": tf.cast(x / y, tf.complex64),
            "squared_difference": tf.cast(tf.math.squared_difference(x, y), tf.float32),
            "exp_f16": tf.cast(tf.exp(x), tf.float16),
        }

    a = np.linspace(-3.3, 3.7, 24, dtype=np.float32)
    _compare("bfloat16_cast_up", fn, [a, np.cos(a) * 2.9 + 0.013], jit, rtol=0)


@JIT
def test_float64_ops_with_default_float_attrs(jit):
    """An attr left at its default is not stored in the SavedModel; TF's kernels then use the registered float32
    default cast to the operands' dtype: LeakyRelu's alpha 0.2 is 0.20000000298023224 in float64, and
    ApproximateEqual's tolerance 1e-5 is 9.99999974737875e-06 (compared with <=)."""

    def fn(x, d):
        return {
            "leaky_relu": raw.LeakyRelu(features=x),
            "leaky_relu_grad": raw.LeakyReluGrad(gradients=x * 3, features=x),
            "approximate_equal": raw.ApproximateEqual(x=d, y=tf.zeros_like(d)),
        }

    x = np.array([-1.0, -3.0, 2.0, -0.0, -1e300], np.float64)
    d = np.array([9.99999987e-06, 9.99999974737875e-06, 1e-5, -1e-5, 9.9999997e-06], np.float64)
    _compare("default_float_attrs", fn, [x, d], jit, rtol=0)
