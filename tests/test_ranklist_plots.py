"""plot retrieval --ranklists (results/ranklist_plots.py, cli/plot_ranklists.py), the rank-list
kernel (engine/ranklist_kernel.py) against a brute-force argsort, and the Parquet path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from vireid_bench.cli import cli
from vireid_bench.engine.ranklist_kernel import rank_block
from vireid_bench.engine.reference import exclusion_mask
from vireid_bench.io.dump import write_dump
from vireid_bench.results.plots import MATCH_COLOUR, MISS_COLOUR
from vireid_bench.results.ranklist_plots import (
    RanklistError,
    plot_ranklists,
    read_ranklists,
    select_strips,
)

pytest.importorskip("matplotlib")

# Row: (features, pid, cam, modality, colour). Rows 0 and 5 are infrared queries; under
# `cross` their galleries are the visible rows 1-4, by cosine distance to the query:
#   query 0 ([1, 0], id 1): row 1 (0.005, id 2), row 2 (0.106, id 1), row 3 (0.293, id 3),
#                           row 4 (1.0, id 1)  -> top-3 1, 2, 3; matches F T F; ranks 2, 4
#   query 5 ([0, 1], id 2): row 4 (0.0, id 1), row 3 (0.293), row 2 (0.553), row 1 (0.900)
#                           -> top-3 4, 3, 2; no match in the top 3; ranks 4
ROWS = [
    ([1.0, 0.0], 1, 3, 1, (255, 0, 0)),
    ([1.0, 0.1], 2, 1, 0, (0, 255, 0)),
    ([1.0, 0.5], 1, 1, 0, (0, 0, 255)),
    ([1.0, 1.0], 3, 2, 0, (255, 255, 0)),
    ([0.0, 1.0], 1, 2, 0, (0, 255, 255)),
    ([0.0, 1.0], 2, 4, 1, (255, 0, 255)),
]


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def scene(tmp_path):
    """Tiny PNGs (one solid colour per row) under images/, a dump whose paths name them;
    row 3's path leads outside the image root (to a real file there)."""
    from PIL import Image

    root = tmp_path / "images"
    (root / "cam").mkdir(parents=True)
    paths = []
    for row, (*_, colour) in enumerate(ROWS):
        name = f"cam/r{row}.png"
        Image.new("RGB", (4, 8), colour).save(root / name)
        paths.append(name)
    Image.new("RGB", (4, 8), (10, 10, 10)).save(tmp_path / "outside.png")
    paths[3] = "../outside.png"
    dump = write_dump(
        tmp_path / "d.h5",
        features=np.array([r[0] for r in ROWS], dtype=np.float32),
        pid=[r[1] for r in ROWS],
        cam=[r[2] for r in ROWS],
        modality=[r[3] for r in ROWS],
        paths=paths,
    )
    return tmp_path, dump, root, paths


def _score(runner, dump, out, top_k=3):
    result = runner.invoke(
        cli, ["score", str(dump), "-p", "cross", "--ranklists", str(out), "--top-k", str(top_k)]
    )
    assert result.exit_code == 0, result.stderr
    return out


def _colour(ax):
    """The mean RGB (0-255) of the image an axes shows."""
    array = np.asarray(ax.images[0].get_array(), dtype=np.float64)
    if array.max() <= 1.0:
        array = array * 255
    return tuple(np.round(array[..., :3].reshape(-1, 3).mean(axis=0)).astype(int).tolist())


def test_strips_from_jsonl_show_the_ranked_images(runner, scene):
    tmp_path, dump, root, paths = scene
    ranks = _score(runner, dump, tmp_path / "r.jsonl")
    strips = select_strips(read_ranklists(ranks), setting="cross@infrared", top_k=3)
    assert [s.query_row for s in strips] == [0, 5]
    first, second = strips
    assert [c.path for c in first.cells] == [paths[0], paths[1], paths[2], paths[3]]
    assert [c.match for c in first.cells] == [None, False, True, False]
    assert [c.rank for c in first.cells] == [0, 1, 2, 3]
    assert first.cells[1].distance == pytest.approx(1 - 1 / np.sqrt(1.01), abs=1e-6)
    assert [c.path for c in second.cells] == [paths[5], paths[4], paths[3], paths[2]]
    assert [c.match for c in second.cells] == [None, False, False, False]

    figure, missing = plot_ranklists(strips, root)
    assert missing == ["../outside.png", "../outside.png"]  # refused: outside --images
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert len(axes) == 8
    colours = [_colour(ax) for ax in axes]
    grey = (204, 204, 204)
    assert colours[:4] == [ROWS[0][4], ROWS[1][4], ROWS[2][4], grey]
    assert colours[4:] == [ROWS[5][4], ROWS[4][4], grey, ROWS[2][4]]
    edges = [ax.spines["top"].get_edgecolor() for ax in axes]
    from matplotlib.colors import to_rgba

    expected = ["black", MISS_COLOUR, MATCH_COLOUR, MISS_COLOUR, "black", *[MISS_COLOUR] * 3]
    assert edges == [to_rgba(c) for c in expected]


def test_cli_plot_retrieval_from_ranklists(runner, scene):
    tmp_path, dump, root, _ = scene
    ranks = _score(runner, dump, tmp_path / "r.jsonl")
    out = tmp_path / "strips.png"
    result = runner.invoke(
        cli,
        [
            "plot", "retrieval", "--ranklists", str(ranks), "--images", str(root),
            "--setting", "cross@infrared", "--query", "5", "--top-k", "2", "-o", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in result.stderr
    assert "1 image(s) not found" in result.stderr  # row 3: outside the image root
    from matplotlib.image import imread

    assert imread(out).shape[1] > imread(out).shape[0]  # one strip, three cells wide


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the file holds several settings; pick one with --setting (e.g. cross@infrared"),
        (["--setting", "mix@infrared"], "--setting: 'mix@infrared' is not in the file"),
        (["--setting", "cross@visible", "--trial", "3"], "--trial: no rank list for trial 3"),
        (["--setting", "cross@infrared", "--query", "1"], "--query: no rank list for query row"),
        (["--setting", "cross@infrared", "--seed", "3"], "--seed: not used with --ranklists"),
        (["DUMP", "--setting", "cross@infrared"], "give a rank-list file or a DUMP, not both"),
    ],
)
def test_cli_ranklist_plot_refusals(runner, scene, args, message):
    tmp_path, dump, root, _ = scene
    ranks = _score(runner, dump, tmp_path / "r.jsonl")
    args = [str(dump) if a == "DUMP" else a for a in args]
    out = tmp_path / "s.png"
    result = runner.invoke(
        cli,
        ["plot", "retrieval", "--ranklists", str(ranks), "--images", str(root), "-o", str(out)]
        + args,
    )
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not out.exists()


def test_cli_rank_list_options_need_ranklists_and_bad_files(runner, scene):
    tmp_path, dump, root, _ = scene
    result = runner.invoke(
        cli,
        ["plot", "retrieval", str(dump), "--images", str(root), "--query", "0", "-o", "x.png"],
    )
    assert result.exit_code == 2 and "--query: only with --ranklists FILE" in result.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"protocol": "cross"}\nnot json\n')
    result = runner.invoke(
        cli, ["plot", "retrieval", "--ranklists", str(bad), "--images", str(root), "-o", "x.png"]
    )
    assert result.exit_code == 2
    assert f"{bad}:1: not a rank list (no variant" in result.stderr
    bad.write_text("\nnot json\n")
    with pytest.raises(RanklistError, match=r"bad.jsonl:2: not JSON"):
        list(read_ranklists(bad))
    with pytest.raises(RanklistError, match="no such file"):
        list(read_ranklists(tmp_path / "none.jsonl"))


def test_no_paths_in_the_dump_is_one_line(runner, tmp_path):
    dump = write_dump(
        tmp_path / "d.h5",
        features=np.array([r[0] for r in ROWS], dtype=np.float32),
        pid=[r[1] for r in ROWS],
        cam=[r[2] for r in ROWS],
        modality=[r[3] for r in ROWS],
    )
    ranks = _score(runner, dump, tmp_path / "r.jsonl")
    result = runner.invoke(
        cli,
        [
            "plot", "retrieval", "--ranklists", str(ranks), "--images", str(tmp_path),
            "--setting", "cross@infrared", "-o", str(tmp_path / "s.png"),
        ],
    )  # fmt: skip
    assert result.exit_code == 2 and "no image path" in result.stderr


# ----------------------------------------------------------------------------- Parquet


def test_parquet_holds_the_jsonl_rows_and_draws_the_same(runner, scene):
    pytest.importorskip("pyarrow", reason="the .parquet path needs pyarrow (pip install pyarrow)")
    tmp_path, dump, root, _ = scene
    jsonl = _score(runner, dump, tmp_path / "r.jsonl", top_k=4)
    parquet = _score(runner, dump, tmp_path / "r.parquet", top_k=4)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(parquet).metadata.num_rows == 6  # 2 infrared + 4 visible queries
    rows_jsonl = [record for _, record in read_ranklists(jsonl)]
    rows_parquet = [record for _, record in read_ranklists(parquet)]
    assert rows_parquet == rows_jsonl
    assert rows_jsonl[0]["top"][0]["path"] == "cam/r1.png"  # nested fields survive
    from_jsonl = select_strips(read_ranklists(jsonl), setting="cross@visible", top_k=4)
    from_parquet = select_strips(read_ranklists(parquet), setting="cross@visible", top_k=4)
    assert from_parquet == from_jsonl and len(from_jsonl) == 4
    out = tmp_path / "p.png"
    result = runner.invoke(
        cli,
        [
            "plot", "retrieval", "--ranklists", str(parquet), "--images", str(root),
            "--setting", "cross@visible", "-o", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_parquet_larger_dump_matches_jsonl_with_several_row_groups(tmp_path):
    pytest.importorskip("pyarrow", reason="the .parquet path needs pyarrow (pip install pyarrow)")
    from vireid_bench.engine.ranklists import iter_ranklists, write_ranklists
    from vireid_bench.io.dump import load_dump
    from vireid_bench.protocol import resolve_presets
    from vireid_bench.synth.dumps import write_synth_dump

    path = write_synth_dump(
        tmp_path / "g.h5", ids=5, cameras="1,2:visible,3:infrared", per_cam=2, dim=8
    )
    dump = load_dump(path)
    presets = resolve_presets("all")
    n_json = write_ranklists(
        tmp_path / "r.jsonl", iter_ranklists(dump, presets, top_k=5, block_bytes=256)
    )
    n_parquet = write_ranklists(
        tmp_path / "r.parquet", iter_ranklists(dump, presets, top_k=5, block_bytes=256)
    )
    import pyarrow.parquet as pq

    assert n_json == n_parquet > 0
    assert pq.ParquetFile(tmp_path / "r.parquet").metadata.num_row_groups > 1
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r for _, r in read_ranklists(tmp_path / "r.parquet")] == lines


# ----------------------------------------------------------------------------- kernel


def _brute_force(dist, excluded, g_pid, q_pid, top_k, identity):
    """The old rule: a stable argsort of each query's row, excluded images dropped."""
    out = []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        ranked = order[~excluded[i, order]]
        matches = g_pid[ranked] == q_pid[i]
        ranks = (np.flatnonzero(matches) + 1).tolist()
        first = ranks[0] if ranks else 0
        if identity and ranks:
            first = int(np.unique(g_pid[ranked][: ranks[0] - 1]).size) + 1
        out.append((ranked[:top_k].tolist(), ranks, int(ranked.size), first))
    return out


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 6),
    n=st.integers(0, 30),
    top_k=st.integers(1, 8),
    levels=st.integers(1, 6),
    identity=st.booleans(),
    clause=st.sampled_from([[0, 0, 0], [1, 1, 0], [0, 0, 1], [2, 0, 2]]),
    seed=st.integers(0, 2**16),
)
def test_rank_block_equals_a_stable_argsort(m, n, top_k, levels, identity, clause, seed):
    rng = np.random.default_rng(seed)
    # few distance levels: many ties, which must keep pool order
    dist = rng.integers(0, levels, size=(m + 2, n + 3)).astype(np.float32)
    q_rows = rng.permutation(m + 2)[:m]
    g_cols = rng.permutation(n + 3)[:n]
    g_uid = np.arange(n)
    q_uid = np.where(rng.random(m) < 0.5, rng.integers(0, max(n, 1), m), -1 - np.arange(m))
    q_pid, g_pid = rng.integers(0, 4, m), rng.integers(0, 4, n)
    q_cam, g_cam = rng.integers(0, 3, m), rng.integers(0, 3, n)
    q_mod, g_mod = rng.integers(0, 2, m), rng.integers(0, 2, n)
    clauses = np.array([clause], dtype=np.int8)
    if clause == [0, 0, 0]:
        clauses = np.zeros((0, 3), dtype=np.int8)
    got = rank_block(
        dist, q_rows, q_uid, q_pid, q_cam, q_mod, g_cols, g_uid, g_pid, g_cam, g_mod,
        clauses, identity, top_k,
    )  # fmt: skip
    view = dist[q_rows][:, g_cols]
    excluded = exclusion_mask(q_pid, q_cam, q_mod, q_uid, g_pid, g_cam, g_mod, g_uid, clauses)
    expected = _brute_force(view, excluded, g_pid, q_pid, top_k, identity)
    for i, (top, ranks, size, first) in enumerate(expected):
        row = got["top"][i]
        assert row[row >= 0].tolist() == top
        assert (row[len(top) :] == -1).all()
        start, count = got["offsets"][i], got["n_pos"][i]
        assert got["ranks"][start : start + count].tolist() == ranks
        assert got["n_gallery"][i] == size and got["first_hit"][i] == first


def test_rank_block_hand_case_and_refusals():
    # one query, pool distances 3, 1, 1, 0, 2 (ties at 1 keep pool order); pids 7, 5, 7, 5, 7
    dist = np.array([[3.0, 1.0, 1.0, 0.0, 2.0]])
    args = dict(
        q_rows=[0], q_uid=[-1], q_pid=[7], q_cam=[0], q_mod=[0], g_cols=np.arange(5),
        g_uid=np.arange(5), g_pid=[7, 5, 7, 5, 7], g_cam=[1] * 5, g_mod=[1] * 5,
        clauses=np.zeros((0, 3), np.int8),
    )  # fmt: skip
    got = rank_block(dist, **args, identity_cmc=True, top_k=3)
    assert got["top"].tolist() == [[3, 1, 2]]
    assert got["ranks"][: got["n_pos"][0]].tolist() == [3, 4, 5]
    assert got["first_hit"].tolist() == [2]  # one identity (5) before the first match
    with pytest.raises(ValueError, match="top_k"):
        rank_block(dist, **args, identity_cmc=False, top_k=0)
    with pytest.raises(ValueError, match="g_cols"):
        rank_block(dist, **{**args, "g_cols": np.arange(1, 6)}, identity_cmc=False, top_k=1)
