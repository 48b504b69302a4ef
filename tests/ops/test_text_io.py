"""jaxsm.ops.text_io against TF: DecodeCSV, DecodeRaw, DecodePaddedRaw, EncodeBase64/DecodeBase64,
UnsortedSegmentJoin, UnicodeTranscode and ReadFile, with TF's error cases."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import jaxsm  # noqa: E402
from jaxsm.errors import JaxsmError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")


def _strings(*values, shape=None) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = [v.encode() if isinstance(v, str) else v for v in values]
    return out.reshape(shape if shape is not None else (len(values),))


def _assert_both_raise(fn, inputs, match, tf_error=tf.errors.InvalidArgumentError):
    """TF raises ``tf_error`` (InvalidArgumentError unless told); jaxsm raises a JaxsmError matching ``match``."""
    inputs = [np.asarray(x) for x in inputs]
    export_dir, tf_fn = save_function(fn, inputs)
    with pytest.raises(tf_error):
        tf_fn(*inputs)
    with pytest.raises(JaxsmError, match=match):
        run_jaxsm(export_dir, inputs)


# -- DecodeCSV -------------------------------------------------------------------------------------------------

DEFAULTS = [
    tf.constant([1.5], tf.float32),
    tf.constant([-2.25], tf.float64),
    tf.constant([7], tf.int32),
    tf.constant([-(2**40)], tf.int64),
    tf.constant(["dflt"]),
]
RECORDS = _strings(
    "0.5,1e300,-2147483648,9223372036854775807,plain",
    ',,,,""',  # every field empty: the defaults
    ' +1.25 , -0x1.8p1 ,+12 ,\t-7,"quoted, with ""quotes"""',
    "inf,-Infinity,0,-0,\xff\x00bytes",
    "nan,NaN(1_x),05,  3  ,  spaced  ",
    '1e40,1e-400,2147483647,-9223372036854775808,\n\n"after newlines"',
    "1.00000005960464477539062500000001,0x1.00000000000008p0,-1,1,'single'",  # exact float32 / double rounding
    '3.4028235e38,4.9e-324,1,1,""',
)


@pytest.mark.parametrize("jit", [True, False])
def test_decode_csv(jit):
    """Every default dtype; quoted fields with escaped quotes and delimiters; absl's number syntax (whitespace,
    signs, hexadecimal floats, inf/nan, overflow to inf, correctly rounded float32 and float64)."""
    assert_matches_tf(lambda r: tf.io.decode_csv(r, DEFAULTS), [RECORDS], shapes=[(None,)], jit=jit, rtol=0)


def test_decode_csv_options():
    """field_delim, use_quote_delim=False (quotes are data), na_value, select_cols, 2-D records."""

    def fn(r, r2):
        return {
            "semicolon": tf.io.decode_csv(r, [["a"], ["b"], ["c"]], field_delim=";"),
            "na": tf.io.decode_csv(r, [[-1], ["s"], [9.0]], field_delim=";", na_value="NA"),
            "select": tf.io.decode_csv(r, [[0], [0.5]], field_delim=";", na_value="NA", select_cols=[0, 2]),
            "no_quotes": tf.io.decode_csv(r2, [["a"], ["b"]], use_quote_delim=False),
            "select_last": tf.io.decode_csv(r2, [["x"]], select_cols=[1], use_quote_delim=False),
        }

    records = _strings("1;NA;2.5", "NA;x;NA", ";;", '4;"q;q";8', shape=(2, 2))
    unquoted = _strings('a"b,"c', '",', "x,", ",")
    assert_matches_tf(fn, [records, unquoted])


@pytest.mark.parametrize(
    "record, defaults, kwargs, match",
    [
        ("1,2,3", [[0], [0]], {}, r"record 0 has 3 fields, but 2 are expected"),
        ("1", [[0], [0]], {}, r"record 0 has 1 fields, but 2 are expected"),
        ("", [[0]], {}, r"record 0 has 0 fields"),
        ("1.5", [[0]], {}, r"field 0 of record 0 is not a valid int32: b'1.5'"),
        ("2147483648", [[0]], {}, r"not a valid int32"),
        ("9223372036854775808", [tf.constant([0], tf.int64)], {}, r"not a valid int64"),
        ("1e", [[0.0]], {}, r"not a valid float32"),
        ("0x", [tf.constant([0.0], tf.float64)], {}, r"not a valid float64"),
        ("1_0", [[0.0]], {}, r"not a valid float32"),
        (",x", [tf.constant([], tf.float32), ["s"]], {}, r"field 0 is required"),
        ("NA", [tf.constant([], tf.string)], {"na_value": "NA"}, r"field 0 is required"),
        ('a"b', [["s"]], {}, r"unquoted field cannot hold a quote"),
        ("a\nb", [["s"]], {}, r"unquoted field cannot hold a quote, CR or LF"),
        ('"a"b', [["s"]], {}, r"must be escaped by another quote"),
        ('"ab', [["s"]], {}, r"must end with a quote"),
        ("a,b", [["s"], ["s"]], {"select_cols": [0, 2]}, r"has 1 fields, but 2 are expected"),
    ],
)
def test_decode_csv_errors(record, defaults, kwargs, match):
    _assert_both_raise(lambda r: tf.io.decode_csv(r, defaults, **kwargs), [_strings(record)], match)


# -- DecodeRaw, DecodePaddedRaw ----------------------------------------------------------------------------------

RAW_TYPES = [
    tf.float16,
    tf.float32,
    tf.float64,
    tf.int32,
    tf.uint16,
    tf.uint8,
    tf.int16,
    tf.int8,
    tf.int64,
    tf.complex64,
    tf.complex128,
    tf.bfloat16,
]


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # NaN bit patterns
@pytest.mark.parametrize("little_endian", [True, False])
def test_decode_raw(little_endian):
    """Every out_type, both byte orders (complex: each part swapped), 2-D input; bool; empty strings and no
    strings give a last dimension of 0."""
    rng = np.random.default_rng(0)
    data = _strings(*[rng.bytes(16) for _ in range(6)], shape=(2, 3))
    bools = _strings(b"\x00\x01\x01", b"\x01\x00\x00")

    def fn(s, b, empty, none):
        out = {t.name: tf.io.decode_raw(s, t, little_endian=little_endian) for t in RAW_TYPES}
        out["bool"] = tf.io.decode_raw(b, tf.bool, little_endian=little_endian)
        out["empty"] = tf.io.decode_raw(empty, tf.int32)
        out["none"] = tf.io.decode_raw(none, tf.float64)
        out["scalar"] = tf.io.decode_raw(s[0, 0], tf.int16, little_endian=little_endian)
        return out

    assert_matches_tf(fn, [data, bools, _strings("", ""), _strings()], rtol=0)


@pytest.mark.parametrize("little_endian", [True, False])
def test_decode_padded_raw(little_endian):
    """Each string cut or zero-padded to fixed_length (TF big endian reads fixed_length bytes of every string, so
    its big-endian input here is never shorter)."""
    short = _strings("", "\x01", "\x01\x02\x03", "\x01\x02\x03\x04\x05\x06\x07\x08\x09", shape=(2, 2))
    long = _strings("abcdefghijkl", "\xff" * 9, "0123456789")

    def fn(s, t):
        out = {t_.name: tf.io.decode_raw(t, t_, fixed_length=8, little_endian=little_endian) for t_ in RAW_TYPES[1:9]}
        out["bfloat16"] = tf.io.decode_raw(t, tf.bfloat16, fixed_length=4, little_endian=little_endian)
        if little_endian:
            out["short"] = tf.io.decode_raw(s, tf.int16, fixed_length=4)
            out["short_u8"] = tf.io.decode_raw(s, tf.uint8, fixed_length=5)
        out["empty"] = tf.io.decode_raw(t[:0], tf.int32, fixed_length=8, little_endian=little_endian)
        return out

    assert_matches_tf(fn, [short, long], rtol=0)


@pytest.mark.parametrize(
    "fn, inputs, match",
    [
        (lambda s: tf.io.decode_raw(s, tf.int32), [_strings("abcd", "abc")], r"element 1 has 3 bytes, not 4"),
        (lambda s: tf.io.decode_raw(s, tf.int32), [_strings("", "abcd")], r"element 1 has 4 bytes, not 0"),
        (lambda s: tf.io.decode_raw(s, tf.int16), [_strings("abc", "def")], r"not a whole number of int16"),
        (lambda s, n: tf.io.decode_raw(s, tf.int16, fixed_length=n), [_strings("abc"), np.int32(3)], "multiple"),
        (lambda s, n: tf.io.decode_raw(s, tf.int8, fixed_length=n), [_strings("abc"), np.int32(0)], "multiple"),
    ],
    ids=["lengths", "empty_first", "not_multiple", "padded_not_multiple", "padded_zero"],
)
def test_decode_raw_errors(fn, inputs, match):
    _assert_both_raise(fn, inputs, match)


# -- base64 ------------------------------------------------------------------------------------------------------


def test_base64():
    """Web-safe alphabet, with and without padding; decoding takes padded and unpadded strings and ignores the
    unused low bits of the last character."""
    rng = np.random.default_rng(1)
    data = _strings("", "a", "ab", "abc", "abcd", b"\xff\xfe\xfd\xfc\xfb", *[rng.bytes(k) for k in range(20, 26)])
    encoded = _strings(
        "", "QQ", "QR", "QQ==", "QUI=", "QUI", "QUJD", "QUJ-", "QUJ_", "__79_A", "__79_A==", shape=(11, 1)
    )

    def fn(s, e):
        return {
            "plain": tf.io.encode_base64(s),
            "padded": tf.io.encode_base64(s, pad=True),
            "round_trip": tf.io.decode_base64(tf.io.encode_base64(s)),
            "round_trip_padded": tf.io.decode_base64(tf.io.encode_base64(s, pad=True)),
            "decoded": tf.io.decode_base64(e),
        }

    assert_matches_tf(fn, [data, encoded])


@pytest.mark.parametrize(
    "text, match",
    [
        ("QUJ+", "invalid character"),
        ("QUJ/", "invalid character"),
        ("QU JD", "invalid character"),
        ("QQ=", "invalid character"),
        ("QQ=A", "invalid character"),
        ("QQ==QQ==", "invalid character"),
        ("Q", "length of 1 modulo 4"),
        ("QUJD\n", "length of 1 modulo 4"),
        ("\xc3\xa9AA", "invalid character"),
    ],
)
def test_decode_base64_errors(text, match):
    _assert_both_raise(lambda s: tf.io.decode_base64(s), [_strings("QUJD", text)], match)


# -- UnsortedSegmentJoin -------------------------------------------------------------------------------------


def test_unsorted_segment_join():
    """Joined in input order; the separator only follows a non-empty partial result (so an empty first string
    leaves no separator, a later one does); segments without strings are empty; ids over the leading dimensions;
    int64 ids and num_segments; a NUL in the separator ends it."""

    def fn(s, m, ids, ids2):
        return {
            "vector": tf.strings.unsorted_segment_join(s, ids, 4, separator=", "),
            "no_separator": tf.strings.unsorted_segment_join(s, ids, 4),
            "rows": tf.strings.unsorted_segment_join(m, [1, 0, 1], 3, separator="-"),
            "ids_2d": tf.strings.unsorted_segment_join(m, ids2, tf.constant(2, tf.int64), separator="|"),
            "int64": tf.strings.unsorted_segment_join(s, tf.cast(ids, tf.int64), 4, separator="+"),
            "nul": tf.strings.unsorted_segment_join(s, ids, 4, separator="x\0y"),
            "none": tf.strings.unsorted_segment_join(s[:0], ids[:0], 2, separator=","),
        }

    s = _strings("a", "", "b", "", "c", "", "d")
    m = _strings("a", "b", "", "d", "e", "f", shape=(3, 2))
    ids = np.array([0, 0, 0, 2, 2, 2, 0], np.int32)
    ids2 = np.array([[0, 1], [1, 1], [0, 0]], np.int32)
    assert_matches_tf(fn, [s, m, ids, ids2])


@pytest.mark.parametrize(
    "ids, num_segments, match",
    [([0, 2], 2, r"must lie in \[0, 2\)"), ([0, -1], 2, r"must lie in"), ([0, 0], -1, r"non-negative")],
)
def test_unsorted_segment_join_errors(ids, num_segments, match):
    """num_segments is an input: TF checks a constant one while building the graph."""
    _assert_both_raise(
        lambda s, i, n: tf.strings.unsorted_segment_join(s, i, n),
        [_strings("a", "b"), np.array(ids, np.int32), np.int32(num_segments)],
        match,
    )


# -- UnicodeTranscode ----------------------------------------------------------------------------------------

UTF8 = _strings(
    "plain",
    "h\u20ac\U0001f600",
    b"a\xf0\x9f\x98\xe2\x82\xac\xc0\xaf\xed\xa0\x80\xffz",  # truncated, overlong, surrogate, invalid byte
    b"\x00tab\there\x1f\x7f\xc2\x85",  # C0 controls, DEL and a C1 control
    b"\xef\xbb\xbfbom",
    "",
)


def test_unicode_transcode():
    """Each output encoding; invalid input replaced (maximal invalid sequences, as ICU delimits them), dropped or
    replaced by another code point; replace_control_characters replaces only U+0000..U+001F; other input
    encodings (UTF-16/32 with their byte-order-mark rules, ISO-8859-1, US-ASCII)."""
    utf16 = _strings(
        b"\x00h\xd8=\xde\x00", b"\xd8\x00\x00a", b"\xdc\x00", b"\x00a\x00", b"\xfe\xff\x00b", b"\xff\xfeb\x00"
    )
    utf32 = _strings(b"\x00\x01\xf6\x00", b"\x00\x11\x00\x00\x00\x00\x00a", b"\x00\x00\xd8\x00", b"\x00\x00\x00a\x00")
    latin = _strings(b"caf\xe9 \x80\x00", b"a\xe9b")
    tc = tf.strings.unicode_transcode

    def fn(u8, u16, u32, l1):
        return {
            "to_utf8": tc(u8, "UTF-8", "UTF-8"),
            "to_utf16": tc(u8, "UTF-8", "UTF-16-BE"),
            "to_utf32": tc(u8, "UTF-8", "UTF-32-BE"),
            "ignore": tc(u8, "UTF-8", "UTF-16-BE", errors="ignore"),
            "question_mark": tc(u8, "UTF-8", "UTF-8", replacement_char=ord("?")),
            "controls": tc(u8, "UTF-8", "UTF-8", replace_control_characters=True),
            "controls_ignored": tc(u8, "UTF-8", "UTF-32-BE", errors="ignore", replace_control_characters=True),
            "surrogate_replacement": [tc(u8, "UTF-8", out, replacement_char=0xD800) for out in ("UTF-8", "UTF-16-BE")],
            "utf16_be": tc(u16, "UTF-16-BE", "UTF-8"),
            "utf16_bom": tc(u16, "UTF-16", "UTF-8"),
            "utf16_le": tc(u16, "UTF-16LE", "UTF-32-BE"),
            "utf32_be": tc(u32, "UTF-32-BE", "UTF-16-BE"),
            "utf32": tc(u32, "utf32", "UTF-8"),
            "latin1": tc(l1, "ISO-8859-1", "UTF-8"),
            "ascii": tc(l1, "US-ASCII", "UTF-8"),
            "matrix": tc(tf.reshape(u8, [2, 3]), "UTF-8", "UTF-16-BE"),
        }

    assert_matches_tf(fn, [UTF8, utf16, utf32, latin])


@pytest.mark.parametrize(
    "text, controls",
    [(b"ok\xff", False), (b"\xed\xa0\x80", False), (b"tab\t", True)],
    ids=["invalid_byte", "surrogate", "control_character"],
)
def test_unicode_transcode_strict_raises(text, controls):
    """errors='strict' fails on invalid input -- and on a control character when replace_control_characters."""
    _assert_both_raise(
        lambda s: tf.strings.unicode_transcode(
            s, "UTF-8", "UTF-16-BE", errors="strict", replace_control_characters=controls
        ),
        [_strings("fine", text)],
        r"errors='strict'",
    )


# -- ReadFile ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [True, False])
def test_read_file(tmp_path, jit):
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x00binary\xff contents\n")
    assert_matches_tf(
        lambda p: {"contents": tf.io.read_file(p), "uri": tf.io.read_file(tf.strings.join(["file://", p]))},
        [np.array(str(path).encode(), dtype=object)],
        jit=jit,
    )


def test_read_file_constant_path(tmp_path):
    """A constant path is read when the function is first run (TF's graph optimizer folds the ReadFile then; jaxsm
    reads it when tracing): a later change to the file is not seen by either."""
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"first")

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def f(self, x):
            return {"text": tf.io.read_file(str(path)), "x": x * 2.0}

    module = M()
    tf.saved_model.save(module, str(tmp_path / "m"))
    m = jaxsm.load(str(tmp_path / "m"))
    assert m.f(np.float32(1.0))["text"] == module.f(tf.constant(1.0))["text"].numpy() == b"first"
    path.write_bytes(b"second")
    got = m.f(np.float32(2.0))
    assert got["text"] == module.f(tf.constant(2.0))["text"].numpy()
    assert float(got["x"]) == 4.0


def test_read_file_missing_raises(tmp_path):
    _assert_both_raise(
        lambda p: tf.io.read_file(p),
        [np.array(str(tmp_path / "absent").encode(), dtype=object)],
        r"cannot read .*absent",
        tf_error=tf.errors.NotFoundError,
    )
