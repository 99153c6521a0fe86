"""Where the real computation runs: ``training.device`` resolved on this machine.

Simulated clocks come from profiles and links, and byte counts from tensor shapes and
dtypes, so neither depends on the device. What can differ is the learning itself: GPU
kernels sum in other orders than CPU ones, so accuracy curves agree to float tolerance,
not bit for bit. On one CPU, a run is bit-identical for the same seed and
``training.threads``. On CUDA, runs ask torch for deterministic algorithms
(``torch.use_deterministic_algorithms``, cuDNN's deterministic mode, and the cuBLAS
workspace setting its documentation requires), which makes a repeated run on the same GPU
and driver identical where torch offers a deterministic kernel (it warns where it does
not). ``auto`` never picks ``mps``: Apple's backend has no float64, which the running
FedAvg mean uses (it accumulates on the CPU there), and no determinism switch.

Everything random (data order, augmentation, initial weights, stochastic rounding) is
drawn on the CPU from generators keyed by (seed, stream, round, client), then moved: the
same draws on every device.
"""

from __future__ import annotations

import os

import torch

from ecofed_sim.errors import ScenarioError


def resolve_device(name: str, where: str, field: str = "training.device") -> torch.device:
    """The torch device ``name`` asks for here; a one-line error naming ``where`` and
    ``field`` when it is absent."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ScenarioError(f"{where}: {field}: cuda, but torch sees no CUDA device "
                            "here (torch.cuda.is_available() is False); use auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ScenarioError(f"{where}: {field}: mps, but torch sees no Apple GPU "
                            "here (torch.backends.mps.is_available() is False); use auto or "
                            "cpu")
    if name == "cuda":
        deterministic_cuda()
    return torch.device(name)


def deterministic_cuda() -> None:
    """Deterministic CUDA kernels where torch has them (see the module docstring)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of a state dict in CPU memory: what travels between processes."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
