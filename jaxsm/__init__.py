"""jaxsm: load TensorFlow SavedModels into JAX, without TensorFlow."""

from jaxsm import errors, nnx
from jaxsm.format.checkpoint import load_checkpoint
from jaxsm.functional import functional, merge, split_trainable
from jaxsm.objects import (
    ConcreteFunction,
    LoadOptions,
    RestoredFunction,
    UserObject,
    Variable,
    load,
)

__all__ = [
    "ConcreteFunction",
    "LoadOptions",
    "RestoredFunction",
    "UserObject",
    "Variable",
    "errors",
    "functional",
    "load",
    "load_checkpoint",
    "merge",
    "nnx",
    "split_trainable",
]
