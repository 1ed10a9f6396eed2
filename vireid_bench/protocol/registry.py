"""The protocol layer's front door: every dataset registered, any protocol name resolved.

Importing this module imports :mod:`vireid_bench.protocol.datasets`, whose modules register
their conventions (SYSU-MM01, RegDB, LLCM) and named protocols with
:mod:`vireid_bench.protocol.conventions`. ``vireid_bench.protocol/__init__`` imports it, so
any import of the protocol layer sees the complete registry.
"""

from __future__ import annotations

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
    "Convention",
    "dataset_presets",
    "get_convention",
    "registered_conventions",
    "resolve_presets",
]


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
            chosen.append(load_preset_file(name))
        elif name in presets:
            chosen.append(presets[name])
        else:
            chosen.extend(_dataset_presets(name, presets))
    unique: dict[str, Preset] = {}
    for preset in chosen:
        unique.setdefault(preset.name, preset)
    return list(unique.values())


def _dataset_presets(name: str, presets: dict[str, Preset]) -> list[Preset]:
    """Resolve a dataset protocol name, or raise ProtocolError listing the valid names."""
    found = resolve_dataset_preset(name, presets)
    if found is None:
        valid = ", ".join([*presets, *dataset_presets()])
        raise ProtocolError(f"unknown protocol {name!r} (valid: all, {valid})")
    return found
