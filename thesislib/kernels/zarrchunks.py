"""A batch of a Zarr v3 array read without zarr's per-chunk Python cost, for the two layouts the zarr store
has written.

Zarr's own ``get_orthogonal_selection`` runs every chunk through its asyncio codec pipeline, a fixed Python
cost per chunk that dwarfs the work of a small sample, and raising ``async.concurrency`` leaves that cost in
place (``benchmarks/zarr_layouts.py`` measures every plan on the same shuffled batches and prints the
ratios). What these kernels read instead, named and laid out by the Zarr v3 specification:

* :class:`MappedShards` (the layout the store writes now): a *sharded* array whose inner chunks are one
  uncompressed sample each. The sharding specification puts a shard's index at its end: one
  little-endian ``(offset, nbytes)`` uint64 pair per inner chunk, then its CRC32C checksum (checked here
  with numcodecs' ``CRC32C``, the codec the specification names). When the index says the shard's samples
  lie in order, back to back (zarr writes a whole shard so), the shard is one run of rows, mapped read-only
  as an array: a batch is one ``np.take`` per shard it touches, as ``numpy``'s gather. Any other shard
  layout returns None from :func:`mapped_shards`, and the caller reads through zarr;
* :class:`ChunkReader` (the layout of stores written before: one sample per chunk file, at most one
  Zstandard compressor): the chunk files, named by the array's own public ``metadata.encode_chunk_key``,
  read and decoded (numcodecs' Zstd, the codec zarr itself calls) by several threads at once, straight into
  the batch buffer. A chunk that was never written holds the array's fill value, as the specification says.
  Any other layout returns None from :func:`chunk_plan`.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from numcodecs import CRC32C, Zstd
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec

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


INDEX_ENTRY = 16       # bytes per inner chunk in a shard index: offset and nbytes, uint64 little-endian
CHECKSUM = 4           # the CRC32C after the index
EMPTY = 2**64 - 1      # offset and nbytes of an inner chunk that was never written


def sharding_of(array):
    """The array's :class:`ShardingCodec` if it is a Zarr v3 array sharded along the sample axis only, with
    one-sample, uncompressed, unfiltered inner chunks of a native dtype and the index at the shard's end
    (little-endian, CRC32C); else None."""
    codecs = array.metadata.codecs if array.metadata.zarr_format == 3 else ()
    sharding = codecs[0] if len(codecs) == 1 and isinstance(codecs[0], ShardingCodec) else None
    if (sharding is None or tuple(array.shards[1:]) != tuple(array.shape[1:])
            or tuple(array.chunks) != (1, *array.shape[1:]) or array.filters or array.compressors
            or not isinstance(array.serializer, BytesCodec)
            or array.dtype.itemsize > 1 and not array.dtype.isnative
            or str(getattr(sharding.index_location, "value", sharding.index_location)) != "end"):
        return None
    index = sharding.index_codecs
    if (len(index) != 2 or not isinstance(index[0], BytesCodec) or not isinstance(index[1], Crc32cCodec)
            or str(getattr(index[0].endian, "value", index[0].endian)) != "little"):
        return None
    return sharding


def shard_index(path: Path, per_shard: int) -> np.ndarray:
    """The (per_shard, 2) ``(offset, nbytes)`` index at the end of shard file ``path``, its checksum
    checked; a ThesisError naming the file if it is missing, short or its index is damaged."""
    size = per_shard * INDEX_ENTRY + CHECKSUM
    try:
        with open(path, "rb") as file:
            file.seek(-size, 2)
            data = file.read(size)
        return np.frombuffer(CRC32C().decode(data), dtype="<u8").reshape(per_shard, 2)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ThesisError(f"cannot read the shard index of {path} ({exc}): the store is corrupt; delete its "
                          "folder and run prepare again") from exc


class MappedShards:
    """The samples of a sharded array (see :func:`mapped_shards`), one read-only memory map per shard.

    Offers what :class:`~thesislib.kernels.gather.Gather` needs of an array: ``shape``, ``dtype`` and
    ``take(indices, axis, out, mode)`` for *sorted* indices along the first axis."""

    def __init__(self, maps: list, per_shard: int, shape: tuple, dtype):
        self.maps, self.per_shard, self.shape, self.dtype = maps, per_shard, tuple(shape), np.dtype(dtype)
        self.starts = np.arange(0, self.shape[0], per_shard)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, indices, axis=0, out=None, mode="clip") -> np.ndarray:
        """``out[:] = samples[indices]``: one ``np.take`` per shard that the sorted ``indices`` touch."""
        if out is None:
            out = np.empty((len(indices), *self.shape[1:]), self.dtype)
        bounds = np.searchsorted(indices, self.starts).tolist() + [len(indices)]
        for number, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
            if stop > start:
                rows = indices[start:stop] - self.starts[number]
                self.maps[number].take(rows, 0, out[start:stop], mode)
        return out


def mapped_shards(folder) -> "MappedShards | None":
    """The array in ``folder`` as :class:`MappedShards` if it is sharded as :func:`sharding_of` asks and
    each shard's samples lie in order, back to back; else None (then read it through zarr). A ThesisError
    names a shard file that is missing or whose index is damaged."""
    array = zarr.open_array(Path(folder), mode="r")
    if sharding_of(array) is None or array.size == 0:
        return None
    count, per_shard, sample_shape = array.shape[0], array.shards[0], tuple(array.shape[1:])
    row_bytes = int(np.prod(sample_shape)) * array.dtype.itemsize
    maps = []
    for number, first in enumerate(range(0, count, per_shard)):
        path = Path(folder) / array.metadata.encode_chunk_key((number,) + (0,) * len(sample_shape))
        rows = min(per_shard, count - first)
        offsets, sizes = shard_index(path, per_shard)[:rows].T
        if (sizes != row_bytes).any() or (offsets != offsets[0] + row_bytes * np.arange(rows, dtype=np.uint64)).any():
            return None  # an inner chunk absent (fill value) or out of order: zarr reads it
        try:
            maps.append(np.memmap(path, dtype=array.dtype, mode="r", offset=int(offsets[0]),
                                  shape=(rows, *sample_shape)))
        except ValueError as exc:  # the file ends before its last sample
            raise ThesisError(f"cannot map {path} ({exc}): the store is corrupt; delete its folder and run "
                              "prepare again") from exc
    return MappedShards(maps, per_shard, array.shape, array.dtype)
