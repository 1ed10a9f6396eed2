"""Published results transcribed from the MixER paper (Tables 1, 2a and 2b).

The numbers live as data in ``leaderboards/reported/<dataset>.csv`` (installed as the
package ``vireid_bench.reported_tables``), one line per printed cell; the folder's README
describes the columns and how the paper's columns map to vireid-bench settings. A cell the
paper prints as ``-`` is kept with an empty value, so the files mirror the printed tables.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

from vireid_bench.errors import VireidBenchError

REPORTED_FIELDS = (
    "dataset",
    "table",
    "model",
    "model_as_printed",
    "venue",
    "setting",
    "variant",
    "query_modality",
    "metric",
    "value",
    "citation",
    "method_reference",
)
_PACKAGE = "vireid_bench.reported_tables"


@dataclass(frozen=True)
class ReportedCell:
    """One printed cell of a paper table.

    Attributes:
        dataset: ``sysu-mm01``, ``regdb`` or ``llcm``.
        table: the paper's table (``"1"``, ``"2a"``, ``"2b"``).
        model: method name without the reference number (``"DEEN+Flip"``).
        model_as_printed: the row label verbatim (``"DEEN[41] + Flip"``).
        venue: the method's venue as printed in Table 1 (may be empty).
        setting, variant, query_modality: the vireid-bench column key.
        metric: ``"rank1"`` or ``"mAP"``.
        value: the number in percent, or None where the paper prints ``-``.
        printed: the value's text exactly as printed (``"80.0"``, ``"100"``, ``""``).
        citation: the paper and table the number comes from.
        method_reference: the method's own reference, as listed in the paper.
    """

    dataset: str
    table: str
    model: str
    model_as_printed: str
    venue: str
    setting: str
    variant: str
    query_modality: str
    metric: str
    value: float | None
    printed: str
    citation: str
    method_reference: str


def reported_datasets() -> list[str]:
    """Return the datasets with transcribed tables, sorted."""
    return sorted(_load_all())


def load_reported(dataset: str | None = None) -> list[ReportedCell]:
    """Return the transcribed cells of one dataset (every dataset when None).

    A dataset without a transcribed table gives an empty list.
    """
    tables = _load_all()
    if dataset is not None:
        return list(tables.get(dataset, ()))
    return [cell for name in sorted(tables) for cell in tables[name]]


@cache
def _load_all() -> dict[str, tuple[ReportedCell, ...]]:
    tables: dict[str, tuple[ReportedCell, ...]] = {}
    for entry in resources.files(_PACKAGE).iterdir():
        if entry.name.endswith(".csv"):
            cells = _parse(entry.name, entry.read_text(encoding="utf-8"))
            tables[entry.name.removesuffix(".csv")] = tuple(cells)
    return tables


def _parse(source: str, text: str) -> list[ReportedCell]:
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != REPORTED_FIELDS:
        raise VireidBenchError(f"{source}: columns must be {', '.join(REPORTED_FIELDS)}")
    cells = []
    for line, row in enumerate(reader, start=2):
        printed = row["value"].strip()
        try:
            value = float(printed) if printed else None
        except ValueError as exc:
            raise VireidBenchError(f"{source}: line {line}: value {printed!r}") from exc
        cells.append(
            ReportedCell(
                **{key: row[key] for key in REPORTED_FIELDS if key != "value"},
                value=value,
                printed=printed,
            )
        )
    return cells
