"""Device, server and link profiles and the compute-time model.

Profiles are read, later folders overriding earlier ones, from: the package's own
``ecofed_sim/device_profiles/`` (read through ``importlib.resources``, so an installed
wheel has them), the user profile folder (``ECOFED_SIM_PROFILES``, else
``$XDG_DATA_HOME/ecofed_sim/profiles``, else ``~/.local/share/ecofed_sim/profiles``; where
``ecofed-sim profile`` writes), and a scenario's ``profiles_dir``.

Compute time of one pass over a model part, per unit, in order of preference:
1. a measured per-layer latency table keyed by (model, layer, batch size), scaled linearly
   in batch size from the nearest measured batch when the exact one is missing;
2. the fallback: forward FLOPs of each layer kind / that kind's effective FLOP/s, plus a
   fixed per-layer overhead; backward = ``backward_factor`` x forward.
Effective throughput varies 10x or more across architectures on one device
(UbiquitousLearning's on-device training benchmarks show it on one phone), which is why
tables win when they exist.
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, PositiveFloat, ValidationError

from ecofed_sim.errors import ScenarioError
from ecofed_sim.strict import RateMbps, StrictModel, read_yaml

if TYPE_CHECKING:  # torch-free at import: listing profiles must not load torch
    from ecofed_sim.models import LayerStats

LAYER_KINDS = ("conv", "linear", "norm", "pool", "act")
"""Kinds of leaf work a compute profile can price separately."""

SHIPPED_PROFILES_DIR = Path(str(resources.files("ecofed_sim") / "device_profiles"))
LINKS_FILE = "links.yaml"





class LayerLatency(StrictModel):
    forward_ms: float = Field(ge=0)
    """forward pass of the unit at the table's batch size, ms"""
    backward_ms: float = Field(ge=0)
    """backward pass (input and parameter gradients), ms"""
    forward_iqr_ms: float | None = Field(None, ge=0)
    """spread of the forward measurements: interquartile range over the repeats, ms"""
    backward_iqr_ms: float | None = Field(None, ge=0)
    """spread of the backward measurements: interquartile range over the repeats, ms"""


class LatencyTable(StrictModel):
    """Measured per-layer latency for one model at one batch size."""

    model: str
    """zoo model name the table is for (or aux for auxiliary heads)"""
    batch_size: int = Field(ge=1)
    """batch size measured; other sizes scale linearly from the nearest"""
    layers: dict[str, LayerLatency]
    """unit name (ecofed-sim layers MODEL) -> forward and backward ms"""
    source: str = ""
    """how and where it was measured"""


class KindRates(StrictModel):
    """Effective forward FLOP/s per layer kind (see ``models.LAYER_KINDS``)."""

    conv: PositiveFloat
    """convolutions, FLOP/s"""
    linear: PositiveFloat
    """fully connected layers, FLOP/s"""
    norm: PositiveFloat
    """normalisation layers, FLOP/s"""
    pool: PositiveFloat
    """pooling layers, FLOP/s"""
    act: PositiveFloat
    """activations, FLOP/s"""


class FlopsModel(StrictModel):
    flops_per_s: KindRates
    """effective forward FLOP/s per layer kind"""
    backward_factor: float = Field(2.0, gt=0)
    """backward time as a multiple of forward time"""
    layer_overhead_ms: float = Field(0.0, ge=0)
    """fixed time per layer and pass, ms (kernel launch, framework overhead)"""
    source: str = ""
    """where these rates come from"""


class PowerW(StrictModel):
    idle: float = Field(ge=0)
    """W while idle"""
    compute: float = Field(ge=0)
    """W while computing"""
    transmit: float = Field(ge=0)
    """W while sending"""
    receive: float = Field(ge=0)
    """W while receiving"""
    source: str = ""
    """where the figures come from"""


class DeviceProfile(StrictModel):
    """One device or server class."""

    name: str
    """profile name scenarios use (population.devices[].profile, server.profile)"""
    kind: Literal["device", "server"] = "device"
    """device or server"""
    description: str = ""
    """one line shown by ecofed-sim list profiles"""
    compute: FlopsModel
    """the fallback compute model: FLOPs over effective FLOP/s per layer kind"""
    latency_tables: list[LatencyTable] = []
    """measured per-layer latency tables; they win over the FLOP model where they cover a
    layer (ecofed-sim profile writes them)"""
    memory_gb: float | None = Field(None, gt=0)
    """device memory, GB (informative)"""
    power_w: PowerW | None = None
    """power draw per state, W, for the energy table"""
    sources: list[str] = []
    """where the figures come from (papers, datasheets, measurements)"""

    def _table(self, model: str, batch: int) -> tuple[LatencyTable, float] | None:
        """The table for ``model`` nearest in batch size, and the batch scaling factor."""
        tables = [t for t in self.latency_tables if t.model == model]
        if not tables:
            return None
        best = min(tables, key=lambda t: (abs(t.batch_size - batch), t.batch_size))
        return best, batch / best.batch_size

    def cost_s(self, passes) -> float:
        """Modelled seconds of a sequence of ``methods.base.Pass``."""
        return sum(self.pass_s(p.model, p.layers, p.batch, p.backward) for p in passes)

    def pass_s(self, model: str, layers: list[LayerStats], batch: int, backward: bool) -> float:
        """Modelled seconds of one forward (or backward) pass of ``layers`` at ``batch``."""
        found = self._table(model, batch)
        total_s = 0.0
        for layer in layers:
            if found and layer.name in found[0].layers:
                entry = found[0].layers[layer.name]
                ms = entry.backward_ms if backward else entry.forward_ms
                total_s += ms * found[1] / 1e3
                continue
            rates = self.compute.flops_per_s
            fwd_s = sum(layer.flops_by_kind[k] / getattr(rates, k) for k in LAYER_KINDS) * batch
            factor = self.compute.backward_factor if backward else 1.0
            total_s += fwd_s * factor + self.compute.layer_overhead_ms / 1e3
        return total_s


class LinkProfile(StrictModel):
    """A device's access link: separate up and down rates, one-way latency."""

    uplink_mbps: RateMbps = Field(json_schema_extra={"timing_only": True})
    """uplink rate, Mbit/s"""
    downlink_mbps: RateMbps = Field(json_schema_extra={"timing_only": True})
    """downlink rate, Mbit/s"""
    latency_ms: float = Field(0.0, ge=0, json_schema_extra={"timing_only": True})
    """one-way latency, ms (default: half of rtt_ms)"""
    rtt_ms: float | None = Field(None, ge=0, json_schema_extra={"timing_only": True})
    """round-trip time, ms (default: twice latency_ms)"""
    loss_rate: float = Field(0.0, ge=0, le=0.5, json_schema_extra={"timing_only": True})
    """chance that a segment is lost at random (tcp transport)"""
    buffer_bytes: float | None = Field(None, gt=0, le=2**34,
                                       json_schema_extra={"timing_only": True})
    """drop-tail buffer at the bottleneck, bytes (tcp transport; default one BDP)"""
    source: str = ""
    """where the figures come from"""


def round_trip_ms(spec) -> float:
    """A link's round-trip time: ``rtt_ms`` if set, else twice the one-way latency."""
    rtt_ms = getattr(spec, "rtt_ms", None)
    return 2 * spec.latency_ms if rtt_ms is None else rtt_ms


def one_way_ms(spec) -> float:
    """A link's one-way latency: ``latency_ms`` if set, else half the round-trip time."""
    return spec.latency_ms or round_trip_ms(spec) / 2


class ProfileError(ValueError):
    """A profile file that cannot be read; the message is one line naming file and field."""


def _read_yaml(path: Path) -> object:
    try:
        return read_yaml(path)
    except ScenarioError as err:
        raise ProfileError(str(err)) from None


def _first_error(path: Path, err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    return f"{path}: {loc}: {e['msg'].lower()} (got {e.get('input')!r})"


class ProfileLibrary:
    """All profiles found in a list of directories; later directories override earlier."""

    def __init__(self, dirs: list[Path]) -> None:
        self.devices: dict[str, DeviceProfile] = {}
        self.links: dict[str, LinkProfile] = {}
        self.files: dict[str, Path] = {}
        for d in dirs:
            for path in sorted(Path(d).glob("*.yaml")):
                self._load(path)

    def _load(self, path: Path) -> None:
        raw = _read_yaml(path)
        try:
            if path.name == LINKS_FILE:
                if not isinstance(raw, dict):
                    raise ProfileError(f"{path}: expected a mapping of link names")
                for name, body in raw.items():
                    self.links[str(name)] = LinkProfile.model_validate(body)
                return
            profile = DeviceProfile.model_validate(raw)
        except ValidationError as err:
            raise ProfileError(_first_error(path, err)) from None
        self.devices[profile.name] = profile
        self.files[profile.name] = path


def user_profiles_dir() -> Path:
    """Where a user's own profiles live (and ``ecofed-sim profile`` writes by default)."""
    if os.environ.get("ECOFED_SIM_PROFILES"):
        return Path(os.environ["ECOFED_SIM_PROFILES"])
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "ecofed_sim" / "profiles"


def load_library(extra_dirs: tuple[str, ...] = ()) -> ProfileLibrary:
    """The shipped profiles, the user's, then any extra directories (later ones win)."""
    user = user_profiles_dir()
    dirs = (str(SHIPPED_PROFILES_DIR), *((str(user),) if user.is_dir() else ()), *extra_dirs)
    return _library(dirs)


@functools.lru_cache(maxsize=8)
def _library(dirs: tuple[str, ...]) -> ProfileLibrary:
    """Cached per folder list: profiles are read-only during a process."""
    return ProfileLibrary([Path(d) for d in dirs])
