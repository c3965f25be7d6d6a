"""The documentation site's build hooks (docs/hooks.py, docs/griffe_rst.py) and the README's length; the site
itself is built with `mkdocs build --strict` by tests/run_all.sh."""
import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mkdocs")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"lqlib_docs_{name}", ROOT / "docs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_methods_table_is_generated_from_the_registry():
    from lqlib.methods import METHODS

    hooks = _load("hooks")
    out = hooks.on_page_markdown("before\n\n<!-- methods-table -->\n\nafter", None, None, None)
    assert "<!-- methods-table -->" not in out
    rows = [line.split("`")[1] for line in out.splitlines() if line.startswith("| `")]
    assert rows == list(METHODS)


def test_notebook_pages_use_the_smoke_studys_executed_copies(tmp_path, monkeypatch):
    hooks = _load("hooks")
    committed = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    # no executed study: every page is the committed notebook
    monkeypatch.setenv("LQLIB_DOCS_NOTEBOOKS", str(tmp_path / "absent"))
    assert {s: p.parent for s, p in hooks.notebook_sources().items()} == {s: ROOT / "notebooks" for s in committed}
    # an executed study: the plain copy, else the first grid copy by name; a notebook it lacks stays committed
    shutil.copyfile(ROOT / "notebooks" / "00_data_prep.ipynb", tmp_path / "00_data_prep.ipynb")
    for grid in ("METHOD-none__SEED-0", "METHOD-attention__SEED-0"):
        shutil.copyfile(ROOT / "notebooks" / "02_kd_ablation.ipynb", tmp_path / f"02_kd_ablation__{grid}.ipynb")
    monkeypatch.setenv("LQLIB_DOCS_NOTEBOOKS", str(tmp_path))
    got = hooks.notebook_sources()
    assert got["00_data_prep"] == tmp_path / "00_data_prep.ipynb"
    assert got["02_kd_ablation"] == tmp_path / "02_kd_ablation__METHOD-attention__SEED-0.ipynb"
    assert got["06_verdict"] == ROOT / "notebooks" / "06_verdict.ipynb"
    assert sorted(got) == committed


def test_sphinx_roles_become_inline_code():
    roles = _load("griffe_rst")
    assert roles.plain_roles(":func:`lqlib.methods.methods_table` and :class:`~lqlib.losses.LossComposer`") == \
        "`lqlib.methods.methods_table` and `LossComposer`"
    assert roles.plain_roles("``literal`` stays") == "``literal`` stays"


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move details into docs/"
