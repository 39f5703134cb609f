"""Reads a model's input schema and score output from its ONNX graph.

Two input layouts are supported:
- ``tensor``: one 2-D input ``[batch, n_features]`` (what skl2onnx makes). The graph has no
  feature names, so they come from the model's metadata property ``feature_names`` (a JSON
  list written when the model is built) or, failing that, ``f0..f{n-1}``.
- ``columns``: one ``[batch, 1]`` input per feature; the input names are the feature names.

The score is the positive-class probability: the first float output shaped ``[batch, 2]``
(column 1) or ``[batch, 1]`` (column 0).
"""

import json
from pathlib import Path

import onnx
from onnx import TensorProto


class SchemaError(ValueError):
    """The ONNX graph cannot be served: unreadable, or inputs/outputs we cannot map."""


_TYPE_NAMES = {TensorProto.FLOAT: "float", TensorProto.DOUBLE: "double", TensorProto.INT64: "int64", TensorProto.INT32: "int32"}


def _dims(value_info) -> list[int | None]:
    return [dim.dim_value if dim.HasField("dim_value") else None for dim in value_info.type.tensor_type.shape.dim]


def _type_name(value_info) -> str:
    elem_type = value_info.type.tensor_type.elem_type
    try:
        return _TYPE_NAMES[elem_type]
    except KeyError:
        raise SchemaError(f"input/output {value_info.name!r} has unsupported element type {elem_type}") from None


def read_schema(path: Path) -> tuple[dict, dict]:
    """Return ``(input_schema, output_schema)`` for the ONNX model at ``path``."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several unrelated types for a corrupt file
        raise SchemaError(f"not a readable ONNX model: {exc}") from None
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if not inputs:
        raise SchemaError("the graph has no inputs")
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    return _input_schema(inputs, metadata), _output_schema(graph.output)


def _input_schema(inputs, metadata: dict) -> dict:
    if len(inputs) == 1 and len(_dims(inputs[0])) == 2 and _dims(inputs[0])[1] not in (None, 1):
        tensor = inputs[0]
        width = _dims(tensor)[1]
        names = json.loads(metadata["feature_names"]) if "feature_names" in metadata else [f"f{i}" for i in range(width)]
        if len(names) != width:
            raise SchemaError(f"feature_names lists {len(names)} names for an input of width {width}")
        dtype = _type_name(tensor)
        return {
            "layout": "tensor",
            "input_name": tensor.name,
            "input_shape": _dims(tensor),
            "features": [{"name": n, "type": dtype} for n in names],
        }
    for value in inputs:
        if _dims(value)[-1:] not in ([1], [None]) or len(_dims(value)) > 2:
            raise SchemaError(f"input {value.name!r} has shape {_dims(value)}; expected [batch, 1] per feature")
    return {
        "layout": "columns",
        "features": [{"name": value.name, "type": _type_name(value), "shape": _dims(value)} for value in inputs],
    }


def describe_inputs(input_schema: dict) -> dict:
    """A stored input schema as the API shows it: each feature's name and type, and each input tensor
    of the graph with its shape (``None`` for a dimension of any size, such as the batch).

    Schemas registered before shapes were recorded get the shape every servable graph has: one
    ``[batch, n]`` tensor, or one ``[batch, 1]`` tensor per feature.
    """
    features = input_schema.get("features", [])
    if input_schema.get("layout") == "tensor":
        dtype = features[0]["type"] if features else "float"
        tensors = [{"name": input_schema["input_name"], "type": dtype, "shape": input_schema.get("input_shape", [None, len(features)])}]
    else:
        tensors = [{"name": f["name"], "type": f["type"], "shape": f.get("shape", [None, 1])} for f in features]
    return {
        "layout": input_schema.get("layout", "columns"),
        "features": [{"name": f["name"], "type": f["type"]} for f in features],
        "tensors": tensors,
    }


def _output_schema(outputs) -> dict:
    described = [{"name": out.name, "shape": _dims(out)} for out in outputs]
    for index, out in enumerate(outputs):
        if out.type.tensor_type.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE):
            continue
        dims = _dims(out)
        if len(dims) == 2 and dims[1] in (1, 2):
            return {"outputs": described, "score_output": out.name, "score_index": index, "score_column": dims[1] - 1}
    raise SchemaError("no float output shaped [batch, 2] or [batch, 1] to read a score from")
