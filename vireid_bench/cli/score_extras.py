"""What ``score`` does besides the table: the canonical-test-set warning and ``--ranklists``.

Kept out of ``cli/main.py`` so that the score command only gains two options and a few
calls: :class:`ScoreExtras` checks the request before any work,
:meth:`ScoreExtras.warn_canonical` warns once every dump is scored (for every scheduler,
so local and Dask runs print the same lines, and a failed run only its error),
:meth:`ScoreExtras.after` writes the rank lists once a dump is scored. None of them
changes a number of the table.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import click

from vireid_bench.cli.common import InputError

if TYPE_CHECKING:
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.io.dump import FeatureDump
    from vireid_bench.protocol import Preset
    from vireid_bench.protocol.conventions import Convention

ranklists_option = click.option(
    "--ranklists",
    type=click.Path(dir_okay=False),
    help="Also write each setting's, trial's and query's top-k gallery (after exclusion) "
    "and the ranks of all its true matches to FILE: .jsonl, or .parquet with pyarrow "
    "(docs/import.md, 'Rank lists').",
)
top_k_option = click.option(
    "--top-k",
    type=click.IntRange(min=1),
    help="Gallery images per query in --ranklists.  [default: 20]",
)


class ScoreExtras:
    """The score command's extras for one run; the constructor refuses bad requests early.

    Raises:
        InputError: ``--top-k`` without ``--ranklists``; ``--ranklists`` with several
            dumps, ``--rerank`` or ``--scheduler dask``.
        OutputError: the rank-list file is refused (wrong suffix, no pyarrow for
            .parquet, an input, not a regular file, a missing folder).
    """

    def __init__(
        self,
        ranklists: str | None,
        top_k: int | None,
        dumps: Sequence[str],
        inputs: Sequence[str],
        *,
        rerank: str,
        scheduler: str,
        parents: bool,
    ) -> None:
        self.ranklists, self.inputs, self.parents = ranklists, list(inputs), parents
        self.top_k = 20 if top_k is None else top_k
        if ranklists is None:
            if top_k is not None:
                raise InputError("--top-k: needs --ranklists FILE")
            return
        if len(dumps) != 1:
            raise InputError("--ranklists: one dump at a time")
        if rerank != "none":
            raise InputError("--ranklists: not available with --rerank (plain distances only)")
        if scheduler != "local":
            raise InputError("--ranklists: not available with --scheduler dask (score locally)")
        # lazy: heavy modules load only when the command runs (fast --help)
        from vireid_bench.engine.ranklists import ranklist_format
        from vireid_bench.io.files import check_output_path

        ranklist_format(ranklists)
        check_output_path(ranklists, self.inputs, parents=parents)

    def warn_canonical(self, dumps: Sequence[str], allow_external: bool) -> None:
        """Warn, one line per dump, when a dataset dump is not its canonical test set.

        Called after scoring, for every scheduler alike (only the labels are read again).
        """
        # lazy: heavy modules load only when the command runs (fast --help)
        from vireid_bench.io.dump import load_dump
        from vireid_bench.protocol.canonical import compare_with_manifest

        for path in dumps:
            with warnings.catch_warnings():  # load-time warnings show when the dump is scored
                warnings.simplefilter("ignore")
                dump = load_dump(path, feature_sets=[], lazy=True, allow_external=allow_external)
            report = compare_with_manifest(dump)
            if report is not None and not report.canonical:
                warnings.warn(
                    f"{os.path.basename(path)}: not the canonical {report.dataset} test set "
                    f"(numbers unchanged): {'; '.join(report.differences)}",
                    stacklevel=2,
                )

    def after(
        self,
        dump: FeatureDump,
        presets: Sequence[Preset],
        options: dict[str, object],
        factory: Callable[[FeatureDump], Convention] | None,
    ) -> None:
        """Write the rank lists of a scored dump (when ``--ranklists`` was given)."""
        if self.ranklists is None:
            return
        # lazy: heavy modules load only when the command runs (fast --help)
        from vireid_bench.engine.ranklists import iter_ranklists, write_ranklists

        blocks = iter_ranklists(
            dump,
            presets,
            top_k=self.top_k,
            convention=factory(dump) if factory else None,
            **{key: value for key, value in options.items() if key != "strict"},
        )
        count = write_ranklists(self.ranklists, blocks, self.inputs, parents=self.parents)
        click.echo(f"wrote {self.ranklists} ({count} rank lists)", err=True)
