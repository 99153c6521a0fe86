"""Units that compute shapes, not values: what a timing-only split method runs.

A timing-only run of a split method (``learning: none``) runs the method's own code on
``meta`` tensors, which have shapes and dtypes but no data, so every message keeps its
size. PyTorch works out most meta results in Python, op by op (a batch norm runs as a
decomposition into many elementwise ops), which made such a run cost a sizeable share of
a trained one (70.8 s against 511 s for a round of the paper's VGG11 setup; 20.8 s here).
Here each leaf module of a model on ``meta`` works out its output shape once per input
shape (and module settings), then answers with an empty tensor of that shape; backward
answers with empty gradients of the input's and parameters' shapes. A model of units
goes further: each part it gives a split method (``part``) answers as one such node, so a
server step through VGG11's server part costs one autograd node forward and one back, not
one per layer (a timing-only SplitFed round at width 0.25: 2.8 s, was 5.5). Shapes, dtypes
and which tensors need gradients are exactly what the meta kernels give; values do not
exist either way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

_META = torch.device("meta")
_OUT_SHAPES: dict[tuple, tuple[torch.Size, torch.dtype]] = {}
_CLASSES: dict[type, type] = {}  # a module class -> its shape-only subclass
_WRAPPED: set[type] = set()


class _Shapes(torch.autograd.Function):
    """Empty output of a known shape; empty gradients of the inputs' shapes."""

    @staticmethod
    def forward(ctx, out: tuple[torch.Size, torch.dtype], x: torch.Tensor,
                *params: torch.Tensor) -> torch.Tensor:
        ctx.shapes = [(t.shape, t.dtype) if t.is_floating_point() else None
                      for t in (x, *params)]  # (class labels take no gradient)
        return torch.empty(out[0], dtype=out[1], device=_META)  # (new_empty: in Python)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (None, *(None if s is None else torch.empty(s[0], dtype=s[1], device=_META)
                        for s in ctx.shapes))


_SAME_SHAPE = (nn.ReLU, nn.Dropout, nn.Identity)


def _known_shape(module: nn.Module, x: torch.Tensor) -> tuple | None:
    """``module``'s (output shape, dtype) for ``x``, where it is known without running
    it (None elsewhere). A batch norm or a linear layer on meta runs PyTorch's Python
    decomposition, whose first call imports its compiler (``torch._dynamo``, 2.2 s
    here), which nothing else of a timing-only run needs."""
    if not x.is_floating_point():
        return None
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        fits = x.dim() >= 2 and x.shape[1] == module.num_features
        return (x.shape, x.dtype) if fits else None
    if isinstance(module, nn.Linear):
        fits = x.dim() >= 1 and x.shape[-1] == module.in_features
        return (torch.Size((*x.shape[:-1], module.out_features)), x.dtype) if fits else None
    return (x.shape, x.dtype) if isinstance(module, _SAME_SHAPE) else None


def _subclass(cls: type, name: str, make: Callable[[type], Callable]) -> type:
    """``cls`` with its method ``name`` replaced by ``make(cls)``, made once per class; a
    class made here comes back as it is."""
    if cls in _WRAPPED:
        return cls
    sub = _CLASSES.get(cls)
    if sub is None:
        sub = _CLASSES[cls] = type(cls.__name__, (cls,), {name: make(cls),
                                                          "__module__": cls.__module__})
        _WRAPPED.add(sub)
    return sub


def _shape_class(cls: type) -> type:
    """``cls`` whose forward, on a meta tensor, answers from the shape memo."""
    return _subclass(cls, "forward", _shape_forward)


def _shape_forward(cls: type) -> Callable:
    def forward(self, x, *args, **kwargs):
        if args or kwargs or not isinstance(x, torch.Tensor) or not x.is_meta:
            return cls.forward(self, x, *args, **kwargs)
        settings = self.__dict__.get("_shape_settings")  # its repr: kernel, stride, ...
        if settings is None:
            settings = self.__dict__["_shape_settings"] = repr(self)
        key = (cls, settings, x.shape, x.dtype, self.training)
        out = _OUT_SHAPES.get(key)
        if out is None:
            out = _known_shape(self, x)
            if out is None:
                with torch.no_grad():
                    y = cls.forward(self, x.detach())
                # a layer answering with anything but one tensor keeps PyTorch's own path
                out = (y.shape, y.dtype) if isinstance(y, torch.Tensor) else ()
            _OUT_SHAPES[key] = out
        if not out:
            return cls.forward(self, x)
        params = self.__dict__.get("_shape_params")  # (a copy maps them to its own)
        if params is None:
            params = self.__dict__["_shape_params"] = tuple(self.parameters())
        return _Shapes.apply(out, x, *params)

    return forward


def shaped(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``fn`` (a loss: tensors in, one number out, unless called with
    ``reduction="none"``) that, called on meta tensors, answers from the shape memo as
    the leaf modules do: a number of its first tensor's dtype, without running ``fn``
    (whose meta decomposition would import PyTorch's compiler); on other tensors it is
    ``fn``."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if not tensors or not tensors[0].is_meta:
            return fn(*args, **kwargs)
        key = (fn, *((a.shape, a.dtype) if isinstance(a, torch.Tensor) else a for a in args),
               *sorted(kwargs.items()))
        out = _OUT_SHAPES.get(key)
        if out is None and kwargs.get("reduction") != "none":
            out = _OUT_SHAPES[key] = (torch.Size([]), tensors[0].dtype)
        elif out is None:
            with torch.no_grad():
                y = fn(*(a.detach() if isinstance(a, torch.Tensor) else a for a in args),
                       **kwargs)
            out = _OUT_SHAPES[key] = (y.shape, y.dtype)
        return _Shapes.apply(out, *tensors)

    return call


cross_entropy = shaped(F.cross_entropy)


class ShapesOnlySGD:
    """SGD for parameters on meta: there are no values to update, and PyTorch would
    still work out each update's shapes in Python, op by op (a fifth of a timing-only
    split round). Gradients are cleared as ever. Not a ``torch.optim.Optimizer``: the
    first one a process makes imports PyTorch's compiler (``torch._dynamo``, 2.2 s
    here), which a timing-only run, or the main process of a run on workers, need not
    pay for."""

    def __init__(self, params, **hyper) -> None:
        self.param_groups = [{"params": list(params), **hyper}]
        self.state: dict = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def step(self, closure=None) -> None:
        return None


def shapes_only(model: nn.Module) -> nn.Module:
    """Make every leaf module of ``model`` (a model on ``meta``) compute shapes only, in
    place; copies of it (``copy.deepcopy``) keep this."""
    for module in model.modules():
        if next(module.children(), None) is None:
            module.__class__ = _shape_class(type(module))
    if hasattr(model, "part"):
        model.__class__ = _whole_parts_class(type(model))
    return model


def _whole_parts_class(cls: type) -> type:
    """``cls`` (a model of units) whose ``part`` is one shape-only node: a server step
    through a part of a dozen layers costs one autograd node forward and back, not one
    per layer."""
    def whole_part(cls: type) -> Callable:
        def part(self, start: int, end: int | None = None) -> nn.Module:
            units = cls.part(self, start, end)
            units.__class__ = _shape_class(type(units))
            return units

        return part

    return _subclass(cls, "part", whole_part)


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` moved to ``device``; on ``meta``, computing shapes only."""
    model = model.to(device)
    return shapes_only(model) if device.type == "meta" else model


__all__ = ["ShapesOnlySGD", "cross_entropy", "place", "shaped", "shapes_only"]
