"""Local vs remote-direct vs cached reads: images/s of each format's loader on cifar10, read from a local
store, straight from the same store on an HTTP server (nginx) and, with ``--s3``, on an S3 endpoint (moto's
server, a stand-in for S3: its figures measure moto, which answers each request in tens of milliseconds),
and from a verified local copy (``bench --cache``), whose one-off copy time is printed beside it.

Loopback numbers: the servers run on 127.0.0.1, so a request costs no network latency; on a real network
each request adds its round trip (about 0.1-1 ms in one data centre, tens of ms across regions), which hurts
the formats that make one request per sample (the image files, Zarr's one chunk per sample) most, and the
cached copy not at all once it is made.

    python benchmarks/remote_read.py                    # cifar10 at scale 1, the remote-capable formats
    python benchmarks/remote_read.py --scale 0.1 --batches 20 --s3

Reads ``--batches`` shuffled training batches of ``--batch-size`` (the first, which opens the files, is not
timed) with no model: the loader's speed alone. The local stores are read warm (from the page cache).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from thesislib import remote
from thesislib.loaders import make_loader
from thesislib.prepare import prepare
from thesislib.stores import format_of, get_store_spec, open_store
from thesislib.testservers import environment, forget_filesystems, nginx_server, s3_server

STORES = ["files-jpeg", "files-png", "zarr", "hdf5", "parquet", "npy-uint8"]


def loader_of(store: str) -> str:
    return format_of(get_store_spec(store).kind).LOADER


def images_per_s(data_dir, store: str, batches: int, batch_size: int) -> float:
    """Images per second over ``batches`` batches after the first (which opens the files)."""
    with make_loader(loader_of(store), open_store(data_dir, "cifar10", store), "train", batch_size=batch_size,
                     seed=0) as reader:
        iterator = iter(reader)
        next(iterator)
        started, count = time.perf_counter(), 0
        for _ in range(batches):
            images, _ = next(iterator, (None, None))
            if images is None:
                break
            count += len(images)
        return count / (time.perf_counter() - started)


def measure(location: str, data_dir, store: str, args, cache_dir: Path) -> dict:
    """Direct and cached figures of ``store`` at ``data_dir`` (a URL)."""
    opened = open_store(data_dir, "cifar10", store)
    direct = images_per_s(data_dir, store, args.batches, args.batch_size) \
        if getattr(opened.format, "READS_URLS", False) else float("nan")
    path, seconds, copied = remote.copy_to_cache(opened.path, cache_dir / location, opened.manifest)
    cached = images_per_s(path.parent.parent, store, args.batches, args.batch_size)
    row = {"store": store, "location": location, "direct_img_s": direct, "cached_img_s": cached,
           "copy_s": seconds, "copy_mb": copied / 1e6}
    print(row, file=sys.stderr, flush=True)  # as it comes: a long run shows its progress
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--s3", action="store_true", help="also through moto's S3 server (slow: a stand-in)")
    parser.add_argument("--data-dir", default=None, help="local data folder (default: a temporary one)")
    args = parser.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="remote-read-") as tmp:
        tmp = Path(tmp)
        data_dir = Path(args.data_dir) if args.data_dir else tmp / "data"
        prepare("cifar10", scale=args.scale, stores=stores, seed=0, data_dir=data_dir, progress=True)
        local = {s: images_per_s(data_dir, s, args.batches, args.batch_size) for s in stores}
        rows = []
        with nginx_server(data_dir, tmp / "nginx") as url:
            rows += [measure("http", url, store, args, tmp / "cache") for store in stores]
        if args.s3:
            with s3_server(tmp / "moto") as endpoint, environment(endpoint.environment()):
                forget_filesystems()
                bucket = f"s3://{endpoint.bucket}/data"
                prepare("cifar10", scale=args.scale, stores=stores, seed=0, data_dir=bucket, progress=True)
                rows += [measure("s3 (moto)", bucket, store, args, tmp / "cache") for store in stores]
    table = pd.DataFrame(rows).set_index(["store", "location"]).sort_index()
    table.insert(0, "local_img_s", [local[store] for store, _ in table.index])
    print(f"\ncifar10 at scale {args.scale}, {args.batches} batches of {args.batch_size}, loopback "
          "(a real network adds a round trip per request); local: the store on this disk, direct: read from "
          "the server, cached: from the verified local copy made in copy_s (direct NaN: the format reads local "
          "files only)")
    print(table.to_string(float_format=lambda v: f"{v:,.1f}"))


if __name__ == "__main__":
    main()
