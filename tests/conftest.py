"""Shared test setup. Tests run with jax_enable_x64 on so dtypes can be compared exactly with TF's
(DESIGN principle 7); the 32-bit mode is covered by tests that start a subprocess. ``JAXSM_TEST_X64=0`` keeps x64
off for the session (JAX's default mode): tfcompare then takes TF's 64-bit dtypes as their 32-bit twins."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # TF's oneDNN kernels round differently; keep the oracle plain

import jax  # noqa: E402

jax.config.update("jax_enable_x64", os.environ.get("JAXSM_TEST_X64") != "0")
