"""Activation and gradient codecs: what a tensor costs on the wire and what arrives.

``encode`` returns the decoded tensor (what the receiver trains on), the exact payload
bytes (codes bit-packed, plus every scale, zero point and index), and a compact stored form
(what EcoFed's server-side replay buffer keeps). The EcoFed paper's scheme (Wu et al. 2024,
section on quantization) is ``uniform``, 8 bits, ``symmetric``, one scale per batch tensor
(scale = max / 127, zero point 0). Activations after ReLU or max-pool are non-negative, so
``unsigned`` spends all 2^bits codes on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ecofed_sim.codec_spec import PAPER_CODEC, CodecSpec  # noqa: F401 - re-exported

SCALE_BYTES = 4  # scales and zero points travel as fp32
INDEX_BYTES = 4  # top-k indices travel as int32


@dataclass(frozen=True)
class Stored:
    """The wire form of one tensor, kept compactly (e.g. in a replay buffer)."""

    packed: np.ndarray | torch.Tensor  # bit-packed codes, or the raw tensor for fp codecs
    params: torch.Tensor | None  # scales (and zero points), fp32
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class Encoded:
    decoded: torch.Tensor
    payload_bytes: int
    stored: Stored


def pack_bits(codes: torch.Tensor, bits: int) -> np.ndarray:
    """Pack unsigned codes (< 2**bits) into a dense bit stream: numel*bits/8 bytes, rounded up.
    Codes with a shape and no data (``meta``: a timing-only run) give a stream of that
    size, all zeros."""
    if codes.is_meta:
        return np.zeros(math.ceil(codes.numel() * bits / 8), dtype=np.uint8)
    flat = codes.reshape(-1).to("cpu", torch.uint8).numpy()  # the wire is host memory
    if bits == 8:
        return flat.copy()
    planes = np.unpackbits(flat[:, None], axis=1)[:, 8 - bits:]
    return np.packbits(planes.reshape(-1))


def unpack_bits(packed: np.ndarray, bits: int, numel: int) -> torch.Tensor:
    if bits == 8:
        return torch.from_numpy(packed.copy())
    planes = np.unpackbits(packed)[: numel * bits].reshape(numel, bits)
    full = np.zeros((numel, 8), dtype=np.uint8)
    full[:, 8 - bits:] = planes
    return torch.from_numpy(np.packbits(full, axis=1).reshape(-1))


def _groups(x: torch.Tensor, granularity: str) -> torch.Tensor:
    """x viewed as [groups, elements]: one group per tensor, or per channel (dim 1)."""
    if granularity == "channel" and x.dim() >= 2:
        return x.transpose(0, 1).reshape(x.shape[1], -1)
    return x.reshape(1, -1)


def _ungroup(g: torch.Tensor, shape: tuple[int, ...], granularity: str) -> torch.Tensor:
    if granularity == "channel" and len(shape) >= 2:
        moved = (shape[1], shape[0], *shape[2:])
        return g.reshape(moved).transpose(0, 1).contiguous()
    return g.reshape(shape)


_META_ENCODED: dict[tuple, Encoded] = {}


class Codec:
    """What every codec shares: on a tensor with a shape and no data (``meta``: a
    timing-only round, or one played for worker processes), the encoding depends on the
    shape alone, so it is worked out once per shape and reused. PyTorch would otherwise
    work out each quantizer op's meta result in Python, op by op (nearly half of such an
    EcoFed round). The decoded tensor is new on every call; the stored form is shared
    (it has no data to change)."""

    key: object  # what the encoding depends on besides the shape

    def encode(self, x: torch.Tensor, gen: torch.Generator | None = None) -> Encoded:
        if not x.is_meta:
            return self._encode(x, gen)
        memo = (type(self), self.key, tuple(x.shape), x.dtype)
        done = _META_ENCODED.get(memo)
        if done is None:
            done = _META_ENCODED[memo] = self._encode(x.detach(), gen)
        decoded = torch.empty(done.decoded.shape, dtype=done.decoded.dtype, device=x.device)
        return Encoded(decoded, done.payload_bytes, done.stored)

    def decode(self, stored: Stored) -> torch.Tensor:
        wire = stored.packed if stored.params is None else stored.params
        if isinstance(wire, torch.Tensor) and wire.is_meta:
            return torch.empty(stored.shape, device=wire.device)  # every codec decodes fp32
        return self._decode(stored)

    def _encode(self, x: torch.Tensor, gen: torch.Generator | None) -> Encoded:
        raise NotImplementedError

    def _decode(self, stored: Stored) -> torch.Tensor:
        raise NotImplementedError


class UniformCodec(Codec):
    """Uniform quantization: q = round(x / scale) + zero_point, per tensor or channel."""

    def __init__(self, spec: CodecSpec) -> None:
        self.spec = self.key = spec
        b = spec.bits
        self.q_min, self.q_max = ((-(2 ** (b - 1) - 1), 2 ** (b - 1) - 1)
                                  if spec.scheme == "symmetric" else (0, 2**b - 1))

    def _params(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero_point) per group; a group of zeros gets scale 1 (codes all 0)."""
        if self.spec.scheme == "asymmetric":
            lo, hi = g.amin(1).clamp(max=0), g.amax(1).clamp(min=0)
            scale = (hi - lo) / self.q_max
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            return scale, torch.round(-lo / scale)
        top = g.abs().amax(1) if self.spec.scheme == "symmetric" else g.amax(1).clamp(min=0)
        scale = top / self.q_max
        return torch.where(scale > 0, scale, torch.ones_like(scale)), torch.zeros_like(scale)

    def _encode(self, x: torch.Tensor, gen: torch.Generator | None = None) -> Encoded:
        x = x.detach().float()
        g = _groups(x, self.spec.granularity)
        scale, zero = self._params(g)
        scaled = g / scale[:, None] + zero[:, None]
        if self.spec.rounding == "stochastic":
            noise = torch.rand(scaled.shape, generator=gen)  # drawn on the CPU: same
            q = torch.floor(scaled + noise.to(scaled.device))  # draws on every device
        else:
            q = torch.round(scaled)
        q = q.clamp(self.q_min, self.q_max)
        decoded = _ungroup((q - zero[:, None]) * scale[:, None], tuple(x.shape),
                           self.spec.granularity)
        packed = pack_bits((q - self.q_min).to(torch.uint8), self.spec.bits)
        n_params = scale.numel() * (2 if self.spec.scheme == "asymmetric" else 1)
        params = torch.cat([scale, zero]) if self.spec.scheme == "asymmetric" else scale
        nbytes = packed.nbytes + n_params * SCALE_BYTES
        return Encoded(decoded, nbytes, Stored(packed, params.clone(), tuple(x.shape), nbytes))

    def _decode(self, stored: Stored) -> torch.Tensor:
        numel = math.prod(stored.shape)
        device = stored.params.device  # where the encoder ran
        q = unpack_bits(stored.packed, self.spec.bits, numel).to(device).float() + self.q_min
        groups = stored.params.numel() // (2 if self.spec.scheme == "asymmetric" else 1)
        scale = stored.params[:groups]
        zero = (stored.params[groups:] if self.spec.scheme == "asymmetric"
                else torch.zeros(groups, device=device))
        g = q.reshape(groups, -1)
        return _ungroup((g - zero[:, None]) * scale[:, None], stored.shape, self.spec.granularity)


class FloatCodec(Codec):
    """fp32 (identity) or fp16 (half precision on the wire)."""

    def __init__(self, spec: CodecSpec) -> None:
        self.dtype = self.key = torch.float16 if spec.kind == "fp16" else torch.float32

    def _encode(self, x: torch.Tensor, gen: torch.Generator | None = None) -> Encoded:
        wire = x.detach().to(self.dtype)
        nbytes = wire.numel() * wire.element_size()
        return Encoded(wire.float(), nbytes, Stored(wire.clone(), None, tuple(x.shape), nbytes))

    def _decode(self, stored: Stored) -> torch.Tensor:
        return stored.packed.float()


class TopKCodec(Codec):
    """Keep the ``fraction`` largest-magnitude elements (fp32 values) plus their positions,
    sent as int32 indices or a bitmask, whichever ``index`` says (``auto``: the cheaper)."""

    def __init__(self, spec: CodecSpec) -> None:
        self.spec = self.key = spec

    def index_kind(self, numel: int, k: int) -> str:
        if self.spec.index != "auto":
            return self.spec.index
        return "indices" if k * INDEX_BYTES <= math.ceil(numel / 8) else "mask"

    def _encode(self, x: torch.Tensor, gen: torch.Generator | None = None) -> Encoded:
        flat = x.detach().float().reshape(-1)
        k = max(1, math.ceil(self.spec.fraction * flat.numel()))
        idx = flat.abs().topk(k, sorted=False).indices.sort().values
        values = flat[idx]
        decoded = torch.zeros_like(flat).index_copy_(0, idx, values).reshape(x.shape)
        kind = self.index_kind(flat.numel(), k)
        index_bytes = k * INDEX_BYTES if kind == "indices" else math.ceil(flat.numel() / 8)
        nbytes = k * 4 + index_bytes
        stored = Stored(torch.stack([idx.float(), values]), None, tuple(x.shape), nbytes)
        return Encoded(decoded, nbytes, stored)

    def _decode(self, stored: Stored) -> torch.Tensor:
        idx, values = stored.packed[0].long(), stored.packed[1]
        flat = torch.zeros(math.prod(stored.shape), device=values.device).index_copy_(
            0, idx, values)
        return flat.reshape(stored.shape)


def make_codec(spec: CodecSpec) -> UniformCodec | FloatCodec | TopKCodec:
    if spec.kind == "uniform":
        return UniformCodec(spec)
    if spec.kind == "topk":
        return TopKCodec(spec)
    return FloatCodec(spec)


def payload_bytes_for(spec: CodecSpec, shape: tuple[int, ...]) -> int:
    """Payload bytes of one tensor of ``shape`` under ``spec``, without real data: every
    codec's size depends only on the shape (encoding a tensor with a shape and no data,
    ``meta``, gives it exactly)."""
    return make_codec(spec).encode(torch.empty(shape, device="meta")).payload_bytes
