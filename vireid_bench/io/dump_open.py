"""Opening a dump read-only and turning HDF5's failures into one-line :class:`DumpError`\\ s.

The lowest layer of the dump reader (:mod:`~vireid_bench.io.dump_read`): what may be opened
at all (a regular file, never a FIFO or a device, which would block or stream forever), how
it is opened (read-only, honouring a writer's lock), and how h5py's exceptions on a
truncated, corrupt or locked file become a message naming the file and the field.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from vireid_bench.errors import DumpError

H5_ERRORS = (KeyError, RuntimeError, OSError, ValueError, TypeError)
"""What h5py raises on a corrupt file (bad object header, dangling link, short read...)."""

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def h5_reason(exc: BaseException) -> str:
    """Return an h5py exception's message on one line (KeyError's without quotes)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def bytes_text(n: int) -> str:
    """Return a byte count for people: ``128 B``, ``29.8 GiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def _kind(mode: int) -> str | None:
    """Return what a ``st_mode`` is when it is not a regular file (``"a FIFO"``...)."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in _FILE_KINDS:
        if test(mode):
            return kind
    return "a special file"


def file_kind(path: str | os.PathLike) -> str | None:
    """Return what ``path`` is when it exists and is not a regular file (``"a FIFO"``...).

    Returns None for a regular file (symbolic links are followed) and for a missing one.
    """
    try:
        return _kind(os.stat(path).st_mode)
    except OSError:
        return None


def check_input_file(source: str) -> None:
    """Refuse, before any open, a path that is missing, unreadable or not a regular file.

    A FIFO would block the open forever and a device would be read without end, so both are
    refused from ``stat`` alone, as are directories and sockets.
    """
    try:
        kind = _kind(os.stat(source).st_mode)
    except FileNotFoundError as exc:
        raise DumpError(source, "", "file not found") from exc
    except OSError as exc:
        raise DumpError(source, "", f"cannot be read ({exc.strerror or exc})") from exc
    if kind is not None:
        raise DumpError(source, "", f"not a regular file ({kind})")
    try:
        with open(source, "rb"):
            pass
    except OSError as exc:
        raise DumpError(source, "", f"cannot be read ({exc.strerror or exc})") from exc


def _open_problem(exc: OSError) -> str:
    """Say why HDF5 could not open a file: a writer's lock, truncation, or damage."""
    text = h5_reason(exc)
    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or "unable to lock file" in text:
        return "cannot be opened (locked by another process?)"
    inner = text
    prefix = "Unable to synchronously open file ("
    if inner.startswith(prefix) and inner.endswith(")"):
        inner = inner[len(prefix) : -1]
    if exc.errno is None or "truncated file" in inner:
        return f"cannot be opened: truncated or corrupt HDF5 file ({inner})"
    return f"cannot be opened ({inner})"


def open_read_only(source: str):
    """Open ``source`` read-only, honouring HDF5's file lock where the file system has one.

    A dump another process has open for writing is refused (DumpError), never read
    half-written; a truncated or corrupt file is named as such.
    """
    import h5py

    try:
        try:
            return h5py.File(source, "r", locking="best-effort")
        except ValueError:  # HDF5 < 1.12.1 has no locking option; it always locks
            return h5py.File(source, "r")
    except OSError as exc:
        raise DumpError(source, "", _open_problem(exc)) from exc


@contextmanager
def corrupt_file_errors(source: str) -> Iterator[None]:
    """Turn an h5py error that no finer check caught into a DumpError naming the file."""
    try:
        yield
    except DumpError:
        raise
    except H5_ERRORS as exc:
        raise DumpError(source, "/", f"corrupt HDF5 file ({h5_reason(exc)})") from exc


@contextmanager
def reading_errors(source: str, field_name: str) -> Iterator[None]:
    """Turn memory and h5py failures while reading ``field_name`` into a DumpError."""
    try:
        yield
    except DumpError:
        raise
    except MemoryError as exc:
        raise DumpError(source, field_name, "does not fit in memory") from exc
    except H5_ERRORS as exc:
        raise DumpError(source, field_name, f"cannot be read ({h5_reason(exc)})") from exc


def child(source: str, group, name: str, field_name: str):
    """Return ``group[name]``, or None when absent; an unreadable object is a DumpError."""
    try:
        if name not in group:
            return None
        return group[name]
    except H5_ERRORS as exc:
        raise DumpError(source, field_name, f"cannot be read ({h5_reason(exc)})") from exc


def member_names(source: str, group, field_name: str) -> list[str]:
    """Return the member names of an HDF5 group; an unreadable group is a DumpError."""
    try:
        return list(group.keys())
    except H5_ERRORS as exc:
        raise DumpError(source, field_name, f"cannot be read ({h5_reason(exc)})") from exc
