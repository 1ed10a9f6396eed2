"""RegDB: indexer and scoring convention (AGW's ``eval_regdb``).

Layout of a RegDB root::

    Visible/<pid>/<file>, Thermal/<pid>/<file>     the images
    idx/train_visible_{t}.txt, idx/train_thermal_{t}.txt   t = 1..10, 'path label' lines
    idx/test_visible_{t}.txt,  idx/test_thermal_{t}.txt

Each of the ten trials is its own train/test split, so a model is trained per trial and a
dump holds ten test splits as ``trials/0`` .. ``trials/9`` (``trials/<t-1>`` is split
``t``). RegDB has one camera per modality: the index writes camera 1 for visible and 2 for
thermal images.

Community protocol (AGW ``test.py``, ``data_manager.process_test_regdb``,
``eval_metrics.eval_regdb``): the query set is every test image of the query modality, the
gallery every test image of the other modality, both in list-file order; visible->thermal
by default, thermal->visible with ``--tvsearch``. ``eval_regdb`` removes nothing (its
camera ids are 1 for every query and 2 for every gallery image) and counts CMC over
images; mAP and mINP as for SYSU-MM01; the ten trials are averaged.

Mixed settings use every test image of both modalities of the trial's split. Mix-Cam,
Mix-Cam-ID and the uni-modal setting do not apply (one camera per modality; the paper's
Table 2a reports Mix, Mix-ID and both cross-modal directions).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vireid_bench.errors import DatasetError, DumpError
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

from .common import read_split_list, require_file, table

DATASET = "regdb"
TRIALS = tuple(range(1, 11))
CAMERAS = {VISIBLE: 1, INFRARED: 2}
LISTS = {VISIBLE: "visible", INFRARED: "thermal"}
INDEX_COLUMNS = ("path", "pid", "cam", "modality", "trial")


def index_regdb(root: str | os.PathLike, split: str = "test", trials: Iterable[int] = TRIALS):
    """List RegDB's split images from its ``idx`` lists, trial by trial.

    For each trial ``t``: the visible list's images, then the thermal list's, in file
    order (``pid`` = the listed label, ``cam`` 1 visible / 2 thermal, ``trial`` = ``t-1``,
    the dump's ``trials/<t-1>`` group).

    Args:
        split: ``test`` (default) or ``train``.
        trials: the trial numbers to list (default 1..10).

    Raises:
        DatasetError: naming a missing or unreadable list file, a malformed line, or a
            listed image that does not exist under the root.
    """
    if split not in ("test", "train"):
        raise DatasetError(f"unknown RegDB split {split!r} (valid: test, train)")
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: folder missing")
    rows = []
    for trial in trials:
        for modality, word in LISTS.items():
            listing = require_file(base, f"idx/{split}_{word}_{trial}.txt", "RegDB")
            for path, label in read_split_list(listing):
                if not (base / path).is_file():
                    raise DatasetError(
                        f"{listing}: lists {path}, which does not exist under {base}"
                    )
                rows.append((path, label, CAMERAS[modality], modality, trial - 1))
    return table(rows, INDEX_COLUMNS)


class RegDBConvention(Convention):
    """RegDB as AGW evaluates it: one split per trial, whole-split galleries, image CMC."""

    name = DATASET
    default_cmc = "image"

    def variants(self, preset: Preset) -> list[str]:
        """One unnamed variant per preset (``regdb-*`` presets included)."""
        check_dataset_preset(preset, self.name)
        return [""]

    def adapt_preset(self, preset: Preset) -> Preset:
        """Cross: remove the query's modality only, as ``eval_regdb`` (which removes nothing
        cross-modal) does, whatever camera ids the dump uses."""
        if base_setting(preset) == "cross":
            return dataclasses.replace(preset, clauses=(Clause(modality="same"),))
        return preset

    def not_applicable(self, dump: FeatureDump, preset: Preset, query_modality: int) -> str | None:
        """Besides the generic rule (Mix-Cam, Mix-Cam-ID), the uni-modal setting does not
        apply: with one camera per modality its same-camera-same-identity clause removes
        every true match."""
        if base_setting(preset) == "uni":
            return "one camera per modality (no same-modality match from another camera)"
        return super().not_applicable(dump, preset, query_modality)

    def plans(
        self,
        dump: FeatureDump,
        preset: Preset,
        variant: str,
        query_modality: int,
        trials: int | None = None,
    ) -> list[EvaluationPlan]:
        """One plan per split: the query modality's images; the pool, every image.

        Both in dump order, which is list-file order for a dump written from the index.

        Raises:
            DumpError: when a split lacks one of the modalities.
        """
        count = len(dump.splits) if trials is None else min(trials, len(dump.splits))
        plans = []
        for k in range(count):
            split = dump.splits[k]
            for modality, word in LISTS.items():
                if not np.any(split.modality == modality):
                    field = f"trials/{k}/modality" if dump.has_trial_splits else "modality"
                    raise DumpError(dump.source, field, f"no {word} image in the split")
            plans.append(
                EvaluationPlan(
                    split=k,
                    trial=k,
                    query_idx=np.flatnonzero(split.modality == query_modality).astype(np.int64),
                    pool_idx=np.arange(split.n_images, dtype=np.int64),
                )
            )
        return plans


register_convention(RegDBConvention())

register_dataset_preset(
    DatasetPreset(
        name="regdb-t2v",
        dataset=DATASET,
        variant="",
        query_modalities=("infrared",),
        description="RegDB thermal to visible",
    )
)
register_dataset_preset(
    DatasetPreset(
        name="regdb-v2t",
        dataset=DATASET,
        variant="",
        query_modalities=("visible",),
        description="RegDB visible to thermal",
    )
)
