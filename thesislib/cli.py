"""``python -m thesislib COMMAND``: the command line of the contract.

Each command parses its options here and calls one function of the module that does the work. A
:class:`~thesislib.errors.ThesisError` (bad input, missing data, missing GPU, corrupt store) is printed as
one line on stderr and exits with status 2, with no traceback. Options are checked before any work:
numbers in range, output folders writable. While a command runs, what C libraries write on their own
(libtiff, libpng, HDF5's error stacks, DALI's ``[ERROR]`` lines) and Python warnings are kept off the
terminal, so that a failure ends with the one line; ``python -W default -m thesislib`` shows them.
"""

import argparse
import math
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

from thesislib.errors import ThesisError

PROG = "python -m thesislib"
INT64_MAX = 2**63 - 1
# (command, one line, example): the overview (no command), each command's --help and README's table.
COMMANDS_HELP = (
    ("env", "hardware, software and, for every loader, whether it can run here", "env"),
    ("prepare", "build a dataset into the named stores (synthetic or a real archive)",
     "prepare --dataset cifar10 --scale 0.02 --stores npy-uint8,hdf5"),
    ("bench", "run the training protocol and append one row per repeat to a results file",
     "bench --loader numpy --dataset cifar10 --scale 0.02 --repeats 3"),
    ("verify", "check a store's data files against its manifest's checksums",
     "verify --dataset cifar10 --store hdf5"),
    ("formats", "the image-format size table (one photograph in every format)", "formats --out formats.csv"),
    ("report", "tables, figures and a written reading from results; --html: a run's page",
     "report --results results/results.csv --out figures"),
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit status 2), like every other bad input."""

    def error(self, message):
        raise ThesisError(f"{self.prog}: {message} (see `{self.prog} --help`)")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option with its default (``required`` for those without), the description as written."""

    def _get_help_string(self, action):
        if action.required:
            return f"{action.help} (required)"
        if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return action.help
        return f"{action.help} (default: {default_text(action.default)})"


def default_text(default) -> str:
    return " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)


# ------------------------------------------------------------------------------------- option types
def _whole(minimum: int, maximum: int = INT64_MAX, unit: str = ""):
    """An argparse type: a whole number from ``minimum`` to ``maximum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from exc
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"expected a whole number from {minimum} to {maximum}{unit}, "
                                             f"got {text}")
        return value
    return parse


def max_workers() -> int:
    """The most loader workers accepted: 8 per core this process may use, at most 64 (each worker is a
    process with its own copy of torch: 1000 of them exhaust any machine's memory)."""
    return min(64, 8 * len(os.sched_getaffinity(0)))


def _positive_float(text):
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from exc
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _scale(text):
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from exc
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _confidence(text):
    value = _positive_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (e.g. 0.95), got {text}")
    return value


def _model(text):
    from thesislib.models import check_model_name

    try:
        return check_model_name(text)
    except ThesisError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


# ---------------------------------------------------------------------------------------- the parser
def build_parser() -> argparse.ArgumentParser:
    return build_parsers()[0]


def build_parsers() -> tuple:
    """(the parser, {command: its sub-parser})."""
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0], epilog=overview(),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    helps = {name: (line, example) for name, line, example in COMMANDS_HELP}

    def command(name):
        line, example = helps[name]
        return commands.add_parser(name, help=line, description=f"{line}.", epilog=f"example: {PROG} {example}",
                                   formatter_class=_HelpFormatter)

    parsers = {name: command(name) for name in helps}
    for name, add in (("prepare", add_prepare), ("bench", add_bench), ("verify", add_verify),
                      ("formats", add_formats), ("report", add_report)):
        add(parsers[name])
    return parser, parsers


def add_prepare(prep):
    prep.add_argument("--dataset", required=True, help="the dataset to build: cifar10, tinyimagenet or masks")
    prep.add_argument("--source", default="synthetic",
                      help="'synthetic' (a stand-in of the same shape) or the path of the real archive or folder")
    prep.add_argument("--scale", type=_scale, default=1.0, help="fraction of the full split sizes, in (0, 1]")
    prep.add_argument("--stores", default="all", help="comma-separated store names, or 'all'")
    prep.add_argument("--seed", type=int, default=0,   # checked (>= 0) by the source, which names the fix
                      help="seed of the synthetic images and of the subset --scale keeps")
    prep.add_argument("--data-dir", metavar="DIR", default="data", help="folder the stores are written under")
    prep.add_argument("--force", action="store_true", help="rebuild stores that are already complete")
    prep.add_argument("--quiet", action="store_true", help="no progress bars (none either when stderr is "
                                                           "not a terminal)")


def add_bench(bench):
    bench.add_argument("--loader", required=True, help="the loading method, e.g. numpy, hdf5, files (see `env`)")
    bench.add_argument("--dataset", required=True, help="cifar10, tinyimagenet or masks")
    bench.add_argument("--store", default=None, help="a store of the loader's kind; default: its default store")
    bench.add_argument("--epochs", type=_whole(1, 10**6), default=1, help="training epochs per repeat")
    bench.add_argument("--repeats", type=_whole(1, 10**6), default=1,
                       help="repeats, each from a fresh model with the same seed")
    bench.add_argument("--batch-size", type=_whole(1, 2**31 - 1), default=128, help="images per batch")
    bench.add_argument("--num-workers", type=_whole(0, max_workers(), " (8 per core, at most 64)"), default=0,
                       help="loaders reading in parallel (0: the main process reads): threads for numpy, hdf5, zarr "
                            "and files on local stores, else worker processes")
    bench.add_argument("--model", type=_model, default="small",
                       help="small, resnet18, none (loader only) or sleep:MS (MS milliseconds per batch)")
    bench.add_argument("--optimizer", default="sgd", help="sgd or rmsprop")
    bench.add_argument("--lr", type=_positive_float, default=0.05, help="learning rate, a finite number > 0")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    bench.add_argument("--seed", type=_whole(0, 2**32 - 1), default=0, help="sampler and model seed")
    bench.add_argument("--scale", type=_scale, default=1.0, help="the scale the store was prepared at")
    bench.add_argument("--data-dir", metavar="DIR", default="data", help="folder the stores are read from")
    bench.add_argument("--results", metavar="FILE", default="results/results.csv",
                       help="results file (.csv or .parquet) the rows are appended to")
    bench.add_argument("--pin-memory", action="store_true", help="pin batches in page-locked memory")
    bench.add_argument("--cold", action="store_true",
                       help="evict the store's files from the page cache before each epoch")
    bench.add_argument("--cache", metavar="DIR", default=None,
                       help="copy the store (e.g. one at a URL) into DIR once, verified, and read the copy")
    bench.add_argument("--verify", action="store_true",
                       help="check the store against its manifest's checksums before training")
    bench.add_argument("--decode", default="exact", choices=["exact", "fast"],
                       help="JPEG stores (files-jpeg, tfrecord): exact (Pillow's pixels) or fast (FFCV's fast DCT, "
                            "approximate; the results' decode column and the report's labels say so)")
    bench.add_argument("--quiet", action="store_true", help="no progress bar and no line per repeat")


def add_verify(ver):
    ver.add_argument("--dataset", required=True, help="cifar10, tinyimagenet or masks")
    ver.add_argument("--store", required=True, help="the store to check, e.g. hdf5 or files-jpeg")
    ver.add_argument("--data-dir", metavar="DIR", default="data", help="folder the stores are read from")
    ver.add_argument("--quiet", action="store_true", help="no progress bar")


def add_formats(fmt):
    fmt.add_argument("--image", metavar="PATH", default=None,
                     help="the photograph to encode; default: the largest photo a dependency ships")
    fmt.add_argument("--out", metavar="FILE.csv", default=None, help="also write the table to this CSV file")


def add_report(rep):
    rep.add_argument("--results", metavar="FILE", nargs="+", default=["results/results.csv"],
                     help="results file(s) written by bench")
    rep.add_argument("--out", metavar="DIR", default="figures",
                     help="folder the tables and figures are written to")
    rep.add_argument("--confidence", type=_confidence, default=0.95, help="confidence level of the intervals")
    rep.add_argument("--allow-mixed", action="store_true",
                     help="accept results written by different thesislib versions (one table each is safer)")
    rep.add_argument("--html", action="store_true",
                     help="instead: one self-contained HTML page of a run's notebooks 05 and 06")
    rep.add_argument("--run", metavar="DIR", default=None,
                     help="the run folder for --html; default: the newest under runs/")


def overview() -> str:
    """The commands, one line each, and an example of each: what ``python -m thesislib`` alone prints."""
    width = max(len(name) for name, _, _ in COMMANDS_HELP)
    lines = [f"  {name:<{width}}  {line}" for name, line, _ in COMMANDS_HELP]
    examples = [f"  {PROG} {example}" for _, _, example in COMMANDS_HELP]
    return "\n".join(["commands:", *lines, "", "examples:", *examples, "",
                      f"`{PROG} COMMAND --help` lists a command's options with their defaults."])


# --------------------------------------------------------------------------------- checks before work
def _from_cwd(path) -> str:
    """Command-line paths are relative to the working folder (library calls take them from the project root);
    a URL (http://, s3://) stays as it is."""
    from thesislib.remote import is_url

    return str(path) if is_url(path) else str(Path(path).expanduser().resolve())


def writable_folder(path, option: str, shown=None) -> str:
    """``path`` (from the working folder) if it is, or can be created as, a writable folder; else a
    ThesisError naming ``option`` (checked before any work, so that no minutes are spent for nothing)."""
    from thesislib.remote import check_writable, is_url

    if is_url(path):
        check_writable(path)  # a URL's scheme must allow writing (s3://, not http://)
        return str(path)
    folder, shown = Path(_from_cwd(path)), path if shown is None else shown
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ThesisError(f"{option} {shown}: {existing} is a file, not a folder; choose a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ThesisError(f"{option} {shown}: {existing} is not writable (read-only); choose a folder you can "
                          "write")
    return str(folder)


def writable_file(path, option: str) -> str:
    """``path`` (from the working folder) if a file can be written there; else a ThesisError."""
    file = Path(_from_cwd(path))
    if file.is_dir():
        raise ThesisError(f"{option} {path} is a folder: name a file in it")
    writable_folder(file.parent, option, shown=path)
    if file.exists() and not os.access(file, os.W_OK):
        raise ThesisError(f"{option} {path} is read-only: make it writable or choose another file")
    return str(file)


# ------------------------------------------------------------------------------------------- commands
def run_env(args):
    from thesislib import envinfo

    print(envinfo.format_environment())


def run_prepare(args):
    from thesislib.prepare import prepare
    from thesislib.progress import wanted
    from thesislib.stores import parse_store_list

    data_dir = writable_folder(args.data_dir, "--data-dir")
    prepare(args.dataset, source=args.source, scale=args.scale, stores=parse_store_list(args.stores),
            seed=args.seed, data_dir=data_dir, force=args.force, progress=wanted(args.quiet))


def run_bench(args):
    from thesislib.bench import BenchConfig, run_protocol
    from thesislib.distributed import is_main

    config = BenchConfig(
        loader=args.loader, dataset=args.dataset, store=args.store, epochs=args.epochs,
        repeats=args.repeats, batch_size=args.batch_size, num_workers=args.num_workers,
        model=args.model, optimizer=args.optimizer, lr=args.lr, device=args.device, seed=args.seed,
        scale=args.scale, data_dir=_from_cwd(args.data_dir), pin_memory=args.pin_memory, cold=args.cold,
        cache=_from_cwd(args.cache) if args.cache else None, decode=args.decode)
    if args.verify:
        from thesislib.errors import choose
        from thesislib.loaders import DEFAULT_STORES, LOADERS

        store = args.store or DEFAULT_STORES[choose("loader", args.loader, LOADERS)]
        verify(args.dataset, store, config.data_dir, args.quiet)
    rows = run_protocol(config, results=_from_cwd(args.results), progress=not args.quiet)
    if is_main():  # under torchrun, rank 0 wrote every rank's rows
        print(f"wrote {len(rows)} row(s) to {args.results}")


def verify(dataset: str, store_name: str, data_dir, quiet: bool) -> None:
    """Check a store's data files against its manifest (``thesislib.stores.verify_store``)."""
    from thesislib.progress import wanted
    from thesislib.stores import open_store, verify_store

    store = open_store(data_dir, dataset, store_name)
    verify_store(store, progress=wanted(quiet))
    print(f"{dataset}/{store_name}: every data file matches its manifest's checksum")


def run_verify(args):
    verify(args.dataset, args.store, _from_cwd(args.data_dir), args.quiet)


def run_formats(args):
    from thesislib import imageformats

    out = None
    if args.out:   # checked before minutes of encoding
        out = imageformats.check_table_path(writable_file(args.out, "--out"))
    table = imageformats.format_table(_from_cwd(args.image) if args.image else None)
    if out:
        imageformats.write_table(table, out)
    print(imageformats.format_for_terminal(table))


def run_report(args):
    from thesislib import report

    if args.html:
        page = report.html_page(_from_cwd(args.run) if args.run else None)
        print(page)
        return
    out = writable_folder(args.out, "--out")
    written = report.build_report([_from_cwd(p) for p in args.results], out,
                                  confidence=args.confidence, allow_mixed=args.allow_mixed)
    for path in written:
        print(path)


COMMANDS = {"env": run_env, "prepare": run_prepare, "bench": run_bench, "verify": run_verify,
            "formats": run_formats, "report": run_report}


# ------------------------------------------------------------------------------- libraries' own lines
@contextmanager
def quiet_libraries():
    """Keep what libraries print on their own off the terminal while a command runs.

    C libraries (libtiff, libpng, HDF5, DALI) write to file descriptor 2 directly, and so do the loader
    worker processes they run in: descriptor 2 goes to a temporary file that is dropped afterwards, while
    Python's ``sys.stderr`` (the one-line error, progress bars) keeps the terminal through a duplicate of
    the original descriptor. Python warnings are ignored unless the user asked for them (``-W``,
    ``PYTHONWARNINGS``). An unexpected exception (a bug, not bad input) replays the captured lines before
    its traceback. Nothing changes when ``sys.stderr`` is not descriptor 2 (e.g. a test's capture).
    """
    with warnings.catch_warnings():
        if not sys.warnoptions:
            warnings.simplefilter("ignore")
        if not _stderr_is_fd2():
            yield
            return
        sys.stderr.flush()
        saved = os.dup(2)
        terminal, original = os.fdopen(saved, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                                       closefd=False), sys.stderr
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            sys.stderr = terminal
            try:
                yield
            except (ThesisError, KeyboardInterrupt):
                raise
            except BaseException:   # a bug, not bad input: what the libraries said may explain it
                sink.seek(0)
                terminal.write(sink.read().decode(errors="replace"))
                raise
            finally:
                terminal.flush()
                sys.stderr = original
                os.dup2(saved, 2)
                os.close(saved)


def _stderr_is_fd2() -> bool:
    try:
        return sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            print(f"usage: {PROG} COMMAND [options]\n\n{overview()}")
            return 0
        with quiet_libraries():
            COMMANDS[args.command](args)
    except ThesisError as exc:
        print(exc.one_line(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
