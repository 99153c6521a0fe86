"""Equivalence oracles between methods (ARCHITECTURE.md principle 8)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny
from helpers import assert_same_state, final_state, run_dict


@pytest.mark.parametrize("split", [1, 4, 6])
def test_splitfed_v1_ends_with_fedavg_weights(tiny_dir, split):
    fedavg = final_state(tiny(rounds=3), tiny_dir)
    split_fl = final_state(tiny(rounds=3, method={"name": "splitfed", "split": split}),
                            tiny_dir)
    assert_same_state(fedavg, split_fl)


def test_splitfed_v2_with_one_client_per_round_is_v1(tiny_dir):
    one = {"population.clients_per_round": 1, "rounds": 3}
    v1 = final_state(tiny(**one, method={"name": "splitfed", "split": 4}), tiny_dir)
    v2 = final_state(tiny(**one, method={"name": "splitfed_v2", "split": 4}), tiny_dir)
    assert_same_state(v1, v2)


def test_splitfed_v2_differs_from_v1_with_several_clients(tiny_dir):
    """The oracle above is not vacuous: sharing one server model changes what is learned."""
    v1 = final_state(tiny(method={"name": "splitfed", "split": 4}), tiny_dir)
    v2 = final_state(tiny(method={"name": "splitfed_v2", "split": 4}), tiny_dir)
    assert any(not torch.allclose(v1[k], v2[k]) for k in v1)


def test_training_changes_the_model_and_fedavg_learns(tiny_dir):
    raw = tiny(rounds=3, **{"data.synthetic.train_samples": 400,
                            "data.synthetic.test_samples": 200})
    res = run_dict(raw, tiny_dir)
    assert res.rounds.test_accuracy.iloc[-1] >= 0.9  # two learnable synthetic classes


@pytest.mark.parametrize("split", [2, 5])
def test_splitfed_v1_matches_fedavg_with_clients_of_unequal_size(tiny_dir, split):
    """Both weight device updates by sample count: with equal-sized clients an equal
    weighting would pass the oracle above, so here the clients differ in size."""
    from ecofed_sim.prepare import prepare
    from ecofed_sim.scenario import scenario_from_dict

    unequal = {"data.partition": {"kind": "dirichlet", "alpha": 0.3, "min_samples": 5},
               "data.synthetic.train_samples": 60, "rounds": 2}
    prep = prepare(scenario_from_dict(tiny(**unequal), "tiny.yaml"), "tiny.yaml", tiny_dir)
    sizes = [len(ix) for ix in prep.client_indices]
    assert len(set(sizes)) > 1 and max(sizes) >= 1.5 * min(sizes), sizes
    fedavg = final_state(tiny(**unequal), tiny_dir)
    split_fl = final_state(tiny(**unequal, method={"name": "splitfed", "split": split}),
                           tiny_dir)
    assert_same_state(fedavg, split_fl)
