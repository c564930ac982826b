"""The training protocol: ``repeats`` runs of one loader on one dataset, each measured the same way.

Each repeat starts from a fresh model with the same seed (so the repeats differ only in timing), trains
``epochs`` epochs with a validation pass after each, and appends one row to the results file at once, so
a crash loses no earlier row. The environment (the thesis's section 2.6) is appended once per protocol run
to ``<results>.env.jsonl``, keyed by the ``run_id`` its rows share.

With ``cold=True`` the store's files are evicted from the page cache before each epoch (the loaders'
maps closed first), so every epoch reads from the disk; otherwise (``warm``) the store's files are read once,
sequentially, before each repeat, so that repeat 1 too starts with the store in the page cache (the stores
read before it may have pushed it out; without this, repeat 1 of a study's combination often read from the
disk while repeats 2-10 did not). ``cache_state`` says which, and ``cached_pct`` is the share of the store's
bytes in the page cache as the first epoch starts (after a cold run's eviction or a warm run's read; a store
larger than the free memory shows here). That harness work stays out of the run's figures: the first
eviction or read and the ``cached_pct`` measure run before the profiler starts, the later evictions before
each epoch's timer under ``Profiler.paused`` (so outside ``cpu_util_pct``; the GPU and memory samplers keep
running through them).

Under ``torchrun --nproc-per-node N`` (see :mod:`thesislib.distributed`) the protocol runs on N ranks: each
reads its share of every epoch (the sampler's rank split), trains a ``DistributedDataParallel`` model and
measures itself. Every repeat gives one row per rank, with ``world_size`` and ``rank`` columns (a single
process: 1 and 0); rank 0 gathers the ranks' rows and appends them all, so one process writes the file.
:func:`thesislib.results.aggregate_ranks` combines a repeat's rows into one: the slowest rank's time, the
summed throughput and memory, the longest and shortest data wait (a straggler shows). Set-up errors on any
rank stop every rank with the same one line (:func:`thesislib.distributed.agreed`).

``THESISLIB_SAMPLE_LOG=DIR`` (a debugging aid) makes every rank append the index batches its loaders are
given to ``DIR/rank<R>-<split>.jsonl`` (one JSON line per batch: repeat, epoch, indices).
"""

import json
import math
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from thesislib import __version__, distributed, pagecache, remote
from thesislib.datasets import SPLITS, check_scale, check_seed, get_dataset
from thesislib.errors import ThesisError, choose
from thesislib.loaders import DEFAULT_STORES, LOADERS, check_available, make_loader
from thesislib.loaders.base import check_num_workers, check_store_kind
from thesislib.loaders.sampler import check_batch_size, check_rank, check_whole
from thesislib.models import build_model, build_optimizer, check_model_name, check_optimizer
from thesislib.paths import PROJECT_ROOT, project_path
from thesislib.profiler import Profiler, figures
from thesislib.progress import repeat_bar, wanted
from thesislib.results import aggregate_ranks, append_line, append_row, check_results_path, env_path
from thesislib.stores import get_store_spec, open_store, prepare_command, store_path
from thesislib.train import fit

DEVICES = ("auto", "cpu", "cuda")  # and cuda:N, N a GPU's index


@dataclass(frozen=True)
class BenchConfig:
    """One protocol run; the names are the command line's (``bench --help``) and the notebook's."""
    loader: str
    dataset: str
    store: str = None          # None or "": the loader's default store
    epochs: int = 1
    repeats: int = 1
    batch_size: int = 128
    num_workers: int = 0
    model: str = "small"
    optimizer: str = "sgd"
    lr: float = 0.05
    device: str = "auto"
    seed: int = 0
    scale: float = 1.0
    data_dir: str = "data"
    pin_memory: bool = False
    cold: bool = False
    cache: str = None          # a local folder: read a verified copy of the store there (thesislib.remote)
    decode: str = "exact"      # JPEG stores: "exact" (Pillow's pixels) or "fast" (FFCV's fast DCT, approximate)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if torch sees a GPU, else ``cpu``; ``cpu``, ``cuda`` and ``cuda:N`` (N below the
    number of GPUs) as given; anything else, or a CUDA device this machine lacks, is a ThesisError."""
    device = str(device)
    kind, colon, index = device.partition(":")
    if device not in DEVICES and not (kind == "cuda" and colon and index.isdigit()):
        raise ThesisError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}, cuda:N")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise ThesisError(f"--device {device} needs a CUDA GPU: none found (torch.cuda.is_available() is "
                          "False); use --device cpu or auto")
    if index and int(index) >= torch.cuda.device_count():
        raise ThesisError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}; choose one of them")
    return device


def validate(config: BenchConfig) -> BenchConfig:
    """``config`` checked, with the default store filled in and the device resolved; else a ThesisError."""
    choose("loader", config.loader, LOADERS)
    get_dataset(config.dataset)
    loader_class = check_available(config.loader)
    store = config.store or DEFAULT_STORES[config.loader]
    check_store_kind(loader_class, get_store_spec(store))
    for name in ("epochs", "repeats"):
        check_whole(name, getattr(config, name), 1)
    check_batch_size(config.batch_size)
    check_num_workers(config.num_workers)
    check_model_name(config.model)
    check_optimizer(config.optimizer, config.lr)
    check_seed(config.seed)
    check_scale(config.scale)
    check_decode(config.decode, loader_class, store)
    return replace(config, store=store, device=distributed.rank_device(resolve_device(config.device)))


def check_decode(decode: str, loader_class, store: str) -> None:
    """A ThesisError unless ``decode`` is a decode mode (:data:`thesislib.kernels.jpeg.DECODES`) that the
    loader offers on ``store``: ``"fast"`` only for a batch loader (whose store's reader decodes) over a store
    that offers it (:func:`thesislib.stores.decodes_of`, the check the store's reader makes)."""
    from thesislib.kernels.jpeg import DECODES
    from thesislib.loaders.base import FormatLoader
    from thesislib.stores import decodes_of

    choose("decode", decode, DECODES)
    offered = decodes_of(get_store_spec(store)) if issubclass(loader_class, FormatLoader) else ("exact",)
    if decode not in offered:
        raise ThesisError(f"--decode {decode} applies to the JPEG stores read by the files or tfrecord loaders "
                          f"(files-jpeg, tfrecord), not to the {loader_class.name} loader on {store}: leave "
                          "--decode exact")


def prepare_hint(config: BenchConfig) -> str:
    return f"{prepare_command(config.dataset, config.store, config.data_dir)} --scale {config.scale}"


def open_prepared_store(config: BenchConfig, verified: bool = False):
    """The store the run reads, checked to be prepared at ``config.scale``; else the ``prepare`` to run
    (``verified``: a copy just hashed file by file, see :func:`~thesislib.stores.open_store`)."""
    store = open_store(config.data_dir, config.dataset, config.store, hint=prepare_hint(config), verified=verified)
    prepared = float(store.manifest.get("scale", config.scale))
    if not math.isclose(prepared, config.scale, rel_tol=1e-9):
        raise ThesisError(f"store {store.path} was prepared at scale {prepared}, not {config.scale}: run "
                          f"`{prepare_hint(config)}` (it rebuilds the store) or pass --scale {prepared}")
    return store


def check_rank_count(store, world_size: int) -> None:
    """A ThesisError if ``world_size`` ranks would leave a rank without a sample of its own in a split."""
    for split in SPLITS:
        try:
            check_rank(store.count(split), 0, world_size)
        except ThesisError as exc:
            raise ThesisError(f"{store.path} {split}: {exc}") from exc


def set_up(config: BenchConfig, results=None) -> tuple:
    """(validated config, results path or None, opened store, the copy's results columns) of a protocol run; a ThesisError for bad
    input. Relative paths are taken from the project root."""
    config = validate(config)
    config = replace(config, data_dir=remote.resolve(config.data_dir))
    results = check_results_path(results) if results is not None else None
    store = open_prepared_store(config)
    check_rank_count(store, distributed.rank_and_world()[1])
    store, copy = use_cache(config, store) if config.cache else (store, {"store_location": str(store.path)})
    return config, results, store, copy


def group_device(device: str) -> str:
    """The device kind whose process-group backend a run needs (before ``device`` is checked)."""
    wants_gpu = str(device) == "auto" or str(device).startswith("cuda")
    return "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"


def use_cache(config: BenchConfig, store) -> tuple:
    """(the verified local copy of ``store`` under ``config.cache``, the copy's results columns)."""
    from thesislib.stores import verify_store

    path, seconds, copied = remote.copy_to_cache(store.path, project_path(config.cache), store.manifest,
                                                 lambda tmp: verify_store(replace(store, path=tmp), progress=False))
    fresh = copied > 0  # copied and verified now; 0 bytes: an earlier copy, checked again as any store is
    local = open_prepared_store(replace(config, data_dir=str(path.parent.parent)), verified=fresh)
    return local, {"cache_copy_s": seconds, "cache_copy_bytes": copied, "store_location": str(store.path)}


def git_commit() -> str:
    """The project's HEAD commit ("" outside a git checkout)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


class Run:
    """One repeat: loaders, a fresh model, the profiler and (for ``cold``) the page-cache eviction. A Run
    that fails to build closes what it opened; use it as a context manager to close its loaders."""

    def __init__(self, config: BenchConfig, store, repeat: int = 0):
        self.config, self.store = config, store
        self.files = [] if remote.is_url(store.path) else pagecache.store_files(store.path)
        self.train = self.val = None
        self.cached_pct = math.nan
        options = dict(batch_size=config.batch_size, num_workers=config.num_workers,
                       pin_memory=config.pin_memory, seed=config.seed, device=config.device)
        if config.decode != "exact":  # only the loaders that decode JPEGs take it (see check_decode)
            options["decode"] = config.decode
        try:
            self.train = make_loader(config.loader, store, "train", shuffle=True, **options)
            self.val = make_loader(config.loader, store, "val", shuffle=False, **options)
            shape = store.shape("train")
            self.model = build_model(config.model, len(store.classes), shape[1], config.seed)
            if isinstance(self.model, torch.nn.Module):
                self.model = distributed.wrap_model(self.model.to(config.device), config.device)
            self.optimizer = build_optimizer(config.optimizer, self.model, config.lr)
            if os.environ.get("THESISLIB_SAMPLE_LOG"):
                for loader in (self.train, self.val):
                    log_batches(loader, os.environ["THESISLIB_SAMPLE_LOG"], repeat)
        except BaseException:
            self.close()
            raise

    def evict(self) -> None:
        """Close the loaders' files and maps and drop the store from the page cache; under torchrun, wait
        until every rank has (ranks on one server share its page cache)."""
        self.close()
        pagecache.evict(self.files)
        distributed.barrier()

    def measure(self, on_batch=None) -> tuple:
        """(per-epoch results, figures) of the training epochs. The first eviction (cold runs) or the read
        of the store (warm runs) and the cache measure run before the profiler starts; later evictions are
        left out of its CPU figures."""
        if self.config.cold:
            self.evict()
        else:
            pagecache.read_through(self.files)
        self.cached_pct = 100 * pagecache.resident_fraction(self.files)
        with Profiler(self.config.device) as profiler:
            epochs = fit(self.model, self.optimizer, self.train, self.val, self.config.epochs,
                         self.config.device, before_epoch=lambda epoch: self.evict_again(epoch, profiler),
                         after_epoch=lambda _: profiler.sample_memory(),
                         first_batches=profiler.sample_soon, on_batch=on_batch)
            resources = profiler.stop()
        return epochs, figures(epochs, resources)

    def evict_again(self, epoch: int, profiler: Profiler) -> None:
        """Cold runs, before each epoch after the first: evict, outside the profiler's CPU figures."""
        if self.config.cold and epoch > 0:
            with profiler.paused():
                self.evict()

    def close(self) -> None:
        for loader in (self.train, self.val):
            if loader is not None:
                loader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def log_batches(loader, folder, repeat: int) -> None:
    """Make ``loader`` append every epoch's index batches to ``folder/rank<R>-<split>.jsonl`` as it is given
    them (``THESISLIB_SAMPLE_LOG``: what each rank read, for tests and debugging)."""
    path = Path(folder) / f"rank{distributed.rank_and_world()[0]}-{loader.split}.jsonl"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as exc:
        raise ThesisError(f"THESISLIB_SAMPLE_LOG: cannot write {path} ({exc.strerror}): point it to a "
                          "writable folder or unset it") from exc
    def log(indices) -> None:
        append_line(path, json.dumps({"repeat": repeat, "epoch": loader.epoch, "indices": list(map(int, indices))})
                    + "\n")

    if hasattr(loader, "sample_log"):  # a streaming loader: it reports each batch's samples as it reads them
        loader.sample_log = log
        return
    batches = loader.batches

    def logged() -> list:
        given = batches()
        append_line(path, "".join(json.dumps({"repeat": repeat, "epoch": loader.epoch, "indices": b.tolist()})
                                  + "\n" for b in given))
        return given

    loader.batches = logged  # this loader only: its own iteration calls self.batches()


def run_once(config: BenchConfig, store, repeat: int, run_id: str, commit: str = "",
             bar: bool = False) -> dict:
    """One repeat of a validated ``config``: this rank's results row. Every rank builds its run before any
    trains (a set-up error on one stops all). ``bar``: a progress bar on stderr."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rank, world_size = distributed.rank_and_world()
    label = f"repeat {repeat + 1}/{config.repeats}"
    with distributed.agreed(lambda: Run(config, store, repeat), release=Run.close) as run, \
            repeat_bar(run.train, config.epochs, label, bar) as on_batch:
        epochs, measured = run.measure(on_batch)
    return {
        "run_id": run_id, "started_at": started, "git_commit": commit, "host": socket.gethostname(),
        "loader": config.loader, "store": store.name, "dataset": config.dataset, "scale": config.scale,
        "precision": store.dtype, "device": config.device, "model": config.model, "epochs": config.epochs,
        "batch_size": config.batch_size, "num_workers": config.num_workers, "seed": config.seed,
        "repeat": repeat, **measured, "train_loss": epochs[-1].train_loss, "val_acc": epochs[-1].val_acc,
        "cache_state": "cold" if config.cold else "warm", "cached_pct": run.cached_pct,
        "thesislib_version": __version__, "world_size": world_size, "rank": rank, "decode": config.decode,
    }


def run_protocol(config: BenchConfig, results=None, progress: bool = False) -> list:
    """Validate ``config``, run its repeats and append each repeat's rows (one per rank) to ``results``
    (.csv or .parquet) at once.

    Relative paths (``results``, ``config.data_dir``) are taken from the project root. Returns the rows
    (every rank's, on every rank). Under torchrun, rank 0 writes the rows and prints the progress.
    """
    with distributed.process_group(group_device(config.device)):
        config, results, store, copy = distributed.agreed(lambda: set_up(config, results))
        run_id, commit, rows = distributed.broadcast(new_run_id()), git_commit(), []
        main = distributed.is_main()
        if results is not None and main:
            append_environment(results, run_id, config.data_dir)
        for repeat in range(config.repeats):
            bar = progress and main and wanted()
            ranks_rows = distributed.all_gather({**run_once(config, store, repeat, run_id, commit, bar=bar), **copy})
            rows.extend(ranks_rows)
            for row in ranks_rows if results is not None and main else ():
                append_row(results, row)
            if progress and main:
                report_progress(ranks_rows, config)
    return rows


def report_progress(rows: list, config: BenchConfig) -> None:
    """One line per repeat on stderr: its figures (over all ranks: see :func:`aggregate_ranks`)."""
    row = rows[0] if len(rows) == 1 else aggregate_ranks(rows)
    ranks = "" if len(rows) == 1 else f" ({len(rows)} ranks: slowest rank's time, summed img/s)"
    print(f"{config.loader}/{row['store']} on {config.dataset}, repeat {row['repeat'] + 1}/{config.repeats}"
          f"{ranks}: {row['total_train_s']:.2f} s, {row['images_per_s']:.0f} img/s, stall "
          f"{row['stall_pct']:.1f}%, train loss {row['train_loss']:.4f}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- results file
def append_environment(results, run_id: str, data_dir) -> None:
    from thesislib import envinfo

    line = json.dumps({"run_id": run_id, **envinfo.environment(data_dir)}, default=str)
    append_line(env_path(results), line + "\n")


# ------------------------------------------------------------------------------------- notebook 04
NOTEBOOK_PARAMETERS = {"loader": str, "dataset": str, "store": str, "epochs": int, "repeats": int,
                       "batch_size": int, "num_workers": int, "model": str, "device": str, "seed": int,
                       "scale": float, "data_dir": str, "results": str, "cold": bool}
PLAIN_VALUES = (str, int, float, bool, list, dict, tuple, type(None))


def unknown_parameters(namespace: dict) -> list:
    """Names a notebook's caller set that are not parameters (papermill injects them with a mere warning):
    the plain values in ``namespace`` that are neither parameters nor private nor IPython's own."""
    return sorted(name for name, value in namespace.items()
                  if not name.startswith("_") and name not in NOTEBOOK_PARAMETERS
                  and name not in ("In", "Out") and isinstance(value, PLAIN_VALUES))


def coerce(name: str, value, kind):
    """``value`` as the parameter's type (``"3"`` -> 3 for an int); a ThesisError naming the parameter."""
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, kind) or kind is int and isinstance(value, bool):
        raise ThesisError(f"parameter {name} must be {kind.__name__}, got {value!r}")
    return value


def notebook_config(namespace: dict) -> tuple:
    """(validated BenchConfig, results path) from a notebook's parameters; a ThesisError listing the valid
    names for an unknown one, or naming the bad value."""
    unknown = unknown_parameters(namespace)
    if unknown:
        raise ThesisError(f"unknown parameter(s) {', '.join(unknown)}: 04_benchmark.ipynb takes "
                          f"{', '.join(NOTEBOOK_PARAMETERS)}")
    missing = [name for name in NOTEBOOK_PARAMETERS if name not in namespace]
    if missing:
        raise ThesisError(f"parameter(s) {', '.join(missing)} missing: run the notebook's parameters cell")
    values = {name: coerce(name, namespace[name], kind) for name, kind in NOTEBOOK_PARAMETERS.items()}
    results = values.pop("results")
    config = validate(BenchConfig(**values))
    return config, check_results_path(results)


def prepare_if_missing(config: BenchConfig) -> Path:
    """Build the run's store (synthetic, at ``config.scale``) if it has no manifest; return its folder."""
    from thesislib.prepare import prepare

    path = store_path(config.data_dir, config.dataset, config.store)
    if not (path / "manifest.json").is_file():
        prepare(config.dataset, source="synthetic", scale=config.scale, stores=[config.store], seed=0,
                data_dir=project_path(config.data_dir), progress=False)
    return path
