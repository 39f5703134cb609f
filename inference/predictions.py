"""One answered prediction, and how a model's run shows in log records and spans.

Shared by the answering path (`inference.services`) and the shadow runs (`inference.shadow`).
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from inference.session import LoadedModel


@dataclass
class Prediction:
    prediction_id: uuid.UUID
    event_id: str
    product: str
    model: LoadedModel
    role: str
    score: float
    decision: str
    explain_summary: list
    latency_ms: float
    cached: bool
    fallback_from: LoadedModel | None = None
    fallback_reason: str = ""
    features: Mapping = field(default_factory=dict, repr=False)
    client: str = ""  # who asked (the caller's principal owner): clients read back only their own

    def as_response(self) -> dict:
        return {
            "prediction_id": str(self.prediction_id),
            "model_id": self.model.id,
            "model_version": self.model.spec.version,
            "model_role": self.role,
            "score": self.score,
            "decision": self.decision,
            "explain_summary": self.explain_summary,
            "latency_ms": self.latency_ms,
            "cached": self.cached,
        }


def model_fields(model: LoadedModel, role: str) -> dict:
    """The log fields of a record about one model's run (`mlops.observability.logging`)."""
    return {"product": model.spec.product, "model": model.label, "model_version": model.spec.version, "role": role}


def span_attributes(model: LoadedModel) -> dict:
    """What an operator filters model spans by."""
    spec = model.spec
    return {"product": spec.product, "model_id": model.id, "model_name": spec.name, "model_version": spec.version}
