"""The decision rule and the role and decision names the serving path labels everything with.

Plain strings (not the `mlops.choices` enum members) on the hot path: cheaper to compare,
label and render.
"""

from mlops.choices import Decision, ModelRole

REVIEW_FACTOR = 0.7  # review at or above 0.7 x threshold
PRODUCTION, CANARY, SHADOW = ModelRole.PRODUCTION.value, ModelRole.CANARY.value, ModelRole.SHADOW.value
BLOCK, REVIEW, ALLOW = Decision.BLOCK.value, Decision.REVIEW.value, Decision.ALLOW.value


def decide(score: float, threshold: float) -> str:
    """``block`` at or above the threshold, ``review`` at or above 0.7 x threshold, else ``allow``."""
    if score >= threshold:
        return BLOCK
    if score >= REVIEW_FACTOR * threshold:
        return REVIEW
    return ALLOW
