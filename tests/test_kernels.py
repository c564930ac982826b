"""The fast kernels give the pixels and order of a plain read (correctness only; speed lives in
benchmarks/peers.py)."""


import h5py
import numpy as np
import pytest
import torch
import zarr

from thesislib.errors import ThesisError
from thesislib.kernels.gather import TRIALS, Gather
from thesislib.kernels.hdf5map import contiguous_map
from thesislib.kernels.imagefiles import DECODERS, FileDecoder, unavailable_reason
from thesislib.kernels.prefetch import Layout, batches_of
from thesislib.kernels.zarrchunks import ChunkReader, chunk_plan
from thesislib.stores import imagefiles, open_store

BATCH = 32


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gather_copies_the_rows_of_the_indices_whatever_the_thread_count(threads):
    array = np.random.default_rng(0).integers(0, 255, (100, 4, 4, 3), dtype=np.uint8)
    indices = np.sort(np.random.default_rng(1).choice(100, 37, replace=False))
    gather = Gather(max_threads=3, choice={size: threads for size in range(64)})
    np.testing.assert_array_equal(gather(array, indices), array[indices])


def test_gather_measures_both_thread_counts_then_keeps_one_per_size_class():
    array = np.zeros((1000, 8, 8, 3), dtype=np.uint8)
    gather, indices = Gather(max_threads=2), np.arange(0, 1000, 4)
    for _ in range(2 * TRIALS):
        gather(array, indices)
    assert len(gather.choice) == 1 and list(gather.choice.values())[0] in (1, 2)
    assert all(len(times) == TRIALS for times in gather.timings[next(iter(gather.choice))].values())


@pytest.mark.parametrize("threads, slots, lifetime", [(0, 3, 3), (2, 4, 2)])
def test_batches_of_keeps_a_batch_for_its_stated_lifetime_then_reuses_its_ring_slot(threads, slots, lifetime):
    batches = [np.arange(i, i + 3) for i in range(0, 30, 3)]
    reader = Failing()
    reader.calls = -100  # never fails
    iterator = batches_of(reader, batches, threads=threads, batches_ahead=2, layout=Layout((2,), np.uint8))
    drawn = [next(iterator)]
    first = drawn[0][0].clone()
    drawn += [next(iterator) for _ in range(lifetime - 1)]
    assert torch.equal(drawn[0][0], first)  # still valid: fewer than `lifetime` further batches drawn
    drawn += [next(iterator) for _ in range(slots + 1 - lifetime)]
    pointers = [images.data_ptr() for images, _ in drawn]
    assert len(set(pointers[:slots])) == slots and pointers[slots] == pointers[0]  # one ring, in turn
    iterator.close()


def test_contiguous_map_refuses_chunked_and_compressed_datasets_which_h5py_then_reads(tmp_path):
    data = np.arange(6 * 4 * 4 * 3, dtype=np.uint8).reshape(6, 4, 4, 3)
    with h5py.File(tmp_path / "x.h5", "w") as file:
        file.create_dataset("plain", data=data)
        file.create_dataset("chunked", data=data, chunks=(2, 4, 4, 3), compression="gzip")
        assert contiguous_map(file["plain"]) is None  # open for writing: not all on disk yet
    with h5py.File(tmp_path / "x.h5", "r") as file:
        np.testing.assert_array_equal(contiguous_map(file["plain"])[[1, 4]], data[[1, 4]])
        assert contiguous_map(file["chunked"]) is None


def test_zarr_chunk_plan_reads_unwritten_chunks_as_fill_value_and_refuses_other_layouts(tmp_path):
    one = zarr.create_array(tmp_path / "one", shape=(4, 2, 3), chunks=(1, 2, 3), dtype="uint8", fill_value=7)
    one[1] = 5
    out = ChunkReader(chunk_plan(tmp_path / "one"), threads=2)(np.array([0, 1, 3]), np.empty((3, 2, 3), "uint8"))
    np.testing.assert_array_equal(out, one.get_orthogonal_selection(np.array([0, 1, 3])))
    zarr.create_array(tmp_path / "many", shape=(4, 2, 3), chunks=(2, 2, 3), dtype="uint8")
    zarr.create_array(tmp_path / "sharded", shape=(4, 2, 3), chunks=(1, 2, 3), shards=(2, 2, 3), dtype="uint8")
    assert chunk_plan(tmp_path / "many") is None and chunk_plan(tmp_path / "sharded") is None


def test_zarr_chunk_reader_names_a_corrupt_chunk(copy_store):
    store = copy_store("zarr")
    chunks = ChunkReader(chunk_plan(store.path / "data.zarr" / "train" / "images"))
    chunks.plan.path(3).write_bytes(b"not zstd")
    with pytest.raises(ThesisError, match="c.3.0.0.0.*corrupt"):
        chunks(np.array([1, 3]), np.empty((2, *store.shape("train")[1:]), np.uint8))


@pytest.mark.parametrize("store, decoder", [("files-png", "pillow"), ("files-jpeg", "pillow"),
                                            ("files-jpeg", "simplejpeg"), ("files-jpeg", "torchvision")])
def test_an_exact_file_decoder_gives_the_stores_reference_pixels(prepared_cifar10, store, decoder):
    if unavailable_reason(decoder):
        pytest.skip(unavailable_reason(decoder))
    assert DECODERS[decoder].exact
    paths = imagefiles.list_files(open_store(prepared_cifar10, "cifar10", store).path, "train")[0][:BATCH]
    got = FileDecoder(decoder, threads=2)(paths, np.empty((len(paths), 32, 32, 3), np.uint8))
    np.testing.assert_array_equal(got, np.stack([imagefiles.decode(path) for path in paths]))


def test_the_fast_jpeg_decoder_is_marked_approximate_and_close_to_pillow(prepared_cifar10):
    if unavailable_reason("simplejpeg-fast"):
        pytest.skip(unavailable_reason("simplejpeg-fast"))
    assert not DECODERS["simplejpeg-fast"].exact
    paths = imagefiles.list_files(open_store(prepared_cifar10, "cifar10", "files-jpeg").path, "train")[0][:64]
    fast = FileDecoder("simplejpeg-fast")(paths, np.empty((64, 32, 32, 3), np.uint8))
    exact = FileDecoder("pillow")(paths, np.empty((64, 32, 32, 3), np.uint8))
    assert 0 < np.abs(fast.astype(int) - exact).mean() < 4  # a few levels: visible in the checksum, not the image


def test_file_decoder_names_a_file_of_the_wrong_size(prepared_cifar10):
    paths = imagefiles.list_files(open_store(prepared_cifar10, "cifar10", "files-jpeg").path, "train")[0]
    with pytest.raises(ThesisError, match=r"\.jpg .*expected 16x16"):
        FileDecoder("pillow")(paths[:2], np.empty((2, 16, 16, 3), np.uint8))


class Failing:
    """A reader whose third batch fails."""

    def __init__(self):
        self.calls = 0

    def read(self, indices, out=None):
        self.calls += 1
        if self.calls == 3:
            raise ThesisError("batch three is broken")
        images = np.zeros((len(indices), 2), np.uint8) if out is None else out
        images[:, 0] = indices
        return images, indices


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_batches_of_raises_the_readers_error_as_it_is_after_the_batches_before_it(threads):
    batches = [np.array([i]) for i in range(6)]
    seen = []
    with pytest.raises(ThesisError, match="^batch three is broken$"):
        for images, labels in batches_of(Failing(), batches, threads):
            seen.append(int(images[0, 0]))
    assert seen == [0, 1]


def test_batches_of_keeps_order_and_kept_batches_with_threads_and_stops_early():
    batches = [np.arange(i, i + 3) for i in range(0, 30, 3)]
    reader = Failing()
    reader.calls = -100  # never fails
    kept = [(images.clone(), labels.clone()) for images, labels in
            batches_of(reader, batches, threads=2, batches_ahead=2)]  # a batch is kept past its lifetime
    assert [labels.tolist() for _, labels in kept] == [batch.tolist() for batch in batches]
    assert all(torch.equal(images[:, 0], torch.from_numpy(batch).to(torch.uint8))
               for (images, _), batch in zip(kept, batches))
    iterator = batches_of(reader, batches, threads=2)
    next(iterator)
    iterator.close()  # cancels the batches ahead and waits for those started
