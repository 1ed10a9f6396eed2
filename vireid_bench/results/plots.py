"""Figures: CMC curves, intra/inter-class distance histograms, rank-k retrieval strips.

matplotlib is an optional dependency (``pip install 'vireid-bench[plot]'``) and is imported
only when a figure is drawn; figures are built with :class:`matplotlib.figure.Figure`
(no pyplot state, no display needed) and saved in the format the file suffix names
(``.png``, ``.svg``, ``.pdf``).

* :func:`cmc_curves` / :func:`plot_cmc`: CMC@k for k = 1..max_rank from the scorer's
  per-query first-hit ranks, averaged over trials exactly as the scorer averages R1, so the
  curve at k = 1, 5, 10, 20 equals the reported R1, R5, R10, R20.
* :func:`distance_distributions` / :func:`plot_distances`: distances between queries and
  their gallery (after the setting's exclusion rule), split into intra-class (same person)
  and inter-class, with mean and standard deviation, as the MixER paper's Fig. 4.
* :func:`retrieval_rankings` / :func:`plot_retrieval`: for a few queries, the query image
  then its top-k gallery images with green (true match) or red borders, as Fig. 5; needs
  the dump's ``path`` and the dataset's image root.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vireid_bench.engine.distances import prepared_features, recipe_block
from vireid_bench.engine.reference import exclusion_mask
from vireid_bench.errors import VireidBenchError
from vireid_bench.io.dump import MODALITY_CODES
from vireid_bench.io.files import write_with
from vireid_bench.io.recipe import DistanceRecipe
from vireid_bench.protocol.conventions import get_convention
from vireid_bench.results.keys import setting_key

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
INTRA_COLOUR = "#2ca02c"
INTER_COLOUR = "#e377c2"
MATCH_COLOUR = "#00b000"
MISS_COLOUR = "#e00000"


class PlotError(VireidBenchError):
    """A figure cannot be drawn (missing matplotlib, bad output name, no image paths)."""


def _figure_class():
    """Import matplotlib lazily; a missing extra is a one-line error."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotError("plots need matplotlib: pip install 'vireid-bench[plot]'") from exc
    return Figure


def check_outputs(outputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Return the output paths; raise PlotError when none is given or a suffix is unknown."""
    if not outputs:
        raise PlotError("no output file given (use -o FILE.png or -o FILE.svg)")
    paths = [Path(o) for o in outputs]
    for path in paths:
        if path.suffix.lower() not in PLOT_SUFFIXES:
            raise PlotError(
                f"{path}: unknown figure format {path.suffix!r} (valid: {', '.join(PLOT_SUFFIXES)})"
            )
    return paths


def save_figure(
    figure,
    outputs: Sequence[str | os.PathLike],
    inputs: Sequence[str | os.PathLike] = (),
    *,
    parents: bool = False,
) -> list[Path]:
    """Save ``figure`` to every output path (format from the suffix); return the paths.

    Each file goes through the one output writer (:func:`vireid_bench.io.files.write_with`):
    an exclusive temporary file beside it renamed into place, so an interrupted save leaves
    the previous figure intact; an output that is one of ``inputs`` or not a regular file is
    refused, and a missing folder is created only with ``parents=True``.
    """
    paths = check_outputs(outputs)
    for path in paths:
        # The figures use constrained layout; the format comes from the real suffix.
        fmt = path.suffix[1:].lower()
        write_with(path, lambda tmp, fmt=fmt: figure.savefig(tmp, dpi=120, format=fmt),
                   inputs, parents=parents)
    return paths


def _panels(n: int, width: float, height: float, max_columns: int = 4):
    """A constrained-layout Figure with ``n`` panels (at most 4 a row); (figure, axes[n])."""
    columns = min(max_columns, max(1, n))
    rows = (n + columns - 1) // columns
    figure = _figure_class()(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return figure, axes[:n]


# --------------------------------------------------------------------------- CMC


def cmc_curves(per_query: Sequence, max_rank: int = 20) -> dict[str, np.ndarray]:
    """CMC@1..max_rank in percent per setting, from an evaluation's per-query scores.

    Per trial: the share of queries with a true match whose first hit is within rank k;
    then the mean over trials (trials without a valid query are skipped), as the scorer
    averages R1..R20.

    Args:
        per_query: :attr:`vireid_bench.engine.scoring.Evaluation.per_query`.
        max_rank: the last rank k.

    Returns:
        ``{setting key: float array [max_rank]}`` in the evaluation's order.
    """
    if max_rank < 1:
        raise ValueError("max_rank must be positive")
    ranks = np.arange(1, max_rank + 1)
    per_trial: dict[str, list[np.ndarray]] = {}
    for scores in per_query:
        key = setting_key(scores.protocol, scores.variant, scores.query_modality)
        valid = scores.n_pos > 0
        per_trial.setdefault(key, [])
        if valid.any():
            first = scores.first_rank[valid]
            per_trial[key].append(100.0 * np.mean(first[:, None] <= ranks[None, :], axis=0))
    return {key: np.mean(curves, axis=0) for key, curves in per_trial.items() if curves}


def plot_cmc(curves: Mapping[str, Mapping[str, np.ndarray]], title: str = ""):
    """Draw one panel per setting with every model's CMC curve overlaid.

    Args:
        curves: ``{model label: {setting key: CMC array}}`` (from :func:`cmc_curves`).
        title: the figure title.

    Returns:
        The :class:`matplotlib.figure.Figure`; panel titles are the setting keys and line
        labels the model labels.
    """
    settings: list[str] = []
    for model_curves in curves.values():
        settings += [s for s in model_curves if s not in settings]
    if not settings:
        raise PlotError("no setting with a scored query to plot")
    figure, axes = _panels(len(settings), 3.6, 3.0)
    for ax, setting in zip(axes, settings, strict=True):
        for label, model_curves in curves.items():
            if setting in model_curves:
                values = model_curves[setting]
                ax.plot(np.arange(1, values.size + 1), values, marker=".", label=label)
        ax.set_title(setting, fontsize=9)
        ax.set_xlabel("rank k")
        ax.set_ylabel("CMC@k (%)")
        ax.set_ylim(0, 100.5)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        figure.suptitle(title)
    return figure


# --------------------------------------------------------------------------- distances


@dataclass(frozen=True)
class DistanceDistribution:
    """Query-to-gallery distances of one setting, split by identity.

    Attributes:
        setting: ``protocol[:variant]@query_modality``.
        intra, inter: float arrays of the distances to same-person and to other-person
            gallery images (after the setting's exclusion rule).
        queries: how many queries contributed.
    """

    setting: str
    intra: np.ndarray
    inter: np.ndarray
    queries: int

    def summary(self) -> dict[str, float]:
        """Mean and (population) standard deviation of both distributions."""
        out = {}
        for name, values in (("intra", self.intra), ("inter", self.inter)):
            out[f"{name}_mean"] = float(values.mean()) if values.size else float("nan")
            out[f"{name}_std"] = float(values.std()) if values.size else float("nan")
        return out


def _query_gallery_distances(dump, split_index: int, query_idx, pool_idx, distance: str):
    """Distances [len(query_idx), len(pool_idx)] under the dump's per-pair recipe (its
    ``distance_recipe``, else the cross/same-modality policy)."""
    split = dump.splits[split_index]
    rows = np.union1d(query_idx, pool_idx)
    recipe = dump.distance_recipe or DistanceRecipe.from_policy(
        dump.cross_features, dump.same_features
    )
    names = recipe.feature_sets
    sets = dict(
        zip(names, prepared_features(dump.source, split, names, distance, rows), strict=True)
    )
    return recipe_block(
        recipe,
        {name: np.ascontiguousarray(a[query_idx]) for name, a in sets.items()},
        {name: np.ascontiguousarray(a[pool_idx]) for name, a in sets.items()},
        split.modality[query_idx],
        split.modality[pool_idx],
        distance,
        dump.source,
    )


def _kept_and_matches(dump, preset, convention, plan, query_idx):
    """Bool [m, n] masks over the plan's pool: kept in the gallery, and true match."""
    split = dump.splits[plan.split]
    cam = convention.camera_keys(split.cam, preset.colocated_cameras)
    pool = plan.pool_idx
    excluded = exclusion_mask(
        split.pid[query_idx],
        cam[query_idx],
        split.modality[query_idx].astype(np.int64),
        query_idx,
        split.pid[pool],
        cam[pool],
        split.modality[pool].astype(np.int64),
        pool,
        preset.clause_codes(),
    )
    matches = split.pid[query_idx][:, None] == split.pid[pool][None, :]
    return ~excluded, matches


def _settings(dump, presets, query_modalities):
    convention = get_convention(dump.dataset)
    for preset in presets:
        preset = convention.adapt_preset(preset)  # as the scorer: a dataset's own rule
        for variant in convention.variants(preset):
            for modality_name in preset.query_modalities:
                if query_modalities is not None and modality_name not in query_modalities:
                    continue
                modality = MODALITY_CODES[modality_name]
                if convention.not_applicable(dump, preset, modality) is not None:
                    continue
                plans = convention.plans(dump, preset, variant, modality, 1)
                if plans and plans[0].query_idx.size:
                    yield convention, preset, variant, modality_name, plans[0]


def _sample_queries(query_idx: np.ndarray, max_queries: int | None, seed: int) -> np.ndarray:
    if max_queries is None or query_idx.size <= max_queries:
        return query_idx
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(query_idx, size=max_queries, replace=False))


def distance_distributions(
    dump,
    presets: Sequence,
    *,
    query_modalities: Sequence[str] | None = None,
    max_queries: int | None = 500,
    distance: str = "cosine",
    seed: int = 0,
) -> list[DistanceDistribution]:
    """Intra- and inter-class query-to-gallery distances per setting (first trial).

    Args:
        dump: a loaded :class:`~vireid_bench.io.dump.FeatureDump`.
        presets: the gallery settings.
        query_modalities: restrict to these query modalities (default: the presets').
        max_queries: use a seeded random subset of at most this many queries (None: all).
        distance: ``"cosine"`` or ``"euclidean"``, as the scorer.
        seed: seed of the query subset.
    """
    out = []
    for convention, preset, variant, modality, plan in _settings(dump, presets, query_modalities):
        queries = _sample_queries(plan.query_idx, max_queries, seed)
        dist = _query_gallery_distances(dump, plan.split, queries, plan.pool_idx, distance)
        kept, matches = _kept_and_matches(dump, preset, convention, plan, queries)
        out.append(
            DistanceDistribution(
                setting=setting_key(preset.name, variant, modality),
                intra=dist[kept & matches].astype(np.float64),
                inter=dist[kept & ~matches].astype(np.float64),
                queries=int(queries.size),
            )
        )
    return out


def distance_annotation(summary: Mapping[str, float]) -> str:
    """The text printed on each histogram panel."""
    return (
        f"intra μ={summary['intra_mean']:.3f} σ={summary['intra_std']:.3f}\n"
        f"inter μ={summary['inter_mean']:.3f} σ={summary['inter_std']:.3f}"
    )


def plot_distances(distributions: Sequence[DistanceDistribution], title: str = "", bins: int = 50):
    """Draw intra-class (green) and inter-class (pink) histograms, one panel per setting.

    Each panel is annotated with both distributions' mean μ and standard deviation σ
    (:func:`distance_annotation`). Returns the Figure.
    """
    if not distributions:
        raise PlotError("no setting with a query to plot")
    figure, axes = _panels(len(distributions), 3.8, 3.0)
    for ax, item in zip(axes, distributions, strict=True):
        values = [v for v in (item.intra, item.inter) if v.size]
        edges = np.histogram_bin_edges(np.concatenate(values), bins=bins) if values else bins
        if item.intra.size:
            ax.hist(
                item.intra,
                bins=edges,
                density=True,
                alpha=0.6,
                color=INTRA_COLOUR,
                label="intra-class",
            )
        if item.inter.size:
            ax.hist(
                item.inter,
                bins=edges,
                density=True,
                alpha=0.6,
                color=INTER_COLOUR,
                label="inter-class",
            )
        ax.text(
            0.02,
            0.97,
            distance_annotation(item.summary()),
            transform=ax.transAxes,
            va="top",
            fontsize=7,
            family="monospace",
        )
        ax.set_title(item.setting, fontsize=9)
        ax.set_xlabel("distance")
        ax.set_ylabel("density")
    axes[0].legend(fontsize=7, loc="upper right")
    if title:
        figure.suptitle(title)
    return figure


# --------------------------------------------------------------------------- retrieval


@dataclass(frozen=True)
class Ranking:
    """One query's top-k gallery images.

    Attributes:
        setting: ``protocol[:variant]@query_modality``.
        query: index of the query image in the split.
        gallery: indices of the top-k gallery images (best first).
        matches: bool per gallery image, True for a true match.
        distances: their distances.
        split: the split the indices refer to.
    """

    setting: str
    query: int
    gallery: np.ndarray
    matches: np.ndarray
    distances: np.ndarray
    split: int = 0


def retrieval_rankings(
    dump,
    preset,
    *,
    query_modality: str = "infrared",
    queries: int = 4,
    top_k: int = 6,
    distance: str = "cosine",
    seed: int = 0,
) -> list[Ranking]:
    """Rank the gallery of a few seeded random queries of one setting (first trial).

    The order is the scorer's: distance, ties by pool order (stable sort), after the
    setting's exclusion rule.
    """
    out = []
    for convention, preset_, variant, _, plan in _settings(dump, [preset], [query_modality]):
        chosen = _sample_queries(plan.query_idx, queries, seed)
        dist = _query_gallery_distances(dump, plan.split, chosen, plan.pool_idx, distance)
        kept, matches = _kept_and_matches(dump, preset_, convention, plan, chosen)
        for row, query in enumerate(chosen):
            candidates = np.flatnonzero(kept[row])
            order = candidates[np.argsort(dist[row, candidates], kind="stable")][:top_k]
            out.append(
                Ranking(
                    setting=setting_key(preset_.name, variant, query_modality),
                    query=int(query),
                    gallery=plan.pool_idx[order],
                    matches=matches[row, order],
                    distances=dist[row, order].astype(np.float64),
                    split=plan.split,
                )
            )
    return out


def image_inside(root: Path, relative: str) -> Path | None:
    """The image file ``relative`` names under ``root``, or None when it may not be read.

    Confined to ``root``: an absolute path, ``..`` components or a symlink that lead
    outside the image root are refused, and so is anything but a regular file (a FIFO
    would block the reader).
    """
    base = root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def _load_image(root: Path, relative: str):
    from matplotlib.image import imread

    path = image_inside(root, relative)
    if path is None:
        return None
    try:
        return imread(path)
    except (OSError, ValueError, SyntaxError):
        return None


def plot_retrieval(dump, rankings: Sequence[Ranking], images_root: str | os.PathLike, title=""):
    """Draw one strip per ranking: the query, then its top-k images with coloured borders.

    Returns:
        ``(figure, missing)``: the Figure and the image paths that could not be read (drawn
        as grey placeholders).

    Raises:
        PlotError: when the dump has no ``path`` field, or there is nothing to draw.
    """
    if not rankings:
        raise PlotError("no query to show")
    split = dump.splits[rankings[0].split]
    if split.path is None:
        raise PlotError(f"{dump.source}: the dump has no 'path' field; retrieval strips need it")
    strips = []
    for ranking in rankings:
        paths = dump.splits[ranking.split].path
        cells = [(str(paths[ranking.query]), None)] + [
            (str(paths[index]), match)
            for index, match in zip(ranking.gallery.tolist(), ranking.matches.tolist(), strict=True)
        ]
        strips.append((ranking.setting, cells))
    return draw_strips(strips, images_root, title)


def draw_strips(
    strips: Sequence[tuple[str, Sequence[tuple[str, bool | None]]]],
    images_root: str | os.PathLike,
    title: str = "",
):
    """Draw retrieval strips: per strip a label and cells ``(image path, match)``.

    The first cell of a strip is the query (``match`` None, black border); the others get a
    green (true match) or red border. Images are read only inside ``images_root``
    (:func:`image_inside`); the others are drawn as grey placeholders.

    Returns:
        ``(figure, missing)``: the Figure and the image paths that could not be read.

    Raises:
        PlotError: matplotlib missing, or nothing to draw.
    """
    figure_class = _figure_class()
    if not strips:
        raise PlotError("no query to show")
    root = Path(images_root)
    columns = max(len(cells) for _, cells in strips)
    figure = figure_class(figsize=(1.1 * columns, 2.1 * len(strips)), layout="constrained")
    axes = figure.subplots(len(strips), columns, squeeze=False)
    missing: list[str] = []
    placeholder = np.full((8, 4, 3), 0.8)
    for row, (label, cells) in enumerate(strips):
        for col in range(columns):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(cells):
                ax.set_visible(False)
                continue
            path, match = cells[col]
            image = _load_image(root, path)
            if image is None:
                missing.append(path)
                image = placeholder
            ax.imshow(image, aspect="auto")
            colour = "black" if match is None else (MATCH_COLOUR if match else MISS_COLOUR)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(1.5 if match is None else 3)
            if col == 0:
                ax.set_title("query", fontsize=7)
                ax.set_ylabel(label, fontsize=6)
            else:
                ax.set_title(str(col), fontsize=7)
    if title:
        figure.suptitle(title)
    return figure, missing
