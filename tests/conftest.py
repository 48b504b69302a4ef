"""Shared test setup. Tests run with jax_enable_x64 on so dtypes can be compared exactly with TF's
(DESIGN principle 7); the 32-bit mode is covered by tests that start a subprocess."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # TF's oneDNN kernels round differently; keep the oracle plain

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
