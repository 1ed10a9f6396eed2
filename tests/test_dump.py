"""Feature dumps: round trip through real HDF5 files, and every bad input gets a clear error."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from vireid_bench.errors import DumpError
from vireid_bench.io.dump import FeatureSplit, load_dump, write_dump

RNG = np.random.default_rng(0)
N = 8
GOOD = {
    "features": {
        "z_e": RNG.normal(size=(N, 4)).astype(np.float32),
        "z_f": RNG.normal(size=(N, 6)).astype(np.float32),
    },
    "pid": np.array([1, 1, 2, 2, 3, 3, 4, 4]),
    "cam": np.array([1, 3, 1, 3, 2, 6, 2, 6]),
    "modality": np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=np.uint8),
    "paths": [
        f"cam{c}/{p:04d}/0001.jpg"
        for p, c in zip([1, 1, 2, 2, 3, 3, 4, 4], [1, 3, 1, 3, 2, 6, 2, 6], strict=True)
    ],
}


def write_good(path, **overrides):
    arrays = {**GOOD, **overrides}
    return write_dump(
        path,
        dataset="generic",
        model="m",
        default_features="z_e",
        cross_features="z_e",
        same_features="z_f",
        **arrays,
    )


def test_round_trip_keeps_every_field(tmp_path):
    path = write_good(tmp_path / "d.h5", description="hello")
    dump = load_dump(path)
    assert (dump.dataset, dump.model, dump.description) == ("generic", "m", "hello")
    assert (dump.default_features, dump.cross_features, dump.same_features) == ("z_e", "z_e", "z_f")
    assert dump.feature_dims == {"z_e": 4, "z_f": 6}
    (split,) = dump.splits
    np.testing.assert_array_equal(split.features["z_f"], GOOD["features"]["z_f"])
    np.testing.assert_array_equal(split.pid, GOOD["pid"])
    np.testing.assert_array_equal(split.cam, GOOD["cam"])
    np.testing.assert_array_equal(split.modality, GOOD["modality"])
    assert list(split.path) == GOOD["paths"]
    assert split.features["z_e"].dtype == np.float32 and split.pid.dtype == np.int64


def test_float16_storage_is_read_as_float32(tmp_path):
    path = write_dump(
        tmp_path / "h.h5",
        features=GOOD["features"]["z_e"],
        pid=GOOD["pid"],
        cam=GOOD["cam"],
        modality=GOOD["modality"],
        float16=True,
    )
    with h5py.File(path) as handle:
        assert handle["features/default"].dtype == np.float16
    split = load_dump(path).splits[0]
    assert split.features["default"].dtype == np.float32
    np.testing.assert_allclose(split.features["default"], GOOD["features"]["z_e"], atol=1e-2)


def test_trials_round_trip(tmp_path):
    splits = [
        FeatureSplit(
            features={"f": RNG.normal(size=(4, 3))},
            pid=np.array([1, 1, 2, 2]),
            cam=np.array([1, 2, 1, 2]),
            modality=np.array([0, 1, 0, 1]),
        )
        for _ in range(3)
    ]
    dump = load_dump(write_dump(tmp_path / "t.h5", trials=splits, dataset="regdb"))
    assert dump.has_trial_splits and len(dump.splits) == 3


def test_load_only_requested_feature_sets(tmp_path):
    path = write_good(tmp_path / "d.h5")
    dump = load_dump(path, feature_sets=[])
    assert set(dump.splits[0].features) == {"z_e", "z_f"}  # default/cross/same always loaded
    with pytest.raises(DumpError, match="no feature set 'nope'"):
        load_dump(path, feature_sets=["nope"])


# ------------------------------------------------------------------ bad input, one by one


def corrupt(path, action):
    with h5py.File(path, "a") as handle:
        action(handle)
    return path


def replace(name, data):
    def action(handle):
        del handle[name]
        handle[name] = data

    return action


@pytest.mark.parametrize(
    ("action", "field", "message"),
    [
        (lambda h: h.__delitem__("pid"), "pid", "missing"),
        (lambda h: h.__delitem__("cam"), "cam", "missing"),
        (lambda h: h.__delitem__("modality"), "modality", "missing"),
        (lambda h: h.__delitem__("features"), "features", "missing"),
        (replace("cam", np.arange(5)), "cam", "length 5 does not match 8 images"),
        (replace("pid", np.arange(8.0)), "pid", "expected integers"),
        (
            replace("modality", np.array([0, 1, 2, 0, 1, 0, 1, 7])),
            "modality",
            r"unknown modality code\(s\) \[2, 7\]",
        ),
        (replace("features/z_e", np.ones((8, 2, 2), np.float32)), "features/z_e", "2-D"),
        (replace("features/z_e", np.ones((8, 2), np.int32)), "features/z_e", "floating point"),
        (
            replace("features/z_e", np.ones((7, 4), np.float32)),
            "features/z_e",
            "7 rows do not match 8 images",
        ),
        (
            replace("features/z_e", np.where(np.eye(8, 4) > 0, np.nan, 1.0).astype(np.float32)),
            "features/z_e",
            r"4 row\(s\) contain NaN or Inf \(first at row 0\)",
        ),
        (
            replace("features/z_f", np.full((8, 6), np.inf, np.float32)),
            "features/z_f",
            r"8 row\(s\) contain NaN or Inf",
        ),
        (lambda h: h.attrs.__delitem__("vireid_bench_format"), "vireid_bench_format", "missing"),
        (
            lambda h: h.attrs.__setitem__("vireid_bench_format", 2),
            "vireid_bench_format",
            "unsupported format version 2",
        ),
        (lambda h: h.attrs.__delitem__("dataset"), "dataset", "missing"),
        (
            lambda h: h.attrs.__setitem__("same_features", "z_x"),
            "same_features",
            "names feature set 'z_x'",
        ),
        (
            lambda h: h.attrs.__delitem__("default_features"),
            "default_features",
            "required when there are several feature sets",
        ),
    ],
)
def test_bad_dumps_fail_with_file_and_field(tmp_path, action, field, message):
    path = corrupt(write_good(tmp_path / "bad.h5"), action)
    with pytest.raises(DumpError, match=message) as info:
        load_dump(path)
    error = info.value
    assert error.field == field
    assert str(error).startswith(f"{path}: {field}: ")
    assert "\n" not in str(error)


def test_not_hdf5_and_missing_file(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(DumpError, match="not an HDF5 file"):
        load_dump(text)
    with pytest.raises(DumpError, match="file not found"):
        load_dump(tmp_path / "absent.h5")


def test_missing_trial_group_is_named(tmp_path):
    splits = [
        FeatureSplit(
            features={"f": np.ones((2, 2))},
            pid=np.array([1, 1]),
            cam=np.array([1, 2]),
            modality=np.array([0, 1]),
        )
    ] * 3
    path = write_dump(tmp_path / "t.h5", trials=splits)
    corrupt(path, lambda h: h.__delitem__("trials/1"))
    with pytest.raises(DumpError, match="trials/1: missing"):
        load_dump(path)


def test_writer_validates_before_writing(tmp_path):
    target = tmp_path / "w.h5"
    with pytest.raises(DumpError, match="modality"):
        write_good(target, modality=np.array([0, 1, 0, 1, 0, 1, 0, 3]))
    with pytest.raises(DumpError, match="pid: missing"):
        write_dump(target, features=np.ones((2, 2)), pid=None, cam=[1, 2], modality=[0, 1])
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_empty_dump_is_rejected(tmp_path):
    with pytest.raises(DumpError, match="no images"):
        write_dump(
            tmp_path / "e.h5",
            features=np.ones((0, 3)),
            pid=np.array([], np.int64),
            cam=np.array([], np.int64),
            modality=np.array([], np.uint8),
        )
