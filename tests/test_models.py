"""Per-layer facts derived from shapes agree with hand counts."""

from __future__ import annotations

import itertools

import pytest
import torch

from ecofed_sim.models import ZOO, build_model, layer_stats, state_bytes


def test_small_cnn_params_and_flops_by_hand():
    stats = layer_stats(build_model("small_cnn", (1, 8, 8), 2), (1, 8, 8))
    assert [s.params for s in stats] == [80 + 16, 0, 1168 + 32, 0, 0, 64 * 24 + 24, 50]
    conv1 = stats[0].flops_by_kind
    assert conv1["conv"] == 2 * 1 * 9 * 8 * 64 + 8 * 64  # MACs x 2 + bias, 8x8 output
    assert conv1["norm"] == 4 * 8 * 64
    assert conv1["act"] == 8 * 64
    assert stats[1].flops_by_kind["pool"] == 4 * 8 * 16  # 2x2 window per 4x4 output
    assert stats[5].flops_by_kind["linear"] == 2 * 64 * 24 + 24
    assert [s.out_shape for s in stats][:4] == [(8, 8, 8), (8, 4, 4), (16, 4, 4), (16, 2, 2)]


def vgg11_params_by_hand(w: float) -> int:
    """conv3x3 + bias + BatchNorm affine per CBR, then FC 512w*2*2 -> 4096w -> 4096w -> 10."""
    c = [3, *(round(k * w) for k in (64, 128, 256, 256, 512, 512, 512, 512))]
    conv_params = sum(9 * a * b + b + 2 * b for a, b in itertools.pairwise(c))
    flat, hidden = c[-1] * 4, round(4096 * w)
    return conv_params + flat * hidden + hidden + hidden * hidden + hidden + hidden * 10 + 10


@pytest.mark.parametrize("width", [1.0, 0.25, 0.125])
def test_vgg11_paper_split_and_size(width):
    stats = layer_stats(build_model("vgg11", (3, 32, 32), 10, width), (3, 32, 32))
    # the paper's split: after CBR128 + max-pool
    assert stats[3].out_shape == (round(128 * width), 8, 8)
    assert [s.name for s in stats[12:]] == ["flatten", "fc1", "fc2", "fc3"]
    assert stats[12].out_shape == (round(2048 * width),)
    assert sum(s.params for s in stats) == vgg11_params_by_hand(width)


def test_width_scales_every_model_and_keeps_its_units():
    """A width multiplier thins channels and hidden units, never the input, the classes or
    the number of units (so split points keep their meaning)."""
    for name in ZOO:
        shape = (3, 32, 32)
        full, thin = build_model(name, shape, 10), build_model(name, shape, 10, 0.25)
        assert len(thin) == len(full)
        n_full, n_thin = (sum(p.numel() for p in m.parameters()) for m in (full, thin))
        assert n_thin < n_full / 8, name  # about 1/16: both sides of most layers shrink
        assert thin(torch.randn(2, *shape)).shape == (2, 10)
        assert thin.units[0][0].in_channels == 3


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_split_reassembles_the_model(name):
    shape = (1, 28, 28) if name == "small_cnn" else (3, 32, 32)
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    x = torch.randn(4, *shape)
    full = model(x)
    stats = layer_stats(model, shape)
    for k in range(1, len(model)):
        act = model.part(0, k)(x)
        assert tuple(act.shape[1:]) == stats[k - 1].out_shape
        torch.testing.assert_close(model.part(k)(act), full)
    assert state_bytes(model) == 4 * sum(s.params for s in stats)
    assert sum(s.params for s in stats) == sum(p.numel() for p in model.parameters())


def test_resnet9_is_the_reference_codes_with_its_parameter_count():
    """CBR = conv3x3 (bias) + BatchNorm (affine, no running statistics) + ReLU.
    CBR(3,64) 1,920; CBR(64,128) 74,112; block 256: CBR(128,256) 295,680 + CBR(256,256)
    590,592 + 1x1 stride-2 shortcut 33,024; block 512: 1,181,184 + 2,360,832 + 131,584;
    identity block: 2 x 2,360,832; FC 512 -> 10: 5,130. In all 9,395,722."""
    model = build_model("resnet9", (3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 9_395_722
    stats = {s.name: s for s in layer_stats(model, (3, 32, 32))}
    assert stats["res1"].out_shape == (256, 4, 4) and stats["res2"].out_shape == (512, 2, 2)
    assert stats["res3"].out_shape == (512, 2, 2)
    shortcut = model.units[4].shortcut  # res1
    assert (shortcut.kernel_size, shortcut.stride, shortcut.bias is not None) == (
        (1, 1), (2, 2), True)
    assert isinstance(model.units[6].shortcut, torch.nn.Identity)


def test_the_torch_free_zoo_facts_match_the_built_models():
    """Checking a scenario reads names and unit counts from ``model_zoo`` (no torch)."""
    from ecofed_sim.model_zoo import MODEL_NAMES, UNITS

    assert tuple(ZOO) == MODEL_NAMES
    for name in MODEL_NAMES:
        for shape, classes in (((1, 28, 28), 10), ((3, 32, 32), 100), ((3, 64, 64), 200)):
            assert len(build_model(name, shape, classes)) == UNITS[name], (name, shape)
