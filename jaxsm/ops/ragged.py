"""Ragged tensor ops (tf.ragged.*): RaggedRange, RaggedGather, RaggedTensorToSparse, RaggedFillEmptyRows (+Grad),
RaggedCross, and the DT_VARIANT encoding that tf.map_fn uses to carry ragged rows (RaggedTensorToVariant,
RaggedTensorFromVariant, RaggedTensorToVariantGradient).

A ragged tensor is its flat ``values`` plus one ``row_splits`` vector per ragged dimension, outermost first. The
output sizes of these ops depend on the splits' values, so the splits (and indices, ranges...) are read with
``ctx.static``: under ``jax.jit`` with run-time splits a call runs op by op (EagerFallbackWarning). Values are
gathered with static positions, so they may stay traced, except in variants.

A variant tensor holding ragged tensors is a NumPy object array of :class:`RaggedVariant` (like string tensors,
it lives on the host): one element per row when ``batched_input`` splits a ragged tensor into its rows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsm.dtypes import HostValue, is_strings
from jaxsm.ops.array import sparse_fill_empty_rows
from jaxsm.ops.hashing import M64, fingerprint64
from jaxsm.ops.registry import op
from jaxsm.ops.sparse_cross import _bucket, _fingerprint_cat64
from jaxsm.ops.strings import _bytes_array, _strings


@dataclass(frozen=True, eq=False)
class RaggedVariant(HostValue):
    """One element of a DT_VARIANT tensor that encodes a ragged tensor (TF's RaggedTensorVariant): the row
    splits of each ragged dimension, outermost first (none for ragged rank 0), and the flat values."""

    nested_splits: tuple[np.ndarray, ...]
    values: Any

    @property
    def ragged_rank(self) -> int:
        return len(self.nested_splits)


def _splits_dtype(ctx) -> np.dtype:
    return ctx.dtype("Tsplits", np.dtype(np.int64))


def _splits(ctx, splits: list, what: str = "the row splits") -> list[np.ndarray]:
    return [np.asarray(ctx.static(s, f"{what} (they set the output shape)")).reshape(-1) for s in splits]


def _take(values: Any, positions: np.ndarray) -> Any:
    """``values[positions]``, in NumPy for values known now (strings among them)."""
    if isinstance(values, np.ndarray):
        return values[positions]
    return jnp.asarray(values)[positions]


def _check_splits(ctx, nested: list[np.ndarray], nvals: int) -> None:
    """RaggedTensorVerifySplits (ragged_utils.h) on every level: starts at 0, sorted, ends at the next level's
    size."""
    for k, s in enumerate(nested):
        size = nvals if k == len(nested) - 1 else nested[k + 1].size - 1
        if s.size == 0 or s[0] != 0:
            raise ctx.error(f"invalid ragged splits {s.tolist()}: they must start with 0")
        if np.any(np.diff(s) < 0):
            raise ctx.error(f"invalid ragged splits {s.tolist()}: they must be sorted in ascending order")
        if s[-1] != size:
            raise ctx.error(f"invalid ragged splits {s.tolist()}: the last split must be {size}")


# -- RaggedRange ----------------------------------------------------------------------------------------------


def _ragged_range(ctx, starts: np.ndarray, limits: np.ndarray, deltas: np.ndarray):
    """tf.ragged.range (ragged_range_op.cc): row i is range(starts[i], limits[i], deltas[i]), scalars broadcast.
    A row's values are accumulated by repeated addition of delta in T, as the kernel does."""
    args = [starts, limits, deltas]
    if any(a.ndim > 1 for a in args):
        raise ctx.error("starts, limits, and deltas must be scalars or vectors")
    sizes = {a.shape[0] for a in args if a.ndim == 1}
    if len(sizes) > 1:
        raise ctx.error("starts, limits, and deltas must have the same shape")
    nrows = sizes.pop() if sizes else 1
    starts, limits, deltas = (np.broadcast_to(a, (nrows,)) for a in args)
    counts = []
    for start, limit, delta in zip(starts, limits, deltas, strict=True):
        if delta == 0:
            raise ctx.error("Requires delta != 0")
        if (delta > 0 and limit < start) or (delta < 0 and limit > start):
            counts.append(0)
        elif starts.dtype.kind in "iu":
            counts.append(-(-abs(int(limit) - int(start)) // abs(int(delta))))
        else:
            counts.append(int(np.ceil(np.abs((limit - start) / delta))))
    rows = [
        np.add.accumulate(np.concatenate([[start], np.full(n - 1, delta)]).astype(starts.dtype))
        if n
        else np.zeros(0, starts.dtype)
        for start, delta, n in zip(starts, deltas, counts, strict=True)
    ]
    values = np.concatenate(rows) if rows else np.zeros(0, starts.dtype)
    return np.concatenate([[0], np.cumsum(counts)]).astype(_splits_dtype(ctx)), values.astype(starts.dtype)


@op("RaggedRange", static=(0, 1, 2))
def ragged_range(ctx, starts, limits, deltas):
    return _ragged_range(ctx, np.asarray(starts), np.asarray(limits), np.asarray(deltas))


# -- RaggedGather ---------------------------------------------------------------------------------------------


def _ragged_gather(ctx, nested: list[np.ndarray], values: Any, indices: np.ndarray):
    """tf.gather on a ragged tensor (ragged_gather_op.cc): the rows ``indices`` picks; the dense dimensions of
    ``indices`` become uniform ragged dimensions in front."""
    nparams, nvals = nested[0].size - 1, int(np.shape(values)[0]) if np.ndim(values) else 0
    bad = (indices < 0) | (indices >= nparams)
    if np.any(bad):
        i = np.argwhere(bad)[0]
        raise ctx.error(f"indices{list(i)} = {indices[tuple(i)]} is not in [0, {nparams})")
    if np.ndim(values) == 0:
        raise ctx.error("params.rank must be nonzero")
    for k, s in enumerate(nested):
        size = nvals if k == len(nested) - 1 else nested[k + 1].size
        if s.size == 0 or s[0] < 0 or s[-1] > size or np.any(np.diff(s) < 0):
            raise ctx.error(f"invalid ragged splits {s.tolist()} (empty, negative, unsorted or past the values)")
    dtype = _splits_dtype(ctx)
    out, nrows = [], 1
    for d in range(indices.ndim - 1):
        nrows *= indices.shape[d]
        out.append(np.arange(nrows + 1, dtype=dtype) * indices.shape[d + 1])
    rows = indices.reshape(-1).astype(np.int64)
    for k, s in enumerate(nested):
        starts, limits = s[rows], s[rows + 1]
        if k + indices.ndim - 1 >= 0:  # a scalar index drops the outermost ragged dimension
            out.append(np.concatenate([[0], np.cumsum(limits - starts)]).astype(dtype))
        rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, limits)] + [np.zeros(0, np.int64)])
    return (*out, _take(values, rows.astype(np.int64)))


@op("RaggedGather")
def ragged_gather(ctx, *args):
    *splits, values, indices = args
    indices = np.asarray(ctx.static(indices, "the indices (they set the output shape)"))
    return _ragged_gather(ctx, _splits(ctx, splits), values, indices)


# -- RaggedTensorToSparse -------------------------------------------------------------------------------------


def _positions(nested: list[np.ndarray]) -> list[np.ndarray]:
    """Each value's (row, column at each ragged level) in a ragged tensor whose splits are valid."""
    item = np.arange(int(nested[-1][-1]))
    columns = []
    for s in reversed(nested):
        row = np.searchsorted(s, item, side="right") - 1
        columns.insert(0, item - s[row])
        item = row
    return [item, *columns]


@op("RaggedTensorToSparse")
def ragged_tensor_to_sparse(ctx, *args):
    """A ragged tensor as a SparseTensor (ragged_tensor_to_sparse_kernel.cc): one entry per scalar of the values,
    in row-major order; dense_shape holds the widest row of each ragged dimension."""
    *splits, values = args
    nested = _splits(ctx, splits)
    shape = tuple(np.shape(values))
    if not nested:
        raise ctx.error("rt_nested_splits must be non empty")
    _check_splits(ctx, nested, shape[0] if shape else -1)
    inner = shape[1:]
    prefix = np.stack(_positions(nested), axis=1).astype(np.int64)
    per = int(np.prod(inner))
    suffix = np.asarray(list(np.ndindex(*inner)), np.int64).reshape(per, len(inner))
    indices = np.concatenate([np.repeat(prefix, per, axis=0), np.tile(suffix, (prefix.shape[0], 1))], axis=1)
    widths = [int(np.diff(s).max(initial=0)) for s in nested]
    dense_shape = np.asarray([nested[0].size - 1, *widths, *inner], np.int64)
    flat = np.reshape(values, (-1,)) if is_strings(values) else jnp.reshape(values, (-1,))
    return indices.reshape(-1, len(nested) + len(shape)), flat, dense_shape


# -- RaggedFillEmptyRows --------------------------------------------------------------------------------------


@op("RaggedFillEmptyRows")
def ragged_fill_empty_rows(ctx, value_rowids, values, nrows, default_value):
    """tf.ragged.fill_empty_rows: SparseFillEmptyRows on the rows ``value_rowids`` names (a one-column sparse
    index); run on the values' positions so string values work too."""
    rowids = np.asarray(ctx.static(value_rowids, "the value rowids (they set the output size)"))
    n = np.asarray(ctx.static(nrows, "nrows (it sets the output size)")).reshape(-1)
    positions = np.arange(rowids.shape[0], dtype=np.int64)
    with jax.ensure_compile_time_eval():
        out_rows, pos, empty, reverse = sparse_fill_empty_rows(
            ctx, rowids.reshape(-1, 1), positions, n, np.asarray(-1, np.int64)
        )
        pos = np.asarray(pos)
    # the default value sits after the values, where the filled rows point
    picks = np.where(pos >= 0, pos, rowids.shape[0])
    if is_strings(values) or is_strings(default_value):
        out = np.concatenate([np.asarray(values, object), np.asarray(default_value, object).reshape(1)])[picks]
    else:
        values = jnp.asarray(values)
        out = jnp.concatenate([values, jnp.asarray(default_value, values.dtype).reshape(1)])[picks]
    return out_rows[:, 0], out, empty, reverse


@op("RaggedFillEmptyRowsGrad")
def ragged_fill_empty_rows_grad(ctx, reverse_index_map, grad_values):
    """The values' gradient is the output gradient at each value's new position; the default value's is the sum
    over the filled rows (the positions no value went to)."""
    grad = jnp.asarray(grad_values)
    rim = jnp.asarray(reverse_index_map)
    taken = jnp.zeros(grad.shape[:1], bool).at[rim].set(True, mode="drop")
    return grad[rim], jnp.sum(jnp.where(taken, jnp.zeros((), grad.dtype), grad))


# -- RaggedCross ----------------------------------------------------------------------------------------------


def _cross_columns(ctx, args: list) -> list[tuple[list[list], bool]]:
    """Each input column, in ``input_order``, as (features of each row, whether they are strings), read as
    ragged_cross_op.cc's feature readers do: a sparse column's row b ends at the first entry whose row is > b."""
    counts = [len(ctx.attr(a, [])) for a in ("ragged_values_types", "sparse_values_types", "dense_types")]
    nr, ns, nd = counts
    concrete = [_strings(ctx, a) if is_strings(a) else np.asarray(ctx.static(a, "the cross inputs")) for a in args]
    rv, rs = concrete[:nr], concrete[nr : 2 * nr]
    si, sv, sh = concrete[2 * nr : 2 * nr + ns], concrete[2 * nr + ns : 2 * nr + 2 * ns], concrete[2 * nr + 2 * ns :]
    sh, dense = sh[:ns], sh[ns : ns + nd]
    batch = rs[0].size - 1 if nr else dense[0].shape[0] if nd else int(sh[0][0]) if ns else 0
    if any(v.ndim != 1 or s.ndim != 1 for v, s in zip(rv, rs)) or any(d.ndim != 2 for d in dense):
        raise ctx.error("tf.ragged.cross only supports inputs with rank=2.")
    if any(i.ndim != 2 for i in si) or any(v.ndim != 1 for v in sv) or any(s.ndim != 1 for s in sh):
        raise ctx.error("Invalid SparseTensor input to tf.ragged.cross")
    if any(s.size != 2 for s in sh):
        raise ctx.error("tf.ragged.cross only supports inputs with rank=2.")
    for v, s in zip(rv, rs):
        _check_splits(ctx, [s], v.size)
    sizes = [s.size - 1 for s in rs] + [int(s[0]) for s in sh] + [d.shape[0] for d in dense]
    if any(n != batch for n in sizes):
        raise ctx.error("inputs must all have the same batch dimension size.")
    ragged = iter([([v[s[b] : s[b + 1]].tolist() for b in range(batch)], is_strings(v)) for v, s in zip(rv, rs)])
    sparse = iter([(_sparse_rows(i, v, batch), is_strings(v)) for i, v in zip(si, sv)])
    denses = iter([(d.tolist(), is_strings(d)) for d in dense])
    order = ctx.attr("input_order")
    order = order.decode() if isinstance(order, bytes) else order
    readers = {"R": ragged, "S": sparse, "D": denses}
    try:
        return [next(readers[c]) for c in order]
    except (KeyError, StopIteration):
        raise ctx.error(f"invalid input_order {order!r} for the inputs given") from None


def _sparse_rows(indices: np.ndarray, values: np.ndarray, batch: int) -> list[list]:
    rows, at, row_ids, flat = [], 0, indices[:, 0].tolist(), values.tolist()
    for b in range(batch):
        start = at
        while at < len(flat) and row_ids[at] <= b:
            at += 1
        rows.append(flat[start:at])
    return rows


@op("RaggedCross")
def ragged_cross(ctx, *args):
    """tf.ragged.cross / cross_hashed (ragged_cross_op.cc): per row, every combination of the columns' features
    (last column fastest), joined with "_X_" or hashed with FingerprintCat64 from ``hash_key``, by the output
    dtype as the kernel chooses (not by ``hashed_output``)."""
    columns = _cross_columns(ctx, list(args))
    batch = len(columns[0][0]) if columns else 0
    hashed = ctx.dtype("out_values_type") != np.dtype(object)
    num_buckets, key = int(ctx.attr("num_buckets")), int(ctx.attr("hash_key")) & M64

    def combine(features: tuple) -> Any:
        if not hashed:
            return b"_X_".join(f if s else str(f).encode() for (_, s), f in zip(columns, features))
        h = key
        for (_, s), f in zip(columns, features):
            h = _fingerprint_cat64(h, fingerprint64(f) if s else f & M64)
        return _bucket(h, num_buckets)

    rows = [[combine(c) for c in itertools.product(*(col[b] for col, _ in columns))] for b in range(batch)]
    splits = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(ctx.dtype("out_row_splits_type"))
    flat = [v for r in rows for v in r]
    return (np.asarray(flat, np.int64) if hashed else _bytes_array(flat, (len(flat),))), splits


# -- variant encoding (tf.map_fn over ragged tensors) ---------------------------------------------------------


def _variants(ctx, x: Any, missing_ok: bool = False) -> np.ndarray:
    x = np.asarray(ctx.static(x, "the variant tensor"), dtype=object)
    for v in x.reshape(-1):
        if not isinstance(v, RaggedVariant) and not missing_ok:
            raise ctx.error(f"an element of the variant tensor does not hold a ragged tensor: {type(v).__name__}")
    return x


def _object_array(items: list, shape: tuple) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


@op("RaggedTensorToVariant")
def ragged_tensor_to_variant(ctx, *args):
    """Encode a ragged tensor as a scalar variant, or with ``batched_input`` each of its rows as one element of
    a variant vector (ragged_tensor_to_variant_op.cc): a row's splits are rebased to start at 0."""
    *splits, values = args
    nested = _splits(ctx, splits)
    values = np.asarray(ctx.static(values, "the values of a variant (variants live on the host)"))
    if nested:
        _check_splits(ctx, nested, values.shape[0] if values.ndim else -1)
    if not ctx.attr("batched_input"):
        return _object_array([RaggedVariant(tuple(nested), values)], ())
    if not nested:
        raise ctx.error("batched_input=True requires a ragged rank > 0")
    rows = []
    for i in range(nested[0].size - 1):
        start, limit, inner = int(nested[0][i]), int(nested[0][i + 1]), []
        for s in nested[1:]:
            inner.append(s[start : limit + 1] - s[start])
            start, limit = int(s[start]), int(s[limit])
        rows.append(RaggedVariant(tuple(inner), values[start:limit]))
    return _object_array(rows, (len(rows),))


def _stack_variants(ctx, parts: list[RaggedVariant], dims: tuple, rank: int, vdtype, sdtype) -> list:
    """NestedStackRaggedTensors (ragged_tensor_from_variant_op.cc): a variant tensor of shape ``dims`` holding
    ragged tensors of ragged rank ``rank`` as one ragged tensor; the variant dimensions become uniform splits."""
    out = [np.arange(dims[i] + 1, dtype=sdtype) * dims[i + 1] for i in range(len(dims) - 1)]
    lengths = [p.nested_splits[0].size - 1 if rank and p.ragged_rank else p.values.shape[0] for p in parts]
    out.append(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(sdtype))
    for i in range(rank):
        level, last = [np.zeros(1, np.int64)], 0
        for p in parts:
            if p.ragged_rank:
                level.append(p.nested_splits[i][1:].astype(np.int64) + last)
                last = int(level[-1][-1]) if level[-1].size else last
        out.append(np.concatenate(level).astype(sdtype))
    if not parts:
        return [*out, np.zeros((0,), vdtype)]
    if any(p.values.ndim != parts[0].values.ndim for p in parts):
        raise ctx.error("Rank of values must match for all components")
    return [*out, np.concatenate([np.asarray(p.values, vdtype) for p in parts])]


@op("RaggedTensorFromVariant")
def ragged_tensor_from_variant(ctx, encoded):
    """Decode a variant tensor of ragged tensors; a non-scalar one is stacked into one ragged tensor."""
    parts = _variants(ctx, encoded)
    out_rank, in_rank = int(ctx.attr("output_ragged_rank")), int(ctx.attr("input_ragged_rank"))
    in_rank = out_rank - parts.ndim if in_rank == -1 else in_rank
    if in_rank < 0 or out_rank != parts.ndim + in_rank:
        raise ctx.error(
            f"output_ragged_rank ({out_rank}) must equal input_ragged_rank ({in_rank}) + the variant's rank "
            f"({parts.ndim}), and input_ragged_rank must be >= 0"
        )
    vdtype, sdtype = ctx.dtype("Tvalues"), _splits_dtype(ctx)
    for p in parts.reshape(-1):
        if p.ragged_rank != in_rank:
            raise ctx.error(f"Encoded input RaggedTensorVariant has ragged_rank={p.ragged_rank}; expected {in_rank}")
        if np.asarray(p.values).dtype != vdtype or any(s.dtype != sdtype for s in p.nested_splits):
            raise ctx.error(f"Expected values of dtype {vdtype} and splits of {sdtype} in the variant")
        if np.ndim(p.values) < 1:
            raise ctx.error("Ragged values must have rank >= 1")
    if parts.ndim == 0:
        p = parts.item()
        return [*p.nested_splits, p.values]
    return _stack_variants(ctx, list(parts.reshape(-1)), parts.shape, in_rank, vdtype, sdtype)


@op("RaggedTensorToVariantGradient", static=(1, 2))
def ragged_tensor_to_variant_gradient(ctx, encoded_ragged_grad, row_splits, dense_values_shape):
    """The gradient of RaggedTensorToVariant's values: the values of each element, concatenated; an element that
    holds no ragged tensor (no gradient reached it) counts as zeros for its row of ``row_splits``."""
    parts = _variants(ctx, encoded_ragged_grad, missing_ok=True).reshape(-1)
    shape = [int(d) for d in np.asarray(dense_values_shape).reshape(-1)]
    splits = np.asarray(row_splits).reshape(-1)
    dtype = ctx.dtype("Tvalues")
    pieces = [
        np.asarray(p.values, dtype)
        if isinstance(p, RaggedVariant)
        else np.zeros([int(splits[i + 1] - splits[i]), *shape[1:]], dtype)
        for i, p in enumerate(parts)
    ]
    return np.concatenate(pieces).reshape(shape) if pieces else np.zeros(shape, dtype)
