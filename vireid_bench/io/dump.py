"""HDF5 feature dumps (format v1): the public names in one place.

A façade over the modules that do the work, so that ``from vireid_bench.io.dump import
load_dump`` keeps working:

* :mod:`~vireid_bench.io.dump_format`: constants and the ``FeatureDump`` /
  ``FeatureSplit`` / ``LazyFeatures`` dataclasses;
* :mod:`~vireid_bench.io.dump_open`: opening a file read-only, HDF5 errors as one line;
* :mod:`~vireid_bench.io.dump_links`: external links, virtual datasets, external storage;
* :mod:`~vireid_bench.io.dump_validate`: array and attribute checks (``validate_split``);
* :mod:`~vireid_bench.io.dump_read`: ``load_dump``, ``declared_feature_bytes``;
* :mod:`~vireid_bench.io.dump_write`: ``write_dump``;
* :mod:`~vireid_bench.io.digest`: ``dump_sources``, ``dump_sha256``.

The format is documented in ``docs/dump-format.md``. Every problem is reported as
:class:`~vireid_bench.errors.DumpError` whose one-line message names the file and the
field: also a corrupt or truncated file, a file locked by a writer, a path that is not a
regular file, a dump reading other files (unless ``allow_external=True``), and a dataset
whose declared size exceeds the available memory (refused before reading; see
``docs/robustness.md``).
"""

from __future__ import annotations

from vireid_bench.io.digest import dump_sha256, dump_sources
from vireid_bench.io.dump_format import (
    FORMAT_VERSION,
    INFRARED,
    LAZY_READ_BYTES,
    MODALITY_CODES,
    MODALITY_NAMES,
    PROTOCOL_VERSION,
    SELECTIONS,
    VISIBLE,
    FeatureDump,
    FeatureSplit,
    LazyFeatures,
    mentions_synthetic,
)
from vireid_bench.io.dump_read import declared_feature_bytes, load_dump, read_dump_attributes
from vireid_bench.io.dump_validate import validate_split
from vireid_bench.io.dump_write import write_dump

__all__ = [
    "FORMAT_VERSION",
    "INFRARED",
    "LAZY_READ_BYTES",
    "MODALITY_CODES",
    "MODALITY_NAMES",
    "PROTOCOL_VERSION",
    "SELECTIONS",
    "VISIBLE",
    "FeatureDump",
    "FeatureSplit",
    "LazyFeatures",
    "declared_feature_bytes",
    "dump_sha256",
    "dump_sources",
    "load_dump",
    "mentions_synthetic",
    "read_dump_attributes",
    "validate_split",
    "write_dump",
]
