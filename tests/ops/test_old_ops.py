"""Ops found in older graphs, against TF: TF1 TensorArray gradients (TensorArrayGradV3, TensorArrayGradWithShape)
and ref-typed tables against a tf.compat.v1 Session running the same graph; deprecated aliases of modern ops (TF
2.21 no longer runs them: compared with the modern op they stand for); anonymous tables; FakeQuantWithMinMax*
gradients; (De)SerializeSparse and SerializeManySparse; FractionalMaxPool/FractionalAvgPool and their gradients."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import jaxsm
from jaxsm.errors import EagerFallbackWarning, JaxsmError, StaticValueError
from tests.tfcompare import assert_close, assert_matches_tf, assert_raises_like_tf, run_jaxsm, save_function, v1_graph

tf = pytest.importorskip("tensorflow")
tf1 = tf.compat.v1


def _save(sess, export_dir) -> str:
    builder = tf1.saved_model.Builder(str(export_dir))
    builder.add_meta_graph_and_variables(sess, ["train"])
    builder.save()
    return str(export_dir)


def _run_v1(build, feeds: dict[str, np.ndarray], tmp_path) -> tuple[list[str], list[np.ndarray], str]:
    """Build a v1 graph (``build`` returns the fetched tensors), run it in a Session and save it."""
    with v1_graph() as g:
        fetched = build()
        placeholders = {n: g.get_tensor_by_name(n) for n in feeds}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            want = sess.run(fetched, {placeholders[n]: v for n, v in feeds.items()})
            export_dir = _save(sess, tmp_path / "m")
    return [t.name for t in fetched], want, export_dir


# -- TensorArray gradients ------------------------------------------------------------------------------------
def _rnn(kind: str):
    """A v1 while loop over TensorArrays (as dynamic_rnn builds it) and tf.compat.v1.gradients through it."""
    x = tf1.placeholder(tf.float32, [4, 3], name="x")
    w = tf1.Variable(np.array([0.5, -1.0, 2.0], np.float32), name="w", use_resource=False)
    if kind == "split":  # TensorArraySplit/Concat (their gradients: Concat/Split on the gradient array)
        inp = tf1.TensorArray(tf.float32, size=2).split(tf.reshape(x, [12]), [6, 6])
    else:
        inp = tf1.TensorArray(tf.float32, size=4, element_shape=[3], clear_after_read=kind != "read_twice").unstack(x)
    n = 2 if kind == "split" else 4

    def body(i, h, o):
        v = inp.read(i)
        if kind == "split":
            v = v[:3] * v[3:]
        if kind == "read_twice":  # two reads of one element: their gradients add up in the gradient array
            v = v * inp.read(i)
        h = tf.tanh(v * w + h)
        return i + 1, h, o.write(i, h)

    out = tf1.TensorArray(tf.float32, size=n)
    _, h, out = tf1.while_loop(lambda i, h, o: i < n, body, [0, tf.zeros([3]), out])
    y = out.concat() if kind == "split" else out.stack()
    loss = tf.reduce_sum(y * y[::-1]) + tf.reduce_sum(h)
    return tf.gradients(loss, [x, w])


@pytest.mark.parametrize("kind", ["stack", "read_twice", "split"])
def test_tensor_array_gradients_in_v1_while_loop(kind, tmp_path):
    """TensorArrayGradV3 in the gradient loop of a v1 while loop: matches TF's gradients. The gradient arrays and
    the loop's stacks run op by op (EagerFallbackWarning)."""
    x_val = (np.arange(12, dtype=np.float32).reshape(4, 3) - 5) / 7
    fetches, want, export_dir = _run_v1(lambda: _rnn(kind), {"x:0": x_val}, tmp_path)
    model = jaxsm.load(export_dir, tags="train")
    assert "TensorArrayGradV3" in {n.op for n in model._meta_graph.graph_def.node}, "gradient arrays in graph"
    fn = model.prune(["x:0"], fetches)
    with pytest.warns(EagerFallbackWarning):
        got = fn(x_val)
    for name, g, w in zip(fetches, got, want, strict=True):
        assert_close(g, w, f"gradient {name}", rtol=1e-5, atol=1e-5)


def _raw_grad_arrays():
    """Raw gradient-array ops outside loops: GradWithShape's prefix, aggregated writes, unwritten reads (zeros),
    two sources."""
    x = tf1.placeholder(tf.float32, [2, 3], name="x")
    ta = tf1.TensorArray(tf.float32, size=3, element_shape=[2, 3]).write(1, x)
    h, f = ta.handle, ta.flow
    g_h, g_f = tf.raw_ops.TensorArrayGradV3(handle=h, flow_in=f, source="gradients")
    f1 = tf.raw_ops.TensorArrayWriteV3(handle=g_h, index=2, value=x * 2, flow_in=g_f)
    f2 = tf.raw_ops.TensorArrayWriteV3(handle=g_h, index=2, value=x + 1, flow_in=f1)
    gathered = tf.raw_ops.TensorArrayGatherV3(handle=g_h, indices=[2, 0], flow_in=f2, dtype=tf.float32)
    s_h, s_f = tf.raw_ops.TensorArrayGradWithShape(
        handle=h, flow_in=f, shape_to_prepend=tf.constant([2], tf.int32), source="other"
    )
    s_f = tf.raw_ops.TensorArrayWriteV3(handle=s_h, index=0, value=tf.stack([x, -x]), flow_in=s_f)
    prefixed = tf.raw_ops.TensorArrayGatherV3(handle=s_h, indices=[0, 1], flow_in=s_f, dtype=tf.float32)
    size = tf.raw_ops.TensorArraySizeV3(handle=s_h, flow_in=s_f)
    return [gathered, prefixed, size]


def test_raw_tensor_array_grad_ops_match_tf(tmp_path):
    x_val = np.arange(6, dtype=np.float32).reshape(2, 3)
    fetches, want, export_dir = _run_v1(_raw_grad_arrays, {"x:0": x_val}, tmp_path)
    model = jaxsm.load(export_dir, tags="train")
    fn = model.prune(["x:0"], fetches)
    with pytest.warns(EagerFallbackWarning):
        got = fn(x_val)
    for name, g, w in zip(fetches, got, want, strict=True):
        assert_close(g, w, name)
    state = {v.key: v.value() for v in model.variables}
    with pytest.raises(StaticValueError, match="TensorArrayGrad"):
        fn.pure()(state, [x_val])


# -- deprecated aliases ---------------------------------------------------------------------------------------
# TF 2.21 refuses to run these ops (removed at their GraphDef version), so each test saves TF's modern op, rewrites
# its nodes into the old op's form in saved_model.pb and compares jaxsm on the old form with TF on the modern one.
def _rewrite(export_dir: str, old_op: str, new_op: str, drop_inputs: tuple[int, ...] = (), **attrs) -> int:
    """Rename every ``old_op`` node of the saved functions to ``new_op``, drop the data inputs at ``drop_inputs``
    and set/remove (None) attrs; returns how many nodes changed."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = f"{export_dir}/saved_model.pb"
    sm = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        sm.ParseFromString(f.read())
    changed = 0
    for fdef in sm.meta_graphs[0].graph_def.library.function:
        for node in fdef.node_def:
            if node.op != old_op:
                continue
            node.op, changed = new_op, changed + 1
            kept = [x for i, x in enumerate(node.input) if i not in drop_inputs or x.startswith("^")]
            del node.input[:]
            node.input.extend(kept)
            for name, value in attrs.items():
                if value is None:
                    node.attr.pop(name, None)
                elif isinstance(value, bool):
                    node.attr[name].b = value
                elif isinstance(value, int):
                    node.attr[name].i = value
                elif isinstance(value, float):
                    node.attr[name].f = value
                else:
                    node.attr[name].type = tf.as_dtype(value).as_datatype_enum
    with open(path, "wb") as f:
        f.write(sm.SerializeToString())
    return changed


def _check_alias(fn, inputs, old_op: str, new_op: str, jit: bool, rtol: float = 1e-6, **rewrite) -> None:
    inputs = [np.asarray(x) for x in inputs]
    export_dir, tf_fn = save_function(fn, inputs)
    want = tf_fn(*inputs)
    assert _rewrite(export_dir, new_op, old_op, **rewrite), f"no {new_op} node to rewrite"
    got = run_jaxsm(export_dir, inputs, jit=jit)
    want, got = (want, got) if isinstance(want, (list, tuple)) else ([want], [got])
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_close(g, w.numpy(), f"{old_op} output {i}", rtol=rtol, atol=rtol)


_RNG = np.random.default_rng(0)
_SPD = (lambda a: a @ np.swapaxes(a, -1, -2) + 3 * np.eye(3))(_RNG.standard_normal((2, 3, 3)))
_LINALG = {
    "BatchMatrixBandPart": (lambda m: tf.raw_ops.MatrixBandPart(input=m, num_lower=0, num_upper=1), "MatrixBandPart"),
    "BatchMatrixDeterminant": (tf.linalg.det, "MatrixDeterminant"),
    "BatchMatrixDiag": (lambda m: tf.raw_ops.MatrixDiag(diagonal=m[:, 0]), "MatrixDiag"),
    "BatchMatrixDiagPart": (lambda m: tf.raw_ops.MatrixDiagPart(input=m), "MatrixDiagPart"),
    "BatchMatrixInverse": (lambda m: tf.raw_ops.MatrixInverse(input=m, adjoint=True), "MatrixInverse"),
    "BatchMatrixSetDiag": (lambda m: tf.raw_ops.MatrixSetDiag(input=m, diagonal=m[:, 1]), "MatrixSetDiag"),
    "BatchMatrixSolve": (lambda m: tf.raw_ops.MatrixSolve(matrix=m, rhs=m[..., :2]), "MatrixSolve"),
    "BatchMatrixSolveLs": (
        lambda m: tf.raw_ops.MatrixSolveLs(matrix=m, rhs=m[..., :1], l2_regularizer=tf.constant(0.1, tf.float64)),
        "MatrixSolveLs",
    ),
    "BatchMatrixTriangularSolve": (lambda m: tf.linalg.triangular_solve(m, m, lower=False), "MatrixTriangularSolve"),
    "BatchCholesky": (tf.linalg.cholesky, "Cholesky"),
    "BatchCholeskyGrad": (lambda m: tf.raw_ops.CholeskyGrad(l=tf.linalg.cholesky(m), grad=m), "CholeskyGrad"),
    "BatchSelfAdjointEigV2": (lambda m: tf.linalg.eigh(m)[0], "SelfAdjointEigV2"),
    "BatchSvd": (lambda m: tf.linalg.svd(m, compute_uv=False), "Svd"),
}


# each alias once, float32 under jit and float64 op by op in turn
@pytest.mark.parametrize(
    ("old_op", "dtype", "jit"),
    [(name, *((np.float32, True) if k % 2 else (np.float64, False))) for k, name in enumerate(sorted(_LINALG))],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_batch_linalg_aliases(old_op, dtype, jit):
    fn, new_op = _LINALG[old_op]
    _check_alias(fn, [_SPD.astype(dtype)], old_op, new_op, jit, rtol=1e-4 if dtype == np.float32 else 1e-9)


@pytest.mark.parametrize(
    ("old_op", "jit"),
    [("BatchFFT", True), ("BatchFFT2D", False), ("BatchFFT3D", True), ("BatchIFFT", False), ("BatchIFFT2D", True),
     ("BatchIFFT3D", False)],
)  # fmt: skip
def test_batch_fft_aliases(old_op, jit):
    x = (_RNG.standard_normal((2, 3, 4, 5)) + 1j * _RNG.standard_normal((2, 3, 4, 5))).astype(np.complex64)
    new_op = old_op.removeprefix("Batch")
    fn = lambda v: getattr(tf.raw_ops, new_op)(input=v)  # noqa: E731
    _check_alias(fn, [x], old_op, new_op, jit, rtol=1e-4, Tcomplex=None)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize(
    "x",
    [
        np.array([[3.0, -1.0, np.nan, 3.0, 0.0], [1.0, 2.0, -0.0, 5.0, -np.inf]], np.float32),
        np.array([[4, 1, 4, -7, 2]], np.int32),
        np.array([9, 1, 5, 7, 5], np.int64),
    ],
    ids=["float32", "int32", "int64-rank1"],
)
def test_top_k_v1_attr_k(x, jit):
    _check_alias(lambda v: tf.math.top_k(v, 3), [x], "TopK", "TopKV2", jit, drop_inputs=(1,), k=3)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("range_given", [False, True])
def test_quantize_and_dequantize_v1(range_given, jit):
    x = np.array([[-1.3, 0.2, 0.7], [2.9, -0.01, 1.4]], np.float32)
    fn = lambda v: tf.raw_ops.QuantizeAndDequantizeV2(  # noqa: E731
        input=v, input_min=-1.0, input_max=2.0, range_given=range_given, num_bits=5
    )
    attrs = dict(input_min=-1.0, input_max=2.0, round_mode=None, narrow_range=None, axis=None)
    _check_alias(fn, [x], "QuantizeAndDequantize", "QuantizeAndDequantizeV2", jit, drop_inputs=(1, 2), **attrs)


def _as_adjust_contrast_v1(export_dir: str, dtype) -> None:
    """AdjustContrastv2(cast(v), factor) -> AdjustContrast(v, factor, lo, hi): the v1 op reads T itself and takes
    the clipping range as inputs (the constants ``lo``/``hi`` the saved function also returns)."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = f"{export_dir}/saved_model.pb"
    sm = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        sm.ParseFromString(f.read())
    (fdef,) = [f for f in sm.meta_graphs[0].graph_def.library.function if "AdjustContrastv2" in str(f)]
    (node,) = [n for n in fdef.node_def if n.op == "AdjustContrastv2"]
    node.op = "AdjustContrast"
    node.attr["T"].type = tf.as_dtype(dtype).as_datatype_enum
    factor = node.input[1]
    del node.input[:]
    node.input.extend([fdef.signature.input_arg[0].name, factor, "lo:output:0", "hi:output:0"])
    with open(path, "wb") as f:
        f.write(sm.SerializeToString())


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int32])
def test_adjust_contrast_v1_clips_in_float(dtype, jit):
    """AdjustContrast (v1) against TF's v2 op on the image cast to float32, clipped: v1 works in float32 (never
    rounding the mean to T), returns float32 and clips to [min_value, max_value]."""
    images = _RNG.uniform(0, 200, (2, 3, 4, 3)).astype(dtype)
    want = tf.clip_by_value(tf.image.adjust_contrast(tf.cast(images, tf.float32), 1.7), 20.0, 150.0).numpy()

    def fn(v):
        lo, hi = tf.constant(20.0, name="lo"), tf.constant(150.0, name="hi")
        return tf.raw_ops.AdjustContrastv2(images=tf.cast(v, tf.float32), contrast_factor=1.7), lo + hi

    export_dir, _ = save_function(fn, [images])
    _as_adjust_contrast_v1(export_dir, dtype)
    got = run_jaxsm(export_dir, [images], jit=jit)[0]
    assert_close(got, want, "AdjustContrast", rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("dtype", "jit"), [(np.float32, True), (np.float64, False)], ids=["float32-jit", "float64-eager"]
)
def test_random_poisson_v1_is_v2s_stream(dtype, jit):
    """RandomPoisson (v1) runs RandomPoissonV2's kernel: with fixed seeds, TF's exact samples."""
    rate = np.array([[0.5, 3.0, 40.0]], dtype)
    fn = lambda r: tf.random.poisson([4], r, dtype=dtype, seed=7)  # noqa: E731
    export_dir, tf_fn = save_function(fn, [rate])
    want = [tf_fn(rate).numpy() for _ in range(2)]  # the kernel's counter moves on between calls
    assert _rewrite(export_dir, "RandomPoissonV2", "RandomPoisson", R=None)
    model = jaxsm.load(export_dir)
    for call in range(2):
        got = model.f(rate) if jit else run_jaxsm(export_dir, [rate], jit=False)
        assert_close(got, want[call if jit else 0], f"RandomPoisson call {call}")


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_stateful_standard_normal_v1_is_philox(jit):
    """StatefulStandardNormal (v1) is V2 with the Philox algorithm: the same numbers from the same state."""
    module = tf.Module()
    module.gen = tf.random.Generator.from_seed(5, alg="philox")
    x = np.zeros([2], np.float32)
    draw = lambda: tf.raw_ops.StatefulStandardNormalV2(  # noqa: E731
        resource=module.gen.state.handle, algorithm=tf.constant(1, tf.int64), shape=[2, 3]
    )
    export_dir, tf_fn = save_function(lambda v: draw() + v[0], [x], module=module)
    want = tf_fn(x).numpy()  # (the first draw, from the saved state)
    assert _rewrite(export_dir, "StatefulStandardNormalV2", "StatefulStandardNormal", drop_inputs=(1,))
    assert_close(run_jaxsm(export_dir, [x], jit=jit), want, "StatefulStandardNormal")


def test_placeholder_v2_is_fed_like_placeholder(tmp_path):
    """PlaceholderV2 (deprecated at GraphDef 23) is fed by name; an unfed one is an error naming it."""
    from tensorflow.core.protobuf import saved_model_pb2

    x_val = np.array([1.0, -2.0, 0.5], np.float32)
    fetches, want, export_dir = _run_v1(
        lambda: [tf.identity(tf1.placeholder(tf.float32, [3], name="x") * 2, name="y")], {"x:0": x_val}, tmp_path
    )
    path = f"{export_dir}/saved_model.pb"
    sm = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        sm.ParseFromString(f.read())
    for node in sm.meta_graphs[0].graph_def.node:
        if node.op == "Placeholder":
            node.op = "PlaceholderV2"
    with open(path, "wb") as f:
        f.write(sm.SerializeToString())
    model = jaxsm.load(export_dir, tags="train")
    assert_close(model.prune(["x:0"], fetches)(x_val)[0], want[0], "y")
    with pytest.raises(JaxsmError, match=r"placeholders \['x'\], which are not fed"):  # at prune time, as TF
        model.prune([], fetches)


# -- TF1 ref-typed tables and anonymous tables -----------------------------------------------------------------
def _ref_tables():
    """TF1's ref-handle tables: MutableHashTable(OfTensors) with the v1 insert/find/size/export/import ops, and a
    HashTable filled by InitializeTable. (TF 2.21 cannot run MutableDenseHashTable: its kernel wants V2's
    deleted_key.)"""
    k = tf1.placeholder(tf.int64, [None], name="k")
    r = tf.raw_ops
    out = []
    ht = r.HashTable(key_dtype=tf.int64, value_dtype=tf.float32)
    init = r.InitializeTable(table_handle=ht, keys=tf.constant([3, -1, 7], tf.int64), values=[0.5, 1.5, 2.5])
    with tf.control_dependencies([init]):
        out.append(r.LookupTableFind(table_handle=ht, keys=k, default_value=-9.0))
    for make, vals in (
        (lambda: r.MutableHashTable(key_dtype=tf.int64, value_dtype=tf.float32), [1.0, 2.0]),
        (lambda: r.MutableHashTableOfTensors(key_dtype=tf.int64, value_dtype=tf.float32, value_shape=[2]), None),
    ):
        t = make()
        vals = tf.constant([[1.0, 2.0], [3.0, 4.0]] if vals is None else vals)
        ins = r.LookupTableInsert(table_handle=t, keys=tf.constant([7, 3], tf.int64), values=vals)
        with tf.control_dependencies([ins]):
            default = tf.zeros([2]) - 1 if vals.shape.rank == 2 else -1.0
            out.append(r.LookupTableFind(table_handle=t, keys=k, default_value=default))
            out.append(r.LookupTableSize(table_handle=t))
            keys, values = r.LookupTableExport(table_handle=t, Tkeys=tf.int64, Tvalues=tf.float32)
            order = tf.argsort(keys)
            out += [tf.gather(keys, order), tf.gather(values, order)]
    t = r.MutableHashTable(key_dtype=tf.int64, value_dtype=tf.float32)
    ins = r.LookupTableInsert(table_handle=t, keys=tf.constant([4], tf.int64), values=[8.0])
    with tf.control_dependencies([ins]):
        imp = r.LookupTableImport(table_handle=t, keys=tf.constant([7, 3], tf.int64), values=[6.0, 9.0])
    with tf.control_dependencies([imp]):  # an import replaces the contents
        out += [r.LookupTableFind(table_handle=t, keys=k, default_value=0.0), r.LookupTableSize(table_handle=t)]
    return out


def test_ref_tables_match_tf(tmp_path):
    k_val = np.array([3, 4, 7, -1, 0], np.int64)
    fetches, want, export_dir = _run_v1(_ref_tables, {"k:0": k_val}, tmp_path)
    model = jaxsm.load(export_dir, tags="train")
    got = model.prune(["k:0"], fetches)(k_val)
    for name, g, w in zip(fetches, got, want, strict=True):
        assert_close(g, w, name)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_anonymous_tables_match_tf(jit):
    def fn(k):
        r = tf.raw_ops
        t = r.AnonymousHashTable(key_dtype=tf.int32, value_dtype=tf.float32)
        init = r.InitializeTableV2(table_handle=t, keys=tf.constant([5, 1]), values=[0.5, 1.5])
        m = r.AnonymousMutableHashTable(key_dtype=tf.int32, value_dtype=tf.float32)
        mt = r.AnonymousMutableHashTableOfTensors(key_dtype=tf.int32, value_dtype=tf.float32, value_shape=[2])
        d = r.AnonymousMutableDenseHashTable(
            empty_key=tf.constant(-1), deleted_key=tf.constant(-2), value_dtype=tf.float32
        )
        ins = [
            r.LookupTableInsertV2(table_handle=m, keys=tf.constant([1, 2]), values=[7.0, 8.0]),
            r.LookupTableInsertV2(table_handle=mt, keys=tf.constant([2]), values=[[7.0, 8.0]]),
            r.LookupTableInsertV2(table_handle=d, keys=tf.constant([5]), values=[3.0]),
        ]
        with tf.control_dependencies([init] + ins):
            return (
                r.LookupTableFindV2(table_handle=t, keys=k, default_value=-1.0),
                r.LookupTableFindV2(table_handle=m, keys=k, default_value=-1.0),
                r.LookupTableFindV2(table_handle=mt, keys=k, default_value=[0.0, -1.0]),
                r.LookupTableFindV2(table_handle=d, keys=k, default_value=-1.0),
                r.LookupTableSizeV2(table_handle=m),
            )

    assert_matches_tf(fn, [np.array([1, 2, 5, 9], np.int32)], jit=jit)


# -- FakeQuantWithMinMax* gradients -------------------------------------------------------------------------------
def _edges(lo: float, hi: float, num_bits: int, narrow: bool) -> np.ndarray:
    """Inputs around the nudged range's ends (TF's float32 Nudge), NaN and infinities."""
    f32 = np.float32
    qmin, qmax = f32(1 if narrow else 0), f32((1 << num_bits) - 1)
    scale = (f32(hi) - f32(lo)) / (qmax - qmin)
    zero = np.clip(np.round(qmin - f32(lo) / scale), qmin, qmax).astype(f32)
    ends = [(qmin - zero) * scale, (qmax - zero) * scale]
    near = [np.nextafter(e, d, dtype=f32) for e in ends for d in (f32(-np.inf), f32(np.inf))]
    return np.array(ends + near + [0.0, 0.3, -0.7, np.nan, np.inf, -np.inf], f32)


# (min, max, num_bits, narrow_range): the last one's range starts at 0
FAKE_QUANT_CASES = [(-1.0, 1.0, 8, False), (-0.3, 2.2, 4, True), (0.0, 6.0, 16, False)]


@pytest.mark.parametrize(("case", "jit"), zip(FAKE_QUANT_CASES, [True, False, True]), ids=str)
def test_fake_quant_gradients_match_tf(case, jit):
    lo, hi, bits, narrow = case
    x = np.stack([_edges(lo, hi, bits, narrow)] * 2).reshape(2, 2, -1)[..., :12].reshape(2, 4, 3)
    g = np.linspace(-2, 3, x.size, dtype=np.float32).reshape(x.shape)
    kw = dict(num_bits=bits, narrow_range=narrow)
    r = tf.raw_ops

    def fn(g, x, lo_v, hi_v, lo_c, hi_c):
        return (
            r.FakeQuantWithMinMaxArgsGradient(gradients=g, inputs=x, min=lo, max=hi, **kw),
            r.FakeQuantWithMinMaxVarsGradient(gradients=g, inputs=x, min=lo_v, max=hi_v, **kw),
            r.FakeQuantWithMinMaxVarsPerChannelGradient(gradients=g, inputs=x, min=lo_c, max=hi_c, **kw),
        )

    lo_c, hi_c = np.array([lo, lo / 2, -1.0], np.float32), np.array([hi, hi * 2, 0.5], np.float32)
    assert_matches_tf(fn, [g, x, np.float32(lo), np.float32(hi), lo_c, hi_c], jit=jit)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_fake_quant_gradients_rank1_and_empty(jit):
    r = tf.raw_ops

    def fn(g, x, e):
        lo, hi = tf.constant([-1.0, -2.0, 0.0]), tf.constant([1.0, 0.5, 3.0])
        return (
            r.FakeQuantWithMinMaxVarsPerChannelGradient(gradients=g, inputs=x, min=lo, max=hi),
            r.FakeQuantWithMinMaxVarsGradient(gradients=e, inputs=e, min=-1.0, max=1.0),
            r.FakeQuantWithMinMaxArgsGradient(gradients=e, inputs=e),
        )

    g, x = np.array([1.0, 2.0, 3.0], np.float32), np.array([-1.5, 0.7, 3.5], np.float32)
    assert_matches_tf(fn, [g, x, np.zeros((0, 2), np.float32)], jit=jit)


# -- SerializeSparse / DeserializeSparse ------------------------------------------------------------------------
SPARSE_CASES = {
    "float32": (np.array([[0, 0, 1], [0, 2, 0], [2, 1, 1]], np.int64), np.array([1.5, -2.0, 3.0], np.float32)),
    "int64": (np.array([[1, 0, 0], [1, 1, 1]], np.int64), np.array([7, -9], np.int64)),
    "string": (np.array([[0, 1, 1], [2, 0, 0]], np.int64), np.array([b"ab", b""], object)),
    "empty": (np.zeros((0, 3), np.int64), np.zeros((0,), np.int32)),
}


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("case", sorted(SPARSE_CASES))
def test_serialize_sparse_round_trip_matches_tf(case, jit):
    """The serialized bytes are TF's, and deserializing gives TF's SparseTensor (rows of SerializeManySparse with
    no entries included)."""
    indices, values = SPARSE_CASES[case]
    shape = np.array([3, 3, 2], np.int64)

    def fn(i, v, s):
        sp = tf.SparseTensor(i, v, s)
        one = tf.io.serialize_sparse(sp)
        many = tf.io.serialize_many_sparse(sp)
        back = tf.io.deserialize_many_sparse(many, v.dtype)
        stacked = tf.raw_ops.DeserializeSparse(serialized_sparse=tf.stack([[one, one]]), dtype=v.dtype)
        return one, many, back.indices, back.values, back.dense_shape, *stacked

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerFallbackWarning)
        assert_matches_tf(fn, [indices, values, shape], jit=jit)


def test_deserialize_sparse_wrong_dtype_raises():
    def fn(i, v, s):
        return tf.io.deserialize_many_sparse(tf.io.serialize_many_sparse(tf.SparseTensor(i, v, s)), tf.int32).values

    indices, values = SPARSE_CASES["float32"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerFallbackWarning)
        assert_raises_like_tf(fn, [indices, values, np.array([3, 3, 2], np.int64)], jit=False)


@pytest.mark.parametrize(
    "bad",
    [[[1, 1, 2]], [[1, 1, 1], [0, 0, 0]], [[1, 1, 1], [1, 1, 1]], [[-1, 0, 0]]],
    ids=["oob", "order", "dup", "neg"],
)
def test_serialize_many_sparse_checks_indices_like_tf(bad):
    def fn(i, v, s):
        return tf.io.serialize_many_sparse(tf.SparseTensor(i, v, s))

    indices = np.array(bad, np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerFallbackWarning)
        assert_raises_like_tf(fn, [indices, np.ones(len(bad), np.float32), np.array([3, 3, 2], np.int64)], jit=False)


# -- FractionalMaxPool / FractionalAvgPool -------------------------------------------------------------------------
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize(
    ("dtype", "pseudo", "overlapping", "ratio"),
    [
        (np.float32, False, False, [1, 1.44, 1.73, 1]),
        (np.float64, True, False, [1, 1.1, 4.3, 1]),  # 11 / 1.1f is 10 in float32
        (np.int32, False, True, [1, 2.0, 1.5, 1]),
        (np.int64, True, True, [1, 1.5, 2.9, 1]),
    ],
    ids=["float32", "float64-pseudo", "int32-overlapping", "int64-pseudo-overlapping"],
)
def test_fractional_pools_match_tf_when_seeded(dtype, pseudo, overlapping, ratio, jit):
    """With a seed (deterministic) TF's pooling sequences are exactly reproducible: the same sequences and pooled
    values (the average of integers truncates)."""
    x = (np.random.default_rng(1).standard_normal((2, 11, 9, 2)) * 10).astype(dtype)
    if dtype == np.float32:  # TF's max starts from the lowest float: NaN skipped, -inf gives the lowest float
        x[0, :, :, 1], x[1, 3:5, 2:4, 0] = -np.inf, np.nan

    def fn(v):
        kw = dict(pseudo_random=pseudo, overlapping=overlapping, seed=5)
        return tf.nn.fractional_max_pool(v, ratio, **kw), tf.nn.fractional_avg_pool(v, ratio, **kw)

    assert_matches_tf(fn, [x], jit=jit)


def test_fractional_pool_unseeded_regions_are_k_or_k_plus_1():
    """Unseeded (TF seeds at random): only the properties, regions of k or k + 1 covering the input."""
    x = np.arange(2 * 13 * 7 * 1, dtype=np.float32).reshape(2, 13, 7, 1)
    export_dir, _ = save_function(lambda v: tf.nn.fractional_max_pool(v, [1, 1.7, 1.3, 1]), [x])
    out, rows, cols = (np.asarray(t) for t in run_jaxsm(export_dir, [x]))
    for seq, n_in, n_out in ((rows, 13, 7), (cols, 7, 5)):
        assert seq[0] == 0 and seq[-1] == n_in and len(seq) == n_out + 1, f"sequence {seq}"
        assert set(np.diff(seq)) <= {n_in // n_out, n_in // n_out + 1}, f"region sizes {np.diff(seq)}"
    assert out.shape == (2, 7, 5, 1), "output shape"
    np.testing.assert_array_equal(out[:, :, :, 0], x[:, rows[1:] - 1][:, :, cols[1:] - 1, 0], "maxima")


@pytest.mark.parametrize(
    ("dtype", "overlapping", "jit"), [(np.float32, False, True), (np.float64, True, False)], ids=["jit", "eager"]
)
def test_fractional_pool_gradients_match_tf(dtype, overlapping, jit):
    """FractionalMaxPoolGrad/FractionalAvgPoolGrad from tf.GradientTape through seeded pools; ties and a NaN
    in the max pool's input go where TF sends them."""
    x = np.round(np.random.default_rng(2).standard_normal((1, 6, 5, 2)) * 2).astype(dtype)  # ties
    x[0, 5, 4, 1] = np.nan  # never first in its region (TF's gradient kernel then fails its own check)

    def fn(v, w):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(v)
            kw = dict(overlapping=overlapping, seed=3)
            mx = tf.nn.fractional_max_pool(v, [1, 1.6, 1.4, 1], **kw)[0]
            av = tf.nn.fractional_avg_pool(v, [1, 1.6, 1.4, 1], pseudo_random=True, **kw)[0]
            loss_mx = tf.reduce_sum(
                tf.where(tf.math.is_nan(mx), tf.zeros_like(mx), mx) * w[: mx.shape[1], : mx.shape[2]]
            )
            loss_av = tf.reduce_sum(
                tf.where(tf.math.is_nan(av), tf.zeros_like(av), av) * w[: av.shape[1], : av.shape[2]]
            )
        return tape.gradient(loss_mx, v), tape.gradient(loss_av, v)

    w = np.arange(1, 5 * 4 * 2 + 1, dtype=dtype).reshape(5, 4, 2)
    assert_matches_tf(fn, [x, w], jit=jit, rtol=1e-6)
