"""The training loop and the models: same batches, same loss; data time is the time spent waiting."""

import math
import time

import pytest
import torch

from thesislib.errors import ThesisError
from thesislib.loaders import make_loader
from thesislib.loaders.base import Loader
from thesislib.models import EmulatedAccelerator, build_model, build_optimizer, stem_stride
from thesislib.stores import open_store
from thesislib.train import fit, to_float_nchw, train_epoch


def train_loss(data_dir, loader, store, seed=0, epochs=1, model="small", optimizer="sgd", lr=0.05):
    """(train loss, val accuracy) of the last epoch of a fresh model."""
    options = {"batch_size": 50, "seed": seed}
    store = open_store(data_dir, "cifar10", store)
    net = build_model(model, 10, 32, seed)
    with make_loader(loader, store, "train", **options) as train, \
            make_loader(loader, store, "val", shuffle=False, **options) as val:
        results = fit(net, build_optimizer(optimizer, net, lr), train, val, epochs, "cpu")
    return results[-1].train_loss, results[-1].val_acc


@pytest.fixture(scope="module")
def numpy_loss(prepared_cifar10):
    return train_loss(prepared_cifar10, "numpy", "npy-uint8")


@pytest.mark.parametrize("loader, store", [("hdf5", "hdf5"), ("zarr", "zarr"), ("memory", "npy-uint8"),
                                           ("files", "files-png")])
def test_lossless_loaders_give_the_same_train_loss_as_numpy(prepared_cifar10, numpy_loss, loader, store):
    loss, accuracy = train_loss(prepared_cifar10, loader, store)
    assert loss == pytest.approx(numpy_loss[0], abs=1e-6)
    assert accuracy == numpy_loss[1]


def test_training_is_deterministic_for_a_seed_and_changes_with_it(prepared_cifar10, numpy_loss):
    assert train_loss(prepared_cifar10, "numpy", "npy-uint8") == numpy_loss
    assert train_loss(prepared_cifar10, "numpy", "npy-uint8", seed=1)[0] != numpy_loss[0]


def test_loss_falls_over_epochs_and_accuracy_is_a_fraction(prepared_cifar10):
    store = open_store(prepared_cifar10, "cifar10", "npy-uint8")
    net = build_model("small", 10, 32, 0)
    with make_loader("numpy", store, "train", batch_size=25) as train:
        results = fit(net, build_optimizer("sgd", net, 0.05), train, None, 4, "cpu")
    assert results[-1].train_loss < results[0].train_loss
    loss, accuracy = train_loss(prepared_cifar10, "numpy", "npy-uint8", optimizer="rmsprop", lr=1e-3)
    assert math.isfinite(loss) and 0 <= accuracy <= 1


def test_epoch_result_counts_images_and_batches_and_splits_the_time(prepared_cifar10):
    store = open_store(prepared_cifar10, "cifar10", "npy-uint8")
    with make_loader("numpy", store, "train", batch_size=64) as train:
        result = train_epoch(EmulatedAccelerator(0.0), None, train, "cpu", epoch=0)
    assert (result.images, result.batches) == (250, 4)
    assert 0 < result.data_s <= result.epoch_s and math.isnan(result.train_loss)


class SleepyLoader(Loader):
    """A loader that sleeps a known time per batch and does nothing else (its batch is made once, up
    front); ``slept_s`` is what the sleeps really took (a busy machine wakes a sleeper a little late)."""
    name, store_kinds = "sleepy", ("npy",)

    def __init__(self, store, sleep_s, **kwargs):
        super().__init__(store, "train", **kwargs)
        self.sleep_s, self.slept_s, self.delivered = sleep_s, 0.0, 0
        self.batch = (torch.zeros((self.batch_size, 32, 32, 3), dtype=torch.uint8),
                      torch.zeros(self.batch_size, dtype=torch.int64))

    def __iter__(self):
        for _ in range(len(self)):
            start = time.perf_counter()
            time.sleep(self.sleep_s)
            self.slept_s += time.perf_counter() - start
            self.delivered += 1
            yield self.batch


@pytest.mark.parametrize("model", ["small", "sleep:15"])
def test_a_loader_sleeping_a_known_time_is_reported_as_that_data_time(prepared_cifar10, model):
    store = open_store(prepared_cifar10, "cifar10", "npy-uint8")
    loader = SleepyLoader(store, 0.04, batch_size=25)  # 10 batches: 0.4 s of waiting
    net = build_model(model, 10, 32, 0)
    result = train_epoch(net, build_optimizer("sgd", net, 0.05), loader, "cpu")
    assert result.data_s == pytest.approx(loader.slept_s, rel=0.05)
    assert loader.slept_s >= 10 * 0.04
    if model == "sleep:15":
        assert result.epoch_s - result.data_s >= 10 * 0.015


@pytest.mark.parametrize("workers, after", [(0, 1), (3, 3)])
def test_first_batches_is_called_once_per_epoch_when_each_worker_delivered_outside_the_data_time(
        prepared_cifar10, workers, after):
    store = open_store(prepared_cifar10, "cifar10", "npy-uint8")
    loader = SleepyLoader(store, 0.01, batch_size=50, num_workers=workers)  # 5 batches per epoch
    seen = []

    def first_batches():
        seen.append(loader.delivered)
        time.sleep(0.2)

    results = fit(EmulatedAccelerator(0.0), None, loader, None, 2, "cpu", first_batches=first_batches)
    assert seen == [after, 5 + after] and all(result.data_s < 0.2 for result in results)


# ----------------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("size", [32, 64, 512])
def test_small_cnn_classifies_every_dataset_size(size):
    net = build_model("small", 7, size)
    assert net(torch.rand(2, 3, size, size)).shape == (2, 7)


def test_stem_brings_images_to_about_32_pixels():
    assert [stem_stride(size) for size in (32, 64, 512)] == [1, 2, 16]


def test_resnet18_has_the_cifar_stem():
    net = build_model("resnet18", 10)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_same_seed_gives_the_same_initial_weights():
    first, second = build_model("small", 10, seed=4), build_model("small", 10, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


def test_none_and_sleep_are_emulated_accelerators():
    assert build_model("none", 10) == EmulatedAccelerator(0.0)
    assert build_model("sleep:20", 10) == EmulatedAccelerator(0.02)
    assert build_optimizer("sgd", build_model("none", 10), 0.1) is None


@pytest.mark.parametrize("name, message", [("vgg", "unknown model 'vgg': choose one of small, resnet18, none, "
                                                   "sleep:MS"),
                                           ("sleep:fast", "sleep:MS needs MS")])
def test_unknown_model_is_refused_with_the_valid_names(name, message):
    with pytest.raises(ThesisError, match=message):
        build_model(name, 10)


def test_unknown_optimizer_or_bad_learning_rate_is_refused():
    net = build_model("small", 10)
    with pytest.raises(ThesisError, match="unknown optimizer 'adam': choose one of sgd, rmsprop"):
        build_optimizer("adam", net, 0.1)
    with pytest.raises(ThesisError, match="--lr must be a number > 0"):
        build_optimizer("sgd", net, 0)


def test_uint8_nhwc_becomes_float_nchw_in_unit_range():
    images = torch.tensor([[[[0, 255, 51]]]], dtype=torch.uint8)
    x = to_float_nchw(images)
    assert x.shape == (1, 3, 1, 1) and x.dtype == torch.float32
    assert x.flatten().tolist() == pytest.approx([0.0, 1.0, 0.2])
    assert to_float_nchw(images.half() / 255).flatten().tolist() == pytest.approx([0.0, 1.0, 0.2], abs=1e-3)
