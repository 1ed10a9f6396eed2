"""Importers: features saved by other evaluation code -> the arrays ``write_dump`` takes.

Formats (docs/import.md): MATLAB ``.mat`` v5 (``scipy.io.loadmat``) and v7.3 (HDF5, read
with h5py and transposed back, since MATLAB stores arrays column-major), NumPy ``.npy``
(one array per file, named by the file's stem; a folder holds several) and ``.npz``
archives, plain HDF5 ``.h5`` files (top-level datasets, as stored), and PyTorch
``.pt``/``.pth`` files (a tensor, named by the file's stem, or a
dict of tensors) read with ``torch.load(..., weights_only=True)`` only.

Every source contributes named arrays. The query and gallery arrays are found under the
layumi / DEEN-LLCM names (:data:`FIELDS`: ``query_f``, ``query_label``, ``query_cam``,
``gallery_f``, ``gallery_label``, ``gallery_cam``; optional ``query_modality``,
``gallery_modality``) or under other names given by a mapping (``--map field=name``).
:func:`build_pool` turns them into one pool (query rows, then gallery rows), drops
duplicated rows (same path, or identical feature row, pid and camera) and reports them.

Every malformed input raises :class:`~vireid_bench.errors.DumpError` naming the file and
the array (``feats.mat: query_label: non-integer value 3.5 at row 2``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vireid_bench.errors import DumpError
from vireid_bench.io.dump import MODALITY_CODES, MODALITY_NAMES

SIDES = ("query", "gallery")
FIELDS = ("query_f", "query_label", "query_cam", "gallery_f", "gallery_label", "gallery_cam")
"""The arrays every import needs, under their layumi / DEEN-LLCM names."""
OPTIONAL_FIELDS = ("query_modality", "gallery_modality")
"""Arrays read when present: modality codes per row (0 visible, 1 infrared)."""
ALL_FIELDS = FIELDS + OPTIONAL_FIELDS
SUFFIXES = (".mat", ".npy", ".npz", ".pt", ".pth", ".h5", ".hdf5")


@dataclass(frozen=True)
class SourceArray:
    """One named array read from a source file.

    Attributes:
        name: the array's name in its file (a variable, key, or the file's stem).
        source: the file it came from (used in error messages).
        value: the array as read (MATLAB v7.3 arrays already transposed back).
    """

    name: str
    source: str
    value: np.ndarray


# ----------------------------------------------------------------------------- reading


def _read_npy(path: Path) -> dict[str, np.ndarray]:
    try:
        return {path.stem: np.load(path, allow_pickle=False)}
    except ValueError as exc:  # object arrays need pickle: refused
        raise DumpError(str(path), "", f"cannot be read ({_first_line(exc)})") from exc


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError) as exc:
        raise DumpError(str(path), "", f"not a readable .npz archive ({_first_line(exc)})") from exc


def _read_folder(path: Path) -> dict[str, np.ndarray]:
    files = sorted(p for p in path.iterdir() if p.suffix == ".npy")
    if not files:
        raise DumpError(str(path), "", "folder holds no .npy file")
    out: dict[str, np.ndarray] = {}
    for file in files:
        out.update(_read_npy(file))
    return out


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    import h5py

    if h5py.is_hdf5(path):
        return _read_mat73(path)
    import scipy.io

    try:
        raw = scipy.io.loadmat(path)
    except (ValueError, TypeError, OSError, NotImplementedError) as exc:
        raise DumpError(str(path), "", f"not a MATLAB file ({_first_line(exc)})") from exc
    return {name: value for name, value in raw.items() if not name.startswith("__")}


def _read_mat73(path: Path) -> dict[str, np.ndarray]:
    """Read the top-level numeric datasets of a MATLAB v7.3 (HDF5) file, transposed back."""
    import h5py

    out: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as handle:
            for name, item in handle.items():
                if name.startswith("#") or not isinstance(item, h5py.Dataset):
                    continue
                # MATLAB writes column-major: an N x D matrix is stored as D x N
                out[name] = np.asarray(item[()]).T
    except OSError as exc:
        raise DumpError(str(path), "", f"cannot be read ({_first_line(exc)})") from exc
    return out


def _read_hdf5(path: Path) -> dict[str, np.ndarray]:
    """Read the top-level datasets of a plain HDF5 file (h5py-written), as stored."""
    import h5py

    out: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as handle:
            for name, item in handle.items():
                if isinstance(item, h5py.Dataset):
                    out[name] = np.asarray(item[()])
    except OSError as exc:
        raise DumpError(str(path), "", f"not a readable HDF5 file ({_first_line(exc)})") from exc
    return out


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise DumpError(
            str(path), "", "reading .pt files needs PyTorch: pip install torch"
        ) from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        reason = _first_line(exc)
        raise DumpError(
            str(path), "", f"cannot be read with torch.load(weights_only=True) ({reason})"
        ) from exc

    def as_numpy(value: object) -> object:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.dtype == torch.bfloat16:
                value = value.float()
            return value.numpy()
        return value

    if isinstance(loaded, Mapping):
        return {str(name): as_numpy(value) for name, value in loaded.items()}
    if isinstance(loaded, torch.Tensor):
        return {path.stem: as_numpy(loaded)}
    raise DumpError(
        str(path), "", f"expected a tensor or a dict of tensors, got {type(loaded).__name__}"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def read_source(path: str | os.PathLike) -> dict[str, SourceArray]:
    """Read every named array of one source: a file (by suffix) or a folder of ``.npy``.

    Raises:
        DumpError: the file is missing, of an unknown kind or unreadable.
    """
    target = Path(path)
    source = str(target)
    if target.is_dir():
        raw = _read_folder(target)
    elif not target.exists():
        raise DumpError(source, "", "no such file or folder")
    else:
        suffix = target.suffix.lower()
        readers = {
            ".mat": _read_mat,
            ".npy": _read_npy,
            ".npz": _read_npz,
            ".pt": _read_torch,
            ".pth": _read_torch,
            ".h5": _read_hdf5,
            ".hdf5": _read_hdf5,
        }
        if suffix not in readers:
            raise DumpError(
                source,
                "",
                f"unknown kind of file {suffix or '(no suffix)'!r} (known: "
                f"{', '.join(SUFFIXES)}, or a folder of .npy files)",
            )
        raw = readers[suffix](target)
    file_of = {}
    if target.is_dir():
        file_of = {p.stem: str(p) for p in target.iterdir() if p.suffix == ".npy"}
    return {
        name: SourceArray(name=name, source=file_of.get(name, source), value=value)
        for name, value in raw.items()
    }


def read_sources(paths: Sequence[str | os.PathLike]) -> dict[str, SourceArray]:
    """Read several sources into one namespace; an array name given twice is an error."""
    merged: dict[str, SourceArray] = {}
    for path in paths:
        for name, array in read_source(path).items():
            if name in merged:
                raise DumpError(
                    array.source, name, f"also given by {merged[name].source}; names must be unique"
                )
            merged[name] = array
    return merged


# ----------------------------------------------------------------------------- checking


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    """Parse ``field=name`` pairs (``--map``); raise DumpError for a malformed one."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, name = pair.partition("=")
        field, name = field.strip(), name.strip()
        if not sep or not field or not name:
            raise DumpError("--map", pair, "expected FIELD=NAME, e.g. query_f=q_feat")
        if field not in ALL_FIELDS:
            raise DumpError("--map", field, f"unknown field (fields: {', '.join(ALL_FIELDS)})")
        mapping[field] = name
    return mapping


def _numeric(array: SourceArray) -> np.ndarray:
    value = np.asarray(array.value)
    if value.dtype.kind not in "biuf":
        raise DumpError(array.source, array.name, f"expected numbers, got dtype {value.dtype}")
    return value


def _features(array: SourceArray) -> np.ndarray:
    value = _numeric(array)
    if value.ndim != 2:
        raise DumpError(
            array.source, array.name, f"expected a 2-D array [N, D], got shape {value.shape}"
        )
    if value.dtype.kind != "f":
        raise DumpError(array.source, array.name, f"expected floating point, got {value.dtype}")
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise DumpError(array.source, array.name, f"empty array, shape {value.shape}")
    finite = np.isfinite(value).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DumpError(
            array.source,
            array.name,
            f"{bad.size} row(s) contain NaN or Inf (first at row {int(bad[0])})",
        )
    return value


def _labels(
    array: SourceArray, n: int, rows_of: str, feature_shape: tuple[int, ...] = ()
) -> np.ndarray:
    """Return a label vector as int64 [n]: integers, or floats with integral values."""
    value = _numeric(array)
    if value.ndim == 2 and 1 in value.shape:  # MATLAB row or column vector
        value = value.reshape(-1)
    if value.ndim != 1:
        raise DumpError(array.source, array.name, f"expected a vector, got shape {value.shape}")
    if value.shape[0] != n:
        hint = ""
        if len(feature_shape) == 2 and feature_shape[1] == value.shape[0]:
            hint = f" ({rows_of} has shape {feature_shape}: transposed?)"
        raise DumpError(
            array.source,
            array.name,
            f"length {value.shape[0]} does not match {rows_of}'s {n} rows{hint}",
        )
    if value.dtype.kind == "b":
        raise DumpError(array.source, array.name, "expected integer labels, got booleans")
    if value.dtype.kind == "f":
        bad = ~np.isfinite(value) | (value != np.round(value))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DumpError(
                array.source,
                array.name,
                f"non-integer value {value[first].item()!r} at row {first}",
            )
    if value.dtype.kind == "u" and value.size and int(value.max()) > np.iinfo(np.int64).max:
        raise DumpError(array.source, array.name, "values do not fit in int64")
    return value.astype(np.int64)


# ----------------------------------------------------------------------------- the pool


@dataclass(frozen=True)
class Duplicate:
    """A pool row dropped as a copy of an earlier one.

    Attributes:
        kept, dropped: (side, row within that side), e.g. ``("query", 3)``.
        reason: ``"same path 'cam1/0001/0001.jpg'"`` or ``"identical features, pid and camera"``.
    """

    kept: tuple[str, int]
    dropped: tuple[str, int]
    reason: str

    def describe(self) -> str:
        """E.g. ``gallery row 0 = query row 2 (same path 'a.jpg')``."""
        return (
            f"{self.dropped[0]} row {self.dropped[1]} = {self.kept[0]} row {self.kept[1]} "
            f"({self.reason})"
        )


@dataclass(frozen=True)
class ImportedPool:
    """Query and gallery rows as one pool, ready for ``write_dump``.

    Attributes:
        features: float [N, D]; ``pid``, ``cam``, ``modality``: int64 [N].
        paths: list of N str, or None.
        side: ``"query"`` or ``"gallery"`` per pool row; ``row``: the row within its side.
        n_query, n_gallery: rows read per side (before duplicates were dropped).
        duplicates: the rows dropped, in pool order.
        modality_source: per side, where its modality came from (flag, array, cameras).
    """

    features: np.ndarray
    pid: np.ndarray
    cam: np.ndarray
    modality: np.ndarray
    paths: list[str] | None
    side: tuple[str, ...]
    row: np.ndarray
    n_query: int
    n_gallery: int
    duplicates: tuple[Duplicate, ...]
    modality_source: dict[str, str]


def read_paths(path: str | os.PathLike) -> list[str]:
    """Read an image-path list: one path per line (UTF-8); a trailing newline is fine."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DumpError(source, "", "no such file") from None
    except OSError as exc:
        raise DumpError(source, "", f"cannot be read ({exc.strerror})") from exc
    except UnicodeDecodeError:
        raise DumpError(source, "", "not UTF-8 text") from None
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise DumpError(source, f"line {number}", "empty (expected one image path per line)")
    return [line.strip() for line in lines]


def _pick(arrays: Mapping[str, SourceArray], mapping: Mapping[str, str], field: str):
    name = mapping.get(field, field)
    return arrays.get(name)


def _missing(arrays: Mapping[str, SourceArray], mapping: Mapping[str, str], field: str, where: str):
    name = mapping.get(field, field)
    present = ", ".join(sorted(arrays)) or "none"
    as_field = "" if name == field else f" (the {field} array)"
    return DumpError(where, name, f"missing{as_field}; arrays present: {present}")


def build_pool(
    arrays: Mapping[str, SourceArray],
    *,
    mapping: Mapping[str, str] | None = None,
    modality: Mapping[str, str] | None = None,
    camera_modality: Mapping[int, int] | None = None,
    camera_modality_problem: str | None = None,
    paths: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    where: str = "import",
) -> ImportedPool:
    """Check the query and gallery arrays and join them into one pool.

    Args:
        arrays: named arrays from :func:`read_sources`.
        mapping: field -> array name, for names other than :data:`ALL_FIELDS`.
        modality: side -> ``"infrared"`` / ``"visible"`` (a flag; wins over an array and
            the cameras).
        camera_modality: camera id -> modality code (0 visible, 1 infrared), the dataset's
            cameras; used for a side with neither a flag nor a modality array.
        camera_modality_problem: why the dataset's cameras cannot tell the modality (LLCM);
            raised for a side that needs them.
        paths: side -> (file name, image paths), optional; both sides or neither.
        where: the sources in words, for errors about a missing array.

    Raises:
        DumpError: a missing array (naming the arrays present), wrong shape, mismatched
            lengths, NaN/Inf feature, non-integer label, unknown modality, unknown camera,
            or a path listed twice with different labels.
    """
    mapping = dict(mapping or {})
    modality = dict(modality or {})
    paths = dict(paths or {})
    if len(paths) == 1:
        side = next(iter(paths))
        other = "gallery" if side == "query" else "query"
        raise DumpError(
            paths[side][0], "path", f"given for the {side} only; give {other} paths too"
        )
    for field in FIELDS:
        if _pick(arrays, mapping, field) is None:
            raise _missing(arrays, mapping, field, where)
    blocks = {}
    dim_of: tuple[SourceArray, int] | None = None
    sources: dict[str, str] = {}
    for side in SIDES:
        feature_array = _pick(arrays, mapping, f"{side}_f")
        if feature_array is None:
            raise _missing(arrays, mapping, f"{side}_f", where)
        features = _features(feature_array)
        n = features.shape[0]
        if dim_of is not None and features.shape[1] != dim_of[1]:
            raise DumpError(
                feature_array.source,
                feature_array.name,
                f"dimension {features.shape[1]} does not match {dim_of[0].name}'s {dim_of[1]}",
            )
        dim_of = (feature_array, features.shape[1])
        labels = {}
        for key in ("label", "cam"):
            found = _pick(arrays, mapping, f"{side}_{key}")
            if found is None:
                raise _missing(arrays, mapping, f"{side}_{key}", where)
            labels[key] = _labels(found, n, feature_array.name, features.shape)
        modality_array = _pick(arrays, mapping, f"{side}_modality")
        if side in modality:
            codes = np.full(n, MODALITY_CODES[modality[side]], dtype=np.int64)
            sources[side] = f"--{side}-modality {modality[side]}"
        elif modality_array is not None:
            codes = _labels(modality_array, n, feature_array.name)
            unknown = np.setdiff1d(np.unique(codes), list(MODALITY_NAMES))
            if unknown.size:
                raise DumpError(
                    modality_array.source,
                    modality_array.name,
                    f"unknown modality code(s) {unknown.tolist()} (0 = visible, 1 = infrared)",
                )
            sources[side] = f"array {modality_array.name}"
        elif camera_modality is not None:
            cam_array = _pick(arrays, mapping, f"{side}_cam")
            unknown = sorted(set(np.unique(labels["cam"]).tolist()) - set(camera_modality))
            if unknown:
                raise DumpError(
                    cam_array.source,
                    cam_array.name,
                    f"camera(s) {unknown} not among the dataset's cameras "
                    f"{sorted(camera_modality)}",
                )
            codes = np.array([camera_modality[c] for c in labels["cam"].tolist()], dtype=np.int64)
            sources[side] = "the dataset's cameras"
        else:
            problem = camera_modality_problem or "unknown"
            raise DumpError(
                where,
                f"{side}_modality",
                f"{problem}; give --{side}-modality infrared|visible, --dataset, "
                f"or a {side}_modality array",
            )
        side_paths = None
        if paths:
            file_name, listed = paths[side]
            if len(listed) != n:
                raise DumpError(
                    file_name,
                    "path",
                    f"{len(listed)} lines do not match {feature_array.name}'s {n} rows",
                )
            side_paths = list(listed)
        blocks[side] = (features, labels["label"], labels["cam"], codes, side_paths)

    features = np.concatenate([blocks[s][0] for s in SIDES])
    pid = np.concatenate([blocks[s][1] for s in SIDES])
    cam = np.concatenate([blocks[s][2] for s in SIDES])
    mod = np.concatenate([blocks[s][3] for s in SIDES])
    all_paths = None if not paths else blocks["query"][4] + blocks["gallery"][4]
    n_query = blocks["query"][0].shape[0]
    n_gallery = blocks["gallery"][0].shape[0]
    side_of = np.array(["query"] * n_query + ["gallery"] * n_gallery, dtype=object)
    row_of = np.concatenate([np.arange(n_query), np.arange(n_gallery)])

    keep, duplicates = _find_duplicates(features, pid, cam, mod, all_paths, side_of, row_of, paths)
    return ImportedPool(
        features=features[keep],
        pid=pid[keep],
        cam=cam[keep],
        modality=mod[keep],
        paths=None if all_paths is None else [all_paths[i] for i in np.flatnonzero(keep)],
        side=tuple(side_of[keep].tolist()),
        row=row_of[keep],
        n_query=n_query,
        n_gallery=n_gallery,
        duplicates=tuple(duplicates),
        modality_source=sources,
    )


def _find_duplicates(features, pid, cam, mod, all_paths, side_of, row_of, paths):
    """Return (keep mask, duplicates): later copies of a path or of an exact row dropped."""
    n = features.shape[0]
    keep = np.ones(n, dtype=bool)
    duplicates: list[Duplicate] = []
    by_path: dict[str, int] = {}
    by_row: dict[tuple[bytes, int, int], int] = {}

    def where(i: int) -> tuple[str, int]:
        return (str(side_of[i]), int(row_of[i]))

    contiguous = np.ascontiguousarray(features)
    for i in range(n):
        if all_paths is not None:
            key = all_paths[i].replace("\\", "/")
            first = by_path.get(key)
            if first is not None:
                for name, values in (("pid", pid), ("cam", cam), ("modality", mod)):
                    if values[first] != values[i]:
                        file_name = paths[str(side_of[i])][0]
                        raise DumpError(
                            file_name,
                            "path",
                            f"{all_paths[i]!r} is {where(first)[0]} row {where(first)[1]} and "
                            f"{where(i)[0]} row {where(i)[1]} with different {name} "
                            f"({values[first]} vs {values[i]})",
                        )
                keep[i] = False
                duplicates.append(Duplicate(where(first), where(i), f"same path {all_paths[i]!r}"))
                continue
            by_path[key] = i
        row_key = (contiguous[i].tobytes(), int(pid[i]), int(cam[i]))
        first = by_row.get(row_key)
        if first is not None and mod[first] == mod[i]:
            keep[i] = False
            duplicates.append(
                Duplicate(where(first), where(i), "identical features, pid and camera")
            )
            continue
        by_row.setdefault(row_key, i)
    return keep, duplicates
