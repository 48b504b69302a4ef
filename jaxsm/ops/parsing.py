"""Parsing serialized tf.Example protos on the host (TF's example_parsing_ops.cc and example_proto_fast_parsing.cc).

``tf.io.parse_example`` and ``tf.io.parse_single_example`` emit ParseExampleV2 (TF1 graphs: ParseExample,
ParseSingleExample). The serialized examples are strings, so these run on the host with concrete inputs, like the
ops of jaxsm/ops/strings.py. A feature spec names each feature and how it is parsed:

* sparse (VarLenFeature): a SparseTensor -- indices ``[n, 2]`` (example, position), the values, and the dense
  shape ``[batch, longest list]``;
* dense with a fixed shape (FixedLenFeature): ``[batch, *shape]``; a feature must have exactly ``prod(shape)``
  values; a missing one takes its default, and an empty default means the feature is required;
* dense with an unknown first dimension (FixedLenSequenceFeature): ``[batch, longest, *shape[1:]]``, each
  example's values padded with the (one-element) default; a missing feature has no rows;
* ragged (RaggedFeature): the values of all examples and their row splits.

Each feature holds a float_list, int64_list or bytes_list, which must match the parsed type; a Feature without a
list counts as missing. A scalar ``serialized`` (ParseSingleExample, ParseExampleV2 on one example) gives the
same outputs without the batch dimension: sparse indices ``[n, 1]`` and dense shape ``[n]``, dense values of
the feature's shape, and empty row splits.
"""

from __future__ import annotations

import math

import numpy as np
from google.protobuf.message import DecodeError

from jaxsm import dtypes
from jaxsm._proto import example_pb2
from jaxsm.ops.registry import op
from jaxsm.ops.strings import _bytes_array, _strings

# The list a feature of each type must hold.
_LISTS = {np.dtype(np.float32): "float_list", np.dtype(np.int64): "int64_list", np.dtype(object): "bytes_list"}


def _array(values, dtype: np.dtype) -> np.ndarray:
    return _bytes_array(values, (len(values),)) if dtype.kind == "O" else np.asarray(values, dtype).reshape(-1)


def _feature(ctx, example, index: int, key: str, dtype: np.dtype) -> list | None:
    """The values of feature ``key`` in one Example, or None when it has none (absent, or no list set)."""
    feature = example.features.feature.get(key)
    kind = feature.WhichOneof("kind") if feature is not None else None
    if kind is None:
        return None
    if kind != _LISTS[dtype]:
        raise ctx.error(f"feature '{key}' of example {index} holds a {kind}, but is parsed from a {_LISTS[dtype]}")
    return list(getattr(feature, kind).value)


def _dense(ctx, key: str, rows: list, dtype: np.dtype, shape: tuple, default: np.ndarray) -> np.ndarray:
    if shape and shape[0] is None:  # FixedLenSequenceFeature: rows of shape[1:], padded to the longest
        inner = shape[1:]
        stride = math.prod(inner)
        for i, row in enumerate(rows):
            if row and len(row) % stride:
                raise ctx.error(
                    f"feature '{key}' of example {i} has {len(row)} values, not a multiple of {stride} (shape {shape})"
                )
        longest = max((len(row) // stride for row in rows if row), default=0)
        out = np.full((len(rows), longest, *inner), default.reshape(-1)[0], dtype)
        for i, row in enumerate(rows):
            if row:
                out[i, : len(row) // stride] = _array(row, dtype).reshape(-1, *inner)
        return out
    out = np.empty((len(rows), *shape), dtype)
    for i, row in enumerate(rows):
        if row is None and default.size == 0:
            raise ctx.error(f"feature '{key}' is required (it has no default), but example {i} does not have it")
        if row is not None and len(row) != math.prod(shape):
            raise ctx.error(f"feature '{key}' of example {i} has {len(row)} values, but its shape is {shape}")
        out[i, ...] = (default if row is None else _array(row, dtype)).reshape(shape)  # [i, ...]: 0-d strings too
    return out


def _sparse(rows: list, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [row or [] for row in rows]
    indices = [(i, j) for i, row in enumerate(rows) for j in range(len(row))]
    return (
        np.asarray(indices, np.int64).reshape(-1, 2),
        _array([v for row in rows for v in row], dtype),
        np.asarray([len(rows), max(map(len, rows), default=0)], np.int64),
    )


def _ragged(rows: list, dtype: np.dtype, splits_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    rows = [row or [] for row in rows]
    return _array([v for row in rows for v in row], dtype), np.cumsum([0] + [len(r) for r in rows]).astype(splits_dtype)


def _parse(ctx, serialized, sparse: list, dense: list, ragged: list, defaults) -> list[np.ndarray]:
    """The outputs of a parse op: sparse indices, values and shapes, dense values, ragged values and row splits.

    ``sparse`` lists (key, dtype), ``dense`` (key, dtype, shape) and ``ragged`` (key, dtype, splits dtype).
    """
    s = _strings(ctx, serialized, "the serialized examples")
    if s.ndim > 1:
        raise ctx.error(f"serialized must be a scalar or a vector, got shape {s.shape}")
    examples = []
    for i, data in enumerate(s.reshape(-1)):
        try:
            examples.append(example_pb2.Example.FromString(data))
        except DecodeError:
            raise ctx.error(f"example {i} is not a serialized tf.Example: {data[:60]!r}") from None

    def rows(key: str, dtype: np.dtype) -> list:
        return [_feature(ctx, example, i, key, dtype) for i, example in enumerate(examples)]

    sparse_out = [_sparse(rows(key, dtype), dtype) for key, dtype in sparse]
    dense_out = [
        _dense(ctx, key, rows(key, dtype), dtype, shape, _default(ctx, d, dtype))
        for (key, dtype, shape), d in zip(dense, defaults, strict=True)
    ]
    ragged_out = [_ragged(rows(key, dtype), dtype, splits) for key, dtype, splits in ragged]
    if s.ndim == 0:  # one example: drop the batch dimension (and the row splits)
        sparse_out = [(indices[:, 1:], values, shape[1:]) for indices, values, shape in sparse_out]
        dense_out = [d[0, ...] for d in dense_out]
        ragged_out = [(values, splits[:0]) for values, splits in ragged_out]
    return [
        *(indices for indices, _, _ in sparse_out),
        *(values for _, values, _ in sparse_out),
        *(shape for _, _, shape in sparse_out),
        *dense_out,
        *(values for values, _ in ragged_out),
        *(splits for _, splits in ragged_out),
    ]


def _default(ctx, default, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "O":
        return _strings(ctx, default, "a dense default")
    return np.asarray(ctx.static(default, "a dense default"), dtype)


def _keys(ctx, keys) -> list[str]:
    return [k.decode() for k in _strings(ctx, keys, "the feature keys").reshape(-1)]


def _types(ctx, name: str) -> list[np.dtype]:
    return [dtypes.to_numpy(t) for t in ctx.attr(name, [])]


def _spec(ctx, sparse_keys: list[str], dense_keys: list[str]) -> tuple[list, list]:
    """(sparse, dense) feature specs from the keys and the node's type and shape attributes."""
    sparse = list(zip(sparse_keys, _types(ctx, "sparse_types"), strict=True))
    dense = list(zip(dense_keys, _types(ctx, "Tdense"), ctx.attr("dense_shapes", []), strict=True))
    return sparse, dense


@op("ParseExampleV2")
def parse_example_v2(ctx, serialized, names, sparse_keys, dense_keys, ragged_keys, *dense_defaults):
    """The keys are string vectors; ``names`` only label TF's error messages (jaxsm's name the example's index)."""
    sparse, dense = _spec(ctx, _keys(ctx, sparse_keys), _keys(ctx, dense_keys))
    ragged_types = zip(_types(ctx, "ragged_value_types"), _types(ctx, "ragged_split_types"), strict=True)
    ragged = [(key, *types) for key, types in zip(_keys(ctx, ragged_keys), ragged_types, strict=True)]
    return _parse(ctx, serialized, sparse, dense, ragged, dense_defaults)


@op("ParseExample")
def parse_example(ctx, serialized, names, *keys_and_defaults):
    """TF1's op: one scalar key input per sparse and per dense feature, then the dense defaults."""
    n_sparse, n_dense = ctx.attr("Nsparse"), ctx.attr("Ndense")
    keys = [k for key in keys_and_defaults[: n_sparse + n_dense] for k in _keys(ctx, key)]
    sparse, dense = _spec(ctx, keys[:n_sparse], keys[n_sparse:])
    return _parse(ctx, serialized, sparse, dense, [], keys_and_defaults[n_sparse + n_dense :])


@op("ParseSingleExample")
def parse_single_example(ctx, serialized, *dense_defaults):
    """One scalar example; the keys are attributes."""
    sparse, dense = _spec(ctx, ctx.attr("sparse_keys", []), ctx.attr("dense_keys", []))
    return _parse(ctx, serialized, sparse, dense, [], dense_defaults)
