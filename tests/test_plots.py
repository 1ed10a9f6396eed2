"""vireid-bench plot: CMC curves, distance histograms, retrieval strips."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("matplotlib")

from vireid_bench.cli.plot import plot_command  # noqa: E402
from vireid_bench.engine.scoring import RANKS, evaluate  # noqa: E402
from vireid_bench.io.dump import load_dump, write_dump  # noqa: E402
from vireid_bench.protocol import resolve_presets  # noqa: E402
from vireid_bench.results import plots  # noqa: E402
from vireid_bench.results.leaderboard import setting_key  # noqa: E402
from vireid_bench.synth.dumps import write_synth_dump  # noqa: E402

CAMS = "1,2:visible,3,4:infrared"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_dump(path, seed=0):
    return write_synth_dump(path, ids=10, cameras=CAMS, per_cam=2, dim=16, seed=seed)


def assert_figures(*paths):
    for path in paths:
        assert path.is_file() and path.stat().st_size > 1000, path
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(PNG_MAGIC)
        else:
            assert b"<svg" in data[:2000]


def test_plotted_cmc_values_equal_the_scored_ones(tmp_path):
    dump = load_dump(small_dump(tmp_path / "a.h5"))
    evaluation = evaluate(dump, resolve_presets("mix,mix-id,cross"), query_modalities=["infrared"])
    curves = plots.cmc_curves(evaluation.per_query, max_rank=20)
    figure = plots.plot_cmc({"A": curves})
    panels = {ax.get_title(): ax for ax in figure.axes if ax.get_visible()}
    for row in evaluation.rows:
        key = setting_key(row["protocol"], row["variant"], row["query_modality"])
        line = next(line for line in panels[key].get_lines() if line.get_label() == "A")
        x, y = line.get_xdata(), line.get_ydata()
        assert list(x) == list(range(1, 21))
        for k in RANKS:
            assert y[k - 1] == pytest.approx(row[f"rank{k}"], abs=1e-9), (key, k)
        assert np.all(np.diff(y) >= 0)
    outputs = plots.save_figure(figure, [tmp_path / "cmc.png", tmp_path / "cmc.svg"])
    assert_figures(*outputs)


def test_cmc_command_overlays_models(tmp_path):
    a, b = small_dump(tmp_path / "a.h5", 0), small_dump(tmp_path / "b.h5", 1)
    png, svg = tmp_path / "out" / "cmc.png", tmp_path / "out" / "cmc.svg"
    result = CliRunner().invoke(
        plot_command,
        ["cmc", str(a), str(b), "-p", "mix-id,cross", "-o", str(png), "-o", str(svg)]
        + ["--parents"],
    )
    assert result.exit_code == 0, result.output
    assert_figures(png, svg)
    assert "<svg" in svg.read_text() and "synthetic(seed=1)" in svg.read_text()


def hand_dump(path):
    """Three visible gallery images and two infrared queries with 2-D features.

    Cross-modal distances (cosine, 1 - cos) of the infrared queries:
      q0 (pid 1, (0.8, 0.6)): g0 pid 1 (1, 0) -> 0.2; g1 pid 1 (0.6, 0.8) -> 0.04;
                              g2 pid 2 (0, 1) -> 0.4
      q1 (pid 2, (0.6, 0.8)): g0 -> 0.4; g1 -> 0.0; g2 -> 0.2
    intra = {0.2, 0.04, 0.2}: mean 0.14667, std 0.07542
    inter = {0.4, 0.4, 0.0}:  mean 0.26667, std 0.18856
    """
    features = np.array([[1, 0], [0.6, 0.8], [0, 1], [0.8, 0.6], [0.6, 0.8]], dtype=np.float32)
    return write_dump(
        path,
        features=features,
        pid=[1, 1, 2, 1, 2],
        cam=[1, 1, 1, 2, 2],
        modality=[0, 0, 0, 1, 1],
        model="hand",
    )


def test_distance_histograms_show_the_hand_worked_statistics(tmp_path):
    dump = load_dump(hand_dump(tmp_path / "hand.h5"))
    (item,) = plots.distance_distributions(
        dump, resolve_presets("cross"), query_modalities=["infrared"]
    )
    assert item.setting == "cross@infrared" and item.queries == 2
    assert sorted(item.intra) == pytest.approx([0.04, 0.2, 0.2], abs=1e-6)
    assert sorted(item.inter) == pytest.approx([0.0, 0.4, 0.4], abs=1e-6)
    summary = item.summary()
    assert summary["intra_mean"] == pytest.approx(0.44 / 3, abs=1e-6)
    assert summary["intra_std"] == pytest.approx(np.std([0.2, 0.04, 0.2]), abs=1e-6)
    assert summary["inter_mean"] == pytest.approx(0.8 / 3, abs=1e-6)
    figure = plots.plot_distances([item])
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert plots.distance_annotation(summary) in texts
    assert "intra μ=0.147 σ=0.075" in texts[0]
    outputs = plots.save_figure(figure, [tmp_path / "d.png", tmp_path / "d.svg"])
    assert_figures(*outputs)


def test_distance_command(tmp_path):
    a = small_dump(tmp_path / "a.h5")
    png = tmp_path / "dist.png"
    result = CliRunner().invoke(
        plot_command, ["distances", str(a), "-o", str(png), "-p", "mix-id,cross"]
    )
    assert result.exit_code == 0, result.output
    assert_figures(png)
    assert "mix-id@infrared: intra" in result.stdout


def write_images(root, paths):
    from matplotlib.image import imsave

    rng = np.random.default_rng(0)
    for relative in paths:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        imsave(target.with_suffix(".png"), rng.random((16, 8, 3)))
        target.with_suffix(".png").rename(target)  # keep the dump's name, PNG content


def test_retrieval_rankings_follow_the_scorer(tmp_path):
    path = small_dump(tmp_path / "a.h5")
    dump = load_dump(path)
    preset = resolve_presets("mix-id")[0]
    rankings = plots.retrieval_rankings(dump, preset, queries=3, top_k=6)
    assert len(rankings) == 3 and all(len(r.gallery) == 6 for r in rankings)
    evaluation = evaluate(dump, [preset], query_modalities=["infrared"])
    (scores,) = evaluation.per_query
    position = {int(q): i for i, q in enumerate(scores.plan.query_idx)}
    split = dump.splits[0]
    for ranking in rankings:
        assert np.all(np.diff(ranking.distances) >= 0)
        assert list(ranking.matches) == list(split.pid[ranking.gallery] == split.pid[ranking.query])
        # Mix-ID excludes the query person's same-modality images.
        same_person = split.pid[ranking.gallery] == split.pid[ranking.query]
        assert not np.any(same_person & (split.modality[ranking.gallery] == 1))
        first = scores.first_rank[position[ranking.query]]
        if first <= 6:
            assert ranking.matches[first - 1] and not ranking.matches[: first - 1].any()
        else:
            assert not ranking.matches.any()
    root = tmp_path / "images"
    write_images(root, split.path)
    figure, missing = plots.plot_retrieval(dump, rankings, root)
    assert missing == []
    colours = [ax.spines["top"].get_edgecolor() for ax in figure.axes if ax.get_visible()]
    assert len(colours) == 3 * 7
    outputs = plots.save_figure(figure, [tmp_path / "r.png", tmp_path / "r.svg"])
    assert_figures(*outputs)


def test_retrieval_command_and_missing_images(tmp_path):
    path = small_dump(tmp_path / "a.h5")
    root = tmp_path / "images"
    root.mkdir()
    png = tmp_path / "strips.png"
    result = CliRunner().invoke(
        plot_command,
        ["retrieval", str(path), "--images", str(root), "-o", str(png), "--top-k", "4"],
    )
    assert result.exit_code == 0, result.output
    assert "not found" in result.stderr and "drawn grey" in result.stderr
    assert_figures(png)
    no_paths = hand_dump(tmp_path / "hand.h5")
    result = CliRunner().invoke(
        plot_command,
        ["retrieval", str(no_paths), "--images", str(root), "-o", str(png), "-p", "cross"],
    )
    assert result.exit_code == 2 and "no 'path' field" in result.stderr


def test_unknown_figure_format_exits_2(tmp_path):
    a = small_dump(tmp_path / "a.h5")
    result = CliRunner().invoke(plot_command, ["cmc", str(a), "-o", str(tmp_path / "x.gif")])
    assert result.exit_code == 2 and "unknown figure format" in result.stderr


def test_missing_matplotlib_is_a_one_line_error(tmp_path, monkeypatch):
    a = small_dump(tmp_path / "a.h5")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(plots.PlotError, match=r"pip install 'vireid-bench\[plot\]'"):
        plots.plot_cmc({"A": {"mix@infrared": np.ones(20)}})
    result = CliRunner().invoke(plot_command, ["cmc", str(a), "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 2
    assert result.stderr == "error: plots need matplotlib: pip install 'vireid-bench[plot]'\n"
