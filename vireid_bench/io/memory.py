"""Memory limits: parse ``--memory-limit`` values and read the memory available now."""

from __future__ import annotations

import os
import re

from vireid_bench.errors import VireidBenchError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
MINIMUM = 64 * 1024
"""The smallest limit accepted (it only makes sense for tests and tiny dumps)."""
FALLBACK_AVAILABLE = 4 * 1024**3
"""Assumed available memory where the system does not say (not Linux, no sysconf)."""


MEMORY_LIMIT_HELP = (
    "Memory the scorer may hold: bytes with a unit (e.g. 4G, 512M, 2GiB) or a percentage "
    "of the memory available now. Dumps whose features exceed half of it are read from the "
    "file block by block, and galleries whose distance rows do not fit are scored in "
    "gallery blocks (streamed, exact: docs/scale.md)."
)


def memory_budget() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def available_memory() -> int:
    """Bytes of memory available now (Linux ``MemAvailable``; 4 GiB when unknown)."""
    return memory_budget() or FALLBACK_AVAILABLE


def parse_memory_limit(text: str) -> int:
    """Return the byte count ``text`` means.

    Accepted: a plain byte count (``1000000``), a number with a decimal or binary unit,
    case-insensitive (``512M``, ``4GB``, ``2.5GiB``), or a percentage of the memory
    available now (``50%``).

    Raises:
        VireidBenchError: one line naming the option, for anything else or a value below 64 KiB.
    """
    value = text.strip().lower()
    percent = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", value)
    if percent:
        fraction = float(percent.group(1)) / 100.0
        if not 0 < fraction <= 1:
            raise VireidBenchError(f"--memory-limit: {text!r} is not a percentage in (0, 100]")
        limit = int(available_memory() * fraction)
    else:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
        if not match or match.group(2) not in _UNITS:
            raise VireidBenchError(
                f"--memory-limit: cannot read {text!r} (examples: 4G, 512MiB, 50%)"
            )
        limit = int(float(match.group(1)) * _UNITS[match.group(2)])
    if limit < MINIMUM:
        raise VireidBenchError(f"--memory-limit: {text!r} is below the 64 KiB minimum")
    return limit
