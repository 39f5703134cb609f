import os

from django.core.management.base import CommandError

from mlops.artifacts.onnx_schema import SchemaError
from mlops.artifacts.stores import StoreError, store_from_url
from mlops.management.base import OperatorCommand
from mlops.services import LifecycleError
from mlops.services.demo import demo_bootstrap


class Command(OperatorCommand):
    help = (
        "Create the demo: two fraud_score models (one in production) and an admin user "
        "(DEMO_ADMIN_USERNAME / DEMO_ADMIN_PASSWORD, or a generated password that is printed). Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--store", help="store URL; default MODEL_STORE_URL")

    def handle(self, *args, store=None, **options):
        try:
            report = demo_bootstrap(
                store=store_from_url(store),
                admin_username=os.environ.get("DEMO_ADMIN_USERNAME", "admin"),
                admin_password=os.environ.get("DEMO_ADMIN_PASSWORD") or None,
            )
        except (LifecycleError, SchemaError, StoreError, RuntimeError) as exc:
            raise CommandError(str(exc)) from None
        for line in report.lines:
            self.stdout.write(line)
