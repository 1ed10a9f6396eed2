"""End to end on synthetic images: synth-images -> index -> train -> extract -> score.

Small on purpose (2 CPU cores): 6 identities, 64 x 32 images, ResNet-18, 2 iterations.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from vireid_bench.cli.mixer import mixer_group  # noqa: E402
from vireid_bench.cli.synth_images import synth_images_command  # noqa: E402
from vireid_bench.engine.scoring import score  # noqa: E402
from vireid_bench.io.dump import load_dump  # noqa: E402
from vireid_bench.io.inspection import dump_findings  # noqa: E402
from vireid_bench.models.mixer.data import (  # noqa: E402
    ImageListDataset,
    collate,
    train_transforms,
)
from vireid_bench.models.mixer.index import image_index  # noqa: E402

SMALL = ["--config", "synth-small", "--size", "64x32", "--batch-ids", "3", "--num-pos", "2"]


def _invoke(command, args):
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "sysu"
    _invoke(
        synth_images_command,
        [str(root), "--layout", "sysu-mm01", "--ids", "6", "--per-cam", "2", "--size", "64x32"],
    )
    return root


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mixer"
    args = ["train", "--dataset", "sysu-mm01", "--root", str(data_root), "--out", str(out)]
    result = _invoke(mixer_group, [*args, *SMALL, "--epochs", "1", "--iters", "2"])
    assert "random weights" in result.output
    return out, args


@pytest.fixture(scope="module")
def dump_path(trained, data_root):
    out, _ = trained
    path = out / "feats.h5"
    _invoke(
        mixer_group,
        [
            "extract",
            "--checkpoint",
            str(out / "checkpoints/last.pt"),
            "--dataset",
            "sysu-mm01",
            "--root",
            str(data_root),
            "--out",
            str(path),
            "--float16",
            "--quiet",
        ],
    )
    return path


def test_training_writes_checkpoint_config_and_log(trained):
    out, _ = trained
    state = torch.load(out / "checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 2 and state["dataset"] == "sysu-mm01"
    assert (out / "config.toml").is_file()
    with (out / "train_log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for term in ("loss", "meid", "cc_e", "mrid", "cc_r", "ortho", "modality", "fusion"):
        assert math.isfinite(float(rows[-1][term]))
    assert float(rows[-1]["images_per_s"]) > 0


def test_extracted_dump_is_valid_and_in_index_order(dump_path, data_root):
    dump = load_dump(dump_path)
    assert dump.dataset == "sysu-mm01"
    assert dump.model.startswith("MixER-resnet18@") and len(dump.model.split("@")[1]) == 10
    assert (dump.cross_features, dump.same_features) == ("z_e", "z_f")
    assert "SYNTHETIC images" in dump.description
    assert dump.feature_dims == {"z_e": 512, "z_r": 512, "z_f": 1024}
    frame = image_index("sysu-mm01", data_root, "test")
    split = dump.splits[0]
    assert list(split.path) == frame["path"].tolist()
    assert np.array_equal(split.pid, frame["pid"]) and np.array_equal(split.cam, frame["cam"])
    assert np.array_equal(split.modality, frame["modality"])
    assert not [f for f in dump_findings(dump) if "zero-norm" in f or "NaN" in f]


def test_scoring_every_setting(dump_path):
    frame = score(dump_path, "all")
    assert set(frame["protocol"]) == {
        "mix",
        "mix-cam",
        "mix-cam-id",
        "mix-id",
        "mix-p",
        "cross",
        "uni",
    }
    assert (frame["status"] == "ok").all(), frame[["protocol", "status"]]
    assert frame[["rank1", "mAP", "mINP"]].notna().all().all()
    # mixer extract records the authors' recipe (docs/mixer.md); 'policy' scores the paper's
    assert set(frame["features"]) == {"vv: z_e; ii: 0.7*z_r + 0.3; vi: z_e"}
    assert set(score(dump_path, "mix", recipe="policy")["features"]) == {"z_e/z_f"}
    for features in ("z_e", "z_r"):
        single = score(dump_path, "mix-id,cross", features=features)
        assert (single["status"] == "ok").all() and set(single["features"]) == {features}


def test_resume_continues_and_refuses_to_overwrite(trained):
    out, args = trained
    again = CliRunner().invoke(mixer_group, [*args, *SMALL, "--epochs", "1", "--iters", "2"])
    assert again.exit_code == 2 and "--resume" in again.output
    changed = CliRunner().invoke(
        mixer_group, [*args, *SMALL, "--epochs", "2", "--iters", "3", "--resume"]
    )
    assert changed.exit_code == 2 and "sampler.iters_per_epoch" in changed.output
    _invoke(mixer_group, [*args, *SMALL, "--epochs", "2", "--iters", "2", "--resume", "--quiet"])
    state = torch.load(out / "checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 4
    with (out / "train_log.csv").open() as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["1", "1", "2", "2"]


def test_a_few_steps_lower_the_training_loss(data_root):
    from vireid_bench.models.mixer.config import DEFAULTS
    from vireid_bench.models.mixer.losses import MixerCriterion
    from vireid_bench.models.mixer.model import MixER

    frame = image_index("sysu-mm01", data_root, "train")
    frame = frame.groupby(["pid", "modality"]).head(2).reset_index(drop=True)
    labels = np.searchsorted(np.unique(frame["pid"]), frame["pid"])
    no_augmentation = {  # 32 x 16 keeps the five steps cheap on two cores
        "height": 32,
        "width": 16,
        "pad": 0,
        "flip_p": 0.0,
        "erasing_p": 0.0,
        "channel_exchange_p": 0.0,
        "grayscale_p": 0.0,
    }
    data = ImageListDataset(frame, data_root, train_transforms(no_augmentation), labels)
    images, targets, modality, _ = collate([data[i] for i in range(len(data))])
    torch.manual_seed(0)
    model = MixER(num_classes=int(labels.max()) + 1, backbone="resnet18").train()
    criterion = MixerCriterion(DEFAULTS["loss"])
    optimizer = torch.optim.Adam(model.parameters(), lr=4e-4)
    losses = []
    for _ in range(5):
        loss, _ = criterion(model(images, modality), targets, modality)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses


def test_baseline_dump_has_z_e_only(data_root, tmp_path):
    out = tmp_path / "baseline"
    args = ["train", "--dataset", "sysu-mm01", "--root", str(data_root), "--out", str(out)]
    small = [a if a != "synth-small" else "synth-baseline" for a in SMALL]
    _invoke(mixer_group, [*args, *small, "--epochs", "1", "--iters", "1", "--quiet"])
    path = tmp_path / "baseline.h5"
    _invoke(
        mixer_group,
        [
            "extract",
            "--checkpoint",
            str(out / "checkpoints/last.pt"),
            "--dataset",
            "sysu-mm01",
            "--root",
            str(data_root),
            "--out",
            str(path),
            "--quiet",
            "--name",
            "baseline",
        ],
    )
    dump = load_dump(path)
    assert list(dump.feature_dims) == ["z_e"] and dump.model.startswith("baseline@")
    assert (dump.cross_features, dump.same_features) == ("z_e", "z_e")


def test_input_errors_are_one_line(data_root, tmp_path):
    result = CliRunner().invoke(
        mixer_group,
        [
            "train",
            "--dataset",
            "sysu-mm01",
            "--root",
            str(data_root),
            "--out",
            str(tmp_path),
            "--set",
            "optim.epoch=3",
        ],
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: override: unknown key optim.epoch")
    bogus = tmp_path / "bogus.pt"
    torch.save({"hello": 1}, bogus)
    result = CliRunner().invoke(
        mixer_group,
        [
            "extract",
            "--checkpoint",
            str(bogus),
            "--dataset",
            "sysu-mm01",
            "--root",
            str(data_root),
            "--out",
            str(tmp_path / "x.h5"),
        ],
    )
    assert result.exit_code == 2 and "not a MixER checkpoint" in result.output


def test_dump_passes_inspect_and_scores_from_the_command_line(dump_path):
    from vireid_bench.cli.main import cli

    inspected = CliRunner().invoke(cli, ["inspect", str(dump_path)])
    assert inspected.exit_code == 0, inspected.output
    assert "z_e / z_e / z_f" in inspected.output
    scored = CliRunner().invoke(
        cli, ["score", str(dump_path), "--protocol", "all", "--format", "csv"]
    )
    assert scored.exit_code == 0, scored.output
    assert scored.output.count("\n") >= 15  # header + one row per setting and query modality


def test_resumed_run_equals_uninterrupted_run(data_root, tmp_path):
    def run(out, epochs, resume=False):
        args = ["train", "--dataset", "sysu-mm01", "--root", str(data_root), "--out", str(out)]
        extra = ["--resume"] if resume else []
        _invoke(
            mixer_group, [*args, *SMALL, "--epochs", str(epochs), "--iters", "1", "--quiet", *extra]
        )
        return torch.load(out / "checkpoints/last.pt", map_location="cpu", weights_only=True)

    straight = run(tmp_path / "straight", 2)
    run(tmp_path / "split", 1)
    resumed = run(tmp_path / "split", 2, resume=True)
    assert resumed["epoch"] == straight["epoch"] == 2
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_pretrained_flag_loads_a_local_state_dict(data_root, tmp_path):
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    args = [
        "train",
        "--dataset",
        "sysu-mm01",
        "--root",
        str(data_root),
        "--out",
        str(tmp_path / "run"),
        "--pretrained",
        str(weights),
    ]
    result = _invoke(mixer_group, [*args, *SMALL, "--epochs", "1", "--iters", "1", "--quiet"])
    assert f"loaded backbone weights from {weights}" in result.output
    assert "random weights" not in result.output
