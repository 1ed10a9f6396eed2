"""Bring the results of a GPU session (gpu_session_mixer.sh OUT) into the repository.

    python benchmarks/import_ablation.py OUT [--dest feature_dumps/ablation] [--budget-mb 15]
        [--results leaderboards/inputs/ablation-synth-sysu.json] [--no-summary]

1. The ablation's summary over *every* run in ``OUT/ablation/dumps`` (made here with
   ``ablation_synth.py --summary-only`` when the session ran out of time before it; it is
   written into ``OUT/ablation``, so pass a writable copy; ``--no-summary`` keeps the
   session's own ``summary.csv`` / ``ablation.md``).
2. Stored dumps for ``vireid-bench check``: copies into ``--dest`` holding the feature sets
   that the dump's scoring needs: its cross/same-modality policy (``z_e``; ``z_f`` for rows
   with the modality-related branch) **and**, when the dump carries a ``distance_recipe``
   (``mixer extract`` writes the authors' ``ii: 0.7*z_r + 0.3`` by default), the recipe and
   every set it names (``z_r``): a copy never keeps a recipe whose sets it dropped, nor
   silently drops the recipe (it would then be scored under another rule). Float16, whole
   seeds in order (seed 0 of every row, then seed 1, ...) while the folder stays under
   ``--budget-mb``; then ``vireid-bench check DEST --update --parents`` writes
   ``DEST/expected/*.json``. Check them with ``vireid-bench check DEST``. ``--name`` renames
   the model (``{model}``: the row; ``{scoring}``: ``, authors' recipe`` for a recipe
   dump, empty otherwise), so that leaderboard rows say what they are.
3. ``--results FILE``: every run, scored (``score --format json``, all settings) under the
   dump's own scoring and, for recipe dumps, again under the paper's policy (a copy without
   the recipe, named with ``{scoring}`` = ``, paper policy``): the leaderboard's input for
   the runs' mean ± CI (``vireid-bench leaderboard feature_dumps/*.h5 FILE``).
4. Prints Markdown for docs/mixer.md: the calibration grid (``OUT/calibration.csv``) and the
   pick, the ablation table (mean ± 95 % CI over runs), and the throughput rows
   (``OUT/throughput/*.csv``), each with the device the session named.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ablation_synth import summarize
from tabulate import tabulate

from vireid_bench.io.dump import load_dump, write_dump

RECIPE_TAG = ", authors' recipe"
POLICY_TAG = ", paper policy"


def kept_sets(dump) -> list[str]:
    """The feature sets a stored copy must keep: the policy's, and the recipe's if any."""
    names = [dump.default_features, dump.cross_features, dump.same_features]
    if dump.distance_recipe is not None:
        names += list(dump.distance_recipe.feature_sets)
    return list(dict.fromkeys(names))


def slim_copy(
    source: Path,
    target: Path,
    *,
    name: str = "{model}",
    recipe: bool = True,
) -> int:
    """Copy a dump keeping the sets its scoring needs (see :func:`kept_sets`); return its size.

    ``recipe=False`` writes the copy without the dump's ``distance_recipe`` (and without
    the sets only the recipe needed): it is then scored under the paper's policy, and
    ``{scoring}`` in ``name`` reads ``, paper policy``.
    """
    dump = load_dump(source)
    split = dump.splits[0]
    keep_recipe = recipe and dump.distance_recipe is not None
    if keep_recipe:
        keep = kept_sets(dump)
        scoring = RECIPE_TAG
    else:
        keep = list(dict.fromkeys([dump.default_features, dump.cross_features, dump.same_features]))
        scoring = POLICY_TAG if dump.distance_recipe is not None else ""
    dropped = sorted(set(split.features) - set(keep))
    write_dump(
        target,
        features={name_: split.features[name_] for name_ in keep},
        pid=split.pid,
        cam=split.cam,
        modality=split.modality,
        paths=None if split.path is None else list(split.path),
        dataset=dump.dataset,
        model=name.format(model=dump.model, scoring=scoring),
        description=dump.description
        + (f"; stored without {', '.join(dropped)} (feature_dumps size)" if dropped else "")
        + (
            "; distance_recipe removed: scored under the paper's policy"
            if scoring == POLICY_TAG
            else ""
        ),
        default_features=dump.default_features,
        cross_features=dump.cross_features,
        same_features=dump.same_features,
        float16=True,
        protocol_version=dump.protocol_version,
        seed=dump.seed,
        run=dump.run,
        selection=dump.selection,
        trained_on=dump.trained_on,
        synthetic=dump.synthetic,
        distance_recipe=dump.distance_recipe if keep_recipe else None,
    )
    return target.stat().st_size


def store(dumps: list[Path], dest: Path, budget: int, name: str = "{model}") -> list[Path]:
    """Slim copies of whole seeds into ``dest`` while the total stays under ``budget``."""
    by_seed: dict[int, list[Path]] = {}
    for path in dumps:
        by_seed.setdefault(load_dump(path, lazy=True).seed or 0, []).append(path)
    dest.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in dest.glob("*.h5"))
    stored: list[Path] = []
    for seed in sorted(by_seed):
        written = [dest / p.name for p in by_seed[seed]]
        size = sum(slim_copy(p, dest / p.name, name=name) for p in by_seed[seed])
        if total + size > budget:
            for path in written:
                path.unlink()
            print(f"seed {seed}: left out ({size / 1e6:.1f} MB more would pass the budget)")
            break
        total += size
        stored += written
    print(f"stored {len(stored)} dump(s) in {dest}: {total / 1e6:.1f} MB")
    return stored


def score_runs(dumps: list[Path], results: Path, name: str, workdir: Path) -> None:
    """Score every run into one JSON result file: each dump under its own scoring and,
    when it carries a recipe, a copy under the paper's policy (see the module docstring)."""
    copies: list[Path] = []
    for path in dumps:
        copies.append(workdir / f"own-{path.name}")
        slim_copy(path, copies[-1], name=name)
        if load_dump(path, lazy=True).distance_recipe is not None:
            copies.append(workdir / f"policy-{path.name}")
            slim_copy(path, copies[-1], name=name, recipe=False)
    results.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from vireid_bench.cli.main import cli; cli()",
            "score",
            *map(str, copies),
            "--protocol",
            "all",
            "--format",
            "json",
            "--output",
            str(results),
        ],
        check=True,
    )
    print(f"scored {len(copies)} run scoring(s) of {len(dumps)} dump(s) into {results}")


def csv_markdown(path: Path, columns: list[str] | None = None) -> str:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if columns:
        rows = [{k: r.get(k, "") for k in columns} for r in rows]
    return tabulate(rows, headers="keys", tablefmt="pipe")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="OUT of gpu_session_mixer.sh")
    parser.add_argument("--dest", default="feature_dumps/ablation")
    parser.add_argument("--budget-mb", type=float, default=15.0)
    parser.add_argument("--no-store", action="store_true", help="only print the tables")
    parser.add_argument("--no-summary", action="store_true", help="keep OUT's own summary")
    parser.add_argument("--name", default="{model}", help="model name of the copies")
    parser.add_argument("--results", help="JSON result file of every run (leaderboard input)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    ablation = out / "ablation"
    dumps = sorted((ablation / "dumps").glob("*.h5"))
    if not dumps:
        sys.exit(f"{ablation / 'dumps'}: no ablation dumps")
    # the summary is always over every finished run
    table = (ablation / "ablation.md").read_text() if args.no_summary else summarize(ablation)
    if args.results:
        with tempfile.TemporaryDirectory() as workdir:
            score_runs(dumps, Path(args.results), args.name, Path(workdir))
    if not args.no_store:
        dest = Path(args.dest)
        if dest.exists():
            shutil.rmtree(dest)
        store(dumps, dest, int(args.budget_mb * 1e6), args.name)
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from vireid_bench.cli.main import cli; cli()",
                "check",
                str(dest),
                "--update",
                "--parents",
            ],
            check=True,
        )
    status = out / "status.txt"
    if status.is_file():
        print("\n## Session status\n\n```\n" + status.read_text().strip() + "\n```")
    if (out / "calibration.csv").is_file():
        columns = [
            "shared", "nuisance", "ids", "per_cam", "epochs", "iters", "chance_r1",
            "cross_i2v_r1", "cross_i2v_map", "cross_v2i_r1", "uni_ir_r1", "uni_vis_r1",
            "uni_margin", "total_s", "device",
        ]  # fmt: skip
        print("\n## Calibration grid\n\n" + csv_markdown(out / "calibration.csv", columns))
    if (out / "pick.json").is_file():
        picked = json.loads((out / "pick.json").read_text())
        print(
            f"\npick ({'in' if picked['in_band'] else 'NOT in'} the band): "
            f"{json.dumps(picked['knobs'])}, schedule {json.dumps(picked['schedule'])}"
        )
    settings = ablation / "settings.json"
    if settings.is_file():
        print(f"\n## Ablation ({json.dumps(json.loads(settings.read_text()))})\n")
    print(table)
    for name in ("mixer_gpu.csv", "mixer_gpu_compile.csv"):
        path = out / "throughput" / name
        if path.is_file():
            print(f"\n## Throughput: {name}\n\n" + csv_markdown(path))


if __name__ == "__main__":
    main()
