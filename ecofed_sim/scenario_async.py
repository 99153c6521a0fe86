"""The ``asynchronous`` section of a scenario: FedAsync and FedBuff (see
``ecofed_sim.aggregation.asynchronous`` for the rules and their papers)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat

from ecofed_sim.strict import StrictModel

ASYNC_METHODS = ("fedavg", "splitfed_v2", "local_loss", "ecofed")  # with an async mode


class AsyncSpec(StrictModel):
    """Asynchronous FL: ``concurrency`` clients train at once, each from the global model
    as it was when it started; a finished client is replaced at once by a newly sampled
    one. The scenario's ``rounds`` counts server updates (one row each in rounds.csv)."""

    aggregator: Literal["fedasync", "fedbuff"] = "fedbuff"
    """fedasync: mix every arriving model into the global one (Xie et al. 2019); fedbuff:
    apply the mean of every ``buffer_size`` arriving deltas (Nguyen et al. 2022)"""
    concurrency: int | None = Field(None, ge=1, le=10_000_000)
    """clients training at once (default: population.clients_per_round)"""
    buffer_size: int = Field(10, ge=1, le=10_000_000)
    """fedbuff: updates per server update (K; the FedBuff paper's default is 10)"""
    server_lr: PositiveFloat = 1.0
    """fedbuff: the server learning rate applied to the buffer's mean delta"""
    mixing: float = Field(0.6, gt=0, le=1)
    """fedasync: the mixing weight alpha before the staleness factor"""
    staleness: Literal["constant", "polynomial", "hinge"] = "polynomial"
    """how an update's weight falls with its staleness s (server versions between its pull
    and its push): constant 1; polynomial (s + 1)^-a; hinge 1 up to b, then
    1 / (a (s - b) + 1)"""
    staleness_a: PositiveFloat = 0.5
    """a of the polynomial and hinge functions (0.5: FedBuff's 1 / sqrt(1 + s))"""
    staleness_b: int = Field(4, ge=0)
    """b of the hinge function: updates up to b versions stale count fully"""
    weighting: Literal["samples", "uniform"] = "samples"
    """fedbuff: weight each delta by its client's sample count (as FedAvg does) or equally
    (the FedBuff paper's plain mean)"""
    until_s: PositiveFloat | None = None
    """also stop at this simulated time, with fewer server updates than ``rounds`` if
    need be; clients still training then are not counted"""
