"""jaxsm.format.structure: StructuredValue decoding, checked against TF's nested_structure_coder."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from jaxsm._proto import struct_pb2
from jaxsm.format import structure


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def _ours(tf_proto) -> object:
    return structure.decode(struct_pb2.StructuredValue.FromString(tf_proto.SerializeToString()))


def _same(ours, theirs, tf, where: str = "value") -> None:
    """Structural equality between our decode and TF's (specs compared by shape, dtype, name)."""
    if isinstance(theirs, tf.TensorSpec) and not hasattr(theirs, "minimum"):
        assert isinstance(ours, structure.TensorSpec), f"{where}: expected TensorSpec, got {ours!r}"
        shape = None if theirs.shape.rank is None else tuple(theirs.shape.as_list())
        assert ours.shape == shape, f"{where}: shape"
        assert ours.dtype_enum == theirs.dtype.as_datatype_enum, f"{where}: dtype"
        assert ours.name == theirs.name, f"{where}: name"
    elif isinstance(theirs, tf.TypeSpec):
        assert isinstance(ours, structure.TypeSpec | structure.BoundedTensorSpec), f"{where}: {ours!r}"
    elif isinstance(theirs, tf.DType):
        assert ours == structure.DType(theirs.as_datatype_enum), f"{where}: dtype"
    elif isinstance(theirs, tf.TensorShape):
        assert ours == (None if theirs.rank is None else tuple(theirs.as_list())), f"{where}: shape"
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and sorted(ours) == sorted(theirs), f"{where}: dict keys"
        for k in theirs:
            _same(ours[k], theirs[k], tf, f"{where}[{k!r}]")
    elif isinstance(theirs, tuple | list):
        assert type(ours).__name__ == type(theirs).__name__, f"{where}: container type"
        assert len(ours) == len(theirs), f"{where}: length"
        if hasattr(theirs, "_fields"):
            assert ours._fields == theirs._fields, f"{where}: namedtuple fields"
        for i, (o, t) in enumerate(zip(ours, theirs, strict=True)):
            _same(o, t, tf, f"{where}[{i}]")
    elif isinstance(theirs, np.ndarray):
        np.testing.assert_array_equal(ours, theirs, err_msg=where)
    else:
        assert ours == theirs and type(ours) is type(theirs), f"{where}: {ours!r} vs {theirs!r}"


def _cases(tf):
    point = collections.namedtuple("Point", ["x", "y"])
    return {
        "specs": (
            (tf.TensorSpec([None, 3], tf.float32, name="x"), tf.TensorSpec(None, tf.string)),
            {"ids": tf.TensorSpec([2], tf.int64, name="ids"), "flag": True},
        ),
        "scalars": [1, 2.5, "s", None, False, -7],
        "namedtuple": point(x=tf.TensorSpec([], tf.int32), y=[3, (4.0,)]),
        "dtype_shape": (tf.float16, tf.TensorShape([None, 2]), tf.TensorShape(None)),
        "ragged": tf.RaggedTensorSpec([None, None], tf.float32),
        "sparse": tf.SparseTensorSpec([3, 3], tf.int64),
    }


@pytest.mark.parametrize("case", ["specs", "scalars", "namedtuple", "dtype_shape", "ragged", "sparse"])
def test_decode_matches_tf(tf, case):
    from tensorflow.python.saved_model import nested_structure_coder

    value = _cases(tf)[case]
    proto = nested_structure_coder.encode_structure(value)
    _same(_ours(proto), nested_structure_coder.decode_proto(proto), tf, case)


def test_bounded_tensor_spec(tf):
    from tensorflow.python.framework import tensor
    from tensorflow.python.saved_model import nested_structure_coder

    spec = tensor.BoundedTensorSpec([2], tf.float32, minimum=-1.0, maximum=[1.0, 2.0], name="b")
    ours = _ours(nested_structure_coder.encode_structure(spec))
    assert isinstance(ours, structure.BoundedTensorSpec), f"decoded {ours!r}"
    assert (ours.shape, ours.dtype, ours.name) == ((2,), np.dtype(np.float32), "b"), "shape, dtype, name"
    np.testing.assert_array_equal(ours.minimum, spec.minimum, err_msg="minimum")
    np.testing.assert_array_equal(ours.maximum, spec.maximum, err_msg="maximum")


def test_type_spec_keeps_class_and_state(tf):
    from tensorflow.python.saved_model import nested_structure_coder

    ours = _ours(nested_structure_coder.encode_structure(tf.RaggedTensorSpec([None, None], tf.float32)))
    assert ours.type_spec_class == "RAGGED_TENSOR_SPEC", "type_spec_class"
    assert isinstance(ours.proto, struct_pb2.TypeSpecProto), "raw proto kept"
    # RaggedTensorSpec._serialize(): (shape, dtype, ragged_rank, row_splits_dtype)
    expected = ((None, None), structure.DType(1), 1, structure.DType(9))
    assert ours.type_state == expected, "decoded type_state"


def test_tensor_value():
    value = struct_pb2.StructuredValue()
    t = value.tensor_value
    t.dtype = 3  # DT_INT32
    t.tensor_shape.dim.add().size = 3
    t.int_val.extend([1, 2, 3])
    np.testing.assert_array_equal(structure.decode(value), np.array([1, 2, 3], np.int32), err_msg="tensor_value")


def test_unset_value_is_an_error():
    with pytest.raises(Exception, match="no known value"):
        structure.decode(struct_pb2.StructuredValue())


def test_namedtuple_classes_are_shared():
    value = struct_pb2.StructuredValue()
    nt = value.named_tuple_value
    nt.name = "Pair"
    for key in ("a", "b"):
        pair = nt.values.add()
        pair.key = key
        pair.value.int64_value = 1
    first, second = structure.decode(value), structure.decode(value)
    assert type(first) is type(second) and first == second, "two decodes of one namedtuple"
    assert first._fields == ("a", "b"), "fields in proto order"


def test_format_signature():
    spec = structure.TensorSpec((None, 3), np.dtype(np.float32), "x", 1)
    text = structure.format_signature((spec, 2), {"training": False}, ["x", "k"])
    assert text == "(x: TensorSpec(shape=(None, 3), dtype=float32), k=2, training=False)", "signature text"


def test_flatten_order():
    assert structure.flatten({"b": [1, 2], "a": (3, {"z": 4, "y": 5})}) == [3, 5, 4, 1, 2], "nest order"


def test_flatten_keeps_specs_as_leaves():
    from jaxsm.format.structure import TensorSpec, flatten

    spec = TensorSpec((None, 3), np.dtype(np.float32), "x", 1)
    assert flatten(((spec, [spec, 2.0]), {"b": spec, "a": None})) == [spec, spec, 2.0, None, spec]
