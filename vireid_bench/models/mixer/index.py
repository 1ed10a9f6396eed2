"""Image lists for training and extraction: DataFrames with ``path, pid, cam, modality``.

:func:`image_index` is the single place where the model asks for a dataset's images. It
calls the dataset indexers of :mod:`vireid_bench.protocol.datasets` (``index_sysu``,
``index_regdb``, ``index_llcm``), so a dump written by the extractor lists the test images
in exactly the order and with exactly the labels the scoring conventions expect.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vireid_bench.errors import DatasetError
from vireid_bench.protocol.datasets import index_llcm, index_regdb, index_sysu

SPLITS = ("train", "test")
COLUMNS = ("path", "pid", "cam", "modality")


def image_index(dataset: str, root: str | Path, split: str, trial: int = 1):
    """Return the ``split`` images of ``dataset`` under ``root`` as a DataFrame.

    Args:
        dataset: ``"sysu-mm01"``, ``"regdb"`` or ``"llcm"``.
        root: the dataset root directory.
        split: ``"train"`` (SYSU-MM01: ``trainval``, the train and validation ids, as the
            AGW code trains) or ``"test"`` (every test image; the scorer samples query
            and gallery).
        trial: RegDB's split number 1..10 (ignored elsewhere).

    Returns:
        DataFrame with columns ``path`` (str), ``pid``, ``cam`` (int64), ``modality``
        (uint8), one row per image, in the indexer's order.

    Raises:
        DatasetError: (a ``ValueError``) naming a missing file or folder, or an empty split.
    """

    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} (valid: {', '.join(SPLITS)})")
    if dataset == "sysu-mm01":
        frame = index_sysu(root, "trainval" if split == "train" else "test")
    elif dataset == "regdb":
        if not 1 <= trial <= 10:
            raise DatasetError(f"RegDB trial must be 1..10, got {trial}")
        frame = index_regdb(root, split, trials=[trial])
    elif dataset == "llcm":
        frame = index_llcm(root, split)
    else:
        raise DatasetError(f"unknown dataset {dataset!r} (valid: sysu-mm01, regdb, llcm)")
    if frame.empty:
        raise DatasetError(f"{root}: the {dataset} {split} split holds no image")
    frame = frame.loc[:, list(COLUMNS)].reset_index(drop=True)
    return frame.astype({"path": str, "pid": np.int64, "cam": np.int64, "modality": np.uint8})
