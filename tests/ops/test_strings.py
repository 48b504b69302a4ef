"""jaxsm.ops.strings against TF: string ops on the host, string versions of element-moving ops, string tables,
and Keras preprocessing layers that take strings. Functions fed strings run op by op (EagerFallbackWarning)."""

import os
import warnings

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import jaxsm  # noqa: E402
from jaxsm.errors import EagerFallbackWarning, JaxsmError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")

WORDS = np.array([b"  Hello World ", b"", "caf\u00e9 \u00c9T\u00c9".encode(), b"a,b,,c", b"tab\tsep  x"], object)


def _strs(*values):
    out = np.empty(len(values), dtype=object)
    out[:] = [v.encode() if isinstance(v, str) else v for v in values]
    return out


@pytest.mark.parametrize("jit", [True, False])
def test_text_ops(jit):
    def fn(s):
        padded = tf.strings.join([s, "\u00e9nd"])
        return {
            "lower": tf.strings.lower(s),
            "lower_utf8": tf.strings.lower(s, encoding="utf-8"),
            "upper": tf.strings.upper(s),
            "strip": tf.strings.strip(s),
            "len": tf.strings.length(s),
            "len_chars": tf.strings.length(s, unit="UTF8_CHAR"),
            "join": tf.strings.join([s, "|", tf.strings.upper(s)], separator="~"),
            "regex": tf.strings.regex_replace(s, r"([a-z])([a-z])", r"\2\1"),
            "regex_first": tf.strings.regex_replace(s, r"\s+", "_", replace_global=False),
            "regex_tensor": tf.strings.regex_replace(s, tf.constant("l+"), tf.constant("<\\0>")),
            "match": tf.strings.regex_full_match(s, r".*o.*"),
            "substr": tf.strings.substr(padded, 1, 3),  # TF raises for a position past the end
            "substr_neg": tf.strings.substr(padded, -2, 5),
            "substr_chars": tf.strings.substr(padded, 1, 2, unit="UTF8_CHAR"),
            "eq": tf.equal(s, tf.constant("a,b,,c")),
            "ne": tf.not_equal(tf.reverse(s, [0]), s),
        }

    assert_matches_tf(fn, [WORDS], shapes=[(None,)], jit=jit)


def test_numbers_and_strings():
    def fn(x, i, b, s):
        return {
            "default": tf.strings.as_string(x),
            "precision": tf.strings.as_string(x, precision=2),
            "scientific": tf.strings.as_string(x, precision=3, scientific=True),
            "shortest": tf.strings.as_string(x, shortest=True),
            "width_fill": tf.strings.as_string(i, width=6, fill="0"),
            "width": tf.strings.as_string(i, width=5),
            "left": tf.strings.as_string(i, width=5, fill="-"),
            "int64": tf.strings.as_string(tf.cast(i, tf.int64) * 2**40),
            "bool": tf.strings.as_string(b),
            "to_float": tf.strings.to_number(s),
            "to_double": tf.strings.to_number(s, tf.float64),
            "to_int": tf.strings.to_number(tf.strings.as_string(i), tf.int32),
            "to_int64": tf.strings.to_number(tf.strings.as_string(tf.cast(i, tf.int64) * 2**40), tf.int64),
        }

    x = np.array([1.5, -2.25e-7, 1234567.0, 0.0], np.float32)
    i = np.array([7, -42, 0, 123456], np.int32)
    b = np.array([True, False, True, False])
    s = _strs("1.5", " -2e3 ", "+7", "0x1p3", "inf", "-nan")
    i, x, b = np.resize(i, 6), np.resize(x, 6), np.resize(b, 6)
    assert_matches_tf(fn, [x, i, b, s])


def test_unparsable_number_raises():
    def fn(s):
        return tf.strings.to_number(s)

    for text in ("x1", "1_000", "1.5e", "2.5"):
        export_dir, tf_fn = save_function(
            fn if text != "2.5" else lambda s: tf.strings.to_number(s, tf.int32), [_strs(text)]
        )
        with pytest.raises(tf.errors.InvalidArgumentError):
            tf_fn(_strs(text))
        with pytest.raises(JaxsmError, match="could not parse"):
            run_jaxsm(export_dir, [_strs(text)])


def test_split_and_reduce_join():
    def fn(s):
        words = tf.strings.split(s)  # ragged: StringSplitV2 + row splits
        commas = tf.strings.split(s, sep=",", maxsplit=2)
        v1 = tf.compat.v1.string_split(s, delimiter=", ")
        grid = tf.reshape(tf.concat([s, s, tf.strings.upper(s)], 0)[:6], [2, 3])
        return {
            "words": words.flat_values,
            "word_rows": words.row_lengths(),
            "commas": commas.flat_values,
            "comma_rows": commas.row_splits,
            "v1_values": v1.values,
            "v1_indices": v1.indices,
            "v1_shape": v1.dense_shape,
            "padded": words.to_tensor(default_value="<pad>"),
            "rows": tf.strings.reduce_join(grid, axis=1, separator="+"),
            "cols": tf.strings.reduce_join(grid, axis=-2, keepdims=True),
            "all": tf.strings.reduce_join(grid),
            "order": tf.strings.reduce_join(grid, axis=[1, 0], separator="."),
        }

    assert_matches_tf(fn, [WORDS], shapes=[(None,)])


def test_element_moving_ops_on_strings():
    """The string versions of ops that only move elements (positions through the numeric lowering)."""

    def fn(s, idx, mask):
        m = tf.reshape(tf.tile(s, [2]), [2, -1])
        return {
            "gather": tf.gather(s, idx),
            "gather_axis": tf.gather(m, [1, 0, 1], axis=1),
            "gather_nd": tf.gather_nd(m, [[1, 2], [0, 0]]),
            "strided": m[:, ::-2],
            "neg_index": s[-1],
            "expand": tf.expand_dims(s, -1),
            "transpose": tf.transpose(m),
            "stack": tf.stack([s, tf.strings.upper(s)], axis=1),
            "unstack": tf.unstack(m)[1],
            "select": tf.where(mask, s, tf.strings.upper(s)),
            "fill": tf.fill([2, 2], "x"),
            "pad": tf.pad(s, [[1, 2]], constant_values="#"),
            "split": tf.split(m, 2, axis=0)[1],
            "broadcast": tf.broadcast_to(s[:2], [3, 2]),
            "shape": tf.shape(m),
            "size": tf.size(s),
        }

    idx = np.array([4, 0, 0, 2], np.int32)
    mask = np.array([True, False, True, False, True])
    assert_matches_tf(fn, [WORDS, idx, mask], shapes=[(None,), (None,), (None,)])


def test_string_table_in_a_module_and_int_to_string(tmp_path):
    """A tf.Module with a string->int table and an int->string table: compiled calls that only use the
    int->string table's numbers are not needed; both run op by op and match TF, over two calls."""

    class M(tf.Module):
        def __init__(self):
            keys = tf.constant(["cat", "dog", "emu"])
            self.ids = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, [3, 1, 2]), -1)
            self.names = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer([3, 1, 2], keys), "?")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def f(self, s):
            i = self.ids.lookup(s)
            return {"ids": i, "back": self.names.lookup(i), "size": self.ids.size()}

    tf.saved_model.save(M(), str(tmp_path))
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    for words in (["dog", "cow", "cat"], ["emu"]):
        with pytest.warns(EagerFallbackWarning, match="string"):
            have = got.f(words)
        want = ref.f(tf.constant(words))
        np.testing.assert_array_equal(np.asarray(have["ids"]), want["ids"].numpy())
        assert list(have["back"]) == list(want["back"].numpy())
        assert int(have["size"]) == int(want["size"])


def test_tf_keras_string_lookup_model(tmp_path):
    """StringLookup -> Embedding -> Dense in tf_keras, saved as a SavedModel, fed raw strings."""
    k2 = pytest.importorskip("tf_keras")
    k2.utils.set_random_seed(0)
    inp = k2.Input(shape=(3,), dtype=tf.string)
    ids = k2.layers.StringLookup(vocabulary=["red", "green", "blue"], num_oov_indices=2)(inp)
    emb = k2.layers.Embedding(6, 4)(ids)
    out = k2.layers.Dense(2)(k2.layers.Flatten()(emb))
    model = k2.Model(inp, out)
    tf.saved_model.save(model, str(tmp_path))
    x = np.array([["red", "blue", "pink"], ["green", "green", "RED"]], object)
    want = model(tf.constant(x)).numpy()
    got = jaxsm.load(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerFallbackWarning)
        have = got.signatures["serving_default"](**{inp.name.split(":")[0]: x})
    np.testing.assert_allclose(np.asarray(next(iter(have.values()))), want, rtol=1e-5, atol=1e-6)


def test_keras3_text_vectorization_export(tmp_path):
    """Keras 3 TextVectorization (standardize, split, vocabulary lookup, pad to a length) exported and fed
    sentences."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("needs Keras with the TensorFlow backend")
    layer = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=6)
    layer.adapt(["The cat sat.", "The dog, the CAT!", "a bird"])
    inp = keras.Input(shape=(), dtype="string")
    model = keras.Model(inp, layer(inp))
    model.export(str(tmp_path), verbose=False)
    x = np.array(["the cat flew", "", "Dog dog DOG dog dog dog dog dog", "zebra, the cat?"], object)
    want = tf.saved_model.load(str(tmp_path)).serve(tf.constant(x)).numpy()
    have = jaxsm.load(str(tmp_path)).serve(x)
    np.testing.assert_array_equal(np.asarray(have), want)


def test_mutable_hash_table(tmp_path):
    """tf.lookup.experimental.MutableHashTable: contents saved in the checkpoint are restored; inserts, removes
    and lookups in a call follow TF's (string keys, float values), over two calls."""

    class M(tf.Module):
        def __init__(self):
            self.t = tf.lookup.experimental.MutableHashTable(tf.string, tf.float32, default_value=-1.0)
            self.t.insert(tf.constant(["saved", "gone"]), tf.constant([7.0, 8.0]))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.float32)])
        def f(self, k, v):
            self.t.insert(k, v)
            self.t.remove(tf.constant(["gone"]))
            keys, values = self.t.export()
            return {"found": self.t.lookup(tf.constant(["a", "saved", "gone", "zz"])), "size": self.t.size()}

    tf.saved_model.save(M(), str(tmp_path))
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    for k, v in ((["a", "b", "a"], [1.0, 2.0, 3.0]), (["zz"], [4.0])):
        want = ref.f(tf.constant(k), tf.constant(v))
        have = got.f(k, np.asarray(v, np.float32))
        np.testing.assert_array_equal(np.asarray(have["found"]), want["found"].numpy())
        assert int(have["size"]) == int(want["size"])


def test_mutable_table_inserts_persist_between_calls(tmp_path):
    class M(tf.Module):
        def __init__(self):
            self.t = tf.lookup.experimental.MutableHashTable(tf.int64, tf.string, default_value="?")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.string)])
        def put(self, k, v):
            self.t.insert(k, v)
            return self.t.size()

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
        def get(self, k):
            return self.t.lookup(k)

    tf.saved_model.save(M(), str(tmp_path))
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    keys = np.array([5, -(2**40), 5], np.int64)
    for m in (ref, got):
        m.put(keys, np.array([b"x", b"y", b"z"], object))
        m.put(np.array([7], np.int64), np.array([b"w"], object))
    want = ref.get(np.array([5, 7, 1, -(2**40)], np.int64)).numpy()
    assert list(got.get(np.array([5, 7, 1, -(2**40)], np.int64))) == list(want)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(ngram_width=2),
        dict(ngram_width=(1, 3), separator="_"),
        dict(ngram_width=3, pad_values=("<s>", "</s>")),
        dict(ngram_width=3, pad_values="#", padding_width=1),
        dict(ngram_width=4, pad_values="#", padding_width=1, preserve_short_sequences=True),
        dict(ngram_width=6, preserve_short_sequences=True, pad_values=("<", ">"), padding_width=1),
    ],
    ids=str,
)
def test_ngrams(kwargs):
    def fn(s):
        grams = tf.strings.ngrams(tf.strings.split(s), **kwargs)
        return {"values": grams.flat_values, "splits": grams.row_splits}

    assert_matches_tf(fn, [_strs("the quick brown fox", "", "a b", "one")], shapes=[(None,)])


def test_unicode_decode_and_encode():
    text = _strs("h\u00e9llo", "", "\U0001f600x", "a\x01b\x7f\x85")
    bad = _strs(b"ok\xffno", b"\xe2\x82", b"fine")

    def fn(s, b):
        chars = tf.strings.unicode_decode(s, "UTF-8")
        chars_ctl = tf.strings.unicode_decode(s, "UTF-8", replace_control_characters=True)
        replaced = tf.strings.unicode_decode(b, "UTF-8", errors="replace", replacement_char=63)
        ignored = tf.strings.unicode_decode(b, "UTF-8", errors="ignore")
        parts, starts = tf.strings.unicode_decode_with_offsets(s, "UTF-8")
        return {
            "chars": chars.flat_values,
            "splits": chars.row_splits,
            "controls": chars_ctl.flat_values,
            "replaced": replaced.flat_values,
            "ignored": ignored.flat_values,
            "starts": starts.flat_values,
            "split": tf.strings.unicode_split(s, "UTF-8").flat_values,
            "encode": tf.strings.unicode_encode(chars, "UTF-8"),
            "utf16": tf.strings.unicode_encode(chars, "UTF-16-BE"),
            "roundtrip_utf32": tf.strings.unicode_decode(
                tf.strings.unicode_encode(chars, "UTF-32-BE"), "UTF-32-BE"
            ).flat_values,
            "bad_points": tf.strings.unicode_encode(tf.ragged.constant([[104, 0xD800, 105], [0x110000]]), "UTF-8"),
        }

    assert_matches_tf(fn, [text, bad], shapes=[(None,), (None,)])


@pytest.mark.parametrize("jit", [True, False])
def test_ragged_bincount(jit):
    def fn(values, splits, w):
        rt = tf.RaggedTensor.from_row_splits(values, splits)
        return {
            "counts": tf.math.bincount(rt, minlength=6, maxlength=6, axis=-1),
            "binary": tf.math.bincount(rt, minlength=4, maxlength=4, axis=-1, binary_output=True),
            "weights": tf.math.bincount(
                rt, weights=tf.RaggedTensor.from_row_splits(w, splits), minlength=5, maxlength=5, axis=-1
            ),
        }

    values = np.array([1, 1, 3, 0, 5, 7, 2, 2, 2], np.int64)
    splits = np.array([0, 3, 3, 6, 9], np.int64)
    w = np.linspace(0.5, 4.5, 9).astype(np.float32)
    assert_matches_tf(fn, [values, splits, w], jit=jit)


def _export(keras, model, tmp_path):
    model.export(str(tmp_path), verbose=False)
    return tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))


@pytest.mark.parametrize(
    "options",
    [
        dict(output_mode="int", ngrams=2, output_sequence_length=5),
        dict(output_mode="multi_hot"),
        dict(output_mode="tf_idf"),
        dict(output_mode="count", standardize="lower"),
        dict(output_mode="int", split="character", output_sequence_length=4),
    ],
    ids=str,
)
def test_keras3_text_vectorization_modes(options, tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("needs Keras with the TensorFlow backend")
    layer = keras.layers.TextVectorization(max_tokens=30, **options)
    layer.adapt(["the cat sat on the mat", "a dog", "the dog ate"])
    inp = keras.Input(shape=(), dtype="string")
    ref, got = _export(keras, keras.Model(inp, layer(inp)), tmp_path)
    x = np.array(["the cat sat", "dog Dog", "", "caf\u00e9 x"], object)
    np.testing.assert_allclose(np.asarray(got.serve(x)), ref.serve(tf.constant(x)).numpy(), rtol=1e-6)


def test_string_variable_read_and_assigned(tmp_path):
    """A tf.Variable holding a string: read, assigned from an input, and the new value seen by the next call
    and by another function, as in TF."""

    class M(tf.Module):
        def __init__(self):
            self.v = tf.Variable("pre")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def f(self, s):
            out = tf.strings.join([self.v, s], separator=":")
            self.v.assign(s[0])
            return out

        @tf.function(input_signature=[])
        def g(self):
            return tf.strings.join([self.v, "!"])

    tf.saved_model.save(M(), str(tmp_path))
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    for batch in (_strs("x", "y"), _strs("z")):
        assert np.asarray(got.f(batch)).tolist() == ref.f(tf.constant(batch)).numpy().tolist()
    assert np.asarray(got.g()).item() == ref.g().numpy()
    assert got.v.numpy() == ref.v.numpy()


def _png(value: int, height: int) -> bytes:
    from PIL import Image

    buf = __import__("io").BytesIO()
    Image.fromarray(np.full((height, height + 1, 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_map_fn_and_tensor_arrays_over_strings():
    """tf.map_fn over a batch of strings (TF Serving's decode-each-image pattern), string results, tf.scan with
    string concatenation (AddV2 on strings) and a tf.TensorArray of strings written in a loop."""
    pytest.importorskip("PIL")

    def fn(s, images):
        ta = tf.TensorArray(tf.string, size=tf.shape(s)[0] + 1, element_shape=[])  # the last one is never set
        for i in tf.range(tf.shape(s)[0]):
            ta = ta.write(i, tf.strings.join([s[i], "!"]))
        grown = tf.TensorArray(tf.string, size=0, dynamic_size=True)
        for i in tf.range(2):
            grown = grown.write(i, s[-1 - i])

        def decode(b):
            return tf.image.resize(tf.io.decode_png(b, channels=3), [4, 4])

        return {
            "lengths": tf.map_fn(lambda x: tf.strings.length(x) * 2, s, fn_output_signature=tf.int32),
            "upper": tf.map_fn(tf.strings.upper, s),
            "pairs": tf.map_fn(lambda x: (x, tf.strings.length(x)), s, fn_output_signature=(tf.string, tf.int32)),
            "scan": tf.scan(lambda acc, x: acc + x + ",", s, initializer=tf.constant(b">")),
            "ta": ta.stack(),
            "ta_read": ta.read(1),
            "grown": grown.stack(),
            "images": tf.map_fn(decode, images, fn_output_signature=tf.float32),
        }

    assert_matches_tf(fn, [_strs("ab", "", "caf\u00e9"), _strs(_png(10, 5), _png(200, 7))], shapes=[[None], [None]])


def test_tf1_map_fn_over_strings(tmp_path):
    """A TF1 serving graph that decodes a batch of PNGs with tf.map_fn (TensorArrayV3 of strings in a v1 while
    loop) and upper-cases strings, as an estimator's serving_input_receiver_fn does."""
    pytest.importorskip("PIL")
    export_dir = str(tmp_path / "m")
    xs = _strs(_png(10, 5), _png(200, 7), _png(77, 3))
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.string, [None], name="x")
        y = tf.map_fn(lambda b: tf.image.resize(tf.io.decode_png(b, channels=3), [4, 4]), x, dtype=tf.float32)
        z = tf.map_fn(tf.strings.upper, x)
        with tf.compat.v1.Session() as sess:
            builder = tf.compat.v1.saved_model.Builder(export_dir)
            sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y, "z": z})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
            builder.save()
            expected = sess.run({"y": y, "z": z}, {x: xs})
    out = jaxsm.load(export_dir).signatures["serving_default"](x=xs)
    np.testing.assert_allclose(np.asarray(out["y"]), expected["y"], rtol=1e-6, err_msg="decoded images")
    assert list(out["z"]) == list(expected["z"]), "upper-cased strings"
