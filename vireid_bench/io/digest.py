"""SHA-256 of a feature dump, including every file it reads outside itself.

Results record the SHA-256 of the dump they came from (``check``, ``score``'s
``dump_sha256``). A dump with external links, virtual datasets or external raw data reads
other files, so the hash of its own bytes would stay the same while its numbers change.
:func:`dump_sha256` therefore refuses such a dump unless ``allow_external=True``, and then
hashes every source in a defined order. A dump that reads nothing outside itself (every
dump ``write_dump`` writes) hashes exactly as its file does (``sha256sum``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from vireid_bench.errors import DumpError
from vireid_bench.io.dump_links import follow_outside, outside_references
from vireid_bench.io.dump_open import check_input_file, corrupt_file_errors, open_read_only

_CHUNK = 1024 * 1024
DIGEST_HEADER = b"vireid-bench dump_sha256 v1\n"
"""First bytes hashed for a dump with outside sources (never equal to a file's own hash)."""


def file_digest(path: str | os.PathLike) -> str:
    """Return the SHA-256 (hex) of one file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_hdf5(source: str) -> bool:
    import h5py

    return bool(h5py.is_hdf5(source))


def dump_sources(path: str | os.PathLike) -> list[Path]:
    """Return the files a dump reads: the dump itself first, then every other file.

    The others (targets of external links, sources of virtual datasets, external raw data
    files, also those reached through another external file) are absolute, sorted and
    without duplicates. Nothing is refused here; every file is checked to exist and to be a
    regular file before it is opened.

    Raises:
        DumpError: the dump or one of its sources is missing, unreadable or not a regular
            file (naming the field that reads it).
    """
    source = os.fspath(path)
    check_input_file(source)
    top = Path(os.path.abspath(source))
    if not _is_hdf5(source):
        return [top]
    with open_read_only(source) as handle, corrupt_file_errors(source):
        _, others = follow_outside(source, handle)
    return [top, *others]


def dump_sha256(path: str | os.PathLike, allow_external: bool = False) -> str:
    """Return the SHA-256 (hex) of a dump and of every file it reads.

    A dump that reads no other file: the SHA-256 of its bytes. Otherwise (only with
    ``allow_external=True``): the SHA-256 of :data:`DIGEST_HEADER`, then, for the dump and
    then each other source in the order of their paths relative to the dump's folder, the
    line ``<relative path>\\0<sha256 of its bytes>\\n`` (the dump's own path is empty, so
    renaming or moving the dump with its sources keeps the hash; changing any source
    changes it).

    Raises:
        DumpError: the dump reads other files and ``allow_external`` is False (naming the
            field: ``external link to OTHER.h5; follow it with --allow-external
            (allow_external=True)``),
            or a file is missing, unreadable or not a regular file.
    """
    source = os.fspath(path)
    check_input_file(source)
    if not _is_hdf5(source):
        return file_digest(source)
    if not allow_external:
        with open_read_only(source) as handle, corrupt_file_errors(source):
            found = outside_references(handle)
        if found:
            raise DumpError(source, found[0].field, found[0].refusal())
        return file_digest(source)
    top, *others = dump_sources(source)
    if not others:
        return file_digest(top)
    folder = top.parent
    named = sorted((Path(os.path.relpath(p, folder)).as_posix(), p) for p in others)
    digest = hashlib.sha256(DIGEST_HEADER)
    for name, file in [("", top), *named]:
        line = f"{name}\0{file_digest(file)}\n"
        digest.update(line.encode("utf-8", errors="surrogateescape"))
    return digest.hexdigest()
