"""The torch backend (``--device``) on CPU: the same per-query outputs as the Numba path on
exact features (every preset, both CMC conventions, ties, several blocks and trials), the
command line and the Python API, and the one-line errors (no torch, no CUDA)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vireid_bench.cli.main import cli
from vireid_bench.engine.scoring import evaluate, score
from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import load_dump, write_dump
from vireid_bench.protocol import resolve_presets

torch = pytest.importorskip("torch")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def exact_dump(path, seed, n=48, ids=6, trials=1, two_sets=False):
    """Small integer features (exact Euclidean distances in float32: ties everywhere)."""
    rng = np.random.default_rng(seed)

    def split():
        pid = rng.integers(0, ids, n)
        cam = rng.integers(1, 5, n)
        signs = rng.choice([-1.0, 1.0], 4)
        sets = ("a", "b") if two_sets else ("a",)
        feats = {s: (rng.integers(1, 4, size=(n, 4)) * signs).astype(np.float32) for s in sets}
        return {"features": feats, "pid": pid, "cam": cam, "modality": (cam >= 3).astype(np.uint8)}

    kwargs = {
        "cross_features": "a",
        "same_features": "b" if two_sets else "a",
        "default_features": "a",
    }
    if trials > 1:
        from vireid_bench.io.dump import FeatureSplit

        return write_dump(path, trials=[FeatureSplit(**split()) for _ in range(trials)], **kwargs)
    return write_dump(path, **split(), **kwargs)


def assert_same_per_query(path, **options):
    dump = load_dump(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        numba = evaluate(dump, resolve_presets("all"), **options)
        on_torch = evaluate(dump, resolve_presets("all"), device="cpu", **options)
    assert len(numba.per_query) == len(on_torch.per_query) > 0
    for a, b in zip(numba.per_query, on_torch.per_query, strict=True):
        assert (a.protocol, a.query_modality) == (b.protocol, b.query_modality)
        for key in ("first_rank", "n_pos", "n_gallery"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
        for key in ("ap", "inp"):
            np.testing.assert_allclose(getattr(a, key), getattr(b, key), atol=1e-12, rtol=0)
    assert [r["mAP"] for r in numba.rows] == pytest.approx(
        [r["mAP"] for r in on_torch.rows], nan_ok=True, abs=1e-10
    )


@pytest.mark.parametrize("cmc", ["image", "identity"])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_every_preset_same_outputs_as_numba(tmp_path, cmc, distance):
    path = exact_dump(tmp_path / "d.h5", seed=1)
    assert_same_per_query(path, cmc=cmc, distance=distance)


def test_several_blocks_trials_and_feature_sets(tmp_path):
    path = exact_dump(tmp_path / "d.h5", seed=2, trials=2, two_sets=True)
    # one query row per block
    assert_same_per_query(path, distance="euclidean", block_bytes=1)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(2, 40), st.integers(1, 5), st.booleans())
def test_random_exact_dumps_same_outputs_as_numba(seed, n, ids, identity):
    with tempfile.TemporaryDirectory() as folder:
        path = exact_dump(os.path.join(folder, "d.h5"), seed=seed, n=n, ids=ids)
        assert_same_per_query(path, distance="euclidean", cmc="identity" if identity else "image")


def test_python_api_and_command_line(tmp_path):
    path = str(exact_dump(tmp_path / "d.h5", seed=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = score(path, "mix,cross,uni", distance="euclidean")
        on_torch = score(path, "mix,cross,uni", distance="euclidean", device="cpu")
    assert plain.equals(on_torch)
    runner = CliRunner()
    args = ["score", path, "--protocol", "mix,cross", "--distance", "euclidean"]
    default = runner.invoke(cli, args)
    device = runner.invoke(cli, [*args, "--device", "cpu"])
    auto = runner.invoke(cli, [*args, "--device", "auto"])
    assert default.exit_code == device.exit_code == auto.exit_code == 0, device.output
    assert default.output == device.output == auto.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_device_is_a_one_line_error(tmp_path):
    path = str(exact_dump(tmp_path / "d.h5", seed=4))
    result = CliRunner().invoke(cli, ["score", path, "--device", "cuda"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --device cuda: no CUDA device is available to torch"
    ]
    with pytest.raises(ProtocolError, match="no CUDA device"):
        score(path, "mix", device="cuda")


def test_unknown_device_is_refused(tmp_path):
    path = str(exact_dump(tmp_path / "d.h5", seed=5))
    with pytest.raises(ProtocolError, match="unknown device 'gpu'"):
        score(path, "mix", device="gpu")


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )


def test_without_torch_a_one_line_error(tmp_path):
    path = str(exact_dump(tmp_path / "d.h5", seed=6))
    code = (
        "import sys; sys.modules['torch'] = None\n"  # torch not installed
        "from vireid_bench.cli.main import main\n"
        f"sys.argv = ['vireid-bench', 'score', {path!r}, '--device', 'cpu']\n"
        "main()\n"
    )
    result = run_python(code)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device: needs PyTorch"), lines


def test_torch_not_imported_by_the_package_or_the_scorer():
    result = run_python(
        "import sys, vireid_bench, vireid_bench.engine.scoring, vireid_bench.cli.main\n"
        "print('torch' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
