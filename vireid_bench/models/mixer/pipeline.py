"""The training data path and optional compilation: what keeps an accelerator fed.

:func:`train_loader` builds the :class:`torch.utils.data.DataLoader` that ``mixer train``
(and ``benchmarks/bench_mixer.py``) iterate: the identity-balanced batch sampler,
``train.workers`` loader processes kept alive across epochs (persistent workers), each
preparing ``train.prefetch_factor`` batches ahead, pinned host memory when the model runs
on CUDA (so ``.to(device, non_blocking=True)`` copies asynchronously), and, with
``train.cache_images``, the decoded images of the training list held in memory up to
``train.cache_limit_mb`` MiB (decoding JPEGs is the data path's main cost on small
datasets; the random augmentation still runs per batch, so a cached run draws exactly the
same batches as an uncached one).

:func:`compile_model` wraps the model in :func:`torch.compile` (``train.compile``);
:func:`compile_failure` turns a compilation error into the one-line error of the command
line. A failed compilation stops the run: there is no silent fall back to eager mode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from vireid_bench.models.mixer.config import MixerInputError
from vireid_bench.models.mixer.data import IdentityBalancedSampler, ImageListDataset, collate

MIB = 2**20


@dataclass(frozen=True)
class CacheReport:
    """How much of a training list the decoded-image cache holds."""

    cached: int
    total: int
    bytes_used: int
    limit_bytes: int

    def line(self) -> str:
        """The notice ``mixer train`` prints."""
        note = "" if self.cached == self.total else "; the rest is read from disk"
        return (
            f"image cache: {self.cached} of {self.total} decoded images in memory "
            f"({self.bytes_used / MIB:.1f} MiB, limit {self.limit_bytes / MIB:.0f} MiB{note})"
        )


def train_loader(
    data: ImageListDataset,
    sampler: IdentityBalancedSampler,
    train_config: Mapping[str, Any],
    *,
    pin_memory: bool,
) -> tuple[torch.utils.data.DataLoader, CacheReport | None]:
    """The training loader of ``data`` and, with ``cache_images``, the cache's report.

    Args:
        data: the training images (its cache is filled here when asked for).
        sampler: yields the batches (lists of indices).
        train_config: the ``[train]`` section (``workers``, ``prefetch_factor``,
            ``cache_images``, ``cache_limit_mb``).
        pin_memory: page-locked batches (CUDA only; pointless on CPU).
    """
    report = None
    if train_config["cache_images"]:
        limit = train_config["cache_limit_mb"] * MIB
        cached, used = data.fill_cache(limit)
        report = CacheReport(cached, len(data), used, limit)
    workers = train_config["workers"]
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"persistent_workers": True, "prefetch_factor": train_config["prefetch_factor"]}
    loader = torch.utils.data.DataLoader(
        data,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        **extra,
    )
    return loader, report


def compile_model(model: torch.nn.Module, backend: str) -> Callable[..., Any]:
    """``torch.compile(model, backend=backend)``; an unknown backend is a one-line error.

    Compilation itself happens at the first call (and again when shapes change); wrap
    those calls with :func:`compile_failure`.
    """
    try:
        return torch.compile(model, backend=backend)
    except Exception as exc:  # noqa: BLE001 - any failure becomes the one-line error
        raise compile_failure(exc, backend) from exc


def is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from torch.compile (Dynamo tracing or a backend)."""
    from torch._dynamo.exc import TorchDynamoException

    return isinstance(exc, TorchDynamoException)


def compile_failure(exc: BaseException, backend: str) -> MixerInputError:
    """The one-line error for a compilation that failed."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # Dynamo prefixes backend failures with "backend='x' raised:"; show the cause too
    detail = " ".join(lines[:2])[:300] if lines else type(exc).__name__
    return MixerInputError(
        f"--compile: torch.compile (backend {backend}) failed: {type(exc).__name__}: "
        f"{detail}; train without --compile"
    )
