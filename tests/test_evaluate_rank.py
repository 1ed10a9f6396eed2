"""``evaluate_rank`` and ``vireid-bench score-distmat``: hand-worked cases, written out below.

The query x gallery cases follow torchreid's ``eval_market1501`` rule (gallery images with
the query's pid and camera removed, queries without a true match skipped); their expected
values are worked out by hand in the comments, not taken from torchreid. The pool x pool
cases must equal ``vireid-bench score`` on a generic dump of the same features.
"""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import vireid_bench
from vireid_bench.cli.main import cli
from vireid_bench.engine.distmat import DistanceMatrixError
from vireid_bench.errors import EmptyEvaluationError
from vireid_bench.io.dump import load_dump
from vireid_bench.synth.dumps import write_synth_dump

# Case A: query 0 (pid 1, cam 1). Gallery 0 (pid 1, cam 1) is removed (same pid and camera);
# gallery 3 (pid 3, cam 1) stays (same camera, other pid). Ranked: g1 (x), g2 (hit),
# g3 (x), g4 (hit): hits at ranks 2 and 4, AP = (1/2 + 2/4) / 2 = 0.5, INP = 2/4 = 0.5.
# Query 1 (pid 2, cam 2): its only pid-2 image (g1) has its camera: no true match, skipped.
CASE_A = {
    "distmat": np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.9, 0.1, 0.2, 0.3]]),
    "q_pids": np.array([1, 2]),
    "g_pids": np.array([1, 2, 1, 3, 1]),
    "q_camids": np.array([1, 2]),
    "g_camids": np.array([1, 2, 2, 1, 3]),
}

# Case B: query 0 (pid 1): ranked g0 (2), g1 (2), g2 (3), g3 (1), g4 (1): hits at 4 and 5,
# AP = (1/4 + 2/5) / 2 = 0.325, INP = 2/5; by identity the first hit is the 3rd identity.
# Query 1 (pid 3): g2 first: rank 1, AP 1, INP 1.
CASE_B = {
    "distmat": np.array([[0.1, 0.2, 0.3, 0.4, 0.6], [0.3, 0.4, 0.1, 0.2, 0.5]]),
    "q_pids": np.array([1, 3]),
    "g_pids": np.array([2, 2, 3, 1, 1]),
    "q_camids": np.array([1, 1]),
    "g_camids": np.array([2, 2, 2, 2, 2]),
}

# Case D, a pool of 4 images: 0 (pid 1, cam 1, V), 1 (pid 1, cam 3, I), 2 (pid 2, cam 1, V),
# 3 (pid 1, cam 2, V); symmetric distances d01 .3, d02 .1, d03 .2, d12 .4, d13 .5, d23 .6.
# mix-id removes the query's pid in the query's modality:
#   q0: gallery 1 (.3 hit), 2 (.1): ranked 2, 1 -> first 2, AP 1/2, INP 1/2
#   q1: gallery 0 (.3 hit), 2 (.4), 3 (.5 hit) -> first 1, AP (1 + 2/3)/2 = 5/6, INP 2/3
#   q2: no other pid 2 -> skipped
#   q3: gallery 1 (.5 hit), 2 (.6) -> first 1, AP 1, INP 1
POOL_D = np.array(
    [[0.0, 0.3, 0.1, 0.2], [0.3, 0.0, 0.4, 0.5], [0.1, 0.4, 0.0, 0.6], [0.2, 0.5, 0.6, 0.0]]
)
POOL_LABELS = {
    "q_pids": np.array([1, 1, 2, 1]),
    "g_pids": np.array([1, 1, 2, 1]),
    "q_camids": np.array([1, 3, 1, 2]),
    "g_camids": np.array([1, 3, 1, 2]),
    "q_modalities": np.array([0, 1, 0, 0]),
    "g_modalities": np.array(["visible", "infrared", "visible", "visible"]),
}


def test_market_rule_by_hand():
    with pytest.warns(UserWarning, match="1 of 2 queries have no true match"):
        cmc, mAP, mINP = vireid_bench.evaluate_rank(**CASE_A, max_rank=4)
    np.testing.assert_allclose(cmc, [0.0, 1.0, 1.0, 1.0])
    assert mAP == pytest.approx(0.5) and mINP == pytest.approx(0.5)


def test_two_queries_image_and_identity_cmc():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no query is skipped: no warning
        cmc, mAP, mINP = vireid_bench.evaluate_rank(**CASE_B, max_rank=5)
    np.testing.assert_allclose(cmc, [0.5, 0.5, 0.5, 1.0, 1.0])
    assert mAP == pytest.approx((0.325 + 1) / 2) and mINP == pytest.approx((0.4 + 1) / 2)
    by_identity, _, _ = vireid_bench.evaluate_rank(**CASE_B, max_rank=5, cmc="identity")
    np.testing.assert_allclose(by_identity, [0.5, 0.5, 1.0, 1.0, 1.0])
    full, _, _ = vireid_bench.evaluate_rank(**CASE_B)  # torchreid's default length
    assert full.shape == (50,) and full[-1] == 1.0


def test_cross_and_uni_use_the_modalities_on_a_query_gallery_matrix():
    # query (pid 1, cam 3, infrared); gallery g0 (pid 1, cam 6, I, .1), g1 (pid 2, cam 1,
    # V, .2), g2 (pid 1, cam 2, V, .3).
    case = {
        "distmat": np.array([[0.1, 0.2, 0.3]]),
        "q_pids": [1],
        "g_pids": [1, 2, 1],
        "q_camids": [3],
        "g_camids": [6, 1, 2],
    }
    modalities = {"q_modalities": ["infrared"], "g_modalities": [1, 0, 0]}
    # cross: g0 removed (same modality): g1, g2 -> first 2, AP 1/2, INP 1/2
    cmc, mAP, mINP = vireid_bench.evaluate_rank(**case, **modalities, max_rank=3)
    np.testing.assert_allclose(cmc, [0, 1, 1])
    assert (mAP, mINP) == pytest.approx((0.5, 0.5))
    # without modalities nothing tells g0 apart: hits at 1 and 3, AP (1 + 2/3)/2, INP 2/3
    cmc, mAP, mINP = vireid_bench.evaluate_rank(**case, max_rank=3)
    assert (cmc[0], mAP, mINP) == pytest.approx((1.0, 5 / 6, 2 / 3))
    # uni: only g0 stays -> rank 1, AP 1
    cmc, mAP, mINP = vireid_bench.evaluate_rank(**case, **modalities, setting="uni", max_rank=3)
    assert (cmc[0], mAP, mINP) == (1.0, 1.0, 1.0)


def test_mixed_settings_need_a_pool_matrix():
    with pytest.raises(ValueError, match="a query x gallery matrix cannot hold"):
        vireid_bench.evaluate_rank(**CASE_B, setting="mix-id")


def test_pool_mix_id_by_hand():
    with pytest.warns(UserWarning, match="1 of 4 queries"):
        cmc, mAP, mINP = vireid_bench.evaluate_rank(POOL_D, **POOL_LABELS, setting="mix-id")
    assert cmc[0] == pytest.approx(2 / 3) and cmc[1] == 1.0
    assert mAP == pytest.approx((0.5 + 5 / 6 + 1) / 3)
    assert mINP == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    cmc, mAP, mINP = vireid_bench.evaluate_rank(
        POOL_D, **POOL_LABELS, setting="mix-id", query_modality="infrared"
    )
    assert (cmc[0], mAP, mINP) == pytest.approx((1.0, 5 / 6, 2 / 3))


def test_pool_equals_score_on_a_generic_dump(tmp_path):
    dump_path = write_synth_dump(
        tmp_path / "pool.h5",
        ids=5,
        cameras="1,2:visible,3,4:infrared",
        per_cam=2,
        dim=16,
        seed=3,
        float16=False,
    )
    dump = load_dump(dump_path)
    split = dump.splits[0]
    assert dump.cross_features == dump.same_features  # one feature set for every pair
    features = split.features[dump.default_features].astype(np.float64)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    distmat = 1.0 - features @ features.T
    labels = {
        "q_pids": split.pid,
        "g_pids": split.pid,
        "q_camids": split.cam,
        "g_camids": split.cam,
        "q_modalities": split.modality,
        "g_modalities": split.modality,
    }
    frame = vireid_bench.score(dump_path, "all")
    assert len(frame) == 14
    for row in frame.itertuples():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cmc, mAP, mINP = vireid_bench.evaluate_rank(
                distmat,
                **labels,
                setting=row.protocol,
                query_modality=row.query_modality,
                max_rank=20,
            )
        got = (100 * cmc[0], 100 * cmc[4], 100 * cmc[19], 100 * mAP, 100 * mINP)
        assert got == pytest.approx((row.rank1, row.rank5, row.rank20, row.mAP, row.mINP)), row


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"distmat": np.array([[np.nan, 0.2, 0.3, 0.4, 0.5]] * 2)}, "distmat: 2 NaN or Inf"),
        ({"distmat": np.zeros(5)}, "distmat: expected a 2-D array"),
        ({"q_pids": np.array([1, 2, 3])}, "q_pids: length 3 does not match distmat's 2 rows"),
        ({"g_camids": np.array([1.5, 2, 2, 2, 2])}, "g_camids: expected integers"),
        ({"q_modalities": [0, 1]}, "give both q_modalities and g_modalities"),
        ({"setting": "mix-x"}, "setting: unknown 'mix-x'"),
        ({"cmc": "dataset"}, "cmc: 'dataset' is not 'image' or 'identity'"),
        ({"max_rank": 0}, "max_rank: must be a positive integer"),
        ({"query_modality": "infrared"}, "query_modality: only for a pool x pool matrix"),
    ],
)
def test_malformed_input_raises_value_error(change, message):
    with pytest.raises(DistanceMatrixError, match=message):
        vireid_bench.evaluate_rank(**{**CASE_B, **change})


def test_no_valid_query_and_pool_without_modalities():
    with pytest.raises(EmptyEvaluationError, match="no query has a true match"):
        vireid_bench.evaluate_rank(**{**CASE_B, "g_pids": np.array([7, 7, 7, 7, 7])})
    labels = {k: v for k, v in POOL_LABELS.items() if "modalities" not in k}
    with pytest.raises(DistanceMatrixError, match="'mix-id' constrains modality"):
        vireid_bench.evaluate_rank(POOL_D, **labels, setting="mix-id")
    # mix needs no modality; with pids [1, 1, 9, 9] (mix removes only the query itself):
    _, mAP, _ = vireid_bench.evaluate_rank(
        POOL_D, **{**labels, "q_pids": [1, 1, 9, 9], "g_pids": [1, 1, 9, 9]}, setting="mix"
    )
    # q0: 2 (.1 x), 3 (.2 x), 1 (.3 hit) -> 1/3; q1: 0 (.3 hit) -> 1;
    # q2: 0 (.1 x), 1 (.4 x), 3 (.6 hit) -> 1/3; q3: 0 (.2 x), 1 (.5 x), 2 (.6 hit) -> 1/3
    assert mAP == pytest.approx((1 / 3 + 1 + 1 / 3 + 1 / 3) / 4)


# ----------------------------------------------------------------------------- command line


def test_score_distmat_command(tmp_path):
    runner = CliRunner()
    np.savez(tmp_path / "b.npz", **CASE_B)
    result = runner.invoke(cli, ["score-distmat", str(tmp_path / "b.npz"), "-f", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rank1"] == 0.5 and payload["mAP"] == pytest.approx(0.6625)
    assert payload["matrix"] == "query x gallery" and len(payload["cmc_curve"]) == 50
    table = runner.invoke(cli, ["score-distmat", str(tmp_path / "b.npz")])
    assert table.exit_code == 0 and "66.25" in table.stdout and "70.00" in table.stdout
    # an HDF5 file with the same arrays; skipped queries are a warning on stderr
    with h5py.File(tmp_path / "a.h5", "w") as handle:
        for name, value in CASE_A.items():
            handle[name] = value
    result = runner.invoke(cli, ["score-distmat", str(tmp_path / "a.h5"), "-f", "csv"])
    assert result.exit_code == 0, result.output
    assert "1 of 2 queries have no true match" in result.stderr
    assert result.stdout.splitlines()[1].endswith(",2,1,0.0,1.0,1.0,1.0,0.5,0.5")
    # a pool matrix scores a mixed setting
    np.savez(tmp_path / "pool.npz", distmat=POOL_D, **{**POOL_LABELS, "g_modalities": [0, 1, 0, 0]})
    pool = runner.invoke(
        cli, ["score-distmat", str(tmp_path / "pool.npz"), "-p", "mix-id", "-f", "json"]
    )
    assert pool.exit_code == 0, pool.output
    assert json.loads(pool.stdout)["mAP"] == pytest.approx((0.5 + 5 / 6 + 1) / 3)


def test_score_distmat_errors_are_one_line(tmp_path):
    runner = CliRunner()
    np.savez(tmp_path / "b.npz", **CASE_B)
    result = runner.invoke(cli, ["score-distmat", str(tmp_path / "b.npz"), "-p", "mix"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'b.npz'}: setting: 'mix' puts images of the query's side in its "
        "gallery, which a query x gallery matrix cannot hold; pass the pool x pool matrix "
        "(square, q_* == g_*) to score it"
    ]
    np.savez(tmp_path / "c.npz", distmat=CASE_B["distmat"], q_pids=CASE_B["q_pids"])
    result = runner.invoke(cli, ["score-distmat", str(tmp_path / "c.npz")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {tmp_path / 'c.npz'}: g_pids: missing; arrays present: distmat, q_pids"
    )
