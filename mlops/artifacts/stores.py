"""Model stores: where ONNX artifacts live (a local folder or S3) and how they reach this host.

Layout, the same in both stores::

    <root>/<product>/<name>/<version>/model.onnx
    <root>/<product>/<name>/<version>/metadata.json   {"sha256": "...", "threshold": 0.5, ...}
    <root>/<product>/<name>/<version>/reference.csv   optional (or reference.parquet): drift's reference rows,
                                                      its sha256 in metadata.json's "reference" (mlops.artifacts.reference)

``metadata.json`` is written by ``manage.py push_model``; its ``sha256`` is the publisher's
claim that every download is checked against. Downloads land in a content-addressed local
cache (``<MODEL_CACHE_DIR>/<sha256>.onnx``) through a temporary file and an atomic rename, so a
partial or tampered file is never visible under its final name.

Resilience (S3): every S3 operation goes through the endpoint's `mlops.background.resilience.Dependency`
(``s3:<endpoint>``): retried on transient failures (connection errors, timeouts, 5xx and
throttling; never on a missing bucket or a refused credential) with exponential backoff and
jitter, inside a circuit breaker that opens after ``S3_BREAKER_FAIL_MAX`` failed operations in a
row for ``S3_BREAKER_RESET_SECONDS`` (``mlops_circuit_state{dependency="s3:..."}``). None of this
is on the request path: only syncs and model loads reach a store, and the serving snapshot keeps
the models it has.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings

from mlops.background import resilience

ARTIFACT_NAME = "model.onnx"
METADATA_NAME = "metadata.json"
_CHUNK = 1024 * 1024

Progress = Callable[[int], None]


class StoreError(Exception):
    """The store cannot be reached or does not hold what was asked for."""


class ChecksumMismatch(StoreError):
    """A downloaded artifact does not match its recorded sha256: it is refused."""


# --- Resilience of S3 calls (mlops/resilience.py) -------------------------------------------

_TRANSIENT_CODES = {"RequestTimeout", "RequestTimeoutException", "SlowDown", "Throttling", "ThrottlingException", "ServiceUnavailable"}
_T = TypeVar("_T")


def _is_transient(exc: BaseException) -> bool:
    """Worth another try: the network or the server failed, not the request."""
    if isinstance(exc, BotoConnectionError | HTTPClientError):  # refused, reset, DNS, connect/read timeouts
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or status == 429 or exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    return False


def _s3_policy() -> resilience.Policy:
    return resilience.Policy(
        attempts=settings.S3_RETRY_ATTEMPTS,
        initial_seconds=settings.S3_RETRY_INITIAL_SECONDS,
        max_seconds=settings.S3_RETRY_MAX_SECONDS,
        fail_max=settings.S3_BREAKER_FAIL_MAX,
        reset_seconds=settings.S3_BREAKER_RESET_SECONDS,
    )


def _resilient(endpoint: str, operation: str, call: Callable[[], _T]) -> _T:
    """``call()`` through the endpoint's dependency ("s3:<endpoint>", "s3:aws" for AWS itself).

    Raises `StoreError` when its circuit is open; otherwise the call's own exception after the
    last attempt (callers turn it into a `StoreError` with their context).
    """
    try:
        return resilience.dependency(f"s3:{endpoint}", _s3_policy, _is_transient).call(operation, call)
    except resilience.DependencyUnavailable:
        raise StoreError(f"the model store at {endpoint} is failing: circuit open, not tried (retry later)") from None


@dataclass(frozen=True)
class Artifact:
    product: str
    name: str
    version: str
    uri: str
    size: int
    metadata: dict
    problem: str = ""  # why this artifact cannot be registered (bad metadata), if it cannot


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ModelStore(ABC):
    """One place holding artifacts in the layout above."""

    url: str

    @abstractmethod
    def discover(self) -> Iterator[Artifact]:
        """Every complete artifact (model + metadata) in the store."""

    @abstractmethod
    def fetch(self, uri: str, dest: Path, progress: Progress | None = None) -> None:
        """Copy the bytes at ``uri`` to ``dest`` (no verification: see `download_verified`)."""

    @abstractmethod
    def put(self, source: Path, product: str, name: str, version: str, metadata: dict, reference: tuple[Path, str] | None = None) -> str:
        """Upload an artifact with its metadata (and a reference file as ``(path, name in the store)``); return the artifact's URI.

        The metadata goes last: `discover` sees an artifact only once it is complete."""

    @staticmethod
    def _parse_key(relative: str) -> tuple[str, str, str] | None:
        parts = relative.strip("/").split("/")
        if len(parts) == 4 and parts[3] == ARTIFACT_NAME:
            return parts[0], parts[1], parts[2]
        return None


class LocalStore(ModelStore):
    """A folder on this host (the embedded default)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.url = self.root.as_uri()

    def discover(self) -> Iterator[Artifact]:
        if not self.root.is_dir():
            raise StoreError(f"model store folder {self.root} does not exist")
        for path in sorted(self.root.glob(f"*/*/*/{ARTIFACT_NAME}")):
            key = self._parse_key(str(path.relative_to(self.root)))
            metadata_path = path.with_name(METADATA_NAME)
            if key is None or not metadata_path.is_file():
                continue
            metadata, problem = _parse_metadata(metadata_path.read_bytes(), metadata_path)
            yield Artifact(*key, uri=path.as_uri(), size=path.stat().st_size, metadata=metadata, problem=problem)

    def fetch(self, uri: str, dest: Path, progress: Progress | None = None) -> None:
        source = Path(urlparse(uri).path)
        try:
            with open(source, "rb") as src, open(dest, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    if progress:
                        progress(len(chunk))
        except FileNotFoundError:
            raise StoreError(f"artifact {uri} does not exist") from None

    def put(self, source: Path, product: str, name: str, version: str, metadata: dict, reference: tuple[Path, str] | None = None) -> str:
        folder = self.root / product / name / version
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / ARTIFACT_NAME
        if reference is not None:
            _atomic_copy(reference[0], folder / reference[1])
        _atomic_copy(source, target)
        _atomic_write(folder / METADATA_NAME, json.dumps(metadata, indent=2).encode())
        return target.as_uri()


class S3Store(ModelStore):
    """A bucket and prefix in S3 or an S3-compatible server (``AWS_ENDPOINT_URL``)."""

    def __init__(self, bucket: str, prefix: str = ""):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.endpoint = settings.AWS_ENDPOINT_URL or "aws"
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.AWS_ENDPOINT_URL,
            # Fail fast when the store is down: callers report it and keep serving what they have.
            # Retries are ours (_resilient), so botocore makes one attempt per call.
            config=Config(connect_timeout=3, read_timeout=30, retries={"total_max_attempts": 1, "mode": "standard"}),
        )

    def _call(self, operation: str, call: Callable[[], _T]) -> _T:
        return _resilient(self.endpoint, operation, call)

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def discover(self) -> Iterator[Artifact]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        objects = {}

        def list_all() -> None:
            objects.clear()  # a retried listing starts over
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    objects[obj["Key"][len(prefix) :]] = obj["Size"]

        try:
            self._call("list", list_all)
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot list {self.url}: {_describe(exc)}") from None
        for relative in sorted(objects):
            key = self._parse_key(relative)
            metadata_relative = relative[: -len(ARTIFACT_NAME)] + METADATA_NAME
            if key is None or metadata_relative not in objects:
                continue
            where = f"s3://{self.bucket}/{prefix}{metadata_relative}"
            metadata, problem = _parse_metadata(self._get(prefix + metadata_relative), where)
            yield Artifact(*key, uri=f"s3://{self.bucket}/{prefix}{relative}", size=objects[relative], metadata=metadata, problem=problem)

    def _get(self, key: str) -> bytes:
        try:
            return self._call("get", lambda: self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot read s3://{self.bucket}/{key}: {_describe(exc)}") from None

    def fetch(self, uri: str, dest: Path, progress: Progress | None = None) -> None:
        parsed = urlparse(uri)
        try:
            self._call("download", lambda: self.client.download_file(parsed.netloc, parsed.path.lstrip("/"), str(dest), Callback=progress))
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot download {uri}: {_describe(exc)}") from None

    def put(self, source: Path, product: str, name: str, version: str, metadata: dict, reference: tuple[Path, str] | None = None) -> str:
        key = self._key(product, name, version, ARTIFACT_NAME)
        try:
            if reference is not None:
                reference_key = self._key(product, name, version, reference[1])
                self._call("upload", lambda: self.client.upload_file(str(reference[0]), self.bucket, reference_key))
            self._call("upload", lambda: self.client.upload_file(str(source), self.bucket, key))
            body = json.dumps(metadata, indent=2).encode()
            self._call(
                "put", lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(product, name, version, METADATA_NAME), Body=body)
            )
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot upload to {self.url}: {_describe(exc)}") from None
        return f"s3://{self.bucket}/{key}"


def store_from_url(url: str | None = None) -> ModelStore:
    """The store named by ``url`` (default: the ``MODEL_STORE_URL`` setting)."""
    url = url or settings.MODEL_STORE_URL
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"store URL {url!r} names no bucket")
        return S3Store(parsed.netloc, parsed.path)
    raise StoreError(f"unsupported store URL {url!r}: use file:///path or s3://bucket/prefix")


def store_for_artifact(uri: str) -> ModelStore:
    """A store able to fetch the artifact at ``uri``, whatever store it was registered from."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return LocalStore(Path("/"))
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc)
    raise StoreError(f"unsupported artifact URI {uri!r}")


def sibling_uri(uri: str, name: str) -> str:
    """The URI of the file ``name`` in the same folder as the artifact at ``uri`` (a reference file)."""
    return uri.rsplit("/", 1)[0] + "/" + name


def download_verified(uri: str, sha256: str, progress: Progress | None = None, suffix: str = ".onnx") -> Path:
    """Bring the artifact into the local cache and return its path, or raise.

    A cached file is re-hashed before use (the cache is on a disk others can write to); a
    download goes to a temporary file that is renamed into place only once its sha256 matches.
    """
    cache_dir = Path(settings.MODEL_CACHE_DIR)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{sha256}{suffix}"
    if target.exists():
        if sha256_of(target) == sha256:
            return target
        target.unlink(missing_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=cache_dir, prefix=".partial-", suffix=suffix)
    os.close(handle)
    temp = Path(temp_name)
    try:
        store_for_artifact(uri).fetch(uri, temp, progress)
        actual = sha256_of(temp)
        if actual != sha256:
            raise ChecksumMismatch(f"{uri} has sha256 {actual[:12]}…, expected {sha256[:12]}…: refused")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def _parse_metadata(raw: bytes, where) -> tuple[dict, str]:
    """The metadata and, when it is unusable, a readable reason (one bad file must not stop a sync)."""
    try:
        metadata = json.loads(raw)
    except ValueError:
        return {}, f"{where} is not valid JSON"
    if not isinstance(metadata, dict) or not re.fullmatch(r"[0-9a-f]{64}", str(metadata.get("sha256", ""))):
        return {}, f"{where} has no valid sha256"
    return metadata, ""


def _atomic_copy(source: Path, target: Path) -> None:
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    os.close(handle)
    try:
        shutil.copyfile(source, temp)
        os.replace(temp, target)
    finally:
        Path(temp).unlink(missing_ok=True)


def _atomic_write(target: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(temp, target)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip(": ")
    return str(exc)
