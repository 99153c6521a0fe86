"""A learnable synthetic image set of any shape and class count.

Each class has a smooth random template (a sum of low-frequency 2-D sinusoids per channel);
a sample is its class template, shifted by a few pixels, scaled in contrast and covered in
pixel noise. Classes are separable but not trivially so, which is what byte and time studies
at paper scale need (e.g. 3x32x32, 10 classes, 50,000 samples) without real data.
"""

from __future__ import annotations

import math

import torch

from ecofed_sim.data.base import ImageSet, make_set

RENDER_FLOATS = 2**26  # floats rendered at once (256 MiB)


def _templates(classes: int, shape: tuple[int, int, int], gen: torch.Generator) -> torch.Tensor:
    c, h, w = shape
    ys = torch.linspace(0, 1, h).view(h, 1)
    xs = torch.linspace(0, 1, w).view(1, w)
    out = torch.zeros(classes, c, h, w)
    for _ in range(4):  # four random waves per class and channel
        fy, fx = (torch.randint(1, 4, (2, classes, c), generator=gen).float())
        phase = torch.rand(classes, c, generator=gen) * 2 * math.pi
        amp = torch.rand(classes, c, generator=gen) + 0.5
        arg = 2 * math.pi * (fy[..., None, None] * ys + fx[..., None, None] * xs)
        out += amp[..., None, None] * torch.sin(arg + phase[..., None, None])
    return out / out.abs().amax(dim=(1, 2, 3), keepdim=True)


def _render(templates: torch.Tensor, labels: torch.Tensor, noise: float,
            gen: torch.Generator) -> torch.Tensor:
    """Each label's template rolled by its own (dy, dx) in [-2, 2], scaled, with noise.
    The roll is one gather (pixel (i, j) comes from ((i - dy) % h, (j - dx) % w), as
    ``torch.roll``) and the arithmetic is in place: the same values as rolling the
    samples in groups by offset with a fresh tensor at each step, in less time and
    memory (``tests/test_data.py``)."""
    n = labels.shape[0]
    k, c, h, w = templates.shape
    shift = torch.randint(-2, 3, (n, 2), generator=gen)
    rows = (torch.arange(h) - shift[:, :1]) % h
    cols = (torch.arange(w) - shift[:, 1:]) % w
    source = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    x = torch.gather(templates.view(k, c, h * w)[labels], 2, source).view(n, c, h, w)
    x.mul_(0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen))
    x.add_(torch.randn(x.shape, generator=gen).mul_(noise))
    return x.clamp_(-2, 2).add_(2).mul_(255 / 4).round_().to(torch.uint8)


def make_synthetic(spec, split_seed: int, images: bool = True) -> tuple[ImageSet, ImageSet]:
    """Train and test sets from a ``data.synthetic`` section, deterministic in its seed.

    ``images=False`` (a timing-only run, which reads only labels and sample counts)
    draws the same labels and renders nothing: every image is one shared blank (a
    zero-stride view, no memory per sample), with mean 0 and std 1. At 3x32x32 and
    500,000 samples, rendering would take 1.5 GB and most of a minute."""
    gen = torch.Generator().manual_seed(spec.seed)
    shape = tuple(spec.shape)
    templates = _templates(spec.classes, shape, gen)  # drawn either way: labels come next
    total = spec.train_samples + spec.test_samples
    labels = torch.randint(0, spec.classes, (total,), generator=gen)
    tr = slice(0, spec.train_samples)
    te = slice(spec.train_samples, total)
    if not images:
        blank = torch.zeros((1, *shape), dtype=torch.uint8).expand(total, *shape)
        stats = ((0.0,) * shape[0], (1.0,) * shape[0])
        return (ImageSet(blank[tr], labels[tr], spec.classes, *stats),
                ImageSet(blank[te], labels[te], spec.classes, *stats))
    step = min(4096, max(1, RENDER_FLOATS // math.prod(shape)))  # bounds float32 memory
    chunks = [_render(templates, labels[i:i + step], spec.noise, gen)
              for i in range(0, total, step)]
    images_u8 = torch.cat(chunks)
    train = make_set(images_u8[tr], labels[tr], spec.classes)
    test = make_set(images_u8[te], labels[te], spec.classes, stats_from=train)
    return train, test
