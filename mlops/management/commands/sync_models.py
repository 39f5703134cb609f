import time

from django.core.management.base import CommandError
from tqdm import tqdm

from mlops import services
from mlops.artifacts.stores import StoreError, store_from_url
from mlops.management.base import OperatorCommand


class Command(OperatorCommand):
    help = "Register the model store's new artifacts as candidates and download them (layout: <product>/<name>/<version>/model.onnx)."

    def add_arguments(self, parser):
        parser.add_argument("--store", help="store URL (file:///path or s3://bucket/prefix); default MODEL_STORE_URL")
        parser.add_argument("--watch", type=float, metavar="SECONDS", help="sync again every SECONDS until interrupted")

    def handle(self, *args, store=None, watch=None, **options):
        if watch is not None and watch <= 0:
            raise CommandError("--watch must be a positive number of seconds")
        try:
            model_store = store_from_url(store)
        except StoreError as exc:
            raise CommandError(str(exc)) from None
        while True:
            refused = self._sync_once(model_store)
            if watch is None:
                if refused:
                    raise CommandError(f"{refused} artifact(s) refused")
                return
            time.sleep(watch)

    def _sync_once(self, model_store) -> int:
        refused = 0
        # Bytes downloaded so far; drawn only on a terminal (tqdm disables itself otherwise).
        with tqdm(desc="downloading", unit="B", unit_scale=True, leave=False, disable=None, file=self.stderr._out) as bar:
            try:
                for result in services.models_sync(store=model_store, progress=bar.update):
                    refused += result.outcome == "refused"
                    style = self.style.ERROR if result.outcome == "refused" else self.style.SUCCESS
                    bar.clear()
                    self.stdout.write(style(f"{result.outcome:<10} {result.message}"))
            except StoreError as exc:
                raise CommandError(f"model store {model_store.url} is unreachable: {exc}") from None
        return refused
