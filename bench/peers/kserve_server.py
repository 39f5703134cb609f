"""KServe's Python model server (``kserve`` 0.21) serving the platform's ONNX file, V1 protocol.

Written as KServe's own servers are (``sklearnserver``): a ``kserve.Model`` subclass, and
KServe's argument parser as parent, so every ``ModelServer`` option is its real command-line
flag. ``bench/run.py`` starts it with::

    --model_name fraud_score --http_port P --grpc_port Q --workers 1
    --enable_grpc false --enable_latency_logging false --log_config_file kserve_logging.json

``--enable_grpc false`` starts no gRPC server; ``--enable_latency_logging false`` drops the
per-request latency line; the log config sets ``uvicorn.access`` and ``kserve.trace`` (the
timing middleware's per-request line) to WARNING, so no request writes a log line. The model
answers ``POST /v1/models/fraud_score:predict`` with ``{"instances": [[30 floats]]}`` as
``{"predictions": [score]}``. Runs in the peers' virtualenv (``bench/.peers/venv``).
"""

import argparse

import kserve
import numpy as np
from common import open_session
from kserve import model_server


class OnnxModel(kserve.Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        self.session, self.input_name, _ = open_session(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: dict, headers=None, response_headers=None) -> dict:
        rows = np.asarray(payload["instances"], dtype=np.float32)
        probabilities = self.session.run(["probabilities"], {self.input_name: rows})[0]
        return {"predictions": probabilities[:, 1].tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    server = kserve.ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=args.workers,
        enable_grpc=args.enable_grpc,
        enable_latency_logging=args.enable_latency_logging,
    )
    server.start([OnnxModel(args.model_name, args.model_path)])
