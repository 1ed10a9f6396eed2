"""vireid-bench: evaluation toolkit for visible-infrared person re-identification.

Public API (nothing heavy is imported until used):

* :func:`score` - score a feature dump under protocol presets -> pandas.DataFrame
* :func:`evaluate` - the same, returning per-query scores too
* :func:`load_dump`, :func:`write_dump` - HDF5 feature dumps (format v1)
* :func:`resolve_presets`, :func:`builtin_presets` - protocol presets
* :func:`evaluate_rank` - score a distance matrix (torchreid's arguments) -> (cmc, mAP, mINP)

Importing the package before NumPy sets ``OPENBLAS_THREAD_TIMEOUT`` (unless set) so that
OpenBLAS's idle threads do not spin on the cores the scoring kernels run on
(:mod:`vireid_bench.engine.blas_threads`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from vireid_bench.engine.blas_threads import quiet_blas_threads

# before anything loads NumPy (and with it OpenBLAS): see vireid_bench.engine.blas_threads
quiet_blas_threads()

try:
    __version__ = version("vireid-bench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "__version__",
    "builtin_presets",
    "evaluate",
    "evaluate_rank",
    "load_dump",
    "resolve_presets",
    "score",
    "write_dump",
]


def __getattr__(name: str):
    if name in ("score", "evaluate"):
        from vireid_bench.engine import scoring  # lazy: `import vireid_bench` stays light

        return getattr(scoring, name)
    if name == "evaluate_rank":
        from vireid_bench.engine import distmat  # lazy: `import vireid_bench` stays light

        return distmat.evaluate_rank
    if name in ("load_dump", "write_dump"):
        from vireid_bench.io import dump  # lazy: `import vireid_bench` stays light

        return getattr(dump, name)
    if name in ("resolve_presets", "builtin_presets"):
        from vireid_bench import protocol  # lazy: `import vireid_bench` stays light

        return getattr(protocol, name)
    raise AttributeError(f"module 'vireid_bench' has no attribute {name!r}")
