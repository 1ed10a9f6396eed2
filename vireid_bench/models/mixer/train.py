"""MixER training loop: Adam with linear warm-up and step decay, checkpoints, resume, logs.

A run directory holds:

* ``config.toml``: the resolved configuration (its hash goes into extracted dumps);
* ``checkpoints/last.pt``: model, optimiser, scheduler, scaler and RNG state after the last
  completed epoch, replaced atomically every epoch (``--resume`` continues from it);
  with ``train.keep_every = k`` also ``checkpoints/epoch_XXX.pt`` (weights only) every k
  epochs;
* with ``select="val"`` or ``"test"``: ``checkpoints/model_best.pt`` (weights of the best
  evaluated epoch, with ``selection``) and ``checkpoints/selection_log.csv``
  (:mod:`vireid_bench.models.mixer.selection`);
* ``train_log.csv``: one row per iteration: epoch, iteration, step, learning rate, the
  weighted total, every loss term (empty when switched off) and images/s.

Reproducibility: the sampler's batches depend only on (seed, epoch) and torch's RNG is
re-seeded from (seed, epoch) at the start of every epoch, so on CPU a resumed run
continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import copy
import csv
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from vireid_bench.models.mixer.config import (
    MixerInputError,
    config_hash,
    to_toml,
    without_runtime_keys,
)
from vireid_bench.models.mixer.data import (
    IdentityBalancedSampler,
    ImageListDataset,
    train_transforms,
)
from vireid_bench.models.mixer.index import image_index
from vireid_bench.models.mixer.losses import TERMS, MixerCriterion
from vireid_bench.models.mixer.model import MixER, load_torch_file
from vireid_bench.models.mixer.pipeline import (
    compile_failure,
    compile_model,
    is_compile_error,
    train_loader,
)
from vireid_bench.models.mixer.selection import BestKeeper, check_select, due

CHECKPOINT_FORMAT = "vireid-bench-mixer-1"
LOG_COLUMNS = ("epoch", "iteration", "step", "lr", "loss", *TERMS, "images_per_s")


DEVICE_HELP = "valid: auto, cpu, cuda, cuda:N"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        MixerInputError: an unknown device name, CUDA missing, or no GPU number N.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise MixerInputError(f"--device {name!r}: unknown device ({DEVICE_HELP})") from exc
    if device.type not in ("cpu", "cuda"):
        raise MixerInputError(f"--device {name!r}: unsupported device ({DEVICE_HELP})")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MixerInputError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise MixerInputError(
                f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)"
            )
    return device


def lr_factor(epoch: int, warmup_epochs: int, milestones: list[int], gamma: float) -> float:
    """Learning-rate factor of a 0-based epoch: linear warm-up, then step decay.

    ``(epoch + 1) / warmup_epochs`` during the warm-up; afterwards ``gamma ** k`` with k the
    number of milestones <= epoch (paper: x0.1 from epoch 80, x0.01 from epoch 120).
    """
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    return gamma ** sum(1 for m in milestones if epoch >= m)


@dataclass
class TrainResult:
    """What a training run produced."""

    checkpoint: Path
    epochs_done: int
    last_loss: float
    images_per_s: float
    log: Path
    best: Path | None = None
    best_epoch: int | None = None
    best_value: float | None = None


class _Progress:
    """A one-line progress bar on a terminal; periodic lines otherwise."""

    def __init__(self, stream: TextIO | None, every: int) -> None:
        self.stream = stream
        self.every = max(1, every)
        self.tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())

    def update(
        self,
        epoch: int,
        epochs: int,
        it: int,
        iters: int,
        loss: float,
        terms: Mapping[str, float],
        ips: float,
    ) -> None:
        if self.stream is None:
            return
        width = 20
        filled = int(width * it / iters)
        bar = "#" * filled + "." * (width - filled)
        detail = " ".join(f"{k} {v:.3f}" for k, v in terms.items())
        line = (
            f"epoch {epoch}/{epochs} [{bar}] {it}/{iters} loss {loss:.3f} ({detail}) "
            f"{ips:.1f} img/s"
        )
        if self.tty:
            self.stream.write("\r" + line + ("\n" if it == iters else ""))
            self.stream.flush()
        elif it % self.every == 0 or it == iters:
            self.stream.write(line + "\n")
            self.stream.flush()


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _without_epochs(config: Mapping[str, Any]) -> dict[str, Any]:
    stripped = without_runtime_keys(copy.deepcopy(dict(config)))
    stripped["optim"] = {k: v for k, v in stripped["optim"].items() if k != "epochs"}
    stripped["train"] = {k: v for k, v in stripped["train"].items() if k != "workers"}
    return stripped


def _config_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return [
        f"{section}.{key}"
        for section in a
        for key in a[section]
        if a[section][key] != b.get(section, {}).get(key)
    ]


def _trim_log(log: Path, epochs_done: int) -> None:
    """Drop log rows of epochs that did not complete (a run stopped mid-epoch)."""
    if not log.exists():
        return
    with log.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [r for r in rows if int(r["epoch"]) <= epochs_done]
    with log.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(kept)


def build_model(config: Mapping[str, Any], num_classes: int) -> MixER:
    """The network a configuration describes."""
    return MixER(
        num_classes,
        backbone=config["model"]["backbone"],
        last_stride=config["model"]["last_stride"],
        related_branch=config["model"]["related_branch"],
        grl_coeff=config["loss"]["grl_coeff"],
    )


def train(
    config: Mapping[str, Any],
    dataset: str,
    root: str | Path,
    out_dir: str | Path,
    *,
    trial: int = 1,
    pretrained: str | Path | None = None,
    device: str = "auto",
    resume: bool = False,
    stream: TextIO | None = sys.stderr,
    echo: Callable[[str], None] | None = None,
    select: str = "last",
    scorer: Callable[[torch.nn.Module], float] | None = None,
    select_every: int = 1,
) -> TrainResult:
    """Train MixER on ``dataset``'s train split; return the last checkpoint.

    Args:
        config: a resolved configuration (:func:`vireid_bench.models.mixer.config.load_config`).
        dataset, root, trial: what to train on (RegDB: ``trial`` 1..10).
        out_dir: the run directory (created).
        pretrained: a local torchvision ResNet state dict; without it the backbone starts
            from random weights (nothing is ever downloaded).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
        resume: continue from ``out_dir/checkpoints/last.pt`` (the configuration must be
            the same except ``optim.epochs``, which may grow).
        stream: where the progress bar goes (None: silent).
        echo: where one-line notices go (default: ``stream``).
        select: ``last`` (default), ``val`` or ``test``
            (:mod:`vireid_bench.models.mixer.selection`); with ``val`` the validation
            identities are held out of training.
        scorer: with ``select`` val/test: model -> mAP on the selection split.
        select_every: evaluate every N epochs (and after the last).
    """
    check_select(select, dataset, select_every)
    if select != "last" and scorer is None:
        raise ValueError(f"select={select!r} needs a scorer")
    if echo is None:

        def echo(message: str) -> None:
            if stream is not None:
                stream.write(message + "\n")

    config = copy.deepcopy(dict(config))
    out = Path(out_dir)
    checkpoints = out / "checkpoints"
    last_path = checkpoints / "last.pt"
    log_path = out / "train_log.csv"
    state = None
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(f"{last_path}: no checkpoint to resume from")
        state = load_torch_file(last_path, "MixER checkpoint")
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{last_path}: not a MixER checkpoint")
        differences = _config_differences(_without_epochs(state["config"]), _without_epochs(config))
        if state.get("select", "last") != select:
            differences.append(f"--select {state.get('select', 'last')}")
        if differences or state["dataset"] != dataset or state["trial"] != trial:
            what = ", ".join(differences) or "dataset/trial"
            raise ValueError(f"{last_path}: --resume with a different configuration ({what})")
    elif last_path.exists():
        raise FileExistsError(f"{last_path} exists: use --resume, or another --out")

    dev = resolve_device(device)
    use_cuda = dev.type == "cuda"
    use_amp = use_cuda and config["train"]["amp"]
    channels_last = use_cuda and config["train"]["channels_last"]
    seed = config["train"]["seed"]
    torch.manual_seed(seed)

    frame = image_index(dataset, root, "train", trial, hold_out_val=select == "val")
    class_pids = np.unique(frame["pid"].to_numpy(dtype=np.int64))
    labels = np.searchsorted(class_pids, frame["pid"].to_numpy(dtype=np.int64))
    data = ImageListDataset(frame, root, train_transforms(config["input"]), labels)
    sampler = IdentityBalancedSampler(
        labels,
        data.modality,
        config["sampler"]["batch_ids"],
        config["sampler"]["num_pos"],
        config["sampler"]["iters_per_epoch"],
        seed=seed,
    )
    loader, cache = train_loader(data, sampler, config["train"], pin_memory=use_cuda)
    if cache is not None:
        echo(cache.line())

    model = build_model(config, len(class_pids))
    if state is None:
        if pretrained is not None:
            missing = model.load_pretrained(pretrained)
            echo(
                f"loaded backbone weights from {pretrained}"
                + (f" ({len(missing)} backbone tensors not in the file)" if missing else "")
            )
        else:
            echo("no --pretrained: the backbone starts from random weights")
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    backend = config["train"]["compile_backend"]
    forward = compile_model(model, backend) if config["train"]["compile"] else model
    if forward is not model:
        echo(f"torch.compile (backend {backend}): the first iterations compile the model")
    criterion = MixerCriterion(config["loss"])
    optim_cfg = config["optim"]
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad],
        lr=optim_cfg["lr"],
        weight_decay=optim_cfg["weight_decay"],
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda epoch: lr_factor(
            epoch, optim_cfg["warmup_epochs"], optim_cfg["milestones"], optim_cfg["gamma"]
        ),
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_epoch, step = 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        _trim_log(log_path, start_epoch)
        echo(f"resuming from {last_path} after epoch {start_epoch}")
        if not np.array_equal(np.asarray(state["class_pids"]), class_pids):
            raise ValueError(f"{last_path}: the training identities differ from the checkpoint's")

    out.mkdir(parents=True, exist_ok=True)
    checkpoints.mkdir(exist_ok=True)
    (out / "config.toml").write_text(to_toml(config), encoding="utf-8")
    new_log = not log_path.exists()
    log_handle = log_path.open("a", newline="")
    writer = csv.DictWriter(log_handle, fieldnames=LOG_COLUMNS)
    if new_log:
        writer.writeheader()
    keeper = None
    if select != "last":
        keeper = BestKeeper(checkpoints, select, None if state is None else state.get("best"))
    progress = _Progress(stream, config["train"]["log_every"])
    epochs = optim_cfg["epochs"]
    last_loss, throughput = float("nan"), 0.0
    try:
        for epoch in range(start_epoch, epochs):
            sampler.set_epoch(epoch)
            torch.manual_seed(seed * 100_003 + epoch)
            model.train()
            lr = optimizer.param_groups[0]["lr"]
            images_seen, epoch_start = 0, time.perf_counter()
            tick = epoch_start
            for it, (images, targets, modality, _) in enumerate(loader, start=1):
                images = images.to(dev, non_blocking=True)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                targets = targets.to(dev, non_blocking=True)
                modality = modality.to(dev, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                try:
                    with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                        outputs = forward(images, modality)
                        loss, terms = criterion(outputs, targets, modality)
                    scaler.scale(loss).backward()
                except Exception as exc:
                    if forward is not model and is_compile_error(exc):
                        raise compile_failure(exc, backend) from exc
                    raise
                scaler.step(optimizer)
                scaler.update()
                step += 1
                last_loss = float(loss.detach())
                now = time.perf_counter()
                rate = images.shape[0] / max(now - tick, 1e-9)
                tick = now
                images_seen += images.shape[0]
                throughput = images_seen / max(now - epoch_start, 1e-9)
                row = {
                    "epoch": epoch + 1,
                    "iteration": it,
                    "step": step,
                    "lr": lr,
                    "loss": last_loss,
                    "images_per_s": round(rate, 3),
                }
                row.update({t: terms.get(t, "") for t in TERMS})
                writer.writerow(row)
                progress.update(epoch + 1, epochs, it, len(sampler), last_loss, terms, throughput)
            log_handle.flush()
            scheduler.step()
            checkpoint = {
                "format": CHECKPOINT_FORMAT,
                "epoch": epoch + 1,
                "step": step,
                "config": config,
                "config_hash": config_hash(config),
                "dataset": dataset,
                "trial": trial,
                "class_pids": class_pids.tolist(),
                "select": select,
                "held_out_val": select == "val",
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
            }
            weights = {
                k: v for k, v in checkpoint.items() if k not in ("optimizer", "scheduler", "scaler")
            }
            if keeper is not None and due(select, epoch + 1, epochs, select_every):
                value = float(scorer(model))
                if keeper.update(epoch + 1, value, weights):
                    echo(f"epoch {epoch + 1}: {select} mAP {value:.2f} (best so far)")
                else:
                    echo(f"epoch {epoch + 1}: {select} mAP {value:.2f} (best {keeper.value:.2f})")
                checkpoint["best"] = keeper.record()
            elif keeper is not None:
                checkpoint["best"] = keeper.record()
            _atomic_save(checkpoint, last_path)
            keep = config["train"]["keep_every"]
            if keep and (epoch + 1) % keep == 0:
                _atomic_save(weights, checkpoints / f"epoch_{epoch + 1:03d}.pt")
    finally:
        log_handle.close()
    result = TrainResult(last_path, max(start_epoch, epochs), last_loss, throughput, log_path)
    if keeper is not None and keeper.epoch is not None:
        result.best, result.best_epoch, result.best_value = keeper.path, keeper.epoch, keeper.value
    return result
