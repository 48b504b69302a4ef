"""Gradients of loaded functions against TF's registered gradients, op family by op family: ``jax.vjp`` of
jaxsm's pure function (under ``jax.jit`` and op by op) against ``tf.GradientTape`` with the same cotangent, and
``jax.jvp`` against ``tf.autodiff.ForwardAccumulator``. The inputs sit where JAX's and TF's derivative rules can
part: ties, kinks, bounds, zeros, duplicate indices, special values.

Each family is one tf.function returning a dict of outputs, saved once; every output is compared on its own
(its cotangent random, the others' zero), so a message names the case.
"""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import jaxsm  # noqa: E402
from tests.tfcompare import save_function  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")]
JIT = pytest.mark.parametrize("jit", [True, False])
RNG = np.random.default_rng(0)
_SAVED = {}


def _is_float(x) -> bool:
    return np.dtype(x.dtype).kind in "fc"


def _cotangent(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    ct = rng.normal(size=shape)
    if np.dtype(dtype).kind == "c":
        ct = ct + 1j * rng.normal(size=shape)
    return ct.astype(dtype)


def _saved(name, fn, inputs):
    """(jaxsm's pure function of the inputs, the tf.function), saved once per family."""
    if name not in _SAVED:
        path, tf_fn = save_function(fn, inputs)
        apply, params = jaxsm.functional(jaxsm.load(path).f)
        _SAVED[name] = (lambda *xs: apply(params, *xs)), tf_fn
    return _SAVED[name]


def _tf_vjps(tf_fn, inputs, wrt, cts):
    """TF's gradient of each output wrt the inputs ``wrt``, with the output's cotangent. ``tf_fn`` runs eagerly,
    so the tape follows only the ops between an output and the inputs (the gradient of a function call would
    carry the other outputs' zero cotangents through their ops: 0 * inf = NaN)."""
    xs = [tf.constant(x) for x in inputs]
    with tf.GradientTape(persistent=True) as tape:
        for i in wrt:
            tape.watch(xs[i])
        out = tf_fn(*xs)
    zero = tf.UnconnectedGradients.ZERO
    grads = {}
    for key, ct in cts.items():
        g = tape.gradient(out[key], [xs[i] for i in wrt], output_gradients=tf.constant(ct), unconnected_gradients=zero)
        grads[key] = [np.asarray(tf.convert_to_tensor(v)) for v in g]
    return {k: v.numpy() for k, v in out.items()}, grads


def _tf_jvps(tf_fn, inputs, wrt, tangents):
    xs = [tf.constant(x) for x in inputs]
    with tf.autodiff.ForwardAccumulator([xs[i] for i in wrt], [tf.constant(t) for t in tangents]) as acc:
        out = tf_fn(*xs)
    zero = tf.UnconnectedGradients.ZERO
    return {k: np.asarray(acc.jvp(v, unconnected_gradients=zero)) for k, v in out.items()}


def check_grads(name, fn, inputs, jit=True, rtol=1e-6, atol=1e-8, forward=True, no_forward=(), conj=False):
    """Compare jaxsm's VJPs (and JVPs with ``forward``, but for the outputs ``no_forward``) with TF's for every
    float output of ``fn``; float inputs are differentiated. ``conj``: complex gradients are compared as the
    conjugate of TF's (TF's gradient of a real loss of a complex input is the conjugate of JAX's)."""
    inputs = [np.asarray(x) for x in inputs]
    f, _ = _saved(name, fn, inputs)
    tf_fn = fn
    wrt = [i for i, x in enumerate(inputs) if _is_float(x)]

    def on(*diff):
        full = list(inputs)
        for i, d in zip(wrt, diff):
            full[i] = d
        return f(*full)

    want_out, _ = _tf_vjps(tf_fn, inputs, wrt, {})
    keys = [k for k in want_out if _is_float(want_out[k])]
    cts = {k: _cotangent(want_out[k].shape, want_out[k].dtype, seed) for seed, k in enumerate(keys)}
    _, want = _tf_vjps(tf_fn, inputs, wrt, cts)

    diff = [inputs[i] for i in wrt]

    if jit:  # the graph traced once; each output's VJP replays the jaxpr
        closed, shapes = jax.make_jaxpr(on, return_shape=True)(*diff)
        position = {path[0].key: i for i, (path, _) in enumerate(jax.tree_util.tree_flatten_with_path(shapes)[0])}

        def output(key):
            return lambda *d: jax.extend.core.jaxpr_as_fun(closed)(*d)[position[key]]
    else:

        def output(key):
            return lambda *d: on(*d)[key]

    def vjps(d, cts):  # each output on its own: the others' zero cotangents would carry their NaNs along
        return {k: jax.vjp(output(k), *d)[1](ct) for k, ct in cts.items()}

    got_all = (jax.jit(vjps) if jit else vjps)(diff, cts)
    failures = []

    def compare(got, want, what):
        try:
            np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=atol, err_msg=what)
        except AssertionError as e:
            failures.append(str(e))

    for key in keys:
        for i, g, w in zip(wrt, got_all[key], want[key]):
            compare(g, np.conj(w) if conj else w, f"{name}/{key}: d/dx{i}")
    if not (forward and jit):  # forward mode under jit only (op by op it doubles the time, same rules)
        assert not failures, "\n".join(failures)
        return
    tangents = [_cotangent(x.shape, x.dtype, 100 + i) for i, x in zip(wrt, diff)]
    want_t = _tf_jvps(tf_fn, inputs, wrt, tangents)
    jvp = lambda d, t: jax.jvp(on, d, t)[1]  # noqa: E731
    got_t = (jax.jit(jvp) if jit else jvp)(tuple(diff), tuple(tangents))
    for key in keys:
        if key not in no_forward:
            compare(got_t[key], want_t[key], f"{name}/{key}: jvp")
    assert not failures, "\n".join(failures)


# -- 1. ties and kinks -----------------------------------------------------------------------------------------


def test_ties_and_kinks():
    def fn(x, y):
        r = tf.reverse(x, [0])
        return {
            "maximum_tie": tf.maximum(x, y),
            "minimum_tie": tf.minimum(x, y),
            "maximum_self": tf.maximum(x, x),
            "reduce_max": tf.reduce_max(tf.reshape(x, [3, 4]), axis=1),
            "reduce_min": tf.reduce_min(tf.reshape(x, [3, 4]), axis=0),
            "reduce_max_all": tf.reduce_max(x),
            "segment_max": tf.math.segment_max(x, [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3]),
            "unsorted_segment_max": tf.math.unsorted_segment_max(x, [0, 1, 0, 1, 2, 2, 0, 1, 2, 0, 1, 2], 4),
            "unsorted_segment_min": tf.math.unsorted_segment_min(x, [0, 1, 0, 1, 2, 2, 0, 1, 2, 0, 1, 2], 3),
            "relu": tf.nn.relu(x),
            "relu6": tf.nn.relu6(x),
            "leaky_relu": tf.nn.leaky_relu(x, 0.1),
            "elu": tf.nn.elu(x),
            "selu": tf.nn.selu(x),
            "gelu": tf.nn.gelu(x),
            "gelu_approx": tf.nn.gelu(x, approximate=True),
            "softplus": tf.nn.softplus(x),
            "clip": tf.clip_by_value(x, 0.0, 6.0),
            "clip_tensor": tf.clip_by_value(x, y - 1.0, y + 1.0),
            "abs": tf.abs(x),
            "sign": tf.sign(x) * x,
            "floor_round_ceil": tf.floor(x) + tf.round(x) + tf.math.ceil(x) + tf.math.rint(x),
            "atan2": tf.math.atan2(x * y, x),
            "where_log": tf.where(x > 0, tf.math.log(x), x),
            "xlogy": tf.math.xlogy(x, y * y + 1.0),
            "xlog1py": tf.math.xlog1py(x, y * y),
            "xdivy": tf.math.xdivy(x, y * y + 1.0),
            "div_no_nan": tf.math.divide_no_nan(y, x),
            "mul_no_nan": tf.math.multiply_no_nan(y, x),
            "square_diff": tf.math.squared_difference(x, r),
            "cumprod": tf.math.cumprod(x + 3.0),
            "cumprod_excl_rev": tf.math.cumprod(x + 3.0, exclusive=True, reverse=True),
            "cumsum_excl_rev": tf.math.cumsum(x, exclusive=True, reverse=True),
            "cumulative_logsumexp": tf.math.cumulative_logsumexp(x),
            "reduce_logsumexp": tf.reduce_logsumexp(tf.reshape(x, [3, 4]), axis=1),
            "reduce_prod_zero": tf.reduce_prod(tf.reshape(x, [3, 4]), axis=1),
            "argmax_gather": tf.gather(y, tf.argmax(tf.reshape(x, [3, 4]), axis=1)),
        }

    x = np.array([0.0, 1.0, 1.0, -2.0, 6.0, 0.0, 3.0, 3.0, -1.0, 6.0, 0.5, 3.0])
    y = np.array([0.0, 1.0, 2.0, -2.0, 5.0, 0.0, 3.0, 4.0, -1.0, 6.0, 0.5, -3.0])
    # TF's forward mode (a double backward pass) gives an empty segment's derivative NaN; it is a constant
    check_grads("ties", fn, [x, y], no_forward=("unsorted_segment_max",))


@JIT
def test_ties_and_kinks_float32(jit):
    def fn(x):
        return {
            "relu": tf.nn.relu(x),
            "relu6": tf.nn.relu6(x),
            "max": tf.reduce_max(tf.reshape(x, [2, 4]), axis=1),
            "maximum": tf.maximum(x, tf.reverse(x, [0])),
            "clip": tf.clip_by_value(x, 0.0, 6.0),
            "abs": tf.abs(x),
            "l2_normalize": tf.math.l2_normalize(x),
            "norm": tf.norm(x[:3] * 0.0 + x[:3]),
        }

    x = np.array([0.0, 6.0, 1.0, 1.0, -2.0, 6.0, 0.0, 3.0], np.float32)
    check_grads("ties32", fn, [x], jit, rtol=1e-5, atol=1e-6)


def test_cumprod_gradient_at_zeros_is_the_derivative():
    """TF's _CumprodGrad divides by x with div_no_nan, so an element that is 0 gets gradient 0 (a TF bug: the
    product of the others is the derivative). jaxsm's gradient is the derivative, checked by central differences
    of NumPy's cumprod (a polynomial in x)."""

    def fn(x):
        return {"cumprod": tf.math.cumprod(x), "excl_rev": tf.math.cumprod(x, exclusive=True, reverse=True)}

    x = np.array([0.0, 1.5, -2.0, 0.0, 3.0, 0.5])
    f, _ = _saved("cumprod", fn, [x])
    numpy_fns = {"cumprod": np.cumprod, "excl_rev": lambda v: np.cumprod(np.r_[v[1:], 1.0][::-1])[::-1]}
    for seed, (key, g) in enumerate(numpy_fns.items()):
        ct = _cotangent(x.shape, x.dtype, seed)
        h = 1e-6
        want = [(ct @ g(x + h * e) - ct @ g(x - h * e)) / (2 * h) for e in np.eye(len(x))]
        got = jax.jit(jax.grad(lambda v: jnp.vdot(ct, f(v)[key])))(x)  # noqa: B023
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7, err_msg=key)


def test_sqrt_grad_op_of_a_zero_gradient_is_zero():
    """SqrtGrad / RsqrtGrad (a saved GradientTape): TF's kernels give 0 where the incoming gradient is 0, also
    where y is 0, inf or NaN (tf.where(x > 0, tf.sqrt(x), 0) has finite gradients at x <= 0). jaxsm computed
    0 * 0.5 / 0 = NaN."""

    def fn(x):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            safe_sqrt = tf.where(x > 0, tf.sqrt(x), tf.zeros_like(x))
            safe_rsqrt = tf.where(x > 0, tf.math.rsqrt(x), tf.zeros_like(x))
        return {"sqrt": tape.gradient(safe_sqrt, x), "rsqrt": tape.gradient(safe_rsqrt, x)}

    x = np.array([0.0, -1.0, 4.0, 0.25], np.float32)
    path, tf_fn = save_function(fn, [x])
    got = jaxsm.load(path).f(x)
    for key, want in tf_fn(tf.constant(x)).items():
        assert np.isfinite(want.numpy()).all(), f"{key}: TF's gradient is finite"
        np.testing.assert_allclose(np.asarray(got[key]), want.numpy(), rtol=1e-6, err_msg=key)


def test_custom_gradient_with_control_input_on_an_argument():
    """tf.nn.silu is a tf.custom_gradient whose saved gradient function has a control input on its own
    argument ('^result_grads_0'), as has any tf.function using tf.control_dependencies([x]): jaxsm looked for a
    node of that name and failed the call with GraphError."""

    def fn(x):
        with tf.control_dependencies([x]):
            y = tf.identity(x) * 2.0
        return {
            "silu": tf.nn.silu(x),
            "ctl": y,
            "softsign": tf.nn.softsign(x),
            "lrn": tf.nn.local_response_normalization(tf.reshape(x, [1, 1, 1, 4]), 1, 1.0, 0.5, 0.75),
            "recompute_grad": tf.recompute_grad(lambda v: tf.tanh(v) * 2.0)(x),
        }

    # reverse mode only: a custom_vjp has no forward mode in JAX (README gaps), TF has none for Softsign, LRN
    # and recompute_grad
    check_grads("silu", fn, [np.array([0.0, 1.0, -2.0, 3.5], np.float32)], forward=False, rtol=1e-5, atol=1e-6)


# -- 2. indexing -----------------------------------------------------------------------------------------------


def test_indexing():
    def fn(x, u, idx):
        m = tf.reshape(x, [4, 3])
        return {
            "gather_dup": tf.gather(x, [0, 2, 2, 5, 0]),
            "gather_axis1": tf.gather(m, [2, 0, 2], axis=1),
            "gather_batch": tf.gather(m, [[0, 2], [1, 1], [2, 2], [0, 0]], axis=1, batch_dims=1),
            "gather_nd_dup": tf.gather_nd(m, [[0, 1], [3, 2], [0, 1]]),
            "gather_runtime": tf.gather(x, idx),
            "scatter_nd_dup": tf.scatter_nd([[1], [3], [1]], u, [5]),
            "tensor_scatter_update_dup": tf.tensor_scatter_nd_update(x[:6], [[1], [4], [1]], u),
            "tensor_scatter_add_dup": tf.tensor_scatter_nd_add(x[:6], [[1], [4], [1]], u),
            "tensor_scatter_max": tf.tensor_scatter_nd_max(x[:6], [[1], [4], [2]], u),
            "strided_neg": m[::-2, ::-1],
            "strided_mixed": m[3:0:-2, 1:],
            "slice": tf.slice(m, [1, 1], [2, 2]),
            "reverse_sequence": tf.reverse_sequence(m, [1, 3, 0, 2], seq_axis=1, batch_axis=0),
            "dynamic_stitch": tf.dynamic_stitch([[0, 2], [1, 2]], [x[:2], x[2:4]]),
            "segment_sum_gap": tf.math.segment_sum(x[:4], [0, 0, 2, 2]),
            "segment_mean_gap": tf.math.segment_mean(x[:4], [0, 0, 2, 3]),
            "unsorted_sqrt_n": tf.math.unsorted_segment_sqrt_n(x[:4], [3, 0, 3, 3], 5),
            "unsorted_mean": tf.math.unsorted_segment_mean(x[:4], [3, 0, 3, -1], 5),
            "sparse_segment_sqrt_n": tf.sparse.segment_sqrt_n(m, [0, 2, 2], [0, 0, 2]),
            "sparse_segment_mean": tf.sparse.segment_mean(m, [0, 3, 1], [0, 1, 1], num_segments=3),
            "embedding_mean": tf.nn.embedding_lookup_sparse(
                m,
                tf.SparseTensor([[0, 0], [0, 1], [2, 0]], tf.constant([1, 1, 3], tf.int64), [3, 2]),
                tf.SparseTensor([[0, 0], [0, 1], [2, 0]], u, [3, 2]),
                combiner="mean",
            ),
            "embedding_sqrtn": tf.nn.embedding_lookup_sparse(
                m,
                tf.SparseTensor([[0, 0], [0, 1], [2, 0]], tf.constant([1, 1, 3], tf.int64), [3, 2]),
                None,
                combiner="sqrtn",
            ),
            "one_hot_matmul": tf.linalg.matvec(tf.one_hot(idx, 12, dtype=x.dtype), x),
            "tile_bcast": tf.tile(m[:2], [2, 1]) + tf.broadcast_to(x[:3], [4, 3]),
            "pad_reflect": tf.pad(m, [[1, 2], [2, 0]], mode="REFLECT"),
            "pad_symmetric": tf.pad(m, [[0, 2], [1, 1]], mode="SYMMETRIC"),
            "split_concat": tf.concat(tf.split(m, [1, 2], axis=1)[::-1], 1),
            "unstack_stack": tf.stack(tf.unstack(m, axis=1)[::-1], axis=0),
            "matrix_diag_part": tf.linalg.diag_part(m, k=(-1, 1)),
            "matrix_set_diag": tf.linalg.set_diag(m, u[:3]),
            "band_part": tf.linalg.band_part(m, 1, 0),
            "depth_to_space": tf.nn.depth_to_space(tf.reshape(x, [1, 1, 3, 4]), 2),
        }

    x = np.round(RNG.normal(size=12), 1)
    u = np.array([1.5, -2.0, 0.25])
    # forward=False: TF has no forward mode for the sparse segment ops (no gradient of SparseSegmentSqrtNGrad)
    check_grads("indexing", fn, [x, u, np.array([3, 3, 0, 11], np.int32)], forward=False)


def test_duplicate_index_writes():
    """TensorScatterUpdate and DynamicStitch with a duplicate index: TF's gradients (_TensorScatterUpdateGrad,
    _DynamicStitchGrads) give every update the gradient at its index, also the one another overwrote; jaxsm's
    (JAX's scatter/gather) gave that one 0. Reverse and forward mode."""

    def scatters(x, u):
        return {
            "scatter_update": tf.tensor_scatter_nd_update(x, [[1], [4], [1]], u),
            "scatter_update_2d": tf.tensor_scatter_nd_update(tf.reshape(x, [2, 3]), [[0, 1], [0, 1]], u[:2]),
        }

    def stitches(x):
        return {
            "stitch": tf.dynamic_stitch([[0, 2], [1, 2]], [x[:2], x[2:4]]),
            "stitch_rows": tf.dynamic_stitch([[1], [1, 0]], [tf.reshape(x[:2], [1, 2]), tf.reshape(x[2:], [2, 2])]),
        }

    x = np.array([0.5, -1.0, 2.0, 0.0, 3.0, -0.5])
    check_grads("duplicate_scatters", scatters, [x, np.array([1.5, -2.0, 0.25])])
    check_grads("duplicate_stitches", stitches, [x], forward=False)  # TF's forward mode fails on IndexedSlices
    # forward mode: each output's tangent is the sum of its writers' tangents (the transpose of TF's gather)
    f, _ = _saved("duplicate_stitches", stitches, [x])
    t = _cotangent(x.shape, x.dtype, 7)
    got = jax.jit(lambda x, t: jax.jvp(f, (x,), (t,))[1])(x, t)
    np.testing.assert_allclose(got["stitch"], [t[0], t[2], t[1] + t[3]], rtol=1e-12, err_msg="stitch: jvp")


def test_dynamic_partition_and_boolean_mask():
    """Data-dependent shapes: run op by op (EagerFallbackWarning), jax.grad still works."""

    def fn(x):
        parts = tf.dynamic_partition(x, [1, 0, 1, 2, 0, 1], 3)
        return {
            "partition": tf.concat([parts[1] * 2.0, parts[0], parts[2] ** 2], 0),
            "boolean_mask": tf.boolean_mask(x, x > 0.0) ** 2,
            "unique_sum": tf.math.unsorted_segment_sum(x, tf.unique(tf.constant([5, 1, 5, 2, 1, 5]))[1], 3),
        }

    check_grads("partition", fn, [np.array([0.5, -1.0, 2.0, 0.0, 3.0, -0.5])], jit=False, forward=False)


# -- 3. layers / nn --------------------------------------------------------------------------------------------


def test_nn_layers():
    def fn(img, k, k3, labels, vol):
        dw = tf.reshape(k[:, :, :, :1], [2, 2, 3, 1])
        return {
            "conv_same_s2": tf.nn.conv2d(img, k, 2, "SAME"),
            "conv_valid": tf.nn.conv2d(img, k, [1, 2], "VALID"),  # (TF CPU has no dilated backprop)
            "conv_explicit": tf.nn.conv2d(img, k, 1, [[0, 0], [1, 0], [0, 2], [0, 0]]),
            "depthwise": tf.nn.depthwise_conv2d(img, dw, [1, 2, 2, 1], "SAME"),
            "conv_transpose": tf.nn.conv2d_transpose(img[..., :2], k[..., :2], [1, 10, 8, 3], 2, "SAME"),
            "conv3d": tf.nn.conv3d(vol, k3, [1, 1, 2, 1, 1], "SAME"),
            "avg_pool_same": tf.nn.avg_pool2d(img, 3, 2, "SAME"),
            "max_pool_ties": tf.nn.max_pool2d(tf.round(img), 2, 1, "VALID"),
            "max_pool_same": tf.nn.max_pool2d(tf.round(img), 3, 2, "SAME"),
            "bias_add": tf.nn.bias_add(img, k[0, 0, 0]),
            "softmax": tf.nn.softmax(img[0, 0]),
            "log_softmax": tf.nn.log_softmax(img[0, 0], axis=0),
            "xent": tf.nn.softmax_cross_entropy_with_logits(tf.nn.softmax(img[0, 1] * 2.0), img[0, 0]),
            "sparse_xent": tf.nn.sparse_softmax_cross_entropy_with_logits(labels, img[0, 0]),
            "sigmoid_xent": tf.nn.sigmoid_cross_entropy_with_logits(tf.sigmoid(img[0, 1]), img[0, 0]),
            "l2_loss": tf.nn.l2_loss(img),
            "moments": tf.nn.moments(img, [0, 1, 2])[1],
            "normalize": tf.nn.batch_normalization(img, k[0, 0, 0], k[0, 0, 1] ** 2 + 1, k[0, 1, 0], k[1, 0, 0], 1e-3),
            "einsum": tf.einsum("bhwc,ijcd->bd", img[:, :2, :2], k),
            "matmul_flags": tf.linalg.matmul(img[0, :3, :3], img[0, 1:4, :3], transpose_a=True, adjoint_b=True),
            "batch_matmul_bcast": tf.linalg.matmul(tf.reshape(img[0, :3], [4, 3, 3]), k[0, :1]),
        }

    img = RNG.normal(size=(1, 5, 4, 3)) * 2
    img[0, 0, 0] = img[0, 0, 1]  # ties for max-pool windows after rounding
    k = RNG.normal(size=(2, 2, 3, 3))
    k3 = RNG.normal(size=(2, 1, 2, 2, 2))
    vol = RNG.normal(size=(1, 3, 4, 2, 2))
    check_grads("nn", fn, [img, k, k3, np.array([2, 0, 1, 2], np.int32), vol], rtol=1e-6, atol=1e-8)


def test_fused_batch_norm_and_layer_norm():
    """TF's _FusedBatchNormGrad ignores the gradients of the batch mean and variance outputs and gives the
    inference mean and variance inputs none: jaxsm keeps their true derivatives (JAX's), so those are not
    compared; the moving statistics here are constants."""
    mean, var = np.float32([0.5, -1.0, 0.0, 0.2]), np.float32([0.5, 1.0, 2.0, 0.1])

    def fn(x, scale, offset):
        y_train, _, _ = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, epsilon=1e-3, is_training=True)
        y_inf, _, _ = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, mean, var, 1e-3, is_training=False)
        mu, sigma2 = tf.nn.moments(x, [3], keepdims=True)
        return {
            "train": y_train,
            "inference": y_inf,
            "layer_norm": tf.nn.batch_normalization(x, mu, sigma2, offset, scale, 1e-3),
            "dropout": tf.nn.experimental.stateless_dropout(x, 0.5, seed=[1, 2]),
            "max_pool3d_ties": tf.nn.max_pool3d(tf.round(x[None]), 2, 1, "VALID"),  # (float32 only in TF)
            "avg_pool3d": tf.nn.avg_pool3d(x[None], 2, [1, 2, 1], "SAME"),
        }

    x = RNG.normal(size=(2, 2, 3, 4)).astype(np.float32)
    check_grads("fused_bn", fn, [x] + [RNG.normal(size=4).astype(np.float32) for _ in range(2)], rtol=2e-4, atol=2e-5)


# -- 4. linalg / special ---------------------------------------------------------------------------------------


def test_linalg():
    def fn(a, b):
        spd = tf.matmul(a, a, transpose_b=True) + 3.0 * tf.eye(3, dtype=a.dtype)
        q, r = tf.linalg.qr(a)
        s = tf.linalg.svd(a, compute_uv=False)
        e = tf.linalg.eigh(spd)[0]
        return {
            "inv": tf.linalg.inv(a),
            "det": tf.linalg.det(a),
            "slogdet": tf.linalg.slogdet(a)[1],
            "logdet": tf.linalg.logdet(spd),
            "solve": tf.linalg.solve(a, b),
            "solve_adj": tf.linalg.solve(a, b, adjoint=True),
            "triangular": tf.linalg.triangular_solve(tf.linalg.band_part(a, -1, 0) + 3 * tf.eye(3, dtype=a.dtype), b),
            "triangular_upper_adj": tf.linalg.triangular_solve(spd, b, lower=False, adjoint=True),
            "cholesky": tf.linalg.cholesky(spd),
            "cholesky_solve": tf.linalg.cholesky_solve(tf.linalg.cholesky(spd), b),
            "qr_product": tf.matmul(q, r),
            "qr_r_abs": tf.abs(r),
            "svd_values": s,
            "eigh_values": e,
            "lstsq": tf.linalg.lstsq(a, b, l2_regularizer=0.1),
            "trace": tf.linalg.trace(a),
            "pinv": tf.linalg.pinv(a),
            "norm_fro": tf.norm(a),
            "norm_1": tf.norm(a, ord=1, axis=[0, 1]),
            "euclidean_norm": tf.math.reduce_euclidean_norm(a, axis=1),
        }

    a = RNG.normal(size=(3, 3))
    check_grads("linalg", fn, [a, RNG.normal(size=(3, 2))], rtol=1e-6, atol=1e-8, forward=False)


def test_special_functions():
    def fn(x, a):
        return {
            "lgamma": tf.math.lgamma(x),
            "digamma": tf.math.digamma(x),
            "erf": tf.math.erf(x),
            "erfc": tf.math.erfc(x),
            "erfinv": tf.math.erfinv(x / 5.0),
            "ndtri": tf.math.ndtri(x / 5.0 + 0.5),
            "igamma_x": tf.math.igamma(a, x),
            "igammac_x": tf.math.igammac(a, x),
            "betainc_x": tf.math.betainc(a, a + 1.0, x / 5.0),
            "bessel_i0e": tf.math.bessel_i0e(x),
            "bessel_i1e": tf.math.bessel_i1e(x),
            "zeta_q": tf.math.zeta(tf.constant([2.5, 3.0, 1.5, 4.0, 2.0], x.dtype), a),  # TF: none wrt x
            "polygamma": tf.math.polygamma(tf.ones_like(x), x),
            "pow_exponent": tf.pow(x - 0.5, a),
            "pow_at_zero": tf.pow(x - 0.5, 2.0) + tf.pow(a - a, x),
            "sqrt": tf.sqrt(x),
            "rsqrt": tf.math.rsqrt(x),
            "log1p": tf.math.log1p(x),
            "atanh": tf.math.atanh(x / 5.0),
            "acosh": tf.math.acosh(x + 1.0),
        }

    x = np.array([0.5, 1.0, 2.0, 3.5, 0.25])
    a = np.array([1.5, 2.0, 0.5, 3.0, 1.0])
    check_grads("special", fn, [x, a], rtol=1e-6, atol=1e-8, forward=False)


# -- 5. control flow and structure -----------------------------------------------------------------------------


def test_control_flow():
    def fn(x, n):
        def body(i, acc):
            return i + 1, acc * 0.9 + tf.sin(acc) * x[0]

        ta = tf.TensorArray(x.dtype, size=3)
        for i in tf.range(3):
            ta = ta.write(i, x[i] * tf.cast(i + 1, x.dtype))
        return {
            "cond_const": tf.cond(tf.constant(True), lambda: x * x, lambda: x),
            "cond_runtime": tf.cond(n > 2, lambda: tf.sin(x), lambda: x**3),
            "cond_runtime_false": tf.cond(n > 5, lambda: tf.sin(x), lambda: x**3),
            "while_fixed": tf.while_loop(lambda i, a: i < 4, body, (0, x))[1],
            "while_max_iter": tf.while_loop(lambda i, a: True, body, (0, x), maximum_iterations=3)[1],
            "scan": tf.scan(lambda a, e: a * e + 1.0, x, initializer=tf.constant(0.5, x.dtype)),
            "map_fn": tf.map_fn(lambda e: e * tf.reduce_sum(x), x),
            "foldl": tf.foldl(lambda a, e: a * e - 0.5, x),
            "tensor_array": ta.stack() * ta.read(1),
            "stop_gradient": tf.stop_gradient(x) * x,
            "int_input": x * tf.cast(n, x.dtype),
        }

    check_grads("control", fn, [np.array([0.5, -1.0, 1.5, 2.0]), np.int32(3)])


class _Dense(tf.Module):
    def __init__(self):
        self.w = tf.Variable(RNG.normal(size=(3, 2)))
        self.b = tf.Variable(np.array([0.0, 0.5]))

    @tf.function(input_signature=[tf.TensorSpec([2, 3], tf.float64)])
    def f(self, x):
        return tf.reduce_sum(tf.nn.relu(tf.matmul(x, self.w) + self.b) ** 2) + tf.reduce_max(self.b)


def test_gradients_wrt_variables(tmp_path):
    """jax.grad wrt jaxsm.functional's params against tape.gradient wrt the variables; the relu meets 0 and the
    max has a tie (b's two entries are made equal)."""
    m = _Dense()
    m.b.assign([0.25, 0.25])
    path = str(tmp_path / "m")
    tf.saved_model.save(m, path)
    x = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    with tf.GradientTape() as tape:
        y = m.f(x)
    want_w, want_b = tape.gradient(y, [m.w, m.b])
    apply, params = jaxsm.functional(jaxsm.load(path).f)
    grads = jax.jit(jax.grad(lambda p: apply(p, x)))(params)
    np.testing.assert_allclose(grads["w"], want_w.numpy(), rtol=1e-10, err_msg="d/dw")
    np.testing.assert_allclose(grads["b"], want_b.numpy(), rtol=1e-10, err_msg="d/db")


def test_complex_inputs_are_conjugate():
    """A real loss of a complex input: TF's gradient is the conjugate of JAX's (JAX's convention), so jaxsm's is
    compared with conj(TF's)."""

    def fn(z):
        return {
            "abs": tf.abs(z),
            "real_imag": tf.math.real(z * z) + tf.math.imag(tf.exp(z)),
            "angle": tf.math.angle(z),
            "abs2": tf.math.real(z * tf.math.conj(z)),
        }

    z = np.array([1.0 + 2.0j, -0.5 + 0.25j, 3.0 - 1.0j])
    check_grads("complex", fn, [z], conj=True, forward=False)


def test_hessians_of_smooth_ops():
    """Second order: jax.hessian against nested tapes."""

    def fn(x):
        return {"y": tf.reduce_sum(tf.tanh(x) * tf.sin(x[::-1]) + tf.math.softplus(x) ** 2 + tf.pow(x * x + 1.0, 1.5))}

    x = np.array([0.5, -1.0, 2.0, 0.0])
    f, _ = _saved("hessian", fn, [x])
    xt = tf.constant(x)
    with tf.GradientTape() as outer:
        outer.watch(xt)
        with tf.GradientTape() as inner:
            inner.watch(xt)
            y = fn(xt)["y"]
        g = inner.gradient(y, xt)
    want = outer.jacobian(g, xt).numpy()
    np.testing.assert_allclose(jax.jit(jax.hessian(lambda v: f(v)["y"]))(x), want, rtol=1e-10, err_msg="hessian")
