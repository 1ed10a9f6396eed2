"""Whole-dump scoring against the brute force, per-pair features, blocks, trials, empties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from brute_force import score_query

from vireid_bench.engine.scoring import METRICS, evaluate, score
from vireid_bench.errors import DumpError, EmptyEvaluationError, ProtocolError
from vireid_bench.io.dump import FeatureSplit, load_dump, write_dump
from vireid_bench.protocol import builtin_presets, resolve_presets


def brute_force_rows(
    path, preset_names, identity_cmc=False, distance="cosine", cross="default", same="default"
):
    """Score a generic dump with the brute force: float64 distances, Python loops."""
    dump = load_dump(path)
    results = {}
    for split in dump.splits:

        def dist(i, j, split=split):
            name = cross if split.modality[i] != split.modality[j] else same
            a = split.features[name][i].astype(np.float64)
            b = split.features[name][j].astype(np.float64)
            if distance == "cosine":
                return 1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            return float(np.linalg.norm(a - b))

        pool = [
            {
                "uid": j,
                "pid": int(split.pid[j]),
                "cam": int(split.cam[j]),
                "mod": int(split.modality[j]),
            }
            for j in range(split.n_images)
        ]
        for name in preset_names:
            preset = builtin_presets()[name]
            clauses = [tuple(c) for c in preset.clause_codes().tolist()]
            for modality, label in ((1, "infrared"), (0, "visible")):
                per_query = [
                    score_query(
                        [dist(q["uid"], j) for j in range(len(pool))],
                        q,
                        pool,
                        clauses,
                        identity_cmc,
                    )
                    for q in pool
                    if q["mod"] == modality
                ]
                valid = [r for r in per_query if r["n_pos"] > 0]
                trial = {
                    f"rank{kk}": 100 * np.mean([r["first_rank"] <= kk for r in valid])
                    for kk in (1, 5, 10, 20)
                }
                trial["mAP"] = 100 * np.mean([r["ap"] for r in valid])
                trial["mINP"] = 100 * np.mean([r["inp"] for r in valid])
                trial["without"] = len(per_query) - len(valid)
                results.setdefault((name, label), []).append(trial)
    return results


def random_dump(path, n=36, ids=6, seed=0, sets=("default",), trials=None):
    rng = np.random.default_rng(seed)

    def split():
        pid = rng.integers(0, ids, n)
        cam = rng.integers(1, 5, n)
        modality = (cam >= 3).astype(np.uint8)
        features = {
            s: (rng.normal(size=(ids, 8))[pid] + rng.normal(size=(n, 8))).astype(np.float32)
            for s in sets
        }
        return FeatureSplit(features=features, pid=pid, cam=cam, modality=modality)

    kwargs = {"cross_features": sets[0], "same_features": sets[-1], "default_features": sets[0]}
    if trials:
        return write_dump(path, trials=[split() for _ in range(trials)], **kwargs)
    s = split()
    return write_dump(
        path, features=s.features, pid=s.pid, cam=s.cam, modality=s.modality, **kwargs
    )


def compare(frame, expected, atol=1e-9):
    for (name, label), trials in expected.items():
        row = frame[(frame.protocol == name) & (frame.query_modality == label)].iloc[0]
        assert row.status == "ok"
        assert row.trials == len(trials)
        for metric in METRICS:
            values = [t[metric] for t in trials]
            assert row[metric] == pytest.approx(np.mean(values), abs=atol), (name, label, metric)
            assert row[f"{metric}_std"] == pytest.approx(np.std(values), abs=atol)
        assert row.queries_without_match == pytest.approx(np.mean([t["without"] for t in trials]))


ALL = list(builtin_presets())


@pytest.mark.parametrize("identity_cmc", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_preset_matches_the_brute_force(tmp_path, seed, identity_cmc):
    path = random_dump(tmp_path / "r.h5", seed=seed)
    frame = score(path, "all", cmc="identity" if identity_cmc else "image")
    compare(frame, brute_force_rows(path, ALL, identity_cmc=identity_cmc))


def test_euclidean_distance_matches_the_brute_force(tmp_path):
    path = random_dump(tmp_path / "r.h5", seed=4)
    frame = score(path, "mix,mix-id,cross", distance="euclidean")
    compare(frame, brute_force_rows(path, ["mix", "mix-id", "cross"], distance="euclidean"))


def test_per_pair_feature_policy(tmp_path):
    # Cross-modal pairs use z_e, same-modality pairs z_f, as MixER matches (paper 3.2(f)).
    path = random_dump(tmp_path / "p.h5", seed=5, sets=("z_e", "z_f"))
    frame = score(path, "all")
    compare(frame, brute_force_rows(path, ALL, cross="z_e", same="z_f"))
    assert set(frame.features) == {"z_e/z_f"}
    only_e = score(path, "mix", features="z_e")
    compare(only_e, brute_force_rows(path, ["mix"], cross="z_e", same="z_e"))


def test_block_size_does_not_change_results(tmp_path):
    path = random_dump(tmp_path / "b.h5", seed=6, sets=("z_e", "z_f"))
    whole = score(path, "all")
    one_row_blocks = score(path, "all", block_bytes=1)
    np.testing.assert_allclose(
        whole[list(METRICS)].to_numpy(),
        one_row_blocks[list(METRICS)].to_numpy(),
        rtol=0,
        atol=1e-12,
    )


def test_trials_are_averaged_with_population_std(tmp_path):
    path = random_dump(tmp_path / "t.h5", seed=7, trials=3)
    frame = score(path, "mix-id,cross")
    compare(frame, brute_force_rows(path, ["mix-id", "cross"]))
    assert (frame.trials == 3).all()
    first_two = score(path, "cross", trials=2)
    assert (first_two.trials == 2).all()


def test_one_modality_only_skips_cross_under_all_and_fails_when_named(tmp_path, make_dump):
    path = make_dump(
        features=np.random.default_rng(0).normal(size=(6, 4)),
        pid=np.array([1, 1, 2, 2, 3, 3]),
        cam=np.array([1, 2, 1, 2, 1, 2]),
        modality=np.zeros(6, np.uint8),
    )
    with pytest.warns(UserWarning, match="no infrared query"):
        frame = score(path, "all")
    cross_visible = frame[(frame.protocol == "cross") & (frame.query_modality == "visible")]
    assert cross_visible.iloc[0].status == "empty gallery for every query"
    assert math.isnan(cross_visible.iloc[0].rank1)
    uni = frame[(frame.protocol == "uni") & (frame.query_modality == "visible")].iloc[0]
    assert uni.status == "ok"
    with pytest.raises(EmptyEvaluationError, match="'cross' \\(visible query\\): empty gallery"):
        score(path, "cross", strict=True, query_modalities=["visible"])
    with pytest.raises(EmptyEvaluationError, match="no infrared query in the dump"):
        score(path, "cross", strict=True)


def test_mix_cam_not_applicable_with_one_camera_per_modality(tmp_path, make_dump):
    path = make_dump(
        features=np.random.default_rng(0).normal(size=(4, 4)),
        pid=np.array([1, 1, 2, 2]),
        cam=np.array([1, 2, 1, 2]),
        modality=np.array([0, 1, 0, 1], np.uint8),
    )
    with pytest.warns(UserWarning):
        frame = score(path, "mix-cam,mix-id")
    statuses = dict(zip(frame.protocol + "/" + frame.query_modality, frame.status, strict=True))
    assert statuses["mix-cam/infrared"] == "not applicable: one camera per modality"
    assert statuses["mix-id/infrared"] == "ok"


def test_no_true_match_anywhere_is_reported(tmp_path, make_dump):
    # Every identity has one image: no query can have a true match.
    path = make_dump(
        features=np.random.default_rng(0).normal(size=(4, 4)),
        pid=np.array([1, 2, 3, 4]),
        cam=np.array([1, 2, 3, 4]),
        modality=np.array([0, 0, 1, 1], np.uint8),
    )
    with pytest.raises(EmptyEvaluationError, match="no query has a true match"):
        score(path, "mix", strict=True)


def test_zero_norm_rows_are_an_error_under_cosine_only(tmp_path, make_dump):
    features = np.random.default_rng(0).normal(size=(4, 4))
    features[2] = 0
    path = make_dump(
        features=features,
        pid=np.array([1, 1, 2, 2]),
        cam=np.array([1, 2, 1, 2]),
        modality=np.array([0, 1, 0, 1], np.uint8),
    )
    with pytest.raises(
        DumpError, match=r"features/default: 1 zero-norm row\(s\) \(first at row 2\)"
    ):
        score(path, "mix")
    assert score(path, "mix", distance="euclidean").status.eq("ok").all()


def test_unknown_names_list_the_valid_ones(tiny_dump):
    with pytest.raises(ProtocolError, match="unknown protocol 'mixx' \\(valid: all, mix,"):
        resolve_presets("mixx")
    with pytest.raises(DumpError, match="no feature set 'z'"):
        score(tiny_dump, "mix", features="z")
    with pytest.raises(ProtocolError, match="unknown distance"):
        score(tiny_dump, "mix", distance="manhattan")


def test_per_query_scores_are_kept(tiny_dump):
    dump = load_dump(tiny_dump)
    evaluation = evaluate(dump, resolve_presets("mix-id"))
    infrared = [s for s in evaluation.per_query if s.query_modality == "infrared"]
    assert len(infrared) == 1
    scores = infrared[0]
    assert scores.first_rank.shape == scores.plan.query_idx.shape == (20,)
    row = next(r for r in evaluation.rows if r["query_modality"] == "infrared")
    assert row["mAP"] == pytest.approx(100 * np.nanmean(scores.ap))


def test_custom_preset_file(tmp_path, tiny_dump):
    custom = tmp_path / "no-same-cam-ir.toml"
    custom.write_text(
        'name = "custom"\ndescription = "test"\nquery_modalities = ["infrared"]\n'
        'gallery_modality = "mixed"\n[[exclude]]\ncamera = "same"\n'
    )
    frame = score(tiny_dump, str(custom))
    reference = score(tiny_dump, "mix-cam", query_modalities=["infrared"])
    assert frame.iloc[0].mAP == reference.iloc[0].mAP
    custom.write_text(
        'name = "bad"\ndescription = "x"\nquery_modalities = ["infrared"]\n'
        'gallery_modality = "mixed"\n[[exclude]]\ncolour = "same"\n'
    )
    with pytest.raises(ProtocolError, match="unknown key 'colour'"):
        resolve_presets(str(custom))
