"""Shared helpers for tests that run tiny scenarios."""

from __future__ import annotations

from pathlib import Path

import ecofed_sim
from ecofed_sim.scenario import scenario_from_dict


def run_dict(raw: dict, base_dir: Path) -> ecofed_sim.Results:
    return ecofed_sim.run(scenario_from_dict(raw, "tiny.yaml"), source="tiny.yaml",
                          base_dir=base_dir)
