"""What a dump reads outside its own file: external links, virtual datasets, external storage.

HDF5 lets a file borrow data from other files: an *external link* points at an object in
another HDF5 file, a *virtual dataset* (VDS) maps parts of datasets stored elsewhere, and a
dataset's raw data may live in *external* flat files. A dump that does any of this is no
longer one file: copying it, or hashing it (``dump_sha256``), misses what it reads, and a
virtual dataset whose source is gone reads as fill values (zeros) without an error.

:func:`outside_references` walks a dump without following anything out of it;
:func:`follow_outside` follows every reference (with ``allow_external=True``) and checks
that each source exists and is a regular file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vireid_bench.errors import DumpError
from vireid_bench.io.dump_open import H5_ERRORS, file_kind, h5_reason

EXTERNAL_LINK = "external link"
VIRTUAL = "virtual dataset"
EXTERNAL_STORAGE = "external raw data"


@dataclass(frozen=True)
class OutsideReference:
    """One place where a dump reads another file.

    Attributes:
        field: the object's path in the dump (``features/z_e``).
        kind: :data:`EXTERNAL_LINK`, :data:`VIRTUAL` or :data:`EXTERNAL_STORAGE`.
        target: the other file's name as the dump records it.
        dataset: the object's path in ``target`` (external link, virtual dataset source).
        origin: the file holding the reference (the dump, or a file it links to).
    """

    field: str
    kind: str
    target: str
    dataset: str = ""
    origin: str = ""

    def refusal(self) -> str:
        """The problem text of the DumpError that refuses this reference by default."""
        if self.kind == EXTERNAL_LINK:
            what = f"external link to {self.target}"
        elif self.kind == VIRTUAL:
            what = f"virtual dataset reading {self.target}"
        else:
            what = f"raw data stored in external file {self.target}"
        return f"{what}; follow it with --allow-external (allow_external=True)"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return str(value)


def _dataset_references(dataset, field: str) -> list[OutsideReference]:
    """The files a dataset's data comes from besides its own file."""
    found = []
    try:
        origin = dataset.file.filename
        if dataset.is_virtual:
            for source in dataset.virtual_sources():
                name = _text(source.file_name)
                found.append(OutsideReference(field, VIRTUAL, name, source.dset_name, origin))
        for entry in dataset.external or ():
            found.append(OutsideReference(field, EXTERNAL_STORAGE, _text(entry[0]), "", origin))
    except H5_ERRORS:
        pass  # an unreadable object is named by the reader when it gets there
    return found


def _walk(group, prefix: str, follow, found: list[OutsideReference], seen: set) -> None:
    """Visit every object under ``group`` (iteratively: nesting depth is the file's choice).

    ``follow(reference, group, name)`` is called for each external link and returns the
    object to descend into, or None to stay in the file.
    """
    import h5py

    stack = [(group, prefix)]
    while stack:
        current, base = stack.pop()
        try:
            names = list(current)
        except H5_ERRORS:
            continue
        for name in names:
            field = base + name
            try:
                link = current.get(name, getlink=True)
            except H5_ERRORS:
                continue
            target = None
            if isinstance(link, h5py.ExternalLink):
                origin = current.file.filename
                reference = OutsideReference(
                    field, EXTERNAL_LINK, _text(link.filename), link.path, origin
                )
                found.append(reference)
                target = follow(reference, current, name)
            elif isinstance(link, h5py.HardLink):
                try:
                    target = current[name]
                except H5_ERRORS:
                    continue
            if target is None:
                continue
            try:
                key = target.id
                if key in seen:
                    continue
                seen.add(key)
            except (TypeError, *H5_ERRORS):
                continue
            if isinstance(target, h5py.Group):
                stack.append((target, field + "/"))
            elif isinstance(target, h5py.Dataset):
                found.extend(_dataset_references(target, field))


def outside_references(handle) -> list[OutsideReference]:
    """Return every reference to another file in an open dump, without following any.

    Sorted by field. Soft links are not followed (they name objects in the file, which the
    walk reaches by their hard links); virtual datasets mapping their own file (``"."``)
    are not outside references.
    """
    found: list[OutsideReference] = []
    _walk(handle, "", lambda *_: None, found, set())
    return sorted(
        (r for r in found if not (r.kind == VIRTUAL and r.target == ".")),
        key=lambda r: (r.field, r.target),
    )


def _candidates(target: str, origin: Path, kind: str) -> list[Path]:
    """Where HDF5 looks for ``target`` named in the file ``origin`` (first found wins).

    External links and virtual dataset sources: the environment prefix, then the folder of
    the file holding the reference, then the working directory; external raw data: the
    environment prefix, then the working directory.
    """
    path = Path(target)
    if path.is_absolute():
        return [path]
    variable = {
        EXTERNAL_LINK: "HDF5_EXT_PREFIX",
        VIRTUAL: "HDF5_VDS_PREFIX",
        EXTERNAL_STORAGE: "HDF5_EXTFILE_PREFIX",
    }[kind]
    places = []
    for prefix in filter(None, os.environ.get(variable, "").split(os.pathsep)):
        places.append(Path(prefix.replace("${ORIGIN}", str(origin.parent))) / path)
    if kind != EXTERNAL_STORAGE:
        places.append(origin.parent / path)
    places.append(Path.cwd() / path)
    return places


def locate(source: str, reference: OutsideReference, origin: Path) -> Path:
    """Return the file a reference reads; refuse a missing or non-regular one (DumpError)."""
    for place in _candidates(reference.target, origin, reference.kind):
        if place.exists():
            kind = file_kind(place)
            if kind is not None:
                reason = f"{reference.kind} to {reference.target}: not a regular file ({kind})"
                raise DumpError(source, reference.field, reason)
            return Path(os.path.abspath(place))
    reason = f"{reference.kind} source {reference.target} not found"
    if reference.kind == VIRTUAL:
        reason += " (HDF5 would read fill values in its place)"
    raise DumpError(source, reference.field, reason)


def follow_outside(source: str, handle) -> tuple[list[OutsideReference], list[Path]]:
    """Follow every outside reference of an open dump; return them and the files read.

    Checks that each file exists and is a regular file before HDF5 opens it, that every
    virtual dataset's source dataset is in its file, and descends into what external links
    point at (which may reference further files). The files are absolute, sorted, without
    duplicates, and do not include the dump itself.

    Raises:
        DumpError: naming the field whose source is missing or unreadable.
    """
    import h5py

    found: list[OutsideReference] = []
    files: set[Path] = set()
    top = Path(os.path.abspath(source))

    def follow(reference: OutsideReference, group, name: str):
        files.add(locate(source, reference, Path(reference.origin)))
        try:
            target = group[name]
            files.add(Path(os.path.abspath(target.file.filename)))
        except H5_ERRORS as exc:
            reason = f"cannot be read ({h5_reason(exc)})"
            raise DumpError(source, reference.field, reason) from exc
        return target

    _walk(handle, "", follow, found, set())
    for reference in found:
        if reference.kind == EXTERNAL_LINK or (
            reference.kind == VIRTUAL and reference.target == "."
        ):
            continue
        path = locate(source, reference, Path(reference.origin or top))
        files.add(path)
        if reference.kind == VIRTUAL:
            try:
                with h5py.File(path, "r") as other:
                    present = reference.dataset in other
            except H5_ERRORS as exc:
                reason = f"virtual dataset source {reference.target} cannot be opened"
                raise DumpError(source, reference.field, f"{reason} ({h5_reason(exc)})") from exc
            if not present:
                reason = (
                    f"virtual dataset source {reference.target} has no dataset "
                    f"{reference.dataset} (HDF5 would read fill values in its place)"
                )
                raise DumpError(source, reference.field, reason)
    files.discard(top)
    return found, sorted(files)
