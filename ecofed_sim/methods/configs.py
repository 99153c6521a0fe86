"""The ``method`` sections of a scenario, one per built-in method, and their traits.

Kept apart from the methods (which need torch) so that reading, checking and planning a
scenario stays fast; each method module imports its config from here.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from ecofed_sim.codec_spec import PAPER_CODEC, CodecSpec
from ecofed_sim.strict import StrictModel


class MethodConfigBase(StrictModel):
    """Frozen; unknown keys, non-finite numbers and booleans for numbers are errors.

    The class variables are the method's traits, read by the checks and the sweep planner
    without importing the method itself (and so without torch)."""

    uses_pretrained_device: ClassVar[bool] = False
    """True when the method always starts its device part from pre-trained weights."""
    timing_independent: ClassVar[bool] = True
    """False when what is learned depends on arrival order (then no trace reuse)."""
    per_class_split: ClassVar[bool] = False
    """True when device classes may each use their own split point."""
    defers_training: ClassVar[bool] = False
    """True when the method's simulated round needs no real computation: it trains each
    kept client at aggregation, so ``learning: none`` skips the training and ``run
    --workers`` spreads it over processes."""
    server_copies: ClassVar[Literal["none", "per_client", "shared"]] = "none"
    """per_client: the server trains a copy of its part per client, bounded by its memory
    (``ecofed_sim.server_resources``); shared: one server part for everyone."""

    def trains_apart(self) -> bool:
        """True when a client's learning in a synchronous round depends only on the
        global model at the round's start, its own data and what the method ships it
        (``Method.apart_input``), and leaves nothing in the method but what it hands back
        (``Method.run_apart``): its server part is a per-client copy. ``run --workers``
        then plays the round's clocks on shapes alone and trains the clients in worker
        processes (``ecofed_sim.parallel``)."""
        return False


class SplitConfigBase(MethodConfigBase):
    split: int | Literal["auto"]
    """Split index: the device holds model units [0, split), the server the rest. "auto":
    the planner's pick (``ecofed_sim.planner``), resolved before the run starts."""


class AuxConfigBase(SplitConfigBase):
    aux_hidden: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(
        default_factory=list, description="hidden widths of the auxiliary head; [] = one "
        "linear layer on the flattened activation (Han et al. 2021)")
    activation_codec: CodecSpec = CodecSpec()
    """how activations are encoded on the uplink"""


class FedAvgConfig(MethodConfigBase):
    name: Literal["fedavg"]
    """fedavg: classic FL (McMahan et al. 2017)"""
    defers_training: ClassVar[bool] = True


class SplitFedConfig(SplitConfigBase):
    name: Literal["splitfed"]
    """splitfed: vanilla DPFL, SplitFed-V1 (Thapa et al. 2022)"""
    per_class_split: ClassVar[bool] = True
    server_copies: ClassVar[Literal["none", "per_client", "shared"]] = "per_client"
    activation_codec: CodecSpec = CodecSpec()
    """how activations are encoded on the uplink"""
    gradient_codec: CodecSpec = CodecSpec()
    """how gradients are encoded on the downlink"""
    freeze_device: bool = Field(False, description="keep the device part at its initial "
                                "weights: no gradient and no weights cross the network")

    def trains_apart(self) -> bool:
        return True


class SplitFedV2Config(SplitFedConfig):
    name: Literal["splitfed_v2"]  # type: ignore[assignment]
    """splitfed_v2: one shared server part, trained in arrival order"""
    timing_independent: ClassVar[bool] = False  # the shared model learns in arrival order
    per_class_split: ClassVar[bool] = False  # one shared server part needs one split
    server_copies: ClassVar[Literal["none", "per_client", "shared"]] = "shared"

    def trains_apart(self) -> bool:
        return False  # its one server part learns from every client, in arrival order


class LocalLossConfig(AuxConfigBase):
    name: Literal["local_loss"]
    """local_loss: local-loss DPFL with an auxiliary head (Han et al. 2021)"""
    server_copies: ClassVar[Literal["none", "per_client", "shared"]] = "per_client"
    lockstep: bool = False
    """per batch, the device waits for the server's step and its release message before
    its local backward, as the EcoFed code's local-loss devices do (default: stream)"""
    release_bytes: int = Field(32, ge=1, le=2**20)
    """lockstep: payload of the release message, bytes"""

    def trains_apart(self) -> bool:
        return True


class FedGKTConfig(AuxConfigBase):
    name: Literal["fedgkt"]
    """fedgkt: group knowledge transfer (He et al. 2020)"""
    server_copies: ClassVar[Literal["none", "per_client", "shared"]] = "per_client"
    alpha: float = Field(1.0, ge=0, description="weight of the distillation term")
    temperature: float = Field(3.0, gt=0)
    """distillation temperature"""
    mode: Literal["lockstep", "two_phase"] = "lockstep"
    """lockstep: distil per batch both ways; two_phase: a local epoch on stored server
    logits, then an inference pass that trains the server (the EcoFed code's FedGKT)"""

    def trains_apart(self) -> bool:
        return True  # two_phase: each job takes its client's stored logits out and back


class AdaptivePeriod(StrictModel):
    """Adapt the period to the relative test-accuracy gain over a window of rounds.

    gain = (acc_now - acc_window_ago) / acc_window_ago. A gain above ``grow_above`` means
    replay is still paying off: double the period (fewer uploads). A gain below
    ``shrink_below`` means the buffer has gone stale: halve it. The EcoFed code ships such
    a rule disabled; these thresholds are ours to sweep.
    """

    window: int = Field(4, ge=1)
    """rounds between the accuracies compared"""
    grow_above: float = 0.02
    """relative accuracy gain above which the period doubles"""
    shrink_below: float = 0.005
    """relative accuracy gain below which the period halves"""
    min_period: int = Field(1, ge=1)
    """smallest period"""
    max_period: int = Field(16, ge=1)
    """largest period"""


class EcoFedConfig(SplitConfigBase):
    name: Literal["ecofed"]
    """ecofed: frozen pre-trained device part, server replay buffer, quantized activations
    (Wu et al. 2024)"""
    uses_pretrained_device: ClassVar[bool] = True
    server_copies: ClassVar[Literal["none", "per_client", "shared"]] = "per_client"
    period: int = Field(2, ge=1, description="buffer-update every `period` rounds")
    adaptive: AdaptivePeriod | None = None
    """adapt the period to accuracy gains (off by default)"""
    replay: Literal["buffer", "round"] = Field(
        "buffer", description="replay clients drawn from the whole buffer, or only this "
        "round's sampled clients")
    buffer_cap_bytes: int | None = Field(None, ge=1)
    """replay buffer capacity, bytes (default: unbounded)"""
    eviction: Literal["oldest", "random"] = "oldest"
    """which entries leave a full buffer first: oldest or random"""
    activation_codec: CodecSpec = PAPER_CODEC
    """how activations are encoded on the uplink (default: 8-bit uniform, as the paper)"""
    reuse_frozen: bool = Field(True, description="compute frozen outputs once per batch "
                               "composition (simulated time is still charged every time)")
    frozen_cache_mib: float = Field(2048, gt=0)
    """memory for reused frozen-layer outputs, MiB (wall time only)"""
    lockstep: bool = False
    """per batch, wait for the server's step and its release message before the next
    batch, as the EcoFed code's devices do (default: stream, as the paper describes)"""
    release_bytes: int = Field(32, ge=1, le=2**20)
    """lockstep: payload of the release message, bytes (a short pickled message and its
    length prefix)"""
    replay_control_bytes: int = Field(0, ge=0, le=2**20)
    """replay rounds: payload of each control message the devices still exchange with the
    server per batch in the EcoFed code (0: none, as the paper describes)"""
    replay_control_messages: int = Field(3, ge=1, le=100)
    """replay rounds: control messages per batch, alternating up and down, up first"""

    @model_validator(mode="after")
    def _period_range(self) -> EcoFedConfig:
        a = self.adaptive
        if a is not None and not a.min_period <= self.period <= a.max_period:
            raise ValueError(f"period {self.period} is outside adaptive.min_period.."
                             f"max_period ({a.min_period}..{a.max_period})")
        return self

    def trains_apart(self) -> bool:
        return True  # update rounds bring each epoch back to the buffer; replays ship it


BUILT_IN_CONFIGS: tuple[type[MethodConfigBase], ...] = (
    FedAvgConfig, SplitFedConfig, SplitFedV2Config, LocalLossConfig, FedGKTConfig, EcoFedConfig)
