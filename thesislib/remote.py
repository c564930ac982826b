"""Stores on central storage: the one place a store's path or URL is opened, and the local copy of one.

Like WebDataset's ``gopen``, a table of URL schemes (:data:`SCHEMES`) says what each kind of location
can do; everything above it (stores, loaders, ``prepare``, ``bench --cache``) calls :func:`filesystem`,
:func:`open_file`, :func:`join`, :func:`exists`, :func:`read_json` and never opens a store path itself, so
local folders, HTTP servers and S3 buckets share one code path. fsspec does the work: ``http(s)://``
through aiohttp, ``s3://`` through s3fs, whose endpoint and credentials come from the usual settings
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, or fsspec's config).

Every failure of the transport (unreachable host, wrong credentials, missing file) becomes one
:class:`~thesislib.errors.ThesisError` naming the URL and the fix (:func:`remote_errors`).

:func:`copy_to_cache` is the thesis's architecture: the store is copied once per server to a local cache
folder (a lock file makes concurrent processes copy it once), every file is checked against the manifest,
and the copy is read like any local store.
"""

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from thesislib.errors import ThesisError

MANIFEST = "manifest.json"
COPY_RECORD = ".thesislib-copy.json"  # written into a finished, verified local copy


@dataclass(frozen=True)
class Scheme:
    """What a kind of location can do, and how to fix access to it."""
    writable: bool
    package: str      # the Python package fsspec needs for it ("" for none)
    access_fix: str   # what to check when it refuses access


SCHEMES = {
    "file": Scheme(True, "", "check the folder's permissions"),
    "http": Scheme(False, "aiohttp", "check the URL and that the server runs"),
    "https": Scheme(False, "aiohttp", "check the URL and that the server runs"),
    "s3": Scheme(True, "s3fs", "check AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
                               "~/.aws, or fsspec's s3 config)"),
}

# Options fsspec gets for a scheme unless the user's fsspec config sets them: fail within seconds on an
# unreachable endpoint instead of retrying for minutes.
DEFAULT_OPTIONS = {
    "s3": {"config_kwargs": {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2}}},
}


def scheme_of(path) -> str:
    """The URL scheme of ``path`` ("file" for a local path)."""
    text = str(path)
    return text.split("://", 1)[0].lower() if "://" in text else "file"


def is_url(path) -> bool:
    """True for a location that is not a local path (``http://``, ``https://``, ``s3://``)."""
    return scheme_of(path) != "file"


def check_scheme(path) -> Scheme:
    """The :class:`Scheme` of ``path``; a ThesisError for a scheme not in :data:`SCHEMES`."""
    scheme = scheme_of(path)
    if scheme not in SCHEMES:
        raise ThesisError(f"{path}: unknown URL scheme {scheme!r}; a store lives in a local folder or at "
                          f"{', '.join(s + '://' for s in SCHEMES if s != 'file')}")
    return SCHEMES[scheme]


def check_writable(path) -> None:
    """A ThesisError if stores cannot be written at ``path`` (an HTTP server is read-only)."""
    if not check_scheme(path).writable:
        raise ThesisError(f"cannot prepare into {path}: an HTTP server is read-only; prepare locally "
                          "(--data-dir data) and serve that folder, or prepare into s3://bucket/prefix")


def filesystem(url) -> tuple:
    """(fsspec filesystem, path inside it) of a URL or local path."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(str(url), **storage_options(url))
    except ImportError as exc:
        raise ThesisError(f"{url} needs the Python package {SCHEMES[scheme_of(url)].package} ({exc}): "
                          "pip install -e . (it is one of the project's dependencies)") from exc


def storage_options(url) -> dict:
    """fsspec's options for ``url``: the defaults of :data:`DEFAULT_OPTIONS` under the user's fsspec config."""
    import fsspec

    scheme = scheme_of(url)
    check_scheme(url)
    return {**DEFAULT_OPTIONS.get(scheme, {}), **fsspec.config.conf.get(scheme, {})}


def zarr_store(url):
    """A read-only Zarr store for a local path or URL (``zarr.storage.FsspecStore`` for a URL)."""
    if not is_url(url):
        return str(url)
    from zarr.storage import FsspecStore

    with remote_errors(url):
        return FsspecStore.from_url(str(url), storage_options=storage_options(url), read_only=True)


def resolve(path) -> str:
    """A URL as it is; a local path made absolute (a relative one taken from the project root)."""
    from thesislib.paths import project_path

    return str(path) if is_url(path) else str(project_path(path))


def join(base, *parts) -> str:
    """``base`` and ``parts`` joined with "/" (a URL stays a URL; a local path stays a path)."""
    if not is_url(base):
        return str(Path(base).joinpath(*parts))
    return "/".join([str(base).rstrip("/"), *(str(part).strip("/") for part in parts)])


def transport_errors() -> tuple:
    """The exceptions a remote read can raise besides OSError (aiohttp's and botocore's, when present)."""
    found = [OSError]
    with contextlib.suppress(ImportError):
        import aiohttp
        found.append(aiohttp.ClientError)
    with contextlib.suppress(ImportError):
        import botocore.exceptions
        found += [botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError]
    return tuple(found)


def causes(exc: BaseException):
    """``exc`` and the exceptions it was raised from (fsspec's HTTP layer re-raises every failure as
    FileNotFoundError from the real one)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def classify(exc: BaseException) -> str:
    """"denied", "missing", "unreachable" or "other", by the types and HTTP status in the chain of causes."""
    for cause in causes(exc):
        status = getattr(cause, "status", None)  # aiohttp's ClientResponseError
        if isinstance(cause, denied_errors()) or status in (401, 403):
            return "denied"
        if status == 404:
            return "missing"
        if isinstance(cause, unreachable_errors()):
            return "unreachable"
    return "missing" if isinstance(exc, FileNotFoundError) else "other"


def denied_errors() -> tuple:
    """The exceptions of refused or missing credentials."""
    found = [PermissionError]
    with contextlib.suppress(ImportError):
        import botocore.exceptions
        found += [botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError]
    return tuple(found)


def unreachable_errors() -> tuple:
    """The exceptions of a server that does not answer: the OS's, aiohttp's and botocore's."""
    found = [ConnectionError, TimeoutError]
    with contextlib.suppress(ImportError):
        import aiohttp
        found.append(aiohttp.ClientConnectionError)
    with contextlib.suppress(ImportError):
        import botocore.exceptions
        found.append(botocore.exceptions.ConnectionError)
    return tuple(found)


def describe(url, exc: BaseException, missing_fix: str = None) -> str:
    """One line: what went wrong with ``url`` and the fix, by the kind of error (never its text)."""
    scheme = SCHEMES.get(scheme_of(url), SCHEMES["file"])
    kind, root = classify(exc), list(causes(exc))[-1]
    reason = f"{type(root).__name__}: {root}".replace("\n", " ")
    if kind == "missing":
        return f"{url} does not exist: {missing_fix or scheme.access_fix}"
    if kind == "denied":
        return f"access to {url} was refused ({reason}): {scheme.access_fix}"
    if kind == "unreachable" or is_url(url):
        return f"cannot reach {url} ({reason}): {scheme.access_fix}"
    return f"cannot read {url} ({reason}): {scheme.access_fix}"


@contextlib.contextmanager
def remote_errors(url, missing_fix: str = None):
    """Turn a transport error raised inside the block into one ThesisError about ``url``."""
    try:
        yield
    except ThesisError:
        raise
    except transport_errors() as exc:
        raise ThesisError(describe(url, exc, missing_fix)) from exc


def open_file(path_or_url, mode: str = "rb", **options):
    """An open file object (a context manager) for a local path or URL; errors as :func:`remote_errors`.
    ``options`` go to fsspec's ``open`` (``block_size``, ``cache_type``)."""
    fs, path = filesystem(path_or_url)
    with remote_errors(path_or_url):
        return fs.open(path, mode, **options)


def open_ranged(path_or_url):
    """A file object whose every read is one ranged request for exactly the bytes asked (fsspec's cache
    type "none"), for libraries that ask for what they need (h5py's rows, pyarrow's column chunks): fsspec's
    default read-ahead fetches a 5 MB block per miss, which shuffled rows of a large file turn into many
    times the bytes asked (see benchmarks/remote_read.py)."""
    return open_file(path_or_url, cache_type="none")


def exists(path_or_url) -> bool:
    """True if the file or folder exists; an unreachable server or a refused access is a ThesisError."""
    fs, path = filesystem(path_or_url)
    if not is_url(path_or_url):
        return fs.exists(path)
    try:
        fs.info(path)  # not fs.exists: over HTTP it says False for a server that does not answer
    except transport_errors() as exc:
        if classify(exc) == "missing":
            return False
        raise ThesisError(describe(path_or_url, exc)) from exc
    return True


def read_bytes(path_or_url) -> bytes:
    fs, path = filesystem(path_or_url)
    with remote_errors(path_or_url):
        return fs.cat_file(path)


def read_many(urls) -> list:
    """The bytes of each of ``urls`` (all on one server), fetched concurrently in one call."""
    from fsspec.core import strip_protocol

    if not urls:
        return []
    fs, _ = filesystem(urls[0])
    keys = [strip_protocol(url) for url in urls]
    with remote_errors(urls[0]):
        found = fs.cat(keys, on_error="raise")
    return [found[key] for key in keys]


def read_json(path_or_url, missing_fix: str = None):
    """The JSON document at a path or URL; a ThesisError naming it if it is missing or not JSON."""
    fs, path = filesystem(path_or_url)
    with remote_errors(path_or_url, missing_fix):
        data = fs.cat_file(path)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ThesisError(f"{path_or_url} is not valid JSON ({exc}): delete the store there and run "
                          "prepare again") from exc


# ------------------------------------------------------------------------------------------- upload
def upload_folder(local_dir, url) -> int:
    """Copy the finished local store ``local_dir`` to ``url`` file by file, the manifest last, after
    removing what was there (the old manifest first, so the location never looks complete while it is
    written). Returns the bytes uploaded."""
    check_writable(url)
    fs, root = filesystem(url)
    local_dir = Path(local_dir)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and p != local_dir / MANIFEST)
    with remote_errors(url, "check that the bucket exists"):
        if fs.exists(f"{root}/{MANIFEST}"):
            fs.rm_file(f"{root}/{MANIFEST}")
        if fs.exists(root):
            fs.rm(root, recursive=True)
        targets = [f"{root}/{path.relative_to(local_dir).as_posix()}" for path in files]
        fs.put([str(path) for path in files], targets)  # concurrently, where fsspec can (s3fs)
        fs.put_file(str(local_dir / MANIFEST), f"{root}/{MANIFEST}")
    return sum(path.stat().st_size for path in files) + (local_dir / MANIFEST).stat().st_size


# -------------------------------------------------------------------------------------- local copy
def manifest_digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def listed_files(url, manifest: dict) -> dict:
    """{path relative to the store: SHA-256} of every data file the manifest lists; a ThesisError for a
    manifest without per-file checksums (a store prepared by an older thesislib)."""
    listed = manifest.get("files_sha256")
    if not listed:
        raise ThesisError(f"{join(url, MANIFEST)} lists no per-file checksums (prepared by an older thesislib): "
                          "prepare the store there again with --force")
    return dict(listed)


def verify_files(copy_dir: Path, manifest: dict) -> None:
    """A ThesisError unless every file the manifest lists is in ``copy_dir`` with its SHA-256."""
    from thesislib.stores.base import file_sha256  # here: thesislib.stores imports this module

    for name, expected in sorted(listed_files(copy_dir, manifest).items()):
        if file_sha256(copy_dir / name) != expected:
            raise ThesisError(f"the copy of {name} in {copy_dir} does not match the manifest's SHA-256: the "
                              "store at the source is damaged or changed while it was copied; prepare it again")


def is_current_copy(copy_dir: Path, url, manifest: dict) -> bool:
    """True if ``copy_dir`` is a finished, verified copy of the store at ``url`` with this manifest."""
    try:
        done = json.loads((copy_dir / COPY_RECORD).read_text())
    except (OSError, ValueError):
        return False
    return done.get("source") == str(url) and done.get("manifest_sha256") == manifest_digest(manifest)


def download(url, tmp: Path, names: list) -> int:
    """Copy the files ``names`` of the store at ``url`` into ``tmp`` (concurrently where fsspec can), then
    its manifest; return the bytes copied."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    for folder in sorted({(tmp / name).parent for name in names}):
        folder.mkdir(parents=True, exist_ok=True)
    with remote_errors(url, "the store there is incomplete: prepare it again"):
        fs.get([f"{root}/{name}" for name in names], [str(tmp / name) for name in names])
        fs.get_file(f"{root}/{MANIFEST}", str(tmp / MANIFEST))
    return sum((tmp / name).stat().st_size for name in [*names, MANIFEST])


def cache_error(cache_dir, exc: OSError) -> ThesisError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return ThesisError(f"cache folder {cache_dir} is full ({exc.strerror}): free space there or choose "
                           "another --cache")
    return ThesisError(f"cannot write the local copy under {cache_dir} ({exc}): choose a writable --cache "
                       "folder")


def copy_to_cache(url, cache_dir, manifest: dict, verify=None) -> tuple:
    """A verified local copy of the store at ``url`` (a URL or a local folder) under ``cache_dir``.

    The copy lives at ``cache_dir/<dataset>/<store>``, so ``cache_dir`` is a data folder like any other.
    A lock file serialises the processes of one server: the first copies, the others wait, then find the
    copy current. A copy of the same store (same source, same manifest) is used as it is. The files listed in
    ``manifest`` are downloaded into a temporary folder, checked by ``verify(folder)`` (default: each file's
    SHA-256 against the manifest), and only then renamed into place.
    Returns (copy folder, seconds spent copying and verifying, bytes copied: 0 when an earlier copy is used)."""
    from filelock import FileLock

    started = time.perf_counter()
    folder = Path(cache_dir) / manifest["dataset"]
    copy_dir = folder / manifest["store"]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder / f".{manifest['store']}.lock")):
            if is_current_copy(copy_dir, url, manifest):
                return copy_dir, time.perf_counter() - started, 0
            copied = copy_fresh(url, copy_dir, manifest, verify or (lambda tmp: verify_files(tmp, manifest)))
    except OSError as exc:
        raise cache_error(cache_dir, exc) from exc
    return copy_dir, time.perf_counter() - started, copied


def copy_fresh(url, copy_dir: Path, manifest: dict, verify) -> int:
    """Download, verify and move the store into ``copy_dir``; nothing half-copied is left behind."""
    names = sorted(listed_files(url, manifest))
    tmp = copy_dir.parent / f".{copy_dir.name}.copy-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        copied = download(url, tmp, names)
        verify(tmp)
        record = {"source": str(url), "manifest_sha256": manifest_digest(manifest), "bytes": copied,
                  "copied_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (tmp / COPY_RECORD).write_text(json.dumps(record, indent=2))
        shutil.rmtree(copy_dir, ignore_errors=True)
        os.rename(tmp, copy_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return copied
