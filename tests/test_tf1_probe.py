"""TF1 SavedModels (tf.compat.v1 graphs written by the Builder) probed against tf.saved_model.load: how signature
calls convert Python and NumPy inputs, what prune refuses, jaxsm.functional (jit/grad/vmap, training updates) on TF1
signatures, and v1 loops over empty TensorArrays."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

import jaxsm
from jaxsm.errors import EagerFallbackWarning, FunctionMatchError, GraphError, VariableError
from tests.tfcompare import assert_close, v1_graph

tf = pytest.importorskip("tensorflow")
tf1 = tf.compat.v1


def signature(inputs: dict, outputs: dict):
    info = tf1.saved_model.utils.build_tensor_info
    return tf1.saved_model.signature_def_utils.build_signature_def(
        {k: info(v) for k, v in inputs.items()}, {k: info(v) for k, v in outputs.items()}, "tensorflow/serving/predict"
    )


def save(sess, export_dir, signatures: dict) -> str:
    builder = tf1.saved_model.Builder(str(export_dir))
    builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=signatures)
    builder.save()
    return str(export_dir)


# -- signature inputs: TF's convert_to_tensor rules --------------------------------------------------------------
_BASE = {
    "u8": np.array([1, 255], np.uint8),
    "f16": np.array([1.5, -2.0], np.float16),
    "bf": np.array([1.5, 2.0], jax.numpy.bfloat16),
    "b": np.array([True, False]),
    "cx": np.array([1 + 2j], np.complex64),
    "i64": np.array([2, -3], np.int64),
    "k": np.int32(4),
}


@pytest.fixture(scope="module")
def dtypes_model(tmp_path_factory):
    with v1_graph():
        ph = {k: tf1.placeholder(tf.as_dtype(v.dtype), [None] * v.ndim, name=k) for k, v in _BASE.items()}
        outputs = {
            "u8": ph["u8"] + 1,
            "f16": ph["f16"] * 2,
            "bf": ph["bf"] * 3,
            "b": tf.logical_not(ph["b"]),
            "cx": ph["cx"] * ph["cx"],
            "i64": ph["i64"] * 3,
            "k": ph["k"] - 1,
        }
        with tf1.Session() as sess:
            sig = {"serving_default": signature(ph, outputs)}
            export_dir = save(sess, tmp_path_factory.mktemp("dtypes") / "m", sig)
    return jaxsm.load(export_dir), tf.saved_model.load(export_dir).signatures["serving_default"]


def _tf_inputs(inputs: dict) -> dict:
    # TF's constant cannot take ml_dtypes' bfloat16 NumPy arrays: hand it a bfloat16 tensor instead
    return {
        k: tf.constant(v.astype(np.float32), tf.bfloat16) if isinstance(v, np.ndarray) and k == "bf" else v
        for k, v in inputs.items()
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("u8", [300]),  # Python ints wrap, as TF's conversion does
        ("u8", 1.5),  # a Python float into an integer input: TypeError in TF (was silently truncated to 1)
        ("k", 1.5),
        ("k", 7),
        ("k", True),  # bools convert to integers
        ("u8", "abc"),
        ("i64", [1, 2.5]),
        ("i64", [2**70]),
        ("b", 1),  # nothing but bools into bool
        ("b", [True, False]),
        ("f16", [1, 2]),
        ("f16", [1j]),
        ("cx", [1.5]),
        ("bf", [1.0, 2.5]),  # bfloat16 is a floating type
        ("f16", np.array([1.0, 70000.0], np.float32)),  # NumPy arrays are cast, as TF casts them
        ("i64", np.array([2.7, -1.5])),  # TF truncates NumPy floats into integer inputs
        ("k", np.float64(3.9)),
        ("f16", None),
    ],
)
def test_python_and_numpy_inputs_convert_like_tf(dtypes_model, key, value):
    model, tf_fn = dtypes_model
    inputs = {**_BASE, key: value}
    try:
        want = tf_fn(**_tf_inputs(inputs))[key].numpy()
    except TypeError:
        with pytest.raises(FunctionMatchError, match=key):
            model.signatures["serving_default"](**inputs)
        return
    got = model.signatures["serving_default"](**inputs)[key]
    assert_close(got, want, f"{key}={value!r}", atol=0)


def test_tensors_of_the_wrong_dtype_are_refused(dtypes_model):
    """JAX arrays (and TF tensors) are not cast: TF refuses a float64 tensor for a float16 input too."""
    model, tf_fn = dtypes_model
    with pytest.raises((TypeError, tf.errors.InvalidArgumentError)):
        tf_fn(**_tf_inputs({**_BASE, "f16": tf.constant([1.0, 2.0], tf.float64)}))
    with pytest.raises(FunctionMatchError, match="f16"):
        model.signatures["serving_default"](**{**_BASE, "f16": jax.numpy.asarray([1.0, 2.0], jax.numpy.float32)})


# -- prune ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def linear_model(tmp_path_factory):
    """y = x @ w + b (w a ref variable, b a resource variable), a loss and an Adam training signature."""
    x_val = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = tf1.get_variable("w", initializer=np.array([[1.0], [2.0]], np.float32), use_resource=False)
        b = tf1.get_variable("b", initializer=np.array([0.5], np.float32), use_resource=True)
        y = tf.add(tf.matmul(x, w), b, name="y")
        z = tf.identity(y * 2.0, name="z")
        loss = tf.reduce_mean(tf.square(y))
        grads = tf.gradients(tf.reduce_sum(y), [w, b, x])
        train = tf1.train.AdamOptimizer(0.1).minimize(loss)
        with tf.control_dependencies([train]):
            step_loss = tf.identity(loss)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            export_dir = save(
                sess,
                tmp_path_factory.mktemp("linear") / "m",
                {
                    "serving_default": signature({"x": x}, {"y": y, "z": z}),
                    "train": signature({"x": x}, {"loss": step_loss}),
                },
            )
            want = {"y": sess.run(y, {x: x_val}), "grads": sess.run(grads, {x: x_val})}
            want["losses"] = [sess.run(step_loss, {x: x_val}) for _ in range(2)]
            want["trained"] = {v.op.name: sess.run(v) for v in tf1.global_variables()}
    return export_dir, x_val, want


def test_prune_refuses_what_tf_prune_refuses(linear_model):
    export_dir, x_val, _ = linear_model
    ref, model = tf.saved_model.load(export_dir), jaxsm.load(export_dir)
    with pytest.raises(KeyError):
        ref.prune("x:0", "z:5")
    with pytest.raises(KeyError, match="only 1 output"):  # was accepted
        model.prune("x:0", "z:5")
    with pytest.raises(Exception, match="placeholder"):
        ref.prune([], "z:0")
    with pytest.raises(GraphError, match=r"\['x'\]"):  # was accepted, failing only when called
        model.prune([], "z:0")
    assert_close(model.prune("y:0", "z:0")(np.ones((2, 1), np.float32)), np.full((2, 1), 2.0, np.float32), "fed y")


# -- jaxsm.functional on TF1 signatures ------------------------------------------------------------------------------
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_functional_tf1_signature_jit_grad_vmap(linear_model, jit):
    """functional() of a TF1 signature (was an AttributeError): params flat by variable name; jit, grad and vmap
    agree with TF's session (tf.gradients)."""
    export_dir, x_val, want = linear_model
    model = jaxsm.load(export_dir)
    apply, params = jaxsm.functional(model.signatures["serving_default"])
    assert sorted(params) == ["b", "w"] and not apply.assigns, "the variables the signature reads"
    run = jax.jit(apply) if jit else apply
    assert_close(run(params, x=x_val)["y"], want["y"], "y")
    grad = jax.grad(lambda p, x: apply(p, x=x)["y"].sum(), argnums=(0, 1))
    g_params, g_x = jax.jit(grad)(params, x_val) if jit else grad(params, x_val)
    for got, w, what in zip((g_params["w"], g_params["b"], g_x), want["grads"], ("dw", "db", "dx"), strict=True):
        assert_close(got, w, what)
    rows = jax.vmap(lambda row: apply(params, x=row[None])["y"][0])(x_val)
    assert_close(rows, want["y"], "vmap over rows")
    doubled = jaxsm.functional(model.prune("x:0", ["z:0"]))[0](params, x_val)
    assert_close(doubled[0], want["y"] * 2, "a pruned function")


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_functional_tf1_training_signature(linear_model, jit):
    """An Adam training signature (ApplyAdam on a ref variable, ResourceApplyAdam, beta powers) returns (outputs,
    new params); two steps match TF's session, and the model's own variables do not move."""
    export_dir, x_val, want = linear_model
    model = jaxsm.load(export_dir)
    apply, params = jaxsm.functional(model.signatures["train"])
    assert apply.assigns, "a training signature assigns"
    assert "w/Adam" in params and "w" in params, "TF1 names that would collide when nested stay flat"
    run = jax.jit(apply) if jit else apply
    for step in range(2):
        out, params = run(params, x=x_val)
        assert_close(out["loss"], want["losses"][step], f"loss {step}")
    for name, value in want["trained"].items():
        assert_close(params[name], value, f"{name} after 2 steps")
    assert_close(model.variables[0].numpy(), np.array([[1.0], [2.0]], np.float32), "model variables untouched")
    trainable, rest = jaxsm.split_trainable(model.signatures["train"], params)
    assert sorted(trainable) == ["b", "w"] and "w/Adam" in rest, "split_trainable keeps TF1 params flat"
    assert sorted(jaxsm.merge(trainable, rest)) == sorted(params), "merge"


# -- v1 loops ------------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")  # n=0: a size-0 TensorArray's writes
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("n", [0, 1, 3])
def test_loops_over_empty_tensor_arrays(tmp_path_factory, n, jit):
    """A v1 while loop reading an unstacked TensorArray, and map_fn, over an empty input: the body is traced for
    zero iterations (it raised IndexError from JAX's indexing of a size-0 axis)."""
    x_val = np.arange(n, dtype=np.float32) - 1.0
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None], name="x")
        k = tf1.placeholder(tf.int32, [], name="k")  # a second input: the loop body is then traced (IndexError)
        items = tf1.TensorArray(tf.float32, size=tf.shape(x)[0]).unstack(x)
        _, out = tf1.while_loop(
            lambda i, ta: i < tf.shape(x)[0],
            lambda i, ta: (i + 1, ta.write(i, items.read(i) * tf.cast(i, tf.float32))),
            [0, tf1.TensorArray(tf.float32, size=tf.shape(x)[0])],
        )
        outputs = {"ta": out.stack(), "map": tf1.map_fn(lambda v: v * v + 1.0, x), "k": k + 1}
        with tf1.Session() as sess:
            want = sess.run(outputs, {x: x_val, k: 2})
            sig = {"serving_default": signature({"x": x, "k": k}, outputs)}
            export_dir = save(sess, tmp_path_factory.mktemp("ta") / "m", sig)
    fn = jaxsm.load(export_dir).signatures["serving_default"]
    if jit:
        got = fn(x=x_val, k=np.int32(2))
    else:
        apply, params = jaxsm.functional(fn)
        got = apply(params, x=x_val, k=np.int32(2))
    for k in want:
        assert_close(got[k], want[k], k)


# -- signature binding ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fed_tensors_model(tmp_path_factory):
    """Signatures fed an intermediate tensor (h = x @ w), also next to x; one fed the same tensor twice."""
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = tf1.get_variable("w", initializer=np.array([[1.0], [2.0]], np.float32))
        h = tf.matmul(x, w, name="h")
        y = tf.nn.relu(h - 1.0, name="y")
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            root = tmp_path_factory.mktemp("fed")
            good = save(sess, root / "good", {"mixed": signature({"x": x, "h": h}, {"y": y, "h_out": h})})
            twice = save(sess, root / "twice", {"twice": signature({"a": x, "b": x}, {"y": y})})
    return good, twice


def test_positional_arguments_bind_in_sorted_key_order(fed_tensors_model):
    """TF binds positional arguments to a signature's inputs in sorted key order, also next to keywords (jaxsm
    allowed one positional argument only)."""
    good, _ = fed_tensors_model
    tf_fn, fn = tf.saved_model.load(good).signatures["mixed"], jaxsm.load(good).signatures["mixed"]
    h_val, x_val = np.array([[0.5], [3.0]], np.float32), np.ones((2, 2), np.float32)
    want = tf_fn(tf.constant(h_val), tf.constant(x_val))
    for got in (fn(h_val, x_val), fn(h_val, x=x_val), fn(x=x_val, h=h_val)):
        for k in ("y", "h_out"):
            assert_close(got[k], want[k].numpy(), k)
    with pytest.raises(TypeError):
        tf_fn(tf.constant(h_val), h=tf.constant(h_val))
    with pytest.raises(TypeError, match="positional"):
        fn(h_val, h=h_val)
    with pytest.raises(TypeError):
        fn(h_val, x_val, x_val)


def test_a_tensor_fed_twice_is_refused_like_tf(fed_tensors_model):
    """A signature whose two inputs are one tensor: TF refuses to load the SavedModel (jaxsm silently fed it the
    last value); prune with a repeated feed likewise."""
    good, twice = fed_tensors_model
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than once"):
        tf.saved_model.load(twice)
    with pytest.raises(GraphError, match="more than once"):
        jaxsm.load(twice)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.saved_model.load(good).prune(["x:0", "x:0"], "y:0")
    with pytest.raises(GraphError, match="more than once"):
        jaxsm.load(good).prune(["x:0", "x:0"], "y:0")


# -- composite inputs and outputs ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def composite_model(tmp_path_factory):
    """A ragged output (TensorInfo composite_tensor), a ragged input (tf.compat.v1.ragged.placeholder) and a
    sparse one (sparse_placeholder: coo_sparse)."""
    with v1_graph():
        vals = tf1.placeholder(tf.float32, [None], name="vals")
        splits = tf1.placeholder(tf.int64, [None], name="splits")
        doubled = tf.RaggedTensor.from_row_splits(vals, splits) * 2.0
        r = tf1.ragged.placeholder(tf.float32, 1, [], name="r")
        sp = tf1.sparse_placeholder(tf.float32, [None, 3], name="sp")
        outputs = {"doubled": doubled, "rsum": tf.reduce_sum(r, axis=1), "spsum": tf.sparse.reduce_sum(sp, 1)}
        with tf1.Session() as sess:
            sigs = {
                "ragged_out": signature({"vals": vals, "splits": splits}, {"doubled": doubled}),
                "ragged_in": signature({"r": r}, {"rsum": outputs["rsum"]}),
                "sparse_in": signature({"sp": sp, "vals": vals}, {"spsum": outputs["spsum"], "vals": vals}),
            }
            export_dir = save(sess, tmp_path_factory.mktemp("composite") / "m", sigs)
    return export_dir


@pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")
def test_composite_signature_inputs_and_outputs_like_tf(composite_model):
    """A ragged signature output made jaxsm.load fail for the whole model; sparse and ragged inputs now take TF's
    argument names (sp_indices, sp_values, sp_dense_shape; r_component_0, …), positionally too, besides a whole
    SparseTensor/RaggedTensor under the input's key; structured_input_signature is TF's."""
    ref, model = tf.saved_model.load(composite_model), jaxsm.load(composite_model)
    for key in ("ragged_out", "ragged_in", "sparse_in"):
        (_, want), (_, got) = (
            ref.signatures[key].structured_input_signature,
            model.signatures[key].structured_input_signature,
        )
        assert {k: (tuple(s.shape.as_list()), s.dtype.name) for k, s in want.items()} == {
            k: (s.shape, s.dtype.name) for k, s in got.items()
        }, f"{key} input specs"

    vals, splits = np.array([1.0, 2.0, 3.0], np.float32), np.array([0, 2, 2, 3])
    want = ref.signatures["ragged_out"](vals=vals, splits=splits)["doubled"]
    got = model.signatures["ragged_out"](vals=vals, splits=splits)["doubled"]
    assert isinstance(got, jaxsm.RaggedTensor), "a ragged output is a jaxsm.RaggedTensor"
    assert_close(got.flat_values, want.flat_values.numpy(), "ragged values")
    assert_close(got.row_splits, want.row_splits.numpy(), "ragged row splits")

    want = ref.signatures["ragged_in"](r_component_0=vals, r_component_1=splits)["rsum"].numpy()
    fn = model.signatures["ragged_in"]
    assert_close(fn(r_component_0=vals, r_component_1=splits)["rsum"], want, "ragged input by component")
    assert_close(fn(vals, splits)["rsum"], want, "ragged input positionally")
    assert_close(fn(r=jaxsm.RaggedTensor(vals, [splits]))["rsum"], want, "a whole RaggedTensor")
    assert_close(fn(r=tf.RaggedTensor.from_row_splits(vals, splits))["rsum"], want, "a TF RaggedTensor")

    parts = {"sp_indices": np.array([[0, 1], [1, 2]]), "sp_values": np.array([2.0, 3.0], np.float32)}
    parts["sp_dense_shape"] = np.array([2, 3])
    want = ref.signatures["sparse_in"](**parts, vals=vals)["spsum"].numpy()
    fn = model.signatures["sparse_in"]
    assert_close(fn(**parts, vals=vals)["spsum"], want, "sparse input by component (TF's names)")
    assert_close(fn(*parts.values(), vals)["spsum"], want, "positionally, in TF's order")
    assert_close(fn(sp=jaxsm.SparseTensor(*parts.values()), vals=vals)["spsum"], want, "a whole SparseTensor")
    with pytest.raises(TypeError):
        ref.signatures["sparse_in"](sp_indices=parts["sp_indices"], vals=vals)
    with pytest.raises(TypeError, match="missing"):
        fn(sp_indices=parts["sp_indices"], vals=vals)
    with pytest.raises(FunctionMatchError, match="SparseTensor"):
        fn(sp=np.zeros((2, 3), np.float32), vals=vals)


# -- a forward pass of a graph with v1 loop gradients ---------------------------------------------------------------
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_forward_signature_of_a_graph_with_loop_gradients_compiles(tmp_path, jit):
    """tf.gradients of a v1 while loop adds stack pushes to the forward loop; a serving signature saved from that
    graph (simple_save from the training session) pops none of them. It ran op by op (EagerFallbackWarning) and
    jaxsm.functional raised StaticValueError; the dead pushes are now dropped: it compiles, and jax.grad of it
    matches tf.gradients."""
    xs = [np.array([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]], np.float32), np.array([[-1.0, 2.0, 0.0]], np.float32)]
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = tf1.get_variable("w", initializer=np.array([[0.5], [-1.0], [2.0]], np.float32))
        h, steps = tf.matmul(x, w), tf.shape(x)[0]
        _, acc = tf1.while_loop(lambda i, a: i < steps, lambda i, a: (i + 1, a * 0.9 + h[i, 0]), [0, tf.constant(0.0)])
        loss = tf.square(tf1.cond(acc > 0, lambda: acc * w[0, 0], lambda: -acc * w[1, 0]))
        grads = tf.gradients(loss, [w, x])
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            want = [sess.run([loss, *grads], {x: x_val}) for x_val in xs]
            export_dir = save(sess, tmp_path / "m", {"serving_default": signature({"x": x}, {"loss": loss})})
    model = jaxsm.load(export_dir)
    apply, params = jaxsm.functional(model.signatures["serving_default"])
    grad = jax.grad(lambda p, x: apply(p, x=x)["loss"], argnums=(0, 1))
    for x_val, (loss_val, dw, dx) in zip(xs, want, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("error", EagerFallbackWarning)  # compiled, not op by op
            assert_close(model.signatures["serving_default"](x=x_val)["loss"], loss_val, "loss", rtol=1e-5)
        g_params, g_x = jax.jit(grad)(params, x_val) if jit else grad(params, x_val)
        assert_close(g_params["w"], dw, "dloss/dw", rtol=1e-5)
        assert_close(g_x, dx, "dloss/dx", rtol=1e-5)
    # a function that pops the stacks (the gradients themselves) still runs op by op, as before
    with pytest.warns(EagerFallbackWarning, match="stack"):
        got = model.prune("x:0", [g.name for g in grads])(xs[0])
    assert_close(got[0], want[0][1], "tf.gradients through the v1 loop, pruned", rtol=1e-5)


# -- Savers that restore some variables, under other names ------------------------------------------------------------
@pytest.mark.parametrize("saver", ["subset", "renamed"])
def test_variables_the_saver_does_not_restore_stay_uninitialized(tmp_path, saver):
    """A Builder given Saver([w]) restores w only: TF loads the model and only a signature reading the other
    variable fails (jaxsm refused to load it); a Saver({'renamed/kernel': w, …}) restores under other names."""
    with v1_graph():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = tf1.get_variable("w", initializer=np.array([[1.0], [2.0]], np.float32))
        u = tf1.get_variable("unsaved", initializer=np.array([5.0], np.float32))
        y = tf.matmul(x, w)
        var_list = [w] if saver == "subset" else {"renamed/kernel": w, "other/u": u}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            builder = tf1.saved_model.Builder(str(tmp_path / "m"))
            sigs = {"y": signature({"x": x}, {"y": y}), "u": signature({"x": x}, {"yu": y + u})}
            builder.add_meta_graph_and_variables(
                sess, ["serve"], signature_def_map=sigs, saver=tf1.train.Saver(var_list)
            )
            builder.save()
    ref, model = tf.saved_model.load(str(tmp_path / "m")), jaxsm.load(str(tmp_path / "m"))
    x_val = np.ones((1, 2), np.float32)
    assert_close(model.signatures["y"](x=x_val)["y"], ref.signatures["y"](x=x_val)["y"].numpy(), "y")
    if saver == "renamed":
        assert_close(model.signatures["u"](x=x_val)["yu"], ref.signatures["u"](x=x_val)["yu"].numpy(), "y + u")
        return
    # TF reads the uninitialized variable as whatever its buffer holds (garbage, or an error): jaxsm raises
    with pytest.raises(VariableError, match="unsaved"):
        model.signatures["u"](x=x_val)
