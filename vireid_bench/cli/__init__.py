"""The ``vireid-bench`` command line: thin click commands over the library, one module each.

Stage 5, the top (``io -> protocol -> engine -> results -> cli``). :mod:`~.main` holds the
group and the scoring commands (``score``, ``protocols``, ``inspect``, ``synth``) and
registers the others (``index``, ``leaderboard``, ``check``, ``plot``, ``compare``,
``synth-images``, ``mixer``); :mod:`~.common` the error contract, exit codes and output;
:mod:`~.options` the option decorators several commands share.

Command modules import only click and light modules at import time; everything that pulls
numpy, numba, h5py, pandas or torch is imported inside the command body (marked
``# lazy: ...``), so ``vireid-bench --help`` stays fast.

May import: everything in the package.
"""

from __future__ import annotations

from vireid_bench.cli.main import cli, main

__all__ = ["cli", "main"]
