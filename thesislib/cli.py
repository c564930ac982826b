"""``python -m thesislib COMMAND``: the command line of the contract.

Each command parses its options here and calls one function of the module that does the work. A
:class:`~thesislib.errors.ThesisError` (bad input, missing data, missing GPU, corrupt store) is printed as
one line on stderr and exits with status 2, with no traceback.
"""

import argparse
import sys

from thesislib.errors import ThesisError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit status 2), like every other bad input."""

    def error(self, message):
        raise ThesisError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text):
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _scale(text):
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from exc
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m thesislib", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("env", help="hardware, software and which loaders can run here")

    prep = commands.add_parser("prepare", help="build a dataset into the named stores")
    prep.add_argument("--dataset", required=True, help="cifar10, tinyimagenet or masks")
    prep.add_argument("--source", default="synthetic",
                      help="'synthetic' (default) or the path of the real archive or folder")
    prep.add_argument("--scale", type=_scale, default=1.0, help="fraction of the full split sizes")
    prep.add_argument("--stores", default="all", help="comma-separated store names, or 'all'")
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--data-dir", default="data")
    prep.add_argument("--force", action="store_true", help="rebuild stores that are already complete")

    bench = commands.add_parser("bench", help="run the training protocol and append one row per repeat")
    bench.add_argument("--loader", required=True)
    bench.add_argument("--dataset", required=True)
    bench.add_argument("--store", default=None, help="default: the loader's default store")
    bench.add_argument("--epochs", type=_positive_int, default=1)
    bench.add_argument("--repeats", type=_positive_int, default=1)
    bench.add_argument("--batch-size", type=_positive_int, default=128)
    bench.add_argument("--num-workers", type=_non_negative_int, default=0)
    bench.add_argument("--model", default="small", help="small, resnet18, none or sleep:MS")
    bench.add_argument("--optimizer", default="sgd", help="sgd or rmsprop")
    bench.add_argument("--lr", type=float, default=0.05)
    bench.add_argument("--device", default="auto", help="auto, cpu or cuda")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--scale", type=_scale, default=1.0)
    bench.add_argument("--data-dir", default="data")
    bench.add_argument("--results", default="results/results.csv", help=".csv or .parquet")
    bench.add_argument("--pin-memory", action="store_true")
    bench.add_argument("--cold", action="store_true",
                       help="evict the store's files from the page cache before each epoch")

    fmt = commands.add_parser("formats", help="the image-format size table")
    fmt.add_argument("--image", default=None, help="default: the largest photo a dependency ships")
    fmt.add_argument("--out", default=None, help="write the table to this CSV file")

    rep = commands.add_parser("report", help="tables and figures from results")
    rep.add_argument("--results", nargs="+", default=["results/results.csv"])
    rep.add_argument("--out", default="figures")
    rep.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    rep.add_argument("--allow-mixed", action="store_true",
                     help="accept results written by different thesislib versions (one table each is safer)")
    return parser


def _from_cwd(path) -> str:
    """Command-line paths are relative to the working folder (library calls take them from the project root)."""
    from pathlib import Path

    return str(Path(path).expanduser().resolve())


def run_env(args):
    from thesislib import envinfo

    print(envinfo.format_environment())


def run_prepare(args):
    from thesislib.prepare import prepare
    from thesislib.stores import parse_store_list

    prepare(args.dataset, source=args.source, scale=args.scale, stores=parse_store_list(args.stores),
            seed=args.seed, data_dir=_from_cwd(args.data_dir), force=args.force, progress=True)


def run_bench(args):
    from thesislib.bench import BenchConfig, run_protocol
    from thesislib.distributed import is_main

    config = BenchConfig(
        loader=args.loader, dataset=args.dataset, store=args.store, epochs=args.epochs,
        repeats=args.repeats, batch_size=args.batch_size, num_workers=args.num_workers,
        model=args.model, optimizer=args.optimizer, lr=args.lr, device=args.device, seed=args.seed,
        scale=args.scale, data_dir=_from_cwd(args.data_dir), pin_memory=args.pin_memory, cold=args.cold)
    rows = run_protocol(config, results=_from_cwd(args.results), progress=True)
    if is_main():  # under torchrun, rank 0 wrote every rank's rows
        print(f"wrote {len(rows)} row(s) to {args.results}")


def run_formats(args):
    from thesislib import imageformats

    out = imageformats.check_table_path(_from_cwd(args.out)) if args.out else None  # before minutes of encoding
    table = imageformats.format_table(_from_cwd(args.image) if args.image else None)
    if out:
        imageformats.write_table(table, out)
    print(imageformats.format_for_terminal(table))


def run_report(args):
    from thesislib import report

    written = report.build_report([_from_cwd(p) for p in args.results], _from_cwd(args.out),
                                   confidence=args.confidence, allow_mixed=args.allow_mixed)
    for path in written:
        print(path)


COMMANDS = {"env": run_env, "prepare": run_prepare, "bench": run_bench,
            "formats": run_formats, "report": run_report}


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except ThesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
