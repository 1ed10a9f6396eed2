"""The run-metadata options shared by the commands that write dumps (``import``,
``mixer extract``): ``--seed``, ``--run``, ``--selection``, ``--trained-on``.

Light to import (click only): the choices are spelled here, and a test checks them against
:data:`vireid_bench.io.dump_format.SELECTIONS`.
"""

from __future__ import annotations

from collections.abc import Callable

import click

SELECTION_CHOICES = ("test", "val", "last")


def run_metadata_options(function: Callable) -> Callable:
    """Add ``--seed``, ``--run``, ``--selection`` and ``--trained-on`` (all optional)."""
    for option in reversed(
        (
            click.option("--seed", type=int, help="Training seed, recorded as the dump's 'seed'."),
            click.option("--run", help="Free text naming the training run (the dump's 'run')."),
            click.option(
                "--selection",
                type=click.Choice(SELECTION_CHOICES),
                help="How the checkpoint was chosen: best on the test set (test), best on a "
                "validation split (val), or the last epoch (last).",
            ),
            click.option(
                "--trained-on",
                help="Training dataset and split, e.g. 'sysu-mm01 train' (the dump's "
                "'trained_on').",
            ),
        )
    ):
        function = option(function)
    return function


def run_metadata(**values: object) -> dict[str, object]:
    """The given run options as ``write_dump`` keywords (None values left out)."""
    keys = ("seed", "run", "selection", "trained_on")
    return {key: values[key] for key in keys if values.get(key) is not None}
