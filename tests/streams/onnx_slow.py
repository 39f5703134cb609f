"""A really slow, cancellable ONNX model for ``fraud_score`` (the demo's 30 features).

A ``Loop`` whose trip count is ``|first feature| x per_unit`` (data dependent, so it is not
folded at load time and the all-zero warm-up row is instant), each iteration a 64x64
``MatMul``. onnxruntime checks ``RunOptions.terminate`` between the loop's iterations, so a
timeout or a disconnect really stops it. The score is always 0.5.
"""

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mlops.demo import demo_feature_names

WIDTH = 30
SIDE = 64


def build_slow_model(path: Path, per_unit: int) -> Path:
    matrix = numpy_helper.from_array((np.eye(SIDE, dtype=np.float32) * 0.5), name="w")
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["acc_in", "w"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [SIDE, SIDE]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [SIDE, SIDE]),
        ],
        [matrix],
    )
    nodes = [
        helper.make_node("Slice", ["X", "s0", "s1", "ax"], ["col"]),
        helper.make_node("Abs", ["col"], ["abs"]),
        helper.make_node("ReduceMax", ["abs"], ["first"], keepdims=0),
        helper.make_node("Mul", ["first", "per_unit"], ["trips_f"]),
        helper.make_node("Cast", ["trips_f"], ["trips"], to=TensorProto.INT64),
        helper.make_node("Loop", ["trips", "true", "acc0"], ["acc"], body=body),
        helper.make_node("ReduceSum", ["acc"], ["acc_sum"], keepdims=0),
        helper.make_node("Mul", ["acc_sum", "zero"], ["acc_zero"]),
        helper.make_node("Add", ["X", "acc_zero"], ["X2"]),
        helper.make_node("ReduceSum", ["X2", "axis1"], ["rowsum"], keepdims=1),
        helper.make_node("Mul", ["rowsum", "zero"], ["zeroed"]),
        helper.make_node("Sigmoid", ["zeroed"], ["probabilities"]),
    ]
    inits = [
        helper.make_tensor("s0", TensorProto.INT64, [1], [0]),
        helper.make_tensor("s1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
        helper.make_tensor("per_unit", TensorProto.FLOAT, [], [float(per_unit)]),
        helper.make_tensor("true", TensorProto.BOOL, [], [True]),
        numpy_helper.from_array(np.ones((SIDE, SIDE), dtype=np.float32), name="acc0"),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, WIDTH])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1])
    model = helper.make_model(helper.make_graph(nodes, "slow", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "feature_names", json.dumps(demo_feature_names())
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def build_failing_model(path: Path) -> Path:
    """Fails on every real row (``Reshape`` to ``[-1, 30 + |first feature|]``), fine on the zero warm-up row."""
    nodes = [
        helper.make_node("Slice", ["X", "s0", "s1", "ax"], ["col"]),
        helper.make_node("Abs", ["col"], ["abs"]),
        helper.make_node("ReduceMax", ["abs"], ["first"], keepdims=0),
        helper.make_node("Cast", ["first"], ["extra"], to=TensorProto.INT64),
        helper.make_node("Add", ["extra", "width"], ["cols"]),
        helper.make_node("Reshape", ["cols", "one_dim"], ["cols1"]),
        helper.make_node("Concat", ["minus_one", "cols1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["X", "shape"], ["reshaped"]),
        helper.make_node("ReduceSum", ["reshaped", "axis1"], ["rowsum"], keepdims=1),
        helper.make_node("Mul", ["rowsum", "zero"], ["zeroed"]),
        helper.make_node("Sigmoid", ["zeroed"], ["probabilities"]),
    ]
    inits = [
        helper.make_tensor("s0", TensorProto.INT64, [1], [0]),
        helper.make_tensor("s1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
        helper.make_tensor("width", TensorProto.INT64, [], [WIDTH]),
        helper.make_tensor("one_dim", TensorProto.INT64, [1], [1]),
        helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, WIDTH])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1])
    model = helper.make_model(helper.make_graph(nodes, "failing", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "feature_names", json.dumps(demo_feature_names())
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path
