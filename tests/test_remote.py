"""Stores on central storage: read over HTTP (nginx) and S3 (moto's server, a stand-in for S3), directly or
through a verified local copy (``--cache``), give what the local store gives; bad URLs, credentials and
half-written remote stores are one line with exit status 2."""

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from one_line import one_line_error
from servers import forget_filesystems, http_root, s3_endpoint  # noqa: F401 (session fixtures)

from thesislib import remote
from thesislib.bench import BenchConfig, run_protocol
from thesislib.cli import main
from thesislib.errors import ThesisError
from thesislib.loaders import make_loader
from thesislib.prepare import prepare
from thesislib.stores import integrity, open_store

SCALE = 0.002  # 100 train, 20 val samples: moto answers a request in tens of milliseconds
STORES = ["npy-uint8", "zarr", "files-png", "hdf5", "parquet"]
NEVER_WRITTEN = str(Path(tempfile.gettempdir()) / "thesislib-test-remote-never-written.csv")  # bad runs
READS = [("numpy", "npy-uint8", True), ("zarr", "zarr", False), ("files", "files-png", False)]


@pytest.fixture(scope="session")
def local_data(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("remote-local")
    prepare("cifar10", scale=SCALE, stores=STORES, seed=0, data_dir=data_dir, progress=False)
    return data_dir


@pytest.fixture(scope="session")
def http_data(http_root, local_data):
    """The URL of a data folder nginx serves: a copy of ``local_data``."""
    root, url = http_root
    shutil.copytree(local_data, root / "data")
    return f"{url}/data"


@pytest.fixture(scope="session")
def s3_data(s3_endpoint, local_data):
    """The URL of a data folder in the S3 stand-in, written by ``prepare --data-dir s3://...``."""
    url = f"s3://{s3_endpoint.bucket}/data"
    prepare("cifar10", scale=SCALE, stores=STORES, seed=0, data_dir=url, progress=False)
    return url


@pytest.fixture(scope="session")
def local_rows(local_data):
    """The results row of each of :data:`READS` read from the local store (computed once)."""
    return {loader: bench(local_data, loader, store) for loader, store, _ in READS}


@pytest.fixture(params=["http", "s3"])
def remote_data(request):
    return request.getfixturevalue(f"{request.param}_data")


def bench(data_dir, loader, store, **changes):
    config = BenchConfig(loader=loader, dataset="cifar10", store=store, epochs=1, repeats=1, batch_size=32,
                         scale=SCALE, data_dir=str(data_dir), device="cpu", **changes)
    return run_protocol(config)[0]


def all_batches(data_dir, loader, store, **options):
    with make_loader(loader, open_store(data_dir, "cifar10", store), "train", batch_size=32, seed=3,
                     **options) as reader:
        return [(images.numpy().copy(), labels.numpy().copy()) for images, labels in reader]


def assert_same_batches(got, expected):
    assert len(got) == len(expected) > 1
    for (images, labels), (want_images, want_labels) in zip(got, expected):
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)


# ------------------------------------------------------------------------------------------- the layer
def test_urls_are_recognised_and_joined_with_slashes():
    assert remote.is_url("s3://bucket/data") and remote.is_url("http://host:80/x")
    assert not remote.is_url("/data") and not remote.is_url("data")
    assert remote.join("s3://bucket/data/", "cifar10", "zarr") == "s3://bucket/data/cifar10/zarr"
    assert remote.join("/data", "cifar10") == "/data/cifar10"


def test_an_unknown_scheme_names_the_known_ones():
    with pytest.raises(ThesisError, match="unknown URL scheme 'ftp'.*s3://"):
        remote.filesystem("ftp://host/data")


def test_preparing_again_into_s3_skips_the_finished_stores(s3_data):
    before = remote.read_json(f"{s3_data}/cifar10/npy-uint8/manifest.json")
    prepare("cifar10", scale=SCALE, stores=["npy-uint8"], seed=0, data_dir=s3_data, progress=False)
    assert remote.read_json(f"{s3_data}/cifar10/npy-uint8/manifest.json") == before


# ------------------------------------------------------------------------------- same data, same loss
@pytest.mark.parametrize("loader, store, cache", READS)
def test_a_remote_store_trains_to_the_same_loss_as_the_local_one(remote_data, local_rows, tmp_path, loader,
                                                                 store, cache):
    local = local_rows[loader]
    row = bench(remote_data, loader, store, cache=str(tmp_path / "cache") if cache else None)
    assert row["train_loss"] == local["train_loss"] and row["val_acc"] == local["val_acc"]
    if cache:
        assert row["cache_copy_bytes"] > 0 and row["cache_copy_s"] > 0
        assert (tmp_path / "cache" / "cifar10" / store / "manifest.json").is_file()


@pytest.mark.parametrize("loader, store", [("zarr", "zarr"), ("files", "files-png"), ("hdf5", "hdf5"),
                                           ("parquet", "parquet")])
def test_reading_straight_from_a_remote_store_gives_the_local_batches(remote_data, local_data, loader, store):
    assert_same_batches(all_batches(remote_data, loader, store), all_batches(local_data, loader, store))


def test_dataloader_workers_read_a_remote_zarr_store(http_data, local_data):
    assert_same_batches(all_batches(http_data, "zarr", "zarr", num_workers=2),
                        all_batches(local_data, "zarr", "zarr"))


# ---------------------------------------------------------------------------------------- local copy
def test_a_verified_copy_is_made_once_and_then_reused(http_data, tmp_path):
    store = open_store(http_data, "cifar10", "files-png")
    path, _, copied = remote.copy_to_cache(store.path, tmp_path, store.manifest)
    again, _, copied_again = remote.copy_to_cache(store.path, tmp_path, store.manifest)
    assert path == again == tmp_path / "cifar10" / "files-png"
    assert copied == store.manifest["bytes_apparent"] + len((path / "manifest.json").read_bytes())
    assert copied_again == 0
    assert_same_batches(all_batches(tmp_path, "files", "files-png"), all_batches(http_data, "files", "files-png"))


def test_a_fresh_copy_is_not_scanned_again_but_a_reused_one_is(http_data, tmp_path, monkeypatch):
    scanned, scan = [], integrity.check_regular_files  # the real scan, recorded
    monkeypatch.setattr(integrity, "check_regular_files", lambda folder: scanned.append(Path(folder)) or scan(folder))
    copy = tmp_path / "cifar10" / "npy-uint8"
    bench(http_data, "numpy", "npy-uint8", cache=str(tmp_path))
    assert scanned == []  # verify_store has just hashed every file of the copy
    os.mkfifo(copy / "stray")
    with pytest.raises(ThesisError, match=f"{copy / 'stray'} is not a regular file"):
        bench(http_data, "numpy", "npy-uint8", cache=str(tmp_path))
    assert scanned == [copy]


def copy_in_process(url, cache_dir, manifest, results):
    results.put(remote.copy_to_cache(url, cache_dir, manifest)[2])


def test_processes_copying_at_once_copy_the_store_once(http_data, tmp_path):
    store = open_store(http_data, "cifar10", "npy-uint8")
    context = multiprocessing.get_context("fork")  # the lock, not the start method, is under test
    results = context.Queue()
    processes = [context.Process(target=copy_in_process, args=(store.path, tmp_path, store.manifest, results))
                 for _ in range(3)]
    for process in processes:
        process.start()
    copied = sorted(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    assert copied[:2] == [0, 0] and copied[2] > 0


def test_a_copy_that_does_not_match_the_manifest_is_refused_and_not_kept(http_root, local_data, tmp_path):
    root, url = http_root
    shutil.copytree(local_data / "cifar10" / "npy-uint8", root / "damaged" / "cifar10" / "npy-uint8")
    images = root / "damaged" / "cifar10" / "npy-uint8" / "train_images.npy"
    data = bytearray(images.read_bytes())
    data[-1] ^= 0xFF  # same size, one pixel changed
    images.write_bytes(bytes(data))
    store = open_store(f"{url}/damaged", "cifar10", "npy-uint8")
    with pytest.raises(ThesisError, match="does not match the manifest's SHA-256"):
        remote.copy_to_cache(store.path, tmp_path, store.manifest)
    assert not (tmp_path / "cifar10" / "npy-uint8").exists()
    assert not list((tmp_path / "cifar10").glob(".npy-uint8.copy-*"))


# ------------------------------------------------------------------------------------ one-line errors
def run_cli(capsys, *args):
    return one_line_error(capsys, main(list(args)))


def bench_args(data_dir, loader="zarr", *extra):
    return ["bench", "--loader", loader, "--dataset", "cifar10", "--scale", str(SCALE), "--data-dir",
            data_dir, "--device", "cpu", "--results", NEVER_WRITTEN, *extra]


def test_an_unreachable_server_is_one_line_naming_the_url(capsys):
    url = f"http://127.0.0.1:{__import__('servers').free_port()}/data"
    line = run_cli(capsys, *bench_args(url))
    assert "cannot reach" in line and url in line


def test_wrong_s3_credentials_are_one_line_naming_the_settings(s3_data, s3_endpoint, capsys, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    forget_filesystems()
    try:
        line = run_cli(capsys, *bench_args(s3_data))
    finally:
        monkeypatch.undo()
        forget_filesystems()
    assert s3_data in line and "AWS_SECRET_ACCESS_KEY" in line


def test_a_half_written_remote_store_is_one_line_naming_prepare(s3_endpoint, local_data, tmp_path, capsys):
    url = f"s3://{s3_endpoint.bucket}/half"
    remote.upload_folder(local_data / "cifar10" / "npy-uint8", f"{url}/cifar10/npy-uint8")
    fs, path = remote.filesystem(f"{url}/cifar10/npy-uint8/manifest.json")
    fs.rm_file(path)  # as if the upload stopped before its last file
    line = run_cli(capsys, *bench_args(url, "numpy", "--cache", str(tmp_path)))
    assert "incomplete (no manifest.json)" in line and "prepare" in line


def test_preparing_into_an_http_server_is_refused(http_data, capsys):
    line = run_cli(capsys, "prepare", "--dataset", "cifar10", "--scale", str(SCALE), "--stores", "zarr",
                   "--data-dir", http_data)
    assert "read-only" in line and "serve" in line


def test_a_memory_map_over_a_url_points_to_the_cache(http_data, capsys):
    line = run_cli(capsys, *bench_args(http_data, "numpy"))
    assert "--cache" in line and http_data in line


def test_an_unwritable_cache_folder_is_one_line(http_data, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = run_cli(capsys, *bench_args(http_data, "numpy", "--cache", str(blocker / "cache")))
    assert "choose a writable --cache" in line
