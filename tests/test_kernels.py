"""The Numba kernel against hand-worked answers, the brute force and the NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from brute_force import score_query
from hypothesis import given, settings
from hypothesis import strategies as st

from vireid_bench.engine.kernels import score_queries
from vireid_bench.engine.reference import numpy_score
from vireid_bench.protocol.presets import builtin_presets

V, I = 0, 1  # noqa: E741 - the field's letters for visible and infrared

# The hand-made case: six images; image 0 is the query.
#   uid  pid  cam  mod   distance to image 0
#    0    1    1    V    (the query itself)
#    1    1    3    I    0.5
#    2    1    2    V    0.2
#    3    2    1    V    0.1
#    4    2    3    I    0.6
#    5    1    1    V    0.3
PID = np.array([1, 1, 1, 2, 2, 1])
CAM = np.array([1, 3, 2, 1, 3, 1])
MOD = np.array([V, I, V, V, I, V])
DIST = np.array([[0.0, 0.5, 0.2, 0.1, 0.6, 0.3]])


def run_kernel(clauses, identity_cmc=False, dist=DIST, pid=PID, cam=CAM, mod=MOD, query=0):
    n = pid.size
    return score_queries(
        np.ascontiguousarray(dist, dtype=np.float64),
        q_rows=np.array([0]),
        q_uid=np.array([query]),
        q_pid=pid[[query]],
        q_cam=cam[[query]],
        q_mod=mod[[query]],
        g_cols=np.arange(n),
        g_uid=np.arange(n),
        g_pid=pid,
        g_cam=cam,
        g_mod=mod,
        clauses=np.asarray(clauses, dtype=np.int8).reshape(-1, 3),
        identity_cmc=identity_cmc,
    )


# Each preset's gallery for query 0, worked out by hand from its rule, and the metrics:
#   mix        excludes nothing         -> 3(n,.1) 2(p,.2) 5(p,.3) 1(p,.5) 4(n,.6)
#              match ranks 2,3,4: AP = (1/2 + 2/3 + 3/4) / 3, INP = 3/4
#   mix-cam    excludes cam 1 (3, 5)    -> 2(p) 1(p) 4(n): ranks 1,2: AP 1, INP 1
#   mix-cam-id excludes cam 1 & pid 1 (5) -> 3(n) 2(p) 1(p) 4(n): ranks 2,3:
#              AP = (1/2 + 2/3) / 2, INP = 2/3
#   mix-id     excludes pid 1 & V (2, 5) -> 3(n) 1(p) 4(n): rank 2: AP 1/2, INP 1/2
#   mix-p      excludes V & pid != 1 (3) -> 2(p) 5(p) 1(p) 4(n): ranks 1,2,3: AP 1, INP 1
#   cross      excludes V (2, 3, 5); same camera adds nothing -> 1(p) 4(n): AP 1, INP 1
#   uni        excludes I (1, 4) and cam 1 & pid 1 (5) -> 3(n) 2(p): rank 2: AP 1/2, INP 1/2
HAND_WORKED = {
    "mix": ([1, 2, 3, 4, 5], 2, (1 / 2 + 2 / 3 + 3 / 4) / 3, 3 / 4),
    "mix-cam": ([1, 2, 4], 1, 1.0, 1.0),
    "mix-cam-id": ([1, 2, 3, 4], 2, (1 / 2 + 2 / 3) / 2, 2 / 3),
    "mix-id": ([1, 3, 4], 2, 1 / 2, 1 / 2),
    "mix-p": ([1, 2, 4, 5], 1, 1.0, 1.0),
    "cross": ([1, 4], 1, 1.0, 1.0),
    "uni": ([2, 3], 2, 1 / 2, 1 / 2),
}


@pytest.mark.parametrize("name", sorted(HAND_WORKED))
def test_each_preset_on_the_hand_worked_case(name):
    gallery, first_rank, ap, inp = HAND_WORKED[name]
    preset = builtin_presets()[name]
    out = run_kernel(preset.clause_codes())
    assert out["n_gallery"][0] == len(gallery)
    assert out["n_pos"][0] == sum(PID[j] == 1 for j in gallery)
    assert out["first_rank"][0] == first_rank
    assert out["ap"][0] == pytest.approx(ap, abs=1e-12)
    assert out["inp"][0] == pytest.approx(inp, abs=1e-12)


def test_identity_cmc_counts_identities_not_images():
    # Query 0 (pid 1). Gallery by distance: 1 (pid 2), 2 (pid 2), 3 (pid 3), 4 (pid 1).
    # Image rank of the first match is 4; identities before it are {2, 3}, so rank 3.
    pid = np.array([1, 2, 2, 3, 1])
    cam = np.array([1, 2, 2, 2, 2])
    mod = np.zeros(5, dtype=np.int64)
    dist = np.array([[0.0, 0.1, 0.2, 0.3, 0.4]])
    image = run_kernel(np.zeros((0, 3)), False, dist, pid, cam, mod)
    identity = run_kernel(np.zeros((0, 3)), True, dist, pid, cam, mod)
    assert image["first_rank"][0] == 4
    assert identity["first_rank"][0] == 3
    # AP and INP always use every gallery image: one match at rank 4.
    assert identity["ap"][0] == image["ap"][0] == pytest.approx(1 / 4)
    assert identity["inp"][0] == pytest.approx(1 / 4)


def test_ties_are_broken_by_pool_order():
    # A true match and a distractor at exactly the same distance: the one earlier in the
    # pool ranks first, whatever the sort algorithm.
    pid = np.array([1, 2, 1])
    cam = np.array([1, 2, 2])
    mod = np.zeros(3, dtype=np.int64)
    tie = np.array([[0.0, 0.5, 0.5]])
    out = run_kernel(np.zeros((0, 3)), False, tie, pid, cam, mod)
    assert out["first_rank"][0] == 2  # distractor (pool position 1) comes first
    swapped = run_kernel(np.zeros((0, 3)), False, tie, np.array([1, 1, 2]), cam, mod)
    assert swapped["first_rank"][0] == 1


def test_query_without_true_match_is_flagged_not_scored():
    pid = np.array([1, 2, 3])
    out = run_kernel(
        np.zeros((0, 3)),
        False,
        np.array([[0.0, 0.1, 0.2]]),
        pid,
        np.array([1, 2, 3]),
        np.zeros(3, dtype=np.int64),
    )
    assert out["n_pos"][0] == 0
    assert out["first_rank"][0] == 0
    assert math.isnan(out["ap"][0]) and math.isnan(out["inp"][0])
    assert out["n_gallery"][0] == 2


def test_everything_excluded_gives_empty_gallery():
    out = run_kernel(np.array([[0, 0, 1], [0, 0, 2]]))  # same modality, or different
    assert out["n_gallery"][0] == 0 and out["n_pos"][0] == 0


def test_rank_larger_than_gallery_is_not_a_hit_at_small_k():
    # One match at rank 5 of 5: CMC@1 false, CMC@5 true; k = 20 > gallery size is fine.
    pid = np.array([1, 2, 3, 4, 5, 1])
    dist = np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])
    out = run_kernel(np.zeros((0, 3)), False, dist, pid, np.arange(6), np.zeros(6, np.int64))
    assert out["first_rank"][0] == 5


def test_input_shapes_are_checked():
    with pytest.raises(ValueError, match="g_pid"):
        score_queries(
            DIST,
            np.array([0]),
            np.array([0]),
            PID[:1],
            CAM[:1],
            MOD[:1],
            np.arange(6),
            np.arange(6),
            PID[:5],
            CAM,
            MOD,
            np.zeros((0, 3), np.int8),
            False,
        )
    with pytest.raises(ValueError, match="g_cols"):
        score_queries(
            DIST,
            np.array([0]),
            np.array([0]),
            PID[:1],
            CAM[:1],
            MOD[:1],
            np.arange(6) + 1,
            np.arange(6),
            PID,
            CAM,
            MOD,
            np.zeros((0, 3), np.int8),
            False,
        )


# ----------------------------------------------------------------- property tests


clause_strategy = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)).filter(any),
    max_size=3,
)


@st.composite
def problems(draw):
    n_pool = draw(st.integers(1, 25))
    n_query = draw(st.integers(1, 6))
    n_ids = draw(st.integers(1, 5))
    labels = st.lists(st.integers(0, n_ids), min_size=n_pool, max_size=n_pool)
    pid = np.array(draw(labels))
    cam = np.array(draw(st.lists(st.integers(0, 3), min_size=n_pool, max_size=n_pool)))
    mod = np.array(draw(st.lists(st.integers(0, 1), min_size=n_pool, max_size=n_pool)))
    # Queries are pool images (self-exclusion) or outsiders (uid -1).
    q_uid = np.array(
        draw(st.lists(st.integers(-1, n_pool - 1), min_size=n_query, max_size=n_query))
    )
    q_pid = np.where(q_uid >= 0, pid[q_uid], draw(st.integers(0, n_ids)))
    q_cam = np.where(q_uid >= 0, cam[q_uid], 0)
    q_mod = np.where(q_uid >= 0, mod[q_uid], 1)
    # Small integer distances make ties frequent, exercising the tie rule.
    dist = np.array(
        draw(st.lists(st.integers(0, 6), min_size=n_query * n_pool, max_size=n_query * n_pool)),
        dtype=np.float64,
    ).reshape(n_query, n_pool)
    clauses = np.array(draw(clause_strategy), dtype=np.int8).reshape(-1, 3)
    # A shuffled pool: columns of dist are not in pool order.
    perm = np.array(draw(st.permutations(range(n_pool))))
    return {
        "dist": dist,
        "q_uid": q_uid,
        "q_pid": q_pid,
        "q_cam": q_cam,
        "q_mod": q_mod,
        "pid": pid,
        "cam": cam,
        "mod": mod,
        "clauses": clauses,
        "perm": perm,
    }


def _assert_same(a, b):
    for key in ("first_rank", "n_pos", "n_gallery"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for key in ("ap", "inp"):
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-9, err_msg=key)


@settings(max_examples=150, deadline=None)
@given(problem=problems(), identity_cmc=st.booleans())
def test_kernel_equals_brute_force_and_numpy(problem, identity_cmc):
    p = problem
    perm = p["perm"]
    n_query = p["dist"].shape[0]
    kernel = score_queries(
        p["dist"],
        q_rows=np.arange(n_query),
        q_uid=p["q_uid"],
        q_pid=p["q_pid"],
        q_cam=p["q_cam"],
        q_mod=p["q_mod"],
        g_cols=perm,
        g_uid=perm,
        g_pid=p["pid"][perm],
        g_cam=p["cam"][perm],
        g_mod=p["mod"][perm],
        clauses=p["clauses"],
        identity_cmc=identity_cmc,
    )
    reference = numpy_score(
        p["dist"][:, perm],
        p["q_pid"],
        p["q_cam"],
        p["q_mod"],
        p["q_uid"],
        p["pid"][perm],
        p["cam"][perm],
        p["mod"][perm],
        perm,
        p["clauses"],
        identity_cmc,
    )
    pool = [
        {"uid": int(u), "pid": int(p["pid"][u]), "cam": int(p["cam"][u]), "mod": int(p["mod"][u])}
        for u in perm
    ]
    brute = {key: [] for key in ("first_rank", "ap", "inp", "n_pos", "n_gallery")}
    for i in range(n_query):
        query = {
            "uid": int(p["q_uid"][i]),
            "pid": int(p["q_pid"][i]),
            "cam": int(p["q_cam"][i]),
            "mod": int(p["q_mod"][i]),
        }
        result = score_query(
            list(p["dist"][i, perm]),
            query,
            pool,
            [tuple(c) for c in p["clauses"].tolist()],
            identity_cmc,
        )
        for key in brute:
            brute[key].append(result[key])
    brute = {key: np.array(values) for key, values in brute.items()}
    _assert_same(kernel, brute)
    _assert_same(reference, brute)
