"""Importing the package before NumPy lets OpenBLAS's idle threads sleep at once."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "import os, sys\n"
    "{first}\n"
    "import vireid_bench\n"
    "from vireid_bench.engine.blas_threads import quiet_blas_threads\n"
    "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), quiet_blas_threads())\n"
)


def _probe(first: str = "", **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=first)],
        capture_output=True, text=True, env=environ, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_import_before_numpy_sets_the_timeout():
    assert _probe() == "4 True"  # `import vireid_bench` itself loads no NumPy


def test_a_value_the_user_set_is_kept():
    assert _probe(OPENBLAS_THREAD_TIMEOUT="12") == "12 True"


def test_nothing_is_set_once_numpy_is_loaded():
    assert _probe("import numpy") == "None False"
