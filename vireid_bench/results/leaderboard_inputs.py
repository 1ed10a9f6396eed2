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
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vireid_bench.engine.distributed import ScoreRequest, evaluate_requests
from vireid_bench.engine.scoring import evaluate
from vireid_bench.io.dump import load_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.results.keys import (
    CSV_FIXED_FIELDS,
    CSV_METRICS,
    SOURCES,
    Column,
    LeaderboardError,
    base_setting,
    parse_column_key,
    parse_metric,
)
from vireid_bench.results.leaderboard_table import Result, current_protocol_version
from vireid_bench.results.reported import load_reported

if TYPE_CHECKING:
    from vireid_bench.engine.scheduler import Scheduler
    from vireid_bench.engine.scoring import MemoryOptions

_JSON_REQUIRED = ("dataset", "model", "protocol", "query_modality", "status", *CSV_METRICS)


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


