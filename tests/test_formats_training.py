"""Same seed, same training: every lossless store read by its loader gives the ``numpy`` loader's train loss
(to 1e-6) and validation accuracy with the ``small`` model."""

import pytest

from thesislib.loaders import make_loader
from thesislib.models import build_model, build_optimizer
from thesislib.prepare import prepare
from thesislib.stores import open_store
from thesislib.train import fit

PAIRS = [("hdf5", "hdf5"), ("zarr", "zarr"), ("lmdb", "lmdb"), ("parquet", "parquet"), ("files", "files-png")]


@pytest.fixture(scope="module")
def training_data(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("formats-training")
    prepare("cifar10", scale=0.005, stores=["npy-uint8", *(store for _, store in PAIRS)], seed=0,
            data_dir=data_dir, progress=False)
    return data_dir


def train_loss(data_dir, loader, store, seed=0, epochs=1) -> tuple:
    """(train loss, val accuracy) of the last epoch of a fresh ``small`` model."""
    options = {"batch_size": 50, "seed": seed}
    store = open_store(data_dir, "cifar10", store)
    net = build_model("small", 10, 32, seed)
    with make_loader(loader, store, "train", **options) as train, \
            make_loader(loader, store, "val", shuffle=False, **options) as val:
        results = fit(net, build_optimizer("sgd", net, 0.05), train, val, epochs, "cpu")
    return results[-1].train_loss, results[-1].val_acc


@pytest.fixture(scope="module")
def numpy_result(training_data):
    return train_loss(training_data, "numpy", "npy-uint8")


@pytest.mark.parametrize("loader, store", PAIRS)
def test_lossless_format_gives_the_numpy_loaders_train_loss(training_data, numpy_result, loader, store):
    loss, accuracy = train_loss(training_data, loader, store)
    assert loss == pytest.approx(numpy_result[0], abs=1e-6)
    assert accuracy == numpy_result[1]
