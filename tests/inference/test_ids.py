"""Prediction ids are time-ordered UUIDs (version 7), so a read-back can tell how old one is."""

import time
import uuid

from audit.records import issued_at_ms
from inference.ids import new_prediction_id


def test_ids_are_rfc_9562_version_7_and_unique():
    ids = [new_prediction_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert {(i.version, i.variant) for i in ids} == {(7, uuid.RFC_4122)}


def test_an_id_carries_the_millisecond_it_was_made_and_sorts_by_it(monkeypatch):
    now = time.time_ns()
    first = new_prediction_id()
    monkeypatch.setattr("inference.ids.time.time_ns", lambda: now + 2_000_000)  # two milliseconds later
    second = new_prediction_id()
    assert issued_at_ms(first) in (now // 1_000_000, now // 1_000_000 + 1)
    assert issued_at_ms(second) == (now + 2_000_000) // 1_000_000
    assert first < second and str(first) < str(second)


def test_older_random_ids_have_no_time():
    assert issued_at_ms(uuid.uuid4()) is None
