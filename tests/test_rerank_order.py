"""--rerank-order community: re-rank against the whole pool, exclude afterwards.

Checked against a plain re-implementation written here from the definition (docs/rerank.md):
per query, the joint set is the query plus every pool image but itself; the re-ranked
distances come from the plain references of tests/test_rerank.py; the excluded images are
removed afterwards by the brute-force scorer (tests/brute_force.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from brute_force import score_query
from click.testing import CliRunner
from test_rerank import plain_aim, plain_k_reciprocal

from vireid_bench.cli.main import cli
from vireid_bench.engine.scoring import evaluate
from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import load_dump, write_dump
from vireid_bench.protocol import resolve_presets


def small_dump(path, seed=0):
    """6 ids x cameras 1, 2 (visible) and 3, 4 (infrared) x 2 images, 5-dim features."""
    rng = np.random.default_rng(seed)
    pid, cam, mod = [], [], []
    for p in range(6):
        for c in (1, 2, 3, 4):
            for _ in range(2):
                pid.append(p)
                cam.append(c)
                mod.append(0 if c <= 2 else 1)
    centres = rng.normal(size=(6, 5))
    feats = centres[pid] + 0.9 * rng.normal(size=(len(pid), 5))
    write_dump(path, features=feats.astype(np.float32), pid=pid, cam=cam, modality=mod, model="t")
    return path


def reference(dump, preset, method, k1, k2, lam=0.3):
    """Community order by hand: whole pool re-ranked per probe, then the clauses."""
    split = dump.splits[0]
    x = np.asarray(split.features["default"], dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    n = len(x)
    pool = [
        {
            "uid": j,
            "pid": int(split.pid[j]),
            "cam": int(split.cam[j]),
            "mod": int(split.modality[j]),
        }
        for j in range(n)
    ]
    clauses = [tuple(int(v) for v in c) for c in preset.clause_codes()]
    results = []
    for q in np.flatnonzero(split.modality == 1):
        others = [j for j in range(n) if j != q]
        if method == "aim":
            row = plain_aim(x[[q]], x[others], k1, k2)[0]
        else:
            joint = x[[q, *others]]
            dist = ((joint[:, None, :] - joint[None, :, :]) ** 2).sum(-1)
            row = plain_k_reciprocal(dist, [0], k1, k2, lam)[0][1:]
        distances = [math.inf] * n
        for j, value in zip(others, row, strict=True):
            distances[j] = float(value)
        results.append(score_query(distances, pool[q], pool, clauses, identity_cmc=False))
    valid = [r for r in results if r["n_pos"] > 0]
    return {
        "rank1": 100 * np.mean([r["first_rank"] == 1 for r in valid]),
        "mAP": 100 * np.mean([r["ap"] for r in valid]),
        "mINP": 100 * np.mean([r["inp"] for r in valid]),
    }


@pytest.mark.parametrize(
    ("setting", "method", "params"),
    [
        ("mix-cam", "aim", {"k1": 4, "k2": 2}),
        ("cross", "aim", {"k1": 3, "k2": 1}),
        ("mix-cam", "k-reciprocal", {"k1": 5, "k2": 3, "lambda": 0.3}),
        ("cross", "k-reciprocal", {"k1": 6, "k2": 1, "lambda": 0.5}),
    ],
)
def test_community_order_equals_plain_reference(tmp_path, setting, method, params):
    dump = load_dump(small_dump(tmp_path / "d.h5"))
    preset = resolve_presets(setting)[0]
    expected = reference(dump, preset, method, params["k1"], params["k2"], params.get("lambda"))
    rows = {}
    for order in ("community", "exclusion-first"):
        evaluation = evaluate(
            dump,
            [preset],
            query_modalities=["infrared"],
            rerank=method,
            rerank_params=params,
            rerank_order=order,
        )
        rows[order] = evaluation.rows[0]
    for metric, value in expected.items():
        assert rows["community"][metric] == pytest.approx(value, abs=1e-9)
    assert "order=community" in rows["community"]["distance"]
    assert "order" not in rows["exclusion-first"]["distance"]
    # the two orders differ on this dump (else the test could not tell them apart)
    assert any(
        rows["community"][m] != pytest.approx(rows["exclusion-first"][m], abs=1e-9)
        for m in expected
    )


def test_order_without_rerank_and_unknown_order_refused(tmp_path):
    path = small_dump(tmp_path / "d.h5")
    dump = load_dump(path)
    preset = resolve_presets("mix")
    with pytest.raises(ProtocolError, match="needs rerank"):
        evaluate(dump, preset, rerank_order="community")
    with pytest.raises(ProtocolError, match="unknown re-ranking order"):
        evaluate(dump, preset, rerank="aim", rerank_order="later")
    result = CliRunner().invoke(cli, ["score", str(path), "--rerank-order", "community"])
    assert result.exit_code == 2
    assert "--rerank-order: needs --rerank" in result.output


def test_cli_rerank_order_community(tmp_path):
    path = small_dump(tmp_path / "d.h5")
    args = ["score", str(path), "-p", "mix-cam", "--rerank", "aim", "--format", "json"]
    plain = CliRunner().invoke(cli, args)
    community = CliRunner().invoke(cli, [*args, "--rerank-order", "community"])
    assert plain.exit_code == 0 and community.exit_code == 0, community.output
    assert "order=community" in community.output
    assert "order=community" not in plain.output
