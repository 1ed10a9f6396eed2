"""``vireid-bench plot``: CMC curves, distance histograms and retrieval strips (matplotlib)."""

from __future__ import annotations

from pathlib import Path

import click

from vireid_bench.cli.common import (
    InputError,
    ToolkitCommand,
    ToolkitSubgroup,
    check_output,
    note_cold_kernels,
    one_line_warnings,
)
from vireid_bench.cli.options import (
    allow_external_option,
    parents_option,
    query_modality_option,
    trials_option,
)
from vireid_bench.cli.plot_ranklists import (
    check_dump_only_options,
    plot_from_ranklists,
    ranklist_plot_options,
)


@click.group("plot", cls=ToolkitSubgroup)
def plot_command() -> None:
    """Draw figures (needs: pip install 'vireid-bench[plot]').

    \b
      vireid-bench plot cmc A.h5 B.h5 --protocol mix-id,cross -o cmc.png
      vireid-bench plot distances A.h5 -o distances.svg
      vireid-bench plot retrieval A.h5 --images /data/SYSU-MM01 -o strips.png
      vireid-bench plot retrieval --ranklists ranks.jsonl --images /data/SYSU-MM01 \\
          --setting sysu-all-single:all@infrared --query 12 --query 40 -o strips.png
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


def _check_outputs(outputs: tuple[str, ...], inputs: list[str], parents: bool) -> None:
    """Refuse bad figure outputs before any work (format, input file, folder, kind)."""
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.results import plots

    plots.check_outputs(outputs)
    for output in outputs:
        check_output(output, inputs, parents=parents)


def _echo_written(paths: list[Path]) -> None:
    for path in paths:
        click.echo(f"wrote {path}", err=True)


@plot_command.command("cmc", cls=ToolkitCommand)
@click.argument("dumps", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_OUTPUT_OPTION
@parents_option
@click.option("-p", "--protocol", default="all", show_default=True, help="Settings to plot.")
@query_modality_option
@click.option("--max-rank", type=click.IntRange(min=1), default=20, show_default=True)
@trials_option
@allow_external_option
def plot_cmc_command(
    dumps: tuple[str, ...],
    outputs: tuple[str, ...],
    parents: bool,
    protocol: str,
    query_modality: str,
    max_rank: int,
    trials: int | None,
    allow_external: bool,
) -> None:
    """CMC curves (rank 1..max-rank), one panel per setting, the dumps' models overlaid."""
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.engine import fused as kernels  # the kernel every in-memory plan runs
    from vireid_bench.engine.scoring import evaluate
    from vireid_bench.io.dump import load_dump
    from vireid_bench.protocol import resolve_presets
    from vireid_bench.results import plots

    _check_outputs(outputs, list(dumps), parents)
    presets = resolve_presets(protocol)
    note_cold_kernels(kernels)
    modalities = None if query_modality == "both" else [query_modality]
    curves = {}
    with one_line_warnings():
        for path in dumps:
            dump = load_dump(path, allow_external=allow_external)
            evaluation = evaluate(dump, presets, trials=trials, query_modalities=modalities)
            label = dump.model if dump.model not in curves else f"{dump.model} ({path})"
            curves[label] = plots.cmc_curves(evaluation.per_query, max_rank)
    figure = plots.plot_cmc(curves, title="CMC")
    _echo_written(plots.save_figure(figure, outputs, list(dumps), parents=parents))


@plot_command.command("distances", cls=ToolkitCommand)
@click.argument("dump_path", type=click.Path(dir_okay=False))
@_OUTPUT_OPTION
@parents_option
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
@allow_external_option
def plot_distances_command(
    dump_path: str,
    outputs: tuple[str, ...],
    parents: bool,
    protocol: str,
    query_modality: str,
    max_queries: int,
    seed: int,
    allow_external: bool,
) -> None:
    """Intra- vs inter-class distance histograms per gallery setting (first trial)."""
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.io.dump import load_dump
    from vireid_bench.protocol import resolve_presets
    from vireid_bench.results import plots

    _check_outputs(outputs, [dump_path], parents)
    dump = load_dump(dump_path, allow_external=allow_external)
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
    _echo_written(plots.save_figure(figure, outputs, [dump_path], parents=parents))


@plot_command.command("retrieval", cls=ToolkitCommand)
@click.argument("dump_path", required=False, type=click.Path(dir_okay=False))
@_OUTPUT_OPTION
@parents_option
@click.option(
    "--images",
    "images_root",
    required=True,
    type=click.Path(file_okay=False, exists=True),
    help="Dataset root the image paths are relative to; no image outside it is read.",
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
@allow_external_option
@ranklist_plot_options
def plot_retrieval_command(
    dump_path: str | None,
    outputs: tuple[str, ...],
    parents: bool,
    images_root: str,
    protocol: str,
    query_modality: str,
    queries: int,
    top_k: int,
    seed: int,
    allow_external: bool,
    ranklists: str | None,
    setting: str | None,
    trial: int,
    query_rows: tuple[int, ...],
) -> None:
    """Rank-k retrieval strips: query, then its top-k gallery images (green = match).

    From a DUMP (rescored: --protocol, --query-modality, seeded --queries), or from a rank
    list written by `score --ranklists` (--ranklists FILE, --setting, --trial, --query).
    """
    if ranklists is not None:
        if dump_path is not None:
            raise InputError("--ranklists: give a rank-list file or a DUMP, not both")
        plot_from_ranklists(
            ranklists, outputs, parents, images_root, setting, trial, query_rows, queries, top_k
        )
        return
    if dump_path is None:
        raise InputError("plot retrieval: give a DUMP, or --ranklists FILE")
    check_dump_only_options()
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.io.dump import load_dump
    from vireid_bench.protocol import resolve_presets
    from vireid_bench.results import plots

    _check_outputs(outputs, [dump_path], parents)
    presets = resolve_presets(protocol)
    if len(presets) != 1:
        raise plots.PlotError("retrieval strips take one setting (--protocol NAME)")
    dump = load_dump(dump_path, allow_external=allow_external)
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
    _echo_written(plots.save_figure(figure, outputs, [dump_path], parents=parents))
