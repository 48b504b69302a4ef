"""TF op lowerings, one module per op family; importing this package registers them all."""

import importlib
import pkgutil

from jaxsm.ops.registry import NEVER_LOWERED, OPS, op, supported_ops

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "registry" and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["OPS", "NEVER_LOWERED", "op", "supported_ops"]
