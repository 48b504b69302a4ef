"""Math ops: elementwise unary/binary, activations, casts, reductions, scans, matmul and einsum.

Semantics follow TF's CPU kernels (tensorflow/core/kernels/cwise_ops.h, reduction_ops*.h, sequence_ops.cc,
cast_op.h, scan_ops.h, matmul_op_impl.h), not NumPy's where the two differ: integer division truncates toward
zero for ``Div``, ``FloorMod`` follows the divisor's sign, shifts clamp the shift amount,
``Maximum``/``Minimum`` propagate NaN, ``Range`` accumulates in the output dtype, integer ``Mean`` truncates.
"""

from __future__ import annotations

import functools
import math
import operator
import time

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jax import lax
from jax.experimental import io_callback

from jaxsm.graph.tensor_list import TensorList
from jaxsm.graph.values import to_static
from jaxsm.ops.registry import op, precision

# Selu's constants as written in TF's kernel (relu_op_functor.h).
_SELU_SCALE = 1.0507009873554804934193349852946
_SELU_SCALE_ALPHA = 1.7580993408473768599402175208123


def _dt(x) -> np.dtype:
    return np.dtype(x.dtype)


def _tf_derivative(fn, tangent):
    """``fn`` with TF's registered gradient at its kinks and ties (math_grad.py, nn_grad.py, clip_ops.py) as
    its JVP, ``tangent(*primals, *tangents)``, which JAX transposes for reverse mode: JAX's own derivative of
    jnp.maximum splits a tie evenly and abs(0) has slope 1, TF picks one side. For real floating-point inputs.
    The rule's primal output is ``f`` itself, so higher derivatives use the rule too."""
    f = jax.custom_jvp(fn)
    f.defjvp(lambda primals, tangents: (f(*primals), tangent(*primals, *tangents)))
    return f


def _real_float(*xs) -> bool:
    # float32/float64 only: around half types the wrapper would move XLA's float32 rounding points
    return all(jnp.result_type(x) in (jnp.float32, jnp.float64) for x in xs)


def _is_complex(x) -> bool:
    return _dt(x).kind == "c"


def _is_int(x) -> bool:
    return _dt(x).kind in "iu"


def _is_float(dt: np.dtype) -> bool:
    return bool(jnp.issubdtype(dt, jnp.floating))  # also true for ml_dtypes' bfloat16 (NumPy kind "V")


def _conj(x):
    return jnp.conj(x) if _is_complex(x) else x


# -- elementwise unary --------------------------------------------------------------------------------------


def _softplus(x):
    """TF's Softplus (softplus_op.h): x above -threshold, exp(x) below threshold, log1p(exp(x)) between."""
    threshold = math.log(float(jnp.finfo(x.dtype).eps)) + 2.0
    if _dt(x) in (np.float16, jnp.bfloat16):
        return _half_softplus(x, threshold)
    e = jnp.exp(x)
    return jnp.where(x > -threshold, x, jnp.where(x < threshold, e, jnp.log1p(e)))


def _half_softplus(x, threshold: float):
    """Softplus of float16/bfloat16: Eigen rounds exp(x) to the half type before log1p (bfloat16 then matches TF
    bit for bit; float16 in about 92% of values, see gaps.py)."""
    xf = x.astype(np.float32)  # TF compares with the threshold unrounded
    e = jnp.exp(xf).astype(x.dtype)
    soft = jnp.log1p(e.astype(np.float32)).astype(x.dtype)
    return jnp.where(xf > -threshold, x, jnp.where(xf < threshold, e, soft))


def _elu(x):
    # TF computes exp(x) - 1 (not expm1), which matters near 0.
    return jnp.where(x < 0, jnp.exp(x) - 1, x)


def _selu(x):
    return jnp.where(x < 0, _SELU_SCALE_ALPHA * (jnp.exp(x) - 1), _SELU_SCALE * x)


def _round_half_even(x):
    return x if _is_int(x) else jnp.round(x)


def _fresnel_sin(x):
    return jsp.fresnel(x)[0]


def _fresnel_cos(x):
    return jsp.fresnel(x)[1]


_abs_tf = _tf_derivative(jnp.abs, lambda x, t: t * jnp.sign(x))  # _AbsGrad: grad * sign(x), 0 at 0


def _abs(x):
    if not jnp.iscomplexobj(x):
        return _abs_tf(x) if _real_float(x) else jnp.abs(x)
    # hypot(nan, inf) is inf in C (TF); XLA's complex abs gives NaN
    infinite = jnp.isinf(jnp.real(x)) | jnp.isinf(jnp.imag(x))
    return jnp.where(infinite, jnp.asarray(jnp.inf, jnp.real(x).dtype), jnp.abs(x))


def _sqrt(x):
    if not jnp.iscomplexobj(x):
        return jnp.sqrt(x)
    # C's csqrt (TF's std::sqrt) keeps the sign of a zero imaginary part: sqrt(-1 - 0j) = -1j; XLA gives +1j
    r = jnp.sqrt(x)
    return lax.complex(jnp.real(r), jnp.copysign(jnp.imag(r), jnp.imag(x)))


def _rsqrt(x):
    if not jnp.iscomplexobj(x):
        return lax.rsqrt(x)
    # On the negative real axis Eigen's complex rsqrt gives -1j/sqrt|x| for both signs of zero (it tests y < 0)
    r = lax.rsqrt(x)
    cut = (jnp.real(x) < 0) & (jnp.imag(x) == 0)
    return jnp.where(cut, lax.complex(jnp.zeros_like(jnp.real(r)), -jnp.abs(jnp.imag(r))), r)


def _lgamma(x):
    """TF's float32 Lgamma is glibc's lgammaf (correctly rounded or nearly). XLA's float32 lgamma is 1e-6-1e-1
    relative away on a third of [-20, 20] (near its zeros, at 1.5, at negative non-integers), so where float64
    exists (jax_enable_x64, not on TPU) float32 is computed in float64 and rounded: then none is more than
    3e-7 away and most are exact."""
    if x.dtype in (np.float16, jnp.bfloat16):  # TF computes half types in float32
        return _lgamma(x.astype(np.float32)).astype(x.dtype)
    if x.dtype == np.float32 and jax.config.jax_enable_x64 and jax.default_backend() != "tpu":
        y = lax.lgamma(x.astype(np.float64)).astype(np.float32)
    else:
        y = lax.lgamma(x)
    # lgamma(1) = lgamma(2) = 0 exactly in TF (std::lgamma); XLA's float32 lgamma gives 4.8e-7 at 1
    return jnp.where((x == 1) | (x == 2), jnp.zeros((), x.dtype), y)


def _erf(x):
    # TF 2.21's float64 Erf (Eigen's double erf) returns NaN at +-inf; float32 gives +-1
    if x.dtype != np.float64:
        return lax.erf(x)
    return jnp.where(jnp.isinf(x), jnp.nan, lax.erf(x))


def _expint(x):
    # Eigen's expi (TF) is NaN below 0 and -inf at +-0; jax.scipy's gives Ei's real values below 0 and NaN at 0
    return jnp.where(x < 0, jnp.nan, jnp.where(x == 0, -jnp.inf, jsp.expi(x))).astype(x.dtype)


def _erfinv(x):
    # TF's erfinv is ndtri(x/2 + 1/2) / sqrt(2) (cwise_ops.h); near 0 that loses ~4e-5 in float32 to XLA's
    # erf_inv, and TF's numbers are the bar
    half = np.array(0.5, x.dtype)
    return jsp.ndtri(half * x + half) * np.array(np.sqrt(0.5), x.dtype)


# Cephes' psi coefficients as Eigen uses them (SpecialFunctionsImpl.h, digamma_impl_maybe_poly)
_PSI_A = {
    np.dtype(np.float32): (
        -4.16666666666666666667e-3,
        3.96825396825396825397e-3,
        -8.33333333333333333333e-3,
        8.33333333333333333333e-2,
    ),
    np.dtype(np.float64): (
        8.33333333333333333333e-2,
        -2.10927960927960927961e-2,
        7.57575757575757575758e-3,
        -4.16666666666666666667e-3,
        3.96825396825396825397e-3,
        -8.33333333333333333333e-3,
        8.33333333333333333333e-2,
    ),
}


def _digamma(x):
    """Eigen's digamma_impl (TF's kernel): reflection below 0, the recurrence up to 10, then Cephes' series.
    XLA's digamma is ~30 float32 ulps away at 1.5."""
    coeffs = _PSI_A.get(np.dtype(x.dtype))
    if coeffs is None:  # half types: TF computes them in float32
        return _digamma(x.astype(np.float32)).astype(x.dtype)
    one, half = np.array(1, x.dtype), np.array(0.5, x.dtype)
    negative = x <= 0
    p = jnp.floor(x)
    nz = x - p
    p = jnp.where(nz > half, p + one, p)
    nz = x - p
    nz = jnp.where(nz == half, jnp.zeros_like(x), np.array(np.pi, x.dtype) / jnp.tan(np.array(np.pi, x.dtype) * nz))
    s = jnp.where(negative, one - x, x)
    w = jnp.zeros_like(x)
    for _ in range(10):  # s < 10 at most ten times: s >= 1 - 0 after the reflection, and x > 0 otherwise
        small = s < 10
        w = jnp.where(small, w + one / s, w)
        s = jnp.where(small, s + one, s)
    z = one / (s * s)
    poly = jnp.zeros_like(x)
    for c in coeffs:
        poly = poly * z + np.array(c, x.dtype)
    if x.dtype == np.float32:
        poly = jnp.where(s < 1e8, z * poly, jnp.zeros_like(x))
    else:
        poly = jnp.where(s < 1e17, z * poly, jnp.zeros_like(x))
    y = jnp.log(s) - half / s - poly - w
    y = jnp.where(negative, y - nz, y)
    return jnp.where(negative & (x == jnp.floor(x)), jnp.nan, y)


def _relu_value(x):
    # Eigen's float16/bfloat16 max keeps -0.0 (TF's Relu(-0.0) is -0.0 there; float32/64: gaps.py)
    if _dt(x) in (np.float16, jnp.bfloat16):
        return jnp.where(x < 0, jnp.zeros((), x.dtype), x)
    return jnp.maximum(x, 0)


# ReluGrad / Relu6Grad: the gradient passes where 0 < x (< 6), not at 0 or 6
_relu_tf = _tf_derivative(_relu_value, lambda x, t: jnp.where(x > 0, t, jnp.zeros_like(t)))
_relu6_tf = _tf_derivative(
    lambda x: jnp.minimum(_relu_value(x), 6), lambda x, t: jnp.where((x > 0) & (x < 6), t, jnp.zeros_like(t))
)


def _relu(x):
    return _relu_tf(x) if _real_float(x) else _relu_value(x)


def _relu6(x):
    return _relu6_tf(x) if _real_float(x) else jnp.minimum(_relu_value(x), 6)


def _sigmoid(x):
    """TF's Sigmoid. For float16/bfloat16 Eigen's scalar_logistic_op (Eigen/src/Core/functors/UnaryFunctors.h)
    computes e / (1 + e) with e = exp(x), rounding each step to the type (1 where e overflows): up to an ulp
    from the correctly rounded 1 / (1 + exp(-x)) (bfloat16 sigmoid(0.005) is 0.50390625, not 0.5)."""
    if _dt(x) not in (np.float16, jnp.bfloat16):
        return lax.logistic(x)
    info = jnp.finfo(x.dtype)

    def rounded(v):  # XLA would otherwise keep the float32 intermediates (excess precision)
        return lax.reduce_precision(v, exponent_bits=info.nexp, mantissa_bits=info.nmant)

    exp = jnp.exp(x.astype(np.float32))
    e = rounded(exp)
    out = jnp.where(jnp.isinf(e), 1.0, rounded(e / rounded(1 + e)))
    # reduce_precision flushes subnormals; there e / (1 + e) is e, and TF keeps float16's subnormals
    return jnp.where(exp < info.smallest_normal, exp, out).astype(x.dtype)


# _LgammaGrad: digamma(x); _DigammaGrad: polygamma(1, x). JAX's derivative of the lowerings' branch-free
# formulas is 0 at 1 and 2 (Lgamma) and NaN (Digamma: the reflection term of an unselected branch).
_digamma_tf = _tf_derivative(_digamma, lambda x, t: t * jsp.polygamma(1, x).astype(t.dtype))
_lgamma_tf = _tf_derivative(_lgamma, lambda x, t: t * _digamma_tf(x))

_UNARY = {
    "Abs": _abs,
    "Neg": jnp.negative,
    "Sign": lambda x: jnp.where(x == 0, jnp.zeros((), x.dtype), jnp.sign(x)),  # TF's sign(-0.0) is +0.0
    "Square": jnp.square,
    "Sqrt": _sqrt,
    "Rsqrt": _rsqrt,
    "Exp": jnp.exp,
    "Expm1": jnp.expm1,
    "Log": jnp.log,
    "Log1p": jnp.log1p,
    "Sin": jnp.sin,
    "Cos": jnp.cos,
    "Tan": jnp.tan,
    "Asin": jnp.arcsin,
    "Acos": jnp.arccos,
    "Atan": jnp.arctan,
    "Sinh": jnp.sinh,
    "Cosh": jnp.cosh,
    "Tanh": jnp.tanh,
    "Asinh": jnp.arcsinh,
    "Acosh": jnp.arccosh,
    "Atanh": jnp.arctanh,
    "Sigmoid": _sigmoid,
    "Floor": jnp.floor,
    "Ceil": jnp.ceil,
    "Round": _round_half_even,
    "Rint": jnp.rint,
    "Reciprocal": jnp.reciprocal,
    "Inv": jnp.reciprocal,
    "Erf": _erf,
    "Erfc": lax.erfc,
    "Erfinv": _erfinv,
    "Ndtri": jsp.ndtri,
    "Lgamma": _lgamma_tf,
    "Digamma": _digamma_tf,
    "IsNan": jnp.isnan,
    "IsInf": jnp.isinf,
    "IsFinite": jnp.isfinite,
    "LogicalNot": jnp.logical_not,
    "Invert": jnp.bitwise_not,
    "Real": jnp.real,
    "Imag": jnp.imag,
    "Conj": _conj,
    "Angle": jnp.angle,
    "ComplexAbs": _abs,
    "Softplus": _softplus,
    "Softsign": lambda x: x / (1 + jnp.abs(x)),
    "Relu": _relu,
    "Relu6": _relu6,
    "Elu": _elu,
    "Selu": _selu,
    "BesselI0": jsp.i0,
    "BesselI1": jsp.i1,
    "BesselI0e": jsp.i0e,
    "BesselI1e": jsp.i1e,
    "Dawsn": jsp.dawsn,
    "Expint": _expint,
    "FresnelSin": _fresnel_sin,
    "FresnelCos": _fresnel_cos,
    "Spence": jsp.spence,
}


def _register_unary(name: str, fn) -> None:
    def lowering(ctx, x):
        return fn(jnp.asarray(x))

    lowering.__name__ = f"unary_{name}"
    op(name)(lowering)


for _name, _fn in _UNARY.items():
    _register_unary(_name, _fn)


@op("PopulationCount")
def population_count(ctx, x):
    """The set bits of each element. An int64 held in 32 bits (x64 off) stands for its sign extension: a
    negative one has 32 more."""
    x = jnp.asarray(x)
    n = lax.population_count(x).astype(np.uint8)
    if ctx.dtype("T", _dt(x)) == np.int64 and _dt(x).itemsize == 4:
        n = jnp.where(x < 0, n + np.uint8(32), n)
    return n


@op("LeakyRelu")
def leaky_relu(ctx, x):
    x = jnp.asarray(x)  # a folded NumPy bfloat16 times a Python float would be float32
    return jnp.where(x > 0, x, x * _float_attr(ctx, "alpha", 0.2, x.dtype))


def _float_attr(ctx, name, default, dtype):
    """A float attr as TF's kernels use it: the proto's float32 value cast to the operands' dtype (protobuf reads
    0.2 back as the double 0.2; TF's float64 kernels multiply by 0.20000000298023224)."""
    return np.asarray(np.float32(ctx.attr(name, default)), dtype)


# -- activation gradients (appear in saved training functions) ----------------------------------------------


# TF conjugates y in the Sqrt/Rsqrt/Reciprocal gradients but not in Sigmoid/Tanh (cwise_ops_gradients.h).
@op("SigmoidGrad")
def sigmoid_grad(ctx, y, dy):
    return dy * y * (1 - y)


@op("TanhGrad")
def tanh_grad(ctx, y, dy):
    return dy * (1 - y * y)


@op("SqrtGrad")
def sqrt_grad(ctx, y, dy):
    return jnp.where(dy == 0, 0, dy * 0.5 / _conj(y))  # TF: a zero gradient stays 0 where y is 0 or NaN


@op("RsqrtGrad")
def rsqrt_grad(ctx, y, dy):
    return jnp.where(dy == 0, 0, dy * _conj(y * y * y) * -0.5)  # TF: a zero gradient stays 0 where y is inf


@op("ReciprocalGrad", "InvGrad")
def reciprocal_grad(ctx, y, dy):
    return jnp.where(dy == 0, 0, -dy * _conj(y * y))  # TF: a zero gradient stays 0 even where y is inf


# TF multiplies by the mask (relu_op_functor.h): where the unit is off an inf or NaN gradient gives NaN and a
# negative one -0. XLA rewrites ``g * convert(mask)`` into a select, so the product is spelled ``g * 0``.
@op("ReluGrad")
def relu_grad(ctx, gradients, features):
    return jnp.where(features > 0, gradients, gradients * 0)


@op("Relu6Grad")
def relu6_grad(ctx, gradients, features):
    return jnp.where((features > 0) & (features < 6), gradients, gradients * 0)


@op("EluGrad")
def elu_grad(ctx, gradients, outputs):
    return jnp.where(outputs < 0, gradients * (outputs + 1), gradients)


@op("SeluGrad")
def selu_grad(ctx, gradients, outputs):
    return jnp.where(outputs < 0, gradients * (outputs + _SELU_SCALE_ALPHA), gradients * _SELU_SCALE)


@op("SoftplusGrad")
def softplus_grad(ctx, gradients, features):
    return gradients / (jnp.exp(-features) + 1)


@op("SoftsignGrad")
def softsign_grad(ctx, gradients, features):
    return gradients / jnp.square(1 + jnp.abs(features))


@op("LeakyReluGrad")
def leaky_relu_grad(ctx, gradients, features):
    gradients = jnp.asarray(gradients)
    return jnp.where(features > 0, gradients, gradients * _float_attr(ctx, "alpha", 0.2, gradients.dtype))


# -- elementwise binary -------------------------------------------------------------------------------------


def _div(x, y):
    # Integer Div/RealDiv are C++ division: truncation toward zero.
    if _is_int(x):
        return lax.div(*jnp.broadcast_arrays(x, y))
    return x / y


def _truncate_div(x, y):
    return _div(x, y) if _is_int(x) else jnp.trunc(x / y)


def _floor_div(x, y):
    # TF floors the true quotient for floats (NumPy's floor_divide uses fmod and can differ by one).
    return jnp.floor_divide(x, y) if _is_int(x) else jnp.floor(x / y)


def _floor_mod(x, y):
    """TF's FloorMod: the truncated remainder, moved to the divisor's sign (ints and floats alike)."""
    x, y = jnp.broadcast_arrays(x, y)
    r = lax.rem(x, y)
    if _dt(x).kind == "u":
        return r
    fix = (r != 0) & ((y < 0) != (r < 0))
    return jnp.where(fix, r + y, r)


# _PowGrad: the exponent's gradient is z * log(x) where x > 0 and 0 elsewhere (JAX's is NaN for x < 0)
_pow_tf = _tf_derivative(
    jnp.power,
    lambda x, y, tx, ty: (
        tx * jnp.where(y == 0, 0, y * _pow_tf(x, y - 1))
        + ty * _pow_tf(x, y) * jnp.where(x > 0, jnp.log(jnp.where(x > 0, x, 1)), 0)
    ),
)


def _pow(x, y):
    # TF raises for an integer to a negative power; one known only at run time truncates like C's 1 / x^-y (the
    # gaps.py rule), where jnp.power's square-and-multiply over the exponent's bits gives garbage (5^-2 = -558738647)
    if _real_float(x, y):
        return _pow_tf(x, y)
    out = jnp.power(x, y)
    if not _is_int(x) or _dt(y).kind == "u":
        return out
    odd = (y % 2) != 0
    negative = jnp.where(x == 1, 1, jnp.where(x == -1, jnp.where(odd, -1, 1), 0)).astype(out.dtype)
    return jnp.where(y < 0, negative, out)


def _truncate_mod(x, y):
    return lax.rem(*jnp.broadcast_arrays(x, y))


def _shift_amount(x, y):
    # TF clamps the shift to [0, bits - 1] instead of leaving shifts >= bit width undefined.
    return jnp.clip(y, 0, _dt(x).itemsize * 8 - 1).astype(_dt(x))


def _left_shift(x, y):
    x, y = jnp.broadcast_arrays(x, y)
    return lax.shift_left(x, _shift_amount(x, y))


def _right_shift(x, y):
    x, y = jnp.broadcast_arrays(x, y)
    shift = lax.shift_right_logical if _dt(x).kind == "u" else lax.shift_right_arithmetic
    return shift(x, _shift_amount(x, y))


def _squared_difference(x, y):
    d = x - y
    return d * _conj(d)


def _complex(re, im):
    return lax.complex(*jnp.broadcast_arrays(re, im))


# The domains of Eigen's Cephes-based special functions (unsupported/Eigen/src/SpecialFunctions, which TF's
# cwise_op_igammas.cc, cwise_op_zeta.cc, cwise_op_betainc.cc run): where jax.scipy answers differently at
# the edges (a pole, inf, an argument outside the domain), these give Eigen's value.
def _nan_where(cond, v):
    return jnp.where(cond, jnp.asarray(jnp.nan, v.dtype), v)


def _igamma_tf(a, x):
    """Eigen's igamma: 0 at x == 0 (whatever a), NaN for a <= 0, x < 0 or a NaN, 0 for a = +inf."""
    a, x = jnp.broadcast_arrays(a, x)
    v = jnp.where(jnp.isposinf(a), jnp.zeros((), a.dtype), jsp.gammainc(a, x))
    v = _nan_where((x < 0) | (a <= 0) | jnp.isnan(a) | jnp.isnan(x), v)
    return jnp.where(x == 0, jnp.zeros((), v.dtype), v)


def _igammac_tf(a, x):
    """Eigen's igammac: NaN for a <= 0, x < 0 or a NaN, 1 for a = +inf and finite x."""
    a, x = jnp.broadcast_arrays(a, x)
    v = jnp.where(jnp.isposinf(a) & jnp.isfinite(x), jnp.ones((), a.dtype), jsp.gammaincc(a, x))
    return _nan_where((x < 0) | (a <= 0) | jnp.isnan(a) | jnp.isnan(x), v)


def _zeta_tf(x, q):
    """Eigen's zeta (Hurwitz): NaN for x < 1, 0 for q = +inf; x = +inf sums q^-inf: 0 for q > 1, 1 at q = 1,
    inf below (Eigen's q <= 0 integer rule, inf for an even x, takes inf as even)."""
    x, q = jnp.broadcast_arrays(x, q)
    v = jnp.where(jnp.isposinf(q) & (x > 1), jnp.zeros((), x.dtype), jsp.zeta(x, q))
    at_inf = jnp.where(q > 1, 0.0, jnp.where(q == 1, 1.0, jnp.inf)).astype(x.dtype)
    v = jnp.where(jnp.isposinf(x), _nan_where(jnp.isnan(q), at_inf), v)
    return _nan_where(x < 1, v)


_BINARY = {
    "Add": jnp.add,
    "AddV2": jnp.add,
    "Sub": jnp.subtract,
    "Mul": jnp.multiply,
    "MulNoNan": lambda x, y: jnp.where(y == 0, 0, x * y),
    "Div": _div,
    "RealDiv": _div,
    "TruncateDiv": _truncate_div,
    "DivNoNan": lambda x, y: jnp.where(y == 0, 0, x / jnp.where(y == 0, 1, y)),
    "FloorDiv": _floor_div,
    "FloorMod": _floor_mod,
    "Mod": _truncate_mod,
    "TruncateMod": _truncate_mod,
    "Pow": _pow,
    "SquaredDifference": _squared_difference,
    "Atan2": jnp.arctan2,
    "Xlogy": lambda x, y: jnp.where(x == 0, 0, x * jnp.log(y)),
    "Xlog1py": lambda x, y: jnp.where(x == 0, 0, x * jnp.log1p(y)),
    "Xdivy": lambda x, y: jnp.where(x == 0, 0, x / y),
    "BitwiseAnd": jnp.bitwise_and,
    "BitwiseOr": jnp.bitwise_or,
    "BitwiseXor": jnp.bitwise_xor,
    "LeftShift": _left_shift,
    "RightShift": _right_shift,
    "Less": jnp.less,
    "LessEqual": jnp.less_equal,
    "Greater": jnp.greater,
    "GreaterEqual": jnp.greater_equal,
    "LogicalAnd": jnp.logical_and,
    "LogicalOr": jnp.logical_or,
    "Complex": _complex,
    "NextAfter": jnp.nextafter,
    "Zeta": _zeta_tf,
    "Igamma": _igamma_tf,
    "Igammac": _igammac_tf,
}


# The commonest binary ops straight to lax when both sides have one (non-weak) numeric dtype, as TF's kernels
# require: the same result as jnp's, without jnp's jit wrapper, whose trace and lowering are a tenth of a
# convolution model's first call (EfficientNetB0: 420 such nodes).
_LAX_BINARY = {
    "Add": lax.add,
    "AddV2": lax.add,
    "Sub": lax.sub,
    "Mul": lax.mul,
    "Less": lax.lt,
    "LessEqual": lax.le,
    "Greater": lax.gt,
    "GreaterEqual": lax.ge,
}


def _same_typed(x, y) -> tuple[tuple[int, ...], np.dtype] | None:
    """The broadcast shape and the dtype if ``x`` and ``y`` share one numeric, non-weak dtype, else None."""
    ax, ay = jax.typeof(x), jax.typeof(y)
    if ax.dtype != ay.dtype or ax.weak_type or ay.weak_type or ax.dtype.kind not in "fiuc":
        return None
    try:
        return tuple(lax.broadcast_shapes(ax.shape, ay.shape)), ax.dtype  # symbolic dimensions too
    except (ValueError, TypeError):
        return None  # jnp raises its own error


def _broadcast_to(x, shape: tuple):
    if np.shape(x) == shape:
        return x
    rank = len(np.shape(x))
    return lax.broadcast_in_dim(x, shape, tuple(range(len(shape) - rank, len(shape))))


_INT_DIVISIONS = frozenset({"Div", "FloorDiv", "FloorMod", "TruncateDiv", "TruncateMod", "Mod"})


def _check_divisor(ctx, name: str, x, y) -> None:
    """TF's CPU kernels reject an integer division by zero (cwise_ops_common.h) and an integer Pow with a
    negative exponent (cwise_ops.h); a known divisor or exponent raises here, a run-time one cannot (gaps.py)."""
    y = to_static(y)
    if y is None or y.dtype.kind not in "iu" or not np.issubdtype(_dt(x), np.integer):
        return
    if name == "Pow" and np.any(y < 0):
        raise ctx.error("Integers to negative integer powers are not allowed")
    if name != "Pow" and np.any(y == 0):
        raise ctx.error("Integer division by zero")


def _register_binary(name: str, fn) -> None:
    direct = _LAX_BINARY.get(name)

    def lowering(ctx, x, y):
        if name in _INT_DIVISIONS or name == "Pow":
            _check_divisor(ctx, name, x, y)
        # As jax arrays also when folding static values, so NumPy's operator semantics never apply.
        x, y = jnp.asarray(x), jnp.asarray(y)
        if x.dtype != y.dtype and x.dtype.kind == y.dtype.kind:
            # TF's T is one dtype: two widths only meet while folding with x64 off, an int64 constant and a value
            # JAX narrowed (a Where or lookup of ids); the wider is TF's (lax.rem takes no mix)
            wide = jnp.promote_types(x.dtype, y.dtype)
            x, y = x.astype(wide), y.astype(wide)
        common = _same_typed(x, y) if direct is not None else None
        if common is not None:
            shape, _ = common
            return direct(_broadcast_to(x, shape), _broadcast_to(y, shape))
        return fn(x, y)

    lowering.__name__ = f"binary_{name}"
    op(name, checked=(1,) if name in _INT_DIVISIONS or name == "Pow" else ())(lowering)


for _name, _fn in _BINARY.items():
    _register_binary(_name, _fn)


# _MaximumMinimumGrad: a tie's gradient goes to x (x >= y for Maximum, x <= y for Minimum)
_maximum_tf = _tf_derivative(jnp.maximum, lambda x, y, tx, ty: jnp.where(x >= y, tx, ty))
_minimum_tf = _tf_derivative(jnp.minimum, lambda x, y, tx, ty: jnp.where(x <= y, tx, ty))


@op("Maximum")
def maximum(ctx, x, y):
    out = (_maximum_tf if _real_float(x, y) else jnp.maximum)(jnp.asarray(x), jnp.asarray(y))
    for a, b in ((x, y), (y, x)):
        if isinstance(a, np.ndarray) and not isinstance(b, np.ndarray):
            ctx.interp.lower_bounds[id(out)] = (out, a)  # out >= a, elementwise (see Minimum)
    return out


@op("Minimum")
def minimum(ctx, x, y):
    # tf.math.bincount (Keras CategoryEncoding) clips its data-dependent size into [minlength, maxlength]:
    # min(c, max(c2, t)) with c <= c2 is the constant c, and knowing it keeps the output shape static.
    for a, b in ((x, y), (y, x)):
        if isinstance(a, np.ndarray) and not isinstance(b, np.ndarray):
            bound = ctx.interp.lower_bounds.get(id(b))
            if bound is not None and bound[0] is b and bool(np.all(bound[1] >= a)):
                dtype = np.dtype(jnp.result_type(jnp.asarray(x), jnp.asarray(y)))
                return np.broadcast_to(a, np.broadcast_shapes(a.shape, tuple(b.shape))).astype(dtype)
    return (_minimum_tf if _real_float(x, y) else jnp.minimum)(jnp.asarray(x), jnp.asarray(y))


@op("HistogramFixedWidth", static=(2,), checked=(0,))
def histogram_fixed_width(ctx, values, value_range, nbins):
    # TF's histogram_op.cc: bin = floor((v - lo) / (hi - lo) * nbins), clamped to [0, nbins - 1].
    n = int(nbins)
    known = to_static(values)
    if known is not None and known.dtype.kind == "f" and np.isnan(known).any():
        raise ctx.error("Histogram values must not contain NaN")
    known = to_static(value_range)
    if known is not None and not known[0] < known[1]:
        raise ctx.error(f"value_range should satisfy value_range[0] < value_range[1], but got {known.tolist()}")
    lo, hi = value_range[0], value_range[1]
    v = jnp.asarray(values)
    idx = jnp.floor((v - lo) / (hi - lo) * n).astype(jnp.int32)
    idx = jnp.clip(idx, 0, n - 1).reshape(-1)
    return jnp.zeros(n, ctx.dtype("dtype", np.dtype(np.int32))).at[idx].add(1)


@op("Polygamma")
def polygamma(ctx, a, x):
    # jax's polygamma wants an integer order; TF takes a float order (integral values are the defined ones).
    # Eigen's polygamma (scipy's formula, through Eigen's zeta): NaN for a negative or non-integral order
    a, x = jnp.broadcast_arrays(a, x)
    n = a + 1
    value = jnp.where(a % 2 == 0, -1, 1).astype(a.dtype) * jnp.exp(lax.lgamma(n)) * _zeta_tf(n, x)
    value = _nan_where((jnp.floor(a) != a) | (a < 0), value)
    return jnp.where(a == 0, lax.digamma(x), value)


@op("Betainc")
def betainc(ctx, a, b, x):
    # Eigen's incbet: NaN for a <= 0 or b <= 0 first, then 0 at x == 0 and 1 at x == 1 (even for a NaN a or b),
    # NaN for an infinite a or b inside (0, 1)
    a, b, x = jnp.broadcast_arrays(a, b, x)
    a, b = lax.stop_gradient(a), lax.stop_gradient(b)  # _BetaincGrad: none for a and b (jax.grad raised)
    # jax's float32 betainc is off by ~1e-5 relative (0.2999985 for I_0.3(1, 1)): compute wider where possible
    wide = jnp.float64 if jax.config.jax_enable_x64 else x.dtype
    v = jsp.betainc(a.astype(wide), b.astype(wide), x.astype(wide)).astype(x.dtype)
    v = _nan_where(jnp.isinf(a) | jnp.isinf(b), v)
    v = jnp.where(x == 0, jnp.zeros((), x.dtype), jnp.where(x == 1, jnp.ones((), x.dtype), v))
    return _nan_where((a <= 0) | (b <= 0) | (x < 0) | (x > 1), v)


def _broadcastable(a: tuple, b: tuple) -> bool:
    return all(m == n or m == 1 or n == 1 for m, n in zip(a[::-1], b[::-1], strict=False))


def _compare(ctx, x, y, name: str, mismatch: bool):
    """Equal/NotEqual: with ``incompatible_shape_error=False`` unbroadcastable shapes give a scalar result."""
    if not ctx.attr("incompatible_shape_error", True) and not _broadcastable(np.shape(x), np.shape(y)):
        return np.asarray(mismatch)
    if _dt(x).kind == "O":  # string tensors: only static (host) values get here
        return getattr(np, name)(np.asarray(x), np.asarray(y))
    return getattr(jnp, name)(x, y)


@op("Equal")
def equal(ctx, x, y):
    return _compare(ctx, x, y, "equal", False)


@op("NotEqual")
def not_equal(ctx, x, y):
    return _compare(ctx, x, y, "not_equal", True)


@op("ApproximateEqual")
def approximate_equal(ctx, x, y):
    # TF's kernel (approximate_equal_op.cc) takes |x - y| <= tolerance, not the documented <
    diff = jnp.abs(jnp.asarray(x) - jnp.asarray(y))
    return diff <= _float_attr(ctx, "tolerance", 1e-5, diff.dtype)


# -- n-ary, selection, casts ---------------------------------------------------------------------------------


@op("AddN")
def add_n(ctx, *xs):
    lists = [x for x in xs if isinstance(x, TensorList)]
    if lists:  # TF's TensorListBinaryAdd (gradients of loops): element-wise, unset elements count as zeros
        if len(lists) != len(xs):
            raise ctx.error("AddN of TensorLists and tensors")
        first = lists[0]
        items = [x.items for x in lists if x.items is not None]
        total = functools.reduce(operator.add, items) if items else None
        return TensorList(total, first.length, first.element_dtype, first.element_shape, first.capacity)
    return functools.reduce(operator.add, xs)


def _clip_value(t, lo, hi):
    # TF: t.cwiseMin(hi).cwiseMax(lo), so lo wins when lo > hi; Eigen's min/max are std::min/max's comparisons,
    # so a NaN t stays NaN and a NaN bound leaves t as it is (jnp.minimum/maximum would give NaN)
    m = jnp.where(hi < t, hi, t)
    return jnp.where(m < lo, lo, m)


# _clip_by_value_grad: t's gradient passes where lo <= t <= hi (bounds included), lo's where t < lo, hi's where t > hi
_clip_tf = _tf_derivative(
    _clip_value, lambda t, lo, hi, dt, dlo, dhi: jnp.where(t < lo, dlo, jnp.where(t > hi, dhi, dt))
)


@op("ClipByValue")
def clip_by_value(ctx, t, lo, hi):
    return (_clip_tf if _real_float(t, lo, hi) else _clip_value)(jnp.asarray(t), jnp.asarray(lo), jnp.asarray(hi))


@op("Select")
def select(ctx, cond, t, e):
    # Select (v1): a rank-1 condition picks whole rows of higher-rank t/e.
    if np.ndim(cond) == 1 and np.ndim(t) > 1:
        cond = jnp.reshape(cond, (-1,) + (1,) * (np.ndim(t) - 1))
    return jnp.where(cond, t, e)


@op("SelectV2")
def select_v2(ctx, cond, t, e):
    return jnp.where(cond, t, e)


# The (source, destination) pairs for which TF's Cast honours ``Truncate=True``; float64 -> bfloat16 and casts
# from half types round to nearest even with the attr set.
_TRUNCATING_CASTS = {
    (np.dtype(src), np.dtype(dst))
    for src, dst in [
        (np.float32, np.float16),
        (np.float32, jnp.bfloat16),
        (np.float64, np.float32),
        (np.float64, np.float16),
    ]
}


def _truncate_mantissa(x, dst: np.dtype):
    """Cast's ``Truncate=True`` (cast_op.h LSBZeroSetter): zero the mantissa bits ``dst`` cannot hold first,
    so the narrowing cast truncates toward zero instead of rounding. NaNs are left alone."""
    src = _dt(x)
    drop = jnp.finfo(src).nmant - jnp.finfo(dst).nmant
    uint = np.dtype(f"uint{src.itemsize * 8}")
    mask = np.array(~((1 << drop) - 1) & ((1 << src.itemsize * 8) - 1), dtype=uint)
    bits = lax.bitcast_convert_type(x, uint) & mask
    return jnp.where(jnp.isnan(x), x, lax.bitcast_convert_type(bits, src))


def _float_to_int(x, dst: np.dtype):
    """TF's float -> integer Cast as its x86 CPU kernels compute it (C++ truncation, cvttss2si): in-range values
    truncate toward zero, NaN and out-of-range values give the minimum of int32/int64 (XLA would saturate and make
    NaN 0); to uint64, that int64 result's bits (-2.5 -> 2**64 - 2, NaN -> 2**63). Narrower types: see
    _float_to_narrow_int."""
    x = jnp.asarray(x)  # also when folding: NumPy's own casts wrap where XLA's saturate
    if dst in _NARROW_INTS:
        return _float_to_narrow_int(x, dst)
    bits = 64 if dst in (np.int64, np.uint64) and jax.config.jax_enable_x64 else 32
    itype = np.int64 if bits == 64 else np.int32
    t = jnp.trunc(x)
    ok = (t >= -(2.0 ** (bits - 1))) & (t < 2.0 ** (bits - 1))
    out = jnp.where(ok, jnp.where(ok, t, 0).astype(itype), np.iinfo(itype).min)
    return out.astype(jax.dtypes.canonicalize_dtype(dst))  # uint64: XLA reinterprets the int64 bits


# Elements per vectorized step of TF's float -> int8/int16/uint8/uint16 Cast on x86 (Eigen's packet conversions,
# measured with TF 2.21's wheel), by source type; to uint32 it is 8 for all
_CAST_PACKET = {np.dtype(np.float16): 16, np.dtype(jnp.bfloat16): 8, np.dtype(np.float32): 32, np.dtype(np.float64): 16}
_NARROW_INTS = frozenset(np.dtype(d) for d in (np.int8, np.int16, np.uint8, np.uint16, np.uint32))


def _float_to_narrow_int(x, dst: np.dtype):
    """TF's x86 float -> int8/int16/uint8/uint16/uint32 Cast (cast_op_impl.h through Eigen). The flattened tensor's
    last size % packet elements convert one by one: the int32 result of _float_to_int (int64 for uint32), then
    its low bits (300.0 -> uint8 44, NaN -> 0). The full packets before them saturate that int32 result to the
    type's range instead (float16/float64 -> uint8 through uint16, where above 32767 gives 0); to uint32 they keep
    t mod 2**32 for -2**31 <= t < 2**32, else 2**31."""
    packet = 8 if dst == np.uint32 else _CAST_PACKET[_dt(x)]
    one_by_one = _float_to_int(x, np.dtype(np.int64 if dst == np.uint32 else np.int32)).astype(dst)
    if dst == np.uint32:
        t = jnp.trunc(x.astype(jnp.promote_types(x.dtype, np.float32)))  # the bounds overflow half types
        ok = (t >= -(2.0**31)) & (t < 2.0**32)
        t = jnp.where(ok, t, 0)
        wrapped = jnp.where(t < 0, t.astype(np.int32).astype(dst), t.astype(dst))
        packed = jnp.where(ok, wrapped, np.array(2**31, dst))
        if not jax.config.jax_enable_x64:  # no int64 for the low bits beyond that range: 0, as for NaN
            one_by_one = jnp.where(ok, wrapped, np.array(0, dst))
    elif dst == np.uint8 and _dt(x) in (np.float16, np.float64):
        u16 = jnp.clip(_float_to_int(x, np.dtype(np.int32)), 0, 65535)
        packed = jnp.where(u16 > 32767, 0, jnp.minimum(u16, 255)).astype(dst)
    else:
        info = np.iinfo(dst)
        packed = jnp.clip(_float_to_int(x, np.dtype(np.int32)), info.min, info.max).astype(dst)
    flat_index = jnp.arange(x.size).reshape(x.shape)
    return jnp.where(flat_index < x.size - x.size % packet, packed, one_by_one)


@op("Cast")
def cast(ctx, x):
    dst = ctx.dtype("DstT")
    if _dt(x) == dst:
        return x
    if _is_complex(x) and dst.kind != "c":
        x = jnp.real(x)  # TF keeps the real part
    if ctx.attr("Truncate", False):
        src = ctx.dtype("SrcT", _dt(x))  # TF's: a float64 held in float32 (x64 off) still rounds to bfloat16
        if (np.dtype(src.char.lower()) if src.kind == "c" else src, dst) in _TRUNCATING_CASTS:
            x = _truncate_mantissa(x, dst)
    if _is_float(_dt(x)) and dst.kind in "iu":
        return _float_to_int(x, dst)
    if _dt(x) == jnp.bfloat16 and dst.itemsize > 2 and not isinstance(x, np.ndarray):
        x = _bfloat16_operand(x)  # else XLA may skip rounding the bfloat16 op before (see _sum)
    return x.astype(dst if isinstance(x, np.ndarray | np.generic) else jax.dtypes.canonicalize_dtype(dst))


_X64_ONLY_TYPES = {np.dtype(t) for t in ("int64", "uint64", "float64", "complex128")}


@op("Bitcast")
def bitcast(ctx, x):
    dst = ctx.dtype("type")
    src = ctx.dtype("T", _dt(x))
    if not jax.config.jax_enable_x64 and {src, dst} & _X64_ONLY_TYPES:
        return _bitcast_x64_off(ctx, x, src, dst)
    if _is_complex(x) or dst.kind == "c":
        return _bitcast_complex(jnp.asarray(x), dst)
    # lax's shape rule is TF's: a wider source gains a trailing dim, a narrower one loses its last dim.
    return lax.bitcast_convert_type(x, dst)


def _bitcast_x64_off(ctx, x, src: np.dtype, dst: np.dtype):
    """Bitcast from or to a 64-bit type while x64 is off. A known value keeps TF's exact 64-bit result (NumPy); a
    traced int64/uint64 source (held in 32 bits) is its sign or zero extension, and an int64/uint64 result is
    narrowed to its low word as every 64-bit tensor is (complex64 is two words). float64/complex128 bits have no
    32-bit stand-in."""
    ratio = max(src.itemsize, dst.itemsize) // min(src.itemsize, dst.itemsize)
    if src.itemsize < dst.itemsize and (np.ndim(x) == 0 or np.shape(x)[-1] != ratio):
        raise ctx.error(f"Cannot bitcast from {src.name} to {dst.name}: the last dimension must be {ratio}")
    if isinstance(x, np.ndarray):
        out = np.ascontiguousarray(x, src).view(dst)
        if src.itemsize == dst.itemsize:
            return out
        return out.reshape(x.shape + (ratio,) if src.itemsize > dst.itemsize else x.shape[:-1])
    if {src, dst} & {np.dtype(np.float64), np.dtype(np.complex128)}:
        raise ctx.error(f"bitcast between {src.name} and {dst.name} needs jax_enable_x64 (float64 bits)")
    if src.kind == "c":  # complex64 to int64/uint64: the low word is the real part's bits
        return lax.bitcast_convert_type(jnp.real(x), jax.dtypes.canonicalize_dtype(dst))
    if src.itemsize == 8:  # the 64-bit value as its two uint32 words, low first
        lo = lax.bitcast_convert_type(x, np.uint32)
        hi = (x >> 31).astype(np.uint32) if src.kind == "i" else jnp.zeros_like(lo)
        x = jnp.stack([lo, hi], axis=-1)
        if dst.kind == "c":  # complex64: the real part's bits, then the imaginary part's
            parts = lax.bitcast_convert_type(x, np.float32)
            return lax.complex(parts[..., 0], parts[..., 1])
        if dst.itemsize == 8:
            return lax.bitcast_convert_type(lo, jax.dtypes.canonicalize_dtype(dst))
        out = lax.bitcast_convert_type(x, dst)
        return out.reshape(out.shape[:-2] + (-1,)) if out.ndim > x.ndim else out
    # a 64-bit result from narrower elements: only its low word (the first 4 bytes) survives in 32 bits
    words = x.reshape(x.shape[:-1] + (2, 4 // src.itemsize)) if src.itemsize < 4 else x
    words = lax.bitcast_convert_type(words, np.uint32)
    return lax.bitcast_convert_type(words[..., 0], jax.dtypes.canonicalize_dtype(dst))


def _bitcast_complex(x, dst: np.dtype):
    """Bitcast from or to a complex type (bitcast_op.cc) through bytes: XLA cannot bitcast complex values, but a
    complex value is its real and imaginary halves side by side in memory. Same shape rule as lax's."""
    src = _dt(x)
    if src.kind == "c":
        x = jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
        raw = lax.bitcast_convert_type(x, np.uint8).reshape(x.shape[:-1] + (src.itemsize,))
    else:
        raw = lax.bitcast_convert_type(x, np.uint8).reshape(x.shape + (src.itemsize,))
    if src.itemsize < dst.itemsize:  # the last dimension (itemsize ratio) is consumed
        raw = raw.reshape(raw.shape[:-2] + (dst.itemsize,))
    elif src.itemsize > dst.itemsize:
        raw = raw.reshape(raw.shape[:-1] + (src.itemsize // dst.itemsize, dst.itemsize))
    if dst.kind != "c":
        return lax.bitcast_convert_type(raw if dst.itemsize > 1 else raw[..., 0], dst)
    half = np.dtype(f"float{dst.itemsize * 4}")
    parts = lax.bitcast_convert_type(raw.reshape(raw.shape[:-1] + (2, dst.itemsize // 2)), half)
    return lax.complex(parts[..., 0], parts[..., 1])


@op("Range", static=(0, 1, 2))
def range_(ctx, start, limit, delta):
    """TF's Range (sequence_ops.cc): size from |limit - start| / |delta|, element i is start + T(i) * delta
    evaluated in Tidx (not accumulated, not in float64)."""
    dtype = ctx.dtype("Tidx", _dt(start))
    start, limit, delta = (np.asarray(v, dtype) for v in (start, limit, delta))
    if delta == 0:
        raise ctx.error("Range requires delta != 0")
    if (delta > 0 and start > limit) or (delta < 0 and start < limit):
        raise ctx.error(
            f"Range requires start <= limit when delta > 0, start >= limit when delta < 0 "
            f"(start={start}, limit={limit}, delta={delta})"
        )
    if dtype.kind in "iu":
        size = (abs(int(limit) - int(start)) + abs(int(delta)) - 1) // abs(int(delta))
        return (int(start) + np.arange(size, dtype=np.int64) * int(delta)).astype(dtype)
    size = int(np.ceil(np.abs((limit - start) / delta)))
    return start + np.arange(size).astype(dtype) * delta


@op("LinSpace", static=(2,))
def lin_space(ctx, start, stop, num):
    num = int(num)
    if num <= 0:
        raise ctx.error(f"LinSpace requires num > 0, got {num}")
    if num == 1:
        return jnp.reshape(start, (1,))
    dtype = _dt(start)
    step = (stop - start) / np.asarray(num - 1, dtype)
    head = start + step * jnp.arange(num - 1, dtype=dtype)
    return jnp.concatenate([head, jnp.reshape(stop, (1,))])


# -- reductions ----------------------------------------------------------------------------------------------


def _axes(ctx, axis, ndim: int) -> tuple[int, ...]:
    """Reduction axes, normalized; like TF, out-of-range and duplicate axes are errors (a scalar input
    accepts axis 0/-1 and reduces nothing)."""
    axes = []
    for a in np.asarray(axis).reshape(-1).tolist():
        if not -max(ndim, 1) <= a < max(ndim, 1):
            raise ctx.error(f"reduction axis {a} is out of range for a rank-{ndim} input")
        axes.append(a % ndim if ndim else None)
    if ndim and len(set(axes)) != len(axes):
        raise ctx.error(f"reduction axes {np.asarray(axis).tolist()} contain a duplicate dimension")
    return tuple(sorted(axes)) if ndim else ()


def _register_reduction(name: str, fn) -> None:
    def lowering(ctx, x, axis):
        return fn(x, _axes(ctx, axis, np.ndim(x)), bool(ctx.attr("keep_dims", False)))

    lowering.__name__ = f"reduce_{name}"
    op(name, static=(1,))(lowering)


def _sum(x, axes, keep):
    """TF's Sum. TF's reduction kernels (core/kernels/reduction_ops.h) sum bfloat16 in float32 and round once; an
    XLA sum in bfloat16 rounds every partial sum (a few ulps off over 64 elements)."""
    if _dt(x) == jnp.bfloat16:
        return jnp.sum(_bfloat16_operand(x), axis=axes, dtype=jnp.float32, keepdims=keep).astype(x.dtype)
    return jnp.sum(x, axis=axes, dtype=x.dtype, keepdims=keep)


def _bfloat16_operand(x):
    # Without it, XLA (which allows excess precision) skips rounding the bfloat16 op that feeds a float32 sum:
    # TF sums the rounded values (sum(square(x)) is 1 ulp off otherwise).
    return lax.reduce_precision(x, exponent_bits=8, mantissa_bits=7)


def _mean(x, axes, keep):
    """TF's Mean: sum, then divide by the count (truncating for integers). Integers narrower than 64 bits are
    summed in int64 (TF's mean of int8 [100, 100, 3] is 67, not an overflowed sum's), float16/bfloat16 sums are
    rounded to the input dtype and divided by the count in that dtype (TF's mean of float16 [60000, 60000] is
    inf, of 100000 float16 halves 0: the count itself is inf)."""
    if not axes:
        return x
    count = int(np.prod([np.shape(x)[a] for a in axes]))
    if _is_int(x):
        if not jax.config.jax_enable_x64:
            return _int_mean_in_words(x, axes, keep, count)
        wide = np.int64 if _dt(x).itemsize < 8 else _dt(x)
        s = jnp.sum(x, axis=axes, dtype=wide, keepdims=keep)
        return lax.div(s, jnp.full_like(s, max(count, 1))).astype(x.dtype)  # TF: 0 for an empty integer mean
    if _dt(x) == jnp.bfloat16:  # TF sums bfloat16 in float32 and divides there (see _sum): one rounding
        total = jnp.sum(_bfloat16_operand(x), axis=axes, dtype=jnp.float32, keepdims=keep)
        # XLA:CPU divides by a (broadcast) scalar as a product with its reciprocal, 1 float32 ulp off, which flips
        # ties of the bfloat16 rounding; a divisor of the full shape it divides exactly, as TF does
        return lax.div(total, lax.optimization_barrier(jnp.full(total.shape, count, jnp.float32))).astype(x.dtype)
    if _dt(x).itemsize == 2:
        return jnp.sum(x, axis=axes, dtype=x.dtype, keepdims=keep) / jnp.asarray(count, x.dtype)
    if count == 0 and _dt(x).kind == "c":  # TF fills NumTraits<complex>::quiet_NaN(), which is 0
        return jnp.zeros_like(jnp.sum(x, axis=axes, keepdims=keep))
    return jnp.mean(x, axis=axes, keepdims=keep).astype(x.dtype)


def _int_mean_in_words(x, axes, keep, count: int):
    """TF's integer Mean (an int64 sum, truncated division) with jax_enable_x64 off, where the sum of int32 (or
    narrower) values can overflow 32 bits though the mean fits: the sum is kept as two uint32 words, high and low,
    with the carry, and its magnitude divided by the count bit by bit (restoring long division)."""
    dtype, signed = _dt(x), _dt(x).kind == "i"
    x = x.astype(np.int32 if signed else np.uint32)
    lo = lax.bitcast_convert_type(x, np.uint32)
    hi = lax.bitcast_convert_type(x >> 31, np.uint32) if signed else jnp.zeros_like(lo)

    def add(a, b):
        low = a[1] + b[1]
        return a[0] + b[0] + (low < a[1]).astype(np.uint32), low

    zero = np.uint32(0)
    hi, lo = lax.reduce((hi, lo), (zero, zero), add, axes)
    negative = (hi >> 31) == 1
    lo, hi = jnp.where(negative, -lo, lo), jnp.where(negative, ~hi + (lo == 0).astype(np.uint32), hi)
    n = np.uint32(max(count, 1))  # TF: 0 for an empty integer mean
    rem, quotient = hi, jnp.zeros_like(lo)  # |sum| < count * 2**32: hi < n, the quotient fits 32 bits
    for bit in range(31, -1, -1):
        rem = (rem << 1) | ((lo >> bit) & 1)
        fits = rem >= n
        rem = jnp.where(fits, rem - n, rem)
        quotient = quotient | (fits.astype(np.uint32) << bit)
    out = jnp.where(negative, -quotient, quotient)
    if keep:
        out = out.reshape([1 if i in axes else d for i, d in enumerate(np.shape(x))])
    return lax.bitcast_convert_type(out, np.int32 if signed else np.uint32).astype(dtype)


def _extreme(reduce, initial_of):
    def fn(x, axes, keep):
        # a NumPy scalar: uint64's maximum as a Python int overflows JAX's int64 argument parsing
        return reduce(x, axis=axes, keepdims=keep, initial=np.asarray(initial_of(_dt(x)), _dt(x)))

    return fn


def _lowest(dt: np.dtype):
    if dt.kind == "b":
        return False
    return -np.inf if _is_float(dt) else np.iinfo(dt).min


def _highest(dt: np.dtype):
    if dt.kind == "b":
        return True
    return np.inf if _is_float(dt) else np.iinfo(dt).max


def _euclidean_norm(x, axes, keep):
    # For integers TF takes the integer sum of squares, then sqrt truncated back to the integer type.
    sq = x * _conj(x)
    if not axes:  # XLA rewrites sqrt(x * x) as |x|; TF squares (1e-30 gives 0, float16 300 inf)
        sq = lax.optimization_barrier(sq)
    s = jnp.sum(sq, axis=axes, dtype=x.dtype, keepdims=keep)
    if _is_int(s):
        return jnp.sqrt(s.astype(jax.dtypes.canonicalize_dtype(np.float64))).astype(s.dtype)
    return jnp.sqrt(s)


_REDUCTIONS = {
    "Sum": lambda x, axes, keep: _sum(x, axes, keep),
    "Prod": lambda x, axes, keep: jnp.prod(x, axis=axes, dtype=x.dtype, keepdims=keep),
    "Mean": _mean,
    "Max": _extreme(jnp.max, _lowest),
    "Min": _extreme(jnp.min, _highest),
    "All": lambda x, axes, keep: jnp.all(x, axis=axes, keepdims=keep),
    "Any": lambda x, axes, keep: jnp.any(x, axis=axes, keepdims=keep),
    "EuclideanNorm": _euclidean_norm,
}

for _name, _fn in _REDUCTIONS.items():
    _register_reduction(_name, _fn)


def _arg_extreme(ctx, x, dimension, fn):
    axis = int(dimension)
    if not -np.ndim(x) <= axis < np.ndim(x):
        raise ctx.error(f"dimension {axis} is out of range for a rank-{np.ndim(x)} input")
    if np.shape(x)[axis] == 0:
        raise ctx.error("cannot take the arg max/min over an empty dimension")
    if jnp.issubdtype(_dt(x), jnp.floating):
        # TF's reducer skips NaNs (a NaN never compares greater), jnp.argmax picks them: make them lose.
        x = jnp.where(jnp.isnan(x), -jnp.inf if fn is jnp.argmax else jnp.inf, x)
    return fn(x, axis=axis).astype(jax.dtypes.canonicalize_dtype(ctx.dtype("output_type", np.dtype(np.int64))))


@op("ArgMax", static=(1,))
def arg_max(ctx, x, dimension):
    return _arg_extreme(ctx, x, dimension, jnp.argmax)  # ties: jnp.argmax returns the first, like TF


@op("ArgMin", static=(1,))
def arg_min(ctx, x, dimension):
    return _arg_extreme(ctx, x, dimension, jnp.argmin)


def _scan(ctx, x, axis, fn, identity):
    """TF's Cumsum/Cumprod/CumulativeLogsumexp with the ``exclusive`` and ``reverse`` attrs (scan_ops.h)."""
    ndim = np.ndim(x)
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise ctx.error(f"axis {axis} is out of range for a rank-{ndim} input")
    axis %= ndim
    reverse = ctx.attr("reverse", False)
    if reverse:
        x = jnp.flip(x, axis)
    y = fn(x, axis)
    n = y.shape[axis]
    if ctx.attr("exclusive", False) and n:
        first = jnp.full_like(lax.slice_in_dim(y, 0, 1, axis=axis), identity)
        y = jnp.concatenate([first, lax.slice_in_dim(y, 0, n - 1, axis=axis)], axis=axis)
    return jnp.flip(y, axis) if reverse else y


@op("Cumsum", static=(1,))
def cumsum(ctx, x, axis):
    if _is_half(x):
        return _scan(ctx, x, axis, lambda v, a: _half_scan(v, a, lambda acc, e, r: r(acc + e), 0.0), 0)
    return _scan(ctx, x, axis, lambda v, a: jnp.cumsum(v, axis=a, dtype=v.dtype), 0)


@op("Cumprod", static=(1,))
def cumprod(ctx, x, axis):
    if _is_half(x):
        return _scan(ctx, x, axis, lambda v, a: _half_scan(v, a, lambda acc, e, r: r(acc * e), 1.0), 1)
    return _scan(ctx, x, axis, lambda v, a: jnp.cumprod(v, axis=a, dtype=v.dtype), 1)


@op("CumulativeLogsumexp", static=(1,))
def cumulative_logsumexp(ctx, x, axis):
    if _is_half(x):
        return _scan(ctx, x, axis, lambda v, a: _half_scan(v, a, _logsumexp_step, -np.inf), -np.inf)
    return _scan(ctx, x, axis, _cumlogsumexp_tf_nan, -np.inf)


def _is_half(x) -> bool:
    return _dt(x) in (jnp.float16, jnp.bfloat16)


def _half_scan(x, axis: int, step, init: float):
    """float16/bfloat16 scans: TF's CPU scan (Eigen's TensorScanOp) folds each line element by element in the
    16-bit type, every op rounded; XLA's scans (a parallel prefix, or float32 partial results) end up to a few
    ulps away. A sequential lax.scan in float32 whose every result ``step(acc, element, rounded)`` rounds
    (reduce_precision: XLA may drop a float32 -> 16 bit -> float32 round trip)."""
    bits = (5, 10) if _dt(x) == jnp.float16 else (8, 7)

    def rounded(v):
        return lax.reduce_precision(v, exponent_bits=bits[0], mantissa_bits=bits[1])

    def body(acc, v):
        acc = step(acc, v, rounded)
        return acc, acc

    xs = jnp.moveaxis(x, axis, 0).astype(jnp.float32)
    _, ys = lax.scan(body, jnp.full(xs.shape[1:], init, jnp.float32), xs)
    return jnp.moveaxis(ys, 0, axis).astype(x.dtype)


def _logsumexp_step(acc, v, rounded):
    # scan_ops.h LogSumExp: max + log1p(exp(min - max)), max itself if -inf; std::min/max keep acc for a NaN v
    lo, hi = jnp.where(v < acc, v, acc), jnp.where(acc < v, v, acc)
    total = rounded(rounded(jnp.log1p(rounded(jnp.exp(rounded(lo - hi))))) + hi)
    return jnp.where(hi == -jnp.inf, hi, total)


def _cumlogsumexp_tf_nan(x, axis: int):
    """TF's CPU scan (scan_ops.h) folds ``acc = max + log1p(exp(min - max))`` (``max`` if that is -inf) with
    std::max/min, which keep ``acc`` when ``x`` is NaN: a NaN doubles the running sum (adds log 2), leaves -inf
    alone and turns +inf into NaN from there on. Each element is scaled by 2^-(NaNs so far) and the scan by
    2^(NaNs so far)."""
    nan = jnp.isnan(x)
    halvings = jnp.cumsum(nan, axis=axis).astype(x.dtype) * np.log(2).astype(x.dtype)
    out = halvings + lax.cumlogsumexp(jnp.where(nan, -jnp.inf, x - halvings), axis=axis)
    # acc before an element is +inf after a +inf: the running max before it
    shift = [(0, 0, 0)] * x.ndim
    shift[axis] = (1, -1, 0)
    before = lax.pad(lax.cummax(jnp.where(nan, -jnp.inf, x), axis=axis), jnp.asarray(-jnp.inf, x.dtype), shift)
    poisoned = lax.cummax((nan & (before == jnp.inf)).astype(np.int8), axis=axis) > 0
    return jnp.where(poisoned, jnp.asarray(jnp.nan, x.dtype), out)


# -- matrix products -----------------------------------------------------------------------------------------


def _adjoint(x, adj: bool, conj: bool):
    if not adj:
        return x
    x = jnp.swapaxes(x, -1, -2)
    return _conj(x) if conj else x


def _bfloat16_matmul(a, b):
    """TF's CPU MatMul/BatchMatMul of bfloat16 (tensorflow/core/kernels/matmul_op_impl.h, Eigen's contraction):
    float32 products and sums, the result *truncated* to bfloat16, where every other op rounds to nearest."""
    out = jnp.matmul(a, b, precision=precision(), preferred_element_type=np.float32)
    if jax.default_backend() != "cpu":  # TF's GPU kernels (and oneDNN) round to nearest
        return out.astype(jnp.bfloat16)
    high = lax.shift_right_logical(lax.bitcast_convert_type(out, np.uint32), np.uint32(16))
    return lax.bitcast_convert_type(high.astype(np.uint16), jnp.bfloat16)


@op("MatMul")
def mat_mul(ctx, a, b):
    # MatMul's transpose_a/b do not conjugate complex inputs (BatchMatMul's adj_x/adj_y do).
    a = _adjoint(a, ctx.attr("transpose_a", False), conj=False)
    b = _adjoint(b, ctx.attr("transpose_b", False), conj=False)
    if _dt(a) == jnp.bfloat16:
        return _bfloat16_matmul(a, b)
    return jnp.matmul(a, b, precision=precision())


@op("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def batch_mat_mul(ctx, x, y):
    out = ctx.dtype("Tout", _dt(x))
    out = jax.dtypes.canonicalize_dtype(out)
    x = _adjoint(x, ctx.attr("adj_x", False), conj=True).astype(out)
    y = _adjoint(y, ctx.attr("adj_y", False), conj=True).astype(out)
    if out == jnp.bfloat16:
        return _bfloat16_matmul(x, y)
    return jnp.matmul(x, y, precision=precision())


def _einsum_pair(equation: str, a, b):
    """A two-operand einsum as ONE dot_general with the batch and contracting dimensions where they are, then a
    transpose of the result: XLA:CPU then picks the operand layouts itself. jnp.einsum first transposes the
    operands (batch dimensions leading), which XLA:CPU runs 1.4-1.7x slower for attention's 'aecd,abcd->acbe'
    and 'acbe,aecd->abcd' (BERT-base, batch 32: 30 -> 19 ms and 17 -> 13 ms). None when the equation has an
    ellipsis or a label repeated within one term (jnp.einsum handles those)."""
    ins, out = equation.replace(" ", "").split("->")
    la, lb = ins.split(",")
    if "." in equation or any(len(set(t)) != len(t) for t in (la, lb, out)):
        return None

    # A label in one operand only and not in the output is summed out first.
    def sum_unshared(x, lx: str, other: str):
        drop = [c for c in lx if c not in other and c not in out]
        if drop:
            x = jnp.sum(x, axis=tuple(lx.index(c) for c in drop))
        return x, "".join(c for c in lx if c not in drop)

    (a, la), (b, lb) = sum_unshared(a, la, lb), sum_unshared(b, lb, la)
    batch = [c for c in la if c in lb and c in out]
    contract = [c for c in la if c in lb and c not in out]
    dims = (
        ([la.index(c) for c in contract], [lb.index(c) for c in contract]),
        ([la.index(c) for c in batch], [lb.index(c) for c in batch]),
    )
    result = lax.dot_general(a, b, dims, precision=precision())
    labels = batch + [c for c in la if c not in lb] + [c for c in lb if c not in la]
    perm = [labels.index(c) for c in out]
    return result if perm == sorted(perm) else jnp.transpose(result, perm)


@op("Einsum")
def einsum(ctx, *inputs):
    equation = ctx.attr("equation")
    if len(inputs) == 2:
        out = _einsum_pair(equation, *inputs)
        if out is not None:
            return out
    return jnp.einsum(equation, *inputs, precision=precision())


# -- special functions, device and debug ops -----------------------------------------------------------------
@op("IgammaGradA")
def igamma_grad_a(ctx, a, x):
    return lax.igamma_grad_a(*jnp.broadcast_arrays(jnp.asarray(a), jnp.asarray(x)))


@op("Fact")
def fact(ctx):
    """TF's Fact kernel returns this fixed string."""
    return np.array(b"0! == 1", dtype=object)


@op("Copy", "CopyHost")
def copy(ctx, x):
    """The debugger's copies: the value itself (the debug_ops_spec watches are not run)."""
    return x


@op("CheckPinned")
def check_pinned(ctx, x):
    """TF on CPU rejects every tensor: none is in GPU-pinned host memory, nor is any of jaxsm's."""
    raise ctx.error("not pinned: the tensor is not in GPU-pinned host memory (TF on CPU raises the same)")


@op("DeviceIndex")
def device_index(ctx):
    """The branch for the device running the op: jaxsm takes TF's CPU answer, the index of "CPU" in
    device_names, or their number when absent (the default branch)."""
    names = [n.decode() if isinstance(n, bytes) else n for n in ctx.attr("device_names", [])]
    return np.int32(names.index("CPU") if "CPU" in names else len(names))


@op("Timestamp", stateful=True)
def timestamp(ctx):
    """Seconds since the epoch when the op runs (a host callback, so a compiled function reads the clock on
    every call, not once at trace time)."""
    dtype = jax.dtypes.canonicalize_dtype(np.float64)
    return io_callback(lambda: np.asarray(time.time(), dtype), jax.ShapeDtypeStruct((), dtype), ordered=True)


@op("TileGrad", static=(1,))
def tile_grad(ctx, x, multiples):
    """The sum of the tiles of ``x`` (the gradient of Tile), shaped like one tile."""
    reps = [int(m) for m in np.asarray(multiples).reshape(-1)]
    if len(reps) != x.ndim or any(m <= 0 or n % m for n, m in zip(x.shape, reps, strict=True)):
        raise ctx.error(f"multiples {reps} must divide the input shape {tuple(x.shape)}")
    split = [d for n, m in zip(x.shape, reps, strict=True) for d in (m, n // m)]
    return jnp.sum(jnp.reshape(x, split), axis=tuple(range(0, 2 * x.ndim, 2)), dtype=x.dtype)


@op("ApproxTopK")
def approx_top_k(ctx, x):
    """The exact top (or bottom, ``is_max_k`` false) k along ``reduction_dimension``, ties to the lower index:
    TF's CPU kernel (only max-k over the last dimension exists there) and XLA's fallback off TPU are exact. TF's
    CPU kernel ignores ``aggregate_to_topk`` (False still gives k entries), and so does jaxsm."""
    k, axis = int(ctx.attr("k")), int(ctx.attr("reduction_dimension", -1)) % x.ndim
    x = jnp.moveaxis(jnp.asarray(x), axis, -1)
    keys = x if ctx.attr("is_max_k", True) else -x
    _, indices = lax.top_k(jnp.where(keys == 0, jnp.zeros((), keys.dtype), keys), k)
    values = jnp.take_along_axis(x, indices, axis=-1)
    return jnp.moveaxis(values, -1, axis), jnp.moveaxis(indices.astype(np.int32), -1, axis)
