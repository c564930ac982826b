"""The Zarr store: ``data.zarr``, a Zarr v3 group with arrays ``<split>/images`` and ``<split>/labels``.

Layout, chosen for batch reads of shuffled samples: the images are *sharded* (Zarr v3's sharding codec)
along the sample axis, :data:`SHARD_BYTES` of samples per shard file, and each inner chunk is one sample,
stored uncompressed (every sample written, even an all-zero one, so each shard is complete). Why:

* one sample per inner chunk: a shuffled batch touches scattered samples; any chunk holding several would
  be read (and decoded) whole for one of them. Zarr's own reader fetches an inner chunk by its byte range
  in the shard, so plain ``zarr.open`` reads a sample without reading its neighbours;
* shards: one file per sample (the layout of stores written before) costs a file open per sample and a
  whole file-system block for a small image; a few large files cost neither;
* uncompressed: photo pixels shrink little without loss and every read would pay the decode; and with
  fixed-size uncompressed inner chunks written in order, a shard's samples are one run of rows after its
  (checksummed) index: :class:`ZarrReader` maps each shard read-only and gathers a batch as ``numpy``
  does (:class:`thesislib.kernels.zarrchunks.MappedShards`, which reads the shard index as the sharding
  specification lays it out and checks its CRC32C).

Why not zarr's own read for a local store: its asyncio codec pipeline costs a fixed Python overhead per
chunk that outweighs copying a small sample, and raising its ``async.concurrency`` leaves that cost in
place; several samples per chunk read through zarr decode a whole chunk for each sample of a shuffled batch.
``python benchmarks/zarr_layouts.py`` measures these plans on the same shuffled batches and prints their
ratios (``python benchmarks/peers.py --only zarr`` the loader beside the others). A store written in the
earlier layout (one Zstandard-compressed sample per chunk file) is read by
:class:`thesislib.kernels.zarrchunks.ChunkReader`; a store at a URL, or an array of any other layout,
through zarr (one orthogonal selection per batch; its codec pipeline told to decode a whole batch of
chunks per call, ``codec_pipeline.batch_size``). Opened lazily in the process that reads.
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
SHARD_BYTES = 64 * 2**20  # bytes of samples per shard file (fewer samples if the split is smaller)
CHUNK_KEYS = {"name": "default", "separator": "."}


def samples_per_shard(shape) -> int:
    """Samples in one shard of a split of ``shape`` (N, H, W, 3) uint8: about :data:`SHARD_BYTES`."""
    return max(1, min(int(shape[0]), SHARD_BYTES // max(1, int(np.prod(shape[1:])))))


def layout(spec, shape) -> dict:
    return {"settings": "sharded, one uncompressed sample per inner chunk",
            "chunks": [1, *shape[1:]], "shards": [samples_per_shard(shape), *shape[1:]],
            "chunk_key_separator": ".", "compressor": None,
            "why": "one uncompressed sample per inner chunk: a shuffled batch reads only its own samples, "
                   "each one run of bytes; shards: a few large files instead of a file per sample, each "
                   "shard's samples one run of rows that thesislib maps and gathers as numpy's"}


def write_split(store_dir: Path, spec, split: str, images, labels, classes=None, progress=None) -> dict:
    import zarr

    try:
        group = zarr.open_group(Path(store_dir) / FOLDER, mode="a", zarr_format=3)
        per_shard = samples_per_shard(images.shape)
        out = group.create_array(f"{split}/images", shape=images.shape, dtype="uint8",
                                 chunks=(1, *images.shape[1:]), shards=(per_shard, *images.shape[1:]),
                                 chunk_key_encoding=CHUNK_KEYS, compressors=None,
                                 config={"write_empty_chunks": True})
        for start in range(0, len(images), per_shard):  # whole shards: each written once
            block = np.asarray(images[start:start + per_shard])
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
    """A local store's images as mapped shards gathered into the given buffer (the layout this store writes),
    or as one-sample chunk files decoded by threads (the layout written before); any other layout, and a
    store at a URL, through zarr."""

    def __init__(self, store, split):
        from thesislib.kernels.gather import Gather

        super().__init__(store, split)
        self.folder = remote.join(self.path, FOLDER)
        self.gather = Gather()
        # every chunk file the manifest lists must be there: zarr reads a missing chunk as zeros
        self.absent = missing_listed_files(store, f"{FOLDER}/{split}/")

    def open(self):
        images, labels = open_split(self.folder, self.split, self.shape)
        labels = self.checked_labels(remote.join(self.folder, self.split, "labels"), labels)
        if self.absent is not None:  # after the arrays' shapes are checked, before a shard is mapped
            raise self.absent
        return self.fast_images() or images, labels

    def fast_images(self):
        """:class:`~thesislib.kernels.zarrchunks.MappedShards` or a
        :class:`~thesislib.kernels.zarrchunks.ChunkReader` of a local store's images of a layout they read;
        None (read through zarr) for a URL or another layout."""
        from thesislib.kernels.zarrchunks import ChunkReader, chunk_plan, mapped_shards

        if remote.is_url(self.folder):
            return None
        folder = Path(self.folder) / self.split / "images"
        shards = mapped_shards(folder)
        if shards is not None:
            return shards
        plan = chunk_plan(folder)
        return None if plan is None else ChunkReader(plan)

    def read_from(self, handle, indices, out=None):
        from thesislib.kernels.zarrchunks import ChunkReader, MappedShards

        images, labels = handle
        if isinstance(images, MappedShards):
            return self.gather(images, indices, out), labels[indices]
        if isinstance(images, ChunkReader):
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
        return not hasattr(self.opened()[0], "get_orthogonal_selection")  # mapped shards or chunk decode

    def close_handle(self, handle) -> None:
        pass


def reader(store, split: str) -> ZarrReader:
    return ZarrReader(store, split)


def read_back(store_dir, split: str) -> tuple:
    import zarr

    group = zarr.open_group(Path(store_dir) / "data.zarr", mode="r")
    return group[f"{split}/images"][:], group[f"{split}/labels"][:]
