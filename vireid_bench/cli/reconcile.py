"""``vireid-bench reconcile``: which convention reproduces a published number."""

from __future__ import annotations

import json
import os

import click

from vireid_bench.cli.common import (
    ToolkitCommand,
    one_line_warnings,
    progress_bar,
    toolkit_version,
    write_output,
)
from vireid_bench.cli.options import trials_option

_SHOWN = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
_HEADERS = {"rank1": "R1", "rank5": "R5", "rank10": "R10", "rank20": "R20"}


def _render_table(records: list[dict[str, object]], target: dict[str, float], total: int) -> str:
    from tabulate import tabulate

    def number(value: object) -> str:
        return "-" if value is None else f"{value:.2f}"

    body = []
    for record in records:
        metrics = record["metrics"]
        body.append(
            [
                record["rank"],
                number(record["distance"]),
                *[number(metrics[m]) for m in _SHOWN],  # type: ignore[index]
                " ".join(f"{k}={v}" for k, v in record["variant"].items())  # type: ignore[union-attr]
                + (f" (same numbers as #{record['same_as']})" if record["same_as"] else ""),
            ]
        )
    wanted = ", ".join(f"{_HEADERS.get(k, k)}={v:g}" for k, v in target.items())
    lines = [
        f"target: {wanted}; {total} variant(s) scored, closest first "
        "(distance = largest |difference| over the target's metrics, in points)",
        "",
        tabulate(
            body,
            headers=["#", "distance", *[_HEADERS.get(m, m) for m in _SHOWN], "variant"],
            tablefmt="simple",
            disable_numparse=True,
        ),
        "",
        "commands:",
    ]
    lines += [f"  #{r['rank']}: {r['command']}" for r in records]
    return "\n".join(lines) + "\n"


@click.command("reconcile", cls=ToolkitCommand)
@click.argument("dump_path", type=click.Path(dir_okay=False))
@click.option(
    "--target",
    required=True,
    help='The published numbers, e.g. "R1=75.04,mAP=71.22" (R1, R5, R10, R20, mAP, mINP).',
)
@click.option(
    "--setting",
    default="cross",
    show_default=True,
    help="The setting the number is for: a setting name (cross, mix, mix-id, ...), "
    "with ':all' or ':indoor' for the SYSU-MM01 search mode (default all).",
)
@click.option(
    "--query-modality",
    type=click.Choice(["infrared", "visible"]),
    default="infrared",
    show_default=True,
    help="The query modality of the number (RegDB: infrared = T->V; LLCM: I->V).",
)
@click.option(
    "--rand-perm",
    type=click.Path(dir_okay=False, exists=True),
    help="SYSU-MM01 exp/rand_perm_cam.mat: also try the official sampler.",
)
@click.option(
    "--rerank/--no-rerank",
    default=True,
    show_default=True,
    help="Also try k-reciprocal and AIM re-ranking in both orders (the slow variants).",
)
@click.option(
    "--metric",
    "--distance",
    "distance",
    type=click.Choice(["cosine", "euclidean"]),
    default="cosine",
    show_default=True,
    help="Distance (passed to every variant).",
)
@trials_option
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="How many variants to print (JSON: every variant).",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout."
)
def reconcile_command(
    dump_path: str,
    target: str,
    setting: str,
    query_modality: str,
    rand_perm: str | None,
    rerank: bool,
    distance: str,
    trials: int | None,
    top: int,
    fmt: str,
    output: str | None,
) -> None:
    """Find the convention that reproduces a published number (docs/reconcile.md).

    Scores DUMP under every documented convention variant of its dataset (sampler, shots,
    CMC by image or identity, co-located rule, LLCM V->I roles, RegDB splits, feature
    choice, re-ranking and its order), ranks them by distance to --target and prints the
    closest with the 'vireid-bench score' command that reproduces each.
    """
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench.io.dump import load_dump
    from vireid_bench.results.reconcile import (
        enumerate_variants,
        outcome_record,
        parse_setting,
        parse_target,
        reconcile,
    )

    wanted = parse_target(target)
    name, mode = parse_setting(setting)
    extra: list[tuple[str, str]] = []
    if distance != "cosine":
        extra.append(("metric", distance))
    if trials is not None:
        extra.append(("trials", str(trials)))
    with one_line_warnings():
        dump = load_dump(dump_path)
        variants = enumerate_variants(
            dump,
            name,
            mode,
            query_modality,
            rand_perm=rand_perm,
            rerank=rerank,
            distance=distance,
        )
        with progress_bar(len(variants), f"reconciling {os.path.basename(dump_path)}") as bar:
            outcomes = reconcile(
                dump,
                wanted,
                rand_perm=rand_perm,
                distance=distance,
                trials=trials,
                progress=bar,
                variants=variants,
            )
    records = [
        outcome_record(o, rank, dump_path, extra) for rank, o in enumerate(outcomes, start=1)
    ]
    if fmt == "json":
        payload = {
            "vireid_bench_version": toolkit_version(),
            "dump": dump_path,
            "target": wanted,
            "setting": setting,
            "query_modality": query_modality,
            "variants": records,
        }
        text = json.dumps(payload, indent=2) + "\n"
    else:
        shown = [r for r in records if r["status"] == "ok"][:top]
        text = _render_table(shown, wanted, sum(r["status"] == "ok" for r in records))
        failed = [r for r in records if r["status"] != "ok"]
        if failed:
            click.echo(
                f"note: {len(failed)} variant(s) not scored, e.g. {failed[0]['status']}",
                err=True,
            )
    write_output(text, output)
