"""The ``jaxsm`` command line: ``show``, ``check``, ``ops``, ``run``.

``jaxsm show`` prints what ``saved_model_cli show`` prints for tag-sets and SignatureDefs (same layout), and
instead of TF's "Concrete Functions" section (which needs TF to load the model) the TF2 object graph read
straight from ``MetaGraphDef.object_graph_def``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Callable, Sequence
from typing import Any

from jaxsm._proto import meta_graph_pb2, saved_object_graph_pb2, types_pb2
from jaxsm.errors import JaxsmError
from jaxsm.format import saved_model as sm
from jaxsm.format import structure
from jaxsm.format.tensor import shape_from_proto

Printer = Callable[[str], None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``jaxsm`` command line; returns the process exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except (JaxsmError, OSError, ValueError, SyntaxError) as e:  # (bad --inputs/--input_examples too)
        print(f"jaxsm {args.command}: error: {e}", file=sys.stderr)
        return 1


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxsm", description="Inspect and run TensorFlow SavedModels with JAX.")
    sub = parser.add_subparsers(dest="command")

    show = sub.add_parser("show", help="show tag-sets, SignatureDefs and the object graph of a SavedModel")
    show.add_argument("dir", help="SavedModel directory")
    show.add_argument("--tag_set", help="comma-separated tags of the MetaGraph to show (all tags of the set)")
    show.add_argument("--signature_def", help="SignatureDef key to show the inputs and outputs of")
    show.add_argument("--all", action="store_true", help="show every MetaGraph, SignatureDef and object")
    show.add_argument("--list_ops", action="store_true", help="list the ops of the MetaGraph")
    show.add_argument("--objects", action="store_true", help="show the TF2 object graph of the MetaGraph")
    show.set_defaults(handler=_cmd_show)

    check = sub.add_parser("check", help="verify a SavedModel's files (proto, shards, assets, checksums)")
    check.add_argument("dir", help="SavedModel directory")
    check.set_defaults(handler=_cmd_check)

    ops = sub.add_parser("ops", help="list the ops of a SavedModel and whether jaxsm lowers them")
    ops.add_argument("dir", nargs="?", help="SavedModel directory")
    ops.add_argument("--tag_set", help="comma-separated tags of the MetaGraph")
    ops.add_argument("--list", action="store_true", help="print every op type jaxsm lowers, one per line")
    ops.set_defaults(handler=_cmd_ops)

    demo = sub.add_parser("demo", help="load the SavedModel bundled with jaxsm and print its prediction")
    demo.set_defaults(handler=_cmd_demo)

    run = sub.add_parser("run", help="run a signature of a SavedModel with JAX")
    run.add_argument("dir", help="SavedModel directory")
    run.add_argument("--tag_set", help="comma-separated tags of the MetaGraph")
    run.add_argument("--signature_def", default="serving_default", help="SignatureDef key to run")
    run.add_argument("--inputs", help="inputs as KEY=FILE.npy;KEY2=FILE2.npz[name]")
    run.add_argument("--input_exprs", help="inputs as KEY=python_expression;...")
    run.add_argument(
        "--input_examples", help="serialized tf.Examples as KEY=[{feature_name: feature_list, ...}, ...];..."
    )
    run.add_argument("--outdir", help="write each output to OUTDIR/<key>.npy instead of printing it")
    run.set_defaults(handler=_cmd_run)
    return parser


# ---- show


def _parse_tag_set(text: str) -> list[str]:
    tags = [t.strip() for t in text.split(",") if t.strip()]
    if not tags:
        raise JaxsmError("--tag_set must contain at least one non-empty tag")
    return tags


def _cmd_show(args: argparse.Namespace) -> int:
    def p(s: str = "") -> None:
        print(s)

    saved_model = sm.read_saved_model(args.dir)
    if args.all:
        show_all(saved_model, p)
        return 0
    if args.tag_set is None:
        if args.list_ops or args.objects:
            p("--list_ops and --objects must be paired with a tag-set or with --all.")
        show_tag_sets(saved_model, p)
        return 0
    meta_graph = sm.select_meta_graph(saved_model, _parse_tag_set(args.tag_set))
    if args.list_ops:
        show_ops(meta_graph, p)
    if args.signature_def is None:
        p("The given SavedModel MetaGraphDef contains SignatureDefs with the following keys:")
        for key in sorted(meta_graph.signature_def):
            p(f'SignatureDef key: "{key}"')
    else:
        if args.signature_def not in meta_graph.signature_def:
            raise JaxsmError(
                f'Could not find signature "{args.signature_def}". Please choose from: '
                f"{', '.join(sorted(meta_graph.signature_def))}"
            )
        show_signature_def(meta_graph, args.signature_def, p, indent=0)
    if args.objects:
        show_object_graph(meta_graph, p)
    return 0


def show_tag_sets(saved_model: Any, p: Printer) -> None:
    """Print every tag-set, as ``saved_model_cli show`` does."""
    p("The given SavedModel contains the following tag-sets:")
    for tags in sorted(sm.tag_sets(saved_model)):
        p(repr(", ".join(sorted(tags))))


def show_all(saved_model: Any, p: Printer) -> None:
    """Print every MetaGraph's SignatureDefs and ops (``saved_model_cli show --all``) and its object graph."""
    metas = sorted(saved_model.meta_graphs, key=lambda mg: list(mg.meta_info_def.tags))
    for mg in metas:
        p()
        tags = ", ".join(mg.meta_info_def.tags)
        p(f"MetaGraphDef with tag-set: '{tags}' contains the following SignatureDefs:")
        for key in sorted(mg.signature_def):
            p()
            p(f"signature_def['{key}']:")
            show_signature_def(mg, key, p, indent=1)
        show_ops(mg, p)
    for mg in metas:
        if mg.HasField("object_graph_def"):
            show_object_graph(mg, p)


def show_signature_def(meta_graph: meta_graph_pb2.MetaGraphDef, key: str, p: Printer, indent: int = 0) -> None:
    """Print one SignatureDef's inputs, outputs and method name in ``saved_model_cli``'s layout."""
    sig = meta_graph.signature_def[key]
    pad = "  " * indent
    p(pad + "The given SavedModel SignatureDef contains the following input(s):")
    for name, info in sorted(sig.inputs.items()):
        p(pad + f"  inputs['{name}'] tensor_info:")
        _show_tensor_info(info, p, indent + 1)
    p(pad + "The given SavedModel SignatureDef contains the following output(s):")
    for name, info in sorted(sig.outputs.items()):
        p(pad + f"  outputs['{name}'] tensor_info:")
        _show_tensor_info(info, p, indent + 1)
    p(pad + f"Method name is: {sig.method_name}")


def _show_tensor_info(info: meta_graph_pb2.TensorInfo, p: Printer, indent: int) -> None:
    pad = "  " * indent
    p(pad + "    dtype: " + types_pb2.DataType.Name(info.dtype))
    if info.tensor_shape.unknown_rank:
        shape = "unknown_rank"
    else:
        shape = "(" + ", ".join(str(d.size) for d in info.tensor_shape.dim) + ")"
    p(pad + "    shape: " + shape)
    if info.WhichOneof("encoding") == "name" or not info.WhichOneof("encoding"):
        p(pad + "    name: " + info.name)
    else:
        # Composite tensors (sparse, ragged) have no single name; show their components.
        p(pad + f"    encoding: {info.WhichOneof('encoding')}")


def ops_used(meta_graph: meta_graph_pb2.MetaGraphDef) -> set[str]:
    """The op types a MetaGraph uses, following function calls as TF's ``ops_used_by_graph_def`` does."""
    library = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    used: set[str] = set()
    todo = []

    def mark(op: str) -> None:
        if op not in used and op in library:
            todo.append(library[op])
        used.add(op)

    def visit(node: Any) -> None:
        mark(node.op)
        if node.op in ("PartitionedCall", "StatefulPartitionedCall"):
            mark(node.attr["f"].func.name)

    for node in meta_graph.graph_def.node:
        visit(node)
    while todo:
        for node in todo.pop().node_def:
            visit(node)
    return {op for op in used if op not in library}


def show_ops(meta_graph: meta_graph_pb2.MetaGraphDef, p: Printer) -> None:
    """Print the ops of a MetaGraph (sorted, unlike TF's set order)."""
    ops = "{" + ", ".join(repr(op) for op in sorted(ops_used(meta_graph))) + "}"
    p(f"The MetaGraph with tag set {list(meta_graph.meta_info_def.tags)} contains the following ops: {ops}")


# ---- object graph


def show_object_graph(meta_graph: meta_graph_pb2.MetaGraphDef, p: Printer) -> None:
    """Print the TF2 object graph as a tree walked from node 0 by child name; shared nodes print once."""
    graph = meta_graph.object_graph_def
    p()
    p(f"Object graph of MetaGraph {list(meta_graph.meta_info_def.tags)}:")
    if not graph.nodes:
        p("  (none: a TF1 SavedModel)")
        return
    seen: dict[int, str] = {}
    _show_node(meta_graph, 0, "(root)", "", 1, seen, p)


def _show_node(
    meta_graph: meta_graph_pb2.MetaGraphDef,
    node_id: int,
    name: str,
    path: str,
    depth: int,
    seen: dict[int, str],
    p: Printer,
) -> None:
    graph = meta_graph.object_graph_def
    pad = "  " * depth
    if node_id in seen:
        p(f"{pad}{name}: -> {seen[node_id] or '(root)'}")
        return
    seen[node_id] = path
    if not 0 <= node_id < len(graph.nodes):
        p(f"{pad}{name}: <dangling reference to node {node_id}>")
        return
    node = graph.nodes[node_id]
    kind = node.WhichOneof("kind")
    p(f"{pad}{name}: {_describe(meta_graph, node, kind)}")
    listed: set[str] = set()
    if kind == "function":
        listed = set(node.function.concrete_functions)
        for fn_name in node.function.concrete_functions:
            _show_concrete_function(graph, fn_name, _arg_names(node.function.function_spec), pad + "    ", p)
    elif kind == "bare_concrete_function":
        bare = node.bare_concrete_function
        _show_concrete_function(graph, bare.concrete_function_name, list(bare.argument_keywords), pad + "    ", p)
    for child in sorted(node.children, key=lambda c: c.local_name):
        target = graph.nodes[child.node_id] if 0 <= child.node_id < len(graph.nodes) else None
        if (
            target is not None
            and target.WhichOneof("kind") == "bare_concrete_function"
            and target.bare_concrete_function.concrete_function_name in listed
        ):
            seen.setdefault(child.node_id, f"{path}.{child.local_name}".lstrip("."))
            continue  # the function's own traces, already printed above
        _show_node(
            meta_graph,
            child.node_id,
            child.local_name,
            f"{path}.{child.local_name}".lstrip("."),
            depth + 1,
            seen,
            p,
        )


def _describe(meta_graph: meta_graph_pb2.MetaGraphDef, node: saved_object_graph_pb2.SavedObject, kind: str) -> str:
    if kind == "user_object":
        return f"user_object {node.user_object.identifier!r}"
    if kind == "variable":
        v = node.variable
        shape = structure.format_value(shape_from_proto(v.shape)) if not v.shape.unknown_rank else "<unknown>"
        text = f"variable {structure.DType(v.dtype).name} shape={shape} trainable={v.trainable}"
        return text + (f" name={v.name!r}" if v.name else "")
    if kind == "function":
        n = len(node.function.concrete_functions)
        return f"function with {n} concrete function{'s' if n != 1 else ''}"
    if kind == "bare_concrete_function":
        return "concrete function"
    if kind == "constant":
        return f"constant {node.constant.operation!r}"
    if kind == "asset":
        idx = node.asset.asset_file_def_index
        defs = meta_graph.asset_file_def
        filename = defs[idx].filename if 0 <= idx < len(defs) else f"<missing asset_file_def {idx}>"
        return f"asset {filename!r}"
    if kind == "resource":
        return "resource" + (f" on {node.resource.device!r}" if node.resource.device else "")
    if kind == "captured_tensor":
        return f"captured tensor {node.captured_tensor.name!r}"
    return kind or "<empty object>"


def _arg_names(spec: saved_object_graph_pb2.FunctionSpec) -> list[str] | None:
    if not spec.HasField("fullargspec"):
        return None
    fullargspec = structure.decode(spec.fullargspec)
    names = list(getattr(fullargspec, "args", None) or [])
    return names[1:] if spec.is_method and names[:1] == ["self"] else names


def _show_concrete_function(
    graph: saved_object_graph_pb2.SavedObjectGraph,
    fn_name: str,
    arg_names: list[str] | None,
    pad: str,
    p: Printer,
) -> None:
    fn = graph.concrete_functions.get(fn_name)
    if fn is None:
        p(f"{pad}{fn_name}: <no SavedConcreteFunction entry>")
        return
    signature = structure.decode(fn.canonicalized_input_signature)
    if isinstance(signature, tuple) and len(signature) == 2 and isinstance(signature[1], dict):
        args, kwargs = signature
        text = structure.format_signature(args, kwargs, arg_names)
    else:
        text = structure.format_value(signature)
    p(f"{pad}{fn_name}{text}")
    if fn.HasField("output_signature"):
        p(f"{pad}  -> {structure.format_value(structure.decode(fn.output_signature))}")


# ---- check / ops / run


def _cmd_check(args: argparse.Namespace) -> int:
    bundle_check = _bundle_check()
    problems = [str(prob) for prob in sm.find_problems(args.dir, check_shards=bundle_check is None)]
    try:
        files = sm.SavedModelFiles.of(args.dir)
    except OSError:
        files = None
    if files is not None and files.has_variables:
        if bundle_check is None:
            print(f"note: {files.variables_prefix}: tensor contents not checked (no checkpoint checker)")
        else:
            try:
                problems += [str(prob) for prob in bundle_check(files.variables_prefix)]
            except (JaxsmError, OSError) as e:
                problems.append(f"{files.variables_prefix}: {e}")
    for prob in problems:
        print(f"PROBLEM {prob}")
    if problems:
        print(f"{args.dir}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
        return 1
    print(f"{args.dir}: OK")
    return 0


def _bundle_check() -> Callable[[str], Sequence[Any]] | None:
    try:
        from jaxsm.format import bundle
    except ImportError:
        return None
    return getattr(bundle, "check", None)


def op_report(meta_graph: meta_graph_pb2.MetaGraphDef) -> dict[str, tuple[int, str]]:
    """``{op type: (count, example node path)}`` for every op reachable from the MetaGraph's functions
    (TF2: every concrete function of the object graph; TF1: the graph and the functions it calls)."""
    from jaxsm.graph.library import Library
    from jaxsm.ops import NEVER_LOWERED

    lib = Library(meta_graph.graph_def.library, meta_graph.meta_info_def.stripped_op_list)
    if meta_graph.object_graph_def.nodes:
        found = lib.scan_ops(list(meta_graph.object_graph_def.concrete_functions))
    else:
        found = lib.scan_graph_ops(meta_graph.graph_def)
    return {o: v for o, v in found.items() if o not in NEVER_LOWERED}


def _cmd_ops(args: argparse.Namespace) -> int:
    from jaxsm.ops import load_all, supported_ops

    if args.list or not args.dir:
        for name in supported_ops():
            print(name)
        return 0
    meta_graph = sm.load_meta_graph(args.dir, _parse_tag_set(args.tag_set) if args.tag_set else None)
    report = op_report(meta_graph)
    missing = 0
    width = max((len(o) for o in report), default=10)
    for o, (count, example) in report.items():
        ok = o in load_all()
        missing += not ok
        print(f"{o:<{width}}  {'supported  ' if ok else 'UNSUPPORTED'}  {count:>5}  {'' if ok else example}".rstrip())
    print(f"{len(report)} op types, {len(report) - missing} supported, {missing} unsupported")
    return 0 if missing == 0 else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from jaxsm.examples import demo

    return demo()


def _parse_inputs(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    feeds: dict[str, Any] = {}
    for item in filter(None, (args.inputs or "").split(";")):
        key, _, spec = item.partition("=")
        path, _, var = spec.partition("[")
        data = np.load(path, allow_pickle=False)
        if hasattr(data, "files"):  # .npz: [name] picks an array, else the only one
            var = var.rstrip("]") or (data.files[0] if len(data.files) == 1 else "")
            if not var:
                raise ValueError(f"--inputs {item}: {path} holds {data.files}; choose one with [name]")
            data = data[var]
        feeds[key.strip()] = data
    for item in filter(None, (args.input_exprs or "").split(";")):
        key, _, expr = item.partition("=")
        feeds[key.strip()] = np.asarray(eval(expr, {"np": np, "__builtins__": {}}))  # noqa: S307 (CLI input)
    for item in filter(None, (args.input_examples or "").split(";")):
        key, _, expr = item.partition("=")
        examples = ast.literal_eval(expr)
        if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
            raise ValueError(f"--input_examples {key}: must be a list of dictionaries, not {examples!r}")
        feeds[key.strip()] = np.array([_example(e) for e in examples], dtype=object).reshape(len(examples))
    return feeds


def _example(features: dict) -> bytes:
    """A serialized ``tf.train.Example`` of ``{feature_name: feature_list}``, typed by the first item as
    ``saved_model_cli``'s ``_create_example_string`` does (float, str or bytes, int)."""
    from jaxsm._proto import example_pb2

    example = example_pb2.Example()
    for name, values in features.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"--input_examples: feature {name!r} must be a non-empty list, not {values!r}")
        feature = example.features.feature[name]
        if isinstance(values[0], float):
            feature.float_list.value.extend(values)
        elif isinstance(values[0], (str, bytes)):
            feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in values)
        elif isinstance(values[0], int):
            feature.int64_list.value.extend(values)
        else:
            raise ValueError(
                f"--input_examples: feature {name!r} has a {type(values[0]).__name__}, not a number or text"
            )
    return example.SerializeToString()


def _cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    import jaxsm

    model = jaxsm.load(args.dir, tags=_parse_tag_set(args.tag_set) if args.tag_set else None)
    signature = model.signatures[args.signature_def]
    outputs = signature(**_parse_inputs(args))
    for key in sorted(outputs):
        value = np.asarray(outputs[key])
        if args.outdir:
            Path(args.outdir).mkdir(parents=True, exist_ok=True)
            np.save(Path(args.outdir) / f"{key}.npy", value)
            print(f"{key}: saved {value.dtype} {value.shape} to {Path(args.outdir) / (key + '.npy')}")
        else:
            print(f"Result for output key {key}:")
            print(value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
