"""``prepare`` writes atomically, resumes, and turns bad input into one line and exit status 2."""

import resource
import subprocess
import sys

import pytest

from thesislib.prepare import prepare


def run_cli(*args, limit_file_bytes=None):
    """``python -m thesislib ARGS`` in a child process; an optional RLIMIT_FSIZE simulates a full disk."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    return subprocess.run([sys.executable, "-m", "thesislib", *map(str, args)], capture_output=True,
                          text=True, preexec_fn=limit if limit_file_bytes else None, timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_second_prepare_skips_finished_stores_and_rebuilds_only_the_incomplete(tmp_path):
    paths = prepare("cifar10", scale=0.005, stores=["npy-uint8", "hdf5"], data_dir=tmp_path, progress=False)
    stamps = {name: (path / "manifest.json").stat().st_mtime_ns for name, path in paths.items()}
    (paths["hdf5"] / "manifest.json").unlink()
    prepare("cifar10", scale=0.005, stores=["npy-uint8", "hdf5"], data_dir=tmp_path, progress=False)
    assert (paths["npy-uint8"] / "manifest.json").stat().st_mtime_ns == stamps["npy-uint8"]
    assert (paths["hdf5"] / "manifest.json").is_file()


def test_prepare_with_other_scale_rebuilds_the_store(tmp_path):
    path = prepare("cifar10", scale=0.005, stores=["npy-uint8"], data_dir=tmp_path, progress=False)["npy-uint8"]
    prepare("cifar10", scale=0.01, stores=["npy-uint8"], data_dir=tmp_path, progress=False)
    assert '"scale": 0.01' in (path / "manifest.json").read_text()
    assert [p.name for p in (tmp_path / "cifar10").iterdir()] == ["npy-uint8"]


def test_a_store_in_an_older_layout_is_rebuilt_and_a_current_one_is_kept(tmp_path):
    import json

    paths = prepare("cifar10", scale=0.005, stores=["npy-uint8", "webdataset"], data_dir=tmp_path, progress=False)
    manifest_path = paths["webdataset"] / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["layout"].pop("tar_format")  # as thesislib wrote it before its shards lost their pax headers
    manifest_path.write_text(json.dumps(manifest))
    kept = (paths["npy-uint8"] / "manifest.json").stat().st_mtime_ns
    prepare("cifar10", scale=0.005, stores=["npy-uint8", "webdataset"], data_dir=tmp_path, progress=False)
    assert "tar_format" in json.loads(manifest_path.read_text())["layout"]
    assert (paths["npy-uint8"] / "manifest.json").stat().st_mtime_ns == kept


def test_full_disk_exits_2_and_leaves_nothing_that_looks_complete(tmp_path):
    result = run_cli("prepare", "--dataset", "cifar10", "--scale", "0.02", "--stores", "npy-float32",
                     "--data-dir", tmp_path, limit_file_bytes=2_000_000)
    assert_one_line_error(result, "disk full", "npy-float32")
    assert not list(tmp_path.rglob("manifest.json"))
    assert not [p for p in (tmp_path / "cifar10").iterdir()]  # the temporary folder was removed


def test_full_disk_while_writing_lmdb_exits_2_and_leaves_nothing_that_looks_complete(tmp_path):
    result = run_cli("prepare", "--dataset", "cifar10", "--scale", "0.02", "--stores", "lmdb",
                     "--data-dir", tmp_path, limit_file_bytes=2_000_000)
    assert_one_line_error(result, "train.lmdb", "disk is probably full", "--data-dir")
    assert not list(tmp_path.rglob("manifest.json")) and not list((tmp_path / "cifar10").iterdir())


def test_interrupted_store_is_not_read_and_is_rebuilt(tmp_path):
    run_cli("prepare", "--dataset", "cifar10", "--scale", "0.02", "--stores", "npy-float32",
            "--data-dir", tmp_path, limit_file_bytes=2_000_000)
    prepare("cifar10", scale=0.02, stores=["npy-float32"], data_dir=tmp_path, progress=False)
    assert (tmp_path / "cifar10" / "npy-float32" / "manifest.json").is_file()


@pytest.mark.parametrize("args, fragments", [
    (["--dataset", "imagenet"], ["unknown dataset 'imagenet'", "cifar10, tinyimagenet, masks"]),
    (["--dataset", "cifar10", "--stores", "npy,hdf5"], ["unknown store 'npy'", "npy-uint8"]),
    (["--dataset", "cifar10", "--scale", "2"], ["--scale", "(0, 1]"]),
    (["--dataset", "cifar10", "--source", "/no/such/cifar-10-python.tar.gz"], ["does not exist"]),
])
def test_bad_prepare_input_is_one_line_and_exit_status_2(tmp_path, args, fragments):
    assert_one_line_error(run_cli("prepare", *args, "--data-dir", tmp_path), *fragments)


def test_truncated_archive_from_the_command_line_exits_2(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00 this archive stops here")
    result = run_cli("prepare", "--dataset", "cifar10", "--source", archive, "--data-dir", tmp_path)
    assert_one_line_error(result, "cifar-10-python.tar.gz", "download")


def test_corrupt_image_in_tree_from_the_command_line_names_the_file(tmp_path):
    from PIL import Image

    tree = tmp_path / "tree"
    for label in ("a", "b"):
        (tree / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (64, 64)).save(tree / label / f"{i}.png")
    (tree / "b" / "bad.png").write_bytes(b"not a png")
    result = run_cli("prepare", "--dataset", "masks", "--source", tree, "--data-dir", tmp_path / "d")
    assert_one_line_error(result, "bad.png")


@pytest.mark.parametrize("dataset, shape, classes", [("tinyimagenet", (64, 64, 3), 200),
                                                      ("masks", (512, 512, 3), 2)])
def test_every_dataset_is_prepared_at_its_contract_shape(tmp_path, dataset, shape, classes):
    import numpy as np
    import zarr

    paths = prepare(dataset, scale=0.002, stores=["npy-uint8", "zarr", "files-png"], data_dir=tmp_path,
                    progress=False)
    images = np.load(paths["npy-uint8"] / "train_images.npy", mmap_mode="r")
    assert images.shape[1:] == shape and images.dtype == np.uint8
    assert len(np.unique(np.load(paths["npy-uint8"] / "train_labels.npy"))) == classes
    group = zarr.open(paths["zarr"] / "data.zarr", mode="r")
    np.testing.assert_array_equal(group["val/images"][:], np.load(paths["npy-uint8"] / "val_images.npy"))
    assert len(list((paths["files-png"] / "train").iterdir())) == classes
