"""The official Tiny ImageNet archive (``tiny-imagenet-200.zip``) or its extracted folder.

Classes are the WordNet ids of ``wnids.txt`` in sorted order (as ImageFolder would number them); train
images are ``train/<wnid>/images/<wnid>_<k>.JPEG``, validation images ``val/images/val_<k>.JPEG`` labelled by
``val/val_annotations.txt``. Some of its JPEGs are grayscale: they are converted to RGB. Every image of the
official archive is 64 x 64; another size is refused, not resized.

Nothing in the source is trusted: a file name in ``val_annotations.txt`` must be a plain name inside
``val/images`` (links out of the extracted folder are refused too), every wnid must be listed in
``wnids.txt``, and sizes are bounded: :data:`IMAGE_LIMIT` per JPEG (the official ones are 1-3 kB),
:data:`TEXT_LIMIT` per text file and :data:`MAX_ENTRIES` zip entries (the official zip has about 120,000).
"""

import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from thesislib.errors import ThesisError
from thesislib.sources import LazySplit, check_class_names
from thesislib.sources.files import MB, check_regular, check_size, inside, is_plain_name, read_regular, tree_files
from thesislib.sources.images import decode_rgb

ROOT = "tiny-imagenet-200"
SIZE = 64
FIX = "download the official tiny-imagenet-200.zip again (http://cs231n.stanford.edu/tiny-imagenet-200.zip)"
IMAGE_LIMIT, TEXT_LIMIT, MAX_ENTRIES = 1 * MB, 16 * MB, 250_000


class _Tree:
    """Files of the dataset, from the zip or the folder, by their path below ``tiny-imagenet-200/``."""

    def __init__(self, path: Path):
        self.path, self.base = path, None
        if path.is_dir():
            self.base = path / ROOT if (path / ROOT).is_dir() else path
            self.names = [p.relative_to(self.base).as_posix() for p in tree_files(self.base)]
            return
        try:
            self._zip = zipfile.ZipFile(check_regular(path, FIX))
        except (zipfile.BadZipFile, OSError) as exc:
            raise ThesisError(f"{path} is not a readable zip (truncated or corrupt: {exc}): {FIX}") from exc
        infos = self._zip.infolist()
        if len(infos) > MAX_ENTRIES:
            raise ThesisError(f"{path} has {len(infos):,} entries, more than the {MAX_ENTRIES:,} allowed: {FIX}")
        prefix = ROOT + "/"
        self._infos = {i.filename[len(prefix):]: i for i in infos if i.filename.startswith(prefix)}
        self.names = sorted(self._infos)

    def read(self, name: str, limit: int) -> bytes:
        """The bytes of ``name`` (at most ``limit``); one line if missing, too large or unreadable."""
        if self.base is not None:
            file = inside(self.base, name, self.path, FIX)
            if not file.exists():
                raise ThesisError(f"{self.path} lacks {name}: {FIX}")
            return read_regular(file, limit, FIX)
        info = self._infos.get(name)
        if info is None:
            raise ThesisError(f"{self.path} lacks {ROOT}/{name}: {FIX}")
        check_size(info.file_size, limit, f"{self.path}:{info.filename}", FIX)
        try:
            return self._zip.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            raise ThesisError(f"{self.path}: {name} is unreadable (truncated or corrupt: {exc}): {FIX}") from exc

    def text(self, name: str) -> str:
        try:
            return self.read(name, TEXT_LIMIT).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ThesisError(f"{self.path}: {name} is not UTF-8 text ({exc}): {FIX}") from exc


def _number(name: str, where) -> int:
    match = re.search(r"(\d+)\.JPEG$", name, re.IGNORECASE)
    if match is None:
        raise ThesisError(f"{where}: {name} is not named like the official images (<name>_<k>.JPEG): {FIX}")
    return int(match.group(1))


def _train_items(tree: _Tree, label: dict) -> list:
    """(name, label) of each train image, in class then number order."""
    items = []
    for name in tree.names:
        if not (name.startswith("train/") and name.upper().endswith(".JPEG")):
            continue
        parts = name.split("/")
        if len(parts) != 4 or parts[2] != "images" or parts[1] not in label:
            raise ThesisError(f"{tree.path}: {name} is not train/<wnid>/images/<file> with a wnid of "
                              f"wnids.txt: {FIX}")
        items.append((name, label[parts[1]]))
    return sorted(items, key=lambda item: (item[1], _number(item[0], tree.path)))


def _val_items(tree: _Tree, label: dict) -> list:
    """(name, label) of each validation image listed in val_annotations.txt, in number order."""
    where, items, seen = f"{tree.path}:val/val_annotations.txt", [], set()
    for number, line in enumerate(tree.text("val/val_annotations.txt").splitlines(), start=1):
        if not line.strip():
            continue
        row = line.split("\t")
        if len(row) < 2:
            raise ThesisError(f"{where}: line {number} has no tab-separated file name and wnid: {FIX}")
        file, wnid = row[0], row[1]
        if not is_plain_name(file) or file in seen:
            raise ThesisError(f"{where}: line {number} names {file!r}, not a new plain file name inside "
                              f"val/images (a path out of the source is refused): {FIX}")
        if wnid not in label:
            raise ThesisError(f"{where}: line {number} has wnid {wnid!r}, which wnids.txt does not list: {FIX}")
        seen.add(file)
        items.append((f"val/images/{file}", label[wnid]))
    if not items:
        raise ThesisError(f"{where} lists no images: {FIX}")
    return sorted(items, key=lambda item: _number(item[0], where))


def _decode(tree: _Tree, names: list, progress: bool, desc: str) -> np.ndarray:
    images = np.empty((len(names), SIZE, SIZE, 3), dtype=np.uint8)
    with tempfile.TemporaryFile() as sink:
        for i, name in enumerate(tqdm(names, desc=desc, disable=None if progress else True, unit="img")):
            data = tree.read(name, IMAGE_LIMIT)
            images[i] = np.asarray(decode_rgb(data, f"{tree.path}:{name}", SIZE * SIZE, (SIZE, SIZE), sink))
    return images


def _lazy(tree: _Tree, items: list, progress: bool, desc: str) -> LazySplit:
    names = [name for name, _ in items]
    return LazySplit(np.array([label for _, label in items], dtype=np.int64),
                     lambda keep: _decode(tree, [names[i] for i in keep], progress, desc))


def read_tinyimagenet(path, progress: bool = False) -> tuple:
    """(sorted wnids, {"train": LazySplit, "val": LazySplit}) of the archive or folder at ``path``."""
    tree = _Tree(Path(path))
    words = tree.text("wnids.txt").split()
    wnids = check_class_names(sorted(words), f"{tree.path}:wnids.txt")
    label = {wnid: i for i, wnid in enumerate(wnids)}
    items = {"train": _train_items(tree, label), "val": _val_items(tree, label)}
    return wnids, {split: _lazy(tree, split_items, progress, f"tinyimagenet {split}")
                   for split, split_items in items.items()}
