"""A tiny server-side bar chart (inline SVG, no JavaScript, no CDN) for the comparison page."""

from dataclasses import dataclass


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
