"""One battery of behaviour tests that every CPU loader on its stores inherits (torchvision's DatasetTestCase
idea): the same batches as ``numpy`` for a seed, its length, close and reopen, several epochs, a store of
another kind refused, and damaged data named in one line. A loader joins by a subclass of
:class:`LoaderBattery` that says its loader, its store and how to damage that store."""

import shutil

import numpy as np
import pytest
import torch

from thesislib.errors import ThesisError
from thesislib.loaders import make_loader
from thesislib.prepare import prepare
from thesislib.stores import open_store

BATTERY_STORES = ["npy-uint8", "hdf5", "zarr", "files-png", "lmdb", "parquet"]
SEED, BATCH = 3, 64


@pytest.fixture(scope="module")
def battery_data(tmp_path_factory):
    """cifar10 at scale 0.005 (250 train, 50 val) in every store the battery reads."""
    data_dir = tmp_path_factory.mktemp("battery")
    prepare("cifar10", scale=0.005, stores=BATTERY_STORES, seed=0, data_dir=data_dir, progress=False)
    return data_dir


def read_epoch(store, loader, epoch=1, **options) -> tuple:
    """(images, labels, number of batches) of one epoch, each batch copied (a batch lives in a reused ring
    buffer for only a few further batches)."""
    with make_loader(loader, store, "train", **{"batch_size": BATCH, "seed": SEED, **options}) as reader:
        reader.set_epoch(epoch)
        batches = [(images.clone(), labels.clone()) for images, labels in reader]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]), len(batches)


@pytest.fixture(scope="module")
def numpy_epochs(battery_data):
    store = open_store(battery_data, "cifar10", "npy-uint8")
    return {epoch: read_epoch(store, "numpy", epoch) for epoch in (0, 1)}


@pytest.fixture
def damaged_copy(battery_data, tmp_path):
    """``damaged_copy(name)``: a private copy of a battery store, as a Store, to damage."""
    def copy(name):
        shutil.copytree(battery_data / "cifar10" / name, tmp_path / "cifar10" / name)
        return open_store(tmp_path, "cifar10", name)
    return copy


def truncate(path, keep=0.5):
    with open(path, "r+b") as file:
        file.truncate(int(path.stat().st_size * keep))
    return path


class LoaderBattery:
    """What every loader must do. Subclasses set ``loader``, ``store``, ``other_store`` (a store of a
    kind the loader does not read) and :meth:`damage`."""

    loader = store = other_store = ""
    workers = True  # also read through two DataLoader workers

    def damage(self, store):
        """Damage ``store`` (a private copy); return the path the error must name."""
        raise NotImplementedError

    def open(self, data_dir):
        return open_store(data_dir, "cifar10", self.store)

    def test_delivers_the_numpy_loaders_samples_and_pixels_in_its_order(self, battery_data, numpy_epochs):
        images, labels, _ = read_epoch(self.open(battery_data), self.loader)
        assert images.dtype == torch.uint8 and images.shape == (250, 32, 32, 3) and labels.dtype == torch.int64
        assert torch.equal(labels, numpy_epochs[1][1]) and torch.equal(images, numpy_epochs[1][0])

    def test_len_is_the_number_of_batches_it_delivers(self, battery_data):
        with make_loader(self.loader, self.open(battery_data), "val", batch_size=16, seed=SEED) as reader:
            assert len(reader) == 4 == len([labels for _, labels in reader])  # 50 samples: 16, 16, 16, 2

    def test_each_epoch_is_the_numpy_loaders_epoch(self, battery_data, numpy_epochs):
        store = self.open(battery_data)
        with make_loader(self.loader, store, "train", batch_size=BATCH, seed=SEED) as reader:
            for epoch in (0, 1):
                reader.set_epoch(epoch)
                labels = torch.cat([labels.clone() for _, labels in reader])
                assert torch.equal(labels, numpy_epochs[epoch][1])

    def test_close_then_iterate_again_reopens_and_gives_the_same_epoch(self, battery_data, numpy_epochs):
        reader = make_loader(self.loader, self.open(battery_data), "train", batch_size=BATCH, seed=SEED)
        reader.set_epoch(1)
        first = [labels.clone() for _, labels in reader]
        reader.close()
        again = [labels.clone() for _, labels in reader]
        reader.close()
        assert len(first) == len(again) == 4 and all(torch.equal(a, b) for a, b in zip(first, again))

    def test_two_workers_deliver_the_same_batches(self, battery_data, numpy_epochs):
        if not self.workers:
            pytest.skip(f"the {self.loader} loader reads in the main process")
        images, labels, _ = read_epoch(self.open(battery_data), self.loader, num_workers=2)
        assert torch.equal(labels, numpy_epochs[1][1]) and torch.equal(images, numpy_epochs[1][0])

    def test_a_store_of_another_kind_is_refused_with_the_stores_it_reads(self, battery_data):
        with pytest.raises(ThesisError, match=f"loader '{self.loader}' cannot read store '{self.other_store}'"
                                              f".*choose --store from .*{self.store}"):
            make_loader(self.loader, open_store(battery_data, "cifar10", self.other_store), "train",
                        batch_size=8)

    def test_damaged_data_is_named_in_one_line_with_the_fix(self, damaged_copy):
        store = damaged_copy(self.store)
        path = self.damage(store)
        with pytest.raises(ThesisError) as error:
            with make_loader(self.loader, store, "train", batch_size=50, shuffle=False) as reader:
                for _ in reader:
                    pass
        message = str(error.value)
        assert str(path) in message and "prepare" in message and "\n" not in message, message


class TestNumpy(LoaderBattery):
    loader, store, other_store = "numpy", "npy-uint8", "hdf5"

    def damage(self, store):
        return truncate(store.path / "train_images.npy")


class TestMemory(LoaderBattery):
    loader, store, other_store, workers = "memory", "npy-uint8", "zarr", False

    def damage(self, store):
        return truncate(store.path / "train_images.npy")


class TestHdf5(LoaderBattery):
    loader, store, other_store = "hdf5", "hdf5", "npy-uint8"

    def damage(self, store):
        return truncate(store.path / "data.h5")


class TestZarr(LoaderBattery):
    loader, store, other_store = "zarr", "zarr", "lmdb"

    def damage(self, store):
        chunk = store.path / "data.zarr" / "train" / "images" / "c.0.0.0.0"
        chunk.write_bytes(chunk.read_bytes()[:20])
        return store.path / "data.zarr"


class TestFiles(LoaderBattery):
    loader, store, other_store = "files", "files-png", "parquet"

    def damage(self, store):
        path = sorted((store.path / "train").rglob("000000.png"))[0]
        path.write_bytes(path.read_bytes()[:40])
        return path


class TestTorchvision(TestFiles):
    loader = "torchvision"


class TestLmdb(LoaderBattery):
    loader, store, other_store = "lmdb", "lmdb", "npy-uint8"

    def damage(self, store):
        return truncate(store.path / "train.lmdb" / "data.mdb")


class TestParquet(LoaderBattery):
    loader, store, other_store = "parquet", "parquet", "files-png"

    def damage(self, store):
        return truncate(store.path / "train.parquet", keep=0.9)


# ------------------------------------------------------------- damage that only a format can have
def test_an_lmdb_store_without_a_samples_key_names_the_key(damaged_copy):
    import lmdb

    store = damaged_copy("lmdb")
    with lmdb.open(str(store.path / "train.lmdb")) as env, env.begin(write=True) as txn:
        assert txn.delete((7).to_bytes(8, "big"))
    with pytest.raises(ThesisError, match=r"data\.mdb lacks sample 7 \(key 0000000000000007\).*prepare"):
        list(make_loader("lmdb", store, "train", batch_size=50, shuffle=False))


def test_an_lmdb_value_of_the_wrong_size_is_named_when_the_loader_is_made(damaged_copy):
    import lmdb

    store = damaged_copy("lmdb")
    with lmdb.open(str(store.path / "train.lmdb")) as env, env.begin(write=True) as txn:
        txn.put((3).to_bytes(8, "big"), b"short")
    with pytest.raises(ThesisError, match=r"data\.mdb has 5 bytes, not 3072, for sample 3 .*prepare"):
        make_loader("lmdb", store, "train", batch_size=8)


def test_lmdb_rows_keep_their_environment_open_after_the_reader_closes_and_release_it_after(battery_data):
    import gc

    import lmdb

    from thesislib.stores.lmdb import read_back

    store = open_store(battery_data, "cifar10", "lmdb")
    indices = np.array([0, 5, 249])
    expected = read_back(store.path, "train")[0][indices]
    reader = store.reader("train")
    rows, _ = reader.opened()
    reader.close()  # a thread still copying would hold the rows like this
    np.testing.assert_array_equal(rows.take(indices), expected)
    with pytest.raises(lmdb.Error, match="already open"):  # the environment is still open
        lmdb.open(str(store.path / "train.lmdb"), readonly=True, lock=False)
    del rows
    gc.collect()
    with lmdb.open(str(store.path / "train.lmdb"), readonly=True, lock=False):  # not "already open"
        pass


def test_lmdb_values_spread_beyond_the_files_size_are_refused_before_any_copy(battery_data):
    store = open_store(battery_data, "cifar10", "lmdb")
    reader = store.reader("train")
    size = (store.path / "train.lmdb" / "data.mdb").stat().st_size
    reader.check_span(np.array([4096, 4096 + size - 3072], dtype=np.uint64))  # the whole file: accepted
    with pytest.raises(ThesisError, match=r"data\.mdb places its values over \d+ bytes, more than its"):
        reader.check_span(np.array([4096, 4096 + size], dtype=np.uint64))


def test_an_lmdb_store_without_labels_is_named_when_the_loader_is_made(damaged_copy):
    import lmdb

    store = damaged_copy("lmdb")
    with lmdb.open(str(store.path / "val.lmdb")) as env, env.begin(write=True) as txn:
        txn.delete(b"__labels__")
    with pytest.raises(ThesisError, match=r"val\.lmdb/data\.mdb lacks the labels.*prepare"):
        make_loader("lmdb", store, "val", batch_size=8)


def test_a_parquet_row_whose_png_is_corrupt_is_named_with_its_row(damaged_copy):
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = damaged_copy("parquet")
    path = store.path / "train.parquet"
    table = pq.read_table(path)
    images = table.column("image").to_pylist()
    images[5]["bytes"] = images[5]["bytes"][:30]
    table = table.set_column(0, "image", pa.array(images, table.schema.field("image").type))
    pq.write_table(table, path, row_group_size=1000)
    with pytest.raises(ThesisError, match=r"train\.parquet row 5 holds no readable PNG.*prepare"):
        list(make_loader("parquet", store, "train", batch_size=50, shuffle=False))


def test_a_missing_parquet_file_is_named(damaged_copy):
    store = damaged_copy("parquet")
    (store.path / "val.parquet").unlink()
    with pytest.raises(ThesisError, match=r"val\.parquet is missing.*prepare"):
        make_loader("parquet", store, "val", batch_size=8)


def test_parquet_reads_only_the_row_groups_a_batch_needs(battery_data, monkeypatch):
    import pyarrow.parquet as pq

    asked = []
    read = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups",
                        lambda self, groups, **kw: asked.append(list(groups)) or read(self, groups, **kw))
    reader = open_store(battery_data, "cifar10", "parquet").reader("train")
    images, labels = reader.read(np.array([3, 17, 200]))
    reader.close()
    assert asked == [[0]] and images.shape == (3, 32, 32, 3)  # 250 rows: one row group of up to 1000
