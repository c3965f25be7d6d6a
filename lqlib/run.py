"""Run the numbered notebooks headlessly with papermill, from a preset.

    python -m lqlib.run --preset smoke               # CPU, tiny backbone, a few hundred faces
    python -m lqlib.run --preset gpu --out runs/gpu  # the real study on one GPU
    python -m lqlib.run --preset smoke --prepare-only --out runs/ci   # parameterised copies, not run (nbval)

A preset (``lqlib/presets/<name>.yaml`` or a path) holds ``parameters`` shared by every notebook
that declares them, and a ``notebooks`` list, each item with its own ``parameters`` and an optional
``grid`` (every combination becomes one run of that notebook: e.g. one student per method and
seed). Parameter names are checked against each notebook's ``parameters`` cell before anything
runs: an unknown name is an error (papermill itself only warns).

Executed copies go to ``<out>/notebooks/`` (numbered so that their order is the execution order),
and ``<out>/status.json`` records finished steps: a re-run skips them (``--force`` re-runs), and the
training inside a notebook resumes from its checkpoint. The run stops at the first failing notebook
and prints the path of its executed copy.

A **blocked** preset (``blocks: {parameter: SEED, values: [0, 1, 2, 3, 4]}``) runs one block per call,
``--block K``: the steps whose ``parameter`` is K (grid values and fixed values alike), every step that does
not set it (the teacher gets K where its notebook declares the parameter), and it publishes into
``<publish>/blocks/<parameter>-K/``. A block is self-contained (its own teacher, students, evaluation): it
needs nothing of another block's run folder, so a study can be spread over machines that keep no files.
"""
from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from . import paths
from .io import write_json
from .run_record import RUN_INFO, environment, publish_run_info  # noqa: F401  (run.environment: public)

PRESET_DIR = Path(__file__).resolve().parent / "presets"


class PresetError(ValueError):
    pass


def notebooks_dir() -> Path:
    return paths.repo_root() / "notebooks"


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name_or_path: str) -> dict:
    import yaml

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
        return {**(self.defaults or {}), **_expand(self.parameters)}

    @property
    def key(self) -> str:
        """Executed-copy name: the (numbered) notebook stem, its tag and its grid values."""
        grid = "".join(f"__{k}-{_slug(v)}" for k, v in self.grid_values.items())
        return f"{Path(self.notebook).stem}{'__' + _slug(self.tag) if self.tag else ''}{grid}"

    @property
    def label(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.grid_values.items())
        return f"{Path(self.notebook).stem} {self.tag} {extra}".replace("  ", " ").strip()


def _expand(v):
    """Expand $VARS in string parameters (presets name user data folders through the environment)."""
    import os

    if isinstance(v, str):
        out = os.path.expandvars(v)
        if "$" in out:
            raise PresetError(f"parameter value {v!r} names an environment variable that is not set")
        return out
    if isinstance(v, list):
        return [_expand(x) for x in v]
    if isinstance(v, dict):
        return {k: _expand(x) for k, x in v.items()}
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
    """The steps whose key contains one of ``only`` (all of them without ``only``): ``--only``."""
    return [s for s in steps if not only or any(o in s.key for o in only)]


def params_hash(params: dict) -> str:
    """A stable digest of a step's (expanded) parameters: a finished step re-runs when it changes."""
    import hashlib

    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _status_path(out: Path) -> Path:
    return out / "status.json"


def _load_status(out: Path) -> dict:
    p = _status_path(out)
    if not p.is_file():
        return {}
    try:
        status = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        status = e
    if not isinstance(status, dict) or not all(isinstance(v, dict) for v in status.values()):
        why = status if isinstance(status, Exception) else "not a mapping of step → record"
        raise RunError(f"{p} is not a valid run record ({why}). Move it aside or delete it: the runner then "
                       "re-runs every step, and each training resumes from its own checkpoint.")
    return status


SYNTHETIC_ENV = "LQLIB_SYNTHETIC"  # "refuse" in the notebooks' kernels unless the run allows synthetic data


def _face_data_report(data_dir: str) -> tuple[bool, str]:
    """(face data found, where the runner looked) for a notebook's ``DATA_DIR``."""
    try:
        d = paths.data_dir(data_dir or None)
    except FileNotFoundError as e:  # names every place tried
        return False, str(e).split("Tried: ", 1)[-1]
    return (d / "lfw" / "pairs.txt").is_file(), f"{d} (no lfw/pairs.txt there)"


def _uses_synthetic(params: dict) -> bool:
    """Whether a step would train or evaluate on the synthetic set: what the notebooks' data calls
    (:func:`lqlib.study.resolve_training_data`, :func:`lqlib.study.load_eval_pairs`) fall back to when
    the face-data directory has no LFW and the step names no data of its own."""
    if "DATA_DIR" not in params or not ({"DATA", "PAIRS"} & set(params)):
        return False
    if "DATA" in params:
        data = params["DATA"] or _recipe_data(params)
        if data == "synthetic":
            return True
        if data and paths.resolve(data).exists():
            return False
    elif str(params["PAIRS"]).endswith((".bin", ".txt")):
        return False
    return not _face_data_report(params["DATA_DIR"])[0]


def _fetch_face_data(steps: list, log) -> bool:
    """A fresh machine — no face-data directory anywhere (no ``DATA_DIR``, no ``$LQLIB_DATA`` folder, no
    ``../shared/data``, nothing fetched): fetch LFW into the user cache and align it (``python -m lqlib.data fetch
    lfw``), so the run trains on real faces; offline, one line says how (then the run goes on as without data).
    A data directory that exists but lacks LFW is the user's choice: nothing is fetched."""
    from .data.fetch import FetchError, fetch_lfw, lfw_ready

    if lfw_ready() or any(s.effective().get("DATA_DIR") for s in steps):
        return False
    try:
        paths.data_dir()
        return False
    except paths.DataNotFoundError:
        pass
    log(f"lqlib.run: no face data found: fetching LFW into {paths.user_cache_dir()} (python -m lqlib.data fetch lfw)")
    try:
        data = fetch_lfw(log=log)
    except (FetchError, OSError) as e:
        log(f"lqlib.run: {str(e).splitlines()[0]}")
        return False
    log(f"lqlib.run: face data: {data} (LFW; python -m lqlib.data fetch celeba adds lfw-half's CelebA-299 side)")
    return True


def _recipe_data(params: dict) -> str:
    from .config import recipe

    try:
        return str(recipe(params.get("RECIPE", "smoke"), "teacher").get("data", "lfw-half"))
    except ValueError:
        return ""


def _teacher_dependency(params: dict, run_name: str) -> Optional[dict]:
    """What a student step depends on besides its parameters: its teacher's identity by content
    (:func:`lqlib.checkpoint.teacher_identity`; the study's own teacher lives in runs/<RUN_NAME>/teacher,
    see :class:`lqlib.study.Study`), so a retrained teacher re-runs its students."""
    if "TEACHER" not in params:
        return None
    from .checkpoint import teacher_identity

    return {"teacher": teacher_identity(params["TEACHER"] or paths.runs_dir() / run_name / "teacher")}


def _legacy_done(earlier: dict, target: Path, params: dict, run_name: str) -> bool:
    """A record from before dependencies were recorded: still done when its executed copy is newer than
    the teacher's checkpoint (the student was trained after the teacher was last written)."""
    from .checkpoint import checkpoint_path

    ck = checkpoint_path(paths.resolve(params["TEACHER"]) if params["TEACHER"] else
                         paths.runs_dir() / run_name / "teacher")
    return not ck.is_file() or ck.stat().st_mtime <= target.stat().st_mtime


def default_out(preset: dict) -> Path:
    """The preset's own run directory, ``runs/<preset>``: the one run that publishes (see :func:`run`)."""
    return paths.runs_dir() / preset["name"]


def run(preset_name: str, out: Optional[str] = None, *, prepare_only: bool = False, force: bool = False,
        only: Optional[list[str]] = None, synthetic: bool = False, block=None, log=print) -> list[Path]:
    """Execute (or, with ``prepare_only``, just parameterise) the preset's notebooks in order.

    Face data: when a step would fall back to the synthetic identity set (no face data found), the run is
    refused before its first step, naming where it looked — unless ``synthetic`` (``--synthetic``) or the
    preset's ``allow_synthetic: true`` (smoke). A synthetic run of the preset's own run dir goes to
    ``runs/<preset>-synthetic``.

    Publishing: only the run that owns the published folders publishes into them — the preset's own run
    directory ``runs/<preset>`` on face data. Any other run (``--out`` elsewhere, or synthetic data) writes
    ``run_info.json`` and the notebooks' ``PUBLISH_DIR`` copies to ``<out>/published/`` instead.

    Blocks: a preset with a ``blocks`` section runs only with ``block`` (``--block K``, :func:`block_plan`);
    its run folder records the block (``block.json``) and refuses another one."""
    import papermill as pm

    preset = load_preset(preset_name)
    own = default_out(preset)
    out_dir = paths.resolve(out) if out else own
    if only is not None and not only:
        raise PresetError("--only needs at least one step name (part of a key; see --list)")
    if preset.get("blocks") and block is None:
        param, values = block_spec(preset)
        raise PresetError(f"preset {preset['name']!r} runs in blocks: pass --block with one {param} of {values}")
    if block is not None and not preset.get("blocks"):
        raise PresetError(f"--block: preset {preset['name']!r} has no 'blocks' section")

    def select(run_name):
        all_steps = plan(preset, run_name)
        if block is not None:
            all_steps = block_plan(preset, all_steps, block)
        steps = selected(all_steps, only)
        if only and not steps:
            raise PresetError(f"--only {' '.join(only)} matches no step; the steps are: {[s.key for s in all_steps]}")
        return all_steps, steps

    all_steps, steps = select(out_dir.name)
    fallback = [s for s in steps if _uses_synthetic(s.effective())]
    if fallback and not (synthetic or prepare_only) and _fetch_face_data(fallback, log):
        fallback = [s for s in steps if _uses_synthetic(s.effective())]
    if synthetic and not fallback:
        log("lqlib.run: --synthetic: face data found, the run uses it (nothing falls back to synthetic data)")
    elif synthetic and not prepare_only and out_dir.resolve() == own.resolve():
        out_dir = own.with_name(f"{own.name}-synthetic")  # never the preset's own (publishing) study
        all_steps, steps = select(out_dir.name)
        fallback = [s for s in steps if _uses_synthetic(s.effective())]
    run_name = out_dir.name
    status = _load_status(out_dir)  # --force re-runs the selected steps; the record of the others stays
    if fallback and not (synthetic or preset.get("allow_synthetic") or prepare_only):
        where = sorted({_face_data_report(s.effective()["DATA_DIR"])[1] for s in fallback})
        raise PresetError(
            f"no face data found — looked in: {'; '.join(where)}. Without it {len(fallback)} step(s) "
            f"({', '.join(s.label for s in fallback[:3])}{', ...' if len(fallback) > 3 else ''}) would train and "
            "evaluate on the SYNTHETIC identity set. Put the data there (README: ../shared/data), set $LQLIB_DATA "
            "or the preset's DATA_DIR, or fetch LFW (python -m lqlib.data fetch lfw [--from PATH]); or pass --synthetic to run on synthetic data anyway (it publishes nothing "
            f"into {preset.get('publish') or 'results/'}: its record goes to <out>/published/)")
    is_synthetic = bool(fallback) and not prepare_only
    owner = out_dir.resolve() == own.resolve() and not is_synthetic
    publish_dir = (paths.resolve(preset["publish"]) if owner else out_dir / "published") if preset.get("publish") \
        else None
    if block is not None:
        _claim_block(out_dir, block_spec(preset)[0], block, prepare_only)
        if owner and publish_dir is not None:
            publish_dir = paths.resolve(block_publish(preset, block))
    if is_synthetic:
        bar = "!" * 100
        log(f"{bar}\nlqlib.run: SYNTHETIC DATA ({'--synthetic' if synthetic else 'allow_synthetic'}): numbers mean "
            f"nothing about faces; nothing is published outside {out_dir}\n{bar}")
    nb_out = out_dir / "notebooks"
    nb_out.mkdir(parents=True, exist_ok=True)
    written = []
    t_all = time.time()
    log(f"lqlib.run: preset {preset['name']!r} → {out_dir} ({len(steps)} notebook runs"
        f"{', prepare only' if prepare_only else ''})")
    env_before = os.environ.get(SYNTHETIC_ENV)
    if not prepare_only:  # the notebooks' kernels inherit it: a data call that would fall back refuses
        os.environ[SYNTHETIC_ENV] = "allow" if is_synthetic else "refuse"
    try:
        written = _run_steps(pm, preset, steps, all_steps, status, out_dir, nb_out, run_name, owner, publish_dir,
                             prepare_only, force, log)
    finally:
        if env_before is None:
            os.environ.pop(SYNTHETIC_ENV, None)
        else:
            os.environ[SYNTHETIC_ENV] = env_before
    if not prepare_only:
        total = sum(v.get("seconds", 0) for v in status.values())
        log(f"lqlib.run: all {len(steps)} notebook runs done in {time.time() - t_all:.0f} s "
            f"(notebook time recorded: {total:.0f} s); executed copies in {nb_out}")
        if publish_dir is not None:  # written after every step
            log(f"lqlib.run: run record (command, environment, seconds per step) → {publish_dir / RUN_INFO}")
    return written


def _claim_block(out_dir: Path, param: str, value, prepare_only: bool) -> None:
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


def _run_steps(pm, preset, steps, all_steps, status, out_dir, nb_out, run_name, owner, publish_dir, prepare_only,
               force, log) -> list[Path]:
    written = []
    for i, step in enumerate(steps, 1):
        target = nb_out / f"{step.key}.ipynb"
        params = _expand(step.parameters)
        if not owner and params.get("PUBLISH_DIR"):  # tables of a run that does not own results/ stay with it
            params["PUBLISH_DIR"] = str(out_dir / "published")
        digest = params_hash(params)
        depends = _teacher_dependency(step.effective(), run_name)
        earlier = status.get(step.key, {})
        if not (prepare_only or force) and earlier.get("status") == "done" and target.is_file():
            same_deps = earlier.get("depends") == depends or (
                "depends" not in earlier and depends is not None and _legacy_done(earlier, target, step.effective(), run_name))
            if earlier.get("params_hash") == digest and (depends is None or same_deps):
                if depends is not None and earlier.get("depends") != depends:
                    status[step.key] = {**earlier, "depends": depends}  # an older record: its teacher is this one
                    write_json(_status_path(out_dir), status)
                log(f"[{i}/{len(steps)}] {step.label}: done earlier, skipped")
                written.append(target)
                continue
            why = "parameters changed" if earlier.get("params_hash") != digest else "its teacher changed"
            log(f"[{i}/{len(steps)}] {step.label}: {why} since the earlier run, running again")
        t0 = time.time()
        log(f"[{i}/{len(steps)}] {step.label} ...")
        try:
            pm.execute_notebook(str(notebooks_dir() / step.notebook), str(target), parameters=params,
                                kernel_name="python3", prepare_only=prepare_only, cwd=str(notebooks_dir()),
                                progress_bar=False, log_output=False)
        except PresetError:
            raise
        except Exception as e:
            log("    FAILED")
            status[step.key] = {"status": "failed", "output": str(target), "seconds": round(time.time() - t0, 1)}
            write_json(_status_path(out_dir), status)
            first = str(e).strip().splitlines()
            raise RunError(f"{step.label} failed; executed copy: {target}\n" + "\n".join(first[-8:])) from None
        dt = time.time() - t0
        log(f"    {'prepared' if prepare_only else 'done'} in {dt:.0f} s")
        if not prepare_only:
            depends = _teacher_dependency(step.effective(), run_name)  # after the step: what it trained against
            status[step.key] = {"status": "done", "output": str(target), "seconds": round(dt, 1),
                                "parameters": params, "params_hash": digest,
                                **({"depends": depends} if depends is not None else {})}
            write_json(_status_path(out_dir), status)
            if publish_dir is not None:  # after every step: a stopped or partial run is recorded too
                publish_run_info(preset, out_dir, status, all_steps, publish_dir)
        written.append(target)
    return written


class RunError(RuntimeError):
    pass


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lqlib.run", description="Run lqlib's notebooks with papermill.")
    ap.add_argument("--preset", default="smoke", help=f"preset name ({', '.join(list_presets())}) or YAML path")
    ap.add_argument("--out", help="run directory (default runs/<preset>)")
    ap.add_argument("--prepare-only", action="store_true", help="write parameterised notebooks without running them")
    ap.add_argument("--force", action="store_true", help="re-run notebooks already marked done")
    ap.add_argument("--only", nargs="+", help="run only steps whose key contains one of these strings")
    ap.add_argument("--synthetic", action="store_true",
                    help="run even without face data, on the SYNTHETIC identity set (publishes nothing into "
                         "results/; the preset's own run goes to runs/<preset>-synthetic)")
    ap.add_argument("--block", type=_block_value, help="one block of a blocked preset (its 'blocks' section), e.g. 0")
    ap.add_argument("--list", action="store_true", help="print the plan and exit")
    args = ap.parse_args(argv)
    try:
        if args.list:
            preset = load_preset(args.preset)
            out_dir = paths.resolve(args.out) if args.out else paths.runs_dir() / preset["name"]
            steps = plan(preset, out_dir.name)
            if args.block is not None:
                steps = block_plan(preset, steps, args.block)
            for s in selected(steps, args.only):
                print(f"{s.key}: {json.dumps(s.parameters)}")
            return 0
        run(args.preset, args.out, prepare_only=args.prepare_only, force=args.force, only=args.only,
            synthetic=args.synthetic, block=args.block)
    except (PresetError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _block_value(text: str):
    """A --block value as YAML reads it (``0`` → 0, ``a`` → 'a'), to match the preset's ``values``."""
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    sys.exit(main())
