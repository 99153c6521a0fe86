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


FIELDS = ("compute", "transmit", "receive", "idle")  # the energy table's order
_SLOT = {state: FIELDS.index(field) for state, field in STATE_POWER.items()}


def device_energy(spans: Iterable[tuple[str, float, float]], power) -> dict[str, float]:
    """Joules per state (and ``energy_j`` in total) of one device's spans, each
    ``(state, t_start_s, t_end_s)``; the keys in ``ledger.COLUMNS["energy"]`` order."""
    watts = [getattr(power, field) for field in FIELDS]
    joules = [0.0] * len(FIELDS)
    for state, t_start_s, t_end_s in spans:
        slot = _SLOT.get(state)
        if slot is None:
            if state != "offline":
                raise KeyError(f"no power figure for state {state!r}")
            continue
        joules[slot] += (t_end_s - t_start_s) * watts[slot]
    out = {f"{field}_j": j for field, j in zip(FIELDS, joules, strict=True)}
    out["energy_j"] = sum(out.values())
    return out
