"""The load generator: wrk on its own core, cycling through pre-generated bodies.

``drive()`` runs wrk (Debian package ``wrk``) with ``load.lua``: one thread (one core),
``concurrency`` keep-alive connections, each request taken in turn from a file of bodies written
for this run only, so that no two requests of an uncached run carry the same feature vector.
It returns req/s, p50/p99 (wrk's own latency histogram), every status code seen and wrk's
socket errors; ``errors`` counts every response that is not a 200 plus every socket error.

Why wrk and not a Python client: the asyncio keep-alive client that ``bench/run.py`` used
before tops out below the peers' throughput on one core (``python bench/load.py`` measures both
against a server that does nothing; see bench/README.md), so it would have measured itself.
"""

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LUA = Path(__file__).with_name("load.lua")


@dataclass
class Target:
    """One kind of request: ``bodies`` is None for a GET, else one body per request, in order."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    bodies: list[bytes] | None = None


def wrk_program() -> str:
    program = shutil.which("wrk")
    if program is None:
        raise SystemExit("wrk is missing: apt-get install wrk (Debian package `wrk`)")
    return program


def pin_to(cpu: int | None):
    """A preexec_fn that pins the child (and whatever it starts) to one CPU."""

    def pin():
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return pin


def drive(port: int, target: Target, concurrency: int, seconds: int, cpu: int | None, scratch: Path) -> dict:
    """One wrk run; returns its summary (latencies in ms) and the client's CPU per request."""
    bodies = "-"
    if target.bodies is not None:
        bodies = str(scratch / "bodies.ndjson")
        with open(bodies, "wb") as out:
            out.write(b"\n".join(target.bodies) + b"\n")
    headers = [f"{name}: {value}" for name, value in target.headers.items()]
    command = [wrk_program(), "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA)]
    command += [f"http://127.0.0.1:{port}{target.path}", "--", target.method, target.path, bodies, *headers]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=pin_to(cpu), timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    raw = json.loads(lines[-1])
    statuses = {int(status): n for status, n in raw["statuses"].items()}
    socket_errors = {kind: n for kind, n in raw["socket_errors"].items() if n}
    requests = raw["requests"]
    client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "requests": requests,
        "rps": requests / (raw["duration_us"] / 1e6),
        "p50": raw["p50_us"] / 1000,
        "p99": raw["p99_us"] / 1000,
        "mean": raw["mean_us"] / 1000,
        "max": raw["max_us"] / 1000,
        "errors": sum(n for status, n in statuses.items() if status != 200) + sum(socket_errors.values()),
        "statuses": statuses,
        "socket_errors": socket_errors,
        "bodies": len(target.bodies) if target.bodies is not None else 0,
        "client_cpu_us": client_cpu / max(1, requests) * 1e6,
    }


# --- How much can each client drive? (`python bench/load.py`) ---------------------------------

CONSTANT = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n" + b'{"status": "ok"}'


def serve_constant(port: int) -> None:
    """A server that does nothing but answer 200 to each request of a keep-alive connection."""

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""

        def data_received(self, data):
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head, rest = self.buffer[:end], self.buffer[end + 4 :]
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if len(rest) < length:
                    return
                self.buffer = rest[length:]
                self.transport.write(CONSTANT)

    async def main():
        server = await asyncio.get_running_loop().create_server(Protocol, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    asyncio.run(main())


class Client:
    """One keep-alive HTTP/1.1 connection: the asyncio client bench/run.py drove the load with before wrk."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                self.writer.write(payload)
                head = await self.reader.readuntil(b"\r\n\r\n")
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        status = int(head[9:12])
        length, close = 0, False
        for line in head.split(b"\r\n")[1:]:
            lower = line.lower()
            if lower.startswith(b"content-length:"):
                length = int(line[15:])
            elif lower.startswith(b"connection:") and b"close" in lower:
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def python_drive(port: int, payloads: list[bytes], concurrency: int, seconds: float) -> int:
    """The asyncio client at ``concurrency``, timing each request as it did: requests completed."""
    samples: list[float] = []
    position = 0
    stop_at = time.perf_counter() + seconds

    async def worker():
        nonlocal position
        client = Client(port)
        while time.perf_counter() < stop_at:
            payload = payloads[position % len(payloads)]
            position += 1
            started = time.perf_counter()
            await client.request(payload)
            samples.append(time.perf_counter() - started)
        client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    samples.sort()  # as the former client did, to read its percentiles
    return len(samples)


def capacity(seconds: int = 5) -> list[dict]:
    """Both clients on CPU 1 against ``serve_constant`` on CPU 0: req/s and each side's CPU."""
    from servers import cpu_seconds  # the same /proc accounting as the benchmark's servers

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve-constant", str(port)], preexec_fn=pin_to(server_cpu))
    body = json.dumps({"event_id": "x", "product": "fraud_score", "features": {f"f{i}": 1.5 for i in range(30)}}).encode()
    results = []
    try:
        time.sleep(1.0)
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        head = f"POST /infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        payloads = [head.encode() + body]
        with tempfile.TemporaryDirectory() as scratch:
            for concurrency in (1, 8, 64):
                started, cpu, mine = time.perf_counter(), cpu_seconds(server.pid), time.process_time()
                count = asyncio.run(python_drive(port, payloads, concurrency, seconds))
                elapsed = time.perf_counter() - started
                results.append(
                    {
                        "client": "python asyncio",
                        "concurrency": concurrency,
                        "rps": count / elapsed,
                        "client_cpu_share": (time.process_time() - mine) / elapsed,
                        "server_cpu_share": (cpu_seconds(server.pid) - cpu) / elapsed,
                    }
                )
                cpu = cpu_seconds(server.pid)
                run = drive(
                    port,
                    Target("POST", "/infer", {"Content-Type": "application/json"}, [body]),
                    concurrency,
                    seconds,
                    client_cpu,
                    Path(scratch),
                )
                results.append(
                    {
                        "client": "wrk",
                        "concurrency": concurrency,
                        "rps": run["rps"],
                        "client_cpu_share": run["client_cpu_us"] * run["requests"] / 1e6 / seconds,
                        "server_cpu_share": (cpu_seconds(server.pid) - cpu) / seconds,
                    }
                )
    finally:
        server.kill()
        server.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="How many req/s each load generator drives from one core")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--serve-constant", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_constant:
        serve_constant(args.serve_constant)
        return
    print("client on CPU 1, a do-nothing asyncio server on CPU 0, keep-alive POSTs of a 30-feature body")
    print()
    print("| client | concurrency | req/s | client CPU | server CPU |")
    print("|---|---|---|---|---|")
    for row in capacity(args.seconds):
        print(
            f"| {row['client']} | {row['concurrency']} | {row['rps']:,.0f} "
            f"| {row['client_cpu_share']:.0%} | {row['server_cpu_share']:.0%} |"
        )


if __name__ == "__main__":
    main()
