"""``plot retrieval`` reads images only inside ``--images``: no path leaves the image root."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.image import imsave  # noqa: E402

from vireid_bench.results.plots import image_inside  # noqa: E402


@pytest.fixture
def image_root(tmp_path):
    root = tmp_path / "images"
    (root / "cam1").mkdir(parents=True)
    imsave(root / "cam1" / "a.png", np.zeros((4, 2, 3)))
    outside = tmp_path / "secret.png"
    imsave(outside, np.ones((4, 2, 3)))
    os.symlink(outside, root / "cam1" / "link.png")
    os.mkfifo(root / "cam1" / "fifo.png")
    return root


def test_an_image_under_the_root_is_read(image_root):
    assert image_inside(image_root, "cam1/a.png") == (image_root / "cam1" / "a.png").resolve()


@pytest.mark.parametrize(
    "relative", ["../secret.png", "cam1/../../secret.png", "cam1/link.png", "cam1/fifo.png"]
)
def test_paths_that_leave_the_root_or_are_not_files_are_refused(image_root, relative):
    assert image_inside(image_root, relative) is None


def test_an_absolute_path_is_refused(image_root, tmp_path):
    assert image_inside(image_root, str(tmp_path / "secret.png")) is None
