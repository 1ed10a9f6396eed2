"""Protocols: which images are queries, which form each query's gallery, over which trials.

Stage 2 of the pipeline (``io -> protocol -> engine -> results -> cli``). It turns a loaded
dump and a protocol name into *evaluation plans* (one per trial: query indices and the
gallery pool in pool order) plus the preset whose exclusion clauses the engine applies per
query. Modules:

* :mod:`~vireid_bench.protocol.presets` - the setting model (:class:`Preset`, :class:`Clause`)
  and the TOML presets shipped in the top-level ``protocols/`` folder;
* :mod:`~vireid_bench.protocol.conventions` - the generic convention, evaluation plans and
  the registry the dataset modules fill;
* :mod:`~vireid_bench.protocol.datasets` - SYSU-MM01, RegDB, LLCM: indexers, samplers, trials;
* :mod:`~vireid_bench.protocol.registry` - resolves any protocol name (builtin, dataset
  protocol, ``.toml`` file) once every dataset is registered.

May import: :mod:`vireid_bench.errors`, :mod:`vireid_bench.io`. Never the engine, results or
the command line.
"""

from __future__ import annotations

from vireid_bench.io.dump import PROTOCOL_VERSION
from vireid_bench.protocol.conventions import (
    Convention,
    DatasetPreset,
    EvaluationPlan,
    register_convention,
    register_dataset_preset,
)
from vireid_bench.protocol.presets import (
    CMC_CONVENTIONS,
    GALLERY_MODALITIES,
    PRESET_ORDER,
    RELATION_CODES,
    RELATIONS,
    Clause,
    Preset,
    builtin_presets,
    load_preset_file,
    parse_preset,
)
from vireid_bench.protocol.registry import (
    dataset_presets,
    get_convention,
    registered_conventions,
    resolve_presets,
)

__all__ = [
    "CMC_CONVENTIONS",
    "GALLERY_MODALITIES",
    "PRESET_ORDER",
    "PROTOCOL_VERSION",
    "RELATIONS",
    "RELATION_CODES",
    "Clause",
    "Convention",
    "DatasetPreset",
    "EvaluationPlan",
    "Preset",
    "builtin_presets",
    "dataset_presets",
    "get_convention",
    "load_preset_file",
    "parse_preset",
    "register_convention",
    "register_dataset_preset",
    "registered_conventions",
    "resolve_presets",
]
