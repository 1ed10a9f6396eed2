"""SYSU-MM01: indexer, the AGW and official gallery samplers, and the scoring convention.

Layout of a SYSU-MM01 root (as distributed)::

    cam1/ .. cam6/<pid:04d>/<n:04d>.jpg    visible cameras 1, 2, 4, 5; infrared 3, 6
    exp/train_id.txt, exp/val_id.txt, exp/test_id.txt   comma-separated ids, one line
    exp/rand_perm_cam.mat                  official per-trial permutations (optional)

Community protocol (AGW ``Cross-Modal-Re-ID-baseline``: ``data_manager.py``,
``eval_metrics.py``, ``test.py``; see docs/datasets.md for the line-by-line facts):

* query: every test image of cameras 3 and 6, id by id (ascending), camera 3 then 6, files
  sorted by name;
* gallery, per trial ``t`` in 0..9: ``random.seed(t)``; for each test id (ascending), for
  each visible camera of the mode (all: 1, 2, 4, 5; indoor: 1, 2) with a folder for that
  id, ``random.choice`` of the sorted file list;
* ranking: a camera-3 query does not see any camera-2 gallery image (co-located cameras);
  CMC counts identities (each gallery identity at its closest image); mAP and mINP count
  images; the 10 trials are averaged.

This module adds what the community code does not define, in the same style: the visible
query (V->I: every test image of the mode's visible cameras, gallery sampled from cameras
3 and 6), multi-shot (``random.sample`` of 10 per id and camera, all of them when fewer),
the official sampler (``rand_perm_cam.mat``: the first ``shots`` entries of trial ``t``'s
permutation for each camera and id, camera by camera) and the mixed and uni-modal settings
(the query set of the cross-modal protocol; the pool sampled per trial by the same sampler
from the mode's cameras of both modalities, in camera-number order).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from vireid_bench.errors import DatasetError, ProtocolError
from vireid_bench.io.dump import INFRARED, VISIBLE, FeatureDump
from vireid_bench.protocol.canonical import compare_with_manifest
from vireid_bench.protocol.conventions import (
    Convention,
    DatasetPreset,
    EvaluationPlan,
    base_setting,
    check_dataset_preset,
    register_convention,
    register_dataset_preset,
)
from vireid_bench.protocol.presets import Clause, Preset

from .common import (
    SAMPLERS,
    GroupCache,
    ImageGroups,
    agw_sample,
    as_index,
    group_images,
    list_images,
    read_id_list,
    require_dir,
    require_file,
    single_split,
    table,
)

DATASET = "sysu-mm01"
CAMERAS = (1, 2, 3, 4, 5, 6)
VISIBLE_CAMERAS = (1, 2, 4, 5)
INFRARED_CAMERAS = (3, 6)
CAMERA_MODALITY = {1: VISIBLE, 2: VISIBLE, 3: INFRARED, 4: VISIBLE, 5: VISIBLE, 6: INFRARED}
MODES = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
"""Visible cameras of each search mode (AGW ``process_gallery_sysu``, SYSU kit)."""
TRIALS = 10
MULTI_SHOTS = 10
COLOCATED_RULES = ("any", "same-id")
SPLITS = {
    "test": ("test_id.txt",),
    "train": ("train_id.txt",),
    "val": ("val_id.txt",),
    "trainval": ("train_id.txt", "val_id.txt"),
}
"""Index splits and their id files; ``trainval`` is the set AGW trains on."""

# ----------------------------------------------------------------------------- indexer


def index_sysu(root: str | os.PathLike, split: str = "test"):
    """List a SYSU-MM01 split's images as an index table.

    Rows go id by id (ascending), camera 1 to 6, files sorted by name; ``path`` is
    ``cam<k>/<pid:04d>/<file>``, ``modality`` 0 for cameras 1, 2, 4, 5 and 1 for 3, 6.

    Args:
        root: the dataset root (the folder holding ``cam1`` .. ``cam6`` and ``exp``).
        split: ``test`` (default), ``train``, ``val`` or ``trainval``.

    Returns:
        A DataFrame with columns ``path``, ``pid``, ``cam``, ``modality``.

    Raises:
        DatasetError: naming the missing or unreadable file or folder, or an id the id
            file lists that has no image in any camera.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown SYSU-MM01 split {split!r} (valid: {', '.join(SPLITS)})")
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: folder missing")
    id_files = [require_file(base, f"exp/{name}", "SYSU-MM01") for name in SPLITS[split]]
    for cam in CAMERAS:
        require_dir(base, f"cam{cam}", "SYSU-MM01")
    ids: list[int] = []
    for id_file in id_files:
        ids.extend(read_id_list(id_file))
    rows = []
    for pid in sorted(set(ids)):
        found = 0
        for cam in CAMERAS:
            folder = base / f"cam{cam}" / f"{pid:04d}"
            if folder.is_dir():
                files = list_images(folder, base)
                found += len(files)
                rows.extend((path, pid, cam, CAMERA_MODALITY[cam]) for path in files)
        if not found:
            listed = " and ".join(f"exp/{name}" for name in SPLITS[split])
            raise DatasetError(
                f"{base}: {listed} lists id {pid:04d}, but no cam1..cam6/{pid:04d} folder "
                "holds an image of it"
            )
    return table(rows)


# ----------------------------------------------------------------------------- official


def load_rand_perm(path: str | os.PathLike) -> dict[tuple[int, int], np.ndarray]:
    """Read SYSU-MM01's ``rand_perm_cam.mat`` (the official evaluation's permutations).

    The file holds ``rand_perm_cam``, a 6x1 MATLAB cell (one per camera) of cells indexed
    by person id (1-based), each a [trials x images] matrix of 1-based image numbers, or
    empty where the person has no image in that camera (SYSU-MM01 ``get_testing_set.m``).

    Returns:
        (camera, pid) -> int64 [trials, images] image numbers, for the non-empty entries.

    Raises:
        DatasetError: naming the file when it is unreadable or not in that structure.
    """
    from scipy.io import loadmat

    source = os.fspath(path)
    try:
        content = loadmat(source)
    except FileNotFoundError as exc:
        raise DatasetError(f"{source}: file missing") from exc
    except Exception as exc:  # scipy raises many kinds on a damaged or v7.3 file
        raise DatasetError(f"{source}: cannot be read as a MATLAB v5 file ({exc})") from exc
    if "rand_perm_cam" not in content:
        raise DatasetError(f"{source}: no variable 'rand_perm_cam'")
    cameras = np.asarray(content["rand_perm_cam"], dtype=object).reshape(-1)
    if cameras.size != len(CAMERAS):
        raise DatasetError(
            f"{source}: rand_perm_cam holds {cameras.size} cells, expected {len(CAMERAS)} cameras"
        )
    perms: dict[tuple[int, int], np.ndarray] = {}
    for cam, cell in zip(CAMERAS, cameras, strict=True):
        entries = np.asarray(cell, dtype=object).reshape(-1)
        for pid, entry in enumerate(entries, start=1):
            try:
                matrix = np.asarray(entry, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise DatasetError(
                    f"{source}: rand_perm_cam{{{cam}}}{{{pid}}} is not a numeric matrix"
                ) from exc
            if matrix.size == 0:
                continue
            matrix = np.atleast_2d(matrix)
            if matrix.ndim != 2 or np.any(matrix < 1) or np.any(matrix != np.round(matrix)):
                raise DatasetError(
                    f"{source}: rand_perm_cam{{{cam}}}{{{pid}}} is not a matrix of image numbers"
                )
            perms[(cam, pid)] = matrix.astype(np.int64)
    if not perms:
        raise DatasetError(f"{source}: rand_perm_cam holds no permutation")
    return perms


def official_sample(
    groups: ImageGroups,
    perms: dict[tuple[int, int], np.ndarray],
    cameras: tuple[int, ...],
    trial: int,
    shots: int,
    source: str = "rand_perm_cam.mat",
) -> list[int]:
    """Sample a gallery as SYSU-MM01's own evaluation does (``get_testing_set.m``).

    Camera by camera (in the given order), id by id (ascending): the first ``shots``
    image numbers of row ``trial`` of the id's permutation (all of them when fewer);
    image number ``n`` is the file ``<n:04d>.<ext>`` of that camera and id folder, as the
    Python ports of the kit name it. Ids without a permutation in a camera are skipped.

    Raises:
        DatasetError: when the file has fewer trials, or names an image the dump lacks.
    """
    out: list[int] = []
    for cam in cameras:
        for pid in groups.ids:
            perm = perms.get((cam, pid))
            if perm is None:
                continue
            if trial >= perm.shape[0]:
                raise DatasetError(
                    f"{source}: camera {cam}, id {pid:04d}: {perm.shape[0]} trials, "
                    f"trial {trial + 1} asked for"
                )
            stems = groups.stems.get((pid, cam), {})
            for number in perm[trial, :shots]:
                row = stems.get(f"{int(number):04d}")
                if row is None:
                    raise DatasetError(
                        f"{source}: trial {trial + 1}, camera {cam}, id {pid:04d} names image "
                        f"{int(number):04d}, which the dump does not hold "
                        f"(cam{cam}/{pid:04d}/{int(number):04d}.*)"
                    )
                out.append(row)
    return out


# ----------------------------------------------------------------------------- convention


def _parse_path(parts: list[str]) -> tuple[int, int, int, int, str]:
    """``.../cam<k>/<pid>/<file>`` -> (pid, folder = camera, camera, modality, file)."""
    if len(parts) < 3 or not parts[-3].startswith("cam") or not parts[-2].isdigit():
        raise ValueError("not cam<k>/<pid>/<file>")
    cam = int(parts[-3][3:])
    if cam not in CAMERA_MODALITY:
        raise ValueError(f"no camera {cam}")
    return int(parts[-2]), cam, cam, CAMERA_MODALITY[cam], parts[-1]


VALIDATION = "val"
"""Leading token of the validation variants (``val-all``: the ``sysu-val-*`` protocols)."""


def is_validation(variant: str) -> bool:
    """Whether a SYSU variant label is a validation one (``val-all``, ``val-indoor``)."""
    return variant.split("-")[0] == VALIDATION


def _variant_label(mode: str, shots: int, sampler: str, validation: bool = False) -> str:
    tokens = [VALIDATION, mode] if validation else [mode]
    if shots == MULTI_SHOTS:
        tokens.append("multi")
    elif shots != 1:
        tokens.append(f"{shots}shot")
    if sampler != "agw":
        tokens.append(sampler)
    return "-".join(tokens)


def parse_variant(variant: str) -> tuple[str, int, str]:
    """Read a SYSU variant label (``all``, ``indoor-multi``, ``all-official``) back.

    A validation label (``val-all``) reads as its mode (see :func:`is_validation`).

    Returns:
        (mode, shots, sampler).

    Raises:
        ProtocolError: for a label this convention does not write.
    """
    tokens = variant.split("-") if variant else ["all"]
    if tokens[0] == VALIDATION and len(tokens) > 1:
        tokens = tokens[1:]
    mode, shots, sampler = tokens[0], 1, "agw"
    if mode not in MODES:
        raise ProtocolError(f"unknown SYSU-MM01 variant {variant!r} (mode all or indoor)")
    for token in tokens[1:]:
        if token == "multi":
            shots = MULTI_SHOTS
        elif token.endswith("shot") and token[:-4].isdigit() and int(token[:-4]) > 0:
            shots = int(token[:-4])
        elif token in SAMPLERS:
            sampler = token
        else:
            raise ProtocolError(f"unknown SYSU-MM01 variant {variant!r}")
    return mode, shots, sampler


class SYSUConvention(Convention):
    """SYSU-MM01 as the community evaluates it (AGW by default); see the module docstring.

    Args:
        sampler: ``"agw"`` (``random.seed(trial)``) or ``"official"``
            (``rand_perm_cam.mat``). Default (None): AGW's for single-shot; for multi-shot
            the official one when ``rand_perm`` is given, else multi-shot is refused
            (published multi-shot numbers use the official splits; ``sampler="agw"``
            asks for the AGW-seeded multi-shot sampler explicitly).
        shots: gallery images per id and camera for the default variants (1, or 10 for
            multi-shot); the ``sysu-*-multi`` presets ask for 10 themselves.
        colocated_rule: ``"any"`` (AGW, default: a camera-3 query sees no camera-2 image,
            and a camera-2 query no camera-3 image) or ``"same-id"`` (only the query
            person's images of the co-located camera are removed) for the cross setting.
        rand_perm: ``rand_perm_cam.mat`` path, or its :func:`load_rand_perm` content;
            required by the official sampler.
    """

    name = DATASET
    default_cmc = "identity"
    colocated_cameras = ((2, 3),)

    def __init__(
        self,
        sampler: str | None = None,
        shots: int = 1,
        colocated_rule: str = "any",
        rand_perm: str | os.PathLike | dict[tuple[int, int], np.ndarray] | None = None,
    ) -> None:
        self.sampler_given = sampler
        sampler = sampler or "agw"
        if sampler not in SAMPLERS:
            raise ProtocolError(f"unknown sampler {sampler!r} (valid: {', '.join(SAMPLERS)})")
        if shots < 1:
            raise ProtocolError(f"shots must be at least 1, got {shots}")
        if colocated_rule not in COLOCATED_RULES:
            raise ProtocolError(
                f"unknown co-located camera rule {colocated_rule!r} "
                f"(valid: {', '.join(COLOCATED_RULES)})"
            )
        self.sampler = sampler
        self.shots = shots
        self.colocated_rule = colocated_rule
        self.rand_perm_source = "rand_perm_cam.mat"
        if isinstance(rand_perm, dict):
            self.rand_perm: dict[tuple[int, int], np.ndarray] | None = rand_perm
        elif rand_perm is not None:
            self.rand_perm_source = os.fspath(rand_perm)
            self.rand_perm = load_rand_perm(rand_perm)
        else:
            self.rand_perm = None
        if sampler == "official" and self.rand_perm is None:
            raise ProtocolError(
                "the official SYSU-MM01 sampler needs exp/rand_perm_cam.mat (rand_perm=...)"
            )
        self._groups = GroupCache()

    def variants(self, preset: Preset) -> list[str]:
        """Cross-modal settings: ``all`` and ``indoor``; others ``all``; ``sysu-*`` their own.

        Labels gain ``-multi`` for 10 shots and ``-official`` for the official sampler.
        """
        entry = check_dataset_preset(preset, self.name)
        if entry is not None:
            mode, shots, _ = parse_variant(entry.variant)
            validation = is_validation(entry.variant)
            return [_variant_label(mode, shots, self.sampler_for(shots), validation)]
        modes = ("all", "indoor") if preset.gallery_modality == "opposite" else ("all",)
        sampler = self.sampler_for(self.shots)
        return [_variant_label(mode, self.shots, sampler) for mode in modes]

    def sampler_for(self, shots: int) -> str:
        """The sampler used for ``shots`` images per (id, camera).

        Raises:
            ProtocolError: multi-shot with no sampler named and no ``rand_perm``.
        """
        if shots == 1 or self.sampler_given is not None:
            return self.sampler
        if self.rand_perm is not None:
            return "official"
        raise ProtocolError(
            "SYSU-MM01 multi-shot: published multi-shot numbers (SAAI, MPANet, the MixER "
            "authors' ContPartReid) use the official exp/rand_perm_cam.mat splits; give "
            "--rand-perm PATH (rand_perm=...), or --sampler agw (sampler='agw') for the "
            "AGW-seeded multi-shot sampler, which no published code uses"
        )

    def adapt_preset(self, preset: Preset) -> Preset:
        """With ``colocated_rule="same-id"``, cross removes only same-id co-located images."""
        if self.colocated_rule == "same-id" and base_setting(preset) == "cross":
            return dataclasses.replace(
                preset,
                clauses=(
                    Clause(modality="same"),
                    Clause(camera="same", identity="same"),
                ),
            )
        return preset

    def groups(self, dump: FeatureDump) -> ImageGroups:
        """Return the dump's images grouped by (id, camera), files sorted by name."""
        index = single_split(dump)
        return self._groups.get(
            dump, index, lambda: group_images(dump, index, _parse_path, "cam<k>/<pid>/<file>")
        )

    def plans(
        self,
        dump: FeatureDump,
        preset: Preset,
        variant: str,
        query_modality: int,
        trials: int | None = None,
    ) -> list[EvaluationPlan]:
        """One plan per trial: the protocol's query set and the trial's sampled pool.

        Queries: every image of the query modality's cameras (infrared: 3, 6; visible:
        the mode's), id by id, camera by camera, file by file. Pool: sampled from the other
        modality's cameras (gallery modality ``opposite``) or from the mode's cameras of
        both modalities (``mixed``, ``same``), in camera-number order.
        """
        mode, shots, sampler = parse_variant(variant)
        if is_validation(variant):
            check_validation_dump(dump)
        groups = self.groups(dump)
        visible = MODES[mode]
        query_cams = INFRARED_CAMERAS if query_modality == INFRARED else visible
        if preset.gallery_modality == "opposite":
            pool_cams = visible if query_modality == INFRARED else INFRARED_CAMERAS
        else:
            pool_cams = tuple(sorted(visible + INFRARED_CAMERAS))
        queries = as_index(groups.listing(groups.ids, query_cams))
        available = TRIALS
        if sampler == "official":
            if self.rand_perm is None:
                raise ProtocolError(
                    "the official SYSU-MM01 sampler needs exp/rand_perm_cam.mat (rand_perm=...)"
                )
            available = min(p.shape[0] for p in self.rand_perm.values())
        count = available if trials is None else min(trials, available)
        plans = []
        for trial in range(count):
            if sampler == "official":
                pool = official_sample(
                    groups, self.rand_perm, pool_cams, trial, shots, self.rand_perm_source
                )
            else:
                pool = agw_sample(groups, pool_cams, trial, shots)
            plans.append(
                EvaluationPlan(split=0, trial=trial, query_idx=queries, pool_idx=as_index(pool))
            )
        return plans


def check_validation_dump(dump: FeatureDump) -> None:
    """Refuse to score the test set under a validation protocol (``sysu-val-*``).

    A validation protocol is meant for a dump of the ``val`` split (``exp/val_id.txt``;
    ``vireid-bench index sysu-mm01 --split val``). A dump that is the canonical test set
    (it matches the packaged manifest: 96 identities, 3,803 infrared images, the
    single-shot gallery sizes; :mod:`vireid_bench.protocol.canonical`) is refused:
    numbers chosen on it are test numbers.

    Raises:
        ProtocolError: naming the dump when it is the canonical test set.
    """
    report = compare_with_manifest(dump)
    if report is not None and report.canonical:
        raise ProtocolError(
            f"{dump.source}: is the canonical SYSU-MM01 test set; the sysu-val-* protocols "
            "score the validation identities (exp/val_id.txt: 'vireid-bench index "
            "sysu-mm01 --split val'); use sysu-all-single for the test set"
        )


register_convention(SYSUConvention())

for _name, _variant, _words in (
    ("sysu-all-single", "all", "SYSU-MM01 all-search, single-shot"),
    ("sysu-indoor-single", "indoor", "SYSU-MM01 indoor-search, single-shot"),
    ("sysu-all-multi", "all-multi", "SYSU-MM01 all-search, multi-shot (10)"),
    ("sysu-indoor-multi", "indoor-multi", "SYSU-MM01 indoor-search, multi-shot (10)"),
    (
        "sysu-val-all",
        "val-all",
        "SYSU-MM01 validation ids (val_id.txt), all-search, single-shot",
    ),
    (
        "sysu-val-indoor",
        "val-indoor",
        "SYSU-MM01 validation ids (val_id.txt), indoor-search, single-shot",
    ),
):
    register_dataset_preset(
        DatasetPreset(
            name=_name,
            dataset=DATASET,
            variant=_variant,
            query_modalities=("infrared", "visible"),
            description=_words,
        )
    )
