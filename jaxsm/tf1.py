"""TF1 MetaGraphs (no object graph), loaded the way TF's ``load_v1_in_v2`` does.

:func:`load_v1` (called by :func:`jaxsm.load`) returns a :class:`TF1Model`: variables restored through the
``SaverDef``, the init op (``main_op``/``legacy_init_op``/table initializers) run once, every SignatureDef
exposed in
``.signatures``, plus ``.prune``, ``.variables``, ``.graph``, ``.restore`` and ``.initializer``.

TF1 control flow (``Switch``/``Merge``/``Enter``/``Exit``/``NextIteration``/``LoopCond``) is rewritten by
:func:`lower_control_flow` before anything runs: loop frames become functional ``While`` nodes whose cond and
body
are generated FunctionDefs (so they run as ``lax.scan``/``lax.while_loop`` like control flow v2), and each
cond
``Merge`` learns the predicate it selects on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from google.protobuf.message import DecodeError

from jaxsm import dtypes
from jaxsm._proto import function_pb2, graph_pb2, meta_graph_pb2, node_def_pb2, struct_pb2, variable_pb2
from jaxsm.compile import tuned_jit
from jaxsm.composite import SparseTensor, from_components, to_components
from jaxsm.errors import (
    CallArgumentError,
    CorruptFileError,
    FormatError,
    FunctionMatchError,
    GraphError,
    IncompleteSavedModelError,
    JaxsmError,
    VariableError,
)
from jaxsm.format.structure import TensorSpec, TypeSpec, decode
from jaxsm.format.tensor import shape_from_proto, tensor_from_proto
from jaxsm.graph.interpreter import Interpreter, with_run_time_asserts
from jaxsm.graph.library import Body, Library, check_supported
from jaxsm.graph.node import Node
from jaxsm.graph.rng import COUNTED_OPS, initial_counters
from jaxsm.graph.values import Resource
from jaxsm.objects import (
    Asset,
    LoadOptions,
    Signatures,
    Variable,
    _dtype_matches,
    _warn_x64_once,
    check_fits_32_bits,
    dense_table_layout,
    table_contents,
)
from jaxsm.ops.tf1 import MERGE_BRANCHES_ATTR, MUTABLE_TABLE_KIND, table_state, variable_key

# Attribute the rewrite puts on a stateful node inside a cond branch with a run-time predicate: the branch
# (0/1)
# of each predicate appended to its inputs. Its state writes only take effect when all those branches are
# live.
GUARD_ATTR = "_jaxsm_guard_branches"

_ENTER = frozenset({"Enter", "RefEnter"})
_EXIT = frozenset({"Exit", "RefExit"})
_NEXT = frozenset({"NextIteration", "RefNextIteration"})
_MERGE = frozenset({"Merge", "RefMerge"})
_SWITCH = frozenset({"Switch", "RefSwitch"})
_VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp"})
# every op that creates a table (jaxsm/ops/tf1.py), v1 ref-handle and anonymous ones too: a table's dtypes
_TABLE_OPS = frozenset(
    f"{prefix}{kind}{suffix}"
    for kind in ("HashTable", "MutableHashTable", "MutableHashTableOfTensors", "MutableDenseHashTable")
    for prefix, suffix in (("", ""), ("", "V2"), ("Anonymous", ""))
)

INIT_OP_SIGNATURE_KEY = "__saved_model_init_op"
_MAIN_OP_KEY = "saved_model_main_op"
_LEGACY_INIT_OP_KEY = "legacy_init_op"
_ASSETS_KEY = "saved_model_assets"


class GraphElementError(GraphError, KeyError):
    """A name does not refer to an operation or tensor of the graph (TF raises KeyError/ValueError here)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _split(ref: str) -> tuple[str, int]:
    """``"a"``/``"a:1"``/``"^a"`` -> (node name, output index)."""
    ref = ref.lstrip("^")
    name, _, idx = ref.rpartition(":")
    if name and idx.isdigit():
        return name, int(idx)
    return ref, 0


def _ref(name: str, idx: int) -> str:
    return name if idx == 0 else f"{name}:{idx}"


# -- control flow rewrite
# ----------------------------------------------------------------------------------------------
@dataclass
class LoweredGraph:
    """The result of :func:`lower_control_flow`.

    ``graph_def`` has no loop frames left (its library holds the generated cond/body functions); ``problems``
    maps a
    node name to why its frame or cond could not be rewritten — running a graph that needs that node fails
    with it.
    """

    graph_def: graph_pb2.GraphDef
    problems: dict[str, str] = field(default_factory=dict)


def lower_control_flow(graph_def: graph_pb2.GraphDef) -> LoweredGraph:
    """Rewrite TF1 control flow (control flow v1) into structured control flow jaxsm can run.

    Reproduces the semantics of TF's ``control_flow_ops.while_loop``/``cond`` (v1) as executed by TF's
    executor
    (``tensorflow/core/common_runtime/executor.cc``: frames, dead tensors):

    * **Loops.** Every node gets a frame (``Enter`` opens the frame named by its ``frame_name`` attr, ``Exit``
      returns
      to the parent, any other node lives in its inputs' frame). Each frame is rebuilt into a functional
      ``While``
      node: loop variables are the ``Merge(Enter, NextIteration)`` pairs, the cond function computes
        ``LoopCond``'s
      input from the Merge outputs, the body function maps ``Switch:1`` outputs to the ``NextIteration``
      inputs, and
      ``Enter(is_constant=True)`` invariants are passed through unchanged. Variables entering a loop by
      reference
      (``RefEnter``) are re-created inside the body as handles to the same state key. Nested frames are
      rewritten
      recursively inside the generated body. ``Exit`` nodes become ``Identity`` nodes of the While's outputs.
    * **Conds.** TF evaluates only the live branch: a ``Switch`` emits a dead tensor on the untaken side, an
      op with
      a dead input is dead, and a ``Merge`` forwards its one live input. jaxsm instead evaluates *both*
      branches
      (fine for inference graphs; XLA needs both anyway under a run-time predicate) and each ``Merge`` selects
      between
      them on the governing predicate, which the rewrite appends as an extra input (a predicate known at trace
      time
      picks a side without computing a select). Stateful ops inside a branch (assignments) get the branch
      predicates appended too: their state writes only take effect when their branch is live, so a branch that
      assigns a variable behaves as in TF.

    Arguments:
      graph_def: a TF1 GraphDef (as in ``MetaGraphDef.graph_def``).

    Returns:
      A :class:`LoweredGraph`; node names outside loops are unchanged, so feeds and fetches still apply.
    """

    problems: dict[str, str] = {}
    functions: list[function_pb2.FunctionDef] = []
    nodes = [_copy(n) for n in graph_def.node]
    frame_of, parent = _assign_frames(nodes, problems)
    existing = {f.signature.name for f in graph_def.library.function}
    top = _rewrite_frames(nodes, "", frame_of, parent, functions, problems, existing)
    called = existing | {f.signature.name for f in functions}
    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    out.node.extend(_annotate_conds(top, called, problems))
    for f in functions:
        nodes_f = _annotate_conds(list(f.node_def), called, problems)
        del f.node_def[:]
        f.node_def.extend(nodes_f)
        out.library.function.append(f)
    return LoweredGraph(out, problems)


def _copy(n: node_def_pb2.NodeDef) -> node_def_pb2.NodeDef:
    c = node_def_pb2.NodeDef()
    c.CopyFrom(n)
    return c


def _topo_order(nodes: list[node_def_pb2.NodeDef]) -> list[node_def_pb2.NodeDef]:
    """Nodes in dependency order, ignoring NextIteration back edges (nodes left on a cycle come last)."""
    by_name = {n.name: n for n in nodes}
    deps: dict[str, set[str]] = {}
    for n in nodes:
        deps[n.name] = {
            s for s in (_split(i)[0] for i in n.input) if s in by_name and s != n.name and by_name[s].op not in _NEXT
        }
    users: dict[str, list[str]] = {n.name: [] for n in nodes}
    for name, ds in deps.items():
        for d in ds:
            users[d].append(name)
    indeg = {k: len(v) for k, v in deps.items()}
    ready = [n.name for n in nodes if indeg[n.name] == 0]
    order: list[str] = []
    while ready:
        name = ready.pop()
        order.append(name)
        for u in users[name]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    seen = set(order)
    order += [n.name for n in nodes if n.name not in seen]
    return [by_name[nm] for nm in order]


def _assign_frames(nodes, problems) -> tuple[dict[str, str], dict[str, str]]:
    """Frame of every node (``""`` = the root frame) and the parent of every frame, as TF's executor
    assigns them."""
    frame_of: dict[str, str] = {}
    parent: dict[str, str] = {"": ""}
    depth: dict[str, int] = {"": 0}
    by_name = {n.name: n for n in nodes}

    def out_frame(src: str) -> str:
        f = frame_of.get(src, "")
        return parent.get(f, "") if by_name[src].op in _EXIT else f

    for n in _topo_order(nodes):
        srcs = [s for s in (_split(i)[0] for i in n.input) if s in by_name and s in frame_of]
        if n.op in _ENTER:
            name = n.attr["frame_name"].s.decode()
            outer = out_frame(srcs[0]) if srcs else ""
            parent.setdefault(name, outer)
            depth.setdefault(name, depth.get(outer, 0) + 1)
            frame_of[n.name] = name
            continue
        frames = {out_frame(s) for s in srcs}
        if not frames:
            frame_of[n.name] = ""
            continue
        deepest = max(frames, key=lambda f: depth.get(f, 0))
        for f in frames:
            g = deepest
            while g != f and g:
                g = parent.get(g, "")
            if g != f:
                problems[n.name] = f"node '{n.name}' ({n.op}) has inputs from unrelated loop frames {sorted(frames)}"
        frame_of[n.name] = deepest
    return frame_of, parent


def _in_frame(frame: str, outer: str, parent: dict[str, str]) -> bool:
    while frame:
        if frame == outer:
            return True
        frame = parent.get(frame, "")
    return False


def _rewrite_frames(nodes, level, frame_of, parent, functions, problems, taken) -> list[node_def_pb2.NodeDef]:
    """Replace every loop frame directly inside ``level`` by a While node (recursing into the bodies)."""
    children: list[str] = []
    for n in nodes:
        f = frame_of.get(n.name, level)
        if f != level and parent.get(f) == level and f not in children:
            children.append(f)
    for frame in children:
        try:
            nodes = _rewrite_frame(nodes, frame, frame_of, parent, functions, problems, taken)
        except GraphError as e:
            for n in nodes:
                if _in_frame(frame_of.get(n.name, level), frame, parent) or (
                    n.op in _EXIT and frame_of.get(n.name) == frame
                ):
                    problems.setdefault(n.name, str(e))
    return nodes


def _rewrite_frame(nodes, frame, frame_of, parent, functions, problems, taken) -> list[node_def_pb2.NodeDef]:
    by_name = {n.name: n for n in nodes}
    members = [n for n in nodes if _in_frame(frame_of.get(n.name, ""), frame, parent)]
    member_names = {n.name for n in members}
    direct = [n for n in members if frame_of.get(n.name) == frame]
    where = f"TF1 while loop frame '{frame}'"
    enters = [n for n in direct if n.op in _ENTER]
    enter_names = {n.name for n in enters}
    loop_conds = [n for n in direct if n.op == "LoopCond"]
    if len(loop_conds) != 1:
        raise GraphError(f"{where} has {len(loop_conds)} LoopCond nodes (expected 1)")
    loop_cond = loop_conds[0]

    merges = []
    for n in direct:
        if n.op not in _MERGE:
            continue
        srcs = [_split(i)[0] for i in n.input if not i.startswith("^")]
        enter = [s for s in srcs if s in enter_names]
        nxt = [s for s in srcs if s in by_name and by_name[s].op in _NEXT]
        if len(srcs) == 2 and len(enter) == 1 and len(nxt) == 1:
            merges.append((n, by_name[enter[0]], by_name[nxt[0]]))
    if not merges:
        raise GraphError(f"{where} has no loop variables (Merge(Enter, NextIteration) pairs)")
    merge_index = {m.name: i for i, (m, _, _) in enumerate(merges)}
    switches: dict[str, int] = {}
    for n in direct:
        if n.op in _SWITCH and len(n.input) >= 2 and _split(n.input[1])[0] == loop_cond.name:
            src = _split(n.input[0])[0]
            if src in merge_index:
                switches[n.name] = merge_index[src]
    exits: dict[str, int] = {}
    exit_identities: set[str] = set()  # tf.gradients' tuple Identity between a loop Switch's exit side and Exit
    for n in direct:
        if n.op in _EXIT:
            src, idx = _split(n.input[0])
            while src not in switches and by_name.get(src) is not None and by_name[src].op == "Identity":
                exit_identities.add(src)
                src, idx = _split(by_name[src].input[0])
            if src not in switches or idx != 0:
                raise GraphError(f"{where}: Exit '{n.name}' does not follow a loop Switch")
            exits[n.name] = switches[src]

    loop_enters = {e.name for _, e, _ in merges}
    invariants = [e for e in enters if e.name not in loop_enters]
    for e in invariants:
        if not e.attr["is_constant"].b:
            raise GraphError(f"{where}: Enter '{e.name}' is neither a loop variable nor a loop invariant")

    # Handles of variables entering by reference are re-created inside the body (handles are static values).
    clones: list[node_def_pb2.NodeDef] = []
    passed: list[node_def_pb2.NodeDef] = []
    for e in invariants:
        src = by_name.get(_split(e.input[0])[0])
        if src is not None and src.op == "Identity" and src.input:
            # 'v/read', an Identity of a RefVariable, forwards the variable's buffer in TF: each iteration reads
            # the value current then (after the body's assignments), so it enters as the variable itself
            var = by_name.get(_split(src.input[0])[0])
            if var is not None and var.op in ("VariableV2", "Variable"):
                src = var
        if src is not None and src.op in _VARIABLE_OPS:
            c = _copy(src)
            c.name = e.name
            c.attr["shared_name"].s = variable_key(Node(src)).encode()
            clones.append(c)
        else:
            passed.append(e)

    mapping: dict[tuple[str, int], str] = {}
    arg_names, arg_types = [], []
    for i, (m, e, _) in enumerate(merges):
        arg = f"loop_var_{i}"
        mapping[(m.name, 0)] = arg
        arg_names.append(arg)
        arg_types.append(e.attr["T"].type)
    for sw, i in switches.items():
        mapping[(sw, 1)] = arg_names[i]
    for j, e in enumerate(passed):
        arg = f"invariant_{j}"
        mapping[(e.name, 0)] = arg
        arg_names.append(arg)
        arg_types.append(e.attr["T"].type)
    removed = (
        loop_enters
        | {e.name for e in passed}
        | {m.name for m, _, _ in merges}
        | set(switches)
        | set(exits)
        | exit_identities
        | {n.name for _, _, n in merges}
        | {loop_cond.name}
    )
    kept = (member_names - removed) | {c.name for c in clones}

    def remap(ref: str, user: str) -> str:
        name, idx = _split(ref)
        if (name, idx) in mapping:
            return mapping[(name, idx)]
        if name in removed:
            raise GraphError(f"{where}: node '{user}' reads '{ref}', which jaxsm cannot map to a loop variable")
        return ref

    cloned = {c.name for c in clones}
    body_nodes: list[node_def_pb2.NodeDef] = []
    for n in members:
        if n.name in removed or n.name in cloned:
            continue
        c = _copy(n)
        del c.input[:]
        for i in n.input:
            if i.startswith("^"):
                if i[1:] in kept:
                    c.input.append(i)
            else:
                c.input.append(remap(i, n.name))
        body_nodes.append(c)
    body_nodes += clones
    body_nodes = _rewrite_frames(body_nodes, frame, frame_of, parent, functions, problems, taken)
    # What a NextIteration waits for runs every iteration (tf.compat.v1 gradients' stack pushes: nothing reads them).
    in_body = {n.name for n in body_nodes}
    waited = sorted({i[1:] for _, _, nxt in merges for i in nxt.input if i.startswith("^") and i[1:] in in_body})

    base = frame.removesuffix("/while_context") or frame
    cond_name, body_name = _unique(f"{base}/cond", taken), _unique(f"{base}/body", taken)
    cond_out = remap(loop_cond.input[0], loop_cond.name)
    body_outs = [remap(nxt.input[0], nxt.name) for _, _, nxt in merges] + arg_names[len(merges) :]
    functions.append(
        _function_def(cond_name, arg_names, arg_types, ["cond"], [dtypes.DT.DT_BOOL], [cond_out], body_nodes)
    )
    functions.append(
        _function_def(
            body_name,
            arg_names,
            arg_types,
            [f"out_{i}" for i in range(len(arg_names))],
            arg_types,
            body_outs,
            body_nodes,
            waited,
        )
    )

    while_node = node_def_pb2.NodeDef(name=_unique(f"{base}/While", set(by_name)), op="While")
    while_node.input.extend([e.input[0] for _, e, _ in merges] + [e.input[0] for e in passed])
    controls = {i for e in enters for i in e.input if i.startswith("^") and i[1:] not in member_names}
    while_node.input.extend(sorted(controls))
    while_node.attr["T"].list.type.extend(arg_types)
    while_node.attr["cond"].func.name = cond_name
    while_node.attr["body"].func.name = body_name
    while_node.attr["parallel_iterations"].i = 10
    replaced = []
    for n in direct:
        if n.name in exits:
            ident = node_def_pb2.NodeDef(name=n.name, op="Identity", input=[f"{while_node.name}:{exits[n.name]}"])
            ident.attr["T"].CopyFrom(n.attr["T"])
            replaced.append(ident)
    outside = [n for n in nodes if n.name not in member_names]
    return outside + [while_node] + replaced


def _unique(name: str, taken: set[str]) -> str:
    out, k = name, 1
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    taken.add(out)
    return out


def _function_def(
    name, arg_names, arg_types, out_names, out_types, rets, nodes, control=()
) -> function_pb2.FunctionDef:
    f = function_pb2.FunctionDef()
    f.signature.name = name
    for a, t in zip(arg_names, arg_types, strict=True):
        f.signature.input_arg.add(name=a, type=t)
    for o, t, r in zip(out_names, out_types, rets, strict=True):
        f.signature.output_arg.add(name=o, type=t)
        f.ret[o] = r
    for c in control:
        f.signature.control_output.append(c)
        f.control_ret[c] = c
    f.node_def.extend(_copy(n) for n in nodes)
    return f


def _annotate_conds(nodes, functions: set[str], problems) -> list[node_def_pb2.NodeDef]:
    """Give each cond Merge its predicate and each stateful node inside a branch its guard (see
    :func:`lower_control_flow`). A tensor's *condition* is the set of (predicate, branch) pairs under which TF
    would compute it (not dead); a Merge removes the one pair in which its two inputs differ."""
    from jaxsm.ops.registry import lookup  # (the registry decides which nodes are stateful)

    by_name = {n.name: n for n in nodes}

    def canonical(ref: str) -> str:
        name, idx = _split(ref)
        seen = set()
        while name in by_name and by_name[name].op == "Identity" and name not in seen:
            seen.add(name)
            name, idx = _split(by_name[name].input[0])
        return _ref(name, idx)

    cond: dict[str, frozenset] = {}

    def cond_of(ref: str) -> frozenset:
        name, idx = _split(ref)
        node = by_name.get(name)
        c = cond.get(name, frozenset())
        if node is not None and node.op in _SWITCH and not ref.startswith("^") and name in cond:
            c = c | {(canonical(node.input[1]), idx)}
        return c

    out: dict[str, node_def_pb2.NodeDef] = {}
    for n in _topo_order(nodes):
        data = [i for i in n.input if not i.startswith("^")]
        if n.op in _MERGE and n.name not in problems:
            try:
                cond[n.name], pred, branches = _merge_condition(n, [cond_of(i) for i in data])
            except GraphError as e:
                problems[n.name] = str(e)
                cond[n.name] = frozenset()
                out[n.name] = n
                continue
            c = _copy(n)
            c.input.insert(len(data), pred)
            c.attr[MERGE_BRANCHES_ATTR].list.i.extend(branches)
            out[n.name] = c
            continue
        c_in = frozenset().union(*(cond_of(i) for i in n.input)) if n.input else frozenset()
        cond[n.name] = c_in
        opdef = lookup(n.op)
        stateful = n.op in functions or (opdef is not None and opdef.stateful)
        if c_in and (stateful or n.op in _BRANCH_READS) and n.op not in _SWITCH:
            g = _copy(n)
            literals = sorted(c_in)
            for k, (p, _) in enumerate(literals):
                g.input.insert(len(data) + k, p)  # data inputs must precede control inputs
            g.attr[GUARD_ATTR].list.i.extend(b for _, b in literals)
            out[n.name] = g
        else:
            out[n.name] = n
    return [out[n.name] for n in nodes]


def _merge_condition(n, conds: list[frozenset]) -> tuple[frozenset, str, list[int]]:
    if len(conds) != 2:
        raise GraphError(f"Merge '{n.name}' has {len(conds)} inputs; jaxsm rewrites the two-input Merge of a TF1 cond")
    only0, only1 = conds[0] - conds[1], conds[1] - conds[0]
    if len(only0) == 1 and len(only1) == 1:
        (p0, b0), (p1, b1) = next(iter(only0)), next(iter(only1))
        if p0 == p1 and b0 != b1:
            return conds[0] & conds[1], p0, [b0, b1]
    raise GraphError(
        f"Merge '{n.name}' does not join the two branches of one TF1 cond (its inputs are live under "
        f"{sorted(conds[0])} and {sorted(conds[1])}); jaxsm cannot tell which input each predicate selects"
    )


class TF1Interpreter(Interpreter):
    """The interpreter for graphs rewritten by :func:`lower_control_flow`: applies branch guards to state
    writes
    and knows the graph's hash-table nodes (their dtypes)."""

    def __init__(
        self,
        library: Library,
        state: dict[str, Any] | None = None,
        table_nodes: dict[str, Node] | None = None,
    ):
        super().__init__(library, state)
        self.table_nodes = dict(table_nodes or {})
        # set for a function that pops no stack: its StackV2s take no values (jaxsm/ops/tf1.py)
        self.discard_stacks = False
        self.unchecked_reads = False  # set while a read in an untaken branch runs (jaxsm/ops/lists.py)

    def run_node(self, node: Node, args: list[Any]) -> list[Any]:
        if not node.has_attr(GUARD_ATTR):
            return super().run_node(node, args)
        branches = node.attr(GUARD_ATTR)
        n = len(args) - len(branches)
        preds = args[n:]
        live = _live(preds, branches)
        if node.op in _CHECKS and live is not True:  # a check in a branch holds where the branch is not taken
            if live is None and self.run_time_asserts is not None:
                x = jnp.asarray(args[0])
                held = jnp.all(x) if node.op == "Assert" else jnp.all(jnp.isfinite(x))
                self.run_time_asserts.append(~_live_traced(preds, branches) | held)
            return [] if node.op == "Assert" else [args[0]]
        if node.op in _BRANCH_READS and live is not True:
            return self._branch_read(node, args[:n], preds, branches, live)
        before = dict(self.state)
        outs = super().run_node(node, args[:n])
        for k, v in list(self.state.items()):
            if k in before and before[k] is not v:
                if live is None:
                    self.state[k] = jnp.where(_live_traced(preds, branches), v, before[k])
                elif not live:
                    self.state[k] = before[k]
        return outs

    def _branch_read(self, node: Node, args: list[Any], preds, branches, live) -> list[Any]:
        """A read in a branch that may not be taken: TF never runs it there, so an index out of range (known at
        trace time, e.g. raw_rnn's ``cond(finished, zeros, lambda: ta.read(time))``) must not raise. It reads
        zeros; where the branch is live at run time that is a run-time error, as in TF."""
        try:
            return super().run_node(node, args)
        except JaxsmError:
            if live is None and self.run_time_asserts is None:
                raise
        if live is None:
            self.run_time_asserts.append(~_live_traced(preds, branches))
        self.unchecked_reads = True
        try:
            return super().run_node(node, args)
        finally:
            self.unchecked_reads = False


_CHECKS = frozenset({"Assert", "CheckNumerics", "CheckNumericsV2"})
# reads that check their index at trace time: guarded like state writes when inside a cond branch
_BRANCH_READS = frozenset({"TensorArrayReadV3", "TensorArrayGatherV3", "TensorListGetItem", "TensorListGather"})


def _live(preds, branches) -> bool | None:
    """Whether every (pred, branch) holds, when all predicates are known at trace time; else None."""
    from jaxsm.graph.values import to_static

    known = [to_static(p) for p in preds]
    if any(k is None for k in known):
        return None
    return all(bool(k) == bool(b) for k, b in zip(known, branches, strict=True))


def _live_traced(preds, branches):
    live = jnp.asarray(True)
    for p, b in zip(preds, branches, strict=True):
        p = jnp.asarray(p).astype(bool).reshape(())
        live = live & (p if b else ~p)
    return live


# -- graph view
# -----------------------------------------------------------------------------------------------------
class Tensor:
    """A tensor of the loaded graph (``op:index``), like ``tf.Tensor`` in graph mode."""

    def __init__(self, op: Operation, value_index: int):
        self.op = op
        self.value_index = value_index

    @property
    def name(self) -> str:
        return f"{self.op.name}:{self.value_index}"

    @property
    def graph(self) -> GraphView:
        return self.op.graph

    @property
    def dtype(self) -> np.dtype | None:
        """The NumPy dtype (``object`` for strings; None for resources/variants or when unknown)."""
        return self.op._output_dtype(self.value_index)

    @property
    def shape(self) -> tuple | None:
        """The shape in the node's ``_output_shapes`` attr (None dims unknown), or None when absent."""
        shapes = self.op.node_def.attr.get("_output_shapes")
        if shapes is None or self.value_index >= len(shapes.list.shape):
            return None
        return shape_from_proto(shapes.list.shape[self.value_index])

    def __repr__(self) -> str:
        return f"<jaxsm.tf1.Tensor '{self.name}' shape={self.shape} dtype={self.dtype}>"


class Operation:
    """A node of the loaded graph, like ``tf.Operation``: name, type, inputs, outputs, attrs, NodeDef."""

    def __init__(self, graph: GraphView, node_def: node_def_pb2.NodeDef):
        self.graph = graph
        self.node_def = node_def
        self._node = Node(node_def)

    name = property(lambda self: self.node_def.name)
    type = property(lambda self: self.node_def.op)
    device = property(lambda self: self.node_def.device)

    @property
    def inputs(self) -> list[Tensor]:
        return [self.graph.get_tensor_by_name(_ref_name(i)) for i in self.node_def.input if not i.startswith("^")]

    @property
    def control_inputs(self) -> list[Operation]:
        return [self.graph.get_operation_by_name(i[1:]) for i in self.node_def.input if i.startswith("^")]

    @property
    def outputs(self) -> list[Tensor]:
        return [Tensor(self, i) for i in range(self.graph._num_outputs(self))]

    def get_attr(self, name: str) -> Any:
        """The decoded attribute (types as NumPy dtypes where they have one); GraphElementError if absent."""
        if name not in self.node_def.attr:
            raise GraphElementError(f"operation '{self.name}' ({self.type}) has no attr named '{name}'")
        value = self._node.attr(name)
        if self.node_def.attr[name].WhichOneof("value") == "type":
            try:
                return dtypes.to_numpy(value)
            except KeyError:
                return value
        return value

    def _output_dtype(self, index: int) -> np.dtype | None:
        opdef = self.graph._op_defs.get(self.type)
        if opdef is None:
            for key in ("T", "dtype"):
                if key in self.node_def.attr and self.node_def.attr[key].WhichOneof("value") == "type":
                    return _np_dtype(self.node_def.attr[key].type)
            return None
        k = 0
        for arg in opdef.output_arg:
            n = 1
            if arg.number_attr:
                n = self.node_def.attr[arg.number_attr].i
            elif arg.type_list_attr:
                types = list(self.node_def.attr[arg.type_list_attr].list.type)
                if index < k + len(types):
                    return _np_dtype(types[index - k])
                k += len(types)
                continue
            if index < k + n:
                t = arg.type if arg.type else self.node_def.attr[arg.type_attr].type
                return _np_dtype(t)
            k += n
        return None

    def __repr__(self) -> str:
        return f"<jaxsm.tf1.Operation '{self.name}' type={self.type}>"


def _np_dtype(t: int) -> np.dtype | None:
    try:
        return dtypes.to_numpy(dtypes.base_enum(t))
    except KeyError:
        return None


def _ref_name(ref: str) -> str:
    name, idx = _split(ref)
    return f"{name}:{idx}"


class GraphView:
    """A read-only view of the loaded TF1 graph (``tf.Graph``'s lookup methods)."""

    def __init__(self, graph_def: graph_pb2.GraphDef, op_list):
        self._graph_def = graph_def
        self._op_defs = {o.name: o for o in op_list.op}
        self._ops = {n.name: Operation(self, n) for n in graph_def.node}
        self._library = Library(graph_def.library, op_list)

    def get_operations(self) -> list[Operation]:
        return list(self._ops.values())

    def get_operation_by_name(self, name: str) -> Operation:
        if ":" in name:
            raise GraphElementError(f"'{name}' looks like a tensor name, not an operation name")
        try:
            return self._ops[name]
        except KeyError:
            raise GraphElementError(f"the graph has no operation named '{name}'") from None

    def get_tensor_by_name(self, name: str) -> Tensor:
        op_name, _, idx = name.rpartition(":")
        if not op_name or not idx.isdigit():
            raise GraphElementError(f"'{name}' is not a tensor name ('<op name>:<output index>')")
        op = self.get_operation_by_name(op_name)
        if int(idx) >= self._num_outputs(op):
            raise GraphElementError(f"operation '{op_name}' ({op.type}) has only {self._num_outputs(op)} outputs")
        return Tensor(op, int(idx))

    def as_graph_element(self, obj: Any) -> Tensor | Operation:
        if isinstance(obj, (Tensor, Operation)):
            return obj
        if not isinstance(obj, str):
            raise GraphElementError(f"cannot interpret {obj!r} as a tensor or operation name")
        return self.get_tensor_by_name(obj) if ":" in obj else self.get_operation_by_name(obj)

    def as_graph_def(self) -> graph_pb2.GraphDef:
        """A copy of the GraphDef proto as stored in the SavedModel."""
        out = graph_pb2.GraphDef()
        out.CopyFrom(self._graph_def)
        return out

    def _num_outputs(self, op: Operation) -> int:
        opdef = self._op_defs.get(op.type)
        if opdef is not None:
            n = 0
            for arg in opdef.output_arg:
                if arg.number_attr:
                    n += op.node_def.attr[arg.number_attr].i
                elif arg.type_list_attr:
                    n += len(op.node_def.attr[arg.type_list_attr].list.type)
                else:
                    n += 1
            return n
        shapes = op.node_def.attr.get("_output_shapes")
        if shapes is not None:
            return len(shapes.list.shape)
        layout = self._library.output_args(op._node)
        return sum(k for _, _, k in layout) if layout else 1

    def __repr__(self) -> str:
        return f"<jaxsm.tf1.GraphView with {len(self._ops)} operations>"


# -- functions
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _InputSpec:
    name: str
    dtype: np.dtype


class PrunedFunction:
    """A function over part of the TF1 graph, from ``feeds`` to ``fetches`` (``WrappedFunction.prune`` in TF).

    Called positionally with one value per feed; returns ``fetches``' structure with tensors replaced by
    arrays and
    operations by None. Runs as a jitted pure function of (variable state, feeds); assignments are written
    back.
    """

    def __init__(self, model: TF1Model, feeds: list[str], fetches: Any, name: str = "pruned"):
        self._model = model
        self.name = name
        twice = sorted({f for f in feeds if [_ref_name(g) for g in feeds].count(_ref_name(f)) > 1})
        if twice:  # TF's prune (and so TF's load, for a signature) fails here: one tensor cannot take two values
            raise GraphError(f"'{name}' feeds the tensor(s) {twice} more than once")
        self._feeds = feeds
        self._structure = fetches
        self._tensors: list[str] = []
        self._targets: list[str] = []
        _flatten_fetches(fetches, self._tensors, self._targets)
        self._body = model._build_body(name, feeds, self._tensors, self._targets)
        self._jitted: Callable | None = None
        self._lock = threading.Lock()
        self.inputs: list[_InputSpec] = [model._input_spec(f) for f in feeds]

    def pure(self) -> Callable[[dict[str, Any], Sequence[Any]], tuple[list[Any], dict[str, Any]]]:
        """``fn(state, flat_feeds) -> (flat_tensor_fetches, updated_state)``; pure and traceable."""
        body, library, tables = self._body, self._model._library, self._model._table_nodes
        output_nodes = [body.nodes[src] if src >= 0 else None for src, _ in body.outputs]

        # stacks nothing here pops (only a gradient loop does) take no values (jaxsm/ops/tf1.py: _discarded)
        discard_stacks = not any(n.op in ("StackPopV2", "StackPop") for n in self._all_nodes())

        def fn(state: dict[str, Any], flat_feeds: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
            interp = TF1Interpreter(library, state, tables)
            interp.discard_stacks = discard_stacks
            interp.run_time_asserts = []
            # A fetched variable (a VariableV2 ref or a VarHandleOp handle) returns its value.
            outputs = [
                interp.read_resource(o, node) if isinstance(o, Resource) and o.kind in ("ref", "variable") else o
                for o, node in zip(interp.run(body, list(flat_feeds)), output_nodes, strict=True)
            ]
            updated = {k: v for k, v in interp.state.items() if k not in state or state[k] is not v}
            return outputs, with_run_time_asserts(updated, interp)

        return fn

    def call_flat(self, flat_feeds: Sequence[Any]) -> list[Any]:
        """Run on the feeds in order; returns the tensor fetches, flattened."""
        with self._lock:
            if self._jitted is None:
                self._jitted = tuned_jit(self.pure(), repr(self.name))
        outputs, updated = self._jitted(self._model._state(), self.convert(flat_feeds))
        self._model._write_back(updated)
        return outputs

    def _convert(self, spec: _InputSpec, x: Any) -> Any:
        if isinstance(x, Variable):
            x = x.value()
        if spec.dtype == object:  # strings: bytes on the host (the call then runs op by op)
            strings = dtypes.as_strings(x)
            if strings is None:
                raise FunctionMatchError(f"{self.name}: input '{spec.name}' expects strings, got {type(x).__name__}")
            x = strings
        elif not isinstance(x, jax.Array):
            x = _from_python(x, spec, self.name)
        if spec.dtype is not None and np.dtype(x.dtype) != spec.dtype:
            # without x64, JAX holds no 64-bit arrays: a 32-bit input stands for a 64-bit one and back
            got = np.dtype(x.dtype)
            if not (_dtype_matches(got, spec.dtype) or _dtype_matches(spec.dtype, got)):
                raise FunctionMatchError(
                    f"{self.name}: input '{spec.name}' expects {spec.dtype.name}, got {np.dtype(x.dtype).name}"
                )
        check_fits_32_bits(x, f"{self.name}: input '{spec.name}'")
        return x

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Any]:
        """The flat feeds of a call: one value per feed, positionally or by keyword, as TF's pruned function binds
        them (the keyword is the feed's op name, ``x`` for ``x:0``, or that name with every character that is not
        a letter or digit made ``_``)."""
        slots = {}
        for i, feed in enumerate(self._feeds):
            name = _split(feed)[0]
            for key in {name, "".join(c if c.isalnum() else "_" for c in name)}:
                slots[key] = i if key not in slots else -1  # feeds of one op's outputs bind positionally only
        bound = dict(enumerate(args))
        for key, value in kwargs.items():
            bound[slots.get(key, -1) if slots.get(key, -1) not in bound else -1] = value
        if len(args) > len(self._feeds) or sorted(bound) != list(range(len(self._feeds))):
            raise CallArgumentError(
                f"{self.name} takes {len(self._feeds)} inputs ({self._feeds}), positionally or by op name; got "
                f"{len(args)} positional arguments and keywords {sorted(kwargs)}"
            )
        return [bound[i] for i in range(len(self._feeds))]

    def pack(self, flat_outputs: Sequence[Any]) -> Any:
        """The flat tensor fetches in the call's result structure."""
        return _pack_fetches(self._structure, iter(flat_outputs))

    def convert(self, flat_feeds: Sequence[Any]) -> list[Any]:
        """The flat feeds checked and converted to the inputs' dtypes, as a call converts them."""
        return [self._convert(spec, x) for spec, x in zip(self.inputs, flat_feeds, strict=True)]

    def _all_nodes(self) -> list[Node]:
        """The nodes this function runs, with those of its loop bodies and other called functions."""
        lib = self._model._library
        called = [name for n in self._body.nodes for name in lib.called_functions(n)]
        return [*self._body.nodes, *lib.reachable_nodes(called)]

    def _variables(self) -> list[Variable]:
        """The model's variables this function reads or writes, in model order."""
        keys = {variable_key(n) for n in self._all_nodes() if n.op in _VARIABLE_OPS}
        return [v for v in self._model._variables.values() if v.key in keys]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.pack(self.call_flat(self.bind(args, kwargs)))

    def __repr__(self) -> str:
        return f"<jaxsm.tf1.PrunedFunction {self.name} feeds={self._feeds}>"


class SignatureFunction(PrunedFunction):
    """A SignatureDef as a function: inputs by keyword, or positionally in sorted key order (as TF binds them);
    returns a dict of outputs by output key."""

    def __init__(self, model: TF1Model, key: str, signature_def: meta_graph_pb2.SignatureDef):
        inputs = sorted(signature_def.inputs.items())
        # A sparse tensor (sparse_placeholder; TensorInfo.coo_sparse) or a ragged one (composite_tensor) is fed and
        # fetched as its components. TF's restored signature takes one argument per component ('sp' becomes
        # sp_indices, sp_values, sp_dense_shape; a ragged 'r' r_component_0, …: load_v1_in_v2.py); jaxsm also takes
        # a jaxsm/TF SparseTensor or RaggedTensor whole under its key.
        self._composites = {
            k: _composite_spec(key, k, info)
            for k, info in [*inputs, *signature_def.outputs.items()]
            if info.WhichOneof("encoding") == "composite_tensor"
        }
        self._sparse = {
            k for k, info in [*inputs, *signature_def.outputs.items()] if info.WhichOneof("encoding") == "coo_sparse"
        }
        self.input_keys = [k for k, _ in inputs]
        self._arg_names = {k: _arg_names(k, info) for k, info in inputs}
        fetches = {k: _component_names(info) for k, info in signature_def.outputs.items()}
        feeds = [name for _, info in inputs for name in _component_names(info, flat=True)]
        super().__init__(model, feeds, fetches, name=key)
        infos = [i for _, info in inputs for i in _component_infos(info)]
        names = [n for k in self.input_keys for n in self._arg_names[k]]
        specs = {}  # as TF's restored signatures describe themselves: one TensorSpec per argument
        for i, (name, info) in enumerate(zip(names, infos, strict=True)):
            if info is None:  # a sparse component: its tensor's dtype and shape in the graph
                t = model.graph.get_tensor_by_name(_ref_name(feeds[i]))
                self.inputs[i] = _InputSpec(name, t.dtype)
                specs[name] = TensorSpec(t.shape, t.dtype, name, dtypes.from_numpy(t.dtype))
            else:
                shape = None if info.tensor_shape.unknown_rank else shape_from_proto(info.tensor_shape)
                # TF's restored signature does not check shapes: a fixed batch takes another batch size
                self.inputs[i] = _InputSpec(name, _np_dtype(info.dtype))
                specs[name] = TensorSpec(shape, _np_dtype(info.dtype), name, info.dtype)
        self.method_name = signature_def.method_name
        self.structured_input_signature = ((), specs)
        self.structured_outputs = {
            k: self._composites.get(k) or _spec(k, info, set(feeds))
            for k, info in sorted(signature_def.outputs.items())
        }

    def _components(self, key: str, value: Any) -> list[Any]:
        """A composite input passed whole, as its components."""
        if key in self._sparse:
            parts = [getattr(value, a, None) for a in ("indices", "values", "dense_shape")]
            parts = None if any(p is None for p in parts) else parts
        else:
            parts = to_components(value, self._composites[key])
        if parts is None:
            kind = "SparseTensor" if key in self._sparse else "RaggedTensor"
            raise FunctionMatchError(f"signature '{self.name}': input '{key}' expects a {kind}")
        return parts

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Any]:
        kwargs = dict(kwargs)
        for k in self.input_keys:
            if k in kwargs and self._arg_names[k] != [k]:
                kwargs.update(zip(self._arg_names[k], self._components(k, kwargs.pop(k)), strict=True))
        names = [n for k in self.input_keys for n in self._arg_names[k]]
        # TF binds positional arguments in that (sorted) order, like a Python signature (h, x)
        given = sorted(set(names[: len(args)]) & set(kwargs))
        if len(args) > len(names) or given:
            raise CallArgumentError(
                f"signature '{self.name}' takes the inputs {names} (positionally in that order, or by "
                f"keyword); got {len(args)} positional arguments and keywords {sorted(kwargs)}"
            )
        kwargs = {**dict(zip(names, args, strict=False)), **kwargs}
        missing = sorted(set(names) - set(kwargs))
        extra = sorted(set(kwargs) - set(names))
        if missing or extra:
            raise CallArgumentError(
                f"signature '{self.name}' expects inputs {names}; missing {missing}, unexpected {extra}"
            )
        return [kwargs[n] for n in names]

    def pack(self, flat_outputs: Sequence[Any]) -> dict[str, Any]:
        out = _pack_fetches(self._structure, iter(flat_outputs))
        for k, v in out.items():
            if k in self._sparse:
                out[k] = SparseTensor(*v)
            elif k in self._composites:
                out[k] = from_components(self._composites[k], list(v))
        return out

    def __repr__(self) -> str:
        return f"<jaxsm.tf1.SignatureFunction '{self.name}' inputs={self.input_keys}>"


def _kind(dt: np.dtype) -> str:
    """'b', 'i' (signed or unsigned), 'f' (bfloat16 and other ml_dtypes floats too), 'c', or '' for the rest."""
    for kind, base in (("b", np.bool_), ("i", np.integer), ("f", np.floating), ("c", np.complexfloating)):
        if jnp.issubdtype(dt, base):
            return kind
    return ""


# Conversions TF's signature call makes (``convert_to_tensor(value, dtype)``) when the value is no tensor yet: a
# Python value keeps its kind's rules (bools and ints go anywhere numeric, floats only to floats and complex), a
# NumPy array is cast to any numeric type (TF truncates floats into ints there too).
_PYTHON_CASTS = {"b": "bifc", "i": "ifc", "f": "fc", "c": "c"}
_NUMPY_CASTS = {"b": "bifc", "i": "ifc", "f": "ifc", "c": "c"}


def _from_python(x: Any, spec: _InputSpec, fn_name: str) -> np.ndarray:
    """A Python value or NumPy array (or scalar) converted for an input of ``spec.dtype`` as TF converts it
    (``_PYTHON_CASTS``/``_NUMPY_CASTS``; integers wrap); anything else is refused."""
    numpy = isinstance(x, (np.ndarray, np.generic))
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise FunctionMatchError(f"{fn_name}: input '{spec.name}' cannot be converted to a tensor: {e}") from None
    if spec.dtype is None or arr.dtype == spec.dtype or (not numpy and hasattr(x, "__array__")):
        return arr  # a tensor of another library keeps its dtype (TF does not cast tensors)
    got, want = _kind(arr.dtype), _kind(spec.dtype)
    if not got or want not in (_NUMPY_CASTS if numpy else _PYTHON_CASTS)[got]:
        if numpy:
            return arr  # refused below, naming both dtypes
        raise FunctionMatchError(
            f"{fn_name}: input '{spec.name}' expects {spec.dtype.name}, cannot convert {x!r} to it"
        )
    with np.errstate(all="ignore"):
        return arr.astype(spec.dtype)


def _spec(key: str, info: meta_graph_pb2.TensorInfo, feeds: set[str]) -> TensorSpec | TypeSpec | None:
    if info.WhichOneof("encoding") == "coo_sparse":
        return _sparse_spec(info, feeds)
    if info.WhichOneof("encoding") != "name" or ":" not in info.name:  # (an operation: the init op's signature)
        return None
    shape = None if info.tensor_shape.unknown_rank else shape_from_proto(info.tensor_shape)
    return TensorSpec(shape, _np_dtype(info.dtype), key, info.dtype)


def _sparse_spec(info: meta_graph_pb2.TensorInfo, feeds: set[str]) -> TypeSpec:
    """A coo_sparse TensorInfo's ``SparseTensorSpec(shape, dtype)`` (TF's output there is a SparseTensor), built
    as a TF2 SavedModel stores one so both decode alike."""
    state = struct_pb2.StructuredValue()
    shape = state.tuple_value.values.add().tensor_shape_value
    shape.CopyFrom(info.tensor_shape)
    if info.coo_sparse.dense_shape_tensor_name in feeds:
        # TF rebuilds the SparseTensor in the pruned signature function, where a fed dense_shape has no known
        # values: its sizes are unknown whatever the export recorded (sparse_placeholder's shape)
        for d in shape.dim:
            d.size = -1
    state.tuple_value.values.add().tensor_dtype_value = info.dtype
    proto = struct_pb2.TypeSpecProto(
        type_spec_class=struct_pb2.TypeSpecProto.SPARSE_TENSOR_SPEC,
        type_state=state,
        type_spec_class_name="SparseTensorSpec",
        num_flat_components=3,
    )
    return decode(struct_pb2.StructuredValue(type_spec_value=proto))


def _component_names(info: meta_graph_pb2.TensorInfo, flat: bool = False) -> Any:
    """A TensorInfo's tensor name, or a sparse tensor's (indices, values, dense_shape) tensor names, or a
    composite's component tensor names."""
    if info.WhichOneof("encoding") == "name":
        return [info.name] if flat else info.name
    if info.WhichOneof("encoding") == "composite_tensor":
        names = tuple(c.name for c in info.composite_tensor.components)
    else:
        coo = info.coo_sparse
        names = (coo.indices_tensor_name, coo.values_tensor_name, coo.dense_shape_tensor_name)
    return list(names) if flat else names


def _component_infos(info: meta_graph_pb2.TensorInfo) -> list[meta_graph_pb2.TensorInfo | None]:
    """The TensorInfo of each component (None for a coo_sparse one, which has no TensorInfo)."""
    if info.WhichOneof("encoding") == "name":
        return [info]
    if info.WhichOneof("encoding") == "composite_tensor":
        return list(info.composite_tensor.components)
    return [None, None, None]


def _arg_names(key: str, info: meta_graph_pb2.TensorInfo) -> list[str]:
    """The argument names TF's restored signature gives an input's components (``load_v1_in_v2.py``)."""
    if info.WhichOneof("encoding") == "name":
        return [key]
    if info.WhichOneof("encoding") == "coo_sparse":
        return [f"{key}_indices", f"{key}_values", f"{key}_dense_shape"]
    return [f"{key}_component_{n}" for n in range(len(info.composite_tensor.components))]


def _composite_spec(signature: str, key: str, info: meta_graph_pb2.TensorInfo) -> TypeSpec:
    """The TypeSpec of a composite_tensor TensorInfo; only ragged and sparse tensors are supported."""
    spec = decode(struct_pb2.StructuredValue(type_spec_value=info.composite_tensor.type_spec))
    if spec.type_spec_class not in ("RAGGED_TENSOR_SPEC", "SPARSE_TENSOR_SPEC"):
        raise JaxsmError(
            f"signature '{signature}': '{key}' is a {spec.class_name or spec.type_spec_class} tensor; jaxsm "
            "supports ragged and sparse composite tensors in TF1 signatures"
        )
    return spec


def _flatten_fetches(fetches: Any, tensors: list[str], targets: list[str]) -> None:
    if isinstance(fetches, Mapping):
        for k in sorted(fetches):
            _flatten_fetches(fetches[k], tensors, targets)
    elif isinstance(fetches, (list, tuple)):
        for f in fetches:
            _flatten_fetches(f, tensors, targets)
    elif isinstance(fetches, str):
        (tensors if ":" in fetches else targets).append(fetches)
    else:
        raise GraphElementError(f"cannot fetch {fetches!r}: fetches are tensor or operation names")


def _pack_fetches(structure: Any, values: Iterator[Any]) -> Any:
    if isinstance(structure, Mapping):
        filled = {k: _pack_fetches(structure[k], values) for k in sorted(structure)}
        return {k: filled[k] for k in structure}
    if isinstance(structure, (list, tuple)):
        return type(structure)(_pack_fetches(f, values) for f in structure)
    return next(values) if ":" in structure else None


def _flatten_feeds(x: Any) -> list[Any]:
    """Prune feeds in ``tf.nest.flatten`` order, as ``WrappedFunction.prune`` flattens them."""
    if isinstance(x, Mapping):
        return [f for k in sorted(x) for f in _flatten_feeds(x[k])]
    if isinstance(x, (list, tuple)):
        return [f for v in x for f in _flatten_feeds(v)]
    return [x]


def _names(x: Any) -> Any:
    """Tensors/Operations of the graph view -> their names, in any nesting."""
    if isinstance(x, (Tensor, Operation)):
        return x.name
    if isinstance(x, meta_graph_pb2.TensorInfo):
        return x.name
    if isinstance(x, Mapping):
        return {k: _names(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_names(v) for v in x)
    return x


class Initializer:
    """The restored init op (``main_op``/``legacy_init_op``/table initializers); calling it runs it again."""

    def __init__(self, model: TF1Model, targets: list[str], asset_paths: dict[str, str]):
        self._model = model
        self._targets = targets
        self.asset_paths = dict(asset_paths)

    def __call__(self) -> None:
        if not self._targets:
            return
        feeds = sorted(self.asset_paths)
        body = self._model._build_body("initializer", feeds, [], self._targets)
        values = [np.asarray(self.asset_paths[f].encode(), dtype=object) for f in feeds]
        interp = TF1Interpreter(self._model._library, self._model._state(), self._model._table_nodes)
        interp.run(body, values)
        self._model._write_back(interp.state)

    _initialize = __call__

    def __repr__(self) -> str:
        return f"<jaxsm.tf1.Initializer {self._targets}>"


# -- the model
# ------------------------------------------------------------------------------------------------------
class TF1Model:
    """A TF1 SavedModel MetaGraph loaded like ``tf.saved_model.load`` loads it (``load_v1_in_v2``).

    Attributes:
      signatures: SignatureDef key -> :class:`SignatureFunction`.
      variables: the graph's global variables (:class:`jaxsm.Variable`), in collection order.
      graph: a read-only :class:`GraphView` of the stored GraphDef.
      initializer: the :class:`Initializer` that ran after restoring.
      asset_paths: the assets (:class:`jaxsm.objects.Asset`; ``.asset_path`` is the absolute path of the file under
        ``assets/``), in the MetaGraph's order, as TF's loader lists them.
      tensorflow_version, tensorflow_git_version: from the MetaGraph's ``meta_info_def``.
    """

    def __init__(self, export_dir: str, meta_graph: meta_graph_pb2.MetaGraphDef, options: LoadOptions):
        from jaxsm.format.saved_model import SavedModelFiles

        self._export_dir = export_dir
        self._files = SavedModelFiles.of(export_dir)
        self._meta_graph = meta_graph
        self._options = options
        lowered = lower_control_flow(meta_graph.graph_def)
        self._problems = lowered.problems
        op_list = meta_graph.meta_info_def.stripped_op_list
        self._library = Library(lowered.graph_def.library, op_list)
        self._nodes = [Node(n) for n in lowered.graph_def.node]
        self._node_names = {n.name for n in self._nodes}
        self._original_names = {n.name for n in meta_graph.graph_def.node}
        self._table_nodes = {(n.attr("shared_name", "") or n.name): n for n in self._nodes if n.op in _TABLE_OPS}
        # state kept across calls besides variables: tables, stacks, the Philox counters of stateful random
        # kernels (jaxsm/graph/rng.py), which move on with every run as in a TF1 Session
        self._resources: dict[str, Any] = initial_counters(
            [*self._nodes, *self._library.reachable_nodes(self._library.functions, COUNTED_OPS)]
        )
        self._bodies: dict[tuple, Body] = {}
        self.graph = GraphView(meta_graph.graph_def, op_list)
        self.tensorflow_version = meta_graph.meta_info_def.tensorflow_version
        self.tensorflow_git_version = meta_graph.meta_info_def.tensorflow_git_version
        self._create_variables()
        asset_files = {
            info.tensor_info.name: str(self._files.asset_path(info.filename)) for info in _asset_file_defs(meta_graph)
        }
        self.asset_paths = [Asset(np.asarray(path.encode(), dtype=object)) for path in asset_files.values()]
        restore = options.load_variables and not options.experimental_skip_checkpoint
        if restore and not self._files.has_variables and meta_graph.saver_def.restore_op_name:
            v1_file = os.path.isfile(self._files.variables_prefix)  # a Saver(write_version=V1) checkpoint
            if not options.allow_partial_checkpoint and v1_file:
                raise FormatError(
                    f"{self._files.variables_prefix} is a V1 checkpoint (Saver(write_version=SaverDef.V1)), a format "
                    "jaxsm does not read: re-save the variables with a V2 Saver, or pass "
                    "LoadOptions(allow_partial_checkpoint=True) to load without values"
                )
            if not options.allow_partial_checkpoint:  # TF's loader runs the Saver's restore, which fails here
                raise IncompleteSavedModelError(
                    f"{self._files.variables_index} is missing, but the MetaGraph restores variables from it: the "
                    "variables/ directory is incomplete (pass LoadOptions(allow_partial_checkpoint=True) to load "
                    "without values)"
                )
        if restore and self._files.has_variables:
            self._restore(self._files.variables_prefix, missing_ok=options.allow_partial_checkpoint)
        self.initializer = Initializer(self, self._init_targets(), asset_files)
        self.initializer()
        # (the init op's signature too, as TF's loader gives it: calling it runs the init op again)
        sigs = {k: SignatureFunction(self, k, s) for k, s in sorted(meta_graph.signature_def.items())}
        self.signatures = Signatures(sigs)
        self._check_ops(sigs)

    # -- variables -------------------------------------------------------------------------------------------
    def _create_variables(self) -> None:
        defs = {}
        collections = {}
        for coll in ("variables", "local_variables", "trainable_variables"):
            cdef = self._meta_graph.collection_def.get(coll)
            names = []
            if cdef is not None:
                for raw in cdef.bytes_list.value:
                    vdef = _parse(variable_pb2.VariableDef, raw, f"collection {coll!r}")
                    name = _split(vdef.variable_name)[0]
                    defs[name] = vdef
                    names.append(name)
            collections[coll] = names
        trainable = set(collections["trainable_variables"])
        self._variables: dict[str, Variable] = {}
        by_node: dict[str, Variable] = {}
        for n in self._nodes:
            if n.op not in _VARIABLE_OPS:
                continue
            dtype = n.dtype_attr("dtype")
            if dtype in (np.dtype(np.int64), np.dtype(np.float64)):
                _warn_x64_once()
            shape = n.attr("shape", None)
            # no synchronization/aggregation from the VariableDef: TF's loader lifts TF1 variables into new ones
            # with the defaults (wrap_function.py _lift_single_variable)
            var = Variable(
                variable_key(n),
                f"{n.name}:0",
                tuple(shape) if shape is not None else None,
                dtype,
                n.name in trainable,
            )
            self._variables[var.key] = var
            by_node[n.name] = var
        # TF's loaded model lists the global variables, then the local ones (tf.compat.v1.metrics' counters)
        listed = collections["variables"] + [
            n for n in collections["local_variables"] if n not in collections["variables"]
        ]
        ordered = listed or [n.name for n in self._nodes if n.name in by_node]
        self.variables: list[Variable] = [by_node[nm] for nm in ordered if nm in by_node]
        # what a Saver checkpoint must hold (local variables are initialized by the init op instead)
        self._saved = {id(v) for v in self.variables if v.name[:-2] not in collections["local_variables"]}
        self.trainable_variables: list[Variable] = [v for v in self.variables if v.trainable]

    def _state(self) -> dict[str, Any]:
        state = {k: v._value for k, v in self._variables.items() if v._value is not None}
        state.update(self._resources)
        return state

    def _write_back(self, updated: Mapping[str, Any]) -> None:
        for k, value in updated.items():
            var = self._variables.get(k)
            if var is not None:
                var._value = value
            elif isinstance(value, (np.ndarray, jax.Array)) and not isinstance(value, jax.core.Tracer):
                self._resources[k] = value  # (not under the caller's jit/vmap: a tracer would outlive it)

    def _restore_keys(self, tables: dict[str, list[str | None]] | None = None) -> dict[str, tuple[str, str]]:
        """state key -> (checkpoint key, shape-and-slice spec), from the SaverDef's RestoreV2 nodes. ``tables``
        collects the mutable tables the Saver restores: table node name -> [keys, values checkpoint keys]."""
        saver = self._meta_graph.saver_def
        graph = self._meta_graph.graph_def
        by_name = {n.name: n for n in graph.node}
        consumers: dict[tuple[str, int], list] = {}
        for n in graph.node:
            for i in n.input:
                if not i.startswith("^"):
                    consumers.setdefault(_split(i), []).append(n)
        restores = []
        stack, seen = [_split(saver.restore_op_name)[0]] if saver.restore_op_name else [], set()
        while stack:
            name = stack.pop()
            if name in seen or name not in by_name:
                continue
            seen.add(name)
            node = by_name[name]
            if node.op == "RestoreV2":
                restores.append(node)
            stack.extend(_split(i)[0] for i in node.input)

        def const(ref: str) -> np.ndarray:
            node, seen = by_name.get(_split(ref)[0]), set()
            while node is not None and node.op == "Identity" and node.input and node.name not in seen:
                seen.add(node.name)
                node = by_name.get(_split(node.input[0])[0])
            if node is None or "value" not in node.attr:
                raise GraphError(
                    f"the Saver's restore op reads {ref!r}, which is not a constant of the graph: the SavedModel's "
                    "graph is corrupt (re-export it)"
                )
            return tensor_from_proto(node.attr["value"].tensor)

        def target(src: tuple[str, int], depth: int = 0) -> node_def_pb2.NodeDef | None:
            for user in consumers.get(src, []):
                if user.op in ("Assign", "AssignVariableOp") and _split(user.input[1]) == src:
                    var = by_name.get(_split(user.input[0])[0])
                    while var is not None and var.op in ("Identity", "RefIdentity"):
                        var = by_name.get(_split(var.input[0])[0])
                    return var
                if user.op == "Identity" and depth < 8:
                    found = target((user.name, 0), depth + 1)
                    if found is not None:
                        return found
            return None

        keys: dict[str, tuple[str, str]] = {}
        for r in restores:
            names = const(r.input[1]).reshape(-1)
            slices = const(r.input[2]).reshape(-1)
            for i, key in enumerate(names):
                var = target((r.name, i))
                if var is not None and var.op in _VARIABLE_OPS:
                    spec = slices[i] if i < len(slices) else b""
                    keys[variable_key(Node(var))] = (_text(key), _text(spec))
                for user in consumers.get((r.name, i), []) if tables is not None else []:
                    if user.op in ("LookupTableImportV2", "LookupTableImport"):  # a table's saveable restore
                        table = by_name.get(_split(user.input[0])[0])
                        while table is not None and table.op == "Identity":
                            table = by_name.get(_split(table.input[0])[0])
                        slots = [_split(ref) for ref in user.input[1:3]]
                        if table is not None and (r.name, i) in slots:
                            tables.setdefault(table.name, [None, None])[slots.index((r.name, i))] = _text(key)
        return keys

    def _restore(self, prefix: str, missing_ok: bool) -> None:
        from jaxsm.format.checkpoint import load_checkpoint

        reader = load_checkpoint(prefix, verify_checksums=self._options.verify_checksums)
        tables: dict[str, list[str | None]] = {}
        keys = self._restore_keys(tables)
        self._restore_tables(reader, tables, missing_ok)
        for key, var in self._variables.items():
            ckpt_key, spec = keys.get(key, (key, ""))
            if not reader.has_tensor(ckpt_key):
                # a variable the Saver does not restore stays uninitialized, as in TF (reading it raises)
                if missing_ok or key not in keys and (keys or not self._in_collections(var)):
                    continue
                raise VariableError(
                    f"variable '{var.name}' (checkpoint key '{ckpt_key}') is not in the checkpoint "
                    f"{prefix}; pass LoadOptions(allow_partial_checkpoint=True) to load anyway"
                )
            value = _apply_slice(np.asarray(reader.get_tensor(ckpt_key)), spec, ckpt_key)
            declared = var._shape
            fits = declared is None or (
                len(declared) == value.ndim and all(d is None or d < 0 or d == s for d, s in zip(declared, value.shape))
            )
            if value.dtype != var._dtype or not fits:  # TF's graph import fails on the restore op's Assign
                raise VariableError(
                    f"variable '{var.name}' is declared {var._dtype} {list(declared) if declared is not None else '?'} "
                    f"in the graph, but checkpoint key '{ckpt_key}' of {prefix} holds {value.dtype} "
                    f"{list(value.shape)}: the SavedModel is inconsistent (re-export it)"
                )
            var._value = self._options.place(var.key, value)

    def _restore_tables(self, reader: Any, tables: dict[str, list[str | None]], missing_ok: bool) -> None:
        """Mutable hash tables' contents, which TF's loader restores by running the Saver's LookupTableImportV2
        nodes (``MutableHashTable`` / ``DenseHashTable`` saveables: ``<name>-keys``, ``<name>-values``)."""
        nodes = {n.name: n for n in self._meta_graph.graph_def.node}
        for name, ckpt_keys in tables.items():
            if not all(k is not None and reader.has_tensor(k) for k in ckpt_keys):
                if missing_ok:
                    continue
                raise VariableError(f"table '{name}' (checkpoint keys {ckpt_keys}) is not in the checkpoint")
            node = nodes[name]
            dense = dense_table_layout(node, nodes)
            keys, values = table_contents(*(reader.get_tensor(k) for k in ckpt_keys), dense)
            handle = Resource(node.attr["shared_name"].s.decode() or name, MUTABLE_TABLE_KIND)
            self._resources.update(table_state(handle, keys, values))

    def _in_collections(self, var: Variable) -> bool:
        return id(var) in self._saved

    def restore(self, save_path: str | os.PathLike) -> None:
        """Restore every variable from another TF1 Saver checkpoint (a prefix like ``/tmp/model.ckpt-7``)."""
        self._restore(os.fspath(save_path), missing_ok=False)

    # -- init ------------------------------------------------------------------------------------------------
    def _init_targets(self) -> list[str]:
        """The init op, chosen as ``loader_impl.get_init_op`` does, else TF's default local init op."""
        mg = self._meta_graph
        sig = mg.signature_def.get(INIT_OP_SIGNATURE_KEY)
        if sig is not None and INIT_OP_SIGNATURE_KEY in sig.outputs:
            return [_split(sig.outputs[INIT_OP_SIGNATURE_KEY].name)[0]]
        for key in (_MAIN_OP_KEY, _LEGACY_INIT_OP_KEY):
            if key in mg.collection_def:
                values = list(mg.collection_def[key].node_list.value)
                if values:
                    return [_split(values[0])[0]]
        targets = []
        local = mg.collection_def.get("local_variables")
        if local is not None:
            targets += [
                _split(_parse(variable_pb2.VariableDef, raw, "collection 'local_variables'").initializer_name)[0]
                for raw in local.bytes_list.value
            ]
        if "table_initializer" in mg.collection_def:
            targets += [_split(v)[0] for v in mg.collection_def["table_initializer"].node_list.value]
        return targets

    # -- functions -------------------------------------------------------------------------------------------
    def _build_body(self, name: str, feeds: list[str], tensors: list[str], targets: list[str]) -> Body:
        key = (tuple(feeds), tuple(tensors), tuple(targets))
        if key in self._bodies:
            return self._bodies[key]
        for ref in list(feeds) + list(tensors) + list(targets):
            node = _split(ref)[0]
            if node not in self._original_names:
                raise GraphElementError(f"'{ref}' names no operation of the graph")
            if ":" in ref:
                self.graph.get_tensor_by_name(_ref_name(ref))  # GraphElementError past the op's outputs, as in TF
            if node not in self._node_names:
                raise GraphError(
                    f"'{ref}' is inside a TF1 while loop; only tensors outside loops can be fed or fetched"
                )
        feed_names = [_ref_name(f) for f in feeds]
        body = self._library.build_body(name, feed_names, self._nodes, list(tensors), list(tensors), targets)
        for node in body.nodes:
            if node.name in self._problems:
                raise GraphError(f"'{name}' needs '{node.name}' ({node.op}): {self._problems[node.name]}")
        self._bodies[key] = body
        return body

    def _input_spec(self, feed: str) -> _InputSpec:
        try:
            t = self.graph.get_tensor_by_name(_ref_name(feed))
        except GraphElementError:
            return _InputSpec(feed, None)
        return _InputSpec(feed, t.dtype)

    def _check_ops(self, functions: Mapping[str, PrunedFunction]) -> None:
        """One UnsupportedOpError for every op type the signatures need that has no lowering (principle 4)."""
        found: dict[str, tuple[int, str]] = {}
        called: list[str] = []
        for fn in functions.values():
            for node in fn._body.nodes:
                count, example = found.get(node.op, (0, f"{fn.name}/{node.name}"))
                found[node.op] = (count + 1, example)
                called += self._library.called_functions(node)
        for o, (c, ex) in self._library.scan_ops(called).items():
            count, example = found.get(o, (0, ex))
            found[o] = (count + c, example)
        found = {o: v for o, v in found.items() if o not in self._library.functions}
        check_supported(found, f"the TF1 SavedModel at {self._export_dir}")

    def prune(self, feeds: Any, fetches: Any) -> PrunedFunction:
        """A :class:`PrunedFunction` from ``feeds`` to ``fetches``, like TF's ``WrappedFunction.prune``.

        Arguments:
          feeds: a tensor name (``"x:0"``) or a (nested) list/tuple/dict of them; the function takes one value
            per feed, in ``tf.nest.flatten`` order (dicts by sorted key), positionally or by op name.
          fetches: a tensor or operation name, or a (nested) list/tuple/dict of them (graph-view Tensors and
            Operations work too).

        Returns:
          A callable returning ``fetches``' structure: arrays for tensors, None for operations (which run).
        """
        feeds = _flatten_feeds(_names(feeds))
        for f in feeds:
            if not isinstance(f, str) or ":" not in f:
                raise GraphElementError(f"feeds must be tensor names like 'x:0', got {f!r}")
        fn = PrunedFunction(self, feeds, _names(fetches))
        unfed = sorted(n.name for n in fn._body.nodes if n.op in ("Placeholder", "PlaceholderV2"))
        if unfed:  # TF's prune refuses to lift them (UnliftableError); signatures only fail when called
            raise GraphError(f"the fetches depend on placeholders {unfed}, which are not fed; add them to feeds")
        self._check_ops({fn.name: fn})
        return fn

    def __repr__(self) -> str:
        return (
            f"<jaxsm.tf1.TF1Model {self._export_dir} tags={list(self._meta_graph.meta_info_def.tags)} "
            f"signatures={sorted(self.signatures)} variables={len(self.variables)}>"
        )


def _parse(cls: type, raw: bytes, where: str) -> Any:
    """A proto serialized inside the MetaGraph (a collection entry); a CorruptFileError if it does not parse."""
    try:
        return cls.FromString(raw)
    except DecodeError as e:
        raise CorruptFileError(f"cannot parse a {cls.__name__} of the MetaGraph's {where}: {e} (re-export it)") from e


def _asset_file_defs(meta_graph: meta_graph_pb2.MetaGraphDef) -> list[meta_graph_pb2.AssetFileDef]:
    """``asset_file_def``, or for older Builders the ``saved_model_assets`` collection, as TF's
    ``loader_impl.get_asset_tensors`` reads them."""
    if meta_graph.asset_file_def:
        return list(meta_graph.asset_file_def)
    cdef = meta_graph.collection_def.get(_ASSETS_KEY)
    if cdef is None:
        return []
    return [_parse(meta_graph_pb2.AssetFileDef, a.value, f"collection {_ASSETS_KEY!r}") for a in cdef.any_list.value]


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _apply_slice(value: np.ndarray, spec: str, key: str) -> np.ndarray:
    """Cut one partition out of a full checkpoint tensor, per a Saver shape-and-slice spec
    (``"10 4 0,5:-"``: full shape, then ``start,length`` or ``-`` per dimension)."""
    if not spec:
        return value
    *full, slices = spec.split(" ")
    if tuple(int(d) for d in full) != value.shape:
        raise VariableError(f"checkpoint tensor '{key}' has shape {value.shape}, the Saver expects {full}")
    index = []
    for s in slices.split(":"):
        if s == "-":
            index.append(slice(None))
        else:
            start, length = (int(v) for v in s.split(","))
            index.append(slice(start, start + length))
    return value[tuple(index)]


def load_v1(export_dir: str, meta_graph: meta_graph_pb2.MetaGraphDef, options: LoadOptions) -> TF1Model:
    """Load a MetaGraph without an object graph (called by :func:`jaxsm.load`)."""
    return TF1Model(export_dir, meta_graph, options)


__all__ = [
    "GraphView",
    "Initializer",
    "LoweredGraph",
    "Operation",
    "PrunedFunction",
    "SignatureFunction",
    "TF1Interpreter",
    "TF1Model",
    "Tensor",
    "load_v1",
    "lower_control_flow",
]
