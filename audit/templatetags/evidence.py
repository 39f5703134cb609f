"""Filters that write the comparison's figures the way the page reads them (percent, intervals, p-values)."""

from django import template

register = template.Library()

DASH = "–"


@register.filter
def percent(value, digits: int = 1) -> str:
    """0.0333 → ``3.3%``; a dash for None."""
    return DASH if value is None else f"{value * 100:.{digits}f}%"


@register.filter
def signed_points(value) -> str:
    """A difference of rates in percentage points: 0.0125 → ``+1.3 pts``."""
    return DASH if value is None else f"{value * 100:+.1f} pts"


@register.filter
def rate(value) -> str:
    """A `proportions.rate` as ``3.3% (1/30)``."""
    if value is None:
        return DASH
    return f"{percent(value['value'])} ({value['count']}/{value['total']})" if value["total"] else f"{DASH} (0/0)"


def _interval(value, write) -> str:
    if value is None or value.get("low") is None or value.get("high") is None:
        return ""
    return f"{write(value['low'])} to {write(value['high'])}"


@register.filter
def interval(value) -> str:
    """A rate's 95% interval, ``0.6% to 16.7%``; empty when it has none."""
    return _interval(value, percent)


@register.filter
def points_interval(value) -> str:
    """A difference's 95% interval in percentage points, ``-2.1 pts to +4.0 pts``."""
    return _interval(value, signed_points)


@register.filter
def number(value, digits: int = 2) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


@register.filter
def pvalue(value) -> str:
    if value is None:
        return DASH
    return "p<0.001" if value < 0.001 else f"p={value:.3f}"
