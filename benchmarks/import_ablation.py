"""Bring the results of a GPU session (gpu_session_mixer.sh OUT) into the repository.

    python benchmarks/import_ablation.py OUT [--dest feature_dumps/ablation] [--budget-mb 15]

1. The ablation's summary over *every* run in ``OUT/ablation/dumps`` (made here with
   ``ablation_synth.py --summary-only`` when the session ran out of time before it).
2. Stored dumps for ``vireid-bench check``: copies into ``--dest`` holding the feature sets
   that the dump's default policy scores (``z_e``; and ``z_f`` for rows with the
   modality-related branch: ``z_r`` is dropped, the second half of ``z_f`` is its
   direction), float16, whole seeds in order (seed 0 of every row, then seed 1, ...) while
   the folder stays under ``--budget-mb``; then ``vireid-bench check DEST --update
   --parents`` writes ``DEST/expected/*.json``. Check them with ``vireid-bench check DEST``.
3. Prints Markdown for docs/mixer.md: the calibration grid (``OUT/calibration.csv``) and the
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
from pathlib import Path

from ablation_synth import summarize
from tabulate import tabulate

from vireid_bench.io.dump import load_dump, write_dump


def slim_copy(source: Path, target: Path) -> int:
    """Copy a dump keeping the sets its policy scores (z_e, z_f); return its size."""
    dump = load_dump(source)
    split = dump.splits[0]
    keep = dict.fromkeys([dump.default_features, dump.cross_features, dump.same_features])
    dropped = sorted(set(split.features) - set(keep))
    write_dump(
        target,
        features={name: split.features[name] for name in keep},
        pid=split.pid,
        cam=split.cam,
        modality=split.modality,
        paths=None if split.path is None else list(split.path),
        dataset=dump.dataset,
        model=dump.model,
        description=dump.description
        + (f"; stored without {', '.join(dropped)} (feature_dumps size)" if dropped else ""),
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
    )
    return target.stat().st_size


def store(dumps: list[Path], dest: Path, budget: int) -> list[Path]:
    """Slim copies of whole seeds into ``dest`` while the total stays under ``budget``."""
    by_seed: dict[int, list[Path]] = {}
    for path in dumps:
        by_seed.setdefault(load_dump(path, lazy=True).seed or 0, []).append(path)
    dest.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in dest.glob("*.h5"))
    stored: list[Path] = []
    for seed in sorted(by_seed):
        written = [dest / p.name for p in by_seed[seed]]
        size = sum(slim_copy(p, dest / p.name) for p in by_seed[seed])
        if total + size > budget:
            for path in written:
                path.unlink()
            print(f"seed {seed}: left out ({size / 1e6:.1f} MB more would pass the budget)")
            break
        total += size
        stored += written
    print(f"stored {len(stored)} dump(s) in {dest}: {total / 1e6:.1f} MB")
    return stored


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
    args = parser.parse_args(argv)
    out = Path(args.out)
    ablation = out / "ablation"
    dumps = sorted((ablation / "dumps").glob("*.h5"))
    if not dumps:
        sys.exit(f"{ablation / 'dumps'}: no ablation dumps")
    table = summarize(ablation)  # always over every finished run
    if not args.no_store:
        dest = Path(args.dest)
        if dest.exists():
            shutil.rmtree(dest)
        store(dumps, dest, int(args.budget_mb * 1e6))
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
