"""The streaming loaders (webdataset, tfdata): the shard split is a pure function that gives every shard to
exactly one (rank, worker); every epoch delivers every sample once with its label and the files-jpeg pixels;
two ranks read disjoint samples; damaged shards give one line."""

import itertools
import tarfile

import numpy as np
import pytest

from thesislib.errors import ThesisError
from thesislib.loaders import make_loader
from thesislib.loaders.streaming import assigned_shards
from thesislib.models import build_model, build_optimizer
from thesislib.prepare import prepare
from thesislib.stores import open_store, webdataset
from thesislib.train import fit

STORES = ["files-jpeg", "tfrecord", "webdataset"]
LOADERS = [("webdataset", "webdataset", 0), ("webdataset", "webdataset", 2), ("tfdata", "tfrecord", 0)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """cifar10 at scale 0.005 (250 train, 50 val; 16 shards per split) in :data:`STORES`; read-only."""
    folder = tmp_path_factory.mktemp("streaming")
    prepare("cifar10", scale=0.005, stores=STORES, seed=0, data_dir=folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def files_jpeg(data_dir):
    """(pixels, labels) of the train split as the files loader decodes files-jpeg, in index order."""
    store = open_store(data_dir, "cifar10", "files-jpeg")
    return store.reader("train").read(np.arange(store.count("train")))


def epoch(data_dir, loader, store, epoch=0, **options):
    """(images, labels, sample indices) of one epoch, concatenated, and the number of batches."""
    options = {"batch_size": 32, "seed": 3, **options}
    with make_loader(loader, open_store(data_dir, "cifar10", store), "train", **options) as reader:
        reader.set_epoch(epoch)
        batches = list(reader.samples())
        assert len(batches) == reader.batches_of_rank(reader.rank)
    return tuple(np.concatenate([batch[part].numpy() for batch in batches]) for part in range(3)), len(batches)


# -------------------------------------------------------------------------------------------- the shard split
@pytest.mark.parametrize("num_shards, world_size", [(s, w) for s in (1, 2, 3, 7, 16, 33) for w in (1, 2, 3, 4, 8)
                                                     if s >= w])
def test_every_shard_goes_to_exactly_one_rank_and_worker(num_shards, world_size):
    for num_workers, epoch_number, shuffle in itertools.product((1, 2, 3, 5), (0, 1), (True, False)):
        parts = [assigned_shards(num_shards, 7, epoch_number, rank, world_size, worker, num_workers, shuffle)
                 for rank in range(world_size) for worker in range(num_workers)]
        assert sorted(np.concatenate(parts).tolist()) == list(range(num_shards))
        per_rank = [len(assigned_shards(num_shards, 7, epoch_number, rank, world_size)) for rank in range(world_size)]
        assert max(per_rank) - min(per_rank) <= 1


def test_shard_order_is_seeded_by_seed_and_epoch():
    first = assigned_shards(64, seed=1, epoch=0)
    assert np.array_equal(first, assigned_shards(64, seed=1, epoch=0))
    assert not np.array_equal(first, assigned_shards(64, seed=1, epoch=1))
    assert not np.array_equal(first, assigned_shards(64, seed=2, epoch=0))
    assert assigned_shards(5, 1, 0, shuffle=False).tolist() == [0, 1, 2, 3, 4]


def test_fewer_shards_than_ranks_is_refused_with_the_fix():
    with pytest.raises(ThesisError, match=r"4 ranks for 3 shard\(s\).*at most 3 rank.*--scale"):
        assigned_shards(3, 0, 0, rank=0, world_size=4)


# -------------------------------------------------------------------------------------------- the loaders
@pytest.mark.parametrize("loader, store, num_workers", LOADERS)
def test_every_epoch_delivers_every_sample_once_with_its_label_and_pixels(data_dir, files_jpeg, loader, store,
                                                                           num_workers):
    pixels, labels = files_jpeg
    orders = []
    for number in (0, 1):
        (images, got_labels, indices), _ = epoch(data_dir, loader, store, number, num_workers=num_workers)
        assert sorted(indices.tolist()) == list(range(len(labels)))
        np.testing.assert_array_equal(got_labels, labels[indices])
        np.testing.assert_array_equal(images, pixels[indices])
        orders.append(indices)
    assert not np.array_equal(*orders)  # a new shard order and buffer draw each epoch


@pytest.mark.parametrize("loader, store", [("webdataset", "webdataset"), ("tfdata", "tfrecord")])
def test_an_epoch_repeats_for_a_seed(data_dir, loader, store):
    assert np.array_equal(epoch(data_dir, loader, store)[0][2], epoch(data_dir, loader, store)[0][2])


@pytest.mark.parametrize("loader, store", [("webdataset", "webdataset"), ("tfdata", "tfrecord")])
def test_two_ranks_read_disjoint_samples_that_cover_the_split(data_dir, loader, store):
    ranks = [epoch(data_dir, loader, store, 1, rank=rank, world_size=2)[0][2] for rank in (0, 1)]
    assert not set(ranks[0].tolist()) & set(ranks[1].tolist())
    assert sorted(np.concatenate(ranks).tolist()) == list(range(250))


@pytest.mark.parametrize("loader, store", [("webdataset", "webdataset"), ("tfdata", "tfrecord")])
def test_ranks_with_fewer_batches_repeat_their_last_so_that_every_rank_takes_as_many_steps(data_dir, loader,
                                                                                          store):
    seen, steps = [], []
    for rank in range(3):  # 16 shards: 6, 5 and 5 per rank
        with make_loader(loader, open_store(data_dir, "cifar10", store), "train", batch_size=16, seed=3,
                         rank=rank, world_size=3) as reader:
            logged = []
            reader.sample_log = lambda indices: logged.append(indices.numpy().copy())
            steps.append((len(list(reader)), len(reader), reader.batches_of_rank(rank)))
            seen.append(np.unique(np.concatenate(logged)))
    assert len({total for total, _, _ in steps}) == 1 and all(total == length for total, length, _ in steps)
    assert min(own for _, _, own in steps) < steps[0][0]  # somebody padded
    assert sorted(np.concatenate(seen).tolist()) == list(range(250))


def test_without_shuffle_the_samples_come_in_index_order(data_dir):
    assert epoch(data_dir, "tfdata", "tfrecord", shuffle=False)[0][2].tolist() == list(range(250))


def test_the_small_model_trains_from_the_webdataset_loader(data_dir):
    net = build_model("small", 10, 32, 0)
    store = open_store(data_dir, "cifar10", "webdataset")
    with make_loader("webdataset", store, "train", batch_size=50, seed=0) as train, \
            make_loader("webdataset", store, "val", batch_size=50, shuffle=False) as val:
        result = fit(net, build_optimizer("sgd", net, 0.05), train, val, 1, "cpu")[-1]
    assert result.images == 250 and np.isfinite(result.train_loss) and 0 <= result.val_acc <= 1


# -------------------------------------------------------------------------------------------- damage
def damaged_copy(data_dir, tmp_path, name):
    import shutil

    shutil.copytree(data_dir / "cifar10" / name, tmp_path / "cifar10" / name)
    return open_store(tmp_path, "cifar10", name)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_truncated_tar_shard_is_named_with_the_fix(data_dir, tmp_path, num_workers):
    store = damaged_copy(data_dir, tmp_path, "webdataset")
    shard = webdataset.shard_path(store.path, "train", 5)
    with tarfile.open(shard) as tar:
        jpeg = next(member for member in tar.getmembers() if member.name.endswith(".jpg"))
    shard.write_bytes(shard.read_bytes()[:jpeg.offset_data + jpeg.size // 2])  # cut inside a JPEG's bytes
    with pytest.raises(ThesisError, match=rf"{shard} cannot be read.*prepare"):
        epoch(tmp_path, "webdataset", "webdataset", num_workers=num_workers)


@pytest.mark.parametrize("loader,store,suffix", [("webdataset", "webdataset", ".tar"),
                                                 ("tfdata", "tfrecord", ".tfrecord")])
def test_a_shard_cut_at_a_sample_boundary_is_named_at_the_end_of_the_epoch(data_dir, tmp_path, loader, store,
                                                                             suffix):
    copy = damaged_copy(data_dir, tmp_path, store)
    shard = sorted(copy.path.glob(f"train-*{suffix}"))[3]
    whole = shard.read_bytes()
    if store == "webdataset":  # keep the first sample's members (a header + data blocks each), drop the rest
        with tarfile.open(shard) as tar:
            second = tar.getmembers()[2]
        shard.write_bytes(whole[:second.offset])
    else:  # keep the first record: 8-byte length, 4-byte CRC, data, 4-byte CRC
        length = int.from_bytes(whole[:8], "little")
        shard.write_bytes(whole[:16 + length])
    with pytest.raises(ThesisError, match=rf"{shard} gave 1 of its \d+ samples.*prepare"):
        epoch(tmp_path, loader, store)


def test_a_sample_without_its_jpg_member_is_named_with_its_shard(data_dir, tmp_path):
    import webdataset as wds

    store = damaged_copy(data_dir, tmp_path, "webdataset")
    shard = webdataset.shard_path(store.path, "train", 2)
    samples = list(wds.WebDataset([str(shard)], shardshuffle=False, empty_check=False))
    with wds.TarWriter(str(shard), encoder=False) as sink:
        for number, sample in enumerate(samples):
            members = {"__key__": sample["__key__"], "cls": sample["cls"]}
            sink.write(members if number == 4 else {**members, "jpg": sample["jpg"]})
    with pytest.raises(ThesisError, match=rf"{shard} holds the sample '{samples[4]['__key__']}' without its "
                                          r"\.jpg member.*prepare"):
        epoch(tmp_path, "webdataset", "webdataset")


def test_a_member_that_does_not_decode_is_named_with_its_shard(data_dir, tmp_path):
    import webdataset as wds

    store = damaged_copy(data_dir, tmp_path, "webdataset")
    shard = webdataset.shard_path(store.path, "train", 0)
    samples = list(wds.WebDataset(str(shard), shardshuffle=False))
    samples[1]["jpg"] = b"not a jpeg"
    with wds.TarWriter(str(shard), encoder=False) as sink:
        for sample in samples:
            sink.write({key: value for key, value in sample.items() if key != "__url__"})
    with pytest.raises(ThesisError, match=rf"{shard} holds {samples[1]['__key__']}\.jpg, which does not decode"):
        epoch(tmp_path, "webdataset", "webdataset")


@pytest.mark.parametrize("member, value, named", [("cls", b"cat", r"\.cls, which is not a class number"),
                                                   ("__key__", "x9/../evil", r"member key 'x9/\.\./evil', which is not")])
def test_a_class_or_key_that_is_not_a_number_is_named_with_its_shard(data_dir, tmp_path, member, value, named):
    import webdataset as wds

    store = damaged_copy(data_dir, tmp_path, "webdataset")
    shard = webdataset.shard_path(store.path, "train", 1)
    samples = list(wds.WebDataset(str(shard), shardshuffle=False))
    samples[0][member] = value
    with wds.TarWriter(str(shard), encoder=False) as sink:
        for sample in samples:
            sink.write({key: value for key, value in sample.items() if key != "__url__"})
    with pytest.raises(ThesisError, match=rf"{shard} holds .*{named}"):
        epoch(tmp_path, "webdataset", "webdataset")


@pytest.mark.parametrize("loader, store, shard", [("webdataset", "webdataset", "train-000002.tar"),
                                                  ("tfdata", "tfrecord", "train-000002.tfrecord")])
def test_a_missing_shard_is_named_when_the_loader_is_made(data_dir, tmp_path, loader, store, shard):
    damaged = damaged_copy(data_dir, tmp_path, store)
    (damaged.path / shard).unlink()
    with pytest.raises(ThesisError, match=rf"{damaged.path / shard} is missing.*prepare"):
        make_loader(loader, damaged, "train", batch_size=8)


def test_a_corrupt_record_under_tf_data_is_named_with_its_shard(data_dir, tmp_path):
    store = damaged_copy(data_dir, tmp_path, "tfrecord")
    shard = store.path / "train-000004.tfrecord"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ThesisError, match=rf"{shard} holds a corrupt record.*prepare"):
        epoch(tmp_path, "tfdata", "tfrecord")


def test_listing_the_loaders_and_their_availability_does_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from thesislib.loaders import availability, get_loader_class; availability(); "
            "get_loader_class('tfdata'); print('tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
