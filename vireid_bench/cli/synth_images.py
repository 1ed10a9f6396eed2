"""``vireid-bench synth-images``: synthetic visible/infrared person images in a dataset layout."""

from __future__ import annotations

import click

from vireid_bench.cli.common import ToolkitCommand
from vireid_bench.synth.defaults import LAYOUTS, SYNTH_IMAGE_DEFAULTS, SYNTH_IMAGE_PRESETS


def _parse_size(ctx, param, value: str | None) -> tuple[int, int] | None:  # noqa: ARG001
    if value is None:
        return None
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
@click.option(
    "--preset",
    type=click.Choice(sorted(SYNTH_IMAGE_PRESETS)),
    help="Packaged settings of --ids, --per-cam, --size, --shared, --nuisance "
    "(options given explicitly override it). 'learnable': 64 ids, 4 per camera, 64x32, "
    "shared 0.6, nuisance 0.5, calibrated so that a small baseline learns part of the "
    "modality gap (docs/mixer.md).",
)
@click.option("--ids", type=click.IntRange(min=2), help="Number of identities.  [default: 40]")
@click.option(
    "--per-cam",
    type=click.IntRange(min=1),
    help="Images per identity and camera (RegDB: per identity and modality).  [default: 4]",
)
@click.option(
    "--size",
    callback=_parse_size,
    help="Image size HEIGHTxWIDTH.  [default: 128x64]",
)
@click.option(
    "--shared",
    type=click.FloatRange(0.0, 1.0),
    help="Cross-modal cue strength: how far each part's infrared grey level follows its "
    "visible luminance (0: not at all, only the geometry is shared).  [default: 0]",
)
@click.option(
    "--nuisance",
    type=click.FloatRange(0.0, 10.0),
    help="Scale of the camera and per-image nuisances (viewpoint, lighting, jitter, "
    "clutter, noise; 0: none).  [default: 1]",
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
    preset: str | None,
    ids: int | None,
    per_cam: int | None,
    size: tuple[int, int] | None,
    shared: float | None,
    nuisance: float | None,
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
    settings = dict(SYNTH_IMAGE_DEFAULTS)
    settings.update(SYNTH_IMAGE_PRESETS.get(preset or "", {}))
    given = {"ids": ids, "per_cam": per_cam, "size": size, "shared": shared, "nuisance": nuisance}
    settings.update({key: value for key, value in given.items() if value is not None})
    ids = settings["ids"]
    images = write_synthetic_dataset(
        out_dir, layout, test_fraction=test_fraction, seed=seed, **settings
    )
    n_ir = sum(image.modality for image in images)
    click.echo(
        f"wrote {len(images)} images ({len(images) - n_ir} visible, {n_ir} infrared) "
        f"of {ids} identities in the {layout} layout under {out_dir}",
        err=True,
    )
