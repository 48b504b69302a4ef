"""The jaxsm exception hierarchy. Every error jaxsm raises is a :class:`JaxsmError`."""

from __future__ import annotations


class JaxsmError(Exception):
    """Base class of every error raised by jaxsm."""


class FormatError(JaxsmError):
    """A file on disk is not what the SavedModel/checkpoint format says it must be."""


class IncompleteSavedModelError(FormatError, FileNotFoundError):
    """The SavedModel directory lacks saved_model.pb (it is written last; a writer may still be running)."""


class CorruptFileError(FormatError):
    """A file is truncated, has a bad magic number, a bad length field or fails to parse."""


class ChecksumError(CorruptFileError):
    """A block or tensor does not match its stored masked crc32c."""


class MissingShardError(FormatError, FileNotFoundError):
    """A checkpoint data shard named by the index is missing."""


class TagsNotFoundError(JaxsmError, ValueError, RuntimeError):
    """No MetaGraph matches the requested tags (TF raises RuntimeError), or ``tags=None`` is ambiguous (TF raises
    ValueError)."""


class CheckpointKeyError(JaxsmError, KeyError):
    """A tensor is not in the checkpoint."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class GraphError(JaxsmError):
    """A graph or FunctionDef is malformed (dangling input, cycle, missing function)."""


class AttrError(GraphError):
    """A node attribute is missing or has the wrong type."""


class UnsupportedOpError(JaxsmError):
    """One or more op types reachable from the model have no JAX lowering.

    ``missing`` maps op type -> (count, example node path).
    """

    def __init__(self, message: str, missing: dict[str, tuple[int, str]] | None = None):
        super().__init__(message)
        self.missing = dict(missing or {})


class LoweringError(JaxsmError):
    """An op failed while being lowered to JAX; the message names node, op and function."""


class StaticValueError(LoweringError):
    """An op needs a value at trace time (e.g. a shape) that is only known at run time."""


class CallArgumentError(JaxsmError, TypeError):
    """A restored function was called with arguments it does not take: too many, missing or unexpected names (TF
    raises TypeError)."""


class SignatureNotFoundError(JaxsmError, KeyError):
    """``loaded.signatures[key]`` names no signature of the SavedModel (TF raises KeyError)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class FunctionMatchError(JaxsmError, ValueError):
    """No concrete function of a polymorphic function matches the call (TF raises ValueError)."""


class InputSignatureError(FunctionMatchError, TypeError):
    """A call does not fit a signature, a concrete function or a function's ``input_signature`` (TF raises
    TypeError while binding the inputs)."""


class AssertFailedError(JaxsmError, ValueError):
    """A ``tf.debugging.assert_*`` / ``tf.Assert`` of the graph failed on the call's values (TF raises
    InvalidArgumentError); the message names the node and its data."""


class Int64RangeError(JaxsmError, ValueError):
    """A 64-bit integer input holds values beyond 32 bits while ``jax_enable_x64`` is off: JAX would narrow it to
    32 bits and wrap them, a wrong answer; turn x64 on."""


class VariableError(JaxsmError):
    """A variable is missing from the checkpoint, uninitialized, or assigned an incompatible value."""


class StringTensorError(LoweringError):
    """A string tensor would have to enter a jitted computation, which XLA cannot represent."""


class CheckpointNotFoundError(FormatError, FileNotFoundError, ValueError):
    """No checkpoint at the given path (TF raises ValueError for a directory without checkpoints)."""


class EagerFallbackWarning(UserWarning):
    """A function needs run-time values as shapes (data-dependent output shapes), which XLA cannot compile, so
    jaxsm runs it op by op without ``jax.jit`` for inputs of those shapes, as TF's eager mode would."""
