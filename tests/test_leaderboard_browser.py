"""The HTML leaderboard sorts in a real headless browser.

The page ``vireid-bench leaderboard -f html`` writes (the paper's SYSU-MM01 rows: 13
models, some cells missing, plus one measured row from a result file whose Mix R1 of 100
sorts differently as text and as a number) is loaded by Chromium (``chromium
--headless --dump-dom``) with one line appended that clicks a column header once or
twice, the way a user would. The DOM the browser dumps afterwards gives the row order
back, which must equal a plain Python sort of the same cells (numbers ascending on the
first click, descending on the second, missing cells last, ties in page order:
JavaScript's sort is stable).

Skipped when no ``chromium``, ``chromium-browser``, ``google-chrome`` or
``google-chrome-stable`` is on PATH (``.ci/run`` installs Debian's ``chromium`` when it
can).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from vireid_bench.cli.main import cli

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((found for name in BROWSERS if (found := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no headless browser on PATH (chromium, chromium-browser, google-chrome); "
    "install Debian's 'chromium' package to run the HTML leaderboard sort test",
)

FIRST_METRIC = 3  # data-col 0..2: Model, Venue, Source; then R1, mAP per setting


class _FirstTable(HTMLParser):
    """Rows of the first ``table.leaderboard`` body: [(cell text, data-value or None)];
    also the ``data-order`` of each sortable header and the body's ``data-clicked``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[list]] = []
        self.order: dict[str, str | None] = {}
        self.clicked: str | None = None
        self.tables = 0
        self.in_body = False
        self.cell: list | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.clicked = attrs.get("data-clicked")
        elif tag == "table" and "leaderboard" in (attrs.get("class") or ""):
            self.tables += 1
        elif self.tables != 1:
            return
        elif tag == "th" and "data-col" in attrs:
            self.order[attrs["data-col"]] = attrs.get("data-order")
        elif tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_body:
            self.rows.append([])
        elif tag == "td" and self.in_body:
            self.cell = ["", attrs.get("data-value")]
            self.rows[-1].append(self.cell)

    def handle_endtag(self, tag):
        if tag == "td":
            self.cell = None
        elif tag == "tbody":
            self.in_body = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[0] += data


def _parse(page: str) -> _FirstTable:
    parser = _FirstTable()
    parser.feed(page)
    assert parser.rows, "no leaderboard rows in the page"
    return parser


def _value(row, col) -> float:
    text = row[col][1]
    return math.nan if text in (None, "") else float(text)


def _expected(rows, col, descending):
    def key(row):
        value = _value(row, col)
        return (math.isnan(value), 0.0 if math.isnan(value) else (-value if descending else value))

    return [row[0][0] for row in sorted(rows, key=key)]


PERFECT = {
    "dataset": "sysu-mm01",
    "model": "Perfect",
    "protocol": "mix",
    "variant": "all",
    "query_modality": "infrared",
    "status": "ok",
    "rank1": 100.0,
    "mAP": 99.25,
    "mINP": 1.0,
    "trials": 10,
}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("board")
    results = out / "weak.json"
    results.write_text(json.dumps({"vireid_bench_version": "0", "results": [PERFECT]}))
    args = ["leaderboard", str(results), "-o", str(out), "-f", "html"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return (out / "sysu-mm01.html").read_text(encoding="utf-8")


def _after_clicks(page: str, col: int, clicks: int, folder) -> _FirstTable:
    """The DOM after ``clicks`` clicks on header ``col`` of the first table, in Chromium."""
    script = (
        "<script>(function () {"
        f'var th = document.querySelector(\'table.leaderboard th[data-col="{col}"]\');'
        f"for (var i = 0; i < {clicks}; i++) {{ th.click(); }}"
        'document.body.setAttribute("data-clicked", String(' + str(clicks) + "));"
        "})();</script>"
    )
    assert page.count("</body>") == 1
    target = folder / f"clicked-{col}-{clicks}.html"
    target.write_text(page.replace("</body>", script + "</body>"), encoding="utf-8")
    command = [
        BROWSER,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        f"--user-data-dir={folder / 'profile'}",
        "--dump-dom",
        target.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _parse(done.stdout)
    assert dom.clicked == str(clicks), "the injected click script did not run"
    return dom


@pytest.mark.parametrize(("clicks", "order"), [(1, "asc"), (2, "desc")])
def test_clicking_a_metric_header_sorts_the_rows(page, tmp_path, clicks, order):
    before = _parse(page)
    col = FIRST_METRIC
    values = [_value(row, col) for row in before.rows]
    assert sum(not math.isnan(v) for v in values) >= 3, "too few numbers to see a sort"
    expected = _expected(before.rows, col, descending=order == "desc")
    assert [row[0][0] for row in before.rows] != expected, "page already in that order"
    after = _after_clicks(page, col, clicks, tmp_path)
    assert [row[0][0] for row in after.rows] == expected
    assert after.order[str(col)] == order
    assert all(state is None for key, state in after.order.items() if key != str(col))
    # whole rows move: every row keeps its own cells
    assert sorted(map(repr, after.rows)) == sorted(map(repr, before.rows))


def test_sorting_is_numeric_not_textual(page, tmp_path):
    """Mix R1 holds 100 and values in the 90s: as text "100.0" sorts before "91.91"; the
    browser puts it last of the numbers (ascending)."""
    before = _parse(page)
    col = FIRST_METRIC
    numbers = sorted(v for v in (_value(r, col) for r in before.rows) if not math.isnan(v))
    assert numbers[-1] == PERFECT["rank1"] and sorted(map(repr, numbers))[0] == repr(100.0)
    after = _after_clicks(page, col, 1, tmp_path)
    got = [_value(row, col) for row in after.rows]
    present = [v for v in got if not math.isnan(v)]
    assert present == numbers and present[-1] == 100.0
    assert all(math.isnan(v) for v in got[len(present) :])
    assert after.rows[len(present) - 1][0][0].startswith("Perfect")
