"""MixER losses: gradient reversal, parity with slow references, finite values, and which
parameters each term's gradient reaches."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from vireid_bench.models.mixer.config import DEFAULTS  # noqa: E402
from vireid_bench.models.mixer.losses import (  # noqa: E402
    TERMS,
    GradientReversal,
    MixerCriterion,
    center_cluster_loss,
    fusion_loss,
    orthogonality_loss,
)
from vireid_bench.models.mixer.model import MixER  # noqa: E402


def test_gradient_reversal_on_a_tiny_module():
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 1)
    x = torch.randn(4, 3, requires_grad=True)
    grl = GradientReversal(coeff=0.5)
    y = linear(grl(x))
    assert torch.equal(y, linear(x))  # identity forward
    y.sum().backward()
    reversed_grad = x.grad.clone()
    x.grad = None
    linear(x).sum().backward()
    # d/dx sum(W x + b) = W for each row; the GRL multiplies it by -0.5
    assert torch.allclose(reversed_grad, -0.5 * x.grad)
    assert torch.allclose(x.grad, linear.weight.expand(4, 3))
    # the layer after the GRL is trained normally
    assert linear.weight.grad is not None


def _center_cluster_reference(features, labels, margin):
    classes = sorted(set(labels.tolist()))
    centers = {c: features[labels == c].mean(0) for c in classes}
    pull = sum(float((f - centers[int(y)]).norm()) for f, y in zip(features, labels, strict=True))
    pull /= len(labels)
    pairs = [(a, b) for a in classes for b in classes if a != b]
    push = sum(max(0.0, margin - float((centers[a] - centers[b]).norm())) for a, b in pairs)
    return pull + (push / len(pairs) if pairs else 0.0)


def _fusion_reference(z_e, z_f, labels, modality, margin):
    def dist(z, i, j):
        return 1 - float(torch.nn.functional.cosine_similarity(z[i], z[j], dim=0))

    n = len(labels)
    terms = [[], []]
    for a in range(n):
        same_pos = [
            p for p in range(n) if p != a and labels[p] == labels[a] and modality[p] == modality[a]
        ]
        cross_neg = [q for q in range(n) if labels[q] != labels[a] and modality[q] != modality[a]]
        if same_pos and cross_neg:
            hardest = max(dist(z_f, a, p) for p in same_pos)
            terms[0].append(max(0.0, hardest - min(dist(z_e, a, q) for q in cross_neg) + margin))
        cross_pos = [p for p in range(n) if labels[p] == labels[a] and modality[p] != modality[a]]
        same_neg = [q for q in range(n) if labels[q] != labels[a] and modality[q] == modality[a]]
        if cross_pos and same_neg:
            hardest = max(dist(z_e, a, p) for p in cross_pos)
            terms[1].append(max(0.0, hardest - min(dist(z_f, a, q) for q in same_neg) + margin))
    return sum(sum(t) / len(t) for t in terms if t)


@pytest.mark.parametrize("seed", range(5))
def test_center_cluster_matches_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(12, 5, generator=generator)
    labels = torch.randint(0, 4, (12,), generator=generator)
    value = center_cluster_loss(features, labels, margin=2.0)
    assert value.item() == pytest.approx(_center_cluster_reference(features, labels, 2.0), rel=1e-5)


def test_center_cluster_hand_case():
    # two tight classes whose centers are 3 apart: pull 0, push max(0, 2 - 3) = 0
    features = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert center_cluster_loss(features, labels, 2.0).item() == pytest.approx(0.0, abs=1e-5)
    # margin 5: push = 5 - 3 = 2
    assert center_cluster_loss(features, labels, 5.0).item() == pytest.approx(2.0, abs=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_fusion_matches_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    z_e = torch.randn(12, 4, generator=generator)
    z_r = torch.randn(12, 4, generator=generator)
    z_f = torch.cat([torch.nn.functional.normalize(z_e), torch.nn.functional.normalize(z_r)], 1)
    labels = torch.randint(0, 3, (12,), generator=generator)
    modality = torch.randint(0, 2, (12,), generator=generator)
    value = fusion_loss(z_e, z_f, labels, modality, margin=0.3)
    assert value.item() == pytest.approx(
        _fusion_reference(z_e, z_f, labels, modality, 0.3), abs=1e-5
    )


def test_fusion_is_zero_when_no_anchor_qualifies():
    z = torch.randn(2, 3)
    assert fusion_loss(z, z, torch.tensor([0, 1]), torch.tensor([0, 0]), 0.3).item() == 0.0


def test_orthogonality_hand_case():
    z_e = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z_r = torch.tensor([[0.0, 2.0], [-1.0, -1.0]])  # cos 0 and cos -1 -> mean |cos| = 0.5
    assert orthogonality_loss(z_e, z_r).item() == pytest.approx(0.5)


@pytest.fixture(scope="module")
def tiny_batch():
    torch.manual_seed(0)
    model = MixER(num_classes=3, backbone="resnet18")
    model.train()
    images = torch.randn(12, 3, 32, 16)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    modality = torch.tensor([0, 0, 1, 1] * 3)
    return model, images, labels, modality


def _gradient_reach(model, images, labels, modality, term):
    config = {**DEFAULTS["loss"], **dict.fromkeys(TERMS, False), term: True}
    model.zero_grad(set_to_none=True)
    outputs = model(images, modality)
    total, values = MixerCriterion(config)(outputs, labels, modality)
    assert set(values) == {term}
    assert torch.isfinite(total) and total.item() >= 0
    total.backward()

    def reached(module):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        return any(g is not None and g.abs().sum() > 0 for g in grads)

    return {
        "layer3": reached(model.layer3),
        "layer4": reached(model.layer4),
        "related_v": reached(model.layer4_related[0]),
        "related_i": reached(model.layer4_related[1]),
        "classifier_e": reached(model.classifier_e),
        "classifier_r": reached(model.classifier_r),
        "modality_classifier": reached(model.modality_classifier),
    }


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("meid", {"layer3", "layer4", "classifier_e"}),
        ("cc_e", {"layer3", "layer4"}),
        ("mrid", {"layer3", "related_v", "related_i", "classifier_r"}),
        ("cc_r", {"layer3", "related_v", "related_i"}),
        ("ortho", {"layer3", "layer4", "related_v", "related_i"}),
        ("modality", {"layer3", "layer4", "modality_classifier"}),
        ("fusion", {"layer3", "layer4", "related_v", "related_i"}),
    ],
)
def test_each_term_is_finite_and_reaches_its_parameters(tiny_batch, term, expected):
    reach = _gradient_reach(*tiny_batch, term)
    assert {name for name, hit in reach.items() if hit} == expected


def test_modality_loss_reverses_the_gradient_into_the_backbone(tiny_batch):
    model, images, labels, modality = tiny_batch
    outputs = model(images, modality)
    z_e = outputs["z_e"]
    ce = torch.nn.functional.cross_entropy
    through_grl = ce(model.modality_classifier(model.grl(z_e)), modality)
    plain = ce(model.modality_classifier(z_e), modality)
    (grad_grl,) = torch.autograd.grad(through_grl, z_e, retain_graph=True)
    (grad_plain,) = torch.autograd.grad(plain, z_e)
    assert grad_plain.abs().sum() > 0
    assert torch.allclose(grad_grl, -model.grl.coeff * grad_plain)


def test_total_is_the_weighted_sum(tiny_batch):
    model, images, labels, modality = tiny_batch
    config = {**DEFAULTS["loss"], "lambda_m": 0.5, "lambda_o": 2.0, "lambda_f": 3.0}
    with torch.no_grad():
        total, values = MixerCriterion(config)(model(images, modality), labels, modality)
    expected = (
        values["meid"]
        + values["cc_e"]
        + values["mrid"]
        + values["cc_r"]
        + 0.5 * values["modality"]
        + 2.0 * values["ortho"]
        + 3.0 * values["fusion"]
    )
    assert total.item() == pytest.approx(expected, rel=1e-5)
