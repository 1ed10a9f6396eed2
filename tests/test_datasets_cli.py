"""``vireid-bench index`` and the index -> dump -> score workflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
from click.testing import CliRunner
from dataset_trees import dump_from_table, make_llcm, make_regdb, make_sysu

from vireid_bench.cli.index import index_command
from vireid_bench.engine.scoring import score
from vireid_bench.protocol.conventions import dataset_presets


def test_index_writes_the_csv_a_dump_is_written_from(tmp_path):
    counts = {(pid, cam): 2 for pid in range(1, 24) for cam in (1, 2, 3, 6)}
    root = make_sysu(tmp_path / "sysu", counts, test_ids=list(range(1, 24)))
    out = tmp_path / "out" / "images.csv"
    args = ["sysu", "--root", str(root), "--out", str(out), "--parents"]
    result = CliRunner().invoke(index_command, args)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "dataset = sysu-mm01" in result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["path", "pid", "cam", "modality"]
    assert len(frame) == 23 * 4 * 2
    features = np.random.default_rng(0).standard_normal((len(frame), 8)).astype(np.float32)
    dump = dump_from_table(tmp_path / "d.h5", frame, features, "sysu-mm01")
    rows = score(dump, "sysu-indoor-single", trials=2)
    assert rows["status"].eq("ok").all() and rows["variant"].eq("indoor").all()


def test_index_to_stdout_and_other_datasets(tmp_path):
    root = make_llcm(tmp_path / "llcm", {(1, "vis", 1): 1, (1, "nir", 2): 1}, [1])
    result = CliRunner().invoke(index_command, ["llcm", "--root", str(root)])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "path,pid,cam,modality"
    assert len(result.stdout.splitlines()) == 3
    regdb = make_regdb(
        tmp_path / "regdb",
        {t: {"visible": [("Visible/1/a.bmp", 1)], "thermal": [("Thermal/1/b.bmp", 1)]}
         for t in range(1, 11)},
    )  # fmt: skip
    result = CliRunner().invoke(index_command, ["regdb", "--root", str(regdb), "--out", "-"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "path,pid,cam,modality,trial"
    assert "10 trials" in result.stderr


def test_index_errors_exit_2_with_one_line(tmp_path):
    result = CliRunner().invoke(index_command, ["sysu", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "exp/test_id.txt: file missing" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(index_command, ["sysu", "--root", str(tmp_path), "--split", "x"])
    assert result.exit_code == 2 and "unknown SYSU-MM01 split" in result.stderr


def test_index_shows_warnings_on_stderr(tmp_path):
    root = make_llcm(tmp_path / "llcm", {(1, "vis", 1): 1, (1, "nir", 3): 1}, [1])
    result = CliRunner().invoke(index_command, ["llcm", "--root", str(root), "-o", "-"])
    assert result.exit_code == 0
    assert "warning: " in result.stderr and "test_nir/cam3: left out" in result.stderr


def test_dataset_presets_are_registered():
    names = {name: entry.dataset for name, entry in dataset_presets().items()}
    assert names == {
        "sysu-all-single": "sysu-mm01",
        "sysu-indoor-single": "sysu-mm01",
        "sysu-all-multi": "sysu-mm01",
        "sysu-indoor-multi": "sysu-mm01",
        "sysu-val-all": "sysu-mm01",
        "sysu-val-indoor": "sysu-mm01",
        "regdb-t2v": "regdb",
        "regdb-v2t": "regdb",
        "regdb-saai": "regdb",
        "llcm-i2v": "llcm",
        "llcm-v2i": "llcm",
    }
