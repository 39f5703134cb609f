"""Deterministic traffic split (DESIGN.md §3).

An event's bucket is a pure function of the product and the event id, the same in every
process, host and restart (never Python's salted ``hash()``). An event goes to the canary
when its bucket is below the canary's share in basis points, so growing the share only adds
events: one in the canary at 10 % is still in it at 25 % (monotone).
"""

from hashlib import sha256

from mlops.choices import BASIS_POINTS_MAX


def bucket(product: str, event_id: str) -> int:
    """The event's bucket in ``[0, 10_000)``."""
    digest = sha256(f"{product}:{event_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BASIS_POINTS_MAX


def in_canary(product: str, event_id: str, canary_basis_points: int) -> bool:
    return canary_basis_points > 0 and bucket(product, event_id) < canary_basis_points


def in_shadow_sample(product: str, event_id: str, sample_basis_points: int) -> bool:
    """Whether this event is in the shadow's sample.

    A salted product name keeps the shadow sample independent of the canary split (otherwise a
    10 % sample would be exactly the canary's first 10 %).
    """
    if sample_basis_points >= BASIS_POINTS_MAX:
        return True
    return sample_basis_points > 0 and bucket(f"{product}#shadow", event_id) < sample_basis_points
