"""The ``vireid-bench`` command line: a thin click layer over the Python API.

Exit codes scripts can rely on: 0 success; 1 a check found a regression; 2 bad input or
usage (one-line message on stderr naming the file and field); 130 interrupted (Ctrl-C,
SIGINT); 143 terminated (SIGTERM). An interrupted run leaves every output file as it was.
Results go to stdout (or ``--output``), diagnostics and progress bars to stderr.
"""

from __future__ import annotations

import os
import warnings
from functools import partial
from typing import TYPE_CHECKING

import click

from vireid_bench.cli.check import check_command
from vireid_bench.cli.common import (
    InputError,
    ToolkitGroup,
    check_output,
    install_signal_handlers,
    note_cold_kernels,
    one_line_warnings,
    progress_bar,
    toolkit_version,
    write_output,
)
from vireid_bench.cli.compare import compare_command
from vireid_bench.cli.import_features import import_command
from vireid_bench.cli.index import index_command
from vireid_bench.cli.leaderboard import leaderboard_command
from vireid_bench.cli.mixer import mixer_group
from vireid_bench.cli.options import (
    allow_external_option,
    memory_limit_option,
    parents_option,
    query_modality_option,
    scheduler_options,
    table_output_options,
    trials_option,
)
from vireid_bench.cli.plot import plot_command
from vireid_bench.cli.reconcile import reconcile_command
from vireid_bench.cli.runs import runs_command
from vireid_bench.cli.score_distmat import score_distmat_command
from vireid_bench.cli.score_extras import ScoreExtras, ranklists_option, top_k_option
from vireid_bench.cli.synth_images import synth_images_command
from vireid_bench.engine.scheduler import scheduler_from_options
from vireid_bench.errors import DumpError, VireidBenchError
from vireid_bench.synth.defaults import SynthStrengths

if TYPE_CHECKING:
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.io.dump import FeatureDump
    from vireid_bench.protocol.conventions import Convention

@click.group(
    "vireid-bench",
    cls=ToolkitGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="vireid-bench", prog_name="vireid-bench")
def cli() -> None:
    """Evaluate visible-infrared person re-identification features.

    A model writes one HDF5 feature dump (features, person id, camera and modality per
    image; see docs/dump-format.md). vireid-bench scores it under the cross-modal,
    uni-modal and mixed-modal (MixER) gallery settings:

    \b
      vireid-bench score feature_dumps/demo-sysu.h5 --protocol all
      vireid-bench protocols           # the settings and their exclusion rules
      vireid-bench inspect DUMP        # what a dump holds, and what looks wrong
    """


@cli.command("score")
@click.argument("dumps", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "-p",
    "--protocol",
    default="all",
    show_default=True,
    help="'all', a preset name, a comma list of names, or a path to a preset .toml file.",
)
@table_output_options
@parents_option
@click.option(
    "--features",
    help="Use this feature set for every pair (default: the dump's cross/same-modality policy).",
)
@click.option(
    "--recipe",
    help="Per-pair distance recipe, e.g. 'vv: z_f; ii: 0.7*z_r + z_e; vi: z_e' (overrides the "
    "dump's distance_recipe; 'policy': the cross/same-modality policy). docs/dump-format.md.",
)
@click.option(
    "--distance",
    type=click.Choice(["cosine", "euclidean"]),
    help="Distance: cosine on L2-normalised features, or Euclidean.  [default: cosine]",
)
@click.option(
    "--metric",
    "metric_alias",
    type=click.Choice(["cosine", "euclidean"]),
    hidden=True,
    help="Deprecated alias of --distance (compare's --metric is the per-query metric).",
)
@click.option(
    "--cmc",
    type=click.Choice(["image", "identity"]),
    help="Override the CMC convention: rank among gallery images, or among identities "
    "(each represented by its closest image; SYSU-MM01/AGW).",
)
@trials_option
@query_modality_option
@click.option(
    "--sampler",
    type=click.Choice(["agw", "official"]),
    help="SYSU-MM01 gallery sampler: AGW's random.seed(trial) or the official "
    "rand_perm_cam.mat permutations (needs --rand-perm). Default: AGW's for single-shot; "
    "multi-shot uses the official one with --rand-perm and is refused without it "
    "(published multi-shot numbers use the official splits).",
)
@click.option(
    "--shots",
    type=click.IntRange(min=1),
    help="SYSU-MM01 gallery images per (identity, camera): 1 single-shot (default), 10 multi-shot.",
)
@click.option(
    "--colocated-rule",
    type=click.Choice(["any", "same-id"]),
    help="SYSU-MM01 cross-modal: a camera-3 query loses every camera-2 gallery image "
    "('any', AGW, default) or only its own identity's ('same-id').",
)
@click.option(
    "--rand-perm",
    type=click.Path(dir_okay=False, exists=True),
    help="SYSU-MM01 exp/rand_perm_cam.mat for --sampler official.",
)
@click.option(
    "--llcm-v2i",
    type=click.Choice(["deen", "visible-queries"]),
    help="LLCM cross-modal visible-query rows: 'deen' (default) reproduces DEEN's test.py, "
    "which ranks sampled near-infrared images against every visible image for its V->I "
    "numbers; 'visible-queries' ranks every visible image against a sampled "
    "near-infrared gallery, as the words V->I say (docs/datasets.md).",
)
@click.option(
    "--regdb-split",
    type=click.IntRange(1, 10),
    help="RegDB: score split K only (trials/<K-1> of a ten-split dump; a dump holding one "
    "split is taken as split K). Needed by --protocol regdb-saai on a ten-split dump.",
)
@click.option(
    "--block-mb",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Memory for one block of the distance matrix, in MiB (in-memory path).",
)
@click.option(
    "--rerank",
    type=click.Choice(["none", "k-reciprocal", "aim"]),
    default="none",
    show_default=True,
    help="Re-rank each query's gallery after exclusion (docs/rerank.md): k-reciprocal "
    "encoding (Zhong et al. 2017) or SAAI's affinity inference (AIM, cosine only).",
)
@click.option(
    "--rerank-order",
    type=click.Choice(["exclusion-first", "community"]),
    default="exclusion-first",
    show_default=True,
    help="With --rerank: re-rank each query against its gallery after exclusion, or "
    "('community', SAAI's AIM, MPANet's k-reciprocal) against the whole sampled gallery, "
    "removing excluded images afterwards (docs/rerank.md).",
)
@click.option(
    "--rerank-k1",
    type=int,
    help="k1: k-reciprocal neighbourhood (default 20) / AIM affinity top-k (default per "
    "dataset, SAAI: SYSU all 4, indoor 2, multi-shot 20; RegDB 8; others 20).",
)
@click.option(
    "--rerank-k2",
    type=int,
    help="k2: query-expansion neighbours (k-reciprocal default 6; AIM default per dataset, "
    "SAAI: SYSU all 1, indoor 2, multi-shot 6; RegDB 2; others 6).",
)
@click.option(
    "--rerank-lambda",
    type=float,
    help="k-reciprocal only: weight of the original distance, final = (1-lambda) * "
    "Jaccard + lambda * original (default 0.3).",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda", "auto"]),
    help="Score with torch on this device (auto: cuda when available); same numbers as the "
    "default Numba path. Needs torch.",
)
@click.option("--tf32", is_flag=True, help="With --device cuda: allow TF32 matmuls (faster).")
@memory_limit_option
@click.option(
    "--gallery-block",
    type=click.IntRange(min=1),
    help="Force the streamed path with gallery blocks of N images (default: chosen from "
    "--memory-limit).",
)
@allow_external_option
@ranklists_option
@top_k_option
@scheduler_options
def score_command(
    dumps: tuple[str, ...],
    protocol: str,
    fmt: str,
    output: str | None,
    parents: bool,
    features: str | None,
    recipe: str | None,
    distance: str | None,
    metric_alias: str | None,
    cmc: str | None,
    trials: int | None,
    query_modality: str,
    sampler: str | None,
    shots: int | None,
    colocated_rule: str | None,
    rand_perm: str | None,
    llcm_v2i: str | None,
    regdb_split: int | None,
    block_mb: int,
    rerank: str,
    rerank_order: str,
    rerank_k1: int | None,
    rerank_k2: int | None,
    rerank_lambda: float | None,
    device: str | None,
    tf32: bool,
    memory_limit: str,
    gallery_block: int | None,
    allow_external: bool,
    ranklists: str | None,
    top_k: int | None,
    scheduler: str,
    scheduler_address: str | None,
    dask_workers: int,
    dask_block_queries: int,
    dask_timeout: float,
) -> None:
    """Score feature dumps under protocol presets.

    Prints one row per (setting, query modality): R1, R5, R10, R20, mAP and mINP in
    percent (mean ± std over trials), the number of queries per trial and how many had
    no true match in their gallery (those count in no average). With '--protocol all' a
    setting that does not apply to a dump, or leaves it no query or gallery, is listed
    with the reason; a setting named explicitly fails instead (exit code 2).
    '--scheduler dask' scores on a Dask cluster (same numbers; docs/scale.md).
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.engine.distributed import ScoreRequest, evaluate_requests
    from vireid_bench.engine.plans import recipe_feature_sets
    from vireid_bench.engine.scoring import MemoryOptions, evaluate
    from vireid_bench.io.dump import declared_feature_bytes, load_dump
    from vireid_bench.io.memory import parse_memory_limit
    from vireid_bench.protocol import resolve_presets
    from vireid_bench.results.report import render

    check_output(output, [*dumps, *([rand_perm] if rand_perm else [])], parents=parents)
    if metric_alias is not None:
        if distance is not None and distance != metric_alias:
            raise InputError(f"--metric {metric_alias} and --distance {distance} disagree")
        click.echo(
            "warning: score --metric is deprecated: use --distance (compare's --metric is "
            "the per-query metric)",
            err=True,
        )
    distance = distance or metric_alias or "cosine"
    limit = parse_memory_limit(memory_limit)
    memory = MemoryOptions(limit=limit, gallery_block=gallery_block)
    presets = resolve_presets(protocol)
    names = [p.strip() for p in protocol.split(",")]
    strict = not any(name == "all" or name.endswith(":all") for name in names)
    sysu_options = {
        key: value
        for key, value in (
            ("sampler", sampler),
            ("shots", shots),
            ("colocated_rule", colocated_rule),
            ("rand_perm", rand_perm),
        )
        if value is not None
    }
    modalities = None if query_modality == "both" else [query_modality]
    rerank_params = {"k1": rerank_k1, "k2": rerank_k2, "lambda": rerank_lambda}
    if rerank == "none":
        given = [f"--rerank-{k}" for k, v in rerank_params.items() if v is not None]
        if rerank_order != "exclusion-first":
            given.append("--rerank-order")
        if given:
            raise InputError(f"{given[0]}: needs --rerank k-reciprocal or --rerank aim")
        rerank_params = {}
    else:
        # lazy: heavy modules load only when the command runs (fast --help)
        from vireid_bench.engine.rerank_scoring import validate

        rerank_params = validate(rerank, rerank_params, distance)
    options = {
        "features": features,
        "recipe": recipe,
        "distance": distance,
        "cmc": cmc,
        "trials": trials,
        "query_modalities": modalities,
        "strict": strict,
    }
    if device is not None:
        if scheduler != "local":
            raise InputError("--device: not available with --scheduler dask yet")
        options.update(device=device, tf32=tf32)
    factory = None
    if sysu_options:
        factory = partial(_sysu_convention, sysu_options)
    if llcm_v2i is not None:
        if factory is not None:
            raise InputError(
                "--llcm-v2i applies to LLCM dumps, --sampler/--shots/--colocated-rule/"
                "--rand-perm to SYSU-MM01 dumps: score them in separate runs"
            )
        factory = partial(_llcm_convention, llcm_v2i)
    if regdb_split is not None:
        if factory is not None:
            raise InputError(
                "--regdb-split applies to RegDB dumps, --llcm-v2i to LLCM and --sampler/"
                "--shots/--colocated-rule/--rand-perm to SYSU-MM01 dumps: score them in "
                "separate runs"
            )
        factory = partial(_regdb_convention, regdb_split)
    chosen = scheduler_from_options(
        scheduler, scheduler_address, dask_workers, dask_block_queries, dask_timeout
    )
    if chosen.kind == "dask" and rerank != "none":
        raise InputError("--rerank: not available with --scheduler dask yet (score locally)")
    inputs = [*dumps, *([rand_perm] if rand_perm else [])]
    extras = ScoreExtras(
        ranklists, top_k, dumps, inputs, rerank=rerank, scheduler=chosen.kind, parents=parents
    )
    rows = []
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.engine import fused as kernels  # the kernel every in-memory plan runs
    from vireid_bench.engine import rerank as rerank_kernels

    note_cold_kernels(kernels, *([rerank_kernels] if rerank != "none" else []))
    with one_line_warnings():
        if chosen.kind == "dask":
            requests = [
                ScoreRequest(
                    path,
                    tuple(presets),
                    options,
                    factory,
                    block_mb * 1024**2,
                    memory,
                    allow_external,
                )
                for path in dumps
            ]
            for path, evaluation in zip(
                dumps, evaluate_requests(requests, chosen), strict=True
            ):
                rows.extend(_traced(evaluation.rows, path, fmt, allow_external))
        for path in dumps if chosen.kind == "local" else ():
            wanted = [features] if features else []
            wanted += recipe_feature_sets(recipe)
            declared = declared_feature_bytes(path, wanted, allow_external=allow_external)
            lazy = rerank == "none" and device is None and declared > limit // 2
            try:
                dump = load_dump(
                    path, feature_sets=wanted, lazy=lazy, allow_external=allow_external
                )
            except DumpError as exc:
                raise _blame_recipe(exc, recipe, features) from None
            total = sum(split.n_images for split in dump.splits)
            with progress_bar(total, f"scoring {os.path.basename(path)}") as progress:
                evaluation = evaluate(
                    dump,
                    presets,
                    block_bytes=block_mb * 1024**2,
                    progress=progress,
                    convention=factory(dump) if factory else None,
                    **options,
                    memory=memory,
                    rerank=None if rerank == "none" else rerank,
                    rerank_params=rerank_params,
                    rerank_order=rerank_order,
                )
            extras.after(dump, presets, options, factory)
            rows.extend(_traced(evaluation.rows, path, fmt, allow_external))
        extras.warn_canonical(dumps, allow_external)
    write_output(render(rows, fmt, toolkit_version()), output, inputs, parents=parents)


def _blame_recipe(exc: DumpError, recipe: str | None, features: str | None) -> DumpError:
    """``exc`` renamed to ``--recipe`` when it reports a missing feature set that only the
    ``--recipe`` option asked for (the dump is not at fault then); ``exc`` otherwise."""
    from vireid_bench.engine.plans import recipe_feature_sets  # lazy: fast --help

    only_recipe = set(recipe_feature_sets(recipe)) - {features}
    if exc.field == "features" and any(
        exc.problem.startswith(f"no feature set {name!r}") for name in only_recipe
    ):
        return DumpError(exc.source, "--recipe", exc.problem)
    return exc


def _traced(
    rows: list[dict[str, object]], path: str, fmt: str, allow_external: bool = False
) -> list[dict[str, object]]:
    """Add the dump's SHA-256 to JSON rows (``leaderboard`` reads it back).

    With ``--allow-external`` the digest covers every file the dump reads
    (:func:`vireid_bench.io.digest.dump_sha256`).
    JSON and CSV rows also carry the dump's run metadata (seed, run, selection,
    trained_on, synthetic) when it records them.
    """
    if fmt in ("json", "csv"):
        # lazy: heavy modules load only when the command runs (fast --help)
        from vireid_bench.io.dump import read_dump_attributes
        from vireid_bench.results.run_fields import add_run_metadata

        add_run_metadata(rows, read_dump_attributes(path))
    if fmt == "json":
        # lazy: heavy modules load only when the command runs (fast --help)
        from vireid_bench.io.digest import dump_sha256

        digest = dump_sha256(path, allow_external=allow_external)
        for row in rows:
            row["dump_sha256"] = digest
    return rows


def _sysu_convention(options: dict[str, object], dump: FeatureDump) -> Convention:
    """The SYSU-MM01 convention with the score command's options (picklable with partial).

    Raises:
        DumpError: the dump is not a SYSU-MM01 dump.
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.errors import DumpError
    from vireid_bench.protocol.datasets.sysu import SYSUConvention

    if dump.dataset != "sysu-mm01":
        raise DumpError(
            dump.source,
            "dataset",
            "--sampler/--shots/--colocated-rule/--rand-perm apply to sysu-mm01 dumps, "
            f"not {dump.dataset!r}",
        )
    return SYSUConvention(**options)


def _llcm_convention(v2i: str, dump: FeatureDump) -> Convention:
    """The LLCM convention with ``--llcm-v2i`` (picklable with partial).

    Raises:
        DumpError: the dump is not an LLCM dump.
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.errors import DumpError
    from vireid_bench.protocol.datasets.llcm import LLCMConvention

    if dump.dataset != "llcm":
        reason = f"--llcm-v2i applies to llcm dumps, not {dump.dataset!r}"
        raise DumpError(dump.source, "dataset", reason)
    return LLCMConvention(v2i=v2i)


def _regdb_convention(split: int, dump: FeatureDump) -> Convention:
    """The RegDB convention with ``--regdb-split`` (picklable with partial).

    Raises:
        DumpError: the dump is not a RegDB dump.
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.errors import DumpError
    from vireid_bench.protocol.datasets.regdb import RegDBConvention

    if dump.dataset != "regdb":
        reason = f"--regdb-split applies to regdb dumps, not {dump.dataset!r}"
        raise DumpError(dump.source, "dataset", reason)
    return RegDBConvention(split=split)


@cli.command("protocols")
@click.option("-v", "--verbose", is_flag=True, help="Also show each preset's exclusion rule.")
def protocols_command(verbose: bool) -> None:
    """List the protocol presets with their one-line descriptions."""
    from tabulate import tabulate

    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.protocol.conventions import dataset_presets
    from vireid_bench.protocol.presets import builtin_presets

    body = []
    for preset in builtin_presets().values():
        row = [preset.name, preset.description]
        if verbose:
            row += [preset.describe_exclusion(), preset.paper]
        body.append(row)
    headers = ["preset", "description"] + (
        ["excluded besides the query", "source"] if verbose else []
    )
    click.echo(tabulate(body, headers=headers, tablefmt="simple", maxcolwidths=[None, 60, 40, 30]))
    click.echo("")
    click.echo(
        "Dataset protocols (NAME = its cross-modal test, NAME:SETTING one setting, "
        "NAME:all every setting on that dataset's pools):"
    )
    dataset_rows = [
        [entry.name, entry.dataset, entry.description] for entry in dataset_presets().values()
    ]
    click.echo(
        tabulate(
            dataset_rows,
            headers=["protocol", "dataset", "description"],
            tablefmt="simple",
            maxcolwidths=[None, None, 70],
        )
    )


@cli.command("inspect")
@click.argument("dump_path", type=click.Path(dir_okay=False))
@allow_external_option
def inspect_command(dump_path: str, allow_external: bool) -> None:
    """Show what a feature dump holds and validate it.

    Prints images and identities per modality and camera, the feature sets and their
    dimensions, and findings that may surprise (identities seen in one modality only,
    duplicated paths, zero-norm rows...). Exit code 2 when the dump is invalid.
    """
    from tabulate import tabulate

    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.io.dump import load_dump
    from vireid_bench.io.inspection import describe_dump, dump_findings
    from vireid_bench.protocol.canonical import compare_with_manifest
    from vireid_bench.protocol.registry import check_dataset_name

    with warnings.catch_warnings():  # load-time warnings are repeated as findings below
        warnings.simplefilter("ignore", UserWarning)
        dump = load_dump(dump_path, allow_external=allow_external)
    click.echo(tabulate(describe_dump(dump), tablefmt="plain"))
    findings = dump_findings(dump)
    try:
        check_dataset_name(dump.dataset)
    except VireidBenchError as exc:  # a misspelt dataset: every score of this dump fails
        findings.insert(0, f"dataset: {exc}")
    canonical = compare_with_manifest(dump)
    if canonical is not None:
        findings.append(canonical.summary())
    click.echo("")
    if findings:
        click.echo("findings:")
        for finding in findings:
            click.echo(f"  - {finding}")
    else:
        click.echo("findings: none, the dump is valid")


@cli.command("synth")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option(
    "--ids", type=click.IntRange(min=1), default=96, show_default=True, help="Identities."
)
@click.option(
    "--cams",
    default="1,2,4,5:visible,3,6:infrared",
    show_default=True,
    help="Cameras and their modality: ids accumulate until ':visible' or ':infrared'.",
)
@click.option(
    "--per-cam",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Images per identity and camera.",
)
@click.option(
    "--dim", type=click.IntRange(min=1), default=256, show_default=True, help="Feature dimension."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--dataset",
    default="generic",
    show_default=True,
    help="Dataset attribute of the dump (e.g. generic, sysu-mm01).",
)
@click.option(
    "--identity",
    "s_identity",
    type=float,
    default=SynthStrengths.identity,
    show_default=True,
    help="Strength of the identity component shared by both modalities.",
)
@click.option(
    "--identity-modality",
    "s_identity_modality",
    type=float,
    default=SynthStrengths.identity_modality,
    show_default=True,
    help="Strength of the modality-specific identity component.",
)
@click.option(
    "--modality",
    "s_modality",
    type=float,
    default=SynthStrengths.modality,
    show_default=True,
    help="Strength of the component shared by every image of a modality.",
)
@click.option(
    "--camera",
    "s_camera",
    type=float,
    default=SynthStrengths.camera,
    show_default=True,
    help="Strength of the per-camera component.",
)
@click.option(
    "--noise",
    "s_noise",
    type=float,
    default=SynthStrengths.noise,
    show_default=True,
    help="Strength of the per-image noise.",
)
@click.option("--float32", "as_float32", is_flag=True, help="Store float32 (default float16).")
@parents_option
def synth_command(
    out: str,
    ids: int,
    cams: str,
    per_cam: int,
    dim: int,
    seed: int,
    dataset: str,
    s_identity: float,
    s_identity_modality: float,
    s_modality: float,
    s_camera: float,
    s_noise: float,
    as_float32: bool,
    parents: bool,
) -> None:
    """Write a synthetic feature dump with identity, modality and camera structure.

    Features = identity component shared by both modalities + modality-specific identity
    component + a component shared by each modality (same-modality distractors are hard)
    + camera component + noise; each option sets a component's expected norm.
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.synth.dumps import SynthStrengths, write_synth_dump

    try:
        path = write_synth_dump(
            out,
            ids=ids,
            cameras=cams,
            per_cam=per_cam,
            dim=dim,
            seed=seed,
            dataset=dataset,
            strengths=SynthStrengths(
                s_identity, s_identity_modality, s_modality, s_camera, s_noise
            ),
            float16=not as_float32,
            parents=parents,
        )
    except VireidBenchError:
        raise  # one line, exit 2 (the group's error contract)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    click.echo(f"wrote {path}", err=True)


def _register_commands() -> None:
    """Attach the commands that live in their own modules (each light to import)."""
    for command in (
        index_command,
        mixer_group,
        synth_images_command,
        leaderboard_command,
        check_command,
        plot_command,
        compare_command,
        import_command,
        score_distmat_command,
        reconcile_command,
        runs_command,
    ):
        cli.add_command(command)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``vireid-bench``); SIGINT exits 130 and SIGTERM 143, cleanly."""
    restore = install_signal_handlers()
    try:
        cli.main(args=argv, prog_name="vireid-bench")
    finally:
        restore()


if __name__ == "__main__":  # pragma: no cover
    main()
