"""Server-side charts of the comparison page (inline SVG, no JavaScript, no CDN): the score
histogram, and intervals (a rate or a difference with its 95% interval) drawn as whiskers."""

import math
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[float, str]]  # (x, text) under each bin


def histogram_chart(series: dict[str, list[int]], edges: list[float], *, width: int = 640, height: int = 200) -> Chart:
    """Side-by-side bars per bin; each series is drawn as its share of its own total, so a small
    canary and a large production compare by shape rather than by volume."""
    bins = len(edges) - 1
    plot_height = height - 20
    slot = width / bins
    bar_width = slot * 0.8 / max(len(series), 1)
    shares = {name: [c / total if (total := sum(counts)) else 0.0 for c in counts] for name, counts in series.items()}
    top = max((share for values in shares.values() for share in values), default=0.0) or 1.0
    bars = []
    for index in range(bins):
        for offset, (name, values) in enumerate(shares.items()):
            bar_height = plot_height * values[index] / top
            bars.append(
                Bar(
                    x=round(index * slot + slot * 0.1 + offset * bar_width, 1),
                    y=round(plot_height - bar_height, 1),
                    width=round(bar_width, 1),
                    height=round(bar_height, 1),
                    series=name,
                    title=f"{name} {edges[index]:.1f}-{edges[index + 1]:.1f}: {series[name][index]} ({values[index]:.0%})",
                )
            )
    labels = [(round(index * slot + slot / 2, 1), f"{edges[index]:.1f}") for index in range(bins)]
    return Chart(width=width, height=height, bars=bars, labels=labels)


# --- Intervals: a value and its 95% interval as a whisker on an axis ---------------------------
# One SVG per table cell, drawn on the server (format_html), so the page needs no script. Each
# interval is a <g class="interval interval-<series>"> carrying its numbers as data attributes
# (what the tests compare with the API) and a <title> for the tooltip.

INTERVAL_ROW = 12  # px per interval drawn


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value`` (an axis end that reads well)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value * (1 - 1e-9))


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _plain(value: float) -> str:
    return f"{value:.3g}"


def _percent_tick(value: float) -> str:
    return f"{value * 100:g}%"


def _points_tick(value: float) -> str:
    return "0" if value == 0 else f"{value * 100:+g} pts"


def _plain_tick(value: float) -> str:
    return f"{value:g}"


def _whisker(series: str, value: float, low: float | None, high: float | None, *, x, y: float, start: float, end: float, shown) -> str:
    # An open bound runs to the axis end without a cap (the page hides `.open`): the data set no limit there.
    left, right = x(start if low is None else low), x(end if high is None else high)
    title = f"{series}: {shown(value)}, 95% interval {'open' if low is None else shown(low)} to {'open' if high is None else shown(high)}"
    return format_html(
        '<g class="interval interval-{}" data-value="{}" data-low="{}" data-high="{}"><title>{}</title>'
        '<line class="whisker" x1="{}" x2="{}" y1="{}" y2="{}"></line>'
        '<line class="{}" x1="{}" x2="{}" y1="{}" y2="{}"></line>'
        '<line class="{}" x1="{}" x2="{}" y1="{}" y2="{}"></line>'
        '<circle cx="{}" cy="{}" r="3.5"></circle></g>',
        series, _fmt(value), _fmt(low), _fmt(high), title,
        left, right, y, y,
        "cap open" if low is None else "cap", left, left, y - 3, y + 3,
        "cap open" if high is None else "cap", right, right, y - 3, y + 3,
        x(value), y,
    )  # fmt: skip


def interval_svg(
    intervals: list[tuple[str, float | None, float | None, float | None]],
    *,
    domain: tuple[float, float],
    reference: float | None = None,
    width: int = 180,
    percent: bool = True,
    label: str = "",
    tick=None,
) -> str:
    """``(series, value, low, high)`` whiskers on one axis over ``domain``; a dashed line at ``reference``.

    A missing bound is drawn to the axis end (the interval is open on that side); a missing value draws nothing.
    """
    start, end = domain
    margin, span = 8, (domain[1] - domain[0]) or 1.0

    def x(value: float) -> float:
        return round(margin + (min(max(value, start), end) - start) / span * (width - 2 * margin), 1)

    shown = _percent if percent else _plain
    tick = tick or (_percent_tick if percent else _plain_tick)
    plot = INTERVAL_ROW * len(intervals)
    height = plot + 12
    parts = []
    if reference is not None and start <= reference <= end:
        parts.append(format_html('<line class="reference" x1="{0}" x2="{0}" y1="0" y2="{1}"></line>', x(reference), plot))
    for index, (series, value, low, high) in enumerate(intervals):
        if value is not None:
            y = INTERVAL_ROW * index + INTERVAL_ROW / 2
            parts.append(_whisker(series, value, low, high, x=x, y=y, start=start, end=end, shown=shown))
    ticks = [(start, "start"), (end, "end")]
    if reference is not None and start < reference < end:
        ticks.append((reference, "middle"))
    parts.extend(
        format_html('<text class="axis-label" x="{}" y="{}" text-anchor="{}">{}</text>', x(value), height - 1, anchor, tick(value))
        for value, anchor in ticks
    )
    return format_html(
        '<svg class="interval-chart" width="{0}" height="{1}" viewBox="0 0 {0} {1}" role="img" aria-label="{2}">{3}</svg>',
        width,
        height,
        label,
        format_html_join("", "{}", ((part,) for part in parts)),
    )


def rates_svg(production: dict | None, canary: dict | None, *, label: str) -> str:
    """Both sides' rates (`proportions.rate`) with their intervals, on an axis from 0 that holds both."""
    present = [r for r in (production, canary) if r and r["value"] is not None]
    top = nice_ceiling(max((r["high"] for r in present), default=1.0))
    rows = [(name, r and r["value"], r and r["low"], r and r["high"]) for name, r in (("production", production), ("canary", canary))]
    return interval_svg(rows, domain=(0.0, top), label=label)


def symmetric_reach(figures: list[dict]) -> float:
    """The end of an axis symmetric around 0 that holds every figure's interval."""
    reach = max((abs(v) for f in figures for v in (f["low"], f["high"]) if v is not None), default=0.0)
    return nice_ceiling(reach) if reach else 0.1


def difference_svg(figure: dict, *, label: str, reach: float | None = None, width: int = 180) -> str:
    """A difference (canary − production) with its interval, on an axis symmetric around 0, marked."""
    reach = reach or symmetric_reach([figure])
    rows = [("difference", figure["difference"], figure["low"], figure["high"])]
    return interval_svg(rows, domain=(-reach, reach), reference=0.0, label=label, width=width, tick=_points_tick)


def ratio_svg(ratio: dict, *, label: str) -> str:
    """The canary's p95 over production's with its interval, on an axis from 0 with a line at 1 (no difference)."""
    reach = max((v for v in (ratio["ratio"], ratio["high"]) if v is not None), default=1.0)
    top = nice_ceiling(max(reach, 2.0))
    return interval_svg(
        [("ratio", ratio["ratio"], ratio["low"], ratio["high"])], domain=(0.0, top), reference=1.0, percent=False, label=label
    )


RATE_ROWS = (
    ("false_positive_rate", "False-positive rate", ("outcomes", "false_positive_rate")),
    ("true_positive_rate", "True-positive rate", ("outcomes", "true_positive_rate")),
    ("block_rate", "Block", ("decision_mix", "block")),
    ("review_rate", "Review", ("decision_mix", "review")),
    ("allow_rate", "Allow", ("decision_mix", "allow")),
    ("cache_hit_rate", "Cache hits", ("cache_hit_rate",)),
    ("shadow_agreement_rate", "Shadow agreement", ("shadow", "agreement_rate")),
    ("shadow_significant_rate", "Significant shadow diffs", ("shadow", "significant_rate")),
)


def rate_rows(compared: dict) -> list[dict]:
    """The comparison page's rows of rates: both sides with intervals drawn, the difference drawn, the verdict."""
    rows = []
    for name, label, _ in RATE_ROWS:
        figure = compared["evidence"][name]
        rows.append(
            {
                "name": name,
                "label": label,
                "production": figure["b"],
                "canary": figure["a"],
                "figure": figure,
                "rates_svg": rates_svg(figure["b"], figure["a"], label=f"{label}: both sides with 95% intervals"),
                "difference_svg": difference_svg(figure, label=f"{label}: canary minus production with 95% interval"),
                "verdict": compared["verdicts"][name],
            }
        )
    return rows


def segment_rows(segmentation: dict, names=("false_positive_rate", "block_rate"), *, subject: str = "canary") -> list[dict]:
    """Per bin, the differences of ``names`` drawn; one axis per name shared by every bin, so bins compare by eye.

    ``subject`` names the side set against production: the canary, or a backtest's candidate."""
    bins = segmentation["bins"]
    reach = {name: symmetric_reach([segment["evidence"][name] for segment in bins]) for name in names}

    def cell(segment: dict, name: str) -> dict:
        figure = segment["evidence"][name]
        label = f"{segment['label']}: {name.replace('_', ' ')}, {subject} minus production"
        return {
            "name": name,
            "figure": figure,
            "svg": difference_svg(figure, label=label, reach=reach[name]),
            "verdict": segment["verdicts"][name],
        }

    return [{"segment": segment, "cells": [cell(segment, name) for name in names]} for segment in bins]


SHORT_LABELS = {"false_positive_rate": "FP rate", "true_positive_rate": "TP rate", "block_rate": "Block"}


def segment_tables(segmentations: list[dict], names: tuple[str, ...], *, subject: str, lead: tuple) -> list[dict]:
    """Each segmentation as the shared segments table draws it (``admin/audit/segments.html``): ``lead`` is
    ``(headers, cells)`` of the columns before the compared rates, ``cells(bin)`` a ``(text, detail)`` per header."""
    lead_headers, lead_cells = lead
    headers = [(header, True) for header in lead_headers]
    for name in names:
        headers += [(f"{SHORT_LABELS[name]} (P / C)", True), (f"{subject.capitalize()} − production", False), ("Verdict", False)]
    return [
        {
            "segmentation": s,
            "headers": headers,
            "rows": [{**row, "lead": lead_cells(row["segment"])} for row in segment_rows(s, names, subject=subject)]
            if s["available"]
            else [],
        }
        for s in segmentations
    ]


def _requests(segment: dict) -> list[tuple[str, str]]:
    return [(f"{segment['production']['requests']} / {segment['canary']['requests']}", "")]


def comparison_figures(comparison: dict) -> dict:
    """Everything the comparison page draws, from `audit.selectors.canary_comparison`'s answer."""
    production, canary = comparison["production"], comparison["canary"]
    latency = comparison["evidence"]["latency"]
    return {
        "sides": [("Production", production), ("Canary", canary)],
        "rate_rows": rate_rows(comparison),
        "error_svg": rates_svg(None, canary["error_rate"], label="Canary error rate (failovers) with 95% interval"),
        "ratio_svg": ratio_svg(latency["p95_ratio"], label="Canary p95 over production p95 with 95% interval"),
        "chart": histogram_chart(
            {"production": production["score"]["histogram"], "canary": canary["score"]["histogram"]}, comparison["histogram_edges"]
        ),
        "segments": segment_tables(
            comparison["segments"], ("false_positive_rate", "block_rate"), subject="canary", lead=(["Requests (P / C)"], _requests)
        ),
    }
