"""The profiler: the seven figures of the thesis's protocol, plus throughput and stall share.

Definitions (the contract's, computed by :func:`figures` from the training loop's per-epoch timings and the
:class:`Profiler`'s resource samples):

* ``total_train_s``: wall time of the training epochs (validation and the loader's set-up excluded);
* ``epoch_s_mean``: ``total_train_s`` / epochs;
* ``data_s_mean``: mean per epoch of the time the loop waited for its next batch, including the copy to
  the device (see :mod:`thesislib.train`);
* ``stall_pct`` = 100 * data / epoch time (summed over the epochs);
* ``images_per_s``: training images delivered per second of training (all epochs);
* ``peak_ram_mb``: the highest sum, over the process and its live workers, of the proportional set size
  (PSS: a page shared by k processes counts 1/k in each, so shared pages are counted once), in MiB;
* ``cpu_util_pct``: CPU time of the process and its workers (those that exited included) over the run,
  in % of all cores: 100 * cpu_s / (wall_s * cores);
* ``peak_vram_mb``, ``gpu_util_pct``: see :mod:`thesislib.gpu` (NVML and torch); NaN without a CUDA device.

Cost. A PSS reading (psutil's ``memory_full_info``) makes the kernel walk the process's page tables
(``/proc/PID/smaps_rollup``): about 10 ms for a PyTorch process, more on a busy machine. So the sampler
thread (10 Hz) reads PSS only as often as keeps its own cost within :data:`BUDGET` of the elapsed time,
and always when :meth:`Profiler.sample_memory` is called (``bench`` calls it after each epoch, outside
the epoch's timing) and at start and stop. The worker list is refreshed once a second. The profiler's own
time is reported as ``cost_s``, and the part the sampler thread spent while the run went on (the only part
inside an epoch's timing) as ``background_s``.
"""

import math
import threading
import time
from dataclasses import dataclass

import psutil
import torch

BUDGET = 0.01          # the sampler may spend at most this share of the elapsed time reading PSS
INTERVAL_S = 0.1       # sampler tick
CHILDREN_EVERY_S = 1.0  # how often the worker list is refreshed


def pss_bytes(process: psutil.Process) -> int:
    """Proportional set size of one process in bytes (its RSS where the OS reports no PSS; 0 if gone)."""
    try:
        info = process.memory_full_info()
    except (psutil.Error, OSError):
        return 0
    return getattr(info, "pss", info.rss)


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
    cost_s: float       # time the profiler spent sampling
    background_s: float = 0.0  # of which: the sampler thread's samples, taken while the run went on

    @property
    def cost_pct(self) -> float:
        return 100 * self.cost_s / self.wall_s if self.wall_s else math.nan


class Profiler:
    """Samples memory, CPU and GPU of this process and its workers between :meth:`start` and :meth:`stop`."""

    def __init__(self, device="cpu", interval_s: float = INTERVAL_S, budget: float = BUDGET):
        self.device = torch.device(device)
        self.interval_s, self.budget = interval_s, budget
        self.process = psutil.Process()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = self._gpu = None
        self.children, self.peak_pss, self.memory_samples, self.cost_s = [], 0, 0, 0.0
        self.background_s = 0.0

    def start(self) -> "Profiler":
        self._start_wall = time.perf_counter()
        self._children_at = -math.inf
        self._start_cpu = cpu_seconds(self.process, self._live_children())
        self._start_gpu()
        self.sample_memory()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="thesislib-profiler", daemon=True)
        self._thread.start()
        return self

    def sample_memory(self) -> float:
        """Read PSS of the process and its workers now; returns the sum in MiB (and updates the peak)."""
        with self._lock:
            began = time.perf_counter()
            total = pss_bytes(self.process) + sum(pss_bytes(child) for child in self._live_children())
            self.peak_pss = max(self.peak_pss, total)
            self.memory_samples += 1
            self.cost_s += time.perf_counter() - began
        return total / 2**20

    def stop(self) -> Resources:
        """Stop sampling and return the figures of the run."""
        self.sample_memory()
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self._start_wall
        cpu = cpu_seconds(self.process, self._live_children(refresh=True)) - self._start_cpu
        vram, util = self._stop_gpu()
        return Resources(wall, self.peak_pss / 2**20, 100 * cpu / (wall * (psutil.cpu_count() or 1)),
                         vram, util, self.memory_samples, self.cost_s, self.background_s)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self._thread is not None and self._thread.is_alive():
            self._stop.set()
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            elapsed = time.perf_counter() - self._start_wall
            per_sample = self.cost_s / max(self.memory_samples, 1)
            if self.cost_s + per_sample <= self.budget * elapsed:
                began = time.perf_counter()
                self.sample_memory()
                self.background_s += time.perf_counter() - began

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
        if self._gpu is None:
            return math.nan, math.nan
        from thesislib import gpu

        return gpu.peak_vram_mb(self.device), self._gpu.stop()


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
