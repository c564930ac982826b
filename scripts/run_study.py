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

    python scripts/run_study.py [--profile quick|thesis|study] [--loaders a,b] [--datasets a,b]
    python scripts/run_study.py --profile study [--max-minutes 55] [--plan-only] [--tiers ...] [--models ...]

The `study` profile (issue 15) is different: a grid of combinations (thesislib.studyplan: tiers, cost
model, cut rules), resumable (a combination the results file holds complete is skipped, a partial one runs
its missing repeats) and chunked (no combination starts after --max-minutes); it writes to
results/measured/<machine>/results.csv and its summary.md, and the run folder's summary.md.

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
from thesislib.studyplan import STUDY, TIERS as TIER_NAMES

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
    # study: issue 15's measured study; its grid, tiers and cut rules are thesislib.studyplan's (see there).
    "study": {**STUDY, "model": "small", "cold": ()},
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
    execute("06_conclusions.ipynb", study.run_dir / "notebooks" / "06_conclusions.ipynb",
            {"results": str(study.results)})


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


# ----------------------------------------------------------------------------------- the study profile
STUDY_NOTE = ("the `study` profile (issue 15): resumable, chunked, with the cut rules of thesislib.studyplan; "
              "results go to results/measured/<machine>/results.csv")


def loader_stores(loaders: list) -> dict:
    """loader -> the stores it reads, for the ``loaders`` that can run here (others are left out)."""
    from thesislib.loaders import check_available
    from thesislib.loaders.base import check_store_kind
    from thesislib.stores import STORES, get_store_spec

    readable = {}
    for name in loaders:
        loader = check_available(name)
        readable[name] = [store for store in STORES if _reads(check_store_kind, loader, get_store_spec(store))]
    return readable


def _reads(check, loader, spec) -> bool:
    try:
        check(loader, spec)
        return True
    except Exception:
        return False


def study_data_dir(settings: dict, scale: float) -> str:
    """Stores of one scale live together: ``data/study/scale-<scale>/<dataset>/<store>``."""
    return f"{settings['data_dir']}/scale-{scale:g}"


def prepare_study_store(settings: dict, c) -> None:
    """Prepare ``c``'s store at its scale (``prepare`` skips a store that is already complete)."""
    command = [sys.executable, "-m", "thesislib", "prepare", "--dataset", c.dataset, "--scale", f"{c.scale:g}",
               "--stores", c.store, "--seed", str(settings["seed"]), "--data-dir", study_data_dir(settings, c.scale),
               "--quiet"]
    _run_checked(command, "prepare")


def bench_command(settings: dict, c, repeats: int, results: Path) -> list:
    """The command line of ``repeats`` repeats of combination ``c`` (torchrun for more than one rank)."""
    head = [sys.executable, "-m"]
    if c.world_size > 1:
        head += ["torch.distributed.run", "--standalone", "--nproc-per-node", str(c.world_size), "-m"]
    command = head + ["thesislib", "bench", "--loader", c.loader, "--dataset", c.dataset, "--store", c.store,
                      "--epochs", str(c.epochs), "--repeats", str(repeats), "--batch-size", str(c.batch_size),
                      "--num-workers", str(c.num_workers), "--model", c.model, "--device", c.device,
                      "--seed", str(c.seed), "--scale", f"{c.scale:g}",
                      "--data-dir", study_data_dir(settings, c.scale), "--results", str(results), "--quiet"]
    return command + (["--cold"] if c.cache_state == "cold" else [])


def _run_checked(command: list, what: str, env=None) -> None:
    done = subprocess.run(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(errors[0] if errors else lines[-1] if lines else f"{what} exited {done.returncode}")


def run_combination(settings: dict, c, repeats: int, results: Path) -> None:
    prepare_study_store(settings, c)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // c.world_size))}
    _run_checked(bench_command(settings, c, repeats, results), "bench", env)


def study_settings(args) -> dict:
    """The profile's settings with the command line's overrides (a partial study says so in its summary)."""
    from thesislib.studyplan import STUDY

    settings = dict(STUDY)
    if args.scale is not None:
        settings["scales"] = {name: args.scale for name in settings["scales"]}
    if args.repeats is not None:
        settings["repeats"] = args.repeats
    if args.max_minutes is not None:
        settings["chunk_minutes"] = args.max_minutes
    if args.data_dir is not None:
        settings["data_dir"] = args.data_dir
    return settings


def make_plan(args, settings: dict, available: list, costs=None):
    from thesislib.datasets import DATASETS
    from thesislib.loaders import DEFAULT_STORES
    from thesislib.studyplan import cut_plan, full_plan

    full = [c for c in full_plan(loader_stores(available), DEFAULT_STORES, args.datasets, settings)
            if c.tier in args.tiers and c.model in args.models]
    return cut_plan(full, DATASETS, settings["repeats"], settings["budget_s"], costs)


def costs_path(args, results: Path):
    """Where the study's measured costs live (None: ``--costs assumed``, the assumed cost model)."""
    if args.costs == "assumed":
        return None
    return Path(args.costs).resolve() if args.costs else results.parent / "costs.json"


def study_costs(study: Study, args, settings: dict, results: Path, available: list):
    """The costs measured on this machine (``costs.json`` beside the results); measured first when the
    file is missing (a step of its own), unless only the plan is asked for."""
    from thesislib import studycost
    from thesislib.loaders import DEFAULT_STORES

    path = costs_path(args, results)
    if path is None:
        return None
    costs = studycost.load(path)
    if costs is None and not args.plan_only:
        def measure():
            measured = studycost.calibrate(loader_stores(available), DEFAULT_STORES, args.datasets,
                                           ROOT / settings["data_dir"] / "calibration", seed=settings["seed"])
            studycost.save(measured, path)
        study.clock.total += 1
        study.step(f"measure the cost model on small stores ({path.name})", measure)
        costs = studycost.load(path)
    if costs is None:
        print(f"     no {path.name} yet: the plan uses the assumed costs", flush=True)
    return costs


def run_study_profile(args, study: Study, started: float) -> int:
    """Plan, skip what the results hold, run the missing repeats until the chunk's minutes are spent, then
    write the summaries and execute notebooks 05 and 06 on the results."""
    from thesislib.studyplan import completed_repeats, missing_repeats, read_table, this_machine

    settings = study_settings(args)
    machine = args.machine or this_machine()
    results = Path(args.results).resolve() if args.results else ROOT / "results" / "measured" / machine / "results.csv"
    results.parent.mkdir(parents=True, exist_ok=True)
    study.step("record the environment and which loaders can run here", lambda: record_environment(study))
    study.skipped = {n: why for n, why in study.available.items() if n in args.loaders and why != "available"}
    available = [n for n in args.loaders if n not in study.skipped]
    plan = make_plan(args, settings, available, study_costs(study, args, settings, results, available))
    todo = missing_repeats(plan.combinations, completed_repeats(read_table(results)), settings["repeats"])
    print(f"     {len(plan.combinations)} combinations planned, {len(todo)} not complete in {results}", flush=True)
    study.clock.total = 1 + len(todo)
    deadline = started + 60 * settings["chunk_minutes"]
    for number, (c, repeats) in enumerate(todo):
        if args.plan_only or time.perf_counter() > deadline:
            study.skip_steps(len(todo) - number)
            break
        study.step(f"{c.label()}: {repeats} repeat(s)", lambda: run_combination(settings, c, repeats, results))
    if not (args.plan_only or args.no_report) and results.is_file():
        study.results = results
        study.clock.total += 1
        study.step("report: notebooks 05 and 06 on the study's results", lambda: report(study))
    text = write_study_summary(study, args, settings, plan, machine, results, started)
    print("\n" + text)
    return 1 if any(status != "ok" for _, status, _, _ in study.steps) else 0


def write_study_summary(study: Study, args, settings: dict, plan, machine: str, results: Path,
                        started: float) -> str:
    """summary.md in the run folder and beside the results (the state of the whole study), plus the
    run's own steps in the run folder."""
    from thesislib.bench import git_commit
    from thesislib.studyplan import read_table, store_sizes, summary_markdown

    cpu = next((line.split(":", 1)[1] for line in _cpuinfo() if line.lower().startswith("model name")), "")
    notes = list(args.note or [])
    partial = args.scale is not None or args.repeats is not None or args.tiers != list(TIER_NAMES) or \
        args.models != ["none", "small"] or sorted(args.datasets) != sorted(settings["scales"])
    if partial:
        notes.insert(0, f"loaders {','.join(args.loaders)}, data sets {','.join(args.datasets)}, tiers "
                        f"{','.join(args.tiers)}, models {','.join(args.models)}, scales {settings['scales']}, "
                        f"{settings['repeats']} repeats")
    facts = {"commit": git_commit(), "machine": machine, "cpu_model": cpu or "unknown CPU",
             "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
             "results": results.relative_to(ROOT) if results.is_relative_to(ROOT) else results,
             "skipped": study.skipped, "notes": notes, "partial": partial}
    text = summary_markdown(plan, read_table(results), settings, facts)
    if not args.plan_only:
        write_text(results.parent / "summary.md", text)
        stores = results.parent / "stores.csv"
        previous = read_table(stores)
        write_text(stores, store_sizes(ROOT / settings["data_dir"], previous).to_csv(index=False))
    steps = "| # | step | status | seconds | note |\n| --- | --- | --- | --- | --- |\n" + "".join(
        f"| {i} | {label} | {status} | {seconds:.1f} | {note.replace('|', '/')} |\n"
        for i, (label, status, seconds, note) in enumerate(study.steps, 1))
    run_text = (f"{text}\n## This run ({study.run_dir.name}, {time.perf_counter() - started:.0f} s, chunk budget "
                f"{settings['chunk_minutes']} min)\n\n{steps}")
    write_text(study.run_dir / "summary.md", run_text)
    return run_text


def _cpuinfo() -> list:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def parse_args(argv=None):
    from thesislib.datasets import DATASETS
    from thesislib.loaders import LOADERS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--loaders", default=",".join(LOADERS), help="comma-separated (default: all)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated (default: all)")
    study = parser.add_argument_group("the study profile (resumable; see thesislib.studyplan)")
    study.add_argument("--max-minutes", type=float, default=None,
                       help=f"start no combination after this many minutes (default {STUDY['chunk_minutes']})")
    study.add_argument("--results", default=None, help="default: results/measured/<machine>/results.csv")
    study.add_argument("--machine", default=None, help="default: CPU family and cores, e.g. epyc-2core")
    study.add_argument("--tiers", default=",".join(TIER_NAMES), help="comma-separated subset of the tiers")
    study.add_argument("--models", default="none,small", help="comma-separated: none, small")
    study.add_argument("--scale", type=float, default=None, help="override every data set's scale (partial)")
    study.add_argument("--repeats", type=int, default=None, help="override the 10 repeats (partial)")
    study.add_argument("--data-dir", default=None, help=f"where the stores go (default {STUDY['data_dir']})")
    study.add_argument("--costs", default=None,
                       help="the measured cost model (default: costs.json beside the results, measured when "
                            "missing); 'assumed' plans with the assumed costs")
    study.add_argument("--note", action="append", help="a line for the summary (e.g. 'busy machine')")
    study.add_argument("--plan-only", action="store_true", help="print the plan and its cuts; run nothing")
    study.add_argument("--no-report", action="store_true", help="do not execute notebooks 05 and 06 afterwards")
    args = parser.parse_args(argv)
    args.loaders, args.datasets = args.loaders.split(","), args.datasets.split(",")
    args.tiers, args.models = args.tiers.split(","), args.models.split(",")
    for kind, names, valid in (("tier", args.tiers, TIER_NAMES), ("model", args.models, ("none", "small"))):
        if any(name not in valid for name in names):
            parser.error(f"unknown {kind} in {','.join(names)}: choose from {', '.join(valid)}")
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
    if args.profile == "study":
        return run_study_profile(args, study, started)
    run(study, args.loaders, args.datasets)
    print("\n" + write_summary(study, started))
    return 1 if any(status != "ok" for _, status, _, _ in study.steps) else 0


if __name__ == "__main__":
    sys.exit(main())
