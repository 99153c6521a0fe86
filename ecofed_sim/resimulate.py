"""Re-simulate a recorded run's clocks under other timing parameters (no training)."""

from __future__ import annotations

import time

from ecofed_sim.checks import check
from ecofed_sim.engine import World
from ecofed_sim.errors import ScenarioError
from ecofed_sim.round_context import RoundContext
from ecofed_sim.scenario import timing_shapes_learning
from ecofed_sim.trace import RoundTrace, Trace, interpret, learning_key


class Replayer(World):
    def __init__(self, prep, trace: Trace) -> None:
        super().__init__(prep)
        self.trace = trace

    def run_round(self, round_index: int) -> dict:
        recorded = self.trace.rounds[round_index]
        ctx = RoundContext(self, round_index)
        logs = recorded.logs

        def client_round(ctx, client, device):
            return interpret(ctx, logs, ("client", client), device)

        server = interpret(ctx, logs, ("server",), None) if ("server",) in logs else None
        t0 = self.env.now
        _, counts = self.play_round(ctx, recorded.selected, len(recorded.selected),
                                    client_round, server, hosted=recorded.hosted.get)
        return self.ledger.close_round(round_index, t0, self.env.now, counts,
                                       dict(recorded.metrics))


class Resimulation:
    """One run re-played round by round from a trace recorded on a scenario that learns
    the same, as the trace's rounds arrive (a sweep streams them while the learning run
    goes on: ``ecofed_sim.sweep_stream``)."""

    def __init__(self, scenario, key: str, source: str | None = None, base_dir=None) -> None:
        if timing_shapes_learning(scenario):
            raise ScenarioError(f"{source or scenario.name}: with a deadline, "
                                "over-selection, dropout, split: auto or asynchronous "
                                "updates, timing decides what is learned (and a "
                                "topology's cloud rounds are not re-played); run it in full")
        if learning_key(scenario) != key:
            raise ScenarioError(f"{source or scenario.name}: differs from the recorded run "
                                "in a field that can change what is learned; run it in full")
        self.scenario, self.started = scenario, time.perf_counter()
        self.replayer = Replayer(check(scenario, source or scenario.name, base_dir),
                                 Trace(key))
        self.rounds_played = 0

    def play(self, recorded: RoundTrace) -> None:
        """Re-play the next round."""
        self.replayer.trace.rounds.append(recorded)
        self.replayer.run_round(self.rounds_played)
        self.rounds_played += 1

    def results(self):
        from ecofed_sim.run import Results, manifest

        frames = self.replayer.ledger.frames()
        return Results.from_frames(self.scenario, frames,
                                   manifest(self.scenario, self.started, resimulated=True))


def resimulate(scenario, trace: Trace, source: str | None = None, base_dir=None):
    """Results of ``scenario`` from a trace recorded on a scenario that learns the same."""
    sim = Resimulation(scenario, trace.learning_key, source, base_dir)
    for r in range(scenario.rounds):
        sim.play(trace.rounds[r])
    return sim.results()
