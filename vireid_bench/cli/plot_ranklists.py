"""``plot retrieval --ranklists FILE``: retrieval strips from a rank list, without rescoring.

Kept out of ``cli/plot.py`` so that the retrieval command only gains four options and one
call. The strips show what the file holds (``score --ranklists``): the query and its first
``--top-k`` gallery images, green border for a true match, red otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from click.core import ParameterSource

from vireid_bench.cli.common import InputError, check_output

_DUMP_ONLY = ("protocol", "query_modality", "seed", "allow_external")
_RANKLIST_ONLY = {"setting": "--setting", "trial": "--trial", "query_rows": "--query"}


def ranklist_plot_options(function: Callable) -> Callable:
    """Add --ranklists, --setting, --trial and --query to ``plot retrieval``."""
    for option in reversed(
        (
            click.option(
                "--ranklists",
                type=click.Path(dir_okay=False),
                help="Draw from a rank-list file written by `score --ranklists` (.jsonl, or "
                ".parquet with pyarrow) instead of rescoring a DUMP.",
            ),
            click.option(
                "--setting",
                help="With --ranklists: the setting, protocol[:variant]@query-modality (e.g. "
                "cross:all@infrared); needed when the file holds several.",
            ),
            click.option(
                "--trial",
                type=click.IntRange(min=0),
                default=0,
                show_default=True,
                help="With --ranklists: the trial to show.",
            ),
            click.option(
                "--query",
                "query_rows",
                type=click.IntRange(min=0),
                multiple=True,
                help="With --ranklists: a query by its row in the dump (repeatable); "
                "default: the first --queries queries.",
            ),
        )
    ):
        function = option(function)
    return function


def _given(name: str) -> bool:
    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, ParameterSource.DEFAULT)


def check_dump_only_options() -> None:
    """Refuse the rank-list options when strips are drawn from a dump."""
    for name, flag in _RANKLIST_ONLY.items():
        if _given(name):
            raise InputError(f"{flag}: only with --ranklists FILE (a DUMP is rescored)")


def plot_from_ranklists(
    ranklists: str,
    outputs: tuple[str, ...],
    parents: bool,
    images_root: str,
    setting: str | None,
    trial: int,
    query_rows: tuple[int, ...],
    queries: int,
    top_k: int,
) -> None:
    """Read the rank lists, pick the strips, draw and save them."""
    for name in _DUMP_ONLY:
        if _given(name):
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag}: not used with --ranklists (pick with --setting)")
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.results import plots
    from vireid_bench.results.ranklist_plots import plot_ranklists, read_ranklists, select_strips

    plots.check_outputs(outputs)
    for output in outputs:
        check_output(output, [ranklists], parents=parents)
    strips = select_strips(
        read_ranklists(ranklists),
        setting=setting,
        trial=trial,
        query_rows=query_rows,
        queries=queries,
        top_k=top_k,
    )
    figure, missing = plot_ranklists(strips, images_root, title=strips[0].setting)
    if missing:
        click.echo(
            f"warning: {len(missing)} image(s) not found under {images_root} "
            f"(first: {missing[0]}); drawn grey",
            err=True,
        )
    for path in plots.save_figure(figure, outputs, [ranklists], parents=parents):
        click.echo(f"wrote {path}", err=True)
