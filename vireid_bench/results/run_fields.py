"""Run metadata in result rows: the dump's ``seed``, ``run``, ``selection``, ``trained_on``
and ``synthetic`` attributes (docs/dump-format.md), carried by ``score --format json`` and
``--format csv`` so that a result file says which training run it scored.

Only attributes the dump records are added (a dump without them gives rows without them);
the JSON keys follow the result keys, the CSV columns appear when any scored dump records
the field (empty cells for the dumps that do not).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

RUN_FIELDS = ("seed", "run", "selection", "trained_on", "synthetic")
"""The run-metadata keys of a result row, in output order."""


def run_values(attributes: Mapping[str, object]) -> dict[str, object]:
    """The run metadata among a dump's attributes
    (:func:`vireid_bench.io.dump.read_dump_attributes`), None values left out."""
    return {key: attributes[key] for key in RUN_FIELDS if attributes.get(key) is not None}


def add_run_metadata(
    rows: Iterable[dict[str, object]], attributes: Mapping[str, object]
) -> None:
    """Add the dump's run metadata to each of its rows (in place)."""
    values = run_values(attributes)
    for row in rows:
        row.update(values)


def run_columns(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """The run-metadata fields present in any row, in :data:`RUN_FIELDS` order."""
    return [key for key in RUN_FIELDS if any(row.get(key) is not None for row in rows)]
