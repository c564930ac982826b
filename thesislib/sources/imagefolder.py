"""Any ImageFolder tree (one sub-folder per class) as the ``masks`` dataset: centre-cropped and resized.

With ``train/`` and ``val/`` sub-folders those are the splits; otherwise a seeded 80/20 split per class.
Hidden folders and files (``.ipynb_checkpoints``, ``.DS_Store``) are skipped. Each image is read as a regular
file of at most :data:`FILE_LIMIT` bytes, decoded only if its header announces at most
:data:`~thesislib.sources.images.MAX_PIXELS` pixels, and only if ``--scale`` keeps it.
"""

import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from thesislib.errors import ThesisError
from thesislib.sources import LazySplit, check_class_names
from thesislib.sources.files import MB, read_regular, tree_files
from thesislib.sources.images import centre_square, decode_rgb

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2"}
VAL_SHARE = 0.2
FILE_LIMIT = 256 * MB   # an uncompressed 50-megapixel TIFF is 150 MB
FIX = "replace or remove the file"


def class_files(root: Path) -> dict:
    """Class name -> sorted image paths, for every non-hidden sub-folder of ``root`` holding images."""
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = [p for p in tree_files(folder) if p.suffix.lower() in EXTENSIONS]
        if files:
            classes[folder.name] = files
    if not classes:
        raise ThesisError(f"{root} has no class sub-folders with images ({', '.join(sorted(EXTENSIONS))}): "
                          "give a folder laid out as <class>/<image>")
    check_class_names(list(classes), f"{root} (its sub-folder names)")
    return classes


def _load(paths: list, size: int, progress: bool, desc: str) -> np.ndarray:
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    with tempfile.TemporaryFile() as sink:
        for i, path in enumerate(tqdm(paths, desc=desc, disable=None if progress else True, unit="img")):
            image = decode_rgb(read_regular(path, FILE_LIMIT, FIX), path, sink=sink)
            images[i] = centre_square(image, size)
    return images


def _split_items(root: Path, seed: int) -> tuple:
    """Class names and the (path, label) items of each split."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, val = class_files(root / "train"), class_files(root / "val")
        classes = sorted(set(train) | set(val))
        return classes, {"train": [(p, classes.index(c)) for c, ps in train.items() for p in ps],
                         "val": [(p, classes.index(c)) for c, ps in val.items() for p in ps]}
    files, rng = class_files(root), np.random.default_rng([seed, 11])
    classes, items = list(files), {"train": [], "val": []}
    for label, name in enumerate(classes):
        is_val = rng.permutation(len(files[name])) < round(len(files[name]) * VAL_SHARE)
        for path, to_val in zip(files[name], is_val):
            items["val" if to_val else "train"].append((path, label))
    return classes, items


def _lazy(items: list, size: int, progress: bool, desc: str) -> LazySplit:
    paths = [path for path, _ in items]
    return LazySplit(np.array([label for _, label in items], dtype=np.int64),
                     lambda keep: _load([paths[i] for i in keep], size, progress, desc))


def read_imagefolder(path, dataset: str, size: int, seed: int = 0, progress: bool = False) -> tuple:
    """(class names, {"train": LazySplit, "val": LazySplit}) of the ImageFolder tree at ``path``."""
    root = Path(path)
    if not root.is_dir():
        raise ThesisError(f"{root} is not a folder: give an ImageFolder tree (one sub-folder per class)")
    classes, items = _split_items(root, seed)
    return classes, {split: _lazy(split_items, size, progress, f"{dataset} {split}")
                     for split, split_items in items.items()}
