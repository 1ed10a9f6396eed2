"""Image lists for training and extraction: DataFrames with ``path, pid, cam, modality``.

:func:`image_index` is the single place where the model asks for a dataset's images. Its
contract is the dataset indexers' (``vireid_bench.datasets``): a pandas DataFrame with
columns ``path`` (relative to the dataset root), ``pid``, ``cam`` and ``modality``
(0 visible, 1 infrared), in the indexer's order.

Until the real indexers land, it calls the private fallback in
:mod:`vireid_bench.models.mixer._fallback_layouts`, which walks the SYSU-MM01, RegDB and
LLCM layouts (as ``vireid-bench synth-images`` writes them). At merge time, replace the body
of :func:`image_index` with calls to the real indexers and delete the fallback module; the
rest of the model package only sees the DataFrame.
"""

from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "test")
COLUMNS = ("path", "pid", "cam", "modality")


def image_index(dataset: str, root: str | Path, split: str, trial: int = 1):
    """Return the ``split`` images of ``dataset`` under ``root`` as a DataFrame.

    Args:
        dataset: ``"sysu-mm01"``, ``"regdb"`` or ``"llcm"``.
        root: the dataset root directory.
        split: ``"train"`` (SYSU-MM01: train + val ids, as the AGW code trains) or
            ``"test"`` (every test image; the scorer samples query and gallery).
        trial: RegDB's split number 1..10 (ignored elsewhere).

    Returns:
        DataFrame with columns ``path`` (str), ``pid``, ``cam`` (int64), ``modality``
        (uint8), one row per image.

    Raises:
        FileNotFoundError: when the root or a split file is missing.
        ValueError: for an unknown dataset or split, or an empty split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (valid: {', '.join(SPLITS)})")
    from vireid_bench.models.mixer import _fallback_layouts

    frame = _fallback_layouts.index(dataset, Path(root), split, trial)
    if frame.empty:
        raise ValueError(f"{root}: the {dataset} {split} split holds no image")
    return frame
