"""String tensors on the host: TF's string ops in NumPy, and string versions of the ops that only move elements.

XLA has no string type. A string tensor is a NumPy object array of ``bytes`` (what TF's ``.numpy()`` gives): a
constant of the trace, or -- when a function takes strings or uses a string lookup table -- a concrete value
while the call runs op by op on the host (jaxsm/compile.py ``host_values``). The ops here need concrete inputs
(``ctx.static``); under ``jax.jit`` with run-time strings they raise StaticValueError, which runs the call op
by op.

Ops that only move elements (Reshape, GatherV2, ConcatV2, StridedSlice, SelectV2, ...) are lowered once, for
numbers: their string version (``HOST_OPS``, used by the interpreter when an input is a string tensor) runs the
numeric lowering on the *positions* of the strings and picks the strings at the positions it returns, so TF's
exact semantics (masks, negative indices, broadcasting) come from the one lowering. TensorList and TF1
TensorArray ops on strings (tf.map_fn over a batch of serialized images or words) work the same way on lists of
positions.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxsm.dtypes import is_strings
from jaxsm.graph.tensor_list import TensorList
from jaxsm.graph.values import to_static
from jaxsm.ops import re2
from jaxsm.ops.registry import OPS, op

# -- helpers -------------------------------------------------------------------------------------------------


def _bytes_array(values: list[bytes] | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out.reshape(shape)


def _strings(ctx, x: Any, what: str = "the strings") -> np.ndarray:
    """A concrete string input as an object array of bytes."""
    x = np.asarray(ctx.static(x, what))
    if x.dtype.kind != "O":
        x = x.astype(object)
    flat = [v.encode() if isinstance(v, str) else v for v in x.reshape(-1)]
    return _bytes_array(flat, x.shape)


def _map(ctx, x: Any, fn: Callable[[bytes], Any], dtype: Any = object) -> np.ndarray:
    s = _strings(ctx, x)
    flat = [fn(v) for v in s.reshape(-1)]
    if dtype is object:
        return _bytes_array(flat, s.shape)
    return np.asarray(flat, dtype=dtype).reshape(s.shape)


# -- string versions of element-moving ops --------------------------------------------------------------------

# Ops whose outputs are elements of their string inputs, rearranged.
_MOVES = frozenset(
    {
        "Identity",
        "IdentityN",
        "Snapshot",
        "StopGradient",
        "PreventGradient",
        "EnsureShape",
        "PlaceholderWithDefault",
        "Reshape",
        "ExpandDims",
        "Squeeze",
        "Transpose",
        "ConcatV2",
        "Concat",
        "Pack",
        "Unpack",
        "GatherV2",
        "Gather",
        "GatherNd",
        "Slice",
        "StridedSlice",
        "Tile",
        "ReverseV2",
        "BroadcastTo",
        "Fill",
        "SelectV2",
        "Select",
        "Split",
        "SplitV",
        "PadV2",
        "Pad",
        "MirrorPad",
        "Roll",
        "ReverseSequence",
        "TensorScatterUpdate",
        "RaggedTensorToTensor",
        "SparseToDense",
        "OneHot",
        "DynamicStitch",
        "ParallelDynamicStitch",
        "DynamicPartition",
    }
)
# Ops that fill new elements with zeros: position 0 of their pool is b"", TF's zero string.
_FILLS = frozenset({"Pad", "DynamicStitch", "ParallelDynamicStitch"})
# Ops with some string outputs (the positions of the others are numbers): op -> the string outputs.
_MOVES_SOME = {"SparseFillEmptyRows": (1,)}
# Ops whose (numeric) outputs only depend on their string inputs' shapes.
_SHAPES = frozenset({"Shape", "ShapeN", "Size", "Rank"})


def _moved(ctx, args: list[Any]) -> list[Any]:
    """Run the numeric lowering of ``ctx.node.op`` on the positions of the string inputs' elements; map the
    positions it returns back to strings."""
    pool, stand_in, offset = [], [], 0
    if ctx.node.op in _FILLS:
        pool, offset = [_bytes_array([b""], (1,))], 1
    for a in args:
        if is_strings(a):
            pool.append(np.asarray(a, dtype=object).reshape(-1))
            stand_in.append(np.arange(offset, offset + a.size, dtype=np.int32).reshape(a.shape))
            offset += a.size
        else:
            stand_in.append(a)
    with jax.ensure_compile_time_eval():
        out = OPS[ctx.node.op].fn(ctx, *stand_in)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if ctx.node.op in _SHAPES:
        return [np.asarray(ctx.static(o, "a shape")) for o in outs]
    flat_pool = np.concatenate(pool) if pool else np.empty(0, dtype=object)
    moved = _MOVES_SOME.get(ctx.node.op, range(len(outs)))
    result = []
    for k, o in enumerate(outs):
        if k not in moved:
            result.append(o)
            continue
        idx = np.asarray(ctx.static(o, f"the positions {ctx.node.op} moves strings to"))
        result.append(flat_pool[idx.reshape(-1)].reshape(idx.shape) if idx.size else np.empty(idx.shape, object))
    return result


# TensorList and TF1 TensorArray ops -> their string outputs that are not lists (lists of strings, and TensorArray
# flows, which are lists, are recognised by type).
_LIST_OPS = {
    "TensorListReserve": (),
    "EmptyTensorList": (),
    "TensorListFromTensor": (),
    "TensorListSetItem": (),
    "TensorListGetItem": (0,),
    "TensorListStack": (0,),
    "TensorListGather": (0,),
    "TensorListScatter": (),
    "TensorListScatterV2": (),
    "TensorListScatterIntoExistingList": (),
    "TensorListConcat": (0,),
    "TensorListConcatV2": (0,),
    "TensorListSplit": (),
    "TensorListLength": (),
    "TensorListElementShape": (),
    "TensorListPushBack": (),
    "TensorListPopBack": (1,),
    "TensorListResize": (),
    "TensorArrayV3": (),
    "TensorArrayWriteV3": (),
    "TensorArrayReadV3": (0,),
    "TensorArrayGatherV3": (0,),
    "TensorArrayScatterV3": (),
    "TensorArrayConcatV3": (0,),
    "TensorArraySplitV3": (),
    "TensorArraySizeV3": (),
}


def _string_list(x: Any) -> bool:
    return isinstance(x, TensorList) and x.element_dtype == np.dtype(object)


def on_strings(node: Any, args: list[Any]) -> bool:
    """Whether ``node`` runs its string version: a string input, or a TensorList of strings (tf.map_fn over
    strings keeps its elements and results in TensorLists)."""
    if any(is_strings(a) for a in args):
        return True
    if node.op not in _LIST_OPS:
        return False
    dtype = node.dtype_attr("dtype" if node.op == "TensorArrayV3" else "element_dtype", None)
    return dtype == np.dtype(object) or any(_string_list(a) for a in args)


class _PositionsContext:
    """The node's context with a string ``element_dtype`` read as int32, the dtype of the positions."""

    def __init__(self, ctx):
        self._ctx = ctx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def dtype(self, name: str, *default: Any) -> np.dtype:
        d = self._ctx.dtype(name, *default)
        return np.dtype(np.int32) if d == np.dtype(object) else d


def _moved_lists(ctx, args: list[Any]) -> list[Any]:
    """A TensorList op on strings: the numeric lowering runs on lists of positions into a pool of the input
    strings, whose position 0 is b"" (what a reserved, never set element reads as in TF)."""
    pool: list[np.ndarray] = [_bytes_array([b""], (1,))]
    offset = 1

    def positions(a: np.ndarray) -> np.ndarray:
        nonlocal offset
        pool.append(np.asarray(a, dtype=object).reshape(-1))
        offset += a.size
        return np.arange(offset - a.size, offset, dtype=np.int32).reshape(a.shape)

    stand_in = []
    for a in args:
        if is_strings(a):
            a = positions(a)
        elif _string_list(a):
            items = None if a.items is None else jax.numpy.asarray(positions(np.asarray(a.items)))
            a = TensorList(items, a.length, np.dtype(np.int32), a.element_shape, a.capacity)
        stand_in.append(a)
    with jax.ensure_compile_time_eval():
        out = OPS[ctx.node.op].fn(_PositionsContext(ctx), *stand_in)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    flat_pool = np.concatenate(pool)

    def strings(idx: Any) -> np.ndarray:
        idx = np.asarray(ctx.static(idx, f"the positions {ctx.node.op} moves strings to"))
        return flat_pool[idx.reshape(-1)].reshape(idx.shape) if idx.size else np.empty(idx.shape, object)

    result = []
    for k, o in enumerate(outs):
        if isinstance(o, TensorList):
            items = None if o.items is None else strings(o.items)
            o = TensorList(items, o.length, np.dtype(object), o.element_shape, o.capacity)
        elif k in _LIST_OPS[ctx.node.op]:
            o = strings(o)
        result.append(o)
    return result


def _compare(equal: bool) -> Callable:
    def fn(ctx, x, y):
        a, b = _strings(ctx, x), _strings(ctx, y)
        out = np.vectorize(lambda u, v: (u == v) == equal, otypes=[bool])(a, b)
        return np.asarray(out, dtype=bool)

    return fn


def _concat(ctx, x, y):
    a, b = np.broadcast_arrays(_strings(ctx, x), _strings(ctx, y))
    return _bytes_array([u + v for u, v in zip(a.reshape(-1), b.reshape(-1), strict=True)], a.shape)


def _zeros_like(ctx, x):
    return _bytes_array([b""] * int(np.size(x)), np.shape(x))


HOST_OPS: dict[str, Callable] = {
    **{name: lambda ctx, *args: _moved(ctx, list(args)) for name in _MOVES | _SHAPES | set(_MOVES_SOME)},
    **{name: lambda ctx, *args: _moved_lists(ctx, list(args)) for name in _LIST_OPS},
    "Equal": _compare(True),
    "NotEqual": _compare(False),
    "ZerosLike": _zeros_like,
    "Add": _concat,
    "AddV2": _concat,
}


# -- TF's string ops (string_ops.cc and friends) -----------------------------------------------------------------


def _case(ctx, x, upper: bool):
    encoding = ctx.attr("encoding", "")
    if encoding not in ("", "utf-8", "UTF-8"):
        raise ctx.error(f"encoding {encoding!r} is not supported (TF accepts '' and 'utf-8')")
    if encoding:  # Unicode case mapping

        def convert(s: bytes) -> bytes:
            # TF hands ICU a C string (it ends at a NUL); ICU replaces invalid UTF-8 with U+FFFD, as Python does
            text = s.split(b"\0", 1)[0].decode("utf-8", errors="replace")
            return (text.upper() if upper else text.lower()).encode()

        return _map(ctx, x, convert)
    return _map(ctx, x, lambda s: s.upper() if upper else s.lower())  # ASCII letters only


@op("StringLower")
def string_lower(ctx, x):
    return _case(ctx, x, upper=False)


@op("StringUpper")
def string_upper(ctx, x):
    return _case(ctx, x, upper=True)


@op("StringStrip")
def string_strip(ctx, x):
    return _map(ctx, x, lambda s: s.strip(b" \t\n\v\f\r"))


@op("StringLength")
def string_length(ctx, x):
    unit = ctx.attr("unit", "BYTE")
    if unit == "UTF8_CHAR":  # TF counts the bytes that are not UTF-8 continuation bytes, valid UTF-8 or not
        return _map(ctx, x, lambda s: sum(not _is_trail_byte(b) for b in s), np.int32)
    return _map(ctx, x, len, np.int32)


@op("StringJoin")
def string_join(ctx, *inputs):
    sep = ctx.attr("separator", b"")
    sep = sep.encode() if isinstance(sep, str) else sep
    parts = np.broadcast_arrays(*[_strings(ctx, v) for v in inputs]) if inputs else []
    if not parts:
        return _bytes_array([b""], ())
    flat = [sep.join(items) for items in zip(*[p.reshape(-1) for p in parts], strict=True)]
    return _bytes_array(flat, parts[0].shape)


@op("ReduceJoin", static=(1,))
def reduce_join(ctx, x, axes):
    """Join along each axis of ``reduction_indices`` in the order given (negative axes count from the end)."""
    s = _strings(ctx, x)
    sep = _as_bytes(ctx.attr("separator", b""))
    axes = [int(a) for a in np.asarray(axes).reshape(-1)]
    for a in axes:
        if not -s.ndim <= a < s.ndim:
            raise ctx.error(f"axis {a} is out of range for a rank-{s.ndim} input")
    axes = [a % s.ndim for a in axes]
    out = s
    for a in axes:
        moved = np.moveaxis(out, a, -1)
        joined = [sep.join(row) for row in moved.reshape(-1, moved.shape[-1])] if moved.size else []
        if not moved.size:
            joined = [b""] * int(np.prod(moved.shape[:-1], dtype=np.int64))
        out = np.moveaxis(_bytes_array(joined, moved.shape[:-1] + (1,)), -1, a)
    if not ctx.attr("keep_dims", False):
        out = out.reshape(tuple(d for i, d in enumerate(out.shape) if i not in axes))
    return out


def _re2_compile(ctx, pattern: bytes) -> re.Pattern:
    """A pattern compiled to run as TF's RE2 does (jaxsm/ops/re2.py translates RE2's syntax): on UTF-8 text
    (decoded, invalid bytes as lone surrogates, so ``.`` and empty matches step by character)."""
    try:
        return re.compile(re2.translate(pattern.decode("utf-8")))
    except (re.error, re2.Re2Error, UnicodeDecodeError) as e:
        raise ctx.error(f"invalid regular expression {pattern!r}: {e}") from None


def _utf8_text(s: bytes) -> str:
    return s.decode("utf-8", errors="surrogateescape")


def _re2_global_replace(compiled: re.Pattern, text: str, rewrite: list) -> str:
    """RE2::GlobalReplace: like re.sub, except that an empty match where the previous match ended is skipped
    (Python 3.7+ replaces it too: x* on "xxa" gives "--a-" where RE2 gives "-a-")."""
    out, at, last_end = [], 0, -1
    while at <= len(text):
        m = compiled.search(text, at)
        if m is None:
            break
        out.append(text[at : m.start()])
        if m.start() == m.end() == last_end:
            out.append(text[at : at + 1])
            at += 1
            continue
        out.append(re2.expand(m, rewrite))
        at = last_end = m.end()
    return "".join(out) + text[at:]


def _regex_replace(ctx, x, pattern: bytes, rewrite: bytes):
    compiled = _re2_compile(ctx, pattern)
    # RE2's rewrite string: \0..\9 for groups, \\ for a backslash. RE2 replaces nothing when it names a missing
    # group, and at another escape stops each replacement (GlobalReplace) or replaces nothing (Replace).
    parsed = re2.rewrite(rewrite.decode("utf-8", errors="surrogateescape"), compiled.groups)
    if parsed is None:
        replace = lambda t: t  # noqa: E731
    elif ctx.attr("replace_global", True):
        replace = lambda t: _re2_global_replace(compiled, t, parsed[0])  # noqa: E731
    else:

        def replace(t: str) -> str:
            m = compiled.search(t)
            return t if m is None or not parsed[1] else t[: m.start()] + re2.expand(m, parsed[0]) + t[m.end() :]

    return _map(ctx, x, lambda s: replace(_utf8_text(s)).encode("utf-8", errors="surrogateescape"))


def _as_bytes(v: Any) -> bytes:
    v = np.asarray(v).reshape(-1)[0] if isinstance(v, np.ndarray) else v
    return v.encode() if isinstance(v, str) else bytes(v)


@op("StaticRegexReplace")
def static_regex_replace(ctx, x):
    return _regex_replace(ctx, x, _as_bytes(ctx.attr("pattern")), _as_bytes(ctx.attr("rewrite")))


@op("RegexReplace")
def regex_replace(ctx, x, pattern, rewrite):
    return _regex_replace(
        ctx, x, _as_bytes(_strings(ctx, pattern, "the pattern")), _as_bytes(_strings(ctx, rewrite, "the rewrite"))
    )


def _full_match(ctx, x, pattern: bytes):
    compiled = _re2_compile(ctx, pattern)
    return _map(ctx, x, lambda s: compiled.fullmatch(_utf8_text(s)) is not None, bool)


@op("StaticRegexFullMatch")
def static_regex_full_match(ctx, x):
    return _full_match(ctx, x, _as_bytes(ctx.attr("pattern")))


@op("RegexFullMatch")
def regex_full_match(ctx, x, pattern):
    return _full_match(ctx, x, _as_bytes(_strings(ctx, pattern, "the pattern")))


def _is_trail_byte(b: int) -> bool:
    return b & 0xC0 == 0x80


def _shift_utf8(s: bytes, chars: int, at: int, forward: bool) -> tuple[int, bool]:
    """TF's Forward/BackNUTF8CharPositions (kernels/string_util.h): move ``at`` by up to ``chars`` characters,
    a character being a byte and its continuation bytes; whether all ``chars`` moves were made (never for a
    negative count)."""
    moved = 0
    while moved < chars and (at < len(s) if forward else at > 0):
        at += 1 if forward else -1
        while 0 < at < len(s) and _is_trail_byte(s[at]):
            at += 1 if forward else -1
        moved += 1
    return at, moved == chars


def _substr_utf8(s: bytes, pos: int, length: int) -> bytes | None:
    """Substr's UTF8_CHAR unit (substr_op.cc UpdatePosAndLenForUtf8); None where TF raises."""
    if pos >= 0:
        start, ok = _shift_utf8(s, pos, 0, forward=True)
        end = _shift_utf8(s, length, start, forward=True)[0]
        return s[start:end] if ok else None
    skip = max(-pos - length, 0)  # characters after the substring's end
    end, ok_end = _shift_utf8(s, skip, len(s), forward=False)
    start, ok_start = _shift_utf8(s, -pos - skip, end, forward=False)
    return s[start:end] if ok_end and ok_start else None


def _substr_bytes(s: bytes, pos: int, length: int) -> bytes | None:
    """Substr's BYTE unit; None where TF raises. A negative length is a huge unsigned one: the rest."""
    pos = pos + len(s) if pos < 0 else pos
    if not 0 <= pos <= len(s):
        return None
    return s[pos:] if length < 0 else s[pos : pos + length]


@op("Substr")
def substr(ctx, x, pos, length):
    """Substrings by byte (or UTF-8 character) position; a negative position counts from the end. TF raises for
    a position out of range; so does this."""
    s = _strings(ctx, x)
    p = np.asarray(ctx.static(pos, "pos"))
    n = np.asarray(ctx.static(length, "len"))
    if p.shape != n.shape:
        raise ctx.error(f"pos and len should have the same shape, got {p.shape} vs. {n.shape}")
    if p.ndim and p.shape != s.shape and len(np.broadcast_shapes(s.shape, p.shape)) > 2:
        raise ctx.error("TF's Substr broadcasts pos/len against the input in at most 2 dimensions")
    s, p, n = np.broadcast_arrays(s, p, n)
    cut = _substr_utf8 if ctx.attr("unit", "BYTE") == "UTF8_CHAR" else _substr_bytes
    out = []
    for v, i, k in zip(s.reshape(-1), p.reshape(-1), n.reshape(-1), strict=True):
        piece = cut(v, int(i), int(k))
        if piece is None:
            raise ctx.error(f"pos {int(i)} out of range for string {v!r}")
        out.append(piece)
    return _bytes_array(out, s.shape)


def _number_format(ctx, kind: str) -> str:
    """The printf format as_string_op.cc builds: ``%``, the fill flag, width, precision, conversion."""
    precision, width = ctx.attr("precision", -1), ctx.attr("width", -1)
    scientific, shortest = ctx.attr("scientific", False), ctx.attr("shortest", False)
    fill = ctx.attr("fill", "")
    fill = fill.decode() if isinstance(fill, bytes) else fill
    if fill not in ("", " ", "+", "-", "0", "#"):
        raise ctx.error(f"fill {fill!r} is not supported (TF accepts ' ', '+', '-', '0', '#')")
    if kind in "iub" and (precision > -1 or scientific or shortest):
        raise ctx.error("precision, scientific and shortest apply to floating-point and complex inputs only")
    if scientific and shortest:
        raise ctx.error("cannot select both scientific and shortest notation")
    fmt = "%" + fill + (str(width) if width > -1 else "") + (f".{precision}" if precision > -1 else "")
    if kind == "u":  # printf's %u ignores the sign flags
        return fmt.replace("+", "").replace(" ", "") + "d"
    if kind == "i":
        return fmt + "d"
    return fmt + ("g" if shortest else "e" if scientific else "f")


def _printf_float(fmt: str, value: Any) -> str:
    # C's printf pads inf and nan with spaces even with the '0' flag
    return (fmt if np.isfinite(value) else fmt.replace("%0", "%", 1)) % float(value)


@op("AsString")
def as_string(ctx, x):
    """Numbers formatted as TF's as_string_op.cc does (printf: %d, %f / %e / %g with the precision), padded to
    ``width`` with ``fill``; bools as true/false, unpadded."""
    if is_strings(x):  # printf %s: only width and the '-' flag apply
        width, left = ctx.attr("width", -1), _as_bytes(ctx.attr("fill", b"")) == b"-"
        return _map(ctx, x, lambda s: s.ljust(width) if left else s.rjust(width))
    v = np.asarray(ctx.static(x, "the values"))
    if v.dtype.kind not in "biufc":  # bfloat16 (ml_dtypes), printed through float as TF does
        v = v.astype(np.float32)
    fmt = _number_format(ctx, v.dtype.kind)
    if v.dtype.kind == "b":  # TF ignores width and fill for bools
        flat = [b"true" if e else b"false" for e in v.reshape(-1)]
    elif v.dtype.kind == "c":
        flat = [f"({_printf_float(fmt, e.real)},{_printf_float(fmt, e.imag)})".encode() for e in v.reshape(-1)]
    elif v.dtype.kind == "f":
        flat = [_printf_float(fmt, e).encode() for e in v.reshape(-1)]
    else:
        flat = [(fmt % int(e)).encode() for e in v.reshape(-1)]
    return _bytes_array(flat, v.shape)


@op("StringToNumber")
def string_to_number(ctx, x):
    dtype = ctx.dtype("out_type", np.dtype(np.float32))

    def parse(s: bytes):
        """strtod / strtol rules: surrounding whitespace, a sign, decimal or hex floats, inf/nan; no '_'."""
        text = s.decode("utf-8", errors="replace").strip(" \t\n\v\f\r")  # ASCII whitespace only
        try:
            if dtype.kind == "f":  # safe_strtof / safe_strtod, as DecodeCSV: correctly rounded, nan(chars)
                from jaxsm.ops.text_io import _parse_float

                value = _parse_float(s, dtype)
                if value is None:
                    raise ValueError
                return value
            if not re.fullmatch(r"[+-]?[0-9]+", text):
                raise ValueError
            value = int(text, 10)
        except ValueError:
            raise ctx.error(f"StringToNumber could not parse {s!r} as {dtype.name}") from None
        if not np.iinfo(dtype).min <= value <= np.iinfo(dtype).max:
            raise ctx.error(f"StringToNumber: {s!r} is out of range for {dtype.name}")
        return value

    return _map(ctx, x, parse, dtype)


@op("StringSplitV2")
def string_split_v2(ctx, x, sep):
    """Split each string of a vector (a SparseTensor: indices, values, dense shape). An empty separator splits
    on runs of whitespace, dropping empty pieces; otherwise empty pieces are kept. ``maxsplit`` limits splits."""
    s = _strings(ctx, x)
    if s.ndim != 1:
        raise ctx.error(f"input must be a vector, got shape {s.shape}")
    separator = _as_bytes(_strings(ctx, sep, "the separator"))
    maxsplit = ctx.attr("maxsplit", -1)
    rows = [_split_v2(v, separator, maxsplit) for v in s]
    return _sparse(rows)


def _split_v2(s: bytes, sep: bytes, maxsplit: int) -> list[bytes]:
    """string_split_op.cc SplitV2: as Python's split, except that a whitespace split that reaches ``maxsplit``
    ends with the rest of the string after the whitespace following the last piece, even when it is empty."""
    if sep or maxsplit <= 0:
        return s.split(sep or None, maxsplit) if maxsplit else [s]
    pieces = s.split(None, maxsplit)
    if len(pieces) == maxsplit:
        pieces.append(b"")
    return pieces


@op("StringSplit")
def string_split(ctx, x, delimiter):
    """TF1 tf.string_split: each byte of ``delimiter`` separates (empty delimiter: every character)."""
    s = _strings(ctx, x)
    if s.ndim != 1:
        raise ctx.error(f"input must be a vector, got shape {s.shape}")
    delim = _as_bytes(_strings(ctx, delimiter, "the delimiter"))
    skip_empty = ctx.attr("skip_empty", True)
    rows = []
    for v in s:
        if not v:  # string_split_op.cc: an empty string has no pieces, even an empty one with skip_empty off
            pieces = []
        elif not delim:
            pieces = [v[i : i + 1] for i in range(len(v))]
        else:
            pieces = re.split(b"[" + re.escape(delim) + b"]", v)
        rows.append([p for p in pieces if p or not skip_empty])
    return _sparse(rows)


def _sparse(rows: list[list[bytes]]):
    indices = [(i, j) for i, row in enumerate(rows) for j in range(len(row))]
    values = [p for row in rows for p in row]
    width = max((len(r) for r in rows), default=0)
    return (
        np.asarray(indices, dtype=np.int64).reshape(-1, 2),
        _bytes_array(values, (len(values),)),
        np.asarray([len(rows), width], dtype=np.int64),
    )


@op("StringNGrams")
def string_ngrams(ctx, data, splits):
    """N-grams of each row of a ragged string tensor (string_ngrams_op.cc): for each width in ``ngram_widths``
    in turn, the windows of the row padded with up to ``pad_width`` (-1: width - 1) left/right pad strings,
    joined by ``separator``; ``preserve_short_sequences`` gives a too-short non-empty row one n-gram of all of
    it (with ``pad_width`` pads)."""
    tokens = _strings(ctx, data, "the tokens").reshape(-1)
    bounds = np.asarray(ctx.static(splits, "the row splits"), np.int64).reshape(-1)
    sep, left, right = (_as_bytes(ctx.attr(a, b"")) for a in ("separator", "left_pad", "right_pad"))
    widths, pad, preserve = list(ctx.attr("ngram_widths")), ctx.attr("pad_width"), ctx.attr("preserve_short_sequences")
    if any(w <= 0 for w in widths):
        raise ctx.error("ngram_widths must contain positive values")
    if bounds.size and (bounds[0] != 0 or bounds[-1] != tokens.size or np.any(np.diff(bounds) < 0)):
        raise ctx.error(f"invalid row splits {bounds.tolist()} for {tokens.size} tokens")

    def pad_of(width: int) -> int:
        return min(width - 1 if pad < 0 else pad, width - 1)

    def grams(row: np.ndarray, width: int, count: int) -> list[bytes]:
        out = []
        for k in range(count):
            p = pad_of(width)
            n_left, n_right = max(0, p - k), max(0, p - (count - k - 1))
            start = 0 if n_left else k - p
            taken = list(row[start : start + width - n_left - n_right])
            out.append(sep.join([left] * n_left + taken + [right] * n_right))
        return out

    out, out_splits = [], [0]
    if tokens.size and bounds.size:
        for i in range(bounds.size - 1):
            row = tokens[bounds[i] : bounds[i + 1]]
            made = []
            for w in widths:
                made += grams(row, w, max(0, row.size + 2 * pad_of(w) - w + 1))
            if preserve and row.size and not made:
                if pad < 0:
                    raise ctx.error("pad_width must be >= 0 when preserve_short_sequences is set")
                made = grams(row, row.size + 2 * pad, 1)
            out += made
            out_splits.append(len(out))
    else:
        out_splits = [0] * bounds.size
    return _bytes_array(out, (len(out),)), np.asarray(out_splits, np.asarray(splits).dtype)


_CODECS = {"UTF-8": "utf-8", "UTF-16-BE": "utf-16-be", "UTF-32-BE": "utf-32-be"}


def _codec(ctx, attr: str) -> str:
    name = ctx.attr(attr)
    name = name.decode() if isinstance(name, bytes) else name
    if name not in _CODECS:
        raise ctx.error(f"encoding {name!r} is not supported (UTF-8, UTF-16-BE, UTF-32-BE)")
    return _CODECS[name]


def _decode(ctx, x, with_offsets: bool):
    """Each string's code points, flattened with row splits (and each one's byte offset). Each maximal invalid
    byte sequence (as ICU and Python's decoder delimit them) gives ``replacement_char`` (errors='replace'), is
    dropped ('ignore') or raises ('strict')."""
    s = _strings(ctx, x).reshape(-1)
    codec, errors = _codec(ctx, "input_encoding"), ctx.attr("errors", "replace")
    errors = errors.decode() if isinstance(errors, bytes) else errors
    replacement = ctx.attr("replacement_char", 0xFFFD)
    controls = ctx.attr("replace_control_characters", False)
    chars, offsets, splits = [], [], [0]

    def add(text: str, pos: int) -> None:
        for ch in text:
            cp = ord(ch)
            if not (controls and cp < 0x20 and errors == "ignore"):  # C0 controls only, as TF; 'ignore' drops them
                chars.append(replacement if controls and cp < 0x20 else cp)
                offsets.append(pos)
            pos += len(ch.encode(codec))

    for v in s:
        pos = 0
        while pos < len(v):
            try:
                add(v[pos:].decode(codec), pos)
                break
            except UnicodeDecodeError as e:
                add(v[pos : pos + e.start].decode(codec), pos)
                if errors == "strict":
                    raise ctx.error(f"invalid {codec} in {v!r} at byte {pos + e.start}") from None
                if errors == "replace":
                    chars.append(replacement), offsets.append(pos + e.start)
                pos += e.end
        splits.append(len(chars))
    out = [np.asarray(splits, ctx.dtype("Tsplits", np.dtype(np.int64))), np.asarray(chars, np.int32)]
    return (*out, np.asarray(offsets, np.int64)) if with_offsets else tuple(out)


@op("UnicodeDecode")
def unicode_decode(ctx, x):
    return _decode(ctx, x, with_offsets=False)


@op("UnicodeDecodeWithOffsets")
def unicode_decode_with_offsets(ctx, x):
    return _decode(ctx, x, with_offsets=True)


@op("UnicodeEncode")
def unicode_encode(ctx, values, splits):
    """Rows of code points (ragged: values + row splits) as strings; an invalid code point (a surrogate or
    beyond U+10FFFF) gives ``replacement_char``, is dropped ('ignore') or raises ('strict')."""
    cps = np.asarray(ctx.static(values, "the code points")).reshape(-1)
    bounds = np.asarray(ctx.static(splits, "the row splits"), np.int64).reshape(-1)
    codec, errors = _codec(ctx, "output_encoding"), ctx.attr("errors", "replace")
    errors = errors.decode() if isinstance(errors, bytes) else errors
    replacement = ctx.attr("replacement_char", 0xFFFD)
    out = []
    for i in range(bounds.size - 1):
        text = []
        for cp in cps[bounds[i] : bounds[i + 1]].tolist():
            if 0 <= cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF:
                text.append(chr(cp))
            elif errors == "strict":
                raise ctx.error(f"invalid code point {cp}")
            elif errors == "replace":
                text.append(chr(replacement))
        out.append("".join(text).encode(codec))
    return _bytes_array(out, (len(out),))


# -- formatting values (tf.strings.format, tf.print) ------------------------------------------------------------


def _element_text(x: Any, quote: bool = True) -> str:
    """One element as TF's ``PrintOneElement`` shows it: floats by the shortest of 6/9 (float32) or 15/17 (float64)
    significant digits that round-trips, bools as 1/0, strings quoted (print_v2) or bare."""
    if isinstance(x, bytes):
        text = x.decode("utf-8", errors="backslashreplace")
        return '"' + text + '"' if quote else text
    if isinstance(x, np.bool_ | bool):
        return "1" if x else "0"
    if isinstance(x, np.complexfloating):
        return f"({_element_text(x.real)},{_element_text(x.imag)})"
    if isinstance(x, np.floating):
        if np.isnan(x):
            return "nan"
        if np.isinf(x):
            return "inf" if x > 0 else "-inf"
        wide = x.dtype == np.float64
        kind = np.float64 if wide else np.float32
        short, long = (15, 17) if wide else (6, 9)
        text = f"{float(x):.{short}g}"
        return text if kind(text) == kind(x) else f"{float(x):.{long}g}"
    return str(int(x)) if isinstance(x, np.integer) else str(x)


def summarize_value(v: np.ndarray, summarize: int, print_v2: bool = True) -> str:
    """``v`` as TF's ``Tensor::SummarizeValue(summarize, print_v2)`` writes it (tensor.cc). print_v2
    (tf.strings.format, tf.print): nested brackets, at most ``summarize`` entries at each end of every dimension
    with "..." between (all when negative), rows on new lines. Otherwise (tf.Assert's data): the first
    ``summarize`` elements in row-major order, inner dimensions bracketed, "..." when cut."""
    v = np.asarray(v)
    flat = v.reshape(-1)
    if v.ndim == 0 or not print_v2:
        return _summarize_v1(v, flat.size if summarize < 0 else min(summarize, flat.size))
    if v.size == 0:
        return "[]"
    ends = v.size if summarize < 0 else summarize

    def spacing(dim: int) -> str:
        return " " if dim == v.ndim - 1 else "\n" * (v.ndim - dim - 1) + " " * (dim + 1)

    def dim_text(dim: int, sub: np.ndarray) -> str:
        if dim == v.ndim:
            return _element_text(sub.reshape(-1)[0] if isinstance(sub, np.ndarray) else sub)
        n = sub.shape[0]
        head = [dim_text(dim + 1, sub[i]) for i in range(min(ends, n))]
        tail = [dim_text(dim + 1, sub[i]) for i in range(max(ends, n - ends), n)]
        items = head + (["..."] if n > 2 * ends else []) + tail
        return "[" + spacing(dim).join(items) + "]"

    return dim_text(0, v)


def _summarize_v1(v: np.ndarray, limit: int) -> str:
    """TF's ``PrintOneDim``: the first ``limit`` elements, each inner row in brackets."""
    flat, out, taken = v.reshape(-1), [], 0
    if v.ndim == 0:
        return " ".join(_element_text(x, quote=False) for x in flat[:limit]) + ("..." if flat.size > limit else "")

    def dim(d: int) -> None:
        nonlocal taken
        if taken >= limit:
            return
        if d == v.ndim - 1:
            for i in range(v.shape[d]):
                if taken >= limit:
                    if d != 0:
                        out.append("...")
                    return
                out.append((" " if i else "") + _element_text(flat[taken], quote=False))
                taken += 1
            return
        for _ in range(v.shape[d]):
            opened = taken < limit
            if opened:
                out.append("[")
            dim(d + 1)
            if taken < limit or opened:
                out.append("]")

    dim(0)
    return "".join(out) + ("..." if flat.size > limit else "")


def _only_printed(ctx) -> bool:
    """Whether this node's output only reaches PrintV2 (tf.print's message), which compiled functions skip."""
    pos = ctx.position
    if pos is None:
        return False
    body, k = pos
    if any(src == k for src, _ in body.outputs):
        return False
    users = [body.nodes[j].op for j, refs in enumerate(body.node_inputs) for src, _ in refs if src == k]
    return all(u == "PrintV2" for u in users)


@op("StringFormat", stateful=True)
def string_format(ctx, *inputs):
    """``tf.strings.format`` / tf.print's message. Values known now are formatted as TF does; a run-time value is
    needed on the host (StaticValueError: the call runs op by op), unless only tf.print reads the message, which
    a compiled function does not run."""
    template, placeholder = _as_bytes(ctx.attr("template", b"%s")), _as_bytes(ctx.attr("placeholder", b"%s"))
    values = [to_static(x) for x in inputs]
    if any(v is None for v in values):
        if not _only_printed(ctx):
            ctx.static(next(x for x, v in zip(inputs, values, strict=True) if v is None), "a value formatted as text")
        return _bytes_array([b"<run-time value>"], ())
    pieces = template.split(placeholder)
    if len(pieces) != len(inputs) + 1:
        raise ctx.error(f"the template has {len(pieces) - 1} placeholders for {len(inputs)} values")
    parts = [summarize_value(np.asarray(v), ctx.attr("summarize", 3)).encode() for v in values]
    return _bytes_array([pieces[0] + b"".join(p + rest for p, rest in zip(parts, pieces[1:], strict=True))], ())


@op("PrintV2", stateful=True)
def print_v2(ctx, message):
    """tf.print: printed when the call runs op by op, as TF prints at every call; a compiled function has no
    host side effects, so it prints nothing (gaps table)."""
    from jaxsm.compile import OP_BY_OP

    text = to_static(message)
    if OP_BY_OP.get() and text is not None:
        stream = sys.stdout if _as_bytes(ctx.attr("output_stream", b"stderr")) == b"stdout" else sys.stderr
        end = _as_bytes(ctx.attr("end", b"\n")).decode()
        print(np.asarray(text).reshape(-1)[0].decode(errors="replace"), end=end, file=stream)
    return []
