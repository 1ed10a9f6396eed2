"""MixER's loss ablation (the paper's Table 5) on the synthetic benchmark, over seeds.

    python benchmarks/ablation_synth.py OUTDIR --knobs-json pick.json --device cuda --jobs 18
    python benchmarks/ablation_synth.py OUTDIR --shared 0.6 --nuisance 0.5 --seeds 0 1 2
    python benchmarks/ablation_synth.py OUTDIR --summary-only      # the table from OUTDIR/dumps

Rows (``--rows``; default :data:`DEFAULT_ROWS`), each a set of config overrides of the
packaged ``synth-small`` configuration (MixER, every loss) put on the CPU-budget schedule
(``synth_runs.CPU_BUDGET``, or the schedule in ``--knobs-json``); the paper's Table 5 rows:

==========================  ======================================================
row (the dump's ``model``)  what it trains (``[model]``/``[loss]`` overrides)
==========================  ======================================================
``L_yme``                   the baseline: no modality-related branch, meid + cc_e
``L_yme+L_ymr``             + the modality-related branch (z_r) with mrid + cc_r
``L_yme+L_o``               + a z_r branch trained only by the orthogonality loss
``L_yme+L_m``               + the modality classifier through the GRL on z_e
``L_yme+L_o+L_m``           both (the paper's row 5; not in the default set)
``L_yme+L_ymr+L_o+L_m``     everything but the fusion loss (the paper's row 6)
``MixER``                   every loss: + L_f (the paper's last row)
==========================  ======================================================

A row whose z_r is not trained for identity (no L_ymr: ``L_yme+L_o``) is scored with
``z_e`` for every pair, as the baseline (its dump keeps ``z_e`` only); rows with L_ymr keep
``z_e``, ``z_r``, ``z_f`` and MixER's policy (``z_e`` across modalities, ``z_f`` within).

All runs share one rendered dataset (data seed ``--data-seed``); ``--seeds`` are training
seeds. Per run: train, extract a float16 dump ``OUTDIR/dumps/<row>-seed<k>.h5`` (attributes
``model`` = the row name, ``seed``, ``run``, ``selection = last``, ``trained_on``,
``synthetic``), score it under every SYSU-MM01 setting; ``OUTDIR/runs.csv`` gets one row
per finished run (R1/mAP of the settings below, seconds per phase) as it finishes. At the
end, the project's run statistics (:func:`vireid_bench.results.runs.runs_report`, as
``vireid-bench runs``) over the finished dumps: ``OUTDIR/summary.csv`` (every setting) and
``OUTDIR/ablation.md`` (per row: mean +- half-width of the 95 % interval of the mean, t
with n - 1 degrees of freedom, of R1 / mAP for Mix, Mix-ID, Mix-Cam-ID, cross-modal
all-search with infrared queries and uni-modal I->I, V->V). ``--summary-only`` makes the
summary from the dumps already in ``OUTDIR/dumps`` (e.g. after a timeout).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
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

LOSSES_OFF = {"mrid": False, "cc_r": False, "ortho": False, "modality": False, "fusion": False}


def _row(related: bool, **losses: bool) -> dict:
    return {
        "model": {"related_branch": related},
        "loss": {**LOSSES_OFF, **losses},
    }


ROWS: dict[str, dict] = {
    "L_yme": _row(False),
    "L_yme+L_ymr": _row(True, mrid=True, cc_r=True),
    "L_yme+L_o": _row(True, ortho=True),
    "L_yme+L_m": _row(False, modality=True),
    "L_yme+L_o+L_m": _row(True, ortho=True, modality=True),
    "L_yme+L_ymr+L_o+L_m": _row(True, mrid=True, cc_r=True, ortho=True, modality=True),
    "MixER": _row(True, mrid=True, cc_r=True, ortho=True, modality=True, fusion=True),
}
DEFAULT_ROWS = ("L_yme", "L_yme+L_ymr", "L_yme+L_o", "L_yme+L_m", "L_yme+L_ymr+L_o+L_m", "MixER")

# (column, protocol, query modality) of the per-run CSV and the Markdown table
COLUMNS = (
    ("Mix", "mix", "infrared"),
    ("Mix-ID", "mix-id", "infrared"),
    ("Mix-Cam-ID", "mix-cam-id", "infrared"),
    ("Cross I->V", "cross", "infrared"),
    ("Cross V->I", "cross", "visible"),
    ("Uni I->I", "uni", "infrared"),
    ("Uni V->V", "uni", "visible"),
)


def slug(row: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", row).strip("-").lower()


def z_e_only(row: str) -> bool:
    """True when the row's z_r is not trained for identity: score it with z_e only."""
    return not ROWS[row]["loss"]["mrid"]


def keep_z_e(path: Path) -> None:
    """Rewrite a dump with its ``z_e`` set only (every pair scored with ``z_e``)."""
    from vireid_bench.io.dump import load_dump, write_dump

    dump = load_dump(path)
    split = dump.splits[0]
    write_dump(
        path,
        features={"z_e": split.features["z_e"]},
        pid=split.pid,
        cam=split.cam,
        modality=split.modality,
        paths=None if split.path is None else list(split.path),
        dataset=dump.dataset,
        model=dump.model,
        description=dump.description + "; z_r not trained for identity: z_e only",
        default_features="z_e",
        cross_features="z_e",
        same_features="z_e",
        float16=True,
        protocol_version=dump.protocol_version,
        seed=dump.seed,
        run=dump.run,
        selection=dump.selection,
        trained_on=dump.trained_on,
        synthetic=dump.synthetic,
    )


def run_one(row: str, seed: int, root: str, schedule: dict, options: dict) -> dict:
    """Train, extract and score one (row, seed); return its CSV row (runs in a job)."""
    started = time.perf_counter()
    name = f"{slug(row)}-seed{seed}"
    dump = Path(options["outdir"]) / "dumps" / f"{name}.h5"
    overrides = [ROWS[row], *schedule_overrides(schedule, seed, options["workers"])]
    with tempfile.TemporaryDirectory(dir=options["workdir"]) as tmp:
        partial = Path(tmp) / f"{name}.h5"
        frame, seconds, digest = train_extract_score(
            Path(root),
            Path(tmp),
            "synth-small",
            overrides,
            device=options["device"],
            dump=partial,
            protocols="all",
            model=row,
            run=name,
        )
        if z_e_only(row):
            keep_z_e(partial)
            from vireid_bench.engine.scoring import score

            frame = score(partial, "all")
        partial.replace(dump)  # only finished dumps appear under OUTDIR/dumps
    result = {"row": row, "seed": seed, "run": name, "config_hash": digest}
    for label, protocol, query in COLUMNS:
        result[f"{label} R1"] = value(frame, protocol, query)
        result[f"{label} mAP"] = value(frame, protocol, query, "mAP")
    result.update({k: round(v, 1) for k, v in seconds.items()})
    result["total_s"] = round(time.perf_counter() - started, 1)
    result["device"] = options["device"]
    return result


def summarize(outdir: Path, rows: list[str] | None = None) -> str:
    """Run statistics over ``outdir/dumps/*.h5`` per row: write summary.csv and
    ablation.md; return the Markdown table."""
    from vireid_bench.io.dump import load_dump
    from vireid_bench.protocol import resolve_presets
    from vireid_bench.results.keys import setting_key
    from vireid_bench.results.runs import runs_report
    from vireid_bench.results.runs_render import render_runs

    paths = sorted((outdir / "dumps").glob("*.h5"))
    if not paths:
        raise SystemExit(f"{outdir / 'dumps'}: no dumps to summarise")
    order = list(rows or ROWS)
    models = {p: load_dump(p, lazy=True).model for p in paths}
    paths.sort(key=lambda p: (order.index(models[p]) if models[p] in order else 99, p.name))
    report = runs_report(paths, resolve_presets("all"), metrics=("rank1", "mAP"))
    (outdir / "summary.csv").write_text(render_runs(report, "csv", "synthetic ablation"))
    cells = {(s.model, s.setting, s.metric): s for s in report.summaries}

    def cell(model: str, protocol: str, query: str) -> str:
        key = setting_key(protocol, "all", query)
        parts = []
        for metric in ("rank1", "mAP"):
            s = cells.get((model, key, metric))
            if s is None:
                return "n/a"
            half = (s.ci_high - s.ci_low) / 2 if s.n > 1 else float("nan")
            parts.append(f"{s.mean:.1f}" + (f" ± {half:.1f}" if half == half else ""))
        return " / ".join(parts)

    header = ["Row (losses)", "runs", *[label for label, _, _ in COLUMNS]]
    lines = [
        "| " + " | ".join(header) + " |",
        "|:--|--:|" + "|".join(":--" for _ in COLUMNS) + "|",
    ]
    for group in report.groups:
        lines.append(
            f"| {group.model} | {group.n} | "
            + " | ".join(cell(group.model, p, q) for _, p, q in COLUMNS)
            + " |"
        )
    table = "\n".join(lines) + "\n"
    note = (
        "R1 / mAP in %, mean over runs ± half-width of the 95 % t-interval of the mean "
        "(vireid-bench runs); SYSU-MM01 convention, all-search, single-shot, 10 trials.\n"
    )
    (outdir / "ablation.md").write_text(table + "\n" + note)
    return table + "\n" + note


def load_knobs(args) -> tuple[dict, dict]:
    knobs = {
        "ids": CPU_BUDGET["ids"],
        "per_cam": CPU_BUDGET["per_cam"],
        "size": CPU_BUDGET["size"],
        "shared": 0.0,
        "nuisance": 1.0,
    }
    schedule = {k: CPU_BUDGET[k] for k in ("input", "epochs", "iters", "batch_ids", "num_pos")}
    if args.knobs_json:
        picked = json.loads(Path(args.knobs_json).read_text())
        knobs.update(picked["knobs"])
        schedule.update(picked.get("schedule", {}))
    for key in ("shared", "nuisance", "ids", "per_cam", "size"):
        if getattr(args, key) is not None:
            knobs[key] = getattr(args, key)
    for key in ("epochs", "iters", "batch_ids", "num_pos", "input"):
        if getattr(args, key) is not None:
            schedule[key] = getattr(args, key)
    return knobs, schedule


def _size(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(DEFAULT_ROWS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--knobs-json", help="the --pick JSON of calibrate_synth.py")
    parser.add_argument("--shared", type=float)
    parser.add_argument("--nuisance", type=float)
    parser.add_argument("--ids", type=int)
    parser.add_argument("--per-cam", type=int)
    parser.add_argument("--size", type=_size, help="render size HEIGHTxWIDTH")
    parser.add_argument("--input", type=_size, help="model input size HEIGHTxWIDTH")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--iters", type=int)
    parser.add_argument("--batch-ids", type=int)
    parser.add_argument("--num-pos", type=int)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="loader workers per job")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, help="threads per job (default: CPUs / jobs)")
    parser.add_argument("--workdir", help="where temporary run folders go")
    parser.add_argument("--data-dir", help="the rendered images (default: OUTDIR/data)")
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args(argv)

    outdir = Path(args.outdir)
    if args.summary_only:
        print(summarize(outdir, args.rows))
        return
    (outdir / "dumps").mkdir(parents=True, exist_ok=True)
    knobs, schedule = load_knobs(args)
    settings = {"knobs": knobs, "schedule": schedule, "rows": args.rows, "seeds": args.seeds}
    (outdir / "settings.json").write_text(json.dumps(settings, indent=2, default=list) + "\n")
    threads = threads_per_job(args.jobs, args.threads)
    print(
        f"ablation: {len(args.rows)} rows x {len(args.seeds)} seeds, {args.jobs} job(s) x "
        f"{threads} thread(s), device {args.device}; {json.dumps(settings, default=list)}",
        file=sys.stderr,
        flush=True,
    )
    root = Path(args.data_dir) if args.data_dir else outdir / "data"
    if not (root / "SYNTHETIC.txt").is_file():
        print(f"rendered data in {render(root, knobs, args.data_seed):.1f} s", file=sys.stderr)
    print(f"numba warm-up: {warm_kernels():.1f} s", file=sys.stderr, flush=True)
    options = {
        "outdir": str(outdir),
        "device": args.device,
        "workers": args.workers,
        "workdir": args.workdir,
    }
    out = CsvRows(outdir / "runs.csv")
    failed = 0
    # seeds outermost: if the budget runs out, every row has its first seeds
    work = [(row, seed) for seed in args.seeds for row in args.rows]
    with job_pool(args.jobs, threads) as pool:
        futures = {
            pool.submit(run_one, row, seed, str(root), schedule, options): (row, seed)
            for row, seed in work
        }
        for future in concurrent.futures.as_completed(futures):
            try:
                result = future.result()
            except Exception:  # a failed run is reported; the others go on
                failed += 1
                print(f"run {futures[future]} FAILED:\n{traceback.format_exc()}", file=sys.stderr)
                continue
            out.add(result)
            print(
                f"done {result['run']}: cross I->V R1 {result['Cross I->V R1']}, Mix-ID R1 "
                f"{result['Mix-ID R1']}, {result['total_s']} s",
                file=sys.stderr,
                flush=True,
            )
    print(summarize(outdir, args.rows))
    if failed:
        sys.exit(f"ablation: {failed} run(s) failed (see above)")


if __name__ == "__main__":
    main()
