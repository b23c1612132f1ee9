"""Synthetic samples streamed into a training loop (torch ``IterableDataset``).

Sample ``i`` is ``synth.synthetic_sample(seed, i, config, kind, negative_fraction)`` whatever
process renders it: the stream deals indices round-robin over DDP ranks and DataLoader
workers (shard ``rank * num_workers + worker`` of ``world_size * num_workers`` takes indices
``start + shard``, ``start + shard + shards``, ...). A DataLoader reads its workers in turn,
so with a fixed worker count the batch order is reproducible too.

Rendering needs one OpenGL context per process, and Mesa's context does not survive fork():
use ``make_loader``, which starts workers with "spawn" (or render in the main process with
``num_workers=0``).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from hand_pose_ros.data.batch import collate_batch
from hand_pose_ros.data.sample import HandSample
from hand_pose_ros.data.synth import SCENE_KINDS, SynthConfig, synthetic_sample


class SyntheticStream(IterableDataset):
    """Yields ``HandSample`` crops of a seeded synthetic stream.

    Args:
        seed: the stream; (seed, index) fixes a sample.
        config: what scenes hold (crop size, priors, corruption).
        kind: "single" (one hand per crop), "two" (two interacting hands) or "mixed"
            (two hands with probability ``config.two_hand_fraction``).
        negative_fraction: share of hand-free crops (no hand, empty labels), in [0, 1).
        start: first index (resume a run at ``start`` = samples already consumed).
        count: number of indices from ``start``; None streams for ever.
        rank, world_size: this DDP process and their count; None reads them from
            ``torch.distributed`` when it is initialised, else a single process.
    """

    def __init__(self, seed: int, config: SynthConfig | None = None, kind: str = "single",
                 negative_fraction: float = 0.0, start: int = 0, count: int | None = None,
                 rank: int | None = None, world_size: int | None = None) -> None:
        super().__init__()
        if kind not in SCENE_KINDS:
            raise ValueError(f"kind must be one of {SCENE_KINDS}, got {kind!r}")
        if not 0.0 <= negative_fraction < 1.0:
            raise ValueError(f"negative_fraction must be in [0, 1), got {negative_fraction}")
        if start < 0 or (count is not None and count < 0):
            raise ValueError(f"start and count must be >= 0, got {start} and {count}")
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        if rank is None and torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        rank, world_size = (0, 1) if rank is None else (rank, world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, "
                             f"world_size {world_size}")
        self.seed, self.config, self.kind = seed, config or SynthConfig(), kind
        self.negative_fraction = negative_fraction
        self.start, self.count = start, count
        self.rank, self.world_size = rank, world_size

    def sample(self, index: int) -> HandSample:
        """Sample ``index`` of this stream (the same in every process)."""
        return synthetic_sample(self.seed, index, self.config, self.kind, self.negative_fraction)

    def indices(self, worker: int = 0, num_workers: int = 1) -> range:
        """Indices that DataLoader worker ``worker`` of ``num_workers`` on this rank renders."""
        shards = self.world_size * num_workers
        shard = self.rank * num_workers + worker
        stop = self.start + self.count if self.count is not None else 2**62
        return range(self.start + shard, stop, shards)

    def __iter__(self) -> Iterator[HandSample]:
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        for index in self.indices(worker, num_workers):
            yield self.sample(index)


def make_loader(stream: SyntheticStream, batch_size: int, num_workers: int = 2,
                hands: int = 1, **loader_kwargs) -> DataLoader:
    """A DataLoader of collated batches (``batch.collate_batch``) from ``stream``, its workers
    started with "spawn" (each makes its own OpenGL context). ``hands``: 1 or 2, the batch
    layout. Extra keyword arguments go to ``DataLoader`` (e.g. ``pin_memory``)."""
    if num_workers > 0:
        loader_kwargs.setdefault("multiprocessing_context", "spawn")
        loader_kwargs.setdefault("persistent_workers", True)
    return DataLoader(stream, batch_size=batch_size, num_workers=num_workers,
                      collate_fn=partial(collate_batch, hands=hands), **loader_kwargs)
