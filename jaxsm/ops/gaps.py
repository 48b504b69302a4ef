"""Known unsupported cases, as data: (op type, case, reason). Rendered into docs/ops.md with the registry."""

from __future__ import annotations

KNOWN_GAPS: list[tuple[str, str, str]] = [
    (
        "Where, Unique*, ListDiff, DynamicPartition, DynamicStitch, Range, Fill, bincounts, SparseFillEmptyRows,"
        " RaggedTensorToTensor (row partitions)",
        "input known only at run time",
        "the output shape depends on the values, which XLA cannot compile: a call runs the function op by op"
        " without jax.jit (EagerFallbackWarning), a loop around it as a Python loop; jax.jit of jaxsm.functional"
        " raises. Exception: an optimizer's Unique that de-duplicates embedding ids compiles (padded,"
        " jaxsm/graph/dedup.py)",
    ),
    (
        "Segment*, SparseSegment* (no num_segments)",
        "segment ids known only at run time",
        "the number of segments is the largest id + 1, a data-dependent shape: runs op by op as above",
    ),
    (
        "Gather*, Scatter*, ResourceGather*, ResourceScatter*, SparseApply* (TF1 ref variables),"
        " ResourceSparseApply*, SparseToDense",
        "out-of-range or negative index known only at run time",
        "TF's CPU kernels raise; a compiled function cannot, so gathers give 0, scatters and sparse optimizer"
        " updates skip the entry (TF's GPU rule for scatters; never NumPy's wrap-around of negative indices)."
        " Indices known at trace time raise as in TF",
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
        "checked after a compiled call (the conditions come back as one flag; a failure reruns the call op by op"
        " to raise TF's message), also in run-time tf.cond branches and compiled loop bodies; not in a while loop's"
        " condition function, and not when the function runs inside the user's own jax.jit/grad/vmap, where"
        " nothing can raise",
    ),
    (
        "PrintV2 (tf.print)",
        "a compiled call",
        "prints nothing (a compiled function has no host side effects); a call that runs op by op prints",
    ),
    (
        "TensorListGetItem/SetItem/Gather/Scatter*, TensorArrayRead/Write/Gather/ScatterV3",
        "out-of-range or negative index known only at run time",
        "TF raises; a compiled function reads zeros and drops the write (never wraps); known indices raise",
    ),
    (
        "IdentityN with a saved custom gradient (tf.custom_gradient)",
        "the gradient captures a tensor of another function than the one running (e.g. __forward_* copies)",
        "jax.grad uses the derivative of the forward ops there instead of the saved gradient",
    ),
    (
        "String ops (StringLower, RegexReplace, StringSplitV2, ParseExampleV2, …), string lookup tables",
        "strings known only at run time (function inputs, a table's string keys or values)",
        "XLA has no string type: such a call runs op by op on the host (EagerFallbackWarning), the string ops in"
        " NumPy; from the third call with the same input shapes the numeric ops between them run as jitted"
        " programs (jaxsm/graph/staging.py), loops included; jax.jit of jaxsm.functional raises. Strings known at"
        " trace time (constants, asset paths) fold and the function compiles. Slower than TF per call: a"
        " TextVectorization+LSTM model and a tf.Example-parsing MLP take 1.5-2.3x TF's time (3-5 and 2-2.6 ms on 2"
        " cores, 182 and 131 ms before), first calls 1-2 s",
    ),
    (
        "RegexReplace, RegexFullMatch (and the Static* forms)",
        "RE2 Unicode script classes (\\p{Greek}), \\C, the U (ungreedy) flag; UTF-8-encoded surrogates in the text",
        "patterns are translated to Python's re (jaxsm/ops/re2.py: POSIX classes, general categories \\pL, \\z,"
        " \\Q..\\E, \\x{...}, ASCII \\w \\d \\s \\b, $ at the very end, RE2's rewrite rules); these three raise"
        " LoweringError. RE2 reads an encoded surrogate (ED A0 80) as one character, jaxsm as three invalid bytes"
        " that match nothing",
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
        "LookupTableInsertV2, LookupTableRemoveV2 (MutableHashTable, MutableDenseHashTable)",
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
        "TensorListSetItem, TensorListSplit, TensorListScatterIntoExistingList (tf.TensorArray)",
        "elements of different shapes (infer_shape=False, split into unequal lengths)",
        "a list is one array, so every element needs the same shape: such a write raises a LoweringError (never"
        " broadcasts into the slot); TF keeps each element's own shape and concat() joins them",
    ),
    (
        "TF1 frames",
        "Merge with more than two inputs",
        "GraphError naming the Merge: jaxsm rebuilds only a TF1 cond's two-input Merge (and a loop's"
        " Merge(Enter, NextIteration)) into structured control flow",
    ),
    (
        "DepthToSpace, SpaceToDepth",
        "data_format NCHW_VECT_C",
        "LoweringError (NHWC and NCHW are lowered): the quantized int8 layout of TF's GPU kernels; TF on CPU has no"
        " kernel for it (nor for NCHW)",
    ),
    (
        "RandomUniform, RandomStandardNormal, TruncatedNormal, RandomUniformInt, RandomGamma, RandomPoissonV2,"
        " RandomShuffle, Multinomial, ParameterizedTruncatedNormal",
        "stateful random ops",
        "seeded ops draw TF's numbers call after call (the loaded object keeps each kernel's Philox counter, TF2"
        " and TF1); a pure function (jaxsm.functional, Function.pure) and a call inside the user's jax.jit have no"
        " counter to move on and draw the numbers of the counter's current position; with seed = seed2 = 0 TF"
        " seeds at random, jaxsm from the node name",
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
        "others raise LoweringError: jaxsm maps only these onto lax's scatter, select-and-scatter and sort forms;"
        " reduce, reduce-window and variadic reduce take any computation",
    ),
    (
        "XlaCallModule",
        "shape-polymorphic modules, tokens, host callbacks (function_list)",
        "LoweringError naming the node: the module is called as a jax.export.Exported with the static shapes in Sout",
    ),
    (
        "StatelessMultinomial, Multinomial",
        "large batches (batch x classes x samples beyond one CPU work shard)",
        "TF's CPU kernel restarts the Philox stream per thread shard, so its values depend on the thread count;"
        " jaxsm reproduces the single-shard stream",
    ),
    (
        "CTCGreedyDecoder, CTCBeamSearchDecoder",
        "logits known only at run time",
        "the decoded SparseTensor's size depends on the values: a call runs op by op (EagerFallbackWarning), in"
        " NumPy; beam entries with exactly equal scores may be ordered differently from TF's heap",
    ),
    (
        "CTCLoss, CTCLossV2",
        "invalid labels known only at run time; float64 precision",
        "TF raises for an empty label row, a label after a null label (>= num_classes - 1), a negative label,"
        " unsorted indices or labels longer than the sequence; compiled, jaxsm cannot: it reads the labels up to the"
        " first null label (a negative one gives an unspecified value) and computes the loss (inf if no path"
        " fits). Labels known at trace time are checked. For float64 TF's log-sum-exp rounds through float32;"
        " jaxsm's is exact (<= 1e-8 apart)."
        " CTCLossV2 (cuDNN's op; TF has no CPU kernel) is CTCLoss with the blank moved from class 0 to the last",
    ),
    (
        "ApproxTopK",
        "NaN inputs; aggregate_to_topk=False in a jit_compile=True function",
        "exact top-k as TF's CPU kernel, NaN ranked highest (TF's CPU kernel places a NaN unpredictably);"
        " aggregate_to_topk=False gives k entries as TF's CPU kernel does, where XLA (jit_compile=True) returns"
        " its partial reduction (off TPU: the whole dimension sorted, up to 1024 elements)",
    ),
    (
        "DeviceIndex, CheckPinned",
        "any",
        "jaxsm answers as TF on CPU whatever JAX's backend: DeviceIndex picks the CPU branch, CheckPinned raises"
        " (nothing is in GPU-pinned host memory)",
    ),
    (
        "MatrixLogarithm",
        "defective matrices; GPU/TPU",
        "computed from JAX's eigendecomposition (CPU only) where TF uses Eigen's Schur-Parlett algorithm: equal for"
        " diagonalizable well-conditioned matrices, inaccurate for a Jordan block",
    ),
    (
        "ExtractGlimpse, ExtractGlimpseV2",
        "uniform or gaussian noise (the defaults) for pixels outside the image",
        "TF draws that noise from Eigen's unseeded generators: jaxsm draws from the same distributions with a"
        " fixed key per node, so calls repeat their noise; in-image pixels and noise='zero' are exact",
    ),
    (
        "Queue ops, iterators, *Dataset ops, ImageSummary, AudioSummary, TF2 summary writers (Write*Summary)",
        "any",
        "not lowered: loading a SavedModel whose functions use them raises UnsupportedOpError listing them"
        " (the TF1 ScalarSummary, HistogramSummary, TensorSummary(V2) and MergeSummary are lowered)",
    ),
    (
        "RaggedRange, RaggedGather, RaggedTensorToSparse, RaggedFillEmptyRows, RaggedCross",
        "row splits, indices or ranges known only at run time",
        "the output size depends on the values: a call runs op by op (EagerFallbackWarning); the values themselves"
        " may be run-time values (gathered at positions known at trace time)",
    ),
    (
        "RaggedTensorToVariant, RaggedTensorFromVariant, RaggedTensorToVariantGradient (tf.map_fn over ragged)",
        "any call that builds variants from run-time values",
        "a variant holding ragged tensors is a host object (jaxsm/ops/ragged.py), like a string: such a call runs op"
        " by op (EagerFallbackWarning), its loops as Python loops; jax.jit of jaxsm.functional raises",
    ),
    (
        "TensorListPushBack (gradient of tf.map_fn over ragged rows)",
        "elements of different shapes",
        "the forward loop accumulates each ragged row for the gradient, but a TensorList is one array of"
        " same-shaped elements: the call raises LoweringError at that TensorListPushBack",
    ),
    (
        "Div, FloorDiv, TruncateDiv, Mod, FloorMod, TruncateMod (integers); Pow (integers)",
        "a zero divisor or a negative exponent known only at run time",
        "TF's CPU kernels raise; a compiled function cannot, so the result is XLA's: x / 0 is -1 (all bits set for"
        " unsigned types; FloorDiv adjusts it by its sign rule), x % 0 is x, an integer to a negative power truncates"
        " (1 for x = 1, +-1 for x = -1, else 0). A divisor or exponent known at trace time raises as TF does",
    ),
    (
        "UnsortedSegment*, SparseSegment*WithNumSegments, ReverseSequence, UnravelIndex, Bincount, DenseBincount,"
        " HistogramFixedWidth, Slice, MatrixBandPart, SparseToDense, SparseSoftmaxCrossEntropyWithLogits",
        "invalid values known only at run time (segment id >= num_segments, seq_lengths beyond the dimension,"
        " out-of-range flat index, negative bincount value, NaN histogram value, run-time begin + size beyond the"
        " dimension, unsorted or repeated sparse indices, a label outside [0, classes))",
        "TF's CPU kernels raise; a compiled function cannot: segment rows and bincount values are dropped, a"
        " too-long sequence reads fill values (NaN for floats) past the end, UnravelIndex clamps the index, a NaN"
        " histogram value counts in bin 0, a run-time Slice start is clamped (lax.dynamic_slice), a too-wide band"
        " keeps everything, repeated sparse indices keep one value, a bad label gives a NaN row (TF's GPU rule)."
        " The same values known at trace time raise; a node whose inputs are all known is"
        " folded, which may apply the run-time rule instead",
    ),
    (
        "Cast",
        "float to int8/int16/uint8/uint16/uint32, out of range or NaN, in a tensor TF splits across threads",
        "TF's x86 result depends on the element's position: Eigen's vectorized loop saturates, its scalar loop for"
        " the elements after the last full packet wraps (jaxsm/ops/math.py, _float_to_narrow_int, matches both for"
        " a whole tensor). A large tensor is cut into blocks per thread, each with its own scalar tail, at"
        " positions that depend on the machine's core count: those few elements get the saturated value",
    ),
    (
        "TopKV2 (and tf.sort/argsort of floats)",
        "NaN in the input (sorted=True, or k = 1 or k = the last dimension; tf.sort/argsort use k = n)",
        "TF compares with > so a NaN's position depends on its algorithm (an Eigen max reduction for k = 1,"
        " std::sort for k = n, std::sort_heap of its TopN heap otherwise); jaxsm ranks NaN below -inf (taken"
        " last). sorted=False with 1 < k < n replays TF's heap, NaN included. -0.0 and 0.0 tie (lower index"
        " first) as in TF",
    ),
    (
        "StackV2, StackPushV2, StackPopV2, StackCloseV2 (and v1 Stack*): tf.compat.v1 gradients of v1 while loops",
        "any",
        "a stack holds a run-time number of elements (one per forward-loop iteration), which a compiled loop cannot"
        " carry: a function with stacks runs op by op (EagerFallbackWarning, loops as Python loops); its pure"
        " function and jax.jit of jaxsm.functional raise StaticValueError. A TF1 pruned function that pops none"
        " (a serving signature of a graph saved with its gradients) drops the pushes and compiles. (The TF1 frame"
        " rewrite does rebuild gradient loops; compiling them would need stacks turned into loop-carried"
        " TensorLists, as while_v2's)",
    ),
    (
        "SparseTensorDenseMatMul, SparseTensorDenseAdd, SparseDenseCwise*, SparseReduceSum/Max, SparseBincount,"
        " SparseSegment*Grad, SparseFillEmptyRowsGrad",
        "out-of-range or negative index known only at run time; also SparseDenseCwiseDiv's zero divisor and"
        " SparseBincount's negative rank-1 values",
        "TF's CPU kernels raise; a compiled function cannot: the entry is dropped (a read gives 0; a zero divisor"
        " gives inf/NaN). Known at trace time, or run op by op, they raise as in TF",
    ),
    (
        "SparseTensorDenseMatMul, SparseReduceSum/Max, SparseConcat, SparseBincount",
        "dense_shape known only at run time",
        "it sets the output shape: the call runs op by op (EagerFallbackWarning); a constant dense_shape compiles",
    ),
    (
        "SparseAdd, SparseSlice, SparseSplit, SparseReduce*Sparse, SparseSparseMaximum/Minimum, SparseAddGrad,"
        " SparseSliceGrad, SparseSegment*GradV2, *CountSparseOutput, SetSize, *SetOperation, EditDistance",
        "indices known only at run time (SparseAdd: also the values of entries in both operands; the count ops:"
        " the values; set ops and EditDistance: every input)",
        "the output size depends on them: the call runs op by op (EagerFallbackWarning), jax.jit of"
        " jaxsm.functional raises; the values alone may be run-time values elsewhere",
    ),
    (
        "SparseReorder, SparseSoftmax, SparseConcat, SparseReduceMax",
        "duplicate indices",
        "TF sorts with an unstable std::sort, so entries with equal indices come out in an unspecified order;"
        " jaxsm keeps their input order",
    ),
    (
        "SparseSegmentSumGrad, SparseSegmentMeanGrad, SparseSegmentSqrtNGrad",
        "empty indices",
        "TF 2.21 returns its output uninitialized (arbitrary values); jaxsm returns zeros",
    ),
    (
        "UnicodeScript",
        "any",
        "not lowered: Python has no Unicode script property and TF's answers are ICU's UScriptCode values from its"
        " bundled ICU (Unicode 13 data, codes up to 192): a faithful table is about 1,600 code point runs",
    ),
    (
        "MaxPool3D",
        "NaN in a window",
        "TF's 3-D CPU kernel folds a window in order, so a NaN is replaced by any later value (and later padding);"
        " jaxsm's max propagates the NaN. 2-D MaxPool matches TF (NaN skipped, all-NaN/-inf windows give -FLT_MAX)",
    ),
    (
        "StatelessRandomPoisson, RandomPoissonV2",
        "a NaN rate; a float16 output with a rate above float16's max",
        "TF's CPU kernel never returns (its rejection loop cannot accept); jaxsm returns NaN (0 as an integer) and inf",
    ),
    (
        "StatelessRandomGammaV2/V3, RandomGamma, StatelessRandomPoisson, RandomPoissonV2",
        "jax_enable_x64 off",
        "TF's samplers compute in double; with x64 off jaxsm computes in float32: same distribution, values close"
        " to TF's but not bit-exact",
    ),
    (
        "StatelessRandomBinomial, StatefulRandomBinomial",
        "a NaN count; a NaN probability with an integer output",
        "TF's CPU kernel never returns on a NaN count (its loops cannot stop); jaxsm returns NaN (cast to the"
        " output dtype). TF casts a NaN probability's NaN to an integer with C's undefined conversion (x86: the"
        " most negative integer); jaxsm with XLA's",
    ),
    (
        "StatelessParameterizedTruncatedNormal, ParameterizedTruncatedNormal",
        "large outputs; invalid parameters known only at run time",
        "TF's CPU kernel splits large outputs over its thread pool, each shard drawing its own stream from a skip, so"
        " its values depend on the thread count; jaxsm reproduces the single-shard stream, TF's for small tensors (400"
        " outputs match, 1600 do not)."
        " Run-time stddev <= 0, minval >= maxval or two infinite bounds: TF raises, jaxsm gives NaN for that batch"
        " (known values raise); so does a batch whose sampler rejects 1000 candidates in a row (TF: internal error)",
    ),
    (
        "SampleDistortedBoundingBox(V2), UniformCandidateSampler, LogUniformCandidateSampler,"
        " LearnedUnigramCandidateSampler, ThreadUnsafeUnigramCandidateSampler,"
        " FixedUnigramCandidateSampler",
        "stateful random ops: calls after the first; seed = seed2 = 0",
        "every call draws the kernel's first-call numbers (TF moves its Philox counter on, and the learned unigram"
        " samplers count the true classes seen); with both seed attrs 0 TF seeds at random and jaxsm from the node"
        " name",
    ),
    (
        "StatelessSampleDistortedBoundingBox, SampleDistortedBoundingBox(V2)",
        "image size, boxes, min_object_covered or seed known only at run time",
        "the attempt loop (rejection sampling in C float arithmetic) runs on the host in NumPy: such a call runs op"
        " by op (EagerFallbackWarning); jax.jit of jaxsm.functional raises",
    ),
    (
        "RandomIndexShuffle",
        "index > max_index known only at run time; jax_enable_x64 off",
        "TF raises (known values raise in jaxsm too); jaxsm walks the cipher cycle until a value <= max_index or"
        " back to the index. With x64 off indices are 32-bit and the block size comes from a float32 log2: exact for"
        " max_index < 2^24",
    ),
    (
        "(loader) restored functions",
        "a call that assigns variables or tables inside the user's jax.jit/grad/vmap",
        "raises VariableError (a traced value cannot be kept in the loaded object); jaxsm.functional(fn) gives a"
        " pure apply that returns the updated variables. Functions that only read variables work under jit/grad/vmap,"
        " with the values the variables hold when the caller's jit traces them (closed-over constants: a later"
        " assign is not seen by that compiled function; apply takes them as arguments). Seeded stateful random ops"
        " (tf.random.uniform(seed=...), tf_keras Dropout) keep their counters under the user's jax.jit (the draws"
        " repeat from call to call), and under jax.vmap every example gets the same draws",
    ),
    (
        "(loader) restored functions",
        "a call that raises (a failed Assert, an invalid index TF checks) after assigning variables",
        "TF keeps the assignments its executor ran before the error; a jaxsm call changes the loaded object only"
        " when it returns, so the variables keep their values from before the call",
    ),
    (
        "(loader) ConcreteFunction.inputs / .outputs",
        "captured variables and resources",
        "TensorSpecs named as TF's graph tensors ('x:0', 'Identity:0'); TF also lists the captured resource"
        " handles after the call's inputs ('unknown:0'), jaxsm does not",
    ),
    (
        "(loader) restored Variable",
        "its device",
        "no .device attribute: JAX places the values (LoadOptions' sharding), not TF's device strings",
    ),
    (
        "LookupTableFindV2, LookupTableInsertV2, LookupTableRemoveV2 (MutableDenseHashTable)",
        "the table's empty_key or deleted_key used as a key",
        "TF raises InvalidArgumentError; jaxsm returns the default value (find) or stores the key (insert). The"
        " restored contents leave out the buckets holding these keys, as TF's table does",
    ),
    (
        "QuantizeV2, Dequantize (qint32, MIN_COMBINED or MIN_FIRST)",
        "scale of a 32-bit type",
        "TF divides by 2**32 - 1 in double and rounds to float; jaxsm divides in float32, where that is 2**32: a"
        " scale can differ by one float32 ulp (8- and 16-bit types are exact)",
    ),
    (
        "QuantizeV2, Dequantize, QuantizeAndDequantizeV2/V3/V4, BesselK0, BesselK1",
        "subnormal scales or results (SCALED quint8 with a range below 0; K0/K1 of x > ~87 in float32)",
        "TF's CPU threads flush subnormals to zero; jaxsm computes with them (tiny values instead of 0)",
    ),
    (
        "QuantizeAndDequantizeV2/V3/V4, QuantizeV2",
        "range_given with input_min > input_max known only at run time",
        "TF raises; a compiled function cannot, so jaxsm quantizes with the given (inverted) range. Known ranges"
        " (Const inputs, the usual export) raise as in TF",
    ),
    (
        "TF1 SignatureDefs (tf.compat.v1 SavedModels)",
        "a signature whose outputs need a placeholder that is not one of its inputs",
        "TF refuses to load the whole SavedModel (UnliftableError); jaxsm loads it and raises GraphError/"
        "LoweringError only when that signature is called (TF1Model.prune raises at once, as TF's prune does)",
    ),
    (
        "VariableV2 (TF1 ref variables)",
        "TF1Model.variables",
        "listed with the resource variables; TF 2.x's load_v1_in_v2 lifts and lists only resource variables, so"
        " a model from TF 1.x (all ref variables) shows none there",
    ),
    (
        "TF1 graphs: a variable read and an assignment to it with no dependency between them, in one call",
        "e.g. a signature returning moving_mean next to the batch-norm update that assigns it",
        "TF's executor may run them in either order (the read, ready at once, usually first); jaxsm runs one"
        " topological order, which can read the updated value",
    ),
    (
        "ComputeAccidentalHits",
        "true or sampled classes known only at run time",
        "the number of hits depends on the values: such a call runs op by op (EagerFallbackWarning)",
    ),
    (
        "MatrixInverse, MatrixSolve",
        "a singular matrix known only at run time",
        "TF's CPU kernels raise (an exactly zero LU pivot); a compiled function cannot, so the result is LAPACK's"
        " inf/NaN. A matrix known at trace time is checked and raises as in TF. (Cholesky of a non-positive-definite"
        " matrix does not raise in TF either: both fill the lower triangle with NaN)",
    ),
    (
        "Sum, Mean (float16), Prod and other reductions (float16/bfloat16)",
        "long or cancelling inputs",
        "TF's CPU kernels accumulate in the 16-bit type there, in an order set by Eigen's vector layout, XLA in"
        " float32, so jaxsm is nearer the exact value: 900 float16 values with +-60000 in them sum to 1656 in TF,"
        " 1826 in jaxsm (exact 1814); a product of 64 half values can be ~6 ulps from TF's. bfloat16 Sum and Mean"
        " match TF (it sums them in float32 and rounds once); the scans (Cumsum, Cumprod, CumulativeLogsumexp)"
        " round every step as TF's do",
    ),
    (
        "Log, Pow, Sqrt, Rsqrt, Reciprocal, Sign, Exp of complex numbers",
        "parts beyond sqrt(max float), infinite parts, complex64 subnormals; complex64 Sqrt/Pow of x - 0j (x < 0)",
        "TF's vectorized Eigen formulas overflow where XLA's scale (log(1e308+1e308j): TF's real part NaN, jaxsm"
        " 709.5; 1/(inf+1j): TF NaN, jaxsm 0; TF's scalar loop for the last elements gives jaxsm's values) and XLA"
        " flushes complex64 subnormals to 0. TF's complex64 Sqrt"
        " keeps the sign of a zero imaginary part in its vectorized loop but not in its scalar tail (the last"
        " size % 4 elements): jaxsm always keeps it (sqrt(-1 - 0j) = -1j). Branch cuts and signed zeros otherwise"
        " match",
    ),
    (
        "NonMaxSuppressionV5",
        "soft_nms_sigma > 0: candidates whose rescored values tie or nearly tie",
        "TF rescores lazily from a priority queue, jaxsm rescores every candidate after each pick: the same boxes,"
        " but the products round in another order, so near-equal scores may be picked in another order",
    ),
    (
        "CropAndResize",
        "boxes known only at run time",
        "sample positions are computed by XLA, which may fuse a multiply-add: a position exactly on .5 (method"
        " nearest) or on the image edge can land on the other side (another pixel, or extrapolation_value). Boxes"
        " known at trace time are computed in float32 exactly as TF's C++",
    ),
    (
        "FixedUnigramCandidateSampler",
        "vocab_file attr",
        "not supported (TF reads the CSV file when the kernel is built); the unigrams attr is",
    ),
    (
        "XlaSvd, XlaSelfAdjointEig",
        "signs of singular/eigen vectors; max_iter, epsilon",
        "XLA computes them by Jacobi sweeps; jaxsm by the backend's SVD/eigh (values agree to rounding, vectors"
        " up to sign, or phase for complex); max_iter and epsilon are ignored",
    ),
    (
        "XlaRemoveDynamicDimensionSize",
        "after XlaSetDynamicDimensionSize",
        "jaxsm's dimensions are static: XlaSetDynamicDimensionSize slices (its size must be known at trace time),"
        " so removing the dynamic size keeps the slice where XLA exposes the padded tensor again",
    ),
    (
        "XlaSpmdFullToShardShape, XlaSpmdShardToFullShape",
        "a manual sharding over several devices",
        "jaxsm runs on one device, where both are the identity; shardings that split the tensor raise",
    ),
    (
        "BesselK0, BesselK0e, BesselK1, BesselK1e",
        "0 < x < 2",
        "the log term cancels part of the series there, so XLA's exp/log and jax's i0/i1 (a few ulp from Eigen's)"
        " leave results up to ~20 ulp from TF's (J0/J1/Y0/Y1 and x >= 2: a few ulp)",
    ),
    (
        "Abort",
        "reached at run time",
        "TF ends the process (exit code 0 with exit_without_error); jaxsm raises AssertFailedError with error_msg."
        " Inside compiled loop bodies or the user's own jax.jit nothing can raise, and the op is a no-op",
    ),
    (
        "QuantizeV2 (quint8, MIN_FIRST)",
        "TF with oneDNN (its default on x86)",
        "oneDNN's kernel, which TF picks for some graphs and eager calls, rounds x * scale - min * scale half to"
        " even; TF's own kernel (TF_ENABLE_ONEDNN_OPTS=0) and jaxsm round x * scale and min * scale apart: some"
        " inputs land one level apart",
    ),
    (
        "QuantizeV2, Dequantize (float outputs)",
        "NVIDIA GPUs",
        "XLA's float32 division there is not correctly rounded (H100: 7 / 3 is one ulp off), so output ranges and"
        " dequantized values can differ from TF-CPU by an ulp, and MIN_FIRST's snapped minimum by one step where"
        " min / step is a half-integer (checked on an H100: the quantized integers all matched)",
    ),
    (
        "TensorArrayGradV3, TensorArrayGradWithShape",
        "tf.compat.v1.gradients through TensorArrays",
        "a gradient array lives in the interpreter state, as in TF's resource manager (its ops wrap the forward"
        " flow and their flows get summed): the function runs op by op (EagerFallbackWarning), as with the stacks"
        " of v1 while-loop gradients, and its pure function raises StaticValueError. A gradient array first made"
        " from a gradient flow (not the forward one) raises, and TF's clear_after_read (a second read of a gradient"
        " element fails) is not enforced",
    ),
    (
        "TensorArray, TensorArrayV2, TensorArray{Read,Write,Gather,Scatter,Concat,Split,Size,Close,Grad}(V2)",
        "pre-V3 TensorArrays (string ref handles)",
        "not lowered: their flow starts as a separate constant, not the TensorArray's output, so jaxsm's"
        " flow-carried storage does not apply",
    ),
    (
        "RandomCrop",
        "deprecated (GraphDef 8)",
        "not lowered: TF 2.21 cannot run it to compare its random offsets against",
    ),
    (
        "While, StatelessWhile (and TF1 v1 loops)",
        "jax.grad through a loop whose trip count depends on run-time values",
        "TF differentiates any loop; jaxsm runs it as lax.while_loop, which JAX cannot reverse-differentiate: jax.grad"
        " raises StaticValueError naming the loop (forward mode, jax.jvp/jacfwd, works). Trip counts from constants,"
        " from integers the caller passes as values (a Python/NumPy int given to a restored method under its"
        " jax.grad) or from the shapes of tensors the loop carries unchanged (captured tensors, TF1 loop"
        " invariants) run as lax.scan and differentiate; a condition reading the shape of a variable the body"
        " updates does not",
    ),
    (
        "IdentityN (tf.custom_gradient)",
        "saved with SaveOptions(experimental_custom_gradients=False)",
        "no gradient function is saved: TF's GradientTape raises LookupError (no gradient for IdentityN) in a new"
        " process, jax.grad differentiates the forward ops instead",
    ),
    (
        "TopKV2",
        "sorted=False with 1 < k < the last dimension, that dimension symbolic (jax.export shape polymorphism)",
        "TF returns its TopN heap's internal order, which jaxsm replays for a known last dimension (libstdc++ heap"
        " operations, jaxsm/ops/array.py _heap_top_k); a symbolic one gets the sorted order, the same set of"
        " values and indices",
    ),
    (
        "OnesLike (uint32, uint64)",
        "a statically shaped input in a graph TF optimizes",
        "TF's Grappler constant folding turns it into zeros (eager TF and its kernel give ones); jaxsm gives ones",
    ),
    (
        "any op producing int64/uint64",
        "jax_enable_x64 off; a constant or an intermediate result beyond 32 bits",
        "inputs beyond 32 bits raise Int64RangeError, and so does an int64 constant beyond 32 bits meeting a traced"
        " value in arithmetic (jaxsm/graph/interpreter.py _WIDE_ARITHMETIC_OPS; it saturates for the comparison/select"
        " ops of _SATURATED_OPS); but JAX computes int64 in 32 bits, so run-time sums/products/cumsums past 2^31 wrap"
        " in a compiled function (op by op, NumPy folds them in 64 bits). Turn x64 on for TF's exact results",
    ),
    (
        "TF1 SignatureDefs (tf.compat.v1 SavedModels)",
        "an input fed a shape other than its placeholder's (a fixed batch of 2 fed 5 rows)",
        "TF's restored signature checks no input shapes and jaxsm follows it: the graph computes on the fed shape."
        " Where an op needs the placeholder's shape (a Reshape to a constant [2, 3] of 3 rows) jaxsm raises"
        " LoweringError, as TF's kernel and Session.run do; TF's loaded signature may instead return the input"
        " unreshaped (Grappler drops the Reshape as a no-op from the static shapes)",
    ),
    (
        "FractionalMaxPool, FractionalAvgPool",
        "no seed (deterministic=False, TF seeds at random on every call)",
        "the pooling sequences are seeded from the node name instead: regions of the right sizes, the same on every"
        " call. Seeded (deterministic=True) they are TF's exactly. FractionalMaxPoolGrad does not check, as TF"
        " does, that orig_output equals the recomputed maxima",
    ),
    (
        "SerializeSparse, SerializeManySparse, DeserializeSparse, DeserializeManySparse",
        "out_type / Tserialized variant",
        "not supported (an error naming the node): only the string form, three serialized TensorProtos",
    ),
    (
        "MutableDenseHashTable (TF1 ref handle)",
        "tested only through its V2 form",
        "TF 2.21's kernel cannot run the v1 op (it requires V2's deleted_key input), so it is lowered like"
        " MutableDenseHashTableV2 without a TF comparison",
    ),
    (
        "BatchMatrix*, BatchCholesky(Grad), BatchSelfAdjointEig(V2), BatchSvd, BatchFFT*, TopK, RandomPoisson,"
        " StatefulStandardNormal, QuantizeAndDequantize, AdjustContrast, PlaceholderV2",
        "deprecated ops TF 2.21 refuses to run",
        "lowered as their modern ops (AdjustContrast: its own float32 kernel with clipping) and tested by rewriting"
        " TF's modern op into the old form in a saved graph; BatchSelfAdjointEig (v1) shares SelfAdjointEig's"
        " lowering untested",
    ),
    (
        "SobolSample",
        "not lowered",
        "it needs TF's table of Joe-Kuo direction numbers (tensorflow/core/kernels/sobol_op.cc, 21201 dimensions),"
        " which jaxsm does not ship",
    ),
    (
        "Select(V2), Minimum, Maximum, ClipByValue, Less/Greater(Equal), (Not)Equal, ConcatV2, Pack, Fill, BroadcastTo",
        "jax_enable_x64 off; an int64 constant beyond 32 bits meets a run-time (32-bit) operand",
        "the constant saturates to int32's range instead of wrapping (tf.int64.max becomes 2^31-1, not -1), so it"
        " keeps its order against every int32 value: the mask sentinel of Keras' IntegerLookup/StringLookup is"
        " dropped by bincount and tf.minimum(x, tf.int64.max) is x, as in TF; a select passes on 2^31-1 where TF"
        " gives 2^63-1 (jaxsm/graph/interpreter.py _SATURATED_OPS)",
    ),
    (
        "Bitcast",
        "to or from float64 or complex128, of a value known only at run time, jax_enable_x64 off",
        "LoweringError: float64 bits have no 32-bit stand-in (an int64/uint64 source is its sign- or zero-extended"
        " words, a 64-bit integer result its low word; values known at trace time keep TF's exact bits)",
    ),
    (
        "StatelessRandomUniformFullIntV2 (int64/uint64 output) feeding a seed",
        "jax_enable_x64 off",
        "the 64-bit seeds tf.random.Generator.make_seeds/uniform_full_int draw keep only their low 32 bits, so the"
        " stateless ops seeded by them draw other numbers than TF's (tf-keras RandomFlip and RandomContrast with"
        " training=True); turn x64 on for TF's streams",
    ),
    (
        "Relu, Relu6 (float32, float64)",
        "-0.0 in the input",
        "TF's vectorized max gives +0.0 but its scalar loop for the elements after the last full packet (8 floats,"
        " 4 doubles) keeps -0.0; jaxsm gives +0.0 everywhere (float16/bfloat16 keep -0.0 everywhere in both)",
    ),
    (
        "(loader, TF1) SignatureDef sparse (coo_sparse) output",
        "dense_shape computed from the signature's inputs",
        "structured_outputs' SparseTensorSpec has the shape the export recorded in the TensorInfo (every size"
        " unknown when dense_shape is itself an input, as in TF); TF constant-folds the dense_shape tensor of the"
        " pruned function instead, which can know fewer sizes",
    ),
    (
        "(loader, TF1) prune",
        "fetches depending on an unfed PlaceholderV2 (GraphDef before version 23)",
        "GraphError naming it, as for an unfed Placeholder; TF 2.21 cannot copy a PlaceholderV2 into the pruned"
        " function (UnimplementedError), nor load a signature that uses one",
    ),
    (
        "AvgPool, DepthwiseConv2dNative, Softmax, MatMul, BatchMatMul* (bfloat16)",
        "TF with its oneDNN kernels on (TF_ENABLE_ONEDNN_OPTS unset, the x86 default)",
        "jaxsm has the bits of TF's plain Eigen kernels (the oracle tests/conftest.py configures): bfloat16 rounded"
        " after every add as in float16, MatMul's float32 result truncated. oneDNN computes these in float32 and"
        " rounds once to nearest, so against a default TF install 47-54% of bfloat16 outputs differ by 1 ulp"
        " ([2, 4, 6, 3]-like grids in [-1, 2]); float16, LogSoftmax and L2Loss are the same in both",
    ),
    (
        "Softmax, LogSoftmax, L2Loss (float16/bfloat16)",
        "sums longer than Eigen's leaf (1600 float16 / 1024 bfloat16 elements), or a GPU/TPU backend",
        "jaxsm sums in float32 and rounds once (oneDNN's way) instead of following Eigen's tree of half-type adds,"
        " whose emulation compiled for seconds: within an ulp of TF's CPU result, not always its bits",
    ),
    (
        "Softplus (float16)",
        "values between the thresholds",
        "TF's Eigen float16 softplus is bit-identical for about 92% of all float16 values in [-20, 20] (the rest 1"
        " ulp off, around the log1p band edges); jaxsm rounds exp(x) to float16 before log1p as Eigen does, which"
        " makes bfloat16 exact but not float16",
    ),
    (
        "LRN (float16)",
        "any input",
        "TF's half LRN (a band-matrix contraction of the squares, then bias + alpha * sum and a power, in float16)"
        " is not reproduced step by step: about 74% of outputs bit-identical, the rest 1 ulp (TF has no bfloat16"
        " LRN on CPU)",
    ),
    (
        "Exp (bfloat16)",
        "any input",
        "TF's vectorized Eigen exp (a float32 polynomial, then rounded) sometimes differs from XLA's float32 exp by"
        " a float32 ulp that flips the bfloat16 rounding: 99.85% of outputs bit-identical, the rest 1 ulp",
    ),
    (
        "FusedBatchNormV3 (float16/bfloat16 x)",
        "the float32 statistics; float16 y",
        "y matches TF bit for bit for bfloat16 and 99.98% for float16 (1 ulp); training's batch_mean/batch_variance"
        " (float32) are summed in another order than Eigen's, so their last float32 bits differ (relative 1e-7)",
    ),
    (
        "TensorArrayReadV3, TensorArrayGatherV3 (clear_after_read=True, TF1's default)",
        "an element read twice at an index known only at run time, or inside a cond branch or a compiled loop",
        "TF raises at the second read; jaxsm raises only where two different read ops read an index known at trace"
        " time, outside cond branches, else it returns the element again (one op reading the same index again is"
        " taken for its loop body traced again: a loop that rereads an index in every iteration is not refused)",
    ),
    (
        "IdentityN (a saved tf.custom_gradient)",
        "jax.jvp/jacfwd around the caller's own jax.jit of the function",
        "forward mode gives TF's ForwardAccumulator tangents when jaxsm traces under the jvp (a restored function's"
        " call, also inside the caller's jit around the jvp; jaxsm.functional's apply); a jit inside the jvp is"
        " traced before JAX knows a jvp follows, so jaxsm gives it a custom_vjp (TF's reverse-mode gradient, which"
        " may be nonlinear in the cotangents) and JAX raises its TypeError when the jvp reaches it, in JAX's code"
        " (put jax.jit outside the jvp)",
    ),
    (
        "MutableDenseHashTableV2",
        "keys of a non-scalar shape (an empty_key that is a vector)",
        "jaxsm keeps a table's keys as a sorted vector of scalars: such a table raises a LoweringError when it is"
        " created (at load)",
    ),
]
