"""Shared helpers for tests that run tiny scenarios."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

import ecofed_sim
from ecofed_sim.engine import Engine
from ecofed_sim.prepare import prepare
from ecofed_sim.scenario import scenario_from_dict

ROOT = Path(__file__).resolve().parent.parent


def load_script(relative: str) -> ModuleType:
    """A script of the repository (``benchmarks/...py``, ``analysis/...py``) as a module,
    registered under its name (dataclasses look their module up)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def run_dict(raw: dict, base_dir: Path) -> ecofed_sim.Results:
    return ecofed_sim.run(scenario_from_dict(raw, "tiny.yaml"), source="tiny.yaml",
                          base_dir=base_dir)


def plot_kind_of_run(scenario_path: Path, kind: str, out: Path) -> int:
    """``run`` a scenario file into ``out/r``, then ``plot --kind KIND`` it as a PNG into
    ``out/fig``; the plot command's exit status."""
    from ecofed_sim.cli import main

    assert main(["run", str(scenario_path), "--out", str(out / "r"), "--quiet"]) == 0
    return main(["plot", str(out / "r"), "--kind", kind, "--format", "png",
                 "--out", str(out / "fig")])


def final_state(raw: dict, base_dir) -> dict[str, torch.Tensor]:
    """The global model's weights after every round of a tiny scenario."""
    engine = Engine(prepare(scenario_from_dict(raw, "tiny.yaml"), "tiny.yaml", base_dir))
    for r in range(engine.scenario.rounds):
        engine.run_round(r)
    return {k: v.clone() for k, v in engine.method.eval_model().state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def namespaces_unavailable(*tools: str) -> str | None:
    """Why network namespaces (and ``tools``) cannot be used here, or None."""
    import os
    import shutil
    import subprocess

    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    missing = [t for t in ("ip", *tools) if not shutil.which(t)]
    if missing:
        return f"needs {', '.join(missing)}"
    probe = subprocess.run(["ip", "netns", "add", "efs_probe"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create network namespaces: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "efs_probe"], capture_output=True)
    return None


def cut_transfer(env, net, link, direction: str, payload_bytes: int, at_s: float) -> dict:
    """Send one message and cut it at ``at_s``: the fraction delivered and when the cut
    landed (empty if the message ended first)."""
    import simpy

    seen: dict = {}

    def sender():
        try:
            yield from net.transfer(link, direction, payload_bytes)
        except simpy.Interrupt as cut:
            seen["fraction"], seen["at"] = cut.delivered_fraction, env.now

    proc = env.process(sender())

    def cutter():
        yield env.timeout(at_s)
        proc.interrupt("round closed")

    env.process(cutter())
    env.run()
    return seen


class InProcessPool:
    """``parallel.TrainerPool``'s worker functions, called here: the same code path as
    the spawned workers', and a count of what it was asked to train."""

    def __init__(self, prep) -> None:
        from ecofed_sim import parallel

        parallel._start(prep)
        self.parallel, self.asked, self.scored = parallel, [], []

    def run_jobs(self, start_states, round_index, jobs, weights):
        self.asked.append([(kind, client) for kind, client, *_ in jobs])
        half = len(jobs) // 2  # two slices, as two workers would get them
        for part in (jobs[:half], jobs[half:]):
            yield from self.parallel._learn_slice(start_states, round_index, part)

    def score_test_batches(self, state, batches):
        self.scored.append(len(batches))
        half = len(batches) // 2
        return [score for part in (batches[:half], batches[half:])
                for score in self.parallel._test_slice(state, -1, part)]


def two_messages_at_once(net, direction: str, payload_bytes: int, window_bits: float,
                         device_mbps: float = 100.0) -> dict[str, float]:
    """Devices ``a`` and ``b`` each start a message through ``net`` at time 0, on open
    connections (one way 5 ms, RTT 10 ms) with ``window_bits`` and no idle restart; when
    each message's last bit arrives."""
    from ecofed_sim.network import DeviceLink

    ends = {}

    def send(name):
        link = DeviceLink.from_mbps(name, device_mbps, device_mbps, 5)
        link.rtt_s = 0.01
        link.connection.warm(net.tcp, direction, window_bits)
        yield from net.transfer(link, direction, payload_bytes)
        ends[name] = net.env.now

    net.env.process(send("a"))
    net.env.process(send("b"))
    net.env.run()
    return ends
