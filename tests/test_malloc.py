"""jaxsm.tune_malloc: XLA:CPU's per-call buffers are reused instead of page-faulted in again (fresh processes:
the setting is process-wide, so it never runs in the test process itself)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import pytest

from jaxsm import malloc

pytestmark = pytest.mark.skipif(
    malloc._glibc() is None or jax.default_backend() != "cpu", reason="glibc malloc on the CPU backend only"
)

# The bundled MLP (8 -> 16 relu -> 3) at 3 * 2**18 rows: a 48 MiB hidden layer, XLA's temporary block, every call
# -- above glibc's 32 MiB mmap limit, below the 64 MiB a worker thread's own arena can hold (a thread that took an
# arena made before tune_malloc keeps it, and maps larger blocks anyway).
_CHILD = textwrap.dedent("""
    import resource, sys, warnings, numpy as np
    import jaxsm, jax, jax.numpy as jnp
    from jaxsm.examples import MLP
    mode = sys.argv[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if mode == "tuned":
            assert jaxsm.tune_malloc() is True
        model = jaxsm.load(MLP)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((3 * 2**18, 8), np.float32))
        f = model.signatures["serving_default"]
        ref = np.load(MLP / "expected.npz")
        np.testing.assert_allclose(np.asarray(f(features=ref["x"])["output_0"]), ref["y"], rtol=1e-5, atol=1e-6)
        if mode == "late":
            jaxsm.tune_malloc()
    print("warnings:", [str(w.message)[:34] for w in caught if issubclass(w.category, RuntimeWarning)])
    faults = []
    for i in range(12):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        jax.block_until_ready(f(features=x))
        if i >= 3:  # the heap settles in the first calls
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print("faults per call:", int(np.median(faults)))
""")


def _run(mode: str) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout.split("faults per call:")[1]), r.stdout


def test_tuned_malloc_reuses_xla_buffers_instead_of_faulting_them_in():
    default, _ = _run("default")
    if default < 10000:  # 48 MiB is 12288 pages
        pytest.skip(f"this machine's malloc reuses the block already ({default} page faults per call)")
    tuned, out = _run("tuned")
    assert "warnings: []" in out, out
    # XLA's 48 MiB temporary block is reused: its 12288 pages no longer fault in every call.
    assert tuned < 6000, f"{tuned} page faults per call with tune_malloc(), {default} without"


def test_tune_malloc_after_the_first_computation_warns():
    _, out = _run("late")
    assert "a JAX backend" in out.split("warnings:")[1].split("\n")[0], out


def test_tune_malloc_is_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(malloc, "_glibc", lambda: None)
    assert malloc.tune_malloc() is False
