"""scripts/run_study.py (`make run`) loaded as a module, for the tests that call its functions."""

import importlib.util

from thesislib.paths import PROJECT_ROOT


def run_study_module():
    spec = importlib.util.spec_from_file_location("run_study", PROJECT_ROOT / "scripts" / "run_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
