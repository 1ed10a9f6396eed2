"""HDF5 feature dumps (format v1): read, validate, write.

A feature dump is what a model hands to the scorer: one feature vector per test image plus
the image's person id, camera and modality. The format is documented in
``docs/dump-format.md``; in brief, for ``N`` images:

* root attributes ``vireid_bench_format = 1``, ``dataset`` (str), ``model`` (str), optional
  ``description``, ``default_features``, ``cross_features``, ``same_features``,
  ``protocol_version`` (str, the protocol version the dump was built for);
* ``features/<name>``: float [N, D] (at least one set);
* ``pid`` int [N], ``cam`` int [N], ``modality`` uint8 [N] (0 = visible, 1 = infrared);
* optional ``path``: UTF-8 str [N], the image path relative to the dataset root.

A dump may instead hold several test splits as groups ``trials/0 .. trials/T-1``, each with
the per-image layout above (RegDB: one split per trial). Root attributes stay at the root.

Every problem is reported as :class:`~vireid_bench.errors.DumpError` whose one-line message
names the file and the field: also a corrupt or truncated file, a file locked by a writer,
and a dataset whose declared size exceeds the available memory (refused before reading;
see ``docs/robustness.md``).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vireid_bench.errors import DumpError
from vireid_bench.io import memory

FORMAT_VERSION = 1
PROTOCOL_VERSION = "1.0"
"""Version of the evaluation protocol: presets, exclusion rules, CMC/mAP/mINP definitions and
aggregation. Dumps record the version they were built for (``protocol_version``); scoring a
dump built for another version warns. Bump it when a change alters a published number.
Defined here, at the bottom of the pipeline, because a dump records it;
:mod:`vireid_bench.protocol` re-exports it."""
VISIBLE = 0
INFRARED = 1
MODALITY_NAMES = {VISIBLE: "visible", INFRARED: "infrared"}
MODALITY_CODES = {name: code for code, name in MODALITY_NAMES.items()}


@dataclass(frozen=True)
class FeatureSplit:
    """One test split: features and labels of ``N`` images, all arrays in the same order.

    Attributes:
        features: feature-set name -> float32 array [N, D] (D may differ between sets), or
            :class:`LazyFeatures` when the dump was loaded with ``lazy=True``.
        pid: int64 [N], person id.
        cam: int64 [N], camera id as the dataset numbers it; equal ids mean the same camera,
            whatever the modality.
        modality: uint8 [N], 0 = visible, 1 = infrared.
        path: object array [N] of str (image path relative to the dataset root), or None.
    """

    features: Mapping[str, np.ndarray]
    pid: np.ndarray
    cam: np.ndarray
    modality: np.ndarray
    path: np.ndarray | None = None

    @property
    def n_images(self) -> int:
        """Number of images in the split."""
        return int(self.pid.shape[0])


LAZY_READ_BYTES = 64 * 1024**2
"""Largest slab one read of :class:`LazyFeatures` brings into memory."""


@dataclass(frozen=True)
class LazyFeatures:
    """A feature set left in its HDF5 file, read block by block (``load_dump(lazy=True)``).

    It was validated at load time in slabs (dtype, shape, finite values), so reads return
    checked float32 rows. The file is opened read-only for each read.

    Attributes:
        source: the dump file.
        field: the dataset's path in the file (``features/<name>`` or
            ``trials/<k>/features/<name>``).
        shape: (N, D).
    """

    source: str
    field: str
    shape: tuple[int, int]

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Return float32 [len(rows), D] for ascending row indices (slabs of bounded size)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.shape[1]), dtype=np.float32)
        if rows.size == 0:
            return out
        span = max(1, LAZY_READ_BYTES // (4 * self.shape[1]))
        with _open_read_only(self.source) as handle, _corrupt_file_errors(self.source):
            dataset = handle[self.field]
            i = 0
            while i < rows.size:
                first = int(rows[i])
                k = int(np.searchsorted(rows, first + span, side="left"))
                slab = np.asarray(dataset[first : int(rows[k - 1]) + 1], dtype=np.float32)
                out[i:k] = slab[rows[i:k] - first]
                i = k
        return out


@dataclass(frozen=True)
class FeatureDump:
    """A validated feature dump as loaded by :func:`load_dump`.

    Attributes:
        source: the file it came from (a label used in error messages).
        dataset: the dataset convention name (``"generic"`` when none applies).
        model: the model's name.
        description: free text, may be empty.
        default_features: the feature set used when no per-pair policy is given.
        cross_features: the set used for pairs of different modality.
        same_features: the set used for pairs of the same modality.
        splits: the test splits; one unless the dump holds ``trials/<k>`` groups.
        has_trial_splits: True when the splits came from ``trials/<k>`` groups.
        feature_dims: feature-set name -> dimension D, for every set in the file (also those
            not loaded).
        protocol_version: the ``protocol_version`` root attribute (the protocol version the
            dump was built for), or None when the dump does not say.
    """

    source: str
    dataset: str
    model: str
    description: str
    default_features: str
    cross_features: str
    same_features: str
    splits: tuple[FeatureSplit, ...]
    has_trial_splits: bool = False
    feature_dims: Mapping[str, int] = field(default_factory=dict)
    protocol_version: str | None = None


# --------------------------------------------------------------------------- validation


def _as_label_array(source: str, field_name: str, values: object, n: int | None) -> np.ndarray:
    """Return ``values`` as int64 [N]; raise DumpError unless it is a 1-D integer array."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DumpError(source, field_name, f"expected a 1-D array, got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise DumpError(source, field_name, f"expected integers, got dtype {array.dtype}")
    if n is not None and array.shape[0] != n:
        raise DumpError(
            source, field_name, f"length {array.shape[0]} does not match {n} images (pid's length)"
        )
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise DumpError(source, field_name, "values do not fit in int64")
    return array.astype(np.int64, copy=False)


def _as_feature_array(source: str, field_name: str, values: object, n: int) -> np.ndarray:
    """Return ``values`` as C-contiguous float32 [N, D] with finite entries, or raise."""
    array = np.asarray(values)
    _check_feature_layout(source, field_name, array.shape, array.dtype, n)
    array = np.ascontiguousarray(array, dtype=np.float32)
    finite_rows = np.isfinite(array).all(axis=1)
    if not finite_rows.all():
        _raise_nonfinite(source, field_name, int((~finite_rows).sum()), _first(~finite_rows))
    return array


def _first(flags: np.ndarray) -> int:
    return int(np.flatnonzero(flags)[0])


def _check_feature_layout(
    source: str, field_name: str, shape: tuple[int, ...], dtype: np.dtype, n: int | None
) -> None:
    """Raise DumpError unless ``shape``/``dtype`` are a float [N, D>0] feature set (N = n)."""
    if len(shape) != 2:
        raise DumpError(source, field_name, f"expected a 2-D array [N, D], got shape {shape}")
    if dtype.kind != "f":
        raise DumpError(source, field_name, f"expected floating point, got dtype {dtype}")
    if n is not None and shape[0] != n:
        raise DumpError(source, field_name, f"{shape[0]} rows do not match {n} images")
    if shape[1] == 0:
        raise DumpError(source, field_name, "feature dimension is 0")


def _raise_nonfinite(source: str, field_name: str, bad: int, first: int) -> None:
    raise DumpError(source, field_name, f"{bad} row(s) contain NaN or Inf (first at row {first})")


def _as_path_array(source: str, field_name: str, values: object, n: int) -> np.ndarray:
    """Return ``values`` as an object array of str [N], or raise."""
    array = np.asarray(values, dtype=object)
    if array.ndim != 1 or array.shape[0] != n:
        raise DumpError(source, field_name, f"expected {n} strings, got shape {array.shape}")
    out = np.empty(n, dtype=object)
    for i, value in enumerate(array):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DumpError(source, field_name, f"entry {i} is not valid UTF-8") from exc
        if not isinstance(value, str):
            raise DumpError(source, field_name, f"entry {i} is not a string")
        out[i] = value
    return out


def validate_split(
    source: str,
    *,
    features: Mapping[str, object],
    pid: object,
    cam: object,
    modality: object,
    path: object | None = None,
    prefix: str = "",
) -> FeatureSplit:
    """Check one split's arrays and return them as a :class:`FeatureSplit`.

    Args:
        source: label used in error messages (normally the file name).
        features: feature-set name -> array [N, D] of floats.
        pid, cam: integer arrays [N].
        modality: integer array [N] with values 0 (visible) or 1 (infrared).
        path: optional array [N] of str or UTF-8 bytes.
        prefix: HDF5 group prefix for error messages, e.g. ``"trials/3/"``.

    Raises:
        DumpError: naming ``source`` and the field, on any missing field, wrong dtype or
            shape, length mismatch, NaN/Inf feature, or modality code other than 0/1.
    """
    pid_array = _as_label_array(source, prefix + "pid", pid, None)
    n = int(pid_array.shape[0])
    if n == 0:
        raise DumpError(source, prefix + "pid", "the split holds no images")
    cam_array = _as_label_array(source, prefix + "cam", cam, n)
    modality_array = _as_label_array(source, prefix + "modality", modality, n)
    unknown = np.setdiff1d(np.unique(modality_array), list(MODALITY_NAMES))
    if unknown.size:
        raise DumpError(
            source,
            prefix + "modality",
            f"unknown modality code(s) {unknown.tolist()} (0 = visible, 1 = infrared)",
        )
    if not features:
        raise DumpError(source, prefix + "features", "no feature set")
    feature_arrays: dict[str, np.ndarray | LazyFeatures] = {}
    for name, values in features.items():
        field_name = f"{prefix}features/{name}"
        if isinstance(values, LazyFeatures):
            if values.shape[0] != n:
                reason = f"{values.shape[0]} rows do not match {n} images"
                raise DumpError(source, field_name, reason)
            feature_arrays[name] = values
        else:
            feature_arrays[name] = _as_feature_array(source, field_name, values, n)
    path_array = None if path is None else _as_path_array(source, prefix + "path", path, n)
    return FeatureSplit(
        features=feature_arrays,
        pid=pid_array,
        cam=cam_array,
        modality=modality_array.astype(np.uint8),
        path=path_array,
    )


def _resolve_feature_names(
    source: str,
    names: Sequence[str],
    default_features: str | None,
    cross_features: str | None,
    same_features: str | None,
) -> tuple[str, str, str]:
    """Return (default, cross, same) feature-set names, checked against ``names``."""
    if default_features is None:
        if len(names) != 1:
            raise DumpError(
                source,
                "default_features",
                f"attribute missing; required when there are several feature sets {list(names)}",
            )
        default_features = names[0]
    resolved = []
    for attr, value in (
        ("default_features", default_features),
        ("cross_features", cross_features or default_features),
        ("same_features", same_features or default_features),
    ):
        if value not in names:
            raise DumpError(source, attr, f"names feature set {value!r}, not among {list(names)}")
        resolved.append(value)
    return resolved[0], resolved[1], resolved[2]


# --------------------------------------------------------------------------- reading


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


# h5py raises these on a corrupt file (bad object header, dangling link, short read...).
_H5_ERRORS = (KeyError, RuntimeError, OSError, ValueError, TypeError)


def _h5_reason(exc: BaseException) -> str:
    """Return an h5py exception's message on one line (KeyError's without quotes)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _child(source: str, group, name: str, field_name: str):
    """Return ``group[name]``, or None when absent; an unreadable object is a DumpError."""
    try:
        if name not in group:
            return None
        return group[name]
    except _H5_ERRORS as exc:
        raise DumpError(source, field_name, f"cannot be read ({_h5_reason(exc)})") from exc


def _names(source: str, group, field_name: str) -> list[str]:
    """Return the member names of an HDF5 group; an unreadable group is a DumpError."""
    try:
        return list(group.keys())
    except _H5_ERRORS as exc:
        raise DumpError(source, field_name, f"cannot be read ({_h5_reason(exc)})") from exc


@contextmanager
def _corrupt_file_errors(source: str) -> Iterator[None]:
    """Turn an h5py error that no finer check caught into a DumpError naming the file."""
    try:
        yield
    except DumpError:
        raise
    except _H5_ERRORS as exc:
        raise DumpError(source, "/", f"corrupt HDF5 file ({_h5_reason(exc)})") from exc


def _bytes_text(n: int) -> str:
    """Return a byte count for people: ``128 B``, ``29.8 GiB``."""
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}"


def _check_declared_size(source: str, field_name: str, dataset) -> None:
    """Refuse, before reading, a dataset whose declared shape cannot fit in memory.

    Rule: elements x max(itemsize, 4) bytes (features are read as float32) must not exceed
    the memory available now. HDF5 lets a file declare a huge chunked dataset without
    storing its data (reading fills it in), so the shape alone decides.
    """
    shape = tuple(int(n) for n in (dataset.shape or ()))
    needed = int(np.prod(shape, dtype=object)) * max(int(dataset.dtype.itemsize), 4)
    budget = memory.memory_budget()
    if budget is not None and needed > budget:
        raise DumpError(
            source,
            field_name,
            f"declared shape {shape} needs {_bytes_text(needed)}, more than the "
            f"{_bytes_text(budget)} of memory available",
        )


def _read_split(
    source: str, group, prefix: str, wanted: set[str] | None, lazy: bool = False
) -> FeatureSplit:
    """Read and validate one split stored in ``group`` (the root or ``trials/<k>``).

    With ``lazy``, features stay in the file as :class:`LazyFeatures` (validated in slabs).
    """
    import h5py

    members = {}
    for required in ("pid", "cam", "modality", "features", "path"):
        members[required] = _child(source, group, required, prefix + required)
        if members[required] is None and required != "path":
            raise DumpError(source, prefix + required, "missing")
    features_group = members["features"]
    if not isinstance(features_group, h5py.Group):
        raise DumpError(source, prefix + "features", "must be a group of feature sets")
    names = _names(source, features_group, prefix + "features")
    if not names:
        raise DumpError(source, prefix + "features", "no feature set")
    features = {}
    for name in names:
        if wanted is not None and name not in wanted:
            continue
        dataset = _child(source, features_group, name, f"{prefix}features/{name}")
        if not isinstance(dataset, h5py.Dataset):
            raise DumpError(source, f"{prefix}features/{name}", "must be a dataset")
        if lazy:
            features[name] = _lazy_features(source, f"{prefix}features/{name}", dataset)
        else:
            features[name] = _read_dataset(source, f"{prefix}features/{name}", dataset)
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
    return validate_split(source, features=features, path=path, prefix=prefix, **arrays)


@contextmanager
def _reading_errors(source: str, field_name: str) -> Iterator[None]:
    """Turn memory and h5py failures while reading ``field_name`` into a DumpError."""
    try:
        yield
    except DumpError:
        raise
    except MemoryError as exc:
        raise DumpError(source, field_name, "does not fit in memory") from exc
    except _H5_ERRORS as exc:
        raise DumpError(source, field_name, f"cannot be read ({_h5_reason(exc)})") from exc


def _lazy_features(source: str, field_name: str, dataset) -> LazyFeatures:
    """Validate a feature dataset slab by slab and return a :class:`LazyFeatures` for it."""
    with _reading_errors(source, field_name):
        shape = tuple(int(n) for n in (dataset.shape or ()))
        _check_feature_layout(source, field_name, shape, dataset.dtype, None)
        row_bytes = 4 * shape[1]
        budget = memory.memory_budget()
        if budget is not None and row_bytes > budget // 4:
            raise DumpError(
                source,
                field_name,
                f"declared shape {shape} needs {_bytes_text(row_bytes * shape[0])}; even "
                f"one row ({_bytes_text(row_bytes)}) is more than a quarter of the "
                f"{_bytes_text(budget)} of memory available",
            )
        span = max(1, LAZY_READ_BYTES // row_bytes)
        bad = 0
        first_bad = -1
        for start in range(0, shape[0], span):
            slab = np.asarray(dataset[start : start + span], dtype=np.float32)
            finite = np.isfinite(slab).all(axis=1)
            if not finite.all():
                if first_bad < 0:
                    first_bad = start + _first(~finite)
                bad += int((~finite).sum())
        if bad:
            _raise_nonfinite(source, field_name, bad, first_bad)
    return LazyFeatures(source=source, field=field_name, shape=(shape[0], shape[1]))


def _read_dataset(source: str, field_name: str, dataset) -> np.ndarray:
    """Read a whole HDF5 dataset into memory, turning h5py failures into DumpError.

    Strings are returned as stored (bytes), so that :func:`_as_path_array` names the
    entry that is not UTF-8. The declared size is checked first
    (:func:`_check_declared_size`).
    """
    with _reading_errors(source, field_name):
        _check_declared_size(source, field_name, dataset)
        return np.asarray(dataset[()])


def _open_read_only(source: str):
    """Open ``source`` read-only, honouring HDF5's file lock where the file system has one.

    A dump another process has open for writing is refused (DumpError), never read
    half-written.
    """
    import h5py

    try:
        try:
            return h5py.File(source, "r", locking="best-effort")
        except ValueError:  # HDF5 < 1.12.1 has no locking option; it always locks
            return h5py.File(source, "r")
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or "lock" in str(exc):
            raise DumpError(source, "", "cannot be opened (locked by another process?)") from exc
        raise DumpError(source, "", f"cannot be opened ({_h5_reason(exc)})") from exc


def declared_feature_bytes(path: str | os.PathLike, feature_sets: Iterable[str] = ()) -> int:
    """Return the float32 bytes the dump's features would take in memory (0 if unreadable).

    Counts the sets in ``feature_sets`` plus the default/cross/same sets (every set when
    the dump names none), over every split. A cheap look at the declared shapes, used to
    decide whether to load lazily; :func:`load_dump` reports any problem with the file.
    """
    import h5py

    try:
        with h5py.File(os.fspath(path), "r") as handle:
            attrs = handle.attrs
            wanted = set(feature_sets)
            for key in ("default_features", "cross_features", "same_features"):
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


def load_dump(
    path: str | os.PathLike, feature_sets: Iterable[str] | None = None, lazy: bool = False
) -> FeatureDump:
    """Read and validate a feature dump.

    Args:
        path: the HDF5 file.
        feature_sets: the feature sets to load into memory (default: all of them). The
            names are checked against the file; the dump's default/cross/same sets are
            always loaded.
        lazy: leave the features in the file as :class:`LazyFeatures` (validated slab by
            slab at load; the scorer then streams them). Labels are always read whole.

    Returns:
        The validated :class:`FeatureDump`; features are float32, labels int64/uint8.

    Raises:
        DumpError: one-line message naming the file and the field, for a missing file, a
            file that is not HDF5, an unsupported format version, or any invalid field.
    """
    import h5py

    source = os.fspath(path)
    if not os.path.exists(source):
        raise DumpError(source, "", "file not found")
    try:
        with open(source, "rb"):
            pass
    except OSError as exc:
        raise DumpError(source, "", f"cannot be read ({exc.strerror or exc})") from exc
    if not h5py.is_hdf5(source):
        raise DumpError(source, "", "not an HDF5 file")
    with _open_read_only(source) as handle, _corrupt_file_errors(source):
        try:
            attrs = dict(handle.attrs)
        except _H5_ERRORS as exc:
            reason = f"cannot be read ({_h5_reason(exc)})"
            raise DumpError(source, "attributes", reason) from exc
        if "vireid_bench_format" not in attrs:
            raise DumpError(source, "vireid_bench_format", "root attribute missing")
        version = attrs["vireid_bench_format"]
        if isinstance(version, np.ndarray) and version.size == 1:
            version = version.reshape(()).item()
        if isinstance(version, bool | np.bool_) or not isinstance(version, int | np.integer):
            raise DumpError(source, "vireid_bench_format", f"not an integer: {version!r}")
        version_int = int(version)
        if version_int != FORMAT_VERSION:
            raise DumpError(
                source,
                "vireid_bench_format",
                f"unsupported format version {version_int} (this toolkit reads {FORMAT_VERSION})",
            )
        dataset_name = _read_attr_str(source, attrs, "dataset")
        if dataset_name is None:
            raise DumpError(source, "dataset", "root attribute missing (use 'generic')")
        model = _read_attr_str(source, attrs, "model")
        if model is None:
            raise DumpError(source, "model", "root attribute missing")
        description = _read_attr_str(source, attrs, "description") or ""
        protocol_version = _read_attr_str(source, attrs, "protocol_version")
        names_attrs = {
            name: _read_attr_str(source, attrs, name)
            for name in ("default_features", "cross_features", "same_features")
        }

        trials = _child(source, handle, "trials", "trials")
        if trials is not None:
            if "pid" in handle or "features" in handle:
                raise DumpError(
                    source, "trials", "dump holds both root-level images and trials/ groups"
                )
            if not isinstance(trials, h5py.Group):
                raise DumpError(source, "trials", "must be a group")
            keys = _names(source, trials, "trials")
            if not keys:
                raise DumpError(source, "trials", "no trial group")
            odd = [k for k in keys if not k.isdigit()]
            if odd:
                raise DumpError(source, f"trials/{odd[0]}", "trial groups must be named 0..T-1")
            keys.sort(key=int)
            missing = sorted(set(range(int(keys[-1]) + 1)) - {int(k) for k in keys})
            if missing:
                raise DumpError(source, f"trials/{missing[0]}", "missing (groups must be 0..T-1)")
            groups = [(_child(source, trials, k, f"trials/{k}"), f"trials/{k}/") for k in keys]
            for group, prefix in groups:
                if not isinstance(group, h5py.Group):
                    raise DumpError(source, prefix.rstrip("/"), "must be a group")
            has_trials = True
        else:
            groups = [(handle, "")]
            has_trials = False

        feature_groups = [_child(source, g, "features", p + "features") for g, p in groups]
        for features_group, (_, prefix) in zip(feature_groups, groups, strict=True):
            if features_group is not None and not isinstance(features_group, h5py.Group):
                raise DumpError(source, prefix + "features", "must be a group of feature sets")
        first_prefix = groups[0][1]
        if feature_groups[0] is None:
            raise DumpError(source, first_prefix + "features", "missing")
        names = _names(source, feature_groups[0], first_prefix + "features")
        if not names:
            raise DumpError(source, first_prefix + "features", "no feature set")
        default, cross, same = _resolve_feature_names(
            source,
            names,
            names_attrs["default_features"],
            names_attrs["cross_features"],
            names_attrs["same_features"],
        )
        if feature_sets is None:
            wanted = None
        else:
            wanted = set(feature_sets) | {default, cross, same}
            unknown = sorted(wanted - set(names))
            if unknown:
                raise DumpError(
                    source, "features", f"no feature set {unknown[0]!r} (available: {names})"
                )
        splits = []
        dims: dict[str, int] = {}
        for features_group, (group, prefix) in zip(feature_groups, groups, strict=True):
            if features_group is None:
                group_names = []
            else:
                group_names = _names(source, features_group, prefix + "features")
            if features_group is not None and sorted(group_names) != sorted(names):
                raise DumpError(
                    source,
                    prefix + "features",
                    f"feature sets {sorted(group_names)} differ from trials/0's {sorted(names)}",
                )
            split = _read_split(source, group, prefix, wanted, lazy)
            for name in names:
                shape = features_group[name].shape
                dim = int(shape[1]) if len(shape) == 2 else -1
                if dims.setdefault(name, dim) != dim:
                    raise DumpError(
                        source,
                        f"{prefix}features/{name}",
                        f"dimension {dim} differs from {dims[name]}",
                    )
            splits.append(split)
    return FeatureDump(
        source=source,
        dataset=dataset_name,
        model=model,
        description=description,
        default_features=default,
        cross_features=cross,
        same_features=same,
        splits=tuple(splits),
        has_trial_splits=has_trials,
        feature_dims=dims,
        protocol_version=protocol_version,
    )


# --------------------------------------------------------------------------- writing


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
) -> Path:
    """Validate arrays and write them as a v1 feature dump; return the written path.

    Either give one split (``features``, ``pid``, ``cam``, ``modality``, optional
    ``paths``) or several as ``trials`` (a sequence of :class:`FeatureSplit`, written as
    ``trials/<k>`` groups). ``features`` may be a single array, stored as the set
    ``"default"``, or a mapping of set names to arrays.

    The file is written to a temporary name beside ``path`` and renamed into place, so an
    interrupted write never leaves a half-written dump under the final name.

    Args:
        float16: store features as float16 (half the size; scored as float32).
        protocol_version: recorded as the ``protocol_version`` root attribute (default:
            this toolkit's :data:`PROTOCOL_VERSION`).

    Raises:
        DumpError: when the arrays do not form a valid dump (the same checks as
            :func:`load_dump`), naming ``path`` and the field.
    """
    import h5py

    target = Path(path)
    source = str(target)
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
    default, cross, same = _resolve_feature_names(
        source, names, default_features, cross_features, same_features
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        with h5py.File(tmp_name, "w") as handle:
            handle.attrs["vireid_bench_format"] = FORMAT_VERSION
            handle.attrs["dataset"] = dataset
            handle.attrs["model"] = model
            if description:
                handle.attrs["description"] = description
            handle.attrs["default_features"] = default
            handle.attrs["cross_features"] = cross
            handle.attrs["same_features"] = same
            handle.attrs["protocol_version"] = protocol_version or PROTOCOL_VERSION
            if float16:
                splits = [
                    FeatureSplit(
                        features={n: a.astype(np.float16) for n, a in s.features.items()},
                        pid=s.pid,
                        cam=s.cam,
                        modality=s.modality,
                        path=s.path,
                    )
                    for s in splits
                ]
            if trials is not None:
                trials_group = handle.create_group("trials")
                for k, split in enumerate(splits):
                    _write_split(trials_group.create_group(str(k)), split)
            else:
                _write_split(handle, splits[0])
        os.replace(tmp_name, target)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return target
