"""Extract a v1 feature dump of a dataset's whole test set with a MixER checkpoint.

Every image is passed as it is and horizontally flipped; the two BN-neck outputs are
averaged (test-time flip augmentation) into ``z_e`` and ``z_r``; then
``z_f = [z_e / |z_e|, z_r / |z_r|]``. The dump holds the feature sets ``z_e``, ``z_r``,
``z_f`` with the paper's per-pair policy (§3.2(f)): ``cross_features = z_e``,
``same_features = z_f`` (``default_features = z_e``), and, by default, the authors'
inference recipe as ``distance_recipe`` (:data:`AUTHORS_RECIPE`; scored by default,
``score --recipe policy`` scores the paper's policy). A baseline checkpoint (no related
branch) gives ``z_e`` only, and no recipe. Rows follow the indexer's order; ``path``,
``pid``, ``cam`` and ``modality`` come from it. The ``model`` attribute names the model
and its config hash.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
import torch.nn.functional as F

from vireid_bench.io.dump import write_dump
from vireid_bench.models.mixer.config import MixerInputError
from vireid_bench.models.mixer.data import ImageListDataset, collate, test_transform
from vireid_bench.models.mixer.index import image_index
from vireid_bench.models.mixer.model import MixER, load_torch_file
from vireid_bench.models.mixer.train import CHECKPOINT_FORMAT, build_model, resolve_device


def load_checkpoint(path: str | Path) -> tuple[MixER, dict]:
    """Return (model in eval mode on CPU, checkpoint dict) from a training checkpoint."""
    source = Path(path)
    state = load_torch_file(source, "MixER checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise MixerInputError(f"{source}: not a MixER checkpoint (written by 'mixer train')")
    try:
        model = build_model(state["config"], len(state["class_pids"]))
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise MixerInputError(f"{source}: damaged MixER checkpoint ({reason})") from exc
    model.eval()
    return model, state


def model_name(state: dict) -> str:
    """``MixER-resnet50@<config hash>`` (``Baseline-...`` without the related branch)."""
    config = state["config"]
    kind = "MixER" if config["model"]["related_branch"] else "Baseline"
    return f"{kind}-{config['model']['backbone']}@{state['config_hash']}"


@torch.inference_mode()
def extract_features(
    model: MixER,
    frame,
    root: str | Path,
    input_config: dict,
    *,
    device: torch.device,
    batch_size: int = 64,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Flip-averaged features of every row of ``frame``: ``{name: float32 [N, D]}``."""
    data = ImageListDataset(frame, root, test_transform(input_config))
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    use_cuda = device.type == "cuda"
    model = model.to(device).eval()
    if use_cuda:
        model = model.to(memory_format=torch.channels_last)
    parts: dict[str, list[np.ndarray]] = {"z_e": [], "z_r": []}
    for images, _, modality, _ in loader:
        images = images.to(device, non_blocking=True)
        if use_cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        modality = modality.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_cuda):
            plain = model(images, modality)
            flipped = model(torch.flip(images, dims=[3]), modality)
        for name in ("z_e", "z_r"):
            if name in plain:
                mean = (plain[name].float() + flipped[name].float()) / 2
                parts[name].append(mean.cpu().numpy())
        if progress is not None:
            progress(images.shape[0])
    features = {name: np.concatenate(chunks) for name, chunks in parts.items() if chunks}
    if "z_r" in features:
        z_e = F.normalize(torch.from_numpy(features["z_e"]), dim=1)
        z_r = F.normalize(torch.from_numpy(features["z_r"]), dim=1)
        features["z_f"] = torch.cat([z_e, z_r], dim=1).numpy()
    return features


def run_metadata(
    checkpoint: str | Path, state: Mapping[str, object], synthetic: bool
) -> dict[str, object]:
    """What a checkpoint says about its run, as ``write_dump`` keywords.

    ``seed`` from the configuration's ``train.seed``; ``run`` the run folder's name
    (``RUN/checkpoints/last.pt`` -> ``RUN``); ``selection`` the checkpoint's own
    (``"last"`` for a checkpoint written by a plain training run; ``model_best.pt`` of a
    ``--select val`` run says ``"val"``); ``trained_on`` the dataset and split (RegDB: with
    its trial; "without val ids" when the validation identities were held out);
    ``synthetic`` when the images were synthetic.
    """
    config = state.get("config") or {}
    seed = (config.get("train") or {}).get("seed") if isinstance(config, Mapping) else None
    path = Path(checkpoint).resolve()
    folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    dataset = str(state.get("dataset", ""))
    trained_on = (
        f"{dataset} train"
        + (" without val ids" if state.get("held_out_val") else "")
        + (f" trial {state['trial']}" if dataset == "regdb" else "")
    )
    found: dict[str, object] = {
        "seed": int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else None,
        "run": folder.name or None,
        "selection": str(state.get("selection", "last")),
        "trained_on": trained_on if dataset else None,
        "synthetic": True if synthetic else None,
    }
    return {key: value for key, value in found.items() if value is not None}


AUTHORS_RECIPE = "vv: z_e; ii: 0.7*z_r + 0.3; vi: z_e"
"""The MixER authors' inference recipe, from ContPartReid ``new/engine/__init__.py`` at
commit 2552d6640a228386ee9bc01b819358ea6c737894 (branch Vis_Inf, "Adds mix modality
testing"; unchanged in a185e35 and 1c1b115, the master head read): ``dismatA`` and ``dismatB``
are ``pairwise_distance`` (``new/utils/eval_sysu.py``: ``-(x @ y.T)``, minus the cosine
similarity) of the L2-normalised first and second evaluation outputs (``new/engine/engine.py``:
``feat, feat2 = model(...)``; ``new/models/baseline.py``: ``feats`` the shared backbone's
BN-neck output, ``feats2`` the modality-specific ``v_backbone`` / ``i_backbone`` branch, i.e.
our ``z_e`` and ``z_r``); ``mask`` is 1 for infrared-infrared pairs (cameras 3 and 6);
``dismat = (1 - mask) * dismatA + 0.7 * mask * dismatB``. In cosine distances ``d = 1 - s``
(one added constant changes no ranking): infrared-infrared ``-0.7 s_r + 1 = 0.7 d_r + 0.3``,
every other pair ``-s_e + 1 = d_e``. Meant for ``--distance cosine``."""


def extract(
    checkpoint: str | Path,
    dataset: str,
    root: str | Path,
    out: str | Path,
    *,
    trial: int | None = None,
    device: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    float16: bool = False,
    name: str | None = None,
    stream: TextIO | None = sys.stderr,
    metadata: Mapping[str, object] | None = None,
    model: str | None = None,
    split: str = "test",
    authors_recipe: bool = True,
) -> Path:
    """Write the feature dump of ``dataset``'s test split; return its path.

    Args:
        checkpoint: a ``mixer train`` checkpoint (``runs/NAME/checkpoints/last.pt``).
        trial: RegDB split (default: the checkpoint's training trial).
        float16: store features as float16.
        name: the model's name in the dump's ``model`` attribute, followed by
            ``@<config hash>`` (default: :func:`model_name`).
        metadata: run metadata overriding what the checkpoint says (:func:`run_metadata`):
            ``seed``, ``run``, ``selection``, ``trained_on``.
        model: the dump's ``model`` attribute exactly, without ``@<config hash>``
            (overrides ``name``). The hash covers ``train.seed``, so runs of one model
            with different seeds get different ``name@hash`` attributes; give them one
            ``model`` to make them one group of runs for ``vireid-bench runs``. The hash
            stays in the description.
        split: ``test`` (default) or ``val`` (SYSU-MM01's validation ids, scored with the
            ``sysu-val-*`` protocols).
        authors_recipe: write :data:`AUTHORS_RECIPE` as the ``distance_recipe`` (MixER
            checkpoints only; a baseline has no ``z_r``).
    """
    dev = resolve_device(device)  # a bad --device fails before the checkpoint is read
    network, state = load_checkpoint(checkpoint)
    trial = state["trial"] if trial is None else trial
    if split not in ("test", "val"):
        raise MixerInputError(f"--split {split!r}: test or val")
    frame = image_index(dataset, root, split, trial)
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        if stream is not None:
            stream.write(f"\rextracting {done[0]}/{len(frame)} images")
            if done[0] == len(frame):
                stream.write("\n")
            stream.flush()

    features = extract_features(
        network,
        frame,
        root,
        state["config"]["input"],
        device=dev,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
    )
    config = state["config"]
    has_related = "z_f" in features
    synthetic = (Path(root) / "SYNTHETIC.txt").is_file()
    description = (
        f"{'MixER' if has_related else 'Baseline (L_yme only)'} {config['model']['backbone']}, "
        f"input {config['input']['height']}x{config['input']['width']}, trained "
        f"{state['epoch']} epoch(s) on {state['dataset']}"
        + (f" trial {state['trial']}" if state["dataset"] == "regdb" else "")
        + f"; config hash {state['config_hash']}; test-time flip averaging"
        + ("; z_f = [z_e/|z_e|, z_r/|z_r|]" if has_related else "")
        + (
            "; SYNTHETIC images from vireid-bench synth-images in this dataset's layout, "
            "not the real dataset"
            if synthetic
            else ""
        )
    )
    recorded = {**run_metadata(checkpoint, state, synthetic), **dict(metadata or {})}
    return write_dump(
        out,
        **recorded,
        features=features,
        pid=frame["pid"].to_numpy(dtype=np.int64),
        cam=frame["cam"].to_numpy(dtype=np.int64),
        modality=frame["modality"].to_numpy(dtype=np.uint8),
        paths=frame["path"].astype(str).tolist(),
        dataset=dataset,
        model=model or (f"{name}@{state['config_hash']}" if name else model_name(state)),
        description=description,
        default_features="z_e",
        cross_features="z_e",
        same_features="z_f" if has_related else "z_e",
        distance_recipe=AUTHORS_RECIPE if has_related and authors_recipe else None,
        float16=float16,
    )
