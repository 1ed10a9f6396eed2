"""SYSU-MM01 multi-shot: the official splits by default, refused without them."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from test_reconcile import sysu  # noqa: F401 - the fixture: a SYSU-MM01 dump and its .mat

from vireid_bench.cli.main import cli
from vireid_bench.engine.scoring import evaluate
from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import load_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.datasets import SYSUConvention


def test_multi_shot_refused_without_rand_perm(sysu):  # noqa: F811
    path, _ = sysu
    dump = load_dump(path)
    with pytest.raises(ProtocolError, match="published multi-shot numbers .* official"):
        evaluate(dump, resolve_presets("sysu-all-multi"), trials=1)
    result = CliRunner().invoke(cli, ["score", str(path), "-p", "sysu-indoor-multi"])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "--rand-perm" in result.output
    result = CliRunner().invoke(cli, ["score", str(path), "-p", "cross", "--shots", "10"])
    assert result.exit_code == 2 and "--sampler agw" in result.output
    # single-shot keeps AGW's sampler
    (row,) = evaluate(
        dump, resolve_presets("sysu-all-single"), trials=1, query_modalities=["infrared"]
    ).rows
    assert row["variant"] == "all"


def test_multi_shot_uses_the_official_splits_with_rand_perm(sysu):  # noqa: F811
    path, perm = sysu
    dump = load_dump(path)
    default = evaluate(
        dump,
        resolve_presets("sysu-all-multi"),
        trials=2,
        query_modalities=["infrared"],
        convention=SYSUConvention(rand_perm=perm),
    ).rows[0]
    official = evaluate(
        dump,
        resolve_presets("sysu-all-multi"),
        trials=2,
        query_modalities=["infrared"],
        convention=SYSUConvention(sampler="official", rand_perm=perm),
    ).rows[0]
    agw = evaluate(
        dump,
        resolve_presets("sysu-all-multi"),
        trials=2,
        query_modalities=["infrared"],
        convention=SYSUConvention(sampler="agw", rand_perm=perm),
    ).rows[0]
    assert default["variant"] == "all-multi-official"
    assert default["mAP"] == official["mAP"]
    assert agw["variant"] == "all-multi" and not np.isclose(agw["mAP"], official["mAP"])
    # on the command line: --rand-perm alone
    result = CliRunner().invoke(
        cli,
        ["score", str(path), "-p", "sysu-all-multi", "--rand-perm", perm, "--trials", "2"],
    )
    assert result.exit_code == 0, result.output
    assert "all-multi-official" in result.output
