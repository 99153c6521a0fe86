"""Partitioners: which training samples each logical client holds.

- ``iid``: a seeded permutation dealt in equal parts.
- ``shards``: the EcoFed / FedAvg (McMahan et al. 2017) scheme: sort by label, cut into
  shards of ``shard_size`` consecutive samples, deal ``shards_per_client`` at random, so a
  client sees at most that many classes. With ``sort_by_label: false`` it is the paper's IID.
- ``dirichlet``: per class, proportions drawn from Dirichlet(alpha) over clients
  (Hsu et al. 2019); small alpha = strongly skewed labels. As common partitioners do
  (e.g. NIID-Bench, Li et al. 2022), the draw is repeated until every client holds at
  least ``min_samples``. With ``samples_per_client`` the pool is a seeded random
  ``clients x samples_per_client`` of the training set, so that is the mean client size.

Pure functions of (labels, clients, parameters, seed): tested without any simulation.
"""

from __future__ import annotations

import numpy as np


def iid(n_samples: int, clients: int, per_client: int, rng: np.random.Generator) -> list:
    order = rng.permutation(n_samples)[: clients * per_client]
    return [order[i * per_client:(i + 1) * per_client] for i in range(clients)]


def shards(labels: np.ndarray, clients: int, per_client: int, shard_size: int,
           sort_by_label: bool, rng: np.random.Generator) -> list:
    if per_client % shard_size:
        raise ValueError(f"samples per client ({per_client}) is not a multiple of "
                         f"shard_size ({shard_size})")
    per = per_client // shard_size
    order = np.argsort(labels, kind="stable") if sort_by_label else np.arange(len(labels))
    n_shards = clients * per
    shard_ids = rng.permutation(len(labels) // shard_size)[:n_shards]
    out = []
    for c in range(clients):
        mine = shard_ids[c * per:(c + 1) * per]
        out.append(np.concatenate([order[s * shard_size:(s + 1) * shard_size] for s in mine]))
    return out


DIRICHLET_TRIES = 1000


def dirichlet(labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator,
              min_samples: int = 1, pool: np.ndarray | None = None) -> list:
    """Label-skewed parts of ``pool`` (default: every sample), each of at least
    ``min_samples``; redrawn until that holds (ValueError after ``DIRICHLET_TRIES``)."""
    pool = np.arange(len(labels)) if pool is None else pool
    if min_samples * clients > len(pool):
        raise ValueError(f"{clients} clients x min_samples {min_samples} exceeds the "
                         f"{len(pool)} samples to partition")
    classes = [pool[labels[pool] == cls] for cls in np.unique(labels[pool])]
    for _ in range(DIRICHLET_TRIES):
        parts: list[list[int]] = [[] for _ in range(clients)]
        for members in classes:
            idx = rng.permutation(members)
            cuts = (np.cumsum(rng.dirichlet([alpha] * clients)) * len(idx)).astype(int)[:-1]
            for c, chunk in enumerate(np.split(idx, cuts)):
                parts[c].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_samples:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ValueError(f"no Dirichlet(alpha={alpha:g}) draw in {DIRICHLET_TRIES} gave every "
                     f"one of {clients} clients at least {min_samples} samples; raise alpha "
                     "or lower min_samples")


def partition(labels: np.ndarray, clients: int, spec, seed: int) -> list[np.ndarray]:
    """Client index arrays for a scenario's ``data.partition`` section."""
    rng = np.random.default_rng([seed, 0xDA7A])
    per_client = spec.samples_per_client or len(labels) // clients
    if per_client * clients > len(labels):
        raise ValueError(f"{clients} clients x {per_client} samples exceeds the "
                         f"{len(labels)} training samples")
    if per_client < 1:
        raise ValueError(f"{len(labels)} training samples cannot give each of {clients} "
                         "clients one")
    if spec.kind == "iid":
        return iid(len(labels), clients, per_client, rng)
    if spec.kind == "shards":
        if per_client < spec.shard_size:
            raise ValueError(f"samples per client ({per_client}) is below shard_size "
                             f"({spec.shard_size})")
        return shards(labels, clients, per_client, spec.shard_size, spec.sort_by_label, rng)
    pool = (rng.permutation(len(labels))[: clients * per_client]
            if spec.samples_per_client else None)
    return dirichlet(labels, clients, spec.alpha, rng, spec.min_samples, pool)
