"""Every transfer and every compute, transfer and idle span of a run, and the per-round
totals derived from them. Tables are built only from these records.

While their round is open (the round's totals, idle gaps and energy read them), rows are
kept column-wise: one Python list per column, in ``COLUMNS`` order. When the round closes
they are sealed into one chunk per table (or written to disk, ``spill``). A row as a dict
costs some 500 bytes; in lists it costs a pointer per cell, a cohort's rows are a few list
extensions, and sealing converts each column once, in C, with its type known (inferring
types row by row took most of a large round's close). In a chunk a cell takes 8 bytes. A
100-round run of 10,000 clients per round writes millions of timeline rows: chunks keep
them in a fraction of the memory, and the tables are the chunks concatenated in order."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from ecofed_sim.energy import device_energy
from ecofed_sim.spill import TableSpill

COLUMNS = {
    "transfers": ["round", "message_id", "t_start_s", "t_end_s", "client", "device",
                  "direction", "kind", "payload_bytes"],
    "timeline": ["round", "device", "client", "state", "what", "t_start_s", "t_end_s"],
    "energy": ["round", "device", "compute_j", "transmit_j", "receive_j", "idle_j", "energy_j"],
    "participation": ["round", "client", "device", "outcome", "t_start_s", "t_end_s"],
    "updates": ["round", "job", "client", "device", "pulled_version", "staleness",
                "staleness_factor", "weight", "t_pull_s", "t_arrive_s"],
}


# columns of seconds, joules and weights: floating point in every chunk (a chunk whose
# values are all whole, such as a first round's starts at 0, would otherwise be integers)
FLOATS = {name: {c: "float64" for c in columns if c.endswith(("_s", "_j"))
                 or c in ("staleness_factor", "weight")}
          for name, columns in COLUMNS.items()}

# positions of columns (rows are kept in ``COLUMNS`` order)
_T_ROUND, _T_DEVICE, _T_CLIENT, _T_STATE, _T_WHAT, _T_START, _T_END = range(7)
_X_DIRECTION, _X_KIND, _X_BYTES = 6, 7, 8

_STR = pd.Series(["x"]).dtype  # the type pandas gives text: with pyarrow strings, built fast
_ARROW_STR = isinstance(_STR, pd.StringDtype) and _STR.storage == "pyarrow"


def _column(values: list, is_float: bool):
    """One column's values as the array pandas would infer for them (float64 for seconds
    and joules), built directly where the type is plain: int64 or text."""
    if is_float:
        return np.array(values, dtype=np.float64)
    first = values[0]
    if type(first) is int:
        ints = np.array(values)
        if ints.dtype == np.int64:
            return ints
    elif type(first) is str and _ARROW_STR:
        try:
            text = pa.array(values, type=pa.large_string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            text = None
        if text is not None and text.null_count == 0:
            return pd.arrays.ArrowStringArray(text, dtype=_STR)
    return pd.Series(values)  # anything else: pandas' own inference


def _frame(name: str, cols: list[list]) -> pd.DataFrame:
    """A table's chunk from its column lists (rows > 0)."""
    floats = FLOATS[name]
    return pd.DataFrame({c: _column(values, c in floats)
                         for c, values in zip(COLUMNS[name], cols, strict=True)}, copy=False)


@functools.cache
def _empty_table(name: str) -> pd.DataFrame:
    """A table with no rows, its columns typed as a filled one's seconds and joules (the
    rest as pandas makes them). Built once: ``astype`` on a frame takes milliseconds, and
    a sweep's runs end together."""
    return pd.DataFrame([], columns=COLUMNS[name]).astype(FLOATS[name])


def _empty(name: str) -> list[list]:
    return [[] for _ in COLUMNS[name]]


def _append(cols: list[list], row: tuple) -> None:
    for col, value in zip(cols, row, strict=True):
        col.append(value)


@dataclass
class Ledger:
    _open: dict = field(default_factory=lambda: {name: _empty(name) for name in COLUMNS})
    rounds: list[dict] = field(default_factory=list)
    power: dict = field(default_factory=dict)  # device name -> profiles.PowerW
    _cum_energy_j: float = 0.0
    _message_id: int = 0
    _cum_bytes: int = 0
    _chunks: dict = field(default_factory=dict)  # table -> sealed rounds' DataFrames
    spill: TableSpill | None = None  # else the sealed chunks go to files (``spill``)
    files: dict = field(default_factory=dict)  # table -> the file ``spill`` wrote

    def open_rows(self, name: str) -> list[dict]:
        """The open round's rows of one table, as dicts (for inspection and tests)."""
        return [dict(zip(COLUMNS[name], row, strict=True))
                for row in zip(*self._open[name], strict=True)]

    transfers = property(lambda self: self.open_rows("transfers"))
    timeline = property(lambda self: self.open_rows("timeline"))
    participation = property(lambda self: self.open_rows("participation"))

    def transfer(self, round_index: int, device: str, client: int, direction: str,
                 parts: dict[str, int], t_start_s: float, t_end_s: float) -> None:
        """One message: one row per payload kind, sharing a ``message_id``."""
        self.transfers_of(round_index, [(device, client)], direction, parts, t_start_s,
                          t_end_s)

    def transfers_of(self, round_index: int, who: list[tuple[str, int]], direction: str,
                     parts: dict[str, int], t_start_s: float, t_end_s: float) -> None:
        """The same message from each (device, client) of a cohort, in that order: each
        its own ``message_id``."""
        cols, mid = self._open["transfers"], self._message_id
        state = "upload" if direction == "up" else "download"
        if len(who) == 1 and len(parts) == 1:  # the common case, row by row: less to build
            (device, client), ((kind, size),) = who[0], parts.items()
            _append(cols, (round_index, mid, t_start_s, t_end_s, client, device, direction,
                           kind, int(size)))
            self._message_id = mid + 1
            self.spans_of(round_index, who, state, kind, t_start_s, t_end_s)
            return
        n = len(who) * len(parts)  # rows: each member's parts, member by member
        kinds, sizes = list(parts), [int(b) for b in parts.values()]
        for col, values in zip(cols, (
                [round_index] * n, [mid + i for i in range(len(who)) for _ in kinds],
                [t_start_s] * n, [t_end_s] * n, [c for _, c in who for _ in kinds],
                [d for d, _ in who for _ in kinds], [direction] * n, kinds * len(who),
                sizes * len(who)), strict=True):
            col.extend(values)
        self._message_id = mid + len(who)
        self.spans_of(round_index, who, state, "+".join(parts), t_start_s, t_end_s)

    def span(self, round_index: int, device: str, client: int, state: str, what: str,
             t_start_s: float, t_end_s: float) -> None:
        _append(self._open["timeline"],
                (round_index, device, client, state, what, t_start_s, t_end_s))

    def spans_of(self, round_index: int, who: list[tuple[str, int]], state: str, what: str,
                 t_start_s: float, t_end_s: float) -> None:
        """The same span on each (device, client) of a cohort."""
        n = len(who)
        if n == 1:
            device, client = who[0]
            _append(self._open["timeline"],
                    (round_index, device, client, state, what, t_start_s, t_end_s))
            return
        for col, values in zip(self._open["timeline"], (
                [round_index] * n, [d for d, _ in who], [c for _, c in who], [state] * n,
                [what] * n, [t_start_s] * n, [t_end_s] * n), strict=True):
            col.extend(values)

    def participant(self, round_index: int, client: int, device: str, outcome: str,
                    t_start_s: float, t_end_s: float) -> None:
        """How one selected client's round ended: completed, dropped or straggler."""
        _append(self._open["participation"],
                (round_index, client, device, outcome, t_start_s, t_end_s))

    def update(self, round_index: int, job: int, client: int, device: str,
               pulled_version: int, staleness_factor: float, weight: float, t_pull_s: float,
               t_arrive_s: float) -> None:
        """One asynchronous update, applied in server update ``round_index``; ``job``
        numbers client starts (it keys the client's data order)."""
        _append(self._open["updates"], (
            round_index, job, client, device, pulled_version, round_index - pulled_version,
            staleness_factor, weight, t_pull_s, t_arrive_s))

    def busy_s(self, device: str, state: str) -> float:
        """Seconds of the open round's ``state`` spans on ``device``."""
        cols = self._open["timeline"]
        return sum(t1 - t0 for d, s, t0, t1 in zip(cols[_T_DEVICE], cols[_T_STATE],
                                                    cols[_T_START], cols[_T_END], strict=True)
                   if d == device and s == state)

    def idle_spans(self, round_index: int, devices: list[str], t0: float, t1: float) -> None:
        """Fill each device's gaps in [t0, t1] with idle spans (waiting on others)."""
        busy: dict[str, list[tuple[float, float]]] = {d: [] for d in devices}
        cols = self._open["timeline"]
        for device, start, end in zip(cols[_T_DEVICE], cols[_T_START], cols[_T_END],
                                      strict=True):
            spans = busy.get(device)
            if spans is not None:
                spans.append((start, end))
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
        energy_j = self._round_energy(round_index)
        by_kind: dict[tuple[str, str], int] = {}
        cols = self._open["transfers"]  # the open round's (sealed below)
        for direction, kind, n in zip(cols[_X_DIRECTION], cols[_X_KIND], cols[_X_BYTES],
                                      strict=True):
            key = (direction, kind)
            by_kind[key] = by_kind.get(key, 0) + n
        up = sum(n for (direction, _), n in by_kind.items() if direction == "up")
        down = sum(n for (direction, _), n in by_kind.items() if direction == "down")
        self._cum_bytes += up + down
        row = {"round": round_index, "sim_time_s": t1, "round_time_s": t1 - t0,
               "bytes_up": up, "bytes_down": down, "cum_bytes": self._cum_bytes,
               **metrics, **counts, **energy_j}
        for (direction, kind), n in by_kind.items():
            row[f"{direction}_{kind}_bytes"] = n
        self.rounds.append(row)
        self._seal()
        return row

    def _seal(self) -> None:
        """Move the closed round's rows into one column-wise chunk per table."""
        for name in COLUMNS:
            cols = self._open[name]
            if cols[0]:
                chunk = _frame(name, cols)
                if self.spill is not None:
                    self.spill.write(name, chunk)
                else:
                    self._chunks.setdefault(name, []).append(chunk)
                self._open[name] = _empty(name)

    def _round_energy(self, round_index: int) -> dict[str, float]:
        """Per-device energy rows of this round; the round's total and the running sum."""
        if not self.power:
            return {}
        spans: dict[str, list[tuple]] = {}
        cols, power = self._open["timeline"], self.power
        for device, state, t0, t1 in zip(cols[_T_DEVICE], cols[_T_STATE], cols[_T_START],
                                         cols[_T_END], strict=True):
            if device in power:
                spans.setdefault(device, []).append((state, t0, t1))
        total, rows = 0.0, self._open["energy"]
        known: dict[tuple, dict[str, float]] = {}  # a cohort's members: the same spans
        for device, device_spans in spans.items():
            key = (id(power[device]), tuple(device_spans))
            joules = known.get(key)
            if joules is None:
                joules = known[key] = device_energy(device_spans, power[device])
            _append(rows, (round_index, device, *joules.values()))
            total += joules["energy_j"]
        self._cum_energy_j += total
        return {"energy_j": total, "cum_energy_j": self._cum_energy_j}

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every table. With a ``spill``, the tables it wrote are files (``files``) and
        come back empty here."""
        rounds = pd.DataFrame(self.rounds)
        byte_cols = [c for c in rounds.columns if c.endswith("_bytes") and
                     c.split("_")[0] in ("up", "down")]
        rounds[byte_cols] = rounds[byte_cols].fillna(0).astype("int64")
        if self.spill is not None:
            self._seal()  # rows still open (an asynchronous run's last updates)
            self.files = self.spill.close()
        return {"rounds": rounds, **{name: self._table(name) for name in COLUMNS}}

    def _table(self, name: str) -> pd.DataFrame:
        """The sealed chunks and any rows still open, in order, as one table."""
        cols = self._open[name]
        chunks = [*self._chunks.get(name, [])]
        if cols[0]:
            chunks.append(_frame(name, cols))
        if not chunks:
            return _empty_table(name).copy()
        return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
