"""The sharded stores (tfrecord, webdataset): the files-jpeg bytes, read back by TensorFlow and by webdataset
alone, the tfrecord loader's batches and loss equal to files on files-jpeg, and one line for damaged shards."""

import numpy as np
import pytest

from thesislib.errors import ThesisError
from thesislib.loaders import make_loader
from thesislib.models import build_model, build_optimizer
from thesislib.prepare import prepare
from thesislib.stores import imagefiles, open_store, parse_store_list
from thesislib.stores import shards, tfrecord, webdataset
from thesislib.train import fit

from test_loader_battery import LoaderBattery, read_epoch, truncate  # the battery every loader inherits

STORES = ["npy-uint8", "files-jpeg", "tfrecord", "webdataset"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """cifar10 at scale 0.005 (250 train, 50 val) in :data:`STORES`; read-only."""
    folder = tmp_path_factory.mktemp("streaming")
    prepare("cifar10", scale=0.005, stores=STORES, seed=0, data_dir=folder, progress=False)
    return folder


def store(data_dir, name):
    return open_store(data_dir, "cifar10", name)


def jpeg_files(data_dir, split):
    """(bytes of each files-jpeg file in index order, labels)."""
    paths, labels = imagefiles.list_files(store(data_dir, "files-jpeg").path, split)
    return [path.read_bytes() for path in paths], labels


def npy_split(data_dir, split):
    """(pixels, labels) of the source, as the npy-uint8 store holds them."""
    npy = store(data_dir, "npy-uint8")
    return npy.format.read_back(npy.path, split)


def copy(data_dir, tmp_path, name):
    import shutil

    shutil.copytree(store(data_dir, name).path, tmp_path / "cifar10" / name)
    return store(tmp_path, name)


# ------------------------------------------------------------------------------------------------ stores
def test_prepare_all_includes_the_sharded_stores():
    assert {"tfrecord", "webdataset"} <= set(parse_store_list("all"))


@pytest.mark.parametrize("name", ["tfrecord", "webdataset"])
def test_manifest_digest_of_the_jpegs_equals_files_jpeg(data_dir, name):
    for split in ("train", "val"):
        expected = store(data_dir, "files-jpeg").manifest["checksums"][split]["files_sha256"]
        assert store(data_dir, name).manifest["checksums"][split]["jpeg_files_sha256"] == expected


def test_tensorflow_reads_byte_for_byte_the_files_jpeg_files_from_tfrecord(data_dir):
    for split in ("train", "val"):
        jpegs, labels = tfrecord.read_back_records(store(data_dir, "tfrecord").path, split)
        expected, expected_labels = jpeg_files(data_dir, split)
        assert jpegs == expected
        np.testing.assert_array_equal(labels, expected_labels)


def test_webdataset_reads_byte_for_byte_the_files_jpeg_files_under_their_index_keys(data_dir):
    keys, jpegs, labels = zip(*webdataset.read_back_samples(store(data_dir, "webdataset").path, "train", None))
    expected, expected_labels = jpeg_files(data_dir, "train")
    assert [int(key) for key in keys] == list(range(len(expected)))
    assert list(jpegs) == expected
    np.testing.assert_array_equal(labels, expected_labels)


def test_webdataset_members_have_plain_ustar_headers_without_pax_records(data_dir):
    import tarfile

    for path in webdataset.data_files(store(data_dir, "webdataset").path):
        with tarfile.open(path) as tar:
            members = tar.getmembers()
        assert members and all(member.pax_headers == {} and member.mtime == 0 for member in members), path


@pytest.mark.parametrize("name", ["tfrecord", "webdataset"])
def test_read_back_by_its_own_ecosystem_equals_the_files_jpeg_decode(data_dir, name):
    images, labels = store(data_dir, name).format.read_back(store(data_dir, name).path, "train")
    jpeg = store(data_dir, "files-jpeg")
    expected, expected_labels = jpeg.format.read_back(jpeg.path, "train")
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(labels, expected_labels)
    source, source_labels = npy_split(data_dir, "train")
    np.testing.assert_array_equal(labels, source_labels)
    mse = np.mean((images.astype(np.float64) - source) ** 2)
    psnr = 10 * np.log10(255 ** 2 / mse)
    print(f"{name}: PSNR {psnr:.1f} dB against npy-uint8")
    assert psnr > 30


def test_shards_are_cut_to_about_100_mb_in_multiples_of_16_and_near_equal():
    assert shards.shard_count(50000, 150e6) == 16
    assert shards.shard_count(100000, 2.1e9) == 32
    assert shards.shard_count(5, 1e3) == 5
    assert shards.shard_count(17, 1e3) == 16
    sizes = np.diff(shards.shard_bounds(250, 16))
    assert sizes.sum() == 250 and sizes.max() - sizes.min() <= 1


def test_tfrecord_framing_is_checked_by_its_crcs():
    record = tfrecord.frame(tfrecord.encode_example(b"\xff\xd8jpeg", 7))
    assert tfrecord.parse_example(tfrecord.unframe(record)) == (b"\xff\xd8jpeg", 7)
    damaged = record[:20] + bytes([record[20] ^ 1]) + record[21:]
    with pytest.raises(ValueError, match="CRC"):
        tfrecord.unframe(damaged)


# ------------------------------------------------------------------------------------------------ tfrecord loader
def all_batches(data_dir, loader, name, **options):
    options = {"batch_size": 64, "seed": 3, **options}
    with make_loader(loader, store(data_dir, name), "train", **options) as reader:
        reader.set_epoch(1)
        return list(reader)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_tfrecord_loader_gives_the_batches_of_files_on_files_jpeg(data_dir, num_workers):
    expected = all_batches(data_dir, "files", "files-jpeg")
    got = all_batches(data_dir, "tfrecord", "tfrecord", num_workers=num_workers)
    assert len(got) == len(expected) == 4
    for (images, labels), (files_images, files_labels) in zip(got, expected):
        assert images.dtype == files_images.dtype and images.shape == files_images.shape
        assert bool((images == files_images).all()) and bool((labels == files_labels).all())


def train_loss(data_dir, loader, name, seed=0):
    net = build_model("small", 10, 32, seed)
    options = {"batch_size": 50, "seed": seed}
    with make_loader(loader, store(data_dir, name), "train", **options) as train:
        return fit(net, build_optimizer("sgd", net, 0.05), train, None, 1, "cpu")[-1].train_loss


def test_tfrecord_loader_gives_the_train_loss_of_files_on_files_jpeg(data_dir):
    assert train_loss(data_dir, "tfrecord", "tfrecord") == pytest.approx(
        train_loss(data_dir, "files", "files-jpeg"), abs=1e-6)


class TestTfrecordBattery(LoaderBattery):
    """The loader battery, with ``files`` on ``files-jpeg`` as the reference (the same JPEG bytes)."""
    loader, store, other_store = "tfrecord", "tfrecord", "webdataset"

    def damage(self, store):
        return truncate(tfrecord.shard_path(store.path, "train", 0), keep=0.9)


@pytest.fixture(scope="module")
def battery_data(data_dir):
    return data_dir


@pytest.fixture(scope="module")
def numpy_epochs(data_dir):
    """The battery's reference epochs: here ``files`` on ``files-jpeg``."""
    return {epoch: read_epoch(store(data_dir, "files-jpeg"), "files", epoch) for epoch in (0, 1)}


@pytest.fixture
def damaged_copy(data_dir, tmp_path):
    return lambda name: copy(data_dir, tmp_path, name)


# ------------------------------------------------------------------------------------------------ damage
def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupt_tfrecord_record_is_named_with_its_shard_and_the_fix(data_dir, tmp_path):
    damaged = copy(data_dir, tmp_path, "tfrecord")
    shard = tfrecord.shard_path(damaged.path, "train", 0)
    flip_byte(shard, 40)  # inside the first record's Example
    with pytest.raises(ThesisError, match=rf"{shard}.*corrupt record.*prepare"):
        all_batches(tmp_path, "tfrecord", "tfrecord", shuffle=False)


@pytest.mark.parametrize("damage, message", [
    (lambda shard, index: shard.write_bytes(shard.read_bytes()[:-10]), "truncated"),
    (lambda shard, index: shard.unlink(), "missing"),
    (lambda shard, index: index.unlink(), "missing"),
    (lambda shard, index: index.write_text("0 10\n"), "lists 1 records"),
])
def test_a_truncated_or_missing_tfrecord_shard_or_index_is_named_when_the_loader_is_made(
        data_dir, tmp_path, damage, message):
    damaged = copy(data_dir, tmp_path, "tfrecord")
    shard, index = tfrecord.shard_path(damaged.path, "train", 3), tfrecord.index_path(damaged.path, "train", 3)
    damage(shard, index)
    with pytest.raises(ThesisError, match=rf"{damaged.path}/train-000003\.(tfrecord|idx).*{message}.*prepare"):
        make_loader("tfrecord", damaged, "train", batch_size=8)
