"""CTC ops against TF: CTCLoss (loss and gradient, every attr, ragged lengths, skipped entries), CTCLossV2 (no CPU
kernel in TF: compared with CTCLoss on classes rotated so the blank is last), CTCGreedyDecoder and
CTCBeamSearchDecoder (value-dependent SparseTensor outputs), and the InvalidArgument cases."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import JaxsmError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

R = tf.raw_ops

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(6, 4, 5)) * 2
# batch 0: a repeat, 1: a repeat split by another label, 2: one label, 3: a gap in the columns (only order counts)
INDICES = np.array([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [2, 0], [3, 1], [3, 4]], np.int64)
VALUES = np.array([1, 1, 2, 3, 0, 3, 2, 0, 3], np.int32)


def _loss_fn(merge=True, collapse=False, ignore=False):
    def fn(x, i, v, s):
        return R.CTCLoss(
            inputs=x,
            labels_indices=i,
            labels_values=v,
            sequence_length=s,
            ctc_merge_repeated=merge,
            preprocess_collapse_repeated=collapse,
            ignore_longer_outputs_than_inputs=ignore,
        )

    return fn


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "merge,collapse,dtype",
    [(True, False, np.float32), (False, False, np.float64), (True, True, np.float64), (False, True, np.float32)],
)
def test_ctc_loss(merge, collapse, dtype, jit):
    seq = np.array([6, 5, 1, 3], np.int32)
    inputs = [LOGITS.astype(dtype), INDICES, VALUES, seq]
    assert_matches_tf(_loss_fn(merge, collapse), inputs, jit=jit, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit", [True, False])
def test_ctc_loss_ignore_longer_and_edge_cases(jit):
    """Entry 0 has too few steps (skipped: zero loss and gradient), entry 1 none at all, entry 2 labels that end
    with null labels (>= num_classes - 1), entry 3 no valid path (loss inf, gradient the softmax)."""
    x = LOGITS.astype(np.float32)
    x[:, 3, 2] = -np.inf
    x[:4, 0, :] = np.nan  # entry 0 is skipped: TF never reads these
    indices = np.array([[0, 0], [0, 1], [0, 2], [1, 0], [2, 0], [2, 1], [2, 2], [3, 0]], np.int64)
    values = np.array([1, 2, 3, 1, 2, 4, 4, 2], np.int32)
    seq = np.array([2, 0, 6, 4], np.int32)
    assert_matches_tf(_loss_fn(ignore=True), [x, indices, values, seq], jit=jit, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit", [True, False])
def test_ctc_loss_v2(jit):
    """CTCLossV2 (cuDNN's op, blank 0) equals CTCLoss on the classes rotated so that the blank comes last."""
    x = LOGITS.astype(np.float32)
    seq = np.array([6, 5, 2, 3], np.int32)
    export_dir, _ = save_function(
        lambda x, i, v, s: R.CTCLossV2(inputs=x, labels_indices=i, labels_values=v, sequence_length=s),
        [x, INDICES, VALUES + 1, seq],
    )
    got = run_jaxsm(export_dir, [x, INDICES, VALUES + 1, seq], jit=jit)
    loss, grad = _loss_fn()(tf.constant(np.roll(x, -1, axis=-1)), INDICES, VALUES, seq)
    np.testing.assert_allclose(np.asarray(got[0]), loss.numpy(), rtol=1e-5, err_msg="loss")
    np.testing.assert_allclose(np.asarray(got[1]), np.roll(grad.numpy(), 1, axis=-1), atol=1e-6, err_msg="gradient")


@pytest.mark.parametrize(
    "indices,values,seq",
    [
        ([[0, 0], [1, 0]], [1, 2], [6, 6, 6]),  # batch entry 2 has no labels
        ([[0, 0], [1, 0], [2, 0], [2, 1]], [1, 2, 4, 1], [6, 6, 6]),  # a label after the null label
        ([[0, 0], [1, 0], [2, 0]], [1, -2, 1], [6, 6, 6]),  # negative label
        ([[0, 0], [0, 1], [1, 0], [2, 0]], [1, 2, 1, 1], [1, 6, 6]),  # 2 labels in 1 step
        ([[0, 0], [1, 0], [2, 0]], [1, 2, 1], [6, 7, 6]),  # sequence_length > max_time
        ([[0, 1], [0, 0], [1, 0], [2, 0]], [1, 2, 1, 1], [6, 6, 6]),  # unsorted indices
        ([[0, 0], [1, 0], [3, 0]], [1, 2, 1], [6, 6, 6]),  # batch index out of range
    ],
    ids=["empty-label", "after-null", "negative", "too-long", "seq-len", "unsorted", "batch-range"],
)
def test_ctc_loss_errors(indices, values, seq):
    x = LOGITS[:, :3].astype(np.float32)
    inputs = [x, np.array(indices, np.int64), np.array(values, np.int32), np.array(seq, np.int32)]
    export_dir, tf_fn = save_function(lambda x: _loss_fn()(x, *[tf.constant(v) for v in inputs[1:]]), inputs[:1])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(x)
    with pytest.raises(JaxsmError):
        run_jaxsm(export_dir, inputs[:1])


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("merge,blank", [(True, -1), (False, -1), (True, 0), (False, 2)])
def test_ctc_greedy_decoder(merge, blank, dtype, jit):
    x = np.round(LOGITS).astype(dtype)  # ties: TF keeps the first maximum
    x[1, 1, 3] = np.nan
    x[2, 2, 0] = np.nan
    seq = np.array([6, 5, 0, 3], np.int32)

    def fn(x, s):
        return R.CTCGreedyDecoder(inputs=x, sequence_length=s, merge_repeated=merge, blank_index=blank)

    assert_matches_tf(fn, [x, seq], jit=jit)


def test_ctc_greedy_decoder_errors():
    x = LOGITS.astype(np.float32)
    fn = lambda x: R.CTCGreedyDecoder(inputs=x, sequence_length=[1, 2, 7, 1])  # noqa: E731
    export_dir, tf_fn = save_function(fn, [x])
    with pytest.raises((tf.errors.InvalidArgumentError, tf.errors.FailedPreconditionError)):
        tf_fn(x)
    with pytest.raises(JaxsmError, match="sequence_length"):
        run_jaxsm(export_dir, [x])


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width,top,merge", [(1, 1, True), (3, 2, True), (6, 3, False), (6, 6, True), (30, 4, True)])
def test_ctc_beam_search_decoder(width, top, merge, dtype, jit):
    """Beam 6 over 7 classes: TF clears a rejected child's previous step, which stops it growing as a branch."""
    x = (np.random.default_rng(3).normal(size=(10, 3, 7)) * 2).astype(dtype)
    seq = np.array([10, 4, 2], np.int32)

    def fn(x, s):
        return R.CTCBeamSearchDecoder(
            inputs=x, sequence_length=s, beam_width=width, top_paths=top, merge_repeated=merge
        )

    assert_matches_tf(fn, [x, seq], jit=jit, rtol=1e-6)


@pytest.mark.parametrize("seq,width,top", [([3, 0], 2, 2), ([3, 3], 2, 3)], ids=["few-leaves", "top>width"])
def test_ctc_beam_search_decoder_errors(seq, width, top):
    x = LOGITS[:, :2].astype(np.float32)

    def fn(x):
        return R.CTCBeamSearchDecoder(inputs=x, sequence_length=seq, beam_width=width, top_paths=top)

    export_dir, tf_fn = save_function(fn, [x])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(x)
    with pytest.raises(JaxsmError, match="leaves|beam width"):
        run_jaxsm(export_dir, [x])
