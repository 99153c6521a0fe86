"""Equivalence oracles between methods (ARCHITECTURE.md principle 8)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny
from helpers import run_dict

from ecofed_sim.engine import Engine
from ecofed_sim.prepare import prepare
from ecofed_sim.scenario import scenario_from_dict


def _final_state(raw: dict, base_dir) -> dict[str, torch.Tensor]:
    engine = Engine(prepare(scenario_from_dict(raw, "tiny.yaml"), "tiny.yaml", base_dir))
    for r in range(engine.scenario.rounds):
        engine.run_round(r)
    return {k: v.clone() for k, v in engine.method.eval_model().state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("split", [1, 4, 6])
def test_splitfed_v1_ends_with_fedavg_weights(tiny_dir, split):
    fedavg = _final_state(tiny(rounds=3), tiny_dir)
    split_fl = _final_state(tiny(rounds=3, method={"name": "splitfed", "split": split}),
                            tiny_dir)
    _assert_same(fedavg, split_fl)


def test_splitfed_v2_with_one_client_per_round_is_v1(tiny_dir):
    one = {"population.clients_per_round": 1, "rounds": 3}
    v1 = _final_state(tiny(**one, method={"name": "splitfed", "split": 4}), tiny_dir)
    v2 = _final_state(tiny(**one, method={"name": "splitfed_v2", "split": 4}), tiny_dir)
    _assert_same(v1, v2)


def test_splitfed_v2_differs_from_v1_with_several_clients(tiny_dir):
    """The oracle above is not vacuous: sharing one server model changes what is learned."""
    v1 = _final_state(tiny(method={"name": "splitfed", "split": 4}), tiny_dir)
    v2 = _final_state(tiny(method={"name": "splitfed_v2", "split": 4}), tiny_dir)
    assert any(not torch.allclose(v1[k], v2[k]) for k in v1)


def test_training_changes_the_model_and_fedavg_learns(tiny_dir):
    raw = tiny(rounds=3, **{"data.synthetic.train_samples": 400,
                            "data.synthetic.test_samples": 200})
    res = run_dict(raw, tiny_dir)
    assert res.rounds.test_accuracy.iloc[-1] >= 0.9  # two learnable synthetic classes
