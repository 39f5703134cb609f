"""Drift fixtures: the demo model pushed with its training data as reference, and logged traffic drawn from it."""

import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone
from sklearn.datasets import load_breast_cancer

from audit.models import PredictionLog
from mlops import services
from mlops.demo import PRODUCT, demo_feature_names, write_demo_reference
from tests.logged import log_rows

SHIFTED = "mean_radius"  # the feature the drift tests move by one standard deviation


@pytest.fixture(scope="session")
def reference_data() -> np.ndarray:
    return load_breast_cancer().data


@pytest.fixture
def reference_csv(tmp_path) -> Path:
    return write_demo_reference(tmp_path / "reference")


@pytest.fixture
def watched(local_store, demo_model_files, reference_csv):
    """``fraud_score`` with the demo logistic regression in production, pushed with its training data as reference."""
    demo = demo_model_files["logreg"]
    model = services.model_push(
        source=Path(demo.path), store=local_store, product=PRODUCT, name="logreg", version="1", threshold=0.5, reference=reference_csv
    )
    services.model_version_validate(model_version_id=model.pk, user=None, reason="test")
    return services.model_version_promote(model_version_id=model.pk, user=None, reason="test")


def traffic(reference: np.ndarray, count: int, *, seed: int = 1, shift: str | None = None) -> np.ndarray:
    """``count`` rows drawn from the reference rows (with replacement); ``shift``'s column moved up by one standard deviation."""
    rows = reference[np.random.default_rng(seed).integers(0, reference.shape[0], count)].copy()
    if shift is not None:
        column = demo_feature_names().index(shift)
        rows[:, column] += reference[:, column].std()
    return rows


def log(model_version, rows: np.ndarray, *, at=None, spread: timedelta = timedelta(seconds=1), role: str = "production", redact=()):
    """The rows as logged answers of ``model_version``, made evenly over ``spread`` ending at ``at`` (default now)."""
    names = demo_feature_names()
    end = at or timezone.now()
    step = spread / max(len(rows), 1)
    entries = []
    for index, row in enumerate(rows):
        features = {name: float(value) for name, value in zip(names, row, strict=True) if name not in redact}
        entries.append(
            PredictionLog(
                prediction_id=uuid.uuid4(),
                event_id=f"evt-{uuid.uuid4().hex[:12]}",
                product=model_version.product,
                model_version=model_version,
                role=role,
                features=features,
                score=float(min(1.0, max(0.0, row[0] / 30))),
                decision="allow",
                threshold=model_version.threshold,
                latency_ms=1.0,
                created_at=end - spread + step * (index + 1) - timedelta(microseconds=1),
            )
        )
    return log_rows(entries)
