"""The hidden state of TF's stateful random kernels: one Philox counter per node.

A seeded ``RandomUniform`` node in TF owns a ``GuardedPhiloxRandom`` (tensorflow/core/util/guarded_philox_random.h)
created with its kernel: Philox keyed by the ``seed`` attr, counter ``[0, 0, seed2]``. Each call reserves
``outputs * 256`` 128-bit samples (``ReserveRandomOutputs(n, 256)``): it draws from the counter and moves it on
by that much (other kernels reserve other amounts: each lowering says how many), so a loaded SavedModel gives
fresh numbers on every call, the same on every load.

jaxsm keeps that counter as an entry of the variable state (key ``COUNTER_PREFIX + function/node``, a uint32[4]
array): the loaded object seeds it from the attrs and writes it back after each call, like a variable, so
compiled calls, loops and ``lax.switch`` branches carry it. A pure function given a state without the entry
(``jaxsm.functional``) draws the first call's numbers every time.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

from jaxsm.graph.node import Node

COUNTER_PREFIX = "__jaxsm_rng__/"
_U64_MASK = 0xFFFFFFFFFFFFFFFF

# Stateful ops whose GuardedPhiloxRandom jaxsm keeps (jaxsm/ops/stateful_random.py, ParameterizedTruncatedNormal
# in random.py). The host-drawn samplers (candidate samplers, SampleDistortedBoundingBox) are not among them: a
# counter known only at run time would make them run op by op; they draw the first call's numbers (gaps.py).
COUNTED_OPS = frozenset(
    {
        "RandomUniform",
        "RandomStandardNormal",
        "TruncatedNormal",
        "RandomUniformInt",
        "RandomGamma",
        "RandomPoissonV2",
        "RandomPoisson",
        "RandomShuffle",
        "Multinomial",
        "ParameterizedTruncatedNormal",
    }
)


def counter_key(node: Node) -> str:
    return f"{COUNTER_PREFIX}{node.function}/{node.name}"


def seeds(node: Node) -> tuple[int, int]:
    """The node's (seed, seed2) as uint64s. With both attrs 0 TF seeds at random; jaxsm uses the node name."""
    seed, seed2 = node.attr("seed", 0), node.attr("seed2", 0)
    if seed == 0 and seed2 == 0:
        seed = zlib.crc32(node.name.encode())
    return seed & _U64_MASK, seed2 & _U64_MASK


def first_counter(node: Node) -> np.ndarray:
    """The Philox counter of the kernel's first call: ``[0, 0, seed2 low, seed2 high]`` as uint32 words."""
    _, seed2 = seeds(node)
    return np.array([0, 0, seed2 & 0xFFFFFFFF, seed2 >> 32], np.uint32)


def initial_counters(nodes: Iterable[Node]) -> dict[str, np.ndarray]:
    """State entries for the stateful random nodes among ``nodes``, as their kernels start."""
    return {counter_key(n): first_counter(n) for n in nodes if n.op in COUNTED_OPS}
