"""RegDB: indexer, trial splits, equivalence with AGW's eval_regdb."""

from __future__ import annotations

import os

import numpy as np
import pytest
from dataset_trees import make_regdb, regdb_dump

from vireid_bench.engine.scoring import score
from vireid_bench.errors import DatasetError, DumpError
from vireid_bench.io.dump import INFRARED, VISIBLE, FeatureSplit, load_dump, write_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.conventions import get_convention
from vireid_bench.protocol.datasets import index_regdb


def _splits(rng, trials=range(1, 11), n_ids=22, per_id=2):
    """Ten splits of random test ids, list lines in shuffled order (file order matters)."""
    splits = {}
    for trial in trials:
        ids = rng.choice(np.arange(1, 60), size=n_ids, replace=False)
        lists = {}
        for word, folder, letter in (("visible", "Visible", "v"), ("thermal", "Thermal", "t")):
            entries = [
                (f"{folder}/{pid}/female_{letter}_{pid:05d}_{k}.bmp", int(pid))
                for pid in ids
                for k in range(per_id)
            ]
            order = rng.permutation(len(entries))
            lists[word] = [entries[i] for i in order]
        splits[trial] = lists
    return splits


def test_index_lists_every_trial_in_list_order(tmp_path):
    rng = np.random.default_rng(0)
    splits = _splits(rng, trials=(1, 2), n_ids=3, per_id=1)
    root = make_regdb(tmp_path / "regdb", splits)
    frame = index_regdb(root, trials=(1, 2))
    assert list(frame.columns) == ["path", "pid", "cam", "modality", "trial"]
    first = frame[frame["trial"] == 0]
    assert first["path"].tolist() == [p for p, _ in splits[1]["visible"] + splits[1]["thermal"]]
    assert first["pid"].tolist() == [
        label for _, label in splits[1]["visible"] + splits[1]["thermal"]
    ]
    assert first["modality"].tolist() == [VISIBLE] * 3 + [INFRARED] * 3
    assert first["cam"].tolist() == [1] * 3 + [2] * 3
    assert frame["trial"].unique().tolist() == [0, 1]
    train = make_regdb(root, splits, prefix="train")
    assert len(index_regdb(train, "train", trials=(1, 2))) == 12


def test_index_errors_name_the_file(tmp_path):
    rng = np.random.default_rng(1)
    root = make_regdb(tmp_path / "regdb", _splits(rng, trials=(1,), n_ids=2, per_id=1))
    with pytest.raises(DatasetError, match="idx/test_visible_2.txt: file missing"):
        index_regdb(root)
    (root / "idx" / "test_thermal_1.txt").write_text("Thermal/1/a.bmp one\n")
    with pytest.raises(DatasetError, match="test_thermal_1.txt: line 1: label 'one'"):
        index_regdb(root, trials=(1,))
    (root / "idx" / "test_thermal_1.txt").write_text("Thermal/1/missing.bmp 1\n")
    with pytest.raises(DatasetError, match="lists Thermal/1/missing.bmp, which does not exist"):
        index_regdb(root, trials=(1,))
    (root / "idx" / "test_thermal_1.txt").write_text("\n")
    with pytest.raises(DatasetError, match="no image listed"):
        index_regdb(root, trials=(1,))
    with pytest.raises(DatasetError, match="unknown RegDB split"):
        index_regdb(root, "val")


def eval_regdb(distmat, q_pids, g_pids, max_rank=20):
    """AGW's eval_regdb (its camera ids are 1 for queries and 2 for the gallery)."""
    num_q, num_g = distmat.shape
    if num_g < max_rank:
        max_rank = num_g
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    num_valid_q = 0.0
    q_camids = np.ones(num_q).astype(np.int32)
    g_camids = 2 * np.ones(num_g).astype(np.int32)
    for q_idx in range(num_q):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][np.invert(remove)]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        pos_max_idx = np.max(np.where(raw_cmc == 1))
        all_inp.append(cmc[pos_max_idx] / (pos_max_idx + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_valid_q += 1.0
        # AGW: [x / (i + 1.) for i, x in enumerate(tmp_cmc)] * raw_cmc, vectorised
        tmp_cmc = raw_cmc.cumsum() / np.arange(1.0, raw_cmc.size + 1.0) * raw_cmc
        all_ap.append(tmp_cmc.sum() / raw_cmc.sum())
    all_cmc = np.asarray(all_cmc, dtype=np.float64).sum(0) / num_valid_q
    return all_cmc, np.mean(all_ap), np.mean(all_inp)


@pytest.fixture(scope="module")
def random_regdb(tmp_path_factory):
    rng = np.random.default_rng(31)
    tmp = tmp_path_factory.mktemp("regdb")
    root = make_regdb(tmp / "root", _splits(rng))
    frame = index_regdb(root)
    features = {
        trial: rng.standard_normal(((frame["trial"] == trial).sum(), 8)).astype(np.float32)
        for trial in range(10)
    }
    return frame, regdb_dump(tmp / "regdb.h5", frame, features), features


@pytest.mark.parametrize("protocol", ["regdb-v2t", "regdb-t2v"])
def test_scores_equal_the_agw_test_script(random_regdb, protocol):
    frame, dump_path, features = random_regdb
    (row,) = score(dump_path, protocol).to_dict("records")
    assert row["cmc"] == "image" and row["trials"] == 10
    total = np.zeros(6)
    for trial in range(10):
        part = frame[frame["trial"] == trial]
        feat = features[trial].astype(np.float64)
        feat /= np.linalg.norm(feat, axis=1, keepdims=True)
        visible = (part["modality"] == VISIBLE).to_numpy()
        q_feat, q_label = feat[visible], part["pid"].to_numpy()[visible]  # AGW: visible 'query'
        g_feat, g_label = feat[~visible], part["pid"].to_numpy()[~visible]
        if protocol == "regdb-t2v":  # AGW --tvsearch: the roles swap
            cmc, m_ap, m_inp = eval_regdb(-(g_feat @ q_feat.T), g_label, q_label)
        else:
            cmc, m_ap, m_inp = eval_regdb(-(q_feat @ g_feat.T), q_label, g_label)
        total += [cmc[0], cmc[4], cmc[9], cmc[19], m_ap, m_inp]
    got = [row[m] for m in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")]
    np.testing.assert_allclose(got, 100.0 * total / 10, rtol=0, atol=1e-6)


def test_protocol_all_layout(random_regdb):
    _, dump_path, _ = random_regdb
    with pytest.warns(UserWarning, match="one camera per modality"):
        frame = score(dump_path, "all", trials=3)
    assert (frame["protocol"] + "/" + frame["query_modality"]).tolist() == [
        f"{setting}/{modality}"
        for setting in ("mix", "mix-cam", "mix-cam-id", "mix-id", "mix-p", "cross", "uni")
        for modality in ("infrared", "visible")
    ]
    assert frame["variant"].eq("").all()
    status = dict(
        zip(frame["protocol"] + "/" + frame["query_modality"], frame["status"], strict=True)
    )
    assert status["mix-cam/infrared"] == "not applicable: one camera per modality"
    assert status["mix-cam-id/visible"] == "not applicable: one camera per modality"
    assert status["uni/visible"] == (
        "not applicable: one camera per modality (no same-modality match from another camera)"
    )
    for setting in ("mix", "mix-id", "mix-p", "cross"):
        assert status[f"{setting}/infrared"] == "ok" == status[f"{setting}/visible"]
    assert frame.loc[frame["status"] == "ok", "trials"].eq(3).all()


def test_plans_use_each_trial_split(random_regdb):
    frame, dump_path, _ = random_regdb
    dump = load_dump(dump_path)
    convention = get_convention("regdb")
    (mix,) = resolve_presets("regdb-t2v:mix")
    plans = convention.plans(dump, mix, "", INFRARED)
    assert [p.split for p in plans] == list(range(10))
    for plan in plans:
        part = frame[frame["trial"] == plan.trial]
        assert plan.pool_idx.tolist() == list(range(len(part)))
        assert plan.query_idx.tolist() == np.flatnonzero(part["modality"] == INFRARED).tolist()


def test_shared_camera_ids_do_not_empty_the_cross_gallery(tmp_path):
    rng = np.random.default_rng(4)
    pid = np.repeat(np.arange(25), 2)
    dump = write_dump(
        tmp_path / "r.h5",
        trials=[
            FeatureSplit(
                features={"f": rng.standard_normal((50, 4)).astype(np.float32)},
                pid=pid,
                cam=np.zeros(50, dtype=np.int64),
                modality=np.tile([0, 1], 25),
            )
        ],
        dataset="regdb",
    )
    (row,) = score(dump, "regdb-t2v").to_dict("records")
    assert row["status"] == "ok" and row["queries_without_match"] == 0
    one_modality = write_dump(
        tmp_path / "s.h5",
        features=rng.standard_normal((4, 4)).astype(np.float32),
        pid=np.arange(4),
        modality=np.zeros(4, dtype=np.int64),
        cam=np.ones(4, dtype=np.int64),
        dataset="regdb",
    )
    with pytest.raises(DumpError, match="modality: no thermal image in the split"):
        score(one_modality, "regdb-v2t")
    assert os.path.exists(dump)
