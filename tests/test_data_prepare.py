"""The prepare step on a tiny synthetic tree: outputs, manifest, idempotence, atomicity and the CLI."""
from __future__ import annotations

import importlib
import json

import pytest

from lqlib import paths
from lqlib.data import RecordDataset, load_bin, load_pairs, prepare
from lqlib.data.__main__ import main
from lqlib.io import atomic_write
from test_data_synth import EXPECTED_TRAIN_IDENTITIES, EXPECTED_TRAIN_IMAGES, IGNORE_CODEC_DEPRECATION, make_data_dir

pytestmark = IGNORE_CODEC_DEPRECATION

prep = importlib.import_module("lqlib.data.prepare")  # the module; lqlib.data.prepare is the function


@pytest.fixture
def data_dir(tmp_path):
    return make_data_dir(tmp_path / "data")


def _quiet(msg):
    pass


def test_prepare_outputs_and_manifest(tmp_path, data_dir):
    out = tmp_path / "packs"
    m = prepare(data_dir, out, max_mb=1.0, log=_quiet)
    assert sorted(p.name for p in out.iterdir()) == ["lfw.bin", "lfw.folds.json", "lfw_half.bin", "lfw_half.folds.json",
                                                     "manifest.json", "train.idx", "train.rec"]
    assert m["quality"] == prep.QUALITIES[0]  # everything fits 1 MB: highest quality
    assert m["train"]["identities"] == EXPECTED_TRAIN_IDENTITIES and m["train"]["images"] == EXPECTED_TRAIN_IMAGES
    assert m["eval"]["lfw_half"]["pairs"] == 4 and m["eval"]["lfw"]["pairs"] == 8
    assert m["overlap"] == {"identities": 0, "images": 0, "ok": True}
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["files"]["train.rec"]["bytes"] == (out / "train.rec").stat().st_size
    assert on_disk["source"]["data_dir"] == str(data_dir) and on_disk["lqlib_version"]
    assert len(on_disk["label_names"]) == EXPECTED_TRAIN_IDENTITIES

    ds = RecordDataset(out / "train.rec")
    assert len(ds) == EXPECTED_TRAIN_IMAGES and ds.num_classes == EXPECTED_TRAIN_IDENTITIES
    assert sorted(set(ds.labels.tolist())) == list(range(EXPECTED_TRAIN_IDENTITIES))
    assert ds[0][0].shape == (3, 24, 24)
    images, issame = load_bin(out / "lfw_half.bin")
    assert images.shape == (8, 3, 24, 24) and issame.tolist() == [True, True, False, False]
    full = load_pairs(out / "lfw.bin")  # the packs record their folds (sidecar), not 10 contiguous splits
    assert len(full) == 8 and full.folds.tolist() == [0] * 4 + [1] * 4
    reference = load_pairs("lfw-10fold", data_dir)
    assert (full.images.float() - reference.images.float()).abs().mean() < 4  # same pairs, same order, RGB


def test_second_run_skips_and_force_rebuilds(tmp_path, data_dir):
    out = tmp_path / "packs"
    first = prepare(data_dir, out, quality=80, log=_quiet)
    logs = []
    second = prepare(data_dir, out, quality=80, log=logs.append)
    assert second["skipped"] and "up to date" in logs[0] and second["files"] == first["files"]
    assert not prepare(data_dir, out, quality=80, force=True, log=_quiet).get("skipped")
    assert not prepare(data_dir, out, quality=70, log=_quiet).get("skipped")  # other settings: rebuild
    (out / "lfw.bin").write_bytes(b"damaged")
    assert not prepare(data_dir, out, quality=70, log=_quiet).get("skipped")  # size differs: rebuild


def test_auto_quality_steps_down_to_fit(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(prep, "QUALITIES", (95, 50))
    sizes = {q: prepare(data_dir, tmp_path / f"q{q}", quality=q, log=_quiet)["transfer_mb"] for q in (95, 50)}
    limit = (sizes[95] + sizes[50]) / 2
    monkeypatch.setattr(prep, "_estimate_mb", lambda *a: {95: 0.0, 50: 0.0})  # a wrong estimate...
    m = prepare(data_dir, tmp_path / "auto", max_mb=limit, log=_quiet)
    assert m["quality"] == 50 and m["transfer_mb"] <= limit  # ...is corrected on the real sizes


def test_failure_leaves_no_temp_files(tmp_path, data_dir, monkeypatch):
    out = tmp_path / "packs"

    def failing_write_bin(path, *args, **kw):
        with atomic_write(path, "wb") as f:
            f.write(b"partial")
            raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(prep, "write_bin", failing_write_bin)
    with pytest.raises(RuntimeError, match="simulated"):
        prepare(data_dir, out, quality=80, log=_quiet)
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")]
    assert "manifest.json" not in names and "lfw_half.bin" not in names
    monkeypatch.undo()
    assert not prepare(data_dir, out, quality=80, log=_quiet).get("skipped")  # no manifest: full rebuild


def test_cli(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.setenv(paths.ENV_DATA, str(tmp_path / "unset"))
    assert main(["prepare", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "LQLIB_DATA" in err and "--data-dir" in err and "Traceback" not in err
    assert main(["prepare", "--data-dir", str(data_dir), "--out", str(tmp_path / "o"), "--quality", "85"]) == 0
    out = capsys.readouterr().out
    assert "training identities" in out and "identity overlap    : 0" in out


def test_prepare_insightface_layout(tmp_path, data_dir, capsys):
    """--images + --pairs: train.rec holds exactly the identities named in no pair list; one .bin per list."""
    images = data_dir / "lfw" / "images"
    fold0 = tmp_path / "fold0.txt"
    fold0.write_text("1\t2\nAlice\t1\t2\nBob\t1\t2\nCarol\t1\tDave\t1\nAlice\t3\tEve\t1\n")
    out = tmp_path / "webface"
    assert main(["prepare", "--images", str(images), "--pairs", f"agedb_30={fold0}",
                 "--pairs", f"cplfw={data_dir / 'lfw' / 'pairs.txt'}", "--out", str(out), "--quality", "90"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    # every LFW name of the two lists (Alice..Gina) is a test identity: only Hank (2 images) trains
    assert m["label_names"] == ["Hank"] and m["train"] == {"identities": 1, "images": 2}
    assert (out / "property").read_text() == "1,112,112\n"
    assert len(RecordDataset(out / "train.rec")) == 2
    a, c = load_pairs(out / "agedb_30.bin"), load_pairs(out / "cplfw.bin")
    assert (len(a), a.num_folds, len(c), c.num_folds) == (4, 1, 8, 2)
    assert a.issame.tolist() == [True, True, False, False]
    assert "train.rec 2 images of 1 identities" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="referenced by .*missing.txt"):
        (tmp_path / "missing.txt").write_text("1\t1\nZed\t1\t2\nAlice\t1\tBob\t1\n")
        prep.prepare_insightface(images, tmp_path / "w2", {"agedb_30": tmp_path / "missing.txt"}, log=_quiet)
    assert main(["prepare", "--images", str(images), "--out", str(tmp_path / "w3")]) == 2  # no --pairs: one line
    assert "--pairs NAME=PAIRS.txt" in capsys.readouterr().err
