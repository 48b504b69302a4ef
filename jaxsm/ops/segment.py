"""Segment reductions: sorted (``Segment*``), unsorted (``UnsortedSegment*``), sparse (``SparseSegment*``).

The number of segments sets the output shape, so it must be known at trace time: ``num_segments`` inputs are
static, and the ops without one (``output rows = last segment id + 1``) need static segment ids.

Empty segments follow TF: sum 0, product 1, mean 0; the sorted ``SegmentMax``/``SegmentMin`` give 0 while
``UnsortedSegmentMax``/``Min`` and ``Segment{Max,Min}V2`` give the dtype's lowest/highest value. Negative ids
drop their rows (as TF's unsorted ops do); ids ``>= num_segments`` make TF's CPU kernels raise, which a jitted
function cannot, so their rows are dropped too (ids known at trace time raise, as do unsorted or negative ids of
the sorted ops). Out-of-range ``indices`` of the sparse ops gather zeros (see
:mod:`jaxsm.ops.array`). NaNs in Max/Min follow TF's row-order fold (see ``_nan_order``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsm.graph.values import to_static
from jaxsm.ops.array import check_indices, gather_v2
from jaxsm.ops.registry import op

_REDUCERS = {
    "Sum": jax.ops.segment_sum,
    "Prod": jax.ops.segment_prod,
    "Max": jax.ops.segment_max,
    "Min": jax.ops.segment_min,
}


def _rows_from_ids(ctx, segment_ids) -> int:
    what = f"the segment_ids of {ctx.node.op} (the last id + 1 is the number of output rows)"
    ids = ctx.static(segment_ids, what).reshape(-1)
    _check_sorted_ids(ctx, ids, None)
    return int(ids[-1]) + 1 if ids.size else 0


def _check_sorted_ids(ctx, ids: np.ndarray, num_segments: int | None) -> None:
    """The sorted ops' id checks of TF's segment_reduction_ops_impl.h: ids start at 0 or more, never decrease
    and stay below ``num_segments`` (when given)."""
    if ids.size and ids[0] < 0:
        raise ctx.error(f"segment id {ids[0]} is negative")
    if np.any(np.diff(ids) < 0):
        raise ctx.error(f"segment ids are not increasing: {ids.tolist()}")
    if num_segments is not None and ids.size and ids[-1] >= num_segments:
        raise ctx.error(f"segment id {ids[-1]} is not less than num_segments = {num_segments}")


def _check_unsorted_ids(ctx, segment_ids, num_segments: int) -> None:
    # Only known ids can raise (as TF's CPU kernel does); negative ids drop their rows in TF too.
    ids = to_static(segment_ids)
    if ids is not None and ids.size and ids.max() >= num_segments:
        raise ctx.error(f"segment id {ids.max()} is out of range [0, {num_segments})")


def _extreme(dtype, kind: str):
    info = jnp.iinfo(dtype) if jnp.issubdtype(dtype, jnp.integer) else jnp.finfo(dtype)
    return info.min if kind == "Max" else info.max


def _count(ids, n: int, dtype, sorted_ids: bool):
    return jax.ops.segment_sum(jnp.ones(ids.shape, dtype), ids, num_segments=n, indices_are_sorted=sorted_ids)


def _per_row(v, ndim: int):
    return jnp.reshape(v, v.shape + (1,) * (ndim - 1))


def segment_reduce(kind: str, data, segment_ids, num_segments: int, sorted_ids: bool, empty=None):
    """Reduce the rows of ``data`` (leading dims = ``segment_ids``' dims) into ``num_segments`` rows.

    ``kind`` is Sum, Prod, Max, Min, Mean or SqrtN. Empty Max/Min segments get ``empty`` (JAX's identity,
    -inf/+inf, when None); Mean and SqrtN of an empty segment are 0; integer means truncate like TF's C++
    division.
    """
    data, ids = jnp.asarray(data), jnp.asarray(segment_ids)
    # the row count spelled out: -1 is ambiguous when a row has no elements
    data = jnp.reshape(data, (int(np.prod(data.shape[: ids.ndim])),) + data.shape[ids.ndim :])
    ids = jnp.reshape(ids, -1)
    # JAX's scatter narrows int64 ids to int32 (2**32 would join segment 0); a monotone clamp keeps sorted ids sorted
    ids = jnp.clip(ids, -1, num_segments)
    if kind in ("Mean", "SqrtN"):
        total = jax.ops.segment_sum(data, ids, num_segments=num_segments, indices_are_sorted=sorted_ids)
        count = jnp.maximum(_count(ids, num_segments, data.dtype, sorted_ids), 1)
        count = _per_row(jnp.sqrt(count) if kind == "SqrtN" else count, total.ndim)
        # TF rounds the bfloat16 quotient; XLA's excess precision would hand on its float32 intermediate
        return _rounded(jax.lax.div(total, count.astype(total.dtype)))
    nan_out = None
    if kind in ("Max", "Min") and jnp.issubdtype(data.dtype, jnp.floating) and num_segments:
        data, nan_out = _nan_order(kind, data, ids, num_segments, sorted_ids)
    out = _REDUCERS[kind](data, ids, num_segments=num_segments, indices_are_sorted=sorted_ids)
    if nan_out is not None:
        out = _zero_sign(jnp.where(nan_out, jnp.asarray(jnp.nan, out.dtype), out), data, ids, num_segments, sorted_ids)
    if empty is not None:
        present = _per_row(_count(ids, num_segments, np.int32, sorted_ids) > 0, out.ndim)
        out = jnp.where(present, out, jnp.asarray(empty, out.dtype))
    return out


def _zero_sign(out, data, ids, num_segments: int, sorted_ids: bool):
    """TF's folds replace the accumulator on a tie (``(x < acc) ? acc : x``), so a max or min of 0.0 and -0.0 is
    whichever zero comes last in its segment; XLA's max and min would prefer +0.0 and -0.0."""
    if not data.shape[0]:
        return out
    rows = jnp.arange(data.shape[0]).reshape((-1,) + (1,) * (data.ndim - 1))
    kw = dict(num_segments=num_segments, indices_are_sorted=sorted_ids)
    last = jax.ops.segment_max(jnp.where(data == 0, rows, -1), ids, **kw)  # -1: no zero in that segment
    negative = jnp.take_along_axis(jnp.signbit(data), jnp.maximum(last, 0), axis=0)
    zero = jnp.where(negative, jnp.asarray(-0.0, out.dtype), jnp.asarray(0.0, out.dtype))
    return _slope_of(out, jnp.where((out == 0) & (last >= 0), zero, out))


@jax.custom_jvp
def _slope_of(x, value):
    """``value`` (``x`` with the sign of a zero fixed) with ``x``'s derivative: a zero max or min keeps the
    gradient TF gives its rows."""
    return value


_slope_of.defjvp(lambda primals, tangents: (_slope_of(*primals), tangents[0]))


def _rounded(x):
    if x.dtype != jnp.bfloat16:
        return x
    return jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=7)


def _nan_order(kind: str, data, ids, num_segments: int, sorted_ids: bool):
    """TF's CPU kernels fold a segment in row order with ``acc = (x < acc) ? acc : x`` (``x > acc`` for Min):
    a NaN always takes over and the next number replaces it. So a segment's result is the max (min) of the
    values after its last NaN, or NaN when the NaN comes last. Returns ``data`` with the values up to each
    segment's last NaN replaced by the reducer's identity, and where a segment must give NaN."""
    rows = jnp.arange(data.shape[0]).reshape((-1,) + (1,) * (data.ndim - 1))
    nan = jnp.isnan(data)
    kw = dict(num_segments=num_segments, indices_are_sorted=sorted_ids)
    last_nan = jax.ops.segment_max(jnp.where(nan, rows, -1), ids, **kw)  # -1: no NaN in that segment
    cut = jnp.take(last_nan, jnp.clip(ids, 0, num_segments - 1), axis=0)
    identity = -jnp.inf if kind == "Max" else jnp.inf
    data = jnp.where(rows <= cut, jnp.asarray(identity, data.dtype), data)
    after = jax.ops.segment_sum((rows > cut).astype(np.int32), ids, **kw)
    return data, (last_nan >= 0) & (after == 0)


def _kind(ctx) -> str:
    name = ctx.node.op.removeprefix("Unsorted").removeprefix("Sparse").removeprefix("Segment")
    return name.removesuffix("V2").removesuffix("WithNumSegments")


@op("SegmentSum", "SegmentProd", "SegmentMax", "SegmentMin", "SegmentMean")
def segment(ctx, data, segment_ids):
    kind = _kind(ctx)
    return segment_reduce(
        kind, data, segment_ids, _rows_from_ids(ctx, segment_ids), True, 0 if kind in ("Max", "Min") else None
    )


@op("SegmentSumV2", "SegmentProdV2", "SegmentMaxV2", "SegmentMinV2", static=(2,))
def segment_v2(ctx, data, segment_ids, num_segments):
    # Unlike SegmentMax/Min, the V2 ops (XLA-only in TF) fill empty segments like the unsorted ops do.
    return _segment_extreme(ctx, data, segment_ids, num_segments, True)


@op("UnsortedSegmentSum", "UnsortedSegmentProd", "UnsortedSegmentMax", "UnsortedSegmentMin", static=(2,), checked=(1,))
def unsorted_segment(ctx, data, segment_ids, num_segments):
    _check_unsorted_ids(ctx, segment_ids, int(num_segments))
    return _segment_extreme(ctx, data, segment_ids, num_segments, False)


def _segment_extreme(ctx, data, segment_ids, num_segments, sorted_ids: bool):
    kind = _kind(ctx)
    empty = _extreme(np.dtype(data.dtype), kind) if kind in ("Max", "Min") else None
    return segment_reduce(kind, data, segment_ids, int(num_segments), sorted_ids, empty)


@op("SparseSegmentSum", "SparseSegmentMean", "SparseSegmentSqrtN", checked=(1,))
def sparse_segment(ctx, data, indices, segment_ids):
    check_indices(ctx, indices, np.shape(data)[:1])
    rows = _accumulated(gather_v2(data, indices, 0))
    out = segment_reduce(_kind(ctx), rows, segment_ids, _rows_from_ids(ctx, segment_ids), True)
    return out.astype(data.dtype)


@op(
    "SparseSegmentSumWithNumSegments",
    "SparseSegmentMeanWithNumSegments",
    "SparseSegmentSqrtNWithNumSegments",
    static=(3,),
    checked=(1, 2),
)
def sparse_segment_with_num_segments(ctx, data, indices, segment_ids, num_segments):
    check_indices(ctx, indices, np.shape(data)[:1])
    ids = to_static(segment_ids)
    if ids is not None:
        _check_sorted_ids(ctx, ids.reshape(-1), int(num_segments))
    rows = _accumulated(gather_v2(data, indices, 0))
    return segment_reduce(_kind(ctx), rows, segment_ids, int(num_segments), True).astype(data.dtype)


def _accumulated(rows):
    # TF's sparse segment kernels (segment_reduction_ops_impl.h) sum float16/bfloat16 rows in float32
    return rows.astype(np.float32) if rows.dtype in (np.float16, jnp.bfloat16) else rows
