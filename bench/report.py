"""The benchmark's output: one Markdown table per scenario, the ratios to the peers, the goals.

Each cell is the median round (by req/s) of that (scenario, server, concurrency); errors are
summed over every round, so none is hidden by the median.
"""

import statistics

LABELS = {
    "fastapi": "bare FastAPI + uvicorn",
    "kserve": "KServe 0.21 (V1)",
    "drf": "DRF lane (gunicorn)",
    "lane": "hot lane (granian RSGI)",
    "drf:healthz": "DRF lane /healthz (floor)",
    "lane:healthz": "hot lane /healthz (floor)",
}
SCENARIO_TITLES = {
    "headline": "headline: API key (rate-limited role, limits too high to bite), canary 10%, shadow 10%, durable log, every vector new",
    "cached": "cached: the headline configuration, one feature vector repeated",
    "shadow100": "shadow 100%: the headline with the gbdt shadowing every event",
}
GOALS = {"vs_kserve": 1.0, "vs_fastapi": 0.6, "p50_c1_ms": 0.5, "p99_c8_ms": 10.0}


def progress_line(cell: dict) -> str:
    flags = " (bodies cycled)" if cell["cycled"] else ""
    errors = f"errors {cell['errors']} {cell['statuses']} {cell['socket_errors'] or ''}" if cell["errors"] else "errors 0"
    return (
        f"{cell['scenario']:9s} {cell['row']:13s} c={cell['concurrency']:<3d} r{cell['round']}  {cell['rps']:7.0f} req/s  "
        f"p50 {cell['p50']:6.2f} ms  p99 {cell['p99']:6.2f} ms  CPU {cell['server_cpu_us']:5.0f} µs/req  {errors}{flags}"
    )


def medians(results: dict) -> dict:
    """(scenario, row, concurrency) -> the median round, with ``errors`` of all rounds."""
    groups: dict[tuple, list[dict]] = {}
    for cell in results["cells"]:
        groups.setdefault((cell["scenario"], cell["row"], cell["concurrency"]), []).append(cell)
    out = {}
    for key, cells in groups.items():
        ranked = sorted(cells, key=lambda cell: cell["rps"])
        out[key] = {
            **ranked[len(ranked) // 2],
            "errors_all_rounds": sum(c["errors"] for c in cells),
            "rounds": len(cells),
            "cycled_any": any(c["cycled"] for c in cells),
        }
    return out


def _rows_of(results: dict, scenario: str) -> list[str]:
    seen = []
    for cell in results["cells"]:
        if cell["scenario"] == scenario and cell["row"] not in seen:
            seen.append(cell["row"])
    return sorted(seen, key=list(LABELS).index)


def render(results: dict) -> str:
    table = medians(results)
    levels = results["settings"]["concurrency"]
    scenarios = [s for s in ("headline", "cached", "shadow100") if any(c["scenario"] == s for c in results["cells"])]
    loads = [results["load_average"][0], *(cell["load_average"] for cell in results["cells"])]
    environment = results["environment"]
    settings = results["settings"]
    bare = results["bare"]
    out = [
        f"{results['started']}; servers on CPU {environment['cpus']['servers']}, wrk on CPU {environment['cpus']['load']}; "
        f"{environment['database']}, {environment['cache']}; {settings['rounds']} rounds of {settings['duration']} s "
        f"(+{settings['warmup']} s warm-up) per cell, median round shown",
        f"load average (1 min) during the run: {min(loads):.2f}–{max(loads):.2f}, mean {statistics.fmean(loads):.2f}",
        f"bare onnxruntime session.run (logreg, 1 row): p50 {bare['p50'] * 1000:.1f} µs, p99 {bare['p99'] * 1000:.1f} µs",
    ]
    for scenario in scenarios:
        out += ["", f"### {SCENARIO_TITLES[scenario]}", ""]
        header = "| server |" + "".join(f" c={c} req/s | p50 ms | p99 ms | CPU µs/req |" for c in levels) + " errors |"
        out += [header, "|---|" + "---|" * (4 * len(levels) + 1)]
        for row in _rows_of(results, scenario):
            line = f"| {LABELS[row]} |"
            errors = 0
            for c in levels:
                cell = table.get((scenario, row, c))
                if cell is None:
                    line += " – | – | – | – |"
                    continue
                errors += cell["errors_all_rounds"]
                mark = "*" if cell["cycled_any"] else ""
                line += f" {cell['rps']:,.0f}{mark} | {cell['p50']:.2f} | {cell['p99']:.2f} | {cell['server_cpu_us']:,.0f} |"
            out.append(line + f" {errors} |")
        out += _ratios(table, scenario, levels)
    out += _goals(table, levels)
    out += _checks(results)
    if any(cell["cycled"] for cell in results["cells"]):
        out.append("* some round ran out of fresh bodies and cycled (repeated vectors can hit the cache)")
    return "\n".join(out)


def _ratio(table, scenario, lane, peer, c):
    mine, theirs = table.get((scenario, lane, c)), table.get((scenario, peer, c))
    if mine is None or theirs is None or not theirs["rps"]:
        return None
    return mine["rps"] / theirs["rps"]


def _ratios(table, scenario, levels) -> list[str]:
    lines = []
    for lane in ("drf", "lane"):
        for peer in ("kserve", "fastapi"):
            values = [_ratio(table, scenario, lane, peer, c) for c in levels]
            if any(v is not None for v in values):
                shown = ", ".join(f"c={c} {v:.2f}x" for c, v in zip(levels, values, strict=True) if v is not None)
                lines.append(f"- {LABELS[lane]} req/s ÷ {LABELS[peer]}: {shown}")
    return ["", *lines] if lines else []


def _goals(table, levels) -> list[str]:
    """The hot lane's goals on the headline; the DRF lane is checked against them for reference."""
    lines = ["", "### Goals (headline): ≥ 1.0× KServe and ≥ 0.6× FastAPI req/s at every c; p50 ≤ 0.5 ms at c=1; p99 ≤ 10 ms at c=8", ""]
    for lane in ("lane", "drf"):
        if not any(key[:2] == ("headline", lane) for key in table):
            if lane == "lane":
                lines.append("- hot lane: not measured in this run (pending)")
            continue
        checks = []
        for peer, goal in (("kserve", GOALS["vs_kserve"]), ("fastapi", GOALS["vs_fastapi"])):
            for c in levels:
                value = _ratio(table, "headline", lane, peer, c)
                if value is not None:
                    checks.append(
                        f"{'met' if value >= goal else 'NOT met'}: ÷ {peer} at c={c} = {value:.2f}x "
                        f"(goal {goal}x; {value / goal:.2f} of it)"
                    )
        p50 = table.get(("headline", lane, 1))
        if p50:
            ok = p50["p50"] <= GOALS["p50_c1_ms"]
            checks.append(
                f"{'met' if ok else 'NOT met'}: p50 at c=1 = {p50['p50']:.2f} ms (goal ≤ 0.5 ms; {p50['p50'] / 0.5:.1f}x the goal)"
            )
        p99 = table.get(("headline", lane, 8))
        if p99:
            ok = p99["p99"] <= GOALS["p99_c8_ms"]
            checks.append(f"{'met' if ok else 'NOT met'}: p99 at c=8 = {p99['p99']:.2f} ms (goal ≤ 10 ms; {p99['p99'] / 10:.1f}x the goal)")
        lines.append(f"- {LABELS[lane]}{' (for reference)' if lane == 'drf' else ''}:")
        lines += [f"  - {check}" for check in checks]
    return lines


def _checks(results) -> list[str]:
    checks = results.get("checks", {})
    lines = ["", "### Checks", ""]
    total = sum(cell["errors"] for cell in results["cells"])
    lines.append(f"- non-200 responses and socket errors, all rounds: {total}")
    if "kserve" in checks:
        kserve = checks["kserve"]
        listening = "something listens on its gRPC port" if kserve["grpc_listening"] else "nothing listens on its gRPC port (gRPC off)"
        lines.append(f"- KServe: {listening}; {kserve['log_lines_during_load']} log lines written under load (see kserve.log with --keep)")
    for lane in ("drf", "lane"):
        metrics = checks.get(f"{lane}_metrics")
        if metrics:
            lines.append(
                f"- {LABELS[lane]} /metrics: mlops_inference_requests_total = {metrics['counted']:.0f} for {metrics['completed']} "
                f"POST /v1/infer completed by wrk, plus at most {metrics.get('in_flight_at_most', '?')} in flight when its runs stopped"
            )
    lines.append(f"- log lines written by each server during the load: {checks.get('log_lines_during_load', {})}")
    return lines
