"""Device energy from the timeline: each state's duration times the profile's power.

compute -> ``power_w.compute``, upload -> ``transmit``, download -> ``receive``, idle (waiting
for others within the round) and queued (waiting for a server copy) -> ``idle``; offline
(after dropping out) draws nothing from the round's budget. Pure: a function of spans and
power figures.
"""

from __future__ import annotations

from collections.abc import Iterable

STATE_POWER = {"compute": "compute", "upload": "transmit", "download": "receive",
               "idle": "idle", "queued": "idle"}


def device_energy(spans: Iterable[tuple[str, float, float]], power) -> dict[str, float]:
    """Joules per state (and ``energy_j`` in total) of one device's spans, each
    ``(state, t_start_s, t_end_s)``; the keys in ``ledger.COLUMNS["energy"]`` order."""
    out = {f"{field}_j": 0.0 for field in STATE_POWER.values()}
    for state, t_start_s, t_end_s in spans:
        if state == "offline":
            continue
        field = STATE_POWER[state]
        out[f"{field}_j"] += (t_end_s - t_start_s) * getattr(power, field)
    out["energy_j"] = sum(out.values())
    return out
