"""Renderers for result rows: readable table, Markdown, CSV and JSON.

Rows are the dicts produced by :func:`vireid_bench.engine.scoring.evaluate` (keys
:data:`vireid_bench.engine.scoring.RESULT_KEYS`). JSON and CSV carry every key with unrounded
values (percentages). The table and Markdown follow one rule: every metric with exactly two
decimals (``100.00``, never ``100``: the cells are text, not re-parsed as numbers), and
``value ± std`` on every scored row of a dump's table as soon as one of its rows averages
several trials (a single-trial row then shows ``± 0.00``, the spread of one value);
otherwise plain ``value``. Skipped settings show ``-`` and their status. A metric the
row's convention does not define (``absent_metrics``) shows ``absent``, and the ``note``
column says why.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

from vireid_bench.engine.row_notes import ABSENT_KEY, NOTE_KEYS, note_text
from vireid_bench.engine.scoring import METRICS, RESULT_KEYS
from vireid_bench.protocol import PROTOCOL_VERSION
from vireid_bench.results.run_fields import RUN_FIELDS, run_columns

FORMATS = ("table", "markdown", "csv", "json")
_SHORT = {"infrared": "I", "visible": "V", "mixed": "V+I"}
_HEADERS = {
    "rank1": "R1",
    "rank5": "R5",
    "rank10": "R10",
    "rank20": "R20",
    "mAP": "mAP",
    "mINP": "mINP",
}


def _number(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return "n/a"
    return f"{value:.2f}"


def _cell(row: dict[str, object], metric: str, with_std: bool) -> str:
    if metric in (row.get(ABSENT_KEY) or ()):
        return "absent"
    text = _number(row[metric])
    if with_std and text != "n/a":
        std = row.get(f"{metric}_std")
        text += f" ± {_number(0.0 if std is None else std)}"
    return text


def _shows_std(rows: Sequence[dict[str, object]]) -> bool:
    """Whether a table shows ``± std``: when any scored row averages several trials."""
    return any(
        row["status"] == "ok" and isinstance(row.get("trials"), int) and int(row["trials"]) > 1
        for row in rows
    )


def _setting(row: dict[str, object]) -> str:
    protocol = str(row["protocol"])
    variant = str(row.get("variant") or "")
    return f"{protocol} ({variant})" if variant else protocol


def _display_rows(rows: Sequence[dict[str, object]]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells; a ``note`` column appears when some setting was skipped or a row
    has notes (absent metrics, what its queries are: :mod:`~vireid_bench.engine.row_notes`)."""
    notes = any(row["status"] != "ok" or note_text(row) for row in rows)
    with_std = _shows_std(rows)
    headers = ["setting", "query→gallery", *(_HEADERS[m] for m in METRICS), "queries", "no match"]
    if notes:
        headers.append("note")
    body = []
    for row in rows:
        direction = f"{_SHORT[str(row['query_modality'])]}→{_SHORT[str(row['gallery_modality'])]}"
        if row["status"] != "ok":
            cells = [_setting(row), direction, *(["-"] * len(METRICS)), "", ""]
        else:
            cells = [
                _setting(row),
                direction,
                *(_cell(row, m, with_std) for m in METRICS),
                str(row["queries"]),
                str(row["queries_without_match"]),
            ]
        if notes:
            cells.append(note_text(row) if row["status"] == "ok" else str(row["status"]))
        body.append(cells)
    return headers, body


def _title(rows: Sequence[dict[str, object]]) -> str:
    if not rows:
        return "no results"
    first = rows[0]
    scored = [r for r in rows if r["status"] == "ok"]
    trials = max((int(r["trials"]) for r in scored), default=0)
    cmc = sorted({str(r["cmc"]) for r in scored})
    return (
        f"{first['dump']} | dataset {first['dataset']} | model {first['model']} | "
        f"features {first['features']} | {first['distance']} distance | "
        f"CMC by {'/'.join(cmc) or '-'} | trials {trials}"
    )


def _tabulate(headers: list[str], body: list[list[str]], tablefmt: str) -> str:
    """Text cells as they are (no re-parsing of "100.00" into 100); numbers right-aligned."""
    from tabulate import tabulate

    align = ["left", "left", *(["right"] * (len(METRICS) + 2)), "left"][: len(headers)]
    return tabulate(
        body, headers=headers, tablefmt=tablefmt, disable_numparse=True, colalign=align
    )


def render_table(rows: Sequence[dict[str, object]]) -> str:
    """Return a readable plain-text table with a one-line title per dump."""
    parts = []
    for group in _by_dump(rows):
        headers, body = _display_rows(group)
        parts.append(_title(group) + "\n" + _tabulate(headers, body, "simple"))
    return "\n\n".join(parts) + "\n"


def render_markdown(rows: Sequence[dict[str, object]]) -> str:
    """Return GitHub-flavoured Markdown: a title line and a pipe table per dump."""
    parts = []
    for group in _by_dump(rows):
        headers, body = _display_rows(group)
        parts.append(f"**{_title(group)}**\n\n" + _tabulate(headers, body, "github"))
    return "\n\n".join(parts) + "\n"


def _json_value(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _note_value(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _csv_note(value: object) -> object:
    """A note or run field as a CSV cell: empty when absent, a list joined with ``;``."""
    if value is None:
        return ""
    return ";".join(map(str, value)) if isinstance(value, list | tuple) else value


def render_json(rows: Sequence[dict[str, object]], version: str) -> str:
    """Return exactly one JSON object: ``{"vireid_bench_version": ..., "protocol_version": ...,
    "results": [...]}`` (``protocol_version``: the protocol the toolkit scored with).

    NaN (a skipped setting's metrics) becomes ``null``. A row carrying ``dump_sha256`` (the
    ``score`` command adds the dump file's SHA-256) keeps it, after the result keys, and
    so do the dump's run metadata (:data:`~vireid_bench.results.run_fields.RUN_FIELDS`:
    ``seed``, ``run``, ``selection``, ``trained_on``, ``synthetic``) that it carries.
    A row's notes (:data:`~vireid_bench.engine.row_notes.NOTE_KEYS`: ``direction``,
    ``absent_metrics``, a list) follow the result keys when it has them.
    """
    results = [
        {key: _json_value(row[key]) for key in RESULT_KEYS}
        | {key: _note_value(row[key]) for key in NOTE_KEYS if row.get(key)}
        | ({"dump_sha256": row["dump_sha256"]} if "dump_sha256" in row else {})
        | {key: row[key] for key in RUN_FIELDS if row.get(key) is not None}
        for row in rows
    ]
    payload = {
        "vireid_bench_version": version,
        "protocol_version": PROTOCOL_VERSION,
        "results": results,
    }
    return json.dumps(payload, indent=2) + "\n"


def render_csv(rows: Sequence[dict[str, object]]) -> str:
    """Return CSV with the JSON keys as columns (unrounded values, empty for NaN).

    Run-metadata columns (``seed``, ``run``, ``selection``, ``trained_on``, ``synthetic``)
    follow when any row carries the field; empty for rows that do not. So do the note
    columns ``direction`` and ``absent_metrics`` (metric names joined with ``;``), first.
    """
    buffer = io.StringIO()
    extra = [key for key in NOTE_KEYS if any(row.get(key) for row in rows)] + run_columns(rows)
    writer = csv.DictWriter(buffer, fieldnames=[*RESULT_KEYS, *extra], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {key: "" if _json_value(row[key]) is None else row[key] for key in RESULT_KEYS}
            | {key: _csv_note(row.get(key)) for key in extra}
        )
    return buffer.getvalue()


def render(rows: Sequence[dict[str, object]], fmt: str, version: str) -> str:
    """Render rows in one of :data:`FORMATS`."""
    if fmt == "table":
        return render_table(rows)
    if fmt == "markdown":
        return render_markdown(rows)
    if fmt == "csv":
        return render_csv(rows)
    if fmt == "json":
        return render_json(rows, version)
    raise ValueError(f"unknown format {fmt!r} (valid: {', '.join(FORMATS)})")


def _by_dump(rows: Sequence[dict[str, object]]) -> list[list[dict[str, object]]]:
    groups: dict[tuple[object, object], list[dict[str, object]]] = {}
    for row in rows:
        groups.setdefault((row["dump"], row["features"]), []).append(row)
    return list(groups.values())
