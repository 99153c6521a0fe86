"""Files a scenario names (traces, checkpoints, profile folders) are relative to it."""

from __future__ import annotations

from pathlib import Path


def scenario_path(path: str | Path, base_dir: Path | None) -> Path:
    """``path`` as written, or under the scenario file's folder when it is relative."""
    p = Path(path)
    return p if p.is_absolute() or base_dir is None else base_dir / p
