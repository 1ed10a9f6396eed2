"""MixER throughput on the present device: training and extraction images per second.

    python benchmarks/bench_mixer.py                 # small config + the paper's config
    python benchmarks/bench_mixer.py --device cuda --paper-batch-ids 10

Configurations:

* ``small``: ResNet-18, 64 x 32 input, P x (K + K) = 8 x (2 + 2) (``configs/synth-small.toml``);
* ``paper``: ResNet-50, last stride 1, 288 x 144 input, P x (4 + 4) with P =
  ``--paper-batch-ids`` (the paper uses 10; on a 2-core CPU the default is 2, since
  images/s barely depends on the batch there and one 80-image step takes minutes).

Training = forward + all seven loss terms + backward + Adam step, on random images (the
model's cost, without JPEG decoding). Extraction = the extractor's two forward passes
(image and its flip) in inference mode, counted per image. Data = decoding + training
augmentation of synthetic JPEGs, per image, in the main process. Each figure is the median
of ``--steps`` timed steps after one untimed warm-up step. Not a test.

Data path (``--pipeline``, or ``--only-pipeline`` to skip the figures above): the real
training loader of ``mixer train`` (:func:`vireid_bench.models.mixer.pipeline.train_loader`)
over synthetic JPEGs (rendered into a temporary folder, or ``--data-root``), timed for two
loader configurations in one run, by default ``cache off, workers 0`` against ``cache on,
workers 2`` (``--loader A --loader B``, each ``cache:workers``, e.g. ``on:2``). Each is
timed over ``--pipeline-epochs`` epochs of ``--pipeline-iters`` batches: the first epoch
(from building the loader: cache filling and worker start-up included) and the median of
the later, steady epochs. ``--with-model`` runs the training step (forward, every loss,
backward, Adam) on every loaded batch, as ``mixer train`` does, and ``--compile`` wraps the
model in torch.compile; without ``--with-model`` only the loader is timed. The script
prints images/s and the ratios (second configuration / first; first epoch / steady) and,
with ``--csv PATH``, writes one row per configuration.

    python benchmarks/bench_mixer.py --only-pipeline                  # CPU: loader only
    python benchmarks/bench_mixer.py --only-pipeline --with-model --pipeline-config paper \
        --device cuda --loader off:0 --loader on:8 --csv gpu.csv      # GPU: the paper config
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from vireid_bench.models.mixer.config import load_config
from vireid_bench.models.mixer.data import (
    IdentityBalancedSampler,
    ImageListDataset,
    train_transforms,
)
from vireid_bench.models.mixer.losses import MixerCriterion
from vireid_bench.models.mixer.model import MixER
from vireid_bench.models.mixer.pipeline import compile_model, train_loader
from vireid_bench.models.mixer.train import build_model, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_rate(step, images: int, steps: int, device: torch.device) -> float:
    step()
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return images / statistics.median(times) if times else float("nan")


def bench_model(config: dict, batch_ids: int, num_pos: int, device: torch.device, steps: int):
    """Return (train images/s, extract images/s) for one configuration."""
    torch.manual_seed(0)
    height, width = config["input"]["height"], config["input"]["width"]
    n = batch_ids * 2 * num_pos
    use_cuda = device.type == "cuda"
    model = MixER(batch_ids * 4, backbone=config["model"]["backbone"]).to(device)
    if use_cuda:
        model = model.to(memory_format=torch.channels_last)
    images = torch.randn(n, 3, height, width, device=device)
    if use_cuda:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.arange(batch_ids, device=device).repeat_interleave(2 * num_pos)
    modality = torch.tensor([0] * num_pos + [1] * num_pos, device=device).repeat(batch_ids)
    criterion = MixerCriterion(config["loss"])
    optimizer = torch.optim.Adam(model.parameters(), lr=config["optim"]["lr"])
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda)

    def train_step():
        model.train()
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_cuda):
            loss, _ = criterion(model(images, modality), labels, modality)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    @torch.inference_mode()
    def extract_step():
        model.eval()
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_cuda):
            model(images, modality)
            model(torch.flip(images, dims=[3]), modality)

    return (
        _median_rate(train_step, n, steps, device),
        _median_rate(extract_step, n, steps, device),
    )


def bench_data(config: dict, n: int = 64) -> float:
    """Images/s of JPEG decoding + training augmentation (one process)."""
    from vireid_bench.models.mixer.index import image_index
    from vireid_bench.synth.images import write_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_synthetic_dataset(root, "sysu-mm01", ids=4, per_cam=3, size=(256, 128))
        frame = image_index("sysu-mm01", root, "train")
        data = ImageListDataset(frame, root, train_transforms(config["input"]))
        start = time.perf_counter()
        for i in range(n):
            data[i % len(data)]
        return n / (time.perf_counter() - start)


def parse_loader(text: str) -> tuple[bool, int]:
    """``cache:workers``, e.g. ``off:0`` or ``on:2``."""
    cache, _, workers = text.partition(":")
    if cache not in ("on", "off") or not workers.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected cache:workers, e.g. on:2")
    return cache == "on", int(workers)


def bench_pipeline(
    config: dict,
    root: Path,
    *,
    cache: bool,
    workers: int,
    prefetch: int,
    epochs: int,
    iters: int,
    device: torch.device,
    with_model: bool,
    compile_backend: str | None,
) -> tuple[float, float]:
    """(first-epoch images/s, steady images/s) of the training loader, optionally with
    the training step on every batch."""
    from vireid_bench.models.mixer.index import image_index

    torch.manual_seed(0)
    frame = image_index("sysu-mm01", root, "train")
    labels = np.unique(frame["pid"].to_numpy(), return_inverse=True)[1]
    data = ImageListDataset(frame, root, train_transforms(config["input"]), labels)
    sampler = IdentityBalancedSampler(
        labels,
        data.modality,
        config["sampler"]["batch_ids"],
        config["sampler"]["num_pos"],
        iterations=iters,
        seed=0,
    )
    use_cuda = device.type == "cuda"
    step = None
    if with_model:
        model = build_model(config, int(labels.max()) + 1).to(device)
        if use_cuda:
            model = model.to(memory_format=torch.channels_last)
        forward = compile_model(model, compile_backend) if compile_backend else model
        criterion = MixerCriterion(config["loss"])
        optimizer = torch.optim.Adam(model.parameters(), lr=config["optim"]["lr"])
        scaler = torch.amp.GradScaler("cuda", enabled=use_cuda)

        def step(images, targets, modality):
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_cuda):
                loss, _ = criterion(forward(images, modality), targets, modality)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    train_config = dict(
        config["train"], workers=workers, prefetch_factor=prefetch, cache_images=cache
    )
    _sync(device)
    start = time.perf_counter()
    loader, _ = train_loader(data, sampler, train_config, pin_memory=use_cuda)
    rates = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        if epoch:
            start = time.perf_counter()
        seen = 0
        for images, targets, modality, _ in loader:
            images = images.to(device, non_blocking=True)
            if use_cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            if step is not None:
                step(images, targets.to(device, non_blocking=True), modality.to(device))
            seen += images.shape[0]
        _sync(device)
        rates.append(seen / (time.perf_counter() - start))
    del loader  # shuts the persistent workers down
    return rates[0], statistics.median(rates[1:]) if len(rates) > 1 else rates[0]


def run_pipeline(args, device: torch.device) -> None:
    if args.pipeline_config == "paper":
        config = load_config("sysu-mm01")
    else:
        config = load_config("sysu-mm01", "synth-small")
    if args.pipeline_batch_ids:
        config["sampler"]["batch_ids"] = args.pipeline_batch_ids
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp)
        if not args.data_root:
            from vireid_bench.synth.images import write_synthetic_dataset

            write_synthetic_dataset(
                root,
                "sysu-mm01",
                ids=args.pipeline_ids,
                per_cam=args.pipeline_per_cam,
                size=(256, 128),
            )
        warmup = 0.0
        if args.with_model:
            # process-wide start-up (CUDA context, kernel selection, lazy init) would
            # otherwise land on whichever configuration runs first
            batch_ids, num_pos = config["sampler"]["batch_ids"], config["sampler"]["num_pos"]
            start = time.perf_counter()
            bench_model(config, batch_ids, num_pos, device, steps=0)
            warmup = time.perf_counter() - start
        rows = []
        for cache, workers in args.loader or [(False, 0), (True, 2)]:
            first, steady = bench_pipeline(
                config,
                root,
                cache=cache,
                workers=workers,
                prefetch=args.prefetch,
                epochs=args.pipeline_epochs,
                iters=args.pipeline_iters,
                device=device,
                with_model=args.with_model,
                compile_backend=args.compile_backend if args.compile else None,
            )
            rows.append(
                {
                    "device": torch.cuda.get_device_name(device)
                    if device.type == "cuda"
                    else "cpu",
                    "config": args.pipeline_config,
                    "batch": f"{config['sampler']['batch_ids']}x"
                    f"({config['sampler']['num_pos']}+{config['sampler']['num_pos']})",
                    "input": f"{config['input']['height']}x{config['input']['width']}",
                    "with_model": args.with_model,
                    "compile": args.compile_backend if args.compile else "",
                    "cache": "on" if cache else "off",
                    "workers": workers,
                    "prefetch": args.prefetch if workers else "",
                    "first_epoch_img_s": round(first, 2),
                    "steady_img_s": round(steady, 2),
                    "first_over_steady": round(first / steady, 3),
                }
            )
    print(
        f"data path on {device} (torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{'loader + training step' if args.with_model else 'loader only'}, "
        f"{args.pipeline_epochs} epochs x {args.pipeline_iters} batches)"
    )
    if args.with_model:
        print(f"process warm-up before the rows (one training step): {warmup:.1f} s")
    print(tabulate(rows, headers="keys", tablefmt="pipe"))
    for row in rows[1:]:
        print(
            f"ratio cache {row['cache']}/workers {row['workers']} over cache "
            f"{rows[0]['cache']}/workers {rows[0]['workers']}: first epoch "
            f"{row['first_epoch_img_s'] / rows[0]['first_epoch_img_s']:.2f}x, steady "
            f"{row['steady_img_s'] / rows[0]['steady_img_s']:.2f}x"
        )
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per figure")
    parser.add_argument("--paper-batch-ids", type=int, default=None)
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument("--pipeline", action="store_true", help="also time the data path")
    parser.add_argument("--only-pipeline", action="store_true", help="only the data path")
    parser.add_argument(
        "--loader",
        type=parse_loader,
        action="append",
        help="cache:workers, repeatable (default: off:0 and on:2)",
    )
    parser.add_argument("--prefetch", type=int, default=2, help="batches per worker ahead")
    parser.add_argument("--pipeline-config", choices=("small", "paper"), default="small")
    parser.add_argument("--pipeline-batch-ids", type=int, default=None)
    parser.add_argument("--pipeline-epochs", type=int, default=3)
    parser.add_argument("--pipeline-iters", type=int, default=8)
    parser.add_argument("--pipeline-ids", type=int, default=16)
    parser.add_argument("--pipeline-per-cam", type=int, default=4)
    parser.add_argument("--data-root", help="a synth-images sysu-mm01 folder (default: render)")
    parser.add_argument("--with-model", action="store_true", help="train on every batch")
    parser.add_argument("--compile", action="store_true", help="torch.compile (--with-model)")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--csv", help="write the data-path rows to this CSV file")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.pipeline or args.only_pipeline:
        run_pipeline(args, device)
    if args.only_pipeline:
        return
    paper_ids = args.paper_batch_ids or (10 if device.type == "cuda" else 2)
    rows = []
    configs = [("small", load_config("sysu-mm01", "synth-small"), 8, 2)]
    if not args.skip_paper:
        configs.append(("paper", load_config("sysu-mm01"), paper_ids, 4))
    for name, config, batch_ids, num_pos in configs:
        train_rate, extract_rate = bench_model(config, batch_ids, num_pos, device, args.steps)
        rows.append(
            [
                name,
                config["model"]["backbone"],
                f"{config['input']['height']}x{config['input']['width']}",
                f"{batch_ids}x({num_pos}+{num_pos})",
                train_rate,
                extract_rate,
                bench_data(config),
            ]
        )
    print(f"device: {device} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(
        tabulate(
            rows,
            headers=[
                "config",
                "backbone",
                "input",
                "batch",
                "train img/s",
                "extract img/s",
                "data img/s",
            ],
            tablefmt="pipe",
            floatfmt=".1f",
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
