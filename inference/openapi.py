"""The registry's products in the OpenAPI schema: what ``POST /v1/infer`` really takes.

A request is valid only for a product the registry serves and with exactly that product's
features, each a number its models can take (`inference.validation`). A static schema could only
say "an object of numbers" and leave every real request to a 400 it cannot predict; so the schema
is generated from the registry (`inference.serving_config`, what the refresher serves within
seconds) and states, per product, its features and their ranges, in both body forms. A client then
has an exact contract, and a contract test can make valid requests. With no product registered
the generic description stands (and every request answers 400, unknown product).
"""

import sys

import numpy as np
from django.db import DatabaseError

from inference.serving_config import serving_config
from inference.validation import EVENT_ID_MAX_LENGTH
from mlops.api.openapi import NO_NUL_NOT_BLANK

REQUEST_COMPONENT = "InferRequestRequest"  # drf-spectacular's name for InferRequestSerializer's request shape
BATCH_COMPONENT = "BatchRequestRequest"  # ...and for BatchRequestSerializer's

# A float32 input takes every number that rounds to a finite float32: below FLT_MAX plus half its
# last unit (2**128 - 2**103, which itself rounds to infinity), not only up to FLT_MAX.
_FLOAT32_LIMIT = 2.0**128 - 2.0**103
_VALUES = {
    "float": {
        "type": "number",
        "minimum": -_FLOAT32_LIMIT,
        "exclusiveMinimum": True,
        "maximum": _FLOAT32_LIMIT,
        "exclusiveMaximum": True,
    },
    "double": {"type": "number", "minimum": -sys.float_info.max, "maximum": sys.float_info.max},
    "int64": {"type": "integer", "minimum": int(np.iinfo(np.int64).min), "maximum": int(np.iinfo(np.int64).max)},
    "int32": {"type": "integer", "minimum": int(np.iinfo(np.int32).min), "maximum": int(np.iinfo(np.int32).max)},
}
# An event id: a string with something other than whitespace in it and no NUL, or an integer (taken as its
# decimal string; orjson reads one beyond 64 bits as a float, which is refused).
EVENT_ID = {
    "oneOf": [
        {"type": "string", "minLength": 1, "maxLength": EVENT_ID_MAX_LENGTH, "pattern": NO_NUL_NOT_BLANK},
        {"type": "integer", "minimum": -(2**63), "maximum": 2**64 - 1},
    ],
    "description": "The caller's id of the event; it decides the canary route.",
}


def postprocess_infer_requests(result, generator, request, public):
    """drf-spectacular hook: the infer request component as ``oneOf`` per product and body form, and
    the batch envelope closed to other fields."""
    schemas = result.get("components", {}).get("schemas", {})
    if BATCH_COMPONENT in schemas:
        schemas[BATCH_COMPONENT]["additionalProperties"] = False  # `infer_batch_request` refuses other fields
    if REQUEST_COMPONENT not in schemas:
        return result
    try:
        configs = serving_config()
    except DatabaseError:  # no registry to read (`check --deploy` builds the schema without a database)
        return result
    alternatives = []
    for config in configs:
        models = [spec for spec in (config.production, config.canary) if spec is not None]  # what a request may reach
        features = f"Features.{config.product}"
        schemas[features] = _features(models)
        reference = {"$ref": f"#/components/schemas/{features}"}
        product = {"type": "string", "enum": [config.product]}
        alternatives += [
            _envelope(f"{config.product}: features", product, "features", reference),
            _envelope(
                f"{config.product}: payload.features",
                product,
                "payload",
                {
                    "type": "object",
                    "properties": {"features": reference},
                    "required": ["features"],
                    "description": "The event as seed 001 sends it: `features` is scored; its other fields "
                    "(amount, currency, ...) are accepted and not used.",
                },
            ),
        ]
    if alternatives:
        schemas[REQUEST_COMPONENT] = {
            "oneOf": alternatives,
            "description": "A product the registry serves and exactly its features, as `features` or as "
            "`payload.features` (seed 001's form); not both.",
        }
    return result


def _envelope(title: str, product: dict, key: str, value: dict) -> dict:
    return {
        "title": title,
        "type": "object",
        "properties": {"event_id": EVENT_ID, "product": product, key: value},
        "required": ["event_id", "product", key],
        "additionalProperties": False,
    }


def _features(models) -> dict:
    """Every feature the models take, each within every model's input type; nothing when the
    models take different features (a request must suit each model it may reach)."""
    inputs = [spec.input_schema.get("features", []) for spec in models]
    names = [feature["name"] for feature in inputs[0]]
    if any({feature["name"] for feature in features} != set(names) for features in inputs):
        return {"not": {}, "description": "The product's models take different features: no request suits both."}
    values: dict[str, list[dict]] = {name: [] for name in names}
    for features in inputs:
        for feature in features:
            value = _VALUES[feature["type"]]
            if value not in values[feature["name"]]:
                values[feature["name"]].append(value)
    return {
        "type": "object",
        "properties": {name: kinds[0] if len(kinds) == 1 else {"allOf": kinds} for name, kinds in values.items()},
        "required": names,
        "additionalProperties": False,
    }
