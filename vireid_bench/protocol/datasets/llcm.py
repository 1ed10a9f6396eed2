"""LLCM: indexer, gallery sampler and the scoring convention (DEEN's evaluation).

Layout of an LLCM root (as DEEN's ``data_manager.py`` reads it)::

    idx/test_id.txt                          comma-separated test ids, one line
    idx/train_vis.txt, idx/train_nir.txt     training lists, one 'path label' per line
    test_vis/cam<k>/<pid:04d>/<file>         visible test images, k = 1..9
    test_nir/cam<k>/<pid:04d>/<file>         near-infrared test images, k = 1, 2, 4..9

Cameras record both modalities: ``test_vis/cam2`` and ``test_nir/cam2`` are the same
camera, and the dump gives both the camera id 2.

Community protocol (DEEN ``test.py``, ``data_manager.py``, ``eval_metrics.py``):

* I->V (``test_mode = [1, 2]``): query = every near-infrared test image (id by id, cameras
  1, 2, 4..9, files sorted); gallery per trial ``t`` in 0..9: ``random.seed(t)``, for each
  id (ascending), for each visible camera 1..9 with a folder, ``random.choice`` of the
  sorted files;
* V->I (``test_mode = [2, 1]``): DEEN samples the *near-infrared* images (one per id and
  camera, same loop) and ranks them against *every* visible test image (its ``test.py``
  swaps the roles before ``eval_llcm``). That is the default here (``v2i="deen"``), so
  published V->I numbers are reproduced; ``v2i="visible-queries"`` ranks every visible
  image against a sampled near-infrared gallery instead;
* ranking (``eval_llcm``): gallery images of the query's identity *and* camera are
  removed; CMC counts identities, mAP and mINP images; 10 trials averaged.

Mixed and uni-modal settings: the query set is every test image of the query modality,
the pool one image per id and camera folder of both modalities (visible cameras, then
near-infrared ones), sampled as above. Mix-Cam and Mix-Cam-ID are not reported for LLCM
(the paper reports them for SYSU-MM01 only); ``camera_settings=True`` evaluates them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from pathlib import Path

from vireid_bench.errors import DatasetError, ProtocolError
from vireid_bench.io.dump import INFRARED, VISIBLE, FeatureDump
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
    GroupCache,
    ImageGroups,
    agw_sample,
    as_index,
    group_images,
    list_images,
    read_id_list,
    read_split_list,
    require_dir,
    require_file,
    single_split,
    table,
)

DATASET = "llcm"
VISIBLE_CAMERAS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
INFRARED_CAMERAS = (1, 2, 4, 5, 6, 7, 8, 9)
"""DEEN's ``process_query_llcm`` / ``process_gallery_llcm`` camera lists (no NIR camera 3)."""
TEST_FOLDERS = {"test_vis": (VISIBLE, VISIBLE_CAMERAS), "test_nir": (INFRARED, INFRARED_CAMERAS)}
TRAIN_LISTS = {"idx/train_vis.txt": VISIBLE, "idx/train_nir.txt": INFRARED}
TRIALS = 10
V2I_RULES = ("deen", "visible-queries")
V2I_DIRECTIONS = {
    "deen": "v2i (DEEN test.py mode: infrared queries, visible gallery)",
    "visible-queries": "v2i (visible queries, sampled infrared gallery)",
}
"""The ``direction`` field of the cross-modal visible-query row, per V->I rule."""
_CAMERA_IN_NAME = re.compile(r"_c(\d+)_")
_CAMERA_FOLDER = re.compile(r"^cam(\d+)$")

# ----------------------------------------------------------------------------- indexer


def index_llcm(root: str | os.PathLike, split: str = "test"):
    """List LLCM's test images (from the folders) or training images (from the lists).

    Test rows go id by id (ascending), visible cameras 1..9 then near-infrared cameras
    1, 2, 4..9, files sorted by name; ``path`` is ``test_vis|test_nir/cam<k>/<pid>/<file>``.
    Camera folders outside DEEN's lists are left out with a warning, as DEEN ignores them.
    Training rows follow ``idx/train_vis.txt`` then ``idx/train_nir.txt``: ``pid`` is the
    listed label, ``cam`` read from the file name (``<pid>_c<k>_...``) or a ``cam<k>``
    folder.

    Args:
        split: ``test`` (default) or ``train``.

    Raises:
        DatasetError: naming the missing or unreadable file or folder, a test id with no
            image, or a listed training image that does not exist.
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: folder missing")
    if split == "train":
        return _index_train(base)
    if split != "test":
        raise DatasetError(f"unknown LLCM split {split!r} (valid: test, train)")
    ids = read_id_list(require_file(base, "idx/test_id.txt", "LLCM"))
    for folder in TEST_FOLDERS:
        _warn_unused_cameras(require_dir(base, folder, "LLCM"), TEST_FOLDERS[folder][1])
    rows = []
    for pid in sorted(ids):
        found = 0
        for folder, (modality, cameras) in TEST_FOLDERS.items():
            for cam in cameras:
                directory = base / folder / f"cam{cam}" / f"{pid:04d}"
                if directory.is_dir():
                    files = list_images(directory, base)
                    found += len(files)
                    rows.extend((path, pid, cam, modality) for path in files)
        if not found:
            raise DatasetError(
                f"{base}: idx/test_id.txt lists id {pid:04d}, but no "
                f"test_vis|test_nir/cam<k>/{pid:04d} folder holds an image of it"
            )
    return table(rows)


def _warn_unused_cameras(folder: Path, cameras: tuple[int, ...]) -> None:
    for entry in sorted(os.listdir(folder)):
        match = _CAMERA_FOLDER.match(entry)
        if (folder / entry).is_dir() and match and int(match.group(1)) not in cameras:
            warnings.warn(
                f"{folder / entry}: left out, as DEEN's evaluation reads only cameras "
                f"{', '.join(map(str, cameras))} of {folder.name}",
                stacklevel=3,
            )


def _index_train(base: Path):
    rows = []
    for relative, modality in TRAIN_LISTS.items():
        listing = require_file(base, relative, "LLCM")
        for path, label in read_split_list(listing):
            if not (base / path).is_file():
                raise DatasetError(f"{listing}: lists {path}, which does not exist under {base}")
            rows.append((path, label, _train_camera(listing, path), modality))
    return table(rows)


def _train_camera(listing: Path, path: str) -> int:
    parts = path.replace("\\", "/").split("/")
    match = _CAMERA_IN_NAME.search(parts[-1])
    if match:
        return int(match.group(1))
    for part in parts[:-1]:
        folder = _CAMERA_FOLDER.match(part)
        if folder:
            return int(folder.group(1))
    raise DatasetError(f"{listing}: no camera in {path} (expected <pid>_c<k>_... or cam<k>/)")


# ----------------------------------------------------------------------------- convention

_FOLDER_MODALITY = {name: modality for name, (modality, _) in TEST_FOLDERS.items()}


def _parse_path(parts: list[str]) -> tuple[int, tuple[int, int], int, int, str]:
    """``.../test_vis|test_nir/cam<k>/<pid>/<file>`` -> (pid, (modality, k), k, modality, file)."""
    if len(parts) < 4 or parts[-4] not in _FOLDER_MODALITY or not parts[-2].isdigit():
        raise ValueError("not test_vis|test_nir/cam<k>/<pid>/<file>")
    match = _CAMERA_FOLDER.match(parts[-3])
    if match is None:
        raise ValueError("no cam<k> folder")
    modality = _FOLDER_MODALITY[parts[-4]]
    cam = int(match.group(1))
    if cam not in TEST_FOLDERS[parts[-4]][1]:
        raise ValueError(f"camera {cam} is not evaluated")
    return int(parts[-2]), (modality, cam), cam, modality, parts[-1]


VISIBLE_FOLDERS = tuple((VISIBLE, cam) for cam in VISIBLE_CAMERAS)
INFRARED_FOLDERS = tuple((INFRARED, cam) for cam in INFRARED_CAMERAS)


class LLCMConvention(Convention):
    """LLCM as DEEN evaluates it; see the module docstring.

    Args:
        v2i: ``"deen"`` (default: sampled near-infrared images ranked against every
            visible image, as DEEN's ``test.py`` computes its V->I numbers) or
            ``"visible-queries"`` (every visible image ranked against a sampled
            near-infrared gallery) for the cross-modal visible-query rows.
        camera_settings: evaluate Mix-Cam and Mix-Cam-ID (not reported by default).
    """

    name = DATASET
    default_cmc = "identity"

    def __init__(self, v2i: str = "deen", camera_settings: bool = False) -> None:
        if v2i not in V2I_RULES:
            raise ProtocolError(f"unknown LLCM V->I rule {v2i!r} (valid: {', '.join(V2I_RULES)})")
        self.v2i = v2i
        self.camera_settings = camera_settings
        self._groups = GroupCache()

    def variants(self, preset: Preset) -> list[str]:
        """One unnamed variant per preset (``llcm-*`` presets included)."""
        check_dataset_preset(preset, self.name)
        return [""]

    def direction(self, preset: Preset, query_modality: int) -> str:
        """The cross-modal visible-query row (``llcm-v2i``) says what its queries are: with
        ``v2i="deen"`` they are sampled near-infrared images ranked against every visible
        image, although the row's key keeps ``query_modality: visible`` (the setting's
        direction; the I->V row's key stays distinct)."""
        if base_setting(preset) != "cross" or query_modality != VISIBLE:
            return ""
        return V2I_DIRECTIONS[self.v2i]

    def adapt_preset(self, preset: Preset) -> Preset:
        """Cross: remove the other modality's images of the query's identity and camera.

        ``eval_llcm`` removes gallery images with the query's pid *and* camera id; LLCM
        numbers cameras alike in both modalities, so these are cross-modal images of the
        same camera. The generic cross rule would remove every same-camera image.
        """
        if base_setting(preset) == "cross":
            return dataclasses.replace(
                preset,
                clauses=(Clause(modality="same"), Clause(camera="same", identity="same")),
            )
        return preset

    def not_applicable(self, dump: FeatureDump, preset: Preset, query_modality: int) -> str | None:
        """Mix-Cam and Mix-Cam-ID are not reported for LLCM unless ``camera_settings``."""
        if preset.requires_multiple_cameras_per_modality and not self.camera_settings:
            return "not reported for LLCM (the paper reports it for SYSU-MM01 only)"
        return super().not_applicable(dump, preset, query_modality)

    def groups(self, dump: FeatureDump) -> ImageGroups:
        """Return the dump's images grouped by (id, (modality, camera)), files sorted."""
        index = single_split(dump)
        return self._groups.get(
            dump,
            index,
            lambda: group_images(dump, index, _parse_path, "test_vis|test_nir/cam<k>/<pid>/<file>"),
        )

    def plans(
        self,
        dump: FeatureDump,
        preset: Preset,
        variant: str,
        query_modality: int,
        trials: int | None = None,
    ) -> list[EvaluationPlan]:
        """One plan per trial (10): query set and pool as the module docstring says."""
        groups = self.groups(dump)
        count = TRIALS if trials is None else min(trials, TRIALS)
        own = INFRARED_FOLDERS if query_modality == INFRARED else VISIBLE_FOLDERS
        other = VISIBLE_FOLDERS if query_modality == INFRARED else INFRARED_FOLDERS
        every = groups.listing(groups.ids, own)
        plans = []
        for trial in range(count):
            if preset.gallery_modality != "opposite":
                queries = every
                pool = agw_sample(groups, VISIBLE_FOLDERS + INFRARED_FOLDERS, trial)
            elif query_modality == VISIBLE and self.v2i == "deen":
                queries = agw_sample(groups, INFRARED_FOLDERS, trial)
                pool = groups.listing(groups.ids, VISIBLE_FOLDERS)
            else:
                queries = every
                pool = agw_sample(groups, other, trial)
            plans.append(
                EvaluationPlan(
                    split=0, trial=trial, query_idx=as_index(queries), pool_idx=as_index(pool)
                )
            )
        return plans


register_convention(LLCMConvention())

register_dataset_preset(
    DatasetPreset(
        name="llcm-i2v",
        dataset=DATASET,
        variant="",
        query_modalities=("infrared",),
        description="LLCM infrared to visible",
    )
)
register_dataset_preset(
    DatasetPreset(
        name="llcm-v2i",
        dataset=DATASET,
        variant="",
        query_modalities=("visible",),
        description="LLCM visible to infrared",
    )
)
