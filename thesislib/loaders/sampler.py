"""The one sampler every loader shares: for a seed and an epoch, the same batches in the same order.

Each epoch is a permutation drawn from ``np.random.default_rng([seed, epoch])``, cut into batches; each
batch's indices are sorted ascending, so a store reads one batch in one pass from low to high offsets
(contiguous runs stay contiguous, a memory map walks forward). The order of the batches stays shuffled.
"""

import numpy as np

from thesislib.errors import ThesisError


def check_whole(name: str, value, minimum: int) -> int:
    """``value`` as an int if it is a whole number >= ``minimum``; else a ThesisError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ThesisError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_batch_size(batch_size) -> int:
    return check_whole("batch_size", batch_size, 1)


def check_seed(seed) -> int:
    """``seed`` if it is a whole number >= 0 (what ``np.random.default_rng`` accepts)."""
    return check_whole("seed", seed, 0)


def epoch_order(num_samples: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The sample indices of one epoch in visiting order (a seeded permutation, or 0..N-1)."""
    if not shuffle:
        return np.arange(num_samples, dtype=np.int64)
    rng = np.random.default_rng([check_seed(seed), int(epoch)])
    return rng.permutation(num_samples).astype(np.int64, copy=False)


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                  drop_last: bool = False) -> list:
    """The batches of one epoch: int64 index arrays, each sorted ascending; the last may be short."""
    batch_size = check_batch_size(batch_size)
    order = epoch_order(num_samples, seed, epoch, shuffle)
    whole = num_samples - num_samples % batch_size
    batches = list(np.sort(order[:whole].reshape(-1, batch_size), axis=1))  # one sort for all full batches
    if whole < num_samples and not drop_last:
        batches.append(np.sort(order[whole:]))
    return batches


def batch_count(num_samples: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches :func:`epoch_batches` returns."""
    batch_size = check_batch_size(batch_size)
    return num_samples // batch_size if drop_last else -(-num_samples // batch_size)
