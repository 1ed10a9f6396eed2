"""LLCM: indexer, sampler, settings, equivalence with DEEN's evaluation code."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from dataset_trees import (
    LLCM_NIR,
    LLCM_VIS,
    dump_from_table,
    features_for,
    llcm_name,
    make_llcm,
    random_llcm_counts,
)

from vireid_bench.engine.scoring import evaluate, score
from vireid_bench.errors import DatasetError, ProtocolError
from vireid_bench.io.dump import INFRARED, VISIBLE, load_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.conventions import get_convention
from vireid_bench.protocol.datasets import LLCMConvention, index_llcm

# ----------------------------------------------------------------------------- indexer


def test_index_lists_test_images_from_the_camera_folders(tmp_path):
    counts = {(3, "nir", 2): 1, (3, "vis", 9): 2, (1, "vis", 1): 1, (1, "nir", 4): 1}
    root = make_llcm(tmp_path / "llcm", counts, test_ids=[3, 1])
    frame = index_llcm(root)
    assert frame["path"].tolist() == [
        f"test_vis/cam1/0001/{llcm_name(1, 1, 1, 'vis')}",
        f"test_nir/cam4/0001/{llcm_name(1, 4, 1, 'nir')}",
        f"test_vis/cam9/0003/{llcm_name(3, 9, 1, 'vis')}",
        f"test_vis/cam9/0003/{llcm_name(3, 9, 2, 'vis')}",
        f"test_nir/cam2/0003/{llcm_name(3, 2, 1, 'nir')}",
    ]
    assert frame["cam"].tolist() == [1, 4, 9, 9, 2]
    assert frame["modality"].tolist() == [VISIBLE, INFRARED, VISIBLE, VISIBLE, INFRARED]


def test_index_training_lists(tmp_path):
    train = {
        "vis": [("vis/0005/0005_c03_s1_f1_vis.jpg", 0), ("vis/0006/0006_c07_s1_f1_vis.jpg", 1)],
        "nir": [("nir/cam8/0005/x.jpg", 0)],
    }
    root = make_llcm(tmp_path / "llcm", {(1, "vis", 1): 1}, [1], train=train)
    frame = index_llcm(root, "train")
    assert frame["pid"].tolist() == [0, 1, 0]
    assert frame["cam"].tolist() == [3, 7, 8]
    assert frame["modality"].tolist() == [VISIBLE, VISIBLE, INFRARED]
    os.remove(root / "nir/cam8/0005/x.jpg")
    with pytest.raises(DatasetError, match="lists nir/cam8/0005/x.jpg, which does not exist"):
        index_llcm(root, "train")


def test_index_errors_and_warnings(tmp_path):
    root = make_llcm(tmp_path / "llcm", {(1, "vis", 1): 1, (1, "nir", 3): 1}, [1])
    with pytest.warns(UserWarning, match="test_nir/cam3: left out"):
        frame = index_llcm(root)
    assert frame["path"].str.startswith("test_vis/").all()
    (root / "idx" / "test_id.txt").write_text("1,2\n")
    with pytest.raises(DatasetError, match="lists id 0002"), pytest.warns(UserWarning):
        index_llcm(root)
    os.remove(root / "idx" / "test_id.txt")
    with pytest.raises(DatasetError, match="idx/test_id.txt: file missing"):
        index_llcm(root)
    with pytest.raises(DatasetError, match="unknown LLCM split"):
        index_llcm(root, "val")
    (root / "idx" / "train_vis.txt").write_text("only-a-path\n")
    with pytest.raises(DatasetError, match="train_vis.txt: line 1: expected 'path label'"):
        index_llcm(root, "train")


# ----------------------------------------------------------------------------- DEEN code
# Written from DEEN's data_manager.py (process_query_llcm, process_gallery_llcm), test.py
# and eval_metrics.py (eval_llcm), walking the tree itself.

DEEN_CAMERAS = {
    1: [f"test_vis/cam{c}" for c in range(1, 10)],
    2: [f"test_nir/cam{c}" for c in (1, 2, 4, 5, 6, 7, 8, 9)],
}


def deen_ids(root):
    with open(os.path.join(root, "idx/test_id.txt")) as handle:
        ids = handle.read().splitlines()
    return ["%04d" % int(y) for y in ids[0].split(",")]  # noqa: UP031 - as DEEN writes it


def deen_query(root, mode):
    files = []
    for pid in sorted(deen_ids(root)):
        for cam in DEEN_CAMERAS[mode]:
            folder = os.path.join(root, cam, pid)
            if os.path.isdir(folder):
                files.extend(sorted([folder + "/" + i for i in os.listdir(folder)]))
    return files


def deen_gallery(root, mode, trial):
    random.seed(trial)
    files = []
    for pid in sorted(deen_ids(root)):
        for cam in DEEN_CAMERAS[mode]:
            folder = os.path.join(root, cam, pid)
            if os.path.isdir(folder):
                files.append(random.choice(sorted([folder + "/" + i for i in os.listdir(folder)])))
    return files


def deen_labels(paths):
    cams = [int(p.split("cam")[1][0]) for p in paths]
    pids = [int(p.split("cam")[1][2:6]) for p in paths]
    return np.array(pids), np.array(cams)


def eval_llcm(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
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
        remove = (g_pids[order] == q_pid) & (g_camids[order] == q_camid)
        keep = np.invert(remove)
        new_cmc = pred_label[q_idx][keep]
        new_index = np.unique(new_cmc, return_index=True)[1]
        new_cmc = [new_cmc[index] for index in sorted(new_index)]
        new_cmc = (np.asarray(new_cmc) == q_pid).astype(np.int32).cumsum()
        assert new_cmc.size >= max_rank
        new_all_cmc.append(new_cmc[:max_rank])
        orig_cmc = matches[q_idx][keep]
        if not np.any(orig_cmc):
            continue
        cmc = orig_cmc.cumsum()
        pos_max_idx = np.max(np.where(orig_cmc == 1))
        all_inp.append(cmc[pos_max_idx] / (pos_max_idx + 1.0))
        num_valid_q += 1.0
        # AGW: [x / (i + 1.) for i, x in enumerate(tmp_cmc)] * orig_cmc, vectorised
        tmp_cmc = orig_cmc.cumsum() / np.arange(1.0, orig_cmc.size + 1.0) * orig_cmc
        all_ap.append(tmp_cmc.sum() / orig_cmc.sum())
    new_all_cmc = np.asarray(new_all_cmc, dtype=np.float64).sum(0) / num_valid_q
    return new_all_cmc, np.mean(all_ap), np.mean(all_inp)


def deen_test(root, test_mode, feature_of, trials=10):
    """DEEN test.py for LLCM: query from mode test_mode[1], gallery from test_mode[0]."""
    query = deen_query(root, test_mode[1])
    q_feat = np.stack([feature_of[p] for p in query])
    q_pid, q_cam = deen_labels(query)
    total = np.zeros(6)
    for trial in range(trials):
        gall = deen_gallery(root, test_mode[0], trial)
        g_feat = np.stack([feature_of[p] for p in gall])
        g_pid, g_cam = deen_labels(gall)
        if test_mode == [1, 2]:
            cmc, m_ap, m_inp = eval_llcm(-(q_feat @ g_feat.T), q_pid, g_pid, q_cam, g_cam)
        else:  # DEEN swaps the roles for VIS to IR
            cmc, m_ap, m_inp = eval_llcm(-(g_feat @ q_feat.T), g_pid, q_pid, g_cam, q_cam)
        total += [cmc[0], cmc[4], cmc[9], cmc[19], m_ap, m_inp]
    return 100.0 * total / trials


@pytest.fixture(scope="module")
def random_llcm(tmp_path_factory):
    rng = np.random.default_rng(21)
    tmp = tmp_path_factory.mktemp("llcm")
    ids = sorted(rng.choice(np.arange(1, 80), size=25, replace=False).tolist())
    root = make_llcm(tmp / "root", random_llcm_counts(rng, ids), test_ids=ids)
    frame = index_llcm(root)
    features = features_for(frame, rng)
    dump_path = dump_from_table(tmp / "llcm.h5", frame, features, "llcm")
    feature_of = {
        f"{root}/{path}": row.astype(np.float64) / np.linalg.norm(row)
        for path, row in zip(frame["path"], features, strict=True)
    }
    return root, frame, dump_path, feature_of


def _paths(frame, indices):
    return [frame["path"].iloc[i] for i in indices]


def test_sampler_matches_deen(random_llcm):
    root, frame, dump_path, _ = random_llcm
    dump = load_dump(dump_path)
    strip = len(str(root)) + 1
    convention = get_convention("llcm")
    (i2v,) = resolve_presets("llcm-i2v")
    (v2i,) = resolve_presets("llcm-v2i")
    assert convention.variants(i2v) == [""]
    for plan in convention.plans(dump, i2v, "", INFRARED):
        assert _paths(frame, plan.query_idx) == [p[strip:] for p in deen_query(root, 2)]
        assert _paths(frame, plan.pool_idx) == [
            p[strip:] for p in deen_gallery(root, 1, plan.trial)
        ]
    for plan in convention.plans(dump, v2i, "", VISIBLE):  # DEEN: sampled NIR vs every VIS
        assert _paths(frame, plan.query_idx) == [
            p[strip:] for p in deen_gallery(root, 2, plan.trial)
        ]
        assert _paths(frame, plan.pool_idx) == [p[strip:] for p in deen_query(root, 1)]
    symmetric = LLCMConvention(v2i="visible-queries")
    for plan in symmetric.plans(dump, v2i, "", VISIBLE, trials=2):
        assert _paths(frame, plan.query_idx) == [p[strip:] for p in deen_query(root, 1)]
        assert _paths(frame, plan.pool_idx) == [
            p[strip:] for p in deen_gallery(root, 2, plan.trial)
        ]


@pytest.mark.parametrize(("protocol", "test_mode"), [("llcm-i2v", [1, 2]), ("llcm-v2i", [2, 1])])
def test_scores_equal_deen_test_script(random_llcm, protocol, test_mode):
    root, _, dump_path, feature_of = random_llcm
    (row,) = score(dump_path, protocol).to_dict("records")
    assert row["cmc"] == "identity" and row["trials"] == 10
    expected = deen_test(str(root), test_mode, feature_of)
    got = [row[m] for m in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_visible_queries_rule_ranks_every_visible_image(random_llcm):
    root, _, dump_path, feature_of = random_llcm
    dump = load_dump(dump_path)
    evaluation = evaluate(
        dump, resolve_presets("llcm-v2i"), convention=LLCMConvention("visible-queries")
    )
    (row,) = evaluation.rows
    # the DEEN evaluation of a visible query set against a sampled NIR gallery, unswapped
    query = deen_query(str(root), 1)
    q_feat = np.stack([feature_of[p] for p in query])
    q_pid, q_cam = deen_labels(query)
    total = np.zeros(6)
    for trial in range(10):
        gall = deen_gallery(str(root), 2, trial)
        g_feat = np.stack([feature_of[p] for p in gall])
        g_pid, g_cam = deen_labels(gall)
        cmc, m_ap, m_inp = eval_llcm(-(q_feat @ g_feat.T), q_pid, g_pid, q_cam, g_cam)
        total += [cmc[0], cmc[4], cmc[9], cmc[19], m_ap, m_inp]
    got = [row[m] for m in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")]
    np.testing.assert_allclose(got, 100.0 * total / 10, rtol=0, atol=1e-6)
    assert row["queries"] == len(query)


def test_protocol_all_marks_camera_settings_not_applicable(random_llcm):
    _, _, dump_path, _ = random_llcm
    with pytest.warns(UserWarning, match="not applicable"):
        frame = score(dump_path, "all", trials=2)
    status = dict(
        zip(
            zip(frame["protocol"], frame["query_modality"], strict=True),
            frame["status"],
            strict=True,
        )
    )
    for setting in ("mix-cam", "mix-cam-id"):
        for modality in ("infrared", "visible"):
            assert status[(setting, modality)] == (
                "not applicable: not reported for LLCM (the paper reports it for SYSU-MM01 only)"
            )
    for setting in ("mix", "mix-id", "mix-p", "cross", "uni"):
        assert status[(setting, "infrared")] == "ok" == status[(setting, "visible")]
    dump = load_dump(dump_path)
    rows = evaluate(
        dump, resolve_presets("mix-cam"), trials=1, convention=LLCMConvention(camera_settings=True)
    ).rows
    assert [r["status"] for r in rows] == ["ok", "ok"]
    with pytest.raises(Exception, match="not applicable"):
        score(dump_path, "mix-cam", strict=True)


def test_mixed_pool_and_cross_rule(random_llcm):
    root, frame, dump_path, _ = random_llcm
    dump = load_dump(dump_path)
    convention = get_convention("llcm")
    (mix,) = resolve_presets("llcm-v2i:mix")
    strip = len(str(root)) + 1
    for plan in convention.plans(dump, mix, "", VISIBLE, trials=2):
        assert _paths(frame, plan.query_idx) == [p[strip:] for p in deen_query(root, 1)]
        random.seed(plan.trial)
        expected = []
        for pid in sorted(deen_ids(root)):
            for cam in DEEN_CAMERAS[1] + DEEN_CAMERAS[2]:
                folder = os.path.join(root, cam, pid)
                if os.path.isdir(folder):
                    expected.append(random.choice(sorted(os.listdir(folder))))
        assert [p.rsplit("/", 1)[1] for p in _paths(frame, plan.pool_idx)] == expected
    (cross,) = resolve_presets("cross")
    clauses = convention.adapt_preset(cross).clauses
    assert [(c.camera, c.identity, c.modality) for c in clauses] == [
        ("any", "any", "same"),
        ("same", "same", "any"),
    ]
    with pytest.raises(ProtocolError, match="unknown LLCM V->I rule"):
        LLCMConvention(v2i="both")


def test_camera_lists_are_deens():
    from vireid_bench.protocol.datasets import llcm

    for mode, cameras in ((1, llcm.VISIBLE_CAMERAS), (2, llcm.INFRARED_CAMERAS)):
        assert [int(c.rsplit("cam", 1)[1]) for c in DEEN_CAMERAS[mode]] == list(cameras)
    assert (LLCM_VIS, LLCM_NIR) == (llcm.VISIBLE_CAMERAS, llcm.INFRARED_CAMERAS)
