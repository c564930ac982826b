"""Every store is readable by its ecosystem's ordinary tool (the format's ``read_back``, no thesislib code),
holds the pixels it was given, and can be verified against its manifest's checksums."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torchvision

from thesislib.prepare import prepare
from thesislib.sources import load_source
from thesislib.errors import ThesisError
from thesislib.stores import LOSSLESS, STORES, open_store, read_back, verify_store


@pytest.fixture(scope="module")
def all_stores(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    paths = prepare("cifar10", scale=0.005, stores="all", seed=3, data_dir=data_dir, progress=False)
    source = load_source("cifar10", "synthetic", scale=0.005, seed=3)
    return data_dir, paths, source


def psnr(a, b) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def test_prepare_builds_every_registered_store_with_manifests(all_stores):
    _, paths, _ = all_stores
    assert sorted(paths) == sorted(STORES) and {"lmdb", "parquet", "npy-uint8", "files-jp2"} <= set(paths)
    for name, path in paths.items():
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["store"] == name and manifest["dataset"] == "cifar10"
        assert manifest["kind"] == STORES[name].kind
        assert manifest["splits"]["train"]["count"] == 250 and manifest["splits"]["val"]["count"] == 50
        assert manifest["bytes_on_disk"] > 0 and manifest["layout"]
        assert manifest["thesislib_version"] and manifest["created_at"]


@pytest.mark.parametrize("name", list(STORES))
def test_the_manifest_holds_the_sha256_of_every_data_file_of_the_format(all_stores, name):
    _, paths, _ = all_stores
    store = open_store(paths[name].parent.parent, "cifar10", name)
    files = store.data_files()
    assert files and all(path.is_file() and path.name != "manifest.json" for path in files)
    assert sorted(store.manifest["files_sha256"]) == sorted(str(p.relative_to(store.path)) for p in files)
    assert store.manifest["files_sha256"][str(files[0].relative_to(store.path))] == \
        hashlib.sha256(files[0].read_bytes()).hexdigest()


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_store_read_back_by_its_own_tool_gives_identical_pixels_and_labels(all_stores, name):
    _, paths, source = all_stores
    for split in ("train", "val"):
        pixels, labels = read_back(paths[name], split)
        want_pixels, want_labels = source.splits[split]
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, want_labels)
        if STORES[name].dtype == "uint8":
            np.testing.assert_array_equal(pixels, want_pixels)
        else:
            np.testing.assert_allclose(pixels, want_pixels / 255.0, rtol=2.0 ** -10, atol=1e-7)


@pytest.mark.parametrize("name", [name for name in STORES if name not in LOSSLESS])
def test_lossy_store_read_back_gives_the_same_labels_and_reports_its_psnr(all_stores, name):
    _, paths, source = all_stores
    pixels, labels = read_back(paths[name], "val")
    np.testing.assert_array_equal(labels, source.splits["val"][1])
    quality = psnr(pixels, source.splits["val"][0])
    print(f"{name}: PSNR {quality:.1f} dB against the source pixels")
    assert 25 < quality < float("inf")


def test_read_back_code_imports_no_thesislib(all_stores):
    import inspect

    from thesislib.stores import FORMATS, format_of

    for kind in FORMATS:
        source = inspect.getsource(format_of(kind).read_back)
        assert "thesislib" not in source and "damaged" not in source, kind


def test_hugging_face_datasets_reads_the_parquet_store_as_images_and_class_labels(all_stores, tmp_path):
    datasets = pytest.importorskip("datasets")
    _, paths, source = all_stores
    table = datasets.Dataset.from_parquet(str(paths["parquet"] / "val.parquet"), cache_dir=str(tmp_path))
    assert type(table.features["image"]).__name__ == "Image"
    assert table.features["label"].names == source.classes
    pixels = np.stack([np.asarray(row["image"].convert("RGB")) for row in table])
    np.testing.assert_array_equal(pixels, source.splits["val"][0])
    np.testing.assert_array_equal(np.array(table["label"]), source.splits["val"][1])


def test_the_parquet_store_has_row_groups_of_1000_rows_and_the_png_bytes_of_files_png(all_stores):
    import pyarrow.parquet as pq

    _, paths, _ = all_stores
    file = pq.ParquetFile(paths["parquet"] / "train.parquet")
    assert file.metadata.num_row_groups == 1 and file.metadata.row_group(0).num_rows == 250
    row = file.read_row_group(0).column("image")[7].as_py()
    files_png = sorted((paths["files-png"] / "train").rglob("000007.png"))[0]
    assert row["path"] == "000007.png" and row["bytes"] == files_png.read_bytes()


def test_the_lmdb_store_keys_samples_by_8_byte_big_endian_index(all_stores):
    import lmdb

    _, paths, source = all_stores
    with lmdb.open(str(paths["lmdb"] / "val.lmdb"), readonly=True, lock=False) as env, env.begin() as txn:
        assert txn.get((3).to_bytes(8, "big")) == source.splits["val"][0][3].tobytes()
        assert json.loads(txn.get(b"__meta__"))["shape"] == [50, 32, 32, 3]
        assert env.stat()["entries"] == 50 + 2  # the samples, the labels and the meta key


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


# -------------------------------------------------------------------------------------------------- verify
def copy_of(all_stores, tmp_path, name):
    shutil.copytree(all_stores[1][name], tmp_path / "cifar10" / name)
    return open_store(tmp_path, "cifar10", name)


@pytest.mark.parametrize("name", ["npy-uint8", "zarr", "lmdb", "parquet", "files-png"])
def test_verify_accepts_a_store_as_prepared(all_stores, tmp_path, name):
    store = copy_of(all_stores, tmp_path, name)
    assert verify_store(store, progress=False) == sum(path.stat().st_size for path in store.data_files())


@pytest.mark.parametrize("name", ["hdf5", "lmdb", "parquet", "files-jpeg"])
def test_verify_names_the_first_changed_file_and_the_fix(all_stores, tmp_path, name):
    store = copy_of(all_stores, tmp_path, name)
    path = store.data_files()[-1]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    message = rf"{path} does not match its SHA-256.*prepare .*--stores {name}.*--force"
    with pytest.raises(ThesisError, match=message):
        verify_store(store, progress=False)


def test_verify_names_a_missing_file(all_stores, tmp_path):
    store = copy_of(all_stores, tmp_path, "npy-uint8")
    (store.path / "val_labels.npy").unlink()
    with pytest.raises(ThesisError, match=r"val_labels\.npy is missing.*--force"):
        verify_store(store, progress=False)


def test_a_store_prepared_before_per_file_checksums_still_opens_and_verify_asks_to_prepare_again(
        all_stores, tmp_path):
    from thesislib.loaders import make_loader

    store = copy_of(all_stores, tmp_path, "hdf5")
    manifest = json.loads((store.path / "manifest.json").read_text())
    del manifest["files_sha256"]
    (store.path / "manifest.json").write_text(json.dumps(manifest))
    old = open_store(tmp_path, "cifar10", "hdf5")
    with make_loader("hdf5", old, "val", batch_size=50, shuffle=False) as reader:
        np.testing.assert_array_equal(next(iter(reader))[0].numpy(), all_stores[2].splits["val"][0])
    with pytest.raises(ThesisError, match="no per-file checksums.*older thesislib.*--force"):
        verify_store(old, progress=False)


def test_a_manifest_of_another_kind_than_its_store_is_refused(all_stores, tmp_path):
    store = copy_of(all_stores, tmp_path, "zarr")
    manifest = json.loads((store.path / "manifest.json").read_text())
    (store.path / "manifest.json").write_text(json.dumps({**manifest, "kind": "lmdb"}))
    with pytest.raises(ThesisError, match="kind='lmdb', store zarr is a zarr store"):
        open_store(tmp_path, "cifar10", "zarr")
