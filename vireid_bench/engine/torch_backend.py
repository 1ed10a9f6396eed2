"""Scoring with torch on a device (``score --device cpu|cuda|auto``): the same per-query
outputs as the Numba path.

Per split, the prepared features (:func:`~vireid_bench.engine.distances.prepared_features`:
the same normalisation and scaling as every other path) are copied to the device once; then
for each block of query rows:

1. **Distances** by torch in float32, with the same formulas as
   :func:`~vireid_bench.engine.distances.distance_block` (TF32 off unless ``tf32``), checked
   for NaN / Inf on the device.
2. **Keys.** Each distance and its pool position become one int64 key (the float's bits made
   order-preserving in the high word, the position in the low word), so ``(distance, pool
   position)`` order, ties broken by pool order, is plain integer order.
3. **Per plan**, on the device: the relations to the query (camera, identity, modality) give
   an 8-entry exclusion-table lookup; the true matches' keys are taken in order with
   ``topk``; every other gallery image is placed among them with ``torch.searchsorted``
   and counted per slot with ``scatter_add``; ranks, AP, INP and the first-hit rank (for the
   identity convention, the distinct identities before the first true match) follow as in
   :mod:`vireid_bench.engine.kernels`. Results are copied back per block.

Blocks are sized from the free device memory (CUDA) or ``block_bytes`` (CPU). Counts and
ranks are exact; AP is summed by torch in float64 (equal to the Numba sum to ~1e-15).
torch is optional: it is imported here only, when this backend runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from vireid_bench.engine.distances import (
    check_distances,
    prepared_features,
    recipe_distances,
    recipe_matrices,
)
from vireid_bench.engine.kernels import exclusion_table
from vireid_bench.engine.plans import ScoringContext, Task, empty_scores, split_jobs
from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import FeatureDump

DEVICES = ("cpu", "cuda", "auto")
BYTES_PER_CELL = 48
"""Device bytes per (query, pool image) cell of a block: distances, keys, slots, masks."""
_LOW_WORD = 32


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
        for name in context.feature_sets:
            if not isinstance(split.features[name], np.ndarray):
                raise ProtocolError(
                    f"{dump.source}: --device needs the features in memory; raise --memory-limit"
                )
    with tf32_mode(torch, tf32), torch.no_grad():
        for split_index in range(len(dump.splits)) if splits is None else splits:
            _score_split(torch, target, dump, split_index, tasks, context, block_bytes, progress)


def _keys(torch, dist, positions):
    """int64 keys ordered as (distance, pool position); ``dist`` finite float32."""
    bits = (dist + 0.0).view(torch.int32)  # + 0.0: -0.0 becomes +0.0 (equal distances)
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    return (ordered << _LOW_WORD) | positions


def _rows_per_block(torch, target, n_pool: int, matrices: int, block_bytes: int) -> int:
    cell = BYTES_PER_CELL + 4 * (matrices - 1)
    budget = block_bytes
    if target.type == "cuda":
        free, _ = torch.cuda.mem_get_info(target)
        budget = int(0.6 * free)
    return max(1, budget // max(1, n_pool * cell))


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
    n_ids = int(dense_pid.max(initial=-1)) + 1
    camera_keys = {c: context.convention.camera_keys(split.cam, c) for c in (False, True)}

    def labels(array):
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(target)

    prepared = []
    for task, plan in jobs:
        scores = empty_scores(task, plan)
        task.scores.append(scores)
        cams = camera_keys[task.preset.colocated_cameras]
        cols = np.searchsorted(pool_union, plan.pool_idx)
        prepared.append(
            {
                "task": task,
                "plan": plan,
                "scores": scores,
                "q_pos": np.searchsorted(query_union, plan.query_idx),
                "cols": None if np.array_equal(cols, np.arange(pool_union.size)) else labels(cols),
                "cams": cams,
                "g_uid": labels(plan.pool_idx),
                "g_pid": labels(split.pid[plan.pool_idx]),
                "g_dense": labels(dense_pid[plan.pool_idx]),
                "g_cam": labels(cams[plan.pool_idx]),
                "g_mod": labels(split.modality[plan.pool_idx]),
                "positions": torch.arange(plan.pool_idx.size, device=target, dtype=torch.int64),
                "excluded": torch.from_numpy(exclusion_table(task.preset.clause_codes())).to(
                    target
                ),
            }
        )
    matrices = recipe_matrices(recipe)
    rows = _rows_per_block(torch, target, pool_union.size, matrices, block_bytes)
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
        for job in prepared:
            selected = np.flatnonzero((job["q_pos"] >= start) & (job["q_pos"] < stop))
            if selected.size == 0:
                continue
            query_idx = job["plan"].query_idx[selected]
            out = _score_job(
                torch,
                dist,
                labels(job["q_pos"][selected] - start),
                {
                    "uid": labels(query_idx),
                    "pid": labels(split.pid[query_idx]),
                    "cam": labels(job["cams"][query_idx]),
                    "mod": labels(split.modality[query_idx]),
                },
                job,
                job["task"].cmc == "identity",
                n_ids,
            )
            for key, values in out.items():
                getattr(job["scores"], key)[selected] = values
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


def _score_job(torch, dist, rows, query, job, identity_cmc, n_ids):
    """Per-query outputs of one plan for the block's rows ``rows`` (numpy arrays)."""
    d = dist.index_select(0, rows)
    if job["cols"] is not None:
        d = d.index_select(1, job["cols"])
    same_cam = query["cam"][:, None] == job["g_cam"][None, :]
    same_pid = query["pid"][:, None] == job["g_pid"][None, :]
    same_mod = query["mod"][:, None] == job["g_mod"][None, :]
    code = same_cam.to(torch.int64) * 4 + same_pid.to(torch.int64) * 2 + same_mod.to(torch.int64)
    excluded = job["excluded"][code] | (query["uid"][:, None] == job["g_uid"][None, :])
    del code, same_cam, same_mod
    true = same_pid & ~excluded
    negative = ~same_pid & ~excluded
    n_pos = true.sum(1)
    n_gallery = (~excluded).sum(1)
    del excluded
    m = d.shape[0]
    first_rank = torch.zeros(m, dtype=torch.int64, device=d.device)
    ap = torch.full((m,), float("nan"), dtype=torch.float64, device=d.device)
    inp = torch.full((m,), float("nan"), dtype=torch.float64, device=d.device)
    most = int(n_pos.max()) if m else 0
    if most > 0:
        keys = _keys(torch, d, job["positions"][None, :])
        never = torch.iinfo(torch.int64).max
        true_keys = torch.where(true, keys, torch.full_like(keys, never))
        sorted_true = torch.topk(true_keys, most, dim=1, largest=False, sorted=True).values
        del true_keys
        slot = torch.searchsorted(sorted_true, keys)  # true matches before each image
        neg_before = torch.zeros((m, most + 1), dtype=torch.int64, device=d.device)
        neg_before.scatter_add_(1, slot, negative.to(torch.int64))
        k = torch.arange(1, most + 1, device=d.device, dtype=torch.int64)
        ranks = k[None, :] + torch.cumsum(neg_before[:, :most], dim=1)
        valid = k[None, :] <= n_pos[:, None]
        has = n_pos > 0
        precision = torch.where(valid, k[None, :].double() / ranks.double(), 0.0)
        ap = torch.where(has, precision.sum(1) / n_pos.clamp(min=1).double(), ap)
        last = ranks.gather(1, (n_pos - 1).clamp(min=0)[:, None])[:, 0]
        inp = torch.where(has, n_pos.double() / last.double(), inp)
        first = ranks[:, 0]
        if identity_cmc:
            before = negative & (slot == 0)
            seen = torch.zeros((m, max(n_ids, 1)), dtype=torch.int64, device=d.device)
            seen.scatter_add_(1, job["g_dense"][None, :].expand(m, -1), before.to(torch.int64))
            first = (seen > 0).sum(1) + 1
        first_rank = torch.where(has, first, first_rank)
    return {
        "first_rank": first_rank.cpu().numpy(),
        "ap": ap.cpu().numpy(),
        "inp": inp.cpu().numpy(),
        "n_pos": n_pos.cpu().numpy().astype(np.int64),
        "n_gallery": n_gallery.cpu().numpy().astype(np.int64),
    }
