"""The Zarr store: ``data.zarr``, a Zarr v3 group with arrays ``<split>/images`` and ``<split>/labels``.

Layout, chosen for batch reads of shuffled samples: one sample per chunk, so a batch decompresses only the
samples it asks for, and chunk keys joined with "." (``c.<i>.0.0.0``), so each sample is one file in the
split's folder rather than four nested folders. Zarr v3's sharding codec (many chunks in one file) was
measured and rejected: reading 128 shuffled CIFAR-sized samples from 256-sample shards ran at about a third
of the speed of plain chunks (zarr 3.1, 2 cores: ~800 against ~2 300 images/s), because every chunk then
costs a shard-index lookup and a ranged read. The price is paid on disk for tiny samples: a 32x32 CIFAR image
(3 KiB) takes a whole 4 KiB file-system block, so the CIFAR-10 store is ~1.8x its data; at 64x64 and above
it is a few per cent. Compression: Zstandard level 1, fast to decode; photo pixels
shrink little, flat regions more.
"""

from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

FOLDER = "data.zarr"
SLICE = 4096  # samples written at a time
CHUNK_KEYS = {"name": "default", "separator": "."}


def layout(shape) -> dict:
    return {"chunks": [1, *shape[1:]], "shards": None, "chunk_key_separator": ".",
            "compressor": "zstd level 1",
            "why": "one sample per chunk: a shuffled batch decompresses only its own samples; no shards: "
                   "zarr reads plain chunks about 3x faster than chunks inside shards"}


def write_split(store_dir: Path, split: str, images, labels, progress=None) -> dict:
    group = zarr.open_group(Path(store_dir) / FOLDER, mode="a", zarr_format=3)
    out = group.create_array(f"{split}/images", shape=images.shape, dtype="uint8",
                             chunks=(1, *images.shape[1:]), chunk_key_encoding=CHUNK_KEYS,
                             compressors=ZstdCodec(level=1))
    for start in range(0, len(images), SLICE):
        block = np.asarray(images[start:start + SLICE])
        out[start:start + len(block)] = block
        if progress is not None:
            progress.update(len(block))
    group.create_array(f"{split}/labels", data=np.asarray(labels, dtype=np.int64))
    return {"layout": layout(images.shape)}
