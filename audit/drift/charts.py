"""PSI over time as an inline-SVG line (no JavaScript, no CDN), beside `audit.charts.histogram_chart`."""

from dataclasses import dataclass


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    points: str  # the polyline's "x,y x,y ..."
    dots: list[tuple[float, float, str]]  # (x, y, title) of each window
    rules: list[tuple[float, str]]  # (y, label) of each threshold


def psi_line_chart(history: list[tuple], thresholds: dict[str, float], *, width: int = 640, height: int = 160) -> LineChart:
    """One point per stored window (``(window_end, psi)``, oldest first; a None PSI is skipped), thresholds as rules."""
    plotted = [(end, value) for end, value in history if value is not None]
    plot_height = height - 10
    top = max([value for _, value in plotted] + [value * 1.2 for value in thresholds.values()] + [0.01])
    step = width / max(len(plotted) - 1, 1)

    def y(value: float) -> float:
        return round(plot_height - plot_height * value / top + 5, 1)

    dots = [(round(index * step, 1), y(value), f"{end:%Y-%m-%d %H:%M:%S}: PSI {value:.3f}") for index, (end, value) in enumerate(plotted)]
    return LineChart(
        width=width,
        height=height,
        points=" ".join(f"{x},{dot_y}" for x, dot_y, _ in dots),
        dots=dots,
        rules=[(y(value), f"{name} {value:g}") for name, value in thresholds.items()],
    )
