"""The scoring engine: distances, Numba kernels, streamed and distributed scoring, re-ranking.

Stage 3 (``io -> protocol -> engine -> results -> cli``). It takes a dump and the protocol
layer's plans and returns per-query scores and one result row per (setting, variant, query
modality): :func:`~vireid_bench.engine.scoring.evaluate` and
:func:`~vireid_bench.engine.scoring.score` are the entry points. Kernels
(:mod:`~vireid_bench.engine.kernels`) turn the ranks of true matches into CMC, AP and INP;
:mod:`~vireid_bench.engine.reference` is their plain NumPy twin.

May import: :mod:`vireid_bench.errors`, :mod:`vireid_bench.io`, :mod:`vireid_bench.protocol`.
Never the results layer or the command line.
"""
