from pathlib import Path

from django.core.management.base import CommandError

from mlops import services
from mlops.artifacts.onnx_schema import SchemaError
from mlops.artifacts.reference import ReferenceInvalid
from mlops.artifacts.stores import StoreError, store_from_url
from mlops.management.base import OperatorCommand


class Command(OperatorCommand):
    help = "Upload an ONNX model to the model store and register it as a candidate."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # `--version` names the model version here, replacing Django's program-version flag.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("path", help="the .onnx file")
        parser.add_argument("--product", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--version", required=True, dest="model_version")
        parser.add_argument("--threshold", type=float, default=0.5, help="decision threshold (0-1), default 0.5")
        parser.add_argument("--description", default="")
        parser.add_argument("--store", help="store URL; default MODEL_STORE_URL")
        parser.add_argument(
            "--reference",
            metavar="FILE",
            help="reference rows for drift (.csv with a header of feature names, or .parquet), stored beside the model",
        )

    def handle(self, *args, path, product, name, model_version, threshold, description, store, reference=None, **options):
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"{path} is not a file")
        if reference is not None and not Path(reference).is_file():
            raise CommandError(f"--reference {reference} is not a file")
        try:
            registered = services.model_push(
                source=source,
                store=store_from_url(store),
                product=product,
                name=name,
                version=model_version,
                threshold=threshold,
                description=description,
                reference=Path(reference) if reference else None,
            )
        except (services.LifecycleError, SchemaError, StoreError, ReferenceInvalid) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(f"registered {registered} as candidate (id {registered.pk}, sha256 {registered.sha256[:12]}…)")
        )
