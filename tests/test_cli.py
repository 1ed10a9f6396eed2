"""The command line through click's CliRunner, and once as a real installed subprocess."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vireid_bench.cli.main import cli
from vireid_bench.engine.scoring import RESULT_KEYS, score


@pytest.fixture
def runner():
    return CliRunner()


def test_score_json_is_one_object_with_every_key(runner, tiny_dump):
    result = runner.invoke(cli, ["score", str(tiny_dump), "-p", "mix-id,cross", "-f", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"vireid_bench_version", "protocol_version", "results"}
    assert [r["protocol"] for r in payload["results"]] == ["mix-id", "mix-id", "cross", "cross"]
    assert [r["query_modality"] for r in payload["results"]] == ["infrared", "visible"] * 2
    # then the run metadata the synthetic dump records (seed 3, synthetic)
    keys = [*RESULT_KEYS, "dump_sha256", "seed", "synthetic"]
    assert all(list(r) == keys for r in payload["results"])
    digest = hashlib.sha256(Path(tiny_dump).read_bytes()).hexdigest()
    assert {r["dump_sha256"] for r in payload["results"]} == {digest}
    api = score(tiny_dump, "mix-id,cross")
    assert payload["results"][0]["mAP"] == api.iloc[0].mAP  # unrounded
    assert payload["results"][2]["gallery_modality"] == "visible"


def test_score_table_csv_markdown(runner, tiny_dump, tmp_path):
    table = runner.invoke(cli, ["score", str(tiny_dump)])
    assert table.exit_code == 0
    assert "mix-cam-id" in table.stdout and "I→V+I" in table.stdout and "mINP" in table.stdout
    out = tmp_path / "r.csv"
    result = runner.invoke(cli, ["score", str(tiny_dump), "-f", "csv", "-o", str(out)])
    assert result.exit_code == 0 and result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    # the synthetic dump records seed and synthetic: their columns follow the result keys
    assert len(rows) == 14 and list(rows[0]) == [*RESULT_KEYS, "seed", "synthetic"]
    markdown = runner.invoke(cli, ["score", str(tiny_dump), "-p", "mix", "-f", "markdown"])
    lines = [line for line in markdown.stdout.splitlines() if line.startswith("|")]
    assert len(lines) == 4 and set(lines[1]) <= {"|", "-", ":"}  # header, rule, 2 rows
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_trials_show_mean_and_std(runner, tmp_path):
    from vireid_bench.io.dump import FeatureSplit, write_dump

    rng = np.random.default_rng(0)
    splits = [
        FeatureSplit(
            features={"f": rng.normal(size=(8, 4))},
            pid=np.repeat([1, 2, 3, 4], 2),
            cam=np.tile([1, 2], 4),
            modality=np.tile([0, 1], 4),
        )
        for _ in range(2)
    ]
    path = write_dump(tmp_path / "t.h5", trials=splits)
    result = runner.invoke(cli, ["score", str(path), "-p", "cross"])
    assert result.exit_code == 0
    assert "±" in result.stdout and "trials 2" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", "{missing}"], "file not found"),
        (["score", "{dump}", "-p", "nope"], "unknown protocol 'nope'"),
        (["score", "{dump}", "--features", "zz"], "no feature set 'zz'"),
        (["score", "{text}"], "not an HDF5 file"),
        (["inspect", "{text}"], "not an HDF5 file"),
    ],
)
def test_bad_input_exits_2_with_one_line(runner, tiny_dump, tmp_path, args, message):
    text = tmp_path / "x.h5"
    text.write_text("hello")
    args = [a.format(dump=tiny_dump, missing=tmp_path / "none.h5", text=text) for a in args]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_named_inapplicable_protocol_fails_but_all_lists_it(runner, tmp_path):
    from vireid_bench.io.dump import write_dump

    path = write_dump(
        tmp_path / "one.h5",
        features=np.random.default_rng(0).normal(size=(4, 3)),
        pid=[1, 1, 2, 2],
        cam=[1, 2, 1, 2],
        modality=[0, 1, 0, 1],
    )
    named = runner.invoke(cli, ["score", str(path), "-p", "mix-cam"])
    assert named.exit_code == 2 and "not applicable: one camera per modality" in named.stderr
    everything = runner.invoke(cli, ["score", str(path)])
    assert everything.exit_code == 0
    assert "not applicable: one camera per modality" in everything.stdout
    assert "warning:" in everything.stderr


def test_protocols_and_inspect(runner, tiny_dump):
    listing = runner.invoke(cli, ["protocols", "-v"])
    assert listing.exit_code == 0
    for name in ("mix", "mix-cam", "mix-cam-id", "mix-id", "mix-p", "cross", "uni"):
        assert name in listing.stdout
    assert "same identity and same modality" in listing.stdout
    inspected = runner.invoke(cli, ["inspect", str(tiny_dump)])
    assert inspected.exit_code == 0
    assert "infrared" in inspected.stdout and "cam 3: 10 images / 5 ids" in inspected.stdout
    assert "findings: none" in inspected.stdout


def test_inspect_reports_findings(runner, tmp_path):
    from vireid_bench.io.dump import write_dump

    features = np.random.default_rng(0).normal(size=(4, 3))
    features[3] = features[2]
    path = write_dump(
        tmp_path / "f.h5",
        features=features,
        pid=[1, 1, 2, 3],
        cam=[1, 2, 1, 2],
        modality=[0, 1, 0, 1],
        paths=["a.jpg", "b.jpg", "a.jpg", "c.jpg"],
    )
    result = runner.invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 0
    assert "2 identities appear in one modality only" in result.stdout
    assert "1 duplicated image path" in result.stdout
    assert "1 duplicated row" in result.stdout


def test_synth_is_deterministic(runner, tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    for path in (a, b):
        result = runner.invoke(
            cli,
            [
                "synth",
                str(path),
                "--ids",
                "4",
                "--per-cam",
                "2",
                "--dim",
                "8",
                "--cams",
                "1,2:visible,3:infrared",
            ],
        )
        assert result.exit_code == 0, result.output
    assert score(a, "mix").equals(score(b, "mix").assign(dump="a.h5"))
    bad = runner.invoke(cli, ["synth", str(tmp_path / "c.h5"), "--cams", "1,2"])
    assert bad.exit_code == 2 and "no ':visible' or ':infrared'" in bad.stderr


def test_help_explains(runner):
    result = runner.invoke(cli, ["score", "--help"])
    assert result.exit_code == 0
    assert "--protocol" in result.stdout and "exit code 2" in result.stdout


def test_installed_console_script(tiny_dump):
    executable = shutil.which("vireid-bench") or str(
        __import__("pathlib").Path(sys.executable).with_name("vireid-bench")
    )
    done = subprocess.run(
        [executable, "score", str(tiny_dump), "-p", "mix", "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["protocol"] == "mix"
    failed = subprocess.run(
        [executable, "score", "missing.h5"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip() == "error: missing.h5: file not found"


def test_sysu_options_reach_the_convention(runner, tmp_path, tiny_dump):
    from vireid_bench.synth.dumps import write_synth_dump

    sysu = write_synth_dump(tmp_path / "s.h5", ids=6, per_cam=3, dim=16, dataset="sysu-mm01")
    args = ["score", str(sysu), "-p", "cross", "--trials", "2", "-f", "json"]
    single = json.loads(runner.invoke(cli, args).stdout)["results"]
    multi = runner.invoke(cli, [*args, "--shots", "10", "--sampler", "agw"]).stdout
    multi = json.loads(multi)["results"]
    # Multi-shot keeps every image of a (person, camera) with fewer than 10: a different pool.
    assert [r["variant"] for r in single] == ["all", "all", "indoor", "indoor"]
    assert single[0]["mAP"] != multi[0]["mAP"]
    same_id = json.loads(runner.invoke(cli, [*args, "--colocated-rule", "same-id"]).stdout)
    assert len(same_id["results"]) == 4
    wrong = runner.invoke(cli, ["score", str(tiny_dump), "--shots", "10"])
    assert wrong.exit_code == 2 and "apply to sysu-mm01 dumps, not 'generic'" in wrong.stderr


def test_llcm_v2i_rule_from_the_command_line(runner):
    """--llcm-v2i visible-queries ranks every visible image (queries = the visible set)."""
    dump = "feature_dumps/synth-llcm.h5"
    args = ["score", dump, "-p", "llcm-v2i", "-f", "json", "--trials", "2"]
    deen = json.loads(runner.invoke(cli, args).stdout)["results"][0]
    literal = json.loads(runner.invoke(cli, [*args, "--llcm-v2i", "visible-queries"]).stdout)
    literal = literal["results"][0]
    from vireid_bench.io.dump import load_dump

    split = load_dump(dump).splits[0]
    assert literal["queries"] == int((split.modality == 0).sum())
    assert deen["queries"] < literal["queries"]  # DEEN: the sampled near-infrared side
    assert deen["mAP"] != literal["mAP"]
    explicit = json.loads(runner.invoke(cli, [*args, "--llcm-v2i", "deen"]).stdout)
    assert explicit["results"][0]["mAP"] == deen["mAP"]
    wrong = runner.invoke(cli, ["score", "feature_dumps/synth-regdb.h5", "--llcm-v2i", "deen"])
    assert wrong.exit_code == 2
    assert "--llcm-v2i applies to llcm dumps, not 'regdb'" in wrong.output
