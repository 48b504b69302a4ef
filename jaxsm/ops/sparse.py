"""SparseTensor ops: arithmetic with dense tensors, reductions, softmax, reordering, add, slice, concat, split,
element-wise max/min of two SparseTensors, the counting ops with sparse inputs or outputs, and the gradients of
SparseAdd, SparseSlice, SparseFillEmptyRows and SparseSegment* (set ops and EditDistance: jaxsm/ops/sets.py).

A SparseTensor arrives as three inputs: ``indices`` (int64 [N, rank]), ``values`` ([N]) and ``dense_shape``
(int64 [rank]). Ops whose output shape is static (SparseTensorDenseMatMul, SparseDenseCwise*, SparseSoftmax,
SparseReorder, SparseTensorDenseAdd) compile; SparseTensorDenseMatMul, SparseReduce* and SparseConcat need the
dense shape at trace time, since it sets their output shape. Ops whose output size depends on index values
(SparseAdd, SparseSlice, SparseSplit, SparseReduce*Sparse, SparseSparseMaximum/Minimum, the *CountSparseOutput ops,
SparseAddGrad, SparseSliceGrad, SparseSegment*GradV2) read the indices with ``ctx.static``: under ``jax.jit`` with
run-time indices the call runs op by op. String values (host NumPy) are moved by positions known at trace time.

TF's CPU kernels raise on out-of-range indices. jaxsm raises too when the indices are known at trace time; a
compiled function drops such entries (gathers give 0), as its scatters do (jaxsm/ops/gaps.py).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsm.dtypes import is_strings
from jaxsm.graph.values import to_static
from jaxsm.ops.array import in_bounds
from jaxsm.ops.registry import op, precision
from jaxsm.ops.segment import segment_reduce

_I64 = np.int64

# -- helpers -------------------------------------------------------------------------------------------------


def _shape(ctx, dense_shape: Any, what: str = "the dense shape (it sets the output shape)") -> np.ndarray:
    return np.asarray(ctx.static(dense_shape, what), _I64).reshape(-1)


def _static_indices(ctx, indices: Any) -> np.ndarray:
    return np.asarray(ctx.static(indices, "the indices (the output size depends on them)"), _I64)


def _check_bounds(ctx, indices: Any, shape: np.ndarray) -> None:
    """Raise like TF's CPU kernels when an index known at trace time lies outside ``shape``."""
    idx = to_static(indices)
    if idx is None or idx.size == 0:
        return
    bad = np.flatnonzero(np.any((idx < 0) | (idx >= shape), axis=1))
    if bad.size:
        raise ctx.error(
            f"index {idx[bad[0]].tolist()} (entry {bad[0]}) is out of bounds of the dense shape {shape.tolist()}"
        )


def _gather(ctx, values: Any, positions: Any) -> Any:
    """``values[positions]``; string values (host NumPy) need the positions at trace time."""
    if is_strings(values):
        pos = np.asarray(ctx.static(positions, "the positions of the string values"), _I64)
        return np.asarray(values, object).reshape(-1)[pos] if pos.size else np.empty(pos.shape, object)
    values = jnp.asarray(values)
    if values.shape[0] == 0:  # only placeholders are read from an empty side (SparseAdd of an empty operand)
        return jnp.zeros(np.shape(positions), values.dtype)
    return jnp.take(values, jnp.asarray(positions), axis=0)


def _row_major_order(indices: Any, dims: list[int] | None = None) -> Any:
    """The stable permutation that sorts index rows in row-major (lexicographic) order of the columns ``dims``
    (all, in order, by default), jit-able."""
    idx = jnp.asarray(indices)
    n, rank = idx.shape
    dims = list(range(rank)) if dims is None else dims
    iota = jnp.arange(n)
    if not dims or n == 0:
        return iota
    return lax.sort([idx[:, d] for d in dims] + [iota], num_keys=len(dims), is_stable=True)[-1]


def _union_walk(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The merge of two index lists that TF's SparseAdd and SparseSparseMaximum/Minimum do (sparse_add_op.cc,
    sparse_sparse_binary_op_shared.cc): walk both in their given order (assumed row-major sorted), emitting the
    smaller index, or one entry for an index in both. Returns (from: 0 a, 1 b, 2 both; a position; b position)."""
    steps = []
    i = j = 0
    while i < len(a) or j < len(b):
        ka = tuple(a[i]) if i < len(a) else None
        kb = tuple(b[j]) if j < len(b) else None
        if kb is None or (ka is not None and ka < kb):
            steps.append((0, i, 0))
            i += 1
        elif ka is None or kb < ka:
            steps.append((1, 0, j))
            j += 1
        else:
            steps.append((2, i, j))
            i, j = i + 1, j + 1
    src, pa, pb = np.asarray(steps, _I64).reshape(-1, 3).T
    return src, pa, pb


def _walk_indices(a: np.ndarray, b: np.ndarray, src: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """The index of each step of :func:`_union_walk`."""
    rank = a.shape[1]
    return np.where((src == 1)[:, None], b[pb] if len(b) else 0, a[pa] if len(a) else 0).reshape(-1, rank)


def _same_shapes(ctx, a_shape: Any, b_shape: Any) -> np.ndarray:
    a, b = _shape(ctx, a_shape), _shape(ctx, b_shape)
    if a.shape != b.shape or (a != b).any():
        raise ctx.error(f"operands' shapes do not match: {a.tolist()} and {b.tolist()}")
    return a


# -- sparse x dense ------------------------------------------------------------------------------------------


@op("SparseTensorDenseMatMul")
def sparse_tensor_dense_mat_mul(ctx, a_indices, a_values, a_shape, b):
    shape = _shape(ctx, a_shape, "a_shape (it sets the output's rows)")
    b = jnp.asarray(b)
    b = jnp.conj(b.T) if ctx.attr("adjoint_b", False) else b
    rows, inner = (shape[1], shape[0]) if ctx.attr("adjoint_a", False) else (shape[0], shape[1])
    if b.shape[0] != inner:
        raise ctx.error(f"cannot multiply A and B: inner dimensions {inner} and {b.shape[0]} do not match")
    _check_bounds(ctx, a_indices, shape)
    idx, values = jnp.asarray(a_indices), jnp.asarray(a_values)
    i, k = idx[:, 0], idx[:, 1]
    if ctx.attr("adjoint_a", False):
        i, k, values = k, i, jnp.conj(values)
    terms = values[:, None] * b.at[in_bounds(k, inner)].get(mode="fill", fill_value=0)
    return jnp.zeros((int(rows), b.shape[1]), terms.dtype).at[in_bounds(i, int(rows))].add(terms, mode="drop")


@op("SparseTensorDenseAdd")
def sparse_tensor_dense_add(ctx, a_indices, a_values, a_shape, b):
    b = jnp.asarray(b)
    shape = to_static(a_shape)
    if shape is not None and tuple(np.asarray(shape).reshape(-1)) != b.shape:
        raise ctx.error(f"dimension mismatch: a_shape {np.asarray(shape).tolist()} vs b's shape {list(b.shape)}")
    _check_bounds(ctx, a_indices, np.asarray(b.shape, _I64))
    idx = jnp.asarray(a_indices)
    return b.at[tuple(in_bounds(idx[:, d], b.shape[d]) for d in range(b.ndim))].add(
        jnp.asarray(a_values, b.dtype), mode="drop"
    )


@op("SparseDenseCwiseMul", "SparseDenseCwiseDiv", "SparseDenseCwiseAdd")
def sparse_dense_cwise(ctx, sp_indices, sp_values, sp_shape, dense):
    dense_at = _dense_at_indices(ctx, sp_indices, sp_shape, jnp.asarray(dense))
    values = jnp.asarray(sp_values)
    if ctx.node.op == "SparseDenseCwiseAdd":
        return values + dense_at
    if ctx.node.op == "SparseDenseCwiseMul":
        return values * dense_at
    known = _known_at_indices(ctx, sp_indices, sp_shape, dense)
    if known is not None and (known == 0).any():  # TF rejects a zero divisor, for floats too
        raise ctx.error("SparseDenseCwiseDiv cannot divide by zero, but the dense tensor contains zero")
    # C++ integer division truncates; lax.div does the same, and divides floats normally
    return lax.div(values, dense_at)


def _known_at_indices(ctx, sp_indices, sp_shape, dense) -> np.ndarray | None:
    """The dense operand at the sparse indices when both are known at trace time, else None (under jax.jit even
    arithmetic on constants is staged out, so it is evaluated here explicitly)."""
    idx, values = to_static(sp_indices), to_static(dense)
    if idx is None or values is None:
        return None
    with jax.ensure_compile_time_eval():
        return np.asarray(_dense_at_indices(ctx, idx, sp_shape, jnp.asarray(values)))


def _dense_at_indices(ctx, sp_indices, sp_shape, dense) -> Any:
    """The dense operand broadcast to the sparse shape, read at each index (sparse_dense_binary_op_shared.cc:
    only the dense side broadcasts; a size-1 dimension is read at 0)."""
    rank = int(np.shape(sp_indices)[1])
    if dense.ndim > rank:
        raise ctx.error(f"the dense operand (rank {dense.ndim}) cannot broadcast to the sparse rank {rank}")
    shape = to_static(sp_shape)
    lead = rank - dense.ndim
    if shape is not None:
        shape = np.asarray(shape, _I64).reshape(-1)
        if any(d not in (1, s) for d, s in zip(dense.shape, shape[lead:])):
            raise ctx.error(f"the dense shape {list(dense.shape)} does not broadcast to {shape.tolist()}")
        _check_bounds(ctx, sp_indices, shape)
    idx = jnp.asarray(sp_indices)
    at = tuple(
        jnp.zeros_like(idx[:, lead + d]) if n == 1 else in_bounds(idx[:, lead + d], n)
        for d, n in enumerate(dense.shape)
    )
    return dense.at[at].get(mode="fill", fill_value=0)


@op("SparseMatMul")
def sparse_mat_mul(ctx, a, b):
    # the sparsity flags are hints for TF's kernel; the product is a plain float32 matmul
    a, b = jnp.asarray(a, np.float32), jnp.asarray(b, np.float32)
    a = a.T if ctx.attr("transpose_a", False) else a
    b = b.T if ctx.attr("transpose_b", False) else b
    return jnp.matmul(a, b, precision=precision())


# -- reductions and softmax ------------------------------------------------------------------------------------


def _reduction(ctx, input_shape, reduction_axes) -> tuple[np.ndarray, list[int], list[int]]:
    """(shape, kept dims, output shape) of SparseReduce* (sparse_reduce_op.cc): axes in [-rank, rank), keep_dims
    leaves reduced dims as 1."""
    shape = _shape(ctx, input_shape)
    axes = np.asarray(ctx.static(reduction_axes, "the reduction axes"), _I64).reshape(-1)
    rank = shape.size
    if ((axes < -rank) | (axes >= rank)).any():
        raise ctx.error(f"invalid reduction dimension in {axes.tolist()} for input with {rank} dimensions")
    reduced = set((axes % max(rank, 1)).tolist())
    kept = [d for d in range(rank) if d not in reduced]
    keep_dims = ctx.attr("keep_dims", False)
    out_shape = (
        [1 if d in reduced else int(shape[d]) for d in range(rank)] if keep_dims else [int(shape[d]) for d in kept]
    )
    return shape, kept, out_shape


@op("SparseReduceSum", "SparseReduceMax")
def sparse_reduce(ctx, input_indices, input_values, input_shape, reduction_axes):
    """A dense result: each cell reduces the entries of its group, a cell without entries is 0 (for Max too;
    implicit zeros never take part). TF's SparseReduceMax folds a group in row-major index order, as its
    segment ops do with NaN (jaxsm/ops/segment.py)."""
    shape, kept, out_shape = _reduction(ctx, input_shape, reduction_axes)
    _check_bounds(ctx, input_indices, shape)
    values, idx = jnp.asarray(input_values), jnp.asarray(input_indices)
    lead = jnp.zeros(idx.shape[:1], idx.dtype)  # a leading axis of 1 drops duplicates even for a scalar output
    if ctx.node.op == "SparseReduceMax":
        idx, values, first = _group_max(idx, values, kept)
        lead = jnp.where(first, 0, 1)
    cols = [in_bounds(idx[:, d], int(shape[d])) if d in kept else jnp.zeros_like(idx[:, d]) for d in range(shape.size)]
    at = tuple(cols) if ctx.attr("keep_dims", False) else tuple(cols[d] for d in kept)
    out = jnp.zeros([1] + out_shape, values.dtype).at[(lead,) + at]
    # a group's max is set once, not added to the 0.0 fill, which would turn a -0.0 max into 0.0
    how = out.set if ctx.node.op == "SparseReduceMax" else out.add
    return how(values, mode="drop", wrap_negative_indices=False)[0]


def _group_max(idx, values, kept: list[int]) -> tuple[Any, Any, Any]:
    """The entries sorted by group (the ``kept`` dims), each group's max (folded in row-major order) at every
    entry, and which entries start a group."""
    n, rank = idx.shape
    order = _row_major_order(idx, kept + [d for d in range(rank) if d not in kept])
    idx, values = idx[order], values[order]
    keys = idx[:, kept]
    starts = jnp.concatenate([jnp.ones(min(n, 1), bool), jnp.any(keys[1:] != keys[:-1], axis=1)])
    group = jnp.cumsum(starts) - 1
    return idx, segment_reduce("Max", values, group, n, True)[group], starts


@op("SparseReduceSumSparse", "SparseReduceMaxSparse")
def sparse_reduce_sparse(ctx, input_indices, input_values, input_shape, reduction_axes):
    shape, kept, out_shape = _reduction(ctx, input_shape, reduction_axes)
    idx = _static_indices(ctx, input_indices)
    _check_bounds(ctx, idx, shape)
    rest = [d for d in range(shape.size) if d not in kept]
    # TF folds each group in row-major order, which matters for Max with NaN (jaxsm/ops/segment.py)
    order = np.lexsort(idx[:, kept + rest].T[::-1]) if idx.size else np.arange(len(idx))
    keys = idx[order][:, kept]
    starts = np.concatenate([np.ones(min(len(keys), 1), bool), np.any(keys[1:] != keys[:-1], axis=1)])
    group = np.cumsum(starts) - 1
    out_idx = np.zeros((int(starts.sum()), len(out_shape)), _I64)
    if ctx.attr("keep_dims", False):
        out_idx[:, kept] = keys[starts]
    else:
        out_idx[:] = keys[starts]
    kind = "Sum" if ctx.node.op == "SparseReduceSumSparse" else "Max"
    out = segment_reduce(kind, _gather(ctx, input_values, order), group, len(out_idx), True)
    return out_idx, out, np.asarray(out_shape, _I64)


@op("SparseSoftmax")
def sparse_softmax(ctx, sp_indices, sp_values, sp_shape):
    """Softmax over the last dimension of each group of entries sharing the other indices (sparse_softmax_op.cc).
    TF sorts the entries first: the output values follow the row-major order of the indices, not the input's."""
    idx = jnp.asarray(sp_indices)
    if idx.shape[1] < 2:
        raise ctx.error(f"SparseSoftmax needs a SparseTensor of rank >= 2, got rank {idx.shape[1]}")
    order = _row_major_order(idx)
    idx, values = idx[order], jnp.asarray(sp_values)[order]
    n = values.shape[0]
    starts = jnp.concatenate([jnp.ones(min(n, 1), bool), jnp.any(idx[1:, :-1] != idx[:-1, :-1], axis=1)])
    group = jnp.cumsum(starts) - 1
    top = jax.ops.segment_max(values, group, num_segments=n, indices_are_sorted=True)
    e = jnp.exp(values - top[group])
    return e / jax.ops.segment_sum(e, group, num_segments=n, indices_are_sorted=True)[group]


@op("SparseReorder")
def sparse_reorder(ctx, input_indices, input_values, input_shape):
    # sparse_reorder_op.cc validates the SparseTensor (a SparseFeature's index and value lists of unequal length)
    n, m = np.shape(input_indices)[0], np.shape(input_values)[0]
    if n != m:
        raise ctx.error(f"indices and values have different numbers of entries: {n} vs. {m}")
    order = _row_major_order(input_indices)
    return jnp.asarray(input_indices)[order], _gather(ctx, input_values, order)


# -- sparse x sparse, slicing, concatenation -------------------------------------------------------------------


@op("SparseAdd")
def sparse_add(ctx, a_indices, a_values, a_shape, b_indices, b_values, b_shape, thresh):
    """A + B by the merge walk of :func:`_union_walk`; a sum of two entries is kept when ``|sum| >= thresh``
    (a NaN sum is dropped), single entries are always kept (sparse_add_op.cc)."""
    shape = _same_shapes(ctx, a_shape, b_shape)
    a, b = _static_indices(ctx, a_indices), _static_indices(ctx, b_indices)
    src, pa, pb = _union_walk(a, b)
    av, bv = _gather(ctx, a_values, pa), _gather(ctx, b_values, pb)
    sums = jnp.where(src == 0, av, jnp.where(src == 1, bv, av + bv))
    keep = src != 2
    if not keep.all():
        s = np.asarray(ctx.static(sums, "the values (entries whose sum falls below thresh are dropped)"))
        keep |= np.abs(s) >= np.asarray(ctx.static(thresh, "thresh"))
    return _walk_indices(a, b, src, pa, pb)[keep], sums[np.flatnonzero(keep)], shape


@op("SparseSparseMaximum", "SparseSparseMinimum")
def sparse_sparse_min_max(ctx, a_indices, a_values, a_shape, b_indices, b_values, b_shape):
    # an index present on one side only meets the other side's implicit zero
    shape = _same_shapes(ctx, a_shape, b_shape)
    a, b = _static_indices(ctx, a_indices), _static_indices(ctx, b_indices)
    _check_bounds(ctx, a, shape), _check_bounds(ctx, b, shape)
    src, pa, pb = _union_walk(a, b)
    av, bv = _gather(ctx, a_values, pa), _gather(ctx, b_values, pb)
    av, bv = jnp.where(src == 1, 0, av), jnp.where(src == 0, 0, bv)
    out = jnp.maximum(av, bv) if ctx.node.op == "SparseSparseMaximum" else jnp.minimum(av, bv)
    return _walk_indices(a, b, src, pa, pb), out


@op("SparseSlice")
def sparse_slice(ctx, indices, values, shape, start, size):
    """Entries inside [start, start + size), shifted by ``start``, in input order; the output shape is the part of
    that box inside ``shape`` (sparse_tensor.h Slice)."""
    idx, shape = _static_indices(ctx, indices), _shape(ctx, shape)
    start = np.asarray(ctx.static(start, "start"), _I64).reshape(-1)
    size = np.asarray(ctx.static(size, "size"), _I64).reshape(-1)
    if start.size != shape.size or size.size != shape.size:
        raise ctx.error(f"start {start.tolist()} and size {size.tolist()} must have the rank of {shape.tolist()}")
    if (size < 0).any():
        raise ctx.error(f"expected a non-negative size, got {size.tolist()}")
    keep = np.flatnonzero(np.all((idx >= start) & (idx < start + size), axis=1))
    out_shape = np.maximum(np.minimum(start + size, shape) - start, 0)
    return idx[keep] - start, _gather(ctx, values, keep), out_shape


@op("SparseConcat")
def sparse_concat(ctx, *args):
    """Concatenation along ``concat_dim``: indices shift by the sizes before them; TF reorders the result
    row-major (sparse_concat_op.cc), so the output is sorted whatever the inputs' order."""
    n = len(args) // 3
    indices, values = list(args[:n]), list(args[n : 2 * n])
    shapes = [_shape(ctx, s, "the input shapes (they set the output shape)") for s in args[2 * n :]]
    rank = shapes[0].size
    dim = int(ctx.attr("concat_dim"))
    if not -rank <= dim < rank:
        raise ctx.error(f"concat_dim {dim} is out of range for rank {rank}")
    dim %= rank
    for k, s in enumerate(shapes):
        if s.size != rank or (np.delete(s, dim) != np.delete(shapes[0], dim)).any():
            raise ctx.error(f"input shapes must match except in dimension {dim}: {shapes[0]} and {s} (input {k})")
    offsets = np.cumsum([0] + [int(s[dim]) for s in shapes[:-1]])
    idx = jnp.concatenate([jnp.asarray(i).at[:, dim].add(int(o)) for i, o in zip(indices, offsets)])
    order = _row_major_order(idx)
    out_shape = shapes[0].copy()
    out_shape[dim] = sum(int(s[dim]) for s in shapes)
    if any(is_strings(v) for v in values):
        flat = np.concatenate([np.asarray(v, object).reshape(-1) for v in values])
        return idx[order], _gather(ctx, flat, order), out_shape
    return idx[order], jnp.concatenate([jnp.asarray(v) for v in values])[order], out_shape


@op("SparseSplit")
def sparse_split(ctx, split_dim, indices, values, shape):
    """``num_split`` pieces along ``split_dim``; the first ``size % num_split`` pieces are one longer, entries
    keep their input order (sparse_tensor.h Split)."""
    idx, shape = _static_indices(ctx, indices), _shape(ctx, shape)
    num = int(ctx.attr("num_split"))
    dim = int(np.asarray(ctx.static(split_dim, "split_dim")).reshape(-1)[0])
    if not -shape.size <= dim < shape.size:
        raise ctx.error(f"split_dim {dim} is out of range for rank {shape.size}")
    dim %= shape.size
    size = int(shape[dim])
    if not 1 <= num <= size:
        raise ctx.error(f"num_split should be between 1 and the splitting dimension size ({size}), got {num}")
    _check_bounds(ctx, idx, shape)
    bounds = np.cumsum([0] + [size // num + (k < size % num) for k in range(num)])
    piece = np.searchsorted(bounds, idx[:, dim], side="right") - 1
    parts, part_values, part_shapes = [], [], []
    for k in range(num):
        keep = np.flatnonzero(piece == k)
        parts.append(idx[keep] - np.where(np.arange(shape.size) == dim, bounds[k], 0))
        part_values.append(_gather(ctx, values, keep))
        part_shapes.append(np.where(np.arange(shape.size) == dim, bounds[k + 1] - bounds[k], shape))
    return parts + part_values + part_shapes


# -- counting ------------------------------------------------------------------------------------------------


@op("SparseBincount", static=(3,))
def sparse_bincount(ctx, indices, values, dense_shape, size, weights):
    """Per-row (rank 2) or overall (rank 1) counts of the values in ``[0, size)``, others ignored (negative ones
    raise in rank 1); weights add up instead of 1 when given, ``binary_output`` marks presence (bincount_op.cc)."""
    size = int(size)
    if size < 0:
        raise ctx.error(f"size ({size}) must be non-negative")
    shape = _shape(ctx, dense_shape)
    _check_bounds(ctx, indices, shape)
    known = to_static(values)
    if shape.size == 1 and known is not None and (known < 0).any():  # TF ignores them in rank 2 only
        raise ctx.error("input arr must be non-negative")
    values, weights = jnp.asarray(values), jnp.asarray(weights, ctx.dtype("T"))
    binary = ctx.attr("binary_output", False)
    if binary or weights.size == 0:
        weights = jnp.ones(values.shape, weights.dtype)
    at = (
        (in_bounds(values, size),)
        if shape.size == 1
        else (in_bounds(jnp.asarray(indices)[:, 0], int(shape[0])), in_bounds(values, size))
    )
    out_shape = (size,) if shape.size == 1 else (int(shape[0]), size)
    counts = jnp.zeros(out_shape, weights.dtype).at[at].add(weights, mode="drop")
    return (counts > 0).astype(weights.dtype) if binary else counts


@op("DenseCountSparseOutput")
def dense_count_sparse_output(ctx, values, weights):
    v = np.asarray(ctx.static(values, "the values (they set the output size)"))
    if v.ndim not in (1, 2):
        raise ctx.error(f"input must be a 1 or 2-dimensional tensor, got shape {list(v.shape)}")
    batch = None if v.ndim == 1 else np.repeat(np.arange(v.shape[0]), v.shape[1])
    return _count_sparse(ctx, batch, v.reshape(-1), weights, v.shape[0] if v.ndim == 2 else None)


@op("SparseCountSparseOutput")
def sparse_count_sparse_output(ctx, indices, values, dense_shape, weights):
    idx, shape = _static_indices(ctx, indices), _shape(ctx, dense_shape)
    _check_bounds(ctx, idx, shape)
    v = np.asarray(ctx.static(values, "the values (they set the output size)")).reshape(-1)
    return _count_sparse(
        ctx, idx[:, 0] if shape.size == 2 else None, v, weights, int(shape[0]) if shape.size == 2 else None
    )


@op("RaggedCountSparseOutput")
def ragged_count_sparse_output(ctx, splits, values, weights):
    s = np.asarray(ctx.static(splits, "the row splits"), _I64).reshape(-1)
    v = np.asarray(ctx.static(values, "the values (they set the output size)")).reshape(-1)
    if s.size < 1 or s[0] != 0 or s[-1] != v.size or (np.diff(s) < 0).any():
        raise ctx.error(f"splits must start at 0, rise, and end at the number of values ({v.size}): {s.tolist()}")
    batch = np.repeat(np.arange(s.size - 1), np.diff(s))
    return _count_sparse(ctx, batch, v, weights, s.size - 1)


def _count_sparse(ctx, batch: np.ndarray | None, values: np.ndarray, weights: Any, num_batches: int | None):
    """The SparseTensor of counts of the *CountSparseOutput ops (count_ops.cc): per batch, one entry per distinct
    value below ``maxlength`` (when > 0), sorted; the width is ``maxlength``, else max(``minlength``, largest value
    + 1, 1). Weights (summed) can be run-time values: only the values set the output's size."""
    if (values < 0).any():
        raise ctx.error("input values must all be non-negative")
    weights = jnp.asarray(weights, ctx.dtype("output_type"))
    if weights.size and weights.size != values.size:
        raise ctx.error(f"weights ({weights.size} values) and values ({values.size}) must have the same shape")
    maxlength, minlength = int(ctx.attr("maxlength", -1)), int(ctx.attr("minlength", -1))
    keep = np.flatnonzero(values < maxlength) if maxlength > 0 else np.arange(values.size)
    keys = np.stack([values[keep]] if batch is None else [batch[keep], values[keep]], axis=1).astype(_I64)
    entries, inverse = np.unique(keys, axis=0, return_inverse=True)
    if ctx.attr("binary_output", False) or weights.size == 0:
        weights = jnp.ones(values.shape, weights.dtype)
    sums = jax.ops.segment_sum(jnp.reshape(weights, -1)[keep], inverse.reshape(-1), num_segments=len(entries))
    out = (sums > 0).astype(sums.dtype) if ctx.attr("binary_output", False) else sums
    width = maxlength if maxlength > 0 else max(minlength, int(values.max(initial=0)) + 1)
    shape = [width] if batch is None else [num_batches, width]
    return entries.reshape(-1, len(shape)), out, np.asarray(shape, _I64)


# -- gradients -----------------------------------------------------------------------------------------------


@op("SparseSegmentSumGrad", "SparseSegmentMeanGrad", "SparseSegmentSqrtNGrad", static=(3,))
def sparse_segment_grad(ctx, grad, indices, segment_ids, output_dim0):
    _check_segment_indices(ctx, indices, int(output_dim0))
    return _segment_grad(ctx, grad, segment_ids, jnp.asarray(indices), int(output_dim0))


@op("SparseSegmentSumGradV2", "SparseSegmentMeanGradV2", "SparseSegmentSqrtNGradV2")
def sparse_segment_grad_v2(ctx, grad, indices, segment_ids, dense_output_dim0):
    # only the rows of the indices used are returned, with those indices sorted: a data-dependent size
    idx = np.asarray(ctx.static(indices, "the indices (the output has one row per distinct index)"))
    _check_segment_indices(ctx, idx, int(np.asarray(ctx.static(dense_output_dim0, "dense_output_dim0"))))
    unique, position = np.unique(idx, return_inverse=True)
    return _segment_grad(ctx, grad, segment_ids, position.reshape(-1), len(unique)), unique.astype(idx.dtype)


def _check_segment_indices(ctx, indices: Any, rows: int) -> None:
    known = to_static(indices)
    bad = None if known is None else np.flatnonzero((known < 0) | (known >= rows))
    if bad is not None and bad.size:
        raise ctx.error(f"index {int(known[bad[0]])} out of range [0, {rows})")


def _segment_grad(ctx, grad, segment_ids, rows, num_rows: int):
    """Output row ``rows[i]`` adds up ``grad[segment_ids[i]]``, scaled by 1, 1/count or 1/sqrt(count) of the
    segment for Sum, Mean and SqrtN (segment_reduction_ops_impl.h SparseSegmentGradOpBase)."""
    grad, ids = jnp.asarray(grad), jnp.asarray(segment_ids)
    known = to_static(segment_ids)
    if known is not None and known.size and ((known < 0) | (known >= grad.shape[0])).any():
        raise ctx.error(f"invalid number of segments: a segment id is outside [0, {grad.shape[0]})")
    count = jnp.maximum(
        jnp.zeros(grad.shape[0], grad.dtype).at[ids].add(1, mode="drop", wrap_negative_indices=False), 1
    )
    kind = ctx.node.op.removeprefix("SparseSegment").split("Grad")[0]
    scale = {"Sum": jnp.ones_like(count), "Mean": 1 / count, "SqrtN": lax.rsqrt(count)}[kind]
    picked = grad.at[ids].get(mode="fill", fill_value=0, wrap_negative_indices=False)
    picked = picked * scale[ids].reshape((-1,) + (1,) * (grad.ndim - 1))
    out = jnp.zeros((num_rows,) + grad.shape[1:], grad.dtype)
    return out.at[rows].add(picked, mode="drop", wrap_negative_indices=False)


@op("SparseAddGrad")
def sparse_add_grad(ctx, backprop_val_grad, a_indices, b_indices, sum_indices):
    """Each operand entry gets the gradient of the sum entry it became, 0 when the sum dropped it: the merge
    walk of SparseAdd (:func:`_union_walk`) against the sum's indices (sparse_add_grad_op.cc)."""
    a, b, s = (_static_indices(ctx, i) for i in (a_indices, b_indices, sum_indices))
    src, pa, pb = _union_walk(a, b)
    a_from, b_from, k = np.full(len(a), -1, _I64), np.full(len(b), -1, _I64), 0
    for kind, i, j in zip(src, pa, pb):
        here = a[i] if kind != 1 else b[j]
        if k < len(s) and (s[k] == here).all():
            if kind != 1:
                a_from[i] = k
            if kind != 0:
                b_from[j] = k
            k += 1
    grad = jnp.asarray(backprop_val_grad)
    return tuple(
        jnp.where(f >= 0, _gather(ctx, grad, np.maximum(f, 0)), 0).astype(grad.dtype) for f in (a_from, b_from)
    )


@op("SparseFillEmptyRowsGrad")
def sparse_fill_empty_rows_grad(ctx, reverse_index_map, grad_values):
    # an output value that no input entry moved to came from default_value
    grad, where = jnp.asarray(grad_values), jnp.asarray(reverse_index_map)
    known = to_static(reverse_index_map)
    if known is not None and known.size and ((known < 0) | (known >= grad.shape[0])).any():
        raise ctx.error(f"elements in reverse index must be in [0, {grad.shape[0]})")
    used = jnp.zeros(grad.shape, bool).at[where].set(True, mode="drop", wrap_negative_indices=False)
    d_values = grad.at[where].get(mode="fill", fill_value=0, wrap_negative_indices=False)
    return d_values, jnp.sum(jnp.where(used, 0, grad))


@op("SparseSliceGrad")
def sparse_slice_grad(ctx, backprop_val_grad, input_indices, input_start, output_indices):
    """The slice's gradients back at the input entries they came from, matched in order (sparse_slice_grad_op.cc);
    every output entry must be matched."""
    idx, out = _static_indices(ctx, input_indices), _static_indices(ctx, output_indices)
    start = np.asarray(ctx.static(input_start, "input_start"), _I64).reshape(-1)
    source, j = np.full(len(idx), -1, _I64), 0
    for i, row in enumerate(idx):
        if j < len(out) and (row == out[j] + start).all():
            source[i], j = j, j + 1
    if j != len(out):
        raise ctx.error(f"elements of backprop_val_grad aren't all propagated: {len(out)} elements, {j} used")
    grad = jnp.asarray(backprop_val_grad)
    return jnp.where(source >= 0, _gather(ctx, grad, np.maximum(source, 0)), 0).astype(grad.dtype)
