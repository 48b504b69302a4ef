"""FFT ops against TF (and against NumPy for the N-D ops, which have no TF CPU kernel)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])


def _tol(dtype):
    # An FFT of length n sums n terms: errors scale with the largest magnitude, not each output's own.
    return dict(rtol=1e-5, atol=1e-4) if np.dtype(dtype) in (np.float32, np.complex64) else dict(rtol=1e-12, atol=1e-11)


def _data(shape, dtype, seed=0):
    r = np.random.RandomState(seed)
    x = r.uniform(-1, 1, shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * r.uniform(-1, 1, shape)
    return x.astype(dtype)


@JIT
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_fft(dtype, jit):
    x = _data((2, 3, 4, 6), dtype)

    def fn(x):
        return [getattr(tf.raw_ops, name)(input=x) for name in ("FFT", "IFFT", "FFT2D", "IFFT2D", "FFT3D", "IFFT3D")]

    assert_matches_tf(fn, [x], **_tol(dtype), jit=jit)


@JIT
@pytest.mark.parametrize("real,cplx", [(np.float32, tf.complex64), (np.float64, tf.complex128)])
def test_real_fft(real, cplx, jit):
    x = _data((2, 5, 4, 6), real)
    # fft_length equal to or cropping the input (TF's kernels reject padding), odd and even lengths
    lengths = {1: [[6], [4], [5]], 2: [[4, 6], [3, 5], [2, 6]], 3: [[5, 4, 6], [2, 3, 5]]}
    suffix = {1: "", 2: "2D", 3: "3D"}

    def fn(x):
        outs = []
        for rank, cases in lengths.items():
            for n in cases:
                spec = getattr(tf.raw_ops, "RFFT" + suffix[rank])(input=x, fft_length=n, Tcomplex=cplx)
                outs.append(spec)
                for m in (n, [k - 1 for k in n]):
                    outs.append(
                        getattr(tf.raw_ops, "IRFFT" + suffix[rank])(input=spec, fft_length=m, Treal=tf.as_dtype(real))
                    )
        return outs

    assert_matches_tf(fn, [x], **_tol(real), jit=jit)


@JIT
def test_fft_of_dynamic_batch(jit):
    x = _data((3, 8), np.float32)
    assert_matches_tf(
        lambda x: tf.signal.irfft(tf.signal.rfft(x) * 2), [x], **_tol(np.float32), jit=jit, shapes=[(None, 8)]
    )


ND_CASES = [([4, 6], [0, 2]), ([2, 6], [0, -1]), ([5, 3], [-1, 0]), ([3, 4, 5], [0, 1, 2])]


@JIT
@pytest.mark.parametrize("case", range(len(ND_CASES)))
def test_fft_nd(case, jit):
    # TF registers no CPU kernel for the N-D ops: the saved graph runs in jaxsm only and NumPy is the oracle
    # (TF documents NumPy's crop/pad semantics for fft_length).
    lengths, axes = ND_CASES[case]
    x = _data((3, 4, 5), np.complex64)
    r = x.real.copy()
    spec = np.fft.rfftn(r, s=lengths, axes=axes).astype(np.complex64)
    lengths_t, axes_t = tf.constant(lengths), tf.constant(axes)

    def fn(x, r, spec):
        return (
            tf.raw_ops.FFTND(input=x, fft_length=lengths_t, axes=axes_t),
            tf.raw_ops.IFFTND(input=x, fft_length=lengths_t, axes=axes_t),
            tf.raw_ops.RFFTND(input=r, fft_length=lengths_t, axes=axes_t),
            tf.raw_ops.IRFFTND(input=spec, fft_length=lengths_t, axes=axes_t),
        )

    export_dir, _ = save_function(fn, [x, r, spec])
    got = run_jaxsm(export_dir, [x, r, spec], jit=jit)
    expected = (
        np.fft.fftn(x, s=lengths, axes=axes).astype(np.complex64),
        np.fft.ifftn(x, s=lengths, axes=axes).astype(np.complex64),
        spec,
        np.fft.irfftn(spec, s=lengths, axes=axes).astype(np.float32),
    )
    for name, g, e in zip(("FFTND", "IFFTND", "RFFTND", "IRFFTND"), got, expected, strict=True):
        g = np.asarray(g)
        assert (g.shape, g.dtype) == (e.shape, e.dtype), f"{name}: {g.shape} {g.dtype} vs {e.shape} {e.dtype}"
        np.testing.assert_allclose(g, e, **_tol(np.float32), err_msg=name)
