"""Functional control flow: If/Case -> Python branch or lax.switch; While -> lax.scan or lax.while_loop.

Variable state (the interpreter's state dict) is threaded through every branch and loop iteration, so
assignments inside them are kept (DESIGN principle 3). Loops whose trip count is known at trace time run as
``lax.scan`` so they are reverse-mode differentiable (principle 8).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jaxsm import dtypes
from jaxsm.compile import OP_BY_OP
from jaxsm.errors import StaticValueError
from jaxsm.graph.interpreter import Interpreter, OpContext
from jaxsm.graph.library import Dependencies, output_dependencies, passed_through
from jaxsm.graph.staging import SEEN_ONCE, host, numeric, program_key, wide
from jaxsm.graph.tensor_list import TensorList
from jaxsm.graph.values import OptionalValue, is_array, to_static
from jaxsm.ops.registry import op

_MAX_STATIC_TRIPS = 100_000  # beyond this a loop is not unrolled at trace time to find its trip count
_MAX_UNROLL = 256  # a static-trip loop whose body needs static counters is unrolled up to this many steps


def _is_carry(v: Any) -> bool:
    return isinstance(v, (np.ndarray, np.generic, jax.Array, TensorList)) or isinstance(v, jax.core.Tracer)


def _as_jax(v: Any) -> Any:
    if isinstance(v, TensorList | OptionalValue):
        return v
    if isinstance(v, np.ndarray) and v.dtype == object:  # XLA has no strings: run op by op (a Python loop)
        raise StaticValueError("a string loop variable that changes at run time cannot be compiled")
    return jnp.asarray(v)


def _run_with_state(
    interp: Interpreter, fname: str, args: list[Any], state: dict, asserts: list[Any] | None = None
) -> tuple[list[Any], dict]:
    """Call ``fname`` with ``state`` as the variable state; returns (outputs, resulting state). The body's
    run-time Assert conditions go to ``asserts`` (its traced values cannot join the caller's list)."""
    saved, saved_asserts = interp.state, interp.run_time_asserts
    interp.state, interp.run_time_asserts = dict(state), asserts
    try:
        outs = interp.call(fname, args)
        return outs, interp.state
    finally:
        interp.state, interp.run_time_asserts = saved, saved_asserts


def _note_assigned(assigned: set, state: dict, new_state: dict) -> None:
    """Add to ``assigned`` the variables a loop body or branch assigned (a new value). The others come back from
    lax.while_loop/scan/switch as new traced values too, but must stay the caller's own: inside the user's
    jax.jit they would count as assignments of a read-only function (VariableError)."""
    assigned.update(k for k in state if new_state[k] is not state[k])


def _slotted(o: Any, k: int, layout: list | None) -> Any:
    """Output ``o`` of branch ``k`` as lax.switch needs it when the branches put optionals of different shapes at
    its position (``layout``: each branch's value shapes there, or None): one slot per branch."""
    if layout is None or not isinstance(o, OptionalValue):
        return o
    slots = []
    for j, shapes in enumerate(layout):
        if shapes is None:
            continue
        mine = j == k and o.values is not None
        values = o.values if mine else tuple(jnp.zeros(s.shape, s.dtype) for s in shapes)
        slots.append((jnp.asarray(o.has_value if mine else False), tuple(jnp.asarray(v) for v in values)))
    return OptionalValue(jnp.asarray(o.has_value), None, tuple(slots))


@op("OptionalFromValue")
def optional_from_value(ctx, *components):
    return OptionalValue(np.asarray(True), tuple(components))


@op("OptionalNone")
def optional_none(ctx):
    return OptionalValue(np.asarray(False), None)


@op("OptionalHasValue")
def optional_has_value(ctx, optional):
    return optional.has_value


@op("OptionalGetValue")
def optional_get_value(ctx, optional):
    known = to_static(optional.has_value)
    if known is not None and not bool(known):
        raise ctx.error("OptionalGetValue of an optional with no value")
    if optional.slots is None:
        if optional.values is None:
            raise ctx.error("OptionalGetValue of an optional with no value")
        return list(optional.values)
    # Out of a run-time branch: the slots whose shapes are the ones asked for; of several, the one that was set.
    types = [dtypes.to_numpy(t) for t in ctx.attr("output_types")]
    want = list(zip(types, ctx.attr("output_shapes"), strict=True))

    def fits(values: tuple) -> bool:
        return len(values) == len(want) and all(
            np.dtype(v.dtype) == np.dtype(t)
            and (s is None or (len(v.shape) == len(s) and all(d is None or d == n for d, n in zip(s, v.shape))))
            for v, (t, s) in zip(values, want)
        )

    found = [(flag, values) for flag, values in optional.slots if fits(values)]
    if not found:
        raise ctx.error(f"no branch gave this optional values of types/shapes {want}")
    values = found[0][1]
    for flag, other in found[1:]:
        values = tuple(jnp.where(flag, o, v) for o, v in zip(other, values, strict=True))
    return list(values)


def _all_held(asserts: list[Any]) -> Any:
    return jnp.all(jnp.stack(asserts)) if asserts else jnp.asarray(True)


def _switch(ctx: OpContext, index: Any, branches: list[str], args: list[Any]) -> list[Any]:
    """Run ``branches[index]`` on ``args`` with lax.switch, threading variable state through every branch."""
    interp = ctx.interp
    state0 = dict(interp.state)
    assigned: set = set()

    layouts: dict[int, list] = {}

    def make(fname, k, slotted=True):
        def branch():
            asserts: list[Any] = []  # (TF's Assert wrapper puts the Assert in a cond's branch)
            outs, state = _run_with_state(interp, fname, args, state0, asserts)
            _note_assigned(assigned, state0, state)
            if set(state) != set(state0):
                raise ctx.error(
                    f"branch '{fname}' creates variables {sorted(set(state) - set(state0))} that the other "
                    "branches do not; jaxsm needs every variable to exist before a run-time branch"
                )
            if slotted:
                outs = [_slotted(o, k, layouts.get(i)) for i, o in enumerate(outs)]
            return [_as_jax(o) for o in outs], {k: jnp.asarray(state[k]) for k in state0}, _all_held(asserts)

        return branch

    if any(n.op.startswith("Optional") for b in branches for n in ctx.library.body(b).nodes):
        # cond_v2's gradient intermediates: find the shapes each branch gives its optionals (see OptionalValue)
        for k, b in enumerate(branches):
            for i, o in enumerate(jax.eval_shape(make(b, k, slotted=False))[0]):
                if isinstance(o, OptionalValue):
                    layouts.setdefault(i, [None] * len(branches))[k] = o.values
    try:
        outs, state, held = lax.switch(index, [make(b, k) for k, b in enumerate(branches)])
    except TypeError as e:  # (errors inside a branch arrive as JaxsmErrors: this is lax.switch's own check)
        raise ctx.error(
            f"the branches return values of different shapes or dtypes, so the branch must be known at trace time "
            f"({str(e).splitlines()[0]})",
            StaticValueError,
        ) from None
    interp.state.update({k: v for k, v in state.items() if k in assigned})
    if interp.run_time_asserts is not None:
        interp.run_time_asserts.append(held)
    return outs


def _check_branches(ctx: OpContext, branches: list[str]) -> None:
    """TF refuses (when it builds the call) a branch whose outputs disagree with the node's ``Tout``: a malformed
    FunctionDef gets an error naming the node, whichever branch runs, instead of other dtypes downstream."""
    tout = [dtypes.base_enum(t) for t in ctx.attr("Tout", [])]
    for fname in branches:
        outs = ctx.library.function_def(fname).signature.output_arg
        if any(a.number_attr or a.type_list_attr for a in outs):
            continue
        if len(outs) < len(tout):
            raise ctx.error(f"branch '{fname}' returns {len(outs)} values, but the node's Tout lists {len(tout)}")
        for i, (a, t) in enumerate(zip(outs, tout)):
            if a.type and dtypes.base_enum(a.type) != t:
                raise ctx.error(
                    f"output {i} of branch '{fname}' is {dtypes.name(a.type)}, but the node's Tout says "
                    f"{dtypes.name(t)}"
                )


@op("If", "StatelessIf", stateful=True)
def if_(ctx, cond, *args):
    then_b, else_b = ctx.attr("then_branch").name, ctx.attr("else_branch").name
    _check_branches(ctx, [then_b, else_b])
    c = to_static(cond)
    if c is not None:
        # TF: a non-scalar predicate is true when it is non-empty.
        taken = bool(c) if c.ndim == 0 else c.size > 0
        return ctx.call(then_b if taken else else_b, args)
    pred = jnp.asarray(cond)
    if pred.ndim:
        raise ctx.error("a run-time If predicate must be a scalar")
    return _switch(ctx, jnp.where(pred.astype(bool), 0, 1), [then_b, else_b], list(args))


@op("Case", "StatelessCase", stateful=True)
def case(ctx, branch_index, *args):
    branches = [f.name for f in ctx.attr("branches")]
    _check_branches(ctx, branches)
    n = len(branches)
    i = to_static(branch_index)
    if i is not None:
        i = int(i)
        return ctx.call(branches[i if 0 <= i < n else n - 1], args)  # TF runs the last branch when out of range
    i = jnp.asarray(branch_index)
    return _switch(ctx, jnp.where((i < 0) | (i >= n), n - 1, i), branches, list(args))


# -- While ---------------------------------------------------------------------------------------------------
def _static_schedule(ctx: OpContext, cond: str, body: str, init: list[Any]) -> tuple[set[int], list[dict]] | None:
    """Find loop variables computable at trace time and, from them, the trip count.

    Returns (static positions, the static values at the start of each iteration plus the final ones), or None
    when the condition depends on run-time values. Only the slices of cond/body that compute those variables are
    evaluated, in NumPy, so a Keras RNN loop of T steps costs a few tiny ops per step to schedule. The slices may
    also read the shapes of traced loop variables that the body passes through unchanged (``i < tf.shape(x)[0]``
    with ``x`` captured): they get zero-strided NumPy stand-ins of those shapes.
    """
    lib = ctx.library
    bbody = lib.body(body)
    static = {i for i, v in enumerate(init) if isinstance(v, np.ndarray)}
    if not static:
        return None
    # (a symbolic dimension, under jax.export's shape polymorphism, is not known at trace time)
    invariant = {i for i in passed_through(bbody) if i < len(init) and _known_shape(init[i])}
    body_deps = output_dependencies(lib, bbody)

    def computable(d: Dependencies) -> bool:
        return d.values <= static and d.shapes <= static | invariant

    while True:
        keep = {i for i in static if i < len(body_deps) and computable(body_deps[i])}
        if keep == static:
            break
        static = keep
    if not static or not computable(output_dependencies(lib, lib.body(cond))[0]):
        return None
    order = tuple(sorted(static))
    cslice = lib.sliced_body(cond, (0,))
    bslice = lib.sliced_body(body, order)
    interp = Interpreter(lib)
    stand_ins = {i: _shape_stand_in(init[i]) for i in invariant - static}
    values = {i: init[i] for i in order}
    schedule = [values]
    for _ in range(_MAX_STATIC_TRIPS):
        args = [values.get(i, stand_ins.get(i)) for i in range(len(init))]
        c = to_static(_predicate(ctx, cond, interp.run(cslice, args)[0]))
        if c is None:
            return None
        if not bool(c):
            return static, schedule
        outs = interp.run(bslice, args)
        if not all(isinstance(o, np.ndarray) for o in outs):
            return None
        values = dict(zip(order, outs))
        schedule.append(values)
    return None


def _known_shape(x: Any) -> bool:
    return is_array(x) and all(isinstance(d, int) for d in x.shape)


def _shape_stand_in(x: Any) -> np.ndarray:
    """A read-only NumPy array of ``x``'s shape and dtype that takes no memory (only its shape is read)."""
    return np.broadcast_to(np.zeros((), np.dtype(x.dtype)), tuple(x.shape))


def _materialize_lists(ctx: OpContext, body: str, vars_: list[Any]) -> list[Any]:
    """Allocate TensorLists whose element shape is still unknown by tracing one body iteration abstractly."""
    pending = [i for i, v in enumerate(vars_) if isinstance(v, TensorList) and v.items is None]
    if not pending:
        return vars_
    interp = ctx.interp
    state = dict(interp.state)

    def one_step():
        outs, _ = _run_with_state(interp, body, list(vars_), state)
        return [outs[i] for i in pending]

    shapes = jax.eval_shape(one_step)
    out = list(vars_)
    for i, s in zip(pending, shapes):
        lst = vars_[i]
        if not isinstance(s, TensorList) or s.items is None:
            raise ctx.error("cannot determine the element shape of a TensorList carried by this loop")
        cap = lst.capacity if lst.capacity is not None else s.items.shape[0]
        out[i] = TensorList(
            jnp.zeros((cap,) + tuple(s.items.shape[1:]), s.items.dtype),
            lst.length,
            lst.element_dtype,
            lst.element_shape,
            cap,
        )
    return out


_RESIZING_OPS = frozenset({"TensorListPushBack", "TensorListPopBack", "TensorListPushBackBatch"})


def _resizing_lists(
    ctx: OpContext, body: str, vars_: list[Any], carried: list[int], per_step: list[int], trips: int
) -> dict[int, int]:
    """TensorLists whose length one body iteration changes by a fixed amount (TF's gradient accumulators:
    TensorListPushBack in a forward loop, TensorListPopBack in its gradient loop) are carried with a traced length
    in an array of the largest size they reach; ``vars_`` is updated in place. ``per_step`` are the loop variables
    that the scan feeds per iteration (traced in the body, so traced here too). A list that receives the same
    trace-time value in every iteration keeps it as ``every_item``. Returns the lists' lengths after ``trips``
    iterations."""
    lists = [i for i in carried if isinstance(vars_[i], TensorList) and isinstance(vars_[i].length, (int, np.integer))]
    if not lists or not _RESIZING_OPS & {n.op for n in ctx.library.body(body).nodes}:
        return {}  # the common case costs no extra trace of the body
    interp, state = ctx.interp, dict(ctx.interp.state)

    def one_step(fed):
        args = list(vars_)
        for i, v in fed.items():
            args[i] = v
        outs, _ = _run_with_state(interp, body, args, state)
        return [outs[i] for i in lists]

    final: dict[int, int] = {}
    for i, s in zip(lists, jax.eval_shape(one_step, {i: vars_[i] for i in per_step})):
        lst = vars_[i]
        if not isinstance(s, TensorList) or not isinstance(s.length, (int, np.integer)) or s.length == lst.length:
            continue
        step = int(s.length) - int(lst.length)
        final[i] = int(lst.length) + step * trips
        if final[i] < 0:
            raise ctx.error(f"loop variable {i}: popping {-step * trips} elements from a TensorList of {lst.length}")
        capacity = max(int(lst.length), final[i])
        items = jnp.zeros((capacity,) + tuple(s.items.shape[1:]), s.items.dtype)
        if lst.items is not None and lst.length:
            items = items.at[: lst.length].set(lst.items[: lst.length])
        every = s.every_item if (lst.length == 0 or lst.every_item == s.every_item) else None
        length = jnp.asarray(lst.length, jnp.int32)
        vars_[i] = TensorList(items, length, lst.element_dtype, lst.element_shape, capacity, every)
    return final


def _fit(new: Any, old: Any, ctx: OpContext, what: str) -> Any:
    """Cast a loop body's output to the carried value's dtype (TF keeps loop-var dtypes fixed)."""
    if isinstance(old, TensorList):
        if not isinstance(new, TensorList) or new.items is None:
            raise ctx.error(f"{what}: the loop body changed a TensorList's structure")
        static = isinstance(old.length, (int, np.integer))
        if static and not (isinstance(new.length, (int, np.integer)) and new.length == old.length):
            raise ctx.error(
                f"{what}: a TensorList grows or shrinks in a loop whose trip count is known only at run time "
                "(or by a varying amount per iteration); jaxsm preallocates lists",
                StaticValueError,
            )
        if new.every_item != old.every_item:
            raise ctx.error(f"{what}: a TensorList's trace-time elements differ between iterations", StaticValueError)
        return TensorList(
            new.items.astype(old.items.dtype),
            old.length if static else jnp.asarray(new.length, jnp.int32),
            old.element_dtype,
            old.element_shape,
            old.capacity,
            old.every_item,
        )
    new = jnp.asarray(new, dtype=old.dtype)
    if new.shape != old.shape:
        raise ctx.error(
            f"{what}: loop variable changes shape from {old.shape} to {new.shape}; XLA loops need fixed shapes "
            "(TF shape_invariants with None dims): a call runs such a function op by op",
            StaticValueError,
        )
    return new


@op("While", "StatelessWhile", stateful=True)
def while_(ctx, *args):
    cond, body = ctx.attr("cond").name, ctx.attr("body").name
    init = list(args)
    _check_loop_functions(ctx, cond, body, len(init))
    if OP_BY_OP.get() and not any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves((init, ctx.interp.state))):
        # Running op by op (string inputs, data-dependent shapes: jaxsm/compile.py): the loop is still one XLA
        # program where it compiles, else a Python loop, like TF eager (loop variables may change shape).
        compiled = _compiled_loop_op_by_op(ctx, cond, body, init)
        if compiled is not None:
            return compiled
        while bool(np.asarray(_predicate(ctx, cond, ctx.call(cond, init)[0]))):
            init = ctx.call(body, init)
        return init
    return _compiled_while(ctx, cond, body, init)


def _check_loop_functions(ctx: OpContext, cond: str, body: str, n: int) -> None:
    """TF refuses (when it builds the call) a loop whose body does not return its n loop variables with their
    types ``T``, or whose condition does not return a bool: a malformed FunctionDef gets an error naming the node
    here instead of a failure deep in the lowering."""
    types = [dtypes.base_enum(t) for t in ctx.attr("T", [])]
    csig, bsig = ctx.library.function_def(cond).signature, ctx.library.function_def(body).signature
    for fname, sig in ((cond, csig), (body, bsig)):
        if len(sig.input_arg) != n:
            raise ctx.error(f"the loop function '{fname}' takes {len(sig.input_arg)} inputs for {n} loop variables")
    if not csig.output_arg or csig.output_arg[0].type not in (dtypes.DT.DT_INVALID, dtypes.DT.DT_BOOL):
        got = dtypes.name(csig.output_arg[0].type) if csig.output_arg else "nothing"
        raise ctx.error(f"the loop condition '{cond}' returns {got}; TF needs a scalar bool")
    if any(a.number_attr or a.type_list_attr for a in bsig.output_arg):
        return
    if len(bsig.output_arg) < n:
        raise ctx.error(f"the loop body '{body}' returns {len(bsig.output_arg)} values for {n} loop variables")
    for i, (a, t) in enumerate(zip(bsig.output_arg, types)):
        if a.type and dtypes.base_enum(a.type) != t:
            raise ctx.error(
                f"output {i} of the loop body '{body}' is {dtypes.name(a.type)}, but loop variable {i} is "
                f"{dtypes.name(t)} (the node's T)"
            )


def _predicate(ctx: OpContext, cond: str, value: Any) -> Any:
    """A loop condition's result, which TF needs to be a scalar bool (LoopCond's input)."""
    dtype = np.dtype(value.dtype) if hasattr(value, "dtype") else np.asarray(value).dtype
    if np.shape(value) != () or dtype != np.bool_:
        raise ctx.error(
            f"the loop condition '{cond}' returns a {dtype} tensor of shape {list(np.shape(value))}; TF needs a "
            "scalar bool"
        )
    return value


def _compiled_while(ctx: OpContext, cond: str, body: str, init: list[Any]) -> list[Any]:
    schedule = _static_schedule(ctx, cond, body, init)
    carried = [i for i, v in enumerate(init) if _is_carry(v)]
    if schedule is not None:
        static, steps = schedule
        trips = len(steps) - 1
        if trips == 0:
            return init
        dynamic = [i for i in carried if i not in static]
        try:
            return _scan_loop(ctx, body, init, static, steps, dynamic)
        except StaticValueError:
            if trips > _MAX_UNROLL:
                raise
            return _unrolled_loop(ctx, body, init, trips)
    return _while_loop(ctx, cond, body, init, carried)


# Ops a loop run op by op must meet in Python, at every iteration: host side effects.
_HOST_EFFECTS = frozenset({"PrintV2", "Print", "WriteFile", "Abort"})
_NOT_COMPILED = object()  # a loop_cache entry: this loop's compiled trace failed for these inputs
_WITH_SCALARS = object()  # a loop_cache entry: this loop compiles only with its integer scalars as values
_MAX_LOOP_PROGRAMS = 256


def _compiled_loop_op_by_op(ctx: OpContext, cond: str, body: str, init: list[Any]) -> list[Any] | None:
    """A While met while a call runs op by op (a Keras LSTM after a TextVectorization: strings make the whole
    call run op by op), run as one jitted XLA program -- the lowering a compiled call gives it -- instead of a
    Python loop dispatching every op of every iteration. Compiled when the same input shapes come a second time
    (shapes that vary call by call never compile), cached in the library per loop and input shapes, with
    non-array values (handles, string tables) as trace-time values; arrays are the program's arguments, or, where
    that does not trace (a counter used as a shape, a list grown by a trip count), integer scalars are trace-time
    values too, one program per value. None -- run the Python loop -- when the loop has host side effects, it does
    not trace either way (loop variables that change shape, stacks) or one of its run-time Asserts failed (the
    Python loop then raises it, with its data)."""
    library, interp = ctx.library, ctx.interp
    effects = library.loop_cache.get((cond, body))
    if effects is None:
        if len(library.loop_cache) > _MAX_LOOP_PROGRAMS:
            library.loop_cache.clear()
        effects = library.loop_cache[(cond, body)] = bool(_HOST_EFFECTS & set(library.scan_ops([cond, body])))
    if effects:
        return None
    leaves, treedef = jax.tree.flatten((init, interp.state))
    if not jax.config.jax_enable_x64 and any(wide(x) for x in leaves):
        return None
    base = program_key((cond, body, treedef), leaves)
    if library.loop_cache.get(base) is not _WITH_SCALARS:
        outs = _run_loop_program(ctx, base, treedef, leaves, scalars=False)
        if outs is not _WITH_SCALARS:
            return outs
    scalars = tuple((i, x.dtype.str, x.tobytes()) for i, x in enumerate(leaves) if _int_scalar(x))
    return _run_loop_program(ctx, (base, scalars), treedef, leaves, scalars=True)


def _int_scalar(x: Any) -> bool:
    """A NumPy integer scalar: a trip count or counter, a trace-time value in a compiled call."""
    return isinstance(x, (np.ndarray, np.generic)) and x.dtype.kind in "biu" and x.ndim == 0


def _run_loop_program(ctx: OpContext, key: Any, treedef: Any, leaves: list[Any], scalars: bool) -> Any:
    library = ctx.library
    try:
        entry = library.loop_cache.get(key)
    except TypeError:  # an unhashable leaf value
        return None
    if entry is _NOT_COMPILED:
        return None
    if entry is None:  # compiled when the same inputs come again: shapes that vary call by call never compile
        library.loop_cache[key] = SEEN_ONCE
        return None
    if entry is SEEN_ONCE:
        dynamic = [i for i, x in enumerate(leaves) if numeric(x) and not (scalars and _int_scalar(x))]
        entry = library.loop_cache[key] = _LoopProgram(ctx.attr("cond").name, ctx.attr("body").name, treedef, dynamic)
        entry.keep = [leaf for i, leaf in enumerate(leaves) if i not in dynamic]  # (ids in the key stay unique)
    try:
        outs, changed = entry(ctx, leaves)
    except Exception:  # noqa: BLE001 -- whatever fails compiled runs as a Python loop, which raises TF's errors
        library.loop_cache[key] = _NOT_COMPILED if scalars else _WITH_SCALARS
        return None if scalars else _WITH_SCALARS
    if outs is None:
        return None
    ctx.interp.state.update(changed)
    return outs


class _LoopProgram:
    """One loop's jitted lowering for one set of input shapes and trace-time values (see
    :func:`_compiled_loop_op_by_op`). The caller's interpreter is given at each call, never kept."""

    def __init__(self, cond: str, body: str, treedef: Any, dynamic: list[int]):
        self.cond, self.body, self.treedef, self.dynamic = cond, body, treedef, dynamic
        self.env: dict[str, Any] = {}
        self.out: tuple[Any, list[Any], list[int]] | None = None  # output tree, trace-time outputs, array slots
        self.jitted = jax.jit(self._trace)

    def _trace(self, args: list[Any]) -> tuple[list[Any], Any]:
        ctx, leaves = self.env["ctx"], list(self.env["leaves"])
        for i, a in zip(self.dynamic, args):
            leaves[i] = a
        init, state = jax.tree.unflatten(self.treedef, leaves)
        interp = ctx.interp
        saved = interp.state, interp.run_time_asserts
        # (host values -- a string table's keys -- cannot be carried; a body that needs one fails to trace)
        carried = {k: v for k, v in state.items() if not host(v)}
        interp.state, interp.run_time_asserts = carried, []
        token = OP_BY_OP.set(False)
        try:
            outs = _compiled_while(ctx, self.cond, self.body, list(init))
            new_state, asserts = interp.state, interp.run_time_asserts
        finally:
            OP_BY_OP.reset(token)
            interp.state, interp.run_time_asserts = saved
        changed = {k: v for k, v in new_state.items() if k not in state or v is not state[k]}
        flat, tree = jax.tree.flatten((outs, changed))
        slots = [j for j, leaf in enumerate(flat) if isinstance(leaf, jax.core.Tracer)]
        self.out = (tree, [None if j in slots else leaf for j, leaf in enumerate(flat)], slots)
        held = jnp.all(jnp.stack([jnp.asarray(a, bool).reshape(()) for a in asserts])) if asserts else True
        return [flat[j] for j in slots], held

    def __call__(self, ctx: OpContext, leaves: list[Any]) -> tuple[list[Any] | None, dict]:
        self.env.update(ctx=ctx, leaves=leaves)
        try:
            arrays, held = self.jitted([jnp.asarray(leaves[i]) for i in self.dynamic])
        finally:
            self.env.clear()
        if not bool(held):
            return None, {}
        tree, flat, slots = self.out
        flat = list(flat)
        for j, a in zip(slots, arrays):
            flat[j] = a
        outs, changed = jax.tree.unflatten(tree, flat)
        return list(outs), changed


def _unrolled_loop(ctx: OpContext, body: str, init: list[Any], trips: int) -> list[Any]:
    vars_ = list(init)
    for _ in range(trips):
        vars_ = ctx.call(body, vars_)
    return vars_


def _scan_loop(ctx, body, init, static, steps, dynamic):
    interp = ctx.interp
    order = sorted(static)
    trips = len(steps) - 1
    if any(len({steps[t][i].shape for t in range(trips)}) > 1 for i in order):
        raise ctx.error("a trace-time loop variable changes shape, so the loop is unrolled", StaticValueError)
    xs = {i: np.stack([steps[t][i] for t in range(trips)]) for i in order}
    if any(x.dtype == object for x in xs.values()):  # (strings cannot be scanned over)
        raise ctx.error("a string loop variable cannot be scanned over, so the loop is unrolled", StaticValueError)
    vars0 = _materialize_lists(ctx, body, [_as_jax(v) if i in dynamic else v for i, v in enumerate(init)])
    resized = _resizing_lists(ctx, body, vars0, dynamic, order, trips)
    carry0 = ([vars0[i] for i in dynamic], dict(interp.state), jnp.asarray(True))
    asserts = _LoopAsserts(interp)
    assigned: set = set()

    def step(carry, x):
        dyn, state, held = carry
        full = list(vars0)
        for i in order:
            full[i] = x[i]
        for i, v in zip(dynamic, dyn):
            full[i] = v
        outs, new_state = _run_with_state(interp, body, full, state, asserts.fresh())
        _note_assigned(assigned, state, new_state)
        new_dyn = [_fit(outs[i], old, ctx, f"loop variable {i}") for i, old in zip(dynamic, dyn)]
        if set(new_state) != set(state):  # (they would be lost: the scan carries the state it started with)
            raise ctx.error("the loop body creates state (variables, stacks), so it runs op by op", StaticValueError)
        return (
            new_dyn,
            {k: jnp.asarray(new_state[k], dtype=jnp.asarray(state[k]).dtype) for k in state},
            asserts.held(held),
        ), None

    (dyn, state, held), _ = lax.scan(step, carry0, xs, length=trips)
    interp.state.update({k: v for k, v in state.items() if k in assigned})
    asserts.report(held)
    result = list(init)
    for i in order:
        result[i] = steps[-1][i]
    for i, v in zip(dynamic, dyn):
        result[i] = v
    for i, n in resized.items():  # the length after the loop is known: back to a static length
        lst = result[i]
        result[i] = TensorList(lst.items[:n], n, lst.element_dtype, lst.element_shape, n, lst.every_item)
    return result


def _while_loop(ctx, cond, body, init, carried):
    interp = ctx.interp
    # A trace-time value the body passes through unchanged (a captured tf.shape(x)[1] read by tf.range in the
    # body) keeps its value in every iteration: it stays a constant instead of becoming a run-time carry.
    fixed = passed_through(ctx.library.body(body))
    carried = [i for i in carried if not (i in fixed and isinstance(init[i], (np.ndarray, np.generic)))]
    vars0 = _materialize_lists(ctx, body, [_as_jax(v) if i in carried else v for i, v in enumerate(init)])
    carry0 = ([vars0[i] for i in carried], dict(interp.state), jnp.asarray(True))
    asserts = _LoopAsserts(interp)
    assigned: set = set()

    def full_vars(dyn):
        full = list(vars0)
        for i, v in zip(carried, dyn):
            full[i] = v
        return full

    def cond_fn(carry):
        dyn, state, _ = carry
        outs, _ = _run_with_state(interp, cond, full_vars(dyn), state)
        return jnp.asarray(_predicate(ctx, cond, outs[0]))

    def body_fn(carry):
        dyn, state, held = carry
        outs, new_state = _run_with_state(interp, body, full_vars(dyn), state, asserts.fresh())
        _note_assigned(assigned, state, new_state)
        new_dyn = [_fit(outs[i], old, ctx, f"loop variable {i}") for i, old in zip(carried, dyn)]
        if set(new_state) != set(state):
            raise ctx.error("the loop body creates state (variables, stacks), so it runs op by op", StaticValueError)
        state = {k: jnp.asarray(new_state[k], dtype=jnp.asarray(state[k]).dtype) for k in state}
        return new_dyn, state, asserts.held(held)

    dyn, state, held = _forward_only(ctx, lax.while_loop(cond_fn, body_fn, carry0))
    interp.state.update({k: v for k, v in state.items() if k in assigned})
    asserts.report(held)
    return full_vars(dyn)


def _reject_transpose(ct: Any, x: Any, *, message: str) -> None:
    raise StaticValueError(message)


# An identity on a run-time loop's results whose transpose raises: reverse-mode autodiff reaches it before the
# lax.while_loop, so jax.grad fails with a jaxsm error naming the loop instead of JAX's. Forward mode, vmap and
# compilation see a plain identity.
_forward_only_p = Primitive("jaxsm_forward_only")
_forward_only_p.def_impl(lambda x, *, message: x)
_forward_only_p.def_abstract_eval(lambda x, *, message: x)
ad.deflinear2(_forward_only_p, _reject_transpose)
batching.defvectorized(_forward_only_p)
mlir.register_lowering(_forward_only_p, mlir.lower_fun(lambda x, *, message: x, multiple_results=False))


def _forward_only(ctx: OpContext, results: Any) -> Any:
    message = (
        f"while lowering {ctx.node.where()}: jax.grad cannot differentiate this loop in reverse mode: its trip "
        "count depends on run-time values (not on constants or input shapes), so it runs as lax.while_loop. Make "
        "the trip count known at trace time (e.g. a Python/NumPy value passed to the jitted function as static, "
        "or derived from an input's shape) or use forward mode (jax.jvp, jax.jacfwd)"
    )

    def guard(x: Any) -> Any:
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.inexact):
            return _forward_only_p.bind(x, message=message)
        return x

    return jax.tree.map(guard, results)


class _LoopAsserts:
    """The run-time Asserts of a compiled loop's body: their conditions cannot leave the body, so the loop carries
    whether all of them held in every iteration and reports that to the caller's list (jaxsm/ops/core.py). A
    body without Asserts reports nothing (the flag stays a constant that XLA drops)."""

    def __init__(self, interp: Any):
        self.tracked = interp.run_time_asserts is not None
        self.caller = interp
        self.current: list[Any] | None = None
        self.seen = False

    def fresh(self) -> list[Any] | None:
        self.current = [] if self.tracked else None
        return self.current

    def held(self, held: Any) -> Any:
        if not self.current:
            return held
        self.seen = True
        return held & _all_held(self.current)

    def report(self, held: Any) -> None:
        if self.seen and self.caller.run_time_asserts is not None:
            self.caller.run_time_asserts.append(held)


@op("For", stateful=True)
def for_(ctx, start, limit, delta, *args):
    s, l, d = (int(ctx.static(v, n)) for v, n in ((start, "start"), (limit, "limit"), (delta, "delta")))
    fname = ctx.attr("body").name
    vars_ = list(args)
    for i in range(s, l, d):
        vars_ = ctx.call(fname, [np.asarray(i, np.int32)] + vars_)
    return vars_


@op("SymbolicGradient")
def symbolic_gradient(ctx, *args):
    """TF1's gradient of a library function (``tf.gradients`` through a ``Defun`` call): the inputs are f's inputs
    then the gradients of f's outputs, the outputs the gradients of f's inputs -- jax.vjp of f's lowering.
    Integer inputs get zero gradients, integer outputs take no gradient (as in TF)."""
    n = len(ctx.attr("Tout"))
    xs, dys = list(args[:n]), args[n:]
    wrt = [i for i, x in enumerate(xs) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]

    def f(*values):
        full = list(xs)
        for i, v in zip(wrt, values, strict=True):
            full[i] = v
        return ctx.call(ctx.attr("f").name, full)

    outs, vjp = jax.vjp(f, *[jnp.asarray(xs[i]) for i in wrt])
    cotangents = [
        jnp.asarray(dy, o.dtype) if jnp.issubdtype(o.dtype, jnp.inexact) else np.zeros(o.shape, jax.dtypes.float0)
        for o, dy in zip(outs, dys, strict=True)
    ]
    grads = dict(zip(wrt, vjp(cotangents), strict=True))
    return [grads[i] if i in grads else jnp.zeros_like(x) for i, x in enumerate(xs)]
