"""jaxsm.ops.math against TF: each case saves a tf.function of raw ops, loads it with jaxsm and compares."""

import ml_dtypes
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import LoweringError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

R = tf.raw_ops
JIT = pytest.mark.parametrize("jit", [True, False])
_FEATURES = {"Relu", "Relu6", "Elu", "Selu", "Softplus", "Softsign", "LeakyRelu"}


def un(name, v, **attrs):
    return getattr(R, name)(**{"features" if name in _FEATURES else "x": v}, **attrs)


def bin_(name, x, y, **attrs):
    return getattr(R, name)(x=x, y=y, **attrs)


# -- unary --------------------------------------------------------------------------------------------------

GENERAL = np.array([-7.2, -2.5, -1.5, -0.5, -0.3, -1e-4, 0.0, 1e-4, 0.5, 1.5, 2.5, 3.7, 20.0, -20.0])
POSITIVE = np.array([1e-3, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0])
UNIT = np.array([-0.99, -0.5, -0.1, 0.0, 0.3, 0.75, 0.99])
GE_ONE = np.array([1.0, 1.5, 3.0, 10.0, 100.0])
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -1.0, 3.0])

UNARY_GENERAL = [
    "Abs",
    "Neg",
    "Sign",
    "Square",
    "Exp",
    "Expm1",
    "Sin",
    "Cos",
    "Tan",
    "Atan",
    "Sinh",
    "Cosh",
    "Tanh",
    "Asinh",
    "Sigmoid",
    "Floor",
    "Ceil",
    "Round",
    "Rint",
    "Erf",
    "Erfc",
    "Softplus",
    "Softsign",
    "Relu",
    "Relu6",
    "Elu",
    "Selu",
    "LeakyRelu",
]
UNARY_POSITIVE = ["Sqrt", "Rsqrt", "Log", "Log1p", "Reciprocal", "Inv"]
UNARY_UNIT = ["Asin", "Acos", "Atanh"]
UNARY_SPECIAL = [
    "IsNan",
    "IsInf",
    "IsFinite",
    "Abs",
    "Neg",
    "Sign",
    "Floor",
    "Relu",
    "Exp",
    "Sigmoid",
    "Tanh",
]


def _unary_fn(x, p, u, g, s):
    half = x.dtype in (tf.float16, tf.bfloat16)
    out = {f"{n}": un(n, x) for n in UNARY_GENERAL if not (half and n == "Rint")}  # no half Rint kernel
    out.update({f"{n}_pos": un(n, p) for n in UNARY_POSITIVE})
    out.update({f"{n}_unit": un(n, u) for n in UNARY_UNIT})
    out["Acosh"] = un("Acosh", g)
    out["LeakyRelu_alpha"] = un("LeakyRelu", x, alpha=0.3)
    out.update({f"{n}_special": un(n, s) for n in UNARY_SPECIAL})
    return out


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unary_float(dtype, jit):
    inputs = [a.astype(dtype) for a in (GENERAL, POSITIVE, UNIT, GE_ONE, SPECIAL)]
    assert_matches_tf(_unary_fn, inputs, jit=jit)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_unary_half(dtype):
    # TF evaluates half/bfloat16 math in float32 and rounds once, as XLA does; 1 ulp of slack for the
    # transcendental functions whose float32 results differ in the last bit before rounding.
    inputs = [a.astype(dtype) for a in (GENERAL, POSITIVE, UNIT, GE_ONE, SPECIAL)]
    assert_matches_tf(_unary_fn, inputs, rtol=1e-2 if dtype == ml_dtypes.bfloat16 else 1e-3)


@JIT
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8])
def test_unary_int(dtype, jit):
    x = np.array([0, 1, -1, 5, -7, 100, 127, -128], np.int64).astype(dtype)
    signed = np.dtype(dtype).kind == "i"

    def fn(x):
        out = {n: un(n, x) for n in ["Invert", "PopulationCount", "Square"]}
        if signed:
            out.update({n: un(n, x) for n in ["Abs", "Neg", "Sign", "Relu"]})
        return out

    assert_matches_tf(fn, [x], jit=jit)


@JIT
def test_special_functions(jit):
    # jax.scipy.special and Eigen use different series/continued-fraction evaluations; they agree to a few
    # float64 ulps, far inside 1e-9.
    x, p, u = GENERAL[np.abs(GENERAL) < 10], POSITIVE[1:], UNIT[1:-1]
    prob = np.array([1e-6, 0.01, 0.3, 0.5, 0.9, 0.999])

    def fn(x, p, u, prob):
        out = {
            n: un(n, x) for n in ["BesselI0e", "BesselI1e", "BesselI0", "BesselI1", "Dawsn", "FresnelSin", "FresnelCos"]
        }
        out.update({n: un(n, p) for n in ["Lgamma", "Digamma", "Expint", "Spence"]})
        out["Lgamma_neg"] = un("Lgamma", x)
        out["Erfinv"] = un("Erfinv", u)
        out["Ndtri"] = un("Ndtri", prob)
        out["Zeta"] = R.Zeta(x=p + 1.5, q=p)
        out["Polygamma"] = R.Polygamma(a=tf.constant([0.0, 1.0, 2.0, 3.0, 1.0, 2.0, 0.0], tf.float64), x=p)
        out["Igamma"] = R.Igamma(a=p, x=p[::-1])
        out["Igammac"] = R.Igammac(a=p, x=p[::-1])
        out["Betainc"] = R.Betainc(a=p, b=p[::-1], x=tf.constant(np.full(7, 0.4)))
        return out

    assert_matches_tf(fn, [x, p, u, prob], rtol=1e-9, atol=1e-12, jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex(dtype, jit):
    z = np.array([1 + 2j, -3 + 0.5j, 0.5 - 1j, -2 - 2j, 0j], dtype)
    w = np.array([2 - 1j, 1 + 1j, -0.5 + 3j, 1j, 2 + 0j], dtype)
    real_dtype = tf.float32 if dtype == np.complex64 else tf.float64

    def fn(z, w):
        out = {n: getattr(R, n)(input=z, Tout=real_dtype) for n in ["Real", "Imag", "Angle"]}
        out["Conj"] = R.Conj(input=z)
        out["ComplexAbs"] = R.ComplexAbs(x=z, Tout=real_dtype)
        out.update({n: un(n, z) for n in ["Neg", "Square", "Sign", "Exp", "Tanh", "Sigmoid"]})
        nz = z[:4]
        out.update({n: un(n, nz) for n in ["Log", "Sqrt", "Rsqrt", "Reciprocal"]})
        out.update({n: bin_(n, z, w) for n in ["Add", "Sub", "Mul", "Div", "SquaredDifference", "Equal"]})
        out["Complex"] = R.Complex(real=tf.math.real(z), imag=tf.math.imag(w)[:1], Tout=z.dtype)
        out["Complex_f"] = R.Complex(real=tf.constant([1.0, 2.0], real_dtype), imag=tf.math.imag(w)[:2], Tout=z.dtype)
        out["TanhGrad"] = R.TanhGrad(y=z, dy=w)
        out["SigmoidGrad"] = R.SigmoidGrad(y=z, dy=w)
        out["ReciprocalGrad"] = R.ReciprocalGrad(y=z, dy=w)
        return out

    assert_matches_tf(fn, [z, w], rtol=1e-5 if dtype == np.complex64 else 1e-12, jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_grads(dtype, jit):
    y = np.array([-2.0, -0.5, 0.0, 0.3, 0.9, 3.0, 6.0, 7.5], dtype)
    dy = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 2.0, 1.5, 0.25], dtype)

    def fn(y, dy):
        # y is fed directly (not tf.sigmoid(y)): a 1-ulp difference in sigmoid would be magnified by 1 - y.
        return {
            "SigmoidGrad": R.SigmoidGrad(y=y / 8 + 0.5, dy=dy),
            "TanhGrad": R.TanhGrad(y=y / 8, dy=dy),
            "SqrtGrad": R.SqrtGrad(y=tf.abs(y) + 1, dy=dy),
            "RsqrtGrad": R.RsqrtGrad(y=tf.abs(y) + 1, dy=dy),
            "ReciprocalGrad": R.ReciprocalGrad(y=y, dy=dy),
            "InvGrad": R.InvGrad(y=y, dy=dy),
            "ReluGrad": R.ReluGrad(gradients=dy, features=y),
            "Relu6Grad": R.Relu6Grad(gradients=dy, features=y),
            "EluGrad": R.EluGrad(gradients=dy, outputs=R.Elu(features=y)),
            "SeluGrad": R.SeluGrad(gradients=dy, outputs=R.Selu(features=y)),
            "SoftplusGrad": R.SoftplusGrad(gradients=dy, features=y),
            "SoftsignGrad": R.SoftsignGrad(gradients=dy, features=y),
            "LeakyReluGrad": R.LeakyReluGrad(gradients=dy, features=y, alpha=0.1),
        }

    assert_matches_tf(fn, [y, dy], jit=jit)


# -- binary -------------------------------------------------------------------------------------------------

FLOAT_BINARY = [
    "Add",
    "AddV2",
    "Sub",
    "Mul",
    "MulNoNan",
    "Div",
    "DivNoNan",
    "RealDiv",
    "TruncateDiv",
    "FloorDiv",
    "FloorMod",
    "Mod",
    "TruncateMod",
    "Maximum",
    "Minimum",
    "SquaredDifference",
    "Atan2",
    "Xlogy",
    "Xlog1py",
    "Xdivy",
    "Equal",
    "NotEqual",
    "Less",
    "LessEqual",
    "Greater",
    "GreaterEqual",
]


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_float(dtype, jit):
    x = np.array([[7.5], [-7.5], [0.0], [1.0], [np.nan]], dtype)  # (5, 1) against (6,): broadcasting
    y = np.array([2.0, -2.0, 0.1, 0.0, 3.0, np.inf], dtype)

    def fn(x, y):
        out = {n: bin_(n, x, y) for n in FLOAT_BINARY}
        out["NextAfter"] = R.NextAfter(x1=x, x2=y)
        out["Pow"] = bin_("Pow", tf.abs(x), y)
        out["Pow_neg_base"] = bin_("Pow", x, tf.constant([2.0, 3.0, -1.0], x.dtype)[:, None][:1])
        out["ApproximateEqual"] = R.ApproximateEqual(x=x[:, :1] + 1e-3, y=tf.broadcast_to(x, [5, 1]), tolerance=0.01)
        return out

    assert_matches_tf(fn, [x, y], jit=jit)


INT_BINARY = [
    "Add",
    "AddV2",
    "Sub",
    "Mul",
    "Div",
    "TruncateDiv",
    "FloorDiv",
    "FloorMod",
    "Mod",
    "TruncateMod",
    "Maximum",
    "Minimum",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
    "Equal",
    "NotEqual",
    "Less",
    "LessEqual",
    "Greater",
    "GreaterEqual",
    "SquaredDifference",
]


@JIT
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8])
def test_binary_int(dtype, jit):
    signed = np.dtype(dtype).kind == "i"
    x = np.array([[7], [-7], [0], [13], [-128]] if signed else [[7], [200], [0], [13], [255]], np.int64)
    y = np.array([2, -2, 3, -5, 1, 100] if signed else [2, 3, 5, 1, 100, 7], np.int64)
    x, y = x.astype(dtype), y.astype(dtype)
    wide = dtype in (np.int32, np.int64)  # TF registers these three for int32/int64 only
    ops = [n for n in INT_BINARY if wide or n not in ("Mod", "TruncateMod", "SquaredDifference")]

    def fn(x, y):
        out = {n: bin_(n, x, y) for n in ops}
        if signed:
            out["Pow"] = bin_("Pow", x, tf.constant([[0, 1, 2, 3]], x.dtype))
        return out

    assert_matches_tf(fn, [x, y], jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint32])
def test_shifts(dtype, jit):
    bits = np.dtype(dtype).itemsize * 8
    signed = np.dtype(dtype).kind == "i"
    x = np.array([[1], [5], [-9 if signed else 9], [np.iinfo(dtype).max]], np.int64).astype(dtype)
    shift = np.array([0, 1, 3, bits - 1, bits, bits + 5] + ([-1] if signed else []), np.int64).astype(dtype)
    assert_matches_tf(
        lambda x, s: {"LeftShift": R.LeftShift(x=x, y=s), "RightShift": R.RightShift(x=x, y=s)},
        [x, shift],
        jit=jit,
    )


@JIT
def test_logical(jit):
    a = np.array([[True], [False]])
    b = np.array([True, False, True])
    assert_matches_tf(
        lambda a, b: {
            "and": R.LogicalAnd(x=a, y=b),
            "or": R.LogicalOr(x=a, y=b),
            "not": R.LogicalNot(x=b),
            "eq": R.Equal(x=a, y=b),
            "ne": R.NotEqual(x=a, y=b),
        },
        [a, b],
        jit=jit,
    )


@JIT
def test_equal_incompatible_shapes(jit):
    def fn(x, y):
        return {
            "eq": R.Equal(x=x, y=y, incompatible_shape_error=False),
            "ne": R.NotEqual(x=x, y=y, incompatible_shape_error=False),
            "eq_ok": R.Equal(x=x, y=x[:1], incompatible_shape_error=False),
            "str_eq": R.Equal(x=tf.constant(["a", "b"]), y=tf.constant(["a", "c"])),
        }

    assert_matches_tf(fn, [np.ones((2, 3), np.float32), np.ones((4,), np.float32)], jit=jit)


# -- n-ary, selection, casts --------------------------------------------------------------------------------


@JIT
def test_addn_clip_select(jit):
    x = np.array([[-3.0, 0.5, 2.0], [4.0, -1.0, 0.0]], np.float32)
    c1 = np.array([True, False])

    def fn(x, c1):
        return {
            "AddN": R.AddN(inputs=[x, x * 2, -x]),
            "AddN1": R.AddN(inputs=[x]),
            "Clip": R.ClipByValue(t=x, clip_value_min=tf.constant(-1.0), clip_value_max=tf.constant(1.5)),
            "ClipT": R.ClipByValue(t=x, clip_value_min=x * 0 - 2, clip_value_max=tf.abs(x)),
            "ClipInverted": R.ClipByValue(t=x, clip_value_min=tf.constant(1.0), clip_value_max=tf.constant(-1.0)),
            "SelectRows": R.Select(condition=c1, x=x, y=-x),
            "SelectSame": R.Select(condition=x > 0, x=x, y=x * 10),
            "SelectScalar": R.Select(condition=tf.constant(False), x=x, y=-x),
            "SelectV2": R.SelectV2(condition=x[:1] > 0, t=x, e=tf.constant(7.0)),
        }

    assert_matches_tf(fn, [x, c1], jit=jit)


CASTS = [
    (np.float32, np.int32, [-2.7, -0.5, 0.0, 0.9, 3.99, 1e6]),
    (np.float64, np.int64, [-2.7, 1e12, 3.99]),
    (np.float32, np.uint8, [0.0, 1.9, 200.5, 255.0]),
    (np.float32, np.float16, [1 / 3, 65504.0, 1e-6, -2.5]),
    (np.float64, np.float32, [1 / 3, 1e-30, 3e38]),
    (np.float32, ml_dtypes.bfloat16, [1 / 3, 1.00390625, -7.3]),
    (np.int32, np.float32, [16777217, -5, 0]),
    (np.int64, np.int32, [2**40 + 5, -(2**33) - 1, 7]),
    (np.int32, np.int64, [-1, 2**31 - 1]),
    (np.int32, np.bool_, [0, 5, -1]),
    (np.float32, np.bool_, [0.0, -0.0, 0.1, np.nan]),
    (np.bool_, np.float32, [True, False]),
    (np.complex64, np.float32, [1 + 2j, -3 - 1j]),
    (np.complex64, np.int32, [1.7 + 2j, -3.2 - 1j]),
    (np.float32, np.complex64, [1.5, -2.0]),
    (np.complex128, np.complex64, [1 / 3 + 1j / 7]),
    (np.uint8, np.int8, [0, 127, 128, 255]),
    # out of range and NaN: TF's x86 kernels give the integer minimum (XLA alone would saturate, NaN -> 0)
    (np.float32, np.int32, [np.nan, np.inf, -np.inf, 3e9, -3e9, 2147483520.0, -2147483648.0, 2147483648.0]),
    (np.float64, np.int32, [1e10, -1e10, np.nan, 2147483647.9, -2147483648.9]),
    (np.float32, np.int64, [np.nan, np.inf, 1e19, -1e19, 3e9]),
    (np.float64, np.int64, [np.nan, 9.3e18, -9.3e18, -9.2233720368547758e18]),
    (np.float16, np.int32, [np.nan, np.inf, -np.inf, 65504.0, -3.7]),
    # float32 to narrower integers: the low bits of the int32 conversion
    (np.float32, np.uint8, [300.0, -5.0, -1.7, 3e9, np.nan]),
    (np.float32, np.int8, [200.0, -129.0, 1e10, np.nan]),
    (np.float32, np.int16, [40000.0, -40000.0, np.nan]),
    (np.float32, np.uint16, [70000.0, -1.0, np.nan]),
]


@JIT
@pytest.mark.parametrize("src,dst,values", CASTS, ids=lambda v: getattr(v, "__name__", None))
def test_cast(src, dst, values, jit):
    assert_matches_tf(lambda x: R.Cast(x=x, DstT=tf.as_dtype(dst)), [np.array(values, src)], jit=jit)


@JIT
@pytest.mark.parametrize(
    "src,dst",
    [
        (np.float32, ml_dtypes.bfloat16),
        (np.float32, np.float16),
        (np.float64, np.float32),
        (np.float64, ml_dtypes.bfloat16),
    ],
)
def test_cast_truncate(src, dst, jit):
    x = np.array([1 / 3, -1 / 3, 1.00390625 + 1e-3, 2.0 / 3.0, 255.9, np.nan, np.inf], src)
    assert_matches_tf(
        lambda x: {
            "trunc": R.Cast(x=x, DstT=tf.as_dtype(dst), Truncate=True),
            "round": R.Cast(x=x, DstT=tf.as_dtype(dst), Truncate=False),
        },
        [x],
        jit=jit,
    )


@JIT
@pytest.mark.parametrize(
    "src,dst,shape",
    [
        (np.float32, np.int32, (2, 3)),
        (np.float32, np.uint8, (2, 3)),
        (np.uint8, np.float32, (3, 4)),
        (np.int64, np.int32, (3,)),
        (np.int32, np.int64, (3, 2)),
        (np.float16, np.int16, (4,)),
    ],
    ids=str,
)
def test_bitcast(src, dst, shape, jit):
    x = (np.arange(np.prod(shape)).reshape(shape) * 37 + 1).astype(src)
    assert_matches_tf(lambda x: R.Bitcast(input=x, type=tf.as_dtype(dst)), [x], jit=jit)


@pytest.mark.parametrize(
    "start,limit,delta,dtype",
    [
        (0, 10, 3, tf.int32),
        (10, 0, -3, tf.int32),
        (5, 5, 1, tf.int32),
        (-(2**40), 2**40, 2**38, tf.int64),
        (0.0, 1.0, 0.1, tf.float32),
        (1.5, -2.0, -0.3, tf.float32),
        (0.0, 1.0, 0.1, tf.float64),
        (0.0, 100.0, 0.7, tf.float32),
    ],
    ids=str,
)
def test_range(start, limit, delta, dtype):
    def fn(x):
        c = [tf.constant(v, dtype) for v in (start, limit, delta)]
        return R.Range(start=c[0], limit=c[1], delta=c[2]), x

    assert_matches_tf(fn, [np.zeros(1, np.float32)], rtol=0)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num", [1, 2, 7, 10])
def test_linspace(dtype, num, jit):
    assert_matches_tf(
        lambda a, b: R.LinSpace(start=a, stop=b, num=tf.constant(num)),
        [np.array(-1.3, dtype), np.array(2.9, dtype)],
        jit=jit,
    )


# -- reductions ---------------------------------------------------------------------------------------------

REDUCE_CASES = [
    (1, False),
    (-1, True),
    ([0, 2], False),
    ([0, -1], True),
    ([], False),
    ([], True),
    ([0, 1, 2], False),
]


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float64])
@pytest.mark.parametrize("axis,keep", REDUCE_CASES, ids=str)
def test_reductions(axis, keep, dtype, jit):
    x = ((np.arange(24).reshape(2, 3, 4) % 7) - 3.5).astype(dtype) / (1 if dtype == np.int32 else 3)
    x = x.astype(dtype)

    def fn(x):
        ax = tf.constant(axis, tf.int32)
        out = {
            n: getattr(R, n)(input=x, axis=ax, keep_dims=keep)
            for n in ["Sum", "Prod", "Mean", "Max", "Min", "EuclideanNorm"]
        }
        out.update({n: getattr(R, n)(input=x > 0, axis=ax, keep_dims=keep) for n in ["All", "Any"]})
        return out

    assert_matches_tf(fn, [x], rtol=1e-5, jit=jit)


@JIT
def test_reductions_edge_cases(jit):
    def fn(empty, x, ints):
        out = {n: getattr(R, n)(input=empty, axis=0) for n in ["Sum", "Prod", "Max", "Min", "Mean"]}
        out.update({n: getattr(R, n)(input=empty > 0, axis=0) for n in ["All", "Any"]})
        out["MaxNaN"] = R.Max(input=x, axis=0)
        out["MinNaN"] = R.Min(input=x, axis=tf.constant(0, tf.int64))
        out["IntMeanTruncates"] = R.Mean(input=ints, axis=1)
        out["IntMaxEmpty"] = R.Max(input=ints[:, :0], axis=1)
        out["Scalar"] = R.Sum(input=ints[0, 0], axis=tf.constant([], tf.int32))
        out["ScalarAxis"] = R.Mean(input=x, axis=tf.constant(-1), keep_dims=True)
        out["StaticSum"] = R.Sum(input=tf.constant([[1, 2], [3, 4]]), axis=1)
        return out

    empty = np.zeros((0, 3), np.float32)
    x = np.array([1.0, np.nan, 3.0], np.float32)
    ints = np.array([[-3, -4], [3, 4], [-7, 0]], np.int32)
    assert_matches_tf(fn, [empty, x, ints], jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8])
@pytest.mark.parametrize("output_type", [tf.int32, tf.int64])
def test_argmax_argmin(dtype, output_type, jit):
    x = np.array([[3, 1, 3, 0], [2, 2, 5, 5], [0, 7, 7, 1]], dtype)  # ties: TF returns the first

    def fn(x):
        return {
            f"{n}{a}": getattr(R, n)(input=x, dimension=a, output_type=output_type)
            for n in ["ArgMax", "ArgMin"]
            for a in (0, 1, -1)
        }

    assert_matches_tf(fn, [x], jit=jit)


@JIT
@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_cumulative(exclusive, reverse, dtype, jit):
    x = (np.arange(1, 13).reshape(3, 4) % 5 - 1.5).astype(dtype)

    def fn(x):
        kw = dict(exclusive=exclusive, reverse=reverse)
        out = {f"{n}{a}": getattr(R, n)(x=x, axis=a, **kw) for n in ["Cumsum", "Cumprod"] for a in (0, -1)}
        if x.dtype.is_floating:
            out.update({f"Lse{a}": R.CumulativeLogsumexp(x=x, axis=a, **kw) for a in (0, 1)})
        out["empty"] = R.Cumsum(x=x[:, :0], axis=1, **kw)
        return out

    assert_matches_tf(fn, [x], rtol=1e-5, jit=jit)


# -- matrix products ----------------------------------------------------------------------------------------


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.complex64])
def test_matmul(dtype, jit):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 5)) * 4).astype(dtype)
    b = (rng.standard_normal((5, 3)) * 4).astype(dtype)
    if np.dtype(dtype).kind == "c":
        a, b = a + 1j * a[::-1], b - 2j * b

    def fn(a, b):
        return {
            f"{ta}{tb}": R.MatMul(
                a=a if not ta else tf.transpose(a),
                b=b if not tb else tf.transpose(b),
                transpose_a=ta,
                transpose_b=tb,
            )
            for ta in (False, True)
            for tb in (False, True)
        }

    assert_matches_tf(fn, [a, b], rtol=1e-5, jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_batch_matmul(dtype, jit):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1, 3, 4)).astype(dtype)
    y = rng.standard_normal((3, 4, 5)).astype(dtype)
    if np.dtype(dtype).kind == "c":
        x, y = x + 1j * x, y - 0.5j * y

    def fn(x, y):
        xt, yt = tf.linalg.adjoint(x), tf.linalg.adjoint(y)
        return {
            "V1": R.BatchMatMul(x=x[:, 0], y=y[:2]),
            "V1adj": R.BatchMatMul(x=xt[:, 0], y=yt[:2], adj_x=True, adj_y=True),
            "V2": R.BatchMatMulV2(x=x, y=y),
            "V2adj": R.BatchMatMulV2(x=xt, y=y, adj_x=True),
            "V3": R.BatchMatMulV3(x=x, y=yt, Tout=x.dtype, adj_y=True),
            "V3rank2": R.BatchMatMulV3(x=x, y=y[0], Tout=x.dtype),
        }

    assert_matches_tf(fn, [x, y], rtol=1e-5, jit=jit)


@JIT
def test_batch_matmul_v3_mixed_types(jit):
    x = np.arange(-6, 6, dtype=np.int8).reshape(1, 3, 4)
    y = np.arange(12, dtype=np.int8).reshape(4, 3)
    assert_matches_tf(lambda x, y: R.BatchMatMulV3(x=x, y=y, Tout=tf.int32), [x, y], jit=jit)


@JIT
@pytest.mark.parametrize(
    "equation,shapes",
    [
        ("ij,jk->ik", [(3, 4), (4, 5)]),
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("...ij,...jk->...ik", [(2, 3, 4), (4, 2)]),
        ("ii->i", [(4, 4)]),
        ("ij->", [(3, 4)]),
        ("i,j->ij", [(3,), (4,)]),
        ("abc,cd->abd", [(2, 3, 4), (4, 5)]),
        ("bij->bji", [(2, 3, 4)]),
        # attention as Keras MultiHeadAttention writes it: batch labels not leading, output transposed
        ("aecd,abcd->acbe", [(2, 5, 3, 4), (2, 6, 3, 4)]),
        ("acbe,aecd->abcd", [(2, 3, 6, 5), (2, 5, 3, 4)]),
        ("abc,cde->abde", [(2, 3, 4), (4, 5, 6)]),
        ("abcd,cde->abe", [(2, 3, 4, 5), (4, 5, 6)]),
        ("ij,kj->ki", [(3, 4), (5, 4)]),
        ("ij,j->i", [(3, 4), (4,)]),
        ("i,i->", [(5,), (5,)]),
        ("bij,bkj->bki", [(2, 3, 4), (2, 5, 4)]),
        ("ijk,jl->li", [(3, 4, 2), (4, 5)]),  # k summed out of the first operand alone
        ("ab,cd->dcba", [(2, 3), (4, 5)]),
        ("ba,ab->a", [(3, 2), (2, 3)]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_einsum(equation, shapes, jit):
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    assert_matches_tf(lambda *xs: R.Einsum(inputs=list(xs), equation=equation), inputs, rtol=1e-5, jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64, np.complex64])
def test_einsum_dtypes(dtype, jit):
    rng = np.random.default_rng(3)
    a, b = (rng.integers(-5, 5, s).astype(dtype) for s in [(2, 4, 3, 2), (2, 5, 3, 2)])
    assert_matches_tf(lambda a, b: R.Einsum(inputs=[a, b], equation="aecd,abcd->acbe"), [a, b], jit=jit)


@pytest.mark.parametrize(
    "fn,message",
    [
        (lambda x: R.Sum(input=x, axis=tf.constant([1, -1])), "duplicate"),
        (lambda x: R.ArgMax(input=x[:, :0], dimension=1), "empty"),
    ],
    ids=["duplicate-axes", "argmax-empty"],
)
def test_invalid_arguments_are_reported(fn, message):
    # TF raises these at run time; jaxsm reports them while tracing, naming the node. (Bad Range arguments and
    # out-of-range constant axes are already rejected by TF's shape inference when the function is traced.)
    x = np.ones((2, 3), np.float32)
    export_dir, _ = save_function(fn, [x])
    with pytest.raises(LoweringError, match=message):
        run_jaxsm(export_dir, [x])


@JIT
def test_arg_extremes_skip_nans_like_tf(jit):
    nan, inf = np.nan, np.inf
    x = np.array([[1, nan, 3, nan], [nan, nan, 2, 5], [nan, nan, nan, nan], [-inf, nan, -inf, nan]], np.float32)
    assert_matches_tf(lambda x: (tf.argmax(x, 1), tf.argmin(x, 1), tf.argmax(x, 0), tf.argmin(x, 0)), [x], jit=jit)
