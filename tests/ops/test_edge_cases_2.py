"""Edge cases of already-lowered ops against TensorFlow, round 2: string ops (positions, Unicode, number
formatting and parsing, regexes, base64, hashing), image resizing/cropping/NMS/colour, linear algebra on
singular and batched inputs, special functions at poles and infinities, and unusual integer/float dtypes.

Each case is one tf.function returning a dict of outputs, saved once and compared with jaxsm under ``jax.jit``
and op by op (functions fed strings run op by op: EagerFallbackWarning). Where TF raises InvalidArgumentError
for a constant input, jaxsm must raise a :class:`jaxsm.errors.JaxsmError` when the function is traced.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.tfcompare import assert_raises_like_tf  # noqa: E402
from tests.tfcompare import compare_case as _compare  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")
JIT = pytest.mark.parametrize("jit", [True, False])
raw = tf.raw_ops


def _strs(*values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = [v.encode() if isinstance(v, str) else v for v in values]
    return out


# -- strings ---------------------------------------------------------------------------------------------------

_TEXT = _strs("hello", "", "caf\u00e9 \u00c9T\u00c9", "\u4e2d\u6587x", "  \tpad \n")


@JIT
def test_substr(jit):
    def fn(s):
        return {
            "neg_pos": tf.strings.substr(s, -2, 2),
            "len_beyond": tf.strings.substr(s, 0, 100),
            "zero_len": tf.strings.substr(s, 0, 0),
            "neg_len": tf.strings.substr(s, 0, -1),
            "at_end": tf.strings.substr(s, tf.strings.length(s), tf.fill([4], 3)),
            "utf8": tf.strings.substr(s, 1, 2, unit="UTF8_CHAR"),
            "utf8_neg": tf.strings.substr(s, -1, 5, unit="UTF8_CHAR"),
            "bcast_pos": tf.strings.substr(s[:3], [[0], [1]], [[2], [1]]),
            "bcast_len": tf.strings.substr(tf.reshape(s[:2], [2, 1]), [0, 1, -1], [1, 2, 3]),
            "scalar": tf.strings.substr(s[0], 1, 3),
            "int64": tf.strings.substr(s, tf.constant(1, tf.int64), tf.constant(2, tf.int64)),
            "utf8_neg_len": tf.strings.substr(s, 1, -1, unit="UTF8_CHAR"),
            "utf8_invalid": tf.strings.substr(tf.constant([b"\xff\x80\x80ab", b"\x80\xc3"]), 1, 2, unit="UTF8_CHAR"),
            "utf8_neg_invalid": tf.strings.substr(tf.constant([b"a\x80\x80b\xe4"]), -3, 2, unit="UTF8_CHAR"),
        }

    _compare("substr", fn, [_strs("hello", "ab", "caf\u00e9", "\u4e2d\u6587x")], jit)


@pytest.mark.parametrize(
    "case",
    ["pos_beyond", "neg_beyond", "utf8_beyond", "utf8_neg_pos_neg_len"],
)
def test_substr_out_of_range_raises(case):
    fn = {
        "pos_beyond": lambda s: tf.strings.substr(s, 6, 1),
        "neg_beyond": lambda s: tf.strings.substr(s, -6, 1),
        "utf8_beyond": lambda s: tf.strings.substr(s, 5, 1, unit="UTF8_CHAR"),
        "utf8_neg_pos_neg_len": lambda s: tf.strings.substr(s, -1, -1, unit="UTF8_CHAR"),
    }[case]
    assert_raises_like_tf(fn, [_strs("hello", "caf\u00e9")], jit=False)


@JIT
def test_string_split_v2(jit):
    def fn(s):
        out = {}
        for name, sep, maxsplit in [
            ("ws", "", -1),
            ("ws_max1", "", 1),
            ("comma", ",", -1),
            ("comma_max1", ",", 1),
            ("multi", "ab", -1),
            ("max0", ",", 0),
        ]:
            sp = tf.strings.split(s, sep=sep or None, maxsplit=maxsplit).to_sparse()
            out[name] = (sp.indices, sp.values, sp.dense_shape)
        return out

    _compare("split_v2", fn, [_strs("a,b,,c", "", "  x  y\tz\n", ",", "abxaby", "  lead,  ")], jit)


@JIT
def test_string_case_strip_length(jit):
    def fn(s):
        return {
            "lower": tf.strings.lower(s),
            "upper": tf.strings.upper(s),
            "lower_utf8": tf.strings.lower(s, encoding="utf-8"),
            "upper_utf8": tf.strings.upper(s, encoding="utf-8"),
            "strip": tf.strings.strip(s),
            "len": tf.strings.length(s),
            "len_utf8": tf.strings.length(s, unit="UTF8_CHAR"),
        }

    _compare(
        "case",
        fn,
        [
            _strs(
                "Stra\u00dfe \u0130I",
                "\u00c9T\u00c9",
                b"\xff\xfeab",
                b"\x80\x80z\xe4\xb8",
                b"\xc3",
                "\x0b\x0c x \x00",
                "a\x00B",
                "\u00a0nbsp\u00a0",
                "\u1e9e\u01c5",
            )
        ],
        jit,
    )


@JIT
def test_string_to_number(jit):
    def fn(s):
        return {
            "f32": tf.strings.to_number(s),
            "f64": tf.strings.to_number(s, tf.float64),
        }

    _compare(
        "to_number",
        fn,
        [
            _strs(
                "inf",
                "-Infinity",
                "+1.5",
                " 2.5 ",
                "0x1p3",
                "1e400",
                "nan",
                "-0",
                "1e-50",
                ".5",
                "5.",
                "-nan",
                "+inf",
                "\t7\n",
                "1e-400",
                "0X1A",
            )
        ],
        jit,
    )


@JIT
def test_string_to_int(jit):
    def fn(s):
        return {
            "i32": tf.strings.to_number(s, tf.int32),
            "i64": tf.strings.to_number(s, tf.int64),
        }

    _compare("to_int", fn, [_strs("+12", " -7 ", "0", "-2147483648", "2147483647", "007", "-0")], jit)


@pytest.mark.parametrize(
    "text,dtype",
    [
        ("1.5", tf.int32),
        ("abc", tf.float32),
        ("", tf.float32),
        ("1_000", tf.float32),
        ("2147483648", tf.int32),
        ("0x10", tf.int32),
        ("1 2", tf.float32),
        ("1e5", tf.int64),
        ("9223372036854775808", tf.int64),
    ],
)
def test_string_to_number_raises(text, dtype):
    assert_raises_like_tf(lambda s: tf.strings.to_number(s, dtype), [_strs(text)], jit=False)


_FLOATS = np.array([0.0, -0.0, 1.5, -2.25e-7, 123456789.0, np.inf, -np.inf, np.nan, 1e300], np.float64)


@JIT
def test_as_string_floats(jit):
    def fn(x):
        out = {}
        for dtype in [tf.float64, tf.float32, tf.float16, tf.bfloat16]:
            v = tf.cast(x, dtype)
            name = dtype.name
            out[name] = tf.strings.as_string(v)
            out[f"{name}_prec"] = tf.strings.as_string(v, precision=2)
            out[f"{name}_sci"] = tf.strings.as_string(v, scientific=True, precision=3)
            out[f"{name}_short"] = tf.strings.as_string(v, shortest=True)
            out[f"{name}_width"] = tf.strings.as_string(v, width=12, fill="0")
            out[f"{name}_left"] = tf.strings.as_string(v, width=12, fill="-", precision=1)
            out[f"{name}_plus"] = tf.strings.as_string(v, fill="+")
            out[f"{name}_space"] = tf.strings.as_string(v, width=3, fill=" ")
            out[f"{name}_hash"] = tf.strings.as_string(v, fill="#", shortest=True)
        c = tf.complex(x[:3], x[3:6])
        out["complex"] = tf.strings.as_string(c)
        out["complex_sci"] = tf.strings.as_string(tf.cast(c, tf.complex64), scientific=True, width=10)
        return out

    _compare("as_string_floats", fn, [_FLOATS], jit)


@JIT
def test_as_string_ints(jit):
    def fn(x):
        out = {}
        for dtype in [tf.int8, tf.uint8, tf.int16, tf.uint16, tf.int32, tf.uint32, tf.int64, tf.uint64]:
            v = tf.cast(x, dtype)
            out[dtype.name] = tf.strings.as_string(v)
            out[f"{dtype.name}_width"] = tf.strings.as_string(v, width=5, fill="0")
            out[f"{dtype.name}_plus"] = tf.strings.as_string(v, fill="+", width=4)
        out["bool"] = tf.strings.as_string(x > 0)
        out["bool_width"] = tf.strings.as_string(x > 0, width=7, fill="-")
        out["bool_zero"] = tf.strings.as_string(x > 0, width=7, fill="0")
        out["str"] = tf.strings.as_string(tf.strings.as_string(x), width=3)
        return out

    _compare("as_string_ints", fn, [np.array([0, 1, -1, 127, -128, 255, 70000, -5000000000], np.int64)], jit)


@JIT
def test_joins(jit):
    def fn(s):
        m = tf.reshape(s, [2, 3])
        return {
            "join_scalar_bcast": tf.strings.join([m, "!", m], separator="-"),
            "join_scalars": tf.strings.join(["a", s[0]]),
            "reduce_all": tf.strings.reduce_join(m, separator=","),
            "reduce_empty_axes": raw.ReduceJoin(inputs=m, reduction_indices=tf.zeros([0], tf.int32), separator="+"),
            "reduce_keep": tf.strings.reduce_join(m, axis=1, keepdims=True, separator="|"),
            "reduce_neg": tf.strings.reduce_join(m, axis=-2),
            "reduce_two": raw.ReduceJoin(inputs=m, reduction_indices=[1, 0], separator="."),
            "reduce_empty_dim": tf.strings.reduce_join(m[:, :0], axis=1, separator=","),
            "reduce_scalar_axes": raw.ReduceJoin(inputs=m, reduction_indices=0, keep_dims=True),
        }

    _compare("joins", fn, [_strs("a", "", "c\u00e9", "d", "e", "")], jit)


@JIT
def test_regexes(jit):
    def fn(s):
        return {
            "groups": tf.strings.regex_replace(s, r"(\w)(\w*)", r"\2\1"),
            "group0": tf.strings.regex_replace(s, r"[aeiou]", r"<\0>"),
            "escaped": tf.strings.regex_replace(s, r"a", r"\\"),
            "first_only": tf.strings.regex_replace(s, r"a", "X", replace_global=False),
            "anchors": tf.strings.regex_replace(s, r"^|$", "|"),
            "empty_match": tf.strings.regex_replace(s, r"x*", "-"),
            "dynamic": raw.RegexReplace(input=s, pattern=s[0], rewrite="#"),
            "full": tf.strings.regex_full_match(s, r"[a-z]+"),
            "full_alt": tf.strings.regex_full_match(s, r"ab|abc"),
            "full_utf8": tf.strings.regex_full_match(s, r".\w."),
            "full_dot_nl": tf.strings.regex_full_match(s, r"a.c"),
        }

    _compare("regexes", fn, [_strs("abc", "", "banana", "a\nc", "\u00e9t\u00e9", "xxa")], jit)


_BAD_UTF8 = _strs("ok\u00e9", b"\xffa\xc3", b"", b"\xe4\xb8\xadz\xed\xa0\x80", b"\xf0\x9f\x98")


@JIT
@pytest.mark.parametrize("errors", ["replace", "ignore"])
def test_unicode_decode_encode(jit, errors):
    def fn(s):
        out = {}
        for repl in [0xFFFD, 63]:
            cp = tf.strings.unicode_decode(s, "UTF-8", errors=errors, replacement_char=repl).to_sparse()
            out[f"decode_{repl}"] = (cp.indices, cp.values, cp.dense_shape)
        cp, offsets = tf.strings.unicode_decode_with_offsets(s, "UTF-8", errors=errors)
        out["offsets"] = offsets.to_sparse().values
        out["decode_ctrl"] = tf.strings.unicode_decode(
            s, "UTF-8", errors=errors, replace_control_characters=True
        ).values
        codes = tf.ragged.constant([[104, 0x10FFFF + 1, -1, 0xD800, 233], [], [0x1F600]])
        out["encode"] = tf.strings.unicode_encode(codes, "UTF-8", errors=errors, replacement_char=66)
        out["encode16"] = tf.strings.unicode_encode(codes, "UTF-16-BE", errors=errors)
        out["transcode16"] = tf.strings.unicode_transcode(s, "UTF-8", "UTF-16-BE", errors=errors)
        out["transcode_repl"] = tf.strings.unicode_transcode(s, "UTF-8", "UTF-8", errors=errors, replacement_char=42)
        out["transcode_ctrl"] = tf.strings.unicode_transcode(
            tf.strings.join([s, "\x01"]), "UTF-8", "UTF-8", errors=errors, replace_control_characters=True
        )
        return out

    _compare(f"unicode_{errors}", fn, [_BAD_UTF8], jit)


@pytest.mark.parametrize("case", ["decode", "transcode", "encode"])
def test_unicode_strict_raises(case):
    fn = {
        "decode": lambda s: tf.strings.unicode_decode(s, "UTF-8", errors="strict").values,
        "transcode": lambda s: tf.strings.unicode_transcode(s, "UTF-8", "UTF-16-BE", errors="strict"),
        "encode": lambda s: tf.strings.unicode_encode(tf.ragged.constant([[0x110000]]), "UTF-8", errors="strict"),
    }[case]
    assert_raises_like_tf(fn, [_BAD_UTF8], jit=False)


@JIT
def test_string_ngrams(jit):
    def fn(s):
        rt = tf.RaggedTensor.from_row_splits(s, [0, 0, 1, 3, 6])
        out = {}
        for name, kw in {
            "plain": dict(ngram_width=2),
            "pad": dict(ngram_width=3, pad_values=("<", ">")),
            "pad1": dict(ngram_width=3, pad_values=("<", ">"), padding_width=1),
            "short": dict(ngram_width=4, preserve_short_sequences=True),
            "short_pad": dict(ngram_width=(2, 5), pad_values="#", padding_width=1, preserve_short_sequences=True),
            "multi": dict(ngram_width=(1, 3), separator=""),
        }.items():
            g = tf.strings.ngrams(rt, **kw)
            out[name] = (g.values, g.row_splits)
        return out

    _compare("ngrams", fn, [_strs("a", "b", "c", "d", "e", "f")], jit)


@JIT
def test_base64_and_raw(jit):
    def fn(s):
        enc = tf.io.encode_base64(s)
        return {
            "enc": enc,
            "enc_pad": tf.io.encode_base64(s, pad=True),
            "round": tf.io.decode_base64(tf.io.encode_base64(s, pad=True)),
            "dec_unpadded": tf.io.decode_base64(enc),
            "raw_le": tf.io.decode_raw(tf.strings.substr(s[2:4], 0, 4), tf.int16),
            "raw_be": tf.io.decode_raw(tf.strings.substr(s[2:4], 0, 4), tf.int16, little_endian=False),
            "raw_u8": tf.io.decode_raw(s[2], tf.uint8),
            "raw_f32_be": tf.io.decode_raw(tf.strings.substr(s[2:4], 0, 4), tf.float32, little_endian=False),
            "raw_empty": tf.io.decode_raw(tf.strings.substr(s[2:4], 0, 0), tf.int32),
            "padded_be": raw.DecodePaddedRaw(input_bytes=s, fixed_length=6, out_type=tf.uint16, little_endian=False),
            "hash_fast": tf.strings.to_hash_bucket_fast(s, 7),
            "hash_strong": tf.strings.to_hash_bucket_strong(s, 1000, [3, 5]),
            "hash_legacy": tf.strings.to_hash_bucket(s, 1 << 30),
            "fingerprint": tf.fingerprint(s),
            "fingerprint_ints": tf.fingerprint(tf.strings.length(s)),
            "fingerprint_2d": tf.fingerprint(tf.reshape(tf.strings.length(s), [3, 2])),
        }

    _compare("base64_raw", fn, [_strs("", "a", "\xff\xfe\x00\x01\x80", "abcdefg", "\u00e9\u00e9\u00e9", "?>?")], jit)


@pytest.mark.parametrize("case", ["b64_bad_char", "b64_bad_len", "raw_odd", "raw_unequal"])
def test_base64_raw_raises(case):
    fn = {
        "b64_bad_char": lambda s: tf.io.decode_base64(s[:1]),
        "b64_bad_len": lambda s: tf.io.decode_base64(s[1:2]),
        "raw_odd": lambda s: tf.io.decode_raw(s[2:3], tf.int16),
        "raw_unequal": lambda s: tf.io.decode_raw(s[:2], tf.uint8),
    }[case]
    assert_raises_like_tf(fn, [_strs("ab+c", "abcde", "abc")], jit=False)


# -- images ----------------------------------------------------------------------------------------------------

_RESIZE_FLAGS = {"default": {}, "align": {"align_corners": True}, "half": {"half_pixel_centers": True}}


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_resizes(jit, dtype):
    def fn(img):
        out = {}
        for size in [(1, 1), (2, 7), (6, 3)]:
            for flag, kw in _RESIZE_FLAGS.items():
                tag = f"{size[0]}x{size[1]}_{flag}"
                out[f"bilinear_{tag}"] = raw.ResizeBilinear(images=img, size=size, **kw)
                out[f"nearest_{tag}"] = raw.ResizeNearestNeighbor(images=img, size=size, **kw)
                out[f"bicubic_{tag}"] = raw.ResizeBicubic(images=img, size=size, **kw)
            out[f"area_{size[0]}x{size[1]}"] = raw.ResizeArea(images=img, size=size)
            out[f"area_{size[0]}x{size[1]}_align"] = raw.ResizeArea(images=img, size=size, align_corners=True)
        half = tf.cast(img, tf.float16)
        out["half_bilinear"] = raw.ResizeBilinear(images=half, size=(3, 7), half_pixel_centers=True)
        out["half_bicubic"] = raw.ResizeBicubic(images=half, size=(1, 2), align_corners=True)
        out["half_area"] = raw.ResizeArea(images=half, size=(3, 2))
        return out

    img = (np.arange(2 * 4 * 5 * 2) * 7 % 23).astype(dtype).reshape(2, 4, 5, 2)
    rtol = 1e-2 if dtype == np.float16 else 1e-5
    _compare(f"resize_{np.dtype(dtype).name}", fn, [img], jit, rtol=rtol, atol=1e-4)


@pytest.mark.parametrize("op", ["ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic"])
def test_resize_both_flags_raise(op):
    fn = lambda img: getattr(raw, op)(images=img, size=[3, 3], align_corners=True, half_pixel_centers=True)  # noqa: E731
    assert_raises_like_tf(fn, [np.ones((1, 2, 2, 1), np.float32)])


@JIT
def test_crop_and_resize(jit):
    def fn(img, b):
        boxes = tf.constant([[-0.5, -0.5, 1.5, 1.5], [0.2, 0.8, 0.2, 0.1], [1.0, 1.0, 0.0, 0.0], [0.3, 0.1, 0.9, 0.6]])
        box_ind = tf.constant([0, 1, 1, 0])
        return {
            "bilinear": tf.image.crop_and_resize(img, boxes, box_ind, [3, 4], extrapolation_value=-7.0),
            "nearest": tf.image.crop_and_resize(img, boxes, box_ind, [3, 4], method="nearest", extrapolation_value=9),
            "size1": tf.image.crop_and_resize(img, boxes, box_ind, [1, 1]),
            "no_boxes": tf.image.crop_and_resize(img, tf.zeros([0, 4]), tf.zeros([0], tf.int32), [2, 2]),
            "uint8": tf.image.crop_and_resize(tf.cast(img, tf.uint8), boxes, box_ind, [2, 3]),
            "half": tf.image.crop_and_resize(tf.cast(img, tf.float16), boxes, box_ind, [2, 3]),
            "runtime_boxes": tf.image.crop_and_resize(img, b, [1, 0], [3, 4], extrapolation_value=-1.0),
            "runtime_nearest": tf.image.crop_and_resize(img, b, [1, 0], [3, 4], method="nearest"),
        }

    img = (np.arange(2 * 5 * 6 * 2) * 5 % 17).astype(np.float32).reshape(2, 5, 6, 2)
    runtime_boxes = np.array([[-0.5, -0.5, 1.5, 1.5], [0.3, 0.1, 0.9, 0.6]], np.float32)
    _compare("crop_and_resize", fn, [img, runtime_boxes], jit, rtol=1e-3, atol=1e-4)


def test_crop_and_resize_bad_box_index_raises():
    fn = lambda img: tf.image.crop_and_resize(img, [[0.0, 0.0, 1.0, 1.0]], [2], [2, 2])  # noqa: E731
    assert_raises_like_tf(fn, [np.ones((2, 3, 3, 1), np.float32)])


_BOXES = np.array(
    [
        [0, 0, 1, 1],
        [0, 0.1, 1, 1.1],
        [0, -0.1, 1, 0.9],
        [0, 10, 1, 11],
        [1, 1, 0, 0],
        [0, 10.1, 1, 11.1],
        [0, 100, 1, 101],
        [5, 5, 5, 5],
    ],
    np.float32,
)


@JIT
def test_non_max_suppression(jit):
    def fn(boxes, scores):
        out = {}
        out["v3"] = raw.NonMaxSuppressionV3(
            boxes=boxes, scores=scores, max_output_size=10, iou_threshold=0.5, score_threshold=0.25
        )
        out["v3_zero"] = raw.NonMaxSuppressionV3(
            boxes=boxes, scores=scores, max_output_size=0, iou_threshold=0.5, score_threshold=-1.0
        )
        out["v3_iou0"] = raw.NonMaxSuppressionV3(
            boxes=boxes, scores=scores, max_output_size=10, iou_threshold=0.0, score_threshold=float("-inf")
        )
        out["v4_pad"] = raw.NonMaxSuppressionV4(
            boxes=boxes,
            scores=scores,
            max_output_size=6,
            iou_threshold=0.5,
            score_threshold=0.3,
            pad_to_max_output_size=True,
        )
        out["v4_nopad"] = raw.NonMaxSuppressionV4(
            boxes=boxes,
            scores=scores,
            max_output_size=3,
            iou_threshold=0.5,
            score_threshold=0.0,
            pad_to_max_output_size=False,
        )
        out["v5"] = raw.NonMaxSuppressionV5(
            boxes=boxes,
            scores=scores,
            max_output_size=6,
            iou_threshold=0.5,
            score_threshold=0.0,
            soft_nms_sigma=0.0,
            pad_to_max_output_size=True,
        )
        out["v5_soft"] = raw.NonMaxSuppressionV5(
            boxes=boxes,
            scores=scores,
            max_output_size=6,
            iou_threshold=1.0,
            score_threshold=0.1,
            soft_nms_sigma=0.5,
            pad_to_max_output_size=True,
        )
        out["v5_soft_iou"] = raw.NonMaxSuppressionV5(
            boxes=boxes,
            scores=scores,
            max_output_size=8,
            iou_threshold=0.6,
            score_threshold=0.0,
            soft_nms_sigma=0.3,
            pad_to_max_output_size=False,
        )
        out["v5_soft_ignores_iou"] = raw.NonMaxSuppressionV5(
            boxes=boxes,
            scores=scores,
            max_output_size=8,
            iou_threshold=0.1,
            score_threshold=0.3,
            soft_nms_sigma=0.1,
            pad_to_max_output_size=True,
        )
        out["v5_soft_runtime_len"] = raw.NonMaxSuppressionV5(
            boxes=boxes,
            scores=scores + 0.05,
            max_output_size=3,
            iou_threshold=0.5,
            score_threshold=0.3,
            soft_nms_sigma=2.0,
            pad_to_max_output_size=False,
        )
        out["v5_f16"] = raw.NonMaxSuppressionV5(
            boxes=tf.cast(boxes, tf.float16),
            scores=tf.cast(scores, tf.float16),
            max_output_size=4,
            iou_threshold=0.5,
            score_threshold=0.0,
            soft_nms_sigma=0.0,
            pad_to_max_output_size=True,
        )
        return out

    ties = np.array([0.9, 0.9, 0.9, 0.5, 0.5, 0.5, 0.2, 0.9], np.float32)
    _compare("nms", fn, [_BOXES, ties], jit, rtol=1e-3)


@JIT
def test_combined_nms(jit):
    def fn(boxes, scores):
        out = {}
        for clip, pad in [(False, False), (True, True), (True, False)]:
            out[f"clip_{clip}_pad_{pad}"] = raw.CombinedNonMaxSuppression(
                boxes=boxes,
                scores=scores,
                max_output_size_per_class=2,
                max_total_size=5,
                iou_threshold=0.5,
                score_threshold=0.1,
                pad_per_class=pad,
                clip_boxes=clip,
            )
        return out

    boxes = np.stack([_BOXES[:6, None, :] * 0.2, _BOXES[2:, None, :] * 0.3 - 0.1])
    scores = np.stack([np.linspace(0.05, 0.9, 12, dtype=np.float32).reshape(6, 2), np.full((6, 2), 0.5, np.float32)])
    _compare("combined_nms", fn, [boxes, scores], jit)


@JIT
def test_colour(jit):
    def fn(rgb):
        rgb = tf.reshape(rgb, [2, 4, 3])
        hsv = tf.image.rgb_to_hsv(rgb)
        return {
            "hsv": hsv,
            "rgb": tf.image.hsv_to_rgb(hsv),
            "hsv_wrap": tf.image.hsv_to_rgb(hsv * [1.0, 1.5, 1.0] + [1.25, 0.0, 0.0]),
            "hsv_f64": tf.image.rgb_to_hsv(tf.cast(rgb, tf.float64)),
            "hsv_f16": tf.image.rgb_to_hsv(tf.cast(rgb, tf.float16)),
            "hue": tf.image.adjust_hue(rgb, 0.3),
            "hue_neg": tf.image.adjust_hue(rgb, -1.0),
            "sat": tf.image.adjust_saturation(rgb, 2.5),
            "sat_zero": tf.image.adjust_saturation(rgb, 0.0),
            "hue_u8": tf.image.adjust_hue(tf.cast(rgb * 255, tf.uint8), 0.2),
            "contrast": tf.image.adjust_contrast(rgb, 3.0),
            "draw": tf.image.draw_bounding_boxes(
                tf.reshape(rgb, [1, 2, 4, 3]),
                [[[0.0, 0.0, 1.0, 0.5], [-1, 0.3, 0.6, 2.0]]],
                colors=[[1.0, 0.0, 0.0, 1.0]],
            ),
            "draw_default": raw.DrawBoundingBoxes(
                images=tf.reshape(rgb, [1, 4, 2, 3]), boxes=[[[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5]]]
            ),
        }

    rgb = np.array(
        [
            [0.5, 0.5, 0.5],
            [0, 0, 0],
            [1, 1, 1],
            [1, 0, 0],
            [0.2, 0.9, 0.9],
            [1, 0, 1],
            [0.3, 0.2, 1e-7],
            [0.0, 1.0, 0.0],
        ],
        np.float32,
    )
    # rtol 5e-4: one float16 ulp of 0.5 (hsv_f16 under jit on an AVX512-FP16 CPU, where XLA rounds float16 steps
    # natively; it matched TF exactly on an AMD CPU)
    _compare("colour", fn, [rgb], jit, rtol=5e-4, atol=1e-6)


@JIT
def test_extract_patches(jit):
    def fn(img):
        out = {}
        for padding in ["VALID", "SAME"]:
            for rates in [(1, 1), (2, 1), (2, 3)]:
                out[f"{padding}_{rates}"] = tf.image.extract_patches(
                    img, sizes=[1, 2, 2, 1], strides=[1, 2, 1, 1], rates=[1, *rates, 1], padding=padding
                )
        out["empty"] = tf.image.extract_patches(img, [1, 6, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], "VALID")
        out["u8"] = tf.image.extract_patches(tf.cast(img, tf.uint8), [1, 3, 2, 1], [1, 3, 3, 1], [1, 1, 2, 1], "SAME")
        return out

    _compare("patches", fn, [(np.arange(2 * 5 * 6 * 2) % 251).astype(np.float32).reshape(2, 5, 6, 2)], jit)


@JIT
def test_image_conversions(jit):
    def fn(x):
        out = {}
        for src in [tf.uint8, tf.uint16, tf.int16, tf.int32, tf.float16, tf.float64]:
            v = tf.image.convert_image_dtype(x, src, saturate=True)
            # an unsaturated float out of range is Cast's gap (jaxsm/ops/gaps.py), so those stay in range
            in_range = tf.image.convert_image_dtype(tf.clip_by_value(x, 0.0, 1.0), src)
            for dst in [tf.uint8, tf.int32, tf.float32, tf.int8]:
                out[f"{src.name}_{dst.name}"] = tf.image.convert_image_dtype(in_range, dst)
                out[f"{src.name}_{dst.name}_sat"] = tf.image.convert_image_dtype(v, dst, saturate=True)
        return out

    _compare("convert_image", fn, [np.array([0.0, 0.25, 0.5, 0.999, 1.0, 1.2, -0.1], np.float32)], jit)


# -- linear algebra --------------------------------------------------------------------------------------------


@JIT
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_linalg_determinants(jit, dtype):
    def fn(m):
        sign, logdet = raw.LogMatrixDeterminant(input=m)
        return {
            "det": tf.linalg.det(m),
            "sign": sign,
            "logdet": logdet,
            "det_empty": tf.linalg.det(m[:, :0, :0]),
            "logdet_empty": raw.LogMatrixDeterminant(input=m[:, :0, :0]),
            "det_batch0": tf.linalg.det(m[:0]),
            "inv_empty": tf.linalg.inv(m[:, :0, :0]),
        }

    m = np.array([[[2, 1], [1, 3]], [[1, 2], [2, 4]], [[0, 1], [1, 0]], [[-3, 0], [0, 2]]], np.float64)
    if dtype == np.complex128:
        m = m + 1j * np.array([[[0, 1], [-1, 0]]] * 4)
    _compare(f"dets_{np.dtype(dtype).name}", fn, [m.astype(dtype)], jit, rtol=1e-10, atol=1e-12)


@JIT
def test_linalg_solves(jit):
    def fn(a, b):
        lower = tf.linalg.band_part(a, -1, 0)
        return {
            "solve": tf.linalg.solve(a, b),
            "solve_adj": tf.linalg.solve(a, b, adjoint=True),
            "tri_lower": tf.linalg.triangular_solve(lower, b, lower=True),
            "tri_lower_adj": tf.linalg.triangular_solve(lower, b, lower=True, adjoint=True),
            "tri_upper": tf.linalg.triangular_solve(a, b, lower=False),
            "tri_upper_adj": tf.linalg.triangular_solve(a, b, lower=False, adjoint=True),
            "tri_bcast": tf.linalg.triangular_solve(lower[:1], b[:, None], lower=True),
            "bmm_bcast": tf.linalg.matmul(a[:, None], b[None]),
            "bmm_zero_batch": tf.linalg.matmul(a[:0], b[:1]),
            "bmm_zero_k": tf.linalg.matmul(a[..., :0], b[:, :0]),
            "bmm_adj": raw.BatchMatMulV2(x=a, y=b, adj_x=True, adj_y=False),
            "cholesky": tf.linalg.cholesky(tf.matmul(a, a, transpose_b=True) + tf.eye(3, dtype=tf.float64)),
            "inv": tf.linalg.inv(a),
            "inv_adj": raw.MatrixInverse(input=a, adjoint=True),
            "lstsq": tf.linalg.lstsq(a, b, l2_regularizer=0.5),
        }

    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 3, 3)) + 3 * np.eye(3)
    _compare("solves", fn, [a, rng.normal(size=(2, 3, 2))], jit, rtol=1e-9, atol=1e-12)


@JIT
def test_linalg_complex_solves(jit):
    def fn(a, b):
        return {
            "solve_adj": tf.linalg.solve(a, b, adjoint=True),
            "tri_adj": tf.linalg.triangular_solve(a, b, lower=True, adjoint=True),
            "inv": tf.linalg.inv(a),
            "cholesky": tf.linalg.cholesky(tf.matmul(a, a, adjoint_b=True)),
        }

    rng = np.random.default_rng(1)
    a = (rng.normal(size=(2, 3, 3)) + 1j * rng.normal(size=(2, 3, 3)) + 3 * np.eye(3)).astype(np.complex64)
    b = (rng.normal(size=(2, 3, 1)) + 1j * rng.normal(size=(2, 3, 1))).astype(np.complex64)
    _compare("complex_solves", fn, [a, b], jit, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["inverse", "inverse_batch", "solve"])
def test_linalg_singular_raises(case):
    # The singular matrix is a constant; a run-time one gives inf/NaN (jaxsm/ops/gaps.py)
    singular = tf.constant([[1.0, 2.0], [2.0, 4.0]])
    fn = {
        "inverse": lambda m: tf.linalg.inv(singular) + m,
        "inverse_batch": lambda m: tf.linalg.inv(tf.stack([tf.eye(2), singular])) + m,
        "solve": lambda m: tf.linalg.solve(singular, m),
    }[case]
    assert_raises_like_tf(fn, [np.array([[2.0, 1.0], [1.0, 3.0]], np.float32)])


@JIT
def test_cholesky_not_positive_definite(jit):
    # TF's kernel fills the lower triangle with NaN (the upper one is uninitialized)
    _compare(
        "cholesky_not_pd",
        lambda m: tf.linalg.band_part(tf.linalg.cholesky(m), -1, 0),
        [np.array([[[4.0, 2.0], [2.0, -3.0]], [[-1.0, 0.0], [0.0, 1.0]]], np.float32)],
        jit,
    )


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_linalg_decompositions(jit, dtype):
    # Only gauge-invariant quantities: |R|, singular values, eigenvalues, reconstructions, |Q^H x|.
    def fn(m):
        out = {}
        for full in [False, True]:
            q, r = tf.linalg.qr(m, full_matrices=full)
            out[f"qr_{full}_shape"] = tf.shape(q)
            out[f"qr_{full}_recon"] = tf.matmul(q, r)
            out[f"qr_{full}_r_abs"] = tf.abs(r)
            s, u, v = tf.linalg.svd(m, full_matrices=full)
            out[f"svd_{full}_s"] = s
            out[f"svd_{full}_u_shape"] = tf.shape(u)
            out[f"svd_{full}_v_shape"] = tf.shape(v)
            out[f"svd_{full}_recon"] = tf.matmul(
                u[..., :, :2] * tf.cast(s[..., None, :], m.dtype), v[..., :2], adjoint_b=True
            )
        out["svd_only"] = tf.linalg.svd(m, compute_uv=False)
        h = tf.matmul(m, m, adjoint_a=True)
        e, vecs = tf.linalg.eigh(h)
        out["eigh_values"] = e
        out["eigh_recon"] = tf.matmul(vecs * tf.cast(e[..., None, :], m.dtype), vecs, adjoint_b=True)
        out["eigvalsh"] = tf.linalg.eigvalsh(h)
        return out

    rng = np.random.default_rng(2)
    m = rng.normal(size=(2, 3, 2))
    if dtype == np.complex64:
        m = m + 1j * rng.normal(size=(2, 3, 2))
    _compare(f"decomp_{np.dtype(dtype).name}", fn, [m.astype(dtype)], jit, rtol=1e-4, atol=1e-5)


@JIT
def test_linalg_eig(jit):
    def fn(m):
        e, v = tf.linalg.eig(m)
        order = tf.argsort(tf.math.real(e) * 10 + tf.math.imag(e), axis=-1)
        return {
            "values": tf.gather(e, order, batch_dims=1),
            "recon": tf.matmul(tf.cast(m, tf.complex128), v) - v * e[..., None, :],
            "eigvals": tf.gather(tf.linalg.eigvals(m), order, batch_dims=1),
        }

    m = np.array([[[0, -1, 0], [1, 0, 0], [0, 0, 2]], [[2, 1, 0], [0, 2, 0], [0, 0, 5]]], np.float64)
    _compare("eig", fn, [m], jit, rtol=1e-9, atol=1e-9)


# -- special functions and unusual dtypes ----------------------------------------------------------------------

_SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, -2.0, -2.5, 0.5, 3.0, 1e-30, 50.0, np.inf, -np.inf, np.nan], np.float64)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_functions(jit, dtype):
    def fn(x):
        a = x[:, None]
        b = tf.abs(x[None, :]) + 0.5
        p = tf.clip_by_value(tf.abs(x) / 60.0, 0.0, 1.0)
        return {
            "lgamma": tf.math.lgamma(x),
            "digamma": tf.math.digamma(x),
            "igamma": tf.math.igamma(a, b),
            "igammac": tf.math.igammac(a, b),
            "igamma_a_pos": tf.math.igamma(tf.abs(a), x[None, :]),
            "betainc": tf.math.betainc(tf.abs(a) + 0.5 + 0 * b, b + 0 * a, p[None, :] + 0 * a),
            "betainc_edge": tf.math.betainc(x, x, p),
            "zeta": tf.math.zeta(a, b),
            "zeta_q": tf.math.zeta(tf.abs(a) + 1.5, x[None, :]),
            "polygamma": tf.math.polygamma(tf.constant([[0.0], [1.0], [2.0], [3.5], [-1.0]], x.dtype), x[None, :]),
            "erfinv": tf.math.erfinv(tf.clip_by_value(x, -1.0, 1.0)),
            "ndtri": tf.math.ndtri(p),
            "ndtri_edges": tf.math.ndtri(tf.constant([0.0, 1.0, -0.5, 1.5, 0.5], x.dtype)),
            "erfinv_edges": tf.math.erfinv(tf.constant([-1.0, 1.0, 1.5, -0.0], x.dtype)),
            "expm1": tf.math.expm1(x * 1e-20),
            "log1p": tf.math.log1p(x * 1e-20),
            "log1p_m1": tf.math.log1p(-tf.abs(x)),
        }

    # float32 atol: TF's igammac(1e-30, x) is 1 - 1 + rounding (6e-8), jaxsm's the value (6e-31)
    rtol, atol = (1e-4, 1e-7) if dtype == np.float32 else (1e-9, 1e-30)
    _compare(f"special_{np.dtype(dtype).name}", fn, [_SPECIAL.astype(dtype)], jit, rtol=rtol, atol=atol)


_INT_OPS = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "floordiv": lambda x, y: tf.math.floordiv(x, y | tf.ones_like(y)),
    "truncatediv": lambda x, y: raw.TruncateDiv(x=x, y=y | tf.ones_like(y)),
    "floormod": lambda x, y: tf.math.floormod(x, y | tf.ones_like(y)),
    "truncatemod": lambda x, y: raw.TruncateMod(x=x, y=y | tf.ones_like(y)),
    "max": tf.maximum,
    "min": tf.minimum,
    "argmax": lambda x, y: tf.argmax(x),
    "argmin": lambda x, y: tf.argmin(x, output_type=tf.int32),
    "sum": lambda x, y: tf.reduce_sum(x),
    "prod": lambda x, y: tf.reduce_prod(x),
    "mean": lambda x, y: tf.reduce_mean(x),
    "reduce_max": lambda x, y: tf.reduce_max(x),
    "cumsum": lambda x, y: tf.cumsum(x),
    "cumsum_rev_excl": lambda x, y: tf.cumsum(x, reverse=True, exclusive=True),
    "cumprod": lambda x, y: tf.math.cumprod(y),
    "and": tf.bitwise.bitwise_and,
    "or": tf.bitwise.bitwise_or,
    "xor": tf.bitwise.bitwise_xor,
    "invert": lambda x, y: tf.bitwise.invert(x),
    "popcount": lambda x, y: raw.PopulationCount(x=x),
    "neg": lambda x, y: raw.Neg(x=x),
    "abs": lambda x, y: raw.Abs(x=x),
    "square": lambda x, y: tf.square(x),
    "sign": lambda x, y: raw.Sign(x=x),
    "to_float": lambda x, y: tf.cast(x, tf.float32),
    "to_int64": lambda x, y: tf.cast(x, tf.int64),
    "shift_left": lambda x, y: tf.bitwise.left_shift(x, tf.ones_like(x) * 3),
    "shift_right": lambda x, y: tf.bitwise.right_shift(x, tf.ones_like(x) * 3),
    "shift_by_y": lambda x, y: tf.bitwise.right_shift(x, y % 8),
    "equal": lambda x, y: tf.equal(x, y),
    "less": lambda x, y: x < y,
}


_INT_DTYPES = [np.uint16, np.uint32, np.uint64, np.int8, np.int16]


def _int_case(dtype) -> tuple[np.ndarray, np.ndarray, dict]:
    """Corner values of ``dtype`` and the ops of _INT_OPS TF has kernels for with it."""
    info = np.iinfo(dtype)
    x = np.array([info.max, info.min, 0, 1, info.max // 3, 7, info.max - 1], dtype)
    y = np.array([1, info.max, 3, info.max, 2, 0, 2], dtype)
    supported = {}
    for name, f in _INT_OPS.items():
        try:
            f(tf.constant(x), tf.constant(y))
        except (TypeError, ValueError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError):
            continue
        supported[name] = f
    return x, y, supported


@JIT
def test_unusual_integers(jit):
    cases = [_int_case(dtype) for dtype in _INT_DTYPES]
    assert all(len(ops) > 10 for _, _, ops in cases), [sorted(ops) for _, _, ops in cases]

    def fn(*xy):
        return {
            np.dtype(dtype).name: {k: f(xy[2 * i], xy[2 * i + 1]) for k, f in cases[i][2].items()}
            for i, dtype in enumerate(_INT_DTYPES)
        }

    _compare("ints", fn, [v for x, y, _ in cases for v in (x, y)], jit)


@JIT
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex(jit, dtype):
    # Branch cuts and signed zeros; huge and infinite parts only where no formula overflows (jaxsm/ops/gaps.py).
    # 12 values: TF's vectorized loop takes them all (its scalar tail loop ignores the sign of a zero imag)
    def fn(z, big):
        real = tf.math.real(z)
        return {
            "angle": tf.math.angle(z),
            "abs": tf.abs(z),
            "conj": tf.math.conj(z),
            "real_of_real": tf.math.real(real),
            "imag_of_real": tf.math.imag(real),
            "angle_of_real": tf.math.angle(real),
            "conj_of_real": tf.math.conj(real),
            "sqrt": tf.sqrt(z),
            "log": tf.math.log(z),
            "pow": tf.pow(z, tf.constant(0.5, z.dtype)),
            "pow_int": tf.pow(z, tf.constant(2, z.dtype)),
            "exp": tf.exp(z),
            "rsqrt": tf.math.rsqrt(z),
            "sign": tf.sign(z),
            "reciprocal": tf.math.reciprocal(z),
            "big_abs": tf.abs(big),
            "big_angle": tf.math.angle(big),
            "big_conj": tf.math.conj(big),
            "big_real_imag": (tf.math.real(big), tf.math.imag(big)),
        }

    huge = np.finfo(np.float32 if dtype == np.complex64 else np.float64).max / 2
    z = np.array(
        [
            -1 + 0j,
            complex(-1, -0.0),
            complex(-4, 1e-30),
            complex(-4, -1e-30),
            1j,
            -1j,
            complex(-0.0, -0.0),
            complex(0.0, -0.0),
            2 - 3j,
            complex(-2.5, -0.0),
            complex(np.nan, 0),
            3 + 4j,
        ],
        dtype,
    )
    big = np.array(
        [
            complex(huge, huge),
            complex(np.inf, 1),
            complex(-np.inf, -np.inf),
            complex(np.nan, np.inf),
            complex(1, -np.inf),
        ],
        dtype,
    )
    rtol = 1e-5 if dtype == np.complex64 else 1e-12
    _compare(f"complex_{np.dtype(dtype).name}", fn, [z, big], jit, rtol=rtol, atol=1e-30)


@JIT
@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_low_precision_reductions(jit, dtype):
    # Short sums only: long ones accumulate in the 16-bit type in TF, in float32 in XLA (jaxsm/ops/gaps.py)
    def fn(x):
        v = tf.cast(x, dtype)
        return {
            "sum_short": tf.reduce_sum(v[:, :8], axis=1),
            "mean": tf.reduce_mean(v[::2], axis=1),
            "prod": tf.reduce_prod(v[:, :4], axis=1),
            "max": tf.reduce_max(v, axis=1),
            "min_all": tf.reduce_min(v),
            "logsumexp": tf.reduce_logsumexp(v, axis=1),
            "softmax": tf.nn.softmax(v),
            "log_softmax": tf.nn.log_softmax(v),
            "softmax_axis0": tf.nn.softmax(v, axis=0),
            "euclidean_norm": tf.norm(v, axis=1),
        }

    x = np.linspace(-8.0, 12.0, 3 * 40, dtype=np.float32).reshape(3, 40)
    x[1, :5] = [60000.0, -60000.0, 0.5, 1e-3, 7.0]
    _compare(f"low_precision_{dtype.name}", fn, [x], jit, rtol=1e-2)  # 1 ulp of bfloat16
