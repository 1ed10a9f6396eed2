"""vireid-bench leaderboard: inputs, merging, sorting, bold, Markdown/CSV/HTML output."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re

import pytest
from click.testing import CliRunner

from vireid_bench.cli.leaderboard import leaderboard_command
from vireid_bench.engine.scoring import evaluate
from vireid_bench.io.dump import load_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.results.leaderboard import (
    Column,
    Leaderboard,
    LeaderboardError,
    Result,
    UnknownColumnError,
    build_table,
    current_protocol_version,
    render_markdown,
    resolve_sort_key,
    results_from_leaderboard_csv,
)
from vireid_bench.results.report import render_json
from vireid_bench.synth.dumps import SynthStrengths, write_synth_dump

CAMS = "1,2:visible,3,4:infrared"


def small_dump(path, seed=0, noise=0.9):
    """A small synthetic dump: 10 ids, 2 cameras per modality, 2 images each."""
    return write_synth_dump(
        path,
        ids=10,
        cameras=CAMS,
        per_cam=2,
        dim=16,
        seed=seed,
        strengths=SynthStrengths(noise=noise),
    )


def result_file(tmp_path, name, seed, *, dataset=None, model=None, shift=0.0):
    """Score a small dump into a ``vireid-bench score --format json`` file, optionally
    relabelled (dataset, model) and with every metric shifted by ``shift``."""
    dump_path = small_dump(tmp_path / f"{name}.h5", seed=seed)
    rows = evaluate(load_dump(dump_path), resolve_presets("all")).rows
    data = json.loads(render_json(rows, "0.1.0"))
    for row in data["results"]:
        if dataset:
            row["dataset"] = dataset
        if model:
            row["model"] = model
        for metric in ("rank1", "mAP", "mINP"):
            if row[metric] is not None:
                row[metric] += shift
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path, rows


def read_csv(path):
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def pipe_table(markdown: str) -> tuple[list[str], list[list[str]]]:
    """Parse the first GitHub pipe table in ``markdown`` back into (header, rows).

    Checks what a renderer needs: consecutive lines starting and ending with '|', a
    delimiter line of dashes after the header, and the same cell count on every line.
    (Synthetic-data rows follow in a second table, under its own heading.)
    """
    all_lines = markdown.splitlines()
    first = next((i for i, line in enumerate(all_lines) if line.startswith("|")), None)
    assert first is not None, "no pipe table"
    lines = []
    for line in all_lines[first:]:
        if not line.startswith("|"):
            break
        lines.append(line)
    assert len(lines) >= 2, "no pipe table"

    def cells(line: str) -> list[str]:
        assert line.endswith("|")
        return [c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])]

    header, delimiter, *body = (cells(line) for line in lines)
    assert all(re.fullmatch(r":?-{3,}:?", d) for d in delimiter)
    assert all(len(row) == len(header) for row in [delimiter, *body])
    return header, body


def test_leaderboard_from_two_dumps_and_a_result_file(tmp_path):
    a = small_dump(tmp_path / "a.h5", seed=0)
    b = small_dump(tmp_path / "b.h5", seed=1, noise=0.3)
    c_json, c_rows = result_file(tmp_path, "c", seed=2)
    out = tmp_path / "boards"
    result = CliRunner().invoke(
        leaderboard_command, [str(a), str(b), str(c_json), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "generic.csv").is_file() and (out / "generic.md").is_file()
    assert "generic: 3 measured and 0 reported row(s)" in result.stdout

    rows = read_csv(out / "generic.csv")
    by_model = {r["model"]: r for r in rows}
    assert set(by_model) == {"synthetic(seed=0)", "synthetic(seed=1)", "synthetic(seed=2)"}
    assert all(r["source"] == "measured" for r in rows)
    assert by_model["synthetic(seed=0)"]["sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    assert by_model["synthetic(seed=2)"]["sha256"] == ""  # score JSON carries no SHA-256
    assert by_model["synthetic(seed=2)"]["origin"] == "c.json"
    # Values are the scorer's, unrounded, with mINP in the CSV.
    expected = {(r["protocol"], r["query_modality"]): r for r in c_rows}
    for metric in ("rank1", "mAP", "mINP"):
        got = float(by_model["synthetic(seed=2)"][f"mix-id@infrared.{metric}"])
        assert got == pytest.approx(expected[("mix-id", "infrared")][metric], abs=1e-9)
    # The paper layout: mixed-modal settings with infrared queries only.
    columns = [k for k in rows[0] if k.endswith(".mAP")]
    assert "mix-id@infrared.mAP" in columns and "mix-id@visible.mAP" not in columns
    assert {"cross@infrared.mAP", "cross@visible.mAP", "uni@visible.mAP"} <= set(columns)
    # Default sort: the first column's mAP, descending.
    mix = [float(r["mix@infrared.mAP"]) for r in rows]
    assert mix == sorted(mix, reverse=True)

    markdown = (out / "generic.md").read_text()
    assert f"Protocol version: {current_protocol_version()}" in markdown
    assert "Query modality: infrared queries in the mixed-modal settings" in markdown
    assert "Trials: measured rows are means over 1 trial(s)" in markdown
    assert "Toolkit: vireid-bench" in markdown
    header, body = pipe_table(markdown)
    assert header[:3] == ["Model", "Venue", "Source"]
    assert "Mix-ID R1" in header and "Cross I→V mAP" in header and "Uni V→V mAP" in header
    assert len(body) == 3


def test_markdown_bolds_the_best_value_per_column_and_parses_back(tmp_path):
    a = small_dump(tmp_path / "a.h5", seed=0)
    b = small_dump(tmp_path / "b.h5", seed=1, noise=0.3)
    out = tmp_path / "boards"
    result = CliRunner().invoke(leaderboard_command, [str(a), str(b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    header, body = pipe_table((out / "generic.md").read_text())
    rows = {r["model"]: r for r in read_csv(out / "generic.csv")}
    for index, name in enumerate(header[3:], start=3):
        shown = [row[index] for row in body]
        numbers = [float(s.strip("*")) for s in shown if s != "-"]
        best = max(numbers)
        for text in shown:
            is_bold = text.startswith("**") and text.endswith("**")
            assert is_bold == (text != "-" and float(text.strip("*")) == best), (name, shown)
    # Cells are the CSV values rounded to two decimals.
    model_col = header.index("Model")
    mix_id = header.index("Mix-ID mAP")
    for row in body:
        value = float(rows[row[model_col]]["mix-id@infrared.mAP"])
        assert row[mix_id].strip("*") == f"{value:.2f}"


def _result(model, column, **values):
    return Result(
        dataset="toy",
        model=model,
        source="measured",
        version="1",
        column=column,
        values=values,
        origin=f"{model}.h5",
    )


def test_ties_are_all_bold_and_missing_values_show_a_dash():
    mix = Column("mix", "", "infrared")
    board = Leaderboard()
    board.add(
        [
            _result("A", mix, rank1=90.0, mAP=70.004),
            _result("B", mix, rank1=90.0, mAP=69.996),  # ties A at two decimals: 70.00
            _result("C", mix, rank1=80.0, mAP=float("nan")),
        ]
    )
    table = build_table(board, "toy", toolkit_version="test")
    _, body = pipe_table(render_markdown(table))
    cells = {row[0]: row[3:] for row in body}
    assert cells["A"] == ["**90.00**", "**70.00**"]
    assert cells["B"] == ["**90.00**", "**70.00**"]
    assert cells["C"] == ["80.00", "-"]
    assert [row[0] for row in body][-1] == "C"  # missing sort value goes last


def test_a_newer_result_replaces_the_older_and_says_so(tmp_path):
    old, _ = result_file(tmp_path, "old", seed=0, model="M")
    new, _ = result_file(tmp_path, "new", seed=0, model="M", shift=-1.5)
    out = tmp_path / "boards"
    result = CliRunner().invoke(leaderboard_command, [str(old), str(new), "--out", str(out)])
    assert result.exit_code == 0, result.output
    notices = [line for line in result.stderr.splitlines() if line.startswith("replaced:")]
    assert len(notices) == 1
    assert "replaced: generic: 'M' (measured" in notices[0]
    assert "from old.json (vireid-bench 0.1.0) by new.json (vireid-bench 0.1.0)" in notices[0]
    assert "largest change" in notices[0]
    rows = read_csv(out / "generic.csv")
    assert len(rows) == 1 and rows[0]["origin"] == "new.json"
    old_value = json.loads(old.read_text())["results"][0]["mAP"]
    assert float(rows[0]["mix@infrared.mAP"]) == pytest.approx(old_value - 1.5)


def test_another_protocol_version_gets_its_own_row(tmp_path):
    runner = CliRunner()
    files = []
    for name, protocol_version in (("v1", "1.0"), ("v2", "2.0")):
        path, _ = result_file(tmp_path, name, seed=0, model="M")
        data = json.loads(path.read_text())
        data["protocol_version"] = protocol_version
        path.write_text(json.dumps(data))
        files.append(str(path))
    dump_path = small_dump(tmp_path / "d.h5")
    out = tmp_path / "boards"
    result = runner.invoke(leaderboard_command, [*files, str(dump_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "replaced:" not in result.stderr
    rows = {(r["model"], r["protocol_version"]): r for r in read_csv(out / "generic.csv")}
    assert set(rows) >= {("M", "1.0"), ("M", "2.0")}
    # A dump scored now is under the running toolkit's protocol version.
    measured_now = rows[("synthetic(seed=0)", current_protocol_version())]
    assert measured_now["sha256"] == hashlib.sha256(dump_path.read_bytes()).hexdigest()
    _, body = pipe_table((out / "generic.md").read_text())
    assert {"M (protocol 1.0)", "M (protocol 2.0)"} <= {row[0] for row in body}
    header = (out / "generic.md").read_text().splitlines()[2]
    assert header.startswith(f"- Protocol version: {current_protocol_version()}")
    assert "measured rows: protocol" in header


def test_reported_paper_rows_sit_beside_measured_ones(tmp_path):
    measured, _ = result_file(tmp_path, "mine", seed=0, dataset="regdb", model="Mine")
    out = tmp_path / "boards"
    result = CliRunner().invoke(
        leaderboard_command, [str(measured), "--out", str(out), "--sort", "cross@V.mAP"]
    )
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "regdb.csv")
    by_model = {r["model"]: r for r in rows}
    assert by_model["Mine"]["source"] == "measured"
    assert by_model["MixER+KR"]["source"] == "reported"
    assert by_model["MixER+KR"]["cross@visible.mAP"] == "93.55"  # Table 2a, last cell
    assert by_model["DEEN"]["mix-id@infrared.rank1"] == "66.21"
    assert "Table 2a" in by_model["DEEN"]["citation"]
    v_to_i = [float(r["cross@visible.mAP"]) for r in rows if r["cross@visible.mAP"]]
    assert v_to_i == sorted(v_to_i, reverse=True)
    header, body = pipe_table((out / "regdb.md").read_text())
    assert "Cross V→I mAP" in header
    sources = {row[0]: row[2] for row in body}
    assert sources["DDAG"] == "reported (Table 2a)"
    assert sources["Mine"] == "measured"
    # Without reported rows, only the measured one is left.
    CliRunner().invoke(leaderboard_command, [str(measured), "--out", str(out), "--no-reported"])
    assert [r["model"] for r in read_csv(out / "regdb.csv")] == ["Mine"]


def test_without_inputs_the_paper_tables_are_written(tmp_path):
    out = tmp_path / "boards"
    result = CliRunner().invoke(leaderboard_command, ["--out", str(out), "--sort", "mix-id.mAP"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "llcm.csv",
        "llcm.md",
        "regdb.csv",
        "regdb.md",
        "sysu-mm01.csv",
        "sysu-mm01.md",
    ]
    rows = read_csv(out / "sysu-mm01.csv")
    assert rows[0]["model"] == "MixER"  # best Mix-ID mAP in Table 1: 62.76
    assert rows[0]["cross:all@infrared.rank1"] == "75.04"


def test_unnamed_reported_variants_join_the_only_measured_variant():
    board = Leaderboard()
    board.add([_result("Mine", Column("cross", "all", "infrared"), mAP=50.0)])
    paper = Result(
        dataset="toy",
        model="Paper",
        source="reported",
        version="",
        column=Column("cross", "", "infrared"),
        values={"mAP": 60.0},
        origin="Table 9",
    )
    board.add([paper])
    table = build_table(board, "toy", toolkit_version="test")
    assert table.columns == [Column("cross", "all", "infrared")]
    assert [e.model for e in table.entries] == ["Paper", "Mine"]
    # Two measured variants: the reported cell keeps its own column.
    board.add([_result("Mine", Column("cross", "indoor", "infrared"), mAP=55.0)])
    table = build_table(board, "toy", toolkit_version="test")
    assert Column("cross", "", "infrared") in table.columns


def test_sort_key_syntax():
    columns = [
        Column("mix-id", "", "infrared"),
        Column("mix-id", "", "visible"),
        Column("cross", "all", "infrared"),
        Column("cross", "indoor", "infrared"),
    ]
    assert resolve_sort_key("mix-id@I.R1", columns) == (columns[0], "rank1")
    assert resolve_sort_key("mix-id@visible.minp", columns) == (columns[1], "mINP")
    assert resolve_sort_key("cross:indoor.mAP", columns) == (columns[3], "mAP")
    with pytest.raises(LeaderboardError, match="ambiguous: mix-id@infrared, mix-id@visible"):
        resolve_sort_key("mix-id.mAP", columns)
    with pytest.raises(UnknownColumnError, match="no such column"):
        resolve_sort_key("mix-cam.mAP", columns)
    with pytest.raises(LeaderboardError, match="unknown metric"):
        resolve_sort_key("cross:all.R5", columns)
    with pytest.raises(LeaderboardError, match="expected SETTING"):
        resolve_sort_key("mAP", columns)


def test_html_page_is_a_sortable_static_table(tmp_path):
    a = small_dump(tmp_path / "a.h5")
    out = tmp_path / "boards"
    result = CliRunner().invoke(
        leaderboard_command, [str(a), "--out", str(out), "-f", "html", "--query-modality", "both"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["generic.html"]
    page = (out / "generic.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert 'class="leaderboard"' in page and "addEventListener" in page
    assert "Mixed-Modal" in page and "Cross-Modal" in page and "Uni-Modal" in page
    assert "<strong>" in page
    assert "Mix-ID I→V+I" in page  # both query modalities: the direction is shown


def test_merge_keeps_earlier_rows_and_replaces_the_same_model(tmp_path):
    out = tmp_path / "boards"
    first, _ = result_file(tmp_path, "first", seed=0, model="First")
    second, _ = result_file(tmp_path, "second", seed=1, model="Second")
    again, _ = result_file(tmp_path, "again", seed=0, model="First", shift=0.5)
    runner = CliRunner()
    assert runner.invoke(leaderboard_command, [str(first), "--out", str(out)]).exit_code == 0
    result = runner.invoke(leaderboard_command, [str(second), "--out", str(out), "--merge"])
    assert result.exit_code == 0, result.output
    assert {r["model"] for r in read_csv(out / "generic.csv")} == {"First", "Second"}
    result = runner.invoke(leaderboard_command, [str(again), "--out", str(out), "--merge"])
    assert result.exit_code == 0, result.output
    assert "replaced: generic: 'First'" in result.stderr
    rows = {r["model"]: r for r in read_csv(out / "generic.csv")}
    assert rows["First"]["origin"] == "again.json"
    # The CSV reads back into the same results.
    back = results_from_leaderboard_csv(out / "generic.csv")
    first_mix = [r for r in back if r.model == "First" and r.column.key == "mix@infrared"]
    assert first_mix[0].value("mAP") == pytest.approx(float(rows["First"]["mix@infrared.mAP"]))
    assert not math.isnan(first_mix[0].value("mINP"))


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    result = CliRunner().invoke(leaderboard_command, [str(text), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": [{"model": "x"}]}')
    result = CliRunner().invoke(leaderboard_command, [str(broken), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "results[0]: missing 'dataset'" in result.stderr
    a = small_dump(tmp_path / "a.h5")
    result = CliRunner().invoke(
        leaderboard_command, [str(a), "--out", str(tmp_path), "--sort", "nothing.mAP"]
    )
    assert result.exit_code == 2 and "no such column" in result.stderr


def test_labels_show_variant_and_direction_only_where_they_tell_columns_apart():
    # As the SYSU-MM01 convention reports: one variant 'all' for the mixed and uni-modal
    # settings, 'all' and 'indoor' for cross-modal, cross-modal V->I only for 'all'.
    keys = [
        ("mix", "all", "infrared"),
        ("cross", "all", "infrared"),
        ("cross", "all", "visible"),
        ("cross", "indoor", "infrared"),
        ("uni", "all", "infrared"),
        ("uni", "all", "visible"),
    ]
    board = Leaderboard()
    board.add([_result("A", Column(*key), mAP=1.0) for key in keys])
    table = build_table(board, "toy", toolkit_version="test")
    labels = table.labels()
    assert [labels[Column(*key)] for key in keys] == [
        "Mix",
        "Cross all I→V",
        "Cross all V→I",
        "Cross indoor",
        "Uni I→I",
        "Uni V→V",
    ]
    assert [c.key for c in table.columns] == [
        "mix:all@infrared",
        "cross:all@infrared",
        "cross:all@visible",
        "cross:indoor@infrared",
        "uni:all@infrared",
        "uni:all@visible",
    ]


def test_leaderboard_from_score_json_keeps_the_dump_sha256(tmp_path):
    """`score -f json` records the dump's SHA-256; a leaderboard built from it shows it."""
    from click.testing import CliRunner

    from vireid_bench.cli.main import cli
    from vireid_bench.results.leaderboard import file_sha256

    dump = "feature_dumps/synth-regdb.h5"
    scored = tmp_path / "scored.json"
    result = CliRunner().invoke(
        cli, ["score", dump, "-p", "mix-id", "-f", "json", "-o", str(scored)]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "board"
    result = CliRunner().invoke(cli, ["leaderboard", str(scored), "--out", str(out)])
    assert result.exit_code == 0, result.output
    board = "\n".join(p.read_text() for p in out.glob("*.csv"))
    assert file_sha256(dump) in board
