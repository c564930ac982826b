"""The Zarr store: ``data.zarr``, a Zarr v3 group with arrays ``<split>/images`` and ``<split>/labels``.

Layout, chosen for batch reads of shuffled samples: one sample per chunk, so a batch decompresses only the
samples it asks for, and chunks packed into shards of ``SHARD`` samples (Zarr v3's sharding codec), so a
split of 100 000 images is a few hundred files rather than 100 000. Compression: Zstandard level 1, fast to
decode; photo pixels shrink little, flat synthetic regions more.
"""

from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

FOLDER = "data.zarr"
SHARD = 256  # samples per shard file
SLICE = 16 * SHARD  # a whole number of shards, so each shard is written once


def layout(shape) -> dict:
    return {"chunks": [1, *shape[1:]], "shards": [SHARD, *shape[1:]], "compressor": "zstd level 1",
            "why": "one sample per chunk: a shuffled batch decompresses only its own samples; "
                   f"{SHARD}-sample shards keep the file count low"}


def write_split(store_dir: Path, split: str, images, labels, progress=None) -> dict:
    group = zarr.open_group(Path(store_dir) / FOLDER, mode="a", zarr_format=3)
    shard = min(SHARD, len(images))
    out = group.create_array(f"{split}/images", shape=images.shape, dtype="uint8",
                             chunks=(1, *images.shape[1:]), shards=(shard, *images.shape[1:]),
                             compressors=ZstdCodec(level=1))
    for start in range(0, len(images), SLICE):
        block = np.asarray(images[start:start + SLICE])
        out[start:start + len(block)] = block
        if progress is not None:
            progress.update(len(block))
    group.create_array(f"{split}/labels", data=np.asarray(labels, dtype=np.int64))
    return {"layout": layout(images.shape)}
