import random
import signal
import threading

from django.core.management.base import CommandError
from tqdm import tqdm

from mlops import services
from mlops.artifacts.stores import StoreError, store_from_url
from mlops.management.base import OperatorCommand

# How long a watch waits before asking an unreachable store again: doubling from the watch
# interval up to this many intervals, with jitter so that several watchers do not retry in step.
MAX_BACKOFF_INTERVALS = 16


class Command(OperatorCommand):
    help = "Register the model store's new artifacts as candidates and download them (layout: <product>/<name>/<version>/model.onnx)."

    def add_arguments(self, parser):
        parser.add_argument("--store", help="store URL (file:///path or s3://bucket/prefix); default MODEL_STORE_URL")
        parser.add_argument(
            "--watch", type=float, metavar="SECONDS", help="sync again every SECONDS until SIGTERM or SIGINT; store outages are retried"
        )

    def handle(self, *args, store=None, watch=None, **options):
        if watch is not None and watch <= 0:
            raise CommandError("--watch must be a positive number of seconds")
        try:
            model_store = store_from_url(store)
        except StoreError as exc:
            raise CommandError(str(exc)) from None
        if watch is None:
            try:
                refused = self._sync_once(model_store)
            except StoreError as exc:
                raise CommandError(f"model store {model_store.url} is unreachable: {exc}") from None
            if refused:
                raise CommandError(f"{refused} artifact(s) refused")
            return
        self._watch(model_store, watch)

    def _watch(self, model_store, interval: float) -> None:
        """Sync every ``interval`` seconds until SIGTERM/SIGINT (exit 0). An unreachable store is
        reported once when it goes and once when it comes back, and retried with backoff."""
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        failures = 0
        while not stop.is_set():
            try:
                self._sync_once(model_store)
            except StoreError as exc:
                if failures == 0:
                    self.stderr.write(self.style.WARNING(f"model store {model_store.url} is unreachable, retrying: {exc}"))
                failures += 1
                backoff = interval * min(2 ** (failures - 1), MAX_BACKOFF_INTERVALS)
                stop.wait(backoff * random.uniform(0.8, 1.2))
                continue
            if failures:
                self.stdout.write(self.style.SUCCESS(f"model store {model_store.url} is reachable again"))
                failures = 0
            stop.wait(interval)
        self.stdout.write("stopped")

    def _sync_once(self, model_store) -> int:
        """Sync once: the number of refused artifacts. Raises `StoreError` when the store cannot be listed."""
        refused = 0
        # Bytes downloaded so far; drawn only on a terminal (tqdm disables itself otherwise).
        with tqdm(desc="downloading", unit="B", unit_scale=True, leave=False, disable=None, file=self.stderr._out) as bar:
            for result in services.models_sync(store=model_store, progress=bar.update):
                refused += result.outcome == "refused"
                style = self.style.ERROR if result.outcome == "refused" else self.style.SUCCESS
                bar.clear()
                self.stdout.write(style(f"{result.outcome:<10} {result.message}"))
        return refused
