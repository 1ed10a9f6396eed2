"""Input and output at the bottom of the pipeline: feature dumps, files, memory budgets.

Stage 1 (``io -> protocol -> engine -> results -> cli``). What comes in is an HDF5 *feature
dump* (:mod:`~vireid_bench.io.dump`, the façade over ``dump_format``, ``dump_open``,
``dump_links``, ``dump_validate``, ``dump_read`` and ``dump_write``; hashes of a dump and
of what it reads in :mod:`~vireid_bench.io.digest`; ``docs/dump-format.md``); what
goes out is written through :mod:`~vireid_bench.io.files` so that an interrupted run never
leaves a half-written file. :mod:`~vireid_bench.io.memory` reads the memory available (the
budget for lazy reads); :mod:`~vireid_bench.io.inspection` describes a dump for ``inspect``.

May import: :mod:`vireid_bench.errors` and third-party libraries only.
"""
