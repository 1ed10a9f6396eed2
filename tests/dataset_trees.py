"""Build tiny dataset roots in SYSU-MM01, RegDB and LLCM's real layouts (empty image files).

Also: dumps from index tables, and a ``rand_perm_cam.mat`` in the official structure.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vireid_bench.io.dump import FeatureSplit, write_dump


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def make_sysu(
    root: Path,
    counts: Mapping[tuple[int, int], int],
    test_ids: list[int],
    train_ids: tuple[int, ...] = (901,),
    val_ids: tuple[int, ...] = (902,),
) -> Path:
    """SYSU-MM01 root: ``counts[(pid, cam)]`` files ``0001.jpg ..`` in ``cam<c>/<pid:04d>``.

    Training and validation ids get one image in camera 1 and one in camera 3.
    """
    for cam in range(1, 7):
        (root / f"cam{cam}").mkdir(parents=True, exist_ok=True)
    for (pid, cam), n in counts.items():
        for k in range(1, n + 1):
            touch(root / f"cam{cam}" / f"{pid:04d}" / f"{k:04d}.jpg")
    for pid in (*train_ids, *val_ids):
        for cam in (1, 3):
            touch(root / f"cam{cam}" / f"{pid:04d}" / "0001.jpg")
    (root / "exp").mkdir(exist_ok=True)
    (root / "exp" / "test_id.txt").write_text(",".join(map(str, test_ids)) + "\n")
    (root / "exp" / "train_id.txt").write_text(",".join(map(str, train_ids)) + "\n")
    (root / "exp" / "val_id.txt").write_text(",".join(map(str, val_ids)) + "\n")
    return root


def random_sysu_counts(rng: np.random.Generator, ids: list[int]) -> dict[tuple[int, int], int]:
    """Random images per (id, camera): camera 1 always (so indoor galleries keep every id
    after the camera-2 removal), other cameras with probability 0.75, 1-4 images each."""
    counts = {}
    for pid in ids:
        for cam in range(1, 7):
            if cam == 1 or rng.random() < 0.75:
                counts[(pid, cam)] = int(rng.integers(1, 5))
    return counts


LLCM_VIS = tuple(range(1, 10))
LLCM_NIR = (1, 2, 4, 5, 6, 7, 8, 9)


def llcm_name(pid: int, cam: int, k: int, word: str) -> str:
    return f"{pid:04d}_c{cam:02d}_s{100000 + 7 * k:06d}_f{k * 13:04d}_{word}.jpg"


def make_llcm(
    root: Path,
    counts: Mapping[tuple[int, str, int], int],
    test_ids: list[int],
    train: Mapping[str, list[tuple[str, int]]] | None = None,
) -> Path:
    """LLCM root: ``counts[(pid, 'vis'|'nir', cam)]`` files in ``test_<m>/cam<c>/<pid:04d>``.

    ``train`` maps 'vis'/'nir' to (relative path, label) entries written to the idx lists
    (and created as files).
    """
    for word in ("vis", "nir"):
        (root / f"test_{word}").mkdir(parents=True, exist_ok=True)
    for (pid, word, cam), n in counts.items():
        for k in range(1, n + 1):
            touch(root / f"test_{word}" / f"cam{cam}" / f"{pid:04d}" / llcm_name(pid, cam, k, word))
    (root / "idx").mkdir(exist_ok=True)
    (root / "idx" / "test_id.txt").write_text(",".join(map(str, test_ids)) + "\n")
    train = train or {
        "vis": [(f"vis/0901/{llcm_name(901, 2, 1, 'vis')}", 0)],
        "nir": [(f"nir/0901/{llcm_name(901, 4, 1, 'nir')}", 0)],
    }
    for word, entries in train.items():
        lines = []
        for path, label in entries:
            touch(root / path)
            lines.append(f"{path} {label}")
        (root / "idx" / f"train_{word}.txt").write_text("\n".join(lines) + "\n")
    return root


def random_llcm_counts(rng: np.random.Generator, ids: list[int]) -> dict[tuple[int, str, int], int]:
    """Random images per (id, modality, camera): camera 1 of both always, others p=0.6."""
    counts = {}
    for pid in ids:
        for word, cams in (("vis", LLCM_VIS), ("nir", LLCM_NIR)):
            for cam in cams:
                if cam == 1 or rng.random() < 0.6:
                    counts[(pid, word, cam)] = int(rng.integers(1, 4))
    return counts


def make_regdb(
    root: Path, splits: Mapping[int, Mapping[str, list[tuple[str, int]]]], prefix: str = "test"
) -> Path:
    """RegDB root: ``splits[t]['visible'|'thermal']`` = (relative path, label) list lines."""
    (root / "idx").mkdir(parents=True, exist_ok=True)
    for trial, lists in splits.items():
        for word, entries in lists.items():
            for path, _ in entries:
                touch(root / path)
            text = "\n".join(f"{path} {label}" for path, label in entries) + "\n"
            (root / "idx" / f"{prefix}_{word}_{trial}.txt").write_text(text)
    return root


def write_rand_perm(path: Path, perms: Mapping[tuple[int, int], np.ndarray], n_ids: int) -> None:
    """Write ``rand_perm_cam`` as SYSU's kit stores it: a 6x1 cell of n_ids x 1 cells of
    [trials x images] matrices of 1-based image numbers (empty where none)."""
    from scipy.io import savemat

    outer = np.empty((6, 1), dtype=object)
    for cam in range(1, 7):
        inner = np.empty((n_ids, 1), dtype=object)
        for pid in range(1, n_ids + 1):
            inner[pid - 1, 0] = np.asarray(perms.get((cam, pid), np.zeros((0, 0))), dtype=float)
        outer[cam - 1, 0] = inner
    savemat(str(path), {"rand_perm_cam": outer})


def features_for(frame, rng: np.random.Generator, dim: int = 8) -> np.ndarray:
    """Continuous random features, one row per index row (no distance ties)."""
    return rng.standard_normal((len(frame), dim)).astype(np.float32)


def dump_from_table(path: Path, frame, features: np.ndarray, dataset: str) -> Path:
    """Write a one-split dump from an index table, row for row."""
    return write_dump(
        path,
        features=features,
        pid=frame["pid"].to_numpy(),
        cam=frame["cam"].to_numpy(),
        modality=frame["modality"].to_numpy(),
        paths=frame["path"].to_numpy(dtype=object),
        dataset=dataset,
        model="test",
    )


def regdb_dump(path: Path, frame, features: Mapping[int, np.ndarray]) -> Path:
    """Write a RegDB dump: one ``trials/<k>`` group per value of the ``trial`` column."""
    splits = []
    for trial in sorted(frame["trial"].unique()):
        part = frame[frame["trial"] == trial]
        splits.append(
            FeatureSplit(
                features={"default": features[int(trial)]},
                pid=part["pid"].to_numpy(),
                cam=part["cam"].to_numpy(),
                modality=part["modality"].to_numpy(),
                path=part["path"].to_numpy(dtype=object),
            )
        )
    return write_dump(path, trials=splits, dataset="regdb", model="test")
