"""TF1 summary ops (ScalarSummary, HistogramSummary, TensorSummary(V2), MergeSummary) against TF: the serialized
Summary protos must be byte-identical."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from jaxsm.errors import EagerFallbackWarning
from tests.tfcompare import assert_raises_like_tf, run_jaxsm, save_function

tf = pytest.importorskip("tensorflow")
tf1 = tf.compat.v1

pytestmark = [
    pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning"),
    pytest.mark.filterwarnings("ignore:Cannot activate TF2 compatibility support:UserWarning"),
]


def assert_matches_tf(fn, inputs, jit: bool) -> None:
    """The saved ``fn``'s string outputs are TF's, byte for byte. (tfcompare's version goes through NumPy's
    fixed-width bytes, which drop trailing NUL bytes, and a histogram often ends with one.)"""
    inputs = [np.asarray(x) for x in inputs]
    export_dir, tf_fn = save_function(fn, inputs)
    want, got = tf_fn(*inputs), run_jaxsm(export_dir, inputs, jit=jit)
    want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
    assert len(want) == len(got), f"TF returned {len(want)} outputs, jaxsm {len(got)}"
    for i, (w, g) in enumerate(zip(want, got)):
        w = np.array(w.numpy().tolist() if w.shape.rank else w.numpy(), object)
        g = np.asarray(g, object)
        assert g.shape == w.shape, f"output {i}: shape {g.shape} != TF's {w.shape}"
        assert g.tolist() == w.tolist(), f"output {i}: serialized summaries differ"


VALUES = {
    "float32": np.array([[0.5, -3.25, 0.0], [-0.0, 1e-13, 7e21]], np.float32),
    "float64": np.array([1e-300, -2.5, 1.0, 1.0, 1.1], np.float64),
    "int32": np.array([[[3, -4]], [[0, 2**31 - 1]]], np.int32),
    "int64": np.array([2**53 + 1, -7], np.int64),
    "scalar": np.float32(2.5),
    "empty": np.zeros((0, 2), np.float32),
    "half": np.array([1.5, -0.25], np.float16),
}


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("case", sorted(VALUES))
def test_histogram_and_tensor_summaries_match_tf(case, jit):
    def fn(v):
        meta = tf.constant(b"\n\x0c\n\x06plugin\x12\x02ab\x12\x03dis")  # plugin_data + display_name
        return (
            tf1.summary.histogram("h", v),
            tf.raw_ops.TensorSummaryV2(tag="t", tensor=v, serialized_summary_metadata=meta),
            tf.raw_ops.TensorSummary(tensor=v, description="d", labels=["l"], display_name="n"),
        )

    assert_matches_tf(fn, [VALUES[case]], jit=jit)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("case", ["float32", "int32", "int64", "scalar", "empty", "half"])
def test_scalar_summary_matches_tf(case, jit):
    values = VALUES[case]
    tags = np.array([f"tag{i}".encode() for i in range(values.size)], object).reshape(values.shape)
    assert_matches_tf(lambda t, v: tf.raw_ops.ScalarSummary(tags=t, values=v), [tags, values], jit=jit)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_merge_summary_and_strings_match_tf(jit):
    def fn(v, s):
        a = tf1.summary.scalar("a", v[0])
        b = tf1.summary.histogram("b", v)
        c = tf1.summary.text("c", s)  # a TensorSummaryV2 of strings
        no_tag = tf.raw_ops.TensorSummary(tensor=v)
        return tf1.summary.merge([a, tf.stack([b, c]), no_tag, no_tag]), c

    assert_matches_tf(fn, [VALUES["float32"].reshape(-1), np.array([b"x", b""], object)], jit=jit)


@pytest.mark.parametrize(
    "fn",
    [
        lambda v: tf1.summary.merge([tf.raw_ops.ScalarSummary(tags="a", values=v[i]) for i in (0, 1)]),
        lambda v: tf1.summary.histogram("h", v / 0.0),
        lambda v: tf1.summary.histogram("h", v * np.float32(np.inf) + 1),
        lambda v: tf.raw_ops.ScalarSummary(tags=["a", "b"], values=v),
        lambda v: tf.raw_ops.MergeSummary(inputs=[tf.constant(b"\xff")]),
    ],
    ids=["duplicate-tag", "nan", "inf", "shape", "garbage"],
)
def test_summary_errors_like_tf(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerFallbackWarning)
        assert_raises_like_tf(fn, [np.array([0.0, 1.0, 2.0], np.float32)], jit=False)
