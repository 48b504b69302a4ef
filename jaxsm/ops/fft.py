"""Fast Fourier transforms: FFT/IFFT over the innermost 1-3 dimensions, their real variants, and the N-D
forms.

``fft_length`` (and ``axes`` for the N-D ops) must be known at trace time: they fix output shapes. As in TF,
the input is cropped to ``fft_length`` along each transformed axis (for inverse real transforms, the innermost
axis to ``fft_length // 2 + 1``); RFFT/IRFFT(2D/3D) raise where it is shorter, as TF's kernels do.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxsm.ops.registry import op

_RANK = {"": 1, "2D": 2, "3D": 3}


def _inner_axes(rank: int) -> tuple[int, ...]:
    return tuple(range(-rank, 0))


@op("FFT", "FFT2D", "FFT3D", "IFFT", "IFFT2D", "IFFT3D")
@op("BatchFFT", "BatchFFT2D", "BatchFFT3D", "BatchIFFT", "BatchIFFT2D", "BatchIFFT3D")
def fft(ctx, x):
    name = ctx.node.op.removeprefix("Batch")  # the pre-GraphDef-15 names of the same transforms
    inverse = name.startswith("I")
    rank = _RANK[name[4:] if inverse else name[3:]]
    transform = jnp.fft.ifftn if inverse else jnp.fft.fftn
    return transform(x, axes=_inner_axes(rank)).astype(jnp.result_type(x))


def _lengths(ctx, fft_length, rank: int) -> tuple[int, ...]:
    lengths = tuple(int(n) for n in np.asarray(fft_length).reshape(-1))
    if len(lengths) != rank:
        raise ctx.error(f"fft_length has {len(lengths)} entries; {ctx.node.op} needs {rank}")
    return lengths


def _check_real_lengths(ctx, x, lengths: tuple[int, ...], inverse: bool) -> None:
    # TF's kernels crop but do not pad: each transformed input dimension must be at least fft_length (the inner one
    # of an inverse transform at least fft_length // 2 + 1)
    for i, n in enumerate(lengths):
        need = n // 2 + 1 if inverse and i == len(lengths) - 1 else n
        dim = np.shape(x)[i - len(lengths)]
        if isinstance(dim, int) and dim < need:
            raise ctx.error(
                f"Input dimension {x.ndim - len(lengths) + i} must have length of at least {need} but got: {dim}"
            )


@op("RFFT", "RFFT2D", "RFFT3D", static=(1,))
def rfft(ctx, x, fft_length):
    rank = _RANK[ctx.node.op[4:]]
    lengths = _lengths(ctx, fft_length, rank)
    _check_real_lengths(ctx, x, lengths, inverse=False)
    out = jnp.fft.rfftn(x, s=lengths, axes=_inner_axes(rank))
    return out.astype(ctx.dtype("Tcomplex", np.dtype(np.complex64)))


@op("IRFFT", "IRFFT2D", "IRFFT3D", static=(1,))
def irfft(ctx, x, fft_length):
    rank = _RANK[ctx.node.op[5:]]
    lengths = _lengths(ctx, fft_length, rank)
    _check_real_lengths(ctx, x, lengths, inverse=True)
    out = jnp.fft.irfftn(x, s=lengths, axes=_inner_axes(rank))
    return out.astype(ctx.dtype("Treal", np.dtype(np.float32)))


def _nd_args(ctx, x, fft_length, axes):
    """(lengths, axes) of the N-D ops; negative axes count from the end."""
    axes = [int(a) % x.ndim for a in np.asarray(axes).reshape(-1)]
    lengths = [int(n) for n in np.asarray(fft_length).reshape(-1)]
    if len(lengths) != len(axes):
        raise ctx.error(f"fft_length has {len(lengths)} entries but axes has {len(axes)}")
    return lengths, axes


@op("FFTND", "IFFTND", static=(1, 2))
def fft_nd(ctx, x, fft_length, axes):
    lengths, axes = _nd_args(ctx, x, fft_length, axes)
    transform = jnp.fft.ifftn if ctx.node.op == "IFFTND" else jnp.fft.fftn
    return transform(x, s=lengths, axes=axes).astype(jnp.result_type(x))


@op("RFFTND", static=(1, 2))
def rfft_nd(ctx, x, fft_length, axes):
    lengths, axes = _nd_args(ctx, x, fft_length, axes)
    return jnp.fft.rfftn(x, s=lengths, axes=axes).astype(ctx.dtype("Tcomplex", np.dtype(np.complex64)))


@op("IRFFTND", static=(1, 2))
def irfft_nd(ctx, x, fft_length, axes):
    lengths, axes = _nd_args(ctx, x, fft_length, axes)
    return jnp.fft.irfftn(x, s=lengths, axes=axes).astype(ctx.dtype("Treal", np.dtype(np.float32)))
