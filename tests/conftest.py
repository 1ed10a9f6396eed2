"""Shared fixtures: small real HDF5 dumps written with the toolkit's own writer."""

from __future__ import annotations

import numpy as np
import pytest

from vireid_bench.io.dump import write_dump
from vireid_bench.synth.dumps import write_synth_dump


@pytest.fixture
def tiny_dump(tmp_path):
    """A 40-image generic dump: 5 ids x (2 visible + 2 infrared cameras) x 2 images."""
    return write_synth_dump(
        tmp_path / "tiny.h5",
        ids=5,
        cameras="1,2:visible,3,4:infrared",
        per_cam=2,
        dim=16,
        seed=3,
        float16=False,
    )


@pytest.fixture
def make_dump(tmp_path):
    """Factory writing a dump from arrays into tmp_path and returning its path."""
    counter = iter(range(10_000))

    def make(**arrays):
        path = tmp_path / f"dump{next(counter)}.h5"
        arrays.setdefault("cam", np.ones(len(arrays["pid"]), dtype=np.int64))
        return write_dump(path, **arrays)

    return make
