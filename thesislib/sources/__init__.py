"""Where images come from: the real archives of the contract, or photo-derived synthetic stand-ins.

:func:`load_source` returns a :class:`SourceData`: class names and, per split, uint8 images (N, H, W, 3)
with int64 labels, already resized and cropped to the dataset's shape (the thesis's section 2.1:
preprocessing happens once, at conversion).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thesislib.datasets import SPLITS, check_scale, get_dataset
from thesislib.errors import ThesisError


@dataclass
class SourceData:
    dataset: str
    classes: list
    splits: dict       # split -> (images uint8 (N, H, W, 3), labels int64 (N,))
    origin: str        # "synthetic" or the real archive's path

    def check(self, shape) -> "SourceData":
        """Raise if a split's images are not ``shape`` uint8 or its labels fall outside the classes."""
        for split, (images, labels) in self.splits.items():
            if images.dtype != np.uint8 or images.shape[1:] != tuple(shape) or len(images) != len(labels):
                raise ThesisError(f"{self.origin}: split {split} has images {images.shape} {images.dtype}, "
                                  f"expected (N, {', '.join(map(str, shape))}) uint8")
            if len(labels) and not 0 <= labels.min() <= labels.max() < len(self.classes):
                raise ThesisError(f"{self.origin}: split {split} has labels outside 0..{len(self.classes) - 1}")
        return self


def subsample(data: SourceData, scale: float, seed: int) -> SourceData:
    """A seeded random ``scale`` fraction of each split, kept in its original order."""
    if scale >= 1:
        return data
    rng = np.random.default_rng([seed, 7])
    splits = {}
    for split, (images, labels) in data.splits.items():
        keep = np.sort(rng.choice(len(labels), size=max(1, round(len(labels) * scale)), replace=False))
        splits[split] = (images[keep], labels[keep])
    return SourceData(data.dataset, data.classes, splits, data.origin)


def load_source(dataset: str, source="synthetic", scale: float = 1.0, seed: int = 0,
                progress: bool = False) -> SourceData:
    """Dataset ``dataset`` from ``source`` ("synthetic" or a path to the real archive or folder)."""
    spec = get_dataset(dataset)
    check_scale(scale)
    if str(source) == "synthetic":
        from thesislib.sources.synthetic import generate

        return generate(spec, scale, seed, progress=progress).check(spec.shape)
    path = Path(source).expanduser()
    if not path.exists():
        raise ThesisError(f"--source {path} does not exist: give {spec.real_source}, or 'synthetic'")
    data = _read_real(dataset, path, seed, progress)
    missing = [split for split in SPLITS if split not in data.splits]
    if missing:
        raise ThesisError(f"{path} has no {missing[0]} split: give {spec.real_source}")
    return subsample(data.check(spec.shape), scale, seed)


def _read_real(dataset: str, path: Path, seed: int, progress: bool) -> SourceData:
    if dataset == "cifar10":
        from thesislib.sources.cifar10 import read_cifar10

        return read_cifar10(path)
    if dataset == "tinyimagenet":
        from thesislib.sources.tinyimagenet import read_tinyimagenet

        return read_tinyimagenet(path, progress=progress)
    from thesislib.sources.imagefolder import read_imagefolder

    return read_imagefolder(path, dataset, size=get_dataset(dataset).size, seed=seed, progress=progress)
