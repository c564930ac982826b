"""The thread path of the batch loader (``num_workers > 0`` for readers whose work releases the GIL) and the
fast readers behind it: the same batches, pixels and order as the plain loop; the reference decode's pixels;
the fallbacks (h5py for a layout without a memory map); errors in one line."""

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from thesislib.errors import ThesisError
from thesislib.kernels.imagefiles import DECODERS, unavailable_reason
from thesislib.loaders import make_loader
from thesislib.stores import imagefiles, open_store

THREADED = [("numpy", "npy-uint8"), ("numpy", "npy-float16"), ("hdf5", "hdf5"), ("zarr", "zarr"),
            ("files", "files-png"), ("files", "files-jpeg")]


def epochs(store, loader, num_workers, batch_size=48) -> list:
    """Two epochs of ``loader``, each batch copied (a ring slot is reused after its stated lifetime)."""
    with make_loader(loader, store, "train", batch_size=batch_size, seed=5, num_workers=num_workers) as made:
        batches = []
        for epoch in (0, 1):
            made.set_epoch(epoch)
            batches += [(images.clone(), labels.clone()) for images, labels in made]
    return batches


def assert_same_batches(got, expected) -> None:
    assert len(got) == len(expected)
    for (images, labels), (want_images, want_labels) in zip(got, expected):
        assert torch.equal(labels, want_labels) and torch.equal(images, want_images)


@pytest.mark.parametrize("loader, store", THREADED)
def test_num_workers_are_threads_for_readers_that_release_the_gil(prepared_cifar10, loader, store):
    with make_loader(loader, open_store(prepared_cifar10, "cifar10", store), "train", batch_size=32,
                     num_workers=2) as made:
        assert made.reads_in_threads()


@pytest.mark.parametrize("loader, store", THREADED)
def test_threads_deliver_the_plain_loops_batches_in_its_order(prepared_cifar10, loader, store):
    opened = open_store(prepared_cifar10, "cifar10", store)
    plain = epochs(opened, loader, 0)
    for workers in (1, 2, 3):
        assert_same_batches(epochs(opened, loader, workers), plain)


def test_jpeg_files_are_decoded_to_pillows_pixels(prepared_cifar10):
    if unavailable_reason("simplejpeg"):
        pytest.skip("simplejpeg is not installed")
    store = open_store(prepared_cifar10, "cifar10", "files-jpeg")
    paths, labels = imagefiles.list_files(store.path, "train")
    reader = store.reader("train")
    assert reader.decode.decoder in ("turbojpeg", "simplejpeg") and DECODERS[reader.decode.decoder].exact
    images, got_labels = reader.read(np.arange(len(paths)))
    np.testing.assert_array_equal(images, np.stack([imagefiles.decode(path) for path in paths]))
    np.testing.assert_array_equal(got_labels, labels)


def test_lossless_image_files_keep_an_exact_decoder(prepared_cifar10):
    decoder = open_store(prepared_cifar10, "cifar10", "files-png").reader("train").decode.decoder
    assert decoder in ("pillow", "opencv-png") and DECODERS[decoder].exact


def test_hdf5_reads_a_local_contiguous_store_through_a_memory_map(prepared_cifar10):
    reader = open_store(prepared_cifar10, "cifar10", "hdf5").reader("train")
    assert isinstance(reader.opened()[1], np.memmap)
    reader.close()


def test_a_compressed_hdf5_store_is_read_through_h5py_with_the_same_batches(prepared_cifar10, copy_store):
    store = copy_store("hdf5")
    with h5py.File(store.path / "data.h5", "a") as file:
        images = file["train/images"][()]
        del file["train/images"]
        file.create_dataset("train/images", data=images, chunks=(1, *images.shape[1:]), compression="gzip")
    reader = store.reader("train")
    assert not reader.reads_in_threads()
    reader.close()
    assert_same_batches(epochs(store, "hdf5", 2), epochs(open_store(prepared_cifar10, "cifar10", "hdf5"),
                                                          "hdf5", 0))


def test_a_corrupt_zarr_shard_read_by_threads_is_one_line_naming_it(copy_store):
    store = copy_store("zarr")
    chunk = store.path / "data.zarr" / "train" / "images" / "c.0.0.0.0"  # the first shard
    chunk.write_bytes(chunk.read_bytes()[:20])
    with pytest.raises(ThesisError) as error:
        epochs(store, "zarr", 2)
    message = str(error.value)
    assert str(chunk) in message and "prepare" in message and "\n" not in message


def test_a_jpeg_of_the_wrong_size_read_by_threads_is_named_in_the_stores_words(copy_store):
    store = copy_store("files-jpeg")
    path = imagefiles.list_files(store.path, "train")[0][3]
    Image.new("RGB", (16, 16)).save(path, format="JPEG")
    with pytest.raises(ThesisError) as error:
        epochs(store, "files", 2)
    assert str(error.value).startswith(f"{path} is 16x16, the store's images are 32x32")
