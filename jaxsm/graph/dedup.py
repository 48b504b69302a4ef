"""When ``tf.unique`` may run with a padded, static output size (so that a training step still compiles).

Every Keras optimizer (tf-keras' legacy and current ones, TF1's) applies an ``IndexedSlices`` gradient (an
embedding's) after summing the rows of duplicate ids::

    unique_ids, idx = Unique(ids)
    summed = UnsortedSegmentSum(values, idx, num_segments=StridedSlice(Shape(unique_ids)))
    ResourceSparseApply*(var, ..., grad=f(summed), indices=unique_ids)      # or ResourceScatterAdd / Gather

Unique's output size is data-dependent, which XLA cannot compile. Padded to the number of ids (a static size),
with an id no variable has as the filler, the step computes exactly TF's values *if* the padding can only reach
places that ignore it: the unique ids may only be scatter / sparse-update / gather indices (the filler is out of
range: scatters drop it, sparse updates skip it, gathers read zeros) or, through Shape, ``num_segments``; the
inverse indices may only be segment ids; and the extra rows they make (of the segment sums and of the gathers)
may only flow through elementwise ops into the rows a scatter or sparse update writes. Anything else -- a
reduction, a reshape, a function output -- could observe the padding, and the call keeps running op by op.
"""

from __future__ import annotations

import inspect

import numpy as np

from jaxsm.graph.library import Body

# Row-wise ops: a padded row of an operand only changes the same row of the result.
_ELEMENTWISE = frozenset(
    {
        "Identity",
        "Neg",
        "Mul",
        "MulNoNan",
        "RealDiv",
        "Div",
        "DivNoNan",
        "AddV2",
        "Add",
        "Sub",
        "Square",
        "Sqrt",
        "Rsqrt",
        "Reciprocal",
        "Cast",
        "Maximum",
        "Minimum",
        "Pow",
        "Sign",
        "Abs",
        "Exp",
        "Log",
        "SquaredDifference",
    }
)
_SCATTERS = frozenset(
    f"{ref_or_resource}Scatter{k}"
    for ref_or_resource in ("", "Resource")
    for k in ("Add", "Sub", "Update", "Mul", "Div", "Min", "Max")
)
_SPARSE_APPLY = ("ResourceSparseApply", "SparseApply")  # on resource handles / TF1 ref variables
_SEGMENT_SUMS = frozenset({"UnsortedSegmentSum"})
_SHAPE_PATH = frozenset({"StridedSlice", "Cast", "Identity", "Squeeze", "Reshape"})


def _arg_position(op_type: str, name: str) -> int | None:
    """Position of input ``name`` in a lowering's signature (the (Resource)SparseApply* ops use TF's names)."""
    from jaxsm.ops.registry import lookup

    opdef = lookup(op_type)
    if opdef is None:
        return None
    params = list(inspect.signature(opdef.fn).parameters)[1:]  # after ctx
    return params.index(name) if name in params else None


def _consumers(body: Body) -> dict[tuple[int, int], list[tuple[int, int]]]:
    out: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for j, refs in enumerate(body.node_inputs):
        for pos, (src, idx) in enumerate(refs):
            out.setdefault((src, idx), []).append((j, pos))
    return out


def padded_unique_is_exact(body: Body, k: int) -> bool:
    """True if node ``k`` of ``body`` (a ``Unique``) may return outputs padded to its input's size."""
    consumers = _consumers(body)
    outputs = set(body.outputs)
    if (k, 0) in outputs or (k, 1) in outputs:
        return False
    nodes = body.nodes

    def index_use(j: int, pos: int) -> bool:
        op = nodes[j].op
        return (
            (op in _SCATTERS and pos == 1)
            or (op == "ResourceGather" and pos == 1)
            or (op.startswith(_SPARSE_APPLY) and pos == _arg_position(op, "indices"))
        )

    def row_gather(j: int, pos: int) -> bool:
        """``GatherV2(params, ids, axis=0)`` (a dense gather of rows, as RMSprop's sparse update does)."""
        if nodes[j].op not in ("GatherV2", "Gather") or pos != 1 or nodes[j].attr("batch_dims", 0):
            return False
        if nodes[j].op == "Gather":
            return True
        src, _ = body.node_inputs[j][2]
        return src >= 0 and nodes[src].op == "Const" and int(np.asarray(nodes[src].attr("value"))) == 0

    def only_num_segments(ref: tuple[int, int]) -> bool:
        if ref in outputs:
            return False
        for j, pos in consumers.get(ref, []):
            op = nodes[j].op
            if op in _SEGMENT_SUMS and pos == 2 and body.node_inputs[j][1] == (k, 1):
                continue  # the dedup sum itself (its rows are followed below); any other count would be off
            if op in _SHAPE_PATH and pos == 0 and only_num_segments((j, 0)):
                continue
            return False
        return True

    rows: list[tuple[int, int]] = []  # values with padded rows, to follow
    for j, pos in consumers.get((k, 0), []):  # the unique ids
        op = nodes[j].op
        if op in ("Shape", "Size") and only_num_segments((j, 0)):
            continue
        if op in _SEGMENT_SUMS and pos == 1:
            continue  # densifying the summed rows by id (Ftrl): the filler id is out of range, its row dropped
        if row_gather(j, pos):
            rows.append((j, 0))
            continue
        if not index_use(j, pos):
            return False
        if op == "ResourceGather":
            rows.append((j, 0))
    for j, pos in consumers.get((k, 1), []):  # the inverse indices
        if not (nodes[j].op in _SEGMENT_SUMS and pos == 1):
            return False
        rows.append((j, 0))

    seen: set[tuple[int, int]] = set()
    while rows:
        ref = rows.pop()
        if ref in seen:
            continue
        seen.add(ref)
        if ref in outputs:
            return False
        for j, pos in consumers.get(ref, []):
            op = nodes[j].op
            if op in _ELEMENTWISE:
                rows.append((j, 0))
            elif op in _SCATTERS and pos == 2:
                continue  # the updates of a scatter at the padded ids
            elif op.startswith(_SPARSE_APPLY) and pos == _arg_position(op, "grad"):
                continue
            elif op in _SEGMENT_SUMS and pos == 0 and body.node_inputs[j][1] == (k, 0):
                continue  # summed again by the padded ids: the padded rows are dropped
            else:
                return False
    return True
