"""``vireid-bench compare``: paired per-query significance tests between two dumps."""

from __future__ import annotations

import json
import math
import os

import click

from vireid_bench.cli.common import (
    ToolkitCommand,
    check_output,
    note_cold_kernels,
    one_line_warnings,
    toolkit_version,
    write_output,
)
from vireid_bench.cli.options import (
    allow_external_option,
    parents_option,
    query_modality_option,
    split_list,
    table_output_options,
    trials_option,
)


def _compare_rows_as_dicts(rows, confidence: float) -> list[dict[str, object]]:
    level = f"{100 * confidence:g}%"
    return [
        {
            "setting": r.setting,
            "metric": r.metric,
            "A": r.a,
            "B": r.b,
            "A-B": r.difference,
            f"CI {level} low": r.ci_low,
            f"CI {level} high": r.ci_high,
            "p": r.p_value,
            "p (Holm)": r.p_holm,
            "queries": r.queries,
            "trials": r.trials,
            "exact": r.exact,
        }
        for r in rows
    ]


def _p_text(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _render_compare(rows, fmt: str, confidence: float, title: str, version: str) -> str:
    import csv
    import io

    from tabulate import tabulate

    dicts = _compare_rows_as_dicts(rows, confidence)
    if fmt == "json":
        clean = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
            for d in dicts
        ]
        payload = {"vireid_bench_version": version, "title": title, "comparisons": clean}
        return json.dumps(payload, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        if dicts:
            writer = csv.DictWriter(buffer, fieldnames=list(dicts[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(dicts)
        return buffer.getvalue()
    level = f"{100 * confidence:g}%"
    headers = ["setting", "metric", "A", "B", "A−B", f"{level} CI", "p", "p (Holm)", "queries"]
    body = [
        [
            r.setting,
            r.metric,
            f"{r.a:.2f}",
            f"{r.b:.2f}",
            f"{r.difference:+.2f}",
            f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]",
            _p_text(r.p_value) + (" (exact)" if r.exact else ""),
            _p_text(r.p_holm),
            str(r.queries),
        ]
        for r in rows
    ]
    tablefmt = "github" if fmt == "markdown" else "simple"
    table = tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)
    heading = f"**{title}**" if fmt == "markdown" else title
    return f"{heading}\n\n{table}\n"


@click.command("compare", cls=ToolkitCommand)
@click.argument("dump_a", type=click.Path(dir_okay=False))
@click.argument("dump_b", type=click.Path(dir_okay=False))
@click.option("-p", "--protocol", default="all", show_default=True, help="Settings to compare.")
@click.option(
    "--metric",
    "metrics",
    default="mAP,R1",
    show_default=True,
    help="Comma list of per-query metrics: mAP (per-query AP), R1 (rank-1 hit).",
)
@query_modality_option
@click.option(
    "--permutations",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Random sign flips of the paired test (exact enumeration when fewer patterns exist).",
)
@click.option(
    "--bootstrap",
    "resamples",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Bootstrap resamples of the queries for the confidence interval.",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
)
@click.option("--seed", type=int, default=0, show_default=True)
@trials_option
@table_output_options
@parents_option
@allow_external_option
def compare_command(
    dump_a: str,
    dump_b: str,
    protocol: str,
    metrics: str,
    query_modality: str,
    permutations: int,
    resamples: int,
    confidence: float,
    seed: int,
    trials: int | None,
    fmt: str,
    output: str | None,
    parents: bool,
    allow_external: bool,
) -> None:
    """Paired significance of model A against model B on the identical galleries.

    Both dumps must hold the same images (labels and order). Per setting, the per-query AP
    and rank-1 hits of A and B are paired query by query (and trial by trial): a paired
    permutation (sign-flip) test gives the two-sided p-value of A−B = 0, a bootstrap over
    queries gives the confidence interval of A−B, and the p-values are Holm-adjusted across
    the settings, for each metric separately.
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.engine import fused as kernels  # the kernel every in-memory plan runs
    from vireid_bench.engine.scoring import evaluate
    from vireid_bench.io.dump import load_dump
    from vireid_bench.protocol import resolve_presets
    from vireid_bench.results.stats import compare_evaluations

    check_output(output, [dump_a, dump_b], parents=parents)
    presets = resolve_presets(protocol)
    note_cold_kernels(kernels)
    strict = "all" not in split_list(protocol)
    modalities = None if query_modality == "both" else [query_modality]
    loaded, evaluations = [], []
    with one_line_warnings():
        for path in (dump_a, dump_b):
            dump = load_dump(path, allow_external=allow_external)
            loaded.append(dump)
            evaluations.append(
                evaluate(dump, presets, trials=trials, query_modalities=modalities, strict=strict)
            )
    rows = compare_evaluations(
        loaded[0],
        evaluations[0],
        loaded[1],
        evaluations[1],
        metrics=split_list(metrics),
        permutations=permutations,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    title = (
        f"A = {loaded[0].model} ({os.path.basename(dump_a)}) vs B = {loaded[1].model} "
        f"({os.path.basename(dump_b)}), dataset {loaded[0].dataset}: paired permutation test "
        f"({permutations} sign flips, two-sided), {100 * confidence:g}% bootstrap CI of A−B "
        f"({resamples} resamples of queries), Holm across settings per metric; seed {seed}"
    )
    text = _render_compare(rows, fmt, confidence, title, toolkit_version())
    write_output(text, output, [dump_a, dump_b], parents=parents)
