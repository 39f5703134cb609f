from django.core.management.base import BaseCommand, CommandError

from mlops import services
from mlops.security.roles import Role


class Command(BaseCommand):
    help = "Create an API key for a client and print it once (it is stored only as a hash)."

    def add_arguments(self, parser):
        parser.add_argument("--client", required=True, help="who uses the key (a service or partner name)")
        parser.add_argument("--role", required=True, choices=Role.values, help="the role the key acts with")
        parser.add_argument("--expires-days", type=int, default=None, help="days until the key expires (default: never)")
        parser.add_argument("--label", default="", help="what the key is for")

    def handle(self, *args, client, role, expires_days, label, **options):
        try:
            _, plaintext = services.api_key_create(client=client, role=role, expires_in_days=expires_days, label=label)
        except services.ApiKeyError as exc:
            raise CommandError(str(exc)) from None
        # Only the key on stdout, so that scripts can capture it: `KEY=$(manage.py create_api_key ...)`.
        self.stdout.write(plaintext)
