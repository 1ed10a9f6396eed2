"""Run metadata in the dump: ``seed``, ``run``, ``selection``, ``trained_on``, ``synthetic``.

Written by ``write_dump`` / ``import`` / ``mixer extract`` / ``synth``, read by ``load_dump``,
shown by ``inspect``; dumps without them (every stored dump) still load, with None.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from vireid_bench.cli.main import cli
from vireid_bench.cli.run_options import SELECTION_CHOICES
from vireid_bench.errors import DumpError
from vireid_bench.io.dump import SELECTIONS, load_dump, write_dump
from vireid_bench.synth.dumps import write_synth_dump

ARRAYS = {
    "features": np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0]], dtype=np.float32),
    "pid": [1, 1, 2, 2],
    "cam": [1, 3, 1, 3],
    "modality": [0, 1, 0, 1],
}


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_round_trip_of_every_run_attribute(tmp_path):
    path = write_dump(
        tmp_path / "a.h5",
        **ARRAYS,
        model="M",
        seed=7,
        run="lr 3e-4 / seed 7",
        selection="val",
        trained_on="sysu-mm01 train",
        synthetic=False,
    )
    with h5py.File(path) as handle:
        assert int(handle.attrs["seed"]) == 7
        assert handle.attrs["selection"] == "val"
    dump = load_dump(path)
    assert (dump.seed, dump.run, dump.selection, dump.trained_on, dump.synthetic) == (
        7,
        "lr 3e-4 / seed 7",
        "val",
        "sysu-mm01 train",
        False,
    )
    assert type(dump.seed) is int and dump.is_synthetic is False


def test_dumps_without_run_attributes_load_with_none(tmp_path):
    path = write_dump(tmp_path / "old.h5", **ARRAYS, model="M")
    with h5py.File(path) as handle:
        assert not {"seed", "run", "selection", "trained_on", "synthetic"} & set(handle.attrs)
        assert handle.attrs["protocol_version"] == "1.0"
    dump = load_dump(path)
    assert (dump.seed, dump.run, dump.selection, dump.trained_on, dump.synthetic) == (None,) * 5
    assert dump.is_synthetic is False
    # a stored dump from before the attributes: synthetic by its model name / description
    stored = load_dump("feature_dumps/demo-sysu.h5")
    assert stored.seed is None and stored.synthetic is None and stored.is_synthetic


@pytest.mark.parametrize(
    ("keywords", "field", "fragment"),
    [
        ({"selection": "best"}, "selection", "unknown checkpoint selection 'best'"),
        ({"seed": 1.5}, "seed", "must be an integer"),
        ({"seed": True}, "seed", "must be an integer"),
        ({"run": 3}, "run", "must be a string"),
        ({"synthetic": "yes"}, "synthetic", "must be a boolean"),
    ],
)
def test_writer_refuses_bad_metadata_and_writes_nothing(tmp_path, keywords, field, fragment):
    target = tmp_path / "bad.h5"
    with pytest.raises(DumpError) as caught:
        write_dump(target, **ARRAYS, model="M", **keywords)
    message = str(caught.value)
    assert "\n" not in message and f"{field}:" in message and fragment in message
    assert not target.exists()


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("selection", "best-on-test", "unknown checkpoint selection"),
        ("seed", "seven", "seed: attribute must be an integer"),
        ("seed", 2.5, "seed: attribute must be an integer"),
        ("synthetic", 3, "synthetic: attribute must be a boolean"),
    ],
)
def test_reader_refuses_bad_stored_metadata(tmp_path, name, value, fragment):
    path = write_dump(tmp_path / "d.h5", **ARRAYS, model="M")
    with h5py.File(path, "a") as handle:
        handle.attrs[name] = value
    with pytest.raises(DumpError, match=fragment):
        load_dump(path)
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    one_line_error(result, name)


def test_inspect_shows_the_run(tmp_path):
    path = write_dump(
        tmp_path / "a.h5",
        **ARRAYS,
        model="M",
        seed=3,
        run="r3",
        selection="test",
        trained_on="regdb train trial 2",
    )
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    lines = {line.split("  ")[0]: line for line in result.output.splitlines()}
    assert lines["seed"].split()[-1] == "3"
    assert lines["run"].endswith("r3")
    assert "test" in lines["selection"] and "optimistic" in lines["selection"]
    assert lines["trained on"].endswith("regdb train trial 2")
    assert "synthetic" not in lines


def test_import_passes_run_flags_through(tmp_path):
    np.savez(
        tmp_path / "f.npz",
        query_f=np.eye(3, dtype=np.float32),
        query_label=np.array([1, 2, 3]),
        query_cam=np.array([3, 3, 6]),
        gallery_f=np.eye(3, dtype=np.float32) + 0.1,
        gallery_label=np.array([1, 2, 3]),
        gallery_cam=np.array([1, 2, 4]),
    )
    out = tmp_path / "m.h5"
    flags = ["--query-modality", "infrared", "--gallery-modality", "visible"]
    run = ["--seed", "11", "--run", "run-b", "--selection", "last", "--trained-on", "x train"]
    result = CliRunner().invoke(cli, ["import", str(out), str(tmp_path / "f.npz"), *flags, *run])
    assert result.exit_code == 0, result.output
    dump = load_dump(out)
    assert (dump.seed, dump.run, dump.selection, dump.trained_on) == (
        11,
        "run-b",
        "last",
        "x train",
    )
    bad = CliRunner().invoke(
        cli,
        ["import", str(tmp_path / "n.h5"), str(tmp_path / "f.npz"), *flags, "--selection", "best"],
    )
    assert bad.exit_code == 2 and not (tmp_path / "n.h5").exists()


def test_synth_records_seed_and_synthetic(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "synth",
            str(tmp_path / "s.h5"),
            "--ids",
            "4",
            "--per-cam",
            "1",
            "--dim",
            "4",
            "--seed",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    dump = load_dump(tmp_path / "s.h5")
    assert dump.seed == 5 and dump.synthetic is True and dump.model == "synthetic(seed=5)"
    named = load_dump(
        write_synth_dump(tmp_path / "t.h5", ids=4, per_cam=1, dim=4, seed=6, model="S", run="r6")
    )
    assert (named.model, named.seed, named.run, named.synthetic) == ("S", 6, "r6", True)


def test_cli_choices_match_the_format():
    assert SELECTION_CHOICES == SELECTIONS


def test_mixer_extract_records_the_run(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    # lazy: torch only for this test
    from vireid_bench.cli.mixer import mixer_group
    from vireid_bench.cli.synth_images import synth_images_command

    runner = CliRunner()
    root = tmp_path / "sysu"
    images = ["--layout", "sysu-mm01", "--ids", "6", "--per-cam", "2", "--size", "64x32"]
    assert runner.invoke(synth_images_command, [str(root), *images]).exit_code == 0
    out = tmp_path / "seed-run"
    small = ["--config", "synth-small", "--size", "64x32", "--batch-ids", "3", "--num-pos", "2"]
    where = ["--dataset", "sysu-mm01", "--root", str(root)]
    train = ["train", *where, "--out", str(out), *small, "--epochs", "1", "--iters", "1"]
    result = runner.invoke(mixer_group, [*train, "--seed", "13"])
    assert result.exit_code == 0, result.output
    checkpoint = str(out / "checkpoints/last.pt")
    extract = ["extract", "--checkpoint", checkpoint, *where, "--quiet"]
    result = runner.invoke(mixer_group, [*extract, "--out", str(tmp_path / "a.h5")])
    assert result.exit_code == 0, result.output
    dump = load_dump(tmp_path / "a.h5")
    assert (dump.seed, dump.run, dump.selection, dump.trained_on, dump.synthetic) == (
        13,
        "seed-run",
        "last",
        "sysu-mm01 train",
        True,
    )
    result = runner.invoke(
        mixer_group,
        [*extract, "--out", str(tmp_path / "b.h5"), "--selection", "test", "--run", "other"],
    )
    assert result.exit_code == 0, result.output
    dump = load_dump(tmp_path / "b.h5")
    assert (dump.seed, dump.run, dump.selection) == (13, "other", "test")
