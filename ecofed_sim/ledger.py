"""Every transfer and every compute, transfer and idle span of a run, and the per-round
totals derived from them. Tables are built only from these records.

Rows are plain dicts while their round is open (the round's totals, idle gaps and energy
read them); when it closes they are sealed into one column-wise chunk per table. A row
as a dict costs some 500 bytes; in a chunk, 8 bytes per cell. A 100-round run of 10,000
clients per round writes millions of timeline rows: chunks keep them in a fraction of
the memory, and the tables are the chunks concatenated in order."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ecofed_sim.energy import device_energy

COLUMNS = {
    "transfers": ["round", "message_id", "t_start_s", "t_end_s", "client", "device",
                  "direction", "kind", "payload_bytes"],
    "timeline": ["round", "device", "client", "state", "what", "t_start_s", "t_end_s"],
    "energy": ["round", "device", "compute_j", "transmit_j", "receive_j", "idle_j", "energy_j"],
    "participation": ["round", "client", "device", "outcome", "t_start_s", "t_end_s"],
    "updates": ["round", "job", "client", "device", "pulled_version", "staleness",
                "staleness_factor", "weight", "t_pull_s", "t_arrive_s"],
}


@dataclass
class Ledger:
    transfers: list[dict] = field(default_factory=list)  # the open round's rows (as below)
    timeline: list[dict] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)
    energy: list[dict] = field(default_factory=list)
    participation: list[dict] = field(default_factory=list)
    updates: list[dict] = field(default_factory=list)  # asynchronous runs' arrivals
    power: dict = field(default_factory=dict)  # device name -> profiles.PowerW
    _cum_energy_j: float = 0.0
    _message_id: int = 0
    _cum_bytes: int = 0
    _chunks: dict = field(default_factory=dict)  # table -> sealed rounds' DataFrames

    def transfer(self, round_index: int, device: str, client: int, direction: str,
                 parts: dict[str, int], t_start_s: float, t_end_s: float) -> None:
        """One message: one row per payload kind, sharing a ``message_id``."""
        for kind, payload_bytes in parts.items():
            self.transfers.append({
                "round": round_index, "message_id": self._message_id, "t_start_s": t_start_s,
                "t_end_s": t_end_s, "client": client, "device": device,
                "direction": direction, "kind": kind, "payload_bytes": int(payload_bytes)})
        self._message_id += 1
        span = "upload" if direction == "up" else "download"
        self.span(round_index, device, client, span, "+".join(parts), t_start_s, t_end_s)

    def span(self, round_index: int, device: str, client: int, state: str, what: str,
             t_start_s: float, t_end_s: float) -> None:
        self.timeline.append({"round": round_index, "device": device, "client": client,
                              "state": state, "what": what, "t_start_s": t_start_s,
                              "t_end_s": t_end_s})

    def participant(self, round_index: int, client: int, device: str, outcome: str,
                    t_start_s: float, t_end_s: float) -> None:
        """How one selected client's round ended: completed, dropped or straggler."""
        self.participation.append({"round": round_index, "client": client, "device": device,
                                   "outcome": outcome, "t_start_s": t_start_s,
                                   "t_end_s": t_end_s})

    def update(self, round_index: int, job: int, client: int, device: str,
               pulled_version: int, staleness_factor: float, weight: float, t_pull_s: float,
               t_arrive_s: float) -> None:
        """One asynchronous update, applied in server update ``round_index``; ``job``
        numbers client starts (it keys the client's data order)."""
        self.updates.append({
            "round": round_index, "job": job, "client": client, "device": device,
            "pulled_version": pulled_version, "staleness": round_index - pulled_version,
            "staleness_factor": staleness_factor, "weight": weight, "t_pull_s": t_pull_s,
            "t_arrive_s": t_arrive_s})

    def busy_s(self, device: str, state: str) -> float:
        """Seconds of the open round's ``state`` spans on ``device``."""
        return sum(r["t_end_s"] - r["t_start_s"] for r in self.timeline
                   if r["device"] == device and r["state"] == state)

    def idle_spans(self, round_index: int, devices: list[str], t0: float, t1: float) -> None:
        """Fill each device's gaps in [t0, t1] with idle spans (waiting on others)."""
        busy: dict[str, list[tuple[float, float]]] = {d: [] for d in devices}
        for row in self.timeline:
            if row["device"] in busy:
                busy[row["device"]].append((row["t_start_s"], row["t_end_s"]))
        for device, spans in busy.items():
            cursor = t0
            for start, end in sorted(spans):
                if start > cursor:
                    self.span(round_index, device, -1, "idle", "wait", cursor, start)
                cursor = max(cursor, end)
            if t1 > cursor:
                self.span(round_index, device, -1, "idle", "wait", cursor, t1)

    def close_round(self, round_index: int, t0: float, t1: float, counts: dict[str, int],
                    metrics: dict[str, float]) -> dict:
        """The round's row; ``counts``: selected, completed, dropped, stragglers."""
        rows = self.transfers  # the open round's (sealed below)
        energy_j = self._round_energy(round_index)
        up = sum(r["payload_bytes"] for r in rows if r["direction"] == "up")
        down = sum(r["payload_bytes"] for r in rows if r["direction"] == "down")
        self._cum_bytes += up + down
        row = {"round": round_index, "sim_time_s": t1, "round_time_s": t1 - t0,
               "bytes_up": up, "bytes_down": down, "cum_bytes": self._cum_bytes,
               **metrics, **counts, **energy_j}
        for r in rows:
            col = f"{r['direction']}_{r['kind']}_bytes"
            row[col] = row.get(col, 0) + r["payload_bytes"]
        self.rounds.append(row)
        self._seal()
        return row

    def _seal(self) -> None:
        """Move the closed round's rows into one column-wise chunk per table."""
        for name, columns in COLUMNS.items():
            rows = getattr(self, name)
            if rows:
                self._chunks.setdefault(name, []).append(pd.DataFrame(rows, columns=columns))
                rows.clear()

    def _round_energy(self, round_index: int) -> dict[str, float]:
        """Per-device energy rows of this round; the round's total and the running sum."""
        if not self.power:
            return {}
        spans: dict[str, list[dict]] = {}
        for row in self.timeline:
            if row["device"] in self.power:
                spans.setdefault(row["device"], []).append(row)
        total = 0.0
        for device, device_spans in spans.items():
            joules = device_energy(device_spans, self.power[device])
            self.energy.append({"round": round_index, "device": device, **joules})
            total += joules["energy_j"]
        self._cum_energy_j += total
        return {"energy_j": total, "cum_energy_j": self._cum_energy_j}

    def frames(self) -> dict[str, pd.DataFrame]:
        rounds = pd.DataFrame(self.rounds)
        byte_cols = [c for c in rounds.columns if c.endswith("_bytes") and
                     c.split("_")[0] in ("up", "down")]
        rounds[byte_cols] = rounds[byte_cols].fillna(0).astype("int64")
        return {"rounds": rounds, **{name: self._table(name) for name in COLUMNS}}

    def _table(self, name: str) -> pd.DataFrame:
        """The sealed chunks and any rows still open, in order, as one table."""
        columns, open_rows = COLUMNS[name], getattr(self, name)
        chunks = [*self._chunks.get(name, [])]
        if open_rows:
            chunks.append(pd.DataFrame(open_rows, columns=columns))
        if not chunks:
            return pd.DataFrame([], columns=columns)
        return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
