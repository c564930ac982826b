"""What is checked when a store is opened, so that a damaged store fails in one line instead of training on
wrong data: the manifest's schema, the labels' range, files that the manifest lists but the folder lacks
(a deleted Zarr chunk reads as zeros otherwise) and special files (a FIFO would block the reader forever).

Each check is cheap: the manifest is small, labels are one int64 per sample, and the folder is listed once
(``os.scandir`` reports a file's type without a ``stat`` call).
"""

import numbers
import os
from pathlib import Path

import numpy as np

from thesislib.errors import ThesisError

FIX = "delete its store folder and run `python -m thesislib prepare` again (or `prepare --force`)"
SPLIT_NAMES = ("train", "val")


def bad_manifest(path, problem: str) -> ThesisError:
    return ThesisError(f"{path} {problem}: the manifest is damaged; {FIX}")


def check_manifest_schema(path, manifest) -> dict:
    """``manifest`` if it has the fields every reader relies on, with the right types; else one
    ThesisError naming the first bad field (``path``: the manifest file)."""
    if not isinstance(manifest, dict):
        raise bad_manifest(path, f"holds a JSON {type(manifest).__name__}, not an object")
    for key, kind in (("splits", dict), ("classes", list)):
        if not isinstance(manifest.get(key), kind):
            raise bad_manifest(path, f"lacks {key!r} (a JSON {'object' if kind is dict else 'list'})")
    classes = manifest["classes"]
    if not classes or not all(isinstance(name, str) for name in classes):
        raise bad_manifest(path, "has 'classes' that are not a non-empty list of names")
    if manifest.get("num_classes", len(classes)) != len(classes):
        raise bad_manifest(path, f"says num_classes={manifest['num_classes']!r} but lists {len(classes)} classes")
    scale = manifest.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 < scale <= 1:
        raise bad_manifest(path, f"has scale {scale!r}, not a number in (0, 1]")
    for split in SPLIT_NAMES:
        check_split_entry(path, split, manifest["splits"].get(split))
    return manifest


def is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_split_entry(path, split: str, entry) -> None:
    if not isinstance(entry, dict):
        raise bad_manifest(path, f"lacks splits.{split}")
    count, shape = entry.get("count"), entry.get("shape")
    if not is_count(count):
        raise bad_manifest(path, f"has splits.{split}.count {count!r}, not a whole number >= 0")
    if not (isinstance(shape, list) and len(shape) == 4 and all(is_count(n) for n in shape) and shape[3] == 3):
        raise bad_manifest(path, f"has splits.{split}.shape {shape!r}, not [count, height, width, 3]")
    if shape[0] != count:
        raise bad_manifest(path, f"says splits.{split}.count={count} but its shape holds {shape[0]} images")


def check_labels(path, labels, num_classes: int) -> np.ndarray:
    """``labels`` if every one is a class index in [0, ``num_classes``); else a ThesisError naming the file
    (``path``) and the first bad label (a label out of range would index past the model's outputs)."""
    labels = np.asarray(labels)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise ThesisError(f"{path} holds label {labels[bad[0]]} at sample {bad[0]}, outside the store's "
                          f"{num_classes} classes (0..{num_classes - 1}): the store is damaged; {FIX}")
    return labels


def check_regular_files(store_dir) -> None:
    """A ThesisError naming the first entry under ``store_dir`` that is neither a folder nor a regular file
    (a FIFO, socket or device: opening it would block or read endless data)."""
    for entry in scan(Path(store_dir)):
        if not entry.is_file() and not entry.is_dir():
            raise ThesisError(f"{entry.path} is not a regular file (a FIFO, socket, device or dangling link "
                              f"blocks or breaks reading): remove it, or {FIX}")


def scan(folder: Path):
    """Every entry under ``folder`` (folders first, then what they hold), by ``os.scandir``."""
    with os.scandir(folder) as entries:
        entries = list(entries)
    for entry in entries:
        yield entry
        if entry.is_dir(follow_symlinks=False):
            yield from scan(Path(entry.path))


def missing_listed_files(store, prefix: str):
    """A ThesisError (to raise) naming the first data file under ``prefix`` (relative to the store's
    folder) that the manifest's per-file checksums list but the folder lacks; None if none is missing. The
    folder is listed once. A store prepared before per-file checksums has no list: nothing to compare
    (``verify`` asks to prepare it again)."""
    from thesislib import remote

    listed = [name for name in store.manifest.get("files_sha256") or () if name.startswith(prefix)]
    if not listed or remote.is_url(store.path):  # a remote listing costs a request per page: `verify` checks it
        return None
    present = {str(path.relative_to(store.path)) for path in store.data_files()}
    missing = sorted(set(listed) - present)
    if not missing:
        return None
    return ThesisError(f"{store.path / missing[0]} is missing ({len(missing)} of the {len(listed)} files "
                       f"under {prefix} its manifest lists; a missing chunk would read as zeros): {FIX}")
