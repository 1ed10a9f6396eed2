"""Scale-out on Dask: a LocalCluster of 2 workers gives the in-process numbers exactly.

Real HDF5 dumps (feature_dumps/), the real CLI through click's CliRunner, no mocks. One
LocalCluster serves the module (worker processes, one thread each, as the CLI starts).
"""

from __future__ import annotations

import json
import math
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("distributed", reason="dask is not installed (pip install '.[dist]')")

from vireid_bench.cli.main import cli  # noqa: E402
from vireid_bench.engine.distributed import ScoreRequest, dask_client, evaluate_on_dask  # noqa: E402
from vireid_bench.engine.scheduler import Scheduler  # noqa: E402
from vireid_bench.engine.scoring import MemoryOptions, evaluate  # noqa: E402
from vireid_bench.errors import VireidBenchError  # noqa: E402
from vireid_bench.io.dump import load_dump  # noqa: E402
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.datasets import SYSUConvention

DUMPS = Path(__file__).resolve().parent.parent / "feature_dumps"
ARRAYS = ("first_rank", "ap", "inp", "n_pos", "n_gallery")


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster with 2 worker processes; yields a client of it."""
    with dask_client(Scheduler(kind="dask", workers=2)) as client:
        yield client


def _same_value(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def assert_same_evaluation(local, remote) -> None:
    """Every row field and every per-query array equal (NaN equals NaN), in order."""
    assert len(local.rows) == len(remote.rows)
    for a, b in zip(local.rows, remote.rows, strict=True):
        assert list(a) == list(b)
        for key in a:
            assert _same_value(a[key], b[key]), (a["protocol"], a["query_modality"], key)
    assert len(local.per_query) == len(remote.per_query)
    for a, b in zip(local.per_query, remote.per_query, strict=True):
        assert (a.protocol, a.variant, a.query_modality, a.plan.trial) == (
            b.protocol,
            b.variant,
            b.query_modality,
            b.plan.trial,
        )
        assert np.array_equal(a.plan.query_idx, b.plan.query_idx)
        for name in ARRAYS:
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype
            assert np.array_equal(x, y, equal_nan=True), (a.protocol, a.plan.trial, name)


def _local(path: Path, protocols: str, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(load_dump(path), resolve_presets(protocols), **options)


def _dask(client, requests, block_queries):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate_on_dask(client, requests, block_queries=block_queries)


CASES = [
    # multi-shot: the AGW-seeded sampler named (the default refuses without rand_perm_cam.mat)
    (
        "baseline-synth-sysu.h5",
        "sysu-all-single,sysu-indoor-multi,mix-id,cross",
        {"convention": SYSUConvention(sampler="agw")},
    ),
    ("mixer-synth-sysu.h5", "all", {"cmc": "identity", "trials": 3}),
    ("synth-regdb.h5", "regdb-t2v,regdb-v2t,all", {}),
    ("synth-llcm.h5", "all", {"distance": "euclidean"}),
]


def test_every_dump_together_equals_in_process(cluster):
    """Several dumps and protocols submitted at once; random query-block sizes."""
    requests = [
        ScoreRequest(str(DUMPS / name), tuple(resolve_presets(protocols)), options)
        for name, protocols, options in CASES
    ]
    local = [_local(DUMPS / name, protocols, **options) for name, protocols, options in CASES]
    rng = random.Random(6)
    for block in (4096, rng.randint(1, 40)):
        remote = _dask(cluster, requests, block)
        for a, b in zip(local, remote, strict=True):
            assert_same_evaluation(a, b)


def test_the_demo_dump_equals_in_process(cluster):
    path = DUMPS / "demo-sysu.h5"
    request = ScoreRequest(str(path), tuple(resolve_presets("all")), {"trials": 4})
    assert_same_evaluation(_local(path, "all", trials=4), _dask(cluster, [request], 1500)[0])


def test_errors_raised_on_workers_come_back(cluster, make_dump):
    pid = np.array([0, 0, 1, 1])
    features = np.ones((4, 3), dtype=np.float32)
    features[1] = 0.0
    path = make_dump(
        features={"default": features},
        pid=pid,
        cam=np.array([1, 3, 1, 3]),
        modality=np.array([0, 1, 0, 1], dtype=np.uint8),
    )
    request = ScoreRequest(str(path), tuple(resolve_presets("mix")))
    with pytest.raises(Exception, match="zero-norm") as info:
        _dask(cluster, [request], 4096)
    local_error = pytest.raises(Exception, match="zero-norm")
    with local_error as local:
        _local(path, "mix")
    assert type(info.value) is type(local.value)
    assert str(info.value) == str(local.value)


# --------------------------------------------------------------------------- CLI


def _run(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_cli_score_with_dask_equals_local():
    args = [
        "score",
        str(DUMPS / "synth-regdb.h5"),
        str(DUMPS / "baseline-synth-sysu.h5"),
        "-f",
        "json",
        "--trials",
        "4",
    ]
    local = _run(args)
    dask = ["--scheduler", "dask", "--dask-workers", "2", "--dask-block-queries", "97"]
    remote = _run([*args, *dask])
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert remote.stderr == local.stderr  # the same skip warnings, replayed from the workers


def test_cli_check_and_leaderboard_with_dask_equal_local(tmp_path, cluster):
    folder = tmp_path / "dumps"
    (folder / "expected").mkdir(parents=True)
    for name in ("synth-regdb.h5", "synth-llcm.h5", "baseline-synth-sysu.h5"):
        (folder / name).write_bytes((DUMPS / name).read_bytes())
        stem = Path(name).stem
        (folder / "expected" / f"{stem}.json").write_text(
            (DUMPS / "expected" / f"{stem}.json").read_text()
        )
    address = cluster.scheduler.address  # the module's cluster, through --scheduler-address
    dask = ["--scheduler", "dask", "--scheduler-address", address, "--dask-block-queries", "500"]
    local = _run(["check", str(folder)])
    remote = _run(["check", str(folder), *dask])
    assert local.exit_code == 0, local.output
    assert (remote.exit_code, remote.stdout, remote.stderr) == (0, local.stdout, local.stderr)

    dumps = sorted(str(p) for p in folder.glob("*.h5"))
    _run(["leaderboard", *dumps, "-o", str(tmp_path / "local"), "--no-reported"])
    remote = _run(["leaderboard", *dumps, "-o", str(tmp_path / "dask"), "--no-reported", *dask])
    assert remote.exit_code == 0, remote.output
    written = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "dask").iterdir()) and written
    for name in written:
        assert (tmp_path / "dask" / name).read_text() == (tmp_path / "local" / name).read_text()


def test_cli_unreachable_scheduler_is_a_one_line_error():
    result = CliRunner().invoke(
        cli,
        [
            "score",
            str(DUMPS / "synth-regdb.h5"),
            "--scheduler",
            "dask",
            "--scheduler-address",
            "tcp://127.0.0.1:9",
            "--dask-timeout",
            "0.5",
        ],
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")


def test_cli_address_without_dask_scheduler_is_refused():
    result = CliRunner().invoke(
        cli, ["check", str(DUMPS), "--scheduler-address", "tcp://127.0.0.1:9"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --scheduler-address needs --scheduler dask"


def test_dask_applies_the_memory_options_on_workers(cluster):
    """Workers stream over gallery blocks as in-process does (same blocks: same numbers)."""
    memory = MemoryOptions(gallery_block=53, query_block=41)
    protocols = "mix,mix-id,cross"
    request = ScoreRequest(
        str(DUMPS / "synth-regdb.h5"), tuple(resolve_presets(protocols)), memory=memory
    )
    local = _local(DUMPS / "synth-regdb.h5", protocols, memory=memory)
    (remote,) = _dask(cluster, [request], 4096)
    assert_same_evaluation(local, remote)
    # and a limit too small for one block fails on the worker exactly as in-process
    tiny = MemoryOptions(limit=100_000)
    with pytest.raises(VireidBenchError, match="memory limit too small") as here:
        _local(DUMPS / "synth-regdb.h5", protocols, memory=tiny)
    request = ScoreRequest(
        str(DUMPS / "synth-regdb.h5"), tuple(resolve_presets(protocols)), memory=tiny
    )
    with pytest.raises(VireidBenchError, match="memory limit too small") as there:
        _dask(cluster, [request], 4096)
    assert str(there.value) == str(here.value)
