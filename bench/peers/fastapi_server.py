"""The bare peer: FastAPI + uvicorn + onnxruntime, what a team would write in an afternoon.

One worker, no authentication, no log. ``POST /infer`` takes the platform's body shape,
``{"event_id", "product", "features": {name: value}}``, validated by a pydantic model as
FastAPI users do, and answers the score. Runs in the peers' virtualenv (``bench/.peers/venv``).

Usage: ``python fastapi_server.py --model-path FILE --port PORT``
"""

import argparse

import numpy as np
import uvicorn
from common import open_session
from fastapi import FastAPI
from pydantic import BaseModel


class InferRequest(BaseModel):
    event_id: str
    product: str
    features: dict[str, float]


def build_app(model_path: str) -> FastAPI:
    session, input_name, names = open_session(model_path)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/infer")
    async def infer(body: InferRequest) -> dict:
        row = np.array([[body.features[name] for name in names]], dtype=np.float32)
        probabilities = session.run(["probabilities"], {input_name: row})[0]
        return {"event_id": body.event_id, "score": float(probabilities[0, 1])}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model_path), host="127.0.0.1", port=args.port, workers=1, access_log=False, log_level="warning")
