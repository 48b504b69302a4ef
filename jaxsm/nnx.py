"""Flax NNX bridge: a restored function as an ``nnx.Module`` you can fine-tune with optax."""

from __future__ import annotations

from typing import Any

from flax import nnx

from jaxsm.functional import _flatten, _nest, functional, variables_of
from jaxsm.objects import ConcreteFunction, RestoredFunction


class SavedModelModule(nnx.Module):
    """An ``nnx.Module`` around a restored function (e.g. a Keras export's ``serve``).

    Trainable TF variables become ``nnx.Param``; the others (BatchNorm moving statistics, counters…) become
    ``nnx.BatchStat``. Calling the module runs the function on the module's current variables; assignments the
    function makes are written back into them, as TF would.
    """

    def __init__(self, fn: ConcreteFunction | RestoredFunction):
        apply, params = functional(fn)
        trainable = {v.key for v in variables_of(fn) if v.trainable}
        flat = _flatten(params)
        self.params = nnx.data({k: nnx.Param(v) for k, v in flat.items() if k in trainable})
        self.stats = nnx.data({k: nnx.BatchStat(v) for k, v in flat.items() if k not in trainable})
        self._apply = apply

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flat = {k: v[...] for k, v in self.params.items()}
        flat.update({k: v[...] for k, v in self.stats.items()})
        out = self._apply(_nest(flat), *args, **kwargs)
        if self._apply.assigns:
            out, new = out
            for k, v in _flatten(new).items():
                target = self.params[k] if k in self.params else self.stats[k]
                target[...] = v
        return out


def from_saved_model(fn_or_dir: Any, endpoint: str = "serve", tags: Any = None) -> SavedModelModule:
    """An nnx module for a restored function, or for ``endpoint`` of the SavedModel at a path.

    ``endpoint`` is an attribute (``"serve"`` for Keras 3 exports, ``"__call__"``) or a signature key.
    """
    if isinstance(fn_or_dir, (ConcreteFunction, RestoredFunction)):
        return SavedModelModule(fn_or_dir)
    from jaxsm.objects import load

    model = load(fn_or_dir, tags=tags)
    fn = getattr(model, endpoint, None) if endpoint != "__call__" else model._jaxsm_children.get("__call__")
    if fn is None:
        fn = model.signatures[endpoint]
    return SavedModelModule(fn)
