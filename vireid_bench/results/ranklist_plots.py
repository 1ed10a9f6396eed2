"""Retrieval strips drawn from a rank-list file (``score --ranklists``), without rescoring.

:func:`read_ranklists` streams the records of a ``.jsonl`` file (or a ``.parquet`` file,
with pyarrow) written by :func:`vireid_bench.engine.ranklists.write_ranklists`;
:func:`select_strips` picks one setting's and trial's queries and turns each into a
:class:`Strip` (the query and its first ``top_k`` gallery images with their ``match``
flags, as the file holds them); :func:`plot_ranklists` draws them with
:func:`vireid_bench.results.plots.draw_strips`, which reads images only inside the image
root (:func:`vireid_bench.results.plots.image_inside`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from vireid_bench.errors import VireidBenchError
from vireid_bench.results.keys import setting_key
from vireid_bench.results.plots import PlotError, draw_strips

RECORD_FIELDS = ("protocol", "variant", "query_modality", "trial", "query", "top")


class RanklistError(VireidBenchError):
    """A rank-list file cannot be read or holds no usable record."""


@dataclass(frozen=True)
class Cell:
    """One image of a strip: its path (relative to the image root), rank and match flag.

    ``rank`` is 0 and ``match`` None for the query.
    """

    path: str
    rank: int
    match: bool | None
    distance: float | None = None


@dataclass(frozen=True)
class Strip:
    """One query's strip: the setting key, trial, the query's row and its cells."""

    setting: str
    trial: int
    query_row: int
    cells: tuple[Cell, ...]


def _path_of(where: str, image: object) -> str:
    if not isinstance(image, dict) or not isinstance(image.get("path"), str):
        raise RanklistError(
            f"{where}: no image path (the dump had no 'path' field; strips need paths)"
        )
    return image["path"]


def read_ranklists(path: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """Yield ``(where, record)`` for every record of a rank-list file, streamed.

    ``where`` names the file and line (``.jsonl``) or row (``.parquet``) for messages.

    Raises:
        RanklistError: an unknown suffix, a missing or unreadable file, a line that is not
            a JSON object, a record without the fields strips need, ``.parquet`` without
            pyarrow.
    """
    path = Path(os.fspath(path))
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise RanklistError(f"{path}: rank lists are read from .jsonl or .parquet files")
    if not path.is_file():
        raise RanklistError(f"{path}: no such file")
    if suffix == ".jsonl":
        yield from _read_jsonl(path)
    else:
        yield from _read_parquet(path)


def _checked(where: str, record: object) -> dict:
    if not isinstance(record, dict):
        raise RanklistError(f"{where}: expected a JSON object (one rank list per line)")
    absent = [field for field in RECORD_FIELDS if field not in record]
    if absent:
        raise RanklistError(f"{where}: not a rank list (no {', '.join(absent)})")
    return record


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below, generator
    except OSError as exc:
        raise RanklistError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        number = 0
        while True:
            try:
                line = handle.readline()
            except (OSError, UnicodeDecodeError) as exc:
                raise RanklistError(f"{path}:{number + 1}: cannot read ({exc})") from None
            if not line:
                return
            number += 1
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RanklistError(f"{where}: not JSON ({exc.msg})") from None
            yield where, _checked(where, record)


def _read_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise RanklistError(
            f"{path}: reading .parquet needs pyarrow (pip install pyarrow)"
        ) from None
    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types for a bad file
        raise RanklistError(f"{path}: not a Parquet file ({type(exc).__name__})") from None
    row = 0
    with handle:
        for batch in handle.iter_batches():
            for record in batch.to_pylist():
                row += 1
                where = f"{path}: row {row}"
                yield where, _checked(where, record)


def select_strips(
    records: Iterator[tuple[str, dict]],
    *,
    setting: str | None = None,
    trial: int = 0,
    query_rows: Sequence[int] = (),
    queries: int = 4,
    top_k: int = 6,
) -> list[Strip]:
    """Pick the strips to draw from a rank-list file's records.

    Args:
        records: :func:`read_ranklists`'s output.
        setting: ``protocol[:variant]@query_modality`` (e.g. ``cross:all@infrared``); may
            be left out when the file holds one setting only.
        trial: the trial (``trial`` field) to show.
        query_rows: the queries to show, by their row in the dump (``query.row``), in this
            order; empty: the first ``queries`` queries of the setting and trial.
        queries: how many queries without ``query_rows``.
        top_k: gallery images per strip (at most the file's top-k).

    Raises:
        RanklistError: ``setting`` missing while the file holds several (the message lists
            them), an unknown setting or trial, a requested query not in the file, a record
            without image paths.
    """
    wanted = list(dict.fromkeys(int(q) for q in query_rows))
    seen_settings: list[str] = []
    trials: set[int] = set()
    found: dict[int, tuple[str, dict]] = {}
    for where, record in records:
        key = setting_key(record["protocol"], record["variant"] or "", record["query_modality"])
        if key not in seen_settings:
            seen_settings.append(key)
        if setting is None:
            if len(seen_settings) > 1:
                raise RanklistError(
                    f"{where}: the file holds several settings; pick one with --setting "
                    f"(e.g. {', '.join(seen_settings)})"
                )
        elif key != setting:
            continue
        trials.add(int(record["trial"]))
        if int(record["trial"]) != trial:
            continue
        row = int(record["query"]["row"])
        if wanted:
            if row in wanted and row not in found:
                found[row] = (where, record)
                if len(found) == len(wanted) and setting is not None:
                    break
        elif len(found) < queries:
            found[row] = (where, record)
            if len(found) == queries and setting is not None:
                break
    if setting is not None and setting not in seen_settings:
        raise RanklistError(
            f"--setting: {setting!r} is not in the file (settings: "
            f"{', '.join(seen_settings) or 'none'})"
        )
    if trial not in trials:
        raise RanklistError(
            f"--trial: no rank list for trial {trial} (trials: "
            f"{', '.join(map(str, sorted(trials))) or 'none'})"
        )
    missing = [row for row in wanted if row not in found]
    if missing:
        raise RanklistError(
            f"--query: no rank list for query row(s) {', '.join(map(str, missing))} "
            f"in {setting or seen_settings[0]}, trial {trial}"
        )
    order = wanted or list(found)
    strips = []
    for row in order:
        where, record = found[row]
        key = setting_key(record["protocol"], record["variant"] or "", record["query_modality"])
        cells = [Cell(_path_of(where, record["query"]), 0, None)]
        for entry in record["top"][:top_k]:
            cells.append(
                Cell(
                    _path_of(where, entry),
                    int(entry["rank"]),
                    bool(entry["match"]),
                    float(entry["distance"]),
                )
            )
        strips.append(Strip(key, int(record["trial"]), row, tuple(cells)))
    return strips


def plot_ranklists(strips: Sequence[Strip], images_root: str | os.PathLike, title: str = ""):
    """Draw the strips (query, then its gallery images, green border: true match).

    Returns:
        ``(figure, missing)`` as :func:`vireid_bench.results.plots.draw_strips`.
    """
    if not strips:
        raise PlotError("no query to show")
    return draw_strips(
        [
            (f"{strip.setting} #{strip.query_row}", [(c.path, c.match) for c in strip.cells])
            for strip in strips
        ],
        images_root,
        title,
    )
