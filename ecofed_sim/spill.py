"""A run's long tables written to Parquet as its rounds close, not held until the end.

A timing-only run of 100,000 clients, 10,000 per round, writes some 90,000 timeline,
transfer, participation and energy rows per round; over hundreds of rounds, holding them
all costs gigabytes. With a ``TableSpill`` the ledger hands each closed round's chunk of
each table to one ``pyarrow.parquet.ParquetWriter`` per table (one row group per round),
and keeps nothing. ``ecofed-sim run`` spills into the hidden folder that becomes the
results folder only when the run has finished (``outdir``), so a failed or killed run
still leaves no half-written results.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class TableSpill:
    """One Parquet file per table under ``directory``, appended one chunk at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._written: dict[str, Path] = {}
        self.rows: dict[str, int] = {}

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.parquet"

    def write(self, name: str, chunk: pd.DataFrame) -> None:
        """Append a chunk; every chunk of a table takes the first one's column types (a
        round whose column happens to hold only integers stays in the table's type)."""
        writer = self._writers.get(name)
        schema = None if writer is None else writer.schema
        table = pa.Table.from_pandas(chunk, schema=schema, preserve_index=False)
        if writer is None:
            if name in self._written:
                raise RuntimeError(f"{name}: its file is closed")
            writer = self._writers[name] = pq.ParquetWriter(self.path(name), table.schema)
            self._written[name] = self.path(name)
        writer.write_table(table)
        self.rows[name] = self.rows.get(name, 0) + len(chunk)

    def close(self) -> dict[str, Path]:
        """Finish every file; the tables written (a table that never had a row has no
        file: it is written empty with the others)."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        return dict(self._written)
