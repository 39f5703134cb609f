"""Explicit input validation of the inference API.

Written as plain functions rather than DRF serializers: a DRF ``DictField(child=FloatField())``
over 30 features costs more than the model run, and these checks need the product's schema
from the serving snapshot anyway. Every error names the field (dotted path) it is about, so
the API answers ``{"error": {"code": "invalid_input", "fields": {"features.amount": [...]}}}``.

Each refusal also carries a *reason* for the ``mlops_inference_invalid_inputs`` metric:
``malformed_json``, ``body_too_large``, ``batch_too_large``, ``invalid_envelope``,
``unknown_product``, ``missing_feature``, ``extra_feature``, ``non_numeric``, ``non_finite``,
``non_integral``.

Each model gets the row in its own feature order and input type (`feature_rows`). A model that
takes integers refuses a value it could only take by truncating it (``1.5`` for an int64
input), naming the feature; a whole value sent as a float (``3.0``) is taken as it is.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

EVENT_ID_MAX_LENGTH = 200  # PredictionLog.event_id
_NUMBER_TYPES = (int, float)
# The integer input types a registered schema may name (`inference.session`), with their range.
_INTEGER_BOUNDS = {dtype: (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)) for dtype in (np.int64, np.int32)}


class InvalidInput(Exception):
    """The request cannot be served as sent; ``fields`` maps each bad field to its messages."""

    def __init__(self, fields: dict[str, list[str]], reasons: set[str] | str):
        super().__init__("; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items()))
        self.fields = fields
        self.reasons = {reasons} if isinstance(reasons, str) else set(reasons)

    def merge(self, other: "InvalidInput") -> None:
        for name, messages in other.fields.items():  # two models may refuse the same feature
            known = self.fields.setdefault(name, [])
            known.extend(message for message in messages if message not in known)
        self.reasons |= other.reasons


@dataclass(frozen=True)
class InferRequest:
    event_id: str
    product: str
    features: dict


def check_body_size(content_length: str | None, limit: int) -> None:
    """Refuse a body announced larger than ``limit`` before a byte of it is read."""
    try:
        length = int(content_length or 0)
    except ValueError:
        raise InvalidInput({"body": ["Content-Length is not a number."]}, "malformed_json") from None
    if length > limit:
        raise InvalidInput({"body": [f"The body is {length} bytes; at most {limit} are accepted."]}, "body_too_large")


def parse_json(raw: bytes, limit: int) -> Any:
    if len(raw) > limit:  # a body sent without Content-Length (chunked) is cut at limit + 1
        raise InvalidInput({"body": [f"The body is larger than {limit} bytes."]}, "body_too_large")
    if not raw:
        raise InvalidInput({"body": ["The body is empty; send a JSON object."]}, "malformed_json")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput({"body": [f"Malformed JSON: {exc}."]}, "malformed_json") from None


_ALLOWED_KEYS = {"event_id", "product", "features", "payload"}


def infer_request(data: Any, prefix: str = "") -> InferRequest:
    """The envelope of one prediction request: ``{event_id, product, features}`` or seed 001's
    ``{event_id, product, payload: {features}}``; both become the same `InferRequest`."""
    where = prefix.rstrip(".") or "body"
    if not isinstance(data, dict):
        raise InvalidInput({where: ["Expected a JSON object."]}, "invalid_envelope")
    fields: dict[str, list[str]] = {}
    for key in data.keys() - _ALLOWED_KEYS:
        fields[f"{prefix}{key}"] = ["Unknown field."]
    event_id = data.get("event_id")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        event_id = str(event_id)
    if not isinstance(event_id, str) or not event_id.strip():
        fields[f"{prefix}event_id"] = ["This field is required and must be a non-empty string."]
    elif len(event_id) > EVENT_ID_MAX_LENGTH:
        fields[f"{prefix}event_id"] = [f"At most {EVENT_ID_MAX_LENGTH} characters."]
    elif "\x00" in event_id:  # the log's text columns cannot hold one: the answered prediction would not be recorded
        fields[f"{prefix}event_id"] = ["Must not contain NUL characters."]
    product = data.get("product")
    if not isinstance(product, str) or not product:
        fields[f"{prefix}product"] = ["This field is required and must be a string."]
    features = data.get("features")
    if "payload" in data:
        payload = data["payload"]
        if "features" in data:  # even null: the schema's two forms exclude each other (inference.openapi)
            fields[f"{prefix}payload"] = ["Send either features or payload.features, not both."]
        elif not isinstance(payload, dict) or not isinstance(payload.get("features"), dict):
            fields[f"{prefix}payload.features"] = ["This field is required and must be an object of feature values."]
        else:
            # The payload is the event as seed 001 sends it (amount, currency, country, ...): the model
            # scores its features; the rest is the client's context, accepted and not used.
            features = payload["features"]
    elif not isinstance(features, dict):
        fields[f"{prefix}features"] = ["This field is required and must be an object of feature values."]
    if fields:
        raise InvalidInput(fields, "invalid_envelope")
    return InferRequest(event_id=event_id, product=product, features=features)


def infer_batch_request(data: Any, max_items: int) -> tuple[list[InferRequest | None], InvalidInput | None]:
    """The envelope of a batch, ``{"items": [<infer request>, ...]}``: its items, ``None`` for each
    item refused, and those items' problems together (the features are checked by the service,
    against each item's product, and reported with them). An envelope that is not a non-empty
    list of at most ``max_items`` items, or that has other fields, is refused as a whole."""
    if not isinstance(data, dict) or not isinstance(data.get("items"), list) or not data["items"]:
        raise InvalidInput({"items": ["This field is required and must be a non-empty list."]}, "invalid_envelope")
    if len(data["items"]) > max_items:
        raise InvalidInput({"items": [f"At most {max_items} items per batch; got {len(data['items'])}."]}, "batch_too_large")
    if extra := data.keys() - {"items"}:
        raise InvalidInput({key: ["Unknown field."] for key in extra}, "invalid_envelope")
    items: list[InferRequest | None] = []
    problems = None
    for index, entry in enumerate(data["items"]):
        try:
            items.append(infer_request(entry, prefix=f"items.{index}."))
        except InvalidInput as exc:
            items.append(None)
            if problems is None:
                problems = exc
            else:
                problems.merge(exc)
    return items, problems


class ModelInput(Protocol):
    """What a model takes: its features in order and their input type (`inference.session.LoadedModel`)."""

    feature_names: tuple[str, ...]
    dtype: type


def same_input(first: ModelInput, second: ModelInput) -> bool:
    """Whether the two models take the very same row (feature order and input type)."""
    return first.dtype is second.dtype and first.feature_names == second.feature_names


def feature_rows(features: dict, models: Sequence[ModelInput], prefix: str = "") -> list[np.ndarray]:
    """One ``[1, n]`` row per model, each in that model's feature order and input type (a model
    that takes the same input as an earlier one shares its row), or `InvalidInput`.

    Every model is checked: the request must suit each model it may reach, so the error names
    every feature any of them refuses, whichever of them refused it.
    """
    rows: list[np.ndarray | None] = []
    problems = None
    for model in models:
        twin = next((index for index, earlier in enumerate(models[: len(rows)]) if same_input(earlier, model)), None)
        if twin is not None:
            rows.append(rows[twin])
            continue
        try:
            rows.append(feature_row(features, model.feature_names, model.dtype, prefix))
        except InvalidInput as exc:
            rows.append(None)
            if problems is None:
                problems = exc
            else:
                problems.merge(exc)
    if problems is not None:
        raise problems
    return rows


def feature_row(features: dict, names: tuple[str, ...], dtype, prefix: str = "") -> np.ndarray:
    """The features as one ``[1, n]`` row in schema order and model dtype, or `InvalidInput`."""
    if len(features) == len(names):
        try:
            values = [features[name] for name in names]
        except KeyError:
            values = None
        if values is not None and all(type(value) in _NUMBER_TYPES for value in values):
            bounds = _INTEGER_BOUNDS.get(dtype)
            if bounds is None:
                with np.errstate(over="ignore"):
                    row = np.array(values, dtype=dtype).reshape(1, -1)
                if np.isfinite(row).all():
                    return row
            elif all(_whole(value) and bounds[0] <= value <= bounds[1] for value in values):
                # Checked first: numpy would truncate 1.5 to 1 and raise on a value out of range.
                return np.array(values, dtype=dtype).reshape(1, -1)
    return _feature_errors(features, names, dtype, prefix)


def _feature_errors(features: dict, names: tuple[str, ...], dtype, prefix: str) -> np.ndarray:
    fields: dict[str, list[str]] = {}
    reasons: set[str] = set()
    bounds = _INTEGER_BOUNDS.get(dtype)
    for name in names:
        key = f"{prefix}features.{name}"
        if name not in features:
            fields[key] = ["This feature is required."]
            reasons.add("missing_feature")
            continue
        value = features[name]
        if isinstance(value, bool) or not isinstance(value, _NUMBER_TYPES):
            fields[key] = [f"Must be a number, not {type(value).__name__ if value is not None else 'null'}."]
            reasons.add("non_numeric")
        elif bounds is not None and math.isfinite(value) and not _whole(value):
            fields[key] = [f"Must be a whole number: a model of this product takes {dtype.__name__} inputs."]
            reasons.add("non_integral")
        elif not math.isfinite(float(value)) or not _fits(value, dtype, bounds):
            fields[key] = ["Must be a finite number within the model's range."]
            reasons.add("non_finite")
    known = set(names)
    for name in features:
        if name not in known:
            fields[f"{prefix}features.{name}"] = ["Unknown feature for this product."]
            reasons.add("extra_feature")
    if not fields:  # cannot happen, but never return garbage
        fields[f"{prefix}features"] = ["Invalid features."]
        reasons.add("non_numeric")
    raise InvalidInput(fields, reasons)


def _whole(value: int | float) -> bool:
    return type(value) is int or value.is_integer()


def _fits(value, dtype, bounds: tuple[int, int] | None) -> bool:
    if bounds is not None:
        return bounds[0] <= value <= bounds[1]
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.array(value, dtype=dtype)))
