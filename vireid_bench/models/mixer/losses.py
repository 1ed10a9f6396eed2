"""MixER's losses (paper §3.2, eqs. 7 and 9-16) and the gradient-reversal layer.

Notation: a batch of ``N`` images with identity class ``y`` (0..C-1) and modality ``m``
(0 visible, 1 infrared). ``f_e``/``f_r`` are the pooled features before the BN neck,
``z_e``/``z_r`` after it, ``z_f = [z_e / |z_e|, z_r / |z_r|]``.

* ``meid`` (eq. 9): cross-entropy of the identity classifier on ``z_e``.
* ``cc_e`` (eq. 10): center-cluster loss on ``f_e`` with labels ``y``.
* ``mrid`` (eq. 13): cross-entropy of a classifier over the 2C labels ``y' = 2y + m``
  (eq. 12) on ``z_r``.
* ``cc_r`` (eq. 14): center-cluster loss on ``f_r`` with labels ``y'``.
* ``ortho`` (eq. 7): mean ``|cos(z_e, z_r)|``.
* ``modality`` (eq. 11): cross-entropy of a linear modality classifier ``W`` (d x 2, no bias)
  on ``GRL(z_e)``: the classifier learns to tell the modality, the backbone receives the
  reversed gradient and learns to hide it.
* ``fusion`` (eq. 15): the mixed cross-modal triplet, with batch-hard mining, see
  :func:`fusion_loss`.

Total (eq. 16): ``w_meid meid + w_cc_e cc_e + w_mrid mrid + w_cc_r cc_r + lambda_m modality
+ lambda_o ortho + lambda_f fusion``; every term can be switched off in the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TERMS = ("meid", "cc_e", "mrid", "cc_r", "ortho", "modality", "fusion")
WEIGHT_KEYS = {
    "meid": "w_meid",
    "cc_e": "w_cc_e",
    "mrid": "w_mrid",
    "cc_r": "w_cc_r",
    "ortho": "lambda_o",
    "modality": "lambda_m",
    "fusion": "lambda_f",
}


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # noqa: D102
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: D102
        return -ctx.coeff * grad_output, None


class GradientReversal(nn.Module):
    """Identity in the forward pass; multiplies the gradient by ``-coeff`` going back
    (Ganin & Lempitsky, 2015)."""

    def __init__(self, coeff: float = 1.0) -> None:
        super().__init__()
        self.coeff = float(coeff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ReverseGradient.apply(x, self.coeff)


def _sqrt_clamped(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=1e-12).sqrt()


def center_cluster_loss(
    features: torch.Tensor, labels: torch.Tensor, margin: float
) -> torch.Tensor:
    """Center-cluster loss of MPANet (Wu et al., CVPR 2021), the paper's ``L_cc``.

    With batch class centers ``c_k`` (the mean feature of class ``k`` in the batch):
    ``mean_i |f_i - c_{y_i}|_2 + mean_{k != l} max(0, margin - |c_k - c_l|_2)``: pull every
    feature to its class center, push the centers at least ``margin`` apart.

    Args:
        features: float [N, D].
        labels: int64 [N].
        margin: the center separation (MPANet's SYSU configuration uses 0.7).
    """
    classes, inverse = torch.unique(labels, return_inverse=True)
    k = classes.numel()
    features = features.float()
    sums = torch.zeros(k, features.shape[1], device=features.device, dtype=features.dtype)
    sums = sums.index_add(0, inverse, features)
    counts = torch.bincount(inverse, minlength=k).clamp(min=1).to(features.dtype)
    centers = sums / counts[:, None]
    pull = _sqrt_clamped(((features - centers[inverse]) ** 2).sum(dim=1)).mean()
    if k < 2:
        return pull
    gaps = _sqrt_clamped(torch.cdist(centers, centers).pow(2))
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=features.device)
    push = F.relu(margin - gaps[off_diagonal]).mean()
    return pull + push


def orthogonality_loss(z_e: torch.Tensor, z_r: torch.Tensor) -> torch.Tensor:
    """Eq. 7 with an absolute value: mean over the batch of ``|cos(z_e, z_r)|``."""
    return F.cosine_similarity(z_e.float(), z_r.float(), dim=1, eps=1e-8).abs().mean()


def cosine_distance_matrix(features: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` between every pair of rows: float [N, N]."""
    normalised = F.normalize(features.float(), dim=1)
    return 1.0 - normalised @ normalised.t()


def fusion_loss(
    z_e: torch.Tensor,
    z_f: torch.Tensor,
    labels: torch.Tensor,
    modality: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """Eq. 15, the mixed cross-modal triplet, with batch-hard mining and cosine distance.

    At inference a mixed gallery is ranked with ``z_f`` for same-modality pairs and ``z_e``
    for cross-modality pairs, so the two distances must be comparable. For every anchor
    ``j`` (modality ``m``):

    * term 1: its hardest same-modality positive in ``z_f`` must be closer than its hardest
      other-modality negative in ``z_e``: ``max(D_f(j, p) - D_e(j, n) + margin, 0)``;
    * term 2: its hardest other-modality positive in ``z_e`` must be closer than its hardest
      same-modality negative in ``z_f``: ``max(D_e(j, p) - D_f(j, n) + margin, 0)``.

    ``D`` is the cosine distance (the scorer's default). Each term is averaged over the
    anchors that have both a positive and a negative of the required kinds; the loss is the
    sum of the two means (0 when no anchor qualifies).
    """
    d_e = cosine_distance_matrix(z_e)
    d_f = cosine_distance_matrix(z_f)
    n = labels.shape[0]
    same_id = labels[:, None] == labels[None, :]
    same_mod = modality[:, None] == modality[None, :]
    not_self = ~torch.eye(n, dtype=torch.bool, device=labels.device)

    def term(d_pos, pos_mask, d_neg, neg_mask):
        valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
        if not valid.any():
            return d_pos.new_zeros(())
        hardest_pos = d_pos.masked_fill(~pos_mask, float("-inf")).amax(dim=1)
        hardest_neg = d_neg.masked_fill(~neg_mask, float("inf")).amin(dim=1)
        return F.relu(hardest_pos[valid] - hardest_neg[valid] + margin).mean()

    first = term(d_f, same_id & same_mod & not_self, d_e, ~same_id & ~same_mod)
    second = term(d_e, same_id & ~same_mod, d_f, ~same_id & same_mod)
    return first + second


class MixerCriterion(nn.Module):
    """Eq. 16 from a config's ``[loss]`` section; returns the total and every term."""

    def __init__(self, loss_config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = dict(loss_config)
        self.enabled = tuple(t for t in TERMS if self.config[t])
        self.cross_entropy = nn.CrossEntropyLoss()

    def forward(
        self, outputs: Mapping[str, torch.Tensor], labels: torch.Tensor, modality: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return (weighted total, {term: unweighted value}) for one batch.

        Args:
            outputs: the model's training outputs (``f_e``, ``z_e``, ``logits_e``,
                ``logits_m`` and, with the related branch, ``f_r``, ``z_r``, ``z_f``,
                ``logits_r``).
            labels: int64 [N] identity classes 0..C-1.
            modality: int64 [N], 0 visible / 1 infrared.
        """
        cfg = self.config
        labels_related = 2 * labels + modality  # eq. 12
        values: dict[str, torch.Tensor] = {}
        if "meid" in self.enabled:
            values["meid"] = self.cross_entropy(outputs["logits_e"].float(), labels)
        if "cc_e" in self.enabled:
            values["cc_e"] = center_cluster_loss(outputs["f_e"], labels, cfg["cc_margin"])
        if "mrid" in self.enabled:
            values["mrid"] = self.cross_entropy(outputs["logits_r"].float(), labels_related)
        if "cc_r" in self.enabled:
            values["cc_r"] = center_cluster_loss(outputs["f_r"], labels_related, cfg["cc_margin"])
        if "ortho" in self.enabled:
            values["ortho"] = orthogonality_loss(outputs["z_e"], outputs["z_r"])
        if "modality" in self.enabled:
            values["modality"] = self.cross_entropy(outputs["logits_m"].float(), modality)
        if "fusion" in self.enabled:
            values["fusion"] = fusion_loss(
                outputs["z_e"], outputs["z_f"], labels, modality, cfg["fusion_margin"]
            )
        total = sum(cfg[WEIGHT_KEYS[name]] * value for name, value in values.items())
        # One device-to-host copy for all terms.
        floats = torch.stack([v.detach().float() for v in values.values()]).tolist()
        return total, dict(zip(values, floats, strict=True))
