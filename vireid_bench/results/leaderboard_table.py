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
import re
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
from vireid_bench.results.runs import RunInterval, run_interval

SYNTHETIC_TITLE = "Synthetic data (not comparable with the real-data rows above)"
RERANKED_MARK = "(re-ranked)"
TEST_SELECTION_MARK = "†"

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
        synthetic: scored from synthetic data (the dump's ``synthetic`` attribute, or the
            word in its model name or description); such rows get a table of their own.
        reranked: scored with re-ranking (a result's ``distance`` names it; a reported
            model named ``...+KR`` / ``+AIM``); compared only with re-ranked rows.
        selection: how the checkpoint was chosen (``test``, ``val``, ``last``; ``""``:
            unsaid); ``test`` rows get a footnote.
        seed, run: the training run (dump attributes); results of one row and column with
            different runs are kept as runs, shown as mean ± CI, not replaced.
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
    synthetic: bool = False
    reranked: bool = False
    selection: str = ""
    seed: int | None = None
    run: str = ""

    @property
    def row_key(self) -> tuple[str, str, str, str, bool]:
        """The leaderboard row: ``(dataset, model, source, protocol_version, reranked)``."""
        return (self.dataset, self.model, self.source, self.protocol_version, self.reranked)

    @property
    def run_id(self) -> tuple[int | None, str] | None:
        """``(seed, run)`` when the result names its training run, else None."""
        if self.seed is None and not self.run:
            return None
        return (self.seed, self.run)

    def value(self, metric: str) -> float:
        """The metric in percent, NaN when missing."""
        value = self.values.get(metric)
        return float("nan") if value is None else float(value)


RERANKED_MODEL = re.compile(r"\+\s*(KR|AIM|RR|k-?reciprocal|re-?rank\w*)\b", re.IGNORECASE)
"""A reported model name that says it is re-ranked (``MixER+KR``, ``SAAI+AIM``)."""


def reported_reranked(model: str) -> bool:
    """Whether a reported model's name marks re-ranking (:data:`RERANKED_MODEL`)."""
    return RERANKED_MODEL.search(model) is not None


def _mean_result(runs: Sequence[Result]) -> Result:
    """One cell standing for several runs: the mean of each metric over the runs."""
    first = runs[0]
    values = {}
    for metric in {m for r in runs for m in r.values}:
        numbers = [r.value(metric) for r in runs if not math.isnan(r.value(metric))]
        if numbers:
            values[metric] = sum(numbers) / len(numbers)
    return Result(
        dataset=first.dataset,
        model=first.model,
        source=first.source,
        version=first.version,
        column=first.column,
        values=values,
        origin=first.origin,
        trials=first.trials,
        protocol_version=first.protocol_version,
        synthetic=any(r.synthetic for r in runs),
        reranked=first.reranked,
    )


@dataclass
class Entry:
    """One leaderboard row: a model's results on a dataset from one source and protocol
    version (re-ranked results of a model get a row of their own).

    ``runs`` holds, per column, the results of each training run (``Result.run_id``) when
    there are such; the column's cell is then their mean."""

    dataset: str
    model: str
    source: str
    protocol_version: str
    cells: dict[Column, Result] = field(default_factory=dict)
    reranked: bool = False
    runs: dict[Column, dict[tuple, Result]] = field(default_factory=dict)

    def value(self, column: Column, metric: str) -> float:
        """The metric in ``column`` in percent (mean over runs), NaN when missing."""
        cell = self.cells.get(column)
        return float("nan") if cell is None else cell.value(metric)

    def results(self) -> list[Result]:
        """Every result behind the row (each run's, not their means)."""
        found = []
        for column, cell in self.cells.items():
            found.extend(self.runs[column].values() if self.runs.get(column) else [cell])
        return found

    def n_runs(self, column: Column) -> int:
        """Runs behind the cell (1 for a single result, 0 when missing)."""
        if self.runs.get(column):
            return len(self.runs[column])
        return 1 if column in self.cells else 0

    @property
    def run_counts(self) -> list[int]:
        """The distinct numbers of runs behind the row's cells."""
        return sorted({self.n_runs(c) for c in self.cells})

    @property
    def multi_run(self) -> bool:
        """Whether any cell is the mean of several runs."""
        return any(n > 1 for n in self.run_counts)

    def interval(self, column: Column, metric: str, confidence: float = 0.95) -> RunInterval | None:
        """The confidence interval of the mean over runs (None: fewer than 2 runs)."""
        runs = self.runs.get(column) or {}
        values = [r.value(metric) for r in runs.values()]
        values = [v for v in values if not math.isnan(v)]
        if len(values) < 2:
            return None
        return run_interval(values, confidence)

    @property
    def synthetic(self) -> bool:
        """Whether the row was scored from synthetic data."""
        return any(r.synthetic for r in self.results())

    @property
    def selections(self) -> list[str]:
        """How the row's checkpoints were chosen (``test``, ``val``, ``last``)."""
        return self._distinct("selection")

    def _distinct(self, attribute: str) -> list[str]:
        values = (str(getattr(cell, attribute)) for cell in self.results())
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
        return sorted({c.trials for c in self.results() if c.trials})


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
        self._entries: dict[tuple[str, str, str, str, bool], Entry] = {}

    def add(self, results: Iterable[Result]) -> list[str]:
        """Merge results; return one notice per (row, old origin, new origin) replaced.

        Each notice names the row, how many results were replaced, from where by what, and
        the largest change of any metric (or that the values are unchanged). A result that
        names its training run (``seed``/``run``) joins the other runs of its row and
        column (the cell shows their mean) and replaces only the same run.
        """
        replaced: dict[tuple, list[tuple[Result, Result]]] = {}
        for result in results:
            entry = self._entries.get(result.row_key)
            if entry is None:
                entry = Entry(
                    result.dataset,
                    result.model,
                    result.source,
                    result.protocol_version,
                    reranked=result.reranked,
                )
                self._entries[result.row_key] = entry
            runs = entry.runs.get(result.column) or {}
            run_id = result.run_id
            if run_id is not None:
                old = runs.get(run_id)
                if old is None and not runs:
                    old = entry.cells.get(result.column)  # a result that named no run
                    runs = {}
            else:
                old = entry.cells.get(result.column)
                runs = {}
            if old is not None:
                key = (result.row_key, _provenance(old), _provenance(result))
                replaced.setdefault(key, []).append((old, result))
            if run_id is None:
                entry.runs.pop(result.column, None)
                entry.cells[result.column] = result
            else:
                runs[run_id] = result
                entry.runs[result.column] = runs
                entry.cells[result.column] = (
                    result if len(runs) == 1 else _mean_result(list(runs.values()))
                )
        return [_replacement_notice(key, pairs) for key, pairs in replaced.items()]

    def datasets(self) -> list[str]:
        """The datasets with at least one row, sorted."""
        return sorted({key[0] for key in self._entries})

    def entries(self, dataset: str) -> list[Entry]:
        """The rows of one dataset, in insertion order."""
        return [e for key, e in self._entries.items() if key[0] == dataset]


def _replacement_notice(key: tuple, pairs: list[tuple[Result, Result]]) -> str:
    (dataset, model, source, protocol_version, reranked), old_from, new_from = key
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
    row = f"{model!r} ({source}{', protocol ' + protocol_version if protocol_version else ''}"
    row += ", re-ranked)" if reranked else ")"
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

    def best(
        self,
        column: Column,
        metric: str,
        decimals: int = 2,
        entries: Sequence[Entry] | None = None,
    ) -> float | None:
        """The best (highest) value of a column among ``entries`` (default: every row),
        rounded to ``decimals``; None when empty."""
        chosen = self.entries if entries is None else entries
        values = [e.value(column, metric) for e in chosen]
        values = [round(v, decimals) for v in values if not math.isnan(v)]
        return max(values) if values else None

    def sections(self) -> list[tuple[str, list[Entry]]]:
        """The tables to print, in order: real-data rows, then synthetic-data rows (a
        section is left out when empty). Each has its own best values."""
        real = [e for e in self.entries if not e.synthetic]
        synthetic = [e for e in self.entries if e.synthetic]
        sections = [("", real)] if real else []
        if synthetic:
            sections.append((SYNTHETIC_TITLE, synthetic))
        return sections

    def best_values(self, metrics: Sequence[str]) -> dict[tuple, float | None]:
        """The bold threshold per ``(synthetic, reranked, column, metric)``: the best value
        among the rows of that section and re-ranking (:meth:`peers`)."""
        best: dict[tuple, float | None] = {}
        for synthetic, reranked in {(e.synthetic, e.reranked) for e in self.entries}:
            peers = [e for e in self.entries if (e.synthetic, e.reranked) == (synthetic, reranked)]
            for column in self.columns:
                for metric in metrics:
                    key = (synthetic, reranked, column, metric)
                    best[key] = self.best(column, metric, entries=peers)
        return best

    def footnotes(self) -> list[str]:
        """Marks used in the table and what they mean (only those used)."""
        notes = []
        if any(e.reranked for e in self.entries):
            notes.append(
                f"{RERANKED_MARK}: re-ranked at test time (k-reciprocal, AIM...); bold only "
                "against other re-ranked rows"
            )
        if any("test" in e.selections for e in self.entries):
            notes.append(
                f"{TEST_SELECTION_MARK}: checkpoint chosen on the test set (selection = test): "
                "the number is optimistic"
            )
        if any(e.multi_run for e in self.entries):
            notes.append(
                "mean ± half-width of the 95% confidence interval over training runs "
                "(Student-t below 10 runs, bootstrap from 10); (n runs) after the model"
            )
        return notes

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
            Entry(
                entry.dataset,
                entry.model,
                entry.source,
                entry.protocol_version,
                cells,
                reranked=entry.reranked,
            )
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
