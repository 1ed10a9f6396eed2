"""Re-ranking: k-reciprocal and AIM against plain references, exclusion, CLI."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from vireid_bench.cli.main import cli
from vireid_bench.engine.rerank import (
    AIMBase,
    KReciprocalGallery,
    KReciprocalJoint,
    k_reciprocal_joint,
)
from vireid_bench.engine.scoring import evaluate
from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import MODALITY_CODES, load_dump
from vireid_bench.protocol import resolve_presets

# ---------------------------------------------------------------------------------------
# plain references, written from the definitions (loops and sets, no shared code)


def plain_k_reciprocal(dist, probes, k1, k2, lam):
    """Zhong et al. on the joint set: ``dist`` squared distances, all rows expanded."""
    n = len(dist)
    d = [[0.0 if i == j else float(dist[i][j]) for j in range(n)] for i in range(n)]
    dn = []
    for i in range(n):
        top = max(d[i])
        dn.append([x / top if top > 0 else 0.0 for x in d[i]])
    order = [sorted(range(n), key=lambda j, i=i: (d[i][j], j)) for i in range(n)]

    def recip(i, k):
        return {j for j in order[i][: k + 1] if i in order[j][: k + 1]}

    v = [[0.0] * n for _ in range(n)]
    for i in range(n):
        r = recip(i, k1)
        star = set(r)
        for c in r:
            h = recip(c, int(np.around(k1 / 2)))
            if len(h & r) > 2 / 3 * len(h):
                star |= h
        total = sum(math.exp(-dn[i][j]) for j in star)
        for j in star:
            v[i][j] = math.exp(-dn[i][j]) / total
    if k2 != 1:
        v = [
            [sum(v[h][k] for h in order[i][:k2]) / len(order[i][:k2]) for k in range(n)]
            for i in range(n)
        ]
    out = []
    for p in probes:
        row = []
        for g in range(n):
            s = sum(min(v[p][k], v[g][k]) for k in range(n))
            row.append((1 - lam) * (1 - s / (2 - s)) + lam * dn[p][g])
        out.append(row)
    return np.array(out)


def plain_aim(qf, gf, k1, k2):
    """SAAI's models/AIM.py in NumPy: sparse top-k1 affinities, k2 mean, two cosines."""

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    qf, gf = unit(qf), unit(gf)
    return plain_aim_similarities(qf @ gf.T, gf @ gf.T, k1, k2)


def plain_aim_similarities(s_qg, s_gg, k1, k2):
    """:func:`plain_aim` from the cosine similarities query x gallery and gallery x gallery."""

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def affinity(s, mean):
        k = min(k1, s.shape[1])
        ranks = [
            sorted(range(s.shape[1]), key=lambda j, i=i: (-s[i, j], j))[:k] for i in range(len(s))
        ]
        a = np.zeros_like(s)
        for i, r in enumerate(ranks):
            a[i, r] = s[i, r]
        if mean:
            a = np.array([a[r[:k2]].mean(axis=0) for r in ranks])
        return a

    new_q = unit(affinity(np.asarray(s_qg, dtype=np.float64), False))
    new_g = unit(affinity(np.asarray(s_gg, dtype=np.float64), True))
    return -new_q @ new_g.T - s_qg


def squared(x):
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def pairs_of(matrix):
    return lambda r, c: matrix[np.ix_(r, c)]


cases = st.tuples(
    st.integers(2, 14),  # items
    st.integers(1, 9),  # k1
    st.integers(1, 7),  # k2
    st.floats(0.0, 1.0),  # lambda
    st.integers(0, 2**31 - 1),  # seed
)


# ---------------------------------------------------------------------------------------
# (a) k-reciprocal equals the plain reference, on a joint set and per probe


@settings(max_examples=25, deadline=None)
@given(cases)
def test_k_reciprocal_matches_plain_reference(case):
    n, k1, k2, lam, seed = case
    x = np.random.default_rng(seed).normal(size=(n, 3))
    dist = squared(x)
    probes = np.arange(min(3, n))
    expected = plain_k_reciprocal(dist, probes, k1, k2, lam)
    got = k_reciprocal_joint(
        pairs_of(dist), n, probes, k1=k1, k2=k2, lambda_value=lam, max_bytes=256
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # probe 0 outside the gallery 1..n-1: the per-probe engine gives the same row
    gallery = KReciprocalGallery(
        pairs_of(dist[1:, 1:]), n - 1, k1=k1, k2=k2, lambda_value=lam, max_bytes=128
    )
    np.testing.assert_allclose(gallery.rerank(dist[0, 1:]), expected[0, 1:], atol=1e-6)


def test_joint_set_with_several_probes_equals_one_probe_at_a_time():
    x = np.random.default_rng(5).normal(size=(30, 4))
    dist = squared(x)
    joint = KReciprocalJoint(pairs_of(dist), 30, k1=6, k2=3, lambda_value=0.3)
    for p in (0, 7, 29):
        rest = np.delete(np.arange(30), p)
        alone = KReciprocalGallery(pairs_of(dist[np.ix_(rest, rest)]), 29, k1=6, k2=3)
        np.testing.assert_allclose(
            alone.rerank(dist[p, rest]), joint.rerank([p])[0, rest], atol=1e-9
        )


# ---------------------------------------------------------------------------------------
# (b) a case worked out by hand


def test_k_reciprocal_by_hand():
    # Items on a line at 0, 1, 3 and 10; squared distances.  k1 = 1: N(i, 1) is the item
    # and its nearest neighbour: N(0)={0,1}, N(1)={1,0}, N(2)={2,1}, N(3)={3,2}.
    # R(0)={0,1}, R(1)={0,1} (mutual), R(2)={2} (2 is not in N(1)), R(3)={3}.
    # round(1/2) = 0 (half to even): the half sets are {c}, always kept, so R* = R.
    # Row maxima: 100, 81, 49, 100.  V[0] ~ (1, e^-1/100) on {0,1}, V[1] ~ (e^-1/81, 1),
    # V[2] = {2: 1}, V[3] = {3: 1}; k2 = 1: no query expansion.
    pos = np.array([[0.0], [1.0], [3.0], [10.0]])
    dist = squared(pos)
    a, b = math.exp(-1 / 100), math.exp(-1 / 81)
    v0 = (1 / (1 + a), a / (1 + a))
    v1 = (b / (1 + b), 1 / (1 + b))
    s = min(v0[0], v1[0]) + min(v0[1], v1[1])
    jac01 = 1 - s / (2 - s)
    got = k_reciprocal_joint(pairs_of(dist), 4, [0, 2], k1=1, k2=1, lambda_value=0.3)
    assert got[0, 1] == pytest.approx(0.7 * jac01 + 0.3 * 1 / 100, abs=1e-12)
    assert got[0, 2] == pytest.approx(0.7 * 1 + 0.3 * 9 / 100, abs=1e-12)
    assert got[0, 3] == pytest.approx(0.7 * 1 + 0.3 * 100 / 100, abs=1e-12)
    assert got[1, 3] == pytest.approx(0.7 * 1 + 0.3 * 49 / 49, abs=1e-12)
    assert got[1, 1] == pytest.approx(0.7 * 1 + 0.3 * 4 / 49, abs=1e-12)


# ---------------------------------------------------------------------------------------
# (d) AIM equals its plain reference


@settings(max_examples=25, deadline=None)
@given(cases)
def test_aim_matches_plain_reference(case):
    n, k1, k2, _, seed = case
    rng = np.random.default_rng(seed)
    gallery, queries = rng.normal(size=(n, 4)), rng.normal(size=(3, 4))
    expected = plain_aim(queries, gallery, k1, k2)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    base = AIMBase(pairs_of(g @ g.T), n, k1=k1, k2=k2, max_bytes=64)
    for i in range(3):
        np.testing.assert_allclose(base.scores(q[i] @ g.T), expected[i], atol=1e-6)
    # the probe as a member of the base set, left out of its own gallery
    joint = np.vstack([q[:1], g])
    inside = AIMBase(pairs_of(joint @ joint.T), n + 1, k1=k1, k2=k2).scores(joint[0] @ joint.T, 0)
    assert np.isnan(inside[0])
    np.testing.assert_allclose(inside[1:], expected[0], atol=1e-6)


# ---------------------------------------------------------------------------------------
# (c) re-ranking never sees an excluded image


def _two_camera_dump(make_dump, altered: bool):
    """3 ids x cameras 1, 2 (visible) and 3, 4 (infrared) x 2 images; image 0 (id 0,
    camera 1) is the one altered: a copy of image 8's features (id 1, camera 1)."""
    rng = np.random.default_rng(11)
    pid, cam = np.repeat(np.arange(3), 8), np.tile(np.repeat([1, 2, 3, 4], 2), 3)
    modality = np.where(cam <= 2, MODALITY_CODES["visible"], MODALITY_CODES["infrared"])
    features = rng.normal(size=(24, 8)) + 2.0 * rng.normal(size=(3, 8))[pid]
    if altered:
        features[0] = features[8]  # id 1, camera 1: same camera as image 0
    return load_dump(
        make_dump(features=features.astype(np.float32), pid=pid, cam=cam, modality=modality)
    )


@pytest.mark.parametrize("method", ["k-reciprocal", "aim"])
def test_excluded_image_changes_no_reranked_score(make_dump, method):
    params = {"k1": 4, "k2": 2}
    results = {}
    for altered in (False, True):
        dump = _two_camera_dump(make_dump, altered)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluation = evaluate(
                dump, resolve_presets("mix-cam,mix"), rerank=method, rerank_params=params
            )
        results[altered] = {(s.protocol, s.query_modality): s for s in evaluation.per_query}
    for key, before in results[False].items():
        after = results[True][key]
        cam = before.plan.query_idx // 2 % 4  # camera index 0 = camera 1
        queries = (cam == 0) & (before.plan.query_idx != 0)
        assert queries.any() == (key == ("mix-cam", "visible")) or key[0] == "mix"
        if key[0] == "mix-cam":
            # image 0 is a camera-1 image: excluded for every camera-1 query
            np.testing.assert_array_equal(before.ap[queries], after.ap[queries])
            np.testing.assert_array_equal(before.first_rank[queries], after.first_rank[queries])
            np.testing.assert_array_equal(before.n_gallery, after.n_gallery)
    # without the camera exclusion the altered image is in those galleries and matters
    mix_before, mix_after = results[False][("mix", "visible")], results[True][("mix", "visible")]
    assert not np.array_equal(mix_before.ap, mix_after.ap)


def test_reranked_gallery_sizes_and_labels(tiny_dump):
    dump = load_dump(tiny_dump)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = evaluate(dump, resolve_presets("all"))
        ranked = evaluate(dump, resolve_presets("all"), rerank="k-reciprocal")
    for a, b in zip(plain.per_query, ranked.per_query, strict=True):
        np.testing.assert_array_equal(a.n_gallery, b.n_gallery)
        np.testing.assert_array_equal(a.n_pos, b.n_pos)
    assert {row["distance"] for row in ranked.rows} == {
        "cosine+k-reciprocal(k1=20,k2=6,lambda=0.3)"
    }


def test_bad_parameters_raise_protocol_error(tiny_dump):
    dump = load_dump(tiny_dump)
    presets = resolve_presets("cross")
    for kwargs in (
        {"rerank": "knn"},
        {"rerank": "aim", "distance": "euclidean"},
        {"rerank": "k-reciprocal", "rerank_params": {"k1": 0}},
        {"rerank": "k-reciprocal", "rerank_params": {"lambda": 1.5}},
        {"rerank": "aim", "rerank_params": {"lambda": 0.3}},
    ):
        with pytest.raises(ProtocolError):
            evaluate(dump, presets, **kwargs)


# ---------------------------------------------------------------------------------------
# (e), (f) the command line


@pytest.mark.parametrize(
    ("args", "label"),
    [
        (["--rerank", "k-reciprocal", "--rerank-k1", "5"], "k-reciprocal(k1=5,k2=6,lambda=0.3)"),
        (["--rerank", "aim"], "aim(k1=20,k2=6)"),
        (["--rerank", "aim", "--rerank-k1", "3", "--rerank-k2", "2"], "aim(k1=3,k2=2)"),
    ],
)
def test_cli_rerank(tiny_dump, args, label):
    result = CliRunner().invoke(
        cli, ["score", str(tiny_dump), "-p", "cross,mix-cam", "-f", "json", *args]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    assert len(rows) == 4
    assert all(r["status"] == "ok" and r["distance"] == f"cosine+{label}" for r in rows)


@pytest.mark.parametrize(
    "args",
    [
        ["--rerank", "k-reciprocal", "--rerank-k1", "0"],
        ["--rerank", "k-reciprocal", "--rerank-lambda", "1.5"],
        ["--rerank", "aim", "--rerank-lambda", "0.5"],
        ["--rerank", "aim", "--distance", "euclidean"],
        ["--rerank-k2", "3"],
    ],
)
def test_cli_rerank_bad_parameters(tiny_dump, args):
    result = CliRunner().invoke(cli, ["score", str(tiny_dump), "-p", "cross", *args])
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message
