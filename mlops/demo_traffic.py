"""Demo traffic: realistic requests through the real HTTP API, and their true labels as outcomes.

Each request is a row of the demo models' data set (`mlops.demo`) with a little noise, sent to
``POST /v1/infer`` at a steady rate; with outcomes on, the row's true label is posted to
``POST /v1/outcomes`` a few seconds after the answer (in one batch a second), as a fraud team's
chargebacks would arrive later. Only the standard library speaks HTTP here, so the demo adds no
dependency, and the traffic goes through authentication, rate limits, routing, the shadow pool
and the prediction log like any client's.
"""

import json
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mlops.demo import PRODUCT, demo_feature_names

NOISE = 0.03  # relative standard deviation of each feature: rows repeat, answers do not come from the cache
OUTCOME_BATCH_SECONDS = 1.0
REQUEST_TIMEOUT_SECONDS = 10.0
GIVE_UP_AFTER_SECONDS = 20.0  # of nothing but failed requests: the server has stopped or refuses the demo


class TrafficError(Exception):
    """The traffic cannot go on (a bad URL, the server refuses the demo's requests, or is gone)."""


def base_url(url: str) -> str:
    """``url`` without a trailing slash, once it is an http(s) URL: urllib would open ``file:`` too."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TrafficError(f"the URL must be http:// or https:// with a host, such as http://127.0.0.1:8000, not {url!r}")
    return url.rstrip("/")


@dataclass
class TrafficTally:
    started: float = field(default_factory=time.monotonic)
    statuses: Counter = field(default_factory=Counter)  # HTTP status of each prediction request, 0: no answer
    outcomes_posted: int = 0

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        refused, failed = self.statuses[429], self.statuses[0]
        other = self.sent - self.statuses[200] - refused - failed
        return (
            f"demo traffic: {self.sent} requests in {elapsed:.0f} s ({self.sent / elapsed:.1f}/s): "
            f"{self.statuses[200]} answered, {refused} refused (429), {other} other errors, {failed} without answer; "
            f"{self.outcomes_posted} outcomes posted"
        )


def demo_rows() -> list[tuple[dict[str, float], bool]]:
    """The data set's rows as (features, positive) pairs, positive as the demo models learned it."""
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError:
        raise TrafficError("demo traffic needs the development requirements (scikit-learn ships its data set)") from None

    data = load_breast_cancer()
    names = demo_feature_names()
    return [(dict(zip(names, map(float, row), strict=True)), not bool(target)) for row, target in zip(data.data, data.target, strict=True)]


class DemoTraffic:
    """Sends ``rate`` requests a second to ``url`` until ``stop`` is set or ``duration`` seconds pass."""

    def __init__(self, *, url: str, key: str, rate: float, duration: float | None, outcome_delay: float | None, seed: int | None = None):
        self.url = base_url(url)
        self.key = key
        self.rate = rate
        self.duration = duration
        self.outcome_delay = outcome_delay  # None: no outcomes
        self.random = random.Random(seed)
        self.rows = demo_rows()
        self.stop = threading.Event()
        self.tally = TrafficTally()
        self._due: deque[tuple[float, dict]] = deque()  # (when to post, outcome), in the order answered

    def _call(self, path: str, body) -> tuple[int, dict]:
        request = urllib.request.Request(  # noqa: S310 - base_url checked the scheme
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:  # noqa: S310 - base_url checked the scheme
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                answer = json.loads(exc.read() or b"{}")
            except ValueError:
                answer = {}
            return exc.code, answer

    def _event(self) -> tuple[dict, bool]:
        features, positive = self.random.choice(self.rows)
        noisy = {name: value * (1 + self.random.gauss(0, NOISE)) for name, value in features.items()}
        return {"event_id": f"demo-{uuid.uuid4().hex[:16]}", "product": PRODUCT, "features": noisy}, positive

    def send_one(self) -> str | None:
        """Send one request; None when the server took it (answered, or refused it for the rate), else what went wrong."""
        body, positive = self._event()
        try:
            status, answer = self._call("/v1/infer", body)
        except (OSError, ValueError) as exc:  # refused, reset or timed out: counted, and the run goes on
            self.tally.statuses[0] += 1
            return f"no answer ({exc})"
        self.tally.statuses[status] += 1
        if status == 200 and self.outcome_delay is not None:
            outcome = {
                "product": PRODUCT,
                "event_id": body["event_id"],
                "prediction_id": answer["prediction_id"],
                "label": positive,
                "source": "demo_traffic",
            }
            self._due.append((time.monotonic() + self.outcome_delay, outcome))
        if status in (200, 429):
            return None
        return f"{status}: {(answer.get('error') or {}).get('message') or 'no error message'}"

    def post_due_outcomes(self, *, everything: bool = False) -> None:
        now = time.monotonic()
        batch = []
        while self._due and (everything or self._due[0][0] <= now):
            batch.append(self._due.popleft()[1])
        if not batch:
            return
        try:
            status, _ = self._call("/v1/outcomes", batch)
        except (OSError, ValueError):
            status = 0
        if status == 201:
            self.tally.outcomes_posted += len(batch)
        elif not everything:  # keep them for the next batch; at the end they are dropped
            self._due.extendleft(reversed([(now, outcome) for outcome in batch]))

    def run(self, *, progress, progress_seconds: float = 10.0) -> TrafficTally:
        """Send until stopped; ``progress`` gets a line every ``progress_seconds`` and at the end."""
        start = self.tally.started = time.monotonic()  # the rate counts from the first request, not from the wait for /readyz
        next_send = next_outcomes = start
        next_progress = start + progress_seconds
        last_taken = start
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if self.duration is not None and now - start >= self.duration:
                    break
                if now >= next_send:
                    problem = self.send_one()
                    if problem is None:
                        last_taken = time.monotonic()
                    elif time.monotonic() - last_taken > GIVE_UP_AFTER_SECONDS:
                        # A new key needs a moment to reach the server; beyond that, every request would fail alike.
                        raise TrafficError(f"{self.url}/v1/infer took no request for {GIVE_UP_AFTER_SECONDS:.0f} s, the last: {problem}")
                    next_send = max(next_send + 1 / self.rate, time.monotonic() - 1)  # catch up at most a second
                if now >= next_outcomes:
                    self.post_due_outcomes()
                    next_outcomes = now + OUTCOME_BATCH_SECONDS
                if now >= next_progress:
                    progress(self.tally.line())
                    next_progress = now + progress_seconds
                self.stop.wait(max(0.0, min(next_send, next_outcomes, next_progress) - time.monotonic()))
        finally:
            self.post_due_outcomes(everything=True)
        progress(self.tally.line())
        return self.tally


def wait_until_ready(url: str, *, within: float, stop: threading.Event) -> bool:
    """Whether ``url``'s ``/readyz`` answered 200 within ``within`` seconds (the server has loaded its models)."""
    probe = f"{base_url(url)}/readyz"
    deadline = time.monotonic() + within
    while not stop.is_set():
        try:
            with urllib.request.urlopen(probe, timeout=2) as response:  # noqa: S310 - base_url checked the scheme
                if response.status == 200:
                    return True
        except (OSError, ValueError):
            pass  # not listening yet, or still loading (503)
        if time.monotonic() >= deadline:
            return False
        stop.wait(0.5)
    return False
