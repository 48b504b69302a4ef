"""Synchronization and process-control ops: tf.CriticalSection's mutex (``MutexV2``, ``MutexLock``,
``ConsumeMutexLock``) and ``Abort``.

A jaxsm function runs one call at a time on one thread, so the critical section's lock never waits: the mutex is
a handle and its lock a token that orders nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsm.errors import AssertFailedError
from jaxsm.graph.values import Resource
from jaxsm.ops.registry import op


@op("MutexV2", stateful=True)
def mutex_v2(ctx):
    return Resource(ctx.attr("shared_name", "") or ctx.node.name, kind="mutex")


@op("MutexLock", stateful=True)
def mutex_lock(ctx, mutex):
    return Resource(mutex.key if isinstance(mutex, Resource) else ctx.node.name, kind="mutex_lock")


@op("ConsumeMutexLock", stateful=True)
def consume_mutex_lock(ctx, lock):
    return []


@op("Abort", stateful=True)
def abort(ctx):
    """TF ends the process when this runs (with SIGABRT, or exit code 0 with ``exit_without_error``); jaxsm
    raises with ``error_msg`` instead. While tracing (a compiled call, or both branches of a run-time cond) the
    op may be unreachable, so it joins the run-time checks like a failing Assert: if it ran, the call is rerun
    op by op (jaxsm/compile.py), where it raises when it is reached."""
    if not isinstance(jnp.zeros(()) + 0, jax.core.Tracer):
        how = "exit the process without error" if ctx.attr("exit_without_error", False) else "abort the process"
        raise ctx.error(f"Abort: {ctx.attr('error_msg', '')} (TF would {how})", AssertFailedError)
    if ctx.interp.run_time_asserts is not None:
        ctx.interp.run_time_asserts.append(jnp.asarray(False))
    return []
