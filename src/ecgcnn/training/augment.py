"""Label-preserving augmentation of training batches (never applied to validation or test)."""

from __future__ import annotations

import math

import torch


def augment_batch(x: torch.Tensor, cfg, gen: torch.Generator) -> torch.Tensor:
    """Randomly perturb a batch of beat windows.

    Parameters
    ----------
    x : (B, C, T) beat windows in mV
    cfg : ``AugmentConfig``
    gen : the loop's generator (so a resumed run draws the same perturbations)

    Returns
    -------
    A new (B, C, T) tensor: amplitude scaling, baseline wander (a random slow sinusoid),
    Gaussian noise, electrode-motion-like steps, and a small circular time shift.
    """
    if not cfg.enabled:
        return x
    b, c, t = x.shape

    def rand(*shape):
        return torch.rand(*shape, generator=gen, device="cpu").to(x.device)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device="cpu").to(x.device)

    out = x
    if cfg.scale > 0:
        out = out * (1 + cfg.scale * (2 * rand(b, 1, 1) - 1))
    if cfg.wander > 0:
        phase = 2 * math.pi * rand(b, 1, 1)
        cycles = 0.2 + 0.8 * rand(b, 1, 1)  # < 1 cycle per window: slow drift
        ramp = torch.linspace(0, 2 * math.pi, t, device=x.device).view(1, 1, t)
        out = out + cfg.wander * rand(b, 1, 1) * torch.sin(cycles * ramp + phase)
    if cfg.noise > 0:
        out = out + cfg.noise * randn(b, c, t)
    if cfg.motion > 0:
        # Electrode motion shows as abrupt baseline steps: a random step at a random position.
        pos = (rand(b, 1, 1) * t).long()
        step = (torch.arange(t, device=x.device).view(1, 1, t) >= pos).float()
        out = out + cfg.motion * (2 * rand(b, 1, 1) - 1) * step
    if cfg.shift > 0:
        k = int(torch.randint(-cfg.shift, cfg.shift + 1, (1,), generator=gen))
        if k:
            out = torch.roll(out, k, dims=-1)
    return out
