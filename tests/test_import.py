"""``vireid-bench import``: real .mat (v5, v7.3), .npy, .npz, .h5 and .pt files written here.

Every format is imported through the real command line (click's CliRunner) and must give
the dump ``write_dump`` gives from the same arrays, scoring to the same numbers.
"""

from __future__ import annotations

import sys

import h5py
import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner

import vireid_bench
from vireid_bench.cli.main import cli
from vireid_bench.io.dump import load_dump, write_dump

# 3 infrared queries (SYSU cameras 3, 6) and 5 visible gallery images (cameras 1, 2, 4, 5)
Q_F = np.array([[1.0, 0.0, 0.0, 0.1], [0.0, 1.0, 0.0, 0.2], [0.0, 0.0, 1.0, 0.3]], dtype=np.float32)
Q_LABEL = np.array([1, 2, 3])
Q_CAM = np.array([3, 6, 3])
G_F = np.array(
    [
        [0.9, 0.1, 0.0, 0.0],
        [0.1, 0.9, 0.0, 0.0],
        [0.0, 0.1, 0.9, 0.0],
        [0.5, 0.5, 0.0, 0.0],
        [0.0, 0.0, 0.5, 0.5],
    ],
    dtype=np.float32,
)
G_LABEL = np.array([1, 2, 3, 1, 3])
G_CAM = np.array([1, 2, 4, 5, 1])
ARRAYS = {
    "query_f": Q_F,
    "query_label": Q_LABEL,
    "query_cam": Q_CAM,
    "gallery_f": G_F,
    "gallery_label": G_LABEL,
    "gallery_cam": G_CAM,
}
MODALITY_FLAGS = ["--query-modality", "infrared", "--gallery-modality", "visible"]


class Pickled:
    """An arbitrary object: torch.load(weights_only=True) must refuse to unpickle it."""


@pytest.fixture
def runner():
    return CliRunner()


def reference_dump(path):
    """The dump a user would write by hand from the same arrays."""
    return write_dump(
        path,
        features=np.concatenate([Q_F, G_F]),
        pid=np.concatenate([Q_LABEL, G_LABEL]),
        cam=np.concatenate([Q_CAM, G_CAM]),
        modality=np.array([1, 1, 1, 0, 0, 0, 0, 0]),
        model="ref",
    )


def run_import(runner, out, *args):
    return runner.invoke(cli, ["import", str(out), *map(str, args)])


def assert_same_as_reference(out, tmp_path):
    imported = load_dump(out)
    reference = load_dump(reference_dump(tmp_path / "reference.h5"))
    (a,), (b,) = imported.splits, reference.splits
    np.testing.assert_array_equal(a.features["default"], b.features["default"])
    for name in ("pid", "cam", "modality"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    columns = ["protocol", "query_modality", "rank1", "rank5", "mAP", "mINP", "queries"]
    scored = vireid_bench.score(out, "cross,mix,mix-id")[columns]
    expected = vireid_bench.score(tmp_path / "reference.h5", "cross,mix,mix-id")[columns]
    assert scored.equals(expected)


def assert_input_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_mat73(path, arrays):
    """Write arrays as MATLAB 7.3 does: HDF5 with a 512-byte user block, column-major."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        for name, value in arrays.items():
            dataset = handle.create_dataset(name, data=np.asarray(value).T)
            dataset.attrs["MATLAB_class"] = np.bytes_(
                "double" if value.dtype.kind == "f" else "int64"
            )
    with open(path, "r+b") as handle:
        handle.write(
            b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024"
        )


# ----------------------------------------------------------------------------- formats


def test_mat_v5_layumi_names_round_trip(runner, tmp_path):
    # scipy.io.savemat stores 1-D labels as 1 x N row vectors, as MATLAB does
    scipy.io.savemat(tmp_path / "feats.mat", ARRAYS)
    out = tmp_path / "out.h5"
    result = run_import(runner, out, tmp_path / "feats.mat", *MODALITY_FLAGS)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr and "3 query rows" in result.stderr
    assert_same_as_reference(out, tmp_path)


def test_mat_v5_with_matlab_doubles_as_labels(runner, tmp_path):
    # MATLAB saves labels as double column vectors; integral values are accepted
    doubles = {**ARRAYS, "query_label": Q_LABEL.astype(float)[:, None]}
    doubles["gallery_cam"] = G_CAM.astype(float)[:, None]
    scipy.io.savemat(tmp_path / "feats.mat", doubles)
    out = tmp_path / "out.h5"
    result = run_import(runner, out, tmp_path / "feats.mat", "--dataset", "sysu-mm01")
    assert result.exit_code == 0, result.output
    assert_same_as_reference(out, tmp_path)


def test_mat_v73_is_transposed_back(runner, tmp_path):
    write_mat73(tmp_path / "feats73.mat", {k: v.astype(np.float64) for k, v in ARRAYS.items()})
    with h5py.File(tmp_path / "feats73.mat", "r") as handle:
        assert handle["query_f"].shape == (4, 3)  # stored D x N, as MATLAB writes it
    out = tmp_path / "out.h5"
    result = run_import(runner, out, tmp_path / "feats73.mat", "--dataset", "sysu-mm01")
    assert result.exit_code == 0, result.output
    assert_same_as_reference(out, tmp_path)


def test_npy_files_named_by_stem_and_a_folder(runner, tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    for name, value in ARRAYS.items():
        np.save(folder / f"{name}.npy", value)
    out = tmp_path / "folder.h5"
    result = run_import(runner, out, folder, *MODALITY_FLAGS)
    assert result.exit_code == 0, result.output
    assert_same_as_reference(out, tmp_path)
    # the same arrays as single files under other names, with --map
    names = {"query_f": "q_feat", "query_label": "q_ids", "query_cam": "q_cams"}
    files = []
    for field, value in ARRAYS.items():
        stem = names.get(field, field)
        np.save(tmp_path / f"{stem}.npy", value)
        files.append(tmp_path / f"{stem}.npy")
    maps = [arg for field, stem in names.items() for arg in ("--map", f"{field}={stem}")]
    out2 = tmp_path / "files.h5"
    result = run_import(runner, out2, *files, *maps, *MODALITY_FLAGS)
    assert result.exit_code == 0, result.output
    assert_same_as_reference(out2, tmp_path)


def test_npz_archive_and_plain_h5(runner, tmp_path):
    np.savez(tmp_path / "feats.npz", **ARRAYS)
    out = tmp_path / "npz.h5"
    assert run_import(runner, out, tmp_path / "feats.npz", *MODALITY_FLAGS).exit_code == 0
    assert_same_as_reference(out, tmp_path)
    with h5py.File(tmp_path / "plain.h5", "w") as handle:  # written from Python: not transposed
        for name, value in ARRAYS.items():
            handle[name] = value
    out2 = tmp_path / "from-h5.h5"
    assert run_import(runner, out2, tmp_path / "plain.h5", *MODALITY_FLAGS).exit_code == 0
    assert_same_as_reference(out2, tmp_path)


def test_torch_dict_and_single_tensors(runner, tmp_path):
    torch = pytest.importorskip("torch")
    tensors = {name: torch.from_numpy(np.asarray(value)) for name, value in ARRAYS.items()}
    torch.save(tensors, tmp_path / "feats.pt")
    out = tmp_path / "pt.h5"
    result = run_import(runner, out, tmp_path / "feats.pt", *MODALITY_FLAGS)
    assert result.exit_code == 0, result.output
    assert_same_as_reference(out, tmp_path)
    # one tensor per file, named by the stem; a bfloat16 tensor is read as float
    files = []
    for name, tensor in tensors.items():
        torch.save(tensor, tmp_path / f"{name}.pt")
        files.append(tmp_path / f"{name}.pt")
    out2 = tmp_path / "pts.h5"
    assert run_import(runner, out2, *files, *MODALITY_FLAGS).exit_code == 0
    assert_same_as_reference(out2, tmp_path)


def test_torch_pickled_object_is_refused(runner, tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"query_f": torch.zeros(2, 2), "note": Pickled()}, tmp_path / "evil.pt")
    result = run_import(runner, tmp_path / "o.h5", tmp_path / "evil.pt")
    assert_input_error(result, "evil.pt: cannot be read with torch.load(weights_only=True)")
    assert not (tmp_path / "o.h5").exists()


def test_torch_missing_gives_an_install_hint(runner, tmp_path, monkeypatch):
    (tmp_path / "feats.pt").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    result = run_import(runner, tmp_path / "o.h5", tmp_path / "feats.pt")
    assert_input_error(result, "feats.pt: reading .pt files needs PyTorch: pip install torch")


# ----------------------------------------------------------------------------- modality


def test_modality_from_sysu_cameras_and_regdb_cameras(runner, tmp_path):
    np.savez(tmp_path / "sysu.npz", **ARRAYS)
    out = tmp_path / "sysu.h5"
    result = run_import(runner, out, tmp_path / "sysu.npz", "--dataset", "sysu-mm01")
    assert result.exit_code == 0, result.output
    assert load_dump(out).splits[0].modality.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert load_dump(out).dataset == "generic"  # no paths: the sysu convention needs them
    assert "dump's dataset is 'generic', not 'sysu-mm01'" in result.stderr
    regdb = {**ARRAYS, "query_cam": np.array([2, 2, 2]), "gallery_cam": np.ones(5, dtype=int)}
    np.savez(tmp_path / "regdb.npz", **regdb)
    out2 = tmp_path / "regdb.h5"
    assert run_import(runner, out2, tmp_path / "regdb.npz", "--dataset", "regdb").exit_code == 0
    assert load_dump(out2).splits[0].modality.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]


def test_modality_from_an_array_and_flag_wins(runner, tmp_path):
    np.savez(
        tmp_path / "m.npz",
        **ARRAYS,
        query_modality=np.array([1, 1, 0]),
        gallery_modality=np.zeros(5, dtype=np.int64),
    )
    out = tmp_path / "m.h5"
    assert run_import(runner, out, tmp_path / "m.npz").exit_code == 0
    assert load_dump(out).splits[0].modality.tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    out2 = tmp_path / "m2.h5"
    args = [tmp_path / "m.npz", "--query-modality", "infrared"]
    assert run_import(runner, out2, *args).exit_code == 0
    assert load_dump(out2).splits[0].modality.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]


def test_modality_unknown_llcm_and_bad_codes(runner, tmp_path):
    np.savez(tmp_path / "f.npz", **ARRAYS)
    result = run_import(runner, tmp_path / "o.h5", tmp_path / "f.npz")
    assert_input_error(result, "query_modality: unknown", "--query-modality")
    result = run_import(runner, tmp_path / "o.h5", tmp_path / "f.npz", "--dataset", "llcm")
    assert_input_error(result, "LLCM cameras record both modalities")
    unknown_cam = {**ARRAYS, "gallery_cam": np.array([1, 2, 4, 5, 7])}
    np.savez(tmp_path / "cam7.npz", **unknown_cam)
    result = run_import(runner, tmp_path / "o.h5", tmp_path / "cam7.npz", "--dataset", "sysu-mm01")
    assert_input_error(result, "cam7.npz: gallery_cam: camera(s) [7] not among")
    np.savez(tmp_path / "code.npz", **ARRAYS, query_modality=np.array([1, 2, 1]))
    result = run_import(
        runner, tmp_path / "o.h5", tmp_path / "code.npz", "--gallery-modality", "visible"
    )
    assert_input_error(result, "code.npz: query_modality: unknown modality code(s) [2]")


# ----------------------------------------------------------------------------- paths, duplicates


def test_paths_make_a_dataset_dump(runner, tmp_path):
    np.savez(tmp_path / "f.npz", **ARRAYS)
    q_paths = ["cam3/0001/0001.jpg", "cam6/0002/0001.jpg", "cam3/0003/0001.jpg"]
    g_paths = [f"cam{c}/{p:04d}/0001.jpg" for c, p in zip(G_CAM, G_LABEL, strict=True)]
    (tmp_path / "q.txt").write_text("\n".join(q_paths) + "\n")
    (tmp_path / "g.txt").write_text("\n".join(g_paths) + "\n")
    out = tmp_path / "o.h5"
    args = [tmp_path / "f.npz", "--dataset", "sysu-mm01"]
    paths = ["--query-paths", tmp_path / "q.txt", "--gallery-paths", tmp_path / "g.txt"]
    result = run_import(runner, out, *args, *paths)
    assert result.exit_code == 0, result.output
    dump = load_dump(out)
    assert dump.dataset == "sysu-mm01"
    assert dump.splits[0].path.tolist() == q_paths + g_paths
    only_query = run_import(runner, out, *args, "--query-paths", tmp_path / "q.txt")
    assert_input_error(only_query, "q.txt: path: given for the query only")
    (tmp_path / "short.txt").write_text("a.jpg\nb.jpg\n")
    short = run_import(runner, out, *args, "--query-paths", tmp_path / "short.txt", *paths[2:])
    assert_input_error(short, "short.txt: path: 2 lines do not match query_f's 3 rows")


def test_duplicates_by_path_and_by_row_are_dropped_and_reported(runner, tmp_path):
    # gallery row 0 repeats query row 0 (same features, pid, camera); gallery row 1 has
    # query row 1's path
    g_f = np.concatenate([Q_F[:1], G_F[1:]])
    g_cam = np.array([3, 6, 4, 5, 1])
    g_label = np.array([1, 2, 3, 1, 3])
    np.savez(
        tmp_path / "d.npz",
        **{**ARRAYS, "gallery_f": g_f, "gallery_cam": g_cam, "gallery_label": g_label},
    )
    out = tmp_path / "o.h5"
    result = run_import(runner, out, tmp_path / "d.npz", "--dataset", "sysu-mm01")
    assert result.exit_code == 0, result.output
    assert "dropped 1 duplicate row(s)" in result.stderr
    assert "gallery row 0 = query row 0 (identical features, pid and camera)" in result.stderr
    assert load_dump(out).splits[0].pid.shape == (7,)
    (tmp_path / "q.txt").write_text("a.jpg\nb.jpg\nc.jpg\n")
    (tmp_path / "g.txt").write_text("x.jpg\nb.jpg\ny.jpg\nz.jpg\nw.jpg\n")
    paths = ["--query-paths", tmp_path / "q.txt", "--gallery-paths", tmp_path / "g.txt"]
    result = run_import(runner, out, tmp_path / "d.npz", "--dataset", "sysu-mm01", *paths)
    assert result.exit_code == 0, result.output
    assert "dropped 2 duplicate row(s)" in result.stderr
    assert "gallery row 1 = query row 1 (same path 'b.jpg')" in result.stderr
    assert load_dump(out).splits[0].path.tolist() == [
        "a.jpg",
        "b.jpg",
        "c.jpg",
        "y.jpg",
        "z.jpg",
        "w.jpg",
    ]
    (tmp_path / "g2.txt").write_text("x.jpg\ny.jpg\na.jpg\nz.jpg\nw.jpg\n")  # pid 3 vs 1
    paths[3] = tmp_path / "g2.txt"
    result = run_import(runner, out, tmp_path / "d.npz", "--dataset", "sysu-mm01", *paths)
    assert_input_error(result, "g2.txt: path: 'a.jpg' is query row 0 and gallery row 2", "pid")


# ----------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"query_f": np.ones(3, dtype=np.float32)}, ["query_f: expected a 2-D array"]),
        ({"query_label": np.array([1, 2])}, ["query_label: length 2 does not match query_f's 3"]),
        ({"gallery_f": G_F[:, :3]}, ["gallery_f: dimension 3 does not match query_f's 4"]),
        (
            {"query_f": np.where(np.eye(3, 4) > 0, np.nan, 0).astype(np.float32)},
            ["query_f: 3 row(s) contain NaN or Inf (first at row 0)"],
        ),
        (
            {"query_label": np.array([1.0, 2.5, 3.0])},
            ["query_label: non-integer value 2.5 at row 1"],
        ),
        ({"query_cam": np.array(["a", "b", "c"])}, ["query_cam: expected numbers"]),
        ({"gallery_f": G_F.astype(np.int64)}, ["gallery_f: expected floating point"]),
        ({"gallery_label": np.ones((5, 2), dtype=int)}, ["gallery_label: expected a vector"]),
    ],
)
def test_malformed_arrays_are_one_line_errors(runner, tmp_path, change, fragments):
    np.savez(tmp_path / "bad.npz", **{**ARRAYS, **change})
    result = run_import(runner, tmp_path / "o.h5", tmp_path / "bad.npz", *MODALITY_FLAGS)
    assert_input_error(result, "bad.npz: ", *fragments)
    assert not (tmp_path / "o.h5").exists()


def test_transposed_features_get_a_hint(runner, tmp_path):
    np.savez(tmp_path / "t.npz", **{**ARRAYS, "query_f": np.zeros((4, 3), dtype=np.float32)})
    result = run_import(runner, tmp_path / "o.h5", tmp_path / "t.npz", *MODALITY_FLAGS)
    assert_input_error(
        result, "query_label: length 3 does not match query_f's 4 rows", "transposed?"
    )


def test_missing_arrays_list_what_is_present(runner, tmp_path):
    partial = {k: v for k, v in ARRAYS.items() if k != "gallery_cam"}
    scipy.io.savemat(tmp_path / "p.mat", partial)
    result = run_import(runner, tmp_path / "o.h5", tmp_path / "p.mat", *MODALITY_FLAGS)
    assert_input_error(
        result,
        "p.mat: gallery_cam: missing; arrays present: gallery_f, gallery_label, query_cam, "
        "query_f, query_label",
    )
    mapped = run_import(
        runner, tmp_path / "o.h5", tmp_path / "p.mat", "--map", "gallery_cam=g_cams"
    )
    assert_input_error(mapped, "g_cams: missing (the gallery_cam array)")


def test_bad_files_and_bad_map(runner, tmp_path):
    assert_input_error(
        run_import(runner, tmp_path / "o.h5", tmp_path / "nope.mat"), "nope.mat: no such file"
    )
    (tmp_path / "f.csv").write_text("1,2\n")
    assert_input_error(
        run_import(runner, tmp_path / "o.h5", tmp_path / "f.csv"), "f.csv: unknown kind of file"
    )
    (tmp_path / "junk.mat").write_bytes(b"junk" * 100)
    assert_input_error(
        run_import(runner, tmp_path / "o.h5", tmp_path / "junk.mat"), "junk.mat: not a MATLAB file"
    )
    np.savez(tmp_path / "f.npz", **ARRAYS)
    assert_input_error(
        run_import(runner, tmp_path / "o.h5", tmp_path / "f.npz", "--map", "query_f"),
        "--map: query_f: expected FIELD=NAME",
    )
    assert_input_error(
        run_import(runner, tmp_path / "o.h5", tmp_path / "f.npz", "--map", "feat=x"),
        "--map: feat: unknown field",
    )
    np.save(tmp_path / "query_f.npy", Q_F)
    assert_input_error(
        run_import(runner, tmp_path / "o.h5", tmp_path / "f.npz", tmp_path / "query_f.npy"),
        "query_f.npy: query_f: also given by",
    )
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_input_error(
        run_import(runner, tmp_path / "o.h5", tmp_path / "obj.npy"), "obj.npy: cannot be read"
    )
