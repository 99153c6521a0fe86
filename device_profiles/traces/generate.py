"""Generate the shipped bandwidth traces (time_s, Mbit/s; 1 s steps, 300 s, looped by
default). Each is a seeded random walk in log space, pulled back toward its mean
(an AR(1) process), clipped to a range. The means come from DEVICE_NETWORK_FACTS.md:

| file | mean Mbit/s | step sigma (log) | pull | clip | source of the mean |
|---|---|---|---|---|---|
| 3g_like.csv | 1.37 | 0.25 | 0.2 | 0.2-4 | Norway HSDPA traces, median of per-trace means |
| 4g_uplink_like.csv | 12.6 | 0.20 | 0.2 | 5-25 | Ookla mobile 2021 average uplink |
| wifi_like.csv | 26 | 0.15 | 0.3 | 5-60 | FLASH WiFi uplink median |

    python device_profiles/traces/generate.py
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

TRACES = {
    "3g_like.csv": (1.37, 0.25, 0.2, 0.2, 4.0, 1),
    "4g_uplink_like.csv": (12.6, 0.20, 0.2, 5.0, 25.0, 2),
    "wifi_like.csv": (26.0, 0.15, 0.3, 5.0, 60.0, 3),
}


def generate(mean: float, sigma: float, pull: float, lo: float, hi: float, seed: int,
             seconds: int = 300) -> list[float]:
    rng = np.random.default_rng(seed)
    level, out = 0.0, []
    for _ in range(seconds):
        level = (1 - pull) * level + sigma * rng.standard_normal()
        out.append(float(np.clip(mean * math.exp(level), lo, hi)))
    return out


if __name__ == "__main__":
    here = Path(__file__).parent
    for name, params in TRACES.items():
        rates = generate(*params)
        lines = ["time_s,mbps"] + [f"{t},{r:.3f}" for t, r in enumerate(rates)]
        (here / name).write_text("\n".join(lines) + "\n")
        print(f"{name}: mean {np.mean(rates):.2f} Mbit/s, min {min(rates):.2f}, "
              f"max {max(rates):.2f}")
