"""A reference file pushed with the model: beside model.onnx in the store, checksummed, from push_model, HTTP and sync."""

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from audit.drift import services as drift
from mlops import services
from mlops.artifacts.reference import ReferenceInvalid
from mlops.artifacts.stores import sha256_of, store_from_url
from mlops.demo import PRODUCT, demo_feature_names
from mlops.models import ModelVersion
from mlops.security.authentication import api_keys
from mlops.services.api_keys import api_key_create

pytestmark = pytest.mark.django_db


def test_push_model_stores_the_reference_beside_the_model_with_its_sha256(demo_model_files, reference_csv, tmp_path):
    store = tmp_path / "store"
    out = io.StringIO()
    call_command(
        "push_model", str(demo_model_files["logreg"].path), "--product", PRODUCT, "--name", "logreg", "--version", "3",
        "--store", store.as_uri(), "--reference", str(reference_csv), stdout=out,
    )  # fmt: skip
    folder = store / PRODUCT / "logreg" / "3"
    assert (folder / "reference.csv").read_bytes() == reference_csv.read_bytes()
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["reference"] == {"file": "reference.csv", "sha256": sha256_of(reference_csv)}
    model = ModelVersion.objects.get(product=PRODUCT, name="logreg", version="3")
    assert model.reference_uri == (folder / "reference.csv").as_uri() and model.reference_sha256 == sha256_of(reference_csv)


def test_push_model_refuses_a_reference_without_the_models_features(demo_model_files, tmp_path):
    bad = tmp_path / "reference.csv"
    bad.write_text("amount,label\n1.0,0\n")
    with pytest.raises(CommandError, match="no column for the features"):
        call_command(
            "push_model", str(demo_model_files["logreg"].path), "--product", PRODUCT, "--name", "logreg", "--version", "1",
            "--store", (tmp_path / "store").as_uri(), "--reference", str(bad),
        )  # fmt: skip
    assert not ModelVersion.objects.exists() and not (tmp_path / "store").exists()  # refused before anything was uploaded


def test_a_parquet_reference_gives_the_same_baseline_as_the_csv(local_store, demo_model_files, reference_csv, reference_data, tmp_path):
    table = pa.table({name: reference_data[:, i] for i, name in enumerate(demo_feature_names())})
    parquet = tmp_path / "reference.parquet"
    pq.write_table(table, parquet)
    source = Path(demo_model_files["logreg"].path)
    from_csv = services.model_push(source=source, store=local_store, product=PRODUCT, name="logreg", version="1", reference=reference_csv)
    from_parquet = services.model_push(source=source, store=local_store, product=PRODUCT, name="logreg", version="2", reference=parquet)
    assert from_parquet.reference_uri.endswith("/logreg/2/reference.parquet")
    a = drift.drift_baseline_ensure(model_version=from_csv)
    b = drift.drift_baseline_ensure(model_version=from_parquet)
    assert a.features == b.features and a.rows == b.rows == 569
    assert np.allclose(a.score["edges"], b.score["edges"])


def test_a_file_that_is_not_csv_or_parquet_is_refused(local_store, demo_model_files, tmp_path):
    other = tmp_path / "reference.xlsx"
    other.write_bytes(b"x")
    with pytest.raises(ReferenceInvalid, match=r"\.csv or \.parquet"):
        services.model_push(
            source=Path(demo_model_files["logreg"].path), store=local_store, product=PRODUCT, name="l", version="1", reference=other
        )


def _ops(settings, tmp_path) -> APIClient:
    settings.MODEL_STORE_URL = (tmp_path / "api-store").as_uri()
    _, key = api_key_create(client="pipeline", role="ml_ops")
    api_keys.invalidate()
    return APIClient(headers={"Authorization": f"Bearer {key}"})


def _form(demo, reference: bytes | None, name: str = "reference.csv") -> dict:
    form = {
        "file": SimpleUploadedFile("model.onnx", Path(demo.path).read_bytes()),
        "product": PRODUCT,
        "name": "logreg",
        "version": "9",
    }
    if reference is not None:
        form["reference"] = SimpleUploadedFile(name, reference)
    return form


def test_http_registration_takes_a_reference_part(settings, tmp_path, demo_model_files, reference_csv):
    answer = _ops(settings, tmp_path).post("/v1/models", _form(demo_model_files["logreg"], reference_csv.read_bytes()), format="multipart")
    assert answer.status_code == 201, answer.content
    model = ModelVersion.objects.get(pk=answer.json()["model_id"])
    assert model.reference_sha256 == sha256_of(reference_csv)
    assert Path(model.reference_uri.removeprefix("file://")).read_bytes() == reference_csv.read_bytes()


def test_http_registration_refuses_a_bad_reference_naming_the_field(settings, tmp_path, demo_model_files):
    answer = _ops(settings, tmp_path).post("/v1/models", _form(demo_model_files["logreg"], b"a,b\n1,2\n"), format="multipart")
    assert answer.status_code == 422
    assert "reference" in answer.json()["error"]["fields"]
    wrong_kind = _ops(settings, tmp_path).post("/v1/models", _form(demo_model_files["logreg"], b"x", name="ref.txt"), format="multipart")
    assert wrong_kind.status_code == 422 and "reference" in wrong_kind.json()["error"]["fields"]
    empty = _ops(settings, tmp_path).post("/v1/models", _form(demo_model_files["logreg"], b""), format="multipart")
    assert empty.status_code == 422 and "reference" in empty.json()["error"]["fields"]
    assert not ModelVersion.objects.exists()


def test_sync_registers_the_reference_a_store_holds(tmp_path, demo_model_files, reference_csv):
    store = store_from_url((tmp_path / "store").as_uri())
    services.model_push(
        source=Path(demo_model_files["logreg"].path), store=store, product=PRODUCT, name="logreg", version="1", reference=reference_csv
    )
    ModelVersion.objects.all().delete()  # another environment's registry: only the store is shared
    (result,) = services.models_sync(store=store)
    assert result.outcome == "registered"
    assert result.model_version.reference_uri.endswith("/fraud_score/logreg/1/reference.csv")
    assert result.model_version.reference_sha256 == sha256_of(reference_csv)
