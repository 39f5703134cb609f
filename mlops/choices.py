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
