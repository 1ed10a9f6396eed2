"""Reliability at the edges (issue 11), engine and protocol: numbers the scorer refuses to
get wrong.

Hand-made dumps whose answer is known: scale-safe normalisation and Euclidean distances, a
non-finite distance never scored, misspelt dataset names, custom protocol names that reuse
a builtin one, protocol files that are no regular UTF-8 file, Ctrl-C inside Numba, the
re-ranking progress, and the Python API's CLI spellings.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

import vireid_bench
from vireid_bench.cli.main import cli
from vireid_bench.engine import distances, scoring
from vireid_bench.engine.distances import check_distances, normalised
from vireid_bench.engine.scoring import MemoryOptions, evaluate
from vireid_bench.errors import DumpError, ProtocolError
from vireid_bench.io.dump import MODALITY_CODES, load_dump, write_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.presets import load_preset_file
from vireid_bench.protocol.registry import check_dataset_name
from vireid_bench.synth.dumps import write_synth_dump

IR, VIS = MODALITY_CODES["infrared"], MODALITY_CODES["visible"]


def known_dump(path, scale=1.0, dataset="generic", row_scale=None):
    """4 identities, one visible and one infrared image each; cross R1 is 75 (I->V), 50 (V->I).

    Visible image ``i`` is e_i; infrared ``i`` is e_i + 0.5 e_(i+1) for i = 0, 1, 2 and
    infrared 3 is e_0 + 0.3 e_3 (it looks like identity 0). Worked by hand, cosine and
    Euclidean alike, no ties: infrared queries 0, 1, 2 find their visible image first,
    infrared 3 finds visible 0; visible 1 and 2 find their infrared image first, visible 0
    finds infrared 3 and visible 3 finds infrared 2. The dump lists the images in reverse
    identity order, so collapsed features (every distance equal: ties go to pool order)
    would give 25 / 25. The answer is the same at every positive scale of the features.
    """
    eye = np.eye(4, dtype=np.float64)
    infrared = [eye[0] + 0.5 * eye[1], eye[1] + 0.5 * eye[2], eye[2] + 0.5 * eye[3]]
    infrared.append(eye[0] + 0.3 * eye[3])
    order = [3, 2, 1, 0]
    features = np.concatenate([eye[order], np.array(infrared)[order]]) * scale
    if row_scale is not None:
        features *= np.asarray(row_scale, dtype=np.float64)[:, None]
    features = features.astype(np.float32)
    assert np.isfinite(features).all()
    return write_dump(
        path,
        features=features,
        pid=np.array(order + order),
        cam=np.array([1, 1, 1, 1, 2, 2, 2, 2]),
        modality=np.array([VIS] * 4 + [IR] * 4),
        dataset=dataset,
    )


KNOWN = {"infrared": 75.0, "visible": 50.0}


def cross_r1(dump, **options):
    rows = evaluate(dump, resolve_presets("cross"), **options).rows
    return {row["query_modality"]: round(float(row["rank1"]), 2) for row in rows}


SCALES = [1e20, 1e-30, 3e37, 1e-38]
PATHS = {
    "in-memory": {},
    "streamed": {"memory": MemoryOptions(gallery_block=3, query_block=2)},
}


@pytest.mark.parametrize("path_name", list(PATHS))
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("scale", SCALES)
def test_known_cross_r1_at_any_finite_scale(tmp_path, scale, distance, path_name):
    plain = load_dump(known_dump(tmp_path / "plain.h5"))
    assert cross_r1(plain, distance=distance, **PATHS[path_name]) == KNOWN
    dump = load_dump(known_dump(tmp_path / "k.h5", scale))
    assert cross_r1(dump, distance=distance, **PATHS[path_name]) == KNOWN


@pytest.mark.parametrize("scale", [1e20, 1e-30])
def test_lazy_features_at_extreme_scale(tmp_path, scale):
    dump = load_dump(known_dump(tmp_path / "k.h5", scale), lazy=True)
    for distance in ("cosine", "euclidean"):
        assert cross_r1(dump, distance=distance) == KNOWN


def test_cli_cross_r1_with_features_scaled_by_1e20(tmp_path):
    path = known_dump(tmp_path / "k.h5", 1e20)
    result = CliRunner().invoke(cli, ["score", str(path), "--protocol", "cross", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = csv.DictReader(io.StringIO(result.stdout))
    assert {r["query_modality"]: round(float(r["rank1"]), 2) for r in rows} == KNOWN


@pytest.mark.parametrize("rerank", ["k-reciprocal", "aim"])
def test_rerank_is_scale_free(tmp_path, rerank):
    plain = write_synth_dump(
        tmp_path / "s.h5", ids=6, cameras="1,2:visible,3,4:infrared", per_cam=2, dim=16,
        seed=4, float16=False,
    )
    dump = load_dump(plain)
    huge = replace(
        dump,
        splits=[
            replace(s, features={k: v * np.float32(1e20) for k, v in s.features.items()})
            for s in dump.splits
        ],
    )
    expected = evaluate(dump, resolve_presets("cross,mix"), rerank=rerank).rows
    got = evaluate(huge, resolve_presets("cross,mix"), rerank=rerank).rows
    for a, b in zip(expected, got, strict=True):
        assert a["rank1"] == pytest.approx(b["rank1"]) and a["mAP"] == pytest.approx(b["mAP"])


def test_normalised_rows_are_unit_and_scale_free():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((5, 64)).astype(np.float32)
    unit = normalised("x.h5", "f", base, np.arange(5))
    for scale in (1e20, 1e-25, 2.0**100):
        scaled = normalised("x.h5", "f", base * np.float32(scale), np.arange(5))
        np.testing.assert_allclose(scaled, unit, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.linalg.norm(scaled, axis=1), 1.0, rtol=1e-6)


def test_zero_rows_are_still_refused_at_tiny_scale():
    features = np.array([[1e-30, 0.0], [0.0, 0.0]], dtype=np.float32)
    with pytest.raises(DumpError, match=r"1 zero-norm row\(s\) \(first at row 1\)"):
        normalised("x.h5", "f", features, np.arange(2))


def test_euclidean_scales_float32_cannot_compare_are_refused(tmp_path):
    # one image 1e-30, the others 1e30: no float32 product can rank both kinds of rows
    path = known_dump(tmp_path / "span.h5", row_scale=[1e-30] + [1e30] * 7)
    with pytest.raises(DumpError, match=r"span\.h5: features/default: row 0.*cannot rank"):
        cross_r1(load_dump(path), distance="euclidean")
    assert cross_r1(load_dump(path), distance="cosine") == KNOWN


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_distances_names_dump_and_set(bad):
    dist = np.zeros((3, 4), dtype=np.float32)
    assert check_distances(dist, "d.h5", "z") is dist
    dist[2, 1] = bad
    with pytest.raises(DumpError) as info:
        check_distances(dist, "d.h5", "z")
    message = str(info.value)
    assert message.startswith("d.h5: features/z: 1 distance(s) are NaN or infinite")
    assert "\n" not in message


def test_check_distances_ignores_a_sum_that_overflows():
    dist = np.full((4, 4), 3e38, dtype=np.float32)
    assert check_distances(dist, "d.h5", "z") is dist


@pytest.mark.parametrize("path_name", list(PATHS))
def test_non_finite_distance_block_is_never_scored(tmp_path, monkeypatch, path_name):
    dump = load_dump(known_dump(tmp_path / "k.h5"))
    real = scoring.distance_block

    def poisoned(query, gallery, distance, gallery_sq):
        dist = real(query, gallery, distance, gallery_sq)
        dist[0, 0] = np.nan
        return dist

    monkeypatch.setattr(scoring, "distance_block", poisoned)
    monkeypatch.setattr("vireid_bench.engine.distances.distance_block", poisoned)
    # Euclidean blocks come from distance_block; cosine ones: the next test
    with pytest.raises(DumpError, match=r"k\.h5: features/default: .*NaN or infinite"):
        cross_r1(dump, distance="euclidean", **PATHS[path_name])


@pytest.mark.parametrize("path_name", list(PATHS))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_product_is_never_scored(tmp_path, monkeypatch, path_name, bad):
    # the cosine path subtracts and checks in one pass after the product
    dump = load_dump(known_dump(tmp_path / "k.h5"))
    real = distances.similarity_product

    def poisoned(query, gallery):
        product = real(query, gallery)
        product[-1, -1] = bad
        return product

    monkeypatch.setattr(distances, "similarity_product", poisoned)
    with pytest.raises(DumpError, match=r"k\.h5: features/default: 1 distance\(s\) are NaN"):
        cross_r1(dump, **PATHS[path_name])


def test_one_pass_cosine_gives_numpy_bits():
    rng = np.random.default_rng(3)
    product = rng.uniform(-1.5, 1.5, (7, 300)).astype(np.float32)
    product[0, :5] = [1e-30, -1e-30, 1.0, 3e38, -3e38]
    mine = product.copy()
    assert distances._one_minus_all_finite(mine)
    np.testing.assert_array_equal(mine, np.float32(1.0) - product)
    product[3, 7] = np.nan
    assert not distances._one_minus_all_finite(product.copy())


def test_non_finite_rerank_distance_is_never_scored(tmp_path, monkeypatch):
    dump = load_dump(known_dump(tmp_path / "k.h5"))
    real = distances.similarity_product

    def poisoned(*args):
        product = real(*args)
        product[..., 0] = np.inf
        return product

    # re-ranking computes its distances with the per-pair recipe (engine.distances)
    monkeypatch.setattr(distances, "similarity_product", poisoned)
    with pytest.raises(DumpError, match=r"features/default: .*NaN or infinite"):
        cross_r1(dump, rerank="k-reciprocal")


# --- dataset names -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("SYSU-MM01", "sysu-mm01"),
        ("sysu_mm01", "sysu-mm01"),
        ("sysu", "sysu-mm01"),
        ("RegDB", "regdb"),
        ("regbd", "regdb"),
        ("LLCM", "llcm"),
    ],
)
def test_near_miss_dataset_names_are_refused_with_a_suggestion(name, suggestion):
    with pytest.raises(ProtocolError) as info:
        check_dataset_name(name)
    assert str(info.value) == (
        f"dataset {name!r} is not a known dataset (did you mean {suggestion!r}?)"
    )


@pytest.mark.parametrize("name", ["generic", "sysu-mm01", "regdb", "llcm", "market1501", "toy"])
def test_known_and_far_dataset_names_pass(name):
    assert check_dataset_name(name) == name


def test_scoring_a_misspelt_dataset_fails_instead_of_going_generic(tmp_path):
    path = known_dump(tmp_path / "typo.h5", dataset="SYSU-MM01")
    with pytest.raises(ProtocolError, match=r"typo\.h5: dataset 'SYSU-MM01' .*'sysu-mm01'"):
        cross_r1(load_dump(path))
    result = CliRunner().invoke(cli, ["score", str(path)])
    assert result.exit_code == 2
    assert "did you mean 'sysu-mm01'?" in result.output
    assert "R1" not in result.output


# --- protocol files --------------------------------------------------------------------


PRESET = """\
name = "{name}"
description = "a custom setting"
query_modalities = ["infrared", "visible"]
gallery_modality = "opposite"
exclude = [{{ modality = "same" }}]
"""


@pytest.mark.parametrize("name", ["cross", "mix", "sysu-all-single", "regdb-t2v:mix", "all"])
def test_custom_preset_may_not_reuse_a_builtin_name(tmp_path, name):
    path = tmp_path / "mine.toml"
    path.write_text(PRESET.format(name=name), encoding="utf-8")
    with pytest.raises(ProtocolError) as info:
        resolve_presets(str(path))
    assert str(info.value) == f"{path}: name: reuses the built-in name {name!r}; rename it"


def test_cli_refuses_a_custom_file_named_cross(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(PRESET.format(name="cross"), encoding="utf-8")
    dump = known_dump(tmp_path / "k.h5")
    result = CliRunner().invoke(cli, ["score", str(dump), "--protocol", str(path)])
    assert result.exit_code == 2
    assert result.output.strip().endswith("reuses the built-in name 'cross'; rename it")
    # renamed, the same file scores under its own name
    path.write_text(PRESET.format(name="my-cross"), encoding="utf-8")
    rows = evaluate(load_dump(dump), resolve_presets(str(path))).rows
    assert {r["protocol"] for r in rows} == {"my-cross"}
    assert [round(r["rank1"], 2) for r in rows] == [75.0, 50.0]


def test_non_utf8_preset_file_is_one_line_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(PRESET.format(name="caf\xe9").encode("latin-1"))
    with pytest.raises(ProtocolError) as info:
        load_preset_file(str(path))
    assert str(info.value).startswith(f"{path}: not UTF-8 (byte 0xe9 at offset")
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_preset_file_is_refused_without_waiting(tmp_path):
    path = tmp_path / "pipe.toml"
    os.mkfifo(path)
    code = (
        "import sys\n"
        "from vireid_bench.errors import ProtocolError\n"
        "from vireid_bench.protocol import resolve_presets\n"
        "try:\n"
        "    resolve_presets(sys.argv[1])\n"
        "except ProtocolError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == f"{path}: is a FIFO, not a regular file"


def test_directory_preset_file_is_refused(tmp_path):
    path = tmp_path / "folder.toml"
    path.mkdir()
    with pytest.raises(ProtocolError, match=r"folder\.toml: is a directory, not a regular file"):
        resolve_presets(str(path))


# --- interrupts inside Numba -----------------------------------------------------------


def numba_style_interrupt(interrupt: KeyboardInterrupt) -> SystemError:
    """What Numba raises when a signal's KeyboardInterrupt surfaces inside its machinery."""
    try:
        try:
            raise interrupt
        except KeyboardInterrupt as exc:
            raise SystemError("<function _numba_unpickle> returned a result") from exc
    except SystemError as exc:
        try:
            raise SystemError("CPUDispatcher(<function _kr_prepare>) returned a result") from exc
        except SystemError as outer:
            return outer


@pytest.mark.parametrize("rerank", [None, "k-reciprocal"])
def test_numba_wrapped_interrupt_comes_out_as_keyboard_interrupt(tmp_path, monkeypatch, rerank):
    dump = load_dump(known_dump(tmp_path / "k.h5"))
    interrupt = KeyboardInterrupt()

    def kernel(*args, **kwargs):
        raise numba_style_interrupt(interrupt)

    monkeypatch.setattr(scoring, "score_queries", kernel)
    monkeypatch.setattr(scoring, "score_pool_jobs", kernel)  # the fused kernel (in-memory)
    monkeypatch.setattr(scoring.rerank_scoring, "score_queries", kernel)
    with pytest.raises(KeyboardInterrupt) as info:
        cross_r1(dump, rerank=rerank)
    assert info.value is interrupt

    def buggy(*args, **kwargs):
        raise SystemError("a real bug")

    monkeypatch.setattr(scoring, "score_queries", buggy)
    monkeypatch.setattr(scoring, "score_pool_jobs", buggy)
    monkeypatch.setattr(scoring.rerank_scoring, "score_queries", buggy)
    with pytest.raises(SystemError, match="a real bug"):  # other SystemErrors pass through
        cross_r1(dump, rerank=rerank)


CHILD = textwrap.dedent(
    """
    import sys
    from vireid_bench.engine import rerank_scoring
    from vireid_bench.cli.main import main

    # compile (or load from Numba's cache) every kernel first: a signal during compilation
    # is swallowed by llvmlite ("Exception ignored on calling ctypes callback function")
    try:
        main(["score", sys.argv[2], "--protocol", "cross", "--rerank", "k-reciprocal",
              "-o", sys.argv[3]])
    except SystemExit as done:
        assert done.code in (0, None), done.code
    real = rerank_scoring.score_split_reranked

    def announced(*args, **kwargs):
        print("reranking", flush=True)
        return real(*args, **kwargs)

    rerank_scoring.score_split_reranked = announced
    main(["score", sys.argv[1], "--protocol", "cross", "--rerank", "k-reciprocal"])
    """
)


@pytest.mark.parametrize(("signum", "code", "word"), [
    (signal.SIGINT, 130, "interrupted"),
    (signal.SIGTERM, 143, "terminated"),
])
def test_real_signal_during_rerank_exits_cleanly(tmp_path, signum, code, word):
    """A real signal sent to `vireid-bench score --rerank` while the kernels run."""
    path = write_synth_dump(tmp_path / "r.h5", ids=40, per_cam=4, dim=32, seed=1)
    warm = write_synth_dump(tmp_path / "w.h5", ids=4, per_cam=2, dim=32, seed=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(warm), str(tmp_path / "warm.txt")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # a shell's background job (a suite started with `&`) inherits SIGINT ignored, and
        # the toolkit rightly keeps it so: the child starts as a foreground command would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert child.stdout.readline().strip() == "reranking"
        time.sleep(0.5)  # inside the re-ranking kernels (the run takes seconds more)
        child.send_signal(signum)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == code, err
    assert err.strip().splitlines()[-1] == word
    assert "Traceback" not in err and "SystemError" not in err
    assert out == ""


# --- progress and the Python API -------------------------------------------------------


def test_rerank_progress_moves_and_adds_up_to_the_images(tmp_path):
    path = write_synth_dump(
        tmp_path / "p.h5", ids=8, cameras="1,2:visible,3,4:infrared", per_cam=2, dim=16
    )
    dump = load_dump(path)
    images = sum(s.n_images for s in dump.splits)
    calls: list[int] = []
    evaluate(dump, resolve_presets("all"), rerank="k-reciprocal", progress=calls.append)
    assert sum(calls) == images
    assert len(calls) > 10  # reported as it goes, not once at the end
    for options in ({}, {"memory": MemoryOptions(gallery_block=7, query_block=5)}):
        calls.clear()
        evaluate(dump, resolve_presets("cross"), progress=calls.append, **options)
        assert sum(calls) == images  # the total the command line's bar is given


def test_api_takes_the_cli_spellings(tmp_path):
    path = known_dump(tmp_path / "k.h5")
    frame = vireid_bench.score(path, "cross", query_modality="infrared", memory_limit="1G")
    assert list(frame["query_modality"]) == ["infrared"]
    assert list(frame["rank1"].round(2)) == [75.0]
    both = vireid_bench.score(path, "cross", query_modality="both", memory_limit=2**20)
    assert list(both["query_modality"]) == ["infrared", "visible"]
    old = vireid_bench.score(path, "cross", query_modalities=["visible"])
    assert list(old["query_modality"]) == ["visible"]
    rows = evaluate(load_dump(path), resolve_presets("cross"), query_modality="visible").rows
    assert [r["query_modality"] for r in rows] == ["visible"]


def test_api_memory_limit_streams_with_the_same_numbers(tmp_path, monkeypatch):
    # 480 images x 64 float32 = 123 KB of features: more than half of 64 KiB, read lazily
    path = write_synth_dump(tmp_path / "m.h5", ids=20, per_cam=4, dim=64, float16=False)
    expected = vireid_bench.score(path, "cross")
    streamed = []
    real = scoring.score_streamed

    def spy(*args, **kwargs):
        streamed.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "score_streamed", spy)
    frame = vireid_bench.score(path, "cross", memory_limit="64KiB")
    assert streamed
    assert list(frame["rank1"]) == list(expected["rank1"])
    assert list(frame["mAP"]) == pytest.approx(list(expected["mAP"]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"query_modality": "ir"}, "unknown query modality 'ir'"),
        ({"query_modality": "infrared", "query_modalities": ["visible"]}, "not both"),
        ({"memory_limit": "lots"}, "cannot read 'lots'"),
        ({"memory_limit": 1.5}, "memory_limit: expected bytes"),
    ],
)
def test_api_bad_spellings_are_one_line_errors(tmp_path, options, message):
    path = known_dump(tmp_path / "k.h5")
    with pytest.raises(vireid_bench.errors.VireidBenchError, match=message):
        vireid_bench.score(path, "cross", **options)
