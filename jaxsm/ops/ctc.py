"""Connectionist temporal classification: the CTC loss with its gradient (CTCLoss, CTCLossV2) and the greedy and
beam-search decoders (CTCGreedyDecoder, CTCBeamSearchDecoder) that ``keras.backend.ctc_decode`` exports.

The loss is pure JAX (TF's CPU forward-backward in log space, tensorflow/core/util/ctc/ctc_loss_calculator.h);
the decoders return SparseTensors whose size depends on the input values, so they run in NumPy on values known
at trace time (a compiled call falls back to running op by op).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsm.graph.values import to_static
from jaxsm.ops.registry import op, precision


# -- loss ----------------------------------------------------------------------------------------------------
def _check_labels(ctx, idx: np.ndarray, values: np.ndarray, seq_len: np.ndarray | None, batch: int, classes: int):
    """TF's CTCLossOp/PopulateLPrimes checks on labels known at trace time (tensorflow/core/kernels/ctc_loss_op.cc,
    tensorflow/core/util/ctc/ctc_loss_calculator.h)."""
    if idx.ndim != 2 or idx.shape[1] != 2 or values.ndim != 1 or idx.shape[0] != values.shape[0]:
        raise ctx.error("labels_indices must be [N, 2] and labels_values [N]")
    if idx.size and (idx[:, 0].min() < 0 or idx[:, 0].max() >= batch or idx[:, 1].min() < 0):
        raise ctx.error(f"label SparseTensor is not valid: an index is outside [0, {batch}) x [0, inf)")
    if len(idx) > 1 and np.any(np.diff(idx[:, 0] * (idx[:, 1].max() + 1) + idx[:, 1]) <= 0):
        raise ctx.error("label SparseTensor is not valid: indices are out of order or repeated")
    ignore_longer = ctx.attr("ignore_longer_outputs_than_inputs", False)
    collapse = ctx.attr("preprocess_collapse_repeated", False)
    for b in range(batch):
        label = values[idx[:, 0] == b]
        if label.size == 0:
            raise ctx.error(f"Labels length is zero in batch {b}")
        kept = label[np.concatenate([[True], label[1:] != label[:-1]])] if collapse else label
        null = kept >= classes - 1
        if null.any() and not null[np.argmax(null) :].all():
            raise ctx.error(f"a non-null label (< num_classes - 1 = {classes - 1}) follows a null label in batch {b}")
        if (kept < 0).any():
            raise ctx.error(f"All labels must be nonnegative integers, batch {b}: {label.tolist()}")
        if seq_len is not None and not ignore_longer and label.size > seq_len[b]:
            raise ctx.error(
                f"Not enough time for target transition sequence (required: {label.size}, available: "
                f"{seq_len[b]}) in batch {b}; ignore_longer_outputs_than_inputs turns this into a zero loss"
            )


def _label_rows(indices, values, batch: int, classes: int, collapse: bool):
    """The labels of each batch entry as TF's CTCLossOp reads the SparseTensor (entries of a row in order, the
    column only orders them), then PopulateLPrimes' preprocessing: repeats dropped if ``collapse``, the sequence
    ended by a label >= num_classes - 1. Returns (labels [batch, L] padded with 0, their lengths, the number of
    entries of each row)."""
    idx, values = jnp.asarray(indices), jnp.asarray(values, jnp.int32)
    n = values.shape[0]
    rows = idx[:, 0]
    same_row = rows[:, None] == rows[None, :]
    pos = jnp.sum(jnp.tril(same_row, -1), axis=1)
    width = max(n, 1)
    raw = jnp.zeros((batch, width), jnp.int32).at[rows, pos].set(values, mode="drop")
    count = jnp.zeros((batch,), jnp.int32).at[rows].add(1, mode="drop")
    present = jnp.arange(width)[None, :] < count[:, None]
    keep = present
    if collapse:
        keep = keep & jnp.concatenate([jnp.ones((batch, 1), bool), raw[:, 1:] != raw[:, :-1]], axis=1)
    ended = jnp.cumsum(keep & (raw >= classes - 1), axis=1) > 0
    keep = keep & ~ended
    order = jnp.argsort(~keep, axis=1, stable=True)
    return jnp.take_along_axis(jnp.where(keep, raw, 0), order, axis=1), jnp.sum(keep, axis=1), count


def _lse(a, b):
    # TF's ctc LogSumExp takes log1pf(expf(.)) in float32 also for double; full precision here (<= 1e-8 apart)
    return jnp.logaddexp(a, b)


def _shift(x, k: int, fill):
    """``x[..., u - k]`` along the last axis (``k`` < 0 looks ahead), ``fill`` where that is outside."""
    pad = jnp.full(x.shape[:-1] + (abs(k),), fill, x.dtype)
    return jnp.concatenate([pad, x[..., :-k]], -1) if k > 0 else jnp.concatenate([x[..., -k:], pad], -1)


def _ctc_loss_and_gradient(x, labels, lengths, count, seq_len, *, blank: int, merge: bool, ignore_longer: bool):
    """TF's CTCLossCalculator on CPU (tensorflow/core/util/ctc/ctc_loss_calculator.h): the softmax of the
    time-major logits ``x`` [T, B, C], log alpha/beta over the label sequence with blanks interleaved, the loss
    ``-log p(labels|x)`` and its gradient w.r.t. the logits (softmax minus the label posteriors). Batch entries
    with ``seq_len`` 0, or longer labels than inputs under ``ignore_longer``, get loss and gradient 0."""
    x = jnp.asarray(x)
    dtype = x.dtype
    t_max, batch, classes = x.shape
    e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))
    y = e / jnp.sum(e, axis=-1, keepdims=True)
    log_y = jnp.log(y)
    u = 2 * labels.shape[1] + 1
    lp = jnp.full((batch, u), blank, jnp.int32).at[:, 1::2].set(labels)
    neg = jnp.array(-np.inf, dtype)
    ly = jnp.take_along_axis(log_y, jnp.broadcast_to(lp[None], (t_max, batch, u)), axis=2)
    is_blank = lp == blank
    stay = is_blank | merge
    skip = ~is_blank & ~(merge & (lp == _shift(lp, 2, -1)))
    skip_from = ~is_blank & ~(merge & (lp == _shift(lp, -2, -1)))

    alpha0 = jnp.full((batch, u), neg).at[:, 0].set(ly[0, :, 0]).at[:, 1].set(ly[0, :, 1])

    def forward(a, ly_t):
        s = _lse(_lse(jnp.where(stay, a, neg), _shift(a, 1, neg)), jnp.where(skip, _shift(a, 2, neg), neg))
        a = ly_t + s
        return a, a

    _, alphas = lax.scan(forward, alpha0, ly[1:])
    alpha = jnp.concatenate([alpha0[None], alphas])

    ends = jnp.arange(u)[None, :] >= (2 * lengths - 1)[:, None]
    beta_end = jnp.where(ends & (jnp.arange(u)[None, :] < (2 * lengths + 1)[:, None]), jnp.zeros((), dtype), neg)

    def backward(b_next, xs):
        t, ly_next = xs
        nb = b_next + ly_next
        b = _lse(_lse(jnp.where(stay, nb, neg), _shift(nb, -1, neg)), jnp.where(skip_from, _shift(nb, -2, neg), neg))
        b = jnp.where((t == seq_len - 1)[:, None], beta_end, jnp.where((t < seq_len - 1)[:, None], b, neg))
        return b, b

    ly_next = jnp.concatenate([ly[1:], jnp.zeros_like(ly[:1])])
    _, beta = lax.scan(backward, jnp.full((batch, u), neg), (jnp.arange(t_max), ly_next), reverse=True)
    ab = alpha + beta
    log_p = _lse(ab[0, :, 0], ab[0, :, 1])
    live = (seq_len > 0) & ~(ignore_longer & (count > seq_len))
    loss = jnp.where(live, -log_p, jnp.zeros((), dtype))
    found = jnp.isfinite(log_p)
    post = jnp.exp(jnp.where(found[None, :, None], ab - log_p[None, :, None], neg))
    onehot = (lp[:, :, None] == jnp.arange(classes)).astype(dtype)
    post = jnp.einsum("tbu,buc->tbc", post, onehot, precision=precision())
    in_time = jnp.arange(t_max)[:, None] < seq_len[None, :]
    grad = jnp.where((in_time & live[None, :])[..., None], y - post, jnp.zeros((), dtype))
    return loss, grad


def _ctc_loss(ctx, x, indices, values, seq_len, blank: int):
    t_max, batch, classes = (int(d) for d in np.shape(x))
    if batch == 0:
        raise ctx.error("batch_size must not be 0")
    static = [to_static(v) for v in (indices, values, seq_len)]
    if static[2] is not None and ((static[2] < 0).any() or (static[2] > t_max).any()):
        raise ctx.error(f"sequence_length must be in [0, {t_max}], got {static[2].tolist()}")
    if static[0] is not None and static[1] is not None:
        _check_labels(ctx, static[0], static[1], static[2], batch, classes)
    labels, lengths, count = _label_rows(
        indices, values, batch, classes, ctx.attr("preprocess_collapse_repeated", False)
    )
    return _ctc_loss_and_gradient(
        x,
        labels,
        lengths,
        count,
        jnp.asarray(seq_len, jnp.int32),
        blank=blank,
        merge=bool(ctx.attr("ctc_merge_repeated", True)),
        ignore_longer=bool(ctx.attr("ignore_longer_outputs_than_inputs", False)),
    )


@op("CTCLoss")
def ctc_loss(ctx, x, labels_indices, labels_values, sequence_length):
    """Blank is the last class; labels >= num_classes - 1 end a sequence (CTCLossCalculator's null label)."""
    return _ctc_loss(ctx, x, labels_indices, labels_values, sequence_length, blank=int(np.shape(x)[-1]) - 1)


@op("CTCLossV2")
def ctc_loss_v2(ctx, x, labels_indices, labels_values, sequence_length):
    """TF's cuDNN form (no CPU kernel in TF): blank is class 0. Computed as CTCLoss with class 0 moved last."""
    x = jnp.asarray(x)
    rolled = jnp.roll(x, -1, axis=-1)
    loss, grad = _ctc_loss(ctx, rolled, labels_indices, labels_values - 1, sequence_length, blank=x.shape[-1] - 1)
    return loss, jnp.roll(grad, 1, axis=-1)


# -- decoders ------------------------------------------------------------------------------------------------
def _decoder_inputs(ctx, x, seq_len) -> tuple[np.ndarray, np.ndarray]:
    """The logits and lengths as NumPy, with CTCDecodeHelper's checks (tensorflow/core/kernels/ctc_decoder_ops.cc)."""
    x = ctx.static(x, "the logits (they set the decoded SparseTensor's size)")
    seq_len = np.asarray(ctx.static(seq_len, "the sequence lengths"), np.int64)
    if x.ndim != 3 or x.size == 0:
        raise ctx.error(f"inputs must be a non-empty 3-D tensor [max_time, batch, classes], got shape {x.shape}")
    if seq_len.shape != (x.shape[1],):
        raise ctx.error(f"sequence_length must be a vector of the batch size {x.shape[1]}, got shape {seq_len.shape}")
    if (seq_len > x.shape[0]).any():
        raise ctx.error(f"sequence_length must be <= max_time {x.shape[0]}, got {seq_len.tolist()}")
    return x, seq_len


def _sparse_paths(paths: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One decoded path per batch entry as a SparseTensor (indices, values, dense_shape), as TF stores them."""
    indices = np.array([[b, t] for b, p in enumerate(paths) for t in range(len(p))], np.int64).reshape(-1, 2)
    values = np.array([v for p in paths for v in p], np.int64)
    return indices, values, np.array([len(paths), max((len(p) for p in paths), default=0)], np.int64)


def _row_argmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TF's RowMax over the last axis: the first strictly greater value wins, so a NaN is only picked first."""
    best, index = x[..., 0].copy(), np.zeros(x.shape[:-1], np.int64)
    for c in range(1, x.shape[-1]):
        better = x[..., c] > best
        best = np.where(better, x[..., c], best)
        index = np.where(better, c, index)
    return best, index


@op("CTCGreedyDecoder")
def ctc_greedy_decoder(ctx, x, sequence_length):
    """Best-path decoding: the top class at each step, blanks dropped, repeats merged if ``merge_repeated``;
    ``log_probability`` is minus the sum of the top logits (not normalised), accumulated in the input dtype."""
    x, seq_len = _decoder_inputs(ctx, x, sequence_length)
    classes = x.shape[2]
    blank = int(ctx.attr("blank_index", -1))
    if not -classes <= blank < classes:
        raise ctx.error(f"blank_index must be in [{-classes}, {classes - 1}], got {blank}")
    blank %= classes
    merge = bool(ctx.attr("merge_repeated", False))
    best, index = _row_argmax(x)
    log_prob = np.zeros(x.shape[1], x.dtype)
    for t in range(x.shape[0]):
        log_prob = np.where(t < seq_len, log_prob - best[t], log_prob)
    paths = []
    for b in range(x.shape[1]):
        steps = index[: max(int(seq_len[b]), 0), b]
        new = np.concatenate([[True], steps[1:] != steps[:-1]]) if merge else np.ones(len(steps), bool)
        paths.append(steps[new & (steps != blank)].tolist())
    return (*_sparse_paths(paths), log_prob[:, None])


class _Beam:
    """A prefix in TF's beam search tree (ctc_beam_entry.h BeamEntry): its last label, parent, children, and the
    log probabilities (total, ending in blank, ending in its label) at the previous (``old``) and current step."""

    __slots__ = ("label", "parent", "children", "old", "new")

    def __init__(self, label: int, parent: _Beam | None, zero):
        self.label, self.parent, self.children = label, parent, {}
        self.old = [zero, zero, zero]
        self.new = [zero, zero, zero]

    def labels(self, merge_repeated: bool) -> list[int]:
        out, prev, node = [], -1, self
        while node.parent is not None:
            if not merge_repeated or node.label != prev:
                out.append(node.label)
            prev, node = node.label, node.parent
        return out[::-1]


def _beam_lse(a, b):
    """TF's ctc LogSumExp (ctc_loss_util.h), with its float32 ``log1pf(expf(.))`` also for double."""
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + type(hi)(np.log1p(np.exp(np.float32(lo - hi))))


def _beam_search(logits: np.ndarray, width: int) -> list[_Beam]:
    """The leaves of TF's CTCBeamSearchDecoder after every step of one sequence (tensorflow/core/util/ctc/
    ctc_beam_search.h, default scorer, no label selection): inputs are log-softmaxed per step, the blank is the
    last class, a child enters the beam only if it beats the beam's worst entry, which it evicts."""
    dtype = logits.dtype.type
    neg = dtype(-np.inf)
    root = _Beam(-1, None, neg)
    root.new = [dtype(0), dtype(0), neg]
    leaves = [root]
    blank = logits.shape[1] - 1
    for raw in logits:
        top = raw.max()
        norm = top + np.log(np.cumsum(np.exp(raw - top), dtype=dtype)[-1])  # TF sums in order
        branches = sorted(leaves, key=lambda e: -e.new[0])
        for b in branches:
            b.old = list(b.new)
        for b in branches:
            if b.parent is not None:
                if b.parent.new[0] != neg:
                    p = b.parent.old
                    b.new[2] = _beam_lse(b.new[2], p[1] if b.label == b.parent.label else p[0])
                b.new[2] = b.new[2] + (raw[b.label] - norm)
            b.new[1] = b.old[0] + raw[blank] - norm
            b.new[0] = _beam_lse(b.new[1], b.new[2])
        leaves = _grow(branches, raw - norm, width, neg)
    return leaves


def _grow(branches: list[_Beam], log_p: np.ndarray, width: int, neg) -> list[_Beam]:
    """Step's second half: each branch, best first, proposes every non-blank child; one joins the beam (evicting
    the worst entry when full) only if it beats the worst, as TF's ``is_candidate``. The worst only rises once
    the beam is full, so new children below it are skipped in bulk (existing ones are still reset)."""
    leaves = list(branches)
    floor = min(e.new[0] for e in leaves) if len(leaves) >= width else neg
    for b in branches:
        if not (b.old[0] > neg and b.old[0] > floor):
            continue
        totals = log_p[:-1] + b.old[0]
        if 0 <= b.label < len(totals):
            totals[b.label] = log_p[b.label] + b.old[1]
        for label in sorted(set(np.flatnonzero(totals > floor).tolist()) | set(b.children)):
            child = b.children.get(label) or b.children.setdefault(label, _Beam(label, b, neg))
            if child.new[0] != neg:
                continue
            if not totals[label] > floor:
                # TF also clears a rejected child's previous step: if it is a later branch, it grows no children
                child.old, child.new = [neg, neg, neg], [neg, neg, neg]
                continue
            if len(leaves) == width:
                worst = min(leaves, key=lambda e: e.new[0])
                worst.new = [neg, neg, neg]
                leaves.remove(worst)
            child.new = [totals[label], neg, totals[label]]
            leaves.append(child)
            if len(leaves) == width:
                floor = min(e.new[0] for e in leaves)
    return leaves


@op("CTCBeamSearchDecoder")
def ctc_beam_search_decoder(ctx, x, sequence_length):
    """The ``top_paths`` best label sequences of each batch entry (one SparseTensor each) and their log
    probabilities, as TF's CPU kernel (tensorflow/core/kernels/ctc_decoder_ops.cc)."""
    x, seq_len = _decoder_inputs(ctx, x, sequence_length)
    width, top = int(ctx.attr("beam_width")), int(ctx.attr("top_paths"))
    merge = bool(ctx.attr("merge_repeated", True))
    if top > width:
        raise ctx.error(f"requested more paths ({top}) than the beam width ({width})")
    paths, log_prob = [[] for _ in range(top)], np.zeros((x.shape[1], top), x.dtype)
    for b in range(x.shape[1]):
        leaves = _beam_search(x[: max(int(seq_len[b]), 0), b], width)
        if top > len(leaves):
            raise ctx.error(f"Less leaves in the beam search ({len(leaves)}) than requested ({top}) in batch {b}")
        best = sorted(leaves, key=lambda e: -e.new[0])[:top]
        for p, entry in enumerate(best):
            paths[p].append(entry.labels(merge))
            log_prob[b, p] = entry.new[0]
    sparse = [_sparse_paths(p) for p in paths]
    return (*[s[0] for s in sparse], *[s[1] for s in sparse], *[s[2] for s in sparse], log_prob)
