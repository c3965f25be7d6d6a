"""The two dependency files agree, and the notebooks obey the house rules."""
import json
import re
import tomllib
from pathlib import Path

import yaml

from lqlib.paths import repo_root

ROOT = repo_root()


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].strip().lower()


def test_every_runtime_dependency_reaches_environment_yml():
    deps = [_name(d) for d in _pyproject()["project"]["dependencies"]]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    pip_lines = [p for d in env["dependencies"] if isinstance(d, dict) for p in d.get("pip", [])]
    installs_project = any(re.fullmatch(r"-e\s+\.(\[.*\])?", p.strip()) for p in pip_lines)
    pip_names = {_name(p) for p in pip_lines if not p.startswith("-")}
    missing = [d for d in deps if d not in conda | pip_names and not installs_project]
    assert missing == []
    assert "conda-forge" in env["channels"]
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_torch_pins():
    deps = _pyproject()["project"]["dependencies"]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps
    for pkg in ("jupyterlab", "ipywidgets", "matplotlib", "seaborn", "grad-cam", "pandas", "numpy", "papermill", "nbval"):
        assert pkg in {_name(d) for d in deps}, pkg
    assert "pytest" in {_name(d) for d in _pyproject()["project"]["optional-dependencies"]["dev"]}


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"<!-- test-command -->\s*```(?:bash)?\n(.*?)```", readme, re.S)
    assert m, "README must hold the test command in a block after <!-- test-command -->"
    cmd = [l for l in m.group(1).splitlines() if l.strip() and not l.startswith("#")][-1].strip()
    assert cmd in ci
