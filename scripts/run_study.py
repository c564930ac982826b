"""`make run`: the whole study in one command, from prepared data to the chapter-3 tables.

Steps: record the environment; prepare every dataset in the stores the runnable loaders read; execute
`notebooks/04_benchmark.ipynb` (papermill) for every loader that can run here and every dataset; then
`notebooks/05_results.ipynb` on the rows just measured. Everything lands in `runs/<timestamp>/`:
`notebooks/` (the executed notebooks), `results.csv` (+ `results.csv.env.jsonl`), `figures/` (tables and
figures, 04's timing figures too), `report.html` (notebooks 05 and 06 as one page), `environment.json`,
`skipped.md` (loaders that cannot run here, with the reason) and `summary.md`.
The profile's `cold` loaders also run with a cold page cache (bench --cold) when 04 takes a `cold` parameter.
The fast loaders (:data:`RANKS`) also run on cifar10 with 2 ranks on the CPU (torchrun, gloo).
Stores go to the profile's data folder (quick: `data/quick/`), so the two profiles never rebuild each other's.

    python scripts/run_study.py [--profile quick|thesis] [--loaders a,b] [--datasets a,b]

Exit status: 0 when every step ran, 1 when a step failed (the summary names it), 2 for bad options.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from thesislib.atomic import write_text  # standard library only: the other imports stay lazy
from thesislib.progress import StepClock

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# quick: small enough to finish in minutes on 2 CPU cores; thesis: the full protocol of chapter 3.
# Three repeats at least: with two, a 95% Student-t interval is 12.7 standard errors wide (df = 1).
PROFILES = {
    "quick": {"scales": {"cifar10": 0.02, "tinyimagenet": 0.01, "masks": 0.02}, "epochs": 1, "repeats": 3,
              "batch_size": 64, "num_workers": 0, "model": "small", "seed": 0, "data_dir": "data/quick",
              "cold": ("files",)},
    "thesis": {"scales": {"cifar10": 1.0, "tinyimagenet": 1.0, "masks": 1.0}, "epochs": 3, "repeats": 10,
               "batch_size": 128, "num_workers": 0, "model": "small", "seed": 0, "data_dir": "data",
               "cold": ("files", "numpy", "hdf5", "zarr", "torchvision")},
}


class Study:
    """The steps of one run and what became of each: ok, failed (with the reason) or skipped."""

    def __init__(self, profile: str, run_dir: Path):
        """``run_dir``: a new folder (see :func:`new_run_dir`); the notebooks go to its ``notebooks/``."""
        self.profile, self.settings, self.run_dir = profile, PROFILES[profile], run_dir
        self.results = run_dir / "results.csv"
        self.steps, self.available, self.skipped = [], {}, {}
        self.clock = StepClock(1)   # its total is set once the steps are known (see :func:`run`)
        (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)

    def step(self, label: str, action) -> bool:
        """Run ``action()`` after a line "step k/n, elapsed, about ... left"; record ok/failed and its time."""
        print(self.clock.begin(label) + " ...", flush=True)
        start = time.perf_counter()
        try:
            action()
            status, note = "ok", ""
        except Exception as exc:  # one failed step must not stop the others: it is reported at the end
            status, note = "FAILED", _reason(exc)
        seconds = time.perf_counter() - start
        self.steps.append((label, status, seconds, note))
        self.clock.end()
        print(f"     {status} in {seconds:.1f} s{': ' + note if note else ''}", flush=True)
        return status == "ok"

    def skip_steps(self, count: int) -> None:
        """``count`` planned steps will not run (e.g. benchmarks of a dataset that failed to prepare)."""
        self.clock.total -= count


def new_run_dir(runs: Path, stamp: str) -> Path:
    """Create and return ``runs/<stamp>``, or ``runs/<stamp>-2``, ``-3``, … if a run started in the same
    second took it (creating the folder is atomic, so two runs never share one)."""
    for number in range(1, 1000):
        run_dir = runs / (stamp if number == 1 else f"{stamp}-{number}")
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError(f"{runs}: 999 runs named {stamp}*: clean up the runs folder")


def _reason(exc) -> str:
    """One line: the command line's ``error: ...`` for a ThesisError (in a notebook too: papermill's
    message ends with it), else the exception's name and the last line of its message."""
    name, value = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    lines = str(value).strip().splitlines() or [""]
    text = f"error: {lines[-1]}" if name == "ThesisError" else f"{name}: {lines[-1]}"
    return text if len(text) <= 240 else text[:239] + "…"


def record_environment(study: Study) -> None:
    """Write environment.json; note in ``study.available`` which loaders can run here (or why not)."""
    from thesislib import envinfo, loaders

    environment = envinfo.environment(study.settings["data_dir"])
    study.available = loaders.availability()
    write_text(study.run_dir / "environment.json",
               json.dumps({"profile": study.profile, "settings": study.settings, "environment": environment,
                           "loaders": study.available}, indent=2, default=list) + "\n")


def prepare(study: Study, dataset: str, stores: list) -> None:
    s = study.settings
    command = [sys.executable, "-m", "thesislib", "prepare", "--dataset", dataset,
               "--scale", str(s["scales"][dataset]), "--stores", ",".join(stores),
               "--seed", str(s["seed"]), "--data-dir", s["data_dir"]]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE)
    tail = b""
    for chunk in iter(lambda: process.stderr.read1(4096), b""):   # progress bars pass straight through
        sys.stderr.buffer.write(chunk)
        sys.stderr.flush()
        tail = (tail + chunk)[-2000:]
    if process.wait() != 0:
        lines = tail.decode(errors="replace").replace("\r", "\n").strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"prepare exited with status {process.returncode}")


def execute(notebook: str, output: Path, parameters: dict) -> None:
    """Run ``notebooks/<notebook>`` with papermill from the repository root, saving it at ``output``."""
    import papermill

    papermill.execute_notebook(str(NOTEBOOKS / notebook), str(output), parameters=parameters, cwd=str(ROOT),
                               progress_bar=False, extra_arguments=["--IPKernelApp.log_level=ERROR"])


def benchmark(study: Study, dataset: str, loader: str, cold: bool) -> None:
    s = study.settings
    parameters = {"loader": loader, "dataset": dataset, "store": "", "epochs": s["epochs"],
                  "repeats": s["repeats"], "batch_size": s["batch_size"], "num_workers": s["num_workers"],
                  "model": s["model"], "device": "auto", "seed": s["seed"], "scale": s["scales"][dataset],
                  "data_dir": s["data_dir"], "results": str(study.results)}
    if cold:
        parameters["cold"] = True
    name = f"04_benchmark_{dataset}_{loader}{'_cold' if cold else ''}.ipynb"
    execute("04_benchmark.ipynb", study.run_dir / "notebooks" / name, parameters)


RANKS = {"ranks": 2, "loaders": ("numpy", "memory"), "dataset": "cifar10"}  # the torchrun step: fast loaders


def ranked_loaders(loaders: list, dataset: str) -> list:
    """The loaders of ``loaders`` that the torchrun step runs on ``dataset``."""
    return [name for name in loaders if name in RANKS["loaders"] and dataset == RANKS["dataset"]]


def benchmark_ranks(study: Study, dataset: str, loader: str, ranks: int) -> None:
    """`torchrun --standalone --nproc-per-node RANKS -m thesislib bench` on the CPU (gloo): one row per rank
    and repeat in the study's results, ``world_size`` = RANKS."""
    s = study.settings
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
               "-m", "thesislib", "bench", "--loader", loader, "--dataset", dataset, "--device", "cpu",
               "--scale", str(s["scales"][dataset]), "--epochs", str(s["epochs"]), "--repeats", str(s["repeats"]),
               "--batch-size", str(s["batch_size"]), "--num-workers", str(s["num_workers"]), "--model", s["model"],
               "--seed", str(s["seed"]), "--data-dir", s["data_dir"], "--results", str(study.results)]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // ranks))}
    done = subprocess.run(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        raise RuntimeError(errors[0] if errors else f"torchrun exited with status {done.returncode}")


def report(study: Study) -> None:
    if not study.results.is_file():
        raise RuntimeError("no benchmark wrote a row, so there is nothing to report")
    execute("05_results.ipynb", study.run_dir / "notebooks" / "05_results.ipynb",
            {"results": str(study.results), "out": str(study.run_dir / "figures")})


def report_page(study: Study) -> None:
    """``report.html``: the run's notebooks 05 (and 06) as one self-contained page."""
    from thesislib.report.html import html_page

    html_page(study.run_dir)


def notebook_takes(parameter: str) -> bool:
    """Whether 04_benchmark.ipynb declares ``parameter`` (papermill would inject an unknown one silently)."""
    import papermill

    return parameter in papermill.inspect_notebook(str(NOTEBOOKS / "04_benchmark.ipynb"))


def run(study: Study, loaders: list, datasets: list) -> None:
    from thesislib.loaders import DEFAULT_STORES

    cold_candidates = [name for name in loaders if name in study.settings["cold"]]
    study.clock.total = (1 + len(datasets) * (1 + len(loaders) + len(cold_candidates)) + 2   # until known
                         + sum(len(ranked_loaders(loaders, dataset)) for dataset in datasets))
    study.step("record the environment and which loaders can run here", lambda: record_environment(study))
    study.skipped = {name: study.available.get(name, "availability unknown (see the failed step)")
                     for name in loaders if study.available.get(name) != "available"}
    runnable = [name for name in loaders if name not in study.skipped]
    for name, why in study.skipped.items():
        print(f"     skipped loader {name}: {why}")
    cold = [name for name in runnable if name in study.settings["cold"]]
    if cold and not notebook_takes("cold"):
        print("     no cold-cache runs: 04_benchmark.ipynb has no `cold` parameter")
        cold = []
    study.clock.total = (1 + len(datasets) * (1 + len(runnable) + len(cold)) + 2
                         + sum(len(ranked_loaders(runnable, dataset)) for dataset in datasets))
    for dataset in datasets:
        stores = sorted({DEFAULT_STORES[name] for name in runnable})
        if not stores or not study.step(f"prepare {dataset} (scale {study.settings['scales'][dataset]}) "
                                        f"into {', '.join(stores)}", lambda: prepare(study, dataset, stores)):
            study.skip_steps(len(runnable) + len(cold) + len(ranked_loaders(runnable, dataset))
                             + (0 if stores else 1))
            continue
        for loader in runnable:
            study.step(f"benchmark {loader} on {dataset}", lambda: benchmark(study, dataset, loader, False))
        for loader in cold:
            study.step(f"benchmark {loader} on {dataset}, cold page cache",
                       lambda: benchmark(study, dataset, loader, True))
        for loader in ranked_loaders(runnable, dataset):
            study.step(f"benchmark {loader} on {dataset}, {RANKS['ranks']} ranks (torchrun, CPU)",
                       lambda: benchmark_ranks(study, dataset, loader, RANKS["ranks"]))
    if study.step("report: 05_results.ipynb", lambda: report(study)):
        study.step("report page: report.html (notebooks 05 and 06, self-contained)", lambda: report_page(study))
    else:
        study.skip_steps(1)


def write_summary(study: Study, started: float) -> str:
    """summary.md and skipped.md in the run folder; returns the summary text."""
    skipped = "| loader | why it was skipped |\n| --- | --- |\n" + "".join(
        f"| {name} | {why} |\n" for name, why in study.skipped.items()) if study.skipped else "none\n"
    write_text(study.run_dir / "skipped.md", f"# Loaders skipped on this machine\n\n{skipped}")
    steps = "| # | step | status | seconds | note |\n| --- | --- | --- | --- | --- |\n" + "".join(
        f"| {i} | {label} | {status} | {seconds:.1f} | {note.replace('|', '/')} |\n"
        for i, (label, status, seconds, note) in enumerate(study.steps, 1))
    failed = sum(status != "ok" for _, status, _, _ in study.steps)
    text = (f"# Run {study.run_dir.name} (profile {study.profile})\n\n{len(study.steps)} steps, "
            f"{failed} failed, {time.perf_counter() - started:.0f} s in all. The report: report.html (one "
            "page) and figures/05_report.md; "
            f"the executed notebooks (failed ones too, with their error): notebooks/.\n\n{steps}\n"
            f"## Skipped loaders\n\n{skipped}")
    write_text(study.run_dir / "summary.md", text)
    return text


def parse_args(argv=None):
    from thesislib.datasets import DATASETS
    from thesislib.loaders import LOADERS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--loaders", default=",".join(LOADERS), help="comma-separated (default: all)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated (default: all)")
    args = parser.parse_args(argv)
    args.loaders, args.datasets = args.loaders.split(","), args.datasets.split(",")
    for kind, names, valid in (("loader", args.loaders, LOADERS), ("dataset", args.datasets, DATASETS)):
        unknown = [name for name in names if name not in valid]
        if unknown:
            parser.error(f"unknown {kind} {', '.join(unknown)}: choose from {', '.join(valid)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    run_dir = new_run_dir(ROOT / "runs", datetime.now().strftime("%Y%m%d-%H%M%S"))
    study = Study(args.profile, run_dir)
    print(f"study, profile {args.profile}: {run_dir.relative_to(ROOT)}", flush=True)
    run(study, args.loaders, args.datasets)
    print("\n" + write_summary(study, started))
    return 1 if any(status != "ok" for _, status, _, _ in study.steps) else 0


if __name__ == "__main__":
    sys.exit(main())
