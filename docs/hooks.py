"""MkDocs hooks of lqlib's documentation site (mkdocs.yml ``hooks:``).

* The methods table is generated from lqlib's registry at build time (``lqlib.methods.methods_table``): a page
  holding ``<!-- methods-table -->`` gets the table in its place, so the site can never list a method the
  code does not have.
* Files that live outside ``docs/`` are brought in at their repository paths, so a relative link written for
  the repository (``results/cpu/README.md`` → ``../../figures/verdict/…png``) works on the site as well: the
  study records (``results/**/*.md``), ``bench/README.md`` and ``bench/results/*.md``, the committed figures
  (``figures/**/*.png``).
* The notebooks are rendered by mkdocs-jupyter from the copies the smoke study executed
  (``python -m lqlib.run --preset smoke`` → ``runs/smoke/notebooks/``; another folder with
  ``LQLIB_DOCS_NOTEBOOKS=DIR``). Without them the committed notebooks (no outputs) are rendered, and the
  notebooks page says so (``<!-- notebooks-source -->``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SMOKE_NOTEBOOKS = ROOT / "runs" / "smoke" / "notebooks"
# repository files the site shows at their own paths (globs relative to the repository root)
MIRRORED = ("results/**/*.md", "results/**/*.yaml", "bench/README.md", "bench/results/*.md", "figures/**/*.png")

_source: dict[str, Path] = {}  # notebook stem → the file rendered (for the notebooks page)
_staging: list[str] = []  # the build's copy of the notebooks, named as the committed ones (removed after the build)


def _executed_copy(stem: str, folder: Path) -> Path | None:
    """The smoke study's executed copy of a notebook: ``<stem>.ipynb``, else the first of its grid/tag copies
    (``02_kd_ablation__METHOD-attention__SEED-0.ipynb``) in name order."""
    if (folder / f"{stem}.ipynb").is_file():
        return folder / f"{stem}.ipynb"
    copies = sorted(folder.glob(f"{stem}__*.ipynb"))
    return copies[0] if copies else None


def notebook_sources() -> dict[str, Path]:
    """Every committed notebook → the file the site renders for it."""
    folder = Path(os.environ.get("LQLIB_DOCS_NOTEBOOKS") or SMOKE_NOTEBOOKS)
    out = {}
    for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        out[nb.stem] = (_executed_copy(nb.stem, folder) if folder.is_dir() else None) or nb
    return out


def _file(uri: str, src_dir, config) -> File:
    return File(uri, src_dir=str(src_dir), dest_dir=config["site_dir"], use_directory_urls=config["use_directory_urls"])


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files, config):
    for pattern in MIRRORED:
        for path in sorted(ROOT.glob(pattern)):
            uri = path.relative_to(ROOT).as_posix()
            if files.get_file_from_path(uri) is None:
                files.append(_file(uri, ROOT, config))
    # mkdocs-jupyter reads a notebook page from src_dir/src_uri, so the chosen copies are staged under the
    # committed names (an executed grid copy, 02_kd_ablation__METHOD-…, becomes notebooks/02_kd_ablation.ipynb)
    on_post_build(config)
    stage = Path(tempfile.mkdtemp(prefix="lqlib-docs-"))
    _staging.append(str(stage))
    (stage / "notebooks").mkdir()
    _source.clear()
    for stem, path in notebook_sources().items():
        _source[stem] = path
        shutil.copyfile(path, stage / "notebooks" / f"{stem}.ipynb")
        files.append(_file(f"notebooks/{stem}.ipynb", stage, config))
    return files


def on_post_build(config):
    while _staging:
        shutil.rmtree(_staging.pop(), ignore_errors=True)


def _notebooks_note() -> str:
    executed = {s: p for s, p in _source.items() if p.parent != NOTEBOOKS}
    if not executed:
        return ("!!! note \"Notebooks without outputs in this build\"\n    No executed smoke study was found "
                "(`runs/smoke/notebooks/`), so the notebook pages show the committed notebooks, which carry no "
                "outputs. Run `python -m lqlib.run --preset smoke`, then `mkdocs build`, to see every output.\n")
    rows = "\n".join(f"| `{s}` | `{p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}` |"
                     for s, p in sorted(_source.items()))
    return ("The notebook pages show the copies executed by the smoke study (`python -m lqlib.run --preset smoke`): "
            "tiny models trained for minutes, so their numbers say the pipeline works, not how well KD works.\n\n"
            "| notebook | rendered from |\n|---|---|\n" + rows + "\n")


def on_page_markdown(markdown, page, config, files):
    if "<!-- methods-table -->" in markdown:
        from lqlib.methods import methods_table

        markdown = markdown.replace("<!-- methods-table -->", methods_table())
    if "<!-- notebooks-source -->" in markdown:
        markdown = markdown.replace("<!-- notebooks-source -->", _notebooks_note())
    return markdown


def on_build_error(error):
    while _staging:
        shutil.rmtree(_staging.pop(), ignore_errors=True)
