"""Units that compute shapes, not values: what a timing-only split method runs.

A timing-only run of a split method (``learning: none``) runs the method's own code on
``meta`` tensors, which have shapes and dtypes but no data, so every message keeps its
size. PyTorch works out most meta results in Python, op by op (a batch norm runs as a
decomposition into many elementwise ops), which made such a run cost a sizeable share of
a trained one (70.8 s against 511 s for a round of the paper's VGG11 setup; 20.8 s here).
Here each leaf module of a model on ``meta`` works out its output shape once per input
shape (and module settings), then answers with an empty tensor of that shape; backward
answers with empty gradients of the input's and parameters' shapes. Shapes, dtypes and
which tensors need gradients are exactly what the meta kernels give; values do not exist
either way.
"""

from __future__ import annotations

import torch
from torch import nn

_OUT_SHAPES: dict[tuple, tuple[torch.Size, torch.dtype]] = {}
_CLASSES: dict[type, type] = {}  # a module class -> its shape-only subclass
_WRAPPED: set[type] = set()


class _Shapes(torch.autograd.Function):
    """Empty output of a known shape; empty gradients of the inputs' shapes."""

    @staticmethod
    def forward(ctx, out: tuple[torch.Size, torch.dtype], x: torch.Tensor,
                *params: torch.Tensor) -> torch.Tensor:
        ctx.shapes = [(t.shape, t.dtype) for t in (x, *params)]
        return x.new_empty(out[0], dtype=out[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (None, *(grad.new_empty(shape, dtype=dtype) for shape, dtype in ctx.shapes))


def _shape_class(cls: type) -> type:
    """``cls`` whose forward, on a meta tensor, answers from the shape memo."""
    if cls in _WRAPPED:
        return cls
    sub = _CLASSES.get(cls)
    if sub is not None:
        return sub

    def forward(self, x, *args, **kwargs):
        if args or kwargs or not isinstance(x, torch.Tensor) or not x.is_meta:
            return cls.forward(self, x, *args, **kwargs)
        key = (cls, repr(self), x.shape, x.dtype, self.training)
        out = _OUT_SHAPES.get(key)
        if out is None:
            with torch.no_grad():
                y = cls.forward(self, x.detach())
            # a layer that answers with anything but one tensor keeps PyTorch's own path
            out = _OUT_SHAPES[key] = (y.shape, y.dtype) if isinstance(y, torch.Tensor) else ()
        if not out:
            return cls.forward(self, x)
        return _Shapes.apply(out, x, *self.parameters(recurse=False))

    sub = _CLASSES[cls] = type(cls.__name__, (cls,), {"forward": forward,
                                                      "__module__": cls.__module__})
    _WRAPPED.add(sub)
    return sub


def shapes_only(model: nn.Module) -> nn.Module:
    """Make every leaf module of ``model`` (a model on ``meta``) compute shapes only, in
    place; copies of it (``copy.deepcopy``) keep this."""
    for module in model.modules():
        if next(module.children(), None) is None:
            module.__class__ = _shape_class(type(module))
    return model


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` moved to ``device``; on ``meta``, computing shapes only."""
    model = model.to(device)
    return shapes_only(model) if device.type == "meta" else model


__all__ = ["place", "shapes_only"]
