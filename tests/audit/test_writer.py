"""The log writer against the real PostgreSQL: batching, outages, spill and replay, redaction."""

import asyncio
import threading
import time
import uuid

import orjson
import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit import spill
from audit.logstore import APPLICATION_NAME
from audit.models import PredictionLog
from audit.redaction import HASH_PREFIX, Redactor
from tests.audit.conftest import make_record
from tests.faults import database_down

pytestmark = pytest.mark.usefixtures("postgresql")  # durability is measured against PostgreSQL


def submit_concurrently(writer, records: list[dict], threads: int = 8) -> None:
    chunks = [records[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=lambda chunk=chunk: [writer.submit(r) for r in chunk]) for chunk in chunks]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def spilled_lines(folder) -> list[dict]:
    return [orjson.loads(line) for path in folder.glob("spill-*") for line in path.read_bytes().splitlines() if line.strip()]


def test_concurrent_submits_are_all_written_after_flush(transactional_db, production_version, writer_factory):
    writer = writer_factory()
    records = [make_record(production_version) for _ in range(2000)]
    submit_concurrently(writer, records)
    assert writer.flush(20)
    assert PredictionLog.objects.count() == 2000
    assert set(PredictionLog.objects.values_list("pk", flat=True)) == {r["prediction_id"] for r in records}


def test_submit_does_not_wait_for_the_database(transactional_db, production_version, writer_factory):
    writer = writer_factory(interval=1.0)
    records = [make_record(production_version) for _ in range(1000)]
    started = time.perf_counter()
    for record in records:
        writer.submit(record)
    per_submit = (time.perf_counter() - started) / len(records)
    assert per_submit < 0.0005  # microseconds in practice; nothing on the caller's path waits for I/O
    assert writer.flush(10)


def test_outage_spills_and_replays_every_record_exactly_once(transactional_db, production_version, writer_factory):
    writer = writer_factory()
    before = [make_record(production_version) for _ in range(300)]
    submit_concurrently(writer, before)
    assert writer.flush(10)

    during = [make_record(production_version) for _ in range(600)]
    with database_down():
        submit_concurrently(writer, during)
        assert writer.flush(20)
        assert {r["prediction_id"] for r in spilled_lines(writer.spill_dir)} == {str(r["prediction_id"]) for r in during}

    after = [make_record(production_version) for _ in range(100)]
    submit_concurrently(writer, after)
    assert writer.flush(10)
    expected = {r["prediction_id"] for r in before + during + after}
    assert writer.process.wait_for("flushed", timeout=15)  # the spill is replayed
    assert not list(writer.spill_dir.glob("spill-*"))
    assert set(PredictionLog.objects.values_list("pk", flat=True)) == expected


def test_a_connection_cut_while_idle_is_replaced_without_spilling(transactional_db, production_version, writer_factory):
    writer = writer_factory()
    writer.submit(make_record(production_version))
    assert writer.flush(10)
    name = connection.settings_dict["NAME"]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:  # as a database restart would
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = %s", [name, APPLICATION_NAME]
        )
    records = [make_record(production_version) for _ in range(20)]
    for record in records:
        writer.submit(record)
    assert writer.flush(10)
    assert PredictionLog.objects.count() == 21
    assert not list(writer.spill_dir.glob("spill-*"))


def test_replay_command_is_idempotent(transactional_db, production_version, tmp_path, settings):
    settings.AUDIT_SPILL_DIR = str(tmp_path / "spill")
    records = [make_record(production_version) for _ in range(50)]
    first, second = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    for path in (first, second):
        path.write_bytes(b"".join(spill.dumps(r) for r in records))
    call_command("audit_replay", str(first))
    call_command("audit_replay", str(second))
    assert PredictionLog.objects.count() == 50
    assert not first.exists() and not second.exists()


def test_refused_records_are_kept_aside_and_the_rest_written(transactional_db, production_version, writer_factory):
    writer = writer_factory()
    good = [make_record(production_version) for _ in range(5)]
    bad = make_record(production_version, model_version_id=uuid.uuid4())  # no such model version
    for record in [*good[:2], bad, *good[2:]]:
        writer.submit(record)
    assert writer.flush(10)
    assert set(PredictionLog.objects.values_list("pk", flat=True)) == {r["prediction_id"] for r in good}
    rejected = list((writer.spill_dir / "rejected").glob("*.ndjson"))
    assert [orjson.loads(line)["prediction_id"] for line in rejected[0].read_bytes().splitlines()] == [str(bad["prediction_id"])]


def test_full_queue_spills_instead_of_blocking(transactional_db, production_version, writer_factory):
    writer = writer_factory(max_queue=1, interval=2.0, batch_size=1000)
    records = [make_record(production_version) for _ in range(50)]
    for record in records:
        writer.submit(record)
    overflowed = spilled_lines(writer.spill_dir)
    assert len(overflowed) >= 40
    assert writer.flush(10)
    # The next successful batch closed the overflow file and the writer replayed it.
    assert writer.process.wait_for("flushed", timeout=15)
    assert set(PredictionLog.objects.values_list("pk", flat=True)) == {r["prediction_id"] for r in records}


def test_redaction_drops_and_hashes_before_the_database_and_the_spill(transactional_db, production_version, writer_factory):
    redactor = Redactor(drop=["email"], hash_keys=["country"], hash_key="k")
    writer = writer_factory(redactor=redactor)
    written = make_record(production_version)
    writer.submit(written)
    assert writer.flush(10)
    row = PredictionLog.objects.get(pk=written["prediction_id"])
    assert "email" not in row.features
    assert row.features["country"] == redactor.hash_value("NL") and row.features["country"].startswith(HASH_PREFIX)
    assert row.features["amount"] == 12.5
    assert written["features"]["email"] == "alice@example.com"  # the caller's dict is untouched

    with database_down():
        spilled = make_record(production_version)
        writer.submit(spilled)
        assert writer.flush(10)
        [line] = spilled_lines(writer.spill_dir)
    assert "alice@example.com" not in orjson.dumps(line).decode()
    assert line["features"]["country"] == redactor.hash_value("NL")
    assert writer.lookup(spilled["prediction_id"])["features"].keys() == {"amount", "country"}


def test_lookup_finds_a_queued_record_by_uuid_or_text(transactional_db, production_version, writer_factory):
    writer = writer_factory(interval=5.0, redactor=Redactor(drop=["email"]))
    record = make_record(production_version)
    writer.submit(record)
    assert writer.lookup(record["prediction_id"])["event_id"] == record["event_id"]
    assert "email" not in writer.lookup(str(record["prediction_id"]))["features"]
    assert writer.lookup("not-an-id") is None
    assert writer.flush(10)


def test_spill_files_rotate_by_size(transactional_db, production_version, writer_factory):
    writer = writer_factory(spill_max_bytes=2_000, batch_size=2)
    with database_down():
        for _ in range(10):
            writer.submit(make_record(production_version))
        assert writer.flush(10)
        files = sorted(p.name for p in writer.spill_dir.glob("spill-*"))
        assert len(files) >= 2 and files[0].endswith(".ndjson")  # a rotated file is closed at once, ready for replay
        assert len(spilled_lines(writer.spill_dir)) == 10
        assert writer.process.state == "spilling"
    assert writer.process.wait_for("flushed", timeout=15)  # a probe got in and the spill is replayed
    assert PredictionLog.objects.count() == 10


def test_metrics_count_queued_written_spilled_and_replayed(transactional_db, production_version, writer_factory):
    from prometheus_client import REGISTRY

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        "queued": value("audit_log_queued_total"),
        "written": value("audit_log_written_total"),
        "spilled": value("audit_log_spilled_total", reason="db_unavailable"),
        "replayed": value("audit_log_replayed_total"),
    }
    writer = writer_factory()
    for _ in range(3):
        writer.submit(make_record(production_version))
    assert writer.flush(10)
    with database_down():
        for _ in range(2):
            writer.submit(make_record(production_version))
        assert writer.flush(10)
        assert value("mlops_circuit_state", dependency="prediction_log") == 2  # spilling
    assert writer.process.wait_for("flushed", timeout=15)
    assert PredictionLog.objects.count() == 5
    assert value("mlops_circuit_state", dependency="prediction_log") == 0
    assert value("audit_log_queued_total") - before["queued"] == 5
    assert value("audit_log_written_total") - before["written"] == 3
    assert value("audit_log_spilled_total", reason="db_unavailable") - before["spilled"] == 2
    assert value("audit_log_replayed_total") - before["replayed"] == 2
    assert REGISTRY.get_sample_value("audit_log_write_seconds_count") >= 1


def test_written_records_are_published_to_the_product_group(transactional_db, production_version, writer_factory, settings):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from audit.publish import Publisher

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("predictions.fraud_score", channel)
    publisher = Publisher()
    publisher._layer = layer  # the same in-memory layer instance as this test
    writer = writer_factory(publisher=publisher)
    record = make_record(production_version)
    writer.submit(record)
    assert writer.flush(10)
    # Receive only once the publisher thread has sent (the in-memory layer is not thread-safe for
    # a receiver that waits while another thread's event loop sends).
    assert publisher.process.wait_until(lambda: publisher._queue.unfinished_tasks == 0, timeout=5)

    async def receive():
        return await asyncio.wait_for(layer.receive(channel), 2)

    message = async_to_sync(receive)()
    assert message["type"] == "predictions.batch"
    [live] = message["records"]
    assert live["prediction_id"] == str(record["prediction_id"]) and "features" not in live


def test_files_left_by_dead_processes_are_replayable_and_live_ones_are_not(tmp_path):
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    folder = tmp_path / "spill"
    folder.mkdir()
    orphan = folder / f"spill-{spill.HOST}-{dead.stdout.strip()}-20260101T000000000000-1.ndjson.part"
    mine = folder / f"spill-{spill.HOST}-{os.getpid()}-20260101T000000000000-1.ndjson.part"
    closed = folder / f"spill-{spill.HOST}-{os.getpid()}-20260101T000000000000-2.ndjson"
    for path in (orphan, mine, closed):
        path.write_bytes(b"")
    assert spill.replayable(folder) == sorted([closed, orphan])


def test_replay_command_refuses_a_file_a_live_process_still_writes(tmp_path):
    import os

    live = tmp_path / f"spill-{spill.HOST}-{os.getppid()}-20260101T000000000000-1.ndjson.part"
    live.write_bytes(b"")
    with pytest.raises(CommandError, match="still writing"):
        call_command("audit_replay", str(live))
