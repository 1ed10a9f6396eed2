"""Shared pieces of ``calibrate_synth.py`` and ``ablation_synth.py`` (not a script).

* :data:`CPU_BUDGET`: the training schedule that issue 16's calibration band refers to
  ("baseline cross-modal R1 40-70 % at a CPU budget: <= 10 minutes on 2 cores, ResNet-18,
  small input"). The step count, not the device, defines the result: a GPU run of this
  schedule trains the same number of images as the CPU run would.
* :func:`train_extract_score`: one run: train (``mixer train``'s :func:`train`), extract a
  dump (``mixer extract``'s :func:`extract`), score it; with per-phase seconds.
* :func:`job_pool`: parallel runs in spawned processes (CUDA-safe), with torch, OpenMP
  and Numba threads per job set before the children import anything.
* :class:`CsvRows`: a CSV whose rows are appended (and flushed) as runs finish, so a
  timeout keeps every finished run.
* :func:`warm_kernels`: compile (and cache) the Numba scoring kernels once in the parent,
  so that N parallel jobs do not all compile them at the same time.
"""

from __future__ import annotations

import concurrent.futures
import csv
import multiprocessing
import os
import time
from pathlib import Path

CPU_BUDGET: dict[str, object] = {
    # data (synth-images): 64 ids -> 32 train (29 train + 3 val) and 32 test identities
    "ids": 64,
    "per_cam": 4,
    "size": (64, 32),  # rendered at the model's input size: no resize, fast rendering
    # training (configs/synth-baseline.toml, i.e. ResNet-18 and 8 x (2 + 2) batches, with:)
    "input": (64, 32),
    "epochs": 16,
    "iters": 24,
    "batch_ids": 8,
    "num_pos": 2,
}
"""The CPU-budget schedule: 16 epochs x 24 batches x 32 images = 12,288 training images
(16 passes over the 768 training images). Measured in docs/mixer.md ("CPU budget")."""

SYSU = "sysu-mm01"


def schedule_overrides(
    schedule: dict, seed: int, workers: int = 0, milestones: list[int] | None = None
) -> list[dict]:
    """Config overrides that put a packaged synth config on ``schedule``.

    The learning-rate drop of the synth configs (x0.1 at epoch 5 of 6) moves with the
    length: at ``epochs - 1`` (``milestones`` to choose otherwise).
    """
    epochs = int(schedule["epochs"])
    return [
        {"optim": {"epochs": epochs, "milestones": milestones or [max(1, epochs - 1)]}},
        {
            "sampler": {
                "iters_per_epoch": int(schedule["iters"]),
                "batch_ids": int(schedule["batch_ids"]),
                "num_pos": int(schedule["num_pos"]),
            }
        },
        {"input": {"height": int(schedule["input"][0]), "width": int(schedule["input"][1])}},
        {"train": {"seed": seed, "workers": workers, "cache_images": True, "log_every": 1000}},
    ]


def render(root: Path, knobs: dict, seed: int = 0) -> float:
    """Render a synthetic SYSU-MM01 set with ``knobs`` (ids, per_cam, size, shared,
    nuisance); return the seconds it took."""
    from vireid_bench.synth.images import write_synthetic_dataset

    start = time.perf_counter()  # rendering is single-threaded: wall ~ CPU time
    write_synthetic_dataset(
        root,
        SYSU,
        ids=int(knobs["ids"]),
        per_cam=int(knobs["per_cam"]),
        size=tuple(knobs["size"]),
        shared=float(knobs["shared"]),
        nuisance=float(knobs["nuisance"]),
        seed=seed,
    )
    return time.perf_counter() - start


def train_extract_score(
    root: Path,
    workdir: Path,
    config_name: str,
    overrides: list[dict],
    *,
    device: str,
    dump: Path,
    protocols: str = "all",
    model: str | None = None,
    run: str | None = None,
    float16: bool = True,
):
    """Train, extract ``dump``, score it; return (frame, seconds per phase, config hash)."""
    from vireid_bench.engine.scoring import score
    from vireid_bench.models.mixer.config import config_hash, load_config
    from vireid_bench.models.mixer.extract import extract
    from vireid_bench.models.mixer.train import train

    config = load_config(SYSU, config_name, overrides)
    seconds = {}
    start, cpu = time.perf_counter(), time.process_time()
    result = train(config, SYSU, root, workdir / (run or "run"), device=device, stream=None)
    seconds["train_s"] = time.perf_counter() - start
    seconds["train_cpu_s"] = time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    metadata = {"run": run} if run else {}
    extract(
        result.checkpoint,
        SYSU,
        root,
        dump,
        device=device,
        stream=None,
        float16=float16,
        model=model,
        metadata=metadata,
    )
    seconds["extract_s"] = time.perf_counter() - start
    seconds["extract_cpu_s"] = time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    frame = score(dump, protocols)
    seconds["score_s"] = time.perf_counter() - start
    seconds["score_cpu_s"] = time.process_time() - cpu
    seconds["train_img_s"] = result.images_per_s
    return frame, seconds, config_hash(config)


def pick_row(frame, protocol: str, query: str, variant: str = "all"):
    rows = frame[
        (frame["protocol"] == protocol)
        & (frame["variant"] == variant)
        & (frame["query_modality"] == query)
    ]
    return rows.iloc[0] if len(rows) else None


def value(frame, protocol: str, query: str, column: str = "rank1", variant: str = "all"):
    row = pick_row(frame, protocol, query, variant)
    return round(float(row[column]), 2) if row is not None else float("nan")


def threads_per_job(jobs: int, threads: int | None = None) -> int:
    """``threads`` or the CPU count shared out among ``jobs`` (at least 1)."""
    return threads or max(1, (os.cpu_count() or 1) // max(1, jobs))


def _init_job(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def job_pool(jobs: int, threads: int) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of ``jobs`` spawned processes with ``threads`` threads each.

    The thread variables are set in this (parent) process's environment before the children
    start, since a spawned child imports the calling script, hence Numba and torch, before
    any initializer runs.
    """
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(threads)
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_job,
        initargs=(threads,),
    )


def warm_kernels() -> float:
    """Score a tiny synthetic SYSU-MM01 dump under every setting (compiles the cached Numba
    kernels); return the seconds it took."""
    import tempfile

    from vireid_bench.engine.scoring import score
    from vireid_bench.synth.dumps import write_synth_dump

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warm.h5"
        write_synth_dump(path, ids=8, per_cam=2, dim=8, seed=0, dataset=SYSU)
        score(path, "all")
    return time.perf_counter() - start


class CsvRows:
    """A CSV file that gets each row as soon as it exists (header from the first row)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path else None
        self.fields: list[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def add(self, row: dict) -> None:
        if self.path is None:
            return
        with self.path.open("a", newline="") as handle:
            if self.fields is None:
                self.fields = list(row)
                csv.DictWriter(handle, fieldnames=self.fields).writeheader()
            csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore").writerow(row)
            handle.flush()
