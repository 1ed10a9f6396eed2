"""``vireid-bench index``: list a dataset's images in the order a model writes its dump.

Register it on the main command group with ``cli.add_command(index_command)``. It reports
toolkit errors itself (``error: ...`` on stderr, exit code 2), so it also works on its own.
"""

from __future__ import annotations

import click

from vireid_bench.cli.common import InputError
from vireid_bench.io.files import write_text_atomic


def _write_csv(frame, out: str) -> None:
    """Write ``frame`` as CSV to stdout (``-``) or atomically to ``out``."""
    text = frame.to_csv(index=False, lineterminator="\n")
    if out == "-":
        click.echo(text, nl=False)
        return
    write_text_atomic(out, text)


@click.command("index")
@click.argument("dataset", type=click.Choice(["sysu", "regdb", "llcm"]))
@click.option(
    "--root",
    required=True,
    type=click.Path(file_okay=False),
    help="The dataset root, in the layout the dataset ships in.",
)
@click.option(
    "-o",
    "--out",
    default="-",
    show_default=True,
    help="CSV file to write ('-': stdout).",
)
@click.option(
    "--split",
    default="test",
    show_default=True,
    help="test, or train (SYSU-MM01 also val, trainval).",
)
def index_command(dataset: str, root: str, out: str, split: str) -> None:
    """List DATASET's images (sysu, regdb or llcm) as CSV: path, pid, cam, modality.

    Write your feature dump in exactly this order, with these columns and the dump
    attribute dataset = sysu-mm01, regdb or llcm (RegDB: one trials/<k> group per value
    of the extra 'trial' column). modality: 0 visible, 1 infrared. The scorer samples the
    galleries from the paths, as the community evaluation code does.

    \b
      vireid-bench index sysu --root /data/SYSU-MM01 --out sysu-test.csv
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.cli.common import one_line_warnings
    from vireid_bench.errors import VireidBenchError
    from vireid_bench.protocol.datasets import DATASET_NAMES, INDEXERS

    try:
        with one_line_warnings():
            frame = INDEXERS[dataset](root, split=split)
    except VireidBenchError as exc:
        raise InputError(str(exc)) from exc
    _write_csv(frame, out)
    summary = (
        f"{len(frame)} images, {frame['pid'].nunique()} ids "
        f"({int((frame['modality'] == 0).sum())} visible, "
        f"{int((frame['modality'] == 1).sum())} infrared)"
    )
    if "trial" in frame:
        summary += f", {frame['trial'].nunique()} trials"
    where = "" if out == "-" else f"wrote {out}: "
    click.echo(f"{where}{summary}; dump attribute dataset = {DATASET_NAMES[dataset]}", err=True)
