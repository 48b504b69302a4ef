"""TF1 training graphs on ref variables (VariableV2) against TF running the same graph in a tf.compat.v1 Session:
the Apply*/SparseApply* optimizer ops (from tf.compat.v1.train optimizers and as raw ops), compared variable by
variable and slot by slot after every step; the stacks of v1 while-loop gradients (StackV2...); accumulate_n's
AccumulateNV2 and TemporaryVariable/DestroyTemporaryVariable; RefSelect."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest

import jaxsm
from jaxsm.errors import EagerFallbackWarning, JaxsmError, StaticValueError
from tests.tfcompare import assert_close, v1_graph

tf = pytest.importorskip("tensorflow")
tf1 = tf.compat.v1

STEPS = 2


def save(sess, export_dir) -> str:
    builder = tf1.saved_model.Builder(str(export_dir))
    builder.add_meta_graph_and_variables(sess, ["train"])
    builder.save()
    return str(export_dir)


class Stepper:
    """Runs ``model.prune(feeds, fetches)`` step after step, jitted (the model's own call, which writes the
    variables back) or as the unjitted pure function with the state threaded by hand."""

    def __init__(self, model, feeds: list[str], fetches, jit: bool):
        self.model, self.jit = model, jit
        self.fn = model.prune(feeds, fetches)
        self.state = {v.key: v.value() for v in model.variables}

    def __call__(self, *feeds):
        if self.jit:
            return self.fn(*feeds)
        flat, updated = self.fn.pure()(self.state, [np.asarray(x) for x in feeds])
        self.state.update(updated)
        return flat

    def variables(self) -> dict[str, np.ndarray]:
        if self.jit:
            return {v.name: np.asarray(v.numpy()) for v in self.model.variables}
        return {v.name: np.asarray(self.state[v.key]) for v in self.model.variables}


# -- tf.compat.v1.train optimizers ---------------------------------------------------------------------------
# name -> (optimizer factory given the global step, the fused ops its minimize() emits for the dense variables and
# for the embedding's IndexedSlices gradient)
OPTIMIZERS = {
    "GradientDescent": (lambda gs: tf1.train.GradientDescentOptimizer(0.1), {"ApplyGradientDescent"}),
    "Momentum": (lambda gs: tf1.train.MomentumOptimizer(0.1, 0.9), {"ApplyMomentum", "SparseApplyMomentum"}),
    "Momentum-nesterov": (
        lambda gs: tf1.train.MomentumOptimizer(0.05, 0.9, use_nesterov=True),
        {"ApplyMomentum", "SparseApplyMomentum"},
    ),
    "Adam": (lambda gs: tf1.train.AdamOptimizer(0.05), {"ApplyAdam"}),
    "Adagrad": (lambda gs: tf1.train.AdagradOptimizer(0.1), {"ApplyAdagrad", "SparseApplyAdagrad"}),
    "AdagradDA": (
        lambda gs: tf1.train.AdagradDAOptimizer(
            0.1, gs, l1_regularization_strength=0.01, l2_regularization_strength=0.02
        ),
        {"ApplyAdagradDA", "SparseApplyAdagradDA"},
    ),
    "RMSProp": (
        lambda gs: tf1.train.RMSPropOptimizer(0.01, momentum=0.5),
        {"ApplyRMSProp", "SparseApplyRMSProp"},
    ),
    "RMSProp-centered": (
        lambda gs: tf1.train.RMSPropOptimizer(0.01, momentum=0.5, centered=True),
        {"ApplyCenteredRMSProp", "SparseApplyCenteredRMSProp"},
    ),
    "Adadelta": (lambda gs: tf1.train.AdadeltaOptimizer(1.0), {"ApplyAdadelta", "SparseApplyAdadelta"}),
    "Ftrl": (
        lambda gs: tf1.train.FtrlOptimizer(0.1, l1_regularization_strength=0.01, l2_regularization_strength=0.02),
        {"ApplyFtrl", "SparseApplyFtrl"},
    ),
    "FtrlV2": (
        lambda gs: tf1.train.FtrlOptimizer(
            0.1, l1_regularization_strength=0.01, l2_shrinkage_regularization_strength=0.05
        ),
        {"ApplyFtrlV2", "SparseApplyFtrlV2"},
    ),
    "ProximalAdagrad": (
        lambda gs: tf1.train.ProximalAdagradOptimizer(
            0.1, l1_regularization_strength=0.01, l2_regularization_strength=0.02
        ),
        {"ApplyProximalAdagrad", "SparseApplyProximalAdagrad"},
    ),
    "ProximalGradientDescent": (
        lambda gs: tf1.train.ProximalGradientDescentOptimizer(
            0.1, l1_regularization_strength=0.01, l2_regularization_strength=0.02
        ),
        {"ApplyProximalGradientDescent", "SparseApplyProximalGradientDescent"},
    ),
}

# variable dtype, embedding id dtype, jit: alternating over the optimizers (the raw-op tests below run every op
# both ways)
LAYOUTS = {"f32-int32-jit": (np.float32, np.int32, True), "f64-int64-eager": (np.float64, np.int64, False)}
OPTIMIZER_LAYOUTS = [(name, sorted(LAYOUTS)[k % 2]) for k, name in enumerate(sorted(OPTIMIZERS))]

# Embedding ids of each step: duplicated and unsorted, as embedding_lookup's gradient carries them.
STEP_IDS = [[4, 1, 4, 0], [2, 2, 5, 1]]


def _train_graph(make_optimizer, dtype, id_dtype):
    rng = np.random.default_rng(0)
    x = tf1.placeholder(dtype, [None, 3], name="x")
    ids = tf1.placeholder(id_dtype, [None], name="ids")
    emb = tf1.Variable(rng.uniform(0.5, 1.5, (6, 3)).astype(dtype), name="emb", use_resource=False)
    w = tf1.Variable(rng.standard_normal((3, 2)).astype(dtype), name="w", use_resource=False)
    b = tf1.Variable(np.array([0.1, -0.2], dtype), name="b", use_resource=False)
    y = tf.matmul(tf1.nn.embedding_lookup(emb, ids) * x, w) + b
    loss = tf.reduce_mean(tf.square(y - 1.0))
    gs = tf1.train.get_or_create_global_step()
    train_op = make_optimizer(gs).minimize(loss, global_step=gs)
    return x, ids, train_op


@pytest.mark.parametrize(("name", "layout"), OPTIMIZER_LAYOUTS)
def test_v1_optimizer_minimize_matches_tf(name, layout, tmp_path):
    """optimizer.minimize(loss) on ref variables, an embedding among them: every variable and slot after each of
    three steps, and the fused ops' "out" tensors, fetched with the train op."""
    make_optimizer, fused = OPTIMIZERS[name]
    dtype, id_dtype, jit = LAYOUTS[layout]
    if name.startswith("Proximal"):  # TF1's Proximal optimizers make float32 hyperparameters whatever the variable
        dtype = np.float32
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((STEPS, 4, 3)).astype(dtype)
    with v1_graph() as g:
        x, ids, train_op = _train_graph(make_optimizer, dtype, id_dtype)
        applies = [o for o in g.get_operations() if "Apply" in o.type]
        assert {o.type for o in applies} == fused, "the fused optimizer ops on ref variables"
        outs = [o.outputs[0].name for o in applies]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = save(sess, tmp_path / "m")
            want = []
            for s in range(STEPS):
                _, out = sess.run([train_op, outs], {x: xs[s], ids: np.asarray(STEP_IDS[s], id_dtype)})
                want.append((out, {v.name: sess.run(v) for v in tf1.global_variables()}))

    step = Stepper(jaxsm.load(export_dir, tags="train"), ["x:0", "ids:0"], [train_op.name, outs], jit)
    for s, (want_outs, want_vars) in enumerate(want):
        with warnings.catch_warnings():  # compiled: the optimizers' Unique of the embedding ids is padded
            warnings.simplefilter("error", EagerFallbackWarning)
            got = step(xs[s], np.asarray(STEP_IDS[s], id_dtype))
        got_outs = got[1] if jit else got
        for t, g_, w_ in zip(outs, got_outs, want_outs, strict=True):
            assert_close(g_, w_, f"step {s}: {t}")
        got_vars = step.variables()
        assert sorted(got_vars) == sorted(want_vars), "the graph's variables (slots included)"
        for k, w_ in want_vars.items():
            assert_close(got_vars[k], w_, f"step {s}: variable {k}")


# -- raw ops -------------------------------------------------------------------------------------------------
# case -> (op, slots, hyperparameters, attrs, variable dtype, variable shape, indices (None: dense op) and whether
# they are fed (run-time) or graph constants). Sparse indices are duplicated and unsorted.
HYPER = {
    "Adam": dict(beta1_power=0.81, beta2_power=0.998, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-7),
    "AdaMax": dict(beta1_power=0.81, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-7),
    "AdagradV2": dict(lr=0.1, epsilon=1e-7),
    "Adagrad": dict(lr=0.1),
    "AdagradDA": dict(lr=0.1, l1=0.2, l2=0.02, global_step=3),
    "AddSign": dict(lr=0.1, alpha=1.0, sign_decay=0.9, beta=0.9),
    "PowerSign": dict(lr=0.1, logbase=np.e, sign_decay=0.9, beta=0.9),
    "Momentum": dict(lr=0.1, momentum=0.9),
    "RMSProp": dict(lr=0.01, rho=0.9, momentum=0.5, epsilon=1e-7),
    "CenteredRMSProp": dict(lr=0.01, rho=0.9, momentum=0.5, epsilon=1e-7),
    "Adadelta": dict(lr=1.0, rho=0.95, epsilon=1e-7),
    "Ftrl": dict(lr=0.1, l1=0.3, l2=0.02, lr_power=-0.5),
    "FtrlV2": dict(lr=0.5, l1=0.6, l2=0.02, l2_shrinkage=0.05, lr_power=-0.3),
    "ProximalAdagrad": dict(lr=0.1, l1=0.5, l2=0.02),
    "ProximalGradientDescent": dict(alpha=0.1, l1=0.5, l2=0.02),
    "GradientDescent": dict(alpha=0.1),
}
SLOTS = {
    "Adam": ["m", "v"],
    "AdaMax": ["m", "v"],
    "AddSign": ["m"],
    "PowerSign": ["m"],
    "AdagradDA": ["gradient_accumulator", "gradient_squared_accumulator"],
    "RMSProp": ["ms", "mom"],
    "CenteredRMSProp": ["mg", "ms", "mom"],
    "Adadelta": ["accum", "accum_update"],
    "Ftrl": ["accum", "linear"],
    "FtrlV2": ["accum", "linear"],
    "ProximalGradientDescent": [],
    "GradientDescent": [],
}
DUP = ([2, 0, 2, 3], True)
RAW = {
    "ApplyAdaMax": ({}, np.float32, (3, 2), None),
    "ApplyAdaMax-f64-rank0": ({}, np.float64, (), None),
    "ApplyAdagradV2": ({}, np.float32, (2, 2, 2), None),
    "ApplyAdagradV2-frozen": (dict(update_slots=False), np.float32, (4,), None),
    "ApplyAdagrad-frozen": (dict(update_slots=False), np.float64, (4,), None),
    "ApplyAddSign": ({}, np.float32, (3, 2), None),
    "ApplyPowerSign": ({}, np.float64, (3, 2), None),
    "ApplyAdam-nesterov": (dict(use_nesterov=True), np.float32, (3, 2), None),
    "ApplyRMSProp-empty": ({}, np.float32, (0, 3), None),
    "ApplyFtrlV2-power": ({}, np.float32, (5,), None),
    "ApplyAdam-nan": ({}, np.float32, (3, 2), None),
    "SparseApplyRMSProp-nan": ({}, np.float32, (5, 3), DUP),
    "ApplyGradientDescent-rank0": ({}, np.float32, (), None),
    "ApplyMomentum": ({}, np.float64, (3, 2), None),
    "ApplyAdagradDA": ({}, np.float32, (3, 2), None),
    "ApplyCenteredRMSProp": ({}, np.float32, (4,), None),
    "ApplyAdadelta": ({}, np.float64, (3, 2), None),
    "ApplyFtrl": ({}, np.float32, (3, 2), None),
    "ApplyProximalAdagrad": ({}, np.float32, (3,), None),
    "ApplyProximalGradientDescent": ({}, np.float64, (2, 2), None),
    "SparseApplyAdagrad": ({}, np.float32, (5, 3), DUP),
    "SparseApplyAdagrad-scalar-rows": ({}, np.float64, (5,), ([3, 1, 3], False)),
    "SparseApplyAdagradV2": ({}, np.float32, (5, 3), DUP),
    "SparseApplyAdagradV2-frozen": (dict(update_slots=False), np.float32, (5, 3), ([1, 1], False)),
    "SparseApplyAdagradDA": ({}, np.float32, (5, 2, 2), DUP),
    "SparseApplyAdagradDA-scalar-rows": ({}, np.float32, (5,), DUP),
    "SparseApplyMomentum": ({}, np.float64, (5, 3), DUP),
    "SparseApplyMomentum-nesterov": (dict(use_nesterov=True), np.float32, (5, 3), DUP),
    "SparseApplyRMSProp": ({}, np.float32, (5, 3), DUP),
    "SparseApplyCenteredRMSProp": ({}, np.float32, (5, 3), DUP),
    "SparseApplyAdadelta": ({}, np.float32, (5, 3), ([4, 0, 4], False)),
    "SparseApplyFtrl": ({}, np.float32, (5, 3), DUP),
    "SparseApplyFtrlV2": ({}, np.float32, (5, 3), DUP),
    "SparseApplyProximalAdagrad": ({}, np.float32, (5,), DUP),
    "SparseApplyProximalGradientDescent": ({}, np.float64, (5, 3), DUP),
    "SparseApplyProximalGradientDescent-empty": ({}, np.float32, (5, 3), ([], True)),
}
INDEX_DTYPES = [np.int32, np.int64]  # alternating over the sparse cases


def _raw_case(case: str, k: int) -> dict:
    """Build one raw op on fresh ref variables; returns its tensors and feeds."""
    op_name = case.split("-")[0]
    attrs, dtype, shape, indices = RAW[case]
    base = op_name.removeprefix("Sparse").removeprefix("Apply")
    slots = SLOTS.get(base, ["accum"])
    rng = np.random.default_rng(k)
    init = {s: (np.abs(rng.standard_normal(shape)) + 0.1).astype(dtype) for s in ["var", *slots]}
    if base == "CenteredRMSProp":  # ms >= mg**2, as the optimizer keeps it
        init["ms"] = init["mg"] ** 2 + init["ms"]
    refs = {s: tf1.Variable(v, name=f"{case}/{s}", use_resource=False) for s, v in init.items()}
    inputs = dict(refs)
    for h, v in HYPER[base].items():
        inputs[h] = tf.constant(v, tf.int64 if h == "global_step" else dtype)
    # The first hyperparameter a ref variable's ref itself (no Identity): TF dereferences it for the value input.
    first = next(iter(HYPER[base]))
    inputs[first] = tf1.Variable(HYPER[base][first], dtype=dtype, name=f"{case}/{first}", use_resource=False)._ref()
    grad_shape = shape if indices is None else (len(indices[0]), *shape[1:])
    grad = tf1.placeholder(dtype, grad_shape, name=f"{case}/grad")
    inputs["delta" if op_name in ("ApplyGradientDescent", "ApplyProximalGradientDescent") else "grad"] = grad
    feeds = [grad]
    if indices is not None:
        index_dtype = INDEX_DTYPES[k % 2]
        values, fed = indices
        if fed:
            inputs["indices"] = tf1.placeholder(index_dtype, [len(values)], name=f"{case}/indices")
            feeds.append(inputs["indices"])
        else:
            inputs["indices"] = tf.constant(values, index_dtype, shape=[len(values)])
    out = getattr(tf.raw_ops, op_name)(**inputs, **attrs)
    grads = rng.standard_normal((2, *grad_shape)).astype(dtype)
    if case.endswith("-nan"):
        grads[0].flat[1], grads[1].flat[2] = np.nan, -np.inf
    index_values = np.asarray(indices[0] if indices else [], INDEX_DTYPES[k % 2])
    step_feeds = [[g] + ([index_values] if len(feeds) == 2 else []) for g in grads]
    return dict(out=out, refs=refs, feeds=feeds, step_feeds=step_feeds)


@pytest.fixture(scope="module")
def raw_model(tmp_path_factory):
    """Every raw case in one graph (saved once); TF's values after each of two steps."""
    with v1_graph():
        cases = {case: _raw_case(case, k) for k, case in enumerate(sorted(RAW))}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = save(sess, tmp_path_factory.mktemp("raw") / "m")
            want = {}
            for case, c in cases.items():
                want[case] = []
                for values in c["step_feeds"]:
                    out = sess.run(c["out"], dict(zip(c["feeds"], values, strict=True)))
                    want[case].append((out, {r.name: sess.run(r) for r in c["refs"].values()}))
    return export_dir, cases, want


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("case", sorted(RAW))
def test_raw_ref_apply_op_matches_tf(raw_model, case, jit):
    export_dir, cases, want = raw_model
    c = cases[case]
    step = Stepper(jaxsm.load(export_dir, tags="train"), [t.name for t in c["feeds"]], [c["out"].name], jit)
    tol = dict(atol=1e-6) if "power" in case else {}  # TF's Eigen pow and XLA's round differently (~1.5 ulp)
    for s, (values, (want_out, want_vars)) in enumerate(zip(c["step_feeds"], want[case], strict=True)):
        (got_out,) = step(*values)
        assert_close(got_out, want_out, f"step {s}: {case} output 'out'", **tol)
        got_vars = step.variables()
        for name, w_ in want_vars.items():
            assert_close(got_vars[name], w_, f"step {s}: {name}", **tol)


# -- stacks: tf.compat.v1 gradients of v1 while loops ------------------------------------------------------------
def _loop_model(kind: str):
    """A v1 while loop over ref variables, its gradients (forward values saved on StackV2 stacks) and a
    GradientDescent step through it. ``kind``: a static trip count, a fed one, or a loop nested in a loop."""
    x = tf1.placeholder(tf.float32, [3], name="x")
    n = tf1.placeholder(tf.int32, [], name="n")
    w = tf1.Variable(np.array([0.5, -1.0, 2.0], np.float32), name="w", use_resource=False)
    u = tf1.Variable(np.float32(0.3), name="u", use_resource=False)

    def body(i, a):
        if kind == "nested":
            _, a = tf1.while_loop(lambda j, b: j < i + 1, lambda j, b: (j + 1, tf.tanh(b * u) + b), [0, a])
        return i + 1, tf.sin(a * w) + a * u

    limit = n if kind == "fed" else 3
    _, y = tf1.while_loop(lambda i, a: i < limit, body, [0, x])
    loss = tf.reduce_sum(y * y)
    grads = tf.gradients(loss, [x, w, u])
    train_op = tf1.train.GradientDescentOptimizer(0.01).minimize(loss, var_list=[w, u])
    return x, n, grads, train_op


@pytest.mark.parametrize("kind", ["static", "fed", "nested"])
def test_v1_while_loop_gradients_use_stacks(kind, tmp_path):
    """Gradients through a v1 while loop and training steps through it: the forward loop pushes, the gradient loop
    pops. Stacks run op by op (EagerFallbackWarning); the results are TF's."""
    x_val, n_val = np.array([1.0, 2.0, -0.5], np.float32), np.int32(4)
    with v1_graph() as g:
        x, n, grads, train_op = _loop_model(kind)
        assert {"StackV2", "StackPushV2", "StackPopV2"} <= {o.type for o in g.get_operations()}, "stacks in graph"
        fetches = [t.name for t in grads]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = save(sess, tmp_path / "m")
            want = []
            for _ in range(2):
                got_grads = sess.run(grads, {x: x_val, n: n_val})
                sess.run(train_op, {x: x_val, n: n_val})
                want.append((got_grads, {v.name: sess.run(v) for v in tf1.global_variables()}))

    model = jaxsm.load(export_dir, tags="train")
    gradients, train = model.prune(["x:0", "n:0"], fetches), model.prune(["x:0", "n:0"], train_op.name)
    for s, (want_grads, want_vars) in enumerate(want):
        with pytest.warns(EagerFallbackWarning) if s == 0 else contextlib.nullcontext():
            got_grads = gradients(x_val, n_val)
        for name, g_, w_ in zip(fetches, got_grads, want_grads, strict=True):
            assert_close(g_, w_, f"step {s}: gradient {name}")
        with pytest.warns(EagerFallbackWarning) if s == 0 else contextlib.nullcontext():
            train(x_val, n_val)
        for v in model.variables:
            assert_close(v.numpy(), want_vars[v.name], f"step {s}: variable {v.name} after the train op")


def test_stacks_unjitted_pure_function_raises(tmp_path):
    """The pure function (unjitted, not op by op) cannot carry a stack through a lax loop: a StaticValueError
    naming the StackV2 node, never a wrong answer."""
    with v1_graph():
        x, n, grads, _ = _loop_model("static")
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = save(sess, tmp_path / "m")
    model = jaxsm.load(export_dir, tags="train")
    fn = model.prune(["x:0", "n:0"], [grads[0].name])
    state = {v.key: v.value() for v in model.variables}
    with pytest.raises(StaticValueError, match="StackV2"):
        fn.pure()(state, [np.ones(3, np.float32), np.int32(3)])


@pytest.mark.parametrize("v1_names", [False, True], ids=["StackV2", "Stack"])
def test_raw_stack_ops_and_their_errors(v1_names, tmp_path):
    """Push/pop order (last in, first out), elements of several shapes and dtypes, and TF's errors: pop from an
    empty stack, push beyond max_size, push of the wrong dtype, use after close."""
    ops = (
        dict(make=tf.raw_ops.Stack, push=tf.raw_ops.StackPush, pop=tf.raw_ops.StackPop, close=tf.raw_ops.StackClose)
        if v1_names
        else dict(
            make=lambda **kw: tf.raw_ops.StackV2(max_size=2, **kw),
            push=tf.raw_ops.StackPushV2,
            pop=tf.raw_ops.StackPopV2,
            close=tf.raw_ops.StackCloseV2,
        )
    )
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None], name="x")
        s = ops["make"](elem_type=tf.float32, stack_name="s")
        with tf.control_dependencies([ops["push"](handle=s, elem=x)]):
            with tf.control_dependencies([ops["push"](handle=s, elem=x * 2.0)]):
                second = ops["pop"](handle=s, elem_type=tf.float32)
        with tf.control_dependencies([second]):
            first = ops["pop"](handle=s, elem_type=tf.float32)
        with tf.control_dependencies([first]):
            empty = tf.identity(ops["pop"](handle=s, elem_type=tf.float32), name="empty")
            wrong = ops["push"](handle=s, elem=tf.constant([1], tf.int32))
            closed = ops["close"](handle=s)
        with tf.control_dependencies([closed]):
            after_close = ops["push"](handle=s, elem=x)
        i = tf1.placeholder(tf.int64, [2, 0], name="i")  # an empty element of another dtype
        t = tf.raw_ops.StackV2(max_size=-1, elem_type=tf.int64)
        with tf.control_dependencies([tf.raw_ops.StackPushV2(handle=t, elem=i)]):
            empty_elem = tf.raw_ops.StackPopV2(handle=t, elem_type=tf.int64)
        overflow = None
        if not v1_names:
            with tf.control_dependencies([first]):
                pushes = [tf.raw_ops.StackPushV2(handle=s, elem=x)]
                with tf.control_dependencies(pushes):
                    pushes.append(tf.raw_ops.StackPushV2(handle=s, elem=x))
                    with tf.control_dependencies(pushes):
                        overflow = tf.raw_ops.StackPushV2(handle=s, elem=x)
        x_val, i_val = np.array([1.0, -2.0], np.float32), np.zeros((2, 0), np.int64)
        with tf1.Session() as sess:
            export_dir = save(sess, tmp_path / "m")
            want = sess.run([second, first, empty_elem], {x: x_val, i: i_val})
            failing = {"empty": empty, "wrong": wrong, "after_close": after_close, "overflow": overflow}
            failing = {k: v for k, v in failing.items() if v is not None}
            for t_ in failing.values():
                with pytest.raises(tf.errors.InvalidArgumentError):
                    sess.run(t_, {x: x_val, i: i_val})

    model = jaxsm.load(export_dir, tags="train")
    fetches = [second.name, first.name, empty_elem.name]
    with pytest.warns(EagerFallbackWarning):
        got = model.prune(["x:0", "i:0"], fetches)(x_val, i_val)
    for name, g_, w_ in zip(fetches, got, want, strict=True):
        assert_close(g_, w_, name)
    messages = {"empty": "is empty", "wrong": "Must have type", "after_close": "closed", "overflow": "overflowed"}
    for k, t_ in failing.items():
        fn = model.prune(["x:0", "i:0"], t_.name)
        with pytest.raises(JaxsmError, match=messages[k]), warnings.catch_warnings():
            warnings.simplefilter("ignore", EagerFallbackWarning)
            fn(x_val, i_val)


@pytest.mark.parametrize(
    "case",
    [
        "grad-shape",
        "slot-shape",
        "lr-not-scalar",
        "sparse-grad-rows",
        "sparse-indices-rank",
        "sparse-scalar-var",
        "sparse-index-out-of-range",
        "sparse-index-negative",
    ],
)
def test_apply_op_shape_and_index_errors_like_tf(case, tmp_path):
    """Shapes TF's kernels reject at run time (InvalidArgumentError; fed through placeholders of unknown shape),
    and out-of-range indices known at trace time (graph constants), raise a JaxsmError naming the op, on ref
    variables and on resource variables alike."""
    const_indices = {"sparse-index-out-of-range": [1, 4], "sparse-index-negative": [-1, 0]}.get(case)
    feeds = {
        "grad-shape": dict(grad=np.ones(2, np.float32)),
        "slot-shape": dict(accum=np.ones(2, np.float32)),
        "lr-not-scalar": dict(lr=np.ones(2, np.float32)),
        "sparse-grad-rows": dict(grad=np.ones((2, 3), np.float32), indices=np.array([0], np.int32)),
        "sparse-indices-rank": dict(grad=np.ones((1, 3), np.float32), indices=np.array([[0]], np.int32)),
        "sparse-scalar-var": dict(grad=np.ones(1, np.float32), indices=np.array([0], np.int32)),
    }.get(case, dict(grad=np.ones((2, 3), np.float32)))
    sparse = case.startswith("sparse")
    shape = () if case == "sparse-scalar-var" else (3,) if not sparse else (4, 3)
    with v1_graph():
        var = tf1.Variable(np.ones(shape, np.float32), name="var", use_resource=False)
        accum = tf1.Variable(np.ones(shape, np.float32), name="accum", use_resource=False)
        rvar = tf1.Variable(np.ones(shape, np.float32), name="rvar", use_resource=True)
        raccum = tf1.Variable(np.ones(shape, np.float32), name="raccum", use_resource=True)
        holders = {k: tf1.placeholder(tf.as_dtype(v.dtype), None, name=f"fed_{k}") for k, v in feeds.items()}
        hyper = dict(lr=holders.get("lr", tf.constant(0.1)), grad=holders.get("grad", tf.ones(shape)), momentum=0.9)
        if "accum" in holders:  # the slot: a fed value assigned (validate_shape=False) to the accumulator first
            with tf.control_dependencies([tf1.assign(accum, holders["accum"], validate_shape=False)]):
                hyper["lr"] = tf.identity(hyper["lr"])
            with tf.control_dependencies([raccum.assign(holders["accum"], read_value=False)]):
                hyper["momentum"] = tf.identity(hyper["momentum"])
        if sparse:
            if const_indices is not None:
                holders["indices"] = tf.constant(const_indices, tf.int64)
            ops = [
                tf.raw_ops.SparseApplyMomentum(var=var, accum=accum, indices=holders["indices"], **hyper),
                tf.raw_ops.ResourceSparseApplyMomentum(
                    var=rvar.handle, accum=raccum.handle, indices=holders["indices"], **hyper
                ),
            ]
        else:
            ops = [
                tf.raw_ops.ApplyMomentum(var=var, accum=accum, **hyper),
                tf.raw_ops.ResourceApplyMomentum(var=rvar.handle, accum=raccum.handle, **hyper),
            ]
        ops = [o if isinstance(o, tf.Operation) else o.op for o in ops]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = save(sess, tmp_path / "m")
            for o in ops:
                if case == "slot-shape" and o.type.startswith("Resource"):
                    continue  # TF's resource assign checks the shape itself; its message differs
                with pytest.raises(tf.errors.InvalidArgumentError):
                    sess.run(o, {holders[k]: v for k, v in feeds.items()})
    model = jaxsm.load(export_dir, tags="train")
    for o in ops:
        if case == "slot-shape" and o.type.startswith("Resource"):
            continue
        fn = model.prune([f"fed_{k}:0" for k in feeds], o.name)
        with pytest.raises(JaxsmError, match=o.type + (r".*Index -?\d at offset \d" if const_indices else "")):
            fn(*feeds.values())


# -- accumulate_n's ops, RefSelect -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_accumulate_n_v2_and_temporary_variables(dtype, tmp_path):
    """AccumulateNV2 (rank 0, 1 and 3; empty; -0.0 inputs sum to +0.0 as TF's rewrite does) and the TF1
    accumulate_n pattern: TemporaryVariable, Assign, AssignAdds, DestroyTemporaryVariable, fresh on every run."""
    rng = np.random.default_rng(0)
    shapes = [(), (4,), (2, 0, 3), (2, 1, 3)]
    values = [[(rng.standard_normal(s) * 10).astype(dtype) for _ in range(3)] for s in shapes]
    if np.dtype(dtype).kind == "f":
        values[1][0][:] = values[1][1][:] = values[1][2][:] = -0.0
    with v1_graph():
        holders = [[tf1.placeholder(dtype, s, name=f"x{k}_{j}") for j in range(3)] for k, s in enumerate(shapes)]
        sums = [tf.raw_ops.AccumulateNV2(inputs=h, shape=s) for h, s in zip(holders, shapes, strict=True)]
        temp = tf.raw_ops.TemporaryVariable(shape=[2, 1, 3], dtype=dtype, var_name="acc")
        ref = tf1.assign(temp, tf.zeros([2, 1, 3], dtype))
        with tf.control_dependencies([tf1.assign_add(ref, x) for x in holders[3]]):
            destroyed = tf.raw_ops.DestroyTemporaryVariable(ref=ref, var_name="acc")
        outputs = [t.name for t in [*sums, destroyed]]
        feed = {h: v for hs, vs in zip(holders, values, strict=True) for h, v in zip(hs, vs, strict=True)}
        with tf1.Session() as sess:
            export_dir = save(sess, tmp_path / "m")
            want = sess.run(outputs, feed)
    fn = jaxsm.load(export_dir, tags="train").prune([h.name for h in feed], outputs)
    for run in range(2):
        got = fn(*feed.values())
        for name, g_, w_ in zip(outputs, got, want, strict=True):
            assert_close(g_, w_, f"run {run}: {name}")
            if name == sums[1].name and np.dtype(dtype).kind == "f":
                assert not np.signbit(np.asarray(g_)).any(), "-0.0 + -0.0 + -0.0 accumulated from +0.0"


def test_accumulate_n_v2_shape_mismatch_raises(tmp_path):
    with v1_graph():
        a, b = tf1.placeholder(tf.float32, None, name="a"), tf1.placeholder(tf.float32, None, name="b")
        total = tf.raw_ops.AccumulateNV2(inputs=[a, b], shape=tf.TensorShape(None))
        with tf1.Session() as sess:
            export_dir = save(sess, tmp_path / "m")
            with pytest.raises(tf.errors.InvalidArgumentError):
                sess.run(total, {a: np.ones(2), b: np.ones(3)})
    fn = jaxsm.load(export_dir, tags="train").prune(["a:0", "b:0"], total.name)
    with pytest.raises(JaxsmError, match="AccumulateNV2"):
        fn(np.ones(2, np.float32), np.ones(3, np.float32))


@pytest.mark.parametrize(("index", "fed"), [(0, False), (1, True), (2, False), (-1, True)])
def test_ref_select_assigns_the_selected_variable(index, fed, tmp_path):
    """RefSelect's output is the selected ref itself: an AssignAdd through it changes that variable. An index
    out of [0, N) raises, as in TF; a fed index runs op by op (a ref chosen by a run-time value)."""
    with v1_graph():
        refs = [tf1.Variable(np.full(2, k, np.float32), name=f"v{k}", use_resource=False) for k in range(2)]
        i = tf1.placeholder(tf.int32, [], name="i") if fed else tf.constant(index)
        selected = tf.raw_ops.RefSelect(index=i, inputs=[r._ref() for r in refs])
        bump = tf1.assign_add(selected, [10.0, 20.0])
        feeds = {i: index} if fed else {}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = save(sess, tmp_path / "m")
            if not 0 <= index < 2:
                with pytest.raises(tf.errors.InvalidArgumentError):
                    sess.run(bump, feeds)
            else:
                want = sess.run(bump, feeds), [sess.run(r) for r in refs]
    model = jaxsm.load(export_dir, tags="train")
    fn = model.prune(["i:0"] if fed else [], bump.name)
    args = [np.int32(index)] if fed else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerFallbackWarning)
        if not 0 <= index < 2:
            with pytest.raises(JaxsmError, match="Index must be in the range"):
                fn(*args)
            return
        got = fn(*args)
    assert_close(got, want[0], "the AssignAdd through RefSelect")
    for v, w_ in zip(model.variables, want[1], strict=True):
        assert_close(v.numpy(), w_, f"variable {v.name}")
