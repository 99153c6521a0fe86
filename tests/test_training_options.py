"""Scenario options that the golden tests did not reach, each against a hand-derived
expectation: several local epochs, evaluation every k rounds on a subset, weight decay,
and a shaper's token bucket set in the scenario."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY_MODEL_PARAMS, tiny
from helpers import final_state, run_dict

EXACT = {"rel": 1e-12, "abs": 1e-12}
MODEL_BYTES = TINY_MODEL_PARAMS * 4
DOWNLOAD_S = 0.010 + MODEL_BYTES * 8 / 2e6  # each device's own 2 Mbit/s downlink
UPLOAD_S = 0.010 + MODEL_BYTES * 8 / 0.5e6  # 1 Mbit/s server ingress shared by 2
EPOCH_S = 2 * 0.021  # 20 samples at batch 10: 2 steps x 7 units x (1 + 2) ms


@pytest.mark.parametrize("epochs", [1, 2, 3])
def test_local_epochs_repeat_the_device_steps(tiny_dir, epochs):
    res = run_dict(tiny(**{"training.local_epochs": epochs}), tiny_dir)
    expected = DOWNLOAD_S + epochs * EPOCH_S + UPLOAD_S
    assert res.rounds.round_time_s.tolist() == pytest.approx([expected] * 2, **EXACT)
    computes = res.timeline.query("state == 'compute' and round == 0")
    assert computes.groupby("client").apply(
        lambda d: (d.t_end_s - d.t_start_s).sum(), include_groups=False).tolist() == \
        pytest.approx([epochs * EPOCH_S] * 2, **EXACT)


def test_two_local_epochs_learn_something_else_than_one(tiny_dir):
    one = final_state(tiny(rounds=1), tiny_dir)
    two = final_state(tiny(rounds=1, **{"training.local_epochs": 2}), tiny_dir)
    assert any(not torch.equal(one[k], two[k]) for k in one)


def test_evaluation_every_k_rounds_and_always_the_last(tiny_dir):
    res = run_dict(tiny(rounds=5, **{"evaluation.every": 2}), tiny_dir)
    evaluated = res.rounds.test_accuracy.notna().tolist()
    assert evaluated == [False, True, False, True, True]


def test_eval_samples_evaluates_on_exactly_n_samples(tiny_dir):
    """Accuracy over 7 samples is a multiple of 1/7; over the full 20, of 1/20."""
    accuracy = run_dict(tiny(rounds=2, **{"data.eval_samples": 7}), tiny_dir).rounds.test_accuracy
    assert all(math.isclose(a * 7, round(a * 7), abs_tol=1e-9) for a in accuracy)
    assert any(not math.isclose(a * 20, round(a * 20), abs_tol=1e-9) for a in accuracy)


def test_weight_decay_shrinks_the_weights(tiny_dir):
    plain = final_state(tiny(rounds=2), tiny_dir)
    decayed = final_state(tiny(rounds=2, **{"training.weight_decay": 0.5}), tiny_dir)
    norm = {name: sum(float(v.float().norm()) for k, v in state.items() if "weight" in k)
            for name, state in (("plain", plain), ("decayed", decayed))}
    assert norm["decayed"] < 0.95 * norm["plain"]


def test_a_token_bucket_in_the_scenario_sends_its_burst_at_once(tiny_dir):
    """A 4,000-byte bucket on each device link, filling from the start of the run at the
    link's rate. The weights down (11,624 bytes) start after 10 ms, when the downlink's
    bucket holds 0.010 s x 2 Mbit/s = 2,500 bytes: those go at once, the rest at 2 Mbit/s.
    The upload starts after the compute, when the uplink's bucket is full: 4,000 bytes of
    each go at once, and the server's 1 Mbit/s is shared by the rest."""
    res = run_dict(tiny(rounds=1, **{"population.devices.0.link.burst_bytes": 4000}),
                   tiny_dir)
    down_s = 0.010 + (MODEL_BYTES - 2500) * 8 / 2e6
    up_s = 0.010 + (MODEL_BYTES - 4000) * 8 / 0.5e6
    assert res.rounds.round_time_s.iloc[0] == pytest.approx(down_s + EPOCH_S + up_s, **EXACT)


def test_augmentation_changes_what_is_learned_reproducibly_and_never_the_clock(tiny_dir):
    plain = run_dict(tiny(rounds=2), tiny_dir)
    aug = run_dict(tiny(rounds=2, **{"training.augment": True}), tiny_dir)
    again = final_state(tiny(rounds=2, **{"training.augment": True}), tiny_dir)
    first = final_state(tiny(rounds=2), tiny_dir)
    assert any(not torch.equal(first[k], again[k]) for k in first)
    assert all(torch.equal(a, b) for a, b in zip(
        final_state(tiny(rounds=2, **{"training.augment": True}), tiny_dir).values(),
        again.values(), strict=True))
    assert aug.rounds.round_time_s.tolist() == plain.rounds.round_time_s.tolist()


def test_ecofed_never_reuses_frozen_outputs_of_another_rounds_augmentation(tiny_dir):
    """Oracle: the frozen-output cache on (fixed data order, so it would hit across rounds)
    and off learn the same when batches are augmented anew every round."""
    method = {"name": "ecofed", "split": 4, "period": 1}
    common = {"rounds": 3, "training.augment": True, "training.shuffle": "fixed"}
    cached = final_state(tiny(method=method, **common), tiny_dir)
    uncached = final_state(tiny(method={**method, "frozen_cache_mib": 1e-9}, **common),
                           tiny_dir)
    assert all(torch.equal(cached[k], uncached[k]) for k in cached)
