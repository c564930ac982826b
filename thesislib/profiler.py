"""The profiler: the seven figures of the thesis's protocol, plus throughput and stall share.

Definitions (the contract's, computed by :func:`figures` from the training loop's per-epoch timings and the
:class:`Profiler`'s resource samples):

* ``total_train_s``: wall time of the training epochs (validation and the loader's set-up excluded);
* ``epoch_s_mean``: ``total_train_s`` / epochs;
* ``data_s_mean``: mean per epoch of the time the loop waited for its next batch, including the copy to
  the device (see :mod:`thesislib.train`);
* ``stall_pct`` = 100 * data / epoch time (summed over the epochs);
* ``images_per_s``: training images delivered per second of training (all epochs);
* ``peak_ram_mb``: the highest sum, over the process and its live workers, of their anonymous and shared
  memory in MiB, each process's share of it proportional (``Pss_Anon + Pss_Shmem`` of
  ``/proc/PID/smaps_rollup``: a page shared by k processes counts 1/k in each, so pages a worker shares
  with the main process after the fork, and the shared-memory batches workers hand over, are counted once).
  File-backed pages are left out: a memory-mapped store's page cache belongs to the kernel, not the loader,
  and counting it would charge ``numpy`` (a map) for the whole touched split but not the loaders that
  ``pread`` (``hdf5``, ``zarr``, ``files``). Where the kernel reports no ``Pss_Anon`` (before Linux 5.7),
  the whole PSS is used; without ``smaps_rollup`` (not Linux, or before Linux 4.14), the RSS;
* ``cpu_util_pct``: CPU time of the process and its workers (those that exited included) over the run,
  in % of all cores: 100 * cpu_s / (wall_s * cores); the blocks run under :meth:`Profiler.paused` (``bench
  --cold``'s page-cache eviction between epochs) are left out of both;
* ``peak_vram_mb``, ``gpu_util_pct``: see :mod:`thesislib.gpu` (NVML and torch); NaN without a CUDA device.

Cost. Reading ``smaps_rollup`` makes the kernel walk the process's page tables: about 8 ms of CPU for a
PyTorch process and 4 ms for a DataLoader worker, more on a busy machine. So the sampler thread (10 Hz)
reads memory only as often as keeps its own cost within :data:`BUDGET` of the elapsed time, and always when
:meth:`Profiler.sample_memory` is called (``bench`` calls it after each epoch, outside the epoch's timing)
and at start and stop. DataLoader workers live only while an epoch runs, so the training loop calls
:meth:`Profiler.sample_soon` once each worker has delivered its first batch: the sampler thread then
re-lists the workers (about 1 ms) and, if there are any, reads the process and them at once (the loop does
not wait for it, so the data-time clock does not include it), unless that would take its cost past
:data:`EARLY_BUDGET` of the elapsed time; the first such sample of a run is always taken (with workers, 15
to 40 ms of CPU: more than 2% of an epoch shorter than a second or two). Otherwise the worker list is
refreshed once a second. The cost is the profiler's own CPU time (``time.thread_time``: what the sampling
takes from the run; a sample that waits for a busy core takes longer but costs no more), reported as
``cost_s``; the part the sampler thread spent while the run went on (the only part inside an epoch's timing)
as ``background_s``.
"""

import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import torch

BUDGET = 0.01          # the sampler's periodic samples may take at most this share of the elapsed time
EARLY_BUDGET = 0.02    # with the early samples of each epoch (sample_soon), at most this share
INTERVAL_S = 0.1       # sampler tick
CHILDREN_EVERY_S = 1.0  # how often the worker list is refreshed
COUNTED = ("Pss_Anon:", "Pss_Shmem:")  # the smaps_rollup fields peak_ram_mb sums


def memory_bytes(process: psutil.Process) -> int:
    """Anonymous plus shared memory of one process in bytes, proportional (``Pss_Anon + Pss_Shmem``; see
    the module docstring for the fallbacks); 0 if the process is gone."""
    try:
        with open(f"/proc/{process.pid}/smaps_rollup", encoding="ascii") as file:
            fields = dict(line.split(None, 1) for line in file.read().splitlines()[1:])
    except FileNotFoundError:  # no /proc (not Linux) or no smaps_rollup (before Linux 4.14); or gone
        return rss_bytes(process)
    except (OSError, ValueError):
        return 0
    names = COUNTED if COUNTED[0] in fields else ("Pss:",)
    return 1024 * sum(int(fields.get(name, "0 kB").split()[0]) for name in names)


def rss_bytes(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def cpu_seconds(process: psutil.Process, children=()) -> float:
    """CPU time of ``process`` and its reaped children, plus that of the live ``children``."""
    total = sum(process.cpu_times()[:4])
    for child in children:
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


@dataclass
class Resources:
    wall_s: float
    peak_ram_mb: float
    cpu_util_pct: float
    peak_vram_mb: float
    gpu_util_pct: float
    memory_samples: int
    cost_s: float       # CPU time the profiler spent sampling
    background_s: float = 0.0  # of which: the sampler thread's, while the run went on


class Profiler:
    """Samples memory, CPU and GPU of this process and its workers between :meth:`start` and :meth:`stop`."""

    def __init__(self, device="cpu", interval_s: float = INTERVAL_S, budget: float = BUDGET,
                 early_budget: float = EARLY_BUDGET):
        self.device = torch.device(device)
        self.interval_s, self.budget, self.early_budget = interval_s, budget, early_budget
        self.process = psutil.Process()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._soon = threading.Event()
        self._thread = self._gpu = None
        self.children, self.peak_bytes, self.memory_samples, self.cost_s = [], 0, 0, 0.0
        self.background_s, self.early_samples = 0.0, 0
        self.paused_wall_s = self.paused_cpu_s = 0.0

    def start(self) -> "Profiler":
        self._start_wall = time.perf_counter()
        self._children_at = -math.inf
        self._start_cpu = cpu_seconds(self.process, self._live_children())
        self._start_gpu()
        self.sample_memory()
        self._stop.clear()
        self._soon.clear()
        self._thread = threading.Thread(target=self._run, name="thesislib-profiler", daemon=True)
        self._thread.start()
        return self

    def sample_memory(self) -> float:
        """Read the memory of the process and its workers now; returns the sum in MiB (and updates the
        peak)."""
        with self._lock:
            began = time.thread_time()
            total = memory_bytes(self.process) + sum(memory_bytes(child) for child in self._live_children())
            self.peak_bytes = max(self.peak_bytes, total)
            self.memory_samples += 1
            self.cost_s += time.thread_time() - began
        return total / 2**20

    def sample_soon(self) -> None:
        """Ask the sampler thread for a sample of the process and its current workers now, without waiting
        for it (the training loop calls this once each worker has delivered its first batch of an epoch)."""
        self._soon.set()

    @contextmanager
    def paused(self):
        """Leave the block's wall and CPU time out of ``cpu_util_pct`` (for harness work inside the run,
        such as ``bench --cold``'s eviction between epochs; no worker may run during it)."""
        wall, cpu = time.perf_counter(), cpu_seconds(self.process)
        try:
            yield
        finally:
            self.paused_wall_s += time.perf_counter() - wall
            self.paused_cpu_s += cpu_seconds(self.process) - cpu

    def stop(self) -> Resources:
        """Stop sampling and return the figures of the run."""
        self.sample_memory()
        self._stop_thread()
        wall = time.perf_counter() - self._start_wall
        cpu = cpu_seconds(self.process, self._live_children(refresh=True)) - self._start_cpu
        wall, cpu = wall - self.paused_wall_s, cpu - self.paused_cpu_s
        vram, util = self._stop_gpu()
        return Resources(wall, self.peak_bytes / 2**20, 100 * cpu / (wall * (psutil.cpu_count() or 1)),
                         vram, util, self.memory_samples, self.cost_s, self.background_s)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        """Stop the sampler threads (also when the run failed before :meth:`stop`)."""
        self._stop_thread()
        sampler, self._gpu = self._gpu, None
        if sampler is not None:
            sampler.stop()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._soon.set()  # wake the thread
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while True:
            asked = self._soon.wait(self.interval_s)
            if self._stop.is_set():
                return
            self._soon.clear()
            elapsed = time.perf_counter() - self._start_wall
            next_cost = self.cost_s + self.cost_s / max(self.memory_samples, 1)
            if asked and self._workers_started() and (
                    self.early_samples == 0 or next_cost <= self.early_budget * elapsed):
                self.early_samples += 1
                self._sample_in_background()
            elif next_cost <= self.budget * elapsed:
                self._sample_in_background()

    def _workers_started(self) -> bool:
        """Re-list the workers (about 1 ms, counted in the cost); True if there are any."""
        with self._lock:
            began = time.thread_time()
            children = self._live_children(refresh=True)
            spent = time.thread_time() - began
            self.cost_s += spent
        self.background_s += spent
        return bool(children)

    def _sample_in_background(self) -> None:
        began = time.thread_time()
        self.sample_memory()
        self.background_s += time.thread_time() - began

    def _live_children(self, refresh: bool = False) -> list:
        """The workers (all descendants), re-listed at most once per CHILDREN_EVERY_S unless ``refresh``."""
        now = time.perf_counter()
        if refresh or now - self._children_at >= CHILDREN_EVERY_S:
            try:
                self.children = self.process.children(recursive=True)
            except psutil.Error:
                self.children = []
            self._children_at = now
        return self.children

    def _start_gpu(self) -> None:
        if self.device.type != "cuda":
            return
        from thesislib import gpu

        gpu.reset_peak_vram(self.device)
        self._gpu = gpu.GpuUtilSampler(self.device).start()

    def _stop_gpu(self) -> tuple:
        """(peak VRAM, mean GPU utilisation), the GPU sampler stopped; NaN without a GPU."""
        sampler, self._gpu = self._gpu, None
        if sampler is None:
            return math.nan, math.nan
        from thesislib import gpu

        return gpu.peak_vram_mb(self.device), sampler.stop()


def figures(epochs: list, resources: Resources) -> dict:
    """The protocol's figures of one run from its EpochResults and Resources (see the module docstring)."""
    total = sum(e.epoch_s for e in epochs)
    data = sum(e.data_s for e in epochs)
    images = sum(e.images for e in epochs)
    return {
        "total_train_s": total,
        "epoch_s_mean": total / len(epochs),
        "data_s_mean": data / len(epochs),
        "stall_pct": 100 * data / total if total else math.nan,
        "images_per_s": images / total if total else math.nan,
        "peak_ram_mb": resources.peak_ram_mb,
        "peak_vram_mb": resources.peak_vram_mb,
        "gpu_util_pct": resources.gpu_util_pct,
        "cpu_util_pct": resources.cpu_util_pct,
    }
