"""The fused multi-setting kernel against the brute force: every preset, both CMC
conventions, co-located cameras, tie-heavy distances, queries without a true match or outside
the pool, and through ``evaluate`` on real HDF5 dumps (exact Euclidean distances)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from brute_force import score_query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vireid_bench.engine.fused import FusedJob, score_jobs
from vireid_bench.engine.scoring import evaluate
from vireid_bench.io.dump import load_dump, write_dump
from vireid_bench.protocol import builtin_presets, resolve_presets

PRESETS = builtin_presets()
OUTPUTS = ("first_rank", "ap", "inp", "n_pos", "n_gallery")


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


def check_against_brute_force(problem, jobs, specs):
    outs = score_jobs(jobs=jobs, **problem)
    assert len(outs) == len(jobs)
    pid, mod = problem["g_pid"], problem["g_mod"]
    checked = 0
    for (name, identity_cmc, colocated), job, out in zip(specs, jobs, outs, strict=True):
        cams = problem["g_cam_colocated"] if colocated else problem["g_cam"]
        q_cams = problem["q_cam_colocated"] if colocated else problem["q_cam"]
        pool = [
            {"uid": int(problem["g_uid"][j]), "pid": int(pid[j]), "cam": int(cams[j]),
             "mod": int(mod[j])}
            for j in range(pid.size)
        ]  # fmt: skip
        clauses = [tuple(c) for c in PRESETS[name].clause_codes().tolist()]
        for t, q in enumerate(job.queries):
            query = {"uid": int(problem["q_uid"][q]), "pid": int(problem["q_pid"][q]),
                     "cam": int(q_cams[q]), "mod": int(problem["q_mod"][q])}  # fmt: skip
            row = problem["dist"][problem["q_rows"][q]]
            distances = [float(row[c]) for c in problem["g_cols"]]
            expected = score_query(distances, query, pool, clauses, identity_cmc)
            for key in OUTPUTS:
                assert same(float(out[key][t]), float(expected[key])), (name, identity_cmc, key)
            checked += 1
    return checked


@st.composite
def problems(draw, max_pool=24, max_ids=4, levels=4):
    """A random pool and queries; distances from a few levels (ties everywhere)."""
    n = draw(st.integers(0, max_pool))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pid = rng.integers(0, max_ids, n)
    cam = rng.integers(1, 5, n)
    mod = (cam >= 3).astype(np.int64)
    # queries: pool images (the query is in its own pool) and outsiders (maybe unknown ids)
    inside = rng.choice(n, size=min(n, int(rng.integers(0, 6))), replace=False)
    outside = int(rng.integers(0 if n else 1, 3))
    q_uid = np.concatenate([inside, -1 - np.arange(outside)]).astype(np.int64)
    q_pid = np.concatenate([pid[inside], rng.integers(0, max_ids + 1, outside)])
    q_cam = np.concatenate([cam[inside], rng.integers(1, 5, outside)])
    q_mod = (q_cam >= 3).astype(np.int64)
    m = q_uid.size
    # a shuffled pool order and distance columns, some spare rows and columns
    cols = rng.permutation(n + 2)[:n]
    rows = rng.permutation(m + 1)[:m]
    dist = (rng.integers(0, levels, (m + 1, n + 2)) / levels).astype(np.float32)
    merge = lambda c: np.where(c == 2, 1, c)  # noqa: E731 - cameras 1 and 2 co-located
    return {
        "dist": dist, "q_rows": rows, "q_uid": q_uid, "q_pid": q_pid, "q_cam": q_cam,
        "q_cam_colocated": merge(q_cam), "q_mod": q_mod, "g_cols": cols,
        "g_uid": np.arange(n), "g_pid": pid, "g_cam": cam, "g_cam_colocated": merge(cam),
        "g_mod": mod,
    }, rng  # fmt: skip


def every_setting(problem, rng):
    """Jobs for every builtin preset x CMC convention x camera keys, random query subsets."""
    m = problem["q_uid"].size
    jobs, specs = [], []
    for name, preset in PRESETS.items():
        for identity_cmc in (False, True):
            for colocated in (False, True):
                queries = rng.permutation(m)[: int(rng.integers(0, m + 1))]
                jobs.append(FusedJob(queries, preset.clause_codes(), colocated, identity_cmc))
                specs.append((name, identity_cmc, colocated))
    return jobs, specs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_every_setting_at_once_matches_the_brute_force(drawn):
    problem, rng = drawn
    jobs, specs = every_setting(problem, rng)
    check_against_brute_force(problem, jobs, specs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_pool=160, max_ids=2, levels=50))
def test_many_true_matches_binary_search_and_merge_sort(drawn):
    # identities with 40-80 images: the branch-free binary search and the merge sort
    problem, rng = drawn
    jobs, specs = every_setting(problem, rng)
    check_against_brute_force(problem, jobs, specs)


def test_all_distances_equal_ties_broken_by_pool_order():
    # one query, every distance 0.5: ranks are pool positions (minus the query)
    pid = np.array([1, 2, 1, 2, 1])
    cam = np.array([1, 3, 2, 4, 3])
    mod = (cam >= 3).astype(np.int64)
    problem = {
        "dist": np.full((1, 5), 0.5, dtype=np.float32), "q_rows": np.array([0]),
        "q_uid": np.array([0]), "q_pid": pid[:1], "q_cam": cam[:1], "q_cam_colocated": cam[:1],
        "q_mod": mod[:1], "g_cols": np.arange(5), "g_uid": np.arange(5), "g_pid": pid,
        "g_cam": cam, "g_cam_colocated": cam, "g_mod": mod,
    }  # fmt: skip
    mix = FusedJob(np.array([0]), PRESETS["mix"].clause_codes(), False, False)
    mix_id = FusedJob(np.array([0]), PRESETS["mix"].clause_codes(), False, True)
    image, identity = score_jobs(jobs=[mix, mix_id], **problem)
    # gallery 1(n) 2(p) 3(n) 4(p): true matches at ranks 2 and 4
    assert image["first_rank"].tolist() == [2]
    assert image["ap"][0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert image["inp"][0] == pytest.approx(2 / 4)
    assert image["n_gallery"].tolist() == [4]
    assert identity["first_rank"].tolist() == [2]  # identity 2 before the first match


def test_no_true_match_and_unknown_identity():
    pid = np.array([1, 2, 2])
    cam = np.array([1, 3, 4])
    mod = np.array([0, 1, 1])
    problem = {
        "dist": np.array([[0.0, 0.2, 0.1], [0.3, 0.1, 0.2]], dtype=np.float32),
        "q_rows": np.array([0, 1]), "q_uid": np.array([0, -1]), "q_pid": np.array([1, 7]),
        "q_cam": np.array([1, 3]), "q_cam_colocated": np.array([1, 3]), "q_mod": np.array([0, 1]),
        "g_cols": np.arange(3), "g_uid": np.arange(3), "g_pid": pid, "g_cam": cam,
        "g_cam_colocated": cam, "g_mod": mod,
    }  # fmt: skip
    (out,) = score_jobs(
        jobs=[FusedJob(np.array([0, 1]), PRESETS["mix"].clause_codes(), False, False)], **problem
    )
    assert out["first_rank"].tolist() == [0, 0]
    assert np.isnan(out["ap"]).all() and np.isnan(out["inp"]).all()
    assert out["n_pos"].tolist() == [0, 0]
    assert out["n_gallery"].tolist() == [2, 3]  # the query itself is not in its gallery


def test_duplicate_pool_ids_are_refused():
    problem = {
        "dist": np.zeros((1, 2), dtype=np.float32), "q_rows": np.array([0]),
        "q_uid": np.array([0]), "q_pid": np.array([1]), "q_cam": np.array([1]),
        "q_cam_colocated": np.array([1]), "q_mod": np.array([0]), "g_cols": np.arange(2),
        "g_uid": np.array([0, 0]), "g_pid": np.array([1, 1]), "g_cam": np.array([1, 1]),
        "g_cam_colocated": np.array([1, 1]), "g_mod": np.array([0, 0]),
    }  # fmt: skip
    with pytest.raises(ValueError, match="distinct"):
        score_jobs(jobs=[FusedJob(np.array([0]), PRESETS["mix"].clause_codes(), False, False)],
                   **problem)  # fmt: skip


# ------------------------------------------------------------------ through evaluate()


def integer_dump(path, seed, n=40, ids=5):
    """Small integer features: Euclidean distances are exact in float32, ties abound."""
    rng = np.random.default_rng(seed)

    def arrays():
        pid = rng.integers(0, ids, n)
        cam = rng.integers(1, 5, n)
        feats = rng.integers(1, 4, size=(n, 4)).astype(np.float32) * rng.choice([-1, 1], 4)
        return pid, cam, (cam >= 3).astype(np.uint8), feats

    pid, cam, modality, feats = arrays()
    return write_dump(path, features={"f": feats}, pid=pid, cam=cam, modality=modality)


@pytest.mark.parametrize("cmc", ["image", "identity"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_every_preset_tie_heavy_euclidean(tmp_path, seed, cmc):
    path = integer_dump(tmp_path / "ints.h5", seed)
    dump = load_dump(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = evaluate(dump, resolve_presets("all"), distance="euclidean", cmc=cmc)
    assert evaluation.per_query
    split = dump.splits[0]
    d = np.sqrt(
        ((split.features["f"][:, None, :].astype(np.float64) - split.features["f"][None]) ** 2)
        .sum(-1)
    )
    for scores in evaluation.per_query:
        preset = PRESETS[scores.protocol]
        clauses = [tuple(c) for c in preset.clause_codes().tolist()]
        pool = [
            {"uid": int(j), "pid": int(split.pid[j]), "cam": int(split.cam[j]),
             "mod": int(split.modality[j])}
            for j in scores.plan.pool_idx
        ]  # fmt: skip
        for t, q in enumerate(scores.plan.query_idx):
            query = {"uid": int(q), "pid": int(split.pid[q]), "cam": int(split.cam[q]),
                     "mod": int(split.modality[q])}  # fmt: skip
            expected = score_query(
                [float(d[q, j]) for j in scores.plan.pool_idx], query, pool, clauses,
                cmc == "identity",
            )  # fmt: skip
            for key in OUTPUTS:
                assert same(float(getattr(scores, key)[t]), float(expected[key])), (
                    scores.protocol, key
                )  # fmt: skip
