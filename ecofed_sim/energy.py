"""Device energy from the timeline: each state's duration times the profile's power.

compute -> ``power_w.compute``, upload -> ``transmit``, download -> ``receive``, idle (waiting
for others within the round) and queued (waiting for a server copy) -> ``idle``; offline
(after dropping out) draws nothing from the round's budget. Pure: a function of spans and
power figures.
"""

from __future__ import annotations

STATE_POWER = {"compute": "compute", "upload": "transmit", "download": "receive",
               "idle": "idle", "queued": "idle"}


def device_energy(spans: list[dict], power) -> dict[str, float]:
    """Joules per state (and ``energy_j`` in total) of one device's spans."""
    out = {f"{field}_j": 0.0 for field in STATE_POWER.values()}
    for span in spans:
        if span["state"] == "offline":
            continue
        field = STATE_POWER[span["state"]]
        out[f"{field}_j"] += (span["t_end_s"] - span["t_start_s"]) * getattr(power, field)
    out["energy_j"] = sum(out.values())
    return out
