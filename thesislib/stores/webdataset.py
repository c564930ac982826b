"""``webdataset``: tar shards ``<split>-%06d.tar`` of ``<index:06d>.jpg`` (the ``files-jpeg`` bytes) and
``<index:06d>.cls`` (the label as decimal text), written with the ``webdataset`` library's ``TarWriter``.

Shards hold consecutive samples (see :mod:`thesislib.stores.shards` for their size and count); member
times are fixed, so the same images give the same bytes. :func:`read_back` reads a split with the library
alone (``WebDataset(urls).decode("rgb8")``); the ``webdataset`` loader streams the shards.
"""

from pathlib import Path

import numpy as np

from thesislib.stores import shards

SAMPLE_OVERHEAD = 3 * 512  # two tar headers and the .cls block, for the shard-size estimate
LAYOUT = {"format": "tar shards <split>-%06d.tar of <index:06d>.jpg (files-jpeg bytes) + <index:06d>.cls",
          "codec": "jpeg", "lossless": False}


def shard_path(store_dir, split: str, shard: int) -> Path:
    return Path(store_dir) / f"{split}-{shard:06d}.tar"


def shard_urls(store_dir, split: str, shard_sizes) -> list:
    """The split's shard files, in shard order, as the strings ``webdataset`` takes."""
    return [str(shard_path(store_dir, split, shard)) for shard in range(len(shard_sizes))]


def data_files(store_dir, split: str, shard_sizes) -> list:
    return [Path(url) for url in shard_urls(store_dir, split, shard_sizes)]


def write_split(store_dir, split: str, images, labels, progress=None) -> tuple:
    """Write a split as tar shards; return (checksums, layout): each shard's SHA-256 and ``jpeg_sha256``,
    equal to ``files-jpeg``'s ``files_sha256``."""
    import webdataset as wds

    count = shards.shard_count(len(labels), shards.estimate_bytes(images, SAMPLE_OVERHEAD))
    bounds = shards.shard_bounds(len(labels), count)
    jpegs, digest, files = shards.jpeg_bytes(images), shards.JpegDigest(), {}
    for shard in range(count):
        path = shard_path(store_dir, split, shard)
        with wds.TarWriter(str(path), encoder=False, mtime=0.0) as sink:
            for sample in range(bounds[shard], bounds[shard + 1]):
                jpeg = next(jpegs)
                digest.update(jpeg)
                sink.write({"__key__": f"{sample:06d}", "jpg": jpeg, "cls": str(int(labels[sample])).encode()})
                if progress is not None:
                    progress.update(1)
        files[path.name] = shards.file_sha256(path)
    return ({"jpeg_sha256": digest.hexdigest(), "files_sha256": files},
            {**LAYOUT, "shards": {split: np.diff(bounds).tolist()}})


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
    _, images, labels = zip(*read_back_samples(store_dir, split))
    return np.stack(images), np.array(labels, dtype=np.int64)
