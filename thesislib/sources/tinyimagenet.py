"""The official Tiny ImageNet archive (``tiny-imagenet-200.zip``) or its extracted folder.

Classes are the WordNet ids of ``wnids.txt`` in sorted order (as ImageFolder would number them); train
images are ``train/<wnid>/images/<wnid>_<k>.JPEG``, validation images ``val/images/val_<k>.JPEG`` labelled by
``val/val_annotations.txt``. Some of its JPEGs are grayscale: they are converted to RGB.
"""

import io
import re
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from thesislib.errors import ThesisError
from thesislib.sources import SourceData
from thesislib.sources.imagefolder import open_rgb

ROOT = "tiny-imagenet-200"
FIX = "download the official tiny-imagenet-200.zip again (http://cs231n.stanford.edu/tiny-imagenet-200.zip)"


class _Tree:
    """Files of the dataset, from the zip or the folder, by their path below ``tiny-imagenet-200/``."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            base = path / ROOT if (path / ROOT).is_dir() else path
            self.names = sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
            self._read = lambda name: (base / name).read_bytes()
        else:
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise ThesisError(f"{path} is not a readable zip (truncated or corrupt: {exc}): {FIX}") from exc
            prefix = ROOT + "/"
            self.names = sorted(n[len(prefix):] for n in self._zip.namelist() if n.startswith(prefix))
            self._read = lambda name: self._zip.read(prefix + name)

    def read(self, name: str) -> bytes:
        try:
            return self._read(name)
        except KeyError as exc:
            raise ThesisError(f"{self.path} lacks {ROOT}/{name}: {FIX}") from exc
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ThesisError(f"{self.path}: {name} is unreadable (truncated or corrupt: {exc}): {FIX}") from exc


def _number(name: str) -> int:
    return int(re.findall(r"(\d+)\.JPEG$", name, re.IGNORECASE)[0])


def _items(tree: _Tree) -> tuple:
    wnids = sorted(tree.read("wnids.txt").decode().split())
    label = {wnid: i for i, wnid in enumerate(wnids)}
    train = sorted(((n, label[n.split("/")[1]]) for n in tree.names
                    if n.startswith("train/") and n.upper().endswith(".JPEG")),
                   key=lambda item: (item[1], _number(item[0])))
    rows = [line.split("\t") for line in tree.read("val/val_annotations.txt").decode().splitlines() if line]
    val = sorted(((f"val/images/{row[0]}", label[row[1]]) for row in rows), key=lambda i: _number(i[0]))
    return wnids, {"train": train, "val": val}


def _decode(tree: _Tree, items: list, progress: bool, desc: str) -> tuple:
    images = np.empty((len(items), 64, 64, 3), dtype=np.uint8)
    for i, (name, _) in enumerate(tqdm(items, desc=desc, disable=not progress, unit="img")):
        image = open_rgb(io.BytesIO(tree.read(name)), f"{tree.path}:{name}")
        if image.size != (64, 64):
            image = image.resize((64, 64))
        images[i] = np.asarray(image)
    return images, np.array([label for _, label in items], dtype=np.int64)


def read_tinyimagenet(path, progress: bool = False) -> SourceData:
    tree = _Tree(Path(path))
    wnids, items = _items(tree)
    splits = {split: _decode(tree, split_items, progress, f"tinyimagenet {split}")
              for split, split_items in items.items()}
    return SourceData("tinyimagenet", wnids, splits, str(path))
