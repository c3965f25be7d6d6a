"""One word, one meaning (docs/library.md): the retired words and phrases must not come back in the
package, the notebooks, the README or the documentation, and documented keyword arguments must exist."""
import inspect
import re
from pathlib import Path

from lqlib.degrade import degrade

ROOT = Path(__file__).resolve().parents[1]

# phrase → the word that replaced it
RETIRED = {
    r"\bKD[ -]modes?\b": "method (a student's KD choice)",
    r"\bprotocol names?\b": "split name (a protocol is a scoring rule only)",
    r"\bdegradation presets?\b": "degradation (`degrade(degradation=...)`, `cfg.degradation`)",
    r"\bdegrade_preset\b": "cfg.degradation",
    r"\bget_preset\b": "lqlib.degrade.get_degradation",
    r"\bpreset_buttons\b|\bPRESET_SCALES\b": "scale_buttons / QUICK_SCALES",
    r"defaults? (?:are|is) the [\w-]*\s*paper's recipe": "lqlib's defaults (the `paper` recipe is the paper's)",
}


def _texts():
    files = sorted((ROOT / "lqlib").rglob("*.py")) + sorted((ROOT / "lqlib").rglob("*.yaml"))
    files += sorted((ROOT / "notebooks").glob("*.ipynb")) + [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    for p in files:
        yield p, p.read_text(encoding="utf-8")


def test_retired_phrases_are_gone():
    hits = []
    for p, text in _texts():
        for pattern, instead in RETIRED.items():
            for m in re.finditer(pattern, text, flags=re.IGNORECASE):
                line = text.count("\n", 0, m.start()) + 1
                if "RENAMED_FIELDS =" in text.splitlines()[line - 1]:
                    continue  # the one place an old field name is spelled: old runs still load
                hits.append(f"{p.relative_to(ROOT)}:{line}: {m.group(0)!r} → say {instead}")
    assert not hits, "retired vocabulary:\n" + "\n".join(hits)


def test_the_checker_sees_a_retired_phrase(tmp_path):
    """The patterns match the phrases they retire (a typo in a pattern would make the test above vacuous)."""
    samples = ["one student per KD mode", "a .bin path / protocol name", "unknown degradation preset 'x'",
               "cfg.degrade_preset", "Defaults are the KD-for-LQ-FR paper's recipe."]
    for s in samples:
        assert any(re.search(p, s, flags=re.IGNORECASE) for p in RETIRED), s


def test_degrade_keywords_named_in_docstrings_exist():
    """Where a docstring says which keywords go to ``degrade``, it names only ones ``degrade`` has (viz once
    documented a ``mode`` that ``degrade`` never had)."""
    accepted = set(inspect.signature(degrade).parameters)
    found = 0
    for p, text in _texts():
        for m in re.finditer(r"go to :func:`lqlib\.degrade\.degrade`\s+\(([^)]*)\)", text):
            found += 1
            named = set(re.findall(r"``(\w+)``", m.group(1)))
            assert named <= accepted, f"{p.relative_to(ROOT)} documents {sorted(named - accepted)} for degrade"
    assert found, "no docstring lists degrade's keywords any more: drop this test"


def test_a_run_written_before_the_rename_still_loads():
    from lqlib.config import TrainConfig

    assert TrainConfig.from_dict({"degrade_preset": "askd"}).degradation == "askd"
    assert TrainConfig.upgrade({"degrade_preset": "askd", "epochs": 2}) == {"degradation": "askd", "epochs": 2}
