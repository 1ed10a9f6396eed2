"""Every setting at once: the fused kernel against the matmul, the old kernel and AGW NumPy.

Run: ``python benchmarks/bench_fused.py [--ids 300] [--dim 512] [--repeats 3] [--out DIR]``

A generated generic dump (default: 300 identities, cameras 1, 2 visible and 3, 4 infrared,
10 images per identity and camera = 12,000 images, D = 512) is scored under
``--protocol all --cmc image`` (7 settings x 2 query modalities = 14 plans, every one with
the whole dump as its pool), in one run:

* ``matmul``: the float32 distance blocks alone (the scorer's row blocks), the floor;
* ``fused kernel``: :func:`vireid_bench.engine.fused.score_jobs` over those blocks, every
  plan in one pass per query row (the path ``score`` takes);
* ``single kernel``: :func:`vireid_bench.engine.kernels.score_queries` once per plan and
  block (the path before the fused kernel);
* ``whole``: ``vireid-bench score DUMP --protocol all --cmc image`` as a subprocess (imports,
  loading, JIT cache, distances, kernel, table);
* ``AGW NumPy``: the community's evaluation, in process: distances, one full ``argsort`` per
  query modality, then per setting and query a Python loop of boolean masks over the sorted
  row (``eval_sysu`` / ``eval_regdb`` style), image CMC, mAP and mINP;
* ``torch cpu``: ``score(..., device="cpu")`` in process, when torch is installed
  (``--device cuda`` adds the GPU; not measured on a machine without one).

Every method's mAP per row is checked against the scorer's (to 1e-6; torch's: its largest
difference is printed, since its float32 matmul may round near-ties differently). Medians of
``--repeats`` runs (AGW and whole: one run each unless ``--repeats-slow``). Machines here are
shared: read the ratios.
"""

from __future__ import annotations

# isort: off
# first, as the command does: OpenBLAS's idle threads then sleep (engine/blas_threads.py)
import vireid_bench  # noqa: F401

# isort: on

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from vireid_bench.engine.distances import distance_block, prepared_features
from vireid_bench.engine.fused import FusedJob, score_jobs
from vireid_bench.engine.kernels import score_queries
from vireid_bench.engine.plans import plan_evaluation
from vireid_bench.engine.scoring import DEFAULT_BLOCK_BYTES, score
from vireid_bench.io.dump import load_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.synth.dumps import write_synth_dump


def make_dump(folder: str, ids: int, dim: int, per_cam: int) -> str:
    path = os.path.join(folder, f"generic-{ids}x{dim}.h5")
    if not os.path.exists(path):
        write_synth_dump(
            path,
            ids=ids,
            cameras="1,2:visible,3,4:infrared",
            per_cam=per_cam,
            dim=dim,
            seed=0,
            float16=False,
        )
    return path


def kernel_inputs(path: str):
    """The plans of ``--protocol all --cmc image`` and the split's prepared features."""
    dump = load_dump(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        setup = plan_evaluation(dump, resolve_presets("all"), cmc="image")
    split = dump.splits[0]
    rows = np.arange(split.n_images)
    name = dump.cross_features
    cross, _ = prepared_features(path, split, (name, name), "cosine", rows)
    return setup, split, cross


def time_kernels(setup, split, cross, method: str) -> tuple[float, float]:
    """(matmul seconds, kernel seconds) over the scorer's row blocks for one method."""
    convention = setup.context.convention
    keys = {c: convention.camera_keys(split.cam, c) for c in (False, True)}
    n = split.n_images
    rows_per_block = max(1, DEFAULT_BLOCK_BYTES // (n * 4))
    pool = np.arange(n)
    plans = [(task, plan) for task in setup.tasks for plan in task.plans]
    matmul = kernel = 0.0
    for start in range(0, n, rows_per_block):
        stop = min(start + rows_per_block, n)
        t0 = time.perf_counter()
        dist = distance_block(cross[start:stop], cross, "cosine", None)
        t1 = time.perf_counter()
        matmul += t1 - t0
        if method == "matmul":
            continue
        selected = [
            np.flatnonzero((plan.query_idx >= start) & (plan.query_idx < stop))
            for _, plan in plans
        ]
        if method == "fused":
            rows = np.arange(start, stop)
            score_jobs(
                dist, rows - start, rows, split.pid[rows], keys[False][rows], keys[True][rows],
                split.modality[rows].astype(np.int64), pool, pool, split.pid, keys[False],
                keys[True], split.modality.astype(np.int64),
                [
                    FusedJob(plan.query_idx[sel] - start, task.preset.clause_codes(),
                             bool(task.preset.colocated_cameras), task.cmc == "identity")
                    for (task, plan), sel in zip(plans, selected, strict=True)
                ],
            )  # fmt: skip
        else:
            for (task, plan), sel in zip(plans, selected, strict=True):
                q = plan.query_idx[sel]
                cams = keys[bool(task.preset.colocated_cameras)]
                score_queries(
                    dist, q - start, q, split.pid[q], cams[q], split.modality[q].astype(np.int64),
                    pool, pool, split.pid, cams, split.modality.astype(np.int64),
                    task.preset.clause_codes(), task.cmc == "identity",
                )  # fmt: skip
        kernel += time.perf_counter() - t1
    return matmul, kernel


def agw_numpy(path: str) -> tuple[float, dict[tuple[str, str], float]]:
    """The AGW-style evaluation of every builtin setting: (seconds, mAP per row)."""
    from vireid_bench.protocol.presets import builtin_presets

    start = time.perf_counter()
    dump = load_dump(path)
    split = dump.splits[0]
    feats = split.features[dump.cross_features].astype(np.float32)
    feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    pid, cam, mod = split.pid, split.cam, split.modality.astype(np.int64)
    maps = {}
    for q_mod, label in ((1, "infrared"), (0, "visible")):
        queries = np.flatnonzero(mod == q_mod)
        distmat = 1.0 - feats[queries] @ feats.T
        indices = np.argsort(distmat, axis=1, kind="stable")
        for name, preset in builtin_presets().items():
            aps = []
            for qi, q in enumerate(queries):
                order = indices[qi]
                same_cam = cam[order] == cam[q]
                same_pid = pid[order] == pid[q]
                same_mod = mod[order] == q_mod
                remove = order == q
                for c_cam, c_pid, c_mod in preset.clause_codes().tolist():
                    hit = np.ones(order.size, dtype=bool)
                    for code, rel in ((c_cam, same_cam), (c_pid, same_pid), (c_mod, same_mod)):
                        if code == 1:
                            hit &= rel
                        elif code == 2:
                            hit &= ~rel
                    remove |= hit
                matches = same_pid[~remove]
                if not matches.any():
                    continue
                hits = np.cumsum(matches)
                ranks = np.flatnonzero(matches) + 1
                aps.append(float(np.mean(hits[matches] / ranks)))
            maps[(name, label)] = 100.0 * float(np.mean(aps))
    return time.perf_counter() - start, maps


def whole(path: str) -> float:
    exe = os.path.join(os.path.dirname(sys.executable), "vireid-bench")
    command = [exe] if os.path.exists(exe) else [sys.executable, "-m", "vireid_bench"]
    start = time.perf_counter()
    subprocess.run(
        [*command, "score", path, "--protocol", "all", "--cmc", "image"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=300)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--per-cam", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=tempfile.gettempdir(), help="folder for the dump")
    parser.add_argument("--device", action="append", default=[], help="torch device(s) to add")
    parser.add_argument("--skip-agw", action="store_true")
    args = parser.parse_args()
    path = make_dump(args.out, args.ids, args.dim, args.per_cam)
    setup, split, cross = kernel_inputs(path)
    print(f"dump {path}: {split.n_images} images, {len(setup.tasks)} plans", flush=True)
    whole(path)  # JIT cache written, file in the page cache

    timings: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for method in ("matmul", "fused", "single"):
            matmul, kernel = time_kernels(setup, split, cross, method)
            timings.setdefault("matmul", []).append(matmul)
            if method != "matmul":
                timings.setdefault(method, []).append(kernel)
        timings.setdefault("whole", []).append(whole(path))
    med = {k: float(np.median(v)) for k, v in timings.items()}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = score(path, "all", cmc="image")
    ours_map = {(r.protocol, r.query_modality): r.mAP for r in ours.itertuples()}
    devices = {}
    for device in args.device:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score(path, "all", cmc="image", device=device)  # warm
            start = time.perf_counter()
            frame = score(path, "all", cmc="image", device=device)
        # torch's float32 matmul rounds differently from NumPy's BLAS in the last bit,
        # which can swap near-ties: the largest mAP difference is reported, not asserted
        gap = max(abs(r.mAP - ours_map[(r.protocol, r.query_modality)]) for r in frame.itertuples())
        devices[device] = (time.perf_counter() - start, gap)
    agw = None
    if not args.skip_agw:
        agw, agw_map = agw_numpy(path)
        for key, value in agw_map.items():
            assert abs(value - ours_map[key]) < 1e-6, (key, value, ours_map[key])

    print(
        f"\n--protocol all --cmc image, {split.n_images} images, D={args.dim}; "
        f"medians of {args.repeats}; mAP of every method equal to 1e-6\n"
    )
    print("| measure | seconds | ratio | target |")
    print("|---|---|---|---|")
    print(f"| matmul (distance blocks) | {med['matmul']:.2f} | 1 | |")
    ok = "holds" if med["fused"] <= 0.5 * med["matmul"] else "missed"
    print(
        f"| fused kernel, 14 plans | {med['fused']:.2f} | "
        f"{med['fused'] / med['matmul']:.2f}x matmul | <= 0.5x ({ok}) |"
    )
    print(
        f"| single-setting kernel, 14 calls per block | {med['single']:.2f} | "
        f"{med['single'] / med['matmul']:.2f}x matmul; fused "
        f"{med['single'] / med['fused']:.1f}x faster | |"
    )
    print(f"| whole `vireid-bench score --protocol all` | {med['whole']:.2f} | "
          f"{med['whole'] / med['matmul']:.2f}x matmul | |")  # fmt: skip
    if agw is not None:
        ok = "holds" if agw >= 8 * med["whole"] else "missed"
        print(f"| AGW-style NumPy (1 run) | {agw:.2f} | whole is "
              f"{agw / med['whole']:.1f}x faster | >= 8x ({ok}) |")  # fmt: skip
    for device, (seconds, gap) in devices.items():
        print(f"| torch {device}, score() in process (1 run; max mAP gap {gap:.1e}) | "
              f"{seconds:.2f} | {seconds / med['matmul']:.2f}x matmul | |")  # fmt: skip


if __name__ == "__main__":
    main()
