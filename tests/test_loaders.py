"""Loaders: one sampler, the same batches from every store, and one clear message for every bad input."""

import numpy as np
import pytest
import torch

from thesislib.errors import ThesisError
from thesislib.loaders import DEFAULT_STORES, LOADERS, availability, loader_order, make_loader
from thesislib.loaders import memory as memory_loader
from thesislib.kernels.gather import Gather
from thesislib.stores.gather import BatchRing
from thesislib.loaders.sampler import epoch_batches
from thesislib.stores import open_store

# (loader, store) pairs that must deliver exactly the pixels of the npy-uint8 store
LOSSLESS = [("numpy", "npy-uint8"), ("hdf5", "hdf5"), ("zarr", "zarr"), ("memory", "npy-uint8"),
            ("files", "files-png"), ("torchvision", "files-png")]
HAS_GPU = torch.cuda.is_available()
CONTRACT_LOADERS = ["files", "numpy", "cupy", "hdf5", "zarr", "dali", "memory", "torchvision", "lmdb", "parquet"]


def read_all(data_dir, loader, store, epoch=1, **options):
    """(images, labels) of one epoch, concatenated, plus the number of batches (each batch copied: it lives
    in a reused buffer only until a few further batches were drawn)."""
    options = {"batch_size": 64, "seed": 3, **options}
    with make_loader(loader, open_store(data_dir, "cifar10", store), "train", **options) as reader:
        reader.set_epoch(epoch)
        batches = [(images.clone(), labels) for images, labels in reader]
    images = torch.cat([images for images, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    return images, labels, len(batches)


@pytest.fixture(scope="module")
def reference(prepared_cifar10):
    return read_all(prepared_cifar10, "numpy", "npy-uint8")


# ---------------------------------------------------------------------------------------------- sampler
def test_epoch_batches_cover_every_sample_once_in_sorted_batches():
    batches = epoch_batches(250, 64, seed=1, epoch=0)
    assert [len(batch) for batch in batches] == [64, 64, 64, 58]
    assert all(np.all(np.diff(batch) > 0) for batch in batches)
    assert sorted(np.concatenate(batches).tolist()) == list(range(250))


def test_epoch_batches_repeat_for_a_seed_and_change_with_the_epoch():
    first = epoch_batches(100, 10, seed=5, epoch=2)
    again = epoch_batches(100, 10, seed=5, epoch=2)
    other = epoch_batches(100, 10, seed=5, epoch=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_epoch_batches_without_shuffle_are_in_index_order_and_drop_last_drops_the_short_batch():
    assert np.concatenate(epoch_batches(10, 4, 0, 0, shuffle=False)).tolist() == list(range(10))
    assert [len(b) for b in epoch_batches(10, 4, 0, 0, drop_last=True)] == [4, 4]


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_batch_size_below_one_or_not_whole_is_refused(batch_size):
    with pytest.raises(ThesisError, match="batch_size must be a whole number >= 1"):
        epoch_batches(10, batch_size, 0, 0)


def test_negative_seed_is_refused():
    with pytest.raises(ThesisError, match="seed must be a whole number >= 0"):
        epoch_batches(10, 2, -1, 0)


@pytest.mark.parametrize("threads", [1, 3])
def test_gather_in_threads_equals_fancy_indexing(threads):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (2000, 32, 32, 3), dtype=np.uint8)
    indices = np.sort(rng.choice(2000, 700, replace=False))
    gather = Gather(max_threads=threads, choice={size: threads for size in range(64)})
    np.testing.assert_array_equal(gather(array, indices), array[indices])


def test_a_ring_batch_stays_valid_until_slots_further_batches_are_drawn():
    ring, gather = BatchRing(slots=3), Gather(max_threads=1)
    array = np.arange(4000, dtype=np.uint8).reshape(1000, 4)

    def batch(start):
        return gather(array, np.arange(start, start + 10), ring.take((10, 4), np.uint8))
    first = batch(0)
    later = [batch(10 * i) for i in (1, 2)]
    assert np.array_equal(first, array[:10]) and all(b is not first for b in later)
    batch(30)  # the third further batch reuses the first batch's slot
    assert np.array_equal(first, array[30:40])


def test_a_ring_hands_a_short_last_batch_a_view_of_its_slot_and_reallocates_for_other_shapes():
    ring = BatchRing(slots=2)
    full, _ = ring.take((8, 4), np.uint8), ring.take((8, 4), np.uint8)
    short = ring.take((3, 4), np.uint8)
    assert short.shape == (3, 4) and np.shares_memory(short, full)
    other = ring.take((8, 5), np.float32)
    assert other.shape == (8, 5) and other.dtype == np.float32


def test_a_reader_pickled_to_a_worker_reads_into_fresh_arrays(prepared_cifar10):
    import pickle

    reader = open_store(prepared_cifar10, "cifar10", "npy-uint8").reader("train")
    reader.opened()
    copy = pickle.loads(pickle.dumps(reader))
    assert copy.handle is None
    first = copy.read(np.arange(4))[0]
    later = [copy.read(np.arange(start, start + 4))[0] for start in (4, 8, 12)]
    assert not any(np.shares_memory(first, batch) for batch in later)
    np.testing.assert_array_equal(first, reader.read(np.arange(4))[0])
    reader.close(), copy.close()


# ------------------------------------------------------------------------------------ same batches everywhere
@pytest.mark.parametrize("loader, store", LOSSLESS)
def test_lossless_stores_deliver_the_same_pixels_in_the_same_order(prepared_cifar10, reference, loader, store):
    images, labels, batches = read_all(prepared_cifar10, loader, store)
    assert images.dtype == torch.uint8 and images.shape == (250, 32, 32, 3) and labels.dtype == torch.int64
    assert batches == 4
    assert torch.equal(labels, reference[1]) and torch.equal(images, reference[0])


@pytest.mark.parametrize("loader, store", [("numpy", "npy-uint8"), ("hdf5", "hdf5"), ("zarr", "zarr"),
                                           ("files", "files-png"), ("torchvision", "files-png")])
def test_two_workers_deliver_the_same_batches_as_the_main_process(prepared_cifar10, reference, loader, store):
    images, labels, _ = read_all(prepared_cifar10, loader, store, num_workers=2)
    assert torch.equal(labels, reference[1]) and torch.equal(images, reference[0])


def test_float16_store_delivers_float16_pixels_over_255(prepared_cifar10, reference):
    images, labels, _ = read_all(prepared_cifar10, "numpy", "npy-float16")
    assert images.dtype == torch.float16 and torch.equal(labels, reference[1])
    assert (images.float() * 255 - reference[0].float()).abs().max() < 0.2


def test_jpeg_store_delivers_the_same_samples_with_close_pixels(prepared_cifar10, reference):
    images, labels, _ = read_all(prepared_cifar10, "files", "files-jpeg")
    assert torch.equal(labels, reference[1])
    assert (images.float() - reference[0].float()).abs().mean() < 8


def test_loader_has_len_and_reopens_after_close(prepared_cifar10, reference):
    reader = make_loader("hdf5", open_store(prepared_cifar10, "cifar10", "hdf5"), "train", batch_size=100,
                         seed=3)
    assert len(reader) == 3
    reader.set_epoch(1)
    first = [labels for _, labels in reader]
    reader.close()
    assert all(torch.equal(a, b) for a, b in zip(first, [labels for _, labels in reader]))
    reader.close()


def test_default_stores_are_the_contracts():
    assert {name: DEFAULT_STORES[name] for name in CONTRACT_LOADERS} == {
        "files": "files-jpeg", "torchvision": "files-jpeg", "dali": "files-jpeg", "numpy": "npy-uint8",
        "cupy": "npy-uint8", "memory": "npy-uint8", "hdf5": "hdf5", "zarr": "zarr", "lmdb": "lmdb",
        "parquet": "parquet"}
    assert set(DEFAULT_STORES) == set(LOADERS)


def test_every_format_with_a_reader_is_a_loader_in_the_registrys_order():
    from thesislib.stores import FORMATS, format_of

    batch_loaders = [format_of(kind).LOADER for kind in FORMATS if getattr(format_of(kind), "LOADER", None)]
    assert [name for name in loader_order() if name in batch_loaders] == batch_loaders
    assert loader_order()[:3] == ["files", "torchvision", "dali"] and list(LOADERS) == loader_order()


def test_availability_lists_every_loader_and_the_cpu_ones_are_available():
    found = availability()
    assert list(found) == list(LOADERS)
    for name in ("files", "numpy", "hdf5", "zarr", "memory", "torchvision", "lmdb", "parquet"):
        assert found[name] == "available"


@pytest.mark.skipif(HAS_GPU, reason="checks the message on a machine without a CUDA GPU")
@pytest.mark.parametrize("loader", ["cupy"])
def test_gpu_loader_without_a_gpu_says_a_cuda_gpu_is_needed(prepared_cifar10, loader):
    assert "needs a CUDA GPU" in availability()[loader]
    with pytest.raises(ThesisError, match="needs a CUDA GPU"):
        make_loader(loader, open_store(prepared_cifar10, "cifar10", "npy-uint8"), "train", batch_size=8)


# ------------------------------------------------------------------------------------------------ bad input
def test_unknown_loader_lists_the_valid_ones():
    with pytest.raises(ThesisError, match="unknown loader 'ffcv': choose one of files, torchvision, dali, numpy"):
        make_loader("ffcv", None, "train", batch_size=8)


def test_loader_on_a_store_of_another_kind_names_the_stores_it_reads(prepared_cifar10):
    with pytest.raises(ThesisError, match="cannot read store 'hdf5'.*npy-uint8, npy-float16, npy-float32"):
        make_loader("numpy", open_store(prepared_cifar10, "cifar10", "hdf5"), "train", batch_size=8)


def test_truncated_npy_is_named_with_the_fix(copy_store):
    store = copy_store("npy-uint8")
    path = store.path / "train_images.npy"
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size // 2)
    with pytest.raises(ThesisError, match=r"train_images\.npy.*truncated or corrupt.*prepare"):
        make_loader("numpy", store, "train", batch_size=8)


def test_memory_loader_frees_the_split_on_close_and_reads_it_again(prepared_cifar10, reference):
    reader = make_loader("memory", open_store(prepared_cifar10, "cifar10", "npy-uint8"), "train",
                         batch_size=64, seed=3, pin_memory=True)
    assert not reader.images.is_pinned()  # the split itself is never pinned
    reader.close()
    assert reader.images is None
    reader.set_epoch(1)
    batches = [(images.clone(), images.is_pinned()) for images, _ in reader]  # ring buffers: copied
    assert torch.equal(torch.cat([images for images, _ in batches]), reference[0])
    assert all(pinned == HAS_GPU for _, pinned in batches)  # each batch is, with a GPU
    reader.close()


def test_truncated_hdf5_is_named_with_the_fix(copy_store):
    store = copy_store("hdf5")
    path = store.path / "data.h5"
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size // 2)
    with pytest.raises(ThesisError, match=r"data\.h5.*prepare"):
        list(make_loader("hdf5", store, "train", batch_size=8))


def test_hdf5_without_the_split_is_named_and_closed_again(copy_store):
    import h5py

    store = copy_store("hdf5")
    path = store.path / "data.h5"
    with h5py.File(path, "r+") as file:
        del file["train/images"]
    with pytest.raises(ThesisError, match=r"cannot read /train of .*data\.h5.*prepare") as error:
        make_loader("hdf5", store, "train", batch_size=8)
    assert error.value.__cause__ is not None
    still_open = [h5py.h5f.FileID(fid).name for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)]
    assert str(path).encode() not in still_open and str(path) not in still_open


def shorten_labels(store):
    """Rewrite the train labels of an hdf5 or zarr store one shorter than the images."""
    labels = np.zeros(store.count("train") - 1, dtype=np.int64)
    if store.kind == "hdf5":
        import h5py

        with h5py.File(store.path / "data.h5", "r+") as file:
            del file["train/labels"]
            file["train/labels"] = labels
    else:
        import zarr

        zarr.open_group(store.path / "data.zarr", mode="a").create_array("train/labels", data=labels,
                                                                         overwrite=True)


@pytest.mark.parametrize("loader", ["hdf5", "zarr"])
def test_labels_of_another_length_than_the_images_are_named(copy_store, loader):
    store = copy_store(loader)
    shorten_labels(store)
    with pytest.raises(ThesisError, match=r"train/labels holds 249 labels for 250 images.*prepare again"):
        make_loader(loader, store, "train", batch_size=8)


def test_a_zarr_chunk_that_fails_to_decompress_is_named_with_the_fix(copy_store):
    store = copy_store("zarr")
    chunk = store.path / "data.zarr" / "train" / "images" / "c.0.0.0.0"
    chunk.write_bytes(chunk.read_bytes()[:20])
    with pytest.raises(ThesisError, match=r"data\.zarr.*the store is corrupt.*prepare again"):
        list(make_loader("zarr", store, "train", batch_size=50, shuffle=False))


def test_other_failures_of_a_zarr_read_are_not_called_corruption(prepared_cifar10, monkeypatch):
    import zarr

    def out_of_memory(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(zarr.Array, "get_orthogonal_selection", out_of_memory)
    with pytest.raises(MemoryError):
        list(make_loader("zarr", open_store(prepared_cifar10, "cifar10", "zarr"), "train", batch_size=50))


def corrupt_first_image(store):
    from thesislib.stores.imagefiles import list_files

    path = list_files(store.path, "train")[0][0]
    path.write_bytes(path.read_bytes()[:40])  # a JPEG header with no image data
    return path


@pytest.mark.parametrize("loader, workers", [("files", 0), ("files", 2), ("torchvision", 0),
                                             ("torchvision", 2)])
def test_corrupt_jpeg_inside_a_store_is_named_in_one_line(copy_store, loader, workers):
    store = copy_store("files-jpeg")
    path = corrupt_first_image(store)
    with pytest.raises(ThesisError) as error:
        list(make_loader(loader, store, "train", batch_size=50, num_workers=workers))
    message = str(error.value)
    assert str(path) in message and "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("loader, workers", [("files", 0), ("torchvision", 0), ("torchvision", 2)])
def test_an_image_of_the_wrong_size_is_named_in_one_line(copy_store, loader, workers):
    from PIL import Image

    from thesislib.stores.imagefiles import list_files

    store = copy_store("files-png")
    path = list_files(store.path, "train")[0][0]
    Image.new("RGB", (16, 16)).save(path)
    with pytest.raises(ThesisError) as error:
        list(make_loader(loader, store, "train", batch_size=50, num_workers=workers))
    message = str(error.value)
    assert message.startswith(f"{path} is 16x16, the store's images are 32x32") and "\n" not in message


@pytest.mark.parametrize("name", ["img3.png", "000999.png"])
def test_a_misnamed_image_file_is_named_by_the_torchvision_loader(copy_store, name):
    from thesislib.stores.imagefiles import list_files

    store = copy_store("files-png")
    path = list_files(store.path, "train")[0][3]
    path.rename(path.with_name(name))
    with pytest.raises(ThesisError, match=f"{name} is not named <index:06d>"):
        make_loader("torchvision", store, "train", batch_size=50)


def test_two_image_files_of_one_index_are_named_by_the_torchvision_loader(copy_store):
    from thesislib.stores.imagefiles import list_files

    store = copy_store("files-png")
    paths = list_files(store.path, "train")[0]
    other = next(path for path in paths if path.parent != paths[0].parent)  # in another class folder
    paths[0].rename(paths[0].with_name(other.name))  # no file of index 0, two of the other's index
    with pytest.raises(ThesisError, match="repeats sample"):
        make_loader("torchvision", store, "train", batch_size=50)


def test_memory_loader_refuses_a_split_that_does_not_fit(prepared_cifar10, monkeypatch):
    monkeypatch.setattr(memory_loader, "free_bytes", lambda device: 1000)
    with pytest.raises(ThesisError, match="needs 1 MiB.*only 0 MiB of RAM.*'numpy' loader"):
        make_loader("memory", open_store(prepared_cifar10, "cifar10", "npy-uint8"), "train", batch_size=8)


@pytest.mark.parametrize("option, value, message", [("num_workers", -1, "num_workers must be"),
                                                    ("batch_size", 0, "batch_size must be"),
                                                    ("seed", -2, "seed must be")])
def test_bad_loader_options_are_refused(prepared_cifar10, option, value, message):
    with pytest.raises(ThesisError, match=message):
        make_loader("numpy", open_store(prepared_cifar10, "cifar10", "npy-uint8"), "train",
                    **{"batch_size": 8, option: value})
