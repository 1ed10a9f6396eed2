"""The MixER network (paper §3.2(a), Fig. 2, §4.1(c)).

A torchvision ResNet (ResNet-50 in the paper; ResNet-18/34 for small runs) with last
stride 1 is the shared backbone. Its stem and stages 1-3 are shared by everything:

* the shared stage 4 -> global average pooling -> ``f_e`` -> BN neck -> ``z_e``, the
  modality-erased feature (2048-d for ResNet-50);
* one copy of stage 4 per modality, on the same shared stage-3 output -> GAP -> ``f_r`` ->
  a BN neck per modality -> ``z_r``, the modality-related feature ("layer4 is cloned from
  the backbone for each modality", §4.1(c)); an image goes through its own modality's copy;
* ``z_f = [z_e / |z_e|, z_r / |z_r|]``, the fused feature (its cosine similarity is the
  mean of the two cosine similarities).

Heads (training only): identity classifier on ``z_e`` (C classes), identity-modality
classifier on ``z_r`` (2C classes, eq. 12), modality classifier ``W`` (d x 2) on
``GRL(z_e)`` (eq. 11). Classifiers have no bias; BN necks have a frozen zero bias
(the BNNeck convention of strong ReID baselines).

Weights are never downloaded: the backbone starts from random weights unless
:meth:`MixER.load_pretrained` is given a local torchvision state dict.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vireid_bench.models.mixer.config import MixerInputError
from vireid_bench.models.mixer.losses import GradientReversal


def load_torch_file(path: str | Path, what: str) -> object:
    """``torch.load`` (weights only, on the CPU) with every failure as one line.

    Raises:
        MixerInputError: the file is missing, unreadable, or not a PyTorch file torch can
            load safely; the message names ``path`` and ``what`` it should be.
    """
    source = Path(path)
    if not source.is_file():
        raise MixerInputError(f"{source}: {what} not found")
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise MixerInputError(f"{source}: {what} cannot be read ({exc.strerror})") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise MixerInputError(f"{source}: not a readable {what} ({reason})") from exc

FEATURE_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
_BACKBONE_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")


def _bn_neck(dim: int) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(dim)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    bn.bias.requires_grad_(False)
    return bn


def _set_last_stride(layer: nn.Module, stride: int) -> None:
    """Set the stride of the first block of a ResNet stage (its strided convs)."""
    first = layer[0]
    for module in first.modules():
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (stride, stride)


def build_resnet(backbone: str) -> nn.Module:
    """A torchvision ResNet with random weights (``weights=None``: never downloads)."""
    import torchvision

    if backbone not in FEATURE_DIMS:
        raise ValueError(f"unknown backbone {backbone!r} (valid: {', '.join(FEATURE_DIMS)})")
    return getattr(torchvision.models, backbone)(weights=None)


class MixER(nn.Module):
    """MixER: shared backbone, modality-erased and modality-related branches.

    Args:
        num_classes: number of training identities C.
        backbone: ``"resnet50"``, ``"resnet34"`` or ``"resnet18"``.
        last_stride: stride of stage 4 (1 keeps a twice larger final feature map).
        related_branch: build the per-modality stage-4 copies (``z_r``, ``z_f``); without
            it the model is the plain baseline (``z_e`` only).
        grl_coeff: gradient-reversal factor of the modality classifier.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        last_stride: int = 1,
        related_branch: bool = True,
        grl_coeff: float = 1.0,
    ) -> None:
        super().__init__()
        net = build_resnet(backbone)
        _set_last_stride(net.layer4, last_stride)
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.related_branch = related_branch
        self.feature_dim = FEATURE_DIMS[backbone]
        # Same attribute names as torchvision, so its state dicts load directly.
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        dim = self.feature_dim
        self.bn_e = _bn_neck(dim)
        self.classifier_e = nn.Linear(dim, num_classes, bias=False)
        self.grl = GradientReversal(grl_coeff)
        self.modality_classifier = nn.Linear(dim, 2, bias=False)
        if related_branch:
            # index 0: visible, 1: infrared
            self.layer4_related = nn.ModuleList([copy.deepcopy(net.layer4) for _ in range(2)])
            self.bn_r = nn.ModuleList([_bn_neck(dim), _bn_neck(dim)])
            self.classifier_r = nn.Linear(dim, 2 * num_classes, bias=False)
        for linear in self._classifiers():
            nn.init.normal_(linear.weight, std=0.001)

    def _classifiers(self) -> list[nn.Linear]:
        heads = [self.classifier_e, self.modality_classifier]
        if self.related_branch:
            heads.append(self.classifier_r)
        return heads

    # ------------------------------------------------------------------ weights

    def load_pretrained(self, path: str | Path) -> list[str]:
        """Load a local torchvision ResNet state dict into the backbone.

        The stem and stages 1-4 are loaded; stage 4 is also copied into both modality
        branches (they are clones of the backbone's stage 4). ``fc.*`` is ignored; a
        ``state_dict``/``model`` wrapper and a ``module.`` prefix are accepted.

        Returns:
            The backbone keys of the model that the file did not provide (empty when
            everything loaded).

        Raises:
            ValueError: when the file holds no backbone weight or shapes do not match.
        """
        state = load_torch_file(path, "--pretrained state dict")
        for wrapper in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
                state = state[wrapper]
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise MixerInputError(f"{path}: not a state dict")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        backbone = {k: v for k, v in state.items() if k.startswith(_BACKBONE_PREFIXES)}
        if not backbone:
            raise MixerInputError(f"{path}: no ResNet backbone weight (conv1.*, layer1.* ...)")
        own = self.state_dict()
        for key, value in backbone.items():
            if key not in own:
                raise MixerInputError(
                    f"{path}: unexpected key {key!r} for {self.backbone_name}"
                )
            if not isinstance(value, torch.Tensor):
                raise MixerInputError(f"{path}: {key} is not a tensor")
            if own[key].shape != value.shape:
                raise MixerInputError(
                    f"{path}: {key} has shape {tuple(value.shape)}, "
                    f"{self.backbone_name} needs {tuple(own[key].shape)}"
                )
        self.load_state_dict(backbone, strict=False)
        if self.related_branch:
            for branch in self.layer4_related:
                branch.load_state_dict(self.layer4.state_dict())
        wanted = [k for k in own if k.startswith(_BACKBONE_PREFIXES)]
        return [k for k in wanted if k not in backbone]

    # ------------------------------------------------------------------ forward

    def stage3(self, x: torch.Tensor) -> torch.Tensor:
        """Shared stem and stages 1-3."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, images: torch.Tensor, modality: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features (and, in training mode, logits) of a batch.

        Args:
            images: float [N, 3, H, W], normalised.
            modality: int64 [N], 0 visible / 1 infrared (selects the related branch).

        Returns:
            dict with ``f_e``, ``z_e`` [N, d] and, with the related branch, ``f_r``,
            ``z_r`` [N, d] and ``z_f`` [N, 2d]; in training mode also ``logits_e``
            [N, C], ``logits_m`` [N, 2] and ``logits_r`` [N, 2C].
        """
        shared = self.stage3(images)
        f_e = F.adaptive_avg_pool2d(self.layer4(shared), 1).flatten(1)
        z_e = self.bn_e(f_e)
        out = {"f_e": f_e, "z_e": z_e}
        if self.related_branch:
            f_r = f_e.new_empty(f_e.shape)
            z_r = z_e.new_empty(z_e.shape)
            for code in (0, 1):
                rows = (modality == code).nonzero(as_tuple=True)[0]
                if rows.numel() == 0:
                    continue
                pooled = F.adaptive_avg_pool2d(self.layer4_related[code](shared[rows]), 1)
                pooled = pooled.flatten(1).to(f_r.dtype)
                f_r[rows] = pooled
                z_r[rows] = self.bn_r[code](pooled).to(z_r.dtype)
            out["f_r"], out["z_r"] = f_r, z_r
            out["z_f"] = torch.cat([F.normalize(z_e, dim=1), F.normalize(z_r, dim=1)], dim=1)
        if self.training:
            out["logits_e"] = self.classifier_e(z_e)
            out["logits_m"] = self.modality_classifier(self.grl(z_e))
            if self.related_branch:
                out["logits_r"] = self.classifier_r(out["z_r"])
        return out
