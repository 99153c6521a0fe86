"""The schema reference is generated from the models and kept in sync; every field says
what it is."""

from __future__ import annotations

from pathlib import Path

from ecofed_sim.schema_doc import render

DOC = Path(__file__).resolve().parent.parent / "docs" / "scenario_schema.md"


def test_the_reference_matches_the_code():
    assert DOC.read_text() == render(), ("docs/scenario_schema.md is stale: run "
                                         "python -m ecofed_sim.schema_doc > "
                                         "docs/scenario_schema.md")


def test_every_field_has_a_description():
    rows = [line for line in render().splitlines() if line.startswith("| `")]
    assert len(rows) > 150
    meaning = {r.split(" | ")[0]: r.removesuffix(" |").rsplit(" | ", 1)[-1].strip()
               for r in rows}
    undocumented = [f for f, m in meaning.items() if m in ("", "|", "*(timing only)*")]
    assert not undocumented, undocumented
