"""The rollups say what the raw rows say: for any window, every figure of health and of the summary
read from them equals the same figure computed from the log's rows, however the rows arrived (the
writer's COPY, a replayed spill, outcomes before or after their predictions, a rebuild, retention)."""

import math
import random
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models import Avg, Count, Q

from audit import services
from audit.logstore import OrmStore, PostgresCopyStore
from audit.models import PredictionLog, PredictionRollup
from audit.rollups import histograms
from audit.rollups.selectors import outcome_label, raw_figures
from audit.rollups.store import django_sink, roll_up
from audit.selectors.health import Side, health_of, model_health
from audit.selectors.summary import prediction_log_summary
from tests.audit.conftest import make_record

PRODUCT = "fraud_score"
# Three hours and a bit before a fixed moment, so windows cross whole hours and cut minutes.
END = datetime(2026, 12, 2, 15, 37, 20, 500_000, tzinfo=UTC)
START = END - timedelta(hours=3, minutes=10)


def traffic(production, canary, draw: random.Random, count: int = 900) -> list[dict]:
    """Answers of both sides, canary failovers, shadow runs of the canary model, spread over the span."""
    records = []
    for _ in range(count):
        when = START + timedelta(seconds=draw.uniform(0, (END - START).total_seconds()))
        role = draw.choice(["production", "production", "canary"])
        version = canary if role == "canary" else production
        score = draw.random()
        extra = {}
        if role == "canary" and draw.random() < 0.1:  # failed over: production answered
            version, role, extra = production, "production", {"fallback_from_id": canary.pk, "fallback_reason": "error"}
        answer = make_record(
            version,
            role=role,
            score=score,
            decision="block" if score >= 0.6 else "review" if score >= 0.4 else "allow",
            latency_ms=draw.lognormvariate(1, 0.6),
            cached=draw.random() < 0.1,
            created_at=when,
            **extra,
        )
        records.append(answer)
        if role == "production" and draw.random() < 0.4:
            agrees = draw.random() < 0.8
            records.append(
                make_record(
                    canary,
                    role="shadow",
                    event_id=answer["event_id"],
                    primary_prediction_id=answer["prediction_id"],
                    score=draw.random(),
                    decision=answer["decision"] if agrees else "review",
                    latency_ms=draw.lognormvariate(1.5, 0.5),
                    score_diff=draw.random() / 2,
                    diff_class=draw.choice(["minimal", "moderate", "significant"]),
                    decision_agrees=agrees,
                    created_at=when,
                )
            )
    return records


def outcomes_for(records: list[dict], draw: random.Random) -> list[dict]:
    """Labels for a third of the events; some corrected later, some about another prediction of the event."""
    items = []
    for record in records:
        if record["role"] == "shadow" or draw.random() > 0.35:
            continue
        label = draw.random() < 0.3
        observed = END + timedelta(minutes=1)
        items.append({"product": PRODUCT, "event_id": record["event_id"], "label": label, "observed_at": observed, "source": "a"})
        if draw.random() < 0.15:
            later = {"label": not label, "observed_at": observed + timedelta(minutes=1), "source": "b"}
            items.append({"product": PRODUCT, "event_id": record["event_id"], **later})
        elif draw.random() < 0.1:
            other = {"prediction_id": uuid.uuid4(), "label": not label, "observed_at": observed, "source": "c"}
            items.append({"product": PRODUCT, "event_id": record["event_id"], **other})
    return items


WINDOWS = [
    (START, END + timedelta(seconds=1)),  # everything
    (START + timedelta(minutes=7, seconds=13), END - timedelta(minutes=3, seconds=2)),  # cut minutes, whole hours inside
    (START + timedelta(hours=1, minutes=50), START + timedelta(hours=2, minutes=20)),  # across one hour boundary
    (START + timedelta(minutes=30, seconds=5), START + timedelta(minutes=30, seconds=40)),  # inside one minute
]


def sides(production, canary) -> list[Side]:
    return [
        Side(PRODUCT, "production"),
        Side(PRODUCT, "production", production.pk),
        Side(PRODUCT, "canary", canary.pk),
        Side(PRODUCT, "canary"),
        Side(PRODUCT, "shadow", canary.pk),
    ]


def rows_of(since, until):
    return PredictionLog.objects.filter(product=PRODUCT, created_at__gte=since, created_at__lt=until)


def assert_same(ours, theirs, where) -> None:
    """Equal, floats up to their summation order (a rollup adds the same numbers in another order)."""
    if isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), where
        for name in ours:
            assert_same(ours[name], theirs[name], (*where, name))
    elif isinstance(ours, float):
        assert ours == pytest.approx(theirs, rel=1e-9), where
    else:
        assert ours == theirs, where


def assert_rollups_equal_rows(production, canary) -> None:
    for since, until in WINDOWS:
        from_rows = raw_figures(rows_of(since, until))
        for side in sides(production, canary):
            assert_same(model_health(side, since=since, until=until), health_of(side, from_rows), (side, since, until))
        assert_counts_equal_plain_queries(production, canary, since, until)


def same_float(value):
    """What a figure must equal: a database's float up to summation order, or None (no rows)."""
    return None if value is None else pytest.approx(value, rel=1e-9)


def assert_counts_equal_plain_queries(production, canary, since, until) -> None:
    """The counts of health beside plain aggregate queries over the same rows (no `Figures` involved)."""
    rows = rows_of(since, until)
    canary_side = model_health(Side(PRODUCT, "canary", canary.pk), since=since, until=until)
    answered = rows.filter(role="canary", fallback_from__isnull=True, model_version=canary)
    plain = answered.aggregate(n=Count("pk"), cached=Count("pk", filter=Q(cached=True)), block=Count("pk", filter=Q(decision="block")))
    failovers = rows.filter(fallback_from=canary).count()
    assert (canary_side["answered"], canary_side["failovers"], canary_side["requests"]) == (plain["n"], failovers, plain["n"] + failovers)
    assert canary_side["cache_hit_rate"]["count"] == plain["cached"]
    assert canary_side["decision_mix"]["block"]["count"] == plain["block"]
    judged = answered.annotate(label=outcome_label()).filter(label__isnull=False)
    negatives = judged.filter(label=False)
    outcomes = canary_side["outcomes"]
    assert (outcomes["negatives"], outcomes["false_positives"]) == (negatives.count(), negatives.filter(decision="block").count())
    assert outcomes["positives"] == judged.filter(label=True).count()
    assert canary_side["score"]["mean"] == same_float(answered.aggregate(mean=Avg("score"))["mean"])
    runs = rows.filter(role="shadow", model_version=canary)
    shadow = model_health(Side(PRODUCT, "shadow", canary.pk), since=since, until=until)["shadow"]
    plain = runs.aggregate(
        n=Count("pk"), compared=Count("decision_agrees"), agreed=Count("pk", filter=Q(decision_agrees=True)), mean_diff=Avg("score_diff")
    )
    assert (shadow["runs"], shadow["agreement_rate"]["count"], shadow["agreement_rate"]["total"]) == (
        plain["n"],
        plain["agreed"],
        plain["compared"],
    )
    assert shadow["diff_classes"] == {name: runs.filter(diff_class=name).count() for name in ("minimal", "moderate", "significant")}
    assert shadow["mean_score_diff"] == same_float(plain["mean_diff"])
    summary = prediction_log_summary(product=PRODUCT, since=since, until=until)
    assert summary["total_rows"] == rows.count()
    assert summary["answers"] == rows.filter(role__in=["production", "canary"]).count()


@pytest.fixture
def copy_store(postgresql):
    store = PostgresCopyStore()
    yield store
    store.close()


def test_the_writers_copy_keeps_rollups_equal_to_the_rows(transactional_db, copy_store, production_version, canary_version):
    draw = random.Random(18)
    records = traffic(production_version, canary_version, draw)
    outcomes = outcomes_for(records, draw)
    early, late = outcomes[: len(outcomes) // 2], outcomes[len(outcomes) // 2 :]
    services.outcomes_record(items=early)  # outcomes that arrive before their predictions are written
    for start in range(0, len(records), 200):
        assert copy_store.insert(records[start : start + 200]) == len(records[start : start + 200])
    services.outcomes_record(items=late)  # and the usual case: after

    assert_rollups_equal_rows(production_version, canary_version)


def stored_counts() -> dict:
    rollups = PredictionRollup.objects.all()
    return {(r.period_seconds, r.period_start, r.role, r.model_version_id, r.fallback_from_id): r.counts for r in rollups}


def test_a_replayed_batch_counts_once(transactional_db, copy_store, production_version, canary_version):
    records = traffic(production_version, canary_version, random.Random(3), count=300)
    copy_store.insert(records[:200])
    before = {
        (r.period_seconds, r.period_start, r.role, r.model_version_id, r.fallback_from_id): r.counts for r in PredictionRollup.objects.all()
    }

    # A spill file replayed after its batch did commit, and a batch that overlaps it: only new rows count.
    assert copy_store.insert(records[:200], idempotent=True) == 0
    after = {
        (r.period_seconds, r.period_start, r.role, r.model_version_id, r.fallback_from_id): r.counts for r in PredictionRollup.objects.all()
    }
    assert after == before
    assert copy_store.insert(records[100:], idempotent=False) == len(records) - 200  # collides, goes the idempotent way

    assert_rollups_equal_rows(production_version, canary_version)


def test_the_orm_store_keeps_rollups_equal_to_the_rows(db, production_version, canary_version):
    draw = random.Random(7)
    records = traffic(production_version, canary_version, draw, count=400)
    store = OrmStore()
    store.insert(records[:250])
    store.insert(records[150:], idempotent=True)  # overlapping: the first 100 again
    services.outcomes_record(items=outcomes_for(records, draw))

    assert PredictionLog.objects.count() == len(records)
    assert_rollups_equal_rows(production_version, canary_version)


def test_rebuild_recounts_rows_loaded_without_the_writer(db, production_version, canary_version):
    draw = random.Random(11)
    records = traffic(production_version, canary_version, draw, count=400)
    PredictionLog.objects.bulk_create([PredictionLog(**record) for record in records])  # a restore: rows, no rollups
    services.outcomes_record(items=outcomes_for(records, draw))
    assert model_health(Side(PRODUCT, "production"), since=START, until=END)["answered"] < sum(
        1 for record in records if record["role"] == "production" and "fallback_from_id" not in record
    )

    call_command("audit_rollup", "--rebuild", "--since", START.isoformat(), "--until", END.isoformat())
    assert_rollups_equal_rows(production_version, canary_version)
    stored = stored_counts()
    call_command("audit_rollup", "--rebuild")  # again, over the whole log: the same rollups
    assert stored_counts() == stored


def test_retention_takes_the_rollups_of_the_rows_it_removes(db, production_version, canary_version):
    records = traffic(production_version, canary_version, random.Random(5), count=300)
    OrmStore().insert(records)
    cutoff = START + timedelta(hours=1, minutes=20, seconds=30)  # inside an hour

    services.prediction_log_retention_delete(older_than=END - cutoff, now=END)

    assert not PredictionRollup.objects.filter(period_start__lt=cutoff - timedelta(hours=1)).exists()
    assert_rollups_equal_rows(production_version, canary_version)
    assert model_health(Side(PRODUCT, "production"), since=START, until=cutoff)["requests"] == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--rebuild", "--since", "yesterday"], "--since: Use an ISO 8601 datetime"),
        (["--rebuild", "--until", "2026-13-45"], "--until: Use an ISO 8601 datetime"),
        (["--rebuild", "--since", "2026-12-02T10:00:00Z", "--until", "2026-12-01T10:00:00Z"], "must be before --until"),
    ],
)
def test_rebuild_refuses_a_bad_window_in_one_line(db, arguments, message):
    with pytest.raises(CommandError, match=message) as raised:
        call_command("audit_rollup", *arguments)
    assert "\n" not in str(raised.value)


def test_percentiles_from_histograms_are_within_a_bucket_of_the_exact_ones():
    draw = random.Random(2)
    latencies = sorted(draw.lognormvariate(1.2, 0.8) for _ in range(5_000))
    buckets, counts = np.unique(histograms.latency_buckets(np.array(latencies)), return_counts=True)
    histogram = {int(bucket): int(count) for bucket, count in zip(buckets, counts, strict=True)}
    for p in (0.5, 0.9, 0.95, 0.99):
        exact = latencies[math.floor(p * (len(latencies) - 1))]
        assert histograms.percentile(histogram, p) == pytest.approx(exact, rel=histograms.STEP - 1)
    for bound in (1.0, 3.3, 10.0):
        exact = sum(1 for value in latencies if value > bound)
        assert abs(histograms.count_above(histogram, bound) - exact) <= max(histogram.values()) * (histograms.STEP - 1)


def test_an_outcome_recorded_while_its_prediction_is_being_written_is_counted(transactional_db, production_version, canary_version):
    """The writer's batch holds its product's rollup lock until it commits; an outcome recorded
    meanwhile waits for it and then sees the rows, so the outcome is counted by one side or the other."""
    import threading

    import psycopg
    from django.db import connection

    from audit.logstore import PostgresCopyStore, encode_rows
    from audit.rollups.store import PostgresSink, roll_up

    record = make_record(production_version, role="production", decision="block", created_at=END - timedelta(minutes=5))
    store = PostgresCopyStore()
    conn = store._connection()
    with conn.cursor() as cursor:  # the writer's transaction, up to its commit
        store._copy(cursor, PredictionLog._meta.db_table, encode_rows([record]))
        roll_up(PostgresSink(cursor), [record])
    item = {"product": PRODUCT, "event_id": record["event_id"], "label": False, "observed_at": END, "source": "a"}
    recorded = threading.Thread(target=services.outcomes_record, kwargs={"items": [item]})
    recorded.start()
    # Wait (by condition, not by time) until the outcome's transaction is queued on the lock.
    with psycopg.connect(**{**connection.get_connection_params(), "autocommit": True}) as watcher:
        waiting = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        for _ in range(500):
            if watcher.execute(waiting).fetchone()[0]:
                break
            watcher.execute("SELECT pg_sleep(0.01)")  # the server's clock between two looks at pg_locks
        else:
            raise AssertionError("the outcome never waited for the writer's lock")
    conn.commit()
    recorded.join(10)
    store.close()

    health = model_health(Side(PRODUCT, "production"), since=END - timedelta(hours=1), until=END)
    assert (health["outcomes"]["negatives"], health["outcomes"]["false_positives"]) == (1, 1)


def test_a_windows_cut_first_minute_is_read_again_when_a_late_row_or_an_outcome_reaches_it(db, production_version, canary_version):
    records = traffic(production_version, canary_version, random.Random(9), count=200)
    OrmStore().insert(records)
    since = START + timedelta(minutes=20, seconds=30)
    side = Side(PRODUCT, "production")
    before = model_health(side, since=since, until=END)["requests"]
    assert model_health(side, since=since, until=END)["requests"] == before  # the kept first minute

    late = make_record(production_version, role="production", created_at=since + timedelta(seconds=5))
    OrmStore().insert([late], idempotent=True)  # a spill file replayed after the window was read

    assert model_health(side, since=since, until=END)["requests"] == before + 1
    negatives = model_health(side, since=since, until=END)["outcomes"]["negatives"]
    services.outcomes_record(items=[{"product": PRODUCT, "event_id": late["event_id"], "label": False, "observed_at": END}])
    assert model_health(side, since=since, until=END)["outcomes"]["negatives"] == negatives + 1  # and when an outcome judges one
    assert_rollups_equal_rows(production_version, canary_version)


def test_latency_buckets_start_at_the_floor_and_end_open():
    values = np.array([np.nan, 0.0, 0.005, 0.01, 0.02, 0.04, 1e12])
    assert histograms.latency_buckets(values).tolist() == [0, 0, 0, 1, 9, 17, histograms.LATENCY_BUCKETS - 1]


def test_a_batch_naming_its_version_as_a_uuid_and_as_text_counts_every_row(db, production_version):
    """A replayed spill file holds versions as text; the batch it joins holds them as UUIDs."""
    records = [make_record(production_version, created_at=END) for _ in range(3)]
    records[1]["model_version_id"] = str(production_version.pk)
    with transaction.atomic(), django_sink() as sink:
        roll_up(sink, records)
    health = model_health(Side(PRODUCT, "production"), since=END - timedelta(minutes=1), until=END + timedelta(minutes=1))
    assert health["answered"] == 3
