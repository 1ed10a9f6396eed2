"""MixER configuration: the paper's defaults, layering, validation, hash (no torch)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vireid_bench.models.mixer.config import (
    ConfigError,
    config_hash,
    load_config,
    packaged_configs,
    parse_override,
    to_toml,
)


@pytest.mark.parametrize("dataset", ["sysu-mm01", "regdb", "llcm"])
def test_dataset_configs_follow_the_paper(dataset):
    config = load_config(dataset)
    assert config["model"]["backbone"] == "resnet50" and config["model"]["last_stride"] == 1
    assert (config["input"]["height"], config["input"]["width"]) == (288, 144)
    assert (config["sampler"]["batch_ids"], config["sampler"]["num_pos"]) == (10, 4)
    optim = config["optim"]
    assert (optim["lr"], optim["epochs"], optim["milestones"], optim["gamma"]) == (
        0.0004,
        180,
        [80, 120],
        0.1,
    )
    assert all(config["loss"][t] for t in ("meid", "cc_e", "mrid", "cc_r", "ortho", "modality"))


def test_layers_override_in_order(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text("[optim]\nepochs = 3\nlr = 1\n")
    config = load_config("sysu-mm01", user, [parse_override("optim.epochs=5")])
    assert config["optim"]["epochs"] == 5
    assert config["optim"]["lr"] == 1.0  # int promoted to float
    assert load_config("sysu-mm01", "synth-small")["model"]["backbone"] == "resnet18"
    assert {"synth-small", "synth-baseline", "sysu-mm01"} <= set(packaged_configs())


def test_baseline_config_has_no_mixer_terms():
    config = load_config("sysu-mm01", "synth-baseline")
    assert config["model"]["related_branch"] is False
    assert [
        t
        for t in ("meid", "cc_e", "mrid", "cc_r", "ortho", "modality", "fusion")
        if config["loss"][t]
    ] == ["meid", "cc_e"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[optim]\nepoch = 3\n", "unknown key optim.epoch (valid: epochs"),
        ("[optimiser]\n", "unknown section [optimiser]"),
        ("[loss]\nfusion = 1\n", "loss.fusion must be true or false"),
        ("[model]\nbackbone = 'vgg'\n", "model.backbone 'vgg' unknown"),
        ("[model]\nrelated_branch = false\n", "loss.mrid needs z_r"),
        ("[optim\n", "not valid TOML"),
    ],
)
def test_bad_configs_are_rejected_with_a_reason(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        load_config("sysu-mm01", path)
    assert message in str(info.value)


def test_missing_config_file_names_the_packaged_ones():
    with pytest.raises(ConfigError, match="packaged: llcm"):
        load_config("sysu-mm01", "no-such-config")


def test_hash_is_stable_and_sensitive():
    a, b = load_config("sysu-mm01"), load_config("sysu-mm01")
    assert config_hash(a) == config_hash(b) and len(config_hash(a)) == 10
    b["loss"]["lambda_m"] = 0.25
    assert config_hash(a) != config_hash(b)


def test_toml_round_trip():
    import tomllib

    config = load_config("llcm", "synth-small")
    assert tomllib.loads(to_toml(config)) == config


def test_override_syntax():
    assert parse_override("model.backbone=resnet18") == {"model": {"backbone": "resnet18"}}
    assert parse_override("optim.milestones=[2, 3]") == {"optim": {"milestones": [2, 3]}}
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("epochs=3")


def test_cli_modules_do_not_import_torch():
    code = (
        "import sys, vireid_bench.cli.mixer, vireid_bench.synth.images; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_gives_a_one_line_install_hint(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from vireid_bench.cli.mixer import mixer_group

    monkeypatch.setitem(sys.modules, "torch", None)
    result = CliRunner().invoke(
        mixer_group,
        ["train", "--dataset", "sysu-mm01", "--root", str(tmp_path), "--out", str(tmp_path / "r")],
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: this command needs PyTorch: pip install 'vireid-bench[model]'"
    )
