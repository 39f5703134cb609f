"""Parsing a JSON body with a DRF serializer so that the server takes exactly what the schema says.

DRF is lenient where the OpenAPI schema is not: a ``CharField`` takes ``0`` as ``"0"``, a
``BooleanField`` takes ``"yes"``, a ``UUIDField`` takes an integer. The schema (drf-spectacular)
documents each field by its JSON type, so a client reading it, and a contract test like
schemathesis, rightly expects ``{"source": 0}`` to be refused. `parse` refuses a value whose JSON
type is not the documented one, naming the field, and otherwise validates as DRF does.

A field that refers to an object (``code="does_not_exist"`` on its error, as `mlops.views`'
model version ids raise) answers 404 naming the field when nothing else is wrong with the body:
see `mlops.api.errors.UnknownReference`.
"""

from decimal import ROUND_HALF_UP, Decimal

from django.http import QueryDict
from rest_framework import serializers

from mlops.api.errors import UnknownReference

DOES_NOT_EXIST = "does_not_exist"  # the error code of a reference to an object that does not exist

_NUMBER = (int, float)
# The JSON types each DRF field takes, as drf-spectacular documents it (most specific class first).
_JSON_TYPES: list[tuple[type, tuple[type, ...], str]] = [
    (serializers.BooleanField, (bool,), "a boolean"),
    (serializers.IntegerField, (int,), "an integer"),
    (serializers.FloatField, _NUMBER, "a number"),
    (serializers.ChoiceField, (str,), "a string"),  # every choice set of this API is strings
    (serializers.CharField, (str,), "a string"),
    (serializers.UUIDField, (str,), "a string"),
    (serializers.DateTimeField, (str,), "a string"),
    (serializers.DictField, (dict,), "an object"),
    (serializers.ListField, (list,), "a list"),
    (serializers.Serializer, (dict,), "an object"),
    (serializers.ListSerializer, (list,), "a list"),
]


def _expected(field) -> tuple[tuple[type, ...], str] | None:
    for field_class, types, name in _JSON_TYPES:
        if isinstance(field, field_class):
            return types, name
    return getattr(field, "json_types", None)  # a field of ours may declare its own (PercentField)


def type_errors(field, value, path: str) -> dict[str, list[str]]:
    """``{dotted path: [message]}`` for every value (nested ones too) whose JSON type ``field`` does not take."""
    if value is None:
        return {}  # null: DRF's allow_null check answers it, as documented (nullable)
    expected = _expected(field)
    if expected is not None:
        types, name = expected
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return {path: [f"Must be {name}."]}
    errors: dict[str, list[str]] = {}
    if isinstance(field, serializers.ListSerializer):
        for index, item in enumerate(value):
            errors.update(type_errors(field.child, item, f"{path}.{index}" if path else str(index)))
    elif isinstance(field, serializers.Serializer):
        for name, child in field.fields.items():
            if not child.read_only and name in value:
                errors.update(type_errors(child, value[name], f"{path}.{name}" if path else name))
    elif isinstance(field, serializers.ListField | serializers.DictField) and field.child is not None:
        items = enumerate(value) if isinstance(value, list) else value.items()
        for key, item in items:
            errors.update(type_errors(field.child, item, f"{path}.{key}"))
    return errors


def parse_query(serializer_class: type[serializers.Serializer], query: QueryDict):
    """`parse` for a query string: its values as given (``?product=`` is an empty, hence invalid,
    product, as the schema's ``minLength`` says; DRF would take an empty form value as absent)."""
    return parse(serializer_class, query.dict(), json=False)


def parse(serializer_class: type[serializers.Serializer], data, *, many: bool = False, json: bool = True, **kwargs):
    """``serializer_class(data=data, many=many).validated_data``, or the error that answers the body:
    400 naming every bad field (JSON types included), or 404 naming the fields that refer to
    objects that do not exist when they are all that is wrong."""
    serializer = serializer_class(data=data, many=many, **kwargs)
    errors = type_errors(serializer, data, "") if json else {}  # a query string has only strings
    if "" in errors:  # the body itself has the wrong type: nothing inside it can be checked
        raise serializers.ValidationError({"non_field_errors": errors[""]})
    valid = serializer.is_valid()
    if valid and not errors:
        return serializer.validated_data
    found = {} if valid else serializer.errors
    detail = {str(key): value for key, value in (enumerate(found) if isinstance(found, list) else found.items()) if value}
    if not errors and _only(serializers.ValidationError(detail).get_codes(), DOES_NOT_EXIST):
        raise UnknownReference(detail)
    # A type error replaces DRF's own message for that field (DRF may have coerced the value).
    raise serializers.ValidationError({**{key: value for key, value in detail.items() if key not in errors}, **errors})


def _only(codes, code: str) -> bool:
    """Whether every error code in DRF's nested ``get_codes()`` answer is ``code``."""
    if isinstance(codes, dict):
        return bool(codes) and all(_only(value, code) for value in codes.values())
    if isinstance(codes, list):
        return bool(codes) and all(_only(value, code) for value in codes)
    return codes == code


class PercentField(serializers.FloatField):
    """A share in percent: any JSON number from 0 to 100, rounded half up to the nearest basis
    point (0.01 %), the unit the registry keeps; the answer shows the share in effect.

    A number rather than a decimal string: that is what clients send, and a schema cannot state
    "at most two decimal places" of a JSON number (``multipleOf: 0.01`` fails on binary floats:
    0.57 is not a multiple of 0.01 to a JSON Schema validator), so any precision is taken.
    """

    def __init__(self, **kwargs):
        super().__init__(min_value=0, max_value=100, **kwargs)

    def run_validation(self, data=serializers.empty):
        value = super().run_validation(data)  # the range is checked first: 1e308 is refused, not quantized
        return value if value is None else Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
