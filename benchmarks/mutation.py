"""Mutation score of the core modules: how many small, deliberate bugs the fast tests catch.

Copies the project to a temporary folder, points mutmut (a dev dependency) at the core
modules (network, codecs, ledger, aggregation, participation, energy, planner) with the
fast tests that cover them, runs it, and prints the killed share per module and every
survivor (a mutant no test noticed: a gap in the tests, or an equivalent mutant). Goal:
at least 90% killed in each module. Too slow for CI (minutes to hours, with the number of
mutants); run it after changing tests or these modules.

    python benchmarks/mutation.py [--modules energy codecs] [--max-children 2]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = {  # name -> (files mutated, fast tests that cover them)
    "network": (["ecofed_sim/network/flows.py", "ecofed_sim/network/fairshare.py",
                 "ecofed_sim/network/tcp.py"],
                ["tests/test_network.py", "tests/test_network_edges.py", "tests/test_tcp.py",
                 "tests/test_fairshare.py",
                 "tests/test_traces.py", "tests/test_golden_timing.py"]),
    "codecs": (["ecofed_sim/codecs.py"], ["tests/test_codecs.py"]),
    "ledger": (["ecofed_sim/ledger.py"], ["tests/test_ledger.py"]),
    "aggregation": (["ecofed_sim/aggregation/sync.py",
                     "ecofed_sim/aggregation/asynchronous.py"],
                    ["tests/test_aggregate.py", "tests/test_async_aggregation.py"]),
    "participation": (["ecofed_sim/participation.py", "ecofed_sim/availability.py"],
                      ["tests/test_participation.py"]),
    "energy": (["ecofed_sim/energy.py"], ["tests/test_energy.py"]),
    "planner": (["ecofed_sim/planner.py"], ["tests/test_planner.py"]),
}
GOAL = 0.90
STATUS = re.compile(r"^\s*(\S+?)__mutmut_\d+: (\w+)")


def project_copy(target: Path) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            dest = target / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)


def configure(target: Path, names: list[str]) -> None:
    files = [f for n in names for f in MODULES[n][0]]
    tests = sorted({t for n in names for t in MODULES[n][1]})
    quoted = ", ".join(f'"{x}"' for x in files)
    (target / "pyproject.toml").write_text(
        (target / "pyproject.toml").read_text() + "\n[tool.mutmut]\n"
        'source_paths = ["ecofed_sim/"]\n'
        f"only_mutate = [{quoted}]\n"
        f"pytest_add_cli_args_test_selection = [{', '.join(repr(t) for t in tests)}]\n"
        'pytest_add_cli_args = ["-x", "-q", "-p", "no:cacheprovider"]\n'
        'process_isolation = "forkserver"\n')


def module_of(key: str, names: list[str]) -> str:
    for name in names:
        for path in MODULES[name][0]:
            if key.startswith(path[:-3].replace("/", ".")):
                return name
    return "other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modules", nargs="+", choices=list(MODULES), default=list(MODULES))
    p.add_argument("--max-children", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = p.parse_args()
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="ecofed-sim-mutation-"))
    try:
        project_copy(work)
        configure(work, args.modules)
        mutmut = [sys.executable, "-m", "mutmut"]
        run = subprocess.run([*mutmut, "run", "--max-children", str(args.max_children)],
                             cwd=work, capture_output=True, text=True)
        listed = subprocess.run([*mutmut, "results", "--all", "true"], cwd=work,
                                capture_output=True, text=True).stdout
        counts: dict[str, Counter] = {}
        survivors: list[str] = []
        for line in listed.splitlines():
            m = STATUS.match(line)
            if not m:
                continue
            key, status = m.groups()
            counts.setdefault(module_of(key, args.modules), Counter())[status] += 1
            if status == "survived":
                survivors.append(line.strip())
        if not counts:
            sys.exit(f"mutmut produced no results:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
        print(f"{'module':<14} {'mutants':>8} {'killed':>8} {'share':>7}  goal {GOAL:.0%}")
        for name, c in sorted(counts.items()):
            total = sum(c.values())
            share = c["killed"] / total
            print(f"{name:<14} {total:>8} {c['killed']:>8} {share:>7.1%}  "
                  f"{'ok' if share >= GOAL else 'below'}  {dict(c)}")
        print(f"{len(survivors)} survivors (inspect with `mutmut show NAME` in {work}):")
        print("\n".join(f"  {s}" for s in survivors))
        print(f"done in {time.time() - started:.0f} s")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
