"""``vireid-bench synth-images``: synthetic visible/infrared person images in a dataset layout."""

from __future__ import annotations

import click

from vireid_bench.cli.common import ToolkitCommand
from vireid_bench.synth.defaults import LAYOUTS


def _parse_size(ctx, param, value: str) -> tuple[int, int]:  # noqa: ARG001 - click callback
    try:
        height, width = (int(v) for v in value.lower().split("x"))
    except ValueError as exc:
        raise click.BadParameter("expected HEIGHTxWIDTH, e.g. 128x64") from exc
    if height < 16 or width < 8:
        raise click.BadParameter("images must be at least 16x8")
    return height, width


@click.command("synth-images", cls=ToolkitCommand)
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    required=True,
    help="Directory layout and split files of this dataset.",
)
@click.option("--ids", type=click.IntRange(min=2), default=40, show_default=True)
@click.option(
    "--per-cam",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Images per identity and camera (RegDB: per identity and modality).",
)
@click.option(
    "--size",
    default="128x64",
    show_default=True,
    callback=_parse_size,
    help="Image size HEIGHTxWIDTH.",
)
@click.option(
    "--test-fraction",
    type=click.FloatRange(0.05, 0.95),
    default=0.5,
    show_default=True,
    help="Share of identities in the test split.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def synth_images_command(
    out_dir: str,
    layout: str,
    ids: int,
    per_cam: int,
    size: tuple[int, int],
    test_fraction: float,
    seed: int,
) -> None:
    """Render a synthetic visible/infrared person dataset in a real dataset's layout.

    Colour identifies a person only within the visible modality, garment emissivity only
    within the infrared one; body shape, hair, sleeves, bag and pattern geometry are shared.
    """
    # lazy: numpy and Pillow load only when the command runs (fast --help)
    from vireid_bench.synth.images import import_pillow, write_synthetic_dataset

    import_pillow()
    images = write_synthetic_dataset(
        out_dir,
        layout,
        ids=ids,
        per_cam=per_cam,
        size=size,
        test_fraction=test_fraction,
        seed=seed,
    )
    n_ir = sum(image.modality for image in images)
    click.echo(
        f"wrote {len(images)} images ({len(images) - n_ir} visible, {n_ir} infrared) "
        f"of {ids} identities in the {layout} layout under {out_dir}",
        err=True,
    )
