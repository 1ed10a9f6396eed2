"""Leaderboards: per dataset, one row per model and one column group per setting.

A leaderboard is built from *results*: one model's metrics for one column of one dataset.
A column is the key ``(protocol, variant, query_modality)`` of a scoring row, written
``<protocol>[:<variant>]@<query modality>`` (``mix-id@infrared``, ``cross:indoor@infrared``).
Results come from feature dumps scored on the fly, from result files written by
``vireid-bench score --format json``, from the paper tables transcribed in
:mod:`vireid_bench.results.reported`, and (with ``--merge``) from a leaderboard CSV written earlier.

Rows are keyed ``(dataset, model, source, protocol version)``: ``source`` is ``measured``
(scored by vireid-bench under the protocol version it records) or ``reported`` (transcribed
from a paper; no protocol version). A later result for the same row and column replaces the
earlier one, whatever vireid-bench version scored it, and :meth:`Leaderboard.add` says so;
results under another protocol version get a row of their own.

Columns are grouped as the paper's Tables 1 and 2: Mixed-Modal (Mix, Mix-Cam, Mix-Cam-ID,
Mix-ID, Mix-P), Cross-Modal, Uni-Modal, then any other preset. Renderers: CSV (every column
with R1, mAP and mINP, unrounded), Markdown (R1 and mAP to two decimals, best value per column
in bold) and a static HTML page whose table sorts by a click on a column header.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vireid_bench.engine.distributed import ScoreRequest, evaluate_requests
from vireid_bench.engine.scoring import evaluate
from vireid_bench.errors import VireidBenchError
from vireid_bench.io.dump import load_dump
from vireid_bench.protocol import presets as protocol
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.conventions import split_dataset_preset
from vireid_bench.protocol.presets import builtin_presets
from vireid_bench.results.reported import load_reported

if TYPE_CHECKING:
    from vireid_bench.engine.scheduler import Scheduler
    from vireid_bench.engine.scoring import MemoryOptions

MIXED_SETTINGS = ("mix", "mix-cam", "mix-cam-id", "mix-id", "mix-p")
FAMILIES = (
    ("Mixed-Modal", MIXED_SETTINGS),
    ("Cross-Modal", ("cross",)),
    ("Uni-Modal", ("uni",)),
)
OTHER_FAMILY = "Other"
SETTING_LABELS = {
    "mix": "Mix",
    "mix-cam": "Mix-Cam",
    "mix-cam-id": "Mix-Cam-ID",
    "mix-id": "Mix-ID",
    "mix-p": "Mix-P",
    "cross": "Cross",
    "uni": "Uni",
}
CSV_METRICS = ("rank1", "mAP", "mINP")
MARKDOWN_METRICS = ("rank1", "mAP")
METRIC_LABELS = {"rank1": "R1", "mAP": "mAP", "mINP": "mINP"}
_METRIC_ALIASES = {"r1": "rank1", "rank1": "rank1", "map": "mAP", "minp": "mINP"}
_MODALITY_ALIASES = {"i": "infrared", "infrared": "infrared", "v": "visible", "visible": "visible"}
_SHORT = {"infrared": "I", "visible": "V"}
QUERY_MODALITY_CHOICES = ("paper", "infrared", "visible", "both")
SOURCES = ("measured", "reported")
CSV_FIXED_FIELDS = (
    "dataset",
    "model",
    "source",
    "venue",
    "protocol_version",
    "vireid_bench_version",
    "trials",
    "sha256",
    "origin",
    "citation",
)
_JSON_REQUIRED = ("dataset", "model", "protocol", "query_modality", "status", *CSV_METRICS)


class LeaderboardError(VireidBenchError):
    """An input to the leaderboard is unreadable or inconsistent, or a sort key is unknown."""


class UnknownColumnError(LeaderboardError):
    """A sort key names no column of the table."""


# --------------------------------------------------------------------------- columns


def setting_key(protocol: str, variant: str, query_modality: str) -> str:
    """The canonical text key of a setting: ``protocol[:variant]@query_modality``."""
    return f"{protocol}{':' + variant if variant else ''}@{query_modality}"


@dataclass(frozen=True)
class Column:
    """A leaderboard column: one setting, variant and query modality.

    Attributes:
        protocol: preset name (``"mix-id"``).
        variant: dataset variant (``"all"``, ``"indoor"``) or ``""``.
        query_modality: ``"infrared"`` or ``"visible"``.
    """

    protocol: str
    variant: str
    query_modality: str

    @property
    def family(self) -> str:
        """The column group: ``Mixed-Modal``, ``Cross-Modal``, ``Uni-Modal`` or ``Other``."""
        for name, protocols in FAMILIES:
            if self.protocol in protocols:
                return name
        return OTHER_FAMILY

    @property
    def key(self) -> str:
        """The canonical text key, e.g. ``cross:indoor@infrared``."""
        return setting_key(self.protocol, self.variant, self.query_modality)

    def order(self) -> tuple[int, int, str, str, int]:
        """Sort key: the paper's column order, unknown presets last by name."""
        for family_index, (_, protocols) in enumerate(FAMILIES):
            if self.protocol in protocols:
                position = (family_index, protocols.index(self.protocol), "")
                break
        else:
            position = (len(FAMILIES), 0, self.protocol)
        modality_rank = 0 if self.query_modality == "infrared" else 1
        return (*position, self.variant, modality_rank)

    def direction(self) -> str:
        """The query→gallery direction as the paper writes it (``I→V``, ``I→I``, ``I→V+I``)."""
        query = _SHORT.get(self.query_modality, self.query_modality)
        if self.family == "Mixed-Modal":
            return f"{query}→V+I"
        if self.protocol == "uni":
            return f"{query}→{query}"
        if self.protocol == "cross":
            return f"{query}→{'V' if query == 'I' else 'I'}"
        return query

    def label(self, with_variant: bool, with_direction: bool) -> str:
        """A short display label (``Mix-ID``, ``Cross indoor``, ``Uni V→V``)."""
        parts = [SETTING_LABELS.get(self.protocol, self.protocol)]
        if with_variant and self.variant:
            parts.append(self.variant)
        if with_direction:
            parts.append(self.direction())
        return " ".join(parts)


def base_setting(protocol: str) -> str:
    """The setting a scoring row's ``protocol`` stands for.

    Dataset protocols (``sysu-all-multi:mix-id``, or ``sysu-all-single`` for the cross
    setting) are the builtin setting sampled as the dataset says; the sampling shows in the
    row's ``variant``. A leaderboard column is the setting, so the name is mapped back.
    """

    found = split_dataset_preset(protocol)
    return protocol if found is None else found[1]


def parse_column_key(text: str) -> tuple[str, str | None, str | None]:
    """Split ``protocol[:variant][@modality]`` into its parts (None when not given).

    ``@I``/``@V`` abbreviate ``@infrared``/``@visible``.

    Raises:
        LeaderboardError: on an empty protocol or an unknown modality.
    """
    setting, _, modality = text.strip().partition("@")
    protocol, colon, variant = setting.partition(":")
    if not protocol:
        raise LeaderboardError(f"column key {text!r}: no setting")
    query_modality = None
    if modality:
        query_modality = _MODALITY_ALIASES.get(modality.lower())
        if query_modality is None:
            raise LeaderboardError(
                f"column key {text!r}: unknown query modality {modality!r} (infrared, visible)"
            )
    return protocol, (variant if colon else None), query_modality


def parse_metric(text: str) -> str:
    """Return the canonical metric name for ``R1``/``rank1``/``mAP``/``mINP`` (any case)."""
    metric = _METRIC_ALIASES.get(text.strip().lower())
    if metric is None:
        raise LeaderboardError(f"unknown metric {text!r} (valid: R1, mAP, mINP)")
    return metric


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


# --------------------------------------------------------------------------- results


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


def file_sha256(path: str | os.PathLike) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _float(value: object) -> float:
    if value is None or value == "":
        return float("nan")
    return float(value)  # type: ignore[arg-type]


def results_from_rows(
    rows: Iterable[Mapping[str, object]],
    *,
    origin: str,
    version: str,
    protocol_version: str,
    sha256: str = "",
) -> list[Result]:
    """Turn scoring rows (:data:`vireid_bench.engine.scoring.RESULT_KEYS`) into measured results.

    Rows whose ``status`` is not ``"ok"`` (skipped settings) are left out.
    """
    results = []
    for row in rows:
        if row.get("status", "ok") != "ok":
            continue
        results.append(
            Result(
                dataset=str(row["dataset"]),
                model=str(row["model"]),
                source="measured",
                version=version,
                column=Column(
                    base_setting(str(row["protocol"])),
                    str(row.get("variant") or ""),
                    str(row["query_modality"]),
                ),
                values={m: _float(row.get(m)) for m in CSV_METRICS},
                origin=origin,
                sha256=sha256 or str(row.get("dump_sha256") or ""),
                trials=int(row.get("trials") or 0),
                protocol_version=protocol_version,
            )
        )
    return results


def results_from_dump(
    path: str | os.PathLike,
    *,
    version: str,
    protocols: str = "all",
    **options: object,
) -> list[Result]:
    """Score a feature dump under ``protocols`` and return its measured results.

    ``options`` go to :func:`vireid_bench.engine.scoring.evaluate` (``trials``, ``features``...).
    """

    dump = load_dump(path)
    evaluation = evaluate(dump, resolve_presets(protocols), **options)
    return results_from_evaluation(path, evaluation.rows, version=version)


def results_from_evaluation(
    path: str | os.PathLike, rows: Iterable[Mapping[str, object]], *, version: str
) -> list[Result]:
    """The measured results of a dump's scoring rows (origin and SHA-256 from ``path``)."""
    return results_from_rows(
        rows,
        origin=os.path.basename(path),
        version=version,
        protocol_version=current_protocol_version(),
        sha256=file_sha256(path),
    )


def results_from_json(path: str | os.PathLike) -> list[Result]:
    """Read a result file written by ``vireid-bench score --format json``.

    Raises:
        LeaderboardError: naming the file and the entry, when it is not such a file.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise LeaderboardError(f"{source}: cannot be read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise LeaderboardError(f"{source}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise LeaderboardError(
            f"{source}: expected the object written by 'vireid-bench score --format json' "
            "(with a 'results' list)"
        )
    for index, row in enumerate(data["results"]):
        if not isinstance(row, dict):
            raise LeaderboardError(f"{source}: results[{index}]: not an object")
        missing = [key for key in _JSON_REQUIRED if key not in row]
        if missing:
            raise LeaderboardError(f"{source}: results[{index}]: missing {missing[0]!r}")
    return results_from_rows(
        data["results"],
        origin=os.path.basename(source),
        version=str(data.get("vireid_bench_version") or "unknown"),
        protocol_version=str(data.get("protocol_version") or ""),
    )


def results_from_reported(dataset: str) -> list[Result]:
    """Return the paper's transcribed results for ``dataset`` (empty when none)."""
    grouped: dict[tuple[str, Column], list] = {}
    for cell in load_reported(dataset):
        column = Column(cell.setting, cell.variant, cell.query_modality)
        grouped.setdefault((cell.model, column), []).append(cell)
    results = []
    for (model, column), cells in grouped.items():
        values = {c.metric: c.value for c in cells if c.value is not None}
        if not values:
            continue
        first = cells[0]
        results.append(
            Result(
                dataset=dataset,
                model=model,
                source="reported",
                version="",
                column=column,
                values=values,
                origin=f"Table {first.table}",
                venue=first.venue,
                citation=first.citation,
            )
        )
    return results


def results_from_leaderboard_csv(path: str | os.PathLike) -> list[Result]:
    """Read a leaderboard CSV written by :func:`render_csv` back into results.

    Raises:
        LeaderboardError: when the file is not a leaderboard CSV.
    """
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise LeaderboardError(f"{source}: cannot be read ({exc.strerror})") from exc
    reader = csv.DictReader(io.StringIO(text))
    fields = list(reader.fieldnames or [])
    if fields[: len(CSV_FIXED_FIELDS)] != list(CSV_FIXED_FIELDS):
        raise LeaderboardError(f"{source}: not a vireid-bench leaderboard CSV")
    columns: dict[Column, dict[str, str]] = {}
    for name in fields[len(CSV_FIXED_FIELDS) :]:
        key, dot, metric_text = name.rpartition(".")
        protocol, variant, modality = parse_column_key(key)
        if not dot or modality is None:
            raise LeaderboardError(f"{source}: column {name!r} is not KEY.METRIC")
        column = Column(protocol, variant or "", modality)
        columns.setdefault(column, {})[parse_metric(metric_text)] = name
    results = []
    for line, row in enumerate(reader, start=2):
        if row["source"] not in SOURCES:
            raise LeaderboardError(f"{source}: line {line}: unknown source {row['source']!r}")
        for column, names in columns.items():
            try:
                values = {m: _float(row[name]) for m, name in names.items()}
            except ValueError as exc:
                raise LeaderboardError(f"{source}: line {line}: {exc}") from exc
            if all(math.isnan(v) for v in values.values()):
                continue
            results.append(
                Result(
                    dataset=row["dataset"],
                    model=row["model"],
                    source=row["source"],
                    version=row["vireid_bench_version"],
                    column=column,
                    values=values,
                    origin=row["origin"],
                    sha256=row["sha256"],
                    trials=int(row["trials"]) if row["trials"].isdigit() else 0,
                    venue=row["venue"],
                    citation=row["citation"],
                    protocol_version=row["protocol_version"],
                )
            )
    return results


def load_input(path: str | os.PathLike, *, version: str, **options: object) -> list[Result]:
    """Load one leaderboard input: a feature dump (``.h5``/``.hdf5``) or a result ``.json``."""
    name = os.fspath(path)
    suffix = Path(name).suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return results_from_dump(name, version=version, **options)
    if suffix == ".json":
        return results_from_json(name)
    raise LeaderboardError(
        f"{name}: expected a feature dump (.h5) or a result file from "
        "'vireid-bench score --format json' (.json)"
    )


def load_inputs(
    paths: Sequence[str | os.PathLike],
    *,
    version: str,
    scheduler: Scheduler | None = None,
    protocols: str = "all",
    memory: MemoryOptions | None = None,
    **options: object,
) -> list[list[Result]]:
    """Load several leaderboard inputs; one result list per path, in order.

    The feature dumps among them are scored together by ``scheduler`` (in this process by
    default; with ``dask``, all at once on the cluster), with the same results as
    :func:`load_input` one by one. Result files are read here. ``memory`` is the memory
    limit scoring works under (:class:`~vireid_bench.engine.scoring.MemoryOptions`).
    """

    names = [os.fspath(path) for path in paths]
    dumps = [name for name in names if Path(name).suffix.lower() in (".h5", ".hdf5")]
    presets = tuple(resolve_presets(protocols)) if dumps else ()
    requests = [ScoreRequest(name, presets, dict(options), memory=memory) for name in dumps]
    scored = dict(zip(dumps, evaluate_requests(requests, scheduler), strict=True))
    return [
        results_from_evaluation(name, scored[name].rows, version=version)
        if name in scored
        else load_input(name, version=version)
        for name in names
    ]


# --------------------------------------------------------------------------- merging


def _short_sha(sha: str) -> str:
    return sha[:12]


def _provenance(result: Result) -> str:
    details = [f"sha256 {_short_sha(result.sha256)}"] if result.sha256 else []
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

    ``vireid_bench.protocol.presets.PROTOCOL_VERSION`` when the toolkit defines it; otherwise
    ``presets-<fingerprint>`` (:func:`protocol_fingerprint`).
    """

    declared = getattr(protocol, "PROTOCOL_VERSION", None)
    return str(declared) if declared else f"presets-{protocol_fingerprint()}"


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
            f"Protocol version: {self.protocol_version} (PROTOCOLS.md){scored}",
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


# --------------------------------------------------------------------------- renderers


def _csv_value(value: float) -> object:
    return "" if math.isnan(value) else value


def render_csv(table: LeaderboardTable) -> str:
    """Return the CSV: fixed fields, then ``<column key>.<metric>`` for R1, mAP and mINP.

    Values are unrounded percentages, empty when missing; the file reads back with
    :func:`results_from_leaderboard_csv`.
    """
    buffer = io.StringIO()
    fields = list(CSV_FIXED_FIELDS) + [f"{c.key}.{m}" for c in table.columns for m in CSV_METRICS]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for entry in table.entries:
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
        }
        for column in table.columns:
            for metric in CSV_METRICS:
                row[f"{column.key}.{metric}"] = _csv_value(entry.value(column, metric))
        writer.writerow(row)
    return buffer.getvalue()


def _source_cell(entry: Entry) -> str:
    if entry.source == "measured":
        shas = ", ".join(_short_sha(s) for s in entry.sha256s)
        return f"measured (sha256 {shas})" if shas else "measured"
    return f"reported ({', '.join(entry.origins)})"


def _model_cell(entry: Entry, table: LeaderboardTable) -> str:
    protocols = {
        e.protocol_version
        for e in table.entries
        if (e.model, e.source) == (entry.model, entry.source)
    }
    if len(protocols) > 1:
        return f"{entry.model} (protocol {entry.protocol_version or 'unknown'})"
    return entry.model


def _format(value: float, best: float | None, bold: tuple[str, str]) -> str:
    if math.isnan(value):
        return "-"
    text = f"{value:.2f}"
    if best is not None and round(value, 2) == best:
        return f"{bold[0]}{text}{bold[1]}"
    return text


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
    best = {(c, m): table.best(c, m) for c in table.columns for m in MARKDOWN_METRICS}
    body = []
    for entry in table.entries:
        row = [_model_cell(entry, table), entry.venue, _source_cell(entry)]
        row += [
            _format(entry.value(c, m), best[(c, m)], ("**", "**"))
            for c in table.columns
            for m in MARKDOWN_METRICS
        ]
        body.append([_markdown_escape(cell) for cell in row])
    lines = [f"# vireid-bench leaderboard: {table.dataset}", ""]
    lines += [f"- {line}" for line in table.header_lines()]
    lines.append("- R1 and mAP in percent; best value per column in bold (ties all bold)")
    lines.append("")
    if body:
        lines.append(
            tabulate(
                body,
                headers=[_markdown_escape(h) for h in headers],
                tablefmt="github",
                disable_numparse=True,
            )
        )
    else:
        lines.append("No results.")
    return "\n".join(lines) + "\n"


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
    best = {(c, m): table.best(c, m) for c in table.columns for m in MARKDOWN_METRICS}
    body = []
    for entry in table.entries:
        cells = [
            f"<td>{esc(_model_cell(entry, table))}</td>",
            f"<td>{esc(entry.venue)}</td>",
            f'<td title="{esc(entry.citation or "; ".join(entry.sha256s))}">'
            f"{esc(_source_cell(entry))}</td>",
        ]
        for column in table.columns:
            for metric in MARKDOWN_METRICS:
                value = entry.value(column, metric)
                data = "" if math.isnan(value) else repr(value)
                text = _format(value, best[(column, metric)], ("<strong>", "</strong>"))
                cells.append(f'<td class="num" data-value="{data}">{text}</td>')
        body.append(f'<tr class="{entry.source}">' + "".join(cells) + "</tr>")
    items = "".join(f"<li>{esc(line)}</li>" for line in table.header_lines())
    title = f"vireid-bench leaderboard: {table.dataset}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{_HTML_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n<ul>{items}<li>R1 and mAP in percent; best value per column "
        "in bold; click a column header to sort.</li></ul>\n"
        '<table class="leaderboard">\n<thead>\n'
        f"<tr>{''.join(group_row)}</tr>\n<tr>{''.join(setting_row)}</tr>\n"
        f"<tr>{''.join(metric_row)}</tr>\n</thead>\n<tbody>\n"
        + "\n".join(body)
        + f"\n</tbody>\n</table>\n<script>{_HTML_SCRIPT}</script>\n</body>\n</html>\n"
    )


RENDERERS = {"csv": render_csv, "md": render_markdown, "html": render_html}


def output_name(dataset: str) -> str:
    """A file-name-safe form of a dataset name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", dataset) or "unnamed"
