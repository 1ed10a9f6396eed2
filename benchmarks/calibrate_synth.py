"""Calibrate synth-images: train the baseline per knob setting, print cross- and uni-modal R1.

    python benchmarks/calibrate_synth.py --shared 0 0.6 --nuisance 1 --ids 16 \\
        --per-cam 2 --epochs 3 --iters 4            # the smallest setting (~3 min, 2 cores)
    python benchmarks/calibrate_synth.py --preset learnable --epochs 40 --csv curve.csv

For every combination of ``--shared`` x ``--nuisance`` x ``--ids`` the script renders a
synthetic SYSU-MM01 dataset (``write_synthetic_dataset``; ``--preset`` supplies the values
not given), trains the baseline of ``--config`` (default ``synth-baseline``: ResNet-18,
``L_yme`` only, no modality-related branch) for ``--epochs`` x ``--iters`` batches on the
CPU (or ``--device``), extracts the test set and scores it with the SYSU-MM01 convention
(single-shot, 10 trials). Printed per setting, in %: cross-modal all-search R1 and mAP with
infrared queries (the paper's Table 1 direction) and with visible queries, uni-modal R1 per
modality, the training time, and the chance level of R1 (1 / test identities) for scale.
The target of issue 16 is cross-modal R1 in 40-70 % with uni-modal well above it. Not a
test; the training runs are real and take minutes.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from vireid_bench.engine.scoring import score
from vireid_bench.models.mixer.config import load_config
from vireid_bench.models.mixer.extract import extract
from vireid_bench.models.mixer.train import train
from vireid_bench.synth.defaults import SYNTH_IMAGE_DEFAULTS, SYNTH_IMAGE_PRESETS
from vireid_bench.synth.images import write_synthetic_dataset


def _size(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def _r1(frame, protocol: str, query: str, column: str = "rank1") -> float:
    rows = frame[
        (frame["protocol"] == protocol)
        & (frame["variant"] == "all")
        & (frame["query_modality"] == query)
    ]
    return float(rows[column].iloc[0])


def calibrate_one(args, settings: dict, workdir: Path) -> dict:
    root = workdir / "data"
    write_synthetic_dataset(root, "sysu-mm01", seed=args.seed, **settings)
    overrides = [
        {"optim": {"epochs": args.epochs}},
        {"sampler": {"iters_per_epoch": args.iters}},
        {"input": {"height": args.input[0], "width": args.input[1]}},
        {"train": {"seed": args.seed, "workers": args.workers, "cache_images": True}},
    ]
    config = load_config("sysu-mm01", args.config, overrides)
    start = time.perf_counter()
    result = train(config, "sysu-mm01", root, workdir / "run", device=args.device, stream=None)
    seconds = time.perf_counter() - start
    dump = workdir / "feats.h5"
    extract(result.checkpoint, "sysu-mm01", root, dump, device=args.device, stream=None)
    frame = score(dump, "cross,uni")
    test_ids = len((root / "exp" / "test_id.txt").read_text().strip().split(","))
    return {
        "ids": settings["ids"],
        "per_cam": settings["per_cam"],
        "shared": settings["shared"],
        "nuisance": settings["nuisance"],
        "epochs": args.epochs,
        "iters": args.iters,
        "train_s": round(seconds, 1),
        "chance_r1": round(100 / test_ids, 2),
        "cross_i2v_r1": round(_r1(frame, "cross", "infrared"), 2),
        "cross_i2v_map": round(_r1(frame, "cross", "infrared", "mAP"), 2),
        "cross_v2i_r1": round(_r1(frame, "cross", "visible"), 2),
        "uni_ir_r1": round(_r1(frame, "uni", "infrared"), 2),
        "uni_vis_r1": round(_r1(frame, "uni", "visible"), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(SYNTH_IMAGE_PRESETS))
    parser.add_argument("--shared", type=float, nargs="+")
    parser.add_argument("--nuisance", type=float, nargs="+")
    parser.add_argument("--ids", type=int, nargs="+")
    parser.add_argument("--per-cam", type=int)
    parser.add_argument("--size", type=_size, help="render size HEIGHTxWIDTH")
    parser.add_argument("--input", type=_size, default=(64, 32), help="model input size")
    parser.add_argument("--config", default="synth-baseline")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--iters", type=int, default=4, help="batches per epoch")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--csv", help="also write the rows to this CSV file")
    args = parser.parse_args(argv)

    base = dict(SYNTH_IMAGE_DEFAULTS)
    base.update(SYNTH_IMAGE_PRESETS.get(args.preset or "", {}))
    if args.per_cam is not None:
        base["per_cam"] = args.per_cam
    if args.size is not None:
        base["size"] = args.size
    grid = itertools.product(
        args.shared or [base["shared"]],
        args.nuisance or [base["nuisance"]],
        args.ids or [base["ids"]],
    )
    rows = []
    for shared, nuisance, ids in grid:
        settings = dict(base, shared=shared, nuisance=nuisance, ids=ids)
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(calibrate_one(args, settings, Path(tmp)))
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"baseline {args.config}, input {args.input[0]}x{args.input[1]}, device {args.device}")
    print(tabulate(rows, headers="keys", tablefmt="pipe"))
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
