"""How far a shadow's answer is from the answer the client got."""

from django.conf import settings

from audit.models import DiffClass


def classify_diff(primary_score: float, shadow_score: float) -> tuple[float, str]:
    """``(|primary - shadow|, diff class)`` with the ``SHADOW_DIFF_MODERATE``/``SIGNIFICANT`` thresholds."""
    diff = abs(primary_score - shadow_score)
    if diff >= settings.SHADOW_DIFF_SIGNIFICANT:
        return diff, DiffClass.SIGNIFICANT
    if diff >= settings.SHADOW_DIFF_MODERATE:
        return diff, DiffClass.MODERATE
    return diff, DiffClass.MINIMAL
