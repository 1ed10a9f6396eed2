"""The streamed path (``score --memory-limit``) against the matmul floor, with peak RSS.

Run: ``python benchmarks/bench_stream.py [--out DIR] [--square-ids 750] [--skip-square]``

Two problems, each a generated generic dump (cameras 1, 2 visible and 3, 4 infrared, 10
images per identity and camera), measured in one run:

* **40k**: 1,000 identities (40,000 images), D = 256,
  ``score DUMP --protocol mix-id --cmc image --memory-limit 1GB``;
* **square**: ``--square-ids`` identities (default 750: 30,000 images), D = 512,
  ``score DUMP --protocol all --cmc image`` forced onto the streamed path
  (``--gallery-block``, default: a quarter of the pool), every image a query against
  the whole dump. The issue's row is 100k x 100k (2,500 identities); on a shared 2-core
  machine that takes many minutes per method, so the default is smaller and the ratio is
  the quantity to compare (both costs grow as N^2; the per-identity work grows as N).

Methods, each in a fresh subprocess under ``/usr/bin/time -v`` (peak RSS of its own):

* ``matmul``: the float32 distances alone over the same query rows and pool columns
  (normalised features, blocks of 2,048 query rows, ``1 - q.g``, results discarded);
* ``whole``: the ``vireid-bench score`` command (imports, loading, JIT cache, scoring);
* ``scoring``: :func:`vireid_bench.engine.scoring.score` in process after a warm-up,
  timing only the call (loading the dump included, as the command does).

Machines here are shared: compare the ratios, not the seconds.
"""

from __future__ import annotations

# isort: off
# first, as the command does: OpenBLAS's idle threads then sleep (engine/blas_threads.py)
import vireid_bench  # noqa: F401

# isort: on

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np


def make_dump(folder: str, ids: int, dim: int) -> str:
    from vireid_bench.synth.dumps import write_synth_dump

    path = os.path.join(folder, f"stream-generic-{ids}x{dim}.h5")
    if not os.path.exists(path):
        write_synth_dump(
            path,
            ids=ids,
            cameras="1,2:visible,3,4:infrared",
            per_cam=10,
            dim=dim,
            seed=0,
            float16=False,
        )
    return path


def child_matmul(path: str, protocol: str) -> dict[str, float]:
    from vireid_bench.engine.distances import distance_block, prepared_features
    from vireid_bench.engine.plans import plan_evaluation, split_jobs
    from vireid_bench.io.dump import load_dump
    from vireid_bench.protocol import resolve_presets

    dump = load_dump(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        setup = plan_evaluation(dump, resolve_presets(protocol), cmc="image")
    _, query_union, pool_union = split_jobs(setup.tasks, 0)
    split = dump.splits[0]
    name = dump.cross_features
    cross, _ = prepared_features(path, split, (name, name), "cosine", np.arange(split.n_images))
    gallery = np.ascontiguousarray(cross[pool_union])
    start, cpu = time.perf_counter(), time.process_time()
    for lo in range(0, query_union.size, 2048):
        block = distance_block(cross[query_union[lo : lo + 2048]], gallery, "cosine", None)
        del block
    return {
        "seconds": time.perf_counter() - start,
        "cpu": time.process_time() - cpu,
        "rows": int(query_union.size),
        "cols": int(pool_union.size),
    }


def child_scoring(path: str, protocol: str, limit: str, gallery_block: int) -> dict[str, float]:
    from vireid_bench.engine.plans import MemoryOptions
    from vireid_bench.engine.scoring import score
    from vireid_bench.io.memory import parse_memory_limit

    memory = MemoryOptions(limit=parse_memory_limit(limit), gallery_block=gallery_block or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # JIT cache load outside the timing: the same paths on a tiny dump
        tiny = make_dump(os.path.dirname(path), 8, 16)
        score(tiny, protocol, cmc="image", memory=MemoryOptions(gallery_block=50))
        score(tiny, protocol, cmc="image")
        start, cpu = time.perf_counter(), time.process_time()
        frame = score(path, protocol, cmc="image", memory=memory)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "mAP": float(frame["mAP"].mean())}


def timed(command: list[str], tree: str | None = None) -> tuple[float, float, str, float]:
    """(wall seconds, peak RSS MB, stdout, CPU seconds) of a command under /usr/bin/time -v,
    importing vireid_bench from ``tree`` when given."""
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=False, env=env
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    cpu = sum(
        float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", done.stderr)
    )
    return wall, int(rss.group(1)) / 1024.0 if rss else float("nan"), done.stdout, cpu


def run_child(
    kind: str, path: str, protocol: str, limit: str, gallery_block: int, tree: str | None = None
):
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--path",
        path,
        "--protocol",
        protocol,
        "--limit",
        limit,
        "--gallery-block",
        str(gallery_block),
    ]
    wall, rss, out, _ = timed(command, tree)
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = rss
    return result


def run_whole(path: str, protocol: str, limit: str, gallery_block: int, tree: str | None = None):
    exe = os.path.join(os.path.dirname(sys.executable), "vireid-bench")
    command = [
        exe,
        "score",
        path,
        "--protocol",
        protocol,
        "--cmc",
        "image",
        "--memory-limit",
        limit,
        "--format",
        "csv",
    ]
    if gallery_block:
        command += ["--gallery-block", str(gallery_block)]
    wall, rss, _, cpu = timed(command, tree)
    return {"seconds": wall, "cpu": cpu, "peak_rss_mb": rss}


def problem(
    label: str,
    path: str,
    protocol: str,
    limit: str,
    gallery_block: int,
    trees: dict[str, str | None],
    whole: bool = True,
) -> dict:
    """Measure one problem: the matmul once, then each tree's scoring and whole command,
    interleaved (so that every tree sees the same machine load)."""
    if whole:
        for tree in trees.values():
            run_whole(path, protocol, limit, gallery_block, tree)  # JIT cache, page cache
    load = os.getloadavg()[0]
    record: dict = {
        "label": label,
        "matmul": run_child("matmul", path, protocol, limit, gallery_block),
    }
    for name, tree in trees.items():
        record[f"scoring {name}"] = run_child("scoring", path, protocol, limit, gallery_block, tree)
        load = max(load, os.getloadavg()[0])
    for name, tree in trees.items():
        if whole:
            record[f"whole {name}"] = run_whole(path, protocol, limit, gallery_block, tree)
        else:
            record[f"whole {name}"] = {
                "seconds": float("nan"),
                "cpu": float("nan"),
                "peak_rss_mb": float("nan"),
            }
        load = max(load, os.getloadavg()[0])
    record["load"] = load
    for name in trees:
        for kind in ("scoring", "whole") if whole else ("scoring",):
            r = record[f"{kind} {name}"]
            mAP = f", mean mAP {r['mAP']:.6f}" if "mAP" in r else ""
            print(
                f"  {label} [{name}] {kind}: {r['seconds']:.2f}s wall, {r['cpu']:.2f}s CPU, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB{mAP}",
                flush=True,
            )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=tempfile.gettempdir(), help="folder for the dumps")
    parser.add_argument("--square-ids", type=int, default=750)
    parser.add_argument(
        "--square-gallery-block",
        type=int,
        default=0,
        help="columns per gallery block (default: a quarter of the pool)",
    )
    parser.add_argument("--skip-square", action="store_true")
    parser.add_argument("--skip-40k", action="store_true")
    parser.add_argument(
        "--no-whole", action="store_true", help="skip the whole-command runs (faster)"
    )
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument(
        "--before",
        help="also measure the vireid_bench of this source tree "
        "(e.g. a checkout of main), interleaved with this one",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--protocol", help=argparse.SUPPRESS)
    parser.add_argument("--limit", help=argparse.SUPPRESS)
    parser.add_argument("--gallery-block", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "matmul":
        print(json.dumps(child_matmul(args.path, args.protocol)))
        return
    if args.child == "scoring":
        print(json.dumps(child_scoring(args.path, args.protocol, args.limit, args.gallery_block)))
        return

    print(
        f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees: dict[str, str | None] = {"after": here}
    if args.before:
        trees = {"before": args.before, "after": here}
    records = []
    if not args.skip_40k:
        path = make_dump(args.out, 1000, 256)
        records.append(
            problem(
                "40k mix-id, --memory-limit 1GB", path, "mix-id", "1GB", 0, trees, not args.no_whole
            )
        )
    if not args.skip_square:
        path = make_dump(args.out, args.square_ids, 512)
        n = 40 * args.square_ids
        block = args.square_gallery_block or (n + 3) // 4
        records.append(
            problem(
                f"{n // 1000}k x {n // 1000}k all, streamed (gallery blocks of {block})",
                path,
                "all",
                "4G",
                block,
                trees,
                not args.no_whole,
            )
        )
    print("\nwall seconds (CPU seconds of the process, all threads); ratios to the matmul")
    print(
        "| problem | tree | matmul | scoring | scoring / matmul | whole | whole / matmul "
        "| peak RSS MB whole (scoring) | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in records:
        f = r["matmul"]
        for name in trees:
            s, w = r[f"scoring {name}"], r[f"whole {name}"]
            print(
                f"| {r['label']} | {name} | {f['seconds']:.2f} ({f['cpu']:.2f}) | "
                f"{s['seconds']:.2f} ({s['cpu']:.2f}) | {s['seconds'] / f['seconds']:.2f}x "
                f"({s['cpu'] / f['cpu']:.2f}x) | {w['seconds']:.2f} ({w['cpu']:.2f}) | "
                f"{w['seconds'] / f['seconds']:.2f}x ({w['cpu'] / f['cpu']:.2f}x) | "
                f"{w['peak_rss_mb']:.0f} ({s['peak_rss_mb']:.0f}) | {r['load']:.1f} |"
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(records, handle, indent=1)


if __name__ == "__main__":
    main()
