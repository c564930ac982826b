"""Warm versus cold page cache: what ``bench --cold`` changes in the data-loading time of a large store.

    python benchmarks/cold_cache.py [--dataset tinyimagenet] [--scale 0.5] [--loaders LOADER:STORE,...]

For each loader:store pair the protocol runs twice with ``--model none``: *warm* (the store's files read
into the page cache first, then not evicted) and *cold* (``cold=True``: the files evicted with
``posix_fadvise(POSIX_FADV_DONTNEED)`` before each epoch, so every epoch reads them from the disk). The
store is prepared (synthetic) under ``data/bench`` if missing; at the defaults each store holds several
hundred MB. Printed: the store's size, and per run the mean per-epoch data-loading time, the throughput
and the share of the store in the page cache as the first epoch started.
"""

import argparse

from thesislib import pagecache
from thesislib.bench import BenchConfig, prepare_if_missing, run_protocol
from thesislib.stores import open_store


def read_into_cache(paths) -> None:
    """Read every file once, so the warm run starts with the store in the page cache."""
    for path in paths:
        with open(path, "rb") as file:
            while file.read(16 * 2**20):
                pass


def run(loader: str, store: str, cold: bool, args) -> dict:
    config = BenchConfig(loader, args.dataset, store=store, epochs=args.epochs, repeats=args.repeats,
                         batch_size=args.batch_size, num_workers=args.num_workers, model="none",
                         device="cpu", scale=args.scale, data_dir=args.data_dir, cold=cold)
    rows = run_protocol(config)
    return {key: min(row[key] for row in rows) if key != "cached_pct" else rows[0][key]
            for key in ("data_s_mean", "epoch_s_mean", "cached_pct")} | {
        "images_per_s": max(row["images_per_s"] for row in rows)}


def compare(loader: str, store_name: str, args) -> float:
    """Run warm and cold; print both; return cold / warm data time."""
    config = BenchConfig(loader, args.dataset, store=store_name, scale=args.scale, data_dir=args.data_dir)
    path = prepare_if_missing(config)
    store = open_store(args.data_dir, args.dataset, store_name)
    files = pagecache.store_files(path)
    print(f"\n{loader} on {args.dataset}/{store_name}: {store.manifest['bytes_apparent'] / 2**20:,.0f} MiB in "
          f"{len(files):,} file(s)")
    read_into_cache(files)
    warm = run(loader, store_name, False, args)
    cold = run(loader, store_name, True, args)
    for state, row in (("warm", warm), ("cold", cold)):
        print(f"  {state}: data {row['data_s_mean']:7.3f} s/epoch, epoch {row['epoch_s_mean']:7.3f} s, "
              f"{row['images_per_s']:10,.0f} images/s, {row['cached_pct']:5.1f}% cached at start")
    ratio = cold["data_s_mean"] / warm["data_s_mean"]
    print(f"  cold / warm data-loading time: {ratio:.2f}x")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="tinyimagenet")
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--loaders", default="numpy:npy-uint8,files:files-bmp",
                        help="comma-separated loader:store pairs")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-dir", default="data/bench")
    args = parser.parse_args()
    print(f"dataset {args.dataset} at scale {args.scale}, batch size {args.batch_size}, "
          f"{args.num_workers} workers, model none, {args.epochs} epochs x {args.repeats} repeats (best shown)")
    ratios = [compare(*pair.split(":"), args) for pair in args.loaders.split(",")]
    changed = all(ratio > 1.2 for ratio in ratios)
    print(f"\n--cold changes the data-loading time measurably (> 1.2x) for every store: "
          f"{'PASS' if changed else 'FAIL'}")
    return 0 if changed else 1


if __name__ == "__main__":
    raise SystemExit(main())
