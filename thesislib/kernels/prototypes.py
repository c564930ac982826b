"""Readers of today's stores built from the kernels: ``read(indices, out=None) -> (images, labels)``.

Prototypes for the per-format readers: each opens its files lazily (in the process that reads), is
picklable, and writes a batch into ``out`` when given one. :func:`kernel_batches` is the loop a loader runs
over them (``num_workers`` background threads instead of worker processes).
"""

import h5py
import numpy as np

from thesislib.kernels.gather import Gather
from thesislib.kernels.hdf5map import contiguous_map
from thesislib.kernels.imagefiles import FileDecoder
from thesislib.kernels.prefetch import batches_of
from thesislib.kernels.zarrchunks import ChunkReader, chunk_plan
from thesislib.stores import hdf5 as hdf5_store
from thesislib.stores import imagefiles, npy
from thesislib.stores import zarr as zarr_store
from thesislib.stores.gather import batch_buffer


class Lazy:
    """A reader whose ``handle`` (open files) is made on first use and dropped when pickled or closed."""

    handle = None

    def opened(self):
        if self.handle is None:
            self.handle = self.open()
        return self.handle

    def close(self) -> None:
        self.handle = None

    def __getstate__(self):
        return {**self.__dict__, "handle": None}


class NpyReader(Lazy):
    def __init__(self, store, split, gather: Gather = None):
        self.images_path, self.labels_path = npy.images_path(store.path, split), npy.labels_path(store.path, split)
        self.gather = gather or Gather()

    def open(self):
        return np.load(self.images_path, mmap_mode="r"), np.load(self.labels_path)

    def read(self, indices, out=None):
        images, labels = self.opened()
        return self.gather(images, indices, out), labels[indices]


class Hdf5Reader(Lazy):
    """Contiguous images through a memory map (a :class:`Gather`), other layouts through h5py."""

    def __init__(self, store, split, gather: Gather = None):
        self.path, self.split = store.path / hdf5_store.FILE, split
        self.gather = gather or Gather()

    def open(self):
        file = h5py.File(self.path, "r")
        images, labels = file[f"{self.split}/images"], file[f"{self.split}/labels"][()].astype(np.int64)
        mapped = contiguous_map(images)
        if mapped is None:
            return images, labels, file
        file.close()
        return mapped, labels, None

    def read(self, indices, out=None):
        images, labels, file = self.opened()
        if file is None:
            return self.gather(images, indices, out), labels[indices]
        batch = batch_buffer(None, (len(indices), *images.shape[1:]), images.dtype, out)
        images.read_direct(batch, np.s_[indices])
        return batch, labels[indices]

    def close(self) -> None:
        if self.handle is not None and self.handle[2] is not None:
            self.handle[2].close()
        self.handle = None


class ZarrReader(Lazy):
    """Single-sample chunks fetched by threads (:mod:`~thesislib.kernels.zarrchunks`), else zarr."""

    def __init__(self, store, split, threads: int = None):
        self.folder = store.path / zarr_store.FOLDER / split
        self.shape, self.threads = store.shape(split), threads

    def open(self):
        import zarr

        labels = np.asarray(zarr.open_array(self.folder / "labels", mode="r")[:], dtype=np.int64)
        plan = chunk_plan(self.folder / "images")
        fallback = zarr.open_array(self.folder / "images", mode="r") if plan is None else None
        return (ChunkReader(plan, self.threads) if plan else None), fallback, labels

    def read(self, indices, out=None):
        chunks, fallback, labels = self.opened()
        if chunks is None:
            batch = fallback.get_orthogonal_selection(indices)
            return (batch if out is None else np.copyto(out, batch) or out), labels[indices]
        return chunks(indices, batch_buffer(None, (len(indices), *self.shape[1:]), np.uint8, out)), labels[indices]


class FilesReader(Lazy):
    """Image files decoded by threads into the batch buffer (``decoder``: a name of ``DECODERS``)."""

    def __init__(self, store, split, decoder: str = "pillow", threads: int = None):
        self.paths, self.labels = imagefiles.list_files(store.path, split)
        self.shape = store.shape(split)
        self.decode = FileDecoder(decoder, threads)

    def open(self):
        return self.paths

    def read(self, indices, out=None):
        paths = self.opened()
        batch = batch_buffer(None, (len(indices), *self.shape[1:]), np.uint8, out)
        return self.decode([paths[i] for i in indices], batch), self.labels[indices]


def kernel_batches(reader, batches, num_workers: int = 0, batches_ahead: int = 2, layout=None):
    """The batches a loader yields: read here (0 workers) or by ``num_workers`` background threads."""
    return batches_of(reader, batches, threads=num_workers, batches_ahead=batches_ahead, layout=layout)
