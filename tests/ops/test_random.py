"""jaxsm.ops.random against TF: stateless Philox streams must reproduce TF's values for the same seed.

With ``jit=False`` the seed reaches the lowering as a NumPy value (the static path); with ``jit=True`` it is
traced. Uniform and integer draws are compared bit for bit; normals to float rounding because TF's sin/cos/log
(glibc) and XLA's differ in the last bit.
"""

import ml_dtypes
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxsm.errors import LoweringError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

R = tf.raw_ops
JIT = pytest.mark.parametrize("jit", [True, False])
SEEDS = [
    np.array([1, 2], np.int32),
    np.array([-7, 2**31 - 1], np.int32),
    np.array([2**40 + 3, -(2**35)], np.int64),
]
SHAPES = [(3, 5), (), (0, 3), (2, 64, 3)]
SEED_SHAPES = list(zip(SEEDS + SEEDS[:1], SHAPES, strict=True))
# Normal draws: |TF - jaxsm| within a couple of float ulps of values of magnitude up to ~5.
NORMAL_TOL = {
    np.float32: dict(rtol=1e-5, atol=2e-6),
    np.float64: dict(rtol=1e-12, atol=1e-13),
    np.float16: dict(rtol=1e-3, atol=1e-3),
    ml_dtypes.bfloat16: dict(rtol=1e-2, atol=1e-2),
}


@JIT
@pytest.mark.parametrize("seed,shape", SEED_SHAPES, ids=str)
def test_v1_uniform_and_ints(seed, shape, jit):
    shape = tf.constant(shape, tf.int32)

    def fn(seed):
        return {
            "f32": R.StatelessRandomUniform(shape=shape, seed=seed, dtype=tf.float32),
            "f64": R.StatelessRandomUniform(shape=shape, seed=seed, dtype=tf.float64),
            "f16": R.StatelessRandomUniform(shape=shape, seed=seed, dtype=tf.float16),
            "bf16": R.StatelessRandomUniform(shape=shape, seed=seed, dtype=tf.bfloat16),
            "i32": R.StatelessRandomUniformInt(shape=shape, seed=seed, minval=tf.constant(-5), maxval=tf.constant(9)),
            "i64": R.StatelessRandomUniformInt(
                shape=shape,
                seed=seed,
                minval=tf.constant(-(2**40), tf.int64),
                maxval=tf.constant(2**41 + 17, tf.int64),
            ),
            "full_i32": R.StatelessRandomUniformFullInt(shape=shape, seed=seed, dtype=tf.int32),
            "full_u32": R.StatelessRandomUniformFullInt(shape=shape, seed=seed, dtype=tf.uint32),
            "full_i64": R.StatelessRandomUniformFullInt(shape=shape, seed=seed, dtype=tf.int64),
            "full_u64": R.StatelessRandomUniformFullInt(shape=shape, seed=seed, dtype=tf.uint64),
        }

    assert_matches_tf(fn, [seed], rtol=0, jit=jit)


@JIT
@pytest.mark.parametrize(
    "seed,dtype",
    [
        (SEEDS[0], np.float32),
        (SEEDS[1], np.float32),
        (SEEDS[2], np.float64),
        (SEEDS[1], np.float16),
        (SEEDS[0], ml_dtypes.bfloat16),
    ],
    ids=str,
)
def test_v1_normal(seed, dtype, jit):
    tdt = tf.as_dtype(dtype)

    def fn(seed):
        return {
            "normal": R.StatelessRandomNormal(shape=[7, 9], seed=seed, dtype=tdt),
            "truncated": R.StatelessTruncatedNormal(shape=[7, 9], seed=seed, dtype=tdt),
            "truncated_odd": R.StatelessTruncatedNormal(shape=[3], seed=seed + 1, dtype=tdt),
            "truncated_empty": R.StatelessTruncatedNormal(shape=[0, 2], seed=seed, dtype=tdt),
        }

    _, got = assert_matches_tf(fn, [seed], jit=jit, **NORMAL_TOL[dtype])
    assert np.all(np.abs(np.asarray(got["truncated"], np.float64)) <= 2.0), "truncated normal outside (-2, 2)"


@JIT
def test_truncated_normal_large(jit):
    # Enough groups that some need several rejections, and counters beyond the first Philox skip.
    _, got = assert_matches_tf(
        lambda s: R.StatelessTruncatedNormal(shape=[4099], seed=s, dtype=tf.float32),
        [np.array([3, 4], np.int64)],
        jit=jit,
        **NORMAL_TOL[np.float32],
    )
    assert np.all(np.abs(got) < 2.0)


@JIT
@pytest.mark.parametrize("seed", SEEDS, ids=str)
def test_key_counter_alg(seed, jit):
    def fn(seed):
        key, counter, alg = R.StatelessRandomGetKeyCounterAlg(seed=seed)
        key2, counter2 = R.StatelessRandomGetKeyCounter(seed=seed)
        return key, counter, alg, key2, counter2, R.StatelessRandomGetAlg()

    assert_matches_tf(fn, [seed], jit=jit)


@JIT
@pytest.mark.parametrize("alg", [1, 3])
@pytest.mark.parametrize("seed", SEEDS[1:], ids=str)
def test_v2_ops(seed, alg, jit):
    def fn(seed):
        key, counter = R.StatelessRandomGetKeyCounter(seed=seed)
        a = tf.constant(alg)
        shape = [5, 7]
        return {
            "uniform": R.StatelessRandomUniformV2(shape=shape, key=key, counter=counter, alg=a),
            "uniform_f64": R.StatelessRandomUniformV2(shape=shape, key=key, counter=counter, alg=a, dtype=tf.float64),
            "int": R.StatelessRandomUniformIntV2(
                shape=shape, key=key, counter=counter, alg=a, minval=tf.constant(-3), maxval=tf.constant(100)
            ),
            "full_int": R.StatelessRandomUniformFullIntV2(shape=shape, key=key, counter=counter, alg=a, dtype=tf.int64),
            "normal": R.StatelessRandomNormalV2(shape=shape, key=key, counter=counter, alg=a),
            "truncated": R.StatelessTruncatedNormalV2(shape=shape, key=key, counter=counter, alg=a),
        }

    assert_matches_tf(fn, [seed], jit=jit, **NORMAL_TOL[np.float32])


@JIT
def test_v2_counter_carry(jit):
    # A counter whose low words are near 2^64: block indices carry into the upper counter words.
    key = np.array([0x0123456789ABCDEF], np.uint64)
    counter = np.array([2**64 - 3, 2**64 - 1], np.uint64)

    def fn(key, counter):
        a = tf.constant(1)
        kc = dict(key=key, counter=counter, alg=a)
        return (
            R.StatelessRandomUniformFullIntV2(shape=[40], dtype=tf.uint32, **kc),
            R.StatelessTruncatedNormalV2(shape=[9], **kc),
        )

    assert_matches_tf(fn, [key, counter], jit=jit, **NORMAL_TOL[np.float32])


@JIT
def test_public_api(jit):
    def fn(seed):
        return {
            "uniform": tf.random.stateless_uniform([4, 3], seed=seed, minval=-2.0, maxval=3.0),
            "normal": tf.random.stateless_normal([6], seed=seed, mean=1.0, stddev=2.0, dtype=tf.float64),
            "truncated": tf.random.stateless_truncated_normal([5], seed=seed, stddev=0.5),
            "ints": tf.random.stateless_uniform([8], seed=seed, minval=0, maxval=10, dtype=tf.int32),
        }

    assert_matches_tf(fn, [np.array([11, 12], np.int64)], jit=jit, **NORMAL_TOL[np.float32])


def test_unsupported_variants_are_reported():
    seed = np.array([1, 2], np.int64)

    def threefry(seed):
        key, counter = R.StatelessRandomGetKeyCounter(seed=seed)
        return R.StatelessRandomUniformV2(shape=[2], key=key, counter=counter, alg=tf.constant(2))

    def empty_int_range(seed):
        return R.StatelessRandomUniformInt(shape=[2], seed=seed, minval=tf.constant(3), maxval=tf.constant(3))

    for fn, message in [(threefry, "ThreeFry"), (empty_int_range, "minval < maxval")]:
        export_dir, _ = save_function(fn, [seed])
        with pytest.raises(LoweringError, match=message):
            run_jaxsm(export_dir, [seed])


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stateless_multinomial(dtype, jit):
    # Few rows and classes: TF's CPU kernel runs unsharded, the case jaxsm reproduces bit for bit.
    logits = np.array([[0.0, 1.0, -1.0, np.inf], [-np.inf, 2.0, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4]], dtype)

    def fn(logits, seed):
        return (
            tf.raw_ops.StatelessMultinomial(logits=logits, num_samples=7, seed=seed, output_dtype=tf.int64),
            tf.raw_ops.StatelessMultinomial(logits=logits, num_samples=5, seed=seed + 1, output_dtype=tf.int32),
        )

    assert_matches_tf(fn, [logits, np.array([3, -11], np.int32)], jit=jit)


# -- tf.random.Generator: state in a variable, advanced per draw ---------------------------------------------


def _generator_module(g):
    class M(tf.Module):
        def __init__(self):
            self.g = g

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def draw(self, x):
            return {
                "uniform": self.g.uniform([3, 4]),
                "normal": self.g.normal(tf.shape(x)),
                "truncated": self.g.truncated_normal([7], dtype=tf.float64),
                "int32": self.g.uniform([6], -3, 10, tf.int32),
                "int64": self.g.uniform([2], -(2**40), 2**41, tf.int64),
                "full": self.g.uniform_full_int([3], tf.int64),
                "scaled": x * self.g.uniform([]),
            }

        @tf.function(input_signature=[tf.TensorSpec([], tf.int64)])
        def skip(self, n):
            self.g.skip(n)
            return self.g.state.read_value()

    return M()


@pytest.mark.parametrize(
    "make",
    [
        lambda: tf.random.Generator.from_seed(1234),
        lambda: tf.random.Generator.from_seed(2**70 + 2**64 * 3 + 5),  # counter high words and the key are set
        lambda: tf.random.Generator.from_state([2**64 - 256 * 20, 2**63 - 1, -12345], "philox"),  # counter carries
        lambda: tf.random.Generator.from_non_deterministic_state(),
    ],
    ids=["seed", "big_seed", "carry", "nondeterministic"],
)
def test_generator_continues_tfs_stream(make, tmp_path):
    """RngReadAndSkip + the V2 draws: each call draws the next numbers of TF's stream and advances the state
    variable as TF does (also skip(n)); compiled, two calls in a row, and state carries across the 128-bit
    counter."""
    import jaxsm

    tf.saved_model.save(_generator_module(make()), str(tmp_path))
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    for call in range(2):
        want, have = ref.draw(x), got.draw(x)
        for k in want:
            tol = NORMAL_TOL[np.float64] if k == "truncated" else dict(rtol=1e-5, atol=2e-6)
            exact = k in ("uniform", "int32", "int64", "full")
            np.testing.assert_allclose(
                np.asarray(have[k]), want[k].numpy(), **(dict(rtol=0) if exact else tol), err_msg=f"{k}, call {call}"
            )
        np.testing.assert_array_equal(got.g._state_var.numpy(), ref.g._state_var.numpy(), err_msg=f"state, call {call}")
    np.testing.assert_array_equal(np.asarray(got.skip(np.int64(1000))), ref.skip(np.int64(1000)).numpy())
    np.testing.assert_allclose(np.asarray(got.draw(x)["uniform"]), ref.draw(x)["uniform"].numpy(), rtol=0)


def test_legacy_stateful_ops_draw_and_advance(tmp_path):
    """TF 2.0-2.3 Generators emitted Stateful* ops that draw from the state and advance it in one op."""
    import jaxsm

    class M(tf.Module):
        def __init__(self):
            self.state = tf.Variable(np.array([7, 0, 2**40 + 9], np.int64))

        @tf.function(input_signature=[])
        def draw(self):
            h, alg = self.state.handle, tf.constant(1, tf.int64)
            return {
                "uniform": R.StatefulUniform(resource=h, algorithm=alg, shape=[2, 3], dtype=tf.float32),
                "normal": R.StatefulStandardNormalV2(resource=h, algorithm=alg, shape=[5], dtype=tf.float32),
                "truncated": R.StatefulTruncatedNormal(resource=h, algorithm=alg, shape=[9], dtype=tf.float32),
                "int": R.StatefulUniformInt(resource=h, algorithm=alg, shape=[4], minval=-5, maxval=5),
                "full": R.StatefulUniformFullInt(resource=h, algorithm=alg, shape=[3], dtype=tf.uint64),
            }

    tf.saved_model.save(M(), str(tmp_path))
    ref, got = tf.saved_model.load(str(tmp_path)), jaxsm.load(str(tmp_path))
    for call in range(2):
        want, have = ref.draw(), got.draw()
        for k in want:
            tol = dict(rtol=0) if k in ("uniform", "int", "full") else NORMAL_TOL[np.float32]
            np.testing.assert_allclose(np.asarray(have[k]), want[k].numpy(), **tol, err_msg=f"{k}, call {call}")
        np.testing.assert_array_equal(got.state.numpy(), ref.state.numpy(), err_msg=f"state after call {call}")


# -- gamma and Poisson: rejection loops, one Philox stream per output ----------------------------------------
# Both samplers run in double whatever the dtype, so draws agree with TF's to the last bits of log/sin/cos.
GAMMA_ALPHA = np.array([[0.3, 1.0, 2.5], [7.0, 0.01, 1e-3]])  # below 1, exactly 1 (exponential), above 1, tiny


# Both jit paths for one dtype; the while loops are slow to compile, so one path each for the others.
@pytest.mark.parametrize(
    "dtype,jit", [(np.float32, True), (np.float32, False), (np.float64, True), (np.float16, False)], ids=str
)
def test_stateless_gamma(dtype, jit):
    tdt = tf.as_dtype(dtype)

    def fn(alpha, seed):
        key, counter = R.StatelessRandomGetKeyCounter(seed=seed)
        return {
            "v2": R.StatelessRandomGammaV2(shape=[40, 2, 3], seed=seed, alpha=alpha),
            "v2_rank0_alpha": R.StatelessRandomGammaV2(shape=[5], seed=seed, alpha=alpha[1, 2]),
            "v2_empty": R.StatelessRandomGammaV2(shape=[0, 3], seed=seed, alpha=alpha[0]),
            "v3": R.StatelessRandomGammaV3(shape=[7, 2, 3], key=key, counter=counter, alg=1, alpha=alpha),
            "public": tf.random.stateless_gamma([3, 2, 3], seed=seed, alpha=alpha, beta=2.0, dtype=tdt),
        }

    tol = dict(rtol=1e-12) if dtype == np.float64 else dict(rtol=1e-6)
    assert_matches_tf(fn, [GAMMA_ALPHA.astype(dtype), np.array([3, -4], np.int64)], jit=jit, **tol)


def test_stateless_gamma_special_alphas():
    # NaN and alpha < -2/3 make NaN candidates that TF's loop accepts (no hang); 0 and -0.5 go through b^(1/alpha).
    alpha = np.array([np.nan, -1.0, -0.5, 0.0, np.inf, 2.0], np.float64)

    def fn(alpha, seed):
        return R.StatelessRandomGammaV2(shape=[5, 6], seed=seed, alpha=alpha)

    assert_matches_tf(fn, [alpha, np.array([1, 2], np.int32)], rtol=1e-12)


def test_stateless_gamma_shape_must_end_with_alphas():
    def fn(alpha, seed):
        return R.StatelessRandomGammaV2(shape=[4, 2], seed=seed, alpha=alpha)

    export_dir, _ = save_function(fn, [np.ones(2, np.float32), np.array([1, 2], np.int32)], shapes=[[None], [2]])
    with pytest.raises(LoweringError, match="must end with alpha's shape"):
        run_jaxsm(export_dir, [np.ones(3, np.float32), np.array([1, 2], np.int32)])


@JIT
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
def test_random_gamma_grad(dtype, jit):
    alpha = np.array([[0.5, 1.0, 3.0], [20.0, 0.01, 2.0]], dtype)
    sample = np.array([[0.2, 1.0, 4.0], [18.0, 1e-30, 1e-3]], dtype)

    def fn(alpha, sample):
        return R.RandomGammaGrad(alpha=alpha, sample=sample), R.RandomGammaGrad(alpha=alpha[0], sample=sample[:, :1])

    assert_matches_tf(fn, [alpha, sample], jit=jit, rtol=2e-5 if dtype == np.float32 else 1e-10)


POISSON_RATES = [0.0, -1.0, np.inf, -np.inf, 3.0, 9.99, 10.0, 0.5, 35.0, 1000.0]  # Knuth below 10, PTRS above


@pytest.mark.parametrize(
    "rate_dtype,jit",
    [
        (np.float32, True),
        (np.float32, False),
        (np.float64, True),
        (np.float16, False),
        (np.int32, True),
        (np.int64, False),
    ],
    ids=str,
)
def test_stateless_poisson(rate_dtype, jit):
    rate = np.array([r for r in POISSON_RATES if np.isfinite(r) or rate_dtype().dtype.kind == "f"], rate_dtype)

    def fn(rate, seed):
        out = {
            dt.name: R.StatelessRandomPoisson(shape=[30, rate.shape[0]], seed=seed, lam=rate, dtype=dt)
            for dt in (tf.float16, tf.float32, tf.float64, tf.int32, tf.int64)
        }
        out["rank0_rate"] = R.StatelessRandomPoisson(shape=[4], seed=seed, lam=rate[4], dtype=tf.int32)
        out["empty"] = R.StatelessRandomPoisson(shape=[0, 2], seed=seed, lam=rate[:2], dtype=tf.int64)
        out["public"] = tf.random.stateless_poisson([3, 2, 4], seed=seed, lam=tf.reshape(rate[:8], [2, 4]))
        return out

    assert_matches_tf(fn, [rate, np.array([-9, 2**40], np.int64)], jit=jit, rtol=0)


def test_stateless_poisson_shape_must_end_with_rates():
    def fn(rate, seed):
        return R.StatelessRandomPoisson(shape=[4, 2], seed=seed, lam=rate, dtype=tf.int32)

    export_dir, _ = save_function(fn, [np.ones(2, np.float32), np.array([1, 2], np.int32)], shapes=[[None], [2]])
    with pytest.raises(LoweringError, match="must end with lam's shape"):
        run_jaxsm(export_dir, [np.ones(3, np.float32), np.array([1, 2], np.int32)])
