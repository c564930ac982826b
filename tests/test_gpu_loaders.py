"""The GPU loaders: DALI's CPU-only pipeline everywhere (so CI runs it); the GPU paths under ``pytest -m gpu``.

GPU tests are marked ``gpu`` and skip, with the reason, where torch sees no CUDA GPU.
"""

import importlib.util
import time

import numpy as np
import pytest
import torch

from thesislib import gpu
from thesislib.cli import main
from thesislib.errors import ThesisError
from thesislib.loaders import make_loader
from thesislib.loaders.cupy import CupyLoader, runs
from thesislib.loaders.dali import DaliLoader, looks_complete
from thesislib.stores import open_store

HAS_GPU = torch.cuda.is_available()
REQUIRES_GPU = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU: torch.cuda.is_available() is False "
                                                       "on this machine")
REQUIRES_CUPY = pytest.mark.skipif(importlib.util.find_spec("cupy") is None,
                                   reason="CuPy is not installed: pip install -e '.[gpu]'")
NO_GPU = pytest.mark.skipif(HAS_GPU, reason="checks the behaviour on a machine without a CUDA GPU")
BATCH = 64


def load(data_dir, loader, store, device="cpu", epochs=(0, 1), **options):
    """Every batch of ``epochs`` as numpy arrays: [(epoch, images, labels), ...]."""
    batches = []
    with make_loader(loader, open_store(data_dir, "cifar10", store), "train", batch_size=BATCH, seed=7,
                     device=device, **options) as reader:
        for epoch in epochs:
            reader.set_epoch(epoch)
            for images, labels in reader:
                assert images.device.type == torch.device(device).type
                assert labels.dtype == torch.int64
                batches.append((epoch, images.cpu().numpy().copy(), labels.cpu().numpy()))  # kept: a copy
    return batches


def assert_same_batches(got, expected, atol=0):
    assert len(got) == len(expected) > 0
    for (epoch, images, labels), (epoch_ref, images_ref, labels_ref) in zip(got, expected):
        assert epoch == epoch_ref
        np.testing.assert_array_equal(labels, labels_ref)
        assert images.dtype == images_ref.dtype and images.shape == images_ref.shape
        if atol:
            assert np.abs(images.astype(np.float64) - images_ref).mean() <= atol
        else:
            np.testing.assert_array_equal(images, images_ref)


# DALI's CPU pipeline: runs everywhere.

@pytest.mark.parametrize("npy_read", ["stream", "reader"])
def test_dali_cpu_pipeline_gives_the_numpy_loaders_batches_for_the_npy_store(prepared_cifar10, npy_read):
    got = load(prepared_cifar10, "dali", "npy-uint8", npy_read=npy_read)
    assert_same_batches(got, load(prepared_cifar10, "numpy", "npy-uint8"))


def test_dali_cpu_pipeline_keeps_the_float16_store_dtype(prepared_cifar10):
    got = load(prepared_cifar10, "dali", "npy-float16", epochs=(0,))
    assert_same_batches(got, load(prepared_cifar10, "numpy", "npy-float16", epochs=(0,)))


def test_dali_cpu_decoder_gives_the_exact_pixels_of_the_lossless_png_store(prepared_cifar10):
    got = load(prepared_cifar10, "dali", "files-png")
    assert_same_batches(got, load(prepared_cifar10, "numpy", "npy-uint8"))


def test_dali_cpu_decoder_reads_the_jpeg_store_with_its_labels_and_close_pixels(prepared_cifar10):
    got = load(prepared_cifar10, "dali", "files-jpeg")
    assert_same_batches(got, load(prepared_cifar10, "files", "files-jpeg"), atol=1.0)  # two libjpeg builds


def test_dali_loader_reads_files_jpeg_by_default_and_runs_without_a_gpu():
    assert DaliLoader.default_store == "files-jpeg" and not DaliLoader.needs_gpu
    assert DaliLoader.unavailable_reason() is None


def test_dali_rebuilds_its_pipeline_after_an_epoch_left_unfinished(prepared_cifar10):
    store = open_store(prepared_cifar10, "cifar10", "npy-uint8")
    with DaliLoader(store, "train", batch_size=BATCH, seed=7) as reader:
        first = iter(reader)
        next(first)
        first.close()  # the consumer stopped mid-epoch
        reader.set_epoch(1)
        got = [(1, images.numpy(), labels.numpy()) for images, labels in reader]
    assert_same_batches(got, load(prepared_cifar10, "numpy", "npy-uint8", epochs=(1,)))


def drop_and_exit(kept):
    import os

    kept.clear()  # the last reference: the pipeline is destroyed here, in the forked process
    os._exit(0)


def test_a_closed_dali_loader_leaves_no_pipeline_for_a_forked_process_to_hang_on(prepared_cifar10):
    import multiprocessing

    with DaliLoader(open_store(prepared_cifar10, "cifar10", "npy-uint8"), "train", batch_size=BATCH) as reader:
        next(iter(reader))
        kept = [reader._pipe]  # as a reference cycle would keep it alive until some later collection
    child = multiprocessing.get_context("fork").Process(target=drop_and_exit, args=(kept,))
    child.start()
    child.join(timeout=60)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung and child.exitcode == 0, "destroying the pipeline in a forked process hung"


def first_file(store):
    return sorted(sorted((store.path / "train").iterdir())[0].iterdir())[0]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_dali_names_a_corrupt_image_file_before_decoding_it(copy_store, damage):
    store = copy_store("files-jpeg")
    path = first_file(store)
    data = path.read_bytes()
    path.write_bytes(b"not a JPEG" * 20 if damage == "garbage" else data[:len(data) // 2])
    with DaliLoader(store, "train", batch_size=BATCH, shuffle=False) as reader:
        with pytest.raises(ThesisError, match=path.name) as error:
            list(reader)
    assert "\n" not in str(error.value) and "prepare" in str(error.value)


@pytest.mark.parametrize("store_name", ["files-jpeg", "files-png"])
def test_complete_image_files_pass_the_signature_check_and_truncated_ones_fail(prepared_cifar10, store_name):
    store = open_store(prepared_cifar10, "cifar10", store_name)
    data = first_file(store).read_bytes()
    assert looks_complete(data, store.spec.codec)
    assert not looks_complete(data[:-10], store.spec.codec) and not looks_complete(b"\0" + data, store.spec.codec)


def test_dali_refuses_a_store_it_cannot_read(prepared_cifar10):
    with pytest.raises(ThesisError, match="cannot read store 'hdf5'"):
        DaliLoader(open_store(prepared_cifar10, "cifar10", "hdf5"), "train", batch_size=BATCH)


@NO_GPU
def test_dali_asked_for_cuda_without_a_gpu_says_to_use_the_cpu(prepared_cifar10):
    store = open_store(prepared_cifar10, "cifar10", "files-jpeg")
    with pytest.raises(ThesisError, match="--device cpu"):
        DaliLoader(store, "train", batch_size=BATCH, device="cuda")


# CuPy without a GPU: a one-line error and exit status 2.

@NO_GPU
def test_cupy_without_a_gpu_raises_one_line_naming_the_gpu(prepared_cifar10):
    store = open_store(prepared_cifar10, "cifar10", "npy-uint8")
    for build in (lambda: make_loader("cupy", store, "train", batch_size=BATCH, device="cuda"),
                  lambda: CupyLoader(store, "train", batch_size=BATCH)):
        with pytest.raises(ThesisError, match="needs a CUDA GPU") as error:
            build()
        assert "\n" not in str(error.value)
    assert "needs a CUDA GPU" in CupyLoader.unavailable_reason()


@NO_GPU
def test_bench_with_the_cupy_loader_exits_2_with_one_line_without_a_gpu(prepared_cifar10, tmp_path, capsys):
    if importlib.util.find_spec("thesislib.bench") is None:
        pytest.skip("thesislib.bench (the bench command) is not in this checkout yet")
    status = main(["bench", "--loader", "cupy", "--dataset", "cifar10", "--scale", "0.005", "--model", "none",
                   "--data-dir", str(prepared_cifar10), "--results", str(tmp_path / "results.csv")])
    error = capsys.readouterr().err.strip()
    assert status == 2 and "cupy" in error and "GPU" in error and "\n" not in error


def test_a_missing_gpu_library_names_the_wheel_built_for_this_torch(monkeypatch):
    import importlib.util as util

    from thesislib.envinfo import wheel_name

    monkeypatch.setattr(util, "find_spec", lambda name, *args: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert DaliLoader.unavailable_reason() == f"needs NVIDIA DALI: pip install {wheel_name('dali')}"
    assert f"pip install {wheel_name('cupy')})" in CupyLoader.unavailable_reason()


def test_cupy_reads_each_run_of_consecutive_samples_at_once():
    assert runs(np.array([3, 4, 5, 9, 11, 12])) == [(0, 3), (3, 4), (4, 6)]
    assert runs(np.array([7])) == [(0, 1)]
    assert runs(np.arange(10, 20)) == [(0, 10)]


# GPU paths: `pytest -m gpu` on a machine with a CUDA GPU.

@pytest.mark.gpu
@REQUIRES_GPU
@REQUIRES_CUPY
@pytest.mark.parametrize("source", ["auto", "vram", "pinned", "kvikio"])
@pytest.mark.parametrize("store", ["npy-uint8", "npy-float16"])
def test_cupy_gives_the_numpy_loaders_batches_on_the_gpu(prepared_cifar10, store, source):
    if source == "kvikio" and importlib.util.find_spec("kvikio") is None:
        pytest.skip("kvikio is not installed (pip install -e '.[gpu]')")
    got = load(prepared_cifar10, "cupy", store, device="cuda", source=source)
    assert_same_batches(got, load(prepared_cifar10, "numpy", store))


@pytest.mark.gpu
@REQUIRES_GPU
@REQUIRES_CUPY
def test_cupy_batches_are_cuda_tensors_sharing_cupys_memory(prepared_cifar10):
    import cupy

    store = open_store(prepared_cifar10, "cifar10", "npy-uint8")
    with CupyLoader(store, "train", batch_size=BATCH, seed=7, source="auto") as reader:
        images, labels = next(iter(reader))
        assert images.is_cuda and labels.is_cuda and images.dtype == torch.uint8
        assert cupy.from_dlpack(images).data.ptr == images.data_ptr()  # one buffer, two views
        assert reader.mode == "vram"  # a tiny split fits in VRAM


@pytest.mark.gpu
@REQUIRES_GPU
@pytest.mark.parametrize("npy_read", ["stream", "reader"])
def test_dali_gpu_pipeline_gives_the_numpy_loaders_batches_for_the_npy_store(prepared_cifar10, npy_read):
    got = load(prepared_cifar10, "dali", "npy-uint8", device="cuda", npy_read=npy_read)
    assert_same_batches(got, load(prepared_cifar10, "numpy", "npy-uint8"))


@pytest.mark.gpu
@REQUIRES_GPU
def test_dali_gpu_decoder_gives_the_exact_pixels_of_the_lossless_png_store(prepared_cifar10):
    got = load(prepared_cifar10, "dali", "files-png", device="cuda")
    assert_same_batches(got, load(prepared_cifar10, "numpy", "npy-uint8"))


@pytest.mark.gpu
@REQUIRES_GPU
def test_dali_mixed_jpeg_decoder_is_close_to_the_cpu_decoder(prepared_cifar10):
    got = load(prepared_cifar10, "dali", "files-jpeg", device="cuda", epochs=(0,))
    assert_same_batches(got, load(prepared_cifar10, "dali", "files-jpeg", epochs=(0,)), atol=2.0)


@pytest.mark.gpu
@REQUIRES_GPU
@REQUIRES_CUPY
def test_peak_vram_counts_torch_and_cupy_allocations():
    import cupy

    gpu.reset_peak_vram()
    held = torch.empty(64 << 20, dtype=torch.uint8, device="cuda"), cupy.empty(32 << 20, dtype=cupy.uint8)
    assert gpu.peak_vram_mb() >= 96
    del held


@pytest.mark.gpu
@REQUIRES_GPU
def test_gpu_util_sampler_reads_nvml_while_the_gpu_works():
    sampler = gpu.GpuUtilSampler().start(interval_s=0.05)
    a = torch.randn(2048, 2048, device="cuda")
    deadline = time.perf_counter() + 0.5
    while time.perf_counter() < deadline:
        a = (a @ a).tanh()
        torch.cuda.synchronize()
    mean = sampler.stop()
    assert len(sampler.samples) >= 2 and 0 <= mean <= 100


@pytest.mark.gpu
@REQUIRES_GPU
def test_gds_status_is_known_where_a_gpu_exists():
    assert gpu.gds_status() in ("available", "compatibility mode", "not installed")
