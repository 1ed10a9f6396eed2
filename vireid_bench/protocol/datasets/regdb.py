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

from vireid_bench.errors import DatasetError, DumpError, ProtocolError
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


SAAI_VARIANT = "saai"
SAAI_PRESET = "regdb-saai"
SAAI_ABSENT_METRICS = ("mINP",)
"""Metrics the ``regdb-saai`` convention does not define (SAAI's ``utils/eval_regdb.py``
prints r1, r10, r20 and mAP only)."""


class RegDBConvention(Convention):
    """RegDB as AGW evaluates it: one split per trial, whole-split galleries, image CMC.

    Args:
        split: score one RegDB split only (1..10). On a dump with ``trials/<k>`` groups,
            the group ``trials/<split-1>``; on a dump holding one split, that split is
            split ``split`` (its plan's trial number is ``split - 1``). None (default):
            every split of the dump, averaged (AGW's ten trials).
    """

    name = DATASET
    default_cmc = "image"

    def __init__(self, split: int | None = None) -> None:
        if split is not None and not 1 <= int(split) <= len(TRIALS):
            raise ProtocolError(f"RegDB split {split}: must be 1..{len(TRIALS)}")
        self.split = None if split is None else int(split)

    def variants(self, preset: Preset) -> list[str]:
        """One unnamed variant per preset; ``regdb-saai`` presets report variant ``saai``."""
        entry = check_dataset_preset(preset, self.name)
        if entry is not None and entry.variant:
            return [entry.variant]
        return [""]

    def absent_metrics(self, variant: str) -> tuple[str, ...]:
        """``regdb-saai`` (variant ``saai``): no mINP (SAAI, MPANet and the MixER authors'
        ``eval_regdb`` compute none)."""
        return SAAI_ABSENT_METRICS if variant == SAAI_VARIANT else ()

    def adapt_preset(self, preset: Preset) -> Preset:
        """Cross: remove the query's modality only, as ``eval_regdb`` (which removes nothing
        cross-modal) does, whatever camera ids the dump uses. ``regdb-saai``: CMC counts
        identities (SAAI / MPANet's RegDB evaluation)."""
        if base_setting(preset) == "cross":
            preset = dataclasses.replace(preset, clauses=(Clause(modality="same"),))
        if preset.name.split(":")[0] == SAAI_PRESET and preset.cmc == "dataset":
            preset = dataclasses.replace(preset, cmc="identity")
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

        Both in dump order, which is list-file order for a dump written from the index;
        variant ``saai`` (``regdb-saai``) orders both by path (SAAI's sorted file lists),
        which changes only how exact distance ties are broken.

        Raises:
            DumpError: when a split lacks one of the modalities, or the split asked for
                is not in the dump.
            ProtocolError: ``regdb-saai`` on a dump of several splits without ``split``.
        """
        chosen = self._chosen_splits(dump, variant)
        if trials is not None:
            chosen = chosen[:trials]
        plans = []
        for k, trial in chosen:
            split = dump.splits[k]
            for modality, word in LISTS.items():
                if not np.any(split.modality == modality):
                    field = f"trials/{k}/modality" if dump.has_trial_splits else "modality"
                    raise DumpError(dump.source, field, f"no {word} image in the split")
            queries = np.flatnonzero(split.modality == query_modality).astype(np.int64)
            pool = np.arange(split.n_images, dtype=np.int64)
            if variant == SAAI_VARIANT:
                queries, pool = _by_path(dump, k, queries), _by_path(dump, k, pool)
            plans.append(EvaluationPlan(split=k, trial=trial, query_idx=queries, pool_idx=pool))
        return plans

    def _chosen_splits(self, dump: FeatureDump, variant: str) -> list[tuple[int, int]]:
        """(dump split index, trial number) pairs to score."""
        if self.split is None:
            if variant == SAAI_VARIANT and len(dump.splits) > 1:
                raise ProtocolError(
                    f"{dump.source}: {SAAI_PRESET} scores one RegDB split (SAAI tests split "
                    "4): give the split (--regdb-split K, RegDBConvention(split=K))"
                )
            return [(k, k) for k in range(len(dump.splits))]
        if len(dump.splits) == 1:  # the dump holds one split: it is split `split`
            return [(0, self.split - 1)]
        if self.split > len(dump.splits):
            raise DumpError(
                dump.source,
                "trials",
                f"RegDB split {self.split} asked for, the dump holds {len(dump.splits)}",
            )
        return [(self.split - 1, self.split - 1)]


def _by_path(dump: FeatureDump, k: int, rows: np.ndarray) -> np.ndarray:
    """``rows`` sorted by their ``path`` (stable; dump order when the dump has no path)."""
    paths = dump.splits[k].path
    if paths is None:
        return rows
    keys = [str(paths[i]).replace("\\", "/") for i in rows]
    return rows[np.argsort(np.asarray(keys, dtype=object), kind="stable")]


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
        name=SAAI_PRESET,
        dataset=DATASET,
        variant=SAAI_VARIANT,
        query_modalities=("infrared", "visible"),
        description="RegDB as SAAI / MPANet evaluate it: one split, identity CMC, sorted paths",
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
