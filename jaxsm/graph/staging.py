"""Calls that run op by op, in stages: host nodes one by one, the numeric nodes between them as jitted programs.

A call runs op by op when XLA cannot hold all of it (string inputs: a TextVectorization in front of a Keras
model, a TF Serving signature parsing serialized tf.Examples) or its shapes depend on run-time values
(jaxsm/compile.py). Dispatching every numeric op one by one then costs 10-30x TF's time per call. So the first
op-by-op run of a graph body (per input signature) records its *host* nodes: a string or other host value among
their inputs or outputs; a NumPy result computed from a host node's (the shapes and row splits of split strings,
known values later ops may need at trace time); a host side effect (print, file write, also in a loop body or
branch); a read, while lowering, of a run-time value or of an input that changes from call to call (a shape set
by values, indices TF's kernel checks: they keep raising as in TF). Later runs go in stages, in
dependency order: host nodes one by one as before, each group of the other nodes between them as one
``jax.jit`` program, compiled when the same input shapes come a second time (shapes that vary call by call never
compile; where a group does not trace with its inputs as arguments, its inputs' integer vectors of up to 16
elements become trace-time values, as in a compiled call). A group that does not trace, or whose run-time
Assert fails, runs node by node instead (raising TF's error there), so results are the op-by-op run's.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsm.graph.library import Body
from jaxsm.graph.values import CONCRETE_READS, READ_IDS, Resource

MIN_NODES = 8  # smaller bodies run node by node
_MIN_GROUP = 4  # a group of fewer non-Const nodes runs node by node (a program call costs what a few ops do)
_MAX_PROGRAMS = 256
_HOST_EFFECTS = frozenset({"PrintV2", "Print", "WriteFile", "Abort"})
_NO_PLAN = object()
SEEN_ONCE = object()  # a program cache entry: these inputs came once (they ran node by node)
_NOT_COMPILED = object()  # a program cache entry: the group did not trace for these inputs
_WITH_VALUES = object()  # a program cache entry: the group traces only with its small integer inputs as values


def host(v: Any) -> bool:
    """A value XLA cannot hold: strings, or a host object (ragged variants, TensorArrays, stacks)."""
    for leaf in jax.tree.leaves(v):
        if isinstance(leaf, (np.ndarray, np.generic)):
            if leaf.dtype.kind not in "biufc":
                return True
        elif not isinstance(leaf, (jax.Array, Resource, int, float, bool, complex)):
            return True
    return False


def _host_effects(library: Any, node: Any) -> bool:
    """Whether ``node`` or a function it calls (a loop body, a branch) prints or writes: in a jitted program it
    would not, so it runs on its own, its loops as Python loops (jaxsm/ops/control_flow.py)."""
    if node.op in _HOST_EFFECTS:
        return True
    called = library.called_functions(node)
    if not called:
        return False
    key = tuple(called)
    if key not in library.host_effects:
        library.host_effects[key] = bool(_HOST_EFFECTS & set(library.scan_ops(called)))
    return library.host_effects[key]


def numeric(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) and np.dtype(x.dtype).kind in "biufc"


def _small_ints(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic)) and x.dtype.kind in "biu" and x.size <= 16


def wide(x: Any) -> bool:
    """A NumPy 64-bit integer array beyond 32 bits: with jax_enable_x64 off a jitted program would get it wrapped,
    where a node run on its own raises Int64RangeError (jaxsm/graph/interpreter.py)."""
    if not isinstance(x, (np.ndarray, np.generic)) or x.dtype.kind not in "iu" or x.dtype.itemsize != 8 or not x.size:
        return False
    info = np.iinfo(np.int32 if x.dtype.kind == "i" else np.uint32)
    return bool(x.min() < info.min or x.max() > info.max)


def program_key(head: tuple, leaves: list[Any]) -> tuple:
    """A cache key for a jitted program taking ``leaves``: the arrays' shapes and dtypes, the other values
    themselves (by identity where unhashable: a NumPy string array held in the state, the same call after call)."""
    key: list[Any] = [*head, jax.config.jax_enable_x64]
    for i, leaf in enumerate(leaves):
        if numeric(leaf):
            key.append((i, np.shape(leaf), str(leaf.dtype), getattr(leaf, "weak_type", False)))
        else:
            try:
                key.append((i, "value", hash(leaf), leaf))
            except TypeError:
                key.append((i, "object", id(leaf)))
    return tuple(key)


def _signature(inputs: list[Any]) -> tuple:
    sig = []
    for v in inputs:
        if host(v):
            sig.append("host")
        elif isinstance(v, (jax.Array, np.ndarray, np.generic)):
            sig.append((np.shape(v), str(v.dtype)))
        else:
            try:
                sig.append(("value", hash(v), v))
            except TypeError:
                sig.append(("object", type(v).__name__))
    return tuple(sig)


class Plan:
    """The stages of one body: ``groups`` in order, each (compiled?, node indices in body order), and for each
    compiled group the nodes whose values later groups or the body's outputs use."""

    def __init__(self, body: Body, is_host: list[bool], kept: set[str] | None):
        n = len(body.nodes)
        index = {node.name: k for k, node in enumerate(body.nodes)}
        const = [node.op == "Const" and not node.control_inputs for node in body.nodes]
        stage = [0] * n
        for k, node in enumerate(body.nodes):
            preds = [src for src, _ in body.node_inputs[k] if src >= 0 and not const[src]]
            preds += [index[c] for c in node.control_inputs if c in index]
            s = max((stage[p] for p in preds), default=0)
            if is_host[k] != (s % 2 == 1):  # host nodes go to odd stages, the others to even ones
                s += 1
            stage[k] = s
        # A constant joins every group that uses it (a trace-time value there, as in a compiled call); one that
        # only the outputs use, the first group.
        members: dict[int, set[int]] = {}
        for k in range(n):
            if not const[k]:
                members.setdefault(stage[k], set()).add(k)
                members[stage[k]].update(src for src, _ in body.node_inputs[k] if src >= 0 and const[src])
        first = min(members, default=0)
        for k in range(n):
            if const[k] and not any(k in m for m in members.values()):
                members.setdefault(first, set()).add(k)
        self.groups: list[tuple[bool, list[int]]] = []
        for s in sorted(members):
            nodes = sorted(members[s])
            real = sum(not const[k] for k in nodes)
            self.groups.append((s % 2 == 0 and real >= _MIN_GROUP, nodes))
        used_by: dict[int, set[int]] = {}  # node -> the groups using its value
        group_of = {k: g for g, (_, nodes) in enumerate(self.groups) for k in nodes if not const[k]}
        for k in range(n):
            for src, _ in body.node_inputs[k]:
                if src >= 0 and not const[src]:
                    used_by.setdefault(src, set()).add(group_of[k])
        outputs = {src for src, _ in body.outputs if src >= 0}
        kept_nodes = {k for k, node in enumerate(body.nodes) if kept and node.name in kept}
        self.needed: list[list[int]] = []
        for g, (_, nodes) in enumerate(self.groups):
            self.needed.append(
                [k for k in nodes if k in outputs or k in kept_nodes or any(u != g for u in used_by.get(k, ()))]
            )
        self.programs: dict = {}

    @property
    def compiles(self) -> bool:
        return any(compiled for compiled, _ in self.groups)


def run(interp: Any, body: Body, inputs: list[Any], values: list, kept: set[str] | None) -> bool:
    """Run ``body`` op by op in stages (see the module's documentation); False when it should run node by node
    (a small body, a body with nothing to compile)."""
    library = interp.library
    try:
        key = _signature(inputs)
        plan = body.stage_plans.get(key)
    except TypeError:
        return False
    if plan is _NO_PLAN:
        return False
    if plan is None:  # the first run: node by node, recording the host nodes
        if len(body.stage_plans) > _MAX_PROGRAMS:
            body.stage_plans.clear()
        is_host = [False] * len(body.nodes)
        for k in range(len(body.nodes)):
            reads, outer, READ_IDS[0] = CONCRETE_READS[0], READ_IDS[0], set()
            args = interp.node_args(body, k, inputs, values)
            try:
                values[k] = interp.run_node(body.nodes[k], args)
            finally:
                read, READ_IDS[0] = READ_IDS[0], outer
            node = body.nodes[k]
            from_host = any(is_host[src] if src >= 0 else host(inputs[idx]) for src, idx in body.node_inputs[k])
            varying = {id(a) for (src, _), a in zip(body.node_inputs[k], args) if src < 0 or is_host[src]}
            calls = library.called_functions(node)  # (a loop or call: the reads were its nodes', run one by one)
            is_host[k] = (
                _host_effects(library, node)
                or (not calls and CONCRETE_READS[0] != reads)
                or (not calls and bool(read & varying))  # (it checked the values of an input that changes)
                or any(host(a) for a in (args[:1] if node.op == "Assert" else args))  # (an Assert's message)
                or any(host(o) for o in values[k])
                or (from_host and not any(isinstance(x, jax.Array) for x in jax.tree.leaves(values[k])))
            )
            for dead in body.free_after[k]:
                if not kept or body.nodes[dead].name not in kept:
                    values[dead] = None
        plan = Plan(body, is_host, kept)
        body.stage_plans[key] = plan if plan.compiles else _NO_PLAN
        return True
    for g, (compiled, nodes) in enumerate(plan.groups):
        if not (compiled and _run_group(interp, body, plan, g, inputs, values)):
            for k in nodes:
                values[k] = interp.run_node(body.nodes[k], interp.node_args(body, k, inputs, values))
    return True


def _run_group(interp: Any, body: Body, plan: Plan, g: int, inputs: list[Any], values: list) -> bool:
    """Group ``g`` as one jitted program; False when it must run node by node."""
    _, nodes = plan.groups[g]
    members = set(nodes)
    refs = sorted({(src, idx) for k in nodes for src, idx in body.node_inputs[k] if src not in members})
    external = [inputs[idx] if src < 0 else values[src][idx] for src, idx in refs]
    leaves, treedef = jax.tree.flatten((external, interp.state))
    if not jax.config.jax_enable_x64 and any(wide(x) for x in leaves):
        return False
    base = program_key((g, treedef), leaves)
    with_values = plan.programs.get(base) is _WITH_VALUES
    if not with_values:
        done = _run_program(interp, body, plan, g, base, refs, treedef, leaves, values, with_values=False)
        if done is not _WITH_VALUES:
            return done
    small = tuple((i, x.dtype.str, x.shape, x.tobytes()) for i, x in enumerate(leaves) if _small_ints(x))
    return _run_program(interp, body, plan, g, (base, small), refs, treedef, leaves, values, with_values=True)


def _run_program(interp, body, plan, g, key, refs, treedef, leaves, values, with_values) -> Any:
    try:
        program = plan.programs.get(key)
    except TypeError:
        return False
    if program is _NOT_COMPILED:
        return False
    if program is None:  # compiled when the same inputs come again: shapes that vary call by call never compile
        if len(plan.programs) > _MAX_PROGRAMS:
            plan.programs.clear()
        plan.programs[key] = SEEN_ONCE
        return False
    if program is SEEN_ONCE:
        dynamic = [i for i, x in enumerate(leaves) if numeric(x) and not (with_values and _small_ints(x))]
        program = plan.programs[key] = _Program(body, plan, g, refs, treedef, dynamic)
        program.keep = [x for i, x in enumerate(leaves) if i not in dynamic]  # (ids in the key stay unique)
    try:
        ok = program(interp, leaves, values)
    except Exception:  # noqa: BLE001 -- whatever fails compiled runs node by node, which raises TF's errors
        plan.programs[key] = _NOT_COMPILED if with_values else _WITH_VALUES
        return False if with_values else _WITH_VALUES
    return ok


class _Program:
    """One group's nodes as a jitted function of its inputs (values from earlier groups, the variable state) for
    one set of input shapes and trace-time values. The caller's interpreter is given at each call, never kept."""

    def __init__(self, body: Body, plan: Plan, g: int, refs: list, treedef: Any, dynamic: list[int]):
        self.body, self.nodes, self.needed = body, plan.groups[g][1], plan.needed[g]
        self.refs, self.treedef, self.dynamic = refs, treedef, dynamic
        self.env: dict[str, Any] = {}
        # output tree, trace-time outputs, array slots, whether the last array is the run-time Asserts' flag
        self.out: tuple[Any, list[Any], list[int], bool] | None = None
        self.jitted = jax.jit(self._trace)

    def _trace(self, args: list[Any]) -> list[Any]:
        from jaxsm.compile import OP_BY_OP

        interp, leaves = self.env["interp"], list(self.env["leaves"])
        for i, a in zip(self.dynamic, args):
            leaves[i] = a
        external, state = jax.tree.unflatten(self.treedef, leaves)
        body = self.body
        local: list[Any] = [None] * len(body.nodes)
        inputs: list[Any] = [None] * len(body.inputs)
        for (src, idx), v in zip(self.refs, external):
            if src < 0:
                inputs[idx] = v
            else:
                if local[src] is None:
                    local[src] = [None] * (idx + 1)
                elif len(local[src]) <= idx:
                    local[src] = local[src] + [None] * (idx + 1 - len(local[src]))
                local[src][idx] = v
        saved = interp.state, interp.run_time_asserts
        # (host state -- a string table's keys -- stays out: lax loops cannot carry it; its readers are host nodes)
        interp.state = {k: v for k, v in state.items() if not host(v)}
        interp.run_time_asserts = []
        interp.frames.append((body, local, inputs))
        token = OP_BY_OP.set(False)
        try:
            for k in self.nodes:
                local[k] = interp.run_node(body.nodes[k], interp.node_args(body, k, inputs, local))
            new_state, asserts = interp.state, interp.run_time_asserts
        finally:
            OP_BY_OP.reset(token)
            interp.frames.pop()
            interp.state, interp.run_time_asserts = saved
        changed = {k: v for k, v in new_state.items() if k not in state or v is not state[k]}
        flat, tree = jax.tree.flatten(([local[k] for k in self.needed], changed))
        slots = [j for j, leaf in enumerate(flat) if isinstance(leaf, jax.core.Tracer)]
        if asserts:  # whether the run-time Asserts held: checked after the call
            slots.append(len(flat))
            flat.append(jnp.all(jnp.stack([jnp.asarray(a, bool).reshape(()) for a in asserts])))
        self.out = (tree, [None if j in slots else leaf for j, leaf in enumerate(flat)], slots, bool(asserts))
        return [flat[j] for j in slots]

    def __call__(self, interp: Any, leaves: list[Any], values: list) -> bool:
        self.env.update(interp=interp, leaves=leaves)
        try:
            arrays = self.jitted([leaves[i] for i in self.dynamic])
        finally:
            self.env.clear()
        tree, flat, slots, checked = self.out
        if checked:
            if not bool(arrays[-1]):
                return False
            slots, arrays = slots[:-1], arrays[:-1]
        flat = list(flat[: len(flat) - checked])
        for j, a in zip(slots, arrays):
            flat[j] = a
        outs, changed = jax.tree.unflatten(tree, flat)
        for k, v in zip(self.needed, outs):
            values[k] = v
        interp.state.update(changed)
        return True
