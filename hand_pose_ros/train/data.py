"""Where training batches come from: the synthetic stream rendered on the fly, or a dataset
read through ``data.datasets`` (e.g. ``freihand:PATH``), both as DataLoaders of collated
batches (``data.batch.collate_batch``) at the model's input size.

Resuming: every source is a pure function of (seed, sample index), and a run consumes
``batch_size x world_size`` samples per step, so a resumed run restarts its source at
``step x batch_size x world_size`` samples and sees exactly the samples it would have seen
(for a dataset source: given the same number of processes and DataLoader workers, which fix
its shards). A dataset is read whole by every shard, which keeps only its share: simple, and
the readers offer only sequential access.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from functools import partial

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from hand_pose_ros.data.batch import collate_batch
from hand_pose_ros.data.sample import HandSample

# Share of hand-free crops in synthetic training batches: the presence score must learn to say
# "no hand" for trackers to drop lost tracks.
NEGATIVE_FRACTION = 0.1
# Share of two-hand scenes in synthetic batches of two-hand models (the rest hold one hand, as
# InterHand2.6M's splits mix both): our choice, no paper states a mix for synthetic data.
TWO_HAND_FRACTION = 0.5
# Shuffle buffer of a dataset source (samples): datasets are read in their fixed order, one
# image at a time, so shuffling happens within a window (FreiHAND does not fit in memory).
SHUFFLE_BUFFER = 512


def resize_sample(sample: HandSample, size: int) -> HandSample:
    """The square crop ``sample`` scaled to ``size`` x ``size`` pixels (image, segmentation,
    2D joints and intrinsics; 3D labels unchanged).

    Raises:
        ValueError: the image is not square (datasets here hold hand-centred square crops).
    """
    width, height = sample.size
    if width != height:
        raise ValueError(f"sample {sample.key!r} is {width}x{height}; training needs square "
                         "hand crops")
    if width == size:
        return sample
    s = size / width
    # Pixel centres: x' = (x + 0.5) s - 0.5, as cv2.resize maps them.
    affine = np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5], [0, 0, 1]])
    interpolation = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    segmentation = (None if sample.segmentation is None else
                    cv2.resize(sample.segmentation, (size, size),
                               interpolation=cv2.INTER_NEAREST))
    return replace(
        sample,
        image=cv2.resize(sample.image, (size, size), interpolation=interpolation),
        intrinsics=affine @ sample.intrinsics,
        joints_2d=(sample.joints_2d + 0.5) * s - 0.5,
        segmentation=segmentation,
        mask=None if segmentation is None else segmentation != 0,
    )


class DatasetStream(IterableDataset):
    """Endless shuffled passes over a dataset spec (``data.datasets.open_reader``).

    Each pass reads the dataset in its fixed order; sample ``k`` of the endless sequence goes
    to shard ``k % shards`` (shards = DDP ranks x DataLoader workers) and is emitted through a
    seeded shuffle buffer. ``skip`` drops each shard's first samples (those a resumed run
    consumed already).
    """

    def __init__(self, spec: str, size: int, seed: int, skip: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle_buffer: int = SHUFFLE_BUFFER, hands: int = 1):
        super().__init__()
        from hand_pose_ros.data.datasets import open_reader

        self.reader = open_reader(spec)  # fails now, with the reader's message, on a bad spec
        if len(self.reader) == 0:
            raise ValueError(f"data spec {spec!r} holds no samples")
        self.spec, self.size, self.seed, self.skip = spec, size, seed, skip
        self.rank, self.world_size = rank, world_size
        self.shuffle_buffer = shuffle_buffer
        self.hands = hands

    def _endless(self) -> Iterator[HandSample]:
        for _ in itertools.count():
            yield from self.reader.samples()

    def __iter__(self) -> Iterator[HandSample]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        shards, shard = self.world_size * workers, self.rank * workers + worker
        rng = np.random.default_rng([self.seed, shard])
        buffer: list[HandSample] = []
        emitted = 0
        for k, sample in enumerate(self._endless()):
            if k % shards != shard:
                continue
            if sample.num_hands > self.hands:
                continue  # single-hand models train on one-hand crops
            buffer.append(sample)
            if len(buffer) < self.shuffle_buffer:
                continue
            chosen = buffer.pop(int(rng.integers(len(buffer))))
            emitted += 1
            if emitted > self.skip:
                yield resize_sample(chosen, self.size)


def training_loader(data: str, size: int, batch_size: int, seed: int, start_sample: int,
                    num_workers: int, rank: int = 0, world_size: int = 1,
                    pin_memory: bool = False, hands: int = 1) -> DataLoader:
    """Endless DataLoader of batches of ``size`` px crops (``collate_batch(..., hands)``).

    Args:
        data: "synthetic" (rendered on the fly) or a dataset spec such as ``freihand:PATH``.
        start_sample: samples the run consumed already, over all ranks (resume).
        num_workers: DataLoader worker processes (0 renders in this process).
        pin_memory: page-locked batches, for fast asynchronous copies to a GPU.
        hands: 1 for single-hand models (one-hand crops), 2 for two-hand models (crops with
            one or two hands, ``TWO_HAND_FRACTION`` of synthetic ones with two).
    """
    # The loader's own generator: creating its iterator must not draw from the global RNG,
    # or a resumed run (which restores that RNG) would diverge from an uninterrupted one.
    generator = torch.Generator().manual_seed(seed)
    if data == "synthetic":
        from hand_pose_ros.data.stream import SyntheticStream, make_loader
        from hand_pose_ros.data.synth import SynthConfig

        config = SynthConfig(size=size, two_hand_fraction=TWO_HAND_FRACTION if hands == 2
                             else 0.0)
        stream = SyntheticStream(seed, config, kind="single" if hands == 1 else "mixed",
                                 negative_fraction=NEGATIVE_FRACTION, start=start_sample,
                                 rank=rank, world_size=world_size)
        return make_loader(stream, batch_size, num_workers=num_workers, hands=hands,
                           generator=generator, pin_memory=pin_memory)
    # Each of the rank's workers (shards) consumed an equal part of the samples seen so far.
    skip = start_sample // world_size // max(num_workers, 1)
    dataset = DatasetStream(data, size, seed, skip=skip, rank=rank, world_size=world_size,
                            hands=hands)
    kwargs = {"multiprocessing_context": "spawn", "persistent_workers": True} if num_workers else {}
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                      collate_fn=partial(collate_batch, hands=hands), generator=generator,
                      pin_memory=pin_memory, **kwargs)


def eval_batches(size: int, count: int, batch_size: int = 16,
                 hands: int = 1) -> list[dict[str, torch.Tensor]]:
    """The first ``count`` crops of the fixed synthetic test split ("single" for one-hand
    models, "mixed" for two-hand ones), resized to ``size``, as collated batches (the quick
    evaluation during training)."""
    from hand_pose_ros.data.synth import test_split_samples

    kind = "single" if hands == 1 else "mixed"
    samples = [resize_sample(s, size) for s in test_split_samples(kind=kind, limit=count)]
    return [collate_batch(samples[i:i + batch_size], hands=hands)
            for i in range(0, len(samples), batch_size)]
