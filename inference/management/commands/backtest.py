"""``manage.py backtest --model ID [--last N | --since ISO] [--json]``: score a candidate on logged traffic.

Runs inline (the API and the admin run it in the background): the newest ``--last`` production
rows of the model's product logged since ``--since`` (with neither, ``BACKTEST_DEFAULT_ROWS``),
scored in batched session runs with a progress bar on stderr. Prints one line, or with ``--json``
the record and its report as one JSON object. Exits non-zero when the backtest cannot run.
"""

import uuid

import orjson
from django.core.management.base import CommandError
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware
from tqdm import tqdm

from audit.models import BacktestStatus
from inference.backtest_views import BacktestOutput
from inference.backtests import BacktestError, backtest_create, backtest_run
from mlops.management.base import OperatorCommand


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise CommandError(f"--last {value!r}: a whole number of rows, at least 1")
    return number


def _moment(value: str):
    moment = parse_datetime(value)
    if moment is None:
        raise CommandError(f"--since {value!r}: not an ISO 8601 date and time (e.g. 2026-12-01T00:00:00Z)")
    return make_aware(moment) if is_naive(moment) else moment


def summary(backtest) -> str:
    """One readable line of a finished backtest."""
    label = f"{backtest.product}/{backtest.model_version.name}@{backtest.model_version.version}"
    if backtest.status != BacktestStatus.DONE:
        return f"backtest {backtest.pk} of {label}: {backtest.status}: {backtest.error}"
    report = backtest.report
    rows, agreement = report["rows"], report["decisions"]["agreement"]
    line = f"backtest {backtest.pk} of {label}: {rows['scored']} rows scored, {rows['skipped']} skipped"
    if agreement["value"] is not None:
        line += f"; decisions agree on {agreement['value']:.1%} ({agreement['count']}/{agreement['total']})"
    fp = report["outcomes"]["candidate"]["false_positive_rate"]["value"]
    fp_production = report["outcomes"]["production"]["false_positive_rate"]["value"]
    if fp is not None:
        line += f"; false-positive rate {fp:.1%} (production {fp_production:.1%})"
    verdict = report["verdict"]
    return line + ("; passes" if verdict["passed"] else "; does not pass: " + "; ".join(verdict["failures"]))


class Command(OperatorCommand):
    help = "Score a model version on its product's logged production traffic and report against production's decisions."

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, help="The model version id.")
        window = parser.add_argument_group("window (both may be given: the newest N since ISO)")
        window.add_argument("--last", type=str, help="At most this many of the newest production rows.")
        window.add_argument("--since", type=str, help="Only rows logged at or after this ISO 8601 time.")
        parser.add_argument("--json", action="store_true", help="Print the record and its report as one JSON object.")

    def handle(self, *args, **options):
        try:
            model_id = uuid.UUID(options["model"])
        except ValueError:
            raise CommandError(f"--model {options['model']!r}: not a model version id (a UUID)") from None
        last = _positive(options["last"]) if options["last"] is not None else None
        since = _moment(options["since"]) if options["since"] is not None else None
        try:
            backtest = backtest_create(model_version_id=model_id, last=last, since=since)
        except BacktestError as exc:
            raise CommandError(str(exc)) from None
        with tqdm(desc="backtest", unit="row", disable=options.get("verbosity", 1) < 1, file=self.stderr._out) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            backtest = backtest_run(backtest_id=backtest.pk, progress=progress)
        if options["json"]:
            self.stdout.write(orjson.dumps(BacktestOutput(backtest).data).decode())
        else:
            self.stdout.write(summary(backtest))
        if backtest.status != BacktestStatus.DONE:
            raise CommandError(f"backtest {backtest.pk} failed: {backtest.error}")
