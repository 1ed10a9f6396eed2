"""Dataset indexers and scoring conventions: SYSU-MM01, RegDB and LLCM.

Importing this package registers each dataset's convention (under the dump ``dataset``
attribute ``sysu-mm01``, ``regdb``, ``llcm``) and its named protocols (``sysu-all-single``,
``regdb-t2v``, ``llcm-v2i``, ...). :data:`INDEXERS` maps the ``vireid-bench index`` dataset
names to the indexer functions; each returns a pandas DataFrame with the columns ``path``,
``pid``, ``cam``, ``modality`` (RegDB adds ``trial``), the order a model writes its dump in.
See docs/datasets.md.
"""

from __future__ import annotations

from vireid_bench.protocol.datasets.llcm import LLCMConvention, index_llcm
from vireid_bench.protocol.datasets.regdb import RegDBConvention, index_regdb
from vireid_bench.protocol.datasets.sysu import SYSUConvention, index_sysu, load_rand_perm

INDEXERS = {"sysu": index_sysu, "regdb": index_regdb, "llcm": index_llcm}
"""``vireid-bench index`` dataset name -> indexer(root, split)."""
DATASET_NAMES = {"sysu": "sysu-mm01", "regdb": "regdb", "llcm": "llcm"}
"""``vireid-bench index`` dataset name -> the dump ``dataset`` attribute."""

__all__ = [
    "DATASET_NAMES",
    "INDEXERS",
    "LLCMConvention",
    "RegDBConvention",
    "SYSUConvention",
    "index_llcm",
    "index_regdb",
    "index_sysu",
    "load_rand_perm",
]
