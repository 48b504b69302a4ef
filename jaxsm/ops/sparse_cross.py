"""TF's feature-cross ops SparseCross, SparseCrossV2 and SparseCrossHashed (tensorflow/core/kernels/sparse_cross_op.cc):
what ``tf.sparse.cross``, ``tf.sparse.cross_hashed`` and Keras' ``HashedCrossing`` layer save.

Each input is a column: a 2-D SparseTensor (indices, values, dense_shape), whose row ``b`` holds the values of its
entries with row index ``b``, or a dense [batch, k] matrix, whose row ``b`` holds k features. Columns are the sparse
inputs first, then the dense ones. Row ``b`` of the output holds one cross per element of the cartesian product of
the columns' features in that row, the last column varying fastest (none if one column has no feature there):

* as a string, the features joined by a separator (an int64 feature written in decimal): SparseCross with
  ``out_type`` string ("_X_") and SparseCrossV2 (its ``sep`` input);
* as an int64 hash: SparseCross with ``out_type`` int64 folds ``FingerprintCat64`` over the features starting
  from ``hash_key`` (a string feature is its Fingerprint64, an int64 one itself); SparseCrossHashed folds it
  starting from the first feature, hashed with SipHash keyed by ``salt`` when ``strong_hash`` (else Fingerprint64,
  as the kernel's KeyedSparseTensorColumn does). Then ``% num_buckets``, or ``% (2**63 - 1)`` when it is <= 0.

The kernel's quirks are kept: it selects hashing by ``out_type`` (the ``hashed_output`` attr is never read);
SparseCrossHashed hashes a sparse int64 feature as the first ``sizeof(DataType)`` = 4 bytes of the value (its low
32 bits, little-endian) and uses a dense one as is (with strong_hash TF's kernel crashes on it; jaxsm raises an
error); a sparse column's rows are found by walking its indices in order (rows must be sorted: an entry whose row
is out of order is skipped). The output is a SparseTensor: indices [n, 2] = (row, position in the row), values,
dense_shape [batch, most crosses in a row].

Like the string ops, these run on the host with concrete inputs (a run-time input runs the call op by op).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from jaxsm.dtypes import is_strings
from jaxsm.ops.hashing import M64, fingerprint64, siphash
from jaxsm.ops.registry import op
from jaxsm.ops.strings import _bytes_array, _strings

_DEFAULT_SEPARATOR = b"_X_"
_INT64_MAX = 2**63 - 1


class _Column:
    """One input column: ``rows[b]`` is row b's features (bytes or Python int)."""

    def __init__(self, rows: list[list], strings: bool, dense: bool):
        self.rows, self.strings, self.dense = rows, strings, dense


def _concrete(ctx, x, what: str) -> np.ndarray:
    return _strings(ctx, x, what) if is_strings(x) else np.asarray(ctx.static(x, what))


def _columns(ctx, args: list, n_sparse: int, string_only: bool = False) -> tuple[int, list[_Column]]:
    """The batch size and the columns of the flattened inputs (indices, values, shapes, dense), checked as the
    kernel's ValidateInput does."""
    indices = [_concrete(ctx, x, "the sparse indices") for x in args[:n_sparse]]
    values = [_concrete(ctx, x, "the sparse values") for x in args[n_sparse : 2 * n_sparse]]
    shapes = [_concrete(ctx, x, "the sparse shapes") for x in args[2 * n_sparse : 3 * n_sparse]]
    dense = [_concrete(ctx, x, "the dense inputs") for x in args[3 * n_sparse :]]
    for i, (ind, val, shape) in enumerate(zip(indices, values, shapes, strict=True)):
        if ind.ndim != 2 or ind.shape[1] != 2:
            raise ctx.error(f"input indices should be a matrix of 2 columns, got shape {list(ind.shape)} at {i}")
        if string_only and not is_strings(val):
            raise ctx.error(f"input values should be of internal type string, got {val.dtype} at position {i}")
        if val.ndim != 1 or val.shape[0] != ind.shape[0]:
            raise ctx.error(f"expected {ind.shape[0]} values, got shape {list(val.shape)} at position {i}")
        if shape.shape != (2,):
            raise ctx.error(f"shape should imply a 2-D tensor, got shape {list(shape.shape)} at position {i}")
    for i, d in enumerate(dense):
        if string_only and not is_strings(d):
            raise ctx.error(f"dense inputs should be of internal type string, got {d.dtype} at dense input {i}")
        if d.ndim != 2:
            raise ctx.error(f"dense inputs should be matrices, got shape {list(d.shape)} at dense input {i}")
    batch = int(shapes[0][0]) if shapes else int(dense[0].shape[0]) if dense else 0
    for i, shape in enumerate(shapes):
        if int(shape[0]) != batch:
            raise ctx.error(f"expected batch size {batch}, got {int(shape[0])} at position {i}")
    for i, d in enumerate(dense):
        if d.shape[0] != batch:
            raise ctx.error(f"expected batch size {batch}, got {d.shape[0]} at dense input {i}")
    if batch < 0:
        raise ctx.error(f"the batch size must not be negative, got {batch}")

    columns = []
    for ind, val in zip(indices, values):
        # ExtractFeatureData: row b is the run of entries (from where row b - 1 stopped) whose row index is b.
        rows, at, row_ids, flat = [], 0, ind[:, 0].tolist(), val.tolist()
        for b in range(batch):
            start = at
            while at < len(row_ids) and row_ids[at] == b:
                at += 1
            rows.append(flat[start:at])
        columns.append(_Column(rows, is_strings(val), dense=False))
    for d in dense:
        columns.append(_Column(d.tolist(), is_strings(d), dense=True))
    return batch, columns


def _cross(batch: int, columns: list[_Column], combine: Callable[[tuple], object], dtype) -> tuple:
    """The output SparseTensor: ``combine(features)`` for each row's cartesian product, last column fastest."""
    index, values, widest = [], [], 0
    for b in range(batch):
        crosses = [combine(c) for c in itertools.product(*(col.rows[b] for col in columns))]
        index += [(b, k) for k in range(len(crosses))]
        values += crosses
        widest = max(widest, len(crosses))
    indices = np.asarray(index, np.int64).reshape(-1, 2)
    out = _bytes_array(values, (len(values),)) if dtype is object else np.asarray(values, np.int64)
    return indices, out, np.asarray([batch, widest], np.int64)


def _joined(columns: list[_Column], sep: bytes) -> Callable[[tuple], bytes]:
    def join(features: tuple) -> bytes:
        return sep.join(f if col.strings else str(f).encode() for col, f in zip(columns, features))

    return join


def _bucket(h: int, num_buckets: int) -> int:
    return h % num_buckets if num_buckets > 0 else h % _INT64_MAX


def _fingerprint_cat64(fp1: int, fp2: int) -> int:
    """FingerprintCat64 (tsl/platform/fingerprint.h)."""
    mul = 0xC6A4A7935BD1E995

    def shift_mix(v: int) -> int:
        return v ^ (v >> 47)

    result = fp1 ^ mul
    result ^= (shift_mix((fp2 * mul) & M64) * mul) & M64
    result = (result * mul) & M64
    result = (shift_mix(result) * mul) & M64
    return shift_mix(result)


@op("SparseCross")
def sparse_cross(ctx, *args):
    """tf.sparse.cross_hashed (and TF1's tf.sparse.cross): the kernel registered for ``out_type``."""
    n_sparse = int(ctx.attr("N"))
    string_only = ctx.dtype("internal_type") == np.dtype(object)
    batch, columns = _columns(ctx, list(args), n_sparse, string_only)
    if ctx.dtype("out_type") == np.dtype(object):
        return _cross(batch, columns, _joined(columns, _DEFAULT_SEPARATOR), object)
    num_buckets = int(ctx.attr("num_buckets"))
    hash_key = int(ctx.attr("hash_key")) & M64

    def hashed(features: tuple) -> int:
        h = hash_key
        for col, f in zip(columns, features):
            h = _fingerprint_cat64(h, fingerprint64(f) if col.strings else f & M64)
        return _bucket(h, num_buckets)

    return _cross(batch, columns, hashed, np.int64)


@op("SparseCrossV2")
def sparse_cross_v2(ctx, *args):
    """tf.sparse.cross: the crosses as strings joined by the ``sep`` input."""
    *inputs, sep = args
    sep = _strings(ctx, sep, "the separator")
    if sep.ndim != 0:
        raise ctx.error(f"the separator should be a scalar, got shape {list(sep.shape)}")
    batch, columns = _columns(ctx, inputs, int(ctx.attr("N")))
    return _cross(batch, columns, _joined(columns, sep.item()), object)


@op("SparseCrossHashed")
def sparse_cross_hashed(ctx, *args):
    """The crosses as int64 hashes, optionally SipHash with key ``salt``."""
    *inputs, num_buckets, strong_hash, salt = args
    num_buckets = np.asarray(ctx.static(num_buckets, "num_buckets"))
    strong_hash = np.asarray(ctx.static(strong_hash, "strong_hash"))
    salt = np.asarray(ctx.static(salt, "the salt")).reshape(-1)
    if num_buckets.size != 1 or strong_hash.size != 1:
        raise ctx.error("num_buckets and strong_hash should be scalars")
    if salt.size != 2:
        raise ctx.error(f'input "salt" must have length 2 but has length {salt.size}')
    num_buckets, strong = int(num_buckets.item()), bool(strong_hash.item())
    key0, key1 = (int(k) & M64 for k in salt)
    batch, columns = _columns(ctx, inputs, int(ctx.attr("N")))
    if strong and any(col.dense and not col.strings for col in columns):
        # TF 2.21's kernel segfaults on this (KeyedDenseTensorColumn's strong_hash path): no reference output.
        raise ctx.error("strong_hash with an int64 dense input is not supported (TF's kernel crashes on it)")

    def feature(col: _Column, f) -> int:
        if not col.strings:
            if col.dense:  # not strong: used as is
                return f & M64
            f = (f & M64).to_bytes(8, "little")[:4]  # sizeof(values_.dtype()): the DataType enum's 4 bytes
        return siphash(key0, key1, f) if strong else fingerprint64(f)

    def hashed(features: tuple) -> int:
        h = feature(columns[0], features[0])
        for col, f in zip(columns[1:], features[1:]):
            h = _fingerprint_cat64(h, feature(col, f))
        return _bucket(h, num_buckets)

    return _cross(batch, columns, hashed, np.int64)
