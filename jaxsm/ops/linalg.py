"""Linear algebra ops: factorizations, solves, determinants, eigen/singular values, matrix functions.

TF raises at run time for singular or non-positive-definite inputs (Cholesky, MatrixInverse, MatrixSolve…); a
compiled function cannot raise, so those return what the JAX/LAPACK routine returns (NaN/Inf), and the result
is garbage exactly where TF would have failed. Decompositions whose factors are unique only up to signs or
phases (Qr, Svd, eigenvectors) may differ from TF's Eigen-based kernels in those signs/phases.
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax import lax

from jaxsm.graph.values import to_static
from jaxsm.ops.registry import op


def _adjoint(x):
    return jnp.conj(jnp.swapaxes(x, -1, -2))


def _broadcast_batch(a, b):
    """Broadcast the batch dimensions (all but the last two) of two matrix stacks, as TF's BCast does."""
    batch = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return jnp.broadcast_to(a, batch + a.shape[-2:]), jnp.broadcast_to(b, batch + b.shape[-2:])


@op("Cholesky", "BatchCholesky")
def cholesky(ctx, x):
    # TF reads only the lower triangle; JAX's default would symmetrize the input first.
    return lax.linalg.cholesky(jnp.asarray(x), symmetrize_input=False)


def _check_invertible(ctx, x) -> None:
    """TF's MatrixInverse and MatrixSolve raise when partial-pivoting LU meets an exactly zero pivot
    (linalg/matrix_inverse_op.cc, matrix_solve_op.cc); a matrix known at trace time is checked the same way."""
    known = to_static(x)
    if known is None or not np.size(known):
        return
    packed = np.asarray(lax.linalg.lu(jnp.asarray(known))[0])
    if np.any(np.diagonal(packed, axis1=-2, axis2=-1) == 0):
        raise ctx.error("Input is not invertible.")


@op("MatrixInverse", "BatchMatrixInverse")
def matrix_inverse(ctx, x):
    _check_invertible(ctx, x)
    x = jnp.asarray(x)
    return jnp.linalg.inv(_adjoint(x) if ctx.attr("adjoint", False) else x)


@op("MatrixExponential")
def matrix_exponential(ctx, x):
    return jsl.expm(jnp.asarray(x))


@op("Cross")
def cross(ctx, a, b):
    """Cross product of 3-vectors in the last dimension (TF requires equal shapes)."""
    return jnp.cross(jnp.asarray(a), jnp.asarray(b))


@op("MatrixDeterminant", "BatchMatrixDeterminant")
def matrix_determinant(ctx, x):
    return jnp.linalg.det(x)


@op("LogMatrixDeterminant")
def log_matrix_determinant(ctx, x):
    sign, logdet = jnp.linalg.slogdet(x)
    dtype = jnp.result_type(x)
    return sign.astype(dtype), logdet.astype(dtype)


@op("MatrixSolve", "BatchMatrixSolve")
def matrix_solve(ctx, matrix, rhs):
    _check_invertible(ctx, matrix)
    matrix = jnp.asarray(matrix)
    if ctx.attr("adjoint", False):
        matrix = _adjoint(matrix)
    matrix, rhs = _broadcast_batch(matrix, jnp.asarray(rhs))
    return jnp.linalg.solve(matrix, rhs)


@op("MatrixTriangularSolve", "BatchMatrixTriangularSolve")
def matrix_triangular_solve(ctx, matrix, rhs):
    """Only the ``lower`` (or upper) triangle of ``matrix`` is read; ``adjoint`` solves with its adjoint."""
    adjoint = bool(ctx.attr("adjoint", False))
    matrix, rhs = _broadcast_batch(jnp.asarray(matrix), jnp.asarray(rhs))
    return lax.linalg.triangular_solve(
        matrix,
        rhs,
        left_side=True,
        lower=bool(ctx.attr("lower", True)),
        transpose_a=adjoint,
        conjugate_a=adjoint,
    )


@op("MatrixSolveLs", "BatchMatrixSolveLs")
def matrix_solve_ls(ctx, matrix, rhs, l2_regularizer):
    """Least squares as TF's ``fast`` path: regularized normal equations solved by Cholesky (tall: (A^H A + l
    I) x = A^H b; wide: x = A^H (A A^H + l I)^-1 b). ``fast=False`` uses a pseudo-inverse solve (TF requires
    l2_regularizer == 0 there)."""
    a, b = jnp.asarray(matrix), jnp.asarray(rhs)
    if not ctx.attr("fast", True):
        return (
            jnp.linalg.lstsq(a, b)[0]
            if a.ndim == 2
            else jnp.vectorize(lambda m, r: jnp.linalg.lstsq(m, r)[0], signature="(m,n),(m,k)->(n,k)")(a, b)
        )
    m, n = a.shape[-2:]
    reg = jnp.asarray(l2_regularizer, a.dtype)
    if m >= n:
        gram = _adjoint(a) @ a + reg * jnp.eye(n, dtype=a.dtype)
        chol = lax.linalg.cholesky(gram, symmetrize_input=False)
        return jsl.cho_solve((chol, True), _adjoint(a) @ b)
    gram = a @ _adjoint(a) + reg * jnp.eye(m, dtype=a.dtype)
    chol = lax.linalg.cholesky(gram, symmetrize_input=False)
    return _adjoint(a) @ jsl.cho_solve((chol, True), b)


@op("Qr")
def qr(ctx, x):
    return tuple(jnp.linalg.qr(x, mode="complete" if ctx.attr("full_matrices", False) else "reduced"))


@op("Svd", "BatchSvd")
def svd(ctx, x):
    """(s, u, v) with ``x = u @ diag(s) @ adjoint(v)`` (TF returns v, not v^H). Without compute_uv TF's u and
    v are uninitialized scalars; here they are zeros."""
    x = jnp.asarray(x)
    if not ctx.attr("compute_uv", True):
        s = jnp.linalg.svd(x, compute_uv=False)
        return s.astype(x.dtype), jnp.zeros((), x.dtype), jnp.zeros((), x.dtype)
    u, s, vh = jnp.linalg.svd(x, full_matrices=bool(ctx.attr("full_matrices", False)))
    # TF returns the singular values in the input dtype (complex for complex inputs).
    return s.astype(x.dtype), u, _adjoint(vh)


@op("SelfAdjointEigV2", "BatchSelfAdjointEigV2")
def self_adjoint_eig(ctx, x):
    """Eigenvalues ascending, from the lower triangle (as Eigen's SelfAdjointEigenSolver); without compute_v,
    TF's v is an uninitialized scalar and here zeros."""
    v, w = lax.linalg.eigh(jnp.asarray(x), lower=True, symmetrize_input=False)
    if not ctx.attr("compute_v", True):
        return w.astype(jnp.result_type(x)), jnp.zeros((), jnp.result_type(x))
    return w.astype(jnp.result_type(x)), v


@op("SelfAdjointEig", "BatchSelfAdjointEig")
def self_adjoint_eig_v1(ctx, x):
    """The pre-V2 op (removed in GraphDef 11): one [..., N+1, N] tensor, the ascending eigenvalues in row 0 and
    the eigenvectors (as columns) below."""
    v, w = lax.linalg.eigh(jnp.asarray(x), lower=True, symmetrize_input=False)
    return jnp.concatenate([w.astype(v.dtype)[..., None, :], v], axis=-2)


@op("Eig")
def eig(ctx, x):
    """General eigendecomposition (JAX implements it on CPU only). The eigenvalue order is unspecified in TF
    and follows each library's Schur iteration, so it can differ from TF's; eigenvectors have unit norm (their
    phases may differ)."""
    tout = ctx.dtype("Tout")
    w, v = jnp.linalg.eig(x)
    if not ctx.attr("compute_v", True):
        return w.astype(tout), jnp.zeros((), tout)
    return w.astype(tout), v.astype(tout)


@op("Lu")
def lu(ctx, x):
    """Packed LU with partial pivoting and the row permutation ``p`` (``x[p] = L @ U``)."""
    packed, _, perm = lax.linalg.lu(jnp.asarray(x))
    return packed, perm.astype(ctx.dtype("output_idx_type", np.dtype(np.int32)))


@op("MatrixSquareRoot")
def matrix_square_root(ctx, x):
    """Principal square root via a Schur decomposition (JAX implements it on CPU only); real inputs keep the
    real part, as TF's real Schur method returns a real root."""
    x = jnp.asarray(x)
    root = jnp.vectorize(jsl.sqrtm, signature="(n,n)->(n,n)")(x)
    return (jnp.real(root) if not jnp.iscomplexobj(x) else root).astype(x.dtype)


@op("TridiagonalSolve")
def tridiagonal_solve(ctx, diagonals, rhs):
    """Solve with a tridiagonal matrix given as [..., 3, M] (superdiagonal, diagonal, subdiagonal; the unused
    last/first entries ignored). TF pivots by default; the Thomas algorithm here does not, which only changes
    rounding for the diagonally dominant or well-conditioned systems TF's docs target."""
    d = jnp.asarray(diagonals)
    zero = jnp.zeros_like(d[..., 0, :1])
    du = jnp.concatenate([d[..., 0, :-1], zero], axis=-1)
    dl = jnp.concatenate([zero, d[..., 2, 1:]], axis=-1)
    return lax.linalg.tridiagonal_solve(dl, d[..., 1, :], du, jnp.asarray(rhs))


@op("TridiagonalMatMul")
def tridiagonal_matmul(ctx, superdiag, maindiag, subdiag, rhs):
    """``T @ rhs`` for the tridiagonal T given by [..., 1, M] diagonals (superdiag[-1], subdiag[0] unused)."""
    rhs = jnp.asarray(rhs)
    sup, main, sub = (jnp.swapaxes(jnp.asarray(v), -1, -2) for v in (superdiag, maindiag, subdiag))
    zero = jnp.zeros_like(rhs[..., :1, :])
    below = jnp.concatenate([rhs[..., 1:, :], zero], axis=-2)
    above = jnp.concatenate([zero, rhs[..., :-1, :]], axis=-2)
    return main * rhs + sup * below + sub * above


def _dense_from_bands(bands, lower: bool):
    """The [..., M, M] triangular matrix of the K diagonals ``bands`` [..., K, M] as TF's BandedTriangularSolve
    reads them (tensorflow/core/kernels/linalg/banded_triangular_solve_op.cc): entry (i, j) is band row |i - j|
    (lower) or K-1-|i - j| (upper), column i; bands beyond K and the other triangle are zero."""
    k, m = bands.shape[-2:]
    row, col = np.arange(m)[:, None], np.arange(m)[None, :]
    d = row - col if lower else col - row
    inside = (d >= 0) & (d < k)
    dense = bands[..., np.where(inside, d if lower else k - 1 - d, 0), np.broadcast_to(row, (m, m))]
    return jnp.where(inside, dense, jnp.zeros((), bands.dtype))


@op("BandedTriangularSolve")
def banded_triangular_solve(ctx, matrix, rhs):
    lower, adjoint = bool(ctx.attr("lower", True)), bool(ctx.attr("adjoint", False))
    dense, rhs = _broadcast_batch(_dense_from_bands(jnp.asarray(matrix), lower), jnp.asarray(rhs))
    return lax.linalg.triangular_solve(
        dense, rhs, left_side=True, lower=lower, transpose_a=adjoint, conjugate_a=adjoint
    )


@op("MatrixLogarithm")
def matrix_logarithm(ctx, x):
    """The principal logarithm of complex matrices through the eigendecomposition, ``V log(L) V^-1`` (JAX's eig
    runs on CPU only). TF uses Eigen's Schur-Parlett MatrixLogarithm: the two agree for diagonalizable,
    well-conditioned matrices; for defective ones (a Jordan block) this is inaccurate."""
    w, v = jnp.linalg.eig(jnp.asarray(x))
    scaled = v * jnp.log(w)[..., None, :]
    # V log(L) V^-1 as a solve: (V^-T (V log(L))^T)^T
    return jnp.swapaxes(jnp.linalg.solve(jnp.swapaxes(v, -1, -2), jnp.swapaxes(scaled, -1, -2)), -1, -2).astype(x.dtype)


@op("CholeskyGrad", "BatchCholeskyGrad")
def cholesky_grad(ctx, l, grad):
    """dL/dA from L = cholesky(A) and dL (tensorflow/core/kernels/linalg/cholesky_grad.cc): only the lower
    triangles of both are read, and the result is symmetrized, Phi(L^H dL) sandwiched by L^-1 (Murray, 2016)."""
    l, grad = jnp.tril(jnp.asarray(l)), jnp.tril(jnp.asarray(grad))
    eye = jnp.broadcast_to(jnp.eye(l.shape[-1], dtype=l.dtype), l.shape)
    l_inv = lax.linalg.triangular_solve(l, eye, left_side=True, lower=True)
    hi = lax.Precision.HIGHEST
    middle = jnp.tril(jnp.matmul(_adjoint(l), grad, precision=hi)) * (1 - 0.5 * eye)  # Phi: half the diagonal
    grad_a = jnp.matmul(jnp.matmul(_adjoint(l_inv), middle, precision=hi), l_inv, precision=hi)
    return 0.5 * (grad_a + _adjoint(grad_a))
