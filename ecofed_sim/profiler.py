"""``ecofed-sim profile``: measure per-layer forward and backward latency of a zoo model on
the machine it runs on, and write (or update) a device profile the simulator uses as is.

Run it on a Raspberry Pi or a Jetson; the YAML goes to the user profile folder (see
``profiles.user_profiles_dir``; copy it to the same folder on the simulating machine, or
into a scenario's ``profiles_dir``), and simulate that device. Each unit is timed on its own input
(the output of the units before it), in training mode: forward with autograd recording,
backward as the gradient with respect to the unit's input and parameters, which is what
a split or full backward pass computes. The backward pass is timed on its own (the forward
that builds its graph runs untimed before each repeat), never as a difference of two
noisy medians. Warm-up first, then the median of ``repeats`` and their interquartile
range, each repeat read on the clock of ``torch.utils.benchmark`` (which synchronises the
GPU before each reading). Its ``Timer`` itself cannot time a backward pass: it repeats
the statement after one set-up, and a backward pass frees the graph it runs on, so each
repeat here builds its own graph, untimed. ``--device`` measures on
a GPU (``cuda``, ``mps``) when the device trains there, as a Jetson does. When a unit's
spread exceeds ``max_spread`` of its median, the machine was too busy to trust the
numbers: nothing is written (``NoisyMeasurement``).
"""

from __future__ import annotations

import platform
import statistics
from datetime import date
from pathlib import Path

import torch
import yaml
from torch.utils.benchmark.utils.timer import timer as synced_clock

from ecofed_sim.models import LAYER_KINDS, build_model, layer_stats
from ecofed_sim.strict import read_yaml

NOISE_FLOOR_MS = 0.05  # below this, timer resolution and call overhead dominate the spread


class NoisyMeasurement(RuntimeError):
    """A unit's repeats spread too widely to trust; the message says which and how much."""


def _timed_ms(fn, prepare, warmup: int, repeats: int) -> tuple[float, float]:
    """(median, interquartile range) in ms of ``fn(prepare())``; only ``fn`` is timed,
    between two readings of a clock that waits for the GPU's queued work."""
    for _ in range(warmup):
        fn(prepare())
    times = []
    for _ in range(repeats):
        arg = prepare()
        start = synced_clock()
        fn(arg)
        times.append((synced_clock() - start) * 1e3)
    if len(times) < 4:
        return statistics.median(times), 0.0
    q1, _, q3 = statistics.quantiles(times, n=4)
    return statistics.median(times), q3 - q1


def measure(model_name: str, in_shape: tuple[int, int, int], classes: int, batch: int,
            warmup: int, repeats: int, max_spread: float = 0.5,
            device: torch.device | str = "cpu") -> dict[str, dict[str, float]]:
    """{unit: {forward_ms, backward_ms, forward_iqr_ms, backward_iqr_ms}} at one batch
    size on ``device``; ``NoisyMeasurement`` when a unit's spread is over ``max_spread``
    of its median."""
    torch.manual_seed(0)
    model = build_model(model_name, in_shape, classes).train().to(device)
    x = torch.randn(batch, *in_shape).to(device)
    out: dict[str, dict[str, float]] = {}
    for i, (name, unit) in enumerate(zip(model.unit_names, model.units, strict=True)):
        inp = x.detach().requires_grad_(i > 0)  # no gradient for the input images
        y = unit(inp)
        grad = torch.randn_like(y)

        def graph(unit=unit, inp=inp):
            unit.zero_grad(set_to_none=True)
            inp.grad = None
            return unit(inp)

        def forward(_nothing, unit=unit, inp=inp):
            return unit(inp)

        def backward(out_, grad=grad):
            out_.backward(grad)

        fwd = _timed_ms(forward, lambda: None, warmup, repeats)
        bwd = _timed_ms(backward, graph, warmup, repeats)
        for what, (median, iqr) in (("forward", fwd), ("backward", bwd)):
            if median >= NOISE_FLOOR_MS and iqr > max_spread * median:
                raise NoisyMeasurement(
                    f"{name} {what} at batch {batch}: repeats spread {iqr:.3g} ms around a "
                    f"median of {median:.3g} ms (over {max_spread:.0%}): the machine is busy; "
                    "stop other work, or raise --repeats or --max-spread; nothing written")
        out[name] = {"forward_ms": round(fwd[0], 4), "backward_ms": round(bwd[0], 4),
                     "forward_iqr_ms": round(fwd[1], 4), "backward_iqr_ms": round(bwd[1], 4)}
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
            out: Path, kind: str = "device", log=print, max_spread: float = 0.5,
            device: torch.device | str = "cpu") -> Path:
    """Measure on ``device`` and write/update ``out``; existing tables for other (model,
    batch) stay."""
    torch.set_num_threads(threads)
    device = torch.device(device)
    doc = read_yaml(out) if out.exists() else None
    measured = []
    for batch in batch_sizes:
        log(f"profiling {model_name} {list(in_shape)} batch {batch} on {device.type} "
            f"({threads} threads, {repeats} repeats)")
        table = measure(model_name, in_shape, classes, batch, warmup, repeats, max_spread,
                        device)
        for unit, t in table.items():
            log(f"  {unit:<12} forward {t['forward_ms']:9.4f} ms (IQR {t['forward_iqr_ms']:.4f})"
                f"  backward {t['backward_ms']:9.4f} ms (IQR {t['backward_iqr_ms']:.4f})")
        measured.append((batch, table))
    where = (f"{platform.machine()}, {threads} threads" if device.type == "cpu"
             else f"{platform.machine()}, {device.type}")
    source = (f"measured by ecofed-sim profile on {platform.node() or 'this machine'} "
              f"({where}, torch {torch.__version__}), "
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
