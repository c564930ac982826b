"""``manifest.json``: what a store holds, written last, so a store with a manifest is complete.

Like FFCV's file header, the manifest carries a format version that is checked when a store is opened.
"""

import hashlib
import json
import os
import time
from pathlib import Path

from thesislib import __version__, remote
from thesislib.atomic import write_text
from thesislib.errors import ThesisError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def bytes_on_disk(path: Path) -> int:
    """Bytes the files under ``path`` occupy on disk (allocated blocks), not counting the manifest."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            if name != MANIFEST:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def file_bytes(path: Path) -> int:
    """Sum of the files' apparent sizes under ``path``, not counting the manifest."""
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, files in os.walk(path) for name in files if name != MANIFEST)


def array_checksum(array) -> str:
    """SHA-256 of an array's bytes in C order, fed in slices so a memory map is not read twice."""
    digest = hashlib.sha256()
    for start in range(0, len(array), 1024):
        digest.update(memoryview(array[start:start + 1024].tobytes()))
    return digest.hexdigest()


def write_manifest(store_dir: Path, fields: dict) -> dict:
    """Write the manifest (the last file of a store) atomically and return it."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "thesislib_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **fields,
        "bytes_on_disk": bytes_on_disk(store_dir),
        "bytes_apparent": file_bytes(store_dir),
    }
    write_text(store_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def read_manifest(store_dir: Path, dataset: str = None, store: str = None) -> dict:
    """The manifest of ``store_dir``, checked: readable JSON, known format version, the expected names."""
    path = remote.join(store_dir, MANIFEST)
    manifest = remote.read_json(path, missing_fix=f"delete {store_dir} and run prepare again")
    if not isinstance(manifest, dict):
        raise ThesisError(f"{path} holds a JSON {type(manifest).__name__}, not an object: delete {store_dir} "
                          "and run prepare again")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ThesisError(f"{path} has format version {manifest.get('format_version')}, this thesislib reads "
                          f"{FORMAT_VERSION}: run prepare again with --force")
    for key, expected in (("dataset", dataset), ("store", store)):
        if expected is not None and manifest.get(key) != expected:
            raise ThesisError(f"{path} says {key}={manifest.get(key)!r}, expected {expected!r}: "
                              "the folder was moved or renamed; run prepare again with --force")
    return manifest
