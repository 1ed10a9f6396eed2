"""Deprecated alias of :mod:`vireid_bench.io.dump` (moved in 0.2.0).

Removed in the next release: import from :mod:`vireid_bench.io.dump` instead.
"""

from __future__ import annotations

import sys
import warnings

from vireid_bench.io import dump as _moved

warnings.warn(
    "vireid_bench.dump is deprecated and will be removed in the next release; "
    "import from vireid_bench.io.dump instead",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _moved
