"""RE2 patterns and rewrite strings (what TF's regex ops take) run with Python's ``re``.

The pattern is translated to Python syntax with RE2's meanings: ``\\w \\d \\s \\b`` and their negations are ASCII
only (``\\s`` without ``\\v``), case folding is Unicode, ``$`` is the end of the text unless the ``m`` flag is set,
``\\z``, ``\\Q...\\E``, ``\\x{hex}``, POSIX classes ``[[:alpha:]]`` and Unicode general categories ``\\pL``,
``\\p{Lu}``, ``\\PN`` are supported. What RE2 rejects (lookarounds, backreferences, ``\\Z``) raises
:class:`Re2Error`, as does what jaxsm cannot translate (Unicode scripts such as ``\\p{Greek}``, ``\\C``, the
``U`` flag).
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

_MAX = sys.maxunicode


class Re2Error(ValueError):
    """A pattern RE2 rejects, or one jaxsm cannot translate."""


Ranges = list[tuple[int, int]]

_WORD: Ranges = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_DIGIT: Ranges = [(0x30, 0x39)]
_SPACE: Ranges = [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)]  # RE2's \s: [\t\n\f\r ]
_POSIX: dict[str, Ranges] = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": _DIGIT,
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": _WORD,
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}
_SHORTHAND = {"d": _DIGIT, "w": _WORD, "s": _SPACE}
_SURROGATES = (0xD800, 0xDFFF)
_ANY = "(?:(?![\\ud800-\\udfff]).)"  # "." without the surrogates that stand for invalid bytes
_W = "[0-9A-Za-z_]"
_BOUNDARY = f"(?:(?<!{_W})(?={_W})|(?<={_W})(?!{_W}))"
_NOT_BOUNDARY = f"(?:(?<!{_W})(?!{_W})|(?<={_W})(?={_W}))"


@functools.cache
def _categories() -> dict[str, Ranges]:
    """Code point ranges of each Unicode general category (``Lu``) and major class (``L``), from unicodedata."""
    out: dict[str, Ranges] = {}
    start, prev = 0, unicodedata.category(chr(0))
    for cp in range(1, _MAX + 2):
        cat = unicodedata.category(chr(cp)) if cp <= _MAX else None
        if cat != prev:
            for name in (prev, prev[0]):
                runs = out.setdefault(name, [])
                if runs and runs[-1][1] == start - 1:
                    runs[-1] = (runs[-1][0], cp - 1)
                else:
                    runs.append((start, cp - 1))
            start, prev = cp, cat
    out["Any"] = [(0, _MAX)]
    return out


def _complement(ranges: Ranges) -> Ranges:
    """The code points not in ``ranges``, except surrogates: the text's invalid bytes (decoded as surrogates)
    match no character class in RE2."""
    out, at = [], 0
    for lo, hi in sorted(ranges + [_SURROGATES]):
        if lo > at:
            out.append((at, lo - 1))
        at = max(at, hi + 1)
    return out + ([(at, _MAX)] if at <= _MAX else [])


def _class_body(ranges: Ranges) -> str:
    def ch(cp: int) -> str:
        return f"\\U{cp:08x}"

    lo_part = [(lo, min(hi, _SURROGATES[0] - 1)) for lo, hi in ranges if lo < _SURROGATES[0]]
    hi_part = [(max(lo, _SURROGATES[1] + 1), hi) for lo, hi in ranges if hi > _SURROGATES[1]]
    return "".join(ch(lo) if lo == hi else f"{ch(lo)}-{ch(hi)}" for lo, hi in lo_part + hi_part)


def _unicode_class(pattern: str, i: int) -> tuple[Ranges, int]:
    """The ranges of ``\\pX``/``\\p{Name}``/``\\PX`` starting at ``pattern[i]`` (the ``p``/``P``), and the index
    after it."""
    negate = pattern[i] == "P"
    if i + 1 >= len(pattern):
        raise Re2Error("missing Unicode class name after \\p")
    if pattern[i + 1] == "{":
        end = pattern.find("}", i + 2)
        if end < 0:
            raise Re2Error("missing } in \\p{...}")
        name, after = pattern[i + 2 : end], end + 1
    else:
        name, after = pattern[i + 1], i + 2
    if name.startswith("^"):
        negate, name = not negate, name[1:]
    ranges = _categories().get(name)
    if ranges is None:
        raise Re2Error(f"Unicode class \\p{{{name}}} is not supported (general categories only, not scripts)")
    return (_complement(ranges) if negate else ranges), after


def _hex_escape(pattern: str, i: int) -> tuple[str, int]:
    """``\\x{hex}`` at ``pattern[i]`` (the ``x``) as a Python escape; ``\\xhh`` is kept."""
    if pattern[i + 1 : i + 2] != "{":
        return "\\x", i + 1
    end = pattern.find("}", i + 2)
    if end < 0:
        raise Re2Error("missing } in \\x{...}")
    try:
        cp = int(pattern[i + 2 : end], 16)
    except ValueError:
        raise Re2Error(f"bad hexadecimal escape {pattern[i - 1 : end + 1]!r}") from None
    if cp > _MAX:
        raise Re2Error(f"code point {cp:#x} is out of range")
    return f"\\U{cp:08x}", end + 1


@functools.lru_cache(maxsize=512)
def translate(pattern: str) -> str:
    """The Python ``re`` pattern (to compile without ``re.ASCII``) that matches as RE2 matches ``pattern``."""
    multiline = re.search(r"\(\?[imsU]*m", pattern) is not None
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    class_start = False  # at the first character of a class, where "]" is literal
    while i < n:
        c, first = pattern[i], class_start
        class_start = False
        if c == "\\":
            if i + 1 >= n:
                raise Re2Error("trailing \\")
            e = pattern[i + 1]
            i += 2
            if e == "Q":
                end = pattern.find("\\E", i)
                end = n if end < 0 else end
                literal = pattern[i:end]
                out.append(re.escape(literal))
                i = end + 2
            elif e == "E":
                continue
            elif e in "pP":
                ranges, i = _unicode_class(pattern, i - 1)
                out.append(_class_body(ranges) if in_class else f"[{_class_body(ranges)}]")
            elif e == "x":
                text, i = _hex_escape(pattern, i - 1)
                out.append(text)
            elif e.lower() in _SHORTHAND:
                ranges = _SHORTHAND[e.lower()]
                ranges = _complement(ranges) if e.isupper() else ranges
                out.append(_class_body(ranges) if in_class else f"[{_class_body(ranges)}]")
            elif e in "bB" and not in_class:
                out.append(_BOUNDARY if e == "b" else _NOT_BOUNDARY)
            elif e == "z" and not in_class:
                out.append("\\Z")
            elif e in "ZCGXRKhNoucgkelLU" or (e in "123456789" and not re.match(r"[0-7]{2}", pattern[i : i + 2])):
                raise Re2Error(f"escape \\{e} is not supported by RE2 (or by jaxsm's translation of it)")
            else:
                out.append("\\" + e)
            continue
        if in_class:
            if c == "]" and not first:
                in_class = False
                out.append("]")
            elif c == "[" and pattern[i + 1 : i + 2] == ":":
                end = pattern.find(":]", i + 2)
                name = pattern[i + 2 : end] if end >= 0 else ""
                ranges = _POSIX.get(name.lstrip("^"))
                if ranges is None:
                    raise Re2Error(f"invalid character class range {pattern[i : end + 2]!r}")
                out.append(_class_body(_complement(ranges) if name.startswith("^") else ranges))
                i = end + 2
                continue
            else:
                out.append("\\" + c if c in "[]" else c)
            i += 1
            continue
        if c == "[":
            in_class, class_start = True, True
            out.append("[")
            if pattern[i + 1 : i + 2] == "^":  # a negated class does not match invalid bytes either
                out.append("^\\ud800-\\udfff")
                i += 1
            i += 1
            continue
        rep = re.match(r"\{(\d+)(?:,(\d*))?\}", pattern[i:])
        if rep and max(int(x) for x in rep.groups() if x) > 1000:
            raise Re2Error(f"invalid repetition size {rep.group(0)} (RE2 allows at most 1000)")
        if c == "$" and not multiline:
            out.append("\\Z")
        elif c == ".":
            out.append(_ANY)
        elif c == "(" and pattern[i + 1 : i + 2] == "?":
            m = re.match(r"\(\?(?:P<\w+>|P=|([imsU-]*)[:)])", pattern[i:])
            if m is None or m.group(0).startswith("(?P="):
                raise Re2Error(f"invalid or unsupported group {pattern[i : i + 4]!r}... (RE2 has no lookarounds)")
            if "U" in (m.group(1) or ""):
                raise Re2Error("the U (ungreedy) flag is not supported")
            out.append(c)
        else:
            out.append(c)
        i += 1
    if in_class:
        raise Re2Error("missing ]")
    return "".join(out)


def rewrite(rewrite: str, groups: int) -> tuple[list[str | int], bool] | None:
    """RE2's rewrite string as literal parts and group numbers, and whether it is whole (RE2::Rewrite stops at an
    escape other than ``\\0``-``\\9`` and ``\\\\``); None when it names a group the pattern lacks (RE2's Replace
    and GlobalReplace then change nothing)."""
    if any(int(d) > groups for d in re.findall(r"\\(\d)", rewrite.replace("\\\\", "\0\0"))):
        return None
    parts: list[str | int] = []
    i = 0
    while i < len(rewrite):
        c, e = rewrite[i], rewrite[i + 1 : i + 2]
        if c != "\\":
            parts.append(c)
        elif e.isdigit() or e == "\\":
            parts.append(int(e) if e.isdigit() else e)
            i += 1
        else:
            return parts, False
        i += 1
    return parts, True


def expand(m: re.Match, parts: list[str | int]) -> str:
    return "".join(p if isinstance(p, str) else (m.group(p) or "") for p in parts)
