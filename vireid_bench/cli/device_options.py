"""``--device`` / ``--tf32``: the torch scoring backend's options, shared by ``check`` and
``leaderboard`` (``score`` declares its own)."""

from __future__ import annotations

from collections.abc import Callable

import click

from vireid_bench.cli.common import InputError

DEVICE_CHOICES = ("cpu", "cuda", "auto")


def device_options(command: Callable) -> Callable:
    """Add ``--device`` and ``--tf32`` to a command that scores feature dumps."""
    command = click.option(
        "--tf32", is_flag=True, help="With --device cuda: allow TF32 matmuls (faster)."
    )(command)
    return click.option(
        "--device",
        type=click.Choice(DEVICE_CHOICES),
        help="Score feature dumps with torch on this device (auto: cuda when available); "
        "same numbers as the default Numba path. Needs torch.",
    )(command)


def device_scoring_options(device: str | None, tf32: bool, scheduler: str) -> dict[str, object]:
    """The keyword arguments of ``evaluate`` for ``--device`` / ``--tf32`` (none without).

    Raises:
        InputError: ``--device`` with ``--scheduler dask``, or ``--tf32`` without ``--device``.
    """
    if device is None:
        if tf32:
            raise InputError("--tf32: needs --device cuda (or auto)")
        return {}
    if scheduler != "local":
        raise InputError("--device: not available with --scheduler dask yet")
    return {"device": device, "tf32": tf32}
