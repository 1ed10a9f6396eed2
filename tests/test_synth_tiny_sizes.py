"""synth-images at very small render sizes (16 x 8) with many identities.

Parts placed with fixed pixel offsets (the chest bag starts 2 px below the shoulders) used
to end before they began at 16 x 8, and Pillow refused the box: ``ValueError: y1 must be
greater than or equal to y0``, an internal error of ``synth-images --size 16x8 --ids 20``.
"""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from PIL import Image

from vireid_bench.cli.main import cli


def test_tiny_render_size_with_many_identities(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "synth-images",
            str(tmp_path / "d"),
            "--layout",
            "sysu-mm01",
            "--size",
            "16x8",
            "--ids",
            "20",
            "--per-cam",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "d").glob("cam*/*/*.jpg"))
    assert len(files) == 20 * 6
    assert {Image.open(f).size for f in files} == {(8, 16)}
    pixels = np.asarray(Image.open(files[0]))
    assert pixels.std() > 0  # a figure was drawn, not an empty canvas
