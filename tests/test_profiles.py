"""The compute-time model: tables first (scaled by batch), FLOPs as the fallback."""

from __future__ import annotations

import pytest

from ecofed_sim.models import build_model, layer_stats
from ecofed_sim.profiles import DeviceProfile, load_library
from ecofed_sim.shipped import SCENARIOS_DIR as SCENARIOS

RATES = {"conv": 1e9, "linear": 2e9, "norm": 1e8, "pool": 1e8, "act": 1e8}


def _profile(tables=(), overhead_ms=0.0) -> DeviceProfile:
    return DeviceProfile.model_validate({
        "name": "p", "compute": {"flops_per_s": RATES, "backward_factor": 2.0,
                                 "layer_overhead_ms": overhead_ms},
        "latency_tables": list(tables)})


STATS = layer_stats(build_model("small_cnn", (1, 8, 8), 2), (1, 8, 8))


def test_flops_fallback_by_kind():
    p = _profile(overhead_ms=0.5)
    conv1 = STATS[0]
    expected = sum(conv1.flops_by_kind[k] / RATES[k] for k in RATES) * 16
    assert p.pass_s("small_cnn", [conv1], 16, backward=False) == pytest.approx(
        expected + 0.0005, rel=1e-12)
    assert p.pass_s("small_cnn", [conv1], 16, backward=True) == pytest.approx(
        2 * expected + 0.0005, rel=1e-12)


def test_table_wins_and_scales_from_the_nearest_batch():
    table = {"model": "small_cnn", "batch_size": 10,
             "layers": {"conv1": {"forward_ms": 3.0, "backward_ms": 5.0}}}
    big = {**table, "batch_size": 100,
           "layers": {"conv1": {"forward_ms": 20.0, "backward_ms": 40.0}}}
    p = _profile([table, big])
    assert p.pass_s("small_cnn", STATS[:1], 10, backward=False) == pytest.approx(0.003)
    assert p.pass_s("small_cnn", STATS[:1], 20, backward=True) == pytest.approx(0.010)
    assert p.pass_s("small_cnn", STATS[:1], 80, backward=False) == pytest.approx(0.016)
    # a layer missing from the table falls back to FLOPs; another model ignores the table
    pool = STATS[1]
    assert p.pass_s("small_cnn", [pool], 10, False) == pytest.approx(
        pool.flops_by_kind["pool"] * 10 / 1e8)
    assert p.pass_s("vgg5", STATS[:1], 10, False) == pytest.approx(
        _profile().pass_s("vgg5", STATS[:1], 10, False))


def test_shipped_profiles_load_and_cite_sources():
    lib = load_library()
    required = {"rpi3b", "rpi4b", "jetson_nano", "phone_midrange", "server_cpu", "server_gpu"}
    assert required <= lib.devices.keys()
    for profile in lib.devices.values():
        assert profile.compute.source, profile.name
    for name, link in lib.links.items():
        assert link.source, name
    assert lib.devices["rpi4b"].pass_s("vgg11", STATS, 10, False) > \
        lib.devices["server_gpu"].pass_s("vgg11", STATS, 10, False)


def test_help_listing_and_validate_do_not_import_torch():
    """They answer in a fraction of a second: torch (about 1 s to import) stays out."""
    import subprocess
    import sys

    code = ("import sys; from ecofed_sim.cli import main; main({args!r}); "
            "assert 'torch' not in sys.modules and 'pandas' not in sys.modules")
    for args in (["list", "links"], ["list", "profiles"], ["list", "scenarios"],
                 ["validate", str(SCENARIOS / "quickstart.yaml")],
                 ["validate", str(SCENARIOS / "paper" / "ecofed.yaml")],
                 ["validate", str(SCENARIOS / "stragglers.yaml"), "--print"]):
        done = subprocess.run([sys.executable, "-c", code.format(args=args)],
                              capture_output=True, text=True)
        assert done.returncode == 0, (args, done.stderr)
    helped = subprocess.run([sys.executable, "-c", "import sys\nfrom ecofed_sim.cli import "
                             "main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
                             "assert 'torch' not in sys.modules"], capture_output=True, text=True)
    assert helped.returncode == 0, helped.stderr
