"""Which convention reproduces a published number: score a dump under every variant.

``vireid-bench reconcile DUMP --target "R1=75.04,mAP=71.22"`` scores one dump under every
documented convention variant that applies to its dataset (docs/reconcile.md lists the
axes), ranks the variants by their distance to the target and gives, for each, the exact
``vireid-bench score`` command that reproduces it.

Distance to the target: the largest absolute difference, in percentage points, over the
metrics the target names (ties: the mean absolute difference, then enumeration order,
in which each axis's default comes first). A variant that cannot be scored (the official
sampler without ``rand_perm_cam.mat`` images, a setting that does not apply) is kept with
its reason and ranked last.

Cost: the dump is loaded once. Variants that differ only in sampler, shots, co-located
rule, CMC convention, V->I roles or RegDB split share one scoring pass per feature choice
(the distance blocks of each split are computed once for all their plans,
:func:`vireid_bench.engine.scoring.score_tasks`); re-ranked variants are scored per
(method, order).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vireid_bench.engine import rerank_scoring
from vireid_bench.engine.plans import METRICS, POLICY, EvaluationSetup, plan_evaluation
from vireid_bench.engine.scoring import DEFAULT_BLOCK_BYTES, aggregate, score_tasks
from vireid_bench.errors import ProtocolError, VireidBenchError
from vireid_bench.io.dump import FeatureDump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.conventions import Convention
from vireid_bench.protocol.datasets.llcm import LLCMConvention
from vireid_bench.protocol.datasets.regdb import RegDBConvention
from vireid_bench.protocol.datasets.sysu import MODES, SYSUConvention, load_rand_perm
from vireid_bench.protocol.presets import builtin_presets

TARGET_NAMES = {
    "r1": "rank1",
    "rank1": "rank1",
    "r5": "rank5",
    "rank5": "rank5",
    "r10": "rank10",
    "rank10": "rank10",
    "r20": "rank20",
    "rank20": "rank20",
    "map": "mAP",
    "minp": "mINP",
}
"""Target keys (case-insensitive) and the result field each names."""

RERANKS = (
    ("k-reciprocal", "exclusion-first"),
    ("k-reciprocal", "community"),
    ("aim", "exclusion-first"),
    ("aim", "community"),
)


def parse_target(text: str) -> dict[str, float]:
    """``"R1=75.04,mAP=71.22"`` -> ``{"rank1": 75.04, "mAP": 71.22}`` (percent).

    Raises:
        ProtocolError: an empty target, a part without ``=``, an unknown metric, a value
            that is not a finite number in [0, 100], or a metric given twice.
    """
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        name = TARGET_NAMES.get(key.strip().lower())
        if not sep or name is None:
            raise ProtocolError(
                f"target {part!r}: expected METRIC=VALUE with METRIC one of "
                "R1, R5, R10, R20, mAP, mINP"
            )
        try:
            number = float(value)
        except ValueError:
            raise ProtocolError(f"target {part!r}: {value.strip()!r} is not a number") from None
        if not math.isfinite(number) or not 0 <= number <= 100:
            raise ProtocolError(f"target {part!r}: expected a percentage in [0, 100]")
        if name in out:
            raise ProtocolError(f"target {part!r}: {key.strip()} given twice")
        out[name] = number
    if not out:
        raise ProtocolError('target: empty (e.g. "R1=75.04,mAP=71.22")')
    return out


def parse_setting(text: str) -> tuple[str, str | None]:
    """``"cross:all"`` -> ``("cross", "all")``; the mode (SYSU-MM01 all/indoor) is optional.

    Raises:
        ProtocolError: an unknown setting or mode.
    """
    setting, _, mode = text.strip().partition(":")
    settings = builtin_presets()
    if setting not in settings:
        raise ProtocolError(
            f"setting {text!r}: unknown setting {setting!r} (valid: {', '.join(settings)})"
        )
    if mode and mode not in MODES:
        raise ProtocolError(
            f"setting {text!r}: unknown search mode {mode!r} (valid: {', '.join(MODES)})"
        )
    return setting, (mode or None)


@dataclass(frozen=True)
class Variant:
    """One way to score the dump: a protocol name and the score command's options.

    Attributes:
        protocol: the ``--protocol`` value (a dataset protocol name where the dataset has
            one, so its sampling and shots are in the name).
        query_modality: ``infrared`` or ``visible``.
        axes: (axis, value) pairs describing the convention, defaults included.
        options: ``score`` options (without ``--``) and their values, defaults left out.
        convention: what the variant's convention is built from (picklable data).
        cmc, features, recipe, rerank, rerank_order: as
            :func:`~vireid_bench.engine.scoring.evaluate`
            takes them (None: the dataset's / dump's default).
    """

    protocol: str
    query_modality: str
    axes: tuple[tuple[str, str], ...]
    options: tuple[tuple[str, str], ...]
    convention: tuple[tuple[str, object], ...] = ()
    cmc: str | None = None
    features: str | None = None
    recipe: str | None = None
    rerank: str | None = None
    rerank_order: str = "exclusion-first"

    def describe(self) -> str:
        """The axes in words: ``sampler=agw shots=1 cmc=identity ...``."""
        return " ".join(f"{axis}={value}" for axis, value in self.axes)

    def command(self, dump_path: str, extra: Sequence[tuple[str, str]] = ()) -> str:
        """The ``vireid-bench score`` command that reproduces this variant."""
        words = ["vireid-bench", "score", dump_path, "--protocol", self.protocol]
        words += ["--query-modality", self.query_modality]
        for name, value in (*self.options, *extra):
            words += [f"--{name}", value]
        return " ".join(shlex.quote(w) for w in words)


@dataclass
class Outcome:
    """A variant's scored row (or why it has none) and its distance to the target."""

    variant: Variant
    row: dict[str, object] | None = None
    status: str = "ok"
    distance: float = math.inf
    mean_difference: float = math.inf
    differences: dict[str, float] = field(default_factory=dict)
    same_as: int | None = None
    """Rank of a closer variant with exactly the same six metrics (the two cannot be told
    apart on this dump), or None."""


# ----------------------------------------------------------------------------- variants


def _protocol_name(dataset: str, setting: str, mode: str, shots: int, query: str) -> str:
    suffix = "" if setting == "cross" else f":{setting}"
    if dataset == "sysu-mm01":
        return f"sysu-{mode}-{'multi' if shots == 10 else 'single'}{suffix}"
    if dataset == "regdb":
        return ("regdb-t2v" if query == "infrared" else "regdb-v2t") + suffix
    if dataset == "llcm":
        return ("llcm-i2v" if query == "infrared" else "llcm-v2i") + suffix
    return setting


def enumerate_variants(
    dump: FeatureDump,
    setting: str = "cross",
    mode: str | None = None,
    query_modality: str = "infrared",
    *,
    rand_perm: str | None = None,
    rerank: bool = True,
    distance: str = "cosine",
) -> list[Variant]:
    """Every documented convention variant that applies to the dump's dataset.

    Axes (each default first): SYSU-MM01 sampler ``agw`` | ``official`` (only with
    ``rand_perm``), shots 1 | 10, co-located rule ``any`` | ``same-id`` (cross only);
    LLCM V->I roles ``deen`` | ``visible-queries`` (cross, visible queries); RegDB every
    split averaged | one split k; every dataset: CMC by the dataset default | the other
    convention, the dump's feature policy | each feature set alone, re-ranking none |
    k-reciprocal | AIM (cosine only) in either order.
    """
    if query_modality not in ("infrared", "visible"):
        raise ProtocolError(f"unknown query modality {query_modality!r} (infrared, visible)")
    dataset = dump.dataset
    if mode is not None and dataset != "sysu-mm01":
        raise ProtocolError(
            f"setting mode {mode!r}: search modes are SYSU-MM01's, not {dataset!r}'s"
        )
    mode = mode or "all"
    # (axes, options, convention data, protocol) per dataset-convention choice
    bases: list[tuple[tuple, tuple, tuple, str]] = []
    if dataset == "sysu-mm01":
        samplers = ["agw"] + (["official"] if rand_perm is not None else [])
        rules = ["any", "same-id"] if setting == "cross" else ["any"]
        for sampler in samplers:
            for shots in (1, 10):
                for rule in rules:
                    options: list[tuple[str, str]] = []
                    if sampler != "agw":
                        options += [("sampler", sampler), ("rand-perm", str(rand_perm))]
                    elif shots != 1:  # multi-shot needs the sampler named (or refuses)
                        options.append(("sampler", "agw"))
                    if rule != "any":
                        options.append(("colocated-rule", rule))
                    bases.append(
                        (
                            (("sampler", sampler), ("shots", str(shots)), ("colocated", rule)),
                            tuple(options),
                            (("kind", "sysu"), ("sampler", sampler), ("colocated_rule", rule)),
                            _protocol_name(dataset, setting, mode, shots, query_modality),
                        )
                    )
    elif dataset == "llcm":
        roles = ["deen"]
        if setting == "cross" and query_modality == "visible":
            roles.append("visible-queries")
        for role in roles:
            options = (("llcm-v2i", role),) if role != "deen" else ()
            bases.append(
                (
                    (("v2i", role),) if len(roles) > 1 else (),
                    options,
                    (("kind", "llcm"), ("v2i", role)),
                    _protocol_name(dataset, setting, mode, 1, query_modality),
                )
            )
    elif dataset == "regdb":
        splits: list[int | None] = [None]
        if len(dump.splits) > 1:
            splits += list(range(1, len(dump.splits) + 1))
        for split in splits:
            options = (("regdb-split", str(split)),) if split is not None else ()
            bases.append(
                (
                    (("split", "mean" if split is None else str(split)),),
                    options,
                    (("kind", "regdb"), ("split", split)),
                    _protocol_name(dataset, setting, mode, 1, query_modality),
                )
            )
    else:
        bases.append(((), (), (("kind", "generic"),), setting))

    default_cmc = {"sysu-mm01": "identity", "llcm": "identity"}.get(dataset, "image")
    cmcs = [None, "image" if default_cmc == "identity" else "identity"]
    # feature axis: (features, recipe); None, None = the dump's recipe or policy
    features: list[tuple[str | None, str | None]] = [(None, None)]
    if dump.distance_recipe is not None:
        features.append((None, POLICY))
    names = list(dump.feature_dims)
    if len(names) > 1 or dump.cross_features != dump.same_features:
        features += [(name, None) for name in names]
    reranks: list[tuple[str | None, str]] = [(None, "exclusion-first")]
    if rerank:
        reranks += [r for r in RERANKS if r[0] != "aim" or distance == "cosine"]

    variants = []
    for rerank_method, order in reranks:
        for feature, recipe in features:
            for cmc in cmcs:
                for axes, options, convention, protocol in bases:
                    extra_axes = (
                        ("cmc", cmc or default_cmc),
                        ("features", feature or recipe or _default_features(dump)),
                        ("rerank", rerank_method or "none"),
                    )
                    extra_options: list[tuple[str, str]] = []
                    if cmc is not None:
                        extra_options.append(("cmc", cmc))
                    if feature is not None:
                        extra_options.append(("features", feature))
                    if recipe is not None:
                        extra_options.append(("recipe", recipe))
                    if rerank_method is not None:
                        extra_options.append(("rerank", rerank_method))
                        extra_axes += (("rerank-order", order),)
                        if order != "exclusion-first":
                            extra_options.append(("rerank-order", order))
                    variants.append(
                        Variant(
                            protocol=protocol,
                            query_modality=query_modality,
                            axes=axes + extra_axes,
                            options=options + tuple(extra_options),
                            convention=convention,
                            cmc=cmc,
                            features=feature,
                            recipe=recipe,
                            rerank=rerank_method,
                            rerank_order=order,
                        )
                    )
    return variants


def _default_features(dump: FeatureDump) -> str:
    """The features axis value of the dump's own choice: ``recipe`` when it has a
    ``distance_recipe``, else ``policy``."""
    return "recipe" if dump.distance_recipe is not None else POLICY


def _convention(data: tuple[tuple[str, object], ...], rand_perm: object) -> Convention | None:
    values = dict(data)
    kind = values.pop("kind")
    if kind == "sysu":
        perm = rand_perm if values["sampler"] == "official" else None
        return SYSUConvention(rand_perm=perm, **values)  # type: ignore[arg-type]
    if kind == "llcm":
        return LLCMConvention(**values)  # type: ignore[arg-type]
    if kind == "regdb":
        return RegDBConvention(**values)  # type: ignore[arg-type]
    return None


# ----------------------------------------------------------------------------- scoring


def distance_to(
    row: Mapping[str, object], target: Mapping[str, float]
) -> tuple[float, float, dict]:
    """(max |difference|, mean |difference|, signed differences) of a row to the target."""
    differences = {m: float(row[m]) - value for m, value in target.items()}  # type: ignore[arg-type]
    absolute = [abs(d) for d in differences.values()]
    if any(math.isnan(a) for a in absolute):
        return math.inf, math.inf, differences
    return max(absolute), float(np.mean(absolute)), differences


def reconcile(
    dump: FeatureDump,
    target: Mapping[str, float],
    *,
    setting: str = "cross",
    mode: str | None = None,
    query_modality: str = "infrared",
    rand_perm: str | None = None,
    rerank: bool = True,
    distance: str = "cosine",
    trials: int | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: Callable[[int], None] | None = None,
    variants: Sequence[Variant] | None = None,
) -> list[Outcome]:
    """Score ``dump`` under every variant; return the outcomes, closest to ``target`` first.

    Args:
        target: metric -> value in percent (:func:`parse_target`).
        setting, mode: the setting the published number is for (:func:`parse_setting`).
        rand_perm: SYSU-MM01 ``rand_perm_cam.mat``; without it the official sampler is not
            tried.
        rerank: also try re-ranked variants (the slow ones).
        progress: called with a number of variants done.
        variants: score these instead of :func:`enumerate_variants`'s.
    """
    if not target:
        raise ProtocolError("target: empty")
    unknown = sorted(set(target) - set(METRICS))
    if unknown:
        raise ProtocolError(f"target: unknown metric {unknown[0]!r}")
    if variants is None:
        variants = enumerate_variants(
            dump,
            setting,
            mode,
            query_modality,
            rand_perm=rand_perm,
            rerank=rerank,
            distance=distance,
        )
    perm = load_rand_perm(rand_perm) if rand_perm is not None else None
    outcomes = [Outcome(v) for v in variants]
    groups: dict[tuple, list[tuple[Outcome, EvaluationSetup]]] = {}
    for outcome in outcomes:
        variant = outcome.variant
        try:
            setup = plan_evaluation(
                dump,
                resolve_presets(variant.protocol),
                features=variant.features,
                recipe=variant.recipe,
                distance=distance,
                cmc=variant.cmc,
                trials=trials,
                query_modalities=[variant.query_modality],
                strict=True,
                convention=_convention(variant.convention, perm),
            )
        except VireidBenchError as exc:
            outcome.status = f"not scored: {exc}"
            if progress is not None:
                progress(1)
            continue
        key = (variant.features, variant.recipe, variant.rerank, variant.rerank_order)
        groups.setdefault(key, []).append((outcome, setup))

    for (_, _, method, order), members in groups.items():
        tasks = [task for _, setup in members for task in setup.tasks]
        context = members[0][1].context
        try:
            if method is None:
                score_tasks(dump, tasks, context, block_bytes=block_bytes)
            else:
                params = rerank_scoring.validate(method, {}, distance)
                for split_index in range(len(dump.splits)):
                    rerank_scoring.score_split_reranked(
                        dump,
                        split_index,
                        tasks,
                        context.cross_name,
                        context.same_name,
                        distance,
                        context.convention,
                        block_bytes,
                        None,
                        method,
                        params,
                        order,
                        recipe=context.recipe,
                    )
        except VireidBenchError as exc:
            for outcome, _ in members:
                outcome.status = f"not scored: {exc}"
            if progress is not None:
                progress(len(members))
            continue
        for outcome, setup in members:
            try:
                rows = aggregate(setup).rows
            except VireidBenchError as exc:
                outcome.status = f"not scored: {exc}"
                continue
            if method is not None:
                rerank_scoring.label_rows(rows, method, {}, order)
            (row,) = rows
            outcome.row = row
            outcome.distance, outcome.mean_difference, outcome.differences = distance_to(
                row, target
            )
        if progress is not None:
            progress(len(members))
    order_of = {id(o): i for i, o in enumerate(outcomes)}
    ranked = sorted(outcomes, key=lambda o: (o.distance, o.mean_difference, order_of[id(o)]))
    seen: dict[tuple, int] = {}
    for rank, outcome in enumerate(ranked, start=1):
        if outcome.row is None:
            continue
        key = tuple(round(float(outcome.row[m]), 9) for m in METRICS)  # type: ignore[arg-type]
        outcome.same_as = seen.setdefault(key, rank)
        if outcome.same_as == rank:
            outcome.same_as = None
    return ranked


def outcome_record(
    outcome: Outcome, rank: int, dump_path: str, extra: Sequence[tuple[str, str]] = ()
) -> dict[str, object]:
    """A JSON-ready record of one outcome (metrics in percent, NaN/inf as None)."""

    def clean(value: object) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    row = outcome.row or {}
    return {
        "rank": rank,
        "distance": clean(outcome.distance),
        "mean_difference": clean(outcome.mean_difference),
        "differences": {k: clean(v) for k, v in outcome.differences.items()},
        "status": outcome.status,
        "same_as": outcome.same_as,
        "variant": dict(outcome.variant.axes),
        "protocol": outcome.variant.protocol,
        "query_modality": outcome.variant.query_modality,
        "metrics": {m: clean(row.get(m, math.nan)) for m in METRICS},
        "distance_field": row.get("distance"),
        "trials": row.get("trials"),
        "command": outcome.variant.command(dump_path, extra),
    }
