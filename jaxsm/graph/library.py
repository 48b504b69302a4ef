"""The FunctionDef library: function bodies ready to interpret, output-arg layouts, reachability scans."""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jaxsm._proto import function_pb2, graph_pb2, node_def_pb2, op_def_pb2
from jaxsm.errors import GraphError, UnsupportedOpError
from jaxsm.graph.node import Node, func_attr_names
from jaxsm.graph.op_outputs import OP_OUTPUTS

# A resolved data input: (node index in Body.nodes, or -1 for a body input; output or input index).
Ref = tuple[int, int]


@dataclass
class Body:
    """One graph body (a FunctionDef, or a pruned GraphDef) in topological order.

    ``inputs[i]`` is the i-th input's name; ``node_inputs[k]`` are the resolved data inputs of ``nodes[k]``;
    ``outputs`` the resolved results; ``free_after[k]`` the node indices whose values are dead after node k.
    """

    name: str
    inputs: list[str]
    nodes: list[Node]
    node_inputs: list[list[Ref]]
    outputs: list[Ref]
    output_names: list[str]
    free_after: list[list[int]]
    # input index -> node indices that consume it (lets the interpreter drop inputs after their last use too)
    # how runs op by op split it into host nodes and jitted groups, per input signature (jaxsm/graph/staging.py)
    stage_plans: dict = field(default_factory=dict, repr=False, compare=False)


class Library:
    """All FunctionDefs of a graph plus the OpDefs needed to resolve ``node:out_arg:i`` references."""

    def __init__(
        self,
        library: function_pb2.FunctionDefLibrary | None = None,
        op_list: op_def_pb2.OpList | None = None,
    ):
        self.functions: dict[str, function_pb2.FunctionDef] = {}
        if library is not None:
            for f in library.function:
                prev = self.functions.get(f.signature.name)
                if prev is not None and prev != f:  # TF's FunctionLibraryDefinition refuses it
                    raise GraphError(
                        f"the function library defines '{f.signature.name}' twice, differently: the graph is corrupt"
                    )
                self.functions[f.signature.name] = f
        self._op_defs = {o.name: o for o in op_list.op} if op_list is not None else {}
        self._bodies: dict[str, Body] = {}
        self._deps: dict[int, list[Dependencies]] = {}
        # Staged jaxprs of folded nodes (jaxsm.graph.fold), by node and input shapes.
        self.fold_cache: dict = {}
        # While loops met while a call runs op by op, jitted per input shapes (jaxsm/ops/control_flow.py).
        self.loop_cache: dict = {}
        # Whether functions print or write files, by the functions a node calls (jaxsm/graph/staging.py).
        self.host_effects: dict = {}
        # tf.custom_gradient's registered gradients by _gradient_op_type (jaxsm/graph/custom_gradient.py), and
        # per function the tensors they capture, which the interpreter keeps alive.
        self.custom_gradients: dict[str, Any] = {}
        self.kept_tensors: dict[str, set[str]] = {}

    # -- output layouts -------------------------------------------------------------------------------
    def output_args(self, node: Node) -> list[tuple[str, int, int]]:
        """``[(arg name, first flat index, length)]`` for the outputs of ``node``."""
        if node.op in self.functions:
            sig = self.functions[node.op].signature
            return [(a.name, i, 1) for i, a in enumerate(sig.output_arg)]
        spec = OP_OUTPUTS.get(node.op)
        if spec is None and node.op in self._op_defs:
            spec = tuple(
                (
                    a.name,
                    "n" if a.number_attr else "list" if a.type_list_attr else "",
                    a.number_attr or a.type_list_attr,
                )
                for a in self._op_defs[node.op].output_arg
            )
        if spec is None:
            return []  # a single one-tensor output: any arg name maps to output 0
        layout, start = [], 0
        for arg_name, kind, attr in spec:
            if kind == "n":  # TF leaves a count or type list at its default (0 / []) out of the saved graph
                n = int(node.attr(attr, 0))
            elif kind == "list":
                n = len(node.attr(attr, []))
            else:
                n = 1
            layout.append((arg_name, start, n))
            start += n
        return layout

    def _flat_index(self, node: Node, arg: str, i: int, where: str) -> int:
        layout = self.output_args(node)
        if not layout:
            if i != 0:
                raise GraphError(f"{where}: '{node.name}:{arg}:{i}' but {node.op} has a single output")
            return 0
        for name, start, n in layout:
            if name == arg:
                if not 0 <= i < n:
                    raise GraphError(f"{where}: '{node.name}:{arg}:{i}' is out of range ({arg} has {n} outputs)")
                return start + i
        raise GraphError(f"{where}: {node.op} has no output arg '{arg}' (referenced as '{node.name}:{arg}:{i}')")

    # -- bodies -----------------------------------------------------------------------------------------
    def function_def(self, name: str) -> function_pb2.FunctionDef:
        try:
            return self.functions[name]
        except KeyError:
            raise GraphError(f"function '{name}' is not in the graph's function library") from None

    def body(self, name: str) -> Body:
        """The interpretable body of FunctionDef ``name`` (built once, cached)."""
        if name not in self._bodies:
            fdef = self.function_def(name)
            nodes = [Node(nd, name) for nd in fdef.node_def]
            inputs = [a.name for a in fdef.signature.input_arg]
            ret_names = [a.name for a in fdef.signature.output_arg]
            missing = [n for n in ret_names if n not in fdef.ret]  # (a proto map gives '' for a missing key)
            if missing:
                raise GraphError(f"function '{name}' has no ret entry for output {missing[0]!r}")
            rets = [fdef.ret[n] for n in ret_names]
            control = [fdef.control_ret[k] for k in sorted(fdef.control_ret)]
            self._bodies[name] = self.build_body(name, inputs, nodes, rets, ret_names, control, function_style=True)
        return self._bodies[name]

    def sliced_body(self, name: str, outputs: tuple[int, ...]) -> Body:
        """The body of ``name`` pruned to the given outputs (and without side-effect targets)."""
        key = f"{name}\0{outputs}"
        if key not in self._bodies:
            full = self.function_def(name)
            nodes = [Node(nd, name) for nd in full.node_def]
            inputs = [a.name for a in full.signature.input_arg]
            names = [full.signature.output_arg[i].name for i in outputs]
            rets = [full.ret[n] for n in names]
            self._bodies[key] = self.build_body(
                name, inputs, nodes, rets, names, (), function_style=True, control_edges=False
            )
        return self._bodies[key]

    def build_body(
        self,
        name: str,
        inputs: list[str],
        nodes: list[Node],
        outputs: list[str],
        output_names: list[str],
        targets: Iterable[str] = (),
        function_style: bool = False,
        control_edges: bool = True,
    ) -> Body:
        """Resolve references, keep only what ``outputs``/``targets`` need, and order it topologically.

        Inside a FunctionDef a reference is ``arg`` or ``node:out_arg:i``; in a GraphDef it is ``node`` or
        ``node:i`` (FORMAT.md). ``inputs`` name body inputs: FunctionDef args, or GraphDef tensors being fed
        (``"x:0"``/``"x"``), which cut the graph there.
        """
        by_name = {n.name: n for n in nodes}
        where = f"function '{name}'" if function_style else f"graph '{name}'"
        if len(by_name) != len(nodes):
            seen: set[str] = set()
            dup = next(n.name for n in nodes if n.name in seen or seen.add(n.name))
            raise GraphError(f"{where}: node '{dup}' is not unique (the graph is corrupt; TF refuses it too)")
        input_index: dict[str, int] = {}
        for i, nm in enumerate(inputs):
            input_index[nm] = i
            if not function_style and ":" not in nm:
                input_index[nm + ":0"] = i

        def parse(ref: str) -> tuple[str, int] | int:
            if ref in input_index:
                return input_index[ref]
            parts = ref.split(":")
            if len(parts) > 1 and not parts[-1].isdigit():
                raise GraphError(f"{where}: cannot parse input reference '{ref}' (its output index is not a number)")
            if not function_style:
                if len(parts) == 1:
                    key = ref + ":0"
                    return input_index[key] if key in input_index else (ref, 0)
                if len(parts) == 2:
                    return (parts[0], int(parts[1]))
            else:
                if len(parts) == 3:
                    src = by_name.get(parts[0])
                    if src is None:
                        raise GraphError(f"{where}: input '{ref}' names a node that does not exist")
                    return (parts[0], self._flat_index(src, parts[1], int(parts[2]), where))
                if len(parts) == 2:
                    return (parts[0], int(parts[1]))
                if len(parts) == 1:
                    return (ref, 0)
            raise GraphError(f"{where}: cannot parse input reference '{ref}'")

        # Backward reachability from outputs and targets (data + control edges), stopping at fed inputs.
        parsed: dict[str, list] = {}
        needed: set[str] = set()
        stack = []
        out_parsed = [parse(r) for r in outputs]
        for p in out_parsed:
            if isinstance(p, tuple):
                stack.append(p[0])
        for t in targets:
            stack.append(t.split(":")[0].lstrip("^"))
        while stack:
            nm = stack.pop()
            if nm in needed:
                continue
            node = by_name.get(nm)
            if node is None:
                raise GraphError(f"{where}: reference to missing node '{nm}'")
            needed.add(nm)
            ins = [parse(r) for r in node.inputs]
            parsed[nm] = ins
            for p in ins:
                if isinstance(p, tuple) and p[0] not in needed:
                    stack.append(p[0])
            if control_edges:
                for c in node.control_inputs:
                    if c not in needed and c not in input_index:  # "^arg": a FunctionDef's own argument
                        stack.append(c)

        # Kahn's algorithm in the original node order, so execution order is deterministic.
        indeg = {nm: 0 for nm in needed}
        users: dict[str, list[str]] = {nm: [] for nm in needed}
        for nm in needed:
            deps = {p[0] for p in parsed[nm] if isinstance(p, tuple)}
            if control_edges:
                deps |= set(by_name[nm].control_inputs)
            for d in deps:
                if d in needed:
                    indeg[nm] += 1
                    users[d].append(nm)
        position = {n.name: i for i, n in enumerate(nodes)}
        import heapq

        ready = [(position[nm], nm) for nm in needed if indeg[nm] == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            _, nm = heapq.heappop(ready)
            order.append(nm)
            for u in users[nm]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(ready, (position[u], u))
        if len(order) != len(needed):
            stuck = sorted(nm for nm in needed if indeg[nm] > 0)[:5]
            raise GraphError(f"{where} has a cycle (TF1 loop frames?) through {stuck}")

        index = {nm: k for k, nm in enumerate(order)}

        def to_ref(p) -> Ref:
            return (-1, p) if isinstance(p, int) else (index[p[0]], p[1])

        node_inputs = [[to_ref(p) for p in parsed[nm]] for nm in order]
        out_refs = [to_ref(p) for p in out_parsed]
        last_use: dict[int, int] = {}
        for k, ins in enumerate(node_inputs):
            for src, _ in ins:
                if src >= 0:
                    last_use[src] = k
        for src, _ in out_refs:
            if src >= 0:
                last_use[src] = len(order)
        free_after: list[list[int]] = [[] for _ in order]
        for src, k in last_use.items():
            if k < len(order):
                free_after[k].append(src)
        for k in range(len(order)):
            if k not in last_use:
                free_after[k].append(k)  # never read: drop right away (side effects already happened)
        return Body(
            name,
            list(inputs),
            [by_name[nm] for nm in order],
            node_inputs,
            out_refs,
            list(output_names),
            free_after,
        )

    # -- reachability -------------------------------------------------------------------------------------
    def called_functions(self, node: Node | node_def_pb2.NodeDef) -> list[str]:
        """Names of library functions a node calls (``f``, ``then_branch``, ``body``, ``branches``…)."""
        names = [node.op] if node.op in self.functions else []
        # (from the raw attrs: decoding every attr of every node, constants included, doubled a scan's time)
        attrs = node.attr if isinstance(node, node_def_pb2.NodeDef) else node._attr_proto
        return names + [f for f in func_attr_names(attrs) if f in self.functions]

    def reachable_node_defs(self, roots: Iterable[str]) -> Iterator[tuple[str, node_def_pb2.NodeDef]]:
        """``(function name, NodeDef)`` of the nodes of the functions ``roots`` and of every function they call
        (each function once), except the nodes that call a library function directly (its nodes come instead)."""
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            fname = stack.pop()
            if fname in seen:
                continue
            seen.add(fname)
            for nd in self.function_def(fname).node_def:
                if nd.op in self.functions:
                    stack.append(nd.op)
                    continue
                yield fname, nd
                stack.extend(self.called_functions(nd))

    def reachable_nodes(self, roots: Iterable[str], ops: Container[str] | None = None) -> Iterator[Node]:
        """:meth:`reachable_node_defs` as Nodes (only those of types ``ops`` if given)."""
        for fname, nd in self.reachable_node_defs(roots):
            if ops is None or nd.op in ops:
                yield Node(nd, fname)

    def scan_ops(self, roots: Iterable[str]) -> dict[str, tuple[int, str]]:
        """Op types used by the functions ``roots`` and everything they call: ``{op: (count, example path)}``."""
        counts: Counter[str] = Counter()
        example: dict[str, str] = {}
        for fname, nd in self.reachable_node_defs(roots):
            counts[nd.op] += 1
            example.setdefault(nd.op, f"{fname}/{nd.name}")
        return {o: (counts[o], example[o]) for o in sorted(counts)}

    def scan_graph_ops(self, graph_def: graph_pb2.GraphDef) -> dict[str, tuple[int, str]]:
        """Like :meth:`scan_ops` for the nodes of a (TF1) GraphDef and the functions they call."""
        counts: Counter[str] = Counter()
        example: dict[str, str] = {}
        called: list[str] = []
        for nd in graph_def.node:
            if nd.op in self.functions:
                called.append(nd.op)
                continue
            counts[nd.op] += 1
            example.setdefault(nd.op, nd.name)
            called.extend(self.called_functions(nd))
        for o, (c, ex) in self.scan_ops(called).items():
            counts[o] += c
            example.setdefault(o, ex)
        return {o: (counts[o], example[o]) for o in sorted(counts)}


# tf.py_function / tf.numpy_function: the graph names a Python callback of the saving process, not saved
PYTHON_CALLBACK_OPS = frozenset({"EagerPyFunc", "PyFunc", "PyFuncStateless"})


def check_supported(found: dict[str, tuple[int, str]], what: str) -> None:
    """Raise ONE UnsupportedOpError listing every op type in ``found`` that has no lowering."""
    from jaxsm.graph.op_names import LOWERED, NEVER_LOWERED  # names only: the lowerings load on first trace

    missing = {o: v for o, v in found.items() if o not in LOWERED and o not in NEVER_LOWERED}
    if missing:
        lines = [
            f"  {o}: {c} node(s), e.g. '{ex}'"
            + (
                " (tf.py_function/tf.numpy_function: its Python code is not in the SavedModel, TF cannot run it"
                " after loading either)"
                if o in PYTHON_CALLBACK_OPS
                else ""
            )
            for o, (c, ex) in missing.items()
        ]
        raise UnsupportedOpError(
            f"{what} uses {len(missing)} op type(s) jaxsm cannot lower yet:\n"
            + "\n".join(lines)
            + "\nRun `jaxsm ops DIR` for the full coverage report; please file an issue with these op names.",
            missing,
        )


# Marks an output that depends on something other than the body's inputs (state, random, calls).
DYNAMIC = -2

# Ops whose output values are their inputs' shapes: under jit these are known at trace time even for traced inputs.
SHAPE_READS = frozenset({"Shape", "ShapeN", "Size", "Rank"})
# Ops that pass their one input through: their output has the input's shape.
PASS_THROUGH = frozenset({"Identity", "Snapshot", "StopGradient", "PreventGradient"})


@dataclass(frozen=True)
class Dependencies:
    """What one output of a body is computed from: the body inputs whose ``values`` it reads (with DYNAMIC when
    it also reads variable state, stateful ops or nested calls), and those whose ``shapes`` only it reads
    (through Shape/ShapeN/Size/Rank, possibly after pass-through ops)."""

    values: frozenset[int]
    shapes: frozenset[int] = frozenset()


def output_dependencies(library: Library, body: Body) -> list[Dependencies]:
    """The :class:`Dependencies` of each output of ``body``. Used to find loop variables computable at trace
    time: a loop condition reading only ``tf.shape`` of a captured tensor is one."""
    from jaxsm.ops.registry import lookup

    cached = library._deps.get(id(body))
    if cached is not None:
        return cached
    # Per node: (dependencies of its values, dependencies of its shapes). A body input's shape is its own.
    nodes: list[tuple[Dependencies, Dependencies]] = []

    def of(src: int, idx: int) -> tuple[Dependencies, Dependencies]:
        return (Dependencies(frozenset({idx})), Dependencies(frozenset(), frozenset({idx}))) if src < 0 else nodes[src]

    for k, node in enumerate(body.nodes):
        ins = [of(src, idx) for src, idx in body.node_inputs[k]]
        values = _union(v for v, _ in ins)
        shapes = _union(s for _, s in ins)
        opdef = lookup(node.op)
        if opdef is None or opdef.stateful or node.op in library.functions:
            dyn = Dependencies(values.values | {DYNAMIC}, values.shapes)
            nodes.append((dyn, dyn))
        elif node.op in SHAPE_READS:
            nodes.append((shapes, shapes))
        elif node.op in PASS_THROUGH:
            nodes.append((values, shapes))
        else:  # (an output's shape may depend on any input's value: Reshape, Range, Fill…)
            nodes.append((values, values))
    result = [of(src, idx)[0] for src, idx in body.outputs]
    library._deps[id(body)] = result  # bodies are cached for the library's lifetime, so their ids are stable
    return result


def _union(deps: Iterable[Dependencies]) -> Dependencies:
    values: set[int] = set()
    shapes: set[int] = set()
    for d in deps:
        values |= d.values
        shapes |= d.shapes
    return Dependencies(frozenset(values), frozenset(shapes))


def passed_through(body: Body) -> set[int]:
    """Positions ``i`` where output ``i`` of ``body`` is its input ``i``, directly or through pass-through ops:
    a loop body's outputs there keep their shapes (captured tensors, TF1 loop invariants)."""
    out: set[int] = set()
    for i, (src, idx) in enumerate(body.outputs):
        while src >= 0 and body.nodes[src].op in PASS_THROUGH:
            src, idx = body.node_inputs[src][0]
        if src < 0 and idx == i:
            out.add(i)
    return out
