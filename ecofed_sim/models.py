"""Model zoo: every model is an ordered list of named layer units, so any split index
gives a device part (units ``[0, split)``) and a server part (units ``[split, n)``).

Per-unit output shape, parameter count and forward FLOPs are derived from shapes by a
traced forward pass (never typed in), grouped by layer kind so that a device profile can
charge conv, linear, norm, pool and element-wise work at different effective speeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ecofed_sim.model_zoo import MIN_SIDE, UNITS  # noqa: F401 - re-exported
from ecofed_sim.profiles import LAYER_KINDS  # noqa: F401 - re-exported: where users look


class Add(nn.Module):
    """Element-wise sum of a residual connection, a module so its FLOPs are counted."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def cbr(c_in: int, c_out: int) -> nn.Sequential:
    """conv3x3 (pad 1) + BatchNorm2d without running statistics + ReLU, as in the EcoFed code.

    ``track_running_stats=False`` makes BatchNorm normalise with the current batch even in
    eval mode (as in the EcoFed reference code), so a frozen layer's output depends on its
    batch.
    """
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
        nn.BatchNorm2d(c_out, track_running_stats=False),
        nn.ReLU(inplace=False),
    )


class ResidualBlock(nn.Module):
    """A block of the EcoFed reference code's ResNet9: x' = body(x) + shortcut(x), body =
    two CBRs. A downsampling block (``c_in != c_out``) ends its body with a 2x2 max-pool
    (ceil mode) and its shortcut is a 1x1 convolution of stride 2 with bias and no
    BatchNorm; otherwise the shortcut is the identity."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        body: list[nn.Module] = [cbr(c_in, c_out), cbr(c_out, c_out)]
        self.down = c_in != c_out
        if self.down:
            body.append(nn.MaxPool2d(2, ceil_mode=True))
        self.body = nn.Sequential(*body)
        self.shortcut = (nn.Conv2d(c_in, c_out, kernel_size=1, stride=2) if self.down
                         else nn.Identity())
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add(self.body(x), self.shortcut(x))


def fc(n_in: int, n_out: int, relu: bool) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU()) if relu else nn.Linear(n_in, n_out)


def scaled(channels: int, width: float) -> int:
    """A layer's width under the model's width multiplier (at least 1 channel or unit)."""
    return max(1, round(channels * width))


def _flat(shape: tuple[int, ...], pools: int) -> int:
    c, h, w = shape
    return c * (h // 2**pools) * (w // 2**pools)


def small_cnn(in_shape: tuple[int, int, int], num_classes: int,
              width: float = 1.0) -> list[tuple[str, nn.Module]]:
    """About 20k parameters on 1x28x28: for tests and quick runs."""
    c, c1, c2, h = in_shape[0], scaled(8, width), scaled(16, width), scaled(24, width)
    return [
        ("conv1", cbr(c, c1)), ("pool1", nn.MaxPool2d(2)),
        ("conv2", cbr(c1, c2)), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", fc(_flat((c2, *in_shape[1:]), 2), h, relu=True)),
        ("fc2", fc(h, num_classes, relu=False)),
    ]  # fmt: skip


def vgg5(in_shape: tuple[int, int, int], num_classes: int,
         width: float = 1.0) -> list[tuple[str, nn.Module]]:
    """FedAdapt's VGG5 (Wu et al. 2022): conv32, pool, conv64, pool, conv64, FC 4096-128-10."""
    c, c1, c2, h = in_shape[0], scaled(32, width), scaled(64, width), scaled(128, width)
    return [
        ("conv1", cbr(c, c1)), ("pool1", nn.MaxPool2d(2)),
        ("conv2", cbr(c1, c2)), ("pool2", nn.MaxPool2d(2)),
        ("conv3", cbr(c2, c2)),
        ("flatten", nn.Flatten()),
        ("fc1", fc(_flat((c2, *in_shape[1:]), 2), h, relu=True)),
        ("fc2", fc(h, num_classes, relu=False)),
    ]  # fmt: skip


def vgg11(in_shape: tuple[int, int, int], num_classes: int,
          width: float = 1.0) -> list[tuple[str, nn.Module]]:
    """The EcoFed paper's CIFAR-style VGG11 (no dropout; FC 2048-4096-4096-classes).

    The paper's split (after the 2nd conv block and its max-pool) is split index 4.
    """
    hidden = scaled(4096, width)
    units: list[tuple[str, nn.Module]] = []
    c_in, conv_i, pool_i = in_shape[0], 0, 0
    for item in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512):
        if item == "M":
            pool_i += 1
            units.append((f"pool{pool_i}", nn.MaxPool2d(2)))
        else:
            conv_i += 1
            units.append((f"conv{conv_i}", cbr(c_in, scaled(int(item), width))))
            c_in = scaled(int(item), width)
    units += [
        ("flatten", nn.Flatten()),
        ("fc1", fc(_flat((c_in, *in_shape[1:]), 4), hidden, relu=True)),
        ("fc2", fc(hidden, hidden, relu=True)),
        ("fc3", fc(hidden, num_classes, relu=False)),
    ]
    return units


def resnet9(in_shape: tuple[int, int, int], num_classes: int,
            width: float = 1.0) -> list[tuple[str, nn.Module]]:
    """ResNet9 as the EcoFed reference code builds it: CBR64, MP, CBR128, MP, two
    downsampling residual blocks (256, 512: two CBRs and a max-pool, plus a strided 1x1
    shortcut), one identity block (512), global average pool, FC. 9,395,722 parameters for
    10 classes."""
    c64, c128, c256, c512 = (scaled(c, width) for c in (64, 128, 256, 512))
    return [
        ("conv1", cbr(in_shape[0], c64)), ("pool1", nn.MaxPool2d(2)),
        ("conv2", cbr(c64, c128)), ("pool2", nn.MaxPool2d(2)),
        ("res1", ResidualBlock(c128, c256)),
        ("res2", ResidualBlock(c256, c512)),
        ("res3", ResidualBlock(c512, c512)),
        ("gap", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())),
        ("fc", fc(c512, num_classes, relu=False)),
    ]  # fmt: skip


ZOO: dict[str, Callable[..., list[tuple[str, nn.Module]]]] = {
    "small_cnn": small_cnn,
    "vgg5": vgg5,
    "vgg11": vgg11,
    "resnet9": resnet9,
}


class LayerModel(nn.Module):
    """An ordered list of named units; ``forward(x, start, end)`` runs units [start, end)."""

    def __init__(self, name: str, units: list[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.name = name
        self.unit_names = [n for n, _ in units]
        self.units = nn.ModuleList([m for _, m in units])

    def __len__(self) -> int:
        return len(self.units)

    def forward(self, x: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        for unit in self.units[start:end]:
            x = unit(x)
        return x

    def part(self, start: int, end: int | None = None) -> nn.Sequential:
        """The units [start, end) as a Sequential that shares parameters with this model."""
        return nn.Sequential(*self.units[start:end])


def build_model(name: str, in_shape: tuple[int, int, int], num_classes: int,
                width: float = 1.0) -> LayerModel:
    """Build a zoo model, every layer's channels (and hidden units) times ``width``. Call
    under a seeded RNG for reproducible initial weights."""
    if name not in ZOO:
        raise KeyError(f"unknown model {name!r} (accepted: {', '.join(sorted(ZOO))})")
    return LayerModel(name, ZOO[name](tuple(in_shape), num_classes, width))


@dataclass(frozen=True)
class LayerStats:
    """Shape-derived facts of one unit, per sample."""

    index: int
    name: str
    out_shape: tuple[int, ...]
    params: int
    param_bytes: int
    flops_by_kind: dict[str, float] = field(default_factory=dict)

    @property
    def forward_flops(self) -> float:
        return float(sum(self.flops_by_kind.values()))

    @property
    def out_elements(self) -> int:
        return math.prod(self.out_shape)


def _leaf_flops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> tuple[str, float]:
    """Forward FLOPs of one leaf module for the batch it saw (multiply-add counted as 2)."""
    if isinstance(module, nn.Conv2d):
        k_h, k_w = module.kernel_size
        macs = (module.in_channels // module.groups) * k_h * k_w * out.numel()
        return "conv", 2.0 * macs + (out.numel() if module.bias is not None else 0)
    if isinstance(module, nn.Linear):
        rows = out.numel() // module.out_features
        bias = out.numel() if module.bias is not None else 0
        return "linear", 2.0 * module.in_features * module.out_features * rows + bias
    if isinstance(module, nn.BatchNorm2d):
        return "norm", 4.0 * out.numel()  # mean, variance, normalise, affine
    if isinstance(module, nn.MaxPool2d):
        k = module.kernel_size
        k_h, k_w = (k, k) if isinstance(k, int) else k
        return "pool", float(k_h * k_w * out.numel())
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "pool", float(inp.numel())
    if isinstance(module, nn.ReLU | Add):
        return "act", float(out.numel())
    return "act", 0.0  # Flatten and other shape-only ops


def layer_stats(model: LayerModel, in_shape: tuple[int, ...]) -> list[LayerStats]:
    """Trace one sample through the model and derive per-unit shape, params and FLOPs."""
    stats: list[LayerStats] = []
    x = torch.zeros(2, *in_shape)  # batch 2: BatchNorm in train mode rejects batch 1
    with torch.no_grad():
        for i, (name, unit) in enumerate(zip(model.unit_names, model.units, strict=True)):
            flops: dict[str, float] = dict.fromkeys(LAYER_KINDS, 0.0)

            def hook(mod: nn.Module, args: tuple, out: torch.Tensor, flops=flops) -> None:
                kind, n = _leaf_flops(mod, args[0], out)
                flops[kind] += n / 2  # per sample

            leaves = [m for m in unit.modules() if not list(m.children())]
            handles = [m.register_forward_hook(hook) for m in leaves]
            x = unit(x)
            for h in handles:
                h.remove()
            params = list(unit.parameters())
            stats.append(LayerStats(
                index=i, name=name, out_shape=tuple(x.shape[1:]),
                params=sum(p.numel() for p in params),
                param_bytes=sum(p.numel() * p.element_size() for p in params),
                flops_by_kind=flops,
            ))
    return stats


def state_bytes(module: nn.Module) -> int:
    """Bytes of every tensor in a state dict (parameters and buffers), from dtypes."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())
