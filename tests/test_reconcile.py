"""reconcile: the variant that generated a target number ranks first.

Each test scores a small dump in the dataset's real layout under one convention, with the
library's own options spelt out here (not through reconcile's variant list), takes the
numbers as the target and checks that reconcile puts that variant first, and that the
command it prints reproduces the numbers through the real CLI.
"""

from __future__ import annotations

import json
import shlex

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
    write_rand_perm,
)

from vireid_bench.cli.main import cli
from vireid_bench.engine.plans import METRICS
from vireid_bench.engine.scoring import evaluate
from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import load_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.datasets import (
    LLCMConvention,
    RegDBConvention,
    SYSUConvention,
    index_llcm,
    index_regdb,
    index_sysu,
)
from vireid_bench.results.reconcile import parse_setting, parse_target, reconcile


@pytest.fixture(scope="module")
def sysu(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sysu")
    rng = np.random.default_rng(7)
    ids = list(range(1, 9))
    # up to 14 images per folder, so that 10-shot samplers do pick (not take every image)
    counts = {
        key: 3 * n + int(rng.integers(0, 3)) for key, n in random_sysu_counts(rng, ids).items()
    }
    root = make_sysu(tmp / "root", counts, test_ids=ids)
    perms = {
        (cam, pid): np.stack([rng.permutation(n) + 1 for _ in range(10)])
        for (pid, cam), n in counts.items()
    }
    perm_path = root / "exp" / "rand_perm_cam.mat"
    write_rand_perm(perm_path, perms, n_ids=len(ids))
    frame = index_sysu(root)
    path = dump_from_table(tmp / "sysu.h5", frame, features_for(frame, rng), "sysu-mm01")
    return path, str(perm_path)


def target_of(row, metrics=METRICS):
    return {m: float(row[m]) for m in metrics}


def one_row(dump, protocol, query="infrared", **options):
    evaluation = evaluate(dump, resolve_presets(protocol), query_modalities=[query], **options)
    (row,) = evaluation.rows
    return row


def cli_row(command):
    words = shlex.split(command)
    assert words[:2] == ["vireid-bench", "score"]
    result = CliRunner().invoke(cli, [*words[1:], "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["results"]
    return row


SYSU_CASES = [
    # (protocol, convention options, cmc, expected axes)
    (
        "sysu-all-single",
        {},
        None,
        {"sampler": "agw", "shots": "1", "colocated": "any", "cmc": "identity"},
    ),
    (
        "sysu-all-multi",
        {"sampler": "agw", "colocated_rule": "same-id"},
        "image",
        {"sampler": "agw", "shots": "10", "colocated": "same-id", "cmc": "image"},
    ),
    (
        "sysu-all-single",
        {"sampler": "official"},
        None,
        {"sampler": "official", "shots": "1", "colocated": "any", "cmc": "identity"},
    ),
    (
        "sysu-all-multi",
        {"sampler": "official", "colocated_rule": "same-id"},
        None,
        {"sampler": "official", "shots": "10", "colocated": "same-id", "cmc": "identity"},
    ),
]


@pytest.mark.parametrize(("protocol", "options", "cmc", "axes"), SYSU_CASES)
def test_sysu_generating_variant_ranks_first(sysu, protocol, options, cmc, axes):
    path, perm = sysu
    dump = load_dump(path)
    if options.get("sampler") == "official":
        options = {**options, "rand_perm": perm}
    row = one_row(dump, protocol, convention=SYSUConvention(**options), cmc=cmc, trials=3)
    outcomes = reconcile(dump, target_of(row), rand_perm=perm, rerank=False, trials=3)
    best = outcomes[0]
    assert best.distance == pytest.approx(0.0, abs=1e-9)
    got = dict(best.variant.axes)
    assert {k: got[k] for k in axes} == axes
    assert got["rerank"] == "none" and got["features"] == "policy"
    # the runner-up is a different convention that scores differently
    assert outcomes[1].distance > 1e-6
    # the printed command reproduces the numbers through the CLI
    command = best.variant.command(str(path), [("trials", "3")])
    again = cli_row(command)
    for metric in METRICS:
        assert again[metric] == pytest.approx(row[metric], abs=1e-9)


def test_sysu_reranked_variant_ranks_first(sysu):
    path, _ = sysu
    dump = load_dump(path)
    row = one_row(dump, "sysu-all-single", rerank="aim", rerank_order="community", trials=1)
    outcomes = reconcile(dump, target_of(row), trials=1)
    got = dict(outcomes[0].variant.axes)
    assert (got["rerank"], got["rerank-order"], got["sampler"], got["shots"]) == (
        "aim",
        "community",
        "agw",
        "1",
    )
    assert outcomes[0].distance == pytest.approx(0.0, abs=1e-9)
    assert "--rerank aim --rerank-order community" in outcomes[0].variant.command("d.h5")


@pytest.fixture(scope="module")
def regdb(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("regdb")
    rng = np.random.default_rng(3)
    splits = {}
    for trial in (1, 2, 3):
        ids = rng.choice(np.arange(1, 40), size=8, replace=False)
        splits[trial] = {
            word: [
                (f"{folder}/{pid}/f_{word[0]}_{pid:05d}_{k}.bmp", int(pid))
                for pid in ids
                for k in range(3)
            ]
            for word, folder in (("visible", "Visible"), ("thermal", "Thermal"))
        }
    root = make_regdb(tmp / "root", splits)
    frame = index_regdb(root, trials=(1, 2, 3))
    features = {t: features_for(frame[frame["trial"] == t], rng) for t in range(3)}
    return regdb_dump(tmp / "regdb.h5", frame, features)


@pytest.mark.parametrize(
    ("split", "cmc", "query"),
    [(None, None, "infrared"), (2, "identity", "infrared"), (3, None, "visible")],
)
def test_regdb_generating_split_ranks_first(regdb, split, cmc, query):
    dump = load_dump(regdb)
    protocol = "regdb-t2v" if query == "infrared" else "regdb-v2t"
    row = one_row(dump, protocol, query, convention=RegDBConvention(split=split), cmc=cmc)
    outcomes = reconcile(dump, target_of(row), query_modality=query, rerank=False)
    got = dict(outcomes[0].variant.axes)
    assert got["split"] == ("mean" if split is None else str(split))
    assert got["cmc"] == (cmc or "image")
    assert outcomes[0].distance == pytest.approx(0.0, abs=1e-9)
    again = cli_row(outcomes[0].variant.command(str(regdb)))
    assert again["mAP"] == pytest.approx(row["mAP"], abs=1e-9)


@pytest.mark.parametrize("v2i", ["deen", "visible-queries"])
def test_llcm_v2i_roles_rank_first(tmp_path, v2i):
    rng = np.random.default_rng(11)
    ids = list(range(1, 7))
    root = make_llcm(tmp_path / "llcm", random_llcm_counts(rng, ids), ids)
    frame = index_llcm(root)
    path = dump_from_table(tmp_path / "llcm.h5", frame, features_for(frame, rng), "llcm")
    dump = load_dump(path)
    row = one_row(dump, "llcm-v2i", "visible", convention=LLCMConvention(v2i=v2i), trials=2)
    outcomes = reconcile(
        dump,
        target_of(row, ("rank1", "mAP")),
        query_modality="visible",
        rerank=False,
        trials=2,
    )
    assert dict(outcomes[0].variant.axes)["v2i"] == v2i
    assert outcomes[0].distance == pytest.approx(0.0, abs=1e-9)


def test_cli_table_json_and_errors(sysu):
    path, _ = sysu
    dump = load_dump(path)
    row = one_row(
        dump, "sysu-all-multi", convention=SYSUConvention(sampler="agw"), cmc="image", trials=2
    )
    target = f"R1={row['rank1']:.2f},mAP={row['mAP']:.2f}"
    base = ["reconcile", str(path), "--target", target, "--no-rerank", "--trials", "2"]
    table = CliRunner().invoke(cli, [*base, "--top", "3"])
    assert table.exit_code == 0, table.output
    assert "#1: vireid-bench score" in table.output
    assert "--protocol sysu-all-multi" in table.output.split("#1:")[1].splitlines()[0]
    as_json = CliRunner().invoke(cli, [*base, "--format", "json"])
    payload = json.loads(as_json.output)
    assert len(payload["variants"]) == 8  # shots x co-located rule x CMC
    assert payload["variants"][0]["variant"]["shots"] == "10"
    assert payload["variants"][0]["distance"] <= 0.005 + 1e-9
    assert payload["target"] == {"rank1": round(row["rank1"], 2), "mAP": round(row["mAP"], 2)}
    for args, message in (
        (["--target", "R1=abc"], "is not a number"),
        (["--target", "top1=3"], "expected METRIC=VALUE"),
        (["--target", "R1=3", "--setting", "cros"], "unknown setting 'cros'"),
        (["--target", "R1=3", "--setting", "cross:outdoor"], "unknown search mode"),
    ):
        result = CliRunner().invoke(cli, ["reconcile", str(path), *args])
        assert result.exit_code == 2
        assert result.output.startswith("error: ") and result.output.count("\n") == 1
        assert message in result.output


def test_parsers():
    assert parse_target(" r1 = 75.04 , MAP=71.22,mINP=1") == {
        "rank1": 75.04,
        "mAP": 71.22,
        "mINP": 1.0,
    }
    assert parse_setting("cross:indoor") == ("cross", "indoor")
    assert parse_setting("mix-id") == ("mix-id", None)
    for bad in ("", "R1=101", "R1=3,rank1=4", "R1=nan"):
        with pytest.raises(ProtocolError):
            parse_target(bad)
