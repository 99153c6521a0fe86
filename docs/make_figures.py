"""Regenerate the README's demo table, its figures and its stragglers figures, in one go.

Runs what ``make demo`` runs (the quickstart uplink sweep, into results/quickstart), plus
one gantt chart, the stragglers scenario with and without a longer deadline, and the
asynchronous scenario synchronously, with FedBuff and with FedAsync, and the quickstart
with bounded server memory, and the hierarchy scenario flat and with two edges, then
copies the figures into docs/figures/ and rewrites the README's generated blocks (between
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` markers), each followed by the command and
the date it was made. ``make docs-figures`` runs it.

    python docs/make_figures.py
"""

from __future__ import annotations

import datetime
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FIGURES = ROOT / "docs" / "figures"
DEMO = Path("results") / "quickstart"  # relative to ROOT, as make demo writes it
CLI = [sys.executable, "-m", "ecofed_sim.cli"]


def cli(*args: str) -> str:
    done = subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"ecofed-sim {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def stamp(command: str) -> str:
    machine = platform.processor() or platform.machine()
    return (f"<sub>Made with `{command}` on {datetime.date.today().isoformat()} ({machine}, "
            f"Python {platform.python_version()}).</sub>")


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:begin -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        sys.exit(f"README.md has no <!-- {name}:begin --> ... <!-- {name}:end --> block")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def demo() -> str:
    """What ``make demo`` prints on a fresh machine (its folder is emptied first)."""
    if (ROOT / DEMO / ".ecofed-sim-results").exists():
        shutil.rmtree(ROOT / DEMO)
    table = cli("sweep", "scenarios/sweeps/quickstart_uplink.yaml", "--out", str(DEMO))
    cli("plot", str(DEMO), "--format", "png,pdf")
    for name in ("accuracy_time", "accuracy_bytes", "time_bars"):
        shutil.copy(ROOT / DEMO / "figures" / f"{name}.png", FIGURES / f"{name}.png")
    metrics = pd.read_parquet(ROOT / DEMO / "metrics.parquet")
    first = metrics[(metrics.method == "fedavg") & (metrics.uplink_mbps == 1)
                    & (metrics.seed == 0)].run_id.iloc[0]
    cli("plot", str(DEMO), "--kind", "gantt", "--run", first, "--format", "png", "--out",
        str(DEMO / "figures"))
    shutil.copy(ROOT / DEMO / "figures" / "gantt.png", FIGURES / "gantt.png")
    return f"```\n{table.strip(chr(10))}\n```\n{stamp('make docs-figures')}"


def stragglers() -> str:
    lines = []
    for label, extra in (("as shipped", []), ("deadline 20 s", ["--set",
                                                                 "population.deadline_s=20"])):
        out = ROOT / "results" / f"stragglers-{len(lines)}"
        cli("run", "stragglers", "--quiet", "--force", "--out", str(out), *extra)
        rounds = pd.read_parquet(out / "rounds.parquet")
        last = rounds.iloc[-1]
        lines.append(f"| {label} | {int(rounds.completed.sum())} | "
                     f"{int(rounds.stragglers.sum())} | {int(rounds.dropped.sum())} | "
                     f"{last.sim_time_s:.1f} | {last.test_accuracy:.3f} |")
        if not extra:
            cli("plot", str(out), "--kind", "participation", "--format", "png", "--out",
                str(out / "figures"))
            shutil.copy(out / "figures" / "participation.png", FIGURES / "participation.png")
    head = ("| run | updates kept | stragglers | dropped | simulated s | final accuracy |\n"
            "|---|---|---|---|---|---|")
    return "\n".join([head, *lines, "", stamp("make docs-figures")])


ASYNC_RUNS = (  # label, overrides of scenarios/async_fedbuff.yaml: 150 client updates each
    ("synchronous FedAvg, 15 rounds of 10", ["--set", "asynchronous=null",
                                             "--set", "rounds=15"]),
    ("FedBuff, K = 5, 30 updates", []),
    ("FedAsync, mixing 0.6, 150 updates", ["--set", "asynchronous.aggregator=fedasync",
                                           "--set", "rounds=150",
                                           "--set", "evaluation.every=5"]),
)


def asynchronous() -> str:
    """The async_fedbuff scenario synchronously, with FedBuff and with FedAsync."""
    lines, outs = [], []
    for i, (label, extra) in enumerate(ASYNC_RUNS):
        out = ROOT / "results" / "async" / f"run-{i}"
        cli("run", "scenarios/async_fedbuff.yaml", "--quiet", "--force", "--out", str(out),
            *extra)
        rounds = pd.read_parquet(out / "rounds.parquet")
        last = rounds.iloc[-1]
        stale = (f"{rounds.staleness_mean.mul(rounds.updates).sum() / rounds.updates.sum():.2f}"
                 if "staleness_mean" in rounds else "0")
        lines.append(f"| {label} | {int(rounds.completed.sum())} | {last.sim_time_s:.1f} | "
                     f"{last.test_accuracy:.3f} | {stale} |")
        outs.append(str(out))
    cli("compare", *outs, "--out", str(ROOT / "results" / "async" / "compare"))
    shutil.copy(ROOT / "results" / "async" / "compare" / "accuracy_vs_time.png",
                FIGURES / "async_accuracy_time.png")
    cli("plot", outs[1], "--kind", "staleness", "--format", "png", "--out",
        str(ROOT / "results" / "async" / "figures"))
    shutil.copy(ROOT / "results" / "async" / "figures" / "staleness.png",
                FIGURES / "staleness.png")
    head = ("| run | client updates | simulated s | final accuracy | mean staleness |\n"
            "|---|---|---|---|---|")
    return "\n".join([head, *lines, "", stamp("make docs-figures")])


def server() -> str:
    """The quickstart (splitfed) with unbounded server memory and with room for 3 copies."""
    lines = []
    for label, extra in (("24 GB (server_gpu profile)", []), ("0.0012 GB (3 copies)",
                                            ["--set", "server.memory_gb=0.0012"])):
        out = ROOT / "results" / "server" / f"quickstart-{len(lines)}"
        cli("run", "quickstart", "--quiet", "--force", "--out", str(out), "--set", "rounds=3",
            *extra)
        r = pd.read_parquet(out / "rounds.parquet")
        lines.append(f"| {label} | {r.round_time_s.mean():.2f} | {int(r.server_copies_peak.max())} "
                     f"| {r.queue_wait_s.mean():.1f} | {100 * r.server_utilisation.mean():.2f} "
                     f"| {r.test_accuracy.iloc[-1]:.3f} |")
    cli("plot", str(out), "--kind", "server", "--format", "png", "--out", str(out / "figures"))
    shutil.copy(out / "figures" / "server.png", FIGURES / "server.png")
    head = ("| server memory | round s (mean) | most copies held | queue wait s per round | "
            "server utilisation % | accuracy after 3 rounds |\n|---|---|---|---|---|---|")
    return "\n".join([head, *lines, "", stamp("make docs-figures")])


HIERARCHY_RUNS = (  # label, overrides of scenarios/hierarchy.yaml
    ("flat: every device to the cloud", [
        "--set", "topology=null", "--set", "population.devices=[{profile: rpi4b, share: 0.6, "
        "link: wifi}, {profile: jetson_nano, share: 0.4, link: 4g}]"]),
    ("2 edges, cloud every round", ["--set", "topology.cloud_every=1"]),
    ("2 edges, cloud every 2 rounds", []),
)


def hierarchy() -> str:
    """The hierarchy scenario flat, and with its two edges at k2 = 1 and 2."""
    lines, outs = [], []
    for i, (label, extra) in enumerate(HIERARCHY_RUNS):
        out = ROOT / "results" / "hierarchy" / f"run-{i}"
        outs.append(str(out))
        cli("run", "scenarios/hierarchy.yaml", "--quiet", "--force", "--out", str(out), *extra)
        r = pd.read_parquet(out / "rounds.parquet")
        edge = sum(r.get(f"{d}_edge_model_bytes", pd.Series([0])).sum() for d in ("up", "down"))
        device = r.bytes_up.sum() + r.bytes_down.sum() - edge
        lines.append(f"| {label} | {r.sim_time_s.iloc[-1]:.2f} | {device / 2**20:.1f} | "
                     f"{edge / 2**20:.1f} | {r.test_accuracy.iloc[-1]:.3f} |")
    cli("compare", *outs, "--out", str(ROOT / "results" / "hierarchy" / "compare"))
    shutil.copy(ROOT / "results" / "hierarchy" / "compare" / "accuracy_vs_time.png",
                FIGURES / "hierarchy_accuracy_time.png")
    head = ("| run (16 rounds) | simulated s | device tier MiB | edge-cloud tier MiB | "
            "final accuracy |\n|---|---|---|---|---|")
    return "\n".join([head, *lines, "", stamp("make docs-figures")])


def main() -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    text = README.read_text()
    text = replace_block(text, "demo-table", demo())
    text = replace_block(text, "stragglers", stragglers())
    text = replace_block(text, "asynchronous", asynchronous())
    text = replace_block(text, "server", server())
    text = replace_block(text, "hierarchy", hierarchy())
    README.write_text(text)
    print(f"rewrote the generated blocks of {README} and the figures in {FIGURES}")


if __name__ == "__main__":
    main()
