"""import_outcomes and audit_export from the shell."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from django.core.management import CommandError, call_command

from audit.models import Outcome
from tests.audit import dataset

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_import_outcomes_from_csv(tmp_path, capsys):
    path = tmp_path / "outcomes.csv"
    path.write_text("product,event_id,label,observed_at,source\nfraud_score,e1,true,2026-11-20T10:00:00Z,bank\nfraud_score,e2,false,,\n")
    call_command("import_outcomes", str(path))
    assert "imported 2 outcomes" in capsys.readouterr().out
    assert set(Outcome.objects.values_list("event_id", "label", "source")) == {("e1", True, "bank"), ("e2", False, "import")}


def test_import_outcomes_from_ndjson(tmp_path):
    path = tmp_path / "outcomes.ndjson"
    path.write_bytes(
        b"".join(orjson.dumps({"product": "fraud_score", "event_id": f"e{i}", "label": i % 2 == 0}) + b"\n" for i in range(25))
    )
    call_command("import_outcomes", str(path))
    assert Outcome.objects.count() == 25


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.csv", "product,event_id,label\nfraud_score,e1,true\nfraud_score,e2,perhaps\n", "bad.csv:3: label"),
        ("bad.csv", "product,label\nfraud_score,true\n", "header lacks event_id"),
        ("bad.ndjson", '{"product": "fraud_score", "event_id": "e1", "label": true}\n{not json\n', "bad.ndjson:2: not JSON"),
        ("bad.txt", "whatever", "unknown extension"),
    ],
)
def test_import_outcomes_stops_at_the_first_bad_line_and_imports_nothing(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("import_outcomes", str(path))
    assert not Outcome.objects.exists()


def test_import_outcomes_exits_non_zero_with_one_error_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("product,event_id,label\nfraud_score,e1,maybe\n")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "DJANGO_SETTINGS_MODULE": "mlops.settings"}
    command = [sys.executable, "manage.py", "import_outcomes", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"CommandError: {path}:2: label: Must be a valid boolean."


def test_audit_export_writes_the_selected_rows(production_version, canary_version, tmp_path):
    rows = dataset.build(production_version, canary_version)
    ndjson = tmp_path / "log.ndjson"
    call_command("audit_export", "--since", "1h", "--product", "fraud_score", "--format", "ndjson", "--output", str(ndjson))
    exported = {orjson.loads(line)["prediction_id"] for line in ndjson.read_bytes().splitlines()}
    assert exported == {str(row.pk) for name, row in rows.items() if name != "old"}
    table = tmp_path / "log.csv"
    call_command("audit_export", "--since", "1h", "--product", "other", "--format", "csv", "--output", str(table))
    assert list(csv.reader(table.open()))[1:] == []
    with pytest.raises(CommandError, match="--since"):
        call_command("audit_export", "--since", "last tuesday")
