"""synth-images calibration knobs: --shared, --nuisance, --preset (no torch needed)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("PIL")

from vireid_bench.cli.synth_images import synth_images_command  # noqa: E402
from vireid_bench.errors import VireidBenchError  # noqa: E402
from vireid_bench.synth.defaults import SYNTH_IMAGE_PRESETS  # noqa: E402
from vireid_bench.synth.images import (  # noqa: E402
    make_camera,
    make_identity,
    render,
    write_synthetic_dataset,
)

PARTS = ("shirt", "pattern", "pants", "shoes", "hair", "bag", "skin")


def _image_rng(pid, cam, index):
    # the per-image generator write_synthetic_dataset uses
    digest = hashlib.sha256(
        repr(("image", 0, "sysu-mm01", pid, cam, int(cam == 3), index)).encode()
    )
    return np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))


def _pixels_digest(**knobs):
    shared = knobs.get("shared", 0.0)
    nuisance = knobs.get("nuisance", 1.0)
    digest = hashlib.sha256()
    for pid in (1, 2, 3):
        for cam in (1, 3):
            pixels = render(
                make_identity(0, pid, shared) if knobs else make_identity(0, pid),
                make_camera(0, "sysu-mm01", cam, nuisance)
                if knobs
                else make_camera(0, "sysu-mm01", cam),
                cam == 3,
                _image_rng(pid, cam, 1),
                size=(32, 16),
                **({"nuisance": nuisance} if knobs else {}),
            )
            digest.update(pixels.tobytes())
    return digest.hexdigest()


# the digest of these six renders before the knobs existed (commit c8cc55b)
BEFORE = "052a83be59b205a0fdac803f06fdd3b06a8510f8293d88fa28a30b75f8425ef4"


def test_defaults_render_what_earlier_versions_rendered():
    assert _pixels_digest() == BEFORE
    assert _pixels_digest(shared=0.0, nuisance=1.0) == BEFORE
    assert _pixels_digest(shared=0.3) != BEFORE
    assert _pixels_digest(nuisance=0.5) != BEFORE


def test_default_dataset_files_equal_explicit_neutral_knobs(tmp_path):
    write_synthetic_dataset(tmp_path / "a", "sysu-mm01", ids=4, per_cam=1, size=(32, 16))
    write_synthetic_dataset(
        tmp_path / "b", "sysu-mm01", ids=4, per_cam=1, size=(32, 16), shared=0.0, nuisance=1.0
    )
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*"))
    assert files_a == files_b and len(files_a) == 4 * 6 + 4
    for name in files_a:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert "shared" not in (tmp_path / "a" / "SYNTHETIC.txt").read_text()


def test_shared_pulls_emissivity_to_visible_luminance():
    plain = make_identity(0, 7)
    full = make_identity(0, 7, shared=1.0)
    half = make_identity(0, 7, shared=0.5)
    for part in PARTS:
        r, g, b = getattr(plain, f"{part}_rgb")
        target = 0.15 + 0.75 * (0.299 * r + 0.587 * g + 0.114 * b)
        assert getattr(full, f"{part}_ir") == pytest.approx(target)
        mid = (getattr(plain, f"{part}_ir") + target) / 2
        assert getattr(half, f"{part}_ir") == pytest.approx(mid)
        assert getattr(full, f"{part}_rgb") == getattr(plain, f"{part}_rgb")
    assert full.height == plain.height and full.pattern == plain.pattern


def test_shared_makes_infrared_grey_levels_predictable_from_colour():
    def correlation(shared):
        ir, luma = [], []
        for pid in range(1, 60):
            ident = make_identity(0, pid, shared)
            r, g, b = ident.shirt_rgb
            ir.append(ident.shirt_ir)
            luma.append(0.299 * r + 0.587 * g + 0.114 * b)
        return np.corrcoef(ir, luma)[0, 1]

    assert abs(correlation(0.0)) < 0.35  # independent draws
    assert correlation(1.0) == pytest.approx(1.0)
    assert correlation(0.0) < correlation(0.5) < correlation(1.0)


def test_nuisance_zero_renders_a_person_alike_in_one_camera():
    def distinct(nuisance):
        ident, camera = make_identity(0, 3), make_camera(0, "sysu-mm01", 1, nuisance)
        images = [
            render(ident, camera, False, _image_rng(3, 1, n), size=(32, 16), nuisance=nuisance)
            for n in range(1, 9)
        ]
        # a mirrored image counts as the same view (facing is not a nuisance knob)
        keys = {min(i.tobytes(), i[:, ::-1].tobytes()) for i in images}
        return len(keys)

    assert distinct(0.0) == 1
    assert distinct(1.0) == 8


def test_preset_and_explicit_options(tmp_path):
    preset = SYNTH_IMAGE_PRESETS["learnable"]
    out = tmp_path / "p"
    result = CliRunner().invoke(
        synth_images_command,
        [str(out), "--layout", "regdb", "--preset", "learnable", "--ids", "4", "--size", "32x16"],
    )
    assert result.exit_code == 0, result.output
    text = (out / "SYNTHETIC.txt").read_text()
    assert "ids=4 " in text and "size=32x16" in text  # explicit options win
    assert f"per_cam={preset['per_cam']}" in text
    assert f"shared={preset['shared']}" in text and f"nuisance={preset['nuisance']}" in text
    assert "of 4 identities" in result.output


def test_knob_out_of_range_is_refused(tmp_path):
    result = CliRunner().invoke(
        synth_images_command, [str(tmp_path / "x"), "--layout", "regdb", "--shared", "1.5"]
    )
    assert result.exit_code == 2
    assert "--shared" in result.output
    with pytest.raises(VireidBenchError, match="--nuisance -1"):
        write_synthetic_dataset(tmp_path / "y", "regdb", ids=2, nuisance=-1.0)
