"""Choices shared across the registry, the serving path and the audit log."""

from django.db import models


class ModelStatus(models.TextChoices):
    CANDIDATE = "candidate", "Candidate"
    VALIDATED = "validated", "Validated"
    CANARY = "canary", "Canary"
    PRODUCTION = "production", "Production"
    ARCHIVED = "archived", "Archived"


class ModelRole(models.TextChoices):
    """The role a model version played for one prediction."""

    PRODUCTION = "production", "Production"
    CANARY = "canary", "Canary"
    SHADOW = "shadow", "Shadow"


class Decision(models.TextChoices):
    ALLOW = "allow", "Allow"
    REVIEW = "review", "Review"
    BLOCK = "block", "Block"


# Canary and shadow shares are stored in basis points (1/100 of a percent) so that routing is
# an integer comparison and 0.25 % steps are representable.
BASIS_POINTS_MAX = 10_000


class ApiCapability(models.TextChoices):
    """What an API endpoint requires; roles (Django groups) grant these."""

    PREDICT = "predict", "Call inference"
    READ_PREDICTIONS = "read_predictions", "Read predictions"
    POST_OUTCOMES = "post_outcomes", "Post outcomes"
    READ_MODELS = "read_models", "Read models and rollout state"
    MANAGE_MODELS = "manage_models", "Manage models"
    MANAGE_ROLLOUT = "manage_rollout", "Manage canary, shadow and rollbacks"
    READ_AUDIT = "read_audit", "Read the audit log"


class Role(models.TextChoices):
    """Who an API caller is; the capabilities each role grants are in ``mlops.security.roles``."""

    INFERENCE_CLIENT = "inference_client", "Inference client"
    ML_OPS = "ml_ops", "ML ops"
    VIEWER = "viewer", "Viewer"
    AUDITOR = "auditor", "Auditor"
    INTERNAL_SERVICE = "internal_service", "Internal service"


# What leads the reason of every change the rollout guard makes: it has no user, and the history
# names it from this (`mlops.selectors.rollout_history`).
GUARD_PREFIX = "[rollout guard] "
GUARD_NAME = "rollout guard"
