"""Cost of ``score --ranklists`` relative to plain scoring, in one run, as ratios.

Run: ``python benchmarks/bench_ranklists.py [--per-cam N] [--repeats N] [--baseline FILE]``

On one synthetic SYSU-like dump (96 ids, 6 cameras, ``--per-cam`` images per id and
camera, D=256) and every built-in setting, each timing the median of ``--repeats`` runs,
interleaved so that load on a shared machine hits them alike:

* ``score``: :func:`vireid_bench.engine.scoring.evaluate` (what ``score`` computes);
* ``ranklists``: :func:`~vireid_bench.engine.ranklists.iter_ranklists` written to JSON
  Lines by :func:`~vireid_bench.engine.ranklists.write_ranklists` (top-k 20);
* ``records only``: the same records, not written (the JSON encoding's share);
* ``parquet``: the same records written as Parquet (when pyarrow is installed);
* ``baseline``: with ``--baseline FILE``, another ``ranklists.py`` (e.g. the argsort
  version: ``git show eba3d56:vireid_bench/engine/ranklists.py > /tmp/old.py``) loaded as a
  module and timed the same way; its JSON Lines output must equal the current one byte for
  byte.

Machines here are shared: compare the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

from vireid_bench.engine import ranklists
from vireid_bench.engine.scoring import evaluate
from vireid_bench.io.dump import load_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.synth.dumps import write_synth_dump


def _load_module(path: str):
    spec = importlib.util.spec_from_file_location("ranklists_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-cam", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--baseline", help="another ranklists.py to time against")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_synth_dump(folder / "g.h5", ids=96, per_cam=args.per_cam, dim=256, seed=0)
        dump = load_dump(path)
        presets = resolve_presets("all")
        modules = {"ranklists": ranklists}
        if args.baseline:
            modules["baseline"] = _load_module(args.baseline)

        def write(module, out):
            return lambda: module.write_ranklists(
                out, module.iter_ranklists(dump, presets, top_k=args.top_k)
            )

        jobs = {"score": lambda: evaluate(dump, presets)}
        for name, module in modules.items():
            jobs[name] = write(module, folder / f"{name}.jsonl")
        jobs["records only"] = lambda: sum(
            len(b) for b in ranklists.iter_ranklists(dump, presets, top_k=args.top_k)
        )
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            print("parquet: skipped (pyarrow not installed)")
        else:
            jobs["parquet"] = write(ranklists, folder / "r.parquet")
        for job in jobs.values():  # warm-up: Numba compilation, caches
            job()
        times: dict[str, list[float]] = {name: [] for name in jobs}
        for _ in range(args.repeats):
            for name, job in jobs.items():
                start = time.perf_counter()
                job()
                times[name].append(time.perf_counter() - start)
        if args.baseline:
            same = (folder / "baseline.jsonl").read_bytes() == (
                folder / "ranklists.jsonl"
            ).read_bytes()
            print(f"baseline output byte-identical: {same}")
            if not same:
                raise SystemExit("the baseline's rank lists differ")
        split = dump.splits[0]
        print(f"dump: {split.pid.size} images, settings: all, top-k {args.top_k}")
        score = statistics.median(times["score"])
        print(f"{'job':<14} {'median s':>9} {'x score':>8}")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:<14} {median:9.3f} {median / score:8.2f}")


if __name__ == "__main__":
    main()
