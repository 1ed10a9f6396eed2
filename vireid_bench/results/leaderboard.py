"""Leaderboards: per dataset, one row per model and one column group per setting.

A leaderboard is built from *results*: one model's metrics for one column of one dataset.
A column is the key ``(protocol, variant, query_modality)`` of a scoring row, written
``<protocol>[:<variant>]@<query modality>`` (``mix-id@infrared``, ``cross:indoor@infrared``).
Results come from feature dumps scored on the fly, from result files written by
``vireid-bench score --format json``, from the paper tables transcribed in
:mod:`vireid_bench.results.reported`, and (with ``--merge``) from a leaderboard CSV written earlier.

Rows are keyed ``(dataset, model, source, protocol version)``: ``source`` is ``measured``
(scored by vireid-bench under the protocol version it records) or ``reported`` (transcribed
from a paper; no protocol version). A later result for the same row and column replaces the
earlier one, whatever vireid-bench version scored it, and :meth:`Leaderboard.add` says so;
results under another protocol version get a row of their own.

This module is a façade over the modules that do the work, one per job:

* :mod:`vireid_bench.results.keys`: setting keys, columns, sort-key and metric parsing;
* :mod:`vireid_bench.results.leaderboard_inputs`: reading and validating inputs;
* :mod:`vireid_bench.results.leaderboard_table`: merging rows, building, sorting, bolding;
* :mod:`vireid_bench.results.leaderboard_render`: CSV, Markdown and HTML.
"""

from __future__ import annotations

from vireid_bench.results.keys import (
    CSV_FIXED_FIELDS,
    CSV_METRICS,
    FAMILIES,
    MARKDOWN_METRICS,
    METRIC_LABELS,
    MIXED_SETTINGS,
    OTHER_FAMILY,
    QUERY_MODALITY_CHOICES,
    SETTING_LABELS,
    SOURCES,
    Column,
    LeaderboardError,
    UnknownColumnError,
    base_setting,
    is_builtin_setting,
    parse_column_key,
    parse_metric,
    setting_key,
)
from vireid_bench.results.leaderboard_inputs import (
    check_input_path,
    check_input_paths,
    check_percent,
    check_protocol_spec,
    check_setting,
    file_sha256,
    load_input,
    load_inputs,
    results_from_dump,
    results_from_evaluation,
    results_from_json,
    results_from_leaderboard_csv,
    results_from_reported,
    results_from_rows,
    validate_result_row,
)
from vireid_bench.results.leaderboard_render import (
    RENDERERS,
    output_name,
    render_csv,
    render_html,
    render_markdown,
)
from vireid_bench.results.leaderboard_table import (
    PROTOCOL_SPEC,
    Entry,
    Leaderboard,
    LeaderboardTable,
    Result,
    build_table,
    current_protocol_version,
    protocol_fingerprint,
    resolve_sort_key,
    short_sha,
)

__all__ = [
    "CSV_FIXED_FIELDS",
    "CSV_METRICS",
    "Column",
    "Entry",
    "FAMILIES",
    "Leaderboard",
    "LeaderboardError",
    "LeaderboardTable",
    "MARKDOWN_METRICS",
    "METRIC_LABELS",
    "MIXED_SETTINGS",
    "OTHER_FAMILY",
    "PROTOCOL_SPEC",
    "QUERY_MODALITY_CHOICES",
    "RENDERERS",
    "Result",
    "SETTING_LABELS",
    "SOURCES",
    "UnknownColumnError",
    "base_setting",
    "build_table",
    "check_input_path",
    "check_input_paths",
    "check_percent",
    "check_protocol_spec",
    "check_setting",
    "current_protocol_version",
    "file_sha256",
    "is_builtin_setting",
    "load_input",
    "load_inputs",
    "output_name",
    "parse_column_key",
    "parse_metric",
    "protocol_fingerprint",
    "render_csv",
    "render_html",
    "render_markdown",
    "resolve_sort_key",
    "results_from_dump",
    "results_from_evaluation",
    "results_from_json",
    "results_from_leaderboard_csv",
    "results_from_reported",
    "results_from_rows",
    "setting_key",
    "short_sha",
    "validate_result_row",
]
