"""Losses: values against torch and hand computations, weighting, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ecgcnn.errors import EcgError
from ecgcnn.training.losses import LOSSES, build_loss

LOGITS = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [0.0, 0.0, 0.0]])
TARGET = torch.tensor([0, 2, 1])
WEIGHTS = torch.tensor([2.0, 1.0, 0.5])


def test_cross_entropy_matches_torch():
    torch.testing.assert_close(
        build_loss("cross_entropy")(LOGITS, TARGET), F.cross_entropy(LOGITS, TARGET)
    )
    torch.testing.assert_close(
        build_loss("cross_entropy", WEIGHTS)(LOGITS, TARGET),
        F.cross_entropy(LOGITS, TARGET, weight=WEIGHTS),
    )


def test_mse_values():
    target = torch.tensor([0, 3, 1])
    perfect = 60.0 * F.one_hot(target, 4).float()
    assert build_loss("mse")(perfect, target).item() < 1e-12
    # uniform logits, K = 4: p = 1/4 everywhere; ((3/4)^2 + 3 * (1/4)^2) / 4 = 0.1875
    assert build_loss("mse")(torch.zeros(3, 4), target).item() == pytest.approx(0.1875)


def test_mse_weighting_is_a_weighted_mean():
    # sample 0 perfect (loss 0, weight 2), sample 1 uniform (loss 0.1875, weight 1)
    logits = torch.stack([60.0 * F.one_hot(torch.tensor(0), 4).float(), torch.zeros(4)])
    target = torch.tensor([0, 1])
    w = torch.tensor([2.0, 1.0, 1.0, 1.0])
    assert build_loss("mse", w)(logits, target).item() == pytest.approx(0.1875 / 3)
    # uniform weights change nothing
    torch.testing.assert_close(
        build_loss("mse", torch.full((4,), 3.0))(logits, target), build_loss("mse")(logits, target)
    )


def test_hinge_by_hand():
    # sum over k != y of max(0, 1 - z_y + z_k), divided by K = 3, then averaged over the batch:
    #   [1, 2, 0], y=0:    max(0, 1-1+2) + max(0, 1-1+0) = 2         -> 2/3
    #   [0.5, -1, 3], y=2: max(0, 1-3+0.5) + max(0, 1-3-1) = 0       -> 0
    #   [0, 0, 0], y=1:    1 + 1 = 2                                 -> 2/3
    assert build_loss("hinge")(LOGITS, TARGET).item() == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)
    # weights multiply each sample's terms by w[y]; PyTorch still divides by the batch size
    expected = (2.0 * 2 / 3 + 0.5 * 0 + 1.0 * 2 / 3) / 3
    assert build_loss("hinge", WEIGHTS)(LOGITS, TARGET).item() == pytest.approx(expected)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_gradients_flow(name, weights):
    logits = LOGITS.clone().requires_grad_(True)
    loss = build_loss(name, weights)(logits, TARGET)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0
    # a gradient step along -grad lowers the loss
    with torch.no_grad():
        stepped = build_loss(name, weights)(logits - 0.01 * logits.grad, TARGET)
    assert stepped < loss


def test_weights_follow_the_module_to_another_dtype():
    loss = build_loss("mse", WEIGHTS).double()
    assert loss(LOGITS.double(), TARGET).dtype == torch.float64


def test_unknown_loss_and_bad_weights_raise():
    with pytest.raises(EcgError, match=r"trainer\.loss: unknown loss 'focal'"):
        build_loss("focal")
    with pytest.raises(EcgError, match=r"trainer\.class_weighting"):
        build_loss("mse", torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(EcgError, match=r"trainer\.class_weighting"):
        build_loss("cross_entropy", torch.tensor([[1.0, 1.0]]))
