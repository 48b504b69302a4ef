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

``tf.io.parse_sequence_example`` and ``parse_single_sequence_example`` emit ParseSequenceExampleV2 (TF1 graphs:
ParseSequenceExample, ParseSingleSequenceExample) on serialized tf.SequenceExample protos: context features
(sparse, dense with a fixed shape, ragged) as above, and feature lists, a list of Features (steps) per key:

* sparse: indices ``[n, 3]`` (example, step, position) and dense shape ``[batch, most steps, most values of a
  step]``;
* dense: ``[batch, most steps, *shape]``, each step exactly ``prod(shape)`` values, shorter lists padded with 0
  or b"", and each example's number of steps (``feature_list_dense_lengths``); a missing list is an error unless
  ``feature_list_dense_missing_assumed_empty`` names it;
* ragged: the values, the row splits of all steps and, per example, of its steps.

Here a Feature without a list is present with no values (a required context feature's count is then wrong, a
sparse or ragged step is empty). A scalar ``serialized`` drops the batch dimension from every output.
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


# -- tf.SequenceExample (example_parsing_ops.cc, FastParseSequenceExample in example_proto_fast_parsing.cc) --------


def _sequence_examples(ctx, serialized) -> tuple[bool, list]:
    """(whether ``serialized`` is a batch (a vector), the parsed SequenceExamples)."""
    s = _strings(ctx, serialized, "the serialized sequence examples")
    if s.ndim > 1:
        raise ctx.error(f"serialized must be a scalar or a vector, got shape {s.shape}")
    examples = []
    for i, data in enumerate(s.reshape(-1)):
        try:
            examples.append(example_pb2.SequenceExample.FromString(data))
        except DecodeError:
            raise ctx.error(f"sequence example {i} is not a serialized tf.SequenceExample: {data[:60]!r}") from None
    return s.ndim == 1, examples


def _values(ctx, feature, dtype: np.dtype, what: str) -> list | None:
    """The values of one Feature; None when it holds no list."""
    kind = feature.WhichOneof("kind")
    if kind is None:
        return None
    if kind != _LISTS[dtype]:
        raise ctx.error(f"{what} holds a {kind}, but is parsed from a {_LISTS[dtype]}")
    return list(getattr(feature, kind).value)


def _context_rows(ctx, examples: list, key: str, dtype: np.dtype) -> list[tuple[bool, list | None]]:
    """Per example: whether its context has feature ``key``, and the feature's values (None for a Feature without
    a list, which counts as present with no values)."""
    rows = []
    for i, example in enumerate(examples):
        feature = example.context.feature.get(key)
        if feature is None:
            rows.append((False, None))
        else:
            rows.append((True, _values(ctx, feature, dtype, f"context feature '{key}' of sequence example {i}")))
    return rows


def _step_rows(ctx, examples: list, key: str, dtype: np.dtype) -> list:
    """Per example: None when it has no feature list ``key``, else one entry per step: its values, or None for a
    Feature without a list."""
    out = []
    for i, example in enumerate(examples):
        feature_list = example.feature_lists.feature_list.get(key)
        if feature_list is None:
            out.append(None)
            continue
        out.append(
            [
                _values(ctx, f, dtype, f"step {t} of feature list '{key}' of sequence example {i}")
                for t, f in enumerate(feature_list.feature)
            ]
        )
    return out


def _context_dense(ctx, examples, key, dtype, shape, default, single_op: bool) -> np.ndarray:
    """``[batch, *shape]``: each example's values (exactly ``prod(shape)``), or the default when it lacks the
    feature (required when the default is empty). A Feature without a list has no values (ParseSingleSequence-
    Example: a type error)."""
    if shape is None or any(d is None or d < 0 for d in shape):
        raise ctx.error(f"context feature '{key}' needs a fully defined shape, got {shape}")
    size = math.prod(shape)
    if default.size and default.size != size:
        raise ctx.error(f"the default of context feature '{key}' has shape {default.shape}, not {tuple(shape)}")
    out = np.empty((len(examples), *shape), dtype)
    for i, (present, values) in enumerate(_context_rows(ctx, examples, key, dtype)):
        if not present:
            if not default.size:
                raise ctx.error(
                    f"context feature '{key}' is required (it has no default), but sequence example {i} "
                    "does not have it"
                )
            out[i, ...] = default.reshape(shape)
            continue
        if values is None and single_op:
            raise ctx.error(f"context feature '{key}' of sequence example {i} holds no list")
        values = values or []
        if len(values) != size:
            raise ctx.error(
                f"context feature '{key}' of sequence example {i} has {len(values)} values, but its shape is {shape}"
            )
        out[i, ...] = _array(values, dtype).reshape(shape)
    return out


def _steps_dense(ctx, examples, key, dtype, shape, missing_ok: bool, single_op: bool):
    """``[batch, longest, *shape]`` (each step exactly ``prod(shape)`` values; shorter lists padded with 0 or
    b"") and the number of steps of each example. A missing feature list is an error unless ``missing_ok``."""
    if shape is None or any(d is None or d < 0 for d in shape):
        raise ctx.error(f"feature list '{key}' needs a fully defined shape, got {shape}")
    size = math.prod(shape)
    lists = _step_rows(ctx, examples, key, dtype)
    for i, steps in enumerate(lists):
        if steps is None and not missing_ok:
            raise ctx.error(
                f"feature list '{key}' is required, but sequence example {i} does not have it (list it in "
                "feature_list_dense_missing_assumed_empty to take it as empty)"
            )
        for t, values in enumerate(steps or []):
            if values is None and single_op:
                raise ctx.error(f"step {t} of feature list '{key}' of sequence example {i} holds no list")
            if len(values or []) != size:
                raise ctx.error(
                    f"step {t} of feature list '{key}' of sequence example {i} has {len(values or [])} values, but "
                    f"its shape is {shape}"
                )
    lengths = [len(steps or []) for steps in lists]
    out = np.full((len(examples), max(lengths, default=0), *shape), b"" if dtype.kind == "O" else 0, dtype)
    for i, steps in enumerate(lists):
        if steps:
            out[i, : len(steps)] = _array([v for values in steps for v in values], dtype).reshape(-1, *shape)
    return out, np.asarray(lengths, np.int64)


def _steps_sparse(ctx, examples, key, dtype):
    """A SparseTensor ``[batch, longest list, most values of a step]``: indices (example, step, position)."""
    lists = [steps or [] for steps in _step_rows(ctx, examples, key, dtype)]
    indices = [
        (i, t, j) for i, steps in enumerate(lists) for t, values in enumerate(steps) for j in range(len(values or []))
    ]
    values = [v for steps in lists for values in steps for v in values or []]
    shape = [
        len(lists),
        max(map(len, lists), default=0),
        max((len(values or []) for steps in lists for values in steps), default=0),
    ]
    return np.asarray(indices, np.int64).reshape(-1, 3), _array(values, dtype), np.asarray(shape, np.int64)


def _steps_ragged(ctx, examples, key, dtype, splits_dtype):
    """The values, the row splits of the steps of all examples (inner) and of the examples' steps (outer)."""
    lists = [steps or [] for steps in _step_rows(ctx, examples, key, dtype)]
    steps = [values or [] for example_steps in lists for values in example_steps]
    return (
        _array([v for values in steps for v in values], dtype),
        np.cumsum([0] + [len(values) for values in steps]).astype(splits_dtype),
        np.cumsum([0] + [len(example_steps) for example_steps in lists]).astype(splits_dtype),
    )


def _parse_sequence(ctx, serialized, context: dict, feature_lists: dict, single_op: bool = False) -> dict:
    """Every output group of ParseSequenceExampleV2, by its name.

    ``context`` has "sparse" (key, dtype), "dense" (key, dtype, shape, default) and "ragged" (key, dtype, splits
    dtype) lists; ``feature_lists`` "sparse", "dense" (key, dtype, shape, missing assumed empty) and "ragged".
    A scalar ``serialized`` drops the batch dimension (and each ragged feature's outer row splits are a 0-d
    zero, where TF leaves a 0-d tensor uninitialized)."""
    batch, examples = _sequence_examples(ctx, serialized)
    if single_op and batch:
        raise ctx.error("serialized must be a scalar")
    c_sparse = [
        _sparse([values for _, values in _context_rows(ctx, examples, key, dtype)], dtype)
        for key, dtype in context["sparse"]
    ]
    c_dense = [_context_dense(ctx, examples, *spec, single_op) for spec in context["dense"]]
    c_ragged = [
        _ragged([values for _, values in _context_rows(ctx, examples, key, dtype)], dtype, splits)
        for key, dtype, splits in context["ragged"]
    ]
    f_dense = [_steps_dense(ctx, examples, *spec, single_op) for spec in feature_lists["dense"]]
    f_sparse = [_steps_sparse(ctx, examples, key, dtype) for key, dtype in feature_lists["sparse"]]
    f_ragged = [_steps_ragged(ctx, examples, *spec) for spec in feature_lists["ragged"]]
    if not batch:  # one example: drop the batch dimension
        c_sparse = [(indices[:, 1:], values, shape[1:]) for indices, values, shape in c_sparse]
        c_dense = [d[0, ...] for d in c_dense]
        c_ragged = [(values, np.zeros((), splits.dtype)) for values, splits in c_ragged]
        f_dense = [(values[0, ...], lengths[0, ...]) for values, lengths in f_dense]
        f_sparse = [(indices[:, 1:], values, shape[1:]) for indices, values, shape in f_sparse]
        f_ragged = [(values, inner, np.zeros((), outer.dtype)) for values, inner, outer in f_ragged]
    return {
        "context_sparse_indices": [indices for indices, _, _ in c_sparse],
        "context_sparse_values": [values for _, values, _ in c_sparse],
        "context_sparse_shapes": [shape for _, _, shape in c_sparse],
        "context_dense_values": c_dense,
        "context_ragged_values": [values for values, _ in c_ragged],
        "context_ragged_row_splits": [splits for _, splits in c_ragged],
        "feature_list_sparse_indices": [indices for indices, _, _ in f_sparse],
        "feature_list_sparse_values": [values for _, values, _ in f_sparse],
        "feature_list_sparse_shapes": [shape for _, _, shape in f_sparse],
        "feature_list_dense_values": [values for values, _ in f_dense],
        "feature_list_dense_lengths": [lengths for _, lengths in f_dense],
        "feature_list_ragged_values": [values for values, _, _ in f_ragged],
        "feature_list_ragged_outer_splits": [outer for _, _, outer in f_ragged],
        "feature_list_ragged_inner_splits": [inner for _, inner, _ in f_ragged],
    }


_V1_OUTPUTS = (
    "context_sparse_indices",
    "context_sparse_values",
    "context_sparse_shapes",
    "context_dense_values",
    "feature_list_sparse_indices",
    "feature_list_sparse_values",
    "feature_list_sparse_shapes",
    "feature_list_dense_values",
    "feature_list_dense_lengths",
)
_V2_OUTPUTS = (
    *_V1_OUTPUTS[:4],
    "context_ragged_values",
    "context_ragged_row_splits",
    *_V1_OUTPUTS[4:],
    "feature_list_ragged_values",
    "feature_list_ragged_outer_splits",
    "feature_list_ragged_inner_splits",
)


def _outputs(groups: dict, names: tuple[str, ...]) -> list[np.ndarray]:
    return [t for name in names for t in groups[name]]


def _sequence_specs(ctx, keys: dict, defaults, missing_empty) -> tuple[dict, dict]:
    """Context and feature-list specs from the keys (by group), the node's type and shape attributes, the context
    dense defaults and, per feature-list dense key, whether a missing list is taken as empty."""
    dense_types = _types(ctx, "Tcontext_dense")
    context = {
        "sparse": list(zip(keys["context_sparse"], _types(ctx, "context_sparse_types"), strict=True)),
        "dense": [
            (key, dtype, shape, _default(ctx, d, dtype))
            for key, dtype, shape, d in zip(
                keys["context_dense"], dense_types, ctx.attr("context_dense_shapes", []), defaults, strict=True
            )
        ],
        "ragged": list(
            zip(
                keys.get("context_ragged", []),
                _types(ctx, "context_ragged_value_types"),
                _types(ctx, "context_ragged_split_types"),
                strict=True,
            )
        ),
    }
    feature_lists = {
        "sparse": list(zip(keys["feature_list_sparse"], _types(ctx, "feature_list_sparse_types"), strict=True)),
        "dense": list(
            zip(
                keys["feature_list_dense"],
                _types(ctx, "feature_list_dense_types"),
                ctx.attr("feature_list_dense_shapes", []),
                missing_empty,
                strict=True,
            )
        ),
        "ragged": list(
            zip(
                keys.get("feature_list_ragged", []),
                _types(ctx, "feature_list_ragged_value_types"),
                _types(ctx, "feature_list_ragged_split_types"),
                strict=True,
            )
        ),
    }
    return context, feature_lists


@op("ParseSequenceExampleV2")
def parse_sequence_example_v2(
    ctx,
    serialized,
    debug_name,
    context_sparse_keys,
    context_dense_keys,
    context_ragged_keys,
    feature_list_sparse_keys,
    feature_list_dense_keys,
    feature_list_ragged_keys,
    missing_assumed_empty,
    *context_dense_defaults,
):
    """``tf.io.parse_sequence_example`` / ``parse_single_sequence_example``: the keys are string vectors and
    ``feature_list_dense_missing_assumed_empty`` a bool per feature-list dense key."""
    keys = {
        "context_sparse": _keys(ctx, context_sparse_keys),
        "context_dense": _keys(ctx, context_dense_keys),
        "context_ragged": _keys(ctx, context_ragged_keys),
        "feature_list_sparse": _keys(ctx, feature_list_sparse_keys),
        "feature_list_dense": _keys(ctx, feature_list_dense_keys),
        "feature_list_ragged": _keys(ctx, feature_list_ragged_keys),
    }
    missing = np.asarray(ctx.static(missing_assumed_empty, "feature_list_dense_missing_assumed_empty"), bool)
    if missing.size != len(keys["feature_list_dense"]):
        raise ctx.error("feature_list_dense_missing_assumed_empty needs one entry per feature-list dense key")
    context, feature_lists = _sequence_specs(ctx, keys, context_dense_defaults, missing.reshape(-1).tolist())
    return _outputs(_parse_sequence(ctx, serialized, context, feature_lists), _V2_OUTPUTS)


@op("ParseSequenceExample")
def parse_sequence_example(ctx, serialized, debug_name, *context_dense_defaults):
    """TF1's op: the keys and the feature-list dense keys a missing list is allowed for are attributes."""
    keys = {
        group: list(ctx.attr(f"{group}_keys", []))
        for group in ("context_sparse", "context_dense", "feature_list_sparse", "feature_list_dense")
    }
    allowed = set(ctx.attr("feature_list_dense_missing_assumed_empty", []))
    missing = [key in allowed for key in keys["feature_list_dense"]]
    context, feature_lists = _sequence_specs(ctx, keys, context_dense_defaults, missing)
    return _outputs(_parse_sequence(ctx, serialized, context, feature_lists), _V1_OUTPUTS)


@op("ParseSingleSequenceExample")
def parse_single_sequence_example(ctx, serialized, missing_assumed_empty, *inputs):
    """TF1's op for one scalar SequenceExample: one scalar key input per feature, then the context dense defaults
    and a debug name; ``feature_list_dense_missing_assumed_empty`` is a vector of feature-list dense keys. No
    feature-list lengths; a Feature without a list is a type error for dense features."""
    counts = [
        ctx.attr(n, 0) for n in ("Ncontext_sparse", "Ncontext_dense", "Nfeature_list_sparse", "Nfeature_list_dense")
    ]
    groups = ("context_sparse", "context_dense", "feature_list_sparse", "feature_list_dense")
    keys, start = {}, 0
    for group, count in zip(groups, counts, strict=True):
        keys[group] = [k for key in inputs[start : start + count] for k in _keys(ctx, key)]
        start += count
    defaults = inputs[start : start + counts[1]]
    allowed = set(_keys(ctx, missing_assumed_empty))
    missing = [key in allowed for key in keys["feature_list_dense"]]
    context, feature_lists = _sequence_specs(ctx, keys, defaults, missing)
    groups_out = _parse_sequence(ctx, serialized, context, feature_lists, single_op=True)
    return _outputs(groups_out, _V1_OUTPUTS[:-1])
