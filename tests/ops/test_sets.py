"""Set ops (tf.sets) and EditDistance against TF: integer and string values, dense and sparse inputs, rank 2 and 3,
unsorted inputs TF accepts, empty sets and invalid inputs."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import JaxsmError  # noqa: E402
from tests.tfcompare import run_jaxsm, save_function  # noqa: E402

R = tf.raw_ops
I64 = tf.int64

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")


def _strings(words):
    out = np.empty(len(words), object)
    out[:] = [w.encode() for w in words]
    return out


def _check(fn, inputs):
    """Save ``fn`` once; jaxsm's outputs with and without jit must equal TF's."""
    inputs = [np.asarray(x) for x in inputs]
    export_dir, tf_fn = save_function(fn, inputs)
    expected = tf.nest.flatten(tf_fn(*inputs))
    for jit in (True, False):
        got = tf.nest.flatten(run_jaxsm(export_dir, inputs, jit=jit))
        assert len(got) == len(expected), f"jit={jit}: {len(got)} outputs != TF's {len(expected)}"
        for k, (e, g) in enumerate(zip(expected, got)):
            e, g = e.numpy(), np.asarray(g)
            assert (e.shape, e.dtype) == (g.shape, g.dtype), f"jit={jit} output {k}: {g.shape} {g.dtype} != TF's"
            np.testing.assert_array_equal(g, e, err_msg=f"jit={jit} output {k}")


def _check_error(fn, inputs, match):
    inputs = [np.asarray(x) for x in inputs]
    export_dir, tf_fn = save_function(fn, inputs)
    with pytest.raises((tf.errors.InvalidArgumentError, tf.errors.InternalError)):
        tf_fn(*inputs)
    with pytest.raises(JaxsmError, match=match):
        run_jaxsm(export_dir, inputs)


OPS = ("a-b", "b-a", "intersection", "union")


@pytest.mark.parametrize("kind", ["int32", "int64", "string"])
def test_set_operations(kind):
    a = np.array([[[3, 1, 1, 2], [0, 5, 3, 3]], [[7, 7, 7, 7], [2, 4, 6, 8]]])  # rank 3: groups [2, 2]
    b = np.array([[[1, 7], [0, 9]], [[7, 1], [5, 3]]])
    sp_i = np.array([[0, 0, 0], [0, 0, 2], [0, 1, 0], [1, 1, 1], [1, 1, 3]], np.int64)
    sp_v = np.array([1, 4, 9, 4, 6])
    if kind == "string":
        a, b, sp_v = (_strings([f"w{v}" for v in x.reshape(-1)]).reshape(x.shape) for x in (a, b, sp_v))
        a[0, 0, 0] = b""
    else:
        a, b, sp_v = a.astype(kind), b.astype(kind), sp_v.astype(kind)

    def fn(a, b, si, sv):
        shape = tf.constant([2, 2, 5], I64)
        out = {}
        for name in OPS:
            out["dd" + name] = tuple(R.DenseToDenseSetOperation(set1=a, set2=b, set_operation=name))
            out["ds" + name] = tuple(
                R.DenseToSparseSetOperation(
                    set1=a, set2_indices=si, set2_values=sv, set2_shape=shape, set_operation=name
                )
            )
            out["ss" + name] = tuple(
                R.SparseToSparseSetOperation(
                    set1_indices=si[1:],
                    set1_values=sv[1:],
                    set1_shape=shape,
                    set2_indices=si,
                    set2_values=sv,
                    set2_shape=shape,
                    set_operation=name,
                )
            )
        out["size"] = R.SetSize(set_indices=si, set_values=sv, set_shape=shape)
        out["empty"] = tuple(
            R.SparseToSparseSetOperation(
                set1_indices=si[:0],
                set1_values=sv[:0],
                set1_shape=shape,
                set2_indices=si[:0],
                set2_values=sv[:0],
                set2_shape=shape,
                set_operation="union",
            )
        )
        return out

    _check(fn, [a, b, sp_i, sp_v])


def test_set_operations_unsorted_without_validation():
    def fn(si, sv):
        shape = tf.constant([3, 4], I64)
        kw = dict(set1_indices=si, set1_values=sv, set1_shape=shape, validate_indices=False)
        return {
            name: tuple(
                R.SparseToSparseSetOperation(
                    set2_indices=si[1:], set2_values=sv[1:], set2_shape=shape, set_operation=name, **kw
                )
            )
            for name in OPS
        } | {"size": R.SetSize(set_indices=si, set_values=sv, set_shape=shape, validate_indices=False)}

    si = np.array([[2, 1], [0, 1], [0, 0], [2, 0], [0, 3]], np.int64)  # group 0 split into two runs
    _check(fn, [si, np.array([5, 4, 4, 2, 7], np.int64)])


@pytest.mark.parametrize(
    "case,match",
    [
        ("unsorted", "out of order"),
        ("repeated", "repeated"),
        ("out_of_bounds", "out of bounds"),
        ("mismatch", "mismatched shapes"),
        ("bad_op", "set_operation"),
    ],
)
def test_set_operation_errors(case, match):
    def fn(v):
        if case == "bad_op":
            return tuple(R.DenseToDenseSetOperation(set1=[v], set2=[v], set_operation="xor"))
        i = {"unsorted": [[0, 1], [0, 0]], "repeated": [[0, 1], [0, 1]], "out_of_bounds": [[0, 1], [5, 0]]}
        si = tf.constant(i.get(case, [[0, 0], [0, 1]]), I64)
        shape2 = tf.constant([4, 3] if case == "mismatch" else [3, 3], I64)
        return tuple(
            R.SparseToSparseSetOperation(
                set1_indices=si,
                set1_values=v,
                set1_shape=tf.constant([3, 3], I64),
                set2_indices=si,
                set2_values=v,
                set2_shape=shape2,
                set_operation="union",
            )
        )

    _check_error(fn, [np.array([1, 2], np.int32)], match)


def _edit_distance(hi, hv, hs, ti, tv, ts, normalize):
    return R.EditDistance(
        hypothesis_indices=hi,
        hypothesis_values=hv,
        hypothesis_shape=tf.constant(hs, I64),
        truth_indices=ti,
        truth_values=tv,
        truth_shape=tf.constant(ts, I64),
        normalize=normalize,
    )


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("kind", ["string", "int64", "float32"])
def test_edit_distance(kind, normalize):
    h_i = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2], [1, 0, 0], [1, 1, 0], [1, 1, 1]], np.int64)
    t_i = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 1, 0], [1, 1, 1], [1, 1, 2]], np.int64)
    h_v, t_v = [3, 1, 2, 5, 6, 7], [3, 2, 9, 7, 6, 5]
    if kind == "string":
        h_v, t_v = _strings([f"w{v}" for v in h_v]), _strings([f"w{v}" for v in t_v])
    else:
        h_v, t_v = np.array(h_v, kind), np.array(t_v, kind)
        if kind == "float32":
            h_v[0] = t_v[0] = np.nan  # NaN never equals NaN

    def fn(hi, hv, ti, tv):
        return {
            "rank3": _edit_distance(hi, hv, [2, 2, 3], ti, tv, [2, 3, 4], normalize),
            # unsorted: TF takes each run of equal groups in the given order
            "unsorted": _edit_distance(hi[::-1], hv[::-1], [2, 2, 3], ti, tv, [2, 2, 4], normalize),
            "empty": _edit_distance(hi[:0], hv[:0], [3, 1, 3], ti[:0], tv[:0], [2, 2, 4], normalize),
            "truth_only": _edit_distance(hi[:0], hv[:0], [2, 2, 3], ti, tv, [2, 3, 4], normalize),
        }

    _check(fn, [h_i, h_v, t_i, t_v])


def test_edit_distance_errors():
    def fn(v, ts):  # a run-time truth shape: TF's shape inference would catch a constant one
        i = tf.constant([[0]], I64)
        kw = dict(hypothesis_shape=tf.constant([2], I64), truth_indices=i, truth_values=v, truth_shape=ts)
        return R.EditDistance(hypothesis_indices=i, hypothesis_values=v, **kw)

    _check_error(fn, [np.array([1], np.int32), np.array([2], np.int64)], "at least 2")
