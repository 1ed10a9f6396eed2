"""``vireid-bench score-distmat``: score a saved distance matrix and its label arrays.

A separate command rather than ``score --distmat``: ``score`` takes one or more dumps as a
required argument and every one of its options (features, metric, trials, samplers,
re-ranking, memory limit, Dask) is about dumps; a distance matrix has none of them.
"""

from __future__ import annotations

import click

from vireid_bench.cli.common import InputError, ToolkitCommand

ARRAYS = ("distmat", "q_pids", "g_pids", "q_camids", "g_camids")
OPTIONAL_ARRAYS = ("q_modalities", "g_modalities")
SHOWN_RANKS = (1, 5, 10, 20)


def _render(file_name: str, result, fmt: str, cmc: str) -> str:
    import csv
    import io
    import json

    ranks = [k for k in SHOWN_RANKS if k <= result.cmc.shape[0]]
    row = {
        "distmat": file_name,
        "setting": result.setting,
        "matrix": "pool x pool" if result.pool else "query x gallery",
        "cmc": cmc,
        "queries": result.queries,
        "queries_without_match": result.skipped,
        **{f"rank{k}": float(result.cmc[k - 1]) for k in ranks},
        "mAP": result.mAP,
        "mINP": result.mINP,
    }
    if fmt == "json":
        return json.dumps({**row, "cmc_curve": result.cmc.tolist()}, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(row), lineterminator="\n")
        writer.writeheader()
        writer.writerow(row)
        return buffer.getvalue()
    from tabulate import tabulate

    headers = ["setting", "matrix", *(f"R{k}" for k in ranks), "mAP", "mINP", "queries", "no match"]
    body = [
        [
            result.setting,
            row["matrix"],
            *(f"{100 * result.cmc[k - 1]:.2f}" for k in ranks),
            f"{100 * result.mAP:.2f}",
            f"{100 * result.mINP:.2f}",
            str(result.queries),
            str(result.skipped),
        ]
    ]
    title = f"{file_name} | CMC by {cmc} | percent\n"
    return title + tabulate(body, headers=headers, disable_numparse=True) + "\n"


@click.command("score-distmat", cls=ToolkitCommand)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "-p",
    "--setting",
    default="cross",
    show_default=True,
    help="A preset name (vireid-bench protocols). Mixed settings need a pool x pool matrix.",
)
@click.option(
    "--cmc",
    type=click.Choice(["image", "identity"]),
    default="image",
    show_default=True,
    help="First-hit rank among gallery images (torchreid) or identities (SYSU-MM01/AGW).",
)
@click.option(
    "--max-rank", type=click.IntRange(min=1), default=50, show_default=True, help="CMC length."
)
@click.option(
    "--query-modality",
    type=click.Choice(["infrared", "visible"]),
    help="Pool x pool only: score the rows of this modality.",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Output format (CSV and JSON: unrounded fractions; JSON also the whole CMC curve).",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout."
)
def score_distmat_command(
    file: str,
    setting: str,
    cmc: str,
    max_rank: int,
    query_modality: str | None,
    fmt: str,
    output: str | None,
) -> None:
    """Score FILE (.npz, .h5, .mat or .pt) holding distmat, q_pids, g_pids, q_camids, g_camids.

    Optional arrays q_modalities and g_modalities (0 visible, 1 infrared). A query x gallery
    matrix is scored with torchreid's rule (the gallery images with the query's pid and
    camera removed; with modalities, 'cross' keeps the other modality only, 'uni' the same);
    a square pool x pool matrix (q_* equal to g_*) with a preset's exclusion rule, as
    'vireid-bench score' applies it. Numbers as in torchreid's evaluate_rank (docs/import.md).

    \b
      vireid-bench score-distmat dist.npz
      vireid-bench score-distmat pool.npz --setting mix-id --query-modality infrared
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.cli.common import one_line_warnings, write_output
    from vireid_bench.engine.distmat import rank_scores
    from vireid_bench.errors import DumpError
    from vireid_bench.io.importers import read_source

    arrays = read_source(file)
    for name in ARRAYS:
        if name not in arrays:
            present = ", ".join(sorted(arrays)) or "none"
            raise DumpError(file, name, f"missing; arrays present: {present}")
    values = {name: arrays[name].value for name in (*ARRAYS, *OPTIONAL_ARRAYS) if name in arrays}
    try:
        with one_line_warnings():
            result = rank_scores(
                values["distmat"],
                values["q_pids"],
                values["g_pids"],
                values["q_camids"],
                values["g_camids"],
                values.get("q_modalities"),
                values.get("g_modalities"),
                setting=setting,
                cmc=cmc,
                max_rank=max_rank,
                query_modality=query_modality,
            )
    except ValueError as exc:  # DistanceMatrixError, EmptyEvaluationError
        raise InputError(f"{file}: {exc}") from exc
    if result.skipped:
        click.echo(
            f"warning: {file}: {result.skipped} of {result.queries} queries have no true match "
            "in their gallery and are skipped",
            err=True,
        )
    write_output(_render(file, result, fmt, cmc), output)
