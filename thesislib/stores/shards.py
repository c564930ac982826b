"""What the sharded stores (``tfrecord``, ``webdataset``) share: the JPEG bytes of ``files-jpeg`` and the
cut of a split into shards.

Both stores hold, for every sample, exactly the bytes ``files-jpeg`` holds
(:func:`thesislib.stores.imagefiles.encode` with the ``jpeg`` codec), so the JPEG loaders decode the same
pixels from any of the three. A split is cut into
shards of consecutive samples (sample ``i`` lives in the shard whose range holds ``i``) of about
:data:`SHARD_BYTES` each; a split with enough samples gets at least :data:`MIN_SHARDS` shards, and the count
is a multiple of it, so that 2 ranks x 8 workers (or any world size dividing it) each get the same number
of whole shards, the unit a streaming reader hands out.
"""

import hashlib
import math

import numpy as np

from thesislib.stores.base import damaged
from thesislib.stores.imagefiles import chunk_size, encode
from thesislib.stores.pool import encoding_pool, map_ordered

SHARD_BYTES = 100 * 2**20   # target shard size
MIN_SHARDS = 16             # shards per split (a multiple of this), when the split has that many samples
CHUNK = 256                 # images per task handed to an encoding process


def shard_count(num_samples: int, estimated_bytes: float) -> int:
    """How many shards a split of ``num_samples`` samples taking about ``estimated_bytes`` is cut into."""
    if num_samples <= MIN_SHARDS:
        return max(1, num_samples)
    wanted = max(1, math.ceil(estimated_bytes / SHARD_BYTES))
    return min(num_samples, MIN_SHARDS * math.ceil(wanted / MIN_SHARDS))


def shard_bounds(num_samples: int, num_shards: int) -> np.ndarray:
    """The first sample of each shard and, last, ``num_samples``: near-equal runs of consecutive samples."""
    return np.linspace(0, num_samples, num_shards + 1).round().astype(np.int64)


def _encode_chunk(images) -> list:
    return [encode(image, "jpeg") for image in images]


def jpeg_bytes(images):
    """Yield each image's ``files-jpeg`` bytes in index order, encoded by a few processes."""
    step = min(CHUNK, chunk_size(images))
    chunks = (images[start:start + step] for start in range(0, len(images), step))
    with encoding_pool() as pool:  # Ctrl-C: workers ignore it, the parent cancels (see stores/pool.py)
        for encoded in map_ordered(pool, _encode_chunk, chunks):
            yield from encoded


class JpegDigest:
    """The SHA-256 of the samples' JPEG digests in index order: ``files-jpeg``'s ``files_sha256``, so the
    manifests show that a sharded store holds the same bytes."""

    def __init__(self):
        self.total = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.total.update(hashlib.sha256(data).digest())

    def hexdigest(self) -> str:
        return self.total.hexdigest()


def estimate_bytes(images, overhead: int) -> float:
    """About how many bytes the split's JPEGs take in shards, each with ``overhead`` bytes of framing,
    from the mean size of its first few images."""
    head = _encode_chunk(images[:64])
    return (sum(map(len, head)) / len(head) + overhead) * len(images)


def check_shards(paths, what: str) -> None:
    """A ThesisError (:func:`damaged`) naming the first of a split's shard files that is missing."""
    for path in paths:
        if not path.is_file():
            raise damaged(path, f"is missing ({what})")
