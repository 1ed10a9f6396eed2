"""Rank lists (engine/ranklists.py, score --ranklists): they agree with the scorer's
per-query values, ties keep pool order, the file is streamed and atomic."""

from __future__ import annotations

import json
from collections import defaultdict

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
    random_sysu_counts,
    regdb_dump,
)

from vireid_bench.cli import cli
from vireid_bench.engine.ranklists import iter_ranklists, write_ranklists
from vireid_bench.engine.scoring import evaluate
from vireid_bench.errors import VireidBenchError
from vireid_bench.io.dump import FeatureSplit, load_dump, write_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.datasets import index_llcm, index_regdb, index_sysu
from vireid_bench.synth.dumps import write_synth_dump


def _records(dump, presets, **options):
    blocks = list(iter_ranklists(dump, presets, **options))
    return [record for block in blocks for record in block], len(blocks)


def _check_against_scorer(dump, protocols, *, block_bytes=4096, **options):
    """Every query's AP, INP, first hit, true-match count and gallery size recomputed from
    its rank list equal evaluate()'s per-query values."""
    presets = resolve_presets(protocols)
    evaluation = evaluate(dump, presets, **options)
    records, blocks = _records(dump, presets, top_k=5, block_bytes=block_bytes, **options)
    grouped = defaultdict(list)
    for record in records:
        key = (record["protocol"], record["variant"], record["query_modality"], record["trial"])
        grouped[key].append(record)
    compared = 0
    for scores in evaluation.per_query:
        key = (scores.protocol, scores.variant, scores.query_modality, scores.plan.trial)
        lists = grouped.pop(key)
        assert [r["query"]["row"] for r in lists] == scores.plan.query_idx.tolist()
        for i, record in enumerate(lists):
            ranks = np.asarray(record["match_ranks"], dtype=np.float64)
            assert record["gallery_size"] == scores.n_gallery[i]
            assert len(ranks) == scores.n_pos[i]
            if ranks.size == 0:
                assert record["first_hit"] == 0 and scores.first_rank[i] == 0
                continue
            ap = np.mean(np.arange(1, ranks.size + 1) / ranks)
            assert ap == pytest.approx(scores.ap[i], rel=1e-12, abs=0)
            assert ranks.size / ranks[-1] == pytest.approx(scores.inp[i], rel=1e-12, abs=0)
            assert record["first_hit"] == scores.first_rank[i]
            if record["cmc"] == "image":
                assert ranks[0] == scores.first_rank[i]
            # the top list is the head of the same ranking
            top = record["top"]
            assert [t["rank"] for t in top] == list(range(1, len(top) + 1))
            assert [t["rank"] for t in top if t["match"]] == [r for r in ranks if r <= len(top)]
            assert all(t["match"] == (t["pid"] == record["query"]["pid"]) for t in top)
            distances = [t["distance"] for t in top]
            assert distances == sorted(distances)
            assert record["query"]["row"] not in [t["row"] for t in top]
            compared += 1
    assert not grouped and compared > 0
    return records, blocks


def test_generic_dump_every_setting_cosine_and_euclidean(tmp_path):
    path = write_synth_dump(
        tmp_path / "g.h5",
        ids=6,
        cameras="1,2:visible,3,4:infrared",
        per_cam=3,
        dim=8,
        seed=1,
        float16=False,
    )
    dump = load_dump(path)
    records, blocks = _check_against_scorer(dump, "all")
    assert blocks > 10  # 4 KiB of distances per block: the queries go in many blocks
    _check_against_scorer(dump, "all", distance="euclidean", cmc="identity")


def test_sysu_tree_dump_identity_cmc_and_colocated_cameras(tmp_path):
    rng = np.random.default_rng(5)
    ids = [3, 8, 11, 20, 21]
    frame = index_sysu(make_sysu(tmp_path / "sysu", random_sysu_counts(rng, ids), ids))
    dump = load_dump(
        dump_from_table(tmp_path / "s.h5", frame, features_for(frame, rng), "sysu-mm01")
    )
    records, _ = _check_against_scorer(dump, "sysu-all-single:all,sysu-indoor-single", trials=3)
    cross = [r for r in records if r["protocol"] == "sysu-all-single" and r["query"]["cam"] == 3]
    assert cross and all(t["cam"] != 2 for r in cross for t in r["top"])  # AGW's rule
    assert all(r["query"]["path"].startswith("cam") for r in records)


def test_regdb_trial_splits_and_llcm_deen_v2i(tmp_path):
    rng = np.random.default_rng(2)
    splits = {
        t: {
            "visible": [(f"Visible/{p}/v_{p}_{k}.bmp", p) for p in (1, 2, 3) for k in range(2)],
            "thermal": [(f"Thermal/{p}/t_{p}_{k}.bmp", p) for p in (1, 2, 3) for k in range(2)],
        }
        for t in (1, 2)
    }
    frame = index_regdb(make_regdb(tmp_path / "regdb", splits), trials=(1, 2))
    features = {t: features_for(frame[frame.trial == t], rng) for t in (0, 1)}
    regdb = load_dump(regdb_dump(tmp_path / "r.h5", frame, features))
    records, _ = _check_against_scorer(regdb, "all")
    assert {r["split"] for r in records} == {0, 1}

    ids = [1, 4, 7]
    llcm_frame = index_llcm(make_llcm(tmp_path / "llcm", random_llcm_counts(rng, ids), ids))
    llcm = load_dump(
        dump_from_table(tmp_path / "l.h5", llcm_frame, features_for(llcm_frame, rng), "llcm")
    )
    records, _ = _check_against_scorer(llcm, "llcm-v2i,llcm-i2v:all", trials=2)
    v2i = [r for r in records if r["protocol"] == "llcm-v2i"]
    # DEEN's V->I: sampled near-infrared queries against every visible image
    assert v2i and all(r["query"]["modality"] == "infrared" for r in v2i)


def test_separate_cross_and_same_feature_sets(tmp_path):
    rng = np.random.default_rng(4)
    n = 24
    pid = np.repeat(np.arange(6), 4)
    cam = np.tile([1, 2, 3, 4], 6)
    modality = (cam >= 3).astype(int)
    path = write_dump(
        tmp_path / "two.h5",
        trials=[
            FeatureSplit(
                features={"a": rng.normal(size=(n, 5)), "b": rng.normal(size=(n, 7))},
                pid=pid,
                cam=cam,
                modality=modality,
            )
        ],
        default_features="a",
        cross_features="a",
        same_features="b",
    )
    _check_against_scorer(load_dump(path), "mix,uni,cross")


def _tie_dump(tmp_path):
    """Row 0: infrared query of id 1; rows 1-4: visible images at exactly the same distance
    (ids 2, 1, 3, 1); row 5: a visible image of id 4 equal to the query (distance 0)."""
    features = np.array([[1, 0], [0, 1], [0, 1], [0, 1], [0, 1], [1, 0]], dtype=np.float32)
    return write_dump(
        tmp_path / "ties.h5",
        features=features,
        pid=[1, 2, 1, 3, 1, 4],
        cam=[3, 1, 1, 2, 2, 1],
        modality=[1, 0, 0, 0, 0, 0],
    )


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_ties_follow_pool_order(tmp_path, distance):
    dump = load_dump(_tie_dump(tmp_path))
    records, _ = _records(
        dump, resolve_presets("cross"), top_k=10, distance=distance, query_modalities=["infrared"]
    )
    (record,) = records
    assert [t["row"] for t in record["top"]] == [5, 1, 2, 3, 4]
    assert record["match_ranks"] == [3, 5] and record["first_hit"] == 3
    assert [t["match"] for t in record["top"]] == [False, False, True, False, True]
    assert record["top"][1]["distance"] == record["top"][4]["distance"]
    assert "path" not in record["query"] and "path" not in record["top"][0]  # none in the dump
    _check_against_scorer(dump, "cross", distance=distance)


def test_top_k_and_streamed_writer(tmp_path):
    path = write_synth_dump(
        tmp_path / "g.h5", ids=4, cameras="1:visible,2:infrared", per_cam=3, dim=4
    )
    dump = load_dump(path)
    produced = []

    def blocks():
        for block in iter_ranklists(dump, resolve_presets("cross"), top_k=2, block_bytes=64):
            produced.append(len(block))
            yield block

    out = tmp_path / "r.jsonl"
    count = write_ranklists(out, blocks())
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert count == len(lines) == sum(produced) == 24 and len(produced) == 24
    assert all(len(r["top"]) == 2 for r in lines)
    with pytest.raises(VireidBenchError, match="top_k"):
        next(iter_ranklists(dump, resolve_presets("cross"), top_k=0))


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def runner():
    return CliRunner()


def test_cli_ranklists_change_no_number(runner, tmp_path):
    path = write_synth_dump(
        tmp_path / "g.h5", ids=5, cameras="1,2:visible,3:infrared", per_cam=2, dim=8
    )
    plain = runner.invoke(cli, ["score", str(path), "-f", "json"])
    out = tmp_path / "ranks.jsonl"
    listed = runner.invoke(
        cli, ["score", str(path), "-f", "json", "--ranklists", str(out), "--top-k", "3"]
    )
    assert plain.exit_code == 0 and listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout) == json.loads(plain.stdout)
    assert f"wrote {out}" in listed.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    # every scored plan's queries, also those of a setting the table lists as having no
    # query with a true match
    scored = evaluate(load_dump(path), resolve_presets("all")).per_query
    assert len(records) == sum(s.plan.query_idx.size for s in scored)
    assert max(len(r["top"]) for r in records) == 3
    assert all("path" in r["query"] and "path" in r["top"][0] for r in records)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ranklists", "r.csv"], "r.csv: rank lists are written as .jsonl"),
        (["--top-k", "5"], "--top-k: needs --ranklists FILE"),
        (["--ranklists", "r.jsonl", "--rerank", "k-reciprocal"], "not available with --rerank"),
        (["--ranklists", "missing/r.jsonl"], "does not exist (create it, or pass --parents)"),
    ],
)
def test_cli_ranklists_refusals(runner, tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    path = write_synth_dump(
        tmp_path / "g.h5", ids=3, cameras="1:visible,2:infrared", per_cam=2, dim=4
    )
    result = runner.invoke(cli, ["score", str(path), *extra])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line


def test_cli_ranklists_two_dumps_and_parquet(runner, tmp_path):
    path = write_synth_dump(
        tmp_path / "g.h5", ids=3, cameras="1:visible,2:infrared", per_cam=2, dim=4
    )
    two = runner.invoke(
        cli, ["score", str(path), str(path), "--ranklists", str(tmp_path / "r.jsonl")]
    )
    assert two.exit_code == 2 and "--ranklists: one dump at a time" in two.stderr
    out = tmp_path / "r.parquet"
    result = runner.invoke(cli, ["score", str(path), "--ranklists", str(out)])
    try:
        import pyarrow.parquet as pq
    except ImportError:
        assert result.exit_code == 2 and ".parquet needs pyarrow" in result.stderr
        assert not out.exists()
    else:  # pragma: no cover - pyarrow is optional
        assert result.exit_code == 0
        assert pq.read_table(out).num_rows > 0


def test_writer_is_atomic_when_the_stream_fails(tmp_path):
    path = write_synth_dump(
        tmp_path / "g.h5", ids=3, cameras="1:visible,2:infrared", per_cam=2, dim=4
    )
    dump = load_dump(path)
    out = tmp_path / "r.jsonl"
    out.write_text("previous\n")

    def failing():
        blocks = iter_ranklists(dump, resolve_presets("cross"), block_bytes=16)
        yield next(blocks)  # one block is written to the temporary file, then:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_ranklists(out, failing())
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.h5", "r.jsonl"]
