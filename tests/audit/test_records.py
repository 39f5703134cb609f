"""The prediction-record type agrees with the `PredictionLog` table, and every field set is part of it."""

import pytest

from audit import records
from audit.models import PredictionLog

COLUMNS = {field.attname: field for field in PredictionLog._meta.concrete_fields}


def test_the_record_type_names_every_column_of_the_log_in_column_order():
    assert tuple(COLUMNS) == records.STORED


def test_a_field_is_required_exactly_when_its_column_has_no_default():
    optional = {name for name, field in COLUMNS.items() if field.has_default() or field.null or field.blank}
    assert COLUMNS.keys() - optional == records.REQUIRED


def test_a_field_left_out_is_stored_as_the_columns_default():
    assert records.DEFAULTS.keys() == set(records.STORED) - records.REQUIRED
    assert {name: COLUMNS[name].get_default() for name in records.DEFAULTS} == records.DEFAULTS


@pytest.mark.parametrize("name", ["LIVE", "EXPORT", "API", "READ_BACK"])
def test_every_field_set_is_made_of_stored_fields_each_once(name):
    fields = getattr(records, name)
    assert set(fields) <= set(records.STORED)
    assert len(set(fields)) == len(fields)


def test_the_export_carries_every_stored_field_but_the_client():
    assert set(records.STORED) - set(records.EXPORT) == {"client"}


def test_the_live_pages_never_receive_features_explanations_or_the_client():
    assert {"features", "explain_summary", "client"}.isdisjoint(records.LIVE)
