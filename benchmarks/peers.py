"""thesislib's loaders against the physical limits, the per-sample PyTorch baselines and the peers, side by
side in one run.

    python benchmarks/peers.py [--dataset cifar10] [--scale 1] [--rounds 3] [--workers 0,2]
                               [--data-dir data/bench] [--out results/measured/<machine>/peers]
                               [--round-seconds 1.5] [--only SUBSTRING,...] [--skip SUBSTRING,...] [--list]
                               [--prepare-only]

The same images (the synthetic ``--dataset`` at ``--scale``), the same epoch (one shuffled pass over the
train split, batch 256, no model), 0 and 2 workers. The cases (``--list`` prints them), by group:

* ``limit``: one memcpy of the split in RAM; a random-order gather of each batch into a reused buffer;
* ``thesislib``: every registered loader (:func:`thesislib.loaders.loader_order`) on its fastest store,
  through the public API only (``prepare``, ``open_store``, ``make_loader``); ``files`` also on
  ``files-jpeg`` (the JPEG goals); a loader that cannot run here is a row "skipped: <reason>"; the JPEG
  loaders once more with ``decode="fast"`` (FFCV's fast DCT, approximate: named so, never counted as exact),
  so that FFCV's JPEG path is also met like for like;
* ``baseline``: per store, the per-sample PyTorch ``Dataset`` a user writes with the format's own library,
  one sample per ``__getitem__`` through a ``DataLoader`` (workers are processes): ImageFolder + Pillow for
  the image-file stores, a memory map for npy, h5py, zarr, ``txn.get``, pyarrow (the sample's row group) +
  Pillow, one TFRecord ``tf.train.Example`` at its indexed offset + Pillow, a per-sample WebDataset
  pipeline. Each thesislib loader's goal compares it with the baseline of its own store;
* ``pytorch``: a batched memory-map ``Dataset`` (a batch per ``__getitem__``);
* ``peer``: other libraries used directly on their own formats, written once from the same images: FFCV
  (raw and JPEG ``.beton``), LMDB of JPEGs, WebDataset of ``.npy``, LitData, Mosaic Streaming (MDS), DALI
  (CPU). LMDB of raw pixels and WebDataset of JPEGs are the ``lmdb`` and ``webdataset`` stores' baselines.
  A peer that is not installed or fails is a row "skipped: <reason>", never a number.

Method. Before its warm-up and before each timed round, every case reads its files once, untimed (the
store's data files, or the peer's folder), so that it is measured with a warm page cache even when the other
cases' files together exceed the RAM. Every case first runs an untimed warm-up (one epoch, or ``--warmup-seconds`` of it: page-in, first
allocations, FFCV's compilation, worker start-up paths; a thesislib loader still timing its prefetch threads
gets more warm-up until it has chosen, and the note says what it chose), which also sets its measure: a case whose epoch
takes longer than ``--round-seconds`` measures the first batches worth about that long (the note says
"first K of N batches"); a case whose epoch takes under 0.5 s repeats it within a round. Rounds are
interleaved (the case order rotates every round), so a busy machine slows every case alike; the summary
gives the median and the range of the rounds, and the goals of issue 17 as ratios of medians within this
run (:mod:`thesislib.report.peers`, shared with ``notebooks/07_peers.ipynb``).

Cache: stores are prepared under ``--data-dir``/``scale-<s>``/``<dataset>`` (``prepare`` skips a store whose
manifest matches), the peers' own files under ``.../<dataset>/peers/<name>``, each with ``complete.json``
(images, shape and the source's checksum) written last: a later run reuses them and rewrites one that is
incomplete or from other images. ``--prepare-only`` fills the cache and stops (then a timed run starts warm).

Written under ``--out``: ``<dataset>.csv`` (one row per case, worker count and round),
``<dataset>.env.json`` (machine, library versions, git commit, settings) and ``<dataset>.png``.
"""

import argparse
import hashlib
import io
import json
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from thesislib.loaders import DEFAULT_STORES, loader_order, make_loader  # noqa: E402
from thesislib.loaders import unavailable_reason as loader_unavailable  # noqa: E402
from thesislib.loaders.sampler import epoch_batches  # noqa: E402
from thesislib.pagecache import read_through, store_files  # noqa: E402
from thesislib.paths import project_path  # noqa: E402
from thesislib.prepare import prepare  # noqa: E402
from thesislib.report import peers as report  # noqa: E402
from thesislib.stores import STORES, open_store  # noqa: E402

warnings.filterwarnings("ignore", message="The given NumPy array is not writable")  # peers' read-only views

BATCH = 256
DATA_DIR = "data/bench"
MIN_ROUND_S = 0.5   # a round of a fast case repeats its epoch at least this long
WARMUP_EPOCHS_TO_CHOOSE = 10  # more warm-up epochs, at most, for a loader still choosing its prefetch threads
FASTEST_STORES = {"files": ["files-bmp", "files-jpeg"], "numpy": ["npy-uint8"], "memory": ["npy-uint8"]}
RELEASED = {"lmdb"}  # store kinds whose files a case must let go of while other cases run: LMDB opens a file
                     # once per process, so one case's open environment would break the next case's. A
                     # thesislib case closes its loader after its epochs of a round and reads one whole
                     # untimed epoch after reopening, as in its warm-up; a per-sample baseline closes after
                     # each epoch (its open is one lmdb.open)
UNORDERED = {"dali": "DALI's own order", "tfdata": "streaming order", "webdataset": "streaming order"}
ONE_WORKER_COUNT = {"memory": "num_workers unused (the split is resident)"}
FAST_JPEG = [("tfrecord", "tfrecord"), ("files", "files-jpeg")]  # also run with decode="fast"
FAST_NOTE = "fast DCT as FFCV decodes: approximate"
NOTES = {"dali": "DALI's CPU decoder, threads; 0 workers -> 1 thread", "torchvision": "per-sample ImageFolder"}


class Skip(Exception):
    """A case that cannot run here; its message is the reason shown in the table."""


@dataclass
class Context:
    dataset: str
    scale: float
    data_dir: Path
    images: np.ndarray        # the train split's raw pixels (memory map of the npy-uint8 store)
    labels: np.ndarray

    @property
    def count(self) -> int:
        return len(self.labels)

    @property
    def epoch_batches(self) -> int:
        return -(-self.count // BATCH)

    def batches(self, epoch: int) -> list:
        return epoch_batches(self.count, BATCH, seed=0, epoch=epoch)

    def store(self, name: str):
        return open_store(self.data_dir, self.dataset, name)

    @cached_property
    def in_ram(self) -> np.ndarray:
        return np.ascontiguousarray(self.images)

    @cached_property
    def stamp(self) -> str:
        """The source images' identity (the npy-uint8 store's file checksums): a peer's files from other
        images are rewritten."""
        return hashlib.sha256(json.dumps(self.store("npy-uint8").manifest["files_sha256"],
                                         sort_keys=True).encode()).hexdigest()[:16]

    @property
    def peers_dir(self) -> Path:
        return self.data_dir / self.dataset / "peers"


@dataclass
class Case:
    group: str                # limit, thesislib, baseline, pytorch, peer
    name: str
    loader: str
    store: str
    pixels: str               # raw, jpeg or png: what a read decodes
    workers: int
    make: object              # (context, workers) -> stream; stream(epoch) yields the size of each batch
    note: str = ""
    stream: object = None
    epochs_per_round: int = 1
    max_batches: int = None   # None: whole epochs
    skipped: str = ""
    rounds: list = field(default_factory=list)   # (images, seconds, batches) per round
    folder: str = ""          # a peer's folder under peers/ (a thesislib or baseline case reads its store's)
    reads_store: str = ""     # a peer that reads one of the stores (DALI on files-jpeg)
    options: dict = field(default_factory=dict)  # a thesislib case's loader options beyond the common ones

    def files(self, ctx) -> list:
        """The files this case reads, so that each timed round can start with them in the page cache."""
        if self.folder:
            root = ctx.peers_dir / self.folder
            return sorted(path for path in root.rglob("*") if path.is_file()) if root.is_dir() else []
        store = self.store or self.reads_store
        return store_files(ctx.store(store).path) if store else []


# ---- limits -------------------------------------------------------------------------------------------

def memcpy_limit(ctx, workers):
    source = ctx.in_ram
    target = np.empty_like(source)

    def stream(_):
        np.copyto(target, source)
        yield len(source)
    return stream


def gather_limit(ctx, workers):
    source, out = ctx.in_ram, np.empty((BATCH, *ctx.images.shape[1:]), np.uint8)

    def stream(epoch):
        for batch in ctx.batches(epoch):
            np.take(source, batch, axis=0, out=out[:len(batch)], mode="clip")
            yield len(batch)
    return stream


# ---- thesislib, through the public API ----------------------------------------------------------------

def thesislib_loader(loader, store, **options):
    def make(ctx, workers):
        reason = loader_unavailable(loader)
        if reason:
            raise Skip(reason)
        made = make_loader(loader, ctx.store(store), "train", batch_size=BATCH, num_workers=workers, **options)

        def stream(epoch):
            made.set_epoch(epoch)
            for _, labels in made:
                yield len(labels)
        stream.loader = made  # set_up reads what its prefetcher chose (threads_note)
        if STORES[store].kind in RELEASED:
            stream.release = made.close  # see RELEASED
        return stream
    return make


def prefetcher_of(stream):
    """The prefetcher of a thesislib case's loader (None for other cases, or before a first epoch)."""
    return getattr(getattr(stream, "loader", None), "prefetcher", None)


def still_measuring(stream) -> bool:
    """True while a thesislib loader's prefetcher is still timing its thread counts (it decides within its
    first WINDOW * TRIALS * 3 batches; see ``thesislib.kernels.prefetch``)."""
    prefetcher = prefetcher_of(stream)
    return prefetcher is not None and prefetcher.threads > 0 and prefetcher.choice is None


def threads_note(stream) -> str:
    """What a thesislib loader's prefetcher chose for its ``num_workers`` by measuring in the warm-up
    (``thesislib.kernels.prefetch``): the note says it, since a loader that reads in the loop's thread with 2
    workers runs the same code as with 0."""
    prefetcher = prefetcher_of(stream)
    if prefetcher is None or prefetcher.threads == 0:
        return ""
    if prefetcher.choice is None:
        return "prefetch threads still measured after the warm-up"
    if prefetcher.choice == 0 and not any(prefetcher.timings[count] for count in prefetcher.timings if count):
        return "read in the loop's thread: the reads kept their cores busy, with nothing for threads to overlap"
    if prefetcher.choice == 0:
        return "read in the loop's thread: prefetch threads measured no faster"
    return f"{prefetcher.choice} prefetch thread{'s' if prefetcher.choice > 1 else ''} (measured fastest)"


# ---- per-sample PyTorch baselines, one per store kind --------------------------------------------------

class PerSample(torch.utils.data.Dataset):
    """What a user writes: one sample per ``__getitem__``, files opened lazily in the reading process."""

    def __init__(self, path, count, shape):
        self.path, self.count, self.shape, self.handle = Path(path), count, tuple(shape), None

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if self.handle is None:
            self.handle = self.open()
        image, label = self.sample(self.handle, int(index))
        return torch.from_numpy(np.array(image)), int(label)

    def __getstate__(self):
        return {**self.__dict__, "handle": None}

    def close(self) -> None:
        """Close what :meth:`open` opened in this process (an LMDB environment may be open once per process,
        and a forked worker inherits the record of it)."""
        if self.handle is not None and hasattr(self.handle[0], "close"):
            self.handle[0].close()
        self.handle = None


def decode_with_pillow(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


class NpySample(PerSample):
    def open(self):
        return np.load(self.path / "train_images.npy", mmap_mode="r"), np.load(self.path / "train_labels.npy")

    def sample(self, handle, index):
        return handle[0][index], handle[1][index]


class Hdf5Sample(PerSample):
    def open(self):
        import h5py

        file = h5py.File(self.path / "data.h5", "r")
        return file, file["train/images"], file["train/labels"][()]

    def sample(self, handle, index):
        return handle[1][index], handle[2][index]


class ZarrSample(PerSample):
    def open(self):
        import zarr

        group = zarr.open_group(self.path / "data.zarr", mode="r")
        return group["train/images"], group["train/labels"][:]

    def sample(self, handle, index):
        return np.asarray(handle[0][index]), handle[1][index]


class LmdbSample(PerSample):
    def open(self):
        import lmdb

        env = lmdb.open(str(self.path / "train.lmdb"), readonly=True, lock=False, readahead=False)
        with env.begin() as txn:
            labels = np.frombuffer(txn.get(b"__labels__"), "<i8")
        return env, labels

    def sample(self, handle, index):
        with handle[0].begin() as txn:
            value = txn.get(index.to_bytes(8, "big"))
        return np.frombuffer(value, np.uint8).reshape(self.shape), handle[1][index]


class ParquetSample(PerSample):
    """The sample's row group read by pyarrow (Parquet's unit of reading), its PNG decoded by Pillow."""

    def open(self):
        import pyarrow.parquet as pq

        file = pq.ParquetFile(self.path / "train.parquet", memory_map=True)
        sizes = [file.metadata.row_group(group).num_rows for group in range(file.num_row_groups)]
        return file, np.cumsum([0] + sizes), file.read(columns=["label"]).column("label").to_numpy()

    def sample(self, handle, index):
        file, starts, labels = handle
        group = int(np.searchsorted(starts, index, side="right")) - 1
        image = file.read_row_group(group, columns=["image"]).column("image")[index - starts[group]]
        return decode_with_pillow(image["bytes"].as_py()), labels[index]


class TfrecordSample(PerSample):
    """One record read at its offset from the shards' ``.idx`` files, parsed as a ``tf.train.Example`` by
    TensorFlow's protobuf, the JPEG decoded by Pillow."""

    def open(self):
        shards = sorted(self.path.glob("train-*.tfrecord"))
        rows = [np.loadtxt(path.with_suffix(".idx"), dtype=np.int64, ndmin=2) for path in shards]
        where = np.concatenate([np.column_stack([np.full(len(r), n), r]) for n, r in enumerate(rows)])
        return [os.open(path, os.O_RDONLY) for path in shards], where, tensorflow().train.Example

    def sample(self, handle, index):
        files, where, example_type = handle
        shard, offset, length = (int(value) for value in where[index])
        record = os.pread(files[shard], length, offset)
        features = example_type.FromString(record[12:-4]).features.feature   # framing: length, CRC; CRC
        return (decode_with_pillow(features["image/encoded"].bytes_list.value[0]),
                features["image/class/label"].int64_list.value[0])


def tensorflow():
    """TensorFlow, imported after PyTorch's compiler stack (imported after TensorFlow it crashes)."""
    import importlib

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    importlib.import_module("torch._dynamo")
    import tensorflow as tf
    return tf


def files_dataset(store, ctx):
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(store.path / "train"), transform=pil_to_tensor)


def pil_to_tensor(image):
    return torch.from_numpy(np.array(image))


def per_sample(dataset_class):
    def dataset(store, ctx):
        return dataset_class(store.path, ctx.count, ctx.images.shape[1:])
    return dataset


def per_sample_baseline(make_dataset):
    def make_for(store):
        return lambda ctx, workers: per_sample_stream(make_dataset(ctx.store(store), ctx), ctx, workers,
                                                      STORES[store].kind in RELEASED)
    return make_for


def per_sample_stream(dataset, ctx, workers, close_each_epoch=False):
    """The dataset's samples in the epoch's shuffled order, batched by the DataLoader."""
    def stream(epoch):
        order = np.concatenate(ctx.batches(epoch)).tolist()
        try:
            for _, labels in torch.utils.data.DataLoader(dataset, batch_size=BATCH, sampler=order,
                                                         num_workers=workers):
                yield len(labels)
        finally:
            if close_each_epoch:
                dataset.close()
    return stream


def webdataset_baseline(ctx, workers):
    """The webdataset store through a per-sample WebDataset pipeline and the DataLoader's batching."""
    wds = need("webdataset")
    urls = sorted(str(path) for path in ctx.store("webdataset").path.glob("train-*.tar"))
    dataset = (wds.WebDataset(urls, shardshuffle=len(urls), empty_check=False).shuffle(1000)
               .decode("rgb8").to_tuple("jpg", "cls"))

    def stream(_):
        for _, labels in torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=workers):
            yield len(labels)
    return stream


BASELINES = {  # store kind -> (case name, store -> make); the baseline of every store of that kind
    "files": ("ImageFolder + Pillow, per file", per_sample_baseline(files_dataset)),
    "npy": ("memmap, per sample", per_sample_baseline(per_sample(NpySample))),
    "hdf5": ("h5py, per sample", per_sample_baseline(per_sample(Hdf5Sample))),
    "zarr": ("zarr, per sample", per_sample_baseline(per_sample(ZarrSample))),
    "lmdb": ("LMDB txn.get, per sample", per_sample_baseline(per_sample(LmdbSample))),
    "parquet": ("pyarrow row group + Pillow, per sample", per_sample_baseline(per_sample(ParquetSample))),
    "tfrecord": ("tf.train.Example at its offset + Pillow, per sample",
                 per_sample_baseline(per_sample(TfrecordSample))),
    "webdataset": ("WebDataset pipeline, per sample", lambda store: webdataset_baseline),
}


# ---- plain PyTorch, batched ---------------------------------------------------------------------------

class BatchMemmap(NpySample):
    """A batch per ``__getitem__``: fancy indexing of the memory map."""

    def __getitem__(self, indices):
        if self.handle is None:
            self.handle = self.open()
        return torch.from_numpy(self.handle[0][indices]), torch.from_numpy(self.handle[1][indices])


def pytorch_batched(ctx, workers):
    dataset = BatchMemmap(ctx.store("npy-uint8").path, ctx.count, ctx.images.shape[1:])

    def stream(epoch):
        for _, labels in torch.utils.data.DataLoader(dataset, batch_size=None, sampler=ctx.batches(epoch),
                                                     num_workers=workers):
            yield len(labels)
    return stream


# ---- peers --------------------------------------------------------------------------------------------

def need(module: str, install: str = None):
    try:
        return __import__(module)
    except Exception as exc:  # an optional peer that does not import is a skipped row, whatever it raised
        raise Skip(f"{module} not importable ({type(exc).__name__}: {str(exc)[:80]}): "
                   f"pip install {install or module}") from exc


def peer_folder(ctx, name: str, write) -> Path:
    """``peers/<name>``, written by ``write(folder)`` unless a complete copy of the same images is there."""
    folder = ctx.peers_dir / name
    marker = folder / "complete.json"
    expected = {"images": ctx.count, "shape": list(ctx.images.shape[1:]), "source": ctx.stamp}
    if marker.is_file() and json.loads(marker.read_text()) == expected:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    write(folder)
    marker.write_text(json.dumps(expected))
    print(f"  wrote peers/{name} in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def jpeg_paths(ctx) -> list:
    """The files-jpeg store's train files in sample order (``train/<class>/<index:06d>.jpg``)."""
    return sorted(ctx.store("files-jpeg").path.glob("train/*/*.jpg"), key=lambda path: path.name)


def jpeg_bytes(ctx) -> list:
    """The files-jpeg store's bytes of each train sample, in sample order."""
    return [path.read_bytes() for path in jpeg_paths(ctx)]


class PairDataset:
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])


def ffcv_peer(jpeg: bool):
    def make(ctx, workers):
        need("ffcv", "ffcv (needs pkg-config libturbojpeg0-dev libopencv-dev)")
        from ffcv.fields import IntField, NDArrayField, RGBImageField
        from ffcv.fields.decoders import IntDecoder, NDArrayDecoder, SimpleRGBImageDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import ToTensor
        from ffcv.writer import DatasetWriter

        def write(folder):
            image = (RGBImageField(write_mode="jpg", jpeg_quality=90) if jpeg
                     else NDArrayField(np.dtype("uint8"), ctx.images.shape[1:]))
            DatasetWriter(str(folder / "data.beton"), {"image": image, "label": IntField()}, num_workers=2
                          ).from_indexed_dataset(PairDataset(ctx.in_ram, ctx.labels))

        path = peer_folder(ctx, f"ffcv-{'jpeg' if jpeg else 'raw'}", write) / "data.beton"
        image = [SimpleRGBImageDecoder() if jpeg else NDArrayDecoder(), ToTensor()]
        loader = Loader(str(path), batch_size=BATCH, num_workers=max(1, workers), order=OrderOption.RANDOM,
                        pipelines={"image": image, "label": [IntDecoder(), ToTensor()]}, seed=0)

        def stream(_):
            for _, labels in loader:
                yield len(labels)
        return stream
    return make


LMDB_ENVIRONMENTS = {}  # LMDB allows one open environment per path and process; a forked worker inherits
                        # the parent's record of it, so the parent closes its own before workers start


def close_lmdb_environments() -> None:
    for key in [key for key in LMDB_ENVIRONMENTS if key[0] == os.getpid()]:
        LMDB_ENVIRONMENTS.pop(key).close()


def lmdb_environment(path: str):
    import lmdb

    key = (os.getpid(), path)
    if key not in LMDB_ENVIRONMENTS:
        LMDB_ENVIRONMENTS[key] = lmdb.open(path, readonly=True, lock=False, readahead=False)
    return LMDB_ENVIRONMENTS[key]


class LmdbJpegBatches(torch.utils.data.Dataset):
    """A batch per ``__getitem__``: one read transaction, each JPEG decoded by Pillow."""

    def __init__(self, path, shape, labels):
        self.path, self.shape, self.labels = str(path), shape, labels

    def __getitem__(self, indices):
        out = np.empty((len(indices), *self.shape), np.uint8)
        with lmdb_environment(self.path).begin(buffers=True) as txn:
            for row, index in enumerate(indices):
                out[row] = decode_with_pillow(bytes(txn.get(int(index).to_bytes(8, "big"))))
        return torch.from_numpy(out), torch.from_numpy(self.labels[indices])


def lmdb_jpeg_peer(ctx, workers):
    lmdb = need("lmdb")

    def write(folder):
        env = lmdb.open(str(folder), map_size=4 * (ctx.images.nbytes + 2**28), subdir=True, lock=False)
        with env.begin(write=True) as txn:
            for index, value in enumerate(jpeg_bytes(ctx)):
                txn.put(index.to_bytes(8, "big"), value)
        env.close()

    dataset = LmdbJpegBatches(peer_folder(ctx, "lmdb-jpeg", write), ctx.images.shape[1:], ctx.labels)

    def stream(epoch):
        if workers:
            close_lmdb_environments()
        for _, labels in torch.utils.data.DataLoader(dataset, batch_size=None, sampler=ctx.batches(epoch),
                                                     num_workers=workers):
            yield len(labels)
    return stream


def webdataset_raw_peer(ctx, workers, shards: int = 16):
    wds = need("webdataset")

    def write(folder):
        for number in range(shards):
            with wds.TarWriter(str(folder / f"shard-{number:03d}.tar")) as sink:
                for index in range(number, ctx.count, shards):
                    sink.write({"__key__": f"{index:06d}", "cls": int(ctx.labels[index]),
                                "npy": np.ascontiguousarray(ctx.images[index])})

    folder = peer_folder(ctx, "wds-raw", write)
    urls = sorted(str(path) for path in folder.glob("shard-*.tar"))
    dataset = (wds.WebDataset(urls, shardshuffle=len(urls), empty_check=False).shuffle(1000)
               .decode().to_tuple("npy", "cls").batched(BATCH))
    loader = wds.WebLoader(dataset, batch_size=None, num_workers=workers)

    def stream(_):
        for _, labels in loader:
            yield len(labels)
    return stream


def litdata_sample(pair):
    image, label = pair
    return {"image": image, "label": label}


def litdata_peer(ctx, workers):
    litdata = need("litdata")

    def write(folder):
        import multiprocessing

        method = multiprocessing.get_start_method(allow_none=True)
        inputs = [(ctx.in_ram[i], int(ctx.labels[i])) for i in range(ctx.count)]
        try:
            litdata.optimize(fn=litdata_sample, inputs=inputs, output_dir=str(folder / "data"),
                             chunk_bytes="16MB", num_workers=1, mode="overwrite")
        finally:  # optimize() makes "spawn" the default start method: every later DataLoader would spawn
            multiprocessing.set_start_method(method, force=True)

    folder = peer_folder(ctx, "litdata-raw", write) / "data"
    loader = litdata.StreamingDataLoader(litdata.StreamingDataset(str(folder), shuffle=True, seed=0),
                                         batch_size=BATCH, num_workers=workers)

    def stream(_):
        for batch in loader:
            yield len(batch["label"])
    return stream


def mosaic_peer(ctx, workers):
    need("streaming", "mosaicml-streaming")
    from streaming import MDSWriter, StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    def write(folder):
        shape = ",".join(str(size) for size in ctx.images.shape[1:])
        with MDSWriter(out=str(folder / "data"), columns={"image": f"ndarray:uint8:{shape}", "label": "int"}) as out:
            for index in range(ctx.count):
                out.write({"image": ctx.in_ram[index], "label": int(ctx.labels[index])})

    folder = peer_folder(ctx, "mds-raw", write) / "data"
    clean_stale_shared_memory()
    dataset = StreamingDataset(local=str(folder), shuffle=True, batch_size=BATCH, shuffle_seed=workers)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=workers)

    def stream(_):
        for batch in loader:
            yield len(batch["label"])
    return stream


def dali_peer(ctx, workers):
    need("nvidia.dali", "nvidia-dali-cuda130")
    from nvidia.dali import fn, pipeline_def, types

    root = str(ctx.store("files-jpeg").path / "train")

    @pipeline_def(batch_size=BATCH, num_threads=max(1, workers), device_id=None)
    def pipeline():
        jpegs, labels = fn.readers.file(file_root=root, random_shuffle=True, seed=0, name="reader")
        return fn.decoders.image(jpegs, device="cpu", output_type=types.RGB), labels

    pipe = pipeline()
    pipe.build()
    size = pipe.epoch_size("reader")

    def stream(_):
        left = size
        while left > 0:
            _, labels = pipe.run()
            yield min(len(labels), left)
            left -= len(labels)
    return stream


# ---- the table of cases -------------------------------------------------------------------------------

def pixels_of(store: str) -> str:
    """What reading the store decodes: its image codec (the parquet store holds PNGs), else raw pixels."""
    return STORES[store].codec or ("png" if STORES[store].kind == "parquet" else "raw")


def thesislib_cases(workers) -> list:
    rows = []
    for loader in loader_order():
        counts = [0] if loader in ONE_WORKER_COUNT else workers
        note = ONE_WORKER_COUNT.get(loader, NOTES.get(loader, ""))
        for store in FASTEST_STORES.get(loader, [DEFAULT_STORES[loader]]):
            rows += [Case("thesislib", loader, loader, store, pixels_of(store), count,
                          thesislib_loader(loader, store), note) for count in counts]
    fast = {"decode": "fast"}
    for loader, store in FAST_JPEG:
        rows += [Case("thesislib", f"{loader} decode=fast", loader, store, "jpeg", count,
                      thesislib_loader(loader, store, **fast), FAST_NOTE, options=fast) for count in workers]
    return rows


def baseline_cases(stores, workers) -> list:
    rows = []
    for store in dict.fromkeys(stores):
        name, make = BASELINES[STORES[store].kind]
        rows += [Case("baseline", name, "", store, pixels_of(store), count, make(store)) for count in workers]
    return rows


def cases(workers) -> list:
    ours = thesislib_cases(workers)
    table = [Case("limit", "memcpy of the array", "", "", "raw", 0, memcpy_limit, "np.copyto of the split in RAM"),
             Case("limit", "random gather into a buffer", "", "", "raw", 0, gather_limit, "np.take, 1 thread")]
    table += ours + baseline_cases([case.store for case in ours], workers)
    table += [Case("pytorch", "batched memmap Dataset", "", "npy-uint8", "raw", count, pytorch_batched)
              for count in workers]
    peers = [("FFCV raw .beton", "raw", ffcv_peer(False), "threads; 0 workers -> 1", "ffcv-raw"),
             ("FFCV JPEG .beton", "jpeg", ffcv_peer(True), "threads; 0 workers -> 1; FFCV's own JPEG encode",
              "ffcv-jpeg"),
             ("LMDB of JPEGs, batch txn + Pillow", "jpeg", lmdb_jpeg_peer, "", "lmdb-jpeg"),
             ("WebDataset of .npy, batched pipeline", "raw", webdataset_raw_peer, "shuffle buffer 1000", "wds-raw"),
             ("LitData", "raw", litdata_peer, "", "litdata-raw"),
             ("Mosaic Streaming MDS", "raw", mosaic_peer, "", "mds-raw"),
             ("DALI direct on files-jpeg (CPU)", "jpeg", dali_peer, "threads; 0 workers -> 1", "")]
    table += [Case("peer", name, "", "", pixels, count, make, note, folder=folder,
                   reads_store="" if folder else "files-jpeg")
              for name, pixels, make, note, folder in peers for count in workers]
    return table


def selected(all_cases, only, skip) -> list:
    def text(case):
        return f"{case.group} {case.name} {case.store}".lower()
    keep = [case for case in all_cases if not only or any(part.lower() in text(case) for part in only)]
    return [case for case in keep if not any(part.lower() in text(case) for part in skip)]


def needed_stores(cases_) -> list:
    """The stores the cases read, plus npy-uint8 (the images everything starts from) and files-jpeg for the
    JPEG peers."""
    names = {"npy-uint8"} | {case.store for case in cases_ if case.store}
    if any(case.group == "peer" and case.pixels == "jpeg" for case in cases_):
        names.add("files-jpeg")
    return [name for name in STORES if name in names]


# ---- measuring ----------------------------------------------------------------------------------------

@dataclass
class Drained:
    images: int = 0
    batches: int = 0
    seconds: float = 0.0
    first_s: float = 0.0      # until the first batch arrived (start-up: workers, pipelines, compilation)
    first_images: int = 0


def drain(stream, epoch, max_batches=None, max_seconds=None) -> Drained:
    """One epoch of ``stream``, or its first ``max_batches`` batches, or what arrives within ``max_seconds``
    (at least two batches); the stream is closed either way (its workers stop)."""
    start, got = time.perf_counter(), Drained()
    iterator = stream(epoch)
    try:
        for size in iterator:
            got.images, got.batches = got.images + size, got.batches + 1
            if got.batches == 1:
                got.first_s, got.first_images = time.perf_counter() - start, size
            if (max_batches and got.batches >= max_batches) or (
                    max_seconds and got.batches >= 2 and time.perf_counter() - start >= max_seconds):
                break
    finally:
        iterator.close()
    got.seconds = time.perf_counter() - start
    return got


def set_up(case, ctx, warmup_s: float, round_s: float) -> None:
    """Make the case's stream, run its untimed warm-up and choose its measure from it (whole epochs,
    repeated to MIN_ROUND_S; or a prefix worth about ``round_s``), or mark it skipped with the reason."""
    try:
        case.stream = case.make(ctx, case.workers)
        read_through(case.files(ctx))
        warm = drain(case.stream, 0, max_seconds=warmup_s)
        for epoch in range(1, WARMUP_EPOCHS_TO_CHOOSE + 1):  # a loader still timing its prefetch threads
            if not still_measuring(case.stream):            # finishes that here, untimed
                break
            warm = drain(case.stream, epoch, max_seconds=warmup_s)
        release(case)
    except Skip as exc:
        case.skipped = str(exc)
        return
    except Exception as exc:  # a case failing on this machine is reported, not fatal
        case.skipped = failure(exc)
        return
    if not warm.images:
        case.skipped = "failed: no images in the warm-up"
        return
    case.note = "; ".join(filter(None, [case.note, threads_note(case.stream)]))
    steady = (warm.images - warm.first_images) / (warm.seconds - warm.first_s) if warm.batches > 1 else \
        warm.images / warm.seconds          # images/s once started
    start_s = max(0.0, warm.first_s - warm.first_images / steady)
    epoch_s = start_s + ctx.count / steady
    if epoch_s <= round_s:
        case.epochs_per_round = max(1, min(50, math.ceil(MIN_ROUND_S / epoch_s)))
    else:
        case.max_batches = min(ctx.epoch_batches, max(2, math.ceil(max(round_s - start_s, 0.2 * round_s)
                                                                    * steady / BATCH)))
        case.note = "; ".join(filter(None, [case.note, f"first {case.max_batches} of {ctx.epoch_batches} batches"]))


def releases(case) -> bool:
    """True if the case must let go of its files between rounds (:data:`RELEASED`)."""
    return hasattr(case.stream, "release")


def release(case) -> None:
    """Let go of the files a case holds open, if it must between rounds."""
    if releases(case):
        case.stream.release()


def write_peer_files(cases_, ctx) -> None:
    """Make each peer case once (which writes its files into the cache), without measuring."""
    for case in {case.name: case for case in cases_ if case.group == "peer"}.values():
        try:
            case.make(ctx, case.workers)
            print(f"peer files of {case.name}: ready", flush=True)
        except Exception as exc:  # a peer missing here is reported, not fatal
            print(f"peer files of {case.name}: {exc if isinstance(exc, Skip) else failure(exc)}", flush=True)


def failure(exc) -> str:
    text = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"failed: {type(exc).__name__}: {text}"


def run_round(cases_, number: int, ctx) -> None:
    live = [case for case in cases_ if not case.skipped]
    shift = number % max(1, len(live))
    for case in live[shift:] + live[:shift]:
        images = batches = 0
        seconds = 0.0
        try:
            read_through(case.files(ctx))   # a warm page cache: the other cases' files may have evicted these
            if releases(case):
                drain(case.stream, 0)  # reopened: one whole untimed epoch maps its pages again (RELEASED)
            for repeat in range(case.epochs_per_round):
                got = drain(case.stream, 1 + number * case.epochs_per_round + repeat, case.max_batches)
                images, batches, seconds = images + got.images, batches + got.batches, seconds + got.seconds
        except Exception as exc:
            case.skipped = failure(exc)
            continue
        finally:
            release(case)
        case.rounds.append((images, seconds, batches / case.epochs_per_round))
        print(f"  round {number + 1} {case.group}: {case.name} [{case.store}] w={case.workers}: "
              f"{images / seconds:,.0f} img/s", flush=True)


def rows_of(cases_, ctx) -> list:
    """One row per case and round (one row with the reason for a skipped case), :data:`report.COLUMNS`."""
    rows = []
    for case in cases_:
        base = {"dataset": ctx.dataset, "scale": ctx.scale, "group": case.group, "case": case.name,
                "loader": case.loader, "store": case.store, "pixels": case.pixels, "workers": case.workers,
                "epoch_batches": ctx.epoch_batches, "note": case.note, "skipped": case.skipped}
        measured = case.rounds if not case.skipped else []
        rows += [{**base, "round": number + 1, "images": images, "seconds": round(seconds, 6),
                  "img_s": round(images / seconds, 1), "batches": batches}
                 for number, (images, seconds, batches) in enumerate(measured)]
        if not measured:
            rows.append({**base, "skipped": case.skipped or "not measured"})
    return rows


# ---- exactness and environment ------------------------------------------------------------------------

def exactness(ctx, cases_) -> dict:
    """{(loader, store): what its JPEG pixels are} for each thesislib loader that decodes JPEG: in the
    sampler's order, its first unshuffled batch against Pillow's decode of the same files-jpeg files (the
    store's reference decode); the others cannot be lined up with the files and say so."""
    found, reference = {}, None
    for case in cases_:
        key = (case.name, case.store)
        if case.group != "thesislib" or case.pixels != "jpeg" or case.skipped or key in found:
            continue
        if case.loader in UNORDERED:
            found[key] = f"pixels not compared ({UNORDERED[case.loader]})"
            continue
        if reference is None:
            reference = np.stack([decode_with_pillow(path.read_bytes()) for path in jpeg_paths(ctx)[:BATCH]])
            reference = reference.astype(np.int16)
        try:
            with make_loader(case.loader, ctx.store(case.store), "train", batch_size=BATCH, shuffle=False,
                             **case.options) as made:
                images = next(iter(made))[0].numpy().astype(np.int16)
        except Exception as exc:
            found[key] = f"pixels not compared ({failure(exc)})"
            continue
        diff = np.abs(images - reference)
        found[key] = "pixels = Pillow's" if not diff.any() else (
            f"pixels differ from Pillow's: max |diff| {diff.max()}, mean {diff.mean():.3f}, checksum "
            f"{100 * (images.sum() - reference.sum()) / reference.sum():+.3f}%")
    return found


def add_exactness(cases_, found: dict) -> None:
    """Each JPEG case's note gains what its pixels are (exactness beside speed)."""
    for case in cases_:
        if (case.name, case.store) in found and case.group == "thesislib":
            case.note = "; ".join(filter(None, [case.note, found[(case.name, case.store)]]))


DISTRIBUTIONS = {"torch": r"torch", "torchvision": r"torchvision", "numpy": r"numpy", "pillow": r"pillow",
                 "h5py": r"h5py", "zarr": r"zarr", "lmdb": r"lmdb", "pyarrow": r"pyarrow",
                 "tensorflow": r"tensorflow(-cpu)?", "ffcv": r"ffcv", "litdata": r"litdata",
                 "streaming": r"mosaicml-streaming", "webdataset": r"webdataset",
                 "dali": r"nvidia-dali(-cuda\d+)?", "simplejpeg": r"simplejpeg", "pyturbojpeg": r"pyturbojpeg",
                 "thesislib": r"thesislib"}


def environment(ctx, args, load_before, started) -> dict:
    import platform

    import psutil

    from thesislib.bench import git_commit
    from thesislib.envinfo import cpu_model, installed_distributions, package_version
    from thesislib.studyplan import this_machine

    installed = installed_distributions()
    return {"machine": this_machine(), "host": platform.node(), "cpu": cpu_model(), "cpu_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "git_commit": git_commit(),
            "versions": {name: package_version(pattern, installed) for name, pattern in DISTRIBUTIONS.items()},
            "dataset": ctx.dataset, "scale": ctx.scale, "train_images": ctx.count,
            "image_shape": list(ctx.images.shape[1:]), "batch_size": BATCH, "rounds": args.rounds,
            "round_seconds": args.round_seconds, "warmup_seconds": args.warmup_seconds,
            "load_before": [round(value, 2) for value in load_before],
            "load_after": [round(value, 2) for value in os.getloadavg()],
            "run_minutes": round((time.time() - started) / 60, 1)}


# ---- main ---------------------------------------------------------------------------------------------

def parse(argv):
    from thesislib.studyplan import this_machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "tinyimagenet"])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="0,2", help="comma-separated worker counts")
    parser.add_argument("--data-dir", default=DATA_DIR, help="the cache of stores and peer files (per scale)")
    parser.add_argument("--out", default=f"results/measured/{this_machine()}/peers")
    parser.add_argument("--round-seconds", type=float, default=1.5,
                        help="a case whose epoch takes longer measures a prefix worth about this long")
    parser.add_argument("--warmup-seconds", type=float, default=1.0, help="longest warm-up of a case")
    parser.add_argument("--only", default="", help="comma-separated substrings of 'group name store' to run")
    parser.add_argument("--skip", default="", help="comma-separated substrings of 'group name store' to leave out")
    parser.add_argument("--list", action="store_true", help="print the cases and stop")
    parser.add_argument("--prepare-only", action="store_true",
                        help="fill the cache (stores and the peers' files) and stop, measuring nothing")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    import pandas as pd

    args = parse(argv)
    started, load_before = time.time(), os.getloadavg()
    workers = [int(part) for part in args.workers.split(",")]
    all_cases = selected(cases(workers), [p for p in args.only.split(",") if p], [p for p in args.skip.split(",") if p])
    if args.list:
        print("\n".join(f"{case.group}: {case.name}{f' [{case.store}]' if case.store else ''} w={case.workers}"
                        for case in all_cases))
        return
    data_dir = project_path(args.data_dir) / f"scale-{args.scale:g}"
    prepare(args.dataset, source="synthetic", scale=args.scale, stores=needed_stores(all_cases), seed=0,
            data_dir=data_dir, progress=False)
    prepared_s = time.time() - started
    store = open_store(data_dir, args.dataset, "npy-uint8")
    ctx = Context(args.dataset, args.scale, data_dir, np.load(store.path / "train_images.npy", mmap_mode="r"),
                  np.load(store.path / "train_labels.npy"))
    print(f"{args.dataset} scale {args.scale:g}: {ctx.count} train images {ctx.images.shape[1:]}, batch {BATCH}, "
          f"{args.rounds} interleaved rounds; stores ready in {prepared_s:.0f} s (cache {data_dir})", flush=True)
    if args.prepare_only:
        write_peer_files(all_cases, ctx)
        return
    for case in all_cases:
        set_up(case, ctx, args.warmup_seconds, args.round_seconds)
        print(f"set up {case.group}: {case.name} [{case.store}] w={case.workers}: {case.skipped or 'ready'}"
              f"{'' if case.skipped else f' ({case.note})' if case.note else ''}", flush=True)
    for number in range(args.rounds):
        run_round(all_cases, number, ctx)
    found = exactness(ctx, all_cases)
    add_exactness(all_cases, found)
    out = project_path(args.out)
    rows = rows_of(all_cases, ctx)
    report.write_rounds(rows, report.rounds_path(out, args.dataset))
    summary = report.summarize(pd.DataFrame(rows, columns=report.COLUMNS))
    env = environment(ctx, args, load_before, started)
    report.write_environment(env, report.env_path(out, args.dataset))
    title = f"{args.dataset} (scale {args.scale:g}), {env['machine']}, {args.rounds} rounds"
    report.save_figure(report.peers_figure(summary, title), report.figure_path(out, args.dataset))
    with pd.option_context("display.width", 250, "display.max_colwidth", 70):
        print(f"\n{title}\n{report.display_table(summary).to_string(index=False)}")
    print("\nJPEG pixels against Pillow's decode of files-jpeg (first 256 train images, unshuffled):")
    print("\n".join(f"  {loader} [{store}]: {text}" for (loader, store), text in found.items()))
    print("\nGoals of issue 17, as ratios of medians in this run:")
    print("\n".join("  " + line for line in report.goal_lines(report.goals(summary, args.dataset))))
    print(f"\nwritten under {out}: {args.dataset}.csv, {args.dataset}.env.json, {args.dataset}.png "
          f"({(time.time() - started) / 60:.1f} min in all)")


if __name__ == "__main__":
    main()
