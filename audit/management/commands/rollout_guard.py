import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit.drift import runner as drift_runner
from audit.guard import runner, services


class Command(BaseCommand):
    help = (
        "Test every active canary over its whole run, stop the ones shown beyond a limit and step up the opted-in ones "
        "shown non-inferior "
        "(the production way to run the rollout guard: one process, ROLLOUT_GUARD_IN_PROCESS off in the web processes)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="evaluate once and exit")
        parser.add_argument(
            "--interval", type=float, metavar="SECONDS", help="seconds between evaluations (default ROLLOUT_GUARD_INTERVAL_SECONDS)"
        )

    def handle(self, *args, once=False, interval=None, **options):
        interval = settings.ROLLOUT_GUARD_INTERVAL_SECONDS if interval is None else interval
        if interval <= 0:
            raise CommandError("--interval must be a positive number of seconds")
        if once:
            verdicts = services.rollout_guard_evaluate()
            for verdict in verdicts:
                self._report(verdict)
            if not verdicts:
                self.stdout.write("no active canary")
            return
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"rollout guard: evaluating every {interval:g}s (Ctrl-C to stop)")
        if settings.DRIFT_ENABLED:  # drift runs in the guard's process, on a thread of its own (audit/drift/runner.py)
            drift_runner.start_thread(stop)
            self.stdout.write(f"drift: evaluating every {settings.DRIFT_INTERVAL_SECONDS:g}s")
        # Several guard processes share the cache lock, so a second one is harmless.
        runner.run_forever(interval=interval, stop=stop, report=self._report)

    def _report(self, verdict) -> None:
        style = self.style.ERROR if verdict.result == "rolled_back" else self.style.SUCCESS
        self.stdout.write(style(verdict.line()))
