"""Leaderboards that cannot mislead: synthetic rows apart, re-ranked rows marked and bolded
among themselves, checkpoints chosen on the test set footnoted, runs shown as mean ± CI."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
from click.testing import CliRunner

from vireid_bench.cli.leaderboard import leaderboard_command
from vireid_bench.engine.scoring import evaluate
from vireid_bench.io.dump import load_dump, write_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.results.keys import Column
from vireid_bench.results.leaderboard import Leaderboard, build_table, render_markdown
from vireid_bench.results.leaderboard_table import Result
from vireid_bench.results.runs import t_interval
from vireid_bench.synth.dumps import write_synth_dump

MIX = Column("mix", "", "infrared")


def tables(markdown: str) -> list[tuple[str, list[list[str]]]]:
    """Every pipe table with the heading above it (``""`` for none): (heading, body rows)."""
    found, heading, block = [], "", []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])])
            continue
        if block:
            found.append((heading, block[2:]))  # skip header and delimiter
            block, heading = [], ""
        if line.startswith("## "):
            heading = line[3:]
    return found


def build(tmp_path, *args):
    out = tmp_path / "boards"
    result = CliRunner().invoke(leaderboard_command, [*map(str, args), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result


def test_synthetic_demo_dump_no_longer_competes_with_the_paper(tmp_path):
    out, _ = build(tmp_path, "feature_dumps/demo-sysu.h5", "-p", "mix", "--trials", "1")
    found = tables((out / "sysu-mm01.md").read_text())
    (real_heading, real), (synthetic_heading, synthetic) = found
    assert real_heading == "" and synthetic_heading.startswith("Synthetic data")
    assert "synthetic(seed=0)" not in {row[0] for row in real}
    assert [row[0] for row in synthetic] == ["synthetic(seed=0)"]
    # The paper's MixER has the best Mix R1 among real rows: 96.63 bold, not the demo's 99.x
    mix_r1 = {row[0]: row[3] for row in real}
    assert mix_r1["MixER"] == "**96.63**"
    assert synthetic[0][3].startswith("**")  # best of its own table
    rows = list(csv.DictReader((out / "sysu-mm01.csv").open()))
    assert rows[-1]["model"] == "synthetic(seed=0)" and rows[-1]["data"] == "synthetic"
    assert {r["data"] for r in rows[:-1]} == {"real"}


def _result(model, mAP, **extra):
    return Result(
        dataset="toy",
        model=model,
        source="measured",
        version="1",
        column=MIX,
        values={"rank1": mAP, "mAP": mAP},
        origin=f"{model}.json",
        **extra,
    )


def test_reranked_rows_are_marked_and_bolded_only_among_themselves():
    board = Leaderboard()
    board.add(
        [
            _result("A", 60.0),
            _result("B", 55.0),
            _result("A", 75.0, reranked=True),  # same model, re-ranked: its own row
            _result("C", 70.0, reranked=True),
        ]
    )
    markdown = render_markdown(build_table(board, "toy", toolkit_version="t"))
    ((_, body),) = tables(markdown)
    cells = {row[0]: row[4] for row in body}
    assert cells == {
        "A (re-ranked)": "**75.00**",
        "C (re-ranked)": "70.00",
        "A": "**60.00**",  # best among plain rows although 75 and 70 are higher
        "B": "55.00",
    }
    assert "- (re-ranked): re-ranked at test time" in markdown


def test_result_files_scored_with_reranking_are_marked(tmp_path):
    dump = write_dump(
        tmp_path / "d.h5",
        features=np.eye(6, dtype=np.float32) + 0.05,
        pid=[1, 2, 3, 1, 2, 3],
        cam=[1, 1, 1, 3, 3, 3],
        modality=[0, 0, 0, 1, 1, 1],
        model="Real",
    )
    files = []
    for name, rerank in (("plain", None), ("kr", "k-reciprocal")):
        evaluation = evaluate(
            load_dump(dump),
            resolve_presets("cross"),
            rerank=rerank,
            rerank_params={"k1": 2, "k2": 1} if rerank else None,
        )
        payload = {"protocol_version": "1.0", "results": evaluation.rows}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(payload))
        files.append(path)
    out, result = build(tmp_path, *files)
    assert "replaced:" not in result.stderr  # the re-ranked result has a row of its own
    ((_, body),) = tables((out / "generic.md").read_text())
    assert sorted(row[0] for row in body) == ["Real", "Real (re-ranked)"]


def test_checkpoint_chosen_on_the_test_set_gets_a_footnote(tmp_path):
    common = {
        "features": np.eye(6, dtype=np.float32) + 0.05,
        "pid": [1, 2, 3, 1, 2, 3],
        "cam": [1, 1, 1, 3, 3, 3],
        "modality": [0, 0, 0, 1, 1, 1],
    }
    best = write_dump(tmp_path / "best.h5", **common, model="Best", selection="test")
    honest = write_dump(tmp_path / "honest.h5", **common, model="Honest", selection="val")
    out, _ = build(tmp_path, best, honest, "-p", "cross")
    markdown = (out / "generic.md").read_text()
    ((_, body),) = tables(markdown)
    assert sorted(row[0] for row in body) == ["Best †", "Honest"]
    assert "- †: checkpoint chosen on the test set (selection = test)" in markdown
    rows = {r["model"]: r for r in csv.DictReader((out / "generic.csv").open())}
    assert (rows["Best"]["selection"], rows["Honest"]["selection"]) == ("test", "val")
    # --merge reads the new columns back
    again = CliRunner().invoke(leaderboard_command, ["--out", str(out), "--merge"])
    assert again.exit_code == 0, again.output
    assert "Best †" in (out / "generic.md").read_text()


def test_runs_of_one_model_show_mean_and_interval(tmp_path):
    paths = [
        write_synth_dump(tmp_path / f"s{seed}.h5", ids=8, per_cam=2, dim=8, seed=seed, model="S")
        for seed in (1, 2, 3)
    ]
    out, result = build(tmp_path, *paths, "-p", "mix")
    assert "replaced:" not in result.stderr  # runs accumulate, not replace
    values = []
    for path in paths:
        rows = evaluate(load_dump(path), resolve_presets("mix")).rows
        values.append(next(r["mAP"] for r in rows if r["query_modality"] == "infrared"))
    ((heading, body),) = tables((out / "generic.md").read_text())
    assert heading.startswith("Synthetic data")
    (row,) = body
    assert row[0] == "S (3 runs)"
    low, high = t_interval(values)
    assert row[4] == f"**{np.mean(values):.2f}** ± {(high - low) / 2:.2f}"
    (line,) = list(csv.DictReader((out / "generic.csv").open()))
    assert line["runs"] == "3"
    assert float(line["mix@infrared.mAP"]) == pytest.approx(np.mean(values), abs=1e-9)
    assert len(line["sha256"].split(";")) == 3
    assert math.isfinite(high - low) and high > low


def test_html_has_one_sortable_table_per_section(tmp_path):
    out, _ = build(
        tmp_path, "feature_dumps/demo-sysu.h5", "-p", "mix", "--trials", "1", "-f", "html"
    )
    page = (out / "sysu-mm01.html").read_text()
    assert page.count('<table class="leaderboard">') == 2
    assert page.index("<h2>Synthetic data") > page.index('<table class="leaderboard">')
