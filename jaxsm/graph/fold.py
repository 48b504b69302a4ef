"""Fold values known at trace time with NumPy instead of one small XLA program per primitive.

The interpreter folds a pure node whose inputs are all known at trace time (shape arithmetic, index vectors,
preprocessing of constants). Run eagerly, every new primitive and shape in such a lowering is a separate XLA
compilation of 5-25 ms: BERT-base's first call compiled 20 of them (0.27 s), an LSTM's 10 (0.15 s),
EfficientNetB0's 6. Here the lowering is staged instead (``jax.make_jaxpr``; inputs it needs the values of, as
when run eagerly, are staged as constants) and its jaxpr evaluated with NumPy, for the primitives whose NumPy
result is bit for bit XLA's: integer arithmetic and comparisons, layout and indexing primitives, and the
correctly rounded float operations (add, sub, mul, div, sqrt, max, min). Anything else -- transcendental
functions, float reductions (XLA's summation order), random bits -- goes to XLA: with ``xla=True`` (the
interpreter) the staged jaxpr runs as one jitted program, so a node is one compilation rather than one per
primitive (a float32 -> int16 Cast run op by op: 1 instead of 13). A lowering that reads an input's value while
staged (a bounds check, a value-dependent path) is staged again with the values as constants (cached under
them); if that jaxpr needs XLA, :class:`Unfoldable` is raised and the caller runs the lowering eagerly under
``jax.ensure_compile_time_eval`` as before.

Float add, sub, mul, div and sqrt fold only where JAX's default backend is the CPU: XLA:GPU's float division
is not correctly rounded (7 / 3 in float32 is one ulp off on an H200) and it may contract a multiply and an add
into one FMA, so there the values come from the backend itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax import lax

from jaxsm.graph.values import TRACED_READS


class Unfoldable(Exception):
    """This jaxpr needs XLA (a primitive or case NumPy does not reproduce exactly)."""


def fold(
    cache: dict,
    key: Any,
    fn: Callable[..., Any],
    args: list[np.ndarray],
    static: tuple[int, ...] = (),
    xla: bool = False,
) -> Any:
    """``fn(*args)`` for NumPy ``args``, as NumPy arrays computed without XLA; raises :class:`Unfoldable` where
    that is not exact (or the lowering cannot be staged). With ``xla``, where NumPy is not exact the staged
    lowering runs as one jitted XLA program (see :class:`_Staged`), and Unfoldable is left for lowerings that
    only run eagerly.

    The staged jaxpr is kept in ``cache`` under ``key`` (the node), the values of the ``static`` arguments and the
    other inputs' shapes and dtypes, so a node folded again -- a loop body traced once per iteration, a function
    traced once per input shape -- costs one NumPy evaluation. A lowering that needs more of its inputs' values
    to stage is staged with all of them as constants, cached under the values too."""
    fixed = tuple((i, args[i].tobytes()) for i in static if i < len(args))
    dynamic = [i for i in range(len(args)) if i not in static]
    sig = (key, jax.config.jax_enable_x64, fixed, tuple((args[i].shape, args[i].dtype.str) for i in dynamic))
    entry = cache.get(sig)
    if entry is None:
        if len(cache) >= _MAX_CACHED or cache.get(_PROGRAMS, 0) >= _MAX_PROGRAMS:
            cache.clear()  # e.g. a Python loop (op by op) folding a node for every new value or shape

        def staged(*values):
            full = list(args)
            for i, v in zip(dynamic, values):
                full[i] = v
            return fn(*full)

        try:
            entry = _stage(staged, [args[i] for i in dynamic])
        except Unfoldable:
            entry = _NEEDS_VALUES
        cache[sig] = entry
    inputs = [args[i] for i in dynamic]
    if entry is _NEEDS_VALUES:
        if sum(a.size for a in inputs) > _MAX_VALUE_KEY:  # large constants stay out of the cache's keys
            raise Unfoldable("a lowering needs the values of large inputs")
        vsig = sig + (tuple(a.tobytes() for a in inputs),)
        entry = cache.get(vsig)
        if entry is None:
            try:
                entry = _stage(lambda: fn(*args), [])
            except Unfoldable as e:
                entry = str(e)
            cache[vsig] = entry
        inputs = []
    if isinstance(entry, str):  # known from staging: this fold needs XLA every time, primitive by primitive
        raise Unfoldable(entry)
    if isinstance(entry, _Computed):
        return jax.tree.map(np.copy, entry.out)
    if entry.unknown is None:
        try:
            flat = _eval(entry.closed.jaxpr, [np.asarray(c) for c in entry.closed.consts], inputs)
            return jax.tree.unflatten(entry.treedef, flat)
        except Unfoldable:
            if not xla or entry.program is None:
                raise
    elif not xla or entry.program is None:
        raise Unfoldable(f"primitive {entry.unknown}")
    if jax.config.jax_disable_jit:  # (jax.disable_jit(): compiled executables cannot run there)
        raise Unfoldable("jit disabled")
    consts = list(entry.closed.consts)
    if entry.compiled is None:  # (an entry is for one set of input shapes and dtypes: one executable)
        # compiled ahead and called as such: run under an outer trace, a jitted call would be staged into it, and
        # under jax.ensure_compile_time_eval it is not the program XLA:CPU runs (a bfloat16 mean 1 ulp off)
        entry.compiled = entry.program.lower(consts, *inputs).compile()
        cache[_PROGRAMS] = cache.get(_PROGRAMS, 0) + 1  # each holds an executable: their number is bounded too
    flat = entry.compiled(consts, *inputs)
    return jax.tree.unflatten(entry.treedef, [np.asarray(v) for v in flat])


_NEEDS_VALUES = object()
_PROGRAMS = "compiled programs"  # (a cache entry: how many entries hold one)
_MAX_CACHED = 20000
_MAX_PROGRAMS = 2000
_MAX_VALUE_KEY = 4096  # elements: index vectors and shapes, not weights


class _Staged:
    """A staged lowering: its jaxpr, evaluated with NumPy unless it has a primitive NumPy does not evaluate
    exactly (``unknown``), and ``program``, the jaxpr as one jitted XLA program, for when NumPy cannot: run
    eagerly, each primitive of the lowering would be its own compilation (13 for a float32 -> int16 Cast). None
    where the lowering was staged with its inputs' values (a program per value would compile for each)."""

    __slots__ = ("closed", "treedef", "unknown", "program", "compiled")

    def __init__(self, closed: Any, treedef: Any, unknown: str | None, program: Callable | None):
        self.closed, self.treedef, self.unknown, self.program = closed, treedef, unknown, program
        self.compiled = None


def _stage(fn: Callable[..., Any], args: list[np.ndarray]) -> _Staged | str:
    """``fn``'s staged form (:class:`_Staged`) -- or, if it can only run eagerly, the reason as a string (kept in
    the cache, so the node goes to XLA at once the next times)."""
    reads = TRACED_READS[0]
    computed: list[Any] = []

    def staged(*xs: Any) -> Any:
        out = fn(*xs)
        leaves = jax.tree.leaves(out)
        known = [v for v in leaves if isinstance(v, (np.ndarray, np.generic))]
        if leaves and len(known) == len(leaves):
            computed.append(out)  # the lowering computed it with NumPy: that is the value, in its own dtypes
        elif not jax.config.jax_enable_x64 and any(v.dtype in _WIDE for v in known):
            raise Unfoldable("a 64-bit NumPy result")  # staged, it would be narrowed to 32 bits
        return out

    try:
        closed, shapes = jax.make_jaxpr(staged, return_shape=True)(*args)
    except Exception as e:  # the eager path reports real errors with the node's context
        raise Unfoldable(str(e)) from e
    if computed and (TRACED_READS[0] == reads or not args):
        return _Computed(computed[0])
    if TRACED_READS[0] != reads:
        # the lowering asked for an input's value (a bounds check, a value-dependent path) and got none: this
        # jaxpr is not what it does with the actual values, so it is staged again with them (_NEEDS_VALUES)
        raise Unfoldable("the lowering reads its inputs' values")
    unknown = _unknown_primitive(closed.jaxpr)
    program = None
    if args:
        # the jaxpr's constants (arrays the lowering built, hoisted by staging) are the program's arguments, as
        # they are computed values in a jitted call: as literals XLA would fold through them (a division by a
        # constant behind an optimization barrier became a product with its reciprocal)
        program = jax.jit(lambda consts, *xs: jax.core.eval_jaxpr(closed.jaxpr, consts, *xs))
    if unknown and program is None:
        return f"primitive {unknown}"
    return _Staged(closed, jax.tree.structure(shapes), unknown, program)


_WIDE = frozenset(np.dtype(t) for t in ("int64", "uint64", "float64", "complex128"))


class _Computed:
    """A lowering that computed its outputs with NumPy, without a JAX operation: they are the fold's value."""

    __slots__ = ("out",)

    def __init__(self, out: Any):
        self.out = out


def _unknown_primitive(jaxpr: Any) -> str | None:
    """A primitive of ``jaxpr`` (or of a jaxpr inside it) that NumPy does not evaluate here, if any."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name not in _RULES:
            return eqn.primitive.name
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", None)
            found = inner is not None and _unknown_primitive(getattr(inner, "jaxpr", inner))
            if found:
                return found
    return None


def _eval(jaxpr: Any, consts: list[Any], args: list[Any]) -> list[np.ndarray]:
    env: dict[Any, np.ndarray] = {}

    def read(v: Any) -> np.ndarray:
        if isinstance(v, jax.extend.core.Literal):  # a Python scalar: computing with it in float64 would round twice
            return np.asarray(v.val, dtype=v.aval.dtype)
        return env[v]

    for var, val in zip(jaxpr.constvars, consts):
        env[var] = val
    for var, val in zip(jaxpr.invars, args):
        env[var] = val
    for eqn in jaxpr.eqns:
        rule = _RULES.get(eqn.primitive.name)
        if rule is None:
            raise Unfoldable(f"primitive {eqn.primitive.name}")
        invals = [read(v) for v in eqn.invars]
        if any(x.dtype.kind not in "biuf" or x.dtype.itemsize > 8 for x in invals):
            raise Unfoldable("dtype")  # bfloat16, float8, complex: no exact NumPy arithmetic
        try:
            with np.errstate(all="ignore"):
                outs = rule(*invals, **eqn.params)
        except Unfoldable:
            raise
        except Exception as e:  # a parameter or case this rule does not know
            raise Unfoldable(f"{eqn.primitive.name}: {type(e).__name__}: {e}") from e
        outs = [np.asarray(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
        if eqn.primitive.name not in _MOVES and _has_subnormals(invals + outs):
            raise Unfoldable("subnormal floats")  # XLA:CPU flushes them to zero (as TF does), NumPy does not
        if eqn.primitive.name in _ROUNDED and _is_float(*invals) and not _cpu_backend():
            raise Unfoldable("float arithmetic off the CPU")
        for var, out in zip(eqn.outvars, outs):
            aval = var.aval
            if out.shape != aval.shape:
                raise Unfoldable(f"{eqn.primitive.name} gave shape {out.shape}, not {aval.shape}")
            env[var] = out.astype(aval.dtype, copy=False)
    return [read(v) for v in jaxpr.outvars]


# Float operations whose rounding the backend decides: NumPy's (IEEE, correctly rounded) is XLA:CPU's only.
_ROUNDED = frozenset({"add", "sub", "mul", "div", "sqrt"})


@functools.cache
def _cpu_backend() -> bool:
    return jax.default_backend() == "cpu"


# Primitives that only move or select values: subnormal floats pass through XLA unchanged.
_MOVES = frozenset(
    "broadcast_in_dim reshape squeeze expand_dims transpose concatenate stack slice dynamic_slice pad rev select_n "
    "gather copy copy_p while jit pjit closed_call scatter sort tile bitcast_convert_type scan".split()
)


def _has_subnormals(xs: list[np.ndarray]) -> bool:
    for x in xs:
        if x.dtype.kind == "f" and x.size:
            tiny = np.finfo(np.float32 if x.dtype.itemsize < 4 else x.dtype).tiny
            a = np.abs(x)
            if np.any((a > 0) & (a < tiny)):
                return True
    return False


def _is_float(*xs: np.ndarray) -> bool:
    return any(x.dtype.kind == "f" for x in xs)


def _ints_only(fn: Callable) -> Callable:
    def rule(*xs, **params):
        if _is_float(*xs):
            raise Unfoldable("float operands")
        return fn(*xs, **params)

    return rule


def _min_by_minus_one(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype.kind == "i" and bool(np.any((a == np.iinfo(a.dtype).min) & (b == -1)))


def _int_div(a: np.ndarray, b: np.ndarray, **_: Any) -> np.ndarray:
    if _is_float(a, b):
        return np.true_divide(a, b)
    if np.any(b == 0) or _min_by_minus_one(a, b):
        raise Unfoldable("integer division by zero or overflow")
    r = np.fmod(a, b)  # XLA rounds toward zero: a - r is an exact multiple of b, nearer zero than a
    return (a - r) // b


def _rem(a: np.ndarray, b: np.ndarray, **_: Any) -> np.ndarray:
    if not _is_float(a, b) and (np.any(b == 0) or _min_by_minus_one(a, b)):
        raise Unfoldable("integer remainder by zero or overflow")
    return np.fmod(a, b)  # the dividend's sign, as C and XLA


def _extremum(np_fn: Callable) -> Callable:
    def rule(a: np.ndarray, b: np.ndarray, **_: Any) -> np.ndarray:
        out = np_fn(a, b)
        if _is_float(a, b) and np.any((a == b) & (np.signbit(a) != np.signbit(b))):
            raise Unfoldable("max/min of +0 and -0")
        return out

    return rule


def _convert(x: np.ndarray, new_dtype: Any, **_: Any) -> np.ndarray:
    new = np.dtype(new_dtype)
    if x.dtype.kind == "f" and new.kind != "f":
        raise Unfoldable("float to integer conversion")  # XLA saturates, NumPy is undefined
    if new.kind not in "biuf" or new.itemsize > 8:
        raise Unfoldable("dtype")
    return x.astype(new)


def _broadcast_in_dim(x: np.ndarray, shape: tuple, broadcast_dimensions: tuple, **_: Any) -> np.ndarray:
    expanded = [1] * len(shape)
    for src, dst in enumerate(broadcast_dimensions):
        expanded[dst] = x.shape[src]
    return np.broadcast_to(x.reshape(expanded), shape)


def _reshape(x: np.ndarray, new_sizes: tuple, dimensions: Any = None, **_: Any) -> np.ndarray:
    if dimensions is not None:
        raise Unfoldable("reshape with dimensions")
    return x.reshape(new_sizes)


def _dynamic_slice(x: np.ndarray, *starts: np.ndarray, slice_sizes: tuple, **_: Any) -> np.ndarray:
    index = []
    for s, size, dim in zip(starts, slice_sizes, x.shape):
        start = int(np.clip(int(s), 0, dim - size))  # lax clamps the window into the operand
        index.append(slice(start, start + size))
    return x[tuple(index)]


def _pad(x: np.ndarray, value: np.ndarray, padding_config: tuple, **_: Any) -> np.ndarray:
    if any(lo < 0 or hi < 0 or interior for lo, hi, interior in padding_config):
        raise Unfoldable("negative or interior padding")
    return np.pad(x, [(lo, hi) for lo, hi, _ in padding_config], constant_values=value)


def _select_n(which: np.ndarray, *cases: np.ndarray, **_: Any) -> np.ndarray:
    if which.dtype == np.bool_:
        return np.where(which, cases[1], cases[0])
    return np.choose(which, cases)


def _reduce(np_fn: Callable) -> Callable:
    def rule(x: np.ndarray, axes: tuple, **_: Any) -> np.ndarray:
        if _is_float(x):
            raise Unfoldable("float reduction")  # summation order; the sign of zero for max/min
        return np_fn(x, axis=tuple(axes))

    return rule


def _gather(x: np.ndarray, idx: np.ndarray, *, dimension_numbers, slice_sizes, mode, fill_value=None, **_):
    """The one gather shape that index arithmetic uses: take along one axis (jnp.take / x[i])."""
    dn = dimension_numbers
    if (
        len(dn.start_index_map) != 1
        or dn.operand_batching_dims
        or tuple(dn.collapsed_slice_dims) != tuple(dn.start_index_map)
    ):
        raise Unfoldable("general gather")
    axis = dn.start_index_map[0]
    batch = idx.shape[:-1]
    if idx.shape[-1] != 1 or any(s != d for k, (s, d) in enumerate(zip(slice_sizes, x.shape)) if k != axis):
        raise Unfoldable("general gather")
    offset = tuple(range(axis)) + tuple(range(axis + len(batch), x.ndim - 1 + len(batch)))
    if tuple(dn.offset_dims) != offset:
        raise Unfoldable("general gather")
    i = idx[..., 0].astype(np.int64)
    valid = (i >= 0) & (i < x.shape[axis])
    out = np.take(x, np.clip(i, 0, x.shape[axis] - 1), axis=axis)
    if mode == lax.GatherScatterMode.FILL_OR_DROP:
        mask = valid.reshape((1,) * axis + batch + (1,) * (x.ndim - 1 - axis))
        fill = np.asarray(fill_value, x.dtype)  # lax.gather has filled in its default
        out = np.where(mask, out, fill)
    return out


def _while(*args: np.ndarray, cond_jaxpr, body_jaxpr, cond_nconsts: int, body_nconsts: int, **_) -> list[np.ndarray]:
    cond_consts, body_consts = list(args[:cond_nconsts]), list(args[cond_nconsts : cond_nconsts + body_nconsts])
    carry = list(args[cond_nconsts + body_nconsts :])
    cond_closed, body_closed = [np.asarray(c) for c in cond_jaxpr.consts], [np.asarray(c) for c in body_jaxpr.consts]
    while bool(_eval(cond_jaxpr.jaxpr, cond_closed, cond_consts + carry)[0]):
        carry = _eval(body_jaxpr.jaxpr, body_closed, body_consts + carry)
    return carry


def _call(*args: np.ndarray, jaxpr, **_: Any) -> list[np.ndarray]:
    closed = getattr(jaxpr, "jaxpr", None)
    if closed is None:  # an open Jaxpr (closed_call/core_call)
        return _eval(jaxpr, [], list(args))
    return _eval(closed, [np.asarray(c) for c in jaxpr.consts], list(args))


def _scatter(combine: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable:
    """XLA's scatter (no batching dims) as XLA:CPU runs it: the updates applied one window at a time in index
    order (its scatter is expanded into a sequential loop, so duplicate indices accumulate in that order, and
    the last of duplicate replacements wins), a window out of bounds skipped, or clamped into them (CLIP)."""

    def rule(operand, indices, updates, *, dimension_numbers, mode, update_jaxpr=None, **_):
        dn = dimension_numbers
        if dn.operand_batching_dims or (combine is _replace and update_jaxpr is not None):
            raise Unfoldable("general scatter")
        window_dims = tuple(dn.update_window_dims)
        scatter_dims = [d for d in range(updates.ndim) if d not in window_dims]
        count = int(np.prod([updates.shape[d] for d in scatter_dims], dtype=np.int64))
        if count > _MAX_SCATTER:
            raise Unfoldable("large scatter")
        window = [1] * operand.ndim
        for d, u in zip((d for d in range(operand.ndim) if d not in dn.inserted_window_dims), window_dims):
            window[d] = updates.shape[u]
        upd = np.moveaxis(updates, scatter_dims, range(len(scatter_dims))).reshape((count, *window))
        idx = indices.reshape(count, indices.shape[-1]).astype(np.int64)
        clip = mode == lax.GatherScatterMode.CLIP
        out = operand.copy()
        if operand.ndim and all(w == 1 for w in window) and upd.dtype == out.dtype:  # one element per update
            starts = np.zeros((count, operand.ndim), np.int64)
            for k, d in enumerate(dn.scatter_dims_to_operand_dims):
                starts[:, d] = idx[:, k]
            shape = np.array(operand.shape)
            if clip:
                starts = np.clip(starts, 0, shape - 1)
            valid = np.all((starts >= 0) & (starts < shape), axis=1)
            at, vals = tuple(starts[valid].T), upd.reshape(count)[valid]
            if combine in _IN_ORDER:  # ufunc.at applies the updates one by one in index order, as XLA:CPU
                _IN_ORDER[combine].at(out, at, vals)
                return out
            if combine is _replace and len(np.unique(np.ravel_multi_index(at, operand.shape))) == len(vals):
                out[at] = vals
                return out
        for u in range(count):
            start = [0] * operand.ndim
            for k, d in enumerate(dn.scatter_dims_to_operand_dims):
                start[d] = int(idx[u, k])
            if clip:
                start = [min(max(s, 0), n - w) for s, n, w in zip(start, operand.shape, window)]
            elif any(s < 0 or s + w > n for s, n, w in zip(start, operand.shape, window)):
                continue
            at = tuple(slice(s, s + w) for s, w in zip(start, window))
            out[at] = combine(out[at], upd[u])
        return out

    return rule


def _shift(kind: str) -> Callable:
    """XLA's shifts: an amount outside [0, bits) shifts everything out (0, or the sign for an arithmetic right
    shift), where C's and NumPy's shifts are undefined."""

    def rule(x: np.ndarray, amount: np.ndarray, **_: Any) -> np.ndarray:
        if _is_float(x, amount):
            raise Unfoldable("float operands")
        bits = x.dtype.itemsize * 8
        unsigned = np.dtype(f"u{x.dtype.itemsize}")
        amount = amount.astype(unsigned)  # a negative amount is a huge one, as in XLA
        out_of_range = amount >= bits
        safe = np.where(out_of_range, 0, amount).astype(x.dtype)
        if kind == "left":
            return np.where(out_of_range, np.zeros_like(x), np.left_shift(x, safe))
        if kind == "logical":
            u = x.view(unsigned)
            return np.where(out_of_range, 0, np.right_shift(u, safe.view(unsigned))).astype(unsigned).view(x.dtype)
        signed = x.view(np.dtype(f"i{x.dtype.itemsize}"))  # XLA shifts an unsigned type's bits as signed
        out = np.right_shift(signed, np.where(out_of_range, bits - 1, safe).astype(signed.dtype))
        return out.view(x.dtype)

    return rule


def _replace(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    return new


_IN_ORDER = {np.add: np.add, np.subtract: np.subtract, np.multiply: np.multiply}


_MAX_SCATTER = 1 << 16  # updates folded one by one in Python; a larger scatter is one XLA program


def _cumulative(np_fn: Callable) -> Callable:
    def rule(x: np.ndarray, *, axis: int, reverse: bool, **_: Any) -> np.ndarray:
        if _is_float(x):
            raise Unfoldable("float scan")  # XLA's association order; NaN and signed zeros
        if reverse:
            return np.flip(np_fn(np.flip(x, axis), axis=axis, dtype=x.dtype), axis)
        return np_fn(x, axis=axis, dtype=x.dtype)

    return rule


def _sort_keys(x: np.ndarray) -> np.ndarray:
    """Integer ranks ordered as lax.sort compares ``x``: -0.0 equal to 0.0, every NaN equal and last."""
    if x.dtype.kind != "f":
        return x
    x = np.where(x == 0, np.zeros_like(x), x)
    _, ranks = np.unique(x, return_inverse=True, equal_nan=True)  # NaN sorts last in NumPy too
    return ranks.reshape(x.shape)


def _sort(*operands: np.ndarray, dimension: int, is_stable: bool, num_keys: int, **_: Any) -> list[np.ndarray]:
    keys = [np.moveaxis(_sort_keys(k), dimension, -1) for k in operands[:num_keys]]
    order = np.lexsort(keys[::-1], axis=-1)  # lexsort's last key is the primary one; it is stable
    if not is_stable and keys[0].shape[-1] > 1:
        ordered = [np.take_along_axis(k, order, axis=-1) for k in keys]
        if np.any(np.logical_and.reduce([k[..., 1:] == k[..., :-1] for k in ordered])):
            raise Unfoldable("unstable sort with equal keys")  # XLA's order of equal keys is its own
    return [
        np.moveaxis(np.take_along_axis(np.moveaxis(x, dimension, -1), order, axis=-1), -1, dimension) for x in operands
    ]


def _bitcast(x: np.ndarray, new_dtype: Any, **_: Any) -> np.ndarray:
    new = np.dtype(new_dtype)
    if new.kind not in "biuf" or new.itemsize > 8 or x.dtype.kind == "b" or new.kind == "b":
        raise Unfoldable("dtype")
    if new.itemsize == x.dtype.itemsize:
        return x.view(new)
    if new.itemsize < x.dtype.itemsize:  # a new last dimension of the narrower elements
        return np.ascontiguousarray(x).view(new).reshape(*x.shape, x.dtype.itemsize // new.itemsize)
    return np.ascontiguousarray(x).view(new).reshape(x.shape[:-1])  # the last dimension merges


def _scan(*args: np.ndarray, jaxpr, num_consts: int, num_carry: int, length: int, reverse: bool, **_) -> list:
    consts, carry = list(args[:num_consts]), list(args[num_consts : num_consts + num_carry])
    xs = args[num_consts + num_carry :]
    closed = [np.asarray(c) for c in jaxpr.consts]
    ys_avals = [v.aval for v in jaxpr.jaxpr.outvars[num_carry:]]
    ys = [np.empty((length, *a.shape), a.dtype) for a in ys_avals]
    for i in reversed(range(length)) if reverse else range(length):
        outs = _eval(jaxpr.jaxpr, closed, consts + carry + [x[i] for x in xs])
        carry = outs[:num_carry]
        for y, out in zip(ys, outs[num_carry:]):
            y[i] = out
    return carry + ys


_RULES: dict[str, Callable[..., Any]] = {
    "add": lambda a, b, **_: np.add(a, b),
    "sub": lambda a, b, **_: np.subtract(a, b),
    "mul": lambda a, b, **_: np.multiply(a, b),
    "div": _int_div,
    "rem": _rem,
    "max": _extremum(np.maximum),
    "min": _extremum(np.minimum),
    "neg": lambda x, **_: np.negative(x),
    "abs": lambda x, **_: np.abs(x),
    "sign": _ints_only(lambda x, **_: np.sign(x)),
    "sqrt": lambda x, **_: np.sqrt(x),
    "floor": lambda x, **_: np.floor(x),
    "ceil": lambda x, **_: np.ceil(x),
    "integer_pow": _ints_only(lambda x, y, **_: np.power(x, y)),
    "eq": lambda a, b, **_: np.equal(a, b),
    "ne": lambda a, b, **_: np.not_equal(a, b),
    "lt": lambda a, b, **_: np.less(a, b),
    "le": lambda a, b, **_: np.less_equal(a, b),
    "gt": lambda a, b, **_: np.greater(a, b),
    "ge": lambda a, b, **_: np.greater_equal(a, b),
    "and": _ints_only(lambda a, b, **_: np.bitwise_and(a, b)),
    "or": _ints_only(lambda a, b, **_: np.bitwise_or(a, b)),
    "xor": _ints_only(lambda a, b, **_: np.bitwise_xor(a, b)),
    "not": _ints_only(lambda x, **_: np.invert(x)),
    "select_n": _select_n,
    "clamp": _ints_only(lambda lo, x, hi, **_: np.clip(x, lo, hi)),
    "convert_element_type": _convert,
    "copy": lambda x, **_: x,
    "copy_p": lambda x, **_: x,
    "broadcast_in_dim": _broadcast_in_dim,
    "reshape": _reshape,
    "squeeze": lambda x, dimensions, **_: np.squeeze(x, axis=tuple(dimensions)),
    "expand_dims": lambda x, dimensions, **_: np.expand_dims(x, tuple(dimensions)),
    "transpose": lambda x, permutation, **_: np.transpose(x, permutation),
    "concatenate": lambda *xs, dimension, **_: np.concatenate(xs, axis=dimension),
    "stack": lambda *xs, axis, **_: np.stack(xs, axis=axis),
    "slice": lambda x, start_indices, limit_indices, strides, **_: x[
        tuple(slice(s, e, st) for s, e, st in zip(start_indices, limit_indices, strides or (1,) * x.ndim))
    ],
    "dynamic_slice": _dynamic_slice,
    "pad": _pad,
    "rev": lambda x, dimensions, **_: np.flip(x, axis=tuple(dimensions)) if dimensions else x,
    "iota": lambda dtype, shape, dimension, **_: np.broadcast_to(
        np.arange(shape[dimension], dtype=dtype).reshape([-1 if k == dimension else 1 for k in range(len(shape))]),
        shape,
    ),
    "reduce_sum": _reduce(np.sum),
    "reduce_prod": _reduce(np.prod),
    "reduce_max": _reduce(np.max),
    "reduce_min": _reduce(np.min),
    "reduce_and": _reduce(np.all),
    "reduce_or": _reduce(np.any),
    "gather": _gather,
    "while": _while,
    "jit": _call,
    "pjit": _call,
    "closed_call": _call,
    # the primal of a lowering with TF's derivative (jaxsm/ops/math.py _tf_derivative: Maximum, Relu, ...)
    "custom_jvp_call": lambda *args, call_jaxpr, **_: _call(*args, jaxpr=call_jaxpr),
    "scatter": _scatter(_replace),
    "scatter-add": _scatter(np.add),
    "scatter-sub": _scatter(np.subtract),
    "scatter-mul": _scatter(np.multiply),
    "scatter-min": _scatter(_extremum(np.minimum)),
    "scatter-max": _scatter(_extremum(np.maximum)),
    "cumsum": _cumulative(np.cumsum),
    "cumprod": _cumulative(np.cumprod),
    "cummax": _cumulative(lambda x, axis, dtype: np.maximum.accumulate(x, axis=axis, dtype=dtype)),
    "cummin": _cumulative(lambda x, axis, dtype: np.minimum.accumulate(x, axis=axis, dtype=dtype)),
    "sort": _sort,
    "tile": lambda x, reps, **_: np.tile(x, reps),
    "bitcast_convert_type": _bitcast,
    "scan": _scan,
    "shift_left": _shift("left"),
    "shift_right_arithmetic": _shift("arithmetic"),
    "shift_right_logical": _shift("logical"),
    "lt_to": _ints_only(lambda a, b, **_: np.less(a, b)),  # (total order: the same for integers)
    "le_to": _ints_only(lambda a, b, **_: np.less_equal(a, b)),
}
