"""The HDF5 store: ``data.h5`` with ``/<split>/images`` (N, H, W, 3) uint8 and ``/<split>/labels`` int64.

Layout, chosen for batch reads of shuffled samples: every loader reads a batch of sorted but scattered
indices, so any chunk holding several samples is read (and decompressed) whole for one of them. Photo pixels
compress poorly without loss (gzip saves little and costs CPU on every read), so the images are stored
uncompressed and *contiguous*: HDF5 then reads exactly the rows a batch asks for, like a memory map.
"""

from pathlib import Path

import h5py
import numpy as np

FILE = "data.h5"
SLICE = 4096
LAYOUT = {"images": {"layout": "contiguous", "compression": None,
                     "why": "shuffled batch reads touch scattered rows; contiguous rows are read exactly, "
                            "no chunk is decompressed for one sample"},
          "labels": {"layout": "contiguous", "compression": None}}


def write_split(store_dir: Path, split: str, images, labels, progress=None) -> dict:
    with h5py.File(Path(store_dir) / FILE, "a") as file:
        group = file.require_group(split)
        out = group.create_dataset("images", shape=images.shape, dtype=np.uint8)
        for start in range(0, len(images), SLICE):
            block = np.asarray(images[start:start + SLICE])
            out[start:start + len(block)] = block
            if progress is not None:
                progress.update(len(block))
        group.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
    return {}
