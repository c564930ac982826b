"""Real sources are read exactly as their official tools read them; synthetic stand-ins look like photos."""

import io
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
import torchvision
from PIL import Image

from thesislib.errors import ThesisError
from thesislib.sources import load_source
from thesislib.sources.synthetic import generate_split
from thesislib.datasets import get_dataset

from official_sources import cifar10_contents, write_cifar10_archive, write_tinyimagenet_zip


def torchvision_cifar10(root, train, monkeypatch):
    """torchvision's own reader on the same files (its md5 checks are for the full official archive)."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    return torchvision.datasets.CIFAR10(root, train=train, download=False)


def test_cifar10_archive_matches_torchvision_reader(tmp_path, monkeypatch):
    archive = write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz")
    data = load_source("cifar10", archive)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    for split, train in (("train", True), ("val", False)):
        reference = torchvision_cifar10(tmp_path, train, monkeypatch)
        images, labels = data.splits[split]
        np.testing.assert_array_equal(images, reference.data)
        np.testing.assert_array_equal(labels, reference.targets)
    assert data.classes == reference.classes
    extracted = load_source("cifar10", tmp_path)
    np.testing.assert_array_equal(extracted.splits["train"][0], data.splits["train"][0])


def test_cifar10_batches_resaved_by_python3_protocol_2_are_read_too(tmp_path):
    contents = cifar10_contents()
    official = load_source("cifar10", write_cifar10_archive(tmp_path / "official.tar.gz", contents))
    resaved = write_cifar10_archive(tmp_path / "resaved.tar.gz", contents, dump=lambda c: pickle.dumps(c, 2))
    data = load_source("cifar10", resaved)
    assert data.classes == official.classes
    np.testing.assert_array_equal(data.splits["train"][0], official.splits["train"][0])


def test_truncated_cifar10_archive_is_a_clear_error(tmp_path):
    archive = write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz")
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ThesisError, match=r"cifar-10-python.tar.gz.*(truncated|corrupt).*download"):
        load_source("cifar10", archive)


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(ThesisError, match="does not exist.*cifar-10-python.tar.gz"):
        load_source("cifar10", tmp_path / "nope.tar.gz")


def test_tinyimagenet_zip_is_read_with_sorted_wnids_and_val_annotations(tmp_path):
    archive = write_tinyimagenet_zip(tmp_path / "tiny-imagenet-200.zip")
    data = load_source("tinyimagenet", archive)
    assert data.classes == ["n01", "n02", "n03"]
    images, labels = data.splits["train"]
    assert images.shape == (9, 64, 64, 3) and labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.splits["val"][1].tolist() == [1, 0, 2, 1]  # wnids[k % 3] = n02, n01, n03, n02
    with zipfile.ZipFile(archive) as zf:
        expected = np.asarray(Image.open(io.BytesIO(zf.read("tiny-imagenet-200/train/n01/images/n01_0.JPEG")))
                              .convert("RGB"))
    np.testing.assert_array_equal(images[0], expected)


def test_imagefolder_tree_is_resized_and_centre_cropped(tmp_path):
    for label, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.new("RGB", (700, 600), colour).save(tmp_path / label / f"{i}.png")
    data = load_source("masks", tmp_path)
    assert data.classes == ["cat", "dog"]
    train, val = data.splits["train"], data.splits["val"]
    assert train[0].shape[1:] == (512, 512, 3) and len(train[1]) == 8 and len(val[1]) == 2
    assert (train[0][train[1] == 0][..., 0] == 255).all()


def test_corrupt_image_in_imagefolder_tree_names_the_file(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "a" / "ok.png")
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ThesisError, match=r"broken\.jpg"):
        load_source("masks", tmp_path)


def test_synthetic_stand_in_is_deterministic_from_the_seed():
    spec = get_dataset("cifar10")
    first, second, other = (generate_split(spec, 50, seed, "train") for seed in (5, 5, 6))
    np.testing.assert_array_equal(first[0], second[0])
    assert not np.array_equal(first[0], other[0])
    assert sorted(np.bincount(first[1])) == [5] * 10


def test_synthetic_jpegs_are_as_large_as_photos_not_noise():
    images, _ = generate_split(get_dataset("tinyimagenet"), 40, 0, "val")
    noise = np.random.default_rng(0).integers(0, 256, images.shape, dtype=np.uint8)

    def mean_jpeg_bytes(batch):
        sizes = []
        for image in batch:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "JPEG", quality=90)
            sizes.append(len(buffer.getvalue()))
        return np.mean(sizes)

    photo_bytes = mean_jpeg_bytes(images)
    # Tiny ImageNet's real 64x64 JPEGs are a few kB; noise at the same size is about 3-4 times larger.
    assert 1000 < photo_bytes < mean_jpeg_bytes(noise) / 2
