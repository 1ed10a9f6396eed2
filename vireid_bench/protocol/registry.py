"""The protocol layer's front door: every dataset registered, any protocol name resolved.

Importing this module imports :mod:`vireid_bench.protocol.datasets`, whose modules register
their conventions (SYSU-MM01, RegDB, LLCM) and named protocols with
:mod:`vireid_bench.protocol.conventions`. ``vireid_bench.protocol/__init__`` imports it, so
any import of the protocol layer sees the complete registry.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from vireid_bench.errors import ProtocolError
from vireid_bench.protocol import datasets  # noqa: F401 - importing registers the datasets
from vireid_bench.protocol.conventions import (
    Convention,
    dataset_presets,
    get_convention,
    registered_conventions,
    resolve_dataset_preset,
)
from vireid_bench.protocol.presets import Preset, builtin_presets, load_preset_file

__all__ = [
    "GENERIC",
    "Convention",
    "check_dataset_name",
    "check_preset_name",
    "dataset_presets",
    "get_convention",
    "registered_conventions",
    "resolve_presets",
]

GENERIC = "generic"
#: how close (difflib ratio of the names lower-cased without separators) a dataset name
#: must be to a registered one to be taken for a misspelling of it
DATASET_NAME_CUTOFF = 0.8


def _folded(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", name.lower())


def check_dataset_name(name: str) -> str:
    """Return ``name`` when it is a registered dataset, ``generic``, or far from every one.

    A near-miss of a registered dataset (equal once lower-cased without ``-``, ``_``,
    ``.`` and spaces; a start of that form, 4 characters or more; or a :mod:`difflib`
    match of that form with ratio >= :data:`DATASET_NAME_CUTOFF`) is refused: scoring it
    with the generic convention would silently use another protocol.

    Raises:
        ProtocolError: ``dataset 'SYSU-MM01' is not a known dataset (did you mean
            'sysu-mm01'?)``.
    """
    known = [n for n in registered_conventions() if n != GENERIC]
    if name == GENERIC or name in known:
        return name
    folded = {_folded(n): n for n in known}
    match = folded.get(_folded(name))
    if match is None and len(_folded(name)) >= 4:  # an abbreviation: 'sysu'
        match = next((n for f, n in folded.items() if f.startswith(_folded(name))), None)
    if match is None:
        close = difflib.get_close_matches(
            _folded(name), list(folded), n=1, cutoff=DATASET_NAME_CUTOFF
        )
        match = folded[close[0]] if close else None
    if match is not None:
        raise ProtocolError(
            f"dataset {name!r} is not a known dataset (did you mean {match!r}?)"
        )
    return name


def resolve_presets(spec: str | Iterable[str]) -> list[Preset]:
    """Turn ``"all"``, a name, a comma-separated list or an iterable of names into presets.

    A name that ends in ``.toml`` is read as a preset file, so users can try their own.
    A dataset protocol name (``sysu-all-single``, ``regdb-t2v:mix``, ``llcm-i2v:all``; see
    :func:`vireid_bench.protocol.conventions.resolve_dataset_preset`) gives that dataset's presets.

    Raises:
        ProtocolError: for an unknown name, listing the valid ones.
    """
    presets = builtin_presets()
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if not names:
        raise ProtocolError("no protocol given (use 'all' or one of: " + ", ".join(presets) + ")")
    chosen: list[Preset] = []
    for name in names:
        if name == "all":
            chosen.extend(presets.values())
        elif name.endswith(".toml"):
            chosen.append(check_preset_name(name, load_preset_file(name)))
        elif name in presets:
            chosen.append(presets[name])
        else:
            chosen.extend(_dataset_presets(name, presets))
    unique: dict[str, Preset] = {}
    for preset in chosen:
        unique.setdefault(preset.name, preset)
    return list(unique.values())


def check_preset_name(source: str, preset: Preset) -> Preset:
    """Return a custom preset whose name is no builtin or dataset protocol name.

    A custom file named ``cross`` would otherwise be reported as the builtin ``cross``
    (and land in the leaderboard's cross column); ``sysu-all-single`` or
    ``sysu-all-single:mix`` as that dataset protocol.

    Raises:
        ProtocolError: ``FILE: name: reuses the built-in name 'cross'; rename it``.
    """
    name = preset.name
    builtin = builtin_presets()
    reused = name in builtin or name == "all" or name.split(":")[0] in dataset_presets()
    if reused:
        raise ProtocolError(f"{source}: name: reuses the built-in name {name!r}; rename it")
    return preset


def _dataset_presets(name: str, presets: dict[str, Preset]) -> list[Preset]:
    """Resolve a dataset protocol name, or raise ProtocolError listing the valid names."""
    found = resolve_dataset_preset(name, presets)
    if found is None:
        valid = ", ".join([*presets, *dataset_presets()])
        raise ProtocolError(f"unknown protocol {name!r} (valid: all, {valid})")
    return found
