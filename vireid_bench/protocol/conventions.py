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

Dataset presets. A dataset may also name its community protocols (``sysu-all-single``,
``regdb-t2v``, ``llcm-v2i``, ...) with :func:`register_dataset_preset`. Such a name means
"this setting, sampled as that dataset's protocol says, for these query modalities":
``NAME`` alone is the ``cross`` setting, ``NAME:SETTING`` any builtin setting (e.g.
``sysu-all-multi:mix-id``) and ``NAME:all`` every setting. :func:`resolve_dataset_preset`
turns such a name into :class:`~vireid_bench.protocol.presets.Preset` objects (called by
:func:`~vireid_bench.protocol.presets.resolve_presets` for names it does not know); the dataset's
convention reads the sampling variant back from the preset's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import FeatureDump, FeatureSplit
from vireid_bench.protocol.presets import Preset


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


@dataclass(frozen=True)
class DatasetPreset:
    """A named community protocol of one dataset (e.g. ``sysu-all-multi``).

    Attributes:
        name: the protocol name users give (``--protocol sysu-all-multi``).
        dataset: the dump ``dataset`` attribute it belongs to (``"sysu-mm01"``).
        variant: the sampling variant its convention reports it as (``"all-multi"``).
        query_modalities: the query modalities it reports.
        description: one sentence for listings.
    """

    name: str
    dataset: str
    variant: str
    query_modalities: tuple[str, ...]
    description: str


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

        Raises:
            ProtocolError: for a dataset preset of another dataset (``sysu-all-single`` on
                a generic dump).
        """
        check_dataset_preset(preset, self.name)
        return [""]

    def adapt_preset(self, preset: Preset) -> Preset:
        """Return the preset as this dataset's community evaluation applies it.

        A dataset convention may replace a setting's exclusion clauses by the rule its
        community code uses (LLCM's cross-modal rule removes only the query person's
        images from the query's camera). The name, and so the reported row, stays the
        same. The generic convention returns the preset unchanged.
        """
        return preset

    def absent_metrics(self, variant: str) -> tuple[str, ...]:
        """Metrics a variant's convention does not define (its rows report them as absent,
        never as a number). The generic convention defines every metric."""
        return ()

    def direction(self, preset: Preset, query_modality: int) -> str:
        """What a row's queries and gallery really are, when its query modality (the
        setting's name) does not say it; ``""`` when it does (the generic rule)."""
        return ""

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
_DATASET_PRESETS: dict[str, DatasetPreset] = {}


def register_convention(convention: Convention) -> Convention:
    """Register a dataset convention under its ``name``; return it."""
    _REGISTRY[convention.name] = convention
    return convention


def get_convention(dataset: str) -> Convention:
    """Return the convention registered for ``dataset``, or the generic one."""
    return _REGISTRY.get(dataset, _GENERIC)


def registered_conventions() -> dict[str, Convention]:
    """Return every registered convention by dataset name (generic included)."""
    return {"generic": _GENERIC, **_REGISTRY}


def register_dataset_preset(entry: DatasetPreset) -> DatasetPreset:
    """Register a dataset preset under its ``name``; return it."""
    if ":" in entry.name:
        raise ValueError(f"dataset preset name {entry.name!r} must not contain ':'")
    _DATASET_PRESETS[entry.name] = entry
    return entry


def dataset_presets() -> dict[str, DatasetPreset]:
    """Return every registered dataset preset by name, in registration order.

    Complete once :mod:`vireid_bench.protocol.registry` is imported (importing any module
    of :mod:`vireid_bench.protocol` does that).
    """
    return dict(_DATASET_PRESETS)


def split_dataset_preset(name: str) -> tuple[DatasetPreset, str] | None:
    """Return (dataset preset, setting name) for ``NAME`` or ``NAME:SETTING``, else None.

    ``NAME`` alone means the ``cross`` setting.
    """
    base, _, setting = name.partition(":")
    entry = dataset_presets().get(base)
    if entry is None:
        return None
    return entry, (setting or "cross")


def base_setting(preset: Preset) -> str:
    """Return the builtin setting a preset stands for (``"cross"`` for ``sysu-all-single``)."""
    found = split_dataset_preset(preset.name)
    return preset.name if found is None else found[1]


def check_dataset_preset(preset: Preset, dataset: str) -> DatasetPreset | None:
    """Return the preset's dataset entry (None for a plain setting).

    Raises:
        ProtocolError: when the preset belongs to another dataset than ``dataset``.
    """
    found = split_dataset_preset(preset.name)
    if found is None:
        return None
    entry = found[0]
    if entry.dataset != dataset:
        raise ProtocolError(
            f"protocol {preset.name!r} is for {entry.dataset!r} dumps, not {dataset!r} ones"
        )
    return entry


def resolve_dataset_preset(name: str, settings: Mapping[str, Preset]) -> list[Preset] | None:
    """Turn ``NAME``, ``NAME:SETTING`` or ``NAME:all`` into presets; None if NAME is unknown.

    Each preset is the builtin setting with the dataset preset's query modalities (those
    the setting reports too) and the name ``NAME:SETTING`` (``NAME`` for cross).

    Args:
        settings: the builtin settings by name
            (:func:`~vireid_bench.protocol.presets.builtin_presets`).

    Raises:
        ProtocolError: for an unknown setting after the colon.
    """
    base, colon, setting = name.partition(":")
    entry = dataset_presets().get(base)
    if entry is None:
        return None
    if colon and setting == "all":
        chosen = list(settings)
    elif not colon or setting == "cross":
        chosen = ["cross"]
    elif setting in settings:
        chosen = [setting]
    else:
        raise ProtocolError(
            f"unknown setting {setting!r} in protocol {name!r} "
            f"(valid after ':': all, {', '.join(settings)})"
        )
    presets = []
    for setting_name in chosen:
        preset = settings[setting_name]
        modalities = tuple(m for m in entry.query_modalities if m in preset.query_modalities)
        if not modalities:
            continue
        presets.append(
            dataclasses.replace(
                preset,
                name=base if setting_name == "cross" else f"{base}:{setting_name}",
                description=f"{preset.description} [{entry.description}]",
                query_modalities=modalities,
            )
        )
    return presets


_GENERIC = Convention()
