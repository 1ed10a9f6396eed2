"""MixER's training data path: decoded-image cache, loader workers, prefetch, --compile.

Real synthetic JPEGs, real loaders and real (tiny) training runs through the CLI.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from vireid_bench.cli.mixer import mixer_group  # noqa: E402
from vireid_bench.models.mixer.config import config_hash, load_config  # noqa: E402
from vireid_bench.models.mixer.data import (  # noqa: E402
    IdentityBalancedSampler,
    ImageListDataset,
    train_transforms,
)
from vireid_bench.models.mixer.index import image_index  # noqa: E402
from vireid_bench.models.mixer.pipeline import train_loader  # noqa: E402
from vireid_bench.synth.images import write_synthetic_dataset  # noqa: E402

SMALL = [
    "--config",
    "synth-small",
    "--size",
    "32x16",
    "--batch-ids",
    "3",
    "--num-pos",
    "2",
    "--quiet",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "sysu"
    write_synthetic_dataset(root, "sysu-mm01", ids=8, per_cam=2, size=(64, 32), seed=3)
    return root


def _dataset(root):
    config = load_config("sysu-mm01", "synth-small")
    frame = image_index("sysu-mm01", root, "train")
    labels = np.unique(frame["pid"], return_inverse=True)[1]
    data = ImageListDataset(frame, root, train_transforms(config["input"]), labels)
    sampler = IdentityBalancedSampler(labels, data.modality, 3, 2, iterations=4, seed=5)
    return config, data, sampler


def _batches(root, **train_settings):
    config, data, sampler = _dataset(root)
    config["train"].update(train_settings)
    loader, report = train_loader(data, sampler, config["train"], pin_memory=False)
    torch.manual_seed(11)
    batches = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches += [(images.clone(), labels.clone()) for images, labels, _, _ in loader]
    return batches, report


def _assert_same(a, b):
    assert len(a) == len(b) == 8
    for (images_a, labels_a), (images_b, labels_b) in zip(a, b, strict=True):
        assert torch.equal(labels_a, labels_b)
        assert torch.equal(images_a, images_b)


def test_cache_gives_identical_batches_and_reports_its_size(data_root):
    plain, none = _batches(data_root, workers=0, cache_images=False)
    cached, report = _batches(data_root, workers=0, cache_images=True, cache_limit_mb=64)
    assert none is None
    _assert_same(plain, cached)
    n = len(image_index("sysu-mm01", data_root, "train"))
    assert (report.cached, report.total, report.bytes_used) == (n, n, n * 64 * 32 * 3)
    assert f"{n} of {n} decoded images in memory" in report.line()
    # the augmentation is random: two epochs of the same seed differ from each other
    assert not torch.equal(plain[0][0], plain[4][0])


def test_cache_limit_bounds_it_and_the_rest_comes_from_disk(data_root):
    _, data, _ = _dataset(data_root)
    per_image = 64 * 32 * 3
    cached, used = data.fill_cache(3 * per_image + per_image // 2)
    assert (cached, used) == (3, 3 * per_image)
    assert [c is not None for c in data.cache] == [True] * 3 + [False] * (len(data) - 3)
    for index in (0, 2, 3, len(data) - 1):  # cached and uncached: the file's pixels
        from PIL import Image

        with Image.open(data_root / data.paths[index]) as handle:
            expected = np.asarray(handle.convert("RGB"))
        assert np.array_equal(np.asarray(data.decode(index)), expected)


def test_workers_and_prefetch_give_the_same_batches_with_and_without_cache(data_root):
    plain, _ = _batches(data_root, workers=2, prefetch_factor=3, cache_images=False)
    cached, _ = _batches(data_root, workers=2, prefetch_factor=3, cache_images=True)
    _assert_same(plain, cached)


def _train(root, out, *extra):
    args = ["train", "--dataset", "sysu-mm01", "--root", str(root), "--out", str(out)]
    return CliRunner().invoke(mixer_group, [*args, *SMALL, "--iters", "2", *extra])


def _losses(out):
    with (out / "train_log.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def test_training_with_cache_and_workers_runs_and_matches_uncached(data_root, tmp_path):
    plain = _train(data_root, tmp_path / "plain", "--epochs", "1", "--workers", "2")
    assert plain.exit_code == 0, plain.output
    cached = _train(
        data_root,
        tmp_path / "cached",
        "--epochs",
        "1",
        "--workers",
        "2",
        "--prefetch",
        "3",
        "--cache-images",
        "--cache-limit-mb",
        "8",
    )
    assert cached.exit_code == 0, cached.output
    assert "decoded images in memory" in cached.output
    losses = _losses(tmp_path / "cached")
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert losses == _losses(tmp_path / "plain")
    # the data-path keys may change on --resume and leave the configuration hash alone
    resumed = _train(data_root, tmp_path / "plain", "--epochs", "2", "--cache-images", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert len(_losses(tmp_path / "plain")) == 4


def test_runtime_keys_leave_the_config_hash_alone():
    small = load_config("sysu-mm01", "synth-small")
    # the hashes of the synthetic leaderboard entries (leaderboards/sysu-mm01.csv)
    assert config_hash(small) == "b3824d29c9"
    assert config_hash(load_config("sysu-mm01", "synth-baseline")) == "9974b1ffec"
    tuned = load_config(
        "sysu-mm01",
        "synth-small",
        [{"train": {"cache_images": True, "prefetch_factor": 4, "compile": True}}],
    )
    assert config_hash(tuned) == config_hash(small)
    assert config_hash(load_config("sysu-mm01", "synth-small", [{"train": {"seed": 1}}])) != (
        config_hash(small)
    )


def test_bad_data_path_settings_are_one_line_errors(data_root, tmp_path):
    result = _train(data_root, tmp_path / "x", "--set", "train.prefetch_factor=0")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: train.workers must be >= 0 and train.prefetch_factor >= 1"
    ]


def test_compile_failure_is_a_one_line_error_not_a_fallback(data_root, tmp_path):
    from torch._dynamo import register_backend

    @register_backend(name="vb_broken")
    def broken(graph_module, example_inputs):  # noqa: ARG001 - backend signature
        raise RuntimeError("no C++ compiler in this test")

    out = tmp_path / "broken"
    result = _train(
        data_root,
        out,
        "--epochs",
        "1",
        "--compile",
        "--set",
        "train.compile_backend=vb_broken",
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len([line for line in lines if line.startswith("error:")]) == 1
    assert lines[-1].startswith("error: --compile: torch.compile (backend vb_broken) failed")
    assert "no C++ compiler in this test" in lines[-1]
    assert not (out / "checkpoints" / "last.pt").exists()


def test_compile_unknown_backend_is_a_one_line_error(data_root, tmp_path):
    result = _train(
        data_root, tmp_path / "y", "--compile", "--set", "train.compile_backend=no_such_backend"
    )
    assert result.exit_code == 2, result.output
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith("error: --compile: torch.compile (backend no_such_backend) failed")
    )


def test_compile_trains_with_a_working_backend(data_root, tmp_path):
    out = tmp_path / "compiled"
    result = _train(
        data_root, out, "--epochs", "1", "--compile", "--set", "train.compile_backend=eager"
    )
    assert result.exit_code == 0, result.output
    assert "torch.compile (backend eager)" in result.output
    losses = _losses(out)
    assert len(losses) == 2 and all(np.isfinite(losses))
    state = torch.load(out / "checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("_orig_mod.") for k in state["model"])  # plain weights
