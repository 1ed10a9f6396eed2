"""What the dataset modules share: reading split files, listing folders, the AGW sampler.

Index tables. Every indexer returns a :class:`pandas.DataFrame` with one row per image and
the columns of :data:`INDEX_COLUMNS`: ``path`` (relative to the dataset root, ``/``
separators), ``pid``, ``cam`` and ``modality`` (0 = visible, 1 = infrared, the dump's
codes). RegDB tables add ``trial`` (the dump's ``trials/<k>`` group). A model writes its
feature dump with these columns, row for row.

Image groups. The SYSU-MM01 and LLCM conventions recover, from a dump's ``path`` column,
each image's *folder* (one person seen by one camera of one modality) and file name, and
group the dump's rows by (person, folder) with the files sorted by name, as the community
code sorts ``os.listdir`` output. Galleries are then sampled from these groups, so a
sampled gallery depends only on the image list, the trial and the sampler.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vireid_bench.errors import DatasetError, DumpError
from vireid_bench.io.dump import FeatureDump, FeatureSplit

INDEX_COLUMNS = ("path", "pid", "cam", "modality")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
SAMPLERS = ("agw", "official")

# ----------------------------------------------------------------------------- reading


def require_dir(root: Path, relative: str, dataset: str) -> Path:
    """Return ``root/relative``; raise DatasetError naming it when it is not a folder."""
    path = root / relative
    if not path.is_dir():
        raise DatasetError(f"{path}: folder missing; {root} is not a {dataset} root")
    return path


def require_file(root: Path, relative: str, dataset: str) -> Path:
    """Return ``root/relative``; raise DatasetError naming it when it is not a file."""
    path = root / relative
    if not path.is_file():
        raise DatasetError(f"{path}: file missing; {root} is not a {dataset} root")
    return path


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text") from exc


def read_id_list(path: Path) -> list[int]:
    """Read a comma-separated id list (``exp/test_id.txt``, ``idx/test_id.txt``).

    As the community code does (``file.read().splitlines()[0].split(',')``), only the
    first line counts. Returns the ids in file order.

    Raises:
        DatasetError: naming the file when it is unreadable, empty or holds a token that
            is not an integer.
    """
    lines = _read_text(path).splitlines()
    if not lines or not lines[0].strip():
        raise DatasetError(f"{path}: empty (expected comma-separated ids on the first line)")
    ids = []
    for token in lines[0].split(","):
        token = token.strip()
        if not token:
            continue
        try:
            ids.append(int(token))
        except ValueError as exc:
            raise DatasetError(f"{path}: {token!r} is not an integer id") from exc
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: an id is listed twice")
    return ids


def read_split_list(path: Path) -> list[tuple[str, int]]:
    """Read an ``idx`` list: one ``relative/path label`` per line (AGW's ``load_data``).

    As AGW does, the path is the text before the first space and the label the integer
    after it; blank lines are skipped.

    Raises:
        DatasetError: naming the file and line for a line that is not ``path label``.
    """
    entries = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().split(" ")
        if len(fields) < 2:
            raise DatasetError(f"{path}: line {number}: expected 'path label', got {line!r}")
        try:
            label = int(fields[1])
        except ValueError as exc:
            raise DatasetError(
                f"{path}: line {number}: label {fields[1]!r} is not an integer"
            ) from exc
        entries.append((fields[0], label))
    if not entries:
        raise DatasetError(f"{path}: no image listed")
    return entries


def list_images(folder: Path, root: Path) -> list[str]:
    """Return the image files of a folder, sorted by name, as paths relative to ``root``.

    The community code samples from ``sorted(os.listdir(folder))``; files that are not
    images (by extension) are left out with a warning, since that code would list them.
    """
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot be listed ({exc.strerror})") from exc
    images = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    others = [n for n in names if n not in images]
    if others:
        warnings.warn(
            f"{folder}: {len(others)} entr{'y' if len(others) == 1 else 'ies'} that "
            f"{'is' if len(others) == 1 else 'are'} not an image left out (e.g. {others[0]!r}); "
            "the community code's os.listdir would list it, so its sampling may differ",
            stacklevel=3,
        )
    relative = folder.relative_to(root).as_posix()
    return [f"{relative}/{name}" for name in images]


def table(rows: Iterable[tuple], columns: Sequence[str] = INDEX_COLUMNS):
    """Build the index DataFrame with integer label columns."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(columns))
    for column in columns:
        if column != "path":
            frame[column] = frame[column].astype("int64")
    return frame


# ----------------------------------------------------------------------------- dumps

Folder = Hashable
_PATH_SPLIT = re.compile(r"[\\/]+")


def path_parts(value: str) -> list[str]:
    """Split a path on ``/`` or ``\\`` into its non-empty components."""
    return [part for part in _PATH_SPLIT.split(value) if part]


@dataclass(frozen=True)
class ImageGroups:
    """A dump split's images grouped by (person, folder), files sorted by name.

    Attributes:
        ids: the person ids of the split, ascending.
        files: (pid, folder) -> split indices, in file-name order.
        stems: (pid, folder) -> {file name without extension: split index}.
    """

    ids: tuple[int, ...]
    files: dict[tuple[int, Folder], list[int]]
    stems: dict[tuple[int, Folder], dict[str, int]]

    def listing(self, ids: Iterable[int], folders: Sequence[Folder]) -> list[int]:
        """Every image of the folders, id by id (ascending), folder by folder, file by file."""
        out: list[int] = []
        for pid in ids:
            for folder in folders:
                out.extend(self.files.get((pid, folder), ()))
        return out


ParsePath = Callable[[list[str]], tuple[int, Folder, int, int, str]]
"""Parses path components into (pid, folder, cam, modality, file name), or raises ValueError."""


def group_images(
    dump: FeatureDump, split_index: int, parse: ParsePath, expected: str
) -> ImageGroups:
    """Group a split's images by (person, folder) from its ``path`` column.

    Args:
        parse: turns a path's components into (pid, folder, cam, modality, file name);
            raises ValueError when the path does not have the dataset's layout.
        expected: the layout in words, for error messages (``"cam<k>/<pid>/<file>"``).

    Raises:
        DumpError: the dump has no ``path``, a path does not parse, disagrees with the
            row's ``pid``, ``cam`` or ``modality``, or is listed twice.
    """
    split = dump.splits[split_index]
    prefix = f"trials/{split_index}/" if dump.has_trial_splits else ""
    if split.path is None:
        raise DumpError(
            dump.source,
            prefix + "path",
            f"missing; the {dump.dataset} convention samples galleries from each image's "
            f"path ({expected}, as 'vireid-bench index' writes it)",
        )
    files: dict[tuple[int, Folder], list[tuple[str, int]]] = {}
    seen: dict[str, int] = {}
    for row, value in enumerate(split.path):
        try:
            pid, folder, cam, modality, name = parse(path_parts(value))
        except ValueError:
            raise DumpError(
                dump.source, prefix + "path", f"row {row}: {value!r} is not {expected}"
            ) from None
        for field_name, got, want in (
            ("pid", int(split.pid[row]), pid),
            ("cam", int(split.cam[row]), cam),
            ("modality", int(split.modality[row]), modality),
        ):
            if got != want:
                raise DumpError(
                    dump.source,
                    prefix + field_name,
                    f"row {row}: {got} but its path {value!r} says {want}",
                )
        key = "/".join(path_parts(value))
        if key in seen:
            raise DumpError(
                dump.source, prefix + "path", f"rows {seen[key]} and {row}: {value!r} listed twice"
            )
        seen[key] = row
        files.setdefault((pid, folder), []).append((name, row))
    ordered = {key: [row for _, row in sorted(entries)] for key, entries in files.items()}
    stems = {
        key: {os.path.splitext(name)[0]: row for name, row in entries}
        for key, entries in files.items()
    }
    ids = tuple(sorted({pid for pid, _ in ordered}))
    return ImageGroups(ids=ids, files=ordered, stems=stems)


class GroupCache:
    """Remembers the :class:`ImageGroups` of the last few dump splits (keyed by identity)."""

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._entries: list[tuple[FeatureSplit, ImageGroups]] = []

    def get(
        self, dump: FeatureDump, split_index: int, build: Callable[[], ImageGroups]
    ) -> ImageGroups:
        """Return the cached groups of the split, building them on first use."""
        split = dump.splits[split_index]
        for cached_split, groups in self._entries:
            if cached_split is split:
                return groups
        groups = build()
        self._entries = [(split, groups), *self._entries][: self._size]
        return groups


def single_split(dump: FeatureDump) -> int:
    """Return 0; raise DumpError when the dump holds ``trials/<k>`` groups."""
    if dump.has_trial_splits or len(dump.splits) != 1:
        raise DumpError(
            dump.source,
            "trials",
            f"a {dump.dataset} dump holds the whole test set once (no trials/<k> groups); "
            "the trials are sampled by the scorer",
        )
    return 0


# ----------------------------------------------------------------------------- sampling


def agw_sample(
    groups: ImageGroups,
    folders: Sequence[Folder],
    trial: int,
    shots: int = 1,
) -> list[int]:
    """Sample a gallery as the AGW test code does (``process_gallery_sysu``).

    ``random.seed(trial)``; for each person id in ascending order, for each folder in the
    given order with at least one image, ``random.choice`` of the file-name-sorted list
    (single-shot) or ``random.sample`` of ``min(shots, n)`` of them (multi-shot: all of
    them, in sampled order, when a folder holds fewer than ``shots``). A private
    :class:`random.Random` seeded with ``trial`` gives exactly the module-level sequence.

    Returns:
        Split indices, in the order the community code lists the gallery.
    """
    rng = random.Random(trial)
    out: list[int] = []
    for pid in groups.ids:
        for folder in folders:
            files = groups.files.get((pid, folder))
            if not files:
                continue
            if shots == 1:
                out.append(rng.choice(files))
            else:
                out.extend(rng.sample(files, min(shots, len(files))))
    return out


def as_index(values: Sequence[int]) -> np.ndarray:
    """Return ``values`` as an int64 array (the plans' index type)."""
    return np.asarray(values, dtype=np.int64)
