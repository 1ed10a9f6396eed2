"""Checks on a dump's arrays and attributes, shared by the reader and the writer.

Every check raises :class:`~vireid_bench.errors.DumpError` naming the file and the field;
:func:`validate_split` applies them to one split. Also here: the declared-size rule (a
dataset whose declared shape cannot fit in memory is refused before reading,
``docs/robustness.md``) and the probes for valid but suspicious data that the reader warns
about (collapsed features, negative person ids).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from vireid_bench.errors import DumpError
from vireid_bench.io import memory
from vireid_bench.io.dump_format import MODALITY_NAMES, FeatureSplit, LazyFeatures
from vireid_bench.io.dump_open import bytes_text
from vireid_bench.io.recipe import DistanceRecipe, RecipeError, parse_recipe

PARALLEL_TOLERANCE = 1e-9
"""Rows count as one direction when ``1 - cos^2`` of their angle is below this."""
_PROBE_BYTES = 4 * 1024**2


def as_label_array(source: str, field_name: str, values: object, n: int | None) -> np.ndarray:
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


def check_feature_layout(
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


def nonfinite_rows(array: np.ndarray) -> tuple[int, int]:
    """Return (number of rows holding NaN or Inf, first such row; -1 when none)."""
    finite = np.isfinite(array).all(axis=1)
    if finite.all():
        return 0, -1
    bad = ~finite
    return int(bad.sum()), int(np.flatnonzero(bad)[0])


def raise_nonfinite(source: str, field_name: str, bad: int, first: int) -> None:
    """Raise the DumpError for ``bad`` rows with NaN or Inf, the first at row ``first``."""
    raise DumpError(source, field_name, f"{bad} row(s) contain NaN or Inf (first at row {first})")


def as_feature_array(source: str, field_name: str, values: object, n: int) -> np.ndarray:
    """Return ``values`` as C-contiguous float32 [N, D] with finite entries, or raise."""
    array = np.asarray(values)
    check_feature_layout(source, field_name, array.shape, array.dtype, n)
    with np.errstate(over="ignore"):  # float64 beyond float32's range: reported below
        array = np.ascontiguousarray(array, dtype=np.float32)
    bad, first = nonfinite_rows(array)
    if bad:
        raise_nonfinite(source, field_name, bad, first)
    return array


def check_stored_features(source: str, field_name: str, stored: np.ndarray) -> None:
    """Refuse features that a cast for storage (float16) turned into Inf.

    ``stored`` holds the values as they will be written; valid float32 values beyond
    float16's range (±65504) become Inf, which the reader would refuse.
    """
    bad, first = nonfinite_rows(stored)
    if bad:
        limit = float(np.finfo(stored.dtype).max)
        raise DumpError(
            source,
            field_name,
            f"{bad} row(s) overflow {stored.dtype} when stored (values beyond ±{limit:g}; "
            f"first at row {first}); store float32 instead",
        )


def as_path_array(source: str, field_name: str, values: object, n: int) -> np.ndarray:
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
    pid_array = as_label_array(source, prefix + "pid", pid, None)
    n = int(pid_array.shape[0])
    if n == 0:
        raise DumpError(source, prefix + "pid", "the split holds no images")
    cam_array = as_label_array(source, prefix + "cam", cam, n)
    modality_array = as_label_array(source, prefix + "modality", modality, n)
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
            feature_arrays[name] = as_feature_array(source, field_name, values, n)
    path_array = None if path is None else as_path_array(source, prefix + "path", path, n)
    return FeatureSplit(
        features=feature_arrays,
        pid=pid_array,
        cam=cam_array,
        modality=modality_array.astype(np.uint8),
        path=path_array,
    )


def resolve_feature_names(
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


def dump_recipe(
    source: str, names: Sequence[str], text: str | DistanceRecipe | None
) -> DistanceRecipe | None:
    """The ``distance_recipe`` attribute parsed and checked against the feature sets
    ``names`` (None when absent).

    Raises:
        DumpError: ``SOURCE: distance_recipe: PAIR: problem``, one line.
    """
    if text is None:
        return None
    if isinstance(text, DistanceRecipe):
        text = text.text
    try:
        return parse_recipe(text, list(names))
    except RecipeError as exc:
        raise DumpError(source, "distance_recipe", str(exc)) from None


def check_declared_size(source: str, field_name: str, dataset) -> None:
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
            f"declared shape {shape} needs {bytes_text(needed)}, more than the "
            f"{bytes_text(budget)} of memory available",
        )


# ---------------------------------------------------------------- valid but suspicious data


class CollapseProbe:
    """Find, slab by slab, a feature set whose rows are all equal or all on one direction.

    Such features are valid (finite) but carry no identity: every distance ties (all rows
    equal), or cosine distances are only 0 and 2 (rank 1: every row a multiple of one
    vector). Feed the rows in order with :meth:`add`, then read :meth:`problem`. The probe
    stops looking as soon as both are ruled out (normally within the first rows).
    """

    def __init__(self) -> None:
        self.rows = 0
        self.equal = True
        self.parallel = True
        self._first: np.ndarray | None = None
        self._direction: np.ndarray | None = None

    @property
    def settled(self) -> bool:
        """True when neither collapse is possible any more."""
        return not self.equal and not self.parallel

    def add(self, rows: np.ndarray) -> None:
        """Look at the next rows (a 2-D float array, finite), a few MiB at a time."""
        block = max(1, _PROBE_BYTES // (8 * max(1, rows.shape[1])))
        for start in range(0, rows.shape[0], block):
            part = rows[start : start + block]
            self.rows += part.shape[0]
            if self.settled:
                continue
            if self._first is None:
                self._first = np.array(part[0], dtype=np.float32)
            if self.equal:
                self.equal = bool((part == self._first).all())
            if self.parallel:
                self._add_direction(np.asarray(part, dtype=np.float64))

    def _add_direction(self, rows: np.ndarray) -> None:
        norms = np.einsum("ij,ij->i", rows, rows)
        if self._direction is None:
            nonzero = np.flatnonzero(norms > 0)
            if nonzero.size == 0:
                return
            self._direction = rows[nonzero[0]] / np.sqrt(norms[nonzero[0]])
        dots = rows @ self._direction
        off_line = norms - dots * dots > PARALLEL_TOLERANCE * norms
        self.parallel = not bool(off_line.any())

    def problem(self) -> str | None:
        """Describe the collapse, or None when the rows are neither equal nor on one line."""
        if self.rows < 2 or self.settled:
            return None
        if self.equal:
            return (
                f"collapsed features: all {self.rows} rows are equal "
                "(every distance ties; the scores say nothing about the model)"
            )
        if self._direction is None:
            return None
        return (
            f"collapsed features: all {self.rows} rows lie on one direction (rank 1: cosine "
            "distances are only 0 or 2; the scores say little about the model)"
        )


def collapse_problem(features: np.ndarray) -> str | None:
    """Return :class:`CollapseProbe`'s description for an in-memory feature set."""
    probe = CollapseProbe()
    probe.add(features)
    return probe.problem()


def negative_pid_problem(pid: np.ndarray) -> str | None:
    """Describe negative person ids (Market-1501's "junk" label), or None when there are none."""
    negative = pid < 0
    count = int(negative.sum())
    if not count:
        return None
    ids = int(np.unique(pid[negative]).size)
    return (
        f"{count} image(s) with a negative person id ({ids} id(s)): not distractors or junk "
        "here (Market-1501's convention); the toolkit scores them as ordinary identities"
    )
