"""The histogram design of the torch backend (``--device``), on CPU: a hand-computed query,
sampled trial galleries of the dataset conventions (SYSU-MM01, LLCM, RegDB) with exact
tie-heavy features, pools holding an image twice, hypothesis against the Numba path, and the
design itself (one ``searchsorted`` placement per block and pool, however many plans)."""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vireid_bench.engine.plans import plan_evaluation
from vireid_bench.engine.scoring import aggregate, evaluate, score_tasks
from vireid_bench.engine.torch_backend import score_tasks_torch
from vireid_bench.io.dump import FeatureSplit, load_dump, write_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.conventions import EvaluationPlan
from vireid_bench.protocol.datasets.sysu import SYSUConvention

torch = pytest.importorskip("torch")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE = os.environ.get("VIREID_TEST_DEVICE", "cpu")  # "cuda": the same checks on a GPU
PER_QUERY = ("first_rank", "n_pos", "n_gallery")


def assert_same(numba, on_torch):
    assert len(numba.per_query) == len(on_torch.per_query) > 0
    for a, b in zip(numba.per_query, on_torch.per_query, strict=True):
        assert (a.protocol, a.variant, a.query_modality, a.plan.trial) == (
            b.protocol, b.variant, b.query_modality, b.plan.trial,
        )  # fmt: skip
        for key in PER_QUERY:
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
        for key in ("ap", "inp"):
            np.testing.assert_allclose(getattr(a, key), getattr(b, key), atol=1e-12, rtol=0)


def both(dump, protocols, **options):
    presets = resolve_presets(protocols)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        numba = evaluate(dump, presets, **options)
        on_torch = evaluate(dump, presets, device=DEVICE, **options)
    assert_same(numba, on_torch)
    return on_torch


# --------------------------------------------------------------------------- by hand


def hand_dump(path):
    """Six images, 1-D features, Euclidean distances from image 0 known by hand:
    image 1: 2, image 2: 1, image 3: 1 (tie with 2, after it in pool order), image 4: 3,
    image 5: 2 (tie with 1, after it)."""
    return write_dump(
        path,
        features=np.array([[0.0], [2.0], [1.0], [1.0], [3.0], [2.0]], dtype=np.float32),
        pid=np.array([1, 1, 2, 2, 1, 3]),
        cam=np.array([3, 1, 1, 3, 4, 2]),
        modality=np.array([1, 0, 0, 1, 1, 0], dtype=np.uint8),
    )


@pytest.mark.filterwarnings("ignore:.*collapsed features")
@pytest.mark.parametrize(
    ("protocol", "cmc", "expected"),
    [
        # gallery order 2, 3, 1, 5, 4: true matches 1 (rank 3) and 4 (rank 5)
        ("mix", "image", (3, (1 / 3 + 2 / 5) / 2, 2 / 5, 2, 5)),
        # identities before rank 3: {2} -> first-hit rank 2
        ("mix", "identity", (2, (1 / 3 + 2 / 5) / 2, 2 / 5, 2, 5)),
        # visible gallery 2, 1, 5: true match 1 at rank 2
        ("cross", "image", (2, 1 / 2, 1 / 2, 1, 3)),
        # without camera 3 (image 3): 2, 1, 5, 4: ranks 2 and 4
        ("mix-cam", "image", (2, (1 / 2 + 2 / 4) / 2, 2 / 4, 2, 4)),
    ],
)
def test_hand_computed_query(tmp_path, protocol, cmc, expected):
    dump = load_dump(hand_dump(tmp_path / "h.h5"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = evaluate(
            dump, resolve_presets(protocol), device=DEVICE, distance="euclidean", cmc=cmc,
            query_modalities=["infrared"],
        )  # fmt: skip
    (scores,) = evaluation.per_query
    (at,) = np.flatnonzero(scores.plan.query_idx == 0)
    got = tuple(
        getattr(scores, key)[at] for key in ("first_rank", "ap", "inp", "n_pos", "n_gallery")
    )
    assert got == pytest.approx(expected, abs=1e-15)


# --------------------------------------------------------------------------- conventions


def exact(rng, n, distance):
    if distance == "cosine":
        return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, 16))
    return rng.integers(-2, 3, size=(n, 4)).astype(np.float32)


def test_sysu_sampled_trial_galleries(tmp_path, distance="cosine"):
    """SYSU-MM01: one sampled gallery per trial (one pool group each), co-located cameras,
    identity CMC by default and image CMC when asked, every SYSU protocol."""
    sysu = load_dump(os.path.join(REPO, "feature_dumps", "demo-sysu.h5")).splits[0]
    rng = np.random.default_rng(11)
    path = write_dump(
        tmp_path / "sysu.h5", features=exact(rng, sysu.n_images, distance), pid=sysu.pid,
        cam=sysu.cam, modality=sysu.modality, paths=sysu.path, dataset="sysu-mm01",
    )  # fmt: skip
    dump = load_dump(path)
    protocols = "sysu-all-single:all,sysu-indoor-multi"
    agw = SYSUConvention(sampler="agw")
    evaluation = both(dump, protocols, trials=2, distance=distance, convention=agw)
    pools = {s.plan.pool_idx.tobytes() for s in evaluation.per_query}
    assert len(pools) > 3  # several sampled galleries, scored in one call
    both(dump, "sysu-all-multi", trials=2, distance=distance, cmc="image", convention=agw)


@pytest.mark.parametrize("name", ["synth-llcm", "synth-regdb"])
def test_llcm_and_regdb_conventions(tmp_path, name):
    stored = load_dump(os.path.join(REPO, "feature_dumps", f"{name}.h5"))
    split = stored.splits[0]
    rng = np.random.default_rng(12)
    path = write_dump(
        tmp_path / "d.h5", features=exact(rng, split.n_images, "euclidean"), pid=split.pid,
        cam=split.cam, modality=split.modality, paths=split.path, dataset=stored.dataset,
    )  # fmt: skip
    dataset = stored.dataset
    both(load_dump(path), f"{dataset}-{'i2v' if dataset == 'llcm' else 't2v'}:all",
         trials=2, distance="euclidean")  # fmt: skip


def test_pool_holding_an_image_twice(tmp_path):
    """A plan whose pool lists images twice (the Numba path's single-setting kernel): every
    copy of the query is left out, the other copies all count."""
    rng = np.random.default_rng(3)
    n = 30
    path = write_dump(
        tmp_path / "d.h5", features=exact(rng, n, "euclidean"), pid=rng.integers(0, 4, n),
        cam=rng.integers(1, 5, n), modality=rng.integers(0, 2, n).astype(np.uint8),
    )  # fmt: skip
    dump = load_dump(path)
    presets = resolve_presets("mix,mix-id,cross")
    results = []
    for device in (None, DEVICE):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            setup = plan_evaluation(dump, presets, distance="euclidean", cmc="identity")
            for task in setup.tasks:
                task.plans = [
                    EvaluationPlan(p.split, p.trial, p.query_idx,
                                   np.concatenate([p.pool_idx, p.pool_idx[::2]]))
                    for p in task.plans
                ]  # fmt: skip
            if device is None:
                score_tasks(dump, setup.tasks, setup.context)
            else:
                score_tasks_torch(dump, setup.tasks, setup.context, device=DEVICE)
            results.append(aggregate(setup))
    assert_same(*results)
    assert max(int(s.n_gallery.max()) for s in results[1].per_query) > n - 1


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32 - 1), st.integers(1, 60), st.integers(1, 6), st.booleans(),
    st.sampled_from(["euclidean", "cosine"]), st.integers(1, 3), st.booleans(),
)  # fmt: skip
def test_random_tie_heavy_dumps_same_as_numba(seed, n, ids, identity, distance, trials, two):
    """Random labels and few distinct distances (ties everywhere), one or several trial
    splits, one or two feature sets, small blocks (several per split)."""
    rng = np.random.default_rng(seed)

    def split():
        sets = {"a": exact(rng, n, distance)}
        if two:
            sets["b"] = exact(rng, n, distance)
        return FeatureSplit(
            features=sets, pid=rng.integers(0, ids, n), cam=rng.integers(1, 5, n),
            modality=rng.integers(0, 2, n).astype(np.uint8),
        )  # fmt: skip

    with tempfile.TemporaryDirectory() as folder:
        path = write_dump(
            os.path.join(folder, "d.h5"), trials=[split() for _ in range(trials)],
            cross_features="a", same_features="b" if two else "a", default_features="a",
        )  # fmt: skip
        both(load_dump(path), "all", distance=distance, block_bytes=int(rng.integers(1, 4000)),
             cmc="identity" if identity else "image")  # fmt: skip


# --------------------------------------------------------------------------- the design


def test_one_placement_per_block_and_pool_for_every_plan(tmp_path, monkeypatch):
    """14 plans (7 settings x 2 query modalities) sharing one pool: one searchsorted over
    the block's cells (plus one over the query images themselves), not one per plan."""
    rng = np.random.default_rng(4)
    n = 80
    path = write_dump(
        tmp_path / "d.h5", features=exact(rng, n, "euclidean"), pid=rng.integers(0, 8, n),
        cam=rng.integers(1, 5, n), modality=(rng.integers(1, 5, n) > 2).astype(np.uint8),
    )  # fmt: skip
    calls = []
    real = torch.searchsorted

    def counted(sorted_sequence, values, *args, **kwargs):
        calls.append(tuple(values.shape))
        return real(sorted_sequence, values, *args, **kwargs)

    monkeypatch.setattr(torch, "searchsorted", counted)
    on_torch = both(load_dump(path), "all", distance="euclidean", cmc="image")
    assert len(on_torch.per_query) == 14
    big = [shape for shape in calls if shape[-1] == n]
    assert big == [(n, n)], calls  # one block of every query row, one placement
