"""A batch of a Zarr v3 array stored one sample per chunk: its chunks fetched and decoded by threads.

Zarr's own ``get_orthogonal_selection`` runs every chunk through its asyncio codec pipeline, a fixed
Python cost per chunk that dwarfs the work of a 3 KiB sample. For the layout the zarr store writes (one
sample per chunk, no shards, no filters, the ``bytes`` serializer and at most one Zstandard compressor)
the chunk files are named by the array's own public ``metadata.encode_chunk_key`` and decoded by numcodecs'
Zstd (the codec zarr itself calls), several threads at once, straight into the batch buffer. A chunk
that was never written holds the array's fill value, as the Zarr specification says. Any other layout
returns None from :func:`chunk_plan`, and the caller reads through zarr.

Why this plan and not the others of the performance issue (``benchmarks/zarr_layouts.py`` measures all of
them on the same shuffled batches and prints the ratios): raising zarr's ``async.concurrency`` leaves its
per-chunk Python cost in place; several samples per chunk with a read plan over the sorted indices still
decodes a whole chunk for each of the batch's samples, because a shuffled batch rarely holds two samples of
one chunk, so it reads more bytes for the same pixels the larger the chunks grow.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from numcodecs import Zstd
from zarr.codecs import BytesCodec, ZstdCodec

from thesislib.errors import ThesisError
from thesislib.kernels.parts import Parts


@dataclass(frozen=True)
class ChunkPlan:
    folder: Path          # the array's folder
    metadata: object      # the array's metadata: its own chunk key encoding names the files
    compressed: bool      # True: Zstandard frames; False: raw bytes
    fill_value: object

    def path(self, index: int) -> Path:
        """The file of sample ``index``'s chunk."""
        rank = len(self.metadata.shape)
        return self.folder / self.metadata.encode_chunk_key((int(index),) + (0,) * (rank - 1))


def chunk_plan(folder) -> "ChunkPlan | None":
    """How to read the array in ``folder`` chunk by chunk, or None if its layout is not one sample per
    chunk with at most one Zstandard compressor (then read it through zarr)."""
    array = zarr.open_array(Path(folder), mode="r")
    compressors = array.compressors
    if (array.metadata.zarr_format != 3 or array.shards is not None or array.filters
            or tuple(array.chunks) != (1, *array.shape[1:]) or not isinstance(array.serializer, BytesCodec)
            or array.dtype.itemsize > 1 and not array.dtype.isnative
            or len(compressors) > 1 or compressors and not isinstance(compressors[0], ZstdCodec)):
        return None
    return ChunkPlan(Path(folder), array.metadata, bool(compressors), array.fill_value)


class ChunkReader:
    """Read samples of a one-sample-per-chunk array (see :func:`chunk_plan`) with ``threads`` threads."""

    def __init__(self, plan: ChunkPlan, threads: int = None):
        self.plan, self.codec = plan, Zstd()
        self.parts = Parts(threads, "zarr-chunks")

    def read_one(self, index: int, out: np.ndarray) -> None:
        path = self.plan.path(index)
        try:
            with open(path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            out[...] = self.plan.fill_value
            return
        target = out.reshape(-1).view(np.uint8)
        try:
            if self.plan.compressed:
                self.codec.decode(data, out=target)
            elif len(data) == target.size:
                target[...] = np.frombuffer(data, dtype=np.uint8)
            else:
                raise ValueError(f"{len(data)} bytes, expected {target.size}")
        except (RuntimeError, ValueError) as exc:
            raise ThesisError(f"cannot decode chunk {path} ({exc}): the store is corrupt; delete its folder "
                              "and run prepare again") from exc

    def read_range(self, indices, out) -> None:
        for index, row in zip(indices, out):
            self.read_one(index, row)

    def __call__(self, indices: np.ndarray, out: np.ndarray) -> np.ndarray:
        self.parts.run(lambda a, b: self.read_range(indices[a:b], out[a:b]), len(indices))
        return out
