"""Feature crosses against TF: SparseCross, SparseCrossV2 and SparseCrossHashed through tf.raw_ops,
tf.sparse.cross / cross_hashed, and Keras' HashedCrossing layer in an exported model."""

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import jaxsm  # noqa: E402
from jaxsm.errors import JaxsmError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

R = tf.raw_ops

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")


def _words(*words: str) -> np.ndarray:
    out = np.empty(len(words), dtype=object)
    out[:] = [w.encode() for w in words]
    return out


def _sparse(rows: list[list], strings: bool) -> tuple:
    """A [len(rows), 4] SparseTensor's (indices, values, dense_shape), entries sorted by row."""
    index = [[b, k] for b, row in enumerate(rows) for k in range(len(row))]
    flat = [v for row in rows for v in row]
    values = _words(*flat) if strings else np.asarray(flat, np.int64)
    return ("sparse", np.asarray(index, np.int64).reshape(-1, 2), values, np.asarray([len(rows), 4], np.int64))


def _dense(rows: list[list], strings: bool) -> tuple:
    values = np.asarray(rows, dtype=object if strings else np.int64)
    if strings:
        values = np.vectorize(lambda w: w.encode(), otypes=[object])(values).reshape(np.shape(rows))
    return ("dense", values)


# Batch 3 columns; row 1 of S_WORDS is empty, S_NONE has no entries at all.
S_WORDS = _sparse([["a", "bb"], [], ["c"]], strings=True)
S_INTS = _sparse([[1], [-2, 3], [2**40, 0, -(2**63)]], strings=False)
S_NONE = _sparse([[], [], []], strings=True)
D_WORDS = _dense([["x"], ["yy"], ["long string " * 9]], strings=True)
D_INTS = _dense([[7, -8], [2**62, 9], [0, -1]], strings=False)

CASES = {
    "words": [S_WORDS],
    "ints": [S_INTS],
    "words_ints": [S_WORDS, S_INTS],
    "ints_dense_words": [S_INTS, D_WORDS],
    "dense_only": [D_WORDS, D_INTS],
    "three": [S_WORDS, S_INTS, D_INTS],
    "three_dense_first": [S_INTS, D_WORDS, D_INTS],
    "all_rows_empty": [S_INTS, S_NONE],
}


def _flat(columns: list[tuple]) -> tuple[list, list]:
    """Flat inputs ordered as the ops take them (indices, values, shapes, dense), and the column kinds."""
    sparse = [c[1:] for c in columns if c[0] == "sparse"]
    dense = [c[1] for c in columns if c[0] == "dense"]
    return [s[0] for s in sparse] + [s[1] for s in sparse] + [s[2] for s in sparse] + dense, len(sparse)


def _split(args: tuple, n: int) -> dict:
    return {
        "indices": args[:n],
        "values": args[n : 2 * n],
        "shapes": args[2 * n : 3 * n],
        "dense_inputs": args[3 * n :],
    }


def _out(sp) -> dict:
    if isinstance(sp, tf.SparseTensor):
        return {"indices": sp.indices, "values": sp.values, "shape": sp.dense_shape}
    return {"indices": sp[0], "values": sp[1], "shape": sp[2]}


def _has_ints(columns: list[tuple]) -> bool:
    return any((c[2] if c[0] == "sparse" else c[1]).dtype != object for c in columns)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("case", CASES)
def test_sparse_cross_v2(case, jit):
    inputs, n = _flat(CASES[case])

    def fn(*args):
        return _out(R.SparseCrossV2(**_split(args, n), sep=tf.constant("<+>")))

    assert_matches_tf(fn, inputs, jit=jit)


@pytest.mark.parametrize("case", CASES)
def test_sparse_cross_strings(case):
    columns = CASES[case]
    inputs, n = _flat(columns)
    internal = tf.int64 if _has_ints(columns) else tf.string

    def fn(*args):
        out = R.SparseCross(
            **_split(args, n),
            hashed_output=False,
            num_buckets=0,
            hash_key=0,
            out_type=tf.string,
            internal_type=internal,
        )
        return _out(out)

    assert_matches_tf(fn, inputs)


@pytest.mark.parametrize(
    "num_buckets,hash_key",
    [(0, 0xDECAFCAFFE), (1, 0xDECAFCAFFE), (7, 3), (7, -5), (2**62 + 3, 2**63 - 1), (0, -(2**63))],
    ids=str,
)
@pytest.mark.parametrize("case", CASES)
def test_sparse_cross_hashed_output(case, num_buckets, hash_key):
    columns = CASES[case]
    inputs, n = _flat(columns)
    internal = tf.int64 if _has_ints(columns) else tf.string

    def fn(*args):
        out = R.SparseCross(
            **_split(args, n),
            hashed_output=True,
            num_buckets=num_buckets,
            hash_key=hash_key,
            out_type=tf.int64,
            internal_type=internal,
        )
        return _out(out)

    assert_matches_tf(fn, inputs)


@pytest.mark.parametrize("strong", [False, True])
@pytest.mark.parametrize("num_buckets", [0, 1, 7, 2**62 + 3, -4])
@pytest.mark.parametrize("case", ["words", "ints", "words_ints", "all_rows_empty", "dense_words"])
def test_sparse_cross_hashed(case, num_buckets, strong):
    columns = {**CASES, "dense_words": [S_INTS, D_WORDS, D_WORDS]}[case]
    inputs, n = _flat(columns)

    def fn(num_buckets, salt, *args):
        out = R.SparseCrossHashed(**_split(args, n), num_buckets=num_buckets, strong_hash=strong, salt=salt)
        return _out(out)

    for salt in ([0, 0], [3, -(2**63)]):
        assert_matches_tf(fn, [np.int64(num_buckets), np.asarray(salt, np.int64), *inputs])


def test_sparse_cross_hashed_dense_ints():
    """An int64 dense column is used as is (not hashed) without strong_hash."""
    inputs, n = _flat([S_WORDS, D_INTS, S_INTS])

    def fn(*args):
        return _out(R.SparseCrossHashed(**_split(args, n), num_buckets=0, strong_hash=False, salt=[1, 2]))

    assert_matches_tf(fn, inputs)


def test_sparse_cross_hashed_strong_dense_ints_raises():
    """TF's kernel crashes (segfaults) on this; jaxsm says so instead."""
    inputs, n = _flat([D_INTS])

    def fn(*args):
        return _out(R.SparseCrossHashed(**_split(args, n), num_buckets=0, strong_hash=True, salt=[1, 2]))

    export_dir, _ = save_function(fn, inputs)
    with pytest.raises(JaxsmError, match="strong_hash"):
        run_jaxsm(export_dir, inputs)


def test_unsorted_rows_are_skipped():
    """The kernel walks each input's indices in order: an entry whose row comes out of order is dropped."""
    indices = np.asarray([[1, 0], [0, 0], [1, 1], [2, 0]], np.int64)
    values = _words("p", "q", "r", "s")

    def fn(i, v, d):
        sp = R.SparseCrossV2(indices=[i], values=[v], shapes=[[3, 2]], dense_inputs=[d], sep="_")
        hashed = R.SparseCross(
            indices=[i],
            values=[v],
            shapes=[[3, 2]],
            dense_inputs=[d],
            hashed_output=True,
            num_buckets=100,
            hash_key=1,
            out_type=tf.int64,
            internal_type=tf.string,
        )
        return _out(sp), _out(hashed)

    assert_matches_tf(fn, [indices, values, D_WORDS[1]])


def test_out_type_decides_hashing():
    """The kernel is chosen by out_type; hashed_output is never read."""
    inputs, n = _flat([S_WORDS, D_WORDS])

    def fn(*args):
        kw = dict(num_buckets=10, hash_key=5, internal_type=tf.string)
        a = R.SparseCross(**_split(args, n), hashed_output=False, out_type=tf.int64, **kw)
        b = R.SparseCross(**_split(args, n), hashed_output=True, out_type=tf.string, **kw)
        return _out(a), _out(b)

    assert_matches_tf(fn, inputs)


@pytest.mark.parametrize("jit", [True, False])
def test_tf_sparse_cross_api(jit):
    """tf.sparse.cross (SparseCrossV2) and cross_hashed (SparseCross) on SparseTensors and int32 dense inputs
    given in any order (the wrappers put the sparse ones first)."""

    def fn(i, v, shape, d, n):
        st = tf.SparseTensor(i, v, shape)
        dense_ints = tf.reshape(n, [-1, 1])
        return (
            _out(tf.sparse.cross([d, st, dense_ints])),
            _out(tf.sparse.cross([st, d], separator="|")),
            _out(tf.sparse.cross_hashed([dense_ints, st, d])),
            _out(tf.sparse.cross_hashed([st, dense_ints], num_buckets=11, hash_key=123)),
        )

    _, i, v, shape = S_WORDS
    assert_matches_tf(fn, [i, v, shape, D_WORDS[1], np.asarray([4, -5, 6], np.int32)], jit=jit)


def test_int_inputs_only_run_op_by_op():
    """Without strings the call is traced for jax.jit first; the crosses' run-time shapes make it run op by op."""
    inputs, n = _flat([S_INTS, D_INTS])

    def fn(*args):
        return _out(R.SparseCrossHashed(**_split(args, n), num_buckets=13, strong_hash=False, salt=[0, 0]))

    export_dir, tf_fn = save_function(fn, inputs)
    with pytest.warns(jaxsm.errors.EagerFallbackWarning):
        got = run_jaxsm(export_dir, inputs)
    want = tf_fn(*inputs)
    for k in ("indices", "values", "shape"):
        np.testing.assert_array_equal(got[k], want[k].numpy())


def _both_raise(fn, inputs, match):
    export_dir, tf_fn = save_function(fn, inputs)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(*inputs)
    with pytest.raises(JaxsmError, match=match):
        run_jaxsm(export_dir, inputs)


def test_errors():
    inputs, n = _flat([S_WORDS, D_WORDS])
    short = D_WORDS[1][:2]

    def batch_mismatch(*args):
        return _out(R.SparseCrossV2(**_split(args, n), sep="_"))

    _both_raise(batch_mismatch, [*inputs[:-1], short], "batch size")

    def bad_salt(salt, *args):
        return _out(R.SparseCrossHashed(**_split(args, n), num_buckets=0, strong_hash=False, salt=salt))

    _both_raise(bad_salt, [np.asarray([1, 2, 3], np.int64), *inputs], "salt")

    ints, n_ints = _flat([S_INTS])

    def int_values_string_internal(*args):
        kw = dict(hashed_output=True, num_buckets=0, hash_key=0, out_type=tf.int64, internal_type=tf.string)
        return _out(R.SparseCross(**_split(args, n_ints), **kw))

    _both_raise(int_values_string_internal, ints, "internal type")

    def bad_shape(i, v, s):
        return _out(R.SparseCrossV2(indices=[i], values=[v], shapes=[s], dense_inputs=[], sep="_"))

    _both_raise(bad_shape, [S_WORDS[1], S_WORDS[2], np.asarray([3, 4, 1], np.int64)], "2-D")
    _both_raise(bad_shape, [S_WORDS[1], S_WORDS[2][:2], S_WORDS[3]], "values")


@pytest.mark.parametrize("num_bins", [1, 5, 1000])
def test_keras_hashed_crossing(tmp_path, num_bins):
    os.environ["KERAS_BACKEND"] = "tensorflow"
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("Keras was imported with another backend")

    a = keras.Input(shape=(), dtype="string")
    b = keras.Input(shape=(), dtype="int64")
    c = keras.Input(shape=(), dtype="int32")
    layer = keras.layers.HashedCrossing
    ab = layer(num_bins=num_bins)([a, b])
    outputs = {
        "ab": ab,
        "ab_c": layer(num_bins=num_bins)([ab, c]),
        "one_hot": layer(num_bins=num_bins, output_mode="one_hot")([c, a]),
    }
    model = keras.Model([a, b, c], outputs)
    model.export(str(tmp_path), verbose=False)

    x = [
        _words("cat", "dog", "", "cat"),
        np.asarray([1, 2, 3, -(2**40)], np.int64),
        np.asarray([5, 5, 0, -1], np.int32),
    ]
    want = tf.saved_model.load(str(tmp_path)).serve([tf.constant(v) for v in x])
    got = jaxsm.load(str(tmp_path)).serve(x)
    assert sorted(got) == sorted(want)
    for k in want:
        w = want[k].numpy()
        np.testing.assert_array_equal(np.asarray(got[k]), w, err_msg=k)
        assert np.asarray(got[k]).dtype == w.dtype, k
