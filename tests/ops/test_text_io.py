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


# -- WAV, SerializeTensor/ParseTensor, DecodeCompressed, DecodeJSONExample, WriteFile, MatchingFiles -----------


_AUDIO = np.array(
    [[0.5, -0.25], [1.0, -1.0], [np.nan, 2.0], [np.inf, -np.inf], [1.5 / 32768, -2.5 / 32768], [0.3, 1e-9]],
    np.float32,
)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("audio", [_AUDIO, _AUDIO[:, :1], _AUDIO[:0]], ids=["stereo", "mono", "empty"])
def test_encode_wav(audio, jit):
    # as a vector: the harness reads a scalar string through NumPy's "S" dtype, which drops trailing NULs
    assert_matches_tf(lambda a, r: tf.reshape(tf.audio.encode_wav(a, r), [1]), [audio, np.int32(16000)], jit=jit)


def _wav(body_chunks: bytes, fmt: bytes, before_fmt: bytes = b"") -> bytes:
    data = b"WAVE" + before_fmt + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + body_chunks
    return b"RIFF" + len(data).to_bytes(4, "little") + data


def _fmt(channels=2, rate=8000, bits=16, extra=b"") -> bytes:
    per_frame = (bits * channels + 7) // 8
    return (
        (1).to_bytes(2, "little")
        + channels.to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + (rate * per_frame).to_bytes(4, "little")
        + per_frame.to_bytes(2, "little")
        + bits.to_bytes(2, "little")
        + extra
    )


_PCM = np.array([[1, -2], [32767, -32768], [100, 200]], "<i2").tobytes()
_WAVS = {
    "plain": _wav(b"data" + len(_PCM).to_bytes(4, "little") + _PCM, _fmt()),
    "junk-fmt18-list": _wav(
        b"LIST\x04\x00\x00\x00abcd" + b"data" + len(_PCM).to_bytes(4, "little") + _PCM + b"tail\x00\x00\x00\x00",
        _fmt(extra=b"\x00\x00"),
        before_fmt=b"JUNK\x02\x00\x00\x00xy",
    ),
}


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("wav", list(_WAVS), ids=str)
@pytest.mark.parametrize("channels,samples", [(-1, -1), (1, 2), (3, 5), (0, 0)], ids=str)
def test_decode_wav(wav, channels, samples, jit):
    def fn(contents):
        out = tf.audio.decode_wav(contents, desired_channels=channels, desired_samples=samples)
        return {"audio": out.audio, "rate": out.sample_rate}

    assert_matches_tf(fn, [np.array(_WAVS[wav], dtype=object)], jit=jit)


@pytest.mark.parametrize(
    "contents,match",
    [
        (_wav(b"data\x04\x00\x00\x00\x00\x00\x00\x00", _fmt(bits=8)), "16-bit"),
        (_wav(b"data\x08\x00\x00\x00\x00\x00", _fmt()), "too short"),
        (_wav(b"", _fmt()), "No data chunk"),
        (b"RIFX" + _WAVS["plain"][4:], "RIFF"),
        (_wav(b"", _fmt(), before_fmt=b"LIST\x00\x00\x00\x00"), "Unexpected field"),
    ],
    ids=["8-bit", "truncated", "no-data", "bad-magic", "chunk-before-fmt"],
)
def test_decode_wav_errors(contents, match):
    _assert_both_raise(lambda c: tf.audio.decode_wav(c).audio, [np.array(contents, dtype=object)], match)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "value",
    [
        np.float32(1.5),
        np.arange(6, dtype=np.int64).reshape(1, 2, 3) - 3,
        np.array([True, False]),
        np.array([1 + 2j, np.nan], np.complex64),
        np.array([0.1, -np.inf], np.float16),
        np.zeros((2, 0), np.float64),
        _strings("a", "", "\xff longer text", shape=(3, 1)),
    ],
    ids=["scalar", "int64-rank3", "bool", "complex", "half", "empty", "strings"],
)
def test_serialize_parse_tensor(value, jit):
    def fn(x):
        s = tf.io.serialize_tensor(x)
        return {"serialized": tf.reshape(s, [1]), "parsed": tf.io.parse_tensor(s, x.dtype)}

    assert_matches_tf(fn, [value], jit=jit)


def test_parse_tensor_errors():
    serialized = tf.io.serialize_tensor(np.float32(1)).numpy()
    fn = lambda s: tf.io.parse_tensor(s, tf.int32)  # noqa: E731
    _assert_both_raise(fn, [np.array(serialized, dtype=object)], "Type mismatch")
    _assert_both_raise(fn, [np.array(b"\xff\xff", dtype=object)], "Could not parse")


def _zlib_cases():
    import gzip
    import zlib

    text = b"hello world " * 300
    z, g = zlib.compress(text), gzip.compress(b"abc")
    return {
        "zlib": (z, "ZLIB"),
        "zlib-then-more": (z + zlib.compress(b"XYZ") + b"junk", "ZLIB"),
        "zlib-truncated": (z[: len(z) // 2], "ZLIB"),
        "zlib-no-checksum": (z[:-3], "ZLIB"),
        "gzip-members": (g + gzip.compress(b"def"), "GZIP"),
        "gzip-truncated": (g[:-4], "GZIP"),
        "empty": (b"", "GZIP"),
        "none": (b"raw \x00 bytes", ""),
    }


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("case", list(_zlib_cases()), ids=str)
def test_decode_compressed(case, jit):
    data, kind = _zlib_cases()[case]
    assert_matches_tf(lambda x: tf.io.decode_compressed(x, kind), [_strings(data, data, shape=(2, 1))], jit=jit)


@pytest.mark.parametrize("data,kind", [(b"junk", "ZLIB"), (b"\x1f\x8b\x08\x00", "ZLIB")], ids=["junk", "gzip-as-zlib"])
def test_decode_compressed_errors(data, kind):
    fn = lambda x: tf.io.decode_compressed(x, kind)  # noqa: E731
    _assert_both_raise(fn, [_strings(data)], "inflate", tf_error=tf.errors.DataLossError)


_JSON = [
    '{"features": {"feature": {"z": {"int64List": {"value": ["1", 2, "-3"]}},'
    ' "a": {"floatList": {"value": [1.5, "NaN", "-Infinity", 0.1]}},'
    ' "m": {"bytesList": {"value": ["aGVsbG8=", ""]}}}}}',
    "{}",
    '{"features": {}}',
    '{"features": {"feature": {"e": {}, "f": {"float_list": {}}}}}',
]


@pytest.mark.parametrize("jit", [True, False])
def test_decode_json_example(jit):
    assert_matches_tf(lambda x: tf.io.decode_json_example(x), [_strings(*_JSON, shape=(2, 2))], jit=jit)


@pytest.mark.parametrize(
    "text", ['{"x": 1}', "nope", '{"features": {"feature": {"a": {"int64List": {"value": ["x"]}}}}}'], ids=str
)
def test_decode_json_example_errors(text):
    _assert_both_raise(lambda x: tf.io.decode_json_example(x), [_strings(text)], "parsing JSON")


@pytest.mark.parametrize("jit", [True, False])
def test_write_file(tmp_path, jit):
    def fn(name, contents):
        with tf.control_dependencies([tf.io.write_file(name, contents)]):
            return tf.strings.length(contents)

    contents = np.array(b"some \x00 bytes", dtype=object)
    tf_path, jaxsm_path = tmp_path / "tf" / "deep" / "out.bin", tmp_path / "jaxsm" / "deep" / "out.bin"
    export_dir, tf_fn = save_function(fn, [np.array(str(tf_path).encode(), dtype=object), contents])
    tf_fn(str(tf_path), contents)
    for _ in range(2):  # the file is written in every call
        jaxsm_path.unlink(missing_ok=True)
        run_jaxsm(export_dir, [np.array(str(jaxsm_path).encode(), dtype=object), contents], jit=jit)
        assert jaxsm_path.read_bytes() == tf_path.read_bytes(), "written file"


@pytest.mark.parametrize("jit", [True, False])
def test_matching_files(tmp_path, jit):
    for name in ["b.txt", "a.txt", ".hidden.txt", "x.dat", "sub/c.txt", "sub/d/e.txt", ".dir/f.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    root = str(tmp_path)
    patterns = [f"{root}/*.txt", f"{root}/*/*.txt", f"{root}/[ab].t?t", f"{root}/sub", f"{root}/absent/*", f"{root}/*"]
    assert_matches_tf(lambda p: tf.io.matching_files(p), [_strings(*patterns)], jit=jit)
    assert_matches_tf(lambda p: tf.io.matching_files(p), [_strings(f"{root}/x.*", shape=())], jit=jit)


@pytest.mark.parametrize("jit", [True, False])
def test_parse_tensor_of_strings_in_tensor_content(jit):
    # TF's SerializeSparse writes string values into tensor_content (lengths as varints, then the bytes)
    sparse = tf.sparse.SparseTensor([[0, 0], [1, 2], [2, 1]], [b"a", b"", b"x" * 200], [3, 3])
    serialized = tf.raw_ops.SerializeSparse(
        sparse_indices=sparse.indices, sparse_values=sparse.values, sparse_shape=sparse.dense_shape
    ).numpy()[1]
    assert_matches_tf(lambda s: tf.io.parse_tensor(s, tf.string), [np.array(serialized, dtype=object)], jit=jit)
