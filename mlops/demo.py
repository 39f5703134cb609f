"""Demo models for product ``fraud_score``, trained on data scikit-learn ships (no download).

The breast-cancer data set stands in for fraud data: 30 numeric features, a positive class
(malignant, relabelled 1) of about a third of the rows. scikit-learn and skl2onnx are
development dependencies, imported only when demo models are built.
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

PRODUCT = "fraud_score"


@dataclass(frozen=True)
class DemoModel:
    name: str
    version: str
    threshold: float
    description: str
    path: Path


def demo_feature_names() -> list[str]:
    from sklearn.datasets import load_breast_cancer

    return [name.replace(" ", "_") for name in load_breast_cancer().feature_names]


def build_demo_models(folder: Path) -> list[DemoModel]:
    """Train the demo models and write them as ONNX files into ``folder``."""
    try:
        from skl2onnx import to_onnx
        from sklearn.datasets import load_breast_cancer
        from sklearn.ensemble import GradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise RuntimeError(f"building demo models needs the development requirements ({exc.name} is missing)") from None

    features, target = load_breast_cancer(return_X_y=True)
    positive = 1 - target  # malignant is the rare, "fraud-like" class
    specs = [
        (
            "logreg",
            "1",
            0.5,
            "Logistic regression (scaled), the fast model.",
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        ),
        ("gbdt", "1", 0.6, "Gradient boosting, the full model.", GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=7)),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    names = json.dumps(demo_feature_names())
    built = []
    for name, version, threshold, description, estimator in specs:
        estimator.fit(features, positive)
        onnx_model = to_onnx(estimator, features[:1].astype("float32"), options={"zipmap": False}, target_opset=17)
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = "feature_names", names
        path = folder / f"{name}-{version}.onnx"
        path.write_bytes(onnx_model.SerializeToString())
        built.append(DemoModel(name, version, threshold, description, path))
    return built


def write_demo_reference(folder: Path) -> Path:
    """The demo models' training data as their drift reference (``reference.csv``: a header of feature names)."""
    from sklearn.datasets import load_breast_cancer

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "reference.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(demo_feature_names())
        writer.writerows(load_breast_cancer().data.tolist())
    return path
