"""The verdict tables written by hand into the READMEs agree with the family files they report: every accuracy,
Δ, sd, p, Holm p, MDE and verdict of a row ``| H<k> | …`` is the published ``family.csv`` value, rounded as shown.
A number edited in one place and not the other, or a row copied from a dry run, fails here."""
import math
import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

# (README, the line its table follows, the family file the table reports)
TABLES = [
    ("README.md", "The **verdict study**", "results/cpu/family.csv"),
    ("results/cpu/README.md", "| id | comparison | scale |", "results/cpu/family.csv"),
]

_SUP = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")
_NUM = r"[+\-−]?\d+(?:\.\d+)?"


def shown(text):
    """(value, half a unit of its last shown digit) of a number as a README shows it: ``0.085``, ``+1.59``,
    ``−1.10``, ``8 × 10⁻⁶``, ``8.3 × 10⁻⁶``."""
    text = text.strip().replace("−", "-")
    m = re.fullmatch(r"(\d+(?:\.\d+)?) × 10([⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+)", text)
    if m:
        mant, exp = m.group(1), int(m.group(2).translate(_SUP))
        decimals = len(mant.split(".")[1]) if "." in mant else 0
        return float(mant) * 10.0 ** exp, 0.5 * 10.0 ** (exp - decimals)
    if not re.fullmatch(_NUM, text):
        raise ValueError(f"not a number as shown: {text!r}")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return float(text), 0.5 * 10.0 ** -decimals


def table_rows(path, anchor):
    """The ``| H<k> |`` rows (as dicts of header → cell) of the first table after the line containing ``anchor``."""
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if anchor in line)
    head = next(i for i in range(start, len(lines)) if lines[i].startswith("| id |"))
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
    header = cells(lines[head])
    rows = []
    for line in lines[head + 2:]:
        if not line.startswith("|"):
            break
        if re.match(r"\| H\d+ \|", line):
            rows.append(dict(zip(header, cells(line))))
    return rows


def column(row, *starts, exclude=()):
    hits = [k for k in row if k.lower().startswith(starts) and not any(x in k.lower() for x in exclude)]
    assert len(hits) == 1, f"one column starting with {starts} expected, got {hits}"
    return row[hits[0]]


def close(cell, value, what, hid):
    got, half = shown(cell)
    assert abs(got - value) <= half * 1.0001 + 1e-12, f"{hid} {what}: the README shows {cell}, family.csv has {value}"


@pytest.mark.parametrize("readme, anchor, family", TABLES)
def test_readme_verdict_rows_are_the_family_file(readme, anchor, family):
    fam = pd.read_csv(ROOT / family).set_index("id")
    rows = table_rows(readme, anchor)
    assert [r["id"] for r in rows] == list(fam.index), f"{readme}: rows {[r['id'] for r in rows]}"
    for r in rows:
        f, hid = fam.loc[r["id"]], r["id"]
        acc, base = column(r, "accuracy").split("/")
        close(acc, f.acc, "accuracy", hid)
        close(base, f.baseline_acc, "baseline accuracy", hid)
        delta = re.match(rf"\s*({_NUM}) ± ({_NUM})", column(r, "δ").replace("−", "-"))
        close(delta.group(1), f.delta, "Δ", hid)
        close(delta.group(2), f.delta_sd, "sd", hid)
        close(column(r, "p", exclude=("holm",)), f.p, "p", hid)
        close(column(r, "p holm", "p (holm"), f.p_holm, "Holm p", hid)
        close(column(r, "mde"), f.mde, "MDE", hid)
        assert column(r, "verdict").strip("*") == f.verdict, f"{hid} verdict"


def test_shown_numbers_read_as_written():
    assert shown("8 × 10⁻⁶") == (8e-6, 0.5e-6)
    v, half = shown("8.3 × 10⁻⁶")
    assert math.isclose(v, 8.3e-6) and math.isclose(half, 0.05e-6)
    assert shown("−1.10") == (-1.10, 0.005) and shown("0.085") == (0.085, 0.0005)
    with pytest.raises(ValueError, match="not a number"):
        shown("n/a")


def test_a_changed_number_fails(tmp_path, monkeypatch):
    """The check is not vacuous: one digit changed in a copy of the top README's H4 row is caught."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| H4 |"))
    (tmp_path / "README.md").write_text(text.replace(row, row.replace("+4.80", "+4.90")), encoding="utf-8")
    (tmp_path / "results" / "cpu").mkdir(parents=True)
    (tmp_path / "results" / "cpu" / "family.csv").write_text((ROOT / "results/cpu/family.csv").read_text())
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="H4 Δ"):
        test_readme_verdict_rows_are_the_family_file("README.md", TABLES[0][1], "results/cpu/family.csv")
