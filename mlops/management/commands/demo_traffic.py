import signal

from django.core.management.base import CommandError

from mlops.demo_traffic import OUTCOME_BATCH_SECONDS, DemoTraffic, TrafficError, base_url, wait_until_ready
from mlops.management.base import OperatorCommand
from mlops.services.api_keys import api_key_revoke
from mlops.services.demo import demo_traffic_key_create

MAX_RATE = 200  # one thread sends; above this it could not keep the pace anyway


class Command(OperatorCommand):
    help = (
        "Send demo requests (rows of the demo data set with noise) to the platform's API at a steady rate, "
        "optionally posting their true labels as outcomes a few seconds later; a progress line every 10 s. "
        "Waits for the server's /readyz first; stops after --duration, on SIGTERM or on Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the platform's base URL (default http://127.0.0.1:8000)")
        parser.add_argument("--rate", type=float, default=3.0, help="requests a second (default 3)")
        parser.add_argument("--duration", type=float, help="seconds to run (default: until stopped)")
        parser.add_argument("--outcomes", action="store_true", help="post each answered event's true label as an outcome")
        parser.add_argument("--outcome-delay", type=float, default=5.0, help="seconds between an answer and its outcome (default 5)")
        parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the server to be ready (default 60)")
        parser.add_argument("--seed", type=int, help="seed of the choice of rows and noise (default: random)")

    def handle(self, *args, url, rate, duration, outcomes, outcome_delay, wait, seed, **options):
        try:
            url = base_url(url)
        except TrafficError as exc:
            raise CommandError(f"--url: {exc}") from None
        if not 0 < rate <= MAX_RATE:
            raise CommandError(f"--rate must be above 0 and at most {MAX_RATE} requests a second, not {rate:g}")
        for name, value in (("--duration", duration), ("--outcome-delay", outcome_delay), ("--wait", wait)):
            if value is not None and value < 0:
                raise CommandError(f"{name} must not be negative, not {value:g}")
        api_key, key = demo_traffic_key_create(rate=rate, outcome_batches_per_second=1 / OUTCOME_BATCH_SECONDS if outcomes else 0)
        try:
            traffic = DemoTraffic(
                url=url, key=key, rate=rate, duration=duration, outcome_delay=outcome_delay if outcomes else None, seed=seed
            )
            # `make run` stops it with SIGTERM when the server ends, a person with Ctrl-C: either way the run
            # finishes (posts the outcomes due, prints its last line) and the key is revoked.
            for stopping in (signal.SIGTERM, signal.SIGINT):
                signal.signal(stopping, lambda *_: traffic.stop.set())
            if not wait_until_ready(url, within=wait, stop=traffic.stop):
                if traffic.stop.is_set():
                    return
                raise CommandError(f"{url}/readyz did not answer 200 within {wait:g} s: is the platform running there?")
            self._say(
                f"demo traffic: {rate:g} requests/s to {url} as {api_key.role} key {api_key.prefix}{' with outcomes' if outcomes else ''}"
            )
            traffic.run(progress=self._say)
        except TrafficError as exc:
            raise CommandError(str(exc)) from None
        finally:
            api_key_revoke(api_key_id=api_key.pk)

    def _say(self, line: str) -> None:
        # Flushed: in the background of `make run` stdout may be a pipe or a file, where lines would wait in a buffer.
        self.stdout.write(line)
        self.stdout.flush()
