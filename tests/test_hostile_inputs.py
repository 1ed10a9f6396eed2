"""Hostile and faulty inputs: every corrupt dump ends in one ``error:`` line and exit code 2.

Each case corrupts a real HDF5 dump written by :func:`write_dump` and runs the real command
line (click's CliRunner, and a few through the installed ``vireid-bench`` script). The
contract (docs/robustness.md): exit code 2, nothing on stdout, exactly one stderr line
``error: FILE: FIELD: problem``, never a traceback. Interrupted runs (SIGINT, SIGTERM) exit
with 130 / 143 and leave the previous output file untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vireid_bench.cli.common import Terminated, install_signal_handlers, write_output
from vireid_bench.cli.main import cli
from vireid_bench.errors import DumpError
from vireid_bench.io.dump import FeatureSplit, load_dump, write_dump
from vireid_bench.protocol import PROTOCOL_VERSION

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
N = 8
INT64_MAX = np.iinfo(np.int64).max
EXECUTABLE = shutil.which("vireid-bench") or str(Path(sys.executable).with_name("vireid-bench"))


def write_good(path, **overrides) -> Path:
    """An 8-image dump with two feature sets and image paths (4 ids x 2 modalities)."""
    rng = np.random.default_rng(0)
    pid = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    cam = np.array([1, 3, 1, 3, 2, 6, 2, 6])
    arrays = {
        "features": {
            "z_e": rng.normal(size=(N, 4)).astype(np.float32),
            "z_f": rng.normal(size=(N, 6)).astype(np.float32),
        },
        "pid": pid,
        "cam": cam,
        "modality": np.array([0, 1] * 4, dtype=np.uint8),
        "paths": [f"cam{c}/{p:04d}/0001.jpg" for p, c in zip(pid, cam, strict=True)],
        "default_features": "z_e",
        "cross_features": "z_e",
        "same_features": "z_f",
        **overrides,
    }
    return write_dump(path, dataset="generic", model="m", **arrays)


def run_cli(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, path, field: str | None) -> str:
    """Exit 2, empty stdout, one ``error: FILE: FIELD: ...`` line on stderr; return it."""
    stdout = getattr(result, "stdout", "")
    stderr = result.stderr
    exit_code = getattr(result, "exit_code", getattr(result, "returncode", None))
    assert exit_code == 2, (exit_code, stdout, stderr)
    assert "Traceback" not in stderr and "Traceback" not in stdout
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith(f"error: {path}: "), line
    if field:
        assert line.startswith(f"error: {path}: {field}: "), line
    return line


def rewrite(name: str, data, **options):
    """A corruption replacing dataset ``name`` by ``data``."""

    def action(handle):
        del handle[name]
        handle.create_dataset(name, data=data, **options)

    return action


def set_attr(name: str, value):
    return lambda handle: handle.attrs.__setitem__(name, value)


def raw_utf8_strings(name: str, values: list[bytes]):
    """Store raw bytes in a UTF-8 string dataset (HDF5 does not check the encoding)."""

    def action(handle):
        del handle[name]
        dataset = handle.create_dataset(name, shape=(len(values),), dtype=h5py.string_dtype())
        dataset[...] = values

    return action


def huge_declared(name: str, shape: tuple[int, ...], dtype: str):
    """Declare a chunked dataset of an absurd shape without writing its data."""

    def action(handle):
        del handle[name]
        chunks = (1,) * (len(shape) - 1) + (1024,)
        handle.create_dataset(name, shape=shape, maxshape=(None,) * len(shape), chunks=chunks,
                              dtype=dtype)  # fmt: skip

    return action


CORRUPTIONS = [
    "label wrong length",
    "label float",
    "label 2-D",
    "label empty",
    "label string",
    "label vlen string",
    "label compound",
    "label scalar",
    "label uint64 overflow",
    "features int",
    "features 1-D",
    "features 3-D",
    "features zero dim",
    "features wrong rows",
    "features NaN",
    "features compound",
    "features complex",
    "features string",
    "features is a dataset",
    "features empty group",
    "feature set is a group",
    "path not UTF-8",
    "path fixed bytes not UTF-8",
    "path integers",
    "path wrong length",
    "attribute wrong type",
    "format version wrong",
    "huge declared dimension",
    "huge declared length",
    "dangling link",
]


@st.composite
def corruptions(draw, name: str) -> tuple[object, str]:
    """Draw the parameters of corruption ``name``: (action on the file, field named)."""
    label = draw(st.sampled_from(["pid", "cam", "modality"]))
    feature = draw(st.sampled_from(["features/z_e", "features/z_f"]))
    length = draw(st.integers(0, 20).filter(lambda n: n != N))
    row = draw(st.integers(0, N - 1))
    big = draw(st.integers(INT64_MAX + 1, 2**64 - 1))
    bad_bytes = draw(st.binary(min_size=1, max_size=4).filter(_not_utf8))
    attr = draw(st.sampled_from(["dataset", "model", "default_features", "protocol_version"]))
    wrong_attr = draw(
        st.sampled_from([3, 2.5, np.array([1, 2]), np.array(["a", "b"], dtype=object)])
    )
    nan_features = np.ones((N, 4), np.float32)
    nan_features[row, row % 4] = np.nan
    paths = [b"ok/%d.jpg" % i for i in range(N)]
    paths[row] = b"bad/" + bad_bytes
    cases = {
        # pid's length is the number of images: a short pid is reported at cam.
        "label wrong length": (
            rewrite(label, np.arange(length)),
            "cam" if label == "pid" and length else label,
        ),
        "label float": (rewrite(label, np.arange(N, dtype=np.float64)), label),
        "label 2-D": (rewrite(label, np.zeros((N, 2), np.int64)), label),
        "label empty": (rewrite(label, np.zeros(0, np.int64)), label),
        "label string": (rewrite(label, np.array([b"x"] * N)), label),
        "label vlen string": (
            rewrite(label, np.array(["x"] * N, dtype=object), dtype=h5py.string_dtype()),
            label,
        ),
        "label compound": (rewrite(label, np.zeros(N, dtype=[("a", "i4"), ("b", "f4")])), label),
        "label scalar": (rewrite(label, np.int64(1)), label),
        "label uint64 overflow": (rewrite(label, np.full(N, big, np.uint64)), label),
        "features int": (rewrite(feature, np.ones((N, 4), np.int32)), feature),
        "features 1-D": (rewrite(feature, np.ones(N, np.float32)), feature),
        "features 3-D": (rewrite(feature, np.ones((N, 2, 2), np.float32)), feature),
        "features zero dim": (rewrite(feature, np.ones((N, 0), np.float32)), feature),
        "features wrong rows": (rewrite(feature, np.ones((length, 4), np.float32)), feature),
        "features NaN": (rewrite(feature, nan_features), feature),
        "features compound": (rewrite(feature, np.zeros((N, 4), dtype=[("a", "f4")])), feature),
        "features complex": (rewrite(feature, np.zeros((N, 4), np.complex64)), feature),
        "features string": (rewrite(feature, np.array([[b"1.0"] * 4] * N)), feature),
        "features is a dataset": (rewrite("features", np.ones((N, 4), np.float32)), "features"),
        "features empty group": (rewrite_group("features"), "features"),
        "feature set is a group": (rewrite_group(feature), feature),
        "path not UTF-8": (raw_utf8_strings("path", paths), "path"),
        "path fixed bytes not UTF-8": (rewrite("path", np.array(paths)), "path"),
        "path integers": (rewrite("path", np.arange(N)), "path"),
        "path wrong length": (rewrite("path", np.array([b"a"] * (length or 1))), "path"),
        "attribute wrong type": (set_attr(attr, wrong_attr), attr),
        "format version wrong": (
            set_attr("vireid_bench_format", draw(st.sampled_from(["1", 1.5, 2, -1, "abc"]))),
            "vireid_bench_format",
        ),
        "huge declared dimension": (huge_declared(feature, (N, 2**40), "f4"), feature),
        "huge declared length": (huge_declared(label, (2**40,), "i8"), label),
        "dangling link": (dangling(label), label),
    }
    assert sorted(cases) == sorted(CORRUPTIONS)
    return cases[name]


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def rewrite_group(name: str):
    def action(handle):
        del handle[name]
        handle.create_group(name)

    return action


def dangling(name: str):
    def action(handle):
        del handle[name]
        handle[name] = h5py.SoftLink("/nowhere")

    return action


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory) -> bytes:
    return write_good(tmp_path_factory.mktemp("good") / "good.h5").read_bytes()


@pytest.mark.parametrize("name", CORRUPTIONS)
@settings(FUZZ, max_examples=3)
@given(data=st.data())
def test_structural_corruption_is_one_line_error(tmp_path, name, data):
    action, field = data.draw(corruptions(name))
    path = write_good(tmp_path / "bad.h5")
    with h5py.File(path, "a") as handle:
        action(handle)
    assert_one_line_error(run_cli("score", path, "-p", "cross"), path, field)


@FUZZ
@given(offset=st.integers(min_value=0, max_value=20_000))
def test_truncated_file_is_one_line_error(tmp_path, good_bytes, offset):
    path = tmp_path / "truncated.h5"
    path.write_bytes(good_bytes[: offset % len(good_bytes)])
    line = assert_one_line_error(run_cli("score", path, "-p", "cross"), path, None)
    assert "not an HDF5 file" in line or "cannot be opened" in line


@FUZZ
@given(
    offset=st.integers(min_value=0, max_value=10**6),
    noise=st.binary(min_size=1, max_size=16),
)
def test_overwritten_bytes_never_give_a_traceback(tmp_path, good_bytes, offset, noise):
    """Random bytes over the file: a one-line error, or (unused bytes hit) a normal result."""
    corrupted = bytearray(good_bytes)
    start = offset % len(corrupted)
    corrupted[start : start + len(noise)] = noise
    path = tmp_path / "noisy.h5"
    path.write_bytes(bytes(corrupted[: len(good_bytes)]))
    result = run_cli("score", path, "-p", "cross", "-f", "json")
    if result.exit_code == 0:
        assert "Traceback" not in result.output
        assert json.loads(result.stdout)["results"]
    else:
        assert_one_line_error(result, path, None)


@pytest.mark.parametrize("name", ["features/z_e", "features/z_f", "pid", "cam", "modality"])
def test_damaged_data_is_refused_not_scored(tmp_path, name):
    """Fletcher-32 checksums: one flipped bit in a dataset's stored data fails the load."""
    path = write_good(tmp_path / "damaged.h5")
    with h5py.File(path, "r") as handle:
        chunk = handle[name].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset + chunk.size // 3] ^= 0x01
    path.write_bytes(bytes(data))
    line = assert_one_line_error(run_cli("score", path), path, name)
    assert line.endswith("filter returned failure during read))")


def test_wrong_attribute_type_names_the_attribute(tmp_path):
    for name in ("dataset", "model", "default_features", "protocol_version"):
        path = write_good(tmp_path / f"{name}.h5")
        with h5py.File(path, "a") as handle:
            handle.attrs[name] = np.array([1, 2])
        assert_one_line_error(run_cli("score", path), path, name)


def test_trials_with_a_gap(tmp_path):
    split = FeatureSplit(
        features={"f": np.eye(4, 3) + 0.1},
        pid=np.array([1, 1, 2, 2]),
        cam=np.array([1, 2, 1, 2]),
        modality=np.array([0, 1, 0, 1]),
    )
    path = write_dump(tmp_path / "trials.h5", trials=[split] * 4)
    with h5py.File(path, "a") as handle:
        del handle["trials/2"]
    assert_one_line_error(run_cli("score", path), path, "trials/2")
    path = write_dump(tmp_path / "trials.h5", trials=[split] * 4)
    with h5py.File(path, "a") as handle:
        del handle["trials/1"]
        handle["trials/1"] = np.zeros(3)  # a dataset where a trial group belongs
    assert_one_line_error(run_cli("score", path), path, "trials/1")


def test_empty_dataset_and_zero_dimension(tmp_path):
    path = write_good(tmp_path / "empty.h5")
    with h5py.File(path, "a") as handle:
        for name in ("pid", "cam", "modality", "path"):
            rewrite(name, np.zeros(0, np.int64))(handle)
        for name in ("features/z_e", "features/z_f"):
            rewrite(name, np.zeros((0, 4), np.float32))(handle)
    line = assert_one_line_error(run_cli("score", path), path, "pid")
    assert "no images" in line


def test_declared_size_rule_uses_available_memory(tmp_path, monkeypatch):
    """Rule: elements x max(itemsize, 4) bytes must fit in the memory available now."""
    path = write_good(tmp_path / "d.h5")
    monkeypatch.setattr("vireid_bench.io.memory.memory_budget", lambda: 64)
    with pytest.raises(
        DumpError,
        match=r"declared shape \(8, 4\) needs 128 B, more than the 64 B of memory available",
    ) as info:
        load_dump(path)
    assert info.value.field == "features/z_e"
    monkeypatch.setattr("vireid_bench.io.memory.memory_budget", lambda: None)  # unknown: no cap
    assert load_dump(path).splits[0].n_images == N


def test_huge_declared_dimension_is_refused_before_reading(tmp_path):
    path = write_good(tmp_path / "huge.h5")
    with h5py.File(path, "a") as handle:
        huge_declared("features/z_e", (N, 10**12), "f4")(handle)
    started = time.perf_counter()
    line = assert_one_line_error(run_cli("score", path), path, "features/z_e")
    assert "declared shape (8, 1000000000000) needs 29.1 TiB" in line
    assert time.perf_counter() - started < 10


def test_duplicated_images_are_valid_but_flagged_by_inspect(tmp_path):
    paths = ["same.jpg"] * 2 + [f"{i}.jpg" for i in range(N - 2)]
    path = write_good(tmp_path / "dup.h5", paths=paths)
    assert run_cli("score", path, "-p", "cross").exit_code == 0
    result = run_cli("inspect", path)
    assert result.exit_code == 0
    assert "path: 1 duplicated image path(s)" in result.stdout


def test_non_utf8_file_name(tmp_path):
    """A file name that is not UTF-8 is shown escaped, scored when valid, named when not."""
    good = os.fsencode(tmp_path) + b"/na\xefve.h5"
    write_good(os.fsdecode(good))
    done = subprocess.run(
        [EXECUTABLE, "score", good, "-p", "cross", "-f", "json"], capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["protocol"] == "cross"
    missing = os.fsencode(tmp_path) + b"/gone\xff.h5"
    failed = subprocess.run([EXECUTABLE, "score", missing], capture_output=True, timeout=120)
    assert failed.returncode == 2 and failed.stdout == b""
    assert failed.stderr == f"error: {tmp_path}/gone\\udcff.h5: file not found\n".encode()


@pytest.mark.parametrize("case", ["truncated", "huge", "non-utf8 path"])
def test_installed_script_reports_one_line(tmp_path, case):
    path = write_good(tmp_path / "bad.h5")
    field = None
    if case == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif case == "huge":
        field = "features/z_f"
        with h5py.File(path, "a") as handle:
            huge_declared(field, (N, 2**40), "f8")(handle)
    else:
        field = "path"
        with h5py.File(path, "a") as handle:
            raw_utf8_strings("path", [b"\xff\xfe"] * N)(handle)
    done = subprocess.run(
        [EXECUTABLE, "score", str(path)], capture_output=True, text=True, timeout=120
    )
    line = assert_one_line_error(done, path, field)
    if case == "non-utf8 path":
        assert line.endswith("entry 0 is not valid UTF-8")


# ------------------------------------------------------------------ locked, read-only files


def _hold_open(path, mode: str) -> subprocess.Popen:
    """A process that opens ``path`` with h5py in ``mode`` and sleeps until killed."""
    code = (
        "import sys, time, h5py\n"
        f"handle = h5py.File({str(path)!r}, {mode!r})\n"
        "print('open', flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "open"
    return holder


@pytest.mark.skipif(
    os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "FALSE",
    reason="HDF5 file locking disabled in this environment",
)
@pytest.mark.parametrize("mode", ["a", "r+"])
def test_file_open_for_writing_elsewhere_is_refused(tmp_path, mode):
    path = write_good(tmp_path / "busy.h5")
    holder = _hold_open(path, mode)
    try:
        line = assert_one_line_error(run_cli("score", path), path, None)
        assert line == f"error: {path}: cannot be opened (locked by another process?)"
    finally:
        holder.kill()
        holder.wait()
    assert run_cli("score", path, "-p", "cross").exit_code == 0  # released: scores again


def test_file_being_read_elsewhere_can_be_scored(tmp_path):
    path = write_good(tmp_path / "shared.h5")
    holder = _hold_open(path, "r")
    try:
        assert run_cli("score", path, "-p", "cross").exit_code == 0
    finally:
        holder.kill()
        holder.wait()


def test_scorer_opens_dumps_read_only_and_leaves_them_untouched(tmp_path, monkeypatch):
    path = write_good(tmp_path / "ro.h5")
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    path.chmod(0o444)
    modes = []
    real_file = h5py.File

    def recording_file(name, mode="r", *args, **kwargs):
        modes.append(mode)
        return real_file(name, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", recording_file)
    assert run_cli("score", path).exit_code == 0
    assert run_cli("inspect", path).exit_code == 0
    assert modes and set(modes) == {"r"}
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    path = write_good(tmp_path / "secret.h5")
    path.chmod(0)
    line = assert_one_line_error(run_cli("score", path), path, None)
    assert line.endswith("cannot be read (Permission denied)")


# ------------------------------------------------------------------ interrupts, atomic writes


def test_interrupt_while_writing_keeps_the_previous_output(tmp_path, tiny_dump, monkeypatch):
    out = tmp_path / "out.json"
    out.write_text("previous results\n")

    class InterruptedRename:
        """``os`` as seen by vireid_bench.io.files (atomic writes), with Ctrl-C at the rename."""

        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def replace(src, dst):
            raise KeyboardInterrupt

    monkeypatch.setattr("vireid_bench.io.files.os", InterruptedRename())
    result = run_cli("score", tiny_dump, "-p", "cross", "-o", out)
    assert (result.exit_code, result.stderr) == (130, "interrupted\n"), result.output
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "tiny.h5"]


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [(KeyboardInterrupt, 130, "interrupted"), (Terminated, 143, "terminated")],
)
def test_interrupt_while_parsing_the_command_line(monkeypatch, tiny_dump, exc, code, message):
    def parse_args(self, ctx, args):
        raise exc

    monkeypatch.setattr(type(cli), "parse_args", parse_args)
    result = run_cli("score", tiny_dump)
    assert (result.exit_code, result.stderr, result.stdout) == (code, message + "\n", "")


def test_interrupted_figure_save_keeps_the_previous_figure(tmp_path):
    from vireid_bench.results.plots import save_figure

    class HalfWrittenFigure:
        def savefig(self, path, **options):
            Path(path).write_bytes(b"partial")
            raise KeyboardInterrupt

    figure_path = tmp_path / "cmc.png"
    figure_path.write_bytes(b"previous figure")
    with pytest.raises(KeyboardInterrupt):
        save_figure(HalfWrittenFigure(), [figure_path])
    assert figure_path.read_bytes() == b"previous figure"
    assert [p.name for p in tmp_path.iterdir()] == ["cmc.png"]


def _cpu_seconds(pid: int) -> float | None:
    """CPU time a process has used so far (Linux /proc), or None when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def big_dump(tmp_path_factory):
    """600 ids: `score` takes ~20 s of CPU (12 s wall on two idle cores), so the signal
    sent after 3.5 s of CPU lands mid-run. (200 ids took 4 s of CPU once the kernels got
    faster: the signal could arrive after the output was written.)"""
    from vireid_bench.synth.dumps import write_synth_dump

    return write_synth_dump(tmp_path_factory.mktemp("big") / "big.h5", ids=600, dim=32, seed=0)


@pytest.mark.parametrize(
    ("signum", "code", "message"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_signal_mid_run_keeps_previous_output(tmp_path, big_dump, signum, code, message):
    out = tmp_path / "out.json"
    out.write_text("previous results\n")
    process = subprocess.Popen(
        [EXECUTABLE, "score", str(big_dump), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Python turns SIGINT into KeyboardInterrupt only if it is not ignored at start-up
        # (a shell's background job inherits SIGINT ignored).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Wait until scoring is under way: start-up and loading take about 2 s of CPU.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        used = _cpu_seconds(process.pid)
        if used is None:
            time.sleep(3)
            break
        if used > 3.5:
            break
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be interrupted"
    sent = time.monotonic()
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert time.monotonic() - sent < 10  # honoured between kernel calls, not at the end
    assert stderr.strip() == message and stdout == ""
    assert "Traceback" not in stderr
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no .out.json.*.tmp


class _SignalsInFinalizer:
    """Sends itself ``signum`` while being collected: the handler's exception is raised
    inside ``__del__``, where Python prints "Exception ignored" and goes on."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize(("signum", "expected"), [
    (signal.SIGTERM, Terminated),
    (signal.SIGINT, KeyboardInterrupt),
])  # fmt: skip
def test_signal_swallowed_by_a_finalizer_still_stops_the_write(
    tmp_path, capfd, signum, expected
):
    out = tmp_path / "out.json"
    out.write_text("previous results\n")
    # as a foreground command starts (a suite run as a shell's background job inherits
    # SIGINT ignored, which the handlers rightly keep)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    restore = install_signal_handlers()
    try:
        doomed = _SignalsInFinalizer(signum)
        del doomed  # the signal arrives inside __del__; its exception is swallowed there
        with pytest.raises(expected) as info:
            write_output("new results\n", str(out))
        assert type(info.value) is expected
    finally:
        restore()
        signal.signal(signal.SIGINT, previous_int)
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    assert "Exception ignored" not in capfd.readouterr().err  # no traceback for it
    write_output("next run\n", str(out))  # the record ended with the run that received it
    assert out.read_text() == "next run\n"


# ------------------------------------------------------------------ protocol version


def test_protocol_version_is_recorded_and_reported(tmp_path):
    path = write_good(tmp_path / "current.h5")
    assert load_dump(path).protocol_version == PROTOCOL_VERSION
    result = run_cli("score", path, "-p", "cross", "-f", "json")
    assert result.exit_code == 0 and result.stderr == ""
    assert json.loads(result.stdout)["protocol_version"] == PROTOCOL_VERSION
    assert f"protocol version        {PROTOCOL_VERSION}" in run_cli("inspect", path).stdout


def test_dump_built_for_another_protocol_version_warns(tmp_path):
    path = write_good(tmp_path / "old.h5", protocol_version="0.9")
    result = run_cli("score", path, "-p", "cross", "-f", "json")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"warning: old.h5: dump built for protocol version 0.9, scored with protocol version "
        f"{PROTOCOL_VERSION}"
    ]
    assert json.loads(result.stdout)["protocol_version"] == PROTOCOL_VERSION


def test_dump_without_protocol_version_scores_silently(tmp_path):
    path = write_good(tmp_path / "legacy.h5")
    with h5py.File(path, "a") as handle:
        del handle.attrs["protocol_version"]
    assert load_dump(path).protocol_version is None
    result = run_cli("score", path, "-p", "cross")
    assert result.exit_code == 0 and result.stderr == ""
