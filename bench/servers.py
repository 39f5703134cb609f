"""The servers under test: how each is started, pinned, made ready, accounted and stopped.

Every server is started with the CPU affinity of the benchmark's server core, inherited by all
it starts (gunicorn's worker, granian's worker, uvicorn's threads); its CPU time is read from
``/proc`` for the process and all its descendants.
"""

import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from load import pin_to


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                stack += [int(child) for child in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and every descendant so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for each in _descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@dataclass
class Server:
    """A running server process; ``log`` collects its stdout and stderr."""

    name: str
    port: int
    process: subprocess.Popen
    log: Path
    extra: dict = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def log_lines(self) -> int:
        return len(self.log.read_bytes().splitlines()) if self.log.exists() else 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(name: str, command: list[str], *, port: int, ready_path: str, env: dict, cwd: Path, log: Path, cpu: int | None) -> Server:
    """Start ``command`` pinned to ``cpu`` and wait until ``ready_path`` answers 200."""
    out = open(log, "wb")  # noqa: SIM115 - the child keeps writing to it
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin_to(cpu))
    server = Server(name, port, process, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited: see {log}\n" + log.read_text(errors="replace")[-3000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=1) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise SystemExit(f"{name} did not become ready within 90 s: see {log}")
