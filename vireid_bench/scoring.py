"""Deprecated alias of :mod:`vireid_bench.engine.scoring` (moved in 0.2.0).

Removed in the next release: import from :mod:`vireid_bench.engine.scoring` instead.
"""

from __future__ import annotations

import sys
import warnings

from vireid_bench.engine import scoring as _moved

warnings.warn(
    "vireid_bench.scoring is deprecated and will be removed in the next release; "
    "import from vireid_bench.engine.scoring instead",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _moved
