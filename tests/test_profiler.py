"""The profiler: memory of the process and its workers with shared pages counted once and mapped files
left out, CPU time of workers included, GPU figures NaN without a GPU, and the protocol's figures by their
definitions."""

import math
import multiprocessing
import time

import numpy as np
import pytest
import torch

from thesislib import gpu
from thesislib.loaders.base import FormatLoader
from thesislib.stores.base import Reader
from thesislib.profiler import Profiler, Resources, figures, memory_bytes
from thesislib.train import EpochResult, fit

MB = 2**20


def test_peak_ram_sees_memory_allocated_during_the_run():
    with Profiler() as profiler:
        base = profiler.sample_memory()
        block = np.ones(200 * MB, dtype=np.uint8)  # touched: resident
        profiler.sample_memory()
        del block
        resources = profiler.stop()
    assert resources.peak_ram_mb >= base + 190


def hold(seconds):
    time.sleep(seconds)


def test_pages_shared_with_a_forked_worker_are_counted_once():
    block = np.ones(300 * MB, dtype=np.uint8)
    with Profiler() as profiler:
        alone = profiler.sample_memory()
        worker = multiprocessing.get_context("fork").Process(target=hold, args=(3,))
        worker.start()
        time.sleep(0.3)
        seen = len(profiler._live_children(refresh=True))
        with_worker = profiler.sample_memory()
        worker.terminate()
        worker.join()
        profiler.stop()
    assert seen == 1  # the worker was sampled
    assert with_worker < alone + 100  # its copy-on-write view of the 300 MB block is not counted twice
    del block


def spin(cpu_seconds):
    """Burn ``cpu_seconds`` of this process's CPU time (not wall time: a busy machine only makes it longer)."""
    end = time.process_time() + cpu_seconds
    while time.process_time() < end:
        pass


def test_cpu_time_of_workers_that_exited_is_counted():
    with Profiler() as profiler:
        worker = multiprocessing.get_context("fork").Process(target=spin, args=(0.6,))
        worker.start()
        worker.join()
        resources = profiler.stop()
    cores = resources.cpu_util_pct / 100 * resources.wall_s * torch.multiprocessing.cpu_count()
    assert cores >= 0.55  # the spinning worker's 0.6 CPU seconds, measured after it exited


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only case")
def test_gpu_figures_are_nan_without_a_gpu():
    with Profiler("cpu") as profiler:
        resources = profiler.stop()
    assert math.isnan(resources.peak_vram_mb) and math.isnan(resources.gpu_util_pct)


def test_sampler_keeps_its_own_cost_within_the_budget():
    with Profiler(interval_s=0.005, budget=0.01) as profiler:
        time.sleep(1.0)
        resources = profiler.stop()
    per_sample = resources.cost_s / resources.memory_samples
    assert resources.background_s <= 0.01 * resources.wall_s + per_sample  # at most one sample over
    assert resources.cost_s <= 0.01 * resources.wall_s + 3 * per_sample  # plus the start and stop samples
    assert resources.memory_samples >= 2


def test_memory_of_this_process_is_between_zero_and_its_rss():
    import psutil

    process = psutil.Process()
    assert 0 < memory_bytes(process) <= process.memory_info().rss * 1.05


def test_a_mapped_and_read_file_adds_no_memory_but_an_allocation_does(tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, np.ones(200 * MB, dtype=np.uint8))  # in the page cache now: mapping it reads no disk
    with Profiler() as profiler:
        base = profiler.sample_memory()
        mapped = np.load(path, mmap_mode="r")
        assert int(mapped[::4096].sum()) == len(mapped) // 4096 + (len(mapped) % 4096 > 0)  # every page
        after_reading = profiler.sample_memory()
        del mapped
        block = np.ones(200 * MB, dtype=np.uint8)
        after_allocating = profiler.sample_memory()
        del block
        profiler.stop()
    assert after_reading < base + 20
    assert after_allocating >= base + 190


# ------------------------------------------------------------------------------------------ DataLoader workers
class HeavyWorkerReader(Reader):
    """Batches of zeros, read by a worker that first allocates (and touches) ``worker_mb`` MiB of its own."""

    def __init__(self, worker_mb):
        self.worker_mb, self.handle = worker_mb, None

    def check(self):
        pass  # nothing on disk to check; opening would allocate in the main process

    def open(self):
        return np.ones(self.worker_mb * MB, dtype=np.uint8)

    def read_from(self, handle, indices):
        time.sleep(0.04)  # keeps the workers alive a few tenths of a second (more on a busy machine)
        return np.zeros((len(indices), 8, 8, 3), dtype=np.uint8), np.zeros(len(indices), dtype=np.int64)


class HeavyWorkerLoader(FormatLoader):
    name, store_kinds = "heavy", ("npy",)

    def __init__(self, store, worker_mb, **kwargs):
        self.worker_mb = worker_mb
        super().__init__(store, "train", **kwargs)

    def make_reader(self):
        return HeavyWorkerReader(self.worker_mb)


def test_memory_of_dataloader_workers_is_counted_in_a_short_epoch(prepared_cifar10):
    from thesislib.models import EmulatedAccelerator
    from thesislib.stores import open_store

    store = open_store(prepared_cifar10, "cifar10", "npy-uint8")
    loader = HeavyWorkerLoader(store, 150, batch_size=16, num_workers=2)  # 16 batches, workers not kept
    with Profiler() as profiler:
        base = profiler.sample_memory()
        epochs = fit(EmulatedAccelerator(), None, loader, None, 1, "cpu",
                     after_epoch=lambda _: profiler.sample_memory(),
                     first_batches=profiler.sample_soon)
        resources = profiler.stop()
    assert epochs[0].epoch_s < 2  # shorter than the periodic sampler's first sample
    assert resources.peak_ram_mb >= base + 2 * 150 * 0.9  # both workers' 150 MiB were seen


@pytest.mark.parametrize("workers", [0, 1])
def test_early_samples_need_workers_and_beyond_the_first_keep_within_their_budget(workers):
    children = [multiprocessing.get_context("fork").Process(target=hold, args=(2,)) for _ in range(workers)]
    with Profiler(interval_s=0.005, budget=0.0, early_budget=0.0) as profiler:
        for child in children:
            child.start()
        for _ in range(5):
            profiler.sample_soon()
            time.sleep(0.05)
        resources = profiler.stop()
    for child in children:
        child.terminate()
        child.join()
    assert profiler.early_samples == workers and resources.memory_samples == 2 + workers  # + start, stop


# ----------------------------------------------------------------------------------------- harness and failures
def test_a_paused_block_is_left_out_of_the_cpu_figures():
    with Profiler() as profiler:
        with profiler.paused():
            spin(0.5)
        time.sleep(0.2)
        resources = profiler.stop()
    busy = resources.cpu_util_pct / 100 * resources.wall_s * torch.multiprocessing.cpu_count()
    assert resources.wall_s < 0.45 and busy < 0.15


class FakeGpuSampler:
    started = stopped = 0

    def __init__(self, device):
        pass

    def start(self):
        FakeGpuSampler.started += 1
        return self

    def stop(self):
        FakeGpuSampler.stopped += 1
        return math.nan


def test_a_failed_run_stops_the_sampler_threads(monkeypatch):
    monkeypatch.setattr(gpu, "GpuUtilSampler", FakeGpuSampler)
    monkeypatch.setattr(gpu, "reset_peak_vram", lambda device: None)
    with pytest.raises(RuntimeError, match="simulated"):
        with Profiler("cuda") as profiler:
            raise RuntimeError("simulated failure")
    assert FakeGpuSampler.started == FakeGpuSampler.stopped == 1 and profiler._thread is None


def test_figures_follow_the_contracts_definitions():
    epochs = [EpochResult(0, epoch_s=4.0, data_s=1.0, images=100, batches=4, train_loss=2.0),
              EpochResult(1, epoch_s=6.0, data_s=2.0, images=100, batches=4, train_loss=1.5)]
    resources = Resources(wall_s=11.0, peak_ram_mb=512.0, cpu_util_pct=40.0, peak_vram_mb=math.nan,
                          gpu_util_pct=math.nan, memory_samples=5, cost_s=0.01)
    got = figures(epochs, resources)
    assert got["total_train_s"] == 10.0 and got["epoch_s_mean"] == 5.0 and got["data_s_mean"] == 1.5
    assert got["stall_pct"] == pytest.approx(30.0) and got["images_per_s"] == pytest.approx(20.0)
    assert got["peak_ram_mb"] == 512.0 and got["cpu_util_pct"] == 40.0 and math.isnan(got["peak_vram_mb"])
