"""``vireid-bench runs``: statistics over training runs, and the run-level test of two models."""

from __future__ import annotations

import click

from vireid_bench.cli.common import ToolkitCommand, one_line_warnings, toolkit_version, write_output
from vireid_bench.cli.options import (
    memory_limit_option,
    memory_options,
    query_modality_option,
    scheduler_options,
    split_list,
    table_output_options,
    trials_option,
)
from vireid_bench.engine.scheduler import scheduler_from_options

_METRIC_NAMES = {"r1": "rank1", "rank1": "rank1", "map": "mAP", "minp": "mINP"}


@click.command("runs", cls=ToolkitCommand)
@click.argument("dumps", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-p", "--protocol", default="all", show_default=True, help="Settings to score.")
@click.option(
    "--metric",
    "metrics",
    default="R1,mAP,mINP",
    show_default=True,
    help="Comma list of metrics: R1, mAP, mINP.",
)
@query_modality_option
@trials_option
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Coverage of the intervals over runs (and of the per-query bootstrap interval).",
)
@click.option(
    "--bootstrap",
    "resamples",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Bootstrap resamples (of runs, for 10 runs or more; of queries, per-query test).",
)
@click.option(
    "--permutations",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Relabellings of the permutation tests (all of them, exact, when fewer exist).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the resampling.")
@table_output_options
@memory_limit_option
@scheduler_options
def runs_command(
    dumps: tuple[str, ...],
    protocol: str,
    metrics: str,
    query_modality: str,
    trials: int | None,
    confidence: float,
    resamples: int,
    permutations: int,
    seed: int,
    fmt: str,
    output: str | None,
    memory_limit: str,
    scheduler: str,
    scheduler_address: str | None,
    dask_workers: int,
    dask_block_queries: int,
    dask_timeout: float,
) -> None:
    """Statistics over training runs: DUMPS of one model (same 'model' attribute, different
    seeds or runs) are its runs.

    Each dump is scored once. Per model, setting and metric: the mean over runs, the sample
    standard deviation, a confidence interval of the mean (Student-t for fewer than 10
    runs, percentile bootstrap from 10 on), min, max and the number of runs. With two
    models: Welch's t-test and an exact permutation test over runs, beside the per-query
    paired test of 'compare' on the run-averaged scores, and a one-line verdict naming the
    noise that dominates (run-to-run or per-query/trial). docs/results.md explains when each
    test applies.

    \b
      vireid-bench runs a-seed0.h5 a-seed1.h5 a-seed2.h5 -p mix-id,cross
      vireid-bench runs a-*.h5 b-*.h5 -f markdown
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.protocol import resolve_presets
    from vireid_bench.results.runs import RunsError, runs_report
    from vireid_bench.results.runs_render import render_runs

    chosen_metrics = []
    for name in split_list(metrics):
        if name.lower() not in _METRIC_NAMES:
            raise RunsError(f"--metric: unknown metric {name!r} (valid: R1, mAP, mINP)")
        chosen_metrics.append(_METRIC_NAMES[name.lower()])
    presets = resolve_presets(protocol)
    strict = "all" not in split_list(protocol)
    options: dict[str, object] = {
        "trials": trials,
        "query_modalities": None if query_modality == "both" else [query_modality],
        "strict": strict,
    }
    chosen = scheduler_from_options(
        scheduler, scheduler_address, dask_workers, dask_block_queries, dask_timeout
    )
    with one_line_warnings():
        report = runs_report(
            dumps,
            presets,
            metrics=tuple(dict.fromkeys(chosen_metrics)),
            options=options,
            scheduler=chosen,
            memory=memory_options(memory_limit),
            confidence=confidence,
            resamples=resamples,
            permutations=permutations,
            seed=seed,
        )
    for note in report.notes:
        click.echo(f"warning: {note}", err=True)
    groups = "; ".join(f"{g.model}: {g.n} run(s)" for g in report.groups)
    title = (
        f"Runs by model ({groups}), dataset {report.groups[0].dataset}: mean, sample std and "
        f"{100 * confidence:g}% CI of the mean over runs (t below 10 runs, bootstrap from 10); "
        f"seed {seed}"
    )
    write_output(render_runs(report, fmt, toolkit_version(), title), output)
