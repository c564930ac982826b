"""The measured study (issue 15): which combinations it runs, what each costs, and what it cuts.

A *combination* is one set of the results' config columns (:data:`KEY_COLUMNS`); the study runs each
``repeats`` times. The plan is a pure function of the profile (:data:`STUDY`) and the loaders that run here,
so a resumed run plans the same combinations; what the results file already holds is counted per
combination (:func:`completed_repeats`) and only the missing repeats run again.

Tiers (in this order; a tier's combinations are cut before an earlier tier's):

* ``thesis``: model ``small``, every loader on its default store and every data set (the thesis's table);
* ``stores``: model ``none`` (the loader alone), every loader on every store it reads (all codecs, the npy
  uint8/float16/float32 stores, the new formats), plus model ``small`` on the three npy stores (float16
  against float32 needs accuracy and training time);
* ``cold``: model ``none``, every loader on its default store with a cold page cache;
* ``workers``: model ``none``, ``num_workers`` 2 for the loaders whose reads decode (:data:`STUDY`'s
  ``workers_loaders``) and numpy as the raw reference;
* ``ranks``: model ``small``, 2 ranks (torchrun, gloo) for the fast loaders (``rank_loaders``).

Cut rules (:func:`cut_plan`), stated in the summary with every combination they touched:

1. *Per-combination cap*: a combination whose estimated ``repeats`` exceed the cap runs at the largest
   scale of :data:`SCALE_LADDER` (at most the data set's study scale) whose estimate fits.
2. *The cap is the largest of* :data:`CAPS_S` *for which the whole plan (preparation included) fits in*
   ``budget_s``: three hours of the machine, under the issue's "about four", so that two working sessions'
   chunks (each at most an hour, plus preparation) complete it with time left to report.
3. If even the smallest cap does not fit, whole combinations are left out from the end of the tier order
   (ranks first, thesis last) until the plan fits.

The estimate (:func:`estimate_s`) takes the seconds per image measured on this machine before the study
(:mod:`thesislib.studycost`, ``costs.json`` beside the results, committed with them so that a resumed study
plans the same combinations); only where a cost was not measured does it fall back to the *assumed*
per-pixel costs of :data:`READ_NS` and friends. The cold-cache factor and the (absent) speed-up of workers and
ranks stay assumed. The summary prints, beside each estimate, what the combination took when it ran.
"""

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

KEY_COLUMNS = ("dataset", "scale", "loader", "store", "model", "epochs", "batch_size", "num_workers",
               "cache_state", "world_size", "device", "seed")

STUDY = {
    "scales": {"cifar10": 1.0, "tinyimagenet": 1.0, "masks": 0.1},  # masks: 800 + 200 images of 512x512
    "epochs": 1, "repeats": 10, "batch_size": 128, "seed": 0, "device": "cpu", "data_dir": "data/study",
    "budget_s": 3 * 3600, "chunk_minutes": 55,
    "workers_loaders": ("files", "torchvision", "parquet", "tfrecord", "webdataset", "numpy"),
    "rank_loaders": ("numpy", "memory"), "rank_datasets": ("cifar10", "tinyimagenet"),
}
TIERS = ("thesis", "stores", "cold", "workers", "ranks")
SCALE_LADDER = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
CAPS_S = (900, 600, 300, 180, 120, 60)

# Assumed costs on one core of a 2-core machine (the plan's model, not measured figures):
# reading one image, in ns per pixel, by store; a fixed cost per image, in microseconds, by loader.
READ_NS = {"files-jpeg": 15, "files-png": 25, "files-bmp": 4, "files-tiff": 6, "files-webp": 30,
           "files-jp2": 150, "npy-uint8": 1, "npy-float16": 3, "npy-float32": 4, "hdf5": 2, "zarr": 3,
           "lmdb": 2, "parquet": 25, "tfrecord": 15, "webdataset": 15}
IMAGE_US = {"files": 60, "torchvision": 80, "dali": 60, "parquet": 20, "tfrecord": 20, "tfdata": 20,
            "webdataset": 30}  # others: 2
MODEL_NS = {"none": 1, "small": 150}   # training step per pixel (forward + backward for small)
WRITE_NS = {"files-jpeg": 30, "files-png": 100, "files-bmp": 10, "files-tiff": 20, "files-webp": 150,
            "files-jp2": 600, "parquet": 100, "tfrecord": 30, "webdataset": 30}  # others: 5
WRITE_IMAGE_US = {"files": 100}  # per file written; others: 5
PROCESS_S, REPEAT_S = 5.0, 1.0   # starting a bench process; building one repeat's loaders and model
SPEEDUP = {"workers": 1.0, "ranks": 1.0}   # assumed: none (2 cores; the plan must not underestimate)
COLD_FACTOR = 1.3


@dataclass(frozen=True)
class Combination:
    """One row of the plan: the config columns of :data:`KEY_COLUMNS` plus its tier."""
    tier: str
    dataset: str
    loader: str
    store: str
    model: str
    scale: float
    cache_state: str = "warm"
    num_workers: int = 0
    world_size: int = 1
    epochs: int = 1
    batch_size: int = 128
    device: str = "cpu"
    seed: int = 0

    def key(self) -> tuple:
        return combination_key(vars(self))

    def label(self) -> str:
        extra = [f"scale {self.scale:g}", self.model, self.cache_state]
        extra += [f"{self.num_workers} workers"] if self.num_workers else []
        extra += [f"{self.world_size} ranks"] if self.world_size > 1 else []
        return f"{self.loader}/{self.store} on {self.dataset} ({', '.join(extra)})"


@dataclass
class Plan:
    """The combinations to run, what the cut rules did, and the cap they settled on."""
    combinations: list
    cap_s: float
    reduced: list = field(default_factory=list)    # (combination, full-scale estimate in s)
    dropped: list = field(default_factory=list)    # (combination, reason)
    estimate_s: float = 0.0
    costs: object = None                           # thesislib.studycost.Costs, or None (assumed costs)


def combination_key(values: dict) -> tuple:
    """The identity of a combination, from a results row or a :class:`Combination` (scale rounded)."""
    return tuple(round(float(values[c]), 6) if c == "scale" else
                 int(values[c]) if c in ("epochs", "batch_size", "num_workers", "world_size", "seed") else
                 str(values[c]) for c in KEY_COLUMNS)


def machine_name(cpu_model: str, cores: int) -> str:
    """A short folder name for a machine: the CPU family word of ``cpu_model`` (vendor and trademark
    words dropped) and the core count, e.g. ``AMD EPYC 7763 64-Core Processor``, 2 -> ``epyc-2core``."""
    noise = {"amd", "intel", "genuineintel", "authenticamd", "cpu", "processor", "apple", "arm", "the"}
    words = re.findall(r"[a-z0-9]+", re.sub(r"\((r|tm)\)", " ", cpu_model.lower()))
    family = next((w for w in words if w not in noise and not w.endswith("ghz")), "cpu")
    return f"{family}-{cores}core"


def this_machine() -> str:
    """:func:`machine_name` of this host: /proc/cpuinfo's first ``model name`` (else platform.processor())
    and the cores this process may use."""
    import os
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1]
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return machine_name(model or platform.processor() or "cpu", cores)


def full_plan(loader_stores: dict, defaults: dict, datasets, settings: dict = STUDY) -> list:
    """Every combination of the profile at the data sets' study scales, in tier order. ``loader_stores``:
    loader -> the stores it reads (loaders that run here only); ``defaults``: loader -> default store."""
    base = dict(epochs=settings["epochs"], batch_size=settings["batch_size"], device=settings["device"],
                seed=settings["seed"])
    plan = []
    for dataset in datasets:
        scale = settings["scales"][dataset]

        def add(tier, loader, store, model, **more):
            plan.append(Combination(tier, dataset, loader, store, model, scale, **base, **more))

        for loader in loader_stores:
            add("thesis", loader, defaults[loader], "small")
        for loader, stores in loader_stores.items():
            for store in stores:
                add("stores", loader, store, "none")
                if store.startswith("npy-") and loader == "numpy" and store != defaults[loader]:
                    add("stores", loader, store, "small")
        for loader in loader_stores:
            add("cold", loader, defaults[loader], "none", cache_state="cold")
        for loader in (name for name in settings["workers_loaders"] if name in loader_stores):
            add("workers", loader, defaults[loader], "none", num_workers=2)
        if dataset in settings["rank_datasets"]:
            for loader in (name for name in settings["rank_loaders"] if name in loader_stores):
                add("ranks", loader, defaults[loader], "small", world_size=2)
    return sorted(plan, key=lambda c: TIERS.index(c.tier))


def images(dataset_spec, scale: float) -> int:
    """Training plus validation images of a data set at ``scale`` (as ``prepare`` counts them)."""
    return sum(dataset_spec.split_sizes(scale).values())


def estimate_s(c: Combination, dataset_spec, repeats: int, costs=None) -> float:
    """Seconds for ``repeats`` repeats of ``c``: from the costs measured on this machine
    (:class:`thesislib.studycost.Costs`) where they hold ``c``'s loader, store and model, else from the
    module's assumed costs."""
    read, step = measured_per_image(c, costs)
    pixels = dataset_spec.size ** 2
    if read is None:
        read = READ_NS[c.store] * pixels * 1e-9 + IMAGE_US.get(c.loader, 2) * 1e-6
    if step is None:
        step = MODEL_NS[c.model] * pixels * 1e-9
    if c.cache_state == "cold":
        read *= COLD_FACTOR
    if c.num_workers:
        read /= SPEEDUP["workers"]
    per_image = (read + step) / (SPEEDUP["ranks"] if c.world_size > 1 else 1)
    return PROCESS_S + repeats * (REPEAT_S + c.epochs * images(dataset_spec, c.scale) * per_image)


def measured_per_image(c: Combination, costs) -> tuple:
    """(read, step) seconds per image measured for ``c`` (None where the costs do not hold them)."""
    if costs is None:
        return None, None
    return costs.read(c.dataset, c.loader, c.store), costs.step(c.dataset, c.model)


def prepare_s(dataset_spec, store: str, scale: float, costs=None) -> float:
    """Seconds to write ``store`` of a data set at ``scale`` (measured per image where ``costs`` hold it)."""
    measured = costs.write(dataset_spec.name, store) if costs is not None else None
    if measured is not None:
        return 2.0 + images(dataset_spec, scale) * measured
    per_image = WRITE_NS.get(store, 5) * dataset_spec.size ** 2 * 1e-9
    per_image += WRITE_IMAGE_US.get(store.split("-")[0], 5) * 1e-6
    return 2.0 + images(dataset_spec, scale) * per_image


def fit_scale(c: Combination, spec, repeats: int, cap_s: float, costs=None) -> Combination:
    """Rule 1: ``c`` at the largest ladder scale (at most its own) whose estimate fits ``cap_s``."""
    for scale in [s for s in SCALE_LADDER if s <= c.scale] or [c.scale]:
        if estimate_s(replace(c, scale=scale), spec, repeats, costs) <= cap_s:
            return replace(c, scale=scale)
    return replace(c, scale=min(SCALE_LADDER[-1], c.scale))


def plan_cost(combinations, specs: dict, repeats: int, costs=None) -> float:
    """Estimated seconds of running ``combinations`` and preparing every (data set, scale, store) they read."""
    stores = {(c.dataset, c.scale, c.store) for c in combinations}
    return (sum(estimate_s(c, specs[c.dataset], repeats, costs) for c in combinations)
            + sum(prepare_s(specs[d], store, scale, costs) for d, scale, store in stores))


def cut_plan(full: list, specs: dict, repeats: int, budget_s: float, costs=None) -> Plan:
    """Rules 1-3 of the module docstring applied to ``full`` (a :func:`full_plan`), with the costs
    measured on this machine (:mod:`thesislib.studycost`) where given."""
    for cap in CAPS_S:
        fitted = [fit_scale(c, specs[c.dataset], repeats, cap, costs) for c in full]
        if plan_cost(fitted, specs, repeats, costs) <= budget_s or cap == CAPS_S[-1]:
            break
    reduced = [(new, estimate_s(old, specs[old.dataset], repeats, costs))
               for old, new in zip(full, fitted) if new.scale != old.scale]
    kept, dropped = list(fitted), []
    while kept and plan_cost(kept, specs, repeats, costs) > budget_s:
        dropped.insert(0, (kept.pop(), f"over the {budget_s / 3600:g}-hour budget even at the {cap:g} s cap"))
    return Plan(kept, cap, reduced, dropped, plan_cost(kept, specs, repeats, costs), costs)


def repeat_records(rows) -> list:
    """One dict per repeat of a results DataFrame (the rows of a torchrun repeat's ranks count once), with
    the columns older files lack filled in (one process, warm cache)."""
    if rows is None or len(rows) == 0:
        return []
    rows = rows.assign(world_size=rows.get("world_size", 1), cache_state=rows.get("cache_state", "warm"))
    rows = rows.fillna({"world_size": 1}).assign(cache_state=rows["cache_state"].astype(object).fillna("warm"))
    return rows.drop_duplicates(["run_id", "repeat"]).to_dict("records")


def completed_repeats(rows) -> dict:
    """combination key -> repeats the results already hold (distinct (run_id, repeat) pairs)."""
    counts = {}
    for record in repeat_records(rows):
        key = combination_key(record)
        counts[key] = counts.get(key, 0) + 1
    return counts


def read_table(path):
    """The rows of a .csv or .parquet table (a results file, stores.csv) as written; None when the file is
    missing or empty (unlike the report's read_results, it does not refuse rows of mixed commits)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def missing_repeats(combinations, counts: dict, repeats: int) -> list:
    """(combination, repeats still to run) for each combination not yet complete, in plan order."""
    return [(c, repeats - counts.get(c.key(), 0)) for c in combinations if counts.get(c.key(), 0) < repeats]


def measured_s(rows, c: Combination) -> float:
    """Seconds of training the results hold for ``c`` (sum of total_train_s of its repeats; NaN if none)."""
    match = [r for r in repeat_records(rows) if combination_key(r) == c.key()]
    return sum(r["total_train_s"] for r in match) if match else math.nan


CUT_RULES = (
    "1. per-combination cap: a combination whose estimated repeats exceed the cap runs at the largest scale "
    "of {ladder} (at most its data set's study scale) whose estimate fits;\n"
    "2. the cap is the largest of {caps} s for which the whole plan, preparation included, fits in the "
    "{hours:g}-hour budget (chosen: {cap:g} s);\n"
    "3. if even the smallest cap does not fit, whole combinations are left out from the end of the tier order "
    "({tiers}) until the plan fits.\n"
    "{estimates}")

ESTIMATES_MEASURED = (
    "Estimates come from costs measured on this machine before the study ({source}: one epoch of every loader "
    "on every store it reads, and of the small model, on small stores; thesislib.studycost), with assumed "
    "factors for a cold page cache ({cold:g}x) and none for 2 workers or 2 ranks{failed}.")
ESTIMATES_ASSUMED = ("Estimates come from the cost model's assumed per-pixel costs (thesislib.studyplan), not from "
                     "measurements.")


def cut_rules_text(plan: Plan, settings: dict = STUDY) -> str:
    return CUT_RULES.format(ladder=", ".join(f"{s:g}" for s in SCALE_LADDER), caps=", ".join(map(str, CAPS_S)),
                            hours=settings["budget_s"] / 3600, cap=plan.cap_s, tiers=", ".join(TIERS),
                            estimates=estimates_text(plan.costs))


def estimates_text(costs) -> str:
    """Where the plan's estimates come from (measured costs, or the assumed ones)."""
    if costs is None:
        return ESTIMATES_ASSUMED
    failed = costs.facts.get("failed") or {}
    failed_text = (f"; not measured, so assumed: {', '.join(sorted(failed))}" if failed else "")
    source = f"costs.json, measured at commit `{str(costs.facts.get('commit', 'unknown'))[:12]}`"
    return ESTIMATES_MEASURED.format(source=source, cold=COLD_FACTOR, failed=failed_text)


def summary_markdown(plan: Plan, rows, settings: dict, facts: dict) -> str:
    """The study's summary: commit, machine, settings, cut rules, what the rules reduced or left out, the
    loaders that cannot run here, and what is done and what remains. ``facts``: commit, machine,
    cpu_model, cores, results, skipped (loader -> why), notes (list of lines), partial (bool)."""
    counts = completed_repeats(rows)
    repeats = settings["repeats"]
    done = [c for c in plan.combinations if counts.get(c.key(), 0) >= repeats]
    todo = missing_repeats(plan.combinations, counts, repeats)
    lines = [f"# Measured study on `{facts['machine']}`", "",
             f"- measured at commit(s): {row_commits(rows)}; this summary written at `{facts['commit'] or 'unknown'}`",
             f"- machine: `{facts['machine']}` = the CPU family word of `{facts['cpu_model'].strip()}` "
             f"(vendor and trademark words dropped) and the {facts['cores']} cores this process may use",
             f"- results: `{facts['results']}` (+ `.env.jsonl`), one row per repeat (and rank)",
             f"- settings: scales {settings['scales']}, {settings['epochs']} epoch(s), {repeats} repeats, "
             f"batch {settings['batch_size']}, device {settings['device']}, seed {settings['seed']}",
             f"- complete: {len(done)} of {len(plan.combinations)} planned combinations; "
             f"{len(todo)} remain (estimated {sum(estimate_s(c, _spec(c), n, plan.costs) for c, n in todo) / 60:.0f} min)"]
    if facts.get("partial"):
        lines += ["", "**This is a partial study**, not the profile's: " + "; ".join(facts["notes"]) +
                  ". The full study is `make run PROFILE=study` (run it again until nothing remains)."]
    elif facts.get("notes"):
        lines += [""] + [f"- {note}" for note in facts["notes"]]
    lines += ["", "## Cut rules", "", cut_rules_text(plan, settings), "",
              f"{len(plan.reduced)} combination(s) reduced by rule 1, {len(plan.dropped)} left out by rule 3."]
    lines += table("Reduced by rule 1 (scale lowered)", ["combination", "estimate at study scale (s)"],
                   [[c.label(), f"{e:.0f}"] for c, e in plan.reduced])
    lines += table("Left out by rule 3", ["combination", "why"], [[c.label(), why] for c, why in plan.dropped])
    lines += table("Loaders that cannot run on this machine (left out)", ["loader", "why"],
                   [[name, why] for name, why in facts["skipped"].items()])
    lines += table("Remaining (not complete)", ["combination", "repeats to run", "estimate (s)"],
                   [[c.label(), str(n), f"{estimate_s(c, _spec(c), n, plan.costs):.0f}"] for c, n in todo])
    lines += table("Complete", ["combination", "estimate (s)", "measured training (s)"],
                   [[c.label(), f"{estimate_s(c, _spec(c), repeats, plan.costs):.0f}", f"{measured_s(rows, c):.1f}"]
                    for c in done])
    return "\n".join(lines) + "\n"


def row_commits(rows) -> str:
    """The git commits the rows were measured at, with their row counts (``none yet`` without rows)."""
    if rows is None or len(rows) == 0 or "git_commit" not in rows:
        return "none yet"
    counts = rows["git_commit"].fillna("unknown").astype(str).value_counts()
    return ", ".join(f"`{commit}` ({n} rows)" for commit, n in counts.items())


def _spec(c: Combination):
    from thesislib.datasets import DATASETS

    return DATASETS[c.dataset]


def table(title: str, header: list, body: list) -> list:
    """A markdown section: ``title`` and a table, or "none"."""
    if not body:
        return ["", f"## {title}", "", "none"]
    return ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + [
        "| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in body]


STORE_COLUMNS = ("dataset", "scale", "store", "bytes_on_disk", "bytes_apparent", "train", "val")


def store_sizes(data_root, previous=None):
    """Bytes on disk of every complete store under ``data_root/scale-*/<dataset>/<store>/`` (from their
    manifests), merged over ``previous`` rows (stores deleted since keep their row): the study's
    ``stores.csv``, which notebook 06 sets against the codecs' load times."""
    import json

    import pandas as pd

    rows = {} if previous is None else {(r["dataset"], round(float(r["scale"]), 6), r["store"]): r
                                        for r in previous.to_dict("records")}
    for manifest in sorted(Path(data_root).glob("scale-*/*/*/manifest.json")):
        try:
            fields = json.loads(manifest.read_text())
            scale = round(float(manifest.parts[-4].removeprefix("scale-")), 6)
        except (OSError, ValueError):
            continue   # an unreadable manifest: that store is incomplete and is not counted
        counts = {split: fields.get("splits", {}).get(split, {}).get("count") for split in ("train", "val")}
        rows[(manifest.parts[-3], scale, manifest.parts[-2])] = {
            "dataset": manifest.parts[-3], "scale": scale, "store": manifest.parts[-2],
            "bytes_on_disk": fields.get("bytes_on_disk"), "bytes_apparent": fields.get("bytes_apparent"), **counts}
    frame = pd.DataFrame(list(rows.values()), columns=list(STORE_COLUMNS))
    return frame.sort_values(["dataset", "scale", "store"]).reset_index(drop=True)
