"""benchmarks/import_ablation.py: stored copies keep what their scoring needs (issue 16).

A MixER dump from ``mixer extract`` carries the authors' recipe
``vv: z_e; ii: 0.7*z_r + 0.3; vi: z_e``; a stored copy that dropped ``z_r`` (the set only
the recipe reads) must not keep the recipe, and must not silently drop it either.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from vireid_bench import score
from vireid_bench.io.dump import load_dump, write_dump

pytest.importorskip("tabulate")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RECIPE = "vv: z_e; ii: 0.7*z_r + 0.3; vi: z_e"


@pytest.fixture(scope="module")
def import_ablation():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("import_ablation")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _mixer_like(path: Path, recipe: str | None) -> Path:
    # 6 ids x cameras 1, 2 (visible) and 3, 4 (infrared) x 2 images; z_r is tied to the
    # identity within the infrared modality only, so the recipe's ii term changes ranks
    rng = np.random.default_rng(5)
    pid = np.repeat(np.arange(6), 8)
    cam = np.tile(np.repeat([1, 2, 3, 4], 2), 6)
    modality = (cam >= 3).astype(np.uint8)
    z_e = rng.normal(size=(48, 8)).astype(np.float32) + 0.8 * np.eye(8)[pid]
    z_r = rng.normal(size=(48, 8)).astype(np.float32) + 3.0 * np.eye(8)[pid] * modality[:, None]
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    z_f = np.concatenate([unit(z_e), unit(z_r)], axis=1)
    return write_dump(
        path,
        features={"z_e": z_e, "z_f": z_f, "z_r": z_r},
        pid=pid,
        cam=cam,
        modality=modality,
        model="MixER",
        default_features="z_e",
        cross_features="z_e",
        same_features="z_f",
        seed=0,
        run="mixer-seed0",
        synthetic=True,
        float16=True,  # as the stored dumps: a copy is then exact
        distance_recipe=recipe,
    )


def _numbers(path: Path, **options) -> np.ndarray:
    table = score(path, "mix,mix-id,uni", **options)
    return table[["rank1", "mAP"]].to_numpy()


def test_copy_of_a_recipe_dump_keeps_the_recipe_and_z_r(tmp_path, import_ablation):
    source = _mixer_like(tmp_path / "mixer-seed0.h5", RECIPE)
    target = tmp_path / "stored" / "mixer-seed0.h5"
    target.parent.mkdir()
    import_ablation.slim_copy(source, target, name="{model} (synthetic Table 5{scoring})")
    copy = load_dump(target)
    assert set(copy.splits[0].features) == {"z_e", "z_f", "z_r"}
    assert copy.distance_recipe is not None and copy.distance_recipe.text == RECIPE
    assert copy.model == "MixER (synthetic Table 5, authors' recipe)"
    assert copy.seed == 0 and copy.run == "mixer-seed0"
    np.testing.assert_array_equal(_numbers(target), _numbers(source))


def test_policy_copy_drops_recipe_and_z_r_and_says_so(tmp_path, import_ablation):
    source = _mixer_like(tmp_path / "mixer-seed0.h5", RECIPE)
    target = tmp_path / "policy.h5"
    import_ablation.slim_copy(source, target, name="{model}{scoring}", recipe=False)
    copy = load_dump(target)
    assert set(copy.splits[0].features) == {"z_e", "z_f"}
    assert copy.distance_recipe is None
    assert copy.model == "MixER, paper policy"
    assert "scored under the paper's policy" in copy.description
    policy = _numbers(source, recipe="policy")
    np.testing.assert_array_equal(_numbers(target), policy)
    # the recipe matters on this dump: the two scorings differ
    assert not np.array_equal(policy, _numbers(source))


def test_copy_of_a_policy_dump_keeps_only_the_policy_sets(tmp_path, import_ablation):
    source = _mixer_like(tmp_path / "plain.h5", None)
    target = tmp_path / "plain-copy.h5"
    import_ablation.slim_copy(source, target, name="{model} (x{scoring})")
    copy = load_dump(target)
    assert set(copy.splits[0].features) == {"z_e", "z_f"}
    assert copy.distance_recipe is None and copy.model == "MixER (x)"
    np.testing.assert_array_equal(_numbers(target), _numbers(source))
