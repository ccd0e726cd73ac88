"""Classification losses selected by ``trainer.loss``.

Every loss takes logits ``(B, K)`` and int64 class indices ``(B,)`` and returns a scalar.
``class_weights`` ``(K,)`` (from ``trainer.class_weighting``) weights each sample by the
weight of its true class. Where we write the weighting ourselves (mse) we
normalise like ``nn.CrossEntropyLoss`` does: ``sum_i w[y_i] * l_i / sum_i w[y_i]``, so that a
uniform weight vector changes nothing. ``nn.MultiMarginLoss`` (hinge) divides by the batch
size instead; that is PyTorch's convention and we keep it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ecgcnn.errors import EcgError


class _WeightedLoss(nn.Module):
    """Per-sample loss, averaged with the true-class weights (plain mean without weights)."""

    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("weight", weight)  # a buffer follows .to(device)

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.per_sample(logits, target)  # (B,)
        if self.weight is None:
            return loss.mean()
        w = self.weight[target]  # (B,)
        return (w * loss).sum() / w.sum()


class SoftmaxMSELoss(_WeightedLoss):
    """Mean squared error between softmax probabilities and the one-hot target.

    Per sample: ``mean_k (softmax(z)_k - onehot(y)_k)^2`` (mean over the K classes, as
    ``nn.MSELoss`` would), so a perfect prediction gives 0 and the worst gives ``2 / K``.
    """

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        prob = torch.softmax(logits, dim=1)
        onehot = F.one_hot(target, num_classes=logits.shape[1]).to(prob.dtype)
        return ((prob - onehot) ** 2).mean(dim=1)


LOSSES: dict[str, Callable[[torch.Tensor | None], nn.Module]] = {
    "cross_entropy": lambda w: nn.CrossEntropyLoss(weight=w),
    "mse": SoftmaxMSELoss,
    # sum_{k != y} w[y] * max(0, 1 - z_y + z_k) / K, averaged over the batch
    "hinge": lambda w: nn.MultiMarginLoss(p=1, margin=1.0, weight=w),
}


def build_loss(name: str, class_weights: torch.Tensor | None = None) -> nn.Module:
    """The loss ``name`` (a key of ``LOSSES``), optionally weighted per true class.

    Parameters
    ----------
    name : str
        cross_entropy | mse | hinge.
    class_weights : torch.Tensor, optional
        ``(K,)`` non-negative finite weights, one per class.

    Returns
    -------
    nn.Module
        Called as ``loss(logits (B, K), target (B,) int64) -> scalar``.
    """
    if name not in LOSSES:
        raise EcgError(
            f"trainer.loss: unknown loss '{name}' (choose from {', '.join(sorted(LOSSES))})"
        )
    if class_weights is not None:
        class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
        if (
            class_weights.dim() != 1
            or not torch.isfinite(class_weights).all()
            or (class_weights < 0).any()
            or class_weights.sum() <= 0
        ):
            raise EcgError(
                "trainer.class_weighting: class weights must be a 1-D tensor of finite, "
                f"non-negative values with a positive sum, got {class_weights.tolist()}"
            )
    return LOSSES[name](class_weights)
