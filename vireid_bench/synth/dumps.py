"""Synthetic feature dumps with controllable identity, modality and camera structure.

Each image's feature is a sum of components, each drawn once from a seeded generator:

``f = s_id * u[pid] + s_idmod * w[pid, mod] + s_mod * m[mod] + s_cam * c[cam] + s_noise * e``

* ``u[pid]``: identity component shared by both modalities (what cross-modal matching needs);
* ``w[pid, mod]``: identity component seen only in one modality (colour in visible images);
* ``m[mod]``: modality component shared by every image of a modality, which makes other
  people's same-modality images hard distractors in mixed galleries, as the MixER paper
  describes;
* ``c[cam]``: camera component (viewpoint and lighting), and ``e`` image noise.

All vectors are standard normal divided by ``sqrt(dim)`` so that each strength is the
component's expected norm. The result is deterministic for a given seed. The default
strengths were chosen so that, on a SYSU-MM01-shaped dump scored with the SYSU convention,
the settings come out in the paper's order of difficulty (Mix > Mix-Cam-ID > Mix-ID for
infrared queries; cross-modal below uni-modal), with values of the paper's magnitude.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vireid_bench.errors import DumpError
from vireid_bench.io import memory
from vireid_bench.io.dump import INFRARED, MODALITY_CODES, VISIBLE, write_dump
from vireid_bench.io.dump_open import bytes_text
from vireid_bench.synth.defaults import DEFAULT_STRENGTHS, SynthStrengths

SYSU_CAMERAS = "1,2,4,5:visible,3,6:infrared"
BYTES_PER_VALUE = 3 * 8 + 4 + 2
"""Peak bytes per feature value while synthesising: about three float64 [N, dim] arrays
alive at once while the components are summed, the float32 result and its float16 copy."""
BYTES_PER_IMAGE = 400
"""Bytes per image for the labels and paths (Python lists while they are built)."""


def parse_cameras(spec: str) -> dict[int, int]:
    """Parse ``"1,2,4,5:visible,3,6:infrared"`` into {camera: modality code}.

    Camera ids accumulate until a token ``<cam>:<modality>`` assigns the modality to them.

    Raises:
        ValueError: on an unknown modality, a non-integer camera, a camera listed twice,
            or cameras left without a modality.
    """
    cameras: dict[int, int] = {}
    pending: list[int] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        cam_text, _, modality = token.partition(":")
        try:
            cam = int(cam_text)
        except ValueError as exc:
            raise ValueError(f"--cams: {cam_text!r} is not a camera number") from exc
        pending.append(cam)
        if modality:
            if modality not in MODALITY_CODES:
                raise ValueError(f"--cams: unknown modality {modality!r} (visible, infrared)")
            for pending_cam in pending:
                if pending_cam in cameras:
                    raise ValueError(f"--cams: camera {pending_cam} listed twice")
                cameras[pending_cam] = MODALITY_CODES[modality]
            pending = []
    if pending:
        raise ValueError(f"--cams: cameras {pending} have no ':visible' or ':infrared'")
    if not cameras:
        raise ValueError("--cams: no camera given")
    return cameras


def synth_arrays(
    ids: int,
    cameras: dict[int, int],
    per_cam: int,
    dim: int,
    seed: int,
    strengths: SynthStrengths = DEFAULT_STRENGTHS,
) -> dict[str, np.ndarray]:
    """Return ``features`` float32 [N, dim], ``pid``, ``cam``, ``modality`` and ``path``.

    Images are ordered by person id, then camera, then image number; every identity has
    ``per_cam`` images in every camera. Paths follow the SYSU-MM01 layout
    ``cam<c>/<pid:04d>/<n:04d>.jpg`` (person ids start at 1).
    """
    if ids < 1 or per_cam < 1 or dim < 1:
        raise ValueError("ids, per_cam and dim must be positive")
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(dim)
    identity = rng.standard_normal((ids, dim)) * scale
    identity_modality = rng.standard_normal((ids, 2, dim)) * scale
    modality_vec = rng.standard_normal((2, dim)) * scale
    cam_list = sorted(cameras)
    camera_vec = {cam: rng.standard_normal(dim) * scale for cam in cam_list}
    pid, cam, modality, path = [], [], [], []
    for person in range(ids):
        for c in cam_list:
            for n in range(per_cam):
                pid.append(person + 1)
                cam.append(c)
                modality.append(cameras[c])
                path.append(f"cam{c}/{person + 1:04d}/{n + 1:04d}.jpg")
    pid_array = np.asarray(pid, dtype=np.int64)
    cam_array = np.asarray(cam, dtype=np.int64)
    modality_array = np.asarray(modality, dtype=np.uint8)
    index = pid_array - 1
    features = (
        strengths.identity * identity[index]
        + strengths.identity_modality * identity_modality[index, modality_array]
        + strengths.modality * modality_vec[modality_array]
        + strengths.camera * np.stack([camera_vec[c] for c in cam_array])
        + strengths.noise * rng.standard_normal((pid_array.size, dim)) * scale
    )
    return {
        "features": features.astype(np.float32),
        "pid": pid_array,
        "cam": cam_array,
        "modality": modality_array,
        "path": np.asarray(path, dtype=object),
    }


def synth_bytes(ids: int, n_cameras: int, per_cam: int, dim: int) -> int:
    """Return the memory :func:`write_synth_dump` needs at its peak, roughly (bytes)."""
    images = ids * n_cameras * per_cam
    return images * (dim * BYTES_PER_VALUE + BYTES_PER_IMAGE)


def check_synth_size(out: str, ids: int, n_cameras: int, per_cam: int, dim: int) -> None:
    """Refuse, before allocating anything, a dump too large for the memory available now.

    Raises:
        DumpError: naming ``out``, the number of images and values, the memory needed and
            the memory available (:func:`vireid_bench.io.memory.available_memory`).
    """
    needed = synth_bytes(ids, n_cameras, per_cam, dim)
    available = memory.available_memory()
    if needed > available:
        images = ids * n_cameras * per_cam
        raise DumpError(
            str(out),
            "",
            f"{images} images x {dim} dimensions need about {bytes_text(needed)} of memory to "
            f"synthesise, more than the {bytes_text(available)} available "
            "(fewer --ids, --per-cam or a smaller --dim)",
        )


def write_synth_dump(
    out: str | os.PathLike,
    *,
    ids: int = 96,
    cameras: str = SYSU_CAMERAS,
    per_cam: int = 10,
    dim: int = 256,
    seed: int = 0,
    dataset: str = "generic",
    strengths: SynthStrengths = DEFAULT_STRENGTHS,
    float16: bool = True,
    parents: bool = False,
    model: str | None = None,
    run: str | None = None,
) -> Path:
    """Write a synthetic dump (see :func:`synth_arrays`) and return its path.

    The dump records ``synthetic = True`` and ``seed``; ``model`` defaults to
    ``synthetic(seed=<seed>)`` (give one name to several seeds to make a group of runs for
    ``vireid-bench runs``); ``run`` is recorded when given.

    Raises:
        ValueError: a bad camera specification or a non-positive size.
        DumpError: a dump too large for the memory available (refused before anything is
            computed), features that overflow (float32, or float16 when ``float16``: e.g. a
            noise strength of 1e30), or a missing folder without ``parents``. Nothing is
            written then.
    """
    camera_map = parse_cameras(cameras)
    if VISIBLE not in camera_map.values() and INFRARED not in camera_map.values():
        raise ValueError("--cams: no camera of either modality")
    if ids < 1 or per_cam < 1 or dim < 1:
        raise ValueError("ids, per_cam and dim must be positive")
    check_synth_size(os.fspath(out), ids, len(camera_map), per_cam, dim)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite features: refused below
        arrays = synth_arrays(ids, camera_map, per_cam, dim, seed, strengths)
    return write_dump(
        out,
        features={"synthetic": arrays["features"]},
        pid=arrays["pid"],
        cam=arrays["cam"],
        modality=arrays["modality"],
        paths=arrays["path"],
        dataset=dataset,
        model=model or f"synthetic(seed={seed})",
        description=(
            f"vireid-bench synth: {ids} ids, cameras {cameras}, {per_cam} images per camera, "
            f"dim {dim}, strengths {strengths}"
        ),
        float16=float16,
        parents=parents,
        seed=seed,
        run=run,
        synthetic=True,
    )
