"""Linear algebra ops against TF.

Tolerances are looser than elementwise ops: TF uses Eigen's factorizations and JAX uses LAPACK-style ones,
which round differently; the difference grows with the condition number (~1e-5 relative for the float32 test
matrices here, ~1e-12 for float64). Factors unique only up to signs/phases (Q/R, U/V, eigenvectors) are
checked by their defining properties and TF's invariants (singular values, eigenvalues, |R|) instead of
elementwise.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

JIT = pytest.mark.parametrize("jit", [True, False])
FLOATS = pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-5) if np.dtype(dtype) in (np.float32, np.complex64) else dict(rtol=1e-10, atol=1e-12)


def _mat(shape, dtype=np.float32, seed=0):
    r = np.random.RandomState(seed)
    x = r.uniform(-1, 1, shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * r.uniform(-1, 1, shape)
    return x.astype(dtype)


def _well_conditioned(shape, dtype=np.float32, seed=0):
    n = shape[-1]
    return (_mat(shape, dtype, seed) + 3 * np.eye(n)).astype(dtype)


def _spd(shape, dtype=np.float32, seed=0):
    a = _mat(shape, dtype, seed)
    return (a @ np.conj(np.swapaxes(a, -1, -2)) + shape[-1] * np.eye(shape[-1])).astype(dtype)


def _run_both(fn, inputs, jit):
    export_dir, tf_fn = save_function(fn, inputs)
    expected = [np.asarray(t) for t in tf.nest.flatten(tf_fn(*inputs))]
    got = [np.asarray(g) for g in tf.nest.flatten(run_jaxsm(export_dir, inputs, jit=jit))]
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        got_spec, tf_spec = (g.shape, g.dtype), (e.shape, e.dtype)
        assert got_spec == tf_spec, f"output {i}: shape/dtype {got_spec} != TF's {tf_spec}"
    return expected, got


def _h(x):
    return np.conj(np.swapaxes(x, -1, -2))


@JIT
@FLOATS
def test_cholesky_inverse_determinants(dtype, jit):
    spd = _spd((2, 4, 4), dtype)
    spd_lower_only = np.tril(spd) + np.triu(np.full_like(spd, 7), 1)  # TF reads only the lower triangle
    a = _well_conditioned((2, 3, 3), dtype, seed=1)

    def fn(spd, spd_lower_only, a):
        return (
            tf.raw_ops.Cholesky(input=spd),
            tf.raw_ops.Cholesky(input=spd_lower_only),
            tf.raw_ops.MatrixInverse(input=a),
            tf.raw_ops.MatrixInverse(input=a, adjoint=True),
            tf.raw_ops.MatrixDeterminant(input=a),
            *tf.raw_ops.LogMatrixDeterminant(input=a),
        )

    assert_matches_tf(fn, [spd, spd_lower_only, a], **_tol(dtype), jit=jit)


@JIT
def test_log_determinant_signs_and_singular(jit):
    a = np.array([[[0, 1], [1, 0]], [[2, 0], [0, 3]], [[1, 2], [2, 4]]], np.float64)
    assert_matches_tf(
        lambda a: (*tf.raw_ops.LogMatrixDeterminant(input=a), tf.raw_ops.MatrixDeterminant(input=a)),
        [a],
        rtol=1e-12,
        jit=jit,
    )


@JIT
@FLOATS
def test_solves(dtype, jit):
    a = _well_conditioned((2, 4, 4), dtype)
    b = _mat((2, 4, 3), dtype, seed=1)
    b_bcast = _mat((4, 2), dtype, seed=2)

    def fn(a, b, b_bcast):
        return (
            tf.raw_ops.MatrixSolve(matrix=a, rhs=b),
            tf.raw_ops.MatrixSolve(matrix=a, rhs=b, adjoint=True),
            *[
                tf.raw_ops.MatrixTriangularSolve(matrix=a, rhs=b, lower=lo, adjoint=adj)
                for lo in (True, False)
                for adj in (False, True)
            ],
            tf.raw_ops.MatrixTriangularSolve(matrix=a, rhs=b_bcast, lower=True),
        )

    assert_matches_tf(fn, [a, b, b_bcast], **_tol(dtype), jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 3), (3, 5)])
def test_matrix_solve_ls(shape, dtype, jit):
    a = _mat(shape, dtype) + np.eye(*shape, dtype=dtype) * 2
    b = _mat((shape[0], 2), dtype, seed=1)
    # Normal equations square the condition number: float32 loses about twice the digits.
    tol = dict(rtol=2e-4, atol=1e-4) if dtype == np.float32 else _tol(dtype)
    # TF's non-fast path handles only tall matrices.
    cases = [(0.0, True), (0.5, True)] + ([(0.0, False)] if shape[0] >= shape[1] else [])
    assert_matches_tf(
        lambda a, b: [
            tf.raw_ops.MatrixSolveLs(matrix=a, rhs=b, l2_regularizer=np.float64(reg), fast=fast) for reg, fast in cases
        ],
        [a, b],
        **tol,
        jit=jit,
    )


@JIT
@FLOATS
@pytest.mark.parametrize("shape,full", [((5, 3), False), ((5, 3), True), ((2, 3, 4), False), ((3, 4), True)])
def test_qr(shape, full, dtype, jit):
    x = _mat(shape, dtype)
    (q_tf, r_tf), (q, r) = _run_both(lambda x: tuple(tf.raw_ops.Qr(input=x, full_matrices=full)), [x], jit)
    tol = _tol(dtype)
    np.testing.assert_allclose(q @ r, x, **tol, err_msg="Q @ R")
    eye = np.broadcast_to(np.eye(q.shape[-1]), q.shape[:-2] + (q.shape[-1],) * 2)
    np.testing.assert_allclose(_h(q) @ q, eye, **tol, err_msg="Q^H Q")
    np.testing.assert_array_equal(np.tril(r, -1), 0, err_msg="R upper triangular")
    np.testing.assert_allclose(np.abs(r), np.abs(r_tf), **tol, err_msg="|R|")


@JIT
@FLOATS
@pytest.mark.parametrize("shape,full", [((5, 3), False), ((3, 5), True), ((2, 4, 4), False)])
def test_svd(shape, full, dtype, jit):
    x = _mat(shape, dtype)
    (s_tf, u_tf, v_tf), (s, u, v) = _run_both(
        lambda x: tuple(tf.raw_ops.Svd(input=x, compute_uv=True, full_matrices=full)), [x], jit
    )
    tol = _tol(dtype)
    np.testing.assert_allclose(s, s_tf, **tol, err_msg="singular values")
    k = s.shape[-1]
    np.testing.assert_allclose((u[..., :, :k] * s[..., None, :]) @ _h(v[..., :, :k]), x, **tol, err_msg="U diag(s) V^H")
    (s_only_tf,), (s_only,) = _run_both(lambda x: tf.raw_ops.Svd(input=x, compute_uv=False)[0], [x], jit)
    np.testing.assert_allclose(s_only, s_only_tf, **tol, err_msg="singular values (compute_uv=False)")


@JIT
@FLOATS
def test_self_adjoint_eig(dtype, jit):
    a = _spd((2, 4, 4), dtype)
    a_lower_only = np.tril(a) + np.triu(np.full_like(a, 9), 1)
    (e_tf, _, e2_tf), (e, v, e2) = _run_both(
        lambda a, lo: (
            *tf.raw_ops.SelfAdjointEigV2(input=a),
            tf.raw_ops.SelfAdjointEigV2(input=lo, compute_v=False)[0],
        ),
        [a, a_lower_only],
        jit,
    )
    tol = _tol(dtype)
    np.testing.assert_allclose(e, e_tf, **tol, err_msg="eigenvalues")
    np.testing.assert_allclose(e2, e2_tf, **tol, err_msg="eigenvalues from the lower triangle")
    np.testing.assert_allclose(a @ v, v * e[..., None, :], **tol, err_msg="A v = v diag(e)")


@JIT
@pytest.mark.parametrize(
    "dtype,tout", [(np.float32, tf.complex64), (np.float64, tf.complex128), (np.complex64, tf.complex64)]
)
def test_eig(dtype, tout, jit):
    a = _mat((2, 4, 4), dtype) + np.diag([0.5, 1.5, 3.0, 5.0]).astype(dtype)  # distinct |eigenvalues|
    (e_tf, _), (e, v) = _run_both(lambda a: tuple(tf.raw_ops.Eig(input=a, Tout=tout, compute_v=True)), [a], jit)
    tol = _tol(dtype)
    # The eigenvalue order is unspecified (it follows each library's Schur iteration): compare sorted sets.
    np.testing.assert_allclose(
        np.sort_complex(e.reshape(-1)), np.sort_complex(e_tf.reshape(-1)), **tol, err_msg="eigenvalues"
    )
    np.testing.assert_allclose(a @ v, v * e[..., None, :], **tol, err_msg="A v = v diag(e)")
    np.testing.assert_allclose(np.linalg.norm(v, axis=-2), 1, **tol, err_msg="unit eigenvectors")


@JIT
@FLOATS
def test_lu(dtype, jit):
    x = _mat((2, 5, 5), dtype)
    assert_matches_tf(
        lambda x: (*tf.raw_ops.Lu(input=x), *tf.raw_ops.Lu(input=x, output_idx_type=tf.int64)),
        [x],
        **_tol(dtype),
        jit=jit,
    )


@JIT
@FLOATS
def test_matrix_square_root(dtype, jit):
    spd = _spd((2, 3, 3), dtype)
    general = _well_conditioned((4, 4), dtype, seed=1)
    assert_matches_tf(
        lambda spd, g: (tf.raw_ops.MatrixSquareRoot(input=spd), tf.raw_ops.MatrixSquareRoot(input=g)),
        [spd, general],
        **_tol(dtype),
        jit=jit,
    )


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_tridiagonal(dtype, jit):
    diags = _mat((2, 3, 6), dtype)
    diags[:, 1] += 4  # diagonally dominant
    rhs = _mat((2, 6, 3), dtype, seed=1)

    def fn(diags, rhs):
        return (
            tf.raw_ops.TridiagonalSolve(diagonals=diags, rhs=rhs),
            tf.raw_ops.TridiagonalMatMul(
                superdiag=diags[:, 0:1], maindiag=diags[:, 1:2], subdiag=diags[:, 2:3], rhs=rhs
            ),
        )

    assert_matches_tf(fn, [diags, rhs], **_tol(dtype), jit=jit)


@JIT
@FLOATS
def test_matrix_exponential_and_cross(dtype, jit):
    rng = np.random.default_rng(4)
    a = (rng.standard_normal((2, 3, 3)) * 0.7).astype(dtype)
    big = (rng.standard_normal((4, 4)) * 3.0).astype(dtype)  # norm past the scaling-and-squaring threshold
    u, v = rng.standard_normal((2, 5, 3)).astype(dtype)

    def fn(a, big, u, v):
        real = np.dtype(dtype).kind == "f"  # TF's Cross has no complex kernel
        return tf.linalg.expm(a), tf.linalg.expm(big), tf.linalg.cross(u, v) if real else u

    tol = _tol(dtype)
    assert_matches_tf(fn, [a, big, u, v], rtol=max(tol.get("rtol", 0), 1e-5), atol=tol.get("atol", 0), jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("lower,adjoint", [(True, False), (False, False), (True, True), (False, True)])
def test_banded_triangular_solve(lower, adjoint, dtype, jit):
    """3 bands of a 5x5 matrix (the diagonal made dominant), a batch of 2 broadcast against one rhs."""
    rng = np.random.default_rng(1)
    bands = rng.normal(size=(2, 3, 5)).astype(dtype)
    if np.dtype(dtype).kind == "c":
        bands = bands + 1j * rng.normal(size=bands.shape)
    bands[:, 0 if lower else 2] += 4
    rhs = rng.normal(size=(1, 5, 2)).astype(dtype)

    def fn(bands, rhs):
        return tf.raw_ops.BandedTriangularSolve(matrix=bands, rhs=rhs, lower=lower, adjoint=adjoint)

    assert_matches_tf(fn, [bands, rhs], rtol=1e-5, atol=1e-6, jit=jit)


@JIT
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_matrix_logarithm(dtype, jit):
    """Batches of well-conditioned matrices near the identity, one with a negative real eigenvalue (branch cut
    side fixed by the imaginary part's sign)."""
    a = np.eye(4) + 0.3 * _mat((2, 4, 4), dtype, seed=5)
    b = np.diag([-2.0 + 1e-3j, 0.5, 3.0j, 1.0]).astype(dtype)
    assert_matches_tf(lambda a, b: (tf.linalg.logm(a), tf.linalg.logm(b)), [a.astype(dtype), b], jit=jit, **_tol(dtype))


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_self_adjoint_eig_v1(dtype, jit):
    """Removed in GraphDef 11: saved as SelfAdjointEigV2 and retyped; eigenvalues in row 0 match TF's, the
    eigenvector columns below satisfy A v = e v (their signs are free)."""
    from tests.ops.test_nn_grad import retype_nodes

    a = _mat((2, 4, 4), dtype, seed=6)
    a = a + np.swapaxes(a, -1, -2)
    export_dir, tf_fn = save_function(lambda a: tf.raw_ops.SelfAdjointEigV2(input=a).e, [a])
    expected = tf_fn(a).numpy()
    retype_nodes(
        export_dir,
        "SelfAdjointEigV2",
        "SelfAdjointEig",
        {},
        {"T": dict(type=tf.as_dtype(dtype).as_datatype_enum)},
        {"e:0": "output:0"},
    )
    packed = np.asarray(run_jaxsm(export_dir, [a], jit=jit))
    assert packed.shape == (2, 5, 4), "packed shape"
    values, vectors = packed[:, 0], packed[:, 1:]
    np.testing.assert_allclose(values, expected, **_tol(dtype), err_msg="eigenvalues")
    np.testing.assert_allclose(a @ vectors, vectors * values[:, None, :], **_tol(dtype), err_msg="A v = e v")


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 4), (0, 0)], ids=str)
def test_cholesky_grad(shape, dtype, jit):
    """The TF1 gradient kernel: reads the lower triangles of l and grad only (upper ones are garbage here)."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal(shape).astype(dtype)
    spd = a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1], dtype=dtype)
    l = np.linalg.cholesky(spd).astype(dtype) + np.triu(np.full(shape, 7.0, dtype), 1)
    grad = rng.standard_normal(shape).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert_matches_tf(lambda l, g: tf.raw_ops.CholeskyGrad(l=l, grad=g), [l, grad], rtol=tol, atol=tol, jit=jit)
