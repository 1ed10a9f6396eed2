"""Regression checks: rescore stored feature dumps and compare with their expected results.

A folder of stored dumps (``feature_dumps/``) holds ``<name>.h5`` files and, in
``expected/<name>.json``, what scoring each one gave when the expectation was last
updated deliberately. The expected file is the ``vireid-bench score --format json`` object
plus ``dump`` and ``dump_sha256``:

``{"vireid_bench_version": ..., "dump": "<name>.h5", "dump_sha256": ..., "results": [...]}``
(and ``protocol_version`` when the score JSON carries it).

:func:`check_dumps` rescores every dump with every preset (the dataset convention's
defaults) and compares row by row, keyed ``(protocol, variant, query_modality)``:

* metrics and their standard deviations (percentages) within an absolute tolerance
  (default :data:`DEFAULT_TOLERANCE`); NaN (a skipped setting) equals only NaN/null;
* ``status``, ``gallery_modality``, ``cmc``, ``features``, ``distance``, ``trials``,
  ``queries`` and ``queries_without_match`` exactly;
* a setting present on one side only, or a dump without an expected file, is a difference.

A changed ``dump_sha256`` or ``protocol_version`` is reported as a note: the numbers decide.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vireid_bench.engine.distributed import ScoreRequest, evaluate_requests
from vireid_bench.engine.scoring import METRICS
from vireid_bench.errors import VireidBenchError
from vireid_bench.io.digest import dump_sha256
from vireid_bench.io.files import write_text_atomic
from vireid_bench.protocol import resolve_presets
from vireid_bench.results.keys import setting_key
from vireid_bench.results.report import render_json

if TYPE_CHECKING:
    from vireid_bench.engine.scheduler import Scheduler
    from vireid_bench.engine.scoring import MemoryOptions

DEFAULT_TOLERANCE = 1e-6
EXPECTED_DIR = "expected"
_EXACT_FIELDS = (
    "status",
    "gallery_modality",
    "cmc",
    "features",
    "distance",
    "trials",
    "queries",
    "queries_without_match",
)


class CheckError(VireidBenchError):
    """A stored-dump folder or an expected file cannot be used."""


@dataclass(frozen=True)
class Difference:
    """One cell that moved.

    Attributes:
        dump: the dump's file name.
        setting: ``protocol[:variant]@query_modality``, or ``""`` for the whole dump.
        field: the result field (``"mAP"``, ``"queries"``...) or what is missing.
        expected, actual: the values (None when absent).
    """

    dump: str
    setting: str
    field: str
    expected: object
    actual: object

    @property
    def delta(self) -> float | None:
        """``actual - expected`` for numbers, else None."""
        a, b = self.expected, self.actual
        numbers = isinstance(a, int | float) and isinstance(b, int | float)
        if numbers and not (math.isnan(a) or math.isnan(b)):
            return float(b) - float(a)
        return None


@dataclass
class DumpCheck:
    """The outcome for one stored dump."""
    dump: str
    expected_path: Path
    settings: int
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    document: dict | None = None  # the freshly scored expected-file document
    sha_changed: bool = False
    expected_missing: bool = False

    @property
    def needs_update(self) -> bool:
        """Whether ``--update`` rewrites the expected file (results or dump changed)."""
        return bool(self.differences) or self.sha_changed


@dataclass
class CheckReport:
    """The outcome for a folder."""
    checks: list[DumpCheck]
    notes: list[str] = field(default_factory=list)

    @property
    def differences(self) -> list[Difference]:
        """Every difference of every dump."""
        return [d for check in self.checks for d in check.differences]

    @property
    def ok(self) -> bool:
        """True when no dump moved."""
        return not self.differences


def row_key(row: dict) -> str:
    """``protocol[:variant]@query_modality`` of a result row."""
    return setting_key(row["protocol"], row.get("variant") or "", row["query_modality"])


def _number(value: object) -> float:
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def compare_results(
    dump: str,
    expected: Sequence[dict],
    actual: Sequence[dict],
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[Difference]:
    """Return the differences between two lists of result rows (see the module docstring)."""
    numeric = [*METRICS, *(f"{m}_std" for m in METRICS)]
    expected_rows = {row_key(r): r for r in expected}
    actual_rows = {row_key(r): r for r in actual}
    differences = []
    for key in list(expected_rows) + [k for k in actual_rows if k not in expected_rows]:
        old, new = expected_rows.get(key), actual_rows.get(key)
        if old is None or new is None:
            differences.append(
                Difference(
                    dump,
                    key,
                    "setting",
                    "present" if old else None,
                    "present" if new else None,
                )
            )
            continue
        for name in _EXACT_FIELDS:
            if old.get(name) != new.get(name):
                differences.append(Difference(dump, key, name, old.get(name), new.get(name)))
        for name in numeric:
            a, b = _number(old.get(name)), _number(new.get(name))
            if math.isnan(a) and math.isnan(b):
                continue
            if math.isnan(a) or math.isnan(b) or abs(a - b) > tolerance:
                differences.append(Difference(dump, key, name, a, b))
    return differences


def score_document(path: Path, version: str) -> dict:
    """Score a dump with every preset; return the expected-file document for it."""
    return score_documents([path], version)[0]


def score_documents(
    paths: Sequence[Path],
    version: str,
    scheduler: Scheduler | None = None,
    memory: MemoryOptions | None = None,
    scoring: Mapping[str, object] | None = None,
) -> list[dict]:
    """Score dumps with every preset, all together on ``scheduler`` (default: in process).

    ``scoring``: more keyword arguments of :func:`~vireid_bench.engine.scoring.evaluate`
    (``device``, ``tf32``: the torch backend). Returns their expected-file documents in
    order; a Dask scheduler gives the same.
    """

    presets = tuple(resolve_presets("all"))
    options = dict(scoring or {})
    requests = [ScoreRequest(str(path), presets, options, memory=memory) for path in paths]
    documents = []
    for path, evaluation in zip(paths, evaluate_requests(requests, scheduler), strict=True):
        scored = json.loads(render_json(evaluation.rows, version))
        results = scored.pop("results")
        documents.append(
            {**scored, "dump": path.name, "dump_sha256": dump_sha256(path), "results": results}
        )
    return documents


def read_expected(path: Path) -> dict:
    """Read an expected file; raise CheckError when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckError(f"{path}: cannot be read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise CheckError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise CheckError(f"{path}: expected an object with a 'results' list")
    for index, row in enumerate(data["results"]):
        if not isinstance(row, dict) or not {"protocol", "query_modality"} <= set(row):
            raise CheckError(f"{path}: results[{index}]: not a result row")
    return data


def check_dumps(
    folder: str | os.PathLike,
    *,
    version: str,
    tolerance: float = DEFAULT_TOLERANCE,
    expected_dir: str | os.PathLike | None = None,
    scheduler: Scheduler | None = None,
    memory: MemoryOptions | None = None,
    update: bool = False,
    scoring: Mapping[str, object] | None = None,
) -> CheckReport:
    """Rescore every ``*.h5`` in ``folder`` and compare with ``expected/<name>.json``.

    Args:
        scheduler: where to score (default: in process); a Dask scheduler scores every
            dump at once, with the same results.
        memory: the memory limit scoring works under (default: none, in memory).
        version: the running vireid-bench version (written into fresh documents).
        tolerance: absolute tolerance on percentages (metrics and their std).
        expected_dir: where the expected files are (default ``<folder>/expected``).
        update: the expected files are about to be recorded (``--update``), so the
            expected folder may be missing; :func:`write_expected` creates it.
        scoring: more keyword arguments of :func:`~vireid_bench.engine.scoring.evaluate`,
            e.g. ``{"device": "cuda"}`` to score with the torch backend.

    Raises:
        CheckError: when ``folder`` is not a folder or holds no dump, the expected folder
            is missing (unless ``update``) or not a folder, or an expected file is
            unreadable; all before any dump is scored.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CheckError(f"{root}: not a folder")
    if tolerance < 0 or math.isnan(tolerance):
        raise CheckError(f"tolerance must be a non-negative number, got {tolerance}")
    expected_root = Path(expected_dir) if expected_dir is not None else root / EXPECTED_DIR
    dumps = sorted(p for p in root.iterdir() if p.suffix.lower() in (".h5", ".hdf5"))
    if not dumps:
        raise CheckError(f"{root}: no feature dump (*.h5)")
    if expected_root.exists() and not expected_root.is_dir():
        raise CheckError(f"{expected_root}: not a folder (expected the folder of expected files)")
    if not expected_root.exists() and not update:
        raise CheckError(
            f"{expected_root}: no such folder of expected results; record them with "
            f"'vireid-bench check {root} --update'"
        )
    report = CheckReport(checks=[])
    documents = score_documents(dumps, version, scheduler, memory, scoring)
    for path, document in zip(dumps, documents, strict=True):
        expected_path = expected_root / f"{path.stem}.json"
        check = DumpCheck(path.name, expected_path, len(document["results"]), document=document)
        report.checks.append(check)
        if not expected_path.exists():
            check.expected_missing = True
            check.differences.append(
                Difference(path.name, "", "expected file", None, str(expected_path))
            )
            continue
        expected = read_expected(expected_path)
        old_sha = expected.get("dump_sha256")
        if old_sha and old_sha != document["dump_sha256"]:
            check.sha_changed = True
            check.notes.append(
                f"{path.name}: the dump's SHA-256 changed since the expectation was written "
                f"({old_sha[:12]} -> {document['dump_sha256'][:12]})"
            )
        old_protocol = expected.get("protocol_version")
        new_protocol = document.get("protocol_version")
        if old_protocol != new_protocol:
            check.notes.append(
                f"{path.name}: expected results were recorded under protocol version "
                f"{old_protocol or 'unknown'}, now {new_protocol or 'unknown'}"
            )
        check.differences.extend(
            compare_results(path.name, expected["results"], document["results"], tolerance)
        )
    if expected_root.is_dir():
        stems = {p.stem for p in dumps}
        for orphan in sorted(expected_root.glob("*.json")):
            if orphan.stem not in stems:
                report.notes.append(f"{orphan}: no dump {orphan.stem}.h5 in {root}; stale?")
    return report


def write_expected(check: DumpCheck, *, parents: bool = False) -> None:
    """Write a check's freshly scored document as its expected file (atomically).

    The expected folder itself is created when missing and its parent exists (the one folder
    ``check`` owns); missing folders above it only with ``parents=True`` (``check --parents``).
    """
    if not parents and check.expected_path.parent.parent.is_dir():
        check.expected_path.parent.mkdir(exist_ok=True)
    write_text_atomic(
        check.expected_path, json.dumps(check.document, indent=2) + "\n", parents=parents
    )


def _show(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6f}"
    return str(value)


def difference_table(differences: Sequence[Difference]) -> str:
    """Return a plain-text table: dump, setting, field, expected, actual, delta."""
    from tabulate import tabulate

    body = [
        [
            d.dump,
            d.setting or "-",
            d.field,
            _show(d.expected),
            _show(d.actual),
            "" if d.delta is None else f"{d.delta:+.6f}",
        ]
        for d in differences
    ]
    return tabulate(
        body,
        headers=["dump", "setting", "field", "expected", "actual", "delta"],
        tablefmt="simple",
        disable_numparse=True,
    )
