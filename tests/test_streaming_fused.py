"""Lean streaming: the fused pass per streamed block gives the in-memory per-query outputs.

The streamed path scores every plan sharing a pool in one pass per gallery block
(:mod:`vireid_bench.engine.streaming_fused`). Features are exact (every float32 distance
is exact in any summation order) and tie-heavy, so the streamed and in-memory paths must
agree to the last bit, ties broken by pool position in both; the brute force
(``tests/brute_force.py``) is the reference where the answer is small enough to check.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from brute_force import score_query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vireid_bench.engine.distances import distance_block
from vireid_bench.engine.kernels import empty_query_scores
from vireid_bench.engine.scoring import MemoryOptions, evaluate
from vireid_bench.engine.streaming import StreamJob, score_streamed
from vireid_bench.io.dump import load_dump, write_dump
from vireid_bench.io.recipe import DistanceRecipe
from vireid_bench.protocol import builtin_presets, resolve_presets
from vireid_bench.protocol.datasets import SYSUConvention

PER_QUERY = ("first_rank", "n_pos", "n_gallery", "ap", "inp")


def tie_heavy(rng: np.random.Generator, n: int, distance: str, levels: int) -> np.ndarray:
    """Exact features drawn from few distinct rows, so most distances tie."""
    if distance == "cosine":
        base = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(levels, 16))
    else:
        base = rng.integers(-2, 3, size=(levels, 4)).astype(np.float32)
    return base[rng.integers(0, levels, size=n)]


def assert_same(reference, streamed) -> None:
    assert len(reference.per_query) == len(streamed.per_query)
    for x, y in zip(reference.per_query, streamed.per_query, strict=True):
        assert (x.protocol, x.variant, x.query_modality) == (
            y.protocol,
            y.variant,
            y.query_modality,
        )
        for key in PER_QUERY:
            np.testing.assert_array_equal(getattr(x, key), getattr(y, key), err_msg=key)
    for row_a, row_b in zip(reference.rows, streamed.rows, strict=True):
        for key, value in row_a.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(row_b[key]), key
            else:
                assert row_b[key] == value, key


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(4, 80),
    levels=st.integers(1, 6),
    distance=st.sampled_from(["cosine", "euclidean"]),
    cmc=st.sampled_from(["image", "identity"]),
    query_block=st.integers(1, 90),
    gallery_block=st.integers(1, 90),
    lazy=st.booleans(),
)
def test_fused_streaming_equals_in_memory_on_tie_heavy_dumps(
    tmp_path, seed, n, levels, distance, cmc, query_block, gallery_block, lazy
):
    """Every builtin preset at once (one pool group of 14 plans), both CMC conventions."""
    rng = np.random.default_rng(seed)
    path = write_dump(
        tmp_path / f"t{seed}_{n}.h5",
        features=tie_heavy(rng, n, distance, levels),
        pid=rng.integers(0, max(2, n // 5), size=n),
        cam=rng.integers(1, 5, size=n),
        modality=rng.integers(0, 2, size=n),
    )
    presets = list(builtin_presets().values())
    reference = evaluate(load_dump(path), presets, distance=distance, cmc=cmc)
    streamed = evaluate(
        load_dump(path, lazy=lazy),
        presets,
        distance=distance,
        cmc=cmc,
        memory=MemoryOptions(query_block=query_block, gallery_block=gallery_block),
    )
    assert_same(reference, streamed)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("cmc", ["image", "identity"])
def test_fused_streaming_equals_in_memory_under_sysu_trials(tmp_path, cmc):
    """SYSU-MM01: sampled pools per trial (several pool groups), co-located cameras."""
    rng = np.random.default_rng(3)
    sysu = load_dump("feature_dumps/demo-sysu.h5").splits[0]
    path = write_dump(
        tmp_path / "sysu.h5",
        features=tie_heavy(rng, sysu.n_images, "cosine", 40),
        pid=sysu.pid,
        cam=sysu.cam,
        modality=sysu.modality,
        paths=sysu.path,
        dataset="sysu-mm01",
    )
    presets = resolve_presets("all")
    options = {"trials": 2, "cmc": cmc, "convention": SYSUConvention(sampler="agw")}
    reference = evaluate(load_dump(path), presets, **options)
    streamed = evaluate(
        load_dump(path),
        presets,
        memory=MemoryOptions(query_block=500, gallery_block=333),
        **options,
    )
    assert_same(reference, streamed)


def _brute(features, pid, cam, mod, query_idx, pool_idx, clauses, identity_cmc):
    pool = [
        {"uid": int(j), "pid": int(pid[j]), "cam": int(cam[j]), "mod": int(mod[j])}
        for j in pool_idx
    ]
    out = []
    for q in query_idx:
        distances = [float(np.sum((features[q] - features[j]) ** 2)) for j in pool_idx]
        query = {"uid": int(q), "pid": int(pid[q]), "cam": int(cam[q]), "mod": int(mod[q])}
        out.append(score_query(distances, query, pool, clauses, identity_cmc))
    return out


@pytest.mark.parametrize("gallery_block", [1, 3, 7, 50])
def test_score_streamed_with_camera_keys_equals_brute_force(gallery_block):
    """``score_streamed(..., camera_keys=...)``: the fused pass over plans with different
    pools (one shared, one a subset in another order, one holding an image twice), every
    preset's clauses, co-located camera keys, both CMC conventions, against the brute force
    on exact integer features with many ties."""
    rng = np.random.default_rng(11)
    n = 40
    features = rng.integers(-1, 2, size=(n, 3)).astype(np.float32)
    pid = rng.integers(0, 8, size=n)
    cam = rng.integers(1, 5, size=n)
    modality = (cam >= 3).astype(np.int64)
    colocated_keys = np.where(cam <= 2, 1, 3)  # cameras 1,2 and 3,4 co-located
    keys = {False: cam.astype(np.int64), True: colocated_keys.astype(np.int64)}
    shared = np.arange(n)
    subset = rng.permutation(n)[:29]
    doubled = np.concatenate([np.arange(0, n, 2), [4, 6]])
    jobs, expected = [], []
    for preset in builtin_presets().values():
        for pool in (shared, subset, doubled):
            for identity_cmc in (False, True):
                colocated = bool(preset.colocated_cameras)
                queries = rng.permutation(n)[: rng.integers(1, n)]
                out = empty_query_scores(queries.size)
                jobs.append(
                    StreamJob(
                        query_idx=queries, pool_idx=pool, pid=pid,
                        cam_keys=keys[colocated], modality=modality,
                        clauses=preset.clause_codes(), identity_cmc=identity_cmc,
                        out=out, colocated=colocated,
                    )
                )  # fmt: skip
                clauses = [tuple(c) for c in preset.clause_codes().tolist()]
                brute = _brute(
                    features, pid, keys[colocated], modality, queries, pool, clauses, identity_cmc
                )
                expected.append((out, brute))
    query_union = np.unique(np.concatenate([job.query_idx for job in jobs]))
    pool_union = np.unique(np.concatenate([job.pool_idx for job in jobs]))

    def read(rows):
        return features[rows]

    # Euclidean distances of small integer rows: sqrt of exact integers, ranked as the
    # brute force ranks the squared distances
    score_streamed(
        jobs, query_union, pool_union, modality, pid, {"f": read},
        DistanceRecipe.from_policy("f", "f"), "euclidean", distance_block,
        query_block=5, gallery_block=gallery_block, camera_keys=keys,
    )  # fmt: skip
    for out, brute in expected:
        for i, want in enumerate(brute):
            assert out["n_pos"][i] == want["n_pos"]
            assert out["n_gallery"][i] == want["n_gallery"]
            assert out["first_rank"][i] == want["first_rank"]
            if want["n_pos"]:
                assert out["ap"][i] == pytest.approx(want["ap"], abs=1e-12)
                assert out["inp"][i] == pytest.approx(want["inp"], abs=1e-12)
            else:
                assert math.isnan(out["ap"][i]) and math.isnan(out["inp"][i])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_all_equal_distances_rank_by_pool_position(tmp_path):
    """Every feature equal: every distance ties, so the gallery is ranked in pool order.

    Six images, person ids 0 0 1 1 0 1, cameras 1 2 3 4 1 3 (1, 2 visible; 3, 4 infrared);
    ``mix`` keeps everything but the query. Query 0 (id 0): gallery 1..5, true matches at
    pool positions 1 and 4 -> ranks 1 and 4: AP = (1/1 + 2/4) / 2 = 0.75, INP = 2/4.
    Query 3 (id 1): gallery 0 1 2 4 5, true matches 2 and 5 -> ranks 3 and 5:
    AP = (1/3 + 2/5) / 2 = 11/30, INP = 2/5, first rank 3 (image CMC), 2 (identity CMC:
    identity 0 before it).
    """
    path = write_dump(
        tmp_path / "flat.h5",
        features=np.ones((6, 16), dtype=np.float32),
        pid=[0, 0, 1, 1, 0, 1],
        cam=[1, 2, 3, 4, 1, 3],
        modality=[0, 0, 1, 1, 0, 1],
    )
    mix = [builtin_presets()["mix"]]
    for cmc, rank_of_3 in (("image", 3), ("identity", 2)):
        evaluation = evaluate(
            load_dump(path), mix, cmc=cmc, memory=MemoryOptions(query_block=2, gallery_block=2)
        )
        by_modality = {s.query_modality: s for s in evaluation.per_query}
        visible = by_modality["visible"]
        assert visible.plan.query_idx.tolist()[0] == 0
        assert visible.ap[0] == pytest.approx(0.75, abs=1e-15)
        assert visible.inp[0] == pytest.approx(0.5, abs=1e-15)
        assert visible.first_rank[0] == 1
        infrared = by_modality["infrared"]
        k = infrared.plan.query_idx.tolist().index(3)
        assert infrared.ap[k] == pytest.approx(11 / 30, abs=1e-15)
        assert infrared.inp[k] == pytest.approx(0.4, abs=1e-15)
        assert infrared.first_rank[k] == rank_of_3
        assert infrared.n_gallery[k] == 5
