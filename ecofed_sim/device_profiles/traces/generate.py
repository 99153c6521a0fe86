"""Generate the shipped bandwidth traces (time_s, Mbit/s; 1 s steps, 300 s, looped by
default). Each is a seeded random walk in log space, pulled back toward its mean
(an AR(1) process), clipped to a range. The means come from these published figures:

| file | mean Mbit/s | step sigma (log) | pull | clip | source of the mean |
|---|---|---|---|---|---|
| 3g_like.csv | 1.37 | 0.25 | 0.2 | 0.2-4 | Norway HSDPA traces, median of per-trace means |
| 4g_uplink_like.csv | 12.6 | 0.20 | 0.2 | 5-25 | Ookla mobile 2021 average uplink |
| wifi_like.csv | 26 | 0.15 | 0.3 | 5-60 | FLASH WiFi uplink median |

Also ``availability_onoff.csv``: on/off intervals (client, online_s, offline_s) for 20
trace clients over 3,600 s, looped. Sessions online and gaps offline are exponential,
with means of 600 s and 200 s (75% online expected; the shipped file: 69%), seed 4: phones
that come and go, as in the availability traces FedScale replays. An estimate, not a
measurement.

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


def onoff(clients: int = 20, horizon_s: float = 3600.0, on_mean_s: float = 600.0,
          off_mean_s: float = 200.0, seed: int = 4) -> list[tuple[int, float, float]]:
    """Alternating exponential online sessions and offline gaps per client."""
    rng = np.random.default_rng(seed)
    rows = []
    for client in range(clients):
        t = 0.0 if rng.random() < on_mean_s / (on_mean_s + off_mean_s) else float(
            rng.exponential(off_mean_s))
        while t < horizon_s:
            end = min(horizon_s, t + float(rng.exponential(on_mean_s)))
            if end - t >= 1.0:
                rows.append((client, round(t, 1), round(end, 1)))
            t = end + float(rng.exponential(off_mean_s))
    return rows


if __name__ == "__main__":
    here = Path(__file__).parent
    for name, params in TRACES.items():
        rates = generate(*params)
        lines = ["time_s,mbps"] + [f"{t},{r:.3f}" for t, r in enumerate(rates)]
        (here / name).write_text("\n".join(lines) + "\n")
        print(f"{name}: mean {np.mean(rates):.2f} Mbit/s, min {min(rates):.2f}, "
              f"max {max(rates):.2f}")
    rows = onoff()
    lines = ["client,online_s,offline_s"] + [f"{c},{a},{b}" for c, a, b in rows]
    (here / "availability_onoff.csv").write_text("\n".join(lines) + "\n")
    online = sum(b - a for _, a, b in rows) / (20 * 3600.0)
    print(f"availability_onoff.csv: {len(rows)} intervals, online {online:.0%} of the time")
