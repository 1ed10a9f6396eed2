"""``vireid-bench index``: list a dataset's images in the order a model writes its dump.

Register it on the main command group with ``cli.add_command(index_command)``. It reports
toolkit errors itself (``error: ...`` on stderr, exit code 2), so it also works on its own.
"""

from __future__ import annotations

import click

from vireid_bench.cli.common import ToolkitCommand, check_output, write_output
from vireid_bench.cli.options import parents_option

# The dataset names used everywhere else (dump attribute, protocols), and the old short
# name ``sysu`` kept as an alias.
INDEX_DATASETS = {"sysu-mm01": "sysu", "regdb": "regdb", "llcm": "llcm", "sysu": "sysu"}


@click.command("index", cls=ToolkitCommand)
@click.argument("dataset", type=click.Choice(list(INDEX_DATASETS)))
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
@parents_option
@click.option(
    "--split",
    default="test",
    show_default=True,
    help="test, or train (SYSU-MM01 also val, trainval).",
)
def index_command(dataset: str, root: str, out: str, split: str, parents: bool) -> None:
    """List DATASET's images (sysu-mm01, regdb or llcm) as CSV: path, pid, cam, modality.

    Write your feature dump in exactly this order, with these columns and the dump
    attribute dataset = sysu-mm01, regdb or llcm (RegDB: one trials/<k> group per value
    of the extra 'trial' column). modality: 0 visible, 1 infrared. The scorer samples the
    galleries from the paths, as the community evaluation code does.

    \b
      vireid-bench index sysu-mm01 --root /data/SYSU-MM01 --out sysu-test.csv
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.cli.common import one_line_warnings
    from vireid_bench.protocol.datasets import DATASET_NAMES, INDEXERS

    dataset = INDEX_DATASETS[dataset]
    check_output(out, parents=parents)
    with one_line_warnings():
        frame = INDEXERS[dataset](root, split=split)
    write_output(frame.to_csv(index=False, lineterminator="\n"), out, parents=parents, quiet=True)
    summary = (
        f"{len(frame)} images, {frame['pid'].nunique()} ids "
        f"({int((frame['modality'] == 0).sum())} visible, "
        f"{int((frame['modality'] == 1).sum())} infrared)"
    )
    if "trial" in frame:
        summary += f", {frame['trial'].nunique()} trials"
    where = "" if out == "-" else f"wrote {out}: "
    click.echo(f"{where}{summary}; dump attribute dataset = {DATASET_NAMES[dataset]}", err=True)
