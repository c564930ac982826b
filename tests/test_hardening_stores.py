"""Damaged stores fail in one line when opened, never train on wrong data (issue 11, items 5, 6, 7, 14's cgroup
limit, 15 and 16): a deleted Zarr chunk, foreign or hidden class folders, labels out of range, a damaged
manifest, a FIFO in a store; the memory loader's fit check reads the container's limit."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from thesislib.cli import main
from thesislib.errors import ThesisError
from thesislib.loaders import make_loader
from thesislib.prepare import prepare
from thesislib.stores import open_store

ROOT = Path(__file__).resolve().parents[1]
SCALE = 0.005
STORES = ["npy-uint8", "hdf5", "zarr", "lmdb", "parquet", "files-png"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    prepare("cifar10", scale=SCALE, stores=STORES, seed=0, data_dir=data_dir, progress=False)
    return data_dir


@pytest.fixture
def copy(prepared, tmp_path):
    """``copy(name)``: a private copy of one prepared store (to damage): its folder."""
    def make(name):
        shutil.copytree(prepared / "cifar10" / name, tmp_path / "cifar10" / name)
        return tmp_path / "cifar10" / name

    make.data_dir = tmp_path
    return make


def bench(data_dir, loader, store, capsys):
    """``python -m thesislib bench`` (in this process): (exit status, stderr lines)."""
    status = main(["bench", "--loader", loader, "--store", store, "--dataset", "cifar10", "--scale", str(SCALE),
                   "--data-dir", str(data_dir), "--results", str(Path(data_dir) / "r.csv"), "--model", "none",
                   "--device", "cpu"])
    return status, [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
                    if line.strip() and "it/s]" not in line and "/s]" not in line]


def assert_one_line(status, lines, *patterns):
    assert status == 2 and len(lines) == 1, lines
    for pattern in patterns:
        assert pattern in lines[0], lines[0]


def class_folders(store: Path, split: str) -> list:
    return sorted(path for path in (store / split).iterdir() if path.is_dir())


def first_loader_labels(data_dir, loader, store, split="val"):
    with make_loader(loader, open_store(data_dir, "cifar10", store), split, batch_size=1000, shuffle=False) as it:
        return np.concatenate([labels.numpy() for _, labels in it])


# --------------------------------------------------------------------------------- 5: a missing Zarr chunk
def test_bench_on_a_zarr_store_with_a_deleted_image_chunk_exits_2_naming_the_chunk(copy, capsys):
    store = copy("zarr")
    chunk = store / "data.zarr" / "train" / "images" / "c.0.0.0.0"  # the first shard
    chunk.unlink()
    status, lines = bench(copy.data_dir, "zarr", "zarr", capsys)
    assert_one_line(status, lines, str(chunk), "is missing", "prepare")


def test_a_zarr_store_with_a_deleted_labels_chunk_is_refused(copy):
    store = copy("zarr")
    chunk = next((store / "data.zarr" / "val" / "labels" / "c").iterdir())
    chunk.unlink()
    with pytest.raises(ThesisError, match=f"{chunk}.*is missing.*zeros"):
        make_loader("zarr", open_store(copy.data_dir, "cifar10", "zarr"), "val", batch_size=8)


# ------------------------------------------------------------------- 6: class folders from the manifest
@pytest.mark.parametrize("loader", ["files", "torchvision", "dali"])
def test_a_hidden_folder_in_an_image_store_changes_no_label(copy, prepared, loader):
    from thesislib.loaders import unavailable_reason

    if unavailable_reason(loader):
        pytest.skip(f"{loader}: {unavailable_reason(loader)}")
    store = copy("files-png")
    for split in ("train", "val"):
        (store / split / ".ipynb_checkpoints").mkdir()  # sorts before 000_airplane: shifted every label
    expected = first_loader_labels(prepared, "numpy", "npy-uint8")
    np.testing.assert_array_equal(first_loader_labels(copy.data_dir, loader, "files-png"), expected)


def test_bench_on_an_image_store_with_a_hidden_folder_runs(copy, capsys):
    store = copy("files-png")
    (store / "val" / ".ipynb_checkpoints").mkdir()
    status, lines = bench(copy.data_dir, "files", "files-png", capsys)
    assert status == 0, lines


def test_verify_passes_an_image_store_with_a_jupyter_checkpoint_folder(copy):
    from thesislib.stores import verify_store

    store = copy("files-png")
    checkpoint = store / "val" / class_folders(store, "val")[0].name / ".ipynb_checkpoints"
    checkpoint.mkdir()
    (checkpoint / "000001-checkpoint.png").write_bytes(b"not a store file")
    verify_store(open_store(copy.data_dir, "cifar10", "files-png"), progress=False)


@pytest.mark.parametrize("loader", ["files", "torchvision", "dali"])
def test_bench_on_an_image_store_with_a_renamed_class_folder_exits_2_naming_it(copy, loader, capsys):
    from thesislib.loaders import unavailable_reason

    if unavailable_reason(loader):
        pytest.skip(f"{loader}: {unavailable_reason(loader)}")
    store = copy("files-png")
    os.rename(class_folders(store, "train")[3], store / "train" / "003_renamed")
    status, lines = bench(copy.data_dir, loader, "files-png", capsys)
    assert_one_line(status, lines, "003_renamed is not a class folder of the store's manifest", "prepare")


def test_a_missing_class_folder_is_named(copy):
    from thesislib.stores.imagefiles import list_files

    store = copy("files-png")
    last = class_folders(store, "train")[-1]
    shutil.rmtree(last)
    with pytest.raises(ThesisError, match=rf"{last} \(class 9 of the manifest\) is missing"):
        list_files(store, "train")


# ------------------------------------------------------------------------------ 7: labels out of range
def corrupt_label(store: Path, kind: str, value: int) -> None:
    """Set the label of train sample 5 to ``value`` in the store's own format."""
    if kind == "npy-uint8":
        labels = np.load(store / "train_labels.npy")
        labels[5] = value
        np.save(store / "train_labels.npy", labels)
    elif kind == "hdf5":
        import h5py

        with h5py.File(store / "data.h5", "r+") as file:
            file["train/labels"][5] = value
    elif kind == "zarr":
        import zarr

        zarr.open_group(store / "data.zarr", mode="a")["train/labels"][5] = value
    elif kind == "lmdb":
        import lmdb

        with lmdb.open(str(store / "train.lmdb"), subdir=True) as env, env.begin(write=True) as txn:
            labels = np.frombuffer(txn.get(b"__labels__"), dtype="<i8").copy()
            labels[5] = value
            txn.put(b"__labels__", labels.tobytes())
    elif kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(store / "train.parquet")
        labels = table.column("label").to_numpy().copy()
        labels[5] = value
        pq.write_table(table.set_column(1, "label", [labels]), store / "train.parquet", row_group_size=1000)


@pytest.mark.parametrize("name", ["npy-uint8", "hdf5", "zarr", "lmdb", "parquet"])
@pytest.mark.parametrize("value", [10, -1])
def test_a_label_outside_the_classes_is_refused_when_the_store_is_opened(copy, name, value):
    from thesislib.stores import STORES as SPECS
    from thesislib.stores import format_of

    store = copy(name)
    corrupt_label(store, name, value)
    loader = format_of(SPECS[name].kind).LOADER
    with pytest.raises(ThesisError, match=f"label {value} at sample 5, outside the store's 10 classes"):
        make_loader(loader, open_store(copy.data_dir, "cifar10", name), "train", batch_size=8)


@pytest.mark.parametrize("loader", ["numpy", "memory"])
def test_bench_on_a_store_with_a_corrupt_label_exits_2_in_one_line(copy, loader, capsys):
    store = copy("npy-uint8")
    corrupt_label(store, "npy-uint8", 10)
    status, lines = bench(copy.data_dir, loader, "npy-uint8", capsys)
    assert_one_line(status, lines, "train_labels.npy holds label 10 at sample 5", "prepare")


# ------------------------------------------------------------------------------- 7: the manifest's schema
def damage_manifest(store: Path, change) -> None:
    manifest = json.loads((store / "manifest.json").read_text())
    (store / "manifest.json").write_text(json.dumps(change(manifest)))


MANIFESTS = {
    "a list": (lambda m: [m], "holds a JSON list, not an object"),
    "null": (lambda m: None, "holds a JSON NoneType, not an object"),
    "no splits": (lambda m: {k: v for k, v in m.items() if k != "splits"}, "lacks 'splits'"),
    "no classes": (lambda m: {k: v for k, v in m.items() if k != "classes"}, "lacks 'classes'"),
    "no val": (lambda m: {**m, "splits": {"train": m["splits"]["train"]}}, "lacks splits.val"),
    "a text scale": (lambda m: {**m, "scale": "0.005"}, "has scale '0.005', not a number"),
    "count beyond the shape": (lambda m: {**m, "splits": {**m["splits"], "val": {
        **m["splits"]["val"], "count": 60}}}, "count=60 but its shape holds 50"),
    "a count as text": (lambda m: {**m, "splits": {**m["splits"], "val": {
        **m["splits"]["val"], "count": "50"}}}, "count '50', not a whole number"),
}


@pytest.mark.parametrize("case", list(MANIFESTS))
def test_a_damaged_manifest_is_refused_in_one_line(copy, case):
    change, message = MANIFESTS[case]
    damage_manifest(copy("hdf5"), change)
    with pytest.raises(ThesisError, match="manifest.json") as error:
        open_store(copy.data_dir, "cifar10", "hdf5")
    assert message in str(error.value) and "prepare" in str(error.value)


@pytest.mark.parametrize("name, count", [("npy-uint8", 60), ("npy-uint8", 40), ("hdf5", 60), ("zarr", 40),
                                         ("lmdb", 60), ("parquet", 40), ("files-png", 60)])
def test_counts_larger_or_smaller_than_the_data_are_refused(copy, name, count):
    from thesislib.stores import STORES as SPECS
    from thesislib.stores import format_of

    def recount(manifest):
        val = manifest["splits"]["val"]
        return {**manifest, "splits": {**manifest["splits"], "val": {
            **val, "count": count, "shape": [count, *val["shape"][1:]]}}}

    damage_manifest(copy(name), recount)
    loader = format_of(SPECS[name].kind).LOADER
    with pytest.raises(ThesisError, match="prepare"):
        make_loader(loader, open_store(copy.data_dir, "cifar10", name), "val", batch_size=8)


def test_bench_with_a_manifest_that_is_a_list_exits_2_in_one_line(copy, capsys):
    damage_manifest(copy("npy-uint8"), lambda m: [m])
    status, lines = bench(copy.data_dir, "numpy", "npy-uint8", capsys)
    assert_one_line(status, lines, "manifest.json", "not an object", "prepare")


# ----------------------------------------------------------------------------------- 16: special files
@pytest.mark.parametrize("name, relative", [("npy-uint8", "val_images.npy"),
                                            ("files-png", "val/000_astronaut-cast00/000007.png"),
                                            ("zarr", "data.zarr/val/images/c.3.0.0.0")])
def test_bench_on_a_store_holding_a_fifo_exits_2_instead_of_hanging(copy, name, relative):
    from thesislib.stores import STORES as SPECS
    from thesislib.stores import format_of

    store = copy(name)
    fifo = store / relative
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "thesislib", "bench", "--loader", format_of(SPECS[name].kind).LOADER,
               "--store", name, "--dataset", "cifar10", "--scale", str(SCALE), "--data-dir", str(copy.data_dir),
               "--results", str(copy.data_dir / "r.csv"), "--model", "none", "--device", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert f"{fifo} is not a regular file" in lines[0]


# --------------------------------------------------------------------- 14: the container's memory limit
def write_cgroup(root: Path, files: dict) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("files, expected", [
    ({"memory.max": "1073741824\n", "memory.current": "536870912\n",
      "memory.stat": "anon 1\ninactive_file 268435456\n"}, 2**30 - 2**29 + 2**28),      # v2
    ({"memory.max": "max\n", "memory.current": "5\n"}, None),                          # v2, no limit
    ({"memory/memory.limit_in_bytes": "2147483648\n", "memory/memory.usage_in_bytes": "1073741824\n",
      "memory/memory.stat": "total_inactive_file 0\n"}, 2**30),                         # v1
    ({}, None),                                                                        # no cgroup files
])
def test_the_cgroup_limit_minus_its_usage_is_read_for_v2_and_v1(tmp_path, files, expected):
    from thesislib.loaders.memory import cgroup_available

    assert cgroup_available(write_cgroup(tmp_path, files)) == expected


def test_the_memory_loader_uses_the_smaller_of_the_host_and_the_container(tmp_path):
    import psutil

    from thesislib.loaders.memory import available_ram

    limited = write_cgroup(tmp_path, {"memory.max": "1048576\n", "memory.current": "0\n"})
    assert available_ram(limited) == min(2**20, psutil.virtual_memory().available)
    assert available_ram(tmp_path / "none") <= psutil.virtual_memory().available


# ------------------------------------------------------------------------ 15: library lines stay off stderr
def test_bench_on_a_corrupt_hdf5_file_prints_one_line_and_no_hdf5_diagnostics(copy):
    store = copy("hdf5")
    data = bytearray((store / "data.h5").read_bytes())
    data[:64] = b"\0" * 64   # the superblock: HDF5's own error stack is several lines
    (store / "data.h5").write_bytes(bytes(data))
    command = [sys.executable, "-m", "thesislib", "bench", "--loader", "hdf5", "--store", "hdf5", "--dataset",
               "cifar10", "--scale", str(SCALE), "--data-dir", str(copy.data_dir), "--results",
               str(copy.data_dir / "r.csv"), "--model", "none", "--device", "cpu", "--num-workers", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "data.h5" in lines[0] and "HDF5-DIAG" not in result.stderr


def test_a_multi_line_library_message_is_quoted_on_one_line_in_a_store_error():
    from thesislib.stores.base import damaged
    from thesislib.stores.hdf5 import corrupt

    library = OSError("Unable to open object\n  major: Object header\n  minor: Bad value")
    for error in (corrupt("data.h5", "train", library), damaged("data.mdb", f"cannot be read ({library})")):
        assert "\n" not in str(error) and "Object header minor: Bad value" in str(error)
