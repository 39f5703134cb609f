"""Log rows and outcomes written the way the platform writes them, so the rollups hold them too.

`log_rows` inserts through the log writer's store (`audit.logstore.OrmStore`, in the test's
transaction), which adds every row to its minute and hour; `record_outcomes` goes through
`audit.services.outcomes_record`, which moves the rows an outcome judges. Rows made with
``PredictionLog.objects.bulk_create`` would be in the log and missing from every figure.
"""

from collections.abc import Iterable

from audit.logstore import OrmStore
from audit.models import Outcome, PredictionLog
from audit.services import outcomes_record

_COLUMNS = [field.attname for field in PredictionLog._meta.concrete_fields]


def log_rows(rows: Iterable[PredictionLog]) -> list[PredictionLog]:
    rows = list(rows)
    OrmStore().insert([{column: getattr(row, column) for column in _COLUMNS} for row in rows])
    return rows


def record_outcomes(outcomes: Iterable[Outcome]) -> int:
    fields = ("product", "event_id", "prediction_id", "label", "observed_at", "source")
    return outcomes_record(items=[{field: getattr(outcome, field) for field in fields} for outcome in outcomes])
