"""Edge cases of already-lowered ops against TensorFlow, round 3: integer arithmetic at the type's limits,
float <-> integer casts of NaN/inf/out-of-range values, int64 values beyond 32 bits, slicing/shape ops with
negative axes and masks, nn ops at non-finite values and unusual paddings, and sort-like ops with ties and NaN.

Each case is one tf.function returning a dict of outputs, saved once and compared with jaxsm under ``jax.jit``
and op by op. Where TF raises InvalidArgumentError for a constant input, jaxsm must raise a
:class:`jaxsm.errors.JaxsmError` when the function is traced.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import JaxsmError  # noqa: E402
from tests.tfcompare import assert_raises_like_tf, run_jaxsm, save_function  # noqa: E402
from tests.tfcompare import compare_case as _compare  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning"),
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),  # casts to inf, as TF's do
]
JIT = pytest.mark.parametrize("jit", [True, False])
raw = tf.raw_ops
# -- integer arithmetic --------------------------------------------------------------------------------------


def _int_operands(dtype) -> tuple[np.ndarray, np.ndarray]:
    info = np.iinfo(dtype)
    if info.min < 0:
        return (
            np.array([info.min, info.max, -1, -7, 7, 0, info.min + 1, 3], dtype),
            np.array([info.max, info.max, info.min, 3, -3, -1, -1, 5], dtype),
        )
    return (
        np.array([info.max, info.max, 1, 0, 7, 200, 3, info.max // 2 + 1], dtype),
        np.array([1, info.max, info.max, 1, 3, 200, 0, 2], dtype),
    )


def _where_defined(ops: dict) -> dict:
    """The entries of {name: thunk} whose op TF defines for the operands' dtype (not every op takes int8/uint16)."""
    out = {}
    for name, thunk in ops.items():
        try:
            out[name] = thunk()
        except TypeError:
            continue
    return out


@JIT
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int64, np.uint16, np.uint64])
def test_integer_wraparound(jit, dtype):
    """Add/Sub/Mul/Pow wrap modulo 2^bits, bitwise ops on signed values, divisions with INT_MIN and mixed signs,
    Neg/Abs/Sign of INT_MIN, PopulationCount of negative numbers; a zero divisor is replaced by 1."""
    signed = np.iinfo(dtype).min < 0
    binary = ["AddV2", "Add", "Sub", "Mul", "SquaredDifference", "BitwiseAnd", "BitwiseOr", "BitwiseXor"]
    binary += ["LeftShift", "RightShift", "Maximum", "Minimum"]
    divisions = ["FloorDiv", "FloorMod", "TruncateDiv", "Div", "TruncateMod", "Mod"]
    unary = ["Invert", "PopulationCount", "Square", "Neg", "Abs", "Sign"]

    def fn(a, b):
        nz = tf.where(tf.equal(b, 0), tf.ones_like(b), b)
        ops = {op: lambda op=op: getattr(raw, op)(x=a, y=b) for op in binary}
        ops.update({op: lambda op=op: getattr(raw, op)(x=a, y=nz) for op in divisions})
        ops.update({op: lambda op=op: getattr(raw, op)(x=a) for op in unary})
        ops["Pow"] = lambda: raw.Pow(x=a, y=(tf.abs(b) if signed else b) % 13)
        out = _where_defined(ops)
        assert len(out) >= 12, sorted(out)
        return out

    _compare(f"wrap_{np.dtype(dtype).name}", fn, list(_int_operands(dtype)), jit)


@JIT
def test_integer_pow_overflow_and_int_min(jit):
    def fn(a, b, m):
        out = {"pow": raw.Pow(x=a, y=b), "pow64": raw.Pow(x=tf.cast(a, tf.int64), y=tf.cast(b, tf.int64))}
        out.update({op: getattr(raw, op)(x=m, y=[-1, 1, -3]) for op in ["FloorDiv", "Div", "TruncateDiv"]})
        out.update({op: getattr(raw, op)(x=m, y=[-1, 1, -3]) for op in ["FloorMod", "TruncateMod", "Mod"]})
        return out

    inputs = [
        np.array([3, -3, 2, -2, 1, -1, 0, 10], np.int32),
        np.array([40, 41, 31, 31, 1000, 1001, 0, 19], np.int32),
        np.full(3, np.iinfo(np.int64).min, np.int64),
    ]
    _compare("pow_overflow", fn, inputs, jit)


_CONSTANT_INVALID = {
    "truncate_mod_zero": lambda a: raw.TruncateMod(x=a, y=tf.constant([1, 0, 2], tf.int32)),
    "mod_zero_int64": lambda a: raw.Mod(x=tf.cast(a, tf.int64), y=tf.constant(0, tf.int64)),
    "floor_div_zero_uint32": lambda a: raw.FloorDiv(x=tf.cast(a, tf.uint32), y=tf.constant(0, tf.uint32)),
    "div_zero_int8": lambda a: raw.Div(x=tf.cast(a, tf.int8), y=tf.constant([3, 0, 1], tf.int8)),
    "pow_negative_int64": lambda a: raw.Pow(x=tf.cast(a, tf.int64), y=tf.constant(-2, tf.int64)),
}


@pytest.mark.parametrize("case", sorted(_CONSTANT_INVALID))
def test_constant_invalid_integer_raises(case):
    assert_raises_like_tf(_CONSTANT_INVALID[case], [np.array([4, -7, 9], np.int32)])


@JIT
def test_runtime_zero_divisor_rules(jit):
    """A zero divisor or negative exponent known only at run time: op by op the values are known and jaxsm
    raises like TF; compiled, it gives XLA's results as jaxsm/ops/gaps.py documents."""
    a = np.array([7, -7, 0, 1, -1, 5], np.int32)
    b = np.array([0, 0, 0, -1, -3, -2], np.int32)

    def fn(a, b):
        out = {op: getattr(raw, op)(x=a, y=b) for op in ["Div", "TruncateDiv", "TruncateMod", "FloorMod"]}
        out["Pow"] = raw.Pow(x=a, y=b)
        out["Div_uint8"] = raw.Div(x=tf.cast(tf.abs(a), tf.uint8), y=tf.cast(tf.abs(b), tf.uint8))
        return out

    export_dir, tf_fn = save_function(fn, [a, b])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(a, b)
    if not jit:
        with pytest.raises(JaxsmError, match="Integer division by zero"):
            run_jaxsm(export_dir, [a, b], jit=False)
        return
    got = run_jaxsm(export_dir, [a, b], jit=True)
    nz = np.where(b == 0, 1, b)
    want = {
        "Div": np.where(b == 0, -1, np.trunc(a / nz)).astype(np.int32),
        "TruncateDiv": np.where(b == 0, -1, np.trunc(a / nz)).astype(np.int32),
        "TruncateMod": np.where(b == 0, a, np.fmod(a, nz)),
        "Pow": np.array([1, 1, 1, 1, -1, 0], np.int32),
        "Div_uint8": np.array([255, 255, 255, 1, 0, 2], np.uint8),
    }
    for name, value in want.items():
        np.testing.assert_array_equal(np.asarray(got[name]), value, err_msg=name)
    np.testing.assert_array_equal(np.asarray(got["FloorMod"])[:3], a[:3], err_msg="FloorMod")


# -- casts -----------------------------------------------------------------------------------------------------

_CAST_FLOATS = np.array(
    [
        np.nan,
        np.inf,
        -np.inf,
        3e9,
        -3e9,
        2.5,
        -2.5,
        255.7,
        256.0,
        -1.0,
        -0.0,
        1e20,
        -1e20,
        2147483647.0,
        -2147483648.0,
        4294967296.0,
        65535.9,
        0.49999997,
    ],
    np.float32,
)


@JIT
def test_float_to_int_casts(jit):
    """TF's x86 results: NaN and out-of-range values give the minimum of int32/int64 (XLA would saturate), to
    uint64 the bits of that int64 result. Narrower types depend on the position: full vector packets (8 to 32
    elements) saturate, the elements after the last one wrap (18 and 40 elements straddle the packet sizes)."""

    def fn(x, y):
        out = {}
        for src in [tf.float16, tf.bfloat16, tf.float32, tf.float64]:
            for dst in [tf.int8, tf.int16, tf.int32, tf.int64, tf.uint8, tf.uint16, tf.uint32, tf.uint64, tf.bool]:
                out[f"{src.name}_{dst.name}"] = tf.cast(tf.cast(x, src), dst)
        for dst in [tf.int8, tf.int16, tf.uint8, tf.uint16]:  # float32's packets hold 32
            out[f"float32_{dst.name}_40"] = tf.cast(tf.cast(y, tf.float32), dst)
        out["float16_uint8_2d"] = tf.cast(tf.reshape(tf.cast(y, tf.float16), [4, 10]), tf.uint8)
        out["int32_truncate"] = raw.Cast(x=x, DstT=tf.int32, Truncate=True)
        return out

    y = np.resize(np.concatenate([_CAST_FLOATS, [32000.0, 33000.0, 40000.0, 60000.0, -40000.0, 255.5]]), 40)
    _compare("float_to_int", fn, [_CAST_FLOATS, y.astype(np.float64)], jit)


@JIT
def test_int_and_bool_casts(jit):
    """Integer narrowing keeps the low bits, int64 -> float rounds to nearest even, bool is x != 0."""

    def fn(x):
        out = {}
        for dst in [
            tf.int8,
            tf.int16,
            tf.int32,
            tf.uint8,
            tf.uint16,
            tf.uint32,
            tf.uint64,
            tf.bool,
            tf.float16,
            tf.bfloat16,
            tf.float32,
            tf.float64,
            tf.complex64,
        ]:
            out[f"int64_{dst.name}"] = tf.cast(x, dst)
            out[f"uint64_{dst.name}"] = tf.cast(tf.cast(x, tf.uint64), dst)
            out[f"bool_{dst.name}"] = tf.cast(x > 0, dst)
            out[f"truncate_{dst.name}"] = raw.Cast(x=x, DstT=dst, Truncate=True)
        return out

    x = np.array([0, 1, -1, 2**31, -(2**31) - 1, 2**40 + 5, 2**63 - 1, -(2**63), 255, 256, 2**53 + 1], np.int64)
    _compare("int_casts", fn, [x], jit)


@JIT
def test_float_narrowing_casts(jit):
    """float64 -> float32 overflows to inf and rounds half to even, as do float16/bfloat16; Truncate=True
    truncates toward zero instead (float32 -> bfloat16 only: TF ignores the attr for the other pairs)."""

    def fn(x):
        out = {}
        for dst in [tf.float32, tf.float16, tf.bfloat16]:
            out[f"float64_{dst.name}"] = tf.cast(x, dst)
            out[f"float32_{dst.name}"] = tf.cast(tf.cast(x, tf.float32), dst)
            out[f"truncate_float64_{dst.name}"] = raw.Cast(x=x, DstT=dst, Truncate=True)
            out[f"truncate_float32_{dst.name}"] = raw.Cast(x=tf.cast(x, tf.float32), DstT=dst, Truncate=True)
        return out

    x = np.array(
        [
            1e39,
            -1e39,
            3.4028235677973366e38,
            3.4028236e38,
            1e-46,
            -1e-46,
            1.0000000596046448,
            1.0000001788139343,
            65520.0,
            65519.99,
            1e-8,
            5.960464477539063e-08,
            2.9802322387695312e-08,
            np.nan,
            1.00390625,
            1.01171875,
            -1.0078125,
            0.0,
        ],
        np.float64,
    )
    _compare("float_narrowing", fn, [x], jit, signed_zeros=True)


@JIT
def test_complex_to_real_casts(jit):
    def fn(z):
        out = {d.name: tf.cast(z, d) for d in [tf.float32, tf.float64, tf.int32, tf.int64, tf.uint8, tf.float16]}
        out["complex128"] = tf.cast(z, tf.complex128)
        out["bool"] = raw.Cast(x=z, DstT=tf.bool)
        return out

    _compare("complex_casts", fn, [np.array([1.5 + 2j, -3.7 - 1j, np.nan + 1j, -0j, 1e10 + 0j, 1j], np.complex64)], jit)


@JIT
def test_rounding_half_even_and_negative_zero(jit):
    def fn(x):
        out = {}
        for d in [tf.float16, tf.bfloat16, tf.float32, tf.float64]:
            v = tf.cast(x, d)
            out.update(
                {f"round_{d.name}": tf.round(v), f"floor_{d.name}": tf.floor(v), f"ceil_{d.name}": tf.math.ceil(v)}
            )
            if d in (tf.float32, tf.float64):
                out[f"rint_{d.name}"] = tf.math.rint(v)
        out["round_int32"] = tf.round(tf.cast(x[:2] * 0, tf.int32) + [-3, 3])
        return out

    x = np.array(
        [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -0.0, 0.0, -0.4, 0.49999997, 8388609.0, -8388609.0, np.nan, np.inf],
        np.float32,
    )
    _compare("rounding", fn, [x], jit, signed_zeros=True)


# -- int64 beyond 32 bits --------------------------------------------------------------------------------------


@JIT
def test_int64_beyond_32_bits(jit):
    """Values around 2^31..2^63 through shape, index, reduction and scan ops (x64 on, as in every test here)."""

    def fn(x, n):
        return {
            "range": tf.range(x[0] - 2, x[0] + 3),
            "range_step": tf.range(x[4], x[4] + 2**40, 2**38),
            "range_neg": tf.range(x[1], x[3], -(2**30)),
            "fill": tf.fill([2], x[2]),
            "cumsum": tf.cumsum(x[:5]),
            "cumsum_wraps": tf.cumsum(x[5:]),
            "sum": tf.reduce_sum(x[:4]),
            "sum_wraps": tf.reduce_sum(x),
            "prod": tf.reduce_prod(x[1:3]),
            "cumprod": tf.math.cumprod(x[1:4]),
            "max_min": (tf.reduce_max(x), tf.reduce_min(x)),
            "argmax_int64": tf.argmax(x, output_type=tf.int64),
            "argmin_int32": tf.argmin(x, output_type=tf.int32),
            "tile": tf.tile(x[:2], tf.constant([2], tf.int64)),
            "reshape": tf.reshape(x, tf.constant([2, -1], tf.int64)),
            "one_hot": tf.one_hot(tf.constant([0, 2], tf.int64), 3, on_value=x[2], off_value=x[6]),
            "gather": tf.gather(x, tf.constant([7, 0], tf.int64)),
            "to_float": (tf.cast(x, tf.float64), tf.cast(x, tf.float32)),
            "floordiv_mod": (tf.math.floordiv(x, 3), tf.math.floormod(x, 2**33 + 1)),
            "abs_neg_mul": (tf.abs(x), -x, x * 3),
            "shape": tf.shape(tf.zeros([n, 3]), out_type=tf.int64),
            "broadcast": tf.broadcast_to(x[:1], tf.constant([3], tf.int64)),
            "uint64": (tf.cast(x, tf.uint64) * 3, tf.cast(x, tf.uint64) // 7, tf.reduce_max(tf.cast(x, tf.uint64))),
            "uint64_compare": tf.cast(x, tf.uint64) > tf.cast(x[0], tf.uint64),
            "uint64_float": tf.cast(tf.cast(x, tf.uint64), tf.float64),
            "segment_sum": tf.math.unsorted_segment_sum(x, tf.constant([0, 1] * 4, tf.int64), tf.constant(2, tf.int64)),
        }

    x = np.array([2**31 - 1, 2**31, 2**32 + 7, -(2**31) - 1, 2**53 + 1, 2**62, -(2**63), 2**63 - 1], np.int64)
    _compare("int64_big", fn, [x, np.int32(2)], jit)


# -- slicing and shapes ----------------------------------------------------------------------------------------


@JIT
def test_strided_slices_and_shapes(jit):
    """StridedSlice mask combinations, negative strides, clamped out-of-range begin/end and zero-size results;
    StridedSliceGrad/TensorStridedSliceUpdate with masks; negative axes everywhere; zero multiples and the
    broadcast shape ops; MirrorPad at its largest paddings; OneHot with out-of-range indices on every axis."""

    def fn(x):
        def ss(b, e, s, **kw):
            return raw.StridedSlice(input=x, begin=b, end=e, strides=s, **kw)

        return {
            "ellipsis_new_axis": ss([0, 1, 0], [0, 3, 0], [1, 1, 1], ellipsis_mask=1, new_axis_mask=4),
            "shrink_negative": ss([-1, 0, -2], [0, 0, 0], [1, -1, 1], shrink_axis_mask=5, end_mask=2),
            "all_masks": ss(
                [1, 0, 0, 2, 0],
                [2, 0, 0, -1, 0],
                [1, 1, 1, -2, 1],
                begin_mask=2,
                end_mask=18,
                ellipsis_mask=4,
                new_axis_mask=2,
                shrink_axis_mask=1,
            ),
            "negative_stride_clamped": ss([100, -100, 10], [-100, 100, -10], [-1, 1, -3]),
            "zero_size": ss([1, 2, 3], [1, 1, 3], [1, -1, 1]),
            "ellipsis_middle": ss([1, 0, -1], [2, 0, 0], [1, 1, -1], ellipsis_mask=2, end_mask=4),
            "two_new_axes": ss([0, 0, 0], [0, 0, 1], [1, 1, 1], new_axis_mask=3, shrink_axis_mask=4),
            "grad": raw.StridedSliceGrad(
                shape=[2, 3, 4, 5],
                begin=[1, 2, -1],
                end=[-3, 0, 0],
                strides=[-1, -1, -2],
                dy=tf.reshape(tf.range(40.0), [2, 2, 2, 5]),
                end_mask=4,
            ),
            "grad_masks": raw.StridedSliceGrad(
                shape=[2, 3, 4, 5],
                begin=[0, 1],
                end=[0, 2],
                strides=[1, 1],
                dy=x[..., 0],
                shrink_axis_mask=2,
                ellipsis_mask=1,
            ),
            "update": raw.TensorStridedSliceUpdate(
                input=x, begin=[0, -1], end=[0, -4], strides=[1, -2], value=-x[..., :2], ellipsis_mask=1
            ),
            "split_m1": tf.split(x, [1, -1, 2], axis=-2),
            "split_zero_sizes": tf.split(x, [0, 3, 0], axis=1),
            "split_neg_axis": raw.Split(axis=-1, value=x, num_split=5),
            "roll_negative_repeated": tf.roll(x, [-7, 3, -1], [-1, 1, -1]),
            "roll_large": tf.roll(x, 1001, 2),
            "reverse_negative": tf.reverse(x, [-1, -3]),
            "transpose": raw.Transpose(x=x, perm=[3, 0, 2, 1]),
            "concat_negative": tf.concat([x, x[:, :, :1]], -2),
            "concat_int64_axis": raw.ConcatV2(values=[x, x], axis=tf.constant(-4, tf.int64)),
            "pack_negative": tf.stack([x[0], x[1]], axis=-4),
            "pack_scalars": tf.stack([x[0, 0, 0, 0], x[1, 0, 0, 0]], axis=-1),
            "unpack_negative": tf.unstack(x, axis=-3),
            "tile_zero": tf.tile(x, [1, 0, 2, 1]),
            "broadcast_to": tf.broadcast_to(x[0, :1, :, :1], [2, 3, 3, 4, 2]),
            "broadcast_args": raw.BroadcastArgs(s0=[1, 3, 1], s1=[5, 1, 1, 0]),
            "broadcast_args_scalar": raw.BroadcastArgs(s0=tf.zeros([0], tf.int32), s1=[2, 1]),
            "gradient_args": raw.BroadcastGradientArgs(s0=[1, 3, 1], s1=[5, 1, 1, 1]),
            "gradient_args_same": raw.BroadcastGradientArgs(s0=[2, 1], s1=[2, 1]),
            "gradient_args_scalar": raw.BroadcastGradientArgs(
                s0=tf.zeros([0], tf.int64), s1=tf.constant([1, 4], tf.int64)
            ),
            "gradient_args_zero": raw.BroadcastGradientArgs(s0=[0, 1], s1=[1, 1]),
            "reflect_max": tf.pad(x, [[1, 1], [2, 2], [3, 3], [4, 4]], mode="REFLECT"),
            "symmetric_max": tf.pad(x, [[2, 2], [3, 3], [4, 4], [5, 5]], mode="SYMMETRIC"),
            "reflect_size_one": tf.pad(x[:, :, :, :1], [[0, 0], [0, 0], [1, 1], [0, 0]], mode="REFLECT"),
            "one_hot_negative": tf.one_hot([[-1, 0], [3, 2]], 3, axis=-1),
            "one_hot_axis0": tf.one_hot([-1, 0, 5, 2], 3, axis=0, on_value=7, off_value=-2),
            "one_hot_axis1_int64": tf.one_hot([[-1, 0], [3, 2]], 4, axis=1, dtype=tf.int64),
            "one_hot_scalar": tf.one_hot(2, 4, axis=0),
            "one_hot_uint8": tf.one_hot(tf.constant([1, 255], tf.uint8), 3),
        }

    _compare("shapes", fn, [np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5)], jit)


# -- nn ----------------------------------------------------------------------------------------------------------


@JIT
def test_softmax_non_finite_rows(jit):
    """Rows of all -inf give NaN, a +inf gives NaN (inf - inf), huge finite values stay finite; empty axes;
    softmax cross-entropy with the same rows."""
    inf, nan = np.inf, np.nan
    r = np.array(
        [[-inf, -inf, -inf], [1.0, inf, 2.0], [inf, inf, 0.0], [nan, 1.0, 2.0], [-inf, 0.0, -inf], [3e38, 3e38, -3e38]],
        np.float32,
    )

    def fn(r):
        out = {}
        for d in [tf.float16, tf.float32]:
            v = tf.cast(r, d)
            out[f"softmax_{d.name}"] = tf.nn.softmax(v)
            out[f"log_softmax_{d.name}"] = tf.nn.log_softmax(v)
        out["softmax_empty_axis"] = tf.nn.softmax(r[:, :0])
        out["log_softmax_no_rows"] = tf.nn.log_softmax(r[:0])
        out["softmax_axis0"] = tf.nn.softmax(r, axis=0)
        out["softmax_rank1"] = tf.nn.softmax(r[1])
        labels = tf.nn.softmax(tf.reverse(r, [1]))
        labels = tf.where(tf.math.is_nan(labels), 0.0, labels)
        out["xent"] = raw.SoftmaxCrossEntropyWithLogits(features=r, labels=labels)
        out["xent_broadcast"] = raw.SoftmaxCrossEntropyWithLogits(features=r[1:3], labels=[[0.2, 0.3, 0.5]])
        out["sparse_xent"] = raw.SparseSoftmaxCrossEntropyWithLogits(features=r, labels=[0, 1, 2, 0, 1, 2])
        out["sparse_xent_int64"] = raw.SparseSoftmaxCrossEntropyWithLogits(
            features=r[3:], labels=tf.constant([2, 0, 1], tf.int64)
        )
        return out

    _compare("softmax", fn, [r], jit, rtol=1e-3)


@pytest.mark.parametrize("label", [-1, 3])
def test_sparse_xent_constant_bad_label_raises(label):
    fn = lambda r: raw.SparseSoftmaxCrossEntropyWithLogits(features=r, labels=tf.constant([0, label], tf.int64))  # noqa: E731
    assert_raises_like_tf(fn, [np.ones([2, 3], np.float32)])


@JIT
def test_sparse_xent_runtime_bad_label(jit):
    """A label known only at run time: op by op jaxsm raises like TF; compiled, its row is NaN (TF's GPU rule,
    jaxsm/ops/gaps.py) and the other rows are TF's."""
    logits, labels = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], np.float32), np.array([1, 3], np.int64)

    def fn(f, lab):
        return raw.SparseSoftmaxCrossEntropyWithLogits(features=f, labels=lab)

    export_dir, tf_fn = save_function(fn, [logits, labels])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(logits, labels)
    if not jit:
        with pytest.raises(JaxsmError, match="outside"):
            run_jaxsm(export_dir, [logits, labels], jit=False)
        return
    loss, backprop = run_jaxsm(export_dir, [logits, labels], jit=True)
    good = tf_fn(logits, np.array([1, 2], np.int64))
    np.testing.assert_allclose(np.asarray(loss)[0], good[0].numpy()[0], rtol=1e-6, err_msg="loss")
    np.testing.assert_allclose(np.asarray(backprop)[0], good[1].numpy()[0], rtol=1e-6, err_msg="backprop")
    assert np.isnan(np.asarray(loss)[1]) and np.isnan(np.asarray(backprop)[1]).all(), "bad label row is not NaN"


@JIT
def test_convolutions_and_pools(jit):
    """EXPLICIT padding with dilations, strides larger than the kernel, Conv3D, SAME pooling on even sizes
    (TF pads the larger half after), 3-D pools, transposed convolutions with odd output sizes, LRN, NCHW BiasAdd."""

    def fn(x):
        w = tf.reshape(tf.range(3 * 3 * 3 * 4, dtype=tf.float32) / 50 - 1, [3, 3, 3, 4])
        dw = tf.reshape(tf.range(2 * 2 * 3 * 2, dtype=tf.float32) / 10 - 0.5, [2, 2, 3, 2])
        x5 = tf.reshape(x, [1, 2, 7, 6, 3])
        w5 = tf.reshape(tf.range(2 * 2 * 2 * 3 * 2, dtype=tf.float32) / 40 - 0.5, [2, 2, 2, 3, 2])
        wt = tf.transpose(w[..., :3], [0, 1, 3, 2])
        return {
            "conv_explicit_dilated": tf.nn.conv2d(
                x, w, [1, 2, 1, 1], [[0, 0], [1, 2], [0, 3], [0, 0]], dilations=[1, 1, 2, 1]
            ),
            "conv_stride_beyond_kernel": tf.nn.conv2d(x, w, [1, 4, 5, 1], "SAME"),
            "conv_valid_dilated": tf.nn.conv2d(x, w, 1, "VALID", dilations=2),
            "depthwise_explicit": raw.DepthwiseConv2dNative(
                input=x, filter=dw, strides=[1, 2, 2, 1], padding="EXPLICIT", explicit_paddings=[0, 0, 2, 1, 1, 0, 0, 0]
            ),
            "depthwise_dilated": tf.nn.depthwise_conv2d(x, dw, [1, 1, 1, 1], "SAME", dilations=[2, 3]),
            "depthwise_stride_beyond_kernel": tf.nn.depthwise_conv2d(x, dw, [1, 3, 3, 1], "SAME"),
            "conv3d": tf.nn.conv3d(x5, w5, [1, 1, 2, 3, 1], "SAME"),
            "avg_same_even": tf.nn.avg_pool2d(x[:, :6], [2, 2], [2, 2], "SAME"),
            "avg_same_odd_window": tf.nn.avg_pool2d(x, [3, 2], [2, 2], "SAME"),
            "max_same_even": tf.nn.max_pool2d(x[:, :6], [3, 3], [2, 2], "SAME"),
            "avg3d": tf.nn.avg_pool3d(x5, [1, 3, 2], [1, 2, 2], "SAME"),
            "max3d": tf.nn.max_pool3d(x5, [2, 2, 3], [1, 2, 2], "SAME"),
            "max3d_valid": tf.nn.max_pool3d(x5, [2, 2, 2], [2, 3, 1], "VALID"),
            "transpose_odd": tf.nn.conv2d_transpose(x[:, :4, :3], wt, [2, 7, 5, 3], [1, 2, 2, 1], "SAME"),
            "backprop_input_valid": raw.Conv2DBackpropInput(
                input_sizes=[2, 8, 7, 3],
                filter=w,
                out_backprop=x[:, :3, :3, :1] * tf.ones([1, 1, 1, 4]),
                strides=[1, 2, 2, 1],
                padding="VALID",
            ),
            "lrn": tf.nn.local_response_normalization(x, depth_radius=1, bias=0.5, alpha=0.3, beta=0.75),
            "lrn_radius_beyond_depth": tf.nn.local_response_normalization(x, depth_radius=5, alpha=1.0, beta=0.5),
            "bias_add_nchw": tf.nn.bias_add(tf.transpose(x, [0, 3, 1, 2]), [1.0, -2.0, 3.0], data_format="NCHW"),
            "bias_add_nchw_5d": tf.nn.bias_add(tf.transpose(x5, [0, 4, 1, 2, 3]), [1.0, -2.0, 3.0], "NCHW"),
        }

    x = np.linspace(-3, 3, 2 * 7 * 6 * 3, dtype=np.float32).reshape(2, 7, 6, 3)
    _compare("conv_pool", fn, [x], jit, rtol=1e-4, atol=1e-5)


@JIT
def test_fused_batch_norm_training(jit):
    """Training mode with a constant channel (variance 0), exponential_avg_factor != 1 (running statistics mixed
    in, the variance Bessel-corrected), NCHW, float16, a single element per channel and an empty batch."""
    x = np.random.RandomState(0).randn(2, 3, 4, 3).astype(np.float32)
    x[..., 1] = 2.5

    def fn(x):
        stats = dict(scale=[1.0, 2.0, -1.0], offset=[0.0, 0.5, 1.0], mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 3.0])
        out = {}
        for factor in [1.0, 0.3]:
            for fmt, v in [("NHWC", x), ("NCHW", tf.transpose(x, [0, 3, 1, 2]))]:
                y = raw.FusedBatchNormV3(
                    x=v, epsilon=1e-3, exponential_avg_factor=factor, is_training=True, data_format=fmt, **stats
                )
                out[f"{fmt}_{factor}"] = (y.y, y.batch_mean, y.batch_variance)
        for name, v in [("half", tf.cast(x, tf.float16)), ("single", x[:1, :1, :1]), ("empty", x[:0])]:
            y = raw.FusedBatchNormV3(x=v, epsilon=1e-3, exponential_avg_factor=0.5, is_training=True, **stats)
            out[name] = (y.y, y.batch_mean, y.batch_variance)
        stats["variance"] = [1.0, 0.0, 3.0]
        out["inference_zero_variance"] = raw.FusedBatchNormV3(x=x, epsilon=1e-5, is_training=False, **stats).y
        return out

    _compare("batch_norm", fn, [x], jit, rtol=1e-5, atol=1e-6)


@JIT
def test_in_top_k_ties_and_non_finite(jit):
    """A target ties with the k-th value counts as in; a NaN or -inf-only row, or a target out of range, is
    never in the top k."""
    inf, nan = np.inf, np.nan
    p = np.array([[1.0, 3, 3, 2], [nan, 1, 2, 3], [inf, inf, 1, 0], [-inf, -inf, -inf, -inf], [2, 2, 2, 2]], np.float32)

    def fn(p):
        out = {f"k{k}": raw.InTopKV2(predictions=p, targets=[1, 0, 1, 3, 2], k=k) for k in [0, 1, 2, 4, 5]}
        out["int64"] = raw.InTopKV2(
            predictions=p, targets=tf.constant([2, 3, 2, 0, 0], tf.int64), k=tf.constant(1, tf.int64)
        )
        out["target_zero"] = raw.InTopKV2(predictions=p, targets=[0, 0, 0, 0, 0], k=3)
        out["target_out_of_range"] = raw.InTopKV2(predictions=p, targets=[4, -1, 0, 0, 0], k=3)
        return out

    _compare("in_top_k", fn, [p], jit)


@JIT
def test_activations_at_specials(jit):
    """Signed zeros, infinities, NaN and huge values through the activations in every float type (bfloat16/float16
    Sigmoid rounds e / (1 + e) step by step as Eigen does). Relu/Relu6 of -0.0 is -0.0 in float16/bfloat16;
    float32 is skipped there: TF's sign of that zero depends on its position (jaxsm/ops/gaps.py)."""
    x = np.array([-0.0, 0.0, np.nan, np.inf, -np.inf, 1.0, -1.0, 5e-3, -5e-3, 3e38, 0.3, -0.7, 7.5], np.float32)

    def fn(x):
        out = {}
        for d in [tf.float16, tf.bfloat16, tf.float32]:
            v = tf.cast(x, d)
            keep = v if d in (tf.float16, tf.bfloat16) else v[1:]
            out[f"relu_{d.name}"] = tf.nn.relu(keep)
            out[f"relu6_{d.name}"] = tf.nn.relu6(keep)
            out[f"elu_{d.name}"] = tf.nn.elu(v)
            out[f"selu_{d.name}"] = tf.nn.selu(v)
            for alpha in [0.2, -1.5, 2.0]:
                out[f"leaky_relu_{alpha}_{d.name}"] = tf.nn.leaky_relu(v, alpha)
            out[f"softplus_{d.name}"] = tf.nn.softplus(v)
            out[f"sigmoid_{d.name}"] = tf.sigmoid(v)
            out[f"silu_{d.name}"] = tf.nn.silu(v)
        out["relu_int8"] = tf.nn.relu(tf.constant([-128, 0, 127], tf.int8))
        out["relu6_int32"] = tf.nn.relu6(tf.cast(x[5:7], tf.int32) * 7)
        return out

    _compare("activations", fn, [x], jit, rtol=1e-3, signed_zeros=True)


@JIT
def test_low_precision_sigmoid(jit):
    # Eigen's e / (1 + e) for float16/bfloat16 is up to an ulp from the correctly rounded value: compare exactly
    x = np.concatenate([np.linspace(-20, 20, 801), [-92.5, -17.3, 11.2, 0.005, -0.005, 88.8, -88.0]])

    def fn(x):
        return {d.name: tf.sigmoid(tf.cast(x, d)) for d in [tf.float16, tf.bfloat16]}

    _compare("sigmoid_low_precision", fn, [x.astype(np.float32)], jit, rtol=0)


# -- sort-like -------------------------------------------------------------------------------------------------


@JIT
def test_sort_like(jit):
    """TopKV2 at k=0/k=n (sorted=False too: TF sorts there) and k=1 (an argmax); stable argsort of equal keys in
    both directions; Unique/ArgMax/ArgMin with NaN, +-inf and signed zeros in every float type."""
    inf, nan = np.inf, np.nan
    t = np.array([[3.0, nan, 1.0, nan, 3.0, -inf, inf, 0.0, -0.0, 2.0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]], np.float32)

    def fn(t):
        finite = tf.concat([t[:, 4:], t[:, :1]], 1)
        out = {}
        for k in [0, 7]:
            out[f"top{k}"] = tf.math.top_k(finite, k)
            out[f"top{k}_unsorted"] = tf.math.top_k(finite, k, sorted=False)
        out["top1_unsorted"] = tf.math.top_k(t, 1, sorted=False)
        out["argsort_descending_ties"] = tf.argsort(t[1:], direction="DESCENDING", stable=True)
        out["argsort_ascending_ties"] = tf.argsort(finite, stable=True)
        ints = tf.constant([[3, -1, 3, 2**31 - 1, -(2**31)]], tf.int32)
        out["sort_int_descending"] = tf.sort(ints, direction="DESCENDING")
        out["argsort_int"] = tf.argsort(tf.constant([5, 1, 5, 1, 0]))
        out["sort_float"] = tf.sort(finite)
        out["unique"] = tf.unique(t[0])
        out["unique_with_counts"] = tf.unique_with_counts(tf.reshape(t, [-1]))
        for d in [tf.float16, tf.bfloat16, tf.float32]:
            v = tf.cast(t, d)
            out[f"argmax_{d.name}"] = (tf.argmax(v, 1), tf.argmax(v, 0))
            out[f"argmin_{d.name}"] = (tf.argmin(v, 1), tf.argmin(v, 0))
        out["argmax_int8"] = tf.argmax(tf.constant([[1, 7, 7, -128]], tf.int8), 1)
        out["argmin_uint64"] = tf.argmin(tf.constant(np.array([[2**64 - 1, 0, 0]], np.uint64)), 1)
        return out

    _compare("sort_like", fn, [t], jit, signed_zeros=True)
