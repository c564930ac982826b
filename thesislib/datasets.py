"""The three datasets of the thesis: their image shape, classes and split sizes at scale 1; the checks of
the two numbers that pick the samples (``--scale``, ``--seed``)."""

from dataclasses import dataclass

import numpy as np

from thesislib.errors import ThesisError, choose

SPLITS = ("train", "val")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    size: int            # images are size x size x 3
    num_classes: int
    train: int           # samples at scale 1
    val: int
    real_source: str     # what a real source looks like, for messages

    @property
    def shape(self) -> tuple:
        return (self.size, self.size, 3)

    def split_sizes(self, scale: float) -> dict:
        """Samples per split at ``scale``; at least one sample per class in train, at least one in val."""
        check_scale(scale)
        return {
            "train": max(self.num_classes, round(self.train * scale)),
            "val": max(1, round(self.val * scale)),
        }


DATASETS = {
    "cifar10": DatasetSpec("cifar10", 32, 10, 50000, 10000,
                           "the official cifar-10-python.tar.gz or its extracted folder"),
    "tinyimagenet": DatasetSpec("tinyimagenet", 64, 200, 100000, 10000,
                                "the official tiny-imagenet-200.zip or its extracted folder"),
    "masks": DatasetSpec("masks", 512, 2, 8000, 2000,
                         "an ImageFolder tree (one sub-folder per class)"),
}


def get_dataset(name: str) -> DatasetSpec:
    return DATASETS[choose("dataset", name, DATASETS)]


def check_scale(scale: float) -> float:
    if not (isinstance(scale, (int, float)) and 0 < scale <= 1):
        raise ThesisError(f"--scale must be a number in (0, 1], got {scale!r}")
    return float(scale)


def check_seed(seed) -> int:
    """``seed`` if it is a whole number >= 0 (NumPy's generators refuse negative seeds): the seed of the
    sources' subsets and synthetic images, of the sampler's epochs and of the models."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ThesisError(f"--seed must be a whole number >= 0, got {seed!r}: give 0 or a positive number")
    return int(seed)
