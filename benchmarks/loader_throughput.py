"""How fast can a loader deliver? The ``numpy`` loader against the machine's memcpy bandwidth and against
the ``torchvision`` baseline (ImageFolder + a per-sample DataLoader), with ``--model none`` (no compute).

    python benchmarks/loader_throughput.py [--dataset cifar10] [--scale 1] [--batch-size 1024]

Goals (the loaders issue): ``numpy`` reaches at least 40% of the memcpy bandwidth measured in the same run,
and at least 5x the images/s of ``torchvision``. Also printed: every other loader of the registry that can run
here, on its default store, beside them (``--others-epochs`` epochs, 2 repeats each; ``--no-others`` skips
them), and what the profiler's sampling costs during one
``small``-model epoch (goal: under 2% of the epoch). The stores are prepared (synthetic) under
``data/bench`` if missing. Each loader runs ``--repeats`` repeats of ``--epochs`` epochs through
``thesislib.bench.run_protocol`` (``torchvision``: ``--baseline-epochs`` epochs, 2 repeats). The memcpy
goal takes ``numpy``'s best repeat (other processes on a shared machine only ever slow a repeat down); the
5x goal compares the medians of both loaders, as their repeat counts differ (the ratio of the best repeats
is printed beside it). memcpy is the best of several copies of a 256 MiB buffer (bytes copied per second),
with one thread and with as many threads as the loader's gather may use, measured before and after the
loaders; the goal is set against the faster of the two.
"""

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from thesislib.bench import BenchConfig, prepare_if_missing, run_protocol
from thesislib.datasets import get_dataset

MEMCPY_BYTES = 256 * 2**20


def memcpy_bandwidth(threads: int = 1, copies: int = 7) -> float:
    """Bytes per second of the fastest of ``copies`` copies of a 256 MiB buffer (glibc's memcpy through
    ``np.copyto``, which releases the GIL), split into ``threads`` contiguous parts copied at once."""
    source = np.ones(MEMCPY_BYTES, dtype=np.uint8)
    target = np.zeros_like(source)
    bounds = np.linspace(0, MEMCPY_BYTES, threads + 1).astype(int).tolist()
    parts = list(zip(bounds[:-1], bounds[1:]))
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(copies):
            start = time.perf_counter()
            list(pool.map(lambda part: np.copyto(target[part[0]:part[1]], source[part[0]:part[1]]), parts))
            best = min(best, time.perf_counter() - start)
    return MEMCPY_BYTES / best


def machine_memcpy() -> dict:
    """{threads: bandwidth} for one thread and for as many threads as the loader's gather may use."""
    counts = sorted({1, torch.get_num_threads()})
    return {threads: memcpy_bandwidth(threads) for threads in counts}


def throughput(loader: str, store: str, args) -> list:
    """Images/s of each repeat of ``loader`` with no model."""
    config = BenchConfig(loader, args.dataset, store=store, epochs=args.epochs, repeats=args.repeats,
                         batch_size=args.batch_size, num_workers=args.num_workers, model="none",
                         device="cpu", scale=args.scale, data_dir=args.data_dir)
    prepare_if_missing(config)
    return [row["images_per_s"] for row in run_protocol(config)]


def other_loaders() -> dict:
    """{loader: its default store} of every loader but numpy and torchvision that can run on this machine."""
    from thesislib.loaders import DEFAULT_STORES, LOADERS, unavailable_reason

    return {name: DEFAULT_STORES[name] for name in LOADERS
            if name not in ("numpy", "torchvision") and unavailable_reason(name) is None}


def print_others(args) -> None:
    """Images/s (median of 2 repeats) of every other loader, each on its default store."""
    settings = argparse.Namespace(**{**vars(args), "epochs": args.others_epochs, "repeats": 2})
    for name, store in other_loaders().items():
        rates = throughput(name, store, settings)
        print(f"{name + ' (' + store + '):':27s}{statistics.median(rates):12,.0f} images/s (median of {len(rates)})")


def profiler_cost(args):
    """(profiler Resources, epoch time) of one ``small``-model epoch over the val split (10 000 images at
    scale 1) read by ``numpy``. Inside an epoch only the sampler thread's samples cost time
    (``background_s``); the samples at start and stop lie outside the epoch's timing in ``bench``."""
    from thesislib.loaders import make_loader
    from thesislib.models import build_model, build_optimizer
    from thesislib.profiler import Profiler
    from thesislib.stores import open_store
    from thesislib.train import train_epoch

    store = open_store(args.data_dir, args.dataset, "npy-uint8")
    model = build_model("small", len(store.classes), store.shape("train")[1])
    with make_loader("numpy", store, "val", batch_size=128) as loader, Profiler() as profiler:
        epoch = train_epoch(model, build_optimizer("sgd", model, 0.05), loader, "cpu",
                            first_batches=profiler.sample_soon)
        resources = profiler.stop()
    return resources, epoch.epoch_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-epochs", type=int, default=1)
    parser.add_argument("--data-dir", default="data/bench")
    parser.add_argument("--others-epochs", type=int, default=1, help="epochs of each other loader's repeats")
    parser.add_argument("--no-others", action="store_true", help="numpy and torchvision only")
    args = parser.parse_args()
    image_bytes = int(np.prod(get_dataset(args.dataset).shape))

    before = machine_memcpy()
    numpy_rates = throughput("numpy", "npy-uint8", args)
    baseline = throughput("torchvision", "files-jpeg",
                          argparse.Namespace(**{**vars(args), "epochs": args.baseline_epochs, "repeats": 2}))
    after = machine_memcpy()
    memcpy_by_threads = {threads: max(before[threads], after[threads]) for threads in before}
    memcpy = max(memcpy_by_threads.values())  # the machine's bandwidth: the best of any thread count
    resources, epoch_s = profiler_cost(args)
    background = resources.background_s / epoch_s

    best, base = max(numpy_rates), max(baseline)
    median, base_median = statistics.median(numpy_rates), statistics.median(baseline)
    share, speedup = best * image_bytes / memcpy, median / base_median
    print(f"dataset {args.dataset}, scale {args.scale}, batch size {args.batch_size}, "
          f"{args.num_workers} workers, model none, {image_bytes} bytes per image")
    for threads, rate in memcpy_by_threads.items():
        print(f"memcpy, {threads} thread(s):        {rate / 1e9:8.2f} GB/s")
    print(f"numpy (npy-uint8):         {best:12,.0f} images/s = {best * image_bytes / 1e9:.2f} GB/s (best of "
          f"{len(numpy_rates)}; median {median:,.0f})")
    print(f"torchvision (files-jpeg):  {base:12,.0f} images/s (best of {len(baseline)}; median "
          f"{base_median:,.0f})")
    if not args.no_others:
        print_others(args)
    print(f"profiler during a {epoch_s:.1f} s small-model epoch: {1000 * resources.background_s:.1f} ms = "
          f"{100 * background:.2f} %  goal < 2 %  {'PASS' if background < 0.02 else 'FAIL'} (plus "
          f"{1000 * (resources.cost_s - resources.background_s):.1f} ms at start and stop, outside the epoch)")
    print(f"numpy / memcpy:            {100 * share:8.1f} %   goal >= 40 %  {'PASS' if share >= 0.4 else 'FAIL'}")
    print(f"numpy / torchvision:       {speedup:8.1f} x   goal >= 5 x   {'PASS' if speedup >= 5 else 'FAIL'} "
          f"(medians; best / best: {best / base:.1f} x)")
    return 0 if share >= 0.4 and speedup >= 5 and background < 0.02 else 1


if __name__ == "__main__":
    raise SystemExit(main())
