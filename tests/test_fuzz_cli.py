"""Fuzz every command's options and side inputs against the error contract (hypothesis).

For each command, option values are drawn from valid and hostile sets (unknown names,
negative numbers, paths that are folders, FIFOs, missing, unwritable or not UTF-8) and the
real command runs on tiny real files. The contract (docs/robustness.md): exit code 0 or 2
(1 only for ``check`` finding a regression), never a Python traceback, and on exit 2
exactly one ``error: `` line on stderr, the last one.

FIFOs are offered only as *output* paths: opening a FIFO as an input dump blocks (the dump
reader's refusal of non-regular inputs is tested with the dump format).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vireid_bench.cli.main import cli
from vireid_bench.synth.dumps import write_synth_dump

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    dump = write_synth_dump(
        root / "a.h5", ids=4, cameras="1,2:visible,3,4:infrared", per_cam=2, dim=8, seed=0,
        float16=False,
    )
    other = write_synth_dump(
        root / "b.h5", ids=4, cameras="1,2:visible,3,4:infrared", per_cam=2, dim=8, seed=1,
        float16=False,
    )
    scored = root / "scored.json"
    assert CliRunner().invoke(cli, ["score", str(dump), "-p", "cross", "-f", "json",
                                    "-o", str(scored)]).exit_code == 0
    stored = root / "stored"
    stored.mkdir()
    shutil.copy(dump, stored / "a.h5")
    (root / "latin1.toml").write_bytes(b"name = \"caf\xe9\"\n")
    (root / "text.h5").write_text("not hdf5\n")
    (root / "folder").mkdir()
    os.mkfifo(root / "fifo")
    # a private device node, never /dev/full itself (an old writer run as root replaced it)
    try:
        os.mknod(root / "device", 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except OSError:
        os.mkfifo(root / "device")
    return {
        "root": root, "dump": dump, "other": other, "scored": scored, "stored": stored,
    }


def side_paths(files) -> st.SearchStrategy[str]:
    """Input paths: valid and hostile (folder, missing, not HDF5, not UTF-8)."""
    root = files["root"]
    return st.sampled_from([
        str(files["dump"]), str(root / "folder"), str(root / "missing.h5"),
        str(root / "text.h5"), str(root / "latin1.toml"), "",
    ])


def out_paths(files) -> st.SearchStrategy[str]:
    """Output paths: new, existing input, folder, FIFO, missing folder, unwritable, stdout."""
    root = files["root"]
    return st.sampled_from([
        "-", str(root / "new-out.txt"), str(files["dump"]), str(root / "folder"),
        str(root / "fifo"), str(root / "nowhere" / "x.txt"), "/proc/vireid-x.txt",
        str(root / "device"), str(root / "folder") + "/",
    ])


NUMBERS = st.sampled_from(["0", "-1", "1", "2", "1e9", "nan", "x", "99999999999999999999"])
NAMES = st.sampled_from(["all", "cross", "mix-id", "nope", "", "sysu-mm01:all", "cross,nope"])


def assert_contract(result, regression_ok: bool = False) -> None:
    allowed = {0, 2} | ({1} if regression_ok else set())
    assert result.exit_code in allowed, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1, result.stderr
        assert result.stderr.rstrip("\n").splitlines()[-1] == errors[0]


def invoke(args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def options(draw, table: dict[str, st.SearchStrategy]) -> list[str]:
    """Draw a subset of ``table``'s options with drawn values (flags when value is None)."""
    args: list[str] = []
    for name in draw(st.lists(st.sampled_from(sorted(table)), unique=True, max_size=3)):
        values = table[name]
        args += [name] if values is None else [name, draw(values)]
    return args


@pytest.fixture(scope="module")
def cleanup(files):
    """Remove what a run wrote into the module folder that later draws must not see."""
    def clean():
        for name in ("new-out.txt",):
            (files["root"] / name).unlink(missing_ok=True)
    return clean


@SETTINGS
@given(data=st.data())
def test_fuzz_score(files, cleanup, data):
    args = ["score", data.draw(st.sampled_from([str(files["dump"])]) | side_paths(files))]
    args += options(data.draw, {
        "-p": NAMES | st.just(str(files["root"] / "latin1.toml")),
        "-f": st.sampled_from(["table", "json", "csv", "xml"]),
        "-o": out_paths(files),
        "--trials": NUMBERS, "--distance": st.sampled_from(["cosine", "l1"]),
        "--metric": st.sampled_from(["euclidean", "x"]), "--features": st.sampled_from(["f", "zz"]),
        "--memory-limit": st.sampled_from(["1KiB", "-5", "50%", "lots"]),
        "--rerank": st.sampled_from(["none", "aim", "bogus"]), "--rerank-k1": NUMBERS,
        "--gallery-block": NUMBERS, "--block-mb": NUMBERS, "--parents": None,
        "--sampler": st.sampled_from(["agw", "x"]), "--rand-perm": side_paths(files),
    })
    assert_contract(invoke(args))
    cleanup()


@SETTINGS
@given(data=st.data())
def test_fuzz_inspect_protocols_synth(files, cleanup, data):
    assert_contract(invoke(["inspect", data.draw(side_paths(files))]))
    assert_contract(invoke(["protocols", *data.draw(st.sampled_from([[], ["-v"], ["-x"]]))]))
    out = data.draw(st.sampled_from([str(files["root"] / "s.h5"), str(files["root"] / "folder"),
                                     str(files["root"] / "nowhere" / "s.h5")]))
    args = ["synth", out, *options(data.draw, {
        "--ids": NUMBERS, "--per-cam": NUMBERS, "--dim": NUMBERS,
        "--cams": st.sampled_from(["1:visible,2:infrared", "1,2", "x:y", ""]),
        "--noise": st.sampled_from(["0.1", "-1", "nan"]), "--dataset": NAMES,
    })]
    if "--ids" not in args:
        args += ["--ids", "3", "--dim", "4"]
    assert_contract(invoke(args))
    (files["root"] / "s.h5").unlink(missing_ok=True)
    cleanup()


@SETTINGS
@given(data=st.data())
def test_fuzz_index_leaderboard_check(files, cleanup, data):
    root = files["root"]
    index = ["index", data.draw(st.sampled_from(["sysu-mm01", "regdb", "llcm", "sysu", "SYSU"])),
             "--root", data.draw(st.sampled_from([str(root / "folder"), str(root / "missing")]))]
    index += options(data.draw, {"-o": out_paths(files), "--split": NAMES, "--parents": None})
    assert_contract(invoke(index))
    board_out = data.draw(st.sampled_from([str(root / "boards"), str(files["dump"]),
                                           str(root / "nowhere" / "b"), "/proc/boards"]))
    board = ["leaderboard", data.draw(st.sampled_from([str(files["scored"]), str(root / "text.h5"),
                                                        str(root / "latin1.toml")])),
             "--out", board_out, "--no-reported"]
    board += options(data.draw, {"--sort": st.sampled_from(["cross.mAP", "x.y", ""]),
                                 "-f": st.sampled_from(["csv", "md", "pdf"]), "--trials": NUMBERS})
    assert_contract(invoke(board))
    check = ["check", data.draw(st.sampled_from([str(files["stored"]), str(root / "folder"),
                                                 str(root / "missing"), str(files["dump"])]))]
    check += options(data.draw, {"--tolerance": NUMBERS,
                                 "--expected": st.sampled_from([str(root / "folder"),
                                                                str(root / "nowhere" / "e")])})
    assert_contract(invoke(check), regression_ok=True)
    cleanup()


@SETTINGS
@given(data=st.data())
def test_fuzz_plot_compare(files, cleanup, data):
    figure = data.draw(st.sampled_from(["x.png", "x.gif", "x"]))
    out = data.draw(out_paths(files).map(lambda p: p if p.endswith("/") else p) | st.just(
        str(files["root"] / figure)))
    kind = data.draw(st.sampled_from(["cmc", "distances", "retrieval", "bogus"]))
    args = ["plot", kind, data.draw(side_paths(files) | st.just(str(files["dump"]))), "-o", out]
    args += options(data.draw, {"-p": NAMES, "--max-rank": NUMBERS, "--parents": None,
                                "--images": st.sampled_from([str(files["root"]), "/nonexistent"]),
                                "--max-queries": NUMBERS, "--top-k": NUMBERS})
    assert_contract(invoke(args))
    (files["root"] / "x.png").unlink(missing_ok=True)
    compare = ["compare", str(files["dump"]),
               data.draw(side_paths(files) | st.just(str(files["other"]))),
               "--permutations", "5", "--bootstrap", "5"]
    compare += options(data.draw, {"-o": out_paths(files), "-p": NAMES,
                                   "--metric": st.sampled_from(["mAP", "R1", "bogus", ""]),
                                   "--confidence": NUMBERS, "--trials": NUMBERS})
    assert_contract(invoke(compare))
    cleanup()


@SETTINGS
@given(data=st.data())
def test_fuzz_synth_images_and_mixer(files, data):
    root = files["root"]
    images = ["synth-images", data.draw(st.sampled_from([str(root / "imgs"), str(files["dump"])])),
              "--layout", data.draw(st.sampled_from(["sysu-mm01", "regdb", "nope"])),
              "--ids", "2", "--per-cam", "1"]
    images += options(data.draw, {"--size": st.sampled_from(["32x16", "x", "-1x5", "8x8"]),
                                  "--test-fraction": NUMBERS, "--seed": NUMBERS})
    assert_contract(invoke(images))
    shutil.rmtree(root / "imgs", ignore_errors=True)
    pytest.importorskip("torch")
    garbage = root / "latin1.toml"
    sub = data.draw(st.sampled_from(["train", "extract"]))
    args = ["mixer", sub, "--dataset", data.draw(st.sampled_from(["sysu-mm01", "nope"])),
            "--root", data.draw(st.sampled_from([str(root / "folder"), str(root / "missing")])),
            "--device", data.draw(st.sampled_from(["cpu", "bogus", "cuda:99", "tpu"]))]
    if sub == "extract":
        args += ["--checkpoint", data.draw(st.sampled_from([str(garbage), str(files["dump"]),
                                                            str(root / "folder")])),
                 "--out", str(root / "m.h5")]
    else:
        args += ["--out", str(root / "run"), "--epochs", "1", "--quiet"]
        args += options(data.draw, {"--pretrained": st.sampled_from([str(garbage),
                                                                    str(files["dump"])]),
                                    "--config": st.sampled_from([str(garbage), "nope"]),
                                    "--set": st.sampled_from(["x", "loss.nope=1"])})
    assert_contract(invoke(args))
    shutil.rmtree(root / "run", ignore_errors=True)
    Path(root / "m.h5").unlink(missing_ok=True)
