"""Query sets and gallery pools: the dataset conventions that feed the kernel.

A *convention* turns a dump and a preset into evaluation plans. Each plan is one trial: the
query images and the gallery *pool* (in pool order, which breaks distance ties), both as
indices into one split of the dump. The preset's exclusion clauses are applied later,
per query, inside the kernel; a convention never filters by the preset's rules itself.

The ``generic`` convention (used for ``dataset = "generic"`` and for any dataset name with
no registered convention): the queries are every image of the query modality, the pool is
every image of the split in dump order, one plan per split (a dump with ``trials/<k>``
groups gives one plan per group). Dataset conventions (SYSU-MM01, RegDB, LLCM) register
themselves with :func:`register_convention` and sample their pools per trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vireid_bench.dump import FeatureDump, FeatureSplit
from vireid_bench.protocol import Preset


@dataclass(frozen=True)
class EvaluationPlan:
    """One trial of one (preset, variant, query modality).

    Attributes:
        split: index of the dump split the indices refer to.
        trial: trial number (0-based), for reporting.
        query_idx: int64 [m], the queries (indices into the split).
        pool_idx: int64 [n], the gallery pool in pool order (indices into the split).
    """

    split: int
    trial: int
    query_idx: np.ndarray
    pool_idx: np.ndarray


class Convention:
    """The generic convention; dataset conventions subclass it.

    Class attributes:
        name: the ``dataset`` attribute value it serves.
        default_cmc: CMC convention for presets whose ``cmc`` is ``"dataset"``.
        colocated_cameras: groups of camera ids that share a view; with a preset's
            ``colocated_cameras`` they count as the same camera.
    """

    name = "generic"
    default_cmc = "image"
    colocated_cameras: tuple[tuple[int, ...], ...] = ()

    def variants(self, preset: Preset) -> list[str]:
        """Return the variants a preset is reported in (e.g. SYSU ``all``/``indoor``).

        The generic convention has a single unnamed variant ``""``.
        """
        return [""]

    def camera_keys(self, cam: np.ndarray, use_colocated: bool) -> np.ndarray:
        """Return int64 camera keys: co-located cameras share a key when asked for."""
        keys = np.asarray(cam, dtype=np.int64).copy()
        if use_colocated:
            for group in self.colocated_cameras:
                keys[np.isin(cam, group)] = min(group)
        return keys

    def not_applicable(self, dump: FeatureDump, preset: Preset, query_modality: int) -> str | None:
        """Return why the preset does not apply to this dump, or None when it does.

        Generic rule: presets that need several cameras per modality (Mix-Cam, Mix-Cam-ID)
        do not apply when the query modality's images come from a single camera.
        """
        if preset.requires_multiple_cameras_per_modality:
            for split in dump.splits:
                cams = np.unique(split.cam[split.modality == query_modality])
                if cams.size == 1:
                    return "one camera per modality"
        return None

    def plans(
        self,
        dump: FeatureDump,
        preset: Preset,
        variant: str,
        query_modality: int,
        trials: int | None = None,
    ) -> list[EvaluationPlan]:
        """Return the evaluation plans (one per trial) for a preset and query modality.

        Args:
            trials: use only the first ``trials`` trials (None: all of them).
        """
        splits: Sequence[FeatureSplit] = dump.splits
        count = len(splits) if trials is None else min(trials, len(splits))
        return [
            EvaluationPlan(
                split=k,
                trial=k,
                query_idx=np.flatnonzero(splits[k].modality == query_modality).astype(np.int64),
                pool_idx=np.arange(splits[k].n_images, dtype=np.int64),
            )
            for k in range(count)
        ]


_REGISTRY: dict[str, Convention] = {}


def register_convention(convention: Convention) -> Convention:
    """Register a dataset convention under its ``name``; return it."""
    _REGISTRY[convention.name] = convention
    return convention


def get_convention(dataset: str) -> Convention:
    """Return the convention registered for ``dataset``, or the generic one."""
    _load_dataset_conventions()
    return _REGISTRY.get(dataset, _GENERIC)


def registered_conventions() -> dict[str, Convention]:
    """Return every registered convention by dataset name (generic included)."""
    _load_dataset_conventions()
    return {"generic": _GENERIC, **_REGISTRY}


def _load_dataset_conventions() -> None:
    """Import the dataset modules so that they register their conventions."""
    try:
        import vireid_bench.datasets  # noqa: F401
    except ModuleNotFoundError as exc:  # the datasets package is optional at this layer
        if exc.name != "vireid_bench.datasets":
            raise


_GENERIC = Convention()
