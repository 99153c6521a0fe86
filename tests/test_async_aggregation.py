"""FedAsync's mixing, FedBuff's buffer and the staleness functions, against hand values."""

from __future__ import annotations

import pytest
import torch

from ecofed_sim.aggregation import DeltaBuffer, mix, staleness_weight


def test_staleness_functions_by_hand():
    assert staleness_weight("constant", 7) == 1.0
    assert staleness_weight("polynomial", 0) == 1.0
    assert staleness_weight("polynomial", 3) == pytest.approx(0.5)  # (3 + 1) ** -0.5
    assert staleness_weight("polynomial", 1, a=2.0) == pytest.approx(0.25)
    assert staleness_weight("hinge", 4, a=10.0, b=4) == 1.0  # up to b: full weight
    assert staleness_weight("hinge", 5, a=10.0, b=4) == pytest.approx(1 / 11)
    assert staleness_weight("hinge", 7, a=0.5, b=4) == pytest.approx(1 / 2.5)
    assert staleness_weight("hinge", 0) == 1.0
    assert staleness_weight("hinge", 5) == pytest.approx(1 / 1.5)  # defaults a 0.5, b 4
    with pytest.raises(ValueError, match="count of server versions"):
        staleness_weight("constant", -1)
    with pytest.raises(ValueError, match="^unknown staleness function 'linear'; one of "
                       "constant, polynomial, hinge$"):
        staleness_weight("linear", 1)


def test_mix_by_hand_and_exact_at_one():
    g = {"w": torch.tensor([0.0, 4.0]), "n": torch.tensor(2)}
    c = {"w": torch.tensor([8.0, 0.0]), "n": torch.tensor(5)}
    quarter = mix(g, c, 0.25)
    assert torch.equal(quarter["w"], torch.tensor([2.0, 3.0]))
    assert quarter["w"].dtype == torch.float32 and quarter["n"].item() == 5
    odd = {"w": torch.tensor([0.1, -3.7e-8]), "n": torch.tensor(5)}
    assert torch.equal(mix(g, odd, 1.0)["w"], odd["w"])  # alpha 1: the client's model
    quarter["n"] += 1  # a copy, not the client's tensor
    assert c["n"].item() == 5
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="mixing weight"):
            mix(g, c, bad)
    with pytest.raises(ValueError, match="^the states must have the same keys$"):
        mix(g, {"w": c["w"]}, 0.5)


def test_delta_buffer_by_hand():
    pulled_a = {"w": torch.tensor([1.0, 1.0]), "n": torch.tensor(1)}
    trained_a = {"w": torch.tensor([3.0, 1.0]), "n": torch.tensor(4)}  # delta (2, 0)
    pulled_b = {"w": torch.tensor([0.0, 0.0]), "n": torch.tensor(1)}
    trained_b = {"w": torch.tensor([0.0, 6.0]), "n": torch.tensor(9)}  # delta (0, 6)
    buf = DeltaBuffer(2)
    buf.add(trained_a, pulled_a, weight=3.0)
    assert not buf.full
    buf.add(trained_b, pulled_b, weight=1.0, staleness_factor=0.5)
    assert buf.full and buf.count == 2
    g = {"w": torch.tensor([10.0, 10.0]), "n": torch.tensor(0)}
    # sum of weight * factor * delta = 3 (2, 0) + 0.5 (0, 6) = (6, 3); / (3 + 1); * lr 2
    new = buf.apply(g, server_lr=2.0)
    assert torch.equal(new["w"], torch.tensor([13.0, 11.5]))
    assert new["n"].item() == 9  # the latest update's integer buffers
    assert buf.count == 0 and not buf.full
    with pytest.raises(ValueError, match="^the buffer is empty$"):
        buf.apply(g)


def test_delta_buffer_of_equal_pulls_is_fedavg():
    """K deltas from one pulled model, lr 1, no staleness: x + mean(x_i - x) = mean(x_i)."""
    from ecofed_sim.aggregation import fedavg

    gen = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(50, generator=gen)}
    states = [{"w": torch.randn(50, generator=gen)} for _ in range(3)]
    buf = DeltaBuffer(3)
    for state, n in zip(states, (5, 1, 7), strict=True):
        buf.add(state, base, weight=n)
    torch.testing.assert_close(buf.apply(base)["w"], fedavg(states, [5, 1, 7])["w"],
                               rtol=0, atol=1e-6)


def test_delta_buffer_refuses_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        DeltaBuffer(0)
    buf = DeltaBuffer(2)
    s = {"w": torch.zeros(2)}
    for weight, factor in ((0.0, 1.0), (1.0, 0.0)):
        with pytest.raises(ValueError, match="^an update's weight and staleness factor "
                           "must be positive$"):
            buf.add(s, s, weight, factor)
    buf.add(s, s, 1.0)
    with pytest.raises(ValueError, match="^the states must have the same keys$"):
        buf.add({"v": torch.zeros(2)}, {"v": torch.zeros(2)}, 1.0)
    with pytest.raises(ValueError, match="^the states must have the same keys$"):
        buf.apply({"v": torch.zeros(2)})


def test_delta_buffer_of_one_integer_first_and_used_twice():
    """K = 1 applies every update; integer tensors listed first do not stop the floats;
    a second fill starts from an empty sum and weight."""
    buf = DeltaBuffer(1)
    pulled = {"n": torch.tensor(0), "w": torch.tensor([1.0])}
    buf.add({"n": torch.tensor(3), "w": torch.tensor([5.0])}, pulled, weight=2.0)
    assert buf.full
    g = buf.apply({"n": torch.tensor(0), "w": torch.tensor([1.0])})
    assert torch.equal(g["w"], torch.tensor([5.0])) and g["n"].item() == 3
    buf.add({"n": torch.tensor(4), "w": torch.tensor([9.0])}, g, weight=4.0,
            staleness_factor=0.5)
    assert torch.equal(buf.apply(g)["w"], torch.tensor([7.0]))  # 5 + 0.5 * 4 * 4 / 4
