"""Per-pair distance recipes: which weighted sum of per-feature-set distances scores each
modality pair.

A dump may hold several feature sets (MixER: ``z_e``, ``z_r``, ``z_f``). A recipe says,
for each pair kind -- ``vv`` (visible-visible), ``ii`` (infrared-infrared), ``vi``
(visible-infrared, either direction; ``iv`` is another name for it) -- which sum
``w1 * d(set1) + w2 * d(set2) + ... + c`` is the pair's distance, ``d(set)`` being the
scorer's distance (cosine or Euclidean) on that feature set::

    vv: z_f; ii: 0.7*z_r + z_e; vi: z_e

Rules (:func:`parse_recipe`): every pair kind exactly once; each term ``WEIGHT*SET`` or
``SET`` (weight 1); weights finite and positive; at most one constant ``c`` per pair
(finite, not negative); each set at most once per pair. Weights and constants are rounded
to float32 once, here, so every backend multiplies by the same number.

Arithmetic (every backend, :func:`vireid_bench.engine.distances.recipe_distances`): float32,
terms in the order written, ``w * d`` (skipped when ``w`` is 1), summed left to right, then
``+ c``. A recipe stores canonically (:attr:`DistanceRecipe.text`) as the root attribute
``distance_recipe`` (docs/dump-format.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vireid_bench.errors import VireidBenchError

PAIRS = ("vv", "ii", "vi")
"""Pair kinds in canonical order."""
_ALIASES = {"vv": "vv", "ii": "ii", "vi": "vi", "iv": "vi"}


class RecipeError(VireidBenchError):
    """A distance recipe is malformed (the message names the pair or term at fault)."""


@dataclass(frozen=True)
class PairRecipe:
    """The distance of one pair kind: ``sum(w * d(name)) + offset``."""

    terms: tuple[tuple[float, str], ...]
    offset: float = 0.0

    @property
    def text(self) -> str:
        parts = [name if w == 1.0 else f"{_number(w)}*{name}" for w, name in self.terms]
        if self.offset:
            parts.append(_number(self.offset))
        return " + ".join(parts)


@dataclass(frozen=True)
class DistanceRecipe:
    """A validated recipe: one :class:`PairRecipe` per pair kind of :data:`PAIRS`."""

    vv: PairRecipe
    ii: PairRecipe
    vi: PairRecipe

    @property
    def text(self) -> str:
        """Canonical text, e.g. ``vv: z_f; ii: 0.7*z_r + z_e; vi: z_e``."""
        return "; ".join(f"{pair}: {getattr(self, pair).text}" for pair in PAIRS)

    def pair(self, kind: str) -> PairRecipe:
        return getattr(self, _ALIASES[kind])

    @property
    def feature_sets(self) -> tuple[str, ...]:
        """The sets the recipe reads, in order of first appearance (vv, ii, vi)."""
        names = [name for kind in PAIRS for _, name in self.pair(kind).terms]
        return tuple(dict.fromkeys(names))

    @property
    def single_set(self) -> str | None:
        """The set's name when every pair is ``d(set)`` alone (weight 1, no constant)."""
        plain = {(p.terms, p.offset) for p in (self.vv, self.ii, self.vi)}
        if len(plain) != 1:
            return None
        terms, offset = plain.pop()
        if offset or len(terms) != 1 or terms[0][0] != 1.0:
            return None
        return terms[0][1]

    @property
    def label(self) -> str:
        """What a result row's ``features`` field shows: the set, ``cross/same`` for a
        plain per-pair policy, else the recipe's text."""
        policy = self.policy_names
        if policy is None:
            return self.text
        cross, same = policy
        return cross if cross == same else f"{cross}/{same}"

    @property
    def policy_names(self) -> tuple[str, str] | None:
        """(cross, same) when the recipe is a plain v1 policy (one set per pair, weight 1,
        vv and ii alike), else None."""
        def one(p: PairRecipe) -> str | None:
            if p.offset or len(p.terms) != 1 or p.terms[0][0] != 1.0:
                return None
            return p.terms[0][1]

        same, other, cross = one(self.vv), one(self.ii), one(self.vi)
        if same is None or cross is None or same != other:
            return None
        return cross, same

    @classmethod
    def from_policy(cls, cross: str, same: str) -> DistanceRecipe:
        """The v1 per-pair policy: ``vv: same; ii: same; vi: cross``."""
        s = PairRecipe(((1.0, same),))
        return cls(vv=s, ii=s, vi=PairRecipe(((1.0, cross),)))


def _number(value: float) -> str:
    """Shortest text that rounds back to the same float32."""
    for digits in range(1, 10):
        candidate = f"{value:.{digits}g}"
        if _f32(float(candidate)) == value:
            return candidate
    return f"{value:.9g}"


def _f32(value: float) -> float:
    return float(np.float32(value))


def parse_recipe(text: str, feature_sets: Sequence[str] | None = None) -> DistanceRecipe:
    """Parse and validate a recipe; ``feature_sets``: the names a dump holds (None: any).

    Raises:
        RecipeError: one line naming the pair kind or term at fault.
    """
    if not isinstance(text, str) or not text.strip():
        raise RecipeError("empty recipe (expected e.g. 'vv: z_f; ii: z_f; vi: z_e')")
    found: dict[str, PairRecipe] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        if ":" not in part:
            raise RecipeError(f"{part.strip()!r}: expected 'PAIR: TERMS' (PAIR: vv, ii, vi)")
        kind_text, expression = part.split(":", 1)
        kind_raw = kind_text.strip().lower()
        if kind_raw not in _ALIASES:
            raise RecipeError(
                f"{kind_text.strip()!r}: unknown pair kind (valid: vv, ii, vi; iv = vi)"
            )
        kind = _ALIASES[kind_raw]
        if kind in found:
            raise RecipeError(f"{kind_raw}: pair given twice (vi and iv are the same pair)")
        found[kind] = _parse_pair(kind_raw, expression, feature_sets)
    missing = [kind for kind in PAIRS if kind not in found]
    if missing:
        raise RecipeError(f"{missing[0]}: pair missing (a recipe gives vv, ii and vi)")
    return DistanceRecipe(**found)


def _parse_pair(kind: str, expression: str, feature_sets: Sequence[str] | None) -> PairRecipe:
    terms: list[tuple[float, str]] = []
    offset: float | None = None
    if not expression.strip():
        raise RecipeError(f"{kind}: no term")
    for raw in expression.split("+"):
        term = raw.strip()
        if not term:
            raise RecipeError(f"{kind}: empty term in {expression.strip()!r}")
        if "*" in term:
            weight_text, name = (s.strip() for s in term.split("*", 1))
            weight = _weight(kind, weight_text, term)
        else:
            constant = _maybe_number(term)
            if constant is not None:
                if offset is not None:
                    raise RecipeError(f"{kind}: more than one constant term")
                if not math.isfinite(constant) or constant < 0:
                    raise RecipeError(
                        f"{kind}: constant {term!r} must be a finite number >= 0"
                    )
                offset = _f32(constant)
                continue
            weight, name = 1.0, term
        if not name or any(c.isspace() or c in "*+:;" for c in name):
            raise RecipeError(f"{kind}: {name!r} is not a feature-set name")
        if feature_sets is not None and name not in feature_sets:
            raise RecipeError(
                f"{kind}: unknown feature set {name!r} (available: {', '.join(feature_sets)})"
            )
        if any(name == other for _, other in terms):
            raise RecipeError(f"{kind}: feature set {name!r} appears twice")
        terms.append((weight, name))
    if not terms:
        raise RecipeError(f"{kind}: needs at least one feature set")
    return PairRecipe(tuple(terms), offset or 0.0)


def _maybe_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _weight(kind: str, text: str, term: str) -> float:
    value = _maybe_number(text)
    if value is None or not math.isfinite(value) or value <= 0:
        raise RecipeError(f"{kind}: bad weight {text!r} in {term!r} (a finite number > 0)")
    rounded = _f32(value)
    if rounded <= 0 or not math.isfinite(rounded):
        raise RecipeError(f"{kind}: bad weight {text!r} in {term!r} (out of float32's range)")
    return rounded


def recipe_sets(text: str) -> tuple[str, ...]:
    """The feature sets a recipe text names (parsed without a dump to check against)."""
    return parse_recipe(text).feature_sets
