"""The pure API: any restored function as ``apply(params, *args, **kwargs)`` over a params pytree.

``params`` is a nested dict following the object paths of the variables the function uses (``{"inner": {"w": …}}``),
so it composes with ``jax.jit``, ``jax.grad``, ``jax.vmap``, ``lax.scan`` and ``jax.export``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxsm.graph.node import Node
from jaxsm.objects import ConcreteFunction, RestoredFunction, Variable

# Ops that change variable state: a function containing any of them returns (outputs, new_params).
_SCATTER_KINDS = ("Update", "Add", "Sub", "Mul", "Div", "Min", "Max")
_SCATTER_ND_KINDS = ("Update", "Add", "Sub", "Min", "Max")
ASSIGN_OPS = frozenset(
    {
        "AssignVariableOp",
        "AssignAddVariableOp",
        "AssignSubVariableOp",
        "Assign",
        "AssignAdd",
        "AssignSub",
        "ResourceStridedSliceAssign",
        "StridedSliceAssign",
        "CountUpTo",
        "ResourceCountUpTo",
        # tf.random.Generator's state (jaxsm/ops/random.py)
        "RngReadAndSkip",
        "RngSkip",
        "StatefulUniform",
        "StatefulStandardNormalV2",
        "StatefulTruncatedNormal",
        "StatefulUniformInt",
        "StatefulUniformFullInt",
        *(f"ResourceScatter{k}" for k in _SCATTER_KINDS),
        *(f"Scatter{k}" for k in _SCATTER_KINDS),
        *(f"ResourceScatterNd{k}" for k in _SCATTER_ND_KINDS),
        *(f"ScatterNd{k}" for k in _SCATTER_ND_KINDS),
    }
)
# Optimizer updates (jaxsm/ops/training.py): every ResourceApply* / ResourceSparseApply* op assigns.
ASSIGN_OP_PREFIXES = ("ResourceApply", "ResourceSparseApply")


def assigns_state(op_type: str) -> bool:
    return op_type in ASSIGN_OPS or op_type.startswith(ASSIGN_OP_PREFIXES)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _assigns(cf: ConcreteFunction) -> bool:
    lib = cf._context.library
    seen, stack = set(), [cf.name]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        for nd in lib.function_def(name).node_def:
            if assigns_state(nd.op):
                return True
            stack.extend(lib.called_functions(Node(nd, name)))
    return False


def variables_of(fn: ConcreteFunction | RestoredFunction) -> list[Variable]:
    """The variables a restored function (any of its concrete functions) reads or writes."""
    cfs = fn.concrete_functions if isinstance(fn, RestoredFunction) else [fn]
    seen: dict[str, Variable] = {}
    for cf in cfs:
        for v in cf._variables():
            seen.setdefault(v.key, v)
    return list(seen.values())


def functional(fn: ConcreteFunction | RestoredFunction) -> tuple[Callable[..., Any], dict[str, Any]]:
    """Split a restored function or signature into a pure ``apply`` and its ``params``.

    Arguments:
      fn: a restored ``tf.function`` (``model.f``), a concrete function, or a signature
        (``model.signatures["serving_default"]``), also of a TF1 SavedModel (or its ``prune(...)``), whose
        ``params`` are flat, keyed by variable name.

    Returns:
      ``(apply, params)``. ``apply(params, *args, **kwargs)`` returns the outputs in TF's structure, computed
      from ``params`` instead of the stored variable values. If the function assigns variables (a counter, a
      BatchNorm update…), ``apply`` returns ``(outputs, new_params)`` instead; ``apply.assigns`` says which.
      ``params`` is a nested dict keyed by object path; see :func:`split_trainable`.
    """
    from jaxsm.tf1 import PrunedFunction

    if isinstance(fn, PrunedFunction):
        return _functional_v1(fn)
    cfs = fn.concrete_functions if isinstance(fn, RestoredFunction) else [fn]
    variables = variables_of(fn)
    params = _nest({v.key: v.value() for v in variables if v.initialized})
    assigns = any(_assigns(cf) for cf in cfs)

    def apply(params: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        cf, flat = fn.dispatch(args, kwargs) if isinstance(fn, RestoredFunction) else (fn, fn.bind(args, kwargs))
        cf._context.check_ops(cf.name)
        state = _flatten(params)
        tables = {k: v for r in cf._resources() for k, v in r.state.items()}  # lookup tables: constants, not params
        outputs, updated = cf.pure()({**tables, **state}, flat)
        result = cf._pack_outputs(outputs)
        if assigns:
            new = dict(state)
            new.update({k: v for k, v in updated.items() if k in state})
            return result, _nest(new)
        return result

    apply.assigns = assigns  # type: ignore[attr-defined]
    return apply, params


def _functional_v1(fn: Any) -> tuple[Callable[..., Any], dict[str, Any]]:
    """:func:`functional` of a TF1 signature or pruned function (``jaxsm/tf1.py``). Its params are flat, keyed by
    variable name: TF1 names such as ``w`` and ``w/Adam`` do not nest."""
    params = {v.key: v.value() for v in fn._variables() if v.initialized}
    # TF1's ref-variable optimizer updates (ApplyAdam, SparseApplyFtrl, …) assign too
    assigns = any(assigns_state(n.op) or n.op.startswith(("Apply", "SparseApply")) for n in fn._all_nodes())
    pure = fn.pure()

    def apply(params: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        state = {**fn._model._state(), **params}  # tables and unused variables are constants, not params
        outputs, updated = pure(state, fn.convert(fn.bind(args, kwargs)))
        result = fn.pack(outputs)
        if assigns:
            return result, {k: updated.get(k, v) for k, v in params.items()}
        return result

    apply.assigns = assigns  # type: ignore[attr-defined]
    return apply, params


def split_trainable(fn: ConcreteFunction | RestoredFunction, params: dict[str, Any]) -> tuple[dict, dict]:
    """``(trainable, non_trainable)`` parts of ``params`` (merge them back with :func:`merge`)."""
    trainable_keys = {v.key for v in variables_of(fn) if v.trainable}
    flat = _flatten(params)
    nest = _nest if any(isinstance(v, dict) for v in params.values()) else dict  # TF1 params stay flat
    return (
        nest({k: v for k, v in flat.items() if k in trainable_keys}),
        nest({k: v for k, v in flat.items() if k not in trainable_keys}),
    )


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    """Merge params dicts split by :func:`split_trainable`."""
    flat: dict[str, Any] = {}
    for p in parts:
        flat.update(_flatten(p))
    if not any(isinstance(v, dict) for p in parts for v in p.values()):
        return flat  # flat params (TF1's) stay flat; nested ones with only top-level keys are the same
    return _nest(flat)


__all__ = ["functional", "split_trainable", "merge", "variables_of"]
