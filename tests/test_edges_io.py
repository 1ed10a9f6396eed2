"""Reliability at the edges of the dump reader and writer (issue 11, io area).

Real HDF5 files throughout: dumps that borrow data from other files (external links,
virtual datasets, external raw data), inputs that are not regular files, truncated files,
the mode and folder of written dumps, values that overflow when stored as float16, absurd
synthetic sizes, and valid but suspicious data (collapsed features, negative person ids,
paths that leave the image root) that ``load_dump`` warns about and ``inspect`` lists.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from vireid_bench.cli.main import cli
from vireid_bench.errors import DumpError
from vireid_bench.io.digest import dump_sha256, dump_sources
from vireid_bench.io.dump import load_dump, write_dump
from vireid_bench.io.inspection import dump_findings
from vireid_bench.synth.dumps import SynthStrengths, write_synth_dump

N = 8
EXECUTABLE = shutil.which("vireid-bench") or str(Path(sys.executable).with_name("vireid-bench"))
REFUSAL = "follow it with --allow-external (allow_external=True)"


def arrays(**overrides) -> dict:
    """An 8-image dump's arrays: 4 ids in both modalities, two feature sets, paths."""
    rng = np.random.default_rng(0)
    pid = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    cam = np.array([1, 3, 1, 3, 2, 6, 2, 6])
    return {
        "features": {
            "z_e": rng.normal(size=(N, 4)).astype(np.float32),
            "z_f": rng.normal(size=(N, 6)).astype(np.float32),
        },
        "pid": pid,
        "cam": cam,
        "modality": np.array([0, 1] * 4, dtype=np.uint8),
        "paths": [f"cam{c}/{p:04d}/0001.jpg" for p, c in zip(pid, cam, strict=True)],
        "default_features": "z_e",
        **overrides,
    }


def write_good(path, **overrides) -> Path:
    return write_dump(path, dataset="generic", model="m", **arrays(**overrides))


def run_cli(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result) -> str:
    """Exit 2, nothing on stdout, one ``error:`` line on stderr; return that line."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def with_external_features(dump: Path, other: Path, link_name: str = "other.h5") -> None:
    """Move ``features/z_e`` of ``dump`` into ``other`` and link it back as an external link."""
    with h5py.File(dump, "a") as handle:
        data = handle["features/z_e"][()]
        del handle["features/z_e"]
        handle["features/z_e"] = h5py.ExternalLink(link_name, "/z_e")
    with h5py.File(other, "w") as handle:
        handle["z_e"] = data


def with_virtual_features(dump: Path, source: Path) -> None:
    """Store ``features/z_e`` in ``source`` and map it into ``dump`` as a virtual dataset."""
    with h5py.File(dump, "a") as handle:
        data = handle["features/z_e"][()]
        del handle["features/z_e"]
        layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
        layout[:] = h5py.VirtualSource(source.name, "z_e", shape=data.shape)
        handle.create_virtual_dataset("features/z_e", layout, fillvalue=0)
    with h5py.File(source, "w") as handle:
        handle["z_e"] = data


# ------------------------------------------------------------------ writing: mode and folder


def test_dump_mode_follows_the_umask(tmp_path):
    for umask in (0o022, 0o002, 0o077):
        previous = os.umask(umask)
        try:
            path = write_good(tmp_path / f"d{umask:o}.h5")
        finally:
            os.umask(previous)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, oct(umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d2.h5", "d22.h5", "d77.h5"]


def test_missing_folder_is_an_error_unless_parents(tmp_path):
    target = tmp_path / "new" / "deeper" / "d.h5"
    with pytest.raises(DumpError) as caught:
        write_good(target)
    assert str(caught.value) == (
        f"{target}: cannot be written: folder {target.parent} does not exist "
        "(parents=True creates it)"
    )
    assert not (tmp_path / "new").exists()
    assert write_good(target, parents=True) == target
    assert load_dump(target).model == "m"
    synth = tmp_path / "other" / "s.h5"
    with pytest.raises(DumpError, match="does not exist"):
        write_synth_dump(synth, ids=3, per_cam=1, dim=4)
    assert write_synth_dump(synth, ids=3, per_cam=1, dim=4, parents=True).exists()


# ------------------------------------------------------------------ external links, VDS


def test_external_link_is_refused_by_default(tmp_path):
    dump = write_good(tmp_path / "d.h5")
    with_external_features(dump, tmp_path / "other.h5")
    expected = f"{dump}: features/z_e: external link to other.h5; {REFUSAL}"
    with pytest.raises(DumpError) as caught:
        load_dump(dump)
    assert str(caught.value) == expected
    with pytest.raises(DumpError) as caught:
        dump_sha256(dump)
    assert str(caught.value) == expected
    assert one_line_error(run_cli("score", dump, "-p", "cross")) == f"error: {expected}"
    assert one_line_error(run_cli("inspect", dump)) == f"error: {expected}"


def test_external_link_followed_when_allowed_and_hashed(tmp_path):
    dump = write_good(tmp_path / "d.h5")
    eager = load_dump(dump)
    other = tmp_path / "other.h5"
    with_external_features(dump, other)
    followed = load_dump(dump, allow_external=True)
    np.testing.assert_array_equal(
        followed.splits[0].features["z_e"], eager.splits[0].features["z_e"]
    )
    lazy = load_dump(dump, lazy=True, allow_external=True).splits[0].features["z_e"]
    np.testing.assert_array_equal(lazy.read_rows(np.arange(N)), eager.splits[0].features["z_e"])
    assert dump_sources(dump) == [dump.resolve(), other.resolve()]
    before = dump_sha256(dump, allow_external=True)
    top_bytes = dump.read_bytes()
    assert before != hashlib.sha256(top_bytes).hexdigest()
    with h5py.File(other, "a") as handle:  # the numbers change, the dump's own bytes do not
        handle["z_e"][0] = handle["z_e"][0] * 2
    assert dump.read_bytes() == top_bytes
    assert dump_sha256(dump, allow_external=True) != before
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(dump, moved / "renamed.h5")
    shutil.copy(other, moved / "other.h5")
    assert dump_sha256(moved / "renamed.h5", allow_external=True) == dump_sha256(
        dump, allow_external=True
    )


def test_dump_reading_nothing_outside_hashes_as_its_bytes(tmp_path):
    dump = write_good(tmp_path / "d.h5")
    with h5py.File(dump, "a") as handle:  # links inside the file are not outside sources
        handle["alias"] = h5py.SoftLink("/features/z_e")
    digest = hashlib.sha256(dump.read_bytes()).hexdigest()
    assert dump_sources(dump) == [dump.resolve()]
    assert dump_sha256(dump) == digest == dump_sha256(dump, allow_external=True)
    assert load_dump(dump).model == "m"


def test_virtual_dataset_is_refused_and_a_missing_source_is_named(tmp_path):
    dump = write_good(tmp_path / "d.h5")
    source = tmp_path / "src.h5"
    with_virtual_features(dump, source)
    with pytest.raises(DumpError) as caught:
        load_dump(dump)
    assert str(caught.value) == f"{dump}: features/z_e: virtual dataset reading src.h5; {REFUSAL}"
    assert load_dump(dump, allow_external=True).splits[0].features["z_e"].any()
    assert dump_sources(dump) == [dump.resolve(), source.resolve()]
    source.unlink()
    with pytest.raises(DumpError) as caught:
        load_dump(dump, allow_external=True)
    assert str(caught.value) == (
        f"{dump}: features/z_e: virtual dataset source src.h5 not found "
        "(HDF5 would read fill values in its place)"
    )
    with h5py.File(source, "w") as handle:
        handle["other_name"] = np.ones((N, 4), dtype=np.float32)
    with pytest.raises(DumpError, match="features/z_e: virtual dataset source src.h5 has no"):
        load_dump(dump, allow_external=True)


def test_external_raw_data_is_refused(tmp_path):
    dump = write_good(tmp_path / "d.h5")
    raw = tmp_path / "pid.bin"
    np.array([1, 1, 2, 2, 3, 3, 4, 4], dtype="<i8").tofile(raw)
    with h5py.File(dump, "a") as handle:
        del handle["pid"]
        handle.create_dataset("pid", shape=(N,), dtype="<i8", external=[(str(raw), 0, 8 * N)])
    with pytest.raises(DumpError) as caught:
        load_dump(dump)
    assert str(caught.value) == f"{dump}: pid: raw data stored in external file {raw}; {REFUSAL}"
    assert load_dump(dump, allow_external=True).splits[0].pid.tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    assert dump_sources(dump) == [dump.resolve(), raw.resolve()]


def test_external_link_to_a_fifo_is_refused_without_opening_it(tmp_path):
    dump = write_good(tmp_path / "d.h5")
    with_external_features(dump, tmp_path / "other.h5", link_name="pipe.h5")
    os.mkfifo(tmp_path / "pipe.h5")
    code = (
        "from vireid_bench.io.dump import load_dump\n"
        "from vireid_bench.errors import DumpError\n"
        "try:\n"
        f"    load_dump({str(dump)!r}, allow_external=True)\n"
        "except DumpError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == (
        f"{dump}: features/z_e: external link to pipe.h5: not a regular file (a FIFO)"
    )


# ------------------------------------------------------------------ inputs that are not files


def test_fifo_given_as_a_dump_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "feats.h5"
    os.mkfifo(fifo)
    for command in ("score", "inspect"):
        done = subprocess.run(
            [EXECUTABLE, command, str(fifo)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        assert done.stderr == f"error: {fifo}: not a regular file (a FIFO)\n"


def test_directory_and_device_are_refused(tmp_path):
    with pytest.raises(DumpError) as caught:
        load_dump(tmp_path)
    assert str(caught.value) == f"{tmp_path}: not a regular file (a directory)"
    with pytest.raises(DumpError) as caught:
        load_dump("/dev/null")
    assert str(caught.value) == "/dev/null: not a regular file (a character device)"
    with pytest.raises(DumpError, match=r"not a regular file \(a FIFO\)"):
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        dump_sha256(fifo)


def test_truncated_file_is_not_called_locked(tmp_path):
    good = write_good(tmp_path / "good.h5").read_bytes()
    for cut in (1000, len(good) // 2, len(good) - 10):
        path = tmp_path / f"cut{cut}.h5"
        path.write_bytes(good[:cut])
        line = one_line_error(run_cli("score", path))
        assert "locked" not in line
        assert line.startswith(
            f"error: {path}: cannot be opened: truncated or corrupt HDF5 file (truncated file: "
        ), line


# ------------------------------------------------------------------ write-after-cast, sizes


def test_float16_overflow_is_refused_before_writing(tmp_path):
    features = np.ones((N, 4), dtype=np.float32)
    features[3, 1] = 1e30  # finite in float32, Inf once stored as float16
    features[5, 0] = -7e4
    target = tmp_path / "half.h5"
    with pytest.raises(DumpError) as caught:
        write_good(target, features={"z_e": features}, float16=True)
    assert str(caught.value) == (
        f"{target}: features/z_e: 2 row(s) overflow float16 when stored "
        "(values beyond ±65504; first at row 3); store float32 instead"
    )
    assert list(tmp_path.iterdir()) == []
    assert load_dump(write_good(target, features={"z_e": features})).model == "m"


def test_synth_with_huge_noise_fails_before_writing(tmp_path):
    out = tmp_path / "noisy.h5"
    with pytest.raises(DumpError, match=r"features/synthetic: \d+ row\(s\) overflow float16"):
        write_synth_dump(out, ids=4, per_cam=2, dim=8, strengths=SynthStrengths(noise=1e30))
    result = run_cli("synth", out, "--ids", "4", "--per-cam", "2", "--dim", "8", "--noise", "1e30")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "overflow float16" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_synth_too_large_for_memory_is_refused_up_front(tmp_path, monkeypatch):
    monkeypatch.setattr("vireid_bench.io.memory.memory_budget", lambda: 64 * 1024**2)
    out = tmp_path / "big.h5"
    with pytest.raises(DumpError) as caught:
        write_synth_dump(out, ids=50, per_cam=10, dim=4096)
    assert str(caught.value).startswith(f"{out}: 3000 images x 4096 dimensions need about ")
    assert "more than the 64.0 MiB available" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def _limit_memory() -> None:
    limit = 4 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_synth_absurd_size_from_the_command_line(tmp_path):
    """``--ids 100000 --per-cam 1000 --dim 2048``: one line naming the size, exit 2."""
    out = tmp_path / "absurd.h5"
    done = subprocess.run(
        [EXECUTABLE, "synth", str(out), "--ids", "100000", "--per-cam", "1000", "--dim", "2048"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,  # the code before this fix ran into MemoryError here
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert "600000000 images x 2048 dimensions need about " in done.stderr
    assert " available" in done.stderr
    assert not out.exists()


# ------------------------------------------------------------------ suspicious but valid data


def _warnings_of(path, **options) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_dump(path, **options)
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("lazy", [False, True])
def test_collapsed_features_warn_and_are_findings(tmp_path, lazy):
    good = write_good(tmp_path / "good.h5")
    assert _warnings_of(good, lazy=lazy) == []
    assert not any("collapsed" in f for f in dump_findings(load_dump(good)))
    equal = np.tile(np.array([0.5, -1.0, 2.0, 0.0], dtype=np.float32), (N, 1))
    scales = np.array([1, 2, -1, 3, 0.5, 4, 1, 2], dtype=np.float32)[:, None]
    dump = write_good(tmp_path / "c.h5", features={"z_e": equal, "z_f": equal[:, :3] * scales})
    messages = _warnings_of(dump, lazy=lazy)
    assert messages == [
        f"{dump}: features/z_e: collapsed features: all 8 rows are equal "
        "(every distance ties; the scores say nothing about the model)",
        f"{dump}: features/z_f: collapsed features: all 8 rows lie on one direction "
        "(rank 1: cosine distances are only 0 or 2; the scores say little about the model)",
    ]
    with pytest.warns(UserWarning, match="collapsed"):
        findings = dump_findings(load_dump(dump))
    assert any(
        f.startswith("features/z_e: collapsed features: all 8 rows are equal") for f in findings
    )
    assert any(
        f.startswith("features/z_f: collapsed features: all 8 rows lie on one") for f in findings
    )
    result = run_cli("score", dump, "-p", "cross")
    assert result.exit_code == 0, result.output
    assert f"warning: {messages[0]}" in result.stderr.splitlines()


def test_negative_person_ids_warn_and_are_findings(tmp_path):
    dump = write_good(tmp_path / "junk.h5", pid=np.array([-1, -1, 2, 2, 3, 3, -1, 4]))
    expected = (
        "3 image(s) with a negative person id (1 id(s)): not distractors or junk here "
        "(Market-1501's convention); the toolkit scores them as ordinary identities"
    )
    assert _warnings_of(dump) == [f"{dump}: pid: {expected}"]
    with pytest.warns(UserWarning, match="negative person id"):
        assert f"pid: {expected}" in dump_findings(load_dump(dump))
    result = run_cli("score", dump, "-p", "cross")
    assert result.exit_code == 0, result.output
    assert f"warning: {dump}: pid: {expected}" in result.stderr.splitlines()


def test_paths_leaving_the_image_root_are_findings(tmp_path):
    paths = [f"cam1/{i:04d}.jpg" for i in range(N)]
    paths[2] = "../other/0001.jpg"
    paths[5] = "/etc/passwd"
    paths[6] = "cam1/../../x.jpg"
    dump = load_dump(write_good(tmp_path / "p.h5", paths=paths))
    assert (
        "path: 3 path(s) leave the image root (absolute or with '..', first: "
        "'../other/0001.jpg'); images are looked up under the root"
    ) in dump_findings(dump)
    result = run_cli("inspect", tmp_path / "p.h5")
    assert result.exit_code == 0
    assert "3 path(s) leave the image root" in result.stdout
    windows = load_dump(write_good(tmp_path / "w.h5", paths=["C:\\x.jpg"] + paths[:1] * 7))
    assert any("1 path(s) leave the image root" in f for f in dump_findings(windows))


def test_allow_external_flag_follows_links_and_hashes_every_source(tmp_path):
    """The CLI's ``--allow-external`` reaches load_dump and the recorded SHA-256."""
    import json
    import shutil
    from pathlib import Path

    from click.testing import CliRunner

    from vireid_bench.cli import cli
    from vireid_bench.io.digest import dump_sha256

    demo = Path(__file__).resolve().parents[1] / "feature_dumps" / "demo-sysu.h5"
    dump = tmp_path / "a.h5"
    shutil.copy(demo, dump)
    with h5py.File(dump, "r") as handle:
        pid = handle["pid"][:]
    with h5py.File(tmp_path / "pid.h5", "w") as handle:
        handle["pid"] = pid
    with h5py.File(dump, "a") as handle:
        del handle["pid"]
        handle["pid"] = h5py.ExternalLink("pid.h5", "pid")
    runner = CliRunner()
    refused = runner.invoke(cli, ["score", str(dump), "-p", "cross", "-f", "json"])
    assert refused.exit_code == 2
    assert "--allow-external" in refused.output
    followed = runner.invoke(
        cli, ["score", str(dump), "-p", "cross", "-f", "json", "--allow-external"]
    )
    assert followed.exit_code == 0, followed.output
    digest = json.loads(followed.stdout)["results"][0]["dump_sha256"]
    assert digest == dump_sha256(dump, allow_external=True)
    inspected = runner.invoke(cli, ["inspect", str(dump), "--allow-external"])
    assert inspected.exit_code == 0, inspected.output
