"""Setting keys and leaderboard columns: the names results are filed under.

A column is the key ``(protocol, variant, query_modality)`` of a scoring row, written
``<protocol>[:<variant>]@<query modality>`` (``mix-id@infrared``, ``cross:indoor@infrared``)
by :func:`setting_key`. :class:`Column` knows its column group (the paper's Tables 1-2),
display order and label. Used by the leaderboard, the regression check, statistics and plots.

Only the built-in settings (:func:`vireid_bench.protocol.presets.builtin_presets`) and the
dataset protocols derived from them name leaderboard columns (:func:`is_builtin_setting`).
"""

from __future__ import annotations

from dataclasses import dataclass

from vireid_bench.errors import VireidBenchError
from vireid_bench.protocol.conventions import get_convention, split_dataset_preset
from vireid_bench.protocol.presets import builtin_presets

MIXED_SETTINGS = ("mix", "mix-cam", "mix-cam-id", "mix-id", "mix-p")
FAMILIES = (
    ("Mixed-Modal", MIXED_SETTINGS),
    ("Cross-Modal", ("cross",)),
    ("Uni-Modal", ("uni",)),
)
OTHER_FAMILY = "Other"
SETTING_LABELS = {
    "mix": "Mix",
    "mix-cam": "Mix-Cam",
    "mix-cam-id": "Mix-Cam-ID",
    "mix-id": "Mix-ID",
    "mix-p": "Mix-P",
    "cross": "Cross",
    "uni": "Uni",
}
CSV_METRICS = ("rank1", "mAP", "mINP")
MARKDOWN_METRICS = ("rank1", "mAP")
METRIC_LABELS = {"rank1": "R1", "mAP": "mAP", "mINP": "mINP"}
_METRIC_ALIASES = {"r1": "rank1", "rank1": "rank1", "map": "mAP", "minp": "mINP"}
_MODALITY_ALIASES = {"i": "infrared", "infrared": "infrared", "v": "visible", "visible": "visible"}
_SHORT = {"infrared": "I", "visible": "V"}
QUERY_MODALITY_CHOICES = ("paper", "infrared", "visible", "both")
SOURCES = ("measured", "reported")
CSV_FIXED_FIELDS = (
    "dataset",
    "model",
    "source",
    "venue",
    "protocol_version",
    "vireid_bench_version",
    "trials",
    "sha256",
    "origin",
    "citation",
)
CSV_ROW_FIELDS = ("data", "reranked", "selection", "runs")
"""Per-row fields the CSV carries after :data:`CSV_FIXED_FIELDS` (CSVs written before them
still read): ``real``/``synthetic``, ``yes`` when re-ranked, the checkpoint selection(s),
the number(s) of training runs behind the row."""


class LeaderboardError(VireidBenchError):
    """An input to the leaderboard is unreadable or inconsistent, or a sort key is unknown."""


class UnknownColumnError(LeaderboardError):
    """A sort key names no column of the table."""


def setting_key(protocol: str, variant: str, query_modality: str) -> str:
    """The canonical text key of a setting: ``protocol[:variant]@query_modality``."""
    return f"{protocol}{':' + variant if variant else ''}@{query_modality}"


@dataclass(frozen=True)
class Column:
    """A leaderboard column: one setting, variant and query modality.

    Attributes:
        protocol: preset name (``"mix-id"``).
        variant: dataset variant (``"all"``, ``"indoor"``) or ``""``.
        query_modality: ``"infrared"`` or ``"visible"``.
    """

    protocol: str
    variant: str
    query_modality: str

    @property
    def family(self) -> str:
        """The column group: ``Mixed-Modal``, ``Cross-Modal``, ``Uni-Modal`` or ``Other``."""
        for name, protocols in FAMILIES:
            if self.protocol in protocols:
                return name
        return OTHER_FAMILY

    @property
    def key(self) -> str:
        """The canonical text key, e.g. ``cross:indoor@infrared``."""
        return setting_key(self.protocol, self.variant, self.query_modality)

    def order(self) -> tuple[int, int, str, str, int]:
        """Sort key: the paper's column order, unknown presets last by name."""
        for family_index, (_, protocols) in enumerate(FAMILIES):
            if self.protocol in protocols:
                position = (family_index, protocols.index(self.protocol), "")
                break
        else:
            position = (len(FAMILIES), 0, self.protocol)
        modality_rank = 0 if self.query_modality == "infrared" else 1
        return (*position, self.variant, modality_rank)

    def direction(self) -> str:
        """The query→gallery direction as the paper writes it (``I→V``, ``I→I``, ``I→V+I``)."""
        query = _SHORT.get(self.query_modality, self.query_modality)
        if self.family == "Mixed-Modal":
            return f"{query}→V+I"
        if self.protocol == "uni":
            return f"{query}→{query}"
        if self.protocol == "cross":
            return f"{query}→{'V' if query == 'I' else 'I'}"
        return query

    def label(self, with_variant: bool, with_direction: bool) -> str:
        """A short display label (``Mix-ID``, ``Cross indoor``, ``Uni V→V``)."""
        parts = [SETTING_LABELS.get(self.protocol, self.protocol)]
        if with_variant and self.variant:
            parts.append(self.variant)
        if with_direction:
            parts.append(self.direction())
        return " ".join(parts)


def base_setting(protocol: str) -> str:
    """The setting a scoring row's ``protocol`` stands for.

    Dataset protocols (``sysu-all-multi:mix-id``, or ``sysu-all-single`` for the cross
    setting) are the builtin setting sampled as the dataset says; the sampling shows in the
    row's ``variant``. A leaderboard column is the setting, so the name is mapped back.
    """

    found = split_dataset_preset(protocol)
    return protocol if found is None else found[1]


def parse_column_key(text: str) -> tuple[str, str | None, str | None]:
    """Split ``protocol[:variant][@modality]`` into its parts (None when not given).

    ``@I``/``@V`` abbreviate ``@infrared``/``@visible``.

    Raises:
        LeaderboardError: on an empty protocol or an unknown modality.
    """
    setting, _, modality = text.strip().partition("@")
    protocol, colon, variant = setting.partition(":")
    if not protocol:
        raise LeaderboardError(f"column key {text!r}: no setting")
    query_modality = None
    if modality:
        query_modality = _MODALITY_ALIASES.get(modality.lower())
        if query_modality is None:
            raise LeaderboardError(
                f"column key {text!r}: unknown query modality {modality!r} (infrared, visible)"
            )
    return protocol, (variant if colon else None), query_modality


def parse_metric(text: str) -> str:
    """Return the canonical metric name for ``R1``/``rank1``/``mAP``/``mINP`` (any case)."""
    metric = _METRIC_ALIASES.get(text.strip().lower())
    if metric is None:
        raise LeaderboardError(f"unknown metric {text!r} (valid: R1, mAP, mINP)")
    return metric


def is_builtin_setting(protocol: str) -> bool:
    """Whether a scoring row's ``protocol`` is a built-in setting (or a dataset protocol of
    one): the only names that map to leaderboard columns."""
    return base_setting(protocol) in builtin_presets()


def absent_metrics(dataset: str, column: Column) -> tuple[str, ...]:
    """Metrics a column's convention does not define, so its cells stay empty whatever a
    result file says: ``regdb-saai`` rows (RegDB ``cross:saai``) have no mINP."""
    return tuple(get_convention(dataset).absent_metrics(column.variant))


def without_absent(dataset: str, column: Column, values: dict[str, float]) -> dict[str, float]:
    """``values`` with the column's :func:`absent_metrics` set to NaN (added when missing)."""
    absent = absent_metrics(dataset, column)
    return {**values, **dict.fromkeys((m for m in absent if m in CSV_METRICS), float("nan"))}
