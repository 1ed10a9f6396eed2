"""``vireid-bench import``: write a v1 dump from features saved by other code.

Sources: MATLAB ``.mat`` (v5 and v7.3), ``.npy`` files or a folder of them, ``.npz``
archives, PyTorch ``.pt`` files (``weights_only=True``). See docs/import.md.
"""

from __future__ import annotations

import click

from vireid_bench.cli.common import ToolkitCommand
from vireid_bench.cli.run_options import run_metadata, run_metadata_options

DATASETS = ("generic", "sysu-mm01", "regdb", "llcm")
MODALITIES = ("infrared", "visible")
SHOWN_DUPLICATES = 3


def camera_modality(dataset: str) -> tuple[dict[int, int] | None, str | None]:
    """Return (camera id -> modality code, or None; why the cameras cannot tell, or None)."""
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.protocol.datasets import regdb, sysu

    if dataset == "sysu-mm01":
        return dict(sysu.CAMERA_MODALITY), None
    if dataset == "regdb":
        return {cam: modality for modality, cam in regdb.CAMERAS.items()}, None
    if dataset == "llcm":
        return None, "LLCM cameras record both modalities, so the camera does not tell"
    return None, "unknown (the generic dataset has no camera-to-modality rule)"


@click.command("import", cls=ToolkitCommand)
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar="FIELD=NAME",
    help="Read FIELD (query_f, query_label, query_cam, gallery_f, gallery_label, gallery_cam, "
    "query_modality, gallery_modality) from the array NAME. Repeatable.",
)
@click.option(
    "--query-modality", type=click.Choice(MODALITIES), help="Modality of every query row."
)
@click.option(
    "--gallery-modality", type=click.Choice(MODALITIES), help="Modality of every gallery row."
)
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default="generic",
    show_default=True,
    help="Modality from the dataset's cameras (sysu-mm01: 3, 6 infrared; regdb: 1 visible, "
    "2 infrared) for a side without --*-modality or a modality array; also the dump's "
    "dataset attribute when image paths are given.",
)
@click.option(
    "--query-paths",
    type=click.Path(dir_okay=False),
    help="Text file: one image path per query row (relative to the dataset root).",
)
@click.option(
    "--gallery-paths",
    type=click.Path(dir_okay=False),
    help="Text file: one image path per gallery row.",
)
@click.option("--model", help="The model's name in tables (default: the first source's stem).")
@click.option("--description", default="", help="Free text stored in the dump.")
@run_metadata_options
def import_command(
    out: str,
    sources: tuple[str, ...],
    mapping: tuple[str, ...],
    query_modality: str | None,
    gallery_modality: str | None,
    dataset: str,
    query_paths: str | None,
    gallery_paths: str | None,
    model: str | None,
    description: str,
    seed: int | None,
    run: str | None,
    selection: str | None,
    trained_on: str | None,
) -> None:
    """Write the dump OUT from features in SOURCES (.mat, .npy, a folder of .npy, .npz, .pt).

    The arrays are found by the layumi / DEEN-LLCM names query_f, query_label, query_cam,
    gallery_f, gallery_label, gallery_cam (optional query_modality, gallery_modality;
    0 visible, 1 infrared), or as --map says. A .npy file's array is named by its file
    stem (query_f.npy). Query and gallery rows become one pool; duplicated rows (same path,
    or identical features, pid and camera) are dropped, keeping the first copy.

    \b
      vireid-bench import sysu.h5 feats.mat --dataset sysu-mm01
      vireid-bench import m.h5 q.npz --query-modality infrared --gallery-modality visible
      vireid-bench import m.h5 feats/ --map query_f=q_feat --map query_label=q_ids ...
    """
    from pathlib import Path

    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.io.dump import write_dump
    from vireid_bench.io.importers import build_pool, parse_mapping, read_paths, read_sources

    fields = parse_mapping(mapping)
    arrays = read_sources(sources)
    cameras, camera_problem = camera_modality(dataset)
    flags = {
        side: value
        for side, value in (("query", query_modality), ("gallery", gallery_modality))
        if value is not None
    }
    paths = {
        side: (file_name, read_paths(file_name))
        for side, file_name in (("query", query_paths), ("gallery", gallery_paths))
        if file_name is not None
    }
    pool = build_pool(
        arrays,
        mapping=fields,
        modality=flags,
        camera_modality=cameras,
        camera_modality_problem=camera_problem,
        paths=paths,
        where=", ".join(sources),
    )
    if pool.duplicates:
        shown = "; ".join(d.describe() for d in pool.duplicates[:SHOWN_DUPLICATES])
        more = len(pool.duplicates) - SHOWN_DUPLICATES
        tail = f"; and {more} more" if more > 0 else ""
        click.echo(
            f"warning: dropped {len(pool.duplicates)} duplicate row(s), keeping the first "
            f"copy: {shown}{tail}",
            err=True,
        )
    written_dataset = dataset
    if dataset != "generic" and pool.paths is None:
        written_dataset = "generic"
        click.echo(
            f"warning: no image paths (--query-paths/--gallery-paths): the dump's dataset is "
            f"'generic', not '{dataset}' (the {dataset} convention samples galleries from "
            "paths); every image of the query modality is a query, the pool its gallery",
            err=True,
        )
    n_rows = pool.pid.shape[0]
    summary = (
        f"imported by vireid-bench from {', '.join(Path(s).name for s in sources)}: "
        f"{pool.n_query} query rows ({pool.modality_source['query']}), "
        f"{pool.n_gallery} gallery rows ({pool.modality_source['gallery']}), "
        f"{len(pool.duplicates)} duplicate(s) dropped"
    )
    target = write_dump(
        out,
        features=pool.features,
        pid=pool.pid,
        cam=pool.cam,
        modality=pool.modality,
        paths=pool.paths,
        dataset=written_dataset,
        model=model or Path(sources[0]).stem,
        description=description or summary,
        **run_metadata(seed=seed, run=run, selection=selection, trained_on=trained_on),
    )
    n_infrared = int((pool.modality == 1).sum())
    click.echo(
        f"wrote {target}: {n_rows} images ({n_rows - n_infrared} visible, {n_infrared} "
        f"infrared), {len(set(pool.pid.tolist()))} ids; {summary.split(': ', 1)[1]}",
        err=True,
    )
