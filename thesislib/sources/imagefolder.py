"""Any ImageFolder tree (one sub-folder per class) as the ``masks`` dataset: resized and centre-cropped.

With ``train/`` and ``val/`` sub-folders those are the splits; otherwise a seeded 80/20 split per class.
"""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from thesislib.errors import ThesisError
from thesislib.sources import SourceData

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2"}
VAL_SHARE = 0.2


def open_rgb(file, name) -> Image.Image:
    """An image file (path or file object) as RGB; a ThesisError naming ``name`` if it is corrupt."""
    try:
        with Image.open(file) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ThesisError(f"corrupt or unreadable image {name} ({exc}): replace or remove the file") from exc


def resize_and_crop(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side to ``size`` (Lanczos), then the centre ``size`` x ``size`` square, as uint8 HWC."""
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    left, top = (width - size) // 2, (height - size) // 2
    resized = image.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(resized.crop((left, top, left + size, top + size)))


def class_files(root: Path) -> dict:
    """Class name -> sorted image paths, for every sub-folder of ``root`` holding images."""
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)
        if files:
            classes[folder.name] = files
    if not classes:
        raise ThesisError(f"{root} has no class sub-folders with images ({', '.join(sorted(EXTENSIONS))}): "
                          "give a folder laid out as <class>/<image>")
    return classes


def _load(items: list, size: int, progress: bool, desc: str) -> tuple:
    images = np.empty((len(items), size, size, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(tqdm(items, desc=desc, disable=not progress, unit="img")):
        images[i] = resize_and_crop(open_rgb(path, path), size)
    return images, np.array([label for _, label in items], dtype=np.int64)


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


def read_imagefolder(path, dataset: str, size: int, seed: int = 0, progress: bool = False) -> SourceData:
    root = Path(path)
    if not root.is_dir():
        raise ThesisError(f"{root} is not a folder: give an ImageFolder tree (one sub-folder per class)")
    classes, items = _split_items(root, seed)
    splits = {split: _load(split_items, size, progress, f"{dataset} {split}")
              for split, split_items in items.items()}
    return SourceData(dataset, classes, splits, str(root))
