"""`make run` (scripts/run_study.py): step k of n with time, a failed notebook reported with the command
line's one line, and notebook 04 writing its figure into the run folder, not the tracked figures/."""

import subprocess

import pytest

from run_study_script import run_study_module
from thesislib.cli import main
from thesislib.paths import PROJECT_ROOT


def test_each_step_says_k_of_n_with_elapsed_time_and_an_estimate(tmp_path, capsys):
    module = run_study_module()
    study = module.Study("quick", module.new_run_dir(tmp_path, "run"))
    study.clock.total = 3
    study.step("first", lambda: None)
    study.step("second", lambda: 1 / 0)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[step 1/3, 0 s elapsed] first")
    assert out[2].startswith("[step 2/3, ") and "left] second" in out[2]
    assert "FAILED" in out[3] and "ZeroDivisionError" in out[3]


def tracked_figures_status() -> str:
    done = subprocess.run(["git", "status", "--porcelain", "--", "figures"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else "not a git checkout"


@pytest.mark.slow
def test_notebook_04_writes_its_figure_beside_the_results_not_into_figures(tmp_path):
    before = tracked_figures_status()
    run_study_module().execute("04_benchmark.ipynb", tmp_path / "04.ipynb", {
        "results": str(tmp_path / "results.csv"), "data_dir": str(tmp_path / "data"), "scale": 0.005,
        "repeats": 1, "model": "none"})
    assert sorted(p.suffix for p in (tmp_path / "figures").glob("04_repeats_*")) == [".pdf", ".png"]
    assert tracked_figures_status() == before


@pytest.mark.slow
def test_a_failed_notebook_ends_with_the_one_line_the_command_line_prints(tmp_path, capsys):
    module = run_study_module()
    with pytest.raises(Exception) as failure:
        module.execute("04_benchmark.ipynb", tmp_path / "04.ipynb",
                       {"loader": "floppy", "results": str(tmp_path / "r.csv"), "data_dir": str(tmp_path)})
    assert main(["bench", "--loader", "floppy", "--dataset", "cifar10", "--data-dir", str(tmp_path),
                 "--results", str(tmp_path / "r.csv")]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: unknown loader 'floppy'")
    assert str(failure.value).rstrip().splitlines()[-1] == line
    assert module._reason(failure.value) == line
