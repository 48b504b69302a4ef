"""Array ops: shapes, reshapes, slicing, gathers, scatters, padding, reordering, diagonals, sorting.

Shapes are static in JAX, so ``Shape``/``Size``/``Rank``/``ShapeN``/``BroadcastArgs`` always return NumPy and
the shape arithmetic built on them stays static (DESIGN principle 2). Ops whose output shape depends on input
values (``Unique``, ``Where``, ``ListDiff``, ``DynamicPartition``, ``DynamicStitch``) run only when those
values are known at trace time.

Out-of-range gather/scatter indices: TF's CPU kernels raise, its GPU kernels return zeros / drop the update. A
jitted function cannot raise on a run-time value, so jaxsm follows the GPU kernels (zeros / dropped), negative
indices included (TF never wraps them). Indices whose values are known (constants, or any call outside jax.jit)
raise as on TF's CPU (``check_indices``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsm.errors import StaticValueError
from jaxsm.graph.symbolic import is_dim
from jaxsm.graph.values import to_static
from jaxsm.ops.registry import op

_INT32 = np.dtype(np.int32)
_NEW_AXIS, _SHRINK = -1, -2


def _ints(v) -> list[int]:
    # symbolic dimensions (jax.export shape polymorphism, see jaxsm/graph/symbolic.py) pass through
    return [i if is_dim(i) else int(i) for i in np.asarray(v).reshape(-1)]


def _axis(axis, ndim: int) -> int:
    axis = int(np.asarray(axis).reshape(-1)[0])
    return axis + ndim if axis < 0 else axis


# -- shapes --------------------------------------------------------------------------------------------------


def _shape_value(shape, dtype) -> np.ndarray:
    """A shape as a static value: an int array, or an object array when it holds symbolic dimensions."""
    if any(is_dim(d) for d in shape):
        return np.asarray(shape, dtype=object)
    return np.asarray(shape, dtype)


@op("Shape")
def shape(ctx, x):
    return _shape_value(tuple(x.shape), ctx.dtype("out_type", _INT32))


@op("ShapeN")
def shape_n(ctx, *xs):
    dtype = ctx.dtype("out_type", _INT32)
    return [_shape_value(tuple(x.shape), dtype) for x in xs]


@op("Size")
def size(ctx, x):
    return _shape_value((math.prod(x.shape),), ctx.dtype("out_type", _INT32)).reshape(())


@op("Rank")
def rank(ctx, x):
    return np.asarray(len(x.shape), _INT32)


@op("BroadcastArgs", static=(0, 1))
def broadcast_args(ctx, s0, s1):
    return np.asarray(np.broadcast_shapes(tuple(_ints(s0)), tuple(_ints(s1))), s0.dtype)


@op("BroadcastGradientArgs", static=(0, 1))
def broadcast_gradient_args(ctx, s0, s1):
    # TF's BCast: an input is reduced over every (right-aligned) dimension where it is 1 or missing, including
    # dimensions where every input is 1 — except when the shapes are identical, which reduces nothing.
    a, b = _ints(s0), _ints(s1)
    np.broadcast_shapes(tuple(a), tuple(b))
    if a == b:
        return np.zeros(0, s0.dtype), np.zeros(0, s1.dtype)
    n = max(len(a), len(b))
    pa, pb = [1] * (n - len(a)) + a, [1] * (n - len(b)) + b
    return (
        np.asarray([i for i in range(n) if pa[i] == 1], s0.dtype),
        np.asarray([i for i in range(n) if pb[i] == 1], s1.dtype),
    )


@op("ConcatOffset", static=(0,))
def concat_offset(ctx, concat_dim, *shapes):
    shapes = [ctx.static(s, "the shapes of ConcatOffset") for s in shapes]
    axis = _axis(concat_dim, len(shapes[0]))
    offsets, at = [], 0
    for s in shapes:
        o = np.zeros_like(s)
        o[axis] = at
        at += int(s[axis])
        offsets.append(o)
    return offsets


# -- reshapes ------------------------------------------------------------------------------------------------


@op("Reshape", static=(1,))
def reshape(ctx, x, shape):
    return jnp.reshape(x, _reshape_sizes(np.shape(x), _ints(shape)))


def _reshape_sizes(in_shape: tuple, sizes: list) -> tuple:
    """TF's -1 next to a 0 in the new shape (reshape_op.h): the input's non-zero dimensions are divided by the
    new shape's non-zero sizes, so [0, 3, 4] -> [0, -1, 4] is [0, 3, 4] (NumPy cannot infer it)."""
    if -1 not in sizes or 0 not in sizes or any(is_dim(d) for d in [*in_shape, *sizes]):
        return tuple(sizes)
    known = math.prod(d for d in sizes if d > 0)
    return tuple(math.prod(d for d in in_shape if d > 0) // known if d == -1 else d for d in sizes)


@op("Squeeze")
def squeeze(ctx, x):
    dims = ctx.attr("squeeze_dims", [])
    x = jnp.asarray(x)
    if not dims:
        return lax.squeeze(x, [i for i, d in enumerate(x.shape) if d == 1])
    if not all(-x.ndim <= int(d) < x.ndim for d in dims):
        return jnp.squeeze(x, axis=tuple(dims))  # jnp reports the bad dimension
    return lax.squeeze(x, sorted({int(d) % x.ndim for d in dims}))


@op("ExpandDims", static=(1,))
def expand_dims(ctx, x, axis):
    return jnp.expand_dims(x, int(np.asarray(axis).reshape(-1)[0]))


@op("Transpose", static=(1,))
def transpose(ctx, x, perm):
    return jnp.transpose(x, _ints(perm))


@op("ConjugateTranspose", static=(1,))
def conjugate_transpose(ctx, x, perm):
    return jnp.conj(jnp.transpose(x, _ints(perm)))


@op("ConcatV2")
def concat_v2(ctx, *args):
    values, axis = args[:-1], ctx.static(args[-1], "the axis of ConcatV2")
    return jnp.concatenate(values, axis=_axis(axis, values[0].ndim))


@op("Concat", static=(0,))
def concat(ctx, axis, *values):
    return jnp.concatenate(values, axis=_axis(axis, values[0].ndim))


@op("Pack")
def pack(ctx, *values):
    return jnp.stack(values, axis=ctx.attr("axis", 0))


@op("ParallelConcat")
def parallel_concat(ctx, *values):
    return jnp.concatenate(values, axis=0)


@op("Unpack")
def unpack(ctx, x):
    axis = _axis(ctx.attr("axis", 0), x.ndim)
    return [lax.index_in_dim(x, i, axis, keepdims=False) for i in range(x.shape[axis])]


@op("Split", static=(0,))
def split(ctx, axis, x):
    return jnp.split(x, ctx.attr("num_split"), axis=_split_axis(ctx, axis, x.ndim))


def _split_axis(ctx, axis, ndim: int) -> int:
    a = _axis(axis, ndim)
    if not 0 <= a < ndim:  # (TF raises; _axis alone would wrap -ndim - 1 to the last axis)
        raise ctx.error(f"split axis {int(np.asarray(axis).reshape(-1)[0])} out of range for rank {ndim}")
    return a


@op("SplitV", static=(1, 2))
def split_v(ctx, x, size_splits, axis):
    axis = _split_axis(ctx, axis, x.ndim)
    sizes = _ints(size_splits)
    # split_v_op.cc: at most one -1, the rest sum to the dimension (or to at most it with a -1), none negative
    known = [s for s in sizes if s != -1]
    if sizes.count(-1) > 1 or min(known, default=0) < 0 or sum(known) > x.shape[axis]:
        raise ctx.error(f"SplitV sizes {sizes} cannot split a dimension of size {x.shape[axis]}")
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    elif sum(sizes) != x.shape[axis]:
        raise ctx.error(f"SplitV sizes {sizes} do not sum to the dimension's size {x.shape[axis]}")
    return jnp.split(x, np.cumsum(sizes)[:-1].tolist(), axis=axis)


@op("Tile", static=(1,))
def tile(ctx, x, multiples):
    multiples = _ints(multiples)
    if any(not is_dim(m) and m < 0 for m in multiples):
        raise ctx.error(f"Tile multiples {multiples} must be non-negative")
    return jnp.tile(x, multiples)


@op("Fill", static=(0,))
def fill(ctx, dims, value):
    return jnp.full(tuple(_ints(dims)), value, dtype=value.dtype)


@op("BroadcastTo", static=(1,))
def broadcast_to(ctx, x, shape):
    return jnp.broadcast_to(x, tuple(_ints(shape)))


# -- slicing -------------------------------------------------------------------------------------------------


@op("Slice", static=(2,))
def slice_(ctx, x, begin, size):
    sizes = _ints(size)
    if to_static(begin) is None:
        # run-time begin (tf.slice in a loop): fine when every size is given; TF raises when out of range, a
        # compiled function clamps the start instead
        if -1 in sizes:
            raise ctx.error("Slice with a run-time begin and size -1 has a run-time output shape", StaticValueError)
        return lax.dynamic_slice(x, list(jnp.asarray(begin)), sizes)
    for i, (b, s, d) in enumerate(zip(_ints(begin), sizes, np.shape(x), strict=True)):
        if not any(is_dim(v) for v in (b, s, d)) and not (0 <= b <= d and (s == -1 or 0 <= s <= d - b)):
            raise ctx.error(f"begin[{i}] = {b}, size[{i}] = {s} do not fit in dimension {i} of size {d}")
    bounds = zip(_ints(begin), sizes, strict=True)
    return x[tuple(slice(b, None if s == -1 else b + s) for b, s in bounds)]


def strided_slice_spec(
    shape, begin, end, strides, begin_mask=0, end_mask=0, ellipsis_mask=0, new_axis_mask=0, shrink_axis_mask=0
):
    """TF's StridedSlice index rules (``ValidateStridedSliceOp`` in tensorflow/core/util/strided_slice_op.cc).

    The sparse spec (one entry per element of ``strides``) is expanded to a dense one with an entry per
    input dimension: the ellipsis (implicitly at the end when absent) spans the dimensions no entry names; a
    new-axis entry adds a size-1 dimension and consumes none; a shrink entry indexes one element (``end`` and
    the masks are ignored, negative indices count from the end, out of range is an error) and drops the
    dimension. Other begin/end values count from the end when negative, then are clamped to ``[0, dim]`` for a
    positive stride or ``[-1, dim - 1]`` for a negative one; masked ones take the whole range in the stride's
    direction.

    Returns ``(slices, processing_shape, final_shape)``: one Python ``slice`` per input dimension (shrunk ones
    kept with size 1), the shape those slices produce, and the op's output shape. Raises ValueError where TF
    raises.
    """
    n = len(strides)
    if ellipsis_mask & (ellipsis_mask - 1):
        raise ValueError("multiple ellipses in slice spec not allowed")
    if not ellipsis_mask:
        ellipsis_mask, n = ellipsis_mask | (1 << n), n + 1
    ellipsis_at = ellipsis_mask.bit_length() - 1
    new_after_ellipsis = sum(1 for i in range(ellipsis_at + 1, n) if new_axis_mask >> i & 1)
    ndim = len(shape)
    dense: list[tuple[int, int, int, bool, bool, bool]] = []
    gather: list[int] = []
    for i in range(n):
        if ellipsis_mask >> i & 1:
            while len(dense) < min(ndim - (n - i) + 1 + new_after_ellipsis, ndim):
                gather.append(len(dense))
                dense.append((0, 0, 1, True, True, False))
        elif new_axis_mask >> i & 1:
            gather.append(_NEW_AXIS)
        else:
            if len(dense) == ndim:
                raise ValueError(f"index out of range using input dim {ndim}; input has only {ndim} dims")
            shrink = bool(shrink_axis_mask >> i & 1)
            gather.append(_SHRINK if shrink else len(dense))
            dense.append(
                (
                    int(begin[i]),
                    int(end[i]),
                    int(strides[i]),
                    bool(begin_mask >> i & 1),
                    bool(end_mask >> i & 1),
                    shrink,
                )
            )
    if len(dense) != ndim:
        raise ValueError(f"slice spec names {len(dense)} of the input's {ndim} dimensions")
    slices, processing = [], []
    for d, (b, e, s, b_masked, e_masked, shrink) in enumerate(dense):
        dim = shape[d]
        if s == 0:
            raise ValueError(f"strides[{d}] must be non-zero")
        if shrink:
            if s < 0:
                raise ValueError("only stride 1 allowed on non-range indexing")
            b = b + dim if b < 0 else b
            if not 0 <= b < dim:
                raise ValueError(f"slice index {b} of dimension {d} out of bounds")
            e, s = b + 1, 1
        else:
            lo, hi = (0, dim) if s > 0 else (-1, dim - 1)
            b = (lo if s > 0 else hi) if b_masked else min(max(b + dim if b < 0 else b, lo), hi)
            e = (hi if s > 0 else lo) if e_masked else min(max(e + dim if e < 0 else e, lo), hi)
        length = e - b
        size = 0 if length == 0 or (length < 0) != (s < 0) else -(-length // s)
        processing.append(size)
        # A canonical end of -1 (negative stride) means "before index 0", which Python spells None.
        slices.append(slice(0, 0) if size == 0 else slice(b, None if e < 0 else e, s))
    final = [1 if g == _NEW_AXIS else processing[g] for g in gather if g != _SHRINK]
    return slices, tuple(processing), tuple(final)


def _strided_slice_spec(ctx, shape, begin, end, strides):
    masks = [ctx.attr(f"{name}_mask", 0) for name in ("begin", "end", "ellipsis", "new_axis", "shrink_axis")]
    return strided_slice_spec(tuple(shape), _ints(begin), _ints(end), _ints(strides), *masks)


@op("StridedSlice", static=(3,))
def strided_slice(ctx, x, begin, end, strides):
    if to_static(begin) is None or to_static(end) is None:
        x, begin, end = _dynamic_shrink_indices(ctx, x, begin, end, strides)
    slices, _, final = _strided_slice_spec(ctx, x.shape, begin, end, strides)
    return jnp.reshape(x[tuple(slices)], final)


def _dynamic_shrink_indices(ctx, x, begin, end, strides):
    """StridedSlice with run-time ``begin``/``end`` (``x[i]`` in a loop with a run-time trip count): returns
    ``x`` with the single-index dimensions indexed (kept with size 1) and static begin/end that finish the
    slice."""
    starts = _dynamic_starts(ctx, x.shape, begin, len(strides))
    for dim, start in enumerate(starts):
        if start is not None:
            x = lax.dynamic_index_in_dim(x, start, axis=dim, keepdims=True)
    zeros = np.zeros(len(strides), np.int64)
    return x, zeros, zeros + 1


def _dynamic_starts(ctx, shape, begin, n: int) -> list:
    """For a strided slice whose ``begin``/``end`` are known only at run time: per dimension of the input, the
    run-time index of a single-index (shrink-axis) entry, or None for a dimension taken whole.

    Negative indices count from the end, as in TF; out-of-range ones are clamped where TF raises. Every other
    entry must take its whole range (begin and end masked), since its size would otherwise depend on run-time
    values: else StaticValueError (the call then runs op by op)."""
    masks = {m: ctx.attr(f"{m}_mask", 0) for m in ("begin", "end", "ellipsis", "new_axis", "shrink_axis")}
    named = sum(1 for i in range(n) if not (masks["ellipsis"] >> i & 1 or masks["new_axis"] >> i & 1))
    ellipsis_dims = len(shape) - named if masks["ellipsis"] else 0
    begin = jnp.asarray(begin)
    starts: list = []
    for i in range(n):
        if masks["ellipsis"] >> i & 1:
            starts += [None] * ellipsis_dims
        elif masks["new_axis"] >> i & 1:
            continue
        elif masks["shrink_axis"] >> i & 1:
            idx, size = begin[i], shape[len(starts)]
            starts.append(jnp.where(idx < 0, idx + size, idx))
        elif masks["begin"] >> i & 1 and masks["end"] >> i & 1:
            starts.append(None)
        else:
            raise ctx.error(
                f"entry {i} of this slice has begin/end known only at run time and is not a single index: its size "
                "would depend on run-time values, which XLA cannot compile",
                StaticValueError,
            )
    return starts + [None] * (len(shape) - len(starts))


def strided_update(ctx, x, begin, end, strides, value):
    """``x`` with ``x[begin:end:strides]`` (StridedSlice's masks) replaced by ``value``, broadcast to the slice
    (TensorStridedSliceUpdate, ResourceStridedSliceAssign, StridedSliceAssign). Static begin/end take any
    strides; run-time ones only single indices (see :func:`_dynamic_starts`)."""
    x = jnp.asarray(x)
    if to_static(begin) is not None and to_static(end) is not None:
        slices, processing, final = _strided_slice_spec(ctx, x.shape, begin, end, strides)
        value = jnp.reshape(jnp.broadcast_to(jnp.asarray(value, x.dtype), final), processing)
        return x.at[tuple(slices)].set(value)
    n = len(_ints(strides))
    starts = _dynamic_starts(ctx, x.shape, begin, n)
    block = tuple(1 if start is not None else size for start, size in zip(starts, x.shape))
    zeros = np.zeros(n, np.int64)
    _, _, final = _strided_slice_spec(ctx, block, zeros, zeros + 1, strides)
    value = jnp.reshape(jnp.broadcast_to(jnp.asarray(value, x.dtype), final), block)
    index = [jnp.asarray(0 if start is None else start, jnp.int32) for start in starts]
    return lax.dynamic_update_slice(x, value, index)


@op("TensorStridedSliceUpdate", static=(3,))
def tensor_strided_slice_update(ctx, x, begin, end, strides, value):
    return strided_update(ctx, x, begin, end, strides, value)


@op("StridedSliceGrad", static=(0, 1, 2, 3))
def strided_slice_grad(ctx, shape, begin, end, strides, dy):
    slices, processing, _ = _strided_slice_spec(ctx, _ints(shape), begin, end, strides)
    return jnp.zeros(tuple(_ints(shape)), dy.dtype).at[tuple(slices)].set(jnp.reshape(dy, processing))


# -- padding and reordering ----------------------------------------------------------------------------------


def _pad_pairs(paddings) -> list[tuple[int, int]]:
    return [(int(lo), int(hi)) for lo, hi in np.asarray(paddings).reshape(-1, 2)]


def _non_negative_pads(ctx, paddings) -> list[tuple[int, int]]:
    pairs = _pad_pairs(paddings)
    if any(lo < 0 or hi < 0 for lo, hi in pairs):  # (lax.pad would crop; TF's pad_op.cc raises)
        raise ctx.error(f"paddings {pairs} must be non-negative")
    return pairs


@op("Pad", static=(1,))
def pad(ctx, x, paddings):
    return lax.pad(x, jnp.zeros((), x.dtype), [(lo, hi, 0) for lo, hi in _non_negative_pads(ctx, paddings)])


@op("PadV2", static=(1,))
def pad_v2(ctx, x, paddings, constant_values):
    value = jnp.asarray(constant_values, x.dtype)
    return lax.pad(x, value, [(lo, hi, 0) for lo, hi in _non_negative_pads(ctx, paddings)])


@op("MirrorPad", static=(1,))
def mirror_pad(ctx, x, paddings):
    mode = ctx.attr("mode")
    if mode not in ("REFLECT", "SYMMETRIC"):
        raise ctx.error(f"unknown MirrorPad mode {mode!r}")
    # TF (mirror_pad_op.cc): REFLECT pads less than the dimension, SYMMETRIC at most the dimension
    limit = 0 if mode == "REFLECT" else 1
    for i, (pair, d) in enumerate(zip(_pad_pairs(paddings), np.shape(x))):
        if not is_dim(d) and (min(pair) < 0 or max(pair) > d - 1 + limit):
            raise ctx.error(f"paddings {list(pair)} of dimension {i} (size {d}) are out of range for {mode}")
    return jnp.pad(x, _pad_pairs(paddings), mode=mode.lower())


@op("MirrorPadGrad", static=(1,))
def mirror_pad_grad(ctx, dy, paddings):
    """MirrorPad's gradient: ``dy`` with the mirrored borders added back onto the entries they copy."""
    mode = ctx.attr("mode")
    if mode not in ("REFLECT", "SYMMETRIC"):
        raise ctx.error(f"unknown MirrorPad mode {mode!r}")
    dy = jnp.asarray(dy)
    pads = _pad_pairs(paddings)
    shape = tuple(int(d) - lo - hi for d, (lo, hi) in zip(dy.shape, pads))
    _, pullback = jax.vjp(lambda x: jnp.pad(x, pads, mode=mode.lower()), jnp.zeros(shape, dy.dtype))
    return pullback(dy)[0]


@op("Reverse", static=(1,))
def reverse(ctx, x, dims):
    return lax.rev(x, [i for i, flip in enumerate(np.asarray(dims).reshape(-1)) if flip])


@op("ReverseV2", static=(1,))
def reverse_v2(ctx, x, axis):
    axes = [a + x.ndim if a < 0 else a for a in _ints(axis)]
    if len(set(axes)) < len(axes):
        raise ctx.error(f"ReverseV2 axis {_ints(axis)}: an axis is specified more than once")
    return lax.rev(x, sorted(axes))


@op("ReverseSequence", checked=(1,))
def reverse_sequence(ctx, x, seq_lengths):
    seq_dim, batch_dim = _axis(ctx.attr("seq_dim"), x.ndim), _axis(ctx.attr("batch_dim", 0), x.ndim)
    known = to_static(seq_lengths)
    if known is not None and np.any((known < 0) | (known > x.shape[seq_dim])):
        raise ctx.error(f"seq_lengths {known.tolist()} must be in [0, {x.shape[seq_dim]}] (the sequence dimension)")
    bshape = [1] * x.ndim
    bshape[batch_dim] = x.shape[batch_dim]
    lengths = jnp.reshape(jnp.asarray(seq_lengths), bshape)
    j = lax.broadcasted_iota(lengths.dtype, x.shape, seq_dim)
    return jnp.take_along_axis(x, jnp.where(j < lengths, lengths - 1 - j, j), axis=seq_dim)


@op("Roll", static=(2,))
def roll(ctx, x, shift, axis):
    shift = tuple(_ints(shift)) if isinstance(shift, np.ndarray) else jnp.reshape(shift, -1)
    return jnp.roll(x, shift, tuple(_axis(a, x.ndim) for a in _ints(axis)))


@op("InvertPermutation")
def invert_permutation(ctx, x):
    known = to_static(x)
    if known is not None and sorted(known.tolist()) != list(range(known.size)):
        raise ctx.error(f"InvertPermutation's input {known.tolist()} is not a permutation of 0..{known.size - 1}")
    x = jnp.asarray(x)
    return jnp.zeros_like(x).at[x].set(jnp.arange(x.shape[0], dtype=x.dtype))


# -- one-hot, gathers and scatters ---------------------------------------------------------------------------


@op("OneHot", static=(1,))
def one_hot(ctx, indices, depth, on_value, off_value):
    ndim = np.ndim(indices)
    axis = ctx.attr("axis", -1)
    axis = ndim if axis == -1 else axis
    if int(depth) < 0:
        raise ctx.error(f"OneHot depth must be non-negative, got {int(depth)}")
    classes = np.arange(int(depth)).reshape([-1 if i == axis else 1 for i in range(ndim + 1)])
    # Negative or too-large indices match no class: their row is all off_value, as in TF.
    hot = jnp.expand_dims(indices, axis) == classes
    return jnp.where(hot, on_value, off_value)


def gather_v2(params, indices, axis, batch_dims=0):
    """TF's GatherV2: ``params.shape[:axis] + indices.shape[batch_dims:] + params.shape[axis + 1:]``.

    ``axis`` and ``batch_dims`` may be negative (counted from the end of params' and indices' dimensions); the
    first ``batch_dims`` dimensions of params and indices are batch dimensions gathered pairwise. Out-of-range
    and negative indices give zeros (TF's GPU kernel; its CPU kernel raises, which a jitted function cannot).
    """
    params, indices = jnp.asarray(params), jnp.asarray(indices)
    axis, batch_dims = int(axis), int(batch_dims)
    batch_dims = batch_dims + indices.ndim if batch_dims < 0 else batch_dims
    axis = axis + params.ndim if axis < 0 else axis
    if batch_dims:
        return jax.vmap(lambda p, i: gather_v2(p, i, axis - 1, batch_dims - 1))(params, indices)
    indices = _wide(indices)
    return jnp.take(params, in_bounds(indices, params.shape[axis]), axis=axis, mode="fill", fill_value=0)


def _wide(indices):
    # int8/int16 indices cannot hold the out-of-range marker (the dimension size) used for negative indices.
    return indices.astype(np.int32) if indices.dtype.itemsize < 4 else indices


def in_bounds(indices, size: int):
    """``indices`` with every entry outside ``[0, size)`` moved to ``size``, out of range for a gather's fill or a
    scatter's drop mode: negative ones must not wrap, and JAX narrows int64 indices to int32 when the dimension
    fits, so 2**32 + 1 would otherwise land on 1."""
    return jnp.where((indices < 0) | (indices > size), jnp.asarray(size, indices.dtype), indices)


def check_indices(ctx, indices, bounds) -> None:
    """Raise where TF's CPU kernels raise (gather_op.cc, gather_nd_op.cc, scatter_nd_op.cc): an index whose
    value is known (a constant, or any value outside jax.jit) outside ``[0, bound)``. ``bounds`` has one entry
    per component of an index tuple (the last dimension of ``indices``); run-time indices in a compiled function
    follow the rule in the module docstring instead."""
    idx = to_static(indices)
    bounds = list(bounds)
    if idx is None or idx.size == 0 or not bounds or idx.dtype.kind not in "iu":
        return
    idx = idx.reshape(-1, len(bounds))
    limit = np.asarray([b if not is_dim(b) else np.iinfo(np.int64).max for b in bounds], np.int64)
    bad = np.any((idx < 0) | (idx >= limit), axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ctx.error(f"indices[{i}] = {idx[i].tolist()} is out of range for dimensions {bounds}")


@op("Gather", checked=(1,))
def gather(ctx, params, indices):
    check_indices(ctx, indices, np.shape(params)[:1])
    return gather_v2(params, indices, 0, 0)


@op("GatherV2", static=(2,), checked=(1,))
def gather_v2_op(ctx, params, indices, axis):
    axis = _axis(axis, np.ndim(params))
    check_indices(ctx, indices, np.shape(params)[axis : axis + 1])
    return gather_v2(params, indices, axis, ctx.attr("batch_dims", 0))


def nd_index(indices, shape):
    """GatherNd/ScatterNd index tuples; negative entries are moved out of range so that they gather zeros /
    are dropped instead of wrapping like NumPy indices."""
    indices = _wide(jnp.asarray(indices))
    return tuple(in_bounds(indices[..., k], shape[k]) for k in range(indices.shape[-1]))


def gather_nd_values(params, indices):
    """TF's GatherNd: out-of-range and negative index tuples give zeros (TF's CPU kernel raises)."""
    params = jnp.asarray(params)
    index = nd_index(indices, params.shape)
    if not index:
        return jnp.broadcast_to(params, np.shape(indices)[:-1] + params.shape)
    return params.at[index].get(mode="fill", fill_value=0)


def _nd_bounds(indices, shape) -> tuple:
    return tuple(shape)[: np.shape(indices)[-1]] if np.ndim(indices) else ()


@op("GatherNd", checked=(1,))
def gather_nd(ctx, params, indices):
    check_indices(ctx, indices, _nd_bounds(indices, np.shape(params)))
    return gather_nd_values(params, indices)


def check_index_depth(ctx, indices) -> None:
    """TF's scatter kernels refuse index tuples of length 0 (indices of shape [..., 0])."""
    if np.ndim(indices) and np.shape(indices)[-1] == 0:
        raise ctx.error(
            f"indices of shape {list(np.shape(indices))} address no dimension: TF's {ctx.node.op} needs"
            " index tuples of length 1 or more (the last dimension of indices)"
        )


def scatter_nd_values(tensor, indices, updates, how: str):
    """``tensor`` combined with ``updates`` at the index tuples in the last axis of ``indices``; ``how`` is an
    ``.at[]`` method name or "sub". Out-of-range and negative index tuples are dropped."""
    tensor = jnp.asarray(tensor)
    updates = jnp.asarray(updates, tensor.dtype)
    if how == "sub":
        how, updates = "add", -updates
    return getattr(tensor.at[nd_index(indices, tensor.shape)], how)(updates, mode="drop")


@op("ScatterNd", static=(2,), checked=(0,))
def scatter_nd(ctx, indices, updates, shape):
    shape = tuple(_ints(shape))
    check_index_depth(ctx, indices)
    check_indices(ctx, indices, _nd_bounds(indices, shape))
    # Duplicate indices add up, as in TF; a bool add is a logical or.
    if np.dtype(updates.dtype) == np.bool_:
        return scatter_nd_values(jnp.zeros(shape, np.int32), indices, updates, "add") != 0
    return scatter_nd_values(jnp.zeros(shape, updates.dtype), indices, updates, "add")


_TENSOR_SCATTER = {
    "TensorScatterUpdate": "set",
    "TensorScatterAdd": "add",
    "TensorScatterSub": "sub",
    "TensorScatterMin": "min",
    "TensorScatterMax": "max",
    "ScatterNdNonAliasingAdd": "add",
}


@jax.custom_jvp
def _scatter_update(tensor, indices, updates):
    return scatter_nd_values(tensor, indices, updates, "set")


@_scatter_update.defjvp
def _scatter_update_jvp(primals, tangents):
    # _TensorScatterUpdateGrad: every update gets the gradient at its index, also a duplicate that another
    # update overwrote (gather_nd(grad, indices)); the tangent adds up the duplicates' tangents
    tensor, indices, updates = primals
    t_tensor, _, t_updates = tangents
    kept = scatter_nd_values(jnp.ones(tensor.shape, bool), indices, jnp.zeros(updates.shape, bool), "set")
    t_out = scatter_nd_values(jnp.where(kept, t_tensor, 0), indices, t_updates, "add")
    return _scatter_update(tensor, indices, updates), t_out


@op(*_TENSOR_SCATTER, checked=(1,))
def tensor_scatter(ctx, tensor, indices, updates):
    check_index_depth(ctx, indices)
    check_indices(ctx, indices, _nd_bounds(indices, np.shape(tensor)))
    how = _TENSOR_SCATTER[ctx.node.op]
    if how == "set" and jnp.issubdtype(jnp.result_type(tensor), jnp.inexact):
        return _scatter_update(jnp.asarray(tensor), jnp.asarray(indices), jnp.asarray(updates, jnp.result_type(tensor)))
    return scatter_nd_values(tensor, indices, updates, how)


@op("InplaceUpdate", "InplaceAdd", "InplaceSub")
def inplace(ctx, x, i, v):
    how = {"InplaceUpdate": "set", "InplaceAdd": "add", "InplaceSub": "sub"}[ctx.node.op]
    if x.shape[0]:  # TF's kernel checks no row index: it takes each modulo the number of rows (inplace_ops.cc)
        i = jnp.remainder(jnp.asarray(i), x.shape[0])
    return scatter_nd_values(x, jnp.reshape(i, (-1, 1)), jnp.reshape(v, np.shape(i) + tuple(x.shape[1:])), how)


@op("SparseToDense", static=(1,), checked=(0,))
def sparse_to_dense(ctx, sparse_indices, output_shape, sparse_values, default_value):
    # 0-D and 1-D sparse_indices index a 1-D output; a scalar value fills every index.
    indices = jnp.asarray(sparse_indices)
    indices = jnp.reshape(indices, (-1, 1)) if indices.ndim < 2 else indices
    _check_sparse_indices(ctx, to_static(sparse_indices), _ints(output_shape))
    values = jnp.broadcast_to(sparse_values, indices.shape[:1])
    dense = jnp.full(tuple(_ints(output_shape)), default_value, dtype=values.dtype)
    if indices.shape[1] == 0:  # a scalar output: each value sets all of it and the last one stays, as in TF
        return values[-1] if values.shape[0] else dense
    return scatter_nd_values(dense, indices, values, "set")


def _check_sparse_indices(ctx, known: np.ndarray | None, shape: list) -> None:
    """SparseToDense's checks (sparse_to_dense_op.cc) on known indices: in bounds always, and with
    validate_indices also in lexicographic order without repeats."""
    if known is None or known.size == 0 or any(is_dim(d) for d in shape):
        return
    idx = known.reshape(-1, 1) if known.ndim < 2 else known
    check_indices(ctx, idx, shape[: idx.shape[-1]])
    if ctx.attr("validate_indices", True) and len(idx) > 1:
        flat = np.ravel_multi_index(tuple(idx.T), shape[: idx.shape[-1]])
        if np.any(np.diff(flat) <= 0):
            raise ctx.error(f"sparse indices {idx.tolist()} are out of order or repeated")


def _ragged_splits(ctx, types: list[str], partitions: list) -> list[np.ndarray]:
    """Row splits of every ragged level from RaggedTensorToTensor's partitions (ROW_SPLITS, or FIRST_DIM_SIZE
    then VALUE_ROWIDS per level; rowids are sorted, so a level's splits are its row counts summed)."""
    parts = [np.asarray(ctx.static(p, "the row partitions (they set the output shape)"), np.int64) for p in partitions]
    if types and types[0] == "FIRST_DIM_SIZE":
        nrows, splits = int(parts[0]), []
        for kind, rowids in zip(types[1:], parts[1:], strict=True):
            if kind != "VALUE_ROWIDS":
                raise ctx.error(f"row partition type {kind} after FIRST_DIM_SIZE is not supported")
            if rowids.size and (rowids[0] < 0 or np.any(np.diff(rowids) < 0) or rowids[-1] >= nrows):
                raise ctx.error(f"value row ids {rowids.tolist()} must be sorted and in [0, {nrows})")
            splits.append(np.concatenate([[0], np.cumsum(np.bincount(rowids, minlength=nrows))]))
            nrows = rowids.size
        return splits
    if any(kind != "ROW_SPLITS" for kind in types):
        raise ctx.error(f"row partition types {types} are not supported")
    return parts


@op("RaggedTensorToTensor", static=(0,))
def ragged_tensor_to_tensor(ctx, shape, values, default_value, *partitions):
    """A ragged tensor (flat values + row partitions) as a dense tensor padded with ``default_value``; a given
    ``shape`` entry (>= 0) truncates or pads that dimension, as ragged.to_tensor(shape=...) does."""
    types = [t.decode() if isinstance(t, bytes) else t for t in ctx.attr("row_partition_types")]
    splits = _ragged_splits(ctx, types, list(partitions))
    values = jnp.asarray(values)
    # Each value's position: (row at level 0, column at level 0, ..., column at the last level), inner first.
    item = np.arange(values.shape[0] if values.ndim else 0)
    columns = []
    for level in reversed(splits):
        row = np.searchsorted(level, item, side="right") - 1
        columns.insert(0, item - level[row])
        item = row
    index = [item, *columns]
    dims = [len(splits[0]) - 1] + [int(np.diff(level).max(initial=0)) for level in splits]
    wanted = np.asarray(shape).reshape(-1) if np.ndim(shape) else np.zeros(0)
    for i, d in enumerate(wanted[: len(dims)]):
        if d >= 0:
            dims[i] = int(d)
    inner = tuple(values.shape[1:])
    for i, d in enumerate(wanted[len(dims) :]):
        if d >= 0 and d != inner[i]:
            raise ctx.error(f"shape {wanted.tolist()} does not match the values' inner shape {inner}")
    keep = np.all([ix < d for ix, d in zip(index, dims, strict=True)], axis=0) if index[0].size else item[:0] > 0
    dense = jnp.broadcast_to(jnp.asarray(default_value, values.dtype), tuple(dims) + inner)
    return dense.at[tuple(ix[keep] for ix in index)].set(values[np.flatnonzero(keep)])


@op("SparseReshape", static=(1, 2))
def sparse_reshape(ctx, indices, shape, new_shape):
    """A SparseTensor's indices in a new dense shape (one -1 entry is inferred): row-major positions kept."""
    shape = [int(d) for d in np.asarray(shape).reshape(-1)]
    new = [int(d) for d in np.asarray(new_shape).reshape(-1)]
    total = math.prod(shape)
    if new.count(-1) > 1:
        raise ctx.error(f"at most one dimension of the new shape may be -1, got {new}")
    if -1 in new:
        known = math.prod(d for d in new if d != -1)
        if known == 0 or total % known:
            raise ctx.error(f"cannot reshape a SparseTensor of shape {shape} ({total} entries) to {new}")
        new[new.index(-1)] = total // known
    if math.prod(new) != total:
        raise ctx.error(f"cannot reshape a SparseTensor of shape {shape} ({total} entries) to {new}")
    indices = jnp.asarray(indices)
    if shape == new:
        return indices, np.asarray(new, np.int64)
    strides = np.cumprod([1] + shape[::-1][:-1])[::-1].astype(np.int64)
    flat = (
        jnp.sum(indices * jnp.asarray(strides, indices.dtype), axis=1)
        if shape
        else jnp.zeros(indices.shape[:1], indices.dtype)
    )
    out = (
        jnp.stack(jnp.unravel_index(flat, tuple(new)), axis=1)
        if new
        else jnp.zeros((indices.shape[0], 0), indices.dtype)
    )
    return out.astype(indices.dtype), np.asarray(new, np.int64)


@op("SparseFillEmptyRows")
def sparse_fill_empty_rows(ctx, indices, values, dense_shape, default_value):
    """Every row without entries gets one, (row, 0, ...) = default_value. Output entries are grouped by row in
    ascending order, keeping the input order within a row (sparse_fill_empty_rows_op.cc); also returns which
    rows were empty and where each input entry went."""
    idx = np.asarray(ctx.static(indices, "the indices (they set the output size)"), np.int64)
    shape = np.asarray(ctx.static(dense_shape, "the dense shape"), np.int64).reshape(-1)
    rows = int(shape[0])
    if idx.size and (idx[:, 0].min() < 0 or idx[:, 0].max() >= rows):
        raise ctx.error(f"an index's row is outside [0, {rows})")
    counts = np.bincount(idx[:, 0], minlength=rows) if idx.size else np.zeros(rows, np.int64)
    empty = counts == 0
    slots = np.where(empty, 1, counts)
    start = np.concatenate([[0], np.cumsum(slots)[:-1]]).astype(np.int64)
    order = np.argsort(idx[:, 0], kind="stable") if idx.size else np.zeros(0, np.int64)
    position = np.empty(idx.shape[0], np.int64)
    within = np.arange(idx.shape[0]) - np.searchsorted(idx[order, 0], idx[order, 0], side="left")
    position[order] = start[idx[order, 0]] + within
    n_out = int(slots.sum())
    out_idx = np.zeros((n_out, shape.size), np.int64)
    out_idx[position] = idx
    out_idx[start[empty], 0] = np.flatnonzero(empty)
    values = jnp.asarray(values)
    out_values = jnp.full((n_out,), jnp.asarray(default_value, values.dtype)).at[position].set(values)
    return out_idx.astype(np.asarray(indices).dtype), out_values, empty, position


@op("UnravelIndex", static=(1,), checked=(0,))
def unravel_index(ctx, indices, dims):
    known, size = to_static(indices), math.prod(_ints(dims))
    if known is not None and np.any((known < 0) | (known >= size)):
        raise ctx.error(f"indices {known.tolist()} are out of bounds for dims {_ints(dims)}")
    indices = jnp.asarray(indices)
    return jnp.stack(jnp.unravel_index(indices, tuple(_ints(dims))), axis=0).astype(indices.dtype)


@op("DynamicStitch", "ParallelDynamicStitch")
def dynamic_stitch(ctx, *args):
    n = len(args) // 2
    indices = [ctx.static(i, f"the indices of {ctx.node.op} (they set the output shape)") for i in args[:n]]
    data = args[n:]
    flat = np.concatenate([i.reshape(-1) for i in indices]).astype(np.int64)
    if (flat < 0).any():  # (TF's bounds check against max(indices) + 1)
        raise ctx.error(f"indices[{int(np.flatnonzero(flat < 0)[0])}] = {int(flat[flat < 0][0])} is out of range")
    rows = jnp.concatenate(
        [jnp.reshape(d, (-1,) + tuple(d.shape[i.ndim :])) for i, d in zip(indices, data, strict=True)]
    )
    # For duplicate indices the last (input, position) in order wins, as in TF; rows nobody writes are zero.
    writer = np.full(int(flat.max()) + 1 if flat.size else 0, -1, np.int64)
    np.maximum.at(writer, flat, np.arange(flat.size))
    mask = (writer >= 0).reshape((-1,) + (1,) * (rows.ndim - 1))

    @jax.custom_jvp
    def stitch(rows):
        return jnp.where(mask, rows[np.maximum(writer, 0)], jnp.zeros((), rows.dtype))

    # _DynamicStitchGrads: every data row gets the gradient at its index, also a duplicate that a later one
    # overwrote (gather(grad, indices)); the tangent adds up the duplicates' tangents
    stitch.defjvp(lambda p, t: (stitch(*p), jnp.zeros((writer.size,) + rows.shape[1:], t[0].dtype).at[flat].add(t[0])))
    return stitch(rows) if jnp.issubdtype(rows.dtype, jnp.inexact) else stitch.fun(rows)


@op("DynamicPartition")
def dynamic_partition(ctx, data, partitions):
    parts = ctx.static(partitions, "the partitions of DynamicPartition (they set the output shapes)")
    rows = jnp.reshape(data, (-1,) + tuple(data.shape[parts.ndim :]))
    flat = parts.reshape(-1)
    bad = (flat < 0) | (flat >= ctx.attr("num_partitions"))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ctx.error(f"partitions[{i}] = {int(flat[i])} is not in [0, {ctx.attr('num_partitions')})")
    return [rows[np.flatnonzero(flat == p)] for p in range(ctx.attr("num_partitions"))]


# -- sorting and searching -----------------------------------------------------------------------------------


@op("TopKV2", static=(1,))
def top_k_v2(ctx, x, k):
    # Ties go to the lower index, as in TF.
    x, k = jnp.asarray(x), int(k)
    n = x.shape[-1]
    index_type = jax.dtypes.canonicalize_dtype(ctx.dtype("index_type", _INT32))  # (int64 with x64 off: int32)
    # sorted=False, 1 < k < n: TF's CPU kernel returns its TopN heap's array. (Its sorted output is that set
    # sorted, except where a NaN's non-ordering shows: replaying the heap for it too would cost every sorted
    # top_k the heap's compile time, 1-2 s. k = 1 and k = n have their own paths with the sorted order.)
    if isinstance(n, int) and 1 < k < n and math.prod(x.shape[:-1]) > 0 and not ctx.attr("sorted", True):
        return _heap_top_k(x, k, index_type)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        values, indices = lax.top_k(x, k)
        return values, indices.astype(index_type)

    # TF compares with >: -0.0 ties with 0.0 (lax.top_k's total order puts 0.0 first); a NaN is never greater,
    # so here it is taken last (TF leaves it where its algorithm does: gaps.py).
    _, indices = lax.top_k(jnp.where(jnp.isnan(x), -jnp.inf, jnp.where(x == 0, 0, x)), k)
    return jnp.take_along_axis(x, indices, axis=-1), indices.astype(index_type)


def _heap_before(a, b):
    """TF's TopN comparator (topk_op.cc stable_comp) on (value, column) pairs: a comes before b if b's value
    is less, or neither is greater (ties, and any comparison with NaN) and a has the lower column."""
    return (b[0] < a[0]) | (~(b[0] > a[0]) & (a[1] < b[1]))


def _heap_positions(heap, pos):
    return jnp.broadcast_to(jnp.asarray(pos, np.int32), heap[0].shape[:1])


def _heap_get(heap, pos):
    """Each row's (value, column) at ``pos`` (one position per row); a heap is a (values, columns) pair of
    (rows, k + 1) arrays."""
    pos = _heap_positions(heap, pos)
    return tuple(jnp.take_along_axis(a, pos[:, None], axis=1, mode="clip")[:, 0] for a in heap)


def _heap_set(heap, pos, item, go=True):
    """heap[pos] = item in the rows where ``go``."""
    pos = _heap_positions(heap, pos)
    at = (jnp.arange(heap[0].shape[1]) == pos[:, None]) & jnp.asarray(go)[..., None]
    return tuple(jnp.where(at, v[:, None], a) for a, v in zip(heap, item, strict=True))


def _push_heap(heap, hole, top, item, depth: int):
    """libstdc++'s std::__push_heap (bits/stl_heap.h): move ``item`` up from ``hole`` towards ``top``. The
    heap's root is the element that comes last."""

    def up(_, state):  # a loop whose condition, once false, stays false: run it ``depth`` times
        heap, hole = state
        parent = lax.div(jnp.maximum(hole - 1, 0), np.int32(2))
        above = _heap_get(heap, parent)
        go = (hole > top) & _heap_before(above, item)
        return _heap_set(heap, hole, above, go), jnp.where(go, parent, hole)

    heap, hole = lax.fori_loop(0, depth, up, (heap, _heap_positions(heap, hole)))
    return _heap_set(heap, hole, item)


def _adjust_heap(heap, hole, length, item, depth: int):
    """libstdc++'s std::__adjust_heap: move the hole at ``hole`` down to a leaf along the children that come
    later, then push ``item`` up from there."""
    top = hole = _heap_positions(heap, hole)
    length = jnp.asarray(length, np.int32)

    def down(_, state):
        heap, hole, second = state
        go = second < lax.div(length - 1, np.int32(2))
        child = 2 * (second + 1)
        child = jnp.where(_heap_before(_heap_get(heap, child), _heap_get(heap, child - 1)), child - 1, child)
        second = jnp.where(go, child, second)
        return _heap_set(heap, hole, _heap_get(heap, second), go), jnp.where(go, second, hole), second

    heap, hole, second = lax.fori_loop(0, depth, down, (heap, hole, hole))
    tail = (length % 2 == 0) & (second == lax.div(length - 2, np.int32(2)))
    child = 2 * second + 1
    heap = _heap_set(heap, hole, _heap_get(heap, child), tail)
    return _push_heap(heap, jnp.where(tail, child, hole), top, item, depth)


def _pop_heap(heap, length, depth: int):
    """std::pop_heap over the first ``length`` elements: the root moves to position length - 1."""
    last = jnp.asarray(length - 1, np.int32)
    item = _heap_get(heap, last)
    return _adjust_heap(_heap_set(heap, last, _heap_get(heap, 0)), 0, length - 1, item, depth)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))  # one compilation per shape and k, also op by op
def _heap_top_k(x, k: int, index_type, window: int = 128):
    """TF's CPU TopKV2 for 1 < k < n (topk_op.cc with gtl::TopN, tsl/lib/gtl/top_n.h): column indices are
    pushed in order; the first k + 1 go through std::make_heap and one std::pop_heap, after that a column
    enters (std::pop_heap, then std::push_heap) when it comes before the heap's root. sorted=False returns
    the heap's array as it is (sorted=True would apply std::sort_heap). All rows replay these steps together;
    the columns that cannot enter are skipped ``window`` at a time."""
    shape, n = x.shape, x.shape[-1]
    rows = jnp.reshape(lax.stop_gradient(x), (-1, n))  # (only the values taken from x at the end carry one)
    depth, window = (k + 1).bit_length(), min(window, n)
    columns = jnp.broadcast_to(jnp.arange(k + 1, dtype=np.int32), (rows.shape[0], k + 1))
    heap = rows[:, : k + 1], columns

    def make(j, heap):  # std::make_heap over the first k + 1 columns
        parent = jnp.full(rows.shape[:1], (k - 1) // 2 - j, np.int32)
        return _adjust_heap(heap, parent, k + 1, _heap_get(heap, parent), depth)

    heap = _pop_heap(lax.fori_loop(0, (k - 1) // 2 + 1, make, heap), k + 1, depth)
    padded = jnp.concatenate([rows, jnp.zeros((rows.shape[0], window), rows.dtype)], axis=1)

    def step(state):
        start, heap = state
        cols = start[:, None] + jnp.arange(window, dtype=np.int32)
        # every pushed column is after the heap's, so it comes before the root if and only if it is greater
        hit = (jnp.take_along_axis(padded, cols, axis=1, mode="clip") > heap[0][:, :1]) & (cols < n)
        found = hit.any(axis=1)
        col = start + jnp.argmax(hit, axis=1).astype(np.int32)
        item = jnp.take_along_axis(rows, col[:, None], axis=1, mode="clip")[:, 0], col
        entered = _push_heap(_heap_set(_pop_heap(heap, k, depth), k - 1, item), k - 1, 0, item, depth)
        heap = tuple(jnp.where(found[:, None], a, b) for a, b in zip(entered, heap, strict=True))
        return jnp.where(found, col + 1, start + window), heap

    start = jnp.full(rows.shape[:1], k + 1, np.int32)
    _, heap = lax.while_loop(lambda s: (s[0] < n).any(), step, (start, heap))
    indices = heap[1][:, :k].reshape(shape[:-1] + (k,))
    return jnp.take_along_axis(x, indices, axis=-1), indices.astype(index_type)


@op("TopK")
def top_k(ctx, x):
    """The pre-V2 op (deprecated at GraphDef 7): k is an attr."""
    k = int(ctx.attr("k"))
    if k < 0:
        raise ctx.error(f"Need k >= 0, got {k}")
    return top_k_v2(ctx, x, np.asarray(k, np.int32))


def _search(sorted_inputs, values, side: str, dtype):
    """TF's LowerBound/UpperBound (core/kernels/searchsorted_op.cc): std::lower_bound/upper_bound on each row, a
    binary search with plain ``<``. jnp.searchsorted orders NaN last instead, so its answers differ where a NaN
    is searched for (TF's lower bound of NaN is 0) or sits in the row."""
    rows, values = jnp.asarray(sorted_inputs), jnp.asarray(values)
    n = rows.shape[-1]
    first = jnp.zeros(values.shape, np.int32)
    count = jnp.full(values.shape, n, np.int32)
    for _ in range(n.bit_length()):  # each step at least halves count, from n to 0
        half = count // 2
        middle = jnp.take_along_axis(rows, jnp.minimum(first + half, n - 1), axis=-1)
        right = (count > 0) & (middle < values if side == "left" else ~(values < middle))
        first, count = jnp.where(right, first + half + 1, first), jnp.where(right, count - half - 1, half)
    return first.astype(jax.dtypes.canonicalize_dtype(dtype))


@op("LowerBound")
def lower_bound(ctx, sorted_inputs, values):
    return _search(sorted_inputs, values, "left", ctx.dtype("out_type", _INT32))


@op("UpperBound")
def upper_bound(ctx, sorted_inputs, values):
    return _search(sorted_inputs, values, "right", ctx.dtype("out_type", _INT32))


def _unique(values: np.ndarray, axis: int | None, out_idx: np.dtype):
    """TF's Unique: unique elements (or slices along ``axis``) in order of first occurrence, the index of
    each input element's unique entry, and counts. NaNs never compare equal, so each NaN is its own entry."""
    keys = values
    if values.dtype in (np.dtype(np.float16), np.dtype(jnp.bfloat16)):
        # TF hashes float16/bfloat16 by their bits, so -0 and 0 are distinct entries there (not in float32/64)
        keys = values.astype(np.float64)
        keys[(keys == 0) & np.signbit(keys)] = -1e-300
    _, first, inverse, counts = np.unique(
        keys, return_index=True, return_inverse=True, return_counts=True, axis=axis, equal_nan=False
    )
    uniq = values.reshape(-1)[first] if axis is None else np.take(values, first, axis=axis)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    uniq = uniq[order] if axis is None else np.take(uniq, order, axis=axis)
    return uniq, rank[inverse.reshape(-1)].astype(out_idx), counts[order].astype(out_idx)


def _padded_unique(ctx, x):
    """Unique of run-time ids padded to their number, when the graph cannot observe the padding (an optimizer
    de-duplicating an embedding gradient: jaxsm/graph/dedup.py); None otherwise. The filler is the dtype's
    largest id, out of range for every variable; the ids come sorted (TF: first occurrence), which the allowed
    uses (scatter / sparse-update / gather indices, segment ids) cannot tell apart."""
    from jaxsm.graph.dedup import padded_unique_is_exact

    if ctx.node.op != "Unique" or to_static(x) is not None or ctx.position is None:
        return None
    x = jnp.asarray(x)
    if x.ndim != 1 or not jnp.issubdtype(x.dtype, jnp.integer) or not padded_unique_is_exact(*ctx.position):
        return None
    fill = np.iinfo(x.dtype).max
    uniq, inverse = jnp.unique(x, return_inverse=True, size=x.shape[0], fill_value=fill)
    return uniq, jnp.reshape(inverse, (-1,)).astype(ctx.dtype("out_idx", _INT32))


def _unique_op(ctx, x, axis=None):
    padded = _padded_unique(ctx, x) if axis is None else None
    if padded is not None:
        return padded
    values = ctx.static(x, f"the input of {ctx.node.op} (its output shape depends on the values)")
    if axis is not None:
        axes = _ints(axis)
        axis = _axis(axes[0], values.ndim) if axes else None
    out = _unique(values.reshape(-1) if axis is None else values, axis, ctx.dtype("out_idx", _INT32))
    return out if ctx.node.op.startswith("UniqueWithCounts") else out[:2]


@op("Unique", "UniqueWithCounts")
def unique(ctx, x):
    return _unique_op(ctx, x)


@op("UniqueV2", "UniqueWithCountsV2", static=(1,))
def unique_v2(ctx, x, axis):
    return _unique_op(ctx, x, axis)


@op("Where")
def where(ctx, x):
    values = ctx.static(x, "the input of Where (its output shape depends on the values)")
    if values.ndim == 0:
        raise ctx.error("Where needs an input of rank 1 or more (TF rejects a scalar)")
    return np.argwhere(values).astype(np.int64)


@op("ListDiff")
def list_diff(ctx, x, y):
    xv = ctx.static(x, "input x of ListDiff (its output shape depends on the values)")
    yv = ctx.static(y, "input y of ListDiff (its output shape depends on the values)")
    keep = ~np.isin(xv, yv)
    return xv[keep], np.flatnonzero(keep).astype(ctx.dtype("out_idx", _INT32))


@op("Bincount", static=(1,), checked=(0,))
def bincount(ctx, arr, size, weights):
    _check_bincount(ctx, arr)
    return _bincount(jnp.reshape(arr, -1), int(size), jnp.reshape(weights, -1), ctx.dtype("T"), False)


@op("DenseBincount", static=(1,), checked=(0,))
def dense_bincount(ctx, arr, size, weights):
    _check_bincount(ctx, arr)
    return _bincount(jnp.asarray(arr), int(size), weights, ctx.dtype("T"), ctx.attr("binary_output", False))


@op("RaggedBincount", static=(2,))
def ragged_bincount(ctx, splits, values, size, weights):
    """Per-row counts of a ragged tensor's values (rows given by ``splits``): [rows, size]."""
    values = jnp.asarray(values)
    splits = jnp.asarray(splits)
    weights = jnp.asarray(weights, ctx.dtype("T"))
    binary = ctx.attr("binary_output", False)
    if binary or weights.size == 0:
        weights = jnp.ones(values.shape, weights.dtype)
    size, rows = int(size), splits.shape[0] - 1
    row = jnp.searchsorted(splits, jnp.arange(values.shape[0], dtype=splits.dtype), side="right") - 1
    counts = jnp.zeros((rows, size), weights.dtype).at[row, in_bounds(values, size)].add(weights, mode="drop")
    return (counts > 0).astype(weights.dtype) if binary else counts


def _check_bincount(ctx, arr) -> None:
    known = to_static(arr)
    if known is not None and known.size and known.min() < 0:
        raise ctx.error(f"Input arr must be non-negative, got {known.min()}")


def _bincount(arr, size: int, weights, dtype, binary: bool):
    """TF's (Dense)Bincount: per-row counts (or weight sums) of values in ``[0, size)``; values outside
    are ignored (TF's CPU kernel raises on negative values). ``binary`` marks presence with 1, ignoring
    weights."""
    dtype = jax.dtypes.canonicalize_dtype(dtype)  # (64-bit types with x64 off: the 32-bit ones, as JAX computes)
    weights = jnp.asarray(weights, dtype)
    if binary or weights.size == 0:
        weights = jnp.ones(arr.shape, dtype)
    bins = in_bounds(arr, size)
    out_shape = arr.shape[:-1] + (size,) if arr.ndim == 2 else (size,)
    index = (lax.broadcasted_iota(bins.dtype, arr.shape, 0), bins) if arr.ndim == 2 else (bins,)
    counts = jnp.zeros(out_shape, dtype).at[index].add(weights, mode="drop")
    return (counts > 0).astype(dtype) if binary else counts


# -- space/depth/batch rearrangements ------------------------------------------------------------------------


def _data_format(ctx) -> str:
    fmt = ctx.attr("data_format", "NHWC")
    if fmt not in ("NHWC", "NCHW"):
        raise ctx.error(f"data_format {fmt!r} is not supported (only NHWC and NCHW)")
    return fmt


@op("DepthToSpace")
def depth_to_space(ctx, x):
    b = ctx.attr("block_size")
    if _data_format(ctx) == "NCHW":
        n, c, h, w = x.shape
        y = jnp.reshape(x, (n, b, b, c // (b * b), h, w)).transpose(0, 3, 4, 1, 5, 2)
        return jnp.reshape(y, (n, c // (b * b), h * b, w * b))
    n, h, w, c = x.shape
    y = jnp.reshape(x, (n, h, w, b, b, c // (b * b))).transpose(0, 1, 3, 2, 4, 5)
    return jnp.reshape(y, (n, h * b, w * b, c // (b * b)))


@op("SpaceToDepth")
def space_to_depth(ctx, x):
    b = ctx.attr("block_size")
    if _data_format(ctx) == "NCHW":
        n, c, h, w = x.shape
        y = jnp.reshape(x, (n, c, h // b, b, w // b, b)).transpose(0, 3, 5, 1, 2, 4)
        return jnp.reshape(y, (n, c * b * b, h // b, w // b))
    n, h, w, c = x.shape
    y = jnp.reshape(x, (n, h // b, b, w // b, b, c)).transpose(0, 1, 3, 2, 4, 5)
    return jnp.reshape(y, (n, h // b, w // b, c * b * b))


def _space_to_batch(x, block: list[int], paddings: list[tuple[int, int]]):
    """TF's SpaceToBatchND: zero-pad the spatial dims (1..M), split each into (size / block, block) and move
    the block offsets in front of the batch dimension."""
    m = len(block)
    x = jnp.pad(x, [(0, 0)] + paddings + [(0, 0)] * (x.ndim - 1 - m))
    n, spatial, rest = x.shape[0], x.shape[1 : 1 + m], x.shape[1 + m :]
    outer = [s // b for s, b in zip(spatial, block, strict=True)]
    y = jnp.reshape(x, (n, *(d for o, b in zip(outer, block, strict=True) for d in (o, b)), *rest))
    perm = [2 + 2 * i for i in range(m)] + [0] + [1 + 2 * i for i in range(m)]
    y = jnp.transpose(y, perm + list(range(1 + 2 * m, y.ndim)))
    return jnp.reshape(y, (n * math.prod(block), *outer, *rest))


def _batch_to_space(ctx, x, block: list[int], crops: list[tuple[int, int]]):
    """TF's BatchToSpaceND: the inverse of :func:`_space_to_batch`, then crop the spatial dims."""
    m = len(block)
    for i, (lo, hi) in enumerate(crops):
        if lo < 0 or hi < 0 or lo + hi > x.shape[1 + i] * block[i]:
            raise ctx.error(f"BatchToSpace crops {crops} must be non-negative and fit the spatial dimensions")
    n = x.shape[0] // math.prod(block)
    spatial, rest = x.shape[1 : 1 + m], x.shape[1 + m :]
    y = jnp.reshape(x, (*block, n, *spatial, *rest))
    perm = [m] + [d for i in range(m) for d in (m + 1 + i, i)] + list(range(1 + 2 * m, y.ndim))
    y = jnp.reshape(jnp.transpose(y, perm), (n, *(s * b for s, b in zip(spatial, block, strict=True)), *rest))
    return y[(slice(None),) + tuple(slice(lo, y.shape[1 + i] - hi) for i, (lo, hi) in enumerate(crops))]


@op("SpaceToBatchND", static=(1, 2))
def space_to_batch_nd(ctx, x, block_shape, paddings):
    return _space_to_batch(x, _ints(block_shape), _pad_pairs(paddings))


@op("BatchToSpaceND", static=(1, 2))
def batch_to_space_nd(ctx, x, block_shape, crops):
    return _batch_to_space(ctx, x, _ints(block_shape), _pad_pairs(crops))


@op("SpaceToBatch", static=(1,))
def space_to_batch(ctx, x, paddings):
    b = ctx.attr("block_size")
    return _space_to_batch(x, [b, b], _pad_pairs(paddings))


@op("BatchToSpace", static=(1,))
def batch_to_space(ctx, x, crops):
    b = ctx.attr("block_size")
    return _batch_to_space(ctx, x, [b, b], _pad_pairs(crops))


def _same_or_valid(size: int, window: int, stride: int, padding: str) -> tuple[int, int, int]:
    """Output size and (before, after) padding of one spatial dim under TF's SAME/VALID rules."""
    if padding == "VALID":
        return max(-(-(size - window + 1) // stride), 0), 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


@op("ExtractImagePatches")
def extract_image_patches(ctx, images):
    _, kh, kw, _ = ctx.attr("ksizes")
    _, sh, sw, _ = ctx.attr("strides")
    _, rh, rw, _ = ctx.attr("rates")
    padding = ctx.attr("padding")
    if padding not in ("SAME", "VALID"):
        raise ctx.error(f"padding {padding!r} is not supported (only SAME and VALID)")
    n, h, w, c = images.shape
    oh, top, bottom = _same_or_valid(h, (kh - 1) * rh + 1, sh, padding)
    ow, left, right = _same_or_valid(w, (kw - 1) * rw + 1, sw, padding)
    x = jnp.pad(images, [(0, 0), (top, bottom), (left, right), (0, 0)])
    # TF orders patch features as (row, col, channel).
    patches = [
        x[:, i * rh : i * rh + (oh - 1) * sh + 1 : sh, j * rw : j * rw + (ow - 1) * sw + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.reshape(jnp.stack(patches, axis=3), (n, oh, ow, kh * kw * c))


# -- diagonals and bands -------------------------------------------------------------------------------------


@op("MatrixBandPart", "BatchMatrixBandPart", checked=(1, 2))
def matrix_band_part(ctx, x, num_lower, num_upper):
    rows, cols = x.shape[-2:]
    for name, n, dim, what in (("num_lower", num_lower, rows, "rows"), ("num_upper", num_upper, cols, "columns")):
        n = to_static(n)
        if n is not None and not is_dim(dim) and n > dim:
            raise ctx.error(f"{name} must be negative or at most the number of {what} ({dim}), got {n}")
    offset = np.arange(rows)[:, None] - np.arange(cols)[None, :]
    lower, upper = jnp.asarray(num_lower), jnp.asarray(num_upper)
    in_band = ((lower < 0) | (offset <= lower)) & ((upper < 0) | (-offset <= upper))
    return jnp.where(in_band, x, jnp.zeros((), x.dtype))


def _diag_range(k, ctx=None, rows: int = 0, cols: int = 0) -> tuple[int, int]:
    """(lower, upper) diagonal; given a matrix's shape, checked as matrix_diag_op.cc does for Part/SetDiag."""
    k = _ints(k)
    k0, k1 = k[0], k[-1]
    bad = k0 > k1 or any(not (-rows < d < cols or d == 0) for d in (k0, k1))
    if ctx is not None and not (is_dim(rows) or is_dim(cols)) and bad:
        raise ctx.error(f"diagonals k=({k0}, {k1}) out of range for {rows}x{cols} matrices (or lower > upper)")
    return k0, k1


def _diag_len(rows: int, cols: int, d: int) -> int:
    return min(rows + min(d, 0), cols - max(d, 0))


def _right_aligned(align: str, d: int) -> bool:
    sup, sub = align.split("_")
    return (d >= 0 and sup == "RIGHT") or (d <= 0 and sub == "RIGHT")


def _diag_layout(rows: int, cols: int, k0: int, k1: int, align: str, max_len: int | None = None):
    """Where TF's diagonal band ``[num_diags, max_diag_len]`` lives in a ``rows x cols`` matrix (MatrixDiagV3,
    MatrixDiagPartV3, MatrixSetDiagV3 in tensorflow/core/kernels/linalg/matrix_diag_op.cc).

    Diagonal ``d`` (``d = col - row``) is band row ``k1 - d``; diagonals shorter than ``max_diag_len`` are
    padded on the right, or on the left when ``align`` right-aligns them (its first word for ``d >= 0``,
    second for ``d <= 0``). Returns ``(band_row, band_col, in_band)`` for every matrix element, and
    ``(row, col, valid)`` for every band slot.
    """
    if max_len is None:
        max_len = min(rows + min(k1, 0), cols - max(k0, 0))
    diags = np.arange(k1, k0 - 1, -1)
    lengths = np.asarray([_diag_len(rows, cols, int(d)) for d in diags], np.int64)
    offsets = np.asarray(
        [max_len - n if _right_aligned(align, int(d)) else 0 for d, n in zip(diags, lengths, strict=True)],
        np.int64,
    )
    pos = np.arange(max_len)[None, :] - offsets[:, None]
    valid = (pos >= 0) & (pos < lengths[:, None])
    row = np.where(valid, pos - np.minimum(diags, 0)[:, None], 0)
    col = np.where(valid, pos + np.maximum(diags, 0)[:, None], 0)
    r, c = np.indices((rows, cols))
    d = c - r
    in_band = (d >= k0) & (d <= k1)
    band_row = np.where(in_band, k1 - d, 0)
    band_col = np.where(in_band, np.minimum(r, c) + offsets[band_row], 0)
    return (band_row, band_col, in_band), (row, col, valid)


def _matrix_diag(ctx, diagonal, k, num_rows, num_cols, padding, align):
    k0, k1 = _diag_range(k)
    diagonal = jnp.asarray(diagonal)
    if k0 == k1:
        diagonal = diagonal[..., None, :]
    max_len = diagonal.shape[-1]
    min_rows, min_cols = max_len - min(k1, 0), max_len + max(k0, 0)
    rows, cols = int(num_rows), int(num_cols)
    if rows == -1 and cols == -1:
        rows = cols = max(min_rows, min_cols)
    rows, cols = (min_rows if rows == -1 else rows), (min_cols if cols == -1 else cols)
    # matrix_diag_op.cc: each at least its minimum, and one of them exactly
    if not is_dim(max_len) and (rows < min_rows or cols < min_cols or (rows != min_rows and cols != min_cols)):
        raise ctx.error(f"{rows}x{cols} matrices cannot hold diagonals {k0}..{k1} of length {max_len}")
    (band_row, band_col, in_band), _ = _diag_layout(rows, cols, k0, k1, align, max_len)
    return jnp.where(in_band, diagonal[..., band_row, band_col], jnp.asarray(padding, diagonal.dtype))


def _matrix_diag_part(ctx, x, k, padding, align):
    k0, k1 = _diag_range(k, ctx, *x.shape[-2:])
    _, (row, col, valid) = _diag_layout(*x.shape[-2:], k0, k1, align)
    part = jnp.where(valid, jnp.asarray(x)[..., row, col], jnp.asarray(padding, x.dtype))
    return part[..., 0, :] if k0 == k1 else part


def _matrix_set_diag(ctx, x, diagonal, k, align):
    k0, k1 = _diag_range(k, ctx, *x.shape[-2:])
    diagonal = jnp.asarray(diagonal, x.dtype)
    if k0 == k1:
        diagonal = diagonal[..., None, :]
    (band_row, band_col, in_band), _ = _diag_layout(*x.shape[-2:], k0, k1, align)
    return jnp.where(in_band, diagonal[..., band_row, band_col], x)


def _align(ctx) -> str:
    # V2 ops have no align attr and left-align every diagonal; V3's default is RIGHT_LEFT (and SavedModels
    # strip attrs that have their default value).
    return ctx.attr("align", "RIGHT_LEFT") if ctx.node.op.endswith("V3") else "LEFT_LEFT"


@op("MatrixDiag", "BatchMatrixDiag")
def matrix_diag(ctx, diagonal):
    return _matrix_diag(ctx, diagonal, 0, -1, -1, 0, "LEFT_LEFT")


@op("MatrixDiagV2", "MatrixDiagV3", static=(1, 2, 3))
def matrix_diag_v3(ctx, diagonal, k, num_rows, num_cols, padding_value):
    return _matrix_diag(ctx, diagonal, k, num_rows, num_cols, padding_value, _align(ctx))


@op("MatrixDiagPart", "BatchMatrixDiagPart")
def matrix_diag_part(ctx, x):
    return _matrix_diag_part(ctx, x, 0, 0, "LEFT_LEFT")


@op("MatrixDiagPartV2", "MatrixDiagPartV3", static=(1,))
def matrix_diag_part_v3(ctx, x, k, padding_value):
    return _matrix_diag_part(ctx, x, k, padding_value, _align(ctx))


@op("MatrixSetDiag", "BatchMatrixSetDiag")
def matrix_set_diag(ctx, x, diagonal):
    return _matrix_set_diag(ctx, x, diagonal, 0, "LEFT_LEFT")


@op("MatrixSetDiagV2", "MatrixSetDiagV3", static=(2,))
def matrix_set_diag_v3(ctx, x, diagonal, k):
    return _matrix_set_diag(ctx, x, diagonal, k, _align(ctx))


@op("Diag")
def diag(ctx, diagonal):
    shape = tuple(diagonal.shape)
    return jnp.reshape(jnp.diag(jnp.reshape(diagonal, -1)), shape + shape)


@op("DiagPart")
def diag_part(ctx, x):
    shape = tuple(x.shape[: x.ndim // 2])
    n = math.prod(shape)
    return jnp.reshape(jnp.diagonal(jnp.reshape(x, (n, n))), shape)


@op("Empty", static=(0,))
def empty(ctx, shape):
    # TF leaves the contents undefined unless init=True (zeros); zeros satisfy both.
    return jnp.zeros(tuple(_ints(shape)), jax.dtypes.canonicalize_dtype(ctx.dtype("dtype")))


@op("Bucketize")
def bucketize(ctx, x):
    # TF compares each value with float32 boundaries in C++: ints convert to float, doubles stay double.
    compute = np.float64 if np.dtype(x.dtype) == np.float64 else np.float32
    known = np.asarray(ctx.attr("boundaries"), np.float32)
    if (known[1:] < known[:-1]).any():  # TF's kernel constructor checks std::is_sorted
        raise ctx.error(f"Expected sorted boundaries, got {known.tolist()}")
    boundaries = jnp.asarray(known, compute)
    return jnp.searchsorted(boundaries, jnp.asarray(x).astype(compute), side="right").astype(_INT32)


@op("ToBool")
def to_bool(ctx, x):
    # A scalar is its truth value; any other tensor is true when it has elements (tensor_util ToBool kernel).
    if np.ndim(x) == 0:
        return jnp.asarray(x) != 0
    return np.asarray(np.size(x) > 0)
