"""The README's commands work as written: the cheap ones run (``validate``, ``list``,
``layers``, ``plan``, ``sweep --dry-run``), the rest are validated, and every results
folder that ``plot`` or ``compare`` reads is the one an earlier command writes."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from ecofed_sim.cli import main
from ecofed_sim.outdir import safe_component
from ecofed_sim.scenario import load_scenario
from ecofed_sim.sweep_spec import load_sweep

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[list[str]]:
    """Each ``ecofed-sim`` command in the README's code blocks, as argv (comments cut)."""
    commands, in_code, pending = [], False, ""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        text = line.removeprefix("$ ").strip()
        if not in_code or not (pending or text.startswith("ecofed-sim ")):
            continue
        pending += " " + text.rstrip("\\")
        if text.endswith("\\"):
            continue
        argv = shlex.split(pending, comments=True)
        pending = ""
        commands.append(argv[1:])
    return commands


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _sets(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]


def written_folder(argv: list[str]) -> Path | None:
    """The results folder a ``run`` or ``sweep`` command writes."""
    if _option(argv, "--out"):
        return Path(_option(argv, "--out"))
    if argv[0] == "run":
        path = argv[1] if argv[1].endswith(".yaml") else f"scenarios/{argv[1]}.yaml"
        sc = load_scenario(ROOT / path, _sets(argv))
        return Path("results") / safe_component(f"{sc.name}-{sc.method.name}")
    if argv[0] == "sweep":
        return Path("results") / safe_component(load_sweep(ROOT / argv[1]).name)
    return None


def test_the_readme_has_commands_of_every_kind():
    kinds = {argv[0] for argv in readme_commands()}
    assert {"run", "sweep", "plot", "compare", "validate", "list", "plan"} <= kinds


def test_plot_and_compare_read_what_an_earlier_command_writes(monkeypatch):
    monkeypatch.chdir(ROOT)
    written: set[Path] = set()
    for argv in readme_commands():
        if argv[0] in ("run", "sweep") and "--dry-run" not in argv:
            written.add(written_folder(argv))
        elif argv[0] == "plot":
            assert Path(argv[1]) in written, argv
        elif argv[0] == "compare":
            reads = [Path(a) for a in argv[1:] if not a.startswith("--")
                     and a != _option(argv, "--out")]
            assert all(r in written for r in reads), (argv, written)


@pytest.mark.parametrize("argv", [a for a in readme_commands()
                                  if a[0] in ("validate", "list", "layers", "plan", "run",
                                              "sweep")],
                         ids=lambda a: " ".join(a)[:60])
def test_readme_command_runs_or_validates(argv, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(ROOT)
    if any("my_pi4" in a for a in argv) or "--scheduler" in argv or any(
            "--scheduler" in a for a in argv):
        pytest.skip("needs a profile measured on a device, or a running Dask scheduler")
    if argv[0] == "run":
        keep = [a for a in argv[1:] if a not in ("--quiet",)]
        scenario = keep[0]
        argv = ["validate", scenario if scenario.endswith(".yaml")
                else f"scenarios/{scenario}.yaml"]
        argv += [x for s in _sets(keep) for x in ("--set", s)]
    elif argv[0] == "sweep":
        argv = ["sweep", argv[1], "--dry-run", "--out", str(tmp_path / "sweep")]
    assert main(argv) == 0, capsys.readouterr().err
