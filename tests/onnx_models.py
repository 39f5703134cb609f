"""Deliberately misbehaving ONNX models for ``fraud_score`` (same 30 features as the demo models), shared by the tests.

Both are harmless on the all-zero warm-up row, so they load, and misbehave on real events
(whose first feature, ``mean_radius``, is about 6 to 28):

- `build_slow_model`: a ``Loop`` whose trip count is ``|first feature| x iterations`` (a data
  dependent count, so it cannot be folded at load time). onnxruntime checks the terminate flag
  between the loop's iterations, so a timeout really cancels it.
- `build_failing_model`: a ``Reshape`` to ``[-1, 30 + |first feature|]``, impossible for a real
  row: the run fails with an onnxruntime error.
- `build_fixed_batch_model`: a demo model whose input takes exactly one row.
- `build_non_finite_model`: scores NaN when the first feature is above 25 (a logarithm of a
  negative number), a finite score otherwise.
"""

import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from mlops.demo import demo_feature_names

WIDTH = 30


def _first_feature_nodes(prefix: str) -> list:
    return [
        helper.make_node("Slice", ["X", f"{prefix}_s0", f"{prefix}_s1", f"{prefix}_ax"], [f"{prefix}_col"]),
        helper.make_node("Abs", [f"{prefix}_col"], [f"{prefix}_abs"]),
        helper.make_node("ReduceMax", [f"{prefix}_abs"], [f"{prefix}_max"], keepdims=0),
    ]


def _first_feature_inits(prefix: str) -> list:
    return [
        helper.make_tensor(f"{prefix}_s0", TensorProto.INT64, [1], [0]),
        helper.make_tensor(f"{prefix}_s1", TensorProto.INT64, [1], [1]),
        helper.make_tensor(f"{prefix}_ax", TensorProto.INT64, [1], [1]),
    ]


def _score_nodes(source: str) -> list:
    # probabilities = Sigmoid(0 * sum(source, axis=1)) -> [batch, 1], always 0.5
    return [
        helper.make_node("ReduceSum", [source, "axis1"], ["rowsum"], keepdims=1),
        helper.make_node("Mul", ["rowsum", "zero"], ["zeroed"]),
        helper.make_node("Sigmoid", ["zeroed"], ["probabilities"]),
    ]


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "feature_names", json.dumps(demo_feature_names())
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def _io():
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, WIDTH])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1])
    return x, y


def build_slow_model(path: Path, iterations_per_unit: int = 20_000) -> Path:
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, []),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [])],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    nodes = [
        *_first_feature_nodes("f"),
        helper.make_node("Mul", ["f_max", "per_unit"], ["trips_f"]),
        helper.make_node("Cast", ["trips_f"], ["trips"], to=TensorProto.INT64),
        helper.make_node("Loop", ["trips", "true", "acc0"], ["acc"], body=body),
        helper.make_node("Mul", ["acc", "zero"], ["acc_zero"]),
        helper.make_node("Add", ["X", "acc_zero"], ["X2"]),
        *_score_nodes("X2"),
    ]
    inits = [
        *_first_feature_inits("f"),
        helper.make_tensor("per_unit", TensorProto.FLOAT, [], [float(iterations_per_unit)]),
        helper.make_tensor("true", TensorProto.BOOL, [], [True]),
        helper.make_tensor("acc0", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
    ]
    x, y = _io()
    return _save(helper.make_graph(nodes, "slow", [x], [y], inits), path)


def build_failing_model(path: Path) -> Path:
    nodes = [
        *_first_feature_nodes("f"),
        helper.make_node("Cast", ["f_max"], ["extra"], to=TensorProto.INT64),
        helper.make_node("Add", ["extra", "width"], ["cols"]),
        helper.make_node("Reshape", ["cols", "one_dim"], ["cols1"]),
        helper.make_node("Concat", ["minus_one", "cols1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["X", "shape"], ["reshaped"]),
        *_score_nodes("reshaped"),
    ]
    inits = [
        *_first_feature_inits("f"),
        helper.make_tensor("width", TensorProto.INT64, [], [WIDTH]),
        helper.make_tensor("one_dim", TensorProto.INT64, [1], [1]),
        helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
    ]
    x, y = _io()
    return _save(helper.make_graph(nodes, "failing", [x], [y], inits), path)


def build_broken_model(path: Path) -> Path:
    """A graph that fails on every row, the warm-up's included: ``Reshape`` of ``[batch, 30]`` to ``[-1, 7]``."""
    nodes = [helper.make_node("Reshape", ["X", "shape"], ["reshaped"]), *_score_nodes("reshaped")]
    inits = [
        helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 7]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
    ]
    x, y = _io()
    return _save(helper.make_graph(nodes, "broken", [x], [y], inits), path)


def build_fixed_batch_model(path: Path, source: Path) -> Path:
    """``source`` (a demo model) with its input's batch dimension fixed at 1, as some exporters write it."""
    model = onnx.load(str(source))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    path.write_bytes(model.SerializeToString())
    return path


def build_non_finite_model(path: Path) -> Path:
    # probabilities = Sigmoid(x0 - 15 + 0 * log(25 - x0)): NaN where x0 > 25
    nodes = [
        helper.make_node("Slice", ["X", "s0", "s1", "ax"], ["x0"]),
        helper.make_node("Sub", ["limit", "x0"], ["room"]),
        helper.make_node("Log", ["room"], ["log"]),
        helper.make_node("Mul", ["log", "zero"], ["nan_or_zero"]),
        helper.make_node("Sub", ["x0", "centre"], ["centred"]),
        helper.make_node("Add", ["centred", "nan_or_zero"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probabilities"]),
    ]
    inits = [
        helper.make_tensor("s0", TensorProto.INT64, [1], [0]),
        helper.make_tensor("s1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
        helper.make_tensor("limit", TensorProto.FLOAT, [], [25.0]),
        helper.make_tensor("centre", TensorProto.FLOAT, [], [15.0]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
    ]
    x, y = _io()
    return _save(helper.make_graph(nodes, "non_finite", [x], [y], inits), path)
