"""Results: what happens to scored rows. Reports, leaderboards, checks, statistics, plots.

Stage 4 (``io -> protocol -> engine -> results -> cli``). Rows from the engine become tables
(:mod:`~vireid_bench.results.report`), per-dataset leaderboards beside the paper's published
tables (:mod:`~vireid_bench.results.leaderboard`, a façade over ``keys``,
``leaderboard_inputs``, ``leaderboard_table`` and ``leaderboard_render``;
:mod:`~vireid_bench.results.reported`),
regression checks of stored dumps (:mod:`~vireid_bench.results.check`), paired significance
tests (:mod:`~vireid_bench.results.stats`) and figures (:mod:`~vireid_bench.results.plots`).

May import: :mod:`vireid_bench.errors`, :mod:`vireid_bench.io`, :mod:`vireid_bench.protocol`,
:mod:`vireid_bench.engine`. Never the command line.
"""
