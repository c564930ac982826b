"""Hostile and broken sources (issue 11, items 1-4, 14, 16): no code runs, nothing is read or written outside the
source and data folders, sizes are bounded, and every bad source is one line (exit 2 through the CLI)."""

import builtins
import os
import pickle
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thesislib.errors import ThesisError
from thesislib.prepare import prepare
from thesislib.sources import kept_indices, load_source
from thesislib.sources import cifar10, tinyimagenet

from official_sources import (cifar10_contents, jpeg, py2_pickle, tinyimagenet_files, write_cifar10_archive,
                              write_tinyimagenet_folder, write_tinyimagenet_zip)

ROOT = Path(__file__).resolve().parents[1]


def run_prepare(data_dir, *args, stores="npy-uint8", timeout=120):
    """``python -m thesislib prepare`` in a fresh process with the worktree's package."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "thesislib", "prepare", "--data-dir", str(data_dir), "--stores", stores,
               *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=data_dir.parent)


def assert_one_line(result, pattern):
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]


# 1. Code execution from a CIFAR-10 pickle ---------------------------------------------------------------

class Payload:
    """Unpickling this runs ``call(*args)``: what a crafted batch would do."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def payloads(marker: Path) -> dict:
    return {"os.system": Payload(os.system, f"touch {marker}"),
            "builtins.eval": Payload(builtins.eval, f"__import__('pathlib').Path({str(marker)!r}).touch()"),
            "subprocess.call": Payload(subprocess.call, ["touch", str(marker)])}


def crafted_archive(path, payload, member="data_batch_1"):
    contents = cifar10_contents()
    contents[member] = pickle.dumps({"data": payload}, protocol=2)
    return write_cifar10_archive(path, contents)


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess.call"])
def test_crafted_cifar10_pickle_runs_no_code(tmp_path, kind):
    marker = tmp_path / "pwned"
    archive = crafted_archive(tmp_path / "cifar-10-python.tar.gz", payloads(marker)[kind])
    with pytest.raises(ThesisError, match=r"data_batch_1 refers to .*(system|eval|call).*refused"):
        load_source("cifar10", archive)
    assert not marker.exists()


def test_crafted_cifar10_folder_through_the_cli_is_one_line_and_keeps_the_old_store(tmp_path):
    data_dir, marker = tmp_path / "data", tmp_path / "pwned"
    prepare("cifar10", "synthetic", scale=0.001, stores=["npy-uint8"], data_dir=data_dir, progress=False)
    manifest = (data_dir / "cifar10" / "npy-uint8" / "manifest.json").read_bytes()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, content in cifar10_contents().items():
        (folder / name).write_bytes(py2_pickle(content))
    (folder / "batches.meta").write_bytes(pickle.dumps(payloads(marker)["os.system"], protocol=2))
    result = run_prepare(data_dir, "--dataset", "cifar10", "--source", folder, "--force")
    assert_one_line(result, r"^error: .*batches\.meta refers to posix\.system.*refused")
    assert not marker.exists()
    assert (data_dir / "cifar10" / "npy-uint8" / "manifest.json").read_bytes() == manifest


# 2. Class names that would leave the data folder ----------------------------------------------------------

@pytest.mark.parametrize("name", [b"../../escape", b"/etc", b"a\\b", b"..", b"", b"tab\there", b"x" * 101,
                                  "c1\x85control".encode()])
def test_unsafe_cifar10_label_name_is_refused(tmp_path, name):
    contents = cifar10_contents()
    contents["batches.meta"][b"label_names"][3] = name
    archive = write_cifar10_archive(tmp_path / "c.tar.gz", contents)
    with pytest.raises(ThesisError, match=r"batches\.meta.*class name"):
        load_source("cifar10", archive)


def test_duplicate_cifar10_label_name_is_refused(tmp_path):
    contents = cifar10_contents()
    contents["batches.meta"][b"label_names"][3] = b"bird"
    with pytest.raises(ThesisError, match=r"batches\.meta: class name 'bird' appears twice"):
        load_source("cifar10", write_cifar10_archive(tmp_path / "c.tar.gz", contents))


def test_traversing_wnid_through_the_cli_writes_nothing_outside(tmp_path):
    evil = "../../../../../../outside"
    files = tinyimagenet_files(wnids=("n01", "n02", "n03"))
    files["wnids.txt"] += f"{evil}\n".encode()
    files["val/val_annotations.txt"] += f"val_3.JPEG\t{evil}\t0\t0\t63\t63\n".encode()
    source = write_tinyimagenet_zip(tmp_path / "tiny.zip", files)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    result = run_prepare(data_dir, "--dataset", "tinyimagenet", "--source", source, stores="files-png")
    assert_one_line(result, r"^error: .*wnids\.txt: class name '(\.\./)+outside' is not a plain folder")
    assert not [path for path in tmp_path.rglob("*outside*")]


def test_control_character_in_an_imagefolder_class_is_refused(tmp_path):
    for name in ("cat", "dog\x1b[2J"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / name / "0.png")
    with pytest.raises(ThesisError, match=r"sub-folder names.*class name 'dog\\x1b\[2J'"):
        load_source("masks", tmp_path)


def test_hidden_folders_of_an_imagefolder_tree_are_not_classes(tmp_path):
    for name in ("cat", "dog", ".ipynb_checkpoints"):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.new("RGB", (8, 8)).save(tmp_path / name / f"{i}.png")
    assert load_source("masks", tmp_path).classes == ["cat", "dog"]


# 3. Reads outside the source tree --------------------------------------------------------------------------

def test_val_annotation_pointing_outside_the_extracted_folder_is_refused(tmp_path):
    (tmp_path / "secret.JPEG").write_bytes(jpeg(np.zeros((64, 64, 3), np.uint8)))
    files = tinyimagenet_files()
    files["val/val_annotations.txt"] += b"../../../secret.JPEG\tn01\t0\t0\t63\t63\n"
    source = write_tinyimagenet_folder(tmp_path / "src", files)
    with pytest.raises(ThesisError, match=r"val_annotations\.txt: line 5 names '\.\./\.\./\.\./secret\.JPEG'"):
        load_source("tinyimagenet", source)


def test_link_out_of_the_extracted_folder_is_refused(tmp_path):
    (tmp_path / "secret.JPEG").write_bytes(jpeg(np.zeros((64, 64, 3), np.uint8)))
    source = write_tinyimagenet_folder(tmp_path / "src")
    image = source / "tiny-imagenet-200" / "val" / "images" / "val_0.JPEG"
    image.unlink()
    image.symlink_to(tmp_path / "secret.JPEG")
    with pytest.raises(ThesisError, match=r"val/images/val_0\.JPEG resolves to .*secret\.JPEG, outside"):
        load_source("tinyimagenet", source)


@pytest.mark.parametrize("member", ["../cifar-10-batches-py/data_batch_1", "/cifar-10-batches-py/data_batch_1"])
def test_cifar10_member_with_a_path_out_of_the_archive_is_refused(tmp_path, member):
    contents = cifar10_contents()
    contents[member] = contents.pop("data_batch_1")
    archive = write_cifar10_archive(tmp_path / "c.tar.gz", contents, folder=None)
    with pytest.raises(ThesisError, match=r"a path that leaves the source"):
        load_source("cifar10", archive)


# 4. Resource exhaustion ------------------------------------------------------------------------------------

def test_oversized_cifar10_member_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "BATCH_LIMIT", 4096)   # the stated limit is 64 MB; the test's batch is 18 kB
    with pytest.raises(ThesisError, match=r"data_batch_1 is 0\.0 MB, more than the 0\.00390625 MB"):
        load_source("cifar10", write_cifar10_archive(tmp_path / "c.tar.gz"))


def test_oversized_tinyimagenet_jpeg_is_refused(tmp_path):
    files = tinyimagenet_files()
    files["val/images/val_1.JPEG"] += b"\0" * (tinyimagenet.IMAGE_LIMIT + 1)
    with pytest.raises(ThesisError, match=r"val_1\.JPEG is 1\.0 MB, more than the 1 MB"):
        load_source("tinyimagenet", write_tinyimagenet_zip(tmp_path / "t.zip", files))


def test_strip_image_is_cropped_before_it_is_resized(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(5):
            strip = np.zeros((10000, 1, 3), np.uint8)
            strip[5000] = (200, 100, 50)
            Image.fromarray(strip).save(tmp_path / name / f"{i}.png")
    images, _ = load_source("masks", tmp_path).splits["train"]
    assert images.shape == (8, 512, 512, 3)


def png_header(width: int, height: int) -> bytes:
    """A PNG that announces ``width`` x ``height`` pixels in 60 bytes (its pixels are never reached)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height, message", [(8000, 8000, r"8000x8000, more than the 50,000,000 pixels"),
                                                    (10000, 10000, r"more pixels than Pillow's limit"),
                                                    (20000, 10000, r"more pixels than Pillow's limit")])
def test_decompression_bomb_is_refused(tmp_path, width, height, message):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "ok.png")
    (tmp_path / "a" / "bomb.png").write_bytes(png_header(width, height))
    with pytest.raises(ThesisError, match=rf"bomb\.png.*{message}"):
        load_source("masks", tmp_path)


@pytest.mark.parametrize("width", [10000, 20000])  # Pillow warns above 89.5 megapixels, raises above twice that
def test_decompression_bomb_through_the_cli_is_one_line(tmp_path, width):
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "a" / "bomb.png").write_bytes(png_header(width, 10000))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    assert_one_line(run_prepare(data_dir, "--dataset", "masks", "--source", tmp_path / "src"),
                    r"^error: image .*bomb\.png has more pixels than Pillow's limit")


def test_damaged_image_that_scale_drops_is_never_decoded(tmp_path):
    files = tinyimagenet_files(per_class=10)
    train = sorted(n for n in files if n.startswith("train/"))
    order = sorted(range(len(train)), key=lambda i: (train[i].split("/")[1], int(train[i][-6])))
    keep = kept_indices({"train": 30, "val": 4}, 0.5, 0)["train"]
    dropped = train[order[next(i for i in range(30) if i not in keep)]]
    files[dropped] = b"\xff\xd8 not a jpeg"
    data = load_source("tinyimagenet", write_tinyimagenet_zip(tmp_path / "t.zip", files), scale=0.5)
    assert len(data.splits["train"][1]) == 15
    with pytest.raises(ThesisError, match=re.escape(dropped)):
        load_source("tinyimagenet", tmp_path / "t.zip", scale=1.0)


# 14. Malformed sources are one line ------------------------------------------------------------------------

def cifar_variant(change):
    contents = cifar10_contents()
    change(contents)
    return contents


CIFAR_DAMAGE = {
    "wrong row size": (lambda c: c["data_batch_2"].update({b"data": np.zeros((6, 3000), np.uint8)}),
                       r"data_batch_2: 'data' is uint8 \(6, 3000\), not uint8 rows of 3072"),
    "label count": (lambda c: c["test_batch"][b"labels"].pop(), r"test_batch has 5 labels for 6 images"),
    "label range": (lambda c: c["data_batch_1"][b"labels"].__setitem__(0, 10), r"labels outside 0\.\.9"),
    "float data": (lambda c: c["data_batch_3"].update({b"data": np.zeros((6, 3072))}),
                   r"'data' is float64 \(6, 3072\)"),
    "no data": (lambda c: c["data_batch_4"].pop(b"data"), r"data_batch_4: 'data' is NoneType"),
    "nine names": (lambda c: c["batches.meta"][b"label_names"].pop(), r"not a list of 10 names"),
    "non-UTF-8 name": (lambda c: c["batches.meta"][b"label_names"].__setitem__(0, b"\xff\xfe"),
                       r"label name is not UTF-8"),
    "not a dict": (lambda c: c.update({"data_batch_5": [1, 2, 3]}), r"data_batch_5 holds a list, not the dict"),
    "missing member": (lambda c: c.pop("test_batch"), r"lacks test_batch"),
    "truncated pickle": (lambda c: c.update({"data_batch_1": py2_pickle(c["data_batch_1"])[:500]}),
                         r"data_batch_1 is truncated or corrupt"),
}


@pytest.mark.parametrize("damage", sorted(CIFAR_DAMAGE))
def test_malformed_cifar10_is_one_line(tmp_path, damage):
    change, message = CIFAR_DAMAGE[damage]
    archive = write_cifar10_archive(tmp_path / "c.tar.gz", cifar_variant(change))
    with pytest.raises(ThesisError, match=message) as caught:
        load_source("cifar10", archive)
    assert "\n" not in str(caught.value) and "download the official" in str(caught.value)


def tiny_variant(name, content):
    files = tinyimagenet_files()
    if content is None:
        files.pop(name)
    else:
        files[name] = content
    return files


TINY_DAMAGE = {
    "unknown wnid": ("val/val_annotations.txt", b"val_0.JPEG\tn99\t0\t0\t63\t63\n",
                     r"line 1 has wnid 'n99', which wnids.txt does not list"),
    "short line": ("val/val_annotations.txt", b"val_0.JPEG\n", r"line 1 has no tab-separated file name"),
    "non-UTF-8 annotations": ("val/val_annotations.txt", b"val_0.JPEG\t\xff\n", r"val_annotations.txt is not UTF-8"),
    "non-UTF-8 wnids": ("wnids.txt", b"n01\n\xe9\n", r"wnids.txt is not UTF-8"),
    "missing wnids": ("wnids.txt", None, r"lacks tiny-imagenet-200/wnids.txt"),
    "missing image": ("val/images/val_2.JPEG", None, r"lacks tiny-imagenet-200/val/images/val_2.JPEG"),
    "wrong image size": ("train/n01/images/n01_1.JPEG", jpeg(np.zeros((60, 64, 3), np.uint8)),
                         r"n01_1.JPEG is 64x60, not 64x64"),
    "corrupt image": ("train/n02/images/n02_0.JPEG", b"\xff\xd8\xff garbage", r"corrupt or unreadable image"),
    "unknown train wnid": ("train/n07/images/n07_0.JPEG", jpeg(np.zeros((64, 64, 3), np.uint8)),
                           r"train/n07/images/n07_0.JPEG is not train/<wnid>/images/<file> with a wnid"),
    "unnumbered image": ("train/n01/images/n01_x.JPEG", jpeg(np.zeros((64, 64, 3), np.uint8)),
                         r"n01_x.JPEG is not named like the official images"),
    "empty annotations": ("val/val_annotations.txt", b"\n", r"val_annotations.txt lists no images"),
    "repeated val file": ("val/val_annotations.txt", b"val_0.JPEG\tn01\nval_1.JPEG\tn01\nval_0.JPEG\tn02\n",
                          r"line 3 names 'val_0.JPEG', not a new plain file name"),
}


@pytest.mark.parametrize("damage", sorted(TINY_DAMAGE))
def test_malformed_tinyimagenet_is_one_line(tmp_path, damage):
    name, content, message = TINY_DAMAGE[damage]
    archive = write_tinyimagenet_zip(tmp_path / "t.zip", tiny_variant(name, content))
    with pytest.raises(ThesisError, match=message) as caught:
        load_source("tinyimagenet", archive)
    assert "\n" not in str(caught.value)


def test_malformed_tinyimagenet_through_the_cli_is_one_line(tmp_path):
    name, content, message = TINY_DAMAGE["unknown wnid"]
    source = write_tinyimagenet_folder(tmp_path / "src", tiny_variant(name, content))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    assert_one_line(run_prepare(data_dir, "--dataset", "tinyimagenet", "--source", source), message)


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seed_is_refused_by_the_source(seed):
    with pytest.raises(ThesisError, match=r"--seed must be a whole number >= 0"):
        load_source("cifar10", "synthetic", scale=0.001, seed=seed)


def test_negative_seed_through_the_cli_is_one_line(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    assert_one_line(run_prepare(data_dir, "--dataset", "cifar10", "--scale", "0.001", "--seed", "-1"),
                    r"^error: --seed must be a whole number >= 0, got -1")
    assert list(data_dir.iterdir()) == []


def test_library_messages_of_a_damaged_tiff_stay_off_the_terminal(tmp_path):
    (tmp_path / "src" / "a").mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        tmp_path / "x.tif", compression="tiff_lzw")
    raw = (tmp_path / "x.tif").read_bytes()
    (tmp_path / "src" / "a" / "bad.tif").write_bytes(raw[:200] + b"\xff" * 100 + raw[300:])
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    assert_one_line(run_prepare(data_dir, "--dataset", "masks", "--source", tmp_path / "src"),
                    r"^error: corrupt or unreadable image .*bad\.tif \(.*\): replace or remove the file$")


# 16. Special files -----------------------------------------------------------------------------------------

def test_fifo_in_an_imagefolder_tree_is_one_line_not_a_hang(tmp_path):
    (tmp_path / "src" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "src" / "a" / "ok.png")
    os.mkfifo(tmp_path / "src" / "a" / "pipe.png")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    result = run_prepare(data_dir, "--dataset", "masks", "--source", tmp_path / "src", timeout=60)
    assert_one_line(result, r"^error: .*pipe\.png is not a regular file")


@pytest.mark.parametrize("dataset, name", [("cifar10", "cifar-10-batches-py/batches.meta"),
                                           ("tinyimagenet", "tiny-imagenet-200/val/val_annotations.txt")])
def test_fifo_in_an_extracted_archive_is_refused(tmp_path, dataset, name):
    if dataset == "cifar10":
        (tmp_path / "cifar-10-batches-py").mkdir()
        for member, content in cifar10_contents().items():
            (tmp_path / "cifar-10-batches-py" / member).write_bytes(py2_pickle(content))
    else:
        write_tinyimagenet_folder(tmp_path)
    (tmp_path / name).unlink()
    os.mkfifo(tmp_path / name)
    with pytest.raises(ThesisError, match=rf"{Path(name).name} is not a regular file"):
        load_source(dataset, tmp_path)


def test_fifo_given_as_the_source_archive_is_refused(tmp_path):
    os.mkfifo(tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(ThesisError, match=r"is not a regular file or folder"):
        load_source("cifar10", tmp_path / "cifar-10-python.tar.gz")
