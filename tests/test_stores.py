"""Every store is readable by the ordinary tool, with no thesislib import in the reading code."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torchvision
import zarr

from thesislib.prepare import prepare
from thesislib.sources import load_source
from thesislib.stores import LOSSLESS, STORES, open_store
from thesislib.errors import ThesisError


@pytest.fixture(scope="module")
def all_stores(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    paths = prepare("cifar10", scale=0.005, stores="all", seed=3, data_dir=data_dir, progress=False)
    source = load_source("cifar10", "synthetic", scale=0.005, seed=3)
    return data_dir, paths, source


def read_with_ordinary_tool(path, kind, split):
    """Pixels and labels of a split, read by np.load, h5py, zarr or ImageFolder."""
    if kind == "npy":
        return np.load(path / f"{split}_images.npy"), np.load(path / f"{split}_labels.npy")
    if kind == "hdf5":
        with h5py.File(path / "data.h5", "r") as file:
            return file[f"{split}/images"][:], file[f"{split}/labels"][:]
    if kind == "zarr":
        group = zarr.open(path / "data.zarr", mode="r")
        return group[f"{split}/images"][:], group[f"{split}/labels"][:]
    # is_valid_file: ImageFolder does not list .jp2 among its extensions, but PIL reads it
    folder = torchvision.datasets.ImageFolder(path / split, is_valid_file=lambda name: True)
    order = np.argsort([int(p.rsplit("/", 1)[1].split(".")[0]) for p, _ in folder.samples])
    pixels = np.stack([np.asarray(folder[i][0]) for i in order])
    return pixels, np.array([folder.targets[i] for i in order])


def test_prepare_builds_all_eleven_stores_with_manifests(all_stores):
    _, paths, _ = all_stores
    assert sorted(paths) == sorted(STORES) and len(paths) == 11
    for name, path in paths.items():
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["store"] == name and manifest["dataset"] == "cifar10"
        assert manifest["splits"]["train"]["count"] == 250 and manifest["splits"]["val"]["count"] == 50
        assert manifest["bytes_on_disk"] > 0 and manifest["layout"]
        assert manifest["thesislib_version"] and manifest["created_at"]


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_store_read_by_ordinary_tool_gives_identical_pixels_and_labels(all_stores, name):
    _, paths, source = all_stores
    for split in ("train", "val"):
        pixels, labels = read_with_ordinary_tool(paths[name], STORES[name].kind, split)
        want_pixels, want_labels = source.splits[split]
        assert labels.dtype == np.int64 or STORES[name].kind == "files"
        np.testing.assert_array_equal(labels, want_labels)
        if STORES[name].dtype == "uint8":
            np.testing.assert_array_equal(pixels, want_pixels)
        else:
            np.testing.assert_allclose(pixels, want_pixels / 255.0, rtol=2.0 ** -10, atol=1e-7)


@pytest.mark.parametrize("name", ["files-jpeg", "files-webp"])
def test_lossy_store_gives_same_labels_and_close_pixels(all_stores, name):
    _, paths, source = all_stores
    pixels, labels = read_with_ordinary_tool(paths[name], "files", "val")
    np.testing.assert_array_equal(labels, source.splits["val"][1])
    error = np.abs(pixels.astype(int) - source.splits["val"][0]).mean()
    assert 0 < error < 8


def test_imagefolder_classes_sort_in_label_order(all_stores):
    _, paths, source = all_stores
    folder = torchvision.datasets.ImageFolder(paths["files-png"] / "train")
    assert [name.split("_", 1)[1] for name in folder.classes] == source.classes


def test_open_store_names_the_prepare_command_when_missing(tmp_path):
    with pytest.raises(ThesisError, match=r"prepare --dataset cifar10 --stores hdf5"):
        open_store(tmp_path, "cifar10", "hdf5")


def test_store_without_manifest_is_never_read(all_stores, tmp_path):
    data_dir, paths, _ = all_stores
    (tmp_path / "cifar10" / "npy-uint8").mkdir(parents=True)
    with pytest.raises(ThesisError, match="incomplete"):
        open_store(tmp_path, "cifar10", "npy-uint8")
    store = open_store(data_dir, "cifar10", "npy-uint8")
    assert store.count("train") == 250 and store.shape("val") == (50, 32, 32, 3)


def test_manifest_with_another_format_version_is_refused(all_stores, tmp_path):
    data_dir, paths, _ = all_stores
    import shutil

    copy = tmp_path / "cifar10" / "hdf5"
    shutil.copytree(paths["hdf5"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ThesisError, match="format version 99"):
        open_store(tmp_path, "cifar10", "hdf5")


def test_float16_store_takes_half_the_bytes_of_float32(all_stores):
    _, paths, _ = all_stores
    size = {name: (paths[name] / "train_images.npy").stat().st_size for name in STORES if name.startswith("npy")}
    assert size["npy-float16"] * 2 - 128 <= size["npy-float32"] <= size["npy-float16"] * 2 + 128
    assert size["npy-uint8"] * 2 - 128 <= size["npy-float16"] <= size["npy-uint8"] * 2 + 128


@pytest.mark.parametrize("stray, message", [("notes.txt", "is not named"), ("000000.png", "repeats sample 0")])
def test_a_stray_file_in_an_image_store_is_named(all_stores, tmp_path, stray, message):
    from thesislib.stores.imagefiles import list_files

    copy = tmp_path / "files-png"
    shutil.copytree(all_stores[1]["files-png"], copy)
    last_class = sorted(path for path in (copy / "train").iterdir() if path.is_dir())[-1]
    (last_class / stray).write_bytes(b"x")
    with pytest.raises(ThesisError, match=f"{stray}.*{message}.*prepare"):
        list_files(copy, "train")
