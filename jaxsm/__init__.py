"""jaxsm: load TensorFlow SavedModels into JAX, without TensorFlow."""

from jaxsm import errors
from jaxsm.compile import compiler_options
from jaxsm.composite import RaggedTensor, SparseTensor
from jaxsm.format.checkpoint import load_checkpoint
from jaxsm.format.saved_model import Fingerprint, contains_saved_model, read_fingerprint
from jaxsm.functional import functional, merge, split_trainable
from jaxsm.malloc import tune_malloc
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
    "Fingerprint",
    "LoadOptions",
    "RaggedTensor",
    "RestoredFunction",
    "SparseTensor",
    "UserObject",
    "Variable",
    "compiler_options",
    "contains_saved_model",
    "errors",
    "functional",
    "load",
    "load_checkpoint",
    "merge",
    "nnx",
    "read_fingerprint",
    "split_trainable",
    "tune_malloc",
]


def __getattr__(name: str):
    # jaxsm.nnx imports flax (~0.3 s): only when asked for, so `import jaxsm` stays fast.
    if name == "nnx":
        import importlib

        return importlib.import_module("jaxsm.nnx")
    raise AttributeError(f"module 'jaxsm' has no attribute {name!r}")
