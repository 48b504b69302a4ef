"""TF's XLA ops (tf2xla's ``Xla*``): what jax2tf emits with ``native_serialization=False``.

Their attrs carry serialized ``xla_data.proto`` messages (dimension numbers), decoded here by a small protobuf
wire reader, and nested TF functions (reducers, comparators, update computations). Generic computations go to
``lax`` as Python callables that run the TF function through the interpreter; where ``lax`` offers only fixed
reductions (scatter, select-and-scatter, sort) the function is traced once and matched against the common ones.
Gathers and scatters keep XLA's own index rules (gather clamps start indices, scatter drops out-of-range
updates), which is what TF's kernels for these ops do: they are compiled by XLA.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax._src.lax import windowed_reductions

from jaxsm import dtypes
from jaxsm.errors import JaxsmError
from jaxsm.ops import control_flow
from jaxsm.ops.registry import op, precision

# -- protobuf wire format -----------------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _raw_bytes(value: bytes | str) -> bytes:
    """A bytes attr as bytes: node.py decodes ones that happen to be UTF-8, and encoding gives them back."""
    return value.encode() if isinstance(value, str) else value


def _proto_ints(buf: bytes | str) -> dict[int, list[int]]:
    """Integer fields of a serialized message: field number -> values (packed or not, in order).
    Only varint fields are kept; the dimension-number messages have no others."""
    buf = _raw_bytes(buf)
    fields: dict[int, list[int]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            fields.setdefault(number, []).append(value)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            end = pos + size
            while pos < end:
                value, pos = _varint(buf, pos)
                fields.setdefault(number, []).append(value)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return fields


def _dims(ctx, attr: str, names: dict[str, int]) -> dict[str, list[int]]:
    """Decode the ``attr`` message into {name: repeated ints} using xla_data.proto's field ``names``."""
    try:
        raw = _proto_ints(ctx.attr(attr, b""))
    except (IndexError, ValueError) as e:
        raise ctx.error(f"cannot decode attribute '{attr}': {e}") from None
    return {name: raw.get(number, []) for name, number in names.items()}


# Field numbers from xla/xla_data.proto.
_CONV_DIMS = {
    "input_batch": 7,
    "input_feature": 8,
    "input_spatial": 11,
    "kernel_input_feature": 3,
    "kernel_output_feature": 4,
    "kernel_spatial": 6,
    "output_batch": 9,
    "output_feature": 10,
    "output_spatial": 12,
}
_DOT_DIMS = {"lhs_contracting": 1, "rhs_contracting": 2, "lhs_batch": 3, "rhs_batch": 4}
_GATHER_DIMS = {
    "offset_dims": 1,
    "collapsed_slice_dims": 2,
    "start_index_map": 3,
    "index_vector_dim": 4,
    "operand_batching_dims": 5,
    "start_indices_batching_dims": 6,
}
_SCATTER_DIMS = {
    "update_window_dims": 1,
    "inserted_window_dims": 2,
    "scatter_dims_to_operand_dims": 3,
    "index_vector_dim": 4,
    "input_batching_dims": 5,
    "scatter_indices_batching_dims": 6,
}


def _one(values: list[int]) -> int:
    """A singular int field: proto3 leaves out zeros, so a missing one is 0."""
    return values[-1] if values else 0


def _ints(x) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(x).reshape(-1))


def _pairs(x) -> list[tuple[int, int]]:
    return [(int(lo), int(hi)) for lo, hi in np.asarray(x).reshape(-1, 2)]


def _preferred(ctx, x) -> np.dtype | None:
    out = ctx.dtype("preferred_element_type", None)
    return None if out is None or out == np.dtype(x.dtype) else out


# -- nested computations ------------------------------------------------------------------------------------


def _function(ctx, attr: str):
    """The TF function in attr ``attr`` as a Python callable on (flattened) arrays returning a list."""
    fname = ctx.attr(attr).name
    return lambda *args: ctx.call(fname, list(args))


def _binary_kind(ctx, attr: str, *dtypes) -> str:
    """Which lax primitive the scalar function in ``attr`` applies to its first two arguments ('add', 'max',
    'lt', ... or 'second' for returning the second one); raises when it does anything else. ``dtypes`` has
    one dtype per argument pair, as XLA passes (lhs0, rhs0, lhs1, rhs1, ...) to comparators."""
    fn = _function(ctx, attr)
    specs = [jax.ShapeDtypeStruct((), d) for d in dtypes for _ in range(2)]
    jaxpr = jax.make_jaxpr(lambda *args: fn(*args)[0])(*specs).jaxpr
    a, b = jaxpr.invars[:2]
    out = jaxpr.outvars[0]
    eqns = [e for e in jaxpr.eqns if e.primitive.name not in ("convert_element_type", "copy", "copy_p")]
    if len(eqns) == 1 and eqns[0].primitive.name == "custom_jvp_call":  # (Maximum/Minimum carry TF's gradient)
        inner = eqns[0].params["call_jaxpr"].jaxpr
        if len(inner.eqns) == 1 and list(eqns[0].invars) == [a, b] and eqns[0].outvars[0] is out:
            return inner.eqns[0].primitive.name
    if not eqns and out is b:
        return "second"
    if len(eqns) == 1 and list(eqns[0].invars) == [a, b] and eqns[0].outvars[0] is out:
        return eqns[0].primitive.name
    raise ctx.error(f"function '{ctx.attr(attr).name}' in '{attr}' is not a single add/mul/min/max/compare")


# -- ops ----------------------------------------------------------------------------------------------------


@op("XlaConv", "XlaConvV2", static=(2, 3, 4, 5, 6))
def xla_conv(ctx, lhs, rhs, strides, padding, lhs_dilation, rhs_dilation, feature_group_count):
    d = _dims(ctx, "dimension_numbers", _CONV_DIMS)
    dn = lax.ConvDimensionNumbers(
        lhs_spec=(_one(d["input_batch"]), _one(d["input_feature"]), *d["input_spatial"]),
        rhs_spec=(_one(d["kernel_output_feature"]), _one(d["kernel_input_feature"]), *d["kernel_spatial"]),
        out_spec=(_one(d["output_batch"]), _one(d["output_feature"]), *d["output_spatial"]),
    )
    return lax.conv_general_dilated(
        lhs,
        rhs,
        _ints(strides),
        _pairs(padding),
        _ints(lhs_dilation),
        _ints(rhs_dilation),
        dimension_numbers=dn,
        feature_group_count=int(feature_group_count),
        batch_group_count=int(ctx.attr("batch_group_count", 1)),
        preferred_element_type=_preferred(ctx, lhs),
    )


@op("XlaDot", "XlaDotV2")
def xla_dot(ctx, lhs, rhs):
    d = _dims(ctx, "dimension_numbers", _DOT_DIMS)
    dims = ((d["lhs_contracting"], d["rhs_contracting"]), (d["lhs_batch"], d["rhs_batch"]))
    return lax.dot_general(lhs, rhs, dims, preferred_element_type=_preferred(ctx, lhs))


def _clamped_starts(starts, rank: int) -> list:
    """XLA clamps start indices into the operand, negative ones to 0; lax would count those from the end."""
    starts = jnp.maximum(jnp.asarray(starts), 0)
    return [starts[i] for i in range(rank)]


@op("XlaDynamicSlice", static=(2,))
def xla_dynamic_slice(ctx, x, starts, sizes):
    return lax.dynamic_slice(x, _clamped_starts(starts, np.ndim(x)), _ints(sizes))


@op("XlaDynamicUpdateSlice")
def xla_dynamic_update_slice(ctx, x, update, starts):
    return lax.dynamic_update_slice(x, jnp.asarray(update, x.dtype), _clamped_starts(starts, np.ndim(x)))


@op("XlaPad", static=(2, 3, 4))
def xla_pad(ctx, x, value, low, high, interior):
    config = list(zip(_ints(low), _ints(high), _ints(interior), strict=True))
    return lax.pad(x, jnp.asarray(value, x.dtype), config)


def _index_vector_last(indices, dim: int):
    """lax wants the index vector in the last dimension; XLA allows any (or one past the last: scalar ids)."""
    if dim == np.ndim(indices):
        return jnp.expand_dims(indices, -1)
    return jnp.moveaxis(indices, dim, -1)


@op("XlaGather", static=(2,))
def xla_gather(ctx, operand, indices, slice_sizes):
    d = _dims(ctx, "dimension_numbers", _GATHER_DIMS)
    dn = lax.GatherDimensionNumbers(
        offset_dims=tuple(d["offset_dims"]),
        collapsed_slice_dims=tuple(d["collapsed_slice_dims"]),
        start_index_map=tuple(d["start_index_map"]),
        operand_batching_dims=tuple(d["operand_batching_dims"]),
        start_indices_batching_dims=tuple(d["start_indices_batching_dims"]),
    )
    ivd = _one(d["index_vector_dim"])
    return lax.gather(
        operand,
        _index_vector_last(indices, ivd),
        dn,
        _ints(slice_sizes),
        indices_are_sorted=bool(ctx.attr("indices_are_sorted", False)),
        mode=lax.GatherScatterMode.CLIP,
    )


_SCATTERS = {"add": lax.scatter_add, "mul": lax.scatter_mul, "max": lax.scatter_max, "min": lax.scatter_min}


@op("XlaScatter")
def xla_scatter(ctx, operand, indices, updates):
    d = _dims(ctx, "dimension_numbers", _SCATTER_DIMS)
    dn = lax.ScatterDimensionNumbers(
        update_window_dims=tuple(d["update_window_dims"]),
        inserted_window_dims=tuple(d["inserted_window_dims"]),
        scatter_dims_to_operand_dims=tuple(d["scatter_dims_to_operand_dims"]),
        operand_batching_dims=tuple(d["input_batching_dims"]),
        scatter_indices_batching_dims=tuple(d["scatter_indices_batching_dims"]),
    )
    kind = _binary_kind(ctx, "update_computation", operand.dtype)
    scatter = lax.scatter if kind == "second" else _SCATTERS.get(kind)
    if scatter is None:
        raise ctx.error(f"update_computation '{kind}' is not supported (add, mul, min, max or replace)")
    ivd = _one(d["index_vector_dim"])
    return scatter(
        operand,
        _index_vector_last(indices, ivd),
        updates,
        dn,
        indices_are_sorted=bool(ctx.attr("indices_are_sorted", False)),
        mode=lax.GatherScatterMode.FILL_OR_DROP,
    )


_WINDOW_MONOIDS = {"add": lax.add, "max": lax.max, "min": lax.min, "mul": lax.mul}


def _fold_windows(fn, x, init, window, strides, padding, base_dilation, window_dilation):
    """reduce_window for any reducer: pad with the init value (XLA's padding), take one strided slice per
    window offset and fold them with ``fn`` applied elementwise."""
    config = [(lo, hi, d - 1) for (lo, hi), d in zip(padding, base_dilation, strict=True)]
    xp = lax.pad(x, init, config)
    out = [
        (n - (w - 1) * d - 1) // s + 1 for n, w, d, s in zip(xp.shape, window, window_dilation, strides, strict=True)
    ]
    acc = jnp.broadcast_to(init, out)
    for offset in np.ndindex(*window):
        start = [k * d for k, d in zip(offset, window_dilation, strict=True)]
        limit = [b + (n - 1) * s + 1 for b, n, s in zip(start, out, strides, strict=True)]
        acc = fn(acc, lax.slice(xp, start, limit, strides))[0]
    return acc


@op("XlaReduceWindow", static=(2, 3, 4, 5, 6))
def xla_reduce_window(ctx, x, init, window, strides, base_dilation, window_dilation, padding):
    args = (_ints(window), _ints(strides), _pairs(padding), _ints(base_dilation), _ints(window_dilation))
    init = jnp.asarray(init, x.dtype)
    try:
        monoid = _WINDOW_MONOIDS.get(_binary_kind(ctx, "computation", x.dtype))
    except JaxsmError:
        monoid = None
    if monoid is not None:
        return lax.reduce_window(x, init, monoid, *args)
    return _fold_windows(_function(ctx, "computation"), x, init, *args)


@op("XlaSelectAndScatter", static=(1, 2, 3))
def xla_select_and_scatter(ctx, operand, window, strides, padding, source, init):
    select = _binary_kind(ctx, "select", operand.dtype)
    scatter = _binary_kind(ctx, "scatter", operand.dtype)
    prims = {"ge": lax.ge_p, "le": lax.le_p}
    if select not in prims or scatter != "add":
        raise ctx.error(f"only select ge/le with scatter add is supported, got select {select}, scatter {scatter}")
    out = windowed_reductions._select_and_scatter_add(
        source, operand, prims[select], _ints(window), _ints(strides), _pairs(padding)
    )
    return out + jnp.asarray(init, out.dtype)


@op("XlaVariadicReduceV2", "XlaVariadicReduce")
def xla_variadic_reduce(ctx, *args):
    n = len(args) // 2
    inputs, inits = list(args[:n]), [jnp.asarray(v, x.dtype) for v, x in zip(args[n:], args[:n], strict=True)]
    fn = _function(ctx, "reducer")
    dims = tuple(int(d) for d in ctx.attr("dimensions_to_reduce"))
    # jit for the same reason as in XlaReduceWindow.
    out = jax.jit(lambda xs, inits: lax.reduce(xs, inits, lambda acc, v: tuple(fn(*acc, *v)), dims))(inputs, inits)
    return list(out)


@op("XlaReduce")
def xla_reduce(ctx, x, init):
    return xla_variadic_reduce(ctx, x, init)[0]


@op("XlaVariadicSort")
def xla_variadic_sort(ctx, *args):
    *inputs, dimension = args
    dim = int(ctx.static(dimension, "dimension"))
    kind = _binary_kind(ctx, "comparator", *(x.dtype for x in inputs))
    stable = bool(ctx.attr("is_stable", False))
    if kind == "lt":
        return list(lax.sort(list(inputs), dimension=dim, is_stable=stable, num_keys=1))
    if kind == "gt":
        # A stable descending sort: reverse, sort ascending (ties keep the reversed order), reverse back.
        flipped = [jnp.flip(x, dim) for x in inputs]
        return [jnp.flip(x, dim) for x in lax.sort(flipped, dimension=dim, is_stable=True, num_keys=1)]
    raise ctx.error(f"comparator '{kind}' of the first operand pair is not supported (lt or gt)")


# The algorithm input uses TF's Algorithm enum (rng_alg.h), not XLA's RandomAlgorithm.
_RNG_ALGS = {
    1: lax.RandomAlgorithm.RNG_PHILOX,
    2: lax.RandomAlgorithm.RNG_THREE_FRY,
    3: lax.RandomAlgorithm.RNG_DEFAULT,
}


@op("XlaRngBitGenerator", static=(0, 2))
def xla_rng_bit_generator(ctx, algorithm, state, shape):
    dtype = ctx.dtype("dtype", np.dtype(np.uint64))
    unsigned = np.dtype(f"uint{dtype.itemsize * 8}")
    # lax takes the u64 state as uint32 words (low word first), as XLA lays it out in memory.
    words = lax.bitcast_convert_type(jnp.asarray(state, np.uint64), np.uint32).reshape(-1)
    alg = _RNG_ALGS.get(int(algorithm))
    if alg is None:
        raise ctx.error(f"unknown RNG algorithm {int(algorithm)}")
    new_words, bits = lax.rng_bit_generator(words, _ints(shape), unsigned, alg)
    new_state = lax.bitcast_convert_type(new_words.reshape(-1, 2), np.uint64)
    return new_state, lax.bitcast_convert_type(bits, dtype)


@op("XlaSort")
def xla_sort(ctx, x):
    return lax.sort(x, dimension=-1)


@op("XlaKeyValueSort")
def xla_key_value_sort(ctx, keys, values):
    return tuple(lax.sort((keys, values), dimension=-1, num_keys=1))


@op("XlaCallModule")
def xla_call_module(ctx, *args):
    """Run the serialized StableHLO in ``module`` (jax2tf native serialization) as a jax.export.Exported."""
    from jax import export, tree_util

    if ctx.attr("dim_args_spec", []) or any(d is None for s in ctx.attr("Sout", []) for d in (s or (None,))):
        raise ctx.error("shape-polymorphic modules (symbolic dimensions) are not supported")
    if ctx.attr("has_token_input_output", False) or ctx.attr("function_list", []):
        raise ctx.error("modules with tokens or called TF functions (host callbacks) are not supported")
    platforms = tuple(p.lower() for p in ctx.attr("platforms", [])) or ("cpu",)
    out_dtypes = [dtypes.to_numpy(t) for t in ctx.attr("Tout")]
    out_avals = tuple(jax.core.ShapedArray(tuple(s), d) for s, d in zip(ctx.attr("Sout"), out_dtypes, strict=True))
    in_avals = tuple(jax.core.ShapedArray(np.shape(a), np.dtype(a.dtype)) for a in args)
    exported = export.Exported(
        fun_name=ctx.node.name,
        in_tree=tree_util.tree_structure((tuple(in_avals), {})),
        in_avals=in_avals,
        out_tree=tree_util.tree_structure(tuple(out_avals)),
        out_avals=out_avals,
        _has_named_shardings=False,
        _in_named_shardings=(None,) * len(in_avals),
        _out_named_shardings=(None,) * len(out_avals),
        in_shardings_hlo=(None,) * len(in_avals),
        out_shardings_hlo=(None,) * len(out_avals),
        nr_devices=1,
        platforms=platforms,
        ordered_effects=(),
        unordered_effects=(),
        disabled_safety_checks=(),
        mlir_module_serialized=_raw_bytes(ctx.attr("module")),
        calling_convention_version=int(ctx.attr("version")),
        module_kept_var_idx=tuple(range(len(in_avals))),
        uses_global_constants=len(platforms) > 1,
        _get_vjp=None,
    )
    return list(exported.call(*args))


# -- sharding annotations, barriers, precision --------------------------------------------------------------


@op("XlaSharding")
def xla_sharding(ctx, x):
    return x


def _tile_count(ctx, attr: str) -> int:
    """How many devices an OpSharding (xla_data.proto: tile_assignment_dimensions = 3, replicate_on_last_tile_dim
    = 5, last_tile_dims = 6) splits a tensor's data over; trailing subgroup (replicated/manual) dims do not
    count. 1 for replicated or maximal shardings."""
    fields = _proto_ints(ctx.attr(attr, b""))
    tiles = fields.get(3, [])
    subgroups = len(fields.get(6, [])) + (1 if _one(fields.get(5, [])) else 0)
    return int(np.prod(tiles[: len(tiles) - subgroups]))


@op("XlaSpmdFullToShardShape", "XlaSpmdShardToFullShape")
def xla_spmd_shape(ctx, x):
    """On one device the shard is the whole tensor; a sharding over several devices cannot run here."""
    if ctx.attr("full_shape", None) is not None and tuple(ctx.attr("full_shape")) != tuple(np.shape(x)):
        raise ctx.error(f"shard shape {np.shape(x)} differs from full_shape {tuple(ctx.attr('full_shape'))}")
    if _tile_count(ctx, "manual_sharding") > 1:
        raise ctx.error("the manual sharding splits the tensor over several devices; jaxsm runs on one")
    return x


@op("XlaOptimizationBarrier")
def xla_optimization_barrier(ctx, *xs):
    return list(lax.optimization_barrier(tuple(jnp.asarray(x) for x in xs)))


@op("XlaReducePrecision")
def xla_reduce_precision(ctx, x):
    return lax.reduce_precision(x, int(ctx.attr("exponent_bits")), int(ctx.attr("mantissa_bits")))


@op("XlaEinsum")
def xla_einsum(ctx, a, b):
    return jnp.einsum(ctx.attr("equation"), a, b, precision=precision())


# -- control flow -------------------------------------------------------------------------------------------


@op("XlaIf", stateful=True)
def xla_if(ctx, cond, *args):
    """TF's If under another name (then_branch/else_branch attrs alike)."""
    return control_flow.if_(ctx, cond, *args)


@op("XlaWhile", stateful=True)
def xla_while(ctx, *args):
    """TF's While under another name (cond/body attrs alike)."""
    return control_flow.while_(ctx, *args)


# -- linear algebra -----------------------------------------------------------------------------------------


@op("XlaSvd")
def xla_svd(ctx, a):
    """(s, u, v): full u and v, ``a = u @ diag(s) @ adjoint(v)[:k]``, s descending. XLA computes it by one-sided
    Jacobi (max_iter, epsilon); jaxsm by the backend's SVD, so vectors may differ in sign (see gaps.py)."""
    u, s, vh = jnp.linalg.svd(jnp.asarray(a), full_matrices=True)
    return s.astype(jnp.result_type(a)), u, jnp.conj(jnp.swapaxes(vh, -1, -2))


@op("XlaSelfAdjointEig")
def xla_self_adjoint_eig(ctx, a):
    """(w ascending, v) from the ``lower`` (or upper) triangle; Jacobi in XLA, so signs may differ."""
    v, w = lax.linalg.eigh(jnp.asarray(a), lower=bool(ctx.attr("lower", True)), symmetrize_input=False)
    return w.astype(jnp.result_type(a)), v


# -- dynamic dimensions, tiling -----------------------------------------------------------------------------


@op("XlaSetDynamicDimensionSize", static=(1, 2))
def xla_set_dynamic_dimension_size(ctx, x, dim_index, size):
    """The first ``size`` entries of dimension ``dim_index``: what every consumer (and the function's output)
    sees of an XLA dynamic dimension. ``size`` must be known at trace time (a data-dependent shape)."""
    dim, n = int(dim_index), int(size)
    if not 0 <= dim < np.ndim(x) or not 0 <= n <= np.shape(x)[dim]:
        raise ctx.error(f"dimension {dim} of shape {np.shape(x)} cannot have dynamic size {n}")
    return lax.slice_in_dim(x, 0, n, axis=dim)


@op("XlaRemoveDynamicDimensionSize")
def xla_remove_dynamic_dimension_size(ctx, x, dim_index):
    """Identity: jaxsm's dimensions are static (the padding XLA would expose again is gone, see gaps.py)."""
    return x


def _nd_paddings(ctx, rank: int) -> list[int]:
    paddings = [int(p) for p in ctx.attr("paddings", [])] or [0] * rank
    if len(paddings) != rank or min(paddings) < 0:
        raise ctx.error(f"paddings {paddings} must have one non-negative entry per dimension ({rank})")
    return paddings


@op("XlaSplitND")
def xla_split_nd(ctx, x):
    """Pad the end of each dimension, then cut into num_splits[d] equal tiles per dimension, row-major
    (tensorflow/core/tpu/kernels/sharding_util_ops.cc)."""
    x = jnp.asarray(x)
    splits = [int(n) for n in ctx.attr("num_splits")]
    paddings = _nd_paddings(ctx, x.ndim)
    if len(splits) != x.ndim or any((d + p) % n for d, p, n in zip(x.shape, paddings, splits, strict=True)):
        raise ctx.error(f"shape {x.shape} padded by {paddings} is not evenly divisible by num_splits {splits}")
    x = jnp.pad(x, [(0, p) for p in paddings])
    tile = [d // n for d, n in zip(x.shape, splits, strict=True)]
    return [
        lax.slice(x, [i * t for i, t in zip(idx, tile)], [(i + 1) * t for i, t in zip(idx, tile)])
        for idx in np.ndindex(*splits)
    ]


@op("XlaConcatND")
def xla_concat_nd(ctx, *tiles):
    """The inverse of XlaSplitND: tiles in row-major order merged, then ``paddings`` stripped from the ends."""
    concats = [int(n) for n in ctx.attr("num_concats")]
    if len(tiles) != int(np.prod(concats)):
        raise ctx.error(f"{len(tiles)} inputs do not make a {concats} grid of tiles")
    merged = _concat_grid([jnp.asarray(t) for t in tiles], concats, 0)
    paddings = _nd_paddings(ctx, merged.ndim)
    if any(p > d for p, d in zip(paddings, merged.shape, strict=True)):
        raise ctx.error(f"paddings {paddings} exceed the merged shape {merged.shape}")
    return merged[tuple(slice(0, d - p) for d, p in zip(merged.shape, paddings, strict=True))]


def _concat_grid(tiles: list, concats: list[int], axis: int):
    """Row-major ``tiles`` of a grid with ``concats`` tiles per dimension (from ``axis`` on), concatenated."""
    if axis == len(concats):
        return tiles[0]
    n = len(tiles) // concats[axis]
    rows = [_concat_grid(tiles[i * n : (i + 1) * n], concats, axis + 1) for i in range(concats[axis])]
    return jnp.concatenate(rows, axis=axis)
