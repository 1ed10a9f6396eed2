"""Deprecated alias of :mod:`vireid_bench.protocol.datasets` (moved in 0.2.0).

Removed in the next release: import from :mod:`vireid_bench.protocol.datasets` instead.
"""

from __future__ import annotations

import sys
import warnings

from vireid_bench.protocol import datasets as _moved

warnings.warn(
    "vireid_bench.datasets is deprecated and will be removed in the next release; "
    "import from vireid_bench.protocol.datasets instead",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _moved
