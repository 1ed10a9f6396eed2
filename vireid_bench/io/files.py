"""The one output writer: every file a command writes goes through :func:`write_output_file`.

What it guarantees (docs/robustness.md, "The command line's error contract and outputs"):

* **Atomic.** The bytes go to an exclusive temporary file in the target's folder (an
  unpredictable name opened with ``O_CREAT | O_EXCL`` by :func:`tempfile.mkstemp`, so a
  planted file or symlink cannot redirect the write), are flushed to disk, and the file is
  renamed over the target. An error or Ctrl-C at any point leaves the previous target as it
  was and removes the temporary file.
* **Ordinary permissions.** A new file gets ``0o666 & ~umask`` (not mkstemp's ``0600``);
  a replaced file keeps its own permission bits.
* **Inputs are never outputs.** A target that is the same file as one of the command's
  inputs (same device and inode: the same path, a hard link, a symlink to it) is refused.
* **Only regular files are replaced.** An existing target that is a symlink, a FIFO, a
  device, a socket or a folder is refused (write to stdout with ``-`` instead).
* **No silent mkdir.** A missing parent folder is an error unless ``parents=True``
  (the commands' ``--parents`` flag).

Every refusal and every OS failure (permission, read-only file system, no space left) is an
:class:`OutputError` with the one-line message ``PATH: problem``.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from vireid_bench.errors import VireidBenchError

STDOUT = "-"


class OutputError(VireidBenchError):
    """An output file cannot or must not be written; the message names the path."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        return (type(self), (self.path, self.problem))


def os_problem(exc: OSError) -> str:
    """The reason an OSError gives, as a short lower-case phrase (``permission denied``)."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    text = exc.strerror or (errno.errorcode.get(exc.errno or 0) or type(exc).__name__)
    return text[:1].lower() + text[1:]


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (single-threaded CLI start)
    os.umask(mask)
    return mask


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_output_path(
    path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike] = (),
    *,
    parents: bool = False,
) -> Path:
    """Refuse an output that must not be written; return it as a Path.

    Checks, in order: the path names a file (not empty, not ending in a separator), an
    existing target is a regular file (not a symlink, FIFO, device, socket or folder), it
    is not the same file as any of ``inputs``, and its parent folder exists and is a
    folder (created with ``parents=True``).

    Raises:
        OutputError: the first problem found, as ``PATH: problem``.
    """
    raw = os.fspath(path)
    if not raw:
        raise OutputError("''", "empty output file name")
    if raw.endswith(os.sep) or (os.altsep and raw.endswith(os.altsep)):
        raise OutputError(raw, "names a folder, not a file")
    target = Path(raw)
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise OutputError(raw, f"cannot be checked ({os_problem(exc)})") from exc
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            raise OutputError(
                raw, f"is {_kind(info.st_mode)}; refusing to replace it (write to '-' instead)"
            )
        for source in inputs:
            if source is None or os.fspath(source) == STDOUT:
                continue
            try:
                other = os.stat(source)
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino):
                raise OutputError(
                    raw, f"is the input {os.fspath(source)}; refusing to overwrite an input"
                )
    parent = target.parent
    try:
        parent_info = os.stat(parent)
    except FileNotFoundError:
        if not parents:
            raise OutputError(
                raw, f"folder {parent} does not exist (create it, or pass --parents)"
            ) from None
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(raw, f"cannot create folder {parent} ({os_problem(exc)})") from exc
        return target
    except OSError as exc:
        raise OutputError(raw, f"folder {parent} cannot be used ({os_problem(exc)})") from exc
    if not stat.S_ISDIR(parent_info.st_mode):
        raise OutputError(raw, f"{parent} is not a folder")
    return target


@contextmanager
def atomic_output(
    path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike] = (),
    *,
    parents: bool = False,
) -> Iterator[tuple[int, Path]]:
    """Yield ``(fd, temporary path)`` of an exclusive temporary file beside ``path``.

    The caller writes through ``fd`` or by the temporary path; on a normal exit the file is
    flushed to disk, given its final mode and renamed over ``path``. On any exception the
    temporary file is removed and ``path`` is left as it was. OSErrors become
    :class:`OutputError` naming ``path``.
    """
    target = check_output_path(path, inputs, parents=parents)
    raw = os.fspath(path)
    try:
        previous = os.stat(target).st_mode
    except OSError:
        previous = None
    mode = stat.S_IMODE(previous) if previous is not None else 0o666 & ~current_umask()
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or "."
        )
    except OSError as exc:
        raise OutputError(raw, f"cannot be written ({os_problem(exc)})") from exc
    tmp = Path(tmp_name)
    closed = False
    try:
        try:
            yield fd, tmp
            os.fsync(fd)
            os.fchmod(fd, mode)
            os.close(fd)
            closed = True
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(raw, f"cannot be written ({os_problem(exc)})") from exc
    finally:
        if not closed:
            with suppress(OSError):
                os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        except OSError:  # pragma: no cover - the folder became unwritable meanwhile
            pass


def write_bytes_atomic(
    path: str | os.PathLike,
    data: bytes,
    inputs: Iterable[str | os.PathLike] = (),
    *,
    parents: bool = False,
) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_output`; return the target path."""
    with atomic_output(path, inputs, parents=parents) as (fd, _tmp):
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    return Path(path)


def write_text_atomic(
    path: str | os.PathLike,
    text: str,
    inputs: Iterable[str | os.PathLike] = (),
    *,
    parents: bool = False,
) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, with every check of this module.

    Raises:
        OutputError: the output is refused or cannot be written; the previous file at
            ``path`` (if any) is left as it was.
    """
    return write_bytes_atomic(path, text.encode("utf-8"), inputs, parents=parents)


def write_with(
    path: str | os.PathLike,
    writer: Callable[[Path], object],
    inputs: Iterable[str | os.PathLike] = (),
    *,
    parents: bool = False,
) -> Path:
    """Let ``writer(temporary_path)`` fill the file (e.g. ``figure.savefig``), then commit it."""
    with atomic_output(path, inputs, parents=parents) as (_fd, tmp):
        writer(tmp)
    return Path(path)
