"""MixER network, data pipeline and schedule: shapes, dtypes, routing, weights, sampler."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from vireid_bench.models.mixer.data import ChannelAugment, IdentityBalancedSampler  # noqa: E402
from vireid_bench.models.mixer.model import MixER  # noqa: E402
from vireid_bench.models.mixer.train import lr_factor  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MixER(num_classes=5, backbone="resnet18")


def test_output_shapes_and_dtypes(model):
    images = torch.randn(6, 3, 64, 32)
    modality = torch.tensor([0, 1, 0, 1, 0, 1])
    model.train()
    out = model(images, modality)
    expected = {
        "f_e": (6, 512),
        "z_e": (6, 512),
        "f_r": (6, 512),
        "z_r": (6, 512),
        "z_f": (6, 1024),
        "logits_e": (6, 5),
        "logits_m": (6, 2),
        "logits_r": (6, 10),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())
    model.eval()
    with torch.no_grad():
        out = model(images, modality)
    assert set(out) == {"f_e", "z_e", "f_r", "z_r", "z_f"}
    # z_f is [z_e/|z_e|, z_r/|z_r|]: each half has unit norm
    assert torch.allclose(out["z_f"][:, :512].norm(dim=1), torch.ones(6), atol=1e-5)
    assert torch.allclose(out["z_f"][:, 512:].norm(dim=1), torch.ones(6), atol=1e-5)


def test_last_stride_one_doubles_the_final_map(model):
    shared = model.stage3(torch.randn(1, 3, 64, 32))
    assert tuple(model.layer4(shared).shape[2:]) == (4, 2)  # stride 16, not 32
    resnet = torchvision.models.resnet18(weights=None)
    x = torch.randn(1, 3, 64, 32)
    stem = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
    assert tuple(resnet.layer4(resnet.layer3(resnet.layer2(resnet.layer1(stem)))).shape[2:]) == (
        2,
        1,
    )


def test_each_image_goes_through_its_own_modality_branch(model):
    model.eval()
    images = torch.randn(4, 3, 64, 32)
    modality = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        out = model(images, modality)
        shared = model.stage3(images)
        for row, code in enumerate(modality.tolist()):
            pooled = model.layer4_related[code](shared[row : row + 1]).mean(dim=(2, 3))
            assert torch.allclose(out["z_r"][row], model.bn_r[code](pooled)[0], atol=1e-5)


def test_baseline_has_no_related_branch():
    baseline = MixER(num_classes=3, backbone="resnet18", related_branch=False).eval()
    assert not hasattr(baseline, "layer4_related")
    with torch.no_grad():
        out = baseline(torch.randn(2, 3, 64, 32), torch.tensor([0, 1]))
    assert set(out) == {"f_e", "z_e"}


def test_pretrained_state_dict_loads_into_backbone_and_branches(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    mixer = MixER(num_classes=4, backbone="resnet18")
    assert mixer.load_pretrained(path) == []
    source = reference.state_dict()
    own = mixer.state_dict()
    for key in ("conv1.weight", "layer2.0.conv1.weight", "layer4.1.bn2.running_mean"):
        assert torch.equal(own[key], source[key])
    for branch in (0, 1):
        assert torch.equal(
            own[f"layer4_related.{branch}.0.conv1.weight"], source["layer4.0.conv1.weight"]
        )
    # a wrapped, DataParallel-style file loads too
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.items()}}, path)
    assert MixER(num_classes=4, backbone="resnet18").load_pretrained(path) == []


def test_pretrained_of_the_wrong_architecture_is_refused(tmp_path):
    path = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="unexpected key"):
        MixER(num_classes=2, backbone="resnet18").load_pretrained(path)
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match="no ResNet backbone weight"):
        MixER(num_classes=2, backbone="resnet18").load_pretrained(path)


def test_building_the_model_never_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    MixER(num_classes=2, backbone="resnet18")


def test_identity_balanced_sampler():
    labels = np.repeat(np.arange(5), 6)
    modality = np.tile([0, 0, 0, 0, 1, 1], 5)  # 4 visible + 2 infrared per identity
    sampler = IdentityBalancedSampler(labels, modality, batch_ids=3, num_pos=3, seed=4)
    assert len(sampler) == 20 // 9  # AGW rule: larger modality / (P * K)
    batches = list(sampler)
    for batch in batches:
        assert len(batch) == 3 * (3 + 3)
        ids = labels[batch]
        assert len(set(ids.tolist())) == 3
        for label in set(ids.tolist()):
            rows = np.array(batch)[ids == label]
            assert (modality[rows] == 0).sum() == 3 and (modality[rows] == 1).sum() == 3
    assert list(sampler) == batches  # same epoch, same batches
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_sampler_skips_identities_missing_a_modality():
    labels = np.array([0, 0, 1, 1, 2, 2])
    modality = np.array([0, 1, 0, 1, 0, 0])
    sampler = IdentityBalancedSampler(labels, modality, batch_ids=5, num_pos=1, iterations=3)
    assert all(sorted(set(labels[b].tolist())) == [0, 1] for b in sampler)


def test_channel_augment_makes_channels_equal():
    torch.manual_seed(0)
    image = torch.rand(3, 8, 4)
    assert torch.equal(ChannelAugment(0.0, 0.0)(image), image)
    exchanged = ChannelAugment(1.0, 0.0)(image)
    assert torch.equal(exchanged[0], exchanged[1]) and torch.equal(exchanged[1], exchanged[2])
    gray = ChannelAugment(0.0, 1.0)(image)
    assert torch.allclose(gray[0], 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])


def test_learning_rate_schedule_follows_the_paper():
    factors = [lr_factor(e, 10, [80, 120], 0.1) for e in range(180)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[79] == 1.0 and factors[80] == pytest.approx(0.1)
    assert factors[119] == pytest.approx(0.1) and factors[120] == pytest.approx(0.01)
