"""The command line at its edges: outputs that cannot destroy inputs, one error contract.

Each test runs the real CLI (click's CliRunner on the real command group, or the installed
console script as a subprocess) on real files; see docs/robustness.md, "The command
line's error contract and outputs".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.dataset_trees import make_sysu
from vireid_bench.cli.main import cli
from vireid_bench.synth.dumps import write_synth_dump

EXECUTABLE = shutil.which("vireid-bench") or str(Path(sys.executable).with_name("vireid-bench"))
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def run(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(result, code: int = 2) -> str:
    """Assert the contract of a refused run; return its one stderr line."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edges")
    made = [
        write_synth_dump(
            folder / f"{name}.h5", ids=5, cameras="1,2:visible,3,4:infrared", per_cam=2,
            dim=8, seed=seed, float16=False,
        )
        for seed, name in enumerate(["a", "b"])
    ]
    return made


@pytest.fixture
def dump(dumps, tmp_path):
    """A private copy of dump a (tests may try to overwrite it)."""
    return Path(shutil.copy(dumps[0], tmp_path / "a.h5"))


# ------------------------------------------------------------------ outputs never destroy inputs


def test_score_output_that_is_the_input_dump_is_refused(dump):
    before = dump.read_bytes()
    line = one_error_line(run("score", dump, "-p", "cross", "-o", dump))
    assert line == f"error: {dump}: is the input {dump}; refusing to overwrite an input"
    assert dump.read_bytes() == before


def test_compare_output_that_is_an_input_dump_is_refused(dump, dumps):
    before = dump.read_bytes()
    args = ["--permutations", 5, "--bootstrap", 5, "-p", "cross"]
    line = one_error_line(run("compare", dump, dumps[1], *args, "-o", dump))
    assert "refusing to overwrite an input" in line
    assert dump.read_bytes() == before


def test_a_hard_link_or_symlinked_folder_to_the_input_is_the_same_file(dump, tmp_path):
    before = dump.read_bytes()
    alias = tmp_path / "alias.h5"
    os.link(dump, alias)
    assert "is the input" in one_error_line(run("score", dump, "-p", "cross", "-o", alias))
    (tmp_path / "via").symlink_to(tmp_path)
    via = tmp_path / "via" / "a.h5"
    assert "is the input" in one_error_line(run("score", dump, "-p", "cross", "-o", via))
    assert dump.read_bytes() == before


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_an_output_that_is_not_a_regular_file_is_refused(dump, tmp_path, kind):
    target = tmp_path / "out.txt"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    if kind == "symlink":
        target.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    result = run("score", dump, "-p", "cross", "-o", target)
    line = one_error_line(result) if kind != "folder" else result.stderr.strip()
    assert result.exit_code == 2
    if kind != "folder":
        assert line.startswith(f"error: {target}: is a ")
    mode = os.lstat(target).st_mode
    check = {"symlink": stat.S_ISLNK, "fifo": stat.S_ISFIFO, "folder": stat.S_ISDIR}[kind]
    assert check(mode)
    assert victim.read_text() == "keep me\n"


def private_device(folder: Path) -> Path:
    """A character device node like /dev/full (1, 7), private to the test.

    Never /dev/full itself: the old writer, run as root, replaced the system's device node
    by a regular file.
    """
    node = folder / "full"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here ({exc})")
    return node


def test_a_device_is_refused_and_dash_is_stdout(dump, tmp_path):
    device = private_device(tmp_path)
    line = one_error_line(run("score", dump, "-p", "cross", "-o", device))
    assert line.startswith(f"error: {device}: is a device; refusing to replace it")
    assert stat.S_ISCHR(os.lstat(device).st_mode)
    result = run("score", dump, "-p", "cross", "-o", "-")
    assert result.exit_code == 0 and "cross" in result.stdout


def test_a_planted_file_at_the_old_temporary_name_is_not_followed(dump, tmp_path):
    out = tmp_path / "out.txt"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    # the name the old writer used: .NAME.<pid>.tmp, opened without O_EXCL
    (tmp_path / f".out.txt.{os.getpid()}.tmp").symlink_to(victim)
    assert run("score", dump, "-p", "cross", "-o", out).exit_code == 0
    assert victim.read_text() == "keep me\n"
    assert stat.S_ISREG(os.lstat(out).st_mode) and "cross" in out.read_text()


def test_missing_folder_needs_parents_and_modes_follow_the_umask(dump, tmp_path):
    out = tmp_path / "new" / "deeper" / "out.txt"
    line = one_error_line(run("score", dump, "-p", "cross", "-o", out))
    assert line == (
        f"error: {out}: folder {out.parent} does not exist (create it, or pass --parents)"
    )
    assert not (tmp_path / "new").exists()
    previous = os.umask(0o027)
    try:
        assert run("score", dump, "-p", "cross", "-o", out, "--parents").exit_code == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
        kept = tmp_path / "private.txt"
        kept.write_text("old\n")
        kept.chmod(0o600)
        assert run("score", dump, "-p", "cross", "-o", kept).exit_code == 0
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600  # a replaced file keeps its mode
    finally:
        os.umask(previous)
    assert [p.name for p in out.parent.iterdir()] == ["out.txt"]  # no temporary left


def test_every_writing_command_refuses_a_missing_folder(dumps, tmp_path):
    missing = tmp_path / "nowhere"
    scored = tmp_path / "scored.json"
    assert run("score", dumps[0], "-p", "cross", "-f", "json", "-o", scored).exit_code == 0
    cases = [
        ["compare", dumps[0], dumps[1], "-p", "cross", "-o", missing / "c.txt"],
        ["leaderboard", scored, "--out", missing / "boards"],
        ["plot", "cmc", dumps[0], "-p", "cross", "-o", missing / "cmc.png"],
        ["plot", "distances", dumps[0], "-p", "cross", "-o", missing / "d.png"],
        ["index", "llcm", "--root", tmp_path, "-o", missing / "i.csv"],
    ]
    for args in cases:
        line = one_error_line(run(*args))
        assert "does not exist (create it, or pass --parents)" in line, args
    assert not missing.exists()


def test_an_unwritable_output_is_one_line_exit_2(dump):
    # /proc refuses new files even to root (permission bits do not stop root)
    line = one_error_line(run("score", dump, "-p", "cross", "-o", "/proc/vireid-out.txt"))
    assert line.startswith("error: /proc/vireid-out.txt: cannot be written (")


def test_no_space_left_on_stdout_is_one_line_exit_2(dump):
    if not stat.S_ISCHR(os.stat("/dev/full").st_mode):
        pytest.skip("/dev/full is not the full device here")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [EXECUTABLE, "score", str(dump), "-p", "cross"],
            stdout=full, stderr=subprocess.PIPE, text=True, env=ENV, timeout=120,
        )
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if not ln.startswith("note: ")]
    assert lines == ["error: <stdout>: cannot be written (no space left on device)"]


# ------------------------------------------------------------------ usage errors, one line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["score", "--bogus", "x.h5"], "error: vireid-bench score: no such option '--bogus'"),
        (
            ["score", "--trials", "0", "x.h5"],
            "error: vireid-bench score: invalid value for '--trials': 0 is not in the range x>=1",
        ),
        (["score"], "error: vireid-bench score: missing argument 'DUMPS...'"),
        (["nope"], "error: vireid-bench: no such command 'nope'"),
        (["plot", "cmc", "a.h5"], "error: vireid-bench plot cmc: missing option '-o' / '--output'"),
        (["synth-images", "out", "--layout", "sysu-mm01", "--size", "x"],
         "error: vireid-bench synth-images: invalid value for '--size': expected HEIGHTxWIDTH, "
         "e.g. 128x64"),
    ],
)
def test_usage_errors_are_one_line(args, expected):
    result = run(*args)
    assert one_error_line(result) == expected
    assert result.stdout == ""


def test_a_bare_group_prints_its_help_and_one_error_line():
    result = run("plot")
    assert one_error_line(result).startswith("error: vireid-bench plot: missing command")
    assert "cmc" in result.stdout and "retrieval" in result.stdout


def test_check_with_no_expected_folder_is_bad_input_not_a_regression(dumps, tmp_path):
    folder = tmp_path / "stored"
    folder.mkdir()
    shutil.copy(dumps[0], folder / "a.h5")
    line = one_error_line(run("check", folder))
    assert line.startswith(f"error: {folder / 'expected'}: no expected results folder")


# ------------------------------------------------------------------ names across commands


def test_index_takes_the_dataset_names_used_everywhere(tmp_path):
    counts = {(pid, cam): 1 for pid in range(1, 5) for cam in (1, 2, 3, 6)}
    root = make_sysu(tmp_path / "sysu", counts, test_ids=list(range(1, 5)))
    for name in ("sysu-mm01", "sysu"):
        result = run("index", name, "--root", root)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("path,pid,cam,modality")
        assert "dump attribute dataset = sysu-mm01" in result.stderr


def test_score_distance_option_and_deprecated_metric(dump):
    help_text = run("score", "--help").stdout
    assert "--distance" in help_text and "--metric" not in help_text
    new = run("score", dump, "-p", "cross", "--distance", "euclidean", "-f", "json")
    old = run("score", dump, "-p", "cross", "--metric", "euclidean", "-f", "json")
    assert new.exit_code == old.exit_code == 0
    assert json.loads(new.stdout)["results"] == json.loads(old.stdout)["results"]
    assert json.loads(new.stdout)["results"][0]["distance"] == "euclidean"
    assert "warning: score --metric is deprecated: use --distance" in old.stderr
    assert "deprecated" not in new.stderr
    clash = run("score", dump, "--metric", "cosine", "--distance", "euclidean")
    assert one_error_line(clash) == "error: --metric cosine and --distance euclidean disagree"


def test_first_run_says_it_compiles_the_kernels(dump, tmp_path):
    env = {**ENV, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    command = [EXECUTABLE, "score", str(dump), "-p", "cross"]
    started = time.monotonic()
    cold = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    cold_s = time.monotonic() - started
    started = time.monotonic()
    warm = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    warm_s = time.monotonic() - started
    assert cold.returncode == warm.returncode == 0, cold.stderr
    assert cold.stderr.splitlines()[0] == "note: compiling scoring kernels (first run only)"
    assert "compiling" not in warm.stderr
    print(f"cold run {cold_s:.1f} s, warm run {warm_s:.1f} s")


# ------------------------------------------------------------------ mixer input errors


@pytest.fixture(scope="module")
def garbage(tmp_path_factory):
    path = tmp_path_factory.mktemp("mixer") / "garbage.pt"
    path.write_bytes(b"\x80\x02not a torch file\xff" * 10)
    return path


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--device", "bogus"], "error: --device 'bogus': unknown device"),
        (["--device", "tpu"], "error: --device 'tpu': unknown device"),
        (["--checkpoint", "{garbage}"], "error: {garbage}: not a readable MixER checkpoint ("),
        (["--checkpoint", "{folder}"], "error: vireid-bench mixer extract: invalid value"),
    ],
)
def test_mixer_extract_bad_inputs_are_one_line(tmp_path, garbage, extra, expected):
    pytest.importorskip("torch")
    from vireid_bench.models.mixer.train import CHECKPOINT_FORMAT

    checkpoint = tmp_path / "ok.pt"
    import torch

    torch.save({"format": CHECKPOINT_FORMAT, "config": {}, "class_pids": []}, checkpoint)
    values = {"garbage": garbage, "folder": tmp_path}
    args = ["mixer", "extract", "--checkpoint", checkpoint, "--dataset", "sysu-mm01",
            "--root", tmp_path, "--out", tmp_path / "x.h5"]
    args += [a.format(**values) for a in extra]
    line = one_error_line(run(*args))
    assert line.startswith(expected.format(**values)), line
    assert not (tmp_path / "x.h5").exists()


def test_mixer_damaged_checkpoint_and_bad_pretrained_are_one_line(tmp_path, garbage):
    pytest.importorskip("torch")
    import torch

    from vireid_bench.models.mixer.train import CHECKPOINT_FORMAT

    damaged = tmp_path / "damaged.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "config": {}, "class_pids": []}, damaged)
    line = one_error_line(run(
        "mixer", "extract", "--checkpoint", damaged, "--dataset", "sysu-mm01",
        "--root", tmp_path, "--out", tmp_path / "x.h5", "--device", "cpu",
    ))
    assert line.startswith(f"error: {damaged}: damaged MixER checkpoint (")
    counts = {(pid, cam): 1 for pid in range(1, 3) for cam in (1, 2, 3, 6)}
    root = make_sysu(tmp_path / "sysu", counts, test_ids=[1, 2], train_ids=(901, 903, 904))
    line = one_error_line(run(
        "mixer", "train", "--dataset", "sysu-mm01", "--root", root, "--out", tmp_path / "run",
        "--pretrained", garbage, "--device", "cpu", "--backbone", "resnet18", "--quiet",
        "--epochs", "1",
    ))
    assert line.startswith(f"error: {garbage}: not a readable --pretrained state dict ("), line


# ------------------------------------------------------------------ interrupts inside Numba


@pytest.fixture(scope="module")
def big_dump(tmp_path_factory):
    """~4k images: AIM re-ranking runs for many seconds on two cores.

    The same command first runs to the end on a tiny dump, so that every kernel it uses is
    compiled and cached: a signal that lands while Numba compiles is swallowed by llvmlite's
    callbacks ("Exception ignored"), a known limit documented in docs/robustness.md.
    """
    folder = tmp_path_factory.mktemp("big")
    tiny = write_synth_dump(folder / "tiny.h5", ids=4, dim=32, seed=0)
    subprocess.run(
        [EXECUTABLE, "score", str(tiny), "-p", "cross", "--rerank", "aim"],
        check=True, capture_output=True, env=ENV,
    )
    return write_synth_dump(folder / "big.h5", ids=70, dim=32, seed=0)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize(
    ("signum", "code", "message"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_interrupt_inside_a_numba_kernel(tmp_path, big_dump, signum, code, message):
    out = tmp_path / "out.txt"
    out.write_text("previous\n")
    process = subprocess.Popen(
        [EXECUTABLE, "score", str(big_dump), "-p", "cross", "--rerank", "aim", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if _cpu_seconds(process.pid) > 7.0:  # past start-up and loading: in the AIM kernel
            break
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and stdout == ""
    assert stderr.strip().splitlines()[-1] == message
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_warning_before_an_error_leaves_the_error_alone_on_stderr(tmp_path):
    """Load-time warnings (negative pids) are not printed when the run then fails."""
    import numpy as np
    from click.testing import CliRunner

    from vireid_bench.cli import cli
    from vireid_bench.io.dump import write_dump

    rng = np.random.default_rng(0)
    pid = np.repeat(np.arange(-1, 5), 4)
    cam = np.tile([1, 2, 3, 4], 6)
    modality = (cam > 2).astype(np.uint8)
    path = tmp_path / "warned.h5"
    write_dump(
        path,
        features={"f": rng.normal(size=(24, 8)).astype(np.float32)},
        pid=pid,
        cam=cam,
        modality=modality,
        dataset="SYSU-MM01",  # a near miss of sysu-mm01: refused when scored
        model="m",
    )
    ok = CliRunner().invoke(cli, ["inspect", str(path)])
    assert "negative" in ok.stdout  # the warning's content is a finding of inspect
    failed = CliRunner().invoke(cli, ["score", str(path), "-p", "cross"])
    assert failed.exit_code == 2
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("error: ")
    assert "sysu-mm01" in failed.stderr
