"""TF op lowerings, one module per op family (``@op`` in jaxsm/ops/registry.py). A family's module is imported
when a graph first needs one of its ops (``lookup``: a first call imports only what the model uses); ``load_all``
imports them all."""

from jaxsm.ops.registry import NEVER_LOWERED, OPS, load_all, lookup, op, supported_ops

__all__ = ["OPS", "NEVER_LOWERED", "load_all", "lookup", "op", "supported_ops"]
