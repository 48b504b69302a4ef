"""Edge cases of already-lowered ops against TensorFlow, round 7: string ops (positions, splitting, regexes,
number parsing and formatting, Unicode errors, base64, n-grams), ragged ops, sparse ops, lookup tables and parsing
ops (Example protos, CSV, raw bytes, JSON, compressed).

Each case is one tf.function returning a dict of outputs, saved once and compared with jaxsm under ``jax.jit``
and op by op (functions fed strings run op by op under either). Where TF raises InvalidArgumentError for a
constant input, jaxsm must raise a :class:`jaxsm.errors.JaxsmError`.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.tfcompare import assert_raises_like_tf  # noqa: E402
from tests.tfcompare import compare_case as _compare  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")]
JIT = pytest.mark.parametrize("jit", [True, False])
raw = tf.raw_ops


def _strs(*values):
    out = np.empty(len(values), dtype=object)
    out[:] = [v.encode() if isinstance(v, str) else v for v in values]
    return out


def _parts(out: dict) -> dict:
    """Ragged and sparse outputs as their component tensors, so both sides compare tensor by tensor."""
    flat = {}
    for key, value in out.items():
        if isinstance(value, tf.RaggedTensor):
            flat[key] = {"values": value.flat_values, "splits": value.nested_row_splits}
        elif isinstance(value, tf.SparseTensor):
            flat[key] = {"indices": value.indices, "values": value.values, "shape": value.dense_shape}
        else:
            flat[key] = value
    return flat


# -- strings -------------------------------------------------------------------------------------------------

TEXT = _strs("h\u00e9llo w\u00f6rld", "", "a,b,,c,", ",x  y ", "\u00c9T\u00c9 \U0001f600!")


def _substr(s):
    return {
        "neg_pos": tf.strings.substr(s[:1], -3, 2),
        "pos_eq_len": tf.strings.substr(s[2:3], 7, 4),
        "neg_pos_len0": tf.strings.substr(s[:1], -1, 0),
        "long_len": tf.strings.substr(s[:1], 2, 100),
        "neg_len": tf.strings.substr(s[2:3], 1, -1),
        "chars": tf.strings.substr(s[4:5], 1, 3, unit="UTF8_CHAR"),
        "chars_neg": tf.strings.substr(s[4:5], -3, 2, unit="UTF8_CHAR"),
        "chars_end": tf.strings.substr(s[4:5], 5, 2, unit="UTF8_CHAR"),
        "bytes_mid_char": tf.strings.substr(s[4:5], 1, 2),
        "bcast_pos": raw.Substr(input=s[:1], pos=[0, 1, 2], len=[2, 2, 9]),
        "bcast_both": raw.Substr(input=tf.reshape(s[:2], [2, 1]), pos=[[0, 0, 0]], len=[[0, 1, 2]]),
        "bcast_input": raw.Substr(input=tf.reshape(s[2:4], [2, 1]), pos=[[1], [0]], len=[[2], [3]]),
        "elementwise": raw.Substr(input=s[2:4], pos=[1, -2], len=[2, 5]),
    }


def _split(s):
    v1_empty = tf.compat.v1.string_split(s, delimiter="")
    v1_skip = tf.compat.v1.string_split(s, delimiter=",", skip_empty=False)
    v1_multi = tf.compat.v1.string_split(s, delimiter=", ")
    return {
        "v1_empty_delim": v1_empty,
        "v1_keep_empty": v1_skip,
        "v1_multi": v1_multi,
        "v2_sep": tf.strings.split(s, sep=","),
        "v2_sep_max1": tf.strings.split(s, sep=",", maxsplit=1),
        "v2_sep_max0": tf.strings.split(s, sep=",", maxsplit=0),
        "v2_ws_max1": tf.strings.split(s, maxsplit=1),
        "v2_multichar": tf.strings.split(s, sep="  "),
        "v2_empty_input": tf.strings.split(s[1:1], sep=","),
        "v2_2d": tf.strings.split(tf.reshape(s[:4], [2, 2]), sep=","),
    }


def _regex(s):
    return {
        "first": tf.strings.regex_replace(s, "[aeiou,]", "#", replace_global=False),
        "groups": tf.strings.regex_replace(s, r"(\w)(\w*)", r"<\2\1>"),
        "empty_match": tf.strings.regex_replace(s, "x*", "-"),
        "empty_match_first": tf.strings.regex_replace(s, "x*", "-", replace_global=False),
        "anchor": tf.strings.regex_replace(s, "^", ">"),
        "dyn": raw.RegexReplace(input=s, pattern=tf.constant(",+"), rewrite=tf.constant(";"), replace_global=True),
        "dyn_first": raw.RegexReplace(input=s, pattern=",", rewrite="\\0\\0", replace_global=False),
        "full": tf.strings.regex_full_match(s, r"[a-z,]*"),
        "full_partial": tf.strings.regex_full_match(s, "b"),
        "full_empty": tf.strings.regex_full_match(s, ""),
        "full_dyn": raw.RegexFullMatch(input=s, pattern=tf.constant(".*\\s.*")),
        "full_utf8": tf.strings.regex_full_match(s, r"\S+ \S\S"),
    }


def _to_number(s):
    return {
        "f32": tf.strings.to_number(s[:6]),
        "f64": tf.strings.to_number(s[:6], tf.float64),
        "i32": tf.strings.to_number(s[6:10], tf.int32),
        "i64": tf.strings.to_number(s[6:12], tf.int64),
        "f32_over": tf.strings.to_number(s[12:], tf.float32),
    }


NUMBERS = _strs(
    "Infinity", "-INF", "nan", "  +1.25e-2  ", "0x10", "1e-50",
    " 12 ", "-2147483648", "+0", "007",
    "9223372036854775807", "-9223372036854775808",
    "1e39", "-1e40",
)  # fmt: skip


def _as_string(x, i, b):
    c = tf.complex(x, -x)
    return {
        "prec0": tf.strings.as_string(x, precision=0),
        "prec_width": tf.strings.as_string(x, precision=2, width=9),
        "prec_width_fill0": tf.strings.as_string(x, precision=1, width=8, fill="0"),
        "sci0": tf.strings.as_string(x, scientific=True),
        "shortest": tf.strings.as_string(x * 1e10, shortest=True),
        "shortest_small": tf.strings.as_string(x * 1e-10, shortest=True),
        "f64": tf.strings.as_string(tf.cast(x, tf.float64) / 3),
        "f16": tf.strings.as_string(tf.cast(x, tf.float16)),
        "width_neg_int": tf.strings.as_string(i, width=6, fill="0"),
        "int8": tf.strings.as_string(tf.cast(i, tf.int8)),
        "uint8": tf.strings.as_string(tf.cast(i, tf.uint8)),
        "uint64": tf.strings.as_string(tf.cast(i, tf.uint64)),
        "bool_width": tf.strings.as_string(b, width=7),
        "complex": tf.strings.as_string(c),
        "complex_prec": tf.strings.as_string(c, precision=1),
        "width_string_fill": tf.strings.as_string(x, width=12, fill=" "),
        "nonfinite": tf.strings.as_string(tf.constant([np.inf, -np.inf, np.nan], tf.float32)),
        "nonfinite_w": tf.strings.as_string(tf.constant([np.inf, np.nan], tf.float32), width=6, fill="0"),
    }


def _format_and_join(s, x):
    g = tf.reshape(s[:4], [2, 2])
    return {
        "format": tf.strings.format("a={} b={}!", (x, s[:2])),
        "format_scalar": tf.strings.format("{}", x[0]),
        "format_summ": tf.strings.format("v: {}", tf.range(20), summarize=2),
        "format_placeholder": tf.strings.format("[[{}]]", tf.constant([["a", "b"]]), placeholder="[[{}]]"),
        "rj_empty_axes": raw.ReduceJoin(inputs=g, reduction_indices=tf.zeros([0], tf.int32), separator="-"),
        "rj_keep": tf.strings.reduce_join(g, axis=0, keepdims=True, separator="::"),
        "rj_neg": tf.strings.reduce_join(g, axis=-1, separator=""),
        "rj_empty_dim": tf.strings.reduce_join(s[:0], axis=0, separator="x"),
        "rj_empty_dim_keep": tf.strings.reduce_join(tf.reshape(s[:0], [0, 3]), axis=0, keepdims=True),
        "len_chars": tf.strings.length(s, unit="UTF8_CHAR"),
        "lower": tf.strings.lower(s, encoding="utf-8"),
        "upper": tf.strings.upper(s, encoding="utf-8"),
        "lower_ascii": tf.strings.lower(s),
        "upper_ascii": tf.strings.upper(s),
    }


def _unicode(b):
    out = {}
    for errors in ["strict", "replace", "ignore"]:
        if errors != "strict":
            out[f"dec_{errors}"] = tf.strings.unicode_decode(b, "UTF-8", errors=errors)
            out[f"dec_{errors}_ctl"] = tf.strings.unicode_decode(
                b, "UTF-8", errors=errors, replace_control_characters=True
            )
            cp, off = tf.strings.unicode_decode_with_offsets(b, "UTF-8", errors=errors, replacement_char=0x41)
            out[f"offs_{errors}_cp"], out[f"offs_{errors}"] = cp, off
            out[f"tr_{errors}"] = tf.strings.unicode_transcode(b, "UTF-8", "UTF-16-BE", errors=errors)
            out[f"tr8_{errors}"] = tf.strings.unicode_transcode(b, "UTF-8", "UTF-8", errors=errors)
            out[f"tr8_{errors}_ctl"] = tf.strings.unicode_transcode(
                b, "UTF-8", "UTF-8", errors=errors, replace_control_characters=True, replacement_char=0x3F
            )
        ragged = tf.ragged.constant([[0x41, -5, 0x10FFFF], [0x11FFFF, 0xDFFF], []], tf.int32)
        if errors != "strict":
            out[f"enc_{errors}"] = tf.strings.unicode_encode(ragged, "UTF-8", errors=errors)
            out[f"enc16_{errors}"] = tf.strings.unicode_encode(ragged, "UTF-16-BE", errors=errors)
            out[f"enc32_{errors}"] = tf.strings.unicode_encode(ragged, "UTF-32-BE", errors=errors)
    return out


BAD_UTF8 = _strs(b"ok\xffno", b"\xe2\x82", b"a\x01\x7f\xc2\x85z", b"\xf0\x9f\x98\x80", b"\xed\xa0\x80", b"")


def _base64(s):
    e = tf.io.encode_base64(s)
    return {
        "enc": e,
        "enc_pad": tf.io.encode_base64(s, pad=True),
        "dec": tf.io.decode_base64(e),
        "dec_pad": tf.io.decode_base64(tf.io.encode_base64(s, pad=True)),
        "dec_unpadded": tf.io.decode_base64(tf.constant(["YQ", "YWI", "_-8", ""])),
    }


def _ngrams(s):
    r = tf.strings.split(s)
    return {
        "w1_pad": tf.strings.ngrams(r, 1, pad_values="#", padding_width=1),
        "w2_pad0": raw.StringNGrams(
            data=r.values,
            data_splits=r.row_splits,
            separator="+",
            ngram_widths=[2],
            left_pad="<",
            right_pad=">",
            pad_width=0,
            preserve_short_sequences=False,
        ),
        "w3_pad_neg": raw.StringNGrams(
            data=r.values,
            data_splits=r.row_splits,
            separator="+",
            ngram_widths=[3, 4],
            left_pad="<",
            right_pad=">",
            pad_width=-1,
            preserve_short_sequences=False,
        ),
        "w3_pad2": tf.strings.ngrams(r, 3, pad_values=("<", ">"), padding_width=2),
        "w2_3_sep": tf.strings.ngrams(r, (2, 3), separator="", pad_values="$"),
        "preserve_nopad": tf.strings.ngrams(r, 5, preserve_short_sequences=True),
        "preserve_multi": tf.strings.ngrams(r, (3, 5), preserve_short_sequences=True),
        "empty_rows": tf.strings.ngrams(tf.strings.split(s[1:2]), 2, pad_values="#", padding_width=1),
        "pad_wider": tf.strings.ngrams(r, 2, pad_values="#", padding_width=3),
        "dense_2d": tf.strings.ngrams(tf.reshape(s[:4], [2, 2]), 2),
    }


def _re2_syntax(s):
    """RE2's syntax and meanings where Python's re differs: POSIX classes, Unicode categories, \\z, \\Q..\\E,
    \\x{...}, ASCII \\s without \\v, Unicode case folding, $ only at the very end, RE2's rewrite rules."""
    nl = tf.strings.join([s, "\n"])
    return {
        "posix": tf.strings.regex_replace(s, "[[:alpha:]]", "#"),
        "posix_neg": tf.strings.regex_replace(s, "[[:^digit:][:space:]]", "#"),
        "posix_upper": tf.strings.regex_replace(s, "[[:upper:]]+", "U"),
        "posix_full": tf.strings.regex_full_match(s, "[[:print:]]*"),
        "cat_letter": tf.strings.regex_replace(s, r"\pL", "#"),
        "cat_not_letter": tf.strings.regex_replace(s, r"\PL", "#"),
        "cat_braces": tf.strings.regex_replace(s, r"[\p{Lu}\p{Nd}]", "#"),
        "cat_negated_class": tf.strings.regex_replace(s, r"[^\p{L}\p{N}\s]+", "~"),
        "keras_punctuation": tf.strings.regex_replace(s, r"[!\"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~']", ""),
        "end_z": tf.strings.regex_replace(s, r"x\z", "#"),
        "quoted": tf.strings.regex_replace(s, r"\Q.E\E", "#"),
        "hex_braces": tf.strings.regex_replace(s, r"\x{3a3}", "#"),
        "space_not_vt": tf.strings.regex_replace(s, r"\s", "_"),
        "not_space": tf.strings.regex_replace(s, r"\S+", "_"),
        "fold_unicode": tf.strings.regex_replace(s, "(?i)\u00e9", "#"),
        "word_ascii": tf.strings.regex_replace(s, r"\w+", "w"),
        "dollar_before_newline": tf.strings.regex_replace(nl, "y$", "E"),
        "dollar_multiline": tf.strings.regex_replace(nl, "(?m)x$", "E"),
        "rewrite_missing_group": tf.strings.regex_replace(s, "(a)", "\\2"),
        "rewrite_missing_group_first": tf.strings.regex_replace(s, "(a)", "<\\2>", replace_global=False),
        "rewrite_bad_escape_first": tf.strings.regex_replace(s, "(a)", "<\\n>", replace_global=False),
        "rewrite_backslash": tf.strings.regex_replace(s, "(a)", "\\\\\\1"),
    }


def _re2_invalid_bytes(s):
    """Invalid UTF-8 bytes match no character class in RE2: not ".", not a negated class, not \\W."""
    return {
        "dot": tf.strings.regex_replace(s, ".", "<\\0>"),
        "negated": tf.strings.regex_replace(s, "[^a]+", "#"),
        "not_word": tf.strings.regex_replace(s, r"\W", "_"),
        "not_letter": tf.strings.regex_replace(s, r"\PL", "_"),
        "full_any": tf.strings.regex_full_match(s, ".*"),
        "full_negated": tf.strings.regex_full_match(s, "[^x]*"),
        "empty_matches": tf.strings.regex_replace(s, "b*", "-"),
    }


def _to_number_rounding(s):
    """safe_strtof rounds the decimal string to float32 directly (no double rounding through float64), and
    reads nan(chars)."""
    return {"f32": tf.strings.to_number(s), "f64": tf.strings.to_number(s, tf.float64)}


STRING_CASES = {
    "re2_invalid_bytes": (
        _re2_invalid_bytes,
        [_strs(b"a\xffb\xc3\xa9\x00z", "\u00e9\u00e9", b"\xe2\x82", b"x\xf0\x9f", b"")],
    ),
    "to_number_rounding": (
        _to_number_rounding,
        [
            _strs(
                "1.00000005960464477539062500000001",
                "3.4028235677973366e38",
                "7.0064923216240862e-46",
                "nan(123)",
                "-NaN(x_1)",
                "0x1.000001p0",
            )
        ],
    ),
    "re2_syntax": (_re2_syntax, [_strs("ab12 \u00c9t\u00e9\x0b\u03a3x", "Q.E x\ny", "\u00e9\u00c9")]),
    "substr": (_substr, [TEXT]),
    "split": (_split, [TEXT]),
    "regex": (_regex, [TEXT]),
    "to_number": (_to_number, [NUMBERS]),
    "as_string": (
        _as_string,
        [
            np.array([1.5, -0.000123, 98765.4321, 0.0], np.float32),
            np.array([-7, 0, 255, 123456], np.int32),
            np.array([True, False, True, False]),
        ],
    ),
    "format_join": (_format_and_join, [TEXT, np.array([1.5, -2.0], np.float32)]),
    "unicode": (_unicode, [BAD_UTF8]),
    "base64": (_base64, [_strs("", "a", "ab", "abc", "\xff\xfe?>", "hello world!")]),
    "ngrams": (_ngrams, [_strs("a b c d", "", "x", "p q")]),
}


@JIT
@pytest.mark.parametrize("case", sorted(STRING_CASES))
def test_string_edges(case, jit):
    fn, inputs = STRING_CASES[case]
    _compare(f"str_{case}", lambda *a: _parts(fn(*a)), inputs, jit)


STRING_RAISES = {
    "substr_pos_past_len": (lambda s: tf.strings.substr(s, 6, 1), [_strs("abc")]),
    "substr_neg_past_len": (lambda s: tf.strings.substr(s, -4, 1), [_strs("abc")]),
    "substr_chars_past": (lambda s: tf.strings.substr(s, 3, 1, unit="UTF8_CHAR"), [_strs("\u00e9\u00e9")]),
    "to_int32_overflow": (lambda s: tf.strings.to_number(s, tf.int32), [_strs("2147483648")]),
    "to_int64_overflow": (lambda s: tf.strings.to_number(s, tf.int64), [_strs("9223372036854775808")]),
    "to_int_hex": (lambda s: tf.strings.to_number(s, tf.int32), [_strs("0x10")]),
    "to_int_empty": (lambda s: tf.strings.to_number(s, tf.int64), [_strs("")]),
    "to_float_empty": (lambda s: tf.strings.to_number(s), [_strs("")]),
    "to_float_inner_space": (lambda s: tf.strings.to_number(s), [_strs("1 2")]),
    "decode_strict": (lambda s: tf.strings.unicode_decode(s, "UTF-8", errors="strict"), [_strs(b"a\xff")]),
    "transcode_strict": (
        lambda s: tf.strings.unicode_transcode(s, "UTF-8", "UTF-16-BE", errors="strict"),
        [_strs(b"\xe2\x82")],
    ),
    "encode_strict": (
        lambda x: tf.strings.unicode_encode(x, "UTF-8", errors="strict"),
        [np.array([0x41, 0xD800], np.int32)],
    ),
    "to_float_nbsp": (lambda s: tf.strings.to_number(s), [_strs("\u00a01")]),
    "to_int_nbsp": (lambda s: tf.strings.to_number(s, tf.int32), [_strs("1\u2003")]),
    "to_float_bad_nan": (lambda s: tf.strings.to_number(s, tf.float64), [_strs("nan(-1)")]),
    "re2_lookahead": (lambda s: tf.strings.regex_replace(s, "a(?=b)", "#"), [_strs("ab")]),
    "re2_backreference": (lambda s: tf.strings.regex_full_match(s, r"(a)\1"), [_strs("aa")]),
    "re2_end_Z": (lambda s: tf.strings.regex_replace(s, r"b\Z", "#"), [_strs("ab")]),
    "re2_angle_name": (lambda s: tf.strings.regex_replace(s, "(?<n>a)", "#"), [_strs("ab")]),
    "re2_big_repeat": (lambda s: tf.strings.regex_full_match(s, "a{1001}"), [_strs("ab")]),
    "re2_bad_posix": (lambda s: tf.strings.regex_full_match(s, "[[:letter:]]"), [_strs("ab")]),
    "base64_bad_char": (lambda s: tf.io.decode_base64(s), [_strs("ab$d")]),
    "base64_bad_len": (lambda s: tf.io.decode_base64(s), [_strs("a")]),
    "as_string_sci_shortest": (
        lambda x: tf.strings.as_string(x, scientific=True, shortest=True),
        [np.ones(1, np.float32)],
    ),
}


@JIT
@pytest.mark.parametrize("case", sorted(STRING_RAISES))
def test_string_raises(case, jit):
    fn, inputs = STRING_RAISES[case]
    assert_raises_like_tf(fn, inputs, jit=jit)


# -- ragged --------------------------------------------------------------------------------------------------


def _ragged(values, splits, ints):
    rt = tf.RaggedTensor.from_row_splits(values, splits, validate=False)  # rows 2, 0, 3, 0
    ri = tf.RaggedTensor.from_row_splits(ints, splits, validate=False)
    uniform = tf.RaggedTensor.from_uniform_row_length(values[:4], 2)
    rowids = tf.cast(rt.value_rowids(), tf.int64)
    out = {
        "max_empty_rows_f": tf.reduce_max(rt, axis=1),
        "min_empty_rows_i": tf.reduce_min(ri, axis=1),
        "max_empty_rows_u8": tf.reduce_max(tf.cast(ri, tf.uint8), axis=1),
        "max_empty_rows_i64": tf.reduce_max(tf.cast(ri, tf.int64), axis=1),
        "any_all": tf.stack([tf.reduce_any(ri > 1, axis=1), tf.reduce_all(ri > 1, axis=1)]),
        "prod_empty": tf.reduce_prod(rt, axis=1),
        "max_axis0": tf.reduce_max(rt, axis=0),
        "to_tensor_uniform": uniform.to_tensor(default_value=-1.0, shape=[3, 3]),
        "to_tensor_empty_rows": rt.to_tensor(default_value=5.0, shape=[None, 1]),
        "to_tensor_zero_cols": rt.to_tensor(shape=[4, 0]),
        "to_tensor_zero_rows": rt.to_tensor(shape=[0, 2]),
        "rowids_to_tensor": raw.RaggedTensorToTensor(
            shape=[5, 4],
            values=values,
            default_value=-9.0,
            row_partition_tensors=[tf.constant(4, tf.int64), rowids],
            row_partition_types=["FIRST_DIM_SIZE", "VALUE_ROWIDS"],
        ),
        "rowids_to_tensor_trunc": raw.RaggedTensorToTensor(
            shape=[2, 1],
            values=values,
            default_value=-9.0,
            row_partition_tensors=[tf.constant(4, tf.int64), rowids],
            row_partition_types=["FIRST_DIM_SIZE", "VALUE_ROWIDS"],
        ),
        "gather_neg_via_tf": tf.gather(rt, [3, 2, 2]),
        "mask_all_false": tf.ragged.boolean_mask(rt, tf.zeros_like(rt, tf.bool)),
        "mask_dense_2d": tf.ragged.boolean_mask(tf.reshape(values, [-1, 1]), tf.reshape(values > 1, [-1, 1])),
        "segment_ids_to_splits": tf.ragged.segment_ids_to_row_splits(tf.constant([0, 0, 2, 2, 2, 5]), num_segments=7),
        "segment_ids_to_splits_empty": tf.ragged.segment_ids_to_row_splits(tf.zeros([0], tf.int64)),
        "range_zero_rows": tf.ragged.range(tf.constant([3, -2]), tf.constant([3, -2])),
        "range_f64": tf.ragged.range(tf.constant([0.0, 1.0], tf.float64), 2.0, tf.constant([0.75, 0.3], tf.float64)),
        "range_i64_neg": tf.ragged.range(tf.constant([2**40], tf.int64), -5, tf.constant([-(2**39)], tf.int64)),
        "cross_strings": tf.ragged.cross(
            [tf.strings.as_string(ri), tf.constant([["x"], ["y"], ["z"], ["w"]]), tf.cast(ri * 10, tf.int64)]
        ),
        "cross_hashed_dense_only": tf.ragged.cross_hashed(
            [tf.constant([[1, 2], [3, 4], [5, 6], [7, 8]], tf.int64), tf.constant([["a"], ["b"], ["c"], ["d"]])],
            num_buckets=7,
        ),
        "to_sparse_uniform": uniform.to_sparse(),
        "row_limits": rt.row_limits(),
        "nrows": rt.nrows(out_type=tf.int32),
    }
    return _parts(out)


@JIT
@pytest.mark.parametrize("splits_dtype", [np.int32, np.int64])
def test_ragged_edges(jit, splits_dtype):
    values = np.array([1.5, -2.0, 3.0, 0.5, 4.0], np.float32)
    splits = np.array([0, 2, 2, 5, 5], splits_dtype)
    _compare(
        f"ragged_{np.dtype(splits_dtype).name}", _ragged, [values, splits, np.array([3, 1, 4, 1, 5], np.int32)], jit
    )


RAGGED_RAISES = {
    "gather_negative": (
        lambda v, s: (
            raw.RaggedGather(
                params_nested_splits=[s], params_dense_values=v, indices=[-1, 0], OUTPUT_RAGGED_RANK=1
            ).output_dense_values
        ),
        [np.arange(3, dtype=np.float32), np.array([0, 1, 3], np.int64)],
    ),
    "range_zero_delta_float": (
        lambda v, s: raw.RaggedRange(starts=v[:1], limits=v[1:2], deltas=[0.0]).rt_dense_values,
        [np.arange(3, dtype=np.float32), np.array([0, 1, 3], np.int64)],
    ),
    "to_tensor_bad_rowids": (
        lambda v, s: raw.RaggedTensorToTensor(
            shape=[3, 3],
            values=v,
            default_value=0.0,
            row_partition_tensors=[tf.constant(2, tf.int64), s],
            row_partition_types=["FIRST_DIM_SIZE", "VALUE_ROWIDS"],
        ),
        [np.arange(3, dtype=np.float32), np.array([0, 2, 1], np.int64)],
    ),
    "to_tensor_negative_rowids": (
        lambda v, s: raw.RaggedTensorToTensor(
            shape=[3, 3],
            values=v,
            default_value=0.0,
            row_partition_tensors=[tf.constant(3, tf.int64), s],
            row_partition_types=["FIRST_DIM_SIZE", "VALUE_ROWIDS"],
        ),
        [np.arange(3, dtype=np.float32), np.array([-1, 0, 1], np.int64)],
    ),
}


@JIT
@pytest.mark.parametrize("case", sorted(RAGGED_RAISES))
def test_ragged_raises(case, jit):
    fn, inputs = RAGGED_RAISES[case]
    assert_raises_like_tf(fn, inputs, jit=jit)


# -- sparse --------------------------------------------------------------------------------------------------


def _sparse(v, dense):
    idx = tf.constant([[2, 1], [0, 3], [2, 1], [0, 0]], tf.int64)  # unsorted, one duplicate
    sp = tf.SparseTensor(idx, v, [3, 4])
    ordered = tf.sparse.reorder(sp)
    empty = tf.SparseTensor(tf.zeros([0, 2], tf.int64), v[:0], [2, 3])
    ids = tf.constant([0, 0, 2, 2])
    rows = tf.constant([3, 0, 1, 3])
    m = tf.reshape(dense, [4, 2])
    out = {
        "to_dense_dup_unvalidated": raw.SparseToDense(
            sparse_indices=idx, output_shape=[3, 4], sparse_values=v, default_value=-1.0, validate_indices=False
        ),
        "to_dense_scalar_value": tf.sparse.to_dense(tf.SparseTensor([[1], [3]], [7, 7], [5]), default_value=2),
        "to_dense_1d_indices": raw.SparseToDense(
            sparse_indices=tf.constant([4, 1], tf.int64),
            output_shape=[6],
            sparse_values=v[:2],
            default_value=0.0,
            validate_indices=False,
        ),
        "reduce_sum_empty": tf.sparse.reduce_sum(empty, axis=1),
        "reduce_max_empty": tf.sparse.reduce_max(empty, axis=1),
        "reduce_max_empty_all": tf.sparse.reduce_max(empty),
        "reduce_max_keep": tf.sparse.reduce_max(ordered, axis=0, keepdims=True),
        "reduce_sum_sparse_out": tf.sparse.reduce_sum(ordered, axis=-1, output_is_sparse=True),
        "reduce_max_sparse_out": tf.sparse.reduce_max(ordered, axis=1, output_is_sparse=True),
        "seg_sum_empty_tail": tf.sparse.segment_sum(m, rows, ids, num_segments=5),
        "seg_mean_empty": tf.sparse.segment_mean(m, rows, ids, num_segments=4),
        "seg_sqrtn_empty": tf.sparse.segment_sqrt_n(m, rows, ids, num_segments=4),
        "seg_sum_gap": tf.sparse.segment_sum(m, rows, ids),
        "seg_mean_i64": tf.sparse.segment_mean(m, tf.cast(rows, tf.int64), tf.cast(ids, tf.int64)),
        "seg_sum_no_rows": tf.sparse.segment_sum(m, rows[:0], ids[:0], num_segments=2),
        "fill_empty": tf.sparse.fill_empty_rows(ordered, -5.0)[0],
        "fill_empty_indicator": tf.sparse.fill_empty_rows(ordered, -5.0)[1],
        "fill_empty_all": tf.sparse.fill_empty_rows(empty, 9.0)[0],
        "reshape_neg": tf.sparse.reshape(ordered, [-1, 2]),
        "reshape_empty": tf.sparse.reshape(empty, [3, -1]),
        "reshape_zero_dim": tf.sparse.reshape(tf.SparseTensor(tf.zeros([0, 2], tf.int64), v[:0], [0, 3]), [-1, 5]),
        "reshape_3d": tf.sparse.reshape(ordered, [2, -1, 3]),
        "slice_mid": tf.sparse.slice(ordered, [0, 1], [3, 2]),
        "slice_past_end": tf.sparse.slice(ordered, [1, 2], [5, 5]),
        "slice_empty": tf.sparse.slice(ordered, [1, 0], [1, 4]),
        "concat_0": tf.sparse.concat(0, [ordered, tf.SparseTensor([[1, 2]], [8.0], [2, 4])]),
        "concat_1_expand": tf.sparse.concat(
            1, [ordered, tf.SparseTensor([[0, 0]], [8.0], [1, 2])], expand_nonconcat_dims=True
        ),
        "concat_neg_axis": tf.sparse.concat(-1, [ordered, ordered]),
        "matmul": tf.sparse.sparse_dense_matmul(ordered, tf.reshape(tf.concat([dense, dense], 0), [4, 4])),
        "matmul_adj_a": tf.sparse.sparse_dense_matmul(ordered, tf.reshape(dense[:6], [3, 2]), adjoint_a=True),
        "matmul_adj_b": tf.sparse.sparse_dense_matmul(ordered, tf.reshape(dense[:8], [2, 4]), adjoint_b=True),
        "matmul_adj_both": tf.sparse.sparse_dense_matmul(
            ordered, tf.reshape(dense[:6], [2, 3]), adjoint_a=True, adjoint_b=True
        ),
        "matmul_dup": tf.sparse.sparse_dense_matmul(sp, tf.reshape(dense, [4, 2])),
        "softmax": tf.sparse.softmax(tf.SparseTensor([[0, 0], [0, 2], [2, 1]], v[:3], [3, 3])),
        "softmax_3d": tf.sparse.softmax(tf.SparseTensor([[0, 0, 0], [0, 0, 1], [1, 0, 0]], v[:3], [2, 1, 2])),
        "reorder_dup": tf.sparse.reorder(sp),
        "reorder_3d": tf.sparse.reorder(tf.SparseTensor([[1, 0, 0], [0, 1, 1], [0, 1, 0]], v[:3], [2, 2, 2])),
    }
    return _parts(out)


@JIT
def test_sparse_edges(jit):
    v = np.array([1.5, -2.0, 3.0, 0.25], np.float32)
    dense = np.arange(8, dtype=np.float32) - 2.5
    _compare("sparse", _sparse, [v, dense], jit)


def _sp_values():
    return [np.array([1.0, 2.0, 3.0], np.float32)]


SPARSE_RAISES = {
    "to_dense_dup_validated": lambda v: tf.sparse.to_dense(tf.SparseTensor([[1], [1]], v[:2], [3])),
    "to_dense_unsorted_validated": lambda v: tf.sparse.to_dense(tf.SparseTensor([[2], [1]], v[:2], [3])),
    "to_dense_out_of_range": lambda v: raw.SparseToDense(
        sparse_indices=[[5]], output_shape=[3], sparse_values=v[:1], default_value=0.0, validate_indices=False
    ),
    "seg_sum_unsorted": lambda v: tf.sparse.segment_sum(tf.reshape(v, [3, 1]), [0, 1, 2], [1, 0, 1]),
    "seg_mean_id_out_of_range": lambda v: tf.sparse.segment_mean(tf.reshape(v, [3, 1]), [0, 1], [0, 3], num_segments=2),
    "seg_sum_index_out_of_range": lambda v: tf.sparse.segment_sum(tf.reshape(v, [3, 1]), [0, 3], [0, 0]),
    "seg_sqrtn_negative_id": lambda v: tf.sparse.segment_sqrt_n(tf.reshape(v, [3, 1]), [0, 1], [-1, 0]),
    "matmul_out_of_range": lambda v: tf.sparse.sparse_dense_matmul(
        tf.SparseTensor([[0, 4]], v[:1], [2, 3]), tf.ones([3, 2])
    ),
    "reshape_two_neg": lambda v: raw.SparseReshape(
        input_indices=[[0, 1]], input_shape=[2, 3], new_shape=tf.cast(v[:2], tf.int64) * 0 - 1
    ),
    "reshape_bad_size": lambda v: raw.SparseReshape(
        input_indices=[[0, 1]], input_shape=[2, 3], new_shape=tf.cast(v[1:], tf.int64) + [2, -1]
    ),
}


@JIT
@pytest.mark.parametrize("case", sorted(SPARSE_RAISES))
def test_sparse_raises(case, jit):
    assert_raises_like_tf(SPARSE_RAISES[case], _sp_values(), jit=jit)


# -- lookup tables -------------------------------------------------------------------------------------------


class _Tables(tf.Module):
    def __init__(self, vocab_path: str, pairs_path: str):
        words = tf.constant(["cat", "dog", "", "\u00e9mu"])
        self.ids = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(words, [3, 1, 0, 7], tf.string, tf.int64), -1
        )
        big = tf.constant([2**31, -(2**40), 5, 2**62], tf.int64)
        self.names = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(big, words), "?")
        self.dups = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(["a", "b", "a"], [1, 2, 1]), -1)
        self.i32 = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer([1, -2, 3], [0.5, -1.0, 2.0]), -9.0)
        self.oov = tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(words, [0, 1, 2, 3], value_dtype=tf.int64), 3
        )
        self.oov_int = tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(big, tf.range(4, dtype=tf.int64)), 2, lookup_key_dtype=tf.int64
        )
        self.vocab = tf.lookup.StaticVocabularyTable(
            tf.lookup.TextFileInitializer(
                vocab_path, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
            ),
            num_oov_buckets=2,
        )
        self.vocab_small = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                vocab_path,
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
                vocab_size=2,
            ),
            -1,
        )
        self.columns = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(pairs_path, tf.string, 1, tf.int64, 0, delimiter=","), -5
        )
        self.reverse = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(pairs_path, tf.int64, 0, tf.string, 2, delimiter=","), "none"
        )
        self.mut = tf.lookup.experimental.MutableHashTable(tf.int64, tf.float32, default_value=-1.0)
        self.mut.insert(tf.constant([2**40, 3], tf.int64), tf.constant([0.5, 1.5]))
        self.dense = tf.lookup.experimental.DenseHashTable(
            tf.int64, tf.int64, default_value=-7, empty_key=-1, deleted_key=-2, initial_num_buckets=4
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int64)])
    def f(self, s, k):
        self.mut.insert(k, tf.cast(k, tf.float32) / 2)
        self.mut.remove(k[:1])
        self.dense.insert(k, k * 10)
        self.dense.remove(k[-1:])
        keys, values = self.mut.export()
        order = tf.argsort(keys)
        return {
            "ids": self.ids.lookup(s),
            "ids_2d": self.ids.lookup(tf.reshape(s, [2, -1])),
            "names": self.names.lookup(k),
            "i32": self.i32.lookup(tf.cast(k, tf.int32)),
            "oov": self.oov.lookup(s),
            "oov_int": self.oov_int.lookup(k),
            "vocab": self.vocab.lookup(s),
            "vocab_small": self.vocab_small.lookup(s),
            "columns": self.columns.lookup(s),
            "reverse": self.reverse.lookup(k),
            "sizes": tf.stack(
                [self.ids.size(), self.oov.size(), self.vocab.size(), self.vocab_small.size(), self.dups.size()]
            ),
            "dups": self.dups.lookup(s),
            "mut": self.mut.lookup(k),
            "mut_size": self.mut.size(),
            "mut_keys": tf.gather(keys, order),
            "mut_values": tf.gather(values, order),
            "dense": self.dense.lookup(tf.concat([k, [123]], 0)),
            "dense_size": self.dense.size(),
        }


def test_lookup_tables(tmp_path):
    """Static tables (string/int64/int32 keys, missing keys, keys beyond 2**31), vocabulary tables with OOV
    buckets, tables from vocabulary asset files (whole lines, columns, vocab_size), and mutable tables whose
    inserts and removes persist over calls, against TF's saved and reloaded module."""
    import jaxsm

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("dog\ncat\n\u00e9mu\nzebra\n", encoding="utf-8")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("5,cat,five\n-3,zebra,minus three\n4294967296,dog,big\n", encoding="utf-8")
    export = tmp_path / "model"
    tf.saved_model.save(_Tables(str(vocab), str(pairs)), str(export))
    vocab.unlink(), pairs.unlink()  # the model must read its own copies of the assets
    ref, got = tf.saved_model.load(str(export)), jaxsm.load(str(export))
    calls = [
        (_strs("cat", "cow", "", "\u00e9mu", "zebra", "CAT"), np.array([5, 2**31, -3, 2**62], np.int64)),
        (_strs("dog", "x", "y", "dog"), np.array([2**40, 4294967296, 7, 3], np.int64)),
    ]
    for i, (s, k) in enumerate(calls):
        want, have = ref.f(tf.constant(s), tf.constant(k)), got.f(s, k)
        for name in sorted(want):
            w, h = want[name].numpy(), np.asarray(have[name])
            w = w.astype(object) if w.dtype.kind == "S" else w
            assert h.shape == w.shape and h.dtype == w.dtype, (
                f"call {i} {name}: {h.dtype}{h.shape} vs {w.dtype}{w.shape}"
            )
            assert h.tolist() == w.tolist(), f"call {i} {name}: {h.tolist()} != TF's {w.tolist()}"


# -- parsing -------------------------------------------------------------------------------------------------


def _example(**features) -> bytes:
    def feature(v):
        if not v:  # no list kind: empty for any dtype
            return tf.train.Feature()
        if v and isinstance(v[0], bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=v))
        if v and isinstance(v[0], int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=v))
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    feats = tf.train.Features(feature={k: feature(v) for k, v in features.items()})
    return tf.train.Example(features=feats).SerializeToString()


PARTITIONED = {
    "splits": tf.io.RaggedFeature(tf.float32, "v", partitions=[tf.io.RaggedFeature.RowSplits("s")]),
    "lengths": tf.io.RaggedFeature(tf.int64, "w", partitions=[tf.io.RaggedFeature.RowLengths("n")]),
    "uniform": tf.io.RaggedFeature(tf.float32, "v", partitions=[tf.io.RaggedFeature.UniformRowLength(2)]),
    "rowids": tf.io.RaggedFeature(tf.int64, "w", partitions=[tf.io.RaggedFeature.ValueRowIds("r")]),
    "sparse": tf.io.SparseFeature(["i0", "i1"], "sv", tf.int64, [3, 5]),
    "sparse_1d": tf.io.SparseFeature("i0", "v4", tf.float32, 4, already_sorted=False),
    "fixed_default": tf.io.FixedLenFeature([3], tf.string, default_value=["a", "b", "c"]),
    "var_missing": tf.io.VarLenFeature(tf.float32),
}
EXAMPLES = [
    _example(v=[1.0, 2.0, 3.0, 4.0], s=[0, 1, 4], w=[5, 6, 7], n=[2, 0, 1], r=[0, 0, 2], i0=[2, 0, 1], i1=[4, 0, 0],
             v4=[0.5, 1.5, 2.5], sv=[1, 2, 3]),
    _example(v=[], s=[0], w=[], n=[], r=[], i0=[], i1=[], v4=[], sv=[], fixed_default=[b"x", b"y", b"z"]),
    _example(v=[9.0, 8.0], s=[0, 0, 2], w=[1], n=[0, 1], r=[3], i0=[0], i1=[1], v4=[7.0], sv=[-(2**40)]),
]  # fmt: skip


def _parse(s):
    out = {}
    for key, value in tf.io.parse_example(s, PARTITIONED).items():
        out[f"batch_{key}"] = value
    for key, value in tf.io.parse_single_example(s[0], PARTITIONED).items():
        out[f"single_{key}"] = value
    out["empty_batch"] = tf.io.parse_example(s[:0], {"x": tf.io.FixedLenFeature([2], tf.int64, [1, 2])})["x"]
    return _parts(out)


def _csv(r):
    out = {}
    for i, t in enumerate(
        tf.io.decode_csv(
            r,
            [[0], tf.constant([], tf.int64), ["d"], [2.5]],
            field_delim="|",
            na_value="-",
        )
    ):
        out[f"col{i}"] = t
    out["select"] = tf.io.decode_csv(r, [["s"], [-1.0]], field_delim="|", select_cols=[2, 3], na_value="-")
    out["tab"] = tf.io.decode_csv(tf.strings.regex_replace(r, "\\|", "\t"), [["a"]] * 4, field_delim="\t")
    return out


CSV = _strs("1|2|x|0.5", '-|3|"a|b"|-', '"7"|-4|""|1e3', ' 5 |0|" "|-0')


@JIT
@pytest.mark.parametrize("case", ["parse", "csv", "raw_json"])
def test_parsing_edges(case, jit):
    if case == "parse":
        _compare("parse", _parse, [_strs(*EXAMPLES)], jit)
    elif case == "csv":
        _compare("csv", _csv, [CSV], jit)
    else:

        def fn(s):
            return {
                "be_i32": tf.io.decode_raw(s, tf.int32, little_endian=False),
                "be_u16": tf.io.decode_raw(s, tf.uint16, little_endian=False),
                "be_f64": tf.io.decode_raw(tf.strings.join([s, s]), tf.float64, little_endian=False),
                "fixed": tf.io.decode_raw(s, tf.int8, fixed_length=6),
                "json": tf.io.decode_json_example('{"features": {"feature": {"a": {"int64List": {"value": ["-3"]}}}}}'),
                "zlib": tf.io.decode_compressed(tf.constant(b"x\x9c\xcbH\xcd\xc9\xc9\x07\x00\x06,\x02\x15"), "ZLIB"),
                "none": tf.io.decode_compressed(s, ""),
            }

        _compare("raw_json", fn, [_strs(b"\x00\x01\x02\x03\xff\xfe\xfd\xfc", b"abcdefgh")], jit)


PARSE_RAISES = {
    "ragged_int_as_float": (
        lambda s: tf.io.parse_example(s, {"r": tf.io.RaggedFeature(tf.int64, "v")})["r"].flat_values,
        [_strs(_example(v=[1.0]))],
    ),
    "sparse_index_out_of_range": (
        lambda s: tf.sparse.to_dense(tf.io.parse_single_example(s[0], {"x": PARTITIONED["sparse_1d"]})["x"]),
        [_strs(_example(i0=[4], v4=[1.0]))],
    ),
    "sparse_length_mismatch": (
        lambda s: tf.io.parse_example(s, {"x": PARTITIONED["sparse_1d"]})["x"].values,
        [_strs(_example(i0=[1, 2], v4=[1.0]))],
    ),
    "csv_select_too_few": (
        lambda r: tf.io.decode_csv(r, [["a"], ["b"]], select_cols=[1, 3]),
        [_strs("a,b,c")],
    ),
    "csv_quoted_int": (lambda r: tf.io.decode_csv(r, [[0]]), [_strs('"1 2"')]),
}


@JIT
@pytest.mark.parametrize("case", sorted(PARSE_RAISES))
def test_parsing_raises(case, jit):
    fn, inputs = PARSE_RAISES[case]
    assert_raises_like_tf(fn, inputs, jit=jit)


_LINE, _WHOLE = tf.lookup.TextFileIndex.LINE_NUMBER, tf.lookup.TextFileIndex.WHOLE_LINE
ASSET_CASES = {
    # name: (file content at save, content at load, key column, value column, vocab_size)
    "dup_same_value": (b"a,1\nb,2\n", b"a,1\nb,2\na,1\n", 0, 1, None),
    "dup_other_value": (b"a,1\nb,2\n", b"a,1\nb,2\na,3\n", 0, 1, None),
    "dup_line": (b"a\nb\n", b"a\nb\na\n", _WHOLE, _LINE, None),
    "empty_line": (b"a\nb\n", b"a\n\nb\n", _WHOLE, _LINE, None),
    "empty_line_after_vocab": (b"a\nb\n", b"a\nb\n\n", _WHOLE, _LINE, 2),
    "empty_file": (b"a\nb\n", b"", _WHOLE, _LINE, None),
    "too_few_lines": (b"a\nb\nc\n", b"a\nb\n", _WHOLE, _LINE, 3),
    "missing_column": (b"a,1\nb,2\n", b"a,1\nb\n", 0, 1, None),
    "int_overflow": (b"a,1\nb,2\n", b"a,1\nb,99999999999999999999\n", 0, 1, None),
    "crlf_and_separators": (b"a\nb\n", b"a\r\nb\x0bc\r\nd\xe2\x80\xa8e\n\xe9t\xe9\n", _WHOLE, _LINE, None),
}


@pytest.mark.parametrize("case", sorted(ASSET_CASES))
def test_lookup_table_asset_contents(case, tmp_path):
    """A vocabulary asset as TF's InitializeTableFromTextFile reads it at load (the asset is rewritten after
    saving): lines split at "\\n" only, repeated keys, empty lines and files, short files, bad fields."""
    import glob

    import jaxsm
    from jaxsm.errors import JaxsmError

    good, bad, key_index, value_index, vocab_size = ASSET_CASES[case]
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(good)
    m = tf.Module()
    init = tf.lookup.TextFileInitializer(
        str(vocab), tf.string, key_index, tf.int64, value_index, vocab_size=vocab_size, delimiter=","
    )
    m.t = tf.lookup.StaticHashTable(init, -1)
    m.f = tf.function(
        lambda s: {"ids": m.t.lookup(s), "size": m.t.size()}, input_signature=[tf.TensorSpec([None], tf.string)]
    )
    export = str(tmp_path / "model")
    tf.saved_model.save(m, export)
    (asset,) = glob.glob(f"{export}/assets/*")
    with open(asset, "wb") as f:
        f.write(bad)
    words = _strs("a", "b", "c", "b\x0bc", "d\u2028e", b"\xe9t\xe9", "")
    try:
        want = tf.saved_model.load(export).f(tf.constant(words))
    except tf.errors.OpError:
        with pytest.warns(UserWarning, match="could not initialize"), pytest.raises(JaxsmError):
            jaxsm.load(export).f(words)
        return
    have = jaxsm.load(export).f(words)
    np.testing.assert_array_equal(np.asarray(have["ids"]), want["ids"].numpy())
    assert int(have["size"]) == int(want["size"])
