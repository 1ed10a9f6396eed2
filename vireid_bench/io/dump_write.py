"""Writing a feature dump: :func:`write_dump`.

The arrays are validated with the reader's checks (:mod:`~vireid_bench.io.dump_validate`)
and, when stored as float16, checked again as stored. The file is written to an exclusive
temporary file beside the target, with the mode a new file gets under the umask
(``0o666 & ~umask``), and renamed into place: an interrupted write never leaves a
half-written dump under the final name.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vireid_bench.errors import DumpError
from vireid_bench.io.dump_format import FORMAT_VERSION, PROTOCOL_VERSION, SELECTIONS, FeatureSplit
from vireid_bench.io.dump_validate import (
    check_stored_features,
    dump_recipe,
    resolve_feature_names,
    validate_split,
)
from vireid_bench.io.recipe import DistanceRecipe


def _write_split(group, split: FeatureSplit) -> None:
    """Write one validated split's datasets into an open HDF5 group."""
    import h5py

    # Fletcher-32 checksums: a dump corrupted on disk fails to load instead of being scored.
    features_group = group.create_group("features")
    for name, array in split.features.items():
        features_group.create_dataset(name, data=array, fletcher32=True)
    group.create_dataset("pid", data=split.pid, fletcher32=True)
    group.create_dataset("cam", data=split.cam, fletcher32=True)
    group.create_dataset("modality", data=split.modality.astype(np.uint8), fletcher32=True)
    if split.path is not None:
        group.create_dataset(
            "path",
            data=[str(p) for p in split.path],
            dtype=h5py.string_dtype("utf-8"),  # variable length: HDF5 allows no filter
        )


def _validated_splits(
    source: str,
    features: np.ndarray | Mapping[str, np.ndarray] | None,
    pid: object,
    cam: object,
    modality: object,
    paths: object | None,
    trials: Sequence[FeatureSplit] | None,
) -> list[FeatureSplit]:
    """Validate the one split given as arrays, or every split of ``trials``."""
    if trials is not None:
        if features is not None or pid is not None:
            raise DumpError(source, "trials", "give either trials or one split's arrays, not both")
        if not trials:
            raise DumpError(source, "trials", "no trial split given")
        splits = [
            validate_split(
                source,
                features=s.features,
                pid=s.pid,
                cam=s.cam,
                modality=s.modality,
                path=s.path,
                prefix=f"trials/{k}/",
            )
            for k, s in enumerate(trials)
        ]
    else:
        for name, value in (
            ("features", features),
            ("pid", pid),
            ("cam", cam),
            ("modality", modality),
        ):
            if value is None:
                raise DumpError(source, name, "missing")
        feature_map = features if isinstance(features, Mapping) else {"default": features}
        splits = [
            validate_split(
                source, features=feature_map, pid=pid, cam=cam, modality=modality, path=paths
            )
        ]
    names = list(splits[0].features)
    for k, split in enumerate(splits[1:], start=1):
        if sorted(split.features) != sorted(names):
            raise DumpError(source, f"trials/{k}/features", "feature sets differ from trials/0's")
    return splits


def _as_stored(source: str, splits: list[FeatureSplit], prefixes: list[str]) -> list:
    """Cast the features to float16 and check the values that will be stored."""
    stored = []
    for split, prefix in zip(splits, prefixes, strict=True):
        features = {}
        for name, array in split.features.items():
            with np.errstate(over="ignore"):  # overflow to Inf is reported just below
                features[name] = array.astype(np.float16)
            check_stored_features(source, f"{prefix}features/{name}", features[name])
        stored.append(
            FeatureSplit(
                features=features,
                pid=split.pid,
                cam=split.cam,
                modality=split.modality,
                path=split.path,
            )
        )
    return stored


def _temporary_file(target: Path) -> Path:
    """Create an empty, exclusive temporary file beside ``target`` (mode 0o666 & ~umask)."""
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise DumpError(str(target), "", "cannot create a temporary file beside it")


def _prepare_folder(source: str, target: Path, parents: bool) -> None:
    """Refuse a missing parent folder unless ``parents``; then create it."""
    folder = target.parent
    if folder.is_dir():
        return
    if folder.exists():
        raise DumpError(source, "", f"cannot be written: {folder} is not a folder")
    if not parents:
        reason = f"cannot be written: folder {folder} does not exist (parents=True creates it)"
        raise DumpError(source, "", reason)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = f"cannot create folder {folder} ({exc.strerror or exc})"
        raise DumpError(source, "", reason) from exc


def run_attributes(
    source: str,
    *,
    seed: object = None,
    run: object = None,
    selection: object = None,
    trained_on: object = None,
    synthetic: object = None,
) -> dict[str, object]:
    """Check the optional run metadata and return the root attributes to write.

    Raises:
        DumpError: ``seed`` not an integer, ``selection`` not one of :data:`SELECTIONS`,
            ``run``/``trained_on`` not strings, ``synthetic`` not a boolean.
    """
    attributes: dict[str, object] = {}
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise DumpError(source, "seed", f"must be an integer, got {seed!r}")
        attributes["seed"] = int(seed)
    if selection is not None:
        if selection not in SELECTIONS:
            raise DumpError(
                source,
                "selection",
                f"unknown checkpoint selection {selection!r} (valid: {', '.join(SELECTIONS)})",
            )
        attributes["selection"] = str(selection)
    for name, value in (("run", run), ("trained_on", trained_on)):
        if value is not None:
            if not isinstance(value, str):
                raise DumpError(source, name, f"must be a string, got {value!r}")
            attributes[name] = value
    if synthetic is not None:
        if not isinstance(synthetic, bool | np.bool_):
            raise DumpError(source, "synthetic", f"must be a boolean, got {synthetic!r}")
        attributes["synthetic"] = bool(synthetic)
    return attributes


def write_dump(
    path: str | os.PathLike,
    *,
    features: np.ndarray | Mapping[str, np.ndarray] | None = None,
    pid: object = None,
    cam: object = None,
    modality: object = None,
    paths: object | None = None,
    trials: Sequence[FeatureSplit] | None = None,
    dataset: str = "generic",
    model: str = "unknown",
    description: str = "",
    default_features: str | None = None,
    cross_features: str | None = None,
    same_features: str | None = None,
    float16: bool = False,
    protocol_version: str | None = None,
    parents: bool = False,
    seed: int | None = None,
    run: str | None = None,
    selection: str | None = None,
    trained_on: str | None = None,
    synthetic: bool | None = None,
    distance_recipe: str | DistanceRecipe | None = None,
) -> Path:
    """Validate arrays and write them as a v1 feature dump; return the written path.

    Either give one split (``features``, ``pid``, ``cam``, ``modality``, optional
    ``paths``) or several as ``trials`` (a sequence of :class:`FeatureSplit`, written as
    ``trials/<k>`` groups). ``features`` may be a single array, stored as the set
    ``"default"``, or a mapping of set names to arrays.

    The file is written to an exclusive temporary name beside ``path`` and renamed into
    place, so an interrupted write never leaves a half-written dump under the final name.
    It gets the mode any new file gets (``0o666`` less the umask).

    Args:
        float16: store features as float16 (half the size; scored as float32). The stored
            values are checked: features beyond float16's range (±65504) are refused.
        protocol_version: recorded as the ``protocol_version`` root attribute (default:
            this toolkit's :data:`PROTOCOL_VERSION`).
        parents: create the parent folder when missing (otherwise a missing folder is an
            error).
        seed, run, selection, trained_on, synthetic: optional run metadata, written as root
            attributes of the same names when given (docs/dump-format.md): the training
            seed (an integer), free text naming the run, how the checkpoint was chosen
            (``test``, ``val`` or ``last``), the training dataset and split, whether the
            features come from synthetic data.
        distance_recipe: a per-pair distance recipe (text or parsed), validated against
            the feature sets and written canonically as the ``distance_recipe`` root
            attribute (docs/dump-format.md).

    Raises:
        DumpError: when the arrays do not form a valid dump (the same checks as
            :func:`~vireid_bench.io.dump_read.load_dump`, on the values as stored), or the
            folder is missing, naming ``path`` and the field. Nothing is written then.
    """
    import h5py

    target = Path(path)
    source = str(target)
    metadata = run_attributes(
        source,
        seed=seed,
        run=run,
        selection=selection,
        trained_on=trained_on,
        synthetic=synthetic,
    )
    splits = _validated_splits(source, features, pid, cam, modality, paths, trials)
    names = list(splits[0].features)
    default, cross, same = resolve_feature_names(
        source, names, default_features, cross_features, same_features
    )
    recipe = dump_recipe(source, names, distance_recipe)
    prefixes = [f"trials/{k}/" for k in range(len(splits))] if trials is not None else [""]
    if float16:
        splits = _as_stored(source, splits, prefixes)
    _prepare_folder(source, target, parents)
    tmp = _temporary_file(target)
    try:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["vireid_bench_format"] = FORMAT_VERSION
            handle.attrs["dataset"] = dataset
            handle.attrs["model"] = model
            if description:
                handle.attrs["description"] = description
            handle.attrs["default_features"] = default
            handle.attrs["cross_features"] = cross
            handle.attrs["same_features"] = same
            handle.attrs["protocol_version"] = protocol_version or PROTOCOL_VERSION
            if recipe is not None:
                handle.attrs["distance_recipe"] = recipe.text
            for key, value in metadata.items():
                handle.attrs[key] = value
            if trials is not None:
                trials_group = handle.create_group("trials")
                for k, split in enumerate(splits):
                    _write_split(trials_group.create_group(str(k)), split)
            else:
                _write_split(handle, splits[0])
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target
