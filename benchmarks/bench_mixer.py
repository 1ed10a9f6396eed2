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
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from vireid_bench.models.mixer.config import load_config
from vireid_bench.models.mixer.data import ImageListDataset, train_transforms
from vireid_bench.models.mixer.losses import MixerCriterion
from vireid_bench.models.mixer.model import MixER
from vireid_bench.models.mixer.train import resolve_device


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
    return images / statistics.median(times)


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per figure")
    parser.add_argument("--paper-batch-ids", type=int, default=None)
    parser.add_argument("--skip-paper", action="store_true")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
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
