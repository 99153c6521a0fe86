from __future__ import annotations

import pytest
import torch

from ecofed_sim.aggregate import fedavg


def test_weighted_average_and_integer_buffers():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(9)}
    out = fedavg([a, b], [1, 3])
    torch.testing.assert_close(out["w"], torch.tensor([2.5, 5.0]))
    assert out["n"].item() == 3 and out["w"].dtype == torch.float32


def test_equal_states_are_a_fixed_point():
    s = {"w": torch.randn(5, 3, generator=torch.Generator().manual_seed(1))}
    assert torch.equal(fedavg([s, s, s], [2, 5, 1])["w"], s["w"])


@pytest.mark.parametrize("states, weights", [([], []), ([{"w": torch.ones(1)}], [0])])
def test_rejects_degenerate_input(states, weights):
    with pytest.raises(ValueError):
        fedavg(states, weights)
