"""Run the numbered notebooks headlessly with papermill, from a preset.

    python -m lqlib.run --preset smoke               # CPU, tiny backbone, a few hundred faces
    python -m lqlib.run --preset gpu --out runs/gpu  # the real study on one GPU
    python -m lqlib.run --preset smoke --prepare-only --out runs/ci   # parameterised copies, not run (nbval)

What a preset holds and how its steps and blocks are formed: :mod:`lqlib.presets`.

Executed copies go to ``<out>/notebooks/`` (numbered so that their order is the execution order),
and ``<out>/status.json`` records finished steps: a re-run skips them (``--force`` re-runs), and the
training inside a notebook resumes from its checkpoint. The run stops at the first failing notebook
and prints the path of its executed copy.

A blocked preset runs one block per call, ``--block K`` (:func:`lqlib.presets.block_plan`); its run folder
records the block (``block.json``) and refuses another one.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from . import paths
from .data.fetch import fetch_when_no_face_data
from .errors import LqlibError, command
from .io import write_json
from .presets import (PresetError, block_plan, block_publish, block_spec, claim_block, default_out, expand,  # noqa: F401
                      list_presets, load_preset, notebooks_dir, params_hash, plan, selected)
from .run_record import (RUN_INFO, environment, legacy_done, publish_changes, publish_run_info,  # noqa: F401  (run.environment: public)
                         publish_snapshot, published_step, teacher_dependency)


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


def _recipe_data(params: dict) -> str:
    from .config import recipe

    try:
        return str(recipe(params.get("RECIPE", "smoke"), "teacher").get("data", "lfw-half"))
    except ValueError:
        return ""


def run(preset_name: str, out: Optional[str] = None, *, prepare_only: bool = False, force: bool = False,
        only: Optional[list[str]] = None, synthetic: bool = False, block=None, log=print) -> list[Path]:
    """Execute (or, with ``prepare_only``, just parameterise) the preset's notebooks in order.

    Face data: when a step would fall back to the synthetic identity set (no face data found), the run is
    refused before its first step, naming where it looked — unless ``synthetic`` (``--synthetic``) or the
    preset's ``allow_synthetic: true`` (smoke). A synthetic run of the preset's own run dir goes to
    ``runs/<preset>-synthetic``.

    Publishing: only the run that owns the published folders publishes into them — the preset's own run
    directory ``runs/<preset>`` on face data. Any other run (``--out`` elsewhere, or synthetic data) writes
    ``run_info.json`` and the notebooks' ``PUBLISH_DIR`` copies to ``<out>/published/`` instead, and its
    figures to ``<out>/figures/`` (not ``figures/``: the notebooks' kernels get ``$LQLIB_FIGURES``).

    Blocks: a preset with a ``blocks`` section runs only with ``block`` (``--block K``, :func:`block_plan`);
    its run folder records the block (``block.json``) and refuses another one."""
    import papermill as pm

    preset = load_preset(preset_name)
    own = default_out(preset)
    out_dir = paths.resolve(out) if out else own
    if preset.get("blocks") and block is None:
        param, values = block_spec(preset)
        raise PresetError(f"preset {preset['name']!r} runs in blocks: pass --block with one {param} of {values}")

    def select(run_name):
        all_steps = plan(preset, run_name)
        if block is not None:
            all_steps = block_plan(preset, all_steps, block)
        return all_steps, selected(all_steps, only)

    all_steps, steps = select(out_dir.name)
    fallback = [s for s in steps if _uses_synthetic(s.effective())]
    data_dirs = [s.effective().get("DATA_DIR") for s in fallback]
    if fallback and not (synthetic or prepare_only) and fetch_when_no_face_data(data_dirs, log):
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
        claim_block(out_dir, block_spec(preset)[0], block, prepare_only)
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
    kernel_env = {}  # the notebooks' kernels inherit it
    if not prepare_only:  # a data call that would fall back to synthetic data refuses
        kernel_env[SYNTHETIC_ENV] = "allow" if is_synthetic else "refuse"
    if not (prepare_only or owner):  # figures of a run that does not own figures/ stay with it
        kernel_env[paths.ENV_FIGURES] = str(out_dir / "figures")
        log(f"lqlib.run: figures → {out_dir / 'figures'} (only the preset's own run draws into figures/)")
    with _environment(kernel_env):
        written = _run_steps(pm, preset, steps, all_steps, status, out_dir, nb_out, run_name, owner, publish_dir,
                             prepare_only, force, log)
    if not prepare_only:
        total = sum(v.get("seconds", 0) for v in status.values())
        log(f"lqlib.run: all {len(steps)} notebook runs done in {time.time() - t_all:.0f} s "
            f"(notebook time recorded: {total:.0f} s); executed copies in {nb_out}")
        if publish_dir is not None:  # written after every step
            log(f"lqlib.run: run record (command, environment, seconds per step) → {publish_dir / RUN_INFO}")
    return written


@contextlib.contextmanager
def _environment(values: dict):
    """``values`` set in ``os.environ`` for the block (the notebooks' kernels inherit them), then restored."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_steps(pm, preset, steps, all_steps, status, out_dir, nb_out, run_name, owner, publish_dir, prepare_only,
               force, log) -> list[Path]:
    written = []
    for i, step in enumerate(steps, 1):
        target = nb_out / f"{step.key}.ipynb"
        params = expand(step.parameters)
        if not owner and params.get("PUBLISH_DIR"):  # tables of a run that does not own results/ stay with it
            params["PUBLISH_DIR"] = str(out_dir / "published")
        digest = params_hash(params)
        depends = teacher_dependency(step.effective(), run_name)
        earlier = status.get(step.key, {})
        if not (prepare_only or force) and earlier.get("status") != "done" and publish_dir is not None:
            record = published_step(publish_dir, preset["name"], step.key, params, digest, depends)
            if record is not None:  # a student trained and evaluated on an earlier day: its products are committed
                status[step.key] = {**record, "status": "done", "published": True}
                write_json(_status_path(out_dir), status)
                log(f"[{i}/{len(steps)}] {step.label}: published earlier ({len(record['products'])} files in "
                    f"{publish_dir}), skipped")
                continue
        if not (prepare_only or force) and earlier.get("status") == "done" and target.is_file():
            same_deps = earlier.get("depends") == depends or (
                "depends" not in earlier and depends is not None and legacy_done(earlier, target, step.effective(), run_name))
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
        before = publish_snapshot(publish_dir)
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
            depends = teacher_dependency(step.effective(), run_name)  # after the step: what it trained against
            status[step.key] = {"status": "done", "output": str(target), "seconds": round(dt, 1),
                                "parameters": params, "params_hash": digest,
                                **({"depends": depends} if depends is not None else {}),
                                "products": publish_changes(publish_dir, before)}
            write_json(_status_path(out_dir), status)
            if publish_dir is not None:  # after every step: a stopped or partial run is recorded too
                publish_run_info(preset, out_dir, status, all_steps, publish_dir)
        written.append(target)
    return written


class RunError(LqlibError, RuntimeError):
    pass


@command()
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
    return 0


def _block_value(text: str):
    """A --block value as YAML reads it (``0`` → 0, ``a`` → 'a'), to match the preset's ``values``."""
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    sys.exit(main())
