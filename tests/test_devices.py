"""``training.device``: where the real computation runs, and what must not depend on it.

On this machine only the CPU exists: the CPU tests run here, the GPU ones skip with the
reason. On a machine with a GPU, the same file checks that clocks and bytes are the CPU's
exactly and accuracy agrees to float tolerance (``benchmarks/gpu_check.py`` also times it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import tiny, write_scenario
from helpers import load_script, run_dict

from ecofed_sim.cli import main
from ecofed_sim.codec_spec import CodecSpec
from ecofed_sim.codecs import make_codec
from ecofed_sim.compute import on_cpu, resolve_device

NO_CUDA = "no CUDA device on this machine (torch.cuda.is_available() is False)"
TIMING_COLUMNS = ["round", "sim_time_s", "round_time_s", "bytes_up", "bytes_down"]


def _tables(results) -> dict[str, pd.DataFrame]:
    return {"rounds": results.rounds, "transfers": results.transfers,
            "timeline": results.timeline}


@pytest.mark.parametrize("method", [{"name": "fedavg"},
                                    {"name": "ecofed", "split": 2, "period": 2}])
def test_cpu_explicitly_is_the_default_here(tiny_dir, method):
    base = tiny(**{"method": method, "rounds": 2})
    auto = run_dict(base, tiny_dir)
    cpu = run_dict(tiny(**{"method": method, "rounds": 2, "training.device": "cpu"}), tiny_dir)
    for name, table in _tables(auto).items():
        pd.testing.assert_frame_equal(table, _tables(cpu)[name], check_exact=True, obj=name)
    assert cpu.manifest["compute_device"] == auto.manifest["compute_device"] == (
        "cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_asking_for_an_absent_gpu_is_a_one_line_error(tiny_dir, capsys):
    path = write_scenario(tiny_dir, tiny(**{"training.device": "cuda"}))
    out = tiny_dir / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {path}: training.device: cuda, but torch sees no CUDA device "
                   "here (torch.cuda.is_available() is False); use auto or cpu")
    assert not out.exists()
    assert main(["profile", "small_cnn", "--device", "cuda", "--out",
                 str(tiny_dir / "p.yaml")]) == 2
    assert "profile: --device: cuda, but torch sees no CUDA device" in capsys.readouterr().err
    assert not (tiny_dir / "p.yaml").exists()


def test_auto_resolves_to_what_this_machine_has():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto", "x").type == expected
    assert resolve_device("cpu", "x") == torch.device("cpu")


def test_a_state_moved_to_host_memory_is_a_copy():
    state = {"w": torch.ones(3)}
    moved = on_cpu(state)
    moved["w"] += 1
    assert state["w"].tolist() == [1.0, 1.0, 1.0] and moved["w"].device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_cuda_run_has_the_cpu_clocks_and_bytes_and_close_accuracy(tiny_dir):
    for method in ({"name": "fedavg"}, {"name": "ecofed", "split": 2, "period": 2},
                   {"name": "splitfed", "split": 2}):
        cpu = run_dict(tiny(**{"method": method, "training.device": "cpu"}), tiny_dir)
        gpu = run_dict(tiny(**{"method": method, "training.device": "cuda"}), tiny_dir)
        pd.testing.assert_frame_equal(cpu.rounds[TIMING_COLUMNS], gpu.rounds[TIMING_COLUMNS],
                                      check_exact=True)
        pd.testing.assert_frame_equal(cpu.transfers, gpu.transfers, check_exact=True)
        assert (cpu.rounds.test_accuracy - gpu.rounds.test_accuracy).abs().max() <= 0.05
        assert gpu.manifest["compute_device"] == "cuda"


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("spec", [CodecSpec(kind="uniform", bits=8),
                                  CodecSpec(kind="uniform", bits=4, rounding="stochastic"),
                                  CodecSpec(kind="topk", fraction=0.1)])
def test_codecs_on_cuda_count_the_cpu_bytes_and_decode_there(spec):
    x = torch.randn(4, 16, 5, 5)
    codec = make_codec(spec)
    on_host = codec.encode(x, torch.Generator().manual_seed(0))
    on_gpu = codec.encode(x.cuda(), torch.Generator().manual_seed(0))
    assert on_gpu.payload_bytes == on_host.payload_bytes
    decoded = codec.decode(on_gpu.stored)
    assert decoded.device.type == "cuda"
    torch.testing.assert_close(decoded.cpu(), on_host.decoded, rtol=1e-5, atol=1e-5)


GPU_CHECK = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the check would run")
def test_gpu_check_says_why_it_skips_without_a_gpu():
    done = subprocess.run([sys.executable, str(GPU_CHECK)], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.strip() == ("gpu_check: skipped: no CUDA device on this machine "
                                   "(torch.cuda.is_available() is False)")


def test_gpu_checks_comparison_sees_a_changed_clock_and_an_accuracy_gap(tiny_dir):
    """The benchmark's verdict on two result folders: equal, then one with a clock moved
    by a microsecond and an accuracy 0.25 lower."""
    from ecofed_sim.results import write_results

    gpu_check = load_script("benchmarks/gpu_check.py")
    results = run_dict(tiny(), tiny_dir)
    a, b = tiny_dir / "a", tiny_dir / "b"
    write_results(results, a)
    write_results(results, b)
    assert gpu_check.compare(a, b) == (True, True, 0.0)
    rounds = pd.read_csv(b / "rounds.csv")
    rounds.loc[0, "round_time_s"] += 1e-6
    rounds.loc[0, "test_accuracy"] -= 0.25
    rounds.to_csv(b / "rounds.csv", index=False)
    clocks, transfers, gap = gpu_check.compare(a, b)
    assert (clocks, transfers) == (False, True) and gap == pytest.approx(0.25)
