"""Leaderboard rows and tables: merging results, sorting, the best value per column.

:class:`Result` is one model's metrics in one column; :class:`Leaderboard` merges results
into rows keyed ``(dataset, model, source, protocol version)`` (a later result for the same
row and column replaces the earlier one, and says so); :func:`build_table` selects, orders
and sorts one dataset's rows and columns into a :class:`LeaderboardTable`, which knows the
best (bold) value of each column and the header lines every renderer prints.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vireid_bench.protocol import PROTOCOL_VERSION
from vireid_bench.protocol.presets import builtin_presets
from vireid_bench.results.keys import (
    CSV_METRICS,
    FAMILIES,
    OTHER_FAMILY,
    QUERY_MODALITY_CHOICES,
    Column,
    LeaderboardError,
    UnknownColumnError,
    parse_column_key,
    parse_metric,
)

PROTOCOL_SPEC = "docs/protocols.md"
"""Where the settings are specified; every generated leaderboard cites it."""


def resolve_sort_key(spec: str, columns: Sequence[Column]) -> tuple[Column, str]:
    """Resolve ``SETTING[:VARIANT][@QUERY].METRIC`` against the table's columns.

    Parts left out match any value, as long as exactly one column matches: ``mix-id.mAP``
    names ``mix-id@infrared`` when that is the only Mix-ID column.

    Raises:
        LeaderboardError: when no column or several columns match, listing the candidates.
    """
    setting, dot, metric_text = spec.rpartition(".")
    if not dot or not setting:
        raise LeaderboardError(
            f"sort key {spec!r}: expected SETTING[:VARIANT][@QUERY].METRIC, e.g. mix-id.mAP"
        )
    metric = parse_metric(metric_text)
    protocol, variant, modality = parse_column_key(setting)
    matches = [
        c
        for c in columns
        if c.protocol == protocol
        and (variant is None or c.variant == variant)
        and (modality is None or c.query_modality == modality)
    ]
    if len(matches) == 1:
        return matches[0], metric
    available = ", ".join(c.key for c in columns) or "none"
    if not matches:
        raise UnknownColumnError(f"sort key {spec!r}: no such column (columns: {available})")
    raise LeaderboardError(
        f"sort key {spec!r} is ambiguous: {', '.join(c.key for c in matches)}; "
        "add :VARIANT or @QUERY"
    )


@dataclass(frozen=True)
class Result:
    """One model's metrics in one column of one dataset's leaderboard.

    Attributes:
        dataset, model: what was evaluated.
        source: ``"measured"`` or ``"reported"``.
        version: vireid-bench version that scored it (``""`` for reported results).
        protocol_version: the protocol version it was scored under (``""``: reported, or
            a result file that does not say).
        column: the setting, variant and query modality.
        values: metric name -> percent; a metric absent or NaN is shown as missing.
        origin: where it came from (a file name, or the paper table).
        sha256: SHA-256 of the feature dump it was scored from, when known.
        trials: trials averaged (0 when unknown, e.g. reported).
        venue, citation: for reported results.
    """

    dataset: str
    model: str
    source: str
    version: str
    column: Column
    values: Mapping[str, float]
    origin: str
    sha256: str = ""
    trials: int = 0
    venue: str = ""
    citation: str = ""
    protocol_version: str = ""

    @property
    def row_key(self) -> tuple[str, str, str, str]:
        """The leaderboard row: ``(dataset, model, source, protocol_version)``."""
        return (self.dataset, self.model, self.source, self.protocol_version)

    def value(self, metric: str) -> float:
        """The metric in percent, NaN when missing."""
        value = self.values.get(metric)
        return float("nan") if value is None else float(value)


@dataclass
class Entry:
    """One leaderboard row: a model's results on a dataset from one source and protocol
    version."""

    dataset: str
    model: str
    source: str
    protocol_version: str
    cells: dict[Column, Result] = field(default_factory=dict)

    def value(self, column: Column, metric: str) -> float:
        """The metric in ``column`` in percent, NaN when missing."""
        cell = self.cells.get(column)
        return float("nan") if cell is None else cell.value(metric)

    def _distinct(self, attribute: str) -> list[str]:
        values = (str(getattr(cell, attribute)) for cell in self.cells.values())
        return sorted({v for v in values if v})

    @property
    def venue(self) -> str:
        """The venue (reported rows), or ``""``."""
        return "; ".join(self._distinct("venue"))

    @property
    def citation(self) -> str:
        """Where reported numbers were published, ``;``-separated."""
        return "; ".join(self._distinct("citation"))

    @property
    def origins(self) -> list[str]:
        """The files (or tables) the row's results came from."""
        return self._distinct("origin")

    @property
    def sha256s(self) -> list[str]:
        """The SHA-256 of every dump the row's results were scored from."""
        return self._distinct("sha256")

    @property
    def versions(self) -> list[str]:
        """The vireid-bench versions that scored the row's results."""
        return self._distinct("version")

    @property
    def trials(self) -> list[int]:
        """The distinct trial counts of the row's results (reported rows: empty)."""
        return sorted({c.trials for c in self.cells.values() if c.trials})


# --------------------------------------------------------------------------- merging


def short_sha(sha: str) -> str:
    """The first 12 hex digits of a SHA-256, as tables show it."""
    return sha[:12]


def _provenance(result: Result) -> str:
    details = [f"sha256 {short_sha(result.sha256)}"] if result.sha256 else []
    if result.version:
        details.append(f"vireid-bench {result.version}")
    return f"{result.origin} ({', '.join(details)})" if details else result.origin


class Leaderboard:
    """Results merged into rows; a later result for the same row and column replaces."""
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str, str], Entry] = {}

    def add(self, results: Iterable[Result]) -> list[str]:
        """Merge results; return one notice per (row, old origin, new origin) replaced.

        Each notice names the row, how many results were replaced, from where by what, and
        the largest change of any metric (or that the values are unchanged).
        """
        replaced: dict[tuple, list[tuple[Result, Result]]] = {}
        for result in results:
            entry = self._entries.get(result.row_key)
            if entry is None:
                entry = Entry(result.dataset, result.model, result.source, result.protocol_version)
                self._entries[result.row_key] = entry
            old = entry.cells.get(result.column)
            if old is not None:
                key = (result.row_key, _provenance(old), _provenance(result))
                replaced.setdefault(key, []).append((old, result))
            entry.cells[result.column] = result
        return [_replacement_notice(key, pairs) for key, pairs in replaced.items()]

    def datasets(self) -> list[str]:
        """The datasets with at least one row, sorted."""
        return sorted({key[0] for key in self._entries})

    def entries(self, dataset: str) -> list[Entry]:
        """The rows of one dataset, in insertion order."""
        return [e for key, e in self._entries.items() if key[0] == dataset]


def _replacement_notice(key: tuple, pairs: list[tuple[Result, Result]]) -> str:
    (dataset, model, source, protocol_version), old_from, new_from = key
    largest: tuple[float, str] | None = None
    for old, new in pairs:
        for metric in CSV_METRICS:
            a, b = old.value(metric), new.value(metric)
            if math.isnan(a) and math.isnan(b):
                continue
            delta = abs(b - a) if not (math.isnan(a) or math.isnan(b)) else math.inf
            if delta > 0 and (largest is None or delta > largest[0]):
                largest = (delta, f"{new.column.key}.{metric} {a:.2f} -> {b:.2f}")
    change = "values unchanged" if largest is None else f"largest change {largest[1]}"
    row = f"{model!r} ({source}{', protocol ' + protocol_version if protocol_version else ''})"
    return (
        f"replaced: {dataset}: {row}: {len(pairs)} result(s) from {old_from} "
        f"by {new_from}; {change}"
    )


# --------------------------------------------------------------------------- tables


def current_protocol_version() -> str:
    """The protocol version this toolkit scores under.

    ``vireid_bench.protocol.PROTOCOL_VERSION`` (the version ``score --format json`` and
    dumps record, so a result file and a dump scored here share a row) when the toolkit
    defines it; otherwise ``presets-<fingerprint>`` (:func:`protocol_fingerprint`).
    """

    return str(PROTOCOL_VERSION) if PROTOCOL_VERSION else f"presets-{protocol_fingerprint()}"


def protocol_fingerprint() -> str:
    """Return a short hash of the built-in presets' definitions.

    Stands in for the protocol version when the toolkit declares none.

    It changes whenever a preset's exclusion clauses, query modalities, gallery modality,
    CMC convention or camera options change, so two leaderboards with the same fingerprint
    were built on the same setting definitions.
    """

    described = [
        [
            p.name,
            [c.codes() for c in p.clauses],
            list(p.query_modalities),
            p.gallery_modality,
            p.cmc,
            p.colocated_cameras,
            p.requires_multiple_cameras_per_modality,
        ]
        for p in builtin_presets().values()
    ]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:12]


@dataclass
class LeaderboardTable:
    """One dataset's leaderboard, ready to render.

    Attributes:
        dataset: the dataset.
        columns: the columns in display order.
        entries: the rows, sorted.
        sort: the (column, metric) rows are sorted by (descending), or None.
        query_modality: the query-modality selection (:data:`QUERY_MODALITY_CHOICES`).
        toolkit_version: the vireid-bench version that built the table.
        protocol_version: :func:`current_protocol_version` of that toolkit.
    """

    dataset: str
    columns: list[Column]
    entries: list[Entry]
    sort: tuple[Column, str] | None
    query_modality: str
    toolkit_version: str
    protocol_version: str

    def labels(self) -> dict[Column, str]:
        """Display label per column: the variant is shown where a setting has several in
        the table (``Cross all``, ``Cross indoor``), the direction where a setting and
        variant has both query modalities (``Cross all V→I``)."""
        variants: dict[str, set[str]] = {}
        modalities: dict[tuple[str, str], set[str]] = {}
        for c in self.columns:
            variants.setdefault(c.protocol, set()).add(c.variant)
            modalities.setdefault((c.protocol, c.variant), set()).add(c.query_modality)
        return {
            c: c.label(len(variants[c.protocol]) > 1, len(modalities[(c.protocol, c.variant)]) > 1)
            for c in self.columns
        }

    def best(self, column: Column, metric: str, decimals: int = 2) -> float | None:
        """The best (highest) value of a column rounded to ``decimals``, None when empty."""
        values = [e.value(column, metric) for e in self.entries]
        values = [round(v, decimals) for v in values if not math.isnan(v)]
        return max(values) if values else None

    def header_lines(self) -> list[str]:
        """What the table shows: protocol version, query modality, trials, toolkit version."""
        measured = [e for e in self.entries if e.source == "measured"]
        versions = sorted({v for e in measured for v in e.versions})
        protocols = sorted({e.protocol_version or "unknown" for e in measured})
        trials = sorted({t for e in measured for t in e.trials})
        if self.query_modality == "paper":
            modality = (
                "infrared queries in the mixed-modal settings; both directions in the cross- "
                "and uni-modal settings (the layout of the paper's Tables 1 and 2)"
            )
        elif self.query_modality == "both":
            modality = "infrared and visible queries"
        else:
            modality = f"{self.query_modality} queries only"
        groups = []
        labels = self.labels()
        for family in [name for name, _ in FAMILIES] + [OTHER_FAMILY]:
            names = [labels[c] for c in self.columns if c.family == family]
            if names:
                groups.append(f"{family}: {', '.join(names)}")
        sort = "model name"
        if self.sort is not None:
            sort = f"{self.sort[0].key}.{self.sort[1]} (descending)"
        scored = (
            f"; measured rows: protocol {', '.join(protocols)}, scored with vireid-bench "
            f"{', '.join(versions)}"
            if measured
            else ""
        )
        return [
            f"Protocol version: {self.protocol_version} ({PROTOCOL_SPEC}){scored}",
            f"Query modality: {modality}",
            "Trials: "
            + (
                f"measured rows are means over {'/'.join(map(str, trials))} trial(s)"
                if trials
                else "no measured row"
            )
            + "; reported rows as published",
            f"Toolkit: vireid-bench {self.toolkit_version}; rows sorted by {sort}",
            "Columns: " + ("; ".join(groups) if groups else "none"),
            "Source: measured = scored by vireid-bench from a feature dump (SHA-256 of the dump); "
            "reported = transcribed from a paper (citation in the CSV)",
        ]


def _resolve_unnamed_variants(entries: list[Entry]) -> list[Entry]:
    """Place reported cells without a variant under the only measured variant, if one.

    The paper names no variant for most settings; when the dataset's measured results have
    exactly one variant for that (setting, query modality), the reported cell joins it.
    """
    measured: dict[tuple[str, str], set[str]] = {}
    for entry in entries:
        if entry.source == "measured":
            for column in entry.cells:
                measured.setdefault((column.protocol, column.query_modality), set()).add(
                    column.variant
                )
    resolved = []
    for entry in entries:
        if entry.source == "measured":
            resolved.append(entry)
            continue
        cells = {}
        for column, cell in entry.cells.items():
            variants = measured.get((column.protocol, column.query_modality), set())
            if not column.variant and len(variants) == 1:
                column = Column(column.protocol, next(iter(variants)), column.query_modality)
            cells.setdefault(column, cell)
        resolved.append(
            Entry(entry.dataset, entry.model, entry.source, entry.protocol_version, cells)
        )
    return resolved


def _selected(column: Column, query_modality: str) -> bool:
    if query_modality == "both":
        return True
    if query_modality == "paper":
        return column.family != "Mixed-Modal" or column.query_modality == "infrared"
    return column.query_modality == query_modality


def build_table(
    board: Leaderboard,
    dataset: str,
    *,
    toolkit_version: str,
    query_modality: str = "paper",
    sort: str | None = None,
) -> LeaderboardTable:
    """Select, order and sort one dataset's rows and columns.

    Args:
        query_modality: ``paper`` (infrared queries in the mixed-modal settings, both
            directions elsewhere), ``infrared``, ``visible`` or ``both``.
        sort: ``SETTING[:VARIANT][@QUERY].METRIC`` (see :func:`resolve_sort_key`); default:
            the mAP of the first column. Rows are sorted descending, missing values last,
            ties by model name.

    Raises:
        LeaderboardError: on an unknown query-modality choice or sort key.
    """
    if query_modality not in QUERY_MODALITY_CHOICES:
        raise LeaderboardError(
            f"unknown query modality {query_modality!r} "
            f"(valid: {', '.join(QUERY_MODALITY_CHOICES)})"
        )
    entries = _resolve_unnamed_variants(board.entries(dataset))
    columns = sorted(
        {c for e in entries for c in e.cells if _selected(c, query_modality)},
        key=Column.order,
    )
    entries = [e for e in entries if any(c in e.cells for c in columns)]
    sort_key = None
    if sort is not None:
        sort_key = resolve_sort_key(sort, columns)
    elif columns:
        sort_key = (columns[0], "mAP")

    def order(entry: Entry) -> tuple:
        value = entry.value(*sort_key) if sort_key else math.nan
        missing = math.isnan(value)
        return (
            missing,
            0.0 if missing else -value,
            entry.model,
            entry.source,
            entry.protocol_version,
        )

    return LeaderboardTable(
        dataset=dataset,
        columns=columns,
        entries=sorted(entries, key=order),
        sort=sort_key,
        query_modality=query_modality,
        toolkit_version=toolkit_version,
        protocol_version=current_protocol_version(),
    )


