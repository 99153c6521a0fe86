"""Every plot kind renders from a tiny results set; method colours are fixed everywhere."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import yaml
from conftest import tiny, write_scenario

from ecofed_sim import plot_kinds
from ecofed_sim.cli import PLOT_KINDS, main
from ecofed_sim.plots import METHOD_STYLE, style
from ecofed_sim.sweep import run_sweep

LINK = "population.devices[0].link.uplink_mbps"


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("plots")
    (d / "profiles").mkdir()
    from conftest import UNIT_DEVICE, UNIT_SERVER

    (d / "profiles" / "unit_dev.yaml").write_text(yaml.safe_dump(UNIT_DEVICE))
    (d / "profiles" / "unit_srv.yaml").write_text(yaml.safe_dump(UNIT_SERVER))
    write_scenario(d, tiny(rounds=2), "base.yaml")
    (d / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "p", "base": "base.yaml", "targets": [0.3],
        "axes": [{"path": "method", "values": [{"name": "fedavg"},
                                               {"name": "ecofed", "split": 4}]},
                 {"path": LINK, "values": [1, 4]},
                 {"path": "server.workers", "values": [1, 2]}],
        "seeds": [0, 1]}))
    run_sweep(d / "sweep.yaml", d / "out", progress=False)
    return d / "out"


@pytest.mark.parametrize("kind", PLOT_KINDS)
def test_every_kind_renders(sweep_dir, tmp_path, kind):
    args = ["plot", str(sweep_dir), "--kind", kind, "--format", "png,pdf,svg",
            "--out", str(tmp_path)]
    if kind == "heatmap":
        args += ["--axes", LINK, "server.workers"]
    if kind in ("accuracy-energy", "staleness", "tiers"):  # no power, async run, edges
        assert main(args) == 2
        return
    assert main(args) == 0
    files = list(tmp_path.iterdir())
    assert files and all(f.stat().st_size > 0 for f in files)
    assert {f.suffix for f in files} == {".png", ".pdf", ".svg"}


def test_single_run_directory_and_slides_style(sweep_dir, tmp_path):
    run = next((sweep_dir / "runs").iterdir())
    assert main(["plot", str(run), "--style", "slides", "--format", "png", "--out",
                 str(tmp_path)]) == 0
    assert (tmp_path / "accuracy_time.png").stat().st_size > 0


def test_method_colours_are_the_same_across_kinds(sweep_dir, tmp_path, monkeypatch):
    seen: dict[str, set] = {}
    real_save = plot_kinds.save

    def spy(fig, out, formats):
        for ax in fig.axes:
            handles, labels = ax.get_legend_handles_labels()
            for h, label in zip(handles, labels, strict=True):
                colour = h.patches[0].get_facecolor() if hasattr(h, "patches") \
                    else h.get_color()
                seen.setdefault(label, set()).add(tuple(plt.matplotlib.colors.to_rgb(colour)))
        return real_save(fig, out, formats)

    monkeypatch.setattr(plot_kinds, "save", spy)
    for kind in ("accuracy-time", "accuracy-bytes", "time-bars", "bytes-bars", "round-cdf"):
        assert main(["plot", str(sweep_dir), "--kind", kind, "--format", "png",
                     "--out", str(tmp_path)]) == 0
    for method in ("fedavg", "ecofed"):
        label = style(method)["label"]
        expected = plt.matplotlib.colors.to_rgb(METHOD_STYLE[method][0])
        assert seen[label] == {expected}, (label, seen[label])


def test_bad_plot_options(sweep_dir, tmp_path, capsys):
    assert main(["plot", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "not a results directory" in capsys.readouterr().err
    assert main(["plot", str(sweep_dir), "--format", "gif"]) == 2
    assert main(["plot", str(sweep_dir), "--kind", "heatmap", "--axes", "seed", "nope"]) == 2
    capsys.readouterr()
    for kind in ("gantt", "participation"):
        assert main(["plot", str(sweep_dir), "--kind", kind, "--run", "nope", "--format",
                     "png", "--out", str(tmp_path / "p")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--run: no run 'nope' in" in err, err


def test_participation_bars_stack_to_the_selected(tiny_dir, tmp_path, monkeypatch):
    from helpers import run_dict

    from ecofed_sim.results import write_results

    raw = tiny(rounds=3, **{"population.clients": 4, "population.clients_per_round": 2,
                            "population.over_selection": 2.0, "population.mean_online_s": 0.3,
                            "population.devices.0.count": 4,
                            "data.synthetic.train_samples": 80})
    res = run_dict(raw, tiny_dir)
    assert res.rounds.stragglers.sum() + res.rounds.dropped.sum() > 0
    run = write_results(res, tmp_path / "run")
    figures = []
    monkeypatch.setattr(plot_kinds, "save", lambda fig, out, fmts: figures.append(fig) or [])
    plot_kinds.plot(run, ["participation", "round-cdf"], tmp_path / "f", ["png"], "paper", [])
    heights: dict[float, float] = {}
    for bar in figures[0].axes[0].patches:
        x = round(bar.get_x() + bar.get_width() / 2, 6)
        heights[x] = heights.get(x, 0.0) + bar.get_height()
    assert heights == {float(r): float(s) for r, s in zip(res.rounds["round"],
                                                          res.rounds.selected, strict=True)}
    dropped = res.participation.query("outcome == 'dropped'")
    ends = figures[1].axes[0].lines[0].get_xdata()
    assert max(ends) <= res.rounds.round_time_s.max() + 1e-9
    if len(dropped):  # a dropped device's time ends at its drop, not the round's end
        start = res.rounds.sim_time_s - res.rounds.round_time_s
        drop_s = (dropped.t_end_s - dropped["round"].map(start)).min()
        assert min(ends) <= drop_s + 1e-9


def test_builders_return_figures_with_the_spread_over_seeds(sweep_dir):
    """Bars carry a whisker from the lowest to the highest seed."""
    rs = plot_kinds.load(sweep_dir, [])
    figures = plot_kinds.bars(rs, "bytes", baseline="fedavg")
    fig = figures[""]
    assert isinstance(fig, plt.Figure)
    ax = fig.axes[0]
    whiskers = [c for c in ax.containers if hasattr(c, "errorbar") and c.errorbar]
    assert len(whiskers) == 2  # one per method
    m = rs.metrics
    for container, method in zip(whiskers, ["fedavg", "ecofed"], strict=True):
        segments = container.errorbar.lines[2][0].get_segments()
        spans = sorted(round(float(s[1][1] - s[0][1]), 6) for s in segments)
        by = m[m.method == method].groupby([LINK, "server.workers"])["total_bytes"]
        expected = sorted(round(float(v), 6) for v in (by.max() - by.min()) / 2**20)
        assert spans == expected
    plt.close("all")


def test_heatmap_cells_show_the_mean_and_range_of_per_seed_factors(tmp_path):
    import pandas as pd

    rows = []
    for a in (1, 2):
        for b in (10, 20):
            for seed, (base_s, eco_s) in enumerate([(10.0, 2.0), (12.0, 3.0)]):
                rows += [{"method": "fedavg", "seed": seed, "a": a, "b": b,
                          "total_sim_time_s": base_s, "total_bytes": 8.0},
                         {"method": "ecofed", "seed": seed, "a": a, "b": b,
                          "total_sim_time_s": eco_s, "total_bytes": 2.0}]
    metrics = pd.DataFrame(rows)
    rs = plot_kinds.ResultSet(tmp_path, pd.DataFrame(), metrics, ["a", "b"])
    heat = plot_kinds.heatmap(rs)
    assert set(heat) == {"_time", "_bytes"}
    # per seed: 10/2 = 5x and 12/3 = 4x; mean 4.5x, range 4-5 (the mean of times would
    # give 11/2.5 = 4.4x)
    assert {t.get_text() for t in heat["_time"].axes[0].texts} == {"4.5x\n4-5"}
    assert {t.get_text() for t in heat["_bytes"].axes[0].texts} == {"4x"}  # no spread
    ax = plot_kinds.bars(rs, "time")[""].axes[0]
    whiskers = [c for c in ax.containers if getattr(c, "errorbar", None)]
    spans = [sorted({round(float(seg[1][1] - seg[0][1]), 9)
                     for seg in c.errorbar.lines[2][0].get_segments()}) for c in whiskers]
    assert spans == [[2.0], [1.0]]  # fedavg 10..12 s, ecofed 2..3 s over the seeds
    plt.close("all")


def test_bars_are_linear_unless_asked_and_state_the_factor_direction(sweep_dir):
    rs = plot_kinds.load(sweep_dir, [])
    linear = plot_kinds.bars(rs, "time")[""].axes[0]
    assert linear.get_yscale() == "linear" and linear.get_ylim()[0] == 0
    title = linear.get_legend().get_title().get_text()
    assert title.startswith("on the bars: speed-up = ") and title.endswith(" / method")
    assert plot_kinds.bars(rs, "time", log=True)[""].axes[0].get_yscale() == "log"
    factors = [t.get_text() for t in linear.texts]
    ecofed = rs.metrics[rs.metrics.method == "ecofed"].groupby(rs.params).total_sim_time_s
    fedavg = rs.metrics[rs.metrics.method == "fedavg"].groupby(rs.params).total_sim_time_s
    assert factors == [f"{v:.2g}x" for v in (fedavg.mean() / ecofed.mean())]
    plt.close("all")


def test_bars_without_the_baseline_draw_no_factors_and_say_so(sweep_dir):
    rs = plot_kinds.load(sweep_dir, [])
    only = plot_kinds.ResultSet(rs.root, rs.summary, rs.metrics[rs.metrics.method == "ecofed"],
                                rs.params)
    ax = plot_kinds.bars(only, "time")[""].axes[0]
    assert len(ax.texts) == 0 and "no Classic FL" in ax.get_legend().get_title().get_text()
    plt.close("all")


def test_a_target_nobody_reaches_is_a_one_line_reason_not_an_empty_chart(sweep_dir, tmp_path,
                                                                          capsys):
    args = ["plot", str(sweep_dir), "--format", "png", "--target", "1.0", "--out",
            str(tmp_path / "f")]
    assert main([*args, "--kind", "time-bars"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run reached 100% accuracy" in err, err
    assert main(args) == 0  # under all: skipped with the same reason
    assert "skipped time-bars: no run reached 100% accuracy" in capsys.readouterr().err
    assert not (tmp_path / "f" / "time_bars.png").exists()


def test_round_time_distributions_are_never_pooled_across_swept_values(sweep_dir):
    rs = plot_kinds.load(sweep_dir, [])
    axes = [ax for ax in plot_kinds.round_time_cdf(rs)[""].axes if ax.get_visible()]
    assert len(axes) == 4  # 2 uplinks x 2 worker counts
    assert {ax.get_title() for ax in axes} == {f"{LINK}={u}, server.workers={w}"
                                               for u in (1, 4) for w in (1, 2)}
    assert all(len(ax.get_lines()) == 2 for ax in axes)  # one curve per method
    plt.close("all")
