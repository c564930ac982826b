"""The environment of the runs (section 2.6) from the ``<results>.env.jsonl`` sidecar."""

import json
import math
from pathlib import Path

import pandas as pd

from thesislib.envinfo import LABELS as ENV_LABELS
from thesislib.errors import ThesisError
from thesislib.report.columns import VOLATILE_ENV_KEYS
from thesislib.report.load import parse_paths
from thesislib.results import env_path


def read_environments(results, frame: pd.DataFrame) -> list:
    """The recorded environments of the runs in ``frame`` (distinct, without run ids); [] if none of
    the sidecar's lines belongs to a run in ``frame``."""
    found = []
    for path in parse_paths(results):
        if env_path(path).is_file():
            found += _read_env_lines(env_path(path))
    run_ids = set(frame["run_id"].dropna())
    ours = [env for env in found if env.get("run_id") in run_ids]   # none: the table falls back to the rows
    distinct = []
    for env in ours:
        env = {key: value for key, value in _flatten(env).items() if key not in VOLATILE_ENV_KEYS}
        if env not in distinct:
            distinct.append(env)
    return distinct


def _read_env_lines(path: Path) -> list:
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ThesisError(f"environment file {path}, line {number}, is not JSON ({exc}): "
                                  "delete the line or the file (bench writes a new one)") from exc
    return lines


def _flatten(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def environment_table(environments: list, frame: pd.DataFrame) -> pd.DataFrame:
    """Section 2.6: one row per property, one column per distinct machine/software set."""
    if not environments:
        environments = [{"host": host} for host in sorted(frame["host"].dropna().unique())] or [{}]
    keys = [key for key in ENV_LABELS if any(key in env for env in environments)]
    keys += sorted({key for env in environments for key in env} - set(keys))
    table = pd.DataFrame({f"machine {i}" if len(environments) > 1 else "value":
                          [_env_value(env.get(key)) for key in keys]
                          for i, env in enumerate(environments, 1)},
                         index=[ENV_LABELS.get(key, key) for key in keys])
    for column, label in (("thesislib_version", "thesislib"), ("git_commit", "git commit")):
        values = ", ".join(sorted(frame[column].dropna().astype(str).unique())) or "unknown"
        table.loc[label] = values
    table.index.name = "property"
    return table


def _env_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)
