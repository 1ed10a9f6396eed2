"""The paper tables transcribed in leaderboards/reported/ match the printed tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from vireid_bench.results.reported import load_reported, reported_datasets


def _cell(dataset, model, setting, variant, query, metric):
    matches = [
        c
        for c in load_reported(dataset)
        if (c.model, c.setting, c.variant, c.query_modality, c.metric)
        == (model, setting, variant, query, metric)
    ]
    assert len(matches) == 1, (dataset, model, setting, variant, query, metric)
    return matches[0]


# Each cell was read off the printed table by hand: (dataset, model, setting, variant,
# query modality, metric) -> the text printed in the paper ("" where it prints "-").
VERIFIED_CELLS = [
    # Table 1 (SYSU-MM01), row "DDAG[39] ECCV20", first column group "Mix", R1.
    ("sysu-mm01", "DDAG", "mix", "", "infrared", "rank1", "91.91"),
    # Table 1, row "MixER", Mixed-Modal "Mix-ID" mAP.
    ("sysu-mm01", "MixER", "mix-id", "", "infrared", "mAP", "62.76"),
    # Table 1, row "MixER", "Mix-Cam-ID" R1 (also in Table 5's last row).
    ("sysu-mm01", "MixER", "mix-cam-id", "", "infrared", "rank1", "87.56"),
    # Table 1, row "MixER(R)", Cross-Modal "Indoor" mAP, printed with one decimal.
    ("sysu-mm01", "MixER(R)", "cross", "indoor", "infrared", "mAP", "5.2"),
    # Table 1, row "DEEN[41] + Flip": Cross-Modal "All" R1 74.7, Mix R1 printed "-".
    ("sysu-mm01", "DEEN+Flip", "cross", "all", "infrared", "rank1", "74.7"),
    ("sysu-mm01", "DEEN+Flip", "mix", "", "infrared", "rank1", ""),
    # Table 1, row "SAAI[9] + AIM", Cross-Modal "Indoor" mAP.
    ("sysu-mm01", "SAAI+AIM", "cross", "indoor", "infrared", "mAP", "88.01"),
    # Table 1, row "CIDHL [25]": only Mix-P is printed (90.81 / 53.24).
    ("sysu-mm01", "CIDHL", "mix-p", "", "infrared", "rank1", "90.81"),
    ("sysu-mm01", "CIDHL", "mix-p", "", "infrared", "mAP", "53.24"),
    # Table 1, row "IDKL[32] CVPR24", last column "V→V" mAP.
    ("sysu-mm01", "IDKL", "uni", "", "visible", "mAP", "95.13"),
    # Table 1, row "SGEIL[10]", Uni-Modal "I→I" R1.
    ("sysu-mm01", "SGEIL", "uni", "", "infrared", "rank1", "86.52"),
    # Table 2a (RegDB), row "MPANet [36]", Mix R1 printed "100".
    ("regdb", "MPANet", "mix", "", "infrared", "rank1", "100"),
    # Table 2a, row "SAAI [9]", Cross-Modal "I→V" mAP printed "80.0".
    ("regdb", "SAAI", "cross", "", "infrared", "mAP", "80.0"),
    # Table 2a, row "MixER+KR", Cross-Modal "V→I" mAP (last cell of the table).
    ("regdb", "MixER+KR", "cross", "", "visible", "mAP", "93.55"),
    # Table 2a, row "IDKL+KR": Mix-ID R1 printed "-".
    ("regdb", "IDKL+KR", "mix-id", "", "infrared", "rank1", ""),
    # Table 2b (LLCM, captioned "LLMC"), row "MixER", Mix-ID R1 printed "57.1".
    ("llcm", "MixER", "mix-id", "", "infrared", "rank1", "57.1"),
    # Table 2b, row "DEEN [41]", Cross-Modal "V→I" mAP.
    ("llcm", "DEEN", "cross", "", "visible", "mAP", "58.75"),
    # Table 2b, row "MixER+KR", Cross-Modal "I→V" R1.
    ("llcm", "MixER+KR", "cross", "", "infrared", "rank1", "73.72"),
]


@pytest.mark.parametrize("dataset, model, setting, variant, query, metric, printed", VERIFIED_CELLS)
def test_verified_cells(dataset, model, setting, variant, query, metric, printed):
    cell = _cell(dataset, model, setting, variant, query, metric)
    assert cell.printed == printed
    assert cell.value == (float(printed) if printed else None)


def test_tables_have_the_printed_shape():
    assert reported_datasets() == ["llcm", "regdb", "sysu-mm01"]
    # Table 1: 13 method rows x 9 settings x {R1, mAP}; Table 2a: 10 x 4 x 2; 2b: 9 x 4 x 2.
    shapes = {"sysu-mm01": (13, 9), "regdb": (10, 4), "llcm": (9, 4)}
    for dataset, (methods, settings) in shapes.items():
        cells = load_reported(dataset)
        assert len(cells) == methods * settings * 2
        assert len({c.model for c in cells}) == methods
        keys = {(c.model, c.setting, c.variant, c.query_modality, c.metric) for c in cells}
        assert len(keys) == len(cells)
        assert all(c.citation and c.table for c in cells)


def test_venues_and_citations():
    ddag = _cell("regdb", "DDAG", "mix", "", "infrared", "mAP")
    assert ddag.venue == "ECCV20"  # Table 2 rows take the venue printed in Table 1
    assert "Table 2a" in ddag.citation and "MixER" in ddag.citation
    assert ddag.method_reference.startswith("[39] Ye et al.")
    assert _cell("sysu-mm01", "MixER", "mix", "", "infrared", "mAP").venue == ""


SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "000_6f511535b600d2cc.txt"


@pytest.mark.skipif(not SEED.exists(), reason="the seed paper's text is not beside the checkout")
def test_every_cell_against_the_seed_text():
    """Second opinion: every transcribed value appears at its place in the paper's rows."""
    lines = SEED.read_text(encoding="utf-8").split("\n")
    for dataset in reported_datasets():
        cells = load_reported(dataset)
        by_row: dict[str, list] = {}
        for cell in cells:
            by_row.setdefault(cell.model_as_printed, []).append(cell)
        for printed_label, row_cells in by_row.items():
            table = row_cells[0].table
            # Table 1 rows carry a venue column; the label alone may repeat across tables.
            candidates = [
                line.split("\t") for line in lines if line.split("\t")[0] == printed_label
            ]
            width = 2 + len(row_cells) if table == "1" else 1 + len(row_cells)
            candidates = [c for c in candidates if len(c) == width]
            assert candidates, (dataset, printed_label)
            expected = [c.printed or "-" for c in row_cells]
            values = [c[2:] if table == "1" else c[1:] for c in candidates]
            assert any(v == expected for v in values), (dataset, printed_label)
