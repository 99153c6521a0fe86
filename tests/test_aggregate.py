from __future__ import annotations

import pytest
import torch

from ecofed_sim.aggregation import fedavg


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


def test_float64_accumulation_then_one_rounding():
    """Each element is the float64 weighted sum rounded once to float32: a float32
    accumulator would round at every client and differ in some of 1,000 elements."""
    gen = torch.Generator().manual_seed(3)
    states = [{"w": torch.randn(1000, generator=gen) * 10 ** i} for i in range(4)]
    weights = [7, 1, 3, 2]
    expected = sum(s["w"].double() * (w / 13) for s, w in zip(states, weights, strict=True))
    out = fedavg(states, weights)["w"]
    assert out.dtype == torch.float32 and torch.equal(out, expected.float())
    f32 = sum(s["w"] * (w / 13) for s, w in zip(states, weights, strict=True))
    assert not torch.equal(f32, out)  # the check above can tell the two apart


ONE_EACH = "^fedavg needs one weight per state and at least one state$"


@pytest.mark.parametrize("states, weights, message", [
    ([{"w": torch.ones(1)}, {"w": torch.ones(1)}], [1], ONE_EACH),
    ([{"w": torch.ones(1)}], [1, 1], ONE_EACH),
    ([], [], ONE_EACH),
    ([{"w": torch.ones(1)}, {"w": torch.ones(1)}], [1, -1],
     "^fedavg weights must sum to a positive number$"),
])
def test_rejects_mismatched_or_empty_input_naming_why(states, weights, message):
    with pytest.raises(ValueError, match=message):
        fedavg(states, weights)


def test_the_running_mean_names_what_is_wrong_and_takes_fractional_weights():
    from ecofed_sim.aggregation import WeightedMean

    mean = WeightedMean(0.5)  # fractional weights are fine: only their sum must be > 0
    with pytest.raises(ValueError, match="^fedavg needs at least one state$"):
        mean.result()
    mean.add({"w": torch.tensor([2.0])}, 0.25)
    mean.add({"w": torch.tensor([4.0])}, 0.25)
    assert torch.equal(mean.result()["w"], torch.tensor([3.0]))
    with pytest.raises(ValueError, match="^fedavg states must have the same keys$"):
        mean.add({"v": torch.tensor([1.0])}, 0.25)
    with pytest.raises(ValueError, match="^fedavg weights must sum to a positive number$"):
        WeightedMean(0.0)


def test_weights_scale_free_and_integer_tensors_copied():
    a = {"w": torch.tensor([0.0, 4.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([8.0, 0.0]), "n": torch.tensor(1)}
    small, big = fedavg([a, b], [1, 3]), fedavg([a, b], [100, 300])
    assert torch.equal(small["w"], torch.tensor([6.0, 1.0]))
    assert torch.equal(small["w"], big["w"])
    small["n"] += 1  # a copy, not the first state's tensor
    assert a["n"].item() == 5 and big["n"].item() == 5


class _Placed:
    """Stands in for a tensor on any device (no GPU needed): records where ``to`` sends it."""

    def __init__(self, device: str, dtype: torch.dtype = torch.float32) -> None:
        self.device, self.dtype = torch.device(device), dtype

    def to(self, *args):
        return args


def test_the_float64_sum_stays_on_its_device_except_on_mps():
    """Apple's mps has no float64: the running sum lives on the CPU there; elsewhere on
    the states' own device. The result goes back to each state's device and dtype."""
    from ecofed_sim.aggregation.sync import _from_sum, _placement, _sum_device, _to_sum

    assert _sum_device(torch.device("mps")) == torch.device("cpu")
    assert _sum_device(torch.device("cuda:1")) == torch.device("cuda:1")
    assert _to_sum(_Placed("mps")) == (torch.device("cpu"), torch.float64)
    assert _to_sum(_Placed("cuda:1")) == (torch.device("cuda:1"), torch.float64)
    assert _to_sum(_Placed("cpu")) == (torch.device("cpu"), torch.float64)
    half_on_mps = _Placed("mps", torch.float16)
    assert _placement(half_on_mps) == (torch.device("mps"), torch.float16)
    assert _from_sum(_Placed("cpu", torch.float64), _placement(half_on_mps)) == (
        torch.device("mps"), torch.float16)
