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

SPLITS = ("train", "test", "val")
COLUMNS = ("path", "pid", "cam", "modality")


def image_index(
    dataset: str, root: str | Path, split: str, trial: int = 1, *, hold_out_val: bool = False
):
    """Return the ``split`` images of ``dataset`` under ``root`` as a DataFrame.

    Args:
        dataset: ``"sysu-mm01"``, ``"regdb"`` or ``"llcm"``.
        root: the dataset root directory.
        split: ``"train"`` (SYSU-MM01: ``trainval``, the train and validation ids, as the
            AGW code trains), ``"test"`` (every test image; the scorer samples query
            and gallery) or ``"val"`` (SYSU-MM01 only: the ``exp/val_id.txt`` ids).
        trial: RegDB's split number 1..10 (ignored elsewhere).
        hold_out_val: with ``split="train"``, leave the validation ids out (SYSU-MM01:
            ``train_id.txt`` only), for a run that selects its checkpoint on them.

    Returns:
        DataFrame with columns ``path`` (str), ``pid``, ``cam`` (int64), ``modality``
        (uint8), one row per image, in the indexer's order.

    Raises:
        DatasetError: (a ``ValueError``) naming a missing file or folder, or an empty split.
    """

    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} (valid: {', '.join(SPLITS)})")
    if (split == "val" or hold_out_val) and dataset != "sysu-mm01":
        raise DatasetError(
            f"{dataset} has no validation split in its split files (only SYSU-MM01 ships "
            "one, exp/val_id.txt; docs/datasets.md)"
        )
    if dataset == "sysu-mm01":
        sysu_split = {"train": "train" if hold_out_val else "trainval"}.get(split, split)
        frame = index_sysu(root, sysu_split)
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
