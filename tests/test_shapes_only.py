"""Shape-only units (timing-only split methods) give the shapes, dtypes and gradient
flags that PyTorch's own meta kernels give, through forward and backward."""

from __future__ import annotations

import copy

import pytest
import torch

from ecofed_sim.models import build_model
from ecofed_sim.shapes_only import place


def _pass(model, x: torch.Tensor):
    """(output, input gradient, parameter gradients) of one forward and backward pass."""
    x = x.clone().requires_grad_(True)
    out = model(x)
    out.sum().backward()
    return out, x.grad, [p.grad for p in model.parameters()]


@pytest.mark.parametrize("name", ["small_cnn", "vgg5", "resnet9"])
def test_shape_only_units_match_metas_shapes_through_forward_and_backward(name):
    torch.manual_seed(0)
    base = build_model(name, (3, 32, 32), 10).train()
    plain, shaped = copy.deepcopy(base).to("meta"), place(copy.deepcopy(base), torch.device("meta"))
    x = torch.empty(6, 3, 32, 32, device="meta")
    (a, ga, pa), (b, gb, pb) = _pass(plain, x), _pass(copy.deepcopy(shaped), x)
    assert (a.shape, a.dtype, a.is_meta) == (b.shape, b.dtype, True)
    assert ga.shape == gb.shape
    assert [g.shape for g in pa] == [g.shape for g in pb]
    leaves = [(type(m), type(n)) for m, n in zip(base.modules(), shaped.modules(), strict=True)
              if next(m.children(), None) is None]
    assert all(s is not b and issubclass(s, b) for b, s in leaves)  # they answer from shapes
    assert shaped.state_dict().keys() == base.state_dict().keys()


def test_frozen_units_pass_no_gradient_and_real_tensors_compute():
    torch.manual_seed(0)
    model = place(build_model("small_cnn", (1, 28, 28), 10), torch.device("meta"))
    for p in model.parameters():
        p.requires_grad_(False)
    out = model(torch.empty(4, 1, 28, 28, device="meta"))
    assert out.shape == (4, 10) and not out.requires_grad
    real = build_model("small_cnn", (1, 28, 28), 10)
    cpu = place(copy.deepcopy(real), torch.device("cpu"))
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(cpu(x), real(x))  # only meta tensors take the shape path


def test_a_layer_answering_with_several_tensors_keeps_pytorchs_own_path():
    class Pair(torch.nn.Module):
        def forward(self, x):
            return x * 2, x.sum(1)

    layer = place(Pair(), torch.device("meta"))
    x = torch.empty(3, 5, device="meta")
    for _ in range(2):  # the first call learns it, the second keeps to it
        a, b = layer(x)
        assert a.shape == (3, 5) and b.shape == (3,)
