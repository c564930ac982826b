"""Which way of reading shuffled batches from Zarr is fastest? The plans of the performance issue, measured.

    python benchmarks/zarr_layouts.py [--dataset cifar10] [--scale 1] [--rounds 3] [--batches 40]

* sharded, one uncompressed sample per inner chunk (the store's layout), read by zarr
  (``get_orthogonal_selection``), by zarr with its ``async.concurrency`` raised, and as memory-mapped
  shards (:class:`thesislib.kernels.zarrchunks.MappedShards`, the loader's read);
* one Zstandard-compressed sample per chunk file (the store's earlier layout), read by zarr and by
  :class:`thesislib.kernels.zarrchunks.ChunkReader` (chunk files fetched and decoded by threads);
* several samples per chunk (16, 64, 256; Zstandard level 1), read with a read plan over the sorted
  indices: zarr's orthogonal selection decodes each chunk the batch touches once.

The same shuffled batches (batch 256) for every plan, interleaved rounds; prints images/s (median, range)
and each plan's ratio to zarr's read of the earlier layout. The other layouts are written once under
``data/bench/<dataset>/zarr-layouts``.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zarr  # noqa: E402
from zarr.codecs import ZstdCodec  # noqa: E402

from thesislib.kernels.gather import take_into  # noqa: E402
from thesislib.kernels.zarrchunks import ChunkReader, chunk_plan, mapped_shards  # noqa: E402
from thesislib.loaders.sampler import epoch_batches  # noqa: E402
from thesislib.paths import project_path  # noqa: E402
from thesislib.prepare import prepare  # noqa: E402
from thesislib.stores import npy, open_store  # noqa: E402
from thesislib.stores import zarr as zarr_store  # noqa: E402

BATCH = 256
SAMPLES_PER_CHUNK = (16, 64, 256)


def multi_sample_array(folder: Path, images, per_chunk: int):
    path = folder / f"chunk-{per_chunk}"
    if not (path / "zarr.json").is_file():
        out = zarr.create_array(path, shape=images.shape, dtype="uint8", chunks=(per_chunk, *images.shape[1:]),
                                chunk_key_encoding=zarr_store.CHUNK_KEYS, compressors=ZstdCodec(level=1),
                                overwrite=True)
        for start in range(0, len(images), 4096):
            out[start:start + 4096] = images[start:start + 4096]
    return zarr.open_array(path, mode="r")


def zarr_selection(array, concurrency=None):
    def read(indices):
        if concurrency is None:
            with zarr.config.set({"codec_pipeline.batch_size": len(indices)}):
                return array.get_orthogonal_selection(indices)
        with zarr.config.set({"codec_pipeline.batch_size": len(indices), "async.concurrency": concurrency}):
            return array.get_orthogonal_selection(indices)
    return read


def chunk_threads(folder, shape):
    reader = ChunkReader(chunk_plan(folder))
    out = np.empty((BATCH, *shape[1:]), np.uint8)
    return lambda indices: reader(indices, out[:len(indices)])


def shard_maps(folder, shape):
    shards = mapped_shards(folder)
    out = np.empty((BATCH, *shape[1:]), np.uint8)
    return lambda indices: take_into(shards, indices, out[:len(indices)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=40, help="batches read per plan and round")
    args = parser.parse_args(argv)
    data_dir = project_path("data/bench") / ("" if args.scale == 1 else f"scale-{args.scale:g}")
    prepare(args.dataset, source="synthetic", scale=args.scale, stores=["npy-uint8", "zarr"], data_dir=data_dir,
            progress=False)
    images = np.load(npy.images_path(open_store(data_dir, args.dataset, "npy-uint8").path, "train"), mmap_mode="r")
    folder = open_store(data_dir, args.dataset, "zarr").path / zarr_store.FOLDER / "train" / "images"
    sharded = zarr.open_array(folder, mode="r")
    layouts = data_dir / args.dataset / "zarr-layouts"
    earlier = multi_sample_array(layouts, images, 1)
    plans = {"1/chunk file, zarr (earlier layout)": zarr_selection(earlier),
             "1/chunk file, zarr async.concurrency=64": zarr_selection(earlier, 64),
             "1/chunk file, kernel chunk threads": chunk_threads(layouts / "chunk-1", images.shape),
             "sharded 1/inner chunk, zarr (the store)": zarr_selection(sharded),
             "sharded, zarr async.concurrency=64": zarr_selection(sharded, 64),
             "sharded, mapped shards (the loader)": shard_maps(folder, images.shape)}
    for per_chunk in SAMPLES_PER_CHUNK:
        plans[f"{per_chunk}/chunk, zarr read plan"] = zarr_selection(multi_sample_array(layouts, images, per_chunk))
    batches = epoch_batches(len(images), BATCH, 0, 0)[:args.batches]
    expected = [np.asarray(images[batch]) for batch in batches[:2]]
    for name, read in plans.items():  # warm up and check the pixels once
        for batch, want in zip(batches, expected):
            assert np.array_equal(read(batch), want), name
    rates = {name: [] for name in plans}
    for number in range(args.rounds):
        names = list(plans)[number % len(plans):] + list(plans)[:number % len(plans)]
        for name in names:
            start = time.perf_counter()
            for batch in batches:
                plans[name](batch)
            rates[name].append(len(batches) * BATCH / (time.perf_counter() - start))
    base = statistics.median(rates["1/chunk file, zarr (earlier layout)"])
    print(f"{args.dataset} scale {args.scale}: {len(batches)} shuffled batches of {BATCH}, {args.rounds} rounds")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:40s} {median:10,.0f} img/s  ({min(values):,.0f}..{max(values):,.0f})  "
              f"{median / base:6.2f}x the earlier layout read by zarr")


if __name__ == "__main__":
    main()
