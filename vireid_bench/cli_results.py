"""Commands on results: ``leaderboard``, ``check``, ``plot`` and ``compare``.

Registered on the ``vireid-bench`` group at the bottom of :mod:`vireid_bench.cli`. Each
command maps toolkit errors to exit code 2 itself (so it behaves the same when invoked on
its own, e.g. from tests); ``check`` exits 1 when a stored dump's results moved.

This module imports :mod:`vireid_bench.cli` lazily (inside the commands): ``cli`` imports
this module at its bottom to register the commands.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from vireid_bench.memory import memory_limit_option, parse_memory_limit
from vireid_bench.scheduler import scheduler_from_options, scheduler_options


def _cli():
    from vireid_bench import cli

    return cli


class _MapsErrors:
    """Toolkit errors -> ``error: ...`` on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        from vireid_bench.errors import VireidBenchError

        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except VireidBenchError as exc:
            raise _cli().InputError(str(exc)) from exc


class _Command(_MapsErrors, click.Command):
    pass


class _Group(_MapsErrors, click.Group):
    pass


@contextmanager
def _warnings() -> Iterator[None]:
    with _cli()._one_line_warnings():
        yield


def _version() -> str:
    return _cli()._version()


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


# --------------------------------------------------------------------------- leaderboard


@click.command("leaderboard", cls=_Command)
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
@click.option("--trials", type=click.IntRange(min=1), help="Score only the first N trials.")
@memory_limit_option
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
    memory_limit: str,
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
    from vireid_bench import leaderboard as lb
    from vireid_bench.reported import reported_datasets

    board = lb.Leaderboard()
    out = Path(out_dir)
    version = _version()
    if merge and out.is_dir():
        for existing in sorted(out.glob("*.csv")):
            previous = lb.results_from_leaderboard_csv(existing)
            _echo_notices(board.add(r for r in previous if r.source == "measured"))
    options: dict[str, object] = {"protocols": protocol}
    if trials is not None:
        options["trials"] = trials
    chosen = scheduler_from_options(
        scheduler, scheduler_address, dask_workers, dask_block_queries, dask_timeout
    )
    with _warnings():
        results_lists = lb.load_inputs(
            inputs, version=version, scheduler=chosen, memory=_memory(memory_limit), **options
        )
        for results in results_lists:
            _echo_notices(board.add(results))
    datasets = board.datasets() or ([] if inputs else reported_datasets())
    if reported:
        for dataset in datasets:
            board.add(lb.results_from_reported(dataset))
    if not datasets:
        raise lb.LeaderboardError("no result to put on a leaderboard")
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
            _cli().write_output(lb.RENDERERS[fmt](table), str(target))
        measured = sum(e.source == "measured" for e in table.entries)
        click.echo(
            f"{dataset}: {measured} measured and {len(table.entries) - measured} reported "
            f"row(s), {len(table.columns)} column(s)"
        )


def _echo_notices(notices: list[str]) -> None:
    for notice in notices:
        click.echo(notice, err=True)


# --------------------------------------------------------------------------- check


@click.command("check", cls=_Command)
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
@memory_limit_option
@scheduler_options
def check_command(
    folder: str,
    update: bool,
    tolerance: float,
    expected_dir: str | None,
    memory_limit: str,
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
    from vireid_bench import check as chk

    chosen = scheduler_from_options(
        scheduler, scheduler_address, dask_workers, dask_block_queries, dask_timeout
    )
    with _warnings():
        report = chk.check_dumps(
            folder,
            version=_version(),
            tolerance=tolerance,
            expected_dir=expected_dir,
            scheduler=chosen,
            memory=_memory(memory_limit),
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
        for check in stale:
            chk.write_expected(check)
        click.echo(f"\nupdated {len(stale)} expected file(s)")
        return
    if differences:
        click.echo(
            f"\n{len(differences)} cell(s) moved (tolerance {tolerance:g}). If the change is "
            f"deliberate: vireid-bench check {folder} --update, then commit the expected files "
            "with the reason.",
            err=True,
        )
        raise click.exceptions.Exit(_cli().EXIT_REGRESSION)
    click.echo(f"all {len(report.checks)} dump(s) match their expected results")


# --------------------------------------------------------------------------- plot


@click.group("plot", cls=_Group)
def plot_command() -> None:
    """Draw figures (needs: pip install 'vireid-bench[plot]').

    \b
      vireid-bench plot cmc A.h5 B.h5 --protocol mix-id,cross -o cmc.png
      vireid-bench plot distances A.h5 -o distances.svg
      vireid-bench plot retrieval A.h5 --images /data/SYSU-MM01 -o strips.png
    """


_OUTPUT_OPTION = click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="Figure file; the suffix picks the format (.png, .svg, .pdf). Repeatable.",
)


def _echo_written(paths: list[Path]) -> None:
    for path in paths:
        click.echo(f"wrote {path}", err=True)


@plot_command.command("cmc", cls=_Command)
@click.argument("dumps", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_OUTPUT_OPTION
@click.option("-p", "--protocol", default="all", show_default=True, help="Settings to plot.")
@click.option(
    "--query-modality",
    type=click.Choice(["infrared", "visible", "both"]),
    default="both",
    show_default=True,
)
@click.option("--max-rank", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--trials", type=click.IntRange(min=1), help="Use only the first N trials.")
def plot_cmc_command(
    dumps: tuple[str, ...],
    outputs: tuple[str, ...],
    protocol: str,
    query_modality: str,
    max_rank: int,
    trials: int | None,
) -> None:
    """CMC curves (rank 1..max-rank), one panel per setting, the dumps' models overlaid."""
    from vireid_bench import plots
    from vireid_bench.dump import load_dump
    from vireid_bench.protocol import resolve_presets
    from vireid_bench.scoring import evaluate

    plots.check_outputs(outputs)
    presets = resolve_presets(protocol)
    modalities = None if query_modality == "both" else [query_modality]
    curves = {}
    with _warnings():
        for path in dumps:
            dump = load_dump(path)
            evaluation = evaluate(dump, presets, trials=trials, query_modalities=modalities)
            label = dump.model if dump.model not in curves else f"{dump.model} ({path})"
            curves[label] = plots.cmc_curves(evaluation.per_query, max_rank)
    figure = plots.plot_cmc(curves, title="CMC")
    _echo_written(plots.save_figure(figure, outputs))


@plot_command.command("distances", cls=_Command)
@click.argument("dump_path", type=click.Path(dir_okay=False))
@_OUTPUT_OPTION
@click.option(
    "-p",
    "--protocol",
    default="mix,mix-cam,mix-cam-id,mix-id,cross",
    show_default=True,
    help="Gallery settings, one panel each (the paper's Fig. 4 shows mixed and cross).",
)
@click.option(
    "--query-modality",
    type=click.Choice(["infrared", "visible", "both"]),
    default="infrared",
    show_default=True,
)
@click.option(
    "--max-queries",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Seeded random subset of queries per setting.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def plot_distances_command(
    dump_path: str,
    outputs: tuple[str, ...],
    protocol: str,
    query_modality: str,
    max_queries: int,
    seed: int,
) -> None:
    """Intra- vs inter-class distance histograms per gallery setting (first trial)."""
    from vireid_bench import plots
    from vireid_bench.dump import load_dump
    from vireid_bench.protocol import resolve_presets

    plots.check_outputs(outputs)
    dump = load_dump(dump_path)
    modalities = None if query_modality == "both" else [query_modality]
    distributions = plots.distance_distributions(
        dump,
        resolve_presets(protocol),
        query_modalities=modalities,
        max_queries=max_queries,
        seed=seed,
    )
    for item in distributions:
        s = item.summary()
        click.echo(
            f"{item.setting}: intra {s['intra_mean']:.4f} ± {s['intra_std']:.4f}, "
            f"inter {s['inter_mean']:.4f} ± {s['inter_std']:.4f} ({item.queries} queries)"
        )
    figure = plots.plot_distances(distributions, title=f"{dump.model}: distances")
    _echo_written(plots.save_figure(figure, outputs))


@plot_command.command("retrieval", cls=_Command)
@click.argument("dump_path", type=click.Path(dir_okay=False))
@_OUTPUT_OPTION
@click.option(
    "--images",
    "images_root",
    required=True,
    type=click.Path(file_okay=False, exists=True),
    help="Dataset root the dump's 'path' entries are relative to.",
)
@click.option("-p", "--protocol", default="mix-id", show_default=True, help="One setting.")
@click.option(
    "--query-modality",
    type=click.Choice(["infrared", "visible"]),
    default="infrared",
    show_default=True,
)
@click.option("--queries", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--top-k", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def plot_retrieval_command(
    dump_path: str,
    outputs: tuple[str, ...],
    images_root: str,
    protocol: str,
    query_modality: str,
    queries: int,
    top_k: int,
    seed: int,
) -> None:
    """Rank-k retrieval strips: query, then its top-k gallery images (green = match)."""
    from vireid_bench import plots
    from vireid_bench.dump import load_dump
    from vireid_bench.protocol import resolve_presets

    plots.check_outputs(outputs)
    presets = resolve_presets(protocol)
    if len(presets) != 1:
        raise plots.PlotError("retrieval strips take one setting (--protocol NAME)")
    dump = load_dump(dump_path)
    rankings = plots.retrieval_rankings(
        dump,
        presets[0],
        query_modality=query_modality,
        queries=queries,
        top_k=top_k,
        seed=seed,
    )
    figure, missing = plots.plot_retrieval(
        dump, rankings, images_root, title=f"{dump.model}: {presets[0].name}"
    )
    if missing:
        click.echo(
            f"warning: {len(missing)} image(s) not found under {images_root} "
            f"(first: {missing[0]}); drawn grey",
            err=True,
        )
    _echo_written(plots.save_figure(figure, outputs))


# --------------------------------------------------------------------------- compare


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


@click.command("compare", cls=_Command)
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
@click.option(
    "--query-modality",
    type=click.Choice(["infrared", "visible", "both"]),
    default="both",
    show_default=True,
)
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
@click.option("--trials", type=click.IntRange(min=1), help="Use only the first N trials.")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE.")
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
) -> None:
    """Paired significance of model A against model B on the identical galleries.

    Both dumps must hold the same images (labels and order). Per setting, the per-query AP
    and rank-1 hits of A and B are paired query by query (and trial by trial): a paired
    permutation (sign-flip) test gives the two-sided p-value of A−B = 0, a bootstrap over
    queries gives the confidence interval of A−B, and the p-values are Holm-adjusted across
    the settings, for each metric separately.
    """
    from vireid_bench.dump import load_dump
    from vireid_bench.protocol import resolve_presets
    from vireid_bench.scoring import evaluate
    from vireid_bench.stats import compare_evaluations

    presets = resolve_presets(protocol)
    strict = "all" not in _split_list(protocol)
    modalities = None if query_modality == "both" else [query_modality]
    loaded, evaluations = [], []
    with _warnings():
        for path in (dump_a, dump_b):
            dump = load_dump(path)
            loaded.append(dump)
            evaluations.append(
                evaluate(dump, presets, trials=trials, query_modalities=modalities, strict=strict)
            )
    rows = compare_evaluations(
        loaded[0],
        evaluations[0],
        loaded[1],
        evaluations[1],
        metrics=_split_list(metrics),
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
    _cli().write_output(_render_compare(rows, fmt, confidence, title, _version()), output)


def _memory(memory_limit: str):
    """The :class:`~vireid_bench.scoring.MemoryOptions` of a ``--memory-limit`` value."""
    from vireid_bench.scoring import MemoryOptions

    return MemoryOptions(limit=parse_memory_limit(memory_limit))
