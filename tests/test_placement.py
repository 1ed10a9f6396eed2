"""The bucket-table placement (engine/placement.py) and the fused kernel that uses it.

Placement is checked against a brute-force count of the preceding keys on tie-heavy,
float32 and float64 candidate lists (zero, infinite, subnormal and huge ranges included);
the kernel against the brute-force scorer with identities large enough for the table.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fused import PRESETS, check_against_brute_force, every_setting, problems

from vireid_bench.engine.fused import FusedJob, score_jobs
from vireid_bench.engine.placement import (
    BUCKETS_PER_CANDIDATE,
    MIN_BUCKETED,
    build_buckets,
    place_bucketed,
    place_searched,
)


def preceding(cd, cj, d, j) -> int:
    return sum(1 for c, p in zip(cd.tolist(), cj.tolist(), strict=True) if (c, p) < (d, j))


def table_for(cd):
    table = np.full(BUCKETS_PER_CANDIDATE * cd.size + 2, -7, dtype=np.int32)
    t1, inv, k = build_buckets(cd, 0, cd.size, table, 0, np.empty(1, cd.dtype))
    return table, t1, inv, k


def check_every_image(cd, cj, images):
    """Both placements against the brute force for every image preceding the last key."""
    table, t1, inv, k = table_for(cd)
    n = cd.size
    placed = 0
    for d, j in images:
        d = cd.dtype.type(d)
        if not (d < cd[-1] or (d == cd[-1] and j < cj[-1])):
            continue
        want = preceding(cd, cj, d, j)
        assert place_searched(cd, cj, 0, n, d, j) == want
        if k >= 0:
            assert place_bucketed(cd, cj, 0, n, table, 0, t1, inv, k, d, j) == want, (d, j)
            placed += 1
    return k, placed


@st.composite
def candidate_lists(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n = draw(st.integers(1, 90))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["levels", "continuous", "clustered", "tiny", "huge", "inf"]))
    if kind == "levels":  # ties everywhere
        values = rng.integers(0, draw(st.integers(1, 6)), n) / 4.0
    elif kind == "continuous":
        values = rng.random(n)
    elif kind == "clustered":  # most candidates in one bucket, a few far away
        values = np.where(rng.random(n) < 0.8, 0.5 + 1e-7 * rng.random(n), rng.random(n))
    elif kind == "tiny":  # a range of a few units in the last place
        base = 0.75
        step = np.spacing(dtype(base))
        values = base + step * rng.integers(0, 4, n)
    elif kind == "huge":
        values = rng.choice([-3e38, -1.0, 0.0, 1.0, 3e38], n)
    else:
        values = rng.choice([-np.inf, 0.0, 0.25, 1.0, np.inf], n)
    cd = np.sort(np.asarray(values, dtype=dtype))
    cj = rng.permutation(4 * n + 4)[:n].astype(np.int32)
    order = np.lexsort((cj, cd))
    cd, cj = cd[order], cj[order]
    # images: every candidate value (ties), values between and around them, random positions
    pool = np.concatenate(
        [cd.astype(np.float64), rng.uniform(-1.0, 1.5, 20), np.nextafter(cd, np.inf),
         np.nextafter(cd, -np.inf)]
    )  # fmt: skip
    images = [(pool[t], int(rng.integers(0, 4 * n + 4))) for t in range(pool.size)]
    return cd, cj, images


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(candidate_lists())
def test_placement_matches_the_brute_force_count(drawn):
    cd, cj, images = drawn
    with np.errstate(invalid="ignore", over="ignore"):
        check_every_image(cd, cj, images)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_table_is_built_and_exact_on_a_spread_list(dtype):
    rng = np.random.default_rng(5)
    cd = np.sort(rng.random(40).astype(dtype))
    cd[10:14] = cd[10]  # a run of ties inside one bucket
    cj = rng.permutation(200)[:40].astype(np.int32)
    order = np.lexsort((cj, cd))
    cd, cj = cd[order], cj[order]
    images = [(float(d), int(j)) for d in rng.random(500) for j in rng.integers(0, 200, 1)]
    images += [(float(c), int(j)) for c in cd for j in (0, 57, 199)]
    k, placed = check_every_image(cd, cj, images)
    assert 0 <= k < 40  # the table exists and a bucket holds far fewer than all candidates
    assert placed > 400


def test_no_table_for_few_candidates_or_an_empty_or_infinite_range():
    few = np.sort(np.random.default_rng(0).random(MIN_BUCKETED - 1).astype(np.float32))
    assert table_for(few)[3] == -1
    assert table_for(np.full(20, 0.5, dtype=np.float32))[3] == -1
    assert table_for(np.array([0.0] * 10 + [np.inf], dtype=np.float32))[3] == -1
    assert table_for(np.array([-np.inf] + [0.0] * 10, dtype=np.float64))[3] == -1
    assert table_for(np.linspace(0.0, 1.0, MIN_BUCKETED, dtype=np.float32))[3] >= 0


def test_table_counts_candidates_in_lower_buckets_by_hand():
    # 8 candidates over [0, 1] in 64 buckets of width 1/64
    cd = np.array([0.0, 0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0], dtype=np.float64)
    table, t1, inv, k = table_for(cd)
    assert (t1, inv, k) == (0.0, 64.0, 2)
    assert table[0] == 0 and table[1] == 2 and table[16] == 2 and table[17] == 4
    assert table[48] == 6 and table[64] == 7 and table[65] == 8
    cj = np.arange(8, dtype=np.int32)
    # 0.25 at position 3: candidates 0, 1 (smaller) and 2 (equal, smaller position)
    assert place_bucketed(cd, cj, 0, 8, table, 0, t1, inv, k, 0.25, 3) == 3
    assert place_bucketed(cd, cj, 0, 8, table, 0, t1, inv, k, 0.3, 9) == 4
    assert place_bucketed(cd, cj, 0, 8, table, 0, t1, inv, k, -5.0, 9) == 0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_pool=200, max_ids=3, levels=64), st.sampled_from([np.float32, np.float64]))
def test_fused_kernel_with_bucket_tables_matches_the_brute_force(drawn, dtype):
    # identities of ~40-100 images: every query with a true match gets a bucket table;
    # distances from 64 levels, half of them made distinct by a small jitter
    problem, rng = drawn
    problem["dist"] = jittered(problem["dist"], rng, dtype)
    jobs, specs = every_setting(problem, rng)
    check_against_brute_force(problem, jobs, specs)


def jittered(dist, rng, dtype, far_share=0.0):
    """``dist`` in ``dtype``, half its entries moved by up to 1/256 (distinct values among
    the ties), a ``far_share`` of them made infinite or 1e30."""
    dist = dist.astype(dtype)
    jitter = rng.random(dist.shape) < 0.5
    dist[jitter] += (rng.random(dist.shape)[jitter] / 256).astype(dtype)
    far = rng.random(dist.shape) < far_share
    dist[far] = np.where(rng.random(dist.shape) < 0.5, np.inf, 1e30)[far].astype(dtype)
    return dist


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_pool=200, max_ids=3, levels=64), st.sampled_from([np.float32, np.float64]))
def test_image_cmc_jobs_with_huge_and_infinite_distances_match_the_brute_force(drawn, dtype):
    # image-CMC jobs only (no query records identities); some distances huge or infinite
    problem, rng = drawn
    problem["dist"] = jittered(problem["dist"], rng, dtype, far_share=0.05)
    jobs, specs = every_setting(problem, rng)
    image_only = [(job, spec) for job, spec in zip(jobs, specs, strict=True) if not spec[1]]
    check_against_brute_force(
        problem, [job for job, _ in image_only], [spec for _, spec in image_only]
    )


def test_bucket_table_kernel_by_hand():
    # one query (pool position 0, identity 0) and a pool of 10 candidates of its identity
    # plus 5 others; distances chosen so that others fall in empty buckets, in a bucket
    # with a candidate (a tie by distance, settled by pool position), and past the last one
    cand = np.arange(1, 11) / 16  # exact binary fractions: the ties below are real ties
    # before all; ties candidate 4 at a larger position; between 5 and 6; ties the last
    # candidate at a larger position (after it); after everything
    others = np.array([0.03125, 0.25, 0.34375, 0.625, 2.0])
    dist = np.concatenate([[0.0], cand, others])[None, :].astype(np.float64)
    n = dist.shape[1]
    pid = np.array([0] * 11 + [1] * 5)
    cam = np.array([1] + [3] * 10 + [3] * 5)
    mod = (cam >= 3).astype(np.int64)
    problem = {
        "dist": dist, "q_rows": np.array([0]), "q_uid": np.array([0]), "q_pid": np.array([0]),
        "q_cam": np.array([1]), "q_cam_colocated": np.array([1]), "q_mod": np.array([0]),
        "g_cols": np.arange(n), "g_uid": np.arange(n), "g_pid": pid, "g_cam": cam,
        "g_cam_colocated": cam, "g_mod": mod,
    }  # fmt: skip
    job = FusedJob(np.array([0]), PRESETS["mix"].clause_codes(), False, False)
    (out,) = check_and_score(problem, job)
    # images ranked before the k-th true match (k = 1..10), by the comments above
    before = [1, 1, 1, 1, 2, 3, 3, 3, 3, 3]
    ranks = [k + 1 + before[k] for k in range(10)]
    expected_ap = sum((k + 1) / r for k, r in enumerate(ranks)) / 10
    assert out["n_pos"][0] == 10 and out["n_gallery"][0] == 15
    assert out["first_rank"][0] == ranks[0]
    assert out["ap"][0] == pytest.approx(expected_ap, abs=1e-12)


def check_and_score(problem, job):
    check_against_brute_force(problem, [job], [("mix", False, False)])
    return score_jobs(jobs=[job], **problem)
