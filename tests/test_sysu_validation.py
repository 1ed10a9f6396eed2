"""SYSU-MM01 validation protocols (``sysu-val-all``, ``sysu-val-indoor``): the validation
identities of ``exp/val_id.txt``, scored with the AGW sampler, on a small tree made here.

Hand-made case (val ids 6 and 7; 3-d features, cosine):

* id 6: cam1 ``[1, 0, 0]``, cam4 ``[0, 0, 1]``, infrared cam3 query ``[0, 0.1, 1]``;
* id 7: cam1 ``[0, 1, 0]``, infrared cam3 query ``[0, 1, 0.1]``.

All-search (gallery cameras 1, 2, 4, 5; one image per id and camera, so every trial is the
same): query 6 ranks cam4/6 (match), cam1/7, cam1/6 (match): AP (1 + 2/3) / 2 = 5/6;
query 7 ranks cam1/7 first: AP 1. mAP 11/12 = 91.67, R1 100.
Indoor (cameras 1, 2): query 6 ranks cam1/7, then cam1/6: AP 1/2; query 7: AP 1.
mAP 75, R1 50.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from dataset_trees import dump_from_table, make_sysu

from vireid_bench.cli.main import cli
from vireid_bench.engine.scoring import evaluate
from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import load_dump, write_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.canonical import compare_with_manifest
from vireid_bench.protocol.datasets import index_sysu
from vireid_bench.protocol.datasets.sysu import is_validation, parse_variant

FEATURES = {
    "cam1/0006/0001.jpg": [1, 0, 0],
    "cam3/0006/0001.jpg": [0, 0.1, 1],
    "cam4/0006/0001.jpg": [0, 0, 1],
    "cam1/0007/0001.jpg": [0, 1, 0],
    "cam3/0007/0001.jpg": [0, 1, 0.1],
}


@pytest.fixture
def val_dump(tmp_path):
    root = make_sysu(
        tmp_path / "sysu",
        {(1, 1): 1, (1, 3): 1, (6, 4): 1},
        test_ids=[1],
        train_ids=(5,),
        val_ids=(6, 7),
    )
    frame = index_sysu(root, "val")
    assert sorted(frame["path"]) == sorted(FEATURES)
    features = np.array([FEATURES[p] for p in frame["path"]], dtype=np.float32)
    return dump_from_table(tmp_path / "val.h5", frame, features, "sysu-mm01")


def _rows(path, protocol, **options):
    rows = evaluate(load_dump(path), resolve_presets(protocol), **options).rows
    return {(r["protocol"], r["variant"], r["query_modality"]): r for r in rows}


def test_validation_protocols_score_the_hand_made_case(val_dump):
    rows = _rows(val_dump, "sysu-val-all,sysu-val-indoor", query_modalities=["infrared"])
    all_search = rows[("sysu-val-all", "val-all", "infrared")]
    indoor = rows[("sysu-val-indoor", "val-indoor", "infrared")]
    assert all_search["status"] == indoor["status"] == "ok"
    assert all_search["trials"] == indoor["trials"] == 10
    assert all_search["mAP"] == pytest.approx(100 * 11 / 12)
    assert all_search["rank1"] == pytest.approx(100.0)
    assert indoor["mAP"] == pytest.approx(75.0)
    assert indoor["rank1"] == pytest.approx(50.0)


def test_validation_uses_the_test_protocols_sampler_and_rule(val_dump):
    """Same galleries and rule as sysu-all-single (the AGW sampler), only the label differs;
    a mixed setting combines with it as NAME:SETTING."""
    for val, test in (
        ("sysu-val-all", "sysu-all-single"),
        ("sysu-val-indoor", "sysu-indoor-single"),
        ("sysu-val-all:mix", "sysu-all-single:mix"),
        ("sysu-val-all:mix-id", "sysu-all-single:mix-id"),
    ):
        got = evaluate(load_dump(val_dump), resolve_presets(val)).rows
        want = evaluate(load_dump(val_dump), resolve_presets(test)).rows
        assert len(got) == len(want) == 2
        for a, b in zip(got, want, strict=True):
            assert a["variant"] == "val-" + b["variant"]
            for metric in ("rank1", "rank5", "mAP", "mINP", "queries", "trials"):
                assert a[metric] == b[metric], (val, metric)


def test_variant_labels_read_back():
    assert parse_variant("val-all") == ("all", 1, "agw")
    assert parse_variant("val-indoor") == ("indoor", 1, "agw")
    assert is_validation("val-indoor") and not is_validation("all")
    with pytest.raises(ProtocolError):
        parse_variant("val-outdoor")


def _canonical_test_dump(path):
    """Labels shaped like the canonical SYSU-MM01 test set (what its manifest records):
    96 ids, 3,803 infrared images, 301 all-search and 112 indoor single-shot gallery
    images per trial. Features are random; no image files are needed to score."""
    rows = []
    for pid in range(1, 97):
        cams = [1, 3, 4] + [2] * (pid <= 16) + [5] * (pid <= 93)
        for cam in sorted(cams):
            rows.append((cam, pid, 1))
        rows += [(6, pid, n) for n in range(1, 39 + (pid <= 59))]
    # 96 (cam3) + 96 * 38 + 59 (cam6) = 3803 infrared; 96 + 16 + 96 + 93 = 301 visible pairs
    cam = np.array([r[0] for r in rows])
    return write_dump(
        path,
        features=np.random.default_rng(0).standard_normal((len(rows), 4)).astype(np.float32),
        pid=[r[1] for r in rows],
        cam=cam,
        modality=np.isin(cam, (3, 6)).astype(np.uint8),
        paths=[f"cam{c}/{p:04d}/{n:04d}.jpg" for c, p, n in rows],
        dataset="sysu-mm01",
        model="test",
    )


def test_a_dump_of_the_test_set_is_refused(tmp_path):
    path = _canonical_test_dump(tmp_path / "test.h5")
    report = compare_with_manifest(load_dump(path))
    assert report.canonical, report.differences
    with pytest.raises(ProtocolError, match="is the canonical SYSU-MM01 test set"):
        evaluate(load_dump(path), resolve_presets("sysu-val-all"), trials=1)
    result = CliRunner().invoke(
        cli, ["score", str(path), "--protocol", "sysu-val-indoor", "--trials", "1"]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "sysu-all-single" in lines[0]
    # the test protocol still scores it
    rows = evaluate(load_dump(path), resolve_presets("sysu-all-single"), trials=1).rows
    assert rows[0]["status"] == "ok"


def test_cli_scores_a_validation_dump_and_lists_the_protocols(val_dump):
    runner = CliRunner()
    listing = runner.invoke(cli, ["protocols"])
    assert listing.exit_code == 0
    assert "sysu-val-all" in listing.output and "sysu-val-indoor" in listing.output
    result = runner.invoke(
        cli,
        [
            "score",
            str(val_dump),
            "--protocol",
            "sysu-val-all",
            "--query-modality",
            "infrared",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["results"]
    assert (row["protocol"], row["variant"]) == ("sysu-val-all", "val-all")
    assert row["mAP"] == pytest.approx(100 * 11 / 12)


def test_other_datasets_have_no_validation_protocol():
    with pytest.raises(ProtocolError, match="unknown protocol"):
        resolve_presets("regdb-val")
    with pytest.raises(ProtocolError, match="unknown protocol"):
        resolve_presets("llcm-val")
