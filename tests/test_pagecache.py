"""Page-cache state of a store: which of its bytes are cached, and evicting them for cold reads."""

import math
import os
import shutil

import pytest

from thesislib import pagecache
from thesislib.errors import ThesisError


@pytest.fixture
def store_copy(prepared_cifar10, tmp_path):
    return shutil.copytree(prepared_cifar10 / "cifar10" / "npy-uint8", tmp_path / "npy-uint8")


def test_store_files_are_the_data_files_without_the_manifest(store_copy):
    names = [path.name for path in pagecache.store_files(store_copy)]
    assert names == ["train_images.npy", "train_labels.npy", "val_images.npy", "val_labels.npy"]


def test_evicted_files_are_not_resident_and_read_files_are(store_copy):
    files = pagecache.store_files(store_copy)
    assert pagecache.evict(files) == sum(path.stat().st_size for path in files)
    assert pagecache.resident_fraction(files) < 0.05
    for path in files:
        path.read_bytes()
    assert pagecache.resident_fraction(files) == 1.0


def test_reading_a_quarter_of_a_file_makes_a_quarter_of_it_resident(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(32 * 2**20))
    pagecache.evict([path])
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no read-ahead (it may be 8 MiB or more)
        read = sum(len(os.read(fd, 2**20)) for _ in range(8))
    finally:
        os.close(fd)
    assert read == 8 * 2**20 and 0.24 <= pagecache.resident_fraction([path]) < 0.3


def test_no_files_have_no_fraction_and_a_missing_store_is_named(tmp_path):
    assert math.isnan(pagecache.resident_fraction([]))
    with pytest.raises(ThesisError, match="does not exist: run `python -m thesislib prepare`"):
        pagecache.store_files(tmp_path / "nowhere")


def test_mincore_is_found_on_linux_and_without_it_there_is_no_fraction(store_copy, monkeypatch):
    assert pagecache.has_mincore()
    monkeypatch.setattr(pagecache, "has_mincore", lambda: False)
    assert math.isnan(pagecache.resident_fraction(pagecache.store_files(store_copy)))
