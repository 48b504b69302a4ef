"""Known unsupported cases, as data: (op type, case, reason). Rendered into docs/ops.md with the registry."""

from __future__ import annotations

KNOWN_GAPS: list[tuple[str, str, str]] = [
    (
        "Where, Unique*, ListDiff, DynamicPartition, DynamicStitch, Range, Fill, bincounts, SparseFillEmptyRows,"
        " RaggedTensorToTensor (row partitions)",
        "input known only at run time",
        "the output shape depends on the values, which XLA cannot compile: a call runs the function op by op "
        "without jax.jit (EagerFallbackWarning), jax.jit of jaxsm.functional raises; inside a loop it raises. "
        "Exception: an optimizer's Unique that de-duplicates embedding ids compiles (padded, jaxsm/graph/dedup.py)",
    ),
    (
        "Segment*, SparseSegment* (no num_segments)",
        "segment ids known only at run time",
        "the number of segments is the largest id + 1, a data-dependent shape: runs op by op as above",
    ),
    (
        "Gather*, Scatter*, ResourceGather*, ResourceScatter*, ResourceSparseApply*, SparseToDense, Inplace*",
        "out-of-range or negative index",
        "TF's CPU kernels raise; a compiled function cannot, so gathers give 0, scatters and sparse optimizer"
        " updates skip the entry (TF's GPU rule for scatters;"
        " never NumPy's wrap-around of negative indices)",
    ),
    (
        "StridedSlice, TensorStridedSliceUpdate, (Resource)StridedSliceAssign",
        "begin/end known only at run time",
        "only single-index entries (x[i], v[:, i].assign(...)) may be run-time values, the others must take their"
        " whole dimension; an out-of-range run-time index is clamped where TF raises. Other cases run op by op",
    ),
    (
        "CheckNumerics, Assert",
        "a failing check at run time",
        "compiled functions cannot raise; values pass through (a statically false Assert raises at trace time)",
    ),
    (
        "String ops (StringLower, RegexReplace, StringSplitV2, ParseExampleV2, …), string lookup tables",
        "strings known only at run time (function inputs, a table's string keys or values)",
        "XLA has no string type: such a call runs op by op on the host (EagerFallbackWarning), the string ops in"
        " NumPy, the numeric ops eagerly; jax.jit of jaxsm.functional raises. Strings known at trace time"
        " (constants, asset paths) fold and the function compiles. Slower than TF: a TextVectorization+Embedding"
        " model 6 ms per call vs TF's 0.6 ms, a feature-column export 12 ms (first calls 0.7-1.9 s)",
    ),
    (
        "RegexReplace, RegexFullMatch (and the Static* forms)",
        "RE2-only syntax",
        "patterns run with Python's re module: the common syntax is shared; RE2-only constructs (\\C, \\pN"
        " classes, (?P=name) differences) raise or differ",
    ),
    (
        "DecodeJpeg, DecodeAndCropJpeg (and DecodeImage, DecodePng, DecodeGif given a JPEG)",
        "dct_method INTEGER_ACCURATE with fancy_upscaling=False, or with a crop window, on chroma subsampling"
        " other than 4:2:0 at ratio 1; try_recover_truncated on a truncated file",
        "not bit-exact (jaxsm/ops/images_io.py): Pillow's libjpeg-turbo gives no accurate-IDCT chroma plane there,"
        " so the fast IDCT's is used (a few levels, at most 2 in the tests; with a crop only the edge columns);"
        " TF fills a truncated file's missing rows from libjpeg-turbo 2.1 reading the end markers it inserts, jaxsm"
        " repeats the last decoded row; a truncated progressive file is decoded from its incomplete scans, which"
        " libjpeg-turbo 2.1 (TF) and 3.x (Pillow) finish differently: any pixel may differ, jaxsm may raise where TF"
        " does not",
    ),
    (
        "LookupTableInsertV2, LookupTableRemoveV2 (MutableHashTable, DenseHashTable)",
        "any",
        "a table's size is its contents: a call that inserts or removes runs op by op; contents saved in the"
        " checkpoint are restored at load, later inserts persist between calls as in TF",
    ),
    (
        "While",
        "loop variable whose shape changes between iterations",
        "XLA loops need fixed shapes (TF shape_invariants with None dimensions): a call runs the function op by op"
        " (EagerFallbackWarning, the loop as a Python loop); jax.jit of jaxsm.functional raises",
    ),
    (
        "TensorListReserve, TensorArrayV3",
        "unknown size inside a run-time-trip-count loop",
        "storage is preallocated; a dynamic size is compiled only when the loop can be unrolled at trace time,"
        " else a call runs op by op as above",
    ),
    (
        "TensorListPushBack, TensorListPopBack",
        "in a loop whose trip count is known only at run time",
        "a list that grows or shrinks every iteration is preallocated to its final size, which needs the trip"
        " count at trace time (Keras RNNs and their gradient loops have it); otherwise a call runs op by op",
    ),
    (
        "TF1 frames",
        "gradient loops (StackV2/StackPushV2), Merge with more than two inputs",
        "not rebuilt into structured control flow yet; reported with the node name when a function needs them",
    ),
    ("DepthToSpace, SpaceToDepth", "data_format NCHW_VECT_C", "quantized int8 layout, not implemented"),
    (
        "RandomUniform, RandomStandardNormal, TruncatedNormal, RandomUniformInt, Multinomial",
        "stateful random ops",
        "a jitted function has no hidden RNG state: each node draws from a fixed key derived from its seed attrs and"
        " name, so repeated calls give the same numbers (TF gives fresh ones); stateless random ops match TF, and"
        " so does tf.random.Generator (its state is a variable: RngReadAndSkip, Stateful*)",
    ),
    (
        "RngReadAndSkip, RngSkip, Stateful* (tf.random.Generator)",
        "jax_enable_x64 off",
        "the int64 state is narrowed to its low 32-bit words at load (jaxsm warns): streams follow TF's while the"
        " counter and key fit in 32 bits (from_seed with a small seed, < 2^24 values drawn), not after",
    ),
    (
        "XlaScatter, XlaSelectAndScatter, XlaVariadicSort",
        "computations other than one add/mul/min/max/replace (scatter), ge/le select with add scatter, lt/gt on the"
        " first operand (sort)",
        "lax exposes only these fixed combiners and comparators; reduce, reduce-window and variadic reduce take any",
    ),
    (
        "XlaCallModule",
        "shape-polymorphic modules, tokens, host callbacks (function_list)",
        "the module is called as a jax.export.Exported with the static shapes in Sout",
    ),
    (
        "StatelessMultinomial",
        "large batches (batch x classes x samples beyond one CPU work shard)",
        "TF's CPU kernel restarts the Philox stream per thread shard, so its values depend on the thread count;"
        " jaxsm reproduces the single-shard stream",
    ),
    (
        "CTCGreedyDecoder, SparseFillEmptyRows",
        "any",
        "not lowered: the output size depends on the values",
    ),
    (
        "CTCLoss, CTCLossV2, SparseReshape",
        "any",
        "not lowered yet",
    ),
    (
        "MutableHashTable*, LookupTableInsertV2, LookupTableRemoveV2",
        "any",
        "tables that change at run time need dynamic-size state; only initialized (static) tables are supported",
    ),
    (
        "Queues, iterators, datasets, WriteFile, summaries",
        "any",
        "input-pipeline and I/O ops run on the host, outside a jitted function",
    ),
]
