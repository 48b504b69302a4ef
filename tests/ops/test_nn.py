"""Neural-network ops against TF: convolutions, pooling, normalization, softmax/losses, data formats."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])
# Convolutions, pools and normalizations are reductions: float32 sums in a different order than TF's kernels.
RED = dict(rtol=1e-5, atol=1e-5)


def _rand(shape, dtype=np.float32, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, shape).astype(dtype)


def _assert_saved_matches(fn_saved, fn_expected, inputs, jit, rtol=1e-5, atol=1e-5):
    """For graphs TF's CPU kernels cannot run (NCHW convolutions/pools, dilated Conv3D/depthwise): the graph
    is saved (not run) and jaxsm's result compared with TF's result of an equivalent formulation
    ``fn_expected``."""
    export_dir, _ = save_function(fn_saved, inputs)
    got = run_jaxsm(export_dir, inputs, jit=jit)
    expected = fn_expected(*[tf.constant(x) for x in inputs]).numpy()
    assert np.asarray(got).shape == expected.shape, "output shape"
    assert np.asarray(got).dtype == expected.dtype, "output dtype"
    np.testing.assert_allclose(np.asarray(got), expected, rtol=rtol, atol=atol, err_msg="NCHW output")


def _dilate(w, rates):
    """The filter with zeros inserted between taps: a dilated convolution as an undilated one."""
    shape = [(k - 1) * r + 1 for k, r in zip(w.shape, rates, strict=False)] + list(w.shape[len(rates) :])
    out = np.zeros(shape, w.dtype)
    out[tuple(slice(None, None, r) for r in rates)] = w
    return out


def _nchw(x):
    return tf.transpose(x, [0, 3, 1, 2])


def _nhwc(x):
    return tf.transpose(x, [0, 2, 3, 1])


# -- bias ----------------------------------------------------------------------------------------------------
@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize(
    "shape,fmt", [((2, 3, 4, 5), "NHWC"), ((2, 3, 4, 5), "NCHW"), ((2, 3, 4), "NCHW"), ((3, 5), "NHWC")]
)
def test_bias_add(shape, fmt, dtype, jit):
    c = shape[1] if fmt == "NCHW" else shape[-1]
    x, b = (_rand(shape, np.float64) * 10).astype(dtype), (np.arange(c) - 2).astype(dtype)
    assert_matches_tf(
        lambda x, b: (
            tf.raw_ops.BiasAdd(value=x, bias=b, data_format=fmt),
            tf.raw_ops.BiasAddGrad(out_backprop=x, data_format=fmt),
        ),
        [x, b],
        jit=jit,
    )


@JIT
def test_bias_add_v1(jit):
    assert_matches_tf(lambda x, b: tf.raw_ops.BiasAddV1(value=x, bias=b), [_rand((2, 3, 4)), _rand((4,))], jit=jit)


# -- softmax & losses ----------------------------------------------------------------------------------------
@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax(dtype, jit):
    x = (_rand((3, 4, 6), dtype) * 30).astype(dtype)
    x[0, 0] = [1000, 1000, -1000, 0, 1, 2]
    assert_matches_tf(lambda x: (tf.nn.softmax(x), tf.nn.log_softmax(x)), [x], rtol=1e-5, atol=1e-6, jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy(dtype, jit):
    logits = (_rand((4, 5), dtype) * 5).astype(dtype)
    labels = np.abs(_rand((4, 5), dtype, seed=1))
    labels /= labels.sum(-1, keepdims=True)
    sparse = np.array([0, 4, 2, 1], np.int64)

    def fn(logits, labels, sparse):
        loss, back = tf.raw_ops.SoftmaxCrossEntropyWithLogits(features=logits, labels=labels)
        bloss, bback = tf.raw_ops.SoftmaxCrossEntropyWithLogits(features=logits, labels=labels[:1])
        sloss, sback = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(features=logits, labels=sparse)
        s32 = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(features=logits, labels=tf.cast(sparse, tf.int32))
        return loss, back, bloss, bback, sloss, sback, s32

    assert_matches_tf(fn, [logits, labels, sparse], **RED, jit=jit)


# -- convolutions --------------------------------------------------------------------------------------------
CONV2D_CASES = [
    dict(strides=[1, 1, 1, 1], padding="VALID", dilations=[1, 1, 1, 1]),
    dict(strides=[1, 2, 2, 1], padding="SAME", dilations=[1, 1, 1, 1]),
    dict(strides=[1, 2, 1, 1], padding="SAME", dilations=[1, 1, 1, 1]),
    dict(strides=[1, 1, 1, 1], padding="SAME", dilations=[1, 2, 3, 1]),
    dict(strides=[1, 3, 2, 1], padding="VALID", dilations=[1, 1, 2, 1]),
    dict(
        strides=[1, 2, 2, 1],
        padding="EXPLICIT",
        dilations=[1, 1, 1, 1],
        explicit_paddings=[0, 0, 1, 2, 0, 3, 0, 0],
    ),
]


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(CONV2D_CASES)))
def test_conv2d(case, dtype, jit):
    x, w = _rand((2, 9, 8, 3), dtype), _rand((3, 2, 3, 4), dtype, seed=1)
    assert_matches_tf(lambda x, w: tf.raw_ops.Conv2D(input=x, filter=w, **CONV2D_CASES[case]), [x, w], **RED, jit=jit)


@JIT
@pytest.mark.parametrize("case", range(len(CONV2D_CASES)))
def test_conv2d_1x1_matmul_path(case, jit):
    x, w = _rand((2, 9, 8, 3)), _rand((1, 1, 3, 5), seed=1)
    assert_matches_tf(lambda x, w: tf.raw_ops.Conv2D(input=x, filter=w, **CONV2D_CASES[case]), [x, w], **RED, jit=jit)


@JIT
def test_conv2d_grouped_and_dynamic_batch(jit):
    x, w = _rand((2, 7, 7, 6)), _rand((3, 3, 2, 6), seed=1)
    assert_matches_tf(
        lambda x, w: tf.nn.conv2d(x, w, strides=1, padding="SAME"),
        [x, w],
        **RED,
        jit=jit,
        shapes=[(None, 7, 7, 6), (3, 3, 2, 6)],
    )


@JIT
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv1d(padding, jit):
    x, w = _rand((2, 11, 3)), _rand((3, 3, 5), seed=1)
    assert_matches_tf(lambda x, w: tf.nn.conv1d(x, w, stride=2, padding=padding, dilations=1), [x, w], **RED, jit=jit)


@JIT
@pytest.mark.parametrize("case", [0, 1, 3, 5])
def test_conv2d_nchw(case, jit):
    attrs = dict(CONV2D_CASES[case])
    nchw = dict(
        attrs,
        strides=[attrs["strides"][i] for i in (0, 3, 1, 2)],
        dilations=[attrs["dilations"][i] for i in (0, 3, 1, 2)],
        data_format="NCHW",
    )
    if "explicit_paddings" in attrs:
        p = attrs["explicit_paddings"]
        nchw["explicit_paddings"] = p[0:2] + p[6:8] + p[2:6]
    x, w = _rand((2, 3, 9, 8)), _rand((3, 2, 3, 4), seed=1)
    _assert_saved_matches(
        lambda x, w: tf.raw_ops.Conv2D(input=x, filter=w, **nchw),
        lambda x, w: _nchw(tf.raw_ops.Conv2D(input=_nhwc(x), filter=w, **attrs)),
        [x, w],
        jit,
    )


@JIT
@pytest.mark.parametrize(
    "case",
    [
        dict(strides=[1, 1, 1, 1, 1], padding="VALID"),
        dict(strides=[1, 2, 1, 2, 1], padding="SAME"),
    ],
)
def test_conv3d(case, jit):
    x, w = _rand((2, 6, 7, 5, 2)), _rand((3, 2, 3, 2, 3), seed=1)
    assert_matches_tf(lambda x, w: tf.raw_ops.Conv3D(input=x, filter=w, **case), [x, w], **RED, jit=jit)


@JIT
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv3d_dilated(padding, jit):
    x, w = _rand((2, 8, 7, 7, 2)), _rand((3, 2, 3, 2, 3), seed=1)
    wd = _dilate(w, (2, 1, 3))
    _assert_saved_matches(
        lambda x, w: tf.raw_ops.Conv3D(
            input=x, filter=w, strides=[1, 1, 2, 1, 1], padding=padding, dilations=[1, 2, 1, 3, 1]
        ),
        lambda x, w: tf.raw_ops.Conv3D(input=x, filter=tf.constant(wd), strides=[1, 1, 2, 1, 1], padding=padding),
        [x, w],
        jit,
    )


@JIT
def test_conv3d_ncdhw(jit):
    x, w = _rand((2, 2, 6, 7, 5)), _rand((3, 2, 3, 2, 3), seed=1)
    _assert_saved_matches(
        lambda x, w: tf.raw_ops.Conv3D(input=x, filter=w, strides=[1, 1, 2, 1, 1], padding="SAME", data_format="NCDHW"),
        lambda x, w: tf.transpose(
            tf.raw_ops.Conv3D(
                input=tf.transpose(x, [0, 2, 3, 4, 1]), filter=w, strides=[1, 2, 1, 1, 1], padding="SAME"
            ),
            [0, 4, 1, 2, 3],
        ),
        [x, w],
        jit,
    )


@JIT
def test_conv_generic(jit):
    x, w = _rand((2, 3, 8, 8, 4)), _rand((3, 3, 4, 6), seed=1)
    assert_matches_tf(
        lambda x, w: tf.raw_ops.Conv(input=x, filter=w, strides=[1, 2, 1, 1], padding="SAME", batch_dims=2),
        [x, w],
        **RED,
        jit=jit,
    )


@JIT
def test_conv_generic_grouped(jit):
    # TF's CPU Conv kernel has no grouped convolution; Conv2D on the same operands is the oracle.
    x, w = _rand((2, 3, 8, 8, 4)), _rand((3, 3, 2, 6), seed=1)
    _assert_saved_matches(
        lambda x, w: tf.raw_ops.Conv(input=x, filter=w, strides=[1, 2, 1, 1], padding="SAME", batch_dims=2, groups=2),
        lambda x, w: tf.reshape(
            tf.raw_ops.Conv2D(input=tf.reshape(x, [6, 8, 8, 4]), filter=w, strides=[1, 2, 1, 1], padding="SAME"),
            [2, 3, 4, 8, 6],
        ),
        [x, w],
        jit,
    )


DEPTHWISE_CASES = [
    dict(k=3, mult=1, strides=[1, 1, 1, 1], padding="SAME", dilations=[1, 1, 1, 1]),
    dict(k=3, mult=2, strides=[1, 2, 2, 1], padding="VALID", dilations=[1, 1, 1, 1]),
    dict(k=5, mult=1, strides=[1, 2, 2, 1], padding="SAME", dilations=[1, 1, 1, 1]),
    dict(
        k=3,
        mult=2,
        strides=[1, 1, 1, 1],
        padding="EXPLICIT",
        dilations=[1, 1, 1, 1],
        explicit_paddings=[0, 0, 2, 1, 0, 1, 0, 0],
    ),
    # 7x7 = 49 taps: the conv_general_dilated path.
    dict(k=7, mult=1, strides=[1, 1, 1, 1], padding="SAME", dilations=[1, 1, 1, 1]),
    dict(k=7, mult=3, strides=[1, 2, 2, 1], padding="VALID", dilations=[1, 1, 1, 1]),
]


@JIT
@pytest.mark.parametrize("case", range(len(DEPTHWISE_CASES)))
def test_depthwise_conv2d(case, jit):
    c = dict(DEPTHWISE_CASES[case])
    k, mult = c.pop("k"), c.pop("mult")
    x, w = _rand((2, 12, 11, 4)), _rand((k, k, 4, mult), seed=1)
    assert_matches_tf(lambda x, w: tf.raw_ops.DepthwiseConv2dNative(input=x, filter=w, **c), [x, w], **RED, jit=jit)


@JIT
@pytest.mark.parametrize("k", [3, 7])
def test_depthwise_conv2d_nchw(k, jit):
    x, w = _rand((2, 4, 10, 9)), _rand((k, k, 4, 2), seed=1)
    _assert_saved_matches(
        lambda x, w: tf.raw_ops.DepthwiseConv2dNative(
            input=x, filter=w, strides=[1, 1, 2, 2], padding="SAME", data_format="NCHW"
        ),
        lambda x, w: _nchw(
            tf.raw_ops.DepthwiseConv2dNative(input=_nhwc(x), filter=w, strides=[1, 2, 2, 1], padding="SAME")
        ),
        [x, w],
        jit,
    )


@JIT
@pytest.mark.parametrize("k,padding", [(3, "SAME"), (3, "VALID"), (7, "SAME")])
def test_depthwise_conv2d_dilated(k, padding, jit):
    # TF's CPU depthwise kernel has no dilations; the oracle convolves with the zero-dilated filter.
    x, w = _rand((2, 16, 15, 3)), _rand((k, k, 3, 2), seed=1)
    wd = _dilate(w, (2, 3))
    _assert_saved_matches(
        lambda x, w: tf.raw_ops.DepthwiseConv2dNative(
            input=x, filter=w, strides=[1, 1, 1, 1], padding=padding, dilations=[1, 2, 3, 1]
        ),
        lambda x, w: tf.raw_ops.DepthwiseConv2dNative(
            input=x, filter=tf.constant(wd), strides=[1, 1, 1, 1], padding=padding
        ),
        [x, w],
        jit,
    )


@JIT
@pytest.mark.parametrize("padding,strides", [("SAME", 2), ("VALID", 1), ("VALID", 3)])
def test_conv_backprop(padding, strides, jit):
    x, w = _rand((2, 9, 8, 3)), _rand((3, 3, 3, 4), seed=1)
    dy = tf.nn.conv2d(x, w, strides, padding).numpy()
    dw_k = _rand((3, 3, 3, 2), seed=2)
    ddy = tf.nn.depthwise_conv2d(x, dw_k, [1, strides, strides, 1], padding).numpy()

    def fn(x, w, dy, dw_k, ddy):
        s = [1, strides, strides, 1]
        return (
            tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=s, padding=padding
            ),
            tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x)[1:3], filter=w, out_backprop=dy, strides=s, padding=padding
            ),
            tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=s, padding=padding
            ),
            tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
                input_sizes=tf.shape(x), filter=dw_k, out_backprop=ddy, strides=s, padding=padding
            ),
            tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
                input=x, filter_sizes=tf.shape(dw_k), out_backprop=ddy, strides=s, padding=padding
            ),
        )

    assert_matches_tf(fn, [x, w, dy, dw_k, ddy], **RED, jit=jit)
    # The V2 forms (shapes from tensors) have no TF CPU kernel: the V1 forms are their oracle.
    s = [1, strides, strides, 1]
    _assert_saved_matches(
        lambda x, w, dy: tf.raw_ops.Conv2DBackpropInputV2(
            input=x, filter=w, out_backprop=dy, strides=s, padding=padding
        ),
        lambda x, w, dy: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=s, padding=padding
        ),
        [x, w, dy],
        jit,
    )
    _assert_saved_matches(
        lambda x, w, dy: tf.raw_ops.Conv2DBackpropFilterV2(
            input=x, filter=w, out_backprop=dy, strides=s, padding=padding
        ),
        lambda x, w, dy: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=s, padding=padding
        ),
        [x, w, dy],
        jit,
    )


@JIT
def test_conv_backprop_explicit(jit):
    x, w = _rand((2, 9, 8, 3)), _rand((2, 3, 3, 4), seed=1)
    attrs = dict(strides=[1, 2, 1, 1], padding="EXPLICIT", explicit_paddings=[0, 0, 1, 0, 2, 1, 0, 0])
    dy = tf.raw_ops.Conv2D(input=x, filter=w, **attrs).numpy()
    assert_matches_tf(
        lambda x, w, dy: (
            tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=w, out_backprop=dy, **attrs),
            tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(w), out_backprop=dy, **attrs),
        ),
        [x, w, dy],
        **RED,
        jit=jit,
    )


@JIT
def test_conv_transpose_keras_style(jit):
    x = _rand((2, 5, 6, 4))
    w2, w3 = _rand((3, 3, 2, 4), seed=1), _rand((2, 3, 3, 2, 4), seed=2)
    x3 = _rand((1, 4, 5, 3, 4), seed=3)
    assert_matches_tf(
        lambda x, w2, x3, w3: (
            tf.nn.conv2d_transpose(x, w2, [2, 10, 12, 2], strides=2, padding="SAME"),
            tf.nn.conv2d_transpose(x, w2, [2, 11, 13, 2], strides=2, padding="VALID"),
            tf.nn.conv3d_transpose(x3, w3, [1, 8, 10, 5, 2], strides=[1, 2, 2, 2, 1], padding="SAME"),
        ),
        [x, w2, x3, w3],
        **RED,
        jit=jit,
    )


@JIT
def test_conv3d_backprop(jit):
    x, w = _rand((1, 5, 6, 4, 2)), _rand((2, 3, 2, 2, 3), seed=1)
    s = [1, 2, 1, 2, 1]
    dy = tf.nn.conv3d(x, w, s, "SAME").numpy()
    assert_matches_tf(
        lambda x, w, dy: (
            tf.raw_ops.Conv3DBackpropInputV2(
                input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=s, padding="SAME"
            ),
            tf.raw_ops.Conv3DBackpropFilterV2(
                input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=s, padding="SAME"
            ),
        ),
        [x, w, dy],
        **RED,
        jit=jit,
    )


@JIT
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_dilation2d(padding, jit):
    x, w = _rand((2, 9, 8, 3)), _rand((3, 2, 3), seed=1)
    assert_matches_tf(
        lambda x, w: tf.raw_ops.Dilation2D(
            input=x, filter=w, strides=[1, 2, 1, 1], rates=[1, 1, 2, 1], padding=padding
        ),
        [x, w],
        jit=jit,
    )


# -- pooling -------------------------------------------------------------------------------------------------
POOL_CASES = [
    dict(ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID"),
    dict(ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME"),
    dict(ksize=[1, 3, 2, 1], strides=[1, 1, 3, 1], padding="SAME"),
    dict(ksize=[1, 4, 4, 1], strides=[1, 3, 3, 1], padding="VALID"),
]


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_pool2d(case, dtype, jit):
    x = _rand((2, 9, 10, 3), dtype)
    c = POOL_CASES[case]
    assert_matches_tf(
        lambda x: (
            tf.raw_ops.MaxPool(input=x, **c),
            tf.raw_ops.AvgPool(value=x, **c),
            tf.raw_ops.MaxPoolV2(
                input=x,
                ksize=tf.constant(c["ksize"]),
                strides=tf.constant(c["strides"]),
                padding=c["padding"],
            ),
        ),
        [x],
        **RED,
        jit=jit,
    )


@JIT
def test_max_pool_int_and_explicit(jit):
    x = (_rand((2, 7, 6, 3)) * 100).astype(np.int32)
    y = -np.abs(_rand((2, 7, 6, 3)))
    assert_matches_tf(
        lambda x, y: (
            tf.raw_ops.MaxPool(input=x, ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME"),
            tf.raw_ops.MaxPool(
                input=y,
                ksize=[1, 3, 3, 1],
                strides=[1, 2, 2, 1],
                padding="EXPLICIT",
                explicit_paddings=[0, 0, 1, 1, 2, 0, 0, 0],
            ),
            tf.raw_ops.MaxPool(input=y, ksize=[1, 1, 1, 3], strides=[1, 1, 1, 3], padding="VALID"),
        ),
        [x, y],
        jit=jit,
    )


@JIT
def test_pool2d_nchw(jit):
    x = _rand((2, 3, 9, 10))
    c = dict(ksize=[1, 1, 3, 3], strides=[1, 1, 2, 2], padding="SAME", data_format="NCHW")
    c_nhwc = dict(ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME")
    _assert_saved_matches(
        lambda x: tf.raw_ops.AvgPool(value=x, **c),
        lambda x: _nchw(tf.raw_ops.AvgPool(value=_nhwc(x), **c_nhwc)),
        [x],
        jit,
    )
    _assert_saved_matches(
        lambda x: tf.raw_ops.MaxPool(input=x, **c),
        lambda x: _nchw(tf.raw_ops.MaxPool(input=_nhwc(x), **c_nhwc)),
        [x],
        jit,
    )


@JIT
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_pool3d(padding, jit):
    x = _rand((2, 5, 6, 7, 2))
    c = dict(ksize=[1, 2, 3, 2, 1], strides=[1, 2, 2, 1, 1], padding=padding)
    assert_matches_tf(
        lambda x: (tf.raw_ops.MaxPool3D(input=x, **c), tf.raw_ops.AvgPool3D(input=x, **c)),
        [x],
        **RED,
        jit=jit,
    )


@JIT
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("include_batch", [False, True])
def test_max_pool_with_argmax(padding, include_batch, jit):
    x = np.round(_rand((2, 7, 6, 3)) * 3).astype(np.float32)  # many ties
    assert_matches_tf(
        lambda x: (
            tf.raw_ops.MaxPoolWithArgmax(
                input=x,
                ksize=[1, 3, 2, 1],
                strides=[1, 2, 2, 1],
                padding=padding,
                include_batch_in_index=include_batch,
            ),
            tf.raw_ops.MaxPoolWithArgmax(
                input=x,
                ksize=[1, 2, 2, 1],
                strides=[1, 1, 1, 1],
                padding=padding,
                Targmax=tf.int32,
                include_batch_in_index=include_batch,
            ),
        ),
        [x],
        jit=jit,
    )


@JIT
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_max_pool_with_argmax_infinities(padding, jit):
    # Windows holding only -inf (and padding) must still point at an in-image element.
    x = np.full((1, 5, 5, 2), -np.inf, np.float32)
    x[0, 2, 2, 0] = 1.0
    assert_matches_tf(
        lambda x: tf.raw_ops.MaxPoolWithArgmax(input=x, ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding=padding),
        [x],
        jit=jit,
    )


@JIT
@pytest.mark.parametrize("padding,ksize,strides", [("SAME", 3, 2), ("VALID", 2, 2), ("VALID", 3, 1)])
def test_pool_gradients(padding, ksize, strides, jit):
    x = np.round(_rand((2, 7, 6, 3)) * 3).astype(np.float32)  # ties: gradients go to the first maximum
    k, s = [1, ksize, ksize, 1], [1, strides, strides, 1]
    y = tf.nn.max_pool2d(x, k, s, padding).numpy()
    dy = _rand(y.shape, seed=1)
    x3 = _rand((1, 4, 5, 6, 2), seed=2)
    k3, s3 = [1, 2, ksize, 2, 1], [1, 1, strides, 2, 1]
    dy3 = _rand(tf.nn.avg_pool3d(x3, k3, s3, padding).shape, seed=3)

    def fn(x, y, dy, x3, dy3):
        a = dict(ksize=k, strides=s, padding=padding)
        _, argmax = tf.raw_ops.MaxPoolWithArgmax(input=x, **a)
        _, argmax_b = tf.raw_ops.MaxPoolWithArgmax(input=x, include_batch_in_index=True, **a)
        return (
            tf.raw_ops.AvgPoolGrad(orig_input_shape=tf.shape(x), grad=dy, **a),
            tf.raw_ops.AvgPool3DGrad(orig_input_shape=tf.shape(x3), grad=dy3, ksize=k3, strides=s3, padding=padding),
            tf.raw_ops.MaxPoolGrad(orig_input=x, orig_output=y, grad=dy, **a),
            tf.raw_ops.MaxPoolGradV2(
                orig_input=x,
                orig_output=y,
                grad=dy,
                ksize=tf.constant(k),
                strides=tf.constant(s),
                padding=padding,
            ),
            tf.raw_ops.MaxPoolGradWithArgmax(input=x, grad=dy, argmax=argmax, **a),
            tf.raw_ops.MaxPoolGradWithArgmax(input=x, grad=dy, argmax=argmax_b, include_batch_in_index=True, **a),
        )

    assert_matches_tf(fn, [x, y, dy, x3, dy3], **RED, jit=jit)


@JIT
def test_max_pool_grad_nchw(jit):
    x = np.round(_rand((2, 3, 7, 6)) * 3).astype(np.float32)
    y = _nchw(tf.nn.max_pool2d(_nhwc(x), 3, 2, "SAME")).numpy()
    dy = _rand(y.shape, seed=1)
    c = dict(ksize=[1, 1, 3, 3], strides=[1, 1, 2, 2], padding="SAME", data_format="NCHW")
    c_nhwc = dict(ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME")
    _assert_saved_matches(
        lambda x, y, dy: tf.raw_ops.MaxPoolGrad(orig_input=x, orig_output=y, grad=dy, **c),
        lambda x, y, dy: _nchw(
            tf.raw_ops.MaxPoolGrad(orig_input=_nhwc(x), orig_output=_nhwc(y), grad=_nhwc(dy), **c_nhwc)
        ),
        [x, y, dy],
        jit,
    )


@JIT
@pytest.mark.parametrize("mode", ["REFLECT", "SYMMETRIC"])
def test_fused_pad_conv2d(mode, jit):
    # Batch 1: TF 2.21's CPU kernel computes wrong values for batch entries after the first (it disagrees with
    # its own pad + conv); jaxsm implements the documented pad + conv for every entry.
    x, w = _rand((1, 5, 6, 2)), _rand((3, 3, 2, 3), seed=1)
    p = [[0, 0], [1, 2], [2, 1], [0, 0]]

    def fn(x, w):
        pad_conv = tf.raw_ops.FusedPadConv2D(
            input=x, paddings=p, filter=w, mode=mode, strides=[1, 1, 1, 1], padding="VALID"
        )
        return [pad_conv] + [
            tf.raw_ops.FusedResizeAndPadConv2D(
                input=x,
                size=[7, 9],
                paddings=p,
                filter=w,
                mode=mode,
                strides=[1, 2, 2, 1],
                padding="SAME",
                resize_align_corners=align,
            )
            for align in (False, True)
        ]

    assert_matches_tf(fn, [x, w], **RED, jit=jit)
    x2 = _rand((3, 5, 6, 2), seed=2)
    _assert_saved_matches(
        lambda x, w: tf.raw_ops.FusedPadConv2D(
            input=x, paddings=p, filter=w, mode=mode, strides=[1, 2, 1, 1], padding="SAME"
        ),
        lambda x, w: tf.nn.conv2d(tf.pad(x, p, mode=mode), w, [1, 2, 1, 1], "SAME"),
        [x2, w],
        jit,
    )


# -- normalization -------------------------------------------------------------------------------------------
@JIT
@pytest.mark.parametrize(
    "version,training,factor",
    [
        ("FusedBatchNorm", False, 1.0),
        ("FusedBatchNorm", True, 1.0),
        *[
            (v, t, f)
            for v in ("FusedBatchNormV2", "FusedBatchNormV3")
            for t, f in [(False, 1.0), (True, 1.0), (True, 0.25)]
        ],
    ],
)
def test_fused_batch_norm(version, training, factor, jit):
    x = _rand((2, 4, 3, 5)) * 3 + 1
    scale, offset = _rand((5,), seed=1) + 2, _rand((5,), seed=2)
    mean, var = _rand((5,), seed=3), np.abs(_rand((5,), seed=4)) + 0.5
    extra = {} if version == "FusedBatchNorm" else {"exponential_avg_factor": factor}

    def fn(x, scale, offset, mean, var):
        outs = getattr(tf.raw_ops, version)(
            x=x,
            scale=scale,
            offset=offset,
            mean=mean,
            variance=var,
            epsilon=0.001,
            is_training=training,
            **extra,
        )
        # Reserve spaces are implementation scratch (uninitialized in TF's inference path); compare them only
        # in training, where they hold the batch statistics.
        return outs[:5] if training else outs[:3]

    assert_matches_tf(fn, [x, scale, offset, mean, var], **RED, jit=jit)


@JIT
@pytest.mark.parametrize("training", [False, True])
def test_fused_batch_norm_v3_half_and_5d(training, jit):
    x = (_rand((2, 3, 4, 3, 4)) * 2).astype(np.float16)
    scale, offset = _rand((4,), seed=1) + 2, _rand((4,), seed=2)
    mean, var = _rand((4,), seed=3), np.abs(_rand((4,), seed=4)) + 0.5
    assert_matches_tf(
        lambda x, s, o, m, v: tf.raw_ops.FusedBatchNormV3(
            x=x, scale=s, offset=o, mean=m, variance=v, is_training=training, data_format="NDHWC"
        )[:3],
        [x, scale, offset, mean, var],
        rtol=2e-3,
        atol=2e-3,
        jit=jit,
    )  # float16 output rounding


@JIT
def test_fused_batch_norm_nchw(jit):
    x = _rand((2, 5, 4, 3)) * 3 + 1
    scale, offset = _rand((5,), seed=1) + 2, _rand((5,), seed=2)
    empty = np.zeros((0,), np.float32)
    _assert_saved_matches(
        lambda x, s, o, m: tf.raw_ops.FusedBatchNormV3(
            x=x, scale=s, offset=o, mean=m, variance=m, is_training=True, data_format="NCHW"
        )[0],
        lambda x, s, o, m: _nchw(
            tf.raw_ops.FusedBatchNormV3(x=_nhwc(x), scale=s, offset=o, mean=m, variance=m, is_training=True)[0]
        ),
        [x, scale, offset, empty],
        jit,
    )


def _bn_grad_inputs(shape, c, dtype=np.float32):
    dy, x = (_rand(shape, seed=5) * 2).astype(dtype), (_rand(shape) * 3 + 1).astype(dtype)
    scale = _rand((c,), seed=1) + 2
    mean, var = _rand((c,), seed=3), np.abs(_rand((c,), seed=4)) + 0.5  # reserve spaces 1 and 2
    return [dy, x, scale, mean, var]


@JIT
@pytest.mark.parametrize("version", ["FusedBatchNormGrad", "FusedBatchNormGradV2", "FusedBatchNormGradV3"])
@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_grad(version, training, jit):
    """The op GradientTape records for FusedBatchNorm* (a saved training step of a tf_keras model with
    BatchNormalization): batch statistics in training, population statistics in inference mode."""
    extra = {"reserve_space_3": np.zeros((0,), np.float32)} if version.endswith("V3") else {}

    def fn(dy, x, scale, mean, var):
        return getattr(tf.raw_ops, version)(
            y_backprop=dy,
            x=x,
            scale=scale,
            reserve_space_1=mean,
            reserve_space_2=var,
            epsilon=0.001,
            is_training=training,
            **extra,
        )

    assert_matches_tf(fn, _bn_grad_inputs((2, 4, 3, 5), 5), **RED, jit=jit)


@JIT
def test_fused_batch_norm_grad_half_5d_and_nchw(jit):
    def grad(fmt):
        return lambda dy, x, s, m, v: tf.raw_ops.FusedBatchNormGradV3(
            y_backprop=dy, x=x, scale=s, reserve_space_1=m, reserve_space_2=v, reserve_space_3=v[:0], data_format=fmt
        )[:3]

    assert_matches_tf(grad("NDHWC"), _bn_grad_inputs((2, 3, 4, 3, 4), 4, np.float16), rtol=2e-3, atol=2e-3, jit=jit)
    dy, x, *stats = _bn_grad_inputs((2, 5, 4, 3), 5)
    _assert_saved_matches(
        lambda dy, x, s, m, v: grad("NCHW")(dy, x, s, m, v)[0],
        lambda dy, x, s, m, v: _nchw(grad("NHWC")(_nhwc(dy), _nhwc(x), s, m, v)[0]),
        [dy, x, *stats],
        jit,
    )


@JIT
@pytest.mark.parametrize("attrs", [{}, dict(depth_radius=2, bias=2.0, alpha=0.5, beta=0.75)])
def test_lrn_and_l2_loss(attrs, jit):
    x = _rand((2, 3, 4, 9)) * 3
    assert_matches_tf(lambda x: (tf.raw_ops.LRN(input=x, **attrs), tf.raw_ops.L2Loss(t=x)), [x], **RED, jit=jit)
    dy = _rand((2, 3, 4, 9), seed=1)
    assert_matches_tf(
        lambda x, dy: tf.raw_ops.LRNGrad(
            input_grads=dy, input_image=x, output_image=tf.raw_ops.LRN(input=x, **attrs), **attrs
        ),
        [x, dy],
        **RED,
        jit=jit,
    )


# -- top-k, nth element, data formats ------------------------------------------------------------------------
@JIT
def test_in_top_k(jit):
    pred = np.array(
        [
            [0.1, 0.5, 0.5, 0.2],
            [0.3, 0.2, 0.1, 0.0],
            [np.nan, 1, 2, 3],
            [1, 2, 3, np.inf],
            [0.4, 0.3, 0.2, 0.1],
        ],
        np.float32,
    )
    targets = np.array([2, 1, 3, 0, 7], np.int32)

    def fn(pred, targets):
        v2 = [tf.raw_ops.InTopKV2(predictions=pred, targets=targets, k=tf.constant(k)) for k in (0, 1, 2, 4)]
        return v2 + [tf.raw_ops.InTopK(predictions=pred, targets=tf.cast(targets, tf.int64), k=2)]

    assert_matches_tf(fn, [pred, targets], jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_nth_element(dtype, jit):
    x = (_rand((3, 2, 7)) * 10).astype(dtype)
    assert_matches_tf(
        lambda x: [tf.raw_ops.NthElement(input=x, n=n, reverse=r) for n in (0, 3, 6) for r in (False, True)],
        [x],
        jit=jit,
    )


@JIT
def test_data_format_ops(jit):
    dims = np.array([-4, -3, -2, -1, 0, 1, 2, 3], np.int32)
    vec = np.array([10, 20, 30, 40], np.int64)
    pads = np.arange(8, dtype=np.int32).reshape(4, 2)

    def fn(dims, vec, pads):
        return (
            tf.raw_ops.DataFormatDimMap(x=dims),
            tf.raw_ops.DataFormatDimMap(x=dims, src_format="NCHW", dst_format="NHWC"),
            tf.raw_ops.DataFormatDimMap(x=tf.constant([-5, 4]), src_format="NDHWC", dst_format="NCDHW"),
            tf.raw_ops.DataFormatVecPermute(x=vec),
            tf.raw_ops.DataFormatVecPermute(x=vec, src_format="NCHW", dst_format="NHWC"),
            tf.raw_ops.DataFormatVecPermute(x=vec[:2], src_format="NHWC", dst_format="NCHW"),
            tf.raw_ops.DataFormatVecPermute(x=pads),
        )

    assert_matches_tf(fn, [dims, vec, pads], jit=jit)


@JIT
@pytest.mark.parametrize("num_bits,narrow", [(8, False), (4, True)])
def test_fake_quant(num_bits, narrow, jit):
    def fn(x, lo, hi, clo, chi):
        return (
            tf.raw_ops.FakeQuantWithMinMaxArgs(inputs=x, min=-1.3, max=2.7, num_bits=num_bits, narrow_range=narrow),
            tf.raw_ops.FakeQuantWithMinMaxArgs(inputs=x, min=0.5, max=2.0, num_bits=num_bits, narrow_range=narrow),
            tf.raw_ops.FakeQuantWithMinMaxVars(inputs=x, min=lo, max=hi, num_bits=num_bits, narrow_range=narrow),
            tf.raw_ops.FakeQuantWithMinMaxVarsPerChannel(
                inputs=x, min=clo, max=chi, num_bits=num_bits, narrow_range=narrow
            ),
        )

    x = np.linspace(-3, 3, 48, dtype=np.float32).reshape(4, 3, 4)
    clo = np.array([-1.0, -0.1, 0.2, -3.0], np.float32)
    chi = np.array([1.0, 0.7, 2.0, -0.5], np.float32)
    assert_matches_tf(fn, [x, np.float32(-0.8), np.float32(1.1), clo, chi], rtol=1e-6, atol=1e-6, jit=jit)


@JIT
@pytest.mark.parametrize("lo,hi,bits", [(-1.0, 1.0, 8), (-6.0, 6.0, 8), (-0.3, 2.7, 4), (0.0, 3.0, 8), (-2.0, 0.0, 8)])
@pytest.mark.parametrize("narrow", [False, True])
def test_fake_quant_bit_exact(lo, hi, bits, narrow, jit):
    """TF's nudge is float32 scalar math and its grid rounding floors exact halves: the outputs match bit for
    bit, also for inputs exactly between two grid points and for [-1, 1] (zero point 127.49999 -> 127)."""
    x = np.concatenate([np.linspace(-3, 3, 61), np.random.default_rng(5).uniform(-7, 7, 60)]).astype(np.float32)

    def fn(x, vlo, vhi, clo, chi):
        return (
            tf.quantization.fake_quant_with_min_max_args(x, lo, hi, bits, narrow_range=narrow),
            tf.quantization.fake_quant_with_min_max_vars(x, vlo, vhi, bits, narrow_range=narrow),
            tf.quantization.fake_quant_with_min_max_vars_per_channel(
                tf.reshape(x[:120], [40, 3]), clo, chi, bits, narrow_range=narrow
            ),
        )

    lims = [np.float32(lo), np.float32(hi), np.array([lo, 0, -1], np.float32), np.array([hi, 0, 1], np.float32)]
    assert_matches_tf(fn, [x, *lims], rtol=0, atol=0, jit=jit)


def test_common_ops_trace_to_primitives():
    """The ops every convolution model has many of (AddV2, Mul, Sub, BiasAdd, Squeeze, 1x1 and depthwise
    convolutions) trace straight to lax primitives: jnp's jit wrappers around them cost a tenth of a model's
    first call (trace and lowering). Values match TF's, also with broadcasting."""
    import jax

    import jaxsm

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 5, 4)).astype(np.float32)
    w1 = rng.standard_normal((1, 1, 4, 6)).astype(np.float32)
    wd = rng.standard_normal((3, 3, 6, 2)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)

    def f(x):
        y = tf.nn.conv2d(x, w1, strides=2, padding="VALID")
        y = tf.nn.depthwise_conv2d(y, wd, [1, 1, 1, 1], "SAME")
        y = tf.nn.bias_add(y, b) * tf.constant(b[:1]) - y[:1]
        y = y * tf.cast(y > 0.5, tf.float32) + tf.cast(y < 0.0, tf.float32)
        return tf.squeeze(tf.reduce_max(y, axis=[1, 2], keepdims=True), axis=[1, -2]), tf.squeeze(y[:1])

    assert_matches_tf(f, [x], rtol=1e-5, atol=1e-6)
    export_dir, _ = save_function(f, [x])
    apply, params = jaxsm.functional(jaxsm.load(export_dir).f)
    jaxpr = jax.make_jaxpr(apply)(params, x)
    nested = [e.params.get("name") for e in jaxpr.jaxpr.eqns if e.primitive.name in ("pjit", "jit")]
    assert nested == [], f"jnp wrappers traced: {nested}"


_ISOTONIC = np.array(
    [[1.0, 3.0, 2.0, 2.0, 5.0, 4.0], [6.0, 5.0, 5.0, 7.0, 0.5, 0.5], [np.nan, 1.0, 2.0, 0.0, -1.0, 3.0]]
)


@JIT
@pytest.mark.parametrize(
    "x",
    [
        _ISOTONIC.astype(np.float32),
        _ISOTONIC[:2].astype(np.float64).reshape(2, 1, 6) / 3,
        _ISOTONIC[:2].astype(np.float16),
        _ISOTONIC[:2].astype(np.int8),
        _ISOTONIC[:2].astype(np.int32) * 1000,
        np.float32(2.5),
        np.zeros((2, 0), np.float32),
    ],
    ids=["f32_nan", "f64_rank3", "f16", "int8", "int32", "rank0", "empty"],
)
def test_isotonic_regression(x, jit):
    """Raw op (non-increasing fit, ties pooled only when strictly violated) and tf.nn's increasing variant."""
    out_dtype = {np.int8: tf.float32, np.int32: tf.float64}.get(x.dtype.type, tf.as_dtype(x.dtype))

    def fn(x):
        fit, seg = tf.raw_ops.IsotonicRegression(input=x, output_dtype=out_dtype)
        if x.dtype.is_floating and x.shape.rank:
            return fit, seg, tf.nn.isotonic_regression(x, decreasing=False, axis=0)
        return fit, seg

    assert_matches_tf(fn, [x], rtol=1e-6 if x.dtype != np.float16 else 1e-3, jit=jit)
