"""House rules of the committed notebooks, and the runner's checks of presets against them."""
import json

import pytest

from lqlib.paths import repo_root
from lqlib.presets import PresetError, list_presets, load_preset, parameters_cell, plan

NB_DIR = repo_root() / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
EXPECTED = ["00_data_prep", "01_teacher_training", "02_kd_ablation", "03_evaluation", "04_attention_maps",
            "05_degradation_explorer", "06_verdict"]


def test_the_numbered_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_rules(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "stored outputs"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    params = parameters_cell(path)  # literals only, NAME: type = value
    assert params and all(name.isupper() for name in params)
    src = "".join(tagged[0]["source"])
    assert all(":" in line.split("=")[0] for line in src.splitlines() if "=" in line), "annotate every parameter"
    assert "RUN_NAME" in params
    assert nb["cells"][0]["cell_type"] == "markdown"  # narrative first
    # papermill's own parser (`papermill --help-notebook`, JupyterLab's papermill tooling) must read every line
    import papermill

    seen = papermill.inspect_notebook(str(path))
    assert sorted(seen) == sorted(params), f"papermill cannot parse: {sorted(set(params) - set(seen))}"


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_matches_the_notebooks(preset):
    steps = plan(load_preset(preset), "x")
    assert steps
    for s in steps:
        declared = parameters_cell(NB_DIR / s.notebook)
        assert set(s.parameters) <= set(declared)
        for k, v in s.parameters.items():  # same literal type as the notebook's default
            d = declared[k]
            assert isinstance(v, type(d)) or (isinstance(d, float) and isinstance(v, int)), (s.key, k, v, d)


def test_unknown_parameter_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("notebooks:\n  - notebook: 03_evaluation\n    parameters: {MAX_PAIR: 10}\n")
    with pytest.raises(PresetError, match="MAX_PAIR"):
        plan(load_preset(str(bad)), "x")
    shared = tmp_path / "shared.yaml"
    shared.write_text("parameters: {NOPE: 1}\nnotebooks:\n  - notebook: 03_evaluation\n")
    with pytest.raises(PresetError, match="NOPE"):
        plan(load_preset(str(shared)), "x")
    with pytest.raises(PresetError, match="no preset"):
        load_preset("does-not-exist")


def test_grid_expands_to_one_run_per_value():
    steps = plan(load_preset("smoke"), "smoke")
    kd = [s for s in steps if s.notebook == "02_kd_ablation.ipynb"]
    assert [s.parameters["METHOD"] for s in kd] == ["none", "logit", "attention", "logit+attention"]
    assert all(s.parameters["RUN_NAME"] == "smoke" for s in steps)
    # sorted file names (nbval's order) run the numbered notebooks in the plan's order
    assert [s.notebook for s in sorted(steps, key=lambda s: s.key)] == [s.notebook for s in steps]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_is_valid_python(path):
    """A SyntaxError (e.g. a keyword argument given twice) must fail here, not only when the notebook runs."""
    for i, c in enumerate(json.loads(path.read_text())["cells"]):
        if c["cell_type"] == "code":
            src = "".join(line for line in c["source"] if not line.lstrip().startswith(("%", "!")))
            try:
                compile(src, f"{path.name}[{i}]", "exec")  # compile, not ast.parse: it checks repeated keywords
            except SyntaxError as e:
                raise AssertionError(f"{path.name} cell {i}: {e}") from None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_unused_imports(path):
    """Every name a notebook imports is used somewhere in it (a reader copies the first cell as it is)."""
    import ast

    code = "\n".join("".join(line for line in c["source"] if not line.lstrip().startswith(("%", "!")))
                     for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    tree = ast.parse(code)
    imported = {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not imported - used, f"{path.name} imports but never uses {sorted(imported - used)}"


def test_run_all_of_06_publishes_nothing_unless_asked():
    """06 defaults to PUBLISH=False (Run All in JupyterLab must not rewrite results/cpu/); the pooling step of
    every blocked study's preset (verdict, ...) passes True."""
    assert parameters_cell(NB_DIR / "06_verdict.ipynb")["PUBLISH"] is False
    blocked = [p for p in list_presets() if load_preset(p).get("blocks")]
    assert "verdict" in blocked
    for preset in blocked:
        pooled = [s for s in plan(load_preset(preset), "x") if s.notebook == "06_verdict.ipynb"]
        assert pooled and all(s.parameters.get("PUBLISH") is True for s in pooled), preset
