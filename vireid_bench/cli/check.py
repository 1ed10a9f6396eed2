"""``vireid-bench check``: rescore stored dumps against their expected results.

Exit 1 when a number moved (the regression code), 2 on bad input.
"""

from __future__ import annotations

from pathlib import Path

import click

from vireid_bench.cli.common import (
    EXIT_REGRESSION,
    InputError,
    ToolkitCommand,
    note_cold_kernels,
    one_line_warnings,
    toolkit_version,
)
from vireid_bench.cli.device_options import device_options, device_scoring_options
from vireid_bench.cli.options import (
    memory_limit_option,
    memory_options,
    parents_option,
    scheduler_options,
)
from vireid_bench.engine.scheduler import scheduler_from_options


@click.command("check", cls=ToolkitCommand)
@click.argument("folder", type=click.Path(file_okay=False), default="feature_dumps", required=False)
@click.option(
    "--update",
    is_flag=True,
    help="Rewrite the expected files with the current results and print what changed.",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=1e-6,
    show_default=True,
    help="Absolute tolerance on metrics in percent (and their std over trials).",
)
@click.option(
    "--expected",
    "expected_dir",
    type=click.Path(file_okay=False),
    help="Folder of expected files (default: FOLDER/expected).",
)
@parents_option
@memory_limit_option
@device_options
@scheduler_options
def check_command(
    folder: str,
    update: bool,
    parents: bool,
    tolerance: float,
    expected_dir: str | None,
    memory_limit: str,
    device: str | None,
    tf32: bool,
    scheduler: str,
    scheduler_address: str | None,
    dask_workers: int,
    dask_block_queries: int,
    dask_timeout: float,
) -> None:
    """Rescore stored feature dumps and compare with their expected results.

    Every FOLDER/*.h5 is scored under every preset and compared with
    FOLDER/expected/<name>.json: metrics within --tolerance, counts and statuses exactly.
    Prints a table of every cell that moved and exits 1 on any difference (0 when all
    match). With --update, rewrites the expected files of the dumps that changed (or have
    none yet), prints what changed, and exits 0: review that diff and commit it, saying why
    the numbers moved. With '--scheduler dask' every dump is scored at once on a Dask
    cluster (docs/scale.md).
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.engine import fused as kernels  # the kernel every in-memory plan runs
    from vireid_bench.io.files import OutputError
    from vireid_bench.results import check as chk

    scoring = device_scoring_options(device, tf32, scheduler)
    expected_root = Path(expected_dir) if expected_dir else Path(folder) / chk.EXPECTED_DIR
    has_dumps = Path(folder).is_dir() and any(Path(folder).glob("*.h5"))
    if expected_root.exists() and not expected_root.is_dir():
        raise InputError(f"{expected_root}: not a folder (expected results go in a folder)")
    if has_dumps and not update and not expected_root.is_dir():
        raise InputError(
            f"{expected_root}: no expected results folder (record them first: "
            f"vireid-bench check {folder} --update)"
        )
    if expected_root.exists() and not expected_root.is_dir():
        raise OutputError(expected_root, "is not a folder")
    if update and not expected_root.exists() and not expected_root.parent.is_dir() and not parents:
        raise OutputError(
            expected_root,
            f"folder {expected_root.parent} does not exist (create it, or pass --parents)",
        )
    if not scoring:
        note_cold_kernels(kernels)
    chosen = scheduler_from_options(
        scheduler, scheduler_address, dask_workers, dask_block_queries, dask_timeout
    )
    with one_line_warnings():
        report = chk.check_dumps(
            folder,
            version=toolkit_version(),
            tolerance=tolerance,
            expected_dir=expected_dir,
            scheduler=chosen,
            memory=memory_options(memory_limit),
            update=update,
            scoring=scoring,
        )
    for note in report.notes + [n for c in report.checks for n in c.notes]:
        click.echo(f"note: {note}", err=True)
    for check in report.checks:
        state = "ok" if not check.differences else f"{len(check.differences)} cell(s) moved"
        if check.expected_missing:
            state = f"no expected file {check.expected_path}"
        if update and check.needs_update:
            state = f"updated {check.expected_path} ({len(check.differences)} cell(s) changed)"
        click.echo(f"{check.dump}: {check.settings} setting(s): {state}")
    differences = report.differences
    if differences:
        click.echo("")
        click.echo(chk.difference_table(differences))
    if update:
        stale = [check for check in report.checks if check.needs_update]
        if stale and not expected_root.is_dir():
            try:
                expected_root.mkdir(parents=parents)
            except OSError as exc:
                raise OutputError(expected_root, f"cannot create folder ({exc.strerror})") from exc
            click.echo(f"created folder {expected_root}", err=True)
        for check in stale:
            chk.write_expected(check, parents=parents)
        click.echo(f"\nupdated {len(stale)} expected file(s)")
        return
    if differences:
        click.echo(
            f"\n{len(differences)} cell(s) moved (tolerance {tolerance:g}). If the change is "
            f"deliberate: vireid-bench check {folder} --update, then commit the expected files "
            "with the reason.",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_REGRESSION)
    click.echo(f"all {len(report.checks)} dump(s) match their expected results")
