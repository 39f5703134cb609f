"""The COPY store writes exactly the values it is given, in binary format, and still takes old spill files."""

import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

from audit import spill
from audit.logstore import PostgresCopyStore
from audit.models import PredictionLog
from audit.writer import replay_file
from tests.audit.conftest import make_record

pytestmark = pytest.mark.usefixtures("postgresql")

# A line of a spill file as the writer wrote it before COPY went binary (uuids and the datetime as
# text): files left by an older release must still replay.
OLD_SPILL_LINE = (
    b'{"prediction_id":"0190d3f8-5b2a-7c3d-8e4f-0a1b2c3d4e5f","request_id":"r-1","client":"bank",'
    b'"event_id":"evt-old","product":"fraud_score","model_version_id":"%s","role":"shadow",'
    b'"features":{"amount":12.5,"country":"NL"},"score":0.25,"decision":"allow","threshold":0.5,'
    b'"explain_summary":[],"latency_ms":1.5,"cached":false,"fallback_from_id":null,"fallback_reason":"",'
    b'"primary_prediction_id":"0190d3f8-5b2a-7c3d-8e4f-0a1b2c3d4e50","score_diff":0.125,"diff_class":"minimal",'
    b'"decision_agrees":true,"created_at":"2026-11-30T12:34:56.789012+00:00"}\n'
)


@pytest.fixture
def store():
    store = PostgresCopyStore()
    yield store
    store.close()


def stored(prediction_id) -> PredictionLog:
    return PredictionLog.objects.get(pk=prediction_id)


def test_tricky_values_are_stored_as_given(transactional_db, production_version, store):
    big = {f"k{i}": {"nested": [i, -i * 1.5, None, "ü€😀"], "flag": i % 2 == 0} for i in range(5_000)}
    features = {"text": "naïve ☃ \u202eRTL 😀", "tiny": 5e-324, "huge": 1e20, "neg_zero": -0.0, "none": None}
    record = make_record(
        production_version,
        features={**features, "big": big},
        explain_summary=[{"feature": "text", "value": "ü", "contribution": -0.000001}],
        client="ünïcødé client",
        score=0.1 + 0.2,  # not representable in decimal text without care
        latency_ms=1e-9,
        created_at=datetime(2026, 12, 1, 0, 0, 0, 1, tzinfo=UTC),
    )
    assert store.insert([record]) == 1
    row = stored(record["prediction_id"])
    assert row.features == {**features, "big": big}
    assert row.explain_summary == record["explain_summary"]
    assert (row.client, row.score, row.latency_ms, row.created_at) == (record["client"], 0.1 + 0.2, 1e-9, record["created_at"])
    # Left out: the model's defaults; given as None: NULL.
    shadow_fields = (row.fallback_from_id, row.primary_prediction_id, row.score_diff, row.diff_class, row.decision_agrees)
    assert shadow_fields == (None, None, None, "", None)


def test_numpy_values_from_a_model_are_stored_as_numbers(transactional_db, production_version, store):
    record = make_record(production_version, score=np.float32(0.75), features={"amount": np.float64(12.5), "n": np.int64(3)})
    store.insert([record])
    row = stored(record["prediction_id"])
    assert (row.score, row.features) == (0.75, {"amount": 12.5, "n": 3})


def test_values_given_as_text_are_converted_to_their_column_type(transactional_db, production_version, store):
    record = make_record(production_version)
    as_text = {**record, "prediction_id": str(record["prediction_id"]), "created_at": record["created_at"].isoformat(), "score": "0.5"}
    assert store.insert([as_text]) == 1
    row = stored(record["prediction_id"])
    assert (row.created_at, row.score) == (record["created_at"], 0.5)


def test_a_replayed_batch_inserts_only_the_new_rows(transactional_db, production_version, store):
    first = [make_record(production_version) for _ in range(3)]
    store.insert(first)
    assert store.insert([*first, make_record(production_version)]) == 1
    assert PredictionLog.objects.count() == 4


def test_a_spill_file_written_before_binary_copy_replays(transactional_db, production_version, store, tmp_path):
    path = tmp_path / "spill-host-1-20261130T123456000000-1.ndjson"
    path.write_bytes(OLD_SPILL_LINE % str(production_version.pk).encode())
    result = replay_file(path, store=store, spill_dir=tmp_path)
    assert (result.records, result.inserted, result.error) == (1, 1, None)
    row = stored(uuid.UUID("0190d3f8-5b2a-7c3d-8e4f-0a1b2c3d4e5f"))
    assert row.primary_prediction_id == uuid.UUID("0190d3f8-5b2a-7c3d-8e4f-0a1b2c3d4e50")
    assert row.created_at == datetime(2026, 11, 30, 12, 34, 56, 789012, tzinfo=UTC)
    assert (row.features, row.score_diff, row.decision_agrees) == ({"amount": 12.5, "country": "NL"}, 0.125, True)
    # And the writer still writes that format.
    assert spill.dumps({"created_at": row.created_at, "prediction_id": row.pk}) == (
        b'{"created_at":"2026-11-30T12:34:56.789012+00:00","prediction_id":"0190d3f8-5b2a-7c3d-8e4f-0a1b2c3d4e5f"}\n'
    )
