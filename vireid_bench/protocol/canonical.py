"""Canonical test sets: packaged manifests of each dataset's standard test set, and the
comparison of a dump with them ("canonical test set: yes", or the exact differences).

A manifest (``vireid_bench/protocol/datasets/manifests/<dataset>.json``) records only what
the issue text, docs/datasets.md or a cited source establishes; every recorded count names
its source under ``sources`` and what could not be established is listed under
``unverified`` (docs/datasets.md, "Canonical test sets"). Its shape::

    {"schema": 1, "dataset": "sysu-mm01", "splits": 1,
     "split": {"ids": 96, "id_list": [...], "images": N,
               "modalities": {"infrared": {"images": 3803, "ids": N,
                                           "cameras": {"3": {"images": N, "ids": N}, ...}},
                              "visible": {...}},
               "galleries": [{"name": "all-search single-shot", "modality": "visible",
                              "cameras": [1, 2, 4, 5], "images_per_trial": 301}]},
     "sources": {"split.ids": "...", ...}, "unverified": ["..."]}

Every field of ``split`` is optional; ``splits`` is the number of dump splits (RegDB: one
per trial, each described by ``split``). A ``cameras`` map lists *every* camera of its
modality. A gallery's ``images_per_trial`` is the single-shot count: one image per
(identity, camera) of those cameras that holds an image of the identity.

The comparison changes no number: it reads the dump's labels only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from vireid_bench.errors import DatasetError
from vireid_bench.io.dump import MODALITY_CODES, FeatureDump

SCHEMA = 1
MANIFEST_DATASETS = ("sysu-mm01", "regdb", "llcm")
_COUNT_KEYS = ("images", "ids")
_SHOWN = 10


@dataclass(frozen=True)
class Manifest:
    """A dataset's canonical test set (see the module docstring for the fields).

    Attributes:
        dataset: the dump ``dataset`` attribute it describes.
        splits: how many splits a dump of it holds (RegDB 10, else 1).
        split: what each split holds (``ids``, ``id_list``, ``images``, ``modalities``,
            ``galleries``), only the established fields.
        sources: dotted field path -> where the value comes from.
        unverified: what could not be established (not checked).
        source: the file it was read from.
    """

    dataset: str
    splits: int
    split: dict[str, Any]
    sources: dict[str, str]
    unverified: tuple[str, ...]
    source: str

    def recorded(self) -> Iterator[tuple[str, object]]:
        """Yield (dotted path, value) of every recorded count and list."""
        yield "splits", self.splits
        for key in ("ids", "id_list", "images"):
            if key in self.split:
                yield f"split.{key}", self.split[key]
        for name, entry in self.split.get("modalities", {}).items():
            for key in _COUNT_KEYS:
                if key in entry:
                    yield f"split.modalities.{name}.{key}", entry[key]
            if "cameras" in entry:
                yield f"split.modalities.{name}.cameras", sorted(entry["cameras"], key=int)
            for cam, counts in entry.get("cameras", {}).items():
                for key in _COUNT_KEYS:
                    if key in counts:
                        yield f"split.modalities.{name}.cameras.{cam}.{key}", counts[key]
        for k, gallery in enumerate(self.split.get("galleries", [])):
            if "images_per_trial" in gallery:
                yield f"split.galleries.{k}.images_per_trial", gallery["images_per_trial"]


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read a manifest JSON file and check it (:func:`check_manifest`).

    Raises:
        DatasetError: ``PATH: problem`` when the file is unreadable, not JSON, not in the
            manifest's shape, or its counts do not add up.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as exc:
        raise DatasetError(f"{source}: file missing") from exc
    except OSError as exc:
        raise DatasetError(f"{source}: cannot be read ({exc.strerror})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{source}: not a JSON manifest ({exc})") from exc
    return _parse(data, source)


def packaged_manifest(dataset: str) -> Manifest | None:
    """The packaged manifest of ``dataset`` (``sysu-mm01``, ``regdb``, ``llcm``), else None."""
    if dataset not in MANIFEST_DATASETS:
        return None
    entry = resources.files("vireid_bench.protocol.datasets").joinpath(
        f"manifests/{dataset}.json"
    )
    with resources.as_file(entry) as path:
        return load_manifest(path)


def _parse(data: object, source: str) -> Manifest:
    def fail(problem: str) -> DatasetError:
        return DatasetError(f"{source}: {problem}")

    if not isinstance(data, dict):
        raise fail("expected a JSON object")
    if data.get("schema") != SCHEMA:
        raise fail(f"schema: expected {SCHEMA}, got {data.get('schema')!r}")
    dataset = data.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise fail("dataset: missing")
    splits = data.get("splits", 1)
    if not _is_count(splits) or splits < 1:
        raise fail(f"splits: expected a positive integer, got {splits!r}")
    split = data.get("split", {})
    if not isinstance(split, dict):
        raise fail("split: expected an object")
    sources = data.get("sources", {})
    unverified = data.get("unverified", [])
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise fail("sources: expected an object of strings")
    if not isinstance(unverified, list) or not all(isinstance(v, str) for v in unverified):
        raise fail("unverified: expected a list of strings")
    manifest = Manifest(dataset, int(splits), split, dict(sources), tuple(unverified), source)
    problems = check_manifest(manifest)
    if problems:
        raise fail(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return manifest


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_manifest(manifest: Manifest) -> list[str]:
    """Return every internal inconsistency of a manifest (empty when it is consistent).

    Checks: the known keys only; counts are non-negative integers; ``id_list`` strictly
    ascending with ``ids`` entries; per modality, camera images add up to the modality's
    images and camera ids do not exceed the modality's, which do not exceed ``ids``;
    modality images add up to ``images``; a gallery names cameras of its modality and
    holds at most ``ids`` images per camera (exactly the cameras' id counts when they are
    recorded); every recorded count has a source, and every source names a recorded field.
    """
    problems: list[str] = []
    split = manifest.split
    unknown = sorted(set(split) - {"ids", "id_list", "images", "modalities", "galleries"})
    if unknown:
        problems.append(f"split.{unknown[0]}: unknown field")
    for key in ("ids", "images"):
        if key in split and not _is_count(split[key]):
            problems.append(f"split.{key}: expected a non-negative integer")
    ids = split.get("ids") if _is_count(split.get("ids")) else None
    if "id_list" in split:
        id_list = split["id_list"]
        if not isinstance(id_list, list) or not all(_is_count(v) for v in id_list):
            problems.append("split.id_list: expected a list of non-negative integers")
        else:
            if any(b <= a for a, b in zip(id_list, id_list[1:], strict=False)):
                problems.append("split.id_list: not strictly ascending")
            if ids is not None and len(id_list) != ids:
                problems.append(f"split.id_list: {len(id_list)} ids, split.ids says {ids}")
    modalities = split.get("modalities", {})
    if not isinstance(modalities, dict):
        problems.append("split.modalities: expected an object")
        modalities = {}
    modality_images = []
    for name, entry in modalities.items():
        where = f"split.modalities.{name}"
        if name not in MODALITY_CODES or not isinstance(entry, dict):
            problems.append(f"{where}: expected 'visible' or 'infrared' with an object")
            continue
        for key in sorted(set(entry) - {"images", "ids", "cameras"}):
            problems.append(f"{where}.{key}: unknown field")
        for key in _COUNT_KEYS:
            if key in entry and not _is_count(entry[key]):
                problems.append(f"{where}.{key}: expected a non-negative integer")
        if _is_count(entry.get("ids")) and ids is not None and entry["ids"] > ids:
            problems.append(f"{where}.ids: {entry['ids']} is more than split.ids ({ids})")
        modality_images.append(entry.get("images") if _is_count(entry.get("images")) else None)
        cameras = entry.get("cameras", {})
        if not isinstance(cameras, dict) or not all(
            str(c).isdigit() and isinstance(v, dict) for c, v in cameras.items()
        ):
            problems.append(f"{where}.cameras: expected an object of camera number -> counts")
            continue
        camera_images = []
        for cam, counts in cameras.items():
            for key in sorted(set(counts) - set(_COUNT_KEYS)):
                problems.append(f"{where}.cameras.{cam}.{key}: unknown field")
            for key in _COUNT_KEYS:
                if key in counts and not _is_count(counts[key]):
                    problems.append(f"{where}.cameras.{cam}.{key}: expected a non-negative integer")
            cam_ids = counts.get("ids")
            for bound_name, bound in (("ids", entry.get("ids")), ("split.ids", ids)):
                if _is_count(cam_ids) and _is_count(bound) and cam_ids > bound:
                    problems.append(
                        f"{where}.cameras.{cam}.ids: {cam_ids} is more than {bound_name} ({bound})"
                    )
            camera_images.append(counts.get("images") if _is_count(counts.get("images")) else None)
        if (
            cameras
            and None not in camera_images
            and _is_count(entry.get("images"))
            and sum(camera_images) != entry["images"]
        ):
            problems.append(
                f"{where}: cameras hold {sum(camera_images)} images, images says {entry['images']}"
            )
    if (
        len(modality_images) == 2
        and None not in modality_images
        and _is_count(split.get("images"))
        and sum(modality_images) != split["images"]
    ):
        problems.append(
            f"split: modalities hold {sum(modality_images)} images, split.images says "
            f"{split['images']}"
        )
    galleries = split.get("galleries", [])
    if not isinstance(galleries, list):
        problems.append("split.galleries: expected a list")
        galleries = []
    for k, gallery in enumerate(galleries):
        where = f"split.galleries.{k}"
        if not isinstance(gallery, dict) or gallery.get("modality") not in MODALITY_CODES:
            problems.append(f"{where}: expected an object with modality visible or infrared")
            continue
        cams = gallery.get("cameras")
        if not isinstance(cams, list) or not cams or not all(_is_count(c) for c in cams):
            problems.append(f"{where}.cameras: expected a list of camera numbers")
            continue
        known = modalities.get(gallery["modality"], {}).get("cameras")
        if isinstance(known, dict) and known and not {str(c) for c in cams} <= set(known):
            problems.append(f"{where}.cameras: not all cameras of {gallery['modality']}")
        size = gallery.get("images_per_trial")
        if size is None:
            continue
        if not _is_count(size):
            problems.append(f"{where}.images_per_trial: expected a non-negative integer")
            continue
        if ids is not None and size > ids * len(cams):
            problems.append(
                f"{where}.images_per_trial: {size} is more than one image per id and camera "
                f"({ids} x {len(cams)})"
            )
        if isinstance(known, dict):
            per_cam = [known.get(str(c), {}).get("ids") for c in cams]
            if None not in per_cam and sum(per_cam) != size:
                problems.append(
                    f"{where}.images_per_trial: {size}, but its cameras hold "
                    f"{sum(per_cam)} (identity, camera) pairs"
                )
    recorded = dict(manifest.recorded())
    for path in recorded:
        if path not in manifest.sources:
            problems.append(f"{path}: recorded without a source (sources)")
    for path in manifest.sources:
        if path not in recorded:
            problems.append(f"sources: {path!r} names no recorded field")
    return problems


# ----------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class CanonicalReport:
    """How a dump compares with its dataset's canonical test set.

    Attributes:
        dataset: the manifest's dataset.
        differences: one phrase per difference (empty: the canonical test set).
        checked: how many recorded counts and lists were compared.
        unverified: how many fields the manifest could not establish (not checked).
    """

    dataset: str
    differences: tuple[str, ...]
    checked: int
    unverified: int

    @property
    def canonical(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        """``canonical test set: yes (...)`` or ``canonical test set: no: DIFF; DIFF``."""
        if self.canonical:
            return (
                f"canonical test set: yes ({self.checked} recorded count(s) of the "
                f"{self.dataset} manifest match; {self.unverified} unverified, see "
                "docs/datasets.md)"
            )
        return f"canonical test set: no: {'; '.join(self.differences)}"


def _ids_text(values: list[int]) -> str:
    shown = ", ".join(str(v) for v in values[:_SHOWN])
    more = len(values) - _SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _count_difference(what: str, got: int, want: int, noun: str = "images") -> str | None:
    if got == want:
        return None
    delta = got - want
    side = f"{delta} extra" if delta > 0 else f"{-delta} missing"
    return f"{what}: {got} {noun}, canonical {want} ({side})"


def compare_with_manifest(
    dump: FeatureDump, manifest: Manifest | None = None
) -> CanonicalReport | None:
    """Compare a loaded dump's labels with a manifest (default: its dataset's packaged one).

    Returns None when no manifest applies (a dataset without one). Differences, each one
    phrase: the number of splits; missing and extra ids (by id when the manifest lists
    them, else the count); extra or missing images in the split, per modality and per
    camera; cameras the canonical test set does not have; identity counts; single-shot
    gallery sizes per trial. Only what the manifest records is compared.
    """
    manifest = manifest if manifest is not None else packaged_manifest(dump.dataset)
    if manifest is None:
        return None
    differences: list[str] = []
    recorded = dict(manifest.recorded())
    if len(dump.splits) != manifest.splits:
        differences.append(
            f"{len(dump.splits)} split(s), canonical {manifest.splits}"
            + (" (one per trial)" if manifest.splits > 1 else "")
        )
    for k, split in enumerate(dump.splits):
        prefix = f"trials/{k}: " if dump.has_trial_splits else ""
        differences.extend(prefix + d for d in _split_differences(split, manifest.split))
    return CanonicalReport(
        dataset=manifest.dataset,
        differences=tuple(differences),
        checked=len(recorded),
        unverified=len(manifest.unverified),
    )


def _split_differences(split, spec: dict[str, Any]) -> list[str]:
    out: list[str] = []
    pid = np.asarray(split.pid)
    cam = np.asarray(split.cam)
    modality = np.asarray(split.modality)
    dump_ids = np.unique(pid)
    if "id_list" in spec:
        wanted = set(spec["id_list"])
        have = set(dump_ids.tolist())
        missing, extra = sorted(wanted - have), sorted(have - wanted)
        if missing:
            out.append(f"{len(missing)} missing id(s): {_ids_text(missing)}")
        if extra:
            out.append(f"{len(extra)} extra id(s): {_ids_text(extra)}")
    elif "ids" in spec:
        diff = _count_difference("ids", int(dump_ids.size), spec["ids"], "ids")
        if diff:
            out.append(diff)
    if "images" in spec:
        diff = _count_difference("split", int(pid.size), spec["images"])
        if diff:
            out.append(diff)
    modalities = spec.get("modalities", {})
    for name, code in MODALITY_CODES.items():
        entry = modalities.get(name)
        if entry is None:
            continue
        mask = modality == code
        if "images" in entry:
            diff = _count_difference(name, int(mask.sum()), entry["images"])
            if diff:
                out.append(diff)
        if "ids" in entry:
            diff = _count_difference(name, int(np.unique(pid[mask]).size), entry["ids"], "ids")
            if diff:
                out.append(diff)
        cameras = entry.get("cameras")
        if cameras is None:
            continue
        for value in np.unique(cam[mask]).tolist():
            if str(value) not in cameras:
                count = int((mask & (cam == value)).sum())
                out.append(
                    f"{name} camera {value}: {count} images, not a camera of the canonical "
                    f"test set (cameras {', '.join(sorted(cameras, key=int))})"
                )
        for key, counts in sorted(cameras.items(), key=lambda item: int(item[0])):
            on_cam = mask & (cam == int(key))
            if "images" in counts:
                diff = _count_difference(
                    f"{name} camera {key}", int(on_cam.sum()), counts["images"]
                )
                if diff:
                    out.append(diff)
            if "ids" in counts:
                diff = _count_difference(
                    f"{name} camera {key}", int(np.unique(pid[on_cam]).size), counts["ids"], "ids"
                )
                if diff:
                    out.append(diff)
    for gallery in spec.get("galleries", []):
        if "images_per_trial" not in gallery:
            continue
        code = MODALITY_CODES[gallery["modality"]]
        mask = (modality == code) & np.isin(cam, gallery["cameras"])
        pairs = np.unique(np.stack([pid[mask], cam[mask]], axis=1), axis=0) if mask.any() else []
        diff = _count_difference(
            f"{gallery.get('name', 'gallery')} gallery",
            len(pairs),
            gallery["images_per_trial"],
            "images per trial",
        )
        if diff:
            out.append(diff)
    return out
