"""Calibrate synth-images: train the baseline per knob setting, print cross- and uni-modal R1.

    python benchmarks/calibrate_synth.py --shared 0.3 0.6 0.9 --nuisance 1 0.5 0.25 \\
        --device cuda --jobs 9 --csv calib.csv --pick pick.json      # the GPU grid
    python benchmarks/calibrate_synth.py --shared 0.6 --nuisance 0.5 # one setting, CPU

For every combination of ``--shared`` x ``--nuisance`` x ``--ids`` the script renders a
synthetic SYSU-MM01 dataset (``write_synthetic_dataset``), trains the baseline of
``--config`` (default ``synth-baseline``: ResNet-18, ``L_yme`` only, no modality-related
branch) for ``--epochs`` x ``--iters`` batches of ``--batch-ids`` x (``--num-pos`` +
``--num-pos``) on ``--device``, extracts the test set and scores it with the SYSU-MM01
convention (single-shot, 10 trials). Defaults not given come from ``--preset`` and then
from the CPU-budget schedule (``synth_runs.CPU_BUDGET``, the schedule of issue 16's band:
what 10 minutes of an idle 2-core CPU train). The step count, not the device, defines the
result: a GPU run of the schedule is the CPU run, faster.

Per setting, in %: cross-modal all-search R1 and mAP with infrared queries (I->V, the
paper's Table 1 direction) and with visible queries, uni-modal R1 per modality, the uni-modal
margin (the smaller uni-modal R1 minus cross I->V R1), chance R1 (1 / test identities), and
seconds per phase (render, train, extract, score).

``--jobs N`` runs N settings at once in spawned processes (sharing one GPU, or the CPU), each
with ``--threads`` torch/OpenMP/Numba threads (default: CPU count / N). ``--csv`` gets each
row as soon as its setting finishes (a timeout keeps the finished ones). ``--pick [PATH]``
prints, and writes to PATH as JSON, the setting whose cross I->V R1 lies in ``--band``
(default 40-70) with the largest uni-modal margin, or, when none does, the one closest to
the band; the JSON holds the knobs and the schedule, which ``ablation_synth.py
--knobs-json`` reads. Not a test; the training runs are real.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

from synth_runs import (
    CPU_BUDGET,
    CsvRows,
    job_pool,
    render,
    schedule_overrides,
    threads_per_job,
    train_extract_score,
    value,
    warm_kernels,
)
from tabulate import tabulate

from vireid_bench.synth.defaults import SYNTH_IMAGE_PRESETS


def _size(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def calibrate_one(settings: dict, schedule: dict, options: dict) -> dict:
    """Render, train, extract, score one knob setting; return its row (runs in a job)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=options["workdir"]) as tmp:
        workdir = Path(tmp)
        root = workdir / "data"
        render_s = render(root, settings, seed=options["seed"])
        frame, seconds, _ = train_extract_score(
            root,
            workdir,
            options["config"],
            schedule_overrides(schedule, options["seed"], options["workers"]),
            device=options["device"],
            dump=workdir / "feats.h5",
            protocols="cross,uni",
        )
        test_ids = len((root / "exp" / "test_id.txt").read_text().strip().split(","))
    cross = value(frame, "cross", "infrared")
    uni_ir, uni_vis = value(frame, "uni", "infrared"), value(frame, "uni", "visible")
    return {
        "shared": settings["shared"],
        "nuisance": settings["nuisance"],
        "ids": settings["ids"],
        "per_cam": settings["per_cam"],
        "size": f"{settings['size'][0]}x{settings['size'][1]}",
        "input": f"{schedule['input'][0]}x{schedule['input'][1]}",
        "epochs": schedule["epochs"],
        "iters": schedule["iters"],
        "batch": f"{schedule['batch_ids']}x({schedule['num_pos']}+{schedule['num_pos']})",
        "device": options["device"],
        "chance_r1": round(100 / test_ids, 2),
        "cross_i2v_r1": cross,
        "cross_i2v_map": value(frame, "cross", "infrared", "mAP"),
        "cross_v2i_r1": value(frame, "cross", "visible"),
        "uni_ir_r1": uni_ir,
        "uni_vis_r1": uni_vis,
        "uni_margin": round(min(uni_ir, uni_vis) - cross, 2),
        "render_s": round(render_s, 1),
        "train_s": round(seconds["train_s"], 1),
        "extract_s": round(seconds["extract_s"], 1),
        "score_s": round(seconds["score_s"], 1),
        "train_cpu_s": round(seconds["train_cpu_s"], 1),
        "extract_cpu_s": round(seconds["extract_cpu_s"], 1),
        "score_cpu_s": round(seconds["score_cpu_s"], 1),
        "total_s": round(time.perf_counter() - started, 1),
        "train_img_s": round(seconds["train_img_s"], 1),
    }


def pick(rows: list[dict], band: tuple[float, float]) -> dict | None:
    """The row whose cross I->V R1 lies in ``band`` with the largest uni-modal margin; when
    none does, the one closest to the band (ties: the larger margin)."""
    low, high = band
    scored = [r for r in rows if not math.isnan(r["cross_i2v_r1"])]
    inside = [r for r in scored if low <= r["cross_i2v_r1"] <= high]
    if inside:
        return max(inside, key=lambda r: r["uni_margin"])

    def distance(r: dict) -> float:
        return max(low - r["cross_i2v_r1"], r["cross_i2v_r1"] - high)

    return min(scored, key=lambda r: (distance(r), -r["uni_margin"]), default=None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(SYNTH_IMAGE_PRESETS))
    parser.add_argument("--shared", type=float, nargs="+")
    parser.add_argument("--nuisance", type=float, nargs="+")
    parser.add_argument("--ids", type=int, nargs="+")
    parser.add_argument("--per-cam", type=int)
    parser.add_argument("--size", type=_size, help="render size HEIGHTxWIDTH")
    parser.add_argument("--input", type=_size, help="model input size HEIGHTxWIDTH")
    parser.add_argument("--config", default="synth-baseline")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--iters", type=int, help="batches per epoch")
    parser.add_argument("--batch-ids", type=int)
    parser.add_argument("--num-pos", type=int)
    parser.add_argument("--workers", type=int, default=0, help="loader workers per job")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="settings run at once")
    parser.add_argument("--threads", type=int, help="threads per job (default: CPUs / jobs)")
    parser.add_argument("--workdir", help="where the temporary data go (default: system tmp)")
    parser.add_argument("--csv", help="write each row to this CSV as its setting finishes")
    parser.add_argument(
        "--pick", nargs="?", const="-", help="print (and write, as JSON, to PATH) the pick"
    )
    parser.add_argument("--band", type=float, nargs=2, default=(40.0, 70.0))
    args = parser.parse_args(argv)

    knobs = {k: CPU_BUDGET[k] for k in ("ids", "per_cam", "size")}
    knobs.update(shared=0.0, nuisance=1.0)
    knobs.update(SYNTH_IMAGE_PRESETS.get(args.preset or "", {}))
    for key in ("per_cam", "size"):
        if getattr(args, key) is not None:
            knobs[key] = getattr(args, key)
    schedule = {k: CPU_BUDGET[k] for k in ("input", "epochs", "iters", "batch_ids", "num_pos")}
    for key in schedule:
        if getattr(args, key) is not None:
            schedule[key] = getattr(args, key)
    grid = [
        dict(knobs, shared=shared, nuisance=nuisance, ids=ids)
        for shared, nuisance, ids in itertools.product(
            args.shared or [knobs["shared"]],
            args.nuisance or [knobs["nuisance"]],
            args.ids or [knobs["ids"]],
        )
    ]
    options = {
        "config": args.config,
        "device": args.device,
        "seed": args.seed,
        "workers": args.workers,
        "workdir": args.workdir,
    }
    threads = threads_per_job(args.jobs, args.threads)
    print(
        f"calibration: {len(grid)} setting(s), {args.jobs} job(s) x {threads} thread(s), "
        f"device {args.device}, schedule {schedule}",
        file=sys.stderr,
        flush=True,
    )
    print(f"numba warm-up: {warm_kernels():.1f} s", file=sys.stderr, flush=True)
    out = CsvRows(args.csv)
    rows = []
    with job_pool(args.jobs, threads) as pool:
        futures = {pool.submit(calibrate_one, s, schedule, options): s for s in grid}
        for future in concurrent.futures.as_completed(futures):
            setting = futures[future]
            try:
                row = future.result()
            except Exception:  # a failed setting is reported; the others go on
                print(f"setting {setting} FAILED:\n{traceback.format_exc()}", file=sys.stderr)
                continue
            rows.append(row)
            out.add(row)
            print(row, file=sys.stderr, flush=True)
    if not rows:
        sys.exit("calibration: no setting finished")
    rows.sort(key=lambda r: (r["shared"], -r["nuisance"], r["ids"]))
    print(f"baseline {args.config}, device {args.device}")
    print(tabulate(rows, headers="keys", tablefmt="pipe"))
    if args.pick:
        chosen = pick(rows, tuple(args.band))
        inside = args.band[0] <= chosen["cross_i2v_r1"] <= args.band[1]
        result = {
            "knobs": {
                "ids": chosen["ids"],
                "per_cam": chosen["per_cam"],
                "size": list(_size(chosen["size"])),
                "shared": chosen["shared"],
                "nuisance": chosen["nuisance"],
            },
            "schedule": {**schedule, "input": list(schedule["input"])},
            "in_band": inside,
            "band": list(args.band),
            "row": chosen,
        }
        print(
            f"pick ({'in' if inside else 'NOT in, closest to'} the band "
            f"{args.band[0]:g}-{args.band[1]:g} %): {json.dumps(result['knobs'])} "
            f"cross I->V R1 {chosen['cross_i2v_r1']}, uni-modal margin {chosen['uni_margin']}"
        )
        if args.pick != "-":
            Path(args.pick).write_text(json.dumps(result, indent=2) + "\n")
            print(f"wrote {args.pick}")


if __name__ == "__main__":
    main()
