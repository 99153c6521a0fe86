"""Asynchronous aggregation: one arriving client update at a time, as pure functions.

- **FedAsync** (Xie, Koyejo and Gupta, "Asynchronous Federated Optimization", 2019):
  each arriving model is mixed into the global one, ``x <- (1 - a) x + a x_client``,
  with ``a = mixing * s(staleness)``.
- **FedBuff** (Nguyen et al., "Federated Learning with Buffered Asynchronous
  Aggregation", AISTATS 2022): the server buffers K client deltas (trained minus pulled
  model), each scaled by ``s(staleness)``, then applies their mean with a server
  learning rate, ``x <- x + lr * mean(delta)``.

Staleness is the number of server versions between a client's pull and its push.
Arithmetic runs in float64 (on the CPU for Apple's mps, which has none) and is cast back
to each tensor's dtype, as in ``sync.WeightedMean``.
"""

from __future__ import annotations

import torch

from ecofed_sim.aggregation.sync import _from_sum, _placement, _to_sum

STALENESS_FUNCTIONS = ("constant", "polynomial", "hinge")


def staleness_weight(function: str, staleness: int, a: float = 0.5, b: int = 4) -> float:
    """FedAsync's staleness functions s(t - tau) (Xie et al. 2019, section 5.2):

    - ``constant``: 1;
    - ``polynomial``: (staleness + 1) ** -a (FedBuff's choice is a = 0.5);
    - ``hinge``: 1 up to ``b`` versions stale, then 1 / (a (staleness - b) + 1).
    """
    if staleness < 0:
        raise ValueError(f"staleness is a count of server versions, got {staleness}")
    if function == "constant":
        return 1.0
    if function == "polynomial":
        return float((staleness + 1) ** -a)
    if function == "hinge":
        return 1.0 if staleness <= b else 1.0 / (a * (staleness - b) + 1.0)
    raise ValueError(f"unknown staleness function {function!r}; "
                     f"one of {', '.join(STALENESS_FUNCTIONS)}")


def _same_keys(a: dict, b: dict) -> None:
    if a.keys() != b.keys():
        raise ValueError("the states must have the same keys")


def mix(global_state: dict[str, torch.Tensor], client_state: dict[str, torch.Tensor],
        alpha: float) -> dict[str, torch.Tensor]:
    """FedAsync's update ``(1 - alpha) * global + alpha * client``. Integer tensors (e.g.
    BatchNorm's ``num_batches_tracked``) take the client's value. With ``alpha = 1`` the
    result is the client's model exactly."""
    if not 0 < alpha <= 1:
        raise ValueError(f"the mixing weight must be in (0, 1], got {alpha}")
    _same_keys(global_state, client_state)
    mixed = {}
    for key, g in global_state.items():
        c = client_state[key]
        mixed[key] = (_from_sum(_to_sum(g) * (1 - alpha) + _to_sum(c) * alpha, _placement(g))
                      if g.is_floating_point() else c.clone())
    return mixed


class DeltaBuffer:
    """FedBuff's server buffer of client deltas, each weighted by ``weight`` (its sample
    count, or 1 for the paper's plain mean) times its staleness factor; the mean divides by
    the sum of the weights alone, so a stale update counts for less rather than
    re-normalising the others up. Memory: one model, however large K is."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"the buffer holds at least one update, got {size}")
        self.size = size
        self.count = 0
        self.total_weight = 0.0
        self._acc: dict[str, torch.Tensor] = {}
        self._latest_ints: dict[str, torch.Tensor] = {}

    @property
    def full(self) -> bool:
        return self.count >= self.size

    def add(self, trained: dict[str, torch.Tensor], pulled: dict[str, torch.Tensor],
            weight: float, staleness_factor: float = 1.0) -> None:
        """One client's delta ``trained - pulled``."""
        if not weight > 0 or not staleness_factor > 0:
            raise ValueError("an update's weight and staleness factor must be positive")
        _same_keys(trained, pulled)
        if self._acc and trained.keys() != self._acc.keys() | self._latest_ints.keys():
            raise ValueError("the states must have the same keys")
        scale = weight * staleness_factor
        for key, t in trained.items():
            if not t.is_floating_point():
                self._latest_ints[key] = t.clone()
                continue
            delta = (_to_sum(t) - _to_sum(pulled[key])) * scale
            if key in self._acc:
                self._acc[key] += delta
            else:
                self._acc[key] = delta
        self.count += 1
        self.total_weight += weight

    def apply(self, global_state: dict[str, torch.Tensor],
              server_lr: float = 1.0) -> dict[str, torch.Tensor]:
        """``global + server_lr * mean(delta)``; empties the buffer."""
        if self.count == 0:
            raise ValueError("the buffer is empty")
        if global_state.keys() != self._acc.keys() | self._latest_ints.keys():
            raise ValueError("the states must have the same keys")
        new = {}
        for key, g in global_state.items():
            new[key] = (_from_sum(_to_sum(g) + self._acc[key] * (server_lr / self.total_weight),
                                  _placement(g))
                        if g.is_floating_point() else self._latest_ints[key])
        self.count, self.total_weight = 0, 0.0
        self._acc, self._latest_ints = {}, {}
        return new
