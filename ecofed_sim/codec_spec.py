"""A scenario's codec section, apart from the codecs themselves so that reading and
checking a scenario does not import torch (``ecofed_sim.codecs`` implements them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ecofed_sim.strict import StrictModel


class CodecSpec(StrictModel):
    """A scenario's codec section; ``kind`` picks the codec, the rest tune it."""

    kind: Literal["fp32", "fp16", "uniform", "topk"] = "fp32"
    """fp32, fp16, uniform (quantized to bits) or topk (sparsified)"""
    bits: int = Field(8, ge=2, le=8, description="uniform: bits per code")
    scheme: Literal["symmetric", "unsigned", "asymmetric"] = "symmetric"
    """uniform: symmetric, unsigned or asymmetric range"""
    granularity: Literal["tensor", "channel"] = "tensor"
    """uniform: one scale per tensor or per channel"""
    rounding: Literal["nearest", "stochastic"] = "nearest"
    """uniform: nearest or stochastic rounding"""
    fraction: float = Field(0.1, gt=0, le=1, description="topk: share of elements kept")
    index: Literal["auto", "indices", "mask"] = "auto"
    """topk: send indices, a bit mask, or whichever is smaller (auto)"""


PAPER_CODEC = CodecSpec(kind="uniform", bits=8, scheme="symmetric", granularity="tensor")
