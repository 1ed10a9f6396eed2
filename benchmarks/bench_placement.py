"""The fused kernel's placement, before and after, against the matmul over the same rows.

Run: ``python benchmarks/bench_placement.py --before TREE [--out DIR] [--repeats 3]
[--max-rows N]``

Two problems, the issue's CPU rows (generated generic dumps, cameras 1, 2 visible and 3, 4
infrared, 10 images per identity and camera):

* **12k**: 300 identities, D = 512, ``--protocol all --cmc image`` (14 plans);
* **40k**: 1,000 identities, D = 256, ``--protocol mix-id --cmc image`` (2 plans; under
  ``--memory-limit 1GB`` ``score`` takes the in-memory row blocks, so this is its kernel).

Per problem and tree (``before``: the vireid_bench of ``--before``, e.g. a checkout of
main; ``after``: this tree), a fresh subprocess times, over the scorer's row blocks of the
plans' query union against the whole pool: the float32 distance blocks (``matmul``) and
:func:`vireid_bench.engine.fused.score_jobs` on them (``kernel``), in process CPU seconds
(all threads) and wall seconds, medians of ``--repeats``. Trees alternate, so both see the
same machine load. Every tree's per-query outputs are hashed and must agree bit for bit.
``--max-rows`` limits the query rows (a quick look); the default is every query.

Machines here are shared: compare the ratios, not the seconds.
"""

from __future__ import annotations

# isort: off
# first, as the command does: OpenBLAS's idle threads then sleep (engine/blas_threads.py)
import vireid_bench  # noqa: F401

# isort: on

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

PROBLEMS = {"12k": (300, 512, "all"), "40k": (1000, 256, "mix-id")}


def make_dump(folder: str, ids: int, dim: int) -> str:
    from vireid_bench.synth.dumps import write_synth_dump

    path = os.path.join(folder, f"placement-generic-{ids}x{dim}.h5")
    if not os.path.exists(path):
        write_synth_dump(
            path, ids=ids, cameras="1,2:visible,3,4:infrared", per_cam=10, dim=dim, seed=0,
            float16=False,
        )  # fmt: skip
    return path


def child(path: str, protocol: str, repeats: int, max_rows: int) -> dict:
    from vireid_bench.engine.distances import distance_block, prepared_features
    from vireid_bench.engine.fused import FusedJob, score_jobs
    from vireid_bench.engine.plans import plan_evaluation
    from vireid_bench.engine.scoring import DEFAULT_BLOCK_BYTES
    from vireid_bench.io.dump import load_dump
    from vireid_bench.protocol import resolve_presets

    dump = load_dump(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        setup = plan_evaluation(dump, resolve_presets(protocol), cmc="image")
    split = dump.splits[0]
    n = split.n_images
    name = dump.cross_features
    cross, _ = prepared_features(path, split, (name, name), "cosine", np.arange(n))
    convention = setup.context.convention
    keys = {c: convention.camera_keys(split.cam, c) for c in (False, True)}
    plans = [(task, plan) for task in setup.tasks for plan in task.plans]
    union = np.unique(np.concatenate([plan.query_idx for _, plan in plans]))
    if max_rows:
        union = union[:max_rows]
    pool = np.arange(n)
    mod = split.modality.astype(np.int64)
    per_block = max(1, DEFAULT_BLOCK_BYTES // (n * 4))
    digest = hashlib.sha256()

    def one_pass(keep: bool) -> tuple[float, float, float, float]:
        mm_cpu = mm_wall = k_cpu = k_wall = 0.0
        for lo in range(0, union.size, per_block):
            rows = union[lo : lo + per_block]
            c0, w0 = time.process_time(), time.perf_counter()
            dist = distance_block(cross[rows], cross, "cosine", None)
            c1, w1 = time.process_time(), time.perf_counter()
            jobs = []
            for task, plan in plans:
                sel = np.flatnonzero(np.isin(plan.query_idx, rows))
                jobs.append(
                    FusedJob(np.searchsorted(rows, plan.query_idx[sel]),
                             task.preset.clause_codes(), bool(task.preset.colocated_cameras),
                             task.cmc == "identity")
                )  # fmt: skip
            outs = score_jobs(
                dist, np.arange(rows.size), rows, split.pid[rows], keys[False][rows],
                keys[True][rows], mod[rows], pool, pool, split.pid, keys[False], keys[True],
                mod, jobs,
            )  # fmt: skip
            c2, w2 = time.process_time(), time.perf_counter()
            mm_cpu, mm_wall = mm_cpu + c1 - c0, mm_wall + w1 - w0
            k_cpu, k_wall = k_cpu + c2 - c1, k_wall + w2 - w1
            if keep:
                for out in outs:
                    for field in ("first_rank", "ap", "inp", "n_pos", "n_gallery"):
                        digest.update(np.ascontiguousarray(out[field]).tobytes())
        return mm_cpu, mm_wall, k_cpu, k_wall

    # JIT cache load and warm-up outside the timing
    score_jobs(
        np.zeros((1, n), np.float32), np.zeros(1, np.int64), union[:1], split.pid[union[:1]],
        keys[False][union[:1]], keys[True][union[:1]], mod[union[:1]], pool, pool, split.pid,
        keys[False], keys[True], mod,
        [FusedJob(np.zeros(1, np.int64), plans[0][0].preset.clause_codes(), False, False)],
    )  # fmt: skip
    runs = [one_pass(r == 0) for r in range(repeats)]
    med = np.median(np.array(runs), axis=0)
    return {
        "rows": int(union.size),
        "pool": n,
        "matmul_cpu": float(med[0]),
        "matmul_wall": float(med[1]),
        "kernel_cpu": float(med[2]),
        "kernel_wall": float(med[3]),
        "digest": digest.hexdigest(),
    }


def run_child(tree: str, path: str, protocol: str, repeats: int, max_rows: int) -> dict:
    env = dict(os.environ, PYTHONPATH=tree)
    command = [sys.executable, __file__, "--child", path, "--protocol", protocol,
               "--repeats", str(repeats), "--max-rows", str(max_rows)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child failed ({tree}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=False, help="source tree of the 'before' code")
    parser.add_argument("--out", default=tempfile.gettempdir(), help="folder for the dumps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-rows", type=int, default=0)
    parser.add_argument("--problems", default="12k,40k")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--protocol", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.protocol, args.repeats, args.max_rows)))
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"after": here} if not args.before else {"before": args.before, "after": here}
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    records = []
    for label in args.problems.split(","):
        ids, dim, protocol = PROBLEMS[label]
        path = make_dump(args.out, ids, dim)
        load = os.getloadavg()[0]
        record = {"problem": label, "protocol": protocol}
        for name, tree in trees.items():
            record[name] = run_child(tree, path, protocol, args.repeats, args.max_rows)
            load = max(load, os.getloadavg()[0])
            r = record[name]
            print(f"  {label} [{name}] kernel {r['kernel_cpu']:.2f}s CPU ({r['kernel_wall']:.2f}s "
                  f"wall), matmul {r['matmul_cpu']:.2f}s CPU ({r['matmul_wall']:.2f}s wall)",
                  flush=True)  # fmt: skip
        record["load"] = load
        digests = {record[name]["digest"] for name in trees}
        record["identical"] = len(digests) == 1
        records.append(record)
    print("\nkernel / matmul over the same rows: CPU seconds of the process (wall in brackets)")
    print("| problem | tree | rows x pool | matmul CPU (wall) | kernel CPU (wall) "
          "| kernel / matmul CPU (wall) | outputs |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for rec in records:
        for name in trees:
            r = rec[name]
            same = "bit-identical" if rec["identical"] else "**DIFFER**"
            print(f"| {rec['problem']} `{rec['protocol']}` | {name} | {r['rows']} x {r['pool']} | "
                  f"{r['matmul_cpu']:.2f} ({r['matmul_wall']:.2f}) | {r['kernel_cpu']:.2f} "
                  f"({r['kernel_wall']:.2f}) | {r['kernel_cpu'] / r['matmul_cpu']:.2f}x "
                  f"({r['kernel_wall'] / r['matmul_wall']:.2f}x) | {same} |")  # fmt: skip
        if "before" in trees:
            b, a = rec["before"], rec["after"]
            print(f"| {rec['problem']} | after / before | | | | kernel CPU "
                  f"{a['kernel_cpu'] / b['kernel_cpu']:.2f}x | |")  # fmt: skip
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(records, handle, indent=1)


if __name__ == "__main__":
    main()
