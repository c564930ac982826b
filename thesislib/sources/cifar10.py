"""The official CIFAR-10 python archive (``cifar-10-python.tar.gz``) or its extracted folder.

Read as ``torchvision.datasets.CIFAR10`` reads it: the five ``data_batch_*`` pickles in order are the train
split, ``test_batch`` the validation split; rows of 3072 bytes reshaped to (3, 32, 32) and moved to HWC.
"""

import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from thesislib.errors import ThesisError
from thesislib.sources import SourceData

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
VAL_FILES = ["test_batch"]
META_FILE = "batches.meta"
FIX = "download the official cifar-10-python.tar.gz again (https://www.cs.toronto.edu/~kriz/cifar.html)"


def _unpickle(raw: bytes, name: str, origin: Path) -> dict:
    try:
        return pickle.loads(raw, encoding="latin1")
    except Exception as exc:  # a truncated pickle raises several kinds of error
        raise ThesisError(f"{origin}: {name} is truncated or corrupt ({exc}): {FIX}") from exc


def _read_members(path: Path) -> dict:
    """The archive's (or folder's) batch files as raw bytes, by base name."""
    wanted = TRAIN_FILES + VAL_FILES + [META_FILE]
    if path.is_dir():
        folder = path / FOLDER if (path / FOLDER).is_dir() else path
        missing = [name for name in wanted if not (folder / name).is_file()]
        if missing:
            raise ThesisError(f"{folder} lacks {', '.join(missing)}: {FIX}")
        return {name: (folder / name).read_bytes() for name in wanted}
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
            missing = [name for name in wanted if name not in members]
            if missing:
                raise ThesisError(f"{path} lacks {', '.join(missing)}: {FIX}")
            return {name: archive.extractfile(members[name]).read() for name in wanted}
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ThesisError(f"{path} is not a readable .tar.gz (truncated or corrupt: {exc}): {FIX}") from exc


def _images_and_labels(batches: list) -> tuple:
    data = np.vstack([batch["data"] for batch in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.concatenate([np.asarray(batch["labels"], dtype=np.int64) for batch in batches])
    return np.ascontiguousarray(data, dtype=np.uint8), labels


def read_cifar10(path) -> SourceData:
    path = Path(path)
    raw = _read_members(path)
    batches = {name: _unpickle(data, name, path) for name, data in raw.items()}
    classes = list(batches[META_FILE]["label_names"])
    splits = {"train": _images_and_labels([batches[name] for name in TRAIN_FILES]),
              "val": _images_and_labels([batches[name] for name in VAL_FILES])}
    return SourceData("cifar10", classes, splits, str(path))
