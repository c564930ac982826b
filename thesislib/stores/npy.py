"""NumPy stores: ``<split>_images.npy`` (N, H, W, 3) and ``<split>_labels.npy`` (N,) int64.

The float stores hold pixel / 255 (the thesis asks what float16 storage changes: twice the bytes of uint8,
half of float32, and a rounding error below 2**-11 relative). Written through ``open_memmap`` in slices,
so a split larger than memory converts too.
"""

from pathlib import Path

import numpy as np

from thesislib.stores.manifest import array_checksum

SLICE_BYTES = 2**28  # about 256 MiB of float32 pixels converted at a time


def images_path(store_dir: Path, split: str) -> Path:
    return Path(store_dir) / f"{split}_images.npy"


def labels_path(store_dir: Path, split: str) -> Path:
    return Path(store_dir) / f"{split}_labels.npy"


def to_dtype(images: np.ndarray, dtype: str) -> np.ndarray:
    """uint8 pixels as stored in a ``dtype`` store (float: pixel / 255)."""
    if dtype == "uint8":
        return images
    return (images.astype(np.float32) / np.float32(255)).astype(dtype)


def write_split(store_dir: Path, split: str, images, labels, dtype: str, progress=None) -> dict:
    out = np.lib.format.open_memmap(images_path(store_dir, split), mode="w+", dtype=dtype,
                                    shape=images.shape)
    step = max(1, SLICE_BYTES // (4 * int(np.prod(images.shape[1:]))))
    for start in range(0, len(images), step):
        block = np.asarray(images[start:start + step])
        out[start:start + len(block)] = to_dtype(block, dtype)
        if progress is not None:
            progress.update(len(block))
    out.flush()
    checksum = array_checksum(out)
    del out
    np.save(labels_path(store_dir, split), np.asarray(labels, dtype=np.int64))
    return {"images_sha256": checksum}
