"""Rank lists: for each setting, trial and query, the top-k gallery and every true match's rank.

The lists follow the scorer's rules exactly, with no interpretation of their own: the same
plans (:func:`~vireid_bench.engine.plans.plan_evaluation`), the same distances
(:mod:`vireid_bench.engine.distances`: normalised or scaled rows, cross- and same-modality
feature sets, finite-distance check), the same exclusion (the preset's clause table with
the convention's camera keys, applied in :mod:`vireid_bench.engine.ranklist_kernel` as the
scoring kernel applies it) and the same order: distance, then position in the pool, so
tied images keep pool order; the kernel selects the top-k and ranks the true matches
without sorting a gallery. The ranks of the true matches are the ranks the kernels turn
into AP, INP and the CMC first hit (docs/protocols.md, "Metrics"); ``first_hit`` is the
CMC first-hit rank under the row's CMC convention (identities before the first true match
plus one, for ``identity``).

Memory stays bounded: queries go in blocks (``block_bytes`` of distances), each block's
records are yielded before the next is computed, and only the pool's feature rows of the
current split are held. :func:`write_ranklists` writes them as they come, to a JSON Lines
file (one object per query) or, with pyarrow installed, a Parquet file (one row group per
block), through :func:`vireid_bench.io.files.atomic_output` (atomic: an error or Ctrl-C
leaves the previous file as it was).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from vireid_bench.engine.distances import recipe_block, recipe_matrices, recipe_row_readers
from vireid_bench.engine.plans import Task, gallery_modality_name, plan_evaluation, split_jobs
from vireid_bench.engine.ranklist_kernel import rank_block
from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import MODALITY_NAMES, FeatureDump
from vireid_bench.io.files import OutputError, atomic_output
from vireid_bench.io.recipe import DistanceRecipe
from vireid_bench.protocol import Preset
from vireid_bench.protocol.conventions import Convention, EvaluationPlan

DEFAULT_TOP_K = 20
DEFAULT_BLOCK_BYTES = 64 * 1024**2
FORMATS = (".jsonl", ".parquet")

Record = dict[str, object]


def iter_ranklists(
    dump: FeatureDump,
    presets: Sequence[Preset],
    *,
    top_k: int = DEFAULT_TOP_K,
    features: str | None = None,
    distance: str = "cosine",
    cmc: str | None = None,
    trials: int | None = None,
    query_modalities: Iterable[str] | None = None,
    convention: Convention | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    recipe: object = None,
) -> Iterator[list[Record]]:
    """Yield blocks of rank-list records, setting by setting, trial by trial, query by query.

    Settings that do not apply or have no query are left out (``evaluate`` reports them).
    Each record: ``protocol``, ``variant``, ``query_modality``, ``gallery_modality``,
    ``cmc``, ``split``, ``trial``, ``query`` (``row``, ``path`` when the dump has paths,
    ``pid``, ``cam``, ``modality``), ``gallery_size`` (after exclusion), ``first_hit``
    (0: no true match), ``match_ranks`` (1-based ranks of every true match) and ``top``
    (the first ``top_k`` gallery images: ``rank``, ``row``, ``path``, ``pid``, ``cam``,
    ``modality``, ``distance``, ``match``). ``row`` is the image's row in its dump split.

    Raises:
        ProtocolError: ``top_k`` below 1; the errors of :func:`plan_evaluation` and of the
            distances (zero-norm rows under cosine, non-finite distances).
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ProtocolError(f"top_k: expected a positive integer, got {top_k!r}")
    with warnings.catch_warnings():  # skipped settings: evaluate() warns about them
        warnings.simplefilter("ignore", UserWarning)
        setup = plan_evaluation(
            dump,
            presets,
            features=features,
            distance=distance,
            cmc=cmc,
            trials=trials,
            query_modalities=query_modalities,
            convention=convention,
            recipe=recipe,
        )
    context = setup.context
    # the columns in-process scoring uses: per split, the union of every plan's pool
    pools = {k: split_jobs(setup.tasks, k)[2] for k in range(len(dump.splits))}
    galleries = _GalleryCache(dump, context.pair_recipe, distance, pools)
    for task in setup.tasks:
        for plan in task.plans:
            yield from _plan_records(
                dump, task, plan, galleries, context.convention, top_k, block_bytes
            )


class _GalleryCache:
    """The prepared feature rows of the current split's pool (one split held at a time)."""

    def __init__(
        self,
        dump: FeatureDump,
        recipe: DistanceRecipe,
        distance: str,
        pools: dict[int, np.ndarray],
    ) -> None:
        self.dump, self.recipe, self.distance = dump, recipe, distance
        self.pools = pools
        self.key: int | None = None
        self.value: tuple | None = None

    def get(self, split_index: int):
        """Return (pool rows, readers, pool rows per set, squared norms per set).

        The pool rows are the sorted union of the split's plans' pools.
        """
        if self.key == split_index and self.value is not None:
            return self.value
        self.value = None
        split = self.dump.splits[split_index]
        readers = recipe_row_readers(self.dump.source, split, self.recipe, self.distance)
        rows = self.pools[split_index]
        pool = {name: read(rows) for name, read in readers.items()}
        squares = {
            name: np.einsum("ij,ij->i", g, g) if self.distance == "euclidean" else None
            for name, g in pool.items()
        }
        self.key = split_index
        self.value = (rows, readers, pool, squares)
        return self.value


def _plan_records(
    dump: FeatureDump,
    task: Task,
    plan: EvaluationPlan,
    galleries: _GalleryCache,
    convention: Convention,
    top_k: int,
    block_bytes: int,
) -> Iterator[list[Record]]:
    split = dump.splits[plan.split]
    pool = plan.pool_idx
    if plan.query_idx.size == 0:
        return
    if pool.size == 0:
        pool_rows = np.empty(0, dtype=np.int64)
    else:
        pool_rows, readers, g_sets, g_squares = galleries.get(plan.split)
    # each pool position's column in the prepared (sorted unique) pool rows
    columns = np.searchsorted(pool_rows, pool)
    cam_keys = convention.camera_keys(split.cam, task.preset.colocated_cameras)
    g_pid = split.pid[pool]
    g_cam = cam_keys[pool]
    g_mod = split.modality[pool].astype(np.int64)
    clauses = task.preset.clause_codes()
    labels = {
        "protocol": task.preset.name,
        "variant": task.variant,
        "query_modality": MODALITY_NAMES[task.query_modality],
        "gallery_modality": gallery_modality_name(task.preset, task.query_modality),
        "cmc": task.cmc,
        "split": int(plan.split),
        "trial": int(plan.trial),
    }
    identity = task.cmc == "identity"
    describe = _Describer(split)
    per_query = max(1, pool_rows.size * 4 * recipe_matrices(galleries.recipe))
    step = max(1, int(block_bytes // per_query))
    for start in range(0, plan.query_idx.size, step):
        queries = plan.query_idx[start : start + step]
        if pool.size == 0:
            records = []
            for query in queries.tolist():
                record = dict(labels)
                record["query"] = describe.image(query)
                record.update(gallery_size=0, first_hit=0, match_ranks=[], top=[])
                records.append(record)
            yield records
            continue
        block_rows = np.unique(queries)
        dist = recipe_block(
            galleries.recipe,
            {name: read(block_rows) for name, read in readers.items()},
            g_sets,
            split.modality[block_rows],
            split.modality[pool_rows],
            galleries.distance,
            dump.source,
            g_squares,
        )
        # top-k and true-match ranks without sorting the gallery (engine/ranklist_kernel.py)
        q_rows = np.searchsorted(block_rows, queries)
        ranked = rank_block(
            dist,
            q_rows,
            queries,
            split.pid[queries],
            cam_keys[queries],
            split.modality[queries],
            columns,
            pool,
            g_pid,
            g_cam,
            g_mod,
            clauses,
            identity,
            top_k,
        )
        top = ranked["top"]
        top_dist = dist[q_rows[:, None], columns[np.maximum(top, 0)]]
        yield _block_records(labels, queries, pool, top_dist, ranked, describe)


def _block_records(
    labels: dict[str, object],
    queries: np.ndarray,
    pool: np.ndarray,
    top_dist: np.ndarray,
    ranked: dict[str, np.ndarray],
    describe: _Describer,
) -> list[Record]:
    """The records of one block from :func:`rank_block`'s arrays (columns to lists once).

    ``top_dist[i, t]``: the distance of query ``i``'s ``t``-th image (any value past the
    gallery's end).
    """
    top = ranked["top"]
    valid = top >= 0
    positions = np.where(valid, top, 0)
    rows = pool[positions]
    top_rows = rows.tolist()
    top_dist = top_dist.astype(np.float64).tolist()
    top_match = (describe.pid_array[rows] == describe.pid_array[queries][:, None]).tolist()
    counts = valid.sum(axis=1).tolist()
    offsets = ranked["offsets"].tolist()
    n_pos = ranked["n_pos"].tolist()
    ranks = ranked["ranks"].tolist()
    sizes = ranked["n_gallery"].tolist()
    hits = ranked["first_hit"].tolist()
    shared = describe.shared
    records = []
    for i, query in enumerate(queries.tolist()):
        record = dict(labels)
        record["query"] = describe.image(query)
        row_i, dist_i, match_i = top_rows[i], top_dist[i], top_match[i]
        entries = [
            {"rank": t + 1, **shared(row_i[t]), "distance": dist_i[t], "match": match_i[t]}
            for t in range(counts[i])
        ]
        record["gallery_size"] = sizes[i]
        record["first_hit"] = hits[i]
        record["match_ranks"] = ranks[offsets[i] : offsets[i] + n_pos[i]]
        record["top"] = entries
        records.append(record)
    return records


class _Describer:
    """An image's ``row``, ``path`` (when the split has paths), ``pid``, ``cam``, ``modality``."""

    def __init__(self, split) -> None:
        self.pid_array = np.asarray(split.pid)
        self.pid = split.pid.tolist()
        self.cam = split.cam.tolist()
        self.modality = split.modality.tolist()
        self.path = None if split.path is None else [str(p) for p in split.path]
        self.fields: dict[int, dict[str, object]] = {}  # one shared description per row

    def image(self, row: int) -> dict[str, object]:
        """A new dict describing the image (the caller may change it)."""
        return dict(self.shared(row))

    def shared(self, row: int) -> dict[str, object]:
        """The cached description of the image; read-only (copied into records)."""
        entry = self.fields.get(row)
        if entry is None:
            entry = {"row": row}
            if self.path is not None:
                entry["path"] = self.path[row]
            entry["pid"] = self.pid[row]
            entry["cam"] = self.cam[row]
            entry["modality"] = MODALITY_NAMES[self.modality[row]]
            self.fields[row] = entry
        return entry


# ----------------------------------------------------------------------------- writing


def ranklist_format(path: str | os.PathLike) -> str:
    """Return ``".jsonl"`` or ``".parquet"`` for an output path.

    Raises:
        OutputError: another suffix, or ``.parquet`` without pyarrow installed.
    """
    suffix = Path(os.fspath(path)).suffix.lower()
    if suffix not in FORMATS:
        raise OutputError(path, "rank lists are written as .jsonl (or .parquet with pyarrow)")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401  (optional: only for .parquet)
        except ImportError:
            raise OutputError(
                path, ".parquet needs pyarrow (pip install pyarrow); or write .jsonl"
            ) from None
    return suffix


def write_ranklists(
    path: str | os.PathLike,
    blocks: Iterable[list[Record]],
    inputs: Iterable[str | os.PathLike] = (),
    *,
    parents: bool = False,
) -> int:
    """Write record blocks as they come (JSON Lines, or Parquet with pyarrow), atomically.

    Returns the number of records written.

    Raises:
        OutputError: the output is refused (see :mod:`vireid_bench.io.files`) or cannot be
            written; the previous file is left as it was.
    """
    fmt = ranklist_format(path)
    count = 0
    with atomic_output(path, inputs, parents=parents) as (fd, tmp):
        if fmt == ".jsonl":
            with open(fd, "w", encoding="utf-8", closefd=False) as handle:
                for block in blocks:
                    for record in block:
                        handle.write(json.dumps(record, separators=(",", ":")) + "\n")
                    count += len(block)
        else:
            count = _write_parquet(tmp, blocks)
    return count


def _write_parquet(tmp: Path, blocks: Iterable[list[Record]]) -> int:
    """Parquet: one row group per block, the record's nesting kept (structs and lists)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    count = 0
    try:
        for block in blocks:
            if not block:
                continue
            table = pa.Table.from_pylist(block, schema=_parquet_schema(pa, block[0]))
            if writer is None:
                writer = pq.ParquetWriter(str(tmp), table.schema)
            writer.write_table(table)
            count += len(block)
    finally:
        if writer is not None:
            writer.close()
    return count


def _parquet_schema(pa, record: Record):
    image = [
        ("row", pa.int64()),
        *([("path", pa.string())] if "path" in record["query"] else []),  # type: ignore[operator]
        ("pid", pa.int64()),
        ("cam", pa.int64()),
        ("modality", pa.string()),
    ]
    top = pa.struct(
        [("rank", pa.int64()), *image, ("distance", pa.float64()), ("match", pa.bool_())]
    )
    return pa.schema(
        [
            ("protocol", pa.string()),
            ("variant", pa.string()),
            ("query_modality", pa.string()),
            ("gallery_modality", pa.string()),
            ("cmc", pa.string()),
            ("split", pa.int64()),
            ("trial", pa.int64()),
            ("query", pa.struct(image)),
            ("gallery_size", pa.int64()),
            ("first_hit", pa.int64()),
            ("match_ranks", pa.list_(pa.int64())),
            ("top", pa.list_(top)),
        ]
    )
