"""What a scoring row says beside its key: metrics its convention does not define, and
what its queries really are when the setting's name does not say it.

Two optional row fields, added after the result keys (:data:`NOTE_KEYS`) and only to the
rows that need them, so every other row (and every stored expected result) is unchanged:

* ``absent_metrics``: the metrics the dataset convention of the row's variant does not
  define (:meth:`~vireid_bench.protocol.conventions.Convention.absent_metrics`; RegDB's
  ``regdb-saai``: ``["mINP"]``). Their values and standard deviations are NaN (``null`` in
  JSON, empty in CSV), never a number, and so are the per-query scores behind them, so
  that statistics over queries or runs have nothing to report either.
* ``direction``: what the queries and the gallery are when the query modality (part of the
  row's key ``protocol[:variant]@query_modality``) names the setting's direction only
  (:meth:`~vireid_bench.protocol.conventions.Convention.direction`; LLCM's V->I row in
  DEEN's mode: ``v2i (DEEN test.py mode: infrared queries, visible gallery)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vireid_bench.engine.plans import METRICS, PlanScores
from vireid_bench.protocol.conventions import Convention
from vireid_bench.protocol.presets import Preset

ABSENT_KEY = "absent_metrics"
DIRECTION_KEY = "direction"
NOTE_KEYS = (DIRECTION_KEY, ABSENT_KEY)
"""Optional row fields, in output order (after the result keys)."""
PER_QUERY_FIELDS = {"mAP": "ap", "mINP": "inp"}
"""The per-query score behind a metric that can be absent."""


def absent_metrics(convention: Convention, variant: str) -> list[str]:
    """The row metrics (:data:`~vireid_bench.engine.plans.METRICS`) a variant lacks."""
    return [m for m in METRICS if m in convention.absent_metrics(variant)]


def annotate_row(
    row: dict[str, object],
    scores: Sequence[PlanScores],
    convention: Convention,
    preset: Preset,
    variant: str,
    query_modality: int,
) -> dict[str, object]:
    """Add the row's notes in place (see the module docstring); return the row.

    The absent metrics of a scored row become NaN, and so do their per-query scores in
    ``scores``.
    """
    direction = convention.direction(preset, query_modality)
    if direction:
        row[DIRECTION_KEY] = direction
    absent = absent_metrics(convention, variant)
    if absent:
        row[ABSENT_KEY] = absent
        for metric in absent:
            row[metric] = float("nan")
            row[f"{metric}_std"] = float("nan")
            field = PER_QUERY_FIELDS.get(metric)
            for plan_scores in scores if field else ():
                setattr(plan_scores, field, np.full(getattr(plan_scores, field).shape, np.nan))
    return row


def note_text(row: dict[str, object]) -> str:
    """The row's notes as one line for a table's ``note`` column (``""`` without notes)."""
    parts = []
    if row.get(DIRECTION_KEY):
        parts.append(f"direction: {row[DIRECTION_KEY]}")
    absent = row.get(ABSENT_KEY)
    if absent:
        names = ", ".join(absent) if isinstance(absent, list | tuple) else str(absent)
        parts.append(f"{names} absent: not part of the {row['protocol']} convention")
    return "; ".join(parts)
