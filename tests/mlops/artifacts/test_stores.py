"""Model stores, local and S3 (a real S3-protocol server over TCP): discovery, upload, verified download."""

import json
from pathlib import Path

import boto3
import pytest

from mlops.artifacts.stores import ChecksumMismatch, StoreError, download_verified, sha256_of, store_from_url


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return store_from_url((tmp_path / "store").as_uri())
    bucket = request.getfixturevalue("s3_bucket")
    return store_from_url(f"s3://{bucket}/team-a/models")


@pytest.fixture
def onnx_file(demo_model_files) -> Path:
    return Path(demo_model_files["logreg"].path)


def test_put_then_discover_finds_the_artifact_with_its_metadata(store, onnx_file):
    uri = store.put(onnx_file, "fraud_score", "logreg", "7", {"sha256": sha256_of(onnx_file), "threshold": 0.4})
    [artifact] = list(store.discover())
    assert (artifact.product, artifact.name, artifact.version, artifact.uri) == ("fraud_score", "logreg", "7", uri)
    assert artifact.metadata["threshold"] == 0.4
    assert artifact.size == onnx_file.stat().st_size
    assert not artifact.problem


def test_download_lands_verified_in_the_content_addressed_cache(store, onnx_file, settings, tmp_path):
    settings.MODEL_CACHE_DIR = tmp_path / "cache"
    sha256 = sha256_of(onnx_file)
    uri = store.put(onnx_file, "fraud_score", "logreg", "7", {"sha256": sha256})
    local = download_verified(uri, sha256)
    assert local == tmp_path / "cache" / f"{sha256}.onnx"
    assert local.read_bytes() == onnx_file.read_bytes()


def test_a_tampered_artifact_is_refused_and_never_visible_in_the_cache(store, onnx_file, settings, tmp_path):
    settings.MODEL_CACHE_DIR = tmp_path / "cache"
    sha256 = sha256_of(onnx_file)
    tampered = tmp_path / "tampered.onnx"
    tampered.write_bytes(onnx_file.read_bytes()[:-8] + b"tampered")
    # The publisher's metadata claims the original hash; the bytes in the store are different.
    uri = store.put(tampered, "fraud_score", "logreg", "7", {"sha256": sha256})
    with pytest.raises(ChecksumMismatch, match="refused"):
        download_verified(uri, sha256)
    assert list((tmp_path / "cache").iterdir()) == []  # neither the final name nor a leftover partial file


def test_a_cached_file_changed_on_disk_is_fetched_again(store, onnx_file, settings, tmp_path):
    settings.MODEL_CACHE_DIR = tmp_path / "cache"
    sha256 = sha256_of(onnx_file)
    uri = store.put(onnx_file, "fraud_score", "logreg", "7", {"sha256": sha256})
    local = download_verified(uri, sha256)
    local.write_bytes(b"corrupted on disk")
    assert sha256_of(download_verified(uri, sha256)) == sha256


def test_metadata_without_a_valid_sha256_is_reported_not_fatal(store, onnx_file, tmp_path):
    store.put(onnx_file, "fraud_score", "good", "1", {"sha256": sha256_of(onnx_file)})
    store.put(onnx_file, "fraud_score", "bad", "1", {"sha256": "not-a-hash"})
    by_name = {artifact.name: artifact for artifact in store.discover()}
    assert by_name["good"].problem == ""
    assert "no valid sha256" in by_name["bad"].problem


def test_an_unreachable_s3_endpoint_is_a_store_error(settings, s3_server):
    from tests.conftest import free_port

    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StoreError, match="cannot list"):
        list(store_from_url("s3://models/prefix").discover())


def test_a_missing_bucket_is_a_store_error(settings, s3_server):
    settings.AWS_ENDPOINT_URL = s3_server
    with pytest.raises(StoreError, match="NoSuchBucket"):
        list(store_from_url("s3://no-such-bucket/prefix").discover())


def test_s3_layout_is_product_name_version(s3_bucket, s3_server, onnx_file):
    store = store_from_url(f"s3://{s3_bucket}/team-a")
    store.put(onnx_file, "fraud_score", "logreg", "3", {"sha256": sha256_of(onnx_file)})
    keys = sorted(obj["Key"] for obj in boto3.client("s3", endpoint_url=s3_server).list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == ["team-a/fraud_score/logreg/3/metadata.json", "team-a/fraud_score/logreg/3/model.onnx"]
    body = boto3.client("s3", endpoint_url=s3_server).get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read()
    assert json.loads(body)["sha256"] == sha256_of(onnx_file)


@pytest.mark.parametrize("url", ["ftp://host/models", "s3:///no-bucket", "models-folder"])
def test_unsupported_store_urls_are_refused(url):
    with pytest.raises(StoreError):
        store_from_url(url)
