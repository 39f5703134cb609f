"""System checks: the prediction log's immutability triggers are in the database, and the
evidence settings (``EVIDENCE_*``) are ones the comparison can use.

On SQLite a later migration that alters ``audit_predictionlog`` rebuilds the table and drops
its triggers silently; this check says so instead of letting the log become mutable. It runs
only when checks are asked to look at databases (``manage.py check --database default``,
``migrate``), like Django's own database checks.
"""

from django.conf import settings
from django.core.checks import Error, register
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder
from django.db.utils import DatabaseError

MIGRATION = "0003_predictionlog_immutable"
TRIGGERS = {"audit_predictionlog_no_update", "audit_predictionlog_no_delete"}


def _present(connection) -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_predictionlog'::regclass AND NOT tgisinternal",
            )
        elif connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_predictionlog'")
        else:
            return set(TRIGGERS)
        return {row[0] for row in cursor.fetchall()}


@register("database")
def check_immutability_triggers(app_configs=None, databases=None, **kwargs):
    errors = []
    for alias in databases or []:
        connection = connections[alias]
        try:
            if ("audit", MIGRATION) not in MigrationRecorder(connection).applied_migrations():
                continue  # not migrated yet: migrate creates them
            missing = TRIGGERS - _present(connection)
        except DatabaseError:
            continue
        if missing:
            errors.append(
                Error(
                    f"The prediction log is not immutable on database {alias!r}: trigger(s) {', '.join(sorted(missing))} missing.",
                    hint="Re-create them (audit/migrations/0003_predictionlog_immutable.py); a table rebuild on SQLite drops triggers.",
                    id="audit.E001",
                )
            )
    return errors


MAX_SEGMENT_BINS = 20


def _segment_problems(product, specs) -> list[str]:
    """What is wrong with one product's ``EVIDENCE_SEGMENTS`` entry, in words (empty: nothing)."""
    if not isinstance(specs, list):
        return [f"{product!r}: a list of segmentations, not {type(specs).__name__}"]
    problems = []
    for index, spec in enumerate(specs):
        where = f"{product!r}[{index}]"
        if isinstance(spec, dict) and set(spec) == {"feature", "bins"}:
            if not isinstance(spec["feature"], str) or not spec["feature"]:
                problems.append(f"{where}: 'feature' names a logged feature (a non-empty string)")
            bins = spec["bins"]
            if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= MAX_SEGMENT_BINS:
                problems.append(f"{where}: 'bins' is a whole number from 2 to {MAX_SEGMENT_BINS}")
        elif isinstance(spec, dict) and set(spec) == {"score_band"}:
            edges = spec["score_band"]
            numbers = isinstance(edges, list) and all(isinstance(e, int | float) and not isinstance(e, bool) for e in edges)
            if not numbers or len(edges) < 2 or edges != sorted(set(edges)) or edges[0] < 0 or edges[-1] > 1:
                problems.append(f"{where}: 'score_band' is a strictly increasing list of at least two scores in [0, 1]")
        else:
            problems.append(f'{where}: either {{"feature": name, "bins": n}} or {{"score_band": [edges]}}')
    return problems


@register()
def check_evidence_settings(app_configs=None, **kwargs):
    """``EVIDENCE_DETECTABLE_DIFFERENCE`` and ``EVIDENCE_SEGMENTS`` make sense (read by the comparison)."""
    errors = []
    detectable = settings.EVIDENCE_DETECTABLE_DIFFERENCE
    if not 0 < detectable < 1:
        errors.append(
            Error(
                f"EVIDENCE_DETECTABLE_DIFFERENCE must be between 0 and 1 (an absolute difference of rates), not {detectable!r}.",
                id="audit.E002",
            )
        )
    segments = settings.EVIDENCE_SEGMENTS
    problems = [_segment_problems(p, specs) for p, specs in segments.items()] if isinstance(segments, dict) else None
    if problems is None or any(problems):
        listed = ["a JSON object of product to segmentations"] if problems is None else [p for group in problems for p in group]
        errors.append(
            Error(
                "EVIDENCE_SEGMENTS is not valid: " + "; ".join(listed) + ".",
                hint='e.g. {"fraud_score": [{"feature": "mean_radius", "bins": 4}, {"score_band": [0, 0.2, 0.5, 0.8, 1]}]}',
                id="audit.E003",
            )
        )
    return errors
