"""thesislib's loaders against the physical limits, plain PyTorch and the peers, side by side in one run.

    python benchmarks/peers.py [--dataset cifar10] [--scale 1] [--rounds 3] [--workers 0,2] [--out results/peers]
                               [--only SUBSTRING,...] [--skip SUBSTRING,...]

The same images (the synthetic ``--dataset`` at ``--scale``, prepared under ``data/bench``, or
``data/bench/scale-<scale>`` below scale 1), the same epoch
(one shuffled pass over the train split, batch 256, no model), with 0 and 2 workers, raw pixels and JPEG:

* limits: one memcpy of the whole image array; a random-order gather of each batch into a reused buffer;
* thesislib: every loader on its fastest store through the public API (``prepare``, ``open_store``,
  ``make_loader``), with the kernels wired in (``numpy``, ``hdf5``, ``zarr``, ``files``: workers are threads);
* kernel: the same stores read by the prototype readers of :mod:`thesislib.kernels` (workers are threads):
  the wired loaders should match them;
* pytorch: a per-sample ``Dataset`` over the memory-mapped array and a batched memmap, through ``DataLoader``;
* peers, used directly with their own formats (written once under ``data/bench/<dataset>/peers``): FFCV
  (raw and JPEG ``.beton``), WebDataset, LitData, Mosaic Streaming (MDS), LMDB, DALI (CPU). A peer that is
  not installed, or fails, is a row "skipped: <reason>", never a number.

Every case runs one epoch per round (the peers one more, untimed, first); the cases are interleaved
(their order rotates every round) so that a busy machine slows all of them alike; the table gives the
median and the range (min..max) of the rounds. The goals of the performance issue are printed as ratios *within this run*. Written under ``--out``:
``peers.csv`` (one row per case and round), ``peers_summary.csv`` and ``peers.png``.

Workers: thesislib's ``numpy``, ``hdf5``, ``zarr`` and ``files`` loaders and the kernel rows use background
threads (:mod:`thesislib.kernels.prefetch`; why: these rows beside the ``pytorch`` rows), the other loaders
and PyTorch use worker processes; FFCV and DALI use threads (FFCV and DALI need at least one: their
"0 workers" rows run one thread). JPEG pixels differ by decoder: the exactness table compares each kernel
decoder with Pillow (the reference decode of the ``files-jpeg`` store).
"""

import argparse
import io
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from thesislib.kernels.imagefiles import DECODERS, unavailable_reason  # noqa: E402
from thesislib.kernels.prototypes import (FilesReader, Hdf5Reader, NpyReader, ZarrReader,  # noqa: E402
                                          kernel_batches)
from thesislib.loaders import make_loader  # noqa: E402
from thesislib.loaders import unavailable_reason as loader_unavailable  # noqa: E402
from thesislib.loaders.sampler import epoch_batches  # noqa: E402
from thesislib.paths import project_path  # noqa: E402
from thesislib.prepare import prepare  # noqa: E402
from thesislib.stores import imagefiles, npy, open_store  # noqa: E402

BATCH = 256
DATA_DIR = "data/bench"
STORES = ["npy-uint8", "hdf5", "zarr", "files-jpeg", "files-bmp"]


class Skip(Exception):
    """A case that cannot run here; its message is the reason shown in the table."""


@dataclass
class Context:
    dataset: str
    data_dir: Path
    images: np.ndarray        # the train split's raw pixels (memory map)
    labels: np.ndarray
    peers_dir: Path

    @property
    def count(self) -> int:
        return len(self.labels)

    def batches(self, epoch: int) -> list:
        return epoch_batches(self.count, BATCH, seed=0, epoch=epoch)

    def store(self, name: str):
        return open_store(self.data_dir, self.dataset, name)


@dataclass
class Case:
    name: str
    group: str                # limit, thesislib, kernel, pytorch, peer
    pixels: str               # raw or jpeg
    workers: int
    make: object              # (context, workers) -> epoch function (epoch -> images delivered)
    note: str = ""
    epoch: object = None
    skipped: str = ""
    rates: list = field(default_factory=list)


def count_images(batches) -> int:
    """Images in an iterable of (images, labels) batches (each batch touched: its first pixel read)."""
    total = 0
    for images, labels in batches:
        total += len(labels)
    return total


# ---- limits -------------------------------------------------------------------------------------------

def memcpy_limit(ctx, workers):
    source = np.ascontiguousarray(ctx.images)  # in RAM, as a loaded split
    target = np.empty_like(source)

    def epoch(_):
        np.copyto(target, source)
        return len(source)
    return epoch


def gather_limit(ctx, workers):
    source, out = np.ascontiguousarray(ctx.images), np.empty((BATCH, *ctx.images.shape[1:]), np.uint8)

    def epoch(number):
        for batch in ctx.batches(number):
            np.take(source, batch, axis=0, out=out[:len(batch)], mode="clip")
        return ctx.count
    return epoch


# ---- thesislib, today and with the kernels ------------------------------------------------------------

def thesislib_loader(loader, store):
    def make(ctx, workers):
        reason = loader_unavailable(loader)
        if reason:
            raise Skip(reason)
        made = make_loader(loader, ctx.store(store), "train", batch_size=BATCH, num_workers=workers)

        def epoch(number):
            made.set_epoch(number)
            return count_images(made)
        return epoch
    return make


def kernel_reader(reader_class, store, **options):
    def make(ctx, workers):
        for decoder in [options.get("decoder")] if "decoder" in options else []:
            if unavailable_reason(decoder):
                raise Skip(unavailable_reason(decoder))
        reader = reader_class(ctx.store(store), "train", **options)

        def epoch(number):
            return count_images(kernel_batches(reader, ctx.batches(number), workers))
        return epoch
    return make


# ---- plain PyTorch ------------------------------------------------------------------------------------

class SampleDataset(torch.utils.data.Dataset):
    """What a user writes: one memory-mapped sample per ``__getitem__``."""

    def __init__(self, path, labels):
        self.path, self.labels, self.images = path, labels, None

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        if self.images is None:
            self.images = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(np.array(self.images[index])), int(self.labels[index])


class BatchMemmap(SampleDataset):
    """A batch per ``__getitem__``: fancy indexing of the memory map."""

    def __getitem__(self, indices):
        if self.images is None:
            self.images = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(self.images[indices]), torch.from_numpy(self.labels[indices])


def pytorch_per_sample(ctx, workers):
    dataset = SampleDataset(npy.images_path(ctx.store("npy-uint8").path, "train"), ctx.labels)

    def epoch(number):
        order = np.concatenate(ctx.batches(number)).tolist()
        return count_images(torch.utils.data.DataLoader(dataset, batch_size=BATCH, sampler=order,
                                                        num_workers=workers))
    return epoch


def pytorch_batched(ctx, workers):
    dataset = BatchMemmap(npy.images_path(ctx.store("npy-uint8").path, "train"), ctx.labels)

    def epoch(number):
        return count_images(torch.utils.data.DataLoader(dataset, batch_size=None, sampler=ctx.batches(number),
                                                        num_workers=workers))
    return epoch


# ---- peers --------------------------------------------------------------------------------------------

def need(module: str, install: str = None):
    try:
        return __import__(module)
    except Exception as exc:  # an optional peer that does not import is a skipped row, whatever it raised
        raise Skip(f"{module} not importable ({type(exc).__name__}: {str(exc)[:80]}): "
                   f"pip install {install or module}") from exc


def jpeg_bytes(ctx) -> list:
    """The files-jpeg store's bytes of each train sample (the same JPEGs every JPEG peer reads)."""
    paths, _ = imagefiles.list_files(ctx.store("files-jpeg").path, "train")
    return [path.read_bytes() for path in paths]


def ffcv_beton(ctx, jpeg: bool) -> Path:
    from ffcv.fields import IntField, NDArrayField, RGBImageField
    from ffcv.writer import DatasetWriter

    path = ctx.peers_dir / f"ffcv-{'jpeg' if jpeg else 'raw'}.beton"
    if not path.is_file():
        image = (RGBImageField(write_mode="jpg", jpeg_quality=90) if jpeg
                 else NDArrayField(np.dtype("uint8"), ctx.images.shape[1:]))
        pairs = PairDataset(np.ascontiguousarray(ctx.images), ctx.labels)
        DatasetWriter(str(path) + ".tmp", {"image": image, "label": IntField()}, num_workers=2
                      ).from_indexed_dataset(pairs)
        os.rename(str(path) + ".tmp", path)
    return path


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
        from ffcv.fields.decoders import IntDecoder, NDArrayDecoder, SimpleRGBImageDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import ToTensor

        path = ffcv_beton(ctx, jpeg)
        image = [SimpleRGBImageDecoder() if jpeg else NDArrayDecoder(), ToTensor()]
        loader = Loader(str(path), batch_size=BATCH, num_workers=max(1, workers), order=OrderOption.RANDOM,
                        pipelines={"image": image, "label": [IntDecoder(), ToTensor()]}, seed=0)

        def epoch(_):
            return count_images(loader)
        return epoch
    return make


def write_lmdb(ctx, jpeg: bool) -> Path:
    import lmdb

    path = ctx.peers_dir / f"lmdb-{'jpeg' if jpeg else 'raw'}"
    if not (path / "done").is_file():
        values = jpeg_bytes(ctx) if jpeg else None
        env = lmdb.open(str(path), map_size=2 * (ctx.images.nbytes + 2**30), subdir=True, lock=False)
        with env.begin(write=True) as txn:
            for index in range(ctx.count):
                txn.put(index.to_bytes(8, "big"), values[index] if jpeg else ctx.images[index].tobytes())
        env.close()
        (path / "done").touch()
    return path


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


class LmdbBatches(torch.utils.data.Dataset):
    """A batch per ``__getitem__``: one read transaction, each value copied (raw) or decoded by Pillow."""

    def __init__(self, path, shape, labels, jpeg):
        self.path, self.shape, self.labels, self.jpeg = str(path), shape, labels, jpeg

    def __getitem__(self, indices):
        from PIL import Image

        out = np.empty((len(indices), *self.shape), np.uint8)
        with lmdb_environment(self.path).begin(buffers=True) as txn:
            for row, index in enumerate(indices):
                value = txn.get(int(index).to_bytes(8, "big"))
                if self.jpeg:
                    out[row] = np.asarray(Image.open(io.BytesIO(value)).convert("RGB"))
                else:
                    out[row] = np.frombuffer(value, np.uint8).reshape(self.shape)
        return torch.from_numpy(out), torch.from_numpy(self.labels[indices])


def lmdb_peer(jpeg: bool):
    def make(ctx, workers):
        need("lmdb")
        dataset = LmdbBatches(write_lmdb(ctx, jpeg), ctx.images.shape[1:], ctx.labels, jpeg)

        def epoch(number):
            if workers:
                close_lmdb_environments()
            return count_images(torch.utils.data.DataLoader(dataset, batch_size=None,
                                                            sampler=ctx.batches(number), num_workers=workers))
        return epoch
    return make


def write_webdataset(ctx, jpeg: bool, shards: int = 8) -> list:
    import webdataset as wds

    folder = ctx.peers_dir / f"wds-{'jpeg' if jpeg else 'raw'}"
    urls = [str(folder / f"shard-{number:03d}.tar") for number in range(shards)]
    if not (folder / "done").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        values = jpeg_bytes(ctx) if jpeg else None
        for number, url in enumerate(urls):
            with wds.TarWriter(url) as sink:
                for index in range(number, ctx.count, shards):
                    sample = {"__key__": f"{index:06d}", "cls": int(ctx.labels[index])}
                    if jpeg:
                        sample["jpg"] = values[index]
                    else:
                        sample["npy"] = np.ascontiguousarray(ctx.images[index])
                    sink.write(sample)
        (folder / "done").touch()
    return urls


def webdataset_peer(jpeg: bool):
    def make(ctx, workers):
        wds = need("webdataset")
        urls = write_webdataset(ctx, jpeg)
        dataset = (wds.WebDataset(urls, shardshuffle=len(urls), empty_check=False).shuffle(1000)
                   .decode("rgb8").to_tuple("jpg" if jpeg else "npy", "cls").batched(BATCH))
        loader = wds.WebLoader(dataset, batch_size=None, num_workers=workers)

        def epoch(_):
            return count_images(loader)
        return epoch
    return make


def litdata_sample(pair):
    image, label = pair
    return {"image": image, "label": label}


def litdata_peer(ctx, workers):
    litdata = need("litdata")
    folder = ctx.peers_dir / "litdata-raw"
    if not (folder / "done").is_file():
        inputs = [(np.ascontiguousarray(ctx.images[i]), int(ctx.labels[i])) for i in range(ctx.count)]
        litdata.optimize(fn=litdata_sample, inputs=inputs, output_dir=str(folder), chunk_bytes="16MB",
                         num_workers=1, mode="overwrite")
        (folder / "done").touch()
    dataset = litdata.StreamingDataset(str(folder), shuffle=True, seed=0)
    loader = litdata.StreamingDataLoader(dataset, batch_size=BATCH, num_workers=workers)

    def epoch(_):
        return sum(len(batch["label"]) for batch in loader)
    return epoch


def mosaic_peer(ctx, workers):
    need("streaming", "mosaicml-streaming")
    from streaming import MDSWriter, StreamingDataset

    folder = ctx.peers_dir / "mds-raw"
    if not (folder / "done").is_file():
        shape = ",".join(str(size) for size in ctx.images.shape[1:])
        with MDSWriter(out=str(folder), columns={"image": f"ndarray:uint8:{shape}", "label": "int"},
                       exist_ok=True) as writer:
            for index in range(ctx.count):
                writer.write({"image": np.ascontiguousarray(ctx.images[index]), "label": int(ctx.labels[index])})
        (folder / "done").touch()
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    dataset = StreamingDataset(local=str(folder), shuffle=True, batch_size=BATCH, shuffle_seed=workers)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=workers)

    def epoch(_):
        return sum(len(batch["label"]) for batch in loader)
    return epoch


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

    def epoch(_):
        total = 0
        for _ in range(-(-size // BATCH)):
            images, labels = pipe.run()
            total += len(labels)
        return min(total, size)
    return epoch


# ---- the table of cases -------------------------------------------------------------------------------

def cases(workers_list) -> list:
    both = list(workers_list)
    table = [
        ("limit: memcpy of the array", "limit", "raw", [0], memcpy_limit, ""),
        ("limit: random gather (1 thread)", "limit", "raw", [0], gather_limit, ""),
        ("thesislib numpy (npy-uint8)", "thesislib", "raw", both, thesislib_loader("numpy", "npy-uint8"), ""),
        ("thesislib memory (npy-uint8)", "thesislib", "raw", [0], thesislib_loader("memory", "npy-uint8"), ""),
        ("thesislib hdf5", "thesislib", "raw", both, thesislib_loader("hdf5", "hdf5"), ""),
        ("thesislib zarr", "thesislib", "raw", both, thesislib_loader("zarr", "zarr"), ""),
        ("thesislib files (files-bmp)", "thesislib", "raw", both, thesislib_loader("files", "files-bmp"), ""),
        ("thesislib files (files-jpeg)", "thesislib", "jpeg", both, thesislib_loader("files", "files-jpeg"), ""),
        ("thesislib torchvision (files-jpeg)", "thesislib", "jpeg", both,
         thesislib_loader("torchvision", "files-jpeg"), "per-sample ImageFolder"),
        ("thesislib dali (files-jpeg)", "thesislib", "jpeg", both, thesislib_loader("dali", "files-jpeg"), ""),
        ("kernel numpy (npy-uint8)", "kernel", "raw", both, kernel_reader(NpyReader, "npy-uint8"), ""),
        ("kernel hdf5 (memory map)", "kernel", "raw", both, kernel_reader(Hdf5Reader, "hdf5"), ""),
        ("kernel zarr (chunk threads)", "kernel", "raw", both, kernel_reader(ZarrReader, "zarr"), ""),
        ("kernel files-bmp (pillow threads)", "kernel", "raw", both,
         kernel_reader(FilesReader, "files-bmp", decoder="pillow"), "exact"),
        ("kernel files-jpeg (pillow threads)", "kernel", "jpeg", both,
         kernel_reader(FilesReader, "files-jpeg", decoder="pillow"), "exact"),
        ("kernel files-jpeg (simplejpeg)", "kernel", "jpeg", both,
         kernel_reader(FilesReader, "files-jpeg", decoder="simplejpeg"), "exact settings"),
        ("kernel files-jpeg (simplejpeg-fast)", "kernel", "jpeg", both,
         kernel_reader(FilesReader, "files-jpeg", decoder="simplejpeg-fast"), "APPROXIMATE"),
        ("pytorch per-sample memmap Dataset", "pytorch", "raw", both, pytorch_per_sample, "baseline"),
        ("pytorch batched memmap", "pytorch", "raw", both, pytorch_batched, ""),
        ("FFCV raw .beton", "peer", "raw", both, ffcv_peer(False), "threads; 0 -> 1"),
        ("FFCV JPEG .beton", "peer", "jpeg", both, ffcv_peer(True), "threads; 0 -> 1; own encode"),
        ("LMDB raw (batch txn)", "peer", "raw", both, lmdb_peer(False), ""),
        ("LMDB JPEG (Pillow)", "peer", "jpeg", both, lmdb_peer(True), ""),
        ("WebDataset raw (.npy)", "peer", "raw", both, webdataset_peer(False), "shuffle buffer 1000"),
        ("WebDataset JPEG", "peer", "jpeg", both, webdataset_peer(True), "shuffle buffer 1000"),
        ("LitData raw", "peer", "raw", both, litdata_peer, ""),
        ("Mosaic Streaming MDS raw", "peer", "raw", both, mosaic_peer, ""),
        ("DALI direct (files-jpeg, CPU)", "peer", "jpeg", both, dali_peer, "threads; 0 -> 1"),
    ]
    return [Case(name, group, pixels, workers, make, note)
            for name, group, pixels, workers_of, make, note in table for workers in workers_of]


def selected(all_cases, only, skip) -> list:
    keep = [case for case in all_cases if not only or any(part.lower() in case.name.lower() for part in only)]
    return [case for case in keep if not any(part.lower() in case.name.lower() for part in skip)]


def set_up(case, ctx) -> None:
    """Make the case's epoch function (a peer's also runs one untimed warm-up epoch: FFCV compiles its
    pipeline in its first epoch), or mark the case skipped. The stores' page cache is warm from preparing
    them; a first, slower round shows in the range, not in the median of three."""
    try:
        case.epoch = case.make(ctx, case.workers)
        if case.group == "peer":
            case.epoch(0)
    except Skip as exc:
        case.skipped = str(exc)
    except Exception as exc:  # a peer failing on this machine is reported, not fatal
        case.skipped = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"


def run_round(cases_, number: int, ctx) -> None:
    live = [case for case in cases_ if not case.skipped]
    shift = number % max(1, len(live))
    for case in live[shift:] + live[:shift]:
        try:
            start = time.perf_counter()
            images = case.epoch(number + 1)
            seconds = time.perf_counter() - start
        except Exception as exc:
            case.skipped = f"failed: {type(exc).__name__}: {str(exc)[:100]}"
            continue
        case.rates.append(images / seconds)
        print(f"  round {number + 1} {case.name} w={case.workers}: {images / seconds:,.0f} img/s", flush=True)


# ---- output -------------------------------------------------------------------------------------------

def summary(cases_) -> list:
    rows = []
    for case in cases_:
        rates = case.rates
        rows.append({"case": case.name, "group": case.group, "pixels": case.pixels, "workers": case.workers,
                     "median_img_s": statistics.median(rates) if rates and not case.skipped else None,
                     "min_img_s": min(rates) if rates and not case.skipped else None,
                     "max_img_s": max(rates) if rates and not case.skipped else None,
                     "rounds": len(rates), "note": case.note, "skipped": case.skipped})
    return rows


def rate(rows, name, workers):
    for row in rows:
        if row["case"] == name and row["workers"] == workers and row["median_img_s"]:
            return row["median_img_s"]
    return None


def ratio_line(label, numerator, denominator, goal) -> str:
    if not numerator or not denominator:
        return f"  {label}: n/a (a case was skipped)"
    value = numerator / denominator
    return f"  {label}: {value:.2f}x (goal {goal}x) {'MET' if value >= goal else 'not met'}"


def goals(rows, workers_list) -> list:
    lines = ["Goals of the performance issue, as ratios of medians in this run:"]
    for prefix in ("thesislib", "kernel"):
        numpy_name = f"{prefix} numpy (npy-uint8)"
        lines.append(f" {prefix}:")
        for workers in workers_list:
            lines.append(ratio_line(f"numpy / FFCV raw, {workers} workers", rate(rows, numpy_name, workers),
                                    rate(rows, "FFCV raw .beton", workers), 1.5))
        lines.append(ratio_line("numpy / random-gather limit, 0 workers", rate(rows, numpy_name, 0),
                                rate(rows, "limit: random gather (1 thread)", 0), 0.6))
        hdf5 = "thesislib hdf5" if prefix == "thesislib" else "kernel hdf5 (memory map)"
        lines.append(ratio_line("hdf5 / numpy, 0 workers", rate(rows, hdf5, 0), rate(rows, numpy_name, 0), 0.5))
        for workers in workers_list:
            jpeg = best(rows, prefix, "jpeg", workers, exact_only=True)
            lines.append(ratio_line(f"best exact JPEG path ({jpeg[0]}) / FFCV JPEG, {workers} workers", jpeg[1],
                                    rate(rows, "FFCV JPEG .beton", workers), 1.0))
            baseline = rate(rows, "pytorch per-sample memmap Dataset", workers)
            slowest = min(((row["median_img_s"], row["case"]) for row in rows if row["case"].startswith(prefix)
                           and row["workers"] == workers and row["pixels"] == "raw" and row["median_img_s"]),
                          default=(None, ""))
            lines.append(ratio_line(f"slowest raw loader ({slowest[1]}) / per-sample PyTorch, {workers} workers",
                                    slowest[0], baseline, 5))
    for workers in workers_list:
        lines.append(ratio_line(f"kernel files-jpeg (simplejpeg) / thesislib files today, {workers} workers",
                                rate(rows, "kernel files-jpeg (simplejpeg)", workers),
                                rate(rows, "thesislib files (files-jpeg)", workers), 4))
        lines.append(ratio_line(f"kernel zarr / thesislib zarr today, {workers} workers",
                                rate(rows, "kernel zarr (chunk threads)", workers),
                                rate(rows, "thesislib zarr", workers), 20))
    lines.append(" slower with 2 workers than with 0 (cached stores):")
    slower = [row["case"] for row in rows if row["workers"] == 0 and rate(rows, row["case"], 2)
              and row["median_img_s"] and rate(rows, row["case"], 2) < row["median_img_s"]]
    lines.extend(f"  {name}: {rate(rows, name, 2) / rate(rows, name, 0):.2f}x" for name in slower)
    return lines


def best(rows, prefix, pixels, workers, exact_only=False):
    found = [(row["median_img_s"], row["case"]) for row in rows if row["case"].startswith(prefix)
             and row["pixels"] == pixels and row["workers"] == workers and row["median_img_s"]
             and not (exact_only and row["note"] == "APPROXIMATE")]
    top = max(found, default=(None, "none"))
    return top[1], top[0]


def exactness(ctx) -> list:
    """Each JPEG decoder of the kernels against Pillow on the first 256 train files."""
    from thesislib.kernels.imagefiles import FileDecoder

    paths, _ = imagefiles.list_files(ctx.store("files-jpeg").path, "train")
    paths = paths[:BATCH]
    shape = (len(paths), *ctx.images.shape[1:])
    reference = FileDecoder("pillow")(paths, np.empty(shape, np.uint8)).astype(np.int16)
    rows = []
    for name, decoder in DECODERS.items():
        if "jpeg" not in decoder.codecs or unavailable_reason(name):
            continue
        pixels = FileDecoder(name)(paths, np.empty(shape, np.uint8)).astype(np.int16)
        diff = np.abs(pixels - reference)
        rows.append({"decoder": name, "max_abs_diff": int(diff.max()), "mean_abs_diff": float(diff.mean()),
                     "checksum_change_pct": 100 * float(pixels.sum() - reference.sum()) / float(reference.sum()),
                     "declared": "exact settings" if decoder.exact else "approximate"})
    return rows


def write_figure(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    shown = [row for row in rows if row["median_img_s"]]
    labels = [f"{row['case']} · w={row['workers']}" for row in shown]
    medians = np.array([row["median_img_s"] for row in shown])
    low = medians - np.array([row["min_img_s"] for row in shown])
    high = np.array([row["max_img_s"] for row in shown]) - medians
    colours = {"limit": "grey", "thesislib": "tab:blue", "kernel": "tab:green", "pytorch": "tab:orange",
               "peer": "tab:red"}
    figure, axes = plt.subplots(figsize=(9, 0.28 * len(shown) + 1.2))
    axes.barh(range(len(shown)), medians, xerr=[low, high], color=[colours[row["group"]] for row in shown])
    axes.set_yticks(range(len(shown)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("images/s (median of rounds, bar: range)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def environment() -> str:
    import psutil

    return (f"{platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} cores "
            f"(usable {len(os.sched_getaffinity(0))}) · {psutil.virtual_memory().total / 2**30:.0f} GiB RAM · "
            f"load {os.getloadavg()[0]:.1f} · Python {platform.python_version()} · torch {torch.__version__} · "
            f"numpy {np.__version__}")


def main(argv=None) -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "tinyimagenet"])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="0,2", help="comma-separated worker counts")
    parser.add_argument("--out", default="results/peers")
    parser.add_argument("--only", default="", help="comma-separated substrings of case names to run")
    parser.add_argument("--skip", default="", help="comma-separated substrings of case names to leave out")
    args = parser.parse_args(argv)
    workers_list = [int(part) for part in args.workers.split(",")]
    # a store is rebuilt when prepared at another scale: each scale keeps its own folder
    data_dir = project_path(DATA_DIR) / ("" if args.scale == 1 else f"scale-{args.scale:g}")
    prepare(args.dataset, source="synthetic", scale=args.scale, stores=STORES, seed=0, data_dir=data_dir,
            progress=False)
    store = open_store(data_dir, args.dataset, "npy-uint8")
    ctx = Context(args.dataset, data_dir, np.load(npy.images_path(store.path, "train"), mmap_mode="r"),
                  np.load(npy.labels_path(store.path, "train")), data_dir / args.dataset / "peers")
    ctx.peers_dir.mkdir(parents=True, exist_ok=True)
    all_cases = selected(cases(workers_list), [p for p in args.only.split(",") if p],
                         [p for p in args.skip.split(",") if p])
    print(f"{args.dataset} scale {args.scale}: {ctx.count} train images {ctx.images.shape[1:]}, batch {BATCH}, "
          f"{args.rounds} interleaved rounds\n{environment()}", flush=True)
    for case in all_cases:
        set_up(case, ctx)
        print(f"set up {case.name} w={case.workers}: {case.skipped or 'ready'}", flush=True)
    for number in range(args.rounds):
        run_round(all_cases, number, ctx)
    out = project_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = summary(all_cases)
    pd.DataFrame([{"case": case.name, "workers": case.workers, "round": number + 1, "img_s": value}
                  for case in all_cases for number, value in enumerate(case.rates)]).to_csv(out / "peers.csv",
                                                                                              index=False)
    table = pd.DataFrame(rows)
    table.to_csv(out / "peers_summary.csv", index=False)
    shown = table.assign(**{column: table[column].map(lambda v: "" if pd.isna(v) else f"{v:,.0f}")
                            for column in ("median_img_s", "min_img_s", "max_img_s")})
    print(f"\n{environment()}\n")
    print(shown.to_string(index=False, max_colwidth=60))
    print("\nJPEG decoders against Pillow (first 256 train files of files-jpeg):")
    print(pd.DataFrame(exactness(ctx)).to_string(index=False))
    print()
    print("\n".join(goals(rows, workers_list)))
    write_figure(rows, out / "peers.png")
    print(f"\nwritten: {out / 'peers.csv'}, {out / 'peers_summary.csv'}, {out / 'peers.png'}")


if __name__ == "__main__":
    main()
