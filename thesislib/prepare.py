"""``prepare``: build a dataset into stores, each written under a temporary name and renamed when done.

A finished store has ``manifest.json`` (written last, inside the temporary folder, before the rename), so an
interrupted run never leaves a store that looks complete. Running ``prepare`` again skips the stores whose
manifest matches the request (dataset, source, scale, seed) and whose layout is the one its format writes
today, and (re)builds only the others. One ``prepare``
builds a store at a time (a lock per store; a second one waits, then skips what the first finished), the
leftovers of dead runs are removed, and a store that cannot fit on the disk is refused before it is written
(:mod:`thesislib.stores.building`).
"""

import errno
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from thesislib import remote
from thesislib.datasets import SPLITS, check_scale, get_dataset
from thesislib.errors import ThesisError
from thesislib.sources import SourceData, load_source
from thesislib.stores import file_sha256, format_of, get_store_spec, parse_store_list, store_path
from thesislib.stores.building import check_free_space, estimated_bytes, remove_stale, store_lock
from thesislib.stores.manifest import MANIFEST, array_checksum, read_manifest, write_manifest


def request_fields(dataset: str, source, scale: float, seed: int) -> dict:
    origin = "synthetic" if str(source) == "synthetic" else str(Path(source).expanduser().resolve())
    return {"dataset": dataset, "source": origin, "scale": scale, "seed": seed}


def is_current(path: Path, request: dict) -> bool:
    """True if ``path`` is a finished store built for exactly ``request`` in the layout its format writes
    today (a store written by an older thesislib in another layout is rebuilt)."""
    if not remote.exists(remote.join(path, MANIFEST)):
        return False
    try:
        manifest = read_manifest(path)
    except ThesisError:
        return False
    return all(manifest.get(key) == value for key, value in request.items()) and has_current_layout(manifest)


def has_current_layout(manifest: dict) -> bool:
    """True if the manifest's ``layout`` is what its store's format module describes today."""
    try:
        spec = get_store_spec(manifest["store"])
        shape = tuple(manifest["splits"][SPLITS[0]]["shape"])
    except (KeyError, TypeError, ThesisError):
        return False
    return manifest.get("layout") == format_of(spec.kind).layout(spec, shape)


def prepare(dataset: str, source="synthetic", scale: float = 1.0, stores=("npy-uint8",), seed: int = 0,
            data_dir="data", force: bool = False, progress: bool = True) -> dict:
    """Build ``dataset`` into ``stores`` under ``data_dir``; return {store: path}. Skips finished stores."""
    get_dataset(dataset)
    check_scale(scale)
    names = parse_store_list(stores)
    request = request_fields(dataset, source, scale, seed)
    paths = {name: store_path(data_dir, dataset, name) for name in names}
    if remote.is_url(data_dir):
        remote.check_writable(data_dir)
    todo = [name for name in names if force or not is_current(paths[name], request)]
    if progress:
        for name in sorted(set(names) - set(todo)):
            tqdm.write(f"{dataset}/{name}: already prepared, skipped")
    if todo and remote.is_url(data_dir):
        upload_stores(dataset, source, scale, todo, seed, data_dir, progress)
    elif todo:
        data = load_source(dataset, source, scale, seed, progress=progress)
        checksums = source_checksums(data)
        for name in todo:
            with store_lock(paths[name]):  # one prepare per store at a time; a second one waits here
                if not force and is_current(paths[name], request):
                    tqdm.write(f"{dataset}/{name}: prepared by another run meanwhile, skipped")
                    continue
                build_store(paths[name], name, data, {**request, "source_checksums": checksums}, progress)
    return paths


def upload_stores(dataset, source, scale, names, seed, url, progress) -> None:
    """Build ``names`` in a local temporary folder (``$TMPDIR``), then upload each store to ``url`` file by
    file, its manifest last (see :func:`thesislib.remote.upload_folder`)."""
    with tempfile.TemporaryDirectory(prefix="thesislib-upload-") as tmp:
        built = prepare(dataset, source, scale, names, seed, tmp, force=True, progress=progress)
        for name, local in built.items():
            remote.upload_folder(local, store_path(url, dataset, name))
            if progress:
                tqdm.write(f"{dataset}/{name}: uploaded to {store_path(url, dataset, name)}")


def source_checksums(data: SourceData) -> dict:
    """SHA-256 of each split's source pixels and labels: equal in every store built from them."""
    return {split: {"pixels_sha256": array_checksum(images),
                    "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest()}
            for split, (images, labels) in data.splits.items()}


def build_store(final: Path, name: str, data: SourceData, fields: dict, progress: bool) -> Path:
    """Write store ``name`` into a temporary folder beside ``final``, then rename it into place (the caller
    holds the store's lock: :func:`thesislib.stores.building.store_lock`)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    check_free_space(final.parent, estimated_bytes(get_store_spec(name), data.splits), f"{data.dataset}/{name}")
    tmp = final.parent / f".{name}.tmp-{os.getpid()}"
    tmp.mkdir()
    try:
        start = time.perf_counter()
        written = write_store(tmp, name, data, progress)
        write_manifest(tmp, {**fields, **written, "conversion_s": round(time.perf_counter() - start, 3)})
        replace_folder(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise ThesisError(f"disk full while writing {final} ({exc.strerror}): free space or choose "
                              "another --data-dir; nothing half-written was kept") from exc
        if isinstance(exc, OSError):
            raise ThesisError(f"cannot write {final} ({exc}): check the folder's permissions") from exc
        raise
    return final


def replace_folder(tmp: Path, final: Path) -> None:
    """Put ``tmp`` at ``final``; an older ``final`` is moved aside first and removed after."""
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def write_store(out: Path, name: str, data: SourceData, progress: bool) -> dict:
    """Write every split of ``data`` into the empty folder ``out`` with the store's format module; return
    the manifest's store fields (with the SHA-256 of every data file, for ``verify``)."""
    spec = get_store_spec(name)
    fmt = format_of(spec.kind)
    total = sum(len(labels) for _, labels in data.splits.values())
    bar = tqdm(total=total, desc=f"{data.dataset}/{name}", unit="img", disable=not progress)
    splits, checksums = {}, {}
    with bar:
        for split in SPLITS:
            images, labels = data.splits[split]
            checksums[split] = fmt.write_split(out, spec, split, images, labels, data.classes, bar)
            splits[split] = {"count": int(len(labels)), "shape": list(images.shape), "dtype": spec.dtype}
    return {"store": name, "kind": spec.kind, "dtype": spec.dtype, "classes": list(data.classes),
            "num_classes": len(data.classes), "splits": splits, "checksums": checksums,
            "layout": fmt.layout(spec, data.splits[SPLITS[0]][0].shape),
            "files_sha256": files_sha256(out, fmt.data_files(out), f"{data.dataset}/{name}", progress)}


def files_sha256(root: Path, paths: list, what: str, progress: bool) -> dict:
    """{path relative to ``root``: SHA-256} of the data files ``paths``, with a progress bar in bytes."""
    sizes = [path.stat().st_size for path in paths]
    with tqdm(total=sum(sizes), desc=f"{what} checksums", unit="B", unit_scale=True,
              disable=not progress) as bar:
        return {str(path.relative_to(root)): file_sha256(path, bar) for path in paths}
