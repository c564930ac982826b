"""The official CIFAR-10 python archive (``cifar-10-python.tar.gz``) or its extracted folder.

Read as ``torchvision.datasets.CIFAR10`` reads it: the five ``data_batch_*`` pickles in order are the train
split, ``test_batch`` the validation split; rows of 3072 bytes reshaped to (3, 32, 32) and moved to HWC.

The batches are Python-2 pickles, so they are loaded with :class:`BatchUnpickler`, which can build only what the
official files hold (dicts, lists, byte strings, ints and NumPy arrays): a pickle that names any other callable
(``os.system``, ``builtins.eval``, ...) is refused before anything of it runs. Limits: at most
:data:`MAX_MEMBERS` archive entries, :data:`BATCH_LIMIT` per batch (the official ones are 31 MB) and
:data:`META_LIMIT` for ``batches.meta``.
"""

import codecs
import io
import pickle
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from thesislib.errors import ThesisError
from thesislib.sources import LazySplit, check_class_names
from thesislib.sources.files import MB, check_regular, check_relative, check_size, inside, read_regular

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
VAL_FILES = ["test_batch"]
META_FILE = "batches.meta"
FIX = "download the official cifar-10-python.tar.gz again (https://www.cs.toronto.edu/~kriz/cifar.html)"
BATCH_LIMIT, META_LIMIT, MAX_MEMBERS = 64 * MB, 1 * MB, 100
ROW_BYTES, NUM_CLASSES = 3 * 32 * 32, 10

# What the official pickles reference (NumPy 2 names the first one numpy._core.multiarray when it writes).
ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
           ("numpy", "ndarray"), ("numpy", "dtype")}


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 writes byte strings into protocol-2 pickles, and only that."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the names in :data:`ALLOWED` (plus latin-1 ``_codecs.encode``)."""

    def __init__(self, file, where: str):
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise ThesisError(f"{self.where} refers to {module}.{name}, which no official CIFAR-10 file contains "
                          f"(a crafted file would run it): refused; {FIX}")


def unpickle(raw: bytes, where: str) -> dict:
    """One batch or meta pickle as a dict with str keys; one line if it is crafted, truncated or no dict."""
    try:
        content = BatchUnpickler(io.BytesIO(raw), where).load()
    except ThesisError:
        raise
    except Exception as exc:  # a truncated or damaged pickle raises many kinds of error
        raise ThesisError(f"{where} is truncated or corrupt ({type(exc).__name__}: {exc}): {FIX}") from exc
    if not isinstance(content, dict):
        raise ThesisError(f"{where} holds a {type(content).__name__}, not the dict of the official format: {FIX}")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in content.items()}


def _from_folder(path: Path) -> dict:
    folder = path / FOLDER if (path / FOLDER).is_dir() else path
    missing = [name for name in _wanted() if not (folder / name).exists()]
    if missing:
        raise ThesisError(f"{folder} lacks {', '.join(missing)}: {FIX}")
    return {name: read_regular(inside(folder, name, folder, FIX), _limit(name), FIX) for name in _wanted()}


def _from_archive(path: Path) -> dict:
    try:
        with tarfile.open(check_regular(path, FIX), "r:gz") as archive:
            members = _wanted_members(archive, path)
            return {name: archive.extractfile(member).read() for name, member in members.items()}
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ThesisError(f"{path} is not a readable .tar.gz (truncated or corrupt: {exc}): {FIX}") from exc


def _wanted_members(archive: tarfile.TarFile, path: Path) -> dict:
    """The archive entries of the batch files by base name, each checked (path, kind, size) before reading."""
    members = {}
    for count, member in enumerate(archive, start=1):
        if count > MAX_MEMBERS:
            raise ThesisError(f"{path} has more than {MAX_MEMBERS} entries (the official archive has 8): {FIX}")
        name = PurePosixPath(member.name).name
        if name not in _wanted():
            continue
        check_relative(member.name, path, FIX)
        if name in members:
            raise ThesisError(f"{path} holds {name} twice ({members[name].name}, {member.name}): {FIX}")
        if not member.isfile():
            raise ThesisError(f"{path}: {member.name} is not a regular file (a link or device entry): {FIX}")
        check_size(member.size, _limit(name), f"{path}:{member.name}", FIX)
        members[name] = member
    missing = [name for name in _wanted() if name not in members]
    if missing:
        raise ThesisError(f"{path} lacks {', '.join(missing)}: {FIX}")
    return members


def _wanted() -> list:
    return TRAIN_FILES + VAL_FILES + [META_FILE]


def _limit(name: str) -> int:
    return META_LIMIT if name == META_FILE else BATCH_LIMIT


def batch_arrays(batch: dict, where: str) -> tuple:
    """(rows uint8 (N, 3072), labels int64 (N,)) of one batch, checked against the official format."""
    data, labels = batch.get("data"), batch.get("labels")
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()   # a batch re-saved with NumPy labels
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW_BYTES:
        described = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ThesisError(f"{where}: 'data' is {described}, not uint8 rows of {ROW_BYTES} bytes: {FIX}")
    if not isinstance(labels, list) or not all(type(label) is int for label in labels):
        raise ThesisError(f"{where}: 'labels' is not a list of whole numbers: {FIX}")
    if len(labels) != len(data):
        raise ThesisError(f"{where} has {len(labels)} labels for {len(data)} images: {FIX}")
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
        raise ThesisError(f"{where} has labels outside 0..{NUM_CLASSES - 1}: {FIX}")
    return data, labels


def class_names(meta: dict, where: str) -> list:
    """The ten ``label_names`` of ``batches.meta`` as str (the official ones are byte strings)."""
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise ThesisError(f"{where}: 'label_names' is not a list of {NUM_CLASSES} names: {FIX}")
    try:
        names = [name.decode("utf-8") if isinstance(name, bytes) else name for name in names]
    except UnicodeDecodeError as exc:
        raise ThesisError(f"{where}: a label name is not UTF-8 text ({exc}): {FIX}") from exc
    return check_class_names(names, where)


def lazy_split(batches: list) -> LazySplit:
    """The split of the concatenated ``batches``; decoding reshapes only the rows asked for."""
    rows = np.concatenate([data for data, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return LazySplit(labels, lambda keep: np.ascontiguousarray(rows[keep].reshape(-1, 3, 32, 32)
                                                               .transpose(0, 2, 3, 1)))


def read_cifar10(path) -> tuple:
    """(class names, {"train": LazySplit, "val": LazySplit}) of the archive or folder at ``path``."""
    path = Path(path)
    raw = _from_folder(path) if path.is_dir() else _from_archive(path)
    where = {name: f"{path}:{name}" for name in raw}
    contents = {name: unpickle(data, where[name]) for name, data in raw.items()}
    classes = class_names(contents[META_FILE], where[META_FILE])
    batches = {name: batch_arrays(contents[name], where[name]) for name in TRAIN_FILES + VAL_FILES}
    return classes, {"train": lazy_split([batches[name] for name in TRAIN_FILES]),
                     "val": lazy_split([batches[name] for name in VAL_FILES])}
