"""Leaderboard renderers: CSV (unrounded), Markdown and a static sortable HTML page.

Number formatting, one rule per format: the CSV carries every value unrounded (``repr`` of
the float, empty when missing); Markdown and HTML print R1 and mAP with exactly two
decimals (``100.00``, never ``100``), ``-`` when missing, the best value of each column in
bold (every value tied with it at two decimals too). Leaderboard cells are means over
trials; the standard deviation is not shown (it is in the score result files).
"""

from __future__ import annotations

import csv
import html
import io
import math
import re

from vireid_bench.results.keys import (
    CSV_FIXED_FIELDS,
    CSV_METRICS,
    CSV_ROW_FIELDS,
    MARKDOWN_METRICS,
    METRIC_LABELS,
    Column,
)
from vireid_bench.results.leaderboard_table import (
    RERANKED_MARK,
    TEST_SELECTION_MARK,
    Entry,
    LeaderboardTable,
    short_sha,
)


def _csv_value(value: float) -> object:
    return "" if math.isnan(value) else value


def render_csv(table: LeaderboardTable) -> str:
    """Return the CSV: fixed fields, then ``<column key>.<metric>`` for R1, mAP and mINP.

    Values are unrounded percentages, empty when missing; the file reads back with
    :func:`results_from_leaderboard_csv`.
    """
    buffer = io.StringIO()
    fields = [*CSV_FIXED_FIELDS, *CSV_ROW_FIELDS]
    fields += [f"{c.key}.{m}" for c in table.columns for m in CSV_METRICS]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for entry in (e for _, entries in table.sections() for e in entries):
        row: dict[str, object] = {
            "dataset": entry.dataset,
            "model": entry.model,
            "source": entry.source,
            "venue": entry.venue,
            "protocol_version": entry.protocol_version,
            "vireid_bench_version": ";".join(entry.versions),
            "trials": "/".join(map(str, entry.trials)),
            "sha256": ";".join(entry.sha256s),
            "origin": ";".join(entry.origins),
            "citation": entry.citation,
            "data": "synthetic" if entry.synthetic else "real",
            "reranked": "yes" if entry.reranked else "",
            "selection": ";".join(entry.selections),
            "runs": "/".join(map(str, entry.run_counts)) if entry.source == "measured" else "",
        }
        for column in table.columns:
            for metric in CSV_METRICS:
                row[f"{column.key}.{metric}"] = _csv_value(entry.value(column, metric))
        writer.writerow(row)
    return buffer.getvalue()


def _source_cell(entry: Entry) -> str:
    if entry.source == "measured":
        shas = ", ".join(short_sha(s) for s in entry.sha256s)
        return f"measured (sha256 {shas})" if shas else "measured"
    return f"reported ({', '.join(entry.origins)})"


def _model_cell(entry: Entry, table: LeaderboardTable) -> str:
    protocols = {
        e.protocol_version
        for e in table.entries
        if (e.model, e.source, e.reranked) == (entry.model, entry.source, entry.reranked)
    }
    text = entry.model
    if len(protocols) > 1:
        text = f"{entry.model} (protocol {entry.protocol_version or 'unknown'})"
    if entry.reranked:
        text += f" {RERANKED_MARK}"
    if entry.multi_run:
        text += f" ({'/'.join(map(str, entry.run_counts))} runs)"
    if "test" in entry.selections:
        text += f" {TEST_SELECTION_MARK}"
    return text


def _format(value: float, best: float | None, bold: tuple[str, str], spread: str = "") -> str:
    if math.isnan(value):
        return "-"
    text = f"{value:.2f}"
    if best is not None and round(value, 2) == best:
        text = f"{bold[0]}{text}{bold[1]}"
    return text + spread


def _spread(entry: Entry, column: Column, metric: str) -> str:
    """`` ± h`` (half-width of the CI over runs) for a cell that is the mean of runs."""
    interval = entry.interval(column, metric)
    if interval is None or math.isnan(interval.low):
        return ""
    return f" ± {(interval.high - interval.low) / 2:.2f}"


def _cells(entry, table, best, bold) -> list[tuple[float, str]]:
    """Each R1/mAP cell of a row: (value, text with bold and spread)."""
    key = (entry.synthetic, entry.reranked)
    return [
        (
            entry.value(c, m),
            _format(entry.value(c, m), best[(*key, c, m)], bold, _spread(entry, c, m)),
        )
        for c in table.columns
        for m in MARKDOWN_METRICS
    ]


def _markdown_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def render_markdown(table: LeaderboardTable) -> str:
    """Return a title, the header lines and a GitHub pipe table (R1 and mAP, 2 decimals).

    The best value of each column is bold; every value tied with it at two decimals is bold
    too. Missing values show ``-``, as in the paper.
    """
    from tabulate import tabulate

    labels = table.labels()
    headers = ["Model", "Venue", "Source"] + [
        f"{labels[c]} {METRIC_LABELS[m]}" for c in table.columns for m in MARKDOWN_METRICS
    ]
    best = table.best_values(MARKDOWN_METRICS)
    lines = [f"# vireid-bench leaderboard: {table.dataset}", ""]
    lines += [f"- {line}" for line in table.header_lines()]
    lines.append(
        "- R1 and mAP in percent; best value per column in bold (ties all bold), among the "
        "rows of the same table and re-ranking"
    )
    lines.append("")
    sections = table.sections()
    for title, entries in sections:
        body = []
        for entry in entries:
            row = [_model_cell(entry, table), entry.venue, _source_cell(entry)]
            row += [text for _, text in _cells(entry, table, best, ("**", "**"))]
            body.append([_markdown_escape(cell) for cell in row])
        if title:
            lines += [f"## {title}", ""]
        lines.append(
            tabulate(
                body,
                headers=[_markdown_escape(h) for h in headers],
                tablefmt="github",
                disable_numparse=True,
            )
        )
        lines.append("")
    if not sections:
        lines += ["No results.", ""]
    lines += [f"- {note}" for note in table.footnotes()]
    return "\n".join(lines).rstrip("\n") + "\n"


_HTML_SCRIPT = """
document.querySelectorAll("table.leaderboard th[data-col]").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var col = Number(th.dataset.col), asc = th.dataset.order !== "asc";
    table.querySelectorAll("th[data-col]").forEach(function (o) { delete o.dataset.order; });
    th.dataset.order = asc ? "asc" : "desc";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
      if (x === undefined) { x = a.cells[col].textContent; y = b.cells[col].textContent;
        return asc ? x.localeCompare(y) : y.localeCompare(x); }
      x = x === "" ? NaN : Number(x); y = y === "" ? NaN : Number(y);
      if (isNaN(x)) { return isNaN(y) ? 0 : 1; } if (isNaN(y)) { return -1; }
      return asc ? x - y : y - x;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

_HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; }
table.leaderboard { border-collapse: collapse; font-size: 0.9em; }
table.leaderboard th, table.leaderboard td { border: 1px solid #ccc; padding: 0.25em 0.5em; }
table.leaderboard td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.leaderboard th[data-col] { cursor: pointer; background: #f4f4f4; }
table.leaderboard th[data-order="asc"]::after { content: " \\25B2"; }
table.leaderboard th[data-order="desc"]::after { content: " \\25BC"; }
tr.reported td { color: #555; }
"""


def render_html(table: LeaderboardTable) -> str:
    """Return a static HTML page; clicking a column header sorts the rows (no server)."""
    esc = html.escape
    labels = table.labels()
    fixed = ["Model", "Venue", "Source"]
    group_row = [f'<th colspan="{len(fixed)}"></th>']
    family_spans: list[list] = []
    for column in table.columns:
        if family_spans and family_spans[-1][0] == column.family:
            family_spans[-1][1] += len(MARKDOWN_METRICS)
        else:
            family_spans.append([column.family, len(MARKDOWN_METRICS)])
    group_row += [f'<th colspan="{span}">{esc(name)}</th>' for name, span in family_spans]
    setting_row = [f'<th colspan="{len(fixed)}"></th>'] + [
        f'<th colspan="{len(MARKDOWN_METRICS)}">{esc(labels[c])}</th>' for c in table.columns
    ]
    metric_row = [f'<th data-col="{i}">{esc(name)}</th>' for i, name in enumerate(fixed)]
    index = len(fixed)
    for _ in table.columns:
        for metric in MARKDOWN_METRICS:
            metric_row.append(f'<th data-col="{index}">{METRIC_LABELS[metric]}</th>')
            index += 1
    best = table.best_values(MARKDOWN_METRICS)
    head = (
        '<table class="leaderboard">\n<thead>\n'
        f"<tr>{''.join(group_row)}</tr>\n<tr>{''.join(setting_row)}</tr>\n"
        f"<tr>{''.join(metric_row)}</tr>\n</thead>\n<tbody>\n"
    )
    tables = []
    for section, entries in table.sections():
        body = []
        for entry in entries:
            cells = [
                f"<td>{esc(_model_cell(entry, table))}</td>",
                f"<td>{esc(entry.venue)}</td>",
                f'<td title="{esc(entry.citation or "; ".join(entry.sha256s))}">'
                f"{esc(_source_cell(entry))}</td>",
            ]
            for value, text in _cells(entry, table, best, ("<strong>", "</strong>")):
                data = "" if math.isnan(value) else repr(value)
                cells.append(f'<td class="num" data-value="{data}">{text}</td>')
            body.append(f'<tr class="{entry.source}">' + "".join(cells) + "</tr>")
        heading = f"<h2>{esc(section)}</h2>\n" if section else ""
        tables.append(heading + head + "\n".join(body) + "\n</tbody>\n</table>\n")
    items = "".join(f"<li>{esc(line)}</li>" for line in table.header_lines())
    notes = "".join(f"<li>{esc(note)}</li>" for note in table.footnotes())
    title = f"vireid-bench leaderboard: {table.dataset}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{_HTML_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n<ul>{items}<li>R1 and mAP in percent; best value per column "
        "in bold, among the rows of the same table and re-ranking; click a column header to "
        "sort.</li></ul>\n"
        + "".join(tables)
        + (f'<ul class="notes">{notes}</ul>\n' if notes else "")
        + f"<script>{_HTML_SCRIPT}</script>\n</body>\n</html>\n"
    )


RENDERERS = {"csv": render_csv, "md": render_markdown, "html": render_html}


def output_name(dataset: str) -> str:
    """A file-name-safe form of a dataset name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", dataset) or "unnamed"
