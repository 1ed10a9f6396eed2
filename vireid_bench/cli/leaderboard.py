"""``vireid-bench leaderboard``: per-dataset leaderboards (CSV, Markdown, HTML)."""

from __future__ import annotations

from pathlib import Path

import click

from vireid_bench.cli.common import (
    ToolkitCommand,
    note_cold_kernels,
    one_line_warnings,
    toolkit_version,
    write_output,
)
from vireid_bench.cli.device_options import device_options, device_scoring_options
from vireid_bench.cli.options import (
    memory_limit_option,
    memory_options,
    parents_option,
    scheduler_options,
    trials_option,
)
from vireid_bench.engine.scheduler import scheduler_from_options


@click.command("leaderboard", cls=ToolkitCommand)
@click.argument("inputs", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="leaderboards",
    show_default=True,
    help="Folder for <dataset>.csv / .md / .html.",
)
@click.option(
    "-f",
    "--format",
    "formats",
    type=click.Choice(["csv", "md", "html"]),
    multiple=True,
    default=("csv", "md"),
    show_default=True,
    help="Files to write (repeat the option for several); html is a static sortable page.",
)
@click.option(
    "--sort",
    help="Sort rows by SETTING[:VARIANT][@QUERY].METRIC, descending (e.g. mix-id.mAP, "
    "cross:indoor.R1, uni@visible.mAP). Default: the first column's mAP.",
)
@click.option(
    "--query-modality",
    type=click.Choice(["paper", "infrared", "visible", "both"]),
    default="paper",
    show_default=True,
    help="Columns shown: 'paper' = infrared queries in the mixed-modal settings and both "
    "directions in cross-/uni-modal ones (the paper's Tables 1-2).",
)
@click.option(
    "--reported/--no-reported",
    default=True,
    show_default=True,
    help="Add the MixER paper's published results (Tables 1, 2a, 2b) for the same dataset.",
)
@click.option(
    "--merge",
    is_flag=True,
    help="Start from the measured rows of the leaderboard CSVs already in --out; inputs "
    "replace their results for the same model, dataset, setting and protocol version.",
)
@click.option(
    "-p",
    "--protocol",
    default="all",
    show_default=True,
    help="Settings to score feature dumps under (result files are taken as they are).",
)
@trials_option
@parents_option
@memory_limit_option
@device_options
@scheduler_options
def leaderboard_command(
    inputs: tuple[str, ...],
    out_dir: str,
    formats: tuple[str, ...],
    sort: str | None,
    query_modality: str,
    reported: bool,
    merge: bool,
    protocol: str,
    trials: int | None,
    parents: bool,
    memory_limit: str,
    device: str | None,
    tf32: bool,
    scheduler: str,
    scheduler_address: str | None,
    dask_workers: int,
    dask_block_queries: int,
    dask_timeout: float,
) -> None:
    """Build per-dataset leaderboards from feature dumps and result files.

    INPUTS are feature dumps (.h5, scored on the fly) and/or result files written by
    'vireid-bench score --format json --output FILE.json'. For every dataset among them,
    writes OUT/<dataset>.csv (R1, mAP and mINP per setting, unrounded) and OUT/<dataset>.md
    (R1 and mAP, best per column in bold), one row per model: 'measured' rows name the
    dump's SHA-256, 'reported' rows the paper table they come from. A later input replaces
    an earlier result for the same model, dataset, setting and protocol version, with a
    'replaced:' line on stderr. Without INPUTS, writes the reported tables alone.
    With '--scheduler dask' every dump is scored at once on a Dask cluster (docs/scale.md).
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.engine import fused as kernels  # the kernel every in-memory plan runs
    from vireid_bench.io.files import OutputError
    from vireid_bench.results import leaderboard as lb
    from vireid_bench.results.reported import reported_datasets

    board = lb.Leaderboard()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(out_dir, "is not a folder")
    if not out.exists() and not out.parent.is_dir() and not parents:
        raise OutputError(
            out_dir, f"folder {out.parent} does not exist (create it, or pass --parents)"
        )
    if any(str(path).endswith(".h5") for path in inputs):
        note_cold_kernels(kernels)
    version = toolkit_version()
    if merge and out.is_dir():
        for existing in sorted(out.glob("*.csv")):
            previous = lb.results_from_leaderboard_csv(existing)
            _echo_notices(board.add(r for r in previous if r.source == "measured"))
    options: dict[str, object] = {"protocols": protocol}
    if trials is not None:
        options["trials"] = trials
    options.update(device_scoring_options(device, tf32, scheduler))
    chosen = scheduler_from_options(
        scheduler, scheduler_address, dask_workers, dask_block_queries, dask_timeout
    )
    with one_line_warnings():
        results_lists = lb.load_inputs(
            inputs,
            version=version,
            scheduler=chosen,
            memory=memory_options(memory_limit),
            **options,
        )
        for results in results_lists:
            _echo_notices(board.add(results))
    datasets = board.datasets() or ([] if inputs else reported_datasets())
    if reported:
        for dataset in datasets:
            board.add(lb.results_from_reported(dataset))
    if not datasets:
        raise lb.LeaderboardError("no result to put on a leaderboard")
    if not out.is_dir():
        try:
            out.mkdir(parents=parents)
        except OSError as exc:
            raise OutputError(out_dir, f"cannot create folder ({exc.strerror})") from exc
        click.echo(f"created folder {out}", err=True)
    for dataset in datasets:
        try:
            table = lb.build_table(
                board, dataset, toolkit_version=version, query_modality=query_modality, sort=sort
            )
        except lb.UnknownColumnError as exc:
            if len(datasets) == 1:
                raise
            click.echo(f"warning: {dataset}: {exc}; sorted by the default column", err=True)
            table = lb.build_table(
                board, dataset, toolkit_version=version, query_modality=query_modality
            )
        for fmt in dict.fromkeys(formats):
            target = out / f"{lb.output_name(dataset)}.{fmt}"
            write_output(lb.RENDERERS[fmt](table), str(target), inputs)
        measured = sum(e.source == "measured" for e in table.entries)
        click.echo(
            f"{dataset}: {measured} measured and {len(table.entries) - measured} reported "
            f"row(s), {len(table.columns)} column(s)"
        )


def _echo_notices(notices: list[str]) -> None:
    for notice in notices:
        click.echo(notice, err=True)
