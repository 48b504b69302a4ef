"""jaxsm.ops.control_flow against TF: gradients through a run-time tf.cond (cond_v2's optional intermediates),
branches whose outputs differ in shape, in TF2 functions and a TF1 training graph."""

import warnings

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import jaxsm  # noqa: E402
from jaxsm.errors import EagerFallbackWarning  # noqa: E402
from tests.tfcompare import assert_matches_tf  # noqa: E402


class _Trainer(tf.Module):
    def __init__(self):
        self.w = tf.Variable([[0.5, -1.0], [2.0, 0.25]])
        self.b = tf.Variable([0.1, -0.2])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([], tf.bool)])
    def step(self, x, flag):
        with tf.GradientTape() as tape:
            h = x @ self.w + self.b
            h = tf.cond(flag, lambda: tf.nn.relu(h) * tf.exp(self.b), lambda: tf.tanh(h) - self.b)
            loss = tf.reduce_sum(h * h)
        for v, g in zip((self.w, self.b), tape.gradient(loss, (self.w, self.b)), strict=True):
            v.assign_sub(0.1 * g)
        return loss


def test_gradient_through_a_run_time_cond(tmp_path):
    """The forward If returns the intermediates the gradient needs as optionals (OptionalFromValue in the
    branch that computed them, OptionalNone in the other); the step compiles and matches TF step by step."""
    ref = _Trainer()
    tf.saved_model.save(ref, str(tmp_path))
    m = jaxsm.load(str(tmp_path))
    x = np.array([[1.0, 2.0], [-0.5, 0.3], [0.2, -1.5]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerFallbackWarning)  # compiled, not op by op
        for flag in (True, False, True):
            want = ref.step(x, flag).numpy()
            got = np.asarray(m.step(x, np.bool_(flag)))
            np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=f"loss, flag={flag}")
            for name in ("w", "b"):
                np.testing.assert_allclose(
                    np.asarray(getattr(m, name)), getattr(ref, name).numpy(), rtol=1e-5, err_msg=name
                )


@pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")
def test_branches_with_different_output_shapes():
    def fn(x):
        return tf.cond(tf.reduce_sum(x) > 0, lambda: x[:1], lambda: tf.concat([x, x], 0))

    assert_matches_tf(fn, [np.array([1.0, 2.0, 3.0], np.float32)], shapes=[[None]])
    assert_matches_tf(fn, [np.array([-1.0, 2.0, -3.0], np.float32)], shapes=[[None]])


def test_tf1_training_graph_with_a_cond(tmp_path):
    """A TF1 graph (control flow v2 If inside) trained through prune: Adam steps on a layer whose output passes
    a tf.cond on a placeholder."""
    export_dir = str(tmp_path / "m")
    xs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        training = tf.compat.v1.placeholder_with_default(False, [], name="training")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant(np.eye(3, 2, dtype=np.float32)))
        h = tf.matmul(x, w)
        h = tf.cond(training, lambda: tf.nn.sigmoid(h) * 2.0, lambda: h)
        loss = tf.reduce_mean(h**2, name="loss")
        train = tf.compat.v1.train.AdamOptimizer(0.1).minimize(loss)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(export_dir)
            builder.add_meta_graph_and_variables(sess, ["train"])
            builder.save()
            want = [sess.run([loss, train], {x: xs, training: True})[0] for _ in range(3)]
            w_after = sess.run(w)
    m = jaxsm.load(export_dir, tags=["train"])
    step = m.prune(["x:0", "training:0"], ["loss:0", train.name])
    got = [float(np.asarray(step(xs, np.bool_(True))[0])) for _ in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-5, err_msg="losses")
    w_var = next(v for v in m.variables if v.name in ("w", "w:0"))
    np.testing.assert_allclose(np.asarray(w_var.value()), w_after, rtol=1e-5, err_msg="trained weights")
