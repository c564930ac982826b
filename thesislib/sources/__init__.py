"""Where images come from: the real archives of the contract, or photo-derived synthetic stand-ins.

:func:`load_source` returns a :class:`SourceData`: class names and, per split, uint8 images (N, H, W, 3)
with int64 labels, already resized and cropped to the dataset's shape (the thesis's section 2.1:
preprocessing happens once, at conversion).

A real source is read in two steps: its reader lists each split's labels and a ``decode(indices)`` for the
images (a :class:`LazySplit`), then only the samples ``--scale`` keeps are decoded. Class names from a source
become folder names of the image-file stores, so :func:`check_class_names` refuses any that is not one plain,
unique folder name, for every source.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from thesislib.datasets import SPLITS, check_scale, check_seed, get_dataset
from thesislib.errors import ThesisError
from thesislib.sources.files import is_plain_name

MAX_NAME_CHARS = 100   # a class name; its store folder is "NNN_<name>", within any file system's 255 bytes


@dataclass
class SourceData:
    dataset: str
    classes: list
    splits: dict       # split -> (images uint8 (N, H, W, 3), labels int64 (N,))
    origin: str        # "synthetic" or the real archive's path

    def check(self, shape) -> "SourceData":
        """Raise if a class name is unsafe, a split's images are not ``shape`` uint8 or a label is out of range."""
        check_class_names(self.classes, self.origin)
        for split, (images, labels) in self.splits.items():
            if images.dtype != np.uint8 or images.shape[1:] != tuple(shape) or len(images) != len(labels):
                raise ThesisError(f"{self.origin}: split {split} has images {images.shape} {images.dtype}, "
                                  f"expected (N, {', '.join(map(str, shape))}) uint8")
            if len(labels) and not 0 <= labels.min() <= labels.max() < len(self.classes):
                raise ThesisError(f"{self.origin}: split {split} has labels outside 0..{len(self.classes) - 1}")
        return self


@dataclass
class LazySplit:
    labels: np.ndarray                       # int64 (N,)
    decode: Callable[[np.ndarray], np.ndarray]  # sorted indices -> uint8 images (len(indices), H, W, 3)


def check_class_names(names, where) -> list:
    """``names`` as a list of str if each is one plain folder name (see module doc); else name the bad one."""
    fix = "rename the class (letters, digits, '-', '_', spaces; no '/', '\\', '..' or control characters)"
    seen = set()
    for name in names:
        if not isinstance(name, str) or not is_plain_name(name) or ".." in name:
            raise ThesisError(f"{where}: class name {name!r} is not a plain folder name: {fix}")
        if len(name) > MAX_NAME_CHARS:
            raise ThesisError(f"{where}: class name {name[:20]!r}... has {len(name)} characters, more than "
                              f"{MAX_NAME_CHARS}: {fix}")
        if name in seen:
            raise ThesisError(f"{where}: class name {name!r} appears twice: give each class its own name")
        seen.add(name)
    return list(names)


def kept_indices(counts: dict, scale: float, seed: int) -> dict:
    """Per split, the sorted indices of a seeded random ``scale`` fraction (at least one sample)."""
    if scale >= 1:
        return {split: np.arange(count) for split, count in counts.items()}
    rng = np.random.default_rng([seed, 7])
    return {split: np.sort(rng.choice(count, size=min(count, max(1, round(count * scale))), replace=False))
            for split, count in counts.items()}


def load_source(dataset: str, source="synthetic", scale: float = 1.0, seed: int = 0,
                progress: bool = False) -> SourceData:
    """Dataset ``dataset`` from ``source`` ("synthetic" or a path to the real archive or folder)."""
    spec = get_dataset(dataset)
    check_scale(scale)
    check_seed(seed)
    if str(source) == "synthetic":
        from thesislib.sources.synthetic import generate

        return generate(spec, scale, seed, progress=progress).check(spec.shape)
    path = Path(source).expanduser()
    if not path.exists():
        raise ThesisError(f"--source {path} does not exist: give {spec.real_source}, or 'synthetic'")
    classes, lazy = _read_real(dataset, path, seed, progress)
    missing = [split for split in SPLITS if split not in lazy]
    if missing:
        raise ThesisError(f"{path} has no {missing[0]} split: give {spec.real_source}")
    keep = kept_indices({split: len(lazy[split].labels) for split in SPLITS}, scale, seed)
    splits = {split: (lazy[split].decode(keep[split]), lazy[split].labels[keep[split]]) for split in SPLITS}
    return SourceData(dataset, classes, splits, str(path)).check(spec.shape)


def _read_real(dataset: str, path: Path, seed: int, progress: bool) -> tuple:
    """(checked class names, {split: LazySplit}) of the real source at ``path``."""
    if dataset == "cifar10":
        from thesislib.sources.cifar10 import read_cifar10

        return read_cifar10(path)
    if dataset == "tinyimagenet":
        from thesislib.sources.tinyimagenet import read_tinyimagenet

        return read_tinyimagenet(path, progress=progress)
    from thesislib.sources.imagefolder import read_imagefolder

    return read_imagefolder(path, dataset, size=get_dataset(dataset).size, seed=seed, progress=progress)
