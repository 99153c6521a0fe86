"""Randomness keyed by (seed, stream, round, client), as FedJAX does: every draw can be
reproduced on its own, whatever ran before it, on any executor."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

(INIT, SAMPLING, DATA_ORDER, BINDING, PUBLIC, CODEC, REPLAY, PRETRAIN, JITTER,
 AVAILABILITY, CHURN, AUGMENT, ASYNC_SAMPLING, LOSS) = range(1, 15)


def key(seed: int, stream: int, *parts: int) -> int:
    """A 63-bit seed derived from the scenario seed, a stream id and indices."""
    words = np.random.SeedSequence([seed, stream, *parts]).generate_state(2, dtype=np.uint32)
    return int((int(words[0]) << 31) ^ int(words[1])) & ((1 << 63) - 1)


def torch_gen(seed: int, stream: int, *parts: int) -> torch.Generator:
    import torch  # here, so that checking a scenario does not import torch

    return torch.Generator().manual_seed(key(seed, stream, *parts))


def np_rng(seed: int, stream: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng(key(seed, stream, *parts))
