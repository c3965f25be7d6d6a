"""Presets: what a batch run (:mod:`lqlib.run`) runs — loading, checking and expanding them into steps.

A preset (``lqlib/presets/<name>.yaml`` or a path) holds ``parameters`` shared by every notebook
that declares them, and a ``notebooks`` list, each item with its own ``parameters`` and an optional
``grid`` (every combination becomes one run of that notebook: e.g. one student per method and
seed). Parameter names are checked against each notebook's ``parameters`` cell before anything
runs: an unknown name is an error (papermill itself only warns).

A **blocked** preset (``blocks: {parameter: SEED, values: [0, 1, 2, 3, 4]}``) runs one block per call
(:func:`block_plan`): the steps whose ``parameter`` is K (grid values and fixed values alike), every step that
does not set it (the teacher gets K where its notebook declares the parameter), and it publishes into
``<publish>/blocks/<parameter>-K/`` (:func:`block_publish`, :func:`block_folders`). A block is self-contained
(its own teacher, students, evaluation): it needs nothing of another block's run folder, so a study can be
spread over machines that keep no files.
"""
from __future__ import annotations

import ast
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import yaml

from . import paths
from .errors import LqlibError
from .io import write_json

PRESET_DIR = Path(__file__).resolve().parent / "presets"


class PresetError(LqlibError, ValueError):
    pass


def notebooks_dir() -> Path:
    return paths.repo_root() / "notebooks"


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name_or_path: str) -> dict:
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        p = PRESET_DIR / f"{name_or_path}.yaml"
    elif not p.is_absolute():
        p = paths.resolve(p)
    if not p.is_file():
        raise PresetError(f"no preset {name_or_path!r}; available: {list_presets()} (or give a .yaml path)")
    with open(p) as f:
        preset = yaml.safe_load(f) or {}
    if not isinstance(preset.get("notebooks"), list) or not preset["notebooks"]:
        raise PresetError(f"{p}: a preset needs a non-empty 'notebooks' list")
    preset.setdefault("name", p.stem)
    preset.setdefault("parameters", {})
    return preset


def parameters_cell(nb_path: Path) -> dict[str, Any]:
    """Names and literal defaults of a notebook's one ``parameters``-tagged cell."""
    nb = json.loads(nb_path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise PresetError(f"{nb_path.name}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    src = "".join(cells[0]["source"])
    out = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        else:
            raise PresetError(f"{nb_path.name}: the parameters cell may only hold NAME: type = literal lines")
        try:
            out[target] = ast.literal_eval(value)
        except ValueError:
            raise PresetError(f"{nb_path.name}: parameter {target} is not a literal") from None
    return out


@dataclass
class Step:
    index: int
    notebook: str
    parameters: dict
    grid_values: dict
    tag: str = ""          # a preset item's ``tag``: the same notebook twice (e.g. 03 after each half)
    defaults: Optional[dict] = None  # the notebook's own parameters cell (what it runs with where not given)

    def effective(self) -> dict:
        """Every parameter the notebook will see: its defaults, then the step's (expanded)."""
        return {**(self.defaults or {}), **expand(self.parameters)}

    @property
    def key(self) -> str:
        """Executed-copy name: the (numbered) notebook stem, its tag and its grid values."""
        grid = "".join(f"__{k}-{_slug(v)}" for k, v in self.grid_values.items())
        return f"{Path(self.notebook).stem}{'__' + _slug(self.tag) if self.tag else ''}{grid}"

    @property
    def label(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.grid_values.items())
        return f"{Path(self.notebook).stem} {self.tag} {extra}".replace("  ", " ").strip()


def expand(v):
    """Expand $VARS in string parameters (presets name user data folders through the environment)."""
    if isinstance(v, str):
        out = os.path.expandvars(v)
        if "$" in out:
            raise PresetError(f"parameter value {v!r} names an environment variable that is not set")
        return out
    if isinstance(v, list):
        return [expand(x) for x in v]
    if isinstance(v, dict):
        return {k: expand(x) for k, x in v.items()}
    return v


_slug = paths.value_slug


def plan(preset: dict, run_name: str) -> list[Step]:
    """Expand the preset into notebook runs, checking every parameter name."""
    shared = dict(preset.get("parameters") or {})
    steps, used_shared = [], set()
    nb_dir = notebooks_dir()
    for item in preset["notebooks"]:
        if isinstance(item, str):
            item = {"notebook": item}
        name = item["notebook"]
        nb_path = nb_dir / (name if name.endswith(".ipynb") else f"{name}.ipynb")
        if not nb_path.is_file():
            raise PresetError(f"notebook {nb_path} does not exist")
        declared = parameters_cell(nb_path)
        own = dict(item.get("parameters") or {})
        grid = dict(item.get("grid") or {})
        unknown = sorted((set(own) | set(grid)) - set(declared))
        if unknown:
            raise PresetError(f"{nb_path.name}: unknown parameter(s) {unknown}; the notebook declares {sorted(declared)}")
        base = {k: v for k, v in shared.items() if k in declared}
        used_shared |= set(base)
        if "RUN_NAME" in declared:
            base["RUN_NAME"] = run_name
        base.update(own)
        keys = list(grid)
        for values in itertools.product(*(grid[k] if isinstance(grid[k], list) else [grid[k]] for k in keys)):
            gv = dict(zip(keys, values))
            steps.append(Step(len(steps), nb_path.name, {**base, **gv}, gv, str(item.get("tag", "")), declared))
    keys = [s.key for s in steps]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise PresetError(f"the preset runs {dupes} more than once with the same parameters")
    unused = sorted(set(shared) - used_shared)
    if unused:
        raise PresetError(f"shared parameter(s) {unused} are declared by no notebook")
    return steps


def block_spec(preset: dict) -> tuple[str, list]:
    """(parameter, values) of a blocked preset's ``blocks`` section."""
    spec = preset.get("blocks")
    if spec is None:
        raise PresetError(f"preset {preset['name']!r} has no blocks (no 'blocks' section): run it without --block")
    if not isinstance(spec, dict) or not spec.get("parameter") or not isinstance(spec.get("values"), list):
        raise PresetError(f"preset {preset['name']!r}: 'blocks' needs a 'parameter' and a list of 'values', got {spec!r}")
    return str(spec["parameter"]), list(spec["values"])


def block_publish(preset: dict, value) -> str:
    """Where block ``value`` of a blocked preset publishes: ``<publish>/blocks/<parameter>-<value>``."""
    param, _ = block_spec(preset)
    return f"{preset['publish'].rstrip('/')}/blocks/{paths.block_name(param, value)}"


def block_plan(preset: dict, steps: list[Step], value) -> list[Step]:
    """The steps of block ``value``: a step that sets the block parameter (its own value or a grid value)
    only where it equals ``value``; a step whose notebook declares the parameter without setting it gets
    ``value`` (only where its default differs, so an unchanged step keeps its record); every other step as it
    is. ``PUBLISH_DIR`` values under the preset's ``publish`` folder move into the block's."""
    param, values = block_spec(preset)
    if value not in values:
        raise PresetError(f"--block {value!r}: the preset's blocks are {param} in {values}")
    root = str(preset.get("publish") or "").rstrip("/")
    dst = block_publish(preset, value) if root else ""
    out = []
    for s in steps:
        declared = param in (s.defaults or {})
        if declared and param in s.parameters and s.parameters[param] != value:
            continue                                          # another block's step
        params = dict(s.parameters)
        if declared and s.effective().get(param) != value:
            params[param] = value
        pub = str(params.get("PUBLISH_DIR") or "")
        if root and (pub == root or pub.startswith(root + "/")):
            params["PUBLISH_DIR"] = dst + pub[len(root):]
        out.append(replace(s, parameters=params))
    return out


def selected(steps: list[Step], only: Optional[list[str]]) -> list[Step]:
    """The steps whose key contains one of ``only`` (all of them without ``only``): ``--only``. A selection that
    matches no step is a :class:`PresetError` listing the steps."""
    if only is not None and not only:
        raise PresetError("--only needs at least one step name (part of a key; see --list)")
    out = [s for s in steps if not only or any(o in s.key for o in only)]
    if only and not out:
        raise PresetError(f"--only {' '.join(only)} matches no step; the steps are: {[s.key for s in steps]}")
    return out


def params_hash(params: dict) -> str:
    """A stable digest of a step's (expanded) parameters: a finished step re-runs when it changes."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def default_out(preset: dict) -> Path:
    """The preset's own run directory, ``runs/<preset>``: the one run that publishes (see :func:`run`)."""
    return paths.runs_dir() / preset["name"]


def claim_block(out_dir: Path, param: str, value, prepare_only: bool) -> None:
    """``<out>/block.json`` names the block a run folder holds; a folder of another block is refused (its
    teacher and students belong to that block)."""
    p = out_dir / "block.json"
    want = {"parameter": param, "value": value}
    if p.is_file():
        have = json.loads(p.read_text())
        if have != want:
            raise PresetError(f"{out_dir} holds block {have.get('parameter')}={have.get('value')!r}, not "
                              f"{param}={value!r}: move it aside, or pass --out for this block")
    elif not prepare_only:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(p, want)


def block_folders(preset: str | dict) -> dict:
    """``{block value: its publish folder}`` of a blocked preset (a name or path, or a loaded preset)."""
    spec = load_preset(preset) if isinstance(preset, str) else preset
    _, values = block_spec(spec)
    return {v: paths.resolve(block_publish(spec, v)) for v in values}


def published(preset: str | dict, name: str) -> dict:
    """``{block value: <block folder>/<name>}`` of the blocks of ``preset`` that have published file ``name``."""
    return {v: d / name for v, d in block_folders(preset).items() if (d / name).is_file()}


__all__ = ["PRESET_DIR", "PresetError", "Step", "notebooks_dir", "list_presets", "load_preset", "parameters_cell",
           "expand", "plan", "block_spec", "block_publish", "block_plan", "block_folders", "published", "selected",
           "params_hash", "default_out", "claim_block"]
