"""The fast kernels give the pixels and order of a plain read (correctness only; speed lives in
benchmarks/peers.py)."""


import h5py
import numpy as np
import pytest
import torch
import zarr

from thesislib.errors import ThesisError
from thesislib.kernels.gather import REFRESH, TRIALS, Gather, fastest, size_class
from thesislib.kernels.hdf5map import contiguous_map
from thesislib.kernels.imagefiles import DECODERS, FileDecoder, unavailable_reason
from thesislib.kernels.pointerrows import PointerRows
from thesislib.kernels.prefetch import TRIALS as WINDOWS_PER_CANDIDATE
from thesislib.kernels.prefetch import MIN_WINDOW, WINDOW, Layout, Prefetcher, Split
from thesislib.kernels.zarrchunks import ChunkReader, MappedShards, chunk_plan, mapped_shards
from thesislib.loaders.sampler import epoch_batches
from thesislib.stores import imagefiles, open_store

BATCH = 32


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gather_copies_the_rows_of_the_indices_whatever_the_thread_count(threads):
    array = np.random.default_rng(0).integers(0, 255, (100, 4, 4, 3), dtype=np.uint8)
    indices = np.sort(np.random.default_rng(1).choice(100, 37, replace=False))
    gather = Gather(max_threads=3, choice={size: threads for size in range(64)})
    np.testing.assert_array_equal(gather(array, indices), array[indices])


def scattered_rows(count=60, shape=(4, 4, 3), seed=0):
    """(PointerRows, the rows as one array): each row in its own array, so that no stride covers them."""
    rows = [np.random.default_rng(seed + at).integers(0, 255, shape, dtype=np.uint8) for at in range(count)]
    addresses = [row.__array_interface__["data"][0] for row in rows]
    return PointerRows(addresses, (count, *shape), np.uint8, owner=rows), np.stack(rows)


@pytest.mark.parametrize("threads", [1, 2])
def test_pointer_rows_gather_the_rows_at_their_addresses_whatever_the_thread_count(threads):
    rows, expected = scattered_rows()
    indices = np.sort(np.random.default_rng(1).choice(len(rows), 23, replace=False))
    gather = Gather(max_threads=2, choice={size: threads for size in range(64)})
    np.testing.assert_array_equal(gather(rows, indices), expected[indices])


def test_pointer_rows_keep_their_owner_and_refuse_indices_outside_and_a_wrong_buffer():
    rows, expected = scattered_rows(count=8)
    assert isinstance(rows.owner, list) and len(rows.owner) == 8  # the memory stays while the rows live
    with pytest.raises(IndexError, match="outside 0..7"):
        rows.take(np.array([3, 8]))
    with pytest.raises(ValueError, match="C-contiguous uint8 array of shape"):
        rows.take(np.array([1, 2]), out=np.empty((2, 4, 4, 3), np.float32))
    np.testing.assert_array_equal(rows.take(np.array([], dtype=np.int64)), expected[:0])


def test_gather_measures_both_thread_counts_then_keeps_one_per_size_class():
    array = np.zeros((1000, 8, 8, 3), dtype=np.uint8)
    gather, indices = Gather(max_threads=2), np.arange(0, 1000, 4)
    for _ in range(2 * TRIALS):
        gather(array, indices)
    assert len(gather.choice) == 1 and list(gather.choice.values())[0] in (1, 2)
    assert all(len(times) == TRIALS for times in gather.timings[next(iter(gather.choice))].values())


def test_gather_measures_a_size_class_again_at_exponentially_spaced_calls_unless_its_choice_was_given():
    array, indices = np.zeros((100, 2, 2, 3), dtype=np.uint8), np.arange(0, 100, 3)
    measured, given = Gather(max_threads=2), Gather(max_threads=2, choice={size: 1 for size in range(64)})
    for _ in range(REFRESH - 1):
        measured(array, indices), given(array, indices)
    assert measured.choice and measured.timings
    measured(array, indices), given(array, indices)  # the REFRESH-th call: measured again from scratch
    key = size_class(array[indices].nbytes)
    assert key not in measured.choice and sum(map(len, measured.timings[key].values())) == 1
    assert given.choice[key] == 1 and not given.timings


def test_gather_takes_more_threads_only_when_they_save_the_margin():
    assert fastest({1: [1.0, 1.2], 4: [0.5, 0.7]}) == 4
    assert fastest({1: [1.0, 1.2], 4: [0.95, 0.97]}) == 1  # the fastest calls: 5% apart


@pytest.mark.parametrize("threads, slots, lifetime", [(0, 4, 2), (1, 4, 2), (2, 4, 2)])
def test_batches_of_keeps_a_batch_for_its_stated_lifetime_then_reuses_its_ring_slot(threads, slots, lifetime):
    batches = [np.arange(i, i + 3) for i in range(0, 30, 3)]
    reader = Failing()
    reader.calls = -100  # never fails
    prefetcher = Prefetcher(threads, batches_ahead=2, layout=Layout((2,), np.uint8), choice=threads)
    iterator = prefetcher(reader, batches)
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


def one_sample_chunks(folder, images):
    """``images`` written in the zarr store's earlier layout: one Zstandard-compressed sample per chunk."""
    from zarr.codecs import ZstdCodec

    array = zarr.create_array(folder, shape=images.shape, dtype="uint8", chunks=(1, *images.shape[1:]),
                              chunk_key_encoding={"name": "default", "separator": "."},
                              compressors=ZstdCodec(level=1))
    array[:] = images
    return folder


def test_the_zarr_loader_gathers_from_mapped_shards(prepared_cifar10):
    reader = open_store(prepared_cifar10, "cifar10", "zarr").reader("train")
    assert isinstance(reader.opened()[0], MappedShards)
    reader.close()


def test_chunk_reader_reads_the_earlier_one_sample_per_chunk_layout(prepared_cifar10, tmp_path):
    images = np.load(prepared_cifar10 / "cifar10" / "npy-uint8" / "train_images.npy")
    reader = ChunkReader(chunk_plan(one_sample_chunks(tmp_path / "one", images)), threads=2)
    for batch in epoch_batches(len(images), BATCH, 0, 0):
        np.testing.assert_array_equal(reader(batch, np.empty((len(batch), *images.shape[1:]), np.uint8)),
                                      images[batch])


def test_mapped_shards_gather_every_shard_even_a_partial_last_one_and_refuse_other_layouts(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (10, 2, 2, 3), dtype=np.uint8)
    data[5] = 0  # an all-zero sample is stored too (write_empty_chunks), or the shard would not be complete
    options = {"shape": data.shape, "dtype": "uint8", "chunks": (1, 2, 2, 3), "shards": (4, 2, 2, 3)}
    zarr.create_array(tmp_path / "plain", compressors=None, config={"write_empty_chunks": True}, **options)[:] = data
    indices = np.array([0, 3, 4, 5, 9])
    np.testing.assert_array_equal(mapped_shards(tmp_path / "plain").take(indices), data[indices])
    zarr.create_array(tmp_path / "zstd", **options)[:] = data
    zarr.create_array(tmp_path / "holes", compressors=None, **options)[:] = data  # sample 5 not stored
    zarr.create_array(tmp_path / "chunks", shape=data.shape, dtype="uint8", chunks=(2, 2, 2, 3))[:] = data
    assert all(mapped_shards(tmp_path / name) is None for name in ("zstd", "holes", "chunks"))


def test_a_damaged_shard_index_is_named(tmp_path):
    array = zarr.create_array(tmp_path / "a", shape=(4, 2, 3), dtype="uint8", chunks=(1, 2, 3), shards=(4, 2, 3),
                              compressors=None)
    array[:] = 1
    shard = next(path for path in (tmp_path / "a" / "c").rglob("*") if path.is_file())
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ThesisError, match=f"shard index of {shard}.*corrupt"):
        mapped_shards(tmp_path / "a")


def test_zarr_chunk_plan_reads_unwritten_chunks_as_fill_value_and_refuses_other_layouts(tmp_path):
    one = zarr.create_array(tmp_path / "one", shape=(4, 2, 3), chunks=(1, 2, 3), dtype="uint8", fill_value=7)
    one[1] = 5
    out = ChunkReader(chunk_plan(tmp_path / "one"), threads=2)(np.array([0, 1, 3]), np.empty((3, 2, 3), "uint8"))
    np.testing.assert_array_equal(out, one.get_orthogonal_selection(np.array([0, 1, 3])))
    zarr.create_array(tmp_path / "many", shape=(4, 2, 3), chunks=(2, 2, 3), dtype="uint8")
    zarr.create_array(tmp_path / "sharded", shape=(4, 2, 3), chunks=(1, 2, 3), shards=(2, 2, 3), dtype="uint8")
    assert chunk_plan(tmp_path / "many") is None and chunk_plan(tmp_path / "sharded") is None


def test_chunk_reader_names_a_corrupt_chunk(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (6, 4, 4, 3), dtype=np.uint8)
    plan = chunk_plan(one_sample_chunks(tmp_path / "one", images))
    plan.path(3).write_bytes(b"not zstd")
    with pytest.raises(ThesisError, match="c.3.0.0.0.*corrupt"):
        ChunkReader(plan)(np.array([1, 3]), np.empty((2, 4, 4, 3), np.uint8))


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
        for images, labels in Prefetcher(threads, choice=threads)(Failing(), batches):
            seen.append(int(images[0, 0]))
    assert seen == [0, 1]


def test_batches_of_keeps_order_and_kept_batches_with_threads_and_stops_early():
    batches = [np.arange(i, i + 3) for i in range(0, 30, 3)]
    reader = Failing()
    reader.calls = -100  # never fails
    kept = [(images.clone(), labels.clone()) for images, labels in
            Prefetcher(2, batches_ahead=2, choice=2)(reader, batches)]  # a batch is kept past its lifetime
    assert [labels.tolist() for _, labels in kept] == [batch.tolist() for batch in batches]
    assert all(torch.equal(images[:, 0], torch.from_numpy(batch).to(torch.uint8))
               for (images, _), batch in zip(kept, batches))
    iterator = Prefetcher(2, choice=2)(reader, batches)
    next(iterator)
    iterator.close()  # cancels the batches ahead and waits for those started


def test_a_prefetcher_times_each_thread_count_in_windows_then_keeps_one_with_the_same_batches():
    reader = Failing()
    reader.calls = -10**6  # never fails
    windows = WINDOWS_PER_CANDIDATE * 3  # candidates 0, 1 and 2 threads
    batches = [np.arange(i, i + 2) for i in range(0, 2 * WINDOW * (windows + 2), 2)]
    prefetcher = Prefetcher(2, layout=Layout((2,), np.uint8))
    prefetcher.record = lambda threads, seconds, split=None: Prefetcher.record(prefetcher, threads, seconds)
    labels = [labels.tolist() for _, labels in prefetcher(reader, batches)]  # (the consumer's share ignored)
    assert labels == [batch.tolist() for batch in batches]
    assert sorted(prefetcher.timings) == [0, 1, 2] and prefetcher.choice in (0, 1, 2)
    assert all(len(times) == WINDOWS_PER_CANDIDATE for times in prefetcher.timings.values())


def test_epochs_shorter_than_a_window_are_timed_whole_so_that_the_choice_is_made_over_several_epochs():
    reader = Failing()
    reader.calls = -10**6  # never fails
    epoch = [np.arange(i, i + 2) for i in range(0, 2 * MIN_WINDOW + 1, 2)]  # 5 batches, the last short
    prefetcher = Prefetcher(2, layout=Layout((2,), np.uint8))
    prefetcher.record = lambda threads, seconds, split=None: Prefetcher.record(prefetcher, threads, seconds)
    for _ in range(WINDOWS_PER_CANDIDATE * 3):  # one window per epoch, each candidate in turn
        assert [labels.tolist() for _, labels in prefetcher(reader, epoch)] == [b.tolist() for b in epoch]
    assert prefetcher.choice in (0, 1, 2)


def test_a_consumer_with_little_work_whose_reads_fill_the_cores_keeps_them_in_its_thread_without_trying_threads():
    idle, busy, spare_core = Prefetcher(2), Prefetcher(2), Prefetcher(2)
    for prefetcher in (idle, busy, spare_core):
        prefetcher.cores = 2
    idle.record(0, 1e-3, Split(reading=1.0, reading_cpu=1.95, consumer=0.02))  # threads could gain 2%
    busy.record(0, 1e-3, Split(reading=1.0, reading_cpu=1.95, consumer=0.5))  # a training step to hide
    spare_core.record(0, 1e-3, Split(reading=1.0, reading_cpu=1.3, consumer=0.02))  # a core idle 35%
    assert idle.choice == 0 and busy.choice is None and spare_core.choice is None


def test_more_threads_are_chosen_only_when_they_save_the_margin():
    prefetcher = Prefetcher(2)
    for threads, seconds in ((0, 1.0), (1, 0.95), (2, 0.5)):
        prefetcher.timings[threads] = [seconds] * WINDOWS_PER_CANDIDATE
    assert prefetcher.fastest() == 2
    prefetcher.timings[2] = [0.97] * WINDOWS_PER_CANDIDATE
    assert prefetcher.fastest() == 0  # 3% faster is not worth a thread
