"""Pre-training sources, the disk cache and checkpoint loading."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny
from helpers import run_dict

import ecofed_sim.pretrain as pretrain
from ecofed_sim.engine import Engine
from ecofed_sim.errors import ScenarioError
from ecofed_sim.models import build_model
from ecofed_sim.prepare import prepare
from ecofed_sim.scenario import scenario_from_dict

ECOFED = {"name": "ecofed", "split": 4}


def _prep(raw, base_dir):
    return prepare(scenario_from_dict(raw, "tiny.yaml"), "tiny.yaml", base_dir)


def test_public_split_is_held_out_and_cached(tiny_dir, monkeypatch):
    raw = tiny(method=ECOFED, pretrain={"source": "public_split", "public_fraction": 0.25,
                                        "epochs": 2, "cache_dir": str(tiny_dir / "c")})
    prep = _prep(raw, tiny_dir)
    assert len(prep.train) == 30  # 40 - 25% public
    assert sum(len(p) for p in prep.client_indices) == 30
    assert len(list((tiny_dir / "c").glob("pretrain-*.pt"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(pretrain, "train_centrally", fail)
    again = _prep(raw, tiny_dir)
    assert all(torch.equal(again.pretrained[k], prep.pretrained[k]) for k in prep.pretrained)
    with pytest.raises(AssertionError, match="retrained"):
        _prep(tiny(method=ECOFED, pretrain={**raw["pretrain"], "epochs": 3}), tiny_dir)


def test_ecofed_starts_from_pretrained_units_baselines_only_on_request(tiny_dir):
    spec = {"source": "fractal", "epochs": 1, "cache_dir": str(tiny_dir / "c"),
            "fractal": {"classes": 3, "samples_per_class": 8}}
    prep = _prep(tiny(method=ECOFED, pretrain=spec), tiny_dir)
    eco = Engine(prep).method.global_model.state_dict()
    for key in (k for k in eco if k.startswith(("units.0.", "units.2."))):
        assert torch.equal(eco[key], prep.pretrained[key]), key
    assert prep.pretrained["units.6.weight"].shape[0] == 3  # the source's classes
    split = {"name": "splitfed", "split": 4}
    plain = Engine(_prep(tiny(method=split, pretrain=spec), tiny_dir))
    fair = Engine(_prep(tiny(method=split, pretrain={**spec, "init_baselines": True}),
                        tiny_dir))
    key = "units.0.0.weight"
    assert not torch.equal(plain.method.global_model.state_dict()[key], prep.pretrained[key])
    assert torch.equal(fair.method.global_model.state_dict()[key], prep.pretrained[key])


def test_checkpoint_source(tiny_dir):
    model = build_model("small_cnn", (1, 8, 8), 7)
    torch.save({"state_dict": model.state_dict()}, tiny_dir / "ckpt.pt")
    res = run_dict(tiny(rounds=1, method=ECOFED,
                        pretrain={"source": "checkpoint", "checkpoint": "ckpt.pt"}), tiny_dir)
    assert len(res.rounds) == 1
    torch.save({"units.0.0.weight": torch.zeros(3)}, tiny_dir / "bad.pt")
    with pytest.raises(ScenarioError, match="do not cover units 1..4"):
        run_dict(tiny(rounds=1, method=ECOFED,
                      pretrain={"source": "checkpoint", "checkpoint": "bad.pt"}), tiny_dir)
    with pytest.raises(ScenarioError, match="pretrain.checkpoint: file not found"):
        _prep(tiny(method=ECOFED, pretrain={"source": "checkpoint", "checkpoint": "no.pt"}),
              tiny_dir)


def test_other_dataset_must_match_the_input_shape(tiny_dir):
    other = {"dataset": "synthetic", "synthetic": {"shape": [3, 8, 8], "train_samples": 20,
                                                   "test_samples": 5}}
    with pytest.raises(ScenarioError, match=r"pretrain.dataset: images are \[3, 8, 8\]"):
        _prep(tiny(method=ECOFED, pretrain={"source": "dataset", "dataset": other,
                                            "cache_dir": str(tiny_dir / "c")}), tiny_dir)


def test_fedavg_with_pretraining_needs_units(tiny_dir):
    with pytest.raises(ScenarioError, match="pretrain.units: required for fedavg"):
        _prep(tiny(pretrain={"source": "fractal", "init_baselines": True}), tiny_dir)


def _features_checkpoint(path, first_conv_out: int = 8) -> torch.nn.Module:
    """The small CNN in torchvision's ``features`` / ``classifier`` layout, with BatchNorm
    running statistics (which the zoo's BatchNorm does not keep)."""
    nn = torch.nn
    net = nn.Module()
    net.features = nn.Sequential(
        nn.Conv2d(1, first_conv_out, 3, padding=1), nn.BatchNorm2d(first_conv_out), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(first_conv_out, 16, 3, padding=1), nn.BatchNorm2d(16),
        nn.ReLU(), nn.MaxPool2d(2))
    net.classifier = nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 2))
    torch.save(net.state_dict(), path)
    return net


def test_a_features_layout_checkpoint_initialises_the_device_part(tiny_dir):
    from ecofed_sim.pretrain import init_units

    net = _features_checkpoint(tiny_dir / "ck.pt")
    raw = tiny(method=ECOFED, pretrain={"source": "checkpoint", "checkpoint": "ck.pt"})
    prep = _prep(raw, tiny_dir)
    model = prep.build_model()
    init_units(model, prep.pretrained, 4)
    got = model.state_dict()
    assert torch.equal(got["units.0.0.weight"], net.features[0].weight.detach())
    assert torch.equal(got["units.0.1.bias"], net.features[1].bias.detach())
    assert torch.equal(got["units.2.0.weight"], net.features[4].weight.detach())


def test_a_checkpoint_that_does_not_fit_names_what_is_unmatched(tiny_dir):
    from ecofed_sim.errors import ScenarioError

    _features_checkpoint(tiny_dir / "ck.pt", first_conv_out=4)  # 4 channels, not 8
    raw = tiny(method=ECOFED, pretrain={"source": "checkpoint", "checkpoint": "ck.pt"})
    with pytest.raises(ScenarioError, match=r"do not cover units 1\.\.4 of small_cnn: 8 "
                       r"tensors unmatched \(first: \['units\.0\.0\.bias'.*the checkpoint's "
                       r"next keys: \['features\.0\.weight'"):
        _prep(raw, tiny_dir)  # checked before any data is loaded


def test_crop_and_flip_crops_from_the_zero_padded_image_and_flips_half():
    from ecofed_sim.data.augment import crop_and_flip

    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    seen_offsets, flips = set(), 0
    for trial in range(200):
        gen = torch.Generator().manual_seed(trial)
        out = crop_and_flip(x, gen)
        again = crop_and_flip(x, torch.Generator().manual_seed(trial))
        assert torch.equal(out, again) and out.shape == x.shape  # seeded, same size
        for i in range(2):
            found = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (0, 1)
                     if torch.equal(out[i], (padded[i, :, dy:dy + 5, dx:dx + 6].flip(-1) if f
                                             else padded[i, :, dy:dy + 5, dx:dx + 6]))]
            assert found, "every output is a crop of the padded image, maybe flipped"
            seen_offsets.add(found[0][:2])
            flips += found[0][2]
    assert len(seen_offsets) == 81  # every offset in 0..8 x 0..8 occurs
    assert 150 < flips < 250  # about half of 400 images flipped


def test_the_pretraining_recipe_is_followed(tiny_dir, monkeypatch):
    """Weight decay and Nesterov reach the optimiser, the step schedule multiplies the
    rate at its milestones, and augmentation changes (reproducibly) what is learned."""

    seen = []
    real_step = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        g = self.param_groups[0]
        seen.append((g["lr"], g["weight_decay"], g["nesterov"]))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    recipe = {"source": "public_split", "public_fraction": 0.25, "epochs": 3,
              "batch_size": 5, "lr": 0.1, "weight_decay": 5e-4, "nesterov": True,
              "lr_milestones": [1, 2], "lr_gamma": 0.5}
    prep = _prep(tiny(method=ECOFED, pretrain={**recipe, "cache_dir": str(tiny_dir / "a")}),
                 tiny_dir)
    lrs = sorted({round(lr, 12) for lr, _, _ in seen}, reverse=True)
    assert lrs == [0.1, 0.05, 0.025]
    assert all(wd == 5e-4 and nesterov for _, wd, nesterov in seen)
    aug = {**recipe, "augment": True}
    one = _prep(tiny(method=ECOFED, pretrain={**aug, "cache_dir": str(tiny_dir / "b")}),
                tiny_dir).pretrained
    two = _prep(tiny(method=ECOFED, pretrain={**aug, "cache_dir": str(tiny_dir / "c")}),
                tiny_dir).pretrained
    key = "units.0.0.weight"
    assert torch.equal(one[key], two[key]) and not torch.equal(one[key], prep.pretrained[key])


def test_validate_loads_the_checkpoint_and_checks_it_fits(tiny_dir, capsys):
    from conftest import write_scenario

    from ecofed_sim.cli import main

    _features_checkpoint(tiny_dir / "ck.pt", first_conv_out=4)
    raw = tiny(method=ECOFED, pretrain={"source": "checkpoint", "checkpoint": "ck.pt"})
    path = write_scenario(tiny_dir, raw)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "do not cover units 1..4 of small_cnn" in err, err
    _features_checkpoint(tiny_dir / "ck.pt")
    assert main(["validate", str(path)]) == 0
