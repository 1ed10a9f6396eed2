"""Reading a feature dump: :func:`load_dump`, lazy feature sets, a cheap size probe.

The reader opens the file read-only (:mod:`~vireid_bench.io.dump_open`), refuses what the
dump reads outside its file unless asked (:mod:`~vireid_bench.io.dump_links`), reads the
root attributes, the split groups and each split's arrays, and validates them
(:mod:`~vireid_bench.io.dump_validate`). Every problem is a one-line
:class:`~vireid_bench.errors.DumpError` naming the file and the field; valid but suspicious
data (collapsed features, negative person ids) is reported with :func:`warnings.warn`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from vireid_bench.errors import DumpError
from vireid_bench.io import dump_format, memory
from vireid_bench.io.dump_format import (
    FORMAT_VERSION,
    SELECTIONS,
    FeatureDump,
    FeatureSplit,
    LazyFeatures,
)
from vireid_bench.io.dump_links import follow_outside, outside_references
from vireid_bench.io.dump_open import (
    H5_ERRORS,
    bytes_text,
    check_input_file,
    child,
    corrupt_file_errors,
    file_kind,
    h5_reason,
    member_names,
    open_read_only,
    reading_errors,
)
from vireid_bench.io.dump_validate import (
    CollapseProbe,
    check_declared_size,
    check_feature_layout,
    collapse_problem,
    dump_recipe,
    negative_pid_problem,
    raise_nonfinite,
    resolve_feature_names,
    validate_split,
)

_FEATURE_NAME_ATTRS = ("default_features", "cross_features", "same_features")


@dataclass(frozen=True)
class _RootAttributes:
    dataset: str
    model: str
    description: str
    protocol_version: str | None
    feature_names: Mapping[str, str | None]
    run_metadata: Mapping[str, object]
    distance_recipe: str | None = None


def _read_attr_str(source: str, attrs: Mapping[str, object], name: str) -> str | None:
    """Return a string attribute, or None when absent; raise when it is not a string."""
    if name not in attrs:
        return None
    value = attrs[name]
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if not isinstance(value, str):
        raise DumpError(source, name, f"attribute must be a string, got {type(value).__name__}")
    return value


def _scalar(value: object) -> object:
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.reshape(()).item()
    return value.item() if isinstance(value, np.generic) else value


def _run_metadata(source: str, attrs: Mapping[str, object]) -> dict[str, object]:
    """The optional run attributes ``seed``, ``run``, ``selection``, ``trained_on``,
    ``synthetic`` (None when absent); a present one of the wrong type or value is refused."""
    found: dict[str, object] = {
        name: _read_attr_str(source, attrs, name) for name in ("run", "selection", "trained_on")
    }
    if found["selection"] is not None and found["selection"] not in SELECTIONS:
        raise DumpError(
            source,
            "selection",
            f"unknown checkpoint selection {found['selection']!r} (valid: {', '.join(SELECTIONS)})",
        )
    seed = _scalar(attrs["seed"]) if "seed" in attrs else None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise DumpError(source, "seed", f"attribute must be an integer, got {seed!r}")
    found["seed"] = seed
    synthetic = _scalar(attrs["synthetic"]) if "synthetic" in attrs else None
    if synthetic is not None:
        if isinstance(synthetic, bool) or (isinstance(synthetic, int) and synthetic in (0, 1)):
            synthetic = bool(synthetic)
        else:
            raise DumpError(source, "synthetic", f"attribute must be a boolean, got {synthetic!r}")
    found["synthetic"] = synthetic
    return found


def _root_attributes(source: str, handle) -> _RootAttributes:
    """Read and check the root attributes (format version first)."""
    try:
        attrs = dict(handle.attrs)
    except H5_ERRORS as exc:
        raise DumpError(source, "attributes", f"cannot be read ({h5_reason(exc)})") from exc
    if "vireid_bench_format" not in attrs:
        raise DumpError(source, "vireid_bench_format", "root attribute missing")
    version = attrs["vireid_bench_format"]
    if isinstance(version, np.ndarray) and version.size == 1:
        version = version.reshape(()).item()
    if isinstance(version, bool | np.bool_) or not isinstance(version, int | np.integer):
        raise DumpError(source, "vireid_bench_format", f"not an integer: {version!r}")
    if int(version) != FORMAT_VERSION:
        raise DumpError(
            source,
            "vireid_bench_format",
            f"unsupported format version {int(version)} (this toolkit reads {FORMAT_VERSION})",
        )
    dataset_name = _read_attr_str(source, attrs, "dataset")
    if dataset_name is None:
        raise DumpError(source, "dataset", "root attribute missing (use 'generic')")
    model = _read_attr_str(source, attrs, "model")
    if model is None:
        raise DumpError(source, "model", "root attribute missing")
    return _RootAttributes(
        dataset=dataset_name,
        model=model,
        description=_read_attr_str(source, attrs, "description") or "",
        protocol_version=_read_attr_str(source, attrs, "protocol_version"),
        feature_names={name: _read_attr_str(source, attrs, name) for name in _FEATURE_NAME_ATTRS},
        run_metadata=_run_metadata(source, attrs),
        distance_recipe=_read_attr_str(source, attrs, "distance_recipe"),
    )


def _split_groups(source: str, handle) -> tuple[list[tuple[object, str]], bool]:
    """Return [(group, field prefix)] for each split, and whether they are ``trials/<k>``."""
    import h5py

    trials = child(source, handle, "trials", "trials")
    if trials is None:
        return [(handle, "")], False
    if "pid" in handle or "features" in handle:
        raise DumpError(source, "trials", "dump holds both root-level images and trials/ groups")
    if not isinstance(trials, h5py.Group):
        raise DumpError(source, "trials", "must be a group")
    keys = member_names(source, trials, "trials")
    if not keys:
        raise DumpError(source, "trials", "no trial group")
    odd = [k for k in keys if not k.isdigit()]
    if odd:
        raise DumpError(source, f"trials/{odd[0]}", "trial groups must be named 0..T-1")
    keys.sort(key=int)
    missing = sorted(set(range(int(keys[-1]) + 1)) - {int(k) for k in keys})
    if missing:
        raise DumpError(source, f"trials/{missing[0]}", "missing (groups must be 0..T-1)")
    groups = [(child(source, trials, k, f"trials/{k}"), f"trials/{k}/") for k in keys]
    for group, prefix in groups:
        if not isinstance(group, h5py.Group):
            raise DumpError(source, prefix.rstrip("/"), "must be a group")
    return groups, True


def _feature_groups(source: str, groups: list[tuple[object, str]]) -> tuple[list, list[str]]:
    """Return each split's ``features`` group (None when absent) and the first one's names."""
    import h5py

    feature_groups = [child(source, g, "features", p + "features") for g, p in groups]
    for features_group, (_, prefix) in zip(feature_groups, groups, strict=True):
        if features_group is not None and not isinstance(features_group, h5py.Group):
            raise DumpError(source, prefix + "features", "must be a group of feature sets")
    first_prefix = groups[0][1]
    if feature_groups[0] is None:
        raise DumpError(source, first_prefix + "features", "missing")
    names = member_names(source, feature_groups[0], first_prefix + "features")
    if not names:
        raise DumpError(source, first_prefix + "features", "no feature set")
    return feature_groups, names


def _wanted_sets(
    source: str, names: list[str], feature_sets: Iterable[str] | None, policy: tuple[str, ...]
) -> set[str] | None:
    """The feature sets to load (None: all), checked against the file's ``names``."""
    if feature_sets is None:
        return None
    wanted = set(feature_sets) | set(policy)
    unknown = sorted(wanted - set(names))
    if unknown:
        raise DumpError(source, "features", f"no feature set {unknown[0]!r} (available: {names})")
    return wanted


def _lazy_features(source: str, field_name: str, dataset) -> tuple[LazyFeatures, str | None]:
    """Validate a feature dataset slab by slab; return it as :class:`LazyFeatures`.

    Also returns the :class:`CollapseProbe` finding for it (None when the rows differ).
    """
    with reading_errors(source, field_name):
        shape = tuple(int(n) for n in (dataset.shape or ()))
        check_feature_layout(source, field_name, shape, dataset.dtype, None)
        row_bytes = 4 * shape[1]
        budget = memory.memory_budget()
        if budget is not None and row_bytes > budget // 4:
            raise DumpError(
                source,
                field_name,
                f"declared shape {shape} needs {bytes_text(row_bytes * shape[0])}; even "
                f"one row ({bytes_text(row_bytes)}) is more than a quarter of the "
                f"{bytes_text(budget)} of memory available",
            )
        span = max(1, dump_format.LAZY_READ_BYTES // row_bytes)
        bad = 0
        first_bad = -1
        probe = CollapseProbe()
        for start in range(0, shape[0], span):
            slab = np.asarray(dataset[start : start + span], dtype=np.float32)
            finite = np.isfinite(slab).all(axis=1)
            if not finite.all():
                if first_bad < 0:
                    first_bad = start + int(np.flatnonzero(~finite)[0])
                bad += int((~finite).sum())
            elif not bad:
                probe.add(slab)
        if bad:
            raise_nonfinite(source, field_name, bad, first_bad)
    features = LazyFeatures(source=source, field=field_name, shape=(shape[0], shape[1]))
    return features, probe.problem()


def _read_dataset(source: str, field_name: str, dataset) -> np.ndarray:
    """Read a whole HDF5 dataset into memory, turning h5py failures into DumpError.

    Strings are returned as stored (bytes), so that the path check names the entry that is
    not UTF-8. The declared size is checked first (``check_declared_size``).
    """
    with reading_errors(source, field_name):
        check_declared_size(source, field_name, dataset)
        return np.asarray(dataset[()])


def _read_split(
    source: str, group, prefix: str, wanted: set[str] | None, lazy: bool, notes: list
) -> FeatureSplit:
    """Read and validate one split stored in ``group`` (the root or ``trials/<k>``).

    With ``lazy``, features stay in the file as :class:`LazyFeatures` (validated in slabs).
    Suspicious but valid data is appended to ``notes`` as (field, problem).
    """
    import h5py

    members = {}
    for required in ("pid", "cam", "modality", "features", "path"):
        members[required] = child(source, group, required, prefix + required)
        if members[required] is None and required != "path":
            raise DumpError(source, prefix + required, "missing")
    features_group = members["features"]
    if not isinstance(features_group, h5py.Group):
        raise DumpError(source, prefix + "features", "must be a group of feature sets")
    names = member_names(source, features_group, prefix + "features")
    if not names:
        raise DumpError(source, prefix + "features", "no feature set")
    features = {}
    lazy_notes = []
    for name in names:
        if wanted is not None and name not in wanted:
            continue
        field_name = f"{prefix}features/{name}"
        dataset = child(source, features_group, name, field_name)
        if not isinstance(dataset, h5py.Dataset):
            raise DumpError(source, field_name, "must be a dataset")
        if lazy:
            features[name], problem = _lazy_features(source, field_name, dataset)
            lazy_notes.append((field_name, problem))
        else:
            features[name] = _read_dataset(source, field_name, dataset)
    path = None
    if members["path"] is not None:
        dataset = members["path"]
        if not isinstance(dataset, h5py.Dataset):
            raise DumpError(source, prefix + "path", "must be a dataset")
        path = _read_dataset(source, prefix + "path", dataset)
    arrays = {}
    for name in ("pid", "cam", "modality"):
        dataset = members[name]
        if not isinstance(dataset, h5py.Dataset):
            raise DumpError(source, prefix + name, "must be a dataset")
        arrays[name] = _read_dataset(source, prefix + name, dataset)
    split = validate_split(source, features=features, path=path, prefix=prefix, **arrays)
    for name, values in split.features.items():
        field_name = f"{prefix}features/{name}"
        problem = None if lazy else collapse_problem(values)
        notes.append((field_name, problem))
    notes.extend(lazy_notes)
    notes.append((prefix + "pid", negative_pid_problem(split.pid)))
    return split


def _read_splits(
    source: str,
    groups: list[tuple[object, str]],
    feature_groups: list,
    names: list[str],
    wanted: set[str] | None,
    lazy: bool,
    notes: list,
) -> tuple[list[FeatureSplit], dict[str, int]]:
    """Read every split; check that all hold the same feature sets with the same dimensions."""
    splits = []
    dims: dict[str, int] = {}
    for features_group, (group, prefix) in zip(feature_groups, groups, strict=True):
        if features_group is None:
            group_names = []
        else:
            group_names = member_names(source, features_group, prefix + "features")
        if features_group is not None and sorted(group_names) != sorted(names):
            raise DumpError(
                source,
                prefix + "features",
                f"feature sets {sorted(group_names)} differ from trials/0's {sorted(names)}",
            )
        split = _read_split(source, group, prefix, wanted, lazy, notes)
        for name in names:
            shape = features_group[name].shape
            dim = int(shape[1]) if len(shape) == 2 else -1
            if dims.setdefault(name, dim) != dim:
                raise DumpError(
                    source, f"{prefix}features/{name}", f"dimension {dim} differs from {dims[name]}"
                )
        splits.append(split)
    return splits, dims


def _check_outside(source: str, handle, allow_external: bool) -> None:
    """Refuse external links, virtual datasets and external storage unless allowed.

    Allowed, every file they read is checked (present, regular, the source dataset there).
    """
    if allow_external:
        follow_outside(source, handle)
        return
    found = outside_references(handle)
    if found:
        raise DumpError(source, found[0].field, found[0].refusal())


def load_dump(
    path: str | os.PathLike,
    feature_sets: Iterable[str] | None = None,
    lazy: bool = False,
    allow_external: bool = False,
) -> FeatureDump:
    """Read and validate a feature dump.

    Args:
        path: the HDF5 file (a regular file: FIFOs, devices and folders are refused).
        feature_sets: the feature sets to load into memory (default: all of them). The
            names are checked against the file; the dump's default/cross/same sets are
            always loaded.
        lazy: leave the features in the file as :class:`LazyFeatures` (validated slab by
            slab at load; the scorer then streams them). Labels are always read whole.
        allow_external: follow external links, virtual datasets and external raw data that
            read other files (refused by default: the dump is then more than its file; see
            :func:`vireid_bench.io.digest.dump_sha256` to hash all of it).

    Returns:
        The validated :class:`FeatureDump`; features are float32, labels int64/uint8.

    Raises:
        DumpError: one-line message naming the file and the field, for a missing file, a
            file that is not HDF5, an unsupported format version, or any invalid field.

    Warns:
        UserWarning: one line naming the file and the field, for collapsed features (all
            rows equal, or all on one direction) and negative person ids.
    """
    import h5py

    source = os.fspath(path)
    check_input_file(source)
    if not h5py.is_hdf5(source):
        raise DumpError(source, "", "not an HDF5 file")
    notes: list[tuple[str, str | None]] = []
    with open_read_only(source) as handle, corrupt_file_errors(source):
        _check_outside(source, handle, allow_external)
        attrs = _root_attributes(source, handle)
        groups, has_trials = _split_groups(source, handle)
        feature_groups, names = _feature_groups(source, groups)
        policy = resolve_feature_names(source, names, *attrs.feature_names.values())
        recipe = dump_recipe(source, names, attrs.distance_recipe)
        used = (*policy, *(recipe.feature_sets if recipe is not None else ()))
        wanted = _wanted_sets(source, names, feature_sets, used)
        splits, dims = _read_splits(source, groups, feature_groups, names, wanted, lazy, notes)
    for field_name, problem in notes:
        if problem is not None:
            warnings.warn(f"{source}: {field_name}: {problem}", UserWarning, stacklevel=2)
    default, cross, same = policy
    return FeatureDump(
        source=source,
        dataset=attrs.dataset,
        model=attrs.model,
        description=attrs.description,
        default_features=default,
        cross_features=cross,
        same_features=same,
        splits=tuple(splits),
        has_trial_splits=has_trials,
        feature_dims=dims,
        protocol_version=attrs.protocol_version,
        distance_recipe=recipe,
        **attrs.run_metadata,
    )


def read_dump_attributes(path: str | os.PathLike) -> dict[str, object]:
    """The root attributes a table needs, without reading any array: ``dataset``,
    ``model``, ``description`` and the run metadata (``seed``, ``run``, ``selection``,
    ``trained_on``, ``synthetic``; None when absent), checked as :func:`load_dump` checks
    them. For a dump :func:`load_dump` has validated (this reads no features).

    Raises:
        DumpError: the file cannot be opened, or an attribute is missing or invalid.
    """
    source = os.fspath(path)
    check_input_file(source)
    with open_read_only(source) as handle, corrupt_file_errors(source):
        attrs = _root_attributes(source, handle)
    return {
        "dataset": attrs.dataset,
        "model": attrs.model,
        "description": attrs.description,
        **attrs.run_metadata,
    }


def declared_feature_bytes(
    path: str | os.PathLike, feature_sets: Iterable[str] = (), allow_external: bool = False
) -> int:
    """Return the float32 bytes the dump's features would take in memory (0 if unreadable).

    Counts the sets in ``feature_sets`` plus the default/cross/same sets (every set when
    the dump names none), over every split. A cheap look at the declared shapes, used to
    decide whether to load lazily; :func:`load_dump` reports any problem with the file
    (also a non-regular file or, unless ``allow_external``, a dump reading other files:
    both give 0 here, without opening anything outside the dump).
    """
    source = os.fspath(path)
    if file_kind(source) is not None:
        return 0
    try:
        with open_read_only(source) as handle:
            if not allow_external and outside_references(handle):
                return 0
            attrs = handle.attrs
            wanted = set(feature_sets)
            for key in _FEATURE_NAME_ATTRS:
                value = attrs.get(key)
                if value is not None:
                    wanted.add(value.decode() if isinstance(value, bytes) else str(value))
            groups = [handle]
            if "trials" in handle:
                groups = [handle["trials"][k] for k in handle["trials"]]
            total = 0
            for group in groups:
                for name, dataset in group["features"].items():
                    if wanted and name not in wanted:
                        continue
                    total += 4 * int(np.prod(dataset.shape, dtype=np.int64))
            return total
    except Exception:  # noqa: BLE001 - a cheap probe; load_dump names the real problem
        return 0
