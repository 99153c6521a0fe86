"""FedAvg (McMahan et al. 2017) as a pure function of state dicts and weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _sum_device(device: torch.device) -> torch.device:
    """Where a float64 sum of tensors on ``device`` lives: Apple's mps has no float64."""
    return torch.device("cpu") if device.type == "mps" else device


def _to_sum(t: torch.Tensor) -> torch.Tensor:
    return t.to(_sum_device(t.device), torch.float64)


def _placement(t: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    return t.device, t.dtype


def _from_sum(acc: torch.Tensor, placement: tuple[torch.device, torch.dtype]) -> torch.Tensor:
    device, dtype = placement
    return acc.to(device, dtype)


class WeightedMean:
    """A running weighted mean of state dicts: memory for one model however many clients
    are added, so a round of thousands of clients aggregates as it trains them.

    ``total_weight`` (the sum of every weight to come) is known up front, so each state is
    added already scaled: adding in the order ``fedavg`` loops gives its exact result.
    Floating tensors accumulate in float64 and are cast back; integer tensors (e.g.
    BatchNorm's ``num_batches_tracked``) take the first state's value. The sum lives on
    the first state's device, except on Apple's ``mps``, which has no float64: there it
    lives on the CPU.
    """

    def __init__(self, total_weight: float) -> None:
        self.total = float(total_weight)
        if not self.total > 0:
            raise ValueError("fedavg weights must sum to a positive number")
        self._acc: dict[str, torch.Tensor] | None = None
        self._placements: dict[str, tuple[torch.device, torch.dtype]]  # by the first add

    def add(self, state: dict[str, torch.Tensor], weight: float) -> None:
        if self._acc is None:
            self._placements = {k: _placement(t) for k, t in state.items()}
            self._acc = {k: torch.zeros_like(_to_sum(t)) if t.is_floating_point()
                         else t.clone() for k, t in state.items()}
        if state.keys() != self._acc.keys():
            raise ValueError("fedavg states must have the same keys")
        for key, t in state.items():
            if t.is_floating_point():
                self._acc[key] += _to_sum(t) * (weight / self.total)

    def result(self) -> dict[str, torch.Tensor]:
        if self._acc is None:
            raise ValueError("fedavg needs at least one state")
        return {k: _from_sum(t, self._placements[k]) for k, t in self._acc.items()}


def fedavg(states: Sequence[dict[str, torch.Tensor]],
           weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Weighted average of state dicts; weights are normalised to sum to 1.

    Floating tensors are averaged in float64 and cast back to their dtype, so the result
    does not depend on the order clients finished in. Integer tensors (e.g. BatchNorm's
    ``num_batches_tracked``) take the first state's value.
    """
    if not states or len(states) != len(weights):
        raise ValueError("fedavg needs one weight per state and at least one state")
    mean = WeightedMean(float(sum(weights)))
    for i, state in enumerate(states):  # lengths checked above
        mean.add(state, weights[i])
    return mean.result()
