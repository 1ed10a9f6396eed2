"""Speed of the Numba kernel against the plain NumPy evaluation, in one run, as ratios.

Run: ``python benchmarks/bench_score.py [--quick] [--repeats N]``

For each problem (synthetic features and labels), three timings, each the median of
``--repeats`` runs, on the same query blocks:

* ``matmul``: the distance computation alone (float32 BLAS), the physical floor;
* ``numba``: distances + :func:`vireid_bench.engine.kernels.score_queries` (sort-free counting);
* ``numpy``: distances + :func:`vireid_bench.engine.reference.numpy_score` (full stable argsort per
  query and boolean masks, as public VI-ReID scripts evaluate);
* ``checked``: ``numba`` plus the NaN / Inf check the scorer runs on every distance block
  (:func:`vireid_bench.engine.distances.check_distances`); ``checked/numba`` is its cost.

It checks that both paths agree (ranks exactly, AP/INP to 1e-9) and prints a table of
ratios: numpy/numba on the metric step alone and end to end, and numba/matmul. Absolute
seconds are printed too, but machines here are shared: compare the ratios.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vireid_bench.engine.distances import check_distances
from vireid_bench.engine.kernels import score_queries
from vireid_bench.engine.reference import numpy_score
from vireid_bench.protocol.presets import builtin_presets

PROBLEMS = {
    "SYSU-sized 3,803 x 6,000, D=2048": (3803, 6000, 2048, 96),
    "large 20,000 x 50,000, D=512": (20000, 50000, 512, 2000),
}
QUICK = {
    "SYSU single-shot 3,803 x 301, D=2048": (3803, 301, 2048, 96),
    "SYSU-sized 3,803 x 6,000, D=2048": (3803, 6000, 2048, 96),
}


def make_problem(n_query: int, n_pool: int, dim: int, ids: int, seed: int = 0) -> dict:
    """Queries and a pool with identity structure; labels like SYSU (6 cameras, 2 IR)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim)).astype(np.float32)

    def images(n: int) -> tuple[np.ndarray, ...]:
        pid = rng.integers(0, ids, n)
        cam = rng.integers(1, 7, n)
        mod = np.isin(cam, (3, 6)).astype(np.int64)
        feats = centres[pid] + 1.5 * rng.standard_normal((n, dim)).astype(np.float32)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        return feats, pid, cam, mod

    q_feats, q_pid, q_cam, q_mod = images(n_query)
    g_feats, g_pid, g_cam, g_mod = images(n_pool)
    return {
        "q_feats": q_feats,
        "q_pid": q_pid,
        "q_cam": q_cam,
        "q_mod": q_mod,
        "q_uid": -1 - np.arange(n_query),
        "g_feats": g_feats,
        "g_pid": g_pid,
        "g_cam": g_cam,
        "g_mod": g_mod,
        "g_uid": np.arange(n_pool),
    }


def run(problem: dict, method: str, clauses: np.ndarray, block: int) -> tuple[float, float, dict]:
    """Return (total seconds, metric seconds, outputs) for one method over query blocks."""
    n_query = problem["q_pid"].size
    outputs: dict[str, list[np.ndarray]] = {}
    metric_time = 0.0
    start = time.perf_counter()
    for lo in range(0, n_query, block):
        hi = min(lo + block, n_query)
        dist = 1.0 - problem["q_feats"][lo:hi] @ problem["g_feats"].T
        if method == "matmul":
            continue
        t0 = time.perf_counter()
        if method == "checked":
            check_distances(dist, "bench", "features")
        labels = {k: problem[k][lo:hi] for k in ("q_pid", "q_cam", "q_mod", "q_uid")}
        if method in ("numba", "checked"):
            out = score_queries(
                dist,
                np.arange(hi - lo),
                labels["q_uid"],
                labels["q_pid"],
                labels["q_cam"],
                labels["q_mod"],
                np.arange(problem["g_pid"].size),
                problem["g_uid"],
                problem["g_pid"],
                problem["g_cam"],
                problem["g_mod"],
                clauses,
                False,
            )
        else:
            out = numpy_score(
                dist,
                labels["q_pid"],
                labels["q_cam"],
                labels["q_mod"],
                labels["q_uid"],
                problem["g_pid"],
                problem["g_cam"],
                problem["g_mod"],
                problem["g_uid"],
                clauses,
                False,
            )
        metric_time += time.perf_counter() - t0
        for key, value in out.items():
            outputs.setdefault(key, []).append(value)
    total = time.perf_counter() - start
    return total, metric_time, {k: np.concatenate(v) for k, v in outputs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problems only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block", type=int, default=2000, help="query rows per block")
    parser.add_argument("--preset", default="mix-id")
    args = parser.parse_args()
    clauses = builtin_presets()[args.preset].clause_codes()
    warm = make_problem(50, 100, 16, 5)
    run(warm, "numba", clauses, 50)  # JIT compile (or load from cache) outside the timing

    rows = []
    for name, shape in (QUICK if args.quick else PROBLEMS).items():
        problem = make_problem(*shape)
        repeats = 1 if shape[1] >= 50000 else args.repeats
        timings = {}
        outputs = {}
        for method in ("matmul", "numba", "checked", "numpy"):
            runs = [run(problem, method, clauses, args.block) for _ in range(repeats)]
            timings[method] = (
                float(np.median([r[0] for r in runs])),
                float(np.median([r[1] for r in runs])),
            )
            outputs[method] = runs[0][2]
        for key in ("first_rank", "n_pos", "n_gallery"):
            np.testing.assert_array_equal(outputs["numba"][key], outputs["numpy"][key])
        for key in ("ap", "inp"):
            np.testing.assert_allclose(outputs["numba"][key], outputs["numpy"][key], atol=1e-9)
        matmul = timings["matmul"][0]
        rows.append(
            (
                name,
                matmul,
                timings["numba"][0],
                timings["numpy"][0],
                timings["numpy"][1] / timings["numba"][1],
                timings["numpy"][0] / timings["numba"][0],
                timings["numba"][0] / matmul,
                timings["checked"][0] / timings["numba"][0],
                timings["checked"][1] / timings["numba"][1],
            )
        )
        print(f"done: {name}", flush=True)

    header = (
        "problem",
        "matmul s",
        "numba s",
        "numpy s",
        "numpy/numba metrics",
        "numpy/numba total",
        "numba/matmul",
        "checked/numba total",
        "checked/numba metrics",
    )
    print(
        f"\npreset {args.preset}, image CMC, median of {args.repeats} (1 for the large one); "
        "both paths agree to 1e-9\n"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print(
            f"| {row[0]} | {row[1]:.2f} | {row[2]:.2f} | {row[3]:.2f} | {row[4]:.1f}x | "
            f"{row[5]:.1f}x | {row[6]:.2f}x | {row[7]:.3f}x | {row[8]:.3f}x |"
        )


if __name__ == "__main__":
    main()
