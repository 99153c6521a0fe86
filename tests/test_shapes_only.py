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


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_shaped_losses_match_metas_shapes_and_leave_real_tensors_alone(reduction):
    """``cross_entropy`` and FedGKT's ``kd_loss`` on meta answer from the memo, with the
    gradient shapes PyTorch's meta kernels give (none for the labels); on CPU they are
    PyTorch's own, value for value."""
    import torch.nn.functional as F

    from ecofed_sim.methods.fedgkt import kd_loss
    from ecofed_sim.shapes_only import cross_entropy

    for device in ("meta", "cpu"):
        gen = torch.Generator().manual_seed(1)
        logits = torch.randn(6, 10, generator=gen).to(device).requires_grad_(True)
        teacher = torch.randn(6, 10, generator=gen).to(device)
        y = torch.randint(0, 10, (6,), generator=gen).to(device)
        ours = cross_entropy(logits, y, reduction=reduction) + kd_loss(logits, teacher, 3.0)
        theirs_in = logits.detach().clone().requires_grad_(True)
        theirs = F.cross_entropy(theirs_in, y, reduction=reduction) + kd_loss.__wrapped__(
            theirs_in, teacher, 3.0)
        ours.backward()
        theirs.backward()
        assert (ours.shape, ours.dtype) == (theirs.shape, theirs.dtype)
        assert logits.grad.shape == theirs_in.grad.shape
        if device == "cpu":
            assert torch.equal(ours, theirs) and torch.equal(logits.grad, theirs_in.grad)


def test_an_optimiser_over_meta_parameters_clears_gradients_and_steps_nowhere():
    from types import SimpleNamespace

    from ecofed_sim.methods.base import sgd
    from ecofed_sim.shapes_only import ShapesOnlySGD

    training = SimpleNamespace(lr=0.1, momentum=0.9, weight_decay=0.0)
    model = place(build_model("small_cnn", (1, 28, 28), 10), torch.device("meta"))
    opt = sgd(model.parameters(), training)
    assert type(opt) is ShapesOnlySGD
    model(torch.empty(2, 1, 28, 28, device="meta")).sum().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())
    real = build_model("small_cnn", (1, 28, 28), 10)
    before = [p.detach().clone() for p in real.parameters()]
    cpu_opt = sgd(real.parameters(), training)
    assert type(cpu_opt) is torch.optim.SGD
    real(torch.randn(2, 1, 28, 28)).sum().backward()
    cpu_opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, real.parameters(), strict=True))


@pytest.mark.parametrize("name", ["vgg5", "resnet9"])
def test_a_part_is_one_node_with_metas_shapes_and_a_copy_keeps_its_own_parameters(name):
    """A split method's device and server parts are one shape-only autograd node each
    (a server step through VGG11's server part was a node per layer), with the shapes
    PyTorch's meta kernels give; a deep copy's gradients land on its own parameters."""
    torch.manual_seed(0)
    base = build_model(name, (3, 32, 32), 10).train()
    plain, shaped = copy.deepcopy(base).to("meta"), place(copy.deepcopy(base), torch.device("meta"))
    x = torch.empty(5, 3, 32, 32, device="meta")
    split = 3
    for start, end in ((0, split), (split, None)):
        ours = copy.deepcopy(shaped.part(start, end)).train()
        theirs = plain.part(start, end)
        inputs = x if start == 0 else plain.part(0, split)(x).detach()
        (a, ga, pa), (b, gb, pb) = _pass(theirs, inputs), _pass(ours, inputs)
        assert (a.shape, a.dtype) == (b.shape, b.dtype) and ga.shape == gb.shape
        assert [g.shape for g in pa] == [g.shape for g in pb]
        node = ours(inputs.clone().requires_grad_(True)).grad_fn
        assert len(node.next_functions) == 1 + len(list(ours.parameters()))
        assert all(type(n).__name__ == "AccumulateGrad" for n, _ in node.next_functions)
        twin = copy.deepcopy(ours)  # made after the part cached its parameters
        for p in ours.parameters():
            p.grad = None
        _pass(twin, inputs)
        assert all(p.grad is None for p in ours.parameters())
        assert all(p.grad is not None for p in twin.parameters())


def test_a_timing_only_split_run_never_imports_pytorchs_compiler():
    """Batch norms, linear layers, losses and optimisers on meta answer without the
    Python decompositions whose first call imports ``torch._dynamo`` (2.2 s a process);
    a fresh process running a timing-only split round never loads it."""
    import subprocess
    import sys

    code = ("import sys, ecofed_sim\n"
            "from ecofed_sim.scenario import load_scenario\n"
            "sc = load_scenario(sys.argv[1], ['learning=none', 'rounds=1', "
            "'model.name=vgg5', 'method={name: splitfed, split: 3}'])\n"
            "ecofed_sim.run(sc)\n"
            "print('torch._dynamo' in sys.modules)\n")
    from pathlib import Path

    from ecofed_sim.shipped import resolve

    out = subprocess.run([sys.executable, "-c", code, str(resolve(Path("quickstart")))],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
