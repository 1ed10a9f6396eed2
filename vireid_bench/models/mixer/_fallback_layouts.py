"""PRIVATE, TEMPORARY: walk the SYSU-MM01 / RegDB / LLCM layouts into image DataFrames.

Stands in for the dataset indexers (``vireid_bench/datasets/{sysu,regdb,llcm}.py``) until
they are merged; only :func:`vireid_bench.models.mixer.index.image_index` calls it. Delete
this module when ``image_index`` calls the real indexers.

Conventions (those of the public AGW / DEEN loaders): SYSU-MM01 visible cameras 1, 2, 4, 5,
infrared 3, 6, train = ``exp/train_id.txt`` + ``exp/val_id.txt``; RegDB camera 1 visible and
2 thermal, ids from the person folder; LLCM camera number from ``cam<k>`` (shared by both
modalities, one physical camera).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SYSU_INFRARED = (3, 6)


def _ids(path: Path) -> list[int]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    text = path.read_text().strip()
    return sorted(int(v) for v in text.replace("\n", ",").split(",") if v.strip())


def _images(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))


def _frame(rows: list[tuple[str, int, int, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["path", "pid", "cam", "modality"])
    return frame.astype({"pid": np.int64, "cam": np.int64, "modality": np.uint8})


def _sysu(root: Path, split: str) -> pd.DataFrame:
    if split == "train":
        ids = sorted(set(_ids(root / "exp/train_id.txt")) | set(_ids(root / "exp/val_id.txt")))
    else:
        ids = _ids(root / "exp/test_id.txt")
    rows = []
    for cam in range(1, 7):
        modality = 1 if cam in SYSU_INFRARED else 0
        for pid in ids:
            folder = f"cam{cam}/{pid:04d}"
            rows += [(f"{folder}/{n}", pid, cam, modality) for n in _images(root / folder)]
    return _frame(rows)


def _list_file(root: Path, name: str) -> list[str]:
    path = root / "idx" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _regdb(root: Path, split: str, trial: int) -> pd.DataFrame:
    rows = []
    for modality, name in ((0, "visible"), (1, "thermal")):
        for relative in _list_file(root, f"{split}_{name}_{trial}.txt"):
            pid = int(Path(relative).parts[1])
            rows.append((relative, pid, modality + 1, modality))
    return _frame(rows)


def _llcm(root: Path, split: str) -> pd.DataFrame:
    rows = []
    if split == "train":
        for modality, tag in ((0, "vis"), (1, "nir")):
            for relative in _list_file(root, f"train_{tag}.txt"):
                parts = Path(relative).parts
                rows.append((relative, int(parts[2]), int(parts[1][3:]), modality))
        return _frame(rows)
    ids = _ids(root / "idx/test_id.txt")
    for modality, tag in ((0, "vis"), (1, "nir")):
        base = root / f"test_{tag}"
        cams = sorted(
            int(d[3:]) for d in (os.listdir(base) if base.is_dir() else []) if d.startswith("cam")
        )
        for pid in ids:
            for cam in cams:
                folder = f"test_{tag}/cam{cam}/{pid:04d}"
                rows += [(f"{folder}/{n}", pid, cam, modality) for n in _images(root / folder)]
    return _frame(rows)


def index(dataset: str, root: Path, split: str, trial: int) -> pd.DataFrame:
    """Return the split's images (see :func:`vireid_bench.models.mixer.index.image_index`)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset root not found")
    if dataset == "sysu-mm01":
        return _sysu(root, split)
    if dataset == "regdb":
        if not 1 <= trial <= 10:
            raise ValueError(f"RegDB trial must be 1..10, got {trial}")
        return _regdb(root, split, trial)
    if dataset == "llcm":
        return _llcm(root, split)
    raise ValueError(f"unknown dataset {dataset!r} (valid: sysu-mm01, regdb, llcm)")
