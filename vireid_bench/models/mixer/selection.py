"""Checkpoint selection for ``mixer train --select last|val|test``.

* ``last`` (default): the checkpoint is the last epoch's (``checkpoints/last.pt``); nothing
  is evaluated during training.
* ``val``: every ``select_every`` epochs (and after the last one) the model is scored on
  the validation identities (SYSU-MM01 ``exp/val_id.txt``, protocol ``sysu-val-all``,
  infrared queries, mAP); the best epoch's weights are kept as
  ``checkpoints/model_best.pt`` with ``selection = "val"``. The validation identities are
  held out of training (``train_id.txt`` only; a plain run trains on train + val, as AGW
  does). RegDB and LLCM have no validation split in their split files, so ``val`` is
  refused for them.
* ``test``: the same on the test set (the dataset's test protocol). This is what most
  published VI-ReID code does; the dump records ``selection = "test"`` and leaderboards
  footnote such rows.

The scorer itself (extract features, score them) is passed in by the command line, which
may use the scoring engine; this module only keeps the best epoch. Ties keep the earlier
epoch. ``checkpoints/selection_log.csv`` lists every evaluated epoch and its value.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vireid_bench.models.mixer.config import MixerInputError

SELECT_CHOICES = ("last", "val", "test")
BEST_NAME = "model_best.pt"
LOG_NAME = "selection_log.csv"
PROTOCOLS = {
    "val": {"sysu-mm01": "sysu-val-all"},
    "test": {"sysu-mm01": "sysu-all-single", "regdb": "regdb-t2v", "llcm": "llcm-i2v"},
}
"""The protocol each selection scores, per dataset (infrared queries, mAP)."""
SPLIT = {"val": "val", "test": "test"}


def check_select(select: str, dataset: str, every: int = 1) -> None:
    """Refuse a selection the dataset cannot give.

    Raises:
        MixerInputError: an unknown choice, ``val`` for a dataset without a validation
            split (RegDB, LLCM), or ``every`` < 1.
    """
    if select not in SELECT_CHOICES:
        raise MixerInputError(f"--select {select!r}: unknown (valid: {', '.join(SELECT_CHOICES)})")
    if select != "last" and dataset not in PROTOCOLS[select]:
        raise MixerInputError(
            f"--select {select}: {dataset} has no validation split in its split files "
            "(only SYSU-MM01 ships one, exp/val_id.txt; docs/datasets.md)"
        )
    if every < 1:
        raise MixerInputError(f"--select-every {every}: must be at least 1")


def selection_protocol(select: str, dataset: str) -> str:
    """The protocol name a selection scores on ``dataset`` (``sysu-val-all``)."""
    check_select(select, dataset)
    return PROTOCOLS[select][dataset]


def due(select: str, epoch: int, epochs: int, every: int) -> bool:
    """Whether the 1-based ``epoch`` is evaluated: every ``every`` epochs and the last."""
    return select != "last" and (epoch % every == 0 or epoch == epochs)


class BestKeeper:
    """Keeps the best evaluated epoch's weights as ``model_best.pt``.

    Args:
        checkpoints: the run's ``checkpoints`` folder.
        select: ``val`` or ``test``.
        state: what ``last.pt`` recorded of an earlier part of this run (``best``), or
            None for a fresh run.
    """

    def __init__(
        self, checkpoints: Path, select: str, state: Mapping[str, Any] | None = None
    ) -> None:
        self.path = checkpoints / BEST_NAME
        self.log = checkpoints / LOG_NAME
        self.select = select
        best = dict(state or {})
        self.epoch: int | None = best.get("epoch")
        self.value: float = float(best.get("value", -math.inf))

    def record(self) -> dict[str, Any]:
        """What ``last.pt`` keeps so that a resumed run continues the comparison."""
        return {"epoch": self.epoch, "value": self.value, "select": self.select}

    def update(self, epoch: int, value: float, weights: Mapping[str, Any]) -> bool:
        """Log ``value`` for ``epoch``; save ``weights`` as the best when it beats the best.

        NaN never wins. Returns whether this epoch became the best.
        """
        new_log = not self.log.exists()
        with self.log.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new_log:
                writer.writerow(["epoch", "selection", "mAP"])
            writer.writerow([epoch, self.select, value])
        if math.isnan(value) or value <= self.value:
            return False
        self.epoch, self.value = epoch, value
        best = {
            **weights,
            "selection": self.select,
            "selection_epoch": epoch,
            "selection_mAP": value,
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            torch.save(best, tmp)
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return True
