"""``ecofed-sim profile``: measure per-layer forward and backward latency of a zoo model on
the machine it runs on, and write (or update) a device profile the simulator uses as is.

Run it on a Raspberry Pi or a Jetson; the YAML goes to the user profile folder (see
``profiles.user_profiles_dir``; copy it to the same folder on the simulating machine, or
into a scenario's ``profiles_dir``), and simulate that device. Each unit is timed on its own input
(the output of the units before it), in training mode: forward with autograd recording,
backward as the gradient with respect to the unit's input and parameters, which is what
a split or full backward pass computes. Warm-up first, then the median of ``repeats``.
"""

from __future__ import annotations

import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch
import yaml

from ecofed_sim.models import LAYER_KINDS, build_model, layer_stats
from ecofed_sim.strict import read_yaml


def _median_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(model_name: str, in_shape: tuple[int, int, int], classes: int, batch: int,
            warmup: int, repeats: int) -> dict[str, dict[str, float]]:
    """{unit: {forward_ms, backward_ms}} at one batch size."""
    torch.manual_seed(0)
    model = build_model(model_name, in_shape, classes).train()
    x = torch.randn(batch, *in_shape)
    out: dict[str, dict[str, float]] = {}
    for i, (name, unit) in enumerate(zip(model.unit_names, model.units, strict=True)):
        inp = x.detach().requires_grad_(i > 0)  # no gradient for the input images

        def forward(unit=unit, inp=inp):
            return unit(inp)

        y = forward()
        grad = torch.randn_like(y)

        def backward(unit=unit, inp=inp, grad=grad):
            unit.zero_grad(set_to_none=True)
            inp.grad = None
            unit(inp).backward(grad)

        fwd_ms = _median_ms(forward, warmup, repeats)
        both_ms = _median_ms(backward, warmup, repeats)  # forward + backward
        out[name] = {"forward_ms": round(fwd_ms, 4),
                     "backward_ms": round(max(both_ms - fwd_ms, 0.0), 4)}
        x = y.detach()
    return out


def effective_rates(model_name: str, in_shape, classes: int, batch: int,
                    table: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per-kind forward FLOP/s for the FLOPs fallback, from units dominated by that kind."""
    stats = layer_stats(build_model(model_name, in_shape, classes), in_shape)
    flops = dict.fromkeys(LAYER_KINDS, 0.0)
    seconds = dict.fromkeys(LAYER_KINDS, 0.0)
    for s in stats:
        if s.forward_flops <= 0:
            continue
        kind = max(s.flops_by_kind, key=s.flops_by_kind.get)
        flops[kind] += s.forward_flops * batch
        seconds[kind] += table[s.name]["forward_ms"] / 1e3
    total = sum(flops.values()) / max(sum(seconds.values()), 1e-9)
    return {k: float(f"{(flops[k] / seconds[k] if seconds[k] > 0 else total):.4g}")
            for k in LAYER_KINDS}


def profile(model_name: str, in_shape: tuple[int, int, int], classes: int,
            batch_sizes: list[int], threads: int, warmup: int, repeats: int, name: str,
            out: Path, kind: str = "device", log=print) -> Path:
    """Measure and write/update ``out``; existing tables for other (model, batch) stay."""
    torch.set_num_threads(threads)
    doc = read_yaml(out) if out.exists() else None
    measured = []
    for batch in batch_sizes:
        log(f"profiling {model_name} {list(in_shape)} batch {batch} "
            f"({threads} threads, {repeats} repeats)")
        measured.append((batch, measure(model_name, in_shape, classes, batch, warmup,
                                        repeats)))
    source = (f"measured by ecofed-sim profile on {platform.node() or 'this machine'} "
              f"({platform.machine()}, {threads} threads, torch {torch.__version__}), "
              f"{date.today().isoformat()}")
    tables = [{"model": model_name, "batch_size": b, "layers": t, "source": source}
              for b, t in measured]
    if doc is None:
        batch, table = measured[-1]
        doc = {"name": name, "kind": kind,
               "description": f"{platform.processor() or platform.machine()}, measured "
                              f"with ecofed-sim profile",
               "compute": {"flops_per_s": effective_rates(model_name, in_shape, classes,
                                                          batch, table),
                           "backward_factor": 2.0, "layer_overhead_ms": 0.0,
                           "source": f"fitted to the {model_name} table below; {source}"},
               "latency_tables": [], "sources": [source]}
    keep = [t for t in doc.get("latency_tables", [])
            if (t["model"], t["batch_size"]) not in {(model_name, b) for b in batch_sizes}]
    doc["latency_tables"] = keep + tables
    from ecofed_sim.profiles import DeviceProfile

    DeviceProfile.model_validate(doc)  # never write a profile the simulator cannot read
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.replace(out)
    return out
