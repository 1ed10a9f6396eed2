"""What a dump holds, and what looks wrong in it: the body of ``vireid-bench inspect``."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

import numpy as np

from vireid_bench.io.dump_format import MODALITY_NAMES, FeatureDump, LazyFeatures
from vireid_bench.io.dump_validate import collapse_problem, negative_pid_problem


def leaves_root(path: str) -> bool:
    """True when an image path is absolute or has a ``..`` component (POSIX or Windows)."""
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        return True
    return ".." in posix.parts or ".." in windows.parts


def describe_dump(dump: FeatureDump) -> list[tuple[str, str]]:
    """Return (label, value) lines: attributes, feature sets, counts per modality/camera."""
    lines = [
        ("file", dump.source),
        ("dataset", dump.dataset),
        ("model", dump.model),
    ]
    if dump.description:
        lines.append(("description", dump.description))
    if dump.protocol_version is not None:
        lines.append(("protocol version", dump.protocol_version))
    for label, value in (
        ("seed", dump.seed),
        ("run", dump.run),
        ("selection", dump.selection),
        ("trained on", dump.trained_on),
    ):
        if value is not None:
            note = " (best epoch on the test set: optimistic)" if value == "test" else ""
            lines.append((label, f"{value}{note}" if label == "selection" else str(value)))
    if dump.is_synthetic:
        lines.append(("synthetic", "yes" if dump.synthetic else "yes (said by model/description)"))
    sets = ", ".join(f"{name} (D={dim})" for name, dim in dump.feature_dims.items())
    lines.append(("feature sets", sets))
    lines.append(
        (
            "default / cross / same",
            f"{dump.default_features} / {dump.cross_features} / {dump.same_features}",
        )
    )
    lines.append(
        ("splits", f"{len(dump.splits)}" + (" (trials/ groups)" if dump.has_trial_splits else ""))
    )
    for k, split in enumerate(dump.splits):
        prefix = f"trials/{k} " if dump.has_trial_splits else ""
        lines.append((f"{prefix}images", f"{split.n_images} of {np.unique(split.pid).size} ids"))
        for code, name in MODALITY_NAMES.items():
            mask = split.modality == code
            if not mask.any():
                lines.append((f"{prefix}{name}", "none"))
                continue
            cams = np.unique(split.cam[mask])
            per_cam = ", ".join(
                f"cam {c}: {int((split.cam[mask] == c).sum())} images / "
                f"{np.unique(split.pid[mask & (split.cam == c)]).size} ids"
                for c in cams
            )
            lines.append(
                (
                    f"{prefix}{name}",
                    f"{int(mask.sum())} images of {np.unique(split.pid[mask]).size} ids; {per_cam}",
                )
            )
    return lines


def dump_findings(dump: FeatureDump) -> list[str]:
    """Return warnings about a valid dump that may surprise a user (empty when none).

    Checks: a modality with no image (cross-modal settings cannot run), identities seen in
    one modality only (their cross-modal queries have no true match), cameras that appear
    in both modalities (they count as one camera in camera rules), duplicated image paths,
    paths that leave the image root (absolute, or with ``..``), negative person ids
    (Market-1501's "junk" label, scored here as ordinary identities), identical feature
    rows, zero-norm feature rows (cosine distance is undefined) and collapsed feature sets
    (all rows equal, or all on one direction).
    """
    findings = []
    for k, split in enumerate(dump.splits):
        prefix = f"trials/{k}: " if dump.has_trial_splits else ""
        present = {code for code in MODALITY_NAMES if (split.modality == code).any()}
        for code, name in MODALITY_NAMES.items():
            if code not in present:
                findings.append(f"{prefix}no {name} image: cross-modal settings cannot be scored")
        if len(present) == 2:
            ids_v = set(np.unique(split.pid[split.modality == 0]).tolist())
            ids_i = set(np.unique(split.pid[split.modality == 1]).tolist())
            only = len(ids_v ^ ids_i)
            if only:
                findings.append(
                    f"{prefix}{only} identities appear in one modality only "
                    "(their cross-modal queries have no true match)"
                )
        cams_v = set(np.unique(split.cam[split.modality == 0]).tolist())
        cams_i = set(np.unique(split.cam[split.modality == 1]).tolist())
        shared = sorted(cams_v & cams_i)
        if shared:
            findings.append(
                f"{prefix}camera id(s) {shared} used by both modalities: camera rules treat "
                "them as one camera"
            )
        if split.path is not None:
            unique_paths = np.unique(split.path.astype(str))
            if unique_paths.size != split.n_images:
                findings.append(
                    f"{prefix}path: {split.n_images - unique_paths.size} duplicated image path(s)"
                )
            outside = [str(p) for p in split.path if leaves_root(str(p))]
            if outside:
                findings.append(
                    f"{prefix}path: {len(outside)} path(s) leave the image root (absolute or "
                    f"with '..', first: {outside[0]!r}); images are looked up under the root"
                )
        negative = negative_pid_problem(split.pid)
        if negative:
            findings.append(f"{prefix}pid: {negative}")
        for name, features in split.features.items():
            if isinstance(features, LazyFeatures):
                continue
            zero = int((np.linalg.norm(features, axis=1) == 0).sum())
            if zero:
                findings.append(
                    f"{prefix}features/{name}: {zero} zero-norm row(s) (cosine distance undefined)"
                )
            duplicates = features.shape[0] - np.unique(features, axis=0).shape[0]
            if duplicates:
                findings.append(f"{prefix}features/{name}: {duplicates} duplicated row(s)")
            collapsed = collapse_problem(features)
            if collapsed:
                findings.append(f"{prefix}features/{name}: {collapsed}")
    return findings
