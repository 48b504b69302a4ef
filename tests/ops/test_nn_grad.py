"""Second-order and legacy gradient ops of nn.py against TF: MaxPoolGradGrad(V2), MaxPool3DGrad(Grad),
MaxPoolGradGradWithArgmax (GPU-only in TF: checked against its definition), with ties, padding and a given
orig_output that is not the true maximum."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import JaxsmError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

R = tf.raw_ops
RNG = np.random.default_rng(0)

POOL2D = [
    ([1, 2, 2, 1], [1, 2, 2, 1], "VALID"),
    ([1, 3, 3, 1], [1, 2, 2, 1], "SAME"),
    ([1, 2, 3, 1], [1, 1, 2, 1], "SAME"),
]
POOL3D = [([1, 2, 2, 2, 1], [1, 2, 2, 2, 1], "VALID"), ([1, 3, 2, 3, 1], [1, 2, 1, 2, 1], "SAME")]


def _ties(shape, dtype):
    """Values on a coarse grid so windows hold ties, and one +inf."""
    x = np.round(RNG.normal(size=shape) * 2).astype(dtype)
    x.flat[3] = np.inf
    return x


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ksize,strides,padding", POOL2D, ids=str)
def test_max_pool_grad_grad(ksize, strides, padding, dtype, jit):
    x, g = _ties((2, 5, 6, 3), dtype), RNG.normal(size=(2, 5, 6, 3)).astype(dtype)

    def fn(x, g):
        out = R.MaxPool(input=x, ksize=ksize, strides=strides, padding=padding)
        # a given orig_output that differs from the maximum in places: TF matches it, not the true maximum
        shifted = tf.where(out > 1, out - 1, out)
        return {
            "v1": R.MaxPoolGradGrad(
                orig_input=x, orig_output=shifted, grad=g, ksize=ksize, strides=strides, padding=padding
            ),
            "v2": R.MaxPoolGradGradV2(
                orig_input=x, orig_output=out, grad=g, ksize=ksize, strides=strides, padding=padding
            ),
        }

    assert_matches_tf(fn, [x, g], jit=jit)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("ksize,strides,padding", POOL3D, ids=str)
def test_max_pool3d_grad_and_grad_grad(ksize, strides, padding, jit):
    x = _ties((2, 4, 3, 5, 2), np.float32)
    x.flat[7] = x.flat[8] + 5e-6  # within TF's 1e-5 tolerance of a neighbour
    g = RNG.normal(size=x.shape).astype(np.float32)

    def fn(x, g):
        out = R.MaxPool3D(input=x, ksize=ksize, strides=strides, padding=padding)
        dy = tf.reshape(tf.range(tf.size(out), dtype=tf.float32), tf.shape(out)) + 1
        return {
            "grad": R.MaxPool3DGrad(
                orig_input=x, orig_output=out, grad=dy, ksize=ksize, strides=strides, padding=padding
            ),
            "gradgrad": R.MaxPool3DGradGrad(
                orig_input=x, orig_output=out, grad=g, ksize=ksize, strides=strides, padding=padding
            ),
        }

    assert_matches_tf(fn, [x, g], jit=jit, rtol=1e-6)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("include_batch", [False, True])
def test_max_pool_grad_grad_with_argmax(include_batch, jit):
    x = RNG.normal(size=(2, 4, 5, 3)).astype(np.float32)
    g = RNG.normal(size=x.shape).astype(np.float32)
    attrs = dict(ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME", include_batch_in_index=include_batch)

    def fn(x, g):
        _, argmax = R.MaxPoolWithArgmax(input=x, **attrs)
        return R.MaxPoolGradGradWithArgmax(input=x, grad=g, argmax=argmax, **attrs)

    export_dir, _ = save_function(fn, [x, g])
    got = np.asarray(run_jaxsm(export_dir, [x, g], jit=jit))
    _, argmax = R.MaxPoolWithArgmax(input=x, **attrs)
    flat = argmax.numpy()
    if not include_batch:
        flat = flat + (np.arange(2) * x[0].size)[:, None, None, None]
    np.testing.assert_array_equal(got, g.reshape(-1)[flat], err_msg="gradgrad")


def test_max_pool_grad_grad_shape_error():
    x, out = np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 3, 3, 1), np.float32)

    def fn(x, out):
        return R.MaxPoolGradGrad(
            orig_input=x, orig_output=out, grad=x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID"
        )

    export_dir, tf_fn = save_function(fn, [x, out], shapes=[x.shape, (1, None, None, 1)])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(x, out)
    with pytest.raises(JaxsmError, match="orig_output"):
        run_jaxsm(export_dir, [x, out])


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize(
    "strides,rates,padding", [([1, 1, 1, 1], [1, 1, 1, 1], "VALID"), ([1, 2, 1, 1], [1, 1, 2, 1], "SAME")]
)
def test_dilation2d_backprop(strides, rates, padding, dtype, jit):
    x = np.round(RNG.normal(size=(2, 5, 6, 3)) * 2).astype(dtype)  # ties: TF keeps the first maximum
    w = np.round(RNG.normal(size=(2, 3, 3))).astype(dtype)
    if dtype != np.int32:
        x[0, :2, :3, 0] = np.nan  # no tap qualifies: TF's fallback positions
        x[1, 1, 1, 1] = -np.inf

    def fn(x, w):
        y = R.Dilation2D(input=x, filter=w, strides=strides, rates=rates, padding=padding)
        dy = tf.reshape(tf.range(1, tf.size(y) + 1), tf.shape(y))
        dy = tf.cast(dy, y.dtype)
        kwargs = dict(input=x, filter=w, out_backprop=dy, strides=strides, rates=rates, padding=padding)
        return {"input": R.Dilation2DBackpropInput(**kwargs), "filter": R.Dilation2DBackpropFilter(**kwargs)}

    assert_matches_tf(fn, [x, w], jit=jit)


def retype_nodes(
    export_dir: str,
    old: str,
    new: str,
    inputs: dict[int, str],
    attrs: dict | None = None,
    outputs: dict[str, str] | None = None,
) -> None:
    """Rewrite every ``old`` node of a saved function into the deprecated ``new`` op TF no longer builds or runs:
    replace the given inputs (position -> the function argument's name), set ``attrs`` (name -> AttrValue
    keywords; every other attr is dropped when given) and rename the node's outputs where they are read
    (``{"output:0": "result:0"}``)."""
    from tensorflow.core.framework import attr_value_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    path = f"{export_dir}/saved_model.pb"
    sm = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        sm.ParseFromString(f.read())
    for func in sm.meta_graphs[0].graph_def.library.function:
        renames = {}
        for node in func.node_def:
            if node.op == old:
                node.op = new
                for i, name in inputs.items():
                    node.input[i] = name
                if attrs is not None:
                    node.ClearField("attr")
                    for key, value in attrs.items():
                        node.attr[key].CopyFrom(attr_value_pb2.AttrValue(**value))
                renames.update({f"{node.name}:{a}": f"{node.name}:{b}" for a, b in (outputs or {}).items()})
        for node in func.node_def:
            node.input[:] = [renames.get(i, i) for i in node.input]
        for key, value in list(func.ret.items()):
            func.ret[key] = renames.get(value, value)
    with open(path, "wb") as f:
        f.write(sm.SerializeToString())


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_conv3d_backprop_v1(padding, jit):
    """Conv3DBackpropInput/Filter (v1, removed in GraphDef 10) take the input and filter tensors themselves,
    where V2 takes their shapes: the same results as V2."""
    x = RNG.normal(size=(2, 4, 5, 3, 2)).astype(np.float32)
    w = RNG.normal(size=(2, 3, 2, 2, 3)).astype(np.float32)
    attrs = dict(strides=[1, 2, 1, 1, 1], padding=padding)
    dy = np.asarray(tf.nn.conv3d(x, w, **attrs))

    def fn(x, w, dy):
        return {
            "input": R.Conv3DBackpropInputV2(input_sizes=tf.shape(x), filter=w, out_backprop=dy, **attrs),
            "filter": R.Conv3DBackpropFilterV2(input=x, filter_sizes=tf.shape(w), out_backprop=dy, **attrs),
        }

    export_dir, tf_fn = save_function(fn, [x, w, dy])
    retype_nodes(export_dir, "Conv3DBackpropInputV2", "Conv3DBackpropInput", {0: "x"})
    retype_nodes(export_dir, "Conv3DBackpropFilterV2", "Conv3DBackpropFilter", {1: "w"})
    expected = tf_fn(x, w, dy)
    got = run_jaxsm(export_dir, [x, w, dy], jit=jit)
    for key in ("input", "filter"):
        np.testing.assert_allclose(np.asarray(got[key]), expected[key].numpy(), rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
@pytest.mark.parametrize(
    "ksizes,strides,padding",
    [([1, 2, 2, 2, 1], [1, 1, 1, 1, 1], "VALID"), ([1, 3, 1, 2, 1], [1, 2, 3, 1, 1], "SAME")],
    ids=str,
)
def test_extract_volume_patches(ksizes, strides, padding, dtype, jit):
    x = np.arange(2 * 4 * 5 * 3 * 2).reshape(2, 4, 5, 3, 2).astype(dtype)

    def fn(x):
        return R.ExtractVolumePatches(input=x, ksizes=ksizes, strides=strides, padding=padding)

    assert_matches_tf(fn, [x], jit=jit)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("scale", [True, False])
def test_batch_norm_with_global_normalization(scale, jit):
    """Removed in GraphDef 9: saved as IdentityN nodes with the same inputs, then retyped; checked against
    batch_norm_op.h's formulas (in float64)."""
    t = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    m, beta, gamma = (RNG.normal(size=4).astype(np.float32) for _ in range(3))
    v = RNG.uniform(0.5, 2, size=4).astype(np.float32)
    dy = RNG.normal(size=t.shape).astype(np.float32)
    eps = 0.01
    attrs = {"T": dict(type=1), "variance_epsilon": dict(f=eps), "scale_after_normalization": dict(b=scale)}

    forward = [t, m, v, beta, gamma]
    export_dir, _ = save_function(lambda *a: R.IdentityN(input=list(a))[0], forward)
    retype_nodes(export_dir, "IdentityN", "BatchNormWithGlobalNormalization", {}, attrs, {"output:0": "result:0"})
    y = np.asarray(run_jaxsm(export_dir, forward, jit=jit))

    backward = [t, m, v, gamma, dy]
    export_dir, _ = save_function(lambda *a: R.IdentityN(input=list(a)), backward)
    names = {f"output:{i}": f"{n}:0" for i, n in enumerate(["dx", "dm", "dv", "db", "dg"])}
    retype_nodes(export_dir, "IdentityN", "BatchNormWithGlobalNormalizationGrad", {}, attrs, names)
    grads = [np.asarray(g) for g in run_jaxsm(export_dir, backward, jit=jit)]

    t64, m64, v64, g64, dy64 = (a.astype(np.float64) for a in backward)
    inv_std = 1 / np.sqrt(v64 + eps)
    factor = inv_std * (g64 if scale else 1.0)
    centered = np.sum(dy64 * (t64 - m64), axis=(0, 1))
    expected = {
        "result": (t64 - m64) * factor + beta,
        "dx": dy64 * factor,
        "dm": -dy64.sum(axis=(0, 1)) * factor,
        "dv": centered * -0.5 * inv_std / (v64 + eps) * (g64 if scale else 1.0),
        "db": dy64.sum(axis=(0, 1)),
        "dg": centered * inv_std if scale else np.zeros(4),
    }
    for (name, e), g in zip(expected.items(), [y, *grads], strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6, err_msg=name)
