"""``vireid-bench mixer train|extract``: the MixER reference model's command line.

This module imports neither torch nor the model code at import time, so registering
:data:`mixer_group` in the main command group keeps ``vireid-bench --help`` working without
the ``model`` extra; a command run without torch prints one line naming the ``pip
install`` that fixes it and exits with code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps

import click

from vireid_bench.cli.common import InputError, ToolkitCommand, ToolkitSubgroup
from vireid_bench.cli.run_options import run_metadata, run_metadata_options
from vireid_bench.models.mixer.config import BACKBONES, DATASETS


def _one_line_errors(function: Callable) -> Callable:
    """Turn missing torch and the model code's ValueErrors into one-line messages, exit 2.

    Everything else (toolkit errors, OSErrors, interrupts) goes through the error contract
    of :class:`ToolkitCommand`.
    """

    @wraps(function)
    def wrapper(*args, **kwargs):
        # lazy: heavy modules load only when the command runs (fast --help)
        from vireid_bench.models import TORCH_HINT, require_torch

        try:
            require_torch()
        except ImportError as exc:
            raise InputError(TORCH_HINT) from exc
        try:
            return function(*args, **kwargs)
        except (ValueError, FileNotFoundError, FileExistsError) as exc:
            raise InputError(str(exc).splitlines()[0] if str(exc) else repr(exc)) from exc

    return wrapper


def _parse_size(ctx, param, value):  # noqa: ARG001 - click callback
    if value is None:
        return None
    try:
        height, width = (int(v) for v in value.lower().split("x"))
    except ValueError as exc:
        raise click.BadParameter("expected HEIGHTxWIDTH, e.g. 288x144") from exc
    return height, width


@click.group("mixer", cls=ToolkitSubgroup)
def mixer_group() -> None:
    """MixER reference model: train it, extract a feature dump, then score the dump.

    \b
      vireid-bench mixer train --dataset sysu-mm01 --root DATA --out runs/mixer
      vireid-bench mixer extract --checkpoint runs/mixer/checkpoints/last.pt \\
          --dataset sysu-mm01 --root DATA --out mixer.h5
      vireid-bench score mixer.h5 --protocol all
    """


_dataset_option = click.option(
    "--dataset", type=click.Choice(DATASETS), required=True, help="Dataset layout of --root."
)
_root_option = click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False),
    required=True,
    help="Dataset root directory.",
)
_device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N.",
)


@mixer_group.command("train", cls=ToolkitCommand)
@_dataset_option
@_root_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option(
    "--config",
    "config_path",
    help="TOML file (or packaged name: synth-small, synth-baseline) overriding the "
    "dataset's defaults.",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Override optim.epochs.")
@click.option("--batch-ids", type=click.IntRange(min=2), help="Identities per batch (P).")
@click.option("--num-pos", type=click.IntRange(min=1), help="Images per identity and modality (K).")
@click.option("--iters", type=click.IntRange(min=1), help="Batches per epoch (default: AGW rule).")
@click.option("--backbone", type=click.Choice(BACKBONES), help="Override model.backbone.")
@click.option("--size", callback=_parse_size, help="Input HEIGHTxWIDTH (default 288x144).")
@click.option(
    "--pretrained",
    type=click.Path(exists=True, dir_okay=False),
    help="Local torchvision ResNet state dict (.pth); without it: random weights.",
)
@click.option(
    "--trial", type=click.IntRange(1, 10), default=1, show_default=True, help="RegDB split."
)
@click.option("--workers", type=click.IntRange(min=0), help="Data-loading processes.")
@click.option(
    "--prefetch",
    type=click.IntRange(min=1),
    help="Batches each loader process prepares ahead (train.prefetch_factor; workers > 0).",
)
@click.option(
    "--cache-images/--no-cache-images",
    default=None,
    help="Keep the decoded training images in memory, up to --cache-limit-mb "
    "(train.cache_images; small datasets).",
)
@click.option(
    "--cache-limit-mb",
    type=click.IntRange(min=1),
    help="Size limit of the image cache in MiB of decoded pixels (default 1024).",
)
@click.option(
    "--compile",
    "compile_model",
    is_flag=True,
    default=None,
    help="torch.compile the model (train.compile; backend: train.compile_backend). "
    "A failed compilation is an error, never a silent fall back.",
)
@click.option("--seed", type=int, help="Override train.seed.")
@_device_option
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override any config key, e.g. --set loss.lambda_m=0.2 (repeatable).",
)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoints/last.pt.")
@click.option(
    "--select",
    type=click.Choice(("last", "val", "test")),
    default="last",
    show_default=True,
    help="Checkpoint selection. last: the last epoch (checkpoints/last.pt). val: the "
    "epoch with the best mAP on SYSU-MM01's validation ids (sysu-val-all), kept as "
    "checkpoints/model_best.pt; those ids are then HELD OUT of training (train_id.txt "
    "only; otherwise SYSU-MM01 trains on train + val ids, as AGW does); RegDB and LLCM "
    "have no validation split. test: the best test mAP (optimistic; recorded as "
    "selection=test).",
)
@click.option(
    "--select-every",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --select val|test: evaluate every N epochs (and after the last).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_one_line_errors
def train_command(
    dataset: str,
    root: str,
    out: str,
    config_path: str | None,
    epochs: int | None,
    batch_ids: int | None,
    num_pos: int | None,
    iters: int | None,
    backbone: str | None,
    size: tuple[int, int] | None,
    pretrained: str | None,
    trial: int,
    workers: int | None,
    prefetch: int | None,
    cache_images: bool | None,
    cache_limit_mb: int | None,
    compile_model: bool | None,
    seed: int | None,
    device: str,
    settings: tuple[str, ...],
    resume: bool,
    select: str,
    select_every: int,
    quiet: bool,
) -> None:
    """Train MixER on a dataset's train split; checkpoints every epoch under --out.

    With --select val, the validation ids are held out of training and the best epoch
    on them is kept as checkpoints/model_best.pt ('mixer extract' from it records
    selection=val); see docs/mixer.md.
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.models.mixer.config import load_config, parse_override
    from vireid_bench.models.mixer.selection import check_select
    from vireid_bench.models.mixer.train import train

    overrides = [parse_override(s) for s in settings]
    flags = {
        ("optim", "epochs"): epochs,
        ("sampler", "batch_ids"): batch_ids,
        ("sampler", "num_pos"): num_pos,
        ("sampler", "iters_per_epoch"): iters,
        ("model", "backbone"): backbone,
        ("input", "height"): size[0] if size else None,
        ("input", "width"): size[1] if size else None,
        ("train", "workers"): workers,
        ("train", "prefetch_factor"): prefetch,
        ("train", "cache_images"): cache_images,
        ("train", "cache_limit_mb"): cache_limit_mb,
        ("train", "compile"): compile_model,
        ("train", "seed"): seed,
    }
    overrides += [{s: {k: v}} for (s, k), v in flags.items() if v is not None]
    config = load_config(dataset, config_path, overrides)
    check_select(select, dataset, select_every)
    scorer = None
    if select != "last":
        # lazy: the scoring engine only for a run that selects its checkpoint
        from vireid_bench.cli.mixer_selection import selection_scorer

        scorer = selection_scorer(
            select, dataset, root, config["input"], trial=trial, device=device
        )
    result = train(
        config,
        dataset,
        root,
        out,
        trial=trial,
        pretrained=pretrained,
        device=device,
        resume=resume,
        stream=None if quiet else sys.stderr,
        echo=lambda message: click.echo(message, err=True),
        select=select,
        scorer=scorer,
        select_every=select_every,
    )
    click.echo(
        f"trained {result.epochs_done} epoch(s); last loss {result.last_loss:.4f}; "
        f"{result.images_per_s:.1f} images/s; checkpoint {result.checkpoint}",
        err=True,
    )
    if result.best is not None:
        click.echo(
            f"best {select} mAP {result.best_value:.2f} at epoch {result.best_epoch}: "
            f"{result.best}",
            err=True,
        )


@mixer_group.command("extract", cls=ToolkitCommand)
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A 'mixer train' checkpoint (RUN/checkpoints/last.pt, or model_best.pt of a "
    "--select val|test run).",
)
@_dataset_option
@_root_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Dump to write (.h5).")
@click.option("--trial", type=click.IntRange(1, 10), help="RegDB split (default: training's).")
@click.option(
    "--split",
    type=click.Choice(("test", "val")),
    default="test",
    show_default=True,
    help="Images to extract: the test set, or SYSU-MM01's validation ids (score them "
    "with --protocol sysu-val-all).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--float16", is_flag=True, help="Store features as float16 (half the size).")
@click.option(
    "--name",
    help="Model name in the dump, followed by '@<config hash>' (default: MixER-<backbone>).",
)
@click.option(
    "--recipe",
    "recipe",
    type=click.Choice(["authors", "paper"]),
    default="authors",
    show_default=True,
    help="authors: record the authors' inference recipe (ContPartReid) as the dump's "
    "distance_recipe; paper: none (the paper's z_e across / z_f within policy only).",
)
@run_metadata_options
@_device_option
@click.option("--quiet", is_flag=True, help="No progress line.")
@_one_line_errors
def extract_command(
    checkpoint: str,
    dataset: str,
    root: str,
    out: str,
    trial: int | None,
    split: str,
    batch_size: int,
    workers: int,
    float16: bool,
    name: str | None,
    recipe: str,
    seed: int | None,
    run: str | None,
    selection: str | None,
    trained_on: str | None,
    device: str,
    quiet: bool,
) -> None:
    """Write a v1 feature dump (z_e, z_r, z_f; cross z_e, same z_f) of the test set
    (or, with --split val, of SYSU-MM01's validation ids).

    By default the dump also records the MixER authors' inference recipe
    ('vv: z_e; ii: 0.7*z_r + 0.3; vi: z_e', docs/mixer.md), which 'score' applies unless
    given '--recipe policy'; '--recipe paper' leaves it out.

    The dump records the run: its seed (the config's train.seed), run (the run folder's
    name), selection (the checkpoint's, 'last' for a plain 'mixer train' run) and
    trained_on (dataset, split and RegDB trial); the --seed/--run/--selection/--trained-on
    options override them.
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.models.mixer.extract import extract

    path = extract(
        checkpoint,
        dataset,
        root,
        out,
        trial=trial,
        device=device,
        batch_size=batch_size,
        workers=workers,
        float16=float16,
        name=name,
        stream=None if quiet else sys.stderr,
        metadata=run_metadata(seed=seed, run=run, selection=selection, trained_on=trained_on),
        split=split,
        authors_recipe=recipe == "authors",
    )
    click.echo(f"wrote {path}", err=True)
