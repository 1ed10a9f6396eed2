"""Scoring time and peak memory versus gallery size, against the matmul floor and anchors.

Run: ``python benchmarks/bench_scale.py [--quick] [--memory-limit 4G] [--plot PATH]``

Every measurement runs in a fresh subprocess (so its peak RSS is its own) on a synthetic
split built in memory: ``N`` images of ``N / 10`` identities, features = identity centre +
noise, six cameras, cameras 3 and 6 infrared. Methods:

* ``ours``: :func:`vireid_bench.engine.scoring.evaluate` under ``--memory-limit`` (it picks row
  blocks or streamed gallery blocks), distances included;
* ``matmul``: the float32 distance computation alone over the same rows and columns, in
  blocks of 2,048 query rows, results discarded: the physical floor;
* ``numpy``: distances + :func:`vireid_bench.engine.reference.numpy_score` (full stable argsort
  and boolean masks per query, as public VI-ReID scripts evaluate), in query blocks;
* ``torchreid``: a full distance matrix + torchreid 0.2.5's ``evaluate_rank`` (Python
  path; the registry wheel ships no Cython), only when torchreid is importable. Install it
  for benchmarks only: ``pip install --no-deps --target /tmp/torchreid torchreid`` and run
  with ``--torchreid-path /tmp/torchreid`` (its package ``__init__`` needs OpenCV, so the
  benchmark loads ``torchreid/reid/metrics/rank.py`` by file).

Two tables: (1) the gallery-size scan, ``Q`` infrared queries against ``N`` images, mixed
gallery (``mix``): seconds, peak RSS, ratio to the matmul, and the growth exponent of time
in ``N`` (least squares on log-log); (2) anchors on one problem under ``mix-cam-id`` (the
Market/torchreid rule: same identity and same camera excluded), every method agreeing on
mAP to 1e-6. Machines here are shared: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np

SCAN_FULL = {512: (1_000, 10_000, 100_000, 1_000_000), 2048: (1_000, 10_000, 100_000)}
SCAN_QUICK = {512: (1_000, 10_000, 50_000), 2048: (1_000, 10_000)}


def make_split(n_images: int, n_queries: int, dim: int, seed: int = 0):
    """A synthetic split: the first ``n_queries`` images infrared, the rest visible."""
    from vireid_bench.io.dump import FeatureSplit

    rng = np.random.default_rng(seed)
    ids = max(2, n_images // 10)
    centres = rng.standard_normal((ids, dim)).astype(np.float32)
    pid = rng.integers(0, ids, n_images)
    infrared = np.arange(n_images) < n_queries
    cam = np.where(infrared, rng.choice([3, 6], n_images), rng.choice([1, 2, 4, 5], n_images))
    features = np.empty((n_images, dim), dtype=np.float32)
    for start in range(0, n_images, 65_536):  # chunks: generation peak ~ the features
        stop = min(start + 65_536, n_images)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
        features[start:stop] = centres[pid[start:stop]] + 2.5 * noise
    return FeatureSplit(
        features={"f": features},
        pid=pid.astype(np.int64),
        cam=cam.astype(np.int64),
        modality=infrared.astype(np.uint8),
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _load_torchreid_rank(path: str):
    spec = importlib.util.spec_from_file_location(
        "torchreid_rank", os.path.join(path, "torchreid", "reid", "metrics", "rank.py")
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"no torchreid/reid/metrics/rank.py under {path}")
    module = importlib.util.module_from_spec(spec)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    return module


def measure(args: argparse.Namespace) -> dict[str, float]:
    """One method on one problem (in this process): seconds, peak RSS, mAP."""
    import warnings

    from vireid_bench.engine.scoring import MemoryOptions, evaluate
    from vireid_bench.io.dump import FeatureDump
    from vireid_bench.protocol.presets import builtin_presets

    split = make_split(args.n, args.q, args.dim)
    features_mb = split.features["f"].nbytes / 1024**2
    preset = builtin_presets()[args.preset]
    queries = np.flatnonzero(split.modality == 1)
    result: dict[str, float] = {"features_mb": features_mb}
    if args.method == "ours":
        dump = FeatureDump(
            source="synthetic",
            dataset="generic",
            model="bench",
            description="",
            default_features="f",
            cross_features="f",
            same_features="f",
            splits=(split,),
            feature_dims={"f": args.dim},
        )
        from vireid_bench.io.memory import parse_memory_limit

        memory = MemoryOptions(limit=parse_memory_limit(args.memory_limit))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # JIT (or cache load) outside the timing, on a tiny problem
            evaluate(
                replace(dump, splits=(make_split(200, 50, 8),), feature_dims={"f": 8}),
                [preset],
                query_modalities=["infrared"],
                memory=MemoryOptions(gallery_block=64),
            )
            start = time.perf_counter()
            evaluation = evaluate(
                dump, [preset], query_modalities=["infrared"], cmc="image", memory=memory
            )
            result["seconds"] = time.perf_counter() - start
        result["mAP"] = float(evaluation.rows[0]["mAP"])
        result["peak_rss_mb"] = _peak_rss_mb()
        return result
    features = split.features["f"]
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    if args.method == "matmul":
        start = time.perf_counter()
        for lo in range(0, queries.size, 2048):
            block = features[queries[lo : lo + 2048]] @ features.T
            np.subtract(np.float32(1.0), block, out=block)
            del block
        result["seconds"] = time.perf_counter() - start
        result["peak_rss_mb"] = _peak_rss_mb()
        return result
    if args.method == "numpy":
        from vireid_bench.engine.reference import numpy_score

        clauses = preset.clause_codes()
        start = time.perf_counter()
        aps = []
        for lo in range(0, queries.size, 1024):
            q = queries[lo : lo + 1024]
            dist = 1.0 - features[q] @ features.T
            out = numpy_score(
                dist, split.pid[q], split.cam[q], split.modality[q].astype(np.int64), q,
                split.pid, split.cam, split.modality.astype(np.int64), np.arange(args.n),
                clauses, False,
            )
            aps.append(out["ap"][out["n_pos"] > 0])
        result["seconds"] = time.perf_counter() - start
        result["mAP"] = 100.0 * float(np.mean(np.concatenate(aps)))
        result["peak_rss_mb"] = _peak_rss_mb()
        return result
    if args.method == "torchreid":
        rank = _load_torchreid_rank(args.torchreid_path)
        start = time.perf_counter()
        distmat = 1.0 - features[queries] @ features.T
        _, mean_ap = rank.evaluate_rank(
            distmat, split.pid[queries], split.pid, split.cam[queries], split.cam,
            max_rank=20, use_metric_cuhk03=False, use_cython=False,
        )
        result["seconds"] = time.perf_counter() - start
        result["mAP"] = 100.0 * float(mean_ap)
        result["peak_rss_mb"] = _peak_rss_mb()
        return result
    raise SystemExit(f"unknown method {args.method}")


def run_child(method: str, n: int, q: int, dim: int, preset: str, args) -> dict[str, float]:
    """Run :func:`measure` in a fresh interpreter; return its JSON result."""
    command = [
        sys.executable, __file__, "--child", "--method", method, "--n", str(n), "--q", str(q),
        "--dim", str(dim), "--preset", preset, "--memory-limit", args.memory_limit,
        "--torchreid-path", args.torchreid_path or "",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{method} {q}x{n} D={dim} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth_exponent(sizes: list[int], seconds: list[float]) -> float:
    """Slope of log(seconds) against log(size), least squares."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 50k only")
    parser.add_argument("--queries", type=int, default=1000, help="queries in the scan")
    parser.add_argument("--memory-limit", default="4G", help="passed to the scorer")
    parser.add_argument("--square", type=int, default=0,
                        help="also score N x N (every image a query), e.g. 100000")
    parser.add_argument("--anchor", default="1000x50000",
                        help="QxN of the anchor problem (D=512)")
    parser.add_argument("--torchreid-path", default="", help="where torchreid is installed")
    parser.add_argument("--plot", help="write the log-log plot here (needs matplotlib)")
    parser.add_argument("--json", help="write every measurement here")
    # child mode
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--q", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="mix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return

    records = []
    scan = SCAN_QUICK if args.quick else SCAN_FULL
    print(f"scan: {args.queries} infrared queries, mixed gallery (mix), "
          f"--memory-limit {args.memory_limit}", flush=True)
    for dim, sizes in scan.items():
        for n in sizes:
            ours = run_child("ours", n, args.queries, dim, "mix", args)
            floor = run_child("matmul", n, args.queries, dim, "mix", args)
            records.append({"table": "scan", "dim": dim, "n": n, "q": args.queries,
                            "ours": ours, "matmul": floor})
            print(f"  D={dim} N={n:,}: ours {ours['seconds']:.2f}s "
                  f"(peak {ours['peak_rss_mb']:.0f} MB), matmul {floor['seconds']:.2f}s",
                  flush=True)
    if args.square:
        n = args.square
        ours = run_child("ours", n, n, 512, "mix", args)
        floor = run_child("matmul", n, n, 512, "mix", args)
        records.append({"table": "square", "dim": 512, "n": n, "q": n, "ours": ours,
                        "matmul": floor})
        print(f"  square {n:,} x {n:,}: ours {ours['seconds']:.1f}s, "
              f"matmul {floor['seconds']:.1f}s", flush=True)
    q, n = (int(x) for x in args.anchor.lower().split("x"))
    anchors = {m: run_child(m, n, q, 512, "mix-cam-id", args) for m in ("matmul", "ours", "numpy")}
    if args.torchreid_path:
        anchors["torchreid"] = run_child("torchreid", n, q, 512, "mix-cam-id", args)
    for method, value in anchors.items():
        if "mAP" in value and abs(value["mAP"] - anchors["ours"]["mAP"]) > 1e-4:
            raise SystemExit(f"{method} mAP {value['mAP']} != ours {anchors['ours']['mAP']}")
    records.append({"table": "anchors", "dim": 512, "n": n, "q": q, **anchors})

    print("\n| D | queries x gallery | ours s | matmul s | ours/matmul | peak RSS MB "
          "(features MB) |")
    print("|---|---|---|---|---|---|")
    for record in records:
        if record["table"] not in ("scan", "square"):
            continue
        ours, floor = record["ours"], record["matmul"]
        print(f"| {record['dim']} | {record['q']:,} x {record['n']:,} | {ours['seconds']:.2f} | "
              f"{floor['seconds']:.2f} | {ours['seconds'] / floor['seconds']:.2f}x | "
              f"{ours['peak_rss_mb']:.0f} ({ours['features_mb']:.0f}) |")
    print("\ngrowth exponent of time in N (fixed queries):")
    for dim, sizes in scan.items():
        rows = [r for r in records if r["table"] == "scan" and r["dim"] == dim]
        ours = growth_exponent(sizes, [r["ours"]["seconds"] for r in rows])
        floor = growth_exponent(sizes, [r["matmul"]["seconds"] for r in rows])
        print(f"  D={dim}: ours {ours:.2f}, matmul {floor:.2f}")
    print(f"\nanchors, {q:,} x {n:,}, D=512, mix-cam-id (mAP agree to 1e-4 points):")
    print("| method | seconds | vs ours | peak RSS MB | mAP |")
    print("|---|---|---|---|---|")
    for method, value in anchors.items():
        print(f"| {method} | {value['seconds']:.2f} | "
              f"{value['seconds'] / anchors['ours']['seconds']:.2f}x | "
              f"{value['peak_rss_mb']:.0f} | {value.get('mAP', float('nan')):.4f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(records, handle, indent=1)
    if args.plot:
        plot(records, scan, args.plot)


def plot(records: list[dict], scan: dict[int, tuple[int, ...]], path: str) -> None:
    """Log-log plot of seconds against gallery size, ours and the matmul floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for dim in scan:
        rows = [r for r in records if r["table"] == "scan" and r["dim"] == dim]
        sizes = [r["n"] for r in rows]
        axis.loglog(sizes, [r["ours"]["seconds"] for r in rows], "o-", label=f"ours, D={dim}")
        axis.loglog(sizes, [r["matmul"]["seconds"] for r in rows], "x--",
                    label=f"matmul floor, D={dim}")
    axis.set_xlabel("gallery images N")
    axis.set_ylabel("seconds")
    axis.set_title("scoring time vs gallery size (fixed queries)")
    axis.legend()
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
