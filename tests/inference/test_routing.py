"""Deterministic canary routing (DESIGN.md §3): pure functions, no database."""

import hashlib

import pytest

from inference.routing import bucket, in_canary, in_shadow_sample

EVENTS = [f"evt-{i}" for i in range(10_000)]


def test_bucket_is_the_documented_function():
    expected = int.from_bytes(hashlib.sha256(b"fraud_score:evt-0").digest()[:8], "big") % 10_000
    assert bucket("fraud_score", "evt-0") == expected


def test_bucket_is_stable_across_processes_and_restarts():
    # Fixed values: a salted hash (Python's hash()) would change them on every run.
    assert [bucket("fraud_score", f"evt-{i}") for i in range(3)] == [4509, 6623, 996]


def test_same_event_always_gets_the_same_route():
    first = [in_canary("fraud_score", event, 2_500) for event in EVENTS]
    assert first == [in_canary("fraud_score", event, 2_500) for event in EVENTS]


@pytest.mark.parametrize("basis_points", [100, 1_000, 2_500, 5_000, 9_000])
def test_canary_share_is_within_one_point_of_the_setting(basis_points):
    share = sum(in_canary("fraud_score", event, basis_points) for event in EVENTS) / len(EVENTS)
    assert abs(share - basis_points / 10_000) <= 0.01


def test_no_event_leaves_the_canary_when_the_share_grows():
    ladder = [0, 100, 1_000, 2_500, 5_000, 10_000]
    previous: set[str] = set()
    for basis_points in ladder:
        current = {event for event in EVENTS if in_canary("fraud_score", event, basis_points)}
        assert previous <= current
        previous = current
    assert len(previous) == len(EVENTS)


def test_zero_share_routes_nothing_to_the_canary():
    assert not any(in_canary("fraud_score", event, 0) for event in EVENTS)


def test_products_split_independently():
    a = {event for event in EVENTS if in_canary("fraud_score", event, 1_000)}
    b = {event for event in EVENTS if in_canary("other_product", event, 1_000)}
    assert a != b


def test_shadow_sample_is_independent_of_the_canary_split():
    canary = {event for event in EVENTS if in_canary("fraud_score", event, 1_000)}
    sample = {event for event in EVENTS if in_shadow_sample("fraud_score", event, 1_000)}
    assert abs(len(sample) / len(EVENTS) - 0.1) <= 0.01
    assert 0 < len(canary & sample) < len(canary) / 2
    assert all(in_shadow_sample("fraud_score", event, 10_000) for event in EVENTS[:100])
