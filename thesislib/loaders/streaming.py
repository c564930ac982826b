"""What the streaming loaders (``webdataset``, ``tfdata``) share: which shards a rank and a worker read.

A streaming loader does not follow the shared sampler's batches: like its users, it reads whole shards in
a seeded shuffled order, mixes samples in a shuffle buffer and batches what comes out. The cut of an epoch
is the pure function :func:`assigned_shards` (as Mosaic Streaming's partition is one): the epoch's shard
order (the sampler's seeded generator, ``default_rng([seed, epoch])``) dealt round-robin to the ranks
(``order[rank::world_size]``, what ``webdataset.split_by_node`` and ``tf.data.Dataset.shard`` do), then
to the rank's DataLoader workers (``[worker::num_workers]``, what ``webdataset.split_by_worker`` does).
Every shard goes to exactly one (rank, worker), so every sample is read once per epoch.

With ranks, the shard counts of the stores (a multiple of 16, see :mod:`thesislib.stores.shards`) give
each rank the same number of shards when the world size divides 16; the ranks' sample counts then differ by
at most a sample per shard. Every rank knows every rank's batch count (a pure function too), and one with
fewer batches than the busiest repeats its last batch, so that DistributedDataParallel's ranks take the
same number of steps.
"""

import numpy as np

from thesislib.datasets import check_seed
from thesislib.errors import ThesisError
from thesislib.distributed import rank_and_world
from thesislib.loaders.base import Loader
from thesislib.loaders.sampler import batch_count, check_rank, check_whole
from thesislib.stores.base import damaged

SHUFFLE_BUFFER = 1000  # samples in the shuffle buffer (webdataset's and tf.data's usual size)


def buffer_seed(seed: int, epoch: int, rank: int) -> int:
    """The shuffle buffer's seed for ``epoch`` on ``rank`` (one per (seed, epoch, rank))."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The epoch's shard order: a permutation seeded by (seed, epoch), or 0..S-1 without shuffling."""
    if not shuffle:
        return np.arange(num_shards, dtype=np.int64)
    return np.random.default_rng([check_seed(seed), int(epoch)]).permutation(num_shards).astype(np.int64)


def assigned_shards(num_shards: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1, worker: int = 0,
                    num_workers: int = 1, shuffle: bool = True) -> np.ndarray:
    """The shards (indices, in reading order) that ``worker`` of ``num_workers`` on ``rank`` of ``world_size``
    reads in ``epoch``; a ThesisError if there are fewer shards than ranks (a rank would idle)."""
    check_rank(num_shards, rank, world_size, unit="shard")
    if not 0 <= worker < check_whole("num_workers", num_workers, 1):
        raise ThesisError(f"worker {worker} is not one of the {num_workers} workers")
    return shard_order(num_shards, seed, epoch, shuffle)[rank::world_size][worker::num_workers]


class StreamingLoader(Loader):
    """A loader that streams whole shards; see the module docstring. Parameters beyond the common ones (see
    :mod:`thesislib.loaders.base`): ``shuffle_buffer`` (samples mixed before batching; ignored when
    ``shuffle`` is False), ``rank`` and ``world_size`` (default: torch.distributed's, see
    :func:`thesislib.distributed.rank_and_world`). ``seed`` fixes the shard order of every epoch (with ``set_epoch``) and the
    buffer's draws. The last batch of each worker's stream may be short.

    Subclasses set :attr:`shard_sizes` (samples per shard, in shard order) and :attr:`paths` (the shard
    files) and implement
    :meth:`shard_batches`, the epoch's batches with their sample indices."""

    def __init__(self, store, split, *, shuffle_buffer=SHUFFLE_BUFFER, rank=None, world_size=None, **kwargs):
        super().__init__(store, split, **kwargs)
        self.shuffle_buffer = check_whole("shuffle_buffer", shuffle_buffer, 1)
        default_rank, default_world = rank_and_world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        self.shard_sizes = np.zeros(0, dtype=np.int64)
        self.paths = []  # the shard files, in shard order
        self.sample_log = None  # called with each batch's sample indices (the distributed sample log)

    @property
    def readers(self) -> int:
        """Processes that each read their own shards (and batch them on their own)."""
        return max(1, self.num_workers)

    def shards_of(self, worker: int = 0, num_workers: int = 1) -> np.ndarray:
        return assigned_shards(len(self.shard_sizes), self.seed, self.epoch, self.rank, self.world_size, worker,
                               num_workers, self.shuffle)

    def rank_shards(self) -> np.ndarray:
        """This rank's shards in this epoch's reading order."""
        return self.shards_of()

    @property
    def num_samples(self) -> int:
        """Samples this rank reads per epoch."""
        return int(self.shard_sizes[self.rank_shards()].sum())

    def batches_of_rank(self, rank: int) -> int:
        """Batches that ``rank`` reads in this epoch: each of its readers batches its own shards."""
        return sum(batch_count(int(self.shard_sizes[assigned_shards(
            len(self.shard_sizes), self.seed, self.epoch, rank, self.world_size, worker, self.readers,
            self.shuffle)].sum()), self.batch_size) for worker in range(self.readers))

    def __len__(self) -> int:
        """Batches per epoch on every rank: the busiest rank's count (the others pad, see :meth:`__iter__`)."""
        return max(self.batches_of_rank(rank) for rank in range(self.world_size))

    def batches(self):
        raise ThesisError(f"the {self.name} loader streams its shards: it has no sampler batches "
                          "(its samples() says which samples each batch holds)")

    def shard_batches(self):
        """Yield ``(images, labels, indices)`` for every batch of the current epoch on this rank, as the
        library reads them (see :meth:`samples`)."""
        raise NotImplementedError

    def __iter__(self):
        """The epoch's ``(images, labels)``; a rank with fewer batches than the busiest repeats its last
        batch until it has ``len(self)`` (as DistributedSampler pads), so that every rank takes as many
        steps and none waits for the others forever. ``sample_log``, when set, is called with each
        delivered batch's sample indices."""
        delivered, last = 0, None
        for images, labels, indices in self.samples():
            delivered, last = delivered + 1, (images, labels, indices)
            yield self.logged(images, labels, indices)
        while last is not None and delivered < len(self):
            delivered += 1
            yield self.logged(*last)

    def samples(self):
        """Yield ``(images, labels, indices)`` for every batch of the current epoch on this rank
        (:meth:`shard_batches`), then check that every shard of this rank gave all its samples: a shard cut
        at a member or record boundary ends early without an error from its library, and is named here."""
        bounds = np.concatenate([[0], np.cumsum(self.shard_sizes)])
        counts = np.zeros(len(self.shard_sizes), dtype=np.int64)
        for images, labels, indices in self.shard_batches():
            shard_of = np.searchsorted(bounds, np.asarray(indices), side="right") - 1
            counts += np.bincount(shard_of, minlength=len(counts))[:len(counts)]
            yield images, labels, indices
        for shard in self.rank_shards():
            if counts[shard] < self.shard_sizes[shard]:
                raise damaged(self.paths[shard], f"gave {counts[shard]} of its {self.shard_sizes[shard]} samples "
                                                 "(it ends early: truncated)")

    def logged(self, images, labels, indices) -> tuple:
        if self.sample_log is not None:
            self.sample_log(indices)
        return images, labels
