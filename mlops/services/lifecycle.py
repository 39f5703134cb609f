"""Lifecycle of model versions: register, validate, promote, roll back, sync, push, upload (archiving: `mlops.services.archive`).

Every transition is a conditional update (``filter(pk=..., status__in=allowed).update(...)``)
so that two staff members acting at once cannot both succeed, followed by a history row with
the acting user and the reason. Illegal transitions raise `LifecycleError` with a message a
person can act on.
"""

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from mlops import hooks
from mlops.artifacts.onnx_schema import SchemaError, read_schema
from mlops.artifacts.reference import ReferenceInvalid, reference_matrix, reference_name
from mlops.artifacts.stores import Artifact, ModelStore, Progress, StoreError, download_verified, sha256_of, sibling_uri
from mlops.background import config_generation
from mlops.choices import ModelStatus
from mlops.models import ModelVersion

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # a model's name and version
PRODUCT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

User = AbstractBaseUser | None


class LifecycleError(Exception):
    """A registry operation that is not allowed in the current state."""


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise LifecycleError("a reason is required for every registry change")
    return reason[:500]


def _record_history(model_version: ModelVersion, *, user: User, reason: str) -> None:
    ModelVersion.history.bulk_history_create(
        [model_version], update=True, default_user=user, default_change_reason=reason, default_date=model_version.changed_at
    )


def _transition(model_version_id, *, allowed: tuple[str, ...], to: str, user: User, reason: str, **fields) -> ModelVersion:
    """Move one version from one of ``allowed`` to ``to``, or explain why it cannot move."""
    now = timezone.now()
    reason = reason[:500]  # callers may prefix the person's reason ("rolled back: ...")
    updated = ModelVersion.objects.filter(pk=model_version_id, status__in=allowed).update(
        status=to, changed_by=user, changed_at=now, change_reason=reason, **fields
    )
    if updated != 1:
        current = ModelVersion.objects.filter(pk=model_version_id).first()
        if current is None:
            raise LifecycleError(f"model version {model_version_id} does not exist")
        raise LifecycleError(f"{current} is {current.status}; only {' or '.join(allowed)} versions can become {to}")
    model_version = ModelVersion.objects.get(pk=model_version_id)
    _record_history(model_version, user=user, reason=reason)
    return model_version


def _validate_names(*, product: str, name: str, version: str) -> None:
    if not PRODUCT_PATTERN.match(product):
        raise LifecycleError(f"product {product!r} must be lower-case letters, digits, '-' or '_'")
    for label, value in (("name", name), ("version", version)):
        if not NAME_PATTERN.match(value):
            raise LifecycleError(f"{label} {value!r} must be letters, digits, '.', '-' or '_' (at most 100)")


@transaction.atomic
def model_version_register(
    *,
    product: str,
    name: str,
    version: str,
    artifact_uri: str,
    sha256: str,
    size_bytes: int,
    input_schema: dict,
    output_schema: dict,
    threshold: float = 0.5,
    description: str = "",
    reference_uri: str = "",
    reference_sha256: str = "",
    user: User = None,
    reason: str = "registered",
) -> ModelVersion:
    """Register a verified artifact (and the reference file pushed with it, if any) as a new candidate version."""
    _validate_names(product=product, name=name, version=version)
    reason = _require_reason(reason)
    if not 0.0 <= threshold <= 1.0:
        raise LifecycleError(f"threshold {threshold} must be between 0 and 1")
    if ModelVersion.objects.filter(product=product, name=name, version=version).exists():
        raise LifecycleError(f"{product}/{name}@{version} is already registered")
    model_version = ModelVersion(
        product=product,
        name=name,
        version=version,
        artifact_uri=artifact_uri,
        sha256=sha256,
        size_bytes=size_bytes,
        input_schema=input_schema,
        output_schema=output_schema,
        threshold=threshold,
        description=description,
        reference_uri=reference_uri,
        reference_sha256=reference_sha256,
        status=ModelStatus.CANDIDATE,
        changed_by=user,
        changed_at=timezone.now(),
        change_reason=reason,
        loaded_at=timezone.now(),
    )
    model_version._history_user = user
    model_version._change_reason = reason
    model_version.save()
    return model_version


@transaction.atomic
def model_version_validate(*, model_version_id, user: User, reason: str) -> ModelVersion:
    """A candidate passed its offline checks and may go to canary or production.

    With ``BACKTEST_REQUIRED_FOR_VALIDATION`` one of the checks is a passing backtest on logged
    traffic (the audit app judges it: `mlops.hooks.backtest_gate`).
    """
    if settings.BACKTEST_REQUIRED_FOR_VALIDATION and ModelVersion.objects.filter(pk=model_version_id).exists():
        problem = hooks.backtest_gate(model_version_id=model_version_id)
        if problem:
            raise LifecycleError(problem)
    return _transition(
        model_version_id, allowed=(ModelStatus.CANDIDATE,), to=ModelStatus.VALIDATED, user=user, reason=_require_reason(reason)
    )


@transaction.atomic
def model_version_promote(*, model_version_id, user: User, reason: str) -> ModelVersion:
    """Make a validated (or canary) version production; the old production is archived."""
    reason = _require_reason(reason)
    target = ModelVersion.objects.filter(pk=model_version_id).first()
    if target is None:
        raise LifecycleError(f"model version {model_version_id} does not exist")
    current = ModelVersion.objects.filter(product=target.product, status=ModelStatus.PRODUCTION).exclude(pk=target.pk).first()
    if current is not None:
        # Archive first: the one-production-per-product constraint holds at every statement.
        _transition(
            current.pk, allowed=(ModelStatus.PRODUCTION,), to=ModelStatus.ARCHIVED, user=user, reason=f"replaced by {target}: {reason}"
        )
    promoted = _transition(
        target.pk,
        allowed=(ModelStatus.VALIDATED, ModelStatus.CANARY),
        to=ModelStatus.PRODUCTION,
        user=user,
        reason=reason,
        promoted_at=timezone.now(),
        rolled_back_at=None,
    )
    config_generation.bump_on_commit()
    return promoted


@transaction.atomic
def model_version_rollback(*, product: str, user: User, reason: str) -> ModelVersion:
    """Put the product's last good production version back; the current one is archived.

    "Last good" is the most recently promoted archived version that was not itself rolled back.
    """
    reason = _require_reason(reason)
    current = ModelVersion.objects.filter(product=product, status=ModelStatus.PRODUCTION).first()
    if current is None:
        raise LifecycleError(f"product {product!r} has no production version to roll back")
    previous = (
        ModelVersion.objects.filter(product=product, status=ModelStatus.ARCHIVED, promoted_at__isnull=False, rolled_back_at__isnull=True)
        .exclude(pk=current.pk)
        .order_by("-promoted_at")
        .first()
    )
    if previous is None:
        raise LifecycleError(f"product {product!r} has no earlier production version to roll back to")
    now = timezone.now()
    _transition(
        current.pk,
        allowed=(ModelStatus.PRODUCTION,),
        to=ModelStatus.ARCHIVED,
        user=user,
        reason=f"rolled back: {reason}",
        rolled_back_at=now,
    )
    restored = _transition(
        previous.pk,
        allowed=(ModelStatus.ARCHIVED,),
        to=ModelStatus.PRODUCTION,
        user=user,
        reason=f"restored by rollback: {reason}",
        promoted_at=now,
    )
    config_generation.bump_on_commit()
    return restored


# --- Stores -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    artifact: Artifact
    outcome: str  # "registered", "present" or "refused"
    message: str
    model_version: ModelVersion | None = None


def models_sync(*, store: ModelStore, user: User = None, progress: Progress | None = None) -> Iterator[SyncResult]:
    """Register every artifact of ``store`` that the registry does not know yet, one result each.

    Raises `StoreError` when the store itself cannot be listed; a bad artifact is refused and
    reported without stopping the others.
    """
    for artifact in store.discover():
        label = f"{artifact.product}/{artifact.name}@{artifact.version}"
        if artifact.problem:
            yield SyncResult(artifact, "refused", artifact.problem)
            continue
        sha256 = artifact.metadata["sha256"]
        known = ModelVersion.objects.filter(product=artifact.product, name=artifact.name, version=artifact.version).first()
        if known is not None and known.sha256 != sha256:
            yield SyncResult(artifact, "refused", f"{label}: the store's sha256 differs from the registered one; versions are immutable")
            continue
        try:
            local = download_verified(artifact.uri, sha256, progress)
        except StoreError as exc:
            yield SyncResult(artifact, "refused", f"{label}: {exc}", known)
            continue
        if known is not None:
            ModelVersion.objects.filter(pk=known.pk).update(loaded_at=timezone.now())
            yield SyncResult(artifact, "present", f"{label}: already registered ({known.status}), artifact verified", known)
            continue
        try:
            model_version = _register_file(local, artifact=artifact, sha256=sha256, user=user, reason=f"synced from {artifact.uri}")
        except (SchemaError, LifecycleError) as exc:
            yield SyncResult(artifact, "refused", f"{label}: {exc}")
            continue
        yield SyncResult(artifact, "registered", f"{label}: registered as candidate", model_version)


def _register_file(local: Path, *, artifact: Artifact, sha256: str, user: User, reason: str) -> ModelVersion:
    input_schema, output_schema = read_schema(local)
    threshold = artifact.metadata.get("threshold", 0.5)
    if not isinstance(threshold, int | float):
        raise LifecycleError(f"threshold {threshold!r} in metadata.json is not a number")
    reference = artifact.metadata.get("reference") or {}
    if reference and not (isinstance(reference, dict) and reference.get("file") in ("reference.csv", "reference.parquet")):
        raise LifecycleError(f"reference {reference!r} in metadata.json is not {{'file': 'reference.csv' or '.parquet', 'sha256': ...}}")
    return model_version_register(
        product=artifact.product,
        name=artifact.name,
        version=artifact.version,
        artifact_uri=artifact.uri,
        sha256=sha256,
        size_bytes=artifact.size,
        input_schema=input_schema,
        output_schema=output_schema,
        threshold=float(threshold),
        description=str(artifact.metadata.get("description", "")),
        reference_uri=sibling_uri(artifact.uri, reference["file"]) if reference else "",
        reference_sha256=str(reference.get("sha256", "")) if reference else "",
        user=user,
        reason=reason,
    )


def model_push(
    *,
    source: Path,
    store: ModelStore,
    product: str,
    name: str,
    version: str,
    threshold: float = 0.5,
    description: str = "",
    reference: Path | None = None,
    user: User = None,
    reason: str = "pushed",
) -> ModelVersion:
    """Upload a local ONNX file (and its drift reference file, if given) to the store and register it as a candidate.

    The file is checked (readable graph, mappable inputs and score) before anything is
    uploaded, and registered from the bytes read back from the store, so what is registered
    is what every worker will download. A reference must hold a column for every feature the
    model takes (`mlops.artifacts.reference`); it is stored beside the model with its sha256.
    """
    _validate_names(product=product, name=name, version=version)
    if not 0.0 <= threshold <= 1.0:
        raise LifecycleError(f"threshold {threshold} must be between 0 and 1")
    input_schema, _ = read_schema(source)
    if ModelVersion.objects.filter(product=product, name=name, version=version).exists():
        raise LifecycleError(f"{product}/{name}@{version} is already registered")
    sha256 = sha256_of(source)
    metadata = {"sha256": sha256, "threshold": threshold, "description": description, "pushed_at": timezone.now().isoformat()}
    stored_reference = None
    if reference is not None:
        name_in_store = reference_name(reference)  # ReferenceInvalid: the caller names the file in its answer
        reference_matrix(reference, [feature["name"] for feature in input_schema.get("features", [])])
        metadata["reference"] = {"file": name_in_store, "sha256": sha256_of(reference)}
        stored_reference = (reference, name_in_store)
    uri = store.put(source, product, name, version, metadata, reference=stored_reference)
    local = download_verified(uri, sha256)
    artifact = Artifact(product, name, version, uri=uri, size=source.stat().st_size, metadata=metadata)
    return _register_file(local, artifact=artifact, sha256=sha256, user=user, reason=f"{reason} ({uri})")


def _on_disk(upload: File, folder: str, suffix: str, *, keep_suffix: bool = False) -> Path:
    """The upload as a path: Django keeps a large one in a temporary file, a small one in memory (written out here,
    as it is when the temporary file's suffix must be ``suffix`` and is not)."""
    on_disk = getattr(upload, "temporary_file_path", None)
    if on_disk is not None and (not keep_suffix or Path(on_disk()).suffix.lower() == suffix):
        return Path(on_disk())
    target = Path(folder) / f"upload{suffix}"
    with open(target, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return target


def model_upload(*, upload: File, store: ModelStore, user: User, reason: str, reference: File | None = None, **fields) -> ModelVersion:
    """Register an ONNX file sent over HTTP (a training pipeline's, say) as `model_push` registers a
    local one; ``fields`` are `model_push`'s product, name, version, threshold and description, and
    ``reference`` an optional drift reference file (.csv or .parquet, told apart by its name).

    The schema reader, the checksum and the store all read a path, so uploads held in memory are
    written out to a temporary folder first.
    """
    with tempfile.TemporaryDirectory() as folder:
        source = _on_disk(upload, folder, ".onnx")
        reference_path = None
        if reference is not None:
            suffix = Path(reference.name or "").suffix.lower()
            if suffix not in (".csv", ".parquet"):
                raise ReferenceInvalid(f"reference {reference.name!r} must be a .csv or .parquet file")
            reference_path = _on_disk(reference, folder, suffix, keep_suffix=True)
        return model_push(source=source, store=store, user=user, reason=reason, reference=reference_path, **fields)
