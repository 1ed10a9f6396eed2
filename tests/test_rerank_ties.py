"""Re-ranking on tie-heavy features: no crash, and the numbers of the plain references.

Features of random +-1 values make many cosine similarities exactly equal, and many exactly
0. AIM's kernel once took ``acc == 0`` to mean "item not listed yet": an exact-zero
similarity (or +s and -s summing to 0) listed an item again, overran its ``touched``
array and corrupted the heap, killing the process (segfault / invalid free) on 48 such
images with setting ``mix``. The runs that could crash go to a subprocess, so a crash
fails one test and not the whole session.

The features have 16 dimensions: each unit feature holds +-1/4, so every cosine
similarity (a multiple of 1/8) is exact in float32 and float64, and the references below
see exactly the similarities and the ties the engine sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from brute_force import gallery_of, score_query
from test_rerank import plain_aim_similarities, plain_k_reciprocal

from vireid_bench.engine.rerank import KReciprocalJoint
from vireid_bench.io.dump import load_dump, write_dump
from vireid_bench.protocol import resolve_presets

ROOT = Path(__file__).resolve().parents[1]
DIM = 16


def tied_features(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=(n, DIM)).astype(np.float32)


def reported_dump(path: Path) -> Path:
    """The reported input: 48 images (6 ids x cameras 1, 2 visible and 3, 4 infrared x 2),
    three feature sets of random +-1 values (default, cross, same)."""
    return tied_dump(path, seed=0, ids=6, cams=[1, 2, 3, 4], per_cam=2)


def tiny_dump(path: Path) -> Path:
    """2 ids x (camera 1 visible, camera 3 infrared) x 2 images: galleries of 3 (mix) and
    4 (cross), far below k1 = 20."""
    return tied_dump(path, seed=1, ids=2, cams=[1, 3], per_cam=2)


def tied_dump(path: Path, seed: int, ids: int, cams: list[int], per_cam: int) -> Path:
    """``ids`` identities x ``cams`` (1, 2 visible; 3, 4 infrared) x ``per_cam`` images,
    three feature sets of random +-1 values (default a, cross b, same c)."""
    rng = np.random.default_rng(seed)
    n = ids * len(cams) * per_cam
    pid = np.repeat(np.arange(ids), len(cams) * per_cam)
    cam = np.tile(np.repeat(cams, per_cam), ids)
    features = {name: tied_features(rng, n) for name in ("a", "b", "c")}
    return write_dump(
        path,
        features=features,
        pid=pid,
        cam=cam,
        modality=(cam > 2).astype(int),
        default_features="a",
        cross_features="b",
        same_features="c",
    )


#: (dump, setting, method, explicit parameters, parameters the engine resolves them to)
CASES = [
    ("reported", "mix", "aim", {}, {"k1": 20, "k2": 6}),
    ("reported", "mix", "k-reciprocal", {}, {"k1": 20, "k2": 6, "lambda": 0.3}),
    ("reported", "mix-cam", "aim", {"k1": 4, "k2": 2}, {"k1": 4, "k2": 2}),
    ("reported", "cross", "k-reciprocal", {"k1": 3, "k2": 1}, {"k1": 3, "k2": 1, "lambda": 0.3}),
    ("tiny", "mix", "aim", {}, {"k1": 20, "k2": 6}),
    ("tiny", "cross", "aim", {"k1": 50, "k2": 50}, {"k1": 50, "k2": 50}),
    ("tiny", "mix", "k-reciprocal", {}, {"k1": 20, "k2": 6, "lambda": 0.3}),
    ("tiny", "cross", "k-reciprocal", {"k1": 50, "k2": 9}, {"k1": 50, "k2": 9, "lambda": 0.3}),
]

EVALUATE = """
import json, sys, warnings
from vireid_bench.engine.scoring import evaluate
from vireid_bench.io.dump import load_dump
from vireid_bench.protocol import resolve_presets

cases = json.loads(sys.argv[1])
out = []
for path, setting, method, params in cases:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = evaluate(
            load_dump(path), resolve_presets(setting), rerank=method, rerank_params=params
        )
    out.append([
        {
            "query_idx": s.plan.query_idx.tolist(),
            "pool_idx": s.plan.pool_idx.tolist(),
            **{k: getattr(s, k).tolist() for k in ("first_rank", "ap", "inp", "n_gallery")},
        }
        for s in evaluation.per_query
    ])
print(json.dumps(out))
"""


def run_python(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Every case evaluated in one subprocess: (dump paths, its per-query scores)."""
    tmp = tmp_path_factory.mktemp("ties")
    paths = {"reported": reported_dump(tmp / "reported.h5"), "tiny": tiny_dump(tmp / "tiny.h5")}
    cases = [[str(paths[d]), setting, m, p] for d, setting, m, p, _ in CASES]
    result = run_python(EVALUATE, json.dumps(cases))
    # a heap corruption ends the process with SIGSEGV / SIGABRT: a negative return code
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    return paths, json.loads(result.stdout)


def similarities(path: Path) -> tuple[np.ndarray, list[dict]]:
    """Cosine similarities under the dump's per-pair policy (cross pairs: set b, same
    modality: set c), and the pool entries of the brute-force scorer."""
    split = load_dump(path).splits[0]
    feats = {n: np.asarray(split.features[n], dtype=np.float64) for n in ("b", "c")}
    pid, cam, mod = split.pid, split.cam, split.modality
    unit = {n: x / np.linalg.norm(x, axis=1, keepdims=True) for n, x in feats.items()}
    cross = mod[:, None] != mod[None, :]
    sim = np.where(cross, unit["b"] @ unit["b"].T, unit["c"] @ unit["c"].T)
    pool = [
        {"uid": j, "pid": int(pid[j]), "cam": int(cam[j]), "mod": int(mod[j])}
        for j in range(len(pid))
    ]
    return sim, pool


def reference_rows(sim, query, gallery, method, used):
    """Plain re-ranked distances of one query (pool numbers) to its gallery (pool numbers),
    exclusion first: the re-ranking sees ``{query} + gallery`` only."""
    if method == "aim":
        s_qg = sim[np.ix_([query], gallery)]
        s_gg = sim[np.ix_(gallery, gallery)]
        return plain_aim_similarities(s_qg, s_gg, used["k1"], used["k2"])[0]
    joint = [query, *gallery]
    dist = np.maximum(2.0 * (1.0 - sim[np.ix_(joint, joint)]), 0.0)
    row = plain_k_reciprocal(dist, [0], used["k1"], used["k2"], used["lambda"])[0]
    return row[1:]


@pytest.mark.parametrize(("dump", "setting", "method", "params", "used"), CASES)
def test_tie_heavy_rerank_exits_cleanly_and_equals_plain_reference(
    evaluated, dump, setting, method, params, used
):
    paths, results = evaluated
    got = results[CASES.index((dump, setting, method, params, used))]
    sim, entries = similarities(paths[dump])
    # ties are what this test is about: many equal similarities, many exactly 0
    off = sim[~np.eye(len(sim), dtype=bool)]
    assert np.unique(off).size < off.size // 2 and (off == 0).any()
    clauses = [tuple(int(v) for v in c) for c in resolve_presets(setting)[0].clause_codes()]
    checked = 0
    for scores in got:
        pool = [entries[j] for j in scores["pool_idx"]]
        for r, q in enumerate(scores["query_idx"]):
            query = entries[q]
            kept = gallery_of(query, pool, clauses)
            distances = [np.inf] * len(pool)
            if kept:
                gallery = [scores["pool_idx"][p] for p in kept]
                row = reference_rows(sim, q, gallery, method, used)
                for p, value in zip(kept, row, strict=True):
                    distances[p] = float(value)
            want = score_query(distances, query, pool, clauses, identity_cmc=False)
            assert scores["n_gallery"][r] == want["n_gallery"]
            assert scores["first_rank"][r] == want["first_rank"], (q, scores, want)
            np.testing.assert_allclose(
                [scores["ap"][r], scores["inp"][r]], [want["ap"], want["inp"]], atol=1e-9
            )
            checked += 1
    assert checked > 0
    if dump == "tiny":
        assert max(max(s["n_gallery"]) for s in got) < used["k1"]


BOUNDSCHECKED_AIM = """
import json, sys
import numpy as np
from vireid_bench.engine.rerank import AIMBase

sim = np.asarray(json.loads(sys.argv[1]))
k1, k2 = int(sys.argv[2]), int(sys.argv[3])
n = len(sim)
base = AIMBase(lambda r, c: sim[np.ix_(r, c)], n, k1=k1, k2=k2)
inside = [base.scores(sim[q], skip=q).tolist() for q in range(n)]
outside = AIMBase(lambda r, c: sim[1:, 1:][np.ix_(r, c)], n - 1, k1=k1, k2=k2)
print(json.dumps({"inside": inside, "outside": outside.scores(sim[0, 1:]).tolist()}))
"""


@pytest.mark.parametrize(("k1", "k2"), [(20, 6), (4, 2), (60, 60)])
def test_aim_kernel_in_bounds_on_ties(tmp_path, k1, k2):
    """The AIM kernel alone under NUMBA_BOUNDSCHECK (an overrun is an IndexError, not luck),
    compiled into a private cache so no bounds-checked build reaches the shared one."""
    rng = np.random.default_rng(2)
    x = tied_features(rng, 48).astype(np.float64) / 4.0
    sim = x @ x.T
    result = run_python(
        BOUNDSCHECKED_AIM,
        json.dumps(sim.tolist()),
        str(k1),
        str(k2),
        env={"NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "numba")},
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    got = json.loads(result.stdout)
    for q in range(48):
        rest = [j for j in range(48) if j != q]
        want = plain_aim_similarities(sim[np.ix_([q], rest)], sim[np.ix_(rest, rest)], k1, k2)
        row = np.asarray(got["inside"][q], dtype=np.float64)
        assert np.isnan(row[q])
        np.testing.assert_allclose(row[rest], want[0], atol=1e-9)
    want = plain_aim_similarities(sim[:1, 1:], sim[1:, 1:], k1, k2)[0]
    np.testing.assert_allclose(got["outside"], want, atol=1e-9)


def test_joint_route_flags_every_probe_whose_ties_it_orders_otherwise():
    """KReciprocalJoint numbers the probe by its place in the set; the rule puts it first
    among its distance ties. Each probe it does not flag equals the plain rule with the
    probe first; on tied features some probes are flagged (they differ)."""
    rng = np.random.default_rng(3)
    x = tied_features(rng, 30).astype(np.float64) / 4.0
    dist = np.maximum(2.0 * (1.0 - x @ x.T), 0.0)
    joint = KReciprocalJoint(lambda r, c: dist[np.ix_(r, c)], 30, k1=8, k2=3, lambda_value=0.3)
    differ = []
    for p in range(30):
        order = [p, *(j for j in range(30) if j != p)]
        want = plain_k_reciprocal(dist[np.ix_(order, order)], [0], 8, 3, 0.3)[0, 1:]
        got = joint.rerank([p])[0, order[1:]]
        if joint.tie_order_matters[p]:
            differ.append(not np.allclose(got, want, atol=1e-9))
        else:
            np.testing.assert_allclose(got, want, atol=1e-9)
    assert any(differ)
