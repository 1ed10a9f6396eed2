"""Canonical test sets (protocol/canonical.py): the packaged manifests are consistent, a dump
matching a manifest is "canonical test set: yes", and each kind of difference is named."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from click.testing import CliRunner
from dataset_trees import (
    dump_from_table,
    features_for,
    make_llcm,
    make_regdb,
    make_sysu,
    random_llcm_counts,
    regdb_dump,
)

from vireid_bench.cli import cli
from vireid_bench.engine.scoring import evaluate
from vireid_bench.errors import DatasetError
from vireid_bench.io.dump import load_dump, write_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.canonical import (
    MANIFEST_DATASETS,
    Manifest,
    check_manifest,
    compare_with_manifest,
    load_manifest,
    packaged_manifest,
)
from vireid_bench.protocol.datasets import index_llcm, index_regdb, index_sysu

# ----------------------------------------------------------------------------- packaged


@pytest.mark.parametrize("dataset", MANIFEST_DATASETS)
def test_packaged_manifests_are_consistent_and_cited(dataset):
    manifest = packaged_manifest(dataset)
    assert manifest.dataset == dataset
    assert check_manifest(manifest) == []
    assert set(dict(manifest.recorded())) == set(manifest.sources)
    assert manifest.unverified  # what is not established is said so


def test_packaged_numbers_are_the_issues():
    sysu = dict(packaged_manifest("sysu-mm01").recorded())
    assert sysu["split.ids"] == 96
    assert sysu["split.modalities.infrared.images"] == 3803
    assert sysu["split.galleries.0.images_per_trial"] == 301
    assert sysu["split.galleries.1.images_per_trial"] == 112
    assert sysu["split.modalities.visible.cameras"] == ["1", "2", "4", "5"]
    regdb = dict(packaged_manifest("regdb").recorded())
    assert regdb["splits"] == 10 and regdb["split.ids"] == 206
    assert regdb["split.modalities.visible.images"] == 2060
    assert regdb["split.modalities.infrared.images"] == 2060
    llcm = dict(packaged_manifest("llcm").recorded())
    assert llcm["split.modalities.infrared.cameras"] == ["1", "2", "4", "5", "6", "7", "8", "9"]
    # CVPR 2023 paper, Sec. 4.2 (its 13,909 total contradicts its own parts: left absent)
    assert llcm["split.ids"] == 351
    assert llcm["split.modalities.visible.images"] == 8680
    assert llcm["split.modalities.infrared.images"] == 7166
    assert "split.images" not in llcm and "split.id_list" not in llcm
    assert packaged_manifest("generic") is None


# ----------------------------------------------------------------------------- consistency

BASE = {
    "schema": 1,
    "dataset": "sysu-mm01",
    "splits": 1,
    "split": {
        "ids": 3,
        "id_list": [2, 5, 9],
        "images": 10,
        "modalities": {
            "visible": {
                "images": 6,
                "ids": 3,
                "cameras": {"1": {"images": 4, "ids": 3}, "2": {"images": 2, "ids": 2}},
            },
            "infrared": {"images": 4, "cameras": {"3": {"images": 4}}},
        },
        "galleries": [
            {"name": "g", "modality": "visible", "cameras": [1, 2], "images_per_trial": 5}
        ],
    },
    "unverified": [],
}


def _with_sources(data):
    data = copy.deepcopy(data)
    manifest_like = Manifest(data["dataset"], data["splits"], data["split"], {}, (), "x")
    data["sources"] = {path: "by hand" for path, _ in manifest_like.recorded()}
    return data


def _write(tmp_path, data, name="m.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_a_consistent_manifest_loads(tmp_path):
    manifest = load_manifest(_write(tmp_path, _with_sources(BASE)))
    assert check_manifest(manifest) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["split"]["modalities"]["visible"]["cameras"]["1"].update(images=5),
            "cameras hold 7 images, images says 6",
        ),
        (lambda d: d["split"].update(images=11), "modalities hold 10 images, split.images says 11"),
        (lambda d: d["split"].update(id_list=[2, 5]), "2 ids, split.ids says 3"),
        (lambda d: d["split"].update(id_list=[5, 2, 9]), "not strictly ascending"),
        (
            lambda d: d["split"]["galleries"][0].update(images_per_trial=4),
            "its cameras hold 5 (identity, camera) pairs",
        ),
        (lambda d: d["split"]["galleries"][0].update(cameras=[1, 4]), "not all cameras of visible"),
        (lambda d: d["split"]["modalities"]["visible"].update(ids=4), "more than split.ids"),
        (lambda d: d["sources"].pop("split.images"), "split.images: recorded without a source"),
        (lambda d: d["sources"].update({"split.nothing": "x"}), "names no recorded field"),
        (lambda d: d["split"].update(image=3), "split.image: unknown field"),
        (lambda d: d.update(schema=2), "schema: expected 1"),
    ],
)
def test_inconsistent_manifests_are_refused(tmp_path, change, message):
    data = _with_sources(BASE)
    change(data)
    with pytest.raises(DatasetError, match="m.json: ") as caught:
        load_manifest(_write(tmp_path, data))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_unreadable_manifest(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="bad.json: not a JSON manifest"):
        load_manifest(bad)
    with pytest.raises(DatasetError, match="gone.json: file missing"):
        load_manifest(tmp_path / "gone.json")


# ----------------------------------------------------------------------------- comparison

# ids 2, 5, 9: (pid, cam) -> images; visible cameras 1, 2, 4, 5; infrared 3, 6
COUNTS = {
    (2, 1): 2,
    (2, 2): 1,
    (2, 3): 2,
    (2, 4): 1,
    (5, 1): 1,
    (5, 3): 1,
    (5, 6): 3,
    (9, 1): 1,
    (9, 2): 2,
    (9, 5): 1,
    (9, 6): 1,
}
# by hand: visible 2+1+1+1+1+2+1 = 9 images (cam1 4/3 ids, cam2 3/2, cam4 1/1, cam5 1/1);
# infrared 2+1+3+1 = 7 (cam3 3/2 ids, cam6 4/2); all-search pairs 3+2+1+1 = 7, indoor 5
TREE_MANIFEST = {
    "schema": 1,
    "dataset": "sysu-mm01",
    "splits": 1,
    "split": {
        "ids": 3,
        "id_list": [2, 5, 9],
        "images": 16,
        "modalities": {
            "visible": {
                "images": 9,
                "ids": 3,
                "cameras": {
                    "1": {"images": 4, "ids": 3},
                    "2": {"images": 3, "ids": 2},
                    "4": {"images": 1, "ids": 1},
                    "5": {"images": 1, "ids": 1},
                },
            },
            "infrared": {
                "images": 7,
                "ids": 3,
                "cameras": {"3": {"images": 3, "ids": 2}, "6": {"images": 4, "ids": 2}},
            },
        },
        "galleries": [
            {"name": "all", "modality": "visible", "cameras": [1, 2, 4, 5], "images_per_trial": 7},
            {"name": "indoor", "modality": "visible", "cameras": [1, 2], "images_per_trial": 5},
        ],
    },
    "unverified": [],
}


@pytest.fixture
def tree_manifest(tmp_path):
    return load_manifest(_write(tmp_path, _with_sources(TREE_MANIFEST), "tree.json"))


def _sysu_dump(tmp_path, counts, ids, name="s.h5"):
    rng = np.random.default_rng(0)
    frame = index_sysu(make_sysu(tmp_path / name.replace(".h5", ""), counts, ids))
    return load_dump(dump_from_table(tmp_path / name, frame, features_for(frame, rng), "sysu-mm01"))


def test_tree_dump_matching_the_manifest_is_canonical(tmp_path, tree_manifest):
    report = compare_with_manifest(_sysu_dump(tmp_path, COUNTS, [2, 5, 9]), tree_manifest)
    assert report.canonical and report.differences == ()
    assert report.summary().startswith("canonical test set: yes (")


def _differences(tmp_path, manifest, counts, ids, **kwargs):
    report = compare_with_manifest(_sysu_dump(tmp_path, counts, ids, **kwargs), manifest)
    assert not report.canonical
    assert report.summary() == "canonical test set: no: " + "; ".join(report.differences)
    return list(report.differences)


def test_missing_id(tmp_path, tree_manifest):
    counts = {k: v for k, v in COUNTS.items() if k[0] != 5}
    assert _differences(tmp_path, tree_manifest, counts, [2, 9]) == [
        "1 missing id(s): 5",
        "split: 11 images, canonical 16 (5 missing)",
        "visible: 8 images, canonical 9 (1 missing)",
        "visible: 2 ids, canonical 3 (1 missing)",
        "visible camera 1: 3 images, canonical 4 (1 missing)",
        "visible camera 1: 2 ids, canonical 3 (1 missing)",
        "infrared: 3 images, canonical 7 (4 missing)",
        "infrared: 2 ids, canonical 3 (1 missing)",
        "infrared camera 3: 2 images, canonical 3 (1 missing)",
        "infrared camera 3: 1 ids, canonical 2 (1 missing)",
        "infrared camera 6: 1 images, canonical 4 (3 missing)",
        "infrared camera 6: 1 ids, canonical 2 (1 missing)",
        "all gallery: 6 images per trial, canonical 7 (1 missing)",
        "indoor gallery: 4 images per trial, canonical 5 (1 missing)",
    ]


def test_extra_id_and_extra_image(tmp_path, tree_manifest):
    counts = dict(COUNTS)
    counts[(9, 6)] = 2  # one extra infrared image of id 9 in camera 6
    assert _differences(tmp_path, tree_manifest, counts, [2, 5, 9]) == [
        "split: 17 images, canonical 16 (1 extra)",
        "infrared: 8 images, canonical 7 (1 extra)",
        "infrared camera 6: 5 images, canonical 4 (1 extra)",
    ]
    counts = {**COUNTS, (11, 4): 1}
    assert _differences(tmp_path, tree_manifest, counts, [2, 5, 9, 11], name="x.h5") == [
        "1 extra id(s): 11",
        "split: 17 images, canonical 16 (1 extra)",
        "visible: 10 images, canonical 9 (1 extra)",
        "visible: 4 ids, canonical 3 (1 extra)",
        "visible camera 4: 2 images, canonical 1 (1 extra)",
        "visible camera 4: 2 ids, canonical 1 (1 extra)",
        "all gallery: 8 images per trial, canonical 7 (1 extra)",
    ]


def test_wrong_camera_counts(tmp_path, tree_manifest):
    def relabel(frame):  # camera 6 written as camera 7 (a wrong camera map)
        frame = frame.copy()
        frame.loc[frame.cam == 6, "cam"] = 7
        return frame

    rng = np.random.default_rng(0)
    frame = relabel(index_sysu(make_sysu(tmp_path / "w", COUNTS, [2, 5, 9])))
    path = write_dump(
        tmp_path / "w.h5",
        features=features_for(frame, rng),
        pid=frame.pid.to_numpy(),
        cam=frame.cam.to_numpy(),
        modality=frame.modality.to_numpy(),
        dataset="sysu-mm01",
    )
    report = compare_with_manifest(load_dump(path), tree_manifest)
    assert list(report.differences) == [
        "infrared camera 7: 4 images, not a camera of the canonical test set (cameras 3, 6)",
        "infrared camera 6: 0 images, canonical 4 (4 missing)",
        "infrared camera 6: 0 ids, canonical 2 (2 missing)",
    ]


def test_count_only_ids_and_regdb_splits(tmp_path):
    sysu = _sysu_dump(tmp_path, COUNTS, [2, 5, 9])
    differences = compare_with_manifest(sysu).differences  # the packaged manifest
    assert differences == (
        "ids: 3 ids, canonical 96 (93 missing)",
        "infrared: 7 images, canonical 3803 (3796 missing)",
        "all-search single-shot gallery: 7 images per trial, canonical 301 (294 missing)",
        "indoor-search single-shot gallery: 5 images per trial, canonical 112 (107 missing)",
    )
    splits = {
        t: {
            "visible": [(f"Visible/{p}/v{p}.bmp", p) for p in (1, 2)],
            "thermal": [(f"Thermal/{p}/t{p}.bmp", p) for p in (1, 2)],
        }
        for t in (1, 2)
    }
    frame = index_regdb(make_regdb(tmp_path / "regdb", splits), trials=(1, 2))
    rng = np.random.default_rng(1)
    features = {t: features_for(frame[frame.trial == t], rng) for t in (0, 1)}
    report = compare_with_manifest(load_dump(regdb_dump(tmp_path / "r.h5", frame, features)))
    assert report.differences[0] == "2 split(s), canonical 10 (one per trial)"
    assert "trials/1: visible: 2 images, canonical 2060 (2058 missing)" in report.differences


# ----------------------------------------------------------------------------- CLI


def _canonical_sysu(tmp_path):
    """Labels and paths with exactly the packaged SYSU-MM01 counts (96 ids, 3,803 infrared
    images, 301 / 112 single-shot gallery images)."""
    rows = []
    for k, pid in enumerate(range(1, 97)):
        cams = [4] + ([1, 2] if k < 56 else []) + ([5] if k < 93 else [])
        rows += [(pid, cam, 1) for cam in sorted(cams)]
        rows += [(pid, 3, n) for n in range(1, 21)]
        rows += [(pid, 6, n) for n in range(1, 20 + (k < 59))]
    pid, cam, number = (np.array(c) for c in zip(*rows, strict=True))
    path = write_dump(
        tmp_path / "canonical.h5",
        features=np.random.default_rng(0).normal(size=(len(rows), 4)),
        pid=pid,
        cam=cam,
        modality=np.isin(cam, [3, 6]).astype(int),
        paths=[f"cam{c}/{p:04d}/{n:04d}.jpg" for p, c, n in rows],
        dataset="sysu-mm01",
    )
    return path


def test_cli_canonical_dump(tmp_path):
    runner = CliRunner()
    path = _canonical_sysu(tmp_path)
    inspected = runner.invoke(cli, ["inspect", str(path)])
    assert inspected.exit_code == 0
    assert "  - canonical test set: yes (7 recorded count(s)" in inspected.stdout
    scored = runner.invoke(cli, ["score", str(path), "-p", "sysu-all-single", "--trials", "1"])
    assert scored.exit_code == 0 and "warning" not in scored.stderr


def test_cli_non_canonical_dump_warns_and_changes_no_number(tmp_path):
    runner = CliRunner()
    rng = np.random.default_rng(3)
    ids = [1, 4]
    frame = index_llcm(make_llcm(tmp_path / "llcm", random_llcm_counts(rng, ids), ids))
    llcm = dump_from_table(tmp_path / "l.h5", frame, features_for(frame, rng), "llcm")
    inspected = runner.invoke(cli, ["inspect", str(llcm)])
    expected = "  - canonical test set: no: ids: 2 ids, canonical 351 (349 missing); "
    assert expected in inspected.stdout

    sysu = dump_from_table(
        tmp_path / "s.h5",
        index_sysu(make_sysu(tmp_path / "sysu", COUNTS, [2, 5, 9])),
        features_for(index_sysu(tmp_path / "sysu"), rng),
        "sysu-mm01",
    )
    inspected = runner.invoke(cli, ["inspect", str(sysu)])
    assert "  - canonical test set: no: ids: 3 ids, canonical 96 (93 missing); " in inspected.stdout
    scored = runner.invoke(cli, ["score", str(sysu), "-p", "sysu-all-single", "-f", "json"])
    assert scored.exit_code == 0
    warning = [line for line in scored.stderr.splitlines() if "canonical" in line]
    assert warning == [
        "warning: s.h5: not the canonical sysu-mm01 test set (numbers unchanged): "
        "ids: 3 ids, canonical 96 (93 missing); infrared: 7 images, canonical 3803 (3796 "
        "missing); all-search single-shot gallery: 7 images per trial, canonical 301 (294 "
        "missing); indoor-search single-shot gallery: 5 images per trial, canonical 112 (107 "
        "missing)"
    ]
    rows = json.loads(scored.stdout)["results"]
    expected = evaluate(load_dump(sysu), resolve_presets("sysu-all-single")).rows
    assert [r["mAP"] for r in rows] == [r["mAP"] for r in expected]
