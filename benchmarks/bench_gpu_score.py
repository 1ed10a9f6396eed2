"""The torch backend on a device against its matmul floor, in one run, on synthetic features.

Run (the device session; about a minute on an H100/H200)::

    python benchmarks/bench_gpu_score.py --device cuda --csv gpu.csv

CPU smoke run (< 2 min on a 2-core machine)::

    python benchmarks/bench_gpu_score.py --device cpu --pool 4000 --big-gallery 20000 --csv x.csv

Features are generated in memory (:func:`vireid_bench.synth.dumps.synth_arrays`: cameras 1,
2 visible and 3, 4 infrared, 10 images per identity and camera, ``--pool / 40`` identities);
no file is written but the CSV. Stages, each writing its CSV row as soon as it finishes (a
timeout keeps the earlier rows) and printing progress:

a. ``floor``: the float32 distance blocks alone (``1 - Q @ G.T``, TF32 off), ``--pool`` x
   ``--pool``, in the row blocks the backend uses (:func:`~vireid_bench.engine.torch_backend.
   rows_per_block`);
b. ``all``: ``evaluate(..., protocol all, cmc image, device=...)`` on that pool: 7 settings
   x 2 query modalities = 14 plans sharing one pool (a warm-up run on a tenth of the pool
   first, not timed); seconds and the ratio to (a);
c. ``big``: ``--big-queries`` infrared queries against a ``--big-gallery`` pool under the
   ``cross`` setting (the generic convention keeps the whole pool and excludes the query's
   modality: every one of the 1M images is placed and counted), and its own matmul floor.
   The big pool repeats the synthetic features with their dimensions permuted per copy (new
   identities, no extra generation cost);
d. ``numba``: the Numba path on the same data for parity: the max |mAP difference| over the
   14 rows against the torch run. On the full pool only when ``--numba-pool 0`` or the
   pool is at most ``--numba-pool`` (default 20,000: ``--protocol all`` at 100k x 100k
   takes about 3 minutes on a 16-core host, beyond the slot); otherwise torch and Numba are
   both run on the first ``--numba-pool`` images.

Machines are shared: read the ratios. The mAP gap on synthetic float features is not zero
because torch's and NumPy's float32 matmuls round differently in the last bit (near-ties
swap); on exact features the per-query outputs are equal (tests/test_torch_backend.py).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
import warnings
from dataclasses import replace

import numpy as np

from vireid_bench.engine.plans import plan_evaluation
from vireid_bench.engine.scoring import aggregate, evaluate
from vireid_bench.engine.torch_backend import (
    import_torch,
    resolve_device,
    rows_per_block,
    score_tasks_torch,
    tf32_mode,
)
from vireid_bench.io.dump import FeatureDump, FeatureSplit
from vireid_bench.protocol import resolve_presets
from vireid_bench.synth.dumps import synth_arrays

CAMERAS = {1: 0, 2: 0, 3: 1, 4: 1}
PER_CAM = 10
FIELDS = ("stage", "device", "queries", "pool", "dim", "plans", "seconds", "floor_seconds",
          "ratio", "note")  # fmt: skip


def say(text: str) -> None:
    print(text, flush=True)


def in_memory_dump(name: str, features, pid, cam, modality) -> FeatureDump:
    split = FeatureSplit(features={"default": features}, pid=pid, cam=cam, modality=modality)
    return FeatureDump(
        source=name, dataset="generic", model="synthetic", description="", splits=(split,),
        default_features="default", cross_features="default", same_features="default",
        feature_dims={"default": int(features.shape[1])},
    )  # fmt: skip


def synth_dump(pool: int, dim: int, seed: int = 0) -> FeatureDump:
    ids = max(1, math.ceil(pool / (len(CAMERAS) * PER_CAM)))
    arrays = synth_arrays(ids, CAMERAS, PER_CAM, dim, seed)
    take = slice(0, pool)
    return in_memory_dump(
        f"synthetic-{pool}", arrays["features"][take], arrays["pid"][take], arrays["cam"][take],
        arrays["modality"][take],
    )  # fmt: skip


def big_dump(base: FeatureDump, size: int, seed: int = 1) -> FeatureDump:
    """``size`` images: copies of ``base`` with permuted dimensions and new identities."""
    split = base.splits[0]
    feats = split.features["default"]
    n, dim = feats.shape
    copies = math.ceil(size / n)
    rng = np.random.default_rng(seed)
    out = np.empty((copies * n, dim), dtype=np.float32)
    for c in range(copies):
        out[c * n : (c + 1) * n] = feats[:, rng.permutation(dim)] if c else feats
    offset = int(split.pid.max()) + 1
    pid = np.concatenate([split.pid + c * offset for c in range(copies)])
    return in_memory_dump(
        f"synthetic-big-{size}", out[:size], pid[:size], np.tile(split.cam, copies)[:size],
        np.tile(split.modality, copies)[:size],
    )  # fmt: skip


def sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_floor(torch, device, query: np.ndarray, gallery: np.ndarray) -> float:
    """Seconds of the float32 cosine distance blocks (features L2-normalised first)."""

    def normed(array):
        t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device)
        return t / t.norm(dim=1, keepdim=True)

    q, g = normed(query), normed(gallery)
    rows = rows_per_block(torch, device, g.shape[0], 1, 40, 256 * 1024**2)
    best = float("inf")
    with tf32_mode(torch, False), torch.no_grad():
        for _ in range(2):  # the first one warms up
            sync(torch, device)
            start = time.perf_counter()
            for lo in range(0, q.shape[0], rows):
                product = q[lo : lo + rows] @ g.T
                torch.sub(1.0, product, out=product)
                del product
            sync(torch, device)
            best = min(best, time.perf_counter() - start)
    del q, g
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return best


def score_all(dump: FeatureDump, device: str | None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(dump, resolve_presets("all"), cmc="image", device=device)


def map_gap(a, b) -> float:
    ours = {(r["protocol"], r["query_modality"]): r["mAP"] for r in a.rows}
    return max(abs(r["mAP"] - ours[(r["protocol"], r["query_modality"])]) for r in b.rows)


class Table:
    def __init__(self, path: str | None) -> None:
        self.rows: list[dict[str, object]] = []
        self.path = path
        if path:
            with open(path, "w", newline="") as handle:
                csv.DictWriter(handle, FIELDS).writeheader()

    def add(self, **row: object) -> None:
        row = {key: row.get(key, "") for key in FIELDS}
        self.rows.append(row)
        if self.path:
            with open(self.path, "a", newline="") as handle:
                csv.DictWriter(handle, FIELDS).writerow(row)
        say(f"  -> {row['stage']}: {row['seconds']} s ({row['ratio']}) {row['note']}")

    def show(self) -> None:
        say("\n| stage | queries x pool | plans | seconds | floor s | ratio | note |")
        say("|---|---|---|---|---|---|---|")
        for r in self.rows:
            say(f"| {r['stage']} | {r['queries']} x {r['pool']} | {r['plans']} | {r['seconds']} "
                f"| {r['floor_seconds']} | {r['ratio']} | {r['note']} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cpu, cuda or auto")
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--big-gallery", type=int, default=1_000_000)
    parser.add_argument("--big-queries", type=int, default=1000)
    parser.add_argument("--numba-pool", type=int, default=20_000,
                        help="Numba parity on the first N images when the pool is larger "
                             "(0: the whole pool)")  # fmt: skip
    parser.add_argument("--skip", action="append", default=[], choices=["big", "numba"])
    parser.add_argument("--csv", help="write the rows here, each as soon as it is measured")
    args = parser.parse_args()
    torch = import_torch()
    device = resolve_device(args.device)
    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    say(f"bench_gpu_score: device {name}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, pool {args.pool}, D={args.dim}")  # fmt: skip
    table = Table(args.csv)
    common = {"device": name, "dim": args.dim}

    t0 = time.perf_counter()
    dump = synth_dump(args.pool, args.dim)
    feats = dump.splits[0].features["default"]
    say(f"generated {args.pool} x {args.dim} features in {time.perf_counter() - t0:.1f} s")

    say("(a) matmul floor ...")
    floor = matmul_floor(torch, device, feats, feats)
    table.add(stage="floor", queries=args.pool, pool=args.pool, plans=0,
              seconds=f"{floor:.3f}", floor_seconds=f"{floor:.3f}", ratio="1", **common,
              note="1 - Q @ G.T, fp32, TF32 off, backend row blocks")  # fmt: skip

    say("(b) --protocol all: warm-up on a tenth of the pool ...")
    score_all(synth_dump(max(40, args.pool // 10), args.dim, seed=2), str(device))
    say("(b) --protocol all, timed ...")
    sync(torch, device)
    start = time.perf_counter()
    on_torch = score_all(dump, str(device))
    sync(torch, device)
    seconds = time.perf_counter() - start
    plans = len(on_torch.per_query)
    table.add(stage="all", queries=args.pool, pool=args.pool, plans=plans,
              seconds=f"{seconds:.3f}", floor_seconds=f"{floor:.3f}",
              ratio=f"{seconds / floor:.2f}x floor", **common,
              note="evaluate(protocol all, cmc image), whole call incl. feature copy")  # fmt: skip

    if "big" not in args.skip:
        say(f"(c) {args.big_queries} x {args.big_gallery}: building the gallery ...")
        big = big_dump(dump, args.big_gallery)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            setup = plan_evaluation(big, resolve_presets("cross"), cmc="image",
                                    query_modalities=["infrared"])  # fmt: skip
        (task,) = setup.tasks
        (plan,) = task.plans
        step = max(1, plan.query_idx.size // args.big_queries)
        task.plans = [replace(plan, query_idx=plan.query_idx[::step][: args.big_queries])]
        queries = task.plans[0].query_idx
        say("(c) matmul floor ...")
        big_feats = big.splits[0].features["default"]
        big_floor = matmul_floor(torch, device, big_feats[queries], big_feats)
        say("(c) scoring ...")
        sync(torch, device)
        start = time.perf_counter()
        score_tasks_torch(big, setup.tasks, setup.context, device=str(device))
        sync(torch, device)
        seconds = time.perf_counter() - start
        rows = aggregate(setup).rows
        table.add(stage="big", queries=queries.size, pool=args.big_gallery, plans=1,
                  seconds=f"{seconds:.3f}", floor_seconds=f"{big_floor:.3f}",
                  ratio=f"{seconds / big_floor:.2f}x floor", **common,
                  note=f"cross, infrared queries, mAP {rows[0]['mAP']:.2f}")  # fmt: skip
        del big, big_feats, setup, task

    if "numba" not in args.skip:
        subset = args.numba_pool and args.pool > args.numba_pool
        size = args.numba_pool if subset else args.pool
        say(f"(d) Numba on {size} images (first run compiles or loads the JIT cache) ...")
        small = synth_dump(size, args.dim) if subset else dump
        reference = on_torch if not subset else score_all(small, str(device))
        score_all(synth_dump(200, args.dim, seed=3), None)  # JIT warm
        start = time.perf_counter()
        numba = score_all(small, None)
        seconds = time.perf_counter() - start
        gap = map_gap(numba, reference)
        note = f"Numba, {os.cpu_count()} CPUs"
        if subset:
            note += f"; subset of {size} images (the whole pool is beyond the slot)"
        table.add(stage="numba", queries=size, pool=size, plans=len(numba.per_query),
                  seconds=f"{seconds:.3f}", ratio=f"max |mAP diff| {gap:.1e}", **common,
                  note=note)  # fmt: skip
    table.show()


if __name__ == "__main__":
    sys.exit(main())
