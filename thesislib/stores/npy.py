"""NumPy stores: ``<split>_images.npy`` (N, H, W, 3) and ``<split>_labels.npy`` (N,) int64.

The float stores hold pixel / 255 (the thesis asks what float16 storage changes: twice the bytes of uint8,
half of float32, and a rounding error below 2**-11 relative). Written in slices with ``file.write`` (not a
writable memory map, which dies of SIGBUS on a full disk), so a split larger than memory converts too.

Read as a memory map; a batch is one gather of its sorted rows (:class:`thesislib.kernels.gather.Gather`:
``np.take``, one memcpy per row, on the number of threads measured fastest for the batch's size) into the
buffer the loader gives (a slot of its ring), else into a new array. The whole split being one mappable
array, :func:`mapped_split` and :func:`images_file` are what the ``memory``, ``cupy`` and ``dali`` loaders
ask for.
"""

import hashlib
from pathlib import Path

import numpy as np

from thesislib.errors import ThesisError
from thesislib.stores.base import Reader, StoreSpec, damaged

KIND = "npy"
STORES = [StoreSpec("npy-uint8", KIND, "uint8"), StoreSpec("npy-float16", KIND, "float16"),
          StoreSpec("npy-float32", KIND, "float32")]
LOADER = "numpy"
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


def write_split(store_dir: Path, spec, split: str, images, labels, classes=None, progress=None) -> dict:
    """The header, then the pixels a slice at a time with ``file.write``: a full disk is an OSError
    (ENOSPC) that ``prepare`` reports, where a writable memory map would die of SIGBUS."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(spec.dtype)), "fortran_order": False,
              "shape": tuple(images.shape)}
    digest = hashlib.sha256()  # = array_checksum of the written array (SHA-256 of its C-order bytes)
    step = max(1, SLICE_BYTES // (4 * int(np.prod(images.shape[1:]))))
    with open(images_path(store_dir, split), "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        for start in range(0, len(images), step):
            block = np.ascontiguousarray(to_dtype(np.asarray(images[start:start + step]), spec.dtype))
            file.write(memoryview(block).cast("B"))
            digest.update(memoryview(block).cast("B"))
            if progress is not None:
                progress.update(len(block))
    np.save(labels_path(store_dir, split), np.asarray(labels, dtype=np.int64))
    return {"images_sha256": digest.hexdigest()}


def layout(spec, shape) -> dict:
    return {"format": "NumPy .npy v1, C order", "dtype": spec.dtype,
            "scaling": "pixel" if spec.dtype == "uint8" else "pixel / 255"}


def data_files(store_dir) -> list:
    return sorted(Path(store_dir).glob("*.npy"))


def open_npy(path, shape=None, dtype=None, mmap_mode="r") -> np.ndarray:
    """``np.load`` of one store file, checked against the manifest; a ThesisError naming a bad file."""
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ThesisError(f"cannot read {path} ({exc}): the file is truncated or corrupt; delete its store "
                          "folder and run `python -m thesislib prepare` again") from exc
    if shape is not None and tuple(array.shape) != tuple(shape) or dtype is not None and array.dtype != dtype:
        raise damaged(path, f"holds {array.dtype}{list(array.shape)}, its manifest says {dtype}{list(shape)}")
    return array


def mapped_split(store, split: str, mmap_mode="r") -> tuple:
    """(images memory map, labels ndarray) of ``split``, checked against the manifest."""
    from thesislib.stores.integrity import check_labels

    shape = store.shape(split)
    images = open_npy(images_path(store.path, split), shape, store.dtype, mmap_mode=mmap_mode)
    labels = open_npy(labels_path(store.path, split), shape[:1], np.int64, mmap_mode=None)
    return images, check_labels(labels_path(store.path, split), labels, len(store.classes))


def images_file(store, split: str) -> Path:
    """The ``.npy`` file holding the split's images (C order, after a header of ``offset`` bytes)."""
    return images_path(store.path, split)


class NpyReader(Reader):
    """Batches of a split gathered from its memory map into the given buffer (else a new array)."""

    def __init__(self, store, split):
        from thesislib.kernels.gather import Gather

        super().__init__(store, split)
        self.images_path, self.labels_path = images_path(store.path, split), labels_path(store.path, split)
        self.gather = Gather()

    def open(self):
        images = open_npy(self.images_path, self.shape, self.dtype)
        labels = open_npy(self.labels_path, self.shape[:1], np.int64, mmap_mode=None)
        return images, self.checked_labels(self.labels_path, labels)

    def read_from(self, handle, indices, out=None):
        images, labels = handle
        return self.gather(images, indices, out), labels[indices]

    def reads_in_threads(self) -> bool:
        return True  # np.take releases the GIL; the memory map is shared


def reader(store, split: str) -> NpyReader:
    return NpyReader(store, split)


def read_back(store_dir, split: str) -> tuple:
    return np.load(Path(store_dir) / f"{split}_images.npy"), np.load(Path(store_dir) / f"{split}_labels.npy")
