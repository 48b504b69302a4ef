"""Set ops on the last dimension of dense tensors and SparseTensors (tf.sets: SetSize, DenseToDenseSetOperation,
DenseToSparseSetOperation, SparseToSparseSetOperation) and EditDistance (tf.edit_distance).

Their outputs' sizes depend on the values, which are often strings: they run on the host in NumPy with every
input known (``ctx.static``); under ``jax.jit`` with run-time inputs the call runs op by op. Values are integers
or strings (NumPy object arrays of bytes, jaxsm/ops/strings.py), compared as TF's C++ does (bytes order).

TF walks a SparseTensor's groups (entries sharing all but the last index) as runs of consecutive entries, in the
order given, and merges two inputs' runs as if both were sorted (sparse_tensor.h group(), set_kernels.cc,
edit_distance_op.cc). jaxsm walks them the same way, so unsorted inputs that TF accepts give TF's answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from jaxsm.ops.registry import op

_I64 = np.int64
_Run = tuple[tuple[int, ...], list[Any]]


def _sparse(ctx, indices: Any, values: Any, shape: Any, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.asarray(ctx.static(indices, f"the {what} indices"), _I64)
    vals = np.asarray(ctx.static(values, f"the {what} values")).reshape(-1)
    shp = np.asarray(ctx.static(shape, f"the {what} shape"), _I64).reshape(-1)
    return idx.reshape(len(vals), shp.size), vals, shp


def _validate(ctx, idx: np.ndarray, shape: np.ndarray, ordered: bool) -> None:
    """TF's SparseTensor::IndicesValid: in bounds and, when ``ordered``, strictly increasing row-major."""
    for i, row in enumerate(idx):
        if ((row < 0) | (row >= shape)).any():
            raise ctx.error(f"indices[{i}] = {row.tolist()} is out of bounds: need 0 <= index < {shape.tolist()}")
        if ordered and i and tuple(row) <= tuple(idx[i - 1]):
            how = "repeated" if tuple(row) == tuple(idx[i - 1]) else "out of order"
            raise ctx.error(f"indices[{i}] = {row.tolist()} is {how}")


def _runs(idx: np.ndarray, values: np.ndarray) -> list[_Run]:
    """Runs of consecutive entries sharing all but the last index: (group index, values in the given order)."""
    runs: list[_Run] = []
    for row, v in zip(idx[:, :-1].tolist(), values.tolist()):
        if runs and runs[-1][0] == tuple(row):
            runs[-1][1].append(v)
        else:
            runs.append((tuple(row), [v]))
    return runs


def _dense_runs(ctx, x: Any) -> tuple[list[_Run], list[int]]:
    a = np.asarray(ctx.static(x, "the dense set"))
    if a.ndim < 2:
        raise ctx.error(f"shape {list(a.shape)} has rank {a.ndim} < 2")
    flat = a.reshape(-1, a.shape[-1])
    return [(tuple(np.unravel_index(g, a.shape[:-1])), flat[g].tolist()) for g in range(len(flat))], list(a.shape)


def _merge(a: list[_Run], b: list[_Run]) -> Iterator[tuple[tuple[int, ...], list | None, list | None]]:
    """Both inputs' runs, merged by group index as if each were sorted: (group, a's values, b's values)."""
    i = j = 0
    while i < len(a) or j < len(b):
        if j == len(b) or (i < len(a) and a[i][0] < b[j][0]):
            yield a[i][0], a[i][1], None
            i += 1
        elif i == len(a) or b[j][0] < a[i][0]:
            yield b[j][0], None, b[j][1]
            j += 1
        else:
            yield a[i][0], a[i][1], b[j][1]
            i, j = i + 1, j + 1


@op("SetSize")
def set_size(ctx, set_indices, set_values, set_shape):
    idx, values, shape = _sparse(ctx, set_indices, set_values, set_shape, "set")
    if shape.size < 2:
        raise ctx.error(f"invalid rank {shape.size}: a set needs rank >= 2")
    _validate(ctx, idx, shape, ctx.attr("validate_indices", True))
    out = np.zeros(shape[:-1], np.int32)
    for group, members in _runs(idx, values):
        out[group] = len(set(members))
    return out


_SET_OPS = {
    "a-b": lambda a, b: a - b,
    "b-a": lambda a, b: b - a,
    "intersection": lambda a, b: a & b,
    "union": lambda a, b: a | b,
}


@op("DenseToDenseSetOperation")
def dense_to_dense_set_operation(ctx, set1, set2):
    (a, a_shape), (b, b_shape) = _dense_runs(ctx, set1), _dense_runs(ctx, set2)
    return _set_operation(ctx, a, a_shape, b, b_shape, np.asarray(set1).dtype)


@op("DenseToSparseSetOperation")
def dense_to_sparse_set_operation(ctx, set1, set2_indices, set2_values, set2_shape):
    a, a_shape = _dense_runs(ctx, set1)
    idx, values, shape = _sparse(ctx, set2_indices, set2_values, set2_shape, "set2")
    _validate(ctx, idx, shape, ctx.attr("validate_indices", True))
    return _set_operation(ctx, a, a_shape, _runs(idx, values), shape.tolist(), np.asarray(set1).dtype)


@op("SparseToSparseSetOperation")
def sparse_to_sparse_set_operation(ctx, *args):
    a_idx, a_values, a_shape = _sparse(ctx, *args[:3], "set1")
    b_idx, b_values, b_shape = _sparse(ctx, *args[3:], "set2")
    for idx, shape in ((a_idx, a_shape), (b_idx, b_shape)):
        _validate(ctx, idx, shape, ctx.attr("validate_indices", True))
    a, b = _runs(a_idx, a_values), _runs(b_idx, b_values)
    return _set_operation(ctx, a, a_shape.tolist(), b, b_shape.tolist(), np.asarray(args[1]).dtype)


def _set_operation(ctx, a: list[_Run], a_shape: list[int], b: list[_Run], b_shape: list[int], dtype: np.dtype):
    """A SparseTensor of each group's result set, sorted, at positions 0..n-1 of the last dimension; the last
    dimension's size is the largest result (set_kernels.cc)."""
    name = ctx.attr("set_operation")
    if name not in _SET_OPS:
        raise ctx.error(f"invalid set_operation {name!r} (a-b, b-a, intersection or union)")
    if len(a_shape) < 2 or len(b_shape) < 2:
        raise ctx.error(f"sets need rank >= 2, got shapes {a_shape} and {b_shape}")
    if a_shape[:-1] != b_shape[:-1]:
        raise ctx.error(f"mismatched shapes {a_shape[:-1]} vs {b_shape[:-1]}")
    indices, values = [], []
    width = 0
    for group, av, bv in _merge(a, b):
        result = sorted(_SET_OPS[name](set(av or ()), set(bv or ())))
        indices += [group + (k,) for k in range(len(result))]
        values += result
        width = max(width, len(result))
    if dtype.kind in "OSU":
        out_values = np.empty(len(values), object)
        out_values[:] = values
    else:
        out_values = np.asarray(values, dtype)
    out_idx = np.asarray(indices, _I64).reshape(-1, len(a_shape))
    return out_idx, out_values, np.asarray(a_shape[:-1] + [width], _I64)


@op("EditDistance")
def edit_distance(ctx, *args):
    """Levenshtein distance between each group's hypothesis and truth sequences, over the larger of the two
    group shapes; ``normalize`` divides by the truth's length (a missing truth gives inf, a missing hypothesis
    1), cells in neither input are 0 (edit_distance_op.cc)."""
    h_idx, h_values, h_shape = _sparse(ctx, *args[:3], "hypothesis")
    t_idx, t_values, t_shape = _sparse(ctx, *args[3:], "truth")
    if h_shape.size != t_shape.size:
        raise ctx.error(f"truth and hypothesis must have the same rank, got {t_shape.size} and {h_shape.size}")
    if h_shape.size < 2:
        raise ctx.error(f"input SparseTensors must have rank at least 2, got {h_shape.size}")
    normalize = ctx.attr("normalize", True)
    out = np.zeros(np.maximum(h_shape[:-1], t_shape[:-1]), np.float32)
    for group, hyp, truth in _merge(_runs(h_idx, h_values), _runs(t_idx, t_values)):
        if truth is None:
            out[group] = np.inf if normalize else len(hyp)
        elif hyp is None:
            out[group] = 1.0 if normalize else len(truth)
        else:
            out[group] = _levenshtein(hyp, truth) / (len(truth) if normalize else 1)
    return out


def _levenshtein(a: list, b: list) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]
