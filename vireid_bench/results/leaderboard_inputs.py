"""Leaderboard inputs: feature dumps, score result files, the paper's tables, earlier CSVs.

Every input is checked before anything is scored (:func:`check_input_paths`,
:func:`load_inputs`): it must exist and be a readable regular file, and result files are
read and validated in full (:func:`validate_result_row`) before the first dump is scored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import numbers
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vireid_bench.engine.distributed import ScoreRequest, evaluate_requests
from vireid_bench.engine.scoring import evaluate
from vireid_bench.io.digest import dump_sha256
from vireid_bench.io.dump import load_dump, mentions_synthetic, read_dump_attributes
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.presets import builtin_presets
from vireid_bench.results.keys import (
    CSV_FIXED_FIELDS,
    CSV_METRICS,
    CSV_ROW_FIELDS,
    SOURCES,
    Column,
    LeaderboardError,
    absent_metrics,
    base_setting,
    is_builtin_setting,
    parse_column_key,
    parse_metric,
    without_absent,
)
from vireid_bench.results.leaderboard_table import (
    Result,
    current_protocol_version,
    reported_reranked,
)
from vireid_bench.results.reported import load_reported

if TYPE_CHECKING:
    from vireid_bench.engine.scheduler import Scheduler
    from vireid_bench.engine.scoring import MemoryOptions

_JSON_REQUIRED = ("dataset", "model", "protocol", "query_modality", "status", *CSV_METRICS)
_TEXT_FIELDS = ("dataset", "model", "protocol", "status")
DUMP_SUFFIXES = (".h5", ".hdf5")
QUERY_MODALITIES = ("infrared", "visible")


def file_sha256(path: str | os.PathLike) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- validation


def check_input_path(path: str | os.PathLike) -> None:
    """Check that ``path`` names a readable regular file, without opening it.

    A FIFO or a device is refused before it is opened (opening a FIFO blocks until a
    writer appears), a folder is refused, a missing file is named.

    Raises:
        LeaderboardError: ``<path>: <problem>``.
    """
    name = os.fspath(path)
    try:
        info = os.stat(name)
    except FileNotFoundError as exc:
        raise LeaderboardError(f"{name}: no such file") from exc
    except OSError as exc:
        raise LeaderboardError(f"{name}: cannot be read ({exc.strerror})") from exc
    if stat.S_ISDIR(info.st_mode):
        raise LeaderboardError(f"{name}: is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise LeaderboardError(f"{name}: not a regular file (a FIFO, device or socket)")
    if not os.access(name, os.R_OK):
        raise LeaderboardError(f"{name}: cannot be read (permission denied)")


def check_input_paths(paths: Iterable[str | os.PathLike]) -> None:
    """Check every leaderboard input before any is used: a feature dump (``.h5``,
    ``.hdf5``) or a result file (``.json``) that exists and is a readable regular file.

    Raises:
        LeaderboardError: for the first input that is not, naming it.
    """
    for path in paths:
        name = os.fspath(path)
        if Path(name).suffix.lower() not in (*DUMP_SUFFIXES, ".json"):
            raise LeaderboardError(
                f"{name}: expected a feature dump (.h5) or a result file from "
                "'vireid-bench score --format json' (.json)"
            )
        check_input_path(name)


def check_percent(value: object, where: str) -> float:
    """Return a metric as a float in [0, 100], NaN for a missing value (None or ``""``).

    Raises:
        LeaderboardError: ``<where>: ...`` for a string, a boolean, infinity, NaN or a
            value outside 0-100.
    """
    if value is None or value == "":
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LeaderboardError(f"{where}: expected a number in percent, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise LeaderboardError(f"{where}: not a finite number ({number})")
    if not 0.0 <= number <= 100.0:
        raise LeaderboardError(f"{where}: {number:g} is outside 0-100 (percent)")
    return number


def check_setting(protocol: str, where: str) -> None:
    """Refuse a setting name that is not a built-in setting (or a dataset protocol of one).

    Raises:
        LeaderboardError: ``<where>: unknown setting ...``, listing the valid names.
    """
    if not is_builtin_setting(protocol):
        raise LeaderboardError(
            f"{where}: unknown setting {protocol!r}; leaderboard columns are the built-in "
            f"settings ({', '.join(builtin_presets())}) and their dataset protocols"
        )


def validate_result_row(row: object, where: str) -> None:
    """Check one row of a result file (``vireid-bench score --format json``).

    Text fields must be strings, ``query_modality`` infrared or visible, ``protocol`` a
    built-in setting, and, in a scored row (``status`` ``ok``), R1, mAP and mINP numbers in
    0-100 or null (a metric its convention does not define, e.g. ``regdb-saai``'s mINP,
    is not read); ``trials`` a non-negative integer when present.

    Raises:
        LeaderboardError: ``<where>.<field>: <problem>``.
    """
    if not isinstance(row, Mapping):
        raise LeaderboardError(f"{where}: not an object")
    missing = [key for key in _JSON_REQUIRED if key not in row]
    if missing:
        raise LeaderboardError(f"{where}: missing {missing[0]!r}")
    for key in _TEXT_FIELDS:
        if not isinstance(row[key], str) or not row[key]:
            raise LeaderboardError(f"{where}.{key}: expected a non-empty string, got {row[key]!r}")
    variant = row.get("variant")
    if variant is not None and not isinstance(variant, str):
        raise LeaderboardError(f"{where}.variant: expected a string, got {variant!r}")
    if row["query_modality"] not in QUERY_MODALITIES:
        raise LeaderboardError(
            f"{where}.query_modality: expected infrared or visible, got {row['query_modality']!r}"
        )
    check_setting(str(row["protocol"]), f"{where}.protocol")
    trials = row.get("trials")
    integral = isinstance(trials, numbers.Integral) and not isinstance(trials, bool)
    if trials is not None and not (integral and trials >= 0):
        raise LeaderboardError(f"{where}.trials: expected a non-negative integer, got {trials!r}")
    if row["status"] == "ok":
        column = Column(base_setting(str(row["protocol"])), str(variant or ""), "")
        absent = absent_metrics(str(row["dataset"]), column)  # not read: left empty
        for metric in CSV_METRICS:
            if metric not in absent:
                check_percent(row[metric], f"{where}.{metric}")


def check_protocol_spec(protocols: str | Iterable[str]) -> None:
    """Refuse custom preset files (``*.toml``) as settings to score leaderboard dumps under.

    A leaderboard column is a built-in setting; a custom file's rows would land in a
    column whose definition they do not share (whatever the file names its preset).

    Raises:
        LeaderboardError: naming the file.
    """
    names = protocols.split(",") if isinstance(protocols, str) else list(protocols)
    for name in (n.strip() for n in names):
        if name.lower().endswith(".toml"):
            raise LeaderboardError(
                f"--protocol {name}: a custom preset file cannot go on a leaderboard (its "
                "columns are the built-in settings); score it with 'vireid-bench score -p "
                f"{name}' instead"
            )


# --------------------------------------------------------------------------- loading


def results_from_rows(
    rows: Iterable[Mapping[str, object]],
    *,
    origin: str,
    version: str,
    protocol_version: str,
    sha256: str = "",
    run: Mapping[str, object] | None = None,
) -> list[Result]:
    """Turn scoring rows (:data:`vireid_bench.engine.scoring.RESULT_KEYS`) into measured results.

    Rows whose ``status`` is not ``"ok"`` (skipped settings) are left out. Every row is
    validated first (:func:`validate_result_row`). A row is re-ranked when its
    ``distance`` names a re-ranking (``cosine+k-reciprocal(...)``), synthetic when ``run``
    (the dump's attributes, :func:`~vireid_bench.io.dump.read_dump_attributes`) says so or,
    without it, when the model name says "synthetic". ``run`` also gives the seed, run and
    checkpoint selection.

    Raises:
        LeaderboardError: ``<origin>: results[<i>].<field>: ...`` for an invalid row.
    """
    rows = list(rows)
    for index, row in enumerate(rows):
        validate_result_row(row, f"{origin}: results[{index}]")
    results = []
    for row in rows:
        if row.get("status", "ok") != "ok":
            continue
        if run is not None:
            synthetic = bool(run.get("synthetic"))
            if run.get("synthetic") is None:
                synthetic = mentions_synthetic(str(row["model"]), str(run.get("description", "")))
        else:
            synthetic = row.get("synthetic") is True or mentions_synthetic(str(row["model"]))
        # a result file's row carries the run metadata itself (score --format json)
        recorded = run if run is not None else row
        seed = recorded.get("seed")
        column = Column(
            base_setting(str(row["protocol"])),
            str(row.get("variant") or ""),
            str(row["query_modality"]),
        )
        absent = absent_metrics(str(row["dataset"]), column)
        results.append(
            Result(
                dataset=str(row["dataset"]),
                model=str(row["model"]),
                source="measured",
                version=version,
                column=column,
                values=without_absent(
                    str(row["dataset"]),
                    column,
                    {m: check_percent(row.get(m), m) for m in CSV_METRICS if m not in absent},
                ),
                origin=origin,
                sha256=sha256 or str(row.get("dump_sha256") or ""),
                trials=int(row.get("trials") or 0),
                protocol_version=protocol_version,
                synthetic=synthetic,
                reranked="+" in str(row.get("distance") or ""),
                selection=str(recorded.get("selection") or ""),
                seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
                run=str(recorded.get("run") or ""),
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

    Raises:
        LeaderboardError: for a custom preset file among ``protocols``, or a path that is
            not a readable regular file.
    """
    check_protocol_spec(protocols)
    check_input_path(path)
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
        sha256=dump_sha256(path),
        run=read_dump_attributes(path),
    )


def read_json_document(path: str | os.PathLike) -> object:
    """Read a JSON file that must be a readable regular UTF-8 file.

    Raises:
        LeaderboardError: ``<path>: <problem>`` (missing, not a regular file, not UTF-8,
            not JSON, nested too deeply).
    """
    source = os.fspath(path)
    check_input_path(source)
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        raise LeaderboardError(f"{source}: cannot be read ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LeaderboardError(f"{source}: not UTF-8 text (byte {exc.start})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LeaderboardError(f"{source}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    except RecursionError as exc:
        raise LeaderboardError(f"{source}: JSON nested too deeply for a result file") from exc


def results_from_json(path: str | os.PathLike) -> list[Result]:
    """Read a result file written by ``vireid-bench score --format json``.

    Every row is validated before any is used (:func:`validate_result_row`): a string
    metric, a value outside 0-100, infinity, NaN or an unknown setting is refused.

    Raises:
        LeaderboardError: naming the file and the entry, when it is not such a file.
    """
    source = os.fspath(path)
    data = read_json_document(source)
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise LeaderboardError(
            f"{source}: expected the object written by 'vireid-bench score --format json' "
            "(with a 'results' list)"
        )
    for index, row in enumerate(data["results"]):
        validate_result_row(row, f"{source}: results[{index}]")
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
                reranked=reported_reranked(model),
            )
        )
    return results


def _csv_number(text: str | None) -> object:
    """A CSV cell as a float when it parses as one, else the text (for the error)."""
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def results_from_leaderboard_csv(path: str | os.PathLike) -> list[Result]:
    """Read a leaderboard CSV written by :func:`render_csv` back into results.

    Values are validated as result files' are (numbers in 0-100, built-in settings).

    Raises:
        LeaderboardError: when the file is not a leaderboard CSV, naming the line and column.
    """
    source = os.fspath(path)
    check_input_path(source)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise LeaderboardError(f"{source}: cannot be read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise LeaderboardError(f"{source}: not UTF-8 text (byte {exc.start})") from exc
    reader = csv.DictReader(io.StringIO(text))
    fields = list(reader.fieldnames or [])
    if fields[: len(CSV_FIXED_FIELDS)] != list(CSV_FIXED_FIELDS):
        raise LeaderboardError(f"{source}: not a vireid-bench leaderboard CSV")
    columns: dict[Column, dict[str, str]] = {}
    for name in fields[len(CSV_FIXED_FIELDS) :]:
        if name in CSV_ROW_FIELDS:
            continue
        key, dot, metric_text = name.rpartition(".")
        protocol, variant, modality = parse_column_key(key)
        if not dot or modality is None:
            raise LeaderboardError(f"{source}: column {name!r} is not KEY.METRIC")
        check_setting(protocol, f"{source}: column {name!r}")
        column = Column(protocol, variant or "", modality)
        columns.setdefault(column, {})[parse_metric(metric_text)] = name
    results = []
    for line, row in enumerate(reader, start=2):
        if row["source"] not in SOURCES:
            raise LeaderboardError(f"{source}: line {line}: unknown source {row['source']!r}")
        for column, names in columns.items():
            values = {
                m: check_percent(_csv_number(row[name]), f"{source}: line {line}: {name}")
                for m, name in names.items()
            }
            values = without_absent(row["dataset"], column, values)
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
                    synthetic=row.get("data") == "synthetic"
                    or ("data" not in row and mentions_synthetic(row["model"])),
                    reranked=row.get("reranked") == "yes"
                    or (row["source"] == "reported" and reported_reranked(row["model"])),
                    selection=row.get("selection") or "",
                )
            )
    return results


def load_input(path: str | os.PathLike, *, version: str, **options: object) -> list[Result]:
    """Load one leaderboard input: a feature dump (``.h5``/``.hdf5``) or a result ``.json``."""
    name = os.fspath(path)
    check_input_paths([name])
    if Path(name).suffix.lower() in DUMP_SUFFIXES:
        return results_from_dump(name, version=version, **options)
    return results_from_json(name)


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

    Everything that can be checked without scoring is checked first, so a bad input fails
    in seconds rather than after every dump was scored: every path
    (:func:`check_input_paths`), the settings (no custom preset file,
    :func:`check_protocol_spec`) and every result file, read and validated in full.

    The feature dumps among them are then scored together by ``scheduler`` (in this process
    by default; with ``dask``, all at once on the cluster), with the same results as
    :func:`load_input` one by one. ``memory`` is the memory limit scoring works under
    (:class:`~vireid_bench.engine.scoring.MemoryOptions`).

    Raises:
        LeaderboardError: for the first bad input, naming it.
    """

    names = [os.fspath(path) for path in paths]
    check_input_paths(names)
    dumps = [name for name in names if Path(name).suffix.lower() in DUMP_SUFFIXES]
    read = {name: results_from_json(name) for name in names if name not in dumps}
    if dumps:
        check_protocol_spec(protocols)
    presets = tuple(resolve_presets(protocols)) if dumps else ()
    for preset in presets:
        check_setting(preset.name, f"--protocol {protocols}")
    requests = [ScoreRequest(name, presets, dict(options), memory=memory) for name in dumps]
    scored = dict(zip(dumps, evaluate_requests(requests, scheduler), strict=True))
    return [
        results_from_evaluation(name, scored[name].rows, version=version)
        if name in scored
        else read[name]
        for name in names
    ]
