"""A call that runs op by op (string inputs: a TextVectorization in front of an LSTM) still compiles its While
loops, each as one cached XLA program (jaxsm/ops/control_flow.py ``_compiled_loop_op_by_op``), with TF's
results, variable updates, Asserts and prints; loops that cannot compile stay Python loops. Against TF."""

from __future__ import annotations

import collections
import warnings

import jax
import numpy as np
import pytest

import jaxsm
from jaxsm.compile import OP_BY_OP
from jaxsm.errors import AssertFailedError
from jaxsm.graph.interpreter import Interpreter

tf = pytest.importorskip("tensorflow")


@pytest.fixture
def eager_ops(monkeypatch):
    """The op types each call ran one by one (not inside a jitted program): one Counter per call."""
    calls: list[collections.Counter] = []
    run_node, call = Interpreter.run_node, jaxsm.objects.RestoredFunction.__call__

    def counted_run_node(self, node, args):
        if OP_BY_OP.get():
            calls[-1][node.op] += 1
        return run_node(self, node, args)

    def counted_call(self, *a, **k):
        calls.append(collections.Counter())
        return call(self, *a, **k)

    monkeypatch.setattr(Interpreter, "run_node", counted_run_node)
    monkeypatch.setattr(jaxsm.objects.RestoredFunction, "__call__", counted_call)
    return calls


def _load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (jaxsm's EagerFallbackWarning: string inputs run op by op)
        return jaxsm.load(str(path))


def _call(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def _keras_text_model(path):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(3)
    vocab = ["the", "cat", "sat", "on", "mat", "dog", "ran"]
    inp = keras.Input(shape=(), dtype="string")
    x = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=6, vocabulary=vocab)(inp)
    x = keras.layers.Embedding(20, 8)(x)
    out = keras.layers.Dense(3)(keras.layers.LSTM(5)(x))
    keras.Model(inp, out).export(str(path), verbose=False)


def test_keras_text_model_runs_its_numeric_part_compiled(tmp_path, eager_ops):
    _keras_text_model(tmp_path / "m")
    tf_model, model = tf.saved_model.load(str(tmp_path / "m")), _load(tmp_path / "m")
    batches = [
        [b"the cat sat on the mat", b"dog ran", b"unknown words here"],
        [b"mat on cat", b"", b"the the the the the the the the"],
        [b"dog", b"cat", b"sat"],
        [b"the dog sat on the cat", b"on", b"ran ran"],
    ]
    for words in batches:
        x = np.array(words, dtype=object)
        want = tf_model.serve(tf.constant(x)).numpy()
        np.testing.assert_allclose(np.asarray(_call(model.serve, x)), want, rtol=1e-5, atol=1e-6)
    # calls 1-2 run node by node (recording, then the first sight of the groups' inputs), with the loops as
    # Python loops; from call 3 on only the string nodes do, the rest (embedding, the LSTM's loop) is compiled
    assert eager_ops[0]["MatMul"] > 0 and eager_ops[0]["While"] == 1
    assert eager_ops[2]["StringSplitV2"] == 1 and eager_ops[2]["MatMul"] == 0
    assert eager_ops[3] == eager_ops[2]


def test_parsed_examples_feed_a_compiled_model(tmp_path, eager_ops):
    class Model(tf.Module):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.w = [tf.Variable(rng.normal(size=s).astype(np.float32)) for s in [(5, 8), (8, 8), (8, 2)]]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def classify(self, serialized):
            spec = {"x": tf.io.FixedLenFeature([5], tf.float32), "k": tf.io.FixedLenFeature([], tf.int64)}
            f = tf.io.parse_example(serialized, spec)
            h = f["x"]
            for w in self.w:
                h = tf.nn.relu(h @ w) + tf.cast(f["k"], tf.float32)[:, None]
            return {"scores": tf.nn.softmax(h), "label": tf.gather(tf.constant(["no", "yes"]), tf.argmax(h, 1))}

    tf.saved_model.save(Model(), str(tmp_path / "m"))
    tf_m, m = tf.saved_model.load(str(tmp_path / "m")), _load(tmp_path / "m")
    rng = np.random.default_rng(1)

    def example(x, k):
        feature = {
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=x)),
            "k": tf.train.Feature(int64_list=tf.train.Int64List(value=[k])),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    for call in range(4):
        x = np.array([example(rng.normal(size=5), call + i) for i in range(3)], dtype=object)
        want, got = tf_m.classify(tf.constant(x)), _call(m.classify, x)
        np.testing.assert_allclose(np.asarray(got["scores"]), want["scores"].numpy(), rtol=1e-5, atol=1e-7)
        assert list(np.asarray(got["label"])) == list(want["label"].numpy())
    assert eager_ops[0]["MatMul"] == 3 and eager_ops[2]["MatMul"] == 0 and eager_ops[2]["ParseExampleV2"] == 1
    assert eager_ops[3] == eager_ops[2]


class _Counter(tf.Module):
    def __init__(self):
        self.total = tf.Variable(0.0)
        self.steps = tf.Variable(0, dtype=tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int32)])
    def f(self, words, n):
        lengths = tf.cast(tf.strings.length(words), tf.float32)

        def body(i, acc):
            self.total.assign_add(tf.reduce_sum(lengths) * tf.cast(i, tf.float32))
            self.steps.assign_add(1)
            return i + 1, acc * 0.5 + lengths

        _, acc = tf.while_loop(lambda i, acc: i < n, body, [tf.constant(0), tf.zeros_like(lengths)])
        return acc, self.total.read_value()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.float32)])
    def checked(self, words, limit):
        lengths = tf.cast(tf.strings.length(words), tf.float32)

        def body(i, acc):
            with tf.control_dependencies([tf.debugging.assert_less(acc, limit, message="acc too large")]):
                self.total.assign_add(1.0)  # (without the dependency TF may run the assign before the assert)
            return i + 1, acc + tf.reduce_sum(lengths)

        return tf.while_loop(lambda i, acc: i < 5, body, [tf.constant(0), tf.constant(0.0)])[1]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def printed(self, words):
        def body(i):
            tf.print("step", i)
            return (i + 1,)

        return tf.while_loop(lambda i: i < tf.size(words), body, [tf.constant(0)])[0]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def growing(self, words):
        lengths = tf.strings.length(words)

        def body(i, acc):
            return i + 1, tf.concat([acc, lengths[:1] + i], 0)

        def run(cond):
            return tf.while_loop(
                cond,
                body,
                [tf.constant(0), tf.zeros([0], tf.int32)],
                shape_invariants=[tf.TensorShape([]), tf.TensorShape([None])],
            )[1]

        return run(lambda i, acc: i < 3), run(lambda i, acc: i < tf.reduce_max(lengths))


@pytest.fixture(scope="module")
def counter_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("op_by_op_loops") / "counter"
    tf.saved_model.save(_Counter(), str(path))
    return path


def test_loop_assigning_variables_in_an_op_by_op_call_keeps_tf_state(counter_dir, eager_ops):
    tf_m, m = tf.saved_model.load(str(counter_dir)), _load(counter_dir)
    calls = [(["ab", "c"], 3), (["xyz", "", "q"], 4), (["hello", "w"], 3), (["a", "b"], 0), (["q", "r"], 2)]
    for words, n in calls:
        x = np.array([w.encode() for w in words], dtype=object)
        want = [t.numpy() for t in tf_m.f(tf.constant(x), tf.constant(n, tf.int32))]
        got = [np.asarray(t) for t in _call(m.f, x, np.int32(n))]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-6)
            assert g.dtype == w.dtype
    assert float(np.asarray(m.total)) == float(tf_m.total.numpy())
    assert int(np.asarray(m.steps)) == int(tf_m.steps.numpy()) == 12
    assert eager_ops[0]["AssignAddVariableOp"] > 0 and eager_ops[0]["While"] == 1
    # from the fourth call (the second with 2 words) only the string nodes run one by one
    assert eager_ops[3]["AssignAddVariableOp"] == eager_ops[3]["While"] == 0 and eager_ops[3]["StringLength"] == 1


def test_failing_assert_in_a_compiled_op_by_op_loop_raises_as_tf(counter_dir, eager_ops):
    tf_m, m = tf.saved_model.load(str(counter_dir)), _load(counter_dir)
    x = np.array([b"abc", b"de"], dtype=object)
    for _ in range(3):  # (compiled from the third call)
        np.testing.assert_allclose(np.asarray(_call(m.checked, x, np.float32(100))), tf_m.checked(x, 100.0).numpy())
    before_tf, before = float(tf_m.total.numpy()), float(np.asarray(m.total))
    with pytest.raises(tf.errors.InvalidArgumentError, match="acc too large"):
        tf_m.checked(x, np.float32(12.0))
    with pytest.raises(AssertFailedError, match="acc too large"):
        _call(m.checked, x, np.float32(12.0))
    # TF ran three iterations (acc 0, 5, 10) before the assert failed and keeps their assignments; a jaxsm call
    # that raises changes no variable (gaps row "(loader) restored functions")
    assert float(tf_m.total.numpy()) - before_tf == 3.0
    assert float(np.asarray(m.total)) == before
    assert eager_ops[2]["AssignAddVariableOp"] == 0  # the loop runs compiled from the third call
    np.testing.assert_allclose(np.asarray(_call(m.checked, x, np.float32(50))), tf_m.checked(x, 50.0).numpy())


def test_loop_with_a_print_stays_a_python_loop_and_prints_every_iteration(counter_dir, capsys):
    m = _load(counter_dir)
    x = np.array([b"a", b"b", b"c"], dtype=object)
    for _ in range(3):
        assert int(np.asarray(_call(m.printed, x))) == 3
        assert capsys.readouterr().err.splitlines() == ["step 0", "step 1", "step 2"]


def test_loops_whose_variable_grows_give_tf_s_results(counter_dir):
    tf_m, m = tf.saved_model.load(str(counter_dir)), _load(counter_dir)
    for words in [[b"abcd", b"e"], [b"", b"xy", b"z"], [b"q", b"rs"], [b"abc", b""], [b"a", b"bcd"]]:
        x = np.array(words, dtype=object)
        got, want = _call(m.growing, x), tf_m.growing(tf.constant(x))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(np.asarray(g), w.numpy())


def test_indices_from_strings_are_still_checked_as_tf_after_compiling(tmp_path, eager_ops):
    class Model(tf.Module):
        def __init__(self):
            self.table = tf.Variable(np.arange(12, dtype=np.float32).reshape(4, 3))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def f(self, ids):
            rows = tf.gather(self.table, tf.strings.to_number(ids, tf.int32))
            h = tf.nn.relu(rows @ tf.ones([3, 5]) - 4.0)
            return tf.reduce_sum(tf.tanh(h) * 2.0 + 1.0, axis=1)

    tf.saved_model.save(Model(), str(tmp_path / "m"))
    tf_m, m = tf.saved_model.load(str(tmp_path / "m")), _load(tmp_path / "m")
    for ids in [[b"0", b"3"], [b"1", b"2"], [b"2", b"2"], [b"3", b"0"]]:
        x = np.array(ids, dtype=object)
        np.testing.assert_allclose(np.asarray(_call(m.f, x)), tf_m.f(tf.constant(x)).numpy(), rtol=1e-6)
    assert eager_ops[3]["Tanh"] == 0  # compiled from the third call
    bad = np.array([b"1", b"4"], dtype=object)
    with pytest.raises(tf.errors.InvalidArgumentError, match="indices"):
        tf_m.f(tf.constant(bad))
    with pytest.raises(jaxsm.errors.LoweringError, match="out of range"):
        _call(m.f, bad)


def test_wide_int64_values_from_strings_raise_with_x64_off_after_compiling(tmp_path, eager_ops):
    class Model(tf.Module):
        def __init__(self):
            self.v = tf.Variable([5, -7], dtype=tf.int64)

        @tf.function(input_signature=[tf.TensorSpec([2], tf.string)])
        def f(self, numbers):
            n = tf.strings.to_number(numbers, tf.int64)
            y = n * 3 + self.v
            return tf.reduce_sum(tf.square(y - 1)) - tf.reduce_max(y) * 2 + tf.reduce_min(n)

    tf.saved_model.save(Model(), str(tmp_path / "m"))
    tf_m = tf.saved_model.load(str(tmp_path / "m"))
    with jax.enable_x64(False):
        m = _load(tmp_path / "m")
        for numbers in [[b"1", b"2"], [b"3", b"-4"], [b"5", b"6"], [b"7", b"8"]]:
            x = np.array(numbers, dtype=object)
            assert int(np.asarray(_call(m.f, x))) == int(tf_m.f(tf.constant(x)).numpy())
        assert eager_ops[3]["Square"] == 0  # compiled from the third call
        with pytest.raises(jaxsm.errors.Int64RangeError):  # 3 * 2**32 would wrap in 32 bits
            _call(m.f, np.array([b"4294967296", b"1"], dtype=object))
