"""RegDB as SAAI / MPANet evaluate it (regdb-saai) and scoring one split (--regdb-split)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from dataset_trees import make_regdb, regdb_dump
from test_reconcile import regdb  # noqa: F401 - the fixture: a three-split RegDB dump

from vireid_bench.cli.main import cli
from vireid_bench.engine.scoring import evaluate
from vireid_bench.errors import DumpError, ProtocolError
from vireid_bench.io.dump import load_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.datasets import RegDBConvention, index_regdb


def saai_reference(split, query_modality):
    """Sorted paths, cosine, CMC over identities (first image of each), AP over images."""
    paths = [str(p) for p in split.path]
    x = np.asarray(split.features["default"], dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = sorted(np.flatnonzero(split.modality == query_modality), key=lambda i: paths[i])
    g = sorted(np.flatnonzero(split.modality != query_modality), key=lambda i: paths[i])
    first, aps = [], []
    for i in q:
        ranked = sorted(range(len(g)), key=lambda j: (-(x[i] @ x[g[j]]), j))
        labels = [int(split.pid[g[j]]) for j in ranked]
        hits = [r + 1 for r, label in enumerate(labels) if label == int(split.pid[i])]
        if not hits:
            continue
        identities = []
        for label in labels:
            if label not in identities:
                identities.append(label)
            if label == int(split.pid[i]):
                break
        first.append(len(identities))
        aps.append(np.mean([(k + 1) / r for k, r in enumerate(hits)]))
    first = np.asarray(first)
    return {
        "rank1": 100 * np.mean(first <= 1),
        "rank5": 100 * np.mean(first <= 5),
        "mAP": 100 * np.mean(aps),
    }


@pytest.mark.parametrize(("split", "query"), [(2, "infrared"), (3, "visible")])
def test_regdb_saai_equals_reference(regdb, split, query):  # noqa: F811
    dump = load_dump(regdb)
    (row,) = evaluate(
        dump,
        resolve_presets("regdb-saai"),
        query_modalities=[query],
        convention=RegDBConvention(split=split),
    ).rows
    assert row["cmc"] == "identity" and row["trials"] == 1 and row["variant"] == "saai"
    expected = saai_reference(dump.splits[split - 1], 1 if query == "infrared" else 0)
    for metric, value in expected.items():
        assert row[metric] == pytest.approx(value, abs=1e-9)
    # the same split through the CLI
    result = CliRunner().invoke(
        cli,
        [
            "score",
            str(regdb),
            "-p",
            "regdb-saai",
            "--regdb-split",
            str(split),
            "--query-modality",
            query,
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    (cli_row,) = json.loads(result.stdout)["results"]
    assert cli_row["mAP"] == pytest.approx(row["mAP"], abs=1e-9)


def test_regdb_saai_needs_a_split_and_split_errors(regdb, tmp_path):  # noqa: F811
    dump = load_dump(regdb)
    with pytest.raises(ProtocolError, match="scores one RegDB split"):
        evaluate(dump, resolve_presets("regdb-saai"), strict=True)
    with pytest.raises(DumpError, match="RegDB split 5 asked for, the dump holds 3"):
        evaluate(dump, resolve_presets("regdb-t2v"), convention=RegDBConvention(split=5))
    with pytest.raises(ProtocolError, match="must be 1..10"):
        RegDBConvention(split=11)
    result = CliRunner().invoke(cli, ["score", "feature_dumps/demo-sysu.h5", "--regdb-split", "2"])
    assert result.exit_code == 2
    assert "--regdb-split applies to regdb dumps" in result.output


def test_one_split_dump_is_split_k(tmp_path):
    """A dump holding one split: --regdb-split K says which; the numbers are that split's."""
    rng = np.random.default_rng(2)
    lists = {
        word: [(f"{folder}/{p}/i_{p}_{k}.bmp", p) for p in range(1, 6) for k in range(2)]
        for word, folder in (("visible", "Visible"), ("thermal", "Thermal"))
    }
    root = make_regdb(tmp_path / "r", {4: lists})
    frame = index_regdb(root, trials=(4,))
    features = {3: rng.standard_normal((len(frame), 6)).astype(np.float32)}
    path = regdb_dump(tmp_path / "one.h5", frame, features)
    dump = load_dump(path)
    plain = evaluate(dump, resolve_presets("regdb-t2v"))
    as_four = evaluate(dump, resolve_presets("regdb-t2v"), convention=RegDBConvention(split=4))
    assert as_four.rows[0]["mAP"] == plain.rows[0]["mAP"]
    assert [s.plan.trial for s in as_four.per_query] == [3]
