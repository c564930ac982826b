"""The profiler: memory of the process and its workers with shared pages counted once, CPU time of
workers included, GPU figures NaN without a GPU, and the protocol's figures by their definitions."""

import math
import multiprocessing
import time

import numpy as np
import pytest
import torch

from thesislib.profiler import Profiler, Resources, figures, pss_bytes
from thesislib.train import EpochResult

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


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_cpu_time_of_workers_that_exited_is_counted():
    with Profiler() as profiler:
        worker = multiprocessing.get_context("fork").Process(target=spin, args=(0.6,))
        worker.start()
        worker.join()
        resources = profiler.stop()
    cores = resources.cpu_util_pct / 100 * resources.wall_s * torch.multiprocessing.cpu_count()
    assert cores >= 0.4  # CPU seconds of the spinning worker (0.6 s, less any time it waited for a core)


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


def test_pss_of_this_process_is_between_zero_and_its_rss():
    import psutil

    process = psutil.Process()
    assert 0 < pss_bytes(process) <= process.memory_info().rss * 1.05


def test_figures_follow_the_contracts_definitions():
    epochs = [EpochResult(0, epoch_s=4.0, data_s=1.0, images=100, batches=4, train_loss=2.0),
              EpochResult(1, epoch_s=6.0, data_s=2.0, images=100, batches=4, train_loss=1.5)]
    resources = Resources(wall_s=11.0, peak_ram_mb=512.0, cpu_util_pct=40.0, peak_vram_mb=math.nan,
                          gpu_util_pct=math.nan, memory_samples=5, cost_s=0.01)
    got = figures(epochs, resources)
    assert got["total_train_s"] == 10.0 and got["epoch_s_mean"] == 5.0 and got["data_s_mean"] == 1.5
    assert got["stall_pct"] == pytest.approx(30.0) and got["images_per_s"] == pytest.approx(20.0)
    assert got["peak_ram_mb"] == 512.0 and got["cpu_util_pct"] == 40.0 and math.isnan(got["peak_vram_mb"])
