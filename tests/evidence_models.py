"""Models that differ from a demo model in known ways, for testing the evidence end to end.

Each is the demo model's ONNX graph with a few nodes appended after its ``probabilities``
output (skl2onnx's [batch, 2] class probabilities; the platform scores the positive column):

- `build_biased_model`: the positive class's logit shifted by ``shift`` (more blocks when positive);
- `build_segment_erring_model`: the positive probability turned around (p -> 1 - p) on the rows
  whose feature ``feature_index`` is above ``above``, unchanged elsewhere: a model better or
  equal overall that is wrong for one segment.

An identical copy is the demo file itself, registered as another version.
"""

from pathlib import Path

import onnx
from onnx import TensorProto, helper

SCORE_OUTPUT = "probabilities"


def _rewire(source: Path, path: Path, nodes: list, inits: list) -> Path:
    """``source``'s graph with its probabilities renamed ``raw`` and ``nodes`` computing new ones from it."""
    model = onnx.load(str(source))
    for node in model.graph.node:
        node.output[:] = ["raw" if name == SCORE_OUTPUT else name for name in node.output]
    common = [
        helper.make_node("Slice", ["raw", "c1", "c2", "ax1"], ["p1"]),
        *nodes,  # p1 -> q1 (the new positive probability)
        helper.make_node("Sub", ["one", "q1"], ["q0"]),
        helper.make_node("Concat", ["q0", "q1"], [SCORE_OUTPUT], axis=1),
    ]
    model.graph.node.extend(common)
    model.graph.initializer.extend(
        [
            helper.make_tensor("c1", TensorProto.INT64, [1], [1]),
            helper.make_tensor("c2", TensorProto.INT64, [1], [2]),
            helper.make_tensor("ax1", TensorProto.INT64, [1], [1]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
            *inits,
        ]
    )
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def build_biased_model(source: Path, path: Path, shift: float) -> Path:
    nodes = [
        helper.make_node("Clip", ["p1", "tiny", "almost_one"], ["p1c"]),
        helper.make_node("Sub", ["one", "p1c"], ["p0c"]),
        helper.make_node("Div", ["p1c", "p0c"], ["odds"]),
        helper.make_node("Log", ["odds"], ["logit"]),
        helper.make_node("Add", ["logit", "shift"], ["shifted"]),
        helper.make_node("Sigmoid", ["shifted"], ["q1"]),
    ]
    inits = [
        helper.make_tensor("tiny", TensorProto.FLOAT, [], [1e-7]),
        helper.make_tensor("almost_one", TensorProto.FLOAT, [], [1 - 1e-7]),
        helper.make_tensor("shift", TensorProto.FLOAT, [], [shift]),
    ]
    return _rewire(source, path, nodes, inits)


def build_segment_erring_model(source: Path, path: Path, *, feature_index: int, above: float) -> Path:
    nodes = [
        helper.make_node("Slice", ["X", "f0", "f1", "ax1"], ["feature"]),
        helper.make_node("Greater", ["feature", "bound"], ["in_segment"]),
        helper.make_node("Sub", ["one", "p1"], ["flipped"]),
        helper.make_node("Where", ["in_segment", "flipped", "p1"], ["q1"]),
    ]
    inits = [
        helper.make_tensor("f0", TensorProto.INT64, [1], [feature_index]),
        helper.make_tensor("f1", TensorProto.INT64, [1], [feature_index + 1]),
        helper.make_tensor("bound", TensorProto.FLOAT, [], [above]),
    ]
    return _rewire(source, path, nodes, inits)
