"""``mixer train --select val``: validation ids held out, the best epoch by validation mAP
kept as ``model_best.pt``, ``selection=val`` recorded by ``mixer extract``.

A real (tiny) training run on synthetic images: 9 identities, 64 x 32, ResNet-18, two
epochs of one iteration, CPU.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from vireid_bench.cli.main import cli  # noqa: E402
from vireid_bench.cli.mixer import mixer_group  # noqa: E402
from vireid_bench.cli.synth_images import synth_images_command  # noqa: E402
from vireid_bench.io.dump import load_dump  # noqa: E402
from vireid_bench.models.mixer.selection import BestKeeper, due  # noqa: E402

SMALL = ["--config", "synth-small", "--size", "64x32", "--batch-ids", "2", "--num-pos", "1"]
TRAIN_IDS, VAL_IDS, TEST_IDS = (1, 2, 3), (4, 5, 6), (7, 8, 9)


def _ok(command, args):
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "sysu"
    _ok(
        synth_images_command,
        [str(root), "--layout", "sysu-mm01", "--ids", "9", "--per-cam", "1", "--size", "64x32"],
    )
    # three identities per split, so that the validation mAP is not trivially 100
    for name, ids in (("train", TRAIN_IDS), ("val", VAL_IDS), ("test", TEST_IDS)):
        (root / "exp" / f"{name}_id.txt").write_text(",".join(map(str, ids)) + "\n")
    return root


@pytest.fixture(scope="module")
def run(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "val-run"
    args = ["train", "--dataset", "sysu-mm01", "--root", str(root), "--out", str(out)]
    result = _ok(mixer_group, [*args, *SMALL, "--epochs", "2", "--iters", "1", "--select", "val"])
    return out, result.output


def _log(out):
    with (out / "checkpoints" / "selection_log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_validation_ids_are_held_out_of_training(run):
    out, _ = run
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert sorted(last["class_pids"]) == list(TRAIN_IDS)
    assert last["held_out_val"] is True and last["select"] == "val"


def test_best_epoch_by_validation_map_is_kept(run):
    out, output = run
    rows = _log(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    values = [float(r["mAP"]) for r in rows]
    assert all(0 < v <= 100 for v in values)
    best_epoch = 1 + values.index(max(values))  # ties keep the earlier epoch
    best = torch.load(out / "checkpoints" / "model_best.pt", weights_only=False)
    assert best["selection"] == "val"
    assert best["selection_epoch"] == best_epoch
    assert best["selection_mAP"] == pytest.approx(max(values))
    assert f"best val mAP {max(values):.2f} at epoch {best_epoch}" in output


def test_extract_from_model_best_records_val_and_reproduces_its_map(run, root, tmp_path):
    out, _ = run
    where = ["--dataset", "sysu-mm01", "--root", str(root), "--quiet"]
    best = str(out / "checkpoints" / "model_best.pt")
    val_dump = tmp_path / "val.h5"
    _ok(
        mixer_group,
        ["extract", "--checkpoint", best, *where, "--split", "val", "--out", str(val_dump)],
    )
    dump = load_dump(val_dump)
    assert dump.selection == "val"
    assert dump.trained_on == "sysu-mm01 train without val ids"
    assert sorted(set(dump.splits[0].pid.tolist())) == list(VAL_IDS)
    # scoring the extracted validation dump gives the value the run selected on
    scored = _ok(
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
    (row,) = json.loads(scored.stdout)["results"]
    logged = {int(r["epoch"]): float(r["mAP"]) for r in _log(out)}
    selected = torch.load(best, weights_only=False)["selection_epoch"]
    assert row["mAP"] == pytest.approx(logged[selected], abs=1e-4)
    # the test dump of the last epoch says 'last'
    test_dump = tmp_path / "test.h5"
    last = str(out / "checkpoints" / "last.pt")
    _ok(mixer_group, ["extract", "--checkpoint", last, *where, "--out", str(test_dump)])
    assert load_dump(test_dump).selection == "last"
    assert sorted(set(load_dump(test_dump).splits[0].pid.tolist())) == list(TEST_IDS)


def test_select_val_is_refused_without_a_validation_split(tmp_path):
    for dataset in ("regdb", "llcm"):
        args = [
            "train",
            "--dataset",
            dataset,
            "--root",
            str(tmp_path),
            "--out",
            str(tmp_path / "r"),
        ]
        result = CliRunner().invoke(mixer_group, [*args, "--select", "val"])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert f"{dataset} has no validation split" in lines[0]
    assert not (tmp_path / "r").exists()


def test_help_says_the_validation_ids_are_held_out():
    result = CliRunner().invoke(mixer_group, ["train", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "HELD OUT of training" in text and "model_best.pt" in text


def test_best_keeper_keeps_the_first_maximum_and_ignores_nan(tmp_path):
    keeper = BestKeeper(tmp_path, "val")
    won = [keeper.update(e, v, {"epoch": e}) for e, v in enumerate([50, 70, 70, math.nan, 60], 1)]
    assert won == [True, True, False, False, False]
    assert (keeper.epoch, keeper.value) == (2, 70)
    saved = torch.load(tmp_path / "model_best.pt", weights_only=False)
    assert (saved["epoch"], saved["selection_epoch"], saved["selection"]) == (2, 2, "val")
    # a resumed run continues the comparison from what last.pt recorded
    resumed = BestKeeper(tmp_path, "val", keeper.record())
    assert resumed.update(6, 65, {"epoch": 6}) is False
    assert resumed.update(7, 71, {"epoch": 7}) is True
    assert len(_log_rows(tmp_path)) == 7


def _log_rows(folder):
    with (folder / "selection_log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_evaluated_epochs():
    assert [e for e in range(1, 8) if due("val", e, 7, 3)] == [3, 6, 7]
    assert not any(due("last", e, 7, 1) for e in range(1, 8))
