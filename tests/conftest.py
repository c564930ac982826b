"""Shared fixtures: one tiny synthetic CIFAR-10 prepared once per test session, in every store tests read."""

import pytest

from thesislib.prepare import prepare
from thesislib.stores import open_store

TINY_STORES = ["npy-uint8", "npy-float16", "hdf5", "zarr", "files-png", "files-jpeg"]


@pytest.fixture(scope="session")
def prepared_cifar10(tmp_path_factory):
    """The data folder of cifar10 at scale 0.005 (250 train, 50 val) in :data:`TINY_STORES`.

    Read-only: a test that damages a store copies it first (see ``copy_store``).
    """
    data_dir = tmp_path_factory.mktemp("data")
    prepare("cifar10", source="synthetic", scale=0.005, stores=TINY_STORES, seed=0, data_dir=data_dir,
            progress=False)
    return data_dir


@pytest.fixture
def copy_store(prepared_cifar10, tmp_path):
    """``copy_store(name)``: a private copy of one store of ``prepared_cifar10`` (to damage), as a Store."""
    import shutil

    def copy(name):
        shutil.copytree(prepared_cifar10 / "cifar10" / name, tmp_path / "cifar10" / name)
        return open_store(tmp_path, "cifar10", name)

    copy.data_dir = tmp_path
    return copy
