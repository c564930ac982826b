"""The Zarr store: ``data.zarr``, a Zarr v3 group with arrays ``<split>/images`` and ``<split>/labels``.

Layout, chosen for batch reads of shuffled samples: one sample per chunk, so a batch decompresses only the
samples it asks for, and chunk keys joined with "." (``c.<i>.0.0.0``), so each sample is one file in the
split's folder rather than four nested folders. Zarr v3's sharding codec (many chunks in one file) was
measured and rejected: shuffled CIFAR-sized samples read from shards far slower than from plain chunks,
because every chunk then costs a shard-index lookup and a ranged read. The
price is paid on disk for tiny samples: a 32x32 CIFAR image (3 KiB) takes a whole 4 KiB file-system block,
so the CIFAR-10 store is ~1.8x its data; at 64x64 and above it is a few per cent. Compression: Zstandard
level 1, fast to decode; photo pixels shrink little, flat regions more.

A batch of a local store is read by :mod:`thesislib.kernels.zarrchunks`: the batch's chunk files, named by
the array's own chunk key encoding, read and Zstandard-decoded by a few threads straight into the batch
buffer (the same codec zarr calls; an absent chunk is the fill value, and :class:`ZarrReader` refuses a
store whose manifest lists a chunk that is missing). Why not zarr's own read: its asyncio codec pipeline
costs a fixed Python overhead per chunk that outweighs decoding a small sample, and raising its
concurrency leaves that cost in place; why not several samples per chunk: a shuffled batch rarely holds
two samples of one chunk, so each sample still costs a whole chunk's decode. ``python
benchmarks/zarr_layouts.py`` measures all of these plans on the same shuffled batches and prints their
ratios (``python benchmarks/peers.py --only zarr`` the loader beside the others). A store at a URL, or an
array of another layout, is read through zarr (one orthogonal selection per batch; its codec pipeline is
told to decode a whole batch of chunks per call, ``codec_pipeline.batch_size``). Opened lazily in the
process that reads.
"""

import os
from pathlib import Path

import numpy as np

from thesislib import remote
from thesislib.errors import ThesisError
from thesislib.stores.base import Reader, StoreSpec, quote
from thesislib.stores.hdf5 import check_split
from thesislib.stores.integrity import missing_listed_files

KIND = "zarr"
STORES = [StoreSpec("zarr", KIND, "uint8")]
LOADER = "zarr"
READS_URLS = True  # read straight from a store at a URL (thesislib.remote)
FOLDER = "data.zarr"
SLICE = 4096  # samples written at a time
CHUNK_KEYS = {"name": "default", "separator": "."}


def layout(spec, shape) -> dict:
    return {"chunks": [1, *shape[1:]], "shards": None, "chunk_key_separator": ".",
            "compressor": "zstd level 1",
            "why": "one sample per chunk: a shuffled batch decompresses only its own samples; no shards: "
                   "zarr reads plain chunks about 3x faster than chunks inside shards"}


def write_split(store_dir: Path, spec, split: str, images, labels, classes=None, progress=None) -> dict:
    import zarr
    from zarr.codecs import ZstdCodec

    try:
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
    except BaseException:
        finish_pending_writes()
        raise
    return {}


def finish_pending_writes() -> None:
    """Wait for the chunk writes still running in zarr's event loop after one of them failed (a full disk):
    zarr's gather does not cancel the others, so they would go on writing into the folder ``prepare``
    removes, and print "Task was destroyed but it is pending!" lines when the interpreter exits."""
    import asyncio

    from zarr.core.sync import sync

    async def the_others():
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)

    sync(the_others())


def data_files(store_dir) -> list:
    root = Path(store_dir) / FOLDER
    return sorted(Path(folder) / name for folder, _, names in os.walk(root) for name in names)


def damaged_errors() -> tuple:
    """What a damaged store raises: a missing or bad file (OSError), a chunk of the wrong size (ValueError),
    bad metadata (zarr's errors); a chunk that fails to decompress raises a bare RuntimeError from
    numcodecs' Zstd codec (see :func:`is_decode_error`)."""
    import zarr

    return OSError, ValueError, zarr.errors.BaseZarrError


def open_split(path, split, shape=None):
    """(images array, labels ndarray) of ``split``; a ThesisError naming a missing or bad array."""
    import zarr

    try:
        group = zarr.open_group(remote.zarr_store(path), mode="r")
        images, labels = group[f"{split}/images"], np.asarray(group[f"{split}/labels"][:], dtype=np.int64)
    except (KeyError, *damaged_errors()) as exc:
        raise ThesisError(f"cannot read {split} of {path} ({quote(exc)}): delete its store folder and run "
                          "`python -m thesislib prepare` again") from exc
    check_split(path, split, images.shape, len(labels), shape)
    return images, labels


def is_decode_error(exc: BaseException) -> bool:
    """True for the error of a chunk that fails to decompress (numcodecs raises a plain RuntimeError)."""
    return isinstance(exc, RuntimeError) and "decompress" in str(exc).lower()


class ZarrReader(Reader):
    def __init__(self, store, split):
        super().__init__(store, split)
        self.folder = remote.join(self.path, FOLDER)
        # every chunk file the manifest lists must be there: zarr reads a missing chunk as zeros
        self.absent = missing_listed_files(store, f"{FOLDER}/{split}/")

    def open(self):
        images, labels = open_split(self.folder, self.split, self.shape)
        labels = self.checked_labels(remote.join(self.folder, self.split, "labels"), labels)
        return self.chunk_reader() or images, labels

    def chunk_reader(self):
        """A :class:`~thesislib.kernels.zarrchunks.ChunkReader` of a local store's images of the layout
        this store writes; None (read through zarr) for a URL or another layout."""
        from thesislib.kernels.zarrchunks import ChunkReader, chunk_plan

        if remote.is_url(self.folder):
            return None
        plan = chunk_plan(Path(self.folder) / self.split / "images")
        return None if plan is None else ChunkReader(plan)

    def check(self) -> None:
        """Also: a chunk file that the manifest lists is missing (after the arrays' shapes are checked)."""
        super().check()
        if self.absent is not None:
            raise self.absent

    def read_from(self, handle, indices, out=None):
        images, labels = handle
        if not hasattr(images, "get_orthogonal_selection"):  # a ChunkReader
            batch = np.empty((len(indices), *self.shape[1:]), np.uint8) if out is None else out
            return images(indices, batch), labels[indices]
        batch = self.zarr_read(images, indices)
        if out is None:
            return batch, labels[indices]
        out[...] = batch
        return out, labels[indices]

    def zarr_read(self, images, indices):
        import zarr

        try:
            with zarr.config.set({"codec_pipeline.batch_size": len(indices)}):
                return images.get_orthogonal_selection(indices)
        except (RuntimeError, *damaged_errors()) as exc:  # a codec error names no file: name the store
            if isinstance(exc, RuntimeError) and not is_decode_error(exc):
                raise
            raise ThesisError(f"cannot read samples of {self.split} from {self.folder} ({quote(exc)}): the store "
                              "is corrupt; delete its folder and run prepare again") from exc

    def reads_in_threads(self) -> bool:
        return not hasattr(self.opened()[0], "get_orthogonal_selection")  # chunk decode releases the GIL

    def close_handle(self, handle) -> None:
        pass


def reader(store, split: str) -> ZarrReader:
    return ZarrReader(store, split)


def read_back(store_dir, split: str) -> tuple:
    import zarr

    group = zarr.open_group(Path(store_dir) / "data.zarr", mode="r")
    return group[f"{split}/images"][:], group[f"{split}/labels"][:]
