"""jaxsm.ops.hashing against TF: StringToHashBucketFast/Strong, the legacy StringToHashBucket and Fingerprint,
bit for bit, on strings of every length through FarmHash's code paths (0, 1-3, 4-7, 8-16, 17-32, 33-64, longer;
multiples of 64 and not), in SavedModels and in Keras' Hashing layers."""

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import jaxsm  # noqa: E402
from jaxsm.errors import EagerFallbackWarning  # noqa: E402
from tests.tfcompare import assert_matches_tf  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")

NUM_BUCKETS = [1, 7, 2**31 - 1, 2**62]
KEYS = [[0, 0], [1, 2], [0xDECAFCAFFE, 0xDECAFCAFFE], [-1, 2**63 - 1]]  # -1: the uint64 key 2**64 - 1


def _strs(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = [v.encode() if isinstance(v, str) else v for v in values]
    return out


_rng = np.random.default_rng(0)
_TEXT = "The quick brown fox jumps over the lazy dog; caf\u00e9, na\u00efve, \u65e5\u672c\u8a9e, \U0001f642! " * 4
STRINGS = _strs(
    [_TEXT.encode()[:n] for n in range(201)]  # every length 0..200, cutting UTF-8 sequences anywhere
    + [bytes(_rng.integers(0, 256, n, dtype=np.uint8)) for n in [*range(201), 255, 256, 257, 1000, 1024]]
    + ["\u00e9", "\U0001f642", "\u65e5\u672c", b"\x00", b"\xff" * 9, b"\x80" * 70]
)


@pytest.mark.parametrize("jit", [True, False])
def test_hash_buckets(jit):
    def fn(s):
        out = {}
        for nb in NUM_BUCKETS:
            out[f"fast_{nb}"] = tf.strings.to_hash_bucket_fast(s, nb)
            out[f"legacy_{nb}"] = tf.strings.to_hash_bucket(s, nb)
            for i, key in enumerate(KEYS):
                out[f"strong_{nb}_{i}"] = tf.strings.to_hash_bucket_strong(s, nb, key)
        out["fast_2d"] = tf.strings.to_hash_bucket_fast(tf.reshape(s[:12], [3, 4]), 1000)
        return out

    assert_matches_tf(fn, [STRINGS], shapes=[(None,)], jit=jit)


@pytest.mark.parametrize("jit", [True, False])
def test_fingerprint(jit):
    dtypes = [tf.int8, tf.uint16, tf.int32, tf.int64, tf.float16, tf.bfloat16, tf.float32, tf.float64]
    dtypes += [tf.bool, tf.complex128]

    def fn(s, x):
        out = {
            "str": tf.fingerprint(s),  # one string a row: its own fingerprint
            "str_rows": tf.fingerprint(tf.reshape(s[:210], [70, 3])),  # fingerprint of the strings' fingerprints
            "str_empty": tf.fingerprint(s[:0]),
            "num": tf.fingerprint(x),
            "num_rank3": tf.fingerprint(tf.reshape(x, [4, 3, 5])),
            "num_row": tf.fingerprint(tf.reshape(x, [-1])),
            "num_empty": tf.fingerprint(x[:0]),
        }
        small = tf.round(x * 40)  # whole numbers that every dtype holds: the casts agree, the hashes are tested
        for dt in dtypes:
            out[dt.name] = tf.fingerprint(tf.cast(tf.abs(small) if dt.is_unsigned else small, dt))
        return out

    x = np.random.default_rng(1).normal(size=(4, 15))
    assert_matches_tf(fn, [STRINGS, x], shapes=[(None,), (4, 15)], jit=jit)


def test_saved_module_end_to_end(tmp_path):
    """A tf.Module whose string signature uses every hashing op, saved, loaded with jaxsm, fed strings."""

    class Hasher(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def hash(self, s):
            return {
                "fast": tf.strings.to_hash_bucket_fast(s, 100),
                "strong": tf.strings.to_hash_bucket_strong(s, 2**40, [7, 11]),
                "legacy": tf.strings.to_hash_bucket(s, 13),
                "fingerprint": tf.fingerprint(s),
            }

    tf.saved_model.save(Hasher(), str(tmp_path))
    want = tf.saved_model.load(str(tmp_path)).hash(tf.constant(STRINGS))
    with pytest.warns(EagerFallbackWarning):
        got = jaxsm.load(str(tmp_path)).hash(STRINGS)
    assert sorted(got) == sorted(want)
    for k in want:
        w, g = want[k].numpy(), np.asarray(got[k])
        assert g.dtype == w.dtype, k
        np.testing.assert_array_equal(g, w, err_msg=k)


def test_tf_keras_hashing(tmp_path):
    """tf_keras Hashing (FarmHash, and SipHash with a salt; a mask value) in a model saved as a SavedModel."""
    k2 = pytest.importorskip("tf_keras")
    inp = k2.Input(shape=(2,), dtype=tf.string)
    outs = [
        k2.layers.Hashing(num_bins=10)(inp),
        k2.layers.Hashing(num_bins=1000, salt=133)(inp),
        k2.layers.Hashing(num_bins=5, salt=[1, 2], mask_value="")(inp),
    ]
    tf.saved_model.save(k2.Model(inp, outs), str(tmp_path))
    feed = {inp.name.split(":")[0]: STRINGS[:300].reshape(150, 2)}
    want = tf.saved_model.load(str(tmp_path)).signatures["serving_default"](**feed)
    got = jaxsm.load(str(tmp_path)).signatures["serving_default"](**feed)
    assert sorted(got) == sorted(want) and len(want) == 3
    for k in want:
        np.testing.assert_array_equal(np.asarray(got[k]), want[k].numpy(), err_msg=k)


def test_keras3_hashing_export(tmp_path):
    """Keras 3 Hashing layers (strings with and without a salt, integers) exported with model.export."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("needs Keras with the TensorFlow backend")
    s = keras.Input(shape=(), dtype="string")
    i = keras.Input(shape=(3,), dtype="int64")
    outs = [
        keras.layers.Hashing(num_bins=64)(s),
        keras.layers.Hashing(num_bins=2**20, salt=[5, 9])(s),
        keras.layers.Hashing(num_bins=17)(i),
    ]
    keras.Model([s, i], outs).export(str(tmp_path), verbose=False)
    ints = np.random.default_rng(2).integers(-(10**12), 10**12, size=(len(STRINGS), 3))
    want = tf.saved_model.load(str(tmp_path)).serve([tf.constant(STRINGS), tf.constant(ints)])
    got = jaxsm.load(str(tmp_path)).serve([STRINGS, ints])
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(np.asarray(g), w.numpy())
