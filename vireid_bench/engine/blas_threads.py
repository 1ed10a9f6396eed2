"""Let OpenBLAS's idle worker threads sleep at once instead of spinning.

After each product OpenBLAS's worker threads busy-wait for about 2^28 CPU cycles (a tenth
of a second) before they sleep. The scorer runs its Numba kernels right after each
distance block, so on a machine with few cores those spinning threads take the kernels'
cores: measured on the 2-core development machine, the fused kernel cost 1.9x its CPU
time and 1.9x its wall time when it ran right after a 1,000 x 40,000 product, and 1.0x
with the threads sleeping at once (docs/performance.md). The products themselves are not
slowed (the threads are woken per product, a few microseconds).

OpenBLAS reads ``OPENBLAS_THREAD_TIMEOUT`` (spin for 2^n cycles, n in 4 .. 30) when it is
loaded, so this takes effect only if NumPy is not imported yet; a value the user set is
kept.
"""

from __future__ import annotations

import os
import sys

THREAD_TIMEOUT = "4"
"""2^4 cycles: OpenBLAS's smallest spin."""


def quiet_blas_threads() -> bool:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` unless NumPy is loaded or the user set it; return
    whether the setting will take effect (NumPy not loaded yet)."""
    if "numpy" in sys.modules:
        return False
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", THREAD_TIMEOUT)
    return True
