"""Training-time augmentation as the CIFAR recipes (and the EcoFed code) apply it: a random
crop of the original size from the image padded by 4 pixels of zeros, then a horizontal
flip with probability 1/2. Draws come from a generator keyed by the caller (for
pre-training: seed, epoch, batch), so augmented runs stay reproducible."""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4


def crop_and_flip(x: torch.Tensor, gen: torch.Generator, pad: int = PAD) -> torch.Tensor:
    """[N, C, H, W] images, each cropped at a random offset from its zero-padded copy and
    flipped left-right with probability 1/2."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None, :])  # [N, H]
    cols = (dx[:, None] + torch.arange(w)[None, :])  # [N, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    index = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
