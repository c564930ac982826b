"""The one sampler every loader shares: for a seed and an epoch, the same batches in the same order.

Each epoch is a permutation drawn from ``np.random.default_rng([seed, epoch])``, cut into batches; each
batch's indices are sorted ascending, so a store reads one batch in one pass from low to high offsets
(contiguous runs stay contiguous, a memory map walks forward). The order of the batches stays shuffled.

Across ``world_size`` ranks (``torchrun``) the epoch is shared out as ``torch.utils.data.DistributedSampler``
shares it: the visiting order is padded to a multiple of ``world_size`` by repeating its first samples, and
rank ``r`` takes every ``world_size``-th sample from position ``r`` (``order[r::world_size]``, the strided
split, not contiguous blocks). So every rank gets the same number of samples and batches (DDP needs the
ranks in step), the ranks' samples are disjoint but for the padding, and together they cover the epoch.
Each rank then cuts its share into batches as a single process cuts the whole order; with
``world_size=1`` that is exactly the single-process batches.
"""

import numpy as np

from thesislib.datasets import check_seed
from thesislib.errors import ThesisError


def check_whole(name: str, value, minimum: int) -> int:
    """``value`` as an int if it is a whole number >= ``minimum``; else a ThesisError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ThesisError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_batch_size(batch_size) -> int:
    return check_whole("batch_size", batch_size, 1)


def epoch_order(num_samples: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The sample indices of one epoch in visiting order (a seeded permutation, or 0..N-1)."""
    if not shuffle:
        return np.arange(num_samples, dtype=np.int64)
    rng = np.random.default_rng([check_seed(seed), int(epoch)])
    return rng.permutation(num_samples).astype(np.int64, copy=False)


def check_rank(count: int, rank, world_size, unit: str = "sample") -> tuple:
    """(rank, world_size) checked: 0 <= rank < world_size <= ``count`` (a rank beyond the ``count``
    samples, or shards for the streaming loaders: ``unit``, would read nothing of its own); else a
    ThesisError naming the fix."""
    world_size = check_whole("world_size", world_size, 1)
    rank = check_whole("rank", rank, 0)
    if rank >= world_size:
        raise ThesisError(f"rank {rank} is not below the world size {world_size}: ranks run from 0 to "
                          f"{world_size - 1}")
    if world_size > count:
        raise ThesisError(f"{world_size} ranks for {count} {unit}(s): a rank would get no {unit} of its "
                          f"own; run at most {count} rank(s) (torchrun --nproc-per-node, --nnodes) "
                          "or prepare a larger --scale")
    return rank, world_size


def rank_share(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s part of an epoch's visiting ``order``, as DistributedSampler takes it: ``order``
    padded to a multiple of ``world_size`` by repeating it from the start, then every ``world_size``-th
    sample from position ``rank``."""
    rank, world_size = check_rank(len(order), rank, world_size)
    padded = np.resize(order, -(-len(order) // world_size) * world_size)  # np.resize repeats from the start
    return padded[rank::world_size]


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                  drop_last: bool = False, rank: int = 0, world_size: int = 1) -> list:
    """The batches of one epoch on rank ``rank`` of ``world_size`` (see the module docstring): int64
    index arrays, each sorted ascending; the last may be short (``drop_last``: left out)."""
    batch_size = check_batch_size(batch_size)
    order = epoch_order(num_samples, seed, epoch, shuffle)
    if world_size != 1 or rank != 0:
        order = rank_share(order, rank, world_size)
    num_samples = len(order)
    whole = num_samples - num_samples % batch_size
    batches = list(np.sort(order[:whole].reshape(-1, batch_size), axis=1))  # one sort for all full batches
    if whole < num_samples and not drop_last:
        batches.append(np.sort(order[whole:]))
    return batches


def rank_samples(num_samples: int, world_size: int = 1) -> int:
    """How many samples (padding included) each of ``world_size`` ranks gets per epoch."""
    return -(-num_samples // check_whole("world_size", world_size, 1))


def batch_count(num_samples: int, batch_size: int, drop_last: bool = False, world_size: int = 1) -> int:
    """How many batches :func:`epoch_batches` returns (on each rank of ``world_size``)."""
    batch_size = check_batch_size(batch_size)
    num_samples = rank_samples(num_samples, world_size)
    return num_samples // batch_size if drop_last else -(-num_samples // batch_size)
