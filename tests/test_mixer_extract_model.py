"""``extract(model=...)``: runs of one model trained with different seeds share one
``model`` attribute, so ``vireid-bench runs`` sees them as one group of runs.

Without it, ``name`` gives ``NAME@<config hash>``, and the hash covers ``train.seed``: two
seeds of the same configuration came out as two models of one run each.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from vireid_bench.cli.main import cli  # noqa: E402
from vireid_bench.io.dump import load_dump  # noqa: E402
from vireid_bench.models.mixer.config import load_config  # noqa: E402
from vireid_bench.models.mixer.extract import extract  # noqa: E402
from vireid_bench.models.mixer.train import train  # noqa: E402
from vireid_bench.synth.images import write_synthetic_dataset  # noqa: E402


def _config(seed: int) -> dict:
    return load_config(
        "sysu-mm01",
        "synth-baseline",
        [
            {"optim": {"epochs": 1}},
            {"sampler": {"iters_per_epoch": 1, "batch_ids": 2, "num_pos": 1}},
            {"input": {"height": 32, "width": 16}},
            {"train": {"seed": seed}},
        ],
    )


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seeds")
    root = tmp / "data"
    write_synthetic_dataset(root, "sysu-mm01", ids=6, per_cam=1, size=(32, 16))
    checkpoints = []
    for seed in (0, 1):
        result = train(
            _config(seed), "sysu-mm01", root, tmp / f"seed{seed}", device="cpu", stream=None
        )
        checkpoints.append(result.checkpoint)
    return tmp, root, checkpoints


def test_model_attribute_is_exact_and_groups_seeds(two_seeds):
    tmp, root, checkpoints = two_seeds
    named, exact = [], []
    for seed, checkpoint in enumerate(checkpoints):
        named.append(
            extract(
                checkpoint,
                "sysu-mm01",
                root,
                tmp / f"n{seed}.h5",
                device="cpu",
                stream=None,
                name="B",
            )
        )
        exact.append(
            extract(
                checkpoint,
                "sysu-mm01",
                root,
                tmp / f"e{seed}.h5",
                device="cpu",
                stream=None,
                name="B",
                model="Baseline L_yme",
            )
        )
    named_models = [load_dump(p).model for p in named]
    assert all(m.startswith("B@") for m in named_models)
    assert named_models[0] != named_models[1]  # the seed is in the hash
    dumps = [load_dump(p) for p in exact]
    assert [d.model for d in dumps] == ["Baseline L_yme", "Baseline L_yme"]
    assert [d.seed for d in dumps] == [0, 1]
    assert [d.run for d in dumps] == ["seed0", "seed1"]
    assert _config(0)["model"]["related_branch"] is False
    assert "config hash" in dumps[0].description

    result = CliRunner().invoke(
        cli, ["runs", *map(str, exact), "-p", "cross", "--metric", "R1", "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [g["model"] for g in report["groups"]] == ["Baseline L_yme"]
    assert [r["seed"] for r in report["groups"][0]["runs"]] == [0, 1]
    assert {s["runs"] for s in report["summary"]} == {2}
