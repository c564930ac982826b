"""Loaders against the peers (issue 17): the rounds ``benchmarks/peers.py`` writes, their medians and
ranges, the issue's goals as ratios within one run, the table and the figure.

The benchmark and ``notebooks/07_peers.ipynb`` both call this module, so a goal is computed in one place.
A run folder (``results/measured/<machine>/peers/`` for the committed run) holds, per data set:

* ``<dataset>.csv``: one row per case, worker count and round (:data:`COLUMNS`); a case that could not run
  here is one row with an empty ``img_s`` and the reason in ``skipped``;
* ``<dataset>.env.json``: the machine, the library versions, the git commit and the run's settings;
* ``<dataset>.png``: :func:`peers_figure` of the run.

A *case* is one way of reading the train split, one epoch, batch 256 (its ``group``: ``limit`` physical
limits, ``thesislib`` a loader on a store, ``baseline`` the per-sample PyTorch ``Dataset`` a user writes for
that store, ``pytorch`` other plain PyTorch, ``peer`` another library used directly). A thesislib loader is
compared with the ``baseline`` row of *its own store* and worker count.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from thesislib.atomic import write_atomic
from thesislib.errors import ThesisError

COLUMNS = ["dataset", "scale", "group", "case", "loader", "store", "pixels", "workers", "round", "images",
           "seconds", "img_s", "batches", "epoch_batches", "note", "skipped"]
GROUPS = ("limit", "thesislib", "baseline", "pytorch", "peer")
DATASET_ORDER = ("cifar10", "tinyimagenet", "masks")

# The "today" (cifar10, scale 1, before the performance work, on the machine): fixed
# reference figures, not measurements of this run. {(loader, store, workers): images/s}
REFERENCE = {("files", "files-jpeg", 0): 11_000, ("files", "files-jpeg", 2): 8_800,
             ("zarr", "zarr", 0): 2_600, ("zarr", "zarr", 2): 5_000}
REFERENCE_DATASET = "cifar10"
REFERENCE_NOTE = "issue 17's cifar10 figure before the work: a fixed reference, not measured in this run"
BASELINE_BY_DESIGN = {"torchvision"}  # the contract's per-sample ImageFolder loader: the baseline itself


def rounds_path(folder, dataset: str) -> Path:
    return Path(folder) / f"{dataset}.csv"


def env_path(folder, dataset: str) -> Path:
    return Path(folder) / f"{dataset}.env.json"


def figure_path(folder, dataset: str) -> Path:
    return Path(folder) / f"{dataset}.png"


# -- writing and reading a run ------------------------------------------------------------------------------

def write_rounds(rows: list, path) -> Path:
    """The rows (dicts with :data:`COLUMNS`) as CSV, written atomically."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_environment(env: dict, path) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(env, indent=1, sort_keys=True) + "\n"))


def read_rounds(path) -> pd.DataFrame:
    """One data set's rounds; a ThesisError if the file is missing or lacks a column."""
    path = Path(path)
    if not path.is_file():
        raise ThesisError(f"no peers rounds at {path}: run `python benchmarks/peers.py --out {path.parent}`")
    text = {column: str for column in ("group", "case", "loader", "store", "pixels", "note", "skipped")}
    frame = pd.read_csv(path, dtype=text, keep_default_na=False)
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise ThesisError(f"{path} lacks the column(s) {', '.join(missing)}: it was not written by "
                          "benchmarks/peers.py (or by an older one); run it again")
    for column in ("scale", "images", "seconds", "img_s", "batches", "round"):
        frame[column] = pd.to_numeric(frame[column])  # empty cells of a skipped case: NaN
    return frame


def read_environment(path) -> dict:
    """The run's environment (an empty dict if the file is missing)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def datasets_in(folder) -> list:
    """The data sets with a rounds file in ``folder``, in the contract's order (others after, sorted)."""
    found = {path.stem for path in Path(folder).glob("*.csv")} if Path(folder).is_dir() else set()
    return [name for name in DATASET_ORDER if name in found] + sorted(found - set(DATASET_ORDER))


def shown_path(path) -> str:
    """``path`` relative to the project when inside it (the same text on every checkout), else as given."""
    from thesislib.paths import PROJECT_ROOT

    path = Path(path)
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def missing_run_sentence(folder) -> str:
    """What the notebook says when ``folder`` holds no run."""
    return (f"No peers run in {folder} yet: it is measured on a quiet machine with "
            "`python benchmarks/peers.py --dataset cifar10 --rounds 3` and `... --dataset tinyimagenet --rounds 3` "
            "(see benchmarks/README.md); the tables, goals and figure below appear once it is committed.")


# -- summary ------------------------------------------------------------------------------------------------

def summarize(rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per case and worker count, in the run's order: ``median_img_s``, ``min_img_s``, ``max_img_s``
    over the rounds (empty for a skipped case), ``rounds``, ``note``, ``skipped``."""
    keys = ["group", "case", "loader", "store", "pixels", "workers"]
    rows = []
    for key, part in rounds.groupby(keys, sort=False):
        rates = part["img_s"].dropna()
        skipped = next((text for text in part["skipped"] if text), "")
        usable = not skipped and len(rates) > 0
        rows.append({**dict(zip(keys, key)),
                     "median_img_s": float(rates.median()) if usable else np.nan,
                     "min_img_s": float(rates.min()) if usable else np.nan,
                     "max_img_s": float(rates.max()) if usable else np.nan,
                     "rounds": int(len(rates)), "note": part["note"].iloc[0], "skipped": skipped,
                     "by_round": dict(zip(part["round"], part["img_s"])) if usable else {}})
    return pd.DataFrame(rows, columns=keys + ["median_img_s", "min_img_s", "max_img_s", "rounds", "note",
                                              "skipped", "by_round"])


def rate(summary: pd.DataFrame, group: str, workers: int, case: str = None, loader: str = None,
         store: str = None):
    """The median images/s of the matching case (None if absent or skipped)."""
    hit = summary[(summary["group"] == group) & (summary["workers"] == workers)]
    for column, value in (("case", case), ("loader", loader), ("store", store)):
        if value is not None:
            hit = hit[hit[column] == value]
    values = hit["median_img_s"].dropna()
    return float(values.iloc[0]) if len(values) else None


def label(row) -> str:
    """A case's name in tables and figures: ``group: case [store]``."""
    store = f" [{row['store']}]" if row["store"] else ""
    return f"{row['group']}: {row['case']}{store}"


def format_rate(value) -> str:
    """Images/s rounded to three significant digits, thousands separated ("" for none)."""
    if value is None or math.isnan(value):
        return ""
    return f"{float(f'{value:.3g}'):,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary for reading: one row per case, per worker count ``median (min..max)`` rounded to three
    significant digits, or ``skipped: <reason>``; the note last (what only a later worker count's note says
    is added as ``<n> workers: ...``)."""
    workers = sorted(summary["workers"].unique())
    rows = {}
    for _, row in summary.iterrows():
        name = label(row)
        entry = rows.setdefault(name, {"case": name, "pixels": row["pixels"], "note": row["note"]})
        extra = [part for part in str(row["note"] or "").split("; ") if part and part not in entry["note"]]
        if extra:
            entry["note"] = "; ".join(filter(None, [entry["note"], f"{row['workers']} workers: {', '.join(extra)}"]))
        entry[f"{row['workers']} workers"] = (
            f"skipped: {row['skipped']}" if row["skipped"] else
            f"{format_rate(row['median_img_s'])} ({format_rate(row['min_img_s'])}..{format_rate(row['max_img_s'])})")
    columns = ["case", "pixels"] + [f"{count} workers" for count in workers] + ["note"]
    return pd.DataFrame(list(rows.values())).reindex(columns=columns).fillna("")


# -- goals --------------------------------------------------------------------------------------------------

def goal_row(goal, workers, numerator, denominator, target, compared, verdict=None) -> dict:
    """One goal's ratio and verdict; ``n/a`` when either side is missing."""
    ratio = numerator / denominator if numerator and denominator else np.nan
    if verdict is None:
        verdict = "n/a (a case is missing or skipped)" if math.isnan(ratio) else \
            ("met" if ratio >= target else "not met")
    return {"goal": goal, "workers": workers, "ratio": ratio, "target": target, "verdict": verdict,
            "compared": compared}


def goals(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The issue's goals as ratios of medians within this run (rows: goal, workers, ratio, target, verdict,
    compared). The "today" goals divide by :data:`REFERENCE`, fixed figures from the issue, stated so."""
    workers = sorted(summary["workers"].unique())
    rows = []
    numpy_rate = {count: rate(summary, "thesislib", count, loader="numpy", store="npy-uint8") for count in workers}
    for count in workers:
        rows.append(goal_row("numpy >= 1.5x FFCV raw", count, numpy_rate[count],
                             rate(summary, "peer", count, case="FFCV raw .beton"), 1.5, "numpy / FFCV raw .beton"))
    if 0 in workers:
        rows.append(goal_row("numpy >= 60% of the random-gather limit", 0, numpy_rate[0],
                             rate(summary, "limit", 0, case="random gather into a buffer"), 0.6,
                             "numpy / limit: random gather"))
    for count in workers:
        best, best_rate = best_jpeg(summary, count)
        rows.append(goal_row("best thesislib JPEG path >= FFCV JPEG", count, best_rate,
                             rate(summary, "peer", count, case="FFCV JPEG .beton"), 1.0, f"{best} / FFCV JPEG .beton"))
    for count in workers:  # like for like: FFCV decodes with the fast DCT; so does decode="fast"
        best, best_rate = best_jpeg(summary, count, approximate=True)
        if best_rate is not None:
            rows.append(goal_row("thesislib decode=fast >= FFCV JPEG (both fast DCT, approximate)", count,
                                 best_rate, rate(summary, "peer", count, case="FFCV JPEG .beton"), 1.0,
                                 f"{best} / FFCV JPEG .beton"))
    rows += reference_goals(summary, dataset, workers, "files", "files-jpeg", 4.0)
    for count in workers:
        rows.append(goal_row("hdf5 >= 50% of numpy", count, rate(summary, "thesislib", count, loader="hdf5"),
                             numpy_rate[count], 0.5, "hdf5 / numpy"))
    rows += reference_goals(summary, dataset, workers, "zarr", "zarr", 20.0)
    rows += worker_goals(summary, workers)
    rows += baseline_goals(summary, workers)
    rows.append(goal_row("profiler overhead < 2%", None, None, None, 0.02, "",
                         "n/a: measured by benchmarks/loader_throughput.py, not here"))
    return pd.DataFrame(rows, columns=["goal", "workers", "ratio", "target", "verdict", "compared"])


def best_jpeg(summary: pd.DataFrame, workers: int, approximate: bool = False) -> tuple:
    """(label, images/s) of the fastest thesislib JPEG case at ``workers`` whose note does not say
    "approximate" (``approximate``: of those whose note does)."""
    said = summary["note"].str.contains("approximate", case=False)
    rows = summary[(summary["group"] == "thesislib") & (summary["pixels"] == "jpeg") & (summary["workers"] == workers)
                   & (said if approximate else ~said)].dropna(subset=["median_img_s"])
    if rows.empty:
        return "none", None
    top = rows.loc[rows["median_img_s"].idxmax()]
    return f"{top['case']} [{top['store']}]", float(top["median_img_s"])


def reference_goals(summary, dataset, workers, loader, store, target) -> list:
    """``loader`` on ``store`` >= ``target`` x the issue's figure before the work (cifar10 only)."""
    rows = []
    for count in workers:
        reference = REFERENCE.get((loader, store, count)) if dataset == REFERENCE_DATASET else None
        goal = f"{loader} [{store}] >= {target:g}x the issue's 'today'"
        if reference is None:
            rows.append(goal_row(goal, count, None, None, target, "",
                                 f"n/a: the issue gives no figure for {dataset} at {count} workers"))
            continue
        rows.append(goal_row(goal, count, rate(summary, "thesislib", count, case=loader, store=store), reference,
                             target, f"{loader} / {reference:,} img/s, {REFERENCE_NOTE}"))
    return rows


def worker_goals(summary, workers) -> list:
    """Every thesislib loader run with both: 2 workers (the largest count) not slower than 0."""
    if 0 not in workers or len(workers) < 2:
        return []
    most = max(workers)
    rows = []
    ours = summary[summary["group"] == "thesislib"]
    for _, row in ours[ours["workers"] == 0].iterrows():
        other = ours[(ours["case"] == row["case"]) & (ours["store"] == row["store"]) & (ours["workers"] == most)]
        if other.empty:
            continue
        many = rate(summary, "thesislib", most, case=row["case"], store=row["store"])
        few = row["median_img_s"] if not math.isnan(row["median_img_s"]) else None
        rows.append(goal_row(f"{row['case']} [{row['store']}]: {most} workers not slower than 0", most, many, few,
                             1.0, f"{most} workers / 0 workers",
                             slower_verdict(row["by_round"], other["by_round"].iloc[0], many, few)))
    return rows


def slower_verdict(few_rounds: dict, many_rounds: dict, many, few):
    """The "not slower" verdict from the rounds, paired (a round runs both cases next to each other):
    None (the ratio decides) unless the median is slower; then "not met" if more workers were slower in
    every round or their median lies below every round of fewer workers, else "not measurably slower"
    with the count: a median a little below another is no evidence of a slower loader when the rounds
    disagree (in 5 rounds, all 5 slower by chance: p = 1/32)."""
    if many is None or few is None or many >= few:
        return None
    paired = [round_ for round_ in few_rounds if round_ in many_rounds
              and not math.isnan(few_rounds[round_]) and not math.isnan(many_rounds[round_])]
    slower = sum(many_rounds[round_] < few_rounds[round_] for round_ in paired)
    if slower == len(paired):
        return f"not met (slower in all {len(paired)} rounds)"
    if paired and many < min(few_rounds[round_] for round_ in paired):
        return f"not met (median below every round of fewer workers; slower in {slower} of {len(paired)})"
    return f"not measurably slower (slower in {slower} of {len(paired)} rounds)"


def baseline_goals(summary, workers) -> list:
    """Every thesislib loader >= 5x the per-sample PyTorch baseline on its own store, same worker count."""
    rows = []
    for _, row in summary[summary["group"] == "thesislib"].iterrows():
        count, loader, case, store = row["workers"], row["loader"], row["case"], row["store"]
        baseline = summary[(summary["group"] == "baseline") & (summary["store"] == store)
                           & (summary["workers"] == count)]
        name = baseline["case"].iloc[0] if len(baseline) else "none"
        verdict = "the per-sample baseline by design (contract)" if loader in BASELINE_BY_DESIGN else None
        rows.append(goal_row(f"{case} [{store}] >= 5x the per-sample baseline on its store", count,
                             None if math.isnan(row["median_img_s"]) else row["median_img_s"],
                             rate(summary, "baseline", count, store=store), 5.0, f"{case} / {name}", verdict))
    return rows


def goal_lines(table: pd.DataFrame) -> list:
    """The goals as text lines: ``goal, w workers: 1.23x (target 1.5x) met  [compared]``."""
    lines = []
    for _, row in table.iterrows():
        where = "" if pd.isna(row["workers"]) else f", {int(row['workers'])} workers"
        ratio = "" if pd.isna(row["ratio"]) else f"{row['ratio']:.2f}x (target {row['target']:g}x) "
        compared = f"  [{row['compared']}]" if row["compared"] else ""
        lines.append(f"{row['goal']}{where}: {ratio}{row['verdict']}{compared}")
    return lines


def goals_display(table: pd.DataFrame) -> pd.DataFrame:
    """The goals table rounded for reading (ratio to 2 decimals)."""
    shown = table.copy()
    shown["workers"] = shown["workers"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    shown["ratio"] = shown["ratio"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}x")
    shown["target"] = shown["target"].map(lambda v: f"{v:g}x")
    return shown


# -- figure and environment ---------------------------------------------------------------------------------

COLOURS = {"limit": "grey", "thesislib": "tab:blue", "baseline": "tab:orange", "pytorch": "tab:olive",
           "peer": "tab:red"}


def peers_figure(summary: pd.DataFrame, title: str = ""):
    """Horizontal bars of the median images/s (log scale) with the rounds' range as whiskers, coloured by
    group; skipped cases are left out. A matplotlib ``Figure`` (no pyplot state is touched)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    shown = summary.dropna(subset=["median_img_s"])
    medians = shown["median_img_s"].to_numpy()
    figure = Figure(figsize=(8, 0.17 * len(shown) + 1.3))
    axes = figure.subplots()
    axes.barh(range(len(shown)), medians, color=[COLOURS.get(group, "black") for group in shown["group"]],
              xerr=[medians - shown["min_img_s"].to_numpy(), shown["max_img_s"].to_numpy() - medians])
    axes.set_yticks(range(len(shown)), [f"{label(row)} · w={row['workers']}" for _, row in shown.iterrows()],
                    fontsize=6)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("images/s (median of the rounds; whisker: their range)")
    axes.legend(handles=[Patch(color=colour, label=group) for group, colour in COLOURS.items()
                         if group in set(shown["group"])], fontsize=6, loc="lower right")
    axes.set_title(title, fontsize=8)
    figure.tight_layout()
    return figure


def save_figure(figure, path) -> Path:
    """The figure as a small PNG (80 dpi), written atomically."""
    return write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=80, metadata={"Software": None}))


ENV_KEYS = ("machine", "cpu", "cpu_cores", "usable_cores", "ram_gb", "git_commit", "dataset", "scale", "train_images",
            "image_shape", "batch_size", "rounds", "round_seconds", "load_before", "load_after", "run_minutes")


def environment_table(env: dict) -> pd.DataFrame:
    """The run's environment as a two-column table: the settings first, then every library version."""
    keys = [key for key in ENV_KEYS if key in env]
    versions = sorted((env.get("versions") or {}).items())
    return pd.DataFrame([(key, str(env[key])) for key in keys] + [(name, str(value)) for name, value in versions],
                        columns=["what", "value"])
