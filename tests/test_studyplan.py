"""The measured study's machinery: the machine name, the plan and its cut rules, resumability (real
`run_study.py --profile study` runs on a tiny store), and the summary."""

import subprocess
import sys
from dataclasses import replace

import pandas as pd
import pytest

from run_study_script import run_study_module
from thesislib import report
from thesislib.datasets import DATASETS
from thesislib.paths import PROJECT_ROOT
from thesislib.studyplan import (CAPS_S, STUDY, Combination, completed_repeats, cut_plan, estimate_s, fit_scale,
                                 full_plan, machine_name, missing_repeats, plan_cost, summary_markdown)

STORES = {"files": ["files-jpeg", "files-png"], "numpy": ["npy-uint8", "npy-float16", "npy-float32"],
          "memory": ["npy-uint8", "npy-float16", "npy-float32"]}
DEFAULTS = {"files": "files-jpeg", "numpy": "npy-uint8", "memory": "npy-uint8"}


@pytest.mark.parametrize("cpu, cores, name", [
    ("AMD EPYC 7763 64-Core Processor", 2, "epyc-2core"),
    ("AMD EPYC", 2, "epyc-2core"),
    ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", 4, "xeon-4core"),
    ("Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz", 16, "core-16core"),
    ("", 1, "cpu-1core"),
])
def test_machine_name_is_the_cpu_family_word_and_the_core_count(cpu, cores, name):
    assert machine_name(cpu, cores) == name


def test_full_plan_has_every_tier_and_every_store_a_loader_reads():
    plan = full_plan(STORES, DEFAULTS, ["cifar10", "tinyimagenet"])
    assert {c.tier for c in plan} == {"thesis", "stores", "cold", "workers", "ranks"}
    stores = {(c.loader, c.store) for c in plan if c.tier == "stores" and c.model == "none"}
    assert stores == {(loader, store) for loader, names in STORES.items() for store in names}
    assert {c.store for c in plan if c.tier == "stores" and c.model == "small"} == {"npy-float16", "npy-float32"}
    assert {(c.loader, c.world_size) for c in plan if c.tier == "ranks"} == {("numpy", 2), ("memory", 2)}
    assert len({c.key() for c in plan}) == len(plan)   # no combination twice


def test_a_generous_budget_cuts_nothing():
    full = full_plan(STORES, DEFAULTS, ["cifar10"], {**STUDY, "scales": {"cifar10": 0.01}})
    plan = cut_plan(full, DATASETS, 10, budget_s=10**9)
    assert plan.cap_s == CAPS_S[0] and plan.reduced == [] and plan.dropped == [] and plan.combinations == full


def test_rule_1_lowers_a_combination_to_the_largest_ladder_scale_that_fits_the_cap():
    c = Combination("thesis", "tinyimagenet", "files", "files-jpeg", "small", 1.0)
    cap = estimate_s(replace(c, scale=0.2), DATASETS["tinyimagenet"], 10) + 1
    assert fit_scale(c, DATASETS["tinyimagenet"], 10, cap).scale == 0.2
    assert fit_scale(c, DATASETS["tinyimagenet"], 10, 10**9).scale == 1.0


def test_rule_2_takes_the_largest_cap_that_fits_and_lists_what_it_reduced():
    full = full_plan(STORES, DEFAULTS, ["cifar10", "tinyimagenet"])
    cost = {cap: plan_cost([fit_scale(c, DATASETS[c.dataset], 10, cap) for c in full], DATASETS, 10)
            for cap in CAPS_S}
    budget = cost[CAPS_S[2]]
    plan = cut_plan(full, DATASETS, 10, budget_s=budget)
    assert plan.dropped == [] and plan.estimate_s <= budget
    assert all(cost[cap] > budget for cap in CAPS_S if cap > plan.cap_s)
    assert plan.reduced and all(new.scale < STUDY["scales"][new.dataset] for new, _ in plan.reduced)
    assert all(estimate_s(new, DATASETS[new.dataset], 10) <= plan.cap_s < old for new, old in plan.reduced)


def test_rule_3_leaves_out_whole_combinations_from_the_end_of_the_tier_order():
    full = full_plan(STORES, DEFAULTS, ["cifar10", "tinyimagenet"])
    plan = cut_plan(full, DATASETS, 10, budget_s=600)
    assert plan.dropped and plan.cap_s == CAPS_S[-1]
    assert plan.dropped[-1][0].tier == "ranks" and plan.combinations[0].tier == "thesis"
    assert len(plan.combinations) + len(plan.dropped) == len(full)
    assert "budget" in plan.dropped[0][1]


def _rows_of(combination, repeats, run_id="r1", world_size=1):
    values = {**vars(combination), "run_id": run_id, "total_train_s": 1.0}
    values.pop("tier")
    return [{**values, "repeat": r, "rank": k, "world_size": world_size}
            for r in range(repeats) for k in range(world_size)]


def test_repeats_are_counted_per_combination_and_ranks_count_once():
    one = Combination("thesis", "cifar10", "numpy", "npy-uint8", "small", 0.02)
    two = replace(one, tier="ranks", world_size=2)
    rows = pd.DataFrame(_rows_of(one, 3) + _rows_of(one, 2, "r2") + _rows_of(two, 4, "r3", world_size=2))
    counts = completed_repeats(rows)
    assert counts[one.key()] == 5 and counts[two.key()] == 4
    todo = missing_repeats([one, two, replace(one, model="none")], counts, repeats=5)
    assert [(c.world_size, c.model, n) for c, n in todo] == [(2, "small", 1), (1, "none", 5)]


def test_summary_states_commit_machine_cut_rules_and_what_remains():
    full = full_plan(STORES, DEFAULTS, ["cifar10"])
    plan = cut_plan(full, DATASETS, 10, budget_s=600)
    done = plan.combinations[0]
    rows = pd.DataFrame(_rows_of(done, 10)).assign(git_commit="def456")
    text = summary_markdown(plan, rows, STUDY, {
        "commit": "abc123", "machine": "epyc-2core", "cpu_model": "AMD EPYC", "cores": 2,
        "results": "results/measured/epyc-2core/results.csv", "skipped": {"cupy": "needs a CUDA GPU"},
        "notes": ["cifar10 only, busy machine"], "partial": True})
    assert "`abc123`" in text and "`def456` (10 rows)" in text and "`epyc-2core`" in text and "AMD EPYC" in text
    assert "**This is a partial study**" in text and "make run PROFILE=study" in text
    assert "## Cut rules" in text and f"complete: 1 of {len(plan.combinations)}" in text
    assert "| cupy | needs a CUDA GPU |" in text and "## Left out by rule 3" in text
    assert done.label() in text.split("## Complete")[1]


def test_study_profile_options_reach_the_plan_and_bad_tiers_are_refused():
    module = run_study_module()
    args = module.parse_args(["--profile", "study", "--tiers", "stores", "--models", "none", "--scale", "0.01"])
    assert args.tiers == ["stores"] and module.study_settings(args)["scales"]["masks"] == 0.01
    with pytest.raises(SystemExit):
        module.parse_args(["--profile", "study", "--tiers", "fastest"])


@pytest.mark.slow
def test_a_second_run_skips_complete_combinations_and_resumes_a_partial_one(tmp_path):
    results = tmp_path / "measured" / "results.csv"
    command = [sys.executable, "scripts/run_study.py", "--profile", "study", "--loaders", "numpy",
               "--datasets", "cifar10", "--scale", "0.002", "--repeats", "2", "--tiers", "thesis,cold", "--results", str(results), "--data-dir", str(tmp_path / "data"),
               "--machine", "test-1core", "--no-report", "--costs", "assumed"]
    first = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    rows = pd.read_csv(results)
    assert len(rows) == 4 and set(zip(rows["model"], rows["cache_state"])) == {("small", "warm"), ("none", "cold")}
    assert "complete: 2 of 2" in (results.parent / "summary.md").read_text()
    assert set(pd.read_csv(results.parent / "stores.csv")["store"]) == {"npy-uint8"}

    again = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 not complete" in again.stdout
    assert len(pd.read_csv(results)) == 4

    rows.iloc[:-1].to_csv(results, index=False)   # the last repeat was lost (an interrupted combination)
    resumed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0 and "1 not complete" in resumed.stdout and "1 repeat(s)" in resumed.stdout
    after = pd.read_csv(results)
    assert len(after) == 4 and (after.groupby(["model", "cache_state"]).size() == 2).all()


def test_thesis_table_is_loaders_against_data_sets_of_total_training_time():
    frame = report.add_labels(report.example_results(0))
    from thesislib.report import study

    table = study.thesis_table(frame)
    assert table.index.name == "datu ielādes metode"
    assert list(table.columns) == ["cifar10 32×32, scale 0.02", "tinyimagenet 64×64, scale 0.02",
                                   "masks 512×512, scale 0.02"]
    means = frame[(frame["cache_state"] == "warm")].groupby("loader")["total_train_s"].mean()
    assert list(table.index)[0] == "memory" and set(table.index) == set(means.index)
    cell = table.loc["numpy", "cifar10 32×32, scale 0.02"]
    cifar = frame[(frame["loader"] == "numpy") & (frame["dataset"] == "cifar10") & (frame["cache_state"] == "warm")]
    assert cell.startswith(report.format_cell(cifar["total_train_s"].mean(), 0).split(" ±")[0]) and "±" in cell
    assert "Datu ielādes metodes PRET datu kopām" in study.thesis_caption(frame)


def test_sentences_are_built_from_the_numbers_and_say_what_was_not_measured():
    from thesislib.report import conclusions

    frame = report.add_labels(report.example_results(0))
    fastest = conclusions.fastest_per_dataset(frame)
    assert len(fastest) == 3 and all("memory trains fastest of 6 methods" in s for s in fastest)
    assert all("Welch p = " in s for s in fastest)
    memory = frame[(frame["loader"] == "memory") & (frame["dataset"] == "cifar10") & (frame["cache_state"] == "warm")]
    assert f"{memory['total_train_s'].mean():.3g} s" in fastest[0]
    slower = frame.assign(total_train_s=frame["total_train_s"].where(frame["loader"] != "memory",
                                                                     frame["total_train_s"] * 100))
    assert "numpy trains fastest" in conclusions.fastest_per_dataset(slower)[0]   # the sentence follows the rows
    assert conclusions.precision(frame) == ["float16 against float32 was not measured (numpy on npy-float16 "
                                            "and npy-float32)."]
    assert conclusions.workers_and_ranks(frame) == ["2 workers against 0: not measured.",
                                                    "2 ranks against 1: not measured."]
    assert "not measured" in conclusions.cold_cost(frame)[0]
    assert any("GPU" in s and "not measured" in s for s in conclusions.further_research(frame))


def test_headline_tables_keep_world_sizes_and_remote_stores_apart():
    from thesislib.report import study

    frame = report.add_labels(report.example_results(0))
    ranks = frame[frame["loader"] == "numpy"].assign(world_size=2, run_id="ranks")
    remote = frame[frame["loader"] == "hdf5"].assign(store_location="http://127.0.0.1:8000/data", run_id="remote")
    titles = [title for title, _ in study.headline_tables(pd.concat([frame, ranks, remote], ignore_index=True))]
    assert "model small, local, warm cache, 0 workers, world size 2" in titles
    assert "model small, remote, warm cache, 0 workers, world size 1" in titles
    assert "model small, local, cold cache, 0 workers, world size 1" in titles


def test_thesis_caption_counts_the_repeats_of_the_default_stores_only():
    from thesislib.report import study

    frame = report.add_labels(report.example_results(0))
    extra = frame[frame["loader"] == "numpy"].assign(store="npy-float16", run_id="f16")
    assert "over 3 repeats" in study.thesis_caption(pd.concat([frame, extra], ignore_index=True))


def test_the_cost_model_is_measured_here_saved_and_used_by_the_plan(tmp_path):
    from thesislib import studycost

    costs = studycost.calibrate({"numpy": ["npy-uint8"]}, {"numpy": "npy-uint8"}, ["cifar10"], tmp_path / "data",
                                scales={"cifar10": 0.004}, say=lambda line: None)
    assert set(costs.read_s) == {"cifar10/numpy/npy-uint8"} and set(costs.step_s) == {"cifar10/small"}
    assert set(costs.write_s) == {"cifar10/npy-uint8"}
    assert all(value > 0 for value in [*costs.read_s.values(), *costs.write_s.values()])
    assert costs.step_s["cifar10/small"] >= 0 and costs.facts["scales"] == {"cifar10": 0.004}
    again = studycost.load(studycost.save(costs, tmp_path / "costs.json"))
    assert again.read_s == costs.read_s and again.step_s == costs.step_s and again.facts == costs.facts

    c = Combination("thesis", "cifar10", "numpy", "npy-uint8", "small", 1.0)
    spec = DATASETS["cifar10"]
    per_image = costs.read("cifar10", "numpy", "npy-uint8") + costs.step("cifar10", "small")
    assert estimate_s(c, spec, 2, costs) == pytest.approx(5.0 + 2 * (1.0 + 60_000 * per_image))
    unmeasured = replace(c, loader="files", store="files-jpeg")   # its read falls back to the assumed cost
    measured_step, assumed_step = costs.step("cifar10", "small"), 150 * 32 * 32 * 1e-9
    assert estimate_s(unmeasured, spec, 2, costs) == pytest.approx(
        estimate_s(unmeasured, spec, 2) + 2 * 60_000 * (measured_step - assumed_step))
    plan = cut_plan([c], DATASETS, 2, 3600, costs)
    assert "measured on this machine" in summary_markdown(plan, None, STUDY, {
        "commit": "abc", "machine": "m", "cpu_model": "cpu", "cores": 2, "results": "r.csv", "skipped": {},
        "notes": [], "partial": False})


def test_a_damaged_cost_file_is_one_clear_error(tmp_path):
    from thesislib import studycost
    from thesislib.errors import ThesisError

    (tmp_path / "costs.json").write_text("[1, 2")
    with pytest.raises(ThesisError, match="costs.json is not a cost file of the study.*delete it"):
        studycost.load(tmp_path / "costs.json")
    assert studycost.load(tmp_path / "missing.json") is None


def test_float16_against_float32_takes_each_quantity_at_the_scale_its_model_ran():
    from thesislib.report import conclusions, study

    base = report.example_results(0)
    numpy = base[(base["loader"] == "numpy") & (base["dataset"] == "cifar10")]
    parts = []
    for store, factor in (("npy-float16", 1.0), ("npy-float32", 2.0)):
        for model, scale in (("none", 1.0), ("small", 0.2)):  # the study trains at a lower scale (cut rule 1)
            parts.append(numpy.assign(store=store, model=model, scale=scale, run_id=f"{store}-{model}",
                                      total_train_s=numpy["total_train_s"] * factor))
    frame = report.add_labels(pd.concat(parts, ignore_index=True))
    summary = study.precision_summary(frame)
    assert summary["store"].tolist() == ["npy-float16", "npy-float32"]  # one row per store, not per scale
    assert summary["load_s_scale"].tolist() == [1.0, 1.0] and summary["train_s_scale"].tolist() == [0.2, 0.2]
    assert summary["bytes_mb"].tolist() == [study.array_bytes("cifar10", 1.0, store) / 2**20
                                            for store in ("npy-float16", "npy-float32")]
    assert study.precision_table(summary)["scale: load, bytes / training"].tolist() == ["1 / 0.2"] * 2
    study.precision_figure(summary)  # one bar per store and data set (two rows of one store made it fail)
    sentence = conclusions.precision(frame)[0]
    assert "load time (scale 1)" in sentence and "total training time (scale 0.2)" in sentence
