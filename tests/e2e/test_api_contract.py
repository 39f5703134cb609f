"""The API against its own OpenAPI schema: schemathesis, every check, every operation, every phase.

The platform runs as `make run` starts it (the `embedded_platform` fixture) and schemathesis reads
its live schema, so what is tested is what a client is told: each operation's statuses, bodies
and content types, valid requests accepted and invalid ones refused, and the stateful phase
following the schema's links (POST /v1/infer to its prediction, POST /v1/canary to the canary's
operations). Any failure fails the test, with schemathesis's report.
"""

import subprocess
import sys
import time
from pathlib import Path

import requests

HERE = Path(__file__).parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# The budget: 30 examples per operation.
MAX_EXAMPLES = 30
# A guard against a hang, not a budget: the run takes 60-75 s on this 2-core machine when it is
# busy (it grows with the operations), and a CI machine may be slower; the test's own limit is 300 s.
RUN_TIMEOUT = 240


def test_the_api_does_what_its_schema_says(embedded_platform, tmp_path):
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{embedded_platform.url}/api/schema/?format=json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--header",
        f"Authorization: Bearer {embedded_platform.keys['internal_service']}",
        "--report-dir",
        str(tmp_path),
    ]
    started = time.monotonic()
    # In tmp_path: schemathesis keeps its own state in the working directory.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"schemathesis found failures ({elapsed:.0f} s):\n{result.stdout}\n{result.stderr}"


def test_a_multipart_body_with_no_parts_is_refused_in_json_naming_the_fields(embedded_platform):
    # Only the closing boundary: what a client sends for an empty form. Twisted's own multipart
    # parse (daphne's requests are Twisted's) answers it with a bare 400, before the API sees it.
    answer = requests.post(
        f"{embedded_platform.url}/v1/models",
        data=b"--e0f1--\r\n",
        headers={
            "Authorization": f"Bearer {embedded_platform.keys['ml_ops']}",
            "Content-Type": "multipart/form-data; boundary=e0f1",
        },
        timeout=10,
    )
    assert (answer.status_code, answer.headers["Content-Type"]) == (400, "application/json")
    assert {"file", "product", "name", "version"} <= set(answer.json()["error"]["fields"])
