"""Scoring with torch on a device (``score --device cpu|cuda|auto``): the same per-query
outputs as the Numba path, with the design of the fused kernel
(:mod:`vireid_bench.engine.fused`) laid out as whole-block tensor operations.

Per split, the prepared features (:func:`~vireid_bench.engine.distances.prepared_features`:
the same normalisation and scaling as every other path) are copied to the device once. The
plans are grouped by pool (same images, same pool order: every plan of a generic dump, one
group per sampled trial gallery of SYSU-MM01 / RegDB / LLCM). Then for each block of query
rows, ONE distance block, and for each pool group:

1. **Keys.** Each distance and its pool position become one int64 key (the float's bits
   made order-preserving in the high word, the position in the low word), so ``(distance,
   pool position)`` order, ties broken by pool order, is plain integer order.
2. **True-match candidates by gather.** The query's identity in the pool comes from a
   per-identity table of pool positions (``identities x longest list``), minus the query
   itself; their keys are gathered and sorted (``queries x W``, W = the longest list).
3. **One placement, one relation code.** Every pool image is placed among the candidates
   once with ``torch.searchsorted`` (``slot``, int32) and gets one uint8 relation code
   ``c3`` (bit 2 same camera, bit 1 same co-located camera, bit 0 same modality: a
   ``label groups x label groups`` table gathered per pool image). Identity is not part of
   the code: the candidates and the query (their slots are known) are subtracted afterwards.
4. **One histogram per row** over ``(slot, c3)`` with one ``bincount`` of the flat index
   ``(row * (W + 1) + slot) * 8 + c3``, computed in place in the slot tensor.
5. **Per plan** (setting x trial gallery x CMC convention), on the small tensors only: its
   exclusion table (:func:`vireid_bench.engine.fused.job_tables`, indexed ``8 *
   same_identity + c3``) keeps some candidates (its true matches, counted by ``cnt``) and
   some codes; ``neg_before[cnt[slot]] += hist[slot, kept codes]`` gives the images ranked
   before each true match, and ranks, AP, INP and the first-hit rank follow as in
   :func:`vireid_bench.engine.kernels.metrics_from_negatives`. Gallery sizes come from
   per-label-group totals. Results are copied back per block.

The identity CMC convention (the distinct identities ranked before the first true match)
cannot be read off the histogram: for those plans only, the images before the plan's first
true match are selected from the block's slot and code tensors (``nonzero``) and their
distinct identities marked in a ``rows x identities`` table (a slower path: one more pass
over the plan's cells, plus work proportional to the number of such images).

Blocks are sized from the free device memory (CUDA: 60 % of it) or ``block_bytes`` (CPU).
TF32 is off unless ``tf32``. Counts and ranks are exact; AP is summed by torch in float64
(equal to the Numba sum to ~1e-15). torch is optional: it is imported here only, when this
backend runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from vireid_bench.engine.distances import (
    check_distances,
    prepared_features,
    recipe_distances,
    recipe_matrices,
)
from vireid_bench.engine.fused import FusedJob, job_tables, label_groups
from vireid_bench.engine.plans import ScoringContext, Task, empty_scores, split_jobs
from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import FeatureDump

DEVICES = ("cpu", "cuda", "auto")
BYTES_PER_CELL = 32
"""Device bytes per (query, pool image) cell of a block at its peak: the float32 distance,
the int64 key, the int32 slot / flat index, the uint8 code and temporaries."""
SEEN_BYTES = 256 * 1024**2
"""Bytes of the identity CMC path's ``rows x identities`` table (rows chunked to fit)."""
CUDA_MEMORY_SHARE = 0.6
"""Share of the free CUDA memory one block may use."""
_LOW_WORD = 32
_NEVER = 2**63 - 1


def import_torch():
    """Return the torch module, or raise a one-line error saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ProtocolError(
            "--device: needs PyTorch (pip install torch, or pip install 'vireid-bench[torch]'); "
            "leave --device out to score with Numba"
        ) from None
    return torch


def resolve_device(device: str):
    """Return the torch device for ``cpu``, ``cuda`` (``cuda:N``) or ``auto``.

    Raises:
        ProtocolError: an unknown name, no torch, or CUDA asked for but not available.
    """
    if not isinstance(device, str) or device.split(":")[0] not in DEVICES:
        raise ProtocolError(f"unknown device {device!r} (valid: {', '.join(DEVICES)})")
    torch = import_torch()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ProtocolError(f"--device {device}: no CUDA device is available to torch")
    return torch.device(device)


@contextlib.contextmanager
def tf32_mode(torch, enabled: bool) -> Iterator[None]:
    """TF32 matmuls on or off for the duration (restored after)."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def score_tasks_torch(
    dump: FeatureDump,
    tasks: list[Task],
    context: ScoringContext,
    *,
    device: str = "auto",
    tf32: bool = False,
    block_bytes: int = 256 * 1024**2,
    progress: Callable[[int], None] | None = None,
    splits: Sequence[int] | None = None,
) -> None:
    """Phase (b) on a torch device: append each plan's scores to its task (as
    :func:`vireid_bench.engine.scoring.score_tasks` does); ``splits``: only these splits.

    Raises:
        ProtocolError: no torch, an unavailable device, or features not in memory.
        DumpError: non-finite distances, zero-norm rows under cosine.
    """
    torch = import_torch()
    target = resolve_device(device)
    for split in dump.splits:
        for name in {context.cross_name, context.same_name}:
            if not isinstance(split.features[name], np.ndarray):
                raise ProtocolError(
                    f"{dump.source}: --device needs the features in memory; raise --memory-limit"
                )
    with tf32_mode(torch, tf32), torch.no_grad():
        for split_index in range(len(dump.splits)) if splits is None else splits:
            _score_split(torch, target, dump, split_index, tasks, context, block_bytes, progress)


def order_keys(torch, dist):
    """int64 keys ordered as (distance, pool position); ``dist`` finite float32 [m, n].

    ``dist`` is changed in place only where it holds -0.0 (made +0.0, an equal distance).
    """
    dist.add_(0.0)  # -0.0 + 0.0 = +0.0: equal distances get equal keys
    keys = dist.view(torch.int32).to(torch.int64)
    negative = keys < 0
    if bool(negative.any()):  # negative floats: flip the magnitude bits (order reversed)
        keys[negative] = keys[negative] ^ 0x7FFFFFFF
    del negative
    keys.bitwise_left_shift_(_LOW_WORD)
    keys.bitwise_or_(torch.arange(dist.shape[1], device=dist.device, dtype=torch.int64)[None, :])
    return keys


@dataclass
class _Entry:
    task: Task
    plan: object
    scores: object
    q_pos: np.ndarray  # positions of the plan's queries in the split's query union
    table: object  # bool [16] on the device: excluded, by 8 * same_identity + c3
    identity_cmc: bool
    keep_bits: int  # bit c set when the plan keeps the non-identity images of code c


@dataclass
class _PoolGroup:
    """The device tables of the plans that share one pool."""

    members: list[int]
    pool: np.ndarray  # split indices, pool order
    cols: object  # int64 [n] columns of the pool in the pool union, None when all in order
    g_group: object  # int64 [n] label group of each pool image
    g_dense: object  # int64 [n] dense identity of each pool image
    id_table: object  # int64 [identities, W] pool positions of each identity, -1 padded
    totals: object  # int64 [groups, 8] pool images per relation code, per query label group
    uid_order: np.ndarray  # pool positions sorted by split index
    uid_sorted: np.ndarray  # the split indices in that order


def _label_groups(camera_keys, modality):
    """Per image its label group (int64) and the relation table: :func:`fused.label_groups`
    over the literal and co-located camera keys and the modality."""
    group, relation = label_groups(camera_keys[False], camera_keys[True], modality)
    return group.astype(np.int64), relation


def _pool_group(torch, target, members, pool, pool_union, img_group, relation, dense_pid, n_ids):
    def on(array):
        return torch.from_numpy(np.ascontiguousarray(array)).to(target)

    n = pool.size
    cols = np.searchsorted(pool_union, pool)
    g_group = img_group[pool]
    g_dense = dense_pid[pool]
    counts = np.bincount(g_dense, minlength=n_ids)
    width = max(1, int(counts.max(initial=0)))
    order = np.argsort(g_dense, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    table = np.full((n_ids, width), -1, dtype=np.int64)
    table[g_dense[order], np.arange(n) - starts[g_dense[order]]] = order
    per_group = np.bincount(g_group, minlength=relation.shape[0])
    totals = np.zeros((relation.shape[0], 8), dtype=np.int64)
    for a in range(relation.shape[0]):
        np.add.at(totals[a], relation[a], per_group)
    uid_order = np.argsort(pool, kind="stable")
    return _PoolGroup(
        members=members,
        pool=pool,
        cols=None if np.array_equal(cols, np.arange(pool_union.size)) else on(cols),
        g_group=on(g_group),
        g_dense=on(g_dense),
        id_table=on(table),
        totals=on(totals),
        uid_order=uid_order,
        uid_sorted=pool[uid_order],
    )


def rows_per_block(torch, target, n_pool: int, matrices: int, width: int, block_bytes: int):
    per_row = n_pool * (BYTES_PER_CELL + 4 * (matrices - 1)) + 8 * 8 * (width + 2) * 4
    budget = block_bytes
    if target.type == "cuda":
        free, _ = torch.cuda.mem_get_info(target)
        budget = int(CUDA_MEMORY_SHARE * free)
    return max(1, budget // max(1, per_row))


def _score_split(torch, target, dump, split_index, tasks, context, block_bytes, progress):
    split = dump.splits[split_index]
    jobs, query_union, pool_union = split_jobs(tasks, split_index)
    if not jobs:
        return
    if pool_union.size == 0:
        for task, plan in jobs:
            task.scores.append(empty_scores(task, plan))
        return
    recipe = context.pair_recipe
    names = recipe.feature_sets
    rows_used = np.union1d(query_union, pool_union)
    sets = dict(
        zip(
            names,
            prepared_features(dump.source, split, names, context.distance, rows_used),
            strict=True,
        )
    )

    def on_device(array):
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(target)

    gallery = {name: on_device(array[pool_union]) for name, array in sets.items()}
    pool_modality = torch.from_numpy(split.modality[pool_union].astype(np.int64)).to(target)
    _, dense_pid = np.unique(split.pid, return_inverse=True)
    dense_pid = dense_pid.reshape(-1).astype(np.int64)
    n_ids = int(dense_pid.max(initial=-1)) + 1
    camera_keys = {c: context.convention.camera_keys(split.cam, c) for c in (False, True)}
    img_group, relation = _label_groups(camera_keys, split.modality)
    relation_t = torch.from_numpy(relation).to(target)

    entries: list[_Entry] = []
    by_pool: dict[bytes, list[int]] = {}
    for task, plan in jobs:
        scores = empty_scores(task, plan)
        task.scores.append(scores)
        fused = FusedJob(
            np.empty(0, np.int64), task.preset.clause_codes(),
            bool(task.preset.colocated_cameras), task.cmc == "identity",
        )  # fmt: skip
        by_pool.setdefault(np.asarray(plan.pool_idx, np.int64).tobytes(), []).append(len(entries))
        table = job_tables([fused])[0]
        entries.append(
            _Entry(
                task, plan, scores, np.searchsorted(query_union, plan.query_idx),
                torch.from_numpy(table).to(target), fused.identity_cmc,
                int(sum(1 << c for c in range(8) if not table[c])),
            )  # fmt: skip
        )
    groups = [
        _pool_group(
            torch, target, members, np.asarray(entries[members[0]].plan.pool_idx, np.int64),
            pool_union, img_group, relation, dense_pid, n_ids,
        )  # fmt: skip
        for members in by_pool.values()
    ]
    width = max(int(g.id_table.shape[1]) for g in groups)
    matrices = recipe_matrices(recipe)
    rows = rows_per_block(torch, target, pool_union.size, matrices, width, block_bytes)
    for start in range(0, query_union.size, rows):
        stop = min(start + rows, query_union.size)
        block_idx = query_union[start:stop]
        q_mod = torch.from_numpy(split.modality[block_idx].astype(np.int64)).to(target)

        def block_of(name, block_idx=block_idx):
            d = _distances(torch, on_device(sets[name][block_idx]), gallery[name], context.distance)
            _check(torch, d, dump.source, name)
            return d

        # the per-pair recipe, combined as every backend does (engine.distances)
        dist = recipe_distances(
            recipe, block_of, q_mod[:, None], pool_modality[None, :], torch.where
        )
        del q_mod
        for group in groups:
            _score_group(
                torch, dist, start, stop, block_idx, group, entries, img_group, relation_t,
                dense_pid, n_ids,
            )  # fmt: skip
        del dist
        if progress is not None:
            progress(stop - start)


def _distances(torch, query, gallery, distance):
    """float32 distances, the formulas of :func:`~vireid_bench.engine.distances.distance_block`."""
    product = query @ gallery.T
    if distance == "cosine":
        return torch.sub(1.0, product, out=product)
    query_sq = (query * query).sum(1)
    gallery_sq = (gallery * gallery).sum(1)
    product *= -2.0
    product += query_sq[:, None]
    product += gallery_sq[None, :]
    product.clamp_(min=0.0)
    return product.sqrt_()


def _check(torch, dist, source, name):
    if not bool(torch.isfinite(dist).all()):
        check_distances(dist.cpu().numpy(), source, name)  # raises the one-line DumpError


def _self_positions(group: _PoolGroup, query_idx: np.ndarray) -> np.ndarray:
    """int64 [m, S]: the pool positions holding each query image itself, -1 padded."""
    lo = np.searchsorted(group.uid_sorted, query_idx, side="left")
    hi = np.searchsorted(group.uid_sorted, query_idx, side="right")
    most = int((hi - lo).max(initial=0))
    out = np.full((query_idx.size, most), -1, dtype=np.int64)
    for s in range(most):
        has = hi - lo > s
        out[has, s] = group.uid_order[lo[has] + s]
    return out


def _score_group(
    torch, dist, start, stop, block_idx, group, entries, img_group, relation, dense_pid, n_ids
):
    """Score the block's queries of every plan of one pool group (module docstring)."""
    device = dist.device
    picked = []
    for k in group.members:
        sel = np.flatnonzero((entries[k].q_pos >= start) & (entries[k].q_pos < stop))
        picked.append(sel)
    local = [entries[k].q_pos[sel] - start for k, sel in zip(group.members, picked, strict=True)]
    rows = np.unique(np.concatenate(local))
    if rows.size == 0:
        return
    m = rows.size

    def on(array):
        return torch.from_numpy(np.ascontiguousarray(array)).to(device)

    d = dist if m == dist.shape[0] else dist.index_select(0, on(rows.astype(np.int64)))
    if group.cols is not None:
        d = d.index_select(1, group.cols)
    query_idx = block_idx[rows]
    q_dense = on(dense_pid[query_idx])
    q_self = on(_self_positions(group, query_idx))
    rel_rows = relation.index_select(0, on(img_group[query_idx]))  # uint8 [m, groups]
    width = group.id_table.shape[1]

    # 1-2: keys, and the candidates (the query's identity minus the query) sorted by key
    keys = order_keys(torch, d)
    del d
    cand_pos = group.id_table.index_select(0, q_dense)  # [m, W]
    cand_valid = cand_pos >= 0
    if q_self.shape[1]:
        cand_valid &= ~(cand_pos[:, :, None] == q_self[:, None, :]).any(2)
    cand_keys = keys.gather(1, cand_pos.clamp(min=0)).masked_fill_(~cand_valid, _NEVER)
    sorted_keys, perm = cand_keys.sort(dim=1)
    del cand_keys
    sorted_pos = cand_pos.gather(1, perm).clamp_(min=0)
    sorted_valid = sorted_keys != _NEVER
    del perm, cand_pos, cand_valid
    cc = rel_rows.gather(1, group.g_group[sorted_pos]).to(torch.int64)  # [m, W] codes

    # 3: every pool image placed once among the candidates; its relation code
    slot = torch.searchsorted(sorted_keys, keys, out_int32=True)  # [m, n]
    self_valid = q_self >= 0
    self_pos = q_self.clamp(min=0)
    self_slot = torch.searchsorted(sorted_keys, keys.gather(1, self_pos)).to(torch.int64)
    del keys
    self_code = rel_rows.gather(1, group.g_group[self_pos]).to(torch.int64)
    code = rel_rows.index_select(1, group.g_group)  # uint8 [m, n]

    row_local = []
    for k, sel in zip(group.members, picked, strict=True):
        row_local.append(on(np.searchsorted(rows, entries[k].q_pos[sel] - start)))

    # the identity CMC convention: distinct identities before the first true match
    first_identity = {}
    for k, r in zip(group.members, row_local, strict=True):
        entry = entries[k]
        if entry.identity_cmc and r.numel():
            first_identity[k] = _identity_first_rank(
                torch, entry, r, slot, code, cc, sorted_valid, group.g_dense, q_dense, n_ids
            )

    # 4: one histogram per row over (slot, code), in place in the slot tensor
    bins = (width + 1) * 8
    if m * bins >= 2**31:
        slot = slot.to(torch.int64)
    slot.mul_(8).add_(code)
    del code
    slot.add_(torch.arange(m, device=device, dtype=slot.dtype)[:, None] * bins)
    hist = torch.bincount(slot.view(-1), minlength=m * bins)
    del slot
    # the candidates and the query itself are no negatives: take them out
    row_base = torch.arange(m, device=device, dtype=torch.int64)[:, None]
    at = (row_base * (width + 1) + torch.arange(width, device=device)[None, :]) * 8 + cc
    hist.index_add_(0, at[sorted_valid], torch.full_like(at[sorted_valid], -1))
    at = (row_base * (width + 1) + self_slot) * 8 + self_code
    hist.index_add_(0, at[self_valid], torch.full_like(at[self_valid], -1))
    hist = hist.view(m, width + 1, 8)
    same_c3 = torch.zeros(m * 8, dtype=torch.int64, device=device)
    same_c3.index_add_(0, (row_base * 8 + cc)[sorted_valid], torch.ones_like(cc[sorted_valid]))
    same_c3.index_add_(
        0, (row_base * 8 + self_code)[self_valid], torch.ones_like(self_code[self_valid])
    )
    others = group.totals.index_select(0, on(img_group[query_idx])) - same_c3.view(m, 8)

    # 5: per plan, off the histogram
    k_rank = torch.arange(1, width + 1, device=device, dtype=torch.int64)[None, :]
    for k, sel, r in zip(group.members, picked, row_local, strict=True):
        if sel.size == 0:
            continue
        entry = entries[k]
        keep_codes = (~entry.table[:8]).to(torch.int64)  # [8]
        true = ~entry.table[8:][cc.index_select(0, r)] & sorted_valid.index_select(0, r)
        cnt = torch.nn.functional.pad(torch.cumsum(true, dim=1), (1, 0))  # [mj, W + 1]
        n_pos = cnt[:, width]
        per_slot = (hist.index_select(0, r) * keep_codes).sum(2)  # [mj, W + 1]
        neg_before = torch.zeros((r.numel(), width + 2), dtype=torch.int64, device=device)
        neg_before.scatter_add_(1, cnt, per_slot)
        ranks = k_rank + torch.cumsum(neg_before[:, :width], dim=1)
        has = n_pos > 0
        precision = torch.where(k_rank <= n_pos[:, None], k_rank / ranks.double(), 0.0)
        ap = torch.where(has, precision.sum(1) / n_pos.clamp(min=1), float("nan"))
        last = ranks.gather(1, (n_pos - 1).clamp(min=0)[:, None])[:, 0]
        inp = torch.where(has, n_pos / last.double(), float("nan"))
        first = first_identity.get(k, ranks[:, 0])
        first_rank = torch.where(has, first, 0)
        n_gallery = n_pos + (others.index_select(0, r) * keep_codes).sum(1)
        out = {
            "first_rank": first_rank, "ap": ap, "inp": inp, "n_pos": n_pos,
            "n_gallery": n_gallery,
        }  # fmt: skip
        for key, values in out.items():
            getattr(entry.scores, key)[sel] = values.cpu().numpy()


def _identity_first_rank(torch, entry, r, slot, code, cc, sorted_valid, g_dense, q_dense, n_ids):
    """1 + the distinct identities of the kept images ranked before the plan's first true
    match, for the rows ``r`` (the slower path: reads the block's slot and code tensors)."""
    true = ~entry.table[8:][cc.index_select(0, r)] & sorted_valid.index_select(0, r)
    has = true.any(1)
    first = torch.where(has, true.int().argmax(1), -1)  # sorted index of the first match
    before = slot.index_select(0, r) <= first[:, None].to(slot.dtype)
    kept = torch.bitwise_right_shift(
        torch.tensor(entry.keep_bits, dtype=torch.uint8, device=slot.device),
        code.index_select(0, r),
    )
    before &= (kept & 1).bool()
    del kept
    before &= g_dense[None, :] != q_dense.index_select(0, r)[:, None]
    distinct = torch.empty(r.numel(), dtype=torch.int64, device=slot.device)
    chunk = max(1, SEEN_BYTES // max(1, n_ids))
    for lo in range(0, r.numel(), chunk):  # a [rows, identities] "seen" table per chunk
        i, j = before[lo : lo + chunk].nonzero(as_tuple=True)
        rows = min(chunk, r.numel() - lo)
        seen = torch.zeros(rows * n_ids, dtype=torch.bool, device=slot.device)
        seen[i * n_ids + g_dense[j]] = True
        distinct[lo : lo + rows] = seen.view(rows, n_ids).sum(1)
        del i, j, seen
    return distinct + 1
