"""Host-side text and bytes ops: CSV records, raw bytes as numbers, web-safe base64, joining strings by segment,
transcoding between Unicode encodings, reading, writing and listing files, WAV audio, serialized TensorProtos,
zlib/gzip inflation and JSON tf.train.Examples.

Like the ops of jaxsm/ops/strings.py these take string tensors (NumPy object arrays of ``bytes``) and run on the
host with concrete inputs; each follows its TF kernel byte for byte, errors included (a JaxsmError where TF raises):

* DecodeCSV (decode_csv_op.cc): one output per column, each of the records' shape. A field may be quoted (with
  ``use_quote_delim``; ``""`` inside is a quote); an empty field or one equal to ``na_value`` takes the column's
  default, and a column whose default is empty is required. ``select_cols`` picks (strictly increasing) columns.
  Numbers are parsed as absl's SimpleAtoi / SimpleAtof / SimpleAtod do: surrounding ASCII whitespace, a sign,
  decimal or ``0x`` hexadecimal floats, inf / infinity / nan (any case), correctly rounded; out of range floats
  become +-inf, out of range integers are errors.
* DecodeRaw / DecodePaddedRaw (decode_raw_op.cc, decode_padded_raw_op.cc): each string's bytes as a vector of
  ``out_type`` (all strings the same length, or each cut / zero-padded to ``fixed_length``), little or big endian.
* EncodeBase64 / DecodeBase64 (base64.cc): the web-safe alphabet (``-`` and ``_``), ``=`` padding optional.
* UnsortedSegmentJoin: the strings of each segment joined in order; the separator goes only after a non-empty
  partial result (TF appends it when the joined string so far is non-empty).
* UnicodeTranscode (unicode_ops.cc): decode with ``input_encoding`` (each maximal invalid sequence is one error),
  replace (``replacement_char``), drop ('ignore') or fail on ('strict') errors and, with
  ``replace_control_characters``, the C0 controls U+0000..U+001F; encode as UTF-8, UTF-16-BE or UTF-32-BE.
* ReadFile: a file's bytes. WriteFile and MatchingFiles (sorted glob matches) act on the file system in every
  call, so under ``jax.jit`` such a call runs op by op.
* DecodeWav / EncodeWav (tensorflow/core/lib/wav/wav_io.cc): 16-bit PCM only, samples scaled by 1/32768 and back
  with ``roundf`` and clamping.
* SerializeTensor / ParseTensor (parse_tensor_op.cc): TensorProto bytes, strings in ``string_val``, others as raw
  ``tensor_content``.
* DecodeCompressed: what TF's ZlibInputStream reads (a truncated stream is not an error; GZIP reads every member).
* DecodeJSONExample: protobuf's JsonToBinaryString for tf.train.Example (JSON field order, unpacked numbers).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

import numpy as np

from jaxsm import dtypes
from jaxsm.ops.registry import op
from jaxsm.ops.strings import _as_bytes, _bytes_array, _map, _strings

# -- DecodeCSV -------------------------------------------------------------------------------------------------

_QUOTE, _LF, _CR = ord('"'), ord("\n"), ord("\r")


def _csv_fields(ctx, record: bytes, delim: int, quoting: bool, select: list[int] | None, index: int) -> list[bytes]:
    """The fields of one record (decode_csv_op.cc ExtractFields): CR and LF are skipped where a field would start
    and are errors inside an unquoted field; a trailing delimiter ends with an empty field."""
    fields: list[bytes] = []
    n, i, parsed, chosen = len(record), 0, 0, 0
    if not n:
        return fields
    while i < n:
        if record[i] in (_LF, _CR):
            i += 1
            continue
        include = select is None or select[chosen] == parsed
        quoted = quoting and record[i] == _QUOTE
        field = bytearray()
        if not quoted:
            while i < n and record[i] != delim:
                if (quoting and record[i] == _QUOTE) or record[i] in (_LF, _CR):
                    raise ctx.error(f"record {index}: an unquoted field cannot hold a quote, CR or LF: {record!r}")
                field.append(record[i])
                i += 1
            i += 1  # past the delimiter (or the end)
        else:
            i += 1
            while i < n - 1 and (record[i] != _QUOTE or record[i + 1] != delim):
                if record[i] != _QUOTE:
                    field.append(record[i])
                    i += 1
                elif record[i + 1] == _QUOTE:
                    field.append(_QUOTE)
                    i += 2
                else:
                    raise ctx.error(
                        f"record {index}: a quote inside a quoted field must be escaped by another quote: {record!r}"
                    )
            if not (i < n and record[i] == _QUOTE and (i == n - 1 or record[i + 1] == delim)):
                raise ctx.error(
                    f"record {index}: a quoted field must end with a quote followed by the delimiter or the end of "
                    f"the record: {record!r}"
                )
            i += 2
        parsed += 1
        if include:
            fields.append(bytes(field))
            chosen += 1
            if select is not None and chosen == len(select):
                return fields
    if (select is None or select[chosen] == parsed) and record[-1] == delim:
        fields.append(b"")
    return fields


_WS = b" \t\n\v\f\r"
_INT = re.compile(rb"[+-]?[0-9]+")
_DEC = re.compile(rb"(-?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?")
_HEX = re.compile(rb"(-?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?")
_SPECIAL = re.compile(rb"(-?)(inf|infinity|nan|nan\([0-9A-Za-z_]*\))", re.IGNORECASE)


def _pow2(k: int) -> Fraction:
    return Fraction(2**k) if k >= 0 else Fraction(1, 2**-k)


def _round_float32(q: Fraction) -> float:
    """The float32 nearest to ``q`` > 0 (ties to even), as a Python float; inf beyond the largest float32."""
    e = q.numerator.bit_length() - q.denominator.bit_length()  # 2**(e - 1) < q < 2**(e + 1)
    if q < _pow2(e):
        e -= 1  # now 2**e <= q < 2**(e + 1)
    e = max(e, -126)  # subnormals keep the exponent of the smallest normal
    m = round(q * _pow2(23 - e))  # 24 significant bits; Fraction rounds half to even
    value = Fraction(m) * _pow2(e - 23)
    return math.inf if value >= _pow2(128) else float(value)


def _parse_float(text: bytes, dtype: np.dtype) -> Any:
    """absl::SimpleAtof / SimpleAtod: the value, or None when ``text`` is not a number."""
    text = text.strip(_WS)
    if text.startswith(b"+"):
        text = text[1:]
        if text.startswith(b"-"):
            return None
    special = _SPECIAL.fullmatch(text)
    if special:
        value = math.inf if special[2][:1].lower() == b"i" else math.nan
        return dtype.type(-value if special[1] else value)
    hexadecimal = _HEX.fullmatch(text)
    match = hexadecimal or _DEC.fullmatch(text)
    if not match or not (match[2] or match[3]):  # at least one mantissa digit
        return None
    digits, fraction = match[2] + (match[3] or b""), match[3] or b""
    exponent = int(match[4] or b"0")
    mantissa = int(digits or b"0", 16 if hexadecimal else 10)
    value = 0.0
    if mantissa:
        # Far out of range (the exponent may have any number of digits): inf or 0 without big-number arithmetic.
        if hexadecimal:
            exp2 = exponent - 4 * len(fraction)
            magnitude, big, small = mantissa.bit_length() + exp2, 1100, -1200
            exact = Fraction(mantissa) * _pow2(exp2) if small <= magnitude <= big else None
        else:
            exp10 = exponent - len(fraction)
            magnitude, big, small = len(str(mantissa)) + exp10, 330, -360
            exact = None
            if small <= magnitude <= big:
                exact = Fraction(mantissa * 10**exp10) if exp10 >= 0 else Fraction(mantissa, 10**-exp10)
        if exact is None:
            value = math.inf if magnitude > big else 0.0
        elif dtype == np.float32:
            value = _round_float32(exact)
        else:
            try:
                value = float(exact)  # int / int: correctly rounded
            except OverflowError:
                value = math.inf
    return dtype.type(-value if match[1] else value)


def _parse_int(text: bytes, dtype: np.dtype) -> Any:
    """absl::SimpleAtoi: decimal digits with an optional sign and surrounding ASCII whitespace; None when
    ``text`` is not such a number or is out of range."""
    text = text.strip(_WS)
    if not _INT.fullmatch(text):
        return None
    value = int(text)
    info = np.iinfo(dtype)
    return dtype.type(value) if info.min <= value <= info.max else None


@op("DecodeCSV")
def decode_csv(ctx, records, *record_defaults):
    types = [dtypes.to_numpy(t) for t in ctx.attr("OUT_TYPE")]
    delim = _as_bytes(ctx.attr("field_delim", ","))
    if len(delim) != 1:
        raise ctx.error(f"field_delim must be one byte, got {delim!r}")
    quoting = bool(ctx.attr("use_quote_delim", True))
    na_value = _as_bytes(ctx.attr("na_value", ""))
    select = [int(c) for c in ctx.attr("select_cols", [])] or None
    if select is not None:
        if len(select) != len(types):
            raise ctx.error(f"select_cols has {len(select)} columns, but there are {len(types)} outputs")
        if any(a >= b for a, b in zip(select, select[1:])) or select[0] < 0:
            raise ctx.error(f"select_cols must be non-negative and strictly increasing, got {select}")
    defaults = []
    for f, (d, dtype) in enumerate(zip(record_defaults, types, strict=True)):
        d = _strings(ctx, d, "a record default") if dtype.kind == "O" else np.asarray(ctx.static(d, "a record default"))
        if d.ndim > 1 or d.size > 1:
            raise ctx.error(f"the default of field {f} must be a scalar or a one-value vector, got {d.shape}")
        defaults.append(d.reshape(-1))
    s = _strings(ctx, records, "the records")
    columns: list[list[Any]] = [[] for _ in types]
    for i, record in enumerate(s.reshape(-1)):
        fields = _csv_fields(ctx, record, delim[0], quoting, select, i)
        if len(fields) != len(types):
            raise ctx.error(f"record {i} has {len(fields)} fields, but {len(types)} are expected: {record!r}")
        for f, (field, dtype, default) in enumerate(zip(fields, types, defaults)):
            if not field or field == na_value:
                if not default.size:
                    raise ctx.error(f"field {f} is required (its default is empty), but record {i} has none")
                columns[f].append(default[0])
                continue
            if dtype.kind == "O":
                value = field
            elif dtype.kind == "f":
                value = _parse_float(field, dtype)
            else:
                value = _parse_int(field, dtype)
            if value is None:
                raise ctx.error(f"field {f} of record {i} is not a valid {dtype.name}: {field!r}")
            columns[f].append(value)
    return tuple(
        _bytes_array(col, s.shape) if dtype.kind == "O" else np.asarray(col, dtype).reshape(s.shape)
        for col, dtype in zip(columns, types)
    )


# -- DecodeRaw, DecodePaddedRaw ----------------------------------------------------------------------------------


def _from_bytes(data: bytes, dtype: np.dtype, little_endian: bool) -> np.ndarray:
    """``data`` as a vector of ``dtype`` stored with the given byte order (complex numbers: each part)."""
    if dtype == np.bool_:
        return np.frombuffer(data, np.uint8) != 0
    unit = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
    order = "<" if little_endian else ">"
    words = np.frombuffer(data, np.dtype(f"{order}u{unit}")).astype(np.dtype(f"=u{unit}"))
    return words.view(dtype)


@op("DecodeRaw")
def decode_raw(ctx, data):
    """Every string must have the same length, a multiple of the size of ``out_type``; empty strings (or no
    strings) give a last dimension of 0."""
    s = _strings(ctx, data, "the bytes")
    dtype = ctx.dtype("out_type")
    flat = list(s.reshape(-1))
    size = len(flat[0]) if flat else 0
    for i, v in enumerate(flat):
        if len(v) != size:
            raise ctx.error(f"DecodeRaw needs strings of one length, but element {i} has {len(v)} bytes, not {size}")
    if not size:
        return np.zeros((*s.shape, 0), dtype)
    if size % dtype.itemsize:
        raise ctx.error(f"strings of {size} bytes are not a whole number of {dtype.name} ({dtype.itemsize} bytes)")
    out = _from_bytes(b"".join(flat), dtype, ctx.attr("little_endian", True))
    return out.reshape(*s.shape, size // dtype.itemsize)


@op("DecodePaddedRaw")
def decode_padded_raw(ctx, data, fixed_length):
    """Each string's first ``fixed_length`` bytes, zero-padded when shorter, as ``fixed_length / size`` values."""
    s = _strings(ctx, data, "the bytes")
    dtype = ctx.dtype("out_type")
    length = np.asarray(ctx.static(fixed_length, "fixed_length"))
    if length.ndim:
        raise ctx.error(f"fixed_length must be a scalar, got shape {length.shape}")
    length = int(length)
    if length <= 0 or length % dtype.itemsize:
        raise ctx.error(f"fixed_length ({length}) must be a positive multiple of the size of {dtype.name}")
    padded = b"".join(v[:length].ljust(length, b"\0") for v in s.reshape(-1))
    return _from_bytes(padded, dtype, ctx.attr("little_endian", True)).reshape(*s.shape, length // dtype.itemsize)


# -- base64 ------------------------------------------------------------------------------------------------------

_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_VALUE = {c: k for k, c in enumerate(_B64)}


def _b64encode(v: bytes, pad: bool) -> bytes:
    out = bytearray()
    for k in range(0, len(v), 3):
        chunk = v[k : k + 3]
        bits = int.from_bytes(chunk.ljust(3, b"\0"), "big")
        chars = [_B64[(bits >> shift) & 0x3F] for shift in (18, 12, 6, 0)][: len(chunk) + 1]
        out += bytes(chars) + (b"=" * (3 - len(chunk)) if pad else b"")
    return bytes(out)


def _b64decode(ctx, v: bytes) -> bytes:
    """tensorflow/core/lib/strings/base64.cc: groups of four, a last group of 2-4 characters or one padded with
    '=' (the unused low bits of the last character are not checked)."""
    if not v:
        return b""
    n = len(v)
    end = n
    last = (n - 1) // 4 * 4  # the start of the last (1..4 character) group
    if end - last == 4:
        if v[last + 2] == ord("=") and v[last + 3] == ord("="):
            end -= 2
        elif v[last + 3] == ord("="):
            end -= 1
    out = bytearray()
    for k in range(0, end, 4):
        if end - k == 1:  # after the full groups, as TF checks it
            raise ctx.error(f"a base64 string cannot have a length of 1 modulo 4: {v[:60]!r}")
        group = v[k : min(k + 4, end)]
        try:
            bits = 0
            for c in group.ljust(4, b"A"):
                bits = bits << 6 | _B64_VALUE[c]
        except KeyError:
            raise ctx.error(f"invalid character in web-safe base64: {v[:60]!r}") from None
        out += bits.to_bytes(3, "big")[: len(group) - 1]
    return bytes(out)


@op("EncodeBase64")
def encode_base64(ctx, x):
    pad = bool(ctx.attr("pad", False))
    return _map(ctx, x, lambda v: _b64encode(v, pad))


@op("DecodeBase64")
def decode_base64(ctx, x):
    return _map(ctx, x, lambda v: _b64decode(ctx, v))


# -- UnsortedSegmentJoin -------------------------------------------------------------------------------------


@op("UnsortedSegmentJoin")
def unsorted_segment_join(ctx, inputs, segment_ids, num_segments):
    """Output ``[num_segments, *inputs.shape[ids.ndim:]]``; the ids index the leading dimensions of ``inputs``.
    The separator is cut at its first NUL byte (TF appends it as a C string)."""
    s = _strings(ctx, inputs, "the strings")
    ids = np.asarray(ctx.static(segment_ids, "segment_ids"))
    count = np.asarray(ctx.static(num_segments, "num_segments"))
    if count.ndim:
        raise ctx.error(f"num_segments must be a scalar, got shape {count.shape}")
    count = int(count)
    if count < 0:
        raise ctx.error(f"num_segments must be non-negative, got {count}")
    if ids.ndim == 0:
        raise ctx.error("segment_ids cannot be a scalar")
    if ids.ndim > s.ndim or ids.shape != s.shape[: ids.ndim]:
        raise ctx.error(f"segment_ids of shape {ids.shape} do not match the strings' leading dimensions {s.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= count):
        raise ctx.error(f"segment_ids must lie in [0, {count}), got {ids.min()}..{ids.max()}")
    sep = _as_bytes(ctx.attr("separator", "")).split(b"\0")[0]
    inner = s.shape[ids.ndim :]
    rows = s.reshape(ids.size, math.prod(inner))
    out = [[b""] * rows.shape[1] for _ in range(count)]
    for row, seg in zip(rows, ids.reshape(-1).tolist()):
        joined = out[seg]
        for k, v in enumerate(row):
            joined[k] = joined[k] + sep + v if joined[k] else v
    return _bytes_array([v for seg in out for v in seg], (count, *inner))


# -- UnicodeTranscode ----------------------------------------------------------------------------------------

# ICU converter names (compared as ICU does: case and punctuation ignored) -> (Python codec, byte-order mark
# handling). "UTF-16"/"UTF-32" read a byte-order mark and default to big endian, as ICU's converters do.
_INPUT_CODECS = {
    "utf8": "utf-8",
    "utf16be": "utf-16-be",
    "utf16le": "utf-16-le",
    "utf16": "utf-16",
    "utf32be": "utf-32-be",
    "utf32le": "utf-32-le",
    "utf32": "utf-32",
    "iso88591": "latin-1",
    "latin1": "latin-1",
    "usascii": "ascii",
    "ascii": "ascii",
    "windows1252": "cp1252",
    "cp1252": "cp1252",
}
_OUTPUT_CODECS = {"UTF-8": "utf-8", "UTF-16-BE": "utf-16-be", "UTF-32-BE": "utf-32-be"}


def _input_codec(ctx, name: str) -> str:
    codec = _INPUT_CODECS.get(re.sub(r"[^0-9a-z]", "", name.lower()))
    if codec is None:
        raise ctx.error(
            f"input encoding {name!r} is not supported (jaxsm reads UTF-8, UTF-16/-BE/-LE, UTF-32/-BE/-LE, "
            "ISO-8859-1, US-ASCII and windows-1252)"
        )
    return codec


def _code_points(v: bytes, codec: str) -> list[int | None]:
    """The code points of ``v``; None for each maximal invalid sequence (as ICU and Python delimit them)."""
    if codec in ("utf-16", "utf-32"):  # ICU: a byte-order mark picks the byte order, big endian without one
        width = 2 if codec == "utf-16" else 4
        bom = b"\xfe\xff" if width == 2 else b"\x00\x00\xfe\xff"
        if v[:width] == bom[::-1]:
            codec, v = f"{codec}-le", v[width:]
        else:
            codec, v = f"{codec}-be", v[width:] if v[:width] == bom else v
    if codec == "cp1252":  # ICU maps the five bytes Python leaves undefined to the C1 controls of the same value
        return [ord(bytes([b]).decode("cp1252")) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D) else b for b in v]
    out: list[int | None] = []
    pos = 0
    while pos < len(v):
        try:
            out += map(ord, v[pos:].decode(codec))
            break
        except UnicodeDecodeError as e:
            out += map(ord, v[pos : pos + e.start].decode(codec))
            out.append(None)
            pos += e.end
    return out


def _encode(cps: list[int], codec: str) -> bytes:
    """ICU's encoders: a lone surrogate (only a surrogate ``replacement_char`` makes one) is U+FFFD in UTF-8 and
    kept as is in UTF-16 and UTF-32."""
    if codec == "utf-8":
        return "".join(chr(0xFFFD if 0xD800 <= c <= 0xDFFF else c) for c in cps).encode("utf-8")
    return "".join(map(chr, cps)).encode(codec, "surrogatepass")


@op("UnicodeTranscode")
def unicode_transcode(ctx, x):
    codec = _input_codec(ctx, ctx.attr("input_encoding"))
    output = ctx.attr("output_encoding")
    if output not in _OUTPUT_CODECS:
        raise ctx.error(f"output encoding {output!r} is not one of {sorted(_OUTPUT_CODECS)}")
    errors = ctx.attr("errors", "replace")
    if errors not in ("replace", "ignore", "strict"):
        raise ctx.error(f"errors must be 'strict', 'replace' or 'ignore', got {errors!r}")
    replacement = int(ctx.attr("replacement_char", 0xFFFD))
    if not 0 <= replacement <= 0x10FFFF:
        raise ctx.error(f"replacement_char {replacement} is not a Unicode code point")
    controls = bool(ctx.attr("replace_control_characters", False))
    failed = False

    def transcode(v: bytes) -> bytes:
        nonlocal failed
        out = []
        for cp in _code_points(v, codec):
            if cp is None or (controls and cp <= 0x1F):
                failed = True
                if errors == "ignore":
                    continue
                cp = replacement
            out.append(cp)
        return _encode(out, _OUTPUT_CODECS[output])

    result = _map(ctx, x, transcode)
    if failed and errors == "strict":  # TF: invalid input, or a control character replace_control_characters hits
        raise ctx.error(f"invalid {ctx.attr('input_encoding')} input (errors='strict')")
    return result


# -- ReadFile ----------------------------------------------------------------------------------------------------


@op("ReadFile")
def read_file(ctx, filename):
    """The whole file; ``filename`` is a local path, optionally ``file://``. Like TF (whose graph optimizer folds a
    ReadFile of a constant path), a constant path is read once, when the function is traced."""
    name = _strings(ctx, filename, "the file name")
    if name.ndim:
        raise ctx.error(f"the file name must be a scalar, got shape {name.shape}")
    path = name.reshape(-1)[0]
    if path.startswith(b"file://"):
        path = path[len(b"file://") :]
    elif re.match(rb"[A-Za-z][A-Za-z0-9+.-]*://", path):
        raise ctx.error(f"only local files can be read, not {path!r}")
    try:
        with open(path, "rb") as f:
            contents = f.read()
    except OSError as e:
        raise ctx.error(f"cannot read {path!r}: {e.strerror or e}") from None
    return _bytes_array([contents], ())


# -- WAV audio ---------------------------------------------------------------------------------------------------

_WAV_SKIPPED = {b"JUNK", b"bext", b"iXML", b"qlty", b"mext", b"levl", b"link", b"axml"}


class _Reader:
    """Little-endian reads that fail as wav_io.cc's IncrementOffset does (past the end: "Data too short")."""

    def __init__(self, ctx, data: bytes):
        self.ctx, self.data, self.at = ctx, data, 0

    def take(self, n: int) -> bytes:
        if self.at > len(self.data) or self.at + n > len(self.data):
            raise self.ctx.error("Data too short when trying to read string")
        out, self.at = self.data[self.at : self.at + n], self.at + n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")


def _decode_wav(ctx, data: bytes) -> tuple[np.ndarray, int]:
    """DecodeLin16WaveAsFloatVector (tensorflow/core/lib/wav/wav_io.cc): 16-bit PCM only, samples / 32768 as
    [frames, channels]; the chunks TF skips before "fmt " and any chunk but "data" after it are skipped."""
    r = _Reader(ctx, data)
    if r.take(4) != b"RIFF":
        raise ctx.error("Header mismatch: Expected RIFF")
    r.uint(4)
    if r.take(4) != b"WAVE":
        raise ctx.error("Header mismatch: Expected WAVE")
    chunk = r.take(4)
    while chunk != b"fmt ":
        if chunk not in _WAV_SKIPPED:
            raise ctx.error(f"Unexpected field {chunk!r}")
        r.take(r.uint(4))
        chunk = r.take(4)
    fmt_size = r.uint(4)
    if fmt_size not in (16, 18):
        raise ctx.error(f"Bad format chunk size for WAV: Expected 16 or 18, but got {fmt_size}")
    if (audio_format := r.uint(2)) != 1:
        raise ctx.error(f"Bad audio format for WAV: Expected 1 (PCM), but got {audio_format}")
    channels, rate, per_second, per_frame, bits = r.uint(2), r.uint(4), r.uint(4), r.uint(2), r.uint(2)
    if channels < 1:
        raise ctx.error(f"Bad number of channels for WAV: Expected at least 1, but got {channels}")
    if bits != 16:
        raise ctx.error(f"Can only read 16-bit WAV files, but received {bits}")
    if per_frame != (bits * channels + 7) // 8:
        raise ctx.error(f"Bad bytes per sample in WAV header: got {per_frame}")
    if per_second != (per_frame * rate) & 0xFFFFFFFF:
        raise ctx.error(f"Bad bytes per second in WAV header: got {per_second}")
    r.at += 2 if fmt_size == 18 else 0
    samples = None
    while r.at < len(data):
        chunk, size = r.take(4), r.uint(4)
        if size > 2**31 - 1:
            raise ctx.error(f"WAV data chunk {chunk!r} is too large: {size} bytes")
        if chunk != b"data":
            r.at += size
            continue
        if samples is not None:
            raise ctx.error("More than one data chunk found in WAV")
        frames = size // per_frame
        samples = np.frombuffer(r.take(2 * frames * channels), "<i2").reshape(frames, channels)
    if samples is None:
        raise ctx.error("No data chunk found in WAV")
    return samples.astype(np.float32) / np.float32(32768), rate


@op("DecodeWav")
def decode_wav(ctx, contents):
    """tf.audio.decode_wav: ``desired_samples`` cuts or zero-pads the frames; ``desired_channels`` beyond the
    file's repeat its last channel (decode_wav_op.cc)."""
    data = _strings(ctx, contents, "the WAV contents")
    if data.ndim:
        raise ctx.error(f"contents must be scalar, got shape {list(data.shape)}")
    audio, rate = _decode_wav(ctx, data.item())
    want_channels, want_samples = int(ctx.attr("desired_channels", -1)), int(ctx.attr("desired_samples", -1))
    if want_channels < -1 or want_samples < -1:
        raise ctx.error("desired_channels and desired_samples must be >= -1")
    frames = audio.shape[0] if want_samples == -1 else want_samples
    channels = audio.shape[1] if want_channels == -1 else want_channels
    source = np.minimum(np.arange(channels), audio.shape[1] - 1)
    out = np.zeros((frames, channels), np.float32)
    n = min(frames, audio.shape[0])
    out[:n] = audio[:n][:, source]
    return out, np.asarray(rate, np.int32)


@op("EncodeWav")
def encode_wav(ctx, audio, sample_rate):
    """tf.audio.encode_wav: [frames, channels] float32 as 16-bit PCM, each sample ``roundf(x * 32768)`` (half away
    from zero) clamped to int16 (wav_io.cc EncodeAudioAsS16LEWav); a 44-byte header."""
    audio = np.asarray(ctx.static(audio, "the audio (strings live on the host)"), np.float32)
    rate = np.asarray(ctx.static(sample_rate, "the sample rate"))
    if audio.ndim != 2:
        raise ctx.error(f"audio must be 2-dimensional, got shape {list(audio.shape)}")
    if rate.ndim:
        raise ctx.error(f"Input sample_rate should be a scalar tensor, got shape {list(rate.shape)}")
    frames, channels = audio.shape
    rate = int(rate)
    if not 0 < rate < 2**32:
        raise ctx.error(f"sample_rate must be in (0, 2^32), got: {rate}")
    if not 0 < channels < 2**16:
        raise ctx.error(f"num_channels must be in (0, 2^16), got: {channels}")
    scaled = (audio * np.float32(32768)).astype(np.float64)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    # NaN passes TF's clamp and converts to int16 0 (x86 float -> int32 gives INT_MIN, whose low 16 bits are 0)
    pcm = np.where(np.isnan(rounded), 0, np.clip(rounded, -32768, 32767)).astype("<i2")
    size = frames * channels * 2
    header = b"".join(
        [
            b"RIFF", (36 + size).to_bytes(4, "little"), b"WAVEfmt ", (16).to_bytes(4, "little"),
            (1).to_bytes(2, "little"), channels.to_bytes(2, "little"), rate.to_bytes(4, "little"),
            (rate * 2 * channels & 0xFFFFFFFF).to_bytes(4, "little"), (2 * channels).to_bytes(2, "little"),
            (16).to_bytes(2, "little"), b"data", size.to_bytes(4, "little"),
        ]
    )  # fmt: skip
    return _bytes_array([header + pcm.tobytes()], ())


# -- SerializeTensor / ParseTensor -------------------------------------------------------------------------------


@op("SerializeTensor")
def serialize_tensor(ctx, tensor):
    """tf.io.serialize_tensor: a TensorProto, strings in ``string_val`` and other dtypes as raw little-endian
    ``tensor_content`` (parse_tensor_op.cc), fields in TF's (field number) order."""
    from jaxsm._proto import tensor_pb2

    x = _strings(ctx, tensor) if dtypes.is_strings(tensor) else np.asarray(ctx.static(tensor, "the tensor"))
    proto = tensor_pb2.TensorProto(dtype=int(ctx.attr("T")))
    proto.tensor_shape.SetInParent()
    for d in x.shape:
        proto.tensor_shape.dim.add(size=d)
    if x.dtype == object:
        proto.string_val.extend(x.reshape(-1).tolist())
    else:
        proto.tensor_content = np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<")).tobytes()
    return _bytes_array([proto.SerializeToString()], ())


@op("ParseTensor")
def parse_tensor(ctx, serialized):
    """tf.io.parse_tensor: the tensor in a serialized TensorProto, which must have dtype ``out_type``."""
    from google.protobuf.message import DecodeError

    from jaxsm._proto import tensor_pb2
    from jaxsm.errors import FormatError
    from jaxsm.format.tensor import tensor_from_proto

    data = _strings(ctx, serialized, "the serialized tensor")
    if data.ndim:
        raise ctx.error(f"Expected `serialized` to be a scalar, got shape: {list(data.shape)}")
    proto = tensor_pb2.TensorProto()
    try:
        proto.ParseFromString(data.item())
        value = tensor_from_proto(proto)
    except (DecodeError, FormatError) as e:
        raise ctx.error(f"Could not parse `serialized` as TensorProto: {e}") from None
    if proto.dtype != ctx.attr("out_type"):
        raise ctx.error(
            f"Type mismatch between parsed tensor ({dtypes.name(proto.dtype)}) and dtype "
            f"({dtypes.name(ctx.attr('out_type'))})"
        )
    return value


# -- DecodeCompressed --------------------------------------------------------------------------------------------


def _inflate(ctx, data: bytes, gzip: bool) -> bytes:
    """What TF's ZlibInputStream reads (tsl/lib/io/zlib_inputstream.cc): inflate until the input ends (a truncated
    stream gives what inflated so far, no error); after a zlib stream's end the rest is ignored, while a GZIP
    stream's end resets inflate, so concatenated members are all read."""
    import zlib

    out = []
    while True:
        d = zlib.decompressobj(zlib.MAX_WBITS + 16 if gzip else zlib.MAX_WBITS)
        try:
            out.append(d.decompress(data))
        except zlib.error as e:
            raise ctx.error(f"inflate() failed: {e}") from None
        if not (gzip and d.eof and d.unused_data):
            return b"".join(out)
        data = d.unused_data


@op("DecodeCompressed")
def decode_compressed(ctx, data):
    """tf.io.decode_compressed: each string inflated ("ZLIB", "GZIP") or kept ("")."""
    kind = _as_bytes(ctx.attr("compression_type", b"")).decode()
    if kind not in ("", "ZLIB", "GZIP"):
        raise ctx.error(f"Only ZLIB, GZIP or NONE are supported compressions, got {kind!r}")
    if not kind:
        return _strings(ctx, data)
    return _map(ctx, data, lambda v: _inflate(ctx, v, kind == "GZIP"))


# -- DecodeJSONExample -------------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _json_values(kind: str, values: list) -> bytes:
    """A BytesList/FloatList/Int64List's values, one field each (JsonToBinaryString writes packed fields
    unpacked)."""
    import base64
    import struct

    if kind == "bytes":
        return b"".join(_field(1, base64.b64decode(v.replace("-", "+").replace("_", "/") + "==")) for v in values)
    if kind == "float":
        return b"".join(b"\x0d" + struct.pack("<f", float(v)) for v in values)
    return b"".join(b"\x08" + _varint(int(v)) for v in values)


def _json_example(ctx, text: bytes) -> bytes:
    """One JSON tf.train.Example as binary, as protobuf's JsonToBinaryString writes it: fields in the JSON's
    order (map entries too), repeated numbers unpacked. json_format checks the JSON first (TF's errors)."""
    import json

    from google.protobuf import json_format

    from jaxsm._proto import example_pb2

    try:
        json_format.Parse(text, example_pb2.Example())
    except json_format.ParseError as e:
        raise ctx.error(f"Error while parsing JSON: {e}") from None
    example = json.loads(text, object_pairs_hook=list)
    kinds = {f"{k}{suffix}": k for k in ("bytes", "float", "int64") for suffix in ("List", "_list")}
    out = b""
    for _, features in example:
        if features is None:
            continue
        entries = b""
        for _, feature_map in features:
            for fkey, feature in feature_map or []:
                body = b""
                for kind, lst in feature or []:
                    if lst is not None:
                        number = ("bytes", "float", "int64").index(kinds[kind]) + 1
                        values = dict(lst).get("value") or []
                        body += _field(number, _json_values(kinds[kind], values))
                entries += _field(1, _field(1, fkey.encode()) + _field(2, body))
        out += _field(1, entries)
    return out


@op("DecodeJSONExample")
def decode_json_example(ctx, json_examples):
    """tf.io.decode_json_example: JSON (protobuf's JSON mapping) tf.train.Examples as binary protos."""
    return _map(ctx, json_examples, lambda v: _json_example(ctx, v))


# -- WriteFile / MatchingFiles -----------------------------------------------------------------------------------


def _host_only(ctx, what: str) -> None:
    """A side effect, or a read of the file system, happens in every call, so it must not run once at trace time
    inside a compiled function: under ``jax.jit`` the call runs op by op instead (EagerFallbackWarning)."""
    import jax
    import jax.numpy as jnp

    from jaxsm.errors import StaticValueError

    if isinstance(jnp.zeros(()), jax.core.Tracer):  # a jit trace stages even constants
        raise ctx.error(f"{what} runs on the host in every call", StaticValueError)


def _local_path(ctx, path: bytes) -> bytes:
    if path.startswith(b"file://"):
        return path[len(b"file://") :]
    if re.match(rb"[A-Za-z][A-Za-z0-9+.-]*://", path):
        raise ctx.error(f"only local files are supported, not {path!r}")
    return path


@op("WriteFile", stateful=True)
def write_file(ctx, filename, contents):
    """tf.io.write_file: writes (replaces) the file, creating its missing parent directories as TF does."""
    import os

    _host_only(ctx, "WriteFile")
    name, data = _strings(ctx, filename, "the file name"), _strings(ctx, contents, "the contents")
    if name.ndim or data.ndim:
        raise ctx.error("the file name and the contents must be scalars")
    path = _local_path(ctx, name.item())
    try:
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data.item())
    except OSError as e:
        raise ctx.error(f"cannot write {path!r}: {e.strerror or e}") from None
    return []


def _glob(pattern: bytes) -> list[bytes]:
    """TF's GetMatchingPaths (file_system_helper.cc): fnmatch with FNM_PATHNAME per path component, from the
    directory before the first wildcard; '*' also matches names starting with '.'."""
    import fnmatch
    import os

    parts = pattern.split(b"/")
    first = next((i for i, p in enumerate(parts) if re.search(rb"[*?\[\\]", p)), None)
    if first is None:
        return [pattern] if os.path.lexists(pattern) else []
    paths = [b"/".join(parts[:first]) or (b"/" if pattern.startswith(b"/") else b"")]
    for k, part in enumerate(parts[first:]):
        last = k == len(parts) - first - 1
        found = []
        for base in paths:
            try:
                names = sorted(os.listdir(base or b"."))
            except OSError:
                continue
            for name in names:
                full = os.path.join(base, name) if base else name
                if fnmatch.fnmatchcase(name, part) and (last or os.path.isdir(full)):
                    found.append(full)
        paths = found
    return paths


@op("MatchingFiles", stateful=True)
def matching_files(ctx, pattern):
    """tf.io.matching_files: every file matching any of the patterns, sorted."""
    _host_only(ctx, "MatchingFiles")
    patterns = _strings(ctx, pattern, "the patterns")
    if patterns.ndim > 1:
        raise ctx.error(f"Input pattern tensor must be scalar or vector, but had shape: {list(patterns.shape)}")
    found = sorted(p for v in patterns.reshape(-1) for p in _glob(_local_path(ctx, v)))
    return _bytes_array(found, (len(found),))
