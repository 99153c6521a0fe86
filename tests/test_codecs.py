"""Codec round trips, exact payload bytes and unbiased stochastic rounding."""

from __future__ import annotations

import math

import pytest
import torch

from ecofed_sim.codecs import CodecSpec, make_codec, pack_bits, payload_bytes_for, unpack_bits

X = torch.relu(torch.randn(10, 16, 8, 8, generator=torch.Generator().manual_seed(0)))
SIGNED = torch.randn(10, 16, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("bits", range(2, 9))
def test_bit_packing_round_trip_and_size(bits):
    codes = torch.randint(0, 2**bits, (1001,), generator=torch.Generator().manual_seed(bits))
    packed = pack_bits(codes, bits)
    assert packed.nbytes == math.ceil(1001 * bits / 8)
    assert torch.equal(unpack_bits(packed, bits, 1001), codes.to(torch.uint8))


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("scheme, x", [("symmetric", SIGNED), ("unsigned", X),
                                       ("asymmetric", SIGNED)])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_uniform_error_bound_and_bytes(bits, scheme, x, granularity):
    codec = make_codec(CodecSpec(kind="uniform", bits=bits, scheme=scheme,
                                 granularity=granularity))
    enc = codec.encode(x)
    groups = 16 if granularity == "channel" else 1
    if scheme == "symmetric":
        top = x.abs().transpose(0, 1).reshape(16, -1).amax(1) if groups == 16 else x.abs().max()
        step = top / (2 ** (bits - 1) - 1)
    elif scheme == "unsigned":
        top = x.transpose(0, 1).reshape(16, -1).amax(1) if groups == 16 else x.max()
        step = top / (2**bits - 1)
    else:
        g = x.transpose(0, 1).reshape(16, -1) if groups == 16 else x.reshape(1, -1)
        step = (g.amax(1).clamp(min=0) - g.amin(1).clamp(max=0)) / (2**bits - 1)
    err = (enc.decoded - x).abs()
    if groups == 16:
        err = err.transpose(0, 1).reshape(16, -1).amax(1)
    else:
        err = err.max()
    assert (err <= step / 2 * (1 + 1e-5) + 1e-7).all()
    params = groups * (2 if scheme == "asymmetric" else 1)
    assert enc.payload_bytes == math.ceil(x.numel() * bits / 8) + 4 * params
    torch.testing.assert_close(codec.decode(enc.stored), enc.decoded)


def test_paper_scheme_is_max_over_127():
    enc = make_codec(CodecSpec(kind="uniform")).encode(X)
    scale = X.max() / 127
    torch.testing.assert_close(enc.decoded, torch.round(X / scale) * scale)
    assert enc.payload_bytes == X.numel() + 4


def test_four_bit_codes_cost_half_a_byte():
    enc = make_codec(CodecSpec(kind="uniform", bits=4, scheme="unsigned")).encode(X)
    assert enc.payload_bytes == X.numel() // 2 + 4


def test_stochastic_rounding_is_unbiased():
    codec = make_codec(CodecSpec(kind="uniform", bits=2, scheme="unsigned",
                                 rounding="stochastic"))
    x = torch.tensor([[0.0, 0.1, 0.5, 1.0, 2.9, 3.0]])
    gen = torch.Generator().manual_seed(0)
    mean = torch.stack([codec.encode(x, gen).decoded for _ in range(4000)]).mean(0)
    torch.testing.assert_close(mean, x, atol=0.03, rtol=0)
    nearest = make_codec(CodecSpec(kind="uniform", bits=2, scheme="unsigned")).encode(x)
    assert (nearest.decoded - x).abs().max() > 0.09  # nearest rounding is biased here


@pytest.mark.parametrize("spec", [CodecSpec(kind="uniform"), CodecSpec(kind="uniform",
                                  scheme="asymmetric", granularity="channel"),
                                  CodecSpec(kind="topk"), CodecSpec(kind="fp16")])
def test_all_zero_batch_does_not_crash(spec):
    enc = make_codec(spec).encode(torch.zeros(4, 3, 2, 2))
    assert torch.equal(enc.decoded, torch.zeros(4, 3, 2, 2))


def test_fp16_and_fp32_bytes():
    assert make_codec(CodecSpec(kind="fp32")).encode(X).payload_bytes == X.numel() * 4
    enc = make_codec(CodecSpec(kind="fp16")).encode(X)
    assert enc.payload_bytes == X.numel() * 2
    torch.testing.assert_close(enc.decoded, X.half().float())


@pytest.mark.parametrize("index, fraction", [("indices", 0.01), ("mask", 0.01),
                                             ("auto", 0.01), ("auto", 0.5)])
def test_topk_keeps_largest_and_counts_positions(index, fraction):
    codec = make_codec(CodecSpec(kind="topk", fraction=fraction, index=index))
    enc = codec.encode(SIGNED)
    n = SIGNED.numel()
    k = math.ceil(fraction * n)
    kind = index if index != "auto" else ("indices" if 4 * k <= n / 8 else "mask")
    assert enc.payload_bytes == 4 * k + (4 * k if kind == "indices" else math.ceil(n / 8))
    kept = enc.decoded != 0
    assert int(kept.sum()) == k
    assert SIGNED[kept].abs().min() >= SIGNED[~kept].abs().max()
    torch.testing.assert_close(codec.decode(enc.stored), enc.decoded)


@pytest.mark.parametrize("bits", range(2, 8))
def test_codes_that_do_not_fill_whole_bytes_round_up(bits):
    """3 x 7 x 11 = 231 codes: 231 x bits is a whole number of bytes for no bits < 8, so a
    size rounded down (or from numel x bits // 8) would be one byte short."""
    shape = (3, 7, 11)
    assert 231 * bits % 8
    spec = CodecSpec(kind="uniform", bits=bits, scheme="symmetric")
    expected = -(-231 * bits // 8) + 4  # ceil, plus one fp32 scale
    x = torch.linspace(-1, 1, 231).reshape(shape)
    assert make_codec(spec).encode(x).payload_bytes == expected
    assert payload_bytes_for(spec, shape) == expected


def test_stochastic_rounding_draws_from_the_generator_it_is_given():
    """The same keyed generator gives the same codes; another seed other codes (the
    global RNG is never used, so runs repeat whatever else drew from it)."""
    codec = make_codec(CodecSpec(kind="uniform", bits=4, rounding="stochastic"))
    x = torch.linspace(-1, 1, 1000)

    def codes(seed, global_seed):
        torch.manual_seed(global_seed)  # the global RNG's state must not matter
        return codec.encode(x, torch.Generator().manual_seed(seed)).decoded

    assert torch.equal(codes(0, global_seed=1), codes(0, global_seed=2))
    assert not torch.equal(codes(0, global_seed=1), codes(1, global_seed=1))


@pytest.mark.parametrize("spec", [
    CodecSpec(kind="uniform", bits=b, scheme=s, granularity=g)
    for b in (2, 3, 8) for s in ("symmetric", "asymmetric") for g in ("tensor", "channel")
] + [CodecSpec(kind="topk", fraction=0.05), CodecSpec(kind="fp16"), CodecSpec()])
def test_a_tensor_without_data_costs_what_the_real_one_costs(spec):
    """Timing-only runs encode ``meta`` tensors (shapes, no data): same payload bytes."""
    real = torch.randn(5, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    codec = make_codec(spec)
    shaped = codec.encode(real.to("meta"), torch.Generator().manual_seed(1))
    assert shaped.payload_bytes == codec.encode(real, torch.Generator().manual_seed(1)
                                                ).payload_bytes
    assert shaped.decoded.shape == real.shape and shaped.decoded.is_meta
    again = codec.encode(real.to("meta").requires_grad_(True))  # from the shape memo
    assert again.payload_bytes == shaped.payload_bytes
    assert again.stored.nbytes == codec.encode(real).stored.nbytes
    assert again.decoded is not shaped.decoded and not again.decoded.requires_grad
    back = codec.decode(again.stored)
    assert back.is_meta and back.shape == real.shape
    assert back.dtype == codec.decode(codec.encode(real).stored).dtype
