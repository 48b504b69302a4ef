"""SavedObjectGraph -> Python objects: user objects, Variables, restored functions, signatures.

This is what :func:`jaxsm.load` returns for a TF2 SavedModel, mirroring ``tf.saved_model.load``: every node of
``MetaGraphDef.object_graph_def`` becomes an object, children become attributes, variables get their checkpoint
values, and functions run their FunctionDefs through the interpreter as jitted JAX functions.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from google.protobuf.message import DecodeError

from jaxsm import composite, dtypes
from jaxsm._proto import meta_graph_pb2, saved_object_graph_pb2, trackable_object_graph_pb2
from jaxsm.compile import (
    EIGEN_CPU_OPTIONS,
    check_run_time_asserts,
    gc_paused,
    has_tracers,
    host_values,
    input_key,
    tuned_jit,
)
from jaxsm.errors import (
    CallArgumentError,
    CorruptFileError,
    FormatError,
    FunctionMatchError,
    IncompleteSavedModelError,
    InputSignatureError,
    Int64RangeError,
    JaxsmError,
    SignatureNotFoundError,
    StaticValueError,
    VariableError,
)
from jaxsm.format import structure
from jaxsm.format.structure import TensorSpec
from jaxsm.format.tensor import tensor_from_proto
from jaxsm.graph.interpreter import pure_function
from jaxsm.graph.library import PYTHON_CALLBACK_OPS, Library, check_supported
from jaxsm.graph.rng import COUNTED_OPS, initial_counters
from jaxsm.graph.values import Resource

_X64_WARNED = False


def _warn_x64_once() -> None:
    global _X64_WARNED
    if not _X64_WARNED and not jax.config.jax_enable_x64:
        _X64_WARNED = True
        warnings.warn(
            "jaxsm: this model uses 64-bit tensors but jax_enable_x64 is off, so they are computed in 32 bits. "
            "Call jax.config.update('jax_enable_x64', True) before loading for TF's exact dtypes.",
            stacklevel=3,
        )


@dataclass
class LoadOptions:
    """Options for :func:`jaxsm.load` (``tf.saved_model.LoadOptions`` plus jaxsm's own).

    Arguments:
      verify_checksums: check every tensor's crc32c while restoring variables (on by default).
      allow_partial_checkpoint: variables missing from the checkpoint stay uninitialized instead of raising.
      load_variables: False skips reading the checkpoint (every variable uninitialized until assigned).
      device: a ``jax.Device`` to place variable values on (default: JAX's default device).
      sharding: where each variable lives: one ``jax.sharding.Sharding`` for all, a dict ``{object path:
        Sharding}``, or a callable ``(path, shape, dtype) -> Sharding | None`` (None = default placement).
        E.g. replicate everything and shard a large embedding table's rows over a mesh.
      param_dtype: cast floating-point variables to this dtype at load (``jnp.bfloat16``/``jnp.float16``) to halve
        their memory; activations keep their own dtypes, so results differ from TF by the rounding of the
        weights (about 1e-2 relative for bfloat16, 1e-3 for float16).
      experimental_skip_checkpoint: TF's spelling of ``load_variables=False``.
    """

    verify_checksums: bool = True
    allow_partial_checkpoint: bool = False
    load_variables: bool = True
    device: Any = None
    sharding: Any = None
    param_dtype: Any = None
    experimental_skip_checkpoint: bool = False

    def place(self, path: str, value: np.ndarray) -> jax.Array:
        """Put one variable's value where these options say (device, sharding, dtype)."""
        if value.dtype.kind in "OSU":  # string variables stay on the host: XLA has no string type
            return np.asarray(value, dtype=object)
        if self.param_dtype is not None and np.dtype(value.dtype).kind == "f":
            value = np.asarray(value).astype(self.param_dtype)
        target = self.sharding
        if isinstance(target, dict):
            target = target.get(path)
        elif callable(target) and not isinstance(target, jax.sharding.Sharding):
            target = target(path, tuple(value.shape), np.dtype(value.dtype))
        if target is None:
            target = self.device
        # device_put, not jnp.asarray: asarray compiles a small XLA program per distinct shape (most of load time)
        return jax.device_put(value, target)


# dtype kind of a variable -> kinds of Python values (NumPy's view of them) that TF converts to it
_PYTHON_VALUE_INTO = {"b": "b", "i": "bi", "u": "i", "f": "bif", "c": "bifc", "V": "bif"}
# the same when TF only hints the dtype (a restored function without input_signature): TF's graph-mode check,
# where a Python bool is an int (its eager scalar cache, keyed by value, also lets 1 pass after True: not copied)
_PYTHON_VALUE_HINTED = {"b": "b", "i": "bi", "u": "bi", "f": "bif", "c": "bifc", "V": "bif"}


class VariableSynchronization(enum.Enum):
    """``tf.VariableSynchronization``, with TF's names and values: when a distributed variable syncs."""

    AUTO = 0
    NONE = 1
    ON_WRITE = 2
    ON_READ = 3


class VariableAggregation(enum.Enum):
    """``tf.VariableAggregation`` (TF's ``VariableAggregationV2``), with TF's names and values: how a distributed
    variable combines its replicas' updates."""

    NONE = 0
    SUM = 1
    MEAN = 2
    ONLY_FIRST_REPLICA = 3


class Variable:
    """A restored ``tf.Variable``: its value is a ``jax.Array`` that functions read and assign."""

    def __init__(
        self,
        key: str,
        name: str,
        shape: tuple | None,
        dtype: np.dtype,
        trainable: bool,
        synchronization: int = 0,
        aggregation: int = 0,
    ):
        self._key = key
        self.name = name
        self._shape = shape
        self._dtype = np.dtype(dtype)
        self.trainable = trainable
        try:  # the SavedVariable / VariableDef enums, as TF's loader turns them into Python enums
            self.synchronization = VariableSynchronization(synchronization)
            self.aggregation = VariableAggregation(aggregation)
        except ValueError as e:  # TF's loader rejects them too
            raise FormatError(f"variable '{name}': {e}") from None
        self._array: jax.Array | None = None
        # Values are read from the checkpoint on first use (a function call, .numpy() …): loading stays cheap and
        # variables nothing uses (Keras 3 exports track every weight twice) never cost memory.
        self._pending: Callable[[], jax.Array] | None = None

    @property
    def _value(self) -> jax.Array | None:
        if self._array is None and self._pending is not None:
            with jax.ensure_compile_time_eval():  # a first read inside the user's jax.jit must not keep a tracer
                self._array, self._pending = self._pending(), None
        return self._array

    @_value.setter
    def _value(self, value: jax.Array | None) -> None:
        if isinstance(value, jax.core.Tracer):  # kept, it would poison every later call with a leaked tracer
            raise VariableError(
                f"variable '{self.name}' ({self._key}) would be assigned inside jax.jit/grad/vmap, where a restored "
                "function cannot keep state: use jaxsm.functional(fn), whose apply returns the updated variables"
            )
        self._array, self._pending = value, None

    @property
    def key(self) -> str:
        """The stable state key of this variable (its object path, e.g. ``model/dense/kernel``)."""
        return self._key

    @property
    def shape(self) -> tuple | None:
        """The declared shape, as TF's restored variables report it whatever the value: None dimensions stay None
        (``value().shape`` has the sizes), and a variable declared of unknown rank has None."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def initialized(self) -> bool:
        return self._array is not None or self._pending is not None

    def value(self) -> jax.Array:
        if self._value is None:
            raise VariableError(f"variable '{self.name}' ({self._key}) is not initialized")
        return self._value

    def read_value(self) -> jax.Array:
        return self.value()

    def numpy(self) -> np.ndarray:
        return np.asarray(self.value())

    def __array__(self, dtype=None, copy=None):
        a = np.asarray(self.value())
        return a.astype(dtype) if dtype is not None else a

    def __jax_array__(self):
        return self.value()

    def _converted(self, value: Any) -> Any:
        """``value`` as this variable's dtype, as ``tf.Variable.assign`` converts it: arrays are cast, Python values
        only where TF converts them (a float never becomes an int, an int never a bool)."""
        value = value.value() if isinstance(value, Variable) else _as_input(value)
        if self._dtype.kind == "O":
            strings = dtypes.as_strings(value)
            if strings is None:
                raise VariableError(f"cannot assign {value!r} to the string variable '{self.name}'")
            return strings
        if not isinstance(value, (np.ndarray, np.generic, jax.Array)):
            arr = np.asarray(value)
            if arr.dtype.kind not in _PYTHON_VALUE_INTO.get(self._dtype.kind, ""):
                raise VariableError(f"cannot convert {value!r} to the {self._dtype.name} variable '{self.name}'")
            value = arr.astype(self._dtype)
        return jnp.asarray(value).astype(jax.dtypes.canonicalize_dtype(self._dtype))

    def assign(self, value: Any, use_locking: Any = None, name: Any = None, read_value: bool = True) -> Variable | None:
        new = self._converted(value)
        declared = self._shape
        if declared is not None and not (
            len(declared) == new.ndim and all(d is None or d < 0 or d == n for d, n in zip(declared, new.shape))
        ):  # the declared shape, as TF checks it: None dimensions (shape=tf.TensorShape(None)) take any size
            raise VariableError(
                f"cannot assign a value of shape {new.shape} to variable '{self.name}' of shape {declared}"
            )
        self._value = new
        return self if read_value else None

    def assign_add(
        self, delta: Any, use_locking: Any = None, name: Any = None, read_value: bool = True
    ) -> Variable | None:
        return self.assign(self.value() + self._converted(delta), read_value=read_value)

    def assign_sub(
        self, delta: Any, use_locking: Any = None, name: Any = None, read_value: bool = True
    ) -> Variable | None:
        return self.assign(self.value() - self._converted(delta), read_value=read_value)

    # arithmetic and comparisons, as tf.Variable supports them (operators act on the current value)
    def __float__(self):
        return float(self.numpy())

    def __int__(self):
        return int(self.numpy())

    def __bool__(self):
        return bool(self.numpy())

    def __len__(self):
        return len(self.value())

    def __getitem__(self, i):
        return self.value()[i]

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        v = "uninitialized" if self._value is None else np.array2string(np.asarray(self._value), threshold=6)
        shape = "<unknown>" if self.shape is None else self.shape  # (TF's spelling of an unknown rank)
        return f"<jaxsm.Variable '{self.name}' shape={shape} dtype={dtypes.name(dtypes.from_numpy(self._dtype))} {v}>"


def _value_operator(name: str):
    def method(self, *args):
        return getattr(self.value(), name)(*(a.value() if isinstance(a, Variable) else a for a in args))

    method.__name__ = name
    return method


for _name in (
    "__add__",
    "__radd__",
    "__sub__",
    "__rsub__",
    "__mul__",
    "__rmul__",
    "__truediv__",
    "__rtruediv__",
    "__floordiv__",
    "__rfloordiv__",
    "__mod__",
    "__rmod__",
    "__pow__",
    "__rpow__",
    "__matmul__",
    "__rmatmul__",
    "__neg__",
    "__abs__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__eq__",
    "__ne__",
    "__and__",
    "__or__",
    "__xor__",
    "__invert__",
):
    setattr(Variable, _name, _value_operator(_name))


class UserObject:
    """A restored trackable object (``tf.Module``, Keras layer, ...): children are attributes."""

    def __init__(self, identifier: str = "_generic_user_object"):
        self._jaxsm_identifier = identifier
        self._jaxsm_children: dict[str, Any] = {}

    def _add_child(self, name: str, value: Any) -> None:
        self._jaxsm_children[name] = value
        if name == "__call__" and type(self) is UserObject:
            # as TF's loader does: only an object with a __call__ child is callable (callable() tells them apart)
            self.__class__ = _CallableUserObject
        if name.isidentifier() or name == "__call__":
            try:
                object.__setattr__(self, name, value)
            except (AttributeError, TypeError):
                pass

    def _walk_variables(self) -> list[Variable]:
        # tf.Module's order (module.py, _flatten_module): an object's attributes sorted by name, each flattened as
        # tf.nest does (dicts by sorted key), then the objects found there, in that order; each value once.
        seen: set[int] = {id(self)}
        out: list[Variable] = []

        def leaves(value):
            if isinstance(value, dict):
                for k in sorted(value):
                    yield from leaves(value[k])
            elif isinstance(value, (list, tuple)):
                for v in value:
                    yield from leaves(v)
            else:
                yield value

        def visit(obj):
            found = []
            for name in sorted(obj._jaxsm_children):
                if name == "signatures":
                    continue
                for leaf in leaves(obj._jaxsm_children[name]):
                    if id(leaf) in seen:
                        continue
                    seen.add(id(leaf))
                    if isinstance(leaf, Variable):
                        out.append(leaf)
                    elif isinstance(leaf, UserObject):
                        found.append(leaf)
            for child in found:
                visit(child)

        visit(self)
        return out

    def __getattr__(self, name: str):
        # Reached for children whose names are not identifiers (Keras' "layer-0", TF has them as attributes for
        # getattr), and otherwise for tf.Module-style collections.
        children = self.__dict__.get("_jaxsm_children", {})
        if name in children:
            return children[name]
        if name == "variables":
            return self._walk_variables()
        if name == "trainable_variables":
            return [v for v in self._walk_variables() if v.trainable]
        if name == "non_trainable_variables":
            return [v for v in self._walk_variables() if not v.trainable]
        raise AttributeError(f"restored object has no attribute '{name}' (children: {sorted(self._jaxsm_children)})")

    def __repr__(self) -> str:
        return tree_repr(self)


class _CallableUserObject(UserObject):
    """A restored object with a ``__call__`` child (a tf.Module's or Keras model's), which a call runs."""

    def __call__(self, *args, **kwargs):
        return self._jaxsm_children["__call__"](*args, **kwargs)


class Signatures(Mapping):
    """``imported.signatures``: signature key -> :class:`ConcreteFunction` (keyword-argument calls)."""

    def __init__(self, functions: dict[str, ConcreteFunction]):
        self._functions = dict(functions)

    def __getitem__(self, key: str) -> ConcreteFunction:
        try:
            return self._functions[key]
        except KeyError:
            raise SignatureNotFoundError(f"no signature '{key}'; available: {sorted(self._functions)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._functions)

    def __len__(self) -> int:
        return len(self._functions)

    def __repr__(self) -> str:
        return f"_SignatureMap({sorted(self._functions)})"


class ConcreteFunction:
    """One traced function (a FunctionDef): fixed input signature, runs as a jitted JAX function."""

    def __init__(self, context: _LoadContext, name: str, proto: saved_object_graph_pb2.SavedConcreteFunction):
        self.name = name
        self._context = context
        self._proto = proto
        args, kwargs = (
            structure.decode(proto.canonicalized_input_signature)
            if proto.HasField("canonicalized_input_signature")
            else ((), {})
        )
        self.structured_input_signature: tuple[tuple, dict] = (tuple(args), dict(kwargs))
        self.structured_outputs = (
            structure.decode(proto.output_signature) if proto.HasField("output_signature") else None
        )
        self._captures: list[Any] | None = None
        self._jitted: Callable | None = None
        self._arg_keywords: list[str] | None = None
        self._num_positional: int | None = None
        self._is_signature = False
        self._lock = threading.Lock()
        self._updates_state: bool | None = None

    # -- inputs -----------------------------------------------------------------------------------------
    @property
    def inputs_spec(self) -> list[TensorSpec]:
        specs = []
        for s in structure.flatten(self.structured_input_signature):
            if isinstance(s, TensorSpec):
                specs.append(s)
            elif isinstance(s, structure.TypeSpec):
                specs.extend(composite.component_specs(s))
        return specs

    @property
    def inputs(self) -> list[TensorSpec]:
        """TF's ``inputs``: the flat tensor inputs, named like the function's placeholders (``'x:0'``); the
        captured variables and resources TF lists after them are left out."""
        fdef = self._context.library.functions.get(self.name)
        names = [a.name for a in fdef.signature.input_arg] if fdef is not None else []
        specs = self.inputs_spec
        return [s._replace(name=f"{n}:0") for s, n in zip(specs, names)] + specs[len(names) :]

    @property
    def outputs(self) -> list[TensorSpec]:
        """TF's ``outputs``: the flat tensor outputs, named after the graph tensors returned (``'Identity:0'``)."""
        specs = []
        for s in structure.flatten(self.structured_outputs):
            if isinstance(s, TensorSpec):
                specs.append(s)
            elif isinstance(s, structure.TypeSpec):
                specs.extend(composite.component_specs(s))
        fdef = self._context.library.functions.get(self.name)
        refs = [fdef.ret[a.name].split(":") for a in fdef.signature.output_arg] if fdef is not None else []
        names = [f"{r[0]}:{r[-1] if len(r) > 1 else 0}" for r in refs]
        return [s._replace(name=n) for s, n in zip(specs, names)] + specs[len(names) :]

    def _bind_captures(self) -> list[Any]:
        if self._captures is None:
            self._captures = [self._context.capture(node_id) for node_id in self._proto.bound_inputs]
        return self._captures

    def _variables(self) -> list[Variable]:
        return [c for c in (self._context.nodes[i] for i in self._proto.bound_inputs) if isinstance(c, Variable)]

    def _resources(self) -> list[RestoredResource]:
        nodes = (self._context.nodes[i] for i in self._proto.bound_inputs)
        return [c for c in nodes if isinstance(c, RestoredResource)]

    # -- running --------------------------------------------------------------------------------------------
    def pure(self) -> Callable[[dict[str, Any], Sequence[Any]], tuple[list[Any], dict[str, Any]]]:
        """``fn(state, flat_inputs) -> (flat_outputs, updated_state)`` over the FunctionDef."""
        return pure_function(self._context.library, self.name, self._bind_captures())

    def _run_flat(self, flat_inputs: list[Any]) -> list[Any]:
        with self._lock:
            if self._jitted is None:
                self._context.check_ops(self.name)
                self._jitted = _jit_keeping_host_outputs(self.pure(), f"{self._context.fingerprint}:{self.name}")
        variables = self._variables()
        state = {}
        for v in variables:
            if v._value is not None:  # (a string variable makes the call run op by op: compile.host_values)
                state[v.key] = v._value
        resources = self._resources()
        for r in resources:
            state.update(r.state)
        rng_keys = self._context.rng_keys(self.name)
        state.update({k: self._context.rng_state[k] for k in rng_keys})
        outputs, updated = self._jitted(state, flat_inputs)
        for v in variables:
            if v.key in updated:
                v._value = updated[v.key]
        # (not under the caller's jit/vmap: there the counters stay, and the draws repeat)
        self._context.rng_state.update(
            {k: updated[k] for k in rng_keys if k in updated and not isinstance(updated[k], jax.core.Tracer)}
        )
        for r in resources:
            r.state.update({k: v for k, v in updated.items() if k in r.state or k.startswith(r.handle.key + "/")})
        return outputs

    def _pack_outputs(self, flat: list[Any]) -> Any:
        it = iter(flat)

        def fill(s):
            if isinstance(s, TensorSpec):
                return next(it)
            if isinstance(s, structure.TypeSpec):
                return composite.from_components(s, [next(it) for _ in composite.component_specs(s)])
            if isinstance(s, dict):
                return {k: fill(v) for k, v in s.items()}
            if isinstance(s, tuple) and hasattr(s, "_fields"):
                return type(s)(*(fill(v) for v in s))
            if isinstance(s, (list, tuple)):
                return type(s)(fill(v) for v in s)
            return s

        if self.structured_outputs is None and not self._proto.HasField("output_signature"):
            return flat[0] if len(flat) == 1 else flat
        return fill(self.structured_outputs)  # (a function that returns nothing gives None, as TF's)

    def call_flat(self, flat_inputs: Sequence[Any]) -> list[Any]:
        """Run on flattened tensor inputs (in ``inputs_spec`` order); returns the flat outputs."""
        with self._state_lock():
            return self._run_flat([_as_input(x) for x in flat_inputs])

    def _state_lock(self) -> contextlib.AbstractContextManager:
        """Calls that update state (variables, tables, random counters) run one at a time per loaded model: two
        threads would each read the old values and one's update would be lost, where TF's kernels update in place.
        Calls that only read variables run concurrently."""
        if self._updates_state is None:
            from jaxsm.functional import _assigns

            self._updates_state = bool(self._resources() or self._context.rng_keys(self.name)) or _assigns(self)
        return self._context.state_lock if self._updates_state else contextlib.nullcontext()

    def __call__(self, *args, **kwargs):
        flat = self.bind(args, kwargs)
        with self._state_lock():
            return self._pack_outputs(self._run_flat(flat))

    def bind(self, args: tuple, kwargs: dict) -> list[Any]:
        """The flat tensor inputs for a call with ``args``/``kwargs`` (TF's rules); raises when they don't fit."""
        if self._is_signature:
            return self._bind_signature(args, kwargs)
        sig_args, sig_kwargs = self.structured_input_signature
        names = self._arg_keywords or [s.name if isinstance(s, TensorSpec) else None for s in sig_args]
        bound = list(args)
        if len(bound) > len(sig_args):
            raise CallArgumentError(f"{self.name} takes {len(sig_args)} positional arguments, got {len(bound)}")
        rest = dict(kwargs)
        for i in range(len(bound), len(sig_args)):
            nm = names[i] if i < len(names) else None
            if nm is not None and nm in rest:
                bound.append(rest.pop(nm))
            elif not isinstance(sig_args[i], TensorSpec) and not _has_tensors(sig_args[i]):
                bound.append(sig_args[i])
            else:
                raise CallArgumentError(f"{self.name}: missing argument {nm or i}")
        kw = {}
        for k, spec in sig_kwargs.items():
            if k in rest:
                kw[k] = rest.pop(k)
            elif not _has_tensors(spec):
                kw[k] = spec
            else:
                raise CallArgumentError(f"{self.name}: missing keyword argument '{k}'")
        if rest:
            raise CallArgumentError(f"{self.name}: unexpected arguments {sorted(rest)}")
        flat = _match((tuple(bound), kw), (sig_args, sig_kwargs), convert=True, cast_arrays=True)
        if flat is None:
            raise InputSignatureError(
                f"arguments do not match the signature of {self.name}: {_describe((tuple(bound), kw))} vs "
                f"{structure.format_signature(sig_args, sig_kwargs)}"
            )
        return flat

    def _bind_signature(self, args: tuple, kwargs: dict) -> list[Any]:
        _, sig_kwargs = self.structured_input_signature
        kw = dict(kwargs)
        if args:
            if len(args) > 1 or len(sig_kwargs) != 1 or kw:
                raise CallArgumentError(
                    f"signature functions take keyword arguments ({sorted(sig_kwargs)}); one positional argument "
                    "is allowed only when the signature has exactly one input"
                )
            kw = {next(iter(sig_kwargs)): args[0]}
        missing = sorted(set(sig_kwargs) - set(kw))
        extra = sorted(set(kw) - set(sig_kwargs))
        if missing or extra:
            raise CallArgumentError(
                f"signature expects inputs {sorted(sig_kwargs)}; missing {missing}, unexpected {extra}"
            )
        flat = _match(((), kw), ((), sig_kwargs), convert=True, cast_arrays=True, any_sizes=True)
        if flat is None:
            raise InputSignatureError(
                f"inputs do not match the signature: {_describe(kw)} vs {structure.format_value(sig_kwargs)}"
            )
        return flat

    def __repr__(self) -> str:
        a, k = self.structured_input_signature
        return f"<ConcreteFunction {self.name}{structure.format_signature(a, k)}>"


@contextlib.contextmanager
def _lapack_setup_skipped(skip: bool) -> Iterator[None]:
    """JAX sets up its CPU LAPACK kernels whenever it lowers a call of a ``jax.export`` module for CPU, which
    imports scipy.linalg: ~0.2 s of a fresh process's first call (measured: BERT-base with the persistent cache,
    0.64 s first call). A module without LAPACK calls does not need it, so for the lowering of such a module that
    step is skipped (a private JAX function; left alone where this JAX version has none)."""
    from jax._src.export import _export

    setup = getattr(_export, "_ensure_backends_initialized", None)
    if not skip or setup is None:
        yield
        return
    owner = threading.get_ident()

    def setup_unless_ours(platforms: tuple[str, ...]) -> None:  # other threads' lowerings keep the setup
        if threading.get_ident() != owner:
            setup(platforms)

    _export._ensure_backends_initialized = setup_unless_ours
    try:
        yield
    finally:
        _export._ensure_backends_initialized = setup


def _export_key(flat_inputs: Any) -> tuple:
    # what the traced module depends on besides the state: input shapes and the contraction precision setting
    return input_key(flat_inputs), jax.config.jax_default_matmul_precision


def _jit_keeping_host_outputs(fn: Callable, cache_prefix: str | None = None) -> Callable:
    """``jax.jit(fn)``, except that outputs known at trace time that XLA cannot hold (string tensors such as
    asset paths) are kept on the host and put back after each call. They are constants of the trace, so the
    value recorded while tracing holds for every call that reuses the compiled function.

    With JAX's persistent compilation cache on (``jax_compilation_cache_dir``), the traced function is also kept
    there as a serialized ``jax.export`` module keyed by ``cache_prefix`` and the argument shapes, so a new
    process skips tracing the TF graph too (the compile itself comes from JAX's cache)."""
    host: dict[int, Any] = {}
    exported: dict[str, Callable] = {}
    lapack_free: set[int] = set()  # ids of the exported callables whose modules call no LAPACK kernel

    def traced(state, flat_inputs):
        outputs, updated = fn(state, flat_inputs)
        arrays = []
        for i, o in enumerate(outputs):
            if isinstance(o, np.ndarray) and o.dtype == object:
                host[i] = o
                arrays.append(None)
            else:
                arrays.append(o)
        return arrays, updated

    jitted = tuned_jit(traced, repr(cache_prefix.rsplit(":", 1)[-1]) if cache_prefix else "function")

    def from_export_cache(state, flat_inputs) -> Callable | None:
        cache_dir = jax.config.jax_compilation_cache_dir
        if not cache_dir or cache_prefix is None or jax.device_count() != 1:
            return None
        shapes = _export_key(flat_inputs)
        if shapes in exported:
            return exported[shapes]
        avals = [(tuple(np.shape(x)), str(np.result_type(x))) for x in jax.tree_util.tree_leaves((state, flat_inputs))]
        ident = repr(
            (
                cache_prefix,
                sorted(state),
                avals,
                jax.__version__,
                jax.config.jax_enable_x64,
                jax.default_backend(),
                jax.config.jax_default_matmul_precision,
            )
        )
        key = hashlib.sha256(ident.encode()).hexdigest()
        path = os.path.join(cache_dir, "jaxsm-exports", key)
        eigen_marker = path + ".eigen"  # the compiler-options choice (jaxsm/compile.py) made when exporting
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            exp = jax.export.deserialize(bytearray(data))
            use_eigen = os.path.exists(eigen_marker)
        else:
            jitted_fn = jitted.pick(state, flat_inputs)
            try:
                exp = jax.export.export(jitted_fn)(state, flat_inputs)
            except NotImplementedError:  # host callbacks (tf.timestamp) cannot be serialized: the jitted path
                exported[shapes] = jitted
                return jitted
            if host:  # host-side outputs are only known by tracing: not kept on disk, always the jitted path
                exported[shapes] = jitted
                return jitted
            use_eigen = jitted_fn is jitted.eigen
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if use_eigen:
                open(eigen_marker, "wb").close()
            tmp = f"{path}.{os.getpid()}.tmp"
            data = exp.serialize()
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        run = exported[shapes] = jax.jit(exp.call, compiler_options=EIGEN_CPU_OPTIONS if use_eigen else None)
        if b"lapack" not in data:  # the module calls no LAPACK kernel (their FFI target names say "lapack")
            lapack_free.add(id(run))
        return run

    def call(state, flat_inputs):
        if has_tracers((state, flat_inputs)):  # inside the user's jit/grad/vmap: traced into it, never from the cache
            outputs, updated = jitted(state, flat_inputs)
            return [host.get(i, o) for i, o in enumerate(outputs)], updated
        run = exported.get(_export_key(flat_inputs)) if exported else None  # (no key work without the cache)
        if run is not None and run is not jitted:
            outputs, updated = check_run_time_asserts(run(state, flat_inputs), jitted.op_by_op, state, flat_inputs)
        elif run is not None:
            outputs, updated = run(state, flat_inputs)
        elif jax.config.jax_compilation_cache_dir and cache_prefix is not None and not host_values(state, flat_inputs):
            with gc_paused():  # first call for these shapes: export or read the traced function, compile
                try:
                    run = from_export_cache(state, flat_inputs) or jitted
                except StaticValueError:  # not compilable: ``jitted`` runs it op by op (and warns once)
                    run = exported[_export_key(flat_inputs)] = jitted
                with _lapack_setup_skipped(id(run) in lapack_free):
                    outputs, updated = run(state, flat_inputs)
                if run is not jitted:
                    outputs, updated = check_run_time_asserts((outputs, updated), jitted.op_by_op, state, flat_inputs)
        else:
            outputs, updated = jitted(state, flat_inputs)
        return [host.get(i, o) for i, o in enumerate(outputs)], updated

    call._cache_size = jitted._cache_size  # type: ignore[attr-defined]
    call.tuned = jitted  # type: ignore[attr-defined]
    return call


class RestoredFunction:
    """A restored polymorphic ``tf.function``: dispatches to the first matching concrete function (TF's rule)."""

    def __init__(self, context: _LoadContext, proto: saved_object_graph_pb2.SavedFunction):
        self._context = context
        self.concrete_functions = [context.concrete(n) for n in proto.concrete_functions]
        spec = proto.function_spec
        self._fullargspec = structure.decode(spec.fullargspec) if spec.HasField("fullargspec") else None
        self._is_method = spec.is_method
        self.input_signature = structure.decode(spec.input_signature) if spec.HasField("input_signature") else None

    def _casts(self, convert: bool) -> bool:
        # With an input_signature TF converts NumPy inputs to the declared dtypes; without one it must match.
        return convert and self.input_signature is not None

    def _canonicalize(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        fas = self._fullargspec
        if fas is None:
            return tuple(args), dict(kwargs)
        names = list(fas.args or [])
        if self._is_method and names and names[0] == "self":
            names = names[1:]
        defaults = list(fas.defaults or [])
        default_of = dict(zip(names[len(names) - len(defaults) :], defaults)) if defaults else {}
        if len(args) > len(names) and not fas.varargs:
            raise CallArgumentError(f"function takes {len(names)} positional arguments but {len(args)} were given")
        bound = list(args)
        rest = dict(kwargs)
        for nm in names[len(args) :]:
            if nm in rest:
                bound.append(rest.pop(nm))
            elif nm in default_of:
                bound.append(default_of[nm])
            else:
                raise CallArgumentError(f"missing required argument '{nm}'")
        kwonly = {}
        for nm in fas.kwonlyargs or []:
            if nm in rest:
                kwonly[nm] = rest.pop(nm)
            elif fas.kwonlydefaults and nm in fas.kwonlydefaults:
                kwonly[nm] = fas.kwonlydefaults[nm]
        if rest and not fas.varkw:
            raise CallArgumentError(f"unexpected keyword arguments {sorted(rest)}")
        kwonly.update(rest)
        return tuple(bound), kwonly

    def __call__(self, *args, **kwargs):
        cf, flat = self.dispatch(args, kwargs)
        with cf._state_lock():
            return cf._pack_outputs(cf._run_flat(flat))

    def dispatch(self, args: tuple, kwargs: dict) -> tuple[ConcreteFunction, list[Any]]:
        """The concrete function a call runs and its flat inputs: TF's rule, first match wins, first without
        then with conversion of Python values."""
        if not self.concrete_functions:  # TF's message for a tf.function saved without any trace
            raise FunctionMatchError(
                "Found zero restored functions for caller function: the tf.function was saved with no traces"
            )
        call = self._canonicalize(args, kwargs)
        for convert in (False, True):
            for cf in self.concrete_functions:
                flat = _match(call, cf.structured_input_signature, convert, cast_arrays=self._casts(convert))
                if flat is not None:
                    return cf, flat
        options = "\n".join(
            f"  Option {i + 1}: {structure.format_signature(*cf.structured_input_signature)}"
            for i, cf in enumerate(self.concrete_functions)
        )
        # (with an input_signature TF binds the inputs to it first, and that raises TypeError)
        raise (FunctionMatchError if self.input_signature is None else InputSignatureError)(
            f"Could not find matching concrete function to call loaded from the SavedModel. Got:\n"
            f"  {_describe(call)}\nExpected one of:\n{options}"
        )

    def get_concrete_function(self, *args, **kwargs) -> ConcreteFunction:
        """The concrete function a call with these arguments (or TensorSpecs) would run."""
        call = self._canonicalize(args, kwargs)
        for convert in (False, True):
            for cf in self.concrete_functions:
                if _match(call, cf.structured_input_signature, convert, specs_ok=True) is not None:
                    return cf
        raise FunctionMatchError(f"no concrete function matches {_describe(call)}")

    def __repr__(self) -> str:
        return f"<RestoredFunction with {len(self.concrete_functions)} concrete function(s)>"


# -- matching calls to signatures (TF's function_type rules) -------------------------------------------------
def _has_tensors(s: Any) -> bool:
    return any(isinstance(x, (TensorSpec, structure.TypeSpec)) for x in structure.flatten(s))


def _as_input(x: Any) -> Any:
    if isinstance(x, Variable):
        return x.value()
    if not isinstance(x, (np.ndarray, np.generic, jax.Array)) and hasattr(x, "__array__"):
        return np.asarray(x)  # e.g. a tf.Tensor or a pandas column
    return x


def check_fits_32_bits(arr: Any, what: str) -> None:
    """Refuse a NumPy int64/uint64 input whose values do not fit 32 bits while jax_enable_x64 is off: JAX would
    narrow it and wrap them silently (a wrong answer instead of TF's)."""
    if jax.config.jax_enable_x64 or not isinstance(arr, np.ndarray | np.generic) or arr.dtype.kind not in "iu":
        return
    if arr.dtype.itemsize != 8 or arr.size == 0:
        return
    info = np.iinfo(np.int32 if arr.dtype.kind == "i" else np.uint32)
    low, high = arr.min(), arr.max()
    if low < info.min or high > info.max:
        raise Int64RangeError(
            f"{what} is {arr.dtype.name} with values up to {high if high > info.max else low}, beyond 32 bits, and "
            "jax_enable_x64 is off, so JAX would wrap them. Call jax.config.update('jax_enable_x64', True) before "
            "loading for TF's exact 64-bit results."
        )


def _dtype_matches(got: np.dtype, want: np.dtype) -> bool:
    if got == want:
        return True
    if not jax.config.jax_enable_x64:  # JAX arrays cannot be 64-bit here; accept their 32-bit twins
        pairs = {
            (np.dtype("int32"), np.dtype("int64")),
            (np.dtype("float32"), np.dtype("float64")),
            (np.dtype("uint32"), np.dtype("uint64")),
            (np.dtype("complex64"), np.dtype("complex128")),
        }
        return (got, want) in pairs
    return False


def _match(
    value: Any, spec: Any, convert: bool, specs_ok: bool = False, cast_arrays: bool = False, any_sizes: bool = False
) -> list[Any] | None:
    """Flat tensor inputs when ``value`` fits ``spec`` (structure, dtype, compatible shape), else None.

    ``cast_arrays``: NumPy numbers are cast to the spec's dtype (any number to any number) and Python values
    converted as ``tf.Variable.assign`` converts them, as TF does for signatures and functions with an
    ``input_signature``.
    ``any_sizes``: only the rank must match, as TF feeds a signature's graph tensors of any size (a Keras 3 model
    saved by ``tf.saved_model.save`` after a call on 2 examples has a (2, n) signature that serves any batch).
    """
    out: list[Any] = []

    def go(v, s) -> bool:
        if isinstance(s, TensorSpec):
            # a tf.Tensor has its dtype, as a JAX array does: TF casts NumPy values to a signature's dtype, not them
            tensor = not isinstance(v, (np.ndarray, np.generic, jax.Array)) and hasattr(v, "numpy")
            v = _as_input(v)
            if any_sizes and s.shape is not None:
                s = s._replace(shape=(None,) * len(s.shape))
            if specs_ok and isinstance(v, TensorSpec):
                ok = v.dtype == s.dtype and s.is_compatible_with_shape(
                    tuple(d if d is not None else -1 for d in (v.shape or ()))
                )
                out.append(v)
                return ok
            if s.dtype == object:  # a string tensor: NumPy array of bytes, as TF's .numpy() gives
                arr = dtypes.as_strings(v)
                if arr is None or not s.is_compatible_with_shape(tuple(arr.shape)):
                    return False
                out.append(arr)
                return True
            if isinstance(v, (np.ndarray, np.generic)) and cast_arrays and s.dtype is not None and not tensor:
                arr = _cast_numpy(v, s.dtype)
            elif isinstance(v, (np.ndarray, jax.Array, np.generic)):
                arr = v
            elif convert and isinstance(v, (bool, int, float, complex, list, tuple)) and s.dtype is not None:
                try:
                    arr = np.asarray(v)
                except Exception:
                    return False
                # Python numbers convert like TF: with an input_signature as tf.Variable.assign converts them, else
                # like a dtype hint (ints to ints and floats, floats only to floating types, bools only to bools)
                kinds = (_PYTHON_VALUE_INTO if cast_arrays else _PYTHON_VALUE_HINTED).get(s.dtype.kind, "")
                if arr.dtype.kind not in kinds:
                    return False
                arr = arr.astype(s.dtype)
            else:
                return False
            # only a JAX array stands for its 64-bit twin without x64 (a NumPy int32 array does not match an int64
            # trace: TF raises), and only once no trace has its own dtype (the pass that converts)
            if s.dtype is None or (
                np.dtype(arr.dtype) != s.dtype
                and not (convert and isinstance(arr, jax.Array) and _dtype_matches(np.dtype(arr.dtype), s.dtype))
            ):
                return False
            if not s.is_compatible_with_shape(tuple(arr.shape)):
                return False
            check_fits_32_bits(arr, f"input {s.name or len(out)}")
            # a NumPy scalar as a 0-d array: the lowerings take NumPy arrays as trace-time values (loop trip counts)
            out.append(np.asarray(arr) if isinstance(arr, np.generic) else arr)
            return True
        if isinstance(s, structure.TypeSpec):  # a RaggedTensor or SparseTensor: its components (composite.py)
            if specs_ok and isinstance(v, structure.TypeSpec):
                out.extend(composite.component_specs(v))
                return v.type_spec_class == s.type_spec_class and v.type_state == s.type_state
            parts = composite.to_components(v, s)
            return parts is not None and all(go(a, b) for a, b in zip(parts, composite.component_specs(s)))
        if isinstance(s, dict):
            if not isinstance(v, Mapping) or set(v) != set(s):
                return False
            return all(go(v[k], s[k]) for k in sorted(s))
        if isinstance(s, (list, tuple)):
            if not _same_sequence_type(v, s) or len(v) != len(s):
                return False
            return all(go(a, b) for a, b in zip(v, s))
        if isinstance(v, (np.ndarray, jax.Array)):
            return False
        try:  # TF's loader compares Python values with ==, so 1 matches a trace made with True (and 1.0)
            return bool(v == s)
        except (TypeError, ValueError):
            return False

    return out if go(value, spec) else None


def _cast_numpy(v: np.ndarray | np.generic, dtype: np.dtype) -> np.ndarray | np.generic:
    """A NumPy input of a signature or a function with an input_signature, converted as TF converts it: any
    number to any number (NumPy's cast: floats truncate, ints wrap, complex drops its imaginary part)."""
    numeric = "biufcV"
    if v.dtype == dtype or v.dtype.kind not in numeric or np.dtype(dtype).kind not in numeric:
        return v
    return (np.real(v) if v.dtype.kind == "c" and np.dtype(dtype).kind != "c" else v).astype(dtype)


def _same_sequence_type(value: Any, spec: list | tuple) -> bool:
    """TF's ``nest`` type check when a call is matched to a trace: a list for a list, a tuple (or a namedtuple)
    for a tuple, and for a namedtuple one of the same name and fields."""
    if hasattr(spec, "_fields"):
        same = hasattr(value, "_fields") and type(value).__name__ == type(spec).__name__
        return same and value._fields == spec._fields
    return isinstance(value, list if isinstance(spec, list) else tuple)


def _describe(value: Any) -> str:
    if isinstance(value, (np.ndarray, jax.Array)):
        return f"Tensor(shape={tuple(value.shape)}, dtype={np.dtype(value.dtype).name})"
    if isinstance(value, Variable):
        return f"Variable(shape={value.shape}, dtype={value.dtype.name})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_describe(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return repr(value)


# -- loading -------------------------------------------------------------------------------------------------
class _LoadContext:
    """Shared state while restoring one SavedModel: the object nodes, library, checkpoint, concrete functions."""

    def __init__(self, export_dir: str, meta_graph: meta_graph_pb2.MetaGraphDef, options: LoadOptions):
        from jaxsm.format.saved_model import SavedModelFiles

        self.export_dir = export_dir
        self.files = SavedModelFiles.of(export_dir)
        self.meta_graph = meta_graph
        self.options = options
        self.graph = meta_graph.object_graph_def
        self.library = Library(meta_graph.graph_def.library, meta_graph.meta_info_def.stripped_op_list)
        self.nodes: list[Any] = [None] * len(self.graph.nodes)
        self._concrete: dict[str, ConcreteFunction] = {}
        self._checked: set[str] = set()
        self._ops: dict[str, dict[str, tuple[int, str]]] = {}
        # the ops of every function exposed at load, together (check_all_ops), and those functions
        self._all_ops: tuple[dict[str, tuple[int, str]], set[str]] = ({}, set())
        self._graph_consts: dict[str, Any] | None = None
        # the Philox counters of stateful random kernels (jaxsm/graph/rng.py), shared by the functions
        self.rng_state: dict[str, Any] = {}
        self._rng_keys: dict[str, list[str]] = {}
        self.state_lock = threading.RLock()  # held by calls that update state (ConcreteFunction._state_lock)
        proto = self.files.proto_path
        stat = proto.stat() if proto is not None else None
        # identifies this SavedModel for jaxsm's trace cache (see _jit_keeping_host_outputs)
        self.fingerprint = f"{proto.resolve()}:{stat.st_size}:{stat.st_mtime_ns}" if stat else None

    def concrete(self, name: str) -> ConcreteFunction:
        if name not in self._concrete:
            proto = self.graph.concrete_functions.get(name)
            if proto is None:
                proto = saved_object_graph_pb2.SavedConcreteFunction()
            self._concrete[name] = ConcreteFunction(self, name, proto)
        return self._concrete[name]

    def ops_of(self, fname: str) -> dict[str, tuple[int, str]]:
        """The op types function ``fname`` and the functions it calls use (Library.scan_ops, kept)."""
        found = self._ops.get(fname)
        if found is None:
            found = self._ops[fname] = self.library.scan_ops([fname])
        return found

    def rng_keys(self, fname: str) -> list[str]:
        """The random-counter state keys function ``fname`` uses (seeding the counters on first use)."""
        keys = self._rng_keys.get(fname)
        if keys is None:
            counters = {}
            # (the load's scan of every function usually says no at once: no second walk of a big graph)
            found, covered = self._all_ops
            if not COUNTED_OPS.isdisjoint(found if fname in covered else self.ops_of(fname)):
                counters = initial_counters(self.library.reachable_nodes([fname], COUNTED_OPS))
            for k, v in counters.items():
                self.rng_state.setdefault(k, v)
            keys = self._rng_keys[fname] = list(counters)
        return keys

    def check_ops(self, fname: str) -> None:
        if fname not in self._checked:
            check_supported(self.ops_of(fname), f"function '{fname}'")
            self._checked.add(fname)

    def check_all_ops(self) -> None:
        """One UnsupportedOpError for every missing op reachable from exposed functions (principle 4)."""
        names = list(self._concrete)
        found = self.library.scan_ops(names)
        if any(_reads_tf_data(o) or o in PYTHON_CALLBACK_OPS for o in found):
            # tf-keras saves each adapted preprocessing layer's adapt_step, which pulls batches from a tf.data
            # iterator: TF loads it, and only calling it needs tf.data (check_ops raises then); so does a function
            # calling tf.py_function, whose Python code no SavedModel holds (TF's call fails too)
            names = [
                n
                for n in names
                if not any(_reads_tf_data(o) or o in PYTHON_CALLBACK_OPS for o in self.library.scan_ops([n]))
            ]
            found = self.library.scan_ops(names)
        self._all_ops = (found, set(names))
        if names:
            check_supported(found, f"the SavedModel at {self.export_dir}")
            self._checked.update(names)

    def capture(self, node_id: int) -> Any:
        """The value bound for ``bound_inputs`` entry ``node_id``."""
        obj = self.nodes[node_id]
        if isinstance(obj, Variable):
            return Resource(obj.key)
        if isinstance(obj, _Captured):
            return obj.value
        if isinstance(obj, RestoredResource):
            return obj.handle
        raise JaxsmError(
            f"bound input node {node_id} ({self.graph.nodes[node_id].WhichOneof('kind')}) cannot be captured"
        )

    def graph_constant(self, op_name: str) -> np.ndarray:
        if self._graph_consts is None:
            self._graph_consts = {n.name: n for n in self.meta_graph.graph_def.node}
        node = self._graph_consts.get(op_name)
        if node is None or "value" not in node.attr:
            raise JaxsmError(f"constant '{op_name}' is not a Const node of the SavedModel's graph")
        return tensor_from_proto(node.attr["value"].tensor)


def _reads_tf_data(op_type: str) -> bool:
    """Whether ``op_type`` pulls a batch from a tf.data iterator that the function is given (jaxsm has no tf.data;
    a function that builds its own dataset still fails the load, as every other missing op does)."""
    return op_type.startswith("IteratorGetNext")


@dataclass
class _Captured:
    """A constant or asset captured by functions: a host-side value."""

    value: Any


class Asset(_Captured):
    """A restored ``tf.saved_model.Asset``: ``asset_path`` is the file's absolute path in the SavedModel's
    assets directory (a string scalar, as TF gives it)."""

    @property
    def asset_path(self) -> np.ndarray:
        return self.value

    def __repr__(self) -> str:
        return f"<jaxsm.Asset {self.value.item().decode()!r}>"


class RestoredResource:
    """A restored non-variable resource (e.g. a lookup table), created and initialized at load by running its
    ``_create_resource`` and ``_initialize`` functions, as TF's loader does. ``state`` holds its arrays."""

    def __init__(self, key: str, device: str = ""):
        self.key = key
        self.device = device
        self.handle = Resource(key, "resource")
        self.state: dict[str, Any] = {}
        self._dense: DenseLayout | None = None

    def _restore(self, ctx: _LoadContext, children: dict[str, Any]) -> None:
        from jaxsm.graph.interpreter import Interpreter

        create, init = children.get("_create_resource"), children.get("_initialize")
        if not isinstance(create, RestoredFunction) or not create.concrete_functions:
            return
        cf = create.concrete_functions[0]
        self._dense = _dense_table_layout(ctx.library, cf.name)
        made = Interpreter(ctx.library).call(cf.name, cf._bind_captures())
        if made and isinstance(made[0], Resource):
            self.handle = Resource(self.key, made[0].kind, made[0].dtypes, made[0].key_shape)
        if isinstance(init, RestoredFunction) and init.concrete_functions:
            cf = init.concrete_functions[0]
            interp = Interpreter(ctx.library)
            try:
                with jax.ensure_compile_time_eval():
                    interp.call(cf.name, cf._bind_captures())
            except JaxsmError as e:  # left uninitialized: a function using it reports that, TF-style
                warnings.warn(f"jaxsm: could not initialize resource '{self.key}': {e}", stacklevel=2)
            self.state = dict(interp.state)

    def _restore_table(self, reader, key: str) -> None:
        """A mutable lookup table's contents, saved in the checkpoint as ``<key>-keys`` and ``<key>-values``
        (MutableHashTable's and DenseHashTable's saveables), as TF's restore function imports them."""
        from jaxsm.ops.tf1 import table_state

        if reader.has_tensor(key + "-keys") and reader.has_tensor(key + "-values"):
            keys, values = table_contents(
                reader.get_tensor(key + "-keys"), reader.get_tensor(key + "-values"), self._dense
            )
            self.state.update(table_state(self.handle, keys, values))

    def __repr__(self) -> str:
        return f"<RestoredResource {self.key}>"


DenseLayout = tuple[list[np.ndarray], tuple | None]


def table_contents(keys: Any, values: Any, dense: DenseLayout | None) -> tuple[np.ndarray, np.ndarray]:
    """A mutable table's checkpointed keys and values (its ``-keys``/``-values`` tensors) as its entries: a
    DenseHashTable (``dense``: its free keys and value shape) saves every bucket, the free ones holding a free key."""
    keys, values = np.asarray(keys), np.asarray(values)
    if dense is not None:
        free, value_shape = dense
        rows = keys.reshape(len(keys), -1)
        used = ~np.any([np.all(rows == np.reshape(f, -1), axis=1) for f in free], axis=0)
        keys, values = rows[used], values[used]
        if value_shape is not None:
            values = values.reshape((len(keys),) + tuple(value_shape))
    return keys, values


def dense_table_layout(node: Any, nodes: Mapping[str, Any]) -> DenseLayout | None:
    """The empty and deleted keys and the value shape of a MutableDenseHashTableV2 NodeDef (its Const inputs among
    ``nodes``, by name, and ``value_shape``); None for other nodes."""
    from jaxsm.format.tensor import shape_from_proto

    if node.op != "MutableDenseHashTableV2":
        return None
    consts = [nodes.get(ref.split(":")[0]) for ref in node.input[:2]]
    if not all(c is not None and c.op == "Const" for c in consts):
        return None
    return [tensor_from_proto(c.attr["value"].tensor) for c in consts], shape_from_proto(node.attr["value_shape"].shape)


def _dense_table_layout(library: Library, fname: str) -> DenseLayout | None:
    """The layout of the DenseHashTable that function ``fname`` creates; None for other resources."""
    fdef = library.functions.get(fname)
    nodes = {n.name: n for n in fdef.node_def} if fdef is not None else {}
    layouts = [dense_table_layout(n, nodes) for n in nodes.values()]
    return next((layout for layout in layouts if layout is not None), None)


def _read_variable(reader, ckpt_key: str, path: str, options: LoadOptions) -> jax.Array:
    value = np.asarray(reader.get_tensor(ckpt_key))
    try:
        check_fits_32_bits(value, f"variable '{path}'")
    except Int64RangeError as e:  # the variable may never be read: a warning, where an input is an error
        warnings.warn(f"jaxsm: {e}", stacklevel=4)
    return options.place(path, value)


def _checkpoint_keys(reader, saved_graph, others: dict[int, dict[str, str]] | None = None) -> dict[int, str]:
    """SavedObjectGraph node id -> checkpoint key of its VARIABLE_VALUE, walking both graphs from the root.
    ``others`` collects every other saved attribute per node ({name: checkpoint key}, e.g. a table's)."""
    if not reader.has_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"):
        return {}
    raw = reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    try:
        tog = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
            raw.item() if isinstance(raw, np.ndarray) else raw
        )
    except DecodeError as e:
        raise CorruptFileError(f"{reader.prefix}: cannot parse the checkpoint's object graph: {e}") from e
    keys: dict[int, str] = {}
    matched = {0: 0}  # saved node id -> checkpoint node id
    stack = [(0, 0)]
    while stack:
        sid, cid = stack.pop()
        for attr in tog.nodes[cid].attributes:
            if attr.name == "VARIABLE_VALUE":
                keys[sid] = attr.checkpoint_key
            elif others is not None:
                others.setdefault(sid, {})[attr.name] = attr.checkpoint_key
        ckpt_children = {c.local_name: c.node_id for c in tog.nodes[cid].children}
        for child in saved_graph.nodes[sid].children:
            if child.node_id in matched or child.local_name not in ckpt_children:
                continue
            matched[child.node_id] = ckpt_children[child.local_name]
            stack.append((child.node_id, ckpt_children[child.local_name]))
    # Optimizer slots (OptimizerV2, tf-keras' legacy optimizers, TF1 optimizers) are no one's children: the
    # optimizer's node names them by (original variable, slot name) in both graphs.
    for sid, cid in list(matched.items()):
        ckpt_slots = {
            (ref.original_variable_node_id, ref.slot_name): ref.slot_variable_node_id
            for ref in tog.nodes[cid].slot_variables
        }
        for ref in saved_graph.nodes[sid].slot_variables:
            slot_cid = ckpt_slots.get((matched.get(ref.original_variable_node_id), ref.slot_name))
            if slot_cid is None:
                continue
            for attr in tog.nodes[slot_cid].attributes:
                if attr.name == "VARIABLE_VALUE":
                    keys[ref.slot_variable_node_id] = attr.checkpoint_key
    return keys


def _object_paths(saved_graph) -> dict[int, str]:
    """Shortest object path ('model/dense/kernel') of every node, breadth first from the root. An optimizer's
    slot variable, no one's child, gets TF's checkpoint-style path 'w/.OPTIMIZER_SLOT/optimizer/m'."""
    paths = {0: ""}
    queue = [0]
    for nid in queue:
        for child in saved_graph.nodes[nid].children:
            if child.node_id not in paths:
                base = paths[nid]
                paths[child.node_id] = f"{base}/{child.local_name}" if base else child.local_name
                queue.append(child.node_id)
    for nid, node in enumerate(saved_graph.nodes):
        for ref in node.slot_variables:
            original, optimizer = paths.get(ref.original_variable_node_id), paths.get(nid)
            if ref.slot_variable_node_id not in paths and original is not None and optimizer is not None:
                paths[ref.slot_variable_node_id] = f"{original}/.OPTIMIZER_SLOT/{optimizer}/{ref.slot_name}"
    return paths


def _check_object_graph(ctx: _LoadContext) -> None:
    """Every node id the object graph names is one of its nodes, and every variable's dtype is a TF dtype
    (a corrupt saved_model.pb would otherwise index out of range, or wrap a negative id around)."""
    graph, where = ctx.graph, f"{ctx.files.proto_path}: the object graph"
    n = len(graph.nodes)

    def check(node_id: int, what: str) -> None:
        if not 0 <= node_id < n:
            raise CorruptFileError(f"{where}: {what} names node {node_id}, but there are {n} nodes (re-export it)")

    for nid, node in enumerate(graph.nodes):
        for c in node.children:
            check(c.node_id, f"child '{c.local_name}' of node {nid}")
        for ref in node.slot_variables:
            check(ref.original_variable_node_id, f"a slot variable of node {nid}")
            check(ref.slot_variable_node_id, f"a slot variable of node {nid}")
        kind = node.WhichOneof("kind")
        if kind == "variable":
            try:
                dtypes.to_numpy(node.variable.dtype)
            except KeyError:
                raise CorruptFileError(
                    f"{where}: variable node {nid} has dtype {dtypes.name(node.variable.dtype)}, not a variable's dtype"
                ) from None
        if kind == "asset" and not 0 <= node.asset.asset_file_def_index < len(ctx.meta_graph.asset_file_def):
            raise CorruptFileError(
                f"{where}: asset node {nid} names asset_file_def {node.asset.asset_file_def_index}, but there "
                f"are {len(ctx.meta_graph.asset_file_def)}"
            )
    for name, cf in graph.concrete_functions.items():
        for node_id in cf.bound_inputs:
            check(node_id, f"a bound input of concrete function '{name}'")


def _check_variable_entry(var: Variable, declared_dtype: int, dtype: int, shape: list[int], prefix: str) -> None:
    """The checkpoint's dtype and shape of ``var`` are the declared ones (TF's restore fails otherwise)."""
    declared = var._shape
    if dtypes.base_enum(dtype) != dtypes.base_enum(declared_dtype) or (
        declared is not None
        and (len(declared) != len(shape) or any(d is not None and d != s for d, s in zip(declared, shape)))
    ):
        raise VariableError(
            f"variable '{var.name}' (object path '{var.key}') is declared {dtypes.name(declared_dtype)} "
            f"{list(declared) if declared is not None else '<unknown rank>'} in the "
            f"object graph, but the checkpoint {prefix} holds {dtypes.name(dtype)} {shape}: the SavedModel is "
            "inconsistent (re-export it)"
        )


def load_object_graph(export_dir: str, meta_graph: meta_graph_pb2.MetaGraphDef, options: LoadOptions) -> Any:
    """Restore the object tree of a TF2 MetaGraph (called by :func:`jaxsm.load`)."""
    ctx = _LoadContext(export_dir, meta_graph, options)
    graph = ctx.graph
    _check_object_graph(ctx)
    paths = _object_paths(graph)

    reader = None
    restore = options.load_variables and not options.experimental_skip_checkpoint
    if restore and not ctx.files.has_variables and not options.allow_partial_checkpoint:
        if any(n.WhichOneof("kind") == "variable" for n in graph.nodes):  # TF's loader fails here too
            raise IncompleteSavedModelError(
                f"{ctx.files.variables_index} is missing, but the SavedModel has variables: the variables/ "
                "directory is incomplete (pass LoadOptions(allow_partial_checkpoint=True) to load without values)"
            )
    if restore and ctx.files.has_variables:
        from jaxsm.format.checkpoint import load_checkpoint

        reader = load_checkpoint(ctx.files.variables_prefix, verify_checksums=options.verify_checksums)
    saved_attributes: dict[int, dict[str, str]] = {}
    ckpt_keys = _checkpoint_keys(reader, graph, saved_attributes) if reader is not None else {}

    # First pass: create every object (children are attached in the second pass; cycles are legal).
    for nid, node in enumerate(graph.nodes):
        kind = node.WhichOneof("kind")
        if kind == "user_object":
            ident = node.user_object.identifier
            if ident == "trackable_list_wrapper":
                ctx.nodes[nid] = []
            elif ident == "trackable_dict_wrapper":
                ctx.nodes[nid] = {}
            elif ident == "trackable_tuple_wrapper":
                ctx.nodes[nid] = []
            elif ident == "signature_map":
                ctx.nodes[nid] = None  # filled in below
            else:
                ctx.nodes[nid] = UserObject(ident)
        elif kind == "variable":
            v = node.variable
            key = paths.get(nid) or v.name or f"variable_{nid}"
            name = v.name or key
            var = Variable(
                key,
                name if ":" in name else name + ":0",  # TF's restored variables are named like tensors
                None if v.shape.unknown_rank else tuple(d.size if d.size >= 0 else None for d in v.shape.dim),
                dtypes.to_numpy(v.dtype),
                v.trainable,
                v.synchronization,
                v.aggregation,
            )
            if v.dtype in (dtypes.DT.DT_INT64, dtypes.DT.DT_DOUBLE):
                _warn_x64_once()
            ctx.nodes[nid] = var
        elif kind == "asset":
            fname = meta_graph.asset_file_def[node.asset.asset_file_def_index].filename
            ctx.nodes[nid] = Asset(np.asarray(str(ctx.files.asset_path(fname)).encode(), dtype=object))
        elif kind == "constant":
            ctx.nodes[nid] = _Captured(ctx.graph_constant(node.constant.operation))
        elif kind == "resource":
            ctx.nodes[nid] = RestoredResource(paths.get(nid) or f"resource_{nid}", node.resource.device)
        elif kind in ("function", "bare_concrete_function", "captured_tensor"):
            ctx.nodes[nid] = None  # below, once all captures exist
        else:
            ctx.nodes[nid] = UserObject(kind or "unknown")

    for nid, node in enumerate(graph.nodes):
        kind = node.WhichOneof("kind")
        if kind == "function":
            ctx.nodes[nid] = RestoredFunction(ctx, node.function)
        elif kind == "bare_concrete_function":
            b = node.bare_concrete_function
            cf = ctx.concrete(b.concrete_function_name)
            cf._arg_keywords = list(b.argument_keywords) or None
            cf._num_positional = b.allowed_positional_arguments
            ctx.nodes[nid] = cf
        elif kind == "captured_tensor":
            ctx.nodes[nid] = _Captured(None)

    # Variable values.
    entry_dtypes = reader.get_variable_to_dtype_enum_map() if reader is not None else {}
    entry_shapes = reader.get_variable_to_shape_map() if reader is not None else {}
    for nid, obj in enumerate(ctx.nodes):
        if isinstance(obj, Variable):
            key = ckpt_keys.get(nid)
            if reader is not None and key is not None and reader.has_tensor(key):
                declared_dtype = graph.nodes[nid].variable.dtype
                _check_variable_entry(
                    obj, declared_dtype, entry_dtypes[key], entry_shapes[key], ctx.files.variables_prefix
                )
                obj._pending = functools.partial(_read_variable, reader, key, obj.key, options)
                if options.param_dtype is not None and obj._dtype.kind == "f":
                    obj._dtype = np.dtype(options.param_dtype)
            elif reader is not None and not options.allow_partial_checkpoint:
                raise VariableError(
                    f"variable '{obj.name}' (object path '{obj.key}') has no value in the checkpoint "
                    f"{ctx.files.variables_prefix}; pass LoadOptions(allow_partial_checkpoint=True) to load anyway"
                )

    # Children, signatures.
    for nid, node in enumerate(graph.nodes):
        obj = ctx.nodes[nid]
        if node.WhichOneof("kind") == "user_object" and node.user_object.identifier == "signature_map":
            sigs = {}
            for child in node.children:
                cf = ctx.nodes[child.node_id]
                if isinstance(cf, ConcreteFunction):
                    cf._is_signature = True
                    sigs[child.local_name] = cf
            ctx.nodes[nid] = Signatures(sigs)
    for nid, node in enumerate(graph.nodes):
        obj = ctx.nodes[nid]
        children = [(c.local_name, ctx.nodes[c.node_id]) for c in node.children]
        if isinstance(obj, UserObject):
            for name, child in children:
                obj._add_child(name, child)
        elif isinstance(obj, list):
            indexed = sorted((int(n), c) for n, c in children if n.isdigit())
            obj.extend(c for _, c in indexed)
        elif isinstance(obj, dict):
            obj.update(children)
    for nid, node in enumerate(graph.nodes):
        if node.WhichOneof("kind") == "user_object" and node.user_object.identifier == "trackable_tuple_wrapper":
            ctx.nodes[nid] = tuple(ctx.nodes[nid])  # tuples are immutable: rebind parents' references
            for pid, parent in enumerate(graph.nodes):
                for c in parent.children:
                    if c.node_id == nid and isinstance(ctx.nodes[pid], UserObject):
                        ctx.nodes[pid]._add_child(c.local_name, ctx.nodes[nid])

    for nid, node in enumerate(graph.nodes):
        if isinstance(ctx.nodes[nid], RestoredResource):
            ctx.nodes[nid]._restore(ctx, {c.local_name: ctx.nodes[c.node_id] for c in node.children})
            for key in saved_attributes.get(nid, {}).values():
                ctx.nodes[nid]._restore_table(reader, key)

    _attach_custom_gradients(ctx)
    root = ctx.nodes[0]
    if isinstance(root, UserObject) and "signatures" not in root._jaxsm_children:
        root._add_child("signatures", Signatures({}))
    ctx.check_all_ops()
    if isinstance(root, UserObject):
        root._jaxsm_context = ctx
        info = meta_graph.meta_info_def  # TF's loader sets these on the root too
        for name in ("tensorflow_version", "tensorflow_git_version"):
            if name not in root._jaxsm_children:
                object.__setattr__(root, name, getattr(info, name))
    return root


def _attach_custom_gradients(ctx: _LoadContext) -> None:
    """Give the library the saved gradients of tf.custom_gradient ops (jaxsm/graph/custom_gradient.py)."""
    from jaxsm.graph.custom_gradient import SavedGradient, _node_and_index

    for reg in ctx.meta_graph.graph_def.library.registered_gradients:
        saved = ctx.graph.concrete_functions.get(reg.gradient_func)
        if saved is None or reg.gradient_func not in ctx.library.functions:
            continue
        outputs = structure.decode(saved.output_signature) if saved.HasField("output_signature") else None
        if not isinstance(outputs, list | tuple) or not all(o is None or isinstance(o, TensorSpec) for o in outputs):
            continue
        bound = []
        for nid in saved.bound_inputs:
            node = ctx.graph.nodes[nid]
            if node.WhichOneof("kind") == "captured_tensor":
                bound.append(("tensor", node.captured_tensor.concrete_function, node.captured_tensor.name))
            else:
                bound.append(("value", ctx.capture(nid)))
        grad = SavedGradient(reg.gradient_func, tuple(o is not None for o in outputs), tuple(bound))
        ctx.library.custom_gradients[reg.registered_op_type] = grad
        for b in bound:
            if b[0] == "tensor":
                ctx.library.kept_tensors.setdefault(b[1], set()).add(_node_and_index(b[2])[0])


def tree_repr(obj: Any, name: str = "", indent: int = 0, seen: set[int] | None = None, limit: int = 400) -> str:
    """A readable multi-line tree of a restored object (what ``repr`` and ``jaxsm show`` print)."""
    seen = set() if seen is None else seen
    lines: list[str] = []

    def line(text: str, depth: int) -> None:
        if len(lines) < limit:
            lines.append("  " * depth + text)

    def visit(o: Any, label: str, depth: int) -> None:
        prefix = f"{label}: " if label else ""
        if isinstance(o, Variable):
            line(f"{prefix}Variable(shape={o.shape}, dtype={o.dtype.name}, trainable={o.trainable})", depth)
            return
        if isinstance(o, (ConcreteFunction, RestoredFunction, Signatures, RestoredResource)):
            line(f"{prefix}{o!r}", depth)
            return
        if id(o) in seen and isinstance(o, (UserObject, list, dict, tuple)):
            line(f"{prefix}<see above>", depth)
            return
        seen.add(id(o))
        if isinstance(o, UserObject):
            line(f"{prefix}{o._jaxsm_identifier}", depth)
            for k in sorted(o._jaxsm_children):
                visit(o._jaxsm_children[k], k, depth + 1)
        elif isinstance(o, (list, tuple)):
            line(f"{prefix}{type(o).__name__}[{len(o)}]", depth)
            for i, v in enumerate(o):
                visit(v, str(i), depth + 1)
        elif isinstance(o, dict):
            line(f"{prefix}dict[{len(o)}]", depth)
            for k in sorted(o):
                visit(o[k], str(k), depth + 1)
        elif isinstance(o, _Captured):
            line(f"{prefix}{o.value!r}", depth)
        else:
            line(f"{prefix}{o!r}", depth)

    visit(obj, name, indent)
    return "\n".join(lines)


def load(
    export_dir: str | os.PathLike, tags: str | Sequence[str] | None = None, options: LoadOptions | None = None
) -> Any:
    """Load a SavedModel without TensorFlow, like ``tf.saved_model.load``.

    Arguments:
      export_dir: the SavedModel directory.
      tags: the MetaGraph's tag-set (a string or a list); optional when there is a single MetaGraph.
      options: a :class:`LoadOptions`.

    Returns:
      The restored root object: attributes, variables (:class:`Variable`), restored functions and
      ``.signatures``. TF1 SavedModels (no object graph) return an object with ``.signatures``, ``.prune``,
      ``.variables``, ``.graph``, ``.restore`` and ``.initializer``, as TF's ``load_v1_in_v2`` does.
    """
    from jaxsm.format.saved_model import load_meta_graph

    options = options or LoadOptions()
    export_dir = os.fsdecode(export_dir)  # bytes paths too (non-UTF-8 names survive as surrogates)
    with gc_paused():
        meta_graph = load_meta_graph(export_dir, tags)
        if len(meta_graph.object_graph_def.nodes) == 0:
            from jaxsm import tf1

            return tf1.load_v1(export_dir, meta_graph, options)
        return load_object_graph(export_dir, meta_graph, options)
