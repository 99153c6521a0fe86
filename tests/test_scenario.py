"""Scenario files: extends, overrides, and the shipped scenarios all validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecofed_sim.cli import main
from ecofed_sim.errors import ScenarioError
from ecofed_sim.prepare import check
from ecofed_sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def test_extends_merges_mappings_and_child_wins(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "seed: 1\nrounds: 3\nmodel: {name: small_cnn}\n"
        "training: {lr: 0.5, batch_size: 4}\n"
        "population: {clients: 2, clients_per_round: 2, devices: [{profile: rpi4b, count: 2}]}\n")
    (tmp_path / "child.yaml").write_text(
        "extends: base.yaml\nname: c\ntraining: {lr: 0.1}\nmethod: {name: fedavg}\n")
    sc = load_scenario(tmp_path / "child.yaml")
    assert (sc.seed, sc.training.lr, sc.training.batch_size) == (1, 0.1, 4)


def test_extends_cycle_is_one_line_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ScenarioError, match="extends: circular"):
        load_scenario(tmp_path / "a.yaml")


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "scenarios").rglob("*.yaml")
                                        if not p.name.startswith("_")
                                        and p.parent.name != "sweeps"), ids=lambda p: p.name)
def test_shipped_scenarios_validate(path):
    check(load_scenario(path), str(path), path.parent)


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios" / "sweeps").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_sweeps_expand(path):
    from ecofed_sim.sweep_spec import expand, load_sweep

    runs = expand(path, load_sweep(path))
    assert len({r.run_id for r in runs}) == len(runs) > 1


def test_list_commands_print_what_exists(capsys):
    for what in ("models", "methods", "datasets", "profiles", "links"):
        assert main(["list", what]) == 0
    out = capsys.readouterr().out
    for name in ("vgg11", "ecofed", "local_loss", "embedded_mnist", "jetson_nano", "4g"):
        assert name in out


def test_layers_command(capsys):
    assert main(["layers", "vgg11"]) == 0
    out = capsys.readouterr().out
    assert "128x8x8" in out and "34,440,970" not in out  # per-unit, not the total
    assert main(["layers", "nope"]) == 2
    assert main(["layers", "vgg11", "--width", "0.25"]) == 0
    assert "32x8x8" in capsys.readouterr().out  # the paper's split at a quarter width
    assert main(["layers", "vgg11", "--width", "0"]) == 2
    assert "--width" in capsys.readouterr().err


@pytest.mark.parametrize("method, expected", [
    ({"name": "ecofed", "split": 4}, {"lockstep": True, "replay_control_bytes": 32}),
    ({"name": "local_loss", "split": 4}, {"lockstep": True}),
    ({"name": "fedgkt", "split": 4}, {"mode": "two_phase"}),
    ({"name": "splitfed", "split": 4}, {}),
])
def test_paper_fidelity_switches_the_reference_codes_behaviours_on(method, expected):
    from conftest import tiny

    from ecofed_sim.scenario import scenario_from_dict

    plain = scenario_from_dict(tiny(method=method), "t")
    paper = scenario_from_dict(tiny(method=method, fidelity="paper"), "t")
    for field, value in expected.items():
        assert getattr(paper.method, field) == value != getattr(plain.method, field)
    assert paper.training.augment and not plain.training.augment
    assert paper.pretrain.init_baselines and not plain.pretrain.init_baselines
    assert (paper.network.message_overhead_bytes, plain.network.message_overhead_bytes) == (
        930, 0)
    assert (paper.training.shuffle == "fixed") == (method["name"] == "fedgkt")
    # what the scenario says wins
    own = scenario_from_dict(tiny(method=method, fidelity="paper",
                                  **{"training.augment": False}), "t")
    assert own.training.augment is False
