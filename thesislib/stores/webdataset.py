"""``webdataset``: tar shards ``<split>-%06d.tar`` of ``<index:06d>.jpg`` (the ``files-jpeg`` bytes) and
``<index:06d>.cls`` (the label as decimal text), written with the ``webdataset`` library's ``TarWriter``.

Shards hold consecutive samples (see :mod:`thesislib.stores.shards` for their size and count); member
times are fixed, so the same images give the same bytes. Members have plain ustar headers (an integer
``mtime``): a float one (``TarWriter``'s default, ``time.time()``) makes Python's ``tarfile`` add a pax
header to every member (``TarWriter``'s ``format`` argument does not reach ``tarfile`` in webdataset 1.0.2),
which doubles the headers a reader parses (measured here: the library's tar iteration reads 8 k samples/s
with them, 14-16 k without) and makes a cifar10 shard 1.7x larger. :func:`read_back` reads a split with the library
alone (``WebDataset(urls).decode("rgb8")``); the ``webdataset`` loader streams the shards.
"""

from pathlib import Path

import numpy as np

from thesislib.stores import shards
from thesislib.stores.base import StoreSpec

KIND = "webdataset"
STORES = [StoreSpec("webdataset", KIND, "uint8", "jpeg", lossless=False)]
LOADER = None  # streamed by the ``webdataset`` loader (thesislib.loaders.webdataset), not read at random
SAMPLE_OVERHEAD = 3 * 512  # two tar headers and the .cls block, for the shard-size estimate


def shard_path(store_dir, split: str, shard: int) -> Path:
    return Path(store_dir) / f"{split}-{shard:06d}.tar"


def write_split(store_dir, spec, split: str, images, labels, classes=None, progress=None) -> dict:
    """Write a split as tar shards; return ``shards`` (their count) and ``jpeg_files_sha256``, the SHA-256 of
    the JPEGs' digests: ``files-jpeg``'s ``files_sha256``."""
    import webdataset as wds

    count = shards.shard_count(len(labels), shards.estimate_bytes(images, SAMPLE_OVERHEAD))
    bounds = shards.shard_bounds(len(labels), count)
    jpegs, digest = shards.jpeg_bytes(images), shards.JpegDigest()
    for shard in range(count):
        with wds.TarWriter(str(shard_path(store_dir, split, shard)), encoder=False, mtime=0) as sink:
            for sample in range(bounds[shard], bounds[shard + 1]):
                jpeg = next(jpegs)
                digest.update(jpeg)
                sink.write({"__key__": f"{sample:06d}", "jpg": jpeg, "cls": str(int(labels[sample])).encode()})
                if progress is not None:
                    progress.update(1)
    return {"shards": count, "jpeg_files_sha256": digest.hexdigest()}


def layout(spec, shape) -> dict:
    return {"format": "tar shards <split>-%06d.tar of <index:06d>.jpg (the files-jpeg bytes) + "
                      "<index:06d>.cls (label, decimal text)", "codec": "jpeg", "lossless": False,
            "tar_format": "ustar (no pax headers: mtime 0, an integer)", "shard_bytes": shards.SHARD_BYTES, "min_shards": shards.MIN_SHARDS}


def data_files(store_dir) -> list:
    return sorted(Path(store_dir).glob("*.tar"))


def split_shards(store, split: str) -> tuple:
    """(shard files in shard order, samples in each) of a split, checked to exist (the count from the
    manifest; shard ``k`` holds the samples ``bounds[k]:bounds[k+1]`` of :func:`shards.shard_bounds`)."""
    count = int(store.manifest["checksums"][split]["shards"])
    paths = [shard_path(store.path, split, shard) for shard in range(count)]
    shards.check_shards(paths, f"shard of {split}")
    return paths, np.diff(shards.shard_bounds(store.count(split), count))


def read_back_samples(store_dir, split: str, decode: str = "rgb8"):
    """Yield ``(key, image, label)`` of every sample of a split in stored order, read by ``webdataset``
    alone (``decode``: its decoder spec; ``"rgb8"`` gives (H, W, 3) uint8 arrays, None the raw bytes)."""
    import webdataset as wds

    urls = sorted(str(path) for path in Path(store_dir).glob(f"{split}-*.tar"))
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    if decode:
        dataset = dataset.decode(decode)
    for sample in dataset.to_tuple("__key__", "jpg", "cls"):
        key, image, label = sample
        yield key, image, int(label)


def read_back(store_dir, split: str) -> tuple:
    """(images (N, H, W, 3) uint8, labels int64) of a split, read and decoded by ``webdataset`` alone."""
    import webdataset as wds

    urls = sorted(str(path) for path in Path(store_dir).glob(f"{split}-*.tar"))
    samples = wds.WebDataset(urls, shardshuffle=False).decode("rgb8").to_tuple("jpg", "cls")
    images, labels = zip(*samples)
    return np.stack(images), np.array(labels, dtype=np.int64)
