"""Special-function, device and debug ops of math.py against TF: IgammaGradA, Fact, Copy/CopyHost, CheckPinned,
DeviceIndex, Timestamp (close to time.time()), TileGrad (no runnable TF kernel: checked against its definition) and
ApproxTopK (TF's CPU kernel: max-k over the last dimension; the other modes against TopKV2)."""

import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import JaxsmError  # noqa: E402
from tests.ops.test_nn_grad import retype_nodes  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

R = tf.raw_ops


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_igamma_grad_a(dtype, jit):
    a = np.array([0.5, 1.0, 2.5, 7.0, 0.1, 3.0], dtype)
    x = np.array([[0.2, 1.0, 3.0, 5.0, 0.0, 10.0]], dtype)
    assert_matches_tf(
        lambda a, x: R.IgammaGradA(a=a, x=tf.broadcast_to(x, [2, 6]) * [[1], [2]]),
        [a, x],
        rtol=1e-4,
        atol=1e-6,
        jit=jit,
    )


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "x", [np.arange(6, dtype=np.int32).reshape(2, 3), np.float64(2.5), np.zeros((0, 2), np.float32)], ids=str
)
def test_fact_copy_device_index(x, jit):
    def fn(x):
        return {
            "copy": R.Copy(input=x),
            "copy_host": R.CopyHost(input=x, tensor_name="t"),
            "cpu": R.DeviceIndex(device_names=["GPU", "CPU"]),
            "none": R.DeviceIndex(device_names=["GPU", "TPU"]),
        }

    assert_matches_tf(fn, [x], jit=jit)


def test_fact():
    assert_matches_tf(lambda x: {"fact": R.Fact(), "x": x}, [np.float32(1)], jit=False)


def test_check_pinned():
    x = np.ones(3, np.float32)
    export_dir, tf_fn = save_function(lambda x: R.CheckPinned(tensor=x), [x])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(x)
    with pytest.raises(JaxsmError, match="not pinned"):
        run_jaxsm(export_dir, [x])


@pytest.mark.parametrize("jit", [True, False])
def test_timestamp(jit):
    """Random by nature: only closeness to the host clock, and a fresh value on every compiled call."""
    x = np.float32(0)
    export_dir, _ = save_function(lambda x: R.Timestamp() + tf.cast(x, tf.float64), [x])
    before = time.time()
    first = float(run_jaxsm(export_dir, [x], jit=jit))
    time.sleep(0.01)
    second = float(run_jaxsm(export_dir, [x], jit=jit))
    assert before - 1 <= first <= second <= time.time() + 1, "timestamps"
    assert second > first, "a later call reads the clock again"


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("multiples", [[1, 3], [2, 1], [2, 3]])
def test_tile_grad(multiples, jit):
    """TileGrad was removed in GraphDef 3: saved as Tile, then the node is retyped."""
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    export_dir, _ = save_function(lambda x: R.Tile(input=x, multiples=multiples), [x])
    retype_nodes(export_dir, "Tile", "TileGrad", {})
    got = np.asarray(run_jaxsm(export_dir, [x], jit=jit))
    m, n = 4 // multiples[0], 6 // multiples[1]
    expected = x.reshape(multiples[0], m, multiples[1], n).sum(axis=(0, 2))
    np.testing.assert_array_equal(got, expected, err_msg="TileGrad")


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_approx_top_k(dtype, jit):
    x = np.array([[1, 3, 3, -2, 2, -0.0, 0.0, 5], [0, 0, -1, 4, 4, 4, 1, 1]], dtype)

    def fn(x):
        values, indices = R.ApproxTopK(input=x, k=4)
        return {"values": values, "indices": indices}

    assert_matches_tf(fn, [x], jit=jit)

    def other_modes(x):
        low = R.ApproxTopK(input=x, k=3, is_max_k=False)
        cols = R.ApproxTopK(input=x, k=1, reduction_dimension=0)
        return [low.values, low.indices, cols.values, cols.indices]

    export_dir, _ = save_function(other_modes, [x])
    got = run_jaxsm(export_dir, [x], jit=jit)
    low = tf.math.top_k(-x, 3)
    cols = tf.math.top_k(x.T, 1)
    expected = [-low.values.numpy(), low.indices.numpy(), cols.values.numpy().T, cols.indices.numpy().T]
    for name, g, e in zip(["min values", "min indices", "axis-0 values", "axis-0 indices"], got, expected):
        np.testing.assert_array_equal(np.asarray(g), e, err_msg=name)


_BESSEL_OPS = ["BesselJ0", "BesselJ1", "BesselY0", "BesselY1", "BesselK0", "BesselK0e", "BesselK1", "BesselK1e"]
_BESSEL_X = np.concatenate(
    [np.linspace(-30, 30, 241), np.geomspace(1e-6, 150, 60), [0.0, -0.0, 2.0, 5.0, np.inf, -np.inf, np.nan]]
)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bessel_functions(dtype, jit):
    """Eigen's float and double Cephes algorithms (both sides of each branch point, zeros of J/Y, the poles and
    NaN/inf). J/Y within a few ulp; K's log-term branch (x < 2) within ~20 ulp (gaps.py)."""
    x = _BESSEL_X.astype(dtype)
    fn = lambda x: {name: getattr(R, name)(x=x) for name in _BESSEL_OPS}  # noqa: E731
    jy_tol, k_tol = (1e-6, 3e-6) if dtype == np.float32 else (1.2e-15, 3e-15)
    export_dir, tf_fn = save_function(fn, [x])
    want, got = tf_fn(x), run_jaxsm(export_dir, [x], jit=jit)
    for name in _BESSEL_OPS:
        tol = jy_tol if name[6] in "JY" else k_tol
        w, g = want[name].numpy(), np.asarray(got[name])
        assert g.dtype == w.dtype and g.shape == w.shape, name
        np.testing.assert_allclose(g, w, rtol=tol, atol=0, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "x", [np.float32(3.5), np.linspace(0.1, 9, 12).reshape(2, 3, 2).astype(np.float16), np.zeros((0, 2))], ids=str
)
def test_bessel_shapes_and_half(x, jit):
    def fn(x):
        return [R.BesselJ1(x=x), R.BesselY0(x=x), R.BesselK1e(x=x)]

    assert_matches_tf(fn, [x], rtol=1e-3 if x.dtype == np.float16 else 3e-6, jit=jit)
