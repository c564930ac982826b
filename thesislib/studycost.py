"""The measured study's cost model, measured on the machine that runs it.

The study plan (:mod:`thesislib.studyplan`) has to know, before it runs anything, what each combination will
cost, so that its cut rules can keep the whole study within its budget. Assumed per-pixel costs were off by
several times on a real machine (the small model's step does not grow with the pixels, decoders have a fixed
cost per image), so the plan reads costs measured here instead: :func:`calibrate` prepares every store the
plan reads at a small scale (:data:`CALIBRATION_SCALES`), times one epoch of every loader on every store it
reads with no model, and one with the ``small`` model, and writes the seconds per image to ``costs.json``
beside the study's results. The file is committed with them, so a resumed study plans the same combinations;
delete it to measure again.

What stays assumed (and is said so in the summary): the cold page cache's factor, and the speed-up of 2
workers and 2 ranks (the plan counts none for workers and ranks, so it does not underestimate them).
"""

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from thesislib.atomic import write_text
from thesislib.errors import ThesisError

# Small enough to take a few minutes for the whole plan, large enough that a repeat lasts more than the
# loader's set-up: about 3,000 images of cifar10, 2,200 of tinyimagenet and 100 of masks (512 x 512).
CALIBRATION_SCALES = {"cifar10": 0.05, "tinyimagenet": 0.02, "masks": 0.01}
CALIBRATION_REPEATS = 2   # the last repeat counts (the first also pays for the first touch of the store)


@dataclass
class Costs:
    """Seconds per image measured on one machine (keys ``dataset/loader/store``, ``dataset/model``,
    ``dataset/store``), with the facts of the calibration run."""
    read_s: dict = field(default_factory=dict)    # one image through the loader, no model, warm, 0 workers
    step_s: dict = field(default_factory=dict)    # what a model's training step adds per image
    write_s: dict = field(default_factory=dict)   # preparing the store, per image (source included)
    facts: dict = field(default_factory=dict)

    def read(self, dataset: str, loader: str, store: str):
        return self.read_s.get(f"{dataset}/{loader}/{store}")

    def step(self, dataset: str, model: str):
        return 0.0 if model == "none" else self.step_s.get(f"{dataset}/{model}")

    def write(self, dataset: str, store: str):
        return self.write_s.get(f"{dataset}/{store}")


def save(costs: Costs, path) -> Path:
    path = Path(path)
    fields = {"read_s": costs.read_s, "step_s": costs.step_s, "write_s": costs.write_s, "facts": costs.facts}
    write_text(path, json.dumps(fields, indent=1, sort_keys=True) + "\n")
    return path


def load(path):
    """The costs saved at ``path``, or None when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        fields = json.loads(path.read_text())
        return Costs(**{key: dict(fields.get(key, {})) for key in ("read_s", "step_s", "write_s", "facts")})
    except (ValueError, TypeError, AttributeError) as exc:
        raise ThesisError(f"{path} is not a cost file of the study ({exc}): delete it to measure the costs "
                          "again") from exc


def calibrate(loader_stores: dict, defaults: dict, datasets, data_dir, scales: dict = None, seed: int = 0,
              say=print) -> Costs:
    """Measure the costs of every (loader, store) of ``loader_stores`` on each of ``datasets`` at the
    calibration scales (``scales`` overrides them), preparing the stores under ``data_dir``. A loader that
    fails here is left out of the costs (the plan then falls back to its assumed cost) and said so."""
    from thesislib.bench import git_commit

    scales = {**CALIBRATION_SCALES, **(scales or {})}
    costs = Costs(facts={"commit": git_commit(), "scales": {d: scales[d] for d in datasets},
                         "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "failed": {}})
    for dataset in datasets:
        stores = sorted({store for names in loader_stores.values() for store in names})
        for store in stores:
            costs.write_s[f"{dataset}/{store}"] = timed_prepare(dataset, store, scales[dataset], seed, data_dir)
        for loader, names in loader_stores.items():
            for store in names:
                measure_read(costs, dataset, loader, store, scales[dataset], seed, data_dir, say)
        measure_step(costs, dataset, "numpy" if "numpy" in loader_stores else next(iter(loader_stores)),
                     defaults, scales[dataset], seed, data_dir, say)
    return costs


def timed_prepare(dataset: str, store: str, scale: float, seed: int, data_dir) -> float:
    """Seconds per image of preparing ``store`` (the synthetic source's generation included)."""
    from thesislib.datasets import DATASETS
    from thesislib.prepare import prepare

    start = time.perf_counter()
    prepare(dataset, scale=scale, stores=(store,), seed=seed, data_dir=str(data_dir), force=True, progress=False)
    return (time.perf_counter() - start) / sum(DATASETS[dataset].split_sizes(scale).values())


def epoch_s_per_image(loader: str, dataset: str, store: str, model: str, scale: float, seed: int,
                      data_dir) -> float:
    """Seconds per training image of the last of :data:`CALIBRATION_REPEATS` one-epoch repeats."""
    from thesislib.bench import BenchConfig, run_protocol

    config = BenchConfig(loader=loader, dataset=dataset, store=store, epochs=1, repeats=CALIBRATION_REPEATS,
                         model=model, device="cpu", seed=seed, scale=scale, data_dir=str(data_dir))
    row = run_protocol(config)[-1]
    return 1.0 / row["images_per_s"]   # images_per_s: training images over total_train_s


def measure_read(costs: Costs, dataset, loader, store, scale, seed, data_dir, say) -> None:
    key = f"{dataset}/{loader}/{store}"
    try:
        costs.read_s[key] = epoch_s_per_image(loader, dataset, store, "none", scale, seed, data_dir)
    except (ThesisError, RuntimeError, OSError) as exc:
        costs.facts["failed"][key] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        say(f"     cost of {key} not measured ({costs.facts['failed'][key]}): its assumed cost is used")


def measure_step(costs: Costs, dataset, loader, defaults, scale, seed, data_dir, say) -> None:
    """What the ``small`` model adds per image: its epoch minus the same loader's epoch without a model."""
    store = defaults[loader]
    key = f"{dataset}/small"
    try:
        with_model = epoch_s_per_image(loader, dataset, store, "small", scale, seed, data_dir)
    except (ThesisError, RuntimeError, OSError) as exc:
        costs.facts["failed"][key] = str(exc).splitlines()[0]
        say(f"     cost of the small model on {dataset} not measured ({exc}): its assumed cost is used")
        return
    alone = costs.read(dataset, loader, store) or 0.0
    costs.step_s[key] = max(with_model - alone, 0.0) if math.isfinite(with_model) else with_model
