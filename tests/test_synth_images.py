"""synth-images: layouts, split files, modality properties, determinism (no torch needed)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("PIL")

from PIL import Image  # noqa: E402

from vireid_bench.cli.synth_images import synth_images_command  # noqa: E402
from vireid_bench.models.mixer.index import image_index  # noqa: E402
from vireid_bench.synth.images import (  # noqa: E402
    make_camera,
    make_identity,
    render,
    write_synthetic_dataset,
)


def _ids(path):
    return [int(v) for v in path.read_text().strip().split(",") if v]


def test_sysu_layout_and_split_files(tmp_path):
    result = CliRunner().invoke(
        synth_images_command,
        [
            str(tmp_path),
            "--layout",
            "sysu-mm01",
            "--ids",
            "10",
            "--per-cam",
            "2",
            "--size",
            "32x16",
        ],
    )
    assert result.exit_code == 0, result.output
    # 10 ids x 6 cameras x 2 images
    assert len(list(tmp_path.glob("cam*/*/*.jpg"))) == 120
    assert (tmp_path / "cam3/0007/0002.jpg").is_file()
    train, val, test = (_ids(tmp_path / f"exp/{s}_id.txt") for s in ("train", "val", "test"))
    assert sorted(train + val + test) == list(range(1, 11))
    assert len(test) == 5 and len(val) == 1  # SYSU-MM01 always has validation ids
    with Image.open(tmp_path / "cam1/0001/0001.jpg") as image:
        assert image.size == (16, 32) and image.mode == "RGB"


def test_sysu_index_modalities_and_cameras(tmp_path):
    write_synthetic_dataset(tmp_path, "sysu-mm01", ids=6, per_cam=1, size=(32, 16), seed=1)
    test = image_index("sysu-mm01", tmp_path, "test")
    train = image_index("sysu-mm01", tmp_path, "train")
    assert set(test.pid) & set(train.pid) == set()
    assert len(test) + len(train) == 6 * 6
    assert set(test[test.modality == 1].cam) == {3, 6}
    assert set(test[test.modality == 0].cam) == {1, 2, 4, 5}
    assert list(test.columns) == ["path", "pid", "cam", "modality"]
    assert all((tmp_path / p).is_file() for p in test.path)


def test_regdb_layout_has_ten_trials(tmp_path):
    write_synthetic_dataset(tmp_path, "regdb", ids=6, per_cam=2, size=(32, 16), seed=0)
    assert len(list((tmp_path / "idx").glob("*.txt"))) == 40
    lines = (tmp_path / "idx/test_thermal_4.txt").read_text().splitlines()
    assert len(lines) == 3 * 2  # half of 6 ids, 2 images each
    path, label = lines[0].split()
    assert path.startswith("Thermal/") and (tmp_path / path).is_file() and label == "0"
    frame = image_index("regdb", tmp_path, "train", trial=4)
    assert set(frame.cam) == {1, 2} and len(frame) == 12
    assert set(frame.pid) == {0, 1, 2}  # RegDB labels: 0-based within the split
    test_paths = set(image_index("regdb", tmp_path, "test", trial=4).path)
    assert set(frame.path).isdisjoint(test_paths)


def test_llcm_layout(tmp_path):
    write_synthetic_dataset(tmp_path, "llcm", ids=4, per_cam=1, size=(32, 16), seed=0)
    test_ids = _ids(tmp_path / "idx/test_id.txt")
    train = image_index("llcm", tmp_path, "train")
    test = image_index("llcm", tmp_path, "test")
    assert set(test.pid) == set(test_ids)
    # training labels are the list files' 0-based labels, one per train id
    assert set(train.pid) == set(range(len(_ids(tmp_path / "idx/train_id.txt"))))
    assert set(test[test.modality == 0].cam) == {1, 2, 3}
    assert set(test[test.modality == 1].cam) == {1, 2, 4}
    assert all(p.startswith("train_nir/") for p in train[train.modality == 1].path)


def test_infrared_is_colour_free_and_visible_is_not():
    ident, camera = make_identity(0, 3), make_camera(0, "sysu-mm01", 3)
    infrared = render(ident, camera, True, np.random.default_rng(0), size=(64, 32))
    visible = render(ident, camera, False, np.random.default_rng(0), size=(64, 32))
    assert infrared.shape == visible.shape == (64, 32, 3) and infrared.dtype == np.uint8
    assert np.array_equal(infrared[..., 0], infrared[..., 1])
    assert np.array_equal(infrared[..., 1], infrared[..., 2])
    assert np.abs(visible[..., 0].astype(int) - visible[..., 2]).mean() > 5


def test_colour_does_not_reach_the_infrared_rendering():
    """Two identities that differ only in colours give the same infrared image."""
    from dataclasses import replace

    ident = make_identity(0, 5)
    recoloured = replace(ident, shirt_rgb=(1.0, 0.0, 0.0), pants_rgb=(0.0, 0.0, 1.0))
    camera = make_camera(0, "sysu-mm01", 6)
    a = render(ident, camera, True, np.random.default_rng(7), size=(32, 16))
    b = render(recoloured, camera, True, np.random.default_rng(7), size=(32, 16))
    assert np.array_equal(a, b)
    c = render(ident, camera, False, np.random.default_rng(7), size=(32, 16))
    d = render(recoloured, camera, False, np.random.default_rng(7), size=(32, 16))
    assert not np.array_equal(c, d)


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        write_synthetic_dataset(tmp_path / name, "sysu-mm01", ids=3, per_cam=1, size=(32, 16))
    for path in (tmp_path / "a").rglob("*.jpg"):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()


def test_bad_size_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(
        synth_images_command, [str(tmp_path), "--layout", "regdb", "--size", "big"]
    )
    assert result.exit_code == 2 and "HEIGHTxWIDTH" in result.output
