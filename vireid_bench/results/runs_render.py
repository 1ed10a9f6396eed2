"""Rendering a :class:`~vireid_bench.results.runs.RunsReport`: table, Markdown, CSV, JSON.

Table and Markdown print two decimals (p-values four, or scientific below 1e-4); CSV and
JSON carry every number unrounded (NaN as an empty cell / null). The CSV is one table:
``row`` = ``summary`` (one model, setting, metric over its runs) or ``comparison`` (two
models), the fields of the other kind left empty.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os

from vireid_bench.results.runs import RunComparison, RunsReport, RunSummary, metric_label

SUMMARY_FIELDS = (
    "model",
    "setting",
    "metric",
    "runs",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "ci_method",
    "min",
    "max",
)
COMPARISON_FIELDS = (
    "model_a",
    "model_b",
    "setting",
    "metric",
    "runs_a",
    "runs_b",
    "mean_a",
    "mean_b",
    "difference",
    "std_a",
    "std_b",
    "welch_t",
    "welch_df",
    "welch_p",
    "permutation_p",
    "permutation_exact",
    "permutations",
    "run_se",
    "query_p",
    "query_exact",
    "query_ci_low",
    "query_ci_high",
    "query_se",
    "dominant_noise",
)


def _clean(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def summary_dict(s: RunSummary) -> dict[str, object]:
    """A summary as a flat dict (:data:`SUMMARY_FIELDS`)."""
    return {
        "model": s.model,
        "setting": s.setting,
        "metric": metric_label(s.metric),
        "runs": s.n,
        "mean": s.mean,
        "std": s.std,
        "ci_low": s.ci_low,
        "ci_high": s.ci_high,
        "ci_method": s.ci_method,
        "min": s.minimum,
        "max": s.maximum,
    }


def comparison_dict(c: RunComparison, model_a: str, model_b: str) -> dict[str, object]:
    """A comparison as a flat dict (:data:`COMPARISON_FIELDS`)."""
    return {
        "model_a": model_a,
        "model_b": model_b,
        "setting": c.setting,
        "metric": metric_label(c.metric),
        "runs_a": c.n_a,
        "runs_b": c.n_b,
        "mean_a": c.a,
        "mean_b": c.b,
        "difference": c.difference,
        "std_a": c.std_a,
        "std_b": c.std_b,
        "welch_t": c.welch.t,
        "welch_df": c.welch.df,
        "welch_p": c.welch.p_value,
        "permutation_p": c.permutation.p_value,
        "permutation_exact": c.permutation.exact,
        "permutations": c.permutation.permutations,
        "run_se": c.run_se,
        "query_p": c.query_p,
        "query_exact": c.query_exact,
        "query_ci_low": c.query_ci_low,
        "query_ci_high": c.query_ci_high,
        "query_se": c.query_se,
        "dominant_noise": c.dominant,
    }


def _models(report: RunsReport) -> tuple[str, str]:
    if len(report.groups) != 2:
        return "", ""
    return report.groups[0].model, report.groups[1].model


def _json(report: RunsReport, version: str, title: str) -> str:
    model_a, model_b = _models(report)
    payload = {
        "vireid_bench_version": version,
        "title": title,
        "confidence": report.confidence,
        "groups": [
            {
                "model": g.model,
                "dataset": g.dataset,
                "runs": [
                    {"dump": os.path.basename(src), "seed": seed, "run": run, "selection": sel}
                    for src, seed, run, sel in zip(
                        g.sources, g.seeds, g.runs, g.selections, strict=True
                    )
                ],
            }
            for g in report.groups
        ],
        "summary": [
            {
                **{k: _clean(v) for k, v in summary_dict(s).items()},
                "values": list(map(_clean, s.values)),
            }
            for s in report.summaries
        ],
        "comparisons": [
            {k: _clean(v) for k, v in comparison_dict(c, model_a, model_b).items()}
            for c in report.comparisons
        ],
        "verdict": report.verdict,
    }
    return json.dumps(payload, indent=2) + "\n"


def _csv(report: RunsReport) -> str:
    model_a, model_b = _models(report)
    fields = ["row", *dict.fromkeys((*SUMMARY_FIELDS, *COMPARISON_FIELDS))]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    for s in report.summaries:
        row = {k: ("" if _clean(v) is None else v) for k, v in summary_dict(s).items()}
        writer.writerow({"row": "summary", **row})
    for c in report.comparisons:
        row = comparison_dict(c, model_a, model_b)
        writer.writerow(
            {"row": "comparison", **{k: ("" if _clean(v) is None else v) for k, v in row.items()}}
        )
    return buffer.getvalue()


def _number(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def p_text(p: float, exact: bool = False) -> str:
    """A p-value as printed: 4 decimals, scientific below 1e-4, ``(exact)`` when exact."""
    if math.isnan(p):
        return "n/a"
    text = f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"
    return text + (" (exact)" if exact else "")


def _text(report: RunsReport, fmt: str, title: str) -> str:
    from tabulate import tabulate

    level = f"{100 * report.confidence:g}%"
    tablefmt = "github" if fmt == "markdown" else "simple"
    summary = tabulate(
        [
            [
                s.model,
                s.setting,
                metric_label(s.metric),
                str(s.n),
                _number(s.mean),
                _number(s.std),
                f"[{_number(s.ci_low)}, {_number(s.ci_high)}] ({s.ci_method})",
                _number(s.minimum),
                _number(s.maximum),
            ]
            for s in report.summaries
        ],
        headers=["model", "setting", "metric", "runs", "mean", "std", f"{level} CI", "min", "max"],
        tablefmt=tablefmt,
        disable_numparse=True,
    )
    heading = f"**{title}**" if fmt == "markdown" else title
    parts = [heading, "", summary]
    if report.comparisons:
        model_a, model_b = _models(report)
        comparison = tabulate(
            [
                [
                    c.setting,
                    metric_label(c.metric),
                    _number(c.a),
                    _number(c.b),
                    _number(c.difference, signed=True),
                    p_text(c.welch.p_value),
                    p_text(c.permutation.p_value, c.permutation.exact),
                    p_text(c.query_p, c.query_exact),
                    _number(c.run_se),
                    _number(c.query_se),
                    c.dominant or "n/a",
                ]
                for c in report.comparisons
            ],
            headers=[
                "setting",
                "metric",
                "A",
                "B",
                "A−B",
                "Welch p",
                "perm. p (runs)",
                "per-query p",
                "SE runs",
                "SE queries",
                "dominant noise",
            ],
            tablefmt=tablefmt,
            disable_numparse=True,
        )
        parts += ["", f"A = {model_a}, B = {model_b}", "", comparison]
    if report.verdict:
        parts += ["", report.verdict]
    return "\n".join(parts) + "\n"


def render_runs(report: RunsReport, fmt: str, version: str, title: str = "") -> str:
    """Render ``report`` as ``table``, ``markdown``, ``csv`` or ``json``."""
    if fmt == "json":
        return _json(report, version, title)
    if fmt == "csv":
        return _csv(report)
    return _text(report, fmt, title)
