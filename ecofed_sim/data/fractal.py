"""Formula-driven images: rendered iterated-function-system (IFS) fractals as classes.

In the spirit of FractalDB (Kataoka et al., ACCV 2020), which the EcoFed code lists as a
pre-training source: each class is a random set of 2-4 contractive affine maps; a sample
renders that system by the chaos game after perturbing every parameter by up to
``jitter`` and colouring each channel at random. No real data is involved.
"""

from __future__ import annotations

import torch

from ecofed_sim.data.base import ImageSet, make_set


def _class_systems(classes: int, gen: torch.Generator) -> list[tuple[torch.Tensor, ...]]:
    systems = []
    for _ in range(classes):
        m = int(torch.randint(2, 5, (1,), generator=gen))
        a = torch.rand(m, 2, 2, generator=gen) * 2 - 1
        norms = torch.linalg.matrix_norm(a, ord=2)
        a = a * (0.45 + 0.4 * torch.rand(m, generator=gen) / norms.clamp(min=1e-6))[:, None,
                                                                                  None]
        b = torch.rand(m, 2, generator=gen) * 2 - 1
        systems.append((a, b))
    return systems


def _render(a: torch.Tensor, b: torch.Tensor, shape: tuple[int, int, int], points: int,
            gen: torch.Generator) -> torch.Tensor:
    """Chaos game for S perturbed copies at once: a [S, m, 2, 2], b [S, m, 2] -> uint8."""
    s, m = a.shape[:2]
    c, h, w = shape
    prob = torch.linalg.det(a).abs() + 0.05
    prob = prob / prob.sum(1, keepdim=True)
    xy = torch.rand(s, points, 2, generator=gen) * 2 - 1
    hits: list[torch.Tensor] = []
    for step in range(24):
        pick = torch.multinomial(prob, points, replacement=True, generator=gen)  # [S, P]
        a_sel = torch.gather(a, 1, pick[..., None, None].expand(s, points, 2, 2))
        b_sel = torch.gather(b, 1, pick[..., None].expand(s, points, 2))
        xy = (a_sel @ xy[..., None]).squeeze(-1) + b_sel
        if step >= 12:
            hits.append(xy)
    pts = torch.cat(hits, 1)  # [S, N, 2]
    lo, hi = pts.amin(1, keepdim=True), pts.amax(1, keepdim=True)
    norm = (pts - lo) / (hi - lo).clamp(min=1e-6)
    col = (norm[..., 0] * (w - 1)).round().long()
    row = (norm[..., 1] * (h - 1)).round().long()
    flat = torch.arange(s)[:, None] * h * w + row * w + col
    counts = torch.zeros(s * h * w).index_add_(0, flat.reshape(-1),
                                               torch.ones(flat.numel())).reshape(s, 1, h, w)
    density = (counts / counts.amax(dim=(2, 3), keepdim=True).clamp(min=1)).sqrt()
    colour = 0.4 + 0.6 * torch.rand(s, c, 1, 1, generator=gen)
    return (density * colour * 255).round().to(torch.uint8)


def make_fractal(classes: int, samples_per_class: int, shape: tuple[int, int, int],
                 seed: int, jitter: float = 0.1, points: int = 400) -> ImageSet:
    """A labelled fractal image set, deterministic in ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for label, (a, b) in enumerate(_class_systems(classes, gen)):
        n = samples_per_class
        noise_a = 1 + jitter * (torch.rand(n, *a.shape, generator=gen) * 2 - 1)
        noise_b = 1 + jitter * (torch.rand(n, *b.shape, generator=gen) * 2 - 1)
        images.append(_render(a[None] * noise_a, b[None] * noise_b, shape, points, gen))
        labels.append(torch.full((n,), label, dtype=torch.long))
    return make_set(torch.cat(images), torch.cat(labels), classes)
