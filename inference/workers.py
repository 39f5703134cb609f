"""What this serving process tells the registry it serves, for the rollout page's "Serving workers".

Called by the runtime's background refresher (`inference.runtime.Runtime.report_worker`), never
by a request: the report is a database write.
"""

import os
import socket
from datetime import datetime

from inference.snapshot import Snapshot
from mlops import services


def worker_routes(snapshot: Snapshot) -> dict[str, dict]:
    """Per product of the snapshot: the labels ("name@version") of its models and the canary's share."""
    return {
        product: {
            "production": route.production.label,
            "canary": route.canary.label if route.canary else None,
            "canary_percent": route.canary_basis_points / 100 if route.canary else 0.0,
            "shadow": route.shadow.label if route.shadow else None,
        }
        for product, route in snapshot.routes.items()
    }


def worker_report(snapshot: Snapshot, *, started_at: datetime) -> None:
    """Record this process ("<hostname>:<pid>") as serving ``snapshot``."""
    hostname, pid = socket.gethostname(), os.getpid()
    services.serving_worker_report(
        worker=f"{hostname}:{pid}",
        hostname=hostname,
        pid=pid,
        started_at=started_at,
        generation=snapshot.generation,
        routes=worker_routes(snapshot),
    )
