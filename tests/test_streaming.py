"""Streamed scoring (gallery blocks, lazy HDF5 features) equals the in-memory path.

Features here make every float32 distance exact whatever the BLAS block shape (small
integers for Euclidean; entries +-1 with D = 16 for cosine, so normalised entries are
+-1/4 and dot products multiples of 1/16), so the two paths must agree to the last bit and
ties (many, by construction) must be broken by pool position in both.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from brute_force import score_query
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vireid_bench.cli.main import cli
from vireid_bench.engine.scoring import MemoryOptions, _streamed_blocks, evaluate
from vireid_bench.errors import DumpError, VireidBenchError
from vireid_bench.io.dump import FeatureSplit, LazyFeatures, load_dump, write_dump
from vireid_bench.io.memory import parse_memory_limit
from vireid_bench.protocol import builtin_presets, resolve_presets
from vireid_bench.protocol.datasets import SYSUConvention

PER_QUERY = ("first_rank", "n_pos", "n_gallery", "ap", "inp")


def exact_features(rng: np.random.Generator, n: int, distance: str) -> np.ndarray:
    """Features whose float32 distances are exact in any summation order."""
    if distance == "cosine":
        return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, 16))
    return rng.integers(-3, 4, size=(n, 8)).astype(np.float32)


def write_random_dump(path, seed: int, n: int, distance: str, two_sets: bool):
    rng = np.random.default_rng(seed)
    pid = rng.integers(0, max(2, n // 4), size=n)
    cam = rng.integers(1, 5, size=n)
    modality = rng.integers(0, 2, size=n)
    features = exact_features(rng, n, distance)
    if two_sets:
        features = {"cross": features, "same": exact_features(rng, n, distance)}
        return write_dump(
            path,
            features=features,
            pid=pid,
            cam=cam,
            modality=modality,
            default_features="cross",
            cross_features="cross",
            same_features="same",
        )
    return write_dump(path, features=features, pid=pid, cam=cam, modality=modality)


def assert_same_scores(a, b) -> None:
    assert len(a.per_query) == len(b.per_query)
    for x, y in zip(a.per_query, b.per_query, strict=True):
        assert (x.protocol, x.query_modality) == (y.protocol, y.query_modality)
        for key in PER_QUERY:
            np.testing.assert_allclose(
                getattr(x, key), getattr(y, key), atol=1e-9, rtol=0, err_msg=key
            )
    for row_a, row_b in zip(a.rows, b.rows, strict=True):
        for key, value in row_a.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(row_b[key])
            elif isinstance(value, float):
                assert row_b[key] == pytest.approx(value, abs=1e-9), key
            else:
                assert row_b[key] == value, key


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(6, 70),
    distance=st.sampled_from(["cosine", "euclidean"]),
    two_sets=st.booleans(),
    cmc=st.sampled_from(["image", "identity"]),
    query_block=st.integers(1, 80),
    gallery_block=st.integers(1, 80),
    lazy=st.booleans(),
)
def test_streamed_equals_in_memory_on_every_preset(
    tmp_path, seed, n, distance, two_sets, cmc, query_block, gallery_block, lazy
):
    path = write_random_dump(tmp_path / f"d{seed}_{n}.h5", seed, n, distance, two_sets)
    presets = list(builtin_presets().values())
    eager = load_dump(path)
    reference = evaluate(eager, presets, distance=distance, cmc=cmc)
    streamed = evaluate(
        load_dump(path, lazy=lazy),
        presets,
        distance=distance,
        cmc=cmc,
        memory=MemoryOptions(query_block=query_block, gallery_block=gallery_block),
    )
    assert_same_scores(reference, streamed)


def test_streamed_equals_brute_force_by_hand(tmp_path):
    """A fixed case, scored by the slow brute force and by one-image gallery blocks."""
    rng = np.random.default_rng(7)
    path = write_random_dump(tmp_path / "d.h5", 7, 30, "euclidean", two_sets=False)
    dump = load_dump(path)
    split = dump.splits[0]
    preset = builtin_presets()["mix-cam-id"]
    evaluation = evaluate(
        load_dump(path, lazy=True),
        [preset],
        distance="euclidean",
        cmc="identity",
        memory=MemoryOptions(query_block=3, gallery_block=1),
    )
    features = split.features["default"].astype(np.float64)
    pool = [
        {"uid": j, "pid": int(split.pid[j]), "cam": int(split.cam[j]), "mod": int(m)}
        for j, m in enumerate(split.modality)
    ]
    clauses = [tuple(c) for c in preset.clause_codes().tolist()]
    del rng
    for scores in evaluation.per_query:
        for i, q in enumerate(scores.plan.query_idx):
            distances = np.sqrt(((features - features[q]) ** 2).sum(axis=1)).tolist()
            expected = score_query(distances, pool[q], pool, clauses, identity_cmc=True)
            assert scores.first_rank[i] == expected["first_rank"]
            assert scores.n_pos[i] == expected["n_pos"]
            assert scores.n_gallery[i] == expected["n_gallery"]
            if expected["n_pos"]:
                assert scores.ap[i] == pytest.approx(expected["ap"], abs=1e-12)
                assert scores.inp[i] == pytest.approx(expected["inp"], abs=1e-12)


def test_memory_limit_chooses_streaming_on_stored_dump():
    """A limit too small for whole rows streams; lazy and eager streaming agree bitwise."""
    path = "feature_dumps/synth-regdb.h5"
    presets = [builtin_presets()[name] for name in ("mix", "mix-id", "cross")]
    memory = MemoryOptions(limit=2 * 1024**2)
    eager = evaluate(load_dump(path), presets, memory=memory)
    lazy = evaluate(load_dump(path, lazy=True), presets, memory=memory)
    assert_same_scores(eager, lazy)
    assert all(row["status"] == "ok" for row in eager.rows)


@pytest.mark.parametrize(
    ("n_queries", "n_pool", "matrices", "row_bytes", "budget"),
    [
        (10_000, 1_000_000, 1, 2048, 64 * 1024**2),
        (10_000, 1_000_000, 3, 4096, 256 * 1024**2),
        (50, 100, 1, 64, 10 * 1024**2),
        (100_000, 100_000, 1, 2048, 1024**3),
    ],
)
def test_streamed_blocks_fit_the_budget(n_queries, n_pool, matrices, row_bytes, budget):
    q, g = _streamed_blocks(n_queries, n_pool, matrices, row_bytes, budget)
    assert 1 <= q <= n_queries and 1 <= g <= n_pool
    assert q * g * 4 * matrices + (q + g) * row_bytes <= budget


def test_streamed_blocks_refuse_an_impossible_budget():
    with pytest.raises(VireidBenchError, match="memory limit too small"):
        _streamed_blocks(10, 10, 1, 10_000, 100)


def test_lazy_features_read_in_slabs(tmp_path, monkeypatch):
    path = write_random_dump(tmp_path / "d.h5", 3, 50, "euclidean", two_sets=False)
    eager = load_dump(path).splits[0].features["default"]
    lazy = load_dump(path, lazy=True).splits[0].features["default"]
    assert isinstance(lazy, LazyFeatures) and lazy.shape == eager.shape
    monkeypatch.setattr("vireid_bench.io.dump_format.LAZY_READ_BYTES", 3 * 4 * eager.shape[1])
    rows = np.array([0, 1, 2, 3, 9, 10, 31, 49])
    np.testing.assert_array_equal(lazy.read_rows(rows), eager[rows])
    assert lazy.read_rows(np.array([], dtype=np.int64)).shape == (0, eager.shape[1])


def test_lazy_load_refuses_nan_naming_the_field(tmp_path):
    import h5py

    path = write_random_dump(tmp_path / "d.h5", 3, 20, "euclidean", two_sets=False)
    with h5py.File(path, "r+") as handle:
        data = handle["features/default"][()]
        data[17, 2] = np.nan
        del handle["features/default"]
        handle["features/default"] = data
    with pytest.raises(DumpError, match=r"features/default: 1 row\(s\) contain NaN.*row 17"):
        load_dump(path, lazy=True)


def test_lazy_zero_norm_row_names_the_split_row(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.standard_normal((20, 8)).astype(np.float32)
    features[13] = 0.0
    path = write_dump(
        tmp_path / "z.h5",
        features=features,
        pid=np.arange(20) % 5,
        cam=np.arange(20) % 4 + 1,
        modality=np.arange(20) % 2,
    )
    message = r"features/default: 1 zero-norm row\(s\) \(first at row 13\)"
    with pytest.raises(DumpError, match=message):
        evaluate(
            load_dump(path, lazy=True),
            [builtin_presets()["mix"]],
            memory=MemoryOptions(gallery_block=7),
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4G", 4 * 1000**3),
        ("512MiB", 512 * 1024**2),
        ("2.5gb", 2_500_000_000),
        ("1048576", 1024**2),
    ],
)
def test_parse_memory_limit(text, expected):
    assert parse_memory_limit(text) == expected


@pytest.mark.parametrize("text", ["3X", "", "-1G", "0%", "150%", "60KiB"])
def test_parse_memory_limit_refuses(text):
    with pytest.raises(VireidBenchError, match="--memory-limit"):
        parse_memory_limit(text)


def test_parse_memory_limit_percentage_of_available():
    assert 0 < parse_memory_limit("10%") < parse_memory_limit("50%")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_cli_memory_limit_streams_with_identical_output(tmp_path):
    # 800 images, two sets: in memory they need 3 x 102 KB resident, more than the limit
    path = write_random_dump(tmp_path / "d.h5", 11, 800, "cosine", two_sets=True)
    runner = CliRunner()
    default = runner.invoke(cli, ["score", str(path), "-p", "all", "-f", "json"])
    assert default.exit_code == 0, default.output
    for extra in (["--memory-limit", "200K"], ["--gallery-block", "37"]):
        streamed = runner.invoke(cli, ["score", str(path), "-p", "all", "-f", "json", *extra])
        assert streamed.exit_code == 0, streamed.output
        assert json.loads(streamed.stdout) == json.loads(default.stdout)


def test_cli_bad_memory_limit_exits_2(tmp_path):
    path = write_random_dump(tmp_path / "d.h5", 1, 20, "cosine", two_sets=False)
    result = CliRunner().invoke(cli, ["score", str(path), "--memory-limit", "lots"])
    assert result.exit_code == 2
    assert "--memory-limit: cannot read 'lots'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("lazy", [False, True])
def test_streamed_equals_in_memory_under_dataset_conventions(tmp_path, lazy):
    """SYSU-MM01 sampled pools (trials, co-located cameras, identity CMC) and RegDB-style
    trial splits, with exact features in the stored dumps' label layouts."""
    rng = np.random.default_rng(5)
    sysu = load_dump("feature_dumps/demo-sysu.h5").splits[0]
    sysu_path = write_dump(
        tmp_path / "sysu.h5",
        features=exact_features(rng, sysu.n_images, "cosine"),
        pid=sysu.pid,
        cam=sysu.cam,
        modality=sysu.modality,
        paths=sysu.path,
        dataset="sysu-mm01",
    )
    splits = [
        FeatureSplit(
            features={"default": exact_features(rng, 60, "euclidean")},
            pid=np.repeat(np.arange(15), 4),
            cam=np.tile([1, 1, 2, 2], 15),
            modality=np.tile([0, 0, 1, 1], 15).astype(np.uint8),
        )
        for _ in range(3)
    ]
    trials_path = write_dump(tmp_path / "trials.h5", trials=splits)
    for path, protocols, options in (
        (
            sysu_path,
            "sysu-all-single:all,sysu-indoor-multi",
            {"trials": 2, "convention": SYSUConvention(sampler="agw")},
        ),
        (trials_path, "all", {"distance": "euclidean", "cmc": "identity"}),
    ):
        presets = resolve_presets(protocols)
        reference = evaluate(load_dump(path), presets, **options)
        streamed = evaluate(
            load_dump(path, lazy=lazy),
            presets,
            memory=MemoryOptions(query_block=300, gallery_block=97),
            **options,
        )
        assert_same_scores(reference, streamed)
