"""FedAvg (McMahan et al. 2017) as a pure function of state dicts and weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def fedavg(states: Sequence[dict[str, torch.Tensor]],
           weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Weighted average of state dicts; weights are normalised to sum to 1.

    Floating tensors are averaged in float64 and cast back to their dtype, so the result
    does not depend on the order clients finished in. Integer tensors (e.g. BatchNorm's
    ``num_batches_tracked``) take the first state's value.
    """
    if not states or len(states) != len(weights):
        raise ValueError("fedavg needs one weight per state and at least one state")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("fedavg weights must sum to a positive number")
    out: dict[str, torch.Tensor] = {}
    for key, first in states[0].items():
        if not first.is_floating_point():
            out[key] = first.clone()
            continue
        acc = torch.zeros_like(first, dtype=torch.float64)
        for state, w in zip(states, weights, strict=True):
            acc += state[key].to(torch.float64) * (w / total)
        out[key] = acc.to(first.dtype)
    return out
