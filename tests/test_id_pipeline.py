"""Identification evaluation: TinyFace on a synthetic folder with its layout (native LR images, a colour-keyed
fake embedding), the one-line skip without data, layout files, and lfw-half-id on the shared data."""
import json

import numpy as np
import pytest
import torch
from torchvision.io import write_png

from lqlib.data.id_layouts import (IdEntry, IdLayout, lfw_half_id, read_layout_csv, read_layout_json,
                                   tinyface_identity, tinyface_layout, write_layout_json)
from lqlib.data.splits import SplitError
from lqlib.evaluation.id_pipeline import evaluate_identification, evaluate_tinyface, id_table, load_faces


class MeanColour(torch.nn.Module):
    """A fake face embedder: the mean RGB of the (normalised) image — constant-colour faces are identities."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x.mean((2, 3)) + 0 * self.dummy


def _face(path, rgb, hw=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = torch.tensor(rgb, dtype=torch.uint8)[:, None, None].expand(3, *hw).contiguous()
    write_png(img, str(path))


@pytest.fixture
def tinyface(tmp_path):
    ts = tmp_path / "tinyface" / "Testing_Set"
    _face(ts / "Gallery_Match" / "1_1.png", (230, 20, 20))
    _face(ts / "Gallery_Match" / "1_2.png", (220, 40, 30), hw=(24, 18))
    _face(ts / "Gallery_Match" / "2_1.png", (20, 230, 20))
    _face(ts / "Gallery_Match" / "3_1.png", (20, 70, 230))
    _face(ts / "Probe" / "1_3.png", (225, 30, 25), hw=(16, 12))
    _face(ts / "Probe" / "2_2.png", (30, 220, 30))
    _face(ts / "Probe" / "3_2.png", (20, 20, 230))
    _face(ts / "Gallery_Distractor" / "0001.png", (22, 22, 228))   # nearer to probe 3_2 than its own gallery image
    _face(ts / "Gallery_Distractor" / "0002.png", (128, 128, 128))
    return tmp_path / "tinyface"


def test_tinyface_identity_rule():
    assert tinyface_identity("Probe/1234_7.jpg") == "1234"
    with pytest.raises(SplitError, match="not '<identity>_<n>"):
        tinyface_identity("abc.jpg")


def test_tinyface_layout_and_metrics(tinyface, monkeypatch):
    monkeypatch.setenv("LQLIB_TINYFACE", str(tinyface))
    lay = tinyface_layout()
    assert lay.counts() == {"probes": 3, "mated_probes": 3, "nonmated_probes": 0, "gallery": 4,
                            "gallery_identities": 3, "distractors": 2}
    faces = load_faces([e.path for e in lay.entries])
    assert faces.shape == (9, 3, 112, 112) and faces.dtype == torch.uint8
    df = evaluate_tinyface(MeanColour(), batch_size=4)
    assert list(df["scale"]) == [1, 1] and list(df["distractors"]) == [True, False]
    assert df["interpolation"].iloc[0].startswith("bicubic to 112")
    w, wo = df.iloc[0], df.iloc[1]
    # with distractors: probe 3_2 is beaten by distractor 0001 -> ranks 1, 1, 2; APs 1, 1, 1/2
    assert (w["rank1"], w["rank5"], w["n_gallery"]) == pytest.approx((200 / 3, 100.0, 6))
    assert w["mAP"] == pytest.approx(100 * 2.5 / 3)
    assert (wo["rank1"], wo["mAP"], wo["n_gallery"]) == pytest.approx((100.0, 100.0, 4))
    # templates: identity 1's two gallery images become one
    dt = evaluate_tinyface(MeanColour(), root=tinyface, use_templates=True)
    assert dt.iloc[0]["n_gallery"] == 5 and dt.iloc[0]["rank1"] == pytest.approx(200 / 3)


def test_tinyface_without_data_skips_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LQLIB_TINYFACE", raising=False)
    assert evaluate_tinyface(MeanColour(), root=tmp_path / "nowhere") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinyface: skipped")
    assert evaluate_tinyface(MeanColour()) is None
    with pytest.raises(FileNotFoundError, match="LQLIB_TINYFACE"):
        tinyface_layout()


def test_layout_csv_maps_another_set(tinyface, tmp_path):
    ts = tinyface / "Testing_Set"
    csv = tmp_path / "scface_like.csv"
    csv.write_text("path,role,identity\n"
                   f"{ts}/Gallery_Match/1_1.png,gallery,a\n{ts}/Gallery_Match/2_1.png,gallery,b\n"
                   f"{ts}/Probe/1_3.png,probe,a\n{ts}/Probe/2_2.png,probe,b\n{ts}/Probe/3_2.png,probe,c\n"
                   f"{ts}/Gallery_Distractor/0002.png,distractor,\n")
    lay = read_layout_csv(csv)
    assert lay.counts()["nonmated_probes"] == 1
    df = evaluate_identification(MeanColour(), lay, scales=(1, 4), eval_modes=("cross", "both"))
    assert len(df) == 2 * 2 * 2
    row = df[(df["scale"] == 4) & (df["eval_mode"] == "cross") & df["distractors"]].iloc[0]
    assert (row["rank1"], row["n_mated"], row["n_nonmated"]) == (100.0, 2, 1)
    assert row["interpolation"] == "none (112 px)"
    bad = tmp_path / "bad.csv"
    bad.write_text("path,role,identity\n" f"{ts}/Probe/1_3.png,suspect,a\n")
    with pytest.raises(SplitError, match="unknown role 'suspect'"):
        read_layout_csv(bad)
    with pytest.raises(ValueError, match="eval_modes"):
        evaluate_identification(MeanColour(), lay, eval_modes=("native",))


def test_a_probe_that_is_also_a_gallery_image_is_refused_by_path_and_by_content(tinyface, tmp_path):
    """A layout listing one image as a probe and in the gallery would find the probe itself (rank-1 100 % by
    construction): refused by path when the layout is read, by content (identical pixels under another name, in
    the gallery or among the distractors) before any model is run — naming the images."""
    import shutil

    ts = tinyface / "Testing_Set"
    head = "path,role,identity\n"
    gallery = f"{ts}/Gallery_Match/1_1.png,gallery,a\n{ts}/Gallery_Match/2_1.png,gallery,b\n"
    same_path = tmp_path / "same_path.csv"
    same_path.write_text(head + gallery + f"{ts}/Gallery_Match/1_1.png,probe,a\n{ts}/Probe/2_2.png,probe,b\n")
    with pytest.raises(SplitError, match=r"same_path\.csv: 1 probe image\(s\) are also listed in the gallery.*"
                                         r"Gallery_Match/1_1\.png"):
        read_layout_csv(same_path)
    shutil.copyfile(ts / "Gallery_Match" / "2_1.png", tmp_path / "renamed.png")
    shutil.copyfile(ts / "Gallery_Distractor" / "0002.png", tmp_path / "grey.png")
    for extra, dup in ((f"{tmp_path}/renamed.png,probe,b\n", r"renamed\.png = \S*Gallery_Match/2_1\.png"),
                       (f"{tmp_path}/grey.png,probe,c\n{ts}/Gallery_Distractor/0002.png,distractor,\n",
                        r"grey\.png = \S*Gallery_Distractor/0002\.png")):
        copy = tmp_path / "copy.csv"
        copy.write_text(head + gallery + f"{ts}/Probe/1_3.png,probe,a\n" + extra)
        lay = read_layout_csv(copy)  # other paths: the layout itself cannot tell
        with pytest.raises(SplitError, match=r"1 probe image\(s\) are also in the gallery \(identical pixels\).*" + dup):
            evaluate_identification(MeanColour(), lay, scales=(1,), eval_modes=("cross",))


def test_a_layout_file_with_only_its_header_says_so(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("path,role,identity\n")
    with pytest.raises(SplitError, match=r"empty\.csv: no images under its header"):
        read_layout_csv(empty)
    (tmp_path / "nohead.csv").write_text("file,kind\nx.png,probe\n")
    with pytest.raises(SplitError, match=r"nohead\.csv: expected a CSV header 'path,role,identity'"):
        read_layout_csv(tmp_path / "nohead.csv")


def test_id_table_mean_sd_over_seeds():
    import pandas as pd

    rows = [{"model": m, "seed": s, "scale": sc, "eval_mode": "cross", "distractors": True, "rank1": v}
            for m, s, sc, v in [("BasicNet-LR", 0, 8, 40.0), ("BasicNet-LR", 1, 8, 44.0), ("BasicNet-HR", 0, 8, 30.0)]]
    t = id_table(pd.DataFrame(rows))
    assert list(t.index) == ["BasicNet-HR", "BasicNet-LR"]
    assert t.loc["BasicNet-LR", "×8"] == "42.00 ± 2.83" and t.loc["BasicNet-HR", "×8"] == "30.00"


def test_sidecar_roundtrip(tmp_path, tinyface):
    lay = IdLayout("toy", [IdEntry(tinyface / "Testing_Set/Probe/1_3.png", "probe", "1"),
                           IdEntry(tinyface / "Testing_Set/Gallery_Match/1_1.png", "gallery", "1")], {"set": "toy"})
    p = write_layout_json(lay, tmp_path / "toy.split.json")
    back = read_layout_json(p, tinyface / "Testing_Set")
    assert back.digest() == lay.digest() and [e.path for e in back.entries] == [e.path for e in lay.entries]
    doc = json.loads(p.read_text())
    doc["entries"][0][2] = "2"
    p.write_text(json.dumps(doc))
    with pytest.raises(SplitError, match="digest"):
        read_layout_json(p, tinyface / "Testing_Set")


def _have_data():
    from lqlib.study import data_available

    return data_available()


@pytest.mark.skipif(not _have_data(), reason="no shared face data (../shared/data or $LQLIB_DATA)")
def test_lfw_half_id_on_the_shared_data():
    from lqlib.data import lfw_half

    lay = lfw_half_id()
    assert lay.counts() == {"probes": 2951, "mated_probes": 2295, "nonmated_probes": 656, "gallery": 774,
                            "gallery_identities": 774, "distractors": 656}
    assert lay.digest() == lfw_half_id().digest()  # fixed
    train = {s.identity.split("/", 1)[1] for s in lfw_half().train if s.identity.startswith("lfw/")}
    assert not train & {e.identity for e in lay.entries}
    g = {e.identity: e.path.name for e in lay.role("gallery")}
    assert g["Abdullah_Gul"] == "Abdullah_Gul_0001.jpg"  # 19 images: gallery 0001, probes 0002-0011
    assert [e.path.name for e in lay.role("probe") if e.identity == "Abdullah_Gul"][-1] == "Abdullah_Gul_0011.jpg"


def test_identification_decodes_each_face_once(tinyface, monkeypatch):
    """Every scale, eval mode, model and call reads one decode of the layout (cache/decoded); a file that
    changes is decoded again; the metrics are those of the uncached pipeline."""
    from lqlib import data as D
    from lqlib.evaluation import id_pipeline as P
    from lqlib.id_study import layout_faces

    calls = []
    real = D.read_image_rgb

    def counting(p):
        calls.append(str(p))
        return real(p)

    monkeypatch.setattr(D, "read_image_rgb", counting)
    monkeypatch.setenv("LQLIB_TINYFACE", str(tinyface))
    lay = tinyface_layout()
    first = evaluate_identification(MeanColour(), lay, scales=(1, 2, 4), eval_modes=("cross", "both"), batch_size=4)
    assert sorted(calls) == sorted(str(e.path) for e in lay.entries)            # 9 files, each once
    again = evaluate_identification(MeanColour(), lay, scales=(1, 2, 4), eval_modes=("cross", "both"), batch_size=4)
    hashes, thumbs, _ = layout_faces(lay)
    assert len(calls) == 9 and len(thumbs) == 7                                # distractors carry no identity
    cols = ["rank1", "mAP", "n_gallery"]
    assert first[cols].equals(again[cols])
    assert np.array_equal(P.decoded_faces([e.path for e in lay.entries]), load_faces([e.path for e in lay.entries]).numpy())
    probes = [e.path for e in lay.role("probe")]
    before = calls.count(str(probes[0]))
    P.decoded_faces(probes)
    assert calls.count(str(probes[0])) == before                              # evaluate's own list: cached
    _face(probes[0], (10, 200, 10), hw=(16, 13))                              # the file changes: decoded again
    changed = P.decoded_faces(probes)
    assert calls.count(str(probes[0])) == before + 1 and tuple(changed[0, :, 0, 0]) == (10, 200, 10)
