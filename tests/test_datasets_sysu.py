"""SYSU-MM01: indexer, samplers, hand-checked galleries, equivalence with the AGW code."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from dataset_trees import (
    dump_from_table,
    features_for,
    make_sysu,
    random_sysu_counts,
    write_rand_perm,
)

from vireid_bench.engine.scoring import evaluate, score
from vireid_bench.errors import DatasetError, DumpError, ProtocolError
from vireid_bench.io.dump import INFRARED, VISIBLE, load_dump, write_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.conventions import get_convention
from vireid_bench.protocol.datasets import SYSUConvention, index_sysu, load_rand_perm

# ----------------------------------------------------------------------------- indexer


def test_index_lists_test_images_id_by_id_camera_by_camera(tmp_path):
    counts = {(7, 1): 2, (7, 3): 1, (2, 6): 2, (2, 2): 1}
    root = make_sysu(tmp_path / "sysu", counts, test_ids=[7, 2])
    frame = index_sysu(root)
    assert list(frame.columns) == ["path", "pid", "cam", "modality"]
    assert frame["path"].tolist() == [
        "cam2/0002/0001.jpg",
        "cam6/0002/0001.jpg",
        "cam6/0002/0002.jpg",
        "cam1/0007/0001.jpg",
        "cam1/0007/0002.jpg",
        "cam3/0007/0001.jpg",
    ]
    assert frame["pid"].tolist() == [2, 2, 2, 7, 7, 7]
    assert frame["cam"].tolist() == [2, 6, 6, 1, 1, 3]
    assert frame["modality"].tolist() == [VISIBLE, INFRARED, INFRARED, VISIBLE, VISIBLE, INFRARED]


def test_index_training_splits(tmp_path):
    root = make_sysu(tmp_path / "sysu", {(1, 1): 1}, test_ids=[1], train_ids=(5,), val_ids=(6,))
    assert index_sysu(root, "train")["pid"].unique().tolist() == [5]
    assert index_sysu(root, "val")["pid"].unique().tolist() == [6]
    assert index_sysu(root, "trainval")["pid"].unique().tolist() == [5, 6]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "exp" / "test_id.txt").unlink(), "exp/test_id.txt: file missing"),
        (lambda r: os.rmdir(r / "cam4"), "cam4: folder missing"),
        (lambda r: (r / "exp" / "test_id.txt").write_text("1,x\n"), "'x' is not an integer"),
        (lambda r: (r / "exp" / "test_id.txt").write_text("\n"), "test_id.txt: empty"),
        (lambda r: (r / "exp" / "test_id.txt").write_text("1,3\n"), "lists id 0003"),
    ],
)
def test_index_errors_name_the_file(tmp_path, damage, message):
    root = make_sysu(tmp_path / "sysu", {(1, 1): 1}, test_ids=[1])
    damage(root)
    with pytest.raises(DatasetError, match=message):
        index_sysu(root)


def test_index_rejects_a_root_that_is_not_sysu(tmp_path):
    with pytest.raises(DatasetError, match="folder missing"):
        index_sysu(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="unknown SYSU-MM01 split"):
        index_sysu(tmp_path, split="query")


def test_index_leaves_out_non_images_with_a_warning(tmp_path):
    root = make_sysu(tmp_path / "sysu", {(1, 1): 2}, test_ids=[1])
    (root / "cam1" / "0001" / "Thumbs.db").write_bytes(b"")
    with pytest.warns(UserWarning, match="not an image left out"):
        frame = index_sysu(root)
    assert len(frame) == 2


# ----------------------------------------------------------------------------- AGW code
# Written from the community code (Cross-Modal-Re-ID-baseline data_manager.py and
# eval_metrics.py), walking the directory tree itself, independently of the indexer.

AGW_GALLERY_CAMS = {"all": ["cam1", "cam2", "cam4", "cam5"], "indoor": ["cam1", "cam2"]}


def agw_ids(root):
    with open(os.path.join(root, "exp/test_id.txt")) as handle:
        ids = handle.read().splitlines()
    return ["%04d" % int(y) for y in ids[0].split(",")]  # noqa: UP031 - as AGW writes it


def agw_query(root):
    files = []
    for pid in sorted(agw_ids(root)):
        for cam in ["cam3", "cam6"]:
            folder = os.path.join(root, cam, pid)
            if os.path.isdir(folder):
                files.extend(sorted([folder + "/" + i for i in os.listdir(folder)]))
    return files


def agw_gallery(root, mode, trial, shots=1, cams=None):
    random.seed(trial)
    files = []
    for pid in sorted(agw_ids(root)):
        for cam in cams or AGW_GALLERY_CAMS[mode]:
            folder = os.path.join(root, cam, pid)
            if os.path.isdir(folder):
                new_files = sorted([folder + "/" + i for i in os.listdir(folder)])
                if shots == 1:
                    files.append(random.choice(new_files))
                else:
                    files.extend(random.sample(new_files, min(shots, len(new_files))))
    return files


def cam_pid(path):
    return int(path[-15]), int(path[-13:-9])


def eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """AGW's eval_sysu (float64 throughout instead of its float32 casts)."""
    num_q, num_g = distmat.shape
    if num_g < max_rank:
        max_rank = num_g
    indices = np.argsort(distmat, axis=1)
    pred_label = g_pids[indices]
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    new_all_cmc, all_ap, all_inp = [], [], []
    num_valid_q = 0.0
    for q_idx in range(num_q):
        q_pid, q_camid = q_pids[q_idx], q_camids[q_idx]
        order = indices[q_idx]
        remove = (q_camid == 3) & (g_camids[order] == 2)
        keep = np.invert(remove)
        new_cmc = pred_label[q_idx][keep]
        new_index = np.unique(new_cmc, return_index=True)[1]
        new_cmc = [new_cmc[index] for index in sorted(new_index)]
        new_match = (np.asarray(new_cmc) == q_pid).astype(np.int32)
        new_cmc = new_match.cumsum()
        assert new_cmc.size >= max_rank  # the community code needs 20 gallery identities
        new_all_cmc.append(new_cmc[:max_rank])
        orig_cmc = matches[q_idx][keep]
        if not np.any(orig_cmc):
            continue
        cmc = orig_cmc.cumsum()
        pos_max_idx = np.max(np.where(orig_cmc == 1))
        all_inp.append(cmc[pos_max_idx] / (pos_max_idx + 1.0))
        num_valid_q += 1.0
        num_rel = orig_cmc.sum()
        # AGW: [x / (i + 1.) for i, x in enumerate(tmp_cmc)] * orig_cmc, vectorised
        tmp_cmc = orig_cmc.cumsum() / np.arange(1.0, orig_cmc.size + 1.0) * orig_cmc
        all_ap.append(tmp_cmc.sum() / num_rel)
    new_all_cmc = np.asarray(new_all_cmc, dtype=np.float64).sum(0) / num_valid_q
    return new_all_cmc, np.mean(all_ap), np.mean(all_inp)


def agw_test(root, mode, feature_of, trials=10):
    """AGW test.py for SYSU-MM01: 10 galleries, metrics averaged, in percent."""
    query = agw_query(root)
    q_feat = np.stack([feature_of[p] for p in query])
    q_cam, q_pid = map(np.array, zip(*(cam_pid(p) for p in query), strict=True))
    total = np.zeros(6)
    for trial in range(trials):
        gall = agw_gallery(root, mode, trial)
        g_feat = np.stack([feature_of[p] for p in gall])
        g_cam, g_pid = map(np.array, zip(*(cam_pid(p) for p in gall), strict=True))
        cmc, m_ap, m_inp = eval_sysu(-(q_feat @ g_feat.T), q_pid, g_pid, q_cam, g_cam)
        total += [cmc[0], cmc[4], cmc[9], cmc[19], m_ap, m_inp]
    return 100.0 * total / trials


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def random_sysu(tmp_path_factory):
    """A random SYSU-like tree (28 test ids with gaps), its index and a dump of it."""
    rng = np.random.default_rng(11)
    tmp = tmp_path_factory.mktemp("sysu")
    ids = sorted(rng.choice(np.arange(1, 60), size=28, replace=False).tolist())
    root = make_sysu(tmp / "root", random_sysu_counts(rng, ids), test_ids=ids)
    frame = index_sysu(root)
    features = features_for(frame, rng)
    dump_path = dump_from_table(tmp / "sysu.h5", frame, features, "sysu-mm01")
    feature_of = {
        f"{root}/{path}": row.astype(np.float64) / np.linalg.norm(row)
        for path, row in zip(frame["path"], features, strict=True)
    }
    return root, frame, dump_path, feature_of


def _paths(frame, indices):
    return [frame["path"].iloc[i] for i in indices]


# ----------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("mode", ["all", "indoor"])
@pytest.mark.parametrize("shots", [1, 10])
def test_agw_sampler_matches_the_community_loop(random_sysu, mode, shots):
    root, frame, dump_path, _ = random_sysu
    dump = load_dump(dump_path)
    name = {1: "single", 10: "multi"}[shots]
    (preset,) = resolve_presets(f"sysu-{mode}-{name}")
    convention = get_convention("sysu-mm01") if shots == 1 else SYSUConvention(sampler="agw")
    (variant,) = convention.variants(preset)
    assert variant == (mode if shots == 1 else f"{mode}-multi")
    plans = convention.plans(dump, preset, variant, INFRARED)
    assert [p.trial for p in plans] == list(range(10))
    query = [p[len(str(root)) + 1 :] for p in agw_query(root)]
    for plan in plans:
        assert _paths(frame, plan.query_idx) == query
        expected = agw_gallery(root, mode, plan.trial, shots)
        assert _paths(frame, plan.pool_idx) == [p[len(str(root)) + 1 :] for p in expected]


def test_visible_query_and_mixed_pools_use_the_same_sampler(random_sysu):
    root, frame, dump_path, _ = random_sysu
    dump = load_dump(dump_path)
    convention = get_convention("sysu-mm01")
    cross, mix = resolve_presets("cross,mix")
    strip = len(str(root)) + 1
    for plan in convention.plans(dump, cross, "indoor", VISIBLE, trials=3):
        visible = frame[frame["cam"].isin([1, 2])]
        assert (
            _paths(frame, plan.query_idx)
            == visible.sort_values(["pid", "cam", "path"])["path"].tolist()
        )
        pool = agw_gallery(root, "indoor", plan.trial, cams=["cam3", "cam6"])
        assert _paths(frame, plan.pool_idx) == [p[strip:] for p in pool]
    for plan in convention.plans(dump, mix, "all", INFRARED, trials=3):
        cams = [f"cam{c}" for c in range(1, 7)]
        assert _paths(frame, plan.pool_idx) == [
            p[strip:] for p in agw_gallery(root, "all", plan.trial, cams=cams)
        ]


def test_dump_order_does_not_change_the_galleries(random_sysu, tmp_path):
    root, frame, dump_path, _ = random_sysu
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    rng = np.random.default_rng(0)
    other = load_dump(
        dump_from_table(tmp_path / "s.h5", shuffled, features_for(shuffled, rng), "sysu-mm01")
    )
    (preset,) = resolve_presets("sysu-all-single")
    convention = SYSUConvention()
    a = convention.plans(load_dump(dump_path), preset, "all", INFRARED, trials=2)
    b = convention.plans(other, preset, "all", INFRARED, trials=2)
    for x, y in zip(a, b, strict=True):
        assert _paths(frame, x.pool_idx) == _paths(shuffled, y.pool_idx)
        assert _paths(frame, x.query_idx) == _paths(shuffled, y.query_idx)


def test_official_sampler_reads_rand_perm_cam(tmp_path):
    counts = {(1, 1): 3, (1, 2): 2, (1, 3): 2, (2, 1): 12, (2, 4): 1, (2, 6): 1}
    root = make_sysu(tmp_path / "sysu", counts, test_ids=[1, 2])
    rng = np.random.default_rng(5)
    perms = {
        (cam, pid): np.stack([rng.permutation(n) + 1 for _ in range(10)])
        for (pid, cam), n in counts.items()
    }
    write_rand_perm(root / "exp" / "rand_perm_cam.mat", perms, n_ids=3)
    loaded = load_rand_perm(root / "exp" / "rand_perm_cam.mat")
    assert set(loaded) == set(perms)
    frame = index_sysu(root)
    dump = load_dump(
        dump_from_table(tmp_path / "d.h5", frame, features_for(frame, rng), "sysu-mm01")
    )
    convention = SYSUConvention(sampler="official", rand_perm=root / "exp" / "rand_perm_cam.mat")
    for name, shots in (("sysu-all-single", 1), ("sysu-all-multi", 10)):
        (preset,) = resolve_presets(name)
        (variant,) = convention.variants(preset)
        assert variant.endswith("-official")
        for plan in convention.plans(dump, preset, variant, INFRARED):
            expected = [
                f"cam{cam}/{pid:04d}/{n:04d}.jpg"
                for cam in (1, 2, 4, 5)  # camera by camera, then id by id
                for pid in (1, 2)
                if (cam, pid) in perms
                for n in perms[(cam, pid)][plan.trial][:shots]
            ]
            assert _paths(frame, plan.pool_idx) == expected


def test_official_sampler_errors(tmp_path):
    from scipy.io import savemat

    savemat(str(tmp_path / "other.mat"), {"something": np.zeros(3)})
    with pytest.raises(DatasetError, match="no variable 'rand_perm_cam'"):
        load_rand_perm(tmp_path / "other.mat")
    with pytest.raises(DatasetError, match="file missing"):
        load_rand_perm(tmp_path / "missing.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DatasetError, match="junk.mat"):
        load_rand_perm(tmp_path / "junk.mat")
    with pytest.raises(ProtocolError, match="needs exp/rand_perm_cam.mat"):
        SYSUConvention(sampler="official")
    root = make_sysu(tmp_path / "sysu", {(1, 1): 2, (1, 3): 1}, test_ids=[1])
    write_rand_perm(tmp_path / "p.mat", {(1, 1): np.tile([3, 1], (10, 1))}, n_ids=1)
    frame = index_sysu(root)
    dump = load_dump(
        dump_from_table(
            tmp_path / "d.h5", frame, features_for(frame, np.random.default_rng(1)), "sysu-mm01"
        )
    )
    convention = SYSUConvention(sampler="official", rand_perm=tmp_path / "p.mat")
    (preset,) = resolve_presets("sysu-all-single")
    with pytest.raises(DatasetError, match="names image 0003, which the dump does not hold"):
        convention.plans(dump, preset, "all-official", INFRARED)


# ----------------------------------------------------------------------------- galleries


def _gallery(dump, convention, preset, variant, modality, query_path, trial=0):
    """The query's gallery: its plan's pool minus what the (adapted) preset excludes."""
    split = dump.splits[0]
    adapted = convention.adapt_preset(preset)
    keys = convention.camera_keys(split.cam, adapted.colocated_cameras)
    plan = convention.plans(dump, preset, variant, modality)[trial]
    (q,) = [i for i in plan.query_idx if split.path[i] == query_path]
    kept = []
    for g in plan.pool_idx:
        relations = {
            "camera": keys[g] == keys[q],
            "identity": split.pid[g] == split.pid[q],
            "modality": split.modality[g] == split.modality[q],
        }
        excluded = g == q or any(
            all(
                value == "any" or (value == "same") == relations[name]
                for name, value in (
                    ("camera", c.camera),
                    ("identity", c.identity),
                    ("modality", c.modality),
                )
            )
            for c in adapted.clauses
        )
        if not excluded:
            kept.append(split.path[g])
    return kept


HAND_QUERY = "cam3/0001/0001.jpg"
HAND_GALLERIES = {
    # every image but the query (multi-shot pools hold every image of this tree)
    "mix": {
        "cam1/0001/0001.jpg", "cam2/0001/0001.jpg", "cam3/0001/0002.jpg", "cam6/0001/0001.jpg",
        "cam1/0002/0001.jpg", "cam2/0002/0001.jpg", "cam3/0002/0001.jpg",
        "cam4/0002/0001.jpg", "cam5/0002/0001.jpg", "cam6/0002/0001.jpg",
        "cam2/0003/0001.jpg", "cam3/0003/0001.jpg", "cam5/0003/0001.jpg",
    },
    # no camera-3 image
    "mix-cam": {
        "cam1/0001/0001.jpg", "cam2/0001/0001.jpg", "cam6/0001/0001.jpg",
        "cam1/0002/0001.jpg", "cam2/0002/0001.jpg", "cam4/0002/0001.jpg",
        "cam5/0002/0001.jpg", "cam6/0002/0001.jpg",
        "cam2/0003/0001.jpg", "cam5/0003/0001.jpg",
    },
    # not the query person's other camera-3 image
    "mix-cam-id": {
        "cam1/0001/0001.jpg", "cam2/0001/0001.jpg", "cam6/0001/0001.jpg",
        "cam1/0002/0001.jpg", "cam2/0002/0001.jpg", "cam3/0002/0001.jpg",
        "cam4/0002/0001.jpg", "cam5/0002/0001.jpg", "cam6/0002/0001.jpg",
        "cam2/0003/0001.jpg", "cam3/0003/0001.jpg", "cam5/0003/0001.jpg",
    },
    # not the query person's infrared images
    "mix-id": {
        "cam1/0001/0001.jpg", "cam2/0001/0001.jpg",
        "cam1/0002/0001.jpg", "cam2/0002/0001.jpg", "cam3/0002/0001.jpg",
        "cam4/0002/0001.jpg", "cam5/0002/0001.jpg", "cam6/0002/0001.jpg",
        "cam2/0003/0001.jpg", "cam3/0003/0001.jpg", "cam5/0003/0001.jpg",
    },
    # visible images plus the query person's own infrared images
    "mix-p": {
        "cam1/0001/0001.jpg", "cam2/0001/0001.jpg", "cam3/0001/0002.jpg", "cam6/0001/0001.jpg",
        "cam1/0002/0001.jpg", "cam2/0002/0001.jpg", "cam4/0002/0001.jpg", "cam5/0002/0001.jpg",
        "cam2/0003/0001.jpg", "cam5/0003/0001.jpg",
    },
    # visible cameras 1, 2, 4, 5 without camera 2 (co-located with camera 3)
    "cross": {
        "cam1/0001/0001.jpg", "cam1/0002/0001.jpg", "cam4/0002/0001.jpg",
        "cam5/0002/0001.jpg", "cam5/0003/0001.jpg",
    },
    # infrared images but the query person's camera-3 image
    "uni": {
        "cam6/0001/0001.jpg", "cam3/0002/0001.jpg", "cam6/0002/0001.jpg", "cam3/0003/0001.jpg",
    },
}  # fmt: skip


@pytest.fixture
def hand_dump(tmp_path):
    counts = {(1, 1): 1, (1, 2): 1, (1, 3): 2, (1, 6): 1, (3, 2): 1, (3, 3): 1, (3, 5): 1}
    counts.update({(2, cam): 1 for cam in range(1, 7)})
    root = make_sysu(tmp_path / "sysu", counts, test_ids=[1, 2, 3])
    frame = index_sysu(root)
    rng = np.random.default_rng(2)
    return load_dump(
        dump_from_table(tmp_path / "h.h5", frame, features_for(frame, rng), "sysu-mm01")
    )


@pytest.mark.parametrize("setting", list(HAND_GALLERIES))
def test_every_setting_gallery_of_one_hand_checked_query(hand_dump, setting):
    convention = SYSUConvention(sampler="agw")
    name = "sysu-all-multi" if setting == "cross" else f"sysu-all-multi:{setting}"
    (preset,) = resolve_presets(name)
    for trial in (0, 7):
        got = _gallery(hand_dump, convention, preset, "all-multi", INFRARED, HAND_QUERY, trial)
        assert len(got) == len(set(got))
        assert set(got) == HAND_GALLERIES[setting]
    # the scorer's kernel sees the same gallery size for that query
    evaluation = evaluate(hand_dump, [preset], query_modalities=["infrared"], convention=convention)
    scores = evaluation.per_query[0]
    (position,) = np.flatnonzero(hand_dump.splits[0].path[scores.plan.query_idx] == HAND_QUERY)
    assert scores.n_gallery[position] == len(HAND_GALLERIES[setting])


def test_hand_checked_single_shot_cross_and_rules(hand_dump):
    cross = resolve_presets("cross")[0]
    single = SYSUConvention()
    assert single.variants(cross) == ["all", "indoor"]
    assert (
        set(_gallery(hand_dump, single, cross, "all", INFRARED, HAND_QUERY))
        == (HAND_GALLERIES["cross"])
    )
    assert set(_gallery(hand_dump, single, cross, "indoor", INFRARED, HAND_QUERY)) == {
        "cam1/0001/0001.jpg",
        "cam1/0002/0001.jpg",
    }
    same_id = SYSUConvention(colocated_rule="same-id")
    assert set(_gallery(hand_dump, same_id, cross, "all", INFRARED, HAND_QUERY)) == {
        "cam1/0001/0001.jpg",
        "cam1/0002/0001.jpg",
        "cam2/0002/0001.jpg",
        "cam4/0002/0001.jpg",
        "cam5/0002/0001.jpg",
        "cam2/0003/0001.jpg",
        "cam5/0003/0001.jpg",
    }
    # a visible camera-2 query sees no camera-3 image (co-located), but camera 6
    assert set(_gallery(hand_dump, single, cross, "all", VISIBLE, "cam2/0001/0001.jpg")) == {
        "cam6/0001/0001.jpg",
        "cam6/0002/0001.jpg",
    }


# ----------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("mode", ["all", "indoor"])
def test_scores_equal_the_agw_test_script(random_sysu, mode):
    root, _, dump_path, feature_of = random_sysu
    frame = score(dump_path, f"sysu-{mode}-single", query_modalities=["infrared"])
    (row,) = frame.to_dict("records")
    assert row["variant"] == mode and row["cmc"] == "identity" and row["trials"] == 10
    expected = agw_test(str(root), mode, feature_of)
    got = [row[m] for m in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert row["rank1_std"] > 0


def test_cross_preset_reports_all_and_indoor(random_sysu):
    _, _, dump_path, _ = random_sysu
    frame = score(dump_path, "cross", query_modalities=["infrared"])
    named = score(dump_path, "sysu-all-single,sysu-indoor-single", query_modalities=["infrared"])
    assert frame["variant"].tolist() == ["all", "indoor"]
    np.testing.assert_allclose(frame["mAP"], named["mAP"], atol=1e-12)


# ----------------------------------------------------------------------------- suite


def test_protocol_all_runs_the_paper_suite(random_sysu):
    _, _, dump_path, _ = random_sysu
    frame = score(dump_path, "all", trials=2)
    layout = list(zip(frame["protocol"], frame["variant"], frame["query_modality"], strict=True))
    expected = [
        (setting, "all", modality)
        for setting in ("mix", "mix-cam", "mix-cam-id", "mix-id", "mix-p")
        for modality in ("infrared", "visible")
    ]
    expected += [
        ("cross", mode, modality)
        for mode in ("all", "indoor")
        for modality in ("infrared", "visible")
    ]
    expected += [("uni", "all", "infrared"), ("uni", "all", "visible")]
    assert layout == expected
    assert (frame["status"] == "ok").all()
    assert (frame["trials"] == 2).all()
    assert (frame["cmc"] == "identity").all()


def test_dump_problems_are_reported(tmp_path, hand_dump):
    split = hand_dump.splits[0]
    base = {
        "features": split.features["default"],
        "pid": split.pid,
        "cam": split.cam,
        "modality": split.modality,
        "dataset": "sysu-mm01",
    }
    (preset,) = resolve_presets("sysu-all-single")
    convention = SYSUConvention()
    no_path = load_dump(write_dump(tmp_path / "a.h5", **base))
    with pytest.raises(DumpError, match="path: missing; the sysu-mm01 convention"):
        convention.plans(no_path, preset, "all", INFRARED)
    wrong = split.path.copy()
    wrong[0] = "cam4/0001/0001.jpg"
    bad = load_dump(write_dump(tmp_path / "b.h5", paths=wrong, **base))
    with pytest.raises(DumpError, match="cam: row 0: 1 but its path"):
        convention.plans(bad, preset, "all", INFRARED)
    odd = split.path.copy()
    odd[3] = "images/0001.jpg"
    bad = load_dump(write_dump(tmp_path / "c.h5", paths=odd, **base))
    with pytest.raises(DumpError, match="row 3: 'images/0001.jpg' is not cam<k>/<pid>/<file>"):
        convention.plans(bad, preset, "all", INFRARED)


def test_dataset_presets_belong_to_their_dataset(hand_dump, tmp_path):
    (regdb,) = resolve_presets("regdb-t2v")
    with pytest.raises(ProtocolError, match="'regdb-t2v' is for 'regdb' dumps, not 'sysu-mm01'"):
        evaluate(hand_dump, [regdb])
    split = hand_dump.splits[0]
    generic = load_dump(
        write_dump(
            tmp_path / "g.h5",
            features=split.features["default"],
            pid=split.pid,
            cam=split.cam,
            modality=split.modality,
        )
    )
    (sysu,) = resolve_presets("sysu-all-single")
    with pytest.raises(ProtocolError, match="is for 'sysu-mm01' dumps, not 'generic'"):
        evaluate(generic, [sysu])
    with pytest.raises(ProtocolError, match="unknown setting 'mixed'"):
        resolve_presets("sysu-all-single:mixed")
    with pytest.raises(ProtocolError, match="sysu-all-single"):
        resolve_presets("sysu-everything")
    names = [p.name for p in resolve_presets("sysu-indoor-multi:all")]
    assert names[0] == "sysu-indoor-multi:mix" and "sysu-indoor-multi" in names


def test_the_score_command_prints_the_agw_numbers(random_sysu):
    import json

    from click.testing import CliRunner

    from vireid_bench.cli.main import cli

    root, _, dump_path, feature_of = random_sysu
    args = ["score", str(dump_path), "-p", "sysu-all-single", "--query-modality", "infrared"]
    result = CliRunner().invoke(cli, [*args, "-f", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["results"]
    expected = agw_test(str(root), "all", feature_of)
    got = [row[m] for m in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    table = CliRunner().invoke(cli, ["score", str(dump_path), "-p", "all", "--trials", "1"])
    assert table.exit_code == 0
    assert "cross (all)" in table.stdout and "cross (indoor)" in table.stdout
