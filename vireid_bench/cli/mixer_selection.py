"""The scorer behind ``mixer train --select val|test``: features of the selection split with
the model being trained, scored by the engine under the selection protocol (mAP).

It joins the model (``vireid_bench.models``) and the scoring engine, which only the
command line may import together (docs/architecture.md). Imported by ``cli/mixer.py``
inside the command (torch is needed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vireid_bench.engine.scoring import evaluate
from vireid_bench.io.dump import FeatureDump, FeatureSplit
from vireid_bench.models.mixer.extract import extract_features
from vireid_bench.models.mixer.index import image_index
from vireid_bench.models.mixer.selection import SPLIT, selection_protocol
from vireid_bench.models.mixer.train import resolve_device
from vireid_bench.protocol import resolve_presets


def selection_scorer(
    select: str,
    dataset: str,
    root: str | Path,
    input_config: dict[str, Any],
    *,
    trial: int = 1,
    device: str = "auto",
    batch_size: int = 64,
) -> Callable[[torch.nn.Module], float]:
    """Return ``model -> mAP`` (percent) on the selection split of ``dataset``.

    ``val``: SYSU-MM01's validation ids under ``sysu-val-all``; ``test``: the test set under
    the dataset's test protocol (:data:`vireid_bench.models.mixer.selection.PROTOCOLS`).
    Infrared queries, the cross-modal setting, the cross feature set ``z_e``, every trial.
    """
    protocol = selection_protocol(select, dataset)
    presets = resolve_presets(protocol)
    frame = image_index(dataset, root, SPLIT[select], trial)
    dev = resolve_device(device)
    labels = {
        "pid": frame["pid"].to_numpy(dtype=np.int64),
        "cam": frame["cam"].to_numpy(dtype=np.int64),
        "modality": frame["modality"].to_numpy(dtype=np.uint8),
        "path": np.array(frame["path"].astype(str).tolist(), dtype=object),
    }

    def score(model: torch.nn.Module) -> float:
        features = extract_features(
            model, frame, root, input_config, device=dev, batch_size=batch_size
        )
        dump = FeatureDump(
            source=f"{dataset} {SPLIT[select]} split",
            dataset=dataset,
            model="selection",
            description="",
            default_features="z_e",
            cross_features="z_e",
            same_features="z_e",
            splits=(FeatureSplit(features={"z_e": features["z_e"]}, **labels),),
        )
        rows = evaluate(dump, presets, query_modalities=["infrared"]).rows
        return float(rows[0]["mAP"])

    return score
