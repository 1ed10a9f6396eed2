"""Error types with one-line messages that name the file and the field at fault."""

from __future__ import annotations


class VireidBenchError(ValueError):
    """Base class for every input error the toolkit reports to a user.

    The message is always one line; the CLI prints it and exits with code 2.
    """


class DumpError(VireidBenchError):
    """A feature dump is missing, unreadable or inconsistent.

    Args:
        source: the dump's file name (or another label of where the data came from).
        field: the HDF5 object or attribute at fault (e.g. ``"pid"``, ``"features/z_e"``).
        problem: what is wrong, one sentence without a trailing full stop.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple[type[DumpError], tuple[str, str, str]]:
        """Pickle by the constructor's arguments (errors raised on Dask workers travel)."""
        return (type(self), (self.source, self.field, self.problem))


class ProtocolError(VireidBenchError):
    """A protocol preset is unknown, malformed or cannot be applied to a dump."""


class EmptyEvaluationError(VireidBenchError):
    """A preset leaves no query or an empty gallery for a dump."""


class DatasetError(VireidBenchError):
    """A dataset root, split list or sampling file is missing, unreadable or inconsistent.

    The message names the file or folder at fault, on one line.
    """
